//! Building the response to one query: the authoritative answer algorithm of RFC 1034
//! §4.3.2 with RFC 2308 negative answers, RFC 4592 wildcards, RFC 8482 minimal ANY,
//! RFC 6891 EDNS and RFC 2181 §9 truncation.
//!
//! [`Responder::respond`] is a pure function of (catalog, packet, transport) into a
//! caller-owned buffer: the transports own the sockets and buffers, this module owns the
//! DNS rules. It allocates nothing per query once the buffers have grown.
//!
//! Additional-section processing adds the A and AAAA records of **every** SRV, MX and NS
//! target found in a served zone (hickory's stock handler adds only the first), bounded by
//! [`AnswerConfig::max_additional_targets`] (CVE-2024-11187 is about unbounded work here).

use crate::catalog::Catalog;
use crate::name::{wire_name_len, MAX_NAME_LEN};
use crate::rr::{class, rtype};
use crate::wire::{self, flags, opcode, parse_query, rcode, Compressor, Malformed, Query, Writer};
use crate::zone::{Found, Node, RRset, Zone};

/// Smallest UDP payload any DNS client must accept (RFC 1035 §4.2.1, RFC 6891 §6.2.5).
pub const MIN_UDP_PAYLOAD: u16 = 512;

/// Tunables of the answer logic.
#[derive(Debug, Clone)]
pub struct AnswerConfig {
    /// Largest UDP response we send, whatever the client offers (DNS Flag Day 2020: 1232).
    pub max_udp_payload: u16,
    /// Longest CNAME chain followed inside a zone.
    pub cname_chain_limit: usize,
    /// Most targets whose addresses go into the additional section.
    pub max_additional_targets: usize,
    /// Answer to `version.bind`/`version.server` CH TXT; `None` refuses (hides the version).
    pub version: Option<String>,
    /// Answer to `hostname.bind`/`id.server` CH TXT; `None` refuses.
    pub identity: Option<String>,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            max_udp_payload: 1232,
            cname_chain_limit: 16,
            max_additional_targets: 64,
            version: None,
            identity: None,
        }
    }
}

/// How the query arrived: decides the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What happened to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response is in the buffer.
    Reply { rcode: u16, truncated: bool },
    /// No response: send nothing.
    Drop(wire::DropReason),
}

/// Answers queries from a catalog.
#[derive(Debug, Clone, Default)]
pub struct Responder {
    pub config: AnswerConfig,
}

/// What the section-filling step decided.
struct Filled {
    rcode: u16,
    /// Answer and authority do not fit: send TC with an empty answer.
    overflow: bool,
}

/// Where a response can be cut: the length after answer and authority, then after each
/// additional RRset, with the additional count at that point. Used to precompile answers.
pub type Cuts = Vec<(usize, u16)>;

impl Responder {
    /// A responder with this configuration.
    pub fn new(config: AnswerConfig) -> Responder {
        Responder { config }
    }

    /// Builds the response to `pkt` in `buf`.
    pub fn respond(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        transport: Transport,
        buf: &mut Vec<u8>,
        comp: &mut Compressor,
    ) -> Outcome {
        let q = match parse_query(pkt) {
            Ok(q) => q,
            Err(Malformed::Drop(reason)) => return Outcome::Drop(reason),
            Err(Malformed::Reply {
                id,
                opcode,
                copy_flags,
                rcode,
                question_len,
                edns,
            }) => {
                let question = &pkt[wire::HEADER_LEN..wire::HEADER_LEN + question_len];
                let mut w = Writer::new(buf, comp, id, opcode, copy_flags, question);
                w.set_rcode(rcode);
                if let Some(e) = edns {
                    w.opt(self.config.max_udp_payload, rcode, e.dnssec_ok);
                }
                w.finish();
                return Outcome::Reply {
                    rcode,
                    truncated: false,
                };
            }
        };
        if let Some(outcome) = crate::fastpath::answer(self, catalog, &q, transport, buf) {
            return outcome;
        }
        self.answer(catalog, &q, transport, buf, comp, None)
    }

