//! DNS messages on the wire: parsing incoming queries and writing responses
//! (RFC 1035 §4.1, RFC 6891 for EDNS(0), RFC 9267 for safe name decompression).
//!
//! The parser reads only what a query needs (header, the one question, the OPT record) and
//! walks every other record just far enough to validate it, so the work is linear in the
//! packet size and nothing is allocated. Every malformed input maps to a [`Malformed`]
//! value that the caller turns into FORMERR or a counted drop; nothing here panics on input.
//!
//! The writer appends records to a caller-owned buffer with RFC 1035 §4.1.4 compression for
//! owner names and for the rdata names RFC 3597 §4 allows; SRV targets are never compressed.
//!
//! Limitations: no TSIG/SIG(0) (later issues), EDNS options are skipped, not interpreted.

use crate::name::{MAX_LABEL_LEN, MAX_NAME_LEN};
use crate::rr::{rdata_names, rtype, RdataNames};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;

/// Header flag bits (in the 16-bit flags word).
pub mod flags {
    pub const QR: u16 = 0x8000;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const Z: u16 = 0x0040;
    pub const AD: u16 = 0x0020;
    pub const CD: u16 = 0x0010;
}

/// Opcodes (RFC 1035, RFC 1996, RFC 2136).
pub mod opcode {
    pub const QUERY: u8 = 0;
    pub const NOTIFY: u8 = 4;
    pub const UPDATE: u8 = 5;
}

