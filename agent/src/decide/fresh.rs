//! A fresh start (no WAL), pure: from what the records say and what the running cluster
//! (if any) answers, to *bootstrap*, *join* or *wait*. (*Restart* and *move* are decided
//! before any of this, from the data dir ([`super::restart`]), so that a restart needs no
//! DNS.)
//!
//! The rules, and why they are race-free when every member starts at once:
//!
//! - Nobody answers at any other member's client URL: a new cluster, *bootstrap* — but
//!   only from a complete, stable record set (the wait loop's job), never from a partial
//!   one. A join is impossible here: there is nothing to add this host to.
//! - No client URL answers, but a member answers on its peer port (etcd serves `/members`
//!   and the `X-Etcd-Cluster-Id` header from the moment it starts, its client port only
//!   once its cluster has quorum): with complete records, a peer running the cluster
//!   these records bootstrap (same cluster ID, exactly the planned members, this host's
//!   entry never started) is a member of the same bootstrap, and this host bootstraps at
//!   once; a peer running anything else (another cluster ID, other members, this host
//!   started before) holds the bootstrap back, as starting would make a second cluster.
//! - A cluster answers and lists this host as a member that has never started, with the
//!   member ID and cluster ID that these records give (etcd derives both from the peer
//!   URLs and the token, docs/etcd-discovery.md §3): that cluster is the one these
//!   records bootstrap, still bootstrapping or bootstrapped without this host so far.
//!   *Bootstrap* with the same `--initial-cluster` and `new`; etcd accepts a member of
//!   the initial cluster that starts late. This is the all-at-once race: the slowest
//!   member finds the others already up, and must not "join" them.
//! - A cluster answers without quorum (`/health` false: no leader, or no quorum read):
//!   *wait* and change nothing — it may be bootstrapping, or it may have lost quorum,
//!   which only an operator can repair (restore from a snapshot, or
//!   `--force-new-cluster`). Removing or adding members then would make it worse.
//! - A healthy cluster answers: *join*. An entry with this host's name or peer URL that
//!   is not the bootstrap entry just described is stale (the data dir was wiped, or a
//!   previous join stopped between add and start): it is removed before the add, because
//!   etcd refuses an add while a voting member is down and refuses a second entry with the
//!   same peer URL.

use crate::etcd::{Member, Membership};
use crate::ids::EtcdId;
use crate::plan::{Bootstrap, InitialCluster};
use crate::urls::EtcdUrl;

/// What a running cluster answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The client URL that answered `member list`.
    pub endpoint: String,
    /// Its member list.
    pub membership: Membership,
    /// `/health` at that URL: a leader and a quorum read.
    pub healthy: bool,
}

/// What a member answered on its peer port (`GET /members`): etcd serves it from the
/// moment it starts, before its cluster has a quorum, with the cluster ID in a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAnswer {
    /// The peer URL that answered.
    pub url: String,
    /// The cluster ID and the members as that member sees them.
    pub membership: Membership,
}

/// This host as the records describe it.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    /// Member name.
    pub name: &'a str,
    /// Advertised peer URL.
    pub peer_url: &'a str,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a new cluster from the complete records.
    Bootstrap {
        /// True when a running cluster confirmed the plan (same cluster and member ID):
        /// no need to see the records twice.
        confirmed: bool,
        /// Why.
        reason: String,
    },
    /// Add this host to the running cluster.
    Join {
        /// This host's stale entry, to remove first.
        stale: Option<Member>,
        /// Why.
        reason: String,
    },
    /// Nothing safe to do yet.
    Wait(String),
}

/// The entry of this host in a member list: same peer URL, or same name.
pub fn find_me<'a>(members: &'a [Member], me: Me<'_>) -> Option<&'a Member> {
    members
        .iter()
        .find(|m| m.peer_urls.iter().any(|u| u == me.peer_url))
        .or_else(|| {
            members
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(me.name))
        })
}

