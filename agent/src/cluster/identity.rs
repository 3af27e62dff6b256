//! Which member am I? `--advertise-peer-url` (target name or address, and port),
//! `--name` (the target's first label), or else the one member with an address of this
//! host. The picked member must have a local address: etcd listens on it.
//!
//! This runs on every round, over the members published so far: a host whose own record
//! has not arrived yet is told so in the progress line and waits, like a host missing any
//! other record ([`PlanError::is_final`]).

use std::net::IpAddr;

use super::error::{PlanError, TargetAddrs};
use super::records::{MemberName, Scheme};
use super::settle::Candidate;
use crate::urls::{EtcdUrl, Host};

/// What the operator said about this host's member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `--name`.
    pub name: Option<MemberName>,
    /// `--advertise-peer-url`.
    pub advertise_peer_url: Option<EtcdUrl>,
}

/// The member this host is, and how that was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identified {
    /// Index into the candidates.
    pub index: usize,
    /// E.g. `--name m1` or `local address 10.0.0.5`.
    pub matched_by: String,
}

/// Finds this host among `members` (the published SRV records of `record`, `scheme`).
pub fn identify(
    record: &str,
    scheme: Scheme,
    members: &[Candidate],
    local: &[IpAddr],
    who: &Identity,
) -> Result<Identified, PlanError> {
    let by_url = match &who.advertise_peer_url {
        Some(url) => Some(by_url(record, scheme, members, url)?),
        None => None,
    };
    let by_name = match &who.name {
        Some(name) => Some(by_name(record, members, name)?),
        None => None,
    };
    let found = match (by_name, by_url) {
        (Some(n), Some(u)) if n != u => {
            return Err(PlanError::IdentityConflict {
                name: members[n].name.to_string(),
                url: who
                    .advertise_peer_url
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                other: members[u].name.to_string(),
            })
        }
        (Some(n), _) => Identified {
            index: n,
            matched_by: format!("--name {}", members[n].name),
        },
        (None, Some(u)) => Identified {
            index: u,
            matched_by: format!(
                "--advertise-peer-url {}",
                who.advertise_peer_url
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        },
        (None, None) => by_address(record, members, local)?,
    };
    check_local(&members[found.index], &found.matched_by, local)?;
    Ok(found)
}

fn listing(members: &[Candidate]) -> Vec<TargetAddrs> {
    members
        .iter()
        .map(|m| TargetAddrs {
            target: m.endpoint(),
            addresses: m.addresses.clone(),
        })
        .collect()
}

/// The member whose peer URL is `url`: same port, and the target name or one of its
/// addresses as host.
fn by_url(
    record: &str,
    scheme: Scheme,
    members: &[Candidate],
    url: &EtcdUrl,
) -> Result<usize, PlanError> {
    members
        .iter()
        .position(|m| {
            m.port == url.port
                && match &url.host {
                    Host::Ip(ip) => m.addresses.contains(ip),
                    Host::Name(n) => m.target.trim_end_matches('.') == n,
                }
        })
        .ok_or_else(|| PlanError::UnknownAdvertiseUrl {
            url: url.to_string(),
            record: record.to_string(),
            members: listing(members),
            example: members
                .first()
                .map(|m| m.peer_url(scheme).to_string())
                .unwrap_or_else(|| format!("{scheme}://infra0.example.com:2380")),
        })
}

/// The member called `name` ([`MemberName`] equality: case does not matter).
fn by_name(record: &str, members: &[Candidate], name: &MemberName) -> Result<usize, PlanError> {
    members
        .iter()
        .position(|m| m.name == *name)
        .ok_or_else(|| PlanError::UnknownName {
            name: name.to_string(),
            record: record.to_string(),
            members: listing(members),
            names: members.iter().map(|m| m.name.to_string()).collect(),
        })
}

fn is_local(m: &Candidate, local: &[IpAddr]) -> bool {
    m.addresses.iter().any(|a| local.contains(a))
}

/// The one member with an address of this host.
fn by_address(
    record: &str,
    members: &[Candidate],
    local: &[IpAddr],
) -> Result<Identified, PlanError> {
    let mine: Vec<usize> = (0..members.len())
        .filter(|&i| is_local(&members[i], local))
        .collect();
    match mine.as_slice() {
        [one] => {
            let addrs: Vec<String> = members[*one]
                .addresses
                .iter()
                .filter(|a| local.contains(a))
                .map(IpAddr::to_string)
                .collect();
            Ok(Identified {
                index: *one,
                matched_by: format!("local address {}", addrs.join(", ")),
            })
        }
        [] => Err(PlanError::NoSelfMatch {
            record: record.to_string(),
            members: listing(members),
            local: local.to_vec(),
        }),
        several => Err(PlanError::SeveralMatches {
            record: record.to_string(),
            members: listing(members),
            local: local.to_vec(),
            matches: several
                .iter()
                .map(|&i| members[i].name.to_string())
                .collect(),
        }),
    }
}

/// A member picked by flag must be on this host. One without addresses yet is not
/// judged: its missing address record is already what the wait is for.
fn check_local(me: &Candidate, matched_by: &str, local: &[IpAddr]) -> Result<(), PlanError> {
    if me.addresses.is_empty() || is_local(me, local) {
        return Ok(());
    }
    Err(PlanError::NotLocal {
        name: me.name.to_string(),
        target: me.endpoint(),
        addresses: me.addresses.clone(),
        by: matched_by.to_string(),
        local: local.to_vec(),
    })
}
