//! Precompiled answers: the query fast path.
//!
//! When a zone snapshot is built, the response to every (existing name, type) — and the
//! NODATA response of every name — is computed once by the full answer path
//! ([`Responder::answer`]) and kept in wire format. A query whose name exists then costs
//! one hash lookup and a copy: header and question are taken from the query (so ID, case
//! and flags are the querier's), the stored sections are appended up to the largest cut
//! point that fits the size limit, and an OPT is added when the query had one.
//!
//! The stored bytes are exactly what the full path writes: compression pointers in them
//! point at offset 12 (the question name) or into the stored bytes themselves, and the
//! question name of a hit always has the stored name's length and labels. Tests compare
//! both paths byte for byte over generated query sets.
//!
//! Not precompiled, so answered by the full path: names at or below delegations,
//! wildcard-synthesised and non-existent names, CNAME chains for other types, answers whose
//! additional section depends on another zone, and every non-IN, non-QUERY or meta query.

use std::sync::Arc;

use crate::answer::{Cuts, Outcome, Responder, Transport};
use crate::catalog::Catalog;
use crate::name::Name;
use crate::rr::{class, rtype};
use crate::wire::{flags, opcode, parse_query, Compressor, Query, HEADER_LEN};
use crate::zone::{Cut, Zone};

/// One precompiled response body.
#[derive(Debug, Clone)]
pub struct Prebuilt {
    /// Header flags the full path sets (AA), without QR/opcode/RD/CD.
    flags: u16,
    rcode: u16,
    answers: u16,
    authority: u16,
    /// Answer, authority and all additional records as written after the question.
    tail: Box<[u8]>,
    /// Cut points into `tail`: (length, additional count), increasing. The first is the
    /// end of the authority section.
    cuts: Box<[(u16, u16)]>,
}

/// The precompiled responses of one name.
#[derive(Debug, Clone, Default)]
pub struct NodeAnswers {
    /// By query type, sorted; every type present at the name is listed, `None` meaning
    /// "answered by the full path".
    by_type: Vec<(u16, Option<Prebuilt>)>,
    /// The NODATA response, for names without a CNAME.
    nodata: Option<Prebuilt>,
    /// Type answering ANY (RFC 8482: the first RRset).
    any: Option<u16>,
}

impl NodeAnswers {
    fn get(&self, qtype: u16) -> Option<&Prebuilt> {
        let t = if qtype == rtype::ANY {
            self.any?
        } else {
            qtype
        };
        match self.by_type.binary_search_by_key(&t, |(t, _)| *t) {
            Ok(i) => self.by_type[i].1.as_ref(),
            Err(_) => self.nodata.as_ref(),
        }
    }
}

/// Query types the full path treats specially before looking at zone data.
fn is_special(qtype: u16) -> bool {
    matches!(
        qtype,
        0 | rtype::OPT
            | rtype::TSIG
            | rtype::TKEY
            | rtype::MAILA
            | rtype::MAILB
            | rtype::AXFR
            | rtype::IXFR
    )
}

