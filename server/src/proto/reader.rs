//! Reading DNS messages (RFC 1035 §4.1): the header, questions, records and names, with
//! the RFC 9267 rules for compressed names.
//!
//! Every module that reads a message reads it through a [`Reader`]: queries, UPDATE,
//! TSIG, NOTIFY, and AXFR/IXFR answers. Names are decompressed by one function,
//! [`decode_name`], so there is one rule for what a valid name is:
//!
//! - a compression pointer goes strictly backwards, below every position this name has
//!   read so far — so it points into an earlier name, never at itself or forwards, and no
//!   walk can loop;
//! - never into the 12-octet header;
//! - at most [`MAX_POINTERS`] pointers per name (RFC 9267 §2; 126 is the most a name of
//!   at most 255 octets can need);
//! - only normal labels of at most 63 octets (the 0x40 and 0x80 label types are refused),
//!   and the whole name at most 255 octets.
//!
//! Every read is total: any byte string gives a value or a [`ReadError`], never a panic,
//! and the work is linear in the input.

use super::name::{Name, WireBuf, MAX_LABEL_LEN, MAX_NAME_LEN};
use super::types::{Opcode, Rcode, Rtype};
use super::{flags, HEADER_LEN};
use crate::proto::types::Rclass;

/// The most compression pointers followed in one name (RFC 9267 §2).
pub const MAX_POINTERS: usize = 126;

/// Why a message (or a part of it) cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the message ends in the middle of a field")]
    Short,
    #[error("a label of a reserved type or longer than 63 octets")]
    BadLabel,
    #[error("a name longer than 255 octets")]
    NameTooLong,
    #[error("a compression pointer that does not point backwards into an earlier name")]
    PointerNotBackwards,
    #[error("a compression pointer into the message header")]
    PointerIntoHeader,
    #[error("more than 126 compression pointers in one name")]
    TooManyPointers,
    #[error("record data that does not have the layout of its type")]
    BadRdata,
}

/// Decodes the possibly compressed name at `start` of `msg`: returns the uncompressed
/// length and the offset just past the name in the message. When `out` is given, the
/// uncompressed name is written there, folded to lower case when `LOWER`.
///
/// This is the one implementation of the RFC 9267 rules (see the module documentation).
#[inline]
pub fn decode_name<const LOWER: bool>(
    msg: &[u8],
    start: usize,
    mut out: Option<&mut [u8; MAX_NAME_LEN]>,
) -> Result<(usize, usize), ReadError> {
    let mut pos = start;
    let mut len = 0usize;
    let mut end_after: Option<usize> = None;
    // Each pointer must go strictly below the lowest position read so far, so the walk
    // always terminates; the pointer cap bounds the work on a chain of pointers.
    let mut lowest = start;
    let mut jumps = 0;
    loop {
        let b = *msg.get(pos).ok_or(ReadError::Short)?;
        match b & 0xc0 {
            0x00 => {
                let l = b as usize;
                if l > MAX_LABEL_LEN {
                    return Err(ReadError::BadLabel);
                }
                if pos + 1 + l > msg.len() {
                    return Err(ReadError::Short);
                }
                if len + 1 + l > MAX_NAME_LEN {
                    return Err(ReadError::NameTooLong);
                }
                if let Some(o) = out.as_deref_mut() {
                    o[len] = b;
                    let dst = &mut o[len + 1..len + 1 + l];
                    dst.copy_from_slice(&msg[pos + 1..pos + 1 + l]);
                    if LOWER {
                        dst.make_ascii_lowercase();
                    }
                }
                len += 1 + l;
                pos += 1 + l;
                if l == 0 {
                    return Ok((len, end_after.unwrap_or(pos)));
                }
            }
            0xc0 => {
                let b2 = *msg.get(pos + 1).ok_or(ReadError::Short)?;
                let target = (((b & 0x3f) as usize) << 8) | b2 as usize;
                if target < HEADER_LEN {
                    return Err(ReadError::PointerIntoHeader);
                }
                if target >= lowest {
                    return Err(ReadError::PointerNotBackwards);
                }
                jumps += 1;
                if jumps > MAX_POINTERS {
                    return Err(ReadError::TooManyPointers);
                }
                if end_after.is_none() {
                    end_after = Some(pos + 2);
                }
                lowest = target;
                pos = target;
            }
            // 0x40 (extended label, deprecated by RFC 6891) and 0x80 are not allowed.
            _ => return Err(ReadError::BadLabel),
        }
    }
}

