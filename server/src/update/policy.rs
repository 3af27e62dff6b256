//! Who may change what: a zone's update policy (grants of key, names and types, as
//! BIND's `update-policy`), host keys, and the limits that bound what one key can add.

use super::{RRsetData, UpdateRecord, ZoneData};
use crate::proto::name::Name;
use crate::proto::rr::{Rclass, Rtype};

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
pub const HOST_TYPES: [Rtype; 3] = [Rtype::A, Rtype::AAAA, Rtype::DHCID];

/// Which types a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeMatch {
    /// Every type except SOA and NS, as BIND's default: hosts change their own data,
    /// not the zone's delegation or serial.
    Default,
    /// Every type, SOA and NS included (`types = ["ANY"]`, and `--allow-update`).
    All,
    /// These types only.
    Only(Vec<Rtype>),
}

impl TypeMatch {
    fn covers(&self, t: Rtype) -> bool {
        match self {
            TypeMatch::Default => t != Rtype::SOA && t != Rtype::NS,
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
    fn covers_record(&self, key: &Name, owner: &Name, t: Rtype, rdata: Option<&[u8]>) -> bool {
        if !self.key.eq_ignore_case(key) || !self.types.covers(t) {
            return false;
        }
        match &self.names {
            NameMatch::Host { host, srv_owners } => {
                if owner.eq_ignore_case(host) {
                    return HOST_TYPES.contains(&t);
                }
                t == Rtype::SRV
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
    pub fn allows(&self, key: &Name, owner: &Name, t: Rtype) -> bool {
        self.grants
            .iter()
            .any(|g| g.covers_record(key, owner, t, None))
    }

    /// Whether `key` may add or delete the record `t`/`rdata` at `owner`.
    pub fn allows_record(&self, key: &Name, owner: &Name, t: Rtype, rdata: &[u8]) -> bool {
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
        if u.class != Rclass::ANY {
            return self.allows_record(key, &u.owner, u.rtype, &u.rdata);
        }
        if u.rtype == Rtype::ANY {
            // Deleting everything at a name needs every record that is there (the apex
            // SOA and NS are never deleted this way, RFC 2136 §3.4.2.3).
            return match data.node(&u.owner) {
                Some(n) => n.sets.iter().all(|s| {
                    existing(s)
                        || (s.rtype == Rtype::SOA || s.rtype == Rtype::NS)
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
