//! Wall-clock time as the server records it: seconds since the Unix epoch.

use std::time::SystemTime;

/// Seconds since the Unix epoch now; 0 when the clock is before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
