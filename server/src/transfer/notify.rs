//! NOTIFY (RFC 1996), both ways.
//!
//! Out: telling secondaries that a zone's serial changed, so they refresh within seconds
//! instead of at their next SOA refresh timer.
//!
//! The transfer service ([`crate::transfer::xfr::Transfers`]) calls [`Notifier::serial_changed`] whenever a new
//! serial of a zone is served, whatever changed it (reload, hand edit, dynamic update,
//! transfer in). Each configured secondary then gets its own task: a NOTIFY over UDP
//! (opcode 4, AA, the apex SOA as question and, as BIND and Knot do, in the answer so the
//! secondary can skip its SOA query), TSIG-signed when a key is configured for it,
//! retried when no answer comes, the wait doubling from `notify_timeout` for
//! `notify_retries` attempts (docs/dns-answer-rules.md §1.13). Nothing waits for these
//! tasks: an update or reload is finished before its NOTIFYs are sent, so a secondary
//! that is down never holds anything up. A newer change replaces the task still retrying
//! for an older one, so there is at most one task per zone and secondary (row 36: bounded).
//!
//! In ([`answer_notify`], a primary telling us): from the configured primary's address
//! (any port), for a secondary zone, TSIG-verified when signed: NOERROR, and a refresh
//! of that zone ([`crate::transfer::secondary`]). From anyone else, or for another zone: REFUSED
//! (as NSD; docs/dns-answer-rules.md §1.13), counted, no action.
//!
//! Limitations: only UDP (RFC 1996 §3.6 allows TCP; every secondary listens on UDP).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::unix_now;
use crate::config::transfer::{NotifyTarget, TransferConfig};
use crate::proto::builder::{question, Compressor, MessageBuilder, Section};
use crate::proto::flags;
use crate::proto::name::Name;
use crate::proto::query::parse_query;
use crate::proto::random_id;
use crate::proto::reader::Header;
use crate::proto::rr::{Rclass, Rtype};
use crate::proto::tsig::{self, Key, KeyRing};
use crate::proto::types::{Opcode, Rcode};
use crate::query::answer::Outcome;
use crate::transfer::metrics::XfrMetrics;
use crate::transfer::secondary::Secondaries;
use crate::zone::Zone;

