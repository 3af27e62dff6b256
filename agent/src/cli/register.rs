//! `muster-agent register` and the `--register-*` flags of `plan`, `env` and `exec` on
//! the command line: one definition of the flags ([`TargetFlags`]), flattened into both
//! under two spellings (`--server` there, `--register-server` here) with the same
//! variables, so the two cannot drift apart.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::Resettable;

use super::{parse_path, parse_timeout_like, SchemeArg};
use crate::cluster::{records, Scheme};
use crate::discover::parse_dns_server as parse_server;
use crate::register::RegisterConfig;
use crate::Error;

/// Which spelling of the flags: the `register` command's own, or the `--register-*`
/// prefix of the start commands.
pub trait Spelling: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// True for `--register-*`.
    const FIRST: bool;
}

/// `register --server` etc.
#[derive(Debug, Clone)]
pub struct Own;

/// `plan --register-server` etc.
#[derive(Debug, Clone)]
pub struct First;

impl Spelling for Own {
    const FIRST: bool = false;
}

impl Spelling for First {
    const FIRST: bool = true;
}

/// `own` for the `register` command, `first` for `--register-*`.
const fn pick(first: bool, own: &'static str, prefixed: &'static str) -> &'static str {
    if first {
        prefixed
    } else {
        own
    }
}

/// Where and how to register: the server, the key, the zone and the records of this
/// host. Required by `register`; `--register-server` turns them on for a start.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetFlags<S: Spelling> {
    /// The primary server that takes signed updates.
    #[arg(
        id = pick(S::FIRST, "server", "register_server"),
        long = pick(S::FIRST, "server", "register-server"),
        env = "MUSTER_REGISTER_SERVER",
        value_name = "IP[:PORT]",
        value_parser = parse_server,
        required = !S::FIRST,
        requires_all = if S::FIRST { &["register_key", "register_zone"][..] } else { &[][..] },
        help = pick(
            S::FIRST,
            "The zone's primary server that takes signed updates (musterd with a `host` grant \
             for this key, docs/dhcp.md), IP or IP:PORT (port 53 by default)",
            "Register first with a signed update to this server, IP or IP:PORT (`plan` and \
             `exec --dry-run` only print the update they would send)"
        )
    )]
    pub server: Option<SocketAddr>,
    /// The BIND key file.
    #[arg(
        id = pick(S::FIRST, "key", "register_key"),
        long = pick(S::FIRST, "key", "register-key"),
        env = "MUSTER_REGISTER_KEY",
        value_name = "FILE",
        value_parser = parse_path,
        required = !S::FIRST,
        help = pick(
            S::FIRST,
            "TSIG key file in BIND format, as `tsig-keygen NAME` prints it",
            "As `register --key`"
        )
    )]
    pub key: Option<PathBuf>,
    /// The key to use when the file holds several.
    #[arg(
        id = pick(S::FIRST, "key_name", "register_key_name"),
        long = pick(S::FIRST, "key-name", "register-key-name"),
        env = "MUSTER_REGISTER_KEY_NAME",
        value_name = "NAME",
        help = pick(
            S::FIRST,
            "The key to use when the file holds several",
            "As `register --key-name`"
        )
    )]
    pub key_name: Option<String>,
    /// The zone to update.
    #[arg(
        id = pick(S::FIRST, "zone", "register_zone"),
        long = pick(S::FIRST, "zone", "register-zone"),
        env = "MUSTER_REGISTER_ZONE",
        value_name = "ZONE",
        value_parser = records::parse_domain,
        required = !S::FIRST,
        help = pick(
            S::FIRST,
            "The zone to update (the host's name and the SRV names must be in it)",
            "As `register --zone`"
        )
    )]
    pub zone: Option<String>,
    /// This host's name.
    #[arg(
        id = pick(S::FIRST, "hostname", "register_hostname"),
        long = pick(S::FIRST, "hostname", "register-hostname"),
        env = "MUSTER_REGISTER_HOSTNAME",
        value_name = "NAME",
        help = pick(
            S::FIRST,
            "This host's name: one label (then in the zone) or a name in the zone. Default: \
             the first label of the kernel's host name",
            "As `register --hostname`"
        )
    )]
    pub hostname: Option<String>,
    /// The addresses to publish.
    #[arg(
        id = pick(S::FIRST, "address", "register_address"),
        long = pick(S::FIRST, "address", "register-address"),
        env = "MUSTER_REGISTER_ADDRESS",
        value_name = "IP",
        value_delimiter = ',',
        help = pick(
            S::FIRST,
            "An address to publish (repeatable, or comma-separated in the variable); loopback \
             is taken only from here. Default: this host's interface addresses except \
             loopback, link-local and multicast ones",
            "As `register --address` (repeatable)"
        )
    )]
    pub address: Vec<IpAddr>,
    /// The peer port of this host's `_etcd-server` SRV record.
    #[arg(
        id = pick(S::FIRST, "srv_port", "register_srv_port"),
        long = pick(S::FIRST, "srv-port", "register-srv-port"),
        env = "MUSTER_REGISTER_SRV_PORT",
        value_name = "PORT",
        value_parser = clap::value_parser!(u16).range(1..),
        requires = needs_cluster(S::FIRST),
        help = pick(
            S::FIRST,
            "Publish `_etcd-server._tcp.CLUSTER` (`-ssl` with --scheme https) with this host \
             as target and this peer port",
            "As `register --srv-port` (the SRV name from --domain)"
        )
    )]
    pub srv_port: Option<u16>,
    /// The client port of this host's `_etcd-client` SRV record.
    #[arg(
        id = pick(S::FIRST, "client_srv_port", "register_client_srv_port"),
        long = pick(S::FIRST, "client-srv-port", "register-client-srv-port"),
        env = "MUSTER_REGISTER_CLIENT_SRV_PORT",
        value_name = "PORT",
        value_parser = clap::value_parser!(u16).range(1..),
        requires = needs_cluster(S::FIRST),
        help = pick(
            S::FIRST,
            "Publish `_etcd-client._tcp.CLUSTER` with this host as target and this client port",
            "As `register --client-srv-port`"
        )
    )]
    pub client_srv_port: Option<u16>,
    /// TTL of the published records.
    #[arg(
        id = pick(S::FIRST, "ttl", "register_ttl"),
        long = pick(S::FIRST, "ttl", "register-ttl"),
        env = "MUSTER_REGISTER_TTL",
        value_name = "SECONDS",
        default_value_t = 60,
        help = pick(
            S::FIRST,
            "TTL of the published records (short: the addresses come from DHCP leases)",
            "As `register --ttl`"
        )
    )]
    pub ttl: u32,
    /// Give up on the server after this long.
    #[arg(
        id = pick(S::FIRST, "timeout", "register_timeout"),
        long = pick(S::FIRST, "timeout", "register-timeout"),
        env = "MUSTER_REGISTER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_timeout,
        help = pick(
            S::FIRST,
            "Give up on the server after this long",
            "As `register --timeout`"
        )
    )]
    pub timeout: Duration,
    #[arg(skip)]
    spelling: PhantomData<S>,
}

