//! Join, the effects: once the decision is a join ([`crate::decide`]), remove this
//! host's stale entry and add it as a learner ([`enact`]), retrying
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

use std::time::{Duration, Instant};

use crate::decide::fresh::{self, Me};
use crate::etcd::{msg, Access, Client, EtcdError, Member};
use crate::ids::EtcdId;
use crate::plan::{Plan, Start};
use crate::urls::EtcdUrl;

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
        peer_url: peer_urls.first().map_or("", EtcdUrl::as_str),
    };
    let start = Instant::now();
    let mut removed = join.removed.clone();
    for attempt in 0u32.. {
        let waiting = match step(&client, me, &peer_urls, &mut removed, &mut progress) {
            Ok((id, members)) => {
                join.member_id = Some(id);
                join.initial_cluster =
                    fresh::initial_cluster(&members, id, me.name).map_err(|reason| {
                        JoinError::Refused(EtcdError::Malformed {
                            url: "member add".into(),
                            reason,
                        })
                    })?;
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
    peer_urls: &[EtcdUrl],
    removed: &mut Option<String>,
    progress: &mut impl FnMut(&str),
) -> Result<(EtcdId, Vec<Member>), Step> {
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
    if let Some(stale) = fresh::find_me(&list.members, me) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_five_seconds() {
        let d: Vec<u64> = (0..7).map(|n| delay(n).as_millis() as u64).collect();
        assert_eq!(d, [500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }
}