/// The fixed 12-octet header (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    /// The flags word: QR, opcode, AA, TC, RD, RA, Z, AD, CD and the 4-bit rcode.
    pub flags: u16,
    /// QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT (UPDATE: zone, prerequisite, update, additional).
    pub counts: [u16; 4],
}

impl Header {
    /// The header of `msg`, or `None` when it is shorter than a header.
    #[inline]
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = msg.get(..HEADER_LEN)?.try_into().ok()?;
        let w = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Header {
            id: w(0),
            flags: w(2),
            counts: [w(4), w(6), w(8), w(10)],
        })
    }

    /// QR: the message is a response.
    pub fn is_response(&self) -> bool {
        self.flags & flags::QR != 0
    }

    pub fn opcode(&self) -> Opcode {
        Opcode(((self.flags >> 11) & 0xf) as u8)
    }

    /// The 4-bit header rcode (without an OPT record's extension).
    pub fn rcode(&self) -> Rcode {
        Rcode(self.flags & 0xf)
    }

    pub fn qdcount(&self) -> u16 {
        self.counts[0]
    }
    pub fn ancount(&self) -> u16 {
        self.counts[1]
    }
    pub fn nscount(&self) -> u16 {
        self.counts[2]
    }
    pub fn arcount(&self) -> u16 {
        self.counts[3]
    }
}

/// One question entry (RFC 1035 §4.1.2), its name uncompressed with case kept.
#[derive(Clone, Copy)]
pub struct Question {
    pub name: WireBuf,
    pub qtype: Rtype,
    pub qclass: Rclass,
}

/// One resource record as read (RFC 1035 §4.1.3): the owner uncompressed with case kept,
/// the rdata as it is in the message (names in it may be compressed; see
/// [`Reader::rdata_uncompressed`]).
#[derive(Clone, Copy)]
pub struct RecordRef<'a> {
    /// Offset of the record (its owner name) in the message.
    pub start: usize,
    pub owner: WireBuf,
    pub rtype: Rtype,
    pub class: Rclass,
    pub ttl: u32,
    /// Offset of the rdata in the message.
    pub rdata_start: usize,
    pub rdata: &'a [u8],
}

