//! End-to-end: `muster-agent backup` and `restore` (issue 18) against real etcd 3.4
//! members on loopback, with musterd serving the zone. A majority lost for good and
//! wiped is brought back by the same `restore` command on every host, started at random
//! moments; scheduled backups on every host take one snapshot per period; every safety
//! rail refuses what it should.
//!
//! Every step waits on something observable (a log line, `member list`, a key count),
//! never on a fixed sleep, except the deliberate spread of the restore starts. Needs root
//! (mount namespaces for /etc/hosts, see agent_support/mod.rs), etcd and etcdctl; outside
//! CI a missing one skips the test.

mod agent_support;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent_support::{agent, output, stop_all, wait_for, zone, Cluster, Member, Watched};
use muster_tests::{require_program, require_root, Musterd};

/// Bound for one step (bootstrap, restore); each takes seconds.
const STEP: Duration = Duration::from_secs(90);

fn can_run() -> bool {
    require_program("etcd")
        && require_program("etcdctl")
        && require_program("unshare")
        && require_root()
}

fn args(c: &Cluster, i: usize, ns: SocketAddr) -> Vec<String> {
    c.agent_args(i, ns)
}

/// Waits until `member list` at `eps` is exactly m0, m1, m2, all voting and healthy.
fn wait_three(c: &Cluster, logs: &[&Member]) {
    let want: Vec<(String, bool)> = ["m0", "m1", "m2"]
        .iter()
        .map(|n| (n.to_string(), false))
        .collect();
    let eps = c.endpoints();
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

fn bootstrap_three(c: &Cluster, ns: SocketAddr) -> Vec<Member> {
    let m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(c, i, ns), "60s"))
        .collect();
    wait_three(c, &m.iter().collect::<Vec<_>>());
    m
}