/// Response codes, including the EDNS extended BADVERS (RFC 6891 §6.1.3).
pub mod rcode {
    pub const NOERROR: u16 = 0;
    pub const FORMERR: u16 = 1;
    pub const SERVFAIL: u16 = 2;
    pub const NXDOMAIN: u16 = 3;
    pub const NOTIMP: u16 = 4;
    pub const REFUSED: u16 = 5;
    pub const NOTAUTH: u16 = 9;
    pub const BADVERS: u16 = 16;
}

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
    pub opcode: u8,
    /// The RD and CD bits of the request, to be copied into the response.
    pub copy_flags: u16,
    /// The question section exactly as received (name, type, class): echoed byte-for-byte.
    pub question: &'a [u8],
    /// The question name folded to lower case, uncompressed wire form.
    qname_lower: [u8; MAX_NAME_LEN],
    qname_len: u8,
    pub qtype: u16,
    pub qclass: u16,
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
        opcode: u8,
        copy_flags: u16,
        rcode: u16,
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
    if pkt.len() < HEADER_LEN {
        return Err(Malformed::Drop(DropReason::Short));
    }
    let id = u16::from_be_bytes([pkt[0], pkt[1]]);
    let fl = u16::from_be_bytes([pkt[2], pkt[3]]);
    if fl & flags::QR != 0 {
        return Err(Malformed::Drop(DropReason::Response));
    }
    let op = ((fl >> 11) & 0xf) as u8;
    let copy_flags = fl & (flags::RD | flags::CD);
    let qd = u16::from_be_bytes([pkt[4], pkt[5]]);
    let an = u16::from_be_bytes([pkt[6], pkt[7]]);
    let ns = u16::from_be_bytes([pkt[8], pkt[9]]);
    let ar = u16::from_be_bytes([pkt[10], pkt[11]]);
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
        return Err(reply(rcode::FORMERR, 0, None));
    }
    let mut qname_lower = [0u8; MAX_NAME_LEN];
    let (qname_len, mut pos) = match read_name(pkt, HEADER_LEN, Some(&mut qname_lower)) {
        Ok(v) => v,
        Err(()) => return Err(reply(rcode::FORMERR, 0, None)),
    };
    if pos + 4 > pkt.len() {
        return Err(reply(rcode::FORMERR, 0, None));
    }
    let qtype = u16::from_be_bytes([pkt[pos], pkt[pos + 1]]);
    let qclass = u16::from_be_bytes([pkt[pos + 2], pkt[pos + 3]]);
    pos += 4;
    let question_len = pos - HEADER_LEN;

    // Walk the other sections: they must be well formed, and OPT may only appear once, in
    // the additional section, owned by the root (RFC 6891 §6.1.1).
    let mut edns: Option<Edns> = None;
    let mut edns_bad = false;
    for (section, count) in [(1u8, an), (2, ns), (3, ar)] {
        for _ in 0..count {
            let owner_start = pos;
            let (_, p) = match read_name(pkt, pos, None) {
                Ok(v) => v,
                Err(()) => return Err(reply(rcode::FORMERR, question_len, None)),
            };
            if p + 10 > pkt.len() {
                return Err(reply(rcode::FORMERR, question_len, None));
            }
            let t = u16::from_be_bytes([pkt[p], pkt[p + 1]]);
            let rdlen = u16::from_be_bytes([pkt[p + 8], pkt[p + 9]]) as usize;
            let end = p + 10 + rdlen;
            if end > pkt.len() {
                return Err(reply(rcode::FORMERR, question_len, None));
            }
            if t == rtype::OPT {
                let root_owner = p == owner_start + 1 && pkt[owner_start] == 0;
                if section != 3 || edns.is_some() || !root_owner {
                    edns_bad = true;
                }
                let version = pkt[p + 5];
                let dnssec_ok = pkt[p + 6] & 0x80 != 0;
                edns = Some(Edns {
                    udp_payload: u16::from_be_bytes([pkt[p + 2], pkt[p + 3]]),
                    version,
                    dnssec_ok,
                });
            }
            pos = end;
        }
    }
    if edns_bad {
        // The FORMERR is caused by the OPT itself, so the response carries none.
        return Err(reply(rcode::FORMERR, question_len, None));
    }
    // Trailing bytes after the last record are tolerated, as BIND and NSD do.
    if let Some(e) = edns {
        if e.version > 0 {
            return Err(reply(rcode::BADVERS, question_len, Some(e)));
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

/// Reads a possibly compressed name at `start`. Returns the uncompressed length and the
/// offset just past the name in the packet. When `out` is given, the lower-cased
/// uncompressed name is written there.
///
/// RFC 9267: pointers must point strictly backwards, not into the header, and the total
/// length is capped at 255, which also bounds the number of jumps.
fn read_name(
    pkt: &[u8],
    start: usize,
    mut out: Option<&mut [u8; MAX_NAME_LEN]>,
) -> Result<(usize, usize), ()> {
    let mut pos = start;
    let mut len = 0usize;
    let mut end_after: Option<usize> = None;
    // Each pointer must go strictly below the lowest position read so far, so the walk
    // always terminates; the jump cap is belt and braces.
    let mut lowest = start;
    let mut jumps = 0;
    loop {
        let b = *pkt.get(pos).ok_or(())?;
        match b & 0xc0 {
            0x00 => {
                let l = b as usize;
                if l > MAX_LABEL_LEN || pos + 1 + l > pkt.len() {
                    return Err(());
                }
                if len + 1 + l > MAX_NAME_LEN {
                    return Err(());
                }
                if let Some(o) = out.as_deref_mut() {
                    o[len] = b;
                    for i in 0..l {
                        o[len + 1 + i] = pkt[pos + 1 + i].to_ascii_lowercase();
                    }
                }
                len += 1 + l;
                pos += 1 + l;
                if l == 0 {
                    return Ok((len, end_after.unwrap_or(pos)));
                }
            }
            0xc0 => {
                let b2 = *pkt.get(pos + 1).ok_or(())?;
                let target = (((b & 0x3f) as usize) << 8) | b2 as usize;
                if target < HEADER_LEN || target >= lowest {
                    return Err(());
                }
                jumps += 1;
                if jumps > 126 {
                    return Err(());
                }
                if end_after.is_none() {
                    end_after = Some(pos + 2);
                }
                lowest = target;
                pos = target;
            }
            // 0x40 (extended label, RFC 6891 deprecated it) and 0x80 are not allowed.
            _ => return Err(()),
        }
    }
}

/// Compression table: where each name suffix already written to the message starts.
///
/// Messages are small and hold few distinct names, so a linear table beats a hash map.
#[derive(Default)]
pub struct Compressor {
    /// (offset in message, length of the uncompressed suffix at that offset)
    entries: Vec<(u16, u8)>,
}

impl Compressor {
    /// Forgets every name (for reuse of the same buffers across queries).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Builds a response message in a caller-owned buffer.
pub struct Writer<'b> {
    pub buf: &'b mut Vec<u8>,
    comp: &'b mut Compressor,
    pub counts: [u16; 4],
    /// End of the question section: names inside rdata never point before it.
    question_end: usize,
}

impl<'b> Writer<'b> {
    /// Starts a response: header copied from the query with QR set, and the question echoed.
    pub fn new(
        buf: &'b mut Vec<u8>,
        comp: &'b mut Compressor,
        id: u16,
        opcode: u8,
        copy_flags: u16,
        question: &[u8],
    ) -> Writer<'b> {
        buf.clear();
        comp.clear();
        let fl = flags::QR | ((opcode as u16 & 0xf) << 11) | copy_flags;
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&fl.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        let mut w = Writer {
            buf,
            comp,
            counts: [0; 4],
            question_end: HEADER_LEN + question.len(),
        };
        if !question.is_empty() {
            w.counts[0] = 1;
            w.buf.extend_from_slice(question);
            // The question name is uncompressed and starts at offset 12; later owners that
            // equal it become a pointer, so answers carry the querier's case (as NSD does).
            let name_len = question.len() - 4;
            w.remember(HEADER_LEN, &question[..name_len]);
        }
        w
    }

    /// Sets header flag bits.
    pub fn set_flags(&mut self, bits: u16) {
        let fl = u16::from_be_bytes([self.buf[2], self.buf[3]]) | bits;
        self.buf[2..4].copy_from_slice(&fl.to_be_bytes());
    }

    /// Sets the 4-bit header rcode (the low bits of an extended rcode).
    pub fn set_rcode(&mut self, rc: u16) {
        let fl = (u16::from_be_bytes([self.buf[2], self.buf[3]]) & !0xf) | (rc & 0xf);
        self.buf[2..4].copy_from_slice(&fl.to_be_bytes());
    }

    /// Current length: used to roll back records that do not fit.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing but the header has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEADER_LEN
    }

    /// Drops everything written after `len` in `section` (1 answer, 2 authority, 3
    /// additional), forgetting compression targets past that point.
    pub fn truncate(&mut self, len: usize, section: usize, count: u16) {
        self.buf.truncate(len);
        self.counts[section] = count;
        self.comp.entries.retain(|&(off, _)| (off as usize) < len);
    }

    /// Appends one record. `owner` is an uncompressed wire name; `section` is 1, 2 or 3.
    pub fn record(
        &mut self,
        section: usize,
        owner: &[u8],
        t: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) {
        self.name(owner, false);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_pos = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match rdata_names(t) {
            RdataNames::Whole => self.name(rdata, true),
            RdataNames::AfterU16 if rdata.len() > 2 => {
                self.buf.extend_from_slice(&rdata[..2]);
                self.name(&rdata[2..], true);
            }
            RdataNames::Soa => {
                // Zone data was validated at load time, so the two names are well formed.
                let l1 = crate::name::wire_name_len(rdata).unwrap_or(rdata.len());
                let l2 = crate::name::wire_name_len(&rdata[l1..]).unwrap_or(0);
                self.name(&rdata[..l1], true);
                self.name(&rdata[l1..l1 + l2], true);
                self.buf.extend_from_slice(&rdata[l1 + l2..]);
            }
            _ if t == rtype::SRV && rdata.len() > 6 => {
                // RFC 2782: the target is never compressed, but later owners (the glue for
                // this target) may point at it.
                let start = self.buf.len() + 6;
                self.buf.extend_from_slice(rdata);
                self.remember(start, &rdata[6..]);
            }
            _ => self.buf.extend_from_slice(rdata),
        }
        let rdlen = (self.buf.len() - len_pos - 2) as u16;
        self.buf[len_pos..len_pos + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.counts[section] += 1;
    }

    /// Appends an OPT record (RFC 6891 §6.1.2) with our payload size, the high bits of the
    /// extended rcode, version 0 and the DO bit echoed. No options are echoed.
    pub fn opt(&mut self, udp_payload: u16, ext_rcode: u16, dnssec_ok: bool) {
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_payload.to_be_bytes());
        self.buf.push((ext_rcode >> 4) as u8);
        self.buf.push(0);
        self.buf.push(if dnssec_ok { 0x80 } else { 0 });
        self.buf.push(0);
        self.buf.extend_from_slice(&[0, 0]);
        self.counts[3] += 1;
    }

    /// Writes the section counts into the header; call last.
    pub fn finish(self) {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[4 + i * 2..6 + i * 2].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// Writes `name` (uncompressed wire) compressed against names already in the message.
    ///
    /// Owner names (`exact` false) may point at any equal name, the question included, so
    /// they carry the querier's case (RFC 4343 allows it; NSD does the same). Names inside
    /// rdata (`exact` true) keep the zone's case: they only point at byte-identical names
    /// after the question. That also makes the bytes after the question independent of the
    /// query's case, which the precompiled answers rely on.
    fn name(&mut self, name: &[u8], exact: bool) {
        let mut i = 0;
        while i < name.len() && name[i] != 0 {
            let suffix = &name[i..];
            if let Some(off) = self.find(suffix, exact) {
                let start = self.buf.len();
                self.buf.extend_from_slice(&name[..i]);
                self.remember_prefix(start, name, i);
                self.buf.extend_from_slice(&(0xc000 | off).to_be_bytes());
                return;
            }
            i += 1 + name[i] as usize;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        self.remember(start, name);
    }

    /// Records every suffix of a name written uncompressed at `start`.
    fn remember(&mut self, start: usize, name: &[u8]) {
        self.remember_prefix(start, name, name.len() - 1);
    }

    /// Records the suffixes that begin within the first `upto` bytes of `name` written at
    /// `start` (the rest was written as a pointer).
    fn remember_prefix(&mut self, start: usize, name: &[u8], upto: usize) {
        let mut i = 0;
        while i < upto && name[i] != 0 {
            let off = start + i;
            // Pointers are 14 bits: names past 16 KiB cannot be targets.
            if off < 0x3fff {
                self.comp.entries.push((off as u16, (name.len() - i) as u8));
            }
            i += 1 + name[i] as usize;
        }
    }

    /// Finds an earlier occurrence of `suffix` in the message (see [`Writer::name`] for
    /// what `exact` means).
    fn find(&self, suffix: &[u8], exact: bool) -> Option<u16> {
        for &(off, len) in &self.comp.entries {
            if len as usize == suffix.len()
                && (!exact || off as usize >= self.question_end)
                && self.equals_at(off as usize, suffix, exact)
            {
                return Some(off);
            }
        }
        None
    }

    /// Compares the (possibly compressed) name at `off` in the buffer with `name`.
    fn equals_at(&self, mut off: usize, name: &[u8], exact: bool) -> bool {
        let mut i = 0;
        loop {
            let b = self.buf[off];
            if b & 0xc0 == 0xc0 {
                off = (((b & 0x3f) as usize) << 8) | self.buf[off + 1] as usize;
                if exact && off < self.question_end {
                    return false;
                }
                continue;
            }
            let l = b as usize;
            if name[i] as usize != l {
                return false;
            }
            if l == 0 {
                return true;
            }
            let here = &self.buf[off + 1..off + 1 + l];
            let want = &name[i + 1..i + 1 + l];
            if (exact && here != want) || (!exact && !here.eq_ignore_ascii_case(want)) {
                return false;
            }
            off += 1 + l;
            i += 1 + l;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn parses_simple_query_and_lowercases() {
        let p = query(b"\x03WwW\x07example\x04test\x00", 1);
        let q = parse_query(&p).unwrap();
        assert_eq!(q.qname(), b"\x03www\x07example\x04test\x00");
        assert_eq!(q.question, &p[12..]);
        assert_eq!(q.qtype, 1);
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
        let mut p = query(b"\x00", 1);
        p[2] |= 0x80;
        assert_eq!(
            parse_query(&p).unwrap_err(),
            Malformed::Drop(DropReason::Response)
        );
    }

    fn rcode_of(p: &[u8]) -> u16 {
        match parse_query(p) {
            Err(Malformed::Reply { rcode, .. }) => rcode,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn rejects_bad_names_and_counts() {
        // Pointer into the header, forward pointer, loop, label type 0x40, too long.
        for name in [&b"\xc0\x00"[..], b"\xc0\x20", b"\xc0\x0c", b"\x41a\x00"] {
            assert_eq!(rcode_of(&query(name, 1)), rcode::FORMERR, "{name:?}");
        }
        let long: Vec<u8> = std::iter::repeat_n(
            b"\x3faaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec(),
            5,
        )
        .flatten()
        .chain([0])
        .collect();
        assert_eq!(rcode_of(&query(&long, 1)), rcode::FORMERR);
        let mut p = query(b"\x00", 1);
        p[6] = 0xff;
        p[7] = 0xff;
        assert_eq!(rcode_of(&p), rcode::FORMERR);
        let mut p = query(b"\x00", 1);
        p[5] = 2;
        assert_eq!(rcode_of(&p), rcode::FORMERR);
        p[5] = 0;
        assert_eq!(rcode_of(&p[..12]), rcode::FORMERR);
    }

    #[test]
    fn pointer_chain_is_bounded() {
        // A 200-hop chain of backward pointers inside the additional section.
        let mut p = query(b"\x01a\x00", 1);
        let base = p.len();
        p.extend_from_slice(b"\x01b\x00");
        for i in 0..200u16 {
            let prev = if i == 0 {
                base
            } else {
                base + 3 + (i as usize - 1) * 2
            };
            p.extend_from_slice(&(0xc000 | prev as u16).to_be_bytes());
        }
        assert!(parse_query(&p).is_ok() || rcode_of(&p) == rcode::FORMERR);
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
        let p = with_opt(query(b"\x00", 1), b"\x00", 0);
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
            rcode_of(&with_opt(query(b"\x00", 1), b"\x00", 1)),
            rcode::BADVERS
        );
        assert_eq!(
            rcode_of(&with_opt(query(b"\x00", 1), b"\x01a\x00", 0)),
            rcode::FORMERR
        );
        let two = with_opt(with_opt(query(b"\x00", 1), b"\x00", 0), b"\x00", 0);
        assert_eq!(rcode_of(&two), rcode::FORMERR);
    }

    #[test]
    fn writer_compresses_owners_but_not_srv_targets() {
        let p = query(b"\x04_srv\x04_tcp\x07example\x04test\x00", rtype::SRV);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = Writer::new(&mut buf, &mut comp, q.id, 0, q.copy_flags, q.question);
        let target = b"\x02m0\x07example\x04test\x00";
        let mut rdata = vec![0, 0, 0, 0, 0x09, 0x4c];
        rdata.extend_from_slice(target);
        w.record(1, q.qname(), rtype::SRV, 1, 30, &rdata);
        w.record(3, target, rtype::A, 1, 30, &[127, 0, 0, 1]);
        w.finish();
        // Owner of the SRV is a pointer to the question.
        let ans = 12 + q.question.len();
        assert_eq!(&buf[ans..ans + 2], &[0xc0, 0x0c]);
        // The SRV target appears verbatim, uncompressed.
        assert!(buf.windows(target.len()).any(|w| w == target));
        // The A record's owner points at the SRV target inside the rdata.
        assert_eq!(
            &buf[buf.len() - 16..buf.len() - 14],
            &(0xc000u16 | (ans + 18) as u16).to_be_bytes()
        );
        let decoded = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(decoded.answers.len(), 1);
        assert_eq!(decoded.additionals.len(), 1);
        assert_eq!(decoded.additionals[0].name.to_ascii(), "m0.example.test.");
    }
}
