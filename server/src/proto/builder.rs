//! Writing DNS messages: the one [`MessageBuilder`] every module builds its messages
//! with — answers, errors, NOTIFY, transfer queries, UPDATE responses.
//!
//! The builder appends records to a caller-owned buffer with RFC 1035 §4.1.4 compression
//! for owner names and for the rdata names RFC 3597 §4 allows; SRV targets are never
//! compressed. It does not trust its input either: a record whose owner or embedded names
//! are not well formed is refused with a [`WriteError`] before anything is written,
//! because the compression search reads back every name it may point at.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::name::wire_name_len;
use super::reader::{Header, Reader};
use super::types::{rdata_names, Opcode, RdataNames, Rtype};
use super::{flags, HEADER_LEN};
use crate::proto::types::Rclass;
use crate::proto::types::Rcode;

/// TXT rdata the builder refuses in unit tests, to test what its callers do with a
/// refusal now that zone data it would refuse cannot be loaded.
#[cfg(test)]
pub(crate) const INJECT_WRITE_ERROR: &[u8] = b"\x0cinject-error";

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

/// Compression table: where each name suffix already written to the message starts.
///
/// Answers are small and hold few distinct names, so a linear table beats a hash map.
/// Zone transfer messages hold hundreds of names: [`Compressor::indexed`] adds a hash
/// index so that a lookup does not scan every name written.
#[derive(Default)]
pub struct Compressor {
    /// (offset in message, length of the uncompressed suffix at that offset), in increasing
    /// offset order: names are only ever appended.
    entries: Vec<(u16, u8)>,
    /// Hash of a suffix folded to lower case -> offset of the first entry with that hash.
    index: Option<HashMap<u64, u16, BuildHasherDefault<KeyHasher>>>,
    /// With the index: where the last owner name can be read, and its length.
    last_owner: Option<(u16, u8)>,
}

/// The index's keys are hashes already ([`suffix_key`]): used as they are.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Compressor {
    /// A table with a hash index, for long messages.
    pub fn indexed() -> Compressor {
        Compressor {
            entries: Vec::new(),
            index: Some(HashMap::default()),
            last_owner: None,
        }
    }

    /// Forgets every name (for reuse of the same buffers across queries).
    pub fn clear(&mut self) {
        self.entries.clear();
        if let Some(i) = &mut self.index {
            i.clear();
        }
        self.last_owner = None;
    }

    /// Forgets the names at or after offset `end` of the message.
    fn forget_from(&mut self, end: usize) {
        self.entries.retain(|&(off, _)| (off as usize) < end);
        if let Some(i) = &mut self.index {
            // Each key maps to its first offset; the bytes before `end` are unchanged.
            i.retain(|_, off| (*off as usize) < end);
        }
        self.last_owner = self.last_owner.filter(|&(off, _)| (off as usize) < end);
    }
}

/// FNV-1a of a wire name folded to lower case, with its length: the index key.
fn suffix_key(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ name.len() as u64;
    for &b in name {
        h ^= u64::from(b.to_ascii_lowercase());
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
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
    #[error("the {rtype} record data is malformed")]
    BadRdata { rtype: Rtype },
    /// Rdata longer than the 16-bit RDLENGTH can say.
    #[error("the record data is longer than 65535 octets")]
    RdataTooLong,
    /// A section count would pass 65535.
    #[error("more than 65535 records in one section")]
    TooManyRecords,
}

/// A message set aside between records (see [`MessageBuilder::suspend`]).
#[derive(Debug, Clone, Copy)]
pub struct Suspended {
    counts: [u16; 4],
    question_end: usize,
}

/// A point in a message to roll back to (see [`MessageBuilder::checkpoint`]).
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
pub struct MessageBuilder<'b> {
    buf: &'b mut Vec<u8>,
    comp: &'b mut Compressor,
    counts: [u16; 4],
    /// End of the question section: names inside rdata never point before it.
    question_end: usize,
}

/// A question entry (RFC 1035 §4.1.2) for [`MessageBuilder::new`]: `name` (uncompressed
/// wire form), type and class.
pub fn question(name: &[u8], qtype: Rtype, qclass: Rclass) -> Vec<u8> {
    [name, &qtype.to_be_bytes(), &qclass.to_be_bytes()].concat()
}

