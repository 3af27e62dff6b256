//! Zone transfer out: AXFR (RFC 5936) and IXFR (RFC 1995) over TCP, the transfer ACLs,
//! the history of changes IXFR serves, and the transfer settings of the configuration.
//!
//! A transfer streams one snapshot: the `Arc<Zone>` taken when the request arrives is
//! held until the last message is written, so updates and reloads that land meanwhile
//! never mix into it (docs/dns-answer-rules.md §1.11, row 35). The stream starts and ends
//! with the zone's SOA, each record once in between, in messages of up to 16 KiB: every
//! name in such a message can be a compression target (pointers reach 16383 octets), and
//! the messages stay small enough that a slow client does not pin much memory. Owner
//! names are compressed through a hash table of suffixes (one lookup per label), so the
//! cost is linear in the zone; rdata goes out uncompressed, which every client accepts.
//!
//! Who may transfer: each zone has a list of sources (address prefixes) and TSIG keys;
//! one match allows (as a BIND `allow-transfer` list does). Nothing configured, nothing
//! allowed: REFUSED (as NSD; §1.11). A signed request is verified first (RFC 8945 §5.2:
//! errors answered NOTAUTH with the TSIG error) and every message of the answer is signed
//! with [`crate::proto::tsig::StreamSigner`] (RFC 8945 §5.3.1 asks for the first and last and at
//! most 99 unsigned in a row; signing each costs one HMAC per 16 KiB).
//!
//! IXFR history ([`crate::zone::history`]): a zone that takes dynamic updates records each
//! changeset it journals (updates and hand edits) before the new version is visible, and
//! starts from its journal after a restart; for other zones [`Transfers::watch`] notices
//! every new snapshot in the catalog (a reload or a transfer in) and records the
//! difference from the previous one. A client whose serial is in the history gets the changes
//! (§1.12); a current client a single SOA; anyone else the whole zone, AXFR style. Over
//! UDP IXFR is always answered with the single current SOA (RFC 1995 §2: the client then
//! asks over TCP), AXFR with NOTIMP by the query path.
//!
//! Limitations: the history of zones without dynamic updates lives in memory and starts
//! empty at each start (clients that were behind before a restart get one AXFR-style
//! answer); a changeset whose records
//! together exceed the zone's own size is not kept, as the full zone is then cheaper.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::proto::builder::{Compressor, MessageBuilder, Section, Suspended, WriteError};
use crate::proto::name::Name;
use crate::proto::reader::{Header, Reader};
use crate::proto::rr::{class, rtype, Record};
use crate::proto::tsig::{self, KeyRing, StreamSigner};
use crate::proto::wire::{flags, opcode, rcode, Malformed, Query, HEADER_LEN};
use crate::query::answer::{Outcome, Transport};
use crate::zone::catalog::Catalog;
use crate::zone::changeset::Changeset;
use crate::zone::history::History;
use crate::zone::Zone;

/// Largest transfer message before its TSIG: every offset in it can be a compression
/// pointer target (14-bit offsets).
const MESSAGE_TARGET: usize = 16 * 1024;

/// RFC 1982 §3.2: `a` is greater than `b` in serial number arithmetic.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// The transfer configuration (ACLs, NOTIFY targets, secondary zones, limits) is read in
// `crate::config::transfer`.
pub use crate::config::transfer::*;

// ---------------------------------------------------------------------------------------
// Metrics

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

// ---------------------------------------------------------------------------------------
// History and differences

/// Every record of a snapshot, apex SOA first, in node order: what AXFR sends between
/// the two SOAs, and what a secondary stores.
pub fn zone_records(zone: &Zone) -> Vec<Record> {
    let mut out = Vec::with_capacity(zone.record_count + 1);
    out.push(soa_record(zone));
    out.extend(zone_rrs(zone).map(|(owner, t, ttl, rdata)| record(owner, t, ttl, rdata)));
    out
}

/// A record as stored in a snapshot (owner and rdata in wire form), as a [`Record`].
fn record(owner: &[u8], t: u16, ttl: u32, rdata: &[u8]) -> Record {
    Record {
        owner: Name::from_wire(owner).expect("stored names are valid"),
        rtype: t,
        class: class::IN,
        ttl,
        rdata: rdata.to_vec(),
        source: None,
    }
}

/// Every record of the zone except the apex SOA, in node order: owner, type, TTL, rdata.
fn zone_rrs(zone: &Zone) -> impl Iterator<Item = (&[u8], u16, u32, &[u8])> {
    let apex = zone.apex().index();
    zone.nodes().flat_map(move |node| {
        let owner = node.owner();
        node.rrsets()
            .filter(move |set| !(set.rtype == rtype::SOA && node.index() == apex))
            .flat_map(move |set| {
                set.rdatas()
                    .map(move |rdata| (owner, set.rtype, set.ttl, rdata))
            })
    })
}

