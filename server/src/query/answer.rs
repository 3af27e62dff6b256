//! Building the response to one query: the authoritative answer algorithm of RFC 1034
//! §4.3.2 with RFC 2308 negative answers, RFC 4592 wildcards, RFC 8482 minimal ANY,
//! RFC 6891 EDNS and RFC 2181 §9 truncation.
//!
//! [`Responder::answer`] is a pure function of (catalog, query, transport) into a
//! caller-owned buffer: the transports own the sockets and buffers, this module owns the
//! DNS rules. Which path answers a packet (this one or a precompiled answer) is decided
//! in [`crate::query::respond`]; precompiling watches this path through an [`Observer`].
//!
//! Nothing is allocated per query once the caller's buffer and [`Scratch`] have grown to
//! the largest answer seen: the additional-section targets and the CNAME chain live in the
//! scratch space, not in per-query vectors (a test counts allocations).
//!
//! Additional-section processing adds the A and AAAA records of **every** SRV, MX and NS
//! target found in a served zone (hickory's stock handler adds only the first), bounded by
//! [`AnswerConfig::max_additional_targets`] (CVE-2024-11187 is about unbounded work here).
//!
//! Zone data the writer refuses (see [`WriteError`]) gives SERVFAIL with empty
//! sections, never a panic or a partial record.
//!
//! An SRV RRset behind a closed completeness gate ([`crate::zone::gate`]) is answered NODATA
//! with a short negative TTL. When the query has EDNS, withheld answers and refusals
//! carry an Extended DNS Error (RFC 8914): 14 "Not Ready" with the gate's state, 20 "Not
//! Authoritative" for names outside the served zones (as Knot and NSD do), 18
//! "Prohibited" for what policy refuses (identity names not configured, zone transfers).

use crate::proto::builder::{ede, Compressor, Ede, MessageBuilder, Section, WriteError};
use crate::proto::name::{wire_name_len, MAX_NAME_LEN};
use crate::proto::query::{parse_query, Malformed, Query};
use crate::proto::rr::{is_meta_or_query_only, Rclass, Rtype};
use crate::proto::types::{Opcode, Rcode};
use crate::proto::{flags, HEADER_LEN};
use crate::zone::catalog::Catalog;
use crate::zone::gate::WITHHELD_NEGATIVE_TTL;
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
    Reply { rcode: Rcode, truncated: bool },
    /// No response: send nothing.
    Drop(crate::proto::query::DropReason),
}

/// Answers queries from a catalog.
#[derive(Debug, Clone, Default)]
pub struct Responder {
    pub config: AnswerConfig,
}

/// Working space of the full path, kept by each transport worker and reused from one
/// query to the next so that answering allocates nothing once it has grown.
#[derive(Default)]
pub struct Scratch {
    /// The writer's compression table.
    pub comp: Compressor,
    /// Names whose addresses go into the additional section.
    targets: AdditionalTargets,
    /// Names already answered in the current CNAME chain: (start, length) in `chain_names`.
    chain: Vec<(usize, usize)>,
    chain_names: Vec<u8>,
}

/// What precompiling needs to see while the full path builds an answer: where the
/// response can be cut, and whether it depends on anything but the query's zone. Every
/// method does nothing by default; `()` is the observer of ordinary queries.
pub trait Observer {
    /// Answer and authority are written (the message is `len` octets) and the additional
    /// section comes next. `self_contained` is false when an additional target lies
    /// outside the query's zone, so the answer depends on other zones.
    fn sections_written(&mut self, len: usize, self_contained: bool) {
        let _ = (len, self_contained);
    }

    /// An additional RRset was written: the message is `len` octets with `additional`
    /// records in that section. Each such point is a place the response can be cut.
    fn additional_written(&mut self, len: usize, additional: u16) {
        let _ = (len, additional);
    }

    /// The additional section looks up the addresses of `key` (lower-cased), whether or
    /// not it exists: a precompiled answer is stale once that name changes.
    fn additional_target(&mut self, key: &[u8]) {
        let _ = key;
    }

    /// The writer refused zone data, so the answer became SERVFAIL.
    fn refused(&mut self, error: WriteError) {
        let _ = error;
    }

    /// The answer withholds an RRset behind a closed completeness gate: it carries an
    /// Extended DNS Error that a precompiled answer cannot, so it is not precompiled.
    fn withheld(&mut self) {}
}

impl Observer for () {}

