//! Configuration: command-line flags over a strict TOML file over built-in defaults.
//!
//! The file format is documented by `deploy/musterd.toml`, a template with every default
//! commented out (also printed by `musterd config-template`). Unknown keys are an error so
//! that a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::query::answer::AnswerConfig;

pub mod transfer;
pub mod update;
use crate::proto::name::Name;

/// The commented template shipped as `deploy/musterd.toml`.
pub const TEMPLATE: &str = include_str!("../../../deploy/musterd.toml");

/// Where the built-in example zone is served when no zone is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5353";

/// One zone to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    pub origin: Name,
    /// `None` for the built-in example zone.
    pub file: Option<PathBuf>,
    /// Configured cluster sizes (etcd server SRV owner name, size): completeness gates
    /// that win over `muster-size` TXT records ([`crate::zone::gate`]).
    pub sizes: Vec<(Name, u32)>,
}

/// The resolved server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Vec<SocketAddr>,
    pub zones: Vec<ZoneSpec>,
    pub answer: AnswerConfig,
    /// UDP sockets (and threads) per listen address; 0 = one per CPU.
    pub udp_workers: usize,
    pub tcp_max_clients: usize,
    pub tcp_idle_timeout: Duration,
    pub tcp_io_timeout: Duration,
    /// How often zone files are checked for changes; zero disables watching.
    pub watch_interval: Duration,
    /// How long a busy UDP worker waits for more packets after a small batch; zero
    /// disables it (see [`crate::net::listen::udp_worker`]).
    pub udp_coalesce: Duration,
    pub query_log: bool,
    pub metrics_listen: Option<SocketAddr>,
    /// `musterd ctl`'s socket ([`crate::ctl`]); `None` when there is none.
    pub control_socket: Option<PathBuf>,
    /// The etcd discovery service; `None` when it is off.
    pub discovery: Option<crate::discovery::DiscoveryConfig>,
    /// TSIG keys, update policies, journals ([`crate::dynamic`]).
    pub updates: update::UpdateConfig,
    /// Zone transfer, NOTIFY and secondary zones ([`crate::transfer::xfr`]).
    pub transfer: transfer::TransferConfig,
}

/// Where `musterd ctl`'s socket is unless configured: the unit's
/// `RuntimeDirectory=musterd`.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/musterd/control";

/// The control socket: as configured (an empty path turns it off), else the unit's
/// runtime directory's when that exists (`RuntimeDirectory=musterd`), else none.
fn control_socket(configured: Option<PathBuf>) -> Option<PathBuf> {
    match configured {
        Some(p) if p.as_os_str().is_empty() => None,
        Some(p) => Some(p),
        None => {
            let default = PathBuf::from(DEFAULT_CONTROL_SOCKET);
            default
                .parent()
                .is_some_and(Path::is_dir)
                .then_some(default)
        }
    }
}