/// The apex SOA record of a snapshot.
pub fn soa_record(zone: &Zone) -> Record {
    Record {
        owner: zone.apex().owner_name(),
        rtype: rtype::SOA,
        class: class::IN,
        ttl: zone.soa_ttl,
        rdata: zone.soa_rdata.to_vec(),
        source: None,
    }
}

/// What changed from `old` to `new`, IXFR style: removals led by the old SOA, additions
/// by the new one. An RRset whose TTL changed is removed and added whole. Names in rdata
/// compare as bytes, so a change of case is a change.
pub fn diff(old: &Zone, new: &Zone) -> Changeset {
    let mut removed = vec![soa_record(old)];
    let mut added = vec![soa_record(new)];
    // Records of `a` that `b` does not hold with the same TTL.
    let missing = |a: &Zone, b: &Zone, out: &mut Vec<Record>| {
        let apex = a.apex().index();
        for node in a.nodes() {
            let other = b.node(node.key());
            for set in node.rrsets() {
                if set.rtype == rtype::SOA && node.index() == apex {
                    continue;
                }
                let twin = other
                    .and_then(|o| o.rrset(set.rtype))
                    .filter(|s| s.ttl == set.ttl);
                for rdata in set.rdatas() {
                    if !twin.is_some_and(|s| s.rdatas().any(|r| r == rdata)) {
                        out.push(record(node.owner(), set.rtype, set.ttl, rdata));
                    }
                }
            }
        }
    };
    missing(old, new, &mut removed);
    missing(new, old, &mut added);
    Changeset {
        from_serial: old.serial(),
        to_serial: new.serial(),
        removed,
        added,
    }
}

