//! A UDP reply larger than the link MTU becomes a TC reply (musterd sends with DF set and
//! falls back to TC when the kernel refuses the datagram), and dig gets the whole answer
//! over TCP. The scenario is tests/e2e/udp_mtu.sh, run in a network namespace of its own
//! whose loopback has MTU 1280. Needs root; skipped otherwise (a failure under CI).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use muster_tests::{bin_path, require_program, require_root, workspace_root, TempDir};

const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn reply_over_the_link_mtu_becomes_tc_and_tcp_gets_it_whole() {
    if !require_root() {
        return;
    }
    for p in ["unshare", "ip", "dig"] {
        if !require_program(p) {
            return;
        }
    }
    let dir = TempDir::new();
    let out_path = dir.path().join("script.out");
    let out = std::fs::File::create(&out_path).expect("create script.out");
    let err = out.try_clone().expect("clone script.out");
    let started = Instant::now();
    // --kill-child: if we have to kill unshare, musterd inside goes with it.
    let mut child = Command::new("unshare")
        .args(["-n", "-p", "-f", "--kill-child", "bash"])
        .arg(workspace_root().join("tests/e2e/udp_mtu.sh"))
        .arg(bin_path("musterd"))
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn unshare");
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for unshare") {
            break Some(st);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("UDP-MTU-OK"),
        "udp_mtu.sh failed ({status:?}); output:\n{text}"
    );
}
