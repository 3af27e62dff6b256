//! A batch of updates in one zone's task: each checked and applied in order (a panic
//! contained to its update), one snapshot built, the changesets appended to the journal
//! sharing one fsync, the snapshot served, and every update answered; what cannot be
//! made durable is taken back out and answered SERVFAIL.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{touched_by, Answer, ZoneWorker};
use crate::proto::name::Name;
use crate::proto::types::Rcode;
use crate::update::journal::{Journal, JournalError};
use crate::update::{self, Reason, ZoneData};
use crate::zone::changeset::Changeset;
use crate::zone::Zone;

impl ZoneWorker {
    /// Checks and applies each update of a batch to the zone's records, in order. A
    /// panic is contained: that update is answered SERVFAIL (counted as a panic of the
    /// zone task), the records are taken back to the served (durable) version and the
    /// rest of the batch is processed again without it.
    pub(super) fn process_contained(
        &mut self,
        requests: &[(update::Request, Name)],
    ) -> Vec<Result<update::Applied, update::Rejection>> {
        let mut poisoned = vec![false; requests.len()];
        'again: loop {
            let mut results = Vec::with_capacity(requests.len());
            for (i, (req, signer)) in requests.iter().enumerate() {
                if poisoned[i] {
                    results.push(Err(panic_rejection()));
                    continue;
                }
                let (data, policy, limits) = (&mut self.data, &self.policy, &self.limits);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(test)]
                    if req
                        .updates
                        .iter()
                        .any(|u| u.owner.as_wire().starts_with(crate::INJECT_PANIC))
                    {
                        panic!("panic injected by a test");
                    }
                    update::process(data, req, Some(signer), policy, limits)
                }));
                match outcome {
                    Ok(r) => {
                        if let Err(rej) = &r {
                            tracing::info!(zone = %self.origin, key = %signer, rcode = %rej.rcode, "update refused: {}", rej.detail);
                        }
                        results.push(r);
                    }
                    Err(_) => {
                        self.stats.count_panic(crate::stats::PanicSite::Zone);
                        tracing::error!(zone = %self.origin, key = %signer, "processing an update panicked (a bug: please report it); it is answered SERVFAIL and the zone keeps its last version");
                        poisoned[i] = true;
                        if let Some(z) = self.catalog.load().get(&self.origin) {
                            self.data = ZoneData::from_zone(z);
                        }
                        continue 'again;
                    }
                }
            }
            return results;
        }
    }

    /// Processes a batch of updates: see the module documentation for the order.
    pub(super) async fn updates(
        &mut self,
        batch: Vec<(update::Request, Name, oneshot::Sender<Answer>)>,
    ) {
        let mut timing = Timing::default();
        let started = Instant::now();
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|(req, signer, reply)| ((req, signer), reply))
            .unzip();
        let mut results: Outcomes = self
            .process_contained(&requests)
            .into_iter()
            .zip(replies)
            .collect();
        timing.process = started.elapsed();
        let touched = touched_by(results.iter().filter_map(|(r, _)| changeset_of(r)));
        if let Some(zone) = self.make_durable(&mut results, &touched, &mut timing).await {
            let t = Instant::now();
            // IXFR finds the changes before a secondary can see the new serial.
            for cs in results.iter().filter_map(|(r, _)| changeset_of(r)) {
                self.ixfr.record(&self.origin, cs.clone());
            }
            self.publish(zone, Some(&touched));
            timing.swap = t.elapsed();
        }
        tracing::debug!(
            zone = %self.origin,
            updates = results.len(),
            process_us = timing.process.as_micros() as u64,
            build_us = timing.build.as_micros() as u64,
            journal_us = timing.journal.as_micros() as u64,
            swap_us = timing.swap.as_micros() as u64,
            "update batch"
        );
        self.answer_all(results);
        if self.unsaved >= self.writeback_changes {
            self.flush().await;
        }
    }

    /// Builds the snapshot that holds the changes of `results` and appends their
    /// changesets to the journal: the snapshot to serve, if anything changed. Where the
    /// build or an append fails, that update and every later one are taken back out.
    async fn make_durable(
        &mut self,
        results: &mut Outcomes,
        touched: &BTreeSet<Name>,
        timing: &mut Timing,
    ) -> Option<Zone> {
        let changed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| changeset_of(r).is_some())
            .map(|(i, _)| i)
            .collect();
        let first = *changed.first()?;
        let t = Instant::now();
        let built = self.next_version(touched);
        timing.build = t.elapsed();
        let zone = match built {
            Ok(z) => z,
            Err(message) => {
                tracing::error!(zone = %self.origin, "the updated zone does not build, the updates are not applied (a bug: please report it): {message}");
                return self.take_back(results, first, "build", touched);
            }
        };
        let sets: Vec<&Changeset> = changed
            .iter()
            .filter_map(|&i| changeset_of(&results[i].0))
            .collect();
        let t = Instant::now();
        let outcomes = append_in_order(&self.journal, &sets).await;
        timing.journal = t.elapsed();
        let Some(k) = outcomes.iter().position(Result::is_err) else {
            return Some(zone);
        };
        if let Err(e) = &outcomes[k] {
            tracing::error!(zone = %self.origin, "journal append failed, the update is answered SERVFAIL and not applied: {e}");
        }
        self.take_back(results, changed[k], "journal", touched)
    }

    /// Takes the updates from `from` on back out of the records (they were checked
    /// against state that is not durable) and answers them SERVFAIL, counted as `why`;
    /// returns the snapshot of what is left, if any of it changes the zone.
    fn take_back(
        &mut self,
        results: &mut Outcomes,
        from: usize,
        why: &'static str,
        touched: &BTreeSet<Name>,
    ) -> Option<Zone> {
        // Newest first, so each undo finds the records as its update left them.
        for (r, _) in results[from..].iter_mut().rev() {
            if let Ok(applied) = std::mem::replace(r, Err(rejection_placeholder())) {
                applied.undo(&mut self.data);
            }
        }
        for (_, reply) in results.drain(from..) {
            self.metrics.failed(why);
            let _ = reply.send(Answer::rcode(Rcode::SERVFAIL));
        }
        if !results.iter().any(|(r, _)| changeset_of(r).is_some()) {
            return None;
        }
        match self.next_version(touched) {
            Ok(z) => Some(z),
            Err(message) => {
                tracing::error!(zone = %self.origin, "cannot rebuild the zone: {message}");
                None
            }
        }
    }

    /// Answers each update of a processed batch and counts it; applied changesets are
    /// remembered (history, write-back).
    fn answer_all(&mut self, results: Outcomes) {
        for (r, reply) in results {
            match r {
                Ok(applied) => {
                    if let Some(cs) = applied.changeset {
                        tracing::debug!(zone = %self.origin, serial = cs.to_serial, "update applied");
                        self.remember(cs);
                    }
                    self.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = reply.send(Answer::rcode(Rcode::NOERROR));
                }
                // Processing never answers SERVFAIL itself: only a contained panic does.
                Err(rej) if rej.rcode == Rcode::SERVFAIL => {
                    self.metrics.failed("panic");
                    let _ = reply.send(Answer::rcode(rej.rcode));
                }
                Err(rej) => {
                    self.metrics.refused(rej.reason);
                    let _ = reply.send(Answer::rcode(rej.rcode));
                }
            }
        }
    }
}

