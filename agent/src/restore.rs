//! `muster-agent restore`: after a majority of members was lost for good, the same
//! command on every host gives one cluster holding a snapshot's data.
//!
//! Each host, on its own: picks the snapshot (the one named by `--snapshot`, or the
//! newest whose checksums pass) and prints its ID; reads the records with the bootstrap
//! rules (complete, stable, size known, this host identified) with a token derived from
//! the snapshot's SHA-256 ([`snapshot::restore_token`]), so every host that picked the
//! same file computes the same `--initial-cluster`, member IDs and cluster ID; asks every
//! member's client URL what runs there; restores the file with `etcdctl snapshot restore`
//! into a fresh directory, moves the old data dir aside (never deletes it), writes
//! `muster-plan.json`, and execs etcd, like `exec`.
//!
//! Refusals (each message says what to do): a checksum that fails; this host's etcd still
//! running; a cluster that answers with quorum and is not the restored one (a restore
//! while the old cluster lives would fork it); a cluster restored from *another* snapshot
//! (its ID is the one that snapshot's token gives, so the snapshot is named); a snapshot
//! of another discovery record than the records', or older than this host's own data
//! dir, unless `--force`. Why the cluster ID is the check that every host chose the same
//! snapshot: it needs no channel besides etcd itself, and etcd enforces it too — members
//! restored from different files have different IDs and refuse each other's messages.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{AgentConfig, PLAN_NEEDS_DATA_DIR};
use crate::decide::records::{records_plan, TO_RESTORE};
use crate::etcd::{Access, Client, Endpoint};
use crate::ids::EtcdId;
use crate::plan::{Bootstrap, Plan, Start};
use crate::plan_file::{self, PLAN_FILE};
use crate::snapshot::{self, Entry, StoreError};
use crate::{exec, notify, Error};

/// What `restore` does, checked.
#[derive(Debug, Clone)]
pub struct RestoreConfig {
    /// The start configuration (the records are read as for a bootstrap).
    pub agent: AgentConfig,
    /// The snapshot directory `backup --to` wrote, or one snapshot file.
    pub from: PathBuf,
    /// Restore this snapshot ID instead of the newest that passes its checksums.
    pub snapshot: Option<String>,
    /// Restore a snapshot of another discovery record, or an older one.
    pub force: bool,
    /// The etcd program.
    pub etcd_bin: String,
    /// The etcdctl program.
    pub etcdctl: String,
    /// Print etcd's argv after the checks instead of restoring and executing it.
    pub dry_run: bool,
    /// Restore, but do not start etcd.
    pub no_start: bool,
    /// Extra etcd arguments.
    pub extra: Vec<String>,
}

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The store or a snapshot cannot be used.
    #[error("restore refused: {0}")]
    Store(#[from] StoreError),
    /// No snapshot to restore.
    #[error("restore refused: {0}")]
    NoSnapshot(String),
    /// A safety rail.
    #[error("restore refused: {0}")]
    Refused(String),
    /// A step failed; what was done so far is said.
    #[error("restore failed: {0}")]
    Failed(String),
}

fn say(line: &str) {
    eprintln!("muster-agent: restore: {line}");
    notify::status(line);
}

/// Runs `restore`.
pub fn run(args: &RestoreConfig) -> Result<(), Error> {
    let dir = args
        .agent
        .data_dir
        .require(PLAN_NEEDS_DATA_DIR)?
        .to_path_buf();
    let from_flag = args.agent.data_dir.from_flag;
    let (candidates, chosen) = choose(args)?;
    let m = &chosen.meta;
    say(&format!(
        "snapshot {} (taken {} from {}, cluster {}, revision {}, {} keys, sha256 {})",
        m.id,
        m.taken_at,
        if m.taken_from.is_empty() {
            "?"
        } else {
            &m.taken_from
        },
        if m.cluster_id.is_empty() {
            "?"
        } else {
            &m.cluster_id
        },
        m.revision,
        m.total_keys,
        m.sha256
    ));
    let base = match &args.agent.token {
        Some(t) => t.clone(),
        None => args.agent.service(TO_RESTORE)?.default_token(),
    };
    let token = snapshot::restore_token(&base, &m.sha256);
    let mut plan = records_plan(&args.agent, &dir, &token)?;
    plan.reason = format!(
        "restored from snapshot {} (revision {}) with token {token}",
        m.id, m.revision
    );
    let Some(b) = plan.cluster().cloned() else {
        return Err(RestoreError::Failed("the records gave no bootstrap plan".into()).into());
    };
    if !m.srv_record.is_empty() && m.srv_record != b.srv_record && !args.force {
        return Err(RestoreError::Refused(format!(
            "snapshot {} is of the cluster discovered at {}, but these records are {}; pass \
             --force to restore it into this cluster anyway",
            m.id, m.srv_record, b.srv_record
        ))
        .into());
    }
    say(&format!(
        "member {} of {} ({}), token {token}, new cluster id {}",
        plan.name,
        b.members.len(),
        b.srv_record,
        b.cluster_id.hex()
    ));
    match look_around(args, &b, &base, &candidates, &chosen)? {
        Around::Clear => {}
        Around::RunningHere(url) => {
            say(&format!(
                "etcd on this host already runs the cluster restored from {} (answers at \
                 {url}); nothing to do",
                m.id
            ));
            return Ok(());
        }
    }
    let already = restored_here(&dir, &token);
    if already {
        say(&format!(
            "{} already holds this restore (its {} has token {token}); starting etcd",
            dir.display(),
            PLAN_FILE
        ));
    } else {
        check_local_revision(args, &dir, &chosen)?;
        if args.dry_run {
            say("--dry-run: nothing restored");
        } else {
            restore_into(args, &dir, &chosen, &b, &plan)?;
        }
    }
    start(args, &dir, from_flag, plan, b, &chosen)
}

