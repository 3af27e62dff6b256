//! muster-agent: from etcd discovery SRV records to a correct etcd start.
//!
//! etcd's own `--discovery-srv` sizes the cluster from whatever records exist at that
//! moment, names the other members "0", "1", matches itself by one resolved address, and
//! in 3.4 ignores plain-http `_etcd-server._tcp` records. muster-agent resolves the
//! records itself and starts etcd with an explicit `--initial-cluster`.
//!
//! Architecture: parse, then a typed configuration, then run (top to bottom, each layer
//! importing only those below it):
//!
//! - [`cli`] holds the clap structs and builds, once, the checked configuration of the
//!   chosen command ([`config::AgentConfig`] for the start commands, a config per other
//!   command); [`run`] carries the command out. No module below imports them.
//! - The commands: `plan`/`env`/`exec` in [`run`], [`lifecycle`] (`promote`, `leave`),
//!   [`backup`], [`restore`], [`doctor`], [`register`].
//! - [`decide`]: every start mode (restart, move, bootstrap, join, wait) with its reason;
//!   [`join`] carries a join out, [`promote`] and [`leave`] the later membership changes.
//! - Effects: [`discover`] (DNS, interface addresses), [`etcd`] (the member API through
//!   etcd's JSON gateway), [`plan_file`] (the plan persisted in the data dir),
//!   [`envfile`] / [`exec`] (the two ways to hand the [`plan::Plan`] to etcd),
//!   [`snapshot`], [`notify`] (systemd).
//! - The pure core: [`cluster`] (records + local addresses -> plan: completeness,
//!   identity, flags), [`plan`], [`urls`], [`ids`] (etcd's member and cluster IDs).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backup;
pub mod backup_metrics;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod decide;
pub mod discover;
pub mod doctor;
pub mod envfile;
pub mod etcd;
pub mod exec;
pub mod ids;
pub mod join;
pub mod leave;
pub mod lifecycle;
pub mod names;
pub mod notify;
pub mod plan;
pub mod plan_file;
pub mod promote;
pub mod register;
pub mod restore;
pub mod run;
pub mod snapshot;
pub mod urls;

use std::path::PathBuf;

/// Every way a command can fail; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A missing or malformed flag (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The wait for complete records ended without a cluster.
    #[error(transparent)]
    Wait(#[from] decide::wait::WaitError),
    /// The records do not give this host a plan.
    #[error(transparent)]
    Plan(#[from] cluster::PlanError),
    /// The restart path failed.
    #[error(transparent)]
    Restart(#[from] decide::restart::RestartError),
    /// The persisted plan cannot be read or written.
    #[error(transparent)]
    PlanFile(#[from] plan_file::PlanFileError),
    /// etcd cannot be executed as planned.
    #[error(transparent)]
    Exec(#[from] exec::ExecError),
    /// A value cannot go into an EnvironmentFile.
    #[error(transparent)]
    EnvValue(#[from] envfile::BadValue),
    /// The EnvironmentFile cannot be written.
    #[error("cannot write {}: {source}", path.display())]
    WriteEnv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The resolver cannot be built.
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
    /// Interface addresses cannot be read.
    #[error("cannot read this host's interface addresses: {0}")]
    LocalAddrs(std::io::Error),
    /// The async runtime cannot start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// `doctor` found problems that make stock etcd fail or split (its report is on
    /// standard output).
    #[error(transparent)]
    Doctor(#[from] doctor::Failing),
    /// Joining the running cluster failed.
    #[error(transparent)]
    Join(#[from] join::JoinError),
    /// Promoting this member failed.
    #[error(transparent)]
    Promote(#[from] promote::PromoteError),
    /// Leaving the cluster failed or was refused.
    #[error(transparent)]
    Leave(#[from] leave::LeaveError),
    /// `register` (or `--register-server`) failed: no answer, an error rcode, or a reply
    /// that cannot be trusted. Its usage errors become [`Error::Usage`].
    #[error("{0}")]
    Register(String),
    /// `backup` failed.
    #[error(transparent)]
    Backup(#[from] backup::BackupError),
    /// A data dir etcd cannot open, not started.
    #[error(transparent)]
    Repair(#[from] decide::repair::RepairError),
    /// `restore` failed or was refused.
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
}
