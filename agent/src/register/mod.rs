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
//! The module by concern: [`spec`] (what to publish: host name, address choice, SRV
//! records), [`key`] (the BIND key file and the signer), [`message`] (building the
//! update and interpreting the reply, pure), [`transport`] (UDP/TCP exchange and the
//! plain queries that read the current records).

pub mod key;
pub mod message;
pub mod spec;
pub mod transport;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::rr::DNSClass;

use crate::cluster::Scheme;
use key::{load_key, signer};
use message::{build, interpret, Kind, Outcome};
use spec::Spec;
use transport::{exchange, observe, rand_id, zone_serial, ReadError};

pub use transport::withheld;

/// Reads and updates repeated when the records moved between the read and the update.
const ROUNDS: usize = 3;

/// `register`, checked (also what `--register-*` of the start commands stand for).
#[derive(Debug, Clone)]
pub struct RegisterConfig {
    /// The zone's primary server that takes signed updates.
    pub server: SocketAddr,
    /// The BIND key file.
    pub key: PathBuf,
    /// The key to use when the file holds several.
    pub key_name: Option<String>,
    /// The zone to update, absolute.
    pub zone: String,
    /// This host's name; None: the kernel's host name.
    pub hostname: Option<String>,
    /// The addresses to publish; empty: the interface addresses.
    pub address: Vec<IpAddr>,
    /// The peer port of `_etcd-server[-ssl]._tcp.CLUSTER`, when published.
    pub srv_port: Option<u16>,
    /// The client port of `_etcd-client[-ssl]._tcp.CLUSTER`, when published.
    pub client_srv_port: Option<u16>,
    /// The etcd discovery domain of the SRV records.
    pub cluster: Option<String>,
    /// Service-name suffix.
    pub srv_name: Option<String>,
    /// Which SRV set.
    pub scheme: Scheme,
    /// TTL of the published records.
    pub ttl: u32,
    /// Give up on the server after this long.
    pub timeout: Duration,
    /// Remove instead of publish.
    pub deregister: bool,
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
pub fn run(args: &RegisterConfig) -> Result<(), RegisterError> {
    let spec = Spec::from_config(args)?;
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
pub fn first(args: &RegisterConfig, enact: bool) -> Result<(), RegisterError> {
    if enact {
        return run(args);
    }
    eprint!("{}", preview(args)?);
    Ok(())
}

/// The update `run` would send, in nsupdate's words, without sending it: the current
/// records are read with plain queries, nothing is signed or written.
pub fn preview(args: &RegisterConfig) -> Result<String, RegisterError> {
    let spec = Spec::from_config(args)?;
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
