//! DNS and interface effects: reading the etcd discovery records (RFC 2782 SRV, the
//! TXT records at the server SRV names that publish the cluster size, then A and AAAA of
//! every target) and this host's addresses.
//!
//! Every name is queried absolute (trailing dot: no search list, Kubernetes pods use
//! `ndots:5`), with caching off (each round must see the zone as it is now, not as it
//! was when a negative answer was cached) and `/etc/hosts` ignored (a Debian
//! `127.0.1.1 <fqdn>` line would otherwise win over DNS). UDP first, TCP when an answer
//! is truncated.
//!
//! Limitations: DNSSEC is not validated; the SRV answer's additional section is not used
//! (targets are always asked for explicitly, so glue cannot hide a missing record).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};

use crate::cluster::{Answer, RecordSet, Role, Scheme, Service, Srv, Txt};

/// DNS lookups the discovery round needs. The real one is [`DnsResolver`]; unit tests use
/// a table.
pub trait Resolve {
    /// SRV records at `name` (absolute).
    fn srv(&self, name: &str) -> impl Future<Output = Answer<Srv>>;
    /// TXT records at `name` (absolute).
    fn txt(&self, name: &str) -> impl Future<Output = Answer<Txt>>;
    /// A and AAAA records of `name` (absolute), merged.
    fn addresses(&self, name: &str) -> impl Future<Output = Answer<IpAddr>>;
    /// The servers asked, for messages ("nameserver 10.0.0.53:53").
    fn describe(&self) -> String;
}

/// Reads one round: the server SRV sets (one, if `scheme` is forced) with the TXT
/// records at the same names, both client sets, and the addresses of every server target.
pub async fn read<R: Resolve>(
    resolver: &R,
    service: &Service,
    scheme: Option<Scheme>,
) -> RecordSet {
    let ask_ssl = scheme != Some(Scheme::Http);
    let ask_plain = scheme != Some(Scheme::Https);
    let ssl_name = service.record(Role::Server, Scheme::Https);
    let plain_name = service.record(Role::Server, Scheme::Http);
    let cssl_name = service.record(Role::Client, Scheme::Https);
    let cplain_name = service.record(Role::Client, Scheme::Http);
    let (server_ssl, server_plain, client_ssl, client_plain, txt_ssl, txt_plain) = tokio::join!(
        async {
            if ask_ssl {
                Some(resolver.srv(&ssl_name).await)
            } else {
                None
            }
        },
        async {
            if ask_plain {
                Some(resolver.srv(&plain_name).await)
            } else {
                None
            }
        },
        resolver.srv(&cssl_name),
        resolver.srv(&cplain_name),
        async {
            if ask_ssl {
                Some(resolver.txt(&ssl_name).await)
            } else {
                None
            }
        },
        async {
            if ask_plain {
                Some(resolver.txt(&plain_name).await)
            } else {
                None
            }
        },
    );
    let sizes = [(ssl_name, txt_ssl), (plain_name, txt_plain)]
        .into_iter()
        .filter_map(|(name, answer)| answer.map(|a| (name, a)))
        .collect();
    let mut targets: Vec<String> = [&server_ssl, &server_plain]
        .into_iter()
        .flatten()
        .flat_map(|a| match a {
            Answer::Records(r) => r.iter().map(|s| s.target.clone()).collect(),
            _ => Vec::new(),
        })
        .filter(|t| t != ".")
        .collect();
    targets.sort();
    targets.dedup();
    let mut addresses = std::collections::BTreeMap::new();
    for t in targets {
        let a = resolver.addresses(&t).await;
        addresses.insert(t, a);
    }
    RecordSet {
        server_ssl,
        server_plain,
        client_ssl,
        client_plain,
        sizes,
        addresses,
    }
}

/// The real resolver: hickory, no cache, no hosts file, the given nameservers.
pub struct DnsResolver {
    inner: TokioResolver,
    /// For error messages: which servers were asked.
    servers: String,
}

/// How long one query waits for an answer. Short, because the wait loop retries anyway
/// and must report a dead server inside its own deadline; hickory does not see ICMP
/// "port unreachable" on its unconnected UDP sockets, so a server that is down costs
/// this timeout (about twice over, measured) on every round.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A hickory resolver asking `servers` the way the agent reads records (discovery and
/// doctor): UDP, and TCP for truncated answers, on each server's port; no cache, no hosts
/// file, names taken as absolute; `timeout` and `attempts` per query.
pub fn hickory(
    servers: &[SocketAddr],
    timeout: Duration,
    attempts: usize,
) -> Result<TokioResolver, NetError> {
    let configs = servers
        .iter()
        .map(|s| {
            let mut udp = ConnectionConfig::udp();
            udp.port = s.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = s.port();
            // Authoritative servers: an NXDOMAIN from one of them is the answer.
            NameServerConfig::new(s.ip(), true, vec![udp, tcp])
        })
        .collect();
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(configs),
        TokioRuntimeProvider::default(),
    );
    let o = builder.options_mut();
    o.cache_size = 0;
    o.use_hosts_file = ResolveHosts::Never;
    o.timeout = timeout;
    o.attempts = attempts;
    o.ndots = 0;
    builder.build()
}

