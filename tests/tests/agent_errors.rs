//! Every error path of `muster-agent`, against zones that musterd serves: the exit status
//! and the message, which must name what is wrong and say how to fix it.

mod agent_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent_support::{agent, output, zone, Watched, DOMAIN};
use muster_tests::{Musterd, TempDir};

/// Serves `body` as the cluster.test. zone.
fn serve(dir: &TempDir, body: &str) -> Musterd {
    let path = dir.write("cluster.test.zone", &zone(1, body));
    Musterd::start(&[("cluster.test.", &path)])
}

/// Runs `muster-agent plan` with the domain and nameserver plus `args`; returns stderr of
/// a failed run (and panics if it succeeded).
fn plan_fails(ns: SocketAddr, args: &[&str]) -> String {
    let (ok, out, err) = output(
        agent()
            .arg("plan")
            .args(["--domain", DOMAIN, "--nameserver", &ns.to_string()])
            .args(args),
    );
    assert!(
        !ok,
        "muster-agent plan {args:?} should fail, printed:\n{out}"
    );
    err
}

/// Three members at 127.0.0.1 on distinct ports; the size published in the zone.
const LOOPBACK: &str = "\
_etcd-server._tcp IN SRV 0 0 12380 m0
                  IN SRV 0 0 22380 m1
                  IN SRV 0 0 32380 m2
                  IN TXT \"muster-size=3\"
m0 IN A 127.0.0.1
m1 IN A 127.0.0.1
m2 IN A 127.0.0.1
";

/// `muster-agent plan --domain cluster.test --nameserver ADDR`, more flags to follow.
fn plan_against(ns: std::net::SocketAddr) -> std::process::Command {
    let mut c = agent();
    c.args(["plan", "--domain", DOMAIN, "--nameserver", &ns.to_string()]);
    c
}

#[test]
fn no_srv_records_times_out_naming_both_record_sets() {
    let dir = TempDir::new();
    let dns = serve(&dir, "m0 IN A 127.0.0.1\n");
    let err = plan_fails(dns.addr, &["--timeout", "1s"]);
    assert!(
        err.contains(
            "error: timed out after 1s waiting for a complete, stable set of etcd discovery records: \
             0 members resolvable; no SRV records at _etcd-server-ssl._tcp.cluster.test. or \
             _etcd-server._tcp.cluster.test."
        ),
        "{err}"
    );
    assert!(err.contains("etcd was not started"), "{err}");
}

#[test]
fn no_target_on_this_host_lists_targets_and_local_addresses() {
    let dir = TempDir::new();
    // 203.0.113.0/24 is TEST-NET-3: never an address of the test machine.
    let dns = serve(
        &dir,
        "_etcd-server._tcp IN SRV 0 0 2380 m0\n  IN SRV 0 0 2380 m1\n\
         m0 IN A 203.0.113.10\nm1 IN A 203.0.113.11\n   IN AAAA 2001:db8::11\n",
    );
    // Not fatal at once: this host's record may still be on its way.
    let err = plan_fails(dns.addr, &["--expect", "2", "--timeout", "1s"]);
    assert!(
        err.contains("2/2 members resolvable; no published SRV target resolves to an address of this host yet"),
        "{err}"
    );
    assert!(
        err.contains("\nno SRV target of _etcd-server._tcp.cluster.test. resolves to an address of this host"),
        "{err}"
    );
    assert!(
        err.contains("  m0.cluster.test.:2380 -> 203.0.113.10\n"),
        "{err}"
    );
    assert!(
        err.contains("  m1.cluster.test.:2380 -> 203.0.113.11, 2001:db8::11\n"),
        "{err}"
    );
    assert!(
        err.contains("  local addresses: ") && err.contains("127.0.0.1"),
        "{err}"
    );
    assert!(
        err.contains("fix: give this host's SRV target an A/AAAA record"),
        "{err}"
    );
}

