//! etcd URLs as one type ([`EtcdUrl`], with its [`Scheme`]): the ones given on the
//! command line (`--advertise-peer-url`, `--listen-*-url`, `--advertise-client-url`),
//! parsed with a real URL parser (WHATWG URL, the `url` crate) so that a malformed one is
//! refused before any work starts, and the ones derived from the records (by name, by
//! address) that the plan carries to etcd.
//!
//! etcd reads these as `scheme://host:port` with nothing else: an explicit port, no path,
//! query, fragment or user info. Listen URLs must name an address (or `localhost`):
//! etcd binds addresses, and refuses names there.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use url::Url;

/// URL scheme of a cluster's peers, decided by which SRV set publishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain-text peers: `_etcd-server._tcp` / `_etcd-client._tcp`.
    Http,
    /// TLS peers: `_etcd-server-ssl._tcp` / `_etcd-client-ssl._tcp`.
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Scheme::Http),
            "https" => Ok(Scheme::Https),
            other => Err(format!("unknown scheme {other:?}: use http or https")),
        }
    }
}

/// The host part of a URL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// A name, lower-case, without trailing dot.
    Name(String),
    /// An address (IPv6 without brackets).
    Ip(IpAddr),
}

/// An etcd URL: `http[s]://host:port`, kept as given for etcd and parsed for matching.
/// Serialised as its text (plan JSON, env files, argv), read back with the same checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EtcdUrl {
    text: String,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host.
    pub host: Host,
    /// The port (always explicit).
    pub port: u16,
}

impl EtcdUrl {
    /// The URL as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `scheme://name-without-dot:port`, lower-case: the form etcd hashes into member
    /// IDs, so it must be byte-identical on every host.
    pub fn of_name(scheme: Scheme, target: &str, port: u16) -> EtcdUrl {
        let name = target.trim_end_matches('.').to_ascii_lowercase();
        EtcdUrl {
            text: format!("{scheme}://{name}:{port}"),
            scheme,
            host: Host::Name(name),
            port,
        }
    }

    /// `scheme://ip:port`, IPv6 in brackets (etcd listens on addresses, not names).
    pub fn of_ip(scheme: Scheme, ip: IpAddr, port: u16) -> EtcdUrl {
        let text = match ip {
            IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
            IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
        };
        EtcdUrl {
            text,
            scheme,
            host: Host::Ip(ip),
            port,
        }
    }

    /// The same URL with another port (the text otherwise as it was).
    pub fn with_port(&self, port: u16) -> EtcdUrl {
        if port == self.port {
            return self.clone();
        }
        let Ok(mut u) = Url::parse(&self.text) else {
            return self.clone();
        };
        if u.set_port(Some(port)).is_err() {
            return self.clone();
        }
        let text = u.as_str().trim_end_matches('/').to_string();
        EtcdUrl {
            text,
            port,
            ..self.clone()
        }
    }

    /// True for a listen URL that binds every address (`0.0.0.0`, `[::]`).
    pub fn is_unspecified(&self) -> bool {
        matches!(self.host, Host::Ip(a) if a.is_unspecified())
    }

    /// Parses a URL etcd listens on: as [`EtcdUrl`], and the host an address or
    /// `localhost`.
    pub fn parse_listen(s: &str) -> Result<EtcdUrl, String> {
        let u: EtcdUrl = s.parse()?;
        match &u.host {
            Host::Ip(_) => Ok(u),
            Host::Name(n) if n == "localhost" => Ok(u),
            Host::Name(n) => Err(format!(
                "{s:?} names the host {n}: etcd binds addresses, so a listen URL needs an IP \
                 address (e.g. http://10.0.0.1:2379 or http://[::1]:2379)"
            )),
        }
    }
}

impl PartialEq<str> for EtcdUrl {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for EtcdUrl {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl AsRef<str> for EtcdUrl {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for EtcdUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Tests write URLs as literals.
#[cfg(test)]
impl From<&str> for EtcdUrl {
    fn from(s: &str) -> EtcdUrl {
        s.parse().expect("a test URL")
    }
}

impl From<EtcdUrl> for String {
    fn from(u: EtcdUrl) -> String {
        u.text
    }
}

/// URLs as etcd takes them in one flag: comma-separated.
pub fn join(urls: &[EtcdUrl]) -> String {
    urls.iter()
        .map(EtcdUrl::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for EtcdUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for EtcdUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let bad = |why: &str| format!("{text:?} is not an etcd URL scheme://host:port: {why}");
        let u = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let scheme: Scheme = u.scheme().parse().map_err(|e: String| bad(&e))?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err(bad("user info is not allowed"));
        }
        if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
            return Err(bad("a path, query or fragment is not allowed"));
        }
        let host = match u.host() {
            Some(url::Host::Domain(d)) => Host::Name(d.trim_end_matches('.').to_ascii_lowercase()),
            Some(url::Host::Ipv4(a)) => Host::Ip(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Host::Ip(IpAddr::V6(a)),
            None => return Err(bad("no host")),
        };
        // The parser drops a port equal to the scheme's default (80, 443); etcd needs it
        // written out, so look at the text itself.
        let port = match u.port() {
            Some(p) => p,
            None if has_explicit_port(text) => u.port_or_known_default().unwrap_or_default(),
            None => return Err(bad("no port (e.g. :2379)")),
        };
        if port == 0 {
            return Err(bad("port 0"));
        }
        Ok(EtcdUrl {
            text: text.to_string(),
            scheme,
            host,
            port,
        })
    }
}

/// True when the authority of `text` ends in `:digits`.
fn has_explicit_port(text: &str) -> bool {
    let Some((_, rest)) = text.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let after_host = authority.rsplit_once(']').map_or(authority, |(_, r)| r);
    after_host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_urls() {
        let u: EtcdUrl = "http://M2.Example.Test.:32380".parse().unwrap();
        assert_eq!(u.host, Host::Name("m2.example.test".into()));
        assert_eq!((u.scheme, u.port), (Scheme::Http, 32380));
        assert_eq!(u.as_str(), "http://M2.Example.Test.:32380");
        let u: EtcdUrl = "https://[::1]:2380/".parse().unwrap();
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        let u: EtcdUrl = "http://10.0.0.1:80".parse().unwrap();
        assert_eq!(u.port, 80);
        for bad in [
            "m2.example.test",
            "m2.example.test:2380",
            "ftp://a:1",
            "http://a",
            "http://a:2380/path",
            "http://a:2380?x=1",
            "http://u@a:2380",
            "http://:2380",
            "http://a:99999",
            "",
        ] {
            assert!(bad.parse::<EtcdUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_urls_need_addresses() {
        assert!(EtcdUrl::parse_listen("http://127.0.0.1:2379").is_ok());
        assert!(EtcdUrl::parse_listen("http://localhost:2379").is_ok());
        let e = EtcdUrl::parse_listen("http://m0.example.test:2379").unwrap_err();
        assert!(e.contains("etcd binds addresses"), "{e}");
    }
}
