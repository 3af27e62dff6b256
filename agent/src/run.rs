//! Carries out one command from its checked configuration: `plan`, `env` and `exec`
//! here (register first, decide, carry a join out, then print, write or exec), the other
//! commands in their own modules.

use std::path::{Path, PathBuf};

use crate::backup::BackupConfig;
use crate::config::{AgentConfig, START_NEEDS_DATA_DIR};
use crate::decide::{self, Decided};
use crate::doctor::DoctorConfig;
use crate::lifecycle::{LeaveConfig, PromoteConfig};
use crate::plan::{Mode, Plan, Start};
use crate::register::RegisterConfig;
use crate::restore::RestoreConfig;
use crate::{envfile, exec, notify, plan_file, Error};

/// One command, checked.
#[derive(Debug)]
pub enum Task {
    /// Print the plan.
    Plan {
        /// The start configuration.
        agent: AgentConfig,
        /// How to print it.
        output: Output,
    },
    /// Write the EnvironmentFile.
    Env {
        /// The start configuration.
        agent: AgentConfig,
        /// The file.
        out: PathBuf,
    },
    /// Replace this process with etcd.
    Exec(ExecConfig),
    /// Promote this member.
    Promote(PromoteConfig),
    /// Remove a member.
    Leave(LeaveConfig),
    /// Replay stock etcd's discovery.
    Doctor(DoctorConfig),
    /// Publish this host's records.
    Register(RegisterConfig),
    /// Take snapshots.
    Backup(BackupConfig),
    /// Restore from a snapshot.
    Restore(RestoreConfig),
}

/// How `plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// For people.
    Text,
    /// The plan as JSON (also what is persisted in the data dir).
    Json,
    /// The ETCD_* lines `env` would write.
    Env,
}

/// `exec`, checked.
#[derive(Debug)]
pub struct ExecConfig {
    /// The start configuration.
    pub agent: AgentConfig,
    /// The etcd program.
    pub etcd_bin: String,
    /// Print etcd's argv instead of executing it.
    pub dry_run: bool,
    /// Leave no promoter behind after a join.
    pub no_promote: bool,
    /// Extra etcd arguments.
    pub extra: Vec<String>,
}

/// Registers first (`--register-*`), decides, and carries a join out when `enact`
/// (without it the plan is a prediction).
fn decide(agent: &AgentConfig, enact: bool) -> Result<Plan, Error> {
    // --register-*: publish this host's current addresses first, so that discovery (and
    // the other members) see them; on a restart too, as a DHCP lease may have changed.
    // Without `enact` only the update it would send is printed.
    if let Some(r) = &agent.register {
        crate::register::first(r, enact)?;
    }
    let plan = match decide::start(agent, enact)? {
        Decided::Final(plan) => plan,
        Decided::Join(plan) if !enact => plan,
        Decided::Join(plan) => join(agent, plan)?,
    };
    if let Start::Bootstrap(c) = &plan.start {
        eprintln!(
            "muster-agent: bootstrap member {} of {} from {} (cluster id {})",
            plan.name,
            c.members.len(),
            c.srv_record,
            c.cluster_id.hex()
        );
    }
    Ok(plan)
}

/// Adds this host to the running cluster as a learner.
fn join(agent: &AgentConfig, plan: Plan) -> Result<Plan, Error> {
    let plan = crate::join::enact(plan, &agent.access, agent.timeout, |line| {
        eprintln!("muster-agent: {line}");
        notify::status(line);
    })?;
    if let Start::Join(j) = &plan.start {
        eprintln!(
            "muster-agent: added {} to cluster {} as learner {}; starting etcd with \
             --initial-cluster-state existing",
            plan.name,
            j.cluster_id.hex(),
            j.member_id.map(|m| m.hex()).unwrap_or_default()
        );
    }
    Ok(plan)
}

/// Runs one command.
pub fn run(task: Task) -> Result<(), Error> {
    match task {
        Task::Plan { agent, output } => print_plan(&agent, output),
        Task::Env { agent, out } => env(&agent, &out),
        Task::Exec(cfg) => exec(&cfg),
        Task::Promote(cfg) => crate::lifecycle::promote(&cfg),
        Task::Leave(cfg) => crate::lifecycle::leave(&cfg),
        Task::Doctor(cfg) => crate::doctor::run(&cfg),
        Task::Register(cfg) => Ok(crate::register::run(&cfg)?),
        Task::Backup(cfg) => crate::backup::run(&cfg),
        Task::Restore(cfg) => crate::restore::run(&cfg),
    }
}

fn print_plan(agent: &AgentConfig, output: Output) -> Result<(), Error> {
    let plan = decide(agent, false)?;
    let from_flag = agent.data_dir.from_flag;
    let out = match output {
        Output::Text => plan.render_text(from_flag),
        // Serialising plain data into a String cannot fail.
        Output::Json => serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n",
        Output::Env => envfile::render(&plan.etcd_flags(from_flag))?,
    };
    print!("{out}");
    Ok(())
}

fn env(agent: &AgentConfig, out: &Path) -> Result<(), Error> {
    let data = agent.data_dir.require(START_NEEDS_DATA_DIR)?.to_path_buf();
    let plan = decide(agent, true)?;
    let text = envfile::render(&plan.etcd_flags(agent.data_dir.from_flag))?;
    envfile::write_atomic(out, text.as_bytes(), 0o644).map_err(|source| Error::WriteEnv {
        path: out.to_path_buf(),
        source,
    })?;
    if plan.creates_member() {
        plan_file::save(&data, &plan)?;
    }
    notify::status(&format!(
        "wrote {} for etcd member {}",
        out.display(),
        plan.name
    ));
    eprintln!("muster-agent: wrote {}", out.display());
    Ok(())
}

fn exec(cfg: &ExecConfig) -> Result<(), Error> {
    let agent = &cfg.agent;
    let data = agent.data_dir.require(START_NEEDS_DATA_DIR)?.to_path_buf();
    let plan = decide(agent, !cfg.dry_run)?;
    let flags = plan.etcd_flags(agent.data_dir.from_flag);
    exec::check(&flags, &cfg.extra, plan.creates_member(), |k| {
        std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
    })?;
    let argv = exec::argv(&cfg.etcd_bin, &flags, &cfg.extra);
    if cfg.dry_run {
        for a in &argv {
            println!("{a}");
        }
        return Ok(());
    }
    if plan.creates_member() {
        plan_file::save(&data, &plan)?;
    }
    // A restart of a member that joined may be a learner's that was never promoted: the
    // promoter then promotes it (and does nothing for a voter).
    let learner = plan.mode() == Mode::Join
        || (matches!(plan.mode(), Mode::Restart | Mode::Move) && crate::lifecycle::joined(&data));
    if learner && !cfg.no_promote {
        crate::lifecycle::spawn_promoter(&data, &agent.access_args);
    }
    Err(exec::exec(&argv).into())
}