/// A response that is only a header, the echoed question (or UPDATE zone section; empty
/// for none) and, when `edns` gives our UDP payload size, an OPT record carrying the
/// high bits of `rc`: errors answered before a request is read, and UPDATE answers.
/// The caller signs it afterwards when the request was signed.
pub fn bare_response(
    op: Opcode,
    id: u16,
    copy_flags: u16,
    question: &[u8],
    rc: Rcode,
    edns: Option<u16>,
) -> Vec<u8> {
    bare_response_with_ede(op, id, copy_flags, question, rc, edns, None)
}

/// [`bare_response`] whose OPT record carries an Extended DNS Error. Without `edns` the
/// error is left out: the client did not send EDNS and could not read the option.
pub fn bare_response_with_ede(
    op: Opcode,
    id: u16,
    copy_flags: u16,
    question: &[u8],
    rc: Rcode,
    edns: Option<u16>,
    ede: Option<Ede<'_>>,
) -> Vec<u8> {
    let ede_len = ede.map_or(0, |e| e.wire_len());
    let mut buf = Vec::with_capacity(HEADER_LEN + question.len() + 11 + 200 + ede_len);
    let mut comp = Compressor::default();
    let mut w = MessageBuilder::new(&mut buf, &mut comp, id, op, copy_flags, question);
    w.set_rcode(rc);
    if let Some(size) = edns {
        w.opt_with_ede(size, rc, false, ede);
    }
    w.finish();
    buf
}

/// True when `name` is exactly one uncompressed wire name.
fn is_wire_name(name: &[u8]) -> bool {
    wire_name_len(name) == Some(name.len())
}

/// Checks rdata of type `t` for what the writer relies on: the embedded names it
/// compresses or points at must be whole names that end exactly where RFC 1035 says.
fn check_rdata(t: Rtype, rdata: &[u8]) -> Result<(), WriteError> {
    let bad = WriteError::BadRdata { rtype: t };
    #[cfg(test)]
    if t == Rtype::TXT && rdata == INJECT_WRITE_ERROR {
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
        _ if t == Rtype::SRV && (rdata.len() < 7 || !is_wire_name(&rdata[6..])) => Err(bad),
        _ => Ok(()),
    }
}

impl<'b> MessageBuilder<'b> {
    /// Starts a response: header copied from the query with QR set, and the question echoed.
    ///
    /// A question whose name is not well formed (the parser never gives one) is echoed but
    /// never used as a compression target.
    pub fn new(
        buf: &'b mut Vec<u8>,
        comp: &'b mut Compressor,
        id: u16,
        opcode: Opcode,
        copy_flags: u16,
        question: &[u8],
    ) -> MessageBuilder<'b> {
        buf.clear();
        comp.clear();
        let fl = flags::QR | ((u16::from(opcode.to_u8()) & 0xf) << 11) | copy_flags;
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&fl.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        let mut w = MessageBuilder {
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

    /// Starts a request (QR clear) with the header flags `fl` and `question` (empty for
    /// none): NOTIFY, transfer and SOA queries.
    pub fn request(
        buf: &'b mut Vec<u8>,
        comp: &'b mut Compressor,
        id: u16,
        opcode: Opcode,
        fl: u16,
        question: &[u8],
    ) -> MessageBuilder<'b> {
        let mut w = MessageBuilder::new(buf, comp, id, opcode, fl, question);
        w.clear_flags(flags::QR);
        w
    }

    /// Sets the message aside, to go on with [`MessageBuilder::resume`] on the same
    /// buffer and table: a message filled across awaits (zone transfers).
    pub fn suspend(self) -> Suspended {
        Suspended {
            counts: self.counts,
            question_end: self.question_end,
        }
    }

