//! The etcd discovery service: `etcd --discovery <token URL>` served by musterd.
//!
//! etcd bootstraps from a discovery token in three steps (etcd's
//! `Documentation/dev-internal/discovery_protocol.md`, release 3.4, and the `v2discovery`
//! client that etcd 3.4 and 3.5 run): it reads `<token>/_config/size`, registers itself
//! with a create-only PUT of `<token>/<member id>`, then lists `<token>` and waits
//! (`?wait=true&recursive=true&waitIndex=N`) until `size` members are registered; the
//! first `size` by creation index form the cluster, and a member ranked after them
//! concludes "cluster is full" and becomes a proxy or exits.
//!
//! - [`protocol`]: the v2 keys subset, pure: requests to operations, answers, changes.
//! - [`store`]: the durable state (redb), so tokens and indexes survive a restart.
//! - [`http`]: the listener (HTTP/1.1, optionally TLS), waits, limits and timeouts.
//!
//! Both URL styles of etcd's documentation work: `http://host:port/<token>`
//! (discovery.etcd.io's form) and `http://host:port/v2/keys/_etcd/registry/<token>` (a
//! self-hosted etcd's form); `GET /new?size=N` makes a token.
//!
//! Limitations: no DNS view of a token yet; registrations cannot be removed one by one;
//! tokens live in one musterd (no replication).

pub mod http;
pub mod protocol;
pub mod store;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

pub use http::{start, Handle, StartError};
pub use protocol::Limits;

/// Default lifetime of a token: a week, as the issue asks; bootstraps take minutes, and
/// a token that outlives its bootstrap is only a target for guessing.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The `[discovery]` table of the config file; every key optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection {
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub token_ttl: Option<String>,
    pub max_tokens: Option<usize>,
    pub max_members: Option<u32>,
    pub max_waits: Option<usize>,
    pub max_waits_per_token: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_body: Option<usize>,
    pub wait_timeout: Option<String>,
    pub request_timeout: Option<String>,
}

/// The certificate chain and key for HTTPS (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The resolved discovery configuration (present only when the service is on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub listen: SocketAddr,
    /// Holds `discovery.redb`.
    pub state_dir: PathBuf,
    /// Base of the token URLs that `/new` hands out (e.g. `https://discovery.example.net`);
    /// by default the scheme and Host header of the request.
    pub public_url: Option<String>,
    /// A file holding the bearer secret that creating and deleting tokens needs.
    pub secret_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub token_ttl: Duration,
    pub limits: Limits,
    /// Waiting requests at once, over all tokens.
    pub max_waits: usize,
    /// Waiting requests at once on one token, so one token cannot take every slot.
    pub max_waits_per_token: usize,
    /// Open connections at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Largest request body.
    pub max_body: usize,
    /// A wait that sees no change this long is ended with an empty body, which etcd's
    /// client answers by asking again; it bounds how long any request holds a slot.
    pub wait_timeout: Duration,
    /// Time allowed for a request's head, its body, and a TLS handshake.
    pub request_timeout: Duration,
}

/// Why the discovery configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("discovery is on (listen = {listen}) but has no state directory: set discovery.state_dir in the config or pass --discovery-state DIR")]
    NoStateDir { listen: SocketAddr },
    #[error("discovery.{key} = {value:?}: {message}")]
    Value {
        key: &'static str,
        value: String,
        message: String,
    },
    #[error("discovery.tls_cert and discovery.tls_key must be given together")]
    TlsHalf,
}

fn duration(key: &'static str, v: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(v).map_err(|e| ConfigError::Value {
        key,
        value: v.into(),
        message: format!("{e} (write e.g. \"7d\" or \"5m\")"),
    })?;
    if d.is_zero() {
        return Err(ConfigError::Value {
            key,
            value: v.into(),
            message: "must be longer than zero".into(),
        });
    }
    Ok(d)
}

fn at_least<T: PartialOrd + Copy + std::fmt::Display>(
    key: &'static str,
    v: Option<T>,
    default: T,
    min: T,
) -> Result<T, ConfigError> {
    let v = v.unwrap_or(default);
    if v < min {
        return Err(ConfigError::Value {
            key,
            value: v.to_string(),
            message: format!("must be at least {min}"),
        });
    }
    Ok(v)
}

