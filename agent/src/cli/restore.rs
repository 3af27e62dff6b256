//! `muster-agent restore` on the command line.

use std::path::PathBuf;

use super::{parse_path, Common};
use crate::restore::RestoreConfig;
use crate::snapshot;
use crate::Error;

/// `muster-agent restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// Flags shared by every subcommand (the records are read as for a bootstrap).
    #[command(flatten)]
    pub common: Common,
    /// The snapshot directory `backup --to` wrote, or one snapshot file (its `.json`
    /// metadata next to it, if any, is read too).
    #[arg(long, env = "MUSTER_RESTORE_FROM", value_name = "DEST|FILE", value_parser = parse_path)]
    pub from: PathBuf,
    /// Restore this snapshot (its ID, as `backup` printed it) instead of the newest that
    /// passes its checksums.
    #[arg(long, env = "MUSTER_SNAPSHOT", value_name = "ID", value_parser = snapshot::parse_id)]
    pub snapshot: Option<String>,
    /// Restore a snapshot of another discovery record than the records', or one older
    /// than this host's data dir.
    #[arg(long)]
    pub force: bool,
    /// The etcd program (searched in PATH).
    #[arg(
        long,
        env = "MUSTER_ETCD_BIN",
        value_name = "PATH",
        default_value = "etcd"
    )]
    pub etcd_bin: String,
    /// The etcdctl program (searched in PATH): `snapshot status` and `snapshot restore`.
    #[arg(
        long,
        env = "MUSTER_ETCDCTL",
        value_name = "PATH",
        default_value = "etcdctl"
    )]
    pub etcdctl: String,
    /// Print etcd's argv after the checks instead of restoring and executing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Restore, but do not start etcd: under systemd, `systemctl start etcd` then starts
    /// it (a restart, from the plan written).
    #[arg(long, conflicts_with = "dry_run")]
    pub no_start: bool,
    /// Extra etcd arguments (after `--`), e.g. --cert-file=... for TLS.
    #[arg(last = true, value_name = "ETCD_ARGS")]
    pub extra: Vec<String>,
}

impl RestoreArgs {
    /// The checked configuration.
    pub fn config(self) -> Result<RestoreConfig, Error> {
        Ok(RestoreConfig {
            agent: self.common.config()?,
            from: self.from,
            snapshot: self.snapshot,
            force: self.force,
            etcd_bin: self.etcd_bin,
            etcdctl: self.etcdctl,
            dry_run: self.dry_run,
            no_start: self.no_start,
            extra: self.extra,
        })
    }
}
