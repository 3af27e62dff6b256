//! The TSIG record of a message: finding and reading it (RFC 8945 §5.1), the data its MAC
//! covers (§4.3), computing and checking that MAC, and appending a record.

use super::{Algorithm, Key};
use crate::proto::name::{wire_name_len, Name};
use crate::proto::reader::Reader;
use crate::proto::types::Rcode;
use crate::proto::types::{Rclass, Rtype};
use crate::proto::HEADER_LEN;

/// Why a message's TSIG is malformed or misplaced: the answer is FORMERR without a TSIG
/// (RFC 8945 §5.1, §5.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the message is shorter than a DNS header")]
    Short,
    #[error("a record or question runs past the end of the message or holds a bad name")]
    Truncated,
    #[error("the TSIG record is not the last record of the additional section")]
    NotLast,
    #[error("the message has more than one TSIG record")]
    Several,
    #[error("the TSIG record's class is not ANY")]
    WrongClass,
    #[error("the TSIG record's TTL is not 0")]
    NonZeroTtl,
    #[error("the TSIG record data is malformed")]
    BadRdata,
    #[error("data follows the TSIG record")]
    TrailingData,
    #[error("the MAC is longer than the algorithm's output")]
    MacTooLong,
    #[error("the MAC is shorter than RFC 8945 §5.2.2.1 allows")]
    MacTooShort,
}

/// The fields of a TSIG record in a message (RFC 8945 §4.2).
#[derive(Debug, Clone)]
pub(super) struct TsigRecord<'a> {
    /// Offset of the TSIG record (its owner name) in the message.
    pub(super) start: usize,
    /// The key name, decompressed, as the sender wrote it.
    pub(super) key_name: Name,
    /// The algorithm name, uncompressed wire form as sent.
    pub(super) algorithm: &'a [u8],
    pub(super) time_signed: u64,
    pub(super) fudge: u16,
    pub(super) mac: &'a [u8],
    pub(super) original_id: u16,
    pub(super) error: Rcode,
    pub(super) other: &'a [u8],
}

/// Finds the message's TSIG record, if it has one, and checks where it is and how it is
/// formed (RFC 8945 §5.1: the last record of the additional section, exactly one, class
/// ANY, TTL 0).
pub(super) fn find_tsig(msg: &[u8]) -> Result<Option<TsigRecord<'_>>, Malformed> {
    let (h, mut r) = Reader::after_header(msg).map_err(|_| Malformed::Short)?;
    let [qd, an, ns, ar] = h.counts.map(usize::from);
    for _ in 0..qd {
        r.question().map_err(|_| Malformed::Truncated)?;
    }
    let total = an + ns + ar;
    let mut found: Option<(usize, usize)> = None; // (record index, start offset)
    for i in 0..total {
        let (t, start) = r.skip_record().map_err(|_| Malformed::Truncated)?;
        if t == Rtype::TSIG {
            if found.is_some() {
                return Err(Malformed::Several);
            }
            found = Some((i, start));
        }
    }
    let Some((index, start)) = found else {
        return Ok(None);
    };
    if index + 1 != total || ar == 0 {
        return Err(Malformed::NotLast);
    }
    if r.remaining() != 0 {
        // The MAC covers nothing past the TSIG record, so bytes there would be unsigned.
        return Err(Malformed::TrailingData);
    }
    let rec = Reader::at(msg, start)
        .record()
        .map_err(|_| Malformed::Truncated)?;
    let key_name = Name::from_wire(&rec.owner).map_err(|_| Malformed::Truncated)?;
    if rec.class != Rclass::ANY {
        return Err(Malformed::WrongClass);
    }
    if rec.ttl != 0 {
        return Err(Malformed::NonZeroTtl);
    }
    tsig_rdata(start, key_name, rec.rdata).map_err(|_| Malformed::BadRdata)
}

