//! Immutable zone snapshots and the name lookup that answers are built from
//! (RFC 1034 §4.3.2, RFC 4592 wildcards, RFC 8020 empty non-terminals).
//!
//! A [`Zone`] is built once from records and never changed: a reload builds a new snapshot
//! and a dynamic update patches one into a new snapshot ([`patch`]: the untouched names
//! are shared, not copied), which is swapped in atomically, so readers never lock. Every
//! name in the zone, including empty non-terminals, is in one hash table, and each node
//! carries what the lookup would otherwise have to search for (is it a delegation, is it
//! below one, does it have a wildcard child). Hits and misses therefore cost a handful of
//! hash lookups — one per label at most — whatever the zone size.
//!
//! Storage is flat, because a large zone has hundreds of thousands of small pieces and a
//! heap allocation each would cost more than the data (and make a rebuild slow): names in
//! one byte arena, rdata in another (each prefixed with its length), RRsets and nodes in
//! two vectors, and the hash table holds only 4-byte node numbers. [`Node`] and [`RRset`]
//! are borrowed views into that storage.
//!
//! Limitations: no DNSSEC data handling (RRSIG/NSEC are stored as opaque types); DNAME is
//! stored but not followed.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use crate::proto::name::{Name, MAX_NAME_LEN};
use crate::proto::rr::{
    check_rdata, class, is_meta_or_query_only, rtype, type_name, Origin, Record, Soa,
};

pub mod catalog;
pub mod changeset;
pub mod gate;
pub mod history;
pub mod patch;
pub mod zonefile;
pub use patch::{NameContent, SetContent, Unpatchable};

/// Hash map keyed by lower-cased wire names.
pub type NameMap<V> = std::collections::HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// "No such index" in the flat tables.
const NONE: u32 = u32::MAX;

/// Where a node stands relative to zone cuts (RFC 1034 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Authoritative data.
    None,
    /// A delegation point: NS records below the apex.
    Delegation,
    /// Below a delegation point: only glue.
    Below,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CutRec {
    None,
    Delegation,
    /// Below the delegation at this node number.
    Below(u32),
}

/// One name, in the flat storage.
#[derive(Debug)]
struct NodeRec {
    /// Names directly below this one that exist (empty non-terminals included): a name
    /// that loses its records is removed only when this is 0 (RFC 8020).
    children: u32,
    /// Removed by a patch: the overlay's record of a name that no longer exists.
    gone: bool,
    /// An overlay copy of a base node, moved only to drop its precompiled answers: its
    /// data is still the base's, and the answers that depend on it are not yet dropped.
    unchanged: bool,
    /// Offset of the lower-cased wire name in `names`.
    key: u32,
    /// Offset of the name as written in the zone (equal to `key` when it was lower case).
    owner: u32,
    key_len: u8,
    wildcard_child: bool,
    /// A closed completeness gate is at this name: its SRV RRset is withheld
    /// ([`crate::zone::gate`]).
    withheld: bool,
    cut: CutRec,
    /// First RRset in `sets` and how many; none for an empty non-terminal.
    sets: u32,
    nsets: u32,
    /// Offset of the precompiled answers in the zone's fast arena, or [`NONE`]. Written
    /// once, after the arena is in place, while the snapshot may already be serving.
    fast: AtomicU32,
}

impl Clone for NodeRec {
    /// A copy without precompiled answers (they belong to the arena of the original).
    fn clone(&self) -> NodeRec {
        NodeRec {
            children: self.children,
            gone: self.gone,
            unchanged: self.unchanged,
            key: self.key,
            owner: self.owner,
            key_len: self.key_len,
            wildcard_child: self.wildcard_child,
            withheld: self.withheld,
            cut: self.cut,
            sets: self.sets,
            nsets: self.nsets,
            fast: AtomicU32::new(NONE),
        }
    }
}

/// The flat storage of some nodes: a built zone's, or a patch's. Offsets in a [`NodeRec`]
/// and [`SetRec`] are into the `Arenas` that hold it.
#[derive(Debug, Clone, Default)]
struct Arenas {
    nodes: Vec<NodeRec>,
    sets: Vec<SetRec>,
    /// Wire names (keys and owners), back to back.
    names: Vec<u8>,
    /// Rdatas, each prefixed with its length (native-endian u16).
    rdata: Vec<u8>,
}

impl Arenas {
    fn key_of(&self, local: usize) -> &[u8] {
        let n = &self.nodes[local];
        &self.names[n.key as usize..n.key as usize + n.key_len as usize]
    }

    fn bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<NodeRec>()
            + self.sets.capacity() * std::mem::size_of::<SetRec>()
            + self.names.capacity()
            + self.rdata.capacity()
    }
}

/// What [`Zone::build`] made: every name of the zone, hashed, and the precompiled answers
/// once they are computed. Shared by every snapshot patched from it.
#[derive(Debug)]
struct Base {
    hasher: foldhash::fast::RandomState,
    /// Node numbers, hashed by lower-cased wire name.
    table: HashTable<u32>,
    arenas: Arenas,
    /// Precompiled answers of all nodes (see [`crate::query::fastpath`]), set once.
    fast: OnceLock<Fast>,
}

/// The precompiled answers of a built zone and what they depend on.
#[derive(Debug)]
struct Fast {
    arena: Box<[u8]>,
    /// Name (lower-cased) to the nodes whose answers hold its addresses (additional
    /// section): a patch that changes the name drops those nodes' answers too.
    dependants: NameMap<Vec<u32>>,
}

/// One RRset, in the flat storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetRec {
    rtype: u16,
    ttl: u32,
    count: u32,
    /// Offset and length in `rdata` of `count` length-prefixed rdatas.
    data: u32,
    len: u32,
}

/// All records of one type at one name (RFC 2181 §5): a view into a [`Zone`].
#[derive(Debug, Clone, Copy)]
pub struct RRset<'z> {
    pub rtype: u16,
    pub ttl: u32,
    count: u32,
    data: &'z [u8],
}

impl<'z> RRset<'z> {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Never true for a stored RRset; here for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rdata of each record, uncompressed wire form, in file order, duplicates removed.
    pub fn rdatas(&self) -> Rdatas<'z> {
        Rdatas { rest: self.data }
    }

    /// The first rdata (a CNAME's target).
    pub fn first(&self) -> &'z [u8] {
        self.rdatas().next().unwrap_or_default()
    }
}

/// Iterator over the rdatas of an [`RRset`].
#[derive(Debug, Clone)]
pub struct Rdatas<'z> {
    rest: &'z [u8],
}

