//! The real `dig` (BIND 9.18) against the real musterd binary, on the zones in
//! tests/e2e/dig/: what an operator sees, checked line by line, plus a byte-level check
//! that SRV targets leave the server uncompressed (RFC 2782; Go's resolver, and so etcd,
//! rejects a compressed target with "cannot unmarshal DNS message").
//!
//! Covers the authoritative-server checklist (docs/dns-answer-rules.md) §1.1 (rcodes,
//! AA/RA/RD, NXDOMAIN, NODATA, empty non-terminals, negative TTL, REFUSED), §1.4 (EDNS
//! payload, truncation), §1.7 (case) and §1.9 (SRV glue).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::RData;
use muster_tests::query::{wire_name, Query};
use muster_tests::{
    metric, require_program, run, tcp_exchange, udp_exchange, workspace_root, Musterd,
};

/// The three SRV targets of both etcd clusters in example.test.zone, with their addresses.
const TARGETS: [(&str, &str, &str); 3] = [
    ("infra0.example.test.", "10.0.0.10", "fd00::10"),
    ("infra1.example.test.", "10.0.0.11", "fd00::11"),
    ("infra2.example.test.", "10.0.0.12", "fd00::12"),
];

/// The SOA of example.test. as dig prints its rdata.
const SOA_EXAMPLE: &str = "ns1.example.test. hostmaster.example.test. 2026112201 3600 600 86400 60";
/// The SOA of neg.test. as dig prints its rdata.
const SOA_NEG: &str = "ns1.neg.test. hostmaster.neg.test. 7 3600 600 86400 3600";

fn zone_path(file: &str) -> PathBuf {
    workspace_root().join("tests/e2e/dig").join(file)
}

/// musterd serving example.test. and neg.test. from tests/e2e/dig/, or `None` (test
/// skipped) when dig is not installed.
fn server() -> Option<Musterd> {
    if !require_program("dig") {
        return None;
    }
    let example = zone_path("example.test.zone");
    let neg = zone_path("neg.test.zone");
    Some(Musterd::start(&[
        ("example.test.", &example),
        ("neg.test.", &neg),
    ]))
}

/// One resource record as dig prints it: `owner TTL class type rdata`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rr {
    owner: String,
    ttl: u32,
    class: String,
    rtype: String,
    data: String,
}

impl Rr {
    fn parse(line: &str) -> Rr {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(f.len() >= 5, "short record line {line:?}");
        Rr {
            owner: f[0].to_string(),
            ttl: f[1]
                .parse()
                .unwrap_or_else(|_| panic!("no TTL in {line:?}")),
            class: f[2].to_string(),
            rtype: f[3].to_string(),
            // Runs of blanks inside the rdata are normalised to one space.
            data: f[4..].join(" "),
        }
    }

    /// (lower-case owner, type, rdata): what the record says, whatever the owner's case.
    fn key(&self) -> (String, String, String) {
        (
            self.owner.to_ascii_lowercase(),
            self.rtype.clone(),
            self.data.clone(),
        )
    }
}

/// One dig reply, parsed from `+noall +comments +question +answer +authority +additional`.
#[derive(Debug, Default)]
struct Reply {
    /// The whole output, for failure messages.
    raw: String,
    status: String,
    flags: BTreeSet<String>,
    /// Header counts: QUERY, ANSWER, AUTHORITY, ADDITIONAL (OPT included).
    counts: [u16; 4],
    /// The server's UDP payload size from the OPT record, if there was one.
    edns_udp: Option<u16>,
    question: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
}

