//! The transfer service ([`Transfers`]): AXFR (RFC 5936) and IXFR (RFC 1995) requests
//! admitted by the transfer ACLs and answered over TCP (the messages are written by
//! [`crate::transfer::stream`]), the catalog watcher that records each zone's change for
//! IXFR and NOTIFYs ([`crate::transfer::notify`]), and the secondary zones' refresh tasks
//! ([`crate::transfer::secondary`]), which it starts.
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
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::AsyncWrite;

use crate::clock::unix_now;
use crate::proto::builder::error_reply;
use crate::proto::builder::{Compressor, MessageBuilder, Section};
use crate::proto::name::Name;
use crate::proto::query::{Malformed, Query};
use crate::proto::reader::{Header, Reader};
use crate::proto::rr::{Rclass, Rtype};
use crate::proto::tsig::{self, KeyRing, StreamSigner};
use crate::proto::types::serial_gt;
use crate::proto::types::{Opcode, Rcode};
use crate::proto::{flags, HEADER_LEN};
use crate::query::answer::{Outcome, Transport};
use crate::transfer::metrics::XfrMetrics;
use crate::transfer::secondary::Refreshing;
use crate::transfer::stream::{
    axfr_stream, diff, ixfr_stream, write_frame, Message, Stream, StreamError, MESSAGE_TARGET,
};
use crate::zone::catalog::Catalog;
use crate::zone::history::History;
use crate::zone::Zone;

// The transfer configuration (ACLs, NOTIFY targets, secondary zones, limits) is read in
// `crate::config::transfer`.
pub use crate::config::transfer::*;

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
    if rec.rtype != Rtype::SOA || !rec.owner.eq_ignore_ascii_case(origin) {
        return None;
    }
    // Two names and the 20 octets of serial and timers, exactly.
    let soa = r.rdata_uncompressed(&rec).ok()?;
    let serial = soa.get(soa.len() - 20..soa.len() - 16)?;
    Some(u32::from_be_bytes(serial.try_into().ok()?))
}

// ---------------------------------------------------------------------------------------
// The transfer service

