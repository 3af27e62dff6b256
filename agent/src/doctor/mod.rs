//! `muster-agent doctor`: what *stock* etcd `--discovery-srv` would do with the records
//! as published now, on every member host, for etcd 3.4 and for 3.5+ — and each problem
//! on one line with its fix.
//!
//! muster-agent itself never bootstraps a partial cluster, but hosts that run etcd's own
//! DNS discovery get no such guard: a late address record makes a smaller, split
//! cluster, and a failed self-match ends in "cannot find local etcd member" with no
//! detail. Doctor replays etcd's rules (docs/etcd-discovery.md §1–§6; [`replay`]) on a
//! raw read of the records ([`snapshot`]), checks peer certificates ([`cert`]), compares
//! the records with the running cluster's membership when one answers ([`live`]), and
//! turns all of it into [`problems`]. Exit status 1 when etcd would fail or split.
//!
//! Each member host is an SRV target; its `--name` is the target's first label and it is
//! assumed to advertise the name URL of its record (`scheme://target:port`, as etcd's
//! documentation does) unless `--advertise NAME=URL` says otherwise.
//!
//! Limitations: see [`replay`] (address order, weights), [`cert`] (no chain
//! verification) and [`live`] (no https).

pub mod cert;
pub mod live;
pub mod problems;
pub mod replay;
pub mod snapshot;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::cluster::{Role, Scheme, Service};
use crate::urls::{EtcdUrl, Host as UrlHost};
use crate::Error;
use problems::{Problem, Severity};
use replay::{Host, Outcome, Version, VersionReplay};
use snapshot::{Found, Snapshot};

/// `doctor`, checked.
#[derive(Debug, Clone)]
pub struct DoctorConfig {
    /// Discovery domain.
    pub domain: String,
    /// Service-name suffix.
    pub srv_name: Option<String>,
    /// DNS servers given; empty: the system's.
    pub nameserver: Vec<SocketAddr>,
    /// The etcd versions replayed (only they decide the exit status).
    pub versions: Vec<Version>,
    /// How a host NAME sets --initial-advertise-peer-urls, if not by its name URL.
    pub advertise: Vec<(String, EtcdUrl)>,
    /// The members' --initial-cluster-token.
    pub initial_cluster_token: String,
    /// Peer certificates to check: for one member (NAME) or every one.
    pub peer_cert: Vec<(Option<String>, PathBuf)>,
    /// The members run with --peer-trusted-ca-file.
    pub peer_trusted_ca: bool,
    /// The report as JSON instead of text.
    pub json: bool,
}

/// Doctor found problems that make etcd fail or split.
#[derive(Debug, thiserror::Error)]
#[error("{errors} problem(s) above would make stock etcd fail or split the cluster")]
pub struct Failing {
    /// How many.
    pub errors: usize,
}

/// The SANs one https member needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertNeed {
    /// The host.
    pub name: String,
    /// SANs its server certificate must have.
    pub required: Vec<String>,
    /// For `--peer-client-cert-auth`: one of these.
    pub client_auth_one_of: Vec<String>,
}

/// What the running cluster said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LiveReport {
    /// The client URL that answered.
    pub answered: Option<String>,
    /// Its members.
    pub members: Vec<live::LiveMember>,
    /// Why no cluster was compared (or what failed on the way).
    pub notes: Vec<String>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The discovery domain.
    pub domain: String,
    /// The records read.
    pub records: Snapshot,
    /// The member hosts and how they advertise themselves.
    pub hosts: Vec<Host>,
    /// Per etcd version.
    pub replays: Vec<VersionReplay>,
    /// SANs the https members need.
    pub certificates: Vec<CertNeed>,
    /// Certificates checked.
    pub checked_certificates: Vec<cert::CertInfo>,
    /// The running cluster.
    pub cluster: LiveReport,
    /// Every problem, errors first.
    pub problems: Vec<Problem>,
    /// Problems that make the chosen etcd versions fail or split.
    pub failing: usize,
}

