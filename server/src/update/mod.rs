//! Dynamic update (RFC 2136): reading an UPDATE message, checking its prerequisites,
//! authorising it against the zone's policy, and applying it to a zone's records to give
//! the [`Changeset`] that the journal stores.
//!
//! Everything here is pure: no sockets, files or clocks. [`crate::dynamic`] serialises
//! the updates of a zone, makes each changeset durable and swaps the new snapshot in.
//!
//! Order of processing (RFC 2136 §3): zone section ([`parse`]: FORMERR; the caller
//! answers Rcode::NOTAUTH for a zone it does not serve), the signer (REFUSED when unsigned or
//! when the key has no grant in the zone), prerequisites (§3.2: NXDOMAIN, Rcode::YXDOMAIN,
//! Rcode::NXRRSET, Rcode::YXRRSET, Rcode::NOTZONE, FORMERR), the update section's prescan (§3.4.1: Rcode::NOTZONE,
//! FORMERR) with the per-record policy check (§3.3: REFUSED), then the changes (§3.4.2),
//! all or nothing: a limit crossed half-way (records per RRset, types per name, names per
//! zone) undoes the changes made so far and answers REFUSED.
//!
//! Ignored silently, as RFC 2136 §3.4.2 says: a CNAME added where other data exists,
//! other data added where a CNAME exists, deleting the SOA, deleting the NS RRset of the
//! apex or its last NS record, and an SOA whose serial is not higher (RFC 1982). When
//! anything changed, the serial goes up by one (RFC 1982 addition) unless the update set
//! a higher one itself.
//!
//! Records are compared as RFC 2136 §1.1.1 says: TTL ignored, embedded domain names of the
//! types that have them compared without regard to case (RFC 4343), all other data,
//! DHCID (RFC 4701) included, as opaque octets.
//!
//! Limitations: only class IN zones; no DNSSEC maintenance (RRSIG/NSEC are kept as opaque
//! data); the "self" policy matches the key name itself, not Kerberos or TCP-self
//! identities.
//!
//! Files: `message` reads the UPDATE, `prereq` checks its prerequisites, `policy` says
//! who may change what, `apply` makes the changes; this one holds the zone's records
//! ([`ZoneData`]) and [`process`], which takes the steps in order. `merge` (hand edits),
//! [`journal`], [`replay`] and [`writeback`] serve [`crate::dynamic`].

use std::collections::{HashMap, HashSet};

use crate::proto::name::Name;
use crate::proto::rr::{check_rdata, Rclass, Record, Rtype, Soa};
use crate::proto::types::Rcode;
use crate::zone::changeset::Changeset;

// ---------------------------------------------------------------------------------------
// Serial numbers

/// RFC 1982 serial arithmetic, as the update rules use it.
pub use crate::proto::types::serial_gt;

/// RFC 1982 §3.1: one more than `s`.
pub fn serial_next(s: u32) -> u32 {
    s.wrapping_add(1)
}

/// The serial after `served` that is also above `file` (a hand-edited zone file whose
/// serial the operator may or may not have raised): max(file, served) + 1 in RFC 1982
/// terms.
pub fn serial_after(served: u32, file: u32) -> u32 {
    let top = if serial_gt(file, served) {
        file
    } else {
        served
    };
    serial_next(top)
}

// ---------------------------------------------------------------------------------------
// The zone as a mutable set of records

/// One RRset: every record of one type at one name, with one TTL (RFC 2181 §5.2).
#[derive(Debug, Clone)]
pub struct RRsetData {
    pub rtype: Rtype,
    pub ttl: u32,
    /// In the order they were added: the order answers give them.
    rdatas: Vec<Box<[u8]>>,
    /// The rdatas in canonical form (names lower-cased) once the set is large, so that
    /// finding one is a hash probe rather than a scan: loading or diffing an RRset of
    /// 65,536 records took quadratic time.
    index: Option<HashSet<Box<[u8]>, foldhash::fast::RandomState>>,
}

impl PartialEq for RRsetData {
    fn eq(&self, other: &RRsetData) -> bool {
        (self.rtype, self.ttl, &self.rdatas) == (other.rtype, other.ttl, &other.rdatas)
    }
}

impl Eq for RRsetData {}