/// Why one NOTIFY was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("no answer after {0} attempts")]
    NoAnswer(u32),
    #[error("the secondary answered {0}")]
    Rcode(Rcode),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing: {0}")]
    Sign(#[from] tsig::SignError),
    #[error("the answer's TSIG does not verify: {0}")]
    Tsig(#[from] tsig::ResponseError),
}

/// One secondary and the key NOTIFYs to it are signed with.
#[derive(Debug, Clone)]
struct Resolved {
    addr: SocketAddr,
    key: Option<Arc<Key>>,
}

/// Sends NOTIFYs to each zone's configured secondaries.
pub struct Notifier {
    targets: HashMap<Name, Vec<Resolved>>,
    retries: u32,
    timeout: Duration,
    metrics: Arc<XfrMetrics>,
    /// The addresses this server answers on: a NOTIFY leaves from the one of the
    /// secondary's family, because secondaries accept NOTIFY only from their primary's
    /// address (RFC 1996 §3.10), and on a host with several addresses the kernel's
    /// choice would be another one.
    sources: Vec<std::net::IpAddr>,
    /// The task still retrying for each (zone, secondary), replaced by a newer change.
    inflight: Mutex<HashMap<(Name, SocketAddr), tokio::task::AbortHandle>>,
}

impl Notifier {
    /// Resolves the targets' keys (checked to exist by
    /// [`TransferConfig::check_keys`]).
    pub fn new(
        config: &TransferConfig,
        keys: &KeyRing,
        metrics: Arc<XfrMetrics>,
        listen: &[SocketAddr],
    ) -> Notifier {
        let targets = config
            .notify
            .iter()
            .map(|(zone, ts)| {
                let resolved = ts
                    .iter()
                    .map(|t: &NotifyTarget| Resolved {
                        addr: t.addr,
                        key: t.key.as_ref().and_then(|k| keys.get(k).cloned()),
                    })
                    .collect();
                (zone.clone(), resolved)
            })
            .collect();
        Notifier {
            targets,
            retries: config.notify_retries,
            timeout: config.notify_timeout,
            metrics,
            sources: listen
                .iter()
                .map(|a| a.ip())
                .filter(|ip| !ip.is_unspecified())
                .collect(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The address a NOTIFY to `target` leaves from: the first listen address of its
    /// family, or any (the kernel picks) when the server listens on a wildcard.
    fn source_for(&self, target: SocketAddr) -> SocketAddr {
        let ip = self
            .sources
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == target.is_ipv4())
            .unwrap_or(if target.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            });
        SocketAddr::new(ip, 0)
    }

    /// The secondaries NOTIFYed about `origin`.
    pub fn targets_of(&self, origin: &Name) -> Vec<std::net::SocketAddr> {
        self.targets
            .iter()
            .find(|(o, _)| o.eq_ignore_case(origin))
            .map(|(_, ts)| ts.iter().map(|t| t.addr).collect())
            .unwrap_or_default()
    }

    /// Starts NOTIFYing the secondaries of `zone` about its current serial. Returns at
    /// once; call inside the runtime.
    pub fn serial_changed(&self, zone: &Zone) {
        let Some(targets) = self.targets.get(&zone.origin) else {
            return;
        };
        let origin = zone.apex().owner().to_vec();
        let soa = (zone.soa_ttl, zone.soa_rdata.to_vec());
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        for t in targets {
            let (t, origin, soa) = (t.clone(), origin.clone(), soa.clone());
            let addr = t.addr;
            let (retries, timeout, metrics) = (self.retries, self.timeout, self.metrics.clone());
            let zone_name = zone.origin.clone();
            let serial = zone.serial();
            let local = self.source_for(addr);
            let task = tokio::spawn(async move {
                match notify(local, &origin, &soa, &t, retries, timeout).await {
                    Ok(attempts) => {
                        metrics.notify_sent.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(zone = %zone_name, serial, secondary = %t.addr, attempts, "NOTIFY acknowledged");
                    }
                    Err(e) => {
                        metrics.notify_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(zone = %zone_name, serial, secondary = %t.addr, "NOTIFY failed: {e}; the secondary refreshes at its SOA refresh timer instead");
                    }
                }
            });
            if let Some(old) = inflight.insert((zone.origin.clone(), addr), task.abort_handle()) {
                old.abort();
            }
        }
    }
}

/// The NOTIFY message for a zone: question = apex SOA, the SOA in the answer.
pub fn message(id: u16, origin: &[u8], soa_ttl: u32, soa_rdata: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + origin.len() + soa_rdata.len());
    let mut comp = Compressor::default();
    let q = question(origin, Rtype::SOA, Rclass::IN);
    let mut w = MessageBuilder::request(&mut m, &mut comp, id, Opcode::NOTIFY, flags::AA, &q);
    // The zone's own SOA is valid wire data; were it not, the NOTIFY goes without it
    // (the answer section is optional, RFC 1996 §3.7).
    let _ = w.record(
        Section::Answer,
        origin,
        Rtype::SOA,
        Rclass::IN,
        soa_ttl,
        soa_rdata,
    );
    w.finish();
    m
}

/// Answers a NOTIFY that arrived (see the module documentation) into `out`.
pub fn answer_notify(
    secondaries: &Secondaries,
    keys: &KeyRing,
    m: &XfrMetrics,
    pkt: &[u8],
    peer: SocketAddr,
    out: &mut Vec<u8>,
) -> Outcome {
    let now = unix_now();
    let reply = |rc: Rcode| Outcome::Reply {
        rcode: rc,
        truncated: false,
    };
    let verified = match tsig::verify_request(pkt, keys, now) {
        Ok(v) => v,
        Err(e) => {
            m.notify_refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%peer, "NOTIFY refused: {e}");
            *out = crate::proto::builder::error_reply(pkt, e.rcode());
            if let Some(t) = e.response() {
                let _ = tsig::sign_response(out, &t, now);
            }
            return reply(e.rcode());
        }
    };
    let finish = |out: &mut Vec<u8>, rc: Rcode| {
        *out = crate::proto::builder::error_reply(pkt, rc);
        if rc == Rcode::NOERROR {
            let fl = u16::from_be_bytes([out[2], out[3]]) | flags::AA;
            out[2..4].copy_from_slice(&fl.to_be_bytes());
        }
        if let Some(v) = &verified {
            let _ = tsig::sign_response(out, &v.response(), unix_now());
        }
        reply(rc)
    };
    let q = match parse_query(pkt) {
        Ok(q) => q,
        Err(_) => {
            m.notify_refused.fetch_add(1, Ordering::Relaxed);
            return finish(out, Rcode::FORMERR);
        }
    };
    let ip = match peer.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
        v4 => v4,
    };
    let Some(zone) = secondaries.notified(q.qname(), q.qclass, ip) else {
        m.notify_refused.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%peer, zone = %Name::from_wire(q.qname()).map(|n| n.to_string()).unwrap_or_default(), "NOTIFY refused: not a secondary zone of that primary");
        return finish(out, Rcode::REFUSED);
    };
    m.notify_received.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%peer, zone = %zone, "NOTIFY received, refreshing");
    finish(out, Rcode::NOERROR)
}