/// Writes `n` keys `key-NNNNN` in transactions of 100 puts (etcd allows 128 per txn).
fn write_keys(c: &Cluster, prefix: &str, n: usize) {
    for start in (0..n).step_by(100) {
        let mut body = String::from("\n");
        for k in start..(start + 100).min(n) {
            body.push_str(&format!("put {prefix}-{k:05} value-{k}\n"));
        }
        body.push_str("\n\n");
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", c.endpoints()))
            .args(["--dial-timeout=2s", "--command-timeout=10s", "txn"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl txn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body.as_bytes())
            .expect("write txn");
        let out = child.wait_with_output().expect("etcdctl txn");
        assert!(
            out.status.success(),
            "txn at {start}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Number of keys under `prefix`, read with a quorum read.
fn count(c: &Cluster, prefix: &str) -> u64 {
    let v = c.ctl_json(&c.endpoints(), &["get", prefix, "--prefix", "--limit", "1"]);
    v["count"].as_u64().unwrap_or(0)
}

/// The cluster ID in hex, from `member list`.
fn cluster_id(c: &Cluster) -> String {
    let v = c.ctl_json(&c.endpoints(), &["member", "list"]);
    format!(
        "{:x}",
        v["header"]["cluster_id"].as_u64().expect("cluster_id")
    )
}

fn backup_once(c: &Cluster, i: usize, dest: &Path) -> (bool, String, String) {
    output(
        agent()
            .arg("backup")
            .arg("--data-dir")
            .arg(c.data_dir(i))
            .arg("--to")
            .arg(dest),
    )
}

/// The snapshot IDs in `dest` (those with metadata), oldest first: by time, then
/// revision (two in one second compare "r10" before "r8" as text).
fn snapshots(dest: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dest)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .map(|n| n.trim_end_matches(".json").to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort_by_key(|id| {
        let mut parts = id.splitn(3, '-');
        let time = parts.next().unwrap_or_default().to_string();
        let rev: u64 = parts
            .next()
            .and_then(|r| r.strip_prefix('r'))
            .and_then(|r| r.parse().ok())
            .unwrap_or_default();
        (time, rev, id.clone())
    });
    v
}

fn restore_args(c: &Cluster, i: usize, ns: SocketAddr, from: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = args(c, i, ns);
    v.push("--from".into());
    v.push(from.display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Runs `restore` for member `i` to completion (for refusals: it must not reach etcd).
fn restore_refused(c: &Cluster, i: usize, ns: SocketAddr, from: &Path, extra: &[&str]) -> String {
    let mut a = vec!["restore".to_string()];
    a.extend(restore_args(c, i, ns, from, extra));
    a.extend(["--timeout".into(), "20s".into()]);
    let (ok, out, err) = c.agent_in_hosts(&a);
    assert!(!ok, "restore of m{i} must be refused:\n{out}\n{err}");
    err
}

/// Directories next to `dir` that a restore moved aside.
fn aside(dir: &Path) -> Vec<PathBuf> {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.before-restore-"))
        })
        .collect();
    v.sort();
    v
}

/// A few pseudo-random milliseconds below `max` (no rand crate needed for a spread).
fn jitter(max: u64) -> u64 {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(7);
    (n.wrapping_mul(6364136223846793005) >> 17) % max
}

#[test]
fn a_lost_majority_is_restored_by_one_command_on_every_host() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone_file = c.dir.write("cluster.test.zone", &zone(1, &c.records(&[])));
    let dns = Musterd::start(&[("cluster.test.", &zone_file)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns);
    let old_id = cluster_id(&c);
    let started = Instant::now();
    write_keys(&c, "key", 10_000);
    eprintln!("figure: 10,000 keys written in {:?}", started.elapsed());
    assert_eq!(count(&c, "key-"), 10_000);

    // The backup job runs on every host; only the leader takes the snapshot.
    let dest = c.dir.path().join("backups");
    let mut saved = 0;
    for i in 0..3 {
        let (ok, _, err) = backup_once(&c, i, &dest);
        assert!(ok, "backup on m{i}: {err}");
        if err.contains("backup: saved snapshot ") {
            saved += 1;
        } else {
            assert!(err.contains("is not the leader; leader "), "{err}");
        }
    }
    assert_eq!(saved, 1, "exactly one host (the leader) takes the snapshot");
    let ids = snapshots(&dest);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dest.join(format!("{}.json", ids[0]))).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["cluster_id"], old_id.as_str());
    assert_eq!(meta["members"].as_array().unwrap().len(), 3);
    assert!(meta["total_keys"].as_u64().unwrap() >= 10_000, "{meta}");
    let status = c.ctl_json(
        &c.endpoint(0),
        &[
            "snapshot",
            "status",
            &dest.join(format!("{}.db", ids[0])).display().to_string(),
        ],
    );
    assert_eq!(status["revision"], meta["revision"]);

    // Two members lost for good: killed, data dirs wiped. The third still runs alone.
    m[0].stop();
    m[1].stop();
    std::fs::remove_dir_all(c.data_dir(0)).unwrap();
    std::fs::remove_dir_all(c.data_dir(1)).unwrap();
    let err = restore_refused(&c, 2, ns, &dest, &[]);
    assert!(
        err.contains("etcd still runs on this host") && err.contains("stop it first"),
        "{err}"
    );
    m[2].stop();

    // The same command on every host, started at random moments within 3 s.
    let mut order = vec![0usize, 1, 2];
    order.rotate_left(jitter(3) as usize);
    let mut restored: Vec<(usize, Member)> = Vec::new();
    let mut last_start = Instant::now();
    for i in order {
        std::thread::sleep(Duration::from_millis(jitter(1500)));
        last_start = Instant::now();
        restored.push((
            i,
            c.spawn_command(i, "restore", restore_args(&c, i, ns, &dest, &[]), "60s"),
        ));
    }
    restored.sort_by_key(|(i, _)| *i);
    let mut m: Vec<Member> = restored.into_iter().map(|(_, m)| m).collect();
    wait_three(&c, &m.iter().collect::<Vec<_>>());
    eprintln!(
        "figure: last restore start to a healthy 3-member cluster in {:?}",
        last_start.elapsed()
    );
    for member in &m {
        let log = member.log_text();
        assert!(
            log.contains(&format!("muster-agent: restore: snapshot {} (", ids[0])),
            "{log}"
        );
        assert!(log.contains("muster-agent: decision: restore ("), "{log}");
    }
    assert_eq!(count(&c, "key-"), 10_000);
    let new_id = cluster_id(&c);
    assert_ne!(new_id, old_id, "a restore makes a new cluster");
    // The survivor's data dir was moved aside, not deleted; the wiped ones had none.
    let kept = aside(&c.data_dir(2));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("member").join("wal").exists());
    assert!(aside(&c.data_dir(0)).is_empty());

    // A restored member restarts like any other.
    m[0].stop();
    m[0] = c.spawn_with(0, args(&c, 0, ns), "60s");
    wait_three(&c, &m.iter().collect::<Vec<_>>());
    assert!(m[0].log_text().contains("decision: restart ("));
    assert_eq!(count(&c, "key-"), 10_000);
    stop_all(&mut m);

    // The manual path: data dirs made by `etcdctl snapshot restore` by hand (etcdctl's
    // default token) are started by the ordinary `exec`, which writes the plan.
    let initial: Vec<String> = (0..3)
        .map(|i| format!("m{i}=http://m{i}.cluster.test:{}", c.peer[i]))
        .collect();
    for i in 0..3 {
        let dir = c.data_dir(i);
        std::fs::rename(&dir, dir.with_extension("by-hand-aside")).unwrap();
        let (ok, _, err) = output(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["snapshot", "restore"])
                .arg(dest.join(format!("{}.db", ids[0])))
                .arg(format!("--name=m{i}"))
                .arg(format!("--initial-cluster={}", initial.join(",")))
                .arg(format!(
                    "--initial-advertise-peer-urls=http://m{i}.cluster.test:{}",
                    c.peer[i]
                ))
                .arg(format!("--data-dir={}", dir.display())),
        );
        assert!(ok, "etcdctl snapshot restore: {err}");
        assert!(!dir.join("muster-plan.json").exists());
    }
    let mut m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, args(&c, i, ns), "60s"))
        .collect();
    wait_three(&c, &m.iter().collect::<Vec<_>>());
    for (i, member) in m.iter().enumerate() {
        let log = member.log_text();
        assert!(
            log.contains(
                "has a WAL but no muster-plan.json (a data dir made by etcdctl snapshot restore?)"
            ) && log.contains(&format!(
                "which the records give member m{i} with token etcd-cluster"
            )) && log.contains("wrote "),
            "{log}"
        );
        assert!(c.data_dir(i).join("muster-plan.json").exists());
    }
    assert_eq!(count(&c, "key-"), 10_000);
    m[1].stop();
    m[1] = c.spawn_with(1, args(&c, 1, ns), "60s");
    wait_three(&c, &m.iter().collect::<Vec<_>>());
    assert!(
        m[1].log_text().contains("decision: restart ("),
        "{}",
        m[1].log_text()
    );
    stop_all(&mut m);
}

