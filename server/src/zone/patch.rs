//! Patching a snapshot: the next version of a zone from the names a change touched.
//!
//! A dynamic update changes a handful of names; rebuilding a 200,000-name snapshot for it
//! costs tens of milliseconds. [`Zone::patch`] instead shares the built snapshot (its
//! [`Base`]) and puts the touched names — and every name whose existence or flags follow
//! from them: new or vanished empty non-terminals, the parent of a wildcard, a name whose
//! completeness gate opened or closed — into an [`Overlay`] that shadows the base. Lookups
//! ask the overlay first (one more hash probe), so a reader sees exactly one version.
//!
//! A patch applies the same rules as [`Zone::build`] to the names it touches, so a patched
//! snapshot answers every query as a rebuilt one would (a property test holds the two side
//! by side). Changes whose effect is not local — a delegation added, removed or touched
//! below, a name outside the zone, data the builder would refuse — are not patched: the
//! caller rebuilds. So does an overlay grown past [`Overlay::MAX_NODES`]; the zone's task
//! compacts a patched snapshot in the background once updates pause or the overlay passes
//! [`COMPACT_AT`], which brings back the precompiled answers
//! ([`crate::query::fastpath`]) of the names the patches touched and their dependants.

use super::*;
use crate::proto::types::Rclass;
use crate::proto::types::Rtype;

/// Past this many names in its overlay the zone's task compacts a patched version without
/// waiting for updates to pause.
pub const COMPACT_AT: usize = 4096;

impl Overlay {
    /// Past this many names (or [`Overlay::MAX_RDATA`] octets) a rebuild is cheaper than
    /// copying the overlay into every new version.
    pub const MAX_NODES: usize = 16384;
    const MAX_RDATA: usize = 4 << 20;

    fn new(base: &Base) -> Overlay {
        Overlay {
            arenas: Arenas::default(),
            table: HashTable::new(),
            shadowed: vec![0; base.arenas.nodes.len().div_ceil(64)],
            first: base.arenas.nodes.len() as u32,
            base_fast: base.fast.get().is_some(),
            entered: Vec::new(),
        }
    }

    fn too_big(&self) -> bool {
        self.arenas.nodes.len() > Self::MAX_NODES || self.arenas.rdata.len() > Self::MAX_RDATA
    }
}

/// What a name holds after a change, for [`Zone::patch`].
#[derive(Debug, Clone)]
pub struct NameContent<'a> {
    /// The name as written (case kept); lower-cased, it is the key.
    pub owner: &'a Name,
    /// Its RRsets. Empty when the name holds no records any more.
    pub sets: Vec<SetContent<'a>>,
}

/// One RRset of a [`NameContent`].
#[derive(Debug, Clone, Copy)]
pub struct SetContent<'a> {
    pub rtype: Rtype,
    pub ttl: u32,
    /// The rdatas, no duplicates, in the order answers give them.
    pub rdatas: &'a [Box<[u8]>],
}

/// Why a change is not patched (the caller rebuilds; the reason goes to the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpatchable {
    /// A delegation is added, removed, or a name at or below one changes.
    Delegation,
    /// A name outside the zone, or data [`Zone::build`] would refuse.
    Refused,
    /// The apex lost its SOA.
    NoSoa,
    /// The overlay outgrew [`Overlay::MAX_NODES`].
    Large,
}

