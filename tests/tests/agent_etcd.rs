//! End-to-end: real etcd 3.4 members started through `muster-agent exec`, discovering each
//! other from records that musterd serves.
//!
//! Every member is 127.0.0.1 with its own ports, picked by `--name`; every test has its own
//! ports, data dirs and musterd, so the tests run concurrently. Needs root (each member
//! runs in a private mount namespace for /etc/hosts, see agent_support/mod.rs), etcd and
//! etcdctl; outside CI a missing one skips the test.

mod agent_support;

use std::time::Duration;

use agent_support::{listening, stop_all, wait_for, Cluster, Member};
use muster_tests::{require_program, require_root, Musterd};

/// How long a healthy 3-member loopback bootstrap may take. It takes a few seconds; this
/// bound only stops a broken test from hanging.
const BOOTSTRAP: Duration = Duration::from_secs(45);

fn can_run() -> bool {
    require_program("etcd")
        && require_program("etcdctl")
        && require_program("unshare")
        && require_root()
}

/// The names etcd reports in `member list`, sorted, and the IDs by name.
fn members(c: &Cluster, endpoints: &str) -> Vec<(String, u64)> {
    let list = c.ctl_json(endpoints, &["member", "list"]);
    let mut v: Vec<(String, u64)> = list["members"]
        .as_array()
        .expect("members array")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["ID"].as_u64().expect("member ID"),
            )
        })
        .collect();
    v.sort();
    v
}

/// The cluster ID each endpoint reports.
fn cluster_ids(c: &Cluster) -> Vec<u64> {
    (0..c.names.len())
        .map(|i| {
            let status = c.ctl_json(&c.endpoint(i), &["endpoint", "status"]);
            status[0]["Status"]["header"]["cluster_id"]
                .as_u64()
                .expect("cluster_id in endpoint status")
        })
        .collect()
}

/// The plan's members as (name, id), sorted.
fn plan_members(plan: &serde_json::Value) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = plan["cluster"]["members"]
        .as_array()
        .expect("plan members")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["id"].as_u64().expect("id"),
            )
        })
        .collect();
    v.sort();
    v
}

/// Checks that the running cluster is exactly the planned one.
fn assert_cluster_matches_plan(c: &Cluster, plan: &serde_json::Value) {
    let expected_id = plan["cluster"]["cluster_id"]
        .as_u64()
        .expect("plan cluster_id");
    assert_eq!(
        cluster_ids(c),
        vec![expected_id; c.names.len()],
        "every member reports the plan's cluster ID"
    );
    assert_eq!(
        members(c, &c.endpoints()),
        plan_members(plan),
        "member names and IDs are the plan's"
    );
}

/// Waits until every member's log shows `line` at least `rounds` times (one per
/// discovery round), or panics with the logs; a member that exits meanwhile fails too.
fn wait_for_rounds(members: &mut [Member], line: &str, rounds: usize) {
    for member in members.iter_mut() {
        let seen = wait_for(BOOTSTRAP, || {
            if member.log_text().matches(line).count() >= rounds {
                return Some(true);
            }
            (!member.running()).then_some(false)
        });
        assert_eq!(
            seen,
            Some(true),
            "{line:?} not seen {rounds} times:\n{}",
            member.log_text()
        );
    }
}

/// Starts every member at the same moment.
fn start_all(c: &Cluster, ns: std::net::SocketAddr, timeout: &str) -> Vec<Member> {
    (0..c.names.len())
        .map(|i| c.spawn(i, ns, timeout))
        .collect()
}

#[test]
fn three_members_bootstrap_from_plain_http_srv_records() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone = c.write_zone(1, &[]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let plan = c.plan_json(0, dns.addr);
    assert_eq!(
        plan["cluster"]["srv_record"],
        "_etcd-server._tcp.cluster.test."
    );
    assert_eq!(plan["cluster"]["scheme"], "http");

    let mut m = start_all(&c, dns.addr, "30s");
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    for member in &m {
        assert_eq!(
            member.comm(),
            "etcd",
            "muster-agent exec keeps its PID for etcd"
        );
    }
    assert_cluster_matches_plan(&c, &plan);
    // Every host planned the same cluster.
    for i in 1..3 {
        let other = c.plan_json(i, dns.addr);
        assert_eq!(
            other["cluster"]["cluster_id"],
            plan["cluster"]["cluster_id"]
        );
        assert_eq!(
            other["cluster"]["initial_cluster"],
            plan["cluster"]["initial_cluster"]
        );
    }
    let log = m[0].log_text();
    assert!(
        log.contains("bootstrap member m0 of 3 from _etcd-server._tcp.cluster.test."),
        "{log}"
    );
    stop_all(&mut m);
}

#[test]
fn a_missing_a_record_holds_every_member_back_until_the_zone_is_fixed() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone = c.write_zone(1, &[2]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let mut m = start_all(&c, dns.addr, "60s");

    // Several rounds, each seeing m2 without an address: nobody may start etcd.
    let line = "2/3 members resolvable; m2.cluster.test. has no A/AAAA record";
    wait_for_rounds(&mut m, line, 3);
    for member in m.iter_mut() {
        assert!(
            member.running(),
            "agent exited early:\n{}",
            member.log_text()
        );
        assert_eq!(
            member.comm(),
            "muster-agent",
            "etcd started with a partial cluster:\n{}",
            member.log_text()
        );
    }
    for port in &c.client {
        assert!(!listening(*port), "something listens on client port {port}");
    }
    c.write_zone(2, &[]);
    dns.reload();
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    let plan = c.plan_json(1, dns.addr);
    assert_cluster_matches_plan(&c, &plan);
    stop_all(&mut m);
}

