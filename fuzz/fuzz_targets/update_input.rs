//! The `update` target's input and invariants, shared with `tests/tests/properties.rs`:
//! bytes are read as a sequence of UPDATE messages (well-formed ones built from pools of
//! names, types and data, or raw bytes), signed with a granted key, a key with a narrower
//! grant, a wrong time or a damaged MAC, or unsigned, some replayed byte for byte. Each
//! goes through the same steps as `Updates::handle` and the zone task in
//! `server/src/dynamic.rs` (TSIG, parse, zone, signer, replay guard, `update::process`,
//! build), against one zone. After each message:
//!
//! - the answer decodes with hickory-proto, carries the request's ID and the rcode, and
//!   is signed for the request when the request verified;
//! - all or nothing: a refused update leaves the zone as it was; an applied one changes
//!   exactly what its changeset says (replayed on the zone before, it gives the zone
//!   after);
//! - the serial never goes backwards (RFC 1982) and moves exactly when the zone changes;
//! - a copy of an earlier message gets the earlier rcode and changes nothing;
//! - after each change the zone builds, every answer decodes and the fast path answers
//!   byte for byte as the full path ([`crate::common::ask_everything`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use muster_server::proto::name::Name;
use muster_server::proto::rr::{Rclass, Record, Rtype};
use muster_server::proto::tsig::{self, KeyRing};
use muster_server::proto::types::{Opcode, Rcode};
use muster_server::query::answer::Responder;
use muster_server::query::fastpath;
use muster_server::update::replay::{Admission, ReplayGuard};
use muster_server::update::{self, Grant, Limits, NameMatch, Policy, TypeMatch, ZoneData};
use muster_server::zone::changeset::Changeset;
use muster_server::zone::zonefile;
use muster_server::zone::Zone;

const ORIGIN: &str = "u.test.";
const ZONE: &str = "$ORIGIN u.test.
$TTL 60
@ 300 IN SOA ns1 hostmaster 100 3600 600 86400 60
@ IN NS ns1
ns1 IN A 127.0.0.1
a IN A 10.0.0.1
a IN TXT \"host a\"
x.b IN TXT \"below an empty non-terminal\"
c IN CNAME a
*.w IN A 10.0.0.9
sub IN NS ns.sub
ns.sub IN A 10.0.0.53
_etcd-server-ssl._tcp IN SRV 0 0 2380 a
";

const KEY_ALL: &str = "key \"k\" { algorithm hmac-sha256; secret \"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\"; };";
/// A host key that may change only its own name, not its NS or SOA (BIND `self`).
const KEY_HOST: &str =
    "key \"a.u.test.\" { algorithm hmac-sha1; secret \"c2VjcmV0LWZvci1ob3N0LWE=\"; };";
/// A key with no grant in the zone.
const KEY_NONE: &str = "key \"n\" { algorithm hmac-sha512; secret \"bm8tZ3JhbnQ=\"; };";

/// The time every message is signed and checked at.
const NOW: u64 = 1_700_000_000;

const OWNERS: [&str; 12] = [
    "u.test.",
    "a.u.test.",
    "A.U.TEST.",
    "b.u.test.",
    "x.b.u.test.",
    "*.w.u.test.",
    "z.w.u.test.",
    "c.u.test.",
    "sub.u.test.",
    "deep.sub.u.test.",
    "new.u.test.",
    "elsewhere.test.",
];
const TARGETS: [&str; 5] = [
    "a.u.test.",
    "C.u.test.",
    "ns.sub.u.test.",
    "new.u.test.",
    "elsewhere.example.",
];
const TYPES: [Rtype; 14] = [
    Rtype::A,
    Rtype::AAAA,
    Rtype::TXT,
    Rtype::CNAME,
    Rtype::NS,
    Rtype::MX,
    Rtype::SRV,
    Rtype::PTR,
    Rtype::SOA,
    Rtype::DNAME,
    Rtype::HINFO,
    Rtype(65280),
    Rtype::ANY,
    Rtype::OPT, // a meta type
];

/// Reads the fuzz input byte by byte; zeros once it runs out.
struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.u8() as usize % from.len()]
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }
}

fn wire(name: &str) -> Vec<u8> {
    Name::parse(name, None)
        .expect("a valid name")
        .as_wire()
        .to_vec()
}

