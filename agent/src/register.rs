//! `muster-agent register`: a host publishes its own addresses (and its etcd SRV records)
//! with one TSIG-signed RFC 2136 UPDATE, for networks where DHCP hands out the addresses.
//!
//! What one run does:
//! 1. reads what the server holds now with plain queries to the same server: the host's
//!    A and AAAA RRsets and, with `--cluster`, this host's records (target = its name) in
//!    the four `_etcd-{server,client}[-ssl]._tcp` sets;
//! 2. sends one signed UPDATE ([`build`]):
//!    - already as wanted: prerequisites only — the host name is no alias, the A and AAAA
//!      RRsets are exactly the wanted ones (RFC 2136 §2.4.2, value-dependent, or §2.4.3
//!      when a family has no address) — and no update section. Nothing can change, on any
//!      server, and the key and the reachability of the server are still proven. If the
//!      records moved between the read and the update (NXRRSET/YXRRSET), read again.
//!    - otherwise: prerequisite "no CNAME at the host name" (an address added next to a
//!      CNAME is silently ignored, RFC 2136 §3.4.2.2, and the host would believe it was
//!      registered), then delete the A and AAAA RRsets and add the current addresses (one
//!      atomic update: a reader sees the old set or the new one); for SRV, delete only this
//!      host's own records, by exact rdata (§2.5.4, the other members' records untouched):
//!      the stale ones read in step 1 (another port, priority, weight or scheme) and the
//!      wanted one, which is then added back (a TTL change takes effect, and a server that
//!      nets changes, as musterd and BIND do, sees no change when it was there already).
//! 3. checks the reply: its TSIG (hickory's verifier: MAC in constant time, time window,
//!    request MAC chained), then the rcode, each with what to check.
//!
//! When the read fails (a primary that answers only updates) the update is sent without
//! it: addresses still replaced, wanted SRV records still put in place, but a stale SRV
//! record of this host with another port stays and is named in a warning.
//!
//! `--deregister` deletes the A and AAAA RRsets and this host's SRV records.
//!
//! Message building and reply interpretation are pure ([`build`], [`interpret`]); the
//! transport is std sockets, UDP with TCP for truncated replies and large messages (RFC
//! 2136 §3.8 lets an update go over either).

use std::fmt;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};

use crate::cli::{parse_path, SchemeArg};
use crate::cluster::records::{self, Role, Service};
use crate::cluster::Scheme;
use crate::discover::parse_dns_server as parse_server;

/// The EDNS payload size offered (the DNS Flag Day 2020 value: no fragmentation).
const EDNS_PAYLOAD: u16 = 1232;
/// TSIG fudge: the clock difference the server may accept (BIND's and nsupdate's value).
const FUDGE: u16 = 300;
/// Reads and updates repeated when the records moved between the read and the update.
const ROUNDS: usize = 3;
/// Extended DNS Error option code (RFC 8914) and its "Not Ready" info code, which musterd
/// uses when a completeness gate withholds an SRV set.
const EDE_OPTION: u16 = 15;
const EDE_NOT_READY: u16 = 14;

/// `muster-agent register`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// The zone's primary server that takes signed updates (musterd with a `host` grant
    /// for this key, docs/dhcp.md), IP or IP:PORT (port 53 by default).
    #[arg(long, env = "MUSTER_REGISTER_SERVER", value_name = "IP[:PORT]", value_parser = parse_server)]
    pub server: SocketAddr,
    /// TSIG key file in BIND format, as `tsig-keygen NAME` prints it.
    #[arg(long, env = "MUSTER_REGISTER_KEY", value_name = "FILE", value_parser = parse_path)]
    pub key: PathBuf,
    /// The key to use when the file holds several.
    #[arg(long, env = "MUSTER_REGISTER_KEY_NAME", value_name = "NAME")]
    pub key_name: Option<String>,
    /// The zone to update (the host's name and the SRV names must be in it).
    #[arg(long, env = "MUSTER_REGISTER_ZONE", value_name = "ZONE", value_parser = records::parse_domain)]
    pub zone: String,
    /// This host's name: one label (then in the zone) or a name in the zone. Default:
    /// the first label of the kernel's host name.
    #[arg(long, env = "MUSTER_REGISTER_HOSTNAME", value_name = "NAME")]
    pub hostname: Option<String>,
    /// An address to publish (repeatable, or comma-separated in the variable); loopback
    /// is taken only from here. Default: this host's interface addresses except
    /// loopback, link-local and multicast ones.
    #[arg(
        long,
        env = "MUSTER_REGISTER_ADDRESS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub address: Vec<IpAddr>,
    /// Publish `_etcd-server._tcp.CLUSTER` (`-ssl` with --scheme https) with this host
    /// as target and this peer port.
    #[arg(long, env = "MUSTER_REGISTER_SRV_PORT", value_name = "PORT", requires = "cluster", value_parser = clap::value_parser!(u16).range(1..))]
    pub srv_port: Option<u16>,
    /// Publish `_etcd-client._tcp.CLUSTER` with this host as target and this client port.
    #[arg(long, env = "MUSTER_REGISTER_CLIENT_SRV_PORT", value_name = "PORT", requires = "cluster", value_parser = clap::value_parser!(u16).range(1..))]
    pub client_srv_port: Option<u16>,
    /// The etcd discovery domain of the SRV records (as `--domain`).
    #[arg(long, env = "MUSTER_DOMAIN", value_name = "DOMAIN", value_parser = records::parse_domain)]
    pub cluster: Option<String>,
    /// Service-name suffix, as etcd's --discovery-srv-name.
    #[arg(long, env = "MUSTER_SRV_NAME", value_name = "S", value_parser = records::parse_srv_name)]
    pub srv_name: Option<String>,
    /// http: `_etcd-server._tcp` records; https: `_etcd-server-ssl._tcp`.
    #[arg(long, env = "MUSTER_SCHEME", value_enum, default_value = "http")]
    pub scheme: SchemeArg,
    /// TTL of the published records (short: the addresses come from DHCP leases).
    #[arg(
        long,
        env = "MUSTER_REGISTER_TTL",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub ttl: u32,
    /// Give up on the server after this long.
    #[arg(long, env = "MUSTER_REGISTER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Remove this host's A/AAAA records and its SRV records instead.
    #[arg(long)]
    pub deregister: bool,
}