#[test]
fn a_member_restarted_while_musterd_is_down_rejoins_with_its_data() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let zone = c.write_zone(1, &[]);
    let mut dns = Musterd::start(&[("cluster.test.", &zone)]);
    let ns = dns.addr;
    let plan = c.plan_json(1, ns);
    let mut m = start_all(&c, ns, "30s");
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    let (ok, _, err) = c.ctl(&c.endpoints(), &["put", "written-before", "restart"]);
    assert!(ok, "put: {err}");
    assert!(
        c.data_dir(1).join("muster-plan.json").is_file(),
        "the bootstrap plan is kept in the data dir"
    );

    m[1].stop();
    dns.stop();
    assert!(!listening(c.client[1]));
    m[1] = c.spawn(1, ns, "30s");
    let rejoined = wait_for(BOOTSTRAP, || {
        let (ok, out, _) = c.ctl(
            &c.endpoint(1),
            &[
                "get",
                "written-before",
                "--consistency=s",
                "--print-value-only",
            ],
        );
        (ok && out.trim() == "restart").then_some(())
    });
    assert!(
        rejoined.is_some(),
        "member m1 did not come back with its data:\n{}",
        m[1].log_text()
    );
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    let log = m[1].log_text();
    // musterd is down: the one bounded read of the records fails, the persisted plan
    // is used.
    assert!(
        log.contains("muster-agent: decision: restart (")
            && log.contains("so the URLs in muster-plan.json are used"),
        "{log}"
    );
    assert_eq!(m[1].comm(), "etcd");
    assert_cluster_matches_plan(&c, &plan);
    // A write through the restarted member reaches the others: it is a full member again.
    let (ok, _, err) = c.ctl(&c.endpoint(1), &["put", "written-after", "restart"]);
    assert!(ok, "put through m1: {err}");
    let (ok, out, _) = c.ctl(
        &c.endpoint(0),
        &["get", "written-after", "--print-value-only"],
    );
    assert!(ok && out.trim() == "restart", "{out}");
    stop_all(&mut m);
}

#[test]
fn ssl_records_give_a_tls_cluster_with_the_certificate_flags_passed_through() {
    if !can_run() || !require_program("openssl") {
        return;
    }
    let c = Cluster::new_tls(3);
    let zone = c.write_zone(1, &[]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let plan = c.plan_json(2, dns.addr);
    assert_eq!(
        plan["cluster"]["srv_record"],
        "_etcd-server-ssl._tcp.cluster.test."
    );
    assert_eq!(plan["cluster"]["scheme"], "https");
    assert_eq!(
        plan["advertise_client_urls"][0],
        format!("https://m2.cluster.test:{}", c.client[2])
    );

    let mut m = start_all(&c, dns.addr, "30s");
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    assert_cluster_matches_plan(&c, &plan);
    let list = c.ctl_json(&c.endpoint(0), &["member", "list"]);
    for member in list["members"].as_array().expect("members") {
        let url = member["peerURLs"][0].as_str().unwrap_or_default();
        assert!(
            url.starts_with("https://m") && url.contains(".cluster.test:"),
            "{url}"
        );
    }
    // Plain http is refused: the client port really is TLS.
    let (ok, _, _) = c.ctl(
        &format!("http://127.0.0.1:{}", c.client[0]),
        &["endpoint", "health"],
    );
    assert!(!ok, "the client port must not answer plain http");
    stop_all(&mut m);
}

/// Review issue 8, item 9: without --expect, a stable prefix of the records was taken for
/// the whole cluster (randomized trials: 10 of 30 runs ended split or undersized). Here
/// the records of a 3-member cluster are published one member at a time through musterd
/// reloads, and the first two sit unchanged for many rounds while all three agents are
/// already waiting. With the size given (`--expect 3`), the result is one 3-member
/// cluster; nothing starts before the last record. The zone carries no size record, so
/// musterd's completeness gate does not hide the partial sets: this is the agent's own
/// judgement, as it would be against any other DNS server.
#[test]
fn issue8_records_published_one_by_one_give_one_full_cluster() {
    if !can_run() {
        return;
    }
    let c = Cluster::new(3);
    let publish = |serial: u32, members: &[usize]| {
        let body = c.records_of(members, &[]);
        c.dir
            .write("cluster.test.zone", &agent_support::zone(serial, &body))
    };
    let zone = publish(1, &[0]);
    let dns = Musterd::start(&[("cluster.test.", &zone)]);
    let mut m: Vec<Member> = (0..3)
        .map(|i| c.spawn_with(i, c.agent_args(i, dns.addr), "60s"))
        .collect();
    wait_for_rounds(
        &mut m,
        "1/3 members resolvable; only 1 SRV record at _etcd-server._tcp.cluster.test., --expect is 3",
        2,
    );

    // m0 and m1: complete-looking and stable for many rounds.
    publish(2, &[0, 1]);
    dns.reload();
    wait_for_rounds(
        &mut m,
        "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.cluster.test., --expect is 3",
        4,
    );
    for member in m.iter_mut() {
        assert!(member.running(), "agent exited:\n{}", member.log_text());
        assert_eq!(
            member.comm(),
            "muster-agent",
            "etcd started with 2 of 3 members:\n{}",
            member.log_text()
        );
    }
    for port in &c.client {
        assert!(!listening(*port), "something listens on client port {port}");
    }

    publish(3, &[0, 1, 2]);
    dns.reload();
    c.wait_healthy(&m.iter().collect::<Vec<_>>(), BOOTSTRAP);
    let plan = c.plan_json(0, dns.addr);
    assert_eq!(plan_members(&plan).len(), 3);
    assert_cluster_matches_plan(&c, &plan);
    stop_all(&mut m);
}