impl<'z> Iterator for Rdatas<'z> {
    type Item = &'z [u8];
    fn next(&mut self) -> Option<&'z [u8]> {
        if self.rest.len() < 2 {
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let (item, rest) = self.rest[2..].split_at(len);
        self.rest = rest;
        Some(item)
    }
}

/// One name in the zone: a view into a [`Zone`].
#[derive(Clone, Copy)]
pub struct Node<'z> {
    zone: &'z Zone,
    id: u32,
}

impl std::fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("owner", &self.owner_name())
            .field(
                "rrsets",
                &self.rrsets().map(|s| s.rtype).collect::<Vec<_>>(),
            )
            .field("cut", &self.cut())
            .finish()
    }
}

impl<'z> Node<'z> {
    fn rec(&self) -> &'z NodeRec {
        self.zone.rec(self.id)
    }

    fn arenas(&self) -> &'z Arenas {
        self.zone.locate(self.id).0
    }

    /// The node's number in its zone (stable for the snapshot's life).
    pub fn index(&self) -> u32 {
        self.id
    }

    /// Owner name as written in the zone (case preserved), uncompressed wire form.
    pub fn owner(&self) -> &'z [u8] {
        let r = self.rec();
        let at = r.owner as usize;
        &self.arenas().names[at..at + r.key_len as usize]
    }

    /// Owner name, lower-cased: the lookup key.
    pub fn key(&self) -> &'z [u8] {
        self.zone.key_of(self.id)
    }

    /// Owner name as a [`Name`] (allocates; for messages and tests).
    pub fn owner_name(&self) -> Name {
        Name::from_wire(self.owner()).expect("stored names are valid")
    }

    /// The RRsets, sorted by type; none for an empty non-terminal.
    pub fn rrsets(&self) -> impl Iterator<Item = RRset<'z>> + 'z {
        let r = self.rec();
        let arenas = self.arenas();
        arenas.sets[r.sets as usize..(r.sets + r.nsets) as usize]
            .iter()
            .map(move |s| view(arenas, s))
    }

    /// The first RRset by type (what ANY answers with, RFC 8482).
    pub fn first_rrset(&self) -> Option<RRset<'z>> {
        self.rrsets().next()
    }

    /// True for an empty non-terminal.
    pub fn is_empty_nonterminal(&self) -> bool {
        self.rec().nsets == 0
    }

    /// The RRset of type `t`, if present.
    pub fn rrset(&self, t: u16) -> Option<RRset<'z>> {
        self.rrsets().find(|s| s.rtype == t)
    }

    /// Where the node stands relative to zone cuts.
    pub fn cut(&self) -> Cut {
        match self.rec().cut {
            CutRec::None => Cut::None,
            CutRec::Delegation => Cut::Delegation,
            CutRec::Below(_) => Cut::Below,
        }
    }

    /// True when `*.<this name>` exists.
    pub fn wildcard_child(&self) -> bool {
        self.rec().wildcard_child
    }

    /// The closed completeness gate at this name, if any: its SRV RRset must not be
    /// served ([`crate::zone::gate`]). One flag test for every other name.
    pub fn withheld(&self) -> Option<&'z crate::zone::gate::Gate> {
        if !self.rec().withheld {
            return None;
        }
        let gates = &self.zone.gates;
        gates
            .binary_search_by_key(&self.id, |g| g.node)
            .ok()
            .map(|i| &gates[i])
    }

    /// The precompiled answers of this name (see [`crate::query::fastpath`]): the fast arena,
    /// where this node's block starts in it, and whether the zone is patched (its NODATA
    /// answers hold an older SOA then). Names a patch changed, and the names whose
    /// answers depend on them, have none.
    pub fn prebuilt(&self) -> Option<(&'z [u8], usize, bool)> {
        let patched = self.zone.over.as_ref();
        if patched.is_some_and(|o| !o.base_fast) {
            return None; // patched before its base was precompiled: nothing was dropped
        }
        let off = self.rec().fast.load(Ordering::Acquire);
        if off == NONE {
            return None;
        }
        let arena = &self.zone.base.fast.get()?.arena;
        Some((&arena[..], off as usize, patched.is_some()))
    }
}

/// What a name lookup found (before type selection).
#[derive(Debug)]
pub enum Found<'z> {
    /// The name exists (possibly as an empty non-terminal).
    Exact(Node<'z>),
    /// The name does not exist but a wildcard covers it (RFC 4592 §3.3.1).
    Wildcard(Node<'z>),
    /// The name is at or below a delegation: answer with a referral to this node.
    Referral(Node<'z>),
    /// The name does not exist.
    NxDomain,
}

/// A loaded zone: immutable once built.
#[derive(Debug)]
pub struct Zone {
    /// Apex, lower-cased.
    pub origin: Name,
    base: Arc<Base>,
    /// The names a patch changed since the base was built; they shadow the base's.
    over: Option<patch::Overlay>,
    apex: u32,
    /// Names that exist, empty non-terminals included.
    name_count: usize,
    /// The apex SOA.
    pub soa: Soa,
    /// SOA rdata as stored (for authority sections).
    pub soa_rdata: Box<[u8]>,
    pub soa_ttl: u32,
    /// TTL of the SOA in negative answers: min(SOA TTL, MINIMUM) (RFC 2308 §3).
    pub negative_ttl: u32,
    /// Number of records.
    pub record_count: usize,
    /// Every file the zone was read from (for change detection).
    pub files: Vec<PathBuf>,
    /// Completeness gates, sorted by node number ([`crate::zone::gate`]).
    gates: Box<[crate::zone::gate::Gate]>,
    /// The configured cluster sizes this snapshot was built with (owner name, size): a
    /// rebuild of the zone passes them on ([`Zone::build_with_sizes`]).
    gate_sizes: Box<[(Name, u32)]>,
}

/// Why a set of records is not a valid zone: what is wrong and, when one record is at
/// fault, where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    /// File and line of the offending record; `None` for a problem of the zone as a whole,
    /// or for a record that was not read from a file.
    pub at: Option<Origin>,
    pub kind: ZoneErrorKind,
}

impl std::fmt::Display for ZoneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.kind),
            None if self.kind.is_about_a_record() => write!(f, "<update>: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ZoneError {}

/// What is wrong, one variant per broken rule. The messages do not repeat the position,
/// which [`ZoneError`] carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneErrorKind {
    #[error("{owner} is outside the zone {origin}; remove it or serve it in its own zone")]
    OutOfZone { owner: Name, origin: Name },
    #[error("zone {origin} has no SOA record at its apex; add one (e.g. `@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60`)")]
    NoSoa { origin: Name },
    #[error("second SOA record for {origin}; a zone has exactly one")]
    SecondSoa { origin: Name },
    #[error("SOA record at {owner}, not at the zone apex {origin}")]
    SoaNotAtApex { owner: Name, origin: Name },
    #[error("malformed SOA rdata")]
    BadSoa,
    #[error("CNAME at {owner} alongside other data ({other}); a CNAME must be alone at its name (RFC 1034 §3.6.2)")]
    CnameAndOther { owner: Name, other: String },
    #[error("CNAME at the zone apex {owner} conflicts with the SOA and NS records")]
    CnameAtApex { owner: Name },
    #[error("{owner}: more than one CNAME record; a name has at most one")]
    MultipleCname { owner: Name },
    #[error("class {class} record; only class IN is served")]
    WrongClass { class: u16 },
    #[error("{owner}: record data of {len} octets; at most 65535 fit in a record")]
    RdataTooLong { owner: Name, len: usize },
    #[error("{owner}: bad {rtype} record data: {reason}")]
    BadRdata {
        owner: Name,
        rtype: String,
        reason: String,
    },
    #[error("zone {origin} holds more than 4 GiB of record data; split it into several zones")]
    TooLarge { origin: Name },
    #[error("{what} record type {t} cannot be stored in a zone")]
    MetaType { what: String, t: u16 },
}

