//! Waiting for the records without asking any cluster: the bootstrap plan complete,
//! stable records give this host (for `restore`, and for a data dir without a plan
//! file). The same rules as a bootstrap: complete, stable, size known, this host
//! identified.

use std::path::Path;

use super::wait::{self, Round, WaitOptions};
use crate::config::AgentConfig;
use crate::discover::{self, DnsResolver};
use crate::plan::Plan;
use crate::{notify, Error};

/// Why `restore` (and a data dir without a plan) needs `--domain`.
pub const TO_RESTORE: &str = "to restore: the records say the members, their names and URLs";

/// Prints one round of the wait and tells systemd (the status line and more time).
pub fn report(round: &Round<'_>) {
    let line = format!("{} ({:.1}s)", round.progress, round.elapsed.as_secs_f64());
    eprintln!("muster-agent: {line}");
    notify::waiting(
        &format!("waiting for etcd discovery records: {line}"),
        round.remaining,
    );
}

/// A current-thread runtime for one bounded wait.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// The bootstrap plan the records give this host with `token`, no cluster asked.
pub fn records_plan(agent: &AgentConfig, dir: &Path, token: &str) -> Result<Plan, Error> {
    let service = agent.service(TO_RESTORE)?;
    let servers = agent.servers();
    let opts = WaitOptions {
        plan: agent.plan_options(Some(token.to_string()), Some(dir.to_path_buf())),
        local: discover::local_addresses().map_err(Error::LocalAddrs)?,
        timeout: agent.timeout,
    };
    runtime()?.block_on(async {
        let resolver = DnsResolver::new(&servers).map_err(|e| Error::Resolver(e.to_string()))?;
        let plan = wait::wait_for_plan(&resolver, &service, &opts, report).await?;
        Ok(plan)
    })
}
