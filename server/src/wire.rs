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
//! It does not trust its input either: a record whose owner or embedded names are not
//! well formed is refused with a [`WriteError`] before anything is written, because the
//! compression search reads back every name it may point at.
//!
//! Limitations: no TSIG/SIG(0) (later issues), EDNS options are skipped, not interpreted.

use crate::name::{wire_name_len, MAX_LABEL_LEN, MAX_NAME_LEN};
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

/// Extended DNS Error codes (RFC 8914 §4) musterd sends.
pub mod ede {
    /// The EDNS option code of an Extended DNS Error (RFC 8914 §2).
    pub const OPTION: u16 = 15;
    /// 14 "Not Ready": the server cannot answer yet (a completeness gate is closed).
    pub const NOT_READY: u16 = 14;
    /// 18 "Prohibited": refused by policy (an identity query that is not configured).
    pub const PROHIBITED: u16 = 18;
    /// 20 "Not Authoritative": the name is outside every served zone.
    pub const NOT_AUTHORITATIVE: u16 = 20;
    /// 21 "Not Supported": a query class the server does not serve.
    pub const NOT_SUPPORTED: u16 = 21;
}

/// An Extended DNS Error (RFC 8914) for a response's OPT record: an INFO-CODE and the
/// EXTRA-TEXT (UTF-8, for people; may be empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ede<'a> {
    pub code: u16,
    pub text: &'a str,
}

impl Ede<'_> {
    /// Octets the option adds to an OPT record: code, length, INFO-CODE, text.
    pub fn wire_len(&self) -> usize {
        6 + self.text.len()
    }
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
    /// (offset in message, length of the uncompressed suffix at that offset), in increasing
    /// offset order: names are only ever appended.
    entries: Vec<(u16, u8)>,
}

impl Compressor {
    /// Forgets every name (for reuse of the same buffers across queries).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// A section of a message that holds records (RFC 1035 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 1,
    Authority = 2,
    Additional = 3,
}

/// Why the writer refused a record. Zone data is validated when it is loaded; this is the
/// writer's own guard, so that data it cannot encode becomes a SERVFAIL (or an answer that
/// is not precompiled) instead of a panic or a corrupt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The owner is not an uncompressed wire name.
    #[error("the owner name is not a valid wire name")]
    BadOwner,
    /// The rdata does not have the layout its type requires (a name that is cut short or
    /// runs past the end, a wrong fixed-size part).
    #[error("the {} record data is malformed", crate::rr::type_name(*rtype))]
    BadRdata { rtype: u16 },
    /// Rdata longer than the 16-bit RDLENGTH can say.
    #[error("the record data is longer than 65535 octets")]
    RdataTooLong,
    /// A section count would pass 65535.
    #[error("more than 65535 records in one section")]
    TooManyRecords,
}

/// A point in a message to roll back to (see [`Writer::checkpoint`]).
#[derive(Debug, Clone, Copy)]
pub struct Checkpoint {
    len: usize,
    counts: [u16; 4],
    names: usize,
}

/// Builds a response message in a caller-owned buffer.
///
/// Every name the writer may later point at has been checked to be a well-formed
/// uncompressed name first, so the compression search cannot read past what it wrote.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    comp: &'b mut Compressor,
    counts: [u16; 4],
    /// End of the question section: names inside rdata never point before it.
    question_end: usize,
}

/// True when `name` is exactly one uncompressed wire name.
fn is_wire_name(name: &[u8]) -> bool {
    wire_name_len(name) == Some(name.len())
}

/// Checks rdata of type `t` for what the writer relies on: the embedded names it
/// compresses or points at must be whole names that end exactly where RFC 1035 says.
fn check_rdata(t: u16, rdata: &[u8]) -> Result<(), WriteError> {
    let bad = WriteError::BadRdata { rtype: t };
    #[cfg(test)]
    if t == rtype::TXT && rdata == crate::INJECT_WRITE_ERROR {
        return Err(bad);
    }
    match rdata_names(t) {
        RdataNames::Whole if !is_wire_name(rdata) => Err(bad),
        RdataNames::AfterU16 if rdata.len() < 3 || !is_wire_name(&rdata[2..]) => Err(bad),
        RdataNames::Soa => {
            let l1 = wire_name_len(rdata).ok_or(bad)?;
            let l2 = wire_name_len(&rdata[l1..]).ok_or(bad)?;
            // Serial, refresh, retry, expire and minimum follow the names.
            if rdata.len() - l1 - l2 != 20 {
                return Err(bad);
            }
            Ok(())
        }
        _ if t == rtype::SRV && (rdata.len() < 7 || !is_wire_name(&rdata[6..])) => Err(bad),
        _ => Ok(()),
    }
}

