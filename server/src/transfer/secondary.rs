//! Secondary zones: zones pulled from a primary by IXFR (RFC 1995) with AXFR (RFC 5936)
//! fallback, refreshed on the SOA timers and on NOTIFY (RFC 1996), kept on disk, and
//! expired per the SOA EXPIRE (RFC 1035 §4.3.5).
//!
//! Each zone has one task. It asks the primary for its SOA over TCP (one connection, no
//! UDP truncation to care about), and when the primary's serial is ahead (RFC 1982) it
//! asks for an IXFR from our serial; the answer is either the changes, applied to a copy
//! of our records, or the whole zone. When the IXFR fails in any way (refused, not
//! implemented, a removal of a record we do not hold) it asks for an AXFR. Only a
//! transfer that arrived complete (the closing SOA seen, every TSIG verified, the last
//! message signed) and builds into a valid [`Zone`] is saved (atomically, as a zone
//! file in the state directory) and then swapped into the catalog: a half transfer is
//! never served.
//!
//! Timers (RFC 1035 §3.3.13): after a good refresh the next comes after REFRESH, after a
//! failed one after RETRY. A NOTIFY from the primary's address starts a refresh at once,
//! but at most one per second per zone (a flood of NOTIFYs costs one refresh, row 36).
//! When no refresh succeeded for EXPIRE seconds, the zone is expired: its names are
//! answered SERVFAIL (with EDE 22 "No Reachable Authority" when the query had EDNS) and
//! it is not transferred on, until the primary is reachable again. The time of the last
//! good refresh is the saved file's modification time, so expiry counts across restarts
//! and a restart with the primary down serves the saved copy until then.
//!
//! Limits: one transfer may bring at most `transfer.in_max_bytes` octets of messages and
//! `transfer.in_max_records` records ([`InLimits`]); a primary that sends more is cut off,
//! the refresh fails (logged with the zone and the primary) and the copy we hold stays
//! served, so a runaway or hostile primary cannot exhaust our memory or disk.
//!
//! NOTIFY in is answered by [`crate::transfer::notify`], which pokes the zone's task through
//! [`Secondaries::notified`].
//!
//! An incremental transfer patches the served copy with the names its changes touched
//! ([`Zone::patch`], as a dynamic update does); a full transfer is built anew.
//!
//! IXFR out: each refresh records its change (the difference between the copy served
//! before and the new one) in the IXFR history and appends it to `<zone>.journal` in the
//! state directory before the new copy is served, so a further secondary gets the change
//! incrementally at once, and after a restart (the journal, cut to what leads to the
//! saved copy, starts the history again).
//!
//! Limitations: one primary per zone; the SOA query goes over TCP only.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clock::unix_now;
use crate::config::transfer::{InLimits, SecondarySpec};
use crate::proto::builder::{Compressor, Ede, MessageBuilder, Section};
use crate::proto::name::Name;
use crate::proto::query::Query;
use crate::proto::reader::{Header, Reader};
use crate::proto::rr::{Rclass, Record, Rtype, Soa};
use crate::proto::tsig::{self, Key, KeyRing, StreamVerifier};
use crate::proto::types::serial_gt;
use crate::proto::types::Opcode;
use crate::proto::types::Rcode;
use crate::transfer::metrics::XfrMetrics;
use crate::update::journal::Journal;
use crate::zone::catalog::Catalog;
use crate::zone::changeset::Changeset;
use crate::zone::history::History;
use crate::zone::patch::{NameContent, SetContent};
use crate::zone::Zone;

/// RFC 8914 §4.23: "No Reachable Authority".
pub const EDE_NO_REACHABLE_AUTHORITY: u16 = 22;

/// Waits for the primary: connecting, and each message of an answer.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Shortest time between two refreshes of a zone (NOTIFY floods, tiny SOA timers).
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Timers before the first SOA is known.
const DEFAULT_RETRY: Duration = Duration::from_secs(10);

