//! The snapshot store that `backup` writes and `restore` reads: a directory holding
//! `ID.db` (the backend database exactly as etcd streams it, its SHA-256 appended — what
//! `etcdctl snapshot save` writes) next to `ID.json` ([`Meta`]: cluster, members,
//! revision, time, SHA-256 of the file).
//!
//! A snapshot counts only once its metadata exists: the `.db` is renamed into place
//! after it was verified, and the metadata written (atomically) after that, so a backup
//! killed half-way leaves at most a `.part` file that nobody reads. [`verify`] checks a
//! file against its metadata (SHA-256) and against etcd's own integrity hash (the
//! trailing SHA-256 of the database).
//!
//! The snapshot ID sorts by time: `YYYYMMDDTHHMMSSZ-rREVISION-SHA8`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the metadata format.
pub const META_VERSION: u32 = 1;

/// Suffix of a snapshot file.
pub const DB_SUFFIX: &str = ".db";
/// Suffix of its metadata.
pub const META_SUFFIX: &str = ".json";
/// Suffix of a snapshot being written.
pub const PART_SUFFIX: &str = ".part";

/// One member of the cluster a snapshot was taken from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaMember {
    /// Member name.
    pub name: String,
    /// Member ID, hex.
    pub id: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
}

/// `ID.json`: what a snapshot holds and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// [`META_VERSION`].
    pub version: u32,
    /// The snapshot ID (also the file names).
    pub id: String,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub taken_at: String,
    /// The member that streamed it.
    pub taken_from: String,
    /// The SRV owner name the cluster was discovered from (e.g.
    /// `_etcd-server._tcp.example.com.`); empty when the plan did not say.
    pub srv_record: String,
    /// Cluster ID, hex.
    pub cluster_id: String,
    /// The members at the time.
    pub members: Vec<MetaMember>,
    /// The store revision the snapshot holds (`etcdctl snapshot status`).
    pub revision: i64,
    /// Keys in the backend, all buckets (`etcdctl snapshot status` "totalKey").
    pub total_keys: u64,
    /// Size of the database (without the trailing hash).
    pub total_size: u64,
    /// etcd's hash of the database (`etcdctl snapshot status` "hash").
    pub etcd_hash: u64,
    /// Size of the `.db` file.
    pub file_size: u64,
    /// SHA-256 of the `.db` file, lower-case hex.
    pub sha256: String,
}

/// A snapshot in a store, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The `.db` file.
    pub db: PathBuf,
    /// The metadata.
    pub meta: Meta,
}

impl Entry {
    /// The metadata file.
    pub fn meta_path(&self) -> PathBuf {
        self.db.with_extension("json")
    }

    /// When it was taken (the Unix epoch when the metadata's time does not parse, which
    /// sorts it oldest).
    pub fn taken(&self) -> SystemTime {
        humantime::parse_rfc3339(&self.meta.taken_at).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The snapshot ID for a snapshot taken at `at` holding `revision`, whose file has
/// SHA-256 `sha256` (hex).
pub fn make_id(at: SystemTime, revision: i64, sha256: &str) -> String {
    let t: String = humantime::format_rfc3339_seconds(at)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{t}-r{revision}-{}", &sha256[..sha256.len().min(8)])
}

/// An ID as given to `--snapshot`: the characters [`make_id`] uses, so that it can be
/// a file name.
pub fn parse_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with('.') {
        return Err("a snapshot ID is not empty and does not start with a dot".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{s:?} contains {c:?}; snapshot IDs look like 20260101T000000Z-r42-0123abcd"
        ));
    }
    Ok(s.to_string())
}

/// The `--initial-cluster-token` of a cluster restored from the snapshot whose file has
/// SHA-256 `sha256`: the bootstrap token with the snapshot's hash, so that every host
/// restoring the same file computes the same member and cluster IDs, and a member of
/// the old cluster (or of a restore from another file) can never talk to the new one.
pub fn restore_token(base: &str, sha256: &str) -> String {
    format!("{base}:restore-{}", &sha256[..sha256.len().min(16)])
}

/// What is wrong with a store or a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file cannot be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file does not match its metadata or etcd's integrity hash.
    #[error("snapshot {} fails its checksum: {why}; it is not used (take a new backup, or pick another with --snapshot)", path.display())]
    Checksum {
        /// The `.db` file.
        path: PathBuf,
        /// What differs.
        why: String,
    },
    /// etcdctl failed or said something unexpected.
    #[error("{0}")]
    Etcdctl(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Hashes a snapshot as it streams: the SHA-256 of the whole file, and whether its last
/// 32 bytes are the SHA-256 of everything before them (etcd's integrity hash).
#[derive(Default)]
pub struct Hasher {
    whole: Sha256,
    body: Sha256,
    /// The last (up to) 32 bytes seen, not yet fed to `body`.
    tail: Vec<u8>,
    len: u64,
}

impl Hasher {
    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.whole.update(bytes);
        self.len += bytes.len() as u64;
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 32 {
            let cut = self.tail.len() - 32;
            self.body.update(&self.tail[..cut]);
            self.tail.drain(..cut);
        }
    }

    /// (SHA-256 of the file in hex, file length, etcd's trailing hash matches).
    pub fn finish(self) -> (String, u64, bool) {
        let ok = self.tail.len() == 32 && self.body.finalize()[..] == self.tail[..];
        (
            data_encoding::HEXLOWER.encode(&self.whole.finalize()),
            self.len,
            ok,
        )
    }
}

