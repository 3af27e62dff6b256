//! End-to-end: the cluster lifecycle as ordinary starts of `muster-agent exec` (issue 10)
//! against real etcd 3.4 members on loopback, with musterd serving the zone: all members
//! of a new cluster started at once bootstrap (nobody joins); a fourth member joins as a
//! learner and is promoted; a member whose data dir was wiped rejoins under its name;
//! `leave` shrinks the cluster and refuses to break quorum or remove the last member.
//!
//! Every step waits on something observable (a decision line, `member list`, a key read
//! back), never on a fixed sleep. Needs root (mount namespaces for /etc/hosts, see
//! agent_support/mod.rs), etcd and etcdctl; outside CI a missing one skips the test.

mod agent_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent_support::{stop_all, wait_for, zone, Cluster, Member};
use muster_tests::{require_program, require_root, Musterd};

/// Bound for one step (bootstrap, join and promotion, rejoin); each takes seconds.
const STEP: Duration = Duration::from_secs(60);

fn can_run() -> bool {
    require_program("etcd")
        && require_program("etcdctl")
        && require_program("unshare")
        && require_root()
}

/// Publishes the records of `members` (no size record: the first members get
/// `--expect`, a joiner needs no size).
fn publish(c: &Cluster, serial: u32, members: &[usize]) -> std::path::PathBuf {
    c.dir.write(
        "cluster.test.zone",
        &zone(serial, &c.records_of(members, &[])),
    )
}

/// Agent flags for member `i`: with `--expect n` for a bootstrap, without for a joiner.
fn args(c: &Cluster, i: usize, ns: SocketAddr, expect: Option<usize>) -> Vec<String> {
    let mut v = c.agent_args_unsized(i, ns);
    if let Some(n) = expect {
        v.extend(["--expect".to_string(), n.to_string()]);
    }
    v
}