/// What the section-filling step decided.
struct Filled<'a> {
    rcode: Rcode,
    /// Answer and authority do not fit: send TC with an empty answer.
    overflow: bool,
    /// The Extended DNS Error for the OPT record, when the query has one.
    ede: Option<Ede<'a>>,
}

impl<'a> Filled<'a> {
    fn rcode(rcode: Rcode) -> Filled<'a> {
        Filled {
            rcode,
            overflow: false,
            ede: None,
        }
    }

    /// A refusal with Extended DNS Error `code` (no extra text).
    fn refused(code: u16) -> Filled<'a> {
        Filled {
            ede: Some(Ede { code, text: "" }),
            ..Filled::rcode(Rcode::REFUSED)
        }
    }
}

impl Responder {
    /// A responder with this configuration.
    pub fn new(config: AnswerConfig) -> Responder {
        Responder { config }
    }

    /// Builds the response to `pkt` in `buf` by the full path only. [`crate::query::respond`]
    /// also uses precompiled answers; this is the reference they are tested against.
    pub fn respond_full(
        &self,
        catalog: &Catalog,
        pkt: &[u8],
        transport: Transport,
        buf: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        match parse_query(pkt) {
            Ok(q) => self.answer(catalog, &q, transport, buf, scratch),
            Err(m) => self.reply_malformed(pkt, m, buf, &mut scratch.comp),
        }
    }

    /// The response to a packet [`parse_query`] rejected: nothing, or FORMERR, NOTIMP or
    /// BADVERS echoing what could be parsed.
    pub fn reply_malformed(
        &self,
        pkt: &[u8],
        malformed: Malformed,
        buf: &mut Vec<u8>,
        comp: &mut Compressor,
    ) -> Outcome {
        match malformed {
            Malformed::Drop(reason) => Outcome::Drop(reason),
            Malformed::Reply {
                id,
                opcode,
                copy_flags,
                rcode,
                question_len,
                edns,
            } => {
                let question = &pkt[HEADER_LEN..HEADER_LEN + question_len];
                let mut w = MessageBuilder::new(buf, comp, id, opcode, copy_flags, question);
                w.set_rcode(rcode);
                if let Some(e) = edns {
                    w.opt(self.config.max_udp_payload, rcode, e.dnssec_ok);
                }
                w.finish();
                Outcome::Reply {
                    rcode,
                    truncated: false,
                }
            }
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

    /// Answers a well-formed query by the full RFC algorithm.
    pub fn answer(
        &self,
        catalog: &Catalog,
        q: &Query<'_>,
        transport: Transport,
        buf: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) -> Outcome {
        self.answer_observed(catalog, q, transport, buf, scratch, &mut ())
    }

    /// [`Responder::answer`], telling `observer` how the response is built.
    pub fn answer_observed(
        &self,
        catalog: &Catalog,
        q: &Query<'_>,
        transport: Transport,
        buf: &mut Vec<u8>,
        scratch: &mut Scratch,
        observer: &mut impl Observer,
    ) -> Outcome {
        let opt_len = if q.edns.is_some() { 11 } else { 0 };
        let limit = self.limit(q, transport) - opt_len;
        let Scratch {
            comp,
            targets,
            chain,
            chain_names,
        } = scratch;
        targets.clear();
        chain.clear();
        chain_names.clear();
        let mut w = MessageBuilder::new(buf, comp, q.id, q.opcode, q.copy_flags, q.question);
        let filled = if q.opcode != Opcode::QUERY {
            // NOTIFY and UPDATE come with later issues; until then they are not implemented.
            Ok(Filled::rcode(Rcode::NOTIMP))
        } else {
            match q.qclass {
                Rclass::IN => {
                    let mut chain = Chain {
                        names: chain,
                        storage: chain_names,
                    };
                    let mut state = InState {
                        w: &mut w,
                        targets,
                        chain: &mut chain,
                        limit,
                    };
                    self.answer_in(catalog, q, transport, &mut state, observer)
                }
                Rclass::CH => self.answer_chaos(q, &mut w),
                // No zone of another class is served.
                _ => Ok(Filled::refused(ede::NOT_AUTHORITATIVE)),
            }
        };
        let filled = filled.unwrap_or_else(|error| {
            tracing::debug!(%error, qtype = %q.qtype, "zone data refused by the writer: SERVFAIL");
            observer.refused(error);
            w.clear_records();
            w.clear_flags(flags::AA);
            Filled::rcode(Rcode::SERVFAIL)
        });
        let mut truncated = false;
        if filled.overflow || w.len() > limit {
            // RFC 2181 §9: never a partial RRset; send TC with empty sections (as Knot and
            // NSD do) so the client retries over TCP.
            w.clear_records();
            w.set_flags(flags::TC);
            truncated = true;
        }
        w.set_rcode(filled.rcode);
        if let Some(e) = q.edns {
            // The EDE is only informative: left out if it would not fit.
            let info = filled.ede.filter(|i| w.len() + i.wire_len() <= limit);
            w.opt_with_ede(self.config.max_udp_payload, filled.rcode, e.dnssec_ok, info);
        }
        w.finish();
        Outcome::Reply {
            rcode: filled.rcode,
            truncated,
        }
    }

    /// CHAOS class: only the identity names, and only when configured.
    fn answer_chaos(
        &self,
        q: &Query<'_>,
        w: &mut MessageBuilder<'_>,
    ) -> Result<Filled<'static>, WriteError> {
        let text = match q.qname() {
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => {
                self.config.version.as_deref()
            }
            b"\x08hostname\x04bind\x00" | b"\x02id\x06server\x00" => {
                self.config.identity.as_deref()
            }
            _ => return Ok(Filled::refused(ede::NOT_AUTHORITATIVE)),
        };
        let Some(text) = text else {
            // An identity name the operator chose not to answer.
            return Ok(Filled::refused(ede::PROHIBITED));
        };
        w.set_flags(flags::AA);
        if q.qtype == Rtype::TXT || q.qtype == Rtype::ANY {
            w.txt_record(Section::Answer, q.qname(), Rclass::CH, 0, text.as_bytes())?;
        }
        Ok(Filled::rcode(Rcode::NOERROR))
    }

    /// Class IN: the RFC 1034 §4.3.2 algorithm.
    fn answer_in<'c>(
        &self,
        catalog: &'c Catalog,
        q: &Query<'_>,
        transport: Transport,
        state: &mut InState<'_, '_>,
        observer: &mut impl Observer,
    ) -> Result<Filled<'c>, WriteError> {
        // Types that name no zone data (RFC 6895 §3.1) each have a rule of their own; ANY
        // is answered from the zone (RFC 8482).
        if q.qtype != Rtype::ANY && is_meta_or_query_only(q.qtype) {
            return Ok(meta_type(q.qtype, transport));
        }
        let Some(zone) = catalog.find(q.qname()) else {
            // RFC 8906 practice: not ours, no referral to the root, AA clear.
            return Ok(Filled::refused(ede::NOT_AUTHORITATIVE));
        };
        let InState {
            w,
            targets,
            chain: visited,
            limit,
        } = state;
        let limit = *limit;
        w.set_flags(flags::AA);
        let cap = self.config.max_additional_targets;

