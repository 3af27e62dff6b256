//! One read of the live records, kept the way etcd's Go resolver sees them: SRV records
//! with priority and weight and the target spelled as published, A and AAAA records in
//! answer order (etcd picks the *first* address, so order matters here, unlike in the
//! normalised reads of [`crate::discover`]), and the alias a target goes through.
//!
//! Limitations: Go sorts the addresses of a name by RFC 6724 before picking one; among
//! IPv4 addresses of ordinary hosts that keeps the DNS order, which is what is replayed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use serde::Serialize;

use crate::cluster::{Role, Scheme, Service};
use crate::discover;

/// What one lookup gave, in answer order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "records", rename_all = "lowercase")]
pub enum Found<T> {
    /// Records of the asked type, in the order of the answer.
    Records(Vec<T>),
    /// NXDOMAIN or NODATA.
    None,
    /// The lookup failed (timeout, SERVFAIL, refused ...), with the reason.
    Failed(String),
}

impl<T> Found<T> {
    /// The records, or nothing.
    pub fn records(&self) -> &[T] {
        match self {
            Found::Records(r) => r,
            _ => &[],
        }
    }
}

/// One SRV record as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SrvRecord {
    /// Priority (lower first).
    pub priority: u16,
    /// Weight within a priority.
    pub weight: u16,
    /// Port.
    pub port: u16,
    /// Target, absolute, in the case it was published in (etcd puts it into member URLs
    /// as it is, and URL case changes member IDs).
    pub target: String,
}

impl SrvRecord {
    /// The target lower-cased, the key of [`Snapshot::names`].
    pub fn key(&self) -> String {
        self.target.to_ascii_lowercase()
    }

    /// `target:port` for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.target, self.port)
    }
}

/// The addresses of one name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The alias the A/AAAA answers went through (the first CNAME's target), if any.
    pub cname: Option<String>,
    /// A records, in answer order.
    pub a: Found<Ipv4Addr>,
    /// AAAA records, in answer order.
    pub aaaa: Found<Ipv6Addr>,
}

impl Resolution {
    /// The one address Go's `net.ResolveTCPAddr` returns for the name, which etcd's
    /// self-match compares: the first IPv4 address if there is one, else the first
    /// address. A failed A lookup with a good AAAA answer still gives the AAAA address,
    /// as in Go.
    pub fn go_pick(&self) -> Option<IpAddr> {
        self.a
            .records()
            .first()
            .map(|a| IpAddr::V4(*a))
            .or_else(|| self.aaaa.records().first().map(|a| IpAddr::V6(*a)))
    }

    /// Every address, IPv4 first, each family in answer order.
    pub fn all(&self) -> Vec<IpAddr> {
        self.a
            .records()
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(self.aaaa.records().iter().map(|a| IpAddr::V6(*a)))
            .collect()
    }

    /// The reason the name cannot be resolved at all: a failed lookup, or none.
    pub fn failure(&self) -> Option<&str> {
        match (&self.a, &self.aaaa) {
            (Found::Failed(e), Found::Failed(_) | Found::None)
            | (Found::None, Found::Failed(e)) => Some(e),
            _ => None,
        }
    }
}

/// Everything doctor reads from the DNS.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Domain and `--srv-name`.
    #[serde(skip)]
    pub service: Service,
    /// `_etcd-server-ssl[-S]._tcp.D`.
    pub server_ssl: Found<SrvRecord>,
    /// `_etcd-server[-S]._tcp.D`.
    pub server_plain: Found<SrvRecord>,
    /// `_etcd-client-ssl[-S]._tcp.D`.
    pub client_ssl: Found<SrvRecord>,
    /// `_etcd-client[-S]._tcp.D`.
    pub client_plain: Found<SrvRecord>,
    /// TXT records at the `-ssl` server owner name (each record's strings).
    pub txt_ssl: Found<Vec<String>>,
    /// TXT records at the plain server owner name.
    pub txt_plain: Found<Vec<String>>,
    /// The addresses of every SRV target and every advertised host name, by lower-case
    /// absolute name.
    pub names: BTreeMap<String, Resolution>,
    /// Server SRV owner names the nameserver withholds (empty answer with EDE 14 Not
    /// Ready: a completeness gate), with its reason, which names what is missing.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub withheld: BTreeMap<String, String>,
}

