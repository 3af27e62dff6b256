//! `muster-agent backup` on the command line.

use std::path::PathBuf;
use std::time::Duration;

use super::{parse_path, parse_timeout_like, EtcdAccessArgs};
use crate::backup::BackupConfig;
use crate::config::{DataDir, PLAN_NEEDS_DATA_DIR};
use crate::Error;

/// `muster-agent backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// etcd's data dir, holding muster-plan.json (which says this member's client URL).
    /// Default: $ETCD_DATA_DIR.
    #[arg(long, env = "MUSTER_DATA_DIR", value_name = "DIR", value_parser = parse_path)]
    pub data_dir: Option<PathBuf>,
    /// The snapshot directory (local disk or a network mount), created if missing.
    #[arg(long, env = "MUSTER_BACKUP_TO", value_name = "DEST", value_parser = parse_path)]
    pub to: PathBuf,
    /// Keep running and take a snapshot this often (as a service); without it, one
    /// snapshot and exit (as a timer's job).
    #[arg(long, env = "MUSTER_BACKUP_EVERY", value_name = "DURATION", value_parser = parse_every)]
    pub every: Option<Duration>,
    /// After a snapshot, remove all but the newest N (the newest is always kept).
    #[arg(long, env = "MUSTER_BACKUP_KEEP", value_name = "N")]
    pub keep: Option<usize>,
    /// After a snapshot, remove those older than this (the newest is always kept); with
    /// --keep, a snapshot is kept when either keeps it.
    #[arg(long, env = "MUSTER_BACKUP_KEEP_WITHIN", value_name = "DURATION", value_parser = parse_every)]
    pub keep_within: Option<Duration>,
    /// The etcdctl program (searched in PATH): `etcdctl snapshot status` checks each
    /// snapshot.
    #[arg(
        long,
        env = "MUSTER_ETCDCTL",
        value_name = "PATH",
        default_value = "etcdctl"
    )]
    pub etcdctl: String,
    /// With --every: serve Prometheus metrics (rounds by outcome, the newest snapshot's
    /// age) on this address.
    #[arg(
        long,
        env = "MUSTER_BACKUP_METRICS_LISTEN",
        value_name = "ADDR:PORT",
        requires = "every"
    )]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// TLS and authentication.
    #[command(flatten)]
    pub etcd: EtcdAccessArgs,
}

fn parse_every(s: &str) -> Result<Duration, String> {
    parse_timeout_like(s, "1h or 30m")
}

impl BackupArgs {
    /// The checked configuration; the data dir may come from `ETCD_DATA_DIR`.
    pub fn config(self) -> Result<BackupConfig, Error> {
        let data_dir = DataDir::resolve(self.data_dir)
            .require(PLAN_NEEDS_DATA_DIR)?
            .to_path_buf();
        Ok(BackupConfig {
            data_dir,
            to: self.to,
            every: self.every,
            keep: self.keep,
            keep_within: self.keep_within,
            etcdctl: self.etcdctl,
            metrics_listen: self.metrics_listen,
            access: self.etcd.access(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command, USAGE_EXIT};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["muster-agent"][..], args].concat())
    }

    #[test]
    fn malformed_backup_and_restore_flags_are_usage_errors() {
        for (args, flag) in [
            (&["backup", "--to", "/b", "--every", "0s"][..], "--every"),
            (
                &["backup", "--to", "/b", "--keep-within", "soon"],
                "--keep-within",
            ),
            (&["backup", "--to", "/b", "--keep", "many"], "--keep"),
            (&["backup", "--to", ""], "--to"),
            (&["backup"], "--to"),
            (
                &["restore", "--from", "/b", "--snapshot", "../x"],
                "--snapshot",
            ),
            (&["restore"], "--from"),
            (
                &["restore", "--from", "/b", "--dry-run", "--no-start"],
                "--no-start",
            ),
        ] {
            let e = parse(args).expect_err(&format!("{args:?} must be refused"));
            assert_eq!(e.exit_code(), i32::from(USAGE_EXIT), "{args:?}");
            assert!(e.to_string().contains(flag), "{args:?}: {e}");
        }
    }

    #[test]
    fn backup_flags_parse() {
        let cli = parse(&[
            "backup",
            "--to",
            "/b",
            "--every",
            "1h",
            "--keep",
            "3",
            "--keep-within",
            "7d",
        ])
        .unwrap();
        let Command::Backup(b) = cli.command else {
            panic!("backup")
        };
        assert_eq!(b.every, Some(std::time::Duration::from_secs(3600)));
        assert_eq!(b.keep, Some(3));
        assert_eq!(
            b.keep_within,
            Some(std::time::Duration::from_secs(7 * 86400))
        );
        assert_eq!(b.etcdctl, "etcdctl");
    }
}
