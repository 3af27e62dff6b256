//! Parsing incoming queries (RFC 1035 §4.1, RFC 6891 for EDNS(0)).
//!
//! The parser reads only what a query needs (header, the one question, the OPT record) and
//! walks every other record just far enough to validate it, so the work is linear in the
//! packet size and nothing is allocated. Names are read by the one [`Reader`] (RFC 9267
//! rules). Every malformed input maps to a [`Malformed`] value that the caller turns into
//! FORMERR or a counted drop; nothing here panics on input.
//!
//! Limitations: EDNS options are skipped, not interpreted.

use super::name::MAX_NAME_LEN;
use super::reader::{Header, Reader};
use super::types::{Opcode, Rcode, Rtype};
use super::{flags, HEADER_LEN};
use crate::proto::types::Rclass;

/// The EDNS(0) parameters of a query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size as sent (may be below 512).
    pub udp_payload: u16,
    /// EDNS version; only 0 is supported.
    pub version: u8,
    /// The DNSSEC OK bit (RFC 3225), echoed in the response.
    pub dnssec_ok: bool,
}

/// A query that passed validation. Borrowed from the packet: nothing is copied except the
/// lower-cased question name, which lives in a fixed array.
#[derive(Debug, Clone)]
pub struct Query<'a> {
    pub id: u16,
    pub opcode: Opcode,
    /// The RD and CD bits of the request, to be copied into the response.
    pub copy_flags: u16,
    /// The question section exactly as received (name, type, class): echoed byte-for-byte.
    pub question: &'a [u8],
    /// The question name folded to lower case, uncompressed wire form.
    qname_lower: [u8; MAX_NAME_LEN],
    qname_len: u8,
    pub qtype: Rtype,
    pub qclass: Rclass,
    pub edns: Option<Edns>,
}

impl Query<'_> {
    /// The lower-cased question name in wire form.
    pub fn qname(&self) -> &[u8] {
        &self.qname_lower[..self.qname_len as usize]
    }
}

/// Why a packet is not a valid query, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Not worth or not safe to answer: too short for a header, or a response (QR=1).
    Drop(DropReason),
    /// Answer with this rcode (FORMERR, NOTIMP or BADVERS), echoing what could be parsed.
    Reply {
        id: u16,
        opcode: Opcode,
        copy_flags: u16,
        rcode: Rcode,
        /// The question bytes, when the question itself was well formed.
        question_len: usize,
        /// Whether the response may carry an OPT (the query had a valid one).
        edns: Option<Edns>,
    },
}

/// Why a packet was dropped without reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than the 12-byte header.
    Short,
    /// QR=1: a response sent to us; answering could start a loop.
    Response,
}

/// Parses a query packet. `Ok` means a well-formed QUERY (or other opcode with one
/// question) the caller can answer; `Err` says whether to drop or which error to send.
pub fn parse_query(pkt: &[u8]) -> Result<Query<'_>, Malformed> {
    match Header::parse(pkt) {
        Some(h) => parse_query_with(pkt, &h),
        None => Err(Malformed::Drop(DropReason::Short)),
    }
}

