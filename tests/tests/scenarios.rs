//! Scenario tests: each `tests/scenarios/NAME.scn` holds zones and queries; the running
//! musterd binary answers them and the decoded answers must equal `NAME.out`.
//!
//! Format of a `.scn` file:
//! ```text
//! # comment
//! zone ORIGIN            (zone text follows, up to a line "end")
//! ...
//! end
//! query udp|tcp NAME TYPE [+edns=SIZE] [+ednsver=N] [+do] [+class=CH] [+opcode=N] [+norec]
//! ```
//! Regenerate the expected outputs with `UPDATE_GOLDEN=1 cargo test --test scenarios`
//! and review the diff: the `.out` files are the specification.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::EdnsOption;
use muster_tests::query::Query;
use muster_tests::{golden, tcp_exchange, udp_exchange, workspace_root, Musterd, TempDir};

/// A query described on a `query` line.
struct QuerySpec {
    line: String,
    tcp: bool,
    query: Query,
}

fn parse_type(s: &str) -> u16 {
    muster_server::proto::types::Rtype::from_text(s)
        .unwrap_or_else(|| panic!("unknown type {s}"))
        .to_u16()
}

/// Renders a response in a stable, reviewable text form.
fn render(resp: &[u8], sent: &[u8]) -> String {
    let mut out = String::new();
    let msg = match Message::from_vec(resp) {
        Ok(m) => m,
        Err(e) => return format!("undecodable response ({e}): {resp:02x?}\n"),
    };
    let h = &msg.metadata;
    let mut flags = Vec::new();
    if resp[2] & 0x80 != 0 {
        flags.push("qr");
    }
    if h.authoritative {
        flags.push("aa");
    }
    if h.truncation {
        flags.push("tc");
    }
    if h.recursion_desired {
        flags.push("rd");
    }
    if h.recursion_available {
        flags.push("ra");
    }
    if h.checking_disabled {
        flags.push("cd");
    }
    if h.authentic_data {
        flags.push("ad");
    }
    // hickory names extended rcode 16 BADSIG (its TSIG meaning); in a query response it
    // is BADVERS (RFC 6891 §6.1.3).
    let code: u16 = msg.response_code.into();
    let rcode = if code == 16 {
        "BADVERS".to_string()
    } else {
        format!("{:?}", msg.response_code)
    };
    // The opcode straight from the header: a response must echo the query's (RFC 1035
    // §4.1.1), including opcodes hickory has no name for.
    let opcode = (resp[2] >> 3) & 0x0f;
    let _ = writeln!(
        out,
        "opcode={opcode} rcode={rcode} flags={}",
        flags.join(" ")
    );
    assert_eq!(resp[..2], sent[..2], "response ID must match the query");
    // Z bit (0x0040) must be clear (RFC 1035 §4.1.1).
    assert_eq!(resp[3] & 0x40, 0, "Z bit set in response");
    // The question must be echoed byte-for-byte.
    let qlen = sent.len() - 12 - if sent[11] == 1 { 11 } else { 0 };
    if resp[5] == 1 {
        assert_eq!(
            &resp[12..12 + qlen],
            &sent[12..12 + qlen],
            "question not echoed verbatim"
        );
    }
    for (title, records) in [
        ("answer", &msg.answers),
        ("authority", &msg.authorities),
        ("additional", &msg.additionals),
    ] {
        if records.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{title}:");
        for r in records.iter() {
            let _ = writeln!(out, "  {r}");
        }
    }
    if let Some(edns) = &msg.edns {
        let _ = writeln!(
            out,
            "edns: version={} payload={}{}{}",
            edns.version(),
            edns.max_payload(),
            if edns.flags().dnssec_ok { " do" } else { "" },
            edns.options()
                .as_ref()
                .iter()
                .map(|(_, o)| format!(" {}", render_option(o)))
                .collect::<String>()
        );
    }
    let _ = writeln!(out, "size={}", resp.len());
    out
}

/// One EDNS option: an Extended DNS Error (RFC 8914) as `ede=CODE (Name) "text"`, which
/// hickory only shows as bytes; any other option as hickory shows it.
fn render_option(o: &EdnsOption) -> String {
    match o {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => {
            let code = u16::from_be_bytes([data[0], data[1]]);
            let name = match code {
                0 => "Other Error",
                14 => "Not Ready",
                18 => "Prohibited",
                20 => "Not Authoritative",
                21 => "Not Supported",
                _ => "?",
            };
            let text = String::from_utf8_lossy(&data[2..]);
            if text.is_empty() {
                format!("ede={code} ({name})")
            } else {
                format!("ede={code} ({name}) {text:?}")
            }
        }
        other => format!("option={other:?}"),
    }
}

fn run_scenario(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).expect("read scenario");
    let dir = TempDir::new();
    let mut zones: Vec<(String, PathBuf)> = Vec::new();
    let mut queries = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        if let Some(origin) = l.strip_prefix("zone ") {
            let mut body = String::new();
            for zl in lines.by_ref() {
                if zl.trim() == "end" {
                    break;
                }
                body.push_str(zl);
                body.push('\n');
            }
            let file = dir.write(&format!("{}.zone", zones.len()), &body);
            zones.push((origin.trim().to_string(), file));
        } else if let Some(rest) = l.strip_prefix("query ") {
            let mut words = rest.split_whitespace();
            let transport = words.next().expect("transport");
            let name = words.next().expect("name");
            let qtype = parse_type(words.next().expect("type"));
            let mut q = Query::new(name, qtype).rd();
            for opt in words {
                let (k, v) = opt.split_once('=').unwrap_or((opt, ""));
                match k {
                    "+edns" => q.edns = Some((v.parse().expect("size"), 0, false)),
                    "+ednsver" => {
                        let e = q.edns.get_or_insert((1232, 0, false));
                        e.1 = v.parse().expect("version");
                    }
                    "+do" => q.edns.get_or_insert((1232, 0, false)).2 = true,
                    "+class" => {
                        q.qclass = match v {
                            "CH" => 3,
                            "HS" => 4,
                            "NONE" => 254,
                            "ANY" => 255,
                            _ => v.parse().expect("class"),
                        }
                    }
                    "+opcode" => q.opcode = v.parse().expect("opcode"),
                    "+norec" => q.rd = false,
                    _ => panic!("{}: unknown option {opt}", path.display()),
                }
            }
            queries.push(QuerySpec {
                line: l.to_string(),
                tcp: transport == "tcp",
                query: q,
            });
        } else {
            panic!("{}: cannot read line {l:?}", path.display());
        }
    }
    let zone_args: Vec<(&str, &Path)> = zones
        .iter()
        .map(|(o, p)| (o.as_str(), p.as_path()))
        .collect();
    let server = Musterd::start(&zone_args);
    let mut actual = String::new();
    for (i, q) in queries.iter().enumerate() {
        let pkt = q.query.clone().id(0x1000 + i as u16).to_bytes();
        let resp = if q.tcp {
            Some(tcp_exchange(server.addr, &pkt))
        } else {
            udp_exchange(server.addr, &pkt, Duration::from_secs(3))
        };
        let _ = writeln!(actual, "> {}", q.line);
        match resp {
            Some(r) => actual.push_str(&render(&r, &pkt)),
            None => actual.push_str("no response\n"),
        }
        actual.push('\n');
    }
    golden::check(&path.with_extension("out"), &actual)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[test]
fn scenarios() {
    let dir = workspace_root().join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/scenarios")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "scn"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenarios in {}", dir.display());
    let failures: Vec<String> = files.iter().filter_map(|f| run_scenario(f).err()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("{} scenario files passed", files.len());
}