#[test]
fn several_targets_on_this_host_ask_for_name() {
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let start = Instant::now();
    let err = plan_fails(dns.addr, &["--expect", "3"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a settled record set fails at once"
    );
    assert!(
        err.contains(
            "error: 3 SRV targets of _etcd-server._tcp.cluster.test. resolve to addresses of this host, \
             so muster-agent cannot tell which member it is"
        ),
        "{err}"
    );
    assert!(
        err.contains("  m1.cluster.test.:22380 -> 127.0.0.1 (local)"),
        "{err}"
    );
    assert!(
        err.contains("fix: pass --name with one of m0, m1, m2"),
        "{err}"
    );
    let err = plan_fails(dns.addr, &["--name", "m7", "--timeout", "1s"]);
    assert!(
        err.contains("this host's member m7 (--name) is not published yet"),
        "{err}"
    );
    assert!(
        err.contains(
            "\n--name m7 matches no SRV target of _etcd-server._tcp.cluster.test.; members:\n"
        ),
        "{err}"
    );
}

#[test]
fn conflicting_etcd_variables_are_refused_before_etcd_runs() {
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let data = dir.path().join("data");
    let (ok, out, err) = output(
        agent()
            .args([
                "exec",
                "--domain",
                DOMAIN,
                "--nameserver",
                &dns.addr.to_string(),
                "--name",
                "m0",
            ])
            .arg("--data-dir")
            .arg(&data)
            // Would fail loudly if it were ever executed.
            .args([
                "--etcd-bin",
                "/nonexistent/etcd",
                "--",
                "--cert-file=/etc/etcd/peer.pem",
            ])
            .env("ETCD_NAME", "node-a")
            .env("ETCD_INITIAL_CLUSTER", "")
            .env("ETCD_CERT_FILE", "/x.pem"),
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            "error: the environment sets ETCD_NAME, ETCD_INITIAL_CLUSTER, ETCD_CERT_FILE that muster-agent \
             also passes as flags; etcd would exit with \"conflicting environment variable"
        ),
        "{err}"
    );
    assert!(
        err.contains("  ETCD_NAME=node-a vs --name (from the plan)"),
        "{err}"
    );
    assert!(
        err.contains("  ETCD_CERT_FILE=/x.pem vs --cert-file=/etc/etcd/peer.pem (after --)"),
        "{err}"
    );
    assert!(err.contains("UnsetEnvironment="), "{err}");
    assert!(
        !err.contains("cannot execute"),
        "etcd must not be executed: {err}"
    );
    assert!(
        !data.join("muster-plan.json").exists(),
        "nothing is persisted for a refused start"
    );

    let (ok, _, err) = output(
        agent()
            .args([
                "exec",
                "--domain",
                DOMAIN,
                "--nameserver",
                &dns.addr.to_string(),
                "--name",
                "m0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(["--etcd-bin", "/nonexistent/etcd"])
            .env("ETCD_DISCOVERY_SRV", "cluster.test"),
    );
    assert!(!ok);
    assert!(
        err.contains("ETCD_DISCOVERY_SRV=cluster.test (in the environment) is set"),
        "{err}"
    );
    assert!(
        err.contains("multiple discovery or bootstrap flags are set"),
        "{err}"
    );
}

#[test]
fn a_record_that_never_appears_times_out_with_the_reason() {
    let dir = TempDir::new();
    let dns = serve(&dir, "_etcd-server._tcp IN SRV 0 0 2380 m0\n  IN SRV 0 0 2380 m1\n  IN SRV 0 0 2380 m2\nm0 IN A 127.0.0.1\nm1 IN A 127.0.0.1\n");
    let start = Instant::now();
    let err = plan_fails(
        dns.addr,
        &["--name", "m0", "--expect", "3", "--timeout", "2s"],
    );
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    // A progress line every round, then the reason.
    let progress = err
        .matches("muster-agent: 2/3 members resolvable; m2.cluster.test. has no A/AAAA record")
        .count();
    assert!(progress >= 3, "{err}");
    assert!(
        err.contains(
            "error: timed out after 2s waiting for a complete, stable set of etcd discovery records: \
             2/3 members resolvable; m2.cluster.test. has no A/AAAA record"
        ),
        "{err}"
    );

    // Fewer SRV records than --expect.
    let err = plan_fails(
        dns.addr,
        &["--name", "m0", "--expect", "4", "--timeout", "1s"],
    );
    assert!(
        err.contains("only 3 SRV records at _etcd-server._tcp.cluster.test., --expect is 4"),
        "{err}"
    );
}

#[test]
fn an_unreachable_nameserver_times_out_naming_it() {
    // A port nobody answers on: take a free one and leave it closed.
    let port = muster_tests::free_port();
    let ns = SocketAddr::from(([127, 0, 0, 1], port));
    let err = plan_fails(ns, &["--name", "m0", "--timeout", "3s"]);
    assert!(err.contains("error: timed out after 3s"), "{err}");
    assert!(
        err.contains(&format!("nameserver 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn duplicate_member_names_are_refused() {
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        "_etcd-server._tcp IN SRV 0 0 2380 m0.east\n  IN SRV 0 0 2380 m0.west\n\
         m0.east IN A 127.0.0.1\nm0.west IN A 127.0.0.1\n",
    );
    let err = plan_fails(dns.addr, &["--expect", "2", "--timeout", "10s"]);
    assert!(
        err.contains(
            "error: member name \"m0\" is taken by two SRV records of _etcd-server._tcp.cluster.test.: \
             m0.east.cluster.test.:2380 and m0.west.cluster.test.:2380"
        ),
        "{err}"
    );
    assert!(err.contains("rename one target"), "{err}");
}

#[test]
fn both_srv_sets_are_refused_unless_scheme_picks_one() {
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        &format!("{LOOPBACK}_etcd-server-ssl._tcp IN SRV 0 0 12380 m0\n  IN SRV 0 0 22380 m1\n  IN SRV 0 0 32380 m2\n"),
    );
    let err = plan_fails(dns.addr, &["--name", "m0"]);
    assert!(
        err.contains(
            "error: both _etcd-server-ssl._tcp.cluster.test. (https) and _etcd-server._tcp.cluster.test. (http) \
             have SRV records"
        ),
        "{err}"
    );
    let (ok, out, err) = output(agent().args([
        "plan",
        "--domain",
        DOMAIN,
        "--nameserver",
        &dns.addr.to_string(),
        "--name",
        "m0",
        "--scheme",
        "https",
        "--expect",
        "3",
    ]));
    assert!(ok, "{err}");
    assert!(
        out.contains("--initial-advertise-peer-urls=https://m0.cluster.test:12380"),
        "{out}"
    );
}

/// A data dir that etcd has used: member/wal exists.
fn used_data_dir(dir: &TempDir) -> std::path::PathBuf {
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("member").join("wal")).expect("create wal dir");
    data
}

#[test]
fn a_restart_without_stored_plan_needs_the_url_flags() {
    let dir = TempDir::new();
    let data = used_data_dir(&dir);
    // No nameserver is running: a restart must not ask.
    let (ok, out, err) = output(
        agent()
            .args(["plan", "--nameserver", "127.0.0.1:9", "--name", "m0"])
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("has a WAL, so this is a restart and DNS is not consulted"),
        "{err}"
    );
    assert!(
        err.contains(
            "muster-plan.json is missing, so muster-agent does not know this member's URLs"
        ),
        "{err}"
    );
    assert!(
        err.contains("pass --listen-peer-url, --listen-client-url, --advertise-client-url"),
        "{err}"
    );
}

#[test]
fn a_restart_refuses_another_name_than_the_stored_plan() {
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let data = dir.path().join("data");
    let env_file = dir.path().join("bootstrap.env");
    let (ok, _, err) = output(
        agent()
            .args([
                "env",
                "--domain",
                DOMAIN,
                "--nameserver",
                &dns.addr.to_string(),
                "--name",
                "m1",
            ])
            .arg("--data-dir")
            .arg(&data)
            .arg("--out")
            .arg(&env_file),
    );
    assert!(ok, "{err}");
    std::fs::create_dir_all(data.join("member/wal")).expect("wal");
    let (ok, _, err) = output(
        agent()
            .args(["plan", "--name", "m2"])
            .arg("--data-dir")
            .arg(&data),
    );
    assert!(!ok);
    assert!(
        err.contains("error: --name m2 but this data dir was bootstrapped as member m1"),
        "{err}"
    );
}

#[test]
fn env_and_exec_need_a_data_dir() {
    for cmd in [
        &["env", "--out", "/tmp/x.env"][..],
        &["exec", "--dry-run"][..],
    ] {
        let (ok, _, err) = output(agent().args(cmd).args(["--domain", DOMAIN, "--name", "m0"]));
        assert!(!ok);
        assert!(
            err.contains("error: --data-dir (or MUSTER_DATA_DIR, or ETCD_DATA_DIR) is required"),
            "{err}"
        );
    }
}

#[test]
fn bootstrap_needs_a_domain() {
    let dir = TempDir::new();
    let (ok, _, err) = output(
        agent()
            .args(["plan", "--name", "m0"])
            .arg("--data-dir")
            .arg(dir.path()),
    );
    assert!(!ok);
    assert!(
        err.contains("error: --domain (or MUSTER_DOMAIN) is required to bootstrap"),
        "{err}"
    );
}

/// Collects the datagrams muster-agent sends to a NOTIFY_SOCKET.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn new(dir: &TempDir) -> NotifySocket {
        let path = dir.path().join("notify.sock");
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
        socket.set_nonblocking(true).expect("nonblocking");
        NotifySocket { socket, path }
    }

    fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    }
}

