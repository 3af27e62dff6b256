//! The `promote` and `leave` commands, and the promoter `exec` leaves behind: effects
//! around [`crate::promote`] and [`crate::leave`], reading which member this is from
//! `<data-dir>/muster-plan.json` (so neither needs DNS).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{Common, LeaveArgs, PromoteArgs};
use crate::etcd::Client;
use crate::leave::{self, LeaveError};
use crate::plan::Plan;
use crate::promote::{self, Promoted};
use crate::{notify, restart, Error};

fn data_dir(flag: &Option<PathBuf>) -> Result<PathBuf, Error> {
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

/// `muster-agent leave`.
pub fn leave(args: &LeaveArgs) -> Result<(), Error> {
    let dir = data_dir(&args.data_dir)?;
    let plan = stored_plan(&dir)?;
    let endpoints = crate::join::plan_endpoints(&plan);
    let client = Client::new(endpoints, args.etcd.access()).map_err(LeaveError::Etcd)?;
    let list = client.list().map_err(LeaveError::Etcd)?;
    let peer_urls: Vec<String> = match &plan.start {
        crate::plan::Start::Join(j) => j.initial_advertise_peer_urls.clone(),
        _ => plan
            .cluster()
            .map(|c| c.initial_advertise_peer_urls.clone())
            .unwrap_or_default(),
    };
    let me = crate::decide::find_me(
        &list.members,
        crate::decide::Me {
            name: plan.name.as_str(),
            peer_url: peer_urls.first().map_or("", String::as_str),
        },
    )
    .cloned();
    let Some(me) = me else {
        eprintln!(
            "muster-agent: {} is not a member of cluster {:x}: nothing to remove",
            plan.name, list.cluster_id
        );
        return set_aside(&dir);
    };
    let up = |m: &crate::etcd::Member| m.client_urls.iter().any(|u| client.healthy_at(u));
    match leave::check(&list.members, &me, up) {
        Ok(()) => {}
        Err(r) if args.force => eprintln!("muster-agent: --force: {r}"),
        Err(r) => return Err(LeaveError::Refused(r).into()),
    }
    remove(&client, &me, args.timeout)?;
    eprintln!(
        "muster-agent: removed {me} from cluster {:x}; etcd on this host stops by itself",
        list.cluster_id
    );
    set_aside(&dir)
}

fn set_aside(dir: &Path) -> Result<(), Error> {
    match leave::set_aside(dir) {
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

/// `member remove`, retried while etcd refuses it for now: no answer, or a cluster that is
/// not ready to reconfigure (a member started moments ago).
fn remove(client: &Client, me: &crate::etcd::Member, timeout: Duration) -> Result<(), Error> {
    use crate::etcd::{msg, EtcdError};
    let start = Instant::now();
    for attempt in 0u32.. {
        let e = match client.remove(me.id) {
            Ok(()) => return Ok(()),
            Err(e) if e.says(msg::NOT_FOUND) => return Ok(()),
            Err(e @ EtcdError::Api { .. })
                if !(e.says(msg::UNHEALTHY) || e.says(msg::NOT_ENOUGH_STARTED)) =>
            {
                return Err(LeaveError::Etcd(e).into())
            }
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
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
