//! The `promote` and `leave` commands, and the promoter `exec` leaves behind: effects
//! around [`crate::promote`] and [`crate::leave`], reading which member this is from
//! `<data-dir>/muster-plan.json` (so neither needs DNS).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::MemberName;
use crate::etcd::{Access, Client, Endpoint, EtcdError, Member, Membership};
use crate::ids::EtcdId;
use crate::leave::{self, LeaveError};
use crate::plan::{Plan, Start};
use crate::promote::{self, Promoted};
use crate::urls::EtcdUrl;
use crate::{notify, plan_file, Error};

/// `promote`, checked.
#[derive(Debug, Clone)]
pub struct PromoteConfig {
    /// etcd's data dir, holding muster-plan.json.
    pub data_dir: PathBuf,
    /// Give up after this long.
    pub timeout: Duration,
    /// TLS and authentication for etcd's client API.
    pub access: Access,
}

/// `leave`, checked.
#[derive(Debug, Clone)]
pub struct LeaveConfig {
    /// etcd's data dir, holding muster-plan.json.
    pub data_dir: PathBuf,
    /// Remove even the last member, or without quorum after.
    pub force: bool,
    /// Remove this other member instead.
    pub member: Option<MemberName>,
    /// Keep retrying a removal etcd refuses for now this long.
    pub timeout: Duration,
    /// TLS and authentication for etcd's client API.
    pub access: Access,
}

/// True when this data dir was created by a join (its persisted plan is a join): a
/// restart of it may be a learner's, so `exec` starts the promoter (which does nothing
/// for a member that votes).
pub fn joined(dir: &Path) -> bool {
    matches!(
        plan_file::load(dir),
        Ok(Some(Plan {
            start: Start::Join(_),
            ..
        }))
    )
}

fn stored_plan(dir: &Path) -> Result<Plan, Error> {
    plan_file::load(dir)?.ok_or_else(|| {
        Error::Leave(LeaveError::NoPlan(format!(
            "{} is missing: this data dir was not started by muster-agent, so which member \
             this is is unknown; use etcdctl member remove/promote",
            dir.join(plan_file::PLAN_FILE).display()
        )))
    })
}

/// Starts `muster-agent promote` for this data dir as a child that outlives the exec:
/// etcd (same PID) becomes its parent, and it ends once the learner is promoted. Its
/// output goes where etcd's goes (the journal). A failure is a warning, not an error:
/// this host is already added, and etcd must start either way.
pub fn spawn_promoter(data: &Path, access_args: &[String]) {
    // /proc/self/exe still works when the binary was replaced on disk since this process
    // started (a package upgrade); the path current_exe() reports would not.
    let spawn = |program: &Path| {
        Command::new(program)
            .arg("promote")
            .arg("--data-dir")
            .arg(data)
            .args(access_args)
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
pub fn promote(args: &PromoteConfig) -> Result<(), Error> {
    let plan = stored_plan(&args.data_dir)?;
    let r = promote::promote(&plan, &args.access, args.timeout, |line| {
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
    fn new(list: &Membership, gone: EtcdId, plan: &Plan, access: &Access) -> Routes {
        let current = list.client_endpoints(gone);
        let own_urls = &plan.advertise_client_urls;
        let (own, saved): (Vec<Endpoint>, Vec<Endpoint>) = crate::plan::endpoints(plan)
            .into_iter()
            .partition(|e| own_urls.iter().any(|u| *u == *e.url));
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
    fn listed(&self, id: EtcdId) -> Option<bool> {
        [&self.current, &self.saved]
            .into_iter()
            .flatten()
            .find_map(|c| c.list().ok())
            .map(|l| l.members.iter().any(|m| m.id == id))
    }

    /// `member remove` through the first route that answers.
    fn remove(&self, id: EtcdId) -> Result<(), EtcdError> {
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
pub fn leave(args: &LeaveConfig) -> Result<(), Error> {
    let dir = &args.data_dir;
    let plan = stored_plan(dir)?;
    let access = args.access.clone();
    let endpoints = crate::plan::endpoints(&plan);
    let client = Client::new(endpoints, access.clone()).map_err(LeaveError::Etcd)?;
    let list = client.list().map_err(LeaveError::Etcd)?;
    let peer_urls: Vec<EtcdUrl> = match &plan.start {
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
        None => crate::decide::fresh::find_me(
            &list.members,
            crate::decide::fresh::Me {
                name: plan.name.as_str(),
                peer_url: peer_urls.first().map_or("", EtcdUrl::as_str),
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
        return set_aside(dir);
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
    set_aside(dir)
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
