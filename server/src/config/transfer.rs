//! The zone-transfer configuration: who may transfer which zone, whom to NOTIFY, the
//! zones copied from a primary and the bounds on incoming transfers, from the
//! `[transfer]` table and the `--allow-transfer`, `--notify` and `--secondary` flags,
//! resolved into one [`TransferConfig`] before anything starts. Lives here, below the
//! transfer code that uses it ([`crate::transfer::xfr`], [`crate::transfer::secondary`], [`crate::transfer::notify`]),
//! so that reading the configuration imports none of it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;

use crate::proto::name::Name;
use crate::proto::tsig::KeyRing;

/// An address prefix, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `ADDR[/PREFIX]`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (a, p) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// True when `ip` is inside the prefix. An IPv4-mapped IPv6 source matches IPv4
    /// prefixes (a dual-stack socket reports IPv4 clients that way).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One element of a zone's transfer ACL: a source prefix or a TSIG key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclEntry {
    Net(Cidr),
    Key(Name),
}

impl AclEntry {
    /// Parses `CIDR` or `key:KEYNAME`.
    pub fn parse(text: &str) -> Result<AclEntry, String> {
        let text = text.trim();
        if let Some(k) = text.strip_prefix("key:") {
            return Name::parse_absolute(k)
                .map(AclEntry::Key)
                .map_err(|e| format!("key name {k:?}: {e}"));
        }
        Cidr::parse(text).map(AclEntry::Net).ok_or_else(|| {
            "expected an address prefix (10.0.0.0/8, ::1/128, 127.0.0.1) or key:KEYNAME".into()
        })
    }
}

/// `[transfer]` in the config file; see deploy/musterd.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTransfer {
    /// `[transfer.allow]`: zone = ["CIDR" | "key:KEYNAME", ...].
    #[serde(default)]
    pub allow: std::collections::BTreeMap<String, Vec<String>>,
    /// `[transfer.notify]`: zone = ["ADDR:PORT[,key:KEYNAME]", ...].
    #[serde(default)]
    pub notify: std::collections::BTreeMap<String, Vec<String>>,
    pub notify_retries: Option<u32>,
    pub notify_timeout: Option<String>,
    pub ixfr_history: Option<usize>,
    pub ixfr_history_bytes: Option<usize>,
    pub in_max_bytes: Option<u64>,
    pub in_max_records: Option<usize>,
    /// `[[transfer.secondary]]`: zones pulled from a primary.
    #[serde(default)]
    pub secondary: Vec<FileSecondary>,
}

/// `[[transfer.secondary]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecondary {
    pub origin: String,
    pub primary: SocketAddr,
    pub key: Option<String>,
}

/// Transfer settings from the command line, each repeatable.
#[derive(Debug, Default, Clone)]
pub struct TransferFlags {
    /// `--allow-transfer ZONE=CIDR|key:KEYNAME[,...]`
    pub allow: Vec<String>,
    /// `--notify ZONE=ADDR:PORT[,key:KEYNAME]`
    pub notify: Vec<String>,
    /// `--secondary ZONE=ADDR:PORT[,key:KEYNAME]`
    pub secondary: Vec<String>,
}

/// Why the transfer settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} {value:?}: {message}")]
    Syntax {
        flag: &'static str,
        value: String,
        message: String,
    },
    #[error("zone name {text:?}: {source}")]
    Zone {
        text: String,
        source: crate::proto::name::NameError,
    },
    #[error("{what} names zone {zone}, which is not served; add it with --zone, [[zone]] or as a secondary")]
    UnknownZone { what: &'static str, zone: Name },
    #[error("zone {0} is configured as a secondary twice, or also has a zone file")]
    DuplicateSecondary(Name),
    #[error("{what} of zone {zone} names TSIG key {key}, which is not loaded; load it with --key-file or [[key]]")]
    UnknownKey {
        what: &'static str,
        zone: Name,
        key: Name,
    },
    #[error("{key} = {value:?}: {message}")]
    Value {
        key: &'static str,
        value: String,
        message: String,
    },
}

