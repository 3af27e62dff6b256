//! The `promote` and `leave` commands, and the promoter `exec` leaves behind: effects
//! around [`crate::promote`] and [`crate::leave`], reading which member this is from
//! `<data-dir>/muster-plan.json` (so neither needs DNS).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{Common, LeaveArgs, PromoteArgs};
use crate::cluster::{self, Identified, Members, Overrides, Service, Unsettled};
use crate::discover::{self, DnsResolver};
use crate::etcd::{Access, Client, Endpoint, EtcdError, Member, Membership};
use crate::leave::{self, LeaveError};
use crate::plan::{MemberUpdate, Plan, Start};
use crate::promote::{self, Promoted};
use crate::restart::{Current, RestartError, RestartFlags};
use crate::urls::EtcdUrl;
use crate::{notify, restart, Error};

/// How long a restart waits for the records before starting from the persisted plan: DNS
/// may be the thing that is down, and a restart must not depend on it.
const RESTART_DNS: Duration = Duration::from_secs(4);

fn url_texts(urls: &[EtcdUrl]) -> Vec<String> {
    urls.iter().map(|u| u.as_str().to_string()).collect()
}

/// The restart path (the data dir has a WAL): the persisted plan, checked against one
/// bounded read of the records. When they now give this member other local addresses or
/// another peer URL, this is a *move* ([`restart::relocate`]): the peer URL is updated in
/// the membership first when its text changed, and etcd gets listen URLs for the new
/// addresses. DNS that does not answer, or records that do not place this member on this
/// host, leave the persisted plan. With `enact`, the update is made and the persisted
/// plan rewritten; without (`plan`, `exec --dry-run`) nothing changes.
pub fn restart(common: &Common, dir: &Path, enact: bool) -> Result<Plan, Error> {
    let persisted = restart::load(dir)?;
    let flags = RestartFlags {
        name: common.name.clone(),
        listen_peer_urls: url_texts(&common.listen_peer_url),
        listen_client_urls: url_texts(&common.listen_client_url),
        advertise_client_urls: url_texts(&common.advertise_client_url),
    };
    let mut base = restart::restart_plan(dir, persisted.clone(), &flags)?;
    let registered = persisted
        .as_ref()
        .and_then(restart::registered_peer_url)
        .map(str::to_string);
    let (Some(persisted), Some(registered)) = (persisted, registered) else {
        // No persisted plan (URLs from flags): nothing to compare the records with.
        return Ok(announce(base));
    };
    let (now, endpoints) = match current(common, &persisted) {
        Ok(c) => c,
        Err(why) => {
            base.reason = format!(
                "{} exists: etcd restarts from its stored membership; the records give no usable \
                 answer for {} ({why}), so the URLs in {} are used",
                dir.join("member").join("wal").display(),
                base.name,
                restart::PLAN_FILE
            );
            return Ok(announce(base));
        }
    };
    let update = if now.peer_url == registered || now.listen_peer_urls.is_empty() {
        MemberUpdate::NotNeeded
    } else {
        peer_update(&common.etcd.access(), &persisted, &now, endpoints, enact)?
    };
    let plan = restart::relocate(base, &flags, &registered, &now, update);
    if enact && plan.mode() == crate::plan::Mode::Move {
        restart::save(dir, &restart::moved_plan(persisted, &plan, &now))?;
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
fn current(common: &Common, persisted: &Plan) -> Result<(Current, Vec<Endpoint>), String> {
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
    let servers = if common.nameserver.is_empty() {
        discover::system_nameservers()
    } else {
        common.nameserver.clone()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let resolver = DnsResolver::new(&servers).map_err(|e| e.to_string())?;
    let scheme = common.scheme.map(Into::into);
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
        default_client_port: common.client_port,
        ..Overrides::default()
    };
    let skel = cluster::build::plan(&service, &members, &who, &local, &o);
    let mut endpoints = crate::wait::others(&skel);
    match &persisted.start {
        Start::Join(j) => endpoints.extend(j.endpoints.iter().cloned()),
        _ => endpoints.extend(crate::wait::others(persisted)),
    }
    let now = Current {
        record: members.record,
        peer_url: restart::registered_peer_url(&skel)
            .unwrap_or_default()
            .to_string(),
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
            restart::PLAN_FILE
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
    match list.members.iter().find(|m| m.id == id.0) {
        Some(m) if m.peer_urls == [now.peer_url.clone()] => return Ok(MemberUpdate::Already),
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
        .update(id.0, std::slice::from_ref(&now.peer_url))
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

/// True when this data dir was created by a join (its persisted plan is a join): a
/// restart of it may be a learner's, so `exec` starts the promoter (which does nothing
/// for a member that votes).
pub fn joined(dir: &Path) -> bool {
    matches!(
        restart::load(dir),
        Ok(Some(Plan {
            start: Start::Join(_),
            ..
        }))
    )
}

/// The etcd access of a restart: this member's etcd is down, and the others answer
/// quickly or not at all.
fn client_access(common: &Common) -> Access {
    Access {
        request_timeout: Duration::from_secs(2),
        ..common.etcd.access()
    }
}

/// The client URLs a member list gives the members other than `except`, to be dialled as
/// etcd dials them (by name, with the system resolver): where they are now, which may not
/// be where a plan saved them.
fn current_endpoints(list: &Membership, except: u64) -> Vec<Endpoint> {
    list.members
        .iter()
        .filter(|m| m.id != except)
        .flat_map(|m| &m.client_urls)
        .map(|u| Endpoint {
            url: u.clone(),
            addrs: vec![],
        })
        .collect()
}

/// A data dir with a WAL that a join created, whose member the cluster lists as never
/// started ([`crate::join::interrupted`]): the join was interrupted. When the cluster
/// that answers is the one joined and is healthy, the member data is moved aside
/// (`member.interrupted-<time>`) and true returned: this start then joins afresh,
/// removing the stale entry first. No answer, another cluster, no quorum, or not a join:
/// false, and the data dir restarts as it is (a restart never depends on the cluster).
pub fn rejoin_if_interrupted(common: &Common, dir: &Path) -> Result<bool, Error> {
    let Ok(Some(Plan {
        start: Start::Join(j),
        name,
        ..
    })) = restart::load(dir)
    else {
        return Ok(false);
    };
    let Some(id) = j.member_id else {
        return Ok(false);
    };
    let Ok(client) = Client::new(j.endpoints.clone(), client_access(common)) else {
        return Ok(false);
    };
    let Ok(list) = client.list() else {
        return Ok(false);
    };
    if list.cluster_id != j.cluster_id.0 {
        return Ok(false);
    }
    let Some(why) = crate::join::interrupted(&list, id) else {
        return Ok(false);
    };
    let current = Client::new(current_endpoints(&list, id.0), client_access(common)).ok();
    let healthy = current
        .iter()
        .chain(std::iter::once(&client))
        .any(|c| c.endpoints().iter().any(|e| c.healthy_at(&e.url)));
    if !healthy {
        eprintln!("muster-agent: {why}; the cluster has no quorum, so {name} restarts as it is");
        return Ok(false);
    }
    let to = leave::set_aside(dir, "interrupted").map_err(|source| LeaveError::SetAside {
        path: dir.join("member"),
        source,
    })?;
    let line = format!(
        "interrupted join of {name}: {why}; moved the member data to {}: joining afresh",
        to.map(|p| p.display().to_string()).unwrap_or_default()
    );
    eprintln!("muster-agent: {line}");
    notify::status(&line);
    Ok(true)
}

pub(crate) fn data_dir(flag: &Option<PathBuf>) -> Result<PathBuf, Error> {
    flag.clone()
        .or_else(|| {
            std::env::var_os("ETCD_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .ok_or_else(|| {
            Error::Usage(
                "--data-dir (or MUSTER_DATA_DIR, or ETCD_DATA_DIR) is required: its \
                 muster-plan.json says which member this is"
                    .into(),
            )
        })
}

fn stored_plan(dir: &Path) -> Result<Plan, Error> {
    restart::load(dir)?.ok_or_else(|| {
        Error::Leave(LeaveError::NoPlan(format!(
            "{} is missing: this data dir was not started by muster-agent, so which member \
             this is is unknown; use etcdctl member remove/promote",
            dir.join(restart::PLAN_FILE).display()
        )))
    })
}

/// Starts `muster-agent promote` for this data dir as a child that outlives the exec:
/// etcd (same PID) becomes its parent, and it ends once the learner is promoted. Its
/// output goes where etcd's goes (the journal). A failure is a warning, not an error:
/// this host is already added, and etcd must start either way.
pub fn spawn_promoter(data: &Path, common: &Common) {
    // /proc/self/exe still works when the binary was replaced on disk since this process
    // started (a package upgrade); the path current_exe() reports would not.
    let spawn = |program: &Path| {
        Command::new(program)
            .arg("promote")
            .arg("--data-dir")
            .arg(data)
            .args(common.etcd.to_args())
            .stdin(Stdio::null())
            .spawn()
    };
    let r = spawn(Path::new("/proc/self/exe")).or_else(|e| match std::env::current_exe() {
        Ok(me) => spawn(&me),
        Err(_) => Err(e),
    });
    match r {
        Ok(_) => eprintln!(
            "muster-agent: started the promoter: this learner is promoted once it has caught up"
        ),
        Err(e) => eprintln!(
            "muster-agent: warning: cannot start the promoter ({e}); run `muster-agent promote \
             --data-dir {}` once etcd runs",
            data.display()
        ),
    }
}

/// `muster-agent promote`.
pub fn promote(args: &PromoteArgs) -> Result<(), Error> {
    let dir = data_dir(&args.data_dir)?;
    let plan = stored_plan(&dir)?;
    let r = promote::promote(&plan, &args.etcd.access(), args.timeout, |line| {
        eprintln!("muster-agent: {line}");
        notify::status(line);
    })?;
    let line = match r {
        Promoted::Now => format!("promoted {} to a voting member", plan.name),
        Promoted::Already => format!("{} is a voting member", plan.name),
        Promoted::NotJoined => format!(
            "{} did not join as a learner ({}): nothing to promote",
            plan.name,
            plan.mode()
        ),
    };
    eprintln!("muster-agent: {line}");
    Ok(())
}

/// The ways to the cluster for a removal, best first: the other members at the client
/// URLs the member list gives now, dialled as etcd dials them (they may have moved since
/// this data dir's plan was written); the other members at the addresses saved in the
/// plan; this member itself last (its etcd stops as it applies its own removal, perhaps
/// before it answers).
struct Routes {
    current: Option<Client>,
    saved: Option<Client>,
    own: Option<Client>,
}

impl Routes {
    fn new(list: &Membership, gone: u64, plan: &Plan, access: &Access) -> Routes {
        let current = current_endpoints(list, gone);
        let own_urls = &plan.advertise_client_urls;
        let (own, saved): (Vec<Endpoint>, Vec<Endpoint>) = crate::join::plan_endpoints(plan)
            .into_iter()
            .partition(|e| own_urls.contains(&e.url));
        let client = |v: Vec<Endpoint>| Client::new(v, access.clone()).ok();
        Routes {
            current: client(current),
            saved: client(saved),
            own: client(own),
        }
    }

    /// The others first, this member last.
    fn all(&self) -> impl Iterator<Item = &Client> {
        [&self.current, &self.saved, &self.own]
            .into_iter()
            .flatten()
    }

    /// `/health` at one of a member's client URLs, as etcd dials it or, failing that, at
    /// the address saved in the plan.
    fn up(&self, m: &Member) -> bool {
        [&self.current, &self.saved]
            .into_iter()
            .flatten()
            .any(|c| m.client_urls.iter().any(|u| c.healthy_at(u)))
    }

    /// Asks the other members whether `id` is still a member: Some(false) once it is
    /// gone, None when no other member answers.
    fn listed(&self, id: u64) -> Option<bool> {
        [&self.current, &self.saved]
            .into_iter()
            .flatten()
            .find_map(|c| c.list().ok())
            .map(|l| l.members.iter().any(|m| m.id == id))
    }

    /// `member remove` through the first route that answers.
    fn remove(&self, id: u64) -> Result<(), EtcdError> {
        let mut last = EtcdError::NoEndpoint;
        for c in self.all() {
            match c.remove(id) {
                Ok(()) => return Ok(()),
                Err(e @ EtcdError::Api { .. }) => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// `muster-agent leave`.
pub fn leave(args: &LeaveArgs) -> Result<(), Error> {
    let dir = data_dir(&args.data_dir)?;
    let plan = stored_plan(&dir)?;
    let access = args.etcd.access();
    let endpoints = crate::join::plan_endpoints(&plan);
    let client = Client::new(endpoints, access.clone()).map_err(LeaveError::Etcd)?;
    let list = client.list().map_err(LeaveError::Etcd)?;
    let peer_urls: Vec<String> = match &plan.start {
        crate::plan::Start::Join(j) => j.initial_advertise_peer_urls.clone(),
        _ => plan
            .cluster()
            .map(|c| c.initial_advertise_peer_urls.clone())
            .unwrap_or_default(),
    };
    // `--member NAME`: another member, found by name only (its peer URL is not in this
    // plan), and this data dir stays as it is.
    let other = args.member.as_ref().filter(|n| **n != plan.name);
    let me = match other {
        Some(n) => list
            .members
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(n.as_str()))
            .cloned(),
        None => crate::decide::find_me(
            &list.members,
            crate::decide::Me {
                name: plan.name.as_str(),
                peer_url: peer_urls.first().map_or("", String::as_str),
            },
        )
        .cloned(),
    };
    if let (Some(n), None) = (other, &me) {
        eprintln!(
            "muster-agent: {n} is not a member of cluster {:x}: nothing to remove",
            list.cluster_id
        );
        return Ok(());
    }
    let Some(me) = me else {
        eprintln!(
            "muster-agent: {} is not a member of cluster {:x}: nothing to remove",
            plan.name, list.cluster_id
        );
        return set_aside(&dir);
    };
    let routes = Routes::new(&list, me.id, &plan, &access);
    match leave::check(&list.members, &me, |m| routes.up(m)) {
        Ok(()) => {}
        Err(r) if args.force => eprintln!("muster-agent: --force: {r}"),
        Err(r) => return Err(LeaveError::Refused(r).into()),
    }
    remove(&routes, &me, args.timeout)?;
    if other.is_some() {
        eprintln!(
            "muster-agent: removed {me} from cluster {:x}",
            list.cluster_id
        );
        return Ok(());
    }
    eprintln!(
        "muster-agent: removed {me} from cluster {:x}; etcd on this host stops by itself",
        list.cluster_id
    );
    set_aside(&dir)
}

fn set_aside(dir: &Path) -> Result<(), Error> {
    match leave::set_aside(dir, "left") {
        Ok(Some(to)) => {
            eprintln!(
                "muster-agent: moved the member data to {}: the next start here joins afresh",
                to.display()
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(source) => Err(LeaveError::SetAside {
            path: dir.join("member"),
            source,
        }
        .into()),
    }
}

/// `member remove` through the other members (this one last), retried while etcd
/// refuses it for now (no answer, or a cluster not ready to reconfigure: a member started
/// moments ago). Any other failure is checked with the other members before it is
/// reported: a member that asked its own etcd may see it stop mid-answer ("server
/// stopped") after the removal was applied, and a removal that happened is a success.
fn remove(routes: &Routes, me: &Member, timeout: Duration) -> Result<(), Error> {
    use crate::etcd::msg;
    let start = Instant::now();
    for attempt in 0u32.. {
        let e = match routes.remove(me.id) {
            Ok(()) => return Ok(()),
            Err(e) if e.says(msg::NOT_FOUND) => return Ok(()),
            Err(e) => e,
        };
        if routes.listed(me.id) == Some(false) {
            eprintln!(
                "muster-agent: leave of {}: {e}, but the other members no longer list it: \
                 removed",
                me.label()
            );
            return Ok(());
        }
        let retry = !matches!(e, EtcdError::Api { .. })
            || e.says(msg::UNHEALTHY)
            || e.says(msg::NOT_ENOUGH_STARTED);
        if !retry || start.elapsed() >= timeout {
            return Err(LeaveError::Etcd(e).into());
        }
        eprintln!(
            "muster-agent: leave of {}: etcd cannot remove it yet: {e} (attempt {}, {:.1}s)",
            me.label(),
            attempt + 1,
            start.elapsed().as_secs_f64()
        );
        let d = Duration::from_millis(500u64.saturating_mul(1 << attempt.min(3)));
        std::thread::sleep(d.min(timeout.saturating_sub(start.elapsed())));
    }
    unreachable!("the attempt counter is unbounded")
}