/// The fields of TSIG rdata (RFC 8945 §4.2), which must fill it exactly.
pub(super) fn tsig_rdata(
    start: usize,
    key_name: Name,
    rd: &[u8],
) -> Result<Option<TsigRecord<'_>>, crate::proto::ReadError> {
    let mut d = Reader::new(rd);
    // RFC 8945 §4.2: the algorithm name is never compressed.
    let alg_len = wire_name_len(rd).ok_or(crate::proto::ReadError::BadRdata)?;
    let algorithm = d.bytes(alg_len)?;
    let time_signed = d.u48()?;
    let fudge = d.u16()?;
    let mac_len = d.u16()?;
    let mac = d.bytes(mac_len.into())?;
    let original_id = d.u16()?;
    let error = Rcode(d.u16()?);
    let other_len = d.u16()?;
    let other = d.bytes(other_len.into())?;
    if d.remaining() != 0 {
        return Err(crate::proto::ReadError::BadRdata);
    }
    Ok(Some(TsigRecord {
        start,
        key_name,
        algorithm,
        time_signed,
        fudge,
        mac,
        original_id,
        error,
        other,
    }))
}

/// The header of a signed message as the MAC sees it: the Original ID in place of the
/// ID, ARCOUNT without the TSIG record (RFC 8945 §4.3.1–4.3.2).
pub(super) fn mac_header(msg: &[u8], original_id: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    h[..2].copy_from_slice(&original_id.to_be_bytes());
    let ar = u16::from_be_bytes([h[10], h[11]]).wrapping_sub(1);
    h[10..12].copy_from_slice(&ar.to_be_bytes());
    h
}

/// The TSIG variables of RFC 8945 §4.3.3, in canonical form.
pub(super) fn tsig_variables(
    key_name: &Name,
    algorithm: &[u8],
    time_signed: u64,
    fudge: u16,
    error: Rcode,
    other: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(key_name.wire_len() + algorithm.len() + 24 + other.len());
    v.extend_from_slice(key_name.to_lowercase().as_wire());
    v.extend_from_slice(&Rclass::ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    let mut alg = algorithm.to_vec();
    alg.make_ascii_lowercase();
    v.extend_from_slice(&alg);
    v.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// The TSIG timers of RFC 8945 §5.3.1, for the later messages of a stream.
pub(super) fn tsig_timers(time_signed: u64, fudge: u16) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..6].copy_from_slice(&time_signed.to_be_bytes()[2..]);
    t[6..].copy_from_slice(&fudge.to_be_bytes());
    t
}

/// Checks the MAC size against RFC 8945 §5.2.2.1 rules 1 and 3.
pub(super) fn check_mac_size(algorithm: Algorithm, mac: &[u8]) -> Result<(), Malformed> {
    if mac.len() > algorithm.mac_len() {
        return Err(Malformed::MacTooLong);
    }
    if mac.len() < algorithm.min_mac_len() {
        return Err(Malformed::MacTooShort);
    }
    Ok(())
}

impl TsigRecord<'_> {
    /// Its TSIG variables (RFC 8945 §4.3.3), which the MAC of a single message covers.
    pub(super) fn variables(&self) -> Vec<u8> {
        tsig_variables(
            &self.key_name,
            self.algorithm,
            self.time_signed,
            self.fudge,
            self.error,
            self.other,
        )
    }

    /// Whether it names `key` and `key`'s algorithm (any case).
    pub(super) fn names_key(&self, key: &Key) -> bool {
        self.key_name.eq_ignore_case(&key.name)
            && key
                .algorithm
                .wire_name()
                .eq_ignore_ascii_case(self.algorithm)
    }
}

/// The prior MAC with its length in front (RFC 8945 §4.3.1, §5.3.1), which a response's
/// MAC covers first; none (two empty parts) for a request.
pub(super) fn prior_parts<'a>(
    prior_len: &'a mut [u8; 2],
    prior_mac: Option<&'a [u8]>,
) -> [&'a [u8]; 2] {
    match prior_mac {
        Some(mac) => {
            *prior_len = (mac.len() as u16).to_be_bytes();
            [&prior_len[..], mac]
        }
        None => [&[], &[]],
    }
}

