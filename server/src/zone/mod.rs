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
//! The folder, from the bottom up: [`gate`] (the completeness-gate rules, which know no
//! snapshot) and [`error`] below this file, which holds the storage and the lookups;
//! [`withheld`] counts a snapshot's gates, `build` makes a snapshot from records and
//! [`patch`] the next version from a changed one. [`zonefile`] reads master files,
//! [`changeset`] and [`history`] hold the changes between versions, [`catalog`] the zones
//! served.
//!
//! Limitations: no DNSSEC data handling (RRSIG/NSEC are stored as opaque types); DNAME is
//! stored but not followed.

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use crate::proto::name::{Name, MAX_NAME_LEN};
use crate::proto::rr::{check_rdata, is_meta_or_query_only, Record, Rtype, Soa};

mod build;
pub mod catalog;
pub mod changeset;
mod error;
pub mod gate;
pub mod history;
pub mod patch;
pub mod withheld;
pub mod zonefile;
pub use error::{ZoneError, ZoneErrorKind, ZoneWarning};

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
    rtype: Rtype,
    ttl: u32,
    count: u32,
    /// Offset and length in `rdata` of `count` length-prefixed rdatas.
    data: u32,
    len: u32,
}

/// All records of one type at one name (RFC 2181 §5): a view into a [`Zone`].
#[derive(Debug, Clone, Copy)]
pub struct RRset<'z> {
    pub rtype: Rtype,
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
    pub fn rrset(&self, t: Rtype) -> Option<RRset<'z>> {
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
    pub fn withheld(&self) -> Option<&'z gate::Gate> {
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

/// The names a patch changed, stored like a built zone's and found before the base's.
#[derive(Debug, Clone)]
struct Overlay {
    arenas: Arenas,
    /// Node numbers of the overlay's nodes (removed names included), hashed like the base.
    table: HashTable<u32>,
    /// One bit per base node: set when the overlay holds that name instead.
    shadowed: Vec<u64>,
    /// Number of base nodes: overlay node `i` is node number `first + i`.
    first: u32,
    /// The base's answers were precompiled when the first patch was made, so every patch
    /// dropped the answers its changes made stale: the base's other answers stay usable.
    base_fast: bool,
    /// Names this patch brought into the overlay: their dependants' answers go next.
    entered: Vec<Box<[u8]>>,
}

impl Overlay {
    /// The overlay's node for `key` (hash `h`), removed or not.
    fn find(&self, h: u64, key: &[u8]) -> Option<u32> {
        let first = self.first;
        self.table
            .find(h, |&id| self.arenas.key_of((id - first) as usize) == key)
            .copied()
    }

    /// True for a base node the overlay replaces.
    fn hides(&self, id: u32) -> bool {
        id < self.first && self.shadowed[id as usize / 64] & (1 << (id % 64)) != 0
    }

    fn bytes(&self) -> usize {
        self.arenas.bytes() + self.table.capacity() * 5 + self.shadowed.len() * 8
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
    over: Option<Overlay>,
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
    gates: Box<[gate::Gate]>,
    /// The configured cluster sizes this snapshot was built with (owner name, size): a
    /// rebuild of the zone passes them on ([`Zone::build_with_sizes`]).
    gate_sizes: Box<[(Name, u32)]>,
}

fn view<'a>(arenas: &'a Arenas, s: &SetRec) -> RRset<'a> {
    RRset {
        rtype: s.rtype,
        ttl: s.ttl,
        count: s.count,
        data: &arenas.rdata[s.data as usize..(s.data + s.len) as usize],
    }
}

/// The lower-cased copy of a wire name, on the stack.
fn lower(wire: &[u8], buf: &mut [u8; MAX_NAME_LEN]) -> usize {
    buf[..wire.len()].copy_from_slice(wire);
    buf[..wire.len()].make_ascii_lowercase();
    wire.len()
}

impl Zone {
    /// The completeness gates of this snapshot, sorted by node number.
    pub fn gates(&self) -> &[gate::Gate] {
        &self.gates
    }

