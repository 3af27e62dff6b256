//! Resource records as the server keeps them: owner, type, class, TTL and rdata in
//! uncompressed wire form (RFC 1035 §3.2, RFC 3597).
//!
//! Rdata is stored as wire bytes so that answers are copied, not re-encoded. Names inside
//! rdata are stored uncompressed; the answer writer may compress the ones RFC 3597 §4 allows
//! (NS, CNAME, SOA, PTR, MX) and never those in SRV or unknown types. Stored rdata has
//! passed [`check_rdata`], so the answer writer can rely on its structure.

use std::path::PathBuf;
use std::sync::Arc;

use crate::proto::name::{wire_name_len, Name};

pub use crate::proto::types::{rdata_names, Rclass, RdataNames, Rtype};

/// True for the type codes that name no data a zone can hold: the reserved type 0, the
/// meta-TYPEs OPT, TSIG and TKEY, and the query-only QTYPEs IXFR, AXFR, MAILB, MAILA and
/// ANY (RFC 6895 §3.1). A zone refuses records of these types, and a query for one is not
/// answered from zone data (each has its own rule: FORMERR, NOTIMP, REFUSED, RFC 8482).
pub fn is_meta_or_query_only(t: Rtype) -> bool {
    matches!(
        t,
        Rtype(0)
            | Rtype::OPT
            | Rtype::TKEY
            | Rtype::TSIG
            | Rtype::IXFR
            | Rtype::AXFR
            | Rtype::MAILB
            | Rtype::MAILA
            | Rtype::ANY
    )
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
    pub rtype: Rtype,
    pub class: Rclass,
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

/// Checks that `rdata` is well-formed uncompressed wire data of type `t`: every fixed
/// field present, every embedded name a well-formed uncompressed name within the length
/// limits (RFC 1035 §3.1), every character-string inside the data, nothing left over.
/// Types without a known structure (RFC 3597 unknown types) accept any data.
///
/// Both zone-file forms of a record (its text and the RFC 3597 `\#` form) and
/// [`crate::zone::Zone::build`] go through this one check, so whatever a zone holds can be
/// written into an answer and parsed back by a resolver. It only reads the bytes; it does
/// not allocate.
pub fn check_rdata(t: Rtype, rdata: &[u8]) -> Result<(), String> {
    let mut f = Fields { d: rdata, at: 0 };
    match t {
        Rtype::A => f.fixed(4, "IPv4 address")?,
        Rtype::AAAA => f.fixed(16, "IPv6 address")?,
        Rtype::EUI48 => f.fixed(6, "EUI-48 address")?,
        Rtype::EUI64 => f.fixed(8, "EUI-64 address")?,
        Rtype::NS
        | Rtype::MD
        | Rtype::MF
        | Rtype::CNAME
        | Rtype::MB
        | Rtype::MG
        | Rtype::MR
        | Rtype::PTR
        | Rtype::DNAME => f.name("target name")?,
        Rtype::SOA => {
            f.name("SOA mname")?;
            f.name("SOA rname")?;
            f.fixed(20, "SOA serial, refresh, retry, expire and minimum")?;
        }
        Rtype::WKS => {
            f.fixed(5, "WKS address and protocol")?;
            f.rest();
        }
        Rtype::HINFO => {
            f.string("HINFO CPU")?;
            f.string("HINFO OS")?;
        }
        Rtype::MINFO | Rtype::RP => {
            f.name("first name")?;
            f.name("second name")?;
        }
        Rtype::MX | Rtype::AFSDB | Rtype::RT | Rtype::KX => {
            f.fixed(2, "preference")?;
            f.name("exchange name")?;
        }
        Rtype::TXT | Rtype::SPF => txt(&mut f)?,
        Rtype::X25 => {
            f.string("PSDN address")?;
        }
        Rtype::ISDN => isdn(&mut f)?,
        Rtype::SRV => {
            f.fixed(6, "SRV priority, weight and port")?;
            f.name("SRV target")?;
        }
        Rtype::NAPTR => naptr(&mut f)?,
        Rtype::CERT => {
            f.fixed(5, "CERT type, key tag and algorithm")?;
            f.nonempty_rest("CERT certificate")?;
        }
        Rtype::DS | Rtype::CDS => {
            f.fixed(4, "key tag, algorithm and digest type")?;
            f.nonempty_rest("digest")?;
        }
        Rtype::SSHFP => {
            f.fixed(2, "SSHFP algorithm and fingerprint type")?;
            f.rest();
        }
        Rtype::IPSECKEY => ipseckey(&mut f)?,
        Rtype::RRSIG | Rtype::SIG => {
            f.fixed(
                18,
                "type covered, algorithm, labels, TTL, times and key tag",
            )?;
            f.name("signer name")?;
            f.nonempty_rest("signature")?;
        }
        Rtype::NSEC => {
            f.name("next owner name")?;
            f.type_bitmap()?;
        }
        Rtype::DNSKEY | Rtype::CDNSKEY | Rtype::KEY => {
            f.fixed(4, "flags, protocol and algorithm")?;
            f.rest();
        }
        Rtype::DHCID => {
            f.fixed(3, "DHCID identifier type and digest type")?;
            f.nonempty_rest("DHCID digest")?;
        }
        Rtype::NSEC3 => nsec3(&mut f)?,
        Rtype::NSEC3PARAM => {
            f.fixed(4, "hash algorithm, flags and iterations")?;
            f.string("salt")?;
        }
        Rtype::TLSA | Rtype::SMIMEA => {
            f.fixed(3, "usage, selector and matching type")?;
            f.rest();
        }
        Rtype::CSYNC => csync(&mut f)?,
        Rtype::ZONEMD => zonemd(&mut f)?,
        Rtype::SVCB | Rtype::HTTPS => {
            f.fixed(2, "SvcPriority")?;
            f.name("target name")?;
            f.svc_params()?;
        }
        Rtype::URI => {
            f.fixed(4, "URI priority and weight")?;
            f.nonempty_rest("URI target")?;
        }
        Rtype::CAA => caa(&mut f)?,
        _ => {
            f.rest();
        }
    }
    f.end()
}

// The types whose data has more than a fixed sequence of fields: one function each,
// named after the type.

fn txt(f: &mut Fields<'_>) -> Result<(), String> {
    if f.done() {
        return Err("needs at least one character-string".into());
    }
    while !f.done() {
        f.string("character-string")?;
    }
    Ok(())
}

fn isdn(f: &mut Fields<'_>) -> Result<(), String> {
    f.string("ISDN address")?;
    if !f.done() {
        f.string("ISDN subaddress")?;
    }
    Ok(())
}

fn naptr(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(4, "NAPTR order and preference")?;
    // RFC 3403 §4.1: flags are letters and digits; resolvers refuse others.
    let flags = f.string_bytes("NAPTR flags")?;
    if !flags.iter().all(u8::is_ascii_alphanumeric) {
        return Err(format!(
            "NAPTR flags \"{}\" must be letters and digits",
            String::from_utf8_lossy(flags)
        ));
    }
    f.string("NAPTR services")?;
    f.string("NAPTR regexp")?;
    f.name("NAPTR replacement")
}

fn ipseckey(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(3, "IPSECKEY precedence, gateway type and algorithm")?;
    match f.d[1] {
        0 => {}
        1 => f.fixed(4, "IPv4 gateway")?,
        2 => f.fixed(16, "IPv6 gateway")?,
        3 => f.name("gateway name")?,
        g => return Err(format!("IPSECKEY gateway type {g} is not defined (0-3)")),
    }
    f.rest();
    Ok(())
}

fn nsec3(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(4, "hash algorithm, flags and iterations")?;
    f.string("salt")?;
    if f.string("next hashed owner name")? == 0 {
        return Err("the next hashed owner name is empty".into());
    }
    f.type_bitmap()
}

fn csync(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(6, "CSYNC serial and flags")?;
    // Only the immediate and soaminimum flags are defined (RFC 7477 §2.1.1.2);
    // resolvers refuse data with others set.
    let flags = u16::from_be_bytes([f.d[4], f.d[5]]);
    if flags & !3 != 0 {
        return Err(format!(
            "CSYNC flags {flags:#06x} set bits other than immediate and soaminimum"
        ));
    }
    f.type_bitmap()
}

fn zonemd(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(6, "ZONEMD serial, scheme and hash algorithm")?;
    // RFC 8976 §2.2.4: a digest shorter than 12 octets is invalid.
    if f.rest().len() < 12 {
        return Err("the ZONEMD digest is shorter than 12 octets".into());
    }
    Ok(())
}

fn caa(f: &mut Fields<'_>) -> Result<(), String> {
    f.fixed(1, "CAA flags")?;
    let tag = f.string_bytes("CAA tag")?;
    // RFC 8659 §4.1: a tag is 1-15 letters and digits; resolvers refuse others.
    if tag.is_empty() || tag.len() > 15 || !tag.iter().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "CAA tag \"{}\" must be 1 to 15 letters and digits",
            String::from_utf8_lossy(tag)
        ));
    }
    f.rest();
    Ok(())
}

