//! The `muster-agent` command line (clap derive: the doc comments are the `--help` text).
//! Every flag can also come from a `MUSTER_*` variable; never `ETCD_*`, which etcd itself
//! reads (and warns about when unknown).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::Scheme;

/// muster-agent: start etcd from DNS SRV discovery records, correctly.
///
/// Resolves `_etcd-server[-ssl]._tcp.DOMAIN` (http or https peers), waits until every
/// member resolves and the records are stable, finds which member this host is, and
/// starts etcd with an explicit --initial-cluster. A member whose data dir already has a
/// WAL is restarted without consulting DNS.
#[derive(Debug, Parser)]
#[command(name = "muster-agent", version, about, long_about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Resolve, decide and print the plan; nothing is written or started.
    Plan(PlanArgs),
    /// Write a systemd EnvironmentFile with the ETCD_* variables (for ExecStartPre=).
    Env(EnvArgs),
    /// Replace this process with etcd, started with the plan's flags (for ExecStart= or a
    /// container entrypoint). Arguments after `--` are passed to etcd (e.g. TLS flags).
    Exec(ExecArgs),
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Discovery domain, as etcd's --discovery-srv (e.g. example.com). Needed to
    /// bootstrap, not to restart.
    #[arg(long, env = "MUSTER_DOMAIN", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Service-name suffix, as etcd's --discovery-srv-name: `_etcd-server-ssl-S._tcp.D`.
    #[arg(long, env = "MUSTER_SRV_NAME", value_name = "S")]
    pub srv_name: Option<String>,
    /// Use only this SRV set: https (`_etcd-server-ssl`) or http (`_etcd-server`). By
    /// default the published one; both published is an error.
    #[arg(long, env = "MUSTER_SCHEME", value_enum)]
    pub scheme: Option<SchemeArg>,
    /// DNS server to ask, IP or IP:PORT (repeatable, or comma-separated in the
    /// variable). Default: the nameservers of /etc/resolv.conf. Prefer the authoritative
    /// servers: a caching resolver may hide a record that was just added.
    #[arg(
        long,
        env = "MUSTER_NAMESERVER",
        value_name = "IP[:PORT]",
        value_delimiter = ','
    )]
    pub nameserver: Vec<String>,
    /// This member's name (the first label of its SRV target). Needed when several
    /// targets resolve to this host; checked against the records otherwise.
    #[arg(long, env = "MUSTER_NAME")]
    pub name: Option<String>,
    /// This member's peer URL, scheme://target:port or scheme://address:port: another
    /// way to say which member this host is.
    #[arg(long, env = "MUSTER_ADVERTISE_PEER_URL", value_name = "URL")]
    pub advertise_peer_url: Option<String>,
    /// etcd's data dir. If `DIR/member/wal` exists this is a restart: no DNS, no
    /// --initial-* flags. Default: $ETCD_DATA_DIR (then not passed as a flag).
    #[arg(long, env = "MUSTER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Number of members the cluster must have. Without it, the cluster is whatever is
    /// published once every published target resolves and the records are stable.
    #[arg(long, env = "MUSTER_EXPECT", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub expect: Option<u16>,
    /// Give up waiting for complete, stable records after this long (below systemd's
    /// default 90 s start timeout).
    #[arg(long, env = "MUSTER_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// --initial-cluster-token. Default: `muster:DOMAIN[:SRV-NAME]`, the same on
    /// every host.
    #[arg(long, env = "MUSTER_TOKEN")]
    pub token: Option<String>,
    /// Client port for a member without an `_etcd-client*` record.
    #[arg(
        long,
        env = "MUSTER_CLIENT_PORT",
        value_name = "PORT",
        default_value_t = 2379
    )]
    pub client_port: u16,
    /// Use this --listen-peer-urls entry instead of the derived one (repeatable). Required
    /// on a restart without `DIR/muster-plan.json`.
    #[arg(
        long,
        env = "MUSTER_LISTEN_PEER_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub listen_peer_url: Vec<String>,
    /// Use this --listen-client-urls entry instead of the derived ones (repeatable), e.g.
    /// to add http://127.0.0.1:2379.
    #[arg(
        long,
        env = "MUSTER_LISTEN_CLIENT_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub listen_client_url: Vec<String>,
    /// Use this --advertise-client-urls entry instead of the derived ones (repeatable).
    #[arg(
        long,
        env = "MUSTER_ADVERTISE_CLIENT_URL",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub advertise_client_url: Vec<String>,
}

/// `--scheme` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemeArg {
    /// `_etcd-server._tcp` records, plain-text peers.
    Http,
    /// `_etcd-server-ssl._tcp` records, TLS peers.
    Https,
}

impl From<SchemeArg> for Scheme {
    fn from(s: SchemeArg) -> Scheme {
        match s {
            SchemeArg::Http => Scheme::Http,
            SchemeArg::Https => Scheme::Https,
        }
    }
}

/// Output of `plan`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// The plan as JSON (also what is persisted in the data dir).
    Json,
    /// The ETCD_* lines `env` would write.
    Env,
}

/// `muster-agent plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Flags shared by every subcommand.
    #[command(flatten)]
    pub common: Common,
    /// Output format.
    #[arg(long, env = "MUSTER_FORMAT", value_enum, default_value = "text")]
    pub format: Format,
}

/// `muster-agent env`.
#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// Flags shared by every subcommand.
    #[command(flatten)]
    pub common: Common,
    /// The EnvironmentFile to write (atomically), e.g. /run/etcd/bootstrap.env.
    #[arg(long, env = "MUSTER_ENV_FILE", value_name = "FILE")]
    pub out: PathBuf,
}

/// `muster-agent exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Flags shared by every subcommand.
    #[command(flatten)]
    pub common: Common,
    /// The etcd program (searched in PATH).
    #[arg(
        long,
        env = "MUSTER_ETCD_BIN",
        value_name = "PATH",
        default_value = "etcd"
    )]
    pub etcd_bin: String,
    /// Print etcd's argv, one argument per line, instead of executing it.
    #[arg(long)]
    pub dry_run: bool,
    /// Extra etcd arguments (after `--`), e.g. --cert-file=... for TLS.
    #[arg(last = true, value_name = "ETCD_ARGS")]
    pub extra: Vec<String>,
}

/// Runs a parsed command line; prints errors as `muster-agent: error: ...`.
pub fn run(cli: Cli) -> ExitCode {
    match crate::run::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            crate::notify::status(&format!("muster-agent failed: {msg}"));
            eprintln!("muster-agent: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
