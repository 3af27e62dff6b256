//! The replay: what stock etcd's `--discovery-srv` does at bootstrap on one member host,
//! step by step, on a [`Snapshot`] of the records. Pure: no sockets.
//!
//! The steps follow etcd's own code (3.4 `pkg/srv` `GetCluster` and `embed` `Config`
//! `GetDNSClusterNames` / `PeerURLsMapAndToken`, then `etcdserver` `VerifyBootstrap`; in 3.5
//! the same `GetCluster` lives in `client/pkg/srv`), as docs/etcd-discovery.md §1–§3
//! describe:
//!
//! 1. resolve each advertised peer URL to one `ip:port` (Go: first IPv4, else first);
//! 2. per SRV set: look the set up (Go refuses the whole answer when a target is not a
//!    valid host name, e.g. an IP address written as a name), sort it by priority and
//!    weight, resolve each target the same way and *skip it silently* when it has no
//!    address, give the matching record this host's `--name` and every other one `"0"`,
//!    `"1"`, ... counted from 0 in each set, and drop the own record when its scheme
//!    differs from the advertised one;
//! 3. 3.4 keeps only the `-ssl` set (the plain set is read and thrown away); 3.5 and later
//!    concatenate both, so equal generated names from the two sets merge into one member;
//! 4. refuse when this host's name is not in the result, when its URLs differ from the
//!    advertised ones, or when one URL belongs to two members;
//! 5. otherwise the member and cluster IDs follow from the URLs and the token
//!    ([`crate::ids`]).
//!
//! Limitations: `VerifyBootstrap` resolves names with the first address of Go's RFC 6724
//! order, which on a dual-stack host is IPv6; the replay uses first IPv4 there too and
//! reports dual-stack targets as a warning instead. SRV weights above 0 make Go shuffle
//! records of one priority; the replay keeps the published order and says so.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::snapshot::{go_is_domain_name, Found, Snapshot, SrvRecord};
use crate::cluster::Scheme;
use crate::ids;
use crate::urls::{EtcdUrl, Host as UrlHost};

/// Which etcd behaviour to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Version {
    /// etcd 3.4: only the `-ssl` peer set.
    #[serde(rename = "3.4")]
    V3_4,
    /// etcd 3.5 and later: both peer sets, merged.
    #[serde(rename = "3.5+")]
    V3_5,
}

impl Version {
    /// `etcd 3.4` / `etcd 3.5+`, for messages.
    pub fn label(self) -> &'static str {
        match self {
            Version::V3_4 => "etcd 3.4",
            Version::V3_5 => "etcd 3.5+",
        }
    }

    /// The server sets this version builds its cluster from.
    pub fn reads(self) -> &'static [Scheme] {
        match self {
            Version::V3_4 => &[Scheme::Https],
            Version::V3_5 => &[Scheme::Https, Scheme::Http],
        }
    }
}

/// One member host as etcd would be started on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Its `--name`: the first label of its target, lower-case.
    pub name: String,
    /// Its SRV target, as published.
    pub target: String,
    /// Its `--initial-advertise-peer-urls`.
    pub advertise: Vec<String>,
    /// True when `--advertise` gave the URLs; false when doctor assumed the name URL.
    pub given: bool,
    #[serde(skip)]
    urls: Vec<EtcdUrl>,
}

impl Host {
    /// A host advertising `urls` (non-empty).
    pub fn new(name: String, target: String, urls: Vec<EtcdUrl>, given: bool) -> Host {
        Host {
            name,
            target,
            advertise: urls.iter().map(|u| u.as_str().to_string()).collect(),
            given,
            urls,
        }
    }

    /// The parsed advertise URLs.
    pub fn urls(&self) -> &[EtcdUrl] {
        &self.urls
    }
}

/// Why etcd refuses to start on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailKind {
    /// An advertised host name has no address.
    AdvertiseUnresolved,
    /// The SRV set(s) gave nothing (no records, lookup refused, every target skipped).
    SrvQuery,
    /// No SRV record resolved to the advertised `ip:port` (self-match failed).
    NotFound,
    /// The own member's URLs differ from the advertised ones.
    AdvertiseMismatch,
    /// One URL belongs to two members.
    DuplicateUrl,
}

