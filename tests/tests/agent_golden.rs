//! Golden files for what muster-agent hands to etcd: `plan --format json|env|text`, the
//! EnvironmentFile written by `env`, and etcd's argv from `exec --dry-run`, for a
//! bootstrap (http and https) and a restart. The files under tests/golden/agent/ are the
//! specification; `UPDATE_GOLDEN=1 cargo test --test agent_golden` rewrites them (review
//! the diff).
//!
//! Every target is 127.0.0.1 and the ports are fixed: nothing binds them, the plan only
//! names them. Temp paths are replaced by `/DATA` before comparing.

mod agent_support;

use std::path::Path;

use agent_support::{agent, output, zone, DOMAIN};
use muster_tests::{Musterd, TempDir};

/// Compares `actual` with `tests/golden/agent/NAME` (`UPDATE_GOLDEN=1` rewrites it).
fn golden(name: &str, actual: &str) {
    let path = muster_tests::workspace_root()
        .join("tests/golden/agent")
        .join(name);
    muster_tests::golden::assert_golden(&path, actual);
}

const ZONE: &str = "\
_etcd-server._tcp          IN SRV 0 0 12380 m0
                           IN SRV 0 0 22380 M1
                           IN SRV 0 0 32380 m2
_etcd-client._tcp          IN SRV 0 0 12379 m0
                           IN SRV 0 0 22379 m1
                           IN SRV 0 0 32379 m2
_etcd-server-ssl-prod._tcp IN SRV 0 0 2380 p0.prod
                           IN SRV 0 0 2380 p1.prod
                           IN SRV 0 0 2380 p2.prod
                           IN TXT \"muster-size=3\"
m0 IN A 127.0.0.1
m1 IN A 127.0.0.1
m2 IN A 127.0.0.1
p0.prod IN A 203.0.113.10
p1.prod IN A 127.0.0.1
p2.prod IN A 203.0.113.12
";

struct Fixture {
    dir: TempDir,
    dns: Musterd,
}

fn fixture() -> Fixture {
    let dir = TempDir::new();
    let path = dir.write("cluster.test.zone", &zone(1, ZONE));
    let dns = Musterd::start(&[("cluster.test.", &path)]);
    Fixture { dir, dns }
}

impl Fixture {
    /// Runs muster-agent with the nameserver; panics on failure; returns stdout.
    fn run(&self, args: &[&str]) -> String {
        // The subcommand comes first; anything after it may include `--` and etcd args.
        let (sub, rest) = args.split_first().expect("a subcommand");
        let ns = self.dns.addr.to_string();
        let (ok, out, err) = output(agent().args([sub, "--nameserver", ns.as_str()]).args(rest));
        assert!(ok, "muster-agent {args:?} failed:\n{err}");
        out
    }
}

/// The flags of member m1 of the plain-http cluster.
const M1: [&str; 8] = [
    "--domain",
    DOMAIN,
    "--name",
    "m1",
    "--expect",
    "3",
    "--data-dir",
    "/var/lib/etcd/m1",
];

#[test]
fn plan_formats() {
    let f = fixture();
    golden(
        "plan-http.json",
        &f.run(&[&["plan", "--format", "json"][..], &M1].concat()),
    );
    golden(
        "plan-http.env",
        &f.run(&[&["plan", "--format", "env"][..], &M1].concat()),
    );
    golden("plan-http.txt", &f.run(&[&["plan"][..], &M1].concat()));
}

#[test]
fn exec_argv_http() {
    let f = fixture();
    let argv = f.run(
        &[
            &["exec", "--dry-run", "--etcd-bin", "/usr/bin/etcd"][..],
            &M1,
            &["--", "--heartbeat-interval=50"],
        ]
        .concat(),
    );
    golden("exec-http.argv", &argv);
}

#[test]
fn exec_argv_https_with_srv_name_and_tls_flags() {
    let f = fixture();
    // p1.prod is the only target on this host: no --name needed; the size comes from the
    // zone's muster-size record.
    let argv = f.run(&[
        "exec",
        "--dry-run",
        "--domain",
        "Cluster.Test",
        "--srv-name",
        "prod",
        "--token",
        "prod-2026",
        "--data-dir",
        "/var/lib/etcd/prod",
        "--",
        "--peer-cert-file=/etc/etcd/peer.pem",
        "--peer-key-file=/etc/etcd/peer-key.pem",
        "--peer-trusted-ca-file=/etc/etcd/ca.pem",
        "--cert-file=/etc/etcd/server.pem",
        "--key-file=/etc/etcd/server-key.pem",
    ]);
    golden("exec-https.argv", &argv);
}

fn placeholder(text: &str, data: &Path) -> String {
    text.replace(&data.display().to_string(), "/DATA")
}

#[test]
fn env_file_then_restart_without_dns() {
    let f = fixture();
    let data = f.dir.path().join("data");
    let env_file = f.dir.path().join("run/etcd/bootstrap.env");
    let common = ["--domain", DOMAIN, "--name", "m1", "--expect", "3"];
    let mut args: Vec<&str> = vec!["env", "--out"];
    let env_s = env_file.display().to_string();
    let data_s = data.display().to_string();
    args.extend([env_s.as_str(), "--data-dir", data_s.as_str()]);
    args.extend(common);
    f.run(&args);
    golden(
        "env-bootstrap.env",
        &placeholder(
            &std::fs::read_to_string(&env_file).expect("env file"),
            &data,
        ),
    );
    let stored = std::fs::read_to_string(data.join("muster-plan.json")).expect("persisted plan");
    golden("muster-plan.json", &placeholder(&stored, &data));

    // etcd ran: now it is a restart. The records are read once, bounded; no nameserver
    // answers on port 9, so the persisted URLs are used.
    std::fs::create_dir_all(data.join("member/wal")).expect("wal");
    let restart = |args: &[&str]| {
        let (sub, rest) = args.split_first().expect("a subcommand");
        let fixed = ["--nameserver", "127.0.0.1:9", "--data-dir", data_s.as_str()];
        let (ok, out, err) = output(agent().arg(sub).args(fixed).args(rest));
        assert!(ok, "{err}");
        assert!(
            err.contains("decision: restart (")
                && err.contains("so the URLs in muster-plan.json are used"),
            "{err}"
        );
        out
    };
    restart(&["env", "--out", &env_s]);
    golden(
        "env-restart.env",
        &placeholder(
            &std::fs::read_to_string(&env_file).expect("env file"),
            &data,
        ),
    );
    golden(
        "exec-restart.argv",
        &placeholder(
            &restart(&["exec", "--dry-run", "--", "--heartbeat-interval=50"]),
            &data,
        ),
    );
    golden("plan-restart.txt", &placeholder(&restart(&["plan"]), &data));
}