/// Combines the `[discovery]` table (relative paths taken from `file_dir`) with the
/// `--discovery-listen` and `--discovery-state` flags. `None`: the service is off (no
/// listen address anywhere).
pub fn resolve(
    file: Option<FileSection>,
    file_dir: Option<&Path>,
    listen_flag: Option<SocketAddr>,
    state_flag: Option<PathBuf>,
) -> Result<Option<DiscoveryConfig>, ConfigError> {
    let file = file.unwrap_or_default();
    let Some(listen) = listen_flag.or(file.listen) else {
        return Ok(None);
    };
    let rel = |p: PathBuf| match file_dir {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    };
    let state_dir = match state_flag {
        Some(p) => p,
        None => file
            .state_dir
            .map(rel)
            .ok_or(ConfigError::NoStateDir { listen })?,
    };
    let public_url = match file.public_url {
        None => None,
        Some(u) => {
            let trimmed = u.trim_end_matches('/');
            let ok = ["http://", "https://"].iter().any(|s| {
                trimmed
                    .strip_prefix(s)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#', ' ']))
            });
            if !ok {
                return Err(ConfigError::Value {
                    key: "public_url",
                    value: u,
                    message: "expected http://host[:port][/path] or https://...".into(),
                });
            }
            Some(trimmed.to_owned())
        }
    };
    let tls = match (file.tls_cert, file.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: rel(cert),
            key: rel(key),
        }),
        (None, None) => None,
        _ => return Err(ConfigError::TlsHalf),
    };
    let max_members = at_least("max_members", file.max_members, 64, 1)?;
    Ok(Some(DiscoveryConfig {
        listen,
        state_dir,
        public_url,
        secret_file: file.secret_file.map(rel),
        tls,
        token_ttl: match file.token_ttl {
            Some(v) => duration("token_ttl", &v)?,
            None => DEFAULT_TOKEN_TTL,
        },
        limits: Limits {
            max_tokens: at_least("max_tokens", file.max_tokens, 10_000, 1)?,
            max_members,
        },
        max_waits: at_least("max_waits", file.max_waits, 768, 1)?,
        max_waits_per_token: at_least("max_waits_per_token", file.max_waits_per_token, 128, 1)?,
        max_connections: at_least("max_connections", file.max_connections, 1024, 1)?,
        // A registration body is `value=<url-encoded member value>`: well under 16 KiB.
        max_body: at_least("max_body", file.max_body, 16 * 1024, 256)?,
        wait_timeout: match file.wait_timeout {
            Some(v) => duration("wait_timeout", &v)?,
            None => Duration::from_secs(300),
        },
        request_timeout: match file.request_timeout {
            Some(v) => duration("request_timeout", &v)?,
            None => Duration::from_secs(10),
        },
    }))
}

/// The discovery service's counters and gauges, for the Prometheus output.
#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub tokens_created: AtomicU64,
    pub tokens_deleted: AtomicU64,
    pub tokens_expired: AtomicU64,
    /// Registrations within a token's size: members of the cluster.
    pub registrations: AtomicU64,
    /// Registrations after the cluster was full: accepted past the size (etcd then
    /// concludes "cluster is full") or refused at the member limit.
    pub full: AtomicU64,
    /// Registrations refused as duplicate member IDs or names.
    pub duplicates: AtomicU64,
    /// Malformed or unsupported requests, unknown tokens and keys.
    pub bad_requests: AtomicU64,
    /// Requests refused by a limit (tokens, waits, connections, body size).
    pub limit_refusals: AtomicU64,
    /// Token creations and deletions without the right secret.
    pub unauthorized: AtomicU64,
    /// Changes the store could not make durable.
    pub store_errors: AtomicU64,
    /// Gauge: waiting requests now.
    pub active_waits: AtomicU64,
    /// Gauge: open connections now.
    pub connections: AtomicU64,
    /// Gauge: tokens held now.
    pub tokens: AtomicU64,
}

impl crate::stats::Family for Metrics {
    fn render(&self, out: &mut String) {
        Metrics::render(self, out);
    }
}

