//! The dynamic-update configuration: TSIG keys, update policies, journals and write-back,
//! from the `[update]`, `[[key]]` and `[[update_policy]]` tables and the `--key-file`,
//! `--allow-update` and `--state-dir` flags, resolved into one [`UpdateConfig`] before
//! anything starts. Lives here, below the zone tasks that use it
//! ([`crate::dynamic`]), so that reading the configuration imports none of them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::config::ZoneSpec;
use crate::proto::name::Name;
use crate::proto::tsig::{self, KeyRing};
use crate::proto::types::Rtype;
use crate::update::{Grant, Limits, NameMatch, Policy, TypeMatch};

/// Where journals live unless configured (the unit's `StateDirectory=musterd`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/musterd";

// ---------------------------------------------------------------------------------------
// Configuration

/// The resolved dynamic-update configuration.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    pub keys: Arc<KeyRing>,
    /// Where `keys` were read from, to read them again on reload.
    pub key_sources: KeySources,
    pub state_dir: PathBuf,
    /// The zones that take updates, each with its policy.
    pub zones: Vec<(Name, Policy)>,
    pub limits: Limits,
    pub writeback_changes: usize,
    pub writeback_interval: Duration,
    pub journal_history: usize,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            keys: Arc::new(KeyRing::new()),
            key_sources: KeySources::default(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            zones: Vec::new(),
            limits: Limits::default(),
            writeback_changes: 10_000,
            writeback_interval: Duration::from_secs(60),
            journal_history: 100,
        }
    }
}

/// Why the keys or update policies cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Key(#[from] tsig::KeyError),
    #[error("--allow-update {0:?}: expected ZONE=KEYNAME[,KEYNAME], e.g. --allow-update example.test.=ddns-key")]
    AllowSyntax(String),
    #[error("update policy of zone {zone}: key {key:?} is not defined; load it with --key-file or [[key]]")]
    UnknownKey { zone: String, key: String },
    #[error("update policy for zone {0}, which is not served; add it with --zone or [[zone]]")]
    UnknownZone(String),
    #[error(
        "zone {0} takes updates but has no zone file (the built-in example zone cannot be updated)"
    )]
    NoFile(Name),
    #[error("update policy of zone {zone}: {message}")]
    Grant { zone: Name, message: String },
    #[error("{key} = {value}: {message}")]
    Value {
        key: &'static str,
        value: String,
        message: String,
    },
    #[error("name {text:?}: {source}")]
    Name {
        text: String,
        source: crate::proto::name::NameError,
    },
}

/// `[[key]]`: a TSIG key written inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKey {
    pub name: String,
    pub algorithm: String,
    pub secret: String,
}

/// `[update]`: limits, write-back and compaction.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpdate {
    pub max_rrset_records: Option<usize>,
    pub max_types_per_name: Option<usize>,
    pub max_zone_names: Option<usize>,
    pub max_update_records: Option<usize>,
    pub writeback_changes: Option<usize>,
    pub writeback_interval: Option<String>,
    pub journal_history: Option<usize>,
}

/// `[[zone.update_policy]]`: one grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGrant {
    pub key: String,
    /// `zone`, `name`, `subdomain`, `wildcard`, `self`, `selfsub` or `host`.
    #[serde(rename = "match")]
    pub match_: String,
    pub name: Option<String>,
    pub types: Option<Vec<String>>,
    /// With `match = "host"`: the etcd SRV owner names (relative to the zone unless they
    /// end in a dot) where the host may publish SRV records that point at itself.
    pub srv: Option<Vec<String>>,
}