        // The current name of the CNAME chain, lower-cased, and how to write it as owner.
        let mut key_buf = [0u8; MAX_NAME_LEN];
        let mut key_len = q.qname().len();
        key_buf[..key_len].copy_from_slice(q.qname());
        let mut chain = 0usize;
        let mut owner_buf = [0u8; MAX_NAME_LEN];
        owner_buf[..key_len].copy_from_slice(q.qname());
        let mut owner_len = key_len;
        let mut withheld = None;

        let rcode = loop {
            let key = &key_buf[..key_len];
            let owner = &owner_buf[..owner_len];
            let found = match zone.find(key) {
                // A DS query at a delegation point is answered from the parent side.
                Found::Referral(cut) if q.qtype == Rtype::DS && cut.key() == key => {
                    Found::Exact(cut)
                }
                f => f,
            };
            match found {
                Found::Exact(node) | Found::Wildcard(node) => {
                    if let Some(set) = select(node, q.qtype) {
                        let gate = if set.rtype == Rtype::SRV {
                            node.withheld()
                        } else {
                            None
                        };
                        if let Some(gate) = gate {
                            withheld = Some(write_withheld(w, zone, gate, observer)?);
                            break Rcode::NOERROR;
                        }
                        write_rrset(w, Section::Answer, owner, set)?;
                        targets.collect(set, cap);
                        break Rcode::NOERROR;
                    }
                    if q.qtype != Rtype::CNAME {
                        if let Some(cname) = node.rrset(Rtype::CNAME) {
                            write_rrset(w, Section::Answer, owner, cname)?;
                            chain += 1;
                            let target = cname.first();
                            visited.push(key);
                            // Stop at the cap, at a name already in the chain (a loop: its
                            // records are in the answer already), or outside the zone.
                            if chain >= self.config.cname_chain_limit
                                || visited.contains(target)
                                || !in_zone(target, zone)
                                || target.len() > MAX_NAME_LEN
                            {
                                break Rcode::NOERROR;
                            }
                            key_len = target.len();
                            owner_len = target.len();
                            owner_buf[..owner_len].copy_from_slice(target);
                            key_buf[..key_len].copy_from_slice(target);
                            key_buf[..key_len].make_ascii_lowercase();
                            continue;
                        }
                    }
                    write_negative(w, zone, zone.negative_ttl)?;
                    break Rcode::NOERROR;
                }
                Found::Referral(cut) => {
                    if chain == 0 {
                        // A referral is not authoritative (RFC 1034 §4.3.2 step 3b).
                        w.clear_flags(flags::AA);
                    }
                    if let Some(ns) = cut.rrset(Rtype::NS) {
                        write_rrset(w, Section::Authority, cut.owner(), ns)?;
                        targets.collect(ns, cap);
                    }
                    break Rcode::NOERROR;
                }
                Found::NxDomain => {
                    write_negative(w, zone, zone.negative_ttl)?;
                    break Rcode::NXDOMAIN;
                }
            }
        };
        observer.sections_written(w.len(), targets.all_within(zone));
        if w.len() > limit {
            return Ok(Filled {
                rcode,
                overflow: true,
                ede: withheld,
            });
        }
        targets.write(catalog, w, limit, observer)?;
        Ok(Filled {
            ede: withheld,
            ..Filled::rcode(rcode)
        })
    }
}

