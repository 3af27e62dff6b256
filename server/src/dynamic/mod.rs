//! Dynamic update at run time: the keys and per-zone policies from the configuration, one
//! task per updatable zone that applies its updates in order, makes each durable in the
//! zone's journal before answering, and swaps the new snapshot into the catalog; zone
//! files written back and journals compacted; hand edits merged as a difference.
//!
//! Order for each update (RFC 2136 §3.5: stable storage before the response): check and
//! apply it to the zone's records ([`crate::update`]) → build the new snapshot → append
//! the changeset to the journal and wait for its fsync → swap the snapshot in → answer.
//! Updates that arrive while one is being processed are taken together: each is checked
//! against the records as the previous ones left them, their journal records share one
//! fsync (group commit) and one snapshot build, and they are answered once that is done.
//! If an append fails, that update and every later one of the batch are taken back out
//! and answered SERVFAIL (they were checked against state that is not durable); the
//! journal then refuses further appends until musterd restarts and recovers it.
//!
//! On start each updatable zone is its zone file plus the journal's changesets that chain
//! on from the file's serial (RFC 1982). After `writeback_changes` changesets, or
//! `writeback_interval` after the first unsaved one, the zone file is written back
//! atomically (temp file, fsync, rename, fsync the directory) and the journal rewritten
//! to the last `journal_history` changesets, which all precede the file's serial.
//!
//! Hand edits (SIGHUP, or the file watcher) are merged three ways
//! ([`ZoneData::merge_edit`]) against the version the file's stamp names
//! ([`crate::update::writeback`]), rebuilt from the served zone and the changeset history, so
//! updates made since the editor opened the file stay; the serial becomes
//! max(file, served) + 1 and the merged zone is written back at once, keeping the file's
//! layout. A write-back never replaces a file that changed since musterd last read or
//! wrote it (the change is merged first) nor one that does not load or holds a refused
//! edit (it waits, logged and counted, until the operator saves the file again).
//!
//! Every changeset is recorded in the IXFR history ([`crate::zone::history`]) before its version
//! is served; at start the history is the journal's.
//!
//! A panic while processing an update is contained: that update is answered SERVFAIL and
//! counted (`musterd_panics_total{thread="zone"}`), the others of its batch are processed
//! again from the last durable version.
//!
//! TSIG keys are read again on every reload (SIGHUP, `musterd ctl reload`), so a rotated
//! secret takes effect without a restart.
//!
//! Limitations: policies are read at start only; keys that sign outgoing NOTIFY and
//! secondary transfers are taken at start.
//!
//! Files: this one is the front door ([`Updates`]: TSIG, zone lookup, replay guard, hand
//! over to the zone's task, the answer); `worker` is the per-zone task, `batch` how
//! it applies a batch of updates, `open` how it starts from file and journal, `edit`
//! hand-edit merging, `save` write-back, `versions` the served snapshot's patching
//! and compaction, `metrics` the counters.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use crate::config::ZoneSpec;
use crate::proto::builder::Ede;
use crate::proto::name::Name;
use crate::proto::tsig::{self, KeyRing};
use crate::proto::types::{Opcode, Rcode};
use crate::query::answer::Responder;
use crate::stats::Stats;
use crate::update::journal::JournalError;
use crate::update::replay::{Admission, ReplayGuard};
use crate::update::{self, Reason};
use crate::zone::catalog::Catalog;
use crate::zone::history::History;

mod batch;
mod edit;
mod metrics;
mod open;
mod save;
mod versions;
mod worker;

use crate::proto::types::Rclass;
pub use metrics::UpdateMetrics;
use worker::{touched_by, ZoneWorker};

// The update configuration (keys, policies, journals) is read in `crate::config::update`.
pub use crate::config::update::*;

