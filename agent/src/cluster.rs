//! The pure core: SRV and address records plus this host's addresses in, a [`Plan`] or a
//! typed error out. No sockets, no clock, no files: everything here is tested with data.
//!
//! Two steps. [`settle`] decides whether a [`RecordSet`] (one read of the zone) describes
//! a complete cluster: one SRV set chosen (`_etcd-server-ssl` = https, `_etcd-server` =
//! http, RFC 2782 names), every target resolving, `--expect` members present, names
//! unique. [`plan`] then finds which member this host is and builds the etcd flags, with
//! URLs that are byte-identical on every host (etcd hashes them into the member IDs).
//!
//! Limitations: SRV priority and weight are ignored (etcd ignores them too); a target
//! `.` ("service not available", RFC 2782) is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids;
use crate::plan::{Bootstrap, Mode, Plan, PlannedMember, PLAN_VERSION};

/// URL scheme of a cluster's peers, decided by which SRV set publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain-text peers: `_etcd-server._tcp` / `_etcd-client._tcp`.
    Http,
    /// TLS peers: `_etcd-server-ssl._tcp` / `_etcd-client-ssl._tcp`.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            other => Err(format!("unknown scheme {other:?}: use http or https")),
        }
    }
}

/// Who looks the records up: etcd peers (`_etcd-server`) or clients (`_etcd-client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Peer records, which define the members.
    Server,
    /// Client records, which give each member's client URLs.
    Client,
}

/// The discovery domain and optional service-name suffix, as etcd's `--discovery-srv`
/// and `--discovery-srv-name` take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Absolute, lower-case domain, e.g. `example.test.`.
    pub domain: String,
    /// The `--srv-name` suffix, if any.
    pub srv_name: Option<String>,
}

impl Service {
    /// Normalises `domain` to an absolute lower-case name (queries must not go through a
    /// search list: Kubernetes pods use `ndots:5`).
    pub fn new(domain: &str, srv_name: Option<&str>) -> Result<Service, String> {
        let d = domain.trim().to_ascii_lowercase();
        let d = d.trim_end_matches('.');
        if d.is_empty() {
            return Err(
                "the discovery domain is empty: pass --domain, e.g. --domain example.com".into(),
            );
        }
        if d.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
            || d.contains("..")
        {
            return Err(format!(
                "{domain:?} is not a domain name: pass --domain, e.g. --domain example.com"
            ));
        }
        let srv_name = srv_name.map(str::trim).filter(|s| !s.is_empty());
        if let Some(s) = srv_name {
            if s.chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            {
                return Err(format!(
                    "--srv-name {s:?} must be a single label suffix, e.g. --srv-name prod"
                ));
            }
        }
        Ok(Service {
            domain: format!("{d}."),
            srv_name: srv_name.map(str::to_owned),
        })
    }

    /// The SRV owner name for `role` and `scheme`, e.g. `_etcd-server-ssl-prod._tcp.d.`.
    pub fn record(&self, role: Role, scheme: Scheme) -> String {
        let role = match role {
            Role::Server => "_etcd-server",
            Role::Client => "_etcd-client",
        };
        let ssl = match scheme {
            Scheme::Https => "-ssl",
            Scheme::Http => "",
        };
        let suffix = self
            .srv_name
            .as_ref()
            .map(|s| format!("-{s}"))
            .unwrap_or_default();
        format!("{role}{ssl}{suffix}._tcp.{}", self.domain)
    }

    /// The token used when `--token` is not given: `muster:<domain>` or
    /// `muster:<domain>:<srv-name>`, domain without the trailing dot. Every host derives
    /// the same one, and two clusters in different domains (or with different suffixes)
    /// get different tokens, hence different member and cluster IDs.
    pub fn default_token(&self) -> String {
        let d = self.domain.trim_end_matches('.');
        match &self.srv_name {
            Some(s) => format!("muster:{d}:{s}"),
            None => format!("muster:{d}"),
        }
    }
}

/// One SRV record: where a member (or its client port) is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Srv {
    /// Absolute, lower-case target name, e.g. `infra0.example.test.`.
    pub target: String,
    /// Port from the record.
    pub port: u16,
}

/// What one lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the asked type (sorted, without duplicates).
    Records(Vec<T>),
    /// NXDOMAIN or NODATA: the name has no records of this type (yet).
    Empty,
    /// The lookup itself failed (timeout, refused, SERVFAIL ...), with the reason.
    Failed(String),
}

impl<T: Ord> Answer<T> {
    /// Sorts and deduplicates so that two reads of the same data compare equal.
    pub fn normalised(self) -> Answer<T> {
        match self {
            Answer::Records(mut v) => {
                v.sort();
                v.dedup();
                if v.is_empty() {
                    Answer::Empty
                } else {
                    Answer::Records(v)
                }
            }
            other => other,
        }
    }
}

/// Everything one discovery round read. Two rounds that read the same data compare equal,
/// which is how the wait loop sees that the records are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// `_etcd-server-ssl[-S]._tcp.D` (None when `--scheme http` skips it).
    pub server_ssl: Option<Answer<Srv>>,
    /// `_etcd-server[-S]._tcp.D` (None when `--scheme https` skips it).
    pub server_plain: Option<Answer<Srv>>,
    /// `_etcd-client-ssl[-S]._tcp.D`.
    pub client_ssl: Answer<Srv>,
    /// `_etcd-client[-S]._tcp.D`.
    pub client_plain: Answer<Srv>,
    /// A and AAAA records of every server SRV target, merged.
    pub addresses: BTreeMap<String, Answer<IpAddr>>,
}

