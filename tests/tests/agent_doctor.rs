//! `muster-agent doctor` against zones that musterd serves, one pitfall each: the report
//! (golden files tests/golden/agent/doctor-*.txt, `UPDATE_GOLDEN=1` rewrites them) and
//! the exit status (1 when stock etcd would fail or split, 0 otherwise); and against a
//! live single-member etcd 3.4 whose membership disagrees with the records.
//!
//! The pitfall zones use documentation addresses (192.0.2.0/24, 2001:db8::/32) and no
//! `_etcd-client` records, so doctor connects to nothing; only the live test publishes
//! a client record, on 127.0.0.1.

mod agent_support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_support::{agent, wait_for, zone, DOMAIN};
use muster_tests::{free_port, require_program, Musterd, TempDir};

/// Serves `body` as the cluster.test. zone.
fn serve(dir: &TempDir, body: &str) -> Musterd {
    let path = dir.write("cluster.test.zone", &zone(1, body));
    Musterd::start(&[("cluster.test.", &path)])
}

/// Runs `doctor` against `ns` with `args`: (exit code, stdout, stderr), the nameserver
/// address replaced by `NS` so that outputs compare across runs.
fn doctor(ns: SocketAddr, args: &[&str]) -> (i32, String, String) {
    let out = agent()
        .args([
            "doctor",
            "--domain",
            DOMAIN,
            "--nameserver",
            &ns.to_string(),
        ])
        .args(args)
        .output()
        .expect("run muster-agent doctor");
    let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&ns.to_string(), "NS");
    (
        out.status.code().unwrap_or(-1),
        clean(&out.stdout),
        clean(&out.stderr),
    )
}

/// Serves `body`, runs doctor with `args`, checks the exit code and the golden file
/// `doctor-NAME.txt`; returns stdout.
fn case(name: &str, body: &str, args: &[&str], code: i32) -> String {
    let dir = TempDir::new();
    let dns = serve(&dir, body);
    let (got, out, err) = doctor(dns.addr, args);
    assert_eq!(got, code, "exit status of doctor {args:?}\n{out}{err}");
    if code == 1 {
        assert!(
            err.contains("would make stock etcd fail or split the cluster"),
            "{err}"
        );
    }
    let path = muster_tests::workspace_root()
        .join("tests/golden/agent")
        .join(format!("doctor-{name}.txt"));
    muster_tests::golden::assert_golden(&path, &out);
    out
}

/// Three TLS members, each with one address, the size published.
const HEALTHY: &str = "\
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN SRV 0 0 2380 m3
                      IN TXT \"muster-size=3\"
m1 IN A 192.0.2.1
m2 IN A 192.0.2.2
m3 IN A 192.0.2.3
";

