//! systemd notifications while waiting: `STATUS=` with the progress line and
//! `EXTEND_TIMEOUT_USEC=` so that a `--timeout` longer than `TimeoutStartSec=` is not cut
//! short. Never `READY=1`: in `exec` mode etcd takes over this PID and sends READY=1
//! itself once it has joined, and NOTIFY_SOCKET is left in the environment for it.
//!
//! Limitations: from an `ExecStartPre=` systemd accepts these only with `NotifyAccess=all`
//! (the pre-command is not the main PID); without it they are dropped, harmlessly.

use std::time::Duration;

use sd_notify::NotifyState;

/// Margin added to the remaining wait when extending systemd's start timeout, so systemd
/// never kills us before our own timeout message is printed.
const MARGIN: Duration = Duration::from_secs(10);

/// Sends `STATUS=` and extends the start timeout by the remaining wait. Does nothing
/// outside systemd (no NOTIFY_SOCKET); send errors are ignored because the notification
/// is informational only.
pub fn waiting(status: &str, remaining: Duration) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let status = status.replace('\n', " ");
    let usec = (remaining + MARGIN).as_micros().min(u128::from(u32::MAX)) as u32;
    let _ = sd_notify::notify(&[
        NotifyState::Status(&status),
        NotifyState::ExtendTimeoutUsec(usec),
    ]);
}

/// Sends a final `STATUS=` line (e.g. the plan summary or the error).
pub fn status(status: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let status = status.lines().next().unwrap_or_default();
    let _ = sd_notify::notify(&[NotifyState::Status(status)]);
}
