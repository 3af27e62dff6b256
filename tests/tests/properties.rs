//! The fuzz targets' invariants (fuzz/README.md), checked in every CI run: the committed
//! seed corpora replayed through them, and property tests over generated input.
//!
//! - zone text: parse, build, precompile and answer every name; every answer decodes with
//!   hickory-proto and the fast path answers byte for byte as the full path
//!   (`fuzz/fuzz_targets/common.rs`, shared with the fuzz targets); and a zone that loads
//!   round-trips through its printed form;
//! - `musterd check` never panics;
//! - packets from the network: both paths agree and every reply decodes;
//! - changesets: what decodes encodes back to the same bytes; TSIG verification is total;
//! - UPDATE messages, signed and unsigned, against a zone: all or nothing, serial
//!   monotonic, every answer decodes, copies not applied again, fast path = full path
//!   after each change (`fuzz/fuzz_targets/update_input.rs`, shared with the `update`
//!   target);
//! - BIND key files: musterd and muster-agent read the same keys, and printed key blocks
//!   read back the same (`fuzz/fuzz_targets/keyfile_input.rs`, shared with the `keyfile`
//!   target).

use std::path::{Path, PathBuf};

use muster_server::proto::name::Name;
use muster_server::proto::rr::Record;
use muster_server::proto::tsig;
use muster_server::proto::types::Rtype;
use muster_server::query::answer::{Outcome, Responder, Scratch, Transport};
use muster_server::query::{fastpath, respond};
use muster_server::zone::catalog::Catalog;
use muster_server::zone::changeset::Changeset;
use muster_server::zone::zonefile;
use muster_server::zone::Zone;
use muster_server::{check, example};
use muster_tests::workspace_root;
use proptest::prelude::*;

#[path = "../../fuzz/fuzz_targets/common.rs"]
#[allow(dead_code)]
mod common;

#[path = "../../fuzz/fuzz_targets/update_input.rs"]
mod update_input;

#[path = "../../fuzz/fuzz_targets/keyfile_input.rs"]
mod keyfile_input;

/// The zone's origin: its first `$ORIGIN`, else `example.test.` (as the `zone` target).
fn origin_of(text: &str) -> Name {
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|d| d.eq_ignore_ascii_case("$ORIGIN"))
                .and_then(|_| w.next())
                .and_then(|o| Name::parse(o, Some(&Name::root())).ok())
        })
        .unwrap_or_else(|| Name::parse("example.test.", None).expect("a valid name"))
}

/// Printed with `format_record` and parsed again, the records are the same.
fn round_trips(origin: &Name, records: &[Record]) {
    let text: String = records
        .iter()
        .map(|r| format!("{}\n", zonefile::format_record(r, None)))
        .collect();
    let again = zonefile::parse_str(&text, Path::new("printed.zone"), origin)
        .unwrap_or_else(|e| panic!("the printed zone does not parse: {e:?}\n{text}"));
    let key = |r: &Record| {
        (
            r.owner.to_lowercase(),
            r.rtype,
            r.class,
            r.ttl,
            r.rdata.clone(),
        )
    };
    let a: Vec<_> = records.iter().map(key).collect();
    let b: Vec<_> = again.iter().map(key).collect();
    assert_eq!(
        a, b,
        "records differ after printing and parsing again:\n{text}"
    );
}

/// The `zone` fuzz target's body, plus the round trip.
fn zone_invariants(text: &str) {
    let origin = origin_of(text);
    let Ok(mut records) = zonefile::parse_str(text, Path::new("fuzz.zone"), &origin) else {
        return;
    };
    round_trips(&origin, &records);
    records.retain(common::hickory_reads);
    let types: Vec<Rtype> = records.iter().map(|r| r.rtype).collect();
    if let Ok((zone, _warnings)) = Zone::build(&origin, records) {
        common::ask_everything(zone, &types);
    }
}

