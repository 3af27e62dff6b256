//! Completeness: does one read of the records ([`RecordSet`]) describe the whole cluster?
//!
//! [`census`] takes the steps in order: pick the SRV set (`_etcd-server-ssl` = https,
//! `_etcd-server` = http), learn the cluster size (`--expect` or the `muster-size=N` TXT
//! record at the SRV owner name), collect the client ports, turn every SRV record into a
//! [`Candidate`] (resolved or not), count them against the size, and check that names
//! are unique. What is still missing is listed, not returned as an error: the wait loop
//! shows it and reads again. [`Census::complete`] turns a census with nothing missing
//! into [`Members`].
//!
//! A stable record set is not a complete one: records of a cluster being set up arrive
//! one by one, and any prefix of them can sit unchanged for a while. Only a known size
//! tells a prefix from the whole, so without one nothing is ever complete.
//!
//! Limitations: SRV priority and weight are ignored (etcd ignores them too); a target
//! `.` ("service not available", RFC 2782) is skipped. Client records are awaited for
//! every member only once some client record is published: a zone that adds all of its
//! `_etcd-client*` records after the server records can still be read in between.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use super::error::PlanError;
use muster_conventions::size::{size_record, SizeRecord};

use super::records::{Answer, MemberName, RecordSet, Role, Scheme, Service, Srv, Txt};

/// Client (scheme, port) pairs by SRV target.
type ClientPorts<'a> = BTreeMap<&'a str, Vec<(Scheme, u16)>>;

/// The SRV set picked: its scheme, owner name and records.
type Chosen<'a> = (Scheme, String, &'a [Srv]);

/// A member as the records describe it, before this host is identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// etcd member name: the target's first label.
    pub name: MemberName,
    /// Absolute lower-case SRV target.
    pub target: String,
    /// Peer port.
    pub port: u16,
    /// Every A and AAAA address of the target, sorted; empty while it has none.
    pub addresses: Vec<IpAddr>,
    /// Client (scheme, port) pairs from `_etcd-client*` records for the same target.
    pub client_ports: Vec<(Scheme, u16)>,
}

impl Candidate {
    /// `scheme://target-without-dot:port`: the advertised peer URL, the same on every host.
    pub fn peer_url(&self, scheme: Scheme) -> crate::urls::EtcdUrl {
        super::records::name_url(scheme, &self.target, self.port)
    }

    /// `target:port`, for messages.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.target, self.port)
    }
}

/// Where the cluster size came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSource {
    /// `--expect N`.
    Expect,
    /// TXT `"muster-size=N"` at the SRV owner name.
    Txt,
}

/// How many members the cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// The number of members.
    pub members: usize,
    /// Who said so.
    pub source: SizeSource,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            SizeSource::Expect => write!(f, "--expect is {}", self.members),
            SizeSource::Txt => write!(f, "muster-size is {}", self.members),
        }
    }
}

/// A complete record set: the members and which SRV set they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// Owner name of the SRV set used.
    pub record: String,
    /// Scheme of that set.
    pub scheme: Scheme,
    /// The members, sorted by name, every one resolved.
    pub members: Vec<Candidate>,
}

