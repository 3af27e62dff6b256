//! Building a snapshot from records: every record checked against the zone's rules
//! (errors collected, not just the first, in file order), RRsets grouped and deduplicated,
//! the name tree completed with empty non-terminals, wildcards and zone cuts, packed into
//! the flat storage of [`super::Zone`], then its completeness gates counted
//! ([`super::withheld`]).

use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;

use super::error::{at, record_error, zone_error, ZoneError, ZoneErrorKind, ZoneWarning};
use super::{lower, Arenas, Base, CutRec, NodeRec, SetRec, Zone, NONE};
use crate::proto::name::{Name, MAX_NAME_LEN};
use crate::proto::rr::{check_rdata, is_meta_or_query_only, Rclass, Record, Rtype, Soa};

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

fn key_in<'a>(nodes: &[NodeRec], names: &'a [u8], id: u32) -> &'a [u8] {
    let n = &nodes[id as usize];
    &names[n.key as usize..n.key as usize + n.key_len as usize]
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
            if r.rtype == Rtype::SOA {
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
        if r.class != Rclass::IN {
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
            rtype: r.rtype.to_string(),
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
        let mut order: Vec<(u32, Rtype)> = Vec::new();
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
            if r.rtype == Rtype::CNAME && !kept.is_empty() {
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
                            r.rtype,
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
                .any(|s| s.rtype == Rtype::NS);
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
        let gates = super::withheld::compute(&zone, sizes);
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
}

/// CNAME rules at one node, in the order its types first appear in the file: a CNAME
/// stands alone (RFC 1034 §3.6.2) and not at the apex.
fn cname_conflicts(
    records: &[Record],
    order: &mut [(u32, Rtype)],
    is_apex: bool,
    errors: &mut Vec<(usize, ZoneError)>,
) {
    order.sort_unstable();
    let mut has_cname = false;
    for (n, &(i, t)) in order.iter().enumerate() {
        let r = &records[i as usize];
        has_cname |= t == Rtype::CNAME;
        if has_cname && n > 0 {
            let other = order[..=n]
                .iter()
                .filter(|(_, t)| *t != Rtype::CNAME)
                .map(|(_, t)| t.to_string())
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
        if t == Rtype::CNAME && is_apex {
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