/// Errors reading or resolving the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "--zone {0:?}: expected ORIGIN=PATH, e.g. --zone example.test.=zones/example.test.zone"
    )]
    ZoneSyntax(String),
    #[error("zone origin {origin:?}: {source}")]
    Origin {
        origin: String,
        source: crate::proto::name::NameError,
    },
    #[error("{key} = {value:?}: {message}")]
    Value {
        key: &'static str,
        value: String,
        message: String,
    },
    #[error("zone {0} is configured twice; each origin may appear once")]
    DuplicateZone(Name),
    #[error(transparent)]
    Discovery(#[from] crate::discovery::ConfigError),
    #[error(transparent)]
    Update(#[from] update::ConfigError),
    #[error(transparent)]
    Transfer(#[from] transfer::ConfigError),
}

/// The TOML file, every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<Vec<SocketAddr>>,
    pub zone: Option<Vec<FileZone>>,
    pub max_udp_payload: Option<u16>,
    pub cname_chain_limit: Option<usize>,
    pub max_additional_targets: Option<usize>,
    pub version: Option<String>,
    pub identity: Option<String>,
    pub udp_workers: Option<usize>,
    pub tcp_max_clients: Option<usize>,
    pub tcp_idle_timeout: Option<String>,
    pub tcp_io_timeout: Option<String>,
    pub watch_interval: Option<String>,
    pub udp_coalesce: Option<String>,
    pub query_log: Option<bool>,
    pub metrics_listen: Option<SocketAddr>,
    pub control_socket: Option<PathBuf>,
    pub discovery: Option<crate::discovery::FileSection>,
    pub transfer: Option<transfer::FileTransfer>,
    pub state_dir: Option<PathBuf>,
    pub key_files: Option<Vec<PathBuf>>,
    pub key: Option<Vec<update::FileKey>>,
    pub update: Option<update::FileUpdate>,
}

/// A `[[zone]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileZone {
    pub origin: String,
    pub file: PathBuf,
    /// `[zone.sizes]`: SRV owner name (relative to the origin unless it ends in a dot)
    /// = number of members; see docs/completeness-gate.md.
    #[serde(default)]
    pub sizes: std::collections::BTreeMap<String, u32>,
    /// Keys that may change anything in the zone (dynamic update).
    pub allow_update: Option<Vec<String>>,
    /// `[[zone.update_policy]]`: finer-grained grants.
    pub update_policy: Option<Vec<update::FileGrant>>,
}

/// Flag values that override the file (`None`/empty = not given).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Vec<SocketAddr>,
    pub zones: Vec<String>,
    pub max_udp_payload: Option<u16>,
    pub udp_workers: Option<usize>,
    pub query_log: bool,
    pub metrics_listen: Option<SocketAddr>,
    pub control_socket: Option<PathBuf>,
    pub watch_interval: Option<Duration>,
    pub version: Option<String>,
    pub discovery_listen: Option<SocketAddr>,
    pub discovery_state: Option<PathBuf>,
    /// `--allow-transfer`, `--notify`, `--secondary`, added to the file's `[transfer]`.
    pub transfer: transfer::TransferFlags,
    /// `--key-file`, added to the file's `key_files`.
    pub key_files: Vec<PathBuf>,
    /// `--allow-update ZONE=KEY[,KEY]`, added to the file's `allow_update`.
    pub allow_update: Vec<String>,
    pub state_dir: Option<PathBuf>,
}

fn duration(key: &'static str, v: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v).map_err(|e| ConfigError::Value {
        key,
        value: v.into(),
        message: format!("{e} (write e.g. \"10s\" or \"500ms\")"),
    })
}

fn origin(text: &str) -> Result<Name, ConfigError> {
    // Origins are absolute whether or not the trailing dot was written.
    Name::parse_absolute(text).map_err(|source| ConfigError::Origin {
        origin: text.into(),
        source,
    })
}

/// The `[zone.sizes]` of zone `origin`: each name must be an etcd server SRV owner name
/// (`_etcd-server[-ssl][-NAME]._tcp`) in the zone, each size at least 1.
fn zone_sizes(
    origin: &Name,
    sizes: &std::collections::BTreeMap<String, u32>,
) -> Result<Vec<(Name, u32)>, ConfigError> {
    let mut out = Vec::new();
    for (owner, &n) in sizes {
        let bad = |message: String| ConfigError::Value {
            key: "zone.sizes",
            value: format!("{owner} = {n}"),
            message,
        };
        let name = Name::parse(owner, Some(origin)).map_err(|e| bad(e.to_string()))?;
        if !name.is_subdomain_of(&origin.to_lowercase()) {
            return Err(bad(format!("{name} is outside the zone {origin}")));
        }
        if !crate::zone::gate::is_server_owner(name.as_wire()) {
            return Err(bad(
                "not an etcd server SRV owner name (write e.g. \"_etcd-server-ssl._tcp\")".into(),
            ));
        }
        if n == 0 {
            return Err(bad("a cluster has at least 1 member".into()));
        }
        out.push((name, n));
    }
    Ok(out)
}

