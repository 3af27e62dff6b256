//! Restarts: a member whose data dir has a WAL must start without DNS.
//!
//! etcd skips discovery entirely once `<data-dir>/member/wal` exists and ignores the
//! `--initial-*` flags; a restart must therefore not wait for DNS, which may be the thing
//! that is down. The only things etcd still needs from us are its name and its listen and
//! advertise URLs, which DNS gave at bootstrap: the bootstrap plan is persisted as
//! `<data-dir>/muster-plan.json` and reused. Without that file the operator must give
//! them as flags.
//!
//! Limitations: etcd 3.4 logs "found invalid file under data directory" for the plan file
//! at every start; the warning is harmless.

use std::path::{Path, PathBuf};

use crate::cluster::MemberName;
use crate::plan::{Plan, Start};

/// File name of the persisted plan inside the data dir.
pub const PLAN_FILE: &str = "muster-plan.json";

/// Errors of the restart path.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
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
    /// Restart without a persisted plan and without the flags that replace it.
    #[error(
        "{} has a WAL, so this is a restart and DNS is not consulted, but {} is missing, so \
         muster-agent does not know this member's URLs; pass {} (or start etcd without muster-agent)",
        data_dir.display(), data_dir.join(PLAN_FILE).display(), missing.join(", ")
    )]
    NeedFlags {
        /// The data dir.
        data_dir: PathBuf,
        /// The missing flags.
        missing: Vec<&'static str>,
    },
    /// `--name` disagrees with the name the member was bootstrapped with.
    #[error(
        "--name {given} but this data dir was bootstrapped as member {persisted} (see {}); \
         etcd would keep its stored identity: drop --name or fix it",
        path.display()
    )]
    NameMismatch {
        /// `--name`.
        given: MemberName,
        /// Name in the persisted plan.
        persisted: MemberName,
        /// The plan file.
        path: PathBuf,
    },
}

/// True when etcd will restart from this data dir rather than bootstrap.
pub fn has_wal(data_dir: &Path) -> bool {
    data_dir.join("member").join("wal").exists()
}

/// Reads `<data-dir>/muster-plan.json`, if present.
pub fn load(data_dir: &Path) -> Result<Option<Plan>, RestartError> {
    let path = data_dir.join(PLAN_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RestartError::Read { path, source }),
    };
    let plan: Plan =
        serde_json::from_str(&text).map_err(|source| RestartError::Parse { path, source })?;
    Ok(Some(plan))
}

