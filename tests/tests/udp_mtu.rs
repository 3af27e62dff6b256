//! A UDP reply larger than the link MTU becomes a TC reply (musterd sends with DF set and
//! falls back to TC when the kernel refuses the datagram), and dig gets the whole answer
//! over TCP. The scenario is tests/e2e/udp_mtu.sh, run in a network namespace of its own
//! whose loopback has MTU 1280. Needs root; skipped otherwise (a failure under CI).

use std::time::Duration;

use muster_tests::{
    bin_path, require_program, require_root, run_in_namespaces, workspace_root, TempDir,
};

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
    let (status, text) = run_in_namespaces(
        &["-n"],
        &[],
        &workspace_root().join("tests/e2e/udp_mtu.sh"),
        &[&bin_path("musterd"), dir.path()],
        dir.path(),
        DEADLINE,
    );
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("UDP-MTU-OK"),
        "udp_mtu.sh failed ({status:?}); output:\n{text}"
    );
}