/// `--register-*` of `plan`, `env` and `exec`: register this host before discovery. The
/// SRV names come from the command's own --domain, --srv-name and --scheme.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Registering this host first (see `muster-agent register`)")]
pub struct RegisterFirst {
    /// Register first with a signed update to this server, IP or IP:PORT (`plan` and
    /// `exec --dry-run` only print the update they would send).
    #[arg(long, env = "MUSTER_REGISTER_SERVER", value_name = "IP[:PORT]", value_parser = parse_server, requires_all = ["register_key", "register_zone"])]
    pub register_server: Option<SocketAddr>,
    /// As `register --key`.
    #[arg(long, env = "MUSTER_REGISTER_KEY", value_name = "FILE", value_parser = parse_path)]
    pub register_key: Option<PathBuf>,
    /// As `register --key-name`.
    #[arg(long, env = "MUSTER_REGISTER_KEY_NAME", value_name = "NAME")]
    pub register_key_name: Option<String>,
    /// As `register --zone`.
    #[arg(long, env = "MUSTER_REGISTER_ZONE", value_name = "ZONE", value_parser = records::parse_domain)]
    pub register_zone: Option<String>,
    /// As `register --hostname`.
    #[arg(long, env = "MUSTER_REGISTER_HOSTNAME", value_name = "NAME")]
    pub register_hostname: Option<String>,
    /// As `register --address` (repeatable).
    #[arg(
        long,
        env = "MUSTER_REGISTER_ADDRESS",
        value_name = "IP",
        value_delimiter = ','
    )]
    pub register_address: Vec<IpAddr>,
    /// As `register --srv-port` (the SRV name from --domain).
    #[arg(long, env = "MUSTER_REGISTER_SRV_PORT", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub register_srv_port: Option<u16>,
    /// As `register --client-srv-port`.
    #[arg(long, env = "MUSTER_REGISTER_CLIENT_SRV_PORT", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub register_client_srv_port: Option<u16>,
    /// As `register --ttl`.
    #[arg(
        long,
        env = "MUSTER_REGISTER_TTL",
        value_name = "SECONDS",
        default_value_t = 60
    )]
    pub register_ttl: u32,
    /// As `register --timeout`.
    #[arg(long, env = "MUSTER_REGISTER_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub register_timeout: Duration,
}