/// What etcd does on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// etcd exits with this message.
    Fails {
        /// Which check.
        kind: FailKind,
        /// etcd's message.
        message: String,
    },
    /// etcd bootstraps this initial cluster.
    Starts {
        /// The members, by name.
        members: Vec<Member>,
        /// The cluster ID (hex, as etcd prints it).
        cluster_id: String,
    },
}

/// One member of the cluster a host would form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its name in this host's `--initial-cluster` (own `--name`, or `"0"`, `"1"` ...).
    pub name: String,
    /// Its peer URLs, sorted as etcd sorts them.
    pub peer_urls: Vec<String>,
    /// Its member ID (hex, as etcd prints it).
    pub id: String,
}

/// An SRV record etcd dropped without a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skip {
    /// The SRV owner name.
    pub record: String,
    /// `target:port`.
    pub endpoint: String,
}

/// What etcd does on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostReplay {
    /// The host's `--name`.
    pub name: String,
    /// Its advertised peer URLs.
    pub advertise: Vec<String>,
    /// SRV records skipped because their target has no address.
    pub skipped: Vec<Skip>,
    /// Start or failure.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl HostReplay {
    /// The cluster ID when etcd starts.
    pub fn cluster_id(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Starts { cluster_id, .. } => Some(cluster_id),
            Outcome::Fails { .. } => None,
        }
    }

    /// The members when etcd starts.
    pub fn members(&self) -> &[Member] {
        match &self.outcome {
            Outcome::Starts { members, .. } => members,
            Outcome::Fails { .. } => &[],
        }
    }
}

/// One etcd version on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionReplay {
    /// Which version.
    pub version: Version,
    /// The SRV owner names it builds the cluster from.
    pub reads: Vec<String>,
    /// Per host.
    pub hosts: Vec<HostReplay>,
}

/// Replays `version` on every host.
pub fn replay(snap: &Snapshot, version: Version, hosts: &[Host], token: &str) -> VersionReplay {
    VersionReplay {
        version,
        reads: version.reads().iter().map(|s| owner(snap, *s)).collect(),
        hosts: hosts
            .iter()
            .map(|h| replay_host(snap, version, h, token))
            .collect(),
    }
}

fn owner(snap: &Snapshot, scheme: Scheme) -> String {
    snap.service.record(crate::cluster::Role::Server, scheme)
}

/// etcd's service word for a set: `etcd-server-ssl[-S]` or `etcd-server[-S]` (the SRV
/// owner name's first label without its `_`).
fn service_word(snap: &Snapshot, scheme: Scheme) -> String {
    let label = muster_conventions::srv::owner_label(
        crate::cluster::Role::Server,
        scheme == Scheme::Https,
        snap.service.srv_name.as_deref(),
    );
    label.trim_start_matches('_').to_string()
}

/// Where Go says a lookup went; the real text names the host's resolver.
const ON: &str = "on <resolver>";

/// A Go `lookup NAME on SERVER: ...` error; Go writes the name as queried, without the
/// trailing dot.
fn lookup_error(name: &str, what: &str) -> String {
    format!("lookup {} {ON}: {what}", name.trim_end_matches('.'))
}

/// The records in the order Go's `LookupSRV` returns them: by priority, then weight
/// (Go shuffles by weight only when a weight is above 0; see [`random_order`]).
pub fn go_order(records: &[SrvRecord]) -> Vec<SrvRecord> {
    let mut v = records.to_vec();
    v.sort_by_key(|r| (r.priority, r.weight));
    v
}

/// True when Go would shuffle some records of one priority (a weight above 0).
pub fn random_order(records: &[SrvRecord]) -> bool {
    let mut by_priority: BTreeMap<u16, (usize, u32)> = BTreeMap::new();
    for r in records {
        let e = by_priority.entry(r.priority).or_default();
        e.0 += 1;
        e.1 += u32::from(r.weight);
    }
    by_priority.values().any(|(n, w)| *n > 1 && *w > 0)
}

/// The host:port of a URL, resolved as Go resolves it for etcd.
fn resolve_url(snap: &Snapshot, u: &EtcdUrl) -> Result<SocketAddr, String> {
    match &u.host {
        UrlHost::Ip(ip) => Ok(SocketAddr::new(*ip, u.port)),
        UrlHost::Name(n) => snap
            .go_pick(n)
            .map(|ip| SocketAddr::new(ip, u.port))
            .ok_or_else(|| lookup_error(n, "no such host")),
    }
}

