//! DNS vocabulary: record types, classes, response codes and opcodes, each as a type with
//! one table that maps numbers to mnemonics and back.
//!
//! Record types are [`Rtype`] everywhere above the octets. Classes, response codes and
//! opcodes likewise: numbers appear only where octets are read or written.

use std::fmt;

/// A record type (RFC 1035 §3.2.2, IANA registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rtype(pub u16);

/// The one table of type mnemonics: (code, mnemonic, accepted in master-file text).
/// Meta-types have a mnemonic for messages but are not record types a zone file can name.
const RTYPES: &[(Rtype, &str, bool)] = &[
    (Rtype::A, "A", true),
    (Rtype::NS, "NS", true),
    (Rtype::CNAME, "CNAME", true),
    (Rtype::SOA, "SOA", true),
    (Rtype::PTR, "PTR", true),
    (Rtype::HINFO, "HINFO", true),
    (Rtype::MX, "MX", true),
    (Rtype::TXT, "TXT", true),
    (Rtype::AAAA, "AAAA", true),
    (Rtype::SRV, "SRV", true),
    (Rtype::DNAME, "DNAME", true),
    (Rtype::OPT, "OPT", false),
    (Rtype::DS, "DS", true),
    (Rtype::RRSIG, "RRSIG", true),
    (Rtype::NSEC, "NSEC", true),
    (Rtype::DNSKEY, "DNSKEY", true),
    (Rtype::DHCID, "DHCID", true),
    (Rtype::NSEC3, "NSEC3", true),
    (Rtype::SSHFP, "SSHFP", true),
    (Rtype::TLSA, "TLSA", true),
    (Rtype::SPF, "SPF", true),
    (Rtype::TKEY, "TKEY", false),
    (Rtype::TSIG, "TSIG", false),
    (Rtype::IXFR, "IXFR", true),
    (Rtype::AXFR, "AXFR", true),
    (Rtype::ANY, "ANY", true),
    (Rtype::CAA, "CAA", true),
];

impl Rtype {
    pub const A: Rtype = Rtype(1);
    pub const NS: Rtype = Rtype(2);
    pub const CNAME: Rtype = Rtype(5);
    pub const SOA: Rtype = Rtype(6);
    pub const PTR: Rtype = Rtype(12);
    pub const HINFO: Rtype = Rtype(13);
    pub const MX: Rtype = Rtype(15);
    pub const TXT: Rtype = Rtype(16);
    pub const AAAA: Rtype = Rtype(28);
    pub const SRV: Rtype = Rtype(33);
    pub const DNAME: Rtype = Rtype(39);
    pub const OPT: Rtype = Rtype(41);
    pub const DS: Rtype = Rtype(43);
    pub const RRSIG: Rtype = Rtype(46);
    pub const NSEC: Rtype = Rtype(47);
    pub const DNSKEY: Rtype = Rtype(48);
    pub const DHCID: Rtype = Rtype(49);
    pub const NSEC3: Rtype = Rtype(50);
    pub const TKEY: Rtype = Rtype(249);
    pub const TSIG: Rtype = Rtype(250);
    pub const IXFR: Rtype = Rtype(251);
    pub const AXFR: Rtype = Rtype(252);
    pub const MAILB: Rtype = Rtype(253);
    pub const MAILA: Rtype = Rtype(254);
    pub const ANY: Rtype = Rtype(255);
    pub const CAA: Rtype = Rtype(257);
    // Types whose rdata has a structure the record checks know (IANA names).
    pub const MD: Rtype = Rtype(3);
    pub const MF: Rtype = Rtype(4);
    pub const MB: Rtype = Rtype(7);
    pub const MG: Rtype = Rtype(8);
    pub const MR: Rtype = Rtype(9);
    pub const WKS: Rtype = Rtype(11);
    pub const MINFO: Rtype = Rtype(14);
    pub const RP: Rtype = Rtype(17);
    pub const AFSDB: Rtype = Rtype(18);
    pub const X25: Rtype = Rtype(19);
    pub const ISDN: Rtype = Rtype(20);
    pub const RT: Rtype = Rtype(21);
    pub const SIG: Rtype = Rtype(24);
    pub const KEY: Rtype = Rtype(25);
    pub const NAPTR: Rtype = Rtype(35);
    pub const KX: Rtype = Rtype(36);
    pub const CERT: Rtype = Rtype(37);
    pub const SSHFP: Rtype = Rtype(44);
    pub const IPSECKEY: Rtype = Rtype(45);
    pub const NSEC3PARAM: Rtype = Rtype(51);
    pub const TLSA: Rtype = Rtype(52);
    pub const SMIMEA: Rtype = Rtype(53);
    pub const CDS: Rtype = Rtype(59);
    pub const CDNSKEY: Rtype = Rtype(60);
    pub const CSYNC: Rtype = Rtype(62);
    pub const ZONEMD: Rtype = Rtype(63);
    pub const SVCB: Rtype = Rtype(64);
    pub const HTTPS: Rtype = Rtype(65);
    pub const SPF: Rtype = Rtype(99);
    pub const EUI48: Rtype = Rtype(108);
    pub const EUI64: Rtype = Rtype(109);
    pub const URI: Rtype = Rtype(256);

