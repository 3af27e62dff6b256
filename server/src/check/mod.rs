//! `musterd check`: zone validation like named-checkzone, plus the etcd discovery lints.
//!
//! Each finding has a severity, a stable code, the file and line of the record, and a hint
//! saying what to do. Errors make the exit status non-zero; `--format json` is for
//! machines.
//!
//! The etcd lints follow `etcd-discovery.md`: a target without an address is skipped by
//! etcd (a smaller cluster bootstraps), 3.5+ merges `-ssl` and plain sets, 3.4 reads only
//! `-ssl` for peers, CNAME targets leak the alias into URLs, and so on.

pub mod policy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::proto::name::Name;
use crate::proto::rr::{Record, Rtype, Srv};
use crate::zone::gate::etcd_srv_owner;
use crate::zone::zonefile;
use crate::zone::Zone;

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

pub(crate) fn finding(
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

/// The origin for a file: its first `$ORIGIN` (from `text`, the file's content when it
/// could be read), else its name without `.zone`/`.db`.
fn guess_origin(path: &Path, text: Option<&str>) -> Option<Name> {
    for line in text.unwrap_or_default().lines() {
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
    let stem = path.file_name()?.to_str()?;
    let stem = stem
        .strip_suffix(".zone")
        .or_else(|| stem.strip_suffix(".db"))
        .unwrap_or(stem);
    Name::parse_absolute(stem).ok()
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
    check_zones_sized(specs, &[])
}

/// [`check_zones`] with the cluster sizes configured for zones (origin, sizes), as
/// `musterd check --config` has them: they are checked against the TXT declarations.
pub fn check_zones_sized(
    specs: &[(Option<Name>, PathBuf)],
    sizes: &[(Name, Vec<(Name, u32)>)],
) -> Vec<Finding> {
    let (mut findings, zones) = parse_zones(specs);
    findings.extend(lint_zones_sized(&zones, sizes));
    findings
}

/// Parses each zone; the ones that do not parse become findings.
pub(crate) fn parse_zones(
    specs: &[(Option<Name>, PathBuf)],
) -> (Vec<Finding>, Vec<(Name, Vec<Record>)>) {
    let mut findings = Vec::new();
    let mut zones: Vec<(Name, Vec<Record>)> = Vec::new();
    for (origin, file) in specs {
        let text = zonefile::read_file(file);
        match parse_zone(origin.as_ref(), file, text.as_deref()) {
            Ok(zone) => zones.push(zone),
            Err(errors) => findings.extend(errors),
        }
    }
    (findings, zones)
}

/// Like [`check_zones`] for one zone given as text; `file` names it in the findings.
pub fn check_text(origin: Option<&Name>, file: &Path, text: &str) -> Vec<Finding> {
    match parse_zone(origin, file, Ok(text)) {
        Ok(zone) => lint_zones(&[zone]),
        Err(errors) => errors,
    }
}

/// The origin and records of one zone file, or the findings saying why there are none.
fn parse_zone(
    origin: Option<&Name>,
    file: &Path,
    text: Result<&str, &zonefile::ZoneFileErrors>,
) -> Result<(Name, Vec<Record>), Vec<Finding>> {
    let Some(o) = origin.cloned().or_else(|| guess_origin(file, text.ok())) else {
        return Err(vec![Finding {
            severity: Severity::Error,
            code: "no-origin",
            file: Some(file.to_path_buf()),
            line: None,
            name: String::new(),
            message:
                "cannot tell the zone origin: the file has no $ORIGIN and its name is not a domain"
                    .into(),
            hint: "pass --origin example.test. or add $ORIGIN at the top".into(),
        }]);
    };
    let parsed = match text {
        Ok(text) => zonefile::parse_str(text, file, &o),
        Err(read) => Err(read.clone()),
    };
    parsed
        .map(|records| (o, records))
        .map_err(|errors| errors.0.into_iter().map(syntax_finding).collect())
}

/// A zone-file error as a finding.
fn syntax_finding(e: zonefile::ZoneFileError) -> Finding {
    Finding {
        severity: Severity::Error,
        code: "syntax",
        message: if e.record.is_empty() {
            e.kind.to_string()
        } else {
            format!("{} in \"{}\"", e.kind, e.record)
        },
        file: Some(e.file),
        line: Some(e.line),
        name: String::new(),
        hint: "fix the record; nothing of this file is served until it parses".into(),
    }
}

/// Lints parsed zones together: PTR data from every zone counts, so a reverse zone
/// checked next to the forward zone counts.
fn lint_zones(zones: &[(Name, Vec<Record>)]) -> Vec<Finding> {
    lint_zones_sized(zones, &[])
}

pub(crate) fn lint_zones_sized(
    zones: &[(Name, Vec<Record>)],
    sizes: &[(Name, Vec<(Name, u32)>)],
) -> Vec<Finding> {
    let ptrs = ptr_addresses(zones.iter().flat_map(|(_, rs)| rs.iter()));
    zones
        .iter()
        .flat_map(|(o, records)| {
            let configured = sizes
                .iter()
                .find(|(z, _)| z.eq_ignore_case(o))
                .map_or(&[][..], |(_, s)| &s[..]);
            lint_records_with_ptrs(o, records, &ptrs, configured)
        })
        .collect()
}

/// The addresses that have a PTR record among `records`.
fn ptr_addresses<'a>(records: impl Iterator<Item = &'a Record>) -> BTreeSet<IpAddr> {
    records
        .filter(|r| r.rtype == Rtype::PTR)
        .filter_map(|r| reverse_to_ip(&r.owner))
        .collect()
}

/// Structural checks and etcd lints of one zone's records.
pub fn lint_records(origin: &Name, records: &[Record]) -> Vec<Finding> {
    lint_records_with_ptrs(origin, records, &ptr_addresses(records.iter()), &[])
}

fn lint_records_with_ptrs(
    origin: &Name,
    records: &[Record],
    ptrs: &BTreeSet<IpAddr>,
    sizes: &[(Name, u32)],
) -> Vec<Finding> {
    let mut out = zone_errors(origin, records);
    let index = ByName::new(records);
    let waiting = if out.is_empty() {
        lint_gates(origin, records, &index, sizes, &mut out)
    } else {
        BTreeSet::new()
    };
    lint_apex_ns(origin, &index, &mut out);
    lint_ttls_and_duplicates(records, &mut out);
    lint_ns_targets(origin, records, &index, &mut out);
    lint_etcd_srv_sets(origin, records, &index, ptrs, &waiting, &mut out);
    out.sort_by(|a, b| {
        (&a.file, a.line, a.severity, a.code).cmp(&(&b.file, b.line, b.severity, b.code))
    });
    // The client and server sets of one cluster share targets: report each fact once.
    out.dedup_by(|a, b| a == b);
    out
}

/// The structural rules, from the server's own zone builder so that check and serve
/// agree.
fn zone_errors(origin: &Name, records: &[Record]) -> Vec<Finding> {
    let Err(errors) = Zone::build(origin, records.to_vec()) else {
        return Vec::new();
    };
    errors
        .into_iter()
        .map(|e| Finding {
            severity: Severity::Error,
            code: "zone",
            file: e.at.as_ref().map(|at| at.file.as_ref().clone()),
            line: e.at.as_ref().map(|at| at.line),
            name: origin.to_string(),
            message: e.kind.to_string(),
            hint: "the server refuses to load a zone with this error".into(),
        })
        .collect()
}

/// The completeness gates the server would compute ([`crate::zone::gate`]): an unusable or
/// conflicting size declaration is an error, a closed gate a warning naming what is
/// missing (musterd withholds that SRV set until it is complete). Gives the targets a
/// closed gate waits for: their missing addresses are a rollout in progress, not an
/// error (so `ExecStartPre=musterd check` lets a restart through mid-rollout).
fn lint_gates(
    origin: &Name,
    records: &[Record],
    index: &ByName<'_>,
    sizes: &[(Name, u32)],
    out: &mut Vec<Finding>,
) -> BTreeSet<Name> {
    let mut waiting = BTreeSet::new();
    let Ok((zone, _)) = Zone::build_with_sizes(origin, records.to_vec(), sizes) else {
        return waiting;
    };
    for g in zone.gates() {
        let txt = index.of_type(&g.owner, Rtype::TXT).into_iter().find(|r| {
            r.rdata
                .get(1..)
                .is_some_and(|d| d.starts_with(crate::zone::gate::SIZE_PREFIX.as_bytes()))
        });
        let at = txt.or_else(|| index.of_type(&g.owner, Rtype::SRV).first().copied());
        if let Some(p) = &g.problem {
            out.push(finding(
                Severity::Error,
                "gate-size",
                at,
                &g.owner,
                format!(
                    "{p}: musterd withholds these SRV records and muster-agent refuses the size"
                ),
                "publish exactly one TXT \"muster-size=N\" with N the number of members",
            ));
            continue;
        }
        if let Some(t) = g.overridden_txt {
            out.push(finding(
                Severity::Error,
                "gate-size-conflict",
                at,
                &g.owner,
                format!(
                    "the configuration says {} members but TXT \"muster-size={t}\" says {t}: musterd gates on {}, muster-agent reads {t}",
                    g.need, g.need
                ),
                "make the configured size and the TXT record agree, or remove one",
            ));
        }
        if !g.open {
            waiting.extend(g.missing.iter().cloned());
            out.push(finding(
                Severity::Warning,
                "gate-closed",
                at,
                &g.owner,
                // The text starts with the owner name, which the finding shows already.
                g.text
                    .strip_prefix(&format!("{}: ", g.owner))
                    .unwrap_or(&g.text)
                    .to_string(),
                "musterd answers SRV queries here with NODATA (EDE 14 Not Ready) until the set is complete, so stock etcd cannot bootstrap a smaller cluster: publish what is missing",
            ));
        }
    }
    waiting
}

/// A zone's records by lower-cased owner name.
struct ByName<'a>(BTreeMap<Name, Vec<&'a Record>>);

