//! An interrupted join: a data dir with a WAL that a join created, whose member the
//! cluster lists as never started. It is moved aside and this start joins afresh, when
//! the cluster joined answers with quorum; otherwise it restarts as it is.

use std::path::Path;
use std::time::Duration;

use crate::etcd::{Access, Client};
use crate::ids::EtcdId;
use crate::leave::{self, LeaveError};
use crate::plan::{Plan, Start};
use crate::{notify, plan_file, Error};

/// Whether the member a join added, whose data dir has a WAL now, is a join that was
/// interrupted: the cluster lists it as never started (it never caught up far enough to
/// publish its name and client URLs: etcd killed right after the add, or during the
/// catch-up, and its WAL may not even hold the cluster's membership). Such a data dir
/// is worth nothing (a learner's data is a copy), and etcd restarting from it may never
/// catch up; Some(why) says so. None for a voting member or a learner that started
/// (restarted as it is, and the promoter promotes a learner), and for a member the
/// cluster does not list (etcd says it was removed).
pub fn interrupted(list: &crate::etcd::Membership, id: EtcdId) -> Option<String> {
    let m = list.members.iter().find(|m| m.id == id)?;
    (!m.started()).then(|| {
        format!(
            "cluster {:x} lists this data dir's member {m} as never started: the join was \
             interrupted before the {} caught up",
            list.cluster_id,
            if m.is_learner { "learner" } else { "member" }
        )
    })
}

/// The etcd access of a restart: this member's etcd is down, and the others answer
/// quickly or not at all.
fn client_access(access: &Access) -> Access {
    Access {
        request_timeout: Duration::from_secs(2),
        ..access.clone()
    }
}

/// A data dir with a WAL that a join created, whose member the cluster lists as never
/// started ([`interrupted`]): the join was interrupted. When the cluster
/// that answers is the one joined and is healthy, the member data is moved aside
/// (`member.interrupted-<time>`) and true returned: this start then joins afresh,
/// removing the stale entry first. No answer, another cluster, no quorum, or not a join:
/// false, and the data dir restarts as it is (a restart never depends on the cluster).
pub fn rejoin_if_interrupted(access: &Access, dir: &Path) -> Result<bool, Error> {
    let Ok(Some(Plan {
        start: Start::Join(j),
        name,
        ..
    })) = plan_file::load(dir)
    else {
        return Ok(false);
    };
    let Some(id) = j.member_id else {
        return Ok(false);
    };
    let Ok(client) = Client::new(j.endpoints.clone(), client_access(access)) else {
        return Ok(false);
    };
    let Ok(list) = client.list() else {
        return Ok(false);
    };
    if list.cluster_id != j.cluster_id {
        return Ok(false);
    }
    let Some(why) = interrupted(&list, id) else {
        return Ok(false);
    };
    let current = Client::new(list.client_endpoints(id), client_access(access)).ok();
    let healthy = current
        .iter()
        .chain(std::iter::once(&client))
        .any(|c| c.endpoints().iter().any(|e| c.healthy_at(&e.url)));
    if !healthy {
        eprintln!("muster-agent: {why}; the cluster has no quorum, so {name} restarts as it is");
        return Ok(false);
    }
    let to = leave::set_aside(dir, "interrupted").map_err(|source| LeaveError::SetAside {
        path: dir.join("member"),
        source,
    })?;
    let line = format!(
        "interrupted join of {name}: {why}; moved the member data to {}: joining afresh",
        to.map(|p| p.display().to_string()).unwrap_or_default()
    );
    eprintln!("muster-agent: {line}");
    notify::status(&line);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcd::Member;

    #[test]
    fn an_unstarted_entry_of_a_joined_data_dir_is_an_interrupted_join() {
        let m = |id: u64, learner: bool, started: bool| Member {
            id: EtcdId(id),
            name: if started {
                format!("m{id}")
            } else {
                String::new()
            },
            peer_urls: vec![format!("http://m{id}:2380")],
            client_urls: if started {
                vec![format!("http://m{id}:2379")]
            } else {
                vec![]
            },
            is_learner: learner,
        };
        let list = |members| crate::etcd::Membership {
            cluster_id: EtcdId(0xabc),
            answered_by: EtcdId(1),
            members,
        };
        let l = list(vec![m(1, false, true), m(7, true, false)]);
        let why = interrupted(&l, EtcdId(7)).unwrap();
        assert_eq!(
            why,
            "cluster abc lists this data dir's member <unnamed> (7, http://m7:2380, learner, never \
             started) as never started: the join was interrupted before the learner caught up"
        );
        // A learner that started, a voter, a member gone: restarted as they are.
        assert_eq!(
            interrupted(&list(vec![m(1, false, true), m(7, true, true)]), EtcdId(7)),
            None
        );
        assert_eq!(interrupted(&list(vec![m(7, false, true)]), EtcdId(7)), None);
        assert_eq!(interrupted(&list(vec![m(1, false, true)]), EtcdId(7)), None);
    }
}
