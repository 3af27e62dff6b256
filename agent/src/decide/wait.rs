//! The completeness and stability loop: read the records, judge them, and either return
//! this host's plan or wait with bounded exponential backoff until `--timeout`.
//!
//! A record set is accepted only when [`cluster::judge`] finds it complete (the known
//! number of members, every one resolving, this host among them) *and* the same set
//! (targets, ports, addresses, client and size records) has been read on consecutive
//! rounds, so a zone being edited or a DNS server still loading cannot produce a partial
//! cluster. Errors that waiting cannot fix (both SRV sets, duplicate names, a size that
//! contradicts `--expect`) stop at once.
//!
//! Every round also asks the other members, all at once and within [`PROBE_BUDGET`] (and
//! never past `--timeout`): their client URLs (`member list`, `/health`) and their peer
//! URLs (`/members`, answered from the moment etcd starts, before quorum). See
//! [`super::fresh`] for what the answers decide.
//!
//! Time is `tokio::time`, so tests run the whole loop on a paused clock.

use std::net::IpAddr;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

use super::fresh::{self, Answered, Decision, PeerAnswer};
use crate::cluster::{self, Missing, PlanError, PlanOptions, Progress, Scheme, Service, Unsettled};
use crate::discover::{self, Resolve};
use crate::etcd::{Endpoint, Member};
use crate::ids::EtcdId;
use crate::plan::{Join, Plan, Start};
use crate::urls::EtcdUrl;

/// How many consecutive identical complete reads make a record set stable.
pub const STABLE_READS: u32 = 2;
/// First delay between rounds, and the delay after the records changed: short, so that
/// the confirming second read comes quickly.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between rounds: a record that appears is seen within this.
pub const MAX_DELAY: Duration = Duration::from_millis(500);
/// The most one round's probe of the other members takes: every endpoint is asked at
/// once, each with this budget to connect and answer. A member whose etcd has just
/// started accepts connections on its client port but does not answer there until its
/// cluster has quorum; its peer port answers at once.
pub const PROBE_BUDGET: Duration = Duration::from_secs(1);

/// What the loop waits for.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// How the records are judged: scheme, size, identity, overrides.
    pub plan: PlanOptions,
    /// This host's interface addresses.
    pub local: Vec<IpAddr>,
    /// `--timeout`: give up after this long.
    pub timeout: Duration,
}

/// Reported after every round that did not finish the wait.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    /// 1, 2, ...
    pub number: u32,
    /// Time since the loop started.
    pub elapsed: Duration,
    /// Time left until `--timeout`.
    pub remaining: Duration,
    /// What this round found missing.
    pub progress: &'a Progress,
}

/// Why the wait ended without a cluster.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The records are wrong in a way waiting cannot fix.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// `--timeout` passed first.
    #[error(
        "timed out after {} waiting for a complete, stable set of etcd discovery records: {last}\n\
         {}etcd was not started (a partial cluster would split); fix the records or the size, or raise --timeout",
        humantime::format_duration(*timeout),
        last.details().iter().map(|d| format!("{d}\n")).collect::<String>()
    )]
    Timeout {
        /// `--timeout`.
        timeout: Duration,
        /// The last round's progress.
        last: Progress,
    },
}

fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .without_max_times()
        .build()
}

/// What one round asks: the other members' client URLs and peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Client URLs: `member list`, then `/health` where it answers.
    pub clients: Vec<Endpoint>,
    /// Peer URLs: `/members` and the cluster ID.
    pub peers: Vec<Endpoint>,
}

/// What one round's probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probed {
    /// A client URL's answer: a healthy one if any answered so, else any; among those,
    /// the first in the order the targets list them.
    pub answered: Option<Answered>,
    /// Every peer URL that answered.
    pub peers: Vec<PeerAnswer>,
}