/// Hashes a file with [`Hasher`].
pub fn hash_file(path: &Path) -> Result<(String, u64, bool), StoreError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Checks a snapshot file: its SHA-256 against the metadata (when there is metadata),
/// and etcd's integrity hash. Returns the file's SHA-256.
pub fn verify(db: &Path, meta: Option<&Meta>) -> Result<String, StoreError> {
    let (sha, len, trailer) = hash_file(db)?;
    let bad = |why: String| StoreError::Checksum {
        path: db.to_path_buf(),
        why,
    };
    if let Some(m) = meta {
        if m.sha256 != sha {
            return Err(bad(format!(
                "SHA-256 {sha} ({len} bytes), the metadata says {} ({} bytes)",
                m.sha256, m.file_size
            )));
        }
    }
    if !trailer {
        return Err(bad(
            "etcd's integrity hash (the SHA-256 at its end) does not match the database".into(),
        ));
    }
    Ok(sha)
}

/// Reads every snapshot with metadata in `dir`, oldest first (by time, then revision). Metadata that does not
/// parse, or whose `.db` is missing, is reported in the second list and skipped.
pub fn list(dir: &Path) -> Result<(Vec<Entry>, Vec<String>), StoreError> {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = e.map_err(io(dir))?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(META_SUFFIX) {
            continue;
        }
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let meta: Meta = match serde_json::from_str(&text) {
            Ok(m) => m,
            Err(e) => {
                problems.push(format!("{}: not snapshot metadata: {e}", path.display()));
                continue;
            }
        };
        let db = path.with_extension("db");
        if meta.version != META_VERSION || format!("{}{META_SUFFIX}", meta.id) != name {
            problems.push(format!(
                "{}: version {} or id {} does not match the file",
                path.display(),
                meta.version,
                meta.id
            ));
            continue;
        }
        if !db.exists() {
            problems.push(format!("{}: {} is missing", path.display(), db.display()));
            continue;
        }
        entries.push(Entry { db, meta });
    }
    // Within one second the revision orders them (IDs compare "r10" before "r8").
    entries.sort_by(|a, b| {
        (a.taken(), a.meta.revision, &a.meta.id).cmp(&(b.taken(), b.meta.revision, &b.meta.id))
    });
    Ok((entries, problems))
}

/// Which snapshots garbage collection removes, given every snapshot oldest first: all
/// but the newest `keep` and those taken within `keep_within` of `now`; never the newest.
/// With neither limit nothing is removed.
pub fn to_remove(
    entries: &[Entry],
    keep: Option<usize>,
    keep_within: Option<Duration>,
    now: SystemTime,
) -> Vec<&Entry> {
    if keep.is_none() && keep_within.is_none() {
        return Vec::new();
    }
    let n = entries.len();
    let keep_n = keep.unwrap_or(0).max(1);
    entries
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            let newest_n = n - i <= keep_n;
            let recent = keep_within.is_some_and(|w| {
                now.duration_since(e.taken())
                    .map(|age| age <= w)
                    .unwrap_or(true)
            });
            !newest_n && !recent
        })
        .map(|(_, e)| e)
        .collect()
}

/// `etcdctl snapshot status` of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct SnapStatus {
    /// etcd's hash of the database.
    pub hash: u64,
    /// Store revision.
    pub revision: i64,
    /// Keys, all buckets.
    #[serde(rename = "totalKey")]
    pub total_key: u64,
    /// Database size.
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

/// Runs etcdctl (v3 API) with `args` and the variables `env`, at most `limit`; its
/// stdout when it exits 0.
pub fn etcdctl(
    bin: &str,
    args: &[String],
    env: &[(&str, String)],
    limit: Duration,
) -> Result<String, StoreError> {
    let mut cmd = Command::new(bin);
    // etcdctl exits when a variable repeats a flag given here (an operator's shell may
    // export ETCDCTL_ENDPOINTS): only ours reach it.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("ETCDCTL_API", "3")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            StoreError::Etcdctl(format!(
                "cannot run {bin}: {e}; install etcdctl or pass --etcdctl with its path"
            ))
        })?;
    // Read both pipes on threads so that a chatty etcdctl never blocks on a full pipe.
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(StoreError::Etcdctl(format!(
                    "{bin} {} did not finish within {}",
                    args.join(" "),
                    humantime::format_duration(limit)
                )));
            }
        }
    };
    let stdout = t_out.join().unwrap_or_default();
    let stderr = t_err.join().unwrap_or_default();
    if !status.success() {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(StoreError::Etcdctl(format!(
            "{bin} {} failed ({status}): {last}",
            args.join(" ")
        )));
    }
    Ok(stdout)
}