/// Answers from precompiled data, or `None` when the full path must answer.
pub fn answer(
    responder: &Responder,
    catalog: &Catalog,
    q: &Query<'_>,
    transport: Transport,
    buf: &mut Vec<u8>,
) -> Option<Outcome> {
    if q.opcode != opcode::QUERY || q.qclass != class::IN || is_special(q.qtype) {
        return None;
    }
    let zone = catalog.find(q.qname())?;
    let pre = zone.node(q.qname())?.prebuilt.get()?.get(q.qtype)?;

    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    let head = HEADER_LEN + q.question.len();
    let room = responder.limit(q, transport) - opt_len;
    let fl = flags::QR | ((q.opcode as u16) << 11) | q.copy_flags | pre.flags | (pre.rcode & 0xf);
    buf.clear();
    buf.extend_from_slice(&q.id.to_be_bytes());
    // The longest cut that fits; none fits when answer and authority alone are too big.
    let fit = pre
        .cuts
        .iter()
        .rev()
        .find(|(len, _)| head + *len as usize <= room);
    let (an, ns, ar, body) = match fit {
        Some(&(len, ar)) => (pre.answers, pre.authority, ar, &pre.tail[..len as usize]),
        None => (0, 0, 0, &pre.tail[..0]),
    };
    let truncated = fit.is_none();
    let fl = if truncated { fl | flags::TC } else { fl };
    let ar = ar + q.edns.is_some() as u16;
    buf.extend_from_slice(&fl.to_be_bytes());
    for c in [1, an, ns, ar] {
        buf.extend_from_slice(&c.to_be_bytes());
    }
    buf.extend_from_slice(q.question);
    buf.extend_from_slice(body);
    if let Some(e) = q.edns {
        // Same OPT as the full path writes: our payload, version 0, DO echoed.
        buf.push(0);
        buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        buf.extend_from_slice(&responder.config.max_udp_payload.to_be_bytes());
        buf.extend_from_slice(&[
            (pre.rcode >> 4) as u8,
            0,
            if e.dnssec_ok { 0x80 } else { 0 },
            0,
            0,
            0,
        ]);
    }
    Some(Outcome::Reply {
        rcode: pre.rcode,
        truncated,
    })
}

/// Computes the precompiled answers of every name of `zone` that can have them and
/// attaches them to its nodes. The zone may already be serving: a node without answers is
/// served by the full path, so this runs in the background after a load and the zone
/// answers from its first moment. `other_origins` are the apexes of the other served zones:
/// an answer whose additional section could reach into one of them is left to the full
/// path.
pub fn precompile(zone: &Arc<Zone>, responder: &Responder, other_origins: &[Name]) {
    let mut catalog = Catalog::new();
    catalog.insert(zone.clone());
    let nested: Vec<&Name> = other_origins
        .iter()
        .filter(|o| o.is_subdomain_of(&zone.origin) && !o.eq_ignore_case(&zone.origin))
        .collect();
    // Spread the work over the cores: the nodes are independent and the zone is shared
    // read-only.
    let nodes: Vec<&crate::zone::Node> = zone.nodes().filter(|n| n.cut == Cut::None).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let chunk = nodes.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for part in nodes.chunks(chunk) {
            let catalog = &catalog;
            let nested = &nested;
            scope.spawn(move || precompile_nodes(part, responder, catalog, nested));
        }
    });
}

/// Precompiles the answers of some nodes.
fn precompile_nodes(
    nodes: &[&crate::zone::Node],
    responder: &Responder,
    catalog: &Catalog,
    nested: &[&Name],
) {
    let mut pkt = Vec::with_capacity(300);
    let mut buf = Vec::with_capacity(4096);
    let mut comp = Compressor::default();
    for node in nodes {
        let key = node.owner.to_lowercase();
        if nested.iter().any(|o| key.is_subdomain_of(o)) {
            continue; // answered from the nested zone
        }
        let has_cname = node.rrset(rtype::CNAME).is_some();
        let mut answers = NodeAnswers {
            any: node.rrsets.first().map(|s| s.rtype),
            ..Default::default()
        };
        // An unused type code stands for "any type this name lacks". NODATA answers are
        // precompiled only for empty non-terminals (where they are the only answer): for
        // other names they are rare, and skipping them saves a third of the load time and
        // memory of a large zone.
        let nodata_probe = 65534u16;
        let types = node
            .rrsets
            .iter()
            .map(|s| s.rtype)
            .chain((!has_cname && node.rrsets.is_empty()).then_some(nodata_probe));
        for t in types {
            if is_special(t) {
                answers.by_type.push((t, None));
                continue;
            }
            let pre = build_one(
                responder, catalog, &key, t, nested, &mut pkt, &mut buf, &mut comp,
            );
            if t == nodata_probe {
                answers.nodata = pre;
            } else {
                answers.by_type.push((t, pre));
            }
        }
        answers.by_type.sort_by_key(|(t, _)| *t);
        if answers.by_type.iter().any(|(_, p)| p.is_some()) || answers.nodata.is_some() {
            // Set once: a second precompile of the same snapshot would compute the same.
            let _ = node.prebuilt.set(Box::new(answers));
        }
    }
}

