//! Model-based property test of dynamic update (RFC 2136): random sequences of UPDATE
//! messages, using every prerequisite kind of §2.4 and every operation kind of §2.5 (add,
//! delete an RRset, delete everything at a name, delete one RR; SOA and apex NS special
//! cases; CNAME beside other data), are applied both to a zone through
//! `muster_server::update::process` and to a plain in-memory model of RFC 2136 written
//! here. After every message the rcodes and the whole zones (owner, type, TTL, data,
//! names in data compared without regard to case) must agree; the changeset, replayed on
//! the zone as it was, must give the zone as it is; and the zone must build.
//!
//! The model follows RFC 2136 and the departures musterd documents in
//! docs/dns-answer-rules.md §1.10: prerequisites are checked in message order except that
//! value-dependent ones ("RRset exists with these values") are compared after all others;
//! the whole apex NS RRset is never deleted and "delete everything" at the apex keeps SOA
//! and NS; an SOA away from the apex is ignored; a CNAME add replaces the name's CNAME;
//! an update that changes nothing keeps the serial, otherwise it goes up by one unless
//! the update set a higher one.

use std::collections::{BTreeMap, BTreeSet};

use muster_server::proto::name::Name;
use muster_server::proto::rr::{Rclass, Record, Rtype};
use muster_server::proto::types::Rcode;
use muster_server::update::{
    process, Grant, Limits, NameMatch, Policy, Request, TypeMatch, UpdateRecord, ZoneData,
};
use muster_server::zone::Zone;
use proptest::prelude::*;

const ORIGIN: &str = "m.test.";
const ZONE: &str = "$ORIGIN m.test.
@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60
@ 300 IN NS ns1
ns1 60 IN A 127.0.0.1
a 60 IN A 10.0.0.1
x.b 60 IN TXT \"t1\"
c 60 IN CNAME a
";

/// Owners: the apex, names with and without records, an empty non-terminal (`b`), one
/// name in two spellings, and one outside the zone (the last).
const NAMES: [&str; 9] = [
    "m.test.",
    "ns1.m.test.",
    "a.m.test.",
    "A.M.TEST.",
    "b.m.test.",
    "x.b.m.test.",
    "c.m.test.",
    "d.m.test.",
    "elsewhere.test.",
];
const IN_ZONE: usize = NAMES.len() - 1;
const TYPES: [Rtype; 5] = [Rtype::A, Rtype::TXT, Rtype::CNAME, Rtype::NS, Rtype::MX];
const TTLS: [u32; 2] = [60, 120];
/// Record data per type (see [`rdata`]).
const RDATAS: usize = 4;

fn name(s: &str) -> Name {
    Name::parse(s, None).expect("a valid name")
}

fn origin() -> Name {
    name(ORIGIN)
}

/// Record data number `i` (0..RDATAS) of type `t`: names in two spellings (and the apex
/// NS's target), TXT in two cases.
fn rdata(t: Rtype, i: usize) -> Vec<u8> {
    let targets = ["a.m.test.", "A.m.TEST.", "d.m.test.", "ns1.m.test."];
    match t {
        Rtype::A => vec![10, 0, 0, 1 + i as u8],
        Rtype::TXT => {
            let s = ["t1", "T1", "t2", "t3"][i];
            let mut v = vec![s.len() as u8];
            v.extend_from_slice(s.as_bytes());
            v
        }
        Rtype::CNAME | Rtype::NS => name(targets[i]).as_wire().to_vec(),
        Rtype::MX => {
            let mut v = [10u16, 10, 20, 30][i].to_be_bytes().to_vec();
            v.extend_from_slice(name(targets[i]).as_wire());
            v
        }
        _ => unreachable!("no data pool for type {t}"),
    }
}

