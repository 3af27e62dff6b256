//! Which path answers a packet: a precompiled answer ([`crate::query::fastpath`]) when the
//! queried name has one, the full RFC 1034 algorithm ([`crate::query::answer`]) otherwise. Both
//! transports come through here, so the choice is made in one place and the two paths do
//! not know about each other.

use crate::proto::query::{parse_query, Malformed, Query};
use crate::proto::types::Rcode;
use crate::query::answer::{Outcome, Responder, Scratch, Transport};
use crate::zone::catalog::Catalog;

/// Builds the response to `pkt` in `buf`.
pub fn respond(
    responder: &Responder,
    catalog: &Catalog,
    pkt: &[u8],
    transport: Transport,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Outcome {
    let query = parse_query(pkt);
    respond_parsed(responder, catalog, pkt, &query, transport, buf, scratch)
}

/// [`respond`] for a query the dispatcher has parsed.
pub fn respond_parsed(
    responder: &Responder,
    catalog: &Catalog,
    pkt: &[u8],
    query: &Result<Query<'_>, Malformed>,
    transport: Transport,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Outcome {
    let q = match query {
        Ok(q) => q,
        Err(malformed) => {
            return responder.reply_malformed(pkt, *malformed, buf, &mut scratch.comp)
        }
    };
    if let Some(outcome) = crate::query::fastpath::answer(responder, catalog, q, transport, buf) {
        return outcome;
    }
    responder.answer(catalog, q, transport, buf, scratch)
}

/// Answers a TSIG-signed request (RFC 8945 §5.3): verified, answered by the full path
/// (precompiled answers cannot carry a signature), and signed; errors as RFC 8945 §5.2
/// says (FORMERR unsigned, NOTAUTH with BADKEY or BADSIG unsigned, BADTIME or BADTRUNC
/// signed). Over UDP the answer leaves room for the TSIG record under the client's size
/// limit; when it would not fit it is sent truncated (TC), signed. `None` when the
/// request carries no TSIG: the caller answers it as usual, at no extra cost for a
/// packet without additional records.
#[allow(clippy::too_many_arguments)]
pub fn respond_signed(
    responder: &Responder,
    catalog: &Catalog,
    pkt: &[u8],
    query: &Result<Query<'_>, Malformed>,
    transport: Transport,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
    keys: &crate::proto::tsig::KeyRing,
) -> Option<Outcome> {
    use crate::proto::builder::MessageBuilder;
    use crate::proto::flags;
    use crate::proto::reader::Header;
    use crate::proto::tsig::{self, Malformed, TsigError};
    // No additional record, no TSIG; QR=1 is dropped by the query path.
    if Header::parse(pkt).is_none_or(|h| h.arcount() == 0 || h.is_response()) {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let verified = match tsig::verify_request(pkt, keys, now) {
        Ok(None) => return None,
        // A message that does not even parse gets the query path's FORMERR.
        Err(TsigError::Malformed(Malformed::Short | Malformed::Truncated)) => return None,
        Ok(Some(v)) => v,
        Err(e) => {
            let (id, copy, question) = crate::update::echo_of(pkt);
            let op = crate::proto::types::Opcode((pkt[2] >> 3) & 0xf);
            *buf = crate::update::response(op, id, copy, question, e.rcode(), None);
            if let Some(t) = e.response() {
                let _ = tsig::sign_response(buf, &t, now);
            }
            return Some(Outcome::Reply {
                rcode: e.rcode(),
                truncated: false,
            });
        }
    };
    let tsig = verified.response();
    let mut outcome = match query {
        Ok(q) => {
            let outcome = responder.answer(catalog, q, transport, buf, scratch);
            let limit = responder.limit(q, transport);
            if transport == Transport::Udp && buf.len() + tsig.record_len() > limit {
                // Header and question only, TC set, plus our OPT when the query had one:
                // the client retries over TCP.
                let answered = u16::from_be_bytes([buf[2], buf[3]]);
                let mut w = MessageBuilder::new(
                    buf,
                    &mut scratch.comp,
                    q.id,
                    q.opcode,
                    q.copy_flags,
                    q.question,
                );
                w.set_flags(answered | flags::TC);
                if let Some(e) = q.edns {
                    w.opt(
                        responder.config.max_udp_payload,
                        Rcode::NOERROR,
                        e.dnssec_ok,
                    );
                }
                w.finish();
                match outcome {
                    Outcome::Reply { rcode, .. } => Outcome::Reply {
                        rcode,
                        truncated: true,
                    },
                    drop => drop,
                }
            } else {
                outcome
            }
        }
        Err(malformed) => responder.reply_malformed(pkt, *malformed, buf, &mut scratch.comp),
    };
    if let Outcome::Reply { .. } = outcome {
        if let Err(e) = tsig::sign_response(buf, &tsig, now) {
            tracing::debug!("cannot sign the response: {e}");
            outcome = Outcome::Drop(crate::proto::query::DropReason::Short);
        }
    }
    Some(outcome)
}
