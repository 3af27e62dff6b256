//! `muster-agent backup`: a consistent snapshot of the cluster through this member's
//! client URL (etcd's maintenance API, through `etcdctl snapshot save`), checked before
//! it counts, written to a snapshot store ([`crate::snapshot`]).
//!
//! Only the leader takes it: when every host runs the same timer or `--every` loop, one
//! snapshot per period is taken for the cluster, not one per host; the others say whom
//! they left it to (leader and membership come from the JSON gateway). The snapshot is
//! saved to a hidden `.part` file by etcdctl (gRPC: the JSON gateway's base64 chunks
//! made it about three times slower), then both hashes are computed (the file's
//! SHA-256, and etcd's integrity hash — the SHA-256 etcd appends to the database) and
//! `etcdctl snapshot status` must open it and give its revision and key count. Only then
//! is it renamed to `ID.db` and its metadata `ID.json` written. Old snapshots go by
//! `--keep` / `--keep-within`, never the newest.
//!
//! With `--every`, `--metrics-listen` serves the rounds by outcome and the newest
//! snapshot's age ([`crate::backup_metrics`]).
//!
//! Limitations: no object store (DEST is a directory: local disk or a network mount).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::etcd::{Client, Endpoint, EtcdError};
use crate::ids::EtcdId;
use crate::plan::{Plan, Start};
use crate::plan_file::{self, PLAN_FILE};
use crate::snapshot::{self, Meta, MetaMember, StoreError};
use crate::{notify, Error};

/// What `backup` does, checked.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    /// etcd's data dir, holding muster-plan.json (which says this member's client URL).
    pub data_dir: PathBuf,
    /// The snapshot directory, created if missing.
    pub to: PathBuf,
    /// Keep running and take a snapshot this often; None: one snapshot.
    pub every: Option<Duration>,
    /// Keep the newest N snapshots.
    pub keep: Option<usize>,
    /// Keep the snapshots younger than this.
    pub keep_within: Option<Duration>,
    /// The etcdctl program.
    pub etcdctl: String,
    /// With `every`: serve Prometheus metrics on this address.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS and authentication for etcd's client API.
    pub access: crate::etcd::Access,
}

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// etcd did not give a snapshot.
    #[error("backup failed: {0}")]
    Etcd(#[from] EtcdError),
    /// The store cannot be written, or the snapshot fails its checks.
    #[error("backup failed: {0}")]
    Store(#[from] StoreError),
    /// No leader: no consistent snapshot can be taken.
    #[error(
        "backup failed: {0} sees no leader (the cluster has no quorum); no snapshot was taken"
    )]
    NoLeader(String),
    /// The plan does not say this member's client URL.
    #[error("backup: {0}")]
    NoPlan(String),
}

/// What one round did.
#[derive(Debug)]
pub enum Round {
    /// A snapshot was saved (its metadata, the time it took, snapshots removed).
    Saved(Box<Meta>, Duration, Vec<String>),
    /// This member is not the leader.
    Skipped(String),
}

/// Runs `backup`: once, or every `--every` until killed.
pub fn run(args: &BackupConfig) -> Result<(), Error> {
    let dir = &args.data_dir;
    let plan = plan_file::load(dir)?.ok_or_else(|| {
        BackupError::NoPlan(format!(
            "{} is missing: start this member with muster-agent first (it says which member \
             this is and where its client URL is)",
            dir.join(PLAN_FILE).display()
        ))
    })?;
    let Some(every) = args.every else {
        report(&round(args, &plan)?);
        return Ok(());
    };
    say(&format!(
        "backup: every {} to {}",
        humantime::format_duration(every),
        args.to.display()
    ));
    let metrics = std::sync::Arc::new(crate::backup_metrics::Metrics::default());
    if let Some(addr) = args.metrics_listen {
        crate::backup_metrics::serve(addr, metrics.clone(), args.to.clone())
            .map_err(|e| Error::Usage(format!("--metrics-listen {addr}: {e}")))?;
    }
    loop {
        let started = Instant::now();
        use crate::backup_metrics::Outcome;
        match round(args, &plan) {
            Ok(r) => {
                metrics.count(match r {
                    Round::Saved(..) => Outcome::Saved,
                    Round::Skipped(_) => Outcome::Skipped,
                });
                report(&r)
            }
            // A failed round is logged and retried next period: a service must survive
            // a leader election or a full disk.
            Err(e) => {
                metrics.count(Outcome::Failed);
                say(&format!("error: {e}"))
            }
        }
        std::thread::sleep(every.saturating_sub(started.elapsed()));
    }
}