impl RRsetData {
    /// Up to this many records a scan is cheaper than hashing.
    const INDEX_FROM: usize = 16;

    /// An empty RRset (it gets its first record next).
    pub fn new(rtype: Rtype, ttl: u32) -> RRsetData {
        RRsetData {
            rtype,
            ttl,
            rdatas: Vec::new(),
            index: None,
        }
    }

    /// The rdatas, in the order they were added.
    pub fn rdatas(&self) -> &[Box<[u8]>] {
        &self.rdatas
    }

    /// Whether the set holds `rdata` (compared as RFC 2136 §1.1.1 says).
    pub fn contains(&self, rdata: &[u8]) -> bool {
        match &self.index {
            Some(ix) => ix.contains(&*canonical_rdata(self.rtype, rdata)),
            None => self.position(rdata).is_some(),
        }
    }

    fn position(&self, rdata: &[u8]) -> Option<usize> {
        self.rdatas
            .iter()
            .position(|r| rdata_eq(self.rtype, r, rdata))
    }

    /// Adds `rdata`, which the set does not hold.
    fn push(&mut self, rdata: Box<[u8]>) {
        if let Some(ix) = &mut self.index {
            ix.insert(canonical_rdata(self.rtype, &rdata).into());
        }
        self.rdatas.push(rdata);
        if self.index.is_none() && self.rdatas.len() > Self::INDEX_FROM {
            let t = self.rtype;
            self.index = Some(
                self.rdatas
                    .iter()
                    .map(|r| canonical_rdata(t, r).into())
                    .collect(),
            );
        }
    }

    /// Removes `rdata`; false when the set does not hold it.
    fn remove(&mut self, rdata: &[u8]) -> bool {
        if self.index.is_some() && !self.contains(rdata) {
            return false;
        }
        let Some(i) = self.position(rdata) else {
            return false;
        };
        let gone = self.rdatas.remove(i);
        if let Some(ix) = &mut self.index {
            ix.remove(&*canonical_rdata(self.rtype, &gone));
        }
        true
    }

    /// Makes `rdata` the set's only record.
    fn replace(&mut self, rdata: &[u8]) {
        self.rdatas = vec![rdata.into()];
        self.index = None;
    }
}

/// Every RRset at one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeData {
    /// The name as first written (case kept for answers).
    pub owner: Name,
    pub sets: Vec<RRsetData>,
}

impl NodeData {
    fn set(&self, t: Rtype) -> Option<&RRsetData> {
        self.sets.iter().find(|s| s.rtype == t)
    }

    fn set_mut(&mut self, t: Rtype) -> Option<&mut RRsetData> {
        self.sets.iter_mut().find(|s| s.rtype == t)
    }

    fn records(&self) -> usize {
        self.sets.iter().map(|s| s.rdatas().len()).sum()
    }
}

type Map<V> = HashMap<Name, V, foldhash::fast::RandomState>;

/// A zone's records in a form that changes cheaply: names (lower-cased) to RRsets. Only
/// names that own records are present (empty non-terminals are not "in use", RFC 2136
/// §2.4.4). The apex always holds the SOA.
#[derive(Debug, Clone)]
pub struct ZoneData {
    origin: Name,
    nodes: Map<NodeData>,
    records: usize,
}

/// Why records cannot be a zone here, or a changeset cannot be applied to one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("zone {0} has no SOA record at its apex")]
    NoSoa(Name),
    #[error("the changeset goes from serial {found}, but the zone is at serial {expected}")]
    SerialGap { expected: u32, found: u32 },
    #[error("the changeset removes {owner} {rtype} which the zone does not hold")]
    Missing { owner: Name, rtype: String },
    #[error("the changeset's record {owner} {rtype} is not zone data: {reason}")]
    Invalid {
        owner: Name,
        rtype: String,
        reason: String,
    },
}