/// A member as the records describe it, before this host is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// etcd member name: the target's first label.
    pub name: String,
    /// Absolute lower-case SRV target.
    pub target: String,
    /// Peer port.
    pub port: u16,
    /// Every A and AAAA address of the target, sorted.
    pub addresses: Vec<IpAddr>,
    /// Client (scheme, port) pairs from `_etcd-client*` records for the same target.
    pub client_ports: Vec<(Scheme, u16)>,
}

impl Candidate {
    /// `scheme://target-without-dot:port`: the advertised peer URL, the same on every host.
    pub fn peer_url(&self, scheme: Scheme) -> String {
        name_url(scheme, &self.target, self.port)
    }
}

/// A complete record set: the members and which SRV set they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Owner name of the SRV set used.
    pub record: String,
    /// Scheme of that set.
    pub scheme: Scheme,
    /// The members, sorted by name.
    pub members: Vec<Candidate>,
}

/// Why a record set is not complete yet: one item of a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Neither SRV set (or the one `--scheme` asks for) has records.
    NoServerRecords {
        /// The owner names asked.
        records: Vec<String>,
    },
    /// A lookup failed (transport error or error rcode).
    LookupFailed {
        /// Name looked up.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// An SRV target has neither A nor AAAA records.
    NoAddress {
        /// The target.
        target: String,
    },
    /// Fewer members published than `--expect`.
    TooFew {
        /// The SRV owner name.
        record: String,
        /// Distinct SRV records published.
        published: usize,
        /// `--expect`.
        expect: usize,
    },
    /// More members published than `--expect`.
    TooMany {
        /// The SRV owner name.
        record: String,
        /// Distinct SRV records published.
        published: usize,
        /// `--expect`.
        expect: usize,
    },
    /// Complete, but not yet seen twice in a row.
    NotStable,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::NoServerRecords { records } => {
                write!(f, "no SRV records at {}", records.join(" or "))
            }
            Missing::LookupFailed { name, error } => write!(f, "lookup of {name} failed: {error}"),
            Missing::NoAddress { target } => write!(f, "{target} has no A/AAAA record"),
            Missing::TooFew { record, published, expect } => write!(
                f,
                "only {published} SRV record{} at {record}, --expect is {expect}",
                if *published == 1 { "" } else { "s" }
            ),
            Missing::TooMany { record, published, expect } => write!(
                f,
                "{published} SRV records at {record} but --expect is {expect}: fix the zone or --expect"
            ),
            Missing::NotStable => write!(f, "waiting to read the same records twice in a row"),
        }
    }
}

/// Progress of one round: how many members resolve and what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Members whose target resolved to at least one address.
    pub resolvable: usize,
    /// `--expect`, else the number of SRV records published (None if unknown).
    pub total: Option<usize>,
    /// What is missing, in the order found.
    pub missing: Vec<Missing>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(t) => write!(f, "{}/{t} members resolvable", self.resolvable)?,
            None => write!(f, "{} members resolvable", self.resolvable)?,
        }
        for m in &self.missing {
            write!(f, "; {m}")?;
        }
        Ok(())
    }
}

/// Result of judging one round that did not give a complete cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsettled {
    /// Records may still appear or change: keep waiting.
    Pending(Progress),
    /// Waiting cannot fix this: stop with the error.
    Fatal(PlanError),
}