/// Sends one NOTIFY until it is answered or the attempts run out; returns the attempts.
async fn notify(
    local: SocketAddr,
    origin: &[u8],
    soa: &(u32, Vec<u8>),
    target: &Resolved,
    retries: u32,
    timeout: Duration,
) -> Result<u32, NotifyError> {
    let sock = tokio::net::UdpSocket::bind(local).await?;
    sock.connect(target.addr).await?;
    let mut wait = timeout;
    let mut buf = vec![0u8; 4096];
    for attempt in 1..=retries {
        let id = random_id();
        let mut msg = message(id, origin, soa.0, &soa.1);
        let mac = match &target.key {
            Some(k) => Some(tsig::sign_request(
                &mut msg,
                k,
                tsig::DEFAULT_FUDGE,
                unix_now(),
            )?),
            None => None,
        };
        // A refused send (no route, port unreachable from an earlier attempt) counts as
        // an attempt without an answer.
        if let Err(e) = sock.send(&msg).await {
            tracing::debug!(secondary = %target.addr, "NOTIFY send: {e}");
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await;
            let n = match got {
                Err(_) => break,
                Ok(Err(e)) => {
                    tracing::debug!(secondary = %target.addr, "NOTIFY receive: {e}");
                    tokio::time::sleep_until(deadline).await;
                    break;
                }
                Ok(Ok(n)) => n,
            };
            let r = &buf[..n];
            // Only the answer to this attempt: same ID, QR set, opcode NOTIFY.
            let Some(h) = Header::parse(r)
                .filter(|h| h.id == id && h.is_response() && h.opcode() == Opcode::NOTIFY)
            else {
                continue;
            };
            if let (Some(k), Some(mac)) = (&target.key, &mac) {
                tsig::verify_response(r, k, mac, unix_now())?;
            }
            if h.rcode() != Rcode::NOERROR {
                return Err(NotifyError::Rcode(h.rcode()));
            }
            return Ok(attempt);
        }
        wait = wait.saturating_mul(2);
    }
    Err(NotifyError::NoAnswer(retries))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A secondary that answers only the third NOTIFY is retried until then; one that
    /// never answers is given up after the attempts, within the summed waits.
    #[test]
    fn retries_with_backoff_then_gives_up() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = server.local_addr().unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let mut seen = 0;
                loop {
                    let (n, from) = server.recv_from(&mut buf).await.unwrap();
                    seen += 1;
                    assert_eq!(Opcode((buf[2] >> 3) & 0xf), Opcode::NOTIFY);
                    // From the source given (a listen address), not the kernel's choice.
                    assert_eq!(from.ip(), std::net::IpAddr::from([127, 0, 0, 2]));
                    if seen >= 3 {
                        let mut r = buf[..n].to_vec();
                        r[2] |= 0x80;
                        server.send_to(&r, from).await.unwrap();
                    }
                }
            });
            let target = Resolved { addr, key: None };
            let soa = (60, [&[0u8, 0][..], &[0; 20]].concat());
            let n = notify(
                "127.0.0.2:0".parse().unwrap(),
                b"\x01d\x04test\x00",
                &soa,
                &target,
                5,
                Duration::from_millis(20),
            )
            .await
            .unwrap();
            assert_eq!(n, 3);
            // Nobody listens here.
            let dead = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let target = Resolved {
                addr: dead.local_addr().unwrap(),
                key: None,
            };
            let started = std::time::Instant::now();
            let e = notify(
                "127.0.0.1:0".parse().unwrap(),
                b"\x01d\x04test\x00",
                &soa,
                &target,
                3,
                Duration::from_millis(10),
            )
            .await
            .unwrap_err();
            assert!(matches!(e, NotifyError::NoAnswer(3)), "{e}");
            assert!(started.elapsed() < Duration::from_millis(500));
        });
    }
}