/// A zone pulled from a primary ([`crate::transfer::secondary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondarySpec {
    pub origin: Name,
    pub primary: SocketAddr,
    /// The TSIG key that signs the requests and must sign the answers.
    pub key: Option<Name>,
}

/// Bounds on one incoming transfer (AXFR or IXFR into a secondary zone): a primary that
/// sends more is cut off and the copy we hold stays served (RFC 5936 §4.1 leaves such
/// limits to the implementation; BIND has `max-records`, Knot `zone-max-size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InLimits {
    /// Octets of DNS messages in one transfer.
    pub max_bytes: u64,
    /// Records in one transfer (for IXFR, removals and additions together).
    pub max_records: usize,
}

impl Default for InLimits {
    fn default() -> Self {
        // Ten times the 210k-record benchmark zone, and its wire size many times over.
        InLimits {
            max_bytes: 256 << 20,
            max_records: 2_000_000,
        }
    }
}

/// A secondary to NOTIFY ([`crate::transfer::notify`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTarget {
    pub addr: SocketAddr,
    pub key: Option<Name>,
}

/// The resolved transfer settings.
#[derive(Debug, Clone)]
pub struct TransferConfig {
    /// Per zone (lower-cased), who may transfer it.
    pub allow: Vec<(Name, Vec<AclEntry>)>,
    /// Per zone (lower-cased), whom to NOTIFY after a serial change.
    pub notify: Vec<(Name, Vec<NotifyTarget>)>,
    pub secondaries: Vec<SecondarySpec>,
    /// NOTIFY attempts per change and secondary.
    pub notify_retries: u32,
    /// Wait for the first NOTIFY answer; doubled after each attempt.
    pub notify_timeout: Duration,
    /// Changesets kept per zone for IXFR.
    pub ixfr_history: usize,
    /// Octets of records those changesets may hold per zone.
    pub ixfr_history_bytes: usize,
    /// Bounds on incoming transfers.
    pub in_limits: InLimits,
}

impl Default for TransferConfig {
    fn default() -> Self {
        TransferConfig {
            allow: Vec::new(),
            notify: Vec::new(),
            secondaries: Vec::new(),
            notify_retries: 5,
            notify_timeout: Duration::from_secs(1),
            ixfr_history: 100,
            ixfr_history_bytes: 16 << 20,
            in_limits: InLimits::default(),
        }
    }
}

impl TransferConfig {
    /// True when nothing about transfers is configured: the query path then answers
    /// AXFR and IXFR as before (REFUSED over TCP) at no cost.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.notify.is_empty() && self.secondaries.is_empty()
    }

    /// Every TSIG key the settings name, with what names it: checked against the loaded
    /// keys by [`TransferConfig::check_keys`].
    fn key_uses(&self) -> impl Iterator<Item = (&'static str, &Name, &Name)> {
        let acl = self.allow.iter().flat_map(|(z, es)| {
            es.iter().filter_map(move |e| match e {
                AclEntry::Key(k) => Some(("allow-transfer", z, k)),
                AclEntry::Net(_) => None,
            })
        });
        let notify = self.notify.iter().flat_map(|(z, ts)| {
            ts.iter()
                .filter_map(move |t| t.key.as_ref().map(|k| ("notify", z, k)))
        });
        let sec = self
            .secondaries
            .iter()
            .filter_map(|s| s.key.as_ref().map(|k| ("secondary", &s.origin, k)));
        acl.chain(notify).chain(sec)
    }

    /// Checks that every key named is loaded.
    pub fn check_keys(&self, keys: &KeyRing) -> Result<(), ConfigError> {
        for (what, zone, key) in self.key_uses() {
            if keys.get(key).is_none() {
                return Err(ConfigError::UnknownKey {
                    what,
                    zone: zone.clone(),
                    key: key.clone(),
                });
            }
        }
        Ok(())
    }
}

fn zone_name(text: &str) -> Result<Name, ConfigError> {
    Name::parse_absolute(text)
        .map(|n| n.to_lowercase())
        .map_err(|source| ConfigError::Zone {
            text: text.into(),
            source,
        })
}