/// Why dynamic update could not start for a zone.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("zone {0} takes updates but is not loaded")]
    NotLoaded(Name),
    #[error("zone {zone}: {source}")]
    Journal {
        zone: Name,
        #[source]
        source: JournalError,
    },
    #[error(
        "zone {zone}: the journal {} does not continue the zone file: {message}; move the \
         journal aside to serve the zone file without its updates",
        journal.display()
    )]
    Replay {
        zone: Name,
        journal: PathBuf,
        message: String,
    },
    #[error(
        "zone {zone}: musterd's copy of the zone file {} cannot be read: {message}; move it \
         aside together with the journal to serve the zone file alone",
        path.display()
    )]
    Base {
        zone: Name,
        path: PathBuf,
        message: String,
    },
    #[error("zone {zone}: the zone with its journal applied does not build: {message}")]
    Build { zone: Name, message: String },
}

/// How an update ended, for the response.
struct Answer {
    rcode: Rcode,
    /// An Extended DNS Error for the response (RFC 8914): code and text.
    ede: Option<(u16, String)>,
}

impl Answer {
    fn rcode(rcode: Rcode) -> Answer {
        Answer { rcode, ede: None }
    }
}

/// What `musterd ctl` asks of an updatable zone's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneControl {
    /// Serial, history, journal, pending write-back, file state, frozen.
    Status,
    /// Write the zone file back now.
    Flush,
    /// Refuse updates until thawed.
    Freeze,
    /// Merge the zone file, then take updates again.
    Thaw,
    /// Reread the zone file (as SIGHUP does for every zone).
    Reload,
}