impl Metrics {
    /// Appends the Prometheus text exposition (`musterd_discovery_*`).
    pub fn render(&self, out: &mut String) {
        let mut put = |name: &str, kind: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP musterd_discovery_{name} {help}");
            let _ = writeln!(out, "# TYPE musterd_discovery_{name} {kind}");
            let _ = writeln!(
                out,
                "musterd_discovery_{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        put(
            "requests_total",
            "counter",
            "HTTP requests to the discovery service.",
            &self.requests,
        );
        put(
            "tokens_created_total",
            "counter",
            "Discovery tokens created.",
            &self.tokens_created,
        );
        put(
            "tokens_deleted_total",
            "counter",
            "Discovery tokens deleted by request.",
            &self.tokens_deleted,
        );
        put(
            "tokens_expired_total",
            "counter",
            "Discovery tokens removed because they expired.",
            &self.tokens_expired,
        );
        put(
            "registrations_total",
            "counter",
            "Members registered within their token's cluster size.",
            &self.registrations,
        );
        put(
            "full_total",
            "counter",
            "Registrations after the token's cluster was full.",
            &self.full,
        );
        put(
            "duplicates_total",
            "counter",
            "Registrations refused as a duplicate member ID or name.",
            &self.duplicates,
        );
        put(
            "bad_requests_total",
            "counter",
            "Malformed or unsupported requests, unknown tokens or keys.",
            &self.bad_requests,
        );
        put(
            "limit_refusals_total",
            "counter",
            "Requests refused by a limit (tokens, waits, connections, body size).",
            &self.limit_refusals,
        );
        put(
            "unauthorized_total",
            "counter",
            "Token creations or deletions without the right bearer secret.",
            &self.unauthorized,
        );
        put(
            "store_errors_total",
            "counter",
            "Changes that could not be stored durably (answered 500).",
            &self.store_errors,
        );
        put(
            "active_waits",
            "gauge",
            "Requests waiting for a registration now.",
            &self.active_waits,
        );
        put(
            "connections",
            "gauge",
            "Open discovery connections now.",
            &self.connections,
        );
        put(
            "tokens",
            "gauge",
            "Discovery tokens held now.",
            &self.tokens,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_text: &str) -> FileSection {
        #[derive(Deserialize)]
        struct Wrap {
            discovery: FileSection,
        }
        toml::from_str::<Wrap>(toml_text).unwrap().discovery
    }

    #[test]
    fn off_without_a_listen_address() {
        assert_eq!(resolve(None, None, None, None).unwrap(), None);
        let s = section("[discovery]\nstate_dir = \"/x\"\n");
        assert_eq!(resolve(Some(s), None, None, None).unwrap(), None);
    }

    #[test]
    fn flags_file_and_defaults() {
        let s = section(
            "[discovery]\nlisten = \"127.0.0.1:2379\"\nstate_dir = \"state\"\ntoken_ttl = \"1h\"\n\
             public_url = \"https://d.example/\"\nsecret_file = \"secret\"\n",
        );
        let c = resolve(Some(s.clone()), Some(Path::new("/etc/muster")), None, None)
            .unwrap()
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2379".parse().unwrap());
        assert_eq!(c.state_dir, PathBuf::from("/etc/muster/state"));
        assert_eq!(c.secret_file, Some(PathBuf::from("/etc/muster/secret")));
        assert_eq!(c.public_url.as_deref(), Some("https://d.example"));
        assert_eq!(c.token_ttl, Duration::from_secs(3600));
        assert_eq!(c.limits.max_members, 64);
        let c = resolve(
            Some(s),
            None,
            Some("127.0.0.1:1".parse().unwrap()),
            Some("/var/lib/x".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/x"));
        let c = resolve(
            None,
            None,
            Some("127.0.0.1:1".parse().unwrap()),
            Some("/s".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.token_ttl, DEFAULT_TOKEN_TTL);
    }

    #[test]
    fn bad_values_are_named() {
        let listen = Some("127.0.0.1:1".parse().unwrap());
        let err = resolve(None, None, listen, None).unwrap_err().to_string();
        assert!(err.contains("--discovery-state"), "{err}");
        for (text, key) in [
            ("token_ttl = \"soon\"", "token_ttl"),
            ("token_ttl = \"0s\"", "token_ttl"),
            ("max_members = 0", "max_members"),
            ("public_url = \"ftp://x\"", "public_url"),
            ("tls_cert = \"c.pem\"", "tls_cert"),
        ] {
            let s = section(&format!("[discovery]\nstate_dir = \"/s\"\n{text}\n"));
            let err = resolve(Some(s), None, listen, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn the_template_shows_the_real_defaults() {
        // Uncommenting the template's discovery lines must give what resolve gives.
        let text: String = crate::config::TEMPLATE
            .lines()
            .filter_map(|l| l.strip_prefix("# discovery."))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            text.contains("wait_timeout"),
            "no discovery lines in the template"
        );
        let listen = Some("127.0.0.1:1".parse().unwrap());
        let shown = section(&format!("[discovery]\n{text}"));
        let shown = resolve(Some(shown), None, listen, None).unwrap().unwrap();
        let default = resolve(None, None, listen, Some("/var/lib/muster/discovery".into()))
            .unwrap()
            .unwrap();
        assert_eq!(shown.token_ttl, default.token_ttl);
        assert_eq!(shown.limits, default.limits);
        assert_eq!(
            (
                shown.max_waits,
                shown.max_waits_per_token,
                shown.max_connections
            ),
            (
                default.max_waits,
                default.max_waits_per_token,
                default.max_connections
            )
        );
        assert_eq!(shown.max_body, default.max_body);
        assert_eq!(shown.wait_timeout, default.wait_timeout);
        assert_eq!(shown.request_timeout, default.request_timeout);
        assert_eq!(shown.state_dir, default.state_dir);
    }

    #[test]
    fn metrics_render_every_series() {
        let m = Metrics::default();
        m.registrations.store(3, Ordering::Relaxed);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("musterd_discovery_registrations_total 3\n"));
        assert!(out.contains("# TYPE musterd_discovery_active_waits gauge\n"));
        assert_eq!(out.matches("# TYPE").count(), 14);
    }
}
