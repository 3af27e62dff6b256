//! Immutable zone snapshots and the name lookup that answers are built from
//! (RFC 1034 §4.3.2, RFC 4592 wildcards, RFC 8020 empty non-terminals).
//!
//! A [`Zone`] is built once from records and never changed: a reload or (later) a dynamic
//! update builds a new snapshot and swaps it in atomically, so readers never lock. Every
//! name in the zone, including empty non-terminals, is a key in one hash table, and each
//! node carries what the lookup would otherwise have to search for (is it a delegation, is
//! it below one, does it have a wildcard child). Hits and misses therefore cost a handful
//! of hash lookups — one per label at most — whatever the zone size.
//!
//! Limitations: no DNSSEC data handling (RRSIG/NSEC are stored as opaque types); DNAME is
//! stored but not followed.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::name::Name;
use crate::rr::{class, rtype, type_name, Origin, Record, Soa};

/// Hash map keyed by lower-cased wire names.
pub type NameMap<V> = HashMap<Box<[u8]>, V, foldhash::fast::RandomState>;

/// All records of one type at one name (RFC 2181 §5).
#[derive(Debug, Clone)]
pub struct RRset {
    pub rtype: u16,
    pub ttl: u32,
    /// Rdata of each record, uncompressed wire form, in file order, duplicates removed.
    pub rdatas: Vec<Box<[u8]>>,
}

/// Where a node stands relative to zone cuts (RFC 1034 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cut {
    /// Authoritative data.
    None,
    /// A delegation point: NS records below the apex.
    Delegation,
    /// Below a delegation point: only glue. Holds the delegation's lookup key.
    Below(Box<[u8]>),
}

/// One name in the zone.
#[derive(Debug, Clone)]
pub struct Node {
    /// Owner name as written in the zone (case preserved).
    pub owner: Name,
    /// RRsets sorted by type; empty for an empty non-terminal.
    pub rrsets: Vec<RRset>,
    pub cut: Cut,
    /// True when `*.<this name>` exists.
    pub wildcard_child: bool,
    /// Answers precompiled in wire format (see [`crate::fastpath`]); empty until
    /// [`crate::fastpath::precompile`] ran, and for names it cannot serve. Set once, while
    /// the snapshot may already be serving.
    pub prebuilt: std::sync::OnceLock<Box<crate::fastpath::NodeAnswers>>,
}

impl Node {
    /// The RRset of type `t`, if present.
    pub fn rrset(&self, t: u16) -> Option<&RRset> {
        self.rrsets.iter().find(|s| s.rtype == t)
    }
}

