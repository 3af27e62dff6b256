//! From records and replays to problems: one line each, with the fix.
//!
//! Record problems name the cause (a target without an address, an alias, an IP address
//! as target ...); replay problems name the effect on etcd (which hosts exit with which
//! message, which hosts would bootstrap which cluster). An `error` is something that makes
//! etcd fail or split; a `warning` makes it fail only under a condition doctor cannot see
//! (how a host advertises itself, whether it has IPv6), or is a risk to the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::Serialize;

use super::replay::{random_order, FailKind, Outcome, Version, VersionReplay};
use super::snapshot::{go_is_domain_name, Found, Snapshot, SrvRecord};
use crate::cluster::settle::{txt_size, TxtSizeError};
use crate::cluster::{Scheme, Txt};

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// etcd would fail or split.
    Error,
    /// etcd fails under a condition doctor cannot see, or the cluster is at risk.
    Warning,
}

/// One problem and its fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// What it concerns: `records`, `etcd 3.4`, `etcd 3.5+`, `certificate`, `cluster`.
    pub scope: String,
    /// The problem.
    pub message: String,
    /// What to do.
    pub fix: String,
    /// The etcd version it applies to; None for all.
    #[serde(skip)]
    pub version: Option<Version>,
}

impl Problem {
    /// A problem of the records themselves.
    pub fn records(severity: Severity, message: String, fix: String) -> Problem {
        Problem {
            severity,
            scope: "records".into(),
            message,
            fix,
            version: None,
        }
    }

    fn etcd(version: Version, severity: Severity, message: String, fix: String) -> Problem {
        Problem {
            severity,
            scope: version.label().into(),
            message,
            fix,
            version: Some(version),
        }
    }

    /// The line doctor prints.
    pub fn line(&self) -> String {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        format!("{sev}: {}: {}; fix: {}", self.scope, self.message, self.fix)
    }
}

fn dotless(name: &str) -> &str {
    name.trim_end_matches('.')
}

/// The value of a `muster-size=N` TXT record set: Ok(None) without one, Err for a
/// malformed or conflicting record (the census's reader, [`txt_size`]).
pub fn published_size(txt: &Found<Vec<String>>) -> Result<Option<usize>, String> {
    txt_size(txt.records().iter().map(Vec::as_slice)).map_err(|e| match e {
        TxtSizeError::Malformed(strings) => {
            format!("TXT {} is not \"muster-size=N\"", Txt(strings.to_vec()))
        }
        TxtSizeError::Conflict(sizes) => {
            format!("the TXT records publish different sizes {sizes:?}")
        }
    })
}

/// Problems of the records, whatever version reads them.
pub fn of_records(snap: &Snapshot) -> Vec<Problem> {
    let mut out = Vec::new();
    of_sets(snap, &mut out);
    of_targets(snap, &mut out);
    of_sizes(snap, &mut out);
    out
}