/// Persists a bootstrap plan in the data dir, creating it with mode 0700 as etcd would
/// (etcd warns about a more open data dir).
pub fn save(data_dir: &Path, plan: &Plan) -> Result<(), RestartError> {
    use std::os::unix::fs::DirBuilderExt;
    let path = data_dir.join(PLAN_FILE);
    let write = |source| RestartError::Write {
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

/// What the command line says about a restart.
#[derive(Debug, Clone, Default)]
pub struct RestartFlags {
    /// `--name`.
    pub name: Option<MemberName>,
    /// `--listen-peer-url`.
    pub listen_peer_urls: Vec<String>,
    /// `--listen-client-url`.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-url`.
    pub advertise_client_urls: Vec<String>,
}

/// Why a data dir with a WAL is a restart.
fn restart_reason(data_dir: &Path) -> String {
    format!(
        "{} exists: etcd restarts from its stored membership; DNS is not consulted",
        data_dir.join("member").join("wal").display()
    )
}

/// The restart plan: the persisted plan (flags override its URLs), or the flags alone.
pub fn restart_plan(
    data_dir: &Path,
    persisted: Option<Plan>,
    flags: &RestartFlags,
) -> Result<Plan, RestartError> {
    let pick = |given: &Vec<String>, stored: Vec<String>| {
        if given.is_empty() {
            stored
        } else {
            given.clone()
        }
    };
    match persisted {
        Some(p) => {
            if let Some(n) = &flags.name {
                // MemberName equality, the same comparison bootstrap used to pick the
                // member: `--name M1` then is member m1 on every start.
                if *n != p.name {
                    return Err(RestartError::NameMismatch {
                        given: n.clone(),
                        persisted: p.name,
                        path: data_dir.join(PLAN_FILE),
                    });
                }
            }
            let bootstrapped = p.cluster().cloned();
            Ok(Plan {
                reason: restart_reason(data_dir),
                name: p.name,
                data_dir: Some(data_dir.to_path_buf()),
                listen_peer_urls: pick(&flags.listen_peer_urls, p.listen_peer_urls),
                listen_client_urls: pick(&flags.listen_client_urls, p.listen_client_urls),
                advertise_client_urls: pick(&flags.advertise_client_urls, p.advertise_client_urls),
                start: Start::Restart { bootstrapped },
            })
        }
        None => {
            let mut missing = Vec::new();
            if flags.name.is_none() {
                missing.push("--name");
            }
            if flags.listen_peer_urls.is_empty() {
                missing.push("--listen-peer-url");
            }
            if flags.listen_client_urls.is_empty() {
                missing.push("--listen-client-url");
            }
            if flags.advertise_client_urls.is_empty() {
                missing.push("--advertise-client-url");
            }
            match &flags.name {
                Some(name) if missing.is_empty() => Ok(Plan {
                    reason: restart_reason(data_dir),
                    name: name.clone(),
                    data_dir: Some(data_dir.to_path_buf()),
                    listen_peer_urls: flags.listen_peer_urls.clone(),
                    listen_client_urls: flags.listen_client_urls.clone(),
                    advertise_client_urls: flags.advertise_client_urls.clone(),
                    start: Start::Restart { bootstrapped: None },
                }),
                _ => Err(RestartError::NeedFlags {
                    data_dir: data_dir.to_path_buf(),
                    missing,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Scheme;
    use crate::ids::{self, EtcdId};
    use crate::plan::{Bootstrap, ClusterState, PlannedMember};

    fn name(s: &str) -> MemberName {
        MemberName::parse(s).unwrap()
    }

    /// A bootstrap plan of member m1 of m0..m2, as `env`/`exec` persist it.
    fn stored() -> Plan {
        let url = |i: usize| format!("http://m{i}.c.test:2380");
        let members: Vec<PlannedMember> = (0..3)
            .map(|i| PlannedMember {
                name: name(&format!("m{i}")),
                target: format!("m{i}.c.test."),
                port: 2380,
                peer_url: url(i),
                client_urls: vec![format!("http://m{i}.c.test:2379")],
                addresses: vec![format!("10.0.0.{i}").parse().unwrap()],
                id: EtcdId(ids::member_id(&[url(i)], "muster:c.test")),
                this_host: i == 1,
            })
            .collect();
        let member_ids: Vec<u64> = members.iter().map(|m| m.id.0).collect();
        Plan {
            reason: "the records describe a complete new 3-member cluster".into(),
            name: name("m1"),
            data_dir: Some("/old".into()),
            listen_peer_urls: vec!["http://10.0.0.1:2380".into()],
            listen_client_urls: vec!["http://10.0.0.1:2379".into()],
            advertise_client_urls: vec!["http://m1.c.test:2379".into()],
            start: Start::Bootstrap(Bootstrap {
                domain: "c.test.".into(),
                srv_name: None,
                srv_record: "_etcd-server._tcp.c.test.".into(),
                scheme: Scheme::Http,
                matched_by: "--name m1".into(),
                token: "muster:c.test".into(),
                initial_cluster_state: ClusterState::New,
                initial_advertise_peer_urls: vec![url(1)],
                initial_cluster: (0..3)
                    .map(|i| format!("m{i}={}", url(i)))
                    .collect::<Vec<_>>()
                    .join(","),
                member_id: members[1].id,
                cluster_id: EtcdId(ids::cluster_id(&member_ids)),
                members,
            }),
        }
    }

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
    ) -> Result<Option<Plan>, RestartError> {
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

    #[test]
    fn restart_reuses_the_stored_urls_without_initial_flags() {
        let p = restart_plan(Path::new("/data"), Some(stored()), &RestartFlags::default()).unwrap();
        assert_eq!(p.mode(), crate::plan::Mode::Restart);
        assert_eq!(p.data_dir.as_deref(), Some(Path::new("/data")));
        let flags = p.etcd_flags(true);
        assert!(
            flags.iter().all(|(k, _)| !k.starts_with("initial")),
            "{flags:?}"
        );
        assert_eq!(flags[0], ("name", "m1".to_string()));
    }

    #[test]
    fn restart_refuses_another_name() {
        let flags = RestartFlags {
            name: Some(name("m2")),
            ..Default::default()
        };
        let e = restart_plan(Path::new("/data"), Some(stored()), &flags).unwrap_err();
        assert!(e.to_string().contains("bootstrapped as member m1"), "{e}");
    }

    /// Review issue 8, item 5: bootstrap took `--name M1` for member m1; the same flag
    /// on the restart is the same member.
    #[test]
    fn issue8_restart_accepts_the_name_in_another_case() {
        let flags = RestartFlags {
            name: Some(name("M1")),
            ..Default::default()
        };
        let p = restart_plan(Path::new("/data"), Some(stored()), &flags).unwrap();
        assert_eq!(p.name.as_str(), "m1");
    }

    #[test]
    fn restart_without_stored_plan_needs_flags() {
        let flags = RestartFlags {
            name: Some(name("m1")),
            ..Default::default()
        };
        let e = restart_plan(Path::new("/data"), None, &flags)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("pass --listen-peer-url, --listen-client-url, --advertise-client-url"),
            "{e}"
        );
        let flags = RestartFlags {
            name: Some(name("m1")),
            listen_peer_urls: vec!["http://10.0.0.1:2380".into()],
            listen_client_urls: vec!["http://10.0.0.1:2379".into()],
            advertise_client_urls: vec!["http://m1.c.test:2379".into()],
        };
        assert_eq!(
            restart_plan(Path::new("/data"), None, &flags)
                .unwrap()
                .name
                .as_str(),
            "m1"
        );
    }
}
