//! Versions of an updatable zone and hand edits merged into them.
//!
//! A zone file that musterd writes back names the version it holds (serial and
//! [`ZoneData::digest`]). When the operator saves an edit of that file, the edit is merged
//! three ways: *base* is the version the file's stamp names (rebuilt from the served zone
//! by taking the changesets since then back out, [`ZoneData::revert_changeset`]), *ours*
//! is the served zone, *theirs* is the file. What the edit changed against base is applied
//! to ours, record by record, so everything the updates did since the editor opened the
//! file stays (as Knot's `zonefile-load: difference`, but against the right base).
//!
//! A conflict is an RRset whose TTL both sides changed to different values, or SOA fields
//! (everything but the serial, and its TTL) both sides changed differently: the edit is
//! then refused as a whole ([`MergeConflict`]). Records are members of sets, so adding
//! and removing records never conflicts: an edit that removes a record an update removed
//! too, or adds one an update added too, agrees with it.

use super::{canonical_rdata, record, serial_after, set_serial, Changeset, DataError, ZoneData};
use crate::proto::name::Name;
use crate::proto::rr::{Record, Rtype};

/// Why a hand edit cannot be merged with the served zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeConflict {
    #[error(
        "{owner} {rtype}: the edit sets TTL {theirs}, an update since set {ours} (the file's \
         version had {base})"
    )]
    Ttl {
        owner: Name,
        rtype: String,
        base: u32,
        ours: u32,
        theirs: u32,
    },
    #[error("the SOA: the edit and an update since both changed its fields or TTL, differently")]
    Soa,
}

impl ZoneData {
    /// An order-independent digest of every record, SOA included: names the version a
    /// zone file holds, and checks that a version rebuilt from the history is that one.
    pub fn digest(&self) -> u64 {
        let mut sum = 0u64;
        self.each(|key, _, t, ttl, rd| {
            sum = sum.wrapping_add(stable_hash(key, t, ttl, rd));
        });
        sum
    }

    /// Calls `f` with (lower-cased key, owner as written, type, TTL, rdata) for every
    /// record.
    fn each(&self, mut f: impl FnMut(&Name, &Name, Rtype, u32, &[u8])) {
        for (key, node) in &self.nodes {
            for s in &node.sets {
                for rd in s.rdatas() {
                    f(key, &node.owner, s.rtype, s.ttl, rd);
                }
            }
        }
    }

    /// True when the zone holds this record with this TTL.
    fn holds(&self, key: &Name, t: Rtype, ttl: u32, rdata: &[u8]) -> bool {
        self.nodes
            .get(key)
            .and_then(|n| n.set(t))
            .is_some_and(|s| s.ttl == ttl && s.contains(rdata))
    }

    /// True when the zone holds `r` with its TTL.
    pub fn holds_record(&self, r: &Record) -> bool {
        self.holds(&r.owner.to_lowercase(), r.rtype, r.ttl, &r.rdata)
    }

    /// The TTL of the RRset `t` at `key`, when there is one.
    fn ttl_of(&self, key: &Name, t: Rtype) -> Option<u32> {
        self.nodes.get(key).and_then(|n| n.set(t)).map(|s| s.ttl)
    }

    /// Takes `cs` back out: the zone as it was before `cs` was applied. The zone must be
    /// at `cs.to_serial`, and hold every record `cs` added.
    pub fn revert_changeset(&mut self, cs: &Changeset) -> Result<(), DataError> {
        let serial = self.serial();
        if cs.to_serial != serial {
            return Err(DataError::SerialGap {
                expected: serial,
                found: cs.to_serial,
            });
        }
        for r in cs.added.iter().skip(1) {
            if !self.remove_record(&r.owner, r.rtype, &r.rdata) {
                return Err(DataError::Missing {
                    owner: r.owner.clone(),
                    rtype: r.rtype.to_string(),
                });
            }
        }
        for r in cs.removed.iter().skip(1) {
            self.insert(&r.owner, r.rtype, r.ttl, &r.rdata);
        }
        let soa = &cs.removed[0];
        self.set_soa(soa.ttl, &soa.rdata);
        Ok(())
    }

    /// The changeset from this zone to `next`: records of one and not the other (an
    /// RRset whose TTL changed is removed and added whole), led by the two SOAs.
    pub fn diff_to(&self, next: &ZoneData) -> Changeset {
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let missing = |a: &ZoneData, b: &ZoneData, out: &mut Vec<Record>| {
            a.each(|key, owner, t, ttl, rd| {
                let apex_soa = t == Rtype::SOA && *key == a.origin;
                if !apex_soa && !b.holds(key, t, ttl, rd) {
                    out.push(record(owner, t, ttl, rd));
                }
            });
        };
        missing(self, next, &mut removed);
        missing(next, self, &mut added);
        let (old_soa, new_soa) = (self.soa_record(), next.soa_record());
        removed.insert(0, old_soa.expect("a zone holds its SOA"));
        added.insert(0, new_soa.expect("a zone holds its SOA"));
        Changeset {
            from_serial: self.serial(),
            to_serial: next.serial(),
            removed,
            added,
        }
    }