/// Waits until `member list` (asked at `members`) is exactly `names`, all voting, and
/// every one of them reports healthy; panics with the logs otherwise.
fn wait_members(c: &Cluster, members: &[usize], names: &[&str], logs: &[&Member]) {
    let want: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), false)).collect();
    let eps = c.endpoints_of(members);
    let ok = wait_for(STEP, || {
        let (healthy, _, _) = c.ctl(&eps, &["endpoint", "health"]);
        (healthy && c.member_names(&eps).as_ref() == Some(&want)).then_some(())
    });
    if ok.is_none() {
        panic!(
            "member list is not {want:?}: {:?}\n{}",
            c.member_names(&eps),
            logs.iter()
                .map(|m| m.log_text())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The value of `key`, read with a quorum read through `endpoint`.
fn get(c: &Cluster, endpoint: &str, key: &str) -> String {
    let (ok, out, err) = c.ctl(endpoint, &["get", key, "--print-value-only"]);
    assert!(ok, "get {key}: {err}");
    out.trim().to_string()
}

fn leave(c: &Cluster, i: usize, extra: &[&str]) -> (bool, String, String) {
    let mut a = vec![
        "leave".to_string(),
        "--data-dir".into(),
        c.data_dir(i).display().to_string(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    c.agent_in_hosts(&a)
}

#[test]
fn grow_replace_and_shrink_are_ordinary_starts() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(4);
    let zone = publish(&c, 1, &[0, 1, 2]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;

    // All three at the same moment: every one bootstraps, nobody joins.
    let mut m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(&c, i, ns, Some(3)), "60s"))
        .collect();
    wait_members(
        &c,
        &[0, 1, 2],
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    for member in &m {
        let log = member.log_text();
        assert!(log.contains("muster-agent: decision: bootstrap ("), "{log}");
        assert!(!log.contains("decision: join"), "{log}");
    }
    let (ok, _, err) = c.ctl(&c.endpoints_of(&[0, 1, 2]), &["put", "before", "lifecycle"]);
    assert!(ok, "put: {err}");

    // Grow 3 -> 4: m3's records are published and m3 is started like any member.
    publish(&c, 2, &[0, 1, 2, 3]);
    dns.reload();
    let started = Instant::now();
    m.push(c.spawn_with(3, args(&c, 3, ns, None), "60s"));
    wait_members(
        &c,
        &[0, 1, 2, 3],
        &["m0", "m1", "m2", "m3"],
        &m.iter().collect::<Vec<_>>(),
    );
    eprintln!(
        "figure: m3 exec to voting member in {:?}",
        started.elapsed()
    );
    let log = m[3].log_text();
    assert!(
        log.contains("muster-agent: decision: join (a healthy cluster"),
        "{log}"
    );
    assert!(log.contains("as learner"), "{log}");
    assert!(log.contains("promoted m3 to a voting member"), "{log}");
    assert_eq!(get(&c, &c.endpoint(3), "before"), "lifecycle");

    // Replace: m1's data dir is wiped; the same start brings it back under its name.
    m[1].stop();
    std::fs::remove_dir_all(c.data_dir(1)).expect("wipe m1");
    m[1] = c.spawn_with(1, args(&c, 1, ns, Some(3)), "60s");
    wait_members(
        &c,
        &[0, 1, 2, 3],
        &["m0", "m1", "m2", "m3"],
        &m.iter().collect::<Vec<_>>(),
    );
    let log = m[1].log_text();
    assert!(
        log.contains("is stale (no data dir here): remove it and join again"),
        "{log}"
    );
    assert!(log.contains("removed the stale entry m1"), "{log}");
    assert_eq!(get(&c, &c.endpoint(1), "before"), "lifecycle");

    // A restart needs no DNS and is a restart, also for a member that joined.
    m[3].stop();
    m[3] = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    wait_members(&c, &[0, 1, 2, 3], &["m0", "m1", "m2", "m3"], &[&m[3]]);
    assert!(m[3].log_text().contains("decision: restart ("));

    // Shrink 4 -> 3 -> 2 with leave; etcd on the leaving host stops by itself.
    for (i, left) in [(3, vec![0, 1, 2]), (2, vec![0, 1])] {
        let (ok, _, err) = leave(&c, i, &[]);
        assert!(ok, "leave m{i}: {err}");
        assert!(err.contains(&format!("removed m{i} (")), "{err}");
        let names: Vec<String> = left.iter().map(|j| format!("m{j}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_members(&c, &left, &names, &m.iter().collect::<Vec<_>>());
        assert!(
            wait_for(STEP, || (!m[i].running()).then_some(())).is_some(),
            "etcd of m{i} did not stop after leaving"
        );
        assert!(!c.data_dir(i).join("member").exists());
    }
    assert_eq!(get(&c, &c.endpoints_of(&[0, 1]), "before"), "lifecycle");

    // Refusals: with m1 down, m0 leaving would leave m1 alone and down.
    m[1].stop();
    let (ok, _, err) = leave(&c, 0, &[]);
    assert!(!ok);
    assert!(
        err.contains("leave refused: removing m0 would break quorum: 0 of the 1 voting members left are up (m1 down), and 1 are needed"),
        "{err}"
    );
    stop_all(&mut m);
}

#[test]
fn the_last_member_does_not_leave_without_force() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(1);
    let zone = publish(&c, 1, &[0]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let mut m = vec![c.spawn_with(0, args(&c, 0, dns.addr, Some(1)), "30s")];
    wait_members(&c, &[0], &["m0"], &[&m[0]]);
    let (ok, _, err) = leave(&c, 0, &[]);
    assert!(!ok);
    assert!(
        err.contains("leave refused: m0 is the last member of the cluster: removing it would destroy the cluster and its data; stop etcd instead, or pass --force"),
        "{err}"
    );
    assert!(c.data_dir(0).join("member").exists());
    stop_all(&mut m);
}