/// Why a record set is not complete yet: one item of a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// Neither SRV set (or the one `--scheme` asks for) has records.
    NoServerRecords {
        /// The owner names asked.
        records: Vec<String>,
    },
    /// A lookup failed (transport error or error rcode).
    LookupFailed {
        /// Name looked up.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// An SRV target has neither A nor AAAA records.
    NoAddress {
        /// The target.
        target: String,
    },
    /// The cluster publishes client records, but not yet this member's.
    NoClientRecord {
        /// The target.
        target: String,
        /// The client owner names asked.
        records: Vec<String>,
    },
    /// The zone declares the size at `record` but serves no SRV records there: a DNS
    /// server with a completeness gate (musterd) withholds a set that is not complete yet.
    Withheld {
        /// The SRV owner name with the size record.
        record: String,
        /// The size it declares.
        members: usize,
    },
    /// Neither `--expect` nor a `muster-size` TXT record says how many members there are.
    UnknownSize {
        /// The SRV owner name where the TXT record belongs.
        record: String,
    },
    /// Fewer members published than the size.
    TooFew {
        /// The SRV owner name.
        record: String,
        /// Distinct SRV records published.
        published: usize,
        /// The size.
        size: Size,
    },
    /// More members published than the size.
    TooMany {
        /// The SRV owner name.
        record: String,
        /// Distinct SRV records published.
        published: usize,
        /// The size.
        size: Size,
    },
    /// This host's own member is not among the published records.
    NotPublished(PlanError),
    /// Complete, but not yet seen twice in a row.
    NotStable,
    /// What the running cluster (or its absence) keeps this host waiting for.
    Cluster(String),
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::NoServerRecords { records } => {
                write!(f, "no SRV records at {}", records.join(" or "))
            }
            Missing::LookupFailed { name, error } => write!(f, "lookup of {name} failed: {error}"),
            Missing::NoAddress { target } => write!(f, "{target} has no A/AAAA record"),
            Missing::NoClientRecord { target, records } => write!(
                f,
                "{target} has no client SRV record at {} (other members have one)",
                records.join(" or ")
            ),
            Missing::Withheld { record, members } => write!(
                f,
                "{record} declares TXT \"muster-size={members}\" but no SRV records are served \
                 there yet: the server withholds an incomplete set (`musterd check` on the \
                 server names what is missing)"
            ),
            Missing::UnknownSize { record } => write!(
                f,
                "the cluster size is unknown: pass --expect N (MUSTER_EXPECT) or publish \
                 {record} TXT \"muster-size=N\"; a stable set of records is not necessarily a complete one"
            ),
            Missing::TooFew { record, published, size } => write!(
                f,
                "only {published} SRV record{} at {record}, {size}",
                if *published == 1 { "" } else { "s" }
            ),
            Missing::TooMany { record, published, size } => write!(
                f,
                "{published} SRV records at {record} but {size}: fix the zone or the size"
            ),
            Missing::NotPublished(e) => f.write_str(&e.short()),
            Missing::NotStable => write!(f, "waiting to read the same records twice in a row"),
            Missing::Cluster(why) => f.write_str(why),
        }
    }
}

/// Progress of one round: how many members resolve and what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Members whose target resolved to at least one address.
    pub resolvable: usize,
    /// The cluster size, when known.
    pub total: Option<usize>,
    /// What is missing, in the order found.
    pub missing: Vec<Missing>,
}

impl Progress {
    /// The long explanations behind the one-line items (which members exist, this host's
    /// addresses), for the final timeout message.
    pub fn details(&self) -> Vec<String> {
        self.missing
            .iter()
            .filter_map(|m| match m {
                Missing::NotPublished(e) => Some(e.to_string()),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.total {
            Some(t) => write!(f, "{}/{t} members resolvable", self.resolvable)?,
            None => write!(f, "{} members resolvable", self.resolvable)?,
        }
        for m in &self.missing {
            write!(f, "; {m}")?;
        }
        Ok(())
    }
}

/// Result of judging one round that did not give a complete cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsettled {
    /// Records may still appear or change: keep waiting.
    Pending(Progress),
    /// Waiting cannot fix this: stop with the error.
    Fatal(PlanError),
}

/// One read of the chosen SRV set: every member published so far and what is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Census {
    /// Owner name of the SRV set used.
    pub record: String,
    /// Scheme of that set.
    pub scheme: Scheme,
    /// The cluster size, when known.
    pub size: Option<Size>,
    /// Every distinct SRV record, sorted by name; unresolved ones have no addresses.
    pub published: Vec<Candidate>,
    /// What keeps the set from being complete.
    pub missing: Vec<Missing>,
}

impl Census {
    /// The progress line of this census.
    pub fn progress(&self) -> Progress {
        Progress {
            resolvable: self
                .published
                .iter()
                .filter(|c| !c.addresses.is_empty())
                .count(),
            total: self.size.map(|s| s.members),
            missing: self.missing.clone(),
        }
    }

    /// The members, when nothing is missing.
    pub fn complete(self) -> Result<Members, Unsettled> {
        if !self.missing.is_empty() {
            return Err(Unsettled::Pending(self.progress()));
        }
        Ok(Members {
            record: self.record,
            scheme: self.scheme,
            members: self.published,
        })
    }
}

