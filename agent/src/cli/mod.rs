//! The `muster-agent` command line (clap derive: the doc comments are the `--help` text),
//! and the one place that turns it into the checked configuration of a command
//! ([`crate::run::Task`]): the modules below never see a clap struct.
//! Every flag can also come from a `MUSTER_*` variable; never `ETCD_*`, which etcd itself
//! reads (and warns about when unknown).
//!
//! Every value is parsed into its type here, flag or variable alike, before any work
//! starts: a malformed one (a nameserver that is not an address, a URL etcd would refuse,
//! a name that cannot be a member) ends the run with exit status 2 and a message naming
//! the flag, as does a missing flag the chosen path needs ([`crate::Error::Usage`]).
//! Status 1 is for everything that goes wrong later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::cluster::{records, MemberName, Scheme};
use crate::config::{AgentConfig, DataDir, PLAN_NEEDS_DATA_DIR, START_NEEDS_DATA_DIR};
use crate::lifecycle::{LeaveConfig, PromoteConfig};
use crate::run::{ExecConfig, Output, Task};
use crate::urls::EtcdUrl;
use crate::Error;

pub mod backup;
pub mod doctor;
pub mod register;
pub mod restore;

/// Exit status for a malformed command line (clap's own errors use it too).
pub const USAGE_EXIT: u8 = 2;

/// muster-agent: start etcd from DNS SRV discovery records, correctly.
///
/// Resolves `_etcd-server[-ssl]._tcp.DOMAIN` (http or https peers), waits until every
/// member resolves and the records are stable, finds which member this host is, and
/// starts etcd with an explicit --initial-cluster. A member whose data dir already has a
/// WAL is restarted from its persisted plan; the records, read once if DNS answers, only
/// move its listen URLs (and peer URL) when its address changed.
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
    /// Promote this member once it has caught up, if it joined as a learner; does nothing
    /// otherwise (for ExecStartPost= of an `env` unit; `exec` starts it by itself).
    Promote(PromoteArgs),
    /// Remove this member from its cluster (decommissioning, scale-down). Refuses to
    /// remove the last member or to break quorum unless --force.
    Leave(LeaveArgs),
    /// Replay what stock etcd 3.4 and 3.5+ `--discovery-srv` would do on every member host
    /// with the records as published now; print each problem with its fix. Exit status 1
    /// when etcd would fail or split the cluster.
    Doctor(doctor::DoctorArgs),
    /// Publish this host's A/AAAA records (and its etcd SRV records) with one TSIG-signed
    /// dynamic update (RFC 2136), for hosts whose addresses come from DHCP; idempotent.
    /// --deregister removes them.
    Register(register::RegisterArgs),
    /// Take a snapshot of the cluster (the leader only) into a directory, checked and
    /// with its metadata; --every runs it as a service; --keep / --keep-within prune.
    Backup(backup::BackupArgs),
    /// Restore the cluster from a snapshot after a majority of members was lost: run the
    /// same command on every host; refuses while the old cluster has quorum.
    Restore(restore::RestoreArgs),
}

