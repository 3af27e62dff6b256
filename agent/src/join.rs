//! Join, the effects: ask the running cluster ([`EtcdProbe`], the wait loop's probe),
//! then remove this host's stale entry and add it as a learner ([`enact`]), retrying
//! what etcd says will pass (one learner at a time, a reconfiguration right after
//! another) with backoff and a progress line, until `--timeout`.
//!
//! The order follows docs/etcd-discovery.md §8: remove before add (etcd refuses an add
//! while a voting member is down, and a second entry with the same peer URL); add as a
//! learner, so a member that never catches up never counts towards quorum; start etcd
//! with `existing` and the membership from the add response. Promotion comes later, from
//! [`crate::promote`], once etcd runs.
//!
//! Limitations: a learner whose etcd never starts blocks every other join (etcd 3.4
//! allows one learner); the progress line names it so that an operator can remove it.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::decide::{self, Answered, Me, PeerAnswer};
use crate::etcd::{msg, Access, Client, Endpoint, EtcdError, Member};
use crate::ids::EtcdId;
use crate::plan::{Plan, Start};
use crate::wait::{Probed, Targets};

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// etcd refused in a way retrying cannot fix.
    #[error("cannot join the cluster: {0}")]
    Refused(EtcdError),
    /// `--timeout` passed while waiting for a retryable condition.
    #[error("timed out after {} joining the cluster: {last}; nothing was added", humantime::format_duration(*timeout))]
    Timeout {
        /// `--timeout`.
        timeout: Duration,
        /// The last thing waited for.
        last: String,
    },
    /// The plan is not a join.
    #[error("not a join plan")]
    NotJoin,
}

/// The real probe: every client URL (`member list`, then `/health` there) and every
/// peer URL (`/members`) asked at once, each on its own thread with the round's budget.
pub struct EtcdProbe {
    /// TLS and authentication.
    pub access: Access,
}

/// One endpoint's answer to the probe (a client's with its place in the targets).
enum Reply {
    Client(usize, Option<Answered>),
    Peer(Option<PeerAnswer>),
}

impl crate::wait::Probe for EtcdProbe {
    fn probe(
        &self,
        targets: &Targets,
        budget: Duration,
        enough: &dyn Fn(&Probed) -> bool,
    ) -> Probed {
        let mut probed = Probed::default();
        let access = Access {
            request_timeout: budget,
            ..self.access.clone()
        };
        let all: Vec<Endpoint> = targets
            .clients
            .iter()
            .chain(&targets.peers)
            .cloned()
            .collect();
        let Ok(client) = Client::new(all, access) else {
            return probed;
        };
        let client = Arc::new(client);
        let (tx, rx) = mpsc::channel();
        let mut pending = 0usize;
        let jobs = targets
            .clients
            .iter()
            .enumerate()
            .map(|(i, e)| (e.url.clone(), Some(i)))
            .chain(targets.peers.iter().map(|e| (e.url.clone(), None)));
        for (url, place) in jobs {
            let (client, tx) = (client.clone(), tx.clone());
            let ask = move || {
                let reply = if let Some(i) = place {
                    Reply::Client(
                        i,
                        client.list_at(&url).ok().map(|membership| Answered {
                            healthy: client.healthy_at(&url),
                            endpoint: url,
                            membership,
                        }),
                    )
                } else {
                    Reply::Peer(
                        client
                            .peer_members_at(&url)
                            .ok()
                            .map(|membership| PeerAnswer { url, membership }),
                    )
                };
                // The receiver is gone when the round decided without this answer.
                let _ = tx.send(reply);
            };
            // A thread that cannot start is an endpoint that does not answer.
            if std::thread::Builder::new().spawn(ask).is_ok() {
                pending += 1;
            }
        }
        drop(tx);
        let end = Instant::now() + budget;
        // The place of the answer kept: healthy before unhealthy, then target order.
        let mut kept: Option<(bool, usize)> = None;
        while pending > 0 {
            let Ok(reply) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) else {
                // Out of budget: the threads left end on their own request timeout.
                break;
            };
            pending -= 1;
            match reply {
                Reply::Client(i, Some(a)) if kept.is_none_or(|k| (!a.healthy, i) < k) => {
                    kept = Some((!a.healthy, i));
                    probed.answered = Some(a);
                }
                Reply::Client(..) => {}
                Reply::Peer(p) => probed.peers.extend(p),
            }
            if enough(&probed) {
                break;
            }
        }
        // The order answers arrived in is chance; the reason names the first by URL.
        probed.peers.sort_by(|a, b| a.url.cmp(&b.url));
        probed
    }
}

/// Delay before retry `n` (0-based): 0.5 s doubling to 5 s.
fn delay(n: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << n.min(4))).min(Duration::from_secs(5))
}