/// A member's target and addresses, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddrs {
    /// `target:port`.
    pub target: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// Errors that waiting does not fix: the records or the flags must change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Both `_etcd-server-ssl` and `_etcd-server` are published.
    #[error(
        "both {ssl} (https) and {plain} (http) have SRV records: publish one set per cluster \
         (etcd 3.5+ would merge them), or pick one with --scheme https|http"
    )]
    BothServerSets {
        /// The -ssl owner name.
        ssl: String,
        /// The plain owner name.
        plain: String,
    },
    /// Two SRV targets give the same member name.
    #[error(
        "member name {name:?} is taken by two SRV records of {record}: {first} and {second}; \
         member names are the first label of the target and must be unique: rename one target"
    )]
    DuplicateName {
        /// The clashing name.
        name: String,
        /// The SRV owner name.
        record: String,
        /// One `target:port`.
        first: String,
        /// The other `target:port`.
        second: String,
    },
    /// A target's first label cannot be an etcd member name.
    #[error(
        "SRV target {target} of {record}: its first label {label:?} cannot be a member name \
         (letters, digits, '-' and '_' only): rename the target"
    )]
    BadMemberName {
        /// The target.
        target: String,
        /// The SRV owner name.
        record: String,
        /// The label.
        label: String,
    },
    /// No member resolves to an address of this host.
    #[error(
        "no SRV target of {record} resolves to an address of this host\n{}\n  local addresses: {}\n\
         fix: give this host's SRV target an A/AAAA record with one of the local addresses, \
         or run muster-agent on the host the records point to",
        listing(members, local), join_ips(local)
    )]
    NoSelfMatch {
        /// The SRV owner name.
        record: String,
        /// Every member with its addresses.
        members: Vec<TargetAddrs>,
        /// This host's addresses.
        local: Vec<IpAddr>,
    },
    /// Several members resolve to addresses of this host.
    #[error(
        "{} SRV targets of {record} resolve to addresses of this host, so muster-agent cannot \
         tell which member it is\n{}\n  local addresses: {}\n\
         fix: pass --name with one of {} (or --advertise-peer-url with the member's peer URL)",
        matches.len(), listing(members, local), join_ips(local), matches.join(", ")
    )]
    SeveralMatches {
        /// The SRV owner name.
        record: String,
        /// Every member with its addresses.
        members: Vec<TargetAddrs>,
        /// This host's addresses.
        local: Vec<IpAddr>,
        /// Names of the local members.
        matches: Vec<String>,
    },
    /// `--name` names no member.
    #[error(
        "--name {name} matches no SRV target of {record}; members:\n{}\n\
         fix: pass one of {} as --name, or publish an SRV record whose target starts with {name}.",
        listing(members, &[]), names.join(", ")
    )]
    UnknownName {
        /// The name asked for.
        name: String,
        /// The SRV owner name.
        record: String,
        /// Every member.
        members: Vec<TargetAddrs>,
        /// Every member name.
        names: Vec<String>,
    },
    /// `--advertise-peer-url` matches no member.
    #[error(
        "--advertise-peer-url {url} matches no SRV record of {record} (neither by target name \
         and port nor by address and port); members:\n{}\n\
         fix: use scheme://target:port of one member, e.g. {example}",
        listing(members, &[])
    )]
    UnknownAdvertiseUrl {
        /// The URL given.
        url: String,
        /// The SRV owner name.
        record: String,
        /// Every member.
        members: Vec<TargetAddrs>,
        /// A valid URL to show.
        example: String,
    },
    /// `--advertise-peer-url` is not `scheme://host:port`.
    #[error("--advertise-peer-url {url:?} is not scheme://host:port: {reason}")]
    BadAdvertiseUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `--name` and `--advertise-peer-url` pick different members.
    #[error("--name {name} and --advertise-peer-url {url} name different members ({name} and {other}): drop one")]
    IdentityConflict {
        /// `--name`.
        name: String,
        /// `--advertise-peer-url`.
        url: String,
        /// Member the URL picked.
        other: String,
    },
    /// The member picked by flag is not on this host.
    #[error(
        "member {name} ({target}) was picked by {by}, but none of its addresses ({}) is an \
         address of this host (local addresses: {}), so etcd could not listen on them\n\
         fix: run this member on the host its A/AAAA records point to, or correct the records",
        join_ips(addresses),
        join_ips(local)
    )]
    NotLocal {
        /// The member's name.
        name: String,
        /// `target:port`.
        target: String,
        /// Its addresses.
        addresses: Vec<IpAddr>,
        /// Which flag picked it.
        by: String,
        /// This host's addresses.
        local: Vec<IpAddr>,
    },
}