impl Snapshot {
    /// The server set of `scheme`.
    pub fn server(&self, scheme: Scheme) -> &Found<SrvRecord> {
        match scheme {
            Scheme::Https => &self.server_ssl,
            Scheme::Http => &self.server_plain,
        }
    }

    /// The TXT records at the server owner name of `scheme`.
    pub fn txt(&self, scheme: Scheme) -> &Found<Vec<String>> {
        match scheme {
            Scheme::Https => &self.txt_ssl,
            Scheme::Http => &self.txt_plain,
        }
    }

    /// How `name` resolves (absolute or not, any case); None when it was not read.
    pub fn resolution(&self, name: &str) -> Option<&Resolution> {
        self.names.get(&absolute_lower(name))
    }

    /// Go's one address for `name`.
    pub fn go_pick(&self, name: &str) -> Option<IpAddr> {
        self.resolution(name).and_then(Resolution::go_pick)
    }
}

/// Lower-case with one trailing dot.
pub fn absolute_lower(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.').to_ascii_lowercase())
}

/// How long one query waits. Doctor asks once; a dead server must not make it hang.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the records with a resolver of its own: the same settings as
/// [`crate::discover::DnsResolver`] (no cache, no hosts file, absolute names, UDP then
/// TCP) but answers kept raw, because etcd's behaviour depends on their order and on
/// aliases that the planner's normalised reads drop.
pub struct Reader {
    inner: TokioResolver,
    servers: String,
    /// The first server, asked directly for the reason of an empty SRV answer.
    first: Option<SocketAddr>,
}

impl Reader {
    /// A reader asking `servers`.
    pub fn new(servers: &[SocketAddr]) -> Result<Reader, String> {
        Ok(Reader {
            inner: discover::hickory(servers, QUERY_TIMEOUT, 2).map_err(|e| e.to_string())?,
            servers: discover::servers_text(servers),
            first: servers.first().copied(),
        })
    }