impl ZoneErrorKind {
    /// True when one record is at fault (as opposed to the zone as a whole).
    pub fn is_about_a_record(&self) -> bool {
        !matches!(
            self,
            ZoneErrorKind::NoSoa { .. } | ZoneErrorKind::TooLarge { .. }
        )
    }
}

/// A problem worth a log line that does not stop the zone from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneWarning {
    pub at: String,
    pub message: String,
}

fn at(r: &Record) -> String {
    r.source
        .as_ref()
        .map(Origin::to_string)
        .unwrap_or_else(|| "<update>".into())
}

/// The error `kind` about record `r`.
fn record_error(r: &Record, kind: ZoneErrorKind) -> ZoneError {
    ZoneError {
        at: r.source.clone(),
        kind,
    }
}

/// An error about the zone as a whole.
fn zone_error(kind: ZoneErrorKind) -> ZoneError {
    ZoneError { at: None, kind }
}
/// Nodes and their names while a zone is being built.
struct NodeTable {
    hasher: foldhash::fast::RandomState,
    table: HashTable<u32>,
    nodes: Vec<NodeRec>,
    names: Vec<u8>,
}

impl NodeTable {
    fn key_of(&self, id: u32) -> &[u8] {
        key_in(&self.nodes, &self.names, id)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.table
            .find(h, |&id| key_in(&self.nodes, &self.names, id) == key)
            .copied()
    }

    /// The node for `key` (lower-cased), created with `owner` (same name, case as written)
    /// if new.
    fn intern(&mut self, key: &[u8], owner: &[u8]) -> u32 {
        let h = self.hasher.hash_one(key);
        let (nodes, names, hasher) = (&mut self.nodes, &mut self.names, &self.hasher);
        if let Some(&id) = self.table.find(h, |&id| key_in(nodes, names, id) == key) {
            return id;
        }
        let id = nodes.len() as u32;
        let key_at = names.len() as u32;
        names.extend_from_slice(key);
        let owner_at = if owner == key {
            key_at
        } else {
            names.extend_from_slice(owner);
            key_at + key.len() as u32
        };
        nodes.push(NodeRec {
            children: 0,
            gone: false,
            unchanged: false,
            key: key_at,
            owner: owner_at,
            key_len: key.len() as u8,
            wildcard_child: false,
            withheld: false,
            cut: CutRec::None,
            sets: 0,
            nsets: 0,
            fast: AtomicU32::new(NONE),
        });
        self.table
            .insert_unique(h, id, |&i| hasher.hash_one(key_in(nodes, names, i)));
        id
    }
}

fn view<'a>(arenas: &'a Arenas, s: &SetRec) -> RRset<'a> {
    RRset {
        rtype: s.rtype,
        ttl: s.ttl,
        count: s.count,
        data: &arenas.rdata[s.data as usize..(s.data + s.len) as usize],
    }
}

fn key_in<'a>(nodes: &[NodeRec], names: &'a [u8], id: u32) -> &'a [u8] {
    let n = &nodes[id as usize];
    &names[n.key as usize..n.key as usize + n.key_len as usize]
}

/// The lower-cased copy of a wire name, on the stack.
fn lower(wire: &[u8], buf: &mut [u8; MAX_NAME_LEN]) -> usize {
    buf[..wire.len()].copy_from_slice(wire);
    buf[..wire.len()].make_ascii_lowercase();
    wire.len()
}

/// The rdata of the records an RRset keeps, to drop duplicates: a scan for small RRsets,
/// a hash table for large ones (a scan is quadratic: 65,536 records took 46 s).
struct KeptRdata {
    table: Option<(HashTable<u32>, foldhash::fast::RandomState)>,
}

impl KeptRdata {
    /// Up to this many records a scan is cheaper than hashing.
    const SCAN_LIMIT: usize = 16;

    fn new(len: usize) -> KeptRdata {
        KeptRdata {
            table: (len > Self::SCAN_LIMIT)
                .then(|| (HashTable::with_capacity(len), Default::default())),
        }
    }

    /// Whether a kept record (`kept`, indices into `records`) has this rdata.
    fn contains(&self, records: &[Record], kept: &[u32], rdata: &[u8]) -> bool {
        let same = |&k: &u32| records[k as usize].rdata == rdata;
        match &self.table {
            None => kept.iter().any(same),
            Some((t, h)) => t.find(h.hash_one(rdata), same).is_some(),
        }
    }

    /// Notes that `records[i]` is kept.
    fn insert(&mut self, records: &[Record], i: u32) {
        if let Some((t, h)) = &mut self.table {
            let hash = |k: &u32| h.hash_one(records[*k as usize].rdata.as_slice());
            t.insert_unique(hash(&i), i, hash);
        }
    }
}

/// The state of one [`Zone::build`], step by step: [`Builder::index`] checks each record
/// and files it under its owner's node, [`Builder::group_rrsets`] turns each node's
/// records into RRsets, then the name tree is completed ([`NodeTable::add_empty_nonterminals`],
/// [`NodeTable::mark_wildcards_and_cuts`]) and [`Builder::finish`] packs the snapshot.
///
/// Records are referred to by index and owners by node number throughout, so building
/// allocates per table, never per record.
struct Builder<'r> {
    origin: &'r Name,
    origin_lc: Name,
    /// (record index, problem): sorted at the end so messages follow the file.
    errors: Vec<(usize, ZoneError)>,
    warnings: Vec<(usize, ZoneWarning)>,
    files: Vec<PathBuf>,
    /// The apex SOA: decoded, its rdata and its TTL.
    soa: Option<(Soa, Box<[u8]>, u32)>,
    t: NodeTable,
    /// Records of each node, as singly linked lists in file order (no per-node vector):
    /// first and last record of node `id`, and each record's successor.
    head: Vec<u32>,
    tail: Vec<u32>,
    next: Vec<u32>,
    sets: Vec<SetRec>,
    rdata: Vec<u8>,
    record_count: usize,
}