impl RegisterFirst {
    /// The `register` arguments these flags stand for, or `None` without
    /// `--register-server`.
    pub fn args(
        &self,
        domain: Option<&str>,
        srv_name: Option<&str>,
        scheme: Option<SchemeArg>,
    ) -> Result<Option<RegisterArgs>, RegisterError> {
        let Some(server) = self.register_server else {
            return Ok(None);
        };
        let need = |flag: &str| RegisterError::Usage(format!("--register-server needs {flag}"));
        let wants_srv = self.register_srv_port.is_some() || self.register_client_srv_port.is_some();
        if wants_srv && domain.is_none() {
            return Err(RegisterError::Usage(
                "--register-srv-port and --register-client-srv-port need --domain (or MUSTER_DOMAIN): the SRV names are under it".into(),
            ));
        }
        Ok(Some(RegisterArgs {
            server,
            key: self
                .register_key
                .clone()
                .ok_or_else(|| need("--register-key"))?,
            key_name: self.register_key_name.clone(),
            zone: self
                .register_zone
                .clone()
                .ok_or_else(|| need("--register-zone"))?,
            hostname: self.register_hostname.clone(),
            address: self.register_address.clone(),
            srv_port: self.register_srv_port,
            client_srv_port: self.register_client_srv_port,
            cluster: domain.map(str::to_string),
            srv_name: srv_name.map(str::to_string),
            scheme: scheme.unwrap_or(SchemeArg::Http),
            ttl: self.register_ttl,
            timeout: self.register_timeout,
            deregister: false,
        }))
    }
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A flag or the key file is unusable (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The server did not answer, answered with an error, or its answer cannot be
    /// trusted (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl From<RegisterError> for crate::Error {
    fn from(e: RegisterError) -> crate::Error {
        match e {
            RegisterError::Usage(m) => crate::Error::Usage(m),
            RegisterError::Failed(m) => crate::Error::Register(m),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Flags

fn parse_timeout(s: &str) -> Result<Duration, String> {
    crate::cli::parse_timeout_like(s, "10s")
}

// ---------------------------------------------------------------------------------------
// Key files

/// One TSIG key of a BIND key file.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The key name, as the server knows it.
    pub name: String,
    /// Lower-case algorithm name without a trailing dot, e.g. `hmac-sha256`.
    pub algorithm: String,
    /// The decoded secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for Key {
    // Never print the secret, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Splits named.conf syntax into tokens: quoted strings (quotes removed, marked by
/// `true`), words, and the punctuation `{ } ;`. Comments `#`, `//` and `/* */` are skipped.
fn tokens(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '/' => {
                chars.next();
                match chars.next() {
                    Some('/') => {
                        chars.by_ref().find(|&c| c == '\n');
                    }
                    Some('*') => {
                        let mut prev = ' ';
                        loop {
                            match chars.next() {
                                Some('/') if prev == '*' => break,
                                Some(c) => prev = c,
                                None => return Err("a /* comment is not closed".into()),
                            }
                        }
                    }
                    _ => return Err("a stray '/' (comments are #, // or /* */)".into()),
                }
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push((s, true));
            }
            '{' | '}' | ';' => {
                chars.next();
                out.push((c.to_string(), false));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push((s, false));
            }
        }
    }
    Ok(out)
}

/// Reads every `key "NAME" { algorithm ALG; secret "BASE64"; };` statement of a BIND key
/// file, as `tsig-keygen` prints it (other statements are skipped, as a key file included
/// from named.conf may hold them).
pub fn parse_keys(text: &str) -> Result<Vec<Key>, String> {
    let toks = tokens(text)?;
    let mut keys = Vec::new();
    let mut i = 0;
    let punct = |i: usize, p: &str| toks.get(i).is_some_and(|(t, q)| !q && t == p);
    while i < toks.len() {
        let (word, quoted) = &toks[i];
        if *quoted || !word.eq_ignore_ascii_case("key") {
            // Skip one statement: up to its `;` at depth 0.
            let mut depth = 0usize;
            while i < toks.len() {
                if punct(i, "{") {
                    depth += 1;
                } else if punct(i, "}") {
                    depth = depth.saturating_sub(1);
                } else if punct(i, ";") && depth == 0 {
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        let name = toks
            .get(i + 1)
            .filter(|(t, _)| !punct(i + 1, "{") && !t.is_empty())
            .map(|(t, _)| t.trim_end_matches('.').to_string())
            .ok_or("`key` must be followed by the key's name")?;
        if !punct(i + 2, "{") {
            return Err(format!("key {name:?}: expected `{{` after the name"));
        }
        i += 3;
        let (mut algorithm, mut secret) = (None, None);
        while !punct(i, "}") {
            let field = toks
                .get(i)
                .map(|(t, _)| t.to_ascii_lowercase())
                .ok_or_else(|| format!("key {name:?}: missing `}};`"))?;
            let value = toks
                .get(i + 1)
                .filter(|_| punct(i + 2, ";"))
                .map(|(t, _)| t.clone())
                .ok_or_else(|| format!("key {name:?}: `{field}` needs a value and `;`"))?;
            match field.as_str() {
                "algorithm" => {
                    algorithm = Some(value.to_ascii_lowercase().trim_end_matches('.').to_string())
                }
                "secret" => secret = Some(value),
                other => return Err(format!("key {name:?}: unknown field `{other}`")),
            }
            i += 3;
        }
        if !punct(i + 1, ";") {
            return Err(format!("key {name:?}: expected `;` after `}}`"));
        }
        i += 2;
        let algorithm = algorithm.ok_or_else(|| format!("key {name:?} has no algorithm"))?;
        let secret = secret.ok_or_else(|| format!("key {name:?} has no secret"))?;
        let compact: String = secret.chars().filter(|c| !c.is_whitespace()).collect();
        let secret = data_encoding::BASE64
            .decode(compact.as_bytes())
            .map_err(|e| format!("key {name:?}: the secret is not base64 ({e})"))?;
        if secret.is_empty() {
            return Err(format!("key {name:?}: the secret is empty"));
        }
        keys.push(Key {
            name,
            algorithm,
            secret,
        });
    }
    Ok(keys)
}

/// A warning when users other than the owner of key file `path` may read it (anyone who
/// can read it can sign updates as this host).
pub fn key_mode_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "key file {} is readable by others (mode {mode:04o}): chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// The key to sign with: the only one in the file, or the one named.
pub fn load_key(path: &Path, name: Option<&str>) -> Result<Key, RegisterError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RegisterError::Usage(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    if let Some(w) = key_mode_warning(path) {
        eprintln!("muster-agent: warning: {w}");
    }
    let keys = parse_keys(&text)
        .map_err(|e| RegisterError::Usage(format!("key file {}: {e}", path.display())))?;
    let names = || {
        keys.iter()
            .map(|k| format!("{:?}", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => {
            let n = n.trim_end_matches('.');
            keys.iter()
                .find(|k| k.name.eq_ignore_ascii_case(n))
                .cloned()
                .ok_or_else(|| {
                    RegisterError::Usage(format!(
                        "key file {} has no key {n:?} (it has {})",
                        path.display(),
                        if keys.is_empty() {
                            "none".into()
                        } else {
                            names()
                        }
                    ))
                })
        }
        None => match keys.len() {
            1 => Ok(keys[0].clone()),
            0 => Err(RegisterError::Usage(format!(
                "key file {} holds no `key` statement (create one with `tsig-keygen NAME > FILE`)",
                path.display()
            ))),
            _ => Err(RegisterError::Usage(format!(
                "key file {} holds several keys ({}): choose one with --key-name",
                path.display(),
                names()
            ))),
        },
    }
}

/// hickory's signer for `key`.
pub fn signer(key: &Key) -> Result<TSigner, RegisterError> {
    let algorithm = match key.algorithm.as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(RegisterError::Usage(format!(
                "key {:?}: algorithm {other} is not supported by muster-agent (hmac-sha256, \
                 hmac-sha384, hmac-sha512 are): create the key with `tsig-keygen -a hmac-sha256 {}`",
                key.name, key.name
            )))
        }
    };
    let name = Name::from_ascii(&key.name).map_err(|e| {
        RegisterError::Usage(format!("key name {:?} is not a domain name: {e}", key.name))
    })?;
    TSigner::new(key.secret.clone(), algorithm, name, FUDGE)
        .map_err(|e| RegisterError::Usage(format!("key {:?}: {e}", key.name)))
}

// ---------------------------------------------------------------------------------------
// What to publish

/// What this host wants the zone to hold.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The zone (absolute).
    pub zone: Name,
    /// This host's name (absolute, in the zone).
    pub host: Name,
    /// Addresses to publish (empty with `deregister`).
    pub addresses: Vec<IpAddr>,
    /// TTL of every added record.
    pub ttl: u32,
    /// The SRV records to publish: owner and rdata (target = `host`).
    pub srv: Vec<(Name, SRV)>,
    /// Every SRV owner whose records of this host are managed (stale ones deleted).
    pub srv_owners: Vec<Name>,
    /// Remove instead of publish.
    pub deregister: bool,
}

fn absolute(s: &str, what: &str) -> Result<Name, RegisterError> {
    let mut n = Name::from_ascii(s.trim())
        .map_err(|e| RegisterError::Usage(format!("{what} {s:?} is not a domain name: {e}")))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

/// The host's name: a name already in the zone stays as it is, anything else (one label,
/// or a relative name) goes under the zone.
pub fn host_name(given: &str, zone: &Name) -> Result<Name, RegisterError> {
    let given = given.trim();
    if given.is_empty() || given.contains(char::is_whitespace) {
        return Err(RegisterError::Usage(format!(
            "--hostname {given:?} is not a host name"
        )));
    }
    let n = absolute(given, "--hostname")?;
    if zone.zone_of(&n) && n != *zone {
        return Ok(n);
    }
    if given.ends_with('.') {
        return Err(RegisterError::Usage(format!(
            "--hostname {given} is not in zone {zone}: an update can only change names in its zone"
        )));
    }
    let rel = Name::from_ascii(given.trim_end_matches('.'))
        .map_err(|e| RegisterError::Usage(format!("--hostname {given:?}: {e}")))?;
    rel.append_domain(zone)
        .map(|n| n.to_lowercase())
        .map_err(|e| RegisterError::Usage(format!("--hostname {given:?} under {zone}: {e}")))
}

/// The kernel's host name, first label (DHCP hosts often carry a search domain there).
fn kernel_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let first = s.trim().split('.').next()?.to_string();
            (!first.is_empty() && first != "localhost").then_some(first)
        })
}

/// Addresses worth publishing by default: not loopback, link-local, multicast or
/// unspecified (other hosts could not reach them).
pub fn publishable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || link_local || v6.is_multicast() || v6.is_unspecified())
        }
    }
}

