//! Stock etcd 3.4.23 bootstraps a 3-member TLS cluster with `--discovery-srv` against the
//! real musterd, and `etcdctl --discovery-srv` finds every member healthy.
//!
//! The scenario (tests/e2e/stock_etcd.sh) runs in a private network and mount namespace
//! (`unshare -n -m`): musterd on 127.0.0.1:53, a bind-mounted /etc/resolv.conf, members on
//! 127.0.0.11-13, certificates made by the test.

use std::process::Command;
use std::time::Instant;

use muster_tests::{bin_path, require_program, require_root, run, workspace_root, TempDir};

#[test]
fn stock_etcd_bootstraps_from_musterd_srv_records() {
    if !require_root() {
        return;
    }
    for p in [
        "etcd", "etcdctl", "openssl", "unshare", "ip", "dig", "mount",
    ] {
        if !require_program(p) {
            return;
        }
    }
    let dir = TempDir::new();
    let script = workspace_root().join("tests/e2e/stock_etcd.sh");
    let started = Instant::now();
    let (ok, out, err) = run(Command::new("timeout")
        .arg("120")
        .args(["unshare", "-n", "-m", "bash"])
        .arg(&script)
        .arg(bin_path("musterd"))
        .arg(dir.path()));
    assert!(
        ok && out.contains("STOCK-ETCD-OK"),
        "stock etcd bootstrap failed after {:?}\nstdout:\n{out}\nstderr:\n{err}",
        started.elapsed()
    );
    assert_eq!(out.matches("is healthy").count(), 3, "{out}");
    for m in ["m1", "m2", "m3"] {
        assert!(
            out.contains(&format!("https://{m}.etcd.test:2380")),
            "member {m} missing:\n{out}"
        );
    }
    eprintln!("stock etcd 3.4 bootstrap took {:?}", started.elapsed());
}
