//! Transfer and NOTIFY metrics: counters and per-zone gauges, registered with
//! [`crate::stats`] by whoever creates them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::proto::name::Name;

/// Transfer and NOTIFY counters and the per-zone gauges (`musterd_xfr_*`,
/// `musterd_notify_*`, `musterd_zone_*`).
#[derive(Debug, Default)]
pub struct XfrMetrics {
    /// Out: [AXFR, IXFR incremental, IXFR answered AXFR style, IXFR single SOA].
    pub out: [AtomicU64; 4],
    pub out_refused: AtomicU64,
    pub out_failed: AtomicU64,
    /// In: [AXFR, IXFR].
    pub inbound: [AtomicU64; 2],
    pub in_failed: AtomicU64,
    pub notify_sent: AtomicU64,
    pub notify_failed: AtomicU64,
    pub notify_received: AtomicU64,
    pub notify_refused: AtomicU64,
    /// Per zone: (serial, unix time of the last successful refresh of a secondary zone
    /// (0 for a primary zone), expired).
    pub zones: Mutex<std::collections::BTreeMap<String, (u32, u64, bool)>>,
}

impl crate::stats::Family for XfrMetrics {
    fn render(&self, out: &mut String) {
        XfrMetrics::render(self, out);
    }
}

impl XfrMetrics {
    /// Records the serial now served for `zone`.
    pub fn set_serial(&self, zone: &Name, serial: u32) {
        let mut z = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        z.entry(zone.to_string()).or_default().0 = serial;
    }

    /// Records a successful refresh of a secondary zone.
    pub fn set_refreshed(&self, zone: &Name, at: u64) {
        let mut z = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        z.entry(zone.to_string()).or_default().1 = at;
    }

    /// Records whether a secondary zone is expired.
    pub fn set_expired(&self, zone: &Name, expired: bool) {
        let mut z = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        z.entry(zone.to_string()).or_default().2 = expired;
    }

    /// Appends the Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP musterd_xfr_out_total Zone transfers served, by kind."
        );
        let _ = writeln!(out, "# TYPE musterd_xfr_out_total counter");
        for (kind, c) in ["axfr", "ixfr", "ixfr_axfr_style", "ixfr_current"]
            .iter()
            .zip(&self.out)
        {
            let _ = writeln!(out, "musterd_xfr_out_total{{kind=\"{kind}\"}} {}", get(c));
        }
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP musterd_{name} {help}");
            let _ = writeln!(out, "# TYPE musterd_{name} counter");
            let _ = writeln!(out, "musterd_{name} {v}");
        };
        counter(
            "xfr_out_refused_total",
            "Transfer requests refused (not allowed, bad TSIG, zone not served).",
            get(&self.out_refused),
        );
        counter(
            "xfr_out_failed_total",
            "Transfers out cut short (client gone or too slow, data not writable).",
            get(&self.out_failed),
        );
        counter(
            "xfr_in_axfr_total",
            "Secondary zones refreshed by a full transfer.",
            get(&self.inbound[0]),
        );
        counter(
            "xfr_in_ixfr_total",
            "Secondary zones refreshed by an incremental transfer.",
            get(&self.inbound[1]),
        );
        counter(
            "xfr_in_failed_total",
            "Refresh attempts of secondary zones that failed (primary unreachable, refused, bad data, over the transfer.in_max_* limits).",
            get(&self.in_failed),
        );
        counter(
            "notify_sent_total",
            "NOTIFY messages answered by a secondary.",
            get(&self.notify_sent),
        );
        counter(
            "notify_failed_total",
            "NOTIFYs given up after every retry, or refused by the secondary.",
            get(&self.notify_failed),
        );
        counter(
            "notify_received_total",
            "NOTIFY messages accepted from a primary.",
            get(&self.notify_received),
        );
        counter(
            "notify_refused_total",
            "NOTIFY messages refused (unknown source or zone, bad TSIG).",
            get(&self.notify_refused),
        );
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "# HELP musterd_zone_serial SOA serial served, per zone."
        );
        let _ = writeln!(out, "# TYPE musterd_zone_serial gauge");
        for (z, (serial, _, _)) in zones.iter() {
            let _ = writeln!(out, "musterd_zone_serial{{zone=\"{z}\"}} {serial}");
        }
        let _ = writeln!(
            out,
            "# HELP musterd_zone_last_refresh_seconds Unix time of the last successful refresh of a secondary zone."
        );
        let _ = writeln!(out, "# TYPE musterd_zone_last_refresh_seconds gauge");
        for (z, (_, at, _)) in zones.iter().filter(|(_, v)| v.1 > 0) {
            let _ = writeln!(
                out,
                "musterd_zone_last_refresh_seconds{{zone=\"{z}\"}} {at}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP musterd_zone_expired 1 when a secondary zone is past its SOA EXPIRE (answered SERVFAIL)."
        );
        let _ = writeln!(out, "# TYPE musterd_zone_expired gauge");
        for (z, (_, _, expired)) in zones.iter() {
            let _ = writeln!(
                out,
                "musterd_zone_expired{{zone=\"{z}\"}} {}",
                u8::from(*expired)
            );
        }
    }
}
