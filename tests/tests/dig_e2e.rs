//! The real `dig` (BIND 9.18) against the real musterd binary: what operators see.

use std::process::Command;

use muster_tests::{require_program, run, udp_exchange, Musterd, TempDir};

const ZONE: &str = "\
$ORIGIN example.test.
$TTL 30
@   300 IN SOA ns1 hostmaster 1 3600 600 86400 60
@   300 IN NS  ns1
ns1     IN A   127.0.0.1
_etcd-server-ssl._tcp IN SRV 0 0 2380 infra0
                      IN SRV 0 0 2380 infra1
                      IN SRV 0 0 2380 infra2
infra0  IN A    10.0.0.10
infra0  IN AAAA fd00::10
infra1  IN A    10.0.0.11
infra1  IN AAAA fd00::11
infra2  IN A    10.0.0.12
infra2  IN AAAA fd00::12
";

fn big_txt() -> String {
    (0..12)
        .map(|i| {
            format!(
                "big IN TXT \"{}\"\n",
                char::from(b'a' + i).to_string().repeat(240)
            )
        })
        .collect()
}

struct Dig {
    server: Musterd,
    _dir: TempDir,
}

impl Dig {
    fn start() -> Option<Dig> {
        if !require_program("dig") {
            return None;
        }
        let dir = TempDir::new();
        let zone = dir.write("example.test.zone", &format!("{ZONE}{}", big_txt()));
        let server = Musterd::start(&[("example.test.", &zone)]);
        Some(Dig { server, _dir: dir })
    }

    /// Runs dig against the server with sections printed one record per line.
    fn dig(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("dig");
        cmd.arg(format!("@{}", self.server.addr.ip()))
            .args(["-p", &self.server.addr.port().to_string()])
            .args([
                "+noall",
                "+comments",
                "+answer",
                "+authority",
                "+additional",
                "+time=2",
                "+tries=1",
            ])
            .args(args);
        let (_, out, err) = run(&mut cmd);
        format!("{out}{err}")
    }
}

fn section<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let mut lines = Vec::new();
    let mut inside = false;
    for l in out.lines() {
        if l.starts_with(";; ") && l.ends_with("SECTION:") {
            inside = l.contains(name);
            continue;
        }
        if inside && !l.trim().is_empty() && !l.starts_with(';') {
            lines.push(l);
        }
    }
    lines
}

fn flags(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(";; flags:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn srv_with_glue_for_every_target() {
    let Some(d) = Dig::start() else { return };
    let out = d.dig(&["_etcd-server-ssl._tcp.example.test", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let f = flags(&out);
    assert!(f.contains(" aa") && !f.contains(" ra"), "flags: {f}");
    assert_eq!(section(&out, "ANSWER").len(), 3, "{out}");
    let additional = section(&out, "ADDITIONAL");
    for host in ["infra0", "infra1", "infra2"] {
        for t in ["\tA\t", "\tAAAA\t"] {
            assert!(
                additional
                    .iter()
                    .any(|l| l.starts_with(&format!("{host}.example.test.")) && l.contains(t)),
                "{host}{t}missing from additional:\n{out}"
            );
        }
    }
    // Same over TCP.
    let tcp = d.dig(&["+tcp", "_etcd-server-ssl._tcp.example.test", "SRV"]);
    assert_eq!(section(&tcp, "ADDITIONAL").len(), 6, "{tcp}");
}

#[test]
fn negative_answers() {
    let Some(d) = Dig::start() else { return };
    let out = d.dig(&["nope.example.test", "A"]);
    assert!(
        out.contains("status: NXDOMAIN") && flags(&out).contains(" aa"),
        "{out}"
    );
    let auth = section(&out, "AUTHORITY");
    assert!(
        auth.len() == 1 && auth[0].contains("\t60\tIN\tSOA\t"),
        "negative TTL min(300, 60): {out}"
    );
    let out = d.dig(&["infra0.example.test", "MX"]);
    assert!(
        out.contains("status: NOERROR") && section(&out, "ANSWER").is_empty(),
        "{out}"
    );
    assert_eq!(section(&out, "AUTHORITY").len(), 1, "{out}");
    // Empty non-terminal.
    let out = d.dig(&["_tcp.example.test", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    let out = d.dig(&["www.example.org", "A"]);
    assert!(
        out.contains("status: REFUSED") && !flags(&out).contains(" aa"),
        "{out}"
    );
}

#[test]
fn edns_sizes_truncation_and_case() {
    let Some(d) = Dig::start() else { return };
    for bufsize in ["+bufsize=512", "+bufsize=4096"] {
        let out = d.dig(&[bufsize, "infra0.example.test", "A"]);
        assert!(out.contains("udp: 1232"), "{bufsize}: {out}");
    }
    let out = d.dig(&["+noedns", "infra0.example.test", "A"]);
    assert!(!out.contains("OPT PSEUDOSECTION"), "{out}");
    // 2.9 KB TXT RRset: TC with an empty answer over UDP, complete over TCP.
    let out = d.dig(&["+ignore", "big.example.test", "TXT"]);
    assert!(flags(&out).contains(" tc"), "{out}");
    assert!(section(&out, "ANSWER").is_empty(), "{out}");
    let out = d.dig(&["+tcp", "big.example.test", "TXT"]);
    assert_eq!(section(&out, "ANSWER").len(), 12, "{out}");
    let out = d.dig(&["InFrA0.ExAmPlE.TeSt", "A"]);
    assert!(
        out.contains("InFrA0.ExAmPlE.TeSt.\t30\tIN\tA\t10.0.0.10"),
        "{out}"
    );
}

#[test]
fn srv_targets_are_not_compressed_on_the_wire() {
    let Some(d) = Dig::start() else { return };
    let mut q = vec![0x42, 0x42, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    q.extend_from_slice(b"\x10_etcd-server-ssl\x04_tcp\x07example\x04test\x00\x00\x21\x00\x01");
    let resp = udp_exchange(d.server.addr, &q, std::time::Duration::from_secs(2)).expect("answer");
    let msg = hickory_proto::op::Message::from_vec(&resp).expect("decodes");
    assert_eq!(msg.answers.len(), 3);
    // Walk the answer section: owner (compressed pointer), fixed fields, rdata.
    let mut pos = q.len();
    for i in 0..3 {
        assert_eq!(
            resp[pos] & 0xc0,
            0xc0,
            "owner of answer {i} should be a pointer"
        );
        pos += 2 + 8;
        let rdlen = u16::from_be_bytes([resp[pos], resp[pos + 1]]) as usize;
        pos += 2;
        let rdata = &resp[pos..pos + rdlen];
        let target = format!("\x06infra{i}\x07example\x04test\x00");
        assert_eq!(
            &rdata[6..],
            target.as_bytes(),
            "SRV target {i} must be uncompressed: {rdata:02x?}"
        );
        pos += rdlen;
    }
}
