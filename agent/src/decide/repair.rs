//! A data dir etcd cannot open — a damaged `member/snap/db`, a WAL whose first record
//! is gone — is found before etcd is started on it. When the rest of the cluster answers
//! with quorum, it is moved aside (never deleted) and this member rejoins as for a wiped
//! disk (its stale entry removed, added again as a learner, promoted). Without quorum
//! nothing is moved: the member stops and says that a restore is needed, naming the
//! newest snapshot in `--backups` if given.
//!
//! The checks are cheap and cover what makes etcd exit at start: the bbolt database's
//! two meta pages (magic, version, FNV-1a checksum: bbolt opens the file when either is
//! valid) and the metadata record at the start of the first WAL file.
//!
//! Limitations: a database whose meta pages are intact but whose other pages are
//! damaged, or a WAL damaged after its first record, is not found here (etcd repairs a
//! torn tail of the last WAL file by itself).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::wait::{Probe, Probed, Targets};
use crate::etcd::Access;
use crate::etcd::Endpoint;
use crate::{plan_file, snapshot, Error};

/// bbolt's magic number.
const BOLT_MAGIC: u32 = 0xED0C_DAED;
/// bbolt's data format version.
const BOLT_VERSION: u32 = 2;

/// Why a data dir was not started.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// Damaged, and no cluster with quorum to rejoin.
    #[error(
        "etcd cannot open {}: {why}; no member of its cluster answers with quorum, so it \
         cannot rejoin: a restore is needed ({newest}); nothing was moved",
        dir.display()
    )]
    NeedRestore {
        /// The data dir.
        dir: PathBuf,
        /// What is damaged.
        why: String,
        /// The newest snapshot seen, or where to look.
        newest: String,
    },
    /// Damaged; `plan` / `--dry-run` change nothing.
    #[error(
        "etcd cannot open {}: {why}; the cluster answers with quorum at {at}, so `exec` would \
         move it aside and rejoin (nothing changed now)",
        dir.display()
    )]
    WouldRejoin {
        /// The data dir.
        dir: PathBuf,
        /// What is damaged.
        why: String,
        /// Who answered.
        at: String,
    },
    /// The move aside failed.
    #[error("cannot move {} aside: {source}", dir.display())]
    Move {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// FNV-1a, 64 bits (bbolt's meta checksum).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or_default()
}

/// The page size of a valid bbolt meta page at the start of `page`, or None.
fn bolt_meta(page: &[u8]) -> Option<u32> {
    // Page header (16 bytes), then the meta: magic, version, page size, flags, root
    // bucket, freelist, pgid, txid, and the checksum of the 56 bytes before it.
    let meta = page.get(16..80)?;
    let sum = u64::from_le_bytes(meta[56..64].try_into().ok()?);
    (u32_at(meta, 0) == BOLT_MAGIC && u32_at(meta, 4) == BOLT_VERSION && fnv1a(&meta[..56]) == sum)
        .then(|| u32_at(meta, 8))
}

/// What is wrong with a bbolt file's start (its first two pages), if anything.
pub fn bolt_damage(head: &[u8]) -> Option<String> {
    let first = bolt_meta(head);
    let size = first.map_or(4096, |s| s as usize);
    let second = head.get(size..).and_then(bolt_meta);
    match (first, second) {
        (Some(_), _) | (None, Some(_)) => None,
        _ if head.len() < 2 * 4096 => Some(format!(
            "member/snap/db is {} bytes, too short for a database",
            head.len()
        )),
        _ => Some(
            "member/snap/db has no valid meta page (magic, version and checksum): it is not a \
             database etcd can open"
                .into(),
        ),
    }
}

/// Why etcd could not open this data dir, or None when the cheap checks pass.
pub fn damage(dir: &Path) -> Option<String> {
    let db = dir.join("member").join("snap").join("db");
    if let Ok(f) = std::fs::File::open(&db) {
        let mut head = Vec::new();
        if f.take(64 * 1024).read_to_end(&mut head).is_ok() {
            if let Some(why) = bolt_damage(&head) {
                return Some(why);
            }
        }
    }
    let wal = dir.join("member").join("wal");
    let has_files = std::fs::read_dir(&wal).is_ok_and(|d| {
        d.filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "wal"))
    });
    if has_files && super::adopt::read_wal_ids(dir).is_none() {
        return Some(
            "the first WAL file in member/wal has no readable metadata record (truncated or \
             overwritten)"
                .into(),
        );
    }
    None
}