/// A reader over rdata for [`check_rdata`]: each step names the field it expects, so
/// the error says which one is missing or broken.
struct Fields<'a> {
    d: &'a [u8],
    at: usize,
}

impl<'a> Fields<'a> {
    fn done(&self) -> bool {
        self.at >= self.d.len()
    }

    fn fixed(&mut self, n: usize, what: &str) -> Result<(), String> {
        if self.d.len() - self.at < n {
            return Err(format!(
                "the data ends inside the {what} ({n} octets needed, {} left)",
                self.d.len() - self.at
            ));
        }
        self.at += n;
        Ok(())
    }

    fn name(&mut self, what: &str) -> Result<(), String> {
        let rest = &self.d[self.at..];
        match wire_name_len(rest) {
            Some(l) => {
                self.at += l;
                Ok(())
            }
            None if rest.is_empty() => Err(format!("the {what} is missing")),
            None => Err(format!(
                "the {what} is not a well-formed uncompressed domain name (labels of at most 63 octets, at most 255 in all, ending with the root label)"
            )),
        }
    }

    /// A character-string (RFC 1035 §3.3): a length octet and that many octets.
    fn string_bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let Some(&l) = self.d.get(self.at) else {
            return Err(format!("the {what} is missing"));
        };
        let start = self.at + 1;
        let end = start + l as usize;
        if end > self.d.len() {
            return Err(format!(
                "the {what} says {l} octets but only {} are left",
                self.d.len() - start
            ));
        }
        self.at = end;
        Ok(&self.d[start..end])
    }

    /// Like [`Fields::string_bytes`], giving the string's length.
    fn string(&mut self, what: &str) -> Result<usize, String> {
        self.string_bytes(what).map(<[u8]>::len)
    }

    fn rest(&mut self) -> &'a [u8] {
        let r = &self.d[self.at..];
        self.at = self.d.len();
        r
    }

    fn nonempty_rest(&mut self, what: &str) -> Result<(), String> {
        if self.rest().is_empty() {
            return Err(format!("the {what} is missing"));
        }
        Ok(())
    }

    /// Type bitmaps (RFC 4034 §4.1.2): windows in increasing order, each 1-32 octets
    /// with no trailing zero octet.
    fn type_bitmap(&mut self) -> Result<(), String> {
        let mut last: Option<u8> = None;
        while !self.done() {
            let rest = &self.d[self.at..];
            if rest.len() < 2 {
                return Err("the type bitmap ends inside a window header".into());
            }
            let (window, len) = (rest[0], rest[1] as usize);
            if last.is_some_and(|w| w >= window) {
                return Err(format!(
                    "type bitmap window {window} is out of order or repeated"
                ));
            }
            if len == 0 || len > 32 {
                return Err(format!(
                    "type bitmap window {window} has length {len} (1 to 32 allowed)"
                ));
            }
            if rest.len() < 2 + len {
                return Err(format!("type bitmap window {window} runs past the data"));
            }
            if rest[1 + len] == 0 {
                return Err(format!(
                    "type bitmap window {window} ends with a zero octet"
                ));
            }
            last = Some(window);
            self.at += 2 + len;
        }
        Ok(())
    }

    /// SvcParams (RFC 9460 §2.2): keys in strictly increasing order, each value inside
    /// the data and shaped as its key requires.
    fn svc_params(&mut self) -> Result<(), String> {
        let mut last: Option<u16> = None;
        while !self.done() {
            let rest = &self.d[self.at..];
            if rest.len() < 4 {
                return Err("the data ends inside a SvcParam key and length".into());
            }
            let key = u16::from_be_bytes([rest[0], rest[1]]);
            let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
            if last.is_some_and(|k| k >= key) {
                return Err(format!("SvcParam key {key} is out of order or repeated"));
            }
            last = Some(key);
            let Some(value) = rest.get(4..4 + len) else {
                return Err(format!("SvcParam key {key} runs past the data"));
            };
            let ok = match key {
                // mandatory: a non-empty list of keys.
                0 => !value.is_empty() && value.len() % 2 == 0,
                // alpn: non-empty list of non-empty character-strings; resolvers read
                // the ids as UTF-8.
                1 => {
                    let mut v = Fields { d: value, at: 0 };
                    let mut ok = !value.is_empty();
                    while ok && !v.done() {
                        ok = matches!(v.string_bytes(""), Ok(id) if !id.is_empty() && std::str::from_utf8(id).is_ok());
                    }
                    ok
                }
                // no-default-alpn: no value.
                2 => value.is_empty(),
                // port.
                3 => value.len() == 2,
                // ipv4hint, ipv6hint: a non-empty list of addresses.
                4 => !value.is_empty() && value.len() % 4 == 0,
                6 => !value.is_empty() && value.len() % 16 == 0,
                _ => true,
            };
            if !ok {
                return Err(format!("SvcParam key {key} has a malformed value"));
            }
            self.at += 4 + len;
        }
        Ok(())
    }

    fn end(&self) -> Result<(), String> {
        match self.d.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} octets of data follow the last field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s = s.replace(' ', "");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Well-formed data of each structured type passes; every truncation of it fails (no
    /// prefix of these is itself well formed), and so does a trailing octet where the last
    /// field has a length.
    #[test]
    fn check_rdata_refuses_every_truncation() {
        let cases = [
            (Rtype::A, "0a000001"),
            (Rtype::AAAA, "20010db8000000000000000000000001"),
            (Rtype::NS, "036e7331 0178 00"),
            (Rtype::MX, "000a01610178 00"),
            (Rtype::SRV, "000100020003016100"),
            (Rtype::HINFO, "01610162"),
            (Rtype::CAA, "000569737375 65"),
            (
                Rtype::SOA,
                "016100 016200 00000001 00000002 00000003 00000004 00000005",
            ),
            (Rtype::NAPTR, "000a0014 01 53 00 00 0161 00"),
            (
                Rtype::RRSIG,
                "0001 08 02 0000012c 00000001 00000002 1234 0178 00 ab",
            ),
            (Rtype::NSEC3, "01 00 000a 02 abcd 01 ff"),
            (Rtype::DS, "1234 08 02 ab"),
            (Rtype::DHCID, "0002 01 ab"),
        ];
        for (t, data) in cases {
            let d = hex(data);
            assert_eq!(check_rdata(t, &d), Ok(()), "{} {data}", t);
            for n in 0..d.len() {
                assert!(
                    check_rdata(t, &d[..n]).is_err(),
                    "{} {data} cut to {n} octets",
                    t
                );
            }
            let mut longer = d.clone();
            longer.push(0);
            // These end with a field that takes the rest of the data.
            let open_ended = [Rtype::RRSIG, Rtype::DS, Rtype::DHCID, Rtype::CAA];
            if !open_ended.contains(&t) {
                assert!(check_rdata(t, &longer).is_err(), "{} {data} + 00", t);
            }
        }
        // Unknown types hold anything, nothing included.
        assert_eq!(check_rdata(Rtype(65534), &[]), Ok(()));
        assert_eq!(check_rdata(Rtype(65534), &[0xc0, 0x0c]), Ok(()));
        // A compression pointer is never a name inside stored rdata.
        assert!(check_rdata(Rtype::CNAME, &[0xc0, 0x0c]).is_err());
    }

    #[test]
    fn type_bitmaps_and_svc_params_are_checked() {
        let nsec = |bitmap: &str| {
            let mut d = vec![1, b'a', 0];
            d.extend(hex(bitmap));
            check_rdata(Rtype::NSEC, &d)
        };
        assert_eq!(nsec(""), Ok(()));
        assert_eq!(nsec("000160 010140"), Ok(()));
        assert!(nsec("010140 000160").is_err(), "windows out of order");
        assert!(nsec("0002 4000").is_err(), "trailing zero octet");
        assert!(nsec("0021").is_err(), "window longer than 32");
        let svcb = |params: &str| {
            let mut d = vec![0, 1, 0];
            d.extend(hex(params));
            check_rdata(Rtype::SVCB, &d)
        };
        assert_eq!(svcb("0001 0003 026832"), Ok(()));
        assert!(
            svcb("0003 0002 0035 0001 0003 026832").is_err(),
            "keys out of order"
        );
        assert!(svcb("0001 0000").is_err(), "empty alpn");
        assert!(
            svcb("0002 0001 00").is_err(),
            "no-default-alpn with a value"
        );
        assert!(svcb("0004 0003 0a0000").is_err(), "ipv4hint of 3 octets");
        assert!(svcb("0003 0004 0035").is_err(), "value past the data");
    }

    #[test]
    fn meta_and_query_only_types() {
        for t in [0, 41, 249, 250, 251, 252, 253, 254, 255] {
            assert!(is_meta_or_query_only(Rtype(t)), "{t}");
        }
        for t in [1, 2, 6, 16, 28, 33, 46, 257, 65534] {
            assert!(!is_meta_or_query_only(Rtype(t)), "{t}");
        }
    }
}
