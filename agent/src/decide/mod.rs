//! The start decision: every way etcd can start on this host, and why — each plan
//! carries its reason, printed as `decision: MODE (REASON)`.
//!
//! In the order [`start`] tries them:
//!
//! - a data dir etcd cannot open is moved aside when the cluster has quorum, else the
//!   start stops and names the restore ([`repair`]);
//! - a join interrupted before its learner caught up is moved aside and made again
//!   ([`rejoin`]);
//! - *restart*: the data dir has a WAL. Without `muster-plan.json` the plan is adopted
//!   from the flags or the records ([`adopt`]); with it, the persisted plan
//!   ([`restart`]), checked against one bounded read of the records ([`reread`]);
//! - *move*: a restart whose records now give this member other addresses or another
//!   peer URL: new listen URLs, and `member update` first ([`restart::relocate`],
//!   [`reread`]);
//! - *bootstrap*, *join* or *wait*: no WAL. The records are read until complete and
//!   stable while the other members are asked ([`wait`], [`probe`]), and the rules of
//!   [`fresh`] decide; a wait ends in an error at `--timeout`.
//!
//! [`records`] reads the records without asking any cluster (restore, adoption).
//! Carrying out a join (`member add`) is [`crate::join`], after the decision.

pub mod adopt;
pub mod fresh;
pub mod probe;
pub mod records;
pub mod rejoin;
pub mod repair;
pub mod reread;
pub mod restart;
pub mod wait;

use std::path::Path;

use crate::config::{AgentConfig, DataDir};
use crate::discover::{self, DnsResolver};
use crate::plan::Plan;
use crate::{plan_file, Error};

/// Why a bootstrap needs `--domain`.
const TO_BOOTSTRAP: &str = "to bootstrap: the DNS domain of the _etcd-server SRV records";

/// What the decision is.
#[derive(Debug)]
pub enum Decided {
    /// Restart, move or bootstrap: the plan is final.
    Final(Plan),
    /// Join: the plan is a prediction until the join is carried out.
    Join(Plan),
}

/// Decides how etcd starts on this host: restart (or move) if the data dir has a WAL
/// (DNS optional), else bootstrap or join from DNS and the running cluster, after
/// waiting as long as neither is safe. With `enact`, a repair or an interrupted join is
/// moved aside and a move's `member update` is carried out; without it (`plan`,
/// `exec --dry-run`) nothing is changed and the plan is a prediction.
pub fn start(agent: &AgentConfig, enact: bool) -> Result<Decided, Error> {
    let dir = &agent.data_dir;
    if let Some(d) = &dir.path {
        if let Some(plan) = with_data(agent, d, enact)? {
            return Ok(Decided::Final(plan));
        }
    }
    fresh_start(agent, dir)
}

/// The paths of a data dir: None when it holds no WAL (any more), so this is a fresh
/// start.
fn with_data(agent: &AgentConfig, d: &Path, enact: bool) -> Result<Option<Plan>, Error> {
    // A data dir etcd cannot open: moved aside with quorum (then a fresh start).
    repair::check(&agent.access, agent.backups.as_deref(), d, enact)?;
    // A join interrupted before the learner caught up is moved aside and made again
    // (only when enacting: `plan` shows the restart it would try).
    if !plan_file::has_wal(d) || (enact && rejoin::rejoin_if_interrupted(&agent.access, d)?) {
        return Ok(None);
    }
    // A WAL without muster-plan.json (etcdctl snapshot restore by hand): adopted.
    if let Some(plan) = adopt::without_plan(agent, d, enact)? {
        return Ok(Some(plan));
    }
    // Restart or move: the persisted plan, checked against the records if DNS answers.
    reread::restart(agent, d, enact).map(Some)
}

/// Bootstrap, join or wait: the records until complete and stable, the running cluster
/// asked every round.
fn fresh_start(agent: &AgentConfig, dir: &DataDir) -> Result<Decided, Error> {
    let service = agent.service(TO_BOOTSTRAP)?;
    let servers = agent.servers();
    let opts = wait::WaitOptions {
        plan: agent.plan_options(agent.token.clone(), dir.path.clone()),
        local: discover::local_addresses().map_err(Error::LocalAddrs)?,
        timeout: agent.timeout,
    };
    let probe = probe::EtcdProbe {
        access: agent.access.clone(),
    };
    let outcome = records::runtime()?.block_on(async {
        let resolver = DnsResolver::new(&servers).map_err(|e| Error::Resolver(e.to_string()))?;
        let outcome =
            wait::wait_for_start(&resolver, &service, &opts, &probe, records::report).await?;
        Ok::<_, Error>(outcome)
    })?;
    eprintln!(
        "muster-agent: decision: {} ({})",
        outcome.plan().mode(),
        outcome.plan().reason
    );
    Ok(match outcome {
        wait::Outcome::Bootstrap(plan) => Decided::Final(plan),
        wait::Outcome::Join { plan, .. } => Decided::Join(plan),
    })
}