/// The serial of the SOA a client put in the authority section of its IXFR request
/// (RFC 1995 §3); `None` for anything else: no SOA, another owner, malformed data
/// (docs/dns-answer-rules.md §1.12: FORMERR).
fn ixfr_serial(pkt: &[u8], question_end: usize, origin: &[u8]) -> Option<u32> {
    let h = Header::parse(pkt)?;
    if h.ancount() != 0 || h.nscount() != 1 {
        return None;
    }
    let r = Reader::at(pkt, question_end);
    let rec = r.clone().record().ok()?;
    if rec.rtype != rtype::SOA || !rec.owner.eq_ignore_ascii_case(origin) {
        return None;
    }
    // Two names and the 20 octets of serial and timers, exactly.
    let soa = r.rdata_uncompressed(&rec).ok()?;
    let serial = soa.get(soa.len() - 20..soa.len() - 16)?;
    Some(u32::from_be_bytes(serial.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------
// Writing transfer messages

/// One transfer message being filled, with the [`MessageBuilder`] (set aside between
/// records, because the stream awaits the client between messages). Owner and rdata
/// names are compressed through an indexed table: a message holds hundreds of names.
struct Message {
    buf: Vec<u8>,
    comp: Compressor,
    /// The message being filled; `None` before [`Message::start`].
    state: Option<Suspended>,
}

/// Why a record cannot go into any message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} record of {len} octets does not fit in a transfer message", crate::proto::rr::type_name(*rtype))]
pub struct Oversized {
    rtype: u16,
    len: usize,
}

impl Message {
    fn new() -> Message {
        Message {
            buf: Vec::with_capacity(MESSAGE_TARGET + 512),
            comp: Compressor::indexed(),
            state: None,
        }
    }

    /// Starts a message: header, and the question in the first one only (RFC 5936 §2.2).
    fn start(&mut self, id: u16, copy_flags: u16, question: Option<&[u8]>) {
        let q = question.unwrap_or_default();
        let mut w = MessageBuilder::new(
            &mut self.buf,
            &mut self.comp,
            id,
            opcode::QUERY,
            copy_flags,
            q,
        );
        w.set_flags(flags::AA);
        self.state = Some(w.suspend());
    }

    fn builder(&mut self) -> MessageBuilder<'_> {
        let s = self
            .state
            .expect("a transfer message is started before records go in");
        MessageBuilder::resume(&mut self.buf, &mut self.comp, s)
    }

    /// Appends a record if it fits under `limit`; false when the message is full.
    fn record(
        &mut self,
        limit: usize,
        owner: &[u8],
        t: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<bool, StreamError> {
        // Compression only shortens names: this is the most the record can take.
        let worst = owner.len() + 10 + rdata.len();
        let mut w = self.builder();
        let full = w.len() + worst > limit;
        let empty = w.count(Section::Answer) == 0;
        let written = if full {
            Ok(false)
        } else {
            w.record(Section::Answer, owner, t, class::IN, ttl, rdata)
                .map(|()| true)
        };
        self.state = Some(w.suspend());
        if full && empty {
            return Err(StreamError::Oversized(Oversized {
                rtype: t,
                len: worst,
            }));
        }
        Ok(written?)
    }

    /// Writes the section counts; the message is then ready to sign and send.
    fn finish(&mut self) {
        if self.state.is_some() {
            self.builder().finish();
        }
    }
}

/// Why a transfer out stopped early.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("writing to the client: {0}")]
    Io(#[from] std::io::Error),
    #[error("the client did not read for {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Oversized(#[from] Oversized),
    #[error("a record of the zone cannot be written: {0}")]
    Write(#[from] WriteError),
    #[error("signing a message: {0}")]
    Sign(#[from] tsig::SignError),
}

/// Writes the messages of one transfer answer to a client.
struct Stream<'w, W> {
    out: &'w mut W,
    id: u16,
    copy_flags: u16,
    question: Vec<u8>,
    signer: Option<StreamSigner>,
    /// The size messages are filled to.
    limit: usize,
    /// The most one message may hold (65535 octets less the TSIG record): a record larger
    /// than `limit` goes alone in a message of up to this size, so that any zone the
    /// server can load can also be transferred.
    max: usize,
    first: bool,
    frame: Vec<u8>,
    timeout: Duration,
    messages: usize,
}

impl<W: AsyncWrite + Unpin> Stream<'_, W> {
    async fn send(&mut self, msg: &mut Message) -> Result<(), StreamError> {
        msg.finish();
        if let Some(s) = &mut self.signer {
            s.sign(&mut msg.buf, unix_now())?;
        }
        self.frame.clear();
        self.frame
            .extend_from_slice(&(msg.buf.len() as u16).to_be_bytes());
        self.frame.extend_from_slice(&msg.buf);
        match tokio::time::timeout(self.timeout, self.out.write_all(&self.frame)).await {
            Err(_) => return Err(StreamError::Timeout(self.timeout)),
            Ok(r) => r?,
        }
        self.messages += 1;
        Ok(())
    }

    fn start(&mut self, msg: &mut Message) {
        let q = if self.first {
            Some(&self.question[..])
        } else {
            None
        };
        msg.start(self.id, self.copy_flags, q);
        self.first = false;
    }

    /// Appends a record, sending the message first when it is full.
    async fn record(
        &mut self,
        msg: &mut Message,
        owner: &[u8],
        t: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), StreamError> {
        if !self.place(msg, owner, t, ttl, rdata)? {
            self.send(msg).await?;
            self.start(msg);
            self.place(msg, owner, t, ttl, rdata)?;
        }
        Ok(())
    }

    /// Adds the record if it fits under `limit`, or — alone in an empty message — under
    /// `max`. `Ok(false)`: the message is full, send it and start another.
    fn place(
        &self,
        msg: &mut Message,
        owner: &[u8],
        t: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<bool, StreamError> {
        match msg.record(self.limit, owner, t, ttl, rdata) {
            Err(StreamError::Oversized(_)) => msg.record(self.max, owner, t, ttl, rdata),
            fits => fits,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The transfer service

/// Zone transfer, NOTIFY and secondary zones at run time, shared with the transports.
pub struct Transfers {
    catalog: Arc<ArcSwap<Catalog>>,
    keys: crate::dynamic::SharedKeys,
    acl: HashMap<Name, Vec<AclEntry>>,
    history: Arc<History>,
    pub metrics: Arc<XfrMetrics>,
    pub(crate) notifier: crate::transfer::notify::Notifier,
    pub(crate) secondaries: crate::transfer::secondary::Secondaries,
    /// Set while some secondary zone is expired or not loaded yet: only then does the
    /// query path look at [`crate::transfer::secondary::Secondaries::unavailable`].
    pub(crate) any_unavailable: AtomicBool,
    max_udp_payload: u16,
    /// For precompiling the answers of refreshed secondary zones, as a reload does.
    pub(crate) responder: crate::query::answer::Responder,
    pub(crate) stats: Arc<crate::stats::Stats>,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("acl", &self.acl)
            .finish_non_exhaustive()
    }
}

/// Why transfers cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secondary(#[from] crate::transfer::secondary::SecondaryError),
}

impl Transfers {
    /// Sets up transfers for `catalog`: checks the keys, loads the secondary zones saved
    /// in `state_dir` and puts them into the catalog. Call before serving (it reads
    /// files); then [`Transfers::start`] inside the runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &TransferConfig,
        keys: crate::dynamic::SharedKeys,
        state_dir: &Path,
        catalog: Arc<ArcSwap<Catalog>>,
        history: Arc<History>,
        responder: crate::query::answer::Responder,
        stats: Arc<crate::stats::Stats>,
        xfr_metrics: Arc<XfrMetrics>,
        listen: &[std::net::SocketAddr],
    ) -> Result<Arc<Transfers>, StartError> {
        let loaded = keys.load_full();
        config.check_keys(&loaded)?;
        let metrics = xfr_metrics;
        let secondaries = crate::transfer::secondary::Secondaries::load(
            &config.secondaries,
            config.in_limits,
            &loaded,
            state_dir,
            &catalog,
            &metrics,
            &history,
        )?;
        let t = Transfers {
            acl: config.allow.iter().cloned().collect(),
            notifier: crate::transfer::notify::Notifier::new(
                config,
                &loaded,
                metrics.clone(),
                listen,
            ),
            any_unavailable: AtomicBool::new(secondaries.any_unavailable()),
            secondaries,
            catalog,
            keys,
            history,
            metrics,
            max_udp_payload: responder.config.max_udp_payload,
            responder,
            stats,
        };
        Ok(Arc::new(t))
    }

    /// Where secondary zones are saved.
    pub fn state_file(state_dir: &Path, zone: &Name) -> PathBuf {
        crate::transfer::secondary::state_file(state_dir, zone)
    }

    /// Starts the catalog watcher and the secondary zones' refresh tasks. Call once,
    /// inside the runtime.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().watch());
        crate::transfer::secondary::start(self);
    }

    /// Watches the catalog for new snapshots: records each zone's change for IXFR,
    /// NOTIFYs its secondaries and updates the serial gauge. Polling a pointer per zone
    /// every 100 ms costs nothing and needs no hook in the loader, the update path or
    /// the secondary: whatever swaps a zone in, the change is seen, and changes within
    /// one poll are merged into one changeset.
    async fn watch(self: Arc<Self>) {
        let mut seen: HashMap<Name, Arc<Zone>> = HashMap::new();
        // A secondary may have missed changes while we were down: NOTIFY at start, as
        // BIND and Knot do.
        for z in self.catalog.load().zones() {
            self.metrics.set_serial(&z.origin, z.serial());
            self.notifier.serial_changed(z);
            seen.insert(z.origin.clone(), z.clone());
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let catalog = self.catalog.load_full();
            for zone in catalog.zones() {
                let old = match seen.get(&zone.origin) {
                    Some(old) if Arc::ptr_eq(old, zone) => continue,
                    old => old.cloned(),
                };
                seen.insert(zone.origin.clone(), zone.clone());
                self.metrics.set_serial(&zone.origin, zone.serial());
                let Some(old) = old else {
                    self.notifier.serial_changed(zone);
                    continue;
                };
                if self.history.is_owned(&zone.origin) {
                    // Its publisher recorded the change before swapping it in.
                    self.notifier.serial_changed(zone);
                    continue;
                }
                if old.serial() == zone.serial() {
                    // Same serial, maybe other content: IXFR cannot tell it, so the
                    // history no longer describes what is served.
                    self.history.forget(&zone.origin);
                    continue;
                }
                let (new, me) = (zone.clone(), self.clone());
                let cs = tokio::task::spawn_blocking(move || {
                    let cs = diff(&old, &new);
                    me.history
                        .record_change(&new.origin, Some(cs), new.record_count);
                })
                .await;
                if let Err(e) = cs {
                    tracing::error!(zone = %zone.origin, "computing the IXFR difference failed: {e}");
                }
                self.notifier.serial_changed(zone);
            }
        }
    }

    fn allowed(&self, zone: &Name, peer: IpAddr, key: Option<&Name>) -> bool {
        self.acl.get(zone).is_some_and(|es| {
            es.iter().any(|e| match e {
                AclEntry::Net(c) => c.contains(peer),
                AclEntry::Key(k) => key.is_some_and(|key| key.eq_ignore_case(k)),
            })
        })
    }

    /// Answers one AXFR or IXFR request that arrived over TCP, writing every message of
    /// the answer to `out`. An error means the connection should be closed.
    pub async fn serve_tcp<W: AsyncWrite + Unpin>(
        &self,
        pkt: &[u8],
        query: Result<Query<'_>, Malformed>,
        peer: SocketAddr,
        out: &mut W,
        timeout: Duration,
    ) -> Result<(), StreamError> {
        let Admitted {
            q,
            zone,
            ixfr_from,
            verified,
        } = match self.admit(pkt, query, peer) {
            Ok(a) => a,
            Err(refusal) => return write_frame(out, &refusal, timeout).await,
        };
        let signer = verified.as_ref().map(StreamSigner::new);
        let tsig_room = verified.as_ref().map_or(0, |v| v.response().record_len());
        let mut stream = Stream {
            out,
            id: q.id,
            copy_flags: q.copy_flags & flags::RD,
            question: q.question.to_vec(),
            signer,
            limit: MESSAGE_TARGET.min(u16::MAX as usize - tsig_room),
            max: u16::MAX as usize - tsig_room,
            first: true,
            frame: Vec::with_capacity(MESSAGE_TARGET + 2 + tsig_room),
            timeout,
            messages: 0,
        };
        let started = std::time::Instant::now();
        let (kind, result) = match ixfr_from {
            Some(serial) if !serial_gt(zone.serial(), serial) => {
                // Current (or ahead of us): the single SOA (RFC 1995 §4).
                (3, self.single_soa(&zone, &mut stream).await)
            }
            Some(serial) => match self.history.since(&zone.origin, serial, zone.serial()) {
                Some(chain) => (1, ixfr_stream(&zone, &chain, &mut stream).await),
                None => (2, axfr_stream(&zone, &mut stream).await),
            },
            None => (0, axfr_stream(&zone, &mut stream).await),
        };
        match &result {
            Ok(()) => {
                self.metrics.out[kind].fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    %peer,
                    zone = %zone.origin,
                    serial = zone.serial(),
                    kind = ["axfr", "ixfr", "ixfr (axfr style)", "ixfr (current)"][kind],
                    from = ixfr_from,
                    messages = stream.messages,
                    signed = verified.is_some(),
                    ms = started.elapsed().as_millis() as u64,
                    "zone transfer out"
                );
            }
            Err(e) => {
                self.metrics.out_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%peer, zone = %zone.origin, "zone transfer out failed: {e}");
            }
        }
        result
    }

    /// Checks a transfer request in the order of RFC 8945 §5.2 and RFC 5936 §2.2: TSIG,
    /// the question, the zone, an IXFR's SOA, the ACL, an expired secondary zone. `Err`
    /// is the refusal to send (signed when the request was).
    fn admit<'q>(
        &self,
        pkt: &[u8],
        query: Result<Query<'q>, Malformed>,
        peer: SocketAddr,
    ) -> Result<Admitted<'q>, Vec<u8>> {
        let now = unix_now();
        let verified = match tsig::verify_request(pkt, &self.keys.load(), now) {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(%peer, "zone transfer refused: {e}");
                self.metrics.out_refused.fetch_add(1, Ordering::Relaxed);
                let mut msg = error_reply(pkt, e.rcode());
                if let Some(t) = e.response() {
                    let _ = tsig::sign_response(&mut msg, &t, now);
                }
                return Err(msg);
            }
        };
        let refuse = |rc: u16, why: &str| {
            tracing::info!(%peer, "zone transfer refused: {why}");
            self.metrics.out_refused.fetch_add(1, Ordering::Relaxed);
            let mut msg = error_reply(pkt, rc);
            if let Some(v) = &verified {
                let _ = tsig::sign_response(&mut msg, &v.response(), unix_now());
            }
            msg
        };
        let q = match query {
            Ok(q) if q.qclass == class::IN => q,
            _ => return Err(refuse(rcode::FORMERR, "malformed request")),
        };
        let catalog = self.catalog.load();
        let zone = match catalog.find(q.qname()) {
            Some(z) if z.origin.as_wire() == q.qname() => z.clone(),
            // RFC 5936 §2.2.1: not authoritative for that zone.
            _ => return Err(refuse(rcode::NOTAUTH, "not a zone served here")),
        };
        drop(catalog);
        let question_end = HEADER_LEN + q.question.len();
        let ixfr_from = if q.qtype == rtype::IXFR {
            match ixfr_serial(pkt, question_end, q.qname()) {
                Some(s) => Some(s),
                None => {
                    let why = "IXFR without a valid SOA in the authority section";
                    return Err(refuse(rcode::FORMERR, why));
                }
            }
        } else {
            None
        };
        let key = verified.as_ref().map(|v| &v.key.name);
        if !self.allowed(&zone.origin, peer.ip(), key) {
            let why = format!(
                "zone {} is not allowed to {} (key {})",
                zone.origin,
                peer.ip(),
                key.map_or_else(|| "none".into(), ToString::to_string)
            );
            return Err(refuse(rcode::REFUSED, &why));
        }
        if self.any_unavailable.load(Ordering::Relaxed) && self.secondaries.unavailable(q.qname()) {
            // An expired secondary zone must not be handed on (RFC 1035 §4.3.5).
            return Err(refuse(rcode::SERVFAIL, "the zone is expired"));
        }
        Ok(Admitted {
            q,
            zone,
            ixfr_from,
            verified,
        })
    }

    async fn single_soa<W: AsyncWrite + Unpin>(
        &self,
        zone: &Zone,
        stream: &mut Stream<'_, W>,
    ) -> Result<(), StreamError> {
        let owner = zone.apex().owner();
        let mut msg = Message::new();
        stream.start(&mut msg);
        stream
            .record(&mut msg, owner, rtype::SOA, zone.soa_ttl, &zone.soa_rdata)
            .await?;
        stream.send(&mut msg).await
    }

    /// What the query path cannot answer alone when transfers are on: IXFR over UDP, and
    /// queries for secondary zones that are expired or not loaded yet. `None` leaves the
    /// query to the query path. Never blocks.
    pub fn intercept(
        &self,
        pkt: &[u8],
        q: &Query<'_>,
        transport: Transport,
        peer: &dyn Fn() -> SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        if q.opcode != opcode::QUERY {
            return None;
        }
        let unavailable = self.any_unavailable.load(Ordering::Relaxed);
        if unavailable && q.qclass == class::IN && self.secondaries.unavailable(q.qname()) {
            *out = crate::transfer::secondary::servfail(q, self.max_udp_payload);
            return Some(Outcome::Reply {
                rcode: rcode::SERVFAIL,
                truncated: false,
            });
        }
        if transport == Transport::Udp && q.qtype == rtype::IXFR {
            return self.ixfr_udp(pkt, q, peer(), out);
        }
        None
    }

    /// IXFR over UDP: the current SOA alone when allowed (RFC 1995 §2, §4), so a client
    /// that is behind retries over TCP. Signed requests go to the query path, which
    /// answers them as before.
    fn ixfr_udp(
        &self,
        pkt: &[u8],
        q: &Query<'_>,
        peer: SocketAddr,
        out: &mut Vec<u8>,
    ) -> Option<Outcome> {
        let catalog = self.catalog.load();
        let zone = catalog
            .find(q.qname())
            .filter(|z| z.origin.as_wire() == q.qname())?;
        if !self.allowed(&zone.origin, peer.ip(), None) {
            return None;
        }
        let question_end = HEADER_LEN + q.question.len();
        let ar = u16::from_be_bytes([pkt[10], pkt[11]]);
        if ixfr_serial(pkt, question_end, q.qname()).is_none() {
            *out = error_reply(pkt, rcode::FORMERR);
            return Some(Outcome::Reply {
                rcode: rcode::FORMERR,
                truncated: false,
            });
        }
        if ar > u16::from(q.edns.is_some()) {
            return None;
        }
        let mut buf = Vec::with_capacity(512);
        let mut comp = Compressor::default();
        let copy = q.copy_flags & flags::RD;
        let mut w = MessageBuilder::new(&mut buf, &mut comp, q.id, q.opcode, copy, q.question);
        w.set_flags(flags::AA);
        let owner = zone.apex().owner();
        w.record(
            Section::Answer,
            owner,
            rtype::SOA,
            class::IN,
            zone.soa_ttl,
            &zone.soa_rdata,
        )
        .ok()?;
        if let Some(e) = q.edns {
            w.opt(self.max_udp_payload, 0, e.dnssec_ok);
        }
        w.finish();
        *out = buf;
        self.metrics.out[3].fetch_add(1, Ordering::Relaxed);
        Some(Outcome::Reply {
            rcode: rcode::NOERROR,
            truncated: false,
        })
    }

    /// The catalog the transfers serve from.
    /// The IXFR history every zone's publisher records into.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    pub fn catalog(&self) -> &Arc<ArcSwap<Catalog>> {
        &self.catalog
    }

    /// The TSIG keys.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.keys.load()
    }
}

