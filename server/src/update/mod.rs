//! Dynamic update (RFC 2136): reading an UPDATE message, checking its prerequisites,
//! authorising it against the zone's policy, and applying it to a zone's records to give
//! the [`Changeset`] that the journal stores.
//!
//! Everything here is pure: no sockets, files or clocks. [`crate::dynamic`] serialises
//! the updates of a zone, makes each changeset durable and swaps the new snapshot in.
//!
//! Order of processing (RFC 2136 §3): zone section ([`parse`]: FORMERR; the caller
//! answers NOTAUTH for a zone it does not serve), the signer (REFUSED when unsigned or
//! when the key has no grant in the zone), prerequisites (§3.2: NXDOMAIN, YXDOMAIN,
//! NXRRSET, YXRRSET, NOTZONE, FORMERR), the update section's prescan (§3.4.1: NOTZONE,
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

use std::collections::{HashMap, HashSet};

use crate::proto::name::{wire_name_len, Name};
use crate::proto::reader::{Header, ReadError, Reader};
use crate::proto::rr::{check_rdata, class, is_meta_or_query_only, rtype, rtype_more, Record, Soa};
use crate::proto::wire::{flags, rcode, HEADER_LEN};
use crate::zone::changeset::Changeset;

/// The RFC 2136 rcodes, from [`crate::proto::types::Rcode`]'s table.
pub mod update_rcode {
    pub use crate::proto::types::rcode::{NOTAUTH, NOTZONE, NXRRSET, YXDOMAIN, YXRRSET};
}
use update_rcode::{NOTZONE, NXRRSET, YXDOMAIN, YXRRSET};

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
// Reading the message

/// One record of the prerequisite or update section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateRecord {
    pub owner: Name,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    /// Uncompressed.
    pub rdata: Vec<u8>,
}

/// A parsed UPDATE request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    /// The zone section's name (ZNAME) and class (ZCLASS).
    pub zone: Name,
    pub zclass: u16,
    pub prerequisites: Vec<UpdateRecord>,
    pub updates: Vec<UpdateRecord>,
    /// The request had an OPT record: the response carries one too.
    pub edns: bool,
}

/// A message that is not a well-formed UPDATE: answer FORMERR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("the zone section must hold exactly one record, not {0}")]
    ZoneCount(u16),
    #[error("the zone section's type must be SOA, not {0}")]
    ZoneType(u16),
    #[error("a name is malformed or runs past the end of the message")]
    BadName,
    #[error("a record runs past the end of the message")]
    Truncated,
    #[error("record data of a type with names cannot be decompressed")]
    BadRdata,
}

/// The response header and zone section for a request, as far as it could be read:
/// ID, RD copied, and the zone section bytes when they were well formed.
pub fn echo_of(pkt: &[u8]) -> (u16, u16, &[u8]) {
    let Some(h) = Header::parse(pkt) else {
        return (0, 0, &[]);
    };
    let fl = h.flags & flags::RD;
    if h.counts[0] != 1 {
        return (h.id, fl, &[]);
    }
    // The zone name right after the header cannot be compressed (a pointer would point
    // into the header), so the section is echoed as it is.
    let mut r = Reader::at(pkt, HEADER_LEN);
    match r.question() {
        Ok(_) => (h.id, fl, &pkt[HEADER_LEN..r.pos()]),
        Err(_) => (h.id, fl, &[]),
    }
}

/// Builds a response with only a header, the echoed zone (or question) section and an
/// OPT when asked for: UPDATE answers, and errors answered before a request is read.
/// The caller signs it afterwards when the request was signed.
pub fn response(
    op: u8,
    id: u16,
    copy_flags: u16,
    zone_section: &[u8],
    rc: u16,
    edns: Option<u16>,
) -> Vec<u8> {
    crate::proto::builder::bare_response(op, id, copy_flags, zone_section, rc, edns)
}

