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
    wait_members_at(c, &c.endpoints_of(members), names, logs);
}

/// Starts m0, m1 and m2 at the same moment with `--expect 3` and waits until they form
/// the cluster.
fn bootstrap_three(c: &Cluster, ns: SocketAddr) -> Vec<Member> {
    let m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(c, i, ns, Some(3)), "60s"))
        .collect();
    wait_members(
        c,
        &[0, 1, 2],
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    m
}

/// [`wait_members`] asking the client URLs `eps` (comma-separated).
fn wait_members_at(c: &Cluster, eps: &str, names: &[&str], logs: &[&Member]) {
    let want: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), false)).collect();
    let eps = eps.to_string();
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
    let mut m = bootstrap_three(&c, ns);
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

/// The records of members 0..n with member `i` at `addr[i]` and peer port `peer[i]`.
fn moved_zone(c: &Cluster, serial: u32, addr: &[&str], peer: &[u16]) -> std::path::PathBuf {
    let mut body = String::new();
    for (i, name) in c.names.iter().enumerate() {
        body.push_str(&format!(
            "_etcd-server._tcp IN SRV 0 0 {} {name}\n_etcd-client._tcp IN SRV 0 0 {} {name}\n{name} IN A {}\n",
            peer[i], c.client[i], addr[i]
        ));
    }
    c.dir.write("cluster.test.zone", &zone(serial, &body))
}

/// Rewrites the hosts file that every member's mount namespace binds, in place (the bind
/// mount holds the inode, so a rename would not be seen), with member `i` at `addr[i]`.
fn move_hosts(c: &Cluster, addr: &[&str]) {
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for (i, name) in c.names.iter().enumerate() {
        hosts.push_str(&format!("{} {name}.cluster.test\n", addr[i]));
    }
    std::fs::write(c.dir.path().join("hosts"), hosts).expect("rewrite hosts");
}