impl Reply {
    fn parse(raw: String) -> Reply {
        let answers = raw.matches(";; Got answer:").count();
        assert_eq!(answers, 1, "expected exactly one reply from dig:\n{raw}");
        let mut r = Reply::default();
        let mut section = "";
        for line in raw.lines() {
            if let Some(rest) = line.strip_prefix(";; ->>HEADER<<- ") {
                r.status = rest
                    .split("status: ")
                    .nth(1)
                    .and_then(|s| s.split(',').next())
                    .unwrap_or_default()
                    .to_string();
            } else if let Some(rest) = line.strip_prefix(";; flags:") {
                let (flags, counts) = rest.split_once(';').expect("flags; counts");
                r.flags = flags.split_whitespace().map(str::to_string).collect();
                for (i, label) in ["QUERY: ", "ANSWER: ", "AUTHORITY: ", "ADDITIONAL: "]
                    .iter()
                    .enumerate()
                {
                    r.counts[i] = counts
                        .split(label)
                        .nth(1)
                        .and_then(|s| s.split(',').next())
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or_else(|| panic!("no {label} in {line:?}"));
                }
            } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
                r.edns_udp = rest
                    .split("udp: ")
                    .nth(1)
                    .and_then(|s| s.trim().parse().ok());
            } else if line.starts_with(";; ") && line.ends_with(" SECTION:") {
                section = if line.contains("QUESTION") {
                    "question"
                } else if line.contains("ANSWER") {
                    "answer"
                } else if line.contains("AUTHORITY") {
                    "authority"
                } else if line.contains("ADDITIONAL") {
                    "additional"
                } else {
                    ""
                };
            } else if line.trim().is_empty() {
                section = "";
            } else if section == "question" {
                r.question.push(
                    line.trim_start_matches(';')
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            } else if !line.starts_with(';') {
                let rr = Rr::parse(line);
                match section {
                    "answer" => r.answer.push(rr),
                    "authority" => r.authority.push(rr),
                    "additional" => r.additional.push(rr),
                    _ => panic!("record outside a section: {line:?}\n{raw}"),
                }
            }
        }
        assert!(!r.status.is_empty(), "no header in dig output:\n{raw}");
        r.raw = raw;
        r
    }

    fn has_flag(&self, f: &str) -> bool {
        self.flags.contains(f)
    }

    /// Asserts an authoritative negative answer: `status`, AA, no RA, empty answer, and
    /// exactly the zone's SOA in authority with the negative TTL.
    fn assert_negative(&self, status: &str, apex: &str, soa: &str, ttl: u32) {
        assert_eq!(self.status, status, "{}", self.raw);
        assert!(self.has_flag("aa"), "AA must be set:\n{}", self.raw);
        assert!(!self.has_flag("ra"), "RA must not be set:\n{}", self.raw);
        assert!(!self.has_flag("tc"), "{}", self.raw);
        assert!(self.answer.is_empty(), "{}", self.raw);
        // Compared without case: a server may compress the SOA's names against a
        // mixed-case question, which changes their case but not what they name.
        let got: Vec<Rr> = self
            .authority
            .iter()
            .map(|a| Rr {
                owner: a.owner.to_ascii_lowercase(),
                data: a.data.to_ascii_lowercase(),
                ..a.clone()
            })
            .collect();
        assert_eq!(
            got,
            vec![Rr {
                owner: apex.into(),
                ttl,
                class: "IN".into(),
                rtype: "SOA".into(),
                data: soa.into(),
            }],
            "authority must be exactly the SOA with TTL min(SOA TTL, MINIMUM):\n{}",
            self.raw
        );
    }
}

/// Runs dig against `server` and parses the reply. Every query is bounded: 2 s, one try.
fn dig(server: &Musterd, args: &[&str]) -> Reply {
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string()])
        .args([
            "+noall",
            "+comments",
            "+question",
            "+answer",
            "+authority",
            "+additional",
            "+time=2",
            "+tries=1",
        ])
        .args(args);
    let (_, out, err) = run(&mut cmd);
    Reply::parse(format!("{out}{err}"))
}

#[test]
fn srv_answer_carries_a_and_aaaa_for_every_target() {
    let Some(server) = server() else { return };
    for transport in ["+notcp", "+tcp"] {
        for (service, ports) in [
            ("_etcd-server-ssl._tcp.example.test.", [2380, 2381, 2382]),
            ("_etcd-client-ssl._tcp.example.test.", [2379, 2379, 2379]),
        ] {
            let r = dig(&server, &[transport, service, "SRV"]);
            let raw = &r.raw;
            assert_eq!(r.status, "NOERROR", "{raw}");
            assert!(
                r.has_flag("qr") && r.has_flag("aa"),
                "AA must be set: {raw}"
            );
            assert!(!r.has_flag("ra"), "RA must not be set: {raw}");
            assert!(r.has_flag("rd"), "RD is copied from the query: {raw}");
            assert!(!r.has_flag("tc"), "{raw}");
            assert_eq!(r.question, [format!("{service} IN SRV")], "{raw}");

            let got: BTreeSet<Rr> = r.answer.iter().cloned().collect();
            let want: BTreeSet<Rr> = TARGETS
                .iter()
                .zip(ports)
                .map(|((target, _, _), port)| Rr {
                    owner: service.into(),
                    ttl: 30,
                    class: "IN".into(),
                    rtype: "SRV".into(),
                    data: format!("0 0 {port} {target}"),
                })
                .collect();
            assert_eq!(got, want, "{transport} {service}: answer\n{raw}");
            assert_eq!(r.answer.len(), 3, "no duplicates: {raw}");

            // Every target's A and AAAA, each exactly once, nothing that is not an address.
            for (target, v4, v6) in TARGETS {
                for (rtype, data) in [("A", v4), ("AAAA", v6)] {
                    let n = r
                        .additional
                        .iter()
                        .filter(|a| a.owner == target && a.rtype == rtype && a.data == data)
                        .count();
                    assert_eq!(
                        n, 1,
                        "{transport} {service}: {target} {rtype} {data} should be in the \
                         additional section once:\n{raw}"
                    );
                }
            }
            assert!(
                r.additional
                    .iter()
                    .all(|a| a.rtype == "A" || a.rtype == "AAAA"),
                "{raw}"
            );
            assert_eq!(r.edns_udp, Some(1232), "{raw}");
        }
    }
    // RD is copied, not invented.
    let r = dig(
        &server,
        &["+norec", "_etcd-server-ssl._tcp.example.test.", "SRV"],
    );
    assert!(
        r.has_flag("aa") && !r.has_flag("rd") && !r.has_flag("ra"),
        "{}",
        r.raw
    );
}