/// Where the compressible names of a type's rdata sit: (octets before the first name,
/// number of names), for comparing rdata (RFC 2136 §1.1.1). RFC 3597 §4 lets senders
/// compress the names of the RFC 1035 types; the others listed are compared the same way.
fn rdata_name_layout(t: u16) -> Option<(usize, usize)> {
    use rtype_more as m;
    match t {
        rtype::NS | rtype::CNAME | rtype::PTR | m::MD | m::MF | m::MB | m::MG | m::MR => {
            Some((0, 1))
        }
        rtype::MX | m::AFSDB | m::RT | m::KX => Some((2, 1)),
        rtype::SRV => Some((6, 1)),
        rtype::SOA | m::MINFO | m::RP => Some((0, 2)),
        _ => None,
    }
}

fn bad_name(_: ReadError) -> FormatError {
    FormatError::BadName
}

/// Parses an UPDATE message (RFC 2136 §2). TSIG and OPT records in the additional
/// section are skipped (TSIG is checked by [`crate::proto::tsig`] before this), other
/// additional records are ignored as §2.5 allows.
pub fn parse(pkt: &[u8]) -> Result<Request, FormatError> {
    let (h, mut r) = Reader::after_header(pkt).map_err(|_| FormatError::Short)?;
    let [zo, pr, up, ad] = h.counts;
    if zo != 1 {
        return Err(FormatError::ZoneCount(zo));
    }
    let zone = r.name().map_err(bad_name)?;
    let ztype = r.u16().map_err(|_| FormatError::Truncated)?;
    let zclass = r.u16().map_err(|_| FormatError::Truncated)?;
    if ztype != rtype::SOA {
        return Err(FormatError::ZoneType(ztype));
    }
    let mut sections: [Vec<UpdateRecord>; 2] = [Vec::new(), Vec::new()];
    let mut edns = false;
    for (section, n) in [(0usize, pr), (1, up), (2, ad)] {
        for _ in 0..n {
            let at = r.pos();
            let rec = r
                .record()
                .map_err(|_| match Reader::at(pkt, at).skip_name() {
                    Ok(()) => FormatError::Truncated,
                    Err(_) => FormatError::BadName,
                })?;
            if section == 2 {
                edns |= rec.rtype == rtype::OPT;
                continue;
            }
            // Class ANY/NONE deletes and prerequisites carry no data.
            let rdata = if rec.rdata.is_empty() {
                Vec::new()
            } else {
                r.rdata_uncompressed(&rec)
                    .map_err(|_| FormatError::BadRdata)?
            };
            sections[section].push(UpdateRecord {
                owner: Name::from_wire(&rec.owner).map_err(|_| FormatError::BadName)?,
                rtype: rec.rtype,
                class: rec.class,
                ttl: rec.ttl,
                rdata,
            });
        }
    }
    let [prerequisites, updates] = sections;
    Ok(Request {
        id: h.id,
        zone,
        zclass,
        prerequisites,
        updates,
        edns,
    })
}

// ---------------------------------------------------------------------------------------
// Comparing record data

/// (start, end) of the part of `rdata` that holds domain names, compared without regard
/// to case; everything else is compared octet by octet.
fn name_span(t: u16, rdata: &[u8]) -> (usize, usize) {
    let Some((fixed, names)) = rdata_name_layout(t) else {
        return (0, 0);
    };
    let mut end = fixed.min(rdata.len());
    for _ in 0..names {
        match rdata.get(end..).and_then(wire_name_len) {
            Some(l) => end += l,
            None => return (0, 0),
        }
    }
    (fixed.min(end), end)
}

/// RFC 2136 §1.1.1 record data equality: names case-insensitive, the rest exact.
pub fn rdata_eq(t: u16, a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    if a.len() != b.len() {
        return false;
    }
    let (s, e) = name_span(t, a);
    if (s, e) != name_span(t, b) || s == e {
        return false;
    }
    a[..s] == b[..s] && a[s..e].eq_ignore_ascii_case(&b[s..e]) && a[e..] == b[e..]
}