impl ZoneData {
    /// The records of a zone (zone file or snapshot). Duplicates collapse into one; an
    /// RRset takes the TTL of its first record.
    pub fn from_records(
        origin: &Name,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<ZoneData, DataError> {
        let mut z = ZoneData {
            origin: origin.to_lowercase(),
            nodes: Map::default(),
            records: 0,
        };
        for r in records {
            z.insert(&r.owner, r.rtype, r.ttl, &r.rdata);
        }
        if z.soa_record().is_none() {
            return Err(DataError::NoSoa(origin.clone()));
        }
        Ok(z)
    }

    /// The records of a served snapshot.
    pub fn from_zone(zone: &crate::zone::Zone) -> ZoneData {
        let mut z = ZoneData {
            origin: zone.origin.to_lowercase(),
            nodes: Map::default(),
            records: 0,
        };
        z.nodes.reserve(zone.name_count());
        for node in zone.nodes() {
            if node.is_empty_nonterminal() {
                continue;
            }
            let owner = node.owner_name();
            for set in node.rrsets() {
                for rd in set.rdatas() {
                    z.insert(&owner, set.rtype, set.ttl, rd);
                }
            }
        }
        z
    }

    /// The apex, lower-cased.
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// Number of records.
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// Number of names that own records.
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// The node at `name`, if it owns records.
    pub fn node(&self, name: &Name) -> Option<&NodeData> {
        self.nodes.get(&name.to_lowercase())
    }

    /// Adds a record; returns false when an equal record was there (its RRset then takes
    /// the new TTL all the same).
    fn insert(&mut self, owner: &Name, t: Rtype, ttl: u32, rdata: &[u8]) -> bool {
        let node = self
            .nodes
            .entry(owner.to_lowercase())
            .or_insert_with(|| NodeData {
                owner: owner.clone(),
                sets: Vec::new(),
            });
        let added = match node.set_mut(t) {
            Some(set) => {
                set.ttl = ttl;
                if set.contains(rdata) {
                    false
                } else {
                    set.push(rdata.into());
                    true
                }
            }
            None => {
                let mut set = RRsetData::new(t, ttl);
                set.push(rdata.into());
                node.sets.push(set);
                true
            }
        };
        self.records += usize::from(added);
        added
    }

    /// What `key` (lower-cased) holds, for patching a snapshot ([`crate::zone::Zone::patch`]).
    pub fn content<'a>(&'a self, key: &'a Name) -> crate::zone::patch::NameContent<'a> {
        match self.nodes.get(key) {
            Some(node) => crate::zone::patch::NameContent {
                owner: &node.owner,
                sets: node
                    .sets
                    .iter()
                    .filter(|s| !s.rdatas().is_empty())
                    .map(|s| crate::zone::patch::SetContent {
                        rtype: s.rtype,
                        ttl: s.ttl,
                        rdatas: s.rdatas(),
                    })
                    .collect(),
            },
            None => crate::zone::patch::NameContent {
                owner: key,
                sets: Vec::new(),
            },
        }
    }

    /// The SOA record.
    pub fn soa_record(&self) -> Option<Record> {
        let apex = self.nodes.get(&self.origin)?;
        let set = apex.set(Rtype::SOA)?;
        Some(Record {
            owner: apex.owner.clone(),
            rtype: Rtype::SOA,
            class: Rclass::IN,
            ttl: set.ttl,
            rdata: set.rdatas().first()?.to_vec(),
            source: None,
        })
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.soa_record()
            .and_then(|r| Soa::from_rdata(&r.rdata))
            .map_or(0, |s| s.serial)
    }

    /// Replaces the SOA record (data and TTL).
    fn set_soa(&mut self, ttl: u32, rdata: &[u8]) {
        if let Some(set) = self
            .nodes
            .get_mut(&self.origin)
            .and_then(|n| n.set_mut(Rtype::SOA))
        {
            set.ttl = ttl;
            set.replace(rdata);
        }
    }

    /// Every record, in no particular order: what [`crate::zone::Zone::build`] takes.
    pub fn to_records(&self) -> Vec<Record> {
        let mut out = Vec::with_capacity(self.records);
        for node in self.nodes.values() {
            for set in &node.sets {
                for rd in set.rdatas() {
                    out.push(Record {
                        owner: node.owner.clone(),
                        rtype: set.rtype,
                        class: Rclass::IN,
                        ttl: set.ttl,
                        rdata: rd.to_vec(),
                        source: None,
                    });
                }
            }
        }
        out
    }

    /// The zone in master-file form, SOA first, names in canonical-ish (sorted wire)
    /// order so that write-backs of the same data are identical.
    pub fn to_zone_file(&self) -> String {
        use std::fmt::Write as _;
        let mut keys: Vec<&Name> = self.nodes.keys().collect();
        keys.sort_by(|a, b| {
            let (a, b) = (a.as_wire(), b.as_wire());
            a.len().cmp(&b.len()).then(a.cmp(b))
        });
        if let Some(i) = keys.iter().position(|k| **k == self.origin) {
            let apex = keys.remove(i);
            keys.insert(0, apex);
        }
        let mut out = String::with_capacity(self.records * 48);
        let _ = writeln!(out, "$ORIGIN {}", self.origin);
        for k in keys {
            let node = &self.nodes[k];
            let mut sets: Vec<&RRsetData> = node.sets.iter().collect();
            sets.sort_by_key(|s| (s.rtype != Rtype::SOA, s.rtype));
            for set in sets {
                for rd in set.rdatas() {
                    let r = Record {
                        owner: node.owner.clone(),
                        rtype: set.rtype,
                        class: Rclass::IN,
                        ttl: set.ttl,
                        rdata: rd.to_vec(),
                        source: None,
                    };
                    let _ = writeln!(
                        out,
                        "{}",
                        crate::zone::zonefile::format_record(&r, Some(&self.origin))
                    );
                }
            }
        }
        out
    }

    /// Applies a changeset read from the journal: it must start at this zone's serial,
    /// and every record it removes must be here.
    pub fn apply_changeset(&mut self, cs: &Changeset) -> Result<(), DataError> {
        let serial = self.serial();
        if cs.from_serial != serial {
            return Err(DataError::SerialGap {
                expected: serial,
                found: cs.from_serial,
            });
        }
        for r in cs.removed.iter().skip(1) {
            if !self.remove_record(&r.owner, r.rtype, &r.rdata) {
                return Err(DataError::Missing {
                    owner: r.owner.clone(),
                    rtype: r.rtype.to_string(),
                });
            }
        }
        for r in cs.added.iter().skip(1) {
            if let Err(reason) = check_rdata(r.rtype, &r.rdata) {
                return Err(DataError::Invalid {
                    owner: r.owner.clone(),
                    rtype: r.rtype.to_string(),
                    reason,
                });
            }
            if !r.owner.is_subdomain_of(&self.origin) {
                return Err(DataError::Invalid {
                    owner: r.owner.clone(),
                    rtype: r.rtype.to_string(),
                    reason: format!("outside the zone {}", self.origin),
                });
            }
            self.insert(&r.owner, r.rtype, r.ttl, &r.rdata);
        }
        let soa = &cs.added[0];
        self.set_soa(soa.ttl, &soa.rdata);
        Ok(())
    }

    /// Removes one record; false when it was not there.
    fn remove_record(&mut self, owner: &Name, t: Rtype, rdata: &[u8]) -> bool {
        let key = owner.to_lowercase();
        let Some(node) = self.nodes.get_mut(&key) else {
            return false;
        };
        let Some(si) = node.sets.iter().position(|s| s.rtype == t) else {
            return false;
        };
        if !node.sets[si].remove(rdata) {
            return false;
        }
        if node.sets[si].rdatas().is_empty() {
            node.sets.remove(si);
        }
        if node.sets.is_empty() {
            self.nodes.remove(&key);
        }
        self.records -= 1;
        true
    }
}

fn record(owner: &Name, t: Rtype, ttl: u32, rdata: &[u8]) -> Record {
    Record {
        owner: owner.clone(),
        rtype: t,
        class: Rclass::IN,
        ttl,
        rdata: rdata.to_vec(),
        source: None,
    }
}

/// Writes `serial` into SOA rdata (the first of the five numbers after the two names).
fn set_serial(rdata: &mut [u8], serial: u32) {
    let (_, e) = name_span(Rtype::SOA, rdata);
    if e != 0 && rdata.len() >= e + 4 {
        rdata[e..e + 4].copy_from_slice(&serial.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Processing

/// Why an update was not applied: the rcode to answer, and a reason for the log and the
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rcode: Rcode,
    pub reason: Reason,
    pub detail: String,
}

/// The metric label of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not TSIG-signed.
    Unsigned,
    /// Signed by a key the zone's policy does not allow for this change.
    Policy,
    /// A prerequisite did not hold.
    Prerequisite,
    /// A record outside the zone.
    NotZone,
    /// Malformed.
    Format,
    /// A limit would be crossed.
    Limit,
}

impl Reason {
    /// Every reason, for the metrics.
    pub const ALL: [Reason; 6] = [
        Reason::Unsigned,
        Reason::Policy,
        Reason::Prerequisite,
        Reason::NotZone,
        Reason::Format,
        Reason::Limit,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Unsigned => "unsigned",
            Reason::Policy => "policy",
            Reason::Prerequisite => "prerequisite",
            Reason::NotZone => "notzone",
            Reason::Format => "formerr",
            Reason::Limit => "limit",
        }
    }
}

fn reject(rcode: Rcode, reason: Reason, detail: impl Into<String>) -> Rejection {
    Rejection {
        rcode,
        reason,
        detail: detail.into(),
    }
}

/// What an applied update changed, and how to take it back.
#[derive(Debug)]
pub struct Applied {
    /// `None` when nothing changed (NOERROR, serial unchanged).
    pub changeset: Option<Changeset>,
    undo: Undo,
}

impl Applied {
    /// Takes the update back out of `data` (when its changeset could not be made
    /// durable). Undo applied updates newest first.
    pub fn undo(self, data: &mut ZoneData) {
        self.undo.restore(data);
    }
}

/// The nodes an update touched, as they were before it.
#[derive(Debug, Default)]
struct Undo {
    nodes: Vec<(Name, Option<NodeData>)>,
    records: usize,
}

impl Undo {
    fn save(&mut self, data: &ZoneData, key: &Name) {
        if !self.nodes.iter().any(|(k, _)| k == key) {
            self.nodes.push((key.clone(), data.nodes.get(key).cloned()));
        }
    }