impl Spec {
    /// Checks the arguments and finds the defaults (host name, interface addresses).
    pub fn from_args(args: &RegisterArgs) -> Result<Spec, RegisterError> {
        let zone = absolute(&args.zone, "--zone")?;
        let given = match &args.hostname {
            Some(h) => h.clone(),
            None => kernel_hostname().ok_or_else(|| {
                RegisterError::Usage(
                    "this host has no usable host name: pass --hostname NAME".into(),
                )
            })?,
        };
        let host = host_name(&given, &zone)?;
        let mut addresses = if args.deregister {
            Vec::new()
        } else if !args.address.is_empty() {
            args.address.clone()
        } else {
            let all = crate::discover::local_addresses().map_err(|e| {
                RegisterError::Failed(format!("cannot read this host's interface addresses: {e}"))
            })?;
            all.into_iter().filter(publishable).collect()
        };
        addresses.sort();
        addresses.dedup();
        if !args.deregister && addresses.is_empty() {
            return Err(RegisterError::Failed(
                "this host has no address to publish (none but loopback or link-local): pass --address IP".into(),
            ));
        }
        if let Some(bad) = addresses
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(RegisterError::Usage(format!(
                "--address {bad} cannot be a host's address"
            )));
        }
        let (mut srv, mut srv_owners) = (Vec::new(), Vec::new());
        if let Some(domain) = &args.cluster {
            let service =
                Service::new(domain, args.srv_name.as_deref()).map_err(RegisterError::Usage)?;
            let scheme: Scheme = args.scheme.into();
            for s in [Scheme::Http, Scheme::Https] {
                for (role, port) in [
                    (Role::Server, args.srv_port),
                    (Role::Client, args.client_srv_port),
                ] {
                    let owner = absolute(&service.record(role, s), "the SRV name")?;
                    if !zone.zone_of(&owner) {
                        return Err(RegisterError::Usage(format!(
                            "the SRV name {owner} is not in zone {zone}: pass the zone that holds --cluster {}",
                            service.domain
                        )));
                    }
                    if let (Some(port), true) = (port, s == scheme) {
                        srv.push((owner.clone(), SRV::new(0, 0, port, host.clone())));
                    }
                    srv_owners.push(owner);
                }
            }
        }
        Ok(Spec {
            zone,
            host,
            addresses,
            ttl: args.ttl,
            srv,
            srv_owners,
            deregister: args.deregister,
        })
    }

    fn wanted(&self, t: RecordType) -> Vec<RData> {
        self.addresses
            .iter()
            .filter_map(|ip| match (ip, t) {
                (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                _ => None,
            })
            .collect()
    }
}

/// What the server holds now, as read with plain queries.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The host's A records (with their TTLs).
    pub a: Vec<Record>,
    /// The host's AAAA records.
    pub aaaa: Vec<Record>,
    /// This host's SRV records (target = the host) under every managed owner.
    pub srv: Vec<Record>,
    /// SRV owners whose set the server withheld (a completeness gate): this host's
    /// records there are unknown.
    pub withheld: Vec<Name>,
}

/// Same records, regardless of order and duplicates; TTLs must all be `ttl`.
fn same_set(have: &[Record], want: &[RData], ttl: u32) -> bool {
    have.iter().all(|r| r.ttl == ttl && want.contains(&r.data))
        && want.iter().all(|w| have.iter().any(|r| &r.data == w))
}

/// Whether the server already holds exactly what `spec` wants.
pub fn settled(spec: &Spec, seen: &Observed) -> bool {
    if !seen.withheld.is_empty() {
        return false;
    }
    let srv_want: Vec<(Name, RData)> = spec
        .srv
        .iter()
        .map(|(o, s)| (o.clone(), RData::SRV(s.clone())))
        .collect();
    let srv_ok = seen
        .srv
        .iter()
        .all(|r| r.ttl == spec.ttl && srv_want.contains(&(r.name.clone(), r.data.clone())))
        && srv_want
            .iter()
            .all(|(o, d)| seen.srv.iter().any(|r| &r.name == o && &r.data == d));
    same_set(&seen.a, &spec.wanted(RecordType::A), spec.ttl)
        && same_set(&seen.aaaa, &spec.wanted(RecordType::AAAA), spec.ttl)
        && srv_ok
}

/// Which kind of update [`build`] made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Prerequisites only: the zone already holds what is wanted.
    Confirm,
    /// Records are replaced, added or deleted.
    Change,
}

fn empty_rr(name: &Name, t: RecordType, class: DNSClass) -> Record {
    let mut r = Record::update0(name.clone(), 0, t);
    r.dns_class = class;
    r
}

fn rr(name: &Name, ttl: u32, data: RData, class: DNSClass) -> Record {
    let mut r = Record::from_rdata(name.clone(), ttl, data);
    r.dns_class = class;
    r
}