    /// Like [`Responder::respond`] but never uses precompiled answers: the reference the
    /// fast path is tested against.
    pub fn respond_full(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        transport: Transport,
        buf: &mut Vec<u8>,
        comp: &mut Compressor,
    ) -> Outcome {
        match parse_query(pkt) {
            Ok(q) => self.answer(catalog, &q, transport, buf, comp, None),
            Err(_) => self.respond(catalog, pkt, transport, buf, comp),
        }
    }

    /// The size limit for this query's response.
    pub(crate) fn limit(&self, q: &Query<'_>, transport: Transport) -> usize {
        match (transport, q.edns) {
            (Transport::Tcp, _) => u16::MAX as usize,
            (Transport::Udp, None) => MIN_UDP_PAYLOAD as usize,
            (Transport::Udp, Some(e)) => e.udp_payload.clamp(
                MIN_UDP_PAYLOAD,
                self.config.max_udp_payload.max(MIN_UDP_PAYLOAD),
            ) as usize,
        }
    }

    /// Answers a well-formed query. With `cuts`, records where the response could be cut
    /// and returns `None` in it when the answer depends on data outside the query's zone.
    pub fn answer(
        &self,
        catalog: &Catalog,
        q: &Query<'_>,
        transport: Transport,
        buf: &mut Vec<u8>,
        comp: &mut Compressor,
        cuts: Option<&mut Option<Cuts>>,
    ) -> Outcome {
        let opt_len = if q.edns.is_some() { 11 } else { 0 };
        let limit = self.limit(q, transport) - opt_len;
        let mut w = Writer::new(buf, comp, q.id, q.opcode, q.copy_flags, q.question);
        let filled = if q.opcode != opcode::QUERY {
            // NOTIFY and UPDATE come with later issues; until then they are not implemented.
            Filled {
                rcode: rcode::NOTIMP,
                overflow: false,
            }
        } else {
            match q.qclass {
                class::IN => self.answer_in(catalog, q, transport, &mut w, limit, cuts),
                class::CH => self.answer_chaos(q, &mut w),
                _ => Filled {
                    rcode: rcode::REFUSED,
                    overflow: false,
                },
            }
        };
        let mut truncated = false;
        if filled.overflow || w.len() > limit {
            // RFC 2181 §9: never a partial RRset; send TC with empty sections (as Knot and
            // NSD do) so the client retries over TCP.
            let qlen = wire::HEADER_LEN + q.question.len();
            w.truncate(qlen, 1, 0);
            w.counts = [1, 0, 0, 0];
            w.set_flags(flags::TC);
            truncated = true;
        }
        w.set_rcode(filled.rcode);
        if let Some(e) = q.edns {
            w.opt(self.config.max_udp_payload, filled.rcode, e.dnssec_ok);
        }
        w.finish();
        Outcome::Reply {
            rcode: filled.rcode,
            truncated,
        }
    }

    /// CHAOS class: only the identity names, and only when configured.
    fn answer_chaos(&self, q: &Query<'_>, w: &mut Writer<'_>) -> Filled {
        let text = match q.qname() {
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => {
                self.config.version.as_deref()
            }
            b"\x08hostname\x04bind\x00" | b"\x02id\x06server\x00" => {
                self.config.identity.as_deref()
            }
            _ => None,
        };
        let Some(text) = text else {
            return Filled {
                rcode: rcode::REFUSED,
                overflow: false,
            };
        };
        w.set_flags(flags::AA);
        if q.qtype == rtype::TXT || q.qtype == rtype::ANY {
            let mut rdata = Vec::with_capacity(text.len() + 1);
            for chunk in text.as_bytes().chunks(255) {
                rdata.push(chunk.len() as u8);
                rdata.extend_from_slice(chunk);
            }
            w.record(1, q.qname(), rtype::TXT, class::CH, 0, &rdata);
        }
        Filled {
            rcode: rcode::NOERROR,
            overflow: false,
        }
    }

