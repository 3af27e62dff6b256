//! Restart and move, pure: a member whose data dir has a WAL starts from its persisted
//! plan ([`restart_plan`]), and moves ([`relocate`]) when one bounded read of the records
//! gives it other local addresses or another peer URL.
//!
//! etcd skips discovery entirely once `<data-dir>/member/wal` exists and ignores the
//! `--initial-*` flags; a restart must therefore not wait for DNS, which may be the thing
//! that is down. The only things etcd still needs from us are its name and its listen and
//! advertise URLs, which DNS gave at bootstrap: the bootstrap plan is persisted as
//! `<data-dir>/muster-plan.json` ([`crate::plan_file`]) and reused. Without that file the
//! operator must give them as flags. The records are read once, bounded, only to follow
//! a move ([`super::reread`]).

use std::path::{Path, PathBuf};

use crate::cluster::MemberName;
use crate::config::RestartFlags;
use crate::plan::{MemberUpdate, Moved, Plan, Start};
use crate::plan_file::PLAN_FILE;
use crate::urls::{self, EtcdUrl};

/// Errors of the restart path.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// Restart without a persisted plan and without the flags that replace it.
    #[error(
        "{} has a WAL, so this is a restart and DNS is not consulted, but {} is missing, so \
         muster-agent does not know this member's URLs; pass {} (or --domain, to take them from the \
         records; or start etcd without muster-agent)",
        data_dir.display(), data_dir.join(PLAN_FILE).display(), missing.join(", ")
    )]
    NeedFlags {
        /// The data dir.
        data_dir: PathBuf,
        /// The missing flags.
        missing: Vec<&'static str>,
    },
    /// etcd refused the `member update` of a move.
    #[error(
        "cannot record the new peer URL of member {id}: {source}; etcd was not started (the \
         other members would dial the old URL)"
    )]
    Update {
        /// The member ID, hex.
        id: String,
        /// etcd's answer.
        source: crate::etcd::EtcdError,
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
    let pick = |given: &Vec<EtcdUrl>, stored: Vec<EtcdUrl>| {
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
            let peer_urls = registered_peer_url(&p).cloned().into_iter().collect();
            Ok(Plan {
                reason: restart_reason(data_dir),
                name: p.name,
                data_dir: Some(data_dir.to_path_buf()),
                listen_peer_urls: pick(&flags.listen_peer_urls, p.listen_peer_urls),
                listen_client_urls: pick(&flags.listen_client_urls, p.listen_client_urls),
                advertise_client_urls: pick(&flags.advertise_client_urls, p.advertise_client_urls),
                start: Start::Restart {
                    bootstrapped,
                    moved: None,
                    peer_urls,
                },
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
                    start: Start::Restart {
                        bootstrapped: None,
                        moved: None,
                        peer_urls: vec![],
                    },
                }),
                _ => Err(RestartError::NeedFlags {
                    data_dir: data_dir.to_path_buf(),
                    missing,
                }),
            }
        }
    }
}

/// What the records say about this member now, from one DNS read at a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The SRV owner name read.
    pub record: String,
    /// The member's peer URL from the records.
    pub peer_url: EtcdUrl,
    /// Listen peer URLs on the member's addresses that are this host's (empty when none
    /// is).
    pub listen_peer_urls: Vec<EtcdUrl>,
    /// Listen client URLs on those addresses.
    pub listen_client_urls: Vec<EtcdUrl>,
    /// Advertised client URLs from the records.
    pub advertise_client_urls: Vec<EtcdUrl>,
    /// Every address the records give the member.
    pub addresses: Vec<std::net::IpAddr>,
}

/// The peer URL etcd registered for this member: the one it was bootstrapped or added
/// with, or moved to, as the persisted plan says.
pub fn registered_peer_url(p: &Plan) -> Option<&EtcdUrl> {
    let urls = match &p.start {
        Start::Join(j) => &j.initial_advertise_peer_urls,
        _ => &p.cluster()?.initial_advertise_peer_urls,
    };
    urls.first()
}

