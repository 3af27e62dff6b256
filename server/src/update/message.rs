//! Reading an UPDATE message (RFC 2136 §2) into a [`Request`], the response's echo of
//! it, and comparing record data as RFC 2136 §1.1.1 says (names in rdata without regard
//! to case).

use crate::proto::name::{wire_name_len, Name};
use crate::proto::reader::{Header, ReadError, Reader};
use crate::proto::rr::Rtype;
use crate::proto::types::Opcode;
use crate::proto::types::Rclass;
use crate::proto::types::Rcode;
use crate::proto::{flags, HEADER_LEN};

/// One record of the prerequisite or update section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRecord {
    pub owner: Name,
    pub rtype: Rtype,
    pub class: Rclass,
    pub ttl: u32,
    /// Uncompressed.
    pub rdata: Vec<u8>,
}

/// A parsed UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    /// The zone section's name (ZNAME) and class (ZCLASS).
    pub zone: Name,
    pub zclass: Rclass,
    pub prerequisites: Vec<UpdateRecord>,
    pub updates: Vec<UpdateRecord>,
    /// The request had an OPT record: the response carries one too.
    pub edns: bool,
}

/// A message that is not a well-formed UPDATE: answer FORMERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("the zone section must hold exactly one record, not {0}")]
    ZoneCount(u16),
    #[error("the zone section's type must be SOA, not {0}")]
    ZoneType(Rtype),
    #[error("a name is malformed or runs past the end of the message")]
    BadName,
    #[error("a record runs past the end of the message")]
    Truncated,
    #[error("record data of a type with names cannot be decompressed")]
    BadRdata,
}

/// The response header and zone section for a request, as far as it could be read:
/// ID, RD copied, and the zone section bytes when they were well formed.
pub fn echo_of(pkt: &[u8]) -> (u16, u16, &[u8]) {
    let Some(h) = Header::parse(pkt) else {
        return (0, 0, &[]);
    };
    let fl = h.flags & flags::RD;
    if h.counts[0] != 1 {
        return (h.id, fl, &[]);
    }
    // The zone name right after the header cannot be compressed (a pointer would point
    // into the header), so the section is echoed as it is.
    let mut r = Reader::at(pkt, HEADER_LEN);
    match r.question() {
        Ok(_) => (h.id, fl, &pkt[HEADER_LEN..r.pos()]),
        Err(_) => (h.id, fl, &[]),
    }
}

/// Builds a response with only a header, the echoed zone (or question) section and an
/// OPT when asked for: UPDATE answers, and errors answered before a request is read.
/// The caller signs it afterwards when the request was signed.
pub fn response(
    op: Opcode,
    id: u16,
    copy_flags: u16,
    zone_section: &[u8],
    rc: Rcode,
    edns: Option<u16>,
) -> Vec<u8> {
    crate::proto::builder::bare_response(op, id, copy_flags, zone_section, rc, edns)
}

/// Where the compressible names of a type's rdata sit: (octets before the first name,
/// number of names), for comparing rdata (RFC 2136 §1.1.1). RFC 3597 §4 lets senders
/// compress the names of the RFC 1035 types; the others listed are compared the same way.
fn rdata_name_layout(t: Rtype) -> Option<(usize, usize)> {
    match t {
        Rtype::NS
        | Rtype::CNAME
        | Rtype::PTR
        | Rtype::MD
        | Rtype::MF
        | Rtype::MB
        | Rtype::MG
        | Rtype::MR => Some((0, 1)),
        Rtype::MX | Rtype::AFSDB | Rtype::RT | Rtype::KX => Some((2, 1)),
        Rtype::SRV => Some((6, 1)),
        Rtype::SOA | Rtype::MINFO | Rtype::RP => Some((0, 2)),
        _ => None,
    }
}

fn bad_name(_: ReadError) -> FormatError {
    FormatError::BadName
}

/// Parses an UPDATE message (RFC 2136 §2). TSIG and OPT records in the additional
/// section are skipped (TSIG is checked by [`crate::proto::tsig`] before this), other
/// additional records are ignored as §2.5 allows.
pub fn parse(pkt: &[u8]) -> Result<Request, FormatError> {
    let (h, mut r) = Reader::after_header(pkt).map_err(|_| FormatError::Short)?;
    let [zo, pr, up, ad] = h.counts;
    if zo != 1 {
        return Err(FormatError::ZoneCount(zo));
    }
    let zone = r.name().map_err(bad_name)?;
    let ztype = Rtype(r.u16().map_err(|_| FormatError::Truncated)?);
    let zclass = Rclass(r.u16().map_err(|_| FormatError::Truncated)?);
    if ztype != Rtype::SOA {
        return Err(FormatError::ZoneType(ztype));
    }
    let mut sections: [Vec<UpdateRecord>; 2] = [Vec::new(), Vec::new()];
    let mut edns = false;
    for (section, n) in [(0usize, pr), (1, up), (2, ad)] {
        for _ in 0..n {
            let at = r.pos();
            let rec = r
                .record()
                .map_err(|_| match Reader::at(pkt, at).skip_name() {
                    Ok(()) => FormatError::Truncated,
                    Err(_) => FormatError::BadName,
                })?;
            if section == 2 {
                edns |= rec.rtype == Rtype::OPT;
                continue;
            }
            // Class ANY/NONE deletes and prerequisites carry no data.
            let rdata = if rec.rdata.is_empty() {
                Vec::new()
            } else {
                r.rdata_uncompressed(&rec)
                    .map_err(|_| FormatError::BadRdata)?
            };
            sections[section].push(UpdateRecord {
                owner: Name::from_wire(&rec.owner).map_err(|_| FormatError::BadName)?,
                rtype: rec.rtype,
                class: rec.class,
                ttl: rec.ttl,
                rdata,
            });
        }
    }
    let [prerequisites, updates] = sections;
    Ok(Request {
        id: h.id,
        zone,
        zclass,
        prerequisites,
        updates,
        edns,
    })
}

// ---------------------------------------------------------------------------------------
// Comparing record data

/// (start, end) of the part of `rdata` that holds domain names, compared without regard
/// to case; everything else is compared octet by octet.
pub(super) fn name_span(t: Rtype, rdata: &[u8]) -> (usize, usize) {
    let Some((fixed, names)) = rdata_name_layout(t) else {
        return (0, 0);
    };
    let mut end = fixed.min(rdata.len());
    for _ in 0..names {
        match rdata.get(end..).and_then(wire_name_len) {
            Some(l) => end += l,
            None => return (0, 0),
        }
    }
    (fixed.min(end), end)
}

/// RFC 2136 §1.1.1 record data equality: names case-insensitive, the rest exact.
pub fn rdata_eq(t: Rtype, a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    let (s, e) = name_span(t, a);
    if (s, e) != name_span(t, b) || s == e {
        return false;
    }
    a[..s] == b[..s] && a[s..e].eq_ignore_ascii_case(&b[s..e]) && a[e..] == b[e..]
}

/// `rdata` with its names lower-cased, for hashing records that compare equal alike.
pub(super) fn canonical_rdata(t: Rtype, rdata: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (s, e) = name_span(t, rdata);
    if s == e || !rdata[s..e].iter().any(u8::is_ascii_uppercase) {
        return rdata.into();
    }
    let mut v = rdata.to_vec();
    v[s..e].make_ascii_lowercase();
    v.into()
}