fn seed_files(dir: &str) -> Vec<PathBuf> {
    let dir = workspace_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn zone_seed_corpus_replays() {
    let files = seed_files("fuzz/seeds");
    assert!(files.len() >= 10, "the seed corpus is missing");
    for f in files {
        let text = String::from_utf8_lossy(&std::fs::read(&f).expect("read seed")).into_owned();
        zone_invariants(&text);
        let _ = check::check_text(None, &f, &text);
    }
}

/// The example zone and a zone with a closed completeness gate, precompiled.
fn world() -> (Responder, Catalog) {
    let responder = Responder::default();
    let mut catalog = Catalog::new();
    for (origin, text) in [
        (example::ORIGIN, example::ZONE),
        (
            "gated.test.",
            "$ORIGIN gated.test.\n$TTL 30\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n\
             @ IN NS ns1\nns1 IN A 127.0.0.1\n_etcd-server-ssl._tcp IN SRV 0 0 2380 m1\n\
             _etcd-server-ssl._tcp IN TXT \"muster-size=3\"\nm1 IN A 192.0.2.1\n",
        ),
    ] {
        let origin = Name::parse(origin, None).expect("a valid origin");
        let records =
            zonefile::parse_str(text, Path::new("z.zone"), &origin).expect("a valid zone");
        let zone = std::sync::Arc::new(Zone::build(&origin, records).expect("builds").0);
        fastpath::precompile(&zone, &responder, &[]);
        catalog.insert(zone);
    }
    (responder, catalog)
}

/// A query-shaped packet: header, a name from a small alphabet over the zones' names, a
/// type, a class, maybe an OPT record, then arbitrary trailing bytes.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let label = prop_oneof![
        Just(b"example".to_vec()),
        Just(b"gated".to_vec()),
        Just(b"test".to_vec()),
        Just(b"_etcd-server-ssl".to_vec()),
        Just(b"_tcp".to_vec()),
        Just(b"infra0".to_vec()),
        Just(b"*".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    (
        any::<[u8; 12]>(),
        proptest::collection::vec(label, 0..5),
        prop_oneof![
            Just(1u16),
            Just(28),
            Just(33),
            Just(16),
            Just(255),
            Just(6),
            any::<u16>()
        ],
        prop_oneof![Just(1u16), Just(3), any::<u16>()],
        proptest::option::of((any::<u16>(), any::<u8>(), any::<bool>())),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut header, labels, qtype, qclass, edns, tail)| {
            header[4..6].copy_from_slice(&1u16.to_be_bytes());
            header[10..12].copy_from_slice(&u16::from(edns.is_some()).to_be_bytes());
            let mut p = header.to_vec();
            for l in labels.iter().rev() {
                p.push(l.len().min(63) as u8);
                p.extend_from_slice(&l[..l.len().min(63)]);
            }
            p.push(0);
            p.extend_from_slice(&qtype.to_be_bytes());
            p.extend_from_slice(&qclass.to_be_bytes());
            if let Some((size, version, dnssec_ok)) = edns {
                p.extend_from_slice(&[0, 0, 41]);
                p.extend_from_slice(&size.to_be_bytes());
                p.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
            }
            p.extend_from_slice(&tail);
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn packets_get_the_same_decodable_reply_from_both_paths(pkt in packet()) {
        thread_local! {
            static WORLD: (Responder, Catalog) = world();
        }
        WORLD.with(|(responder, catalog)| {
            let (mut full, mut fast) = (Vec::new(), Vec::new());
            let mut scratch = Scratch::default();
            for transport in [Transport::Udp, Transport::Tcp] {
                let a = responder.respond_full(catalog, &pkt, transport, &mut full, &mut scratch);
                let b = respond::respond(responder, catalog, &pkt, transport, &mut fast, &mut scratch);
                assert_eq!(a, b, "outcomes differ for {pkt:02x?}");
                if matches!(a, Outcome::Reply { .. }) {
                    assert_eq!(fast, full, "replies differ for {pkt:02x?}");
                    hickory_proto::op::Message::from_vec(&full)
                        .unwrap_or_else(|e| panic!("reply does not decode: {e}\n{pkt:02x?}\n{full:02x?}"));
                    assert_eq!(full[..2], pkt[..2], "reply ID");
                }
            }
        });
    }

    #[test]
    fn generated_zones_answer_and_round_trip(
        owners in proptest::collection::vec("[a-z*]{1,3}(\\.[a-z]{1,3}){0,2}", 1..6),
        records in proptest::collection::vec((0usize..6, 0usize..8, any::<u8>(), 1u32..100_000), 1..24),
    ) {
        let mut text = String::from(
            "$ORIGIN p.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n",
        );
        for (o, kind, b, n) in records {
            let owner = &owners[o % owners.len()];
            let rdata = match kind {
                0 => format!("A 192.0.2.{b}"),
                1 => format!("AAAA 2001:db8::{b:x}"),
                2 => format!("SRV 0 {b} {} {}", n % 65536, owners[(o + 1) % owners.len()]),
                3 => format!("TXT \"t{b}\" \"muster-size={}\"", n % 5),
                4 => format!("CNAME {}", owners[(o + 2) % owners.len()]),
                5 => format!("MX {b} {}", owners[(o + 3) % owners.len()]),
                6 => format!("TYPE65280 \\# 2 {b:02x}{:02x}", n % 256),
                _ => format!("NS ns{b}"),
            };
            text.push_str(&format!("{owner} {n} IN {rdata}\n"));
        }
        zone_invariants(&text);
        let _ = check::check_text(None, Path::new("p.zone"), &text);
    }

    #[test]
    fn changesets_decode_total_and_round_trip(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(cs) = Changeset::decode(&data) {
            let again = cs.encode().expect("a decoded changeset encodes");
            prop_assert_eq!(Changeset::decode(&again).expect("decodes"), cs);
        }
    }

    #[test]
    fn tsig_verification_is_total(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        tsig::fuzz_verify(&data);
    }
}

proptest! {
    // Each input is up to eight messages; every question is asked once, after the last
    // (the fuzz target asks after each change): 150 inputs, about 600 messages of which
    // about 45 change the zone, take a few seconds in a debug build.
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    #[test]
    fn update_messages_keep_their_invariants(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        update_input::run(&data, update_input::Ask::AtEnd);
    }
}

/// Key-file text from the pieces key files are made of: whole `key` blocks as
/// `tsig-keygen` prints them, other statements, comments, and single tokens and bytes that
/// break them (quotes, backslashes, braces, a `/*` never closed).
fn key_file_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "key \"host1\" {\n\talgorithm hmac-sha256;\n\tsecret \"aGVsbG8gd29ybGQ=\";\n};\n",
        "key other. { algorithm HMAC-SHA512.; secret \"YWJj\"; };\n",
        "key \"a\\\"b\" { algorithm hmac-sha1; secret \" YW Jj \"; };\n",
        "options { directory \"/x\"; };\n",
        "# comment\n",
        "// comment\n",
        "/* block\n comment */",
        "key",
        "\"k\"",
        "k.",
        "{",
        "}",
        ";",
        " ",
        "\n",
        "\t",
        "algorithm",
        "secret",
        "hmac-sha256",
        "hmac-md5",
        "\"AAAA\"",
        "\"!!\"",
        "\"\"",
        "\"",
        "\\",
        "/*",
        "*/",
        "/",
        "#",
        "é",
        "port 53;",
    ]);
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn key_files_read_alike_by_server_and_agent(text in key_file_text()) {
        keyfile_input::check(&text);
    }

    #[test]
    fn key_file_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        keyfile_input::check(&String::from_utf8_lossy(&data));
    }
}