/// [`parse_query`] for a packet whose header `h` is already parsed (by the dispatcher).
pub fn parse_query_with<'a>(pkt: &'a [u8], h: &Header) -> Result<Query<'a>, Malformed> {
    if h.is_response() {
        return Err(Malformed::Drop(DropReason::Response));
    }
    let (id, op) = (h.id, h.opcode());
    let copy_flags = h.flags & (flags::RD | flags::CD);
    let [qd, an, ns, ar] = h.counts;
    let reply = |rcode, question_len, edns| Malformed::Reply {
        id,
        opcode: op,
        copy_flags,
        rcode,
        question_len,
        edns,
    };

    // RFC 9619: exactly one question (QDCOUNT=0 is only for cookie queries, which we do
    // not implement, so it is FORMERR like on NSD, Knot and BIND).
    if qd != 1 {
        return Err(reply(Rcode::FORMERR, 0, None));
    }
    let mut r = Reader::at(pkt, HEADER_LEN);
    let mut qname_lower = [0u8; MAX_NAME_LEN];
    let Ok(qname_len) = r.name_lower_into(&mut qname_lower) else {
        return Err(reply(Rcode::FORMERR, 0, None));
    };
    let Ok(&[t0, t1, c0, c1]) = r.array::<4>() else {
        return Err(reply(Rcode::FORMERR, 0, None));
    };
    let qtype = Rtype::from_be_bytes([t0, t1]);
    let qclass = Rclass::from_be_bytes([c0, c1]);
    let question_len = r.pos() - HEADER_LEN;

    // Walk the other sections: they must be well formed, and OPT may only appear once, in
    // the additional section, owned by the root (RFC 6891 §6.1.1).
    let mut edns: Option<Edns> = None;
    let mut edns_bad = false;
    for (section, count) in [(1u8, an), (2, ns), (3, ar)] {
        for _ in 0..count {
            let owner_start = r.pos();
            if r.skip_name().is_err() {
                return Err(reply(Rcode::FORMERR, question_len, None));
            }
            let root_owner = r.pos() == owner_start + 1 && pkt[owner_start] == 0;
            let Ok(f) = r.array::<10>() else {
                return Err(reply(Rcode::FORMERR, question_len, None));
            };
            let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
            if r.bytes(rdlen).is_err() {
                return Err(reply(Rcode::FORMERR, question_len, None));
            }
            if Rtype::from_be_bytes([f[0], f[1]]) == Rtype::OPT {
                if section != 3 || edns.is_some() || !root_owner {
                    edns_bad = true;
                }
                edns = Some(Edns {
                    udp_payload: u16::from_be_bytes([f[2], f[3]]),
                    version: f[5],
                    dnssec_ok: f[6] & 0x80 != 0,
                });
            }
        }
    }
    if edns_bad {
        // The FORMERR is caused by the OPT itself, so the response carries none.
        return Err(reply(Rcode::FORMERR, question_len, None));
    }
    // Trailing bytes after the last record are tolerated, as BIND and NSD do.
    if let Some(e) = edns {
        if e.version > 0 {
            return Err(reply(Rcode::BADVERS, question_len, Some(e)));
        }
    }
    Ok(Query {
        id,
        opcode: op,
        copy_flags,
        question: &pkt[HEADER_LEN..HEADER_LEN + question_len],
        qname_lower,
        qname_len: qname_len as u8,
        qtype,
        qclass,
        edns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: Rtype) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn parses_simple_query_and_lowercases() {
        let p = query(b"\x03WwW\x07example\x04test\x00", Rtype(1));
        let q = parse_query(&p).unwrap();
        assert_eq!(q.qname(), b"\x03www\x07example\x04test\x00");
        assert_eq!(q.question, &p[12..]);
        assert_eq!(q.qtype, Rtype::A);
        assert_eq!(q.copy_flags, flags::RD);
        assert!(q.edns.is_none());
    }

    #[test]
    fn drops_short_and_responses() {
        for n in 0..12 {
            assert_eq!(
                parse_query(&vec![0u8; n]).unwrap_err(),
                Malformed::Drop(DropReason::Short)
            );
        }
        let mut p = query(b"\x00", Rtype(1));
        p[2] |= 0x80;
        assert_eq!(
            parse_query(&p).unwrap_err(),
            Malformed::Drop(DropReason::Response)
        );
    }

    fn rcode_of(p: &[u8]) -> Rcode {
        match parse_query(p) {
            Err(Malformed::Reply { rcode, .. }) => rcode,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_names_and_counts() {
        // Pointer into the header, forward pointer, loop, label type 0x40, too long.
        for name in [&b"\xc0\x00"[..], b"\xc0\x20", b"\xc0\x0c", b"\x41a\x00"] {
            assert_eq!(rcode_of(&query(name, Rtype(1))), Rcode::FORMERR, "{name:?}");
        }
        let long: Vec<u8> = std::iter::repeat_n(
            b"\x3faaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
            5,
        )
        .flatten()
        .chain([0])
        .collect();
        assert_eq!(rcode_of(&query(&long, Rtype(1))), Rcode::FORMERR);
        let mut p = query(b"\x00", Rtype(1));
        p[6] = 0xff;
        p[7] = 0xff;
        assert_eq!(rcode_of(&p), Rcode::FORMERR);
        let mut p = query(b"\x00", Rtype(1));
        p[5] = 2;
        assert_eq!(rcode_of(&p), Rcode::FORMERR);
        p[5] = 0;
        assert_eq!(rcode_of(&p[..12]), Rcode::FORMERR);
    }

    /// A query with two additional records: one owned by "b.", whose rdata is a chain of
    /// `hops - 1` compression pointers, each pointing at the one before (the first at
    /// "b."), and one owned by a last pointer at the end of that chain. Reading the second
    /// owner follows `hops` pointers.
    fn pointer_chain_query(hops: u16) -> Vec<u8> {
        let mut p = query(b"\x01a\x00", Rtype(1));
        p[11] = 2; // ARCOUNT: the chain is parsed, not ignored as trailing bytes.
        let first = p.len();
        let rdlen = (hops - 1) * 2;
        p.extend_from_slice(b"\x01b\x00\x00\x01\x00\x01\x00\x00\x00\x00");
        p.extend_from_slice(&rdlen.to_be_bytes());
        let mut prev = first;
        for _ in 0..hops {
            let here = p.len();
            p.extend_from_slice(&(0xc000 | prev as u16).to_be_bytes());
            prev = here;
        }
        p.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
        p
    }

    #[test]
    fn pointer_chain_is_bounded() {
        // RFC 9267 §2: the number of pointers followed is capped (126, the most a name of
        // at most 255 octets could need); a chain under the cap is a valid name "b.".
        assert!(parse_query(&pointer_chain_query(100)).is_ok());
        assert_eq!(rcode_of(&pointer_chain_query(200)), Rcode::FORMERR);
    }

    fn with_opt(mut p: Vec<u8>, owner: &[u8], version: u8) -> Vec<u8> {
        p[11] += 1;
        p.extend_from_slice(owner);
        p.extend_from_slice(&41u16.to_be_bytes());
        p.extend_from_slice(&1232u16.to_be_bytes());
        p.extend_from_slice(&[0, version, 0x80, 0, 0, 0]);
        p
    }

    #[test]
    fn edns_rules() {
        let p = with_opt(query(b"\x00", Rtype(1)), b"\x00", 0);
        let q = parse_query(&p).unwrap();
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_payload: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(
            rcode_of(&with_opt(query(b"\x00", Rtype(1)), b"\x00", 1)),
            Rcode::BADVERS
        );
        assert_eq!(
            rcode_of(&with_opt(query(b"\x00", Rtype(1)), b"\x01a\x00", 0)),
            Rcode::FORMERR
        );
        let two = with_opt(with_opt(query(b"\x00", Rtype(1)), b"\x00", 0), b"\x00", 0);
        assert_eq!(rcode_of(&two), Rcode::FORMERR);
    }
}
