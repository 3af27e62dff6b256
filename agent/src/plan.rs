//! The plan: what etcd is started with, and why. Printed by `plan`, written as an
//! environment file by `env`, turned into argv by `exec`, and persisted in the data dir
//! at bootstrap so that a restart does not depend on DNS (it reads the records once,
//! bounded, only to follow a move).
//!
//! In memory a plan cannot contradict itself: a bootstrap always carries its cluster
//! ([`Start`]), IDs are [`EtcdId`]s, names [`MemberName`]s. The JSON form (version
//! [`PLAN_VERSION`]) spells the IDs twice, decimal and hex, and says the mode in a field;
//! reading it back checks all of that, so a damaged `muster-plan.json` is an error naming
//! the field rather than a wrong etcd start.

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::etcd::Endpoint;
use crate::ids::EtcdId;
use crate::names::MemberName;
use crate::urls::{self, EtcdUrl, Scheme};

/// Version of the JSON format (also of `<data-dir>/muster-plan.json`).
pub const PLAN_VERSION: u32 = 1;

/// The start decision (the JSON `mode`): restart from the data dir, bootstrap a new
/// cluster, or join a running one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No WAL yet: `--initial-*` flags from the SRV records.
    Bootstrap,
    /// `<data-dir>/member/wal` exists: etcd uses its stored membership; no
    /// `--initial-*` flags; the records, read once and bounded, still give this member
    /// what the plan holds.
    Restart,
    /// A healthy cluster answers and this host is not a started member of it: added as a
    /// learner, started with `--initial-cluster-state existing`, promoted once caught up.
    Join,
    /// A restart whose records now give this member other addresses or another peer URL:
    /// new listen URLs, and `member update` first when the peer URL text changed.
    Move,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Bootstrap => "bootstrap",
            Mode::Restart => "restart",
            Mode::Join => "join",
            Mode::Move => "move",
        })
    }
}

/// etcd's `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Every member of `--initial-cluster` starts together.
    New,
    /// Joining a running cluster after `member add`.
    Existing,
}

impl fmt::Display for ClusterState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterState::New => "new",
            ClusterState::Existing => "existing",
        })
    }
}

/// `--initial-cluster`: every member as `NAME=PEER-URL` in etcd's comma-separated form
/// (a member added but not started yet is named by its hex ID). Kept in the order given,
/// which is the order etcd gets; serialised as that text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InitialCluster(Vec<(String, EtcdUrl)>);

impl InitialCluster {
    /// The members in this order.
    pub fn new(members: Vec<(String, EtcdUrl)>) -> InitialCluster {
        InitialCluster(members)
    }

    /// Each member's name (or hex ID) and peer URL.
    pub fn members(&self) -> &[(String, EtcdUrl)] {
        &self.0
    }
}

impl fmt::Display for InitialCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, url)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={url}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for InitialCluster {
    type Err = String;
    fn from_str(s: &str) -> Result<InitialCluster, String> {
        if s.is_empty() {
            return Ok(InitialCluster::default());
        }
        s.split(',')
            .map(|entry| {
                let (name, url) = entry
                    .split_once('=')
                    .filter(|(n, _)| !n.is_empty())
                    .ok_or_else(|| format!("initial_cluster entry {entry:?} is not NAME=URL"))?;
                Ok((name.to_string(), url.parse()?))
            })
            .collect::<Result<_, String>>()
            .map(InitialCluster)
    }
}

impl TryFrom<String> for InitialCluster {
    type Error = String;
    fn try_from(s: String) -> Result<InitialCluster, String> {
        s.parse()
    }
}

impl From<InitialCluster> for String {
    fn from(c: InitialCluster) -> String {
        c.to_string()
    }
}

/// How etcd starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new cluster, from the SRV records.
    Bootstrap(Bootstrap),
    /// From the data dir; the cluster it was bootstrapped with, when the persisted plan
    /// knows it (shown for information only: etcd uses its stored membership).
    Restart {
        /// The bootstrap this data dir came from.
        bootstrapped: Option<Bootstrap>,
        /// Set when the records moved this member (mode `move`).
        moved: Option<Box<Moved>>,
        /// The peer URL the membership has for this member (the one it was bootstrapped
        /// or added with, or moved to), passed as `--initial-advertise-peer-urls`: etcd
        /// ignores it for the membership on a restart but names it in the header of every
        /// message to its peers, and a learner that has not caught up learns its peers'
        /// URLs from those headers (without it etcd sends `http://localhost:2380`).
        /// Empty when unknown (a restart from flags without a persisted plan).
        peer_urls: Vec<EtcdUrl>,
    },
    /// Into a running cluster, as a learner.
    Join(Join),
}

