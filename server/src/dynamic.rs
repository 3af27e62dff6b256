//! Dynamic update at run time: the keys and per-zone policies from the configuration, one
//! task per updatable zone that applies its updates in order, makes each durable in the
//! zone's journal before answering, and swaps the new snapshot into the catalog; zone
//! files written back and journals compacted; hand edits merged as a difference.
//!
//! Order for each update (RFC 2136 §3.5: stable storage before the response): check and
//! apply it to the zone's records ([`crate::update`]) → build the new snapshot → append
//! the changeset to the journal and wait for its fsync → swap the snapshot in → answer.
//! Updates that arrive while one is being processed are taken together: each is checked
//! against the records as the previous ones left them, their journal records share one
//! fsync (group commit) and one snapshot build, and they are answered once that is done.
//! If an append fails, that update and every later one of the batch are taken back out
//! and answered SERVFAIL (they were checked against state that is not durable); the
//! journal then refuses further appends until musterd restarts and recovers it.
//!
//! On start each updatable zone is its zone file plus the journal's changesets that chain
//! on from the file's serial (RFC 1982). After `writeback_changes` changesets, or
//! `writeback_interval` after the first unsaved one, the zone file is written back
//! atomically (temp file, fsync, rename, fsync the directory) and the journal rewritten
//! to the last `journal_history` changesets, which all precede the file's serial.
//!
//! Hand edits (SIGHUP, or the file watcher) are applied as a three-way difference: what
//! the edit changed relative to the file as musterd last wrote or read it is applied to
//! the served zone, so updates made since stay; the serial becomes max(file, served) + 1
//! and the merged zone is written back at once.
//!
//! Limitations: keys and policies are read at start only (SIGHUP reloads zone data, not
//! keys); the zone file is rewritten in musterd's own layout (comments and `$INCLUDE`s of
//! an updatable zone are not kept).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::answer::Responder;
use crate::catalog::Catalog;
use crate::changeset::Changeset;
use crate::config::ZoneSpec;
use crate::journal::{self, Journal, JournalError};
use crate::name::Name;
use crate::rr::type_from_name;
use crate::stats::Stats;
use crate::tsig::{self, KeyRing};
use crate::update::{
    self, Grant, Limits, NameMatch, Policy, Reason, RecordSet, TypeMatch, ZoneData,
};
use crate::wire::{opcode, rcode};
use crate::zone::Zone;

/// Where journals live unless configured (the unit's `StateDirectory=musterd`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/musterd";

// ---------------------------------------------------------------------------------------
// Configuration

/// The resolved dynamic-update configuration.
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    pub keys: Arc<KeyRing>,
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
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            zones: Vec::new(),
            limits: Limits::default(),
            writeback_changes: 100,
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
        source: crate::name::NameError,
    },
}

/// `[[key]]`: a TSIG key written inline.
#[derive(Debug, Deserialize)]
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

fn absolute(text: &str) -> Result<Name, ConfigError> {
    let abs = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::parse(&abs, None).map_err(|source| ConfigError::Name {
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
        if crate::gate::etcd_srv_owner(&owner).is_none() {
            return Err(format!(
                "srv {owner} is not an etcd SRV owner name (write e.g. \"_etcd-server-ssl._tcp\")"
            ));
        }
        srv_owners.push(owner);
    }
    Ok(NameMatch::Host { host, srv_owners })
}

/// Loads the keys and checks every policy against them and the served zones.
pub fn resolve(
    src: Sources,
    zones: &[ZoneSpec],
    file_dir: Option<&Path>,
) -> Result<UpdateConfig, ConfigError> {
    let mut keys = KeyRing::new();
    for f in &src.key_files {
        let path = match file_dir {
            Some(d) if f.is_relative() => d.join(f),
            _ => f.clone(),
        };
        keys.load_file(&path)?;
    }
    for (i, k) in src.keys.iter().enumerate() {
        let key = tsig::Key::from_config(&k.name, &k.algorithm, &k.secret)?;
        keys.insert(
            key,
            tsig::Location {
                source: "[[key]] in the config".into(),
                line: Some(i as u32 + 1),
            },
        )?;
    }
    let mut policies: Vec<(Name, Policy)> = Vec::new();
    let policy_of =
        |policies: &mut Vec<(Name, Policy)>, zone: &str| -> Result<usize, ConfigError> {
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
        };
    let key_name = |zone: &str, k: &str, keys: &KeyRing| -> Result<Name, ConfigError> {
        let n = absolute(k)?;
        if keys.get(&n).is_none() {
            return Err(ConfigError::UnknownKey {
                zone: zone.into(),
                key: k.into(),
            });
        }
        Ok(n.to_lowercase())
    };
    for (zone, names) in &src.allow {
        let i = policy_of(&mut policies, zone)?;
        for k in names {
            let key = key_name(zone, k, &keys)?;
            policies[i].1.grants.push(Grant {
                key,
                names: NameMatch::Zone,
                types: TypeMatch::All,
            });
        }
    }
    for (zone, grants) in &src.grants {
        let i = policy_of(&mut policies, zone)?;
        let origin = policies[i].0.clone();
        for g in grants {
            let key = key_name(zone, &g.key, &keys)?;
            let bad = |message: String| ConfigError::Grant {
                zone: origin.clone(),
                message,
            };
            let name = || -> Result<Name, ConfigError> {
                let text = g
                    .name
                    .as_deref()
                    .ok_or_else(|| bad(format!("match = {:?} needs a name", g.match_)))?;
                let n = if text.ends_with('.') {
                    Name::parse(text, None)
                } else {
                    Name::parse(text, Some(&origin))
                }
                .map_err(|source| ConfigError::Name {
                    text: text.into(),
                    source,
                })?;
                if !n.is_subdomain_of(&origin) {
                    return Err(bad(format!("{n} is outside the zone")));
                }
                Ok(n)
            };
            let names = match g.match_.as_str() {
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
                "host" => host_match(&key, &origin, g.srv.as_deref().unwrap_or_default())
                    .map_err(&bad)?,
                other => {
                    return Err(bad(format!(
                    "match = {other:?}: expected zone, name, subdomain, wildcard, self, selfsub or host"
                )))
                }
            };
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
                        match type_from_name(t) {
                            Some(code) if !crate::rr::is_meta_or_query_only(code) => ts.push(code),
                            _ => return Err(bad(format!("unknown record type {t:?}"))),
                        }
                    }
                    TypeMatch::Only(ts)
                }
            };
            policies[i].1.grants.push(Grant { key, names, types });
        }
    }
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
    let positive =
        |key: &'static str, v: Option<usize>, default: usize| -> Result<usize, ConfigError> {
            match v {
                Some(0) => Err(ConfigError::Value {
                    key,
                    value: "0".into(),
                    message: "must be at least 1".into(),
                }),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
    Ok(UpdateConfig {
        keys: Arc::new(keys),
        state_dir: src.state_dir.unwrap_or(d.state_dir),
        zones: policies,
        limits: Limits {
            max_rrset_records: positive(
                "update.max_rrset_records",
                u.max_rrset_records,
                d.limits.max_rrset_records,
            )?,
            max_types_per_name: positive(
                "update.max_types_per_name",
                u.max_types_per_name,
                d.limits.max_types_per_name,
            )?,
            max_zone_names: positive(
                "update.max_zone_names",
                u.max_zone_names,
                d.limits.max_zone_names,
            )?,
            max_update_records: positive(
                "update.max_update_records",
                u.max_update_records,
                d.limits.max_update_records,
            )?,
        },
        writeback_changes: positive(
            "update.writeback_changes",
            u.writeback_changes,
            d.writeback_changes,
        )?,
        writeback_interval,
        journal_history: u.journal_history.unwrap_or(d.journal_history),
    })
}

