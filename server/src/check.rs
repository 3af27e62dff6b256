//! `musterd check`: zone validation like named-checkzone, plus the etcd discovery lints.
//!
//! Each finding has a severity, a stable code, the file and line of the record, and a hint
//! saying what to do. Errors make the exit status non-zero; `--format json` is for
//! machines.
//!
//! The etcd lints follow `etcd-discovery.md`: a target without an address is skipped by
//! etcd (a smaller cluster bootstraps), 3.5+ merges `-ssl` and plain sets, 3.4 reads only
//! `-ssl` for peers, CNAME targets leak the alias into URLs, and so on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::name::Name;
use crate::rr::{rtype, type_name, Record, Srv};
use crate::zone::Zone;
use crate::zonefile;

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
            Severity::Info => "info",
        }
    }
}

/// One problem found in a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier, e.g. `srv-target-no-address`.
    pub code: &'static str,
    pub file: Option<PathBuf>,
    pub line: Option<u32>,
    /// The owner name concerned.
    pub name: String,
    pub message: String,
    pub hint: String,
}

fn finding(
    severity: Severity,
    code: &'static str,
    at: Option<&Record>,
    name: impl ToString,
    message: String,
    hint: &str,
) -> Finding {
    let src = at.and_then(|r| r.source.as_ref());
    Finding {
        severity,
        code,
        file: src.map(|s| s.file.as_ref().clone()),
        line: src.map(|s| s.line),
        name: name.to_string(),
        message,
        hint: hint.to_string(),
    }
}

/// The origin for a file: its first `$ORIGIN`, else its name without `.zone`/`.db`.
fn guess_origin(path: &Path) -> Option<Name> {
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("$ORIGIN"))
            {
                return words
                    .next()
                    .and_then(|o| Name::parse(o, Some(&Name::root())).ok());
            }
        }
    }
    let stem = path.file_name()?.to_str()?;
    let stem = stem
        .strip_suffix(".zone")
        .or_else(|| stem.strip_suffix(".db"))
        .unwrap_or(stem);
    let abs = if stem.ends_with('.') {
        stem.to_string()
    } else {
        format!("{stem}.")
    };
    Name::parse(&abs, None).ok()
}

/// Parses and lints each file; parse errors become findings. With `origin` every file
/// is taken as that zone, else each file's origin is guessed (see [`guess_origin`]).
pub fn check_files(origin: Option<&Name>, files: &[PathBuf]) -> Vec<Finding> {
    let zones: Vec<(Option<Name>, PathBuf)> =
        files.iter().map(|f| (origin.cloned(), f.clone())).collect();
    check_zones(&zones)
}

/// Parses and lints zones given as (origin, file); a missing origin is guessed.
pub fn check_zones(specs: &[(Option<Name>, PathBuf)]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut zones: Vec<(Name, Vec<Record>)> = Vec::new();
    for (origin, file) in specs {
        let Some(o) = origin.clone().or_else(|| guess_origin(file)) else {
            findings.push(Finding {
                severity: Severity::Error,
                code: "no-origin",
                file: Some(file.clone()),
                line: None,
                name: String::new(),
                message: "cannot tell the zone origin: the file has no $ORIGIN and its name is not a domain".into(),
                hint: "pass --origin example.test. or add $ORIGIN at the top".into(),
            });
            continue;
        };
        match zonefile::parse_file(file, &o) {
            Ok(records) => zones.push((o, records)),
            Err(errors) => {
                for e in errors.0 {
                    findings.push(Finding {
                        severity: Severity::Error,
                        code: "syntax",
                        file: Some(e.file.clone()),
                        line: Some(e.line),
                        name: String::new(),
                        message: if e.record.is_empty() {
                            e.kind.to_string()
                        } else {
                            format!("{} in \"{}\"", e.kind, e.record)
                        },
                        hint: "fix the record; nothing of this file is served until it parses"
                            .into(),
                    });
                }
            }
        }
    }
    // PTR data from every file given, so a reverse zone next to the forward zone counts.
    let ptrs: BTreeSet<IpAddr> = zones
        .iter()
        .flat_map(|(_, rs)| rs.iter())
        .filter(|r| r.rtype == rtype::PTR)
        .filter_map(|r| reverse_to_ip(&r.owner))
        .collect();
    for (o, records) in &zones {
        findings.extend(lint_records_with_ptrs(o, records, &ptrs));
    }
    findings
}

