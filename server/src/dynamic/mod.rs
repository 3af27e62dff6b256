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

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot};

use crate::config::ZoneSpec;
use crate::proto::name::Name;
use crate::proto::tsig::{self, KeyRing};
use crate::proto::wire::{opcode, rcode};
use crate::query::answer::Responder;
use crate::stats::Stats;
use crate::update::journal::{self, Journal, JournalError};
use crate::update::replay::{Admission, ReplayGuard};
use crate::update::writeback;
use crate::update::{self, Limits, Policy, Reason, ZoneData};
use crate::zone::catalog::Catalog;
use crate::zone::changeset::Changeset;
use crate::zone::history::History;
use crate::zone::Zone;

mod versions;
use versions::{Compacted, Versions};

// The update configuration (keys, policies, journals) is read in `crate::config::update`.
pub use crate::config::update::*;

// ---------------------------------------------------------------------------------------
// Metrics

/// Labels of refusals beyond [`Reason`]: TSIG failures, zones not served, signed updates
/// seen before (not applied again), frozen zones.
const EXTRA_REFUSALS: [&str; 4] = ["tsig", "notauth", "replay", "frozen"];

/// RFC 8914 Extended DNS Error 18, Prohibited: what a frozen zone answers an update.
const EDE_PROHIBITED: u16 = crate::proto::wire::ede::PROHIBITED;

/// Adds an Extended DNS Error option to the OPT record a response ends with (built by
/// [`update::response`], before its TSIG). A response without OPT is left alone: the
/// client did not send EDNS and could not read the option.
fn add_ede(msg: &mut Vec<u8>, code: u16, text: &str) {
    const OPT_LEN: usize = 11;
    let n = msg.len();
    if n < OPT_LEN + 12
        || msg[n - OPT_LEN] != 0
        || msg[n - 10..n - 8] != crate::proto::rr::rtype::OPT.to_be_bytes()
        || msg[n - 2..] != [0, 0]
    {
        return;
    }
    let text = &text.as_bytes()[..text.len().min(400)];
    let opt_len = (text.len() + 6) as u16;
    msg[n - 2..].copy_from_slice(&opt_len.to_be_bytes());
    msg.extend_from_slice(&crate::proto::wire::ede::OPTION.to_be_bytes());
    msg.extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
    msg.extend_from_slice(&code.to_be_bytes());
    msg.extend_from_slice(text);
}
/// Labels of failures: the update was acceptable but could not be made durable or served.
const FAILURES: [&str; 4] = ["journal", "build", "overload", "panic"];

/// Labels of what became of hand edits of updatable zone files.
const EDIT_OUTCOMES: [&str; 3] = ["merged", "taken_as_written", "refused"];

/// Counters of dynamic updates (`musterd_updates_*`) and of hand edits of their files.
#[derive(Debug, Default)]
pub struct UpdateMetrics {
    accepted: AtomicU64,
    refused: [AtomicU64; Reason::ALL.len() + EXTRA_REFUSALS.len()],
    failed: [AtomicU64; FAILURES.len()],
    edits: [AtomicU64; EDIT_OUTCOMES.len()],
    writeback_blocked: AtomicU64,
}

impl crate::stats::Family for UpdateMetrics {
    fn render(&self, out: &mut String) {
        UpdateMetrics::render(self, out);
    }
}