/// The newest snapshot in `dest`, for the message.
fn newest(dest: Option<&Path>) -> String {
    let Some(dest) = dest else {
        return "pass --backups DEST to name the newest snapshot; see `muster-agent restore`"
            .into();
    };
    match snapshot::list(dest) {
        Ok((entries, _)) => match entries.last() {
            Some(e) => format!(
                "the newest snapshot in {} is {} (revision {}, taken {}): run `muster-agent \
                 restore --from {} --snapshot {}` on every host",
                dest.display(),
                e.meta.id,
                e.meta.revision,
                e.meta.taken_at,
                dest.display(),
                e.meta.id
            ),
            None => format!("{} holds no snapshot", dest.display()),
        },
        Err(e) => format!("cannot read the snapshots: {e}"),
    }
}

/// Checks the data dir before a start; see the module documentation. Ok means: start
/// as usual (the dir is sound, or was moved aside so that this is a fresh start).
pub fn check(
    access: &Access,
    backups: Option<&Path>,
    dir: &Path,
    enact: bool,
) -> Result<(), Error> {
    let Some(why) = damage(dir) else {
        return Ok(());
    };
    eprintln!("muster-agent: etcd cannot open {}: {why}", dir.display());
    let endpoints: Vec<Endpoint> = match plan_file::load(dir) {
        Ok(Some(plan)) => {
            let own = plan.advertise_client_urls.len();
            crate::plan::endpoints(&plan)
                .into_iter()
                .skip(own)
                .collect()
        }
        _ => Vec::new(),
    };
    let probe = super::probe::EtcdProbe {
        access: access.clone(),
    };
    let targets = Targets {
        clients: endpoints,
        peers: Vec::new(),
    };
    // Any healthy answer decides: the cluster has quorum.
    let healthy = |p: &Probed| p.answered.as_ref().is_some_and(|a| a.healthy);
    let answered = probe
        .probe(&targets, std::time::Duration::from_secs(5), &healthy)
        .answered
        .filter(|a| a.healthy);
    let Some(a) = answered else {
        return Err(RepairError::NeedRestore {
            dir: dir.to_path_buf(),
            why,
            newest: newest(backups),
        }
        .into());
    };
    if !enact {
        return Err(RepairError::WouldRejoin {
            dir: dir.to_path_buf(),
            why,
            at: a.endpoint,
        }
        .into());
    }
    let stamp: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let mut aside = dir.as_os_str().to_os_string();
    aside.push(format!(".damaged-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(dir, &aside).map_err(|source| RepairError::Move {
        dir: dir.to_path_buf(),
        source,
    })?;
    eprintln!(
        "muster-agent: the cluster answers with quorum at {}: moved the damaged data dir aside \
         to {}; this member rejoins as for a wiped disk",
        a.endpoint,
        aside.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two valid meta pages as bbolt writes them, page size 4096.
    fn db() -> Vec<u8> {
        let mut b = vec![0u8; 4 * 4096];
        for (i, off) in [0usize, 4096].iter().enumerate() {
            let p = &mut b[*off..*off + 4096];
            p[0..8].copy_from_slice(&(i as u64).to_le_bytes());
            p[16..20].copy_from_slice(&BOLT_MAGIC.to_le_bytes());
            p[20..24].copy_from_slice(&BOLT_VERSION.to_le_bytes());
            p[24..28].copy_from_slice(&4096u32.to_le_bytes());
            p[64..72].copy_from_slice(&(7 + i as u64).to_le_bytes());
            let sum = fnv1a(&p[16..72]);
            p[72..80].copy_from_slice(&sum.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_database_with_one_valid_meta_page_opens() {
        let mut b = db();
        assert_eq!(bolt_damage(&b), None);
        b[20] ^= 1; // first meta page: bad version
        assert_eq!(bolt_damage(&b), None);
        b[4096 + 70] ^= 1; // second: bad checksum
        assert!(bolt_damage(&b).unwrap().contains("no valid meta page"));
        assert!(bolt_damage(&b[..100]).unwrap().contains("too short"));
        assert!(bolt_damage(&[0u8; 9000]).is_some());
    }

    #[test]
    fn fnv1a_matches_the_reference_values() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