/// Asks the running cluster, if any: the seam between the wait loop and etcd.
pub trait Probe {
    /// Asks every target at once; returns within `budget`, or as soon as `enough` says
    /// the answers so far decide the start.
    fn probe(
        &self,
        targets: &Targets,
        budget: Duration,
        enough: &dyn Fn(&Probed) -> bool,
    ) -> Probed;
}

/// A probe that never finds a cluster: bootstrap-only behaviour (and unit tests).
pub struct NoCluster;

impl Probe for NoCluster {
    fn probe(&self, _: &Targets, _: Duration, _: &dyn Fn(&Probed) -> bool) -> Probed {
        Probed::default()
    }
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new cluster: the bootstrap plan, its reason set.
    Bootstrap(Plan),
    /// A running cluster to join: the plan before the add (`member_id` unknown,
    /// `initial_cluster` predicted), this host's stale entry, and the member list seen.
    Join {
        /// The join plan as far as it is known before the add.
        plan: Plan,
        /// This host's stale entry, removed before the add.
        stale: Option<Member>,
        /// What the cluster answered.
        answered: Answered,
    },
}

impl Outcome {
    /// The plan (for a join: before the add).
    pub fn plan(&self) -> &Plan {
        match self {
            Outcome::Bootstrap(p) | Outcome::Join { plan: p, .. } => p,
        }
    }
}