/// What a move changed: the URLs before, and what became of the peer URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Moved {
    /// The peer URL etcd had registered for this member.
    pub peer_url_before: EtcdUrl,
    /// The peer URL from the records now (the same text when only addresses changed).
    pub peer_url: EtcdUrl,
    /// What was done about the peer URL in the cluster's membership.
    pub member_update: MemberUpdate,
    /// `--listen-peer-urls` before.
    pub listen_peer_urls_before: Vec<EtcdUrl>,
    /// `--listen-client-urls` before.
    pub listen_client_urls_before: Vec<EtcdUrl>,
    /// `--advertise-client-urls` before.
    pub advertise_client_urls_before: Vec<EtcdUrl>,
}

/// The `member update` of a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberUpdate {
    /// The peer URL text is unchanged (a name whose address changed): nothing to update.
    NotNeeded,
    /// Updated through the running cluster before etcd starts.
    Done,
    /// The membership already had the new peer URL (an earlier start updated it).
    Already,
    /// `plan` / `exec --dry-run`: would be updated.
    Planned,
    /// No healthy cluster answered: etcd keeps its registered peer URL (and its port).
    NoQuorum,
}

impl MemberUpdate {
    /// The JSON spelling, for the text form.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberUpdate::NotNeeded => "not-needed",
            MemberUpdate::Done => "done",
            MemberUpdate::Already => "already",
            MemberUpdate::Planned => "planned",
            MemberUpdate::NoQuorum => "no-quorum",
        }
    }
}

/// A join: the cluster that answered, what was (or will be) changed in its membership,
/// and the flags etcd starts with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "JoinJson", into = "JoinJson")]
pub struct Join {
    /// Absolute discovery domain.
    pub domain: String,
    /// `--srv-name` suffix.
    pub srv_name: Option<String>,
    /// SRV owner name this host's record came from.
    pub srv_record: String,
    /// Scheme of that set.
    pub scheme: Scheme,
    /// How this host was identified.
    pub matched_by: String,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<EtcdUrl>,
    /// `--initial-cluster`: the membership after the add (from the add response once
    /// added; predicted from the member list before that).
    pub initial_cluster: InitialCluster,
    /// The running cluster's ID.
    pub cluster_id: EtcdId,
    /// The ID etcd gave this member at the add; `None` until added (`plan` adds nothing).
    pub member_id: Option<EtcdId>,
    /// The stale entry of this host (same name or peer URL) removed before the add.
    pub removed: Option<String>,
    /// The cluster's client URLs (with the addresses resolved at the time), for
    /// `promote` and `leave`.
    pub endpoints: Vec<Endpoint>,
}

/// The JSON form of [`Join`]: IDs in decimal and hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinJson {
    domain: String,
    srv_name: Option<String>,
    srv_record: String,
    scheme: Scheme,
    matched_by: String,
    initial_cluster_state: ClusterState,
    initial_advertise_peer_urls: Vec<EtcdUrl>,
    initial_cluster: InitialCluster,
    cluster_id: u64,
    cluster_id_hex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member_id_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    removed: Option<String>,
    endpoints: Vec<Endpoint>,
}

impl From<Join> for JoinJson {
    fn from(j: Join) -> JoinJson {
        JoinJson {
            domain: j.domain,
            srv_name: j.srv_name,
            srv_record: j.srv_record,
            scheme: j.scheme,
            matched_by: j.matched_by,
            initial_cluster_state: ClusterState::Existing,
            initial_advertise_peer_urls: j.initial_advertise_peer_urls,
            initial_cluster: j.initial_cluster,
            cluster_id: j.cluster_id.0,
            cluster_id_hex: j.cluster_id.hex(),
            member_id: j.member_id.map(|m| m.0),
            member_id_hex: j.member_id.map(EtcdId::hex),
            removed: j.removed,
            endpoints: j.endpoints,
        }
    }
}