/// Flags shared by every subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Discovery domain, as etcd's --discovery-srv (e.g. example.com). Needed to
    /// bootstrap, not to restart.
    #[arg(long, env = "MUSTER_DOMAIN", value_name = "DOMAIN", value_parser = records::parse_domain)]
    pub domain: Option<String>,
    /// Service-name suffix, as etcd's --discovery-srv-name: `_etcd-server-ssl-S._tcp.D`.
    #[arg(long, env = "MUSTER_SRV_NAME", value_name = "S", value_parser = records::parse_srv_name)]
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
        value_delimiter = ',',
        value_parser = crate::discover::parse_nameserver
    )]
    pub nameserver: Vec<SocketAddr>,
    /// This member's name (the first label of its SRV target, in any case). Needed when
    /// several targets resolve to this host; checked against the records otherwise.
    #[arg(long, env = "MUSTER_NAME", value_parser = MemberName::parse)]
    pub name: Option<MemberName>,
    /// This member's peer URL, scheme://target:port or scheme://address:port: another
    /// way to say which member this host is.
    #[arg(long, env = "MUSTER_ADVERTISE_PEER_URL", value_name = "URL", value_parser = parse_url)]
    pub advertise_peer_url: Option<EtcdUrl>,
    /// etcd's data dir. If `DIR/member/wal` exists this is a restart: no --initial-*
    /// flags, and DNS is read once (at most 4 s) only to follow a move, never waited for.
    /// Default: $ETCD_DATA_DIR (then not passed as a flag).
    #[arg(long, env = "MUSTER_DATA_DIR", value_name = "DIR", value_parser = parse_path)]
    pub data_dir: Option<PathBuf>,
    /// Number of members the cluster has. Bootstrap needs the size, from this flag or
    /// from a TXT record "muster-size=N" at the SRV owner name (both: they must agree),
    /// because a stable set of records is not necessarily a complete one.
    #[arg(long, env = "MUSTER_EXPECT", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub expect: Option<u16>,
    /// Give up waiting for complete, stable records after this long (below systemd's
    /// default 90 s start timeout).
    #[arg(long, env = "MUSTER_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// --initial-cluster-token. Default: `muster:DOMAIN[:SRV-NAME]`, the same on
    /// every host.
    #[arg(long, env = "MUSTER_TOKEN", value_parser = parse_token)]
    pub token: Option<String>,
    /// Client port for a member without an `_etcd-client*` record.
    #[arg(
        long,
        env = "MUSTER_CLIENT_PORT",
        value_name = "PORT",
        default_value_t = 2379,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub client_port: u16,
    /// Use this --listen-peer-urls entry instead of the derived one (repeatable). Required
    /// on a restart without `DIR/muster-plan.json`.
    #[arg(
        long,
        env = "MUSTER_LISTEN_PEER_URL",
        value_name = "URL",
        value_delimiter = ',',
        value_parser = EtcdUrl::parse_listen
    )]
    pub listen_peer_url: Vec<EtcdUrl>,
    /// Use this --listen-client-urls entry instead of the derived ones (repeatable). They
    /// replace the derived URLs: to listen on http://127.0.0.1:2379 as well, list the
    /// derived URL too.
    #[arg(
        long,
        env = "MUSTER_LISTEN_CLIENT_URL",
        value_name = "URL",
        value_delimiter = ',',
        value_parser = EtcdUrl::parse_listen
    )]
    pub listen_client_url: Vec<EtcdUrl>,
    /// Use this --advertise-client-urls entry instead of the derived ones (repeatable).
    #[arg(
        long,
        env = "MUSTER_ADVERTISE_CLIENT_URL",
        value_name = "URL",
        value_delimiter = ',',
        value_parser = parse_url
    )]
    pub advertise_client_url: Vec<EtcdUrl>,
    /// Where `backup` writes snapshots: named when a data dir etcd cannot open needs a
    /// restore.
    #[arg(long, env = "MUSTER_BACKUP_TO", value_name = "DEST", value_parser = parse_path)]
    pub backups: Option<PathBuf>,
    /// How to talk to a running cluster (join).
    #[command(flatten)]
    pub etcd: EtcdAccessArgs,
    /// Register this host in DNS before discovery (`--register-*`).
    #[command(
        flatten,
        next_help_heading = "Registering this host first (see `muster-agent register`)"
    )]
    pub register: register::RegisterFirst,
}

/// TLS and authentication for etcd's client API (join, promote, leave).
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdAccessArgs {
    /// CA that signed etcd's client-port certificates (https client URLs).
    #[arg(long, env = "MUSTER_ETCD_CA_FILE", value_name = "FILE", value_parser = parse_path)]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate for etcd run with --client-cert-auth.
    #[arg(long, env = "MUSTER_ETCD_CERT_FILE", value_name = "FILE", value_parser = parse_path, requires = "etcd_key_file")]
    pub etcd_cert_file: Option<PathBuf>,
    /// Its key.
    #[arg(long, env = "MUSTER_ETCD_KEY_FILE", value_name = "FILE", value_parser = parse_path, requires = "etcd_cert_file")]
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user, with authentication enabled (the role must allow member changes).
    #[arg(
        long,
        env = "MUSTER_ETCD_USER",
        value_name = "USER",
        requires = "etcd_password"
    )]
    pub etcd_user: Option<String>,
    /// Its password (prefer the variable: a flag shows in ps).
    #[arg(
        long,
        env = "MUSTER_ETCD_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        requires = "etcd_user"
    )]
    pub etcd_password: Option<String>,
}

impl EtcdAccessArgs {
    /// The member-API access these flags give.
    pub fn access(&self) -> crate::etcd::Access {
        crate::etcd::Access {
            ca_file: self.etcd_ca_file.clone(),
            cert_file: self.etcd_cert_file.clone(),
            key_file: self.etcd_key_file.clone(),
            user: self.etcd_user.clone(),
            password: self.etcd_password.clone(),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// The same flags as arguments, for the promoter `exec` leaves behind.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        let mut path = |flag: &str, p: &Option<PathBuf>| {
            if let Some(p) = p {
                v.push(format!("--{flag}={}", p.display()));
            }
        };
        path("etcd-ca-file", &self.etcd_ca_file);
        path("etcd-cert-file", &self.etcd_cert_file);
        path("etcd-key-file", &self.etcd_key_file);
        if let Some(u) = &self.etcd_user {
            v.push(format!("--etcd-user={u}"));
        }
        v
    }
}

