//! Completeness gates (docs/completeness-gate.md) end to end: the running musterd withholds
//! an incomplete etcd server SRV set with NODATA and EDE 14, logs and exports each gate's
//! state, follows reloads, takes sizes from its configuration; `dig` shows the Extended
//! DNS Errors; `musterd check --config` reports gates; and stock etcd 3.4 with
//! `--discovery-srv` forms one 3-member cluster instead of a split (tests/e2e/gate_etcd.sh).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use muster_tests::query::Query;
use muster_tests::{
    bin_path, metric, require_program, require_root, run, run_in_namespaces, udp_exchange,
    workspace_root, Musterd, TempDir,
};

const SRV: u16 = 33;

/// `_etcd-server-ssl._tcp` has a TXT gate of 3 with m3's address missing (unless
/// `complete`); `_etcd-server-ssl-blue._tcp` gets its size (1) from the configuration.
fn zone_text(serial: u32, complete: bool) -> String {
    format!(
        "$ORIGIN gate.test.\n$TTL 30\n@ 300 IN SOA ns1 hostmaster {serial} 3600 600 86400 60\n\
         @ 300 IN NS ns1\nns1 IN A 127.0.0.1\n\
         _etcd-server-ssl._tcp IN TXT \"muster-size=3\"\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m1\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m2\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m3\n\
         _etcd-server-ssl-blue._tcp IN SRV 0 0 2380 b1\n\
         m1 IN A 10.0.0.1\nm2 IN A 10.0.0.2\nb1 IN A 10.0.0.9\n{}",
        if complete { "m3 IN A 10.0.0.3\n" } else { "" }
    )
}

fn config(dir: &TempDir, zone: &Path, metrics: std::net::SocketAddr) -> std::path::PathBuf {
    dir.write(
        "musterd.toml",
        &format!(
            "listen = [\"127.0.0.1:0\"]\nwatch_interval = \"0s\"\nmetrics_listen = \"{metrics}\"\n\
             [[zone]]\norigin = \"gate.test.\"\nfile = \"{}\"\n[zone.sizes]\n\"_etcd-server-ssl-blue._tcp\" = 1\n",
            zone.display()
        ),
    )
}

fn ask(server: &Musterd, name: &str, qtype: u16) -> Message {
    let q = Query::new(name, qtype).edns(1232).to_bytes();
    let resp = udp_exchange(server.addr, &q, Duration::from_secs(2)).expect("an answer");
    Message::from_vec(&resp).expect("decodable")
}

/// The (INFO-CODE, EXTRA-TEXT) of the Extended DNS Error in `m`, if any.
fn ede(m: &Message) -> Option<(u16, String)> {
    m.edns
        .as_ref()?
        .options()
        .as_ref()
        .iter()
        .find_map(|(_, o)| match o {
            EdnsOption::Unknown(15, d) if d.len() >= 2 => Some((
                u16::from_be_bytes([d[0], d[1]]),
                String::from_utf8_lossy(&d[2..]).into_owned(),
            )),
            _ => None,
        })
}

fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn gates_are_served_logged_exported_and_follow_reloads() {
    let dir = TempDir::new();
    let zone = dir.write("gate.test.zone", &zone_text(1, false));
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], muster_tests::free_port()));
    let config = config(&dir, &zone, metrics);
    let server = Musterd::start_with_args(&["serve", "--config", config.to_str().unwrap()]);
    let ssl = "{zone=\"gate.test.\",name=\"_etcd-server-ssl._tcp.gate.test.\"}";
    let blue = "{zone=\"gate.test.\",name=\"_etcd-server-ssl-blue._tcp.gate.test.\"}";
    let gauges = |key: &str| {
        ["open", "have", "need"].map(|m| metric(metrics, &format!("musterd_gate_{m}{key}")))
    };
    assert_eq!(gauges(ssl), [0, 2, 3]);
    assert_eq!(gauges(blue), [1, 1, 1], "the configured size");
    let log = server.log_text();
    assert!(
        log.contains("completeness gate _etcd-server-ssl._tcp.gate.test.: muster-size=3 but 2 of 3 SRV targets have an address; no A/AAAA record for m3.gate.test."),
        "{log}"
    );

    // Withheld: NODATA with the zone's SOA at TTL 5 and EDE 14 naming the missing address.
    let m = ask(&server, "_etcd-server-ssl._tcp.gate.test.", SRV);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty() && m.metadata.authoritative);
    assert_eq!(m.authorities[0].ttl, 5);
    let (code, text) = ede(&m).expect("an EDE");
    assert_eq!(code, 14);
    assert!(
        text.contains("no A/AAAA record for m3.gate.test."),
        "{text}"
    );
    // TXT, addresses and the open gate's set are served.
    assert_eq!(
        ask(&server, "_etcd-server-ssl._tcp.gate.test.", 16)
            .answers
            .len(),
        1
    );
    assert_eq!(ask(&server, "m1.gate.test.", 1).answers.len(), 1);
    assert_eq!(
        ask(&server, "_etcd-server-ssl-blue._tcp.gate.test.", SRV)
            .answers
            .len(),
        1
    );

    // m3's address published: the gate opens on reload, once, and is logged as open.
    replace(&zone, &zone_text(2, true));
    server.reload();
    assert_eq!(gauges(ssl), [1, 3, 3]);
    let m = ask(&server, "_etcd-server-ssl._tcp.gate.test.", SRV);
    assert_eq!(m.answers.len(), 3);
    assert_eq!(ede(&m), None);
    let log = server.log_text();
    assert!(
        log.contains("muster-size=3, all 3 targets have addresses"),
        "{log}"
    );
    // The unchanged blue gate is not logged again.
    assert_eq!(
        log.matches("_etcd-server-ssl-blue._tcp.gate.test.: configured size 1")
            .count(),
        1,
        "{log}"
    );

    // And closes again when an address goes.
    replace(&zone, &zone_text(3, false));
    server.reload();
    assert_eq!(gauges(ssl), [0, 2, 3]);
    assert!(ask(&server, "_etcd-server-ssl._tcp.gate.test.", SRV)
        .answers
        .is_empty());
}