/// The UPDATE message (unsigned) for `spec`, given what the server holds (`None` when
/// it could not be read). See the module documentation for the sections.
pub fn build(spec: &Spec, seen: Option<&Observed>, id: u16) -> (Message, Kind) {
    let mut m = Message::new(id, MessageType::Query, OpCode::Update);
    m.metadata.recursion_desired = false;
    let mut zone = Query::query(spec.zone.clone(), RecordType::SOA);
    zone.set_query_class(DNSClass::IN);
    m.add_query(zone);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    m.set_edns(edns);
    let host = &spec.host;
    let kind = if seen.is_some_and(|s| settled(spec, s)) {
        Kind::Confirm
    } else {
        Kind::Change
    };
    if !spec.deregister {
        // RFC 2136 §2.4.3: "RRset does not exist" — no CNAME at the host name.
        m.add_answer(empty_rr(host, RecordType::CNAME, DNSClass::NONE));
    }
    if kind == Kind::Confirm {
        for t in [RecordType::A, RecordType::AAAA] {
            let want = spec.wanted(t);
            if want.is_empty() {
                m.add_answer(empty_rr(host, t, DNSClass::NONE));
            } else {
                // §2.4.2: value-dependent, TTL 0 (ignored in the comparison).
                for d in want {
                    m.add_answer(rr(host, 0, d, DNSClass::IN));
                }
            }
        }
        return (m, kind);
    }
    // §2.5.2: delete the RRsets, then add the current addresses.
    for t in [RecordType::A, RecordType::AAAA] {
        m.add_authority(empty_rr(host, t, DNSClass::ANY));
    }
    for t in [RecordType::A, RecordType::AAAA] {
        for d in spec.wanted(t) {
            m.add_authority(rr(host, spec.ttl, d, DNSClass::IN));
        }
    }
    // §2.5.4: this host's own SRV records, by exact rdata; the wanted ones added back.
    let mut doomed: Vec<(Name, RData)> = Vec::new();
    for r in seen.map(|s| &s.srv[..]).unwrap_or(&[]) {
        doomed.push((r.name.clone(), r.data.clone()));
    }
    for (owner, srv) in &spec.srv {
        doomed.push((owner.clone(), RData::SRV(srv.clone())));
    }
    let mut seen_pairs: Vec<(Name, RData)> = Vec::new();
    for (owner, data) in doomed {
        if !seen_pairs.contains(&(owner.clone(), data.clone())) {
            m.add_authority(rr(&owner, 0, data.clone(), DNSClass::NONE));
            seen_pairs.push((owner, data));
        }
    }
    if !spec.deregister {
        for (owner, srv) in &spec.srv {
            m.add_authority(rr(owner, spec.ttl, RData::SRV(srv.clone()), DNSClass::IN));
        }
    }
    (m, kind)
}

// ---------------------------------------------------------------------------------------
// Transport

fn unspecified_for(server: &SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

fn io_context(server: SocketAddr, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!(
                "nothing answers DNS on {server} (connection refused): is musterd running there?"
            )
        }
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer from {server} in time")
        }
        _ => format!("talking to {server}: {e}"),
    }
}

/// One exchange over TCP (RFC 1035 §4.2.2: two-byte length, then the message).
fn exchange_tcp(server: SocketAddr, msg: &[u8], deadline: Instant) -> Result<Vec<u8>, String> {
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut s = TcpStream::connect_timeout(&server, left()).map_err(|e| io_context(server, e))?;
    s.set_read_timeout(Some(left()))
        .and_then(|_| s.set_write_timeout(Some(left())))
        .map_err(|e| io_context(server, e))?;
    let len =
        u16::try_from(msg.len()).map_err(|_| "the message exceeds 65535 bytes".to_string())?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    s.write_all(&out).map_err(|e| io_context(server, e))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| io_context(server, e))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut reply)
        .map_err(|e| io_context(server, e))?;
    Ok(reply)
}

/// Sends `msg` and returns the reply with the same ID: UDP, sent again if nothing comes
/// back (an update is idempotent in effect, so a resend is harmless), TCP when the reply
/// is truncated or the message does not fit the EDNS size.
pub fn exchange(server: SocketAddr, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let deadline = Instant::now() + timeout;
    if msg.len() > usize::from(EDNS_PAYLOAD) {
        return exchange_tcp(server, msg, deadline);
    }
    let sock = UdpSocket::bind(unspecified_for(&server)).map_err(|e| io_context(server, e))?;
    sock.connect(server).map_err(|e| io_context(server, e))?;
    let tries = 3u32;
    let mut buf = vec![0u8; 65535];
    for attempt in 0..tries {
        sock.send(msg).map_err(|e| io_context(server, e))?;
        let until = (Instant::now() + timeout / tries).min(deadline);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            sock.set_read_timeout(Some(left))
                .map_err(|e| io_context(server, e))?;
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[..2] == msg[..2] && buf[2] & 0x80 != 0 => {
                    if buf[2] & 0x02 != 0 {
                        return exchange_tcp(server, msg, deadline);
                    }
                    return Ok(buf[..n].to_vec());
                }
                Ok(_) => continue, // not the reply to this message
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(io_context(server, e)),
            }
        }
        if attempt + 1 == tries || Instant::now() >= deadline {
            break;
        }
    }
    Err(format!(
        "no answer from {server} within {}",
        humantime::format_duration(timeout)
    ))
}

// ---------------------------------------------------------------------------------------
// Reading the current records

/// Why the current records could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// No answer at all: the update would not get one either.
    Unreachable(String),
    /// The server answers, but not this query (a primary that only takes updates).
    Refused(String),
}

fn query(
    server: SocketAddr,
    name: &Name,
    t: RecordType,
    timeout: Duration,
) -> Result<Message, ReadError> {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = false;
    m.add_query(Query::query(name.clone(), t));
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD).set_version(0);
    m.set_edns(edns);
    let bytes = m
        .to_vec()
        .map_err(|e| ReadError::Refused(format!("cannot encode a query: {e}")))?;
    let reply = exchange(server, &bytes, timeout).map_err(ReadError::Unreachable)?;
    let r = Message::from_vec(&reply)
        .map_err(|e| ReadError::Refused(format!("malformed reply from {server}: {e}")))?;
    match r.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(r),
        rc => Err(ReadError::Refused(format!(
            "{server} answers {} {t} with {}",
            name,
            rcode_name(rc)
        ))),
    }
}

fn not_ready(m: &Message) -> bool {
    not_ready_text(m).is_some()
}

