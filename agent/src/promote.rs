//! Promotion: a learner that has caught up becomes a voting member.
//!
//! Who promotes: the joining host itself, once its etcd runs, because only it knows when
//! it started. `muster-agent exec` leaves a `muster-agent promote` process behind (a child
//! started just before the exec, so it outlives the agent and runs beside etcd); an
//! `env` unit runs `muster-agent promote` as `ExecStartPost=`; in Kubernetes the `exec`
//! entrypoint does the same as on a systemd host. The promoter reads the join from
//! `<data-dir>/muster-plan.json`, so it needs no DNS, and does nothing for a member that
//! bootstrapped, restarted, or is a voter already: running it on every start is safe.
//!
//! etcd refuses a promotion until the learner is in sync with the leader; that refusal
//! is retried with backoff and a progress line, until `--timeout`.

use std::time::{Duration, Instant};

use crate::etcd::{msg, Access, Client, EtcdError};
use crate::ids::EtcdId;
use crate::plan::{Plan, Start};

/// How promotion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Promoted {
    /// This call promoted the member.
    Now,
    /// It was a voting member already.
    Already,
    /// The plan is not a join: nothing to promote.
    NotJoined,
}

/// Why promotion failed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    /// etcd refused in a way retrying cannot fix.
    #[error("cannot promote member {name}: {source}")]
    Refused {
        /// Member name.
        name: String,
        /// etcd's answer.
        source: EtcdError,
    },
    /// The member is not in the cluster (removed meanwhile).
    #[error("member {name} ({id:x}) is not in the cluster any more; nothing to promote")]
    Gone {
        /// Member name.
        name: String,
        /// Its ID.
        id: EtcdId,
    },
    /// `--timeout` passed.
    #[error("timed out after {} promoting learner {name}: {last}", humantime::format_duration(*timeout))]
    Timeout {
        /// Member name.
        name: String,
        /// `--timeout`.
        timeout: Duration,
        /// The last refusal.
        last: String,
    },
}

/// Promotes the member a join plan added, waiting until it is in sync.
pub fn promote(
    plan: &Plan,
    access: &Access,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Promoted, PromoteError> {
    let Start::Join(join) = &plan.start else {
        return Ok(Promoted::NotJoined);
    };
    let Some(id) = join.member_id else {
        return Ok(Promoted::NotJoined);
    };
    let name = plan.name.to_string();
    let refused = |source| PromoteError::Refused {
        name: name.clone(),
        source,
    };
    // The learner itself refuses member calls; the others are asked.
    let client = Client::new(join.endpoints.clone(), access.clone()).map_err(refused)?;
    let start = Instant::now();
    for attempt in 0u32.. {
        let last = match client.list() {
            Ok(list) => match list.members.iter().find(|m| m.id == id) {
                None => return Err(PromoteError::Gone { name, id }),
                Some(m) if !m.is_learner => return Ok(Promoted::Already),
                Some(_) => match client.promote(id) {
                    Ok(()) => return Ok(Promoted::Now),
                    Err(e) if e.says(msg::NOT_IN_SYNC) => {
                        "the learner is still catching up with the leader".to_string()
                    }
                    Err(e) if e.says(msg::NOT_LEARNER) => return Ok(Promoted::Already),
                    Err(e @ EtcdError::Api { .. })
                        if !(e.says(msg::UNHEALTHY) || e.says(msg::NOT_ENOUGH_STARTED)) =>
                    {
                        return Err(refused(e))
                    }
                    Err(e) => e.to_string(),
                },
            },
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(PromoteError::Timeout {
                name,
                timeout,
                last,
            });
        }
        progress(&format!(
            "promote learner {name}: {last} (attempt {}, {:.1}s)",
            attempt + 1,
            start.elapsed().as_secs_f64()
        ));
        let d = Duration::from_millis(250u64.saturating_mul(1 << attempt.min(4)))
            .min(Duration::from_secs(3));
        std::thread::sleep(d.min(timeout.saturating_sub(start.elapsed())));
    }
    unreachable!("the attempt counter is unbounded")
}
