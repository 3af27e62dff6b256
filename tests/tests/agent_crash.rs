//! End-to-end (issue 19): joins that survive a crash, leaves that report the truth, and a
//! leave after other members moved — real etcd 3.4 members started through `muster-agent
//! exec` on loopback, musterd serving the zone.
//!
//! - A new member's etcd and promoter are killed with SIGKILL at several moments of its
//!   join (right after `member add`, as soon as etcd wrote its WAL, as a learner that
//!   started but was not promoted); the next ordinary start ends with every published
//!   member voting and no key lost.
//! - `leave` run again and again, its own etcd stopping as it applies the removal: every
//!   one exits 0 with the member gone and `member/` moved aside. The number of rounds is
//!   `MUSTER_LEAVE_RUNS` (default 10, to keep the test near half a minute;
//!   docs/agent-lifecycle.md gives the figure of a 50-round run).
//! - Grow to 4, move two members to new addresses, leave a third: the quorum check asks
//!   the members where the cluster says they are now.
//!
//! Every step waits on something observable, never on a fixed sleep. Needs root, etcd and
//! etcdctl (see agent_support/mod.rs); outside CI a missing one skips the test.

mod agent_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent_support::{stop_all, wait_for, zone, Cluster, Member};
use muster_tests::{require_program, require_root, Musterd};

/// Bound for one step (bootstrap, join and promotion, leave); each takes seconds.
const STEP: Duration = Duration::from_secs(60);

fn can_run() -> bool {
    require_program("etcd")
        && require_program("etcdctl")
        && require_program("unshare")
        && require_root()
}

/// The records of members `members`, member `i` at `addr[i]` (no size record: the first
/// members get `--expect`, a joiner needs no size).
fn publish(c: &Cluster, serial: u32, members: &[usize], addr: &[&str]) -> std::path::PathBuf {
    let mut body = String::new();
    for &i in members {
        let name = &c.names[i];
        body.push_str(&format!(
            "_etcd-server._tcp IN SRV 0 0 {} {name}\n_etcd-client._tcp IN SRV 0 0 {} {name}\n{name} IN A {}\n",
            c.peer[i], c.client[i], addr[i]
        ));
    }
    c.dir.write("cluster.test.zone", &zone(serial, &body))
}

/// Rewrites the hosts file every member's mount namespace binds, in place (the bind mount
/// holds the inode), with member `i` at `addr[i]`.
fn move_hosts(c: &Cluster, addr: &[&str]) {
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for (i, name) in c.names.iter().enumerate() {
        hosts.push_str(&format!("{} {name}.cluster.test\n", addr[i]));
    }
    std::fs::write(c.dir.path().join("hosts"), hosts).expect("rewrite hosts");
}

/// Agent flags for member `i`: with `--expect n` for a bootstrap, without for a joiner.
fn args(c: &Cluster, i: usize, ns: SocketAddr, expect: Option<usize>) -> Vec<String> {
    let mut v = c.agent_args_unsized(i, ns);
    if let Some(n) = expect {
        v.extend(["--expect".to_string(), n.to_string()]);
    }
    v
}

