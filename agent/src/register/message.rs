//! The UPDATE message (RFC 2136) for what this host wants, given what the server holds,
//! and the meaning of the server's signed reply. Pure: no sockets, no clock.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::key::FUDGE;
use super::spec::{absolute, host_name, Spec};

/// The EDNS payload size offered (the DNS Flag Day 2020 value: no fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;

/// What the server holds now, as read with plain queries.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The host's A records (with their TTLs).
    pub a: Vec<Record>,
    /// The host's AAAA records.
    pub aaaa: Vec<Record>,
    /// This host's SRV records (target = the host) under every managed owner.
    pub srv: Vec<Record>,
    /// SRV owners whose set the server withheld (a completeness gate): this host's
    /// records there are unknown.
    pub withheld: Vec<Name>,
}

/// Same records, regardless of order and duplicates; TTLs must all be `ttl`.
fn same_set(have: &[Record], want: &[RData], ttl: u32) -> bool {
    have.iter().all(|r| r.ttl == ttl && want.contains(&r.data))
        && want.iter().all(|w| have.iter().any(|r| &r.data == w))
}

/// Whether the server already holds exactly what `spec` wants.
pub fn settled(spec: &Spec, seen: &Observed) -> bool {
    if !seen.withheld.is_empty() {
        return false;
    }
    let srv_want: Vec<(Name, RData)> = spec
        .srv
        .iter()
        .map(|(o, s)| (o.clone(), RData::SRV(s.clone())))
        .collect();
    let srv_ok = seen
        .srv
        .iter()
        .all(|r| r.ttl == spec.ttl && srv_want.contains(&(r.name.clone(), r.data.clone())))
        && srv_want
            .iter()
            .all(|(o, d)| seen.srv.iter().any(|r| &r.name == o && &r.data == d));
    same_set(&seen.a, &spec.wanted(RecordType::A), spec.ttl)
        && same_set(&seen.aaaa, &spec.wanted(RecordType::AAAA), spec.ttl)
        && srv_ok
}

/// Which kind of update [`build`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Prerequisites only: the zone already holds what is wanted.
    Confirm,
    /// Records are replaced, added or deleted.
    Change,
}

fn empty_rr(name: &Name, t: RecordType, class: DNSClass) -> Record {
    let mut r = Record::update0(name.clone(), 0, t);
    r.dns_class = class;
    r
}

fn rr(name: &Name, ttl: u32, data: RData, class: DNSClass) -> Record {
    let mut r = Record::from_rdata(name.clone(), ttl, data);
    r.dns_class = class;
    r
}

/// The UPDATE message (unsigned) for `spec`, given what the server holds (`None` when
/// it could not be read). See the module documentation for the sections.
pub fn build(spec: &Spec, seen: Option<&Observed>, id: u16) -> (Message, Kind) {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    m.metadata.recursion_desired = false;
    let mut zone = Query::query(spec.zone.clone(), RecordType::SOA);
    zone.set_query_class(DNSClass::IN);
    m.add_query(zone);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    m.set_edns(edns);
    let host = &spec.host;
    let kind = if seen.is_some_and(|s| settled(spec, s)) {
        Kind::Confirm
    } else {
        Kind::Change
    };
    if !spec.deregister {
        // RFC 2136 §2.4.3: "RRset does not exist" — no CNAME at the host name.
        m.add_answer(empty_rr(host, RecordType::CNAME, DNSClass::NONE));
    }
    if kind == Kind::Confirm {
        for t in [RecordType::A, RecordType::AAAA] {
            let want = spec.wanted(t);
            if want.is_empty() {
                m.add_answer(empty_rr(host, t, DNSClass::NONE));
            } else {
                // §2.4.2: value-dependent, TTL 0 (ignored in the comparison).
                for d in want {
                    m.add_answer(rr(host, 0, d, DNSClass::IN));
                }
            }
        }
        return (m, kind);
    }
    // §2.5.2: delete the RRsets, then add the current addresses.
    for t in [RecordType::A, RecordType::AAAA] {
        m.add_authority(empty_rr(host, t, DNSClass::ANY));
    }
    for t in [RecordType::A, RecordType::AAAA] {
        for d in spec.wanted(t) {
            m.add_authority(rr(host, spec.ttl, d, DNSClass::IN));
        }
    }
    // §2.5.4: this host's own SRV records, by exact rdata; the wanted ones added back.
    let mut doomed: Vec<(Name, RData)> = Vec::new();
    for r in seen.map(|s| &s.srv[..]).unwrap_or(&[]) {
        doomed.push((r.name.clone(), r.data.clone()));
    }
    for (owner, srv) in &spec.srv {
        doomed.push((owner.clone(), RData::SRV(srv.clone())));
    }
    let mut seen_pairs: Vec<(Name, RData)> = Vec::new();
    for (owner, data) in doomed {
        if !seen_pairs.contains(&(owner.clone(), data.clone())) {
            m.add_authority(rr(&owner, 0, data.clone(), DNSClass::NONE));
            seen_pairs.push((owner, data));
        }
    }
    if !spec.deregister {
        for (owner, srv) in &spec.srv {
            m.add_authority(rr(owner, spec.ttl, RData::SRV(srv.clone()), DNSClass::IN));
        }
    }
    (m, kind)
}

/// The rcode's name as RFC 2136 and nsupdate print it.
pub fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// What the reply to an update says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR, signed by the key.
    Done,
    /// The prerequisites failed (NXRRSET/YXRRSET on a confirming update): the records
    /// moved since they were read.
    Moved,
    /// Anything else, with the message to print.
    Failed(String),
}