/// Structural checks and etcd lints of one zone's records.
pub fn lint_records(origin: &Name, records: &[Record]) -> Vec<Finding> {
    let ptrs: BTreeSet<IpAddr> = records
        .iter()
        .filter(|r| r.rtype == rtype::PTR)
        .filter_map(|r| reverse_to_ip(&r.owner))
        .collect();
    lint_records_with_ptrs(origin, records, &ptrs)
}

fn lint_records_with_ptrs(
    origin: &Name,
    records: &[Record],
    ptrs: &BTreeSet<IpAddr>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    // Structural rules come from the server's own zone builder, so check and serve agree.
    if let Err(errors) = Zone::build(origin, records.to_vec()) {
        for e in errors {
            let (file, line) = split_at(&e.to_string());
            out.push(Finding {
                severity: Severity::Error,
                code: "zone",
                file,
                line,
                name: origin.to_string(),
                message: strip_at(&e.to_string()),
                hint: "the server refuses to load a zone with this error".into(),
            });
        }
    }
    let lower = |n: &Name| n.to_lowercase();
    let mut by_name: BTreeMap<Name, Vec<&Record>> = BTreeMap::new();
    for r in records {
        by_name.entry(lower(&r.owner)).or_default().push(r);
    }
    let of_type = |n: &Name, t: u16| -> Vec<&Record> {
        by_name
            .get(&lower(n))
            .map(|v| v.iter().copied().filter(|r| r.rtype == t).collect())
            .unwrap_or_default()
    };
    let apex = lower(origin);
    if of_type(&apex, rtype::NS).is_empty() && !of_type(&apex, rtype::SOA).is_empty() {
        out.push(finding(
            Severity::Error,
            "no-apex-ns",
            of_type(&apex, rtype::SOA).first().copied(),
            origin,
            "the zone apex has no NS record".into(),
            "add e.g. \"@ IN NS ns1\" with an address for ns1",
        ));
    }
    // Mixed TTLs and duplicates.
    // (owner, type) -> (first TTL, rdatas seen)
    type Seen<'a> = BTreeMap<(Name, u16), (u32, Vec<&'a [u8]>)>;
    let mut seen: Seen<'_> = BTreeMap::new();
    for r in records {
        let e = seen
            .entry((lower(&r.owner), r.rtype))
            .or_insert((r.ttl, Vec::new()));
        if e.1.contains(&r.rdata.as_slice()) {
            out.push(finding(
                Severity::Warning,
                "duplicate-record",
                Some(r),
                &r.owner,
                format!("duplicate {} record", type_name(r.rtype)),
                "remove the repeated line (duplicates are merged)",
            ));
        } else if e.0 != r.ttl {
            out.push(finding(
                Severity::Warning,
                "mixed-ttl",
                Some(r),
                &r.owner,
                format!(
                    "{} TTL {} differs from the RRset's TTL {}",
                    type_name(r.rtype),
                    r.ttl,
                    e.0
                ),
                "give every record of an RRset the same TTL (the lowest is used)",
            ));
        }
        e.1.push(&r.rdata);
    }
    // In-zone NS targets need addresses.
    for r in records.iter().filter(|r| r.rtype == rtype::NS) {
        if let Ok(t) = Name::from_wire(&r.rdata) {
            if t.is_subdomain_of(origin)
                && of_type(&t, rtype::A).is_empty()
                && of_type(&t, rtype::AAAA).is_empty()
            {
                out.push(finding(
                    Severity::Error,
                    "ns-target-no-address",
                    Some(r),
                    &r.owner,
                    format!("NS target {t} is in this zone but has no A/AAAA record"),
                    "add an address record for the name server",
                ));
            }
        }
    }

    // etcd SRV sets: (domain, suffix, kind, ssl) -> records.
    let mut sets: BTreeMap<(Name, String, &'static str, bool), Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.rtype == rtype::SRV) {
        if let Some((kind, ssl, suffix, domain)) = etcd_srv_owner(&r.owner) {
            sets.entry((domain, suffix, kind, ssl)).or_default().push(r);
        }
    }
    for ((domain, suffix, kind, ssl), rs) in &sets {
        let owner = &rs[0].owner;
        let mut targets: Vec<Name> = Vec::new();
        let mut names: BTreeMap<String, Name> = BTreeMap::new();
        for r in rs {
            let Some(srv) = Srv::from_rdata(&r.rdata) else {
                continue;
            };
            let t = srv.target.clone();
            if t.is_root() {
                out.push(finding(
                    Severity::Note,
                    "srv-target-root",
                    Some(r),
                    owner,
                    "SRV target \".\" means the service is not available".into(),
                    "remove the record once the cluster has members",
                ));
                continue;
            }
            if targets.iter().any(|x| x.eq_ignore_case(&t)) {
                out.push(finding(
                    Severity::Error,
                    "duplicate-target",
                    Some(r),
                    owner,
                    format!("{t} appears twice in this SRV set"),
                    "each member must appear once",
                ));
                continue;
            }
            targets.push(t.clone());
            let text = t.to_string();
            let trimmed = text.trim_end_matches('.');
            if trimmed.parse::<IpAddr>().is_ok()
                || trimmed.bytes().all(|c| c.is_ascii_digit() || c == b'.')
            {
                out.push(finding(Severity::Error, "srv-target-ip-literal", Some(r), owner, format!("SRV target {t} is an IP address, not a host name"), "etcd rejects IP-literal targets: point the SRV record at a name with an A/AAAA record"));
                continue;
            }
            if let Some(first) = t.first_label() {
                let label = String::from_utf8_lossy(first).to_ascii_lowercase();
                if let Some(prev) = names.insert(label.clone(), t.clone()) {
                    out.push(finding(Severity::Warning, "duplicate-member-name", Some(r), owner, format!("{t} and {prev} share the first label \"{label}\""), "muster-agent names members by the first label of the target: make them unique"));
                }
            }
            if !t.is_subdomain_of(origin) {
                out.push(finding(
                    Severity::Note,
                    "srv-target-out-of-zone",
                    Some(r),
                    owner,
                    format!("SRV target {t} is outside this zone and cannot be checked here"),
                    "make sure it has an A/AAAA record where it is served",
                ));
                continue;
            }
            if let Some(cname) = of_type(&t, rtype::CNAME).first() {
                out.push(finding(Severity::Warning, "srv-target-cname", Some(cname), owner, format!("SRV target {t} is a CNAME"), "etcd keeps the alias in its URLs and RFC 2782 forbids aliases as targets: point the SRV record at the canonical name"));
                continue;
            }
            let a = of_type(&t, rtype::A);
            let aaaa = of_type(&t, rtype::AAAA);
            if a.is_empty() && aaaa.is_empty() {
                out.push(finding(Severity::Error, "srv-target-no-address", Some(r), owner, format!("SRV target {t} has no A or AAAA record"), "etcd silently skips a target that does not resolve and bootstraps a smaller cluster: add the address record"));
                continue;
            }
            for (set, ty) in [(&a, "A"), (&aaaa, "AAAA")] {
                if set.len() > 1 {
                    out.push(finding(Severity::Warning, "multiple-addresses", Some(set[1]), &t, format!("{t} has {} {ty} records", set.len()), "etcd's Go resolver uses one address: self-matching can fail; give each member one address"));
                }
            }
            if *kind == "server" {
                for rec in a.iter().chain(aaaa.iter()) {
                    if let Some(ip) = rdata_ip(rec) {
                        if !ptrs.contains(&ip) {
                            out.push(finding(Severity::Info, "missing-ptr", Some(rec), &t, format!("no PTR record for {ip}"), "etcd may check a peer's certificate through the PTR of its address: publish one in the reverse zone"));
                        }
                    }
                }
            }
        }
        let members = targets.len();
        if *kind == "server" && members > 0 && members.is_multiple_of(2) {
            out.push(finding(
                Severity::Warning,
                "even-member-count",
                Some(rs[0]),
                owner,
                format!(
                    "{members} members: an even count tolerates no more failures than {}",
                    members - 1
                ),
                "use an odd number of members (3 or 5)",
            ));
        }
        if *kind == "server" && !ssl {
            let has_ssl = sets.contains_key(&(domain.clone(), suffix.clone(), "server", true));
            if has_ssl {
                out.push(finding(Severity::Warning, "ssl-and-plain", Some(rs[0]), owner, format!("both _etcd-server-ssl and _etcd-server sets exist for {domain}"), "etcd 3.5+ merges both sets and can merge two hosts into one member: publish only one"));
            } else {
                out.push(finding(Severity::Note, "no-ssl-set", Some(rs[0]), owner, "only plain-http _etcd-server records".into(), "stock etcd 3.4 --discovery-srv only reads _etcd-server-ssl: use muster-agent, or publish -ssl records with TLS peers"));
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.file, a.line, a.severity, a.code).cmp(&(&b.file, b.line, b.severity, b.code))
    });
    // The client and server sets of one cluster share targets: report each fact once.
    out.dedup_by(|a, b| a == b);
    out
}