#[test]
fn healthy_tls_cluster_exits_0() {
    let out = case("healthy", HEALTHY, &[], 0);
    assert!(out.contains("problems\n  none\n"), "{out}");
    // The worked example's token gives the documented cluster ID on every host? Not with
    // these names; but every host must agree on one ID.
    let ids: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("-member cluster ").nth(1))
        .map(|r| r.split(':').next().unwrap_or_default())
        .collect();
    assert_eq!(ids.len(), 6, "{out}");
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[test]
fn plain_only_records_fail_on_3_4_only() {
    let body = HEALTHY.replace("_etcd-server-ssl._tcp", "_etcd-server._tcp");
    let out = case("plain-only", &body, &[], 1);
    assert!(
        out.contains("error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.cluster.test on <resolver>: no such host"),
        "{out}"
    );
    // Who runs 3.5 only is not failed by what 3.4 would do.
    let dir = TempDir::new();
    let dns = serve(&dir, &body);
    let (code, out, _) = doctor(dns.addr, &["--etcd-version", "3.5"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn target_without_address_splits_the_cluster() {
    // No TXT size here: musterd's completeness gate would withhold the whole set.
    let body = "\
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN SRV 0 0 2380 m3
m1 IN A 192.0.2.1
m2 IN A 192.0.2.2
";
    let out = case("no-address", body, &[], 1);
    assert!(
        out.contains("target m3.cluster.test. at _etcd-server-ssl._tcp.cluster.test. has no A or AAAA record"),
        "{out}"
    );
    assert!(out.contains("m1, m2 would bootstrap a 2-member cluster although the records mean 3 members (skipped without a message: m3.cluster.test.:2380)"), "{out}");
}

#[test]
fn dual_stack_target_and_an_ipv6_advertise_url() {
    let body = format!("{HEALTHY}m1 IN AAAA 2001:db8::1\n");
    // By name the host matches itself: a warning only.
    let dir = TempDir::new();
    let dns = serve(&dir, &body);
    let (code, out, _) = doctor(dns.addr, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warning: records: target m1.cluster.test. has A and AAAA records"),
        "{out}"
    );
    drop(dns);
    let out = case(
        "dual-stack-ipv6-advertise",
        &body,
        &["--advertise", "m1=https://[2001:db8::1]:2380"],
        1,
    );
    assert!(
        out.contains("error: etcd 3.4: etcd exits on m1 with: cannot find local etcd member \"m1\" in SRV records;"),
        "{out}"
    );
}

#[test]
fn several_a_records_with_ours_not_first() {
    let body = HEALTHY.replace(
        "m1 IN A 192.0.2.1\n",
        "m1 IN A 192.0.2.9\nm1 IN A 192.0.2.1\n",
    );
    let out = case(
        "several-a",
        &body,
        &["--advertise", "m1=https://192.0.2.1:2380"],
        1,
    );
    assert!(
        out.contains("etcd compares only the first, 192.0.2.9"),
        "{out}"
    );
    assert!(
        out.contains("etcd exits on m1 with: cannot find local etcd member"),
        "{out}"
    );
}

/// [`HEALTHY`] without its size record: musterd's completeness gate counts only targets
/// with an address record in the zone, so a size would hide the sets that the next tests
/// show to doctor (an alias, an IP literal) — which is the gate doing its job.
fn healthy_without_size() -> String {
    HEALTHY.replace("                      IN TXT \"muster-size=3\"\n", "")
}

#[test]
fn cname_target_is_a_warning() {
    let body = healthy_without_size().replace(
        "m2 IN A 192.0.2.2\n",
        "m2 IN CNAME host2\nhost2 IN A 192.0.2.2\n",
    );
    let out = case("cname", &body, &[], 0);
    assert!(out.contains("is an alias of host2.cluster.test."), "{out}");
}

#[test]
fn ip_literal_target_fails_the_whole_set() {
    let body = healthy_without_size().replace("SRV 0 0 2380 m3\n", "SRV 0 0 2380 192.0.2.3.\n");
    let out = case("ip-target", &body, &[], 1);
    assert!(
        out.contains("DNS response contained records which contain invalid names"),
        "{out}"
    );
}

#[test]
fn both_sets_split_3_5_by_the_numbering_quirk() {
    let plain = "\
_etcd-server._tcp IN SRV 0 0 2380 m1
                  IN SRV 0 0 2380 m2
                  IN SRV 0 0 2380 m3
";
    let out = case("both-sets", &format!("{HEALTHY}{plain}"), &[], 1);
    assert!(
        out.contains("error: etcd 3.5+: the hosts would bootstrap 3 different clusters"),
        "{out}"
    );
    assert!(
        out.contains("warning: etcd 3.4: ignores the 3 records at _etcd-server._tcp.cluster.test."),
        "{out}"
    );
}

/// A closed completeness gate (m3's address missing): doctor reads the server's EDE 14
/// "Not Ready" and says what the gate waits for, naming m3, instead of "no SRV records".
#[test]
fn a_closed_gate_names_the_missing_host() {
    let body = "\
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN SRV 0 0 2380 m3
                      IN TXT \"muster-size=3\"
m1 IN A 192.0.2.1
m2 IN A 192.0.2.2
";
    let dir = TempDir::new();
    let dns = serve(&dir, body);
    let (code, out, err) = doctor(dns.addr, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("error: records: the nameserver withholds the SRV records at _etcd-server-ssl._tcp.cluster.test. (EDE 14 Not Ready, a completeness gate): muster-size=3 but 2 of 3 SRV targets have an address; no A/AAAA record for m3.cluster.test."),
        "{out}"
    );
    assert!(!out.contains("has SRV records"), "{out}");
}

#[test]
fn even_count_and_a_size_that_disagrees() {
    let body = "\
_etcd-server-ssl._tcp IN SRV 0 0 2380 m1
                      IN SRV 0 0 2380 m2
                      IN TXT \"muster-size=3\"
m1 IN A 192.0.2.1
m2 IN A 192.0.2.2
";
    // musterd withholds the incomplete set (its completeness gate): etcd fails with "no
    // such host" instead of forming a 2-member cluster, and doctor says why.
    let out = case("size-mismatch", body, &[], 1);
    assert!(
        out.contains("error: records: TXT \"muster-size=3\" at _etcd-server-ssl._tcp.cluster.test. but no SRV records there (musterd withholds a set until it has 3 targets with addresses)"),
        "{out}"
    );
    // Even without a size: a warning, exit 0.
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        &body.replace("                      IN TXT \"muster-size=3\"\n", ""),
    );
    let (code, out, _) = doctor(dns.addr, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("has an even number of members (2)"), "{out}");
}

#[test]
fn json_report_has_the_replays_and_problems() {
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        &HEALTHY.replace("_etcd-server-ssl._tcp", "_etcd-server._tcp"),
    );
    let (code, out, _) = doctor(dns.addr, &["--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["replays"][0]["version"], "3.4");
    assert_eq!(v["replays"][0]["hosts"][0]["result"], "fails");
    assert_eq!(v["replays"][0]["hosts"][0]["kind"], "srv-query");
    assert_eq!(v["replays"][1]["version"], "3.5+");
    assert_eq!(v["replays"][1]["hosts"][0]["result"], "starts");
    assert_eq!(
        v["replays"][1]["hosts"][0]["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(v["problems"][0]["severity"], "error");
    assert_eq!(v["problems"][0]["scope"], "etcd 3.4");
    assert_eq!(v["failing"], 2);
}

/// A self-signed certificate with `sans` (openssl `subjectAltName` syntax).
fn certificate(dir: &TempDir, name: &str, sans: &str) -> String {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
        ])
        .args([
            "-subj",
            "/CN=etcd member",
            "-addext",
            &format!("subjectAltName={sans}"),
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.path().join(format!("{name}.pem")).display().to_string()
}

#[test]
fn peer_certificate_without_the_bare_domain() {
    if !require_program("openssl") {
        return;
    }
    let dir = TempDir::new();
    let dns = serve(&dir, HEALTHY);
    let all = "DNS:m1.cluster.test,DNS:m2.cluster.test,DNS:m3.cluster.test,IP:192.0.2.1,IP:192.0.2.2,IP:192.0.2.3";
    let lacking = certificate(&dir, "lacking", all);
    let (code, out, _) = doctor(dns.addr, &["--peer-cert", &lacking]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "error: certificate: {lacking} (peer certificate of m1, m2, m3) lacks DNS:cluster.test"
        )),
        "{out}"
    );
    assert!(out.contains("tls: bad certificate"), "{out}");
    // With a trusted CA per-host names suffice.
    let (code, out, _) = doctor(
        dns.addr,
        &["--peer-cert", &lacking, "--peer-trusted-ca-file", &lacking],
    );
    assert_eq!(code, 0, "{out}");
    // A certificate for one member only, with the domain: fine for that member.
    let good = certificate(&dir, "good", &format!("{all},DNS:cluster.test"));
    let (code, out, _) = doctor(dns.addr, &["--peer-cert", &format!("m1={good}")]);
    assert_eq!(code, 0, "{out}");
    // Not a certificate: a usage error.
    let key = dir.path().join("good.key").display().to_string();
    let (code, _, err) = doctor(dns.addr, &["--peer-cert", &key]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--peer-cert"), "{err}");
}

#[test]
fn unknown_advertise_name_is_a_usage_error() {
    let dir = TempDir::new();
    let dns = serve(&dir, HEALTHY);
    let (code, _, err) = doctor(dns.addr, &["--advertise", "m9=https://192.0.2.9:2380"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no SRV target"), "{err}");
}

/// A running etcd 3.4 member `m0` whose membership lacks the second published record.
#[test]
fn live_cluster_disagreeing_with_the_records() {
    if !require_program("etcd") {
        return;
    }
    let dir = TempDir::new();
    let (peer, client, other) = (free_port(), free_port(), free_port());
    let data = dir.path().join("m0.etcd");
    let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
    let mut etcd = Command::new("etcd")
        .args(["--name", "m0", "--data-dir"])
        .arg(&data)
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--initial-cluster=m0=http://127.0.0.1:{peer}"))
        .args(agent_support::FAST_ETCD)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let up = wait_for(Duration::from_secs(20), || {
        agent_support::listening(client).then_some(())
    });
    let body = format!(
        "_etcd-server._tcp IN SRV 0 0 {peer} m0\n                  IN SRV 0 0 {other} m1\n\
         _etcd-client._tcp IN SRV 0 0 {client} m0\n\
         m0 IN A 127.0.0.1\nm1 IN A 127.0.0.1\n"
    );
    let dns = serve(&dir, &body);
    let result = up.map(|()| doctor(dns.addr, &["--etcd-version", "3.5"]));
    let _ = etcd.kill();
    let _ = etcd.wait();
    let (code, out, _) = result.unwrap_or_else(|| {
        panic!(
            "etcd did not listen:\n{}",
            std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default()
        )
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "http://m0.cluster.test:{client} answered: 1 members"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("error: cluster: http://m1.cluster.test:{other} (SRV record at _etcd-server._tcp.cluster.test.) is not a member of the running cluster")),
        "{out}"
    );
    // m0's record matches the live member (by address: it was bootstrapped with one).
    assert!(
        !out.contains(&format!("http://m0.cluster.test:{peer} (SRV record")),
        "{out}"
    );
}
