use super::*;
use crate::proto::types::Rclass;
use crate::proto::types::Rcode;
use crate::proto::types::Rtype;
use crate::zone::zonefile::parse_str;
use std::path::Path;

const IN: Rclass = Rclass::IN;
const ANY: Rclass = Rclass::ANY;
const NONE: Rclass = Rclass::NONE;

const ZONE: &str = "$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60
@ 300 IN NS ns1
ns1 IN A 127.0.0.1
www IN A 10.0.0.1
www IN A 10.0.0.2
alias IN CNAME www
_etcd-server._tcp IN SRV 0 0 2380 m0
m0 IN A 10.1.0.1
";

fn n(s: &str) -> Name {
    Name::parse(s, None).unwrap()
}

fn zone() -> ZoneData {
    let origin = n("d.test.");
    ZoneData::from_records(
        &origin,
        parse_str(ZONE, Path::new("t.zone"), &origin).unwrap(),
    )
    .unwrap()
}

fn key() -> Name {
    n("k.")
}

fn all() -> Policy {
    Policy {
        grants: vec![Grant {
            key: key(),
            names: NameMatch::Zone,
            types: TypeMatch::All,
        }],
    }
}

/// A record from `owner type class ttl rdata-text` (rdata parsed as zone-file text).
fn rr(owner: &str, t: Rtype, c: Rclass, ttl: u32, rdata: &str) -> UpdateRecord {
    let rdata = if rdata.is_empty() {
        Vec::new()
    } else {
        let origin = n("d.test.");
        let text = format!("$ORIGIN d.test.\nx 1 IN {} {rdata}\n", t);
        parse_str(&text, Path::new("r"), &origin)
            .unwrap()
            .remove(0)
            .rdata
    };
    UpdateRecord {
        owner: n(owner),
        rtype: t,
        class: c,
        ttl,
        rdata,
    }
}

fn req(prerequisites: Vec<UpdateRecord>, updates: Vec<UpdateRecord>) -> Request {
    Request {
        id: 1,
        zone: n("d.test."),
        zclass: Rclass::IN,
        prerequisites,
        updates,
        edns: false,
    }
}

fn run(z: &mut ZoneData, r: &Request) -> Result<Option<Changeset>, Rcode> {
    process(z, r, Some(&key()), &all(), &Limits::default())
        .map(|a| a.changeset)
        .map_err(|e| e.rcode)
}

fn rdatas(z: &ZoneData, owner: &str, t: Rtype) -> Vec<Vec<u8>> {
    z.node(&n(owner))
        .and_then(|n| n.set(t))
        .map(|s| s.rdatas().iter().map(|r| r.to_vec()).collect())
        .unwrap_or_default()
}

fn a(ip: [u8; 4]) -> Vec<u8> {
    ip.to_vec()
}

#[test]
fn every_prerequisite_kind_has_its_exact_rcode_and_changes_nothing() {
    let add = || vec![rr("new.d.test.", Rtype::A, IN, 60, "10.9.9.9")];
    let cases: Vec<(UpdateRecord, Result<(), Rcode>)> = vec![
        // Name is in use.
        (rr("www.d.test.", Rtype::ANY, ANY, 0, ""), Ok(())),
        (
            rr("nope.d.test.", Rtype::ANY, ANY, 0, ""),
            Err(Rcode::NXDOMAIN),
        ),
        // An empty non-terminal is not in use (RFC 2136 §2.4.4).
        (
            rr("_tcp.d.test.", Rtype::ANY, ANY, 0, ""),
            Err(Rcode::NXDOMAIN),
        ),
        // Name is not in use.
        (rr("nope.d.test.", Rtype::ANY, NONE, 0, ""), Ok(())),
        (
            rr("www.d.test.", Rtype::ANY, NONE, 0, ""),
            Err(Rcode::YXDOMAIN),
        ),
        // RRset exists (value independent).
        (rr("www.d.test.", Rtype::A, ANY, 0, ""), Ok(())),
        (
            rr("www.d.test.", Rtype::AAAA, ANY, 0, ""),
            Err(Rcode::NXRRSET),
        ),
        // RRset does not exist.
        (rr("www.d.test.", Rtype::AAAA, NONE, 0, ""), Ok(())),
        (
            rr("www.d.test.", Rtype::A, NONE, 0, ""),
            Err(Rcode::YXRRSET),
        ),
        // Outside the zone.
        (rr("www.other.", Rtype::A, ANY, 0, ""), Err(Rcode::NOTZONE)),
        // TTL must be 0; data must be empty.
        (rr("www.d.test.", Rtype::A, ANY, 5, ""), Err(Rcode::FORMERR)),
        (
            rr("www.d.test.", Rtype::A, ANY, 0, "10.0.0.1"),
            Err(Rcode::FORMERR),
        ),
    ];
    for (p, want) in cases {
        let mut z = zone();
        let before = z.to_zone_file();
        let got = run(&mut z, &req(vec![p.clone()], add()));
        match want {
            Ok(()) => assert!(got.as_ref().is_ok_and(|c| c.is_some()), "{p:?}: {got:?}"),
            Err(rc) => {
                assert_eq!(got, Err(rc), "{p:?}");
                assert_eq!(z.to_zone_file(), before, "{p:?} changed the zone");
            }
        }
    }
}

