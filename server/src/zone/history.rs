//! The changes IXFR serves (RFC 1995): for each zone, the latest changesets, oldest first.
//!
//! Whoever publishes a new version of a zone records its changeset here *before* the
//! version becomes visible, so a secondary that sees the new serial (in a NOTIFY or an SOA
//! query) always finds the change: the zones that take dynamic updates record the
//! changesets they journal, and start from the journal's history after a restart; secondary
//! zones record each refresh's change and journal it too ([`crate::transfer::secondary`]). Zones
//! changed only by reloads are recorded by [`crate::transfer::xfr`]'s watcher, which diffs
//! successive snapshots.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::proto::name::Name;
use crate::proto::types::serial_gt;
use crate::zone::changeset::Changeset;

/// About the octets a changeset's records take in an IXFR answer (uncompressed).
fn octets(cs: &Changeset) -> usize {
    cs.removed
        .iter()
        .chain(&cs.added)
        .map(|r| r.owner.wire_len() + 10 + r.rdata.len())
        .sum()
}

/// The changesets kept for each zone, oldest first, with the octets each holds.
type Changes = VecDeque<(Arc<Changeset>, usize)>;

/// The changesets kept for each zone, oldest first.
#[derive(Debug)]
pub struct History {
    /// How many changesets are kept per zone (`ixfr_history`).
    keep: usize,
    /// How many octets of records they may hold per zone (`ixfr_history_bytes`).
    max_bytes: usize,
    zones: Mutex<HashMap<Name, Changes>>,
    /// Zones whose publisher records their changes itself (see the module docs).
    owned: Mutex<HashSet<Name>>,
}

impl History {
    /// An empty history keeping the last `keep` changesets of each zone.
    pub fn new(keep: usize) -> History {
        History::bounded(keep, usize::MAX)
    }

    /// An empty history keeping the last `keep` changesets of each zone, and fewer when
    /// they would hold more than `max_bytes` octets of records.
    pub fn bounded(keep: usize, max_bytes: usize) -> History {
        History {
            keep,
            max_bytes,
            zones: Mutex::default(),
            owned: Mutex::default(),
        }
    }