// ---------------------------------------------------------------------------------------
// Metrics

/// Labels of refusals beyond [`Reason`]: TSIG failures and zones not served.
const EXTRA_REFUSALS: [&str; 2] = ["tsig", "notauth"];
/// Labels of failures: the update was acceptable but could not be made durable or served.
const FAILURES: [&str; 3] = ["journal", "build", "overload"];

/// Counters of dynamic updates (`musterd_updates_*`).
#[derive(Debug, Default)]
pub struct UpdateMetrics {
    accepted: AtomicU64,
    refused: [AtomicU64; Reason::ALL.len() + EXTRA_REFUSALS.len()],
    failed: [AtomicU64; FAILURES.len()],
}

impl UpdateMetrics {
    fn refused(&self, reason: Reason) {
        let i = Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    fn refused_extra(&self, label: &str) {
        let i = EXTRA_REFUSALS.iter().position(|l| *l == label).unwrap_or(0);
        self.refused[Reason::ALL.len() + i].fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, label: &str) {
        let i = FAILURES.iter().position(|l| *l == label).unwrap_or(0);
        self.failed[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = writeln!(out, "# HELP musterd_updates_accepted_total Dynamic updates answered NOERROR (durable before the answer).");
        let _ = writeln!(out, "# TYPE musterd_updates_accepted_total counter");
        let _ = writeln!(
            out,
            "musterd_updates_accepted_total {}",
            self.accepted.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP musterd_updates_refused_total Dynamic updates refused, nothing changed, by reason.");
        let _ = writeln!(out, "# TYPE musterd_updates_refused_total counter");
        let labels = Reason::ALL.iter().map(|r| r.label()).chain(EXTRA_REFUSALS);
        for (label, c) in labels.zip(&self.refused) {
            let _ = writeln!(
                out,
                "musterd_updates_refused_total{{reason=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(out, "# HELP musterd_updates_failed_total Dynamic updates answered SERVFAIL and not applied, by reason.");
        let _ = writeln!(out, "# TYPE musterd_updates_failed_total counter");
        for (label, c) in FAILURES.iter().zip(&self.failed) {
            let _ = writeln!(
                out,
                "musterd_updates_failed_total{{reason=\"{label}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Runtime

/// Why dynamic update could not start for a zone.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("zone {0} takes updates but is not loaded")]
    NotLoaded(Name),
    #[error("zone {zone}: {source}")]
    Journal {
        zone: Name,
        #[source]
        source: JournalError,
    },
    #[error(
        "zone {zone}: the journal {} does not continue the zone file: {message}; move the \
         journal aside to serve the zone file without its updates",
        journal.display()
    )]
    Replay {
        zone: Name,
        journal: PathBuf,
        message: String,
    },
    #[error(
        "zone {zone}: musterd's copy of the zone file {} cannot be read: {message}; move it \
         aside together with the journal to serve the zone file alone",
        path.display()
    )]
    Base {
        zone: Name,
        path: PathBuf,
        message: String,
    },
    #[error("zone {zone}: the zone with its journal applied does not build: {message}")]
    Build { zone: Name, message: String },
}

/// How an update ended, for the response.
struct Answer {
    rcode: u16,
}

enum Command {
    Update {
        req: update::Request,
        signer: Name,
        reply: oneshot::Sender<Answer>,
    },
    Reload {
        force: bool,
        reply: oneshot::Sender<bool>,
    },
}

/// A UDP update handed over by a worker thread, answered from the runtime.
struct UdpJob {
    pkt: Vec<u8>,
    peer: SocketAddr,
    sock: Arc<UdpSocket>,
}

/// Dynamic update for every zone that takes it; shared with the transports.
pub struct Updates {
    keys: Arc<KeyRing>,
    zones: HashMap<Name, mpsc::Sender<Command>>,
    catalog: Arc<ArcSwap<Catalog>>,
    metrics: Arc<UpdateMetrics>,
    max_udp_payload: u16,
    udp_tx: mpsc::Sender<UdpJob>,
    pending: Mutex<Option<(mpsc::Receiver<UdpJob>, Vec<ZoneWorker>)>>,
}

/// UDP updates waiting for the runtime; more are dropped (the client retries).
const UDP_QUEUE: usize = 4096;
/// Updates waiting for one zone's task.
const ZONE_QUEUE: usize = 4096;
/// Most updates taken into one batch.
const BATCH_MAX: usize = 256;
/// Quiet time after the last change before a zone's answers are precompiled again.
const PRECOMPILE_QUIET: Duration = Duration::from_millis(200);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Updates {
    /// Opens the journal of every updatable zone, applies it to the zone as loaded from
    /// its file and swaps the result into `catalog`. Call before serving; then
    /// [`Updates::start`] inside the runtime.
    pub fn open(
        config: &UpdateConfig,
        specs: &[ZoneSpec],
        catalog: Arc<ArcSwap<Catalog>>,
        responder: Responder,
        stats: Arc<Stats>,
    ) -> Result<Updates, OpenError> {
        let (udp_tx, udp_rx) = mpsc::channel(UDP_QUEUE);
        let metrics = stats.updates.clone();
        let mut zones = HashMap::new();
        let mut workers = Vec::new();
        for (origin, policy) in &config.zones {
            let spec = specs
                .iter()
                .find(|s| s.origin.eq_ignore_case(origin))
                .cloned()
                .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
            let zone = catalog
                .load()
                .get(origin)
                .cloned()
                .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
            let (tx, rx) = mpsc::channel(ZONE_QUEUE);
            let worker = ZoneWorker::open(
                config,
                spec,
                policy.clone(),
                &zone,
                rx,
                &catalog,
                responder.clone(),
                stats.clone(),
            )?;
            zones.insert(origin.to_lowercase(), tx);
            workers.push(worker);
        }
        Ok(Updates {
            keys: config.keys.clone(),
            zones,
            catalog,
            metrics,
            max_udp_payload: responder.config.max_udp_payload,
            udp_tx,
            pending: Mutex::new(Some((udp_rx, workers))),
        })
    }

    /// The TSIG keys, for signed queries.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The zones that take updates (lower-cased).
    pub fn origins(&self) -> Vec<Name> {
        self.zones.keys().cloned().collect()
    }

    /// Starts the zone tasks and the UDP hand-over task. Call once, inside the runtime.
    pub fn start(self: &Arc<Self>) {
        let Some((mut udp_rx, workers)) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        for w in workers {
            tokio::spawn(w.run());
        }
        let me = self.clone();
        tokio::spawn(async move {
            while let Some(job) = udp_rx.recv().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let reply = me.handle(&job.pkt).await;
                    if let Err(e) = job.sock.send_to(&reply, job.peer) {
                        tracing::debug!(peer = %job.peer, "udp update reply: {e}");
                    }
                });
            }
        });
    }

    /// Hands an UPDATE received by a UDP worker thread to the runtime; the reply is sent
    /// from there through `sock`. Never blocks: when the queue is full the packet is
    /// dropped and counted, and the client retries.
    pub fn submit_udp(&self, pkt: &[u8], peer: SocketAddr, sock: &Arc<UdpSocket>) {
        let job = UdpJob {
            pkt: pkt.to_vec(),
            peer,
            sock: sock.clone(),
        };
        if self.udp_tx.try_send(job).is_err() {
            self.metrics.failed("overload");
        }
    }

    /// Answers one UPDATE message (either transport).
    pub async fn handle(&self, pkt: &[u8]) -> Vec<u8> {
        let (id, copy, zone_section) = update::echo_of(pkt);
        let edns = update::parse(pkt)
            .ok()
            .filter(|r| r.edns)
            .map(|_| self.max_udp_payload);
        let plain = |rc: u16| update::response(opcode::UPDATE, id, copy, zone_section, rc, edns);
        let now = unix_now();
        let verified = match tsig::verify_request(pkt, &self.keys, now) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.refused_extra("tsig");
                tracing::info!("update refused: {e}");
                let mut msg = plain(e.rcode());
                if let Some(t) = e.response() {
                    let _ = tsig::sign_response(&mut msg, &t, now);
                }
                return msg;
            }
        };
        let finish = |rc: u16| {
            let mut msg = plain(rc);
            if let Some(v) = &verified {
                if let Err(e) = tsig::sign_response(&mut msg, &v.response(), unix_now()) {
                    tracing::warn!("cannot sign the update response: {e}");
                }
            }
            msg
        };
        let req = match update::parse(pkt) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.refused(Reason::Format);
                tracing::info!("update refused: FORMERR: {e}");
                return finish(rcode::FORMERR);
            }
        };
        let Some(tx) = self.zones.get(&req.zone.to_lowercase()) else {
            // RFC 2136 §3.1.1: a zone we do not serve is NOTAUTH; one we serve that takes
            // no updates is refused like an update without permission.
            let served =
                req.zclass == crate::rr::class::IN && self.catalog.load().get(&req.zone).is_some();
            if served {
                self.metrics.refused(Reason::Policy);
                tracing::info!(zone = %req.zone, "update refused: the zone takes no updates");
                return finish(rcode::REFUSED);
            }
            self.metrics.refused_extra("notauth");
            return finish(update::update_rcode::NOTAUTH);
        };
        if req.zclass != crate::rr::class::IN {
            self.metrics.refused_extra("notauth");
            return finish(update::update_rcode::NOTAUTH);
        }
        let Some(v) = &verified else {
            self.metrics.refused(Reason::Unsigned);
            tracing::info!(zone = %req.zone, "update refused: not signed (TSIG is required)");
            return finish(rcode::REFUSED);
        };
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Update {
            req,
            signer: v.key.name.clone(),
            reply,
        };
        if tx.send(cmd).await.is_err() {
            self.metrics.failed("overload");
            return finish(rcode::SERVFAIL);
        }
        match rx.await {
            Ok(a) => finish(a.rcode),
            Err(_) => {
                self.metrics.failed("overload");
                finish(rcode::SERVFAIL)
            }
        }
    }

    /// Reloads the zone files of the updatable zones: all of them (`force`, SIGHUP) or
    /// those whose file changed (the watcher). Returns how many failed.
    pub async fn reload(&self, force: bool) -> usize {
        let mut waits = Vec::new();
        for tx in self.zones.values() {
            let (reply, rx) = oneshot::channel();
            if tx.send(Command::Reload { force, reply }).await.is_ok() {
                waits.push(rx);
            }
        }
        let mut failed = 0;
        for w in waits {
            if !w.await.unwrap_or(false) {
                failed += 1;
            }
        }
        failed
    }
}