/// Peer URLs by member name, from `member list`.
fn peer_urls(c: &Cluster, eps: &str) -> Vec<(String, String)> {
    let v = c.ctl_json(eps, &["member", "list"]);
    let mut out: Vec<(String, String)> = v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["peerURLs"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn tcp_open(addr: &str, port: u16) -> bool {
    let a: SocketAddr = format!("{addr}:{port}").parse().expect("address");
    std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
}

/// Move (issue 10, item 5): m1's address changes (a new DHCP lease) while its data dir
/// survives. With name-based peer URLs only the listen URLs change; a new peer port is
/// recorded with `member update` before etcd starts; and a restart with DNS down uses
/// the persisted plan, which followed the move. Every target is on loopback: the whole of
/// 127.0.0.0/8 is local on Linux, so 127.0.0.2 can be bound.
#[test]
fn a_member_moves_to_a_new_address_and_a_new_peer_port() {
    if !can_run() || !tcp_bindable("127.0.0.2") {
        return;
    }
    let c = Cluster::new(3);
    let mut addr = ["127.0.0.1", "127.0.0.1", "127.0.0.1"];
    let mut peer = [c.peer[0], c.peer[1], c.peer[2]];
    let zone = moved_zone(&c, 1, &addr, &peer);
    let mut dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(&c, i, ns, Some(3)), "60s"))
        .collect();
    let eps = |addr: &[&str]| {
        (0..3)
            .map(|i| format!("http://{}:{}", addr[i], c.client[i]))
            .collect::<Vec<_>>()
            .join(",")
    };
    let all = |m: &[Member]| {
        m.iter()
            .map(|x| x.log_text())
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_members_at(
        &c,
        &eps(&addr),
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    let (ok, _, err) = c.ctl(&eps(&addr), &["put", "before", "move"]);
    assert!(ok, "put: {err}");

    // 1. New address, same name: the peer URL text is unchanged, nothing to update.
    m[1].stop();
    addr[1] = "127.0.0.2";
    moved_zone(&c, 2, &addr, &peer);
    dns.reload();
    move_hosts(&c, &addr);
    m[1] = c.spawn_with(1, args(&c, 1, ns, None), "60s");
    wait_members_at(
        &c,
        &eps(&addr),
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    let log = m[1].log_text();
    assert!(log.contains("muster-agent: decision: move ("), "{log}");
    assert!(
        log.contains(&format!(
            "listens at http://127.0.0.2:{p},http://127.0.0.2:{cl} (was http://127.0.0.1:{p},http://127.0.0.1:{cl}); keeps peer URL http://m1.cluster.test:{p}: its text did not change",
            p = peer[1],
            cl = c.client[1]
        )),
        "{log}"
    );
    assert!(
        !tcp_open("127.0.0.1", peer[1]),
        "m1 still listens on 127.0.0.1"
    );
    assert_eq!(
        get(&c, &format!("http://127.0.0.2:{}", c.client[1]), "before"),
        "move"
    );

    // 2. A new peer port: the URL text changes, so it is recorded with member update
    // through m0 and m2 before etcd starts. `plan` predicts it and changes nothing.
    let old_port = peer[1];
    peer[1] = muster_tests::free_port();
    moved_zone(&c, 3, &addr, &peer);
    dns.reload();
    let mut plan_args = vec!["plan".to_string()];
    plan_args.extend(args(&c, 1, ns, None));
    m[1].stop();
    let (ok, out, err) = c.agent_in_hosts(&plan_args);
    assert!(ok, "plan: {err}");
    assert!(
        out.contains(&format!(
            "  peer url       http://m1.cluster.test:{} (was http://m1.cluster.test:{old_port}; member update: planned)",
            peer[1]
        )),
        "{out}"
    );
    assert!(out.contains("decision: move ("), "{out}");
    m[1] = c.spawn_with(1, args(&c, 1, ns, None), "60s");
    wait_members_at(
        &c,
        &eps(&addr),
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    let log = m[1].log_text();
    assert!(
        log.contains(&format!(
            "updated the peer URL of m1 ({}) to http://m1.cluster.test:{}",
            member_id_hex(&c, 1),
            peer[1]
        )),
        "{log}"
    );
    assert!(
        log.contains("recorded with member update before etcd starts"),
        "{log}"
    );
    let want: Vec<(String, String)> = (0..3)
        .map(|i| {
            (
                format!("m{i}"),
                format!("http://m{i}.cluster.test:{}", peer[i]),
            )
        })
        .collect();
    assert_eq!(peer_urls(&c, &eps(&addr)), want, "{}", all(&m));
    assert!(tcp_open("127.0.0.2", peer[1]));

    // 3. DNS down: the restart uses the persisted plan, which followed both moves.
    dns.stop();
    m[1].stop();
    m[1] = c.spawn_with(1, args(&c, 1, ns, None), "60s");
    wait_members_at(
        &c,
        &eps(&addr),
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    let log = m[1].log_text();
    assert!(log.contains("muster-agent: decision: restart ("), "{log}");
    assert!(
        log.contains("so the URLs in muster-plan.json are used"),
        "{log}"
    );
    assert!(tcp_open("127.0.0.2", peer[1]));
    assert_eq!(peer_urls(&c, &eps(&addr)), want);
    assert_eq!(get(&c, &eps(&addr), "before"), "move");
    stop_all(&mut m);
}

/// True when this host can bind `addr` (127.0.0.2 on Linux; not on every other system).
fn tcp_bindable(addr: &str) -> bool {
    std::net::TcpListener::bind((addr, 0)).is_ok()
}

/// Member `i`'s ID (hex) from its persisted plan.
fn member_id_hex(c: &Cluster, i: usize) -> String {
    let text = std::fs::read_to_string(c.data_dir(i).join("muster-plan.json")).expect("plan");
    let v: serde_json::Value = serde_json::from_str(&text).expect("plan JSON");
    v["cluster"]["member_id_hex"]
        .as_str()
        .or_else(|| v["join"]["member_id_hex"].as_str())
        .expect("member id")
        .to_string()
}

/// Two new members started at the same moment (issue 10): etcd 3.4 takes one learner at a
/// time, so one waits its turn with a progress line; both end up voting. Before they
/// start, `plan` for one of them shows the join it would make (golden plan-join.txt,
/// with ports, cluster ID and paths replaced by placeholders).
#[test]
fn two_joiners_at_the_same_moment_both_end_up_voting() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(5);
    let zone = publish(&c, 1, &[0, 1, 2]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns);
    let (ok, _, err) = c.ctl(&c.endpoints_of(&[0, 1, 2]), &["put", "before", "joiners"]);
    assert!(ok, "put: {err}");

    publish(&c, 2, &[0, 1, 2, 3, 4]);
    dns.reload();
    let mut plan = vec!["plan".to_string()];
    plan.extend(args(&c, 3, ns, None));
    let (ok, out, err) = c.agent_in_hosts(&plan);
    assert!(ok, "plan: {err}");
    let cluster = c.ctl_json(&c.endpoint(0), &["member", "list"])["header"]["cluster_id"]
        .as_u64()
        .expect("cluster id");
    let mut text = out.replace(&c.data_dir(3).display().to_string(), "/DATA");
    text = text.replace(&format!("{cluster:x}"), "CLUSTER-ID");
    for i in 0..5 {
        text = text
            .replace(&c.peer[i].to_string(), &format!("PEER{i}"))
            .replace(&c.client[i].to_string(), &format!("CLIENT{i}"));
    }
    muster_tests::golden::assert_golden(
        &muster_tests::workspace_root().join("tests/golden/agent/plan-join.txt"),
        &text,
    );
    // plan changed nothing.
    assert_eq!(c.member_names(&c.endpoint(0)).map(|v| v.len()), Some(3));

    m.push(c.spawn_with(3, args(&c, 3, ns, None), "60s"));
    m.push(c.spawn_with(4, args(&c, 4, ns, None), "60s"));
    // Sample the membership while they join: never two learners at once (etcd 3.4's
    // limit, which the second joiner waits out), and in the end five voting members.
    let eps = c.endpoints_of(&[0, 1, 2]);
    let mut most_learners = 0;
    let mut seen: Vec<Vec<(String, bool)>> = Vec::new();
    let want: Vec<(String, bool)> = (0..5).map(|i| (format!("m{i}"), false)).collect();
    let done = wait_for(STEP, || {
        let names = c.member_names(&eps)?;
        most_learners = most_learners.max(names.iter().filter(|(_, l)| *l).count());
        if seen.last() != Some(&names) {
            seen.push(names.clone());
        }
        (names == want).then_some(())
    });
    let logs: Vec<String> = m[3..].iter().map(Member::log_text).collect();
    assert!(
        done.is_some(),
        "not five voting members: {seen:?}\n{}",
        logs.join("\n")
    );
    assert!(most_learners <= 1, "{seen:?}");
    wait_members(
        &c,
        &[0, 1, 2, 3, 4],
        &["m0", "m1", "m2", "m3", "m4"],
        &m.iter().collect::<Vec<_>>(),
    );
    for (i, log) in logs.iter().enumerate() {
        assert!(log.contains("muster-agent: decision: join ("), "{log}");
        assert!(
            log.contains(&format!("promoted m{} to a voting member", i + 3)),
            "{log}"
        );
    }
    // Usually the second add is refused while the first learner catches up; on a slow
    // machine the first may be promoted before the second asks.
    let waited = logs
        .iter()
        .any(|l| l.contains("another member is joining as a learner ("));
    eprintln!(
        "two joiners: one waited for the other's promotion: {waited}; memberships seen: {seen:?}"
    );
    assert_eq!(get(&c, &c.endpoint(4), "before"), "joiners");

    // m4's host is gone (a Kubernetes scale-down): m0 removes it by name; m0's own data
    // dir is left alone.
    m[4].stop();
    let (ok, _, err) = leave(&c, 0, &["--member", "m4"]);
    assert!(ok, "leave --member m4: {err}");
    assert!(err.contains("removed m4 ("), "{err}");
    wait_members(
        &c,
        &[0, 1, 2, 3],
        &["m0", "m1", "m2", "m3"],
        &m.iter().collect::<Vec<_>>(),
    );
    assert!(c.data_dir(0).join("member").exists());
    stop_all(&mut m);
}

/// Refusals (issue 10): a new member never joins a cluster without quorum and never
/// bootstraps while the whole existing cluster is down (its records have no size, as a
/// joiner's need none); then every member restarts with the DNS server down, and the new
/// member joins once the cluster runs.
#[test]
fn a_cluster_without_quorum_or_down_is_neither_joined_nor_bootstrapped_again() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(4);
    let zone = publish(&c, 1, &[0, 1, 2]);
    let mut dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns);
    let (ok, _, err) = c.ctl(&c.endpoints_of(&[0, 1, 2]), &["put", "before", "refusals"]);
    assert!(ok, "put: {err}");

    // m1 and m2 down: m0 answers without quorum. `plan` for the new m3 explains and
    // points at the restore procedure; nothing is added.
    m[1].stop();
    m[2].stop();
    publish(&c, 2, &[0, 1, 2, 3]);
    dns.reload();
    let mut plan = vec!["plan".to_string()];
    plan.extend(args(&c, 3, ns, None));
    plan.extend(["--timeout".to_string(), "3s".to_string()]);
    let (ok, _, err) = c.agent_in_hosts(&plan);
    assert!(!ok, "plan succeeded without quorum: {err}");
    assert!(
        err.contains("answers but has no quorum (no leader or no quorum read): no member is removed or added without quorum. If a majority of its members is lost for good, restore it: `muster-agent restore` on every host (README \"Backups and disaster recovery\")"),
        "{err}"
    );
    assert!(err.contains("etcd was not started"), "{err}");
    assert_eq!(
        c.member_names(&c.endpoint(0)).map(|v| v.len()),
        Some(3),
        "membership changed without quorum"
    );

    // The whole cluster down: m3's records are complete as a joiner's, not as a new
    // cluster's (no size), so it waits and gives up; it must not bootstrap alone.
    m[0].stop();
    let mut m3 = c.spawn_with(3, args(&c, 3, ns, None), "3s");
    assert!(
        wait_for(STEP, || (!m3.running()).then_some(())).is_some(),
        "m3 did not give up"
    );
    let log = m3.log_text();
    assert!(!m3.child.wait().expect("status").success(), "{log}");
    assert!(
        log.contains("no member answers at http://m0.cluster.test:"),
        "{log}"
    );
    assert!(log.contains("etcd was not started"), "{log}");
    assert!(!log.contains("decision: bootstrap"), "{log}");
    assert!(!c.data_dir(3).join("member").exists(), "{log}");

    // Every member restarts with the DNS server down: restarts need no DNS.
    dns.stop();
    for (i, member) in m.iter_mut().enumerate() {
        *member = c.spawn_with(i, args(&c, i, ns, Some(3)), "60s");
    }
    wait_members(
        &c,
        &[0, 1, 2],
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    for member in &m {
        let log = member.log_text();
        assert!(log.contains("muster-agent: decision: restart ("), "{log}");
        assert!(
            log.contains("so the URLs in muster-plan.json are used"),
            "{log}"
        );
    }

    // DNS back (a new server on a new port): m3 joins the running cluster.
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    m.push(c.spawn_with(3, args(&c, 3, dns.addr, None), "60s"));
    wait_members(
        &c,
        &[0, 1, 2, 3],
        &["m0", "m1", "m2", "m3"],
        &m.iter().collect::<Vec<_>>(),
    );
    assert_eq!(get(&c, &c.endpoint(3), "before"), "refusals");
    stop_all(&mut m);
}