#[test]
fn nxdomain_carries_the_soa_with_the_negative_ttl() {
    let Some(server) = server() else { return };
    for transport in ["+notcp", "+tcp"] {
        // SOA TTL 300 > MINIMUM 60: the negative TTL is 60.
        for (qname, qtype) in [
            ("nope.example.test.", "A"),
            ("nope.example.test.", "SRV"),
            ("_etcd-server._tcp.example.test.", "SRV"),
            ("below.infra0.example.test.", "AAAA"),
            ("d.a.b.c.example.test.", "TXT"),
        ] {
            dig(&server, &[transport, qname, qtype]).assert_negative(
                "NXDOMAIN",
                "example.test.",
                SOA_EXAMPLE,
                60,
            );
        }
        // SOA TTL 20 < MINIMUM 3600: the negative TTL is 20.
        dig(&server, &[transport, "nope.neg.test.", "A"]).assert_negative(
            "NXDOMAIN",
            "neg.test.",
            SOA_NEG,
            20,
        );
    }
}

#[test]
fn nodata_and_empty_non_terminals() {
    let Some(server) = server() else { return };
    for transport in ["+notcp", "+tcp"] {
        for (qname, qtype) in [
            // Names with data, not of this type.
            ("infra0.example.test.", "MX"),
            ("infra0.example.test.", "TXT"),
            ("_etcd-server-ssl._tcp.example.test.", "A"),
            ("example.test.", "TXT"),
            // Empty non-terminals: they exist only because of names below them (RFC 8020).
            ("_tcp.example.test.", "SRV"),
            ("c.example.test.", "A"),
            ("b.c.example.test.", "TXT"),
        ] {
            dig(&server, &[transport, qname, qtype]).assert_negative(
                "NOERROR",
                "example.test.",
                SOA_EXAMPLE,
                60,
            );
        }
        dig(&server, &[transport, "ns1.neg.test.", "TXT"]).assert_negative(
            "NOERROR",
            "neg.test.",
            SOA_NEG,
            20,
        );
    }
}

