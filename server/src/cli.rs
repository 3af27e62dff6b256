//! The `musterd` command line (clap derive: the doc comments are the `--help` text).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{self, Overrides};
use crate::proto::name::Name;

/// musterd: an authoritative DNS server for etcd discovery zones.
#[derive(Debug, Parser)]
#[command(name = "musterd", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per process, so the size of the serve flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve zones over UDP and TCP, and the discovery service if asked. With nothing
    /// configured, serves the built-in example.test. zone; with only the discovery flags,
    /// only the discovery service.
    Serve(ServeArgs),
    /// Validate zone files (syntax, zone rules, etcd discovery pitfalls).
    Check(CheckArgs),
    /// Print the configuration file template with every default.
    ConfigTemplate,
    /// Control a running musterd through its control socket: status, reload [ZONE],
    /// zone-status ZONE, flush ZONE, freeze ZONE, thaw ZONE, notify ZONE, retransfer ZONE,
    /// edit ZONE.
    Ctl(CtlArgs),
}

/// `musterd ctl` arguments.
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// The control socket of the musterd to talk to.
    #[arg(long, env = "MUSTERD_CONTROL_SOCKET", default_value = crate::ctl::DEFAULT_SOCKET, value_name = "PATH")]
    pub socket: PathBuf,
    /// How long to wait for an answer, e.g. 30s.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The command: status, reload, zone-status, flush, freeze, thaw, notify, retransfer
    /// or edit (freeze, $EDITOR on the zone file, check, thaw).
    pub command: String,
    /// The zone the command is about.
    pub zone: Option<String>,
}

/// `musterd serve` flags; each overrides the config file.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (see `musterd config-template`).
    #[arg(long, env = "MUSTERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to answer DNS on, UDP and TCP (repeatable). Default 127.0.0.1:5353 when
    /// there is a zone to serve.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Vec<SocketAddr>,
    /// Zone to serve as ORIGIN=PATH (repeatable), e.g. example.test.=zones/example.test.zone.
    #[arg(long, value_name = "ORIGIN=PATH")]
    pub zone: Vec<String>,
    /// Largest UDP response in bytes (default 1232).
    #[arg(long)]
    pub max_udp_payload: Option<u16>,
    /// UDP worker threads per address (default: one per CPU).
    #[arg(long)]
    pub udp_workers: Option<usize>,
    /// Log every query (target musterd::query).
    #[arg(long)]
    pub query_log: bool,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// The control socket for `musterd ctl` (default /run/musterd/control when
    /// /run/musterd exists; an empty value turns it off).
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// How often to look for changed zone files, e.g. 2s; 0s turns it off.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub watch_interval: Option<Duration>,
    /// Answer for version.bind CH TXT (hidden by default).
    #[arg(long)]
    pub version_string: Option<String>,
    /// Serve the etcd discovery service (etcd --discovery) on this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub discovery_listen: Option<SocketAddr>,
    /// Directory for the discovery service's durable state.
    #[arg(long, value_name = "DIR")]
    pub discovery_state: Option<PathBuf>,
    /// TSIG keys in BIND format, as `tsig-keygen` prints them (repeatable).
    #[arg(long, value_name = "FILE")]
    pub key_file: Vec<PathBuf>,
    /// Let these keys change anything in ZONE by dynamic update (repeatable).
    #[arg(long, value_name = "ZONE=KEYNAME[,KEYNAME]")]
    pub allow_update: Vec<String>,
    /// Directory for the update journals (default /var/lib/musterd).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Let secondaries at this address prefix, or holding this TSIG key, transfer ZONE
    /// (repeatable; default: nobody may).
    #[arg(long, value_name = "ZONE=CIDR|key:KEYNAME")]
    pub allow_transfer: Vec<String>,
    /// Send NOTIFY to this secondary whenever ZONE's serial changes (repeatable).
    #[arg(long, value_name = "ZONE=ADDR:PORT[,key:KEYNAME]")]
    pub notify: Vec<String>,
    /// Serve ZONE as a secondary: pull it from this primary by IXFR/AXFR, keep a copy in
    /// the state directory (repeatable).
    #[arg(long, value_name = "ZONE=ADDR:PORT[,key:KEYNAME]")]
    pub secondary: Vec<String>,
}