impl TryFrom<JoinJson> for Join {
    type Error = String;
    fn try_from(j: JoinJson) -> Result<Join, String> {
        if j.initial_cluster_state != ClusterState::Existing {
            return Err("join.initial_cluster_state must be \"existing\"".into());
        }
        let cluster_id = EtcdId::from_both("join.cluster_id", j.cluster_id, &j.cluster_id_hex)?;
        let member_id = match (j.member_id, j.member_id_hex) {
            (Some(d), Some(h)) => Some(EtcdId::from_both("join.member_id", d, &h)?),
            (None, None) => None,
            _ => return Err("join.member_id and join.member_id_hex come together".into()),
        };
        Ok(Join {
            domain: j.domain,
            srv_name: j.srv_name,
            srv_record: j.srv_record,
            scheme: j.scheme,
            matched_by: j.matched_by,
            initial_advertise_peer_urls: j.initial_advertise_peer_urls,
            initial_cluster: j.initial_cluster,
            cluster_id,
            member_id,
            removed: j.removed,
            endpoints: j.endpoints,
        })
    }
}

/// What the SRV records said at bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BootstrapJson", into = "BootstrapJson")]
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
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<EtcdUrl>,
    /// `--initial-cluster`.
    pub initial_cluster: InitialCluster,
    /// The ID etcd will give this member.
    pub member_id: EtcdId,
    /// The ID etcd will give the cluster.
    pub cluster_id: EtcdId,
    /// Every member, sorted by name.
    pub members: Vec<PlannedMember>,
}

/// One member of the planned cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MemberJson", into = "MemberJson")]
pub struct PlannedMember {
    /// Member name (the target's first label).
    pub name: MemberName,
    /// SRV target.
    pub target: String,
    /// Peer port.
    pub port: u16,
    /// Advertised peer URL.
    pub peer_url: EtcdUrl,
    /// Advertised client URLs.
    pub client_urls: Vec<EtcdUrl>,
    /// A and AAAA addresses of the target.
    pub addresses: Vec<IpAddr>,
    /// Expected member ID.
    pub id: EtcdId,
    /// Whether this is the member on this host.
    pub this_host: bool,
}

/// Everything needed to start etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PlanJson", into = "PlanJson")]
pub struct Plan {
    /// `--name`.
    pub name: MemberName,
    /// `--data-dir`, when known.
    pub data_dir: Option<PathBuf>,
    /// `--listen-peer-urls`: local addresses, since etcd cannot bind names.
    pub listen_peer_urls: Vec<EtcdUrl>,
    /// `--listen-client-urls`.
    pub listen_client_urls: Vec<EtcdUrl>,
    /// `--advertise-client-urls`: by name, like the peer URLs.
    pub advertise_client_urls: Vec<EtcdUrl>,
    /// Bootstrap, restart or join.
    pub start: Start,
    /// Why this start was chosen, printed at every start.
    pub reason: String,
}

/// The JSON form of [`Plan`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanJson {
    version: u32,
    mode: Mode,
    name: MemberName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    listen_peer_urls: Vec<EtcdUrl>,
    listen_client_urls: Vec<EtcdUrl>,
    advertise_client_urls: Vec<EtcdUrl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<Bootstrap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    join: Option<Join>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moved: Option<Box<Moved>>,
    /// A restart's or move's `--initial-advertise-peer-urls` (see [`Start::Restart`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    peer_urls: Vec<EtcdUrl>,
    /// Absent in plans written before the reason was kept.
    #[serde(default)]
    reason: String,
}

/// The JSON form of [`Bootstrap`]: IDs in decimal and hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootstrapJson {
    domain: String,
    srv_name: Option<String>,
    srv_record: String,
    scheme: Scheme,
    matched_by: String,
    token: String,
    initial_cluster_state: ClusterState,
    initial_advertise_peer_urls: Vec<EtcdUrl>,
    initial_cluster: InitialCluster,
    member_id: u64,
    member_id_hex: String,
    cluster_id: u64,
    cluster_id_hex: String,
    members: Vec<PlannedMember>,
}

/// The JSON form of [`PlannedMember`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberJson {
    name: MemberName,
    target: String,
    port: u16,
    peer_url: EtcdUrl,
    client_urls: Vec<EtcdUrl>,
    addresses: Vec<IpAddr>,
    id: u64,
    id_hex: String,
    this_host: bool,
}