/// What a name lookup found (before type selection).
#[derive(Debug)]
pub enum Found<'z> {
    /// The name exists (possibly as an empty non-terminal).
    Exact(&'z Node),
    /// The name does not exist but a wildcard covers it (RFC 4592 §3.3.1).
    Wildcard(&'z Node),
    /// The name is at or below a delegation: answer with a referral to this node.
    Referral(&'z Node),
    /// The name does not exist.
    NxDomain,
}

/// A loaded zone: immutable once built.
#[derive(Debug)]
pub struct Zone {
    /// Apex, lower-cased.
    pub origin: Name,
    nodes: NameMap<Node>,
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
}

/// Why a set of records is not a valid zone. Each names where the record came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{at}: {owner} is outside the zone {origin}; remove it or serve it in its own zone")]
    OutOfZone {
        at: String,
        owner: Name,
        origin: Name,
    },
    #[error("zone {origin} has no SOA record at its apex; add one (e.g. `@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60`)")]
    NoSoa { origin: Name },
    #[error("{at}: second SOA record for {origin}; a zone has exactly one")]
    SecondSoa { at: String, origin: Name },
    #[error("{at}: SOA record at {owner}, not at the zone apex {origin}")]
    SoaNotAtApex {
        at: String,
        owner: Name,
        origin: Name,
    },
    #[error("{at}: malformed SOA rdata")]
    BadSoa { at: String },
    #[error("{at}: CNAME at {owner} alongside other data ({other}); a CNAME must be alone at its name (RFC 1034 §3.6.2)")]
    CnameAndOther {
        at: String,
        owner: Name,
        other: String,
    },
    #[error("{at}: CNAME at the zone apex {owner} conflicts with the SOA and NS records")]
    CnameAtApex { at: String, owner: Name },
    #[error("{at}: {owner}: more than one CNAME record; a name has at most one")]
    MultipleCname { at: String, owner: Name },
    #[error("{at}: class {class} record; only class IN is served")]
    WrongClass { at: String, class: u16 },
    #[error("{at}: {what} record type {t} cannot be stored in a zone")]
    MetaType { at: String, what: String, t: u16 },
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

impl Zone {
    /// Builds a zone from records. Every error is collected, not just the first.
    pub fn build(
        origin: &Name,
        records: Vec<Record>,
    ) -> Result<(Zone, Vec<ZoneWarning>), Vec<ZoneError>> {
        let origin_lc = origin.to_lowercase();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut files: Vec<PathBuf> = Vec::new();
        let mut nodes: NameMap<Node> = NameMap::default();
        let mut soa: Option<(Soa, Box<[u8]>, u32)> = None;
        // First source position per (owner, type): TTL mismatch warnings name it.
        let mut record_count = 0;

        for r in records {
            if let Some(src) = &r.source {
                if !files.iter().any(|f| f == src.file.as_ref()) {
                    files.push(src.file.as_ref().clone());
                }
            }
            if r.class != class::IN {
                errors.push(ZoneError::WrongClass {
                    at: at(&r),
                    class: r.class,
                });
                continue;
            }
            if matches!(
                r.rtype,
                0 | rtype::OPT
                    | rtype::TSIG
                    | rtype::TKEY
                    | rtype::IXFR
                    | rtype::AXFR
                    | rtype::MAILA
                    | rtype::MAILB
                    | rtype::ANY
            ) {
                errors.push(ZoneError::MetaType {
                    at: at(&r),
                    what: "meta".into(),
                    t: r.rtype,
                });
                continue;
            }
            if !r.owner.is_subdomain_of(&origin_lc) {
                errors.push(ZoneError::OutOfZone {
                    at: at(&r),
                    owner: r.owner.clone(),
                    origin: origin.clone(),
                });
                continue;
            }
            let key = r.owner.to_lowercase();
            if r.rtype == rtype::SOA {
                if key != origin_lc {
                    errors.push(ZoneError::SoaNotAtApex {
                        at: at(&r),
                        owner: r.owner.clone(),
                        origin: origin.clone(),
                    });
                    continue;
                }
                if soa.is_some() {
                    errors.push(ZoneError::SecondSoa {
                        at: at(&r),
                        origin: origin.clone(),
                    });
                    continue;
                }
                match Soa::from_rdata(&r.rdata) {
                    Some(s) => soa = Some((s, r.rdata.clone().into_boxed_slice(), r.ttl)),
                    None => {
                        errors.push(ZoneError::BadSoa { at: at(&r) });
                        continue;
                    }
                }
            }
            // Look up before inserting: most records join an existing node, and an entry()
            // call would allocate a key for each of them.
            if !nodes.contains_key(key.as_wire()) {
                nodes.insert(
                    key.as_wire().into(),
                    Node {
                        owner: r.owner.clone(),
                        rrsets: Vec::new(),
                        cut: Cut::None,
                        wildcard_child: false,
                        prebuilt: std::sync::OnceLock::new(),
                    },
                );
            }
            let node = nodes.get_mut(key.as_wire()).expect("inserted above");
            match node.rrsets.iter_mut().find(|s| s.rtype == r.rtype) {
                Some(set) => {
                    if set.rdatas.iter().any(|d| **d == r.rdata[..]) {
                        continue; // RFC 2181 §5: duplicate records collapse into one.
                    }
                    if r.rtype == rtype::CNAME {
                        errors.push(ZoneError::MultipleCname {
                            at: at(&r),
                            owner: r.owner.clone(),
                        });
                        continue;
                    }
                    if set.ttl != r.ttl {
                        // RFC 2181 §5.2: all TTLs in an RRset must match; use the lowest.
                        warnings.push(ZoneWarning {
                            at: at(&r),
                            message: format!(
                                "{} {} TTL {} differs from the RRset's TTL {}; using {}",
                                r.owner,
                                type_name(r.rtype),
                                r.ttl,
                                set.ttl,
                                set.ttl.min(r.ttl)
                            ),
                        });
                        set.ttl = set.ttl.min(r.ttl);
                    }
                    set.rdatas.push(r.rdata.into_boxed_slice());
                }
                None => {
                    let here = at(&r);
                    node.rrsets.push(RRset {
                        rtype: r.rtype,
                        ttl: r.ttl,
                        rdatas: vec![r.rdata.into_boxed_slice()],
                    });
                    // Keep the CNAME-conflict check here so the offending record is named.
                    let has_cname = node.rrsets.iter().any(|s| s.rtype == rtype::CNAME);
                    if has_cname && node.rrsets.len() > 1 {
                        let other = node
                            .rrsets
                            .iter()
                            .filter(|s| s.rtype != rtype::CNAME)
                            .map(|s| type_name(s.rtype))
                            .collect::<Vec<_>>()
                            .join(", ");
                        errors.push(ZoneError::CnameAndOther {
                            at: here.clone(),
                            owner: node.owner.clone(),
                            other,
                        });
                    }
                    if r.rtype == rtype::CNAME && key == origin_lc {
                        errors.push(ZoneError::CnameAtApex {
                            at: here.clone(),
                            owner: node.owner.clone(),
                        });
                    }
                }
            }
            record_count += 1;
        }

        let Some((soa, soa_rdata, soa_ttl)) = soa else {
            errors.push(ZoneError::NoSoa {
                origin: origin.clone(),
            });
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }

        // Empty non-terminals: every ancestor between an owner and the apex exists
        // (RFC 8020), so a miss can stop at the first existing ancestor.
        let owners: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
        let apex_len = origin_lc.wire_len();
        for owner in &owners {
            for suffix in crate::name::suffixes(owner).skip(1) {
                if suffix.len() < apex_len || nodes.contains_key(suffix) {
                    // A real owner fills its own chain; an inserted one was filled with ours.
                    break;
                }
                nodes.insert(
                    suffix.into(),
                    Node {
                        owner: Name::from_wire(suffix).expect("suffix of a valid name"),
                        rrsets: Vec::new(),
                        cut: Cut::None,
                        wildcard_child: false,
                        prebuilt: std::sync::OnceLock::new(),
                    },
                );
            }
        }

        // Wildcard flags and delegations, working on the key bytes (no allocation).
        let keys: Vec<Box<[u8]>> = nodes.keys().cloned().collect();
        let mut any_cut = false;
        for key in &keys {
            if key.len() >= 2 && key[0] == 1 && key[1] == b'*' {
                if let Some(p) = nodes.get_mut(&key[2..]) {
                    p.wildcard_child = true;
                }
            }
            let node = nodes.get_mut(key).expect("key from the map");
            node.rrsets.sort_by_key(|s| s.rtype);
            if **key != *origin_lc.as_wire() && node.rrset(rtype::NS).is_some() {
                node.cut = Cut::Delegation;
                any_cut = true;
            }
        }
        // A node below a delegation holds only glue: find the highest cut above it.
        for key in keys.iter().filter(|_| any_cut) {
            let mut highest: Option<Box<[u8]>> = None;
            for suffix in crate::name::suffixes(key).skip(1) {
                if suffix.len() <= apex_len {
                    break;
                }
                if nodes.get(suffix).is_some_and(|n| n.cut == Cut::Delegation) {
                    highest = Some(suffix.into());
                }
            }
            if let Some(cut) = highest {
                nodes.get_mut(key).expect("key from the map").cut = Cut::Below(cut);
            }
        }

        let negative_ttl = soa_ttl.min(soa.minimum);
        Ok((
            Zone {
                origin: origin_lc,
                nodes,
                soa,
                soa_rdata,
                soa_ttl,
                negative_ttl,
                record_count,
                files,
            },
            warnings,
        ))
    }

    /// Serial of the SOA.
    pub fn serial(&self) -> u32 {
        self.soa.serial
    }

    /// The node at exactly this lower-cased wire name.
    pub fn node(&self, key: &[u8]) -> Option<&Node> {
        self.nodes.get(key)
    }

    /// The apex node.
    pub fn apex(&self) -> &Node {
        self.nodes
            .get(self.origin.as_wire())
            .expect("the apex holds the SOA")
    }

    /// Number of names, empty non-terminals included.
    pub fn name_count(&self) -> usize {
        self.nodes.len()
    }

    /// Iterates over all nodes (order unspecified).
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Finds what answers `qname` (lower-cased wire, at or below the apex).
    ///
    /// Costs one hash lookup for a hit and one per label between the name and its closest
    /// existing ancestor for a miss, plus one for the wildcard.
    pub fn find(&self, qname: &[u8]) -> Found<'_> {
        if let Some(node) = self.nodes.get(qname) {
            return match &node.cut {
                Cut::None => Found::Exact(node),
                Cut::Delegation => Found::Referral(node),
                Cut::Below(cut) => Found::Referral(&self.nodes[cut]),
            };
        }
        // Closest encloser: the first existing ancestor. The apex always exists, so this
        // ends there at the latest.
        let mut encloser = None;
        for suffix in crate::name::suffixes(qname).skip(1) {
            if let Some(n) = self.nodes.get(suffix) {
                encloser = Some((suffix, n));
                break;
            }
        }
        let Some((ce_key, ce)) = encloser else {
            return Found::NxDomain;
        };
        match &ce.cut {
            Cut::Delegation => return Found::Referral(ce),
            Cut::Below(cut) => return Found::Referral(&self.nodes[cut]),
            Cut::None => {}
        }
        if ce.wildcard_child {
            let mut buf = [0u8; crate::name::MAX_NAME_LEN + 2];
            buf[0] = 1;
            buf[1] = b'*';
            buf[2..2 + ce_key.len()].copy_from_slice(ce_key);
            if let Some(w) = self.nodes.get(&buf[..2 + ce_key.len()]) {
                return Found::Wildcard(w);
            }
        }
        Found::NxDomain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn rec(owner: &str, t: u16, rdata: &[u8]) -> Record {
        Record {
            owner: Name::parse(owner, None).unwrap(),
            rtype: t,
            class: class::IN,
            ttl: 300,
            rdata: rdata.to_vec(),
            source: None,
        }
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
        assert!(matches!(z.find(&key("a.b.c.x.")), Found::Exact(n) if n.rrsets.len() == 1));
        assert!(matches!(z.find(&key("b.c.x.")), Found::Exact(n) if n.rrsets.is_empty()));
        assert!(matches!(z.find(&key("c.x.")), Found::Exact(n) if n.rrsets.is_empty()));
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
        assert!(matches!(z.find(&key("wild.x.")), Found::Exact(n) if n.rrsets.is_empty()));
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
                matches!(z.find(&key(q)), Found::Referral(n) if n.owner.to_string() == "sub.x."),
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
        assert!(matches!(errs[0], ZoneError::CnameAndOther { .. }));
        assert!(matches!(errs[1], ZoneError::OutOfZone { .. }));
        let errs = Zone::build(&origin, vec![rec("a.x.", rtype::A, &[1, 2, 3, 4])]).unwrap_err();
        assert!(matches!(errs[0], ZoneError::NoSoa { .. }));
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
        assert_eq!(n.rrsets[0].ttl, 30);
        assert_eq!(n.rrsets[0].rdatas.len(), 2);
    }
}