#[test]
fn value_dependent_prerequisites_compare_whole_rrsets() {
    let add = || vec![rr("new.d.test.", Rtype::A, IN, 60, "10.9.9.9")];
    let pre = |ips: &[&str]| {
        ips.iter()
            .map(|ip| rr("www.d.test.", Rtype::A, IN, 0, ip))
            .collect::<Vec<_>>()
    };
    assert!(run(&mut zone(), &req(pre(&["10.0.0.2", "10.0.0.1"]), add())).is_ok());
    assert_eq!(
        run(&mut zone(), &req(pre(&["10.0.0.1"]), add())),
        Err(Rcode::NXRRSET)
    );
    assert_eq!(
        run(
            &mut zone(),
            &req(pre(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]), add())
        ),
        Err(Rcode::NXRRSET)
    );
    // Names in rdata compare without regard to case.
    let p = vec![rr("alias.d.test.", Rtype::CNAME, IN, 0, "WWW.d.test.")];
    assert!(run(&mut zone(), &req(p, add())).is_ok());
    // DHCID is opaque: one octet of difference is another value.
    let mut z = zone();
    run(
        &mut z,
        &req(
            vec![],
            vec![rr(
                "h.d.test.",
                Rtype::DHCID,
                IN,
                60,
                "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
            )],
        ),
    )
    .unwrap();
    let ok = vec![rr(
        "h.d.test.",
        Rtype::DHCID,
        IN,
        0,
        "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
    )];
    let other = vec![rr(
        "h.d.test.",
        Rtype::DHCID,
        IN,
        0,
        "BAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
    )];
    assert!(run(&mut z.clone(), &req(ok, add())).is_ok());
    assert_eq!(run(&mut z, &req(other, add())), Err(Rcode::NXRRSET));
}

#[test]
fn every_update_kind() {
    let mut z = zone();
    // Add, and the serial goes up by one.
    let cs = run(
        &mut z,
        &req(vec![], vec![rr("h.d.test.", Rtype::A, IN, 60, "10.0.0.9")]),
    )
    .unwrap()
    .unwrap();
    assert_eq!((cs.from_serial, cs.to_serial), (10, 11));
    assert_eq!(cs.added.len(), 2);
    assert_eq!(z.serial(), 11);
    // Delete one RR.
    run(
        &mut z,
        &req(
            vec![],
            vec![rr("www.d.test.", Rtype::A, NONE, 0, "10.0.0.1")],
        ),
    )
    .unwrap();
    assert_eq!(rdatas(&z, "www.d.test.", Rtype::A), vec![a([10, 0, 0, 2])]);
    // Delete an RRset.
    run(
        &mut z,
        &req(vec![], vec![rr("www.d.test.", Rtype::A, ANY, 0, "")]),
    )
    .unwrap();
    assert!(z.node(&n("www.d.test.")).is_none());
    // Delete everything at a name.
    run(
        &mut z,
        &req(
            vec![],
            vec![
                rr("h.d.test.", Rtype::TXT, IN, 60, "\"x\""),
                rr("h.d.test.", Rtype::ANY, ANY, 0, ""),
            ],
        ),
    )
    .unwrap();
    assert!(z.node(&n("h.d.test.")).is_none());
    assert_eq!(z.serial(), 14);
    // Deleting what is not there changes nothing: NOERROR, no serial bump.
    let r = run(
        &mut z,
        &req(vec![], vec![rr("gone.d.test.", Rtype::ANY, ANY, 0, "")]),
    );
    assert_eq!(r, Ok(None));
    assert_eq!(z.serial(), 14);
    // A duplicate add changes nothing either.
    let r = run(
        &mut z,
        &req(
            vec![],
            vec![rr("ns1.d.test.", Rtype::A, IN, 30, "127.0.0.1")],
        ),
    );
    assert_eq!(r, Ok(None));
}