/// Runs `doctor`: prints the report; Err when etcd would fail or split.
pub fn run(args: &DoctorConfig) -> Result<(), Error> {
    let service = Service::new(&args.domain, args.srv_name.as_deref()).map_err(Error::Usage)?;
    let certs = args
        .peer_cert
        .iter()
        .map(|(n, f)| cert::load(f).map(|c| (n.clone(), c)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Usage(format!("--peer-cert: {e}")))?;
    let servers = if args.nameserver.is_empty() {
        crate::discover::system_nameservers()
    } else {
        args.nameserver.clone()
    };
    let extra: Vec<String> = args
        .advertise
        .iter()
        .filter_map(|(_, u)| match &u.host {
            UrlHost::Name(n) => Some(n.clone()),
            UrlHost::Ip(_) => None,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let snap = runtime.block_on(async {
        let reader = snapshot::Reader::new(&servers).map_err(Error::Resolver)?;
        Ok::<_, Error>(reader.read(&service, &extra).await)
    })?;
    let hosts = hosts(&snap, &args.advertise).map_err(Error::Usage)?;
    let cluster = ask_cluster(&snap);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let report = diagnose(
        snap,
        hosts,
        &args.versions,
        &args.initial_cluster_token,
        &certs,
        args.peer_trusted_ca,
        now,
        cluster,
    );
    if args.json {
        // Serialising plain data into a String cannot fail.
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", render(&report));
    }
    if report.failing > 0 {
        return Err(Error::Doctor(Failing {
            errors: report.failing,
        }));
    }
    Ok(())
}

/// The member hosts: every server target once (`-ssl` set first), advertising the name
/// URL of its first record, or what `--advertise` gives.
pub fn hosts(snap: &Snapshot, advertise: &[(String, EtcdUrl)]) -> Result<Vec<Host>, String> {
    let mut seen: BTreeMap<String, ()> = BTreeMap::new();
    let mut out = Vec::new();
    for scheme in [Scheme::Https, Scheme::Http] {
        for r in snap.server(scheme).records() {
            // A target Go refuses is no host etcd could run on; the record checks say so.
            if !snapshot::go_is_domain_name(&r.target)
                || r.target == "."
                || seen.insert(r.key(), ()).is_some()
            {
                continue;
            }
            let name = r.key().split('.').next().unwrap_or_default().to_string();
            let given: Vec<EtcdUrl> = advertise
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, u)| u.clone())
                .collect();
            let (urls, is_given) = if given.is_empty() {
                let text = format!("{scheme}://{}:{}", r.target.trim_end_matches('.'), r.port);
                match text.parse::<EtcdUrl>() {
                    Ok(u) => (vec![u], false),
                    // A target that is no URL host (e.g. with a label etcd cannot put in a
                    // URL) is reported by the record checks; no host to replay.
                    Err(_) => continue,
                }
            } else {
                (given, true)
            };
            out.push(Host::new(name, r.target.clone(), urls, is_given));
        }
    }
    if let Some((n, _)) = advertise
        .iter()
        .find(|(n, _)| !out.iter().any(|h: &Host| &h.name == n))
    {
        return Err(format!(
            "--advertise {n}=...: no SRV target of {} or {} is named {n} (the first label of a target)",
            snap.service.record(Role::Server, Scheme::Https),
            snap.service.record(Role::Server, Scheme::Http)
        ));
    }
    Ok(out)
}

/// Asks the first plain-http client URL that answers for the member list.
fn ask_cluster(snap: &Snapshot) -> LiveReport {
    let mut report = LiveReport::default();
    let mut https = Vec::new();
    for (scheme, set) in [
        (Scheme::Https, &snap.client_ssl),
        (Scheme::Http, &snap.client_plain),
    ] {
        for r in set.records() {
            let url = format!("{scheme}://{}:{}", r.target.trim_end_matches('.'), r.port);
            if scheme == Scheme::Https {
                https.push(url);
                continue;
            }
            let Some(ip) = snap.go_pick(&r.target) else {
                report
                    .notes
                    .push(format!("{url}: the target has no address"));
                continue;
            };
            match live::member_list(&url, SocketAddr::new(ip, r.port)) {
                Ok(m) => {
                    report.answered = Some(url);
                    report.members = m;
                    return report;
                }
                Err(e) => report.notes.push(e),
            }
        }
    }
    if !https.is_empty() {
        report.notes.push(format!(
            "not asked (https needs the client's certificates; compare by hand with etcdctl member list): {}",
            https.join(", ")
        ));
    }
    if report.notes.is_empty() {
        report
            .notes
            .push("no _etcd-client records: no running cluster to compare with".into());
    } else {
        report
            .notes
            .push("no running cluster answered: nothing to compare".into());
    }
    report
}

/// The pure part: records, hosts and the cluster's answer in, the report out.
#[allow(clippy::too_many_arguments)]
pub fn diagnose(
    snap: Snapshot,
    hosts: Vec<Host>,
    versions: &[Version],
    token: &str,
    certs: &[(Option<String>, cert::CertInfo)],
    trusted_ca: bool,
    now: i64,
    cluster: LiveReport,
) -> Report {
    let replays: Vec<VersionReplay> = [Version::V3_4, Version::V3_5]
        .into_iter()
        .map(|v| replay::replay(&snap, v, &hosts, token))
        .collect();
    let mut problems = problems::of_records(&snap);
    for r in &replays {
        problems.extend(problems::of_replay(&snap, r));
    }
    let (needs, cert_problems) = certificates(&snap, &hosts, certs, trusted_ca, now);
    problems.extend(cert_problems);
    problems.extend(cluster_problems(&snap, &cluster));
    problems.sort_by_key(|p| p.severity);
    let failing = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .filter(|p| p.version.is_none_or(|v| versions.contains(&v)))
        .count();
    Report {
        domain: snap.service.domain.clone(),
        records: snap,
        hosts,
        replays,
        certificates: needs,
        checked_certificates: certs.iter().map(|(_, c)| c.clone()).collect(),
        cluster,
        problems,
        failing,
    }
}

/// The SANs each https member needs, and the problems of the given certificates.
fn certificates(
    snap: &Snapshot,
    hosts: &[Host],
    certs: &[(Option<String>, cert::CertInfo)],
    trusted_ca: bool,
    now: i64,
) -> (Vec<CertNeed>, Vec<Problem>) {
    let domain = snap.service.domain.trim_end_matches('.').to_string();
    let mut needs = Vec::new();
    // (file, missing SAN) -> hosts, so a shared certificate gives one line per SAN.
    let mut missing: BTreeMap<(String, String, bool), Vec<String>> = BTreeMap::new();
    let mut out = Vec::new();
    for h in hosts {
        if !h.urls().iter().any(|u| u.scheme == Scheme::Https) {
            continue;
        }
        let target = h.target.trim_end_matches('.').to_ascii_lowercase();
        let required = if trusted_ca {
            target.clone()
        } else {
            domain.clone()
        };
        let addrs = snap
            .resolution(&h.target)
            .map(|r| r.all())
            .unwrap_or_default();
        let one_of: Vec<String> = std::iter::once(format!("DNS:{target}"))
            .chain(addrs.iter().map(|a| format!("IP:{a}")))
            .collect();
        needs.push(CertNeed {
            name: h.name.clone(),
            required: vec![format!("DNS:{required}")],
            client_auth_one_of: one_of,
        });
        for (_, c) in certs
            .iter()
            .filter(|(n, _)| n.as_ref().is_none_or(|n| *n == h.name))
        {
            if !c.has_dns(&required) {
                missing
                    .entry((c.file.clone(), format!("DNS:{required}"), true))
                    .or_default()
                    .push(h.name.clone());
            }
            if !c.has_dns(&target) && !addrs.iter().any(|a| c.ips.contains(a)) {
                missing
                    .entry((c.file.clone(), format!("DNS:{target}"), false))
                    .or_default()
                    .push(h.name.clone());
            }
        }
    }
    for ((file, san, required), hs) in missing {
        let who = hs.join(", ");
        out.push(if required {
            Problem {
                severity: Severity::Error,
                scope: "certificate".into(),
                message: if trusted_ca {
                    format!("{file} (peer certificate of {who}) lacks {san}, the name peers dial: the handshake fails")
                } else {
                    format!("{file} (peer certificate of {who}) lacks {san}: with https peers and no --peer-trusted-ca-file etcd checks every peer against the bare domain, and the handshake fails with \"remote error: tls: bad certificate\"")
                },
                fix: if trusted_ca {
                    format!("add {san} to the certificate's SANs")
                } else {
                    format!("add {san} to the certificate's SANs, or run the members with --peer-trusted-ca-file")
                },
                version: None,
            }
        } else {
            Problem {
                severity: Severity::Warning,
                scope: "certificate".into(),
                message: format!("{file} (peer certificate of {who}) has neither {san} nor an IP SAN of the host's address: with --peer-client-cert-auth the other members refuse its connections"),
                fix: format!("add {san} and the host's IP address to the certificate's SANs"),
                version: None,
            }
        });
    }
    for (_, c) in certs {
        if c.not_after < now {
            out.push(Problem {
                severity: Severity::Error,
                scope: "certificate".into(),
                message: format!("{} has expired", c.file),
                fix: "issue a new certificate".into(),
                version: None,
            });
        } else if c.not_before > now {
            out.push(Problem {
                severity: Severity::Error,
                scope: "certificate".into(),
                message: format!("{} is not valid yet", c.file),
                fix: "check the clocks, or issue it with an earlier start".into(),
                version: None,
            });
        }
    }
    (needs, out)
}

/// A URL reduced for comparison: lower-case text, and `scheme://ip:port` when the host
/// resolves in the snapshot (a cluster bootstrapped with address URLs still matches).
fn comparable(snap: &Snapshot, url: &str) -> Vec<String> {
    let mut v = vec![url.trim_end_matches('/').to_ascii_lowercase()];
    if let Ok(u) = url.parse::<EtcdUrl>() {
        let ip = match &u.host {
            UrlHost::Ip(ip) => Some(*ip),
            UrlHost::Name(n) => snap.go_pick(n),
        };
        if let Some(ip) = ip {
            v.push(format!("{}://{}", u.scheme, SocketAddr::new(ip, u.port)));
        }
    }
    v
}

/// Members the records and the running cluster disagree on.
fn cluster_problems(snap: &Snapshot, live: &LiveReport) -> Vec<Problem> {
    let Some(answered) = &live.answered else {
        return Vec::new();
    };
    let mut out = Vec::new();
    // (owner, peer URL as etcd builds it, its comparable forms) for every server record.
    let mut records: Vec<(String, String, Vec<String>)> = Vec::new();
    for s in [Scheme::Https, Scheme::Http] {
        let owner = snap.service.record(Role::Server, s);
        for r in snap.server(s).records() {
            let url = format!("{s}://{}:{}", r.target.trim_end_matches('.'), r.port);
            let c = comparable(snap, &url);
            records.push((owner.clone(), url, c));
        }
    }
    let member_keys: Vec<Vec<String>> = live
        .members
        .iter()
        .map(|m| {
            m.peer_urls
                .iter()
                .flat_map(|u| comparable(snap, u))
                .collect()
        })
        .collect();
    for (m, keys) in live.members.iter().zip(&member_keys) {
        let name = if m.name.is_empty() {
            "(not started)"
        } else {
            &m.name
        };
        if !records
            .iter()
            .any(|(_, _, c)| c.iter().any(|k| keys.contains(k)))
        {
            out.push(Problem {
                severity: Severity::Error,
                scope: "cluster".into(),
                message: format!("member {name} ({}) with peer URLs {} is in the running cluster ({answered}) but no SRV record publishes it", m.id, m.peer_urls.join(",")),
                fix: format!("publish its SRV record, or remove it: etcdctl member remove {}", m.id),
                version: None,
            });
        }
        if m.name.is_empty() {
            out.push(Problem {
                severity: Severity::Warning,
                scope: "cluster".into(),
                message: format!(
                    "member {} ({}) was added but has not started",
                    m.id,
                    m.peer_urls.join(",")
                ),
                fix: "start it with --initial-cluster-state existing, or remove it".into(),
                version: None,
            });
        }
    }
    for (owner, url, c) in &records {
        if !member_keys
            .iter()
            .any(|keys| c.iter().any(|k| keys.contains(k)))
        {
            out.push(Problem {
                severity: Severity::Error,
                scope: "cluster".into(),
                message: format!("{url} (SRV record at {owner}) is not a member of the running cluster ({answered}): a member bootstrapping from the records forms a cluster of its own"),
                fix: format!("add it (etcdctl member add NAME --peer-urls={url}, then start it with --initial-cluster-state existing), or delete the record"),
                version: None,
            });
        }
    }
    out
}

fn found_line<T>(f: &Found<T>, each: impl Fn(&T) -> String) -> String {
    match f {
        Found::Records(r) => r.iter().map(each).collect::<Vec<_>>().join(", "),
        Found::None => "none".into(),
        Found::Failed(e) => format!("lookup failed: {e}"),
    }
}

/// The text report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "muster-agent doctor: stock etcd --discovery-srv {}",
        r.domain.trim_end_matches('.')
    );
    render_records(&mut s, r);
    render_hosts(&mut s, r);
    render_certificates(&mut s, r);
    render_problems(&mut s, r);
    s
}

