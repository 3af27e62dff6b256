//! One updatable zone's task: the state it owns, its loop (commands, finished
//! write-backs and compactions, timers), `musterd ctl` requests and publishing new
//! snapshots into the catalog.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use super::metrics::UpdateMetrics;
use super::save::{fingerprint, Fingerprint, WriteOutcome};
use super::versions::{Compacted, Versions};
use super::{Answer, Command, ZoneControl, BATCH_MAX, PRECOMPILE_QUIET};
use crate::proto::name::Name;
use crate::proto::types::Rcode;
use crate::query::answer::Responder;
use crate::stats::Stats;
use crate::update::journal::Journal;
use crate::update::{self, Limits, Policy, ZoneData};
use crate::zone::catalog::Catalog;
use crate::zone::changeset::Changeset;
use crate::zone::history::History;
use crate::zone::Zone;

/// One updatable zone's task and everything it owns.
pub(super) struct ZoneWorker {
    pub(super) origin: Name,
    pub(super) file: PathBuf,
    pub(super) base: PathBuf,
    pub(super) policy: Policy,
    pub(super) limits: Limits,
    pub(super) writeback_changes: usize,
    pub(super) writeback_interval: Duration,
    pub(super) journal_history: usize,
    /// The zone as served (and as durable: nothing here is ahead of the journal between
    /// batches).
    pub(super) data: ZoneData,
    pub(super) journal: Journal,
    /// The zone file's fingerprint when musterd last read or wrote it: a write-back never
    /// replaces a file that changed since.
    pub(super) file_print: Fingerprint,
    /// The zone file does not load, or holds an edit that was refused: write-backs wait
    /// until the operator saves it again (the journal keeps every update meanwhile).
    pub(super) file_blocked: Option<String>,
    /// `musterd ctl freeze`: updates are refused until thawed.
    pub(super) frozen: bool,
    /// The latest changesets, oldest first, at most `journal_history` of them once the
    /// file is written back: the versions a hand edit can start from.
    pub(super) history: VecDeque<Changeset>,
    /// Changesets not yet in the zone file.
    pub(super) unsaved: usize,
    pub(super) unsaved_since: Option<Instant>,
    pub(super) precompile_after: Option<Instant>,
    /// The served snapshot, patched by each update and compacted in the background.
    pub(super) versions: Versions,
    /// A write-back running off the task, and where it reports.
    pub(super) writing: bool,
    pub(super) written_tx: mpsc::UnboundedSender<WriteOutcome>,
    pub(super) written_rx: mpsc::UnboundedReceiver<WriteOutcome>,
    /// The serial the zone file and the base copy were last written with.
    pub(super) written_serial: u32,
    pub(super) rx: mpsc::Receiver<Command>,
    pub(super) catalog: Arc<ArcSwap<Catalog>>,
    pub(super) ixfr: Arc<History>,
    pub(super) responder: Responder,
    pub(super) stats: Arc<Stats>,
    pub(super) metrics: Arc<UpdateMetrics>,
}

/// The names (lower-cased) whose records `changesets` change.
pub(super) fn touched_by<'a>(changesets: impl Iterator<Item = &'a Changeset>) -> BTreeSet<Name> {
    changesets.flat_map(Changeset::touched_names).collect()
}

impl ZoneWorker {
    /// The configured cluster sizes of the served snapshot, which its rebuilds keep.
    pub(super) fn gate_sizes(&self) -> Vec<(Name, u32)> {
        self.catalog
            .load()
            .get(&self.origin)
            .map(|z| z.gate_sizes().to_vec())
            .unwrap_or_default()
    }