/// What the peer ports say about a bootstrap: None when no peer answered; a confirmed
/// bootstrap when every peer that answered runs the cluster these records bootstrap
/// (same cluster ID, the planned members, this host among them and never started);
/// wait when one runs anything else, as bootstrapping then would start a second cluster.
fn judge_peers(b: &Bootstrap, peers: &[PeerAnswer]) -> Option<Decision> {
    let first = peers.first()?;
    let cluster = b.cluster_id.hex();
    let mut planned: Vec<EtcdId> = b.members.iter().map(|m| m.id).collect();
    planned.sort_unstable();
    for p in peers {
        let theirs = p.membership.cluster_id.hex();
        let mut ids: Vec<EtcdId> = p.membership.members.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        let me = p.membership.members.iter().find(|m| m.id == b.member_id);
        let why = if p.membership.cluster_id != b.cluster_id {
            format!(
                "belongs to cluster {theirs}, not to cluster {cluster} that these records \
                 bootstrap: bootstrapping would start a second cluster beside it"
            )
        } else if ids != planned {
            format!(
                "runs cluster {theirs}, which these records bootstrapped once, with other \
                 members since ({} now): it is an existing cluster without quorum, not a new one",
                p.membership.members.len()
            )
        } else if me.is_some_and(Member::started) {
            format!(
                "runs cluster {theirs}, in which this host's member {} has started before: it \
                 is an existing cluster without quorum, and this host lost its data dir",
                b.member_id.hex()
            )
        } else {
            continue;
        };
        return Some(Decision::Wait(format!(
            "the member at {} (peer port) {why}; waiting: once that cluster has quorum this \
             host joins it, or remove that member's data dir if it is not to be kept",
            p.url
        )));
    }
    Some(Decision::Bootstrap {
        confirmed: true,
        reason: format!(
            "the member at {} answers on its peer port for cluster {cluster}, the new cluster \
             these records bootstrap, and lists this host as its unstarted initial member {}: \
             the records are complete for it too",
            first.url,
            b.member_id.hex()
        ),
    })
}

/// Decides. `bootstrap` is the bootstrap plan of complete records (None while they are
/// incomplete); `answered` the first client URL that answered (a healthy one if any),
/// `peers` the peer ports that answered; `asked` the client URLs probed, for the reason.
pub fn decide(
    bootstrap: Option<&Bootstrap>,
    me: Me<'_>,
    answered: Option<&Answered>,
    peers: &[PeerAnswer],
    asked: &[String],
) -> Decision {
    let Some(a) = answered else {
        if let Some(d) = bootstrap.and_then(|b| judge_peers(b, peers)) {
            return d;
        }
        let mut asked = if asked.is_empty() {
            "no other member has an address yet".to_string()
        } else {
            format!("no member answers at {}", asked.join(","))
        };
        if let Some(p) = peers.first() {
            asked.push_str(&format!(
                " (the member at {} answers on its peer port for cluster {}: that cluster is \
                 starting or has no quorum)",
                p.url,
                p.membership.cluster_id.hex()
            ));
        }
        return match bootstrap {
            Some(b) => Decision::Bootstrap {
                confirmed: false,
                reason: format!(
                    "{asked}, and the records at {} describe a complete new {}-member cluster",
                    b.srv_record,
                    b.members.len()
                ),
            },
            // Without complete records (a size from --expect or muster-size, every
            // member published) this may be a new member of a cluster that is down: its
            // members do not answer, and bootstrapping from the records would start a
            // second cluster. Only a running cluster can take it.
            None => Decision::Wait(format!(
                "{asked}; bootstrapping needs the complete set of records, and joining needs \
                 a running cluster: if this host is a new member of an existing cluster, start \
                 that cluster's members first"
            )),
        };
    };
    let cluster = a.membership.cluster_id.hex();
    let entry = find_me(&a.membership.members, me);
    if let Some(m) = entry.filter(|m| !m.started()) {
        if let Some(b) = bootstrap {
            if m.id == b.member_id && a.membership.cluster_id == b.cluster_id {
                return Decision::Bootstrap {
                    confirmed: true,
                    reason: format!(
                        "the cluster answering at {} (id {cluster}) is the one these records \
                         bootstrap and lists this host as its unstarted initial member {:x}",
                        a.endpoint, m.id
                    ),
                };
            }
        } else if !m.is_learner {
            // Without complete records the token and so the planned ID are unknown; an
            // unstarted voting entry of this host is most likely an initial member, so
            // wait rather than remove it.
            return Decision::Wait(format!(
                "the cluster at {} lists this host as an initial member that has not started; \
                 waiting for the complete records to bootstrap with it",
                a.endpoint
            ));
        }
    }
    if !a.healthy {
        return Decision::Wait(format!(
            "the cluster at {} (id {cluster}, {} members) answers but has no quorum (no leader \
             or no quorum read): no member is removed or added without quorum. If a \
             majority of its members is lost for good, restore it: `muster-agent restore` on \
             every host (README \"Backups and disaster recovery\")",
            a.endpoint,
            a.membership.members.len()
        ));
    }
    let stale = entry.cloned();
    let reason = match &stale {
        None => format!(
            "a healthy cluster (id {cluster}, {} members) answers at {} and this host is not a \
             member of it",
            a.membership.members.len(),
            a.endpoint
        ),
        Some(m) => format!(
            "a healthy cluster (id {cluster}, {} members) answers at {} and its entry for this \
             host, {m}, is stale (no data dir here): remove it and join again",
            a.membership.members.len(),
            a.endpoint
        ),
    };
    Decision::Join { stale, reason }
}