/// Runs the full path for (name, type) and keeps the sections after the question.
#[allow(clippy::too_many_arguments)]
fn build_one(
    responder: &Responder,
    catalog: &Catalog,
    key: &Name,
    qtype: u16,
    nested: &[&Name],
    pkt: &mut Vec<u8>,
    buf: &mut Vec<u8>,
    comp: &mut Compressor,
) -> Option<Prebuilt> {
    pkt.clear();
    pkt.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    pkt.extend_from_slice(key.as_wire());
    pkt.extend_from_slice(&qtype.to_be_bytes());
    pkt.extend_from_slice(&class::IN.to_be_bytes());
    let q = parse_query(pkt).ok()?;
    let mut cuts: Option<Cuts> = None;
    // TCP without EDNS: no size limit short of 64 KiB, no OPT; the per-query limit is
    // applied later with the cut points.
    let outcome = responder.answer(catalog, &q, Transport::Tcp, buf, comp, Some(&mut cuts));
    let Outcome::Reply {
        rcode,
        truncated: false,
    } = outcome
    else {
        return None;
    };
    let cuts = cuts?;
    let head = HEADER_LEN + q.question.len();
    let tail = &buf[head..];
    if tail.len() > u16::MAX as usize {
        return None;
    }
    // Additional targets inside a nested zone come from that zone: leave such answers to
    // the full path (nested zones are rare; being conservative costs only speed).
    if !nested.is_empty() && matches!(qtype, rtype::SRV | rtype::MX | rtype::NS) {
        return None;
    }
    let fl = u16::from_be_bytes([buf[2], buf[3]]);
    Some(Prebuilt {
        flags: fl & (flags::AA | flags::AD),
        rcode,
        answers: u16::from_be_bytes([buf[6], buf[7]]),
        authority: u16::from_be_bytes([buf[8], buf[9]]),
        tail: tail.into(),
        cuts: cuts
            .iter()
            .map(|&(len, ar)| ((len - head) as u16, ar))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::AnswerConfig;
    use crate::rr::Record;

    fn rec(owner: &str, t: u16, rdata: Vec<u8>) -> Record {
        Record {
            owner: Name::parse(owner, None).unwrap(),
            rtype: t,
            class: class::IN,
            ttl: 30,
            rdata,
            source: None,
        }
    }

    fn name(s: &str) -> Vec<u8> {
        Name::parse(s, None).unwrap().as_wire().to_vec()
    }

    fn srv(port: u16, target: &str) -> Vec<u8> {
        let mut v = vec![0, 0, 0, 0];
        v.extend_from_slice(&port.to_be_bytes());
        v.extend(name(target));
        v
    }

    /// A zone with clusters, CNAMEs, a wildcard, a delegation and an ENT.
    fn zone_records(clusters: usize) -> Vec<Record> {
        let mut soa = name("ns1.z.test.");
        soa.extend(name("h.z.test."));
        for n in [1u32, 3600, 600, 86400, 60] {
            soa.extend_from_slice(&n.to_be_bytes());
        }
        let mut rs = vec![
            rec("z.test.", rtype::SOA, soa),
            rec("z.test.", rtype::NS, name("ns1.z.test.")),
            rec("ns1.z.test.", rtype::A, vec![127, 0, 0, 1]),
            rec("www.z.test.", rtype::CNAME, name("m0.c0.z.test.")),
            rec("ext.z.test.", rtype::CNAME, name("elsewhere.example.")),
            rec("*.wild.z.test.", rtype::TXT, b"\x03abc".to_vec()),
            rec("sub.z.test.", rtype::NS, name("ns.sub.z.test.")),
            rec("ns.sub.z.test.", rtype::A, vec![10, 9, 9, 9]),
            rec("outside.z.test.", rtype::SRV, srv(1, "host.other.test.")),
        ];
        for c in 0..clusters {
            let members = if c % 4 == 0 { 5 } else { 3 };
            for owner in [
                "_etcd-server-ssl._tcp",
                "_etcd-server._tcp",
                "_etcd-client-ssl._tcp",
                "_etcd-client._tcp",
            ] {
                for m in 0..members {
                    rs.push(rec(
                        &format!("{owner}.c{c}.z.test."),
                        rtype::SRV,
                        srv(2380, &format!("m{m}.c{c}.z.test.")),
                    ));
                }
            }
            for m in 0..members {
                rs.push(rec(
                    &format!("m{m}.c{c}.z.test."),
                    rtype::A,
                    vec![10, (c >> 8) as u8, c as u8, m as u8],
                ));
                rs.push(rec(
                    &format!("m{m}.c{c}.z.test."),
                    rtype::AAAA,
                    [
                        0xfdu8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, c as u8, 0, m as u8,
                    ]
                    .to_vec(),
                ));
            }
        }
        rs
    }

    fn query(name_text: &str, qtype: u16, edns: Option<(u16, bool)>, id: u16) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
        p.extend(Name::parse(name_text, None).unwrap().as_wire());
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        if let Some((size, dnssec_ok)) = edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    /// Random case on every letter of a name.
    fn random_case(s: &str, seed: &mut u64) -> String {
        s.chars()
            .map(|c| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                if *seed & 1 == 1 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect()
    }

    /// The benchmark's zone shapes: one 3-member cluster, and 10,000 clusters (every 4th
    /// with 5 members, ~210k records) sampled.
    #[test]
    fn fast_path_equals_full_path_byte_for_byte() {
        let responder = Responder::new(AnswerConfig::default());
        for clusters in [1usize, 10_000] {
            let origin = Name::parse("z.test.", None).unwrap();
            let (zone, _) = Zone::build(&origin, zone_records(clusters)).unwrap();
            let zone = Arc::new(zone);
            precompile(&zone, &responder, std::slice::from_ref(&origin));
            let mut names: Vec<String> = zone.nodes().map(|n| n.owner.to_string()).collect();
            names.sort();
            // Every name of the small zone; about 600 spread over the large one.
            let step = (names.len() / 600).max(1);
            let mut names: Vec<String> = names.into_iter().step_by(step).collect();
            names.extend(
                [
                    "nx.z.test.",
                    "a.b.wild.z.test.",
                    "deep.sub.z.test.",
                    "nope.c0.z.test.",
                    "other.test.",
                ]
                .map(String::from),
            );
            let mut catalog = Catalog::new();
            catalog.insert(zone);
            let (mut b1, mut b2) = (Vec::new(), Vec::new());
            let mut comp = Compressor::default();
            let mut seed = 0x1234_5678u64;
            let mut fast_hits = 0;
            let mut compared = 0;
            for (i, n) in names.iter().enumerate() {
                for qtype in [
                    rtype::SRV,
                    rtype::A,
                    rtype::AAAA,
                    rtype::TXT,
                    rtype::CNAME,
                    rtype::NS,
                    rtype::SOA,
                    rtype::ANY,
                    rtype::MX,
                    rtype::DS,
                ] {
                    for edns in [
                        None,
                        Some((512, false)),
                        Some((1232, true)),
                        Some((4096, false)),
                        Some((100, false)),
                    ] {
                        for transport in [Transport::Udp, Transport::Tcp] {
                            let qn = random_case(n, &mut seed);
                            let pkt = query(&qn, qtype, edns, i as u16);
                            let parsed = parse_query(&pkt).unwrap();
                            if answer(&responder, &catalog, &parsed, transport, &mut b1).is_some() {
                                fast_hits += 1;
                            }
                            responder.respond(&catalog, &pkt, transport, &mut b1, &mut comp);
                            responder.respond_full(&catalog, &pkt, transport, &mut b2, &mut comp);
                            assert_eq!(b1, b2, "{qn} type {qtype} edns {edns:?} {transport:?}");
                            compared += 1;
                        }
                    }
                }
            }
            // Most probes ask for types a name lacks (NODATA, full path); the hits are the
            // (name, type) pairs that exist.
            assert!(
                fast_hits > compared / 5,
                "fast path used for only {fast_hits} of {compared}"
            );
        }
    }
}
