//! Which path answers a packet: a precompiled answer ([`crate::fastpath`]) when the
//! queried name has one, the full RFC 1034 algorithm ([`crate::answer`]) otherwise. Both
//! transports come through here, so the choice is made in one place and the two paths do
//! not know about each other.

use crate::answer::{Outcome, Responder, Scratch, Transport};
use crate::catalog::Catalog;
use crate::wire::parse_query;

/// Builds the response to `pkt` in `buf`.
pub fn respond(
    responder: &Responder,
    catalog: &Catalog,
    pkt: &[u8],
    transport: Transport,
    buf: &mut Vec<u8>,
    scratch: &mut Scratch,
) -> Outcome {
    let q = match parse_query(pkt) {
        Ok(q) => q,
        Err(malformed) => return responder.reply_malformed(pkt, malformed, buf, &mut scratch.comp),
    };
    if let Some(outcome) = crate::fastpath::answer(responder, catalog, &q, transport, buf) {
        return outcome;
    }
    responder.answer(catalog, &q, transport, buf, scratch)
}