    pub(super) fn build(&self) -> Result<Zone, String> {
        let records = self.data.to_records();
        match Zone::build_with_sizes(&self.origin, records, &self.gate_sizes()) {
            Ok((zone, _warnings)) => Ok(zone),
            Err(errors) => Err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    /// Builds the snapshot off the runtime's reactor (it is O(zone size)).
    pub(super) fn build_blocking(&self) -> Result<Zone, String> {
        tokio::task::block_in_place(|| self.build())
    }

    /// The snapshot after the names `touched` (lower-cased) changed in `self.data`: patched
    /// from the served one when the change allows, else rebuilt.
    pub(super) fn next_version(&self, touched: &BTreeSet<Name>) -> Result<Zone, String> {
        match self.versions.patch(&self.data, touched) {
            Ok(zone) => Ok(zone),
            Err(why) => {
                tracing::debug!(zone = %self.origin, ?why, "the zone is rebuilt, not patched");
                self.build_blocking()
            }
        }
    }

    /// Serves `zone`; `touched` names what changed since the served version (`None`: all
    /// of it may have).
    pub(super) fn publish(&mut self, zone: Zone, touched: Option<&BTreeSet<Name>>) {
        let zone = Arc::new(zone);
        self.versions.published(zone.clone(), touched);
        let before = self.catalog.load().get(&self.origin).cloned();
        self.catalog.rcu(|current| {
            let mut next = (**current).clone();
            next.insert(zone.clone());
            next
        });
        // An update can open or close a completeness gate (a host registering its
        // address): log it and keep the gate metrics in step, as a reload does.
        crate::zone::withheld::announce(&self.stats, &self.origin, before.as_deref(), &zone);
        self.precompile_after = Some(Instant::now() + PRECOMPILE_QUIET);
        if self.versions.overdue() {
            self.precompile_now();
        }
    }

    pub(super) fn precompile_now(&mut self) {
        self.precompile_after = None;
        let catalog = self.catalog.load();
        let Some(zone) = catalog.get(&self.origin).cloned() else {
            return;
        };
        let origins = catalog.zones().map(|z| z.origin.clone()).collect();
        if self.versions.wants_compaction() {
            self.versions
                .compact(self.responder.clone(), origins, self.stats.clone());
            return;
        }
        if zone.is_patched() || zone.is_precompiled() {
            return; // a compaction is running, or nothing is left to do
        }
        crate::loader::precompile_in_background(
            vec![zone],
            self.responder.clone(),
            origins,
            self.stats.clone(),
        );
    }

    pub(super) fn next_timer(&self) -> Option<Instant> {
        let writeback = self.unsaved_since.map(|t| t + self.writeback_interval);
        match (writeback, self.precompile_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) async fn run(mut self) {
        loop {
            let timer = self.next_timer();
            let sleep = async {
                match timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                Some(w) = self.written_rx.recv() => self.written(w),
                Some(c) = self.versions.rx.recv() => self.compacted(c),
                _ = sleep => self.on_timer().await,
            }
        }
    }

    /// A compaction finished: served, with the updates made meanwhile patched in.
    pub(super) fn compacted(&mut self, c: Compacted) {
        if let Some((zone, since)) = self.versions.finished(c, &self.data) {
            tracing::debug!(zone = %self.origin, serial = zone.serial(), patched = since.len(), "compacted snapshot served");
            self.publish(zone, Some(&since));
        }
    }

    pub(super) async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.precompile_after.is_some_and(|t| t <= now) {
            self.precompile_now();
        }
        if self
            .unsaved_since
            .is_some_and(|t| t + self.writeback_interval <= now)
        {
            self.flush().await;
        }
    }

    pub(super) async fn command(&mut self, first: Command) {
        let mut batch = Vec::new();
        let mut then = None;
        match first {
            Command::Update { req, signer, reply } => batch.push((req, signer, reply)),
            other => then = Some(other),
        }
        while then.is_none() && batch.len() < BATCH_MAX {
            match self.rx.try_recv() {
                Ok(Command::Update { req, signer, reply }) => batch.push((req, signer, reply)),
                Ok(other) => then = Some(other),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if self.frozen {
                self.refuse_frozen(batch);
            } else {
                self.updates(batch).await;
            }
        }
        match then {
            Some(Command::Reload { force, reply }) => {
                let ok = self.reload(force).await;
                let _ = reply.send(ok);
            }
            Some(Command::Control { what, reply }) => {
                let answer = self.control(what).await;
                let _ = reply.send(answer);
            }
            Some(Command::Update { .. }) | None => {}
        }
    }

    /// Answers updates that arrive while the zone is frozen: REFUSED, with an Extended
    /// DNS Error saying why (RFC 8914 code 18, Prohibited).
    pub(super) fn refuse_frozen(
        &mut self,
        batch: Vec<(update::Request, Name, oneshot::Sender<Answer>)>,
    ) {
        for (_, signer, reply) in batch {
            self.metrics.refused_extra("frozen");
            tracing::info!(zone = %self.origin, key = %signer, "update refused: the zone is frozen (musterd ctl freeze)");
            let _ = reply.send(Answer {
                rcode: Rcode::REFUSED,
                ede: Some((
                    crate::proto::builder::ede::PROHIBITED,
                    format!(
                        "zone {} is frozen for editing; try again after `musterd ctl thaw`",
                        self.origin
                    ),
                )),
            });
        }
    }

    /// Carries out a `musterd ctl` request.
    pub(super) async fn control(&mut self, what: ZoneControl) -> Result<String, String> {
        match what {
            ZoneControl::Status => Ok(self.status_text()),
            ZoneControl::Reload => {
                if self.reload(true).await {
                    Ok(format!(
                        "{} reloaded; serial {}\n",
                        self.origin,
                        self.data.serial()
                    ))
                } else {
                    Err(format!(
                        "{}: the zone file was not applied; the log says why\n",
                        self.origin
                    ))
                }
            }
            ZoneControl::Flush => {
                if let Some(w) = self.wait_writing().await {
                    self.written(w);
                }
                if fingerprint(&self.file) != self.file_print && !self.reload(false).await {
                    return Err(format!(
                        "{}: the zone file changed and cannot be merged; the log says why\n",
                        self.origin
                    ));
                }
                if let Some(why) = &self.file_blocked {
                    return Err(format!("{}: not written back: {why}\n", self.origin));
                }
                match tokio::task::block_in_place(|| self.write_back_now()) {
                    Ok(()) => Ok(format!(
                        "{} written back at serial {}\n",
                        self.file.display(),
                        self.written_serial
                    )),
                    Err(e) => Err(format!("{}: {e}\n", self.file.display())),
                }
            }
            ZoneControl::Freeze => {
                self.frozen = true;
                tracing::info!(zone = %self.origin, "frozen: updates are refused until `musterd ctl thaw`");
                Ok(format!(
                    "{} frozen; edit {} and run `musterd ctl thaw {}`\n",
                    self.origin,
                    self.file.display(),
                    self.origin
                ))
            }
            ZoneControl::Thaw => {
                let merged = self.reload(false).await;
                self.frozen = false;
                tracing::info!(zone = %self.origin, "thawed: updates are taken again");
                if merged {
                    Ok(format!(
                        "{} thawed; serial {}\n",
                        self.origin,
                        self.data.serial()
                    ))
                } else {
                    Err(format!(
                        "{} thawed, but the edited file was not applied; the log says why\n",
                        self.origin
                    ))
                }
            }
        }
    }

    /// A write-back in flight, awaited.
    pub(super) async fn wait_writing(&mut self) -> Option<WriteOutcome> {
        if self.writing {
            self.written_rx.recv().await
        } else {
            None
        }
    }

    /// `musterd ctl zone-status` of this zone.
    pub(super) fn status_text(&self) -> String {
        let history = match (self.history.front(), self.history.back()) {
            (Some(a), Some(_)) => format!(
                "serials {} to {} ({} changesets)",
                a.from_serial,
                self.data.serial(),
                self.history.len()
            ),
            _ => "empty".into(),
        };
        let journal_bytes = std::fs::metadata(self.journal.path()).map_or(0, |m| m.len());
        let pending = match self.unsaved_since {
            _ if self.unsaved == 0 => format!("none (file at serial {})", self.written_serial),
            Some(t) => format!(
                "{} changes, due in {:.1}s",
                self.unsaved,
                (t + self.writeback_interval)
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            ),
            None => format!("{} changes", self.unsaved),
        };
        format!(
            "zone: {}\nkind: primary, dynamic updates\nfile: {}\nserial: {}\nhistory: {history}\njournal: {} ({journal_bytes} bytes)\npending write-back: {pending}\nfile state: {}\nfrozen: {}\n",
            self.origin,
            self.file.display(),
            self.data.serial(),
            self.journal.path().display(),
            self.file_blocked.as_deref().map_or("ok".to_string(), |w| format!("blocked, {w}")),
            if self.frozen { "yes" } else { "no" },
        )
    }

    pub(super) fn remember(&mut self, cs: Changeset) {
        self.history.push_back(cs);
        self.unsaved += 1;
        self.unsaved_since.get_or_insert_with(Instant::now);
        // The journal holds the history too; bound what is kept in memory the same way,
        // but never drop what is not yet in the zone file.
        while self.history.len() > self.journal_history.max(self.unsaved) {
            self.history.pop_front();
        }
    }
}
