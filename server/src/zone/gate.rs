//! Completeness gates: musterd withholds an etcd server SRV RRset until it is complete.
//!
//! Stock etcd `--discovery-srv` builds its initial cluster from whatever the SRV RRset
//! holds at the moment it starts, and silently skips targets that do not resolve (see
//! docs/etcd-discovery.md). A half-published set therefore bootstraps a smaller cluster
//! that the late members can never join. A cluster that declares its size — a TXT record
//! `"muster-size=N"` at the SRV owner name, or a size in the configuration — gets a gate:
//! while the RRset at that name does not hold exactly N distinct targets, each with an
//! A or AAAA record in the zone, an SRV query there is answered NODATA with a short
//! negative TTL and an Extended DNS Error 14 "Not Ready" naming what is missing
//! (docs/completeness-gate.md says why NODATA and not SERVFAIL). etcd then fails its
//! start, and, restarted, forms the whole cluster once the set is complete.
//!
//! Gates are counted by [`super::withheld`] for every snapshot built ([`crate::zone::Zone::build`]) or patched, so they follow every new snapshot
//! (reloads, dynamic updates). Only SRV answers at a gate's owner name are affected: the
//! TXT record, the addresses and the `_etcd-client*` sets are served as they are. A zone
//! without gates pays nothing on the query path; a closed gate's SRV answer is never
//! precompiled, so the full path answers it.

use std::fmt::Write as _;

use crate::proto::name::Name;

/// What a TXT record's first character-string starts with when it declares a size; the
/// whole record must then be exactly one string `muster-size=N` (the rule muster-agent
/// reads too, in `muster_conventions::size`).
pub use muster_conventions::size::SIZE_PREFIX;
use muster_conventions::size::{size_record, SizeRecord};
use muster_conventions::srv::{parse_owner_label, Role, SERVER};

/// TTL of the SOA record in a withheld answer, so that caches ask again soon (RFC 2308 §5:
/// a resolver caches NODATA for min(SOA TTL, MINIMUM)).
pub const WITHHELD_NEGATIVE_TTL: u32 = 5;

/// Most missing targets named in a gate's text (the rest are counted).
const NAMED_MISSING: usize = 3;

/// Where a gate's size was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSource {
    /// A TXT record `muster-size=N` at the SRV owner name.
    Txt,
    /// The server configuration (it wins over a TXT record).
    Config,
}

/// A size declaration that cannot be used: the gate stays closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeProblem {
    /// A TXT record starts with `muster-size` but is not exactly `muster-size=N`, N > 0.
    Malformed(String),
    /// TXT records declare different sizes.
    Conflict(Vec<u32>),
}

impl std::fmt::Display for SizeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeProblem::Malformed(txt) => write!(f, "TXT {txt} is not \"muster-size=N\""),
            SizeProblem::Conflict(sizes) => {
                let s: Vec<String> = sizes.iter().map(u32::to_string).collect();
                write!(f, "TXT records declare different sizes ({})", s.join(", "))
            }
        }
    }
}

/// One gate and its state in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The SRV owner name, lower-cased.
    pub owner: Name,
    /// Its node in the zone, or `u32::MAX` when the name does not exist (a configured
    /// size for a name without records).
    pub(crate) node: u32,
    /// The declared size (0 when the declaration is unusable, see `problem`).
    pub need: u32,
    pub source: SizeSource,
    /// A configured size that overrides a different TXT size: the TXT value.
    pub overridden_txt: Option<u32>,
    /// Why the declared size cannot be used.
    pub problem: Option<SizeProblem>,
    /// Distinct SRV targets at the owner name.
    pub targets: u32,
    /// Distinct targets with an A or AAAA record in the zone.
    pub have: u32,
    /// Targets without an address in the zone (lower-cased; "." included), in order.
    pub missing: Vec<Name>,
    /// True when the SRV RRset is served.
    pub open: bool,
    /// One line saying the state: the log line, the EDE extra text of a withheld answer,
    /// the `musterd check` finding.
    pub text: Box<str>,
}

impl Gate {
    /// The state as a short word, for logs and metrics.
    pub fn state(&self) -> &'static str {
        if self.open {
            "open"
        } else {
            "closed"
        }
    }
}

