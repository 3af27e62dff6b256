//! Counters of dynamic updates (`musterd_updates_*`) and of what became of hand edits of
//! updatable zone files and their write-backs, registered with [`crate::stats`] as one
//! family.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::update::Reason;

/// Labels of refusals beyond [`Reason`]: TSIG failures, zones not served, signed updates
/// seen before (not applied again), frozen zones.
const EXTRA_REFUSALS: [&str; 4] = ["tsig", "notauth", "replay", "frozen"];

/// Labels of failures: the update was acceptable but could not be made durable or served.
const FAILURES: [&str; 4] = ["journal", "build", "overload", "panic"];

/// Labels of what became of hand edits of updatable zone files.
const EDIT_OUTCOMES: [&str; 3] = ["merged", "taken_as_written", "refused"];

/// Counters of dynamic updates (`musterd_updates_*`) and of hand edits of their files.
#[derive(Debug, Default)]
pub struct UpdateMetrics {
    pub(super) accepted: AtomicU64,
    refused: [AtomicU64; Reason::ALL.len() + EXTRA_REFUSALS.len()],
    failed: [AtomicU64; FAILURES.len()],
    edits: [AtomicU64; EDIT_OUTCOMES.len()],
    pub(super) writeback_blocked: AtomicU64,
}

impl crate::stats::Family for UpdateMetrics {
    fn render(&self, out: &mut String) {
        UpdateMetrics::render(self, out);
    }
}

impl UpdateMetrics {
    pub(super) fn refused(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn refused_extra(&self, label: &str) {
        let i = EXTRA_REFUSALS.iter().position(|l| *l == label).unwrap_or(0);
        self.refused[Reason::ALL.len() + i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, label: &str) {
        let i = FAILURES.iter().position(|l| *l == label).unwrap_or(0);
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn edit(&self, outcome: &str) {
        let i = EDIT_OUTCOMES
            .iter()
            .position(|l| *l == outcome)
            .unwrap_or(0);
        self.edits[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP musterd_updates_accepted_total Dynamic updates answered NOERROR (durable before the answer).");
        let _ = writeln!(out, "# TYPE musterd_updates_accepted_total counter");
        let _ = writeln!(
            out,
            "musterd_updates_accepted_total {}",
            self.accepted.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP musterd_updates_refused_total Dynamic updates refused, nothing changed, by reason.");
        let _ = writeln!(out, "# TYPE musterd_updates_refused_total counter");
        let labels = Reason::ALL.iter().map(|r| r.label()).chain(EXTRA_REFUSALS);
        for (label, c) in labels.zip(&self.refused) {
            let _ = writeln!(
                out,
                "musterd_updates_refused_total{{reason=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP musterd_updates_failed_total Dynamic updates answered SERVFAIL and not applied, by reason.");
        let _ = writeln!(out, "# TYPE musterd_updates_failed_total counter");
        for (label, c) in FAILURES.iter().zip(&self.failed) {
            let _ = writeln!(
                out,
                "musterd_updates_failed_total{{reason=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP musterd_hand_edits_total Saved edits of updatable zone files, by outcome (refused: the served zone is unchanged until the file is fixed).");
        let _ = writeln!(out, "# TYPE musterd_hand_edits_total counter");
        for (label, c) in EDIT_OUTCOMES.iter().zip(&self.edits) {
            let _ = writeln!(
                out,
                "musterd_hand_edits_total{{outcome=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP musterd_writeback_blocked_total Zone file write-backs held back because the file does not load or holds a refused edit.");
        let _ = writeln!(out, "# TYPE musterd_writeback_blocked_total counter");
        let _ = writeln!(
            out,
            "musterd_writeback_blocked_total {}",
            self.writeback_blocked.load(Ordering::Relaxed)
        );
    }
}