    fn restore(self, data: &mut ZoneData) {
        for (key, node) in self.nodes.into_iter().rev() {
            match node {
                Some(n) => {
                    data.nodes.insert(key, n);
                }
                None => {
                    data.nodes.remove(&key);
                }
            }
        }
        data.records = self.records;
    }
}

/// Processes one update for zone `data` (RFC 2136 §3.2–3.4) signed by `signer`: on
/// success the zone holds the new records and the SOA its new serial.
pub fn process(
    data: &mut ZoneData,
    req: &Request,
    signer: Option<&Name>,
    policy: &Policy,
    limits: &Limits,
) -> Result<Applied, Rejection> {
    let Some(key) = signer else {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Unsigned,
            "unsigned updates are refused: sign it with a TSIG key (nsupdate -k)",
        ));
    };
    if !policy.knows(key) {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Policy,
            format!("key {key} may not update zone {}", data.origin),
        ));
    }
    check_prerequisites(data, req)?;
    prescan(data, req, key, policy, limits)?;
    let mut undo = Undo {
        nodes: Vec::new(),
        records: data.records,
    };
    // The apex holds the SOA, whose serial changes with any change.
    let origin = data.origin.clone();
    undo.save(data, &origin);
    let old_soa = data.soa_record().expect("a zone always holds its SOA");
    let old_serial = data.serial();
    match apply(data, req, limits, &mut undo) {
        Ok(()) => {}
        Err(r) => {
            undo.restore(data);
            return Err(r);
        }
    }
    let changeset = changes(data, &undo, old_soa, old_serial);
    Ok(Applied { changeset, undo })
}

fn in_zone(data: &ZoneData, owner: &Name) -> bool {
    owner.is_subdomain_of(&data.origin)
}
mod apply;
mod message;
mod policy;
mod prereq;

use apply::{apply, changes, prescan};
use message::{canonical_rdata, name_span};
pub use message::{echo_of, parse, rdata_eq, response, FormatError, Request, UpdateRecord};
pub use policy::{Grant, Limits, NameMatch, Policy, TypeMatch, HOST_TYPES};
use prereq::check_prerequisites;

#[cfg(test)]
#[path = "host_tests.rs"]
mod host_tests;

pub mod journal;
mod merge;
pub use merge::MergeConflict;
pub mod replay;
pub mod writeback;

#[cfg(test)]
mod tests;