impl<'r> Builder<'r> {
    fn new(origin: &'r Name, n: usize) -> Builder<'r> {
        Builder {
            origin,
            origin_lc: origin.to_lowercase(),
            errors: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
            soa: None,
            t: NodeTable {
                hasher: foldhash::fast::RandomState::default(),
                table: HashTable::with_capacity(n / 2),
                nodes: Vec::with_capacity(n / 2),
                names: Vec::with_capacity(n * 8),
            },
            head: Vec::with_capacity(n / 2),
            tail: Vec::with_capacity(n / 2),
            next: vec![NONE; n],
            sets: Vec::new(),
            rdata: Vec::new(),
            record_count: 0,
        }
    }

    /// Step 1: checks each record on its own, notes the SOA and the files read, and links
    /// each record into its owner's list.
    fn index(&mut self, records: &[Record]) {
        let mut last_file: Option<&Arc<PathBuf>> = None;
        let mut key_buf = [0u8; MAX_NAME_LEN];
        for (i, r) in records.iter().enumerate() {
            if let Some(src) = &r.source {
                if !last_file.is_some_and(|f| Arc::ptr_eq(f, &src.file)) {
                    last_file = Some(&src.file);
                    if !self.files.iter().any(|f| f == src.file.as_ref()) {
                        self.files.push(src.file.as_ref().clone());
                    }
                }
            }
            if let Err(kind) = self.check_record(r) {
                self.errors.push((i, record_error(r, kind)));
                continue;
            }
            let key_len = lower(r.owner.as_wire(), &mut key_buf);
            let key = &key_buf[..key_len];
            if r.rtype == rtype::SOA {
                if let Err(kind) = self.take_soa(r, key) {
                    self.errors.push((i, record_error(r, kind)));
                    continue;
                }
            }
            let id = self.t.intern(key, r.owner.as_wire()) as usize;
            if id == self.head.len() {
                self.head.push(i as u32);
                self.tail.push(i as u32);
            } else {
                self.next[self.tail[id] as usize] = i as u32;
                self.tail[id] = i as u32;
            }
        }
    }

    /// The rules one record must meet whatever else is in the zone.
    fn check_record(&self, r: &Record) -> Result<(), ZoneErrorKind> {
        if r.class != class::IN {
            return Err(ZoneErrorKind::WrongClass { class: r.class });
        }
        if is_meta_or_query_only(r.rtype) {
            return Err(ZoneErrorKind::MetaType {
                what: "meta".into(),
                t: r.rtype,
            });
        }
        if !r.owner.is_subdomain_of(&self.origin_lc) {
            return Err(ZoneErrorKind::OutOfZone {
                owner: r.owner.clone(),
                origin: self.origin.clone(),
            });
        }
        if r.rdata.len() > u16::MAX as usize {
            return Err(ZoneErrorKind::RdataTooLong {
                owner: r.owner.clone(),
                len: r.rdata.len(),
            });
        }
        // The zone-file parser checks the same, but records may come from elsewhere: data
        // that is not what its type says would go into answers no resolver can parse.
        check_rdata(r.rtype, &r.rdata).map_err(|reason| ZoneErrorKind::BadRdata {
            owner: r.owner.clone(),
            rtype: type_name(r.rtype),
            reason,
        })
    }

    /// Keeps the SOA record `r` (owner `key`, lower-cased) as the zone's, if it is the
    /// first and at the apex.
    fn take_soa(&mut self, r: &Record, key: &[u8]) -> Result<(), ZoneErrorKind> {
        if key != self.origin_lc.as_wire() {
            return Err(ZoneErrorKind::SoaNotAtApex {
                owner: r.owner.clone(),
                origin: self.origin.clone(),
            });
        }
        if self.soa.is_some() {
            return Err(ZoneErrorKind::SecondSoa {
                origin: self.origin.clone(),
            });
        }
        let soa = Soa::from_rdata(&r.rdata).ok_or(ZoneErrorKind::BadSoa)?;
        self.soa = Some((soa, r.rdata.clone().into_boxed_slice(), r.ttl));
        Ok(())
    }

    /// Step 2: each node's records grouped by type into RRsets (stable, so file order
    /// within a type), duplicates collapsed (RFC 2181 §5), TTLs and CNAME rules checked.
    fn group_rrsets(&mut self, records: &[Record], apex: Option<u32>) {
        self.sets = Vec::with_capacity(self.t.nodes.len() * 2);
        self.rdata = Vec::with_capacity(records.len() * 24);
        // Scratch lists reused for every node.
        let mut idx: Vec<u32> = Vec::new();
        let mut kept: Vec<u32> = Vec::new();
        let mut order: Vec<(u32, u16)> = Vec::new();
        for id in 0..self.head.len() {
            idx.clear();
            let mut i = self.head[id];
            while i != NONE {
                idx.push(i);
                i = self.next[i as usize];
            }
            idx.sort_by_key(|&i| records[i as usize].rtype);
            let first_set = self.sets.len() as u32;
            // (first record, type) of each RRset, to check CNAME conflicts in file order.
            order.clear();
            for group in
                idx.chunk_by(|&a, &b| records[a as usize].rtype == records[b as usize].rtype)
            {
                let ttl = self.dedup_rrset(records, group, &mut kept);
                let first = &records[group[0] as usize];
                let data = self.rdata.len();
                for &k in &kept {
                    let d = &records[k as usize].rdata;
                    self.rdata
                        .extend_from_slice(&(d.len() as u16).to_ne_bytes());
                    self.rdata.extend_from_slice(d);
                }
                self.record_count += kept.len();
                order.push((group[0], first.rtype));
                self.sets.push(SetRec {
                    rtype: first.rtype,
                    ttl,
                    count: kept.len() as u32,
                    data: data as u32,
                    len: (self.rdata.len() - data) as u32,
                });
            }
            let node = &mut self.t.nodes[id];
            node.sets = first_set;
            node.nsets = self.sets.len() as u32 - first_set;
            let is_apex = apex == Some(id as u32);
            if order.len() > 1 || is_apex {
                cname_conflicts(records, &mut order, is_apex, &mut self.errors);
            }
        }
    }

    /// The records of one RRset (`group`, same owner and type) to keep, into `kept`:
    /// duplicates dropped (the first in file order stays), a second CNAME refused.
    /// Gives the RRset's TTL, the lowest.
    fn dedup_rrset(&mut self, records: &[Record], group: &[u32], kept: &mut Vec<u32>) -> u32 {
        let mut ttl = records[group[0] as usize].ttl;
        kept.clear();
        let mut seen = KeptRdata::new(group.len());
        for &i in group {
            let r = &records[i as usize];
            if seen.contains(records, kept, &r.rdata) {
                continue;
            }
            if r.rtype == rtype::CNAME && !kept.is_empty() {
                self.errors.push((
                    i as usize,
                    record_error(
                        r,
                        ZoneErrorKind::MultipleCname {
                            owner: r.owner.clone(),
                        },
                    ),
                ));
                continue;
            }
            if r.ttl != ttl {
                // RFC 2181 §5.2: all TTLs in an RRset must match; use the lowest.
                self.warnings.push((
                    i as usize,
                    ZoneWarning {
                        at: at(r),
                        message: format!(
                            "{} {} TTL {} differs from the RRset's TTL {}; using {}",
                            r.owner,
                            type_name(r.rtype),
                            r.ttl,
                            ttl,
                            ttl.min(r.ttl)
                        ),
                    },
                ));
                ttl = ttl.min(r.ttl);
            }
            seen.insert(records, i);
            kept.push(i);
        }
        ttl
    }

    /// The last step: the snapshot, its tables trimmed to size.
    fn finish(self, apex: u32, soa: (Soa, Box<[u8]>, u32)) -> (Zone, Vec<ZoneWarning>) {
        let (soa, soa_rdata, soa_ttl) = soa;
        let Builder {
            origin_lc,
            warnings,
            files,
            t,
            mut sets,
            mut rdata,
            record_count,
            ..
        } = self;
        let NodeTable {
            hasher,
            mut table,
            mut nodes,
            mut names,
        } = t;
        table.shrink_to_fit(|&i| hasher.hash_one(key_in(&nodes, &names, i)));
        nodes.shrink_to_fit();
        names.shrink_to_fit();
        sets.shrink_to_fit();
        rdata.shrink_to_fit();
        let negative_ttl = soa_ttl.min(soa.minimum);
        let name_count = nodes.len();
        (
            Zone {
                origin: origin_lc,
                base: Arc::new(Base {
                    hasher,
                    table,
                    arenas: Arenas {
                        nodes,
                        sets,
                        names,
                        rdata,
                    },
                    fast: OnceLock::new(),
                }),
                over: None,
                apex,
                name_count,
                soa,
                soa_rdata,
                soa_ttl,
                negative_ttl,
                record_count,
                files,
                gates: Box::default(),
                gate_sizes: Box::default(),
            },
            sorted(warnings),
        )
    }
}

impl NodeTable {
    /// How many names exist directly below each name (what a patch needs to know when a
    /// name loses its last record).
    fn count_children(&mut self, apex: u32) {
        for id in 0..self.nodes.len() as u32 {
            if id == apex {
                continue;
            }
            let k = self.key_of(id);
            let parent = &k[1 + k[0] as usize..];
            if let Some(p) = self.find(parent) {
                self.nodes[p as usize].children += 1;
            }
        }
    }