    /// Class IN: the RFC 1034 §4.3.2 algorithm.
    fn answer_in(
        &self,
        catalog: &Catalog,
        q: &Query<'_>,
        transport: Transport,
        w: &mut Writer<'_>,
        limit: usize,
        cuts: Option<&mut Option<Cuts>>,
    ) -> Filled {
        let refused = Filled {
            rcode: rcode::REFUSED,
            overflow: false,
        };
        match q.qtype {
            // Meta types that cannot be asked for (RFC 6895 §3.1, RFC 6891 §6.1.1).
            0 | rtype::OPT | rtype::TSIG => {
                return Filled {
                    rcode: rcode::FORMERR,
                    overflow: false,
                }
            }
            rtype::TKEY | rtype::MAILA | rtype::MAILB => {
                return Filled {
                    rcode: rcode::NOTIMP,
                    overflow: false,
                }
            }
            rtype::AXFR | rtype::IXFR => {
                // Zone transfer is only defined over TCP (RFC 5936 §4.2); over TCP it is not
                // allowed until transfer ACLs exist.
                return match transport {
                    Transport::Udp => Filled {
                        rcode: rcode::NOTIMP,
                        overflow: false,
                    },
                    Transport::Tcp => refused,
                };
            }
            _ => {}
        }
        let Some(zone) = catalog.find(q.qname()) else {
            // RFC 8906 practice: not ours, no referral to the root, AA clear.
            return refused;
        };
        w.set_flags(flags::AA);

        // The current name of the CNAME chain, lower-cased, and how to write it as owner.
        let mut key_buf = [0u8; MAX_NAME_LEN];
        let mut key_len = q.qname().len();
        key_buf[..key_len].copy_from_slice(q.qname());
        let mut additional: AdditionalTargets = AdditionalTargets::default();
        let mut chain = 0usize;
        // Names already answered in this chain (only CNAME answers touch these, so the
        // common path does not allocate).
        let mut visited: Vec<(usize, usize)> = Vec::new();
        let mut visited_buf: Vec<u8> = Vec::new();
        let mut owner_buf = [0u8; MAX_NAME_LEN];
        owner_buf[..key_len].copy_from_slice(q.qname());
        let mut owner_len = key_len;

        let rcode = loop {
            let key = &key_buf[..key_len];
            let owner = &owner_buf[..owner_len];
            let found = match zone.find(key) {
                // A DS query at a delegation point is answered from the parent side.
                Found::Referral(cut) if q.qtype == rtype::DS && cut.key() == key => {
                    Found::Exact(cut)
                }
                f => f,
            };
            match found {
                Found::Exact(node) | Found::Wildcard(node) => {
                    if let Some(set) = select(node, q.qtype) {
                        write_rrset(w, 1, owner, set);
                        additional.collect(set, self.config.max_additional_targets);
                        break rcode::NOERROR;
                    }
                    if q.qtype != rtype::CNAME {
                        if let Some(cname) = node.rrset(rtype::CNAME) {
                            write_rrset(w, 1, owner, cname);
                            chain += 1;
                            let target = cname.first();
                            visited.push((visited_buf.len(), key.len()));
                            visited_buf.extend_from_slice(key);
                            // Stop at the cap, at a name already in the chain (a loop: its
                            // records are in the answer already), or outside the zone.
                            let seen = visited.iter().any(|&(s, l)| {
                                l == target.len()
                                    && visited_buf[s..s + l].eq_ignore_ascii_case(target)
                            });
                            if chain >= self.config.cname_chain_limit
                                || seen
                                || !in_zone(target, zone)
                            {
                                break rcode::NOERROR;
                            }
                            key_len = target.len();
                            owner_len = target.len();
                            owner_buf[..owner_len].copy_from_slice(target);
                            key_buf[..key_len].copy_from_slice(target);
                            key_buf[..key_len].make_ascii_lowercase();
                            continue;
                        }
                    }
                    write_negative(w, zone);
                    break rcode::NOERROR;
                }
                Found::Referral(cut) => {
                    if chain == 0 {
                        // A referral is not authoritative (RFC 1034 §4.3.2 step 3b).
                        clear_aa(w);
                    }
                    if let Some(ns) = cut.rrset(rtype::NS) {
                        write_rrset(w, 2, cut.owner(), ns);
                        additional.collect(ns, self.config.max_additional_targets);
                    }
                    break rcode::NOERROR;
                }
                Found::NxDomain => {
                    write_negative(w, zone);
                    break rcode::NXDOMAIN;
                }
            }
        };
        let mut record: Option<&mut Cuts> = None;
        if let Some(c) = cuts {
            if additional.all_within(zone) {
                *c = Some(vec![(w.len(), 0)]);
                record = c.as_mut();
            } else {
                *c = None;
            }
        }
        if w.len() > limit {
            return Filled {
                rcode,
                overflow: true,
            };
        }
        additional.write(catalog, w, limit, record);
        Filled {
            rcode,
            overflow: false,
        }
    }
}

