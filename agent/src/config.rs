//! The typed configuration of the start commands (`plan`, `env`, `exec`, and the records
//! part of `restore`): what the command-line layer builds once, checked,
//! and what the domain code reads. Nothing here knows about flags or clap; messages name
//! the flags only where an operator must add one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::{Identity, MemberName, Overrides, PlanOptions, Scheme, Service};
use crate::etcd::Access;
use crate::register::RegisterConfig;
use crate::urls::EtcdUrl;
use crate::Error;

/// Where the data dir came from: our flag (then passed to etcd) or `ETCD_DATA_DIR`
/// (etcd reads it itself; passing the flag too would make etcd exit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    /// The directory, when known.
    pub path: Option<PathBuf>,
    /// True when it came from `--data-dir` / `MUSTER_DATA_DIR`.
    pub from_flag: bool,
}

impl DataDir {
    /// The data dir of `--data-dir`, else of a non-empty `ETCD_DATA_DIR`.
    pub fn resolve(flag: Option<PathBuf>) -> DataDir {
        match flag {
            Some(p) => DataDir {
                path: Some(p),
                from_flag: true,
            },
            None => DataDir {
                path: std::env::var_os("ETCD_DATA_DIR")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                from_flag: false,
            },
        }
    }

    /// The directory, or a usage error saying why the command needs it.
    pub fn require(&self, why: &str) -> Result<&Path, Error> {
        self.path.as_deref().ok_or_else(|| {
            Error::Usage(format!(
                "--data-dir (or MUSTER_DATA_DIR, or ETCD_DATA_DIR) is required: {why}"
            ))
        })
    }
}

/// Why `env` and `exec` need a data dir.
pub const START_NEEDS_DATA_DIR: &str = "it tells a restart (member/wal exists, no DNS \
     needed) from a bootstrap, and keeps the plan for restarts";

/// Why the commands that read the persisted plan need a data dir.
pub const PLAN_NEEDS_DATA_DIR: &str = "its muster-plan.json says which member this is";

/// Everything a start (`plan`, `env`, `exec`) and a restore read from the command line,
/// parsed and checked.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The discovery domain, absolute (`--domain`); needed to bootstrap, not to restart.
    pub domain: Option<String>,
    /// The service-name suffix (`--srv-name`).
    pub srv_name: Option<String>,
    /// Read only this SRV set (`--scheme`).
    pub scheme: Option<Scheme>,
    /// The DNS servers given (`--nameserver`); empty: the system's.
    pub nameservers: Vec<SocketAddr>,
    /// This member's name, if given.
    pub name: Option<MemberName>,
    /// This member's peer URL, if given.
    pub advertise_peer_url: Option<EtcdUrl>,
    /// etcd's data dir and where it came from.
    pub data_dir: DataDir,
    /// The number of members, if given.
    pub expect: Option<u16>,
    /// How long to wait for complete, stable records.
    pub timeout: Duration,
    /// `--initial-cluster-token`, if given.
    pub token: Option<String>,
    /// Client port of a member without an `_etcd-client*` record.
    pub client_port: u16,
    /// `--listen-peer-urls` given instead of the derived ones.
    pub listen_peer_urls: Vec<EtcdUrl>,
    /// `--listen-client-urls` given instead of the derived ones.
    pub listen_client_urls: Vec<EtcdUrl>,
    /// `--advertise-client-urls` given instead of the derived ones.
    pub advertise_client_urls: Vec<EtcdUrl>,
    /// Where `backup` writes snapshots, to name in a repair message.
    pub backups: Option<PathBuf>,
    /// TLS and authentication for etcd's client API.
    pub access: Access,
    /// The same access as command-line arguments, for the promoter `exec` leaves behind
    /// (the password passes through the environment, never argv).
    pub access_args: Vec<String>,
    /// Register this host in DNS before discovery.
    pub register: Option<RegisterConfig>,
}

impl AgentConfig {
    /// The discovery service; `needed_for` completes the message when `--domain` is
    /// missing ("to bootstrap", "to restore").
    pub fn service(&self, needed_for: &str) -> Result<Service, Error> {
        let domain = self.domain.as_deref().ok_or_else(|| {
            Error::Usage(format!(
                "--domain (or MUSTER_DOMAIN) is required {needed_for}"
            ))
        })?;
        Service::new(domain, self.srv_name.as_deref()).map_err(Error::Usage)
    }

    /// The DNS servers to ask: the given ones, else those of /etc/resolv.conf.
    pub fn servers(&self) -> Vec<SocketAddr> {
        if self.nameservers.is_empty() {
            crate::discover::system_nameservers()
        } else {
            self.nameservers.clone()
        }
    }

    /// How the records are judged for this host: scheme, size, identity and the
    /// overrides, with `token` (None: the default) and the data dir recorded in the plan.
    pub fn plan_options(&self, token: Option<String>, data_dir: Option<PathBuf>) -> PlanOptions {
        PlanOptions {
            scheme: self.scheme,
            expect: self.expect.map(usize::from),
            identity: Identity {
                name: self.name.clone(),
                advertise_peer_url: self.advertise_peer_url.clone(),
            },
            overrides: Overrides {
                token,
                default_client_port: self.client_port,
                data_dir,
                listen_peer_urls: self.listen_peer_urls.clone(),
                listen_client_urls: self.listen_client_urls.clone(),
                advertise_client_urls: self.advertise_client_urls.clone(),
            },
        }
    }

    /// What the command line says about a restart (name and URL overrides).
    pub fn restart_flags(&self) -> RestartFlags {
        RestartFlags {
            name: self.name.clone(),
            listen_peer_urls: self.listen_peer_urls.clone(),
            listen_client_urls: self.listen_client_urls.clone(),
            advertise_client_urls: self.advertise_client_urls.clone(),
        }
    }
}

/// What the command line says about a restart.
#[derive(Debug, Clone, Default)]
pub struct RestartFlags {
    /// `--name`.
    pub name: Option<MemberName>,
    /// `--listen-peer-url`.
    pub listen_peer_urls: Vec<EtcdUrl>,
    /// `--listen-client-url`.
    pub listen_client_urls: Vec<EtcdUrl>,
    /// `--advertise-client-url`.
    pub advertise_client_urls: Vec<EtcdUrl>,
}