#[test]
fn edns_payload_is_capped_at_1232_and_plain_dns_at_512() {
    let Some(server) = server() else { return };
    // Whatever the client offers, the server advertises its own limit (1232).
    for bufsize in [
        "+bufsize=0",
        "+bufsize=100",
        "+bufsize=512",
        "+bufsize=1232",
        "+bufsize=4096",
    ] {
        let r = dig(&server, &[bufsize, "infra0.example.test.", "A"]);
        assert_eq!(r.status, "NOERROR", "{bufsize}: {}", r.raw);
        assert_eq!(r.edns_udp, Some(1232), "{bufsize}: {}", r.raw);
        assert_eq!(r.answer.len(), 1, "{bufsize}: {}", r.raw);
    }
    // Without EDNS there is no OPT in the reply.
    let r = dig(&server, &["+noedns", "infra0.example.test.", "A"]);
    assert_eq!(r.edns_udp, None, "{}", r.raw);
    assert_eq!(
        r.counts[3], 0,
        "no OPT without EDNS in the query: {}",
        r.raw
    );
    assert!(!r.raw.contains("OPT PSEUDOSECTION"), "{}", r.raw);
    assert_eq!(r.answer.len(), 1, "{}", r.raw);

    // medium.example.test. TXT is ~650 bytes: it fits min(client, 1232) only when the
    // client offers at least that much; otherwise TC with an empty answer.
    for (args, fits) in [
        (&["+noedns"][..], false),
        (&["+bufsize=100"], false),
        (&["+bufsize=512"], false),
        (&["+bufsize=1232"], true),
        (&["+bufsize=4096"], true),
    ] {
        let mut a = vec!["+ignore"];
        a.extend_from_slice(args);
        a.extend(["medium.example.test.", "TXT"]);
        let r = dig(&server, &a);
        assert_eq!(r.status, "NOERROR", "{args:?}: {}", r.raw);
        assert!(r.has_flag("aa"), "{args:?}: {}", r.raw);
        if fits {
            assert!(!r.has_flag("tc"), "{args:?}: {}", r.raw);
            assert_eq!(r.answer.len(), 3, "{args:?}: {}", r.raw);
        } else {
            assert!(r.has_flag("tc"), "{args:?}: {}", r.raw);
            assert!(
                r.answer.is_empty() && r.counts[1] == 0,
                "{args:?}: a truncated reply carries no partial RRset:\n{}",
                r.raw
            );
        }
    }

    // 12 SRV records fit in 512 bytes, their 24 address records do not: the server drops
    // additional data, which must not set TC (RFC 2181 §9).
    let r = dig(
        &server,
        &["+ignore", "+bufsize=512", "_many._tcp.example.test.", "SRV"],
    );
    assert!(
        !r.has_flag("tc"),
        "cutting only additional data must not set TC:\n{}",
        r.raw
    );
    assert_eq!(r.answer.len(), 12, "{}", r.raw);
    // As much glue as fits, not none: the answer takes ~480 of the 512 octets, which
    // leaves room for one address record (20 octets with a compressed owner). Each one
    // is the address of a target in the answer, as the zone has it (hNN -> 10.1.0.N).
    assert!(
        !r.additional.is_empty() && r.additional.len() < 24,
        "glue that fits must be sent:\n{}",
        r.raw
    );
    let targets: BTreeSet<&str> = r
        .answer
        .iter()
        .map(|a| a.data.rsplit(' ').next().unwrap_or_default())
        .collect();
    for g in &r.additional {
        let n: u32 = g.owner[1..3].parse().expect("hNN owner");
        assert!(
            targets.contains(g.owner.as_str()) && g.rtype == "A" && g.data == format!("10.1.0.{n}"),
            "{g:?} is not the address of an answer's target:\n{}",
            r.raw
        );
    }
}

#[test]
fn large_rrset_truncates_over_udp_and_is_complete_over_tcp() {
    let Some(server) = server() else { return };
    let want: BTreeSet<String> = (b'a'..=b'l')
        .map(|c| format!("\"{}\"", char::from(c).to_string().repeat(240)))
        .collect();

    for bufsize in ["+bufsize=1232", "+bufsize=4096", "+noedns"] {
        let r = dig(&server, &["+ignore", bufsize, "big.example.test.", "TXT"]);
        assert_eq!(r.status, "NOERROR", "{bufsize}: {}", r.raw);
        assert!(
            r.has_flag("aa") && r.has_flag("tc"),
            "{bufsize}: TC expected:\n{}",
            r.raw
        );
        assert!(
            r.answer.is_empty() && r.counts[1] == 0,
            "{bufsize}: a truncated reply carries an empty answer, never a partial RRset:\n{}",
            r.raw
        );
    }

    let r = dig(&server, &["+tcp", "big.example.test.", "TXT"]);
    assert_eq!(r.status, "NOERROR", "{}", r.raw);
    assert!(r.has_flag("aa") && !r.has_flag("tc"), "{}", r.raw);
    let got: BTreeSet<String> = r.answer.iter().map(|a| a.data.clone()).collect();
    assert_eq!(r.answer.len(), 12, "{}", r.raw);
    assert_eq!(got, want, "{}", r.raw);

    // What dig does by default: UDP, sees TC, retries over TCP and gets everything.
    let mut cmd = Command::new("dig");
    cmd.arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string()])
        .args(["+time=2", "+tries=1", "big.example.test.", "TXT"]);
    let (_, out, err) = run(&mut cmd);
    assert!(
        out.contains("Truncated, retrying in TCP mode"),
        "{out}{err}"
    );
    assert!(out.contains("ANSWER: 12,"), "{out}{err}");
}

