//! Zone text through everything a served zone goes through: parse, build, precompile,
//! and a query for every name in the zone (and a name below each) with several types,
//! over UDP and TCP, with and without EDNS. Every answer must decode with hickory-proto,
//! and the precompiled answer must equal the one the full path builds.

#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use muster_server::answer::{Outcome, Responder, Transport};
use muster_server::catalog::Catalog;
use muster_server::name::Name;
use muster_server::rr::rtype;
use muster_server::wire::Compressor;
use muster_server::zone::Zone;
use muster_server::{fastpath, zonefile};

/// Most names queried per input, so that one input stays fast.
const MAX_NAMES: usize = 48;

/// The zone's origin: its first `$ORIGIN`, else `example.test.`.
fn origin_of(text: &str) -> Name {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|d| d.eq_ignore_ascii_case("$ORIGIN"))
                .and_then(|_| w.next())
                .and_then(|o| Name::parse(o, Some(&Name::root())).ok())
        })
        .unwrap_or_else(|| Name::parse("example.test.", None).unwrap())
}

fn query(id: u16, qname: &[u8], qtype: u16, edns: bool) -> Vec<u8> {
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

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let origin = origin_of(&text);
    let Ok(records) = zonefile::parse_str(&text, Path::new("fuzz.zone"), &origin) else {
        return;
    };
    // Type codes the zone holds, each asked for at every name.
    let mut types = vec![
        rtype::A,
        rtype::AAAA,
        rtype::SRV,
        rtype::TXT,
        rtype::MX,
        rtype::NS,
        rtype::CNAME,
        rtype::SOA,
        rtype::ANY,
        rtype::PTR,
    ];
    for r in &records {
        if !types.contains(&r.rtype) && types.len() < 24 {
            types.push(r.rtype);
        }
    }
    let Ok((zone, _warnings)) = Zone::build(&origin, records) else {
        return;
    };
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
    let mut comp = Compressor::default();
    let mut run = |fast_path: bool| {
        for name in &names {
            for &t in &types {
                for edns in [false, true] {
                    for transport in [Transport::Udp, Transport::Tcp] {
                        let q = query(0x1234, name, t, edns);
                        let out =
                            responder.respond_full(&catalog, &q, transport, &mut full, &mut comp);
                        if !matches!(out, Outcome::Reply { .. }) {
                            continue;
                        }
                        decode("full path", &full);
                        if fast_path {
                            let out2 =
                                responder.respond(&catalog, &q, transport, &mut fast, &mut comp);
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
});