/// This member's ID, as the persisted plan says (unknown for a join planned but not
/// added).
pub fn registered_member_id(p: &Plan) -> Option<crate::ids::EtcdId> {
    match &p.start {
        Start::Join(j) => j.member_id,
        _ => p.cluster().map(|c| c.member_id),
    }
}

/// The URLs etcd gets after a move.
struct MovedUrls {
    listen_peer: Vec<EtcdUrl>,
    listen_client: Vec<EtcdUrl>,
    advertise_client: Vec<EtcdUrl>,
}

impl MovedUrls {
    /// Flags given now win as they are; persisted `0.0.0.0`/`[::]` URLs keep their
    /// address but follow the peer port; otherwise the records' local addresses.
    fn new(base: &Plan, flags: &RestartFlags, now: &Current, peer_port: u16) -> MovedUrls {
        let listen_peer = if !flags.listen_peer_urls.is_empty() {
            base.listen_peer_urls.clone()
        } else if base.listen_peer_urls.iter().any(EtcdUrl::is_unspecified) {
            base.listen_peer_urls
                .iter()
                .map(|u| u.with_port(peer_port))
                .collect()
        } else {
            now.listen_peer_urls
                .iter()
                .map(|u| u.with_port(peer_port))
                .collect()
        };
        let keep_client = !flags.listen_client_urls.is_empty()
            || base.listen_client_urls.iter().any(EtcdUrl::is_unspecified)
            || now.listen_client_urls.is_empty();
        let listen_client = if keep_client {
            base.listen_client_urls.clone()
        } else {
            now.listen_client_urls.clone()
        };
        let advertise_client = if flags.advertise_client_urls.is_empty() {
            now.advertise_client_urls.clone()
        } else {
            base.advertise_client_urls.clone()
        };
        MovedUrls {
            listen_peer,
            listen_client,
            advertise_client,
        }
    }

    /// True when etcd gets the URLs it had.
    fn same_as(&self, base: &Plan) -> bool {
        self.listen_peer == base.listen_peer_urls
            && self.listen_client == base.listen_client_urls
            && self.advertise_client == base.advertise_client_urls
    }

    /// What changed, for the reason.
    fn changes(&self, base: &Plan) -> Vec<String> {
        let mut what = Vec::new();
        if self.listen_peer != base.listen_peer_urls
            || self.listen_client != base.listen_client_urls
        {
            let both = |a: &[EtcdUrl], b: &[EtcdUrl]| urls::join(&[a, b].concat());
            what.push(format!(
                "listens at {} (was {})",
                both(&self.listen_peer, &self.listen_client),
                both(&base.listen_peer_urls, &base.listen_client_urls)
            ));
        }
        if self.advertise_client != base.advertise_client_urls {
            what.push(format!(
                "advertises client URL(s) {} (was {})",
                urls::join(&self.advertise_client),
                urls::join(&base.advertise_client_urls)
            ));
        }
        what
    }
}

/// What became of the peer URL, for the reason.
fn peer_change(update: MemberUpdate, registered: &EtcdUrl, now: &EtcdUrl) -> String {
    match update {
        MemberUpdate::NotNeeded => format!(
            "keeps peer URL {registered}: its text did not change, so the membership needs no \
             update"
        ),
        MemberUpdate::Done => format!(
            "peer URL {now} (was {registered}), recorded with member update before etcd starts"
        ),
        MemberUpdate::Already => {
            format!("peer URL {now} (was {registered}), which the membership already has")
        }
        MemberUpdate::Planned => format!(
            "peer URL {now} (was {registered}), to be recorded with member update before etcd \
             starts"
        ),
        MemberUpdate::NoQuorum => format!(
            "keeps peer URL {registered} although the records give {now}: no healthy cluster \
             answers, and member update needs quorum; start again once the cluster is healthy"
        ),
    }
}