fn join_ips(ips: &[IpAddr]) -> String {
    if ips.is_empty() {
        return "none".into();
    }
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line per member: `  target:port -> addr, addr (local)`.
fn listing(members: &[TargetAddrs], local: &[IpAddr]) -> String {
    members
        .iter()
        .map(|m| {
            let addrs = m
                .addresses
                .iter()
                .map(|a| {
                    if local.contains(a) {
                        format!("{a} (local)")
                    } else {
                        a.to_string()
                    }
                })
                .collect::<Vec<_>>();
            let addrs = if addrs.is_empty() {
                "no address".to_string()
            } else {
                addrs.join(", ")
            };
            format!("  {} -> {addrs}", m.target)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `scheme://name-without-dot:port`.
pub fn name_url(scheme: Scheme, target: &str, port: u16) -> String {
    format!(
        "{scheme}://{}:{port}",
        target.trim_end_matches('.').to_ascii_lowercase()
    )
}

/// `scheme://ip:port`, IPv6 in brackets (etcd listens on addresses, not names).
pub fn ip_url(scheme: Scheme, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The member name etcd will know: the target's first label, lower-case.
fn member_name(target: &str) -> &str {
    target.split('.').next().unwrap_or(target)
}

fn valid_member_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Decides whether `rs` describes a complete cluster: one SRV set, every target resolving,
/// `expect` members (if given), unique names. Does not judge stability (the wait loop
/// compares consecutive reads) nor identity ([`plan`]).
pub fn settle(
    service: &Service,
    rs: &RecordSet,
    scheme: Option<Scheme>,
    expect: Option<usize>,
) -> Result<Members, Unsettled> {
    let ssl_name = service.record(Role::Server, Scheme::Https);
    let plain_name = service.record(Role::Server, Scheme::Http);
    let pending = |missing: Missing| {
        Unsettled::Pending(Progress {
            resolvable: 0,
            total: expect,
            missing: vec![missing],
        })
    };
    let failed = |name: &str, error: &str| {
        pending(Missing::LookupFailed {
            name: name.to_string(),
            error: error.to_string(),
        })
    };
    let empty = Answer::Empty;
    let ssl = rs.server_ssl.as_ref().unwrap_or(&empty);
    let plain = rs.server_plain.as_ref().unwrap_or(&empty);

    // Pick the set. With both published, etcd 3.5+ merges them and may fold two hosts
    // into one member; we refuse rather than guess.
    let (scheme, record, records) = match (scheme, ssl, plain) {
        (Some(Scheme::Https), Answer::Records(r), _)
        | (None, Answer::Records(r), Answer::Empty) => (Scheme::Https, ssl_name, r),
        (Some(Scheme::Http), _, Answer::Records(r)) | (None, Answer::Empty, Answer::Records(r)) => {
            (Scheme::Http, plain_name, r)
        }
        (None, Answer::Records(_), Answer::Records(_)) => {
            return Err(Unsettled::Fatal(PlanError::BothServerSets {
                ssl: ssl_name,
                plain: plain_name,
            }));
        }
        (Some(Scheme::Https), Answer::Failed(e), _) | (None, Answer::Failed(e), _) => {
            return Err(failed(&ssl_name, e));
        }
        (Some(Scheme::Http), _, Answer::Failed(e)) | (None, _, Answer::Failed(e)) => {
            return Err(failed(&plain_name, e));
        }
        (Some(Scheme::Https), Answer::Empty, _) => {
            return Err(pending(Missing::NoServerRecords {
                records: vec![ssl_name],
            }));
        }
        (Some(Scheme::Http), _, Answer::Empty) => {
            return Err(pending(Missing::NoServerRecords {
                records: vec![plain_name],
            }));
        }
        (None, Answer::Empty, Answer::Empty) => {
            return Err(pending(Missing::NoServerRecords {
                records: vec![ssl_name, plain_name],
            }));
        }
    };

    // Client records: both sets, like etcd's clients. A failed lookup could hide a
    // member's client port, so it holds the round back.
    let mut client_ports: BTreeMap<&str, Vec<(Scheme, u16)>> = BTreeMap::new();
    for (answer, s) in [
        (&rs.client_ssl, Scheme::Https),
        (&rs.client_plain, Scheme::Http),
    ] {
        match answer {
            Answer::Records(rr) => {
                for r in rr {
                    client_ports
                        .entry(r.target.as_str())
                        .or_default()
                        .push((s, r.port));
                }
            }
            Answer::Empty => {}
            Answer::Failed(e) => return Err(failed(&service.record(Role::Client, s), e)),
        }
    }

    let mut members = Vec::new();
    let mut missing = Vec::new();
    let mut seen: BTreeSet<(&str, u16)> = BTreeSet::new();
    for r in records {
        // RFC 2782: target "." means the service is decidedly not available there.
        if r.target == "." || !seen.insert((r.target.as_str(), r.port)) {
            continue;
        }
        match rs.addresses.get(&r.target) {
            Some(Answer::Records(addrs)) => {
                let label = member_name(&r.target);
                if !valid_member_name(label) {
                    return Err(Unsettled::Fatal(PlanError::BadMemberName {
                        target: r.target.clone(),
                        record,
                        label: label.to_string(),
                    }));
                }
                let mut ports = client_ports
                    .get(r.target.as_str())
                    .cloned()
                    .unwrap_or_default();
                ports.sort();
                ports.dedup();
                members.push(Candidate {
                    name: label.to_string(),
                    target: r.target.clone(),
                    port: r.port,
                    addresses: addrs.clone(),
                    client_ports: ports,
                });
            }
            Some(Answer::Failed(e)) => missing.push(Missing::LookupFailed {
                name: r.target.clone(),
                error: e.clone(),
            }),
            Some(Answer::Empty) | None => missing.push(Missing::NoAddress {
                target: r.target.clone(),
            }),
        }
    }
    let published = seen.len();
    match expect {
        Some(n) if published < n => missing.push(Missing::TooFew {
            record: record.clone(),
            published,
            expect: n,
        }),
        Some(n) if published > n => missing.push(Missing::TooMany {
            record: record.clone(),
            published,
            expect: n,
        }),
        _ => {}
    }
    if !missing.is_empty() {
        return Err(Unsettled::Pending(Progress {
            resolvable: members.len(),
            total: Some(expect.unwrap_or(published)),
            missing,
        }));
    }

    members.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.target.cmp(&b.target))
            .then(a.port.cmp(&b.port))
    });
    for pair in members.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(Unsettled::Fatal(PlanError::DuplicateName {
                name: pair[0].name.clone(),
                record,
                first: format!("{}:{}", pair[0].target, pair[0].port),
                second: format!("{}:{}", pair[1].target, pair[1].port),
            }));
        }
    }
    Ok(Members {
        record,
        scheme,
        members,
    })
}

/// How this host says which member it is, and what the operator fixed by flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--name`: picks the member by name.
    pub name: Option<String>,
    /// `--advertise-peer-url`: picks the member by URL (target name or address, and port).
    pub advertise_peer_url: Option<String>,
    /// `--token`; default [`Service::default_token`].
    pub token: Option<String>,
    /// Client port used for a member that has no `_etcd-client*` record.
    pub default_client_port: u16,
    /// The data dir, recorded in the plan.
    pub data_dir: Option<PathBuf>,
    /// `--listen-peer-url` overrides.
    pub listen_peer_urls: Vec<String>,
    /// `--listen-client-url` overrides.
    pub listen_client_urls: Vec<String>,
    /// `--advertise-client-url` overrides.
    pub advertise_client_urls: Vec<String>,
}

/// Parses `scheme://host:port` leniently enough for matching (no path, no user info).
fn parse_url(url: &str) -> Result<(Scheme, String, u16), String> {
    let (scheme, rest) = url.split_once("://").ok_or("no scheme://")?;
    let scheme: Scheme = scheme.parse()?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = if let Some(r) = rest.strip_prefix('[') {
        let (h, p) = r.split_once("]:").ok_or("IPv6 address needs [addr]:port")?;
        (h, p)
    } else {
        rest.rsplit_once(':').ok_or("no :port")?
    };
    let port: u16 = port.parse().map_err(|_| format!("bad port {port:?}"))?;
    if host.is_empty() || host.contains('/') {
        return Err(format!("bad host {host:?}"));
    }
    Ok((
        scheme,
        host.trim_end_matches('.').to_ascii_lowercase(),
        port,
    ))
}