/// An SRV set that a closed completeness gate withholds (the set is incomplete): NODATA,
/// cached briefly, and the gate's Extended DNS Error for the response.
fn write_withheld<'z>(
    w: &mut MessageBuilder<'_>,
    zone: &Zone,
    gate: &'z crate::zone::gate::Gate,
    observer: &mut impl Observer,
) -> Result<Ede<'z>, WriteError> {
    let ttl = zone.negative_ttl.min(WITHHELD_NEGATIVE_TTL);
    write_negative(w, zone, ttl)?;
    observer.withheld();
    Ok(Ede {
        code: ede::NOT_READY,
        text: &gate.text,
    })
}

/// The answer to a query for a type that names no zone data (RFC 6895 §3.1), ANY aside.
fn meta_type(qtype: Rtype, transport: Transport) -> Filled<'static> {
    Filled::rcode(match qtype {
        // Zone transfer is only defined over TCP (RFC 5936 §4.2); over TCP it is not
        // allowed until transfer ACLs exist.
        Rtype::AXFR | Rtype::IXFR => match transport {
            Transport::Udp => Rcode::NOTIMP,
            Transport::Tcp => return Filled::refused(ede::PROHIBITED),
        },
        Rtype::TKEY | Rtype::MAILA | Rtype::MAILB => Rcode::NOTIMP,
        // Type 0, OPT and TSIG cannot be asked for (RFC 6891 §6.1.1, RFC 8945).
        _ => Rcode::FORMERR,
    })
}

/// What the class IN algorithm writes into and works with.
struct InState<'a, 'b> {
    w: &'a mut MessageBuilder<'b>,
    targets: &'a mut AdditionalTargets,
    chain: &'a mut Chain<'a>,
    limit: usize,
}

/// The names of a CNAME chain so far, to stop at a loop.
struct Chain<'a> {
    names: &'a mut Vec<(usize, usize)>,
    storage: &'a mut Vec<u8>,
}

impl Chain<'_> {
    fn push(&mut self, name: &[u8]) {
        self.names.push((self.storage.len(), name.len()));
        self.storage.extend_from_slice(name);
    }

    fn contains(&self, name: &[u8]) -> bool {
        self.names
            .iter()
            .any(|&(s, l)| l == name.len() && self.storage[s..s + l].eq_ignore_ascii_case(name))
    }
}

/// The RRset answering `qtype` at `node`; for ANY the first RRset by type (RFC 8482 §4.2:
/// one RRset, over UDP and TCP alike, as Knot and NSD do).
fn select<'z>(node: Node<'z>, qtype: Rtype) -> Option<RRset<'z>> {
    if qtype == Rtype::ANY {
        return node.first_rrset();
    }
    node.rrset(qtype)
}

fn in_zone(target: &[u8], zone: &Zone) -> bool {
    let origin = zone.origin.as_wire();
    crate::proto::name::suffixes(target)
        .any(|s| s.len() == origin.len() && s.eq_ignore_ascii_case(origin))
}