/// The extra text of an Extended DNS Error 14 "Not Ready" (RFC 8914) in `m`, which
/// musterd sends when a completeness gate withholds an SRV set; "" without text.
fn not_ready_text(m: &Message) -> Option<String> {
    m.edns.as_ref().and_then(|e| {
        e.options().options.iter().find_map(|(_, o)| match o {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(EDE_OPTION, d)
                if d.len() >= 2 && u16::from_be_bytes([d[0], d[1]]) == EDE_NOT_READY =>
            {
                Some(String::from_utf8_lossy(&d[2..]).into_owned())
            }
            _ => None,
        })
    })
}

/// Asks `server` for the SRV records at `owner` (absolute) and gives the server's reason
/// when it withholds them (an empty answer with EDE 14 Not Ready): what a completeness
/// gate waits for. `None` when the set is not withheld or the server does not answer.
pub fn withheld(server: SocketAddr, owner: &str, timeout: Duration) -> Option<String> {
    let name = Name::from_ascii(owner).ok()?;
    let m = query(server, &name, RecordType::SRV, timeout).ok()?;
    m.answers.is_empty().then(|| not_ready_text(&m)).flatten()
}

/// Reads the host's addresses and its SRV records from the server itself.
pub fn observe(server: SocketAddr, spec: &Spec, timeout: Duration) -> Result<Observed, ReadError> {
    let mut seen = Observed::default();
    let at = |m: &Message, name: &Name, t: RecordType| -> Vec<Record> {
        m.answers
            .iter()
            .filter(|r| &r.name == name && r.record_type() == t)
            .cloned()
            .collect()
    };
    seen.a = at(
        &query(server, &spec.host, RecordType::A, timeout)?,
        &spec.host,
        RecordType::A,
    );
    seen.aaaa = at(
        &query(server, &spec.host, RecordType::AAAA, timeout)?,
        &spec.host,
        RecordType::AAAA,
    );
    for owner in &spec.srv_owners {
        let m = query(server, owner, RecordType::SRV, timeout)?;
        if m.answers.is_empty() && not_ready(&m) {
            seen.withheld.push(owner.clone());
        }
        seen.srv.extend(
            at(&m, owner, RecordType::SRV)
                .into_iter()
                .filter(|r| match &r.data {
                    RData::SRV(s) => s.target == spec.host,
                    _ => false,
                }),
        );
    }
    Ok(seen)
}

/// The zone's SOA serial as the server answers it, if it answers.
fn zone_serial(server: SocketAddr, zone: &Name, timeout: Duration) -> Option<u32> {
    let m = query(server, zone, RecordType::SOA, timeout).ok()?;
    m.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if &r.name == zone => Some(soa.serial),
        _ => None,
    })
}

fn rand_id() -> u16 {
    // The ID only pairs a reply with its request on a connected socket; the clock's
    // nanoseconds and the process ID vary enough for that.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos ^ (nanos >> 16) ^ std::process::id()) as u16
}

// ---------------------------------------------------------------------------------------
// Replies

/// The rcode's name as RFC 2136 and nsupdate print it.
pub fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("rcode {}", u16::from(other)),
    }
}

/// What the reply to an update says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR, signed by the key.
    Done,
    /// The prerequisites failed (NXRRSET/YXRRSET on a confirming update): the records
    /// moved since they were read.
    Moved,
    /// Anything else, with the message to print.
    Failed(String),
}

/// Checks a reply: its TSIG with `verifier` (made when the request was signed), then the
/// rcode. `what` describes the request for messages: server, zone, key.
pub fn interpret(
    reply: &[u8],
    request_id: u16,
    verifier: Option<&mut hickory_proto::rr::TSigVerifier>,
    spec: &Spec,
    kind: Kind,
    server: SocketAddr,
    key: &str,
) -> Outcome {
    let to = format!("update of zone {} at {server} with key {key:?}", spec.zone);
    let m = match Message::from_vec(reply) {
        Ok(m) => m,
        Err(e) => return Outcome::Failed(format!("{to}: malformed reply: {e}")),
    };
    if m.metadata.id != request_id || m.metadata.op_code != OpCode::Update {
        return Outcome::Failed(format!("{to}: the reply does not answer the update"));
    }
    let rc = m.metadata.response_code;
    let name = rcode_name(rc);
    let tsig = m.signature().map(|s| s.data.clone());
    match tsig {
        Some(t) if t.mac.is_empty() || t.error.is_some() => {
            // RFC 8945 §5.2: BADKEY and BADSIG replies are unsigned; BADTIME is signed
            // but its meaning does not depend on trusting it (nothing changed).
            let why = match t.error {
                Some(TsigError::BadKey) => format!(
                    "BADKEY: the server does not know key {key:?} with this algorithm — check that its key file and the server's key files name the same key"
                ),
                Some(TsigError::BadSig) => format!(
                    "BADSIG: the signature does not verify — the secret of key {key:?} differs from the server's copy"
                ),
                Some(TsigError::BadTime) => {
                    let theirs = (t.other.len() == 6).then(|| {
                        t.other.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
                    });
                    let ours = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    match theirs {
                        Some(s) => format!(
                            "BADTIME: the clocks differ by {} s (server {s}, here {ours}), more than the {FUDGE} s allowed — fix the time (NTP) on this host or the server",
                            s.abs_diff(ours)
                        ),
                        None => format!("BADTIME: the clocks of this host and the server differ by more than {FUDGE} s — fix the time (NTP)"),
                    }
                }
                Some(TsigError::BadTrunc) => "BADTRUNC: the server refuses the MAC length".into(),
                Some(TsigError::Unknown(n)) => format!("TSIG error {n}"),
                None => "the reply's TSIG has no MAC".into(),
            };
            return Outcome::Failed(format!("{to}: {name}: {why}; nothing was changed"));
        }
        Some(_) => {
            if let Some(v) = verifier {
                if let Err(e) = v.verify(reply) {
                    return Outcome::Failed(format!(
                        "{to}: the reply's TSIG does not verify ({e}); the result is unknown — run again"
                    ));
                }
            }
        }
        None if rc == ResponseCode::NoError => {
            return Outcome::Failed(format!(
                "{to}: NOERROR but the reply is not signed: it cannot be trusted (does {server} know TSIG?)"
            ));
        }
        None => {}
    }
    let host = &spec.host;
    let msg = match rc {
        ResponseCode::NoError => return Outcome::Done,
        ResponseCode::NXRRSet | ResponseCode::YXRRSet if kind == Kind::Confirm => return Outcome::Moved,
        ResponseCode::YXRRSet => format!(
            "{name}: {host} is an alias (CNAME): addresses cannot be added there — remove the CNAME or choose another --hostname"
        ),
        ResponseCode::Refused => format!(
            "{name}: key {key:?} may not change {host} A/AAAA{} in zone {} — {}",
            if spec.srv.is_empty() && spec.srv_owners.is_empty() { "" } else { " or its SRV records" },
            spec.zone,
            host_grant_hint(spec, key),
        ),
        ResponseCode::NotAuth => format!(
            "{name}: {server} is not the primary of zone {} — check --server and --zone",
            spec.zone
        ),
        ResponseCode::NotZone => format!("{name}: a name of the update is not in zone {}", spec.zone),
        ResponseCode::NotImp => format!("{name}: {server} does not take dynamic updates"),
        ResponseCode::FormErr => format!("{name}: the server cannot read the update"),
        ResponseCode::ServFail => format!("{name}: the server failed to apply the update (see its log); nothing was changed"),
        _ => name.clone(),
    };
    let unsigned = if m.signature().is_none() {
        " (unsigned reply)"
    } else {
        ""
    };
    Outcome::Failed(format!("{to}: {msg}{unsigned}"))
}

