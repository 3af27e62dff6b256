//! Replay protection for signed updates. TSIG (RFC 8945) accepts a message again for as
//! long as its Time Signed is within the fudge window (300 s from nsupdate), so a
//! captured update replayed a minute later would be applied again and could undo a newer
//! change. RFC 8945 §5.2.3 suggests remembering the last Time Signed per key, but that
//! refuses a client's concurrent updates that arrive out of order; instead each verified
//! request MAC is remembered until its window closes (after that the TSIG check answers
//! BADTIME). A MAC seen again is not applied again: it gets the first answer's rcode, so
//! a client's own retransmission stays harmless.
//!
//! Pure bookkeeping: the caller passes the clock in, and waits (asynchronously) for the
//! first answer when the copy arrives while the original is still being applied.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::proto::tsig::Verified;
use crate::proto::types::Rcode;

/// MACs remembered at most: at 1,000 updates a second with nsupdate's 300 s fudge, 300,000
/// are live. Past the cap new signed updates are refused (never forgotten early, which
/// would reopen the replay), until older windows close.
pub const MAX_REMEMBERED: usize = 1 << 20;

/// What [`ReplayGuard::admit`] decided.
pub enum Admission {
    /// First time this MAC was seen: apply the update, then report its answer with
    /// [`Ticket::answered`].
    First(Ticket),
    /// Seen before: do not apply; answer with [`Replayed::answer`].
    Replay(Replayed),
    /// Too many MACs within their windows: refuse (SERVFAIL, the client retries).
    Full,
}

/// The first arrival of a MAC: its answer is kept for the copies.
pub struct Ticket(watch::Sender<Option<Rcode>>);

impl Ticket {
    /// Records the answer the update got, for every copy of it.
    pub fn answered(self, rc: Rcode) {
        self.0.send_replace(Some(rc));
    }
}

/// A copy of an update seen before.
pub struct Replayed(watch::Receiver<Option<Rcode>>);

impl Replayed {
    /// The first arrival's rcode, waiting for it when the first is still being applied.
    /// SERVFAIL when the first was abandoned without an answer (it may or may not have
    /// been applied, so the copy is not applied either).
    pub async fn answer(mut self) -> Rcode {
        if let Some(rc) = *self.0.borrow() {
            return rc;
        }
        match self.0.wait_for(Option::is_some).await {
            Ok(rc) => rc.unwrap_or(Rcode::SERVFAIL),
            Err(_) => Rcode::SERVFAIL,
        }
    }
}

#[derive(Default)]
struct Inner {
    seen: HashMap<u128, watch::Receiver<Option<Rcode>>>,
    /// (forget after, MAC id), for pruning in time order.
    expiry: BTreeSet<(u64, u128)>,
}

/// The MACs of the signed updates seen within their fudge windows.
pub struct ReplayGuard {
    inner: Mutex<Inner>,
    cap: usize,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::with_cap(MAX_REMEMBERED)
    }
}

/// The first 16 octets of a MAC (HMAC outputs are at least 20): distinct updates collide
/// with odds of 2⁻¹²⁸.
fn mac_id(mac: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    let n = mac.len().min(16);
    b[..n].copy_from_slice(&mac[..n]);
    u128::from_be_bytes(b)
}

impl ReplayGuard {
    /// A guard remembering at most `cap` MACs.
    pub fn with_cap(cap: usize) -> ReplayGuard {
        ReplayGuard {
            inner: Mutex::default(),
            cap,
        }
    }

    /// Admits the verified request `v` at Unix time `now`.
    pub fn admit(&self, v: &Verified, now: u64) -> Admission {
        self.admit_mac(&v.request_mac, v.time_signed, v.fudge, now)
    }

    fn admit_mac(&self, mac: &[u8], time_signed: u64, fudge: u16, now: u64) -> Admission {
        let id = mac_id(mac);
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.prune(now);
        if let Some(rx) = inner.seen.get(&id) {
            return Admission::Replay(Replayed(rx.clone()));
        }
        if inner.seen.len() >= self.cap {
            return Admission::Full;
        }
        // TSIG accepts the MAC while now <= Time Signed + Fudge (our clock).
        let forget_after = time_signed.saturating_add(u64::from(fudge)).max(now);
        let (tx, rx) = watch::channel(None);
        inner.seen.insert(id, rx);
        inner.expiry.insert((forget_after, id));
        Admission::First(Ticket(tx))
    }