#[test]
fn mixed_case_qname_is_echoed() {
    let Some(server) = server() else { return };
    for transport in ["+notcp", "+tcp"] {
        let lower = dig(&server, &[transport, "infra0.example.test.", "A"]);
        let mixed = dig(&server, &[transport, "InFrA0.ExAmPlE.TeSt.", "A"]);
        assert_eq!(mixed.status, "NOERROR", "{}", mixed.raw);
        assert!(mixed.has_flag("aa"), "{}", mixed.raw);
        assert_eq!(
            mixed.question,
            ["InFrA0.ExAmPlE.TeSt. IN A"],
            "the question is echoed byte for byte:\n{}",
            mixed.raw
        );
        let keys = |r: &Reply| r.answer.iter().map(Rr::key).collect::<Vec<_>>();
        assert_eq!(keys(&mixed), keys(&lower), "same data:\n{}", mixed.raw);

        // SRV targets are data: they keep the zone's case, whatever the query's case.
        let r = dig(
            &server,
            &[transport, "_ETCD-Server-SSL._TCP.Example.Test.", "SRV"],
        );
        assert_eq!(
            r.question,
            ["_ETCD-Server-SSL._TCP.Example.Test. IN SRV"],
            "{}",
            r.raw
        );
        let targets: BTreeSet<String> = r
            .answer
            .iter()
            .map(|a| a.data.rsplit(' ').next().unwrap_or_default().to_string())
            .collect();
        let want: BTreeSet<String> = TARGETS.iter().map(|t| t.0.to_string()).collect();
        assert_eq!(targets, want, "{}", r.raw);
        assert_eq!(r.additional.len(), 6, "{}", r.raw);

        // Negative answers do not depend on case either.
        dig(&server, &[transport, "NoPe.ExAmPlE.tEsT.", "A"]).assert_negative(
            "NXDOMAIN",
            "example.test.",
            SOA_EXAMPLE,
            60,
        );
        dig(&server, &[transport, "_TCP.example.TEST.", "SRV"]).assert_negative(
            "NOERROR",
            "example.test.",
            SOA_EXAMPLE,
            60,
        );
    }
}

#[test]
fn names_outside_the_zones_are_refused() {
    let Some(server) = server() else { return };
    for transport in ["+notcp", "+tcp"] {
        for (qname, qtype) in [
            ("www.example.org.", "A"),
            // The parent of both zones, and the root.
            ("test.", "SOA"),
            (".", "NS"),
            // Shares a suffix with example.test. as a string, not as labels.
            ("xexample.test.", "A"),
            ("infra0.xexample.test.", "A"),
        ] {
            let r = dig(&server, &[transport, qname, qtype]);
            assert_eq!(
                r.status, "REFUSED",
                "{transport} {qname} {qtype}:\n{}",
                r.raw
            );
            assert!(
                !r.has_flag("aa"),
                "REFUSED is not authoritative:\n{}",
                r.raw
            );
            assert!(!r.has_flag("ra"), "{}", r.raw);
            assert!(
                r.answer.is_empty() && r.authority.is_empty() && r.additional.is_empty(),
                "no data and no referral:\n{}",
                r.raw
            );
        }
    }
}

// ---- byte level ----------------------------------------------------------------------

/// A query for `qname` type SRV, optionally with an EDNS OPT of 1232 bytes.
fn srv_query(id: u16, qname: &str, edns: bool) -> Vec<u8> {
    let q = Query::new(qname, 33).id(id).rd();
    if edns { q.edns(1232) } else { q }.to_bytes()
}

/// The offset just past the (possibly compressed) name at `pos`.
fn skip_name(msg: &[u8], mut pos: usize) -> usize {
    loop {
        let len = msg[pos];
        match len & 0xc0 {
            0xc0 => return pos + 2,
            0x00 if len == 0 => return pos + 1,
            0x00 => pos += 1 + usize::from(len),
            _ => panic!("label type {len:#x} at {pos}"),
        }
    }
}

/// (type, rdata range) of every record in the answer section, found by walking the
/// message ourselves: a decoder that expands names would hide compression.
fn answer_rdata(msg: &[u8]) -> Vec<(u16, Range<usize>)> {
    let u16_at = |p: usize| u16::from_be_bytes([msg[p], msg[p + 1]]);
    let (qd, an) = (u16_at(4), u16_at(6));
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos) + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos);
        let rtype = u16_at(pos);
        let rdlen = usize::from(u16_at(pos + 8));
        pos += 10;
        out.push((rtype, pos..pos + rdlen));
        pos += rdlen;
    }
    assert!(pos <= msg.len(), "answer section runs past the message");
    out
}

