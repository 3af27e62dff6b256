//! Records back into master-file text, in a form [`parse_str`](super::parse_str) reads.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::name::Name;
use crate::proto::rr::{Record, Rtype};

/// Text of one record in master-file form, readable back by [`parse_str`].
pub fn format_record(r: &Record, origin: Option<&Name>) -> String {
    let owner = match origin {
        Some(o) => r.owner.to_relative_string(o),
        None => r.owner.to_string(),
    };
    format!(
        "{owner} {} IN {} {}",
        r.ttl,
        r.rtype,
        rdata_to_text(r.rtype, &r.rdata)
    )
}

fn quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in bytes {
        match c {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\{c:03}")),
        }
    }
    s.push('"');
    s
}

pub(super) fn generic(data: &[u8]) -> String {
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    if data.is_empty() {
        "\\# 0".into()
    } else {
        format!("\\# {} {hex}", data.len())
    }
}

/// Rdata in presentation form (RFC 3597 `\#` form when not decodable).
pub fn rdata_to_text(rt: Rtype, d: &[u8]) -> String {
    let name_at = |i: usize| -> Option<(String, usize)> {
        let l = crate::proto::name::wire_name_len(&d[i..])?;
        Some((Name::from_wire(&d[i..i + l]).ok()?.to_string(), i + l))
    };
    let text = match rt {
        Rtype::A if d.len() == 4 => Some(Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()),
        Rtype::AAAA if d.len() == 16 => {
            let a: [u8; 16] = d.try_into().expect("length checked");
            Some(Ipv6Addr::from(a).to_string())
        }
        Rtype::NS | Rtype::CNAME | Rtype::PTR | Rtype::DNAME => {
            name_at(0).filter(|(_, e)| *e == d.len()).map(|(n, _)| n)
        }
        Rtype::MX if d.len() > 2 => name_at(2)
            .filter(|(_, e)| *e == d.len())
            .map(|(n, _)| format!("{} {n}", u16::from_be_bytes([d[0], d[1]]))),
        Rtype::SRV if d.len() > 6 => name_at(6).filter(|(_, e)| *e == d.len()).map(|(n, _)| {
            format!(
                "{} {} {} {n}",
                u16::from_be_bytes([d[0], d[1]]),
                u16::from_be_bytes([d[2], d[3]]),
                u16::from_be_bytes([d[4], d[5]])
            )
        }),
        Rtype::SOA => crate::proto::rr::Soa::from_rdata(d).map(|s| {
            format!(
                "{} {} {} {} {} {} {}",
                s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
            )
        }),
        Rtype::TXT | Rtype::SPF | Rtype::HINFO => {
            let mut parts = Vec::new();
            let mut i = 0;
            let mut ok = true;
            while i < d.len() {
                let l = d[i] as usize;
                if i + 1 + l > d.len() {
                    ok = false;
                    break;
                }
                parts.push(quote(&d[i + 1..i + 1 + l]));
                i += 1 + l;
            }
            (ok && !parts.is_empty()).then(|| parts.join(" "))
        }
        Rtype::CAA if d.len() >= 2 && 2 + d[1] as usize <= d.len() => {
            let tl = d[1] as usize;
            Some(format!(
                "{} {} {}",
                d[0],
                String::from_utf8_lossy(&d[2..2 + tl]),
                quote(&d[2 + tl..])
            ))
        }
        _ => None,
    };
    text.unwrap_or_else(|| generic(d))
}