#[test]
fn rfc2136_silent_ignores() {
    let before = zone().to_zone_file();
    for u in [
        // CNAME where other data exists, other data where a CNAME exists.
        rr("www.d.test.", Rtype::CNAME, IN, 60, "ns1"),
        rr("alias.d.test.", Rtype::A, IN, 60, "10.0.0.7"),
        // SOA deletes.
        rr("d.test.", Rtype::SOA, ANY, 0, ""),
        rr(
            "d.test.",
            Rtype::SOA,
            NONE,
            0,
            "ns1 hostmaster 10 3600 600 86400 60",
        ),
        // Apex NS RRset, last apex NS.
        rr("d.test.", Rtype::NS, ANY, 0, ""),
        rr("d.test.", Rtype::NS, NONE, 0, "ns1"),
        // A lower or equal serial.
        rr(
            "d.test.",
            Rtype::SOA,
            IN,
            300,
            "ns1 hostmaster 9 3600 600 86400 60",
        ),
        rr(
            "d.test.",
            Rtype::SOA,
            IN,
            300,
            "ns1 hostmaster 10 3600 600 86400 60",
        ),
        // SOA away from the apex.
        rr(
            "www.d.test.",
            Rtype::SOA,
            IN,
            300,
            "ns1 hostmaster 99 3600 600 86400 60",
        ),
    ] {
        let mut z = zone();
        assert_eq!(
            run(&mut z, &req(vec![], vec![u.clone()])),
            Ok(None),
            "{u:?}"
        );
        assert_eq!(z.to_zone_file(), before, "{u:?}");
    }
    // Delete all at the apex keeps the SOA and NS.
    let mut z = zone();
    run(
        &mut z,
        &req(
            vec![],
            vec![
                rr("d.test.", Rtype::TXT, IN, 60, "\"t\""),
                rr("d.test.", Rtype::ANY, ANY, 0, ""),
            ],
        ),
    )
    .unwrap();
    assert_eq!(rdatas(&z, "d.test.", Rtype::NS).len(), 1);
    assert_eq!(rdatas(&z, "d.test.", Rtype::TXT).len(), 0);
    // A CNAME replaces a CNAME.
    let mut z = zone();
    run(
        &mut z,
        &req(
            vec![],
            vec![rr("alias.d.test.", Rtype::CNAME, IN, 60, "ns1")],
        ),
    )
    .unwrap();
    assert_eq!(
        rdatas(&z, "alias.d.test.", Rtype::CNAME),
        vec![n("ns1.d.test.").as_wire().to_vec()]
    );
}

#[test]
fn a_higher_soa_serial_is_taken_and_wraps_by_rfc1982() {
    let mut z = zone();
    let cs = run(
        &mut z,
        &req(
            vec![],
            vec![rr(
                "d.test.",
                Rtype::SOA,
                Rclass::IN,
                300,
                "ns1 hostmaster 2000000000 3600 600 86400 60",
            )],
        ),
    )
    .unwrap()
    .unwrap();
    assert_eq!(cs.to_serial, 2_000_000_000);
    // RFC 1982: 4e9 is below 10 (more than 2^31 ahead), and 5 is above 4e9.
    assert!(!serial_gt(4_000_000_000, 10));
    assert!(serial_gt(5, 4_000_000_000));
    assert_eq!(serial_next(u32::MAX), 0);
    assert_eq!(serial_after(10, 20), 21);
    assert_eq!(serial_after(20, 10), 21);
    assert_eq!(serial_after(u32::MAX, 3), 4);
}