fn say(line: &str) {
    eprintln!("muster-agent: {line}");
    notify::status(line);
}

fn report(r: &Round) {
    match r {
        Round::Saved(m, took, removed) => {
            say(&format!(
                "backup: saved snapshot {} (cluster {}, revision {}, {} keys, {} bytes, sha256 {}) in {:.2}s",
                m.id,
                m.cluster_id,
                m.revision,
                m.total_keys,
                m.file_size,
                m.sha256,
                took.as_secs_f64()
            ));
            if !removed.is_empty() {
                say(&format!(
                    "backup: removed old snapshots {}",
                    removed.join(", ")
                ));
            }
        }
        Round::Skipped(why) => say(&format!("backup: skipped: {why}")),
    }
}

/// This member's own client URLs (dialled at its listen addresses).
fn own_endpoints(plan: &Plan) -> Vec<Endpoint> {
    let n = plan.advertise_client_urls.len();
    crate::plan::endpoints(plan).into_iter().take(n).collect()
}

fn srv_record(plan: &Plan) -> String {
    match &plan.start {
        Start::Join(j) => j.srv_record.clone(),
        _ => plan
            .cluster()
            .map(|c| c.srv_record.clone())
            .unwrap_or_default(),
    }
}

/// One round: leader check, snapshot, checks, store, garbage collection.
pub fn round(args: &BackupConfig, plan: &Plan) -> Result<Round, BackupError> {
    let own = own_endpoints(plan);
    let access = args.access.clone();
    let client = Client::new(own.clone(), access)?;
    // The first own URL that answers.
    let mut last = EtcdError::NoEndpoint;
    let mut found = None;
    for e in &own {
        match client.status_at(&e.url) {
            Ok(s) => {
                found = Some((e.url.clone(), s));
                break;
            }
            Err(err) => last = err,
        }
    }
    let (url, status) = found.ok_or(last)?;
    let endpoint = own
        .iter()
        .find(|e| e.url == url)
        .cloned()
        .unwrap_or(Endpoint {
            url: url.clone(),
            addrs: vec![],
        });
    if status.leader == EtcdId(0) {
        return Err(BackupError::NoLeader(url));
    }
    if status.leader != status.member_id {
        return Ok(Round::Skipped(format!(
            "{} ({}) is not the leader; leader {} takes the snapshot",
            plan.name,
            status.member_id.hex(),
            status.leader.hex()
        )));
    }
    let membership = client.list_at(&url)?;
    let started = Instant::now();
    let at = SystemTime::now();
    std::fs::create_dir_all(&args.to).map_err(|source| StoreError::Io {
        path: args.to.clone(),
        source,
    })?;
    let part = args
        .to
        .join(format!(".{}{}", plan.name, snapshot::PART_SUFFIX));
    let (sha, len) = match fetch(args, &endpoint, &part) {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
    };
    let st = match snapshot::status(&args.etcdctl, &part) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
    };
    let id = snapshot::make_id(at, st.revision, &sha);
    let meta = Meta {
        version: snapshot::META_VERSION,
        id: id.clone(),
        taken_at: humantime::format_rfc3339_seconds(at).to_string(),
        taken_from: plan.name.to_string(),
        srv_record: srv_record(plan),
        cluster_id: membership.cluster_id.hex(),
        members: membership
            .members
            .iter()
            .map(|m| MetaMember {
                name: m.name.clone(),
                id: m.id.hex(),
                peer_urls: m.peer_urls.clone(),
            })
            .collect(),
        revision: st.revision,
        total_keys: st.total_key,
        total_size: st.total_size,
        etcd_hash: st.hash,
        file_size: len,
        sha256: sha,
    };
    store(&args.to, &part, &meta)?;
    let took = started.elapsed();
    let removed = gc(args)?;
    Ok(Round::Saved(Box::new(meta), took, removed))
}

