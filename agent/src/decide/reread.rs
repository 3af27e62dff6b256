//! The restart path's effects: one bounded read of the records (DNS may be what is
//! down, so a restart never waits for it) to see whether this member moved, and the
//! `member update` of a move whose peer URL changed. The rules themselves are pure, in
//! [`super::restart`].

use std::path::Path;
use std::time::Duration;

use super::restart::{self, Current, RestartError};
use crate::cluster::{self, Identified, Members, Overrides, Service, Unsettled};
use crate::config::AgentConfig;
use crate::discover::{self, DnsResolver};
use crate::etcd::{Access, Client, Endpoint};
use crate::plan::{MemberUpdate, Plan, Start};
use crate::{notify, plan_file, Error};

/// How long a restart waits for the records before starting from the persisted plan: DNS
/// may be the thing that is down, and a restart must not depend on it.
const RESTART_DNS: Duration = Duration::from_secs(4);

/// The restart path (the data dir has a WAL): the persisted plan, checked against one
/// bounded read of the records. When they now give this member other local addresses or
/// another peer URL, this is a *move* ([`restart::relocate`]): the peer URL is updated in
/// the membership first when its text changed, and etcd gets listen URLs for the new
/// addresses. DNS that does not answer, or records that do not place this member on this
/// host, leave the persisted plan. With `enact`, the update is made and the persisted
/// plan rewritten; without (`plan`, `exec --dry-run`) nothing changes.
pub fn restart(agent: &AgentConfig, dir: &Path, enact: bool) -> Result<Plan, Error> {
    let persisted = plan_file::load(dir)?;
    let flags = agent.restart_flags();
    let mut base = restart::restart_plan(dir, persisted.clone(), &flags)?;
    let registered = persisted
        .as_ref()
        .and_then(restart::registered_peer_url)
        .cloned();
    let (Some(persisted), Some(registered)) = (persisted, registered) else {
        // No persisted plan (URLs from flags): nothing to compare the records with.
        return Ok(announce(base));
    };
    let (now, endpoints) = match current(agent, &persisted) {
        Ok(c) => c,
        Err(why) => {
            base.reason = format!(
                "{} exists: etcd restarts from its stored membership; the records give no usable \
                 answer for {} ({why}), so the URLs in {} are used",
                dir.join("member").join("wal").display(),
                base.name,
                plan_file::PLAN_FILE
            );
            return Ok(announce(base));
        }
    };
    let update = if now.peer_url == registered || now.listen_peer_urls.is_empty() {
        MemberUpdate::NotNeeded
    } else {
        peer_update(&agent.access, &persisted, &now, endpoints, enact)?
    };
    let plan = restart::relocate(base, &flags, &registered, &now, update);
    if enact && plan.mode() == crate::plan::Mode::Move {
        plan_file::save(dir, &restart::moved_plan(persisted, &plan, &now))?;
    }
    Ok(announce(plan))
}

fn announce(plan: Plan) -> Plan {
    eprintln!("muster-agent: decision: {} ({})", plan.mode(), plan.reason);
    plan
}