#[test]
fn all_or_nothing_outside_the_zone_and_malformed() {
    let before = zone().to_zone_file();
    let cases = [
        (
            vec![
                rr("ok.d.test.", Rtype::A, IN, 60, "10.0.0.1"),
                rr("x.other.", Rtype::A, IN, 60, "10.0.0.1"),
            ],
            Rcode::NOTZONE,
        ),
        (
            vec![
                rr("ok.d.test.", Rtype::A, IN, 60, "10.0.0.1"),
                rr("x.d.test.", Rtype::A, Rclass::ANY, 0, "10.0.0.1"),
            ],
            Rcode::FORMERR,
        ),
        (
            vec![
                rr("ok.d.test.", Rtype::A, IN, 60, "10.0.0.1"),
                rr("x.d.test.", Rtype::ANY, IN, 60, ""),
            ],
            Rcode::FORMERR,
        ),
        (
            vec![rr("x.d.test.", Rtype::A, Rclass::CH, 60, "10.0.0.1")],
            Rcode::FORMERR,
        ),
        (
            vec![UpdateRecord {
                owner: n("x.d.test."),
                rtype: Rtype::A,
                class: IN,
                ttl: 60,
                rdata: vec![1, 2, 3],
            }],
            Rcode::FORMERR,
        ),
    ];
    for (updates, want) in cases {
        let mut z = zone();
        assert_eq!(run(&mut z, &req(vec![], updates)), Err(want));
        assert_eq!(z.to_zone_file(), before);
    }
}

