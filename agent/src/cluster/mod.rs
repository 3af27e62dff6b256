//! The pure core: SRV, TXT and address records plus this host's addresses in, a [`Plan`]
//! or a reason to wait (or to stop) out. No sockets, no clock, no files: everything here
//! is tested with data.
//!
//! [`judge`] runs the steps on one read of the records: [`settle`] (is the set complete:
//! one SRV set, a known size, every member published and resolving, client records),
//! [`identity`] (which member is this host), [`build`] (the etcd flags). [`records`]
//! holds the DNS words they share, [`error`] what can be wrong.
//!
//! Limitations: SRV priority and weight are ignored (etcd ignores them too); a target
//! `.` ("service not available", RFC 2782) is skipped.

pub mod build;
pub mod error;
pub mod identity;
pub mod records;
pub mod settle;

use std::net::IpAddr;

pub use build::Overrides;
pub use error::{PlanError, TargetAddrs};
pub use identity::{Identified, Identity};
pub use records::{
    ip_url, name_url, Answer, MemberName, RecordSet, Role, Scheme, Service, Srv, Txt,
};
pub use settle::{Candidate, Census, Members, Missing, Progress, Size, SizeSource, Unsettled};

use crate::plan::Plan;

/// Everything [`judge`] needs besides the records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--scheme`: read only that SRV set.
    pub scheme: Option<Scheme>,
    /// `--expect`: the number of members.
    pub expect: Option<usize>,
    /// `--name` / `--advertise-peer-url`.
    pub identity: Identity,
    /// Token, client port, data dir and URL overrides.
    pub overrides: Overrides,
}