#[test]
fn scheduled_backups_and_every_refusal() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone_file = c.dir.write("cluster.test.zone", &zone(1, &c.records(&[])));
    let dns = Musterd::start(&[("cluster.test.", &zone_file)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns);

    // Every host runs the backup service; writes go on meanwhile.
    let dest = c.dir.path().join("backups");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", muster_tests::free_port())
        .parse()
        .unwrap();
    let mut loops: Vec<Watched> = (0..3)
        .map(|i| {
            let mut cmd = agent();
            cmd.arg("backup")
                .arg("--data-dir")
                .arg(c.data_dir(i))
                .arg("--to")
                .arg(&dest)
                .args(["--every", "1s", "--keep", "2"]);
            if i == 0 {
                cmd.args(["--metrics-listen", &metrics.to_string()]);
            }
            Watched::spawn(&mut cmd)
        })
        .collect();
    let mut n = 0;
    let saved = |loops: &[Watched]| -> usize {
        loops
            .iter()
            .map(|w| w.stderr().matches("backup: saved snapshot ").count())
            .sum()
    };
    let got = wait_for(Duration::from_secs(30), || {
        n += 1;
        let (ok, _, err) = c.ctl(&c.endpoints(), &["put", &format!("k{n}"), "v"]);
        assert!(ok, "{err}");
        std::thread::sleep(Duration::from_millis(300));
        (saved(&loops) >= 4).then_some(())
    });
    // m0's metrics: its rounds by outcome, and the store's newest snapshot (whoever took
    // it) a few seconds old at most.
    let rounds = ["saved", "skipped", "failed"].map(|o| {
        muster_tests::metric(
            metrics,
            &format!("muster_backup_rounds_total{{outcome=\"{o}\"}}"),
        )
    });
    let age = muster_tests::metric(metrics, "muster_backup_newest_snapshot_age_seconds");
    for w in &mut loops {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    let logs: Vec<String> = loops.iter().map(Watched::stderr).collect();
    assert!(
        rounds[0] + rounds[1] >= 1,
        "m0's rounds {rounds:?}:\n{}",
        logs[0]
    );
    // A round may end between the scrape and the kill.
    let logged = logs[0].matches("backup: saved snapshot ").count() as u64;
    assert!(
        (rounds[0]..=rounds[0] + 1).contains(&logged),
        "metrics say {} saved, the log {logged}:\n{}",
        rounds[0],
        logs[0]
    );
    assert!(age <= 30, "newest snapshot {age} s old");
    assert!(
        got.is_some(),
        "four snapshots were not taken:\n{}",
        logs.join("\n")
    );
    // One snapshot per period for the cluster, not one per host: the leader takes it,
    // the others skip (a leader change under load may move the job to another host).
    let saves = |l: &String| l.matches("backup: saved snapshot ").count();
    let periods = logs
        .iter()
        .map(|l| saves(l) + l.matches("backup: skipped: ").count())
        .max()
        .unwrap_or(0);
    let total: usize = logs.iter().map(saves).sum();
    assert!(
        total <= periods + 1,
        "{total} snapshots in {periods} periods:\n{}",
        logs.join("\n")
    );
    let skipping = logs
        .iter()
        .filter(|l| l.contains("is not the leader; leader "))
        .count();
    assert!(skipping >= 2, "{}", logs.join("\n"));
    let ids = snapshots(&dest);
    assert_eq!(ids.len(), 2, "--keep 2: {ids:?}\n{}", logs.join("\n"));
    assert!(logs
        .iter()
        .any(|l| l.contains("backup: removed old snapshots ")));
    // One more, by hand after a last write: the newest then holds everything.
    let (ok, _, err) = c.ctl(&c.endpoints(), &["put", "last", "write"]);
    assert!(ok, "{err}");
    for i in 0..3 {
        let (ok, _, err) = backup_once(&c, i, &dest);
        assert!(ok, "backup on m{i}: {err}");
    }
    let ids = snapshots(&dest);
    assert_eq!(ids.len(), 3, "no --keep, nothing removed: {ids:?}");
    let (older, newer) = (ids[0].clone(), ids[2].clone());

    // A restore while the cluster has quorum is refused (m0 down, m1 and m2 up).
    m[0].stop();
    let err = restore_refused(&c, 0, ns, &dest, &[]);
    assert!(
        err.contains("answers at")
            && err.contains("with quorum: a restore would fork a live cluster"),
        "{err}"
    );

    // Everything down: the older snapshot is older than m0's data.
    m[1].stop();
    m[2].stop();
    let err = restore_refused(&c, 0, ns, &dest, &["--snapshot", &older]);
    assert!(
        err.contains(&format!("snapshot {older} holds revision"))
            && err.contains("the restore would lose the newer writes")
            && err.contains("--force"),
        "{err}"
    );

    // A flipped byte is refused, named or not.
    let bad = c.dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    for ext in ["db", "json"] {
        std::fs::copy(
            dest.join(format!("{newer}.{ext}")),
            bad.join(format!("{newer}.{ext}")),
        )
        .unwrap();
    }
    let db = bad.join(format!("{newer}.db"));
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&db, bytes).unwrap();
    let err = restore_refused(&c, 0, ns, &bad, &["--snapshot", &newer]);
    assert!(err.contains("fails its checksum"), "{err}");
    let err = restore_refused(&c, 0, ns, &bad, &[]);
    assert!(err.contains("no snapshot passes its checksums"), "{err}");

    // m0 and m1 restore the newer snapshot; m2, told to take the older one, is refused
    // with the snapshot the others run; the same command without --snapshot then joins.
    let mut r: Vec<Member> = (0..2)
        .map(|i| c.spawn_command(i, "restore", restore_args(&c, i, ns, &dest, &[]), "60s"))
        .collect();
    let eps = c.endpoints_of(&[0, 1]);
    let formed = wait_for(STEP, || {
        let (ok, _, _) = c.ctl(&eps, &["endpoint", "health"]);
        ok.then_some(())
    });
    assert!(
        formed.is_some(),
        "{}",
        r.iter()
            .map(|m| m.log_text())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let err = restore_refused(&c, 2, ns, &dest, &["--snapshot", &older, "--force"]);
    // Named: the newest snapshot with the content the others restored (a backup of an
    // unchanged database can repeat the same bytes under a later ID).
    let sha8 = newer.rsplit('-').next().unwrap();
    assert!(
        err.contains("runs the cluster restored from snapshot ")
            && err.contains(&format!(
                "-{sha8}, but this host chose {older}: every host must restore the same snapshot"
            )),
        "{err}"
    );
    // As under systemd: restore --no-start, then the unit's ordinary exec starts etcd.
    let mut a = vec!["restore".to_string()];
    a.extend(restore_args(&c, 2, ns, &dest, &["--no-start"]));
    a.extend(["--timeout".into(), "20s".into()]);
    let (ok, _, err) = c.agent_in_hosts(&a);
    assert!(ok, "{err}");
    assert!(
        err.contains("already runs the restored cluster")
            && err.contains("--no-start: start etcd now"),
        "{err}"
    );
    r.push(c.spawn_with(2, args(&c, 2, ns), "60s"));
    wait_three(&c, &r.iter().collect::<Vec<_>>());
    assert!(r[2].log_text().contains("decision: restart ("));
    stop_all(&mut r);
    drop(m);
}

/// Overwrites the start of `db` (both bbolt meta pages) with garbage.
fn damage_db(db: &Path) {
    let mut bytes = std::fs::read(db).unwrap();
    for (i, b) in bytes.iter_mut().take(8192).enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(db, bytes).unwrap();
}

#[test]
fn a_damaged_data_dir_rejoins_with_quorum_and_asks_for_a_restore_without() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone_file = c.dir.write("cluster.test.zone", &zone(1, &c.records(&[])));
    let dns = Musterd::start(&[("cluster.test.", &zone_file)]);
    let ns = dns.addr;
    let mut m = bootstrap_three(&c, ns);
    write_keys(&c, "key", 300);
    let dest = c.dir.path().join("backups");
    for i in 0..3 {
        let (ok, _, err) = backup_once(&c, i, &dest);
        assert!(ok, "backup on m{i}: {err}");
    }
    let ids = snapshots(&dest);
    assert_eq!(ids.len(), 1);

    // m1's database is damaged while the others keep quorum: the same start moves it
    // aside and m1 rejoins under its name.
    m[1].stop();
    damage_db(&c.data_dir(1).join("member/snap/db"));
    m[1] = c.spawn_with(1, args(&c, 1, ns), "60s");
    wait_three(&c, &m.iter().collect::<Vec<_>>());
    let log = m[1].log_text();
    assert!(
        log.contains("member/snap/db has no valid meta page")
            && log.contains("moved the damaged data dir aside to")
            && log.contains("decision: join ("),
        "{log}"
    );
    let (ok, out, err) = c.ctl(&c.endpoint(1), &["get", "key-00299", "--print-value-only"]);
    assert!(ok && out.trim() == "value-299", "{out}{err}");

    // Everything down and m0's database damaged: nothing is moved, and the newest
    // snapshot is named.
    stop_all(&mut m);
    damage_db(&c.data_dir(0).join("member/snap/db"));
    let mut a = args(&c, 0, ns);
    a.push("--backups".into());
    a.push(dest.display().to_string());
    let mut m0 = c.spawn_with(0, a, "20s");
    let exited = wait_for(Duration::from_secs(30), || {
        m0.child.try_wait().ok().flatten()
    });
    let log = m0.log_text();
    assert!(exited.is_some_and(|s| !s.success()), "{log}");
    assert!(
        log.contains("no member of its cluster answers with quorum, so it cannot rejoin: a restore is needed")
            && log.contains(&format!("the newest snapshot in {} is {}", dest.display(), ids[0]))
            && log.contains("nothing was moved"),
        "{log}"
    );
    assert!(c.data_dir(0).join("member/snap/db").exists());
    m0.stop();
}