#[test]
fn limits_are_refused_and_undone() {
    let limits = Limits {
        max_rrset_records: 3,
        max_types_per_name: 2,
        max_zone_names: 7,
        max_update_records: 5,
    };
    let go = |updates: Vec<UpdateRecord>| {
        let mut z = zone();
        let before = z.to_zone_file();
        let r = process(&mut z, &req(vec![], updates), Some(&key()), &all(), &limits);
        assert_eq!(z.to_zone_file(), before);
        r.map(|_| ()).map_err(|e| (e.rcode, e.reason))
    };
    let refused = Err((Rcode::REFUSED, Reason::Limit));
    let ips = |k: u8| {
        (1..=k)
            .map(|i| {
                rr(
                    "www.d.test.",
                    Rtype::A,
                    Rclass::IN,
                    30,
                    &format!("10.0.0.{i}"),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(go(ips(4)), refused);
    assert_eq!(go(ips(6)), refused);
    let types = vec![
        rr("m0.d.test.", Rtype::TXT, Rclass::IN, 30, "\"a\""),
        rr("m0.d.test.", Rtype::AAAA, Rclass::IN, 30, "::1"),
    ];
    assert_eq!(go(types), refused);
    let names = (0..2)
        .map(|i| {
            rr(
                &format!("n{i}.d.test."),
                Rtype::A,
                Rclass::IN,
                30,
                "10.0.0.1",
            )
        })
        .collect();
    assert_eq!(go(names), refused);
}

#[test]
fn policies_exact_subdomain_wildcard_self_and_types() {
    let host = n("h1.d.test.");
    let p = Policy {
        grants: vec![
            Grant {
                key: host.clone(),
                names: NameMatch::SelfName,
                types: TypeMatch::Only(vec![Rtype::A, Rtype::AAAA]),
            },
            Grant {
                key: key(),
                names: NameMatch::Subdomain(n("dyn.d.test.")),
                types: TypeMatch::Default,
            },
            Grant {
                key: key(),
                names: NameMatch::Wildcard(n("*.w.d.test.")),
                types: TypeMatch::Default,
            },
            Grant {
                key: key(),
                names: NameMatch::Exact(n("x.d.test.")),
                types: TypeMatch::Only(vec![Rtype::TXT]),
            },
        ],
    };
    assert!(p.allows(&host, &n("H1.d.test."), Rtype::A));
    assert!(!p.allows(&host, &n("h2.d.test."), Rtype::A));
    assert!(!p.allows(&host, &n("h1.d.test."), Rtype::TXT));
    assert!(p.allows(&key(), &n("dyn.d.test."), Rtype::A));
    assert!(p.allows(&key(), &n("a.b.dyn.d.test."), Rtype::SRV));
    assert!(
        !p.allows(&key(), &n("dyn.d.test."), Rtype::NS),
        "NS and SOA need types = [\"ANY\"]"
    );
    assert!(p.allows(&key(), &n("a.w.d.test."), Rtype::A));
    assert!(!p.allows(&key(), &n("w.d.test."), Rtype::A));
    assert!(p.allows(&key(), &n("x.d.test."), Rtype::TXT));
    assert!(!p.allows(&key(), &n("x.d.test."), Rtype::A));
    // An update with one record outside the grant is refused whole.
    let mut z = zone();
    let r = process(
        &mut z,
        &req(
            vec![],
            vec![
                rr("h1.d.test.", Rtype::A, Rclass::IN, 60, "10.0.0.5"),
                rr("h2.d.test.", Rtype::A, Rclass::IN, 60, "10.0.0.6"),
            ],
        ),
        Some(&host),
        &p,
        &Limits::default(),
    );
    assert_eq!(
        r.map(|_| ()).map_err(|e| (e.rcode, e.reason)),
        Err((Rcode::REFUSED, Reason::Policy))
    );
    assert!(z.node(&n("h1.d.test.")).is_none());
    // Unsigned, and a key without any grant.
    assert_eq!(
        process(&mut z, &req(vec![], vec![]), None, &p, &Limits::default())
            .unwrap_err()
            .reason,
        Reason::Unsigned
    );
    assert_eq!(
        process(
            &mut z,
            &req(vec![], vec![]),
            Some(&n("other.")),
            &p,
            &Limits::default()
        )
        .unwrap_err()
        .reason,
        Reason::Policy
    );
}

#[test]
fn add_then_delete_on_an_unused_name_is_no_change() {
    // One message adds a record to a name that owns nothing and deletes it again (BIND
    // and Knot answer NOERROR): the name was saved for undo but is empty either side.
    let mut z = zone();
    let before = z.to_zone_file();
    for delete in [
        rr("new3.d.test.", Rtype::A, Rclass::NONE, 0, "10.0.0.9"),
        rr("new3.d.test.", Rtype::A, Rclass::ANY, 0, ""),
        rr("new3.d.test.", Rtype::ANY, Rclass::ANY, 0, ""),
    ] {
        let r = run(
            &mut z,
            &req(
                vec![],
                vec![
                    rr("new3.d.test.", Rtype::A, Rclass::IN, 300, "10.0.0.9"),
                    delete,
                ],
            ),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(z.to_zone_file(), before);
    }
    // The zone still takes updates.
    let cs = run(
        &mut z,
        &req(
            vec![],
            vec![rr("new3.d.test.", Rtype::A, Rclass::IN, 300, "10.0.0.9")],
        ),
    )
    .unwrap()
    .unwrap();
    assert_eq!((cs.from_serial, cs.to_serial), (10, 11));
}

#[test]
fn undo_restores_the_zone_exactly() {
    let mut z = zone();
    let before = z.to_zone_file();
    let applied = process(
        &mut z,
        &req(
            vec![],
            vec![
                rr("www.d.test.", Rtype::A, Rclass::ANY, 0, ""),
                rr("n.d.test.", Rtype::A, Rclass::IN, 5, "10.0.0.1"),
            ],
        ),
        Some(&key()),
        &all(),
        &Limits::default(),
    )
    .unwrap();
    assert_ne!(z.to_zone_file(), before);
    applied.undo(&mut z);
    assert_eq!(z.to_zone_file(), before);
    assert_eq!(z.record_count(), zone().record_count());
}

#[test]
fn changesets_replay_to_the_same_zone_and_round_trip() {
    let mut live = zone();
    let mut replayed = zone();
    let updates = [
        vec![
            rr("h.d.test.", Rtype::A, Rclass::IN, 60, "10.0.0.9"),
            rr(
                "h.d.test.",
                Rtype::DHCID,
                Rclass::IN,
                60,
                "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
            ),
        ],
        vec![rr("www.d.test.", Rtype::A, Rclass::IN, 99, "10.0.0.3")],
        vec![
            rr("www.d.test.", Rtype::A, Rclass::NONE, 0, "10.0.0.1"),
            rr("alias.d.test.", Rtype::ANY, Rclass::ANY, 0, ""),
        ],
    ];
    for u in updates {
        let cs = run(&mut live, &req(vec![], u.to_vec())).unwrap().unwrap();
        let cs = Changeset::decode(&cs.encode().unwrap()).unwrap();
        replayed.apply_changeset(&cs).unwrap();
    }
    assert_eq!(replayed.to_zone_file(), live.to_zone_file());
    // A TTL change is a removal and an addition; the RRset keeps one TTL.
    let www = live.node(&n("www.d.test.")).unwrap().set(Rtype::A).unwrap();
    assert_eq!(www.ttl, 99);
    // A changeset that does not start at the zone's serial is refused.
    let cs = run(
        &mut live.clone(),
        &req(
            vec![],
            vec![rr("q.d.test.", Rtype::A, Rclass::IN, 1, "10.0.0.1")],
        ),
    )
    .unwrap()
    .unwrap();
    let mut stale = zone();
    assert!(matches!(
        stale.apply_changeset(&cs),
        Err(DataError::SerialGap { .. })
    ));
}

#[test]
fn the_zone_file_written_back_reads_back_the_same() {
    let mut z = zone();
    run(
        &mut z,
        &req(
            vec![],
            vec![rr(
                "h.d.test.",
                Rtype::DHCID,
                Rclass::IN,
                60,
                "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
            )],
        ),
    )
    .unwrap();
    let text = z.to_zone_file();
    let origin = n("d.test.");
    let back = ZoneData::from_records(&origin, parse_str(&text, Path::new("w"), &origin).unwrap())
        .unwrap();
    assert_eq!(back.to_zone_file(), text);
    assert!(text.lines().nth(1).unwrap().contains("SOA"), "{text}");
}

#[test]
fn hand_edits_merge_with_updates_made_since_the_files_version() {
    let origin = n("d.test.");
    let mut served = zone();
    let base = served.clone();
    // An update after the file's version was written.
    run(
        &mut served,
        &req(
            vec![],
            vec![rr("h.d.test.", Rtype::A, Rclass::IN, 60, "10.0.0.9")],
        ),
    )
    .unwrap();
    // The operator edits the file (without the update): adds a record, removes one,
    // changes a TTL, keeps the serial.
    let edited = ZONE.replace("www IN A 10.0.0.2\n", "").replace(
        "m0 IN A 10.1.0.1",
        "m0 120 IN A 10.1.0.1\nedit IN TXT \"by hand\"",
    );
    let file = ZoneData::from_records(
        &origin,
        parse_str(&edited, Path::new("e"), &origin).unwrap(),
    )
    .unwrap();
    let cs = served.merge_edit(&base, &file).unwrap().unwrap();
    assert_eq!((cs.from_serial, cs.to_serial), (11, 12));
    served.apply_changeset(&cs).unwrap();
    assert_eq!(
        rdatas(&served, "h.d.test.", Rtype::A),
        vec![a([10, 0, 0, 9])],
        "the update stays"
    );
    assert_eq!(
        rdatas(&served, "www.d.test.", Rtype::A),
        vec![a([10, 0, 0, 1])]
    );
    assert_eq!(
        served
            .node(&n("m0.d.test."))
            .unwrap()
            .set(Rtype::A)
            .unwrap()
            .ttl,
        120
    );
    assert_eq!(rdatas(&served, "edit.d.test.", Rtype::TXT).len(), 1);
    // A file serial above the served one wins: max(file, served) + 1.
    let file = ZoneData::from_records(
        &origin,
        parse_str(
            &edited.replace(" 10 3600", " 500 3600"),
            Path::new("e"),
            &origin,
        )
        .unwrap(),
    )
    .unwrap();
    let cs = served.merge_edit(&base, &file).unwrap().unwrap();
    assert_eq!(cs.to_serial, 501);
    // The version itself, unedited: nothing to do.
    assert!(served.merge_edit(&served, &served).unwrap().is_none());
    assert!(base.merge_edit(&base, &base).unwrap().is_none());
}

#[test]
fn a_version_is_rebuilt_from_the_history_and_matches_its_digest() {
    let mut served = zone();
    let v0 = served.clone();
    let mut history = Vec::new();
    for (name, ip) in [("p.d.test.", "10.0.0.1"), ("q.d.test.", "10.0.0.2")] {
        let applied = run(
            &mut served,
            &req(vec![], vec![rr(name, Rtype::A, Rclass::IN, 60, ip)]),
        )
        .unwrap();
        history.push(applied.unwrap());
    }
    assert_ne!(served.digest(), v0.digest());
    let mut back = served.clone();
    for cs in history.iter().rev() {
        back.revert_changeset(cs).unwrap();
    }
    assert_eq!(back.digest(), v0.digest());
    assert_eq!(back.serial(), v0.serial());
    // Taken back out of the wrong version: a typed error, not a panic.
    assert!(v0.clone().revert_changeset(&history[1]).is_err());
}

#[test]
fn an_soa_changed_by_update_survives_an_edit_that_left_the_soa_alone() {
    // Issue 16: the SOA's rname, timers and TTL set by update came back to the file's.
    let origin = n("d.test.");
    let mut served = zone();
    let base = served.clone();
    run(
        &mut served,
        &req(
            vec![],
            vec![rr(
                "d.test.",
                Rtype::SOA,
                Rclass::IN,
                600,
                "ns1.d.test. admin.d.test. 2000 7200 900 604800 30",
            )],
        ),
    )
    .unwrap();
    let file = ZoneData::from_records(
        &origin,
        parse_str(
            &format!("{ZONE}extra IN A 10.9.9.9\n"),
            Path::new("e"),
            &origin,
        )
        .unwrap(),
    )
    .unwrap();
    let cs = served.merge_edit(&base, &file).unwrap().unwrap();
    served.apply_changeset(&cs).unwrap();
    let soa = served.soa_record().unwrap();
    assert_eq!(soa.ttl, 600);
    let text = crate::zone::zonefile::rdata_to_text(Rtype::SOA, &soa.rdata);
    assert!(
        text.contains("admin.d.test. 2001 7200 900 604800 30"),
        "{text}"
    );
}

#[test]
fn conflicting_ttls_refuse_the_edit() {
    let origin = n("d.test.");
    let mut served = zone();
    let base = served.clone();
    // An update raises www's TTL ...
    run(
        &mut served,
        &req(
            vec![],
            vec![rr("www.d.test.", Rtype::A, Rclass::IN, 900, "10.0.0.1")],
        ),
    )
    .unwrap();
    // ... and the edit lowers it.
    let edited = ZONE
        .replace("www IN A 10.0.0.1", "www 5 IN A 10.0.0.1")
        .replace("www IN A 10.0.0.2", "www 5 IN A 10.0.0.2");
    let file = ZoneData::from_records(
        &origin,
        parse_str(&edited, Path::new("e"), &origin).unwrap(),
    )
    .unwrap();
    let err = served.merge_edit(&base, &file).unwrap_err();
    assert!(err.to_string().contains("www.d.test."), "{err}");
    // Without a base, the file is taken as written: the update's record goes.
    let cs = served.replace_with(&file).unwrap();
    served.apply_changeset(&cs).unwrap();
    assert_ne!(served.digest(), file.digest(), "the serial differs");
    assert_eq!(served.records_missing_from(&file, 10).len(), 0);
}

/// Wire form: a signed-or-not UPDATE with compressed names in owner and rdata.
#[test]
fn parses_compressed_messages_and_refuses_malformed_ones() {
    let mut m = vec![0x12, 0x34, 0x28, 0x00, 0, 1, 0, 1, 0, 1, 0, 0];
    m.extend_from_slice(n("d.test.").as_wire()); // offset 12
    m.extend_from_slice(&[0, 6, 0, 1]);
    // Prerequisite: www (pointer to 12) ANY ANY 0.
    m.extend_from_slice(&[
        3, b'w', b'w', b'w', 0xc0, 12, 0, 255, 0, 255, 0, 0, 0, 0, 0, 0,
    ]);
    // Update: alias CNAME with rdata "ns1" + pointer to the zone name.
    m.extend_from_slice(&[
        5, b'a', b'l', b'i', b'a', b's', 0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 6, 3, b'n', b's',
        b'1', 0xc0, 12,
    ]);
    let r = parse(&m).unwrap();
    assert_eq!(r.zone, n("d.test."));
    assert_eq!(r.prerequisites[0].owner, n("www.d.test."));
    assert_eq!(r.updates[0].rdata, n("ns1.d.test.").as_wire());
    let (id, _, zone_section) = echo_of(&m);
    assert_eq!((id, zone_section.len()), (0x1234, 12));
    // ZOCOUNT 0 and 2, zone type not SOA, truncation: FORMERR.
    let mut bad = m.clone();
    bad[5] = 2;
    assert_eq!(parse(&bad), Err(FormatError::ZoneCount(2)));
    let mut bad = m.clone();
    bad[21] = 1;
    assert_eq!(parse(&bad), Err(FormatError::ZoneType(Rtype::A)));
    for cut in 12..m.len() {
        assert!(parse(&m[..cut]).is_err(), "cut at {cut}");
    }
    // A forward pointer is refused.
    let mut bad = m.clone();
    bad[47] = 50;
    assert!(parse(&bad).is_err());
}

/// A 65,536-record RRset in an updatable zone: loading it, diffing it and updating it
/// each take linear time (a scan per record made loading quadratic, minutes in a debug
/// build), and the index agrees with the RFC 2136 §1.1.1 comparison (names in rdata
/// without regard to case).
#[test]
fn a_huge_rrset_loads_diffs_and_updates_in_linear_time() {
    let origin = n("d.test.");
    let mut records = parse_str(ZONE, Path::new("t.zone"), &origin).unwrap();
    let mx = |i: u32| {
        let mut v = vec![0, 10];
        v.extend_from_slice(n(&format!("MX{i}.d.test.")).as_wire());
        v
    };
    for i in 0..65_536u32 {
        records.push(crate::testutil::record(
            "big.d.test.",
            Rtype::MX,
            300,
            mx(i),
        ));
    }
    // A duplicate differing only in case collapses into the first.
    let mut dup = mx(7);
    dup[2..].make_ascii_lowercase();
    records.push(crate::testutil::record(
        "big.d.test.",
        Rtype::MX,
        300,
        dup.clone(),
    ));
    let mut z = ZoneData::from_records(&origin, records).unwrap();
    assert_eq!(rdatas(&z, "big.d.test.", Rtype::MX).len(), 65_536);
    let set = z.node(&n("big.d.test.")).unwrap().set(Rtype::MX).unwrap();
    assert!(set.contains(&dup) && set.contains(&mx(65_535)) && !set.contains(&mx(65_536)));

    let before = z.clone();
    let applied = process(
        &mut z,
        &req(
            vec![],
            vec![rr(
                "big.d.test.",
                Rtype::MX,
                Rclass::NONE,
                0,
                "10 mx7.d.test.",
            )],
        ),
        Some(&key()),
        &all(),
        &Limits::default(),
    )
    .unwrap();
    let cs = applied.changeset.clone().unwrap();
    assert_eq!(
        (cs.removed.len(), cs.added.len()),
        (2, 1),
        "the SOAs and one MX"
    );
    assert_eq!(rdatas(&z, "big.d.test.", Rtype::MX).len(), 65_535);
    let diff = before.diff_to(&z);
    assert_eq!((diff.removed.len(), diff.added.len()), (2, 1));
    applied.undo(&mut z);
    assert_eq!(z.digest(), before.digest());
    assert!(z
        .node(&n("big.d.test."))
        .unwrap()
        .set(Rtype::MX)
        .unwrap()
        .contains(&mx(7)));
}
