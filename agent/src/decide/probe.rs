//! Asking the running cluster, for the decision: every client URL (`member list`, then
//! `/health` there) and every peer URL (`/members`) at once, each on its own thread with
//! the round's budget ([`EtcdProbe`], the wait loop's real probe).

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::fresh::{Answered, PeerAnswer};
use super::wait::{Probe, Probed, Targets};
use crate::etcd::{Access, Client, Endpoint};

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

impl Probe for EtcdProbe {
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