/// `net.JoinHostPort`.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `name=url` parts one SRV set gives, or etcd's error for it.
type SetResult = Result<Vec<(String, String)>, String>;

/// One `GetCluster` call: the `name=url` parts of one set, or etcd's error; plus the
/// records skipped on the way.
fn get_cluster(
    snap: &Snapshot,
    scheme: Scheme,
    name: &str,
    advertise: &[EtcdUrl],
) -> (SetResult, Vec<Skip>) {
    let mut tcp2ap: BTreeMap<SocketAddr, &EtcdUrl> = BTreeMap::new();
    for u in advertise {
        match resolve_url(snap, u) {
            Ok(a) => {
                tcp2ap.insert(a, u);
            }
            Err(e) => return (Err(e), Vec::new()),
        }
    }
    let service = service_word(snap, scheme);
    let owner_name = owner(snap, scheme);
    let wrap = |e: String| format!("error querying DNS SRV records for _{service} {e}");
    let records = match snap.server(scheme) {
        Found::Records(r) => r,
        Found::None => {
            return (
                Err(wrap(lookup_error(&owner_name, "no such host"))),
                Vec::new(),
            )
        }
        Found::Failed(e) => return (Err(wrap(lookup_error(&owner_name, e))), Vec::new()),
    };
    if records.iter().any(|r| !go_is_domain_name(&r.target)) {
        return (
            Err(wrap(lookup_error(
                &owner_name,
                "DNS response contained records which contain invalid names",
            ))),
            Vec::new(),
        );
    }
    let mut temp_name = 0;
    let mut parts = Vec::new();
    let mut skipped = Vec::new();
    let mut err: Option<String> = None;
    for srv in go_order(records) {
        let Some(ip) = snap.go_pick(&srv.target).filter(|_| srv.target != ".") else {
            err = Some(lookup_error(&srv.target, "no such host"));
            skipped.push(Skip {
                record: owner_name.clone(),
                endpoint: srv.endpoint(),
            });
            continue;
        };
        let ap = tcp2ap.get(&SocketAddr::new(ip, srv.port));
        let n = if ap.is_some() {
            name.to_string()
        } else {
            temp_name += 1;
            (temp_name - 1).to_string()
        };
        let url = format!(
            "{scheme}://{}",
            join_host_port(srv.target.trim_end_matches('.'), srv.port)
        );
        match ap {
            Some(ap) if ap.scheme != scheme => {
                err = Some(format!(
                    "bootstrap at {url} from DNS for {service} has scheme mismatch with expected peer {ap}"
                ));
            }
            _ => parts.push((n, url)),
        }
    }
    if parts.is_empty() {
        if let Some(e) = err {
            return (Err(wrap(e)), skipped);
        }
    }
    (Ok(parts), skipped)
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

fn fails(kind: FailKind, message: String) -> Outcome {
    Outcome::Fails { kind, message }
}

/// What etcd `version` does on `host`.
pub fn replay_host(snap: &Snapshot, version: Version, host: &Host, token: &str) -> HostReplay {
    let mut skipped = Vec::new();
    let outcome = (|| {
        let (ssl, ssl_skips) = get_cluster(snap, Scheme::Https, &host.name, host.urls());
        let parts = match version {
            Version::V3_4 => {
                skipped = ssl_skips;
                match ssl {
                    Ok(p) => p,
                    Err(e) => return fails(kind_of(&e, host), e),
                }
            }
            Version::V3_5 => {
                let (plain, plain_skips) = get_cluster(snap, Scheme::Http, &host.name, host.urls());
                skipped = ssl_skips.into_iter().chain(plain_skips).collect();
                let mut parts = Vec::new();
                let mut errors = Vec::new();
                for r in [ssl, plain] {
                    match r {
                        Ok(p) => parts.extend(p),
                        Err(e) => errors.push(e),
                    }
                }
                if parts.is_empty() && !errors.is_empty() {
                    let e = errors.join("; ");
                    return fails(kind_of(&e, host), e);
                }
                parts
            }
        };
        // types.NewURLsMap: one member per name, URLs sorted.
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, u) in parts {
            map.entry(n).or_default().push(u);
        }
        for urls in map.values_mut() {
            urls.sort();
        }
        let Some(own) = map.get(&host.name) else {
            return fails(
                FailKind::NotFound,
                format!(
                    "cannot find local etcd member {:?} in SRV records",
                    host.name
                ),
            );
        };
        if let Err(e) = advertise_matches(snap, &host.name, own, host.urls()) {
            return fails(FailKind::AdvertiseMismatch, e);
        }
        let mut seen = BTreeMap::new();
        for urls in map.values() {
            for u in urls {
                *seen.entry(u.as_str()).or_insert(0) += 1;
            }
        }
        if seen.values().any(|n| *n > 1) {
            return fails(
                FailKind::DuplicateUrl,
                format!(
                    "initial cluster {} has duplicate url",
                    urls_map_string(&map)
                ),
            );
        }
        let members: Vec<Member> = map
            .iter()
            .map(|(n, urls)| Member {
                name: n.clone(),
                peer_urls: urls.clone(),
                id: ids::hex(ids::member_id(urls, token)),
            })
            .collect();
        let id_values: Vec<u64> = map
            .values()
            .map(|urls| ids::member_id(urls, token))
            .collect();
        Outcome::Starts {
            members,
            cluster_id: ids::hex(ids::cluster_id(&id_values)),
        }
    })();
    HostReplay {
        name: host.name.clone(),
        advertise: host.advertise.clone(),
        skipped,
        outcome,
    }
}