/// `servers` for messages: "10.0.0.53:53, 10.0.0.54:53".
pub fn servers_text(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DnsResolver {
    /// A resolver asking `servers` (UDP, and TCP for truncated answers, on each port).
    pub fn new(servers: &[SocketAddr]) -> Result<DnsResolver, NetError> {
        Ok(DnsResolver {
            // The wait loop is the retry: one attempt keeps a round against a dead server
            // short enough to report it before the deadline.
            inner: hickory(servers, QUERY_TIMEOUT, 1)?,
            servers: servers_text(servers),
        })
    }

    fn failure(&self, e: &NetError) -> String {
        format!("{e} ({})", self.describe())
    }

    async fn ips(&self, name: &str, rtype: RecordType) -> Answer<IpAddr> {
        match self.inner.lookup(name, rtype).await {
            Ok(l) => Answer::Records(
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                    .collect(),
            )
            .normalised(),
            Err(e) if e.is_no_records_found() => Answer::Empty,
            Err(e) => Answer::Failed(self.failure(&e)),
        }
    }
}

impl Resolve for DnsResolver {
    async fn srv(&self, name: &str) -> Answer<Srv> {
        match self.inner.lookup(name, RecordType::SRV).await {
            Ok(l) => Answer::Records(
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::SRV(s) => Some(Srv {
                            target: absolute_lower(&s.target.to_ascii()),
                            port: s.port,
                        }),
                        _ => None,
                    })
                    .collect(),
            )
            .normalised(),
            Err(e) if e.is_no_records_found() => Answer::Empty,
            Err(e) => Answer::Failed(self.failure(&e)),
        }
    }

    async fn txt(&self, name: &str) -> Answer<Txt> {
        match self.inner.lookup(name, RecordType::TXT).await {
            Ok(l) => Answer::Records(
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(t) => Some(Txt(t
                            .txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).into_owned())
                            .collect())),
                        _ => None,
                    })
                    .collect(),
            )
            .normalised(),
            Err(e) if e.is_no_records_found() => Answer::Empty,
            Err(e) => Answer::Failed(self.failure(&e)),
        }
    }

    async fn addresses(&self, name: &str) -> Answer<IpAddr> {
        let (a, aaaa) = tokio::join!(
            self.ips(name, RecordType::A),
            self.ips(name, RecordType::AAAA)
        );
        merge(a, aaaa)
    }

    fn describe(&self) -> String {
        format!("nameserver {}", self.servers)
    }
}

/// Merges the A and AAAA answers: any failure makes the target unknown (we cannot tell
/// whether an address is missing), otherwise the union.
pub fn merge(a: Answer<IpAddr>, b: Answer<IpAddr>) -> Answer<IpAddr> {
    match (a, b) {
        (Answer::Failed(e), _) | (_, Answer::Failed(e)) => Answer::Failed(e),
        (Answer::Empty, Answer::Empty) => Answer::Empty,
        (Answer::Records(mut x), Answer::Records(y)) => {
            x.extend(y);
            Answer::Records(x).normalised()
        }
        (Answer::Records(x), Answer::Empty) | (Answer::Empty, Answer::Records(x)) => {
            Answer::Records(x)
        }
    }
}

/// Lower-case with exactly one trailing dot.
pub fn absolute_lower(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n.ends_with('.') {
        n
    } else {
        format!("{n}.")
    }
}

/// Parses `--nameserver`: `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 by default.
pub fn parse_nameserver(s: &str) -> Result<SocketAddr, String> {
    parse_dns_server(s).map_err(|e| format!("--nameserver {e}"))
}

/// Parses a DNS server flag: `IP`, `IP:PORT` or `[IPv6]:PORT`; port 53 by default.
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let bare = s.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{s:?} is not IP, IP:PORT or [IPv6]:PORT"))
}

/// The `nameserver` lines of a resolv.conf text, port 53. An empty list means glibc's
/// default, 127.0.0.1.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            match words.next() {
                Some("nameserver") => words.next(),
                _ => None,
            }
        })
        // A link-local IPv6 server with a %zone cannot be used without its scope id.
        .filter_map(|w| w.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if out.is_empty() {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
    }
    out
}

/// The system resolver's nameservers, from /etc/resolv.conf.
pub fn system_nameservers() -> Vec<SocketAddr> {
    parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

/// Every address on this host's interfaces, sorted.
pub fn local_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()?.iter().map(|i| i.ip()).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameserver_forms() {
        assert_eq!(
            parse_nameserver("127.0.0.1").unwrap(),
            "127.0.0.1:53".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("127.0.0.1:5353").unwrap(),
            "127.0.0.1:5353".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("[::1]:5353").unwrap(),
            "[::1]:5353".parse().unwrap()
        );
        assert_eq!(
            parse_nameserver("::1").unwrap(),
            "[::1]:53".parse().unwrap()
        );
        assert!(parse_nameserver("ns1.example.com").is_err());
    }

    #[test]
    fn resolv_conf_nameservers() {
        let text = "# comment\nsearch a.test\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver ::1\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec!["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(parse_resolv_conf(""), vec!["127.0.0.1:53".parse().unwrap()]);
    }

    #[test]
    fn merge_rules() {
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "::1".parse().unwrap();
        assert_eq!(
            merge(Answer::Records(vec![v6]), Answer::Records(vec![v4])),
            Answer::Records(vec![v4, v6])
        );
        assert_eq!(
            merge(Answer::Empty, Answer::Records(vec![v4])),
            Answer::Records(vec![v4])
        );
        assert_eq!(merge(Answer::Empty, Answer::Empty), Answer::Empty);
        assert!(matches!(
            merge(Answer::Records(vec![v4]), Answer::Failed("x".into())),
            Answer::Failed(_)
        ));
    }

    #[test]
    fn absolute_names() {
        assert_eq!(
            absolute_lower("Infra0.Example.Test"),
            "infra0.example.test."
        );
        assert_eq!(absolute_lower("a.b."), "a.b.");
    }
}