#[test]
fn under_systemd_the_wait_sends_status_and_extends_the_start_timeout() {
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        "_etcd-server._tcp IN SRV 0 0 2380 m0\n  IN SRV 0 0 2380 m1\nm0 IN A 127.0.0.1\n",
    );
    let notify = NotifySocket::new(&dir);
    let (ok, _, err) = output(
        plan_against(dns.addr)
            .args(["--name", "m0", "--expect", "2", "--timeout", "1s"])
            .env("NOTIFY_SOCKET", &notify.path),
    );
    assert!(!ok, "{err}");
    let msgs = notify.messages();
    let first = msgs
        .first()
        .unwrap_or_else(|| panic!("no notification; stderr:\n{err}"));
    assert!(
        first.starts_with(
            "STATUS=waiting for etcd discovery records: 1/2 members resolvable; m1.cluster.test. has no A/AAAA record"
        ),
        "{msgs:?}"
    );
    assert!(first.contains("\nEXTEND_TIMEOUT_USEC="), "{msgs:?}");
    let last = msgs.last().expect("a final status");
    assert!(
        last.starts_with("STATUS=muster-agent failed: timed out after 1s"),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().all(|m| !m.contains("READY=1")),
        "the agent never sends READY=1: {msgs:?}"
    );
}

#[test]
fn exec_keeps_the_pid_and_notify_socket_for_etcd() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let notify = NotifySocket::new(&dir);
    // A stand-in for etcd that reports its PID, NOTIFY_SOCKET and argv.
    let fake = dir.write(
        "fake-etcd",
        "#!/bin/sh\necho \"pid=$$\"\necho \"NOTIFY_SOCKET=$NOTIFY_SOCKET\"\nprintf '%s\\n' \"$@\"\n",
    );
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = dir.path().join("data");
    let child = agent()
        .args([
            "exec",
            "--domain",
            DOMAIN,
            "--nameserver",
            &dns.addr.to_string(),
            "--name",
            "m2",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg("--etcd-bin")
        .arg(&fake)
        .args(["--", "--debug"])
        .env("NOTIFY_SOCKET", &notify.path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn muster-agent");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("pid={pid}\n")),
        "etcd runs under the agent's PID: {stdout}"
    );
    assert!(
        stdout.contains(&format!("NOTIFY_SOCKET={}\n", notify.path.display())),
        "{stdout}"
    );
    assert!(stdout.contains("--name=m2\n--data-dir="), "{stdout}");
    assert!(
        stdout.ends_with("--initial-cluster-token=muster:cluster.test\n--debug\n"),
        "{stdout}"
    );
    assert!(notify.messages().iter().all(|m| !m.contains("READY=1")));
    assert!(
        data.join("muster-plan.json").is_file(),
        "the plan is kept for restarts"
    );
}

/// Review issue 8, item 5: bootstrap matched `--name M1` ignoring case, the restart
/// compared it exactly and refused the same command line.
#[test]
fn issue8_bootstrap_and_restart_agree_on_the_name_in_any_case() {
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let data = dir.path().join("data");
    let env_file = dir.path().join("bootstrap.env");
    let run = |sub: &str| {
        output(
            agent()
                .args([
                    sub,
                    "--domain",
                    DOMAIN,
                    "--nameserver",
                    &dns.addr.to_string(),
                ])
                .args(["--name", "M1"])
                .arg("--data-dir")
                .arg(&data)
                .arg("--out")
                .arg(&env_file),
        )
    };
    let (ok, _, err) = run("env");
    assert!(ok, "{err}");
    let env = std::fs::read_to_string(&env_file).expect("env file");
    assert!(env.contains("ETCD_NAME=m1\n"), "{env}");
    std::fs::create_dir_all(data.join("member/wal")).expect("wal");
    let (ok, _, err) = run("env");
    assert!(ok, "the same command line must restart: {err}");
    assert!(err.contains("muster-agent: decision: restart ("), "{err}");
    let env = std::fs::read_to_string(&env_file).expect("env file");
    assert!(env.contains("ETCD_NAME=m1\n"), "{env}");
}

/// Review issue 8, item 6: a malformed value exits 2 (as the README promises for a
/// malformed command line), before any work: no DNS is asked (the nameserver given does
/// not answer, so any lookup would take the whole --timeout).
#[test]
fn issue8_malformed_flags_exit_2_before_any_work() {
    let quiet = format!("127.0.0.1:{}", muster_tests::free_port());
    let cases: [(&[&str], &str); 12] = [
        (&["--nameserver", "foo"], "--nameserver"),
        (&["--nameserver", "127.0.0.1:70000"], "--nameserver"),
        (&["--domain", "a b"], "--domain"),
        (&["--srv-name", "a.b"], "--srv-name"),
        (&["--name", "m 1"], "--name"),
        (
            &["--advertise-peer-url", "m1.cluster.test:2380"],
            "--advertise-peer-url",
        ),
        (
            &["--listen-peer-url", "http://m1.cluster.test:2380"],
            "--listen-peer-url",
        ),
        (
            &["--listen-client-url", "http://127.0.0.1"],
            "--listen-client-url",
        ),
        (
            &["--advertise-client-url", "http://m1.cluster.test:2379/x"],
            "--advertise-client-url",
        ),
        (&["--timeout", "soon"], "--timeout"),
        (&["--token", "a b"], "--token"),
        (&["--client-port", "0"], "--client-port"),
    ];
    for (args, flag) in cases {
        let start = Instant::now();
        let out = agent()
            .args([
                "plan",
                "--domain",
                DOMAIN,
                "--expect",
                "3",
                "--timeout",
                "30s",
            ])
            .args(["--nameserver", &quiet])
            .args(args)
            .output()
            .expect("run muster-agent");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{args:?} did work first"
        );
    }
    // The same checks for the variables that stand in for flags.
    let out = agent()
        .args(["plan", "--domain", DOMAIN])
        .env("MUSTER_NAMESERVER", "foo")
        .output()
        .expect("run muster-agent");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--nameserver"));
    // A flag the chosen path needs is a command-line error too.
    let out = agent()
        .args(["plan", "--name", "m0"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--domain (or MUSTER_DOMAIN) is required")
    );
}

/// Review issue 8, item 9: without --expect the agent took a stable record set for the
/// whole cluster. Now the size must be declared; the message says how.
#[test]
fn issue8_without_a_size_bootstrap_is_refused_saying_how_to_declare_it() {
    let dir = TempDir::new();
    let unsized_zone = LOOPBACK.replace("                  IN TXT \"muster-size=3\"\n", "");
    assert_ne!(unsized_zone, LOOPBACK);
    let dns = serve(&dir, &unsized_zone);
    let err = plan_fails(dns.addr, &["--name", "m0", "--timeout", "1s"]);
    assert!(
        err.contains(
            "error: timed out after 1s waiting for a complete, stable set of etcd discovery records: \
             3 members resolvable; the cluster size is unknown: pass --expect N (MUSTER_EXPECT) or \
             publish _etcd-server._tcp.cluster.test. TXT \"muster-size=N\""
        ),
        "{err}"
    );
    // --expect alone is enough.
    let (ok, _, err) = output(plan_against(dns.addr).args(["--name", "m0", "--expect", "3"]));
    assert!(ok, "{err}");
}

#[test]
fn issue8_a_published_size_must_be_well_formed_and_agree_with_expect() {
    let dir = TempDir::new();
    let dns = serve(&dir, LOOPBACK);
    let err = plan_fails(dns.addr, &["--name", "m0", "--expect", "5"]);
    assert!(
        err.contains(
            "error: --expect is 5 but _etcd-server._tcp.cluster.test. publishes TXT \"muster-size=3\""
        ),
        "{err}"
    );
    let dir = TempDir::new();
    let dns = serve(
        &dir,
        &LOOPBACK.replace("muster-size=3", "muster-size=three"),
    );
    let start = Instant::now();
    let err = plan_fails(dns.addr, &["--name", "m0"]);
    assert!(start.elapsed() < Duration::from_secs(10), "fails at once");
    assert!(
        err.contains(
            "error: the TXT record \"muster-size=three\" at _etcd-server._tcp.cluster.test. is not a cluster size"
        ),
        "{err}"
    );
}

/// Review issue 8, item 10: a host whose own record was not published yet exited at once
/// (`--name m2 matches no SRV target`). It waits, says so, and proceeds once the record
/// arrives.
#[test]
fn issue8_a_host_waits_for_its_own_record() {
    let dir = TempDir::new();
    let two = "_etcd-server._tcp IN SRV 0 0 12380 m0\n  IN SRV 0 0 22380 m1\n\
               m0 IN A 127.0.0.1\nm1 IN A 127.0.0.1\n";
    let path = dir.write("cluster.test.zone", &zone(1, two));
    let dns = Musterd::start(&[("cluster.test.", &path)]);
    let mut agent_run = Watched::spawn(plan_against(dns.addr).args([
        "--name",
        "m2",
        "--expect",
        "3",
        "--timeout",
        "60s",
    ]));
    agent_run.wait_line(
        "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.cluster.test., --expect is 3; \
         this host's member m2 (--name) is not published yet",
        2,
        Duration::from_secs(20),
    );
    dir.write(
        "cluster.test.zone",
        &zone(
            2,
            &format!("{two}_etcd-server._tcp IN SRV 0 0 32380 m2\nm2 IN A 127.0.0.1\n"),
        ),
    );
    dns.reload();
    let (ok, out, err) = agent_run.finish(Duration::from_secs(30));
    assert!(ok, "{err}");
    // The plan follows the start decision line.
    assert!(
        out.lines()
            .any(|l| l.starts_with("bootstrap member m2 of a new 3-member cluster")),
        "{out}"
    );
}

/// Review issue 8, item 11: the cluster publishes client records; a member whose own
/// client record is missing waited for nothing and advertised the default port 2379.
#[test]
fn issue8_client_records_are_waited_for() {
    let dir = TempDir::new();
    let body = format!("{LOOPBACK}_etcd-client._tcp IN SRV 0 0 12379 m0\n  IN SRV 0 0 22379 m1\n");
    let path = dir.write("cluster.test.zone", &zone(1, &body));
    let dns = Musterd::start(&[("cluster.test.", &path)]);
    let mut agent_run =
        Watched::spawn(plan_against(dns.addr).args(["--name", "m2", "--timeout", "60s"]));
    agent_run.wait_line(
        "3/3 members resolvable; m2.cluster.test. has no client SRV record at \
         _etcd-client._tcp.cluster.test. (other members have one)",
        2,
        Duration::from_secs(20),
    );
    dir.write(
        "cluster.test.zone",
        &zone(2, &format!("{body}_etcd-client._tcp IN SRV 0 0 32379 m2\n")),
    );
    dns.reload();
    let (ok, out, err) = agent_run.finish(Duration::from_secs(30));
    assert!(ok, "{err}");
    assert!(
        out.contains("--advertise-client-urls=http://m2.cluster.test:32379\n"),
        "{out}"
    );
}
