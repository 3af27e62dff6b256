//! What can be wrong with the records or with this host's place in them. Each message
//! names the records or host involved and says what to fix.

use std::net::IpAddr;

/// A member's target and addresses, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetAddrs {
    /// `target:port`.
    pub target: String,
    /// Its addresses.
    pub addresses: Vec<IpAddr>,
}

/// The records or the flags do not give this host a plan. Some of these end the wait at
/// once ([`PlanError::is_final`]); the others — this host's own record not published
/// yet — are waited out like any missing record, and are the reason given on timeout.
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
    /// A TXT record at the SRV owner name starts with `muster-size` but is not
    /// `muster-size=N`.
    #[error(
        "the TXT record {txt} at {record} is not a cluster size: write exactly \
         \"muster-size=N\" with N the number of members, e.g. {record} TXT \"muster-size=3\""
    )]
    MalformedSize {
        /// The SRV owner name the TXT record is at.
        record: String,
        /// The record as read.
        txt: String,
    },
    /// Several `muster-size=N` TXT records with different N.
    #[error(
        "{record} has TXT records giving different cluster sizes ({}): keep exactly one \
         \"muster-size=N\"",
        sizes.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    )]
    SizeConflict {
        /// The SRV owner name.
        record: String,
        /// The sizes published.
        sizes: Vec<usize>,
    },
    /// `--expect` and the published size disagree.
    #[error(
        "--expect is {expect} but {record} publishes TXT \"muster-size={published}\": one of \
         them is wrong; fix the record or --expect (or drop --expect and use the record)"
    )]
    ExpectDisagrees {
        /// `--expect`.
        expect: usize,
        /// The SRV owner name.
        record: String,
        /// The published size.
        published: usize,
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
    /// `--name` names no published member.
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
    /// `--advertise-peer-url` matches no published member.
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

impl PlanError {
    /// False for "this host's own record is not published (yet)": records keep arriving
    /// while a cluster is set up, this host's among them, so that is waited for like any
    /// other missing record. Everything else is a contradiction in the records or flags
    /// that stops the wait at once.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            PlanError::NoSelfMatch { .. }
                | PlanError::UnknownName { .. }
                | PlanError::UnknownAdvertiseUrl { .. }
        )
    }

    /// The one-line form of a not-yet-published error, for progress lines.
    pub fn short(&self) -> String {
        match self {
            PlanError::NoSelfMatch { .. } => {
                "no published SRV target resolves to an address of this host yet".into()
            }
            PlanError::UnknownName { name, .. } => {
                format!("this host's member {name} (--name) is not published yet")
            }
            PlanError::UnknownAdvertiseUrl { url, .. } => {
                format!("this host's member {url} (--advertise-peer-url) is not published yet")
            }
            other => other.to_string(),
        }
    }
}

pub(crate) fn join_ips(ips: &[IpAddr]) -> String {
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
    if members.is_empty() {
        return "  (none published yet)".into();
    }
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