/// Finds which member this host is and builds its plan.
///
/// `local` are this host's interface addresses. A member is local when any of its
/// addresses is. `--name` or `--advertise-peer-url` pick among several local members
/// (a loopback test cluster has three); without them exactly one must be local.
pub fn plan(
    service: &Service,
    members: &Members,
    local: &[IpAddr],
    opts: &PlanOptions,
) -> Result<Plan, PlanError> {
    let record = &members.record;
    let all: Vec<TargetAddrs> = members
        .members
        .iter()
        .map(|m| TargetAddrs {
            target: format!("{}:{}", m.target, m.port),
            addresses: m.addresses.clone(),
        })
        .collect();
    let is_local = |m: &Candidate| m.addresses.iter().any(|a| local.contains(a));

    let by_url = match &opts.advertise_peer_url {
        None => None,
        Some(url) => {
            let (_, host, port) = parse_url(url).map_err(|reason| PlanError::BadAdvertiseUrl {
                url: url.clone(),
                reason,
            })?;
            let host_ip: Option<IpAddr> = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok();
            let found = members.members.iter().find(|m| {
                m.port == port
                    && match host_ip {
                        Some(ip) => m.addresses.contains(&ip),
                        None => m.target.trim_end_matches('.') == host,
                    }
            });
            match found {
                Some(m) => Some(m),
                None => {
                    return Err(PlanError::UnknownAdvertiseUrl {
                        url: url.clone(),
                        record: record.clone(),
                        members: all,
                        example: members
                            .members
                            .first()
                            .map(|m| m.peer_url(members.scheme))
                            .unwrap_or_default(),
                    })
                }
            }
        }
    };
    let by_name = match &opts.name {
        None => None,
        Some(name) => match members
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
        {
            Some(m) => Some(m),
            None => {
                return Err(PlanError::UnknownName {
                    name: name.clone(),
                    record: record.clone(),
                    members: all,
                    names: members.members.iter().map(|m| m.name.clone()).collect(),
                })
            }
        },
    };
    let (me, matched_by) = match (by_name, by_url) {
        (Some(n), Some(u)) if n != u => {
            return Err(PlanError::IdentityConflict {
                name: n.name.clone(),
                url: opts.advertise_peer_url.clone().unwrap_or_default(),
                other: u.name.clone(),
            })
        }
        (Some(n), _) => (n, format!("--name {}", n.name)),
        (None, Some(u)) => (
            u,
            format!(
                "--advertise-peer-url {}",
                opts.advertise_peer_url.as_deref().unwrap_or("")
            ),
        ),
        (None, None) => {
            let mine: Vec<&Candidate> = members.members.iter().filter(|m| is_local(m)).collect();
            match mine.as_slice() {
                [one] => {
                    let addrs: Vec<String> = one
                        .addresses
                        .iter()
                        .filter(|a| local.contains(a))
                        .map(IpAddr::to_string)
                        .collect();
                    (*one, format!("local address {}", addrs.join(", ")))
                }
                [] => {
                    return Err(PlanError::NoSelfMatch {
                        record: record.clone(),
                        members: all,
                        local: local.to_vec(),
                    })
                }
                several => {
                    return Err(PlanError::SeveralMatches {
                        record: record.clone(),
                        members: all,
                        local: local.to_vec(),
                        matches: several.iter().map(|m| m.name.clone()).collect(),
                    })
                }
            }
        }
    };
    if !is_local(me) {
        return Err(PlanError::NotLocal {
            name: me.name.clone(),
            target: format!("{}:{}", me.target, me.port),
            addresses: me.addresses.clone(),
            by: matched_by,
            local: local.to_vec(),
        });
    }

    let scheme = members.scheme;
    let token = opts
        .token
        .clone()
        .unwrap_or_else(|| service.default_token());
    let planned: Vec<PlannedMember> = members
        .members
        .iter()
        .map(|m| {
            let peer_url = m.peer_url(scheme);
            let id = ids::member_id(std::slice::from_ref(&peer_url), &token);
            PlannedMember {
                name: m.name.clone(),
                target: m.target.clone(),
                port: m.port,
                peer_url,
                client_urls: client_ports(m, scheme, opts.default_client_port)
                    .into_iter()
                    .map(|(s, p)| name_url(s, &m.target, p))
                    .collect(),
                addresses: m.addresses.clone(),
                id,
                id_hex: ids::hex(id),
                this_host: std::ptr::eq(m, me),
            }
        })
        .collect();
    let member_ids: Vec<u64> = planned.iter().map(|m| m.id).collect();
    let cluster_id = ids::cluster_id(&member_ids);
    let member_id = ids::member_id(&[me.peer_url(scheme)], &token);

    // Listen on every local address of the member (A and AAAA): peers may dial either.
    let my_ips: Vec<IpAddr> = {
        let mut v: Vec<IpAddr> = me
            .addresses
            .iter()
            .copied()
            .filter(|a| local.contains(a))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let my_clients = client_ports(me, scheme, opts.default_client_port);
    let or = |given: &Vec<String>, derived: Vec<String>| {
        if given.is_empty() {
            derived
        } else {
            given.clone()
        }
    };
    let listen_peer_urls = or(
        &opts.listen_peer_urls,
        my_ips
            .iter()
            .map(|ip| ip_url(scheme, *ip, me.port))
            .collect(),
    );
    let listen_client_urls = or(
        &opts.listen_client_urls,
        my_clients
            .iter()
            .flat_map(|(s, p)| my_ips.iter().map(move |ip| ip_url(*s, *ip, *p)))
            .collect(),
    );
    let advertise_client_urls = or(
        &opts.advertise_client_urls,
        my_clients
            .iter()
            .map(|(s, p)| name_url(*s, &me.target, *p))
            .collect(),
    );

    Ok(Plan {
        version: PLAN_VERSION,
        mode: Mode::Bootstrap,
        name: me.name.clone(),
        data_dir: opts.data_dir.clone(),
        listen_peer_urls,
        listen_client_urls,
        advertise_client_urls,
        cluster: Some(Bootstrap {
            domain: service.domain.clone(),
            srv_name: service.srv_name.clone(),
            srv_record: record.clone(),
            scheme,
            matched_by,
            token,
            initial_cluster_state: "new".into(),
            initial_advertise_peer_urls: vec![me.peer_url(scheme)],
            initial_cluster: planned
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_url))
                .collect::<Vec<_>>()
                .join(","),
            member_id,
            member_id_hex: ids::hex(member_id),
            cluster_id,
            cluster_id_hex: ids::hex(cluster_id),
            members: planned,
        }),
    })
}