/// Parses `ORIGIN=PATH` from `--zone`.
pub fn parse_zone_flag(flag: &str) -> Result<ZoneSpec, ConfigError> {
    let (o, p) = flag
        .split_once('=')
        .filter(|(o, p)| !o.is_empty() && !p.is_empty())
        .ok_or_else(|| ConfigError::ZoneSyntax(flag.into()))?;
    Ok(ZoneSpec {
        origin: origin(o)?,
        file: Some(PathBuf::from(p)),
        sizes: Vec::new(),
    })
}

/// Reads a config file.
pub fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse_file(&text, path)
}

/// Parses config text; `path` is for messages.
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string().trim_end().replace('\n', "\n  "),
    })
}

/// Combines defaults, the file (whose relative zone paths are taken from its directory)
/// and the flags.
pub fn resolve(
    mut file: FileConfig,
    file_dir: Option<&Path>,
    flags: Overrides,
) -> Result<ServerConfig, ConfigError> {
    let mut update_sources = update::Sources::default();
    let mut zones = zone_specs(
        file.zone.take(),
        file_dir,
        &flags.zones,
        &mut update_sources,
    )?;
    let file_zones: Vec<Name> = zones.iter().map(|z| z.origin.to_lowercase()).collect();
    let transfer = transfer::resolve(file.transfer.take(), &flags.transfer, &file_zones)?;
    let discovery = crate::discovery::resolve(
        file.discovery.take(),
        file_dir,
        flags.discovery_listen,
        flags.discovery_state,
    )?;
    // The built-in example zone only when nothing at all is configured: a server that
    // copies zones from a primary, or runs the discovery service, serves no example.
    if zones.is_empty() && transfer.secondaries.is_empty() && discovery.is_none() {
        zones.push(ZoneSpec {
            origin: Name::parse(crate::example::ORIGIN, None).expect("constant is valid"),
            file: None,
            sizes: Vec::new(),
        });
    }
    // DNS is served when asked for (an address, a zone, a secondary); the discovery
    // service alone binds no DNS port.
    let explicit_listen = if !flags.listen.is_empty() {
        Some(flags.listen)
    } else {
        file.listen.take()
    };
    let listen = match explicit_listen {
        Some(l) => l,
        None if zones.is_empty() && transfer.secondaries.is_empty() => Vec::new(),
        None => vec![DEFAULT_LISTEN.parse().expect("constant is valid")],
    };
    let answer = answer_config(&mut file, flags.max_udp_payload, flags.version)?;
    let timers = Timers::resolve(&file, flags.watch_interval)?;
    update_sources.state_dir = flags.state_dir.or(file.state_dir);
    update_sources.key_files = file.key_files.unwrap_or_default();
    update_sources.key_files.extend(flags.key_files);
    update_sources.keys = file.key.unwrap_or_default();
    update_sources.update = file.update.unwrap_or_default();
    for a in &flags.allow_update {
        update_sources.allow.push(update::parse_allow_flag(a)?);
    }
    let updates = update::resolve(update_sources, &zones, file_dir)?;
    transfer.check_keys(&updates.keys)?;
    Ok(ServerConfig {
        listen,
        zones,
        answer,
        udp_workers: flags.udp_workers.or(file.udp_workers).unwrap_or(0),
        tcp_max_clients: file.tcp_max_clients.unwrap_or(1000),
        tcp_idle_timeout: timers.tcp_idle_timeout,
        tcp_io_timeout: timers.tcp_io_timeout,
        watch_interval: timers.watch_interval,
        udp_coalesce: timers.udp_coalesce,
        query_log: flags.query_log || file.query_log.unwrap_or(false),
        metrics_listen: flags.metrics_listen.or(file.metrics_listen),
        control_socket: control_socket(flags.control_socket.or(file.control_socket)),
        discovery,
        updates,
        transfer,
    })
}