/// Zone transfer, NOTIFY and secondary zones at run time, shared with the transports.
pub struct Transfers {
    /// The catalog, the IXFR history, the metrics, the secondary zones and what precompiles
    /// their answers: shared with the secondaries' refresh tasks.
    pub(crate) shared: Arc<Refreshing>,
    keys: crate::dynamic::SharedKeys,
    acl: HashMap<Name, Vec<AclEntry>>,
    pub(crate) notifier: crate::transfer::notify::Notifier,
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
            shared: Arc::new(Refreshing {
                secondaries: Arc::new(secondaries),
                catalog,
                history,
                metrics,
                responder,
                stats,
            }),
            keys,
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
        crate::transfer::secondary::start(self.shared.clone());
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
        for z in self.shared.catalog.load().zones() {
            self.shared.metrics.set_serial(&z.origin, z.serial());
            self.notifier.serial_changed(z);
            seen.insert(z.origin.clone(), z.clone());
        }
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let catalog = self.shared.catalog.load_full();
            for zone in catalog.zones() {
                let old = match seen.get(&zone.origin) {
                    Some(old) if Arc::ptr_eq(old, zone) => continue,
                    old => old.cloned(),
                };
                seen.insert(zone.origin.clone(), zone.clone());
                self.shared.metrics.set_serial(&zone.origin, zone.serial());
                let Some(old) = old else {
                    self.notifier.serial_changed(zone);
                    continue;
                };
                if self.shared.history.is_owned(&zone.origin) {
                    // Its publisher recorded the change before swapping it in.
                    self.notifier.serial_changed(zone);
                    continue;
                }
                if old.serial() == zone.serial() {
                    // Same serial, maybe other content: IXFR cannot tell it, so the
                    // history no longer describes what is served.
                    self.shared.history.forget(&zone.origin);
                    continue;
                }
                let (new, me) = (zone.clone(), self.clone());
                let cs = tokio::task::spawn_blocking(move || {
                    let cs = diff(&old, &new);
                    me.shared
                        .history
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
            Some(serial) => match self
                .shared
                .history
                .since(&zone.origin, serial, zone.serial())
            {
                Some(chain) => (1, ixfr_stream(&zone, &chain, &mut stream).await),
                None => (2, axfr_stream(&zone, &mut stream).await),
            },
            None => (0, axfr_stream(&zone, &mut stream).await),
        };
        match &result {
            Ok(()) => {
                self.shared.metrics.out[kind].fetch_add(1, Ordering::Relaxed);
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
                self.shared
                    .metrics
                    .out_failed
                    .fetch_add(1, Ordering::Relaxed);
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
                self.shared
                    .metrics
                    .out_refused
                    .fetch_add(1, Ordering::Relaxed);
                let mut msg = error_reply(pkt, e.rcode());
                if let Some(t) = e.response() {
                    let _ = tsig::sign_response(&mut msg, &t, now);
                }
                return Err(msg);
            }
        };
        let refuse = |rc: Rcode, why: &str| {
            tracing::info!(%peer, "zone transfer refused: {why}");
            self.shared
                .metrics
                .out_refused
                .fetch_add(1, Ordering::Relaxed);
            let mut msg = error_reply(pkt, rc);
            if let Some(v) = &verified {
                let _ = tsig::sign_response(&mut msg, &v.response(), unix_now());
            }
            msg
        };
        let q = match query {
            Ok(q) if q.qclass == Rclass::IN => q,
            _ => return Err(refuse(Rcode::FORMERR, "malformed request")),
        };
        let catalog = self.shared.catalog.load();
        let zone = match catalog.find(q.qname()) {
            Some(z) if z.origin.as_wire() == q.qname() => z.clone(),
            // RFC 5936 §2.2.1: not authoritative for that zone.
            _ => return Err(refuse(Rcode::NOTAUTH, "not a zone served here")),
        };
        drop(catalog);
        let question_end = HEADER_LEN + q.question.len();
        let ixfr_from = if q.qtype == Rtype::IXFR {
            match ixfr_serial(pkt, question_end, q.qname()) {
                Some(s) => Some(s),
                None => {
                    let why = "IXFR without a valid SOA in the authority section";
                    return Err(refuse(Rcode::FORMERR, why));
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
            return Err(refuse(Rcode::REFUSED, &why));
        }
        if self.shared.secondaries.maybe_unavailable(q.qname()) {
            // An expired secondary zone must not be handed on (RFC 1035 §4.3.5).
            return Err(refuse(Rcode::SERVFAIL, "the zone is expired"));
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
            .record(&mut msg, owner, Rtype::SOA, zone.soa_ttl, &zone.soa_rdata)
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
        if q.opcode != Opcode::QUERY {
            return None;
        }
        if q.qclass == Rclass::IN && self.shared.secondaries.maybe_unavailable(q.qname()) {
            *out = crate::transfer::secondary::servfail(
                q,
                self.shared.responder.config.max_udp_payload,
            );
            return Some(Outcome::Reply {
                rcode: Rcode::SERVFAIL,
                truncated: false,
            });
        }
        if transport == Transport::Udp && q.qtype == Rtype::IXFR {
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
        let catalog = self.shared.catalog.load();
        let zone = catalog
            .find(q.qname())
            .filter(|z| z.origin.as_wire() == q.qname())?;
        if !self.allowed(&zone.origin, peer.ip(), None) {
            return None;
        }
        let question_end = HEADER_LEN + q.question.len();
        let ar = u16::from_be_bytes([pkt[10], pkt[11]]);
        if ixfr_serial(pkt, question_end, q.qname()).is_none() {
            *out = error_reply(pkt, Rcode::FORMERR);
            return Some(Outcome::Reply {
                rcode: Rcode::FORMERR,
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
            Rtype::SOA,
            Rclass::IN,
            zone.soa_ttl,
            &zone.soa_rdata,
        )
        .ok()?;
        if let Some(e) = q.edns {
            w.opt(
                self.shared.responder.config.max_udp_payload,
                Rcode::NOERROR,
                e.dnssec_ok,
            );
        }
        w.finish();
        *out = buf;
        self.shared.metrics.out[3].fetch_add(1, Ordering::Relaxed);
        Some(Outcome::Reply {
            rcode: Rcode::NOERROR,
            truncated: false,
        })
    }

    /// The catalog the transfers serve from.
    pub fn catalog(&self) -> &Arc<ArcSwap<Catalog>> {
        &self.shared.catalog
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