/// The two server SRV sets: failed lookups, sets a gate withholds, which set each etcd
/// version reads.
fn of_sets(snap: &Snapshot, out: &mut Vec<Problem>) {
    let ssl_owner = snap
        .service
        .record(crate::cluster::Role::Server, Scheme::Https);
    let plain_owner = snap
        .service
        .record(crate::cluster::Role::Server, Scheme::Http);
    for scheme in [Scheme::Https, Scheme::Http] {
        if let Found::Failed(e) = snap.server(scheme) {
            let owner = snap.service.record(crate::cluster::Role::Server, scheme);
            out.push(Problem::records(
                Severity::Error,
                format!("the SRV lookup of {owner} failed: {e}"),
                "make the nameserver answer for the zone (etcd reads a failed set as no members)"
                    .into(),
            ));
        }
    }
    // A completeness gate withholds a set until every member has an address: what it
    // waits for is the problem, not the records, which are published.
    for (owner, why) in &snap.withheld {
        let why = why.strip_prefix(&format!("{owner}: ")).unwrap_or(why);
        out.push(Problem::records(
            Severity::Error,
            format!("the nameserver withholds the SRV records at {owner} (EDE 14 Not Ready, a completeness gate): {why}; etcd finds no members until the set is complete"),
            "publish what the gate waits for (each member's SRV record and A/AAAA record; `muster-agent register` publishes both for its host), then run doctor again; `musterd check` on the server names the same".into(),
        ));
    }
    let ssl = snap.server_ssl.records();
    let plain = snap.server_plain.records();
    match (ssl.is_empty(), plain.is_empty()) {
        (true, true) if !snap.withheld.is_empty() => {}
        (true, true) if !matches!(snap.server_ssl, Found::Failed(_)) && !matches!(snap.server_plain, Found::Failed(_)) => {
            out.push(Problem::records(
                Severity::Error,
                format!("neither {ssl_owner} nor {plain_owner} has SRV records: etcd fails on every host"),
                format!("publish one SRV record per member at {ssl_owner} (TLS peers) or {plain_owner} (plain http, etcd 3.5+ only)"),
            ));
        }
        (true, false) => out.push(Problem::etcd(
            Version::V3_4,
            Severity::Error,
            format!("reads only {ssl_owner}, which has no records; the {} records at {plain_owner} play no part, so every member fails", plain.len()),
            format!("publish the peers at {ssl_owner} and run TLS peers, or run etcd 3.5+, or start etcd through muster-agent (it reads {plain_owner} itself)"),
        )),
        (false, false) => {
            out.push(Problem::etcd(
                Version::V3_5,
                Severity::Error,
                format!("reads both {ssl_owner} and {plain_owner} and numbers the other members from 0 in each, so two records get the same generated name and merge into one member"),
                "publish exactly one of the two sets for a cluster".into(),
            ));
            out.push(Problem::etcd(
                Version::V3_4,
                Severity::Warning,
                format!("ignores the {} records at {plain_owner}", plain.len()),
                format!("delete {plain_owner} (3.5+ would merge it) or move its members to {ssl_owner}"),
            ));
            if random_order(ssl) || random_order(plain) {
                out.push(Problem::etcd(
                    Version::V3_5,
                    Severity::Warning,
                    "SRV weights above 0: Go shuffles the records, so which members merge differs from host to host and from start to start".into(),
                    "publish one set, with weight 0".into(),
                ));
            }
        }
        _ => {}
    }
}