/// What the server's policy needs for this host: a host grant for the key (musterd's
/// `match = "host"`, which lets a key change only the host its name names).
fn host_grant_hint(spec: &Spec, key: &str) -> String {
    let zone = spec.zone.to_ascii();
    let relative = |n: &Name| {
        let text = n.to_ascii();
        text.strip_suffix(&format!(".{zone}"))
            .map(str::to_string)
            .unwrap_or(text)
    };
    let mut srv: Vec<String> = spec
        .srv
        .iter()
        .map(|(o, _)| format!("{:?}", relative(o)))
        .collect();
    srv.dedup();
    let srv = if srv.is_empty() {
        String::new()
    } else {
        format!(", srv = [{}]", srv.join(", "))
    };
    let stands_for = absolute(key, "the key name").ok().map(|k| {
        if spec.zone.zone_of(&k) && k != spec.zone {
            k
        } else {
            host_name(key, &spec.zone).unwrap_or(k)
        }
    });
    let naming = match stands_for {
        Some(h) if h != spec.host => format!(
            "; a host grant covers the host the key is named after, and key {key:?} names {h}, not {}: use a key named {:?} (tsig-keygen {})",
            spec.host,
            relative(&spec.host),
            relative(&spec.host)
        ),
        _ => String::new(),
    };
    format!(
        "give the key its host in the server's config: [[zone.update_policy]] key = {key:?}, match = \"host\"{srv} under the [[zone]] of {}{naming} (see docs/dhcp.md), or the zone takes no updates",
        zone.trim_end_matches('.')
    )
}

// ---------------------------------------------------------------------------------------
// The command

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn describe(spec: &Spec) -> String {
    let mut parts: Vec<String> = spec
        .addresses
        .iter()
        .map(|ip| format!("{} {ip}", if ip.is_ipv4() { "A" } else { "AAAA" }))
        .collect();
    for (owner, s) in &spec.srv {
        parts.push(format!(
            "SRV {owner} {} {} {} {}",
            s.priority, s.weight, s.port, s.target
        ));
    }
    parts.join(", ")
}

/// Registers (or deregisters) this host; prints one line saying what happened.
pub fn run(args: &RegisterArgs) -> Result<(), RegisterError> {
    let spec = Spec::from_args(args)?;
    let key = load_key(&args.key, args.key_name.as_deref())?;
    let signer = signer(&key)?;
    let server = args.server;
    for round in 0..ROUNDS {
        let seen = match observe(server, &spec, args.timeout) {
            Ok(s) => Some(s),
            Err(ReadError::Unreachable(e)) => {
                return Err(RegisterError::Failed(format!(
                    "update of zone {} at {server} with key {:?}: {e}",
                    spec.zone, key.name
                )))
            }
            Err(ReadError::Refused(e)) => {
                let stale = if spec.srv_owners.is_empty() {
                    String::new()
                } else {
                    format!(
                        ": an SRV record of {} with another port or priority, if any, stays",
                        spec.host
                    )
                };
                eprintln!("muster-agent: warning: cannot read the current records ({e}); updating without them{stale}");
                None
            }
        };
        if let Some(s) = &seen {
            for owner in &s.withheld {
                eprintln!(
                    "muster-agent: note: {server} withholds {owner} until the cluster is complete; an older SRV record of {} there with another port, if any, is removed on a later registration",
                    spec.host
                );
            }
        }
        let (mut msg, kind) = build(&spec, seen.as_ref(), rand_id());
        // The serial before, to tell an update that changed nothing (the server nets it
        // away, as musterd and BIND do) from one that did.
        let serial_before = match kind {
            Kind::Change if seen.is_some() => zone_serial(server, &spec.zone, args.timeout),
            _ => None,
        };
        let verifier = msg
            .finalize(&signer, now())
            .map_err(|e| RegisterError::Failed(format!("cannot sign the update: {e}")))?;
        let bytes = msg
            .to_vec()
            .map_err(|e| RegisterError::Failed(format!("cannot encode the update: {e}")))?;
        let reply = exchange(server, &bytes, args.timeout).map_err(|e| {
            RegisterError::Failed(format!(
                "update of zone {} at {server} with key {:?}: {e}",
                spec.zone, key.name
            ))
        })?;
        let mut verifier = verifier;
        match interpret(&reply, msg.metadata.id, verifier.as_mut(), &spec, kind, server, &key.name) {
            Outcome::Done => {
                let what = if spec.deregister { "deregistered" } else { "registered" };
                let unchanged = serial_before.is_some()
                    && serial_before == zone_serial(server, &spec.zone, args.timeout);
                let kind = if unchanged { Kind::Confirm } else { kind };
                let line = match (kind, spec.deregister) {
                    (Kind::Confirm, false) => format!("{} already registered ({}): nothing changed", spec.host, describe(&spec)),
                    (Kind::Confirm, true) => format!("{} holds no addresses or SRV records of this host: nothing changed", spec.zone),
                    (Kind::Change, false) => format!("{what} {}: {}", spec.host, describe(&spec)),
                    (Kind::Change, true) => format!("{what} {}: its A/AAAA and SRV records are removed", spec.host),
                };
                eprintln!("muster-agent: {line} (zone {}, server {server}, key {:?})", spec.zone, key.name);
                crate::notify::status(&line);
                return Ok(());
            }
            Outcome::Moved if round + 1 < ROUNDS => continue,
            Outcome::Moved => {
                return Err(RegisterError::Failed(format!(
                    "update of zone {} at {server}: the records of {} kept changing while being registered; run again",
                    spec.zone, spec.host
                )))
            }
            Outcome::Failed(m) => return Err(RegisterError::Failed(m)),
        }
    }
    unreachable!("the last round returns")
}

