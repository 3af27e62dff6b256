//! `muster-agent backup --metrics-listen`: Prometheus counters of the backup rounds and
//! the age of the newest verified snapshot in the store, over plain HTTP/1.0 (every
//! request gets the page), for an alert when backups stop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What a round of `backup --every` ended in.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// This member took and stored a snapshot.
    Saved,
    /// Another member is the leader.
    Skipped,
    /// The round failed (logged; retried next period).
    Failed,
}

/// The counters, shared with the server thread.
#[derive(Debug, Default)]
pub struct Metrics {
    rounds: [AtomicU64; 3],
}

impl Metrics {
    /// Counts one round.
    pub fn count(&self, o: Outcome) {
        self.rounds[o as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The page: round counters, and the newest snapshot's age read from `store` now (so
    /// it also counts snapshots another host's leader took).
    pub fn render(&self, store: &std::path::Path) -> String {
        let mut out = String::from(
            "# HELP muster_backup_rounds_total Backup rounds of this agent, by outcome (skipped: another member is the leader).\n\
             # TYPE muster_backup_rounds_total counter\n",
        );
        for (label, c) in ["saved", "skipped", "failed"].iter().zip(&self.rounds) {
            out.push_str(&format!(
                "muster_backup_rounds_total{{outcome=\"{label}\"}} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        let newest = crate::snapshot::list(store)
            .ok()
            .and_then(|(entries, _)| entries.iter().map(|e| e.taken()).max());
        out.push_str(
            "# HELP muster_backup_newest_snapshot_age_seconds Age of the newest snapshot in the store (-1: none).\n\
             # TYPE muster_backup_newest_snapshot_age_seconds gauge\n",
        );
        let age = newest.map_or(-1.0, |t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
                .as_secs_f64()
        });
        out.push_str(&format!(
            "muster_backup_newest_snapshot_age_seconds {age:.0}\n"
        ));
        out
    }
}

/// Binds `addr` and serves the page from a thread of its own.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, store: PathBuf) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!(
        "muster-agent: backup metrics on http://{}/metrics",
        listener.local_addr().unwrap_or(addr)
    );
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut req = [0u8; 1024];
            let _ = conn.read(&mut req);
            let body = metrics.render(&store);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}