fn write_rrset(
    w: &mut MessageBuilder<'_>,
    section: Section,
    owner: &[u8],
    set: RRset<'_>,
) -> Result<(), WriteError> {
    for rdata in set.rdatas() {
        w.record(section, owner, set.rtype, Rclass::IN, set.ttl, rdata)?;
    }
    Ok(())
}

/// RFC 2308 §3: the zone's SOA in authority, with TTL `ttl`: min(SOA TTL, MINIMUM), or
/// less for a withheld answer.
fn write_negative(w: &mut MessageBuilder<'_>, zone: &Zone, ttl: u32) -> Result<(), WriteError> {
    w.record(
        Section::Authority,
        zone.apex().owner(),
        Rtype::SOA,
        Rclass::IN,
        ttl,
        &zone.soa_rdata,
    )
}

/// Names whose addresses belong in the additional section, in answer order, deduplicated.
/// Kept in [`Scratch`] and cleared per query, so its vectors are reused.
#[derive(Default)]
struct AdditionalTargets {
    /// (start, length) in `storage` of each lower-cased name.
    names: Vec<(usize, usize)>,
    storage: Vec<u8>,
}

impl AdditionalTargets {
    fn clear(&mut self) {
        self.names.clear();
        self.storage.clear();
    }

    fn collect(&mut self, set: RRset<'_>, cap: usize) {
        for rdata in set.rdatas() {
            let name = match set.rtype {
                Rtype::SRV if rdata.len() > 6 => &rdata[6..],
                Rtype::MX if rdata.len() > 2 => &rdata[2..],
                Rtype::NS => rdata,
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
    /// set TC (RFC 2181 §9). Tells `observer` the length after each RRset.
    fn write(
        &self,
        catalog: &Catalog,
        w: &mut MessageBuilder<'_>,
        limit: usize,
        observer: &mut impl Observer,
    ) -> Result<(), WriteError> {
        for &(s, l) in &self.names {
            let key = &self.storage[s..s + l];
            observer.additional_target(key);
            let Some(zone) = catalog.find(key) else {
                continue;
            };
            // Exact node only: glue below a cut is wanted here, wildcards are not.
            let Some(node) = zone.node(key) else { continue };
            for t in [Rtype::A, Rtype::AAAA] {
                if let Some(set) = node.rrset(t) {
                    let before = w.checkpoint();
                    write_rrset(w, Section::Additional, node.owner(), set)?;
                    if w.len() > limit {
                        w.rollback(before);
                        return Ok(());
                    }
                    observer.additional_written(w.len(), w.count(Section::Additional));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;
    use crate::proto::name::Name;
    use crate::proto::rr::Record;

    /// Counts the allocations of the current thread, so a test can show that answering
    /// allocates nothing (other tests run on other threads and are not counted).
    struct CountingAllocator;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn count_one() {
        // `try_with`: the counter may be gone while a thread is being torn down.
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }

    // SAFETY: every call is passed on unchanged to the system allocator.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count_one();
            // SAFETY: the caller's contract is System's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count_one();
            // SAFETY: as above.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count_one();
            // SAFETY: as above.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as above.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    use crate::testutil::wire_name as name;

    fn rec(owner: &str, t: Rtype, rdata: Vec<u8>) -> Record {
        crate::testutil::record(owner, t, 30, rdata)
    }

    fn query(name_text: &str, qtype: Rtype, qclass: Rclass) -> Vec<u8> {
        let mut p = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        p.extend(name(name_text));
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&qclass.to_be_bytes());
        p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        p
    }

    fn catalog() -> Catalog {
        let mut soa = name("ns1.z.test.");
        soa.extend(name("h.z.test."));
        for n in [1u32, 3600, 600, 86400, 60] {
            soa.extend_from_slice(&n.to_be_bytes());
        }
        let srv = |port: u16, target: &str| {
            let mut v = vec![0, 0, 0, 0];
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(name(target));
            v
        };
        let mut records = vec![
            rec("z.test.", Rtype::SOA, soa),
            rec("z.test.", Rtype::NS, name("ns1.z.test.")),
            rec("ns1.z.test.", Rtype::A, vec![127, 0, 0, 1]),
            rec("www.z.test.", Rtype::CNAME, name("alias.z.test.")),
            rec("alias.z.test.", Rtype::CNAME, name("m0.z.test.")),
            rec("loop1.z.test.", Rtype::CNAME, name("loop2.z.test.")),
            rec("loop2.z.test.", Rtype::CNAME, name("loop1.z.test.")),
            rec("*.wild.z.test.", Rtype::TXT, b"\x03abc".to_vec()),
            rec("sub.z.test.", Rtype::NS, name("ns.sub.z.test.")),
            rec("ns.sub.z.test.", Rtype::A, vec![10, 9, 9, 9]),
            rec(
                "mx.z.test.",
                Rtype::MX,
                b"\x00\x0a\x02m1\x01z\x04test\x00".to_vec(),
            ),
        ];
        for m in 0..5 {
            let target = format!("m{m}.z.test.");
            records.push(rec(
                "_etcd-server-ssl._tcp.z.test.",
                Rtype::SRV,
                srv(2380, &target),
            ));
            records.push(rec(&target, Rtype::A, vec![10, 0, 0, m]));
            records.push(rec(&target, Rtype::AAAA, [0xfd; 16].to_vec()));
        }
        let origin = Name::parse("z.test.", None).unwrap();
        let (zone, _) = Zone::build(&origin, records).unwrap();
        let mut catalog = Catalog::new();
        catalog.insert(Arc::new(zone));
        catalog
    }

    /// Review issue 8: the module said the full path allocates nothing per query, but the
    /// additional-section targets, the CNAME chain and the CHAOS TXT rdata were vectors
    /// allocated per query. Once the buffers have grown, answering allocates nothing.
    #[test]
    fn the_full_path_allocates_nothing_once_warm() {
        let catalog = catalog();
        let responder = Responder::new(AnswerConfig {
            version: Some("musterd test".into()),
            ..AnswerConfig::default()
        });
        let queries: Vec<Vec<u8>> = [
            ("_etcd-server-ssl._tcp.z.test.", Rtype::SRV, Rclass::IN),
            ("www.z.test.", Rtype::A, Rclass::IN),
            ("loop1.z.test.", Rtype::A, Rclass::IN),
            ("mx.z.test.", Rtype::MX, Rclass::IN),
            ("z.test.", Rtype::NS, Rclass::IN),
            ("nx.z.test.", Rtype::A, Rclass::IN),
            ("a.b.wild.z.test.", Rtype::TXT, Rclass::IN),
            ("deep.sub.z.test.", Rtype::A, Rclass::IN),
            ("m0.z.test.", Rtype::ANY, Rclass::IN),
            ("other.test.", Rtype::A, Rclass::IN),
            ("version.bind.", Rtype::TXT, Rclass::CH),
        ]
        .iter()
        .map(|&(n, t, c)| query(n, t, c))
        .chain([vec![0, 1, 2]])
        .collect();
        let mut buf = Vec::new();
        let mut scratch = Scratch::default();
        for transport in [Transport::Udp, Transport::Tcp] {
            for q in &queries {
                responder.respond_full(&catalog, q, transport, &mut buf, &mut scratch);
            }
        }
        for transport in [Transport::Udp, Transport::Tcp] {
            for q in &queries {
                let before = allocations();
                let outcome =
                    responder.respond_full(&catalog, q, transport, &mut buf, &mut scratch);
                assert_eq!(
                    allocations() - before,
                    0,
                    "{:?} over {transport:?} allocated ({outcome:?})",
                    crate::proto::query::parse_query(q).map(|q| q.qname().to_vec())
                );
            }
        }
        // The answers are the full ones: five SRV targets, each with A and AAAA.
        responder.respond_full(
            &catalog,
            &queries[0],
            Transport::Tcp,
            &mut buf,
            &mut scratch,
        );
        let m = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!((m.answers.len(), m.additionals.len()), (5, 10));
    }

    #[test]
    fn chaos_txt_is_cut_into_character_strings() {
        let responder = Responder::new(AnswerConfig {
            version: Some("v".repeat(300)),
            ..AnswerConfig::default()
        });
        let mut buf = Vec::new();
        let q = query("version.bind.", Rtype::TXT, Rclass::CH);
        responder.respond_full(
            &Catalog::new(),
            &q,
            Transport::Udp,
            &mut buf,
            &mut Scratch::default(),
        );
        let m = hickory_proto::op::Message::from_vec(&buf).unwrap();
        assert_eq!(m.answers.len(), 1);
        let hickory_proto::rr::RData::TXT(txt) = &m.answers[0].data else {
            panic!("not TXT: {:?}", m.answers[0]);
        };
        let lens: Vec<usize> = txt.txt_data.iter().map(|s| s.len()).collect();
        assert_eq!(lens, [255, 45]);
    }
}
