//! The DNS words of etcd discovery as types: the service (domain and `--srv-name`), the
//! SRV and TXT records one round reads, the answers (records, none, or a failed lookup),
//! and the URL forms etcd hashes into its IDs. Member names ([`MemberName`]) and URL
//! schemes ([`Scheme`]) live below, in [`crate::names`] and [`crate::urls`].
//!
//! Owner names follow RFC 2782 (`_etcd-server-ssl[-S]._tcp.D`); etcd adds the `-ssl`
//! part for TLS and the `-S` suffix for `--discovery-srv-name`.
//!
//! Limitations: names are ASCII; an internationalised domain must be given in its
//! A-label (`xn--`) form.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use crate::names::MemberName;
use crate::urls::EtcdUrl;
pub use crate::urls::Scheme;
use muster_conventions::srv::owner_name;
/// Who looks the records up: etcd peers (`_etcd-server`) or clients (`_etcd-client`).
pub use muster_conventions::srv::Role;

/// Checks a discovery domain and returns it absolute and lower-case (queries must not go
/// through a search list: Kubernetes pods use `ndots:5`).
pub fn parse_domain(domain: &str) -> Result<String, String> {
    let d = domain.trim().to_ascii_lowercase();
    let d = d.trim_end_matches('.');
    if d.is_empty() {
        return Err("the discovery domain is empty: pass e.g. --domain example.com".into());
    }
    if d.chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'))
        || d.contains("..")
        || d.split('.').any(|label| label.len() > 63)
    {
        return Err(format!(
            "{domain:?} is not a domain name (letters, digits, '-', '_' and dots): pass e.g. --domain example.com"
        ));
    }
    Ok(format!("{d}."))
}

/// Checks a `--srv-name` suffix: one label, as etcd's `--discovery-srv-name` takes it.
pub fn parse_srv_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty()
        || s.chars()
            .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(format!(
            "{s:?} must be a single label suffix (letters, digits, '-', '_'), e.g. --srv-name prod"
        ));
    }
    Ok(s.to_string())
}

/// The discovery domain and optional service-name suffix, as etcd's `--discovery-srv`
/// and `--discovery-srv-name` take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Absolute, lower-case domain, e.g. `example.test.`.
    pub domain: String,
    /// The `--srv-name` suffix, if any.
    pub srv_name: Option<String>,
}

impl Service {
    /// Checks and normalises both parts (see [`parse_domain`] and [`parse_srv_name`]); an
    /// empty suffix means none.
    pub fn new(domain: &str, srv_name: Option<&str>) -> Result<Service, String> {
        let srv_name = match srv_name.map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => Some(parse_srv_name(s)?),
            None => None,
        };
        Ok(Service {
            domain: parse_domain(domain)?,
            srv_name,
        })
    }

    /// The SRV owner name for `role` and `scheme`, e.g. `_etcd-server-ssl-prod._tcp.d.`.
    pub fn record(&self, role: Role, scheme: Scheme) -> String {
        let tls = scheme == Scheme::Https;
        owner_name(role, tls, self.srv_name.as_deref(), &self.domain)
    }

    /// The token used when `--token` is not given: `muster:<domain>` or
    /// `muster:<domain>:<srv-name>`, domain without the trailing dot. Every host derives
    /// the same one, and two clusters in different domains (or with different suffixes)
    /// get different tokens, hence different member and cluster IDs.
    pub fn default_token(&self) -> String {
        let d = self.domain.trim_end_matches('.');
        match &self.srv_name {
            Some(s) => format!("muster:{d}:{s}"),
            None => format!("muster:{d}"),
        }
    }
}

/// One SRV record: where a member (or its client port) is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Srv {
    /// Absolute, lower-case target name, e.g. `infra0.example.test.`.
    pub target: String,
    /// Port from the record.
    pub port: u16,
}

/// One TXT record: its character-strings (RFC 1035 section 3.3.14), as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Txt(pub Vec<String>);

impl fmt::Display for Txt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|s| format!("{s:?}")).collect();
        f.write_str(&parts.join(" "))
    }
}