/// The host a host key stands for: its name if that is in the zone (`infra0.example.test`),
/// else its name under the zone (key `infra0` in zone `example.test.` is
/// `infra0.example.test.`).
pub fn key_host(key: &Name, origin: &Name) -> Result<Name, ConfigError> {
    if key.is_subdomain_of(origin) && !key.eq_ignore_case(origin) {
        return Ok(key.to_lowercase());
    }
    let text = key.to_string();
    let rel = text.trim_end_matches('.');
    Name::parse(rel, Some(origin))
        .map(|n| n.to_lowercase())
        .map_err(|source| ConfigError::Name {
            text: format!("{rel} under {origin}"),
            source,
        })
}

/// What the config file and the flags say about updates, before it is checked.
#[derive(Debug, Default)]
pub struct Sources {
    pub state_dir: Option<PathBuf>,
    pub key_files: Vec<PathBuf>,
    pub keys: Vec<FileKey>,
    pub update: FileUpdate,
    /// (zone origin, key names allowed everything) from `allow_update` and the flags.
    pub allow: Vec<(String, Vec<String>)>,
    /// (zone origin, grants) from `[[zone.update_policy]]`.
    pub grants: Vec<(String, Vec<FileGrant>)>,
}

/// Parses `ZONE=KEYNAME[,KEYNAME]`.
pub fn parse_allow_flag(flag: &str) -> Result<(String, Vec<String>), ConfigError> {
    let (zone, keys) = flag
        .split_once('=')
        .filter(|(z, k)| !z.is_empty() && !k.is_empty())
        .ok_or_else(|| ConfigError::AllowSyntax(flag.into()))?;
    let keys: Vec<String> = keys.split(',').map(str::trim).map(String::from).collect();
    if keys.iter().any(String::is_empty) {
        return Err(ConfigError::AllowSyntax(flag.into()));
    }
    Ok((zone.into(), keys))
}

/// A zone or key name from the update configuration, absolute with or without its dot.
fn absolute(text: &str) -> Result<Name, ConfigError> {
    Name::parse_absolute(text).map_err(|source| ConfigError::Name {
        text: text.into(),
        source,
    })
}

/// `match = "host"` for `key` in zone `origin`: its host name and SRV owners, each of
/// which must be an etcd SRV owner name in the zone.
fn host_match(key: &Name, origin: &Name, srv: &[String]) -> Result<NameMatch, String> {
    let host = key_host(key, origin).map_err(|e| e.to_string())?;
    let mut srv_owners = Vec::new();
    for text in srv {
        let owner = Name::parse(text, Some(origin))
            .map_err(|e| format!("srv {text:?}: {e}"))?
            .to_lowercase();
        if !owner.is_subdomain_of(origin) {
            return Err(format!("srv {owner} is outside the zone"));
        }
        if crate::zone::gate::etcd_srv_owner(&owner).is_none() {
            return Err(format!(
                "srv {owner} is not an etcd SRV owner name (write e.g. \"_etcd-server-ssl._tcp\")"
            ));
        }
        srv_owners.push(owner);
    }
    Ok(NameMatch::Host { host, srv_owners })
}

/// Where the TSIG keys come from: read at start, and again on every reload (SIGHUP,
/// `musterd ctl reload`).
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// Key files (absolute, or relative to the working directory).
    pub files: Vec<PathBuf>,
    /// `[[key]]` tables of the config file.
    pub inline: Vec<FileKey>,
}

impl KeySources {
    /// Reads every key.
    pub fn load(&self) -> Result<KeyRing, ConfigError> {
        let mut keys = KeyRing::new();
        for path in &self.files {
            keys.load_file(path)?;
        }
        for (i, k) in self.inline.iter().enumerate() {
            let key = tsig::Key::from_config(&k.name, &k.algorithm, &k.secret)?;
            keys.insert(
                key,
                tsig::Location {
                    source: "[[key]] in the config".into(),
                    line: Some(i as u32 + 1),
                },
            )?;
        }
        Ok(keys)
    }
}

/// The TSIG keys in force, shared by updates, transfers and signed queries, and replaced
/// whole when they are read again.
pub type SharedKeys = Arc<ArcSwap<KeyRing>>;