/// Splits `ZONE=REST`.
fn split_flag<'a>(flag: &'static str, value: &'a str) -> Result<(&'a str, &'a str), ConfigError> {
    value
        .split_once('=')
        .filter(|(z, r)| !z.is_empty() && !r.is_empty())
        .ok_or_else(|| ConfigError::Syntax {
            flag,
            value: value.into(),
            message: "expected ZONE=VALUE".into(),
        })
}

/// Parses `ADDR:PORT[,key:KEYNAME]`.
fn addr_and_key(
    flag: &'static str,
    value: &str,
) -> Result<(SocketAddr, Option<Name>), ConfigError> {
    let bad = |message: String| ConfigError::Syntax {
        flag,
        value: value.into(),
        message,
    };
    let mut parts = value.split(',');
    let addr = parts.next().unwrap_or_default().trim();
    let addr: SocketAddr = addr.parse().map_err(|_| {
        bad(format!(
            "{addr:?} is not ADDR:PORT (write 192.0.2.1:53 or [2001:db8::1]:53)"
        ))
    })?;
    let mut key = None;
    for p in parts {
        let Some(k) = p.trim().strip_prefix("key:") else {
            return Err(bad(format!("{p:?}: expected key:KEYNAME")));
        };
        key = Some(Name::parse_absolute(k).map_err(|e| bad(format!("key name {k:?}: {e}")))?);
    }
    Ok((addr, key))
}

/// Combines the file's `[transfer]` and the flags (flags add to the file) and checks
/// them against the zones served from files (`file_zones`).
pub fn resolve(
    file: Option<FileTransfer>,
    flags: &TransferFlags,
    file_zones: &[Name],
) -> Result<TransferConfig, ConfigError> {
    let file = file.unwrap_or_default();
    let mut cfg = settings(&file)?;
    // Secondaries first: they are served zones too.
    cfg.secondaries = secondaries(&file, flags, file_zones)?;
    let served = |zone: &Name| {
        file_zones.contains(zone) || cfg.secondaries.iter().any(|s| &s.origin == zone)
    };
    let allow = allow_lists(&file, flags)?;
    if let Some((zone, _)) = allow.iter().find(|(zone, _)| !served(zone)) {
        return Err(ConfigError::UnknownZone {
            what: "allow-transfer",
            zone: zone.clone(),
        });
    }
    let notify = notify_lists(&file, flags)?;
    if let Some((zone, _)) = notify.iter().find(|(zone, _)| !served(zone)) {
        return Err(ConfigError::UnknownZone {
            what: "notify",
            zone: zone.clone(),
        });
    }
    cfg.allow = allow;
    cfg.notify = notify;
    Ok(cfg)
}

/// The file's NOTIFY, IXFR history and incoming-transfer settings over the defaults,
/// each checked.
fn settings(file: &FileTransfer) -> Result<TransferConfig, ConfigError> {
    let d = TransferConfig::default();
    let mut cfg = TransferConfig {
        notify_retries: file.notify_retries.unwrap_or(d.notify_retries),
        ixfr_history: file.ixfr_history.unwrap_or(d.ixfr_history),
        ixfr_history_bytes: file.ixfr_history_bytes.unwrap_or(d.ixfr_history_bytes),
        ..d
    };
    if let Some(t) = &file.notify_timeout {
        cfg.notify_timeout = humantime::parse_duration(t).map_err(|e| ConfigError::Value {
            key: "transfer.notify_timeout",
            value: t.clone(),
            message: format!("{e} (write e.g. \"1s\")"),
        })?;
    }
    if cfg.notify_retries == 0 || cfg.notify_retries > 20 {
        return Err(ConfigError::Value {
            key: "transfer.notify_retries",
            value: cfg.notify_retries.to_string(),
            message: "between 1 and 20: each retry doubles the wait".into(),
        });
    }
    cfg.in_limits = InLimits {
        max_bytes: file.in_max_bytes.unwrap_or(d.in_limits.max_bytes),
        max_records: file.in_max_records.unwrap_or(d.in_limits.max_records),
    };
    for (key, value) in [
        ("transfer.in_max_bytes", cfg.in_limits.max_bytes),
        ("transfer.in_max_records", cfg.in_limits.max_records as u64),
    ] {
        if value == 0 {
            return Err(ConfigError::Value {
                key,
                value: value.to_string(),
                message: "must be at least 1 (it bounds one incoming transfer)".into(),
            });
        }
    }
    if cfg.notify_timeout.is_zero() || cfg.notify_timeout > Duration::from_secs(30) {
        return Err(ConfigError::Value {
            key: "transfer.notify_timeout",
            value: file.notify_timeout.clone().unwrap_or_default(),
            message: "between 1ms and 30s".into(),
        });
    }
    Ok(cfg)
}

