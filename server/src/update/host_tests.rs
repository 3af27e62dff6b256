//! Host keys (`NameMatch::Host`): a key publishes its own addresses and its own SRV
//! records, and can neither add nor delete another host's.

use super::*;
use crate::proto::types::Rclass;
use crate::proto::types::Rcode;
use crate::proto::types::Rtype;
use crate::zone::zonefile::parse_str;
use std::path::Path;

const ZONE: &str = "$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60
@ 300 IN NS ns1
ns1 IN A 127.0.0.1
_etcd-server._tcp IN SRV 0 0 2380 infra0
_etcd-server._tcp IN SRV 0 0 2380 infra1
infra0 IN A 10.1.0.1
infra1 IN A 10.1.0.2
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
    n("infra0.")
}

fn policy() -> Policy {
    Policy {
        grants: vec![Grant {
            key: key(),
            names: NameMatch::Host {
                host: n("infra0.d.test."),
                srv_owners: vec![n("_etcd-server._tcp.d.test.")],
            },
            types: TypeMatch::Default,
        }],
    }
}

fn rr(owner: &str, t: Rtype, c: Rclass, ttl: u32, rdata: &str) -> UpdateRecord {
    let rdata = if rdata.is_empty() {
        Vec::new()
    } else {
        let text = format!("$ORIGIN d.test.\nx 1 IN {} {rdata}\n", t);
        parse_str(&text, Path::new("r"), &n("d.test."))
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

/// Runs one update signed by infra0's key; `Err(rcode)` when refused, and then the zone
/// must be unchanged.
fn run(updates: Vec<UpdateRecord>) -> Result<(), Rcode> {
    let mut z = zone();
    let before = z.to_zone_file();
    let r = Request {
        id: 1,
        zone: n("d.test."),
        zclass: Rclass::IN,
        prerequisites: vec![],
        updates,
        edns: false,
    };
    match process(&mut z, &r, Some(&key()), &policy(), &Limits::default()) {
        Ok(_) => Ok(()),
        Err(e) => {
            assert_eq!(z.to_zone_file(), before, "a refused update changed nothing");
            Err(e.rcode)
        }
    }
}

const SRV: &str = "_etcd-server._tcp.d.test.";

#[test]
fn a_host_key_publishes_itself() {
    // What `muster-agent register` sends: replace the addresses, own SRV by rdata.
    run(vec![
        rr("infra0.d.test.", Rtype::A, Rclass::ANY, 0, ""),
        rr("infra0.d.test.", Rtype::AAAA, Rclass::ANY, 0, ""),
        rr("infra0.d.test.", Rtype::A, Rclass::IN, 60, "10.9.9.9"),
        rr("infra0.d.test.", Rtype::AAAA, Rclass::IN, 60, "fd00::9"),
        rr(
            "infra0.d.test.",
            Rtype::DHCID,
            Rclass::IN,
            60,
            "AAIBY2/AuCccgoJbsaxcQc9TUapptP69lOjxfNuVAA2kjEA=",
        ),
        rr(SRV, Rtype::SRV, Rclass::NONE, 0, "0 0 2380 infra0"),
        rr(SRV, Rtype::SRV, Rclass::IN, 60, "0 0 2380 infra0.d.test."),
    ])
    .unwrap();
    // Deleting its own name entirely, and an SRV RRset that holds nothing.
    run(vec![rr("infra0.d.test.", Rtype::ANY, Rclass::ANY, 0, "")]).unwrap();
    run(vec![rr(
        "_etcd-client._tcp.d.test.",
        Rtype::SRV,
        Rclass::ANY,
        0,
        "",
    )])
    .unwrap_err();
}

#[test]
fn a_host_key_cannot_touch_another_host() {
    for (what, u) in [
        (
            "delete infra1's SRV",
            rr(SRV, Rtype::SRV, Rclass::NONE, 0, "0 0 2380 infra1"),
        ),
        (
            "add an SRV for infra1",
            rr(SRV, Rtype::SRV, Rclass::IN, 60, "0 0 2381 infra1"),
        ),
        (
            "delete the SRV RRset",
            rr(SRV, Rtype::SRV, Rclass::ANY, 0, ""),
        ),
        (
            "delete everything at the SRV owner",
            rr(SRV, Rtype::ANY, Rclass::ANY, 0, ""),
        ),
        (
            "delete infra1's A",
            rr("infra1.d.test.", Rtype::A, Rclass::ANY, 0, ""),
        ),
        (
            "add an A for infra1",
            rr("infra1.d.test.", Rtype::A, Rclass::IN, 60, "10.9.9.9"),
        ),
        (
            "delete infra1",
            rr("infra1.d.test.", Rtype::ANY, Rclass::ANY, 0, ""),
        ),
        (
            "TXT at its own name",
            rr("infra0.d.test.", Rtype::TXT, Rclass::IN, 60, "\"x\""),
        ),
        (
            "an A at the SRV owner",
            rr(SRV, Rtype::A, Rclass::IN, 60, "10.9.9.9"),
        ),
        (
            "SRV elsewhere",
            rr(
                "_etcd-server._tcp.x.d.test.",
                Rtype::SRV,
                Rclass::IN,
                60,
                "0 0 2380 infra0",
            ),
        ),
        ("the SOA", rr("d.test.", Rtype::SOA, Rclass::ANY, 0, "")),
    ] {
        assert_eq!(run(vec![u]), Err(Rcode::REFUSED), "{what}");
    }
    // One forbidden record refuses the whole update, its own records included.
    assert_eq!(
        run(vec![
            rr("infra0.d.test.", Rtype::A, Rclass::IN, 60, "10.9.9.9"),
            rr(SRV, Rtype::SRV, Rclass::NONE, 0, "0 0 2380 infra1"),
        ]),
        Err(Rcode::REFUSED)
    );
}

#[test]
fn a_key_names_its_host_relative_or_fully_qualified() {
    let origin = n("d.test.");
    for key in ["infra0.", "INFRA0.d.test.", "infra0.d.test."] {
        assert_eq!(
            crate::dynamic::key_host(&n(key), &origin).unwrap(),
            n("infra0.d.test."),
            "{key}"
        );
    }
    assert_eq!(
        crate::dynamic::key_host(&n("infra0.rack1."), &origin).unwrap(),
        n("infra0.rack1.d.test.")
    );
}