impl From<Plan> for PlanJson {
    fn from(p: Plan) -> PlanJson {
        let (mode, cluster, join, moved, peer_urls) = match p.start {
            Start::Bootstrap(b) => (Mode::Bootstrap, Some(b), None, None, vec![]),
            Start::Restart {
                bootstrapped,
                moved: None,
                peer_urls,
            } => (Mode::Restart, bootstrapped, None, None, peer_urls),
            Start::Restart {
                bootstrapped,
                moved: Some(m),
                peer_urls,
            } => (Mode::Move, bootstrapped, None, Some(m), peer_urls),
            Start::Join(j) => (Mode::Join, None, Some(j), None, vec![]),
        };
        PlanJson {
            version: PLAN_VERSION,
            mode,
            name: p.name,
            data_dir: p.data_dir,
            listen_peer_urls: p.listen_peer_urls,
            listen_client_urls: p.listen_client_urls,
            advertise_client_urls: p.advertise_client_urls,
            cluster,
            join,
            moved,
            peer_urls,
            reason: p.reason,
        }
    }
}

impl TryFrom<PlanJson> for Plan {
    type Error = String;
    fn try_from(j: PlanJson) -> Result<Plan, String> {
        if j.version != PLAN_VERSION {
            return Err(format!(
                "format version {}, this muster-agent reads version {PLAN_VERSION}",
                j.version
            ));
        }
        if j.moved.is_some() != (j.mode == Mode::Move) {
            return Err("\"moved\" comes with mode \"move\" and only with it".into());
        }
        if !j.peer_urls.is_empty() && !matches!(j.mode, Mode::Restart | Mode::Move) {
            return Err("\"peer_urls\" comes with mode \"restart\" or \"move\" only".into());
        }
        let start = match (j.mode, j.cluster, j.join) {
            (Mode::Bootstrap, Some(b), None) => Start::Bootstrap(b),
            (Mode::Bootstrap, None, _) => {
                return Err("mode \"bootstrap\" without \"cluster\"".into());
            }
            (Mode::Restart | Mode::Move, bootstrapped, None) => Start::Restart {
                bootstrapped,
                moved: j.moved,
                peer_urls: j.peer_urls,
            },
            (Mode::Join, None, Some(join)) => Start::Join(join),
            (Mode::Join, _, None) => return Err("mode \"join\" without \"join\"".into()),
            (mode, _, Some(_)) => {
                return Err(format!("mode \"{mode}\" with the fields of another mode"));
            }
        };
        Ok(Plan {
            name: j.name,
            data_dir: j.data_dir,
            listen_peer_urls: j.listen_peer_urls,
            listen_client_urls: j.listen_client_urls,
            advertise_client_urls: j.advertise_client_urls,
            start,
            reason: j.reason,
        })
    }
}

impl From<Bootstrap> for BootstrapJson {
    fn from(b: Bootstrap) -> BootstrapJson {
        BootstrapJson {
            domain: b.domain,
            srv_name: b.srv_name,
            srv_record: b.srv_record,
            scheme: b.scheme,
            matched_by: b.matched_by,
            token: b.token,
            initial_cluster_state: b.initial_cluster_state,
            initial_advertise_peer_urls: b.initial_advertise_peer_urls,
            initial_cluster: b.initial_cluster,
            member_id: b.member_id.0,
            member_id_hex: b.member_id.hex(),
            cluster_id: b.cluster_id.0,
            cluster_id_hex: b.cluster_id.hex(),
            members: b.members,
        }
    }
}

impl TryFrom<BootstrapJson> for Bootstrap {
    type Error = String;
    fn try_from(j: BootstrapJson) -> Result<Bootstrap, String> {
        let member_id = EtcdId::from_both("cluster.member_id", j.member_id, &j.member_id_hex)?;
        let cluster_id = EtcdId::from_both("cluster.cluster_id", j.cluster_id, &j.cluster_id_hex)?;
        if !j.members.iter().any(|m| m.this_host && m.id == member_id) {
            return Err(format!(
                "cluster.member_id {} is not the id of the member marked this_host",
                j.member_id
            ));
        }
        Ok(Bootstrap {
            domain: j.domain,
            srv_name: j.srv_name,
            srv_record: j.srv_record,
            scheme: j.scheme,
            matched_by: j.matched_by,
            token: j.token,
            initial_cluster_state: j.initial_cluster_state,
            initial_advertise_peer_urls: j.initial_advertise_peer_urls,
            initial_cluster: j.initial_cluster,
            member_id,
            cluster_id,
            members: j.members,
        })
    }
}

