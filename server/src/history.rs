//! The changes IXFR serves (RFC 1995): for each zone, the latest changesets, oldest first.
//!
//! Whoever publishes a new version of a zone records its changeset here *before* the
//! version becomes visible, so a secondary that sees the new serial (in a NOTIFY or an SOA
//! query) always finds the change: the zones that take dynamic updates record the
//! changesets they journal, and start from the journal's history after a restart; secondary
//! zones record each refresh's change and journal it too ([`crate::secondary`]). Zones
//! changed only by reloads are recorded by [`crate::xfr`]'s watcher, which diffs
//! successive snapshots.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use crate::changeset::Changeset;
use crate::name::Name;

/// RFC 1982 §3.2: `a` is greater than `b` in serial number arithmetic.
fn serial_gt(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// The changesets kept for each zone, oldest first.
#[derive(Debug)]
pub struct History {
    /// How many changesets are kept per zone (`ixfr_history`).
    keep: usize,
    zones: Mutex<HashMap<Name, VecDeque<Arc<Changeset>>>>,
    /// Zones whose publisher records their changes itself (see the module docs).
    owned: Mutex<HashSet<Name>>,
}

impl History {
    /// An empty history keeping the last `keep` changesets of each zone.
    pub fn new(keep: usize) -> History {
        History {
            keep,
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
            .is_some_and(|last| last.to_serial != cs.from_serial)
        {
            h.clear();
        }
        h.push_back(Arc::new(cs));
        while h.len() > self.keep {
            h.pop_front();
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
            .map_or_else(Vec::new, |h| h.iter().cloned().collect())
    }

    /// The changesets from `serial` to `current`, if the history reaches that far back.
    pub fn since(&self, origin: &Name, serial: u32, current: u32) -> Option<Vec<Arc<Changeset>>> {
        let zones = self.zones.lock().unwrap_or_else(|e| e.into_inner());
        let h = zones.get(&origin.to_lowercase())?;
        let start = h.iter().position(|cs| cs.from_serial == serial)?;
        let chain: Vec<Arc<Changeset>> = h.iter().skip(start).cloned().collect();
        let chained = chain.windows(2).all(|w| w[0].to_serial == w[1].from_serial);
        (chained && chain.last()?.to_serial == current).then_some(chain)
    }
}