/// `muster-agent promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// etcd's data dir, holding muster-plan.json. Default: $ETCD_DATA_DIR.
    #[arg(long, env = "MUSTER_DATA_DIR", value_name = "DIR", value_parser = parse_path)]
    pub data_dir: Option<PathBuf>,
    /// Give up after this long (a learner with much data to copy needs a while).
    #[arg(long, env = "MUSTER_PROMOTE_TIMEOUT", value_name = "DURATION", default_value = "10m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// TLS and authentication.
    #[command(flatten)]
    pub etcd: EtcdAccessArgs,
}

/// `muster-agent leave`.
#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    /// etcd's data dir, holding muster-plan.json. Default: $ETCD_DATA_DIR.
    #[arg(long, env = "MUSTER_DATA_DIR", value_name = "DIR", value_parser = parse_path)]
    pub data_dir: Option<PathBuf>,
    /// Remove even the last member, or when the members left would lack quorum.
    #[arg(long)]
    pub force: bool,
    /// Remove this other member (by name) instead, through this data dir's cluster; this
    /// data dir is left alone. For a member whose host is gone, e.g. a Kubernetes pod
    /// after a scale-down.
    #[arg(long, value_name = "NAME", value_parser = MemberName::parse)]
    pub member: Option<MemberName>,
    /// Keep retrying a removal etcd refuses for now (right after a member started, etcd
    /// refuses reconfiguration until its peers have been connected for a while) this long.
    #[arg(long, env = "MUSTER_TIMEOUT", value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// TLS and authentication.
    #[command(flatten)]
    pub etcd: EtcdAccessArgs,
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
    #[arg(long, env = "MUSTER_ENV_FILE", value_name = "FILE", value_parser = parse_path)]
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
        default_value = "etcd",
        value_parser = parse_program
    )]
    pub etcd_bin: String,
    /// Print etcd's argv, one argument per line, instead of executing it (a join is
    /// planned, not carried out).
    #[arg(long)]
    pub dry_run: bool,
    /// After a join, do not leave a `muster-agent promote` process behind (promote
    /// with ExecStartPost= or by hand instead).
    #[arg(long, env = "MUSTER_NO_PROMOTE")]
    pub no_promote: bool,
    /// Extra etcd arguments (after `--`), e.g. --cert-file=... for TLS.
    #[arg(last = true, value_name = "ETCD_ARGS")]
    pub extra: Vec<String>,
}

fn parse_url(s: &str) -> Result<EtcdUrl, String> {
    s.parse()
}

/// A path flag: anything but empty.
pub(crate) fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(s))
}

fn parse_program(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("the program is empty: give etcd's path or name".into());
    }
    Ok(s.to_string())
}

/// A duration such as `60s` or `2m`, more than zero (a zero wait could never see two
/// identical reads).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_timeout_like(s, "60s or 2m")
}

/// A timeout flag: a duration above 0s; `example` completes "such as" in the error.
pub(crate) fn parse_timeout_like(s: &str, example: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration such as {example}: {e}"))?;
    if d.is_zero() {
        return Err("the timeout must be more than 0s".into());
    }
    Ok(d)
}

/// A token goes into etcd's argv and into an EnvironmentFile: no blanks, quotes,
/// backslashes, `$` or control characters, which either would mangle.
fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the token is empty: leave the flag out for the default".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '$' | '`'))
    {
        return Err(format!(
            "{s:?} contains {c:?}: use letters, digits and punctuation such as - _ : ."
        ));
    }
    Ok(s.to_string())
}

impl EtcdAccessArgs {
    fn to_args_and_access(&self) -> (Vec<String>, crate::etcd::Access) {
        (self.to_args(), self.access())
    }
}

impl Common {
    /// The checked start configuration; `need_data_dir` says why the command needs one
    /// (checked first, before the `--register-*` flags).
    fn config_with(self, need_data_dir: Option<&str>) -> Result<AgentConfig, Error> {
        let data_dir = DataDir::resolve(self.data_dir);
        if let Some(why) = need_data_dir {
            data_dir.require(why)?;
        }
        let register = register::first(
            self.register,
            self.domain.as_deref(),
            self.srv_name.as_deref(),
            self.scheme,
        )?;
        let (access_args, access) = self.etcd.to_args_and_access();
        Ok(AgentConfig {
            domain: self.domain,
            srv_name: self.srv_name,
            scheme: self.scheme.map(Into::into),
            nameservers: self.nameserver,
            name: self.name,
            advertise_peer_url: self.advertise_peer_url,
            data_dir,
            expect: self.expect,
            timeout: self.timeout,
            token: self.token,
            client_port: self.client_port,
            listen_peer_urls: self.listen_peer_url,
            listen_client_urls: self.listen_client_url,
            advertise_client_urls: self.advertise_client_url,
            backups: self.backups,
            access,
            access_args,
            register,
        })
    }