impl<'a> ByName<'a> {
    fn new(records: &'a [Record]) -> ByName<'a> {
        let mut by_name: BTreeMap<Name, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_name.entry(r.owner.to_lowercase()).or_default().push(r);
        }
        ByName(by_name)
    }

    /// The records of type `t` at `n`, in file order.
    fn of_type(&self, n: &Name, t: Rtype) -> Vec<&'a Record> {
        self.0
            .get(&n.to_lowercase())
            .map(|v| v.iter().copied().filter(|r| r.rtype == t).collect())
            .unwrap_or_default()
    }
}

fn lint_apex_ns(origin: &Name, index: &ByName<'_>, out: &mut Vec<Finding>) {
    let soa = index.of_type(origin, Rtype::SOA);
    if index.of_type(origin, Rtype::NS).is_empty() && !soa.is_empty() {
        out.push(finding(
            Severity::Error,
            "no-apex-ns",
            soa.first().copied(),
            origin,
            "the zone apex has no NS record".into(),
            "add e.g. \"@ IN NS ns1\" with an address for ns1",
        ));
    }
}

/// Mixed TTLs within an RRset, and duplicate records.
fn lint_ttls_and_duplicates(records: &[Record], out: &mut Vec<Finding>) {
    // (owner, type) -> (first TTL, rdatas seen)
    type Seen<'a> = BTreeMap<(Name, Rtype), (u32, Vec<&'a [u8]>)>;
    let mut seen: Seen<'_> = BTreeMap::new();
    for r in records {
        let e = seen
            .entry((r.owner.to_lowercase(), r.rtype))
            .or_insert((r.ttl, Vec::new()));
        if e.1.contains(&r.rdata.as_slice()) {
            out.push(finding(
                Severity::Warning,
                "duplicate-record",
                Some(r),
                &r.owner,
                format!("duplicate {} record", r.rtype),
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
                    r.rtype, r.ttl, e.0
                ),
                "give every record of an RRset the same TTL (the lowest is used)",
            ));
        }
        e.1.push(&r.rdata);
    }
}