/// The zones to serve: `--zone` flags when given, else the file's `[[zone]]` tables
/// (whose update settings go to `update_sources`); each origin once.
fn zone_specs(
    file_zones: Option<Vec<FileZone>>,
    file_dir: Option<&Path>,
    flag_zones: &[String],
    update_sources: &mut update::Sources,
) -> Result<Vec<ZoneSpec>, ConfigError> {
    let mut zones = Vec::new();
    if flag_zones.is_empty() {
        for z in file_zones.unwrap_or_default() {
            let path = match file_dir {
                Some(dir) if z.file.is_relative() => dir.join(&z.file),
                _ => z.file,
            };
            let o = origin(&z.origin)?;
            let sizes = zone_sizes(&o, &z.sizes)?;
            if let Some(keys) = z.allow_update {
                update_sources.allow.push((z.origin.clone(), keys));
            }
            if let Some(grants) = z.update_policy {
                update_sources.grants.push((z.origin.clone(), grants));
            }
            zones.push(ZoneSpec {
                origin: o,
                file: Some(path),
                sizes,
            });
        }
    } else {
        for z in flag_zones {
            zones.push(parse_zone_flag(z)?);
        }
    }
    for (i, z) in zones.iter().enumerate() {
        if zones[..i]
            .iter()
            .any(|o| o.origin.eq_ignore_case(&z.origin))
        {
            return Err(ConfigError::DuplicateZone(z.origin.clone()));
        }
    }
    Ok(zones)
}

/// How answers are built: the file's settings, `--max-udp-payload` and `--version` over
/// them, defaults for the rest.
fn answer_config(
    file: &mut FileConfig,
    max_udp_payload_flag: Option<u16>,
    version_flag: Option<String>,
) -> Result<AnswerConfig, ConfigError> {
    let defaults = AnswerConfig::default();
    let max_udp_payload = max_udp_payload_flag
        .or(file.max_udp_payload)
        .unwrap_or(defaults.max_udp_payload);
    if max_udp_payload < 512 {
        return Err(ConfigError::Value {
            key: "max_udp_payload",
            value: max_udp_payload.to_string(),
            message: "must be at least 512 (RFC 1035)".into(),
        });
    }
    Ok(AnswerConfig {
        max_udp_payload,
        cname_chain_limit: file.cname_chain_limit.unwrap_or(defaults.cname_chain_limit),
        max_additional_targets: file
            .max_additional_targets
            .unwrap_or(defaults.max_additional_targets),
        version: version_flag
            .or(file.version.take())
            .filter(|v| !v.is_empty()),
        identity: file.identity.take().filter(|v| !v.is_empty()),
    })
}

/// The server's timeouts and intervals.
struct Timers {
    tcp_idle_timeout: Duration,
    tcp_io_timeout: Duration,
    watch_interval: Duration,
    udp_coalesce: Duration,
}