/// Recognises `_etcd-(server|client)[-ssl][-SUFFIX]._tcp.DOMAIN`.
fn etcd_srv_owner(owner: &Name) -> Option<(&'static str, bool, String, Name)> {
    let mut labels = owner.labels();
    let first = String::from_utf8_lossy(labels.next()?).to_ascii_lowercase();
    if !labels.next()?.eq_ignore_ascii_case(b"_tcp") {
        return None;
    }
    let rest = first.strip_prefix("_etcd-")?;
    let (kind, rest) = if let Some(r) = rest.strip_prefix("server") {
        ("server", r)
    } else {
        ("client", rest.strip_prefix("client")?)
    };
    let (ssl, rest) = match rest.strip_prefix("-ssl") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let suffix = match rest {
        "" => String::new(),
        r => r.strip_prefix('-')?.to_string(),
    };
    let domain = owner.parent()?.parent()?.to_lowercase();
    Some((kind, ssl, suffix, domain))
}

fn rdata_ip(r: &Record) -> Option<IpAddr> {
    match r.rdata.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).ok()?)),
        _ => None,
    }
}

/// `10.0.0.10.in-addr.arpa.` -> 10.0.0.10; ip6.arpa nibbles likewise.
fn reverse_to_ip(owner: &Name) -> Option<IpAddr> {
    let labels: Vec<String> = owner
        .labels()
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let n = labels.len();
    if n == 6 && labels[4] == "in-addr" && labels[5] == "arpa" {
        let o: Vec<u8> = labels[..4]
            .iter()
            .rev()
            .map(|l| l.parse().ok())
            .collect::<Option<_>>()?;
        return Some(IpAddr::from([o[0], o[1], o[2], o[3]]));
    }
    if n == 34 && labels[32] == "ip6" && labels[33] == "arpa" {
        let hex: String = labels[..32].iter().rev().map(String::as_str).collect();
        let mut b = [0u8; 16];
        for (i, byte) in b.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
        }
        return Some(IpAddr::from(b));
    }
    None
}