/// Reads the records once (bounded by [`RESTART_DNS`]) and says what they give the
/// persisted member now, with the other members' client URLs (and the persisted ones)
/// for a `member update`. Err says why the records cannot be used.
fn current(agent: &AgentConfig, persisted: &Plan) -> Result<(Current, Vec<Endpoint>), String> {
    let (domain, srv_name, token) = match &persisted.start {
        Start::Join(j) => (j.domain.clone(), j.srv_name.clone(), None),
        _ => {
            let c = persisted
                .cluster()
                .ok_or("the persisted plan names no discovery domain")?;
            (c.domain.clone(), c.srv_name.clone(), Some(c.token.clone()))
        }
    };
    let service = Service::new(&domain, srv_name.as_deref())?;
    let servers = agent.servers();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = DnsResolver::new(&servers).map_err(|e| e.to_string())?;
    let scheme = agent.scheme;
    let rs = runtime
        .block_on(async {
            tokio::time::timeout(RESTART_DNS, discover::read(&resolver, &service, scheme)).await
        })
        .map_err(|_| {
            format!(
                "no answer from {} within {}",
                resolver_name(&servers),
                humantime::format_duration(RESTART_DNS)
            )
        })?;
    let census = match cluster::settle::census(&service, &rs, scheme, None) {
        Ok(c) => c,
        Err(Unsettled::Fatal(e)) => return Err(e.to_string()),
        Err(Unsettled::Pending(p)) => return Err(p.to_string()),
    };
    let index = census
        .published
        .iter()
        .position(|c| c.name == persisted.name)
        .ok_or_else(|| {
            format!(
                "the records at {} do not list {}",
                census.record, persisted.name
            )
        })?;
    let me = &census.published[index];
    if me.addresses.is_empty() {
        let why = match rs.addresses.get(&me.target) {
            Some(crate::cluster::Answer::Failed(e)) => e.clone(),
            _ => "no A or AAAA record".into(),
        };
        return Err(format!("{} has no address: {why}", me.target));
    }
    // The records' loopback addresses count as this host's when they can be bound: the
    // whole of 127.0.0.0/8 is local on Linux although only 127.0.0.1 is on `lo`.
    let mut local = discover::local_addresses().map_err(|e| e.to_string())?;
    local.extend(
        me.addresses
            .iter()
            .copied()
            .filter(|a| a.is_loopback() && std::net::TcpListener::bind((*a, 0)).is_ok()),
    );
    let addresses = me.addresses.clone();
    let members = Members {
        record: census.record,
        scheme: census.scheme,
        members: census.published,
    };
    let who = Identified {
        index,
        matched_by: format!("the persisted name {}", persisted.name),
    };
    let o = Overrides {
        token,
        default_client_port: agent.client_port,
        ..Overrides::default()
    };
    let skel = cluster::build::plan(&service, &members, &who, &local, &o);
    let mut endpoints = crate::plan::others(&skel);
    match &persisted.start {
        Start::Join(j) => endpoints.extend(j.endpoints.iter().cloned()),
        _ => endpoints.extend(crate::plan::others(persisted)),
    }
    let now = Current {
        record: members.record,
        peer_url: restart::registered_peer_url(&skel)
            .cloned()
            .ok_or("the records give this member no peer URL")?,
        listen_peer_urls: skel.listen_peer_urls,
        listen_client_urls: skel.listen_client_urls,
        advertise_client_urls: skel.advertise_client_urls,
        addresses,
    };
    Ok((now, endpoints))
}

fn resolver_name(servers: &[std::net::SocketAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Records the new peer URL in the membership (`member update`), through the other
/// members, before etcd starts: the others must dial the new URL. Needs a healthy
/// cluster; without one the move keeps the registered URL ([`MemberUpdate::NoQuorum`]).
fn peer_update(
    access: &Access,
    persisted: &Plan,
    now: &Current,
    endpoints: Vec<Endpoint>,
    enact: bool,
) -> Result<MemberUpdate, Error> {
    let say = |line: String| {
        eprintln!("muster-agent: {line}");
        notify::status(&line);
    };
    let Some(id) = restart::registered_member_id(persisted) else {
        say(format!(
            "move of {}: {} does not hold this member's ID; the peer URL cannot be updated",
            persisted.name,
            plan_file::PLAN_FILE
        ));
        return Ok(MemberUpdate::NoQuorum);
    };
    let access = Access {
        // This host's etcd is down and may be needed for quorum: do not hold up its start.
        request_timeout: Duration::from_secs(2),
        ..access.clone()
    };
    let client = match Client::new(endpoints, access) {
        Ok(c) => c,
        Err(e) => {
            return Err(RestartError::Update {
                id: id.hex(),
                source: e,
            }
            .into())
        }
    };
    let list = match client.list() {
        Ok(l) => l,
        Err(e) => {
            say(format!(
                "move of {}: no member answers: {e}",
                persisted.name
            ));
            return Ok(MemberUpdate::NoQuorum);
        }
    };
    match list.members.iter().find(|m| m.id == id) {
        Some(m) if m.peer_urls == [now.peer_url.to_string()] => return Ok(MemberUpdate::Already),
        Some(_) => {}
        None => {
            say(format!(
                "move of {}: cluster {:x} has no member {}; etcd will find it was removed",
                persisted.name,
                list.cluster_id,
                id.hex()
            ));
            return Ok(MemberUpdate::NoQuorum);
        }
    }
    if !client.endpoints().iter().any(|e| client.healthy_at(&e.url)) {
        return Ok(MemberUpdate::NoQuorum);
    }
    if !enact {
        return Ok(MemberUpdate::Planned);
    }
    client
        .update(id, std::slice::from_ref(&now.peer_url))
        .map_err(|source| RestartError::Update {
            id: id.hex(),
            source,
        })?;
    say(format!(
        "updated the peer URL of {} ({}) to {} in cluster {:x}",
        persisted.name,
        id.hex(),
        now.peer_url,
        list.cluster_id
    ));
    Ok(MemberUpdate::Done)
}