    /// Goes on with a message set aside by [`MessageBuilder::suspend`]; `buf` and `comp`
    /// must be the ones it was built in, unchanged since.
    pub fn resume(
        buf: &'b mut Vec<u8>,
        comp: &'b mut Compressor,
        s: Suspended,
    ) -> MessageBuilder<'b> {
        MessageBuilder {
            buf,
            comp,
            counts: s.counts,
            question_end: s.question_end,
        }
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
    pub fn set_rcode(&mut self, rc: Rcode) {
        let fl = (self.header_flags() & !0xf) | rc.header_bits();
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

    /// The current end of the message, to [`MessageBuilder::rollback`] to when what follows does
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
        if self.comp.index.is_some() {
            self.comp.forget_from(to.len);
        }
    }

    /// Drops every record, keeping header and question: the truncated (TC) form of the
    /// response, or the start of an error response.
    pub fn clear_records(&mut self) {
        self.buf.truncate(self.question_end);
        self.counts = [self.counts[0], 0, 0, 0];
        self.comp.forget_from(self.question_end);
    }

    /// Appends one record. `owner` is an uncompressed wire name. The record is checked
    /// before anything is written: on error the message is unchanged.
    pub fn record(
        &mut self,
        section: Section,
        owner: &[u8],
        t: Rtype,
        class: Rclass,
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
            _ if t == Rtype::SRV => {
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
        class: Rclass,
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
        self.buf.extend_from_slice(&Rtype::TXT.to_be_bytes());
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
    pub fn opt(&mut self, udp_payload: u16, ext_rcode: Rcode, dnssec_ok: bool) {
        self.opt_with_ede(udp_payload, ext_rcode, dnssec_ok, None);
    }

    /// [`MessageBuilder::opt`] carrying an Extended DNS Error option (RFC 8914 §2). The caller
    /// keeps `ede.wire_len()` octets of room for it; text longer than an option can hold
    /// is cut at a character boundary.
    pub fn opt_with_ede(
        &mut self,
        udp_payload: u16,
        ext_rcode: Rcode,
        dnssec_ok: bool,
        ede: Option<Ede<'_>>,
    ) {
        self.buf.push(0);
        self.buf.extend_from_slice(&Rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&udp_payload.to_be_bytes());
        self.buf.push(ext_rcode.extended_bits());
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
        // Indexed (transfer) messages: the records of an RRset follow each other, so an
        // owner is most often the previous one, compared without hashing.
        let indexed = self.comp.index.is_some() && !exact;
        if indexed {
            if let Some((off, len)) = self.comp.last_owner {
                if len as usize == name.len() && self.equals_at(off as usize, name, false) {
                    self.buf.extend_from_slice(&(0xc000 | off).to_be_bytes());
                    return;
                }
            }
        }
        let mut i = 0;
        while i < name.len() && name[i] != 0 {
            let suffix = &name[i..];
            if let Some(off) = self.find(suffix, exact) {
                let start = self.buf.len();
                self.buf.extend_from_slice(&name[..i]);
                self.remember_prefix(start, name, i);
                self.buf.extend_from_slice(&(0xc000 | off).to_be_bytes());
                if indexed {
                    // Where the whole name can be read from.
                    let at = if i == 0 { off as usize } else { start };
                    self.comp.last_owner = (at < 0x3fff).then_some((at as u16, name.len() as u8));
                }
                return;
            }
            i += 1 + name[i] as usize;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(name);
        self.remember(start, name);
        if indexed {
            self.comp.last_owner = (start < 0x3fff).then_some((start as u16, name.len() as u8));
        }
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
                if let Some(index) = &mut self.comp.index {
                    index.entry(suffix_key(&name[i..])).or_insert(off as u16);
                }
            }
            i += 1 + name[i] as usize;
        }
    }

    /// Finds an earlier occurrence of `suffix` in the message (see [`MessageBuilder::name`] for
    /// what `exact` means).
    fn find(&self, suffix: &[u8], exact: bool) -> Option<u16> {
        if let Some(index) = &self.comp.index {
            // The first name with this key; another one further on is not looked for
            // (the name is then written out, which is valid, only longer).
            let off = *index.get(&suffix_key(suffix))?;
            let usable = (!exact || off as usize >= self.question_end)
                && self.equals_at(off as usize, suffix, exact);
            return usable.then_some(off);
        }
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

/// A response with no records: the header and question of `pkt` with `rc`.
pub fn error_reply(pkt: &[u8], rc: Rcode) -> Vec<u8> {
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
    let op = Opcode(((fl >> 11) & 0xf) as u8);
    bare_response(op, id, fl & flags::RD, question, rc, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::query::parse_query;

    fn query(name: &[u8], qtype: Rtype) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn writer_compresses_owners_but_not_srv_targets() {
        let p = query(b"\x04_srv\x04_tcp\x07example\x04test\x00", Rtype::SRV);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = MessageBuilder::new(
            &mut buf,
            &mut comp,
            q.id,
            Opcode(0),
            q.copy_flags,
            q.question,
        );
        let target = b"\x02m0\x07example\x04test\x00";
        let mut rdata = vec![0, 0, 0, 0, 0x09, 0x4c];
        rdata.extend_from_slice(target);
        w.record(
            Section::Answer,
            q.qname(),
            Rtype::SRV,
            Rclass::IN,
            30,
            &rdata,
        )
        .unwrap();
        w.record(
            Section::Additional,
            target,
            Rtype::A,
            Rclass::IN,
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
        let p = query(b"\x01a\x04test\x00", Rtype::MX);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = MessageBuilder::new(
            &mut buf,
            &mut comp,
            q.id,
            Opcode(0),
            q.copy_flags,
            q.question,
        );
        let bad = WriteError::BadRdata { rtype: Rtype::MX };
        for _ in 0..2 {
            let before = w.len();
            assert_eq!(
                w.record(
                    Section::Answer,
                    q.qname(),
                    Rtype::MX,
                    Rclass::IN,
                    30,
                    &[0, 1, 3, 1]
                ),
                Err(bad)
            );
            assert_eq!(w.len(), before, "nothing written for a refused record");
        }
        // The other layouts the writer looks into.
        let cases: [(Rtype, &[u8]); 9] = [
            (Rtype::MX, &[0, 1]),
            (Rtype::MX, b"\x00\x01\x01a\x00\x00"),
            (Rtype::NS, b"\x02ns"),
            (Rtype::CNAME, b"\x01a\x00\x01"),
            (Rtype::PTR, b""),
            (Rtype::SRV, &[0, 0, 0, 0, 0, 53]),
            (Rtype::SRV, b"\x00\x00\x00\x00\x00\x35\x05ab\x00"),
            (Rtype::SOA, b"\x01a\x00\x01b\x00"),
            (Rtype::SOA, b"\x01a\x00\x01b"),
        ];
        for (t, rdata) in cases {
            assert_eq!(
                w.record(Section::Answer, q.qname(), t, Rclass::IN, 30, rdata),
                Err(WriteError::BadRdata { rtype: t }),
                "type {t} rdata {rdata:?}"
            );
        }
        assert_eq!(
            w.record(
                Section::Answer,
                b"\x05ab\x00",
                Rtype::A,
                Rclass::IN,
                30,
                &[1, 2, 3, 4]
            ),
            Err(WriteError::BadOwner)
        );
        assert_eq!(
            w.record(
                Section::Answer,
                q.qname(),
                Rtype(99),
                Rclass::IN,
                30,
                &vec![0; 65536]
            ),
            Err(WriteError::RdataTooLong)
        );
        // A section count cannot pass 65535.
        let mark = w.checkpoint();
        let mut full = Ok(());
        for _ in 0..u16::MAX {
            full = full.and(w.record(
                Section::Additional,
                b"\x00",
                Rtype::A,
                Rclass::IN,
                0,
                &[0; 4],
            ));
        }
        assert_eq!(full, Ok(()));
        assert_eq!(
            w.record(
                Section::Additional,
                b"\x00",
                Rtype::A,
                Rclass::IN,
                0,
                &[0; 4]
            ),
            Err(WriteError::TooManyRecords)
        );
        w.rollback(mark);
        // Good records still go in after refused ones, and the message decodes.
        w.record(
            Section::Answer,
            q.qname(),
            Rtype::MX,
            Rclass::IN,
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
        let p = query(b"\x01a\x04test\x00", Rtype::SRV);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = MessageBuilder::new(&mut buf, &mut comp, q.id, Opcode(0), 0, q.question);
        let e = Ede {
            code: ede::NOT_READY,
            text: "2 of 3",
        };
        w.opt_with_ede(1232, Rcode::NOERROR, false, Some(e));
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

    /// An UPDATE answer carries its Extended DNS Error only when the client sent EDNS.
    #[test]
    fn bare_response_carries_an_ede_only_with_edns() {
        let zone = b"\x01d\x04test\x00\x00\x06\x00\x01";
        let e = Ede {
            code: ede::PROHIBITED,
            text: "zone d.test. is frozen",
        };
        let with =
            bare_response_with_ede(Opcode(5), 7, 0, zone, Rcode::REFUSED, Some(1232), Some(e));
        let m = hickory_proto::op::Message::from_vec(&with).unwrap();
        let opts = m.edns.expect("OPT").options().as_ref().to_vec();
        assert!(
            matches!(
                &opts[..],
                [(_, hickory_proto::rr::rdata::opt::EdnsOption::Unknown(15, d))]
                    if d[..2] == [0, 18] && d[2..] == *b"zone d.test. is frozen"
            ),
            "{opts:?}"
        );
        let without = bare_response_with_ede(Opcode(5), 7, 0, zone, Rcode::REFUSED, None, Some(e));
        assert_eq!(
            without,
            bare_response(Opcode(5), 7, 0, zone, Rcode::REFUSED, None)
        );
        assert_eq!(without.len(), 12 + zone.len());
    }

    #[test]
    fn rollback_forgets_records_and_their_names() {
        let p = query(b"\x01a\x04test\x00", Rtype::NS);
        let q = parse_query(&p).unwrap();
        let mut buf = Vec::new();
        let mut comp = Compressor::default();
        let mut w = MessageBuilder::new(&mut buf, &mut comp, q.id, Opcode(0), 0, q.question);
        let mark = w.checkpoint();
        w.record(
            Section::Answer,
            q.qname(),
            Rtype::NS,
            Rclass::IN,
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
            Rtype::A,
            Rclass::IN,
            30,
            &[1, 2, 3, 4],
        )
        .unwrap();
        w.finish();
        assert_eq!(&buf[12 + q.question.len()..][..3], b"\x01b\x00");
    }

    /// The indexed table (zone transfers) compresses as the linear one does where the
    /// first occurrence of a name is usable, and forgets names on rollback.
    #[test]
    fn indexed_table_compresses_and_rolls_back() {
        let build = |mut comp: Compressor| {
            let mut buf = Vec::new();
            let mut w = MessageBuilder::new(&mut buf, &mut comp, 1, Opcode(0), 0, &[]);
            for i in 0..50u8 {
                let owner = [&[2, b'h', b'0' + i % 10][..], b"\x04zone\x04test\x00"].concat();
                w.record(
                    Section::Answer,
                    &owner,
                    Rtype::A,
                    Rclass::IN,
                    60,
                    &[10, 0, 0, i],
                )
                .unwrap();
                w.record(
                    Section::Answer,
                    &owner,
                    Rtype::NS,
                    Rclass::IN,
                    60,
                    b"\x02ns\x04zone\x04test\x00",
                )
                .unwrap();
            }
            let mark = w.checkpoint();
            w.record(
                Section::Answer,
                b"\x03new\x04test\x00",
                Rtype::A,
                Rclass::IN,
                60,
                &[1; 4],
            )
            .unwrap();
            w.rollback(mark);
            w.record(
                Section::Answer,
                b"\x04else\x04test\x00",
                Rtype::A,
                Rclass::IN,
                60,
                &[1; 4],
            )
            .unwrap();
            w.record(
                Section::Answer,
                b"\x03new\x04test\x00",
                Rtype::A,
                Rclass::IN,
                60,
                &[2; 4],
            )
            .unwrap();
            w.finish();
            buf
        };
        let linear = build(Compressor::default());
        let indexed = build(Compressor::indexed());
        assert_eq!(indexed, linear);
        let m = hickory_proto::op::Message::from_vec(&indexed).unwrap();
        assert_eq!(m.answers.len(), 102);
        assert_eq!(m.answers[101].name.to_ascii(), "new.test.");
    }
}