/// Client URLs of the members in `members` at `addr`, comma-separated.
fn eps(c: &Cluster, members: &[usize], addr: &[&str]) -> String {
    members
        .iter()
        .map(|&i| format!("http://{}:{}", addr[i], c.client[i]))
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until `member list` (asked at `eps`) is exactly `names`, all voting, and every
/// one reports healthy; panics with the logs otherwise.
fn wait_voting(c: &Cluster, eps: &str, names: &[&str], logs: &[&Member]) {
    let want: Vec<(String, bool)> = names.iter().map(|n| (n.to_string(), false)).collect();
    let ok = wait_for(STEP, || {
        let (healthy, _, _) = c.ctl(eps, &["endpoint", "health"]);
        (healthy && c.member_names(eps).as_ref() == Some(&want)).then_some(())
    });
    if ok.is_none() {
        panic!(
            "member list is not {want:?}: {:?}\n{}",
            c.member_names(eps),
            logs.iter()
                .map(|m| m.log_text())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn get(c: &Cluster, eps: &str, key: &str) -> String {
    let (ok, out, err) = c.ctl(eps, &["get", key, "--print-value-only"]);
    assert!(ok, "get {key}: {err}");
    out.trim().to_string()
}

fn leave(c: &Cluster, i: usize) -> (bool, String, String) {
    c.agent_in_hosts(&[
        "leave".to_string(),
        "--data-dir".into(),
        c.data_dir(i).display().to_string(),
    ])
}

/// The PIDs whose parent is `pid` (the promoter `exec` leaves behind is etcd's child).
fn children(pid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    let rest = s.rsplit_once(')')?.1.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// SIGKILL to the member's process (the agent, or etcd after the exec) and its children
/// (the promoter): a host that crashes.
fn crash(m: &mut Member) {
    let pid = m.child.id();
    // Stopped first, so that it cannot start the promoter between the look for its
    // children and the kill (an orphaned promoter would outlive the "crash").
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    unsafe {
        libc::kill(pid as i32, libc::SIGSTOP);
    }
    for child in children(pid) {
        // SAFETY: kill(2) on a child of a process this test started.
        unsafe {
            libc::kill(child, libc::SIGKILL);
        }
    }
    let _ = m.child.kill();
    let _ = m.child.wait();
}

/// `(name, learner, started)` of every member, from `member list` at `eps`.
fn entries(c: &Cluster, eps: &str) -> Vec<(String, bool, bool)> {
    let v = c.ctl_json(eps, &["member", "list"]);
    v["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
                m["clientURLs"].as_array().is_some_and(|a| !a.is_empty()),
            )
        })
        .collect()
}

/// Starts m0..m2 of `c` at once and waits until they form the cluster.
fn bootstrap_three(c: &Cluster, ns: SocketAddr, addr: &[&str]) -> Vec<Member> {
    let m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(c, i, ns, Some(3)), "60s"))
        .collect();
    wait_voting(
        c,
        &eps(c, &[0, 1, 2], addr),
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    m
}

/// Leaves m3 and checks the outcome: exit 0, gone from the cluster, its etcd stopped,
/// `member/` moved aside.
fn leave_m3(c: &Cluster, m3: &mut Member, eps3: &str) {
    let (ok, _, err) = leave(c, 3);
    assert!(ok, "leave m3: {err}\n{}", m3.log_text());
    assert!(err.contains("removed m3 ("), "{err}");
    wait_voting(c, eps3, &["m0", "m1", "m2"], &[&*m3]);
    assert!(
        wait_for(STEP, || (!m3.running()).then_some(())).is_some(),
        "etcd of m3 did not stop after leaving"
    );
    assert!(!c.data_dir(3).join("member").exists(), "{err}");
}

/// Issue 19, item 5: kill -9 of the new member's etcd and promoter at three moments of a
/// join; each time the next ordinary start ends with all four voting and the key there.
#[test]
fn a_join_killed_at_any_moment_ends_with_every_member_voting() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(4);
    let addr = ["127.0.0.1"; 4];
    let zone = publish(&c, 1, &[0, 1, 2], &addr);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns, &addr);
    let old = eps(&c, &[0, 1, 2], &addr);
    let (ok, _, err) = c.ctl(&old, &["put", "before", "crash"]);
    assert!(ok, "put: {err}");
    publish(&c, 2, &[0, 1, 2, 3], &addr);
    dns.reload();
    let four = ["m0", "m1", "m2", "m3"];

    // 1. Right after `member add`: the learner is in the cluster, etcd may not have
    // written anything yet.
    let mut m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    let added = wait_for(STEP, || {
        m3.log_text()
            .contains("muster-agent: added m3 to cluster")
            .then_some(())
    });
    assert!(added.is_some(), "{}", m3.log_text());
    crash(&mut m3);
    let first = m3.log_text();
    m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    wait_voting(&c, &old, &four, &[&m3]);
    eprintln!("crash after the add: {}", decision(&m3));
    assert_eq!(get(&c, &c.endpoint(3), "before"), "crash", "{first}");
    leave_m3(&c, &mut m3, &old);

    // 2. As soon as etcd wrote its WAL: the learner has usually not caught up yet.
    let mut m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    let wal = c.data_dir(3).join("member").join("wal");
    let start = Instant::now();
    while !wal.exists() && start.elapsed() < STEP && m3.running() {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(wal.exists(), "{}", m3.log_text());
    crash(&mut m3);
    let unstarted = entries(&c, &old)
        .iter()
        .any(|(name, learner, started)| *learner && !started && name.is_empty());
    m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    wait_voting(&c, &old, &four, &[&m3]);
    let log = m3.log_text();
    eprintln!(
        "crash at the WAL: learner listed as never started: {unstarted}; {}",
        decision(&m3)
    );
    if unstarted {
        assert!(log.contains("interrupted join of m3: cluster "), "{log}");
        assert!(log.contains("member.interrupted-"), "{log}");
        assert!(log.contains("removed the stale entry <unnamed> ("), "{log}");
    }
    assert_eq!(get(&c, &c.endpoint(3), "before"), "crash");
    leave_m3(&c, &mut m3, &old);

    // 3. A learner that started but was never promoted (its promoter is off, then the
    // host crashes): the restart starts the promoter, which promotes it.
    let mut no_promote = args(&c, 3, ns, None);
    no_promote.push("--no-promote".into());
    let mut m3 = c.spawn_with(3, no_promote, "60s");
    let learner = wait_for(STEP, || {
        entries(&c, &old)
            .contains(&("m3".to_string(), true, true))
            .then_some(())
    });
    assert!(learner.is_some(), "{}", m3.log_text());
    crash(&mut m3);
    m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
    wait_voting(&c, &old, &four, &[&m3]);
    let log = m3.log_text();
    assert!(log.contains("muster-agent: decision: restart ("), "{log}");
    assert!(log.contains("muster-agent: started the promoter"), "{log}");
    assert!(log.contains("promoted m3 to a voting member"), "{log}");
    // The restarted etcd names its registered peer URL (not etcd's default localhost).
    let argv = std::fs::read(format!("/proc/{}/cmdline", m3.child.id())).unwrap_or_default();
    let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
    assert!(
        argv.contains(&format!(
            "--initial-advertise-peer-urls=http://m3.cluster.test:{}",
            c.peer[3]
        )),
        "{argv}"
    );
    assert_eq!(get(&c, &c.endpoint(3), "before"), "crash");
    m.push(m3);
    stop_all(&mut m);
}

/// The decision line of a member's log, for the test output.
fn decision(m: &Member) -> String {
    m.log_text()
        .lines()
        .filter(|l| l.contains("decision: ") || l.contains("interrupted join"))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Issue 19, item 6: `leave` again and again while its own etcd stops as it applies the
/// removal: each exits 0, the member is gone and `member/` is moved aside.
#[test]
fn leave_exits_0_once_the_member_is_gone_every_time() {
    if !can_run() {
        return;
    }
    let runs: usize = std::env::var("MUSTER_LEAVE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let c = Cluster::new(4);
    let addr = ["127.0.0.1"; 4];
    let zone = publish(&c, 1, &[0, 1, 2], &addr);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns, &addr);
    publish(&c, 2, &[0, 1, 2, 3], &addr);
    dns.reload();
    let old = eps(&c, &[0, 1, 2], &addr);
    let four = ["m0", "m1", "m2", "m3"];
    let started = Instant::now();
    for run in 1..=runs {
        let mut m3 = c.spawn_with(3, args(&c, 3, ns, None), "60s");
        wait_voting(&c, &old, &four, &[&m3]);
        leave_m3(&c, &mut m3, &old);
        let aside = std::fs::read_dir(c.data_dir(3))
            .expect("data dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("member.left-"))
            })
            .count();
        assert_eq!(aside, run, "every leave moves member/ aside");
    }
    eprintln!(
        "figure: {runs} join+leave rounds in {:?}, every leave exit 0",
        started.elapsed()
    );
    stop_all(&mut m);
}

/// Issue 19, item 7: grow to 4, move m1 and m2 to new addresses, leave m3: the quorum
/// check asks m1 and m2 where the member list says they are now, and the leave passes.
#[test]
fn leave_after_two_members_moved_checks_them_where_they_are() {
    if !can_run()
        || !["127.0.0.2", "127.0.0.3"]
            .iter()
            .all(|a| std::net::TcpListener::bind((*a, 0)).is_ok())
    {
        return;
    }
    let c = Cluster::new(4);
    let mut addr = ["127.0.0.1"; 4];
    let zone = publish(&c, 1, &[0, 1, 2], &addr);
    let mut dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns, &addr);
    publish(&c, 2, &[0, 1, 2, 3], &addr);
    dns.reload();
    m.push(c.spawn_with(3, args(&c, 3, ns, None), "60s"));
    let four = ["m0", "m1", "m2", "m3"];
    wait_voting(
        &c,
        &eps(&c, &[0, 1, 2, 3], &addr),
        &four,
        &m.iter().collect::<Vec<_>>(),
    );
    let (ok, _, err) = c.ctl(&eps(&c, &[0, 1, 2, 3], &addr), &["put", "before", "moved"]);
    assert!(ok, "put: {err}");

    // m1 and m2 move, one after the other.
    for (i, to) in [(1, "127.0.0.2"), (2, "127.0.0.3")] {
        m[i].stop();
        addr[i] = to;
        publish(&c, 2 + i as u32, &[0, 1, 2, 3], &addr);
        dns.reload();
        move_hosts(&c, &addr);
        m[i] = c.spawn_with(i, args(&c, i, ns, None), "60s");
        wait_voting(
            &c,
            &eps(&c, &[0, 1, 2, 3], &addr),
            &four,
            &m.iter().collect::<Vec<_>>(),
        );
        assert!(m[i].log_text().contains("decision: move ("));
    }
    // m3's plan still has m1 and m2 at 127.0.0.1, where nothing listens now.
    dns.stop();
    let (ok, _, err) = leave(&c, 3);
    assert!(ok, "leave m3 after m1 and m2 moved: {err}");
    assert!(err.contains("removed m3 ("), "{err}");
    let three = eps(&c, &[0, 1, 2], &addr);
    wait_voting(
        &c,
        &three,
        &["m0", "m1", "m2"],
        &m.iter().collect::<Vec<_>>(),
    );
    assert!(!c.data_dir(3).join("member").exists());
    assert_eq!(get(&c, &three, "before"), "moved");
    stop_all(&mut m);
}