/// The candidates in `--from` and the chosen one, whose checksums passed.
fn choose(args: &RestoreConfig) -> Result<(Vec<Entry>, Entry), RestoreError> {
    let candidates = candidates(&args.from, &args.etcdctl)?;
    if let Some(id) = &args.snapshot {
        let e = candidates
            .iter()
            .find(|e| &e.meta.id == id)
            .cloned()
            .ok_or_else(|| {
                RestoreError::NoSnapshot(format!(
                    "no snapshot {id} in {}; there are: {}",
                    args.from.display(),
                    ids_of(&candidates)
                ))
            })?;
        snapshot::verify(&e.db, Some(&e.meta))?;
        return Ok((candidates, e));
    }
    let mut failed = Vec::new();
    for e in candidates.iter().rev() {
        match snapshot::verify(&e.db, Some(&e.meta)) {
            Ok(_) => {
                if !failed.is_empty() {
                    say(&format!(
                        "newer snapshots fail their checksums and are skipped: {}",
                        failed.join("; ")
                    ));
                }
                if candidates.len() > 1 {
                    say(&format!(
                        "chose the newest of {} snapshots that passes its checksums; every \
                         host must choose the same: pass --snapshot {} to make it explicit",
                        candidates.len(),
                        e.meta.id
                    ));
                }
                return Ok((candidates.clone(), e.clone()));
            }
            Err(err) => failed.push(err.to_string()),
        }
    }
    Err(RestoreError::NoSnapshot(if failed.is_empty() {
        format!(
            "{} holds no snapshot (ID.db with ID.json, as backup writes them)",
            args.from.display()
        )
    } else {
        format!("no snapshot passes its checksums: {}", failed.join("; "))
    }))
}

