//! Record data from its master-file text fields: the text form of each type this server
//! reads, the RFC 3597 `\#` form of any type, and the character-string, hex and base64
//! encodings inside them.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::lex::Token;
use super::parse_ttl;
use crate::proto::name::Name;
use crate::proto::rr::{check_rdata, Rtype};

fn want(rest: &[Token<'_>], n: usize, what: &str) -> Result<(), String> {
    if rest.len() != n {
        return Err(format!(
            "needs {n} field{} ({what}), found {}",
            if n == 1 { "" } else { "s" },
            rest.len()
        ));
    }
    Ok(())
}

fn number<T: TryFrom<u64>>(s: &str, what: &str, max: u64) -> Result<T, String> {
    let v: u64 = s
        .parse()
        .map_err(|_| format!("{what} \"{s}\" is not a number"))?;
    if v > max {
        return Err(format!("{what} {v} out of range 0-{max}"));
    }
    T::try_from(v).map_err(|_| format!("{what} {v} out of range"))
}

fn name_field(s: &str, origin: &Name, what: &str) -> Result<crate::proto::name::WireBuf, String> {
    crate::proto::name::parse_wire(s, Some(origin)).map_err(|e| format!("bad {what}: {e}"))
}

/// Decodes `\X` and `\DDD` escapes of a character-string.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                let v = (b[i + 1] - b'0') as u32 * 100
                    + (b[i + 2] - b'0') as u32 * 10
                    + (b[i + 3] - b'0') as u32;
                if v > 255 {
                    return Err(format!("escape \\{} is above 255", &s[i + 1..i + 4]));
                }
                out.push(v as u8);
                i += 4;
            } else if i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
            } else {
                return Err("a string ends with a lone backslash".into());
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn char_string(out: &mut Vec<u8>, t: &Token<'_>) -> Result<(), String> {
    let bytes = unescape(t.text)?;
    if bytes.len() > 255 {
        return Err(format!("a character-string holds at most 255 bytes, this one has {} (split it into several quoted strings)", bytes.len()));
    }
    out.push(bytes.len() as u8);
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes hex digits, white space ignored. Works on characters, not bytes: the text may
/// hold any Unicode, and a pair of bytes need not be a whole character.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex data has an odd number of digits".into());
    }
    digits
        .chunks_exact(2)
        .map(|pair| match (pair[0].to_digit(16), pair[1].to_digit(16)) {
            (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
            _ => Err(format!("\"{}{}\" is not hex", pair[0], pair[1])),
        })
        .collect()
}

fn base64(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    // Characters, not bytes: a non-ASCII character is named whole in the error.
    for c in s.chars() {
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            '=' => continue,
            _ => return Err(format!("'{c}' is not base64")),
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Rdata in the RFC 3597 form `\# LENGTH HEX...` (`rest` starts at the `\#`), for any type.
fn generic(rt: Rtype, rest: &[Token<'_>]) -> Result<Vec<u8>, String> {
    let len: usize = rest
        .get(1)
        .ok_or("the \\# form needs a length, e.g. \\# 4 0a000001")?
        .text
        .parse()
        .map_err(|_| "the \\# form needs a decimal length after \\#".to_string())?;
    if len > u16::MAX as usize {
        return Err(format!(
            "\\# length {len} is more than the 65535 octets a record can hold"
        ));
    }
    let data = hex(&rest[2..].iter().map(|t| t.text).collect::<String>())?;
    if data.len() != len {
        return Err(format!(
            "\\# length says {len} bytes but {} bytes of hex follow",
            data.len()
        ));
    }
    // The same check as the text form's: a known type's \# data must have that type's
    // structure, or the answers carrying it would not parse.
    check_rdata(rt, &data)
        .map_err(|why| format!("the \\# data is not valid {} rdata: {why}", rt))?;
    Ok(data)
}

/// Rdata of type `rt` from its text fields.
pub(super) fn from_text(rt: Rtype, rest: &[Token<'_>], origin: &Name) -> Result<Vec<u8>, String> {
    if rest.first().is_some_and(|t| !t.quoted && t.text == "\\#") {
        return generic(rt, rest);
    }
    let t = |i: usize| rest[i].text;
    let mut out = Vec::new();
    match rt {
        Rtype::A => {
            want(rest, 1, "an IPv4 address")?;
            let a: Ipv4Addr = t(0).parse().map_err(|_| format!("invalid IPv4 address \"{}\"", t(0)))?;
            out.extend_from_slice(&a.octets());
        }
        Rtype::AAAA => {
            want(rest, 1, "an IPv6 address")?;
            let a: Ipv6Addr = t(0).parse().map_err(|_| format!("invalid IPv6 address \"{}\"", t(0)))?;
            out.extend_from_slice(&a.octets());
        }
        Rtype::NS | Rtype::CNAME | Rtype::PTR | Rtype::DNAME => {
            want(rest, 1, "a domain name")?;
            out.extend_from_slice(&name_field(t(0), origin, "target name")?);
        }
        Rtype::MX => {
            want(rest, 2, "preference and exchange")?;
            out.extend_from_slice(&number::<u16>(t(0), "MX preference", 65535)?.to_be_bytes());
            out.extend_from_slice(&name_field(t(1), origin, "mail exchange")?);
        }
        Rtype::SOA => {
            want(rest, 7, "mname rname serial refresh retry expire minimum")?;
            out.extend_from_slice(&name_field(t(0), origin, "SOA mname")?);
            out.extend_from_slice(&name_field(t(1), origin, "SOA rname")?);
            let serial: u32 = number(t(2), "SOA serial", u32::MAX as u64)?;
            out.extend_from_slice(&serial.to_be_bytes());
            for (i, what) in [(3, "refresh"), (4, "retry"), (5, "expire"), (6, "minimum")] {
                let v = parse_ttl(t(i)).ok_or_else(|| format!("SOA {what} \"{}\" is not a time value", t(i)))?;
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        Rtype::TXT | Rtype::SPF => {
            if rest.is_empty() {
                return Err("needs at least one string".into());
            }
            for tok in rest {
                char_string(&mut out, tok)?;
            }
        }
        Rtype::HINFO => {
            want(rest, 2, "CPU and OS strings")?;
            char_string(&mut out, &rest[0])?;
            char_string(&mut out, &rest[1])?;
        }
        Rtype::SRV => {
            want(rest, 4, "priority weight port target")?;
            out.extend_from_slice(&number::<u16>(t(0), "SRV priority", 65535)?.to_be_bytes());
            out.extend_from_slice(&number::<u16>(t(1), "SRV weight", 65535)?.to_be_bytes());
            out.extend_from_slice(&number::<u16>(t(2), "SRV port", 65535)?.to_be_bytes());
            out.extend_from_slice(&name_field(t(3), origin, "SRV target")?);
        }
        Rtype::CAA => {
            want(rest, 3, "flags tag value")?;
            out.push(number::<u8>(t(0), "CAA flags", 255)?);
            let tag = t(1);
            if tag.is_empty() || tag.len() > 255 || !tag.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("CAA tag \"{tag}\" must be letters and digits"));
            }
            out.push(tag.len() as u8);
            out.extend_from_slice(tag.as_bytes());
            out.extend(unescape(t(2))?);
        }
        Rtype::DHCID => {
            if rest.is_empty() {
                return Err("needs base64 data".into());
            }
            out = base64(&rest.iter().map(|t| t.text).collect::<String>())?;
        }
        Rtype::SSHFP => {
            // SSHFP: algorithm, fingerprint type, hex fingerprint.
            if rest.len() < 3 {
                return Err("needs algorithm, type and fingerprint".into());
            }
            out.push(number::<u8>(t(0), "SSHFP algorithm", 255)?);
            out.push(number::<u8>(t(1), "SSHFP type", 255)?);
            out.extend(hex(&rest[2..].iter().map(|t| t.text).collect::<String>())?);
        }
        Rtype::TLSA => {
            // TLSA: usage, selector, matching type, hex data.
            if rest.len() < 4 {
                return Err("needs usage, selector, matching type and data".into());
            }
            for (i, what) in [(0, "usage"), (1, "selector"), (2, "matching type")] {
                out.push(number::<u8>(t(i), what, 255)?);
            }
            out.extend(hex(&rest[3..].iter().map(|t| t.text).collect::<String>())?);
        }
        _ => {
            return Err(format!(
                "{} records cannot be written in text form here; use the RFC 3597 form, e.g. \"{} \\# 4 0a000001\"",
                rt,
                rt
            ))
        }
    }
    if out.len() > u16::MAX as usize {
        return Err(format!(
            "record data of {} octets; at most 65535 fit in a record (split long TXT data over several records)",
            out.len()
        ));
    }
    check_rdata(rt, &out)?;
    Ok(out)
}