/// The URL etcdctl dials for `e`: by address for plain http (the member's name may only
/// be in the DNS the agent reads, not in the system resolver), by name with TLS (the
/// certificate names it).
fn dial_url(e: &Endpoint) -> String {
    match (url::Url::parse(&e.url), e.addrs.first()) {
        (Ok(mut u), Some(ip)) if u.scheme() == "http" => {
            let host = match ip {
                std::net::IpAddr::V4(a) => a.to_string(),
                std::net::IpAddr::V6(a) => format!("[{a}]"),
            };
            if u.set_host(Some(&host)).is_ok() {
                return u.as_str().trim_end_matches('/').to_string();
            }
            e.url.clone()
        }
        _ => e.url.clone(),
    }
}

/// `etcdctl snapshot save` into `part` (etcd's gRPC snapshot stream: about three times
/// faster than the JSON gateway, which encodes every chunk in base64), then both hashes;
/// refuses a file whose integrity hash fails.
fn fetch(args: &BackupConfig, e: &Endpoint, part: &Path) -> Result<(String, u64), BackupError> {
    let access = args.access.clone();
    let mut a = vec![
        format!("--endpoints={}", dial_url(e)),
        "--dial-timeout=5s".into(),
        // The whole save runs under the command timeout.
        "--command-timeout=1h".into(),
    ];
    for (flag, file) in [
        ("cacert", &access.ca_file),
        ("cert", &access.cert_file),
        ("key", &access.key_file),
    ] {
        if let Some(f) = file {
            a.push(format!("--{flag}={}", f.display()));
        }
    }
    a.extend(["snapshot".into(), "save".into(), part.display().to_string()]);
    // The password goes through the environment, never the argv (ps shows it).
    let env: Vec<(&str, String)> = match (&access.user, &access.password) {
        (Some(u), Some(p)) => vec![("ETCDCTL_USER", format!("{u}:{p}"))],
        _ => Vec::new(),
    };
    snapshot::etcdctl(&args.etcdctl, &a, &env, Duration::from_secs(3600))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(part, std::fs::Permissions::from_mode(0o600));
    }
    let (sha, len, trailer) = snapshot::hash_file(part)?;
    if !trailer {
        return Err(StoreError::Checksum {
            path: part.to_path_buf(),
            why: format!(
                "etcd's integrity hash does not match the {len} bytes received from {}",
                e.url
            ),
        }
        .into());
    }
    Ok((sha, len))
}

/// Renames the checked `.part` into place, then writes the metadata: a snapshot without
/// metadata is never read, so a crash between the two leaves nothing half-made.
fn store(dest: &Path, part: &Path, meta: &Meta) -> Result<(), StoreError> {
    let db = dest.join(format!("{}{}", meta.id, snapshot::DB_SUFFIX));
    std::fs::rename(part, &db).map_err(|source| StoreError::Io {
        path: db.clone(),
        source,
    })?;
    let json = dest.join(format!("{}{}", meta.id, snapshot::META_SUFFIX));
    // Plain data: serialising cannot fail.
    let text = serde_json::to_string_pretty(meta).unwrap_or_default() + "\n";
    crate::envfile::write_atomic(&json, text.as_bytes(), 0o600).map_err(|source| {
        StoreError::Io {
            path: json.clone(),
            source,
        }
    })?;
    // The renames are durable once the directory is.
    if let Ok(d) = std::fs::File::open(dest) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Removes what `--keep` / `--keep-within` no longer keep; returns their IDs.
fn gc(args: &BackupConfig) -> Result<Vec<String>, StoreError> {
    let (entries, _) = snapshot::list(&args.to)?;
    let mut removed = Vec::new();
    for e in snapshot::to_remove(&entries, args.keep, args.keep_within, SystemTime::now()) {
        // Metadata first: a snapshot without metadata is not a snapshot any more.
        let meta = e.meta_path();
        match std::fs::remove_file(&meta) {
            // Another host's round (around a leader change) removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            r => r.map_err(|source| StoreError::Io { path: meta, source })?,
        }
        let _ = std::fs::remove_file(&e.db);
        removed.push(e.meta.id.clone());
    }
    Ok(removed)
}