/// A member's client (scheme, port) pairs: from `_etcd-client*` records, else the peer
/// scheme with `default_port` (etcd's conventional 2379).
fn client_ports(m: &Candidate, scheme: Scheme, default_port: u16) -> Vec<(Scheme, u16)> {
    if m.client_ports.is_empty() {
        vec![(scheme, default_port)]
    } else {
        m.client_ports.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn srv(target: &str, port: u16) -> Srv {
        Srv {
            target: target.into(),
            port,
        }
    }

    fn service() -> Service {
        Service::new("Example.Test", None).unwrap()
    }

    /// Three plain-http members m0..m2 at 10.0.0.{0,1,2}.
    fn records() -> RecordSet {
        let mut addresses = BTreeMap::new();
        for i in 0..3 {
            addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip(&format!("10.0.0.{i}"))]),
            );
        }
        RecordSet {
            server_ssl: Some(Answer::Empty),
            server_plain: Some(Answer::Records(
                (0..3)
                    .map(|i| srv(&format!("m{i}.example.test."), 2380))
                    .collect(),
            )),
            client_ssl: Answer::Empty,
            client_plain: Answer::Empty,
            addresses,
        }
    }

    fn settled(rs: &RecordSet) -> Members {
        settle(&service(), rs, None, Some(3)).unwrap()
    }

    fn pending(rs: &RecordSet, scheme: Option<Scheme>, expect: Option<usize>) -> String {
        match settle(&service(), rs, scheme, expect) {
            Err(Unsettled::Pending(p)) => p.to_string(),
            other => panic!("expected pending, got {other:?}"),
        }
    }

    fn fatal(rs: &RecordSet) -> PlanError {
        match settle(&service(), rs, None, None) {
            Err(Unsettled::Fatal(e)) => e,
            other => panic!("expected fatal, got {other:?}"),
        }
    }

    fn opts() -> PlanOptions {
        PlanOptions {
            default_client_port: 2379,
            ..Default::default()
        }
    }

    #[test]
    fn service_names() {
        let s = Service::new("Example.Test.", Some("prod")).unwrap();
        assert_eq!(
            s.record(Role::Server, Scheme::Https),
            "_etcd-server-ssl-prod._tcp.example.test."
        );
        assert_eq!(
            s.record(Role::Client, Scheme::Http),
            "_etcd-client-prod._tcp.example.test."
        );
        assert_eq!(s.default_token(), "muster:example.test:prod");
        assert_eq!(service().default_token(), "muster:example.test");
        assert!(Service::new("", None).is_err());
        assert!(Service::new("a b", None).is_err());
        assert!(Service::new("x.test", Some("a.b")).is_err());
    }

    #[test]
    fn plain_records_give_http_members() {
        let m = settled(&records());
        assert_eq!(m.scheme, Scheme::Http);
        assert_eq!(m.record, "_etcd-server._tcp.example.test.");
        let names: Vec<_> = m.members.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["m0", "m1", "m2"]);
    }

    #[test]
    fn ssl_records_give_https_members() {
        let mut rs = records();
        rs.server_ssl = rs.server_plain.take();
        rs.server_plain = Some(Answer::Empty);
        assert_eq!(settled(&rs).scheme, Scheme::Https);
    }

    #[test]
    fn both_sets_are_an_error_naming_both_unless_scheme_picks() {
        let mut rs = records();
        rs.server_ssl = rs.server_plain.clone();
        let e = fatal(&rs).to_string();
        assert!(e.contains("_etcd-server-ssl._tcp.example.test. (https) and _etcd-server._tcp.example.test. (http)"), "{e}");
        assert!(e.contains("--scheme"), "{e}");
        assert_eq!(
            settle(&service(), &rs, Some(Scheme::Http), None)
                .unwrap()
                .scheme,
            Scheme::Http
        );
    }

    #[test]
    fn no_records_names_both_owner_names() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Empty);
        assert_eq!(
            pending(&rs, None, Some(3)),
            "0/3 members resolvable; no SRV records at _etcd-server-ssl._tcp.example.test. or _etcd-server._tcp.example.test."
        );
        assert_eq!(
            pending(&rs, Some(Scheme::Http), None),
            "0 members resolvable; no SRV records at _etcd-server._tcp.example.test."
        );
    }

    #[test]
    fn a_target_without_address_holds_back_everyone() {
        let mut rs = records();
        rs.addresses
            .insert("m2.example.test.".into(), Answer::Empty);
        assert_eq!(
            pending(&rs, None, Some(3)),
            "2/3 members resolvable; m2.example.test. has no A/AAAA record"
        );
        // Without --expect the published count is the total.
        assert_eq!(
            pending(&rs, None, None),
            "2/3 members resolvable; m2.example.test. has no A/AAAA record"
        );
        rs.addresses
            .insert("m2.example.test.".into(), Answer::Failed("SERVFAIL".into()));
        assert_eq!(
            pending(&rs, None, None),
            "2/3 members resolvable; lookup of m2.example.test. failed: SERVFAIL"
        );
    }

    #[test]
    fn expect_counts_distinct_records() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.example.test.", 2380)); // duplicate: not a fourth member
        }
        assert_eq!(settled(&rs).members.len(), 3);
        assert_eq!(
            pending(&rs, None, Some(4)),
            "3/4 members resolvable; only 3 SRV records at _etcd-server._tcp.example.test., --expect is 4"
        );
        assert!(pending(&rs, None, Some(2))
            .contains("3 SRV records at _etcd-server._tcp.example.test. but --expect is 2"));
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.other.test.", 2380));
        }
        rs.addresses.insert(
            "m0.other.test.".into(),
            Answer::Records(vec![ip("10.0.0.9")]),
        );
        let e = fatal(&rs).to_string();
        assert!(
            e.starts_with("member name \"m0\" is taken by two SRV records"),
            "{e}"
        );
        assert!(
            e.contains("m0.example.test.:2380 and m0.other.test.:2380"),
            "{e}"
        );
    }

    #[test]
    fn one_target_on_two_ports_is_a_duplicate_name() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv("m0.example.test.", 2381));
        }
        assert!(matches!(fatal(&rs), PlanError::DuplicateName { .. }));
    }

    #[test]
    fn odd_labels_cannot_be_names() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(vec![srv("m\\0320.example.test.", 2380)]));
        rs.addresses.insert(
            "m\\0320.example.test.".into(),
            Answer::Records(vec![ip("10.0.0.1")]),
        );
        assert!(matches!(fatal(&rs), PlanError::BadMemberName { .. }));
    }

    #[test]
    fn root_target_is_skipped() {
        let mut rs = records();
        if let Some(Answer::Records(r)) = &mut rs.server_plain {
            r.push(srv(".", 2380));
        }
        assert_eq!(settled(&rs).members.len(), 3);
    }

    #[test]
    fn the_member_is_found_by_its_address() {
        let m = settled(&records());
        let p = plan(&service(), &m, &[ip("127.0.0.1"), ip("10.0.0.1")], &opts()).unwrap();
        assert_eq!(p.name, "m1");
        assert_eq!(p.listen_peer_urls, ["http://10.0.0.1:2380"]);
        assert_eq!(p.listen_client_urls, ["http://10.0.0.1:2379"]);
        assert_eq!(p.advertise_client_urls, ["http://m1.example.test:2379"]);
        let c = p.cluster.as_ref().unwrap();
        assert_eq!(c.matched_by, "local address 10.0.0.1");
        assert_eq!(
            c.initial_advertise_peer_urls,
            ["http://m1.example.test:2380"]
        );
        assert_eq!(
            c.initial_cluster,
            "m0=http://m0.example.test:2380,m1=http://m1.example.test:2380,m2=http://m2.example.test:2380"
        );
        assert_eq!(c.token, "muster:example.test");
        assert_eq!(c.initial_cluster_state, "new");
        assert!(c.members[1].this_host && !c.members[0].this_host);
    }

    #[test]
    fn every_host_plans_the_same_cluster() {
        let m = settled(&records());
        let plans: Vec<Plan> = (0..3)
            .map(|i| plan(&service(), &m, &[ip(&format!("10.0.0.{i}"))], &opts()).unwrap())
            .collect();
        let c: Vec<&Bootstrap> = plans.iter().map(|p| p.cluster.as_ref().unwrap()).collect();
        assert!(c
            .iter()
            .all(|x| x.initial_cluster == c[0].initial_cluster && x.cluster_id == c[0].cluster_id));
        let ids: Vec<u64> = c.iter().map(|x| x.member_id).collect();
        assert_eq!(ids, c[0].members.iter().map(|m| m.id).collect::<Vec<_>>());
        assert_eq!(c[0].cluster_id, ids::cluster_id(&ids));
        assert_eq!(
            c[0].members[0].id,
            ids::member_id(&["http://m0.example.test:2380"], "muster:example.test")
        );
    }

    #[test]
    fn urls_are_lower_case_without_trailing_dot() {
        assert_eq!(
            name_url(Scheme::Https, "Infra0.Example.Test.", 2380),
            "https://infra0.example.test:2380"
        );
        assert_eq!(ip_url(Scheme::Http, ip("::1"), 2380), "http://[::1]:2380");
    }

    #[test]
    fn no_self_match_lists_targets_and_local_addresses() {
        let m = settled(&records());
        let e = plan(&service(), &m, &[ip("127.0.0.1"), ip("192.0.2.7")], &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("no SRV target of _etcd-server._tcp.example.test. resolves to an address of this host"), "{e}");
        assert!(e.contains("  m0.example.test.:2380 -> 10.0.0.0\n"), "{e}");
        assert!(
            e.contains("  local addresses: 127.0.0.1, 192.0.2.7\n"),
            "{e}"
        );
        assert!(e.contains("fix: "), "{e}");
    }

    #[test]
    fn several_matches_ask_for_name() {
        let mut rs = records();
        for i in 0..3 {
            rs.addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip("127.0.0.1")]),
            );
        }
        let m = settled(&rs);
        let e = plan(&service(), &m, &[ip("127.0.0.1")], &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("3 SRV targets of _etcd-server._tcp.example.test. resolve to addresses of this host"), "{e}");
        assert!(
            e.contains("m2.example.test.:2380 -> 127.0.0.1 (local)"),
            "{e}"
        );
        assert!(e.contains("pass --name with one of m0, m1, m2"), "{e}");
        let o = PlanOptions {
            name: Some("m2".into()),
            ..opts()
        };
        let p = plan(&service(), &m, &[ip("127.0.0.1")], &o).unwrap();
        assert_eq!(p.name, "m2");
        assert_eq!(p.cluster.unwrap().matched_by, "--name m2");
    }

    #[test]
    fn loopback_members_differ_by_port() {
        let mut rs = records();
        rs.server_plain = Some(Answer::Records(
            (0..3)
                .map(|i| srv(&format!("m{i}.example.test."), 12380 + i * 10000))
                .collect(),
        ));
        rs.client_plain = Answer::Records(
            (0..3)
                .map(|i| srv(&format!("m{i}.example.test."), 12379 + i * 10000))
                .collect(),
        );
        for i in 0..3 {
            rs.addresses.insert(
                format!("m{i}.example.test."),
                Answer::Records(vec![ip("127.0.0.1"), ip("::1")]),
            );
        }
        let m = settled(&rs);
        let o = PlanOptions {
            advertise_peer_url: Some("http://127.0.0.1:22380".into()),
            ..opts()
        };
        let p = plan(&service(), &m, &[ip("127.0.0.1"), ip("::1")], &o).unwrap();
        assert_eq!(p.name, "m1");
        assert_eq!(
            p.listen_peer_urls,
            ["http://127.0.0.1:22380", "http://[::1]:22380"]
        );
        assert_eq!(
            p.listen_client_urls,
            ["http://127.0.0.1:22379", "http://[::1]:22379"]
        );
        assert_eq!(p.advertise_client_urls, ["http://m1.example.test:22379"]);
        let o = PlanOptions {
            advertise_peer_url: Some("http://M2.example.test.:32380".into()),
            ..opts()
        };
        assert_eq!(
            plan(&service(), &m, &[ip("127.0.0.1")], &o).unwrap().name,
            "m2"
        );
        let o = PlanOptions {
            name: Some("m0".into()),
            advertise_peer_url: Some("http://m2.example.test:32380".into()),
            ..opts()
        };
        assert!(matches!(
            plan(&service(), &m, &[ip("127.0.0.1")], &o),
            Err(PlanError::IdentityConflict { .. })
        ));
        let o = PlanOptions {
            advertise_peer_url: Some("http://m2.example.test:2380".into()),
            ..opts()
        };
        let e = plan(&service(), &m, &[ip("127.0.0.1")], &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("e.g. http://m0.example.test:12380"), "{e}");
        let o = PlanOptions {
            advertise_peer_url: Some("m2.example.test".into()),
            ..opts()
        };
        assert!(matches!(
            plan(&service(), &m, &[ip("127.0.0.1")], &o),
            Err(PlanError::BadAdvertiseUrl { .. })
        ));
    }

    #[test]
    fn client_records_of_both_schemes() {
        let mut rs = records();
        rs.client_ssl = Answer::Records(vec![srv("m1.example.test.", 2379)]);
        rs.client_plain = Answer::Records(vec![srv("m1.example.test.", 4001)]);
        let p = plan(&service(), &settled(&rs), &[ip("10.0.0.1")], &opts()).unwrap();
        assert_eq!(
            p.advertise_client_urls,
            [
                "http://m1.example.test:4001",
                "https://m1.example.test:2379"
            ]
        );
        // A member without client records gets the default port.
        let p = plan(&service(), &settled(&rs), &[ip("10.0.0.2")], &opts()).unwrap();
        assert_eq!(p.advertise_client_urls, ["http://m2.example.test:2379"]);
        let mut rs = records();
        rs.client_plain = Answer::Failed("timeout".into());
        assert!(pending(&rs, None, None)
            .contains("lookup of _etcd-client._tcp.example.test. failed: timeout"));
    }

    #[test]
    fn unknown_or_remote_name() {
        let m = settled(&records());
        let o = PlanOptions {
            name: Some("m9".into()),
            ..opts()
        };
        let e = plan(&service(), &m, &[ip("10.0.0.1")], &o)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--name m9 matches no SRV target"), "{e}");
        assert!(e.contains("pass one of m0, m1, m2"), "{e}");
        let o = PlanOptions {
            name: Some("m2".into()),
            ..opts()
        };
        let e = plan(&service(), &m, &[ip("10.0.0.1")], &o)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("member m2 (m2.example.test.:2380) was picked by --name m2, but none of its addresses (10.0.0.2)"), "{e}");
    }

    #[test]
    fn token_and_overrides() {
        let m = settled(&records());
        let o = PlanOptions {
            token: Some("tkn".into()),
            listen_client_urls: vec![
                "http://10.0.0.1:2379".into(),
                "http://127.0.0.1:2379".into(),
            ],
            ..opts()
        };
        let p = plan(&service(), &m, &[ip("10.0.0.1")], &o).unwrap();
        assert_eq!(p.listen_client_urls.len(), 2);
        let c = p.cluster.unwrap();
        assert_eq!(c.token, "tkn");
        assert_eq!(
            c.member_id,
            ids::member_id(&["http://m1.example.test:2380"], "tkn")
        );
    }
}
