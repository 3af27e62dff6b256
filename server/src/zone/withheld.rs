//! Which SRV RRsets a snapshot withholds: each completeness gate ([`super::gate`]) counted
//! against the snapshot's records when it is built or patched, and the log lines and
//! metrics when a gate opens or closes.

use super::gate::{declared_size, describe, is_server_owner, Gate, SizeSource};
use super::{Found, Node, Zone};
use crate::proto::name::Name;
use crate::proto::rr::rtype;

/// The gates of a built zone: one per etcd server SRV owner name with a TXT size
/// declaration, and one per configured size (`config`: owner name and size; names
/// outside the zone are ignored). Sorted by node number.
pub(crate) fn compute(zone: &Zone, config: &[(Name, u32)]) -> Vec<Gate> {
    compute_from(zone, zone.nodes(), config)
}

/// [`compute`] with the names that may declare a size given: a patched zone
/// ([`crate::zone::patch`]) passes the owners of its previous gates and the names it
/// touched instead of every name. `candidates` must not repeat a name.
pub(crate) fn compute_from<'z>(
    zone: &'z Zone,
    candidates: impl Iterator<Item = Node<'z>>,
    config: &[(Name, u32)],
) -> Vec<Gate> {
    let mut gates: Vec<Gate> = Vec::new();
    for node in candidates {
        let Some(txt) = node.rrset(rtype::TXT) else {
            continue;
        };
        if !is_server_owner(node.key()) {
            continue;
        }
        let Some(declared) = declared_size(txt.rdatas()) else {
            continue;
        };
        let (need, problem) = match declared {
            Ok(n) => (n, None),
            Err(p) => (0, Some(p)),
        };
        gates.push(Gate {
            owner: Name::from_wire(node.key()).expect("stored names are valid"),
            node: node.index(),
            need,
            source: SizeSource::Txt,
            overridden_txt: None,
            problem,
            targets: 0,
            have: 0,
            missing: Vec::new(),
            open: false,
            text: "".into(),
        });
    }
    for (owner, size) in config {
        let owner = owner.to_lowercase();
        if !owner.is_subdomain_of(&zone.origin) {
            continue;
        }
        match gates.iter_mut().find(|g| g.owner == owner) {
            Some(g) => {
                if g.need != *size || g.problem.is_some() {
                    g.overridden_txt = (g.problem.is_none()).then_some(g.need);
                }
                g.need = *size;
                g.problem = None;
                g.source = SizeSource::Config;
            }
            None => gates.push(Gate {
                node: zone.node(owner.as_wire()).map_or(u32::MAX, |n| n.index()),
                owner,
                need: *size,
                source: SizeSource::Config,
                overridden_txt: None,
                problem: None,
                targets: 0,
                have: 0,
                missing: Vec::new(),
                open: false,
                text: "".into(),
            }),
        }
    }
    for g in &mut gates {
        count_targets(zone, g);
        g.open = g.problem.is_none() && g.targets == g.need && g.have == g.need;
        g.text = describe(g).into_boxed_str();
    }
    gates.sort_by_key(|g| g.node);
    gates
}

/// Fills in the targets of `g`'s SRV RRset and which of them have an address.
fn count_targets(zone: &Zone, g: &mut Gate) {
    let Some(srv) = zone
        .node(g.owner.as_wire())
        .and_then(|n| n.rrset(rtype::SRV))
    else {
        return;
    };
    let mut seen: Vec<Name> = Vec::new();
    for rdata in srv.rdatas() {
        let Some(target) = rdata.get(6..).and_then(|t| Name::from_wire(t).ok()) else {
            continue;
        };
        let target = target.to_lowercase();
        if seen.contains(&target) {
            continue;
        }
        seen.push(target.clone());
        g.targets += 1;
        if has_address(zone, &target) {
            g.have += 1;
        } else {
            g.missing.push(target);
        }
    }
}

/// True when `target` gets an A or AAAA answer from this zone (directly or through a
/// wildcard). A name outside the zone, below a delegation or only reachable through a
/// CNAME does not count: this zone cannot vouch for it.
fn has_address(zone: &Zone, target: &Name) -> bool {
    if target.is_root() || !target.is_subdomain_of(&zone.origin) {
        return false;
    }
    match zone.find(target.as_wire()) {
        Found::Exact(n) | Found::Wildcard(n) => {
            n.rrset(rtype::A).is_some() || n.rrset(rtype::AAAA).is_some()
        }
        Found::Referral(_) | Found::NxDomain => false,
    }
}

