//! Leave: remove this member from its cluster, for decommissioning or scale-down. Never
//! part of an ordinary stop: a restart must find its member where it left it.
//!
//! Refused unless `--force` when it would remove the last member, or when the voting
//! members left would not have a quorum among those that are up ([`check`], pure). After
//! the removal the data dir's `member` directory is renamed aside, so that the next start
//! on this host is a join, not the restart of a removed member (which etcd refuses).

use std::path::{Path, PathBuf};

use crate::etcd::{EtcdError, Member};

/// Why a leave is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The only member.
    #[error(
        "{name} is the last member of the cluster: removing it would destroy the cluster \
         and its data; stop etcd instead, or pass --force"
    )]
    LastMember {
        /// Member name.
        name: String,
    },
    /// The voters left would not have quorum among those up.
    #[error(
        "removing {name} would break quorum: {up} of the {left} voting members left are up \
         ({down} down), and {needed} are needed; bring them back first, or pass --force"
    )]
    Quorum {
        /// Member name.
        name: String,
        /// Voting members after the removal.
        left: usize,
        /// Of those, up.
        up: usize,
        /// Names of those down.
        down: String,
        /// Quorum of `left`.
        needed: usize,
    },
}

/// Checks a leave of `me` from `members`; `up` says whether another member answers.
pub fn check(members: &[Member], me: &Member, up: impl Fn(&Member) -> bool) -> Result<(), Refusal> {
    let name = me.label();
    if members.iter().all(|m| m.id == me.id) {
        return Err(Refusal::LastMember { name });
    }
    if me.is_learner {
        // A learner never counts towards quorum.
        return Ok(());
    }
    let others: Vec<&Member> = members
        .iter()
        .filter(|m| m.id != me.id && !m.is_learner)
        .collect();
    if others.is_empty() {
        // Only learners would be left: a cluster without a voter cannot commit anything.
        return Err(Refusal::LastMember { name });
    }
    let (up_v, down_v): (Vec<&Member>, Vec<&Member>) = others.iter().partition(|m| up(m));
    let needed = others.len() / 2 + 1;
    if up_v.len() < needed {
        return Err(Refusal::Quorum {
            name,
            left: others.len(),
            up: up_v.len(),
            down: down_v
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", "),
            needed,
        });
    }
    Ok(())
}

/// Renames `<data-dir>/member` to `member.<label>-<unix seconds>` (`-2`, `-3`, ... added
/// when that exists); returns the new path, or None when there was no member directory.
/// Used by `leave` (`left`) and for a join that was interrupted (`interrupted`).
pub fn set_aside(data_dir: &Path, label: &str) -> std::io::Result<Option<PathBuf>> {
    let member = data_dir.join("member");
    if !member.exists() {
        return Ok(None);
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let base = format!("member.{label}-{secs}");
    let mut to = data_dir.join(&base);
    for n in 2u32.. {
        if !to.exists() {
            break;
        }
        to = data_dir.join(format!("{base}-{n}"));
    }
    std::fs::rename(&member, &to)?;
    Ok(Some(to))
}

/// Errors of `muster-agent leave`.
#[derive(Debug, thiserror::Error)]
pub enum LeaveError {
    /// Refused (see [`Refusal`]).
    #[error("leave refused: {0}")]
    Refused(#[from] Refusal),
    /// etcd could not be asked or refused.
    #[error("cannot leave: {0}")]
    Etcd(#[from] EtcdError),
    /// The data dir has no plan telling which member this is.
    #[error("{0}")]
    NoPlan(String),
    /// The member directory cannot be set aside.
    #[error("removed from the cluster, but cannot rename {}: {source}; remove it before the next start", path.display())]
    SetAside {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(i: u64, learner: bool) -> Member {
        Member {
            id: crate::ids::EtcdId(i),
            name: format!("m{i}"),
            peer_urls: vec![format!("http://m{i}:2380")],
            client_urls: vec![],
            is_learner: learner,
        }
    }

    #[test]
    fn the_last_member_never_leaves() {
        let e = check(&[m(1, false)], &m(1, false), |_| true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m1 is the last member of the cluster: removing it would destroy the cluster and its data; stop etcd instead, or pass --force"
        );
    }

    #[test]
    fn leave_keeps_a_quorum_of_the_members_left() {
        let three = [m(1, false), m(2, false), m(3, false)];
        assert_eq!(check(&three, &three[0], |_| true), Ok(()));
        // m3 is down: m2 alone is not a quorum of {m2, m3}.
        let e = check(&three, &three[0], |x| x.id != crate::ids::EtcdId(3)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "removing m1 would break quorum: 1 of the 2 voting members left are up (m3 down), and 2 are needed; bring them back first, or pass --force"
        );
        // A learner leaves freely; a voter may not leave only learners behind.
        let mixed = [m(1, false), m(2, true)];
        assert_eq!(check(&mixed, &mixed[1], |_| false), Ok(()));
        assert!(matches!(
            check(&mixed, &mixed[0], |_| true),
            Err(Refusal::LastMember { .. })
        ));
    }

    #[test]
    fn the_member_dir_is_set_aside() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(set_aside(d.path(), "left").unwrap(), None);
        std::fs::create_dir_all(d.path().join("member/wal")).unwrap();
        let to = set_aside(d.path(), "left").unwrap().unwrap();
        assert!(to.join("wal").is_dir());
        assert!(!d.path().join("member").exists());
        // A second one in the same second gets its own name.
        std::fs::create_dir_all(d.path().join("member/wal")).unwrap();
        let again = set_aside(d.path(), "left").unwrap().unwrap();
        assert_ne!(again, to);
        assert!(again.join("wal").is_dir() && to.join("wal").is_dir());
    }
}