impl Zone {
    /// The next version of this zone: `changes` says what each touched name holds now,
    /// `record_count` how many records the zone holds. The result answers as
    /// [`Zone::build_with_sizes`] of the same records with [`Zone::gate_sizes`] would.
    pub fn patch(
        &self,
        changes: &[NameContent<'_>],
        record_count: usize,
    ) -> Result<Zone, Unpatchable> {
        let keys: Vec<Name> = changes.iter().map(|c| c.owner.to_lowercase()).collect();
        for (c, key) in changes.iter().zip(&keys) {
            self.patchable(c, key)?;
        }
        let mut next = Zone {
            origin: self.origin.clone(),
            base: self.base.clone(),
            over: Some(
                self.over
                    .clone()
                    .unwrap_or_else(|| Overlay::new(&self.base)),
            ),
            apex: self.apex,
            name_count: self.name_count,
            soa: self.soa.clone(),
            soa_rdata: self.soa_rdata.clone(),
            soa_ttl: self.soa_ttl,
            negative_ttl: self.negative_ttl,
            record_count,
            files: self.files.clone(),
            gates: self.gates.clone(),
            gate_sizes: self.gate_sizes.clone(),
        };
        for (c, key) in changes.iter().zip(&keys) {
            next.set(key.as_wire(), c);
        }
        next.take_soa()?;
        next.regate(&keys);
        next.drop_dependants();
        next.number_gates();
        if next.over.as_ref().is_some_and(Overlay::too_big) {
            return Err(Unpatchable::Large);
        }
        Ok(next)
    }

    /// Whether one name's change can be patched: in the zone, no delegation involved, and
    /// data that [`Zone::build`] would take.
    fn patchable(&self, c: &NameContent<'_>, key: &Name) -> Result<(), Unpatchable> {
        if !key.is_subdomain_of(&self.origin) {
            return Err(Unpatchable::Refused);
        }
        let apex = *key == self.origin;
        if matches!(self.find(key.as_wire()), Found::Referral(_))
            || (!apex && c.sets.iter().any(|s| s.rtype == Rtype::NS))
        {
            return Err(Unpatchable::Delegation);
        }
        let cname = c.sets.iter().find(|s| s.rtype == Rtype::CNAME);
        if cname.is_some_and(|s| apex || c.sets.len() > 1 || s.rdatas.len() > 1) {
            return Err(Unpatchable::Refused);
        }
        for &SetContent {
            rtype: t, rdatas, ..
        } in &c.sets
        {
            if is_meta_or_query_only(t)
                || (t == Rtype::SOA && (!apex || rdatas.len() != 1))
                || rdatas.is_empty()
                || rdatas
                    .iter()
                    .any(|r| r.len() > u16::MAX as usize || check_rdata(t, r).is_err())
            {
                return Err(Unpatchable::Refused);
            }
        }
        Ok(())
    }

    fn over(&mut self) -> &mut Overlay {
        self.over.as_mut().expect("a patch has an overlay")
    }

    fn rec_mut(&mut self, id: u32) -> &mut NodeRec {
        let o = self.over();
        let local = (id - o.first) as usize;
        &mut o.arenas.nodes[local]
    }

    /// The node holding `key` in this version or, for a removed name, the overlay's
    /// record of it: (number, removed).
    fn slot(&self, key: &[u8]) -> Option<(u32, bool)> {
        let h = self.base.hasher.hash_one(key);
        if let Some(id) = self.over.as_ref().and_then(|o| o.find(h, key)) {
            return Some((id, self.rec(id).gone));
        }
        let base = &self.base.arenas;
        self.base
            .table
            .find(h, |&id| base.key_of(id as usize) == key)
            .map(|&id| (id, false))
    }

    /// Node `id` as an overlay node, copied from the base (names, sets and rdata) first
    /// when it is a base node. Returns its number in the overlay.
    fn own(&mut self, id: u32) -> u32 {
        let new = if id >= self.over().first {
            let r = self.rec_mut(id);
            if !std::mem::take(&mut r.unchanged) {
                return id;
            }
            id
        } else {
            self.copy_in(id)
        };
        let o = self.over();
        let key = o.arenas.key_of((new - o.first) as usize).into();
        o.entered.push(key);
        new
    }

    /// The answers that read the addresses of a name this patch changed are stale: their
    /// nodes move into the overlay unchanged, where they have no precompiled answers.
    fn drop_dependants(&mut self) {
        let entered = std::mem::take(&mut self.over().entered);
        if !self.over.as_ref().is_some_and(|o| o.base_fast) {
            return;
        }
        let base = self.base.clone();
        let Some(fast) = base.fast.get() else {
            return;
        };
        for id in entered
            .iter()
            .filter_map(|k| fast.dependants.get(k))
            .flatten()
        {
            if !self.over.as_ref().is_some_and(|o| o.hides(*id)) {
                let copy = self.copy_in(*id);
                self.rec_mut(copy).unchanged = true;
            }
        }
    }

    /// Copies base node `id` into the overlay; returns its new number.
    fn copy_in(&mut self, id: u32) -> u32 {
        let base = self.base.clone();
        let o = self.over();
        let rec = &base.arenas.nodes[id as usize];
        let a = &mut o.arenas;
        let key = base.arenas.key_of(id as usize);
        let key_at = a.names.len() as u32;
        a.names.extend_from_slice(key);
        let owner_at = if rec.owner == rec.key {
            key_at
        } else {
            let at = rec.owner as usize;
            a.names
                .extend_from_slice(&base.arenas.names[at..at + rec.key_len as usize]);
            key_at + rec.key_len as u32
        };
        let sets_at = a.sets.len() as u32;
        for s in &base.arenas.sets[rec.sets as usize..(rec.sets + rec.nsets) as usize] {
            let data = a.rdata.len() as u32;
            a.rdata
                .extend_from_slice(&base.arenas.rdata[s.data as usize..(s.data + s.len) as usize]);
            a.sets.push(SetRec { data, ..*s });
        }
        a.nodes.push(NodeRec {
            key: key_at,
            owner: owner_at,
            sets: sets_at,
            ..rec.clone()
        });
        o.shadowed[id as usize / 64] |= 1 << (id % 64);
        let new = o.first + a.nodes.len() as u32 - 1;
        self.insert(key, new);
        if id == self.apex {
            self.apex = new;
        }
        new
    }

    /// Hashes overlay node `id` (whose key is `key`) into the overlay's table.
    fn insert(&mut self, key: &[u8], id: u32) {
        let hasher = self.base.hasher.clone();
        let o = self.over.as_mut().expect("a patch has an overlay");
        let (table, arenas, first) = (&mut o.table, &o.arenas, o.first);
        table.insert_unique(hasher.hash_one(key), id, |&i| {
            hasher.hash_one(arenas.key_of((i - first) as usize))
        });
    }

    /// A new overlay node for `key`, owning nothing yet.
    fn new_node(&mut self, key: &[u8]) -> u32 {
        let o = self.over();
        o.entered.push(key.into());
        let a = &mut o.arenas;
        let key_at = a.names.len() as u32;
        a.names.extend_from_slice(key);
        a.nodes.push(NodeRec {
            children: 0,
            gone: false,
            unchanged: false,
            key: key_at,
            owner: key_at,
            key_len: key.len() as u8,
            wildcard_child: false,
            withheld: false,
            cut: CutRec::None,
            sets: 0,
            nsets: 0,
            fast: AtomicU32::new(NONE),
        });
        let id = o.first + a.nodes.len() as u32 - 1;
        self.insert(key, id);
        id
    }

    /// Makes `key` hold what `c` says.
    fn set(&mut self, key: &[u8], c: &NameContent<'_>) {
        match self.slot(key) {
            Some((id, false)) => {
                if !c.sets.is_empty() {
                    let id = self.own(id);
                    self.write(id, c);
                } else if self.rec(id).children > 0 {
                    // Still the parent of other names: an empty non-terminal now.
                    let id = self.own(id);
                    let r = self.rec_mut(id);
                    (r.nsets, r.owner) = (0, r.key);
                } else {
                    self.remove(id, key);
                }
            }
            found if !c.sets.is_empty() => {
                let id = match found {
                    Some((id, _)) => self.revive(id),
                    None => self.new_node(key),
                };
                self.name_count += 1;
                self.write(id, c);
                self.link(key);
            }
            _ => {}
        }
    }

    /// A removed overlay node in use again, as a new name.
    fn revive(&mut self, id: u32) -> u32 {
        let r = self.rec_mut(id);
        (r.gone, r.children, r.nsets, r.owner) = (false, 0, 0, r.key);
        (r.wildcard_child, r.withheld, r.cut) = (false, false, CutRec::None);
        id
    }

    /// Stores `c`'s owner and RRsets (sorted by type, as the builder does) at overlay
    /// node `id`. The previous RRsets stay in the arenas unused until the next compaction.
    fn write(&mut self, id: u32, c: &NameContent<'_>) {
        let mut sets = c.sets.clone();
        sets.sort_by_key(|s| s.rtype);
        let o = self.over();
        let a = &mut o.arenas;
        let first_set = a.sets.len() as u32;
        for SetContent {
            rtype: t,
            ttl,
            rdatas,
        } in sets
        {
            let data = a.rdata.len();
            for rd in rdatas {
                a.rdata.extend_from_slice(&(rd.len() as u16).to_ne_bytes());
                a.rdata.extend_from_slice(rd);
            }
            a.sets.push(SetRec {
                rtype: t,
                ttl,
                count: rdatas.len() as u32,
                data: data as u32,
                len: (a.rdata.len() - data) as u32,
            });
        }
        let owner = c.owner.as_wire();
        let local = (id - o.first) as usize;
        let r = &a.nodes[local];
        let written = &a.names[r.owner as usize..r.owner as usize + r.key_len as usize];
        let owner_at = if written == owner {
            r.owner
        } else {
            a.names.extend_from_slice(owner);
            (a.names.len() - owner.len()) as u32
        };
        let r = &mut a.nodes[local];
        (r.sets, r.nsets, r.owner) = (first_set, a.sets.len() as u32 - first_set, owner_at);
    }

    /// A new name `key` exists: its parent counts it, and is created as an empty
    /// non-terminal when it did not exist (and so on up).
    fn link(&mut self, key: &[u8]) {
        let parent = &key[1 + key[0] as usize..];
        match self.slot(parent) {
            Some((id, false)) => {
                let id = self.own(id);
                self.rec_mut(id).children += 1;
            }
            found => {
                let id = match found {
                    Some((id, _)) => self.revive(id),
                    None => self.new_node(parent),
                };
                self.rec_mut(id).children = 1;
                self.name_count += 1;
                self.link(parent);
            }
        }
        // After the parent surely exists.
        if key.len() >= 2 && key[0] == 1 && key[1] == b'*' {
            self.flag_wildcard(parent, true);
        }
    }

    /// Name `key` (node `id`, which has no children) no longer exists: its parent forgets
    /// it, and goes too when it was an empty non-terminal with no other child.
    fn remove(&mut self, id: u32, key: &[u8]) {
        let id = self.own(id);
        let r = self.rec_mut(id);
        (r.gone, r.nsets, r.wildcard_child, r.withheld) = (true, 0, false, false);
        self.name_count -= 1;
        if key.len() >= 2 && key[0] == 1 && key[1] == b'*' {
            self.flag_wildcard(&key[2..], false);
        }
        let parent = &key[1 + key[0] as usize..];
        let Some((pid, false)) = self.slot(parent) else {
            return;
        };
        let pid = self.own(pid);
        let is_apex = pid == self.apex;
        let r = self.rec_mut(pid);
        r.children -= 1;
        if r.children == 0 && r.nsets == 0 && !is_apex {
            self.remove(pid, parent);
        }
    }

    fn flag_wildcard(&mut self, parent: &[u8], on: bool) {
        if let Some((id, false)) = self.slot(parent) {
            let id = self.own(id);
            self.rec_mut(id).wildcard_child = on;
        }
    }

    /// The SOA fields from the (possibly changed) apex.
    fn take_soa(&mut self) -> Result<(), Unpatchable> {
        let set = self.apex().rrset(Rtype::SOA).ok_or(Unpatchable::NoSoa)?;
        let (rdata, ttl): (Box<[u8]>, u32) = (set.first().into(), set.ttl);
        let soa = Soa::from_rdata(&rdata).ok_or(Unpatchable::NoSoa)?;
        self.negative_ttl = ttl.min(soa.minimum);
        (self.soa_rdata, self.soa_ttl, self.soa) = (rdata, ttl, soa);
        Ok(())
    }

    /// The completeness gates again: those of the previous version and any that a
    /// touched name declares, each recounted; then the withheld flags follow them.
    fn regate(&mut self, touched: &[Name]) {
        let mut keys: Vec<Name> = self.gates.iter().map(|g| g.owner.clone()).collect();
        keys.extend(touched.iter().cloned());
        keys.sort_by(|a, b| a.as_wire().cmp(b.as_wire()));
        keys.dedup();
        let gates = {
            let candidates = keys.iter().filter_map(|k| self.node(k.as_wire()));
            super::withheld::compute_from(self, candidates, &self.gate_sizes)
        };
        let closed = |gates: &[super::gate::Gate]| -> Vec<Name> {
            gates
                .iter()
                .filter(|g| !g.open)
                .map(|g| g.owner.clone())
                .collect()
        };
        let (was, now) = (closed(&self.gates), closed(&gates));
        for key in was.iter().chain(&now) {
            let withheld = now.contains(key);
            if let Some((id, false)) = self.slot(key.as_wire()) {
                if self.rec(id).withheld != withheld {
                    let id = self.own(id);
                    self.rec_mut(id).withheld = withheld;
                }
            }
        }
        self.gates = gates.into_boxed_slice();
    }

    /// The gates' node numbers, once no node moves into the overlay any more.
    fn number_gates(&mut self) {
        let mut gates = std::mem::take(&mut self.gates).into_vec();
        for g in &mut gates {
            g.node = self.node(g.owner.as_wire()).map_or(u32::MAX, |n| n.index());
        }
        gates.sort_by_key(|g| g.node);
        self.gates = gates.into_boxed_slice();
    }

    /// The same zone as one flat snapshot (what a rebuild of its records would give),
    /// for the background compaction of a patched version. `None` for a zone that is not
    /// patched.
    pub fn compacted(&self) -> Option<Result<Zone, Vec<ZoneError>>> {
        self.over.as_ref()?;
        let mut records = Vec::with_capacity(self.record_count);
        for node in self.nodes() {
            let owner = node.owner_name();
            for set in node.rrsets() {
                for rd in set.rdatas() {
                    records.push(Record {
                        owner: owner.clone(),
                        rtype: set.rtype,
                        class: Rclass::IN,
                        ttl: set.ttl,
                        rdata: rd.to_vec(),
                        source: None,
                    });
                }
            }
        }
        let built =
            Zone::build_with_sizes(&self.origin, records, &self.gate_sizes).map(|(mut z, _)| {
                z.files = self.files.clone();
                z
            });
        Some(built)
    }

    /// Names in the overlay of a patched version (0 for a built one): past
    /// [`COMPACT_AT`] the zone's task compacts it without waiting for a pause.
    pub fn overlay_names(&self) -> usize {
        self.over.as_ref().map_or(0, |o| o.arenas.nodes.len())
    }

    /// True for a patched version (its answers come from the full path).
    pub fn is_patched(&self) -> bool {
        self.over.is_some()
    }

    /// True once the answers of the (unpatched) snapshot are precompiled.
    pub fn is_precompiled(&self) -> bool {
        self.base.fast.get().is_some()
    }
}