fn ids_of(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "none".into();
    }
    entries
        .iter()
        .map(|e| e.meta.id.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The snapshots of a store, or one file (with its metadata if present; without, the
/// file's own hash and `etcdctl snapshot status` make one).
fn candidates(from: &Path, etcdctl: &str) -> Result<Vec<Entry>, RestoreError> {
    if from.is_dir() {
        let (entries, problems) = snapshot::list(from)?;
        for p in problems {
            say(&format!("skipped: {p}"));
        }
        return Ok(entries);
    }
    let meta_path = from.with_extension("json");
    if meta_path.exists() {
        let text = std::fs::read_to_string(&meta_path).map_err(|source| StoreError::Io {
            path: meta_path.clone(),
            source,
        })?;
        let meta = serde_json::from_str(&text).map_err(|e| {
            RestoreError::NoSnapshot(format!(
                "{} is not snapshot metadata: {e}",
                meta_path.display()
            ))
        })?;
        return Ok(vec![Entry {
            db: from.to_path_buf(),
            meta,
        }]);
    }
    let sha = snapshot::verify(from, None)?;
    let st = snapshot::status(etcdctl, from)?;
    let at = std::fs::metadata(from)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    say(&format!(
        "{} has no metadata: the cluster it came from is not checked",
        from.display()
    ));
    Ok(vec![Entry {
        db: from.to_path_buf(),
        meta: snapshot::Meta {
            version: snapshot::META_VERSION,
            id: snapshot::make_id(at, st.revision, &sha),
            taken_at: humantime::format_rfc3339_seconds(at).to_string(),
            taken_from: String::new(),
            srv_record: String::new(),
            cluster_id: String::new(),
            members: vec![],
            revision: st.revision,
            total_keys: st.total_key,
            total_size: st.total_size,
            etcd_hash: st.hash,
            file_size: std::fs::metadata(from).map(|m| m.len()).unwrap_or_default(),
            sha256: sha,
        },
    }])
}

/// The cluster ID of the records' members restored with `token`.
fn restored_cluster_id(b: &Bootstrap, token: &str) -> EtcdId {
    crate::decide::adopt::with_token(b.clone(), token).cluster_id
}

/// What the members' client URLs said.
enum Around {
    /// Nothing that forbids the restore.
    Clear,
    /// This host's etcd already runs the restored cluster.
    RunningHere(String),
}

/// Asks every member's client URL; refuses a live old cluster, this host's own etcd
/// still running, and a cluster restored from another snapshot.
fn look_around(
    args: &RestoreConfig,
    b: &Bootstrap,
    base: &str,
    candidates: &[Entry],
    chosen: &Entry,
) -> Result<Around, RestoreError> {
    let ours = restored_cluster_id(b, &snapshot::restore_token(base, &chosen.meta.sha256));
    let access = Access {
        request_timeout: Duration::from_secs(2),
        ..args.agent.access.clone()
    };
    for m in &b.members {
        let endpoints: Vec<Endpoint> = m
            .client_urls
            .iter()
            .map(|u| Endpoint {
                url: u.to_string(),
                addrs: m.addresses.clone(),
            })
            .collect();
        let Ok(client) = Client::new(endpoints.clone(), access.clone()) else {
            continue;
        };
        for e in &endpoints {
            let Ok(list) = client.list_at(&e.url) else {
                continue;
            };
            let id = list.cluster_id.hex();
            let healthy = client.healthy_at(&e.url);
            if list.cluster_id == ours {
                if m.this_host {
                    return Ok(Around::RunningHere(e.url.clone()));
                }
                say(&format!(
                    "{} ({}) already runs the restored cluster {id}",
                    m.name, e.url
                ));
                continue;
            }
            if m.this_host {
                return Err(RestoreError::Refused(format!(
                    "etcd still runs on this host: {} answers with cluster {id}; stop it \
                     first (systemctl stop etcd), then run restore again",
                    e.url
                )));
            }
            // The newest of the snapshots with that content (equal files, equal token).
            let other = candidates.iter().rev().find(|c| {
                c.meta.sha256 != chosen.meta.sha256
                    && restored_cluster_id(b, &snapshot::restore_token(base, &c.meta.sha256))
                        == list.cluster_id
            });
            if let Some(c) = other {
                return Err(RestoreError::Refused(format!(
                    "{} ({}) runs the cluster restored from snapshot {}, but this host chose \
                     {}: every host must restore the same snapshot; run restore --snapshot {} here",
                    m.name, e.url, c.meta.id, chosen.meta.id, c.meta.id
                )));
            }
            if healthy {
                return Err(RestoreError::Refused(format!(
                    "the cluster {id} answers at {} with quorum: a restore would fork a live \
                     cluster (and lose what it holds); restore only after a majority of members \
                     is lost for good",
                    e.url
                )));
            }
            if !chosen.meta.cluster_id.is_empty() && id != chosen.meta.cluster_id && !args.force {
                return Err(RestoreError::Refused(format!(
                    "{} ({}) runs cluster {id}, neither the snapshot's cluster {} nor the \
                     restored one {}: was it restored from a snapshot of another store? Stop \
                     it, or pass --force",
                    m.name,
                    e.url,
                    chosen.meta.cluster_id,
                    ours.hex()
                )));
            }
            say(&format!(
                "{} ({}) answers for cluster {id} without quorum: going ahead",
                m.name, e.url
            ));
        }
    }
    Ok(Around::Clear)
}

/// True when `dir` already holds the restore made with `token` (a second run, or a
/// restart after the restore).
fn restored_here(dir: &Path, token: &str) -> bool {
    plan_file::has_wal(dir)
        && plan_file::load(dir)
            .ok()
            .flatten()
            .and_then(|p| p.cluster().map(|c| c.token == token))
            .unwrap_or(false)
}

/// Refuses a snapshot older than this host's data dir (unless --force): the restore
/// would lose the newer writes this host holds.
fn check_local_revision(args: &RestoreConfig, dir: &Path, chosen: &Entry) -> Result<(), Error> {
    let db = dir.join("member").join("snap").join("db");
    if !db.exists() {
        return Ok(());
    }
    match snapshot::status(&args.etcdctl, &db) {
        Ok(st) if st.revision > chosen.meta.revision && !args.force => {
            Err(RestoreError::Refused(format!(
                "snapshot {} holds revision {}, but this host's {} holds revision {}: the \
                 restore would lose the newer writes; take a backup of the data this host \
                 has, or pass --force to restore the older snapshot",
                chosen.meta.id,
                chosen.meta.revision,
                db.display(),
                st.revision
            ))
            .into())
        }
        Ok(st) => {
            say(&format!(
                "this host's data dir holds revision {} (the snapshot {})",
                st.revision, chosen.meta.revision
            ));
            Ok(())
        }
        Err(e) => {
            say(&format!(
                "cannot read the revision of {} ({e}); it is moved aside, not deleted",
                db.display()
            ));
            Ok(())
        }
    }
}

/// A sibling of `dir` with `suffix`.
fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// `etcdctl snapshot restore` into a fresh sibling directory, then the old data dir
/// aside and the new one in its place, with the plan.
fn restore_into(
    args: &RestoreConfig,
    dir: &Path,
    chosen: &Entry,
    b: &Bootstrap,
    plan: &Plan,
) -> Result<(), Error> {
    let fresh = sibling(dir, ".restoring");
    if fresh.exists() {
        // Only a restore makes this directory: a previous one stopped half-way.
        std::fs::remove_dir_all(&fresh)
            .map_err(|e| RestoreError::Failed(format!("cannot remove {}: {e}", fresh.display())))?;
    }
    snapshot::etcdctl(
        &args.etcdctl,
        &[
            "snapshot".into(),
            "restore".into(),
            chosen.db.display().to_string(),
            format!("--name={}", plan.name),
            format!("--initial-cluster={}", b.initial_cluster),
            format!(
                "--initial-advertise-peer-urls={}",
                crate::urls::join(&b.initial_advertise_peer_urls)
            ),
            format!("--initial-cluster-token={}", b.token),
            format!("--data-dir={}", fresh.display()),
        ],
        &[],
        Duration::from_secs(3600),
    )
    .map_err(|e| RestoreError::Failed(e.to_string()))?;
    plan_file::save(&fresh, plan)?;
    if dir.exists() {
        let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let aside = sibling(dir, &format!(".before-restore-{stamp}"));
        std::fs::rename(dir, &aside).map_err(|e| {
            RestoreError::Failed(format!(
                "cannot move {} aside to {}: {e}; the restored data is in {}",
                dir.display(),
                aside.display(),
                fresh.display()
            ))
        })?;
        say(&format!(
            "moved the old data dir aside to {}",
            aside.display()
        ));
    }
    std::fs::rename(&fresh, dir).map_err(|e| {
        RestoreError::Failed(format!(
            "cannot rename {} to {}: {e}",
            fresh.display(),
            dir.display()
        ))
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    say(&format!(
        "restored snapshot {} into {} as member {} ({})",
        chosen.meta.id,
        dir.display(),
        plan.name,
        b.member_id.hex()
    ));
    Ok(())
}

/// Starts etcd on the restored data dir: a restart for etcd (its WAL holds the new
/// membership), with this member's URLs from the plan.
fn start(
    args: &RestoreConfig,
    dir: &Path,
    from_flag: bool,
    plan: Plan,
    b: Bootstrap,
    chosen: &Entry,
) -> Result<(), Error> {
    let plan = Plan {
        reason: format!(
            "restored from snapshot {} (revision {}): a new cluster {} with token {}",
            chosen.meta.id,
            chosen.meta.revision,
            b.cluster_id.hex(),
            b.token
        ),
        data_dir: Some(dir.to_path_buf()),
        start: Start::Restart {
            peer_urls: b.initial_advertise_peer_urls.clone(),
            bootstrapped: Some(b),
            moved: None,
        },
        ..plan
    };
    if args.no_start {
        say(&format!(
            "{} is ready; --no-start: start etcd now (systemctl start etcd, or muster-agent exec)",
            dir.display()
        ));
        return Ok(());
    }
    eprintln!("muster-agent: decision: restore ({})", plan.reason);
    let flags = plan.etcd_flags(from_flag);
    exec::check(&flags, &args.extra, false, |k| {
        std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
    })?;
    let argv = exec::argv(&args.etcd_bin, &flags, &args.extra);
    if args.dry_run {
        for a in &argv {
            println!("{a}");
        }
        return Ok(());
    }
    Err(exec::exec(&argv).into())
}
