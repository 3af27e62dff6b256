//! The dispatcher: every message that arrives, on either transport, comes through here.
//! Its header is parsed once, and it is routed by opcode and transport in this one place:
//!
//! | message                         | goes to                                            |
//! |---------------------------------|----------------------------------------------------|
//! | shorter than a header, or QR=1  | dropped (counted)                                  |
//! | UPDATE                          | the zone's change pipeline ([`crate::dynamic`])    |
//! | NOTIFY                          | the secondary zones ([`crate::transfer::notify`])            |
//! | AXFR or IXFR over TCP           | a zone transfer ([`crate::transfer::xfr`])                   |
//! | any other query (IXFR over UDP) | [`crate::transfer::xfr`] when it must answer it, else the    |
//! |                                 | query path ([`crate::query::respond`]), signed or not     |
//!
//! A service that is not configured leaves its messages to the query path, which answers
//! NOTIMP for opcodes it does not serve. Queries are parsed once, here, and the parsed
//! query is handed on.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::proto::query::{parse_query_with, DropReason, Malformed, Query};
use crate::proto::reader::{Header, Reader};
use crate::proto::types::Rcode;
use crate::proto::types::{Opcode, Rtype};
use crate::proto::HEADER_LEN;
use crate::query::answer::{Outcome, Responder, Scratch, Transport};
use crate::stats::{bump, Stats};
use crate::zone::catalog::Catalog;

/// What every transport shares.
pub struct Shared {
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// Wait after a small batch under load (see [`crate::net::listen::udp_worker`]); zero
    /// disables it.
    pub udp_coalesce: Duration,
    pub responder: Responder,
    pub stats: Arc<Stats>,
    pub query_log: bool,
    pub shutdown: AtomicBool,
    /// Dynamic update, and the TSIG keys that signed queries are checked with; `None`
    /// answers UPDATE with NOTIMP and ignores TSIG (unit tests of the query path).
    pub updates: Option<Arc<crate::dynamic::Updates>>,
    /// Zone transfers, NOTIFY and secondary zones; `None` when none are configured.
    pub xfr: Option<Arc<crate::transfer::xfr::Transfers>>,
}

/// Where one message goes, decided from its header (and, for queries, its question).
pub enum Route<'a> {
    /// Not answered: shorter than a header, or a response (QR=1; answering could loop).
    Drop(DropReason),
    /// UPDATE, for the zone's change pipeline.
    Update,
    /// NOTIFY, for the secondary zones.
    Notify,
    /// AXFR or IXFR over TCP: answered with as many messages as the zone needs.
    Transfer(Result<Query<'a>, Malformed>),
    /// Everything else: the query path, with the query as parsed.
    Query(Result<Query<'a>, Malformed>),
}

/// Routes one message (see the module documentation). `Update` and `Notify` are only
/// given when that service is configured (`updates`, `transfers`); otherwise those
/// messages are queries to the query path, which answers NOTIMP.
pub fn route(pkt: &[u8], transport: Transport, updates: bool, transfers: bool) -> Route<'_> {
    let Some(h) = Header::parse(pkt) else {
        return Route::Drop(DropReason::Short);
    };
    if h.is_response() {
        return Route::Drop(DropReason::Response);
    }
    match h.opcode() {
        Opcode::UPDATE if updates => return Route::Update,
        Opcode::NOTIFY if transfers => return Route::Notify,
        _ => {}
    }
    let query = parse_query_with(pkt, &h);
    if transfers && transport == Transport::Tcp && h.opcode() == Opcode::QUERY {
        // A malformed transfer request is still the transfer service's to refuse (with
        // its log line and counter): its question type is read alone.
        let qtype = match &query {
            Ok(q) => Some(q.qtype),
            Err(_) => first_qtype(pkt),
        };
        if matches!(qtype, Some(Rtype::AXFR | Rtype::IXFR)) {
            return Route::Transfer(query);
        }
    }
    Route::Query(query)
}