/// Reads `rs` for the cluster: the SRV set (forced by `scheme`, if given), the size
/// (`expect`, if given, checked against a published one), and every member. Pending
/// only when no SRV set can be chosen yet; fatal when the records contradict each other
/// or the flags.
pub fn census(
    service: &Service,
    rs: &RecordSet,
    scheme: Option<Scheme>,
    expect: Option<usize>,
) -> Result<Census, Unsettled> {
    let (scheme, record, srvs) = match choose_set(service, rs, scheme) {
        Ok(chosen) => chosen?,
        Err(missing) => return Err(nothing_chosen(rs, expect, missing)),
    };
    let mut missing = Vec::new();
    let size =
        match cluster_size(&record, rs.sizes.get(&record), expect).map_err(Unsettled::Fatal)? {
            Ok(size) => Some(size),
            Err(m) => {
                missing.push(m);
                None
            }
        };
    let clients = client_ports(service, rs).unwrap_or_else(|m| {
        missing.push(m);
        BTreeMap::new()
    });
    let client_records = published_client_records(service, rs);
    let published = candidates(
        &record,
        srvs,
        &rs.addresses,
        &clients,
        &client_records,
        &mut missing,
    )
    .map_err(Unsettled::Fatal)?;
    if let Some(size) = size {
        let n = published.len();
        if n < size.members {
            missing.push(Missing::TooFew {
                record: record.clone(),
                published: n,
                size,
            });
        } else if n > size.members {
            missing.push(Missing::TooMany {
                record: record.clone(),
                published: n,
                size,
            });
        }
    }
    unique_names(&record, &published).map_err(Unsettled::Fatal)?;
    Ok(Census {
        record,
        scheme,
        size,
        published,
        missing,
    })
}

/// Why no SRV set can be chosen yet. A size record at an owner without SRV records is
/// read all the same: a malformed one, or one that contradicts `--expect`, is fatal at
/// once, and a good one means the server withholds the set until it is complete.
fn nothing_chosen(rs: &RecordSet, expect: Option<usize>, missing: Missing) -> Unsettled {
    let mut all = Vec::new();
    if let Missing::NoServerRecords { records } = &missing {
        for record in records {
            let Some(Answer::Records(rr)) = rs.sizes.get(record) else {
                continue;
            };
            match published_size(record, rr) {
                Err(fatal) => return Unsettled::Fatal(fatal),
                Ok(None) => {}
                Ok(Some(published)) => match expect {
                    Some(e) if e != published => {
                        return Unsettled::Fatal(PlanError::ExpectDisagrees {
                            expect: e,
                            record: record.clone(),
                            published,
                        })
                    }
                    _ => all.push(Missing::Withheld {
                        record: record.clone(),
                        members: published,
                    }),
                },
            }
        }
    }
    all.push(missing);
    Unsettled::Pending(Progress {
        resolvable: 0,
        total: expect,
        missing: all,
    })
}

/// Step 1: the SRV set. With both published, etcd 3.5+ merges them and may fold two
/// hosts into one member; we refuse rather than guess. The outer error is "nothing to
/// choose yet", the inner one a contradiction.
fn choose_set<'a>(
    service: &Service,
    rs: &'a RecordSet,
    scheme: Option<Scheme>,
) -> Result<Result<Chosen<'a>, Unsettled>, Missing> {
    let ssl_name = service.record(Role::Server, Scheme::Https);
    let plain_name = service.record(Role::Server, Scheme::Http);
    let failed = |name: &str, error: &str| Missing::LookupFailed {
        name: name.to_string(),
        error: error.to_string(),
    };
    // A set not asked (`--scheme`) reads as empty.
    let empty: &'static Answer<Srv> = &Answer::Empty;
    let ssl = rs.server_ssl.as_ref().unwrap_or(empty);
    let plain = rs.server_plain.as_ref().unwrap_or(empty);
    match (scheme, ssl, plain) {
        (Some(Scheme::Https), Answer::Records(r), _)
        | (None, Answer::Records(r), Answer::Empty) => Ok(Ok((Scheme::Https, ssl_name, r))),
        (Some(Scheme::Http), _, Answer::Records(r)) | (None, Answer::Empty, Answer::Records(r)) => {
            Ok(Ok((Scheme::Http, plain_name, r)))
        }
        (None, Answer::Records(_), Answer::Records(_)) => {
            Ok(Err(Unsettled::Fatal(PlanError::BothServerSets {
                ssl: ssl_name,
                plain: plain_name,
            })))
        }
        (Some(Scheme::Https), Answer::Failed(e), _) | (None, Answer::Failed(e), _) => {
            Err(failed(&ssl_name, e))
        }
        (Some(Scheme::Http), _, Answer::Failed(e)) | (None, _, Answer::Failed(e)) => {
            Err(failed(&plain_name, e))
        }
        (Some(Scheme::Https), Answer::Empty, _) => Err(Missing::NoServerRecords {
            records: vec![ssl_name],
        }),
        (Some(Scheme::Http), _, Answer::Empty) => Err(Missing::NoServerRecords {
            records: vec![plain_name],
        }),
        (None, Answer::Empty, Answer::Empty) => Err(Missing::NoServerRecords {
            records: vec![ssl_name, plain_name],
        }),
    }
}