/// Judges one read of the records: the bootstrap plan of this host, or what is still
/// missing (this host's own member included), or why waiting cannot help.
pub fn judge(
    service: &Service,
    rs: &RecordSet,
    local: &[IpAddr],
    opts: &PlanOptions,
) -> Result<Plan, Unsettled> {
    let mut census = settle::census(service, rs, opts.scheme, opts.expect)?;
    if let Err(e) = identity::identify(
        &census.record,
        census.scheme,
        &census.published,
        local,
        &opts.identity,
    ) {
        if e.is_final() {
            return Err(Unsettled::Fatal(e));
        }
        census.missing.push(Missing::NotPublished(e));
    }
    let members = census.complete()?;
    // The same members as the census above, all of them resolved now: identify again
    // only to get the final answer (it succeeded above, so this cannot fail).
    let me = identity::identify(
        &members.record,
        members.scheme,
        &members.members,
        local,
        &opts.identity,
    )
    .map_err(Unsettled::Fatal)?;
    Ok(build::plan(service, &members, &me, local, &opts.overrides))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{self, EtcdId};
    use crate::plan::{Bootstrap, Start};
    use std::collections::BTreeMap;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn srv(target: &str, port: u16) -> Srv {
        Srv {
            target: target.into(),
            port,
        }
    }

    fn txt(s: &[&str]) -> Txt {
        Txt(s.iter().map(|x| x.to_string()).collect())
    }

    fn service() -> Service {
        Service::new("Example.Test", None).unwrap()
    }

    const PLAIN: &str = "_etcd-server._tcp.example.test.";

    /// Three plain-http members m0..m2 at 10.0.0.{0,1,2}; no size published.
    fn records() -> RecordSet {
        let mut addresses = BTreeMap::new();
        for i in 0..3 {
            addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip(&format!("10.0.0.{i}"))]),
            );
        }
        RecordSet {
            server_ssl: Some(Answer::Empty),
            server_plain: Some(Answer::Records(
                (0..3)
                    .map(|i| srv(&format!("m{i}.example.test."), 2380))
                    .collect(),
            )),
            client_ssl: Answer::Empty,
            client_plain: Answer::Empty,
            sizes: BTreeMap::new(),
            addresses,
        }
    }

    /// The same with `"muster-size=3"` published.
    fn sized() -> RecordSet {
        let mut rs = records();
        rs.sizes
            .insert(PLAIN.into(), Answer::Records(vec![txt(&["muster-size=3"])]));
        rs
    }

    fn opts(expect: Option<usize>) -> PlanOptions {
        PlanOptions {
            expect,
            overrides: Overrides {
                default_client_port: 2379,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn named(name: &str, expect: Option<usize>) -> PlanOptions {
        PlanOptions {
            identity: Identity {
                name: Some(MemberName::parse(name).unwrap()),
                advertise_peer_url: None,
            },
            ..opts(expect)
        }
    }

    fn by_url(url: &str) -> PlanOptions {
        PlanOptions {
            identity: Identity {
                name: None,
                advertise_peer_url: Some(url.parse().unwrap()),
            },
            ..opts(Some(3))
        }
    }

    fn members(
        rs: &RecordSet,
        scheme: Option<Scheme>,
        expect: Option<usize>,
    ) -> Result<Members, Unsettled> {
        settle::census(&service(), rs, scheme, expect)?.complete()
    }

    fn settled(rs: &RecordSet) -> Members {
        members(rs, None, Some(3)).unwrap()
    }

    fn pending(rs: &RecordSet, scheme: Option<Scheme>, expect: Option<usize>) -> String {
        match members(rs, scheme, expect) {
            Err(Unsettled::Pending(p)) => p.to_string(),
            other => panic!("expected pending, got {other:?}"),
        }
    }

    fn fatal(rs: &RecordSet, expect: Option<usize>) -> PlanError {
        match members(rs, None, expect) {
            Err(Unsettled::Fatal(e)) => e,
            other => panic!("expected fatal, got {other:?}"),
        }
    }

    fn plan_for(rs: &RecordSet, local: &[&str], o: &PlanOptions) -> Result<Plan, Unsettled> {
        let local: Vec<IpAddr> = local.iter().map(|a| ip(a)).collect();
        judge(&service(), rs, &local, o)
    }

    fn plan_ok(rs: &RecordSet, local: &[&str], o: &PlanOptions) -> Plan {
        plan_for(rs, local, o).unwrap()
    }

    fn plan_fatal(rs: &RecordSet, local: &[&str], o: &PlanOptions) -> PlanError {
        match plan_for(rs, local, o) {
            Err(Unsettled::Fatal(e)) => e,
            other => panic!("expected fatal, got {other:?}"),
        }
    }

    fn plan_pending(rs: &RecordSet, local: &[&str], o: &PlanOptions) -> Progress {
        match plan_for(rs, local, o) {
            Err(Unsettled::Pending(p)) => p,
            other => panic!("expected pending, got {other:?}"),
        }
    }

    fn bootstrap(p: &Plan) -> &Bootstrap {
        match &p.start {
            Start::Bootstrap(b) => b,
            Start::Restart { .. } | Start::Join(_) => panic!("not a bootstrap plan"),
        }
    }

    #[test]
    fn plain_records_give_http_members() {
        let m = settled(&records());
        assert_eq!(m.scheme, Scheme::Http);
        assert_eq!(m.record, PLAIN);
        let names: Vec<_> = m.members.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["m0", "m1", "m2"]);
    }

    #[test]
    fn ssl_records_give_https_members() {
        let mut rs = records();
        rs.server_ssl = rs.server_plain.take();
        rs.server_plain = Some(Answer::Empty);
        assert_eq!(settled(&rs).scheme, Scheme::Https);
    }

    #[test]
    fn both_sets_are_an_error_naming_both_unless_scheme_picks() {
        let mut rs = records();
        rs.server_ssl = rs.server_plain.clone();
        let e = fatal(&rs, Some(3)).to_string();
        assert!(e.contains("_etcd-server-ssl._tcp.example.test. (https) and _etcd-server._tcp.example.test. (http)"), "{e}");
        assert!(e.contains("--scheme"), "{e}");
        assert_eq!(
            members(&rs, Some(Scheme::Http), Some(3)).unwrap().scheme,
            Scheme::Http
        );
    }

    #[test]
    fn no_records_names_both_owner_names() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Empty);
        assert_eq!(
            pending(&rs, None, Some(3)),
            "0/3 members resolvable; no SRV records at _etcd-server-ssl._tcp.example.test. or _etcd-server._tcp.example.test."
        );
        assert_eq!(
            pending(&rs, Some(Scheme::Http), None),
            "0 members resolvable; no SRV records at _etcd-server._tcp.example.test."
        );
    }

    #[test]
    fn a_target_without_address_holds_back_everyone() {
        let mut rs = sized();
        rs.addresses
            .insert("m2.example.test.".into(), Answer::Empty);
        assert_eq!(
            pending(&rs, None, Some(3)),
            "2/3 members resolvable; m2.example.test. has no A/AAAA record"
        );
        // The published size is the total without --expect.
        assert_eq!(
            pending(&rs, None, None),
            "2/3 members resolvable; m2.example.test. has no A/AAAA record"
        );
        rs.addresses
            .insert("m2.example.test.".into(), Answer::Failed("SERVFAIL".into()));
        assert_eq!(
            pending(&rs, None, None),
            "2/3 members resolvable; lookup of m2.example.test. failed: SERVFAIL"
        );
    }

    #[test]
    fn expect_counts_distinct_records() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.example.test.", 2380)); // duplicate: not a fourth member
        }
        assert_eq!(settled(&rs).members.len(), 3);
        assert_eq!(
            pending(&rs, None, Some(4)),
            "3/4 members resolvable; only 3 SRV records at _etcd-server._tcp.example.test., --expect is 4"
        );
        assert!(pending(&rs, None, Some(2))
            .contains("3 SRV records at _etcd-server._tcp.example.test. but --expect is 2"));
    }

    /// Review issue 8, item 9: without --expect a stable record set was taken for the
    /// whole cluster, so hosts that read a prefix of the records bootstrapped a smaller
    /// cluster. The size must be known.
    #[test]
    fn issue8_without_a_size_nothing_is_complete() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(vec![
            srv("m0.example.test.", 2380),
            srv("m1.example.test.", 2380),
        ]));
        let p = pending(&rs, None, None);
        assert_eq!(
            p,
            "2 members resolvable; the cluster size is unknown: pass --expect N (MUSTER_EXPECT) or \
             publish _etcd-server._tcp.example.test. TXT \"muster-size=N\"; a stable set of records \
             is not necessarily a complete one"
        );
        // The size from the zone: the two records are a prefix of three.
        rs.sizes.insert(
            PLAIN.into(),
            Answer::Records(vec![txt(&["v=spf1 -all"]), txt(&["muster-size=3"])]),
        );
        assert_eq!(
            pending(&rs, None, None),
            "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.example.test., muster-size is 3"
        );
        assert_eq!(members(&sized(), None, None).unwrap().members.len(), 3);
        // --expect that agrees with the record is fine.
        assert_eq!(members(&sized(), None, Some(3)).unwrap().members.len(), 3);
    }

    /// A server with a completeness gate (musterd) answers no SRV records while the set is
    /// incomplete, but serves the size record: the agent waits and says why, and still
    /// refuses a malformed size, or one that contradicts --expect, at once.
    #[test]
    fn a_withheld_set_is_waited_for_and_its_size_still_checked() {
        let mut rs = sized();
        rs.server_plain = Some(Answer::Empty);
        assert_eq!(
            pending(&rs, None, None),
            "0 members resolvable; _etcd-server._tcp.example.test. declares TXT \"muster-size=3\" \
             but no SRV records are served there yet: the server withholds an incomplete set \
             (`musterd check` on the server names what is missing); no SRV records at \
             _etcd-server-ssl._tcp.example.test. or _etcd-server._tcp.example.test."
        );
        assert!(matches!(
            fatal(&rs, Some(5)),
            PlanError::ExpectDisagrees { expect: 5, .. }
        ));
        rs.sizes.insert(
            PLAIN.into(),
            Answer::Records(vec![txt(&["muster-size=three"])]),
        );
        assert!(matches!(fatal(&rs, None), PlanError::MalformedSize { .. }));
    }

    #[test]
    fn expect_and_published_size_must_agree() {
        let e = fatal(&sized(), Some(5)).to_string();
        assert_eq!(
            e,
            "--expect is 5 but _etcd-server._tcp.example.test. publishes TXT \"muster-size=3\": \
             one of them is wrong; fix the record or --expect (or drop --expect and use the record)"
        );
    }

    #[test]
    fn malformed_or_conflicting_sizes_name_the_record() {
        for bad in [
            &["muster-size=three"][..],
            &["muster-size=0"],
            &["muster-size 3"],
            &["muster-size="],
            &["muster-size=3", "x"],
            &["muster-size=+3"],
        ] {
            let mut rs = records();
            rs.sizes
                .insert(PLAIN.into(), Answer::Records(vec![txt(bad)]));
            let e = fatal(&rs, None).to_string();
            assert!(
                e.starts_with("the TXT record \"muster-size")
                    && e.contains(" at _etcd-server._tcp.example.test. is not a cluster size")
                    && e.contains("exactly \"muster-size=N\""),
                "{bad:?}: {e}"
            );
        }
        let mut rs = records();
        rs.sizes.insert(
            PLAIN.into(),
            Answer::Records(vec![txt(&["muster-size=3"]), txt(&["muster-size=5"])]),
        );
        assert!(matches!(fatal(&rs, None), PlanError::SizeConflict { .. }));
        rs.sizes
            .insert(PLAIN.into(), Answer::Failed("SERVFAIL".into()));
        assert!(pending(&rs, None, Some(3))
            .contains("lookup of _etcd-server._tcp.example.test. TXT failed: SERVFAIL"));
    }

    /// Review issue 8, item 11: once the cluster publishes client records, a member
    /// whose own client record is missing must not start on the default port.
    #[test]
    fn issue8_client_records_are_part_of_complete() {
        let mut rs = records();
        rs.client_plain = Answer::Records(vec![
            srv("m0.example.test.", 12379),
            srv("m1.example.test.", 22379),
        ]);
        assert_eq!(
            pending(&rs, None, Some(3)),
            "3/3 members resolvable; m2.example.test. has no client SRV record at \
             _etcd-client._tcp.example.test. (other members have one)"
        );
        if let Answer::Records(r) = &mut rs.client_plain {
            r.push(srv("m2.example.test.", 32379));
        }
        let p = plan_ok(&rs, &["10.0.0.2"], &opts(Some(3)));
        assert_eq!(p.advertise_client_urls, ["http://m2.example.test:32379"]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.other.test.", 2380));
        }
        rs.addresses.insert(
            "m0.other.test.".into(),
            Answer::Records(vec![ip("10.0.0.9")]),
        );
        let e = fatal(&rs, None).to_string();
        assert!(
            e.starts_with("member name \"m0\" is taken by two SRV records"),
            "{e}"
        );
        assert!(
            e.contains("m0.example.test.:2380 and m0.other.test.:2380"),
            "{e}"
        );
    }

    #[test]
    fn one_target_on_two_ports_is_a_duplicate_name() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.example.test.", 2381));
        }
        assert!(matches!(fatal(&rs, None), PlanError::DuplicateName { .. }));
    }

    #[test]
    fn odd_labels_cannot_be_names() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(vec![srv("m\\0320.example.test.", 2380)]));
        rs.addresses.insert(
            "m\\0320.example.test.".into(),
            Answer::Records(vec![ip("10.0.0.1")]),
        );
        assert!(matches!(fatal(&rs, None), PlanError::BadMemberName { .. }));
    }

    #[test]
    fn root_target_is_skipped() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv(".", 2380));
        }
        assert_eq!(settled(&rs).members.len(), 3);
    }

    #[test]
    fn the_member_is_found_by_its_address() {
        let p = plan_ok(&records(), &["127.0.0.1", "10.0.0.1"], &opts(Some(3)));
        assert_eq!(p.name.as_str(), "m1");
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.1:2380"]);
        assert_eq!(p.listen_client_urls, ["http://10.0.0.1:2379"]);
        assert_eq!(p.advertise_client_urls, ["http://m1.example.test:2379"]);
        let c = bootstrap(&p);
        assert_eq!(c.matched_by, "local address 10.0.0.1");
        assert_eq!(
            c.initial_advertise_peer_urls,
            ["http://m1.example.test:2380"]
        );
        assert_eq!(
            c.initial_cluster.to_string(),
            "m0=http://m0.example.test:2380,m1=http://m1.example.test:2380,m2=http://m2.example.test:2380"
        );
        assert_eq!(c.token, "muster:example.test");
        assert_eq!(c.initial_cluster_state.to_string(), "new");
        assert!(c.members[1].this_host && !c.members[0].this_host);
    }

    #[test]
    fn every_host_plans_the_same_cluster() {
        let plans: Vec<Plan> = (0..3)
            .map(|i| plan_ok(&records(), &[&format!("10.0.0.{i}")], &opts(Some(3))))
            .collect();
        let c: Vec<&Bootstrap> = plans.iter().map(bootstrap).collect();
        assert!(c
            .iter()
            .all(|x| x.initial_cluster == c[0].initial_cluster && x.cluster_id == c[0].cluster_id));
        let ids: Vec<u64> = c.iter().map(|x| x.member_id.0).collect();
        assert_eq!(ids, c[0].members.iter().map(|m| m.id.0).collect::<Vec<_>>());
        assert_eq!(c[0].cluster_id, EtcdId(ids::cluster_id(&ids)));
        assert_eq!(
            c[0].members[0].id.0,
            ids::member_id(&["http://m0.example.test:2380"], "muster:example.test")
        );
    }

    #[test]
    fn no_self_match_waits_and_lists_targets_and_local_addresses() {
        let p = plan_pending(&records(), &["127.0.0.1", "192.0.2.7"], &opts(Some(3)));
        assert_eq!(
            p.to_string(),
            "3/3 members resolvable; no published SRV target resolves to an address of this host yet"
        );
        let e = p.details().join("\n");
        assert!(e.starts_with("no SRV target of _etcd-server._tcp.example.test. resolves to an address of this host"), "{e}");
        assert!(e.contains("  m0.example.test.:2380 -> 10.0.0.0\n"), "{e}");
        assert!(
            e.contains("  local addresses: 127.0.0.1, 192.0.2.7\n"),
            "{e}"
        );
        assert!(e.contains("fix: "), "{e}");
    }

    #[test]
    fn several_matches_ask_for_name() {
        let mut rs = records();
        for i in 0..3 {
            rs.addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip("127.0.0.1")]),
            );
        }
        let e = plan_fatal(&rs, &["127.0.0.1"], &opts(Some(3))).to_string();
        assert!(e.starts_with("3 SRV targets of _etcd-server._tcp.example.test. resolve to addresses of this host"), "{e}");
        assert!(
            e.contains("m2.example.test.:2380 -> 127.0.0.1 (local)"),
            "{e}"
        );
        assert!(e.contains("pass --name with one of m0, m1, m2"), "{e}");
        let p = plan_ok(&rs, &["127.0.0.1"], &named("m2", Some(3)));
        assert_eq!(p.name.as_str(), "m2");
        assert_eq!(bootstrap(&p).matched_by, "--name m2");
    }

    /// Review issue 8, item 5: `--name` is a DNS label, case-insensitive; the plan
    /// carries the records' (lower-case) spelling.
    #[test]
    fn issue8_name_case_does_not_matter() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(vec![
            srv("m0.example.test.", 2380),
            srv("m1.example.test.", 2380),
            srv("m2.example.test.", 2380),
        ]));
        let p = plan_ok(&rs, &["10.0.0.1"], &named("M1", Some(3)));
        assert_eq!(p.name.as_str(), "m1");
        assert_eq!(bootstrap(&p).matched_by, "--name m1");
    }

    /// Review issue 8, item 10: a host whose own record is not published yet waits for
    /// it, saying so, instead of failing at once.
    #[test]
    fn issue8_own_record_not_yet_published_is_waited_for() {
        let mut rs = sized();
        rs.server_plain = Some(Answer::Records(vec![
            srv("m0.example.test.", 2380),
            srv("m1.example.test.", 2380),
        ]));
        let p = plan_pending(&rs, &["10.0.0.2"], &named("m2", None));
        assert_eq!(
            p.to_string(),
            "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.example.test., \
             muster-size is 3; this host's member m2 (--name) is not published yet"
        );
        assert!(p.details()[0].starts_with("--name m2 matches no SRV target"));
        // Published but not resolvable yet: only the address is missing.
        let mut rs = sized();
        rs.addresses.remove("m2.example.test.");
        assert_eq!(
            plan_pending(&rs, &["10.0.0.2"], &named("m2", None)).to_string(),
            "2/3 members resolvable; m2.example.test. has no A/AAAA record"
        );
        // Without --name, by address.
        let p = plan_pending(&rs, &["10.0.0.2"], &opts(None));
        assert!(
            p.to_string()
                .ends_with("; no published SRV target resolves to an address of this host yet"),
            "{p}"
        );
        assert_eq!(
            plan_ok(&sized(), &["10.0.0.2"], &opts(None)).name.as_str(),
            "m2"
        );
    }

    #[test]
    fn loopback_members_differ_by_port() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(
            (0..3)
                .map(|i| srv(&format!("m{i}.example.test."), 12380 + i * 10000))
                .collect(),
        ));
        rs.client_plain = Answer::Records(
            (0..3)
                .map(|i| srv(&format!("m{i}.example.test."), 12379 + i * 10000))
                .collect(),
        );
        for i in 0..3 {
            rs.addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip("127.0.0.1"), ip("::1")]),
            );
        }
        let local = ["127.0.0.1", "::1"];
        let p = plan_ok(&rs, &local, &by_url("http://127.0.0.1:22380"));
        assert_eq!(p.name.as_str(), "m1");
        assert_eq!(
            p.listen_peer_urls,
            ["http://127.0.0.1:22380", "http://[::1]:22380"]
        );
        assert_eq!(
            p.listen_client_urls,
            ["http://127.0.0.1:22379", "http://[::1]:22379"]
        );
        assert_eq!(p.advertise_client_urls, ["http://m1.example.test:22379"]);
        assert_eq!(
            plan_ok(&rs, &local, &by_url("http://M2.example.test.:32380"))
                .name
                .as_str(),
            "m2"
        );
        let o = PlanOptions {
            identity: Identity {
                name: Some(MemberName::parse("m0").unwrap()),
                advertise_peer_url: Some("http://m2.example.test:32380".parse().unwrap()),
            },
            ..opts(Some(3))
        };
        assert!(matches!(
            plan_fatal(&rs, &local, &o),
            PlanError::IdentityConflict { .. }
        ));
        let p = plan_pending(&rs, &local, &by_url("http://m2.example.test:2380"));
        let e = p.details().join("\n");
        assert!(e.contains("e.g. http://m0.example.test:12380"), "{e}");
    }

    #[test]
    fn client_records_of_both_schemes() {
        let mut rs = records();
        rs.client_ssl = Answer::Records(vec![srv("m1.example.test.", 2379)]);
        rs.client_plain = Answer::Records(
            (0..3)
                .map(|i| srv(&format!("m{i}.example.test."), 4001))
                .collect(),
        );
        let p = plan_ok(&rs, &["10.0.0.1"], &opts(Some(3)));
        assert_eq!(
            p.advertise_client_urls,
            [
                "http://m1.example.test:4001",
                "https://m1.example.test:2379"
            ]
        );
        // Without any client record a member gets the default port.
        let p = plan_ok(&records(), &["10.0.0.2"], &opts(Some(3)));
        assert_eq!(p.advertise_client_urls, ["http://m2.example.test:2379"]);
        let mut rs = records();
        rs.client_plain = Answer::Failed("timeout".into());
        assert!(pending(&rs, None, Some(3))
            .contains("lookup of _etcd-client._tcp.example.test. failed: timeout"));
    }

    #[test]
    fn unknown_or_remote_name() {
        let p = plan_pending(&records(), &["10.0.0.1"], &named("m9", Some(3)));
        let e = p.details().join("\n");
        assert!(e.starts_with("--name m9 matches no SRV target"), "{e}");
        assert!(e.contains("pass one of m0, m1, m2"), "{e}");
        let e = plan_fatal(&records(), &["10.0.0.1"], &named("m2", Some(3))).to_string();
        assert!(e.starts_with("member m2 (m2.example.test.:2380) was picked by --name m2, but none of its addresses (10.0.0.2)"), "{e}");
    }

    #[test]
    fn token_and_overrides() {
        let mut o = opts(Some(3));
        o.overrides.token = Some("tkn".into());
        o.overrides.listen_client_urls = vec![
            "http://10.0.0.1:2379".into(),
            "http://127.0.0.1:2379".into(),
        ];
        let p = plan_ok(&records(), &["10.0.0.1"], &o);
        assert_eq!(p.listen_client_urls.len(), 2);
        let c = bootstrap(&p);
        assert_eq!(c.token, "tkn");
        assert_eq!(
            c.member_id.0,
            ids::member_id(&["http://m1.example.test:2380"], "tkn")
        );
    }
}