/// The learners of a member list, for the progress line.
fn learners(members: &[Member]) -> String {
    members
        .iter()
        .filter(|m| m.is_learner)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes this host's stale entry (if the current list still has one) and adds this
/// host as a learner; returns the plan with the member ID and `--initial-cluster` from
/// the add response. `progress` gets one line per retry.
pub fn enact(
    plan: Plan,
    access: &Access,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Plan, JoinError> {
    let Start::Join(mut join) = plan.start.clone() else {
        return Err(JoinError::NotJoin);
    };
    let client = Client::new(join.endpoints.clone(), access.clone()).map_err(JoinError::Refused)?;
    let peer_urls = join.initial_advertise_peer_urls.clone();
    let me = Me {
        name: plan.name.as_str(),
        peer_url: peer_urls.first().map_or("", String::as_str),
    };
    let start = Instant::now();
    let mut removed = join.removed.clone();
    for attempt in 0u32.. {
        let waiting = match step(&client, me, &peer_urls, &mut removed, &mut progress) {
            Ok((id, members)) => {
                join.member_id = Some(EtcdId(id));
                join.initial_cluster = decide::initial_cluster(&members, id, me.name);
                join.removed = removed;
                return Ok(Plan {
                    start: Start::Join(join),
                    ..plan
                });
            }
            Err(Step::Fatal(e)) => return Err(JoinError::Refused(e)),
            Err(Step::Wait(why)) => why,
        };
        if start.elapsed() >= timeout {
            return Err(JoinError::Timeout {
                timeout,
                last: waiting,
            });
        }
        progress(&format!(
            "join of {}: {waiting} (attempt {}, {:.1}s)",
            me.name,
            attempt + 1,
            start.elapsed().as_secs_f64()
        ));
        std::thread::sleep(delay(attempt).min(timeout.saturating_sub(start.elapsed())));
    }
    unreachable!("the attempt counter is unbounded")
}

enum Step {
    Fatal(EtcdError),
    Wait(String),
}

/// One attempt: list, remove the stale entry, add.
fn step(
    client: &Client,
    me: Me<'_>,
    peer_urls: &[String],
    removed: &mut Option<String>,
    progress: &mut impl FnMut(&str),
) -> Result<(u64, Vec<Member>), Step> {
    let retry = |e: EtcdError| match e {
        EtcdError::Api { .. } if !(e.says(msg::UNHEALTHY) || e.says(msg::NOT_ENOUGH_STARTED)) => {
            Step::Fatal(e)
        }
        e => Step::Wait(e.to_string()),
    };
    let list = client.list().map_err(retry)?;
    if !client.endpoints().iter().any(|e| client.healthy_at(&e.url)) {
        return Err(Step::Wait(
            "no member reports a healthy cluster (no leader or no quorum); membership is not \
             changed without quorum"
                .into(),
        ));
    }
    if let Some(stale) = decide::find_me(&list.members, me) {
        match client.remove(stale.id) {
            Ok(()) => {}
            Err(e) if e.says(msg::NOT_FOUND) => {}
            Err(e) => return Err(retry(e)),
        }
        progress(&format!(
            "removed the stale entry {stale} before adding this host"
        ));
        *removed = Some(stale.to_string());
    }
    match client.add_learner(peer_urls) {
        Ok((id, after)) => Ok((id, after.members)),
        Err(e) if e.says(msg::TOO_MANY_LEARNERS) => {
            // The list read before the add may not show the learner yet: name it only when
            // it does.
            let who = match learners(&list.members) {
                l if l.is_empty() => String::new(),
                l => format!(" ({l})"),
            };
            Err(Step::Wait(format!(
                "another member is joining as a learner{who}; etcd allows one at a time, \
                 waiting for its promotion"
            )))
        }
        Err(e) if e.says(msg::PEER_URL_EXISTS) => Err(Step::Wait(
            "an entry with this peer URL appeared; removing it on the next attempt".into(),
        )),
        // Seen from etcd 3.4 for an add right after the removal of this host's stale
        // entry while that entry's promoter was still asking to promote it: the add did
        // not happen, and the next attempt passes.
        Err(e) if e.says(msg::NOT_FOUND) => Err(Step::Wait(format!(
            "etcd refused the add for now ({e}); trying again"
        ))),
        Err(e) => Err(retry(e)),
    }
}

/// Whether the member a join added, whose data dir has a WAL now, is a join that was
/// interrupted: the cluster lists it as never started (it never caught up far enough to
/// publish its name and client URLs: etcd killed right after the add, or during the
/// catch-up, and its WAL may not even hold the cluster's membership). Such a data dir
/// is worth nothing (a learner's data is a copy), and etcd restarting from it may never
/// catch up; Some(why) says so. None for a voting member or a learner that started
/// (restarted as it is, and the promoter promotes a learner), and for a member the
/// cluster does not list (etcd says it was removed).
pub fn interrupted(list: &crate::etcd::Membership, id: EtcdId) -> Option<String> {
    let m = list.members.iter().find(|m| m.id == id.0)?;
    (!m.started()).then(|| {
        format!(
            "cluster {:x} lists this data dir's member {m} as never started: the join was \
             interrupted before the {} caught up",
            list.cluster_id,
            if m.is_learner { "learner" } else { "member" }
        )
    })
}

/// The endpoints of a persisted plan: this member's own client URLs (dialled at its
/// listen addresses) first, then the other members'.
pub fn plan_endpoints(plan: &Plan) -> Vec<Endpoint> {
    let own_addrs: Vec<std::net::IpAddr> = plan
        .listen_client_urls
        .iter()
        .filter_map(|u| url::Url::parse(u).ok())
        .filter_map(|u| match u.host() {
            Some(url::Host::Ipv4(a)) => Some(a.into()),
            Some(url::Host::Ipv6(a)) => Some(a.into()),
            _ => None,
        })
        .filter(|a: &std::net::IpAddr| !a.is_unspecified())
        .collect();
    let mut v: Vec<Endpoint> = plan
        .advertise_client_urls
        .iter()
        .map(|u| Endpoint {
            url: u.clone(),
            addrs: own_addrs.clone(),
        })
        .collect();
    match &plan.start {
        Start::Join(j) => v.extend(j.endpoints.iter().cloned()),
        _ => v.extend(crate::wait::others(plan)),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstarted_entry_of_a_joined_data_dir_is_an_interrupted_join() {
        let m = |id: u64, learner: bool, started: bool| Member {
            id,
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
            cluster_id: 0xabc,
            answered_by: 1,
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

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let d: Vec<u64> = (0..7).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}