/// Step 2: the size, from `--expect` and the `muster-size=N` TXT records at `record`.
/// Other TXT records there are not ours and are ignored. The inner error is what is
/// missing (no size anywhere, or the TXT lookup failed).
fn cluster_size(
    record: &str,
    txt: Option<&Answer<Txt>>,
    expect: Option<usize>,
) -> Result<Result<Size, Missing>, PlanError> {
    let published = match txt {
        Some(Answer::Records(rr)) => published_size(record, rr)?,
        // Even with --expect: the failed lookup might hide a size that contradicts it.
        Some(Answer::Failed(error)) => {
            return Ok(Err(Missing::LookupFailed {
                name: format!("{record} TXT"),
                error: error.clone(),
            }))
        }
        Some(Answer::Empty) | None => None,
    };
    Ok(match (expect, published) {
        (Some(e), Some(p)) if e != p => {
            return Err(PlanError::ExpectDisagrees {
                expect: e,
                record: record.to_string(),
                published: p,
            })
        }
        (Some(e), _) => Ok(Size {
            members: e,
            source: SizeSource::Expect,
        }),
        (None, Some(p)) => Ok(Size {
            members: p,
            source: SizeSource::Txt,
        }),
        (None, None) => Err(Missing::UnknownSize {
            record: record.to_string(),
        }),
    })
}

/// Why TXT records publish no usable size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxtSizeError<'a> {
    /// A record starts with `muster-size` but is not exactly one character-string
    /// `muster-size=N`, N > 0: its strings.
    Malformed(&'a [String]),
    /// Records publish different sizes (ascending).
    Conflict(Vec<usize>),
}

/// The size TXT records publish, the agent's one reader of `muster-size=N` (census and
/// doctor): each record read by the rule musterd reads it with
/// ([`muster_conventions::size`]); several records must agree. Ok(None) when no
/// record starts with `muster-size`. Each item is one record's character-strings.
pub fn txt_size<'a>(
    records: impl IntoIterator<Item = &'a [String]>,
) -> Result<Option<usize>, TxtSizeError<'a>> {
    let mut sizes = BTreeSet::new();
    for strings in records {
        match size_record(strings) {
            SizeRecord::NotSize => {}
            // Sizes are u32 in the shared rule; usize holds every u32 here.
            SizeRecord::Size(n) => {
                sizes.insert(n as usize);
            }
            SizeRecord::Malformed => return Err(TxtSizeError::Malformed(strings)),
        }
    }
    match sizes.len() {
        0 => Ok(None),
        1 => Ok(sizes.first().copied()),
        _ => Err(TxtSizeError::Conflict(sizes.into_iter().collect())),
    }
}

/// The size the TXT records at `record` publish ([`txt_size`]).
fn published_size(record: &str, rr: &[Txt]) -> Result<Option<usize>, PlanError> {
    txt_size(rr.iter().map(|txt| txt.0.as_slice())).map_err(|e| match e {
        TxtSizeError::Malformed(strings) => PlanError::MalformedSize {
            record: record.to_string(),
            txt: Txt(strings.to_vec()).to_string(),
        },
        TxtSizeError::Conflict(sizes) => PlanError::SizeConflict {
            record: record.to_string(),
            sizes,
        },
    })
}

