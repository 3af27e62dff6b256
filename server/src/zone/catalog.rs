//! The set of zones being served, and finding the zone for a name.
//!
//! A [`Catalog`] is an immutable snapshot like a [`Zone`]: a reload builds a new one that
//! shares the unchanged zones (`Arc`) and swaps it in whole. Finding the zone costs one
//! hash lookup per label of the query name (longest match first).

use std::sync::Arc;

use crate::proto::name::{suffixes, Name};
use crate::zone::{NameMap, Zone};

/// Zones keyed by lower-cased apex.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    zones: NameMap<Arc<Zone>>,
    /// Wire lengths of the apexes: a suffix of another length cannot be an apex, so it is
    /// not hashed (most queries then cost one hash lookup to find their zone).
    apex_lengths: Vec<usize>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Adds or replaces a zone.
    pub fn insert(&mut self, zone: Arc<Zone>) {
        let len = zone.origin.wire_len();
        if !self.apex_lengths.contains(&len) {
            self.apex_lengths.push(len);
        }
        self.zones.insert(zone.origin.as_wire().into(), zone);
    }

    /// The zone with this apex.
    pub fn get(&self, origin: &Name) -> Option<&Arc<Zone>> {
        self.zones.get(origin.to_lowercase().as_wire())
    }

    /// The most specific zone containing `qname` (lower-cased wire), if any.
    pub fn find(&self, qname: &[u8]) -> Option<&Arc<Zone>> {
        suffixes(qname)
            .filter(|s| self.apex_lengths.contains(&s.len()))
            .find_map(|s| self.zones.get(s))
    }

    /// All zones.
    pub fn zones(&self) -> impl Iterator<Item = &Arc<Zone>> {
        self.zones.values()
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.zones.len()
    }

    /// True when no zone is served.
    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }
}