/// In-zone NS targets need addresses.
fn lint_ns_targets(origin: &Name, records: &[Record], index: &ByName<'_>, out: &mut Vec<Finding>) {
    for r in records.iter().filter(|r| r.rtype == Rtype::NS) {
        if let Ok(t) = Name::from_wire(&r.rdata) {
            if t.is_subdomain_of(origin)
                && index.of_type(&t, Rtype::A).is_empty()
                && index.of_type(&t, Rtype::AAAA).is_empty()
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
}

/// One etcd SRV set: (domain, suffix, kind, ssl).
type SrvSetKey = (Name, String, &'static str, bool);

/// The etcd SRV sets: each set's targets, then the set as a whole.
fn lint_etcd_srv_sets(
    origin: &Name,
    records: &[Record],
    index: &ByName<'_>,
    ptrs: &BTreeSet<IpAddr>,
    waiting: &BTreeSet<Name>,
    out: &mut Vec<Finding>,
) {
    let mut sets: BTreeMap<SrvSetKey, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.rtype == Rtype::SRV) {
        if let Some((kind, ssl, suffix, domain)) = etcd_srv_owner(&r.owner) {
            sets.entry((domain, suffix, kind, ssl)).or_default().push(r);
        }
    }
    for (key, rs) in &sets {
        let targets = lint_srv_targets(origin, key.2, rs, index, ptrs, waiting, out);
        lint_srv_set(key, rs, targets, &sets, out);
    }
}

/// The targets of one etcd SRV set (`rs`, of `kind` server or client): each must be a
/// distinct host name with an address. Gives the number of members.
fn lint_srv_targets(
    origin: &Name,
    kind: &str,
    rs: &[&Record],
    index: &ByName<'_>,
    ptrs: &BTreeSet<IpAddr>,
    waiting: &BTreeSet<Name>,
    out: &mut Vec<Finding>,
) -> usize {
    let owner = &rs[0].owner;
    let mut targets: Vec<Name> = Vec::new();
    let mut names: BTreeMap<String, Name> = BTreeMap::new();
    for &r in rs {
        let Some(srv) = Srv::from_rdata(&r.rdata) else {
            continue;
        };
        let t = srv.target;
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
                out.push(finding(
                    Severity::Warning,
                    "duplicate-member-name",
                    Some(r),
                    owner,
                    format!("{t} and {prev} share the first label \"{label}\""),
                    "muster-agent names members by the first label of the target: make them unique",
                ));
            }
        }
        let at = Target {
            owner,
            record: r,
            name: &t,
        };
        lint_srv_target_addresses(origin, kind, &at, index, ptrs, waiting, out);
    }
    targets.len()
}