/// `register --srv-port` needs `--cluster`; the start commands take the SRV names from
/// their own `--domain`, checked when the configuration is built.
fn needs_cluster(first: bool) -> Resettable<clap::Id> {
    if first {
        Resettable::Reset
    } else {
        Resettable::Value("cluster".into())
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    parse_timeout_like(s, "10s")
}

/// `muster-agent register`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// Server, key, zone and this host's records.
    #[command(flatten)]
    pub target: TargetFlags<Own>,
    /// The etcd discovery domain of the SRV records (as `--domain`).
    #[arg(long, env = "MUSTER_DOMAIN", value_name = "DOMAIN", value_parser = records::parse_domain)]
    pub cluster: Option<String>,
    /// Service-name suffix, as etcd's --discovery-srv-name.
    #[arg(long, env = "MUSTER_SRV_NAME", value_name = "S", value_parser = records::parse_srv_name)]
    pub srv_name: Option<String>,
    /// http: `_etcd-server._tcp` records; https: `_etcd-server-ssl._tcp`.
    #[arg(long, env = "MUSTER_SCHEME", value_enum, default_value = "http")]
    pub scheme: SchemeArg,
    /// Remove this host's A/AAAA records and its SRV records instead.
    #[arg(long)]
    pub deregister: bool,
}

/// `--register-*` of `plan`, `env` and `exec`: register this host before discovery. The
/// SRV names come from the command's own --domain, --srv-name and --scheme.
pub type RegisterFirst = TargetFlags<First>;

impl<S: Spelling> TargetFlags<S> {
    /// The configuration these flags give with the SRV names of `cluster`, or None
    /// without a server (`--register-server` left out).
    fn config(
        self,
        cluster: Option<String>,
        srv_name: Option<String>,
        scheme: Scheme,
        deregister: bool,
    ) -> Result<Option<RegisterConfig>, Error> {
        let Some(server) = self.server else {
            return Ok(None);
        };
        let need = |flag: &str| Error::Usage(format!("--register-server needs {flag}"));
        Ok(Some(RegisterConfig {
            server,
            key: self.key.ok_or_else(|| need("--register-key"))?,
            key_name: self.key_name,
            zone: self.zone.ok_or_else(|| need("--register-zone"))?,
            hostname: self.hostname,
            address: self.address,
            srv_port: self.srv_port,
            client_srv_port: self.client_srv_port,
            cluster,
            srv_name,
            scheme,
            ttl: self.ttl,
            timeout: self.timeout,
            deregister,
        }))
    }
}

impl RegisterArgs {
    /// The checked configuration (clap made server, key and zone required).
    pub fn config(self) -> Result<RegisterConfig, Error> {
        let (cluster, srv_name, scheme) = (self.cluster, self.srv_name, self.scheme.into());
        self.target
            .config(cluster, srv_name, scheme, self.deregister)?
            .ok_or_else(|| Error::Usage("register needs --server".into()))
    }
}

/// The `--register-*` flags with the start command's --domain, --srv-name and --scheme:
/// the registration to make first, if `--register-server` is given.
pub fn first(
    flags: RegisterFirst,
    domain: Option<&str>,
    srv_name: Option<&str>,
    scheme: Option<SchemeArg>,
) -> Result<Option<RegisterConfig>, Error> {
    let wants_srv = flags.srv_port.is_some() || flags.client_srv_port.is_some();
    if flags.server.is_some() && wants_srv && domain.is_none() {
        return Err(Error::Usage(
            "--register-srv-port and --register-client-srv-port need --domain (or MUSTER_DOMAIN): the SRV names are under it".into(),
        ));
    }
    flags.config(
        domain.map(str::to_string),
        srv_name.map(str::to_string),
        scheme.unwrap_or(SchemeArg::Http).into(),
        false,
    )
}