    /// Number of MACs remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .len()
    }

    /// True when no MAC is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn prune(&mut self, now: u64) {
        while let Some(&(t, id)) = self.expiry.first() {
            if t >= now {
                break;
            }
            self.expiry.pop_first();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(a: Admission) -> Ticket {
        match a {
            Admission::First(t) => t,
            _ => panic!("expected a first arrival"),
        }
    }

    fn replay(a: Admission) -> Replayed {
        match a {
            Admission::Replay(r) => r,
            _ => panic!("expected a replay"),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_mac_seen_within_its_window_gets_the_first_answer() {
        let g = ReplayGuard::default();
        let mac = [7u8; 32];
        first(g.admit_mac(&mac, 1000, 300, 1000)).answered(Rcode::NOERROR);
        let r = replay(g.admit_mac(&mac, 1000, 300, 1299));
        assert_eq!(block_on(r.answer()), Rcode::NOERROR);
        // Another MAC is new.
        first(g.admit_mac(&[8u8; 32], 1000, 300, 1000)).answered(update_rcode_nx());
        assert_eq!(g.len(), 2);
        // At the window's last second it is still remembered; after it, forgotten (the
        // TSIG time check refuses it from then on).
        assert!(matches!(
            g.admit_mac(&mac, 1000, 300, 1300),
            Admission::Replay(_)
        ));
        assert!(matches!(
            g.admit_mac(&mac, 1000, 300, 1301),
            Admission::First(_)
        ));
    }

    fn update_rcode_nx() -> Rcode {
        Rcode::NXRRSET
    }

    #[test]
    fn a_copy_arriving_while_the_first_is_applied_waits_for_its_answer() {
        let g = ReplayGuard::default();
        let t = first(g.admit_mac(&[1u8; 20], 50, 300, 50));
        let r = replay(g.admit_mac(&[1u8; 20], 50, 300, 51));
        let waiter = std::thread::spawn(move || block_on(r.answer()));
        std::thread::sleep(std::time::Duration::from_millis(20));
        t.answered(Rcode::REFUSED);
        assert_eq!(waiter.join().unwrap(), Rcode::REFUSED);
        // Abandoned without an answer: the copies get SERVFAIL, never a second apply.
        let t = first(g.admit_mac(&[2u8; 20], 50, 300, 50));
        drop(t);
        let r = replay(g.admit_mac(&[2u8; 20], 50, 300, 52));
        assert_eq!(block_on(r.answer()), Rcode::SERVFAIL);
    }

    #[test]
    fn windows_close_in_time_order_and_the_cap_holds() {
        let g = ReplayGuard::default();
        // A long fudge does not keep shorter ones alive.
        first(g.admit_mac(&[1u8; 20], 0, 60_000, 0)).answered(Rcode::NOERROR);
        for i in 0..100u8 {
            first(g.admit_mac(&[2, i], 0, 10, 0)).answered(Rcode::NOERROR);
        }
        assert_eq!(g.len(), 101);
        first(g.admit_mac(&[3u8; 20], 11, 10, 11)).answered(Rcode::NOERROR);
        assert_eq!(g.len(), 2);
        // Full: refused, nothing forgotten early.
        let g = ReplayGuard::with_cap(2);
        first(g.admit_mac(&[1u8; 20], 0, 10, 0)).answered(Rcode::NOERROR);
        first(g.admit_mac(&[2u8; 20], 0, 10, 0)).answered(Rcode::NOERROR);
        assert!(matches!(g.admit_mac(&[3u8; 20], 0, 10, 5), Admission::Full));
        assert!(matches!(
            g.admit_mac(&[1u8; 20], 0, 10, 5),
            Admission::Replay(_)
        ));
        assert!(matches!(
            g.admit_mac(&[3u8; 20], 0, 10, 11),
            Admission::First(_)
        ));
    }
}
