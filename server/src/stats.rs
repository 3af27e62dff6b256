//! Server counters, exported in the Prometheus text format.
//!
//! Counters are plain relaxed atomics: they are read rarely (a scrape, the shutdown log)
//! and must cost next to nothing on the query path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter the server keeps.
#[derive(Debug, Default)]
pub struct Stats {
    pub udp_queries: AtomicU64,
    /// recvmmsg calls that returned packets: udp_queries / udp_batches is the batch size.
    pub udp_batches: AtomicU64,
    pub tcp_queries: AtomicU64,
    /// Packets dropped without reply: shorter than a header, or QR=1 (catalogue rows 1-2).
    pub malformed_dropped: AtomicU64,
    /// Responses sent with TC=1.
    pub truncated: AtomicU64,
    /// Responses by rcode (index = rcode, 16 = BADVERS).
    pub rcodes: [AtomicU64; 17],
    pub tcp_connections: AtomicU64,
    /// TCP connections closed at once because the client cap was reached.
    pub tcp_refused: AtomicU64,
    /// TCP connections closed by the idle or I/O timeout.
    pub tcp_timeouts: AtomicU64,
    /// Successful reloads and failed zone loads.
    pub reloads: AtomicU64,
    pub zone_load_failures: AtomicU64,
}

/// Adds one to a counter.
#[inline]
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

const RCODE_NAMES: [&str; 17] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
    "NXRRSET", "NOTAUTH", "NOTZONE", "RCODE11", "RCODE12", "RCODE13", "RCODE14", "RCODE15",
    "BADVERS",
];

impl Stats {
    /// Counts a response with this (possibly extended) rcode.
    pub fn count_rcode(&self, rcode: u16) {
        if let Some(c) = self.rcodes.get(rcode as usize) {
            bump(c);
        }
    }

    /// Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP musterd_{name} {help}");
            let _ = writeln!(out, "# TYPE musterd_{name} counter");
            let _ = writeln!(out, "musterd_{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            "udp_queries_total",
            "Queries received over UDP.",
            &self.udp_queries,
        );
        counter(
            "udp_batches_total",
            "UDP receive calls that returned packets (queries per call = batch size).",
            &self.udp_batches,
        );
        counter(
            "tcp_queries_total",
            "Queries received over TCP.",
            &self.tcp_queries,
        );
        counter(
            "malformed_dropped_total",
            "Packets dropped without reply (too short, or QR=1).",
            &self.malformed_dropped,
        );
        counter(
            "truncated_total",
            "Responses sent with TC=1.",
            &self.truncated,
        );
        counter(
            "tcp_connections_total",
            "TCP connections accepted.",
            &self.tcp_connections,
        );
        counter(
            "tcp_refused_total",
            "TCP connections closed because the client cap was reached.",
            &self.tcp_refused,
        );
        counter(
            "tcp_timeouts_total",
            "TCP connections closed by the idle or I/O timeout.",
            &self.tcp_timeouts,
        );
        counter("reloads_total", "Zone reloads performed.", &self.reloads);
        counter(
            "zone_load_failures_total",
            "Zone loads that failed (the previous version kept serving).",
            &self.zone_load_failures,
        );
        let _ = writeln!(
            out,
            "# HELP musterd_responses_total Responses sent, by rcode."
        );
        let _ = writeln!(out, "# TYPE musterd_responses_total counter");
        for (i, c) in self.rcodes.iter().enumerate() {
            let _ = writeln!(
                out,
                "musterd_responses_total{{rcode=\"{}\"}} {}",
                RCODE_NAMES[i],
                c.load(Ordering::Relaxed)
            );
        }
        out
    }
}