/// musterd's copy of an updatable zone's file, beside its journal.
fn base_path(state_dir: &Path, zone: &Name) -> PathBuf {
    state_dir.join(format!("{}.zone", journal::file_name(zone)))
}

/// The first line of a zone file musterd writes: what it is, and a checksum of the rest,
/// by which [`is_unedited`] tells musterd's own output from a hand edit.
const STAMP: &str =
    "; written by musterd; edits are merged with dynamic updates as a difference; crc32c ";

/// `text` with the stamp line in front.
fn stamp(text: &str) -> String {
    format!("{STAMP}{:08x}\n{text}", crc32c::crc32c(text.as_bytes()))
}

/// True when `text` is exactly what musterd wrote.
fn is_unedited(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(STAMP) else {
        return false;
    };
    let Some((crc, body)) = rest.split_once('\n') else {
        return false;
    };
    u32::from_str_radix(crc, 16).is_ok_and(|c| c == crc32c::crc32c(body.as_bytes()))
}

/// What a background write-back reports.
struct Written {
    serial: u32,
    prints: RecordSet,
    file_print: Fingerprint,
    result: Result<(), JournalError>,
}

/// A file's identity for change detection: inode, size, modification and change times.
type Fingerprint = Option<(u64, u64, i64, i64, i64)>;