    /// Empty non-terminals: every ancestor between an owner and the apex exists
    /// (RFC 8020), so a miss can stop at the first existing ancestor.
    fn add_empty_nonterminals(&mut self, apex_len: usize) {
        let real = self.nodes.len() as u32;
        let mut buf = [0u8; MAX_NAME_LEN];
        for id in 0..real {
            let len = {
                let k = self.key_of(id);
                buf[..k.len()].copy_from_slice(k);
                k.len()
            };
            for suffix in crate::proto::name::suffixes(&buf[..len]).skip(1) {
                if suffix.len() < apex_len || self.find(suffix).is_some() {
                    // A real owner fills its own chain; an inserted one was filled with ours.
                    break;
                }
                self.intern(suffix, suffix);
            }
        }
    }

    /// Wildcard flags, delegations (NS below the apex) and the nodes below them, which
    /// hold only glue.
    fn mark_wildcards_and_cuts(&mut self, sets: &[SetRec], apex: u32, apex_len: usize) {
        let mut any_cut = false;
        for id in 0..self.nodes.len() as u32 {
            let k = self.key_of(id);
            if k.len() >= 2 && k[0] == 1 && k[1] == b'*' {
                if let Some(p) = self.find(&k[2..]) {
                    self.nodes[p as usize].wildcard_child = true;
                }
            }
            let n = &self.nodes[id as usize];
            let has_ns = sets[n.sets as usize..(n.sets + n.nsets) as usize]
                .iter()
                .any(|s| s.rtype == rtype::NS);
            if id != apex && has_ns {
                self.nodes[id as usize].cut = CutRec::Delegation;
                any_cut = true;
            }
        }
        if !any_cut {
            return;
        }
        // A node below a delegation: find the highest cut above it.
        for id in 0..self.nodes.len() as u32 {
            let mut highest = None;
            for suffix in crate::proto::name::suffixes(self.key_of(id)).skip(1) {
                if suffix.len() <= apex_len {
                    break;
                }
                if let Some(p) = self.find(suffix) {
                    if self.nodes[p as usize].cut == CutRec::Delegation {
                        highest = Some(p);
                    }
                }
            }
            if let Some(p) = highest {
                self.nodes[id as usize].cut = CutRec::Below(p);
            }
        }
    }
}

impl Zone {
    /// Builds a zone from records. Every error is collected, not just the first, and
    /// reported in record order. Completeness gates come from `muster-size` TXT records
    /// only; see [`Zone::build_with_sizes`] for configured sizes.
    pub fn build(
        origin: &Name,
        records: Vec<Record>,
    ) -> Result<(Zone, Vec<ZoneWarning>), Vec<ZoneError>> {
        Zone::build_with_sizes(origin, records, &[])
    }

    /// [`Zone::build`] with configured cluster sizes (SRV owner name, size), which win
    /// over `muster-size` TXT records. A rebuild of a served zone (a dynamic update)
    /// passes the previous snapshot's [`Zone::gate_sizes`].
    pub fn build_with_sizes(
        origin: &Name,
        records: Vec<Record>,
        sizes: &[(Name, u32)],
    ) -> Result<(Zone, Vec<ZoneWarning>), Vec<ZoneError>> {
        let (mut zone, warnings) = Zone::build_ungated(origin, records)?;
        let gates = crate::zone::gate::compute(&zone, sizes);
        let base = Arc::get_mut(&mut zone.base).expect("a new zone's base is not shared");
        for g in gates.iter().filter(|g| !g.open) {
            if let Some(n) = base.arenas.nodes.get_mut(g.node as usize) {
                n.withheld = true;
            }
        }
        zone.gates = gates.into_boxed_slice();
        zone.gate_sizes = sizes.into();
        Ok((zone, warnings))
    }