/// Loads the keys and checks every policy against them and the served zones.
pub fn resolve(
    src: Sources,
    zones: &[ZoneSpec],
    file_dir: Option<&Path>,
) -> Result<UpdateConfig, ConfigError> {
    let key_sources = KeySources {
        files: src
            .key_files
            .iter()
            .map(|f| match file_dir {
                Some(d) if f.is_relative() => d.join(f),
                _ => f.clone(),
            })
            .collect(),
        inline: src.keys.clone(),
    };
    let keys = key_sources.load()?;
    let policies = policies(&src, zones, &keys)?;
    let d = UpdateConfig::default();
    let u = &src.update;
    let writeback_interval = match &u.writeback_interval {
        Some(v) => humantime::parse_duration(v).map_err(|e| ConfigError::Value {
            key: "update.writeback_interval",
            value: v.clone(),
            message: format!("{e} (write e.g. \"60s\")"),
        })?,
        None => d.writeback_interval,
    };
    Ok(UpdateConfig {
        keys: Arc::new(keys),
        key_sources,
        state_dir: src.state_dir.unwrap_or(d.state_dir),
        zones: policies,
        limits: limits(u, &d.limits)?,
        writeback_changes: positive(
            "update.writeback_changes",
            u.writeback_changes,
            d.writeback_changes,
        )?,
        writeback_interval,
        journal_history: u.journal_history.unwrap_or(d.journal_history),
    })
}