/// Asserts that every SRV target in `resp` is written out in full, label by label,
/// with no compression pointer, and that each expected target is there.
fn assert_srv_targets_uncompressed(resp: &[u8], what: &str) {
    let srv: Vec<_> = answer_rdata(resp)
        .into_iter()
        .filter(|(t, _)| *t == 33)
        .collect();
    assert_eq!(srv.len(), 3, "{what}: 3 SRV records expected: {resp:02x?}");
    let mut seen = BTreeSet::new();
    for (_, range) in &srv {
        let rdata = &resp[range.clone()];
        let target = &rdata[6..];
        // Walk the target inside the rdata: plain labels only, ending exactly at its end.
        let mut p = 0;
        while target[p] != 0 {
            assert!(
                target[p] < 64,
                "{what}: SRV target compressed (byte {:#04x} at rdata offset {}): {rdata:02x?}",
                target[p],
                6 + p
            );
            p += 1 + usize::from(target[p]);
        }
        assert_eq!(p + 1, target.len(), "{what}: rdata length: {rdata:02x?}");
        seen.insert(target.to_vec());
    }
    for (name, _, _) in TARGETS {
        let w = wire_name(name);
        assert!(
            srv.iter()
                .any(|(_, r)| resp[r.clone()].windows(w.len()).any(|x| x == w.as_slice())),
            "{what}: {name} not found uncompressed ({:?}) in any SRV rdata",
            String::from_utf8_lossy(&w)
        );
    }
    assert_eq!(seen.len(), 3, "{what}: three distinct targets");

    // A third-party decoder agrees.
    let msg = Message::from_vec(resp).unwrap_or_else(|e| panic!("{what}: decode: {e}"));
    assert!(msg.metadata.authoritative, "{what}: AA");
    let mut targets: Vec<String> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(s) => Some(s.target.to_ascii()),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        TARGETS.iter().map(|t| t.0.to_string()).collect::<Vec<_>>(),
        "{what}"
    );
    assert_eq!(msg.additionals.len(), 6, "{what}: glue");
}

#[test]
fn srv_targets_are_uncompressed_on_the_wire() {
    if !require_program("dig") {
        return;
    }
    // The loader's debug line "answers precompiled" says when the fast path holds the
    // zone's answers; the metrics say none was refused or lost to a panic.
    let metrics = SocketAddr::from(([127, 0, 0, 1], muster_tests::free_port()));
    let example = zone_path("example.test.zone");
    let server = Musterd::start_with_env(
        &[
            "serve".to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--zone".into(),
            format!("example.test.={}", example.display()),
        ],
        &[("RUST_LOG", "info,muster_server::loader=debug".as_ref())],
    );
    let qnames = [
        "_etcd-server-ssl._tcp.example.test.",
        "_etcd-client-ssl._tcp.example.test.",
        // A mixed-case query: a server compressing targets against the question would
        // also change their case.
        "_ETCD-server-SSL._TCP.ExAmPlE.TEST.",
    ];
    for (i, qname) in qnames.iter().enumerate() {
        for edns in [false, true] {
            let q = srv_query(0x4d00 + i as u16, qname, edns);
            let what = format!("udp query {i} edns={edns}");
            let resp = udp_exchange(server.addr, &q, Duration::from_secs(2))
                .unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!(&resp[..2], &q[..2], "{what}: id");
            assert_srv_targets_uncompressed(&resp, &what);

            let what = format!("tcp query {i} edns={edns}");
            let resp = tcp_exchange(server.addr, &q);
            assert_srv_targets_uncompressed(&resp, &what);
        }
    }
    // Asked again once the fast path holds every answer of the zone (precompiled, none
    // refused, no panic): it must write targets the same way.
    server.wait_log(
        |l| {
            l.lines()
                .any(|l| l.contains("answers precompiled") && l.contains("zone=example.test."))
        },
        Duration::from_secs(10),
    );
    assert_eq!(metric(metrics, "musterd_precompile_refused_total"), 0);
    assert_eq!(
        metric(metrics, "musterd_panics_total{thread=\"precompile\"}"),
        0
    );
    let q = srv_query(0x4e00, qnames[0], true);
    let resp = udp_exchange(server.addr, &q, Duration::from_secs(2)).expect("an answer");
    assert_srv_targets_uncompressed(&resp, "udp, after precompiling");
}