enum Command {
    Update {
        req: update::Request,
        signer: Name,
        reply: oneshot::Sender<Answer>,
    },
    Reload {
        force: bool,
        reply: oneshot::Sender<bool>,
    },
    Control {
        what: ZoneControl,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// A UDP update handed over by a worker thread, answered from the runtime.
struct UdpJob {
    pkt: Vec<u8>,
    peer: SocketAddr,
    sock: Arc<UdpSocket>,
}

/// Dynamic update for every zone that takes it; shared with the transports.
pub struct Updates {
    keys: SharedKeys,
    key_sources: KeySources,
    zones: HashMap<Name, mpsc::Sender<Command>>,
    catalog: Arc<ArcSwap<Catalog>>,
    metrics: Arc<UpdateMetrics>,
    max_udp_payload: u16,
    udp_tx: mpsc::Sender<UdpJob>,
    pending: Mutex<Option<(mpsc::Receiver<UdpJob>, Vec<ZoneWorker>)>>,
    replays: ReplayGuard,
}

/// UDP updates waiting for the runtime; more are dropped (the client retries).
const UDP_QUEUE: usize = 4096;
/// Updates waiting for one zone's task.
const ZONE_QUEUE: usize = 4096;
/// Most updates taken into one batch.
const BATCH_MAX: usize = 256;
/// Quiet time after the last change before a zone's answers are precompiled again.
const PRECOMPILE_QUIET: Duration = Duration::from_millis(200);

impl Updates {
    /// Opens the journal of every updatable zone, applies it to the zone as loaded from
    /// its file and swaps the result into `catalog`. Call before serving; then
    /// [`Updates::start`] inside the runtime.
    pub fn open(
        config: &UpdateConfig,
        specs: &[ZoneSpec],
        catalog: Arc<ArcSwap<Catalog>>,
        keys: SharedKeys,
        history: Arc<History>,
        responder: Responder,
        stats: Arc<Stats>,
    ) -> Result<Updates, OpenError> {
        let (udp_tx, udp_rx) = mpsc::channel(UDP_QUEUE);
        let metrics = Arc::new(UpdateMetrics::default());
        stats.register(metrics.clone());
        let mut zones = HashMap::new();
        let mut workers = Vec::new();
        for (origin, policy) in &config.zones {
            let spec = specs
                .iter()
                .find(|s| s.origin.eq_ignore_case(origin))
                .cloned()
                .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
            let zone = catalog
                .load()
                .get(origin)
                .cloned()
                .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
            let (tx, rx) = mpsc::channel(ZONE_QUEUE);
            let worker = ZoneWorker::open(
                config,
                spec,
                policy.clone(),
                &zone,
                rx,
                &catalog,
                history.clone(),
                responder.clone(),
                stats.clone(),
                metrics.clone(),
            )?;
            zones.insert(origin.to_lowercase(), tx);
            workers.push(worker);
        }
        Ok(Updates {
            keys: keys.clone(),
            key_sources: config.key_sources.clone(),
            zones,
            catalog,
            metrics,
            max_udp_payload: responder.config.max_udp_payload,
            udp_tx,
            pending: Mutex::new(Some((udp_rx, workers))),
            replays: ReplayGuard::default(),
        })
    }

    /// The TSIG keys in force, for signed queries.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.keys.load()
    }

    /// Reads the TSIG keys again (SIGHUP, `musterd ctl reload`): a key added to a key
    /// file works from now on, a removed one no longer does. When a key file cannot be
    /// read the keys in force stay, and the error is returned.
    pub fn reload_keys(&self) -> Result<usize, ConfigError> {
        let keys = self.key_sources.load()?;
        let n = keys.len();
        self.keys.store(Arc::new(keys));
        Ok(n)
    }

    /// The zones that take updates (lower-cased).
    pub fn origins(&self) -> Vec<Name> {
        self.zones.keys().cloned().collect()
    }

    /// Starts the zone tasks and the UDP hand-over task. Call once, inside the runtime.
    pub fn start(self: &Arc<Self>) {
        let Some((mut udp_rx, workers)) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        for w in workers {
            tokio::spawn(w.run());
        }
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(job) = udp_rx.recv().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let reply = me.handle(&job.pkt).await;
                    if let Err(e) = job.sock.send_to(&reply, job.peer) {
                        tracing::debug!(peer = %job.peer, "udp update reply: {e}");
                    }
                });
            }
        });
    }

    /// Hands an UPDATE received by a UDP worker thread to the runtime; the reply is sent
    /// from there through `sock`. Never blocks: when the queue is full the packet is
    /// dropped and counted, and the client retries.
    pub fn submit_udp(&self, pkt: &[u8], peer: SocketAddr, sock: &Arc<UdpSocket>) {
        let job = UdpJob {
            pkt: pkt.to_vec(),
            peer,
            sock: sock.clone(),
        };
        if self.udp_tx.try_send(job).is_err() {
            self.metrics.failed("overload");
        }
    }

    /// Answers one UPDATE message (either transport).
    pub async fn handle(&self, pkt: &[u8]) -> Vec<u8> {
        let (id, copy, zone_section) = update::echo_of(pkt);
        let parsed = update::parse(pkt);
        let edns = match &parsed {
            Ok(r) if r.edns => Some(self.max_udp_payload),
            _ => None,
        };
        let respond = |answer: &Answer| {
            let ede = answer
                .ede
                .as_ref()
                .map(|(code, text)| Ede { code: *code, text });
            let (op, rc) = (Opcode::UPDATE, answer.rcode);
            crate::proto::builder::bare_response_with_ede(op, id, copy, zone_section, rc, edns, ede)
        };
        let now = crate::clock::unix_now();
        let verified = match tsig::verify_request(pkt, &self.keys.load(), now) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.refused_extra("tsig");
                tracing::info!("update refused: {e}");
                let mut msg = respond(&Answer::rcode(e.rcode()));
                if let Some(t) = e.response() {
                    let _ = tsig::sign_response(&mut msg, &t, now);
                }
                return msg;
            }
        };
        let answer = match parsed {
            Ok(req) => self.answer(req, verified.as_ref(), now).await,
            Err(e) => {
                self.metrics.refused(Reason::Format);
                tracing::info!("update refused: FORMERR: {e}");
                Answer::rcode(Rcode::FORMERR)
            }
        };
        let mut msg = respond(&answer);
        if let Some(v) = &verified {
            if let Err(e) = tsig::sign_response(&mut msg, &v.response(), crate::clock::unix_now()) {
                tracing::warn!("cannot sign the update response: {e}");
            }
        }
        msg
    }

    /// How a well-formed update whose TSIG (if any) verified ends: refused here (a zone
    /// that takes no updates, unsigned, a replay), or carried out by its zone's task.
    async fn answer(
        &self,
        req: update::Request,
        verified: Option<&tsig::Verified>,
        now: u64,
    ) -> Answer {
        let Some(tx) = self.zones.get(&req.zone.to_lowercase()) else {
            // RFC 2136 §3.1.1: a zone we do not serve is NOTAUTH; one we serve that takes
            // no updates is refused like an update without permission.
            let served = req.zclass == Rclass::IN && self.catalog.load().get(&req.zone).is_some();
            if served {
                self.metrics.refused(Reason::Policy);
                tracing::info!(zone = %req.zone, "update refused: the zone takes no updates");
                return Answer::rcode(Rcode::REFUSED);
            }
            self.metrics.refused_extra("notauth");
            return Answer::rcode(Rcode::NOTAUTH);
        };
        if req.zclass != Rclass::IN {
            self.metrics.refused_extra("notauth");
            return Answer::rcode(Rcode::NOTAUTH);
        }
        let Some(v) = verified else {
            self.metrics.refused(Reason::Unsigned);
            tracing::info!(zone = %req.zone, "update refused: not signed (TSIG is required)");
            return Answer::rcode(Rcode::REFUSED);
        };
        // A MAC seen within its fudge window is a copy: the first answer, not applied again.
        let ticket = match self.replays.admit(v, now) {
            Admission::First(t) => t,
            Admission::Replay(first) => {
                self.metrics.refused_extra("replay");
                tracing::info!(zone = %req.zone, key = %v.key.name, "update not applied again: its MAC was seen within the fudge window (a retransmission or a replay); answered as the first time");
                return Answer::rcode(first.answer().await);
            }
            Admission::Full => {
                self.metrics.failed("overload");
                return Answer::rcode(Rcode::SERVFAIL);
            }
        };
        let answer = self.dispatch(tx, req, v.key.name.clone()).await;
        ticket.answered(answer.rcode);
        answer
    }

    /// Hands a verified update to its zone's task and waits for the rcode.
    async fn dispatch(
        &self,
        tx: &mpsc::Sender<Command>,
        req: update::Request,
        signer: Name,
    ) -> Answer {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Update { req, signer, reply };
        if tx.send(cmd).await.is_err() {
            self.metrics.failed("overload");
            return Answer::rcode(Rcode::SERVFAIL);
        }
        match rx.await {
            Ok(a) => a,
            Err(_) => {
                self.metrics.failed("overload");
                Answer::rcode(Rcode::SERVFAIL)
            }
        }
    }

    /// Carries out a `musterd ctl` request on an updatable zone: what to tell the operator,
    /// as success or failure. `None` when `zone` takes no updates here.
    pub async fn control(&self, zone: &Name, what: ZoneControl) -> Option<Result<String, String>> {
        let tx = self.zones.get(&zone.to_lowercase())?;
        let (reply, rx) = oneshot::channel();
        let stopped = || Err("the zone's task has stopped\n".to_string());
        if tx.send(Command::Control { what, reply }).await.is_err() {
            return Some(stopped());
        }
        Some(rx.await.unwrap_or_else(|_| stopped()))
    }

    /// Reloads the zone files of the updatable zones: all of them (`force`, SIGHUP) or
    /// those whose file changed (the watcher). Returns how many failed.
    pub async fn reload(&self, force: bool) -> usize {
        let mut waits = Vec::new();
        for tx in self.zones.values() {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Reload { force, reply }).await.is_ok() {
                waits.push(rx);
            }
        }
        let mut failed = 0;
        for w in waits {
            if !w.await.unwrap_or(false) {
                failed += 1;
            }
        }
        failed
    }
}