    /// The checked start configuration.
    pub fn config(self) -> Result<AgentConfig, Error> {
        self.config_with(None)
    }
}

/// The data dir of a command that reads the persisted plan.
fn plan_data_dir(flag: Option<PathBuf>) -> Result<PathBuf, Error> {
    Ok(DataDir::resolve(flag)
        .require(PLAN_NEEDS_DATA_DIR)?
        .to_path_buf())
}

impl Cli {
    /// The checked configuration of the chosen command.
    pub fn task(self) -> Result<Task, Error> {
        Ok(match self.command {
            Command::Plan(a) => Task::Plan {
                agent: a.common.config()?,
                output: match a.format {
                    Format::Text => Output::Text,
                    Format::Json => Output::Json,
                    Format::Env => Output::Env,
                },
            },
            Command::Env(a) => Task::Env {
                agent: a.common.config_with(Some(START_NEEDS_DATA_DIR))?,
                out: a.out,
            },
            Command::Exec(a) => Task::Exec(ExecConfig {
                agent: a.common.config_with(Some(START_NEEDS_DATA_DIR))?,
                etcd_bin: a.etcd_bin,
                dry_run: a.dry_run,
                no_promote: a.no_promote,
                extra: a.extra,
            }),
            Command::Promote(a) => Task::Promote(PromoteConfig {
                data_dir: plan_data_dir(a.data_dir)?,
                timeout: a.timeout,
                access: a.etcd.access(),
            }),
            Command::Leave(a) => Task::Leave(LeaveConfig {
                data_dir: plan_data_dir(a.data_dir)?,
                force: a.force,
                member: a.member,
                timeout: a.timeout,
                access: a.etcd.access(),
            }),
            Command::Doctor(a) => Task::Doctor(a.config()),
            Command::Register(a) => Task::Register(a.config()?),
            Command::Backup(a) => Task::Backup(a.config()?),
            Command::Restore(a) => Task::Restore(a.config()?),
        })
    }
}

/// Runs a parsed command line; prints errors as `muster-agent: error: ...`. Exit status
/// 2 for a missing or malformed flag, 1 for everything else.
pub fn run(cli: Cli) -> ExitCode {
    match cli.task().and_then(crate::run::run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string();
            crate::notify::status(&format!("muster-agent failed: {msg}"));
            eprintln!("muster-agent: error: {msg}");
            match e {
                crate::Error::Usage(_) => ExitCode::from(USAGE_EXIT),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["muster-agent", "plan"][..], args].concat())
    }

    /// Review issue 8, item 6: every value is checked while parsing (clap exits 2).
    #[test]
    fn issue8_malformed_values_are_usage_errors() {
        for args in [
            &["--nameserver", "foo"][..],
            &["--nameserver", "127.0.0.1:99999"],
            &["--domain", "a b"],
            &["--srv-name", "a.b"],
            &["--name", "m 1"],
            &["--advertise-peer-url", "m1.example.test:2380"],
            &["--listen-peer-url", "http://m1.example.test:2380"],
            &["--listen-client-url", "not a url"],
            &["--advertise-client-url", "http://m1.example.test"],
            &["--timeout", "forever"],
            &["--timeout", "0s"],
            &["--token", ""],
            &["--token", "a b"],
            &["--client-port", "0"],
            &["--expect", "0"],
            &["--data-dir", ""],
        ] {
            let e = parse(args).expect_err(&format!("{args:?} must be refused"));
            assert_eq!(e.exit_code(), i32::from(USAGE_EXIT), "{args:?}");
            assert!(e.to_string().contains(args[0]), "{args:?}: {e}");
        }
    }

    #[test]
    fn well_formed_values_parse() {
        let cli = parse(&[
            "--nameserver",
            "127.0.0.1:5353,::1",
            "--name",
            "M1",
            "--advertise-peer-url",
            "http://m1.example.test:2380",
            "--listen-client-url",
            "http://127.0.0.1:2379,http://[::1]:2379",
            "--timeout",
            "2m",
        ])
        .unwrap();
        let Command::Plan(p) = cli.command else {
            panic!("plan")
        };
        assert_eq!(p.common.nameserver.len(), 2);
        assert_eq!(p.common.name.unwrap().as_str(), "m1");
        assert_eq!(p.common.listen_client_url.len(), 2);
        assert_eq!(p.common.timeout, Duration::from_secs(120));
    }
}