/// Waits until the records give this host a plan from a complete, stable cluster; calls
/// `on_round` after each round that did not. Bootstrap only: no cluster is asked.
pub async fn wait_for_plan<R: Resolve>(
    resolver: &R,
    service: &Service,
    opts: &WaitOptions,
    on_round: impl FnMut(&Round<'_>),
) -> Result<Plan, WaitError> {
    match wait_for_start(resolver, service, opts, &NoCluster, on_round).await? {
        Outcome::Bootstrap(p) => Ok(p),
        // NoCluster never answers, and without an answer there is no join.
        Outcome::Join { plan, .. } => Ok(plan),
    }
}

/// The skeleton of this host's plan from the records published so far (complete or
/// not): its name, URLs and every published member's client URLs. None while this host
/// is not identified or has no address to listen on.
fn skeleton(
    service: &Service,
    rs: &crate::cluster::RecordSet,
    opts: &WaitOptions,
) -> Result<Option<Plan>, PlanError> {
    let census = match cluster::settle::census(service, rs, opts.plan.scheme, None) {
        Ok(c) => c,
        Err(Unsettled::Fatal(e)) => return Err(e),
        Err(Unsettled::Pending(_)) => return Ok(None),
    };
    let members = cluster::Members {
        record: census.record,
        scheme: census.scheme,
        members: census.published,
    };
    let Ok(me) = cluster::identity::identify(
        &members.record,
        members.scheme,
        &members.members,
        &opts.local,
        &opts.plan.identity,
    ) else {
        return Ok(None);
    };
    let plan = cluster::build::plan(service, &members, &me, &opts.local, &opts.plan.overrides);
    if plan.listen_peer_urls.is_empty() || plan.listen_client_urls.is_empty() {
        return Ok(None);
    }
    Ok(Some(plan))
}

/// The join plan: the skeleton's URLs, the membership predicted after the add. Err when
/// the member list holds a peer URL `--initial-cluster` cannot carry.
fn join_plan(
    skel: &Plan,
    stale: Option<&Member>,
    answered: &Answered,
    reason: String,
) -> Result<Plan, String> {
    // The skeleton is built by cluster::build::plan, which always makes a bootstrap.
    let b = skel
        .cluster()
        .cloned()
        .unwrap_or_else(|| unreachable!("a skeleton is a bootstrap plan"));
    let mut after: Vec<Member> = answered
        .membership
        .members
        .iter()
        .filter(|m| stale.is_none_or(|s| s.id != m.id))
        .cloned()
        .collect();
    after.push(Member {
        id: EtcdId(0),
        name: skel.name.to_string(),
        peer_urls: b
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
        client_urls: skel
            .advertise_client_urls
            .iter()
            .map(ToString::to_string)
            .collect(),
        is_learner: true,
    });
    Ok(Plan {
        name: skel.name.clone(),
        data_dir: skel.data_dir.clone(),
        listen_peer_urls: skel.listen_peer_urls.clone(),
        listen_client_urls: skel.listen_client_urls.clone(),
        advertise_client_urls: skel.advertise_client_urls.clone(),
        reason,
        start: Start::Join(Join {
            domain: b.domain,
            srv_name: b.srv_name,
            srv_record: b.srv_record,
            scheme: b.scheme,
            matched_by: b.matched_by,
            initial_cluster: fresh::initial_cluster(&after, EtcdId(0), skel.name.as_str())?,
            initial_advertise_peer_urls: b.initial_advertise_peer_urls,
            cluster_id: answered.membership.cluster_id,
            member_id: None,
            removed: stale.map(ToString::to_string),
            endpoints: crate::plan::others(skel),
        }),
    })
}

/// What asking the running cluster in one round gave.
enum Asked {
    /// A start: a confirmed or stable bootstrap, or a join.
    Start(Box<Outcome>),
    /// Keep waiting, with what the progress line must add.
    Wait(Option<Missing>),
    /// No time left to ask: deciding without the answers could bootstrap beside a
    /// running cluster.
    NoTime,
}

/// Asks the other members (the skeleton's client and peer URLs) and decides with the
/// records' judgement ([`super::fresh::decide`]): `judged` is the bootstrap plan of
/// complete records, `streak` how many identical complete reads there were.
fn ask<P: Probe>(
    probe: &P,
    skel: &Plan,
    judged: &Result<Plan, Unsettled>,
    streak: u32,
    deadline: Instant,
) -> Asked {
    let targets = Targets {
        clients: crate::plan::others(skel),
        peers: crate::plan::other_peers(skel),
    };
    let asked: Vec<String> = targets.clients.iter().map(|e| e.url.clone()).collect();
    let me = fresh::Me {
        name: skel.name.as_str(),
        peer_url: skel
            .cluster()
            .and_then(|c| c.initial_advertise_peer_urls.first())
            .map_or("", EtcdUrl::as_str),
    };
    let bootstrap = judged.as_ref().ok().and_then(Plan::cluster);
    // The probe never outlasts --timeout; it stops early once what answered already
    // confirms the bootstrap. (A join waits for every client URL's answer, which a
    // running cluster gives at once, so that the member it names does not depend on
    // which answered first.)
    let budget = PROBE_BUDGET.min(deadline.saturating_duration_since(Instant::now()));
    let decides = |p: &Probed| {
        matches!(
            fresh::decide(bootstrap, me, p.answered.as_ref(), &p.peers, &asked),
            Decision::Bootstrap {
                confirmed: true,
                ..
            }
        )
    };
    if budget.is_zero() {
        return Asked::NoTime;
    }
    let Probed { answered, peers } = probe.probe(&targets, budget, &decides);
    match fresh::decide(bootstrap, me, answered.as_ref(), &peers, &asked) {
        Decision::Bootstrap { confirmed, reason } => match judged.clone() {
            // judged is Ok whenever decide saw a bootstrap.
            Ok(mut plan) if confirmed || streak >= STABLE_READS => {
                plan.reason = reason;
                Asked::Start(Box::new(Outcome::Bootstrap(plan)))
            }
            Ok(_) => Asked::Wait(Some(Missing::NotStable)),
            Err(_) => Asked::Wait(None),
        },
        Decision::Join { stale, reason } => match answered {
            // answered is Some whenever decide chose a join.
            Some(answered) => match join_plan(skel, stale.as_ref(), &answered, reason) {
                Ok(plan) => Asked::Start(Box::new(Outcome::Join {
                    plan,
                    stale,
                    answered,
                })),
                Err(why) => Asked::Wait(Some(Missing::Cluster(format!("cannot join: {why}")))),
            },
            None => Asked::Wait(None),
        },
        Decision::Wait(reason) => {
            // Also when nobody answers and only the size is missing: that is a new
            // member whose cluster is down, and it must read that a running cluster is
            // what it waits for, not only how to declare a size.
            let only_size = matches!(judged, Err(Unsettled::Pending(p))
                if p.missing.iter().all(|m| matches!(m, Missing::UnknownSize { .. })));
            let say = answered.is_some() || judged.is_ok() || (only_size && !asked.is_empty());
            Asked::Wait(say.then_some(Missing::Cluster(reason)))
        }
    }
}

/// Waits until this host has a start: a bootstrap from a complete, stable record set
/// (or one the running cluster confirms), or a join of a healthy running cluster; see
/// [`super::fresh`] for the rules. Calls `on_round` after each round that did not end
/// the wait.
pub async fn wait_for_start<R: Resolve, P: Probe>(
    resolver: &R,
    service: &Service,
    opts: &WaitOptions,
    probe: &P,
    mut on_round: impl FnMut(&Round<'_>),
) -> Result<Outcome, WaitError> {
    let scheme = opts.plan.scheme;
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut delays = backoff();
    let mut prev = None;
    let mut streak = 0u32;
    let mut last = Progress {
        resolvable: 0,
        total: opts.plan.expect,
        missing: vec![Missing::LookupFailed {
            name: service.record(cluster::Role::Server, scheme.unwrap_or(Scheme::Https)),
            error: format!("no answer from {} before the deadline", resolver.describe()),
        }],
    };
    for number in 1u32.. {
        let rs = match tokio::time::timeout_at(deadline, discover::read(resolver, service, scheme))
            .await
        {
            Ok(rs) => rs,
            Err(_) => {
                return Err(WaitError::Timeout {
                    timeout: opts.timeout,
                    last,
                })
            }
        };
        let changed = prev.as_ref() != Some(&rs);
        if changed {
            // New data: look again soon rather than at the backed-off pace.
            delays = backoff();
        }
        let judged = match cluster::judge(service, &rs, &opts.local, &opts.plan) {
            Err(Unsettled::Fatal(e)) => return Err(e.into()),
            other => other,
        };
        let skel = skeleton(service, &rs, opts)?;
        let mut progress = match &judged {
            Err(Unsettled::Pending(p)) => {
                streak = 0;
                p.clone()
            }
            Ok(plan) => {
                streak = if changed { 1 } else { streak + 1 };
                let n = plan.cluster().map_or(0, |c| c.members.len());
                Progress {
                    resolvable: n,
                    total: Some(n),
                    missing: vec![],
                }
            }
            Err(Unsettled::Fatal(_)) => unreachable!("returned above"),
        };
        if let Some(skel) = &skel {
            match ask(probe, skel, &judged, streak, deadline) {
                Asked::Start(outcome) => return Ok(*outcome),
                Asked::Wait(missing) => progress.missing.extend(missing),
                Asked::NoTime => {
                    return Err(WaitError::Timeout {
                        timeout: opts.timeout,
                        last,
                    })
                }
            }
        } else if judged.is_ok() {
            // Complete records identify this host, so a skeleton exists; kept for safety.
            progress.missing.push(Missing::NotStable);
        }
        prev = Some(rs);
        let now = Instant::now();
        let remaining = deadline.saturating_duration_since(now);
        on_round(&Round {
            number,
            elapsed: now - start,
            remaining,
            progress: &progress,
        });
        last = progress;
        if remaining.is_zero() {
            return Err(WaitError::Timeout {
                timeout: opts.timeout,
                last,
            });
        }
        let delay = delays.next().unwrap_or(MAX_DELAY).min(remaining);
        tokio::time::sleep(delay).await;
    }
    unreachable!("the round counter is unbounded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Answer, Identity, MemberName, Overrides, Srv, Txt};
    use crate::etcd::Member;
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::net::IpAddr;

    /// A zone in memory; tests edit it between rounds through the `on_round` callback.
    #[derive(Default)]
    struct Zone {
        srv: HashMap<String, Answer<Srv>>,
        txt: HashMap<String, Answer<Txt>>,
        addrs: HashMap<String, Answer<IpAddr>>,
        queries: u32,
    }

    struct Fake<'a>(&'a RefCell<Zone>);

    impl Resolve for Fake<'_> {
        async fn srv(&self, name: &str) -> Answer<Srv> {
            let mut z = self.0.borrow_mut();
            z.queries += 1;
            z.srv.get(name).cloned().unwrap_or(Answer::Empty)
        }
        async fn txt(&self, name: &str) -> Answer<Txt> {
            let mut z = self.0.borrow_mut();
            z.queries += 1;
            z.txt.get(name).cloned().unwrap_or(Answer::Empty)
        }
        async fn addresses(&self, name: &str) -> Answer<IpAddr> {
            let mut z = self.0.borrow_mut();
            z.queries += 1;
            z.addrs.get(name).cloned().unwrap_or(Answer::Empty)
        }
        fn describe(&self) -> String {
            "the fake zone".into()
        }
    }

    fn zone(n: usize, with_addr: usize) -> Zone {
        let mut z = Zone::default();
        let srv = (0..n)
            .map(|i| Srv {
                target: format!("m{i}.c.test."),
                port: 2380,
            })
            .collect();
        z.srv
            .insert("_etcd-server._tcp.c.test.".into(), Answer::Records(srv));
        for i in 0..with_addr {
            z.addrs.insert(
                format!("m{i}.c.test."),
                Answer::Records(vec![format!("10.0.0.{i}").parse().unwrap()]),
            );
        }
        z
    }

    /// Waits as member m0 (at 10.0.0.0).
    fn opts(expect: Option<usize>, secs: u64) -> WaitOptions {
        WaitOptions {
            plan: PlanOptions {
                expect,
                overrides: Overrides {
                    default_client_port: 2379,
                    ..Default::default()
                },
                ..Default::default()
            },
            local: vec!["10.0.0.0".parse().unwrap()],
            timeout: Duration::from_secs(secs),
        }
    }

    fn publish_size(z: &RefCell<Zone>, n: usize) {
        z.borrow_mut().txt.insert(
            "_etcd-server._tcp.c.test.".into(),
            Answer::Records(vec![Txt(vec![format!("muster-size={n}")])]),
        );
    }

    fn publish_member(z: &RefCell<Zone>, i: usize) {
        let mut z = z.borrow_mut();
        let entry = z
            .srv
            .entry("_etcd-server._tcp.c.test.".into())
            .or_insert(Answer::Records(Vec::new()));
        if let Answer::Records(v) = entry {
            v.push(Srv {
                target: format!("m{i}.c.test."),
                port: 2380,
            });
            v.sort();
        }
        z.addrs.insert(
            format!("m{i}.c.test."),
            Answer::Records(vec![format!("10.0.0.{i}").parse().unwrap()]),
        );
    }

    fn service() -> Service {
        Service::new("c.test", None).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn complete_records_are_accepted_on_the_second_identical_read() {
        let z = RefCell::new(zone(3, 3));
        let mut rounds = Vec::new();
        let start = Instant::now();
        let m = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 10), |r| {
            rounds.push(r.progress.to_string())
        })
        .await
        .unwrap();
        assert_eq!(m.cluster().unwrap().members.len(), 3);
        assert_eq!(
            rounds,
            vec!["3/3 members resolvable; waiting to read the same records twice in a row"]
        );
        assert_eq!(start.elapsed(), MIN_DELAY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_address_holds_back_until_it_appears() {
        let z = RefCell::new(zone(3, 2));
        let mut lines = Vec::new();
        let m = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 30), |r| {
            lines.push(r.progress.to_string());
            if r.number == 4 {
                z.borrow_mut().addrs.insert(
                    "m2.c.test.".into(),
                    Answer::Records(vec!["10.0.0.2".parse().unwrap()]),
                );
            }
        })
        .await
        .unwrap();
        assert_eq!(m.cluster().unwrap().members.len(), 3);
        assert_eq!(
            lines[0],
            "2/3 members resolvable; m2.c.test. has no A/AAAA record"
        );
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(lines[4].contains("twice in a row"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_missing_srv_record_is_reported_against_expect() {
        let z = RefCell::new(zone(2, 2));
        let start = Instant::now();
        let err = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 5), |_| {})
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let msg = err.to_string();
        assert!(msg.starts_with("timed out after 5s waiting"), "{msg}");
        assert!(msg.contains("2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.c.test., --expect is 3"), "{msg}");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_bounded() {
        let z = RefCell::new(Zone::default());
        let mut times = Vec::new();
        let err = wait_for_plan(&Fake(&z), &service(), &opts(None, 20), |r| {
            times.push(r.elapsed)
        })
        .await
        .unwrap_err();
        assert!(
            matches!(err, WaitError::Timeout { timeout, .. } if timeout == Duration::from_secs(20)),
            "{err}"
        );
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(gaps[0], MIN_DELAY);
        assert!(gaps.iter().all(|g| *g <= MAX_DELAY), "{gaps:?}");
        assert!(
            times.len() > 8,
            "keeps polling until the deadline: {times:?}"
        );
        assert_eq!(*times.last().unwrap(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn flapping_records_never_settle() {
        let z = RefCell::new(zone(3, 3));
        let err = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 3), |r| {
            let port = if r.number % 2 == 0 { 2380 } else { 2381 };
            let srv = (0..3)
                .map(|i| Srv {
                    target: format!("m{i}.c.test."),
                    port,
                })
                .collect();
            z.borrow_mut()
                .srv
                .insert("_etcd-server._tcp.c.test.".into(), Answer::Records(srv));
        })
        .await
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("3/3 members resolvable; waiting to read the same records twice"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn both_srv_sets_stop_at_once() {
        let mut zz = zone(3, 3);
        let ssl = zz.srv["_etcd-server._tcp.c.test."].clone();
        zz.srv.insert("_etcd-server-ssl._tcp.c.test.".into(), ssl);
        let z = RefCell::new(zz);
        let start = Instant::now();
        let err = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 30), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            WaitError::Plan(PlanError::BothServerSets { .. })
        ));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // --scheme picks one set and ignores the other.
        let mut o = opts(Some(3), 30);
        o.plan.scheme = Some(Scheme::Https);
        let m = wait_for_plan(&Fake(&z), &service(), &o, |_| {})
            .await
            .unwrap();
        assert_eq!(m.cluster().unwrap().scheme, Scheme::Https);
    }

    #[tokio::test(start_paused = true)]
    async fn lookup_failures_are_retried() {
        let mut zz = zone(3, 3);
        zz.srv.insert(
            "_etcd-server._tcp.c.test.".into(),
            Answer::Failed("request timed out".into()),
        );
        let z = RefCell::new(zz);
        let mut first = None;
        let m = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 30), |r| {
            if r.number == 1 {
                first = Some(r.progress.to_string());
                let srv = (0..3)
                    .map(|i| Srv {
                        target: format!("m{i}.c.test."),
                        port: 2380,
                    })
                    .collect();
                z.borrow_mut()
                    .srv
                    .insert("_etcd-server._tcp.c.test.".into(), Answer::Records(srv));
            }
        })
        .await
        .unwrap();
        assert_eq!(m.cluster().unwrap().members.len(), 3);
        assert_eq!(
            first.unwrap(),
            "0/3 members resolvable; lookup of _etcd-server._tcp.c.test. failed: request timed out"
        );
    }

    /// A probe that answers what the test says, and notes the budgets it was given.
    struct Scripted {
        answer: RefCell<Probed>,
        budgets: RefCell<Vec<Duration>>,
    }

    impl Probe for Scripted {
        fn probe(&self, t: &Targets, budget: Duration, _: &dyn Fn(&Probed) -> bool) -> Probed {
            assert_eq!(t.peers.len(), t.clients.len(), "{t:?}");
            self.budgets.borrow_mut().push(budget);
            self.answer.borrow().clone()
        }
    }

    /// Issue 19: a peer that runs the cluster these records bootstrap confirms them, so
    /// the first complete read bootstraps without waiting for a second one.
    #[tokio::test(start_paused = true)]
    async fn a_confirming_peer_bootstraps_on_the_first_complete_read() {
        let z = RefCell::new(zone(3, 3));
        let planned = wait_for_plan(&Fake(&z), &service(), &opts(Some(3), 10), |_| {})
            .await
            .unwrap();
        let c = planned.cluster().unwrap();
        let members = c
            .members
            .iter()
            .map(|m| Member {
                id: m.id,
                name: m.name.to_string(),
                peer_urls: vec![m.peer_url.to_string()],
                client_urls: vec![],
                is_learner: false,
            })
            .collect();
        let probe = Scripted {
            answer: RefCell::new(Probed {
                answered: None,
                peers: vec![PeerAnswer {
                    url: c.members[1].peer_url.to_string(),
                    membership: crate::etcd::Membership {
                        cluster_id: c.cluster_id,
                        answered_by: EtcdId(0),
                        members,
                    },
                }],
            }),
            budgets: RefCell::new(vec![]),
        };
        let start = Instant::now();
        let out = wait_for_start(&Fake(&z), &service(), &opts(Some(3), 10), &probe, |_| {})
            .await
            .unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(
            out.plan()
                .reason
                .starts_with("the member at http://m1.c.test:2380 answers on its peer port"),
            "{}",
            out.plan().reason
        );
        assert_eq!(*probe.budgets.borrow(), [PROBE_BUDGET]);
        // Another cluster on the peer port: never a bootstrap.
        probe.answer.borrow_mut().peers[0].membership.cluster_id.0 ^= 1;
        let err = wait_for_start(&Fake(&z), &service(), &opts(Some(3), 2), &probe, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bootstrapping would start a second cluster"),
            "{err}"
        );
    }

    /// The probe never outlasts --timeout.
    #[tokio::test(start_paused = true)]
    async fn the_probe_budget_stays_inside_the_timeout() {
        let z = RefCell::new(zone(2, 2));
        let probe = Scripted {
            answer: RefCell::new(Probed::default()),
            budgets: RefCell::new(vec![]),
        };
        let mut o = opts(Some(3), 10);
        o.timeout = Duration::from_millis(300);
        let _ = wait_for_start(&Fake(&z), &service(), &o, &probe, |_| {}).await;
        let b = probe.budgets.borrow();
        assert_eq!(b[0], Duration::from_millis(300), "{b:?}");
        assert!(b.iter().all(|x| *x <= Duration::from_millis(300)), "{b:?}");
    }

    /// Issue 19, item 3: while the records change, every read follows the last after
    /// the minimum delay; after a long unchanged stretch, the read that confirms a change
    /// comes after the minimum delay, not the backed-off one.
    #[tokio::test(start_paused = true)]
    async fn rounds_are_paced_by_change() {
        let z = RefCell::new(Zone::default());
        publish_size(&z, 3);
        let mut times = Vec::new();
        let start = Instant::now();
        let plan = wait_for_plan(&Fake(&z), &service(), &opts(None, 60), |r| {
            times.push(r.elapsed);
            match r.number {
                // Unchanged for a while: the delay backs off to MAX_DELAY.
                8 => publish_member(&z, 0),
                9 => publish_member(&z, 1),
                10 => publish_member(&z, 2),
                _ => {}
            }
        })
        .await
        .unwrap();
        assert_eq!(plan.cluster().unwrap().members.len(), 3);
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // A record published during the backed-off stretch is seen within MAX_DELAY.
        assert_eq!(gaps[6..8], [MAX_DELAY, MAX_DELAY], "{gaps:?}");
        // Rounds 9, 10 and 11 each read a changed set, each after the minimum delay...
        assert_eq!(gaps[8..], [MIN_DELAY, MIN_DELAY], "{gaps:?}");
        assert_eq!(times.len(), 11, "{times:?}");
        // ... and round 12 confirms the complete set after the minimum delay too.
        assert_eq!(start.elapsed(), times[10] + MIN_DELAY);
    }

    /// Review issue 8, item 9: the records of a 3-member cluster arrive one by one and
    /// the first two sit unchanged for many rounds. Knowing the size (here from the
    /// zone), the loop keeps waiting through that stable prefix.
    #[tokio::test(start_paused = true)]
    async fn issue8_a_stable_prefix_is_not_the_cluster() {
        let z = RefCell::new(Zone::default());
        publish_size(&z, 3);
        publish_member(&z, 0);
        let mut lines = Vec::new();
        let plan = wait_for_plan(&Fake(&z), &service(), &opts(None, 60), |r| {
            lines.push(r.progress.to_string());
            match r.number {
                1 => publish_member(&z, 1),
                10 => publish_member(&z, 2),
                _ => {}
            }
        })
        .await
        .unwrap();
        assert_eq!(plan.cluster().unwrap().members.len(), 3);
        assert_eq!(
            lines[5],
            "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.c.test., muster-size is 3"
        );
        assert_eq!(lines.len(), 11, "{lines:?}");
    }

    /// Without a size there is no end to the wait: the same prefix would have been taken
    /// for the cluster. The reason says how to declare the size.
    #[tokio::test(start_paused = true)]
    async fn issue8_without_a_size_the_wait_ends_saying_how_to_declare_it() {
        let z = RefCell::new(zone(2, 2));
        let err = wait_for_plan(&Fake(&z), &service(), &opts(None, 5), |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pass --expect N (MUSTER_EXPECT) or publish _etcd-server._tcp.c.test. TXT \"muster-size=N\""),
            "{err}"
        );
    }

    /// Review issue 8, item 10: this host's own record comes last; the host waits for it
    /// and says what it waits for.
    #[tokio::test(start_paused = true)]
    async fn issue8_own_record_arrives_last() {
        let z = RefCell::new(Zone::default());
        publish_member(&z, 1);
        publish_member(&z, 2);
        let mut o = opts(Some(3), 60);
        o.plan.identity = Identity {
            name: Some(MemberName::parse("m0").unwrap()),
            advertise_peer_url: None,
        };
        let mut lines = Vec::new();
        let plan = wait_for_plan(&Fake(&z), &service(), &o, |r| {
            lines.push(r.progress.to_string());
            if r.number == 3 {
                publish_member(&z, 0);
            }
        })
        .await
        .unwrap();
        assert_eq!(plan.name.as_str(), "m0");
        assert_eq!(
            lines[0],
            "2/3 members resolvable; only 2 SRV records at _etcd-server._tcp.c.test., --expect is 3; \
             this host's member m0 (--name) is not published yet"
        );
        // And on timeout the reason lists what is published.
        let z = RefCell::new(Zone::default());
        publish_member(&z, 1);
        let err = wait_for_plan(&Fake(&z), &service(), &o, |_| {})
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\n--name m0 matches no SRV target of _etcd-server._tcp.c.test.; members:\n  m1.c.test.:2380 -> 10.0.0.1\n"),
            "{err}"
        );
    }
}