/// What one lookup gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<T> {
    /// Records of the asked type (sorted, without duplicates).
    Records(Vec<T>),
    /// NXDOMAIN or NODATA: the name has no records of this type (yet).
    Empty,
    /// The lookup itself failed (timeout, refused, SERVFAIL ...), with the reason.
    Failed(String),
}

impl<T: Ord> Answer<T> {
    /// Sorts and deduplicates so that two reads of the same data compare equal.
    pub fn normalised(self) -> Answer<T> {
        match self {
            Answer::Records(mut v) => {
                v.sort();
                v.dedup();
                if v.is_empty() {
                    Answer::Empty
                } else {
                    Answer::Records(v)
                }
            }
            other => other,
        }
    }
}

/// Everything one discovery round read. Two rounds that read the same data compare equal,
/// which is how the wait loop sees that the records are stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// `_etcd-server-ssl[-S]._tcp.D` (None when `--scheme http` skips it).
    pub server_ssl: Option<Answer<Srv>>,
    /// `_etcd-server[-S]._tcp.D` (None when `--scheme https` skips it).
    pub server_plain: Option<Answer<Srv>>,
    /// `_etcd-client-ssl[-S]._tcp.D`.
    pub client_ssl: Answer<Srv>,
    /// `_etcd-client[-S]._tcp.D`.
    pub client_plain: Answer<Srv>,
    /// TXT records at each server SRV owner name asked, where the cluster size is
    /// published as `muster-size=N`. A missing entry reads as no records.
    pub sizes: BTreeMap<String, Answer<Txt>>,
    /// A and AAAA records of every server SRV target, merged.
    pub addresses: BTreeMap<String, Answer<IpAddr>>,
}

/// `scheme://name-without-dot:port`: the form etcd hashes into member IDs, so it must be
/// byte-identical on every host ([`EtcdUrl::of_name`]).
pub fn name_url(scheme: Scheme, target: &str, port: u16) -> EtcdUrl {
    EtcdUrl::of_name(scheme, target, port)
}

/// `scheme://ip:port`, IPv6 in brackets ([`EtcdUrl::of_ip`]).
pub fn ip_url(scheme: Scheme, ip: IpAddr, port: u16) -> EtcdUrl {
    EtcdUrl::of_ip(scheme, ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        let s = Service::new("Example.Test.", Some("prod")).unwrap();
        assert_eq!(
            s.record(Role::Server, Scheme::Https),
            "_etcd-server-ssl-prod._tcp.example.test."
        );
        assert_eq!(
            s.record(Role::Client, Scheme::Http),
            "_etcd-client-prod._tcp.example.test."
        );
        assert_eq!(s.default_token(), "muster:example.test:prod");
        let plain = Service::new("example.test", None).unwrap();
        assert_eq!(plain.default_token(), "muster:example.test");
        assert!(Service::new("", None).is_err());
        assert!(Service::new("a b", None).is_err());
        assert!(Service::new("x.test", Some("a.b")).is_err());
    }

    #[test]
    fn member_names_are_case_insensitive_and_checked() {
        assert_eq!(
            MemberName::parse("M1").unwrap(),
            MemberName::parse("m1").unwrap()
        );
        assert_eq!(MemberName::parse("M1").unwrap().as_str(), "m1");
        assert_eq!(
            MemberName::of_target("Infra0.Example.Test.")
                .unwrap()
                .as_str(),
            "infra0"
        );
        assert!(MemberName::parse("").is_err());
        assert!(MemberName::parse("m 1").is_err());
        assert!(MemberName::of_target("m\\0320.example.test.").is_err());
    }

    #[test]
    fn urls_are_lower_case_without_trailing_dot() {
        assert_eq!(
            name_url(Scheme::Https, "Infra0.Example.Test.", 2380),
            "https://infra0.example.test:2380"
        );
        assert_eq!(
            ip_url(Scheme::Http, "::1".parse().unwrap(), 2380),
            "http://[::1]:2380"
        );
    }
}