/// `--initial-cluster` for a join: every member after the add, by name (or by ID for one
/// that has not started: etcd matches `existing` members by peer URL, but this host must
/// appear under its own name), sorted. Err names a peer URL in the member list that is
/// not `scheme://host:port`.
pub fn initial_cluster(
    members: &[Member],
    me_id: EtcdId,
    me_name: &str,
) -> Result<InitialCluster, String> {
    let mut v: Vec<(String, EtcdUrl)> = Vec::new();
    for m in members {
        let n = if m.id == me_id {
            me_name.to_string()
        } else {
            m.label()
        };
        for u in &m.peer_urls {
            let url = u
                .parse()
                .map_err(|e| format!("member {m} has a peer URL etcd cannot be given: {e}"))?;
            v.push((n.clone(), url));
        }
    }
    v.sort_by_key(|(n, u)| format!("{n}={u}"));
    Ok(InitialCluster::new(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{MemberName, Scheme};
    use crate::ids;
    use crate::plan::{ClusterState, PlannedMember};

    const TOKEN: &str = "muster:c.test";

    fn url(i: usize) -> String {
        format!("http://m{i}.c.test:2380")
    }

    fn id(i: usize) -> u64 {
        ids::member_id(&[url(i)], TOKEN)
    }

    /// The bootstrap of m0..m2 as seen by m2.
    fn boot() -> Bootstrap {
        let members: Vec<PlannedMember> = (0..3)
            .map(|i| PlannedMember {
                name: MemberName::parse(&format!("m{i}")).unwrap(),
                target: format!("m{i}.c.test."),
                port: 2380,
                peer_url: url(i).as_str().into(),
                client_urls: vec![],
                addresses: vec![],
                id: EtcdId(id(i)),
                this_host: i == 2,
            })
            .collect();
        Bootstrap {
            domain: "c.test.".into(),
            srv_name: None,
            srv_record: "_etcd-server._tcp.c.test.".into(),
            scheme: Scheme::Http,
            matched_by: "--name m2".into(),
            token: TOKEN.into(),
            initial_cluster_state: ClusterState::New,
            initial_advertise_peer_urls: vec![url(2).as_str().into()],
            initial_cluster: InitialCluster::default(),
            member_id: EtcdId(id(2)),
            cluster_id: EtcdId(ids::cluster_id(&[id(0), id(1), id(2)])),
            members,
        }
    }

    fn member(i: usize, started: bool, learner: bool, mid: u64) -> Member {
        Member {
            id: EtcdId(mid),
            // Initial members have their name before they start; added ones do not.
            name: if started || !learner {
                format!("m{i}")
            } else {
                String::new()
            },
            peer_urls: vec![url(i)],
            client_urls: if started {
                vec![format!("http://m{i}.c.test:2379")]
            } else {
                vec![]
            },
            is_learner: learner,
        }
    }

    fn answered(members: Vec<Member>, cluster_id: u64, healthy: bool) -> Answered {
        Answered {
            endpoint: "http://m0.c.test:2379".into(),
            membership: Membership {
                cluster_id: EtcdId(cluster_id),
                answered_by: EtcdId(id(0)),
                members,
            },
            healthy,
        }
    }

    const ME: Me<'static> = Me {
        name: "m2",
        peer_url: "http://m2.c.test:2380",
    };

    fn bootstrapping(m2_started: bool) -> Answered {
        answered(
            vec![
                member(0, true, false, id(0)),
                member(1, true, false, id(1)),
                member(2, m2_started, false, id(2)),
            ],
            boot().cluster_id.0,
            true,
        )
    }

    #[test]
    fn nobody_answers_bootstrap_only_from_complete_records() {
        let asked = ["http://m0.c.test:2379".to_string()];
        match decide(Some(&boot()), ME, None, &[], &asked) {
            Decision::Bootstrap { confirmed, reason } => {
                assert!(!confirmed);
                assert!(reason.starts_with("no member answers at http://m0.c.test:2379, and the records at _etcd-server._tcp.c.test. describe a complete new 3-member cluster"), "{reason}");
            }
            d => panic!("{d:?}"),
        }
        // "Join when none exists" is impossible: without a cluster, incomplete records
        // only wait.
        assert!(
            matches!(decide(None, ME, None, &[], &asked), Decision::Wait(r) if r.contains("bootstrapping needs the complete set"))
        );
    }

    /// The all-at-once race: m0 and m1 are up and elected a leader before m2's agent
    /// looked; m2 is their unstarted initial member and must bootstrap, not join.
    #[test]
    fn the_last_member_of_a_bootstrapping_cluster_bootstraps_too() {
        for healthy in [true, false] {
            let mut a = bootstrapping(false);
            a.healthy = healthy;
            match decide(Some(&boot()), ME, Some(&a), &[], &[]) {
                Decision::Bootstrap {
                    confirmed: true,
                    reason,
                } => {
                    assert!(
                        reason.contains("is the one these records bootstrap"),
                        "{reason}"
                    )
                }
                d => panic!("{d:?}"),
            }
        }
    }

    #[test]
    fn a_healthy_cluster_without_this_host_is_joined() {
        let a = answered(
            vec![member(0, true, false, 5), member(1, true, false, 6)],
            99,
            true,
        );
        match decide(None, ME, Some(&a), &[], &[]) {
            Decision::Join {
                stale: None,
                reason,
            } => {
                assert!(
                    reason.contains("this host is not a member of it"),
                    "{reason}"
                )
            }
            d => panic!("{d:?}"),
        }
    }

    /// Replace: m2 lost its data dir; the cluster still has its started entry.
    #[test]
    fn a_started_entry_of_this_host_is_stale_and_removed_first() {
        match decide(Some(&boot()), ME, Some(&bootstrapping(true)), &[], &[]) {
            Decision::Join {
                stale: Some(s),
                reason,
            } => {
                assert_eq!(s.id, EtcdId(id(2)));
                assert!(reason.contains("is stale (no data dir here)"), "{reason}");
            }
            d => panic!("{d:?}"),
        }
        // A learner added by a join that never started etcd: also stale.
        let a = answered(
            vec![member(0, true, false, 5), member(2, false, true, 77)],
            99,
            true,
        );
        assert!(
            matches!(decide(None, ME, Some(&a), &[], &[]), Decision::Join { stale: Some(s), .. } if s.id == EtcdId(77))
        );
    }

    #[test]
    fn no_quorum_changes_nothing_and_points_at_recovery() {
        let a = answered(
            vec![member(0, true, false, 5), member(1, true, false, 6)],
            99,
            false,
        );
        match decide(None, ME, Some(&a), &[], &[]) {
            Decision::Wait(r) => {
                assert!(r.contains("has no quorum"), "{r}");
                assert!(r.contains("`muster-agent restore` on every host"), "{r}");
            }
            d => panic!("{d:?}"),
        }
    }

    fn peer(members: Vec<Member>, cluster_id: u64) -> PeerAnswer {
        PeerAnswer {
            url: url(0),
            membership: Membership {
                cluster_id: EtcdId(cluster_id),
                answered_by: EtcdId(0),
                members,
            },
        }
    }

    fn initial(m2_started: bool) -> Vec<Member> {
        vec![
            member(0, false, false, id(0)),
            member(1, false, false, id(1)),
            member(2, m2_started, false, id(2)),
        ]
    }

    /// Issue 19: a member that started moments ago answers only on its peer port. When
    /// it runs the cluster these records bootstrap, this host bootstraps at once.
    #[test]
    fn a_peer_of_the_same_new_cluster_confirms_the_bootstrap() {
        let asked = ["http://m0.c.test:2379".to_string()];
        let p = peer(initial(false), boot().cluster_id.0);
        match decide(Some(&boot()), ME, None, &[p], &asked) {
            Decision::Bootstrap {
                confirmed: true,
                reason,
            } => assert!(
                reason.starts_with(
                    "the member at http://m0.c.test:2380 answers on its peer port for cluster"
                ),
                "{reason}"
            ),
            d => panic!("{d:?}"),
        }
    }

    /// A peer of another cluster, of this cluster with other members, or one that saw
    /// this host started: never a bootstrap, whatever the records say.
    #[test]
    fn a_peer_of_anything_else_holds_the_bootstrap_back() {
        let b = boot();
        let cases = [
            (
                peer(initial(false), 99),
                "belongs to cluster 63, not to cluster",
            ),
            (
                peer(initial(false)[..2].to_vec(), b.cluster_id.0),
                "with other members since (2 now)",
            ),
            (peer(initial(true), b.cluster_id.0), "has started before"),
        ];
        for (p, want) in cases {
            // Even when another peer confirms: one cluster too many is a split.
            let ok = peer(initial(false), b.cluster_id.0);
            match decide(Some(&b), ME, None, &[ok, p], &[]) {
                Decision::Wait(r) => assert!(r.contains(want), "{want}: {r}"),
                d => panic!("{want}: {d:?}"),
            }
        }
        // Without complete records a peer answer only explains the wait.
        let p = peer(initial(false), b.cluster_id.0);
        match decide(None, ME, None, &[p], &["http://m0.c.test:2379".into()]) {
            Decision::Wait(r) => assert!(r.contains("answers on its peer port for cluster"), "{r}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn join_initial_cluster_names_this_host_and_keys_unstarted_members_by_id() {
        let m = vec![
            member(0, true, false, 5),
            member(1, false, true, 0x1f),
            member(2, false, true, 77),
        ];
        assert_eq!(
            initial_cluster(&m, EtcdId(77), "m2").unwrap().to_string(),
            "1f=http://m1.c.test:2380,m0=http://m0.c.test:2380,m2=http://m2.c.test:2380"
        );
    }
}