/// The type of the first question, read on its own (for a message the query parser
/// refused).
fn first_qtype(pkt: &[u8]) -> Option<Rtype> {
    Reader::at(pkt, HEADER_LEN).question().ok().map(|q| q.qtype)
}

/// What a TCP connection does after one message.
pub enum TcpNext {
    /// Send the reply in `out`.
    Reply,
    /// Nothing to send (a dropped message); read the next one.
    Nothing,
    /// Close the connection (a transfer failed half-way).
    Close,
}

impl Shared {
    /// Handles one UDP datagram: the reply goes into `out` (true), or there is none
    /// (false). UPDATE is answered from the runtime through `update_socket`, because it
    /// waits for the journal.
    pub fn udp(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        peer: impl Fn() -> SocketAddr,
        update_socket: Option<&Arc<UdpSocket>>,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> bool {
        let updates = self.updates.as_ref().zip(update_socket);
        match route(pkt, Transport::Udp, updates.is_some(), self.xfr.is_some()) {
            Route::Update => {
                if let Some((u, sock)) = updates {
                    u.submit_udp(pkt, peer(), sock);
                }
                false
            }
            other => self.answer(catalog, pkt, other, Transport::Udp, &peer, out, scratch),
        }
    }

    /// Handles one message that arrived over TCP; a transfer is written to `conn`
    /// directly, other replies go into `out`.
    pub async fn tcp<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        pkt: &[u8],
        peer: SocketAddr,
        conn: &mut W,
        timeout: Duration,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> TcpNext {
        match route(
            pkt,
            Transport::Tcp,
            self.updates.is_some(),
            self.xfr.is_some(),
        ) {
            Route::Update => {
                if let Some(u) = &self.updates {
                    *out = u.handle(pkt).await;
                }
                TcpNext::Reply
            }
            Route::Transfer(query) => {
                let Some(x) = &self.xfr else {
                    return TcpNext::Close;
                };
                match x.serve_tcp(pkt, query, peer, conn, timeout).await {
                    Ok(()) => TcpNext::Nothing,
                    Err(_) => TcpNext::Close,
                }
            }
            other => {
                let catalog = self.catalog.load();
                if self.answer(&catalog, pkt, other, Transport::Tcp, &|| peer, out, scratch) {
                    TcpNext::Reply
                } else {
                    TcpNext::Nothing
                }
            }
        }
    }

    /// Answers a query or NOTIFY into `out`; returns false when nothing is to be sent.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        route: Route<'_>,
        transport: Transport,
        peer: &dyn Fn() -> SocketAddr,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> bool {
        #[cfg(test)]
        if pkt
            .windows(crate::INJECT_PANIC.len())
            .any(|w| w == crate::INJECT_PANIC)
        {
            panic!("panic injected by a test");
        }
        let (outcome, query) = match route {
            Route::Drop(why) => (Outcome::Drop(why), None),
            Route::Notify => {
                let x = self
                    .xfr
                    .as_deref()
                    .expect("routed to NOTIFY only with transfers");
                (
                    crate::transfer::notify::answer_notify(
                        &x.shared.secondaries,
                        &x.keys(),
                        &x.shared.metrics,
                        pkt,
                        peer(),
                        out,
                    ),
                    None,
                )
            }
            // Routed to the transfer service only over TCP, which handles it itself.
            Route::Update | Route::Transfer(_) => (Outcome::Drop(DropReason::Short), None),
            Route::Query(query) => {
                let outcome = self.query(catalog, pkt, &query, transport, peer, out, scratch);
                (outcome, query.ok())
            }
        };
        match outcome {
            Outcome::Drop(_) => {
                bump(&self.stats.malformed_dropped);
                false
            }
            Outcome::Reply { rcode, truncated } => {
                self.stats.count_rcode(rcode.to_u16());
                if truncated {
                    bump(&self.stats.truncated);
                }
                if self.query_log {
                    log_query(query.as_ref(), peer(), transport, rcode, truncated);
                }
                true
            }
        }
    }

    /// The query path: what the transfer service must answer itself (IXFR over UDP,
    /// queries into expired secondary zones), then a signed request, then the rest.
    #[allow(clippy::too_many_arguments)]
    fn query(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        query: &Result<Query<'_>, Malformed>,
        transport: Transport,
        peer: &dyn Fn() -> SocketAddr,
        out: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        let intercepted = match (self.xfr.as_deref(), query) {
            (Some(x), Ok(q)) => x.intercept(pkt, q, transport, peer, out),
            _ => None,
        };
        if let Some(outcome) = intercepted {
            return outcome;
        }
        let keys = self
            .updates
            .as_deref()
            .map(|u| u.keys())
            .filter(|k| !k.is_empty());
        let signed = keys.and_then(|keys| {
            crate::query::respond::respond_signed(
                &self.responder,
                catalog,
                pkt,
                query,
                transport,
                out,
                scratch,
                &keys,
            )
        });
        signed.unwrap_or_else(|| {
            crate::query::respond::respond_parsed(
                &self.responder,
                catalog,
                pkt,
                query,
                transport,
                out,
                scratch,
            )
        })
    }
}

/// Logs one query (only when the query log is on).
fn log_query(
    query: Option<&Query<'_>>,
    peer: SocketAddr,
    transport: Transport,
    rcode: Rcode,
    truncated: bool,
) {
    let (name, qtype) = match query {
        Some(q) => (
            crate::proto::name::Name::from_wire(q.qname())
                .map(|n| n.to_string())
                .unwrap_or_default(),
            q.qtype.to_string(),
        ),
        None => ("<malformed>".into(), String::new()),
    };
    tracing::info!(target: "musterd::query", %peer, ?transport, %name, %qtype, %rcode, truncated, "query");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(flags: u16, question: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1];
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        m.extend_from_slice(question);
        m
    }