/// Each target: a name Go accepts, its addresses, aliases, shared endpoints.
fn of_targets(snap: &Snapshot, out: &mut Vec<Problem>) {
    let ssl_owner = snap
        .service
        .record(crate::cluster::Role::Server, Scheme::Https);
    let plain_owner = snap
        .service
        .record(crate::cluster::Role::Server, Scheme::Http);
    let ssl = snap.server_ssl.records();
    let plain = snap.server_plain.records();
    // Each target once, with the owner names it is published at.
    let mut targets: BTreeMap<String, (SrvRecord, Vec<String>)> = BTreeMap::new();
    for (owner, records) in [(&ssl_owner, ssl), (&plain_owner, plain)] {
        for r in records {
            targets
                .entry(r.key())
                .or_insert_with(|| (r.clone(), Vec::new()))
                .1
                .push(owner.clone());
        }
    }
    let mut endpoints: BTreeMap<SocketAddr, BTreeSet<String>> = BTreeMap::new();
    for (key, (r, owners)) in &targets {
        let at = owners.join(" and ");
        if key == "." {
            continue;
        }
        if !go_is_domain_name(&r.target) {
            out.push(Problem::records(
                Severity::Error,
                format!("target {} at {at} is not a host name Go accepts (an IP address written as a name?): Go's resolver refuses the whole SRV answer, so etcd reads no member from {at}", r.target),
                "point the record at a host name that has an A record, never at an address".into(),
            ));
            continue;
        }
        let Some(res) = snap.resolution(key) else {
            continue;
        };
        if let Some(e) = res.failure() {
            out.push(Problem::records(
                Severity::Error,
                format!("the address lookup of target {} at {at} failed ({e}); etcd skips a target it cannot resolve", r.target),
                "make the nameserver answer for the target's zone".into(),
            ));
            continue;
        }
        let all = res.all();
        if all.is_empty() {
            out.push(Problem::records(
                Severity::Error,
                format!("target {} at {at} has no A or AAAA record: etcd skips it without a message and the other members bootstrap a smaller cluster without it", r.target),
                format!("publish {}'s address before any member starts (a TXT \"muster-size=N\" at {} makes musterd withhold the set until it is complete)", dotless(&r.target), owners[0]),
            ));
            continue;
        }
        for port in owners_ports(snap, key) {
            if let Some(ip) = res.go_pick() {
                endpoints
                    .entry(SocketAddr::new(ip, port))
                    .or_default()
                    .insert(r.target.clone());
            }
        }
        if let Some(c) = &res.cname {
            out.push(Problem::records(
                Severity::Warning,
                format!("target {} at {at} is an alias of {c}: etcd follows it, but the alias goes into the member's URLs and must be in its certificate, and RFC 2782 forbids aliases as targets", r.target),
                format!("point the SRV record at {c}"),
            ));
        }
        let v4 = res.a.records();
        let v6 = res.aaaa.records();
        if v4.len() > 1 {
            out.push(Problem::records(
                Severity::Warning,
                format!("target {} has {} A records: etcd compares only the first, {}; a host that advertises another of them ({}) in its URL fails with \"cannot find local etcd member\"", r.target, v4.len(), v4[0], v4[1..].iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
                format!("publish one A record per target, or advertise the name URL scheme://{}:PORT", dotless(&r.target)),
            ));
        }
        if !v4.is_empty() && !v6.is_empty() {
            out.push(Problem::records(
                Severity::Warning,
                format!("target {} has A and AAAA records: etcd compares only the IPv4 address {}, so a host that advertises an IPv6 URL such as https://[{}]:PORT fails with \"cannot find local etcd member\", and one that advertises https://{}:PORT fails the advertise check on a dual-stack host", r.target, v4[0], v6[0], v4[0]),
                format!("advertise the name URL scheme://{}:PORT", dotless(&r.target)),
            ));
        }
    }
    for (ep, names) in &endpoints {
        if names.len() > 1 {
            out.push(Problem::records(
                Severity::Error,
                format!("targets {} all resolve to {ep}: etcd takes them for one member with several URLs on that host and for separate members on the others", names.iter().cloned().collect::<Vec<_>>().join(", ")),
                "give every member its own address (or port)".into(),
            ));
        }
    }
}

/// The size records and the size itself.
fn of_sizes(snap: &Snapshot, out: &mut Vec<Problem>) {
    for scheme in [Scheme::Https, Scheme::Http] {
        let owner = snap.service.record(crate::cluster::Role::Server, scheme);
        let records = snap.server(scheme).records();
        match published_size(snap.txt(scheme)) {
            Err(e) => out.push(Problem::records(
                Severity::Error,
                format!("{e} at {owner}"),
                format!("publish exactly one {owner} TXT \"muster-size=N\" with N the number of members"),
            )),
            Ok(Some(n)) if n != records.len() && !records.is_empty() => out.push(Problem::records(
                Severity::Error,
                format!("TXT \"muster-size={n}\" at {owner} but {} SRV records there", records.len()),
                if n > records.len() {
                    format!("publish the missing {} member record(s), or correct the TXT record", n - records.len())
                } else {
                    "delete the extra SRV records, or correct the TXT record".into()
                },
            )),
            Ok(Some(n)) if records.is_empty() && !matches!(snap.server(scheme), Found::Failed(_)) => out.push(Problem::records(
                Severity::Error,
                format!("TXT \"muster-size={n}\" at {owner} but no SRV records there (musterd withholds a set until it has {n} targets with addresses)"),
                format!("publish the {n} member records and their addresses"),
            )),
            _ => {}
        }
        let n = published_size(snap.txt(scheme))
            .ok()
            .flatten()
            .unwrap_or(records.len());
        if n > 0 && n.is_multiple_of(2) {
            out.push(Problem::records(
                Severity::Warning,
                format!("{owner} has an even number of members ({n}): it tolerates no more failures than {}", n - 1),
                format!("run {} or {} members", n - 1, n + 1),
            ));
        }
    }
}

/// The ports a target is published with, in the server sets.
fn owners_ports(snap: &Snapshot, key: &str) -> BTreeSet<u16> {
    [&snap.server_ssl, &snap.server_plain]
        .iter()
        .flat_map(|f| f.records())
        .filter(|r| r.key() == key)
        .map(|r| r.port)
        .collect()
}

/// The size the records mean for `version`: the published `muster-size`, else the number
/// of SRV records it reads.
fn intended_size(snap: &Snapshot, version: Version) -> usize {
    version
        .reads()
        .iter()
        .map(|s| {
            published_size(snap.txt(*s))
                .ok()
                .flatten()
                .unwrap_or(snap.server(*s).records().len())
        })
        .sum()
}

fn fix_for(kind: FailKind, snap: &Snapshot, version: Version) -> String {
    let ssl_owner = snap
        .service
        .record(crate::cluster::Role::Server, Scheme::Https);
    match kind {
        FailKind::SrvQuery if version == Version::V3_4 && snap.server_ssl.records().is_empty() && !snap.server_plain.records().is_empty() =>
            format!("publish the peers at {ssl_owner} (TLS), or run etcd 3.5+, or start etcd through muster-agent"),
        FailKind::SrvQuery => "publish SRV records whose targets are host names with addresses (see the records lines)".into(),
        FailKind::AdvertiseUnresolved => "publish the advertised host's address before starting etcd".into(),
        FailKind::NotFound => "advertise the URL of the host's own SRV record, scheme://target:port, with the scheme of its set: etcd compares the target's first IPv4 address and port with the advertised URL's".into(),
        FailKind::AdvertiseMismatch => "give every member its own address and port, published once: a host whose address two SRV records share gets both URLs".into(),
        FailKind::DuplicateUrl => "publish each target once".into(),
    }
}

/// Problems of one version's replay: which hosts fail, and whether the others agree.
pub fn of_replay(snap: &Snapshot, vr: &VersionReplay) -> Vec<Problem> {
    let v = vr.version;
    let mut out = Vec::new();
    let mut failures: BTreeMap<(FailKind, &str), Vec<&str>> = BTreeMap::new();
    let mut clusters: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, usize> = BTreeMap::new();
    for h in &vr.hosts {
        match &h.outcome {
            Outcome::Fails { kind, message } => {
                failures.entry((*kind, message)).or_default().push(&h.name);
            }
            Outcome::Starts {
                members,
                cluster_id,
            } => {
                clusters.entry(cluster_id).or_default().push(&h.name);
                sizes.insert(cluster_id, members.len());
            }
        }
    }
    for ((kind, message), hosts) in &failures {
        out.push(Problem::etcd(
            v,
            Severity::Error,
            format!("etcd exits on {} with: {message}", hosts.join(", ")),
            fix_for(*kind, snap, v),
        ));
    }
    let skipped: BTreeSet<String> = vr
        .hosts
        .iter()
        .flat_map(|h| h.skipped.iter().map(|s| s.endpoint.clone()))
        .collect();
    let skipped_text = if skipped.is_empty() {
        String::new()
    } else {
        format!(
            " (skipped without a message: {})",
            skipped.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    };
    let intended = intended_size(snap, v);
    if clusters.len() > 1 {
        let groups: Vec<String> = clusters
            .iter()
            .map(|(id, hosts)| {
                format!(
                    "{} -> cluster {id} of {} members",
                    hosts.join(", "),
                    sizes[id]
                )
            })
            .collect();
        let both = !snap.server_ssl.records().is_empty() && !snap.server_plain.records().is_empty();
        out.push(Problem::etcd(
            v,
            Severity::Error,
            format!("the hosts would bootstrap {} different clusters: {}; they never agree (\"cluster ID mismatch\"){skipped_text}", clusters.len(), groups.join("; ")),
            if both && v == Version::V3_5 {
                "publish one SRV set per cluster".into()
            } else {
                "make every member read the same complete records: fix the records lines first".into()
            },
        ));
    } else if let Some((id, hosts)) = clusters.iter().next() {
        let n = sizes[id];
        if n < intended {
            out.push(Problem::etcd(
                v,
                Severity::Error,
                format!("{} would bootstrap a {n}-member cluster although the records mean {intended} members{skipped_text}", hosts.join(", ")),
                "publish every member's address before any member starts; the members started too early must be wiped and started again".into(),
            ));
        }
    }
    out
}