/// `etcdctl snapshot status FILE`: also proves that etcd's database code can open it.
pub fn status(bin: &str, file: &Path) -> Result<SnapStatus, StoreError> {
    let out = etcdctl(
        bin,
        &[
            "snapshot".into(),
            "status".into(),
            file.display().to_string(),
            "-w".into(),
            "json".into(),
        ],
        &[],
        Duration::from_secs(300),
    )?;
    serde_json::from_str(out.trim()).map_err(|e| {
        StoreError::Etcdctl(format!(
            "etcdctl snapshot status {}: unexpected output ({e}): {}",
            file.display(),
            out.trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, at: &str) -> Entry {
        Entry {
            db: PathBuf::from(format!("/s/{id}.db")),
            meta: Meta {
                version: META_VERSION,
                id: id.into(),
                taken_at: at.into(),
                taken_from: "m0".into(),
                srv_record: String::new(),
                cluster_id: "1".into(),
                members: vec![],
                revision: 1,
                total_keys: 1,
                total_size: 1,
                etcd_hash: 1,
                file_size: 1,
                sha256: "00".into(),
            },
        }
    }

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let at = humantime::parse_rfc3339("2026-12-06T22:33:56Z").unwrap();
        let id = make_id(at, 42, "0123456789abcdef");
        assert_eq!(id, "20261206T223356Z-r42-01234567");
        assert_eq!(parse_id(&id).unwrap(), id);
        assert!(parse_id("../x").is_err());
        assert!(parse_id(".hidden").is_err());
        assert!(parse_id("").is_err());
    }

    #[test]
    fn gc_keeps_the_newest_and_the_recent() {
        let e: Vec<Entry> = (0..5)
            .map(|i| entry(&format!("s{i}"), &format!("2026-01-01T00:0{i}:00Z")))
            .collect();
        let now = humantime::parse_rfc3339("2026-01-01T00:05:00Z").unwrap();
        let ids = |v: Vec<&Entry>| v.iter().map(|e| e.meta.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(to_remove(&e, Some(2), None, now)), ["s0", "s1", "s2"]);
        assert_eq!(
            ids(to_remove(&e, None, Some(Duration::from_secs(150)), now)),
            ["s0", "s1", "s2"]
        );
        assert_eq!(
            ids(to_remove(&e, Some(1), Some(Duration::from_secs(200)), now)),
            ["s0", "s1"]
        );
        // --keep 0 still keeps the newest; no limit removes nothing.
        assert_eq!(ids(to_remove(&e, Some(0), None, now)).len(), 4);
        assert!(to_remove(&e, None, None, now).is_empty());
        assert!(to_remove(&e[..1], Some(1), Some(Duration::ZERO), now).is_empty());
    }

    #[test]
    fn the_hasher_checks_the_trailing_hash() {
        let db = b"some database bytes".repeat(1000);
        let mut file = db.clone();
        file.extend_from_slice(&Sha256::digest(&db));
        for chunk in [1usize, 7, 32, 33, 4096] {
            let mut h = Hasher::default();
            for c in file.chunks(chunk) {
                h.update(c);
            }
            let (sha, len, ok) = h.finish();
            assert!(ok, "chunk {chunk}");
            assert_eq!(len, file.len() as u64);
            assert_eq!(sha, data_encoding::HEXLOWER.encode(&Sha256::digest(&file)));
        }
        file[10] ^= 1;
        let mut h = Hasher::default();
        h.update(&file);
        assert!(!h.finish().2);
    }

    #[test]
    fn list_orders_by_time_then_revision_and_skips_incomplete_ones() {
        let d = tempfile::tempdir().unwrap();
        for (rev, at) in [
            (10, "2026-01-01T00:00:01Z"),
            (8, "2026-01-01T00:00:01Z"),
            (99, "2026-01-01T00:00:00Z"),
        ] {
            let mut e = entry(&format!("20260101T00000xZ-r{rev}-00"), at);
            e.meta.revision = rev;
            std::fs::write(
                d.path().join(format!("{}.json", e.meta.id)),
                serde_json::to_string(&e.meta).unwrap(),
            )
            .unwrap();
            std::fs::write(d.path().join(format!("{}.db", e.meta.id)), b"x").unwrap();
        }
        // Metadata without its file, and a file without metadata.
        let lone = entry("lone", "2026-01-01T00:00:02Z");
        std::fs::write(
            d.path().join("lone.json"),
            serde_json::to_string(&lone.meta).unwrap(),
        )
        .unwrap();
        std::fs::write(d.path().join("orphan.db"), b"x").unwrap();
        let (entries, problems) = list(d.path()).unwrap();
        let revs: Vec<i64> = entries.iter().map(|e| e.meta.revision).collect();
        assert_eq!(revs, [99, 8, 10]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("lone.db is missing"), "{problems:?}");
    }

    #[test]
    fn restore_tokens_differ_by_snapshot() {
        assert_eq!(
            restore_token("muster:c.test.", "0123456789abcdef0123"),
            "muster:c.test.:restore-0123456789abcdef"
        );
    }
}