/// Each update of a batch with how its processing ended and where its answer goes.
type Outcomes = Vec<(
    Result<update::Applied, update::Rejection>,
    oneshot::Sender<Answer>,
)>;

/// Where a batch's time went, for the debug log.
#[derive(Default)]
struct Timing {
    process: Duration,
    build: Duration,
    journal: Duration,
    swap: Duration,
}

/// The changeset an update made, if it was applied and changed anything.
fn changeset_of(r: &Result<update::Applied, update::Rejection>) -> Option<&Changeset> {
    r.as_ref().ok()?.changeset.as_ref()
}

/// The answer to an update whose processing panicked.
fn panic_rejection() -> update::Rejection {
    update::Rejection {
        rcode: Rcode::SERVFAIL,
        reason: Reason::Format,
        detail: "processing the update panicked".into(),
    }
}

fn rejection_placeholder() -> update::Rejection {
    update::Rejection {
        rcode: Rcode::SERVFAIL,
        reason: Reason::Format,
        detail: String::new(),
    }
}

/// One journal append in flight.
type AppendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// Appends `sets` to the journal in this order and waits for all of them: each append
/// is submitted (on its first poll) before the next, so the journal writes them in order,
/// and appends submitted together share one fsync.
async fn append_in_order(journal: &Journal, sets: &[&Changeset]) -> Vec<Result<(), JournalError>> {
    let mut futures: Vec<AppendFuture<'_>> = sets
        .iter()
        .map(|cs| Box::pin(journal.append(cs)) as AppendFuture<'_>)
        .collect();
    let mut out: Vec<Option<Result<(), JournalError>>> = (0..sets.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => *slot = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|r| r.expect("every future completed"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use tokio::sync::mpsc;

    use super::*;
    use crate::config::ZoneSpec;
    use crate::dynamic::{UpdateConfig, UpdateMetrics};
    use crate::query::answer::Responder;
    use crate::stats::Stats;
    use crate::update::Policy;
    use crate::update::{Grant, NameMatch};
    use crate::update::{TypeMatch, UpdateRecord};
    use crate::zone::catalog::Catalog;
    use crate::zone::history::History;
    use crate::zone::Zone;

    const ZONE: &str = "$ORIGIN d.test.\n@ 300 IN SOA ns1 hostmaster 10 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 127.0.0.1\n";

    fn n(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn add(owner: &str, ip: [u8; 4]) -> (update::Request, Name) {
        let req = update::Request {
            id: 1,
            zone: n("d.test."),
            zclass: crate::proto::types::Rclass::IN,
            prerequisites: Vec::new(),
            updates: vec![UpdateRecord {
                owner: n(owner),
                rtype: crate::proto::types::Rtype::A,
                class: crate::proto::types::Rclass::IN,
                ttl: 60,
                rdata: ip.to_vec(),
            }],
            edns: false,
        };
        (req, n("k."))
    }

    /// A worker for d.test. in a fresh state directory (its zone file in `dir`).
    fn worker(dir: &Path) -> ZoneWorker {
        let origin = n("d.test.");
        let file = dir.join("d.test.zone");
        std::fs::write(&file, ZONE).unwrap();
        let records = crate::zone::zonefile::parse_file(&file, &origin).unwrap();
        let (zone, _) = Zone::build_with_sizes(&origin, records, &[]).unwrap();
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.insert(zone.clone());
        let catalog = Arc::new(ArcSwap::from_pointee(catalog));
        let config = UpdateConfig {
            state_dir: dir.join("state"),
            ..UpdateConfig::default()
        };
        let policy = Policy {
            grants: vec![Grant {
                key: n("k."),
                names: NameMatch::Zone,
                types: TypeMatch::All,
            }],
        };
        let spec = ZoneSpec {
            origin: origin.clone(),
            file: Some(file),
            sizes: Vec::new(),
        };
        let (_tx, rx) = mpsc::channel(1);
        ZoneWorker::open(
            &config,
            spec,
            policy,
            &zone,
            rx,
            &catalog,
            Arc::new(History::new(10)),
            Responder::new(Default::default()),
            Arc::new(Stats::default()),
            Arc::new(UpdateMetrics::default()),
        )
        .unwrap()
    }

    #[test]
    fn a_panicking_update_is_answered_servfail_and_the_batch_goes_on() {
        let dir = std::env::temp_dir().join(format!("muster-dyn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut w = worker(&dir);
        let batch = [
            add("a.d.test.", [10, 0, 0, 1]),
            add("inject-panic.d.test.", [10, 0, 0, 2]),
            add("b.d.test.", [10, 0, 0, 3]),
        ];
        let results = w.process_contained(&batch);
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(
            results[1].as_ref().err().map(|r| r.rcode),
            Some(Rcode::SERVFAIL)
        );
        assert_eq!(w.stats.panics_at(crate::stats::PanicSite::Zone), 1);
        // The records hold the two good updates, applied from the durable version.
        assert!(w.data.node(&n("a.d.test.")).is_some());
        assert!(w.data.node(&n("b.d.test.")).is_some());
        assert!(w.data.node(&n("inject-panic.d.test.")).is_none());
        assert_eq!(w.data.serial(), 12, "one serial step per applied update");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