impl From<PlannedMember> for MemberJson {
    fn from(m: PlannedMember) -> MemberJson {
        MemberJson {
            name: m.name,
            target: m.target,
            port: m.port,
            peer_url: m.peer_url,
            client_urls: m.client_urls,
            addresses: m.addresses,
            id: m.id.0,
            id_hex: m.id.hex(),
            this_host: m.this_host,
        }
    }
}

impl TryFrom<MemberJson> for PlannedMember {
    type Error = String;
    fn try_from(j: MemberJson) -> Result<PlannedMember, String> {
        let id = EtcdId::from_both(&format!("member {} id", j.name), j.id, &j.id_hex)?;
        Ok(PlannedMember {
            name: j.name,
            target: j.target,
            port: j.port,
            peer_url: j.peer_url,
            client_urls: j.client_urls,
            addresses: j.addresses,
            id,
            this_host: j.this_host,
        })
    }
}

/// One etcd flag (without dashes) and its value.
pub type Flag = (&'static str, String);

impl Plan {
    /// Bootstrap, restart or join.
    pub fn mode(&self) -> Mode {
        match self.start {
            Start::Bootstrap(_) => Mode::Bootstrap,
            Start::Restart { moved: None, .. } => Mode::Restart,
            Start::Restart { moved: Some(_), .. } => Mode::Move,
            Start::Join(_) => Mode::Join,
        }
    }

    /// True when etcd creates a new data dir from `--initial-*` flags (bootstrap or
    /// join): the plan is then persisted for restarts.
    pub fn creates_member(&self) -> bool {
        matches!(self.start, Start::Bootstrap(_) | Start::Join(_))
    }

    /// The cluster: planned now, or (on a restart) as bootstrapped, when known.
    pub fn cluster(&self) -> Option<&Bootstrap> {
        match &self.start {
            Start::Bootstrap(b) => Some(b),
            Start::Restart { bootstrapped, .. } => bootstrapped.as_ref(),
            Start::Join(_) => None,
        }
    }

    /// The etcd flags of this plan, in a fixed order. `--data-dir` only when
    /// `with_data_dir` (it may come from `ETCD_DATA_DIR` instead). A restart plan has of
    /// the `--initial-*` flags only `--initial-advertise-peer-urls` (see
    /// [`Start::Restart`]): etcd ignores the others once a WAL exists, and leaving them
    /// out makes clear that DNS played no part.
    pub fn etcd_flags(&self, with_data_dir: bool) -> Vec<Flag> {
        let mut f: Vec<Flag> = vec![("name", self.name.to_string())];
        if with_data_dir {
            if let Some(d) = &self.data_dir {
                f.push(("data-dir", d.display().to_string()));
            }
        }
        f.push(("listen-peer-urls", urls::join(&self.listen_peer_urls)));
        f.push(("listen-client-urls", urls::join(&self.listen_client_urls)));
        f.push((
            "advertise-client-urls",
            urls::join(&self.advertise_client_urls),
        ));
        if let Start::Bootstrap(c) = &self.start {
            f.push((
                "initial-advertise-peer-urls",
                urls::join(&c.initial_advertise_peer_urls),
            ));
            f.push(("initial-cluster", c.initial_cluster.to_string()));
            f.push(("initial-cluster-state", c.initial_cluster_state.to_string()));
            f.push(("initial-cluster-token", c.token.clone()));
        }
        if let Start::Restart { peer_urls, .. } = &self.start {
            if !peer_urls.is_empty() {
                f.push(("initial-advertise-peer-urls", urls::join(peer_urls)));
            }
        }
        if let Start::Join(j) = &self.start {
            f.push((
                "initial-advertise-peer-urls",
                urls::join(&j.initial_advertise_peer_urls),
            ));
            f.push(("initial-cluster", j.initial_cluster.to_string()));
            f.push(("initial-cluster-state", ClusterState::Existing.to_string()));
        }
        f
    }

    /// The human-readable form printed by `muster-agent plan`.
    pub fn render_text(&self, with_data_dir: bool) -> String {
        let mut s = String::new();
        match &self.start {
            Start::Bootstrap(c) => self.render_bootstrap(&mut s, c),
            Start::Restart {
                bootstrapped,
                moved,
                peer_urls,
            } => self.render_restart(&mut s, bootstrapped.as_ref(), moved.as_deref(), peer_urls),
            Start::Join(j) => self.render_join(&mut s, j),
        }
        // write! to a String cannot fail.
        let _ = writeln!(s, "decision: {} ({})", self.mode(), self.reason);
        let _ = writeln!(s, "etcd flags");
        for (k, v) in self.etcd_flags(with_data_dir) {
            let _ = writeln!(s, "  --{k}={v}");
        }
        s
    }

    fn render_bootstrap(&self, s: &mut String, c: &Bootstrap) {
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
        let _ = writeln!(
            s,
            "  member id      {} ({})",
            c.member_id,
            c.member_id.hex()
        );
        let _ = writeln!(
            s,
            "  cluster id     {} ({})",
            c.cluster_id,
            c.cluster_id.hex()
        );
        let _ = writeln!(s, "  members");
        let w = c
            .members
            .iter()
            .map(|m| m.name.as_str().len())
            .max()
            .unwrap_or(0);
        for m in &c.members {
            let addrs: Vec<String> = m.addresses.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                s,
                "    {:w$}  {}  {}  id {}{}",
                m.name.as_str(),
                m.peer_url,
                addrs.join(","),
                m.id.hex(),
                if m.this_host { "  <- this host" } else { "" },
            );
        }
    }

    fn render_restart(
        &self,
        s: &mut String,
        bootstrapped: Option<&Bootstrap>,
        moved: Option<&Moved>,
        peer_urls: &[EtcdUrl],
    ) {
        let data = self
            .data_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let what = if moved.is_some() { "move" } else { "restart" };
        let passed = if peer_urls.is_empty() {
            "no --initial-* flags are passed".to_string()
        } else {
            format!(
                "of the --initial-* flags only --initial-advertise-peer-urls={} is \
                 passed (the peer URL etcd names in its messages)",
                urls::join(peer_urls)
            )
        };
        let _ = writeln!(
            s,
            "{what} member {}: {data}/member/wal exists, so etcd uses its stored \
             membership; {passed}",
            self.name
        );
        if let Some(m) = moved {
            let _ = writeln!(
                s,
                "  peer url       {} (was {}; member update: {})",
                m.peer_url,
                m.peer_url_before,
                m.member_update.as_str()
            );
            let _ = writeln!(
                s,
                "  listen before  {} {}",
                urls::join(&m.listen_peer_urls_before),
                urls::join(&m.listen_client_urls_before)
            );
        }
        if let Some(c) = bootstrapped {
            let _ = writeln!(
                s,
                "  bootstrapped as member {} of cluster {} ({} members from {})",
                c.member_id.hex(),
                c.cluster_id.hex(),
                c.members.len(),
                c.srv_record
            );
        }
    }

    fn render_join(&self, s: &mut String, j: &Join) {
        let _ = writeln!(
            s,
            "join cluster {} as member {} (learner, promoted once caught up)",
            j.cluster_id.hex(),
            self.name
        );
        let _ = writeln!(
            s,
            "  this host      {} (matched by {})",
            self.name, j.matched_by
        );
        if let Some(r) = &j.removed {
            let _ = writeln!(s, "  stale entry    {r} (removed before the add)");
        }
        match j.member_id {
            Some(id) => {
                let _ = writeln!(s, "  member id      {id} ({}), given by the add", id.hex());
            }
            None => {
                let _ = writeln!(
                    s,
                    "  member id      assigned by etcd at the add (plan changes nothing)"
                );
            }
        }
        let _ = writeln!(
            s,
            "  asked          {}",
            j.endpoints
                .iter()
                .map(|e| e.url.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

/// The other members' client URLs, with their addresses, from a skeleton plan.
pub fn others(plan: &Plan) -> Vec<Endpoint> {
    plan.cluster()
        .map(|c| {
            c.members
                .iter()
                .filter(|m| !m.this_host && !m.addresses.is_empty())
                .flat_map(|m| {
                    m.client_urls.iter().map(|u| Endpoint {
                        url: u.to_string(),
                        addrs: m.addresses.clone(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The other members' peer URLs, with their addresses, from a skeleton plan.
pub fn other_peers(plan: &Plan) -> Vec<Endpoint> {
    plan.cluster()
        .map(|c| {
            c.members
                .iter()
                .filter(|m| !m.this_host && !m.addresses.is_empty())
                .map(|m| Endpoint {
                    url: m.peer_url.to_string(),
                    addrs: m.addresses.clone(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The endpoints of a persisted plan: this member's own client URLs (dialled at its
/// listen addresses) first, then the other members'.
pub fn endpoints(plan: &Plan) -> Vec<Endpoint> {
    let own_addrs: Vec<std::net::IpAddr> = plan
        .listen_client_urls
        .iter()
        .filter_map(|u| match u.host {
            urls::Host::Ip(a) if !a.is_unspecified() => Some(a),
            _ => None,
        })
        .collect();
    let mut v: Vec<Endpoint> = plan
        .advertise_client_urls
        .iter()
        .map(|u| Endpoint {
            url: u.to_string(),
            addrs: own_addrs.clone(),
        })
        .collect();
    match &plan.start {
        Start::Join(j) => v.extend(j.endpoints.iter().cloned()),
        _ => v.extend(others(plan)),
    }
    v
}

/// A sample plan for the tests of the modules that store, restart and move plans.
#[cfg(test)]
pub(crate) mod sample {
    use super::*;
    use crate::ids;

    fn name(s: &str) -> MemberName {
        MemberName::parse(s).unwrap()
    }

    /// A bootstrap plan of member m1 of m0..m2, as `env`/`exec` persist it.
    pub(crate) fn stored() -> Plan {
        let url = |i: usize| format!("http://m{i}.c.test:2380");
        let members: Vec<PlannedMember> = (0..3)
            .map(|i| PlannedMember {
                name: name(&format!("m{i}")),
                target: format!("m{i}.c.test."),
                port: 2380,
                peer_url: url(i).as_str().into(),
                client_urls: vec![format!("http://m{i}.c.test:2379").as_str().into()],
                addresses: vec![format!("10.0.0.{i}").parse().unwrap()],
                id: EtcdId(ids::member_id(&[url(i)], "muster:c.test")),
                this_host: i == 1,
            })
            .collect();
        let member_ids: Vec<u64> = members.iter().map(|m| m.id.0).collect();
        Plan {
            reason: "the records describe a complete new 3-member cluster".into(),
            name: name("m1"),
            data_dir: Some("/old".into()),
            listen_peer_urls: vec!["http://10.0.0.1:2380".into()],
            listen_client_urls: vec!["http://10.0.0.1:2379".into()],
            advertise_client_urls: vec!["http://m1.c.test:2379".into()],
            start: Start::Bootstrap(Bootstrap {
                domain: "c.test.".into(),
                srv_name: None,
                srv_record: "_etcd-server._tcp.c.test.".into(),
                scheme: Scheme::Http,
                matched_by: "--name m1".into(),
                token: "muster:c.test".into(),
                initial_cluster_state: ClusterState::New,
                initial_advertise_peer_urls: vec![url(1).as_str().into()],
                initial_cluster: (0..3)
                    .map(|i| format!("m{i}={}", url(i)))
                    .collect::<Vec<_>>()
                    .join(",")
                    .parse()
                    .unwrap(),
                member_id: members[1].id,
                cluster_id: EtcdId(ids::cluster_id(&member_ids)),
                members,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_reads_back_what_it_writes() {
        let text = "1f=http://m1.c.test:2380,m0=https://[::1]:2380";
        let c: InitialCluster = text.parse().unwrap();
        assert_eq!(c.members().len(), 2);
        assert_eq!(c.members()[0].0, "1f");
        assert_eq!(c.to_string(), text);
        assert_eq!("".parse::<InitialCluster>(), Ok(InitialCluster::default()));
        for bad in ["m0", "=http://a:1", "m0=http://a", "m0=http://a:1,"] {
            assert!(bad.parse::<InitialCluster>().is_err(), "{bad}");
        }
    }
}
