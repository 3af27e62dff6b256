//! The completeness and stability loop: read the records, judge them, and either return
//! a settled member list or wait with bounded exponential backoff until `--timeout`.
//!
//! A record set is accepted only when [`cluster::settle`] finds it complete *and* the
//! same set (targets, ports, addresses, client records) has been read on consecutive
//! rounds, so a zone being edited or a DNS server still loading cannot produce a partial
//! cluster. Errors that waiting cannot fix (both SRV sets, duplicate names) stop at once.
//!
//! Time is `tokio::time`, so tests run the whole loop on a paused clock.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

use crate::cluster::{self, Members, Missing, PlanError, Progress, Scheme, Service, Unsettled};
use crate::discover::{self, Resolve};

/// How many consecutive identical complete reads make a record set stable.
pub const STABLE_READS: u32 = 2;
/// First delay between rounds, and the delay after the records changed: short, so that
/// the confirming second read comes quickly.
pub const MIN_DELAY: Duration = Duration::from_millis(200);
/// Longest delay between rounds: a record that appears is seen within this.
pub const MAX_DELAY: Duration = Duration::from_secs(2);

/// What the loop waits for.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// `--scheme`: read only that SRV set.
    pub scheme: Option<Scheme>,
    /// `--expect`: the number of members required.
    pub expect: Option<usize>,
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
         etcd was not started (a partial cluster would split); fix the records or --expect, or raise --timeout",
        humantime::format_duration(*timeout)
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

/// Waits until the records describe a complete, stable cluster; calls `on_round` after
/// each round that did not.
pub async fn wait_for_members<R: Resolve>(
    resolver: &R,
    service: &Service,
    opts: &WaitOptions,
    mut on_round: impl FnMut(&Round<'_>),
) -> Result<Members, WaitError> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut delays = backoff();
    let mut prev = None;
    let mut streak = 0u32;
    let mut last = Progress {
        resolvable: 0,
        total: opts.expect,
        missing: vec![Missing::LookupFailed {
            name: service.record(cluster::Role::Server, opts.scheme.unwrap_or(Scheme::Https)),
            error: format!("no answer from {} before the deadline", resolver.describe()),
        }],
    };
    for number in 1u32.. {
        let rs =
            match tokio::time::timeout_at(deadline, discover::read(resolver, service, opts.scheme))
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
        let progress = match cluster::settle(service, &rs, opts.scheme, opts.expect) {
            Err(Unsettled::Fatal(e)) => return Err(e.into()),
            Err(Unsettled::Pending(p)) => {
                streak = 0;
                p
            }
            Ok(members) => {
                streak = if changed { 1 } else { streak + 1 };
                if streak >= STABLE_READS {
                    return Ok(members);
                }
                let n = members.members.len();
                Progress {
                    resolvable: n,
                    total: Some(opts.expect.unwrap_or(n)),
                    missing: vec![Missing::NotStable],
                }
            }
        };
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
    use crate::cluster::{Answer, Srv};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::net::IpAddr;

    /// A zone in memory; tests edit it between rounds through the `on_round` callback.
    #[derive(Default)]
    struct Zone {
        srv: HashMap<String, Answer<Srv>>,
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

    fn opts(expect: Option<usize>, secs: u64) -> WaitOptions {
        WaitOptions {
            scheme: None,
            expect,
            timeout: Duration::from_secs(secs),
        }
    }

    fn service() -> Service {
        Service::new("c.test", None).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn complete_records_are_accepted_on_the_second_identical_read() {
        let z = RefCell::new(zone(3, 3));
        let mut rounds = Vec::new();
        let start = Instant::now();
        let m = wait_for_members(&Fake(&z), &service(), &opts(Some(3), 10), |r| {
            rounds.push(r.progress.to_string())
        })
        .await
        .unwrap();
        assert_eq!(m.members.len(), 3);
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
        let m = wait_for_members(&Fake(&z), &service(), &opts(Some(3), 30), |r| {
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
        assert_eq!(m.members.len(), 3);
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
        let err = wait_for_members(&Fake(&z), &service(), &opts(Some(3), 5), |_| {})
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
        let _ = wait_for_members(&Fake(&z), &service(), &opts(None, 20), |r| {
            times.push(r.elapsed)
        })
        .await;
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
        let err = wait_for_members(&Fake(&z), &service(), &opts(None, 3), |r| {
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
        let err = wait_for_members(&Fake(&z), &service(), &opts(Some(3), 30), |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            WaitError::Plan(PlanError::BothServerSets { .. })
        ));
        assert_eq!(start.elapsed(), Duration::ZERO);
        // --scheme picks one set and ignores the other.
        let o = WaitOptions {
            scheme: Some(Scheme::Https),
            ..opts(Some(3), 30)
        };
        let m = wait_for_members(&Fake(&z), &service(), &o, |_| {})
            .await
            .unwrap();
        assert_eq!(m.scheme, Scheme::Https);
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
        let m = wait_for_members(&Fake(&z), &service(), &opts(Some(3), 30), |r| {
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
        assert_eq!(m.members.len(), 3);
        assert_eq!(
            first.unwrap(),
            "0/3 members resolvable; lookup of _etcd-server._tcp.c.test. failed: request timed out"
        );
    }
}