/// The plan of a restart whose records were read: `base` (from [`restart_plan`]) when
/// the records still give this member what it has, else a *move* — listen URLs on the
/// member's new local addresses, advertised client URLs from the records, and the peer
/// URL from the records when `update` says the membership has (or will have) it.
///
/// `registered` is the peer URL etcd has for this member; `update` what the running
/// cluster did about a changed peer URL (only looked at when the text changed). Listen
/// URLs given as flags now, or persisted as `0.0.0.0`/`[::]`, keep their addresses. When
/// none of the member's addresses in the records is this host's, the records are not
/// about this host (or not yet): nothing moves.
pub fn relocate(
    base: Plan,
    flags: &RestartFlags,
    registered: &EtcdUrl,
    now: &Current,
    update: MemberUpdate,
) -> Plan {
    let wal = base
        .data_dir
        .as_deref()
        .map(|d| d.join("member").join("wal").display().to_string())
        .unwrap_or_default();
    let addrs = now
        .addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let flagged = !flags.listen_peer_urls.is_empty() && !flags.listen_client_urls.is_empty();
    if now.listen_peer_urls.is_empty() && !flagged {
        return Plan {
            reason: format!(
                "{wal} exists: etcd restarts from its stored membership; the records at {} give \
                 {} the address(es) {addrs}, none of them this host's, so the URLs in {PLAN_FILE} \
                 are used",
                now.record, base.name
            ),
            ..base
        };
    }
    let update = if now.peer_url != *registered {
        update
    } else {
        MemberUpdate::NotNeeded
    };
    let peer_url = if update == MemberUpdate::NoQuorum {
        registered.clone()
    } else {
        now.peer_url.clone()
    };
    let moved = MovedUrls::new(&base, flags, now, peer_url.port);
    if peer_url == *registered && moved.same_as(&base) && update != MemberUpdate::NoQuorum {
        return Plan {
            reason: format!(
                "{wal} exists: etcd restarts from its stored membership; the records at {} \
                 still give {} peer URL {registered} and address(es) {addrs}",
                now.record, base.name
            ),
            ..base
        };
    }
    let mut what = moved.changes(&base);
    what.push(peer_change(update, registered, &now.peer_url));
    Plan {
        reason: format!(
            "{wal} exists and the records at {} give {} address(es) {addrs} and peer URL {}: \
             it {}",
            now.record,
            base.name,
            now.peer_url,
            what.join("; ")
        ),
        start: Start::Restart {
            bootstrapped: base.cluster().cloned(),
            // The peer URL the membership has (or will have before etcd starts).
            peer_urls: vec![peer_url.clone()],
            moved: Some(Box::new(Moved {
                peer_url_before: registered.clone(),
                peer_url,
                member_update: update,
                listen_peer_urls_before: base.listen_peer_urls.clone(),
                listen_client_urls_before: base.listen_client_urls.clone(),
                advertise_client_urls_before: base.advertise_client_urls.clone(),
            })),
        },
        listen_peer_urls: moved.listen_peer,
        listen_client_urls: moved.listen_client,
        advertise_client_urls: moved.advertise_client,
        ..base
    }
}