impl Timers {
    /// The file's values (`--watch-interval` over its `watch_interval`), or the defaults.
    fn resolve(file: &FileConfig, watch_flag: Option<Duration>) -> Result<Timers, ConfigError> {
        let tcp_idle_timeout = match &file.tcp_idle_timeout {
            Some(v) => duration("tcp_idle_timeout", v)?,
            None => Duration::from_secs(10),
        };
        let tcp_io_timeout = match &file.tcp_io_timeout {
            Some(v) => duration("tcp_io_timeout", v)?,
            None => Duration::from_millis(1000),
        };
        let watch_interval = match (watch_flag, &file.watch_interval) {
            (Some(d), _) => d,
            (None, Some(v)) => duration("watch_interval", v)?,
            (None, None) => Duration::from_secs(2),
        };
        let udp_coalesce = match &file.udp_coalesce {
            Some(v) => duration("udp_coalesce", v)?,
            None => Duration::from_micros(80),
        };
        if udp_coalesce > Duration::from_millis(1) {
            return Err(ConfigError::Value {
                key: "udp_coalesce",
                value: file.udp_coalesce.clone().unwrap_or_default(),
                message: "at most 1ms: it delays answers under load (\"80us\" is the default, \"0s\" turns it off)".into(),
            });
        }
        Ok(Timers {
            tcp_idle_timeout,
            tcp_io_timeout,
            watch_interval,
            udp_coalesce,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_and_matches_defaults() {
        let f = parse_file(TEMPLATE, Path::new("musterd.toml")).unwrap();
        let c = resolve(f, None, Overrides::default()).unwrap();
        assert_eq!(
            c.listen,
            vec![DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.answer.max_udp_payload, 1232);
        assert_eq!(c.tcp_idle_timeout, Duration::from_secs(10));
        assert_eq!(c.zones.len(), 1);
        assert!(c.zones[0].file.is_none());
        // Uncommenting every `# key = value` line must give the same defaults.
        let uncommented: String = TEMPLATE
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with("[[")
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let f = parse_file(&uncommented, Path::new("t")).unwrap();
        let u = resolve(f, None, Overrides::default()).unwrap();
        assert_eq!(u.answer.max_udp_payload, c.answer.max_udp_payload);
        assert_eq!(u.tcp_max_clients, c.tcp_max_clients);
        assert_eq!(u.tcp_io_timeout, c.tcp_io_timeout);
        assert_eq!(u.watch_interval, c.watch_interval);
        assert_eq!(u.udp_coalesce, c.udp_coalesce);
        assert_eq!(u.listen, c.listen);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse_file(
            "listen = [\"127.0.0.1:53\"]\nlisten_port = 5\n",
            Path::new("x.toml"),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("x.toml") && msg.contains("listen_port"),
            "{msg}"
        );
    }

    #[test]
    fn udp_coalesce_is_bounded() {
        let cfg = |v: &str| {
            let f = parse_file(&format!("udp_coalesce = \"{v}\"\n"), Path::new("x.toml")).unwrap();
            resolve(f, None, Overrides::default())
        };
        assert_eq!(cfg("0s").unwrap().udp_coalesce, Duration::ZERO);
        assert_eq!(cfg("50us").unwrap().udp_coalesce, Duration::from_micros(50));
        let msg = cfg("5ms").unwrap_err().to_string();
        assert!(
            msg.contains("udp_coalesce") && msg.contains("at most 1ms"),
            "{msg}"
        );
    }

    #[test]
    fn zone_sizes_are_read_and_checked() {
        let cfg = |sizes: &str| {
            let text = format!(
                "[[zone]]\norigin = \"d.test\"\nfile = \"d.zone\"\n[zone.sizes]\n{sizes}\n"
            );
            resolve(
                parse_file(&text, Path::new("x.toml"))?,
                None,
                Overrides::default(),
            )
        };
        let c =
            cfg("\"_etcd-server-ssl._tcp\" = 3\n\"_etcd-server-blue._tcp.d.test.\" = 5").unwrap();
        let sizes: Vec<(String, u32)> = c.zones[0]
            .sizes
            .iter()
            .map(|(n, s)| (n.to_string(), *s))
            .collect();
        assert_eq!(
            sizes,
            [
                ("_etcd-server-blue._tcp.d.test.".to_string(), 5),
                ("_etcd-server-ssl._tcp.d.test.".to_string(), 3)
            ]
        );
        for (bad, why) in [
            ("\"_etcd-client._tcp\" = 3", "not an etcd server SRV owner"),
            ("\"_etcd-server._tcp\" = 0", "at least 1 member"),
            ("\"_etcd-server._tcp.other.\" = 3", "outside the zone"),
        ] {
            let msg = cfg(bad).unwrap_err().to_string();
            assert!(msg.contains("zone.sizes") && msg.contains(why), "{msg}");
        }
    }

    #[test]
    fn flags_override_file() {
        let f = parse_file(
            "listen = [\"127.0.0.1:53\"]\n[[zone]]\norigin = \"a.test\"\nfile = \"a.zone\"\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let c = resolve(
            f,
            Some(Path::new("/etc/muster")),
            Overrides {
                listen: vec!["127.0.0.2:53".parse().unwrap()],
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            c.listen,
            vec!["127.0.0.2:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(c.zones[0].origin.to_string(), "a.test.");
        assert_eq!(
            c.zones[0].file.as_deref(),
            Some(Path::new("/etc/muster/a.zone"))
        );
        assert!(matches!(
            parse_zone_flag("nonsense"),
            Err(ConfigError::ZoneSyntax(_))
        ));
    }
}