fn soa_rdata(serial: u32) -> Vec<u8> {
    let mut v = wire("ns1.u.test.");
    v.extend(wire("hostmaster.u.test."));
    for n in [serial, 3600, 600, 86400, 60] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

/// Record data of type `t` chosen by the input.
fn rdata(b: &mut Bytes, t: Rtype, serial: u32) -> Vec<u8> {
    let i = b.u8();
    let target = wire(TARGETS[i as usize % TARGETS.len()]);
    match t {
        Rtype::A => vec![10, 0, 0, i % 8],
        Rtype::AAAA => {
            let mut v = vec![0x20, 0x01, 0x0d, 0xb8];
            v.resize(15, 0);
            v.push(i % 8);
            v
        }
        Rtype::TXT => vec![1, b'a' + i % 4],
        Rtype::CNAME | Rtype::NS | Rtype::PTR | Rtype::DNAME => target,
        Rtype::MX => {
            let mut v = vec![0, i % 3];
            v.extend(target);
            v
        }
        Rtype::SRV => {
            let mut v = vec![0, 0, 0, i % 2, 0x09, 0x4c];
            v.extend(target);
            v
        }
        Rtype::SOA => soa_rdata(serial.wrapping_add(u32::from(i % 4)).wrapping_sub(1)),
        Rtype::HINFO => vec![1, b'x', 1, b'y'],
        _ => {
            let n = usize::from(b.u8() % 6);
            b.take(n)
        }
    }
}

/// One record of the prerequisite (`prereq`) or update section. The choices are
/// weighted so that random bytes make mostly acceptable updates: 0 is the most ordinary
/// choice, the malformed ones (wrong class, TTL or data) come from the high values.
fn record(b: &mut Bytes, prereq: bool, serial: u32, out: &mut Vec<u8>) {
    let owner = b.pick(&OWNERS);
    let t = b.pick(&TYPES);
    let c = match (prereq, b.u8() % 8) {
        (_, 7) => Rclass::CH, // FORMERR
        (false, 0..=3) | (true, 5..=6) => Rclass::IN,
        (false, 4..=5) | (true, 0..=2) => Rclass::ANY,
        _ => Rclass::NONE,
    };
    let odd = b.u8() % 16 == 15;
    let ttl: u32 = match (c, odd) {
        (Rclass::IN, _) if !prereq => [60, 300][usize::from(odd)],
        (_, true) => 30,
        _ => 0,
    };
    // Class ANY, and class NONE prerequisites, carry no data (a malformed one does).
    let data = if (c == Rclass::ANY || (prereq && c == Rclass::NONE)) && !odd {
        Vec::new()
    } else {
        rdata(b, t, serial)
    };
    out.extend(wire(owner));
    out.extend_from_slice(&t.to_be_bytes());
    out.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend(data);
}

/// A well-formed (mostly) UPDATE message built from the pools.
fn built_message(b: &mut Bytes, serial: u32) -> Vec<u8> {
    let id = [b.u8(), b.u8()];
    let zone_kind = b.u8() % 16;
    let prereqs = [0u8, 0, 0, 0, 1, 1, 2, 3][usize::from(b.u8() % 8)];
    let updates = 1 + b.u8() % 4;
    let edns = b.u8() % 4 == 3;
    let mut m = id.to_vec();
    m.extend_from_slice(&(u16::from(Opcode::UPDATE.to_u8()) << 11).to_be_bytes());
    let zo: u16 = if zone_kind == 12 { 0 } else { 1 };
    for n in [zo, u16::from(prereqs), u16::from(updates), u16::from(edns)] {
        m.extend_from_slice(&n.to_be_bytes());
    }
    if zo == 1 {
        let (zone, zclass, ztype) = match zone_kind {
            13 => ("other.test.", Rclass::IN, Rtype::SOA),
            14 => (ORIGIN, Rclass::CH, Rtype::SOA),
            15 => (ORIGIN, Rclass::IN, Rtype::A),
            _ => (ORIGIN, Rclass::IN, Rtype::SOA),
        };
        m.extend(wire(zone));
        m.extend_from_slice(&ztype.to_be_bytes());
        m.extend_from_slice(&zclass.to_be_bytes());
    }
    for i in 0..prereqs + updates {
        record(b, i < prereqs, serial, &mut m);
    }
    if edns {
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// Raw bytes as an UPDATE: the opcode forced so that the update path reads them.
fn raw_message(b: &mut Bytes) -> Vec<u8> {
    let n = usize::from(b.u8());
    let mut m = b.take(n);
    if m.len() > 3 {
        m[2] = (m[2] & 0x07) | (Opcode::UPDATE.to_u8() << 3);
    }
    m
}

/// How one message is signed.
enum Signing {
    None,
    Key(usize),
    /// Signed far outside the fudge window: BADTIME.
    Stale(usize),
    /// Signed, then one octet of the MAC (or near it) flipped.
    Damaged(usize, u8),
}

struct World {
    keys: KeyRing,
    /// The keys in `keys`, for signing.
    signers: Vec<std::sync::Arc<tsig::Key>>,
    policy: Policy,
}

fn world() -> World {
    let mut keys = KeyRing::new();
    let mut signers = Vec::new();
    for text in [KEY_ALL, KEY_HOST, KEY_NONE] {
        keys.load_text(text, "fuzz").expect("a valid key");
        let (k, _) = tsig::parse_key_file(text, "fuzz")
            .expect("a valid key")
            .remove(0);
        signers.push(std::sync::Arc::new(k));
    }
    let name = |s: &str| Name::parse(s, None).expect("a valid name");
    let policy = Policy {
        grants: vec![
            Grant {
                key: name("k."),
                names: NameMatch::Zone,
                types: TypeMatch::All,
            },
            Grant {
                key: name("a.u.test."),
                names: NameMatch::SelfName,
                types: TypeMatch::Default,
            },
        ],
    };
    World {
        keys,
        signers,
        policy,
    }
}

/// Length of the uncompressed name at the start of `d`.
fn name_len(d: &[u8]) -> usize {
    let mut i = 0;
    while let Some(&l) = d.get(i) {
        i += 1 + usize::from(l);
        if l == 0 {
            break;
        }
    }
    i.min(d.len())
}

/// Record data with its domain names lower-cased, for the types whose names RFC 2136
/// compares without regard to case (as `update::rdata_eq`: the RFC 1035 types).
fn canon(t: Rtype, rd: &[u8]) -> Vec<u8> {
    let (fixed, names) = match t {
        Rtype::NS
        | Rtype::MD
        | Rtype::MF
        | Rtype::CNAME
        | Rtype::MB
        | Rtype::MG
        | Rtype::MR
        | Rtype::PTR => (0, 1),
        Rtype::MX | Rtype::AFSDB | Rtype::RT | Rtype::KX => (2, 1),
        Rtype::SRV => (6, 1),
        Rtype::SOA | Rtype::MINFO | Rtype::RP => (0, 2),
        _ => return rd.to_vec(),
    };
    let mut v = rd.to_vec();
    let mut end = fixed.min(v.len());
    for _ in 0..names {
        end += name_len(&v[end..]);
    }
    v[fixed.min(end)..end].make_ascii_lowercase();
    v
}

type Canonical = BTreeSet<(Vec<u8>, Rtype, u32, Vec<u8>)>;

/// The zone's records in a form that compares as RFC 2136 compares them.
fn canonical(z: &ZoneData) -> Canonical {
    z.to_records()
        .into_iter()
        .map(|r: Record| {
            let rd = canon(r.rtype, &r.rdata);
            (r.owner.as_wire().to_ascii_lowercase(), r.rtype, r.ttl, rd)
        })
        .collect()
}

fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Polls a future that is ready at once (the replay guard's answer once the first
/// arrival has answered, which in this single-threaded driver is always).
fn ready<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the replay guard's answer was not ready"),
    }
}

/// What the zone task does with one update (`ZoneWorker::updates` in dynamic.rs): process,
/// build, and take the update back when the zone does not build.
fn apply(
    data: &mut ZoneData,
    req: &update::Request,
    signer: &Name,
    policy: &Policy,
) -> (Rcode, Option<Changeset>) {
    match update::process(data, req, Some(signer), policy, &Limits::default()) {
        Err(r) => (r.rcode, None),
        Ok(applied) => {
            if let Some(cs) = &applied.changeset {
                let origin = data.origin().clone();
                if let Err(e) = Zone::build(&origin, data.to_records()) {
                    panic!("an applied update gives a zone that does not build: {e:?}\n{cs:?}");
                }
            }
            (Rcode::NOERROR, applied.changeset)
        }
    }
}

/// How one message ended.
struct Handled {
    answer: Vec<u8>,
    rcode: Rcode,
    verified: Option<tsig::Verified>,
    changeset: Option<Changeset>,
}

/// `Updates::handle` for one zone.
fn handle(w: &World, data: &mut ZoneData, guard: &ReplayGuard, pkt: &[u8]) -> Handled {
    let (id, copy, zone_section) = update::echo_of(pkt);
    let edns = update::parse(pkt).ok().filter(|r| r.edns).map(|_| 1232);
    let plain = |rc: Rcode| update::response(Opcode::UPDATE, id, copy, zone_section, rc, edns);
    let verified = match tsig::verify_request(pkt, &w.keys, NOW) {
        Ok(v) => v,
        Err(e) => {
            let mut msg = plain(e.rcode());
            if let Some(t) = e.response() {
                let _ = tsig::sign_response(&mut msg, &t, NOW);
            }
            return Handled {
                answer: msg,
                rcode: e.rcode(),
                verified: None,
                changeset: None,
            };
        }
    };
    let finish = |rc: Rcode| {
        let mut msg = plain(rc);
        if let Some(v) = &verified {
            tsig::sign_response(&mut msg, &v.response(), NOW).expect("the answer can be signed");
        }
        msg
    };
    let (rc, changeset) = (|| {
        let Ok(req) = update::parse(pkt) else {
            return (Rcode::FORMERR, None);
        };
        if !req.zone.eq_ignore_case(data.origin()) || req.zclass != Rclass::IN {
            return (Rcode::NOTAUTH, None);
        }
        let Some(v) = &verified else {
            return (Rcode::REFUSED, None);
        };
        match guard.admit(v, NOW) {
            Admission::First(ticket) => {
                let (rc, cs) = apply(data, &req, &v.key.name, &w.policy);
                ticket.answered(rc);
                (rc, cs)
            }
            Admission::Replay(first) => (ready(first.answer()), None),
            Admission::Full => (Rcode::SERVFAIL, None),
        }
    })();
    Handled {
        answer: finish(rc),
        rcode: rc,
        verified,
        changeset,
    }
}

/// Checks the answer: it decodes, carries the ID and rcode, and is signed for a verified
/// request.
fn check_answer(pkt: &[u8], answer: &[u8], rc: Rcode, verified: &Option<tsig::Verified>) {
    if let Err(e) = hickory_proto::op::Message::from_vec(answer) {
        panic!("the answer does not decode: {e}\nrequest {pkt:02x?}\nanswer {answer:02x?}")
    }
    // (Shorter than a header never reaches the update path: the listeners drop it.)
    if pkt.len() >= 12 {
        assert_eq!(
            answer[..2],
            pkt[..2],
            "the answer's ID is not the request's"
        );
    }
    assert_eq!(
        u16::from(answer[3] & 0xf),
        rc.header_bits(),
        "the answer's rcode"
    );
    if let Some(v) = verified {
        if let Err(e) = tsig::verify_response(answer, &v.key, &v.request_mac, NOW) {
            panic!("the answer to a verified request does not verify: {e:?}");
        }
    }
}

/// When to ask the zone every question (the costly check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// After each change (the fuzz target).
    EachChange,
    /// Once, after the last message, when anything changed (the CI property test, which
    /// runs unoptimised).
    AtEnd,
}

/// Runs the input: see the module documentation for what must hold.
pub fn run(input: &[u8], ask: Ask) {
    let w = world();
    let origin = Name::parse(ORIGIN, None).expect("a valid origin");
    let records =
        zonefile::parse_str(ZONE, Path::new("update.zone"), &origin).expect("the zone parses");
    let mut data = ZoneData::from_records(&origin, records).expect("the zone loads");
    let mut served = Versions::new(&origin, &data);
    let guard = ReplayGuard::default();
    let mut b = Bytes {
        data: input,
        pos: 0,
    };
    let mut sent: Vec<(Vec<u8>, Rcode)> = Vec::new();
    let mut changed = false;
    let messages = 1 + b.u8() % 8;
    for _ in 0..messages {
        if b.done() && !sent.is_empty() {
            break;
        }
        let kind = b.u8() % 16;
        let replay = kind == 14 && !sent.is_empty();
        let (pkt, expect) = if replay {
            let i = b.u8() as usize % sent.len();
            (sent[i].0.clone(), Some(sent[i].1))
        } else {
            let mut pkt = if kind == 15 {
                raw_message(&mut b)
            } else {
                built_message(&mut b, data.serial())
            };
            let signing = match b.u8() % 16 {
                10 => Signing::Key(1),
                11 => Signing::Key(2),
                12 => Signing::None,
                13 => Signing::Stale(0),
                14 | 15 => Signing::Damaged(b.u8() as usize % 3, b.u8()),
                _ => Signing::Key(0),
            };
            match signing {
                Signing::None => {}
                Signing::Key(k) => {
                    let _ = tsig::sign_request(&mut pkt, &w.signers[k], 300, NOW);
                }
                Signing::Stale(k) => {
                    let _ = tsig::sign_request(&mut pkt, &w.signers[k], 300, NOW - 3600);
                }
                Signing::Damaged(k, at) => {
                    if tsig::sign_request(&mut pkt, &w.signers[k], 300, NOW).is_ok() {
                        let n = pkt.len();
                        let i = n - 1 - (usize::from(at) % n.min(40));
                        pkt[i] ^= 1 << (at % 8);
                    }
                }
            }
            (pkt, None)
        };
        let before = data.clone();
        let h = handle(&w, &mut data, &guard, &pkt);
        let rc = h.rcode;
        check_answer(&pkt, &h.answer, rc, &h.verified);
        let (was, now) = (canonical(&before), canonical(&data));
        if let Some(first) = expect {
            assert_eq!(rc, first, "a copy got another rcode than the first");
            assert!(was == now, "a copy of an earlier message changed the zone");
        }
        if rc != Rcode::NOERROR {
            assert!(was == now, "a refused update (rcode {rc}) changed the zone");
        }
        let (s0, s1) = (before.serial(), data.serial());
        match &h.changeset {
            None => {
                assert!(was == now, "the zone changed without a changeset");
                assert_eq!(s0, s1, "the serial moved without a changeset");
            }
            Some(cs) => {
                assert!(serial_gt(s1, s0), "the serial went from {s0} to {s1}");
                assert_eq!((cs.from_serial, cs.to_serial), (s0, s1));
                check_changeset(&before, &now, cs);
            }
        }
        changed |= h.changeset.is_some();
        if let Some(cs) = &h.changeset {
            served.next(&origin, &data, cs);
        }
        if h.changeset.is_some() && ask == Ask::EachChange {
            ask_everything(&origin, &data);
        }
        sent.push((pkt, rc));
    }
    if changed && ask == Ask::AtEnd {
        ask_everything(&origin, &data);
    }
}

/// The served versions, each patched from the last as musterd's zone task does, checked
/// against the zone rebuilt from the same records after every change.
struct Versions {
    served: Arc<Zone>,
}

impl Versions {
    fn new(origin: &Name, data: &ZoneData) -> Versions {
        let zone = Arc::new(
            Zone::build(origin, data.to_records())
                .expect("the zone builds")
                .0,
        );
        fastpath::precompile(&zone, &Responder::default(), &[]);
        Versions { served: zone }
    }

    fn next(&mut self, origin: &Name, data: &ZoneData, cs: &Changeset) {
        let rebuilt = Arc::new(
            Zone::build(origin, data.to_records())
                .expect("checked in apply")
                .0,
        );
        let keys = cs.touched_names();
        let contents: Vec<_> = keys.iter().map(|k| data.content(k)).collect();
        match self.served.patch(&contents, data.record_count()) {
            Ok(patched) => {
                let patched = Arc::new(patched);
                crate::common::same_answers(&patched, &rebuilt);
                self.served = patched;
            }
            Err(_) => {
                fastpath::precompile(&rebuilt, &Responder::default(), &[]);
                self.served = rebuilt;
            }
        }
    }
}

/// Every answer of the zone decodes, and the fast path's equal the full path's.
fn ask_everything(origin: &Name, data: &ZoneData) {
    let records = data.to_records();
    if !records.iter().all(crate::common::hickory_reads) {
        return;
    }
    let types: Vec<Rtype> = records.iter().map(|r| r.rtype).collect();
    let zone = Zone::build(origin, records).expect("checked in apply").0;
    crate::common::ask_everything(zone, &types);
}

/// The changeset replayed on the zone before, through the journal's encoding (what a
/// restart reads), gives the zone after.
fn check_changeset(before: &ZoneData, after: &Canonical, cs: &Changeset) {
    let bytes = cs.encode().expect("an applied changeset encodes");
    let decoded = Changeset::decode(&bytes).expect("an encoded changeset decodes");
    let mut replayed = before.clone();
    replayed
        .apply_changeset(&decoded)
        .unwrap_or_else(|e| panic!("the changeset does not replay: {e}\n{cs:?}"));
    assert!(
        canonical(&replayed) == *after,
        "the replayed changeset gives another zone"
    );
}