/// The MAC of a message about to be signed (RFC 8945 §4.3, §5.3.1): over the prior MAC
/// (responses), the messages left unsigned since (later messages of a stream), the message
/// with its ID replaced by `original_id`, and `tail` (the TSIG variables, or the timers of
/// a later stream message).
pub(super) fn sign_mac(
    key: &Key,
    msg: &[u8],
    original_id: u16,
    prior_mac: Option<&[u8]>,
    pending: &[u8],
    tail: &[u8],
) -> Vec<u8> {
    let header = unsigned_header(msg, original_id);
    let mut prior_len = [0u8; 2];
    let [len, prior] = prior_parts(&mut prior_len, prior_mac);
    let parts: [&[u8]; 6] = [len, prior, pending, &header, &msg[HEADER_LEN..], tail];
    key.algorithm.mac(&key.secret, &parts)
}

/// Checks the MAC of a received message whose TSIG record is `t` (RFC 8945 §5.2.2): its
/// size rules first (§5.2.2.1), then the MAC over what [`sign_mac`] covers, the message
/// taken without its TSIG record. `Ok(false)`: the signature does not verify.
pub(super) fn check_mac(
    key: &Key,
    msg: &[u8],
    t: &TsigRecord<'_>,
    prior_mac: Option<&[u8]>,
    pending: &[u8],
    tail: &[u8],
) -> Result<bool, Malformed> {
    check_mac_size(key.algorithm, t.mac)?;
    let header = mac_header(msg, t.original_id);
    let mut prior_len = [0u8; 2];
    let [len, prior] = prior_parts(&mut prior_len, prior_mac);
    let parts: [&[u8]; 6] = [
        len,
        prior,
        pending,
        &header,
        &msg[HEADER_LEN..t.start],
        tail,
    ];
    Ok(key.algorithm.verify(&key.secret, &parts, t.mac))
}

pub(super) fn tsig_rr_len(owner: usize, alg: usize, mac: usize, other: usize) -> usize {
    // owner, type, class, TTL, rdlength; algorithm, time, fudge, MAC size, MAC, original
    // ID, error, other length, other data.
    owner + 10 + alg + 10 + mac + 6 + other
}

/// Why a message could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the message is shorter than a DNS header")]
    Short,
    #[error("the additional section already holds 65535 records")]
    TooManyRecords,
    #[error("the signed message would be longer than 65535 octets")]
    TooLong,
}

/// Appends a TSIG record to `msg` and increments ARCOUNT.
#[allow(clippy::too_many_arguments)]
pub(super) fn append_tsig(
    msg: &mut Vec<u8>,
    key_name: &Name,
    algorithm: &[u8],
    time_signed: u64,
    fudge: u16,
    mac: &[u8],
    original_id: u16,
    error: Rcode,
    other: &[u8],
) -> Result<(), SignError> {
    let ar = u16::from_be_bytes([msg[10], msg[11]])
        .checked_add(1)
        .ok_or(SignError::TooManyRecords)?;
    let rr_len = tsig_rr_len(key_name.wire_len(), algorithm.len(), mac.len(), other.len());
    if msg.len() + rr_len > u16::MAX as usize {
        return Err(SignError::TooLong);
    }
    let rdlen = (rr_len - key_name.wire_len() - 10) as u16;
    msg.extend_from_slice(key_name.as_wire());
    msg.extend_from_slice(&Rtype::TSIG.to_be_bytes());
    msg.extend_from_slice(&Rclass::ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&rdlen.to_be_bytes());
    msg.extend_from_slice(algorithm);
    msg.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    msg.extend_from_slice(&fudge.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
    msg.extend_from_slice(other);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    Ok(())
}

/// The header as the MAC sees a message we are about to sign: its ID replaced by the
/// Original ID (RFC 8945 §4.3.1: the MAC covers the message as it was first built).
pub(super) fn unsigned_header(msg: &[u8], original_id: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    h[..2].copy_from_slice(&original_id.to_be_bytes());
    h
}