    /// The completeness gates of this snapshot, sorted by node number.
    pub fn gates(&self) -> &[crate::zone::gate::Gate] {
        &self.gates
    }

    /// The configured sizes this snapshot was built with.
    pub fn gate_sizes(&self) -> &[(Name, u32)] {
        &self.gate_sizes
    }

    fn build_ungated(
        origin: &Name,
        records: Vec<Record>,
    ) -> Result<(Zone, Vec<ZoneWarning>), Vec<ZoneError>> {
        let mut b = Builder::new(origin, records.len());
        b.index(&records);
        // Present when the SOA (or anything else) was stored at the apex.
        let apex = b.t.find(b.origin_lc.as_wire());
        b.group_rrsets(&records, apex);
        let (Some(soa), Some(apex)) = (b.soa.take(), apex) else {
            b.errors.push((
                usize::MAX,
                zone_error(ZoneErrorKind::NoSoa {
                    origin: origin.clone(),
                }),
            ));
            return Err(sorted(b.errors));
        };
        if b.rdata.len() > u32::MAX as usize {
            b.errors.push((
                usize::MAX,
                zone_error(ZoneErrorKind::TooLarge {
                    origin: origin.clone(),
                }),
            ));
        }
        if !b.errors.is_empty() {
            return Err(sorted(b.errors));
        }
        // Everything needed is copied out: free the records before the name tree grows.
        drop(records);
        let apex_len = b.origin_lc.wire_len();
        b.t.add_empty_nonterminals(apex_len);
        b.t.mark_wildcards_and_cuts(&b.sets, apex, apex_len);
        b.t.count_children(apex);
        Ok(b.finish(apex, soa))
    }

    /// The storage holding node `id` and its number there: the base's nodes come first,
    /// then the patch's.
    fn locate(&self, id: u32) -> (&Arenas, usize) {
        let base = &self.base.arenas;
        match &self.over {
            Some(o) if id as usize >= base.nodes.len() => {
                (&o.arenas, id as usize - base.nodes.len())
            }
            _ => (base, id as usize),
        }
    }

    fn key_of(&self, id: u32) -> &[u8] {
        let (arenas, local) = self.locate(id);
        arenas.key_of(local)
    }

    /// Node `id`'s record, in the base or the patch.
    fn rec(&self, id: u32) -> &NodeRec {
        let (arenas, local) = self.locate(id);
        &arenas.nodes[local]
    }

    fn node_at(&self, id: u32) -> Node<'_> {
        Node { zone: self, id }
    }

    /// Serial of the SOA.
    pub fn serial(&self) -> u32 {
        self.soa.serial
    }

    /// The node at exactly this lower-cased wire name.
    pub fn node(&self, key: &[u8]) -> Option<Node<'_>> {
        let h = self.base.hasher.hash_one(key);
        if let Some(o) = &self.over {
            if let Some(id) = o.find(h, key) {
                let node = self.node_at(id);
                return (!node.rec().gone).then_some(node);
            }
        }
        let base = &self.base.arenas;
        self.base
            .table
            .find(h, |&id| base.key_of(id as usize) == key)
            .map(|&id| self.node_at(id))
    }

    /// The apex node.
    pub fn apex(&self) -> Node<'_> {
        self.node_at(self.apex)
    }

    /// Number of names, empty non-terminals included.
    pub fn name_count(&self) -> usize {
        self.name_count
    }

    /// Iterates over all nodes, in node-number order.
    pub fn nodes(&self) -> impl Iterator<Item = Node<'_>> {
        let total =
            self.base.arenas.nodes.len() + self.over.as_ref().map_or(0, |o| o.arenas.nodes.len());
        (0..total as u32)
            .filter(move |&id| self.is_live(id))
            .map(|id| self.node_at(id))
    }

    /// Whether node `id` is in this snapshot (not shadowed by a patch, not removed).
    fn is_live(&self, id: u32) -> bool {
        match &self.over {
            None => true,
            Some(o) => !o.hides(id) && !self.rec(id).gone,
        }
    }

    /// Bytes held by the snapshot's tables (for logs and the benchmark's reasoning).
    pub fn heap_bytes(&self) -> usize {
        self.base.table.capacity() * 5
            + self.base.arenas.bytes()
            + self.base.fast.get().map_or(0, |f| f.arena.len())
            + self.over.as_ref().map_or(0, patch::Overlay::bytes)
    }

    /// Installs the precompiled answers: `arena` holds them all, `offsets` says where each
    /// node's start, `deps` (name, node) which node's answers read which name's addresses.
    /// Only the first call for a snapshot takes effect (a second precompile would compute
    /// the same).
    pub fn install_prebuilt(
        &self,
        arena: Vec<u8>,
        offsets: &[(u32, u32)],
        deps: Vec<(Box<[u8]>, u32)>,
    ) {
        // A patched snapshot shares its base with others: it is compacted before its
        // answers are precompiled (`Zone::compacted`).
        if self.over.is_some() {
            return;
        }
        let mut dependants: NameMap<Vec<u32>> = NameMap::default();
        for (name, node) in deps {
            dependants.entry(name).or_default().push(node);
        }
        let fast = Fast {
            arena: arena.into_boxed_slice(),
            dependants,
        };
        if self.base.fast.set(fast).is_err() {
            return;
        }
        // The arena is published before any offset: a reader that sees an offset finds it.
        for &(id, off) in offsets {
            self.base.arenas.nodes[id as usize]
                .fast
                .store(off, Ordering::Release);
        }
    }

    /// Finds what answers `qname` (lower-cased wire, at or below the apex).
    ///
    /// Costs one hash lookup for a hit and one per label between the name and its closest
    /// existing ancestor for a miss, plus one for the wildcard.
    pub fn find(&self, qname: &[u8]) -> Found<'_> {
        if let Some(node) = self.node(qname) {
            return match node.rec().cut {
                CutRec::None => Found::Exact(node),
                CutRec::Delegation => Found::Referral(node),
                CutRec::Below(cut) => Found::Referral(self.node_at(cut)),
            };
        }
        // Closest encloser: the first existing ancestor. The apex always exists, so this
        // ends there at the latest.
        let mut encloser = None;
        for suffix in crate::proto::name::suffixes(qname).skip(1) {
            if let Some(n) = self.node(suffix) {
                encloser = Some((suffix, n));
                break;
            }
        }
        let Some((ce_key, ce)) = encloser else {
            return Found::NxDomain;
        };
        match ce.rec().cut {
            CutRec::Delegation => return Found::Referral(ce),
            CutRec::Below(cut) => return Found::Referral(self.node_at(cut)),
            CutRec::None => {}
        }
        if ce.wildcard_child() {
            let mut buf = [0u8; MAX_NAME_LEN + 2];
            buf[0] = 1;
            buf[1] = b'*';
            buf[2..2 + ce_key.len()].copy_from_slice(ce_key);
            if let Some(w) = self.node(&buf[..2 + ce_key.len()]) {
                return Found::Wildcard(w);
            }
        }
        Found::NxDomain
    }
}