/// The persisted plan after a move: the new URLs, and the new peer URL where the plan
/// keeps this member's (so that `leave`, `promote` and the next restart, with or without
/// DNS, know it). Mode and IDs stay: they say how this data dir was created.
pub fn moved_plan(mut persisted: Plan, moved: &Plan, now: &Current) -> Plan {
    persisted.listen_peer_urls = moved.listen_peer_urls.clone();
    persisted.listen_client_urls = moved.listen_client_urls.clone();
    persisted.advertise_client_urls = moved.advertise_client_urls.clone();
    let Start::Restart { moved: Some(m), .. } = &moved.start else {
        return persisted;
    };
    let peer = m.peer_url.clone();
    match &mut persisted.start {
        Start::Join(j) => j.initial_advertise_peer_urls = vec![peer],
        Start::Bootstrap(b)
        | Start::Restart {
            bootstrapped: Some(b),
            ..
        } => {
            b.initial_advertise_peer_urls = vec![peer.clone()];
            for pm in b.members.iter_mut().filter(|pm| pm.this_host) {
                pm.port = peer.port;
                pm.peer_url = peer.clone();
                pm.addresses = now.addresses.clone();
                pm.client_urls = moved.advertise_client_urls.clone();
            }
        }
        Start::Restart { .. } => {}
    }
    persisted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::sample::stored;
    use crate::plan::MemberUpdate;

    fn name(s: &str) -> MemberName {
        MemberName::parse(s).unwrap()
    }

    #[test]
    fn restart_reuses_the_stored_urls_without_initial_flags() {
        let p = restart_plan(Path::new("/data"), Some(stored()), &RestartFlags::default()).unwrap();
        assert_eq!(p.mode(), crate::plan::Mode::Restart);
        assert_eq!(p.data_dir.as_deref(), Some(Path::new("/data")));
        let flags = p.etcd_flags(true);
        // Issue 19: only the registered peer URL, which etcd names in its messages.
        let initial: Vec<_> = flags
            .iter()
            .filter(|(k, _)| k.starts_with("initial"))
            .collect();
        assert_eq!(
            initial,
            [&("initial-advertise-peer-urls", REGISTERED.to_string())],
            "{flags:?}"
        );
        assert_eq!(flags[0], ("name", "m1".to_string()));
    }

    /// What the records give m1 now: `addr`, peer port `port`.
    fn now(addr: &str, port: u16) -> Current {
        Current {
            record: "_etcd-server._tcp.c.test.".into(),
            peer_url: format!("http://m1.c.test:{port}").as_str().into(),
            listen_peer_urls: vec![format!("http://{addr}:{port}").as_str().into()],
            listen_client_urls: vec![format!("http://{addr}:2379").as_str().into()],
            advertise_client_urls: vec!["http://m1.c.test:2379".into()],
            addresses: vec![addr.parse().unwrap()],
        }
    }

    fn base() -> Plan {
        restart_plan(Path::new("/data"), Some(stored()), &RestartFlags::default()).unwrap()
    }

    const REGISTERED: &str = "http://m1.c.test:2380";

    fn moved(p: &Plan) -> &crate::plan::Moved {
        match &p.start {
            Start::Restart { moved: Some(m), .. } => m,
            other => panic!("not a move: {other:?}"),
        }
    }

    #[test]
    fn records_that_agree_are_a_plain_restart() {
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &now("10.0.0.1", 2380),
            MemberUpdate::NotNeeded,
        );
        assert_eq!(p.mode(), crate::plan::Mode::Restart);
        assert!(
            p.reason
                .ends_with("still give m1 peer URL http://m1.c.test:2380 and address(es) 10.0.0.1"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn a_new_address_under_a_name_moves_the_listen_urls_only() {
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &now("10.0.0.9", 2380),
            MemberUpdate::Done,
        );
        assert_eq!(p.mode(), crate::plan::Mode::Move);
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.9:2380"]);
        assert_eq!(p.listen_client_urls, ["http://10.0.0.9:2379"]);
        let m = moved(&p);
        // The URL text is unchanged: whatever the caller said, there is nothing to update.
        assert_eq!(m.member_update, MemberUpdate::NotNeeded);
        assert_eq!(m.peer_url, REGISTERED);
        assert_eq!(m.listen_peer_urls_before, ["http://10.0.0.1:2380"]);
        assert!(p.reason.contains("listens at http://10.0.0.9:2380,http://10.0.0.9:2379 (was http://10.0.0.1:2380,http://10.0.0.1:2379); keeps peer URL http://m1.c.test:2380: its text did not change"), "{}", p.reason);
        assert!(p
            .etcd_flags(true)
            .iter()
            .all(|(k, v)| !k.starts_with("initial")
                || (*k == "initial-advertise-peer-urls" && v == REGISTERED)));
        // The JSON form keeps the mode and the move.
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"mode\":\"move\""), "{json}");
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), p);
    }

    #[test]
    fn a_new_peer_port_is_recorded_or_kept_without_quorum() {
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &now("10.0.0.1", 2480),
            MemberUpdate::Done,
        );
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.1:2480"]);
        assert_eq!(moved(&p).peer_url, "http://m1.c.test:2480");
        assert!(
            p.reason
                .contains("recorded with member update before etcd starts"),
            "{}",
            p.reason
        );

        // No quorum: etcd keeps the registered URL, so it listens at its port, on the
        // new address.
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &now("10.0.0.9", 2480),
            MemberUpdate::NoQuorum,
        );
        assert_eq!(p.mode(), crate::plan::Mode::Move);
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.9:2380"]);
        assert_eq!(moved(&p).peer_url, REGISTERED);
        assert!(
            p.reason.contains("member update needs quorum"),
            "{}",
            p.reason
        );
    }

    #[test]
    fn records_without_a_local_address_or_flags_keep_their_urls() {
        let mut n = now("10.0.0.9", 2380);
        n.listen_peer_urls.clear();
        n.listen_client_urls.clear();
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &n,
            MemberUpdate::NotNeeded,
        );
        assert_eq!(p.mode(), crate::plan::Mode::Restart);
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.1:2380"]);
        assert!(
            p.reason.contains("10.0.0.9, none of them this host's"),
            "{}",
            p.reason
        );

        // Listen URLs given now are used as they are.
        let flags = RestartFlags {
            listen_peer_urls: vec!["http://0.0.0.0:2380".into()],
            listen_client_urls: vec!["http://0.0.0.0:2379".into()],
            ..Default::default()
        };
        let b = restart_plan(Path::new("/data"), Some(stored()), &flags).unwrap();
        let p = relocate(
            b,
            &flags,
            &REGISTERED.into(),
            &now("10.0.0.9", 2480),
            MemberUpdate::Done,
        );
        assert_eq!(p.listen_peer_urls, ["http://0.0.0.0:2380"]);

        // Persisted 0.0.0.0 follows the peer port.
        let mut s = stored();
        s.listen_peer_urls = vec!["http://0.0.0.0:2380".into()];
        let b = restart_plan(Path::new("/data"), Some(s), &RestartFlags::default()).unwrap();
        let p = relocate(
            b,
            &RestartFlags::default(),
            &REGISTERED.into(),
            &now("10.0.0.9", 2480),
            MemberUpdate::Done,
        );
        assert_eq!(p.listen_peer_urls, ["http://0.0.0.0:2480"]);
    }

    #[test]
    fn the_persisted_plan_follows_a_move() {
        let n = now("10.0.0.9", 2480);
        let p = relocate(
            base(),
            &RestartFlags::default(),
            &REGISTERED.into(),
            &n,
            MemberUpdate::Done,
        );
        let saved = moved_plan(stored(), &p, &n);
        assert_eq!(saved.mode(), crate::plan::Mode::Bootstrap);
        assert_eq!(
            registered_peer_url(&saved).map(EtcdUrl::as_str),
            Some("http://m1.c.test:2480")
        );
        assert_eq!(saved.listen_peer_urls, ["http://10.0.0.9:2480"]);
        let me = saved
            .cluster()
            .unwrap()
            .members
            .iter()
            .find(|m| m.this_host)
            .unwrap();
        assert_eq!((me.port, me.addresses.clone()), (2480, n.addresses.clone()));
        assert_eq!(
            registered_member_id(&saved),
            registered_member_id(&stored())
        );
        // It still loads: the member ID check of the JSON form holds.
        let dir = tempfile::tempdir().unwrap();
        crate::plan_file::save(dir.path(), &saved).unwrap();
        assert_eq!(crate::plan_file::load(dir.path()).unwrap(), Some(saved));
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