    fn kind(r: Route<'_>) -> &'static str {
        match r {
            Route::Drop(_) => "drop",
            Route::Update => "update",
            Route::Notify => "notify",
            Route::Transfer(_) => "transfer",
            Route::Query(Ok(_)) => "query",
            Route::Query(Err(_)) => "malformed",
        }
    }

    #[test]
    fn routes_by_opcode_and_transport() {
        let a = b"\x01a\x00\x00\x01\x00\x01";
        let axfr = b"\x01a\x00\x00\xfc\x00\x01";
        let ixfr = b"\x01a\x00\x00\xfb\x00\x01";
        let (udp, tcp) = (Transport::Udp, Transport::Tcp);
        let update = 5 << 11;
        let notify = 4 << 11;
        let cases: [(Vec<u8>, Transport, bool, &str); 12] = [
            (vec![0; 11], udp, true, "drop"),
            (msg(0x8000, a), udp, true, "drop"),
            (msg(update, a), udp, true, "update"),
            (msg(update, a), udp, false, "query"),
            (msg(notify, a), tcp, true, "notify"),
            (msg(notify, a), tcp, false, "query"),
            (msg(0, a), tcp, true, "query"),
            (msg(0, axfr), tcp, true, "transfer"),
            (msg(0, ixfr), tcp, true, "transfer"),
            (msg(0, ixfr), udp, true, "query"),
            (msg(0, axfr), tcp, false, "query"),
            // A malformed AXFR (two questions) is the transfer service's to refuse.
            (
                [&msg(0, axfr)[..5], &[2], &msg(0, axfr)[6..]].concat(),
                tcp,
                true,
                "transfer",
            ),
        ];
        for (pkt, transport, on, want) in cases {
            assert_eq!(
                kind(route(&pkt, transport, on, on)),
                want,
                "{pkt:?} {transport:?}"
            );
        }
        assert_eq!(
            kind(route(&msg(0, b"\xc0\x00\x00\x01\x00\x01"), udp, true, true)),
            "malformed"
        );
    }
}