/// `--register-*` of plan/env/exec: registers when `--register-server` is given; with
/// `enact` false (`plan`, `exec --dry-run`) only prints the update it would send.
pub fn first(
    flags: &RegisterFirst,
    domain: Option<&str>,
    srv_name: Option<&str>,
    scheme: Option<SchemeArg>,
    enact: bool,
) -> Result<(), RegisterError> {
    match flags.args(domain, srv_name, scheme)? {
        Some(args) if enact => run(&args),
        Some(args) => {
            eprint!("{}", preview(&args)?);
            Ok(())
        }
        None => Ok(()),
    }
}

/// The update `run` would send, in nsupdate's words, without sending it: the current
/// records are read with plain queries, nothing is signed or written.
pub fn preview(args: &RegisterArgs) -> Result<String, RegisterError> {
    let spec = Spec::from_args(args)?;
    let key = load_key(&args.key, args.key_name.as_deref())?;
    let seen = match observe(args.server, &spec, args.timeout) {
        Ok(s) => Some(s),
        Err(ReadError::Unreachable(e) | ReadError::Refused(e)) => {
            eprintln!("muster-agent: warning: cannot read the current records ({e})");
            None
        }
    };
    let (msg, kind) = build(&spec, seen.as_ref(), 0);
    let mut out = format!(
        "muster-agent: would register {} (nothing is sent): update of zone {} at {} with key {:?}\n",
        spec.host, spec.zone, args.server, key.name
    );
    for r in &msg.answers {
        let text = match r.dns_class {
            DNSClass::NONE => format!("prereq nxrrset {} {}", r.name, r.record_type()),
            DNSClass::ANY => format!("prereq yxrrset {} {}", r.name, r.record_type()),
            _ => format!("prereq yxrrset {} {} {}", r.name, r.record_type(), r.data),
        };
        out.push_str(&format!("  {text}\n"));
    }
    for r in &msg.authorities {
        let text = match r.dns_class {
            DNSClass::ANY => format!("update delete {} {}", r.name, r.record_type()),
            DNSClass::NONE => format!("update delete {} {} {}", r.name, r.record_type(), r.data),
            _ => format!(
                "update add {} {} {} {}",
                r.name,
                r.ttl,
                r.record_type(),
                r.data
            ),
        };
        out.push_str(&format!("  {text}\n"));
    }
    if kind == Kind::Confirm {
        out.push_str(
            "  (prerequisites only: the zone already holds these records, nothing would change)\n",
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = r#"key "host1" {
	algorithm hmac-sha256;
	secret "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldCE=";
};
"#;

    #[test]
    fn tsig_keygen_output_parses() {
        let keys = parse_keys(KEYGEN).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "host1");
        assert_eq!(keys[0].algorithm, "hmac-sha256");
        assert_eq!(keys[0].secret, b"hello world this is a secret!");
    }

    #[test]
    fn several_keys_comments_and_other_statements() {
        let text = format!(
            "# generated\n// by hand\n/* block\n comment */ options {{ directory \"/x\"; }};\n{KEYGEN}key other. {{ algorithm HMAC-SHA512.; secret \"YWJj\"; }};"
        );
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].name, "other");
        assert_eq!(keys[1].algorithm, "hmac-sha512");
        assert_eq!(
            format!("{:?}", keys[1]),
            "Key { name: \"other\", algorithm: \"hmac-sha512\", .. }"
        );
    }

    #[test]
    fn broken_key_files_are_refused() {
        for (text, want) in [
            ("key \"k\" { algorithm hmac-sha256; };", "no secret"),
            ("key \"k\" { secret \"YWJj\"; };", "no algorithm"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"!!\"; };",
                "not base64",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YWJj\" };",
                "needs a value",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YWJj; };",
                "not closed",
            ),
            ("key \"k\" { algo hmac-sha256; };", "unknown field"),
        ] {
            let e = parse_keys(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn unsupported_algorithms_name_the_fix() {
        let k = Key {
            name: "k".into(),
            algorithm: "hmac-md5.sig-alg.reg.int".into(),
            secret: b"abc".to_vec(),
        };
        let e = signer(&k).err().unwrap().to_string();
        assert!(e.contains("tsig-keygen -a hmac-sha256 k"), "{e}");
    }

    #[test]
    fn host_names_go_under_the_zone() {
        let zone = Name::from_ascii("example.test.").unwrap();
        assert_eq!(
            host_name("m1", &zone).unwrap().to_ascii(),
            "m1.example.test."
        );
        assert_eq!(
            host_name("M1.Example.Test", &zone).unwrap().to_ascii(),
            "m1.example.test."
        );
        assert_eq!(
            host_name("m1.rack2", &zone).unwrap().to_ascii(),
            "m1.rack2.example.test."
        );
        assert!(host_name("m1.other.test.", &zone).is_err());
        assert!(host_name("a b", &zone).is_err());
    }

    #[test]
    fn default_addresses_skip_unreachable_ones() {
        for ip in ["127.0.0.1", "::1", "fe80::1", "169.254.1.1", "224.0.0.1"] {
            assert!(!publishable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.0.2.1", "2001:db8::5", "fd00::5"] {
            assert!(publishable(&ip.parse().unwrap()), "{ip}");
        }
    }
}