impl UpdateMetrics {
    fn refused(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    fn refused_extra(&self, label: &str) {
        let i = EXTRA_REFUSALS.iter().position(|l| *l == label).unwrap_or(0);
        self.refused[Reason::ALL.len() + i].fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, label: &str) {
        let i = FAILURES.iter().position(|l| *l == label).unwrap_or(0);
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    fn edit(&self, outcome: &str) {
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

// ---------------------------------------------------------------------------------------
// Runtime

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
    rcode: u16,
    /// An Extended DNS Error for the response (RFC 8914): code and text.
    ede: Option<(u16, String)>,
}

impl Answer {
    fn rcode(rcode: u16) -> Answer {
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

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

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
        let edns = update::parse(pkt)
            .ok()
            .filter(|r| r.edns)
            .map(|_| self.max_udp_payload);
        let plain = |rc: u16| update::response(opcode::UPDATE, id, copy, zone_section, rc, edns);
        let now = unix_now();
        let verified = match tsig::verify_request(pkt, &self.keys.load(), now) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.refused_extra("tsig");
                tracing::info!("update refused: {e}");
                let mut msg = plain(e.rcode());
                if let Some(t) = e.response() {
                    let _ = tsig::sign_response(&mut msg, &t, now);
                }
                return msg;
            }
        };
        let finish = |rc: u16| {
            let mut msg = plain(rc);
            if let Some(v) = &verified {
                if let Err(e) = tsig::sign_response(&mut msg, &v.response(), unix_now()) {
                    tracing::warn!("cannot sign the update response: {e}");
                }
            }
            msg
        };
        let req = match update::parse(pkt) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.refused(Reason::Format);
                tracing::info!("update refused: FORMERR: {e}");
                return finish(rcode::FORMERR);
            }
        };
        let Some(tx) = self.zones.get(&req.zone.to_lowercase()) else {
            // RFC 2136 §3.1.1: a zone we do not serve is NOTAUTH; one we serve that takes
            // no updates is refused like an update without permission.
            let served = req.zclass == crate::proto::rr::class::IN
                && self.catalog.load().get(&req.zone).is_some();
            if served {
                self.metrics.refused(Reason::Policy);
                tracing::info!(zone = %req.zone, "update refused: the zone takes no updates");
                return finish(rcode::REFUSED);
            }
            self.metrics.refused_extra("notauth");
            return finish(update::update_rcode::NOTAUTH);
        };
        if req.zclass != crate::proto::rr::class::IN {
            self.metrics.refused_extra("notauth");
            return finish(update::update_rcode::NOTAUTH);
        }
        let Some(v) = &verified else {
            self.metrics.refused(Reason::Unsigned);
            tracing::info!(zone = %req.zone, "update refused: not signed (TSIG is required)");
            return finish(rcode::REFUSED);
        };
        // A MAC seen within its fudge window is a copy: the first answer, not applied again.
        let ticket = match self.replays.admit(v, now) {
            Admission::First(t) => t,
            Admission::Replay(first) => {
                self.metrics.refused_extra("replay");
                tracing::info!(zone = %req.zone, key = %v.key.name, "update not applied again: its MAC was seen within the fudge window (a retransmission or a replay); answered as the first time");
                return finish(first.answer().await);
            }
            Admission::Full => {
                self.metrics.failed("overload");
                return finish(rcode::SERVFAIL);
            }
        };
        let answer = self.dispatch(tx, req, v.key.name.clone()).await;
        ticket.answered(answer.rcode);
        match answer.ede {
            Some((code, text)) => {
                let mut msg = plain(answer.rcode);
                add_ede(&mut msg, code, &text);
                if let Err(e) = tsig::sign_response(&mut msg, &v.response(), unix_now()) {
                    tracing::warn!("cannot sign the update response: {e}");
                }
                msg
            }
            None => finish(answer.rcode),
        }
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
            return Answer::rcode(rcode::SERVFAIL);
        }
        match rx.await {
            Ok(a) => a,
            Err(_) => {
                self.metrics.failed("overload");
                Answer::rcode(rcode::SERVFAIL)
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

/// musterd's copy of an updatable zone's file, beside its journal.
fn base_path(state_dir: &Path, zone: &Name) -> PathBuf {
    state_dir.join(format!("{}.zone", journal::file_name(zone)))
}

/// What a write-back reports.
enum WriteOutcome {
    /// Both files written: the version written, the zone file's fingerprint now, and why
    /// the operator's layout could not be kept, if it could not.
    Done {
        serial: u32,
        file_print: Fingerprint,
        layout_lost: Option<String>,
    },
    /// The zone file changed since musterd last read or wrote it: merged first.
    Changed,
    /// The zone file does not load: it is never written over.
    Broken(String),
    Failed(JournalError),
}

/// A file's identity for change detection: inode, size, modification and change times.
type Fingerprint = Option<(u64, u64, i64, i64, i64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    fingerprint_of(&std::fs::metadata(path).ok()?)
}

fn fingerprint_of(m: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Some((m.ino(), m.len(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// Writes `data` to musterd's base copy (its own layout) and then to the operator's zone
/// file (layout kept, [`writeback::render`]): in this order, so that a crash between the
/// two leaves a base copy that the journal continues. Nothing is written when the zone
/// file is no longer the one musterd last read or wrote (`expected`), or does not load.
/// Writes `data` into the operator's `file` (unless it changed since `expected`) and into
/// the `base` copy. Without a base (the base already holds `data`, and so does `file`,
/// unstamped), only the stamp line is added to the file.
fn write_files(
    file: &Path,
    base: Option<&Path>,
    data: &ZoneData,
    expected: Fingerprint,
) -> WriteOutcome {
    if fingerprint(file) != expected {
        return WriteOutcome::Changed;
    }
    let current = match writeback::read(file) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return WriteOutcome::Broken(format!("{}: {e}", file.display())),
    };
    let rendered = if base.is_none() {
        writeback::Rendered {
            text: writeback::stamp(&current, data),
            layout_lost: None,
        }
    } else if current.is_empty() {
        writeback::Rendered {
            text: writeback::canonical(data),
            layout_lost: None,
        }
    } else {
        match writeback::render(&current, file, data) {
            Ok(r) => r,
            Err(e) => return WriteOutcome::Broken(e),
        }
    };
    if let Some(base) = base {
        if let Err(e) = journal::write_atomically(base, writeback::canonical(data).as_bytes()) {
            return WriteOutcome::Failed(e);
        }
    }
    // The operator's file as musterd knows it, held open: an edit saved into it (appended,
    // or written in place) even in the moment of the rename stays readable through it.
    let held = std::fs::File::open(file).ok();
    // Content only: the rename changes the old inode's ctime (one link fewer).
    let written_to = |f: &Option<std::fs::File>| {
        use std::os::unix::fs::MetadataExt;
        let m = f.as_ref()?.metadata().ok()?;
        Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    };
    let before = written_to(&held);
    let unchanged = || fingerprint(file) == expected && written_to(&held) == before;
    match journal::write_atomically_if(file, rendered.text.as_bytes(), unchanged) {
        Ok(true) => {}
        Ok(false) => return WriteOutcome::Changed,
        Err(e) => return WriteOutcome::Failed(e),
    }
    if held.is_some() && written_to(&held) != before {
        // Written into the old file after the last check: put that version back (its stamp
        // names the version it was edited from), to be merged like any edit.
        let mut text = String::new();
        let restored = held.as_ref().is_some_and(|mut f| {
            use std::io::{Read, Seek};
            f.rewind().is_ok() && f.read_to_string(&mut text).is_ok()
        });
        if restored {
            if let Err(e) = journal::write_atomically(file, text.as_bytes()) {
                return WriteOutcome::Failed(e);
            }
        }
        return WriteOutcome::Changed;
    }
    WriteOutcome::Done {
        serial: data.serial(),
        file_print: fingerprint(file),
        layout_lost: rendered.layout_lost,
    }
}

/// Why a saved zone file is not applied; the served zone stays as it is.
#[derive(Debug)]
enum EditRefused {
    /// It does not parse or build (message with file and line).
    Broken(String),
    /// Its stamp names a version the history no longer holds, or that does not match.
    UnknownBase(String),
    Conflict(crate::update::MergeConflict),
}

/// One updatable zone's task and everything it owns.
struct ZoneWorker {
    origin: Name,
    file: PathBuf,
    base: PathBuf,
    policy: Policy,
    limits: Limits,
    writeback_changes: usize,
    writeback_interval: Duration,
    journal_history: usize,
    /// The zone as served (and as durable: nothing here is ahead of the journal between
    /// batches).
    data: ZoneData,
    journal: Journal,
    /// The zone file's fingerprint when musterd last read or wrote it: a write-back never
    /// replaces a file that changed since.
    file_print: Fingerprint,
    /// The zone file does not load, or holds an edit that was refused: write-backs wait
    /// until the operator saves it again (the journal keeps every update meanwhile).
    file_blocked: Option<String>,
    /// `musterd ctl freeze`: updates are refused until thawed.
    frozen: bool,
    /// The latest changesets, oldest first, at most `journal_history` of them once the
    /// file is written back: the versions a hand edit can start from.
    history: VecDeque<Changeset>,
    /// Changesets not yet in the zone file.
    unsaved: usize,
    unsaved_since: Option<Instant>,
    precompile_after: Option<Instant>,
    /// The served snapshot, patched by each update and compacted in the background.
    versions: Versions,
    /// A write-back running off the task, and where it reports.
    writing: bool,
    written_tx: mpsc::UnboundedSender<WriteOutcome>,
    written_rx: mpsc::UnboundedReceiver<WriteOutcome>,
    /// The serial the zone file and the base copy were last written with.
    written_serial: u32,
    rx: mpsc::Receiver<Command>,
    catalog: Arc<ArcSwap<Catalog>>,
    ixfr: Arc<History>,
    responder: Responder,
    stats: Arc<Stats>,
    metrics: Arc<UpdateMetrics>,
}

/// The names (lower-cased) whose records `changesets` change.
fn touched_by<'a>(changesets: impl Iterator<Item = &'a Changeset>) -> BTreeSet<Name> {
    changesets.flat_map(Changeset::touched_names).collect()
}

/// musterd's base copy of a zone, if it has one.
fn read_base(base: &Path, origin: &Name) -> Result<Option<ZoneData>, OpenError> {
    let error = |message: String| OpenError::Base {
        zone: origin.clone(),
        path: base.to_path_buf(),
        message,
    };
    let Some(text) = writeback::read(base).map_err(|e| error(e.to_string()))? else {
        return Ok(None);
    };
    let records =
        crate::zone::zonefile::parse_str(&text, base, origin).map_err(|e| error(e.to_string()))?;
    ZoneData::from_records(origin, records)
        .map(Some)
        .map_err(|e| error(e.to_string()))
}

impl ZoneWorker {
    #[allow(clippy::too_many_arguments)]
    fn open(
        config: &UpdateConfig,
        spec: ZoneSpec,
        policy: Policy,
        loaded: &Zone,
        rx: mpsc::Receiver<Command>,
        catalog: &Arc<ArcSwap<Catalog>>,
        ixfr: Arc<History>,
        responder: Responder,
        stats: Arc<Stats>,
        metrics: Arc<UpdateMetrics>,
    ) -> Result<ZoneWorker, OpenError> {
        let origin = loaded.origin.clone();
        let file = spec
            .file
            .clone()
            .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
        let journal_error = |source| OpenError::Journal {
            zone: origin.clone(),
            source,
        };
        let file_data = ZoneData::from_zone(loaded);
        // musterd's own copy of the zone file as it last wrote it: the base that the
        // journal continues, whatever was done to the operator's file meanwhile.
        let base = base_path(&config.state_dir, &origin);
        std::fs::create_dir_all(&config.state_dir).map_err(|e| OpenError::Base {
            zone: origin.clone(),
            path: config.state_dir.clone(),
            message: e.to_string(),
        })?;
        let from_base = read_base(&base, &origin)?;
        if from_base.is_none() {
            // First start with updates: the base is the operator's file as it is (the
            // journal, if any, continues it).
            journal::write_atomically(&base, writeback::canonical(&file_data).as_bytes())
                .map_err(journal_error)?;
        }
        let data = from_base.unwrap_or_else(|| file_data.clone());
        let (journal, recovery) =
            Journal::open(&config.state_dir, &origin).map_err(journal_error)?;
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let mut w = ZoneWorker {
            origin: origin.clone(),
            file,
            base,
            policy,
            limits: config.limits,
            writeback_changes: config.writeback_changes,
            writeback_interval: config.writeback_interval,
            journal_history: config.journal_history,
            written_serial: data.serial(),
            data,
            journal,
            file_print: None,
            file_blocked: None,
            frozen: false,
            history: VecDeque::new(),
            unsaved: 0,
            unsaved_since: None,
            precompile_after: None,
            versions: Versions::new(),
            writing: false,
            written_tx,
            written_rx,
            rx,
            catalog: catalog.clone(),
            ixfr,
            responder,
            stats: stats.clone(),
            metrics,
        };
        let replayed = w.replay(recovery.changesets)?;
        w.ixfr.reset(&origin, w.history.iter().cloned());
        // The operator's file as musterd finds it: an edit made while musterd was down
        // is merged now; an unstamped file is stamped (so that an editor's copy of it
        // names its version); a file behind the journal is written back.
        let print = fingerprint(&w.file);
        let text = writeback::read(&w.file).ok().flatten().unwrap_or_default();
        let merged = match writeback::file_state(&text) {
            writeback::FileState::Unedited => None,
            state => Some(w.merge_file(state, &file_data)),
        };
        w.file_print = print;
        let edited = match merged {
            Some(Ok(Some(cs))) => {
                let mut next = w.data.clone();
                next.apply_changeset(&cs).map_err(|e| OpenError::Build {
                    zone: origin.clone(),
                    message: format!("the hand edit does not apply: {e}"),
                })?;
                w.journal.append_blocking(&cs).map_err(journal_error)?;
                tracing::info!(zone = %origin, serial = cs.to_serial, "zone file edited while musterd was stopped: merged with the journaled updates");
                w.data = next;
                w.ixfr.record(&origin, cs.clone());
                w.remember(cs);
                true
            }
            Some(Err(refused)) => {
                w.refuse_edit(refused);
                false
            }
            Some(Ok(None)) | None => false,
        };
        // The base copy is ahead of the operator's file when musterd was killed between
        // writing the two.
        let behind = file_data.digest() != w.data.digest();
        let ahead = behind && replayed == 0;
        if replayed > 0 || edited || behind {
            let zone = w.build().map_err(|message| OpenError::Build {
                zone: origin.clone(),
                message,
            })?;
            tracing::info!(zone = %origin, changesets = replayed, serial = zone.serial(), "journal replayed");
            w.publish(zone, None);
            w.precompile_now();
        } else if let Some(served) = catalog.load().get(&origin) {
            // The loaded snapshot holds what the task holds: updates patch it.
            w.versions.published(served.clone(), None);
        }
        let unstamped = !matches!(writeback::file_state(&text), writeback::FileState::Unedited);
        if w.file_blocked.is_none() && unstamped && !(edited || behind || replayed > 0) {
            // The file holds the served records and lacks only its stamp (a first start):
            // the stamp line is added, nothing rendered, before anyone can open it in an
            // editor.
            let outcome = write_files(&w.file, None, &w.data, w.file_print);
            w.finish_write_back(outcome).map_err(journal_error)?;
        } else if w.file_blocked.is_none() && (edited || ahead || unstamped) {
            // Written now so that the operator's file, the base copy and the journal agree.
            w.write_back_now().map_err(journal_error)?;
        }
        Ok(w)
    }

    /// Applies the journal's changesets that continue the base copy; returns how many.
    fn replay(&mut self, changesets: Vec<Changeset>) -> Result<usize, OpenError> {
        let replay_error = |message: String| OpenError::Replay {
            zone: self.origin.clone(),
            journal: self.journal.path().to_path_buf(),
            message,
        };
        let base_serial = self.data.serial();
        let start = changesets.iter().position(|c| c.from_serial == base_serial);
        let mut replayed = 0;
        match (start, changesets.last()) {
            (Some(i), _) => {
                for cs in &changesets[i..] {
                    self.data
                        .apply_changeset(cs)
                        .map_err(|e| replay_error(e.to_string()))?;
                    replayed += 1;
                }
            }
            (None, None) => {}
            (None, Some(last)) if last.to_serial == base_serial => {}
            (None, Some(last)) => {
                return Err(replay_error(format!(
                    "musterd's base copy has serial {base_serial}, and no journal record starts \
                     there (the journal ends at serial {})",
                    last.to_serial
                )))
            }
        }
        self.unsaved = replayed;
        self.unsaved_since = (replayed > 0).then(Instant::now);
        self.history = changesets.into();
        Ok(replayed)
    }

    /// The zone as it was at `version`, rebuilt from the served zone by taking the
    /// changesets since then back out; checked against the version's digest.
    fn version_at(&self, version: writeback::Version) -> Result<ZoneData, String> {
        let current = self.data.serial();
        let mut data = self.data.clone();
        if version.serial != current {
            let start = self
                .history
                .iter()
                .rposition(|c| c.from_serial == version.serial)
                .ok_or_else(|| {
                    format!(
                        "serial {} is older than the history musterd keeps (journal_history = {}; \
                         the served zone is at serial {current})",
                        version.serial, self.journal_history
                    )
                })?;
            for cs in self.history.range(start..).rev() {
                data.revert_changeset(cs).map_err(|e| e.to_string())?;
            }
        }
        if data.digest() != version.digest {
            return Err(format!(
                "no version of the zone with serial {} has the digest {:016x} the stamp names",
                version.serial, version.digest
            ));
        }
        Ok(data)
    }

    /// The changeset that applies the saved zone file (`file`, in `state`) to the served
    /// zone: merged three ways against the version its stamp names; an unstamped file
    /// that holds exactly a version in the history is that version; any other unstamped
    /// file is taken as written (with a warning naming what it removes).
    fn merge_file(
        &self,
        state: writeback::FileState,
        file: &ZoneData,
    ) -> Result<Option<Changeset>, EditRefused> {
        if file.serial() == self.data.serial() && file.digest() == self.data.digest() {
            // The file holds the served records (say, a first start): nothing to merge,
            // and no copy of a large zone made to find that out.
            return Ok(None);
        }
        let base = match state {
            writeback::FileState::Unedited => return Ok(None),
            writeback::FileState::Edited(v) => {
                self.version_at(v).map_err(EditRefused::UnknownBase)?
            }
            writeback::FileState::Unstamped => {
                match self.version_at(writeback::Version::of(file)) {
                    Ok(base) => base,
                    Err(_) => {
                        let cs = self.data.replace_with(file);
                        if let Some(cs) = &cs {
                            let removed = self.data.records_missing_from(file, 20);
                            if !removed.is_empty() {
                                tracing::warn!(
                                    zone = %self.origin,
                                    file = %self.file.display(),
                                    "the zone file has no musterd stamp (replaced wholesale?): taken as written; it removes {} record(s) the served zone held, among them: {}",
                                    cs.removed.len() - 1,
                                    writeback::describe(&removed, &self.origin)
                                );
                            }
                            self.metrics.edit("taken_as_written");
                        }
                        return Ok(cs);
                    }
                }
            }
        };
        let cs = self
            .data
            .merge_edit(&base, file)
            .map_err(EditRefused::Conflict)?;
        if cs.is_some() {
            self.metrics.edit("merged");
        }
        Ok(cs)
    }

    /// Logs and counts a refused edit; write-backs wait until the file is saved again.
    fn refuse_edit(&mut self, refused: EditRefused) {
        let why = match &refused {
            EditRefused::Broken(m) => format!("it does not load: {m}"),
            EditRefused::UnknownBase(m) => format!("its stamp cannot be placed: {m}; copy the records you changed into the current file and save it again, or delete the file's first line to have it taken as written"),
            EditRefused::Conflict(c) => format!("it conflicts with a dynamic update made since the file was written: {c}; edit that RRset to the value you want (the served one or yours) and save again"),
        };
        if !matches!(refused, EditRefused::Broken(_)) {
            self.metrics.edit("refused");
        }
        crate::stats::bump(&self.stats.reload_failures);
        tracing::error!(
            zone = %self.origin,
            file = %self.file.display(),
            serial = self.data.serial(),
            "the zone file is not applied, {why}. The served zone (with its updates) keeps serving, and the file is not written back until it is fixed"
        );
        self.file_blocked = Some(why);
    }

    /// The configured cluster sizes of the served snapshot, which its rebuilds keep.
    fn gate_sizes(&self) -> Vec<(Name, u32)> {
        self.catalog
            .load()
            .get(&self.origin)
            .map(|z| z.gate_sizes().to_vec())
            .unwrap_or_default()
    }

    fn build(&self) -> Result<Zone, String> {
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
    fn build_blocking(&self) -> Result<Zone, String> {
        tokio::task::block_in_place(|| self.build())
    }

    /// The snapshot after the names `touched` (lower-cased) changed in `self.data`: patched
    /// from the served one when the change allows, else rebuilt.
    fn next_version(&self, touched: &BTreeSet<Name>) -> Result<Zone, String> {
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
    fn publish(&mut self, zone: Zone, touched: Option<&BTreeSet<Name>>) {
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

    fn precompile_now(&mut self) {
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

    fn next_timer(&self) -> Option<Instant> {
        let writeback = self.unsaved_since.map(|t| t + self.writeback_interval);
        match (writeback, self.precompile_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn run(mut self) {
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
    fn compacted(&mut self, c: Compacted) {
        if let Some((zone, since)) = self.versions.finished(c, &self.data) {
            tracing::debug!(zone = %self.origin, serial = zone.serial(), patched = since.len(), "compacted snapshot served");
            self.publish(zone, Some(&since));
        }
    }

    async fn on_timer(&mut self) {
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

    async fn command(&mut self, first: Command) {
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
    fn refuse_frozen(&mut self, batch: Vec<(update::Request, Name, oneshot::Sender<Answer>)>) {
        for (_, signer, reply) in batch {
            self.metrics.refused_extra("frozen");
            tracing::info!(zone = %self.origin, key = %signer, "update refused: the zone is frozen (musterd ctl freeze)");
            let _ = reply.send(Answer {
                rcode: rcode::REFUSED,
                ede: Some((
                    EDE_PROHIBITED,
                    format!(
                        "zone {} is frozen for editing; try again after `musterd ctl thaw`",
                        self.origin
                    ),
                )),
            });
        }
    }

    /// Carries out a `musterd ctl` request.
    async fn control(&mut self, what: ZoneControl) -> Result<String, String> {
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
    async fn wait_writing(&mut self) -> Option<WriteOutcome> {
        if self.writing {
            self.written_rx.recv().await
        } else {
            None
        }
    }

    /// `musterd ctl zone-status` of this zone.
    fn status_text(&self) -> String {
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

    /// Checks and applies each update of a batch to the zone's records, in order. A
    /// panic is contained: that update is answered SERVFAIL (counted as a panic of the
    /// zone task), the records are taken back to the served (durable) version and the
    /// rest of the batch is processed again without it.
    fn process_contained(
        &mut self,
        requests: &[(update::Request, Name)],
    ) -> Vec<Result<update::Applied, update::Rejection>> {
        let mut poisoned = vec![false; requests.len()];
        'again: loop {
            let mut results = Vec::with_capacity(requests.len());
            for (i, (req, signer)) in requests.iter().enumerate() {
                if poisoned[i] {
                    results.push(Err(panic_rejection()));
                    continue;
                }
                let (data, policy, limits) = (&mut self.data, &self.policy, &self.limits);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(test)]
                    if req
                        .updates
                        .iter()
                        .any(|u| u.owner.as_wire().starts_with(crate::INJECT_PANIC))
                    {
                        panic!("panic injected by a test");
                    }
                    update::process(data, req, Some(signer), policy, limits)
                }));
                match outcome {
                    Ok(r) => {
                        if let Err(rej) = &r {
                            tracing::info!(zone = %self.origin, key = %signer, rcode = rej.rcode, "update refused: {}", rej.detail);
                        }
                        results.push(r);
                    }
                    Err(_) => {
                        self.stats.count_panic(crate::stats::PanicSite::Zone);
                        tracing::error!(zone = %self.origin, key = %signer, "processing an update panicked (a bug: please report it); it is answered SERVFAIL and the zone keeps its last version");
                        poisoned[i] = true;
                        if let Some(z) = self.catalog.load().get(&self.origin) {
                            self.data = ZoneData::from_zone(z);
                        }
                        continue 'again;
                    }
                }
            }
            return results;
        }
    }

    /// Processes a batch of updates: see the module documentation for the order.
    async fn updates(&mut self, batch: Vec<(update::Request, Name, oneshot::Sender<Answer>)>) {
        // (build, journal, swap, process) durations for the debug log.
        let mut timing = (
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
        );
        let started = Instant::now();
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(req, signer, reply)| ((req, signer), reply))
            .unzip();
        let mut results: Vec<_> = self
            .process_contained(&requests)
            .into_iter()
            .zip(replies)
            .collect();
        timing.3 = started.elapsed();
        let changed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| matches!(r, Ok(a) if a.changeset.is_some()))
            .map(|(i, _)| i)
            .collect();
        // Everything from `fail_from` on is taken back out and answered SERVFAIL.
        let mut fail_from: Option<(usize, &'static str)> = None;
        let mut zone = None;
        let touched = touched_by(changed.iter().filter_map(|&i| match &results[i].0 {
            Ok(a) => a.changeset.as_ref(),
            Err(_) => None,
        }));
        if !changed.is_empty() {
            let t = Instant::now();
            let built = self.next_version(&touched);
            timing.0 = t.elapsed();
            match built {
                Ok(z) => zone = Some(z),
                Err(message) => {
                    tracing::error!(zone = %self.origin, "the updated zone does not build, the updates are not applied (a bug: please report it): {message}");
                    fail_from = Some((changed[0], "build"));
                }
            }
        }
        if fail_from.is_none() && !changed.is_empty() {
            let sets: Vec<&Changeset> = changed
                .iter()
                .map(|&i| match &results[i].0 {
                    Ok(a) => a.changeset.as_ref().expect("filtered on a changeset"),
                    Err(_) => unreachable!("filtered on Ok"),
                })
                .collect();
            let t = Instant::now();
            let outcomes = append_in_order(&self.journal, &sets).await;
            timing.1 = t.elapsed();
            if let Some(k) = outcomes.iter().position(Result::is_err) {
                if let Err(e) = &outcomes[k] {
                    tracing::error!(zone = %self.origin, "journal append failed, the update is answered SERVFAIL and not applied: {e}");
                }
                fail_from = Some((changed[k], "journal"));
            }
        }
        if let Some((from, why)) = fail_from {
            // Newest first, so each undo finds the records as its update left them.
            for i in (from..results.len()).rev() {
                let (r, _) = &mut results[i];
                if let Ok(applied) = std::mem::replace(r, Err(rejection_placeholder())) {
                    applied.undo(&mut self.data);
                }
            }
            for (r, reply) in results.drain(from..) {
                let _ = r;
                self.metrics.failed(why);
                let _ = reply.send(Answer {
                    rcode: rcode::SERVFAIL,
                    ede: None,
                });
            }
            zone = None;
            let still_changed = results
                .iter()
                .any(|(r, _)| matches!(r, Ok(a) if a.changeset.is_some()));
            if still_changed {
                match self.next_version(&touched) {
                    Ok(z) => zone = Some(z),
                    Err(message) => {
                        tracing::error!(zone = %self.origin, "cannot rebuild the zone: {message}")
                    }
                }
            }
        }
        if let Some(z) = zone {
            let t = Instant::now();
            // IXFR finds the changes before a secondary can see the new serial.
            for (r, _) in &results {
                if let Ok(update::Applied {
                    changeset: Some(cs),
                    ..
                }) = r
                {
                    self.ixfr.record(&self.origin, cs.clone());
                }
            }
            self.publish(z, Some(&touched));
            timing.2 = t.elapsed();
        }
        tracing::debug!(
            zone = %self.origin,
            updates = results.len(),
            process_us = timing.3.as_micros() as u64,
            build_us = timing.0.as_micros() as u64,
            journal_us = timing.1.as_micros() as u64,
            swap_us = timing.2.as_micros() as u64,
            "update batch"
        );
        for (r, reply) in results {
            match r {
                Ok(applied) => {
                    if let Some(cs) = applied.changeset {
                        tracing::debug!(zone = %self.origin, serial = cs.to_serial, "update applied");
                        self.remember(cs);
                    }
                    self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Answer::rcode(rcode::NOERROR));
                }
                // Processing never answers SERVFAIL itself: only a contained panic does.
                Err(rej) if rej.rcode == rcode::SERVFAIL => {
                    self.metrics.failed("panic");
                    let _ = reply.send(Answer::rcode(rej.rcode));
                }
                Err(rej) => {
                    self.metrics.refused(rej.reason);
                    let _ = reply.send(Answer::rcode(rej.rcode));
                }
            }
        }
        if self.unsaved >= self.writeback_changes {
            self.flush().await;
        }
    }

    /// Writes the zone file back now, on this thread (at start, and after a hand edit),
    /// and compacts the journal. A zone file that changed meanwhile or does not load is
    /// left alone: the journal keeps everything until the next write-back.
    fn write_back_now(&mut self) -> Result<(), JournalError> {
        let outcome = write_files(&self.file, Some(&self.base), &self.data, self.file_print);
        self.finish_write_back(outcome)
    }

    /// Takes the result of a write-back: on success the journal is compacted to what the
    /// file does not hold plus the history.
    fn finish_write_back(&mut self, outcome: WriteOutcome) -> Result<(), JournalError> {
        let (serial, file_print, layout_lost) = match outcome {
            WriteOutcome::Done {
                serial,
                file_print,
                layout_lost,
            } => (serial, file_print, layout_lost),
            WriteOutcome::Changed => {
                tracing::info!(zone = %self.origin, "the zone file changed since musterd last read it: its edit is merged before the next write-back");
                self.unsaved_since = Some(Instant::now());
                self.file_print = None;
                return Ok(());
            }
            WriteOutcome::Broken(why) => {
                self.blocked_write_back(&why);
                return Ok(());
            }
            WriteOutcome::Failed(e) => {
                self.unsaved_since = Some(Instant::now());
                return Err(e);
            }
        };
        if let Some(why) = layout_lost {
            tracing::warn!(zone = %self.origin, file = %self.file.display(), "the zone file was written in musterd's own layout, its comments and directives could not be kept: {why}");
        }
        self.file_print = file_print;
        if !update::serial_gt(serial, self.written_serial) && serial != self.written_serial {
            return Ok(());
        }
        self.written_serial = serial;
        self.unsaved = self
            .history
            .iter()
            .filter(|c| update::serial_gt(c.to_serial, serial))
            .count();
        self.unsaved_since = (self.unsaved > 0).then(Instant::now);
        let keep_from = self
            .history
            .len()
            .saturating_sub(self.journal_history.max(self.unsaved));
        self.history.drain(..keep_from);
        let keep: Vec<Changeset> = self.history.iter().cloned().collect();
        self.journal.rewrite_blocking(&keep)?;
        tracing::info!(zone = %self.origin, serial, file = %self.file.display(), "zone file written back, journal compacted");
        Ok(())
    }

    /// A write-back that cannot happen because the operator's file is broken: counted,
    /// logged, retried after the next interval or save.
    fn blocked_write_back(&mut self, why: &str) {
        self.metrics
            .writeback_blocked
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(zone = %self.origin, file = %self.file.display(), unsaved = self.unsaved, "zone file not written back: {why}; the journal keeps every update until the file is fixed and saved");
        self.unsaved_since = Some(Instant::now());
    }

    /// Starts writing the served version back on a blocking thread (on a large zone it
    /// takes longer than many updates, which go on meanwhile); a zone file that changed
    /// since musterd last read it is merged first, and a broken one is not written over.
    async fn flush(&mut self) {
        if self.writing {
            return;
        }
        if let Some(why) = self.file_blocked.clone() {
            if fingerprint(&self.file) == self.file_print {
                self.blocked_write_back(&why);
                return;
            }
        }
        if fingerprint(&self.file) != self.file_print {
            // Merging writes back itself.
            self.reload(false).await;
            return;
        }
        self.unsaved_since = None;
        self.writing = true;
        let (file, base, data, print) = (
            self.file.clone(),
            self.base.clone(),
            self.data.clone(),
            self.file_print,
        );
        let tx = self.written_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(write_files(&file, Some(&base), &data, print));
        });
    }

    /// A background write-back finished.
    fn written(&mut self, outcome: WriteOutcome) {
        self.writing = false;
        if let Err(e) = tokio::task::block_in_place(|| self.finish_write_back(outcome)) {
            tracing::error!(zone = %self.origin, "cannot write the zone file back or compact the journal (the journal keeps every update; retrying later): {e}");
        }
    }

    fn remember(&mut self, cs: Changeset) {
        self.history.push_back(cs);
        self.unsaved += 1;
        self.unsaved_since.get_or_insert_with(Instant::now);
        // The journal holds the history too; bound what is kept in memory the same way,
        // but never drop what is not yet in the zone file.
        while self.history.len() > self.journal_history.max(self.unsaved) {
            self.history.pop_front();
        }
    }

    /// Rereads the zone file (all of it on SIGHUP, `force`; otherwise only when it
    /// changed) and merges a hand edit into the served zone. False when the file is not
    /// applied.
    async fn reload(&mut self, force: bool) -> bool {
        // A write-back in flight finishes first: it must not overwrite what this writes.
        if self.writing {
            if let Some(w) = self.written_rx.recv().await {
                self.written(w);
            }
        }
        let print = fingerprint(&self.file);
        if !force && print == self.file_print {
            return true;
        }
        let (file, state) = match self.read_file().await {
            Ok(Some(read)) => read,
            Ok(None) => {
                self.file_print = print;
                return true;
            }
            Err(refused) => {
                self.file_print = print;
                self.refuse_edit(refused);
                return false;
            }
        };
        self.file_print = print;
        let merged = tokio::task::block_in_place(|| self.merge_file(state, &file));
        let cs = match merged {
            Ok(Some(cs)) => cs,
            Ok(None) => {
                self.file_blocked = None;
                tracing::info!(zone = %self.origin, "zone file reread: no change against the served zone");
                if self.unsaved > 0 || !matches!(state, writeback::FileState::Unedited) {
                    self.write_back_logged();
                }
                return true;
            }
            Err(refused) => {
                self.refuse_edit(refused);
                return false;
            }
        };
        self.file_blocked = None;
        if !self.apply_edit(cs).await {
            return false;
        }
        // Written at once, so that the file carries the served version and the next
        // edit starts from it.
        self.write_back_logged();
        true
    }

    /// Reads and checks the zone file: `None` when it is exactly what musterd wrote.
    /// Reads the zone file on the blocking pool (parsing and checking a large file takes
    /// seconds, which must not hold a runtime thread).
    async fn read_file(&self) -> Result<Option<(ZoneData, writeback::FileState)>, EditRefused> {
        let (file, origin, sizes) = (self.file.clone(), self.origin.clone(), self.gate_sizes());
        tokio::task::spawn_blocking(move || read_zone_file(&file, &origin, &sizes))
            .await
            .unwrap_or_else(|panic| {
                Err(EditRefused::Broken(format!(
                    "reading it panicked: {} (a bug: please report it)",
                    crate::loader::panic_message(&*panic.into_panic())
                )))
            })
    }
}

/// The records of a saved zone file, checked as a load would check them; `None` when the
/// file is as musterd wrote it.
fn read_zone_file(
    file: &Path,
    origin: &Name,
    sizes: &[(Name, u32)],
) -> Result<Option<(ZoneData, writeback::FileState)>, EditRefused> {
    {
        let broken = |m: String| EditRefused::Broken(m);
        let text = std::fs::read_to_string(file)
            .map_err(|e| broken(format!("{}: {e}", file.display())))?;
        let state = writeback::file_state(&text);
        if state == writeback::FileState::Unedited {
            return Ok(None);
        }
        let records = crate::zone::zonefile::parse_str(&text, file, origin)
            .map_err(|e| broken(e.to_string()))?;
        if let Err(errors) = Zone::build_with_sizes(origin, records.clone(), sizes) {
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ");
            return Err(broken(text));
        }
        let data = ZoneData::from_records(origin, records).map_err(|e| broken(e.to_string()))?;
        Ok(Some((data, state)))
    }
}

impl ZoneWorker {
    /// Applies a hand edit's changeset: built, journaled, published. False (nothing
    /// changed) when it does not build or cannot be made durable.
    async fn apply_edit(&mut self, cs: Changeset) -> bool {
        let mut next = self.data.clone();
        if let Err(e) = next.apply_changeset(&cs) {
            tracing::error!(zone = %self.origin, "cannot apply the hand edit: {e}");
            return false;
        }
        let previous = std::mem::replace(&mut self.data, next);
        let touched = touched_by(std::iter::once(&cs));
        let zone = match self.next_version(&touched) {
            Ok(z) => z,
            Err(message) => {
                self.data = previous;
                crate::stats::bump(&self.stats.reload_failures);
                tracing::error!(zone = %self.origin, "the hand edit merged with the updates does not build: {message}");
                return false;
            }
        };
        if let Err(e) = self.journal.append(&cs).await {
            self.data = previous;
            crate::stats::bump(&self.stats.reload_failures);
            tracing::error!(zone = %self.origin, "cannot journal the hand edit, it is not applied: {e}");
            return false;
        }
        tracing::info!(
            zone = %self.origin,
            serial = cs.to_serial,
            removed = cs.removed.len() - 1,
            added = cs.added.len() - 1,
            "hand edit merged with the served zone"
        );
        crate::stats::bump(&self.stats.reloads);
        self.ixfr.record(&self.origin, cs.clone());
        self.publish(zone, Some(&touched));
        self.remember(cs);
        true
    }

    fn write_back_logged(&mut self) {
        if let Err(e) = tokio::task::block_in_place(|| self.write_back_now()) {
            tracing::error!(zone = %self.origin, "cannot write the zone file back or compact the journal (the journal keeps every update; retrying later): {e}");
        }
    }
}

/// The answer to an update whose processing panicked.
fn panic_rejection() -> update::Rejection {
    update::Rejection {
        rcode: rcode::SERVFAIL,
        reason: Reason::Format,
        detail: "processing the update panicked".into(),
    }
}

fn rejection_placeholder() -> update::Rejection {
    update::Rejection {
        rcode: rcode::SERVFAIL,
        reason: Reason::Format,
        detail: String::new(),
    }
}

/// One journal append in flight.
type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Appends `sets` to the journal in this order and waits for all of them: each append
/// is submitted (on its first poll) before the next, so the journal writes them in order,
/// and appends submitted together share one fsync.
async fn append_in_order(journal: &Journal, sets: &[&Changeset]) -> Vec<Result<(), JournalError>> {
    let mut futures: Vec<AppendFuture<'_>> = sets
        .iter()
        .map(|cs| Box::pin(journal.append(cs)) as AppendFuture<'_>)
        .collect();
    let mut out: Vec<Option<Result<(), JournalError>>> = (0..sets.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{Grant, NameMatch};
    use crate::update::{TypeMatch, UpdateRecord};

    const ZONE: &str = "$ORIGIN d.test.\n@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n";

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn add(owner: &str, ip: [u8; 4]) -> (update::Request, Name) {
        let req = update::Request {
            id: 1,
            zone: n("d.test."),
            zclass: crate::proto::rr::class::IN,
            prerequisites: Vec::new(),
            updates: vec![UpdateRecord {
                owner: n(owner),
                rtype: crate::proto::rr::rtype::A,
                class: crate::proto::rr::class::IN,
                ttl: 60,
                rdata: ip.to_vec(),
            }],
            edns: false,
        };
        (req, n("k."))
    }

    /// A worker for d.test. in a fresh state directory (its zone file in `dir`).
    fn worker(dir: &Path) -> ZoneWorker {
        let origin = n("d.test.");
        let file = dir.join("d.test.zone");
        std::fs::write(&file, ZONE).unwrap();
        let records = crate::zone::zonefile::parse_file(&file, &origin).unwrap();
        let (zone, _) = Zone::build_with_sizes(&origin, records, &[]).unwrap();
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.insert(zone.clone());
        let catalog = Arc::new(ArcSwap::from_pointee(catalog));
        let config = UpdateConfig {
            state_dir: dir.join("state"),
            ..UpdateConfig::default()
        };
        let policy = Policy {
            grants: vec![Grant {
                key: n("k."),
                names: NameMatch::Zone,
                types: TypeMatch::All,
            }],
        };
        let spec = ZoneSpec {
            origin: origin.clone(),
            file: Some(file),
            sizes: Vec::new(),
        };
        let (_tx, rx) = mpsc::channel(1);
        ZoneWorker::open(
            &config,
            spec,
            policy,
            &zone,
            rx,
            &catalog,
            Arc::new(History::new(10)),
            Responder::new(Default::default()),
            Arc::new(Stats::default()),
            Arc::new(UpdateMetrics::default()),
        )
        .unwrap()
    }

    #[test]
    fn a_panicking_update_is_answered_servfail_and_the_batch_goes_on() {
        let dir = std::env::temp_dir().join(format!("muster-dyn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = worker(&dir);
        let batch = [
            add("a.d.test.", [10, 0, 0, 1]),
            add("inject-panic.d.test.", [10, 0, 0, 2]),
            add("b.d.test.", [10, 0, 0, 3]),
        ];
        let results = w.process_contained(&batch);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().err().map(|r| r.rcode),
            Some(rcode::SERVFAIL)
        );
        assert_eq!(w.stats.panics_at(crate::stats::PanicSite::Zone), 1);
        // The records hold the two good updates, applied from the durable version.
        assert!(w.data.node(&n("a.d.test.")).is_some());
        assert!(w.data.node(&n("b.d.test.")).is_some());
        assert!(w.data.node(&n("inject-panic.d.test.")).is_none());
        assert_eq!(w.data.serial(), 12, "one serial step per applied update");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