    /// Merges a hand edit three ways (see the module documentation): `base` is the
    /// version the edited file started from, `file` the file as saved, `self` the served
    /// zone. The serial becomes max(file, served) + 1 (RFC 1982). `Ok(None)` when the
    /// edit changes nothing against the served zone.
    pub fn merge_edit(
        &self,
        base: &ZoneData,
        file: &ZoneData,
    ) -> Result<Option<Changeset>, MergeConflict> {
        self.ttl_conflicts(base, file)?;
        let mut next = self.clone();
        // Removed by the edit: in base, not in the file (with its TTL).
        base.each(|key, owner, t, ttl, rd| {
            if t != Rtype::SOA && !file.holds(key, t, ttl, rd) {
                next.remove_record(owner, t, rd);
            }
        });
        // Added by the edit: in the file, not in base.
        file.each(|key, owner, t, ttl, rd| {
            if t != Rtype::SOA && !base.holds(key, t, ttl, rd) {
                next.insert(owner, t, ttl, rd);
            }
        });
        let (b, o, f) = (soa_key(base), soa_key(self), soa_key(file));
        let chosen = match (f == b, o == b, f == o) {
            (true, _, _) | (_, _, true) => self.soa_record(),
            (false, true, false) => file.soa_record(),
            (false, false, false) => return Err(MergeConflict::Soa),
        };
        next.finish_soa(chosen, self, file);
        let cs = self.diff_to(&next);
        Ok(self.changes(&cs, &next, file).then_some(cs))
    }

    /// The changeset that makes the served zone exactly `file` (a file without a stamp,
    /// replaced wholesale: taken as written), serial max(file, served) + 1. `None` when
    /// `file` holds what is served.
    pub fn replace_with(&self, file: &ZoneData) -> Option<Changeset> {
        let mut next = file.clone();
        next.finish_soa(file.soa_record(), self, file);
        let cs = self.diff_to(&next);
        self.changes(&cs, &next, file).then_some(cs)
    }

    /// True when `cs` (to `next`) changes a record or the SOA's fields, or the file
    /// raised the serial above the served one.
    fn changes(&self, cs: &Changeset, next: &ZoneData, file: &ZoneData) -> bool {
        cs.removed.len() > 1
            || cs.added.len() > 1
            || soa_key(next) != soa_key(self)
            || super::serial_gt(file.serial(), self.serial())
    }

    /// Sets the SOA to `chosen` with the serial after both `served` and `file`.
    fn finish_soa(&mut self, chosen: Option<Record>, served: &ZoneData, file: &ZoneData) {
        let Some(mut soa) = chosen else { return };
        set_serial(&mut soa.rdata, serial_after(served.serial(), file.serial()));
        self.set_soa(soa.ttl, &soa.rdata);
    }

    /// RRsets whose TTL the edit and an update both changed, differently.
    fn ttl_conflicts(&self, base: &ZoneData, file: &ZoneData) -> Result<(), MergeConflict> {
        for (key, node) in &file.nodes {
            for s in node.sets.iter().filter(|s| s.rtype != Rtype::SOA) {
                let (Some(b), Some(o)) = (base.ttl_of(key, s.rtype), self.ttl_of(key, s.rtype))
                else {
                    continue;
                };
                if s.ttl != b && o != b && o != s.ttl {
                    return Err(MergeConflict::Ttl {
                        owner: node.owner.clone(),
                        rtype: s.rtype.to_string(),
                        base: b,
                        ours: o,
                        theirs: s.ttl,
                    });
                }
            }
        }
        Ok(())
    }

    /// The records that `self` holds and `other` does not (at most `limit`), for messages.
    pub fn records_missing_from(&self, other: &ZoneData, limit: usize) -> Vec<Record> {
        let mut out = Vec::new();
        self.each(|key, owner, t, ttl, rd| {
            if out.len() < limit && t != Rtype::SOA && !other.holds(key, t, ttl, rd) {
                out.push(record(owner, t, ttl, rd));
            }
        });
        out
    }
}

/// The SOA without its serial, and its TTL: what a merge compares.
fn soa_key(z: &ZoneData) -> Option<(Vec<u8>, u32)> {
    let mut soa = z.soa_record()?;
    set_serial(&mut soa.rdata, 0);
    Some((soa.rdata, soa.ttl))
}

/// A record's hash for [`ZoneData::digest`], which is written into zone files: built from
/// CRC-32C (a fixed, published function) so that it stays the same across builds and
/// versions of musterd. Two CRCs with different seeds give 64 bits.
fn stable_hash(key: &Name, t: Rtype, ttl: u32, rdata: &[u8]) -> u64 {
    let mut bytes = Vec::with_capacity(key.as_wire().len() + 6 + rdata.len());
    bytes.extend_from_slice(key.as_wire());
    bytes.extend_from_slice(&t.to_be_bytes());
    bytes.extend_from_slice(&ttl.to_be_bytes());
    bytes.extend_from_slice(&canonical_rdata(t, rdata));
    let hi = crc32c::crc32c(&bytes);
    let lo = crc32c::crc32c_append(0x9e37_79b9, &bytes);
    (u64::from(hi) << 32) | u64::from(lo)
}