/// A cursor over one message. Reads advance it; on error it is left where it was.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `msg`.
    pub fn new(msg: &'a [u8]) -> Reader<'a> {
        Reader { msg, pos: 0 }
    }

    /// A reader at `pos` of `msg` (names may point anywhere before it).
    pub fn at(msg: &'a [u8], pos: usize) -> Reader<'a> {
        Reader { msg, pos }
    }

    /// A reader just past the header of `msg`, and the header.
    pub fn after_header(msg: &'a [u8]) -> Result<(Header, Reader<'a>), ReadError> {
        let h = Header::parse(msg).ok_or(ReadError::Short)?;
        Ok((h, Reader::at(msg, HEADER_LEN)))
    }

    /// The whole message.
    pub fn message(&self) -> &'a [u8] {
        self.msg
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    /// Octets left after the cursor.
    pub fn remaining(&self) -> usize {
        self.msg.len().saturating_sub(self.pos)
    }

    /// The next `N` octets.
    #[inline]
    pub fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], ReadError> {
        let b = self
            .msg
            .get(self.pos..self.pos + N)
            .ok_or(ReadError::Short)?;
        self.pos += N;
        Ok(b.try_into().expect("slice of length N"))
    }

    /// The next `n` octets.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let b = self
            .msg
            .get(self.pos..self.pos.saturating_add(n))
            .ok_or(ReadError::Short)?;
        self.pos += n;
        Ok(b)
    }

    pub fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, ReadError> {
        Ok(u16::from_be_bytes(*self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, ReadError> {
        Ok(u32::from_be_bytes(*self.array()?))
    }

    /// A 48-bit unsigned integer (TSIG's Time Signed).
    pub fn u48(&mut self) -> Result<u64, ReadError> {
        let b = self.array::<6>()?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    /// A name, uncompressed, case kept.
    pub fn name_buf(&mut self) -> Result<WireBuf, ReadError> {
        let mut out = WireBuf::empty();
        let (len, end) = decode_name::<false>(self.msg, self.pos, Some(&mut out.buf))?;
        out.len = len;
        self.pos = end;
        Ok(out)
    }

    /// A name, uncompressed, case kept, as a [`Name`].
    pub fn name(&mut self) -> Result<Name, ReadError> {
        let w = self.name_buf()?;
        // decode_name only gives well-formed names.
        Name::from_wire(&w).map_err(|_| ReadError::BadLabel)
    }

    /// A name folded to lower case into `out`; returns its length.
    #[inline]
    pub fn name_lower_into(&mut self, out: &mut [u8; MAX_NAME_LEN]) -> Result<usize, ReadError> {
        let (len, end) = decode_name::<true>(self.msg, self.pos, Some(out))?;
        self.pos = end;
        Ok(len)
    }

    /// Steps over a name, checking it as [`Reader::name`] does.
    #[inline]
    pub fn skip_name(&mut self) -> Result<(), ReadError> {
        let (_, end) = decode_name::<false>(self.msg, self.pos, None)?;
        self.pos = end;
        Ok(())
    }

    /// One question entry.
    pub fn question(&mut self) -> Result<Question, ReadError> {
        let at = self.pos;
        let name = self.name_buf()?;
        let Ok(f) = self.array::<4>() else {
            self.pos = at;
            return Err(ReadError::Short);
        };
        Ok(Question {
            name,
            qtype: Rtype::from_be_bytes([f[0], f[1]]),
            qclass: Rclass::from_be_bytes([f[2], f[3]]),
        })
    }

    /// One resource record; its rdata must lie inside the message.
    pub fn record(&mut self) -> Result<RecordRef<'a>, ReadError> {
        let start = self.pos;
        let owner = self.name_buf()?;
        let r = self.record_fixed();
        let (rtype, class, ttl, rdata_start, rdata) = match r {
            Ok(v) => v,
            Err(e) => {
                self.pos = start;
                return Err(e);
            }
        };
        Ok(RecordRef {
            start,
            owner,
            rtype,
            class,
            ttl,
            rdata_start,
            rdata,
        })
    }

    /// Steps over one record; returns its type and the offset where it starts.
    pub fn skip_record(&mut self) -> Result<(Rtype, usize), ReadError> {
        let start = self.pos;
        self.skip_name()?;
        match self.record_fixed() {
            Ok((t, ..)) => Ok((t, start)),
            Err(e) => {
                self.pos = start;
                Err(e)
            }
        }
    }

    /// Type, class, TTL and rdata after an owner name.
    #[allow(clippy::type_complexity)]
    fn record_fixed(&mut self) -> Result<(Rtype, Rclass, u32, usize, &'a [u8]), ReadError> {
        let f = self.array::<10>()?;
        let rdlen = u16::from_be_bytes([f[8], f[9]]) as usize;
        let rdata_start = self.pos;
        let rdata = self.bytes(rdlen)?;
        Ok((
            Rtype::from_be_bytes([f[0], f[1]]),
            Rclass::from_be_bytes([f[2], f[3]]),
            u32::from_be_bytes([f[4], f[5], f[6], f[7]]),
            rdata_start,
            rdata,
        ))
    }

    /// The rdata of `rec` with the names a sender may have compressed written out
    /// uncompressed (RFC 3597 §4: the RFC 1035 types, and on receipt RP, AFSDB, RT, KX,
    /// SRV, NAPTR and DNAME, which old senders compress). The names must end inside the
    /// rdata, and what follows them must have the length the type fixes. Other types are
    /// copied as they are.
    pub fn rdata_uncompressed(&self, rec: &RecordRef<'_>) -> Result<Vec<u8>, ReadError> {
        let raw = rec.rdata;
        let Some((before, names, after)) = received_names(rec.rtype, raw)? else {
            return Ok(raw.to_vec());
        };
        let end = rec.rdata_start + raw.len();
        let mut out = raw.get(..before).ok_or(ReadError::BadRdata)?.to_vec();
        // Names read from the message up to the end of this rdata, so none runs past it.
        let mut r = Reader::at(&self.msg[..end], rec.rdata_start + before);
        for _ in 0..names {
            let n = r.name_buf().map_err(|_| ReadError::BadRdata)?;
            out.extend_from_slice(&n);
        }
        if end - r.pos != after {
            return Err(ReadError::BadRdata);
        }
        out.extend_from_slice(&self.msg[r.pos..end]);
        Ok(out)
    }
}

/// Where the names a sender may have compressed sit in received rdata of type `t`:
/// (octets before the first name, number of names, octets after them). `None` for types
/// whose rdata is copied as it is.
fn received_names(t: Rtype, rdata: &[u8]) -> Result<Option<(usize, usize, usize)>, ReadError> {
    Ok(Some(match t {
        Rtype::NS
        | Rtype::CNAME
        | Rtype::PTR
        | Rtype::DNAME
        | Rtype::MD
        | Rtype::MF
        | Rtype::MB
        | Rtype::MG
        | Rtype::MR => (0, 1, 0),
        Rtype::MX | Rtype::AFSDB | Rtype::RT | Rtype::KX => (2, 1, 0),
        Rtype::SOA => (0, 2, 20),
        Rtype::MINFO | Rtype::RP => (0, 2, 0),
        Rtype::SRV => (6, 1, 0),
        Rtype::NAPTR => {
            // order, preference, then flags, services and regexp as character-strings.
            let mut p = 4;
            for _ in 0..3 {
                p += 1 + *rdata.get(p).ok_or(ReadError::BadRdata)? as usize;
            }
            (p, 1, 0)
        }
        _ => return Ok(None),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header with QDCOUNT 1, then `rest`.
    fn msg(rest: &[u8]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(rest);
        m
    }

    fn name_at(m: &[u8], pos: usize) -> Result<Vec<u8>, ReadError> {
        Reader::at(m, pos).name_buf().map(|w| w.to_vec())
    }

    #[test]
    fn reads_compressed_names_backwards() {
        // "a.test." at 12, then "b" + pointer to "test." at 14.
        let m = msg(b"\x01a\x04test\x00\x01b\xc0\x0e");
        assert_eq!(name_at(&m, 12).unwrap(), b"\x01a\x04test\x00");
        let mut r = Reader::at(&m, 20);
        assert_eq!(&*r.name_buf().unwrap(), b"\x01b\x04test\x00");
        assert_eq!(r.pos(), m.len(), "the cursor is after the pointer");
    }

    /// RFC 9267 §2: a pointer must point backwards, into an earlier name.
    #[test]
    fn forward_pointer_is_refused() {
        let m = msg(b"\xc0\x0e\x01a\x00");
        assert_eq!(name_at(&m, 12), Err(ReadError::PointerNotBackwards));
    }

    /// RFC 9267 §2: never into the header.
    #[test]
    fn pointer_into_header_is_refused() {
        for target in [0u8, 4, 11] {
            let m = msg(&[0xc0, target]);
            assert_eq!(
                name_at(&m, 12),
                Err(ReadError::PointerIntoHeader),
                "{target}"
            );
        }
    }

    /// A pointer at itself, and two pointers at each other: refused, not followed forever.
    #[test]
    fn pointer_loop_is_refused() {
        let m = msg(b"\xc0\x0c");
        assert_eq!(name_at(&m, 12), Err(ReadError::PointerNotBackwards));
        let m = msg(b"\x01a\xc0\x10\xc0\x0c");
        // At 16: pointer to 12 ("a" then pointer to 16, which is not below 12).
        assert_eq!(name_at(&m, 16), Err(ReadError::PointerNotBackwards));
    }

    /// A chain of `hops` pointers, each at the one before, ending at the root name at 12.
    fn chain(hops: usize) -> (Vec<u8>, usize) {
        let mut m = msg(b"\x00");
        let mut prev = 12;
        for _ in 0..hops {
            let here = m.len();
            m.extend_from_slice(&(0xc000 | prev as u16).to_be_bytes());
            prev = here;
        }
        (m, prev)
    }

    /// RFC 9267 §2: the number of pointers followed is bounded.
    #[test]
    fn too_many_pointers_are_refused() {
        let (m, last) = chain(MAX_POINTERS);
        assert_eq!(name_at(&m, last).unwrap(), b"\x00");
        let (m, last) = chain(MAX_POINTERS + 1);
        assert_eq!(name_at(&m, last), Err(ReadError::TooManyPointers));
    }

    #[test]
    fn bad_labels_and_lengths_are_refused() {
        assert_eq!(name_at(&msg(b"\x41a\x00"), 12), Err(ReadError::BadLabel));
        assert_eq!(name_at(&msg(b"\x80"), 12), Err(ReadError::BadLabel));
        assert_eq!(name_at(&msg(b"\x03ab"), 12), Err(ReadError::Short));
        assert_eq!(name_at(&msg(b"\xc0"), 12), Err(ReadError::Short));
        assert_eq!(name_at(&msg(b""), 12), Err(ReadError::Short));
        let label = [&[63u8][..], &[b'a'; 63]].concat();
        let long: Vec<u8> = label.repeat(4).into_iter().chain([0]).collect();
        assert_eq!(name_at(&msg(&long), 12), Err(ReadError::NameTooLong));
    }

    #[test]
    fn lower_case_and_records() {
        let mut m = msg(b"\x01A\x04TeSt\x00\x00\x01\x00\x01");
        m.extend_from_slice(b"\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x04\x00\x0a\xc0\x0e");
        let (h, mut r) = Reader::after_header(&m).unwrap();
        assert_eq!(
            (h.qdcount(), h.opcode(), h.is_response()),
            (1, Opcode::QUERY, false)
        );
        let mut out = [0u8; MAX_NAME_LEN];
        let mut q = r.clone();
        let n = q.name_lower_into(&mut out).unwrap();
        assert_eq!(&out[..n], b"\x01a\x04test\x00");
        let question = r.question().unwrap();
        assert_eq!(
            (&*question.name, question.qtype),
            (&b"\x01A\x04TeSt\x00"[..], Rtype::A)
        );
        let rec = r.record().unwrap();
        assert_eq!((rec.rtype, rec.ttl, rec.rdata.len()), (Rtype::MX, 60, 4));
        assert_eq!(r.rdata_uncompressed(&rec).unwrap(), b"\x00\x0a\x04TeSt\x00");
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.record().err(), Some(ReadError::Short));
    }

    /// Names in rdata must end inside it; a fixed tail must have its length.
    #[test]
    fn rdata_names_stay_inside_the_rdata() {
        // NS rdata of length 2 holding "\x01a" whose name continues past the rdata.
        let mut m = msg(b"\x00\x00\x01\x00\x01");
        m.extend_from_slice(b"\x00\x00\x02\x00\x01\x00\x00\x00\x00\x00\x02\x01a\x00");
        let mut r = Reader::at(&m, 17);
        let rec = r.record().unwrap();
        assert_eq!(r.rdata_uncompressed(&rec), Err(ReadError::BadRdata));
        // SOA without the 20 octets of timers.
        let mut m = msg(b"\x00\x00\x01\x00\x01");
        m.extend_from_slice(b"\x00\x00\x06\x00\x01\x00\x00\x00\x00\x00\x02\x00\x00");
        let mut r = Reader::at(&m, 17);
        let rec = r.record().unwrap();
        assert_eq!(r.rdata_uncompressed(&rec), Err(ReadError::BadRdata));
    }
}