/// Zone errors start with "file:line: "; split that off for the finding's fields.
fn split_at(msg: &str) -> (Option<PathBuf>, Option<u32>) {
    let Some((head, _)) = msg.split_once(": ") else {
        return (None, None);
    };
    match head.rsplit_once(':') {
        Some((file, line)) => match line.parse() {
            Ok(l) => (Some(PathBuf::from(file)), Some(l)),
            Err(_) => (None, None),
        },
        None => (None, None),
    }
}

fn strip_at(msg: &str) -> String {
    match split_at(msg) {
        (Some(_), Some(_)) => msg.split_once(": ").map_or(msg, |(_, m)| m).to_string(),
        _ => msg.to_string(),
    }
}

/// Human-readable report, one finding per line plus a hint, and a summary.
pub fn render_text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let at = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!("{}:{line}: ", file.display()),
            (Some(file), None) => format!("{}: ", file.display()),
            _ => String::new(),
        };
        let name = if f.name.is_empty() {
            String::new()
        } else {
            format!("{}: ", f.name)
        };
        let _ = writeln!(
            out,
            "{at}{}[{}]: {name}{}",
            f.severity.as_str(),
            f.code,
            f.message
        );
        let _ = writeln!(out, "    hint: {}", f.hint);
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    let _ = writeln!(
        out,
        "{} errors, {} warnings, {} notes, {} info",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
        count(Severity::Info)
    );
    out
}