/// One SRV target: its name, the record naming it and that record's owner.
struct Target<'a> {
    owner: &'a Name,
    record: &'a Record,
    name: &'a Name,
}

/// The address records of one in-zone SRV target; `waiting` holds the targets a closed
/// completeness gate waits for.
fn lint_srv_target_addresses(
    origin: &Name,
    kind: &str,
    at: &Target<'_>,
    index: &ByName<'_>,
    ptrs: &BTreeSet<IpAddr>,
    waiting: &BTreeSet<Name>,
    out: &mut Vec<Finding>,
) {
    let (owner, r, t) = (at.owner, at.record, at.name);
    if !t.is_subdomain_of(origin) {
        out.push(finding(
            Severity::Note,
            "srv-target-out-of-zone",
            Some(r),
            owner,
            format!("SRV target {t} is outside this zone and cannot be checked here"),
            "make sure it has an A/AAAA record where it is served",
        ));
        return;
    }
    if let Some(cname) = index.of_type(t, Rtype::CNAME).first() {
        out.push(finding(Severity::Warning, "srv-target-cname", Some(cname), owner, format!("SRV target {t} is a CNAME"), "etcd keeps the alias in its URLs and RFC 2782 forbids aliases as targets: point the SRV record at the canonical name"));
        return;
    }
    let a = index.of_type(t, Rtype::A);
    let aaaa = index.of_type(t, Rtype::AAAA);
    if a.is_empty() && aaaa.is_empty() {
        if waiting.contains(&t.to_lowercase()) {
            out.push(finding(Severity::Warning, "srv-target-no-address", Some(r), owner, format!("SRV target {t} has no A or AAAA record yet: the completeness gate waits for it"), "musterd withholds the set until the address is published (a host registers itself when it starts), so etcd cannot bootstrap a smaller cluster meanwhile"));
        } else {
            out.push(finding(Severity::Error, "srv-target-no-address", Some(r), owner, format!("SRV target {t} has no A or AAAA record"), "etcd silently skips a target that does not resolve and bootstraps a smaller cluster: add the address record"));
        }
        return;
    }
    for (set, ty) in [(&a, "A"), (&aaaa, "AAAA")] {
        if set.len() > 1 {
            out.push(finding(Severity::Warning, "multiple-addresses", Some(set[1]), t, format!("{t} has {} {ty} records", set.len()), "etcd's Go resolver uses one address: self-matching can fail; give each member one address"));
        }
    }
    if kind == "server" {
        for rec in a.iter().chain(aaaa.iter()) {
            if let Some(ip) = rdata_ip(rec) {
                if !ptrs.contains(&ip) {
                    out.push(finding(Severity::Info, "missing-ptr", Some(rec), t, format!("no PTR record for {ip}"), "etcd may check a peer's certificate through the PTR of its address: publish one in the reverse zone"));
                }
            }
        }
    }
}

/// One etcd SRV set as a whole: its member count, and its plain/-ssl sibling.
fn lint_srv_set(
    key: &SrvSetKey,
    rs: &[&Record],
    members: usize,
    sets: &BTreeMap<SrvSetKey, Vec<&Record>>,
    out: &mut Vec<Finding>,
) {
    let (domain, suffix, kind, ssl) = key;
    let owner = &rs[0].owner;
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

fn rdata_ip(r: &Record) -> Option<IpAddr> {
    match r.rdata.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&r.rdata[..]).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(&r.rdata[..]).ok()?)),
        _ => None,
    }
}

