//! `musterd check --config` ([`check_config`]): the zones of a configuration, checked as
//! [`crate::check`] checks zone files, and lints of its dynamic-update keys and policies.
//!
//! - `host-key-whole-zone`: a key that stands for one host (it has a `host`, `self` or
//!   `selfsub` grant, or its name names a host of the zone) may change the whole zone: on
//!   a DHCP network every host holds its key on disk, and one compromised host could then
//!   rewrite or unpublish every other member. `match = "host"` is what such a key needs.
//! - `key-file-mode`: a key file that users other than its owner may read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::check::{finding, Finding, Severity};
use crate::dynamic::{key_host, UpdateConfig};
use crate::proto::name::Name;
use crate::proto::rr::{Record, Rtype, Srv};
use crate::update::{NameMatch, Policy};

/// The policy and key findings of a configuration (`config` names its file).
pub fn lint(config: &Path, updates: &UpdateConfig, zones: &[(Name, Vec<Record>)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (origin, policy) in &updates.zones {
        let records = zones
            .iter()
            .find(|(o, _)| o.eq_ignore_case(origin))
            .map_or(&[][..], |(_, r)| &r[..]);
        whole_zone_host_keys(config, origin, policy, &updates.zones, records, &mut out);
    }
    out.extend(key_files(updates));
    out
}

/// The names of `records` that are hosts: owners of addresses and etcd SRV targets.
fn hosts(records: &[Record]) -> BTreeSet<Name> {
    let mut out = BTreeSet::new();
    for r in records {
        match r.rtype {
            Rtype::A | Rtype::AAAA => {
                out.insert(r.owner.to_lowercase());
            }
            Rtype::SRV if crate::zone::gate::etcd_srv_owner(&r.owner).is_some() => {
                if let Some(s) = Srv::from_rdata(&r.rdata) {
                    out.insert(s.target.to_lowercase());
                }
            }
            _ => {}
        }
    }
    out
}

fn whole_zone_host_keys(
    config: &Path,
    origin: &Name,
    policy: &Policy,
    all: &[(Name, Policy)],
    records: &[Record],
    out: &mut Vec<Finding>,
) {
    let hosts = hosts(records);
    let mut seen = BTreeSet::new();
    for g in &policy.grants {
        let whole = match &g.names {
            NameMatch::Zone => true,
            NameMatch::Subdomain(n) => n.eq_ignore_case(origin),
            _ => false,
        };
        if !whole || !seen.insert(g.key.clone()) {
            continue;
        }
        let per_host_grant = all.iter().flat_map(|(_, p)| &p.grants).any(|h| {
            h.key.eq_ignore_case(&g.key)
                && matches!(
                    h.names,
                    NameMatch::Host { .. } | NameMatch::SelfName | NameMatch::SelfSub
                )
        });
        let host = key_host(&g.key, origin).ok();
        let named_host = host.as_ref().filter(|h| hosts.contains(*h));
        if !per_host_grant && named_host.is_none() {
            continue;
        }
        let key = g.key.to_string();
        let key = key.trim_end_matches('.');
        let why = match named_host {
            Some(h) => format!("key {key} is named after host {h}"),
            None => format!("key {key} has a per-host grant"),
        };
        out.push(finding(
            Severity::Warning,
            "host-key-whole-zone",
            None,
            origin,
            format!(
                "{why} but may change anything in zone {origin}: a host holding it could rewrite or delete every other member's records"
            ),
            &format!(
                "give a host's key only its own records: [[zone.update_policy]] key = \"{key}\", match = \"host\", srv = [\"_etcd-server-ssl._tcp\"] (see docs/dhcp.md); keep allow_update for operators' keys"
            ),
        ));
        if let Some(f) = out.last_mut() {
            f.file = Some(config.to_path_buf());
        }
    }
}

/// Key files that others than their owner may read (BIND's and nsupdate's advice: 0600);
/// `musterd serve` logs them as warnings too.
pub fn key_files(updates: &UpdateConfig) -> Vec<Finding> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let files: BTreeSet<PathBuf> = updates
        .keys
        .names()
        .filter_map(|n| updates.keys.location(n))
        .map(|at| PathBuf::from(&at.source))
        .filter(|p| p.is_file())
        .collect();
    for file in files {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            out.push(Finding {
                severity: Severity::Warning,
                code: "key-file-mode",
                message: format!(
                    "key file is readable by others (mode {mode:04o}): anyone who can read it can sign updates"
                ),
                file: Some(file.clone()),
                line: None,
                name: String::new(),
                hint: format!(
                    "chmod 600 {} (owned by the user musterd runs as)",
                    file.display()
                ),
            });
        }
    }
    out
}

/// `musterd check --config`: the zones of a resolved configuration (`config` names the
/// file), their configured sizes, and the update keys and policies ([`lint`]).
pub fn check_config(config: &Path, cfg: &crate::config::ServerConfig) -> Vec<Finding> {
    let specs: Vec<(Option<Name>, PathBuf)> = cfg
        .zones
        .iter()
        .filter_map(|z| Some((Some(z.origin.clone()), z.file.clone()?)))
        .collect();
    let sizes: Vec<(Name, Vec<(Name, u32)>)> = cfg
        .zones
        .iter()
        .map(|z| (z.origin.clone(), z.sizes.clone()))
        .collect();
    let (mut findings, zones) = crate::check::parse_zones(&specs);
    findings.extend(crate::check::lint_zones_sized(&zones, &sizes));
    findings.extend(lint(config, &cfg.updates, &zones));
    findings
}
