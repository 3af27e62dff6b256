//! The plan: what etcd is started with, and why. Printed by `plan`, written as an
//! environment file by `env`, turned into argv by `exec`, and persisted in the data dir
//! at bootstrap so that a restart needs no DNS.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cluster::Scheme;

/// Version of the JSON format (also of `<data-dir>/muster-plan.json`).
pub const PLAN_VERSION: u32 = 1;

/// Whether etcd bootstraps a new cluster or restarts from its data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No WAL yet: `--initial-*` flags from the SRV records.
    Bootstrap,
    /// `<data-dir>/member/wal` exists: etcd uses its stored membership; no DNS, no
    /// `--initial-*` flags.
    Restart,
}

/// What the SRV records said at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Absolute discovery domain.
    pub domain: String,
    /// `--srv-name` suffix.
    pub srv_name: Option<String>,
    /// SRV owner name the members came from.
    pub srv_record: String,
    /// Scheme of that set.
    pub scheme: Scheme,
    /// How this host was identified, e.g. `--name m1` or `local address 10.0.0.5`.
    pub matched_by: String,
    /// `--initial-cluster-token`.
    pub token: String,
    /// `--initial-cluster-state` (always `new`).
    pub initial_cluster_state: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// The ID etcd will give this member.
    pub member_id: u64,
    /// The same in hex, as etcd logs it.
    pub member_id_hex: String,
    /// The ID etcd will give the cluster.
    pub cluster_id: u64,
    /// The same in hex, as etcd logs it.
    pub cluster_id_hex: String,
    /// Every member, sorted by name.
    pub members: Vec<PlannedMember>,
}

/// One member of the planned cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMember {
    /// Member name (the target's first label).
    pub name: String,
    /// SRV target.
    pub target: String,
    /// Peer port.
    pub port: u16,
    /// Advertised peer URL.
    pub peer_url: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// A and AAAA addresses of the target.
    pub addresses: Vec<std::net::IpAddr>,
    /// Expected member ID.
    pub id: u64,
    /// The same in hex.
    pub id_hex: String,
    /// Whether this is the member on this host.
    pub this_host: bool,
}

/// Everything needed to start etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// Bootstrap or restart.
    pub mode: Mode,
    /// `--name`.
    pub name: String,
    /// `--data-dir`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--listen-peer-urls`: local addresses, since etcd cannot bind names.
    pub listen_peer_urls: Vec<String>,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-urls`: by name, like the peer URLs.
    pub advertise_client_urls: Vec<String>,
    /// The cluster as discovered. In a restart plan this is what the member was
    /// bootstrapped with (from the persisted plan), shown for information only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<Bootstrap>,
}

/// One etcd flag (without dashes) and its value.
pub type Flag = (&'static str, String);

impl Plan {
    /// The etcd flags of this plan, in a fixed order. `--data-dir` only when
    /// `with_data_dir` (it may come from `ETCD_DATA_DIR` instead). A restart plan has no
    /// `--initial-*` flags: etcd ignores them once a WAL exists, and leaving them out
    /// makes clear that DNS played no part.
    pub fn etcd_flags(&self, with_data_dir: bool) -> Vec<Flag> {
        let mut f: Vec<Flag> = vec![("name", self.name.clone())];
        if with_data_dir {
            if let Some(d) = &self.data_dir {
                f.push(("data-dir", d.display().to_string()));
            }
        }
        f.push(("listen-peer-urls", self.listen_peer_urls.join(",")));
        f.push(("listen-client-urls", self.listen_client_urls.join(",")));
        f.push((
            "advertise-client-urls",
            self.advertise_client_urls.join(","),
        ));
        if let (Mode::Bootstrap, Some(c)) = (self.mode, &self.cluster) {
            f.push((
                "initial-advertise-peer-urls",
                c.initial_advertise_peer_urls.join(","),
            ));
            f.push(("initial-cluster", c.initial_cluster.clone()));
            f.push(("initial-cluster-state", c.initial_cluster_state.clone()));
            f.push(("initial-cluster-token", c.token.clone()));
        }
        f
    }

    /// The human-readable form printed by `muster-agent plan`.
    pub fn render_text(&self, with_data_dir: bool) -> String {
        let mut s = String::new();
        // write! to a String cannot fail.
        match (self.mode, &self.cluster) {
            (Mode::Bootstrap, Some(c)) => {
                let _ = writeln!(
                    s,
                    "bootstrap member {} of a new {}-member cluster from {} ({})",
                    self.name,
                    c.members.len(),
                    c.srv_record,
                    c.scheme
                );
                let _ = writeln!(
                    s,
                    "  this host      {} (matched by {})",
                    self.name, c.matched_by
                );
                let _ = writeln!(s, "  token          {}", c.token);
                let _ = writeln!(s, "  member id      {} ({})", c.member_id, c.member_id_hex);
                let _ = writeln!(
                    s,
                    "  cluster id     {} ({})",
                    c.cluster_id, c.cluster_id_hex
                );
                let _ = writeln!(s, "  members");
                let w = c.members.iter().map(|m| m.name.len()).max().unwrap_or(0);
                for m in &c.members {
                    let addrs: Vec<String> = m.addresses.iter().map(ToString::to_string).collect();
                    let _ = writeln!(
                        s,
                        "    {:w$}  {}  {}  id {}{}",
                        m.name,
                        m.peer_url,
                        addrs.join(","),
                        m.id_hex,
                        if m.this_host { "  <- this host" } else { "" },
                    );
                }
            }
            (_, cluster) => {
                let data = self
                    .data_dir
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    s,
                    "restart member {}: {data}/member/wal exists, so etcd uses its stored membership; \
                     DNS was not consulted and no --initial-* flags are passed",
                    self.name
                );
                if let Some(c) = cluster {
                    let _ = writeln!(
                        s,
                        "  bootstrapped as member {} of cluster {} ({} members from {})",
                        c.member_id_hex,
                        c.cluster_id_hex,
                        c.members.len(),
                        c.srv_record
                    );
                }
            }
        }
        let _ = writeln!(s, "etcd flags");
        for (k, v) in self.etcd_flags(with_data_dir) {
            let _ = writeln!(s, "  --{k}={v}");
        }
        s
    }
}
