//! Server counters, exported in the Prometheus text format.
//!
//! Counters are plain relaxed atomics: they are read rarely (a scrape, the shutdown log)
//! and must cost next to nothing on the query path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every counter the server keeps.
/// Metrics a module keeps itself (counters it bumps where they happen) and registers with
/// [`Stats::register`], so that this module, which every layer uses, imports none of them.
pub trait Family: Send + Sync + std::fmt::Debug {
    /// Appends the Prometheus text of these metrics.
    fn render(&self, out: &mut String);
}

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
    /// Zone reloads that put a new version of the zone in service.
    pub reloads: AtomicU64,
    /// Zone reloads that failed: the previous version kept serving.
    pub reload_failures: AtomicU64,
    /// Answers left to the full path because the writer refused the zone data they need
    /// (those queries get SERVFAIL).
    pub precompile_refused: AtomicU64,
    /// Panics caught and contained, by [`PanicSite`].
    pub panics: [AtomicU64; PanicSite::ALL.len()],
    /// The state of every completeness gate (gauges, replaced per zone by
    /// [`crate::zone::withheld::announce`] when a snapshot goes into service).
    pub gates: std::sync::Mutex<Vec<GateSample>>,
    /// The metrics the modules keep themselves (dynamic update, zone transfer, the
    /// discovery service), rendered after these in the order they were registered.
    families: std::sync::Mutex<Vec<std::sync::Arc<dyn Family>>>,
}

/// Where a panic was caught, and what was done about it (see [`crate::net::listen`] for why
/// panics are contained rather than fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicSite {
    /// A UDP worker: restarted with fresh buffers; its batch got no reply.
    Udp,
    /// A TCP connection (closed) or the accept loop (restarted).
    Tcp,
    /// Precompiling a zone: that zone is answered by the full path.
    Precompile,
    /// Loading a zone on reload: counted as a failed reload, the previous version serves.
    Reload,
    /// A zone's change task (dynamic update, hand edit): the batch is answered SERVFAIL,
    /// the zone keeps its last durable version and the task goes on.
    Zone,
}

impl PanicSite {
    /// Every site, in the order of [`Stats::panics`].
    pub const ALL: [PanicSite; 5] = [
        PanicSite::Udp,
        PanicSite::Tcp,
        PanicSite::Precompile,
        PanicSite::Reload,
        PanicSite::Zone,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            PanicSite::Udp => "udp",
            PanicSite::Tcp => "tcp",
            PanicSite::Precompile => "precompile",
            PanicSite::Reload => "reload",
            PanicSite::Zone => "zone",
        }
    }
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
    /// Renders `family` with these metrics from now on.
    pub fn register(&self, family: std::sync::Arc<dyn Family>) {
        self.families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(family);
    }

    /// Counts a response with this (possibly extended) rcode.
    pub fn count_rcode(&self, rcode: u16) {
        if let Some(c) = self.rcodes.get(rcode as usize) {
            bump(c);
        }
    }

    /// Counts a panic caught at `site`.
    pub fn count_panic(&self, site: PanicSite) {
        bump(&self.panics[site as usize]);
    }

    /// Panics caught at `site` so far.
    pub fn panics_at(&self, site: PanicSite) -> u64 {
        self.panics[site as usize].load(Ordering::Relaxed)
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
        counter(
            "reloads_total",
            "Zone reloads that succeeded: a new version of the zone is serving.",
            &self.reloads,
        );
        counter(
            "reload_failures_total",
            "Zone reloads that failed: the previous version of the zone keeps serving.",
            &self.reload_failures,
        );
        counter(
            "precompile_refused_total",
            "Answers not precompiled because their zone data is malformed (answered SERVFAIL).",
            &self.precompile_refused,
        );
        let _ = writeln!(
            out,
            "# HELP musterd_panics_total Panics caught and contained, by thread \
             (udp: worker restarted; tcp: connection closed; precompile: zone answered by the \
             full path; reload: reload failed, previous version serving)."
        );
        let _ = writeln!(out, "# TYPE musterd_panics_total counter");
        for site in PanicSite::ALL {
            let _ = writeln!(
                out,
                "musterd_panics_total{{thread=\"{}\"}} {}",
                site.label(),
                self.panics_at(site)
            );
        }
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
        let gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        render_gates(&gates, &mut out);
        drop(gates);
        for family in self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            family.render(&mut out);
        }
        out
    }
}

/// One gate's state for the metrics endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSample {
    pub zone: String,
    pub owner: String,
    pub open: bool,
    pub have: u32,
    pub need: u32,
}

/// Prometheus gauges of every gate: `musterd_gate_open` (1 served, 0 withheld),
/// `musterd_gate_have` (targets with an address) and `musterd_gate_need` (the size),
/// labelled by zone and SRV owner name.
fn render_gates(samples: &[GateSample], out: &mut String) {
    if samples.is_empty() {
        return;
    }
    for (metric, help, value) in [
        (
            "gate_open",
            "Completeness gates: 1 while the SRV set is served, 0 while it is withheld.",
            (|s: &GateSample| u32::from(s.open)) as fn(&GateSample) -> u32,
        ),
        (
            "gate_have",
            "Distinct SRV targets with an A/AAAA record in the zone, per gate.",
            |s: &GateSample| s.have,
        ),
        (
            "gate_need",
            "Declared cluster size (muster-size=N or configured), per gate.",
            |s: &GateSample| s.need,
        ),
    ] {
        let _ = writeln!(out, "# HELP musterd_{metric} {help}");
        let _ = writeln!(out, "# TYPE musterd_{metric} gauge");
        for s in samples {
            let _ = writeln!(
                out,
                "musterd_{metric}{{zone=\"{}\",name=\"{}\"}} {}",
                escape(&s.zone),
                escape(&s.owner),
                value(s)
            );
        }
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line `name` in `text`.
    fn sample(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in:\n{text}"))
    }

    /// Gate labels are escaped as Prometheus label values.
    #[test]
    fn gate_labels_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// Review issue 8: failed reloads were also counted as reloads.
    #[test]
    fn reloads_and_reload_failures_are_separate_metrics() {
        let stats = Stats::default();
        bump(&stats.reloads);
        bump(&stats.reload_failures);
        bump(&stats.reload_failures);
        let text = stats.render();
        assert_eq!(sample(&text, "musterd_reloads_total"), 1);
        assert_eq!(sample(&text, "musterd_reload_failures_total"), 2);
        assert!(text.contains(
            "# HELP musterd_reloads_total Zone reloads that succeeded: a new version of the zone is serving.\n"
        ));
        assert!(text.contains(
            "# HELP musterd_reload_failures_total Zone reloads that failed: the previous version of the zone keeps serving.\n"
        ));
        assert!(text.contains("# TYPE musterd_reload_failures_total counter\n"));
    }

    #[test]
    fn panics_are_rendered_by_thread() {
        let stats = Stats::default();
        stats.count_panic(PanicSite::Udp);
        stats.count_panic(PanicSite::Udp);
        stats.count_panic(PanicSite::Precompile);
        let text = stats.render();
        assert_eq!(sample(&text, "musterd_panics_total{thread=\"udp\"}"), 2);
        assert_eq!(sample(&text, "musterd_panics_total{thread=\"tcp\"}"), 0);
        assert_eq!(
            sample(&text, "musterd_panics_total{thread=\"precompile\"}"),
            1
        );
        assert_eq!(sample(&text, "musterd_panics_total{thread=\"reload\"}"), 0);
        // Every metric has HELP and TYPE lines.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
        }
    }
}