    pub const fn to_u16(self) -> u16 {
        self.0
    }

    /// The type as it goes on the wire.
    pub const fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// The type as it comes off the wire.
    pub const fn from_be_bytes(b: [u8; 2]) -> Rtype {
        Rtype(u16::from_be_bytes(b))
    }

    /// The registry mnemonic, when the table has one.
    pub fn mnemonic(self) -> Option<&'static str> {
        RTYPES.iter().find(|e| e.0 == self).map(|e| e.1)
    }

    /// A type written in master-file text: a mnemonic or `TYPEnnn` (RFC 3597 §5),
    /// case-insensitive. Meta-types (OPT, TSIG, TKEY) are not record types and give `None`.
    pub fn from_text(s: &str) -> Option<Rtype> {
        if let Some(e) = RTYPES.iter().find(|e| e.2 && e.1.eq_ignore_ascii_case(s)) {
            return Some(e.0);
        }
        let digits = s.get(..4)?.eq_ignore_ascii_case("TYPE").then(|| &s[4..])?;
        digits.parse().ok().map(Rtype)
    }
}

impl fmt::Display for Rtype {
    /// The mnemonic, or `TYPEnnn` (RFC 3597 §5).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

impl From<u16> for Rtype {
    fn from(t: u16) -> Rtype {
        Rtype(t)
    }
}

impl From<Rtype> for u16 {
    fn from(t: Rtype) -> u16 {
        t.0
    }
}

/// A record class (RFC 1035 §3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rclass(pub u16);

/// The one table of class mnemonics: (code, mnemonic). `CHAOS` is read as CH too.
const RCLASSES: &[(Rclass, &str)] = &[
    (Rclass::IN, "IN"),
    (Rclass::CH, "CH"),
    (Rclass::HS, "HS"),
    (Rclass::NONE, "NONE"),
    (Rclass::ANY, "ANY"),
];

impl Rclass {
    pub const IN: Rclass = Rclass(1);
    pub const CH: Rclass = Rclass(3);
    pub const HS: Rclass = Rclass(4);
    /// RFC 2136 §1.3: "none", in prerequisites and deletions.
    pub const NONE: Rclass = Rclass(254);
    pub const ANY: Rclass = Rclass(255);

    pub const fn to_u16(self) -> u16 {
        self.0
    }

    /// The class as it goes on the wire.
    pub const fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// The class as it comes off the wire.
    pub const fn from_be_bytes(b: [u8; 2]) -> Rclass {
        Rclass(u16::from_be_bytes(b))
    }

    pub fn mnemonic(self) -> Option<&'static str> {
        RCLASSES.iter().find(|e| e.0 == self).map(|e| e.1)
    }

    /// A class in master-file text: a mnemonic, `CHAOS`, or `CLASSnnn` (RFC 3597 §5).
    pub fn from_text(s: &str) -> Option<Rclass> {
        if s.eq_ignore_ascii_case("CHAOS") {
            return Some(Rclass::CH);
        }
        if let Some(e) = RCLASSES.iter().find(|e| e.1.eq_ignore_ascii_case(s)) {
            return Some(e.0);
        }
        let digits = s.get(..5)?.eq_ignore_ascii_case("CLASS").then(|| &s[5..])?;
        digits.parse().ok().map(Rclass)
    }
}

impl fmt::Display for Rclass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "CLASS{}", self.0),
        }
    }
}

impl From<u16> for Rclass {
    fn from(c: u16) -> Rclass {
        Rclass(c)
    }
}

impl From<Rclass> for u16 {
    fn from(c: Rclass) -> u16 {
        c.0
    }
}

/// A response code: the 4 header bits, extended to 12 by an OPT record (RFC 6891 §6.1.3),
/// and the values of the TSIG Error field (RFC 8945 §3), which share the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rcode(pub u16);

/// The one table of rcode mnemonics (IANA "DNS RCODEs"). 16 is BADVERS in an OPT record
/// and BADSIG in a TSIG record (RFC 8945 §3): [`Rcode::tsig_mnemonic`] says which.
const RCODES: &[(u16, &str)] = &[
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
    (6, "YXDOMAIN"),
    (7, "YXRRSET"),
    (8, "NXRRSET"),
    (9, "NOTAUTH"),
    (10, "NOTZONE"),
    (16, "BADVERS"),
    (17, "BADKEY"),
    (18, "BADTIME"),
    (22, "BADTRUNC"),
];

impl Rcode {
    pub const NOERROR: Rcode = Rcode(0);
    pub const FORMERR: Rcode = Rcode(1);
    pub const SERVFAIL: Rcode = Rcode(2);
    pub const NXDOMAIN: Rcode = Rcode(3);
    pub const NOTIMP: Rcode = Rcode(4);
    pub const REFUSED: Rcode = Rcode(5);
    pub const YXDOMAIN: Rcode = Rcode(6);
    pub const YXRRSET: Rcode = Rcode(7);
    pub const NXRRSET: Rcode = Rcode(8);
    pub const NOTAUTH: Rcode = Rcode(9);
    pub const NOTZONE: Rcode = Rcode(10);
    pub const BADVERS: Rcode = Rcode(16);
    /// TSIG Error field values (RFC 8945 §3).
    pub const BADSIG: Rcode = Rcode(16);
    pub const BADKEY: Rcode = Rcode(17);
    pub const BADTIME: Rcode = Rcode(18);
    pub const BADTRUNC: Rcode = Rcode(22);