/// The file's `[[transfer.secondary]]` and `--secondary` flags; none may be a zone
/// served from a file, nor named twice.
fn secondaries(
    file: &FileTransfer,
    flags: &TransferFlags,
    file_zones: &[Name],
) -> Result<Vec<SecondarySpec>, ConfigError> {
    let mut given: Vec<(String, SocketAddr, Option<Name>)> = Vec::new();
    for s in &file.secondary {
        let key = match &s.key {
            Some(k) => Some(Name::parse_absolute(k).map_err(|e| ConfigError::Value {
                key: "transfer.secondary.key",
                value: k.clone(),
                message: e.to_string(),
            })?),
            None => None,
        };
        given.push((s.origin.clone(), s.primary, key));
    }
    for f in &flags.secondary {
        let (z, rest) = split_flag("--secondary", f)?;
        let (addr, key) = addr_and_key("--secondary", rest)?;
        given.push((z.to_string(), addr, key));
    }
    let mut out: Vec<SecondarySpec> = Vec::new();
    for (z, primary, key) in given {
        let origin = zone_name(&z)?;
        if file_zones.contains(&origin) || out.iter().any(|s| s.origin == origin) {
            return Err(ConfigError::DuplicateSecondary(origin));
        }
        out.push(SecondarySpec {
            origin,
            primary,
            key,
        });
    }
    Ok(out)
}

/// Adds `item` to `zone`'s list, keeping zones in the order first named.
fn add_to<T>(lists: &mut Vec<(Name, Vec<T>)>, zone: Name, item: T) {
    match lists.iter_mut().find(|(z, _)| *z == zone) {
        Some((_, items)) => items.push(item),
        None => lists.push((zone, vec![item])),
    }
}

/// Who may transfer each zone: the file's `[transfer.allow]` and `--allow-transfer`.
fn allow_lists(
    file: &FileTransfer,
    flags: &TransferFlags,
) -> Result<Vec<(Name, Vec<AclEntry>)>, ConfigError> {
    let mut allow = Vec::new();
    for (z, entries) in &file.allow {
        let zone = zone_name(z)?;
        for e in entries {
            let entry = AclEntry::parse(e).map_err(|message| ConfigError::Value {
                key: "transfer.allow",
                value: format!("{z} = {e}"),
                message,
            })?;
            add_to(&mut allow, zone.clone(), entry);
        }
    }
    for f in &flags.allow {
        let (z, rest) = split_flag("--allow-transfer", f)?;
        let zone = zone_name(z)?;
        for e in rest.split(',') {
            let entry = AclEntry::parse(e).map_err(|message| ConfigError::Syntax {
                flag: "--allow-transfer",
                value: f.clone(),
                message,
            })?;
            add_to(&mut allow, zone.clone(), entry);
        }
    }
    Ok(allow)
}

/// Whom each zone's changes are announced to: the file's `[transfer.notify]` and
/// `--notify`.
fn notify_lists(
    file: &FileTransfer,
    flags: &TransferFlags,
) -> Result<Vec<(Name, Vec<NotifyTarget>)>, ConfigError> {
    let mut notify = Vec::new();
    for (z, targets) in &file.notify {
        let zone = zone_name(z)?;
        for t in targets {
            let (addr, key) = addr_and_key("transfer.notify", t)?;
            add_to(&mut notify, zone.clone(), NotifyTarget { addr, key });
        }
    }
    for f in &flags.notify {
        let (z, rest) = split_flag("--notify", f)?;
        let (addr, key) = addr_and_key("--notify", rest)?;
        add_to(&mut notify, zone_name(z)?, NotifyTarget { addr, key });
    }
    Ok(notify)
}
