//! Records that no zone file produced, straight into `Zone::build`: whatever it accepts
//! must answer every question of [`common::ask_everything`] with a message that decodes.
//! This is the builder's own check of record data, without the zone-file parser in front.
//!
//! Input: records one after another, each an owner selector octet, a type (an octet that
//! picks one of the structured types, or two octets of raw type code), a length octet and
//! that many octets of rdata.

#![no_main]

use libfuzzer_sys::fuzz_target;
use muster_server::proto::name::Name;
use muster_server::proto::rr::{Rclass, Rtype, Record};
use muster_server::zone::Zone;

#[path = "common.rs"]
mod common;

/// Owners below the apex `x.`: plain names, a wildcard, a delegation with glue.
const OWNERS: [&str; 8] = [
    "x.",
    "a.x.",
    "b.a.x.",
    "*.x.",
    "*.w.x.",
    "ns.x.",
    "sub.x.",
    "ns.sub.x.",
];

/// Types whose data has a structure; a selector octet below their count picks one.
const TYPES: [u16; 30] = [
    1, 2, 5, 6, 12, 13, 15, 16, 28, 33, 35, 37, 39, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 59,
    62, 63, 64, 65, 257,
];

fn name(s: &str) -> Name {
    Name::parse(s, None).unwrap()
}

fn record(owner: &str, rtype: Rtype, rdata: Vec<u8>) -> Record {
    Record {
        owner: name(owner),
        rtype,
        class: Rclass::IN,
        ttl: 300,
        rdata,
        source: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut soa = name("ns.x.").as_wire().to_vec();
    soa.extend_from_slice(name("h.x.").as_wire());
    for v in [1u32, 3600, 600, 86400, 60] {
        soa.extend_from_slice(&v.to_be_bytes());
    }
    let mut records = vec![
        record("x.", Rtype::SOA, soa),
        record("x.", Rtype::NS, name("ns.x.").as_wire().to_vec()),
        record("ns.x.", Rtype::A, vec![10, 0, 0, 1]),
        record("sub.x.", Rtype::NS, name("ns.sub.x.").as_wire().to_vec()),
    ];
    let mut rest = data;
    while let [owner, sel, tail @ ..] = rest {
        let (t, tail) = match (*sel as usize, tail) {
            (s, tail) if s < TYPES.len() => (Rtype(TYPES[s]), tail),
            (_, [hi, lo, tail @ ..]) => (Rtype::from_be_bytes([*hi, *lo]), tail),
            _ => break,
        };
        let [len, tail @ ..] = tail else { break };
        let len = (*len as usize).min(tail.len());
        let (rdata, tail) = tail.split_at(len);
        rest = tail;
        let r = record(OWNERS[*owner as usize % OWNERS.len()], t, rdata.to_vec());
        if common::hickory_reads(&r) {
            records.push(r);
        }
    }
    let types: Vec<Rtype> = records.iter().map(|r| r.rtype).collect();
    if let Ok((zone, _warnings)) = Zone::build(&name("x."), records) {
        common::ask_everything(zone, &types);
    }
});