impl<'b> Writer<'b> {
    /// Starts a response: header copied from the query with QR set, and the question echoed.
    ///
    /// A question whose name is not well formed (the parser never gives one) is echoed but
    /// never used as a compression target.
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
            let name = &question[..question.len().saturating_sub(4)];
            if question.len() > 4 && is_wire_name(name) {
                w.remember(HEADER_LEN, name);
            }
        }
        w
    }

    /// Sets header flag bits.
    pub fn set_flags(&mut self, bits: u16) {
        let fl = self.header_flags() | bits;
        self.buf[2..4].copy_from_slice(&fl.to_be_bytes());
    }

    /// Clears header flag bits.
    pub fn clear_flags(&mut self, bits: u16) {
        let fl = self.header_flags() & !bits;
        self.buf[2..4].copy_from_slice(&fl.to_be_bytes());
    }

    /// The header flags word written so far (rcode included).
    pub fn header_flags(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// Sets the 4-bit header rcode (the low bits of an extended rcode).
    pub fn set_rcode(&mut self, rc: u16) {
        let fl = (self.header_flags() & !0xf) | (rc & 0xf);
        self.buf[2..4].copy_from_slice(&fl.to_be_bytes());
    }

    /// Current length of the message.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing but the header has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEADER_LEN
    }

    /// Records written so far in `section`.
    pub fn count(&self, section: Section) -> u16 {
        self.counts[section as usize]
    }

    /// The current end of the message, to [`Writer::rollback`] to when what follows does
    /// not fit.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            len: self.buf.len(),
            counts: self.counts,
            names: self.comp.entries.len(),
        }
    }

    /// Drops every record written after `to`, and the compression targets inside them.
    pub fn rollback(&mut self, to: Checkpoint) {
        self.buf.truncate(to.len);
        self.counts = to.counts;
        self.comp.entries.truncate(to.names);
    }

    /// Drops every record, keeping header and question: the truncated (TC) form of the
    /// response, or the start of an error response.
    pub fn clear_records(&mut self) {
        self.buf.truncate(self.question_end);
        self.counts = [self.counts[0], 0, 0, 0];
        let end = self.question_end;
        self.comp.entries.retain(|&(off, _)| (off as usize) < end);
    }

    /// Appends one record. `owner` is an uncompressed wire name. The record is checked
    /// before anything is written: on error the message is unchanged.
    pub fn record(
        &mut self,
        section: Section,
        owner: &[u8],
        t: u16,
        class: u16,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), WriteError> {
        if !is_wire_name(owner) {
            return Err(WriteError::BadOwner);
        }
        if rdata.len() > u16::MAX as usize {
            return Err(WriteError::RdataTooLong);
        }
        check_rdata(t, rdata)?;
        let count = self.counts[section as usize]
            .checked_add(1)
            .ok_or(WriteError::TooManyRecords)?;
        self.name(owner, false);
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_pos = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        // The layouts below were checked by `check_rdata`.
        match rdata_names(t) {
            RdataNames::Whole => self.name(rdata, true),
            RdataNames::AfterU16 => {
                self.buf.extend_from_slice(&rdata[..2]);
                self.name(&rdata[2..], true);
            }
            RdataNames::Soa => {
                let l1 = wire_name_len(rdata).unwrap_or(0);
                let l2 = wire_name_len(&rdata[l1..]).unwrap_or(0);
                self.name(&rdata[..l1], true);
                self.name(&rdata[l1..l1 + l2], true);
                self.buf.extend_from_slice(&rdata[l1 + l2..]);
            }
            _ if t == rtype::SRV => {
                // RFC 2782: the target is never compressed, but later owners (the glue for
                // this target) may point at it.
                let start = self.buf.len() + 6;
                self.buf.extend_from_slice(rdata);
                self.remember(start, &rdata[6..]);
            }
            _ => self.buf.extend_from_slice(rdata),
        }
        // Compression only shortens names, so this fits the 16 bits checked above.
        let rdlen = (self.buf.len() - len_pos - 2) as u16;
        self.buf[len_pos..len_pos + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.counts[section as usize] = count;
        Ok(())
    }

    /// Appends a TXT record whose rdata is `text` cut into character-strings of at most
    /// 255 octets (RFC 1035 §3.3.14), without building the rdata elsewhere first.
    pub fn txt_record(
        &mut self,
        section: Section,
        owner: &[u8],
        class: u16,
        ttl: u32,
        text: &[u8],
    ) -> Result<(), WriteError> {
        if !is_wire_name(owner) {
            return Err(WriteError::BadOwner);
        }
        if text.len() + text.len().div_ceil(255) > u16::MAX as usize {
            return Err(WriteError::RdataTooLong);
        }
        let count = self.counts[section as usize]
            .checked_add(1)
            .ok_or(WriteError::TooManyRecords)?;
        self.name(owner, false);
        self.buf.extend_from_slice(&rtype::TXT.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_pos = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        for chunk in text.chunks(255) {
            self.buf.push(chunk.len() as u8);
            self.buf.extend_from_slice(chunk);
        }
        let rdlen = (self.buf.len() - len_pos - 2) as u16;
        self.buf[len_pos..len_pos + 2].copy_from_slice(&rdlen.to_be_bytes());
        self.counts[section as usize] = count;
        Ok(())
    }

    /// Appends an OPT record (RFC 6891 §6.1.2) with our payload size, the high bits of the
    /// extended rcode, version 0 and the DO bit echoed. No options are echoed.
    pub fn opt(&mut self, udp_payload: u16, ext_rcode: u16, dnssec_ok: bool) {
        self.opt_with_ede(udp_payload, ext_rcode, dnssec_ok, None);
    }

    /// [`Writer::opt`] carrying an Extended DNS Error option (RFC 8914 §2). The caller
    /// keeps `ede.wire_len()` octets of room for it; text longer than an option can hold
    /// is cut at a character boundary.
    pub fn opt_with_ede(
        &mut self,
        udp_payload: u16,
        ext_rcode: u16,
        dnssec_ok: bool,
        ede: Option<Ede<'_>>,
    ) {
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_payload.to_be_bytes());
        self.buf.push((ext_rcode >> 4) as u8);
        self.buf.push(0);
        self.buf.push(if dnssec_ok { 0x80 } else { 0 });
        self.buf.push(0);
        match ede {
            None => self.buf.extend_from_slice(&[0, 0]),
            Some(e) => {
                let mut text = e.text;
                while text.len() > u16::MAX as usize - 6 {
                    let mut cut = text.len() - 1;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text = &text[..cut];
                }
                let opt_len = (text.len() + 6) as u16;
                self.buf.extend_from_slice(&opt_len.to_be_bytes());
                self.buf.extend_from_slice(&ede::OPTION.to_be_bytes());
                self.buf
                    .extend_from_slice(&((text.len() + 2) as u16).to_be_bytes());
                self.buf.extend_from_slice(&e.code.to_be_bytes());
                self.buf.extend_from_slice(text.as_bytes());
            }
        }
        // One OPT per message: the count cannot overflow in practice, and saturating keeps
        // a count that is wrong rather than a panic if it ever did.
        self.counts[Section::Additional as usize] =
            self.counts[Section::Additional as usize].saturating_add(1);
    }

    /// Writes the section counts into the header; call last.
    pub fn finish(self) {
        for (i, c) in self.counts.iter().enumerate() {
            self.buf[4 + i * 2..6 + i * 2].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// Writes `name` (uncompressed wire, checked by the caller) compressed against names
    /// already in the message.
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

    /// Compares the (possibly compressed) name at `off` in the buffer with `name`. Both
    /// are well formed: `off` is a remembered target and `name` was checked.
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

    /// A query with two additional records: one owned by "b.", whose rdata is a chain of
    /// `hops - 1` compression pointers, each pointing at the one before (the first at
    /// "b."), and one owned by a last pointer at the end of that chain. Reading the second
    /// owner follows `hops` pointers.
    fn pointer_chain_query(hops: u16) -> Vec<u8> {
        let mut p = query(b"\x01a\x00", 1);
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
        assert_eq!(rcode_of(&pointer_chain_query(200)), rcode::FORMERR);
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
        w.record(Section::Answer, q.qname(), rtype::SRV, 1, 30, &rdata)
            .unwrap();
        w.record(
            Section::Additional,
            target,
            rtype::A,
            1,
            30,
            &[127, 0, 0, 1],
        )
        .unwrap();
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

    /// Review issue 8: `a MX \# 4 00010301` twice (a name cut short inside MX rdata)
    /// panicked the writer on the second record, which compared against the first.
    #[test]
    fn writer_refuses_names_cut_short_in_rdata() {
        let p = query(b"\x01a\x04test\x00", rtype::MX);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = Writer::new(&mut buf, &mut comp, q.id, 0, q.copy_flags, q.question);
        let bad = WriteError::BadRdata { rtype: rtype::MX };
        for _ in 0..2 {
            let before = w.len();
            assert_eq!(
                w.record(Section::Answer, q.qname(), rtype::MX, 1, 30, &[0, 1, 3, 1]),
                Err(bad)
            );
            assert_eq!(w.len(), before, "nothing written for a refused record");
        }
        // The other layouts the writer looks into.
        let cases: [(u16, &[u8]); 9] = [
            (rtype::MX, &[0, 1]),
            (rtype::MX, b"\x00\x01\x01a\x00\x00"),
            (rtype::NS, b"\x02ns"),
            (rtype::CNAME, b"\x01a\x00\x01"),
            (rtype::PTR, b""),
            (rtype::SRV, &[0, 0, 0, 0, 0, 53]),
            (rtype::SRV, b"\x00\x00\x00\x00\x00\x35\x05ab\x00"),
            (rtype::SOA, b"\x01a\x00\x01b\x00"),
            (rtype::SOA, b"\x01a\x00\x01b"),
        ];
        for (t, rdata) in cases {
            assert_eq!(
                w.record(Section::Answer, q.qname(), t, 1, 30, rdata),
                Err(WriteError::BadRdata { rtype: t }),
                "type {t} rdata {rdata:?}"
            );
        }
        assert_eq!(
            w.record(
                Section::Answer,
                b"\x05ab\x00",
                rtype::A,
                1,
                30,
                &[1, 2, 3, 4]
            ),
            Err(WriteError::BadOwner)
        );
        assert_eq!(
            w.record(Section::Answer, q.qname(), 99, 1, 30, &vec![0; 65536]),
            Err(WriteError::RdataTooLong)
        );
        // A section count cannot pass 65535.
        let mark = w.checkpoint();
        let mut full = Ok(());
        for _ in 0..u16::MAX {
            full = full.and(w.record(Section::Additional, b"\x00", rtype::A, 1, 0, &[0; 4]));
        }
        assert_eq!(full, Ok(()));
        assert_eq!(
            w.record(Section::Additional, b"\x00", rtype::A, 1, 0, &[0; 4]),
            Err(WriteError::TooManyRecords)
        );
        w.rollback(mark);
        // Good records still go in after refused ones, and the message decodes.
        w.record(
            Section::Answer,
            q.qname(),
            rtype::MX,
            1,
            30,
            b"\x00\x01\x01a\x04test\x00",
        )
        .unwrap();
        w.finish();
        let decoded = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(decoded.answers.len(), 1);
    }

    /// RFC 8914 §2: OPTION-CODE 15, OPTION-LENGTH, INFO-CODE, EXTRA-TEXT without a NUL.
    #[test]
    fn opt_carries_an_extended_dns_error() {
        let p = query(b"\x01a\x04test\x00", rtype::SRV);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = Writer::new(&mut buf, &mut comp, q.id, 0, 0, q.question);
        let e = Ede {
            code: ede::NOT_READY,
            text: "2 of 3",
        };
        w.opt_with_ede(1232, 0, false, Some(e));
        w.finish();
        let opt = &buf[12 + q.question.len()..];
        assert_eq!(opt.len(), 11 + e.wire_len());
        assert_eq!(&opt[9..11], &12u16.to_be_bytes());
        assert_eq!(&opt[11..], b"\x00\x0f\x00\x08\x00\x0e2 of 3");
        let m = hickory_proto::op::Message::from_vec(&buf).unwrap();
        let edns = m.edns.expect("OPT");
        let opts = edns.options().as_ref();
        assert!(
            matches!(
                opts,
                [(_, hickory_proto::rr::rdata::opt::EdnsOption::Unknown(15, d))] if d[..2] == [0, 14]
            ),
            "{opts:?}"
        );
    }

    #[test]
    fn rollback_forgets_records_and_their_names() {
        let p = query(b"\x01a\x04test\x00", rtype::NS);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = Writer::new(&mut buf, &mut comp, q.id, 0, 0, q.question);
        let mark = w.checkpoint();
        w.record(
            Section::Answer,
            q.qname(),
            rtype::NS,
            1,
            30,
            b"\x02ns\x01b\x00",
        )
        .unwrap();
        assert_eq!(w.count(Section::Answer), 1);
        w.rollback(mark);
        assert_eq!(
            (w.len(), w.count(Section::Answer)),
            (12 + q.question.len(), 0)
        );
        // "b." was forgotten with the record: written in full again, not as a pointer.
        w.record(
            Section::Additional,
            b"\x01b\x00",
            rtype::A,
            1,
            30,
            &[1, 2, 3, 4],
        )
        .unwrap();
        w.finish();
        assert_eq!(&buf[12 + q.question.len()..][..3], b"\x01b\x00");
    }
}
