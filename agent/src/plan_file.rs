//! The plan persisted in the data dir, `<data-dir>/muster-plan.json`: written when a
//! member is created (bootstrap, join, restore, adoption) and after a move, read by every
//! restart, `promote`, `leave` and `backup`. Written atomically with mode 0600.
//!
//! Limitations: etcd 3.4 logs "found invalid file under data directory" for the plan file
//! at every start; the warning is harmless.

use std::path::{Path, PathBuf};

use crate::plan::Plan;

/// File name of the persisted plan inside the data dir.
pub const PLAN_FILE: &str = "muster-plan.json";

/// Why the persisted plan cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    /// The persisted plan cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The persisted plan is not valid JSON of our format (including a version we do not
    /// know, IDs whose two forms disagree, a bootstrap without its cluster).
    #[error("{} is not a muster-agent plan ({source}); remove it and pass --name, --listen-peer-url, --listen-client-url and --advertise-client-url", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The persisted plan cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// True when etcd will restart from this data dir rather than bootstrap.
pub fn has_wal(data_dir: &Path) -> bool {
    data_dir.join("member").join("wal").exists()
}

/// Reads `<data-dir>/muster-plan.json`, if present.
pub fn load(data_dir: &Path) -> Result<Option<Plan>, PlanFileError> {
    let path = data_dir.join(PLAN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PlanFileError::Read { path, source }),
    };
    let plan: Plan =
        serde_json::from_str(&text).map_err(|source| PlanFileError::Parse { path, source })?;
    Ok(Some(plan))
}

/// Persists a bootstrap plan in the data dir, creating it with mode 0700 as etcd would
/// (etcd warns about a more open data dir).
pub fn save(data_dir: &Path, plan: &Plan) -> Result<(), PlanFileError> {
    use std::os::unix::fs::DirBuilderExt;
    let path = data_dir.join(PLAN_FILE);
    let write = |source| PlanFileError::Write {
        path: path.clone(),
        source,
    };
    if !data_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(write)?;
    }
    // serde_json cannot fail on this plain data structure.
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    crate::envfile::write_atomic(&path, text.as_bytes(), 0o600).map_err(write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample::stored;

    #[test]
    fn wal_detection_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        assert!(!has_wal(&d));
        assert!(load(&d).unwrap().is_none());
        save(&d, &stored()).unwrap();
        assert_eq!(load(&d).unwrap(), Some(stored()));
        std::fs::create_dir_all(d.join("member/wal")).unwrap();
        assert!(has_wal(&d));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    /// Rewrites one JSON value of the saved plan and loads it back.
    fn load_edited(
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Result<Option<Plan>, PlanFileError> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("data");
        save(&d, &stored()).unwrap();
        let path = d.join(PLAN_FILE);
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut v);
        std::fs::write(&path, v.to_string()).unwrap();
        load(&d)
    }

    #[test]
    fn a_damaged_plan_file_is_an_error_naming_the_file_and_the_field() {
        type Edit = fn(&mut serde_json::Value);
        let cases: [(Edit, &str); 6] = [
            (
                |v| v["cluster"]["member_id_hex"] = "not-hex".into(),
                "cluster.member_id_hex \"not-hex\" is not a hexadecimal etcd ID",
            ),
            (
                |v| v["cluster"]["cluster_id_hex"] = "1".into(),
                "cluster.cluster_id ",
            ),
            (
                |v| v["cluster"]["members"][0]["id_hex"] = "abc".into(),
                "member m0 id ",
            ),
            (
                |v| {
                    v["cluster"].take();
                },
                "mode \"bootstrap\" without \"cluster\"",
            ),
            (|v| v["version"] = 2.into(), "format version 2"),
            (
                |v| v["cluster"]["initial_cluster_state"] = "maybe".into(),
                "unknown variant `maybe`",
            ),
        ];
        for (edit, want) in cases {
            let e = load_edited(edit).unwrap_err().to_string();
            assert!(
                e.contains("muster-plan.json is not a muster-agent plan (") && e.contains(want),
                "{want}: {e}"
            );
        }
    }
}