fn soa_rdata(serial: u32, minimum: u32) -> Vec<u8> {
    let mut v = name("ns1.m.test.").as_wire().to_vec();
    v.extend_from_slice(name("hostmaster.m.test.").as_wire());
    for n in [serial, 3600, 600, 86400, minimum] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

/// Data compared as RFC 2136 §1.1.1 says: the names in it without regard to case.
fn canon(t: Rtype, rd: &[u8]) -> Vec<u8> {
    match t {
        Rtype::CNAME | Rtype::NS | Rtype::SOA => rd.to_ascii_lowercase(),
        Rtype::MX => {
            let mut v = rd.to_vec();
            v[2..].make_ascii_lowercase();
            v
        }
        _ => rd.to_vec(),
    }
}

fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

fn serial_of(soa: &[u8]) -> u32 {
    let n = soa.len();
    u32::from_be_bytes([soa[n - 20], soa[n - 19], soa[n - 18], soa[n - 17]])
}

// ---------------------------------------------------------------------------------------
// What the generator makes

#[derive(Debug, Clone)]
enum Prereq {
    /// §2.4.4 "name is in use" (class ANY, type ANY).
    InUse(usize),
    /// §2.4.5 "name is not in use" (class NONE, type ANY).
    NotInUse(usize),
    /// §2.4.1 "RRset exists (value independent)".
    Exists(usize, usize),
    /// §2.4.3 "RRset does not exist".
    NotExists(usize, usize),
    /// §2.4.2 "RRset exists (value dependent)": these data, possibly repeated.
    Values(usize, usize, Vec<usize>),
    /// A prerequisite with a TTL (FORMERR).
    BadTtl(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// §2.5.1 add to an RRset.
    Add(usize, usize, usize, usize),
    /// §2.5.2 delete an RRset (type index 5 is SOA).
    DeleteSet(usize, usize),
    /// §2.5.3 delete all RRsets from a name.
    DeleteAll(usize),
    /// §2.5.4 delete an RR from an RRset.
    DeleteRr(usize, usize, usize),
    /// An SOA at the apex (or not): serial = current + `step`.
    Soa {
        at_apex: bool,
        step: u32,
        ttl: usize,
    },
    /// Delete the SOA record itself (class NONE).
    DeleteSoa,
    /// A delete with a TTL (FORMERR).
    BadDelete(usize),
    /// An add of type ANY (FORMERR).
    AddAny(usize),
}

#[derive(Debug, Clone)]
struct Msg {
    prereqs: Vec<Prereq>,
    ops: Vec<Op>,
}

fn prereq() -> impl Strategy<Value = Prereq> {
    let n = 0..NAMES.len();
    let t = 0..TYPES.len();
    prop_oneof![
        3 => n.clone().prop_map(Prereq::InUse),
        3 => n.clone().prop_map(Prereq::NotInUse),
        3 => (n.clone(), t.clone()).prop_map(|(n, t)| Prereq::Exists(n, t)),
        3 => (n.clone(), t.clone()).prop_map(|(n, t)| Prereq::NotExists(n, t)),
        4 => (0..IN_ZONE, t, proptest::collection::vec(0..RDATAS, 1..4))
            .prop_map(|(n, t, v)| Prereq::Values(n, t, v)),
        1 => n.prop_map(Prereq::BadTtl),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = 0..NAMES.len();
    let zn = 0..IN_ZONE;
    prop_oneof![
        10 => (n.clone(), 0..TYPES.len(), 0..RDATAS, 0..TTLS.len())
            .prop_map(|(n, t, r, ttl)| Op::Add(n, t, r, ttl)),
        3 => (zn.clone(), 0..TYPES.len() + 1).prop_map(|(n, t)| Op::DeleteSet(n, t)),
        2 => zn.clone().prop_map(Op::DeleteAll),
        5 => (zn.clone(), 0..TYPES.len(), 0..RDATAS).prop_map(|(n, t, r)| Op::DeleteRr(n, t, r)),
        2 => (any::<bool>(), prop_oneof![
                Just(0u32), Just(1), Just(2), Just(0x7fff_ffff), Just(0x8000_0000), Just(u32::MAX)
            ], 0..2usize)
            .prop_map(|(at_apex, step, ttl)| Op::Soa { at_apex, step, ttl }),
        1 => Just(Op::DeleteSoa),
        1 => zn.clone().prop_map(Op::BadDelete),
        1 => zn.prop_map(Op::AddAny),
    ]
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![
            3 => Just(Vec::new()),
            2 => proptest::collection::vec(prereq(), 1..4),
        ],
        proptest::collection::vec(op(), 0..5),
    )
        .prop_map(|(prereqs, ops)| Msg { prereqs, ops })
}

// ---------------------------------------------------------------------------------------
// The message as musterd reads it

fn rec(owner: usize, t: Rtype, c: Rclass, ttl: u32, rdata: Vec<u8>) -> UpdateRecord {
    UpdateRecord {
        owner: name(NAMES[owner]),
        rtype: t,
        class: c,
        ttl,
        rdata,
    }
}

fn to_request(m: &Msg, serial: u32) -> Request {
    let prerequisites = m
        .prereqs
        .iter()
        .flat_map(|p| match p {
            Prereq::InUse(n) => vec![rec(*n, Rtype::ANY, Rclass::ANY, 0, vec![])],
            Prereq::NotInUse(n) => vec![rec(*n, Rtype::ANY, Rclass::NONE, 0, vec![])],
            Prereq::Exists(n, t) => vec![rec(*n, TYPES[*t], Rclass::ANY, 0, vec![])],
            Prereq::NotExists(n, t) => vec![rec(*n, TYPES[*t], Rclass::NONE, 0, vec![])],
            Prereq::Values(n, t, rs) => rs
                .iter()
                .map(|r| rec(*n, TYPES[*t], Rclass::IN, 0, rdata(TYPES[*t], *r)))
                .collect(),
            Prereq::BadTtl(n) => vec![rec(*n, Rtype::ANY, Rclass::ANY, 30, vec![])],
        })
        .collect();
    let updates = m
        .ops
        .iter()
        .map(|o| match o {
            Op::Add(n, t, r, ttl) => {
                rec(*n, TYPES[*t], Rclass::IN, TTLS[*ttl], rdata(TYPES[*t], *r))
            }
            Op::DeleteSet(n, t) => {
                let t = TYPES.get(*t).copied().unwrap_or(Rtype::SOA);
                rec(*n, t, Rclass::ANY, 0, vec![])
            }
            Op::DeleteAll(n) => rec(*n, Rtype::ANY, Rclass::ANY, 0, vec![]),
            Op::DeleteRr(n, t, r) => rec(*n, TYPES[*t], Rclass::NONE, 0, rdata(TYPES[*t], *r)),
            Op::Soa { at_apex, step, ttl } => rec(
                if *at_apex { 0 } else { 2 },
                Rtype::SOA,
                Rclass::IN,
                [300, 600][*ttl],
                soa_rdata(serial.wrapping_add(*step), [60, 30][*ttl]),
            ),
            Op::DeleteSoa => rec(0, Rtype::SOA, Rclass::NONE, 0, soa_rdata(serial, 60)),
            Op::BadDelete(n) => rec(*n, Rtype::A, Rclass::ANY, 5, vec![]),
            Op::AddAny(n) => rec(*n, Rtype::ANY, Rclass::IN, 60, vec![]),
        })
        .collect();
    Request {
        id: 1,
        zone: origin(),
        zclass: Rclass::IN,
        prerequisites,
        updates,
        edns: false,
    }
}

// ---------------------------------------------------------------------------------------
// The model

/// Owner (lower-cased wire) and type to TTL and data (compared as [`canon`]).
type Sets = BTreeMap<(Vec<u8>, Rtype), (u32, Vec<Vec<u8>>)>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Model {
    sets: Sets,
    soa_ttl: u32,
    soa: Vec<u8>,
}

fn key_of(owner: usize) -> Vec<u8> {
    name(NAMES[owner]).as_wire().to_ascii_lowercase()
}

fn in_zone(owner: usize) -> bool {
    owner < IN_ZONE
}

impl Model {
    fn from_zone(z: &ZoneData) -> Model {
        let mut m = Model {
            sets: Sets::new(),
            soa_ttl: 0,
            soa: Vec::new(),
        };
        for r in z.to_records() {
            if r.rtype == Rtype::SOA {
                (m.soa_ttl, m.soa) = (r.ttl, r.rdata);
                continue;
            }
            let e = m
                .sets
                .entry((r.owner.as_wire().to_ascii_lowercase(), r.rtype))
                .or_insert((r.ttl, Vec::new()));
            e.1.push(r.rdata);
        }
        m
    }

    fn serial(&self) -> u32 {
        serial_of(&self.soa)
    }

    fn in_use(&self, owner: usize) -> bool {
        owner == 0 || self.sets.keys().any(|(o, _)| *o == key_of(owner))
    }

    fn has(&self, owner: usize, t: Rtype) -> bool {
        (owner == 0 && t == Rtype::SOA) || self.sets.contains_key(&(key_of(owner), t))
    }

    /// RFC 2136 §3.2–§3.4 for one message; the rcode.
    fn apply(&mut self, m: &Msg) -> Rcode {
        let serial = self.serial();
        if let Err(rc) = self.prerequisites(m) {
            return rc;
        }
        // §3.4.1 prescan, record by record.
        for o in &m.ops {
            let owner = match o {
                Op::Add(n, ..) | Op::DeleteSet(n, _) | Op::DeleteAll(n) | Op::DeleteRr(n, ..) => *n,
                Op::BadDelete(n) | Op::AddAny(n) => *n,
                Op::Soa { .. } | Op::DeleteSoa => 0,
            };
            if !in_zone(owner) {
                return Rcode::NOTZONE;
            }
            if matches!(o, Op::BadDelete(_) | Op::AddAny(_)) {
                return Rcode::FORMERR;
            }
        }
        let before = self.canonical();
        for o in &m.ops {
            self.op(o, serial);
        }
        // Compared as RFC 2136 compares records: a CNAME replaced by itself in other
        // case is no change.
        if self.canonical() != before {
            let changed_soa = self.serial() != serial;
            if !changed_soa {
                let mut s = self.soa.clone();
                let n = s.len();
                s[n - 20..n - 16].copy_from_slice(&serial.wrapping_add(1).to_be_bytes());
                self.soa = s;
            }
        }
        Rcode::NOERROR
    }

    fn prerequisites(&self, m: &Msg) -> Result<(), Rcode> {
        let mut wanted: Vec<(usize, Rtype, BTreeSet<Vec<u8>>)> = Vec::new();
        for p in &m.prereqs {
            let owner = match p {
                Prereq::InUse(n) | Prereq::NotInUse(n) | Prereq::BadTtl(n) => *n,
                Prereq::Exists(n, _) | Prereq::NotExists(n, _) | Prereq::Values(n, ..) => *n,
            };
            if matches!(p, Prereq::BadTtl(_)) {
                return Err(Rcode::FORMERR);
            }
            if !in_zone(owner) {
                return Err(Rcode::NOTZONE);
            }
            match p {
                Prereq::InUse(n) if !self.in_use(*n) => return Err(Rcode::NXDOMAIN),
                Prereq::NotInUse(n) if self.in_use(*n) => return Err(Rcode::YXDOMAIN),
                Prereq::Exists(n, t) if !self.has(*n, TYPES[*t]) => return Err(Rcode::NXRRSET),
                Prereq::NotExists(n, t) if self.has(*n, TYPES[*t]) => return Err(Rcode::YXRRSET),
                Prereq::Values(n, t, rs) => {
                    let t = TYPES[*t];
                    let set: BTreeSet<Vec<u8>> =
                        rs.iter().map(|r| canon(t, &rdata(t, *r))).collect();
                    // Records of one RRset spread over the message form one wanted set.
                    match wanted
                        .iter_mut()
                        .find(|(o, wt, _)| key_of(*o) == key_of(*n) && *wt == t)
                    {
                        Some(w) => w.2.extend(set),
                        None => wanted.push((*n, t, set)),
                    }
                }
                _ => {}
            }
        }
        for (n, t, want) in wanted {
            let have: BTreeSet<Vec<u8>> = self
                .sets
                .get(&(key_of(n), t))
                .map(|(_, v)| v.iter().map(|x| canon(t, x)).collect())
                .unwrap_or_default();
            if have.is_empty() || have != want {
                return Err(Rcode::NXRRSET);
            }
        }
        Ok(())
    }

    /// §3.4.2, one record.
    fn op(&mut self, o: &Op, serial: u32) {
        match o {
            Op::Add(n, t, r, ttl) => self.add(*n, TYPES[*t], TTLS[*ttl], rdata(TYPES[*t], *r)),
            Op::DeleteSet(n, t) => {
                let t = TYPES.get(*t).copied().unwrap_or(Rtype::SOA);
                // The SOA and the apex NS RRset are never deleted.
                if *n == 0 && (t == Rtype::NS || t == Rtype::SOA) {
                    return;
                }
                self.sets.remove(&(key_of(*n), t));
            }
            Op::DeleteAll(n) => {
                let k = key_of(*n);
                self.sets
                    .retain(|(o, t), _| *o != k || (*n == 0 && *t == Rtype::NS));
            }
            Op::DeleteRr(n, t, r) => {
                let (t, rd) = (TYPES[*t], rdata(TYPES[*t], *r));
                let k = (key_of(*n), t);
                let Some((_, v)) = self.sets.get_mut(&k) else {
                    return;
                };
                let Some(i) = v.iter().position(|x| canon(t, x) == canon(t, &rd)) else {
                    return;
                };
                if *n == 0 && t == Rtype::NS && v.len() == 1 {
                    return; // never the last apex NS
                }
                v.remove(i);
                if v.is_empty() {
                    self.sets.remove(&k);
                }
            }
            Op::Soa { at_apex, step, ttl } => {
                let new = serial.wrapping_add(*step);
                if *at_apex && serial_gt(new, self.serial()) {
                    self.soa_ttl = [300, 600][*ttl];
                    self.soa = soa_rdata(new, [60, 30][*ttl]);
                }
            }
            Op::DeleteSoa | Op::BadDelete(_) | Op::AddAny(_) => {}
        }
    }

    fn add(&mut self, n: usize, t: Rtype, ttl: u32, rd: Vec<u8>) {
        let k = key_of(n);
        let has_cname = self.sets.contains_key(&(k.clone(), Rtype::CNAME));
        let has_other = n == 0
            || self
                .sets
                .keys()
                .any(|(o, ot)| *o == k && *ot != Rtype::CNAME);
        if t == Rtype::CNAME {
            if has_other {
                return; // CNAME beside other data: ignored
            }
            // A name has one CNAME: the new one replaces it.
            self.sets.insert((k, t), (ttl, vec![rd]));
            return;
        }
        if has_cname {
            return; // other data beside a CNAME: ignored
        }
        let e = self.sets.entry((k, t)).or_insert((ttl, Vec::new()));
        e.0 = ttl;
        if !e.1.iter().any(|x| canon(t, x) == canon(t, &rd)) {
            e.1.push(rd);
        }
    }

    /// Every record, comparable with [`canonical`] of the served zone.
    fn canonical(&self) -> BTreeSet<(Vec<u8>, Rtype, u32, Vec<u8>)> {
        let mut out = BTreeSet::new();
        out.insert((
            name(ORIGIN).as_wire().to_vec(),
            Rtype::SOA,
            self.soa_ttl,
            canon(Rtype::SOA, &self.soa),
        ));
        for ((o, t), (ttl, v)) in &self.sets {
            for rd in v {
                out.insert((o.clone(), *t, *ttl, canon(*t, rd)));
            }
        }
        out
    }
}

fn canonical(z: &ZoneData) -> BTreeSet<(Vec<u8>, Rtype, u32, Vec<u8>)> {
    z.to_records()
        .into_iter()
        .map(|r: Record| {
            (
                r.owner.as_wire().to_ascii_lowercase(),
                r.rtype,
                r.ttl,
                canon(r.rtype, &r.rdata),
            )
        })
        .collect()
}

fn start() -> ZoneData {
    let records = muster_server::zone::zonefile::parse_str(
        ZONE,
        std::path::Path::new("model.zone"),
        &origin(),
    )
    .expect("the start zone parses");
    ZoneData::from_records(&origin(), records).expect("the start zone loads")
}

fn policy() -> Policy {
    Policy {
        grants: vec![Grant {
            key: name("k."),
            names: NameMatch::Zone,
            types: TypeMatch::All,
        }],
    }
}

/// Applies `msgs` to both and compares after each.
fn run(msgs: &[Msg]) -> Result<(), TestCaseError> {
    let mut zone = start();
    let mut model = Model::from_zone(&zone);
    let (policy, limits, key) = (policy(), Limits::default(), name("k."));
    for (i, m) in msgs.iter().enumerate() {
        let req = to_request(m, zone.serial());
        let before = zone.clone();
        let got = match process(&mut zone, &req, Some(&key), &policy, &limits) {
            Ok(applied) => {
                if let Some(cs) = &applied.changeset {
                    prop_assert_eq!(cs.from_serial, before.serial());
                    prop_assert_eq!(cs.to_serial, zone.serial());
                    let mut replay = before.clone();
                    replay
                        .apply_changeset(cs)
                        .map_err(|e| TestCaseError::fail(format!("changeset: {e}")))?;
                    prop_assert_eq!(canonical(&replay), canonical(&zone), "replayed changeset");
                } else {
                    prop_assert_eq!(
                        canonical(&before),
                        canonical(&zone),
                        "no changeset, no change"
                    );
                }
                Rcode::NOERROR
            }
            Err(r) => {
                prop_assert_eq!(canonical(&before), canonical(&zone), "rejected but changed");
                r.rcode
            }
        };
        let want = model.apply(m);
        prop_assert_eq!(got, want, "message {}: rcode of {:?}", i, m);
        prop_assert_eq!(
            canonical(&zone),
            model.canonical(),
            "message {}: zones differ after {:?}",
            i,
            m
        );
        let built = Zone::build(&origin(), zone.to_records());
        prop_assert!(
            built.is_ok(),
            "message {i}: the zone does not build: {:?}",
            built.err()
        );
    }
    Ok(())
}

proptest! {
    // 256 sequences of 1 to 39 messages: about 5,000 updates, about 5 s in a debug build.
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn updates_agree_with_the_rfc2136_model(msgs in proptest::collection::vec(msg(), 1..40)) {
        run(&msgs)?;
    }
}

/// The model itself is checked against hand-worked cases, so the property cannot pass by
/// both sides sharing one mistake.
#[test]
fn the_model_answers_known_cases() {
    let mut m = Model::from_zone(&start());
    // A CNAME at a name with A: ignored, NOERROR, serial unchanged.
    let cname_at_a = Msg {
        prereqs: vec![],
        ops: vec![Op::Add(2, 2, 2, 0)],
    };
    assert_eq!(m.apply(&cname_at_a), Rcode::NOERROR);
    assert_eq!(m.serial(), 10);
    // b is an empty non-terminal: not in use.
    let b_in_use = Msg {
        prereqs: vec![Prereq::InUse(4)],
        ops: vec![],
    };
    assert_eq!(m.apply(&b_in_use), Rcode::NXDOMAIN);
    // Add and delete on an unused name: no change.
    let add_delete = Msg {
        prereqs: vec![],
        ops: vec![Op::Add(7, 0, 0, 0), Op::DeleteRr(7, 0, 0)],
    };
    assert_eq!(m.apply(&add_delete), Rcode::NOERROR);
    assert_eq!(m.serial(), 10);
    // A value-dependent prerequisite fails after a later "not in use" one would too:
    // the value-dependent one is compared last, so Rcode::YXDOMAIN wins.
    let order = Msg {
        prereqs: vec![Prereq::Values(2, 0, vec![1]), Prereq::NotInUse(2)],
        ops: vec![],
    };
    assert_eq!(m.apply(&order), Rcode::YXDOMAIN);
    // The last apex NS stays; the serial goes up by one for a real change.
    let ns = Msg {
        prereqs: vec![],
        ops: vec![
            Op::DeleteSet(0, 3),
            Op::DeleteRr(0, 3, 3),
            Op::Add(7, 1, 0, 0),
        ],
    };
    assert_eq!(m.apply(&ns), Rcode::NOERROR);
    assert_eq!(m.serial(), 11);
    assert!(m.has(0, Rtype::NS));
    // And the same cases agree with musterd.
    run(&[cname_at_a, b_in_use, add_delete, order, ns]).unwrap();
}