/// The records read.
fn render_records(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let snap = &r.records;
    let _ = writeln!(s, "\nrecords");
    let srv =
        |x: &snapshot::SrvRecord| format!("{} {} {} {}", x.priority, x.weight, x.port, x.target);
    for (role, scheme, set) in [
        (Role::Server, Scheme::Https, &snap.server_ssl),
        (Role::Server, Scheme::Http, &snap.server_plain),
        (Role::Client, Scheme::Https, &snap.client_ssl),
        (Role::Client, Scheme::Http, &snap.client_plain),
    ] {
        let owner = snap.service.record(role, scheme);
        let _ = writeln!(s, "  {owner} SRV: {}", found_line(set, srv));
        if role == Role::Server && !matches!(snap.txt(scheme), Found::None) {
            let _ = writeln!(
                s,
                "  {owner} TXT: {}",
                found_line(snap.txt(scheme), |t| t
                    .iter()
                    .map(|x| format!("{x:?}"))
                    .collect::<Vec<_>>()
                    .join(" "))
            );
        }
    }
    for (name, res) in &snap.names {
        let mut parts = Vec::new();
        if let Some(c) = &res.cname {
            parts.push(format!("alias of {c}"));
        }
        for (label, f) in [
            (
                "A",
                res.a
                    .records()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
            (
                "AAAA",
                res.aaaa.records().iter().map(ToString::to_string).collect(),
            ),
        ] {
            if !f.is_empty() {
                parts.push(format!("{label} {}", f.join(" ")));
            }
        }
        if let Some(e) = res.failure() {
            parts.push(format!("lookup failed: {e}"));
        }
        if parts.is_empty() {
            parts.push("no address".into());
        }
        let _ = writeln!(s, "  {name} {}", parts.join("; "));
    }
}

/// The hosts and what each etcd version does on them.
fn render_hosts(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\nhosts (--name, --initial-advertise-peer-urls)");
    if r.hosts.is_empty() {
        let _ = writeln!(s, "  none: no SRV target to replay");
    }
    for h in &r.hosts {
        let how = if h.given {
            "given"
        } else {
            "assumed: the name URL of its record"
        };
        let _ = writeln!(s, "  {} {} ({how})", h.name, h.advertise.join(","));
    }
    for vr in &r.replays {
        let how = match vr.version {
            Version::V3_4 => " only".to_string(),
            Version::V3_5 => ", numbering the other members from 0 in each".to_string(),
        };
        let _ = writeln!(
            s,
            "\n{} reads {}{how}",
            vr.version.label(),
            vr.reads.join(" and ")
        );
        for h in &vr.hosts {
            match &h.outcome {
                Outcome::Fails { message, .. } => {
                    let _ = writeln!(s, "  {}: exits: {message}", h.name);
                }
                Outcome::Starts {
                    members,
                    cluster_id,
                } => {
                    let list: Vec<String> = members
                        .iter()
                        .map(|m| format!("{}={}", m.name, m.peer_urls.join(",")))
                        .collect();
                    let _ = writeln!(
                        s,
                        "  {}: bootstraps a {}-member cluster {cluster_id}: {}",
                        h.name,
                        members.len(),
                        list.join(" ")
                    );
                }
            }
            for k in &h.skipped {
                let _ = writeln!(
                    s,
                    "    skipped without a message: {} at {} (no address)",
                    k.endpoint, k.record
                );
            }
        }
    }
}

/// The certificates needed and checked, and the running cluster.
fn render_certificates(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\ncertificates");
    if r.certificates.is_empty() {
        let _ = writeln!(s, "  none needed: no https peers");
    }
    for n in &r.certificates {
        let _ = writeln!(
            s,
            "  {} needs {}; for --peer-client-cert-auth one of {}",
            n.name,
            n.required.join(" "),
            n.client_auth_one_of.join(" ")
        );
    }
    for c in &r.checked_certificates {
        let _ = writeln!(s, "  {} has {}", c.file, c.sans().join(" "));
    }
    let _ = writeln!(s, "\ncluster");
    match &r.cluster.answered {
        Some(url) => {
            let _ = writeln!(s, "  {url} answered: {} members", r.cluster.members.len());
            for m in &r.cluster.members {
                let name = if m.name.is_empty() {
                    "(not started)"
                } else {
                    &m.name
                };
                let learner = if m.learner { " learner" } else { "" };
                let _ = writeln!(s, "    {} {name}{learner} {}", m.id, m.peer_urls.join(","));
            }
        }
        None => {
            for n in &r.cluster.notes {
                let _ = writeln!(s, "  {n}");
            }
        }
    }
}

/// The problems and the verdict.
fn render_problems(s: &mut String, r: &Report) {
    use std::fmt::Write as _;
    let _ = writeln!(s, "\nproblems");
    if r.problems.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for p in &r.problems {
        let _ = writeln!(s, "  {}", p.line());
    }
    let errors = r
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = r.problems.len() - errors;
    let _ = writeln!(
        s,
        "\n{errors} error(s), {warnings} warning(s); {}",
        if r.failing > 0 {
            format!("{} would make etcd fail or split", r.failing)
        } else {
            "etcd would bootstrap one cluster from these records".into()
        }
    );
}