    pub const fn to_u16(self) -> u16 {
        self.0
    }

    /// The 4 bits the header holds.
    pub const fn header_bits(self) -> u16 {
        self.0 & 0xf
    }

    /// The upper 8 bits, which an OPT record's EXTENDED-RCODE holds (RFC 6891 §6.1.3).
    pub const fn extended_bits(self) -> u8 {
        (self.0 >> 4) as u8
    }

    /// As it goes on the wire in a 16-bit field (the TSIG Error field).
    pub const fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }

    /// The mnemonic as a header or OPT rcode (16 is BADVERS).
    pub fn mnemonic(self) -> Option<&'static str> {
        RCODES.iter().find(|e| e.0 == self.0).map(|e| e.1)
    }

    /// The mnemonic as a TSIG Error field value, as `dig` and nsupdate print it (16 is
    /// BADSIG).
    pub fn tsig_mnemonic(self) -> Option<&'static str> {
        if self == Rcode::BADSIG {
            return Some("BADSIG");
        }
        self.mnemonic()
    }
}

impl fmt::Display for Rcode {
    /// The mnemonic, or `rcode N` for a code the table does not name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "rcode {}", self.0),
        }
    }
}

impl From<u16> for Rcode {
    fn from(c: u16) -> Rcode {
        Rcode(c)
    }
}

impl From<Rcode> for u16 {
    fn from(c: Rcode) -> u16 {
        c.0
    }
}

/// A message's opcode (the 4 header bits after QR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Opcode(pub u8);

/// The one table of opcode mnemonics (IANA "DNS OpCodes").
const OPCODES: &[(u8, &str)] = &[
    (0, "QUERY"),
    (1, "IQUERY"),
    (2, "STATUS"),
    (4, "NOTIFY"),
    (5, "UPDATE"),
];

impl Opcode {
    pub const QUERY: Opcode = Opcode(0);
    pub const NOTIFY: Opcode = Opcode(4);
    pub const UPDATE: Opcode = Opcode(5);

    pub const fn to_u8(self) -> u8 {
        self.0
    }

    pub fn mnemonic(self) -> Option<&'static str> {
        OPCODES.iter().find(|e| e.0 == self.0).map(|e| e.1)
    }
}

impl fmt::Display for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mnemonic() {
            Some(m) => f.write_str(m),
            None => write!(f, "opcode {}", self.0),
        }
    }
}

impl From<u8> for Opcode {
    fn from(o: u8) -> Opcode {
        Opcode(o & 0xf)
    }
}

/// Where the embedded names of a type's rdata sit, for compression and additional-section
/// processing on output. Only the types RFC 3597 §4 allows to be compressed are listed.
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
pub fn rdata_names(t: Rtype) -> RdataNames {
    match t {
        Rtype::NS | Rtype::CNAME | Rtype::PTR => RdataNames::Whole,
        Rtype::MX => RdataNames::AfterU16,
        Rtype::SOA => RdataNames::Soa,
        _ => RdataNames::None,
    }
}

/// RFC 1982 §3.2: `a` is greater than `b` in serial number arithmetic.
pub fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip() {
        for &(t, m, text) in RTYPES {
            assert_eq!(t.to_string(), m);
            assert_eq!(Rtype::from_text(m), text.then_some(t), "{m}");
            assert_eq!(Rtype::from_text(&m.to_lowercase()), text.then_some(t));
        }
        assert_eq!(Rtype(65280).to_string(), "TYPE65280");
        assert_eq!(Rtype::from_text("type65280"), Some(Rtype(65280)));
        assert_eq!(Rtype::from_text("TYPE"), None);
        assert_eq!(Rtype::from_text("TYP"), None);
        assert_eq!(Rtype::from_text("OPT"), None);
        for &(c, m) in RCLASSES {
            assert_eq!(Rclass::from_text(m), Some(c));
            assert_eq!(c.to_string(), m);
        }
        assert_eq!(Rclass::from_text("chaos"), Some(Rclass::CH));
        assert_eq!(Rclass::from_text("CLASS32"), Some(Rclass(32)));
        assert_eq!(Rclass(32).to_string(), "CLASS32");
        assert_eq!(Rcode::NOTAUTH.to_string(), "NOTAUTH");
        assert_eq!(Rcode(11).to_string(), "rcode 11");
        assert_eq!(Rcode(16).to_string(), "BADVERS");
        assert_eq!(Rcode(16).tsig_mnemonic(), Some("BADSIG"));
        assert_eq!(Opcode::from(0x14).to_string(), "NOTIFY");
        assert_eq!(Opcode::UPDATE, Opcode(5));
        assert_eq!(Rcode::NOTZONE, Rcode::NOTZONE);
    }
}