/// The acceptance check: `dig` shows `EDE: 20 (Not Authoritative)` for a name
/// outside the served zones, and the gate's `EDE: 14 (Not Ready)` with its text.
#[test]
fn dig_shows_extended_dns_errors() {
    if !require_program("dig") {
        return;
    }
    let dir = TempDir::new();
    let zone = dir.write("gate.test.zone", &zone_text(1, false));
    let server = Musterd::start(&[("gate.test.", &zone)]);
    let dig = |name: &str, qtype: &str| {
        let (_, out, _) = run(Command::new("dig")
            .args(["@127.0.0.1", "-p", &server.addr.port().to_string()])
            .args(["+time=2", "+tries=1", name, qtype]));
        out
    };
    let out = dig("www.elsewhere.test.", "A");
    assert!(
        out.contains("status: REFUSED") && out.contains("EDE: 20 (Not Authoritative)"),
        "{out}"
    );
    let out = dig("_etcd-server-ssl._tcp.gate.test.", "SRV");
    assert!(
        out.contains("status: NOERROR")
            && out.contains(
                "EDE: 14 (Not Ready): (_etcd-server-ssl._tcp.gate.test.: muster-size=3 but 2 of 3"
            ),
        "{out}"
    );
    let (_, out, _) = run(Command::new("dig")
        .args(["@127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(["+time=2", "+tries=1", "+noedns", "www.elsewhere.test.", "A"]));
    assert!(
        out.contains("status: REFUSED") && !out.contains("EDE"),
        "no OPT, no EDE: {out}"
    );
}

#[test]
fn check_reports_gates_and_size_conflicts() {
    let dir = TempDir::new();
    let zone = dir.write("gate.test.zone", &zone_text(1, false));
    let (ok, out, _) =
        run(Command::new(bin_path("musterd")).args(["check", zone.to_str().unwrap()]));
    // A closed gate is a warning naming what is missing, and so is m3's missing address:
    // the set is withheld meanwhile, a rollout in progress (exit status 0).
    assert!(ok, "{out}");
    assert!(
        out.contains("warning[gate-closed]: _etcd-server-ssl._tcp.gate.test.: muster-size=3 but 2 of 3 SRV targets have an address; no A/AAAA record for m3.gate.test.")
            && out.contains("warning[srv-target-no-address]"),
        "{out}"
    );
    // The configured size differs from the TXT record: an error.
    let complete = dir.write("gate.test.zone", &zone_text(1, true));
    let config = dir.write(
        "musterd.toml",
        &format!(
            "[[zone]]\norigin = \"gate.test.\"\nfile = \"{}\"\n[zone.sizes]\n\"_etcd-server-ssl._tcp\" = 5\n",
            complete.display()
        ),
    );
    let (ok, out, _) = run(Command::new(bin_path("musterd")).args([
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(!ok, "{out}");
    assert!(
        out.contains("error[gate-size-conflict]")
            && out.contains("the configuration says 5 members but TXT \"muster-size=3\""),
        "{out}"
    );
    assert!(
        out.contains("warning[gate-closed]") && out.contains("configured size 5 but 3 of 3"),
        "{out}"
    );
    // Without the configuration the complete zone is clean.
    let (ok, out, _) =
        run(Command::new(bin_path("musterd")).args(["check", complete.to_str().unwrap()]));
    assert!(ok && !out.contains("gate-"), "{out}");
}

/// Stock etcd 3.4.23, three members with `--discovery-srv`, addresses published one by one
/// (tests/e2e/gate_etcd.sh): without a gate m1+m2 form a 2-member cluster that m3 can
/// never join; with `muster-size=3` every start fails until the set is complete, then one
/// 3-member cluster forms. Needs root (namespaces, port 53); skipped otherwise.
#[test]
fn stock_etcd_waits_for_the_complete_set() {
    if !require_root() {
        return;
    }
    for p in [
        "etcd", "etcdctl", "unshare", "ip", "mount", "dig", "timeout",
    ] {
        if !require_program(p) {
            return;
        }
    }
    let (_, version, _) = run(Command::new("etcd").arg("--version"));
    assert!(
        version.contains("etcd Version: 3.4."),
        "this test needs etcd 3.4, found:\n{version}"
    );
    let dir = TempDir::new();
    let script = workspace_root().join("tests/e2e/gate_etcd.sh");
    let outer_mnt = std::fs::read_link("/proc/self/ns/mnt").expect("readlink /proc/self/ns/mnt");
    let musterd = bin_path("musterd");
    let started = Instant::now();
    let deadline = Duration::from_secs(150);
    let (status, text) = run_in_namespaces(
        &["-n", "-m"],
        &[("MUSTER_OUTER_MNT_NS", outer_mnt.as_os_str())],
        &script,
        &[&musterd, dir.path()],
        dir.path(),
        deadline,
    );
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("GATE-ETCD-OK"),
        "gate e2e failed ({status:?}) after {took:?}:\n{text}"
    );
    for want in [
        "UNGATED-SPLIT: m1+m2 formed a 2-member cluster, m3 cannot join it",
        "EDE: 14 (Not Ready)",
        "error setting up initial cluster: error querying DNS SRV records for _etcd-server-ssl",
        "GATED-ONE-CLUSTER",
    ] {
        assert!(text.contains(want), "missing {want:?}:\n{text}");
    }
    eprintln!("gate e2e with stock etcd 3.4: {took:?}");
}

/// A gate opened by a dynamic update (a host registering its address, nsupdate here)
/// follows it like a reload: the SRV set is served, the gauges and the log say so.
#[test]
fn a_dynamic_update_opens_the_gate_and_the_metrics_follow() {
    if !require_program("nsupdate") {
        return;
    }
    let dir = TempDir::new();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let zone = state.join("gate.test.zone");
    std::fs::write(&zone, zone_text(1, false)).unwrap();
    let secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";
    let key = dir.write(
        "ddns.key",
        &format!("key \"ddns\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n"),
    );
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], muster_tests::free_port()));
    let server = Musterd::start_with_args(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--watch-interval",
        "0s",
        "--metrics-listen",
        &metrics.to_string(),
        "--zone",
        &format!("gate.test.={}", zone.display()),
        "--key-file",
        key.to_str().unwrap(),
        "--allow-update",
        "gate.test.=ddns",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let ssl = "{zone=\"gate.test.\",name=\"_etcd-server-ssl._tcp.gate.test.\"}";
    let gauges = || ["open", "have"].map(|m| metric(metrics, &format!("musterd_gate_{m}{ssl}")));
    assert_eq!(gauges(), [0, 2]);

    let mut child = Command::new("nsupdate")
        .args(["-y", &format!("hmac-sha256:ddns:{secret}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn nsupdate");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(
            stdin,
            "server {} {}\nzone gate.test.\nupdate add m3.gate.test. 30 IN A 10.0.0.3\nsend",
            server.addr.ip(),
            server.addr.port()
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nsupdate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        ask(&server, "_etcd-server-ssl._tcp.gate.test.", SRV)
            .answers
            .len(),
        3
    );
    assert_eq!(gauges(), [1, 3]);
    server.wait_log(
        |l| l.contains("muster-size=3, all 3 targets have addresses"),
        Duration::from_secs(5),
    );
}