/// JSON report: `{"findings": [...], "errors": N, "warnings": N}`.
pub fn render_json(findings: &[Finding]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        findings: &'a [Finding],
        errors: usize,
        warnings: usize,
    }
    let report = Report {
        findings,
        errors: findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count(),
        warnings: findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count(),
    };
    let mut s =
        serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// 1 when any finding is an error, else 0.
pub fn exit_code(findings: &[Finding]) -> i32 {
    i32::from(findings.iter().any(|f| f.severity == Severity::Error))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden files: tests/golden/check/NAME.zone with NAME.txt and NAME.json expected.
    /// `UPDATE_GOLDEN=1` rewrites them. cargo runs unit tests in the package directory
    /// (server/), so the relative paths in the outputs are the same on every machine.
    #[test]
    fn golden_outputs() {
        let dir = Path::new("../tests/golden/check");
        let mut zones: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "zone"))
            .collect();
        zones.sort();
        // NAME.rev.zone is the reverse zone checked together with NAME.zone.
        zones.retain(|z| !z.to_string_lossy().ends_with(".rev.zone"));
        assert!(
            zones.len() >= 10,
            "golden zones missing in {}",
            dir.display()
        );
        let mut failures = Vec::new();
        for z in &zones {
            let mut files = vec![z.clone()];
            let rev = z.with_extension("rev.zone");
            if rev.exists() {
                files.push(rev);
            }
            let findings = check_files(None, &files);
            for (ext, text) in [
                ("txt", render_text(&findings)),
                ("json", render_json(&findings)),
            ] {
                let want_path = z.with_extension(ext);
                if std::env::var_os("UPDATE_GOLDEN").is_some() {
                    std::fs::write(&want_path, &text).unwrap();
                } else if std::fs::read_to_string(&want_path).unwrap_or_default() != text {
                    failures.push(format!("{} differs:\n{text}", want_path.display()));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn example_zone_is_clean() {
        let origin = Name::parse(crate::example::ORIGIN, None).unwrap();
        let records = zonefile::parse_str(
            crate::example::ZONE,
            Path::new("example.test.zone"),
            &origin,
        )
        .unwrap();
        let findings = lint_records(&origin, &records);
        let bad: Vec<_> = findings
            .iter()
            .filter(|f| f.severity <= Severity::Warning)
            .collect();
        assert!(bad.is_empty(), "{}", render_text(&findings));
    }

    #[test]
    fn srv_owner_forms() {
        let n = |s: &str| Name::parse(s, None).unwrap();
        let (kind, ssl, suffix, domain) =
            etcd_srv_owner(&n("_etcd-server-ssl-blue._tcp.x.test.")).unwrap();
        assert_eq!(
            (kind, ssl, suffix.as_str(), domain.to_string().as_str()),
            ("server", true, "blue", "x.test.")
        );
        assert!(etcd_srv_owner(&n("_etcd-client._tcp.x.test."))
            .is_some_and(|(k, s, _, _)| k == "client" && !s));
        assert!(etcd_srv_owner(&n("_http._tcp.x.test.")).is_none());
        assert_eq!(
            reverse_to_ip(&n("10.0.0.10.in-addr.arpa.")),
            Some("10.0.0.10".parse().unwrap())
        );
    }
}