/// A transfer request that passed [`Transfers::admit`].
struct Admitted<'q> {
    q: Query<'q>,
    zone: Arc<Zone>,
    /// The client's serial, for IXFR.
    ixfr_from: Option<u32>,
    verified: Option<tsig::Verified>,
}

/// A whole zone, SOA first and last.
async fn axfr_stream<W: AsyncWrite + Unpin>(
    zone: &Zone,
    stream: &mut Stream<'_, W>,
) -> Result<(), StreamError> {
    let mut msg = Message::new();
    stream.start(&mut msg);
    apex_soa(zone, stream, &mut msg).await?;
    for (owner, t, ttl, rdata) in zone_rrs(zone) {
        stream.record(&mut msg, owner, t, ttl, rdata).await?;
    }
    apex_soa(zone, stream, &mut msg).await?;
    stream.send(&mut msg).await
}

/// The changes since the client's serial (RFC 1995 §4): the new SOA, each changeset as
/// old SOA, removals, new SOA, additions, and the new SOA again.
async fn ixfr_stream<W: AsyncWrite + Unpin>(
    zone: &Zone,
    chain: &[Arc<Changeset>],
    stream: &mut Stream<'_, W>,
) -> Result<(), StreamError> {
    let mut msg = Message::new();
    stream.start(&mut msg);
    apex_soa(zone, stream, &mut msg).await?;
    for cs in chain {
        for r in cs.removed.iter().chain(&cs.added) {
            stream
                .record(&mut msg, r.owner.as_wire(), r.rtype, r.ttl, &r.rdata)
                .await?;
        }
    }
    apex_soa(zone, stream, &mut msg).await?;
    stream.send(&mut msg).await
}