/// A `GetCluster` error that comes from resolving the host's own advertised URL, not
/// from the records.
fn kind_of(message: &str, host: &Host) -> FailKind {
    if message.starts_with("lookup ")
        && host.urls().iter().any(
            |u| matches!(&u.host, UrlHost::Name(n) if message.starts_with(&format!("lookup {n} "))),
        )
    {
        FailKind::AdvertiseUnresolved
    } else {
        FailKind::SrvQuery
    }
}

/// `URLsMap.String()`: `name=url,...` by name.
fn urls_map_string(map: &BTreeMap<String, Vec<String>>) -> String {
    map.iter()
        .flat_map(|(n, urls)| urls.iter().map(move |u| format!("{n}={u}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// `advertiseMatchesCluster`: the own member's URLs against the advertised ones, as
/// strings, then resolved.
fn advertise_matches(
    snap: &Snapshot,
    name: &str,
    own: &[String],
    advertise: &[EtcdUrl],
) -> Result<(), String> {
    let mut ap: Vec<String> = advertise.iter().map(|u| u.as_str().to_string()).collect();
    ap.sort();
    let init = own.to_vec();
    let missing_from_ap: Vec<String> = init
        .iter()
        .filter(|u| !ap.contains(u))
        .map(|u| format!("{name}={u}"))
        .collect();
    let detail = if init.len() != ap.len() {
        format!(
            "len({}) != len({})",
            go_quote_list(&ap),
            go_quote_list(&init)
        )
    } else if init == ap {
        return Ok(());
    } else {
        let resolve = |u: &String| -> Result<String, String> {
            let parsed: EtcdUrl = u.parse()?;
            match &parsed.host {
                UrlHost::Name(n) if n != "localhost" => {
                    let a = resolve_url(snap, &parsed)?;
                    Ok(format!("{}://{a}", parsed.scheme))
                }
                _ => Ok(u.clone()),
            }
        };
        let mut a: Vec<String> = ap.iter().map(resolve).collect::<Result<_, _>>()?;
        let mut b: Vec<String> = init.iter().map(resolve).collect::<Result<_, _>>()?;
        a.sort();
        b.sort();
        match a.iter().zip(&b).find(|(x, y)| x != y) {
            None => return Ok(()),
            Some((x, y)) => format!("resolved urls: {x:?} != {y:?}"),
        }
    };
    if !missing_from_ap.is_empty() {
        return Err(format!(
            "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({detail})",
            missing_from_ap.join(","),
            ap.join(",")
        ));
    }
    let extra: Vec<&String> = ap.iter().filter(|u| !init.contains(u)).collect();
    let own_map = advertise
        .iter()
        .map(|u| format!("{name}={}", u.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    if !extra.is_empty() {
        return Err(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={own_map}",
            extra
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    Err(format!(
        "failed to resolve {} to match --initial-cluster={own_map} ({detail})",
        ap.join(",")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Service;
    use crate::doctor::snapshot::Resolution;
    use std::collections::BTreeMap;

    fn srv(target: &str, port: u16) -> SrvRecord {
        SrvRecord {
            priority: 0,
            weight: 0,
            port,
            target: target.into(),
        }
    }

    fn v4(addrs: &[&str]) -> Resolution {
        Resolution {
            cname: None,
            a: Found::Records(addrs.iter().map(|a| a.parse().unwrap()).collect()),
            aaaa: Found::None,
        }
    }

    fn snap(
        ssl: Found<SrvRecord>,
        plain: Found<SrvRecord>,
        names: &[(&str, Resolution)],
    ) -> Snapshot {
        Snapshot {
            service: Service::new("d.test", None).unwrap(),
            server_ssl: ssl,
            server_plain: plain,
            client_ssl: Found::None,
            client_plain: Found::None,
            txt_ssl: Found::None,
            txt_plain: Found::None,
            names: names
                .iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect::<BTreeMap<_, _>>(),
            withheld: BTreeMap::new(),
        }
    }

    fn host(name: &str, url: &str) -> Host {
        Host::new(
            name.into(),
            format!("{name}.d.test."),
            vec![url.parse().unwrap()],
            false,
        )
    }

    fn three() -> Vec<SrvRecord> {
        (1..=3)
            .map(|i| srv(&format!("m{i}.d.test."), 2380))
            .collect()
    }

    fn addrs() -> Vec<(&'static str, Resolution)> {
        vec![
            ("m1.d.test.", v4(&["10.0.0.1"])),
            ("m2.d.test.", v4(&["10.0.0.2"])),
            ("m3.d.test.", v4(&["10.0.0.3"])),
        ]
    }

    /// The worked example of docs/etcd-discovery.md §3.
    #[test]
    fn healthy_ssl_set_gives_the_documented_cluster_id() {
        let recs: Vec<SrvRecord> = (1..=3)
            .map(|i| srv(&format!("m{i}.etcd.test."), 2380))
            .collect();
        let mut s = snap(
            Found::Records(recs),
            Found::None,
            &[
                ("m1.etcd.test.", v4(&["10.0.0.1"])),
                ("m2.etcd.test.", v4(&["10.0.0.2"])),
                ("m3.etcd.test.", v4(&["10.0.0.3"])),
            ],
        );
        s.service = Service::new("etcd.test", None).unwrap();
        let h = Host::new(
            "m1".into(),
            "m1.etcd.test.".into(),
            vec!["https://m1.etcd.test:2380".parse().unwrap()],
            false,
        );
        for v in [Version::V3_4, Version::V3_5] {
            let r = replay_host(&s, v, &h, "tkn");
            assert_eq!(r.cluster_id(), Some("d28fa59f2157d27f"), "{v:?}");
            let names: Vec<_> = r.members().iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, ["0", "1", "m1"]);
        }
    }

    #[test]
    fn plain_only_fails_on_3_4_and_starts_on_3_5() {
        let s = snap(Found::None, Found::Records(three()), &addrs());
        let h = host("m1", "http://m1.d.test:2380");
        let r = replay_host(&s, Version::V3_4, &h, "t");
        assert_eq!(
            r.outcome,
            Outcome::Fails {
                kind: FailKind::SrvQuery,
                message: "error querying DNS SRV records for _etcd-server-ssl lookup _etcd-server-ssl._tcp.d.test on <resolver>: no such host".into()
            }
        );
        assert_eq!(replay_host(&s, Version::V3_5, &h, "t").members().len(), 3);
    }

    #[test]
    fn a_target_without_address_is_skipped() {
        let mut a = addrs();
        a.pop();
        let s = snap(Found::Records(three()), Found::None, &a);
        let r = replay_host(
            &s,
            Version::V3_4,
            &host("m1", "https://m1.d.test:2380"),
            "t",
        );
        assert_eq!(r.members().len(), 2);
        assert_eq!(r.skipped[0].endpoint, "m3.d.test.:2380");
        let r3 = replay_host(
            &s,
            Version::V3_4,
            &host("m3", "https://m3.d.test:2380"),
            "t",
        );
        assert!(
            matches!(
                r3.outcome,
                Outcome::Fails {
                    kind: FailKind::AdvertiseUnresolved,
                    ..
                }
            ),
            "{r3:?}"
        );
    }

    #[test]
    fn second_a_record_does_not_self_match() {
        let mut a = addrs();
        a[0] = ("m1.d.test.", v4(&["10.0.0.9", "10.0.0.1"]));
        let s = snap(Found::Records(three()), Found::None, &a);
        let r = replay_host(&s, Version::V3_4, &host("m1", "https://10.0.0.1:2380"), "t");
        assert_eq!(
            r.outcome,
            Outcome::Fails {
                kind: FailKind::NotFound,
                message: "cannot find local etcd member \"m1\" in SRV records".into()
            }
        );
        let ok = replay_host(&s, Version::V3_4, &host("m1", "https://10.0.0.9:2380"), "t");
        assert_eq!(ok.members().len(), 3);
    }

    #[test]
    fn scheme_mismatch_drops_the_own_record() {
        let s = snap(Found::Records(three()), Found::None, &addrs());
        let r = replay_host(&s, Version::V3_4, &host("m1", "http://m1.d.test:2380"), "t");
        assert!(
            matches!(
                r.outcome,
                Outcome::Fails {
                    kind: FailKind::NotFound,
                    ..
                }
            ),
            "{r:?}"
        );
    }

    #[test]
    fn both_sets_merge_generated_names_on_3_5_and_split() {
        let s = snap(Found::Records(three()), Found::Records(three()), &addrs());
        let r1 = replay_host(
            &s,
            Version::V3_5,
            &host("m1", "https://m1.d.test:2380"),
            "t",
        );
        let r2 = replay_host(
            &s,
            Version::V3_5,
            &host("m2", "https://m2.d.test:2380"),
            "t",
        );
        let m0 = &r1.members()[0];
        assert_eq!(m0.name, "0");
        assert_eq!(
            m0.peer_urls,
            ["http://m2.d.test:2380", "https://m2.d.test:2380"]
        );
        assert_ne!(r1.cluster_id(), r2.cluster_id());
        // 3.4 ignores the plain set.
        let a = replay_host(
            &s,
            Version::V3_4,
            &host("m1", "https://m1.d.test:2380"),
            "t",
        );
        let b = replay_host(
            &s,
            Version::V3_4,
            &host("m2", "https://m2.d.test:2380"),
            "t",
        );
        assert_eq!(a.cluster_id(), b.cluster_id());
    }

    #[test]
    fn ip_literal_target_fails_the_whole_set() {
        let mut recs = three();
        recs[2] = srv("10.0.0.3.", 2380);
        let s = snap(Found::Records(recs), Found::None, &addrs());
        let r = replay_host(
            &s,
            Version::V3_4,
            &host("m1", "https://m1.d.test:2380"),
            "t",
        );
        match r.outcome {
            Outcome::Fails { message, .. } => {
                assert!(message.contains("invalid names"), "{message}")
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn two_targets_on_one_address_fail_the_advertise_check() {
        let mut a = addrs();
        a[1] = ("m2.d.test.", v4(&["10.0.0.1"]));
        let s = snap(Found::Records(three()), Found::None, &a);
        let r = replay_host(
            &s,
            Version::V3_4,
            &host("m1", "https://m1.d.test:2380"),
            "t",
        );
        match r.outcome {
            Outcome::Fails { kind, message } => {
                assert_eq!(kind, FailKind::AdvertiseMismatch);
                assert!(message.starts_with("--initial-cluster has m1=https://m2.d.test:2380 but missing from --initial-advertise-peer-urls=https://m1.d.test:2380"), "{message}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn srv_order_is_by_priority_then_weight() {
        let mut a = srv("a.", 1);
        a.priority = 2;
        let b = srv("b.", 1);
        let o = go_order(&[a.clone(), b.clone()]);
        assert_eq!(o[0].target, "b.");
        assert!(!random_order(&[a.clone(), b.clone()]));
        let mut c = srv("c.", 1);
        c.weight = 5;
        assert!(random_order(&[b, c]));
    }
}