/// The RRset answering `qtype` at `node`; for ANY the first RRset by type (RFC 8482 §4.2:
/// one RRset, over UDP and TCP alike, as Knot and NSD do).
fn select<'z>(node: Node<'z>, qtype: u16) -> Option<RRset<'z>> {
    if qtype == rtype::ANY {
        return node.first_rrset();
    }
    node.rrset(qtype)
}

fn in_zone(target: &[u8], zone: &Zone) -> bool {
    let origin = zone.origin.as_wire();
    crate::name::suffixes(target).any(|s| s.len() == origin.len() && s.eq_ignore_ascii_case(origin))
}

fn clear_aa(w: &mut Writer<'_>) {
    let fl = u16::from_be_bytes([w.buf[2], w.buf[3]]) & !flags::AA;
    w.buf[2..4].copy_from_slice(&fl.to_be_bytes());
}

fn write_rrset(w: &mut Writer<'_>, section: usize, owner: &[u8], set: RRset<'_>) {
    for rdata in set.rdatas() {
        w.record(section, owner, set.rtype, class::IN, set.ttl, rdata);
    }
}

/// RFC 2308 §3: the zone's SOA in authority, with TTL min(SOA TTL, MINIMUM).
fn write_negative(w: &mut Writer<'_>, zone: &Zone) {
    w.record(
        2,
        zone.apex().owner(),
        rtype::SOA,
        class::IN,
        zone.negative_ttl,
        &zone.soa_rdata,
    );
}

/// Names whose addresses belong in the additional section, in answer order, deduplicated.
#[derive(Default)]
struct AdditionalTargets {
    // Small fixed-size list: answers have few targets, and the cap bounds the work.
    names: Vec<(usize, usize)>,
    storage: Vec<u8>,
}

impl AdditionalTargets {
    fn collect(&mut self, set: RRset<'_>, cap: usize) {
        for rdata in set.rdatas() {
            let name = match set.rtype {
                rtype::SRV if rdata.len() > 6 => &rdata[6..],
                rtype::MX if rdata.len() > 2 => &rdata[2..],
                rtype::NS => rdata,
                _ => return,
            };
            if name.len() <= 1 || wire_name_len(name) != Some(name.len()) {
                continue; // "." means no service (RFC 2782); nothing to add.
            }
            if self.names.len() >= cap {
                return;
            }
            let dup = self.names.iter().any(|&(s, l)| {
                l == name.len() && self.storage[s..s + l].eq_ignore_ascii_case(name)
            });
            if !dup {
                let start = self.storage.len();
                self.storage.extend_from_slice(name);
                self.storage[start..].make_ascii_lowercase();
                self.names.push((start, name.len()));
            }
        }
    }

    /// True when every target is inside `zone`, so the answer depends on that zone alone.
    fn all_within(&self, zone: &Zone) -> bool {
        self.names
            .iter()
            .all(|&(s, l)| in_zone(&self.storage[s..s + l], zone))
    }

    /// Appends A then AAAA of each target while they fit; dropping additional data does not
    /// set TC (RFC 2181 §9). With `cuts`, records the length after each RRset.
    fn write(
        &self,
        catalog: &Catalog,
        w: &mut Writer<'_>,
        limit: usize,
        mut cuts: Option<&mut Cuts>,
    ) {
        for &(s, l) in &self.names {
            let key = &self.storage[s..s + l];
            let Some(zone) = catalog.find(key) else {
                continue;
            };
            // Exact node only: glue below a cut is wanted here, wildcards are not.
            let Some(node) = zone.node(key) else { continue };
            for t in [rtype::A, rtype::AAAA] {
                if let Some(set) = node.rrset(t) {
                    let before = w.len();
                    let count = w.counts[3];
                    write_rrset(w, 3, node.owner(), set);
                    if w.len() > limit {
                        w.truncate(before, 3, count);
                        return;
                    }
                    if let Some(c) = cuts.as_deref_mut() {
                        c.push((w.len(), w.counts[3]));
                    }
                }
            }
        }
    }
}