/// Why secondary zones cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SecondaryError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why one refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("connecting to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    #[error("talking to the primary: {0}")]
    Io(#[from] std::io::Error),
    #[error("the primary did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the primary answered {}", Rcode(*.0))]
    Rcode(u16),
    #[error("malformed answer from the primary: {0}")]
    Malformed(&'static str),
    #[error("the answer's TSIG does not verify: {0}")]
    Tsig(#[from] tsig::ResponseError),
    #[error("signing the request: {0}")]
    Sign(#[from] tsig::SignError),
    #[error("the transfer ended without its closing SOA, or the last message was not signed")]
    Incomplete,
    #[error("the changes do not apply to our copy: {0}")]
    Apply(String),
    #[error("the transferred zone is not valid: {0}")]
    Invalid(String),
    #[error("saving the zone: {0}")]
    Save(#[from] crate::update::journal::JournalError),
    #[error(
        "the transfer is larger than transfer.{key} = {limit} and was cut off; the copy we \
         hold stays served (raise the limit if the zone is meant to be this large)"
    )]
    TooLarge { key: &'static str, limit: u64 },
}

/// Where a secondary zone is saved: `<state-dir>/<zone>.secondary.zone`, the zone named
/// as the journal names it (so no name escapes the directory).
pub fn state_file(state_dir: &Path, zone: &Name) -> PathBuf {
    let journal = crate::update::journal::file_name(zone);
    let stem = journal.strip_suffix(".journal").unwrap_or(&journal);
    state_dir.join(format!("{stem}.secondary.zone"))
}

/// SOA timers of the copy we hold.
#[derive(Debug, Clone, Copy)]
struct Timers {
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

impl Timers {
    fn of(soa: &Soa) -> Timers {
        let secs = |s: u32| Duration::from_secs(u64::from(s));
        Timers {
            refresh: secs(soa.refresh).clamp(MIN_INTERVAL, Duration::from_secs(86400)),
            retry: secs(soa.retry).clamp(MIN_INTERVAL, Duration::from_secs(86400)),
            expire: secs(soa.expire),
        }
    }
}

/// What we hold of one zone.
#[derive(Debug, Default)]
struct State {
    serial: Option<u32>,
    timers: Option<Timers>,
    /// Unix time of the last good refresh.
    refreshed: Option<u64>,
    /// Changesets in the journal file.
    journaled: usize,
}

/// One secondary zone.
pub struct SecondaryZone {
    spec: SecondarySpec,
    limits: InLimits,
    key: Option<Arc<Key>>,
    file: PathBuf,
    poke: tokio::sync::Notify,
    /// The next refresh transfers the whole zone (`musterd ctl retransfer`).
    full: AtomicBool,
    state: Mutex<State>,
    /// Expired, or never loaded: answered SERVFAIL.
    unavailable: AtomicBool,
    /// The changes of each refresh, in `<state-dir>/<zone>.journal`: the IXFR history this
    /// zone serves to further secondaries, also after a restart (`None` when it cannot be
    /// opened: the history is then kept in memory only).
    journal: Option<Journal>,
}

impl SecondaryZone {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the zone has been without a good refresh for longer than EXPIRE.
    fn expired_at(&self, now: u64) -> bool {
        let s = self.lock();
        match (s.refreshed, s.timers) {
            (Some(at), Some(t)) => now.saturating_sub(at) > t.expire.as_secs(),
            _ => true,
        }
    }
}

/// Every secondary zone.
#[derive(Default)]
pub struct Secondaries {
    zones: Vec<Arc<SecondaryZone>>,
    /// Set while some zone is expired or not loaded yet: only then does the query path
    /// look further ([`Secondaries::maybe_unavailable`]).
    any_down: AtomicBool,
}

/// What the refresh tasks share with the rest of the server: the catalog a refreshed copy
/// goes into, the IXFR history its change is recorded in, the metrics, and what
/// precompiles its answers as a reload would.
pub struct Refreshing {
    pub secondaries: Arc<Secondaries>,
    pub catalog: Arc<ArcSwap<Catalog>>,
    pub history: Arc<History>,
    pub metrics: Arc<XfrMetrics>,
    pub responder: crate::query::answer::Responder,
    pub stats: Arc<crate::stats::Stats>,
}

impl Secondaries {
    /// Loads the saved copies from `state_dir` into `catalog`. A copy that does not read
    /// or build is logged and ignored: the zone is transferred anew.
    pub fn load(
        specs: &[SecondarySpec],
        limits: InLimits,
        keys: &KeyRing,
        state_dir: &Path,
        catalog: &Arc<ArcSwap<Catalog>>,
        metrics: &XfrMetrics,
        history: &History,
    ) -> Result<Secondaries, SecondaryError> {
        if !specs.is_empty() {
            std::fs::create_dir_all(state_dir).map_err(|source| SecondaryError::StateDir {
                path: state_dir.into(),
                source,
            })?;
        }
        let mut zones = Vec::new();
        let now = unix_now();
        for spec in specs {
            let z = SecondaryZone {
                spec: spec.clone(),
                limits,
                key: spec.key.as_ref().and_then(|k| keys.get(k).cloned()),
                file: state_file(state_dir, &spec.origin),
                poke: tokio::sync::Notify::new(),
                full: AtomicBool::new(false),
                state: Mutex::new(State::default()),
                unavailable: AtomicBool::new(true),
                journal: None,
            };
            if z.file.exists() {
                match load_saved(&z.file, &spec.origin) {
                    Ok((zone, saved_at)) => {
                        {
                            let mut s = z.lock();
                            s.serial = Some(zone.serial());
                            s.timers = Some(Timers::of(&zone.soa));
                            s.refreshed = Some(saved_at);
                        }
                        let expired = z.expired_at(now);
                        z.unavailable.store(expired, Ordering::Relaxed);
                        metrics.set_refreshed(&spec.origin, saved_at);
                        metrics.set_expired(&spec.origin, expired);
                        tracing::info!(
                            zone = %spec.origin,
                            serial = zone.serial(),
                            file = %z.file.display(),
                            age_s = now.saturating_sub(saved_at),
                            expired,
                            "secondary zone loaded from its saved copy"
                        );
                        let zone = Arc::new(zone);
                        catalog.rcu(|c| {
                            let mut next = (**c).clone();
                            next.insert(zone.clone());
                            next
                        });
                    }
                    Err(e) => tracing::error!(
                        zone = %spec.origin,
                        "the saved copy {} cannot be used ({e}); transferring the zone anew",
                        z.file.display()
                    ),
                }
            }
            let mut z = z;
            let serial = z.lock().serial;
            if let Some((journal, in_file)) = open_history(state_dir, &spec.origin, serial, history)
            {
                z.journal = Some(journal);
                z.lock().journaled = in_file;
            }
            zones.push(Arc::new(z));
        }
        let any_down = AtomicBool::new(zones.iter().any(|z| z.unavailable.load(Ordering::Relaxed)));
        Ok(Secondaries { zones, any_down })
    }

    /// True when some zone is expired or not loaded.
    /// Transfers `origin` in full from its primary now; false when it is no secondary
    /// zone here.
    pub fn retransfer(&self, origin: &Name) -> bool {
        let Some(z) = self
            .zones
            .iter()
            .find(|z| z.spec.origin.eq_ignore_case(origin))
        else {
            return false;
        };
        z.full.store(true, Ordering::Relaxed);
        z.poke.notify_one();
        true
    }

    /// Lines about a secondary zone for `musterd ctl zone-status`.
    pub fn describe(&self, origin: &Name) -> Option<String> {
        let z = self
            .zones
            .iter()
            .find(|z| z.spec.origin.eq_ignore_case(origin))?;
        let s = z.lock();
        Some(format!(
            "kind: secondary of {}\nstored serial: {}\nlast good refresh: {}\navailable: {}\n",
            z.spec.primary,
            s.serial.map_or("none".into(), |v| v.to_string()),
            s.refreshed.map_or("never".into(), |t| format!(
                "{}s ago",
                unix_now().saturating_sub(t)
            )),
            if z.unavailable.load(Ordering::Relaxed) {
                "no (SERVFAIL: expired or not loaded)"
            } else {
                "yes"
            },
        ))
    }

    pub fn any_unavailable(&self) -> bool {
        self.zones
            .iter()
            .any(|z| z.unavailable.load(Ordering::Relaxed))
    }

    /// [`Secondaries::unavailable`], with one load when every zone is up (the query
    /// path asks for every query).
    pub fn maybe_unavailable(&self, qname: &[u8]) -> bool {
        self.any_down.load(Ordering::Relaxed) && self.unavailable(qname)
    }

    /// True when `qname` (lower-cased wire) is in a secondary zone that must not be
    /// answered from.
    pub fn unavailable(&self, qname: &[u8]) -> bool {
        self.zones.iter().any(|z| {
            z.unavailable.load(Ordering::Relaxed)
                && crate::proto::name::suffixes(qname).any(|s| s == z.spec.origin.as_wire())
        })
    }

    /// A NOTIFY for `qname` (lower-cased wire) and `qclass` came from `from`: the
    /// secondary zone of that name whose primary is `from` refreshes now. `None` when
    /// there is no such zone.
    pub(crate) fn notified(&self, qname: &[u8], qclass: Rclass, from: IpAddr) -> Option<&Name> {
        let zone = self
            .zones
            .iter()
            .find(|z| z.spec.origin.as_wire() == qname && qclass == Rclass::IN)
            .filter(|z| z.spec.primary.ip() == from)?;
        zone.poke.notify_one();
        Some(&zone.spec.origin)
    }
}

/// A SERVFAIL for a query into an expired zone, with EDE 22 when the query has EDNS.
pub fn servfail(q: &Query<'_>, max_udp_payload: u16) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + q.question.len());
    let mut comp = Compressor::default();
    let mut w = MessageBuilder::new(
        &mut buf,
        &mut comp,
        q.id,
        q.opcode,
        q.copy_flags,
        q.question,
    );
    w.set_rcode(Rcode::SERVFAIL);
    if let Some(e) = q.edns {
        let info = Ede {
            code: EDE_NO_REACHABLE_AUTHORITY,
            text: "the zone expired: its primary has not been reachable for the SOA EXPIRE time",
        };
        w.opt_with_ede(max_udp_payload, Rcode::SERVFAIL, e.dnssec_ok, Some(info));
    }
    w.finish();
    buf
}

/// Reads a saved copy; returns it with the time it was last confirmed current.
fn load_saved(path: &Path, origin: &Name) -> Result<(Zone, u64), String> {
    let records = crate::zone::zonefile::parse_file(path, origin).map_err(|e| e.to_string())?;
    let (zone, _) = Zone::build(origin, records).map_err(|e| {
        e.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let at = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok((zone, at))
}

/// The zone file text of a copy.
fn zone_text(origin: &Name, primary: SocketAddr, records: &[Record]) -> String {
    let mut text = format!(
        "; secondary copy of {origin} from {primary}, saved by musterd: it is replaced at each \
         transfer, do not edit\n"
    );
    for r in records {
        text.push_str(&crate::zone::zonefile::format_record(r, None));
        text.push('\n');
    }
    text
}

/// Starts one refresh task per secondary zone.
pub fn start(ctx: Arc<Refreshing>) {
    for z in &ctx.secondaries.zones {
        tokio::spawn(run(z.clone(), ctx.clone()));
    }
}

async fn run(zone: Arc<SecondaryZone>, ctx: Arc<Refreshing>) {
    loop {
        let started = tokio::time::Instant::now();
        let wait = match refresh(&zone, &ctx).await {
            Ok(()) => zone.lock().timers.map_or(DEFAULT_RETRY, |t| t.refresh),
            Err(e) => {
                ctx.metrics.in_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(zone = %zone.spec.origin, primary = %zone.spec.primary, "refresh failed: {e}");
                zone.lock().timers.map_or(DEFAULT_RETRY, |t| t.retry)
            }
        };
        update_expiry(&zone, &ctx);
        // The next refresh: the timer, a NOTIFY, or expiry (to stop serving in time).
        let expires_in = {
            let s = zone.lock();
            match (s.refreshed, s.timers) {
                (Some(at), Some(t)) => (at + t.expire.as_secs() + 1).checked_sub(unix_now()),
                _ => None,
            }
        };
        let deadline = tokio::time::sleep(wait);
        tokio::pin!(deadline);
        loop {
            let expiry =
                tokio::time::sleep(Duration::from_secs(expires_in.unwrap_or(u64::MAX / 4)));
            tokio::select! {
                _ = &mut deadline => break,
                _ = zone.poke.notified() => break,
                _ = expiry, if expires_in.is_some() && !zone.unavailable.load(Ordering::Relaxed) => {
                    update_expiry(&zone, &ctx);
                }
            }
        }
        // Rate limit: NOTIFY floods and zero timers cost at most one refresh a second.
        tokio::time::sleep_until(started + MIN_INTERVAL).await;
    }
}

fn update_expiry(zone: &SecondaryZone, ctx: &Refreshing) {
    let expired = zone.expired_at(unix_now());
    let was = zone.unavailable.swap(expired, Ordering::Relaxed);
    if expired && !was {
        tracing::error!(zone = %zone.spec.origin, primary = %zone.spec.primary, "secondary zone expired (no good refresh within the SOA EXPIRE time): answering SERVFAIL until the primary is reachable");
    }
    ctx.metrics.set_expired(&zone.spec.origin, expired);
    let s = &ctx.secondaries;
    s.any_down.store(s.any_unavailable(), Ordering::Relaxed);
}

/// One refresh: SOA check, then IXFR or AXFR, validate, save, swap in.
async fn refresh(zone: &SecondaryZone, ctx: &Refreshing) -> Result<(), RefreshError> {
    let origin = &zone.spec.origin;
    // What the catalog serves, not what we last stored: a swap that something else
    // overwrote is then transferred again.
    let full = zone.full.swap(false, Ordering::Relaxed);
    let current = ctx.catalog.load().get(origin).cloned().filter(|_| !full);
    let ours = current.as_ref().map(|z| z.serial());
    let answer = exchange(zone, Rtype::SOA, None).await?;
    let theirs = answer
        .first()
        .filter(|r| r.rtype == Rtype::SOA)
        .and_then(|r| Soa::from_rdata(&r.rdata))
        .ok_or(RefreshError::Malformed(
            "no SOA in the answer to the SOA query",
        ))?
        .serial;
    if let (Some(ours), Some(_)) = (ours, &current) {
        if !serial_gt(theirs, ours) {
            // Current: the copy is confirmed, which is what expiry counts from.
            confirm(zone, ctx);
            return Ok(());
        }
    }
    let (records, touched, kind) = match &current {
        Some(cur) => match ixfr(zone, cur).await {
            Ok(Some((records, touched))) => (records, touched, 1),
            Ok(None) => (axfr(zone).await?, BTreeSet::new(), 0),
            Err(e) => {
                tracing::info!(zone = %origin, "IXFR failed ({e}); asking for AXFR");
                (axfr(zone).await?, BTreeSet::new(), 0)
            }
        },
        None => (axfr(zone).await?, BTreeSet::new(), 0),
    };
    // An incremental change patches the served copy, as an update does; the rest is built.
    let built = match current
        .as_deref()
        .and_then(|cur| patched(cur, &records, &touched))
    {
        Some(z) => z,
        None => {
            let (built, warnings) = Zone::build(origin, records.clone()).map_err(|e| {
                RefreshError::Invalid(
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
            for w in warnings {
                tracing::debug!(zone = %origin, "{}", w.message);
            }
            built
        }
    };
    let text = zone_text(origin, zone.spec.primary, &records);
    let file = zone.file.clone();
    tokio::task::spawn_blocking(move || {
        crate::update::journal::write_atomically(&file, text.as_bytes())
    })
    .await
    .map_err(|e| RefreshError::Apply(format!("saving task: {e}")))??;
    let serial = built.serial();
    let timers = Timers::of(&built.soa);
    let patched = built.is_patched();
    let built = Arc::new(built);
    record_change(zone, ctx, current.clone(), &built).await;
    ctx.catalog.rcu(|c| {
        let mut next = (**c).clone();
        next.insert(built.clone());
        next
    });
    {
        let mut s = zone.lock();
        s.serial = Some(serial);
        s.timers = Some(timers);
        s.refreshed = Some(unix_now());
    }
    ctx.metrics.inbound[kind].fetch_add(1, Ordering::Relaxed);
    ctx.metrics.set_refreshed(origin, unix_now());
    update_expiry(zone, ctx);
    tracing::info!(zone = %origin, serial, from = ours, kind = ["axfr", "ixfr"][kind], records = records.len(), patched, "secondary zone refreshed");
    // Precompiled answers, as for a reload.
    let catalog = ctx.catalog.load();
    if let Some(z) = catalog.get(origin).cloned() {
        let origins = catalog.zones().map(|z| z.origin.clone()).collect();
        crate::loader::precompile_in_background(
            vec![z],
            ctx.responder.clone(),
            origins,
            ctx.stats.clone(),
        );
    }
    Ok(())
}

/// Opens `origin`'s journal and starts its IXFR history with the changes that lead to the
/// saved copy's `serial` (a journal ahead of the copy, cut off by a crash, is not used).
fn open_history(
    state_dir: &Path,
    origin: &Name,
    serial: Option<u32>,
    history: &History,
) -> Option<(Journal, usize)> {
    let (journal, recovery) = match Journal::open(state_dir, origin) {
        Ok(opened) => opened,
        Err(e) => {
            tracing::warn!(zone = %origin, "the IXFR history of the secondary zone is kept in memory only: {e}");
            history.reset(origin, []);
            return None;
        }
    };
    let mut chain = recovery.changesets;
    let in_file = chain.len();
    let end = serial.and_then(|s| chain.iter().rposition(|c| c.to_serial == s));
    chain.truncate(end.map_or(0, |i| i + 1));
    history.reset(origin, chain);
    Some((journal, in_file))
}

/// Records the change from `old` to `new` in the zone's history and journal before `new`
/// is served, so that a further secondary asking IXFR the moment it sees the new serial
/// gets it incrementally (also after our restart). A copy with no predecessor, or one
/// whose serial did not move forward, starts the history anew.
async fn record_change(
    zone: &SecondaryZone,
    ctx: &Refreshing,
    old: Option<Arc<Zone>>,
    new: &Arc<Zone>,
) {
    let origin = &zone.spec.origin;
    let history = &ctx.history;
    let cs = match old {
        Some(old) if serial_gt(new.serial(), old.serial()) => {
            let new = new.clone();
            tokio::task::spawn_blocking(move || crate::transfer::stream::diff(&old, &new))
                .await
                .ok()
        }
        _ => None,
    };
    let Some(cs) = cs else {
        history.forget(origin);
        if let Some(j) = &zone.journal {
            if j.rewrite(&[]).await.is_ok() {
                zone.lock().journaled = 0;
            }
        }
        return;
    };
    history.record_change(origin, Some(cs.clone()), new.record_count);
    let Some(j) = &zone.journal else {
        return;
    };
    let kept = history.changesets(origin);
    let journaled = zone.lock().journaled;
    let written = if journaled >= 2 * kept.len().max(1) {
        // Bounded like the history: rewritten with what it keeps.
        let keep: Vec<Changeset> = kept.iter().map(|c| (**c).clone()).collect();
        j.rewrite(&keep).await.map(|()| kept.len())
    } else {
        j.append(&cs).await.map(|()| journaled + 1)
    };
    if let Ok(n) = written {
        zone.lock().journaled = n;
    }
    if let Err(e) = written {
        tracing::warn!(zone = %origin, "the secondary zone's IXFR history is not saved ({e}); after a restart its first IXFR answers are full ctx");
    }
}

/// Marks the copy as confirmed current now (and the saved file with it).
fn confirm(zone: &SecondaryZone, ctx: &Refreshing) {
    let now = unix_now();
    zone.lock().refreshed = Some(now);
    if let Ok(f) = std::fs::File::options().write(true).open(&zone.file) {
        let _ = f.set_modified(SystemTime::now());
    }
    ctx.metrics.set_refreshed(&zone.spec.origin, now);
    update_expiry(zone, ctx);
}

async fn axfr(zone: &SecondaryZone) -> Result<Vec<Record>, RefreshError> {
    let mut records = exchange(zone, Rtype::AXFR, None).await?;
    if records.len() < 2 {
        return Err(RefreshError::Incomplete);
    }
    // The closing SOA repeats the first.
    records.pop();
    Ok(records)
}

/// The zone after an IXFR from `current`, and the names its changes touched (lower-cased;
/// empty when the primary answered with the whole zone); `None` when the primary sent only
/// its SOA.
async fn ixfr(
    zone: &SecondaryZone,
    current: &Zone,
) -> Result<Option<(Vec<Record>, BTreeSet<Name>)>, RefreshError> {
    let ours = crate::transfer::stream::soa_record(current);
    let records = exchange(zone, Rtype::IXFR, Some(&ours)).await?;
    if records.len() < 2 {
        return Ok(None);
    }
    let incremental = records[1].rtype == Rtype::SOA && records.len() > 2;
    if !incremental {
        let mut all = records;
        all.pop();
        return Ok(Some((all, BTreeSet::new())));
    }
    let changes = split_changesets(&records)?;
    let mut data = crate::transfer::stream::zone_records(current);
    for cs in &changes {
        apply(&mut data, cs)?;
    }
    let touched = changes.iter().flat_map(Changeset::touched_names).collect();
    Ok(Some((data, touched)))
}

/// The next version after an incremental transfer: `current` patched with what each of
/// the `touched` names holds in `records` (the zone after the transfer), as the build
/// would take them (duplicates dropped, an RRset's lowest TTL). `None` when the change
/// cannot be patched (the caller builds the zone from `records`).
fn patched(current: &Zone, records: &[Record], touched: &BTreeSet<Name>) -> Option<Zone> {
    if touched.is_empty() {
        return None;
    }
    // name -> (owner as written, type -> (TTL, rdatas in order))
    type Sets = BTreeMap<Rtype, (u32, Vec<Box<[u8]>>)>;
    let mut names: BTreeMap<Name, (Name, Sets)> = touched
        .iter()
        .map(|k| (k.clone(), (k.clone(), Sets::new())))
        .collect();
    for r in records {
        let key = r.owner.to_lowercase();
        let Some((owner, sets)) = names.get_mut(&key) else {
            continue;
        };
        if sets.is_empty() {
            *owner = r.owner.clone();
        }
        let (ttl, rdatas) = sets.entry(r.rtype).or_insert((r.ttl, Vec::new()));
        *ttl = (*ttl).min(r.ttl);
        if !rdatas.iter().any(|d| **d == *r.rdata) {
            rdatas.push(r.rdata.clone().into_boxed_slice());
        }
    }
    let contents: Vec<NameContent<'_>> = names
        .values()
        .map(|(owner, sets)| NameContent {
            owner,
            sets: sets
                .iter()
                .map(|(&rtype, (ttl, rdatas))| SetContent {
                    rtype,
                    ttl: *ttl,
                    rdatas,
                })
                .collect(),
        })
        .collect();
    current.patch(&contents, records.len()).ok()
}

/// Cuts an incremental IXFR answer into its changesets (RFC 1995 §4).
fn split_changesets(records: &[Record]) -> Result<Vec<Changeset>, RefreshError> {
    let serial = |r: &Record| Soa::from_rdata(&r.rdata).map(|s| s.serial);
    let bad = RefreshError::Malformed("the incremental transfer is not a sequence of changes");
    let mut out = Vec::new();
    // records[0] and the last are the new SOA.
    let body = &records[1..records.len() - 1];
    let mut i = 0;
    while i < body.len() {
        let old = &body[i];
        if old.rtype != Rtype::SOA {
            return Err(bad);
        }
        let mut removed = vec![old.clone()];
        i += 1;
        while i < body.len() && body[i].rtype != Rtype::SOA {
            removed.push(body[i].clone());
            i += 1;
        }
        let new = body
            .get(i)
            .ok_or(RefreshError::Malformed("a change without its new SOA"))?;
        let mut added = vec![new.clone()];
        i += 1;
        while i < body.len() && body[i].rtype != Rtype::SOA {
            added.push(body[i].clone());
            i += 1;
        }
        out.push(Changeset {
            from_serial: serial(old).ok_or(RefreshError::Malformed("bad SOA"))?,
            to_serial: serial(new).ok_or(RefreshError::Malformed("bad SOA"))?,
            removed,
            added,
        });
    }
    Ok(out)
}

/// Applies one changeset to a record list (SOA first): every removal must be there.
fn apply(data: &mut Vec<Record>, cs: &Changeset) -> Result<(), RefreshError> {
    let serial = Soa::from_rdata(&data[0].rdata).map(|s| s.serial);
    if serial != Some(cs.from_serial) {
        return Err(RefreshError::Apply(format!(
            "a change from serial {} while we hold {}",
            cs.from_serial,
            serial.unwrap_or(0)
        )));
    }
    type Key = (Name, Rtype, Vec<u8>);
    let key = |r: &Record| -> Key { (r.owner.to_lowercase(), r.rtype, r.rdata.clone()) };
    let mut slots: Vec<Option<Record>> = data.drain(1..).map(Some).collect();
    let mut index: std::collections::HashMap<Key, usize> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((key(r.as_ref()?), i)))
        .collect();
    for r in &cs.removed[1..] {
        let Some(i) = index.remove(&key(r)) else {
            return Err(RefreshError::Apply(format!(
                "removal of {} {} which we do not hold",
                r.owner, r.rtype
            )));
        };
        slots[i] = None;
    }
    for r in &cs.added[1..] {
        match index.get(&key(r)) {
            // Already there: the addition may change the TTL.
            Some(&i) => slots[i] = Some(r.clone()),
            None => {
                index.insert(key(r), slots.len());
                slots.push(Some(r.clone()));
            }
        }
    }
    data[0] = cs.added[0].clone();
    data.extend(slots.into_iter().flatten());
    Ok(())
}

/// Sends one query to the primary over TCP and reads every message of the answer,
/// returning the answer records in order. For AXFR and IXFR it reads until the
/// transfer is complete (see [`Ending`]).
async fn exchange(
    zone: &SecondaryZone,
    qtype: Rtype,
    ixfr_soa: Option<&Record>,
) -> Result<Vec<Record>, RefreshError> {
    let primary = zone.spec.primary;
    let mut stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(primary))
        .await
        .map_err(|_| RefreshError::Timeout(IO_TIMEOUT))?
        .map_err(|e| RefreshError::Connect(primary, e))?;
    let _ = stream.set_nodelay(true);
    let id = crate::proto::random_id();
    let q = query_message(id, zone.spec.origin.as_wire(), qtype, ixfr_soa);
    let mut q = q;
    let mut verifier = match &zone.key {
        Some(k) => {
            let mac = tsig::sign_request(&mut q, k, tsig::DEFAULT_FUDGE, unix_now())?;
            Some(StreamVerifier::new(k, &mac))
        }
        None => None,
    };
    let mut frame = (q.len() as u16).to_be_bytes().to_vec();
    frame.extend_from_slice(&q);
    stream.write_all(&frame).await?;
    let mut records = Vec::new();
    let mut ending = Ending::new(qtype);
    let mut buf = vec![0u8; 65535];
    let mut first = true;
    let mut bytes = 0u64;
    loop {
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            let n = u16::from_be_bytes(len) as usize;
            stream.read_exact(&mut buf[..n]).await?;
            Ok::<usize, std::io::Error>(n)
        };
        let n = tokio::time::timeout(IO_TIMEOUT, read)
            .await
            .map_err(|_| RefreshError::Timeout(IO_TIMEOUT))??;
        bytes += n as u64;
        if bytes > zone.limits.max_bytes {
            return Err(RefreshError::TooLarge {
                key: "in_max_bytes",
                limit: zone.limits.max_bytes,
            });
        }
        let msg = &buf[..n];
        let Some(h) = Header::parse(msg).filter(|h| h.id == id && h.is_response()) else {
            return Err(RefreshError::Malformed(
                "an answer with another ID, or not an answer",
            ));
        };
        let signed = match &mut verifier {
            Some(v) => v.verify(msg, unix_now())?,
            None => true,
        };
        if h.rcode() != Rcode::NOERROR {
            return Err(RefreshError::Rcode(h.rcode().into()));
        }
        let before = records.len();
        parse_answers(msg, &mut records)?;
        if records.len() > zone.limits.max_records {
            return Err(RefreshError::TooLarge {
                key: "in_max_records",
                limit: zone.limits.max_records as u64,
            });
        }
        for r in &records[before..] {
            if !r.owner.is_subdomain_of(&zone.spec.origin) {
                return Err(RefreshError::Malformed("a record outside the zone"));
            }
            ending.feed(r);
        }
        let done = qtype == Rtype::SOA
            || ending.done
            || (first && records.len() == 1 && qtype == Rtype::IXFR);
        first = false;
        if done {
            if !signed {
                return Err(RefreshError::Incomplete);
            }
            return Ok(records);
        }
    }
}

/// The query for `qtype` of the zone `origin`; an IXFR carries the SOA of the copy we
/// hold in the authority section (RFC 1995 §3).
fn query_message(id: u16, origin: &[u8], qtype: Rtype, ixfr_soa: Option<&Record>) -> Vec<u8> {
    let mut q = Vec::with_capacity(128);
    let mut comp = Compressor::default();
    let question = crate::proto::builder::question(origin, qtype, Rclass::IN);
    let mut w = MessageBuilder::request(&mut q, &mut comp, id, Opcode::QUERY, 0, &question);
    if let Some(soa) = ixfr_soa {
        // Our copy's SOA passed the zone checks, so the builder takes it.
        let _ = w.record(
            Section::Authority,
            origin,
            Rtype::SOA,
            Rclass::IN,
            soa.ttl,
            &soa.rdata,
        );
    }
    w.finish();
    q
}

/// Tells when an AXFR or IXFR answer is complete (RFC 5936 §2.2, RFC 1995 §4).
#[derive(Debug)]
struct Ending {
    ixfr: bool,
    first_serial: Option<u32>,
    count: usize,
    state: Part,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Start,
    Full,
    Removals,
    Additions(u32),
}

impl Ending {
    fn new(qtype: Rtype) -> Ending {
        Ending {
            ixfr: qtype == Rtype::IXFR,
            first_serial: None,
            count: 0,
            state: Part::Start,
            done: false,
        }
    }

    fn feed(&mut self, r: &Record) {
        let soa =
            (r.rtype == Rtype::SOA).then(|| Soa::from_rdata(&r.rdata).map_or(0, |s| s.serial));
        self.count += 1;
        if self.done {
            return;
        }
        match (self.count, self.state) {
            (1, _) => {
                self.first_serial = soa;
                self.state = Part::Full;
            }
            (2, _) if self.ixfr => match soa {
                Some(s) if Some(s) == self.first_serial => self.done = true,
                Some(_) => self.state = Part::Removals,
                None => self.state = Part::Full,
            },
            (_, Part::Full) => self.done = soa.is_some(),
            (_, Part::Removals) => {
                if let Some(s) = soa {
                    self.state = Part::Additions(s);
                }
            }
            (_, Part::Additions(to)) => {
                if let Some(s) = soa {
                    if Some(s) == self.first_serial && to == s {
                        self.done = true;
                    } else {
                        self.state = Part::Removals;
                    }
                }
            }
            (_, Part::Start) => {}
        }
    }
}

/// Appends the answer records of one message.
fn parse_answers(msg: &[u8], out: &mut Vec<Record>) -> Result<(), RefreshError> {
    let bad = RefreshError::Malformed;
    let (h, mut r) = Reader::after_header(msg).map_err(|_| bad("header"))?;
    for _ in 0..h.qdcount() {
        r.question().map_err(|_| bad("question name"))?;
    }
    for _ in 0..h.ancount() {
        let rec = r
            .record()
            .map_err(|_| bad("a record is cut short or its owner name is malformed"))?;
        if rec.class != Rclass::IN {
            return Err(bad("a record of another class"));
        }
        let rdata = r.rdata_uncompressed(&rec).map_err(|_| bad("record data"))?;
        out.push(Record {
            owner: Name::from_wire(&rec.owner).map_err(|_| bad("owner name"))?,
            rtype: rec.rtype,
            class: rec.class,
            ttl: rec.ttl,
            rdata,
            source: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(owner: &str, t: Rtype, rdata: Vec<u8>) -> Record {
        crate::testutil::record(owner, t, 60, rdata)
    }

    fn soa(serial: u32) -> Record {
        rec(
            "d.test.",
            Rtype::SOA,
            [&[0u8, 0][..], &serial.to_be_bytes(), &[0; 16]].concat(),
        )
    }

    #[test]
    fn endings_of_axfr_and_ixfr() {
        let a = rec("a.d.test.", Rtype::A, vec![10, 0, 0, 1]);
        let feed = |qtype, recs: &[Record]| {
            let mut e = Ending::new(qtype);
            recs.iter()
                .map(|r| {
                    e.feed(r);
                    e.done
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            feed(Rtype::AXFR, &[soa(5), a.clone(), soa(5)]),
            [false, false, true]
        );
        // IXFR, AXFR style.
        assert_eq!(
            feed(Rtype::IXFR, &[soa(5), a.clone(), soa(5)]),
            [false, false, true]
        );
        // IXFR, two changes 3 -> 4 -> 5.
        let inc = [
            soa(5),
            soa(3),
            a.clone(),
            soa(4),
            soa(4),
            soa(5),
            a.clone(),
            soa(5),
        ];
        assert_eq!(
            feed(Rtype::IXFR, &inc),
            [false, false, false, false, false, false, false, true]
        );
        let cs = split_changesets(&inc).unwrap();
        assert_eq!(cs.len(), 2);
        assert_eq!(
            (cs[0].from_serial, cs[0].to_serial, cs[0].removed.len()),
            (3, 4, 2)
        );
        assert_eq!(
            (cs[1].from_serial, cs[1].to_serial, cs[1].added.len()),
            (4, 5, 2)
        );
        let mut data = vec![
            soa(3),
            a.clone(),
            rec("b.d.test.", Rtype::A, vec![10, 0, 0, 2]),
        ];
        for c in &cs {
            apply(&mut data, c).unwrap();
        }
        assert_eq!(data.len(), 3);
        assert_eq!(Soa::from_rdata(&data[0].rdata).unwrap().serial, 5);
        // A removal of something we do not hold fails (then AXFR).
        let mut other = vec![soa(3)];
        assert!(apply(&mut other, &cs[0]).is_err());
    }

    #[test]
    fn rdata_names_are_decompressed() {
        // A message: header, then "d.test." at 12, then an MX whose name points to 12.
        let mut msg = vec![0u8; 12];
        msg.extend_from_slice(b"\x01d\x04test\x00");
        msg.extend_from_slice(&[0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 60, 0, 7]);
        let start = msg.len();
        msg.extend_from_slice(&[0, 10, 0x02, b'm', b'x', 0xc0, 12]);
        let rdata = |msg: &[u8]| {
            let mut r = Reader::at(msg, start - 12);
            let rec = r.record().unwrap();
            r.rdata_uncompressed(&rec)
        };
        assert_eq!(rdata(&msg).unwrap(), b"\x00\x0a\x02mx\x01d\x04test\x00");
        // A pointer forwards is refused.
        let mut fwd = msg.clone();
        let l = fwd.len();
        fwd[l - 1] = 200;
        assert!(rdata(&fwd).is_err());
    }

    #[test]
    fn state_files_stay_in_the_directory() {
        let f = state_file(Path::new("/s"), &Name::parse("a/b.test.", None).unwrap());
        assert_eq!(f.parent(), Some(Path::new("/s")));
        assert!(f.to_string_lossy().ends_with(".secondary.zone"));
    }
}