/// Logs what changed in `after`'s gates since `before` (see [`log_changes`]) and puts
/// its gates into the metrics: call whenever a new snapshot of a zone goes into service
/// (load, reload, dynamic update).
pub fn announce(stats: &crate::stats::Stats, origin: &Name, before: Option<&Zone>, after: &Zone) {
    log_changes(origin, before, after);
    let zone = origin.to_lowercase().to_string();
    let mut samples = stats.gates.lock().unwrap_or_else(|e| e.into_inner());
    samples.retain(|s| s.zone != zone);
    samples.extend(after.gates().iter().map(|g| crate::stats::GateSample {
        zone: zone.clone(),
        owner: g.owner.to_string(),
        open: g.open,
        have: g.have,
        need: g.need,
    }));
    samples.sort_by(|a, b| (&a.zone, &a.owner).cmp(&(&b.zone, &b.owner)));
}

/// Logs each gate whose state differs from `before` (all of them when there was no
/// previous snapshot): call when a new snapshot of a zone goes into service.
pub fn log_changes(origin: &Name, before: Option<&Zone>, after: &Zone) {
    let old = before.map(Zone::gates).unwrap_or_default();
    for g in after.gates() {
        let prev = old.iter().find(|o| o.owner == g.owner);
        if prev.is_some_and(|p| p.open == g.open && p.text == g.text) {
            continue;
        }
        if g.open {
            tracing::info!(zone = %origin, gate = "open", "completeness gate {}", g.text);
        } else {
            tracing::warn!(
                zone = %origin,
                gate = "closed",
                "completeness gate {} (SRV answers there are withheld)",
                g.text
            );
        }
    }
    for o in old {
        if !after.gates().iter().any(|g| g.owner == o.owner) {
            tracing::info!(zone = %origin, gate = "removed", "completeness gate at {} removed: its SRV records are served as they are", o.owner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::zonefile;
    use std::path::Path;

    fn zone(body: &str, config: &[(&str, u32)]) -> Zone {
        let origin = Name::parse("d.test.", None).unwrap();
        let text = format!(
            "$ORIGIN d.test.\n$TTL 30\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\nns1 A 10.0.0.1\n{body}"
        );
        let records = zonefile::parse_str(&text, Path::new("t.zone"), &origin).unwrap();
        let sizes: Vec<(Name, u32)> = config
            .iter()
            .map(|(o, n)| (Name::parse(o, Some(&origin)).unwrap(), *n))
            .collect();
        Zone::build_with_sizes(&origin, records, &sizes).unwrap().0
    }

    fn only(z: &Zone) -> &Gate {
        assert_eq!(z.gates().len(), 1, "{:?}", z.gates());
        &z.gates()[0]
    }

    const SRV3: &str = "_etcd-server-ssl._tcp SRV 0 0 2380 m1\n\
                        _etcd-server-ssl._tcp SRV 0 0 2380 m2\n\
                        _etcd-server-ssl._tcp SRV 0 0 2380 m3\n";

    #[test]
    fn complete_set_opens_the_gate() {
        let z = zone(
            &format!("_etcd-server-ssl._tcp TXT \"muster-size=3\"\n{SRV3}m1 A 10.0.0.11\nm2 AAAA fd00::12\nm3 A 10.0.0.13\n"),
            &[],
        );
        let g = only(&z);
        assert!(g.open, "{}", g.text);
        assert_eq!((g.need, g.targets, g.have), (3, 3, 3));
        assert_eq!(g.source, SizeSource::Txt);
        let node = z.node(g.owner.as_wire()).unwrap();
        assert!(node.withheld().is_none());
    }

    #[test]
    fn missing_address_closes_the_gate_and_names_it() {
        let z = zone(
            &format!("_etcd-server-ssl._tcp TXT \"muster-size=3\"\n{SRV3}m1 A 10.0.0.11\nm2 A 10.0.0.12\n"),
            &[],
        );
        let g = only(&z);
        assert!(!g.open);
        assert_eq!((g.need, g.targets, g.have), (3, 3, 2));
        assert_eq!(g.missing, [Name::parse("m3.d.test.", None).unwrap()]);
        assert_eq!(
            &*g.text,
            "_etcd-server-ssl._tcp.d.test.: muster-size=3 but 2 of 3 SRV targets have an \
             address; no A/AAAA record for m3.d.test."
        );
        let node = z.node(g.owner.as_wire()).unwrap();
        assert_eq!(node.withheld().map(|g| &*g.text), Some(&*g.text));
    }

    #[test]
    fn too_few_and_too_many_targets() {
        let few = zone(
            "_etcd-server._tcp TXT \"muster-size=3\"\n_etcd-server._tcp SRV 0 0 2380 m1\nm1 A 10.0.0.11\n",
            &[],
        );
        let g = only(&few);
        assert!(!g.open);
        assert!(
            g.text.contains("1 of 1 SRV targets") && g.text.contains("2 more SRV target(s)"),
            "{}",
            g.text
        );
        let many = zone(
            &format!("_etcd-server-ssl._tcp TXT \"muster-size=2\"\n{SRV3}m1 A 10.0.0.11\nm2 A 10.0.0.12\nm3 A 10.0.0.13\n"),
            &[],
        );
        let g = only(&many);
        assert!(
            !g.open && g.text.contains("1 SRV target(s) too many"),
            "{}",
            g.text
        );
    }

    /// The same target twice (other port or priority, or other case) is one member.
    #[test]
    fn duplicate_targets_count_once() {
        let z = zone(
            "_etcd-server-ssl._tcp TXT \"muster-size=2\"\n\
             _etcd-server-ssl._tcp SRV 0 0 2380 m1\n\
             _etcd-server-ssl._tcp SRV 0 0 2381 M1\n\
             _etcd-server-ssl._tcp SRV 0 0 2380 m2\n\
             m1 A 10.0.0.11\nm2 A 10.0.0.12\n",
            &[],
        );
        let g = only(&z);
        assert!(g.open, "{}", g.text);
        assert_eq!((g.targets, g.have), (2, 2));
    }

    /// Plain and -ssl sets, and --discovery-srv-name suffixes, each have their own gate;
    /// owner names in any case are one gate; client sets never get one.
    #[test]
    fn each_server_set_has_its_own_gate() {
        let z = zone(
            "_etcd-server-ssl-blue._tcp TXT \"muster-size=1\"\n\
             _etcd-server-ssl-blue._tcp SRV 0 0 2380 b1\n\
             _ETCD-SERVER._TCP TXT \"muster-size=1\"\n\
             _etcd-server._tcp SRV 0 0 2380 p1\n\
             _etcd-client._tcp TXT \"muster-size=3\"\n\
             _etcd-client._tcp SRV 0 0 2379 p1\n\
             b1 A 10.0.0.21\n",
            &[],
        );
        let gates = z.gates();
        assert_eq!(gates.len(), 2, "{gates:?}");
        let by = |o: &str| gates.iter().find(|g| g.owner.to_string() == o).unwrap();
        assert!(by("_etcd-server-ssl-blue._tcp.d.test.").open);
        let plain = by("_etcd-server._tcp.d.test.");
        assert!(!plain.open);
        assert_eq!(plain.missing, [Name::parse("p1.d.test.", None).unwrap()]);
    }

    #[test]
    fn targets_outside_the_zone_or_root_do_not_count() {
        let z = zone(
            "_etcd-server._tcp TXT \"muster-size=2\"\n\
             _etcd-server._tcp SRV 0 0 2380 m1.other.test.\n\
             _etcd-server._tcp SRV 0 0 2380 .\n",
            &[],
        );
        let g = only(&z);
        assert!(!g.open);
        assert_eq!(g.missing.len(), 2);
        assert_eq!(g.have, 0);
    }

    #[test]
    fn malformed_or_conflicting_sizes_keep_the_gate_closed() {
        for (txt, want) in [
            ("\"muster-size=x\"", "is not \"muster-size=N\""),
            ("\"muster-size=0\"", "is not \"muster-size=N\""),
            ("\"muster-size=3\" \"more\"", "is not \"muster-size=N\""),
            (
                "\"muster-size=3\"\n_etcd-server._tcp TXT \"muster-size=5\"",
                "different sizes (3, 5)",
            ),
        ] {
            let z = zone(
                &format!("_etcd-server._tcp TXT {txt}\n_etcd-server._tcp SRV 0 0 2380 m1\nm1 A 10.0.0.1\n"),
                &[],
            );
            let g = only(&z);
            assert!(!g.open && g.text.contains(want), "{txt}: {}", g.text);
            assert!(g.problem.is_some());
        }
        // Other TXT records at the name are no declaration.
        let z = zone(
            "_etcd-server._tcp TXT \"hello\"\n_etcd-server._tcp SRV 0 0 2380 m1\n",
            &[],
        );
        assert!(z.gates().is_empty());
    }

    #[test]
    fn configured_sizes_override_txt() {
        let body = format!("_etcd-server-ssl._tcp TXT \"muster-size=5\"\n{SRV3}m1 A 10.0.0.11\nm2 A 10.0.0.12\nm3 A 10.0.0.13\n");
        let z = zone(&body, &[("_etcd-server-ssl._tcp", 3)]);
        let g = only(&z);
        assert!(g.open, "{}", g.text);
        assert_eq!((g.source, g.overridden_txt), (SizeSource::Config, Some(5)));
        assert!(g.text.contains("configured size 3"));
        // Agreeing sizes are no override; a size for a name without records is a closed
        // gate; a name outside the zone is ignored.
        let z = zone(
            &body,
            &[
                ("_etcd-server-ssl._tcp", 5),
                ("_etcd-server-ssl-x._tcp", 1),
                ("x.other.", 1),
            ],
        );
        assert_eq!(z.gates().len(), 2);
        assert!(z
            .gates()
            .iter()
            .all(|g| !g.open && g.overridden_txt.is_none()));
        let z = zone(
            &format!("{SRV3}m1 A 10.0.0.11\nm2 A 10.0.0.12\nm3 A 10.0.0.13\n"),
            &[("_etcd-server-ssl._tcp.d.test.", 3)],
        );
        assert!(only(&z).open);
    }

    #[test]
    fn zones_without_declarations_have_no_gates() {
        let z = zone(&format!("{SRV3}m1 A 10.0.0.11\n"), &[]);
        assert!(z.gates().is_empty());
        assert!(z.nodes().all(|n| n.withheld().is_none()));
    }

    #[test]
    fn metrics_follow_each_new_snapshot() {
        let stats = crate::stats::Stats::default();
        let origin = Name::parse("d.test.", None).unwrap();
        let closed = zone(
            &format!("_etcd-server-ssl._tcp TXT \"muster-size=3\"\n{SRV3}m1 A 10.0.0.11\n"),
            &[],
        );
        announce(&stats, &origin, None, &closed);
        let text = stats.render();
        let key = "{zone=\"d.test.\",name=\"_etcd-server-ssl._tcp.d.test.\"}";
        for (m, v) in [("open", 0), ("have", 1), ("need", 3)] {
            assert!(
                text.contains(&format!("musterd_gate_{m}{key} {v}\n")),
                "{text}"
            );
            assert!(text.contains(&format!("# TYPE musterd_gate_{m} gauge\n")));
        }
        let open = zone(
            &format!("_etcd-server-ssl._tcp TXT \"muster-size=3\"\n{SRV3}m1 A 10.0.0.11\nm2 A 10.0.0.12\nm3 A 10.0.0.13\n"),
            &[],
        );
        announce(&stats, &origin, Some(&closed), &open);
        let text = stats.render();
        assert!(
            text.contains(&format!("musterd_gate_open{key} 1\n")),
            "{text}"
        );
        assert_eq!(text.matches("musterd_gate_open{").count(), 1);
        announce(&stats, &origin, Some(&open), &zone("", &[]));
        assert!(!stats.render().contains("musterd_gate_"));
    }

    #[test]
    fn server_owner_names() {
        let w = |s: &str| Name::parse(s, None).unwrap().as_wire().to_vec();
        assert!(is_server_owner(&w("_etcd-server-ssl._tcp.d.")));
        assert!(is_server_owner(&w("_ETCD-SERVER-prod._TCP.d.")));
        assert!(!is_server_owner(&w("_etcd-client-ssl._tcp.d.")));
        assert!(!is_server_owner(&w("_etcd-server._udp.d.")));
        assert!(!is_server_owner(&w("d.")));
    }
}
