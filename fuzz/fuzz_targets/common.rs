//! What the fuzz targets share: asking a built zone every question worth asking and
//! checking each answer.

use std::sync::Arc;

use muster_server::proto::rr::{Record, Rtype};
use muster_server::query::answer::{Outcome, Responder, Scratch, Transport};
use muster_server::query::fastpath;
use muster_server::zone::catalog::Catalog;
use muster_server::zone::Zone;

/// False for the records hickory-proto cannot read although they are valid DNS, which are
/// left out of the zone rather than failing the decode check: any record with empty data
/// outside an UPDATE message (hickory refuses the whole message; RFC 3597 allows `\# 0`),
/// and the private-use type 65305, which hickory reads as its ANAME draft (a domain name).
pub fn hickory_reads(r: &Record) -> bool {
    !r.rdata.is_empty() && r.rtype != Rtype(65305)
}

/// Most names queried per input, so that one input stays fast.
const MAX_NAMES: usize = 48;

fn query(id: u16, qname: &[u8], qtype: Rtype, edns: bool) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns as u8]);
    p.extend_from_slice(qname);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        // OPT: root owner, payload 4096, version 0, DO set.
        p.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0x80, 0, 0, 0]);
    }
    p
}

fn decode(what: &str, buf: &[u8]) {
    if let Err(e) = hickory_proto::op::Message::from_vec(buf) {
        panic!("{what}: the answer does not decode: {e}\n{buf:02x?}");
    }
}

/// Asks `zone` for every name in it (and a name below each) with the common types and
/// `extra_types`, over UDP and TCP, with and without EDNS; then precompiles it and asks
/// again. Every answer must decode, and the precompiled answer must equal the full
/// path's.
pub fn ask_everything(zone: Zone, extra_types: &[Rtype]) {
    let mut types = vec![
        Rtype::A,
        Rtype::AAAA,
        Rtype::SRV,
        Rtype::TXT,
        Rtype::MX,
        Rtype::NS,
        Rtype::CNAME,
        Rtype::SOA,
        Rtype::ANY,
        Rtype::PTR,
    ];
    for &t in extra_types {
        if !types.contains(&t) && types.len() < 24 {
            types.push(t);
        }
    }
    let zone = Arc::new(zone);
    let mut catalog = Catalog::new();
    catalog.insert(zone.clone());
    let responder = Responder::default();

    let mut names: Vec<Vec<u8>> = Vec::new();
    for node in zone.nodes().take(MAX_NAMES) {
        let key = node.key().to_vec();
        // A name below each: NXDOMAIN, wildcard and referral answers.
        if key.len() + 3 <= 255 {
            let mut below = vec![2, b'z', b'z'];
            below.extend_from_slice(&key);
            names.push(below);
        }
        names.push(key);
    }

    let mut full = Vec::new();
    let mut fast = Vec::new();
    let mut scratch = Scratch::default();
    let mut run = |fast_path: bool| {
        for name in &names {
            for &t in &types {
                for edns in [false, true] {
                    for transport in [Transport::Udp, Transport::Tcp] {
                        let q = query(0x1234, name, t, edns);
                        let out = responder.respond_full(
                            &catalog,
                            &q,
                            transport,
                            &mut full,
                            &mut scratch,
                        );
                        if !matches!(out, Outcome::Reply { .. }) {
                            continue;
                        }
                        decode("full path", &full);
                        if fast_path {
                            let out2 = muster_server::query::respond::respond(
                                &responder,
                                &catalog,
                                &q,
                                transport,
                                &mut fast,
                                &mut scratch,
                            );
                            assert_eq!(out, out2, "fast and full outcomes differ");
                            decode("fast path", &fast);
                            assert_eq!(fast, full, "fast and full answers differ for type {t}");
                        }
                    }
                }
            }
        }
    };
    run(false);
    fastpath::precompile(&zone, &responder, &[]);
    run(true);
}

/// Asks `patched` (through the fast path where it has answers) and `rebuilt` (the full
/// path) every name of either and a name below each, with the common types: a patched
/// version must answer byte for byte as the zone rebuilt from the same records.
pub fn same_answers(patched: &Arc<Zone>, rebuilt: &Arc<Zone>) {
    let types = [
        Rtype::A,
        Rtype::AAAA,
        Rtype::SRV,
        Rtype::TXT,
        Rtype::MX,
        Rtype::NS,
        Rtype::CNAME,
        Rtype::SOA,
        Rtype::ANY,
        Rtype(65000),
    ];
    let (mut a, mut b) = (Catalog::new(), Catalog::new());
    a.insert(patched.clone());
    b.insert(rebuilt.clone());
    let responder = Responder::default();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for zone in [patched, rebuilt] {
        for node in zone.nodes().take(MAX_NAMES) {
            let key = node.key().to_vec();
            if key.len() + 3 <= 255 {
                names.push([&[2, b'z', b'z'][..], &key].concat());
            }
            names.push(key);
        }
    }
    names.sort();
    names.dedup();
    let (mut x, mut y, mut scratch) = (Vec::new(), Vec::new(), Scratch::default());
    for name in &names {
        for &t in &types {
            for transport in [Transport::Udp, Transport::Tcp] {
                let q = query(0x1234, name, t, false);
                muster_server::query::respond::respond(
                    &responder,
                    &a,
                    &q,
                    transport,
                    &mut x,
                    &mut scratch,
                );
                responder.respond_full(&b, &q, transport, &mut y, &mut scratch);
                assert_eq!(
                    x, y,
                    "patched and rebuilt answers differ for {name:02x?} type {t}"
                );
            }
        }
    }
}