fn fingerprint(path: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// One updatable zone's task and everything it owns.
struct ZoneWorker {
    origin: Name,
    file: PathBuf,
    policy: Policy,
    limits: Limits,
    writeback_changes: usize,
    writeback_interval: Duration,
    journal_history: usize,
    /// The zone as served (and as durable: nothing here is ahead of the journal between
    /// batches).
    data: ZoneData,
    journal: Journal,
    /// The zone file's records as musterd last read or wrote it (see
    /// [`ZoneData::hand_edit`]).
    written: RecordSet,
    file_print: Fingerprint,
    /// The latest changesets, oldest first, at most `journal_history` of them once the
    /// file is written back.
    history: VecDeque<Changeset>,
    /// Changesets not yet in the zone file.
    unsaved: usize,
    unsaved_since: Option<Instant>,
    precompile_after: Option<Instant>,
    /// A write-back running off the task, and where it reports.
    writing: bool,
    written_tx: mpsc::UnboundedSender<Written>,
    written_rx: mpsc::UnboundedReceiver<Written>,
    /// The serial the zone file and the base copy were last written with.
    written_serial: u32,
    rx: mpsc::Receiver<Command>,
    catalog: Arc<ArcSwap<Catalog>>,
    responder: Responder,
    stats: Arc<Stats>,
    metrics: Arc<UpdateMetrics>,
}

impl ZoneWorker {
    #[allow(clippy::too_many_arguments)]
    fn open(
        config: &UpdateConfig,
        spec: ZoneSpec,
        policy: Policy,
        loaded: &Zone,
        rx: mpsc::Receiver<Command>,
        catalog: &Arc<ArcSwap<Catalog>>,
        responder: Responder,
        stats: Arc<Stats>,
    ) -> Result<ZoneWorker, OpenError> {
        let origin = loaded.origin.clone();
        let file = spec
            .file
            .clone()
            .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
        let file_print = fingerprint(&file);
        let file_data = ZoneData::from_zone(loaded);
        // musterd's own copy of the zone file as it last wrote it: the base that the
        // journal continues, and against which an edit of the operator's file is a
        // difference even when musterd was down (or killed) while it was made.
        let base = base_path(&config.state_dir, &origin);
        std::fs::create_dir_all(&config.state_dir).map_err(|e| OpenError::Base {
            zone: origin.clone(),
            path: config.state_dir.clone(),
            message: e.to_string(),
        })?;
        let from_base = match std::fs::read_to_string(&base) {
            Ok(text) => Some(
                crate::zonefile::parse_str(&text, &base, &origin)
                    .map_err(|e| e.to_string())
                    .and_then(|r| ZoneData::from_records(&origin, r).map_err(|e| e.to_string()))
                    .map_err(|message| OpenError::Base {
                        zone: origin.clone(),
                        path: base.clone(),
                        message,
                    })?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(OpenError::Base {
                    zone: origin.clone(),
                    path: base.clone(),
                    message: e.to_string(),
                })
            }
        };
        let has_base = from_base.is_some();
        if !has_base {
            // First start with updates: the base is the operator's file as it is (the
            // journal, if any, continues it).
            journal::write_atomically(&base, file_data.to_zone_file().as_bytes()).map_err(
                |source| OpenError::Journal {
                    zone: origin.clone(),
                    source,
                },
            )?;
        }
        let mut data = from_base.unwrap_or_else(|| file_data.clone());
        let written = data.fingerprints();
        let (journal, recovery) =
            Journal::open(&config.state_dir, &origin).map_err(|source| OpenError::Journal {
                zone: origin.clone(),
                source,
            })?;
        let journal_path = journal.path().to_path_buf();
        let replay_error = |message: String| OpenError::Replay {
            zone: origin.clone(),
            journal: journal_path.clone(),
            message,
        };
        let changesets = recovery.changesets;
        let file_serial = data.serial();
        let start = changesets.iter().position(|c| c.from_serial == file_serial);
        let mut replayed = 0;
        let mut discard = false;
        match (start, changesets.last()) {
            (Some(i), _) => {
                for cs in &changesets[i..] {
                    data.apply_changeset(cs)
                        .map_err(|e| replay_error(e.to_string()))?;
                    replayed += 1;
                }
            }
            (None, None) => {}
            (None, Some(last)) if last.to_serial == file_serial => {}
            (None, Some(last)) if update::serial_gt(file_serial, last.to_serial) => {
                // Edited while musterd was stopped, with a raised serial: the file wins.
                tracing::warn!(
                    zone = %origin,
                    "the zone file's serial {file_serial} is above the journal's last serial {}: \
                     the file was edited while musterd was stopped; serving the file and \
                     discarding the journal's history",
                    last.to_serial
                );
                discard = true;
            }
            (None, Some(last)) => {
                return Err(replay_error(format!(
                    "the zone file has serial {file_serial}, and no journal record starts there \
                     (the journal ends at serial {})",
                    last.to_serial
                )))
            }
        }
        if discard {
            journal
                .rewrite_blocking(&[])
                .map_err(|source| OpenError::Journal {
                    zone: origin.clone(),
                    source,
                })?;
        }
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let written_serial = data.serial();
        let history: VecDeque<Changeset> = if discard {
            VecDeque::new()
        } else {
            changesets.into()
        };
        let mut w = ZoneWorker {
            origin: origin.clone(),
            file,
            policy,
            limits: config.limits,
            writeback_changes: config.writeback_changes,
            writeback_interval: config.writeback_interval,
            journal_history: config.journal_history,
            data,
            journal,
            written,
            file_print,
            history,
            unsaved: replayed,
            unsaved_since: (replayed > 0).then(Instant::now),
            precompile_after: None,
            writing: false,
            written_tx,
            written_rx,
            written_serial,
            rx,
            catalog: catalog.clone(),
            responder,
            stats: stats.clone(),
            metrics: stats.updates.clone(),
        };
        // An edit of the operator's file that musterd has not seen (made while it was
        // down): applied as a difference, journaled, and written back now.
        let mut edited = false;
        // A file musterd wrote itself is no edit, even when a crash came between writing
        // the base copy and it (the base is written first).
        let unedited = std::fs::read_to_string(&w.file).is_ok_and(|t| is_unedited(&t));
        if has_base && !unedited {
            if let Some(cs) = w.data.hand_edit(&w.written, &file_data) {
                let mut next = w.data.clone();
                next.apply_changeset(&cs)
                    .map_err(|e| replay_error(format!("the hand edit does not apply: {e}")))?;
                w.journal
                    .append_blocking(&cs)
                    .map_err(|source| OpenError::Journal {
                        zone: origin.clone(),
                        source,
                    })?;
                tracing::info!(zone = %origin, serial = cs.to_serial, "zone file edited while musterd was stopped: applied as a difference against the journaled zone");
                w.data = next;
                w.remember(cs);
                edited = true;
            }
        }
        // The base copy may be ahead of the operator's file (killed between writing the
        // two): then the loaded snapshot is not what was acknowledged, and is replaced.
        let ahead = has_base && !edited && replayed == 0 && w.written != file_data.fingerprints();
        if replayed > 0 || edited || ahead {
            let zone = w.build().map_err(|message| OpenError::Build {
                zone: origin.clone(),
                message,
            })?;
            tracing::info!(zone = %origin, changesets = replayed, serial = zone.serial(), "journal replayed");
            w.publish(zone);
            w.precompile_now();
        }
        if edited || ahead {
            // Written now so that the operator's file, the base copy and the journal agree.
            w.write_back_blocking()
                .map_err(|source| OpenError::Journal {
                    zone: origin.clone(),
                    source,
                })?;
        }
        Ok(w)
    }

    /// The configured cluster sizes of the served snapshot, which its rebuilds keep.
    fn gate_sizes(&self) -> Vec<(Name, u32)> {
        self.catalog
            .load()
            .get(&self.origin)
            .map(|z| z.gate_sizes().to_vec())
            .unwrap_or_default()
    }

    fn build(&self) -> Result<Zone, String> {
        let records = self.data.to_records();
        match Zone::build_with_sizes(&self.origin, records, &self.gate_sizes()) {
            Ok((zone, _warnings)) => Ok(zone),
            Err(errors) => Err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")),
        }
    }

    /// Builds the snapshot off the runtime's reactor (it is O(zone size)).
    fn build_blocking(&self) -> Result<Zone, String> {
        tokio::task::block_in_place(|| self.build())
    }

    fn publish(&mut self, zone: Zone) {
        let zone = Arc::new(zone);
        let before = self.catalog.load().get(&self.origin).cloned();
        self.catalog.rcu(|current| {
            let mut next = (**current).clone();
            next.insert(zone.clone());
            next
        });
        // An update can open or close a completeness gate (a host registering its
        // address): log it and keep the gate metrics in step, as a reload does.
        crate::gate::announce(&self.stats, &self.origin, before.as_deref(), &zone);
        self.precompile_after = Some(Instant::now() + PRECOMPILE_QUIET);
    }

    fn precompile_now(&mut self) {
        self.precompile_after = None;
        let catalog = self.catalog.load();
        let Some(zone) = catalog.get(&self.origin).cloned() else {
            return;
        };
        let origins = catalog.zones().map(|z| z.origin.clone()).collect();
        crate::loader::precompile_in_background(
            vec![zone],
            self.responder.clone(),
            origins,
            self.stats.clone(),
        );
    }

    fn next_timer(&self) -> Option<Instant> {
        let writeback = self.unsaved_since.map(|t| t + self.writeback_interval);
        match (writeback, self.precompile_after) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn run(mut self) {
        loop {
            let timer = self.next_timer();
            let sleep = async {
                match timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(c) => self.command(c).await,
                    None => return,
                },
                Some(w) = self.written_rx.recv() => self.written(w).await,
                _ = sleep => self.on_timer().await,
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.precompile_after.is_some_and(|t| t <= now) {
            self.precompile_now();
        }
        if self
            .unsaved_since
            .is_some_and(|t| t + self.writeback_interval <= now)
        {
            self.start_write_back();
        }
    }

    async fn command(&mut self, first: Command) {
        let mut batch = Vec::new();
        let mut reload = None;
        match first {
            Command::Update { req, signer, reply } => batch.push((req, signer, reply)),
            Command::Reload { force, reply } => reload = Some((force, reply)),
        }
        while reload.is_none() && batch.len() < BATCH_MAX {
            match self.rx.try_recv() {
                Ok(Command::Update { req, signer, reply }) => batch.push((req, signer, reply)),
                Ok(Command::Reload { force, reply }) => reload = Some((force, reply)),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            self.updates(batch).await;
        }
        if let Some((force, reply)) = reload {
            let ok = self.reload(force).await;
            let _ = reply.send(ok);
        }
    }

    /// Processes a batch of updates: see the module documentation for the order.
    async fn updates(&mut self, batch: Vec<(update::Request, Name, oneshot::Sender<Answer>)>) {
        let mut results: Vec<(
            Result<update::Applied, update::Rejection>,
            oneshot::Sender<Answer>,
        )> = Vec::new();
        // (build, journal, swap, process) durations for the debug log.
        let mut timing = (
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
        );
        let started = Instant::now();
        for (req, signer, reply) in batch {
            let r = update::process(
                &mut self.data,
                &req,
                Some(&signer),
                &self.policy,
                &self.limits,
            );
            if let Err(rej) = &r {
                tracing::info!(zone = %self.origin, key = %signer, rcode = rej.rcode, "update refused: {}", rej.detail);
            }
            results.push((r, reply));
        }
        timing.3 = started.elapsed();
        let changed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| matches!(r, Ok(a) if a.changeset.is_some()))
            .map(|(i, _)| i)
            .collect();
        // Everything from `fail_from` on is taken back out and answered SERVFAIL.
        let mut fail_from: Option<(usize, &'static str)> = None;
        let mut zone = None;
        if !changed.is_empty() {
            let t = Instant::now();
            let built = self.build_blocking();
            timing.0 = t.elapsed();
            match built {
                Ok(z) => zone = Some(z),
                Err(message) => {
                    tracing::error!(zone = %self.origin, "the updated zone does not build, the updates are not applied (a bug: please report it): {message}");
                    fail_from = Some((changed[0], "build"));
                }
            }
        }
        if fail_from.is_none() && !changed.is_empty() {
            let sets: Vec<&Changeset> = changed
                .iter()
                .map(|&i| match &results[i].0 {
                    Ok(a) => a.changeset.as_ref().expect("filtered on a changeset"),
                    Err(_) => unreachable!("filtered on Ok"),
                })
                .collect();
            let t = Instant::now();
            let outcomes = append_in_order(&self.journal, &sets).await;
            timing.1 = t.elapsed();
            if let Some(k) = outcomes.iter().position(Result::is_err) {
                if let Err(e) = &outcomes[k] {
                    tracing::error!(zone = %self.origin, "journal append failed, the update is answered SERVFAIL and not applied: {e}");
                }
                fail_from = Some((changed[k], "journal"));
            }
        }
        if let Some((from, why)) = fail_from {
            // Newest first, so each undo finds the records as its update left them.
            for i in (from..results.len()).rev() {
                let (r, _) = &mut results[i];
                if let Ok(applied) = std::mem::replace(r, Err(rejection_placeholder())) {
                    applied.undo(&mut self.data);
                }
            }
            for (r, reply) in results.drain(from..) {
                let _ = r;
                self.metrics.failed(why);
                let _ = reply.send(Answer {
                    rcode: rcode::SERVFAIL,
                });
            }
            zone = None;
            let still_changed = results
                .iter()
                .any(|(r, _)| matches!(r, Ok(a) if a.changeset.is_some()));
            if still_changed {
                match self.build_blocking() {
                    Ok(z) => zone = Some(z),
                    Err(message) => {
                        tracing::error!(zone = %self.origin, "cannot rebuild the zone: {message}")
                    }
                }
            }
        }
        if let Some(z) = zone {
            let t = Instant::now();
            self.publish(z);
            timing.2 = t.elapsed();
        }
        tracing::debug!(
            zone = %self.origin,
            updates = results.len(),
            process_us = timing.3.as_micros() as u64,
            build_us = timing.0.as_micros() as u64,
            journal_us = timing.1.as_micros() as u64,
            swap_us = timing.2.as_micros() as u64,
            "update batch"
        );
        for (r, reply) in results {
            match r {
                Ok(applied) => {
                    if let Some(cs) = applied.changeset {
                        tracing::debug!(zone = %self.origin, serial = cs.to_serial, "update applied");
                        self.remember(cs);
                    }
                    self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Answer {
                        rcode: rcode::NOERROR,
                    });
                }
                Err(rej) => {
                    self.metrics.refused(rej.reason);
                    let _ = reply.send(Answer { rcode: rej.rcode });
                }
            }
        }
        if self.unsaved >= self.writeback_changes {
            self.start_write_back();
        }
    }

    /// Starts writing the served snapshot back to the zone file and the base copy on a
    /// blocking thread: on a large zone that takes longer than many updates, which go on
    /// meanwhile. [`ZoneWorker::written`] compacts the journal when it is done.
    fn start_write_back(&mut self) {
        if self.writing {
            return;
        }
        let Some(zone) = self.catalog.load().get(&self.origin).cloned() else {
            return;
        };
        // Not due again until this one reports (a failure sets a new time).
        self.unsaved_since = None;
        self.writing = true;
        let file = self.file.clone();
        let base = base_path(
            self.journal.path().parent().unwrap_or(Path::new(".")),
            &self.origin,
        );
        let tx = self.written_tx.clone();
        tokio::task::spawn_blocking(move || {
            let data = ZoneData::from_zone(&zone);
            let text = stamp(&data.to_zone_file());
            let result = journal::write_atomically(&base, text.as_bytes())
                .and_then(|()| journal::write_atomically(&file, text.as_bytes()));
            let _ = tx.send(Written {
                serial: data.serial(),
                prints: data.fingerprints(),
                file_print: fingerprint(&file),
                result,
            });
        });
    }

    /// A background write-back finished: compact the journal to what the file does not
    /// hold plus the history.
    async fn written(&mut self, w: Written) {
        self.writing = false;
        if let Err(e) = w.result {
            tracing::error!(zone = %self.origin, "cannot write the zone file back (the journal keeps every update; retrying later): {e}");
            self.unsaved_since = Some(Instant::now());
            return;
        }
        if !update::serial_gt(w.serial, self.written_serial) {
            return; // A hand edit wrote a newer version meanwhile.
        }
        self.written_serial = w.serial;
        self.file_print = w.file_print;
        self.written = w.prints;
        self.unsaved = self
            .history
            .iter()
            .filter(|c| update::serial_gt(c.to_serial, w.serial))
            .count();
        if self.unsaved > 0 {
            self.unsaved_since = Some(Instant::now());
        }
        let keep_from = self
            .history
            .len()
            .saturating_sub(self.journal_history.max(self.unsaved));
        self.history.drain(..keep_from);
        let keep: Vec<Changeset> = self.history.iter().cloned().collect();
        match self.journal.rewrite(&keep).await {
            Ok(()) => {
                tracing::info!(zone = %self.origin, serial = w.serial, file = %self.file.display(), "zone file written back, journal compacted")
            }
            Err(e) => {
                tracing::error!(zone = %self.origin, "cannot compact the journal (it keeps growing until this works): {e}")
            }
        }
    }

    fn remember(&mut self, cs: Changeset) {
        self.history.push_back(cs);
        self.unsaved += 1;
        self.unsaved_since.get_or_insert_with(Instant::now);
        // The journal holds the history too; bound what is kept in memory the same way,
        // but never drop what is not yet in the zone file.
        while self.history.len() > self.journal_history.max(self.unsaved) {
            self.history.pop_front();
        }
    }

    /// Writes the zone file back atomically and compacts the journal to the last
    /// `journal_history` changesets.
    async fn write_back(&mut self) {
        match tokio::task::block_in_place(|| self.write_back_blocking()) {
            Ok(()) => {
                tracing::info!(zone = %self.origin, serial = self.data.serial(), file = %self.file.display(), "zone file written back, journal compacted")
            }
            Err(e) => {
                tracing::error!(zone = %self.origin, "cannot compact the journal (it keeps growing until this works): {e}")
            }
        }
    }

    /// Writes the zone file and musterd's base copy atomically, then compacts the
    /// journal: in this order, so that a crash anywhere leaves a base copy that the
    /// journal continues (see [`ZoneWorker::open`]). A failure leaves the journal whole.
    fn write_back_blocking(&mut self) -> Result<(), JournalError> {
        let text = stamp(&self.data.to_zone_file());
        let base = base_path(
            self.journal.path().parent().unwrap_or(Path::new(".")),
            &self.origin,
        );
        for path in [&base, &self.file] {
            if let Err(e) = journal::write_atomically(path, text.as_bytes()) {
                self.unsaved_since = Some(Instant::now());
                return Err(e);
            }
        }
        self.file_print = fingerprint(&self.file);
        self.written = self.data.fingerprints();
        self.written_serial = self.data.serial();
        self.unsaved = 0;
        self.unsaved_since = None;
        while self.history.len() > self.journal_history {
            self.history.pop_front();
        }
        let keep: Vec<Changeset> = self.history.iter().cloned().collect();
        self.journal.rewrite_blocking(&keep)
    }

    /// Reloads the zone file, applying a hand edit as a difference. False on failure.
    async fn reload(&mut self, force: bool) -> bool {
        // A write-back in flight finishes first: it must not overwrite what this writes.
        if self.writing {
            if let Some(w) = self.written_rx.recv().await {
                self.written(w).await;
            }
        }
        let print = fingerprint(&self.file);
        if !force && print == self.file_print {
            return true;
        }
        let records = match crate::zonefile::parse_file(&self.file, &self.origin) {
            Ok(r) => r,
            Err(e) => {
                self.file_print = print;
                crate::stats::bump(&self.stats.reload_failures);
                tracing::error!("zone {}: {e}\n  the served version of the zone (with its updates) keeps serving", self.origin);
                return false;
            }
        };
        if let Err(errors) =
            Zone::build_with_sizes(&self.origin, records.clone(), &self.gate_sizes())
        {
            self.file_print = print;
            crate::stats::bump(&self.stats.reload_failures);
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ");
            tracing::error!("zone {}: {text}\n  the served version of the zone (with its updates) keeps serving", self.origin);
            return false;
        }
        self.file_print = print;
        let file = match ZoneData::from_records(&self.origin, records) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(zone = %self.origin, "{e}");
                return false;
            }
        };
        let Some(cs) = self.data.hand_edit(&self.written, &file) else {
            tracing::info!(zone = %self.origin, "zone file reread: no change against the served zone");
            self.written = file.fingerprints();
            return true;
        };
        let mut next = self.data.clone();
        if let Err(e) = next.apply_changeset(&cs) {
            tracing::error!(zone = %self.origin, "cannot apply the hand edit: {e}");
            return false;
        }
        let previous = std::mem::replace(&mut self.data, next);
        let zone = match self.build_blocking() {
            Ok(z) => z,
            Err(message) => {
                self.data = previous;
                crate::stats::bump(&self.stats.reload_failures);
                tracing::error!(zone = %self.origin, "the hand edit merged with the updates does not build: {message}");
                return false;
            }
        };
        if let Err(e) = self.journal.append(&cs).await {
            self.data = previous;
            crate::stats::bump(&self.stats.reload_failures);
            tracing::error!(zone = %self.origin, "cannot journal the hand edit, it is not applied: {e}");
            return false;
        }
        tracing::info!(
            zone = %self.origin,
            serial = cs.to_serial,
            removed = cs.removed.len() - 1,
            added = cs.added.len() - 1,
            "hand edit applied as a difference against the served zone"
        );
        crate::stats::bump(&self.stats.reloads);
        self.publish(zone);
        self.remember(cs);
        // Written at once, so that the file carries the served serial and the next edit
        // starts from what is served.
        self.write_back().await;
        true
    }
}

fn rejection_placeholder() -> update::Rejection {
    update::Rejection {
        rcode: rcode::SERVFAIL,
        reason: Reason::Format,
        detail: String::new(),
    }
}

/// One journal append in flight.
type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Appends `sets` to the journal in this order and waits for all of them: each append
/// is submitted (on its first poll) before the next, so the journal writes them in order,
/// and appends submitted together share one fsync.
async fn append_in_order(journal: &Journal, sets: &[&Changeset]) -> Vec<Result<(), JournalError>> {
    let mut futures: Vec<AppendFuture<'_>> = sets
        .iter()
        .map(|cs| Box::pin(journal.append(cs)) as AppendFuture<'_>)
        .collect();
    let mut out: Vec<Option<Result<(), JournalError>>> = (0..sets.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}