/// `rdata` with its names lower-cased, for hashing records that compare equal alike.
fn canonical_rdata(t: u16, rdata: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (s, e) = name_span(t, rdata);
    if s == e || !rdata[s..e].iter().any(u8::is_ascii_uppercase) {
        return rdata.into();
    }
    let mut v = rdata.to_vec();
    v[s..e].make_ascii_lowercase();
    v.into()
}

// ---------------------------------------------------------------------------------------
// The zone as a mutable set of records

/// One RRset: every record of one type at one name, with one TTL (RFC 2181 §5.2).
#[derive(Debug, Clone)]
pub struct RRsetData {
    pub rtype: u16,
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
    pub fn new(rtype: u16, ttl: u32) -> RRsetData {
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
    fn set(&self, t: u16) -> Option<&RRsetData> {
        self.sets.iter().find(|s| s.rtype == t)
    }

    fn set_mut(&mut self, t: u16) -> Option<&mut RRsetData> {
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
    fn insert(&mut self, owner: &Name, t: u16, ttl: u32, rdata: &[u8]) -> bool {
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
        let set = apex.set(rtype::SOA)?;
        Some(Record {
            owner: apex.owner.clone(),
            rtype: rtype::SOA,
            class: class::IN,
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
            .and_then(|n| n.set_mut(rtype::SOA))
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
                        class: class::IN,
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
            sets.sort_by_key(|s| (s.rtype != rtype::SOA, s.rtype));
            for set in sets {
                for rd in set.rdatas() {
                    let r = Record {
                        owner: node.owner.clone(),
                        rtype: set.rtype,
                        class: class::IN,
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
                    rtype: crate::proto::rr::type_name(r.rtype),
                });
            }
        }
        for r in cs.added.iter().skip(1) {
            if let Err(reason) = check_rdata(r.rtype, &r.rdata) {
                return Err(DataError::Invalid {
                    owner: r.owner.clone(),
                    rtype: crate::proto::rr::type_name(r.rtype),
                    reason,
                });
            }
            if !r.owner.is_subdomain_of(&self.origin) {
                return Err(DataError::Invalid {
                    owner: r.owner.clone(),
                    rtype: crate::proto::rr::type_name(r.rtype),
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
    fn remove_record(&mut self, owner: &Name, t: u16, rdata: &[u8]) -> bool {
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

fn record(owner: &Name, t: u16, ttl: u32, rdata: &[u8]) -> Record {
    Record {
        owner: owner.clone(),
        rtype: t,
        class: class::IN,
        ttl,
        rdata: rdata.to_vec(),
        source: None,
    }
}

/// Writes `serial` into SOA rdata (the first of the five numbers after the two names).
fn set_serial(rdata: &mut [u8], serial: u32) {
    let (_, e) = name_span(rtype::SOA, rdata);
    if e != 0 && rdata.len() >= e + 4 {
        rdata[e..e + 4].copy_from_slice(&serial.to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Policy

/// Which names a grant covers, as BIND's `update-policy` match types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameMatch {
    /// Every name in the zone (BIND `zonesub`).
    Zone,
    /// Exactly this name (BIND `name`).
    Exact(Name),
    /// This name and every name below it (BIND `subdomain`).
    Subdomain(Name),
    /// The names the wildcard `*.x` stands for: every name strictly below `x`
    /// (BIND `wildcard`).
    Wildcard(Name),
    /// The name equal to the signing key's name: "a host may only change its own
    /// name" (BIND `self`).
    SelfName,
    /// The key's name and every name below it (BIND `selfsub`).
    SelfSub,
    /// A host key (`match = "host"`), in the spirit of BIND's `krb5-srv`/`ms-self`: the
    /// A, AAAA and DHCID records at `host` and, at each of `srv_owners`, only the SRV
    /// records whose target is `host`. One compromised host can then publish itself but
    /// neither change nor delete another member's records.
    Host {
        /// The host the key stands for (from the key name, see `dynamic::resolve`).
        host: Name,
        /// The etcd SRV owner names the host may publish itself under.
        srv_owners: Vec<Name>,
    },
}

/// The types a host key may change at its own name.
pub const HOST_TYPES: [u16; 3] = [rtype::A, rtype::AAAA, rtype::DHCID];

/// Which types a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMatch {
    /// Every type except SOA and NS, as BIND's default: hosts change their own data,
    /// not the zone's delegation or serial.
    Default,
    /// Every type, SOA and NS included (`types = ["ANY"]`, and `--allow-update`).
    All,
    /// These types only.
    Only(Vec<u16>),
}

impl TypeMatch {
    fn covers(&self, t: u16) -> bool {
        match self {
            TypeMatch::Default => t != rtype::SOA && t != rtype::NS,
            TypeMatch::All => true,
            TypeMatch::Only(ts) => ts.contains(&t),
        }
    }
}

/// One rule: `key` may change `types` at `names`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Lower-cased key name.
    pub key: Name,
    pub names: NameMatch,
    pub types: TypeMatch,
}

impl Grant {
    fn covers_name(&self, key: &Name, owner: &Name) -> bool {
        match &self.names {
            NameMatch::Zone => true,
            NameMatch::Exact(n) => owner.eq_ignore_case(n),
            NameMatch::Subdomain(n) => owner.is_subdomain_of(n),
            NameMatch::Wildcard(w) => match w.parent() {
                Some(base) => owner.is_subdomain_of(&base) && !owner.eq_ignore_case(&base),
                None => false,
            },
            NameMatch::SelfName => owner.eq_ignore_case(key),
            NameMatch::SelfSub => owner.is_subdomain_of(key),
            NameMatch::Host { host, srv_owners } => {
                owner.eq_ignore_case(host) || srv_owners.iter().any(|o| o.eq_ignore_case(owner))
            }
        }
    }

    /// Whether this grant lets `key` change the record `t`/`rdata` at `owner`; `rdata`
    /// `None` asks for the type at the name regardless of data (a delete of an RRset
    /// that does not exist).
    fn covers_record(&self, key: &Name, owner: &Name, t: u16, rdata: Option<&[u8]>) -> bool {
        if !self.key.eq_ignore_case(key) || !self.types.covers(t) {
            return false;
        }
        match &self.names {
            NameMatch::Host { host, srv_owners } => {
                if owner.eq_ignore_case(host) {
                    return HOST_TYPES.contains(&t);
                }
                t == rtype::SRV
                    && srv_owners.iter().any(|o| o.eq_ignore_case(owner))
                    && rdata.is_none_or(|d| {
                        crate::proto::rr::Srv::from_rdata(d)
                            .is_some_and(|s| s.target.eq_ignore_case(host))
                    })
            }
            _ => self.covers_name(key, owner),
        }
    }
}

/// A zone's update policy: a list of grants, any of which may allow a change. Empty
/// means the zone takes no updates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub grants: Vec<Grant>,
}

impl Policy {
    /// Whether `key` has any grant here.
    pub fn knows(&self, key: &Name) -> bool {
        self.grants.iter().any(|g| g.key.eq_ignore_case(key))
    }

    /// Whether `key` may change records of type `t` at `owner` (whatever their data).
    pub fn allows(&self, key: &Name, owner: &Name, t: u16) -> bool {
        self.grants
            .iter()
            .any(|g| g.covers_record(key, owner, t, None))
    }

    /// Whether `key` may add or delete the record `t`/`rdata` at `owner`.
    pub fn allows_record(&self, key: &Name, owner: &Name, t: u16, rdata: &[u8]) -> bool {
        self.grants
            .iter()
            .any(|g| g.covers_record(key, owner, t, Some(rdata)))
    }

    /// Whether `key` may make the change `u` (one update-section record, RFC 2136 §3.3)
    /// to `data`: a delete of an RRset, or of everything at a name, needs every record
    /// it would remove to be allowed.
    pub fn permits(&self, data: &ZoneData, key: &Name, u: &UpdateRecord) -> bool {
        let existing = |s: &RRsetData| {
            s.rdatas()
                .iter()
                .all(|d| self.allows_record(key, &u.owner, s.rtype, d))
        };
        if u.class != class::ANY {
            return self.allows_record(key, &u.owner, u.rtype, &u.rdata);
        }
        if u.rtype == rtype::ANY {
            // Deleting everything at a name needs every record that is there (the apex
            // SOA and NS are never deleted this way, RFC 2136 §3.4.2.3).
            return match data.node(&u.owner) {
                Some(n) => n.sets.iter().all(|s| {
                    existing(s)
                        || (s.rtype == rtype::SOA || s.rtype == rtype::NS)
                            && u.owner.eq_ignore_case(&data.origin)
                }),
                // Nothing there to delete: any grant for the name will do.
                None => self
                    .grants
                    .iter()
                    .any(|g| g.key.eq_ignore_case(key) && g.covers_name(key, &u.owner)),
            };
        }
        match data.node(&u.owner).and_then(|n| n.set(u.rtype)) {
            Some(s) if !s.rdatas().is_empty() => existing(s),
            _ => self.allows(key, &u.owner, u.rtype),
        }
    }
}

#[cfg(test)]
#[path = "host_tests.rs"]
mod host_tests;

/// Limits that keep one key from growing a zone without bound (RFC 2136 §7 leaves this
/// to the server; BIND caps records per type at 100 by default when asked, Knot the zone
/// size). Crossing one answers REFUSED and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_rrset_records: usize,
    pub max_types_per_name: usize,
    pub max_zone_names: usize,
    pub max_update_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rrset_records: 100,
            max_types_per_name: 32,
            max_zone_names: 1_000_000,
            max_update_records: 1000,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Processing

/// Why an update was not applied: the rcode to answer, and a reason for the log and the
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub rcode: u16,
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

fn reject(rcode: u16, reason: Reason, detail: impl Into<String>) -> Rejection {
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
            rcode::REFUSED,
            Reason::Unsigned,
            "unsigned updates are refused: sign it with a TSIG key (nsupdate -k)",
        ));
    };
    if !policy.knows(key) {
        return Err(reject(
            rcode::REFUSED,
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

/// RFC 2136 §3.2.
fn check_prerequisites(data: &ZoneData, req: &Request) -> Result<(), Rejection> {
    // Value-dependent prerequisites are gathered into RRsets and compared at the end.
    let mut wanted: Vec<(Name, RRsetData)> = Vec::new();
    for p in &req.prerequisites {
        if p.ttl != 0 {
            return Err(reject(
                rcode::FORMERR,
                Reason::Format,
                format!("prerequisite {} has TTL {}, not 0", p.owner, p.ttl),
            ));
        }
        if !in_zone(data, &p.owner) {
            return Err(reject(
                NOTZONE,
                Reason::NotZone,
                format!("prerequisite {} is outside zone {}", p.owner, data.origin),
            ));
        }
        let node = data.node(&p.owner);
        match p.class {
            class::ANY => {
                if !p.rdata.is_empty() {
                    return Err(reject(
                        rcode::FORMERR,
                        Reason::Format,
                        "a class ANY prerequisite carries data",
                    ));
                }
                if p.rtype == rtype::ANY {
                    if node.is_none() {
                        return Err(reject(
                            rcode::NXDOMAIN,
                            Reason::Prerequisite,
                            format!("{} is not in use", p.owner),
                        ));
                    }
                } else if node.and_then(|n| n.set(p.rtype)).is_none() {
                    return Err(reject(
                        NXRRSET,
                        Reason::Prerequisite,
                        format!(
                            "{} {} does not exist",
                            p.owner,
                            crate::proto::rr::type_name(p.rtype)
                        ),
                    ));
                }
            }
            class::NONE => {
                if !p.rdata.is_empty() {
                    return Err(reject(
                        rcode::FORMERR,
                        Reason::Format,
                        "a class NONE prerequisite carries data",
                    ));
                }
                if p.rtype == rtype::ANY {
                    if node.is_some() {
                        return Err(reject(
                            YXDOMAIN,
                            Reason::Prerequisite,
                            format!("{} is in use", p.owner),
                        ));
                    }
                } else if node.and_then(|n| n.set(p.rtype)).is_some() {
                    return Err(reject(
                        YXRRSET,
                        Reason::Prerequisite,
                        format!(
                            "{} {} exists",
                            p.owner,
                            crate::proto::rr::type_name(p.rtype)
                        ),
                    ));
                }
            }
            c if c == req.zclass => {
                if p.rtype == rtype::ANY || is_meta_or_query_only(p.rtype) {
                    return Err(reject(
                        rcode::FORMERR,
                        Reason::Format,
                        "a value-dependent prerequisite of a meta type",
                    ));
                }
                let key = p.owner.to_lowercase();
                let at = wanted
                    .iter()
                    .position(|(k, s)| *k == key && s.rtype == p.rtype);
                let set = match at {
                    Some(i) => &mut wanted[i].1,
                    None => {
                        wanted.push((key, RRsetData::new(p.rtype, 0)));
                        &mut wanted.last_mut().expect("just pushed").1
                    }
                };
                if !set.contains(&p.rdata) {
                    set.push(p.rdata.clone().into_boxed_slice());
                }
            }
            _ => {
                return Err(reject(
                    rcode::FORMERR,
                    Reason::Format,
                    format!("prerequisite of class {}", p.class),
                ))
            }
        }
    }
    for (key, want) in &wanted {
        let have = data.nodes.get(key).and_then(|n| n.set(want.rtype));
        let equal = have.is_some_and(|h| {
            h.rdatas().len() == want.rdatas().len() && want.rdatas().iter().all(|r| h.contains(r))
        });
        if !equal {
            return Err(reject(
                NXRRSET,
                Reason::Prerequisite,
                format!(
                    "{} {} does not hold exactly the values given",
                    Name::from_wire(key.as_wire()).unwrap_or_else(|_| Name::root()),
                    crate::proto::rr::type_name(want.rtype)
                ),
            ));
        }
    }
    Ok(())
}

/// RFC 2136 §3.4.1 and the per-record permission check of §3.3.
fn prescan(
    data: &ZoneData,
    req: &Request,
    key: &Name,
    policy: &Policy,
    limits: &Limits,
) -> Result<(), Rejection> {
    if req.updates.len() > limits.max_update_records {
        return Err(reject(
            rcode::REFUSED,
            Reason::Limit,
            format!(
                "{} records in one update, more than the limit of {}",
                req.updates.len(),
                limits.max_update_records
            ),
        ));
    }
    for u in &req.updates {
        if !in_zone(data, &u.owner) {
            return Err(reject(
                NOTZONE,
                Reason::NotZone,
                format!("{} is outside zone {}", u.owner, data.origin),
            ));
        }
        let format = |why: &str| {
            reject(
                rcode::FORMERR,
                Reason::Format,
                format!(
                    "{} {}: {why}",
                    u.owner,
                    crate::proto::rr::type_name(u.rtype)
                ),
            )
        };
        match u.class {
            c if c == req.zclass => {
                if is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be added"));
                }
                if let Err(e) = check_rdata(u.rtype, &u.rdata) {
                    return Err(format(&e));
                }
            }
            class::ANY => {
                if u.ttl != 0 || !u.rdata.is_empty() {
                    return Err(format("a class ANY delete must have TTL 0 and no data"));
                }
                if u.rtype != rtype::ANY && is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be deleted"));
                }
            }
            class::NONE => {
                if u.ttl != 0 {
                    return Err(format("a class NONE delete must have TTL 0"));
                }
                if is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be deleted"));
                }
                if let Err(e) = check_rdata(u.rtype, &u.rdata) {
                    return Err(format(&e));
                }
            }
            _ => return Err(format("the class is neither the zone's, ANY nor NONE")),
        }
        let allowed = policy.permits(data, key, u);
        if !allowed {
            return Err(reject(
                rcode::REFUSED,
                Reason::Policy,
                format!(
                    "key {key} may not change {} {}",
                    u.owner,
                    crate::proto::rr::type_name(u.rtype)
                ),
            ));
        }
    }
    Ok(())
}

/// RFC 2136 §3.4.2: the changes, with the limits checked as they are made.
fn apply(
    data: &mut ZoneData,
    req: &Request,
    limits: &Limits,
    undo: &mut Undo,
) -> Result<(), Rejection> {
    let origin = data.origin.clone();
    for u in &req.updates {
        let key = u.owner.to_lowercase();
        let at_apex = key == origin;
        match u.class {
            c if c == req.zclass => {
                if u.rtype == rtype::SOA {
                    let new = Soa::from_rdata(&u.rdata).map(|s| s.serial);
                    if !at_apex || !new.is_some_and(|n| serial_gt(n, data.serial())) {
                        continue; // §3.4.2.2: not at the apex, or the serial is not higher.
                    }
                    undo.save(data, &key);
                    data.set_soa(u.ttl, &u.rdata);
                    continue;
                }
                let node = data.nodes.get(&key);
                let has_cname = node.is_some_and(|n| n.set(rtype::CNAME).is_some());
                let has_other =
                    node.is_some_and(|n| n.sets.iter().any(|s| s.rtype != rtype::CNAME));
                if u.rtype == rtype::CNAME {
                    if has_other {
                        continue; // §3.4.2.2: CNAME where other data exists.
                    }
                    undo.save(data, &key);
                    if let Some(n) = data.nodes.get_mut(&key) {
                        // A name has one CNAME: the new one replaces it.
                        let old = n.records();
                        n.sets.clear();
                        data.records -= old;
                    }
                } else if has_cname {
                    continue; // §3.4.2.2: other data where a CNAME exists.
                }
                undo.save(data, &key);
                let new_name = !data.nodes.contains_key(&key);
                data.insert(&u.owner, u.rtype, u.ttl, &u.rdata);
                let node = &data.nodes[&key];
                let set_len = node.set(u.rtype).map_or(0, |s| s.rdatas().len());
                if set_len > limits.max_rrset_records {
                    return Err(reject(
                        rcode::REFUSED,
                        Reason::Limit,
                        format!(
                            "{} {} would hold {set_len} records, more than the limit of {}",
                            u.owner,
                            crate::proto::rr::type_name(u.rtype),
                            limits.max_rrset_records
                        ),
                    ));
                }
                if node.sets.len() > limits.max_types_per_name {
                    return Err(reject(
                        rcode::REFUSED,
                        Reason::Limit,
                        format!(
                            "{} would hold {} types, more than the limit of {}",
                            u.owner,
                            node.sets.len(),
                            limits.max_types_per_name
                        ),
                    ));
                }
                if new_name && data.nodes.len() > limits.max_zone_names {
                    return Err(reject(
                        rcode::REFUSED,
                        Reason::Limit,
                        format!(
                            "zone {origin} would hold more than {} names",
                            limits.max_zone_names
                        ),
                    ));
                }
            }
            class::ANY => {
                let Some(node) = data.nodes.get(&key) else {
                    continue;
                };
                let keep = |t: u16| at_apex && (t == rtype::SOA || t == rtype::NS);
                let doomed: usize = node
                    .sets
                    .iter()
                    .filter(|s| (u.rtype == rtype::ANY || s.rtype == u.rtype) && !keep(s.rtype))
                    .map(|s| s.rdatas().len())
                    .sum();
                if doomed == 0 {
                    continue;
                }
                undo.save(data, &key);
                let node = data.nodes.get_mut(&key).expect("present above");
                node.sets
                    .retain(|s| !((u.rtype == rtype::ANY || s.rtype == u.rtype) && !keep(s.rtype)));
                if node.sets.is_empty() {
                    data.nodes.remove(&key);
                }
                data.records -= doomed;
            }
            class::NONE => {
                if u.rtype == rtype::SOA {
                    continue; // §3.4.2.4: the SOA is never deleted.
                }
                let Some(set) = data.nodes.get(&key).and_then(|n| n.set(u.rtype)) else {
                    continue;
                };
                if !set.contains(&u.rdata) {
                    continue;
                }
                if at_apex && u.rtype == rtype::NS && set.rdatas().len() == 1 {
                    continue; // §3.4.2.4: never the last apex NS.
                }
                undo.save(data, &key);
                data.remove_record(&u.owner, u.rtype, &u.rdata);
            }
            _ => unreachable!("prescan refused other classes"),
        }
    }
    Ok(())
}

/// The changeset of an applied update: the touched nodes before and after, and the new
/// SOA (serial + 1 unless the update raised it itself). `None` when nothing changed.
fn changes(
    data: &mut ZoneData,
    undo: &Undo,
    old_soa: Record,
    old_serial: u32,
) -> Option<Changeset> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let empty: &[RRsetData] = &[];
    for (key, before) in &undo.nodes {
        let after = data.nodes.get(key);
        let before_sets = before.as_ref().map_or(empty, |n| &n.sets[..]);
        let after_sets = after.map_or(empty, |n| &n.sets[..]);
        // A name the update both created and emptied again (add then delete of one
        // record on an unused name) was saved but holds nothing either side: no change.
        let Some(owner) = after.or(before.as_ref()).map(|n| n.owner.clone()) else {
            continue;
        };
        let contains = |sets: &[RRsetData], t: u16, ttl: u32, rd: &[u8]| {
            sets.iter()
                .any(|s| s.rtype == t && s.ttl == ttl && s.contains(rd))
        };
        for s in before_sets.iter().filter(|s| s.rtype != rtype::SOA) {
            for rd in s.rdatas() {
                if !contains(after_sets, s.rtype, s.ttl, rd) {
                    removed.push(record(&owner, s.rtype, s.ttl, rd));
                }
            }
        }
        for s in after_sets.iter().filter(|s| s.rtype != rtype::SOA) {
            for rd in s.rdatas() {
                if !contains(before_sets, s.rtype, s.ttl, rd) {
                    added.push(record(&owner, s.rtype, s.ttl, rd));
                }
            }
        }
    }
    let explicit = data.serial();
    let soa_changed = explicit != old_serial;
    if removed.is_empty() && added.is_empty() && !soa_changed {
        return None;
    }
    let mut new_soa = data.soa_record().expect("a zone always holds its SOA");
    let to = if soa_changed {
        explicit
    } else {
        serial_next(old_serial)
    };
    set_serial(&mut new_soa.rdata, to);
    data.set_soa(new_soa.ttl, &new_soa.rdata);
    removed.insert(0, old_soa);
    added.insert(0, new_soa);
    Some(Changeset {
        from_serial: old_serial,
        to_serial: to,
        removed,
        added,
    })
}

pub mod journal;
mod merge;
pub use merge::MergeConflict;
pub mod replay;
pub mod writeback;

#[cfg(test)]
mod tests;