/// Adds the zone's apex SOA, which opens and closes every transfer.
async fn apex_soa<W: AsyncWrite + Unpin>(
    zone: &Zone,
    stream: &mut Stream<'_, W>,
    msg: &mut Message,
) -> Result<(), StreamError> {
    let owner = zone.apex().owner();
    stream
        .record(msg, owner, rtype::SOA, zone.soa_ttl, &zone.soa_rdata)
        .await
}

/// A response with no records: the header and question of `pkt` with `rc`.
pub fn error_reply(pkt: &[u8], rc: u16) -> Vec<u8> {
    // Whatever of the ID and flags there is, even in a message shorter than a header.
    let id = match pkt {
        [a, b, ..] => u16::from_be_bytes([*a, *b]),
        _ => 0,
    };
    let fl = pkt.get(2).map_or(0, |&f| u16::from(f) << 8);
    let mut r = Reader::at(pkt, HEADER_LEN);
    let question = match Header::parse(pkt) {
        Some(h) if h.qdcount() == 1 && r.question().is_ok() => &pkt[HEADER_LEN..r.pos()],
        _ => &[],
    };
    let op = ((fl >> 11) & 0xf) as u8;
    crate::proto::builder::bare_response(op, id, fl & flags::RD, question, rc, None)
}

async fn write_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    msg: &[u8],
    timeout: Duration,
) -> Result<(), StreamError> {
    let mut frame = Vec::with_capacity(msg.len() + 2);
    frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    frame.extend_from_slice(msg);
    match tokio::time::timeout(timeout, out.write_all(&frame)).await {
        Err(_) => Err(StreamError::Timeout(timeout)),
        Ok(r) => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn zone(origin: &str, serial: u32, body: &str) -> Zone {
        let o = Name::parse(origin, None).unwrap();
        let text = format!("$ORIGIN {origin}\n$TTL 60\n@ IN SOA ns1 host {serial} 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 10.0.0.1\n{body}");
        let records = crate::zone::zonefile::parse_str(&text, Path::new("t.zone"), &o).unwrap();
        Zone::build(&o, records).unwrap().0
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("192.0.2.1".parse().unwrap()));
        assert!(Cidr::parse("::1/128")
            .unwrap()
            .contains("::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn flags_resolve_and_are_checked() {
        let zones = [Name::parse("a.test.", None).unwrap()];
        let flags = TransferFlags {
            allow: vec!["a.test=127.0.0.0/8,key:xfr".into()],
            notify: vec!["a.test.=127.0.0.1:5300".into()],
            secondary: vec!["b.test=127.0.0.1:5301,key:xfr".into()],
        };
        let c = resolve(None, &flags, &zones).unwrap();
        assert_eq!(c.allow[0].1.len(), 2);
        assert_eq!(c.secondaries[0].primary, "127.0.0.1:5301".parse().unwrap());
        assert_eq!(c.secondaries[0].key.as_ref().unwrap().to_string(), "xfr.");
        let msg = c.check_keys(&KeyRing::new()).unwrap_err().to_string();
        assert!(msg.contains("xfr.") && msg.contains("--key-file"), "{msg}");
        for bad in [
            TransferFlags {
                allow: vec!["a.test=300.0.0.0/8".into()],
                ..Default::default()
            },
            TransferFlags {
                allow: vec!["c.test=127.0.0.1".into()],
                ..Default::default()
            },
            TransferFlags {
                notify: vec!["a.test=localhost".into()],
                ..Default::default()
            },
            TransferFlags {
                secondary: vec!["a.test=127.0.0.1:53".into()],
                ..Default::default()
            },
        ] {
            assert!(resolve(None, &bad, &zones).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn diff_and_history_chain() {
        let a = zone("d.test.", 1, "x IN A 10.0.0.2\ny IN TXT \"keep\"\n");
        let b = zone(
            "d.test.",
            2,
            "x IN A 10.0.0.3\ny IN TXT \"keep\"\nz 30 IN A 10.0.0.4\n",
        );
        let c = zone("d.test.", 3, "x IN A 10.0.0.3\ny IN TXT \"keep\"\n");
        let ab = diff(&a, &b);
        assert_eq!(ab.removed.len(), 2, "{ab:?}");
        assert_eq!(ab.added.len(), 3, "{ab:?}");
        ab.validate().unwrap();
        let h = History::new(100);
        let o = a.origin.clone();
        h.record_change(&o, Some(ab), 10);
        h.record_change(&o, Some(diff(&b, &c)), 10);
        assert_eq!(h.since(&o, 1, 3).unwrap().len(), 2);
        assert_eq!(h.since(&o, 2, 3).unwrap().len(), 1);
        assert!(h.since(&o, 0, 3).is_none());
        h.record_change(&o, None, 0);
        assert!(h.since(&o, 2, 3).is_none());
    }

    #[test]
    fn ixfr_serial_is_parsed_strictly() {
        let origin = b"\x01d\x04test\x00";
        let mut pkt = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
        pkt.extend_from_slice(origin);
        pkt.extend_from_slice(&[0, 251, 0, 1]);
        let qend = pkt.len();
        pkt.extend_from_slice(&[0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 0]);
        let rdata: Vec<u8> = [&[0u8][..], &[0], &7u32.to_be_bytes(), &[0; 16]].concat();
        pkt.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        pkt.extend_from_slice(&rdata);
        assert_eq!(ixfr_serial(&pkt, qend, origin), Some(7));
        let mut short = pkt.clone();
        short.pop();
        assert_eq!(ixfr_serial(&short, qend, origin), None);
        let mut other = pkt.clone();
        other[9] = 0;
        assert_eq!(ixfr_serial(&other, qend, origin), None);
        let mut loop_ptr = pkt.clone();
        loop_ptr[qend..qend + 2].copy_from_slice(&[0xc0, qend as u8]);
        assert_eq!(ixfr_serial(&loop_ptr, qend, origin), None);
        // RFC 9267: never into the header (this reader once followed such pointers).
        let mut into_header = pkt.clone();
        into_header[qend + 1] = 4;
        assert_eq!(ixfr_serial(&into_header, qend, origin), None);
    }

    /// The AXFR of `z` (zone d.test.) as written to TCP, length-prefixed messages, and
    /// how many messages it took.
    fn axfr_of(z: &Zone) -> (Vec<u8>, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut out: Vec<u8> = Vec::new();
        let question = [&b"\x01d\x04test\x00"[..], &[0, 252, 0, 1]].concat();
        let messages = rt.block_on(async {
            let mut s = Stream {
                out: &mut out,
                id: 9,
                copy_flags: 0,
                question,
                signer: None,
                limit: MESSAGE_TARGET,
                max: u16::MAX as usize,
                first: true,
                frame: Vec::new(),
                timeout: Duration::from_secs(1),
                messages: 0,
            };
            axfr_stream(z, &mut s).await.expect("the transfer succeeds");
            s.messages
        });
        (out, messages)
    }

    #[test]
    fn messages_compress_owners_and_split() {
        let z = zone(
            "d.test.",
            1,
            &(0..2000)
                .map(|i| format!("h{i} IN A 10.0.{}.{}\n", i / 250, i % 250))
                .collect::<String>(),
        );
        let (out, messages) = axfr_of(&z);
        assert!(messages > 1, "{messages}");
        // Read back every record through the decompressing reader.
        let mut pos = 0;
        let mut records = Vec::new();
        while pos < out.len() {
            let len = u16::from_be_bytes([out[pos], out[pos + 1]]) as usize;
            let msg = &out[pos + 2..pos + 2 + len];
            assert!(len <= MESSAGE_TARGET);
            let (h, mut r) = Reader::after_header(msg).unwrap();
            for _ in 0..h.qdcount() {
                r.question().unwrap();
            }
            for _ in 0..h.ancount() {
                let rec = r.record().unwrap();
                records.push((Name::from_wire(&rec.owner).unwrap().to_string(), rec.rtype));
            }
            pos += 2 + len;
        }
        assert_eq!(records.len(), z.record_count + 1);
        assert_eq!(records.first().unwrap().1, rtype::SOA);
        assert_eq!(records.last().unwrap().1, rtype::SOA);
        assert!(records.iter().any(|(o, _)| o == "h1999.d.test."));
    }

    /// A record larger than the message target size (here a TXT of ~30,000 octets, which
    /// the zone file accepts) goes alone in a larger message instead of failing the
    /// transfer: any zone the server loads can be transferred (NSD 4.15.1 fixed the
    /// opposite, a transfer that looped on such a record).
    #[test]
    fn a_record_larger_than_the_target_goes_alone() {
        let chunk = "x".repeat(250);
        let big: String = (0..120).map(|_| format!(" \"{chunk}\"")).collect();
        let z = zone(
            "d.test.",
            1,
            &format!("a IN A 10.0.0.1\nbig IN TXT{big}\nz IN A 10.0.0.2\n"),
        );
        let (out, _) = axfr_of(&z);
        let mut pos = 0;
        let mut lens = Vec::new();
        let mut total = 0;
        while pos < out.len() {
            let len = u16::from_be_bytes([out[pos], out[pos + 1]]) as usize;
            let msg = &out[pos + 2..pos + 2 + len];
            total += u16::from_be_bytes([msg[6], msg[7]]) as usize;
            lens.push(len);
            pos += 2 + len;
        }
        assert_eq!(total, z.record_count + 1, "every record, SOA twice");
        assert!(
            lens.iter().any(|&l| l > MESSAGE_TARGET),
            "the big record went into a larger message: {lens:?}"
        );
    }
}