/// Client (scheme, port) pairs by target. Both sets, like etcd's clients. A failed lookup
/// could hide a member's client port, so it holds the round back.
fn client_ports<'a>(service: &Service, rs: &'a RecordSet) -> Result<ClientPorts<'a>, Missing> {
    let mut ports = ClientPorts::new();
    for (answer, s) in [
        (&rs.client_ssl, Scheme::Https),
        (&rs.client_plain, Scheme::Http),
    ] {
        match answer {
            Answer::Records(rr) => {
                for r in rr {
                    ports
                        .entry(r.target.as_str())
                        .or_default()
                        .push((s, r.port));
                }
            }
            Answer::Empty => {}
            Answer::Failed(error) => {
                return Err(Missing::LookupFailed {
                    name: service.record(Role::Client, s),
                    error: error.clone(),
                })
            }
        }
    }
    for v in ports.values_mut() {
        v.sort();
        v.dedup();
    }
    Ok(ports)
}

/// The client owner names that have records.
fn published_client_records(service: &Service, rs: &RecordSet) -> Vec<String> {
    [
        (&rs.client_ssl, Scheme::Https),
        (&rs.client_plain, Scheme::Http),
    ]
    .into_iter()
    .filter(|(a, _)| matches!(a, Answer::Records(_)))
    .map(|(_, s)| service.record(Role::Client, s))
    .collect()
}

/// Step 3: one candidate per distinct SRV record, with what is missing for each: its
/// addresses, and its client record when the cluster publishes client records (a member
/// started before its own client record arrives would advertise the default port).
fn candidates(
    record: &str,
    srvs: &[Srv],
    addresses: &BTreeMap<String, Answer<IpAddr>>,
    clients: &ClientPorts<'_>,
    client_records: &[String],
    missing: &mut Vec<Missing>,
) -> Result<Vec<Candidate>, PlanError> {
    let mut out = Vec::new();
    let mut seen: BTreeSet<(&str, u16)> = BTreeSet::new();
    for r in srvs {
        // RFC 2782: target "." means the service is decidedly not available there.
        if r.target == "." || !seen.insert((r.target.as_str(), r.port)) {
            continue;
        }
        let name = MemberName::of_target(&r.target).map_err(|_| PlanError::BadMemberName {
            target: r.target.clone(),
            record: record.to_string(),
            label: r.target.split('.').next().unwrap_or_default().to_string(),
        })?;
        let addrs = match addresses.get(&r.target) {
            Some(Answer::Records(a)) => a.clone(),
            Some(Answer::Failed(error)) => {
                missing.push(Missing::LookupFailed {
                    name: r.target.clone(),
                    error: error.clone(),
                });
                Vec::new()
            }
            Some(Answer::Empty) | None => {
                missing.push(Missing::NoAddress {
                    target: r.target.clone(),
                });
                Vec::new()
            }
        };
        let ports = clients.get(r.target.as_str()).cloned().unwrap_or_default();
        if ports.is_empty() && !client_records.is_empty() {
            missing.push(Missing::NoClientRecord {
                target: r.target.clone(),
                records: client_records.to_vec(),
            });
        }
        out.push(Candidate {
            name,
            target: r.target.clone(),
            port: r.port,
            addresses: addrs,
            client_ports: ports,
        });
    }
    out.sort_by(|a, b| {
        a.name
            .cmp(&b.name)
            .then(a.target.cmp(&b.target))
            .then(a.port.cmp(&b.port))
    });
    Ok(out)
}

/// Step 4: names are first labels and must be unique (etcd keys members by name in
/// `--initial-cluster`).
fn unique_names(record: &str, published: &[Candidate]) -> Result<(), PlanError> {
    for pair in published.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(PlanError::DuplicateName {
                name: pair[0].name.to_string(),
                record: record.to_string(),
                first: pair[0].endpoint(),
                second: pair[1].endpoint(),
            });
        }
    }
    Ok(())
}