/// `10.0.0.10.in-addr.arpa.` -> 10.0.0.10; ip6.arpa nibbles likewise.
fn reverse_to_ip(owner: &Name) -> Option<IpAddr> {
    // Labels are taken as bytes: an owner name may hold any octet, and text made from it
    // need not split where the digits do.
    let labels: Vec<&[u8]> = owner.labels().collect();
    let n = labels.len();
    if n == 6
        && labels[4].eq_ignore_ascii_case(b"in-addr")
        && labels[5].eq_ignore_ascii_case(b"arpa")
    {
        let mut o = [0u8; 4];
        for (byte, label) in o.iter_mut().zip(labels[..4].iter().rev()) {
            if label.is_empty() || label.len() > 3 || !label.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v = label.iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
            *byte = u8::try_from(v).ok()?;
        }
        return Some(IpAddr::from(o));
    }
    if n == 34
        && labels[32].eq_ignore_ascii_case(b"ip6")
        && labels[33].eq_ignore_ascii_case(b"arpa")
    {
        // One hex digit per label, least significant nibble first (RFC 3596 §2.5).
        let mut b = [0u8; 16];
        for (i, label) in labels[..32].iter().rev().enumerate() {
            let [digit] = label else { return None };
            let nibble = (*digit as char).to_digit(16)? as u8;
            b[i / 2] |= if i % 2 == 0 { nibble << 4 } else { nibble };
        }
        return Some(IpAddr::from(b));
    }
    None
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

    // The golden files of tests/golden/check are compared in tests/tests/check_cli.rs,
    // with the one golden-file helper of the test harness.

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

    /// Issue 8: `musterd check` reports bad `\#` data (non-ASCII hex, a truncated name
    /// in MX data) as a syntax error at its line instead of panicking or passing it.
    #[test]
    fn issue8_bad_generic_data_is_a_finding() {
        let text = "$ORIGIN x.test.\n$TTL 30\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n\
                    ns1 A 10.0.0.1\nu TYPE65534 \\# 2 aéb\na MX \\# 4 00010301\n";
        let findings = check_text(None, Path::new("x.test.zone"), text);
        let at: Vec<_> = findings
            .iter()
            .map(|f| (f.code, f.file.as_deref(), f.line))
            .collect();
        assert_eq!(
            at,
            [
                ("syntax", Some(Path::new("x.test.zone")), Some(6)),
                ("syntax", Some(Path::new("x.test.zone")), Some(7)),
            ],
            "{}",
            render_text(&findings)
        );
        assert!(findings[0].message.contains("odd number of digits"));
        assert!(findings[1].message.contains("not valid MX rdata"));
        assert_eq!(exit_code(&findings), 1);
    }

    /// Zone-builder errors become findings from the error's own position fields.
    #[test]
    fn zone_errors_keep_file_and_line() {
        let text = "$ORIGIN x.test.\n$TTL 30\n@ SOA ns1 h 1 3600 600 86400 60\n@ NS ns1\n\
                    ns1 A 10.0.0.1\nc CNAME ns1\nc A 10.0.0.2\n";
        let findings = check_text(None, Path::new("dir: odd/x.test.zone"), text);
        let f = findings.iter().find(|f| f.code == "zone").unwrap();
        assert_eq!(f.file.as_deref(), Some(Path::new("dir: odd/x.test.zone")));
        assert_eq!(f.line, Some(7));
        assert!(
            f.message.starts_with("CNAME at c.x.test. alongside"),
            "{}",
            f.message
        );
    }

    /// Reverse names with odd labels (an octet that is not UTF-8, a multi-digit ip6.arpa
    /// label, a sign) are not addresses; they used to panic or be misread.
    #[test]
    fn reverse_names_are_read_strictly() {
        let n = |s: &str| Name::parse(s, None).unwrap();
        let ip6 = |first: &str| {
            let mut s = String::from(first);
            s.push_str(&".0".repeat(31));
            s.push_str(".ip6.arpa.");
            n(&s)
        };
        assert_eq!(reverse_to_ip(&ip6("\\255")), None);
        assert_eq!(reverse_to_ip(&ip6("\\195\\169")), None);
        assert_eq!(reverse_to_ip(&ip6("ab")), None);
        assert_eq!(reverse_to_ip(&ip6("A")), Some("::a".parse().unwrap()));
        assert_eq!(
            reverse_to_ip(&n("1.0.0.10.IN-ADDR.ARPA.")),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(reverse_to_ip(&n("+1.0.0.10.in-addr.arpa.")), None);
        assert_eq!(reverse_to_ip(&n("256.0.0.10.in-addr.arpa.")), None);
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
