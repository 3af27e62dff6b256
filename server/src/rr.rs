//! Resource records as the server keeps them: owner, type, class, TTL and rdata in
//! uncompressed wire form (RFC 1035 §3.2, RFC 3597).
//!
//! Rdata is stored as wire bytes so that answers are copied, not re-encoded. Names inside
//! rdata are stored uncompressed; the answer writer may compress the ones RFC 3597 §4 allows
//! (NS, CNAME, SOA, PTR, MX) and never those in SRV or unknown types.

use std::path::PathBuf;
use std::sync::Arc;

use crate::name::{wire_name_len, Name};

/// Record type codes used by the server (IANA "Resource Record (RR) TYPEs").
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const HINFO: u16 = 13;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const AAAA: u16 = 28;
    pub const SRV: u16 = 33;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const DS: u16 = 43;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    pub const DHCID: u16 = 49;
    pub const NSEC3: u16 = 50;
    pub const TKEY: u16 = 249;
    pub const TSIG: u16 = 250;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const MAILB: u16 = 253;
    pub const MAILA: u16 = 254;
    pub const ANY: u16 = 255;
    pub const CAA: u16 = 257;
}

/// Class codes (RFC 1035 §3.2.4, RFC 2136 §1.3).
pub mod class {
    pub const IN: u16 = 1;
    pub const CH: u16 = 3;
    pub const HS: u16 = 4;
    pub const NONE: u16 = 254;
    pub const ANY: u16 = 255;
}

/// Mnemonic for a type code, or `TYPEnnn` (RFC 3597 §5).
pub fn type_name(t: u16) -> String {
    let s = match t {
        rtype::A => "A",
        rtype::NS => "NS",
        rtype::CNAME => "CNAME",
        rtype::SOA => "SOA",
        rtype::PTR => "PTR",
        rtype::HINFO => "HINFO",
        rtype::MX => "MX",
        rtype::TXT => "TXT",
        rtype::AAAA => "AAAA",
        rtype::SRV => "SRV",
        rtype::DNAME => "DNAME",
        rtype::OPT => "OPT",
        rtype::DS => "DS",
        rtype::RRSIG => "RRSIG",
        rtype::NSEC => "NSEC",
        rtype::DNSKEY => "DNSKEY",
        rtype::DHCID => "DHCID",
        rtype::NSEC3 => "NSEC3",
        rtype::TKEY => "TKEY",
        rtype::TSIG => "TSIG",
        rtype::IXFR => "IXFR",
        rtype::AXFR => "AXFR",
        rtype::ANY => "ANY",
        rtype::CAA => "CAA",
        _ => return format!("TYPE{t}"),
    };
    s.to_string()
}

/// Type code for a mnemonic or `TYPEnnn`, case-insensitive.
pub fn type_from_name(s: &str) -> Option<u16> {
    let up = s.to_ascii_uppercase();
    let t = match up.as_str() {
        "A" => rtype::A,
        "NS" => rtype::NS,
        "CNAME" => rtype::CNAME,
        "SOA" => rtype::SOA,
        "PTR" => rtype::PTR,
        "HINFO" => rtype::HINFO,
        "MX" => rtype::MX,
        "TXT" => rtype::TXT,
        "AAAA" => rtype::AAAA,
        "SRV" => rtype::SRV,
        "DNAME" => rtype::DNAME,
        "DS" => rtype::DS,
        "RRSIG" => rtype::RRSIG,
        "NSEC" => rtype::NSEC,
        "DNSKEY" => rtype::DNSKEY,
        "DHCID" => rtype::DHCID,
        "NSEC3" => rtype::NSEC3,
        "CAA" => rtype::CAA,
        "ANY" => rtype::ANY,
        "AXFR" => rtype::AXFR,
        "IXFR" => rtype::IXFR,
        _ => return up.strip_prefix("TYPE")?.parse().ok(),
    };
    Some(t)
}

/// Where a record came from, for error messages and lints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file the record was read from.
    pub file: Arc<PathBuf>,
    /// 1-based line where the record starts.
    pub line: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, case as written.
    pub owner: Name,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Rdata in uncompressed wire form.
    pub rdata: Vec<u8>,
    /// Source position when the record came from a file.
    pub source: Option<Origin>,
}

/// The SOA fields the server needs (RFC 1035 §3.3.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    pub mname: Name,
    pub rname: Name,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

impl Soa {
    /// Decodes SOA rdata in uncompressed wire form.
    pub fn from_rdata(rdata: &[u8]) -> Option<Soa> {
        let l1 = wire_name_len(rdata)?;
        let l2 = wire_name_len(&rdata[l1..])?;
        let rest = &rdata[l1 + l2..];
        if rest.len() != 20 {
            return None;
        }
        let n = |i: usize| u32::from_be_bytes(rest[i * 4..i * 4 + 4].try_into().unwrap());
        Some(Soa {
            mname: Name::from_wire(&rdata[..l1]).ok()?,
            rname: Name::from_wire(&rdata[l1..l1 + l2]).ok()?,
            serial: n(0),
            refresh: n(1),
            retry: n(2),
            expire: n(3),
            minimum: n(4),
        })
    }
}

/// SRV rdata (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: Name,
}

impl Srv {
    /// Decodes SRV rdata in uncompressed wire form.
    pub fn from_rdata(rdata: &[u8]) -> Option<Srv> {
        if rdata.len() < 7 {
            return None;
        }
        let target = Name::from_wire(&rdata[6..]).ok()?;
        Some(Srv {
            priority: u16::from_be_bytes([rdata[0], rdata[1]]),
            weight: u16::from_be_bytes([rdata[2], rdata[3]]),
            port: u16::from_be_bytes([rdata[4], rdata[5]]),
            target,
        })
    }
}

/// Where the embedded names of a type's rdata sit, for compression and additional-section
/// processing. Only the types RFC 3597 §4 allows to be compressed are listed.
pub enum RdataNames {
    /// The rdata is one name (NS, CNAME, PTR).
    Whole,
    /// A 2-byte preference then a name (MX).
    AfterU16,
    /// Two names then 20 bytes (SOA).
    Soa,
    /// No compressible names.
    None,
}

/// How names in rdata of type `t` may be compressed on output.
pub fn rdata_names(t: u16) -> RdataNames {
    match t {
        rtype::NS | rtype::CNAME | rtype::PTR => RdataNames::Whole,
        rtype::MX => RdataNames::AfterU16,
        rtype::SOA => RdataNames::Soa,
        _ => RdataNames::None,
    }
}