/// Output format of `musterd check`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `musterd check` flags.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Zone origin; by default taken from the file's $ORIGIN or its name (x.test.zone -> x.test.).
    #[arg(long)]
    pub origin: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Check every zone of this musterd config file (as `serve --config` would load them).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Zone files to check.
    #[arg(required_unless_present = "config")]
    pub files: Vec<PathBuf>,
}

/// Sets up logging to stderr, filtered by RUST_LOG (default: info).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            match serve(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    eprintln!("musterd: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Check(args) => check(args),
        Command::ConfigTemplate => {
            print!("{}", config::TEMPLATE);
            ExitCode::SUCCESS
        }
        Command::Ctl(args) => ctl(args),
    }
}

/// `musterd ctl`: exit 0 when musterd answered ok, 1 when it answered an error, 2 when the
/// request was malformed or musterd could not be reached.
fn ctl(args: CtlArgs) -> ExitCode {
    let line = format!("{} {}", args.command, args.zone.as_deref().unwrap_or(""));
    let result = if args.command == "edit" {
        crate::ctl::edit(
            &args.socket,
            args.zone.as_deref().unwrap_or(""),
            args.timeout,
        )
    } else {
        match crate::ctl::Request::parse(&line) {
            Ok(req) => crate::ctl::send(&args.socket, &req, args.timeout),
            Err(e) => {
                eprintln!("musterd ctl: {e}");
                return ExitCode::from(2);
            }
        }
    };
    match result {
        Ok(reply) if reply.ok => {
            print!("{}", reply.text);
            ExitCode::SUCCESS
        }
        Ok(reply) => {
            eprint!("musterd ctl: {}", reply.text);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("musterd ctl: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let (file, dir) = match &args.config {
        Some(path) => (
            config::read_file(path)?,
            path.parent().map(|p| p.to_path_buf()),
        ),
        None => (config::FileConfig::default(), None),
    };
    let cfg = config::resolve(
        file,
        dir.as_deref(),
        Overrides {
            listen: args.listen,
            zones: args.zone,
            max_udp_payload: args.max_udp_payload,
            udp_workers: args.udp_workers,
            query_log: args.query_log,
            metrics_listen: args.metrics_listen,
            control_socket: args.control_socket,
            watch_interval: args.watch_interval,
            version: args.version_string,
            discovery_listen: args.discovery_listen,
            discovery_state: args.discovery_state,
            key_files: args.key_file,
            allow_update: args.allow_update,
            state_dir: args.state_dir,
            transfer: crate::transfer::xfr::TransferFlags {
                allow: args.allow_transfer,
                notify: args.notify,
                secondary: args.secondary,
            },
        },
    )?;
    for f in crate::check::policy::key_files(&cfg.updates) {
        let file = f.file.as_deref().unwrap_or(std::path::Path::new("?"));
        tracing::warn!("{}: {}; {}", file.display(), f.message, f.hint);
    }
    crate::serve::run(cfg)?;
    Ok(())
}

fn check(args: CheckArgs) -> ExitCode {
    let origin = match args.origin.as_deref().map(Name::parse_absolute) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(e)) => {
            eprintln!("musterd check: --origin: {e}");
            return ExitCode::from(2);
        }
    };
    let zones: Vec<(Option<Name>, PathBuf)> = args
        .files
        .iter()
        .map(|f| (origin.clone(), f.clone()))
        .collect();
    let mut findings = crate::check::check_zones(&zones);
    // With a config: its zones with their configured sizes, its keys and policies.
    if let Some(path) = &args.config {
        let file = match config::read_file(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("musterd check: {e}");
                return ExitCode::from(2);
            }
        };
        let dir = path.parent().map(|p| p.to_path_buf());
        match config::resolve(file, dir.as_deref(), Overrides::default()) {
            Ok(cfg) => findings.extend(crate::check::policy::check_config(path, &cfg)),
            Err(e) => {
                eprintln!("musterd check: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let out = match args.format {
        Format::Text => crate::check::render_text(&findings),
        Format::Json => crate::check::render_json(&findings),
    };
    print!("{out}");
    ExitCode::from(crate::check::exit_code(&findings) as u8)
}