/// CNAME rules at one node, in the order its types first appear in the file: a CNAME
/// stands alone (RFC 1034 §3.6.2) and not at the apex.
fn cname_conflicts(
    records: &[Record],
    order: &mut [(u32, u16)],
    is_apex: bool,
    errors: &mut Vec<(usize, ZoneError)>,
) {
    order.sort_unstable();
    let mut has_cname = false;
    for (n, &(i, t)) in order.iter().enumerate() {
        let r = &records[i as usize];
        has_cname |= t == rtype::CNAME;
        if has_cname && n > 0 {
            let other = order[..=n]
                .iter()
                .filter(|(_, t)| *t != rtype::CNAME)
                .map(|(_, t)| type_name(*t))
                .collect::<Vec<_>>()
                .join(", ");
            errors.push((
                i as usize,
                record_error(
                    r,
                    ZoneErrorKind::CnameAndOther {
                        owner: records[order[0].0 as usize].owner.clone(),
                        other,
                    },
                ),
            ));
        }
        if t == rtype::CNAME && is_apex {
            errors.push((
                i as usize,
                record_error(
                    r,
                    ZoneErrorKind::CnameAtApex {
                        owner: r.owner.clone(),
                    },
                ),
            ));
        }
    }
}

fn sorted<T>(mut v: Vec<(usize, T)>) -> Vec<T> {
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(owner: &str, t: u16, rdata: &[u8]) -> Record {
        crate::testutil::record(owner, t, 300, rdata.to_vec())
    }

    fn soa_rdata() -> Vec<u8> {
        let mut v = Name::parse("ns1.x.", None).unwrap().as_wire().to_vec();
        v.extend_from_slice(Name::parse("h.x.", None).unwrap().as_wire());
        for n in [1u32, 3600, 600, 86400, 60] {
            v.extend_from_slice(&n.to_be_bytes());
        }
        v
    }

    fn zone(extra: Vec<Record>) -> Zone {
        let mut rs = vec![
            rec("x.", rtype::SOA, &soa_rdata()),
            rec(
                "x.",
                rtype::NS,
                Name::parse("ns1.x.", None).unwrap().as_wire(),
            ),
        ];
        rs.extend(extra);
        Zone::build(&Name::parse("x.", None).unwrap(), rs)
            .unwrap()
            .0
    }

    fn key(s: &str) -> Vec<u8> {
        Name::parse(s, None).unwrap().as_wire().to_vec()
    }

    #[test]
    fn exact_ent_nxdomain() {
        let z = zone(vec![rec("a.b.c.x.", rtype::A, &[1, 2, 3, 4])]);
        assert!(matches!(z.find(&key("a.b.c.x.")), Found::Exact(n) if n.rrsets().count() == 1));
        assert!(matches!(z.find(&key("b.c.x.")), Found::Exact(n) if n.is_empty_nonterminal()));
        assert!(matches!(z.find(&key("c.x.")), Found::Exact(n) if n.is_empty_nonterminal()));
        assert!(matches!(z.find(&key("d.x.")), Found::NxDomain));
        assert!(matches!(z.find(&key("z.a.b.c.x.")), Found::NxDomain));
        assert_eq!(z.negative_ttl, 60);
    }

    #[test]
    fn wildcards_follow_rfc4592() {
        let z = zone(vec![
            rec("*.wild.x.", rtype::A, &[1, 1, 1, 1]),
            rec("sub.*.wild.x.", rtype::A, &[2, 2, 2, 2]),
            rec("host.wild.x.", rtype::A, &[3, 3, 3, 3]),
        ]);
        assert!(matches!(z.find(&key("a.wild.x.")), Found::Wildcard(_)));
        assert!(matches!(z.find(&key("a.b.wild.x.")), Found::Wildcard(_)));
        // host.wild.x exists: names below it do not match *.wild.x (closest encloser host).
        assert!(matches!(z.find(&key("q.host.wild.x.")), Found::NxDomain));
        // Literal query for the wildcard owner.
        assert!(matches!(z.find(&key("*.wild.x.")), Found::Exact(_)));
        assert!(matches!(z.find(&key("wild.x.")), Found::Exact(n) if n.is_empty_nonterminal()));
    }

    #[test]
    fn delegations_give_referrals() {
        let z = zone(vec![
            rec("sub.x.", rtype::NS, &key("ns.sub.x.")),
            rec("ns.sub.x.", rtype::A, &[9, 9, 9, 9]),
            rec("*.x.", rtype::A, &[1, 1, 1, 1]),
        ]);
        for q in ["sub.x.", "ns.sub.x.", "deep.in.sub.x."] {
            assert!(
                matches!(z.find(&key(q)), Found::Referral(n) if n.owner_name().to_string() == "sub.x."),
                "{q}"
            );
        }
        assert!(matches!(z.find(&key("other.x.")), Found::Wildcard(_)));
    }

    #[test]
    fn rejects_broken_zones() {
        let origin = Name::parse("x.", None).unwrap();
        let errs = Zone::build(
            &origin,
            vec![
                rec("x.", rtype::SOA, &soa_rdata()),
                rec("c.x.", rtype::CNAME, &key("t.x.")),
                rec("c.x.", rtype::A, &[1, 2, 3, 4]),
                rec("y.", rtype::A, &[1, 2, 3, 4]),
            ],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(matches!(errs[0].kind, ZoneErrorKind::CnameAndOther { .. }));
        assert!(matches!(errs[1].kind, ZoneErrorKind::OutOfZone { .. }));
        let errs = Zone::build(&origin, vec![rec("a.x.", rtype::A, &[1, 2, 3, 4])]).unwrap_err();
        assert!(matches!(errs[0].kind, ZoneErrorKind::NoSoa { .. }));
        // Without an SOA the other problems are still reported, the SOA last.
        let errs = Zone::build(
            &origin,
            vec![
                rec("c.x.", rtype::CNAME, &key("t.x.")),
                rec("c.x.", rtype::A, &[1, 2, 3, 4]),
                rec("big.x.", rtype::TXT, &vec![0x61; 65600]),
            ],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(matches!(errs[0].kind, ZoneErrorKind::CnameAndOther { .. }));
        assert!(matches!(
            errs[1].kind,
            ZoneErrorKind::RdataTooLong { len: 65600, .. }
        ));
        assert!(matches!(errs[2].kind, ZoneErrorKind::NoSoa { .. }));
    }

    /// Issue 8: rdata that is not what its type says is refused by the builder itself,
    /// whatever produced the records: two truncated MX records at one owner used to pass
    /// and then panic the answer writer.
    #[test]
    fn issue8_build_refuses_malformed_rdata() {
        let origin = Name::parse("x.", None).unwrap();
        let mut with_source = rec("a.x.", rtype::MX, &[0, 1, 3, 1]);
        with_source.source = Some(Origin {
            file: Arc::new(PathBuf::from("z/x.zone")),
            line: 7,
        });
        let errs = Zone::build(
            &origin,
            vec![
                rec("x.", rtype::SOA, &soa_rdata()),
                with_source,
                rec("a.x.", rtype::MX, &[0, 2, 3, 1]),
                rec("b.x.", rtype::TXT, &[5, b'a']),
                rec("c.x.", rtype::A, &[1, 2, 3]),
            ],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs
            .iter()
            .all(|e| matches!(e.kind, ZoneErrorKind::BadRdata { .. })));
        assert_eq!(
            errs[0].to_string(),
            "z/x.zone:7: a.x.: bad MX record data: the exchange name is not a well-formed \
             uncompressed domain name (labels of at most 63 octets, at most 255 in all, \
             ending with the root label)"
        );
        assert_eq!(errs[0].at.as_ref().map(|a| a.line), Some(7));
        assert!(errs[1].to_string().starts_with("<update>: a.x.: bad MX"));
    }

    /// The position of an error is in its fields, not only in its text.
    #[test]
    fn errors_carry_their_position() {
        let origin = Name::parse("x.", None).unwrap();
        let mut out = rec("y.", rtype::A, &[1, 2, 3, 4]);
        out.source = Some(Origin {
            file: Arc::new(PathBuf::from("dir: odd/x.zone")),
            line: 3,
        });
        let errs = Zone::build(&origin, vec![out]).unwrap_err();
        let at = errs[0].at.as_ref().unwrap();
        assert_eq!((at.file.to_str(), at.line), (Some("dir: odd/x.zone"), 3));
        assert_eq!(
            errs[0].kind.to_string(),
            "y. is outside the zone x.; remove it or serve it in its own zone"
        );
        assert!(errs[1].at.is_none());
        assert!(matches!(errs[1].kind, ZoneErrorKind::NoSoa { .. }));
        assert!(!errs[1].to_string().starts_with("<update>"));
    }

    #[test]
    fn meta_types_are_refused() {
        let origin = Name::parse("x.", None).unwrap();
        for t in [0, rtype::OPT, rtype::TSIG, rtype::ANY, rtype::AXFR] {
            let errs = Zone::build(
                &origin,
                vec![rec("x.", rtype::SOA, &soa_rdata()), rec("a.x.", t, &[])],
            )
            .unwrap_err();
            assert!(
                matches!(errs[0].kind, ZoneErrorKind::MetaType { t: got, .. } if got == t),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn mixed_ttls_warn_and_use_lowest() {
        let mut low = rec("a.x.", rtype::A, &[1, 2, 3, 5]);
        low.ttl = 30;
        let origin = Name::parse("x.", None).unwrap();
        let (z, warnings) = Zone::build(
            &origin,
            vec![
                rec("x.", rtype::SOA, &soa_rdata()),
                rec("a.x.", rtype::A, &[1, 2, 3, 4]),
                low,
                rec("a.x.", rtype::A, &[1, 2, 3, 4]),
            ],
        )
        .unwrap();
        assert_eq!(warnings.len(), 1);
        let Found::Exact(n) = z.find(&key("a.x.")) else {
            panic!()
        };
        let set = n.first_rrset().unwrap();
        assert_eq!(set.ttl, 30);
        assert_eq!(
            set.rdatas().collect::<Vec<_>>(),
            [&[1, 2, 3, 4][..], &[1, 2, 3, 5][..]]
        );
    }

    /// 65,536 distinct records in one RRset, each given twice, plus duplicates with other
    /// TTLs: the same rules as a small RRset (file order kept, the first copy stays, a
    /// dropped duplicate's TTL ignored, the lowest kept TTL used) in well under a second
    /// (a pairwise scan took 46 s).
    #[test]
    fn large_rrset_dedup_is_fast_and_keeps_the_rules() {
        let origin = Name::parse("x.", None).unwrap();
        let a = |i: u32, ttl: u32| {
            crate::testutil::record("big.x.", rtype::A, ttl, i.to_be_bytes().to_vec())
        };
        let mut rs = vec![rec("x.", rtype::SOA, &soa_rdata())];
        rs.extend((0..65_536u32).map(|i| a(i, 300)));
        // A duplicate with a lower TTL is dropped, not used for the RRset's TTL.
        rs.push(a(7, 5));
        rs.extend((0..65_536u32).rev().map(|i| a(i, 300)));
        // A new record with a lower TTL lowers it (and warns once).
        rs.push(a(70_000, 60));
        let started = std::time::Instant::now();
        let (z, warnings) = Zone::build(&origin, rs).unwrap();
        let took = started.elapsed();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let Found::Exact(n) = z.find(&key("big.x.")) else {
            panic!()
        };
        let set = n.rrset(rtype::A).unwrap();
        assert_eq!(set.ttl, 60);
        let want: Vec<[u8; 4]> = (0..65_536u32)
            .chain([70_000])
            .map(u32::to_be_bytes)
            .collect();
        let got: Vec<&[u8]> = set.rdatas().collect();
        assert_eq!(got.len(), want.len());
        assert!(got.iter().zip(&want).all(|(g, w)| *g == &w[..]));
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    /// Duplicates of a second CNAME are each refused, as with a scan; the first stays.
    #[test]
    fn many_cnames_keep_the_first_and_refuse_the_rest() {
        let origin = Name::parse("x.", None).unwrap();
        let mut rs = vec![rec("x.", rtype::SOA, &soa_rdata())];
        for i in 0..40u32 {
            let target = Name::parse(&format!("t{}.x.", i % 20), None).unwrap();
            rs.push(rec("c.x.", rtype::CNAME, target.as_wire()));
        }
        let errs = Zone::build(&origin, rs).unwrap_err();
        // t0 twice is a duplicate of the kept one; t1..t19 twice each are refused.
        assert_eq!(errs.len(), 38, "{errs:?}");
        assert!(errs
            .iter()
            .all(|e| matches!(e.kind, ZoneErrorKind::MultipleCname { .. })));
    }
}