/// Checks a reply: its TSIG with `verifier` (made when the request was signed), then the
/// rcode. `what` describes the request for messages: server, zone, key.
pub fn interpret(
    reply: &[u8],
    request_id: u16,
    verifier: Option<&mut hickory_proto::rr::TSigVerifier>,
    spec: &Spec,
    kind: Kind,
    server: SocketAddr,
    key: &str,
) -> Outcome {
    let to = format!("update of zone {} at {server} with key {key:?}", spec.zone);
    let m = match Message::from_vec(reply) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(format!("{to}: malformed reply: {e}")),
    };
    if m.metadata.id != request_id || m.metadata.op_code != OpCode::Update {
        return Outcome::Failed(format!("{to}: the reply does not answer the update"));
    }
    let rc = m.metadata.response_code;
    let name = rcode_name(rc);
    let tsig = m.signature().map(|s| s.data.clone());
    match tsig {
        Some(t) if t.mac.is_empty() || t.error.is_some() => {
            // RFC 8945 §5.2: BADKEY and BADSIG replies are unsigned; BADTIME is signed
            // but its meaning does not depend on trusting it (nothing changed).
            let why = match t.error {
                Some(TsigError::BadKey) => format!(
                    "BADKEY: the server does not know key {key:?} with this algorithm — check that its key file and the server's key files name the same key"
                ),
                Some(TsigError::BadSig) => format!(
                    "BADSIG: the signature does not verify — the secret of key {key:?} differs from the server's copy"
                ),
                Some(TsigError::BadTime) => {
                    let theirs = (t.other.len() == 6).then(|| {
                        t.other.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
                    });
                    let ours = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    match theirs {
                        Some(s) => format!(
                            "BADTIME: the clocks differ by {} s (server {s}, here {ours}), more than the {FUDGE} s allowed — fix the time (NTP) on this host or the server",
                            s.abs_diff(ours)
                        ),
                        None => format!("BADTIME: the clocks of this host and the server differ by more than {FUDGE} s — fix the time (NTP)"),
                    }
                }
                Some(TsigError::BadTrunc) => "BADTRUNC: the server refuses the MAC length".into(),
                Some(TsigError::Unknown(n)) => format!("TSIG error {n}"),
                None => "the reply's TSIG has no MAC".into(),
            };
            return Outcome::Failed(format!("{to}: {name}: {why}; nothing was changed"));
        }
        Some(_) => {
            if let Some(v) = verifier {
                if let Err(e) = v.verify(reply) {
                    return Outcome::Failed(format!(
                        "{to}: the reply's TSIG does not verify ({e}); the result is unknown — run again"
                    ));
                }
            }
        }
        None if rc == ResponseCode::NoError => {
            return Outcome::Failed(format!(
                "{to}: NOERROR but the reply is not signed: it cannot be trusted (does {server} know TSIG?)"
            ));
        }
        None => {}
    }
    let host = &spec.host;
    let msg = match rc {
        ResponseCode::NoError => return Outcome::Done,
        ResponseCode::NXRRSet | ResponseCode::YXRRSet if kind == Kind::Confirm => return Outcome::Moved,
        ResponseCode::YXRRSet => format!(
            "{name}: {host} is an alias (CNAME): addresses cannot be added there — remove the CNAME or choose another --hostname"
        ),
        ResponseCode::Refused => format!(
            "{name}: key {key:?} may not change {host} A/AAAA{} in zone {} — {}",
            if spec.srv.is_empty() && spec.srv_owners.is_empty() { "" } else { " or its SRV records" },
            spec.zone,
            host_grant_hint(spec, key),
        ),
        ResponseCode::NotAuth => format!(
            "{name}: {server} is not the primary of zone {} — check --server and --zone",
            spec.zone
        ),
        ResponseCode::NotZone => format!("{name}: a name of the update is not in zone {}", spec.zone),
        ResponseCode::NotImp => format!("{name}: {server} does not take dynamic updates"),
        ResponseCode::FormErr => format!("{name}: the server cannot read the update"),
        ResponseCode::ServFail => format!("{name}: the server failed to apply the update (see its log); nothing was changed"),
        _ => name.clone(),
    };
    let unsigned = if m.signature().is_none() {
        " (unsigned reply)"
    } else {
        ""
    };
    Outcome::Failed(format!("{to}: {msg}{unsigned}"))
}

/// What the server's policy needs for this host: a host grant for the key (musterd's
/// `match = "host"`, which lets a key change only the host its name names).
fn host_grant_hint(spec: &Spec, key: &str) -> String {
    let zone = spec.zone.to_ascii();
    let relative = |n: &Name| {
        let text = n.to_ascii();
        text.strip_suffix(&format!(".{zone}"))
            .map(str::to_string)
            .unwrap_or(text)
    };
    let mut srv: Vec<String> = spec
        .srv
        .iter()
        .map(|(o, _)| format!("{:?}", relative(o)))
        .collect();
    srv.dedup();
    let srv = if srv.is_empty() {
        String::new()
    } else {
        format!(", srv = [{}]", srv.join(", "))
    };
    let stands_for = absolute(key, "the key name").ok().map(|k| {
        if spec.zone.zone_of(&k) && k != spec.zone {
            k
        } else {
            host_name(key, &spec.zone).unwrap_or(k)
        }
    });
    let naming = match stands_for {
        Some(h) if h != spec.host => format!(
            "; a host grant covers the host the key is named after, and key {key:?} names {h}, not {}: use a key named {:?} (tsig-keygen {})",
            spec.host,
            relative(&spec.host),
            relative(&spec.host)
        ),
        _ => String::new(),
    };
    format!(
        "give the key its host in the server's config: [[zone.update_policy]] key = {key:?}, match = \"host\"{srv} under the [[zone]] of {}{naming} (see docs/dhcp.md), or the zone takes no updates",
        zone.trim_end_matches('.')
    )
}