/// The size a TXT RRset declares: `None` when no record starts with `muster-size`.
/// `rdatas` are TXT rdatas in wire form (character-strings).
pub fn declared_size<'a>(
    rdatas: impl Iterator<Item = &'a [u8]>,
) -> Option<Result<u32, SizeProblem>> {
    let mut sizes: Vec<u32> = Vec::new();
    for rdata in rdatas {
        let strings = character_strings(rdata);
        let n = match size_record(&strings) {
            SizeRecord::NotSize => continue,
            SizeRecord::Size(n) => Some(n),
            SizeRecord::Malformed => None,
        };
        match n {
            Some(n) if !sizes.contains(&n) => sizes.push(n),
            Some(_) => {}
            None => {
                let shown: Vec<String> = strings
                    .iter()
                    .map(|s| format!("{:?}", String::from_utf8_lossy(s)))
                    .collect();
                return Some(Err(SizeProblem::Malformed(shown.join(" "))));
            }
        }
    }
    match sizes.len() {
        0 => None,
        1 => Some(Ok(sizes[0])),
        _ => {
            sizes.sort_unstable();
            Some(Err(SizeProblem::Conflict(sizes)))
        }
    }
}

/// The character-strings of TXT rdata (RFC 1035 §3.3.14); the zone builder has checked
/// the layout, and a string cut short is taken as far as it goes.
fn character_strings(rdata: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = rdata;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    out
}

/// Recognises etcd's SRV owner names, `_etcd-(server|client)[-ssl][-SUFFIX]._tcp.DOMAIN`.
pub fn etcd_srv_owner(owner: &Name) -> Option<(&'static str, bool, String, Name)> {
    let mut labels = owner.labels();
    let first = String::from_utf8_lossy(labels.next()?).to_ascii_lowercase();
    if !labels.next()?.eq_ignore_ascii_case(b"_tcp") {
        return None;
    }
    let label = parse_owner_label(&first)?;
    let kind = match label.role {
        Role::Server => "server",
        Role::Client => "client",
    };
    let domain = owner.parent()?.parent()?.to_lowercase();
    Some((kind, label.tls, label.suffix, domain))
}

/// True for `_etcd-server…._tcp.…`: the SRV owner names stock etcd peers read. Gates are
/// only for those (`_etcd-client*` answers are never withheld).
pub fn is_server_owner(owner: &[u8]) -> bool {
    let Some((&len, rest)) = owner.split_first() else {
        return false;
    };
    let len = len as usize;
    let n = SERVER.len();
    if len < n || rest.len() < len + 5 {
        return false;
    }
    let (first, rest) = rest.split_at(len);
    first[..n].eq_ignore_ascii_case(SERVER.as_bytes())
        && (first.len() == n || first[n] == b'-')
        && rest[0] == 4
        && rest[1..5].eq_ignore_ascii_case(b"_tcp")
}

/// The one-line state of a gate (at most a few hundred octets: it goes into answers).
pub(super) fn describe(g: &Gate) -> String {
    let mut s = String::new();
    if let Some(p) = &g.problem {
        let _ = write!(s, "{}: {p}; the SRV records are withheld", g.owner);
        return s;
    }
    let declared = match g.source {
        SizeSource::Txt => format!("muster-size={}", g.need),
        SizeSource::Config => format!("configured size {}", g.need),
    };
    if g.open {
        let _ = write!(
            s,
            "{}: {declared}, all {} targets have addresses",
            g.owner, g.need
        );
        return s;
    }
    let _ = write!(
        s,
        "{}: {declared} but {} of {} SRV targets have an address",
        g.owner, g.have, g.targets
    );
    if g.targets < g.need {
        let _ = write!(s, "; {} more SRV target(s) to publish", g.need - g.targets);
    } else if g.targets > g.need {
        let _ = write!(s, "; {} SRV target(s) too many", g.targets - g.need);
    }
    if !g.missing.is_empty() {
        let named: Vec<String> = g
            .missing
            .iter()
            .take(NAMED_MISSING)
            .map(ToString::to_string)
            .collect();
        let _ = write!(s, "; no A/AAAA record for {}", named.join(", "));
        if g.missing.len() > NAMED_MISSING {
            let _ = write!(s, " and {} more", g.missing.len() - NAMED_MISSING);
        }
    }
    s
}