    /// Starts `origin`'s history anew with `changesets` (oldest first), and marks it as
    /// recorded by its publisher.
    pub fn reset(&self, origin: &Name, changesets: impl IntoIterator<Item = Changeset>) {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_lowercase());
        self.zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&origin.to_lowercase());
        for cs in changesets {
            self.record(origin, cs);
        }
    }

    /// True when `origin`'s publisher records its changes itself.
    pub fn is_owned(&self, origin: &Name) -> bool {
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&origin.to_lowercase())
    }

    /// Appends one change of `origin`. A changeset that does not continue the history
    /// starts it anew.
    pub fn record(&self, origin: &Name, cs: Changeset) {
        let mut zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let h = zones.entry(origin.to_lowercase()).or_default();
        if !serial_gt(cs.to_serial, cs.from_serial) {
            h.clear();
            return;
        }
        if h.back()
            .is_some_and(|(last, _)| last.to_serial != cs.from_serial)
        {
            h.clear();
        }
        let size = octets(&cs);
        h.push_back((Arc::new(cs), size));
        let mut total: usize = h.iter().map(|(_, n)| n).sum();
        while h.len() > self.keep || (total > self.max_bytes && h.len() > 1) {
            total -= h.pop_front().map_or(0, |(_, n)| n);
        }
    }

    /// Adds the change between two snapshots of `origin`, or forgets the zone's history
    /// when the change cannot be told as one (same serial, serial going backwards, or a
    /// change bigger than the zone).
    pub fn record_change(&self, origin: &Name, cs: Option<Changeset>, zone_records: usize) {
        match cs {
            Some(cs) if cs.removed.len() + cs.added.len() <= zone_records + 2 => {
                self.record(origin, cs)
            }
            _ => self.forget(origin),
        }
    }

    /// Forgets `origin`'s history (the next IXFR is answered AXFR style).
    pub fn forget(&self, origin: &Name) {
        if let Some(h) = self
            .zones
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&origin.to_lowercase())
        {
            h.clear();
        }
    }

    /// Every changeset kept for `origin`, oldest first.
    pub fn changesets(&self, origin: &Name) -> Vec<Arc<Changeset>> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        zones
            .get(&origin.to_lowercase())
            .map_or_else(Vec::new, |h| h.iter().map(|(cs, _)| cs.clone()).collect())
    }

    /// The changesets from `serial` to `current`, if the history reaches that far back.
    /// Changes past `current` are left out: a publisher records a change just before the
    /// version that holds it is served, so an IXFR asked in that moment must still be
    /// answered up to the served serial (it was answered AXFR style).
    pub fn since(&self, origin: &Name, serial: u32, current: u32) -> Option<Vec<Arc<Changeset>>> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let h = zones.get(&origin.to_lowercase())?;
        let start = h.iter().position(|(cs, _)| cs.from_serial == serial)?;
        let mut chain: Vec<Arc<Changeset>> = Vec::new();
        for (cs, _) in h.iter().skip(start) {
            if chain
                .last()
                .is_some_and(|last| last.to_serial != cs.from_serial)
            {
                return None;
            }
            chain.push(cs.clone());
            if cs.to_serial == current {
                return Some(chain);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rr::{rtype, Record};

    fn change(from: u32, records: usize) -> Changeset {
        let rec = |i: usize| {
            crate::testutil::record(&format!("n{i}.h.test."), rtype::A, 60, vec![10, 0, 0, 1])
        };
        let soa =
            |s: u32| crate::testutil::record("h.test.", rtype::SOA, 60, s.to_be_bytes().to_vec());
        Changeset {
            from_serial: from,
            to_serial: from + 1,
            removed: vec![soa(from)],
            added: std::iter::once(soa(from + 1))
                .chain((0..records).map(rec))
                .collect::<Vec<Record>>(),
        }
    }

    /// The history holds at most `keep` changesets and, oldest first dropped, no more
    /// octets than allowed; the newest stays even when it alone is larger.
    #[test]
    fn the_history_is_bounded_by_count_and_octets() {
        let origin = Name::parse("h.test.", None).unwrap();
        let one = octets(&change(1, 10));
        let h = History::bounded(5, 3 * one);
        for s in 1..=8 {
            h.record(&origin, change(s, 10));
        }
        let kept: Vec<u32> = h
            .changesets(&origin)
            .iter()
            .map(|c| c.from_serial)
            .collect();
        assert_eq!(kept, vec![6, 7, 8]);
        assert!(h.since(&origin, 6, 9).is_some() && h.since(&origin, 5, 9).is_none());
        h.record(&origin, change(9, 1000));
        assert_eq!(h.changesets(&origin).len(), 1, "the newest stays alone");
        let h = History::new(5);
        for s in 1..=8 {
            h.record(&origin, change(s, 10));
        }
        assert_eq!(h.changesets(&origin).len(), 5);
    }

    /// A change recorded just before its version is served (serial 9 recorded, 8 served):
    /// an IXFR from 5 gets the changes up to the served 8.
    #[test]
    fn changes_recorded_ahead_of_the_served_serial_are_left_out() {
        let origin = Name::parse("h.test.", None).unwrap();
        let h = History::new(10);
        for s in 1..=8 {
            h.record(&origin, change(s, 1));
        }
        let to = |c: Option<Vec<Arc<Changeset>>>| {
            c.map(|c| c.iter().map(|c| c.to_serial).collect::<Vec<_>>())
        };
        assert_eq!(to(h.since(&origin, 5, 8)), Some(vec![6, 7, 8]));
        assert_eq!(to(h.since(&origin, 5, 9)), Some(vec![6, 7, 8, 9]));
        assert_eq!(to(h.since(&origin, 5, 10)), None, "beyond the history");
        assert_eq!(to(h.since(&origin, 0, 8)), None, "before the history");
    }
}