/// A count that must be at least 1: `v`, or `default` when not given.
fn positive(key: &'static str, v: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match v {
        Some(0) => Err(ConfigError::Value {
            key,
            value: "0".into(),
            message: "must be at least 1".into(),
        }),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// The `[update]` limits over the defaults `d`.
fn limits(u: &FileUpdate, d: &Limits) -> Result<Limits, ConfigError> {
    Ok(Limits {
        max_rrset_records: positive(
            "update.max_rrset_records",
            u.max_rrset_records,
            d.max_rrset_records,
        )?,
        max_types_per_name: positive(
            "update.max_types_per_name",
            u.max_types_per_name,
            d.max_types_per_name,
        )?,
        max_zone_names: positive("update.max_zone_names", u.max_zone_names, d.max_zone_names)?,
        max_update_records: positive(
            "update.max_update_records",
            u.max_update_records,
            d.max_update_records,
        )?,
    })
}

/// Each updatable zone's policy: `allow_update` keys may change everything, each
/// `[[zone.update_policy]]` grant what it says.
fn policies(
    src: &Sources,
    zones: &[ZoneSpec],
    keys: &KeyRing,
) -> Result<Vec<(Name, Policy)>, ConfigError> {
    let mut policies: Vec<(Name, Policy)> = Vec::new();
    for (zone, names) in &src.allow {
        let i = policy_of(&mut policies, zones, zone)?;
        for k in names {
            let key = key_name(zone, k, keys)?;
            policies[i].1.grants.push(Grant {
                key,
                names: NameMatch::Zone,
                types: TypeMatch::All,
            });
        }
    }
    for (zone, grants) in &src.grants {
        let i = policy_of(&mut policies, zones, zone)?;
        let origin = policies[i].0.clone();
        for g in grants {
            let key = key_name(zone, &g.key, keys)?;
            let grant = grant(g, key, &origin)?;
            policies[i].1.grants.push(grant);
        }
    }
    Ok(policies)
}

/// Where `zone`'s policy is in `policies`, added when it is not there yet; the zone must
/// be served from a file.
fn policy_of(
    policies: &mut Vec<(Name, Policy)>,
    zones: &[ZoneSpec],
    zone: &str,
) -> Result<usize, ConfigError> {
    let origin = absolute(zone)?;
    let spec = zones
        .iter()
        .find(|z| z.origin.eq_ignore_case(&origin))
        .ok_or_else(|| ConfigError::UnknownZone(zone.into()))?;
    if spec.file.is_none() {
        return Err(ConfigError::NoFile(origin));
    }
    if let Some(i) = policies.iter().position(|(o, _)| o.eq_ignore_case(&origin)) {
        return Ok(i);
    }
    policies.push((spec.origin.to_lowercase(), Policy::default()));
    Ok(policies.len() - 1)
}

/// The key `k` a grant of `zone` names, which must be loaded (lower-cased).
fn key_name(zone: &str, k: &str, keys: &KeyRing) -> Result<Name, ConfigError> {
    let n = absolute(k)?;
    if keys.get(&n).is_none() {
        return Err(ConfigError::UnknownKey {
            zone: zone.into(),
            key: k.into(),
        });
    }
    Ok(n.to_lowercase())
}

/// One `[[zone.update_policy]]` grant of zone `origin` for `key`, checked.
fn grant(g: &FileGrant, key: Name, origin: &Name) -> Result<Grant, ConfigError> {
    let bad = |message: String| ConfigError::Grant {
        zone: origin.clone(),
        message,
    };
    let names = grant_names(g, &key, origin)?;
    if matches!(
        names,
        NameMatch::Zone | NameMatch::SelfName | NameMatch::SelfSub | NameMatch::Host { .. }
    ) && g.name.is_some()
    {
        return Err(bad(format!("match = {:?} takes no name", g.match_)));
    }
    if g.srv.is_some() && !matches!(names, NameMatch::Host { .. }) {
        return Err(bad(format!(
            "match = {:?} takes no srv list (only match = \"host\" does)",
            g.match_
        )));
    }
    let types = match &g.types {
        None => TypeMatch::Default,
        Some(list) if list.iter().any(|t| t.eq_ignore_ascii_case("ANY")) => TypeMatch::All,
        Some(list) => {
            let mut ts = Vec::new();
            for t in list {
                match Rtype::from_text(t) {
                    Some(code) if !crate::proto::rr::is_meta_or_query_only(code) => ts.push(code),
                    _ => return Err(bad(format!("unknown record type {t:?}"))),
                }
            }
            TypeMatch::Only(ts)
        }
    };
    Ok(Grant { key, names, types })
}

/// The names a grant's `match` (and `name`, `srv`) cover in zone `origin`.
fn grant_names(g: &FileGrant, key: &Name, origin: &Name) -> Result<NameMatch, ConfigError> {
    let bad = |message: String| ConfigError::Grant {
        zone: origin.clone(),
        message,
    };
    let name = || -> Result<Name, ConfigError> {
        let text = g
            .name
            .as_deref()
            .ok_or_else(|| bad(format!("match = {:?} needs a name", g.match_)))?;
        // Relative to the zone unless it ends with a dot, as in a zone file.
        let n = Name::parse(text, Some(origin)).map_err(|source| ConfigError::Name {
            text: text.into(),
            source,
        })?;
        if !n.is_subdomain_of(origin) {
            return Err(bad(format!("{n} is outside the zone")));
        }
        Ok(n)
    };
    Ok(match g.match_.as_str() {
        "zone" => NameMatch::Zone,
        "name" => NameMatch::Exact(name()?),
        "subdomain" => NameMatch::Subdomain(name()?),
        "wildcard" => {
            let n = name()?;
            if !n.is_wildcard() {
                return Err(bad(format!(
                    "match = \"wildcard\" needs a name starting with \"*.\", not {n}"
                )));
            }
            NameMatch::Wildcard(n)
        }
        "self" => NameMatch::SelfName,
        "selfsub" => NameMatch::SelfSub,
        "host" => host_match(key, origin, g.srv.as_deref().unwrap_or_default()).map_err(&bad)?,
        other => {
            return Err(bad(format!(
                "match = {other:?}: expected zone, name, subdomain, wildcard, self, selfsub or host"
            )))
        }
    })
}
