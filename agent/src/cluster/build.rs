//! Build the flags: from the complete member list and this host's member to the
//! bootstrap [`Plan`] — `--initial-cluster`, the token, the IDs etcd will assign, and the
//! listen and advertise URLs.
//!
//! Advertised URLs are `scheme://target-lower-case-without-dot:port`, byte-identical on
//! every host, because etcd hashes them into the member IDs; listen URLs use this host's
//! matched addresses, because etcd binds addresses, not names.

use std::net::IpAddr;
use std::path::PathBuf;

use super::identity::Identified;
use super::records::{ip_url, name_url, Scheme, Service};
use super::settle::{Candidate, Members};
use crate::ids::{self, EtcdId};
use crate::plan::{Bootstrap, ClusterState, InitialCluster, Plan, PlannedMember, Start};
use crate::urls::EtcdUrl;

/// What the operator fixed by flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--token`; default [`Service::default_token`].
    pub token: Option<String>,
    /// Client port used for a member that has no `_etcd-client*` record.
    pub default_client_port: u16,
    /// The data dir, recorded in the plan.
    pub data_dir: Option<PathBuf>,
    /// `--listen-peer-url` overrides.
    pub listen_peer_urls: Vec<EtcdUrl>,
    /// `--listen-client-url` overrides.
    pub listen_client_urls: Vec<EtcdUrl>,
    /// `--advertise-client-url` overrides.
    pub advertise_client_urls: Vec<EtcdUrl>,
}

/// The bootstrap plan of member `me` of `members`.
pub fn plan(
    service: &Service,
    members: &Members,
    me: &Identified,
    local: &[IpAddr],
    o: &Overrides,
) -> Plan {
    let scheme = members.scheme;
    let token = o.token.clone().unwrap_or_else(|| service.default_token());
    let mine = &members.members[me.index];
    let planned = planned_members(members, me.index, &token, o.default_client_port);
    let member_ids: Vec<u64> = planned.iter().map(|m| m.id.0).collect();
    let my_ips = local_ips(mine, local);
    let my_clients = client_ports(mine, scheme, o.default_client_port);
    let or = |given: &Vec<EtcdUrl>, derived: Vec<EtcdUrl>| {
        if given.is_empty() {
            derived
        } else {
            given.clone()
        }
    };
    Plan {
        reason: format!(
            "the records at {} describe a complete new {}-member cluster",
            members.record,
            members.members.len()
        ),
        name: mine.name.clone(),
        data_dir: o.data_dir.clone(),
        listen_peer_urls: or(
            &o.listen_peer_urls,
            my_ips
                .iter()
                .map(|ip| ip_url(scheme, *ip, mine.port))
                .collect(),
        ),
        listen_client_urls: or(
            &o.listen_client_urls,
            my_clients
                .iter()
                .flat_map(|(s, p)| my_ips.iter().map(move |ip| ip_url(*s, *ip, *p)))
                .collect(),
        ),
        advertise_client_urls: or(
            &o.advertise_client_urls,
            my_clients
                .iter()
                .map(|(s, p)| name_url(*s, &mine.target, *p))
                .collect(),
        ),
        start: Start::Bootstrap(Bootstrap {
            domain: service.domain.clone(),
            srv_name: service.srv_name.clone(),
            srv_record: members.record.clone(),
            scheme,
            matched_by: me.matched_by.clone(),
            initial_cluster_state: ClusterState::New,
            initial_advertise_peer_urls: vec![mine.peer_url(scheme)],
            initial_cluster: InitialCluster::new(
                planned
                    .iter()
                    .map(|m| (m.name.to_string(), m.peer_url.clone()))
                    .collect(),
            ),
            member_id: planned[me.index].id,
            cluster_id: EtcdId(ids::cluster_id(&member_ids)),
            token,
            members: planned,
        }),
    }
}

/// Every member with its URLs and the ID etcd will give it.
fn planned_members(
    members: &Members,
    me: usize,
    token: &str,
    default_client_port: u16,
) -> Vec<PlannedMember> {
    let scheme = members.scheme;
    members
        .members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let peer_url = m.peer_url(scheme);
            let id = EtcdId(ids::member_id(std::slice::from_ref(&peer_url), token));
            PlannedMember {
                name: m.name.clone(),
                target: m.target.clone(),
                port: m.port,
                peer_url,
                client_urls: client_ports(m, scheme, default_client_port)
                    .into_iter()
                    .map(|(s, p)| name_url(s, &m.target, p))
                    .collect(),
                addresses: m.addresses.clone(),
                id,
                this_host: i == me,
            }
        })
        .collect()
}

/// The member's addresses that are this host's, sorted: etcd listens on every one (A and
/// AAAA), since peers may dial either.
fn local_ips(m: &Candidate, local: &[IpAddr]) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = m
        .addresses
        .iter()
        .copied()
        .filter(|a| local.contains(a))
        .collect();
    v.sort();
    v.dedup();
    v
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