    async fn records(&self, name: &str, rtype: RecordType) -> Found<RData> {
        match self.inner.lookup(name, rtype).await {
            Ok(l) => Found::Records(l.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_no_records_found() => Found::None,
            Err(e) => Found::Failed(format!("{e} (nameserver {})", self.servers)),
        }
    }

    async fn srv(&self, name: &str) -> Found<SrvRecord> {
        self.records(name, RecordType::SRV).await.map(|d| match d {
            RData::SRV(s) => Some(SrvRecord {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: absolute(&s.target.to_ascii()),
            }),
            _ => None,
        })
    }

    async fn txt(&self, name: &str) -> Found<Vec<String>> {
        self.records(name, RecordType::TXT).await.map(|d| match d {
            RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        })
    }

    /// A and AAAA of `name`, and the alias they went through.
    async fn resolve(&self, name: &str) -> Resolution {
        let (a, aaaa) = tokio::join!(
            self.records(name, RecordType::A),
            self.records(name, RecordType::AAAA)
        );
        let cname = [&a, &aaaa]
            .iter()
            .flat_map(|f| f.records())
            .find_map(|d| match d {
                RData::CNAME(c) => Some(absolute(&c.0.to_ascii())),
                _ => None,
            });
        Resolution {
            cname,
            a: a.map(|d| match d {
                RData::A(a) => Some(a.0),
                _ => None,
            }),
            aaaa: aaaa.map(|d| match d {
                RData::AAAA(a) => Some(a.0),
                _ => None,
            }),
        }
    }

    /// Reads every discovery record of `service`, then the addresses of every server and
    /// client target and of `extra` host names (advertised URLs that are not targets).
    pub async fn read(&self, service: &Service, extra: &[String]) -> Snapshot {
        let ssl = service.record(Role::Server, Scheme::Https);
        let plain = service.record(Role::Server, Scheme::Http);
        let client_ssl = service.record(Role::Client, Scheme::Https);
        let client_plain = service.record(Role::Client, Scheme::Http);
        let (server_ssl, server_plain, client_ssl, client_plain, txt_ssl, txt_plain) = tokio::join!(
            self.srv(&ssl),
            self.srv(&plain),
            self.srv(&client_ssl),
            self.srv(&client_plain),
            self.txt(&ssl),
            self.txt(&plain),
        );
        let mut wanted: Vec<String> = [&server_ssl, &server_plain, &client_ssl, &client_plain]
            .iter()
            .flat_map(|f| f.records())
            .map(SrvRecord::key)
            .chain(extra.iter().map(|n| absolute_lower(n)))
            // Go refuses an answer with such a target outright and never resolves it.
            .filter(|n| n != "." && go_is_domain_name(n))
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut names = BTreeMap::new();
        for n in wanted {
            let r = self.resolve(&n).await;
            names.insert(n, r);
        }
        let mut withheld = BTreeMap::new();
        for (owner, found) in [(&ssl, &server_ssl), (&plain, &server_plain)] {
            if let (Found::None, Some(server)) = (found, self.first) {
                let owner = absolute_lower(owner);
                let o = owner.clone();
                let why = tokio::task::spawn_blocking(move || {
                    crate::register::withheld(server, &o, QUERY_TIMEOUT)
                })
                .await
                .ok()
                .flatten();
                if let Some(why) = why {
                    withheld.insert(owner, why);
                }
            }
        }
        Snapshot {
            service: service.clone(),
            server_ssl,
            server_plain,
            client_ssl,
            client_plain,
            txt_ssl,
            txt_plain,
            names,
            withheld,
        }
    }
}

impl Found<RData> {
    /// Keeps the records `f` turns into a `T` (an answer may carry a CNAME chain
    /// before the asked type); none left is [`Found::None`].
    fn map<T>(self, f: impl Fn(RData) -> Option<T>) -> Found<T> {
        match self {
            Found::Records(r) => {
                let v: Vec<T> = r.into_iter().filter_map(f).collect();
                if v.is_empty() {
                    Found::None
                } else {
                    Found::Records(v)
                }
            }
            Found::None => Found::None,
            Found::Failed(e) => Found::Failed(e),
        }
    }
}

/// With one trailing dot, case kept.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}
/// Go's `net.isDomainName`, which `LookupSRV` applies to every target: letters, digits,
/// `-` and `_`, labels of 1–63 bytes, no label starting or ending with `-`, at most 254
/// bytes — and at least one non-digit, so `10.0.0.1.` is refused.
pub fn go_is_domain_name(s: &str) -> bool {
    if s == "." {
        return true;
    }
    let mut l = s.len();
    if l == 0 || l > 254 || (l == 254 && !s.ends_with('.')) {
        return false;
    }
    let mut last = b'.';
    let mut non_numeric = false;
    let mut partlen = 0;
    for c in s.bytes() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                non_numeric = true;
                partlen += 1;
            }
            b'0'..=b'9' => partlen += 1,
            b'-' => {
                if last == b'.' {
                    return false;
                }
                partlen += 1;
                non_numeric = true;
            }
            b'.' => {
                if last == b'.' || last == b'-' || partlen > 63 || partlen == 0 {
                    return false;
                }
                partlen = 0;
            }
            _ => return false,
        }
        last = c;
    }
    l = partlen;
    if last == b'-' || l > 63 {
        return false;
    }
    non_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_domain_names() {
        assert!(go_is_domain_name("m1.d.test."));
        assert!(go_is_domain_name("_x.d.test"));
        assert!(!go_is_domain_name("10.0.0.1."));
        assert!(!go_is_domain_name("-a.test."));
        assert!(!go_is_domain_name("a-.test."));
        assert!(!go_is_domain_name("a..test."));
        assert!(!go_is_domain_name("a b.test."));
        assert!(go_is_domain_name("."));
    }
}