    /// The configured sizes this snapshot was built with.
    pub fn gate_sizes(&self) -> &[(Name, u32)] {
        &self.gate_sizes
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
            + self.over.as_ref().map_or(0, Overlay::bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rr::Origin;

    pub(crate) fn rec(owner: &str, t: Rtype, rdata: &[u8]) -> Record {
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
            rec("x.", Rtype::SOA, &soa_rdata()),
            rec(
                "x.",
                Rtype::NS,
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
        let z = zone(vec![rec("a.b.c.x.", Rtype::A, &[1, 2, 3, 4])]);
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
            rec("*.wild.x.", Rtype::A, &[1, 1, 1, 1]),
            rec("sub.*.wild.x.", Rtype::A, &[2, 2, 2, 2]),
            rec("host.wild.x.", Rtype::A, &[3, 3, 3, 3]),
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
            rec("sub.x.", Rtype::NS, &key("ns.sub.x.")),
            rec("ns.sub.x.", Rtype::A, &[9, 9, 9, 9]),
            rec("*.x.", Rtype::A, &[1, 1, 1, 1]),
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
                rec("x.", Rtype::SOA, &soa_rdata()),
                rec("c.x.", Rtype::CNAME, &key("t.x.")),
                rec("c.x.", Rtype::A, &[1, 2, 3, 4]),
                rec("y.", Rtype::A, &[1, 2, 3, 4]),
            ],
        )
        .unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(matches!(errs[0].kind, ZoneErrorKind::CnameAndOther { .. }));
        assert!(matches!(errs[1].kind, ZoneErrorKind::OutOfZone { .. }));
        let errs = Zone::build(&origin, vec![rec("a.x.", Rtype::A, &[1, 2, 3, 4])]).unwrap_err();
        assert!(matches!(errs[0].kind, ZoneErrorKind::NoSoa { .. }));
        // Without an SOA the other problems are still reported, the SOA last.
        let errs = Zone::build(
            &origin,
            vec![
                rec("c.x.", Rtype::CNAME, &key("t.x.")),
                rec("c.x.", Rtype::A, &[1, 2, 3, 4]),
                rec("big.x.", Rtype::TXT, &vec![0x61; 65600]),
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
        let mut with_source = rec("a.x.", Rtype::MX, &[0, 1, 3, 1]);
        with_source.source = Some(Origin {
            file: Arc::new(PathBuf::from("z/x.zone")),
            line: 7,
        });
        let errs = Zone::build(
            &origin,
            vec![
                rec("x.", Rtype::SOA, &soa_rdata()),
                with_source,
                rec("a.x.", Rtype::MX, &[0, 2, 3, 1]),
                rec("b.x.", Rtype::TXT, &[5, b'a']),
                rec("c.x.", Rtype::A, &[1, 2, 3]),
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
        let mut out = rec("y.", Rtype::A, &[1, 2, 3, 4]);
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
        for t in [Rtype(0), Rtype::OPT, Rtype::TSIG, Rtype::ANY, Rtype::AXFR] {
            let errs = Zone::build(
                &origin,
                vec![rec("x.", Rtype::SOA, &soa_rdata()), rec("a.x.", t, &[])],
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
        let mut low = rec("a.x.", Rtype::A, &[1, 2, 3, 5]);
        low.ttl = 30;
        let origin = Name::parse("x.", None).unwrap();
        let (z, warnings) = Zone::build(
            &origin,
            vec![
                rec("x.", Rtype::SOA, &soa_rdata()),
                rec("a.x.", Rtype::A, &[1, 2, 3, 4]),
                low,
                rec("a.x.", Rtype::A, &[1, 2, 3, 4]),
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
            crate::testutil::record("big.x.", Rtype::A, ttl, i.to_be_bytes().to_vec())
        };
        let mut rs = vec![rec("x.", Rtype::SOA, &soa_rdata())];
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
        let set = n.rrset(Rtype::A).unwrap();
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
        let mut rs = vec![rec("x.", Rtype::SOA, &soa_rdata())];
        for i in 0..40u32 {
            let target = Name::parse(&format!("t{}.x.", i % 20), None).unwrap();
            rs.push(rec("c.x.", Rtype::CNAME, target.as_wire()));
        }
        let errs = Zone::build(&origin, rs).unwrap_err();
        // t0 twice is a duplicate of the kept one; t1..t19 twice each are refused.
        assert_eq!(errs.len(), 38, "{errs:?}");
        assert!(errs
            .iter()
            .all(|e| matches!(e.kind, ZoneErrorKind::MultipleCname { .. })));
    }
}
