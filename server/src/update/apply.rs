//! Making an update's changes (RFC 2136 §3.4): the prescan of the update section with
//! the per-record policy check, the changes themselves with the limits checked as they
//! are made, and the changeset they amount to.

use super::{
    in_zone, record, reject, serial_gt, serial_next, set_serial, Limits, Policy, RRsetData, Reason,
    Rejection, Request, Undo, UpdateRecord, ZoneData,
};
use crate::proto::name::Name;
use crate::proto::rr::{check_rdata, is_meta_or_query_only, Rclass, Record, Rtype, Soa};
use crate::proto::types::Rcode;
use crate::zone::changeset::Changeset;

/// RFC 2136 §3.4.1 and the per-record permission check of §3.3.
pub(super) fn prescan(
    data: &ZoneData,
    req: &Request,
    key: &Name,
    policy: &Policy,
    limits: &Limits,
) -> Result<(), Rejection> {
    if req.updates.len() > limits.max_update_records {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Limit,
            format!(
                "{} records in one update, more than the limit of {}",
                req.updates.len(),
                limits.max_update_records
            ),
        ));
    }
    for u in &req.updates {
        if !in_zone(data, &u.owner) {
            return Err(reject(
                Rcode::NOTZONE,
                Reason::NotZone,
                format!("{} is outside zone {}", u.owner, data.origin),
            ));
        }
        let format = |why: &str| {
            reject(
                Rcode::FORMERR,
                Reason::Format,
                format!("{} {}: {why}", u.owner, u.rtype),
            )
        };
        match u.class {
            c if c == req.zclass => {
                if is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be added"));
                }
                if let Err(e) = check_rdata(u.rtype, &u.rdata) {
                    return Err(format(&e));
                }
            }
            Rclass::ANY => {
                if u.ttl != 0 || !u.rdata.is_empty() {
                    return Err(format("a class ANY delete must have TTL 0 and no data"));
                }
                if u.rtype != Rtype::ANY && is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be deleted"));
                }
            }
            Rclass::NONE => {
                if u.ttl != 0 {
                    return Err(format("a class NONE delete must have TTL 0"));
                }
                if is_meta_or_query_only(u.rtype) {
                    return Err(format("a meta or query type cannot be deleted"));
                }
                if let Err(e) = check_rdata(u.rtype, &u.rdata) {
                    return Err(format(&e));
                }
            }
            _ => return Err(format("the class is neither the zone's, ANY nor NONE")),
        }
        let allowed = policy.permits(data, key, u);
        if !allowed {
            return Err(reject(
                Rcode::REFUSED,
                Reason::Policy,
                format!("key {key} may not change {} {}", u.owner, u.rtype),
            ));
        }
    }
    Ok(())
}

/// RFC 2136 §3.4.2: the changes, with the limits checked as they are made.
pub(super) fn apply(
    data: &mut ZoneData,
    req: &Request,
    limits: &Limits,
    undo: &mut Undo,
) -> Result<(), Rejection> {
    for u in &req.updates {
        let key = u.owner.to_lowercase();
        match u.class {
            c if c == req.zclass => add(data, u, &key, limits, undo)?,
            Rclass::ANY => delete_rrsets(data, u, &key, undo),
            Rclass::NONE => delete_record(data, u, &key, undo),
            _ => unreachable!("prescan refused other classes"),
        }
    }
    Ok(())
}

/// §3.4.2.2: adds the record `u` at `key` (its owner, lower-cased), unless RFC 2136 says
/// to ignore it; REFUSED when that crosses a limit.
fn add(
    data: &mut ZoneData,
    u: &UpdateRecord,
    key: &Name,
    limits: &Limits,
    undo: &mut Undo,
) -> Result<(), Rejection> {
    if u.rtype == Rtype::SOA {
        let new = Soa::from_rdata(&u.rdata).map(|s| s.serial);
        if *key != data.origin || !new.is_some_and(|n| serial_gt(n, data.serial())) {
            return Ok(()); // §3.4.2.2: not at the apex, or the serial is not higher.
        }
        undo.save(data, key);
        data.set_soa(u.ttl, &u.rdata);
        return Ok(());
    }
    let node = data.nodes.get(key);
    let has_cname = node.is_some_and(|n| n.set(Rtype::CNAME).is_some());
    let has_other = node.is_some_and(|n| n.sets.iter().any(|s| s.rtype != Rtype::CNAME));
    if u.rtype == Rtype::CNAME {
        if has_other {
            return Ok(()); // §3.4.2.2: CNAME where other data exists.
        }
        undo.save(data, key);
        if let Some(n) = data.nodes.get_mut(key) {
            // A name has one CNAME: the new one replaces it.
            let old = n.records();
            n.sets.clear();
            data.records -= old;
        }
    } else if has_cname {
        return Ok(()); // §3.4.2.2: other data where a CNAME exists.
    }
    undo.save(data, key);
    let new_name = !data.nodes.contains_key(key);
    data.insert(&u.owner, u.rtype, u.ttl, &u.rdata);
    check_limits(data, u, key, new_name, limits)
}

/// The limits after `u` was added at `key`, a name the zone did not hold before when
/// `new_name`.
fn check_limits(
    data: &ZoneData,
    u: &UpdateRecord,
    key: &Name,
    new_name: bool,
    limits: &Limits,
) -> Result<(), Rejection> {
    let node = &data.nodes[key];
    let set_len = node.set(u.rtype).map_or(0, |s| s.rdatas().len());
    if set_len > limits.max_rrset_records {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Limit,
            format!(
                "{} {} would hold {set_len} records, more than the limit of {}",
                u.owner, u.rtype, limits.max_rrset_records
            ),
        ));
    }
    if node.sets.len() > limits.max_types_per_name {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Limit,
            format!(
                "{} would hold {} types, more than the limit of {}",
                u.owner,
                node.sets.len(),
                limits.max_types_per_name
            ),
        ));
    }
    if new_name && data.nodes.len() > limits.max_zone_names {
        return Err(reject(
            Rcode::REFUSED,
            Reason::Limit,
            format!(
                "zone {} would hold more than {} names",
                data.origin, limits.max_zone_names
            ),
        ));
    }
    Ok(())
}

/// §3.4.2.3 (class ANY): deletes the RRset `u.rtype`, or everything (type ANY), at `key`;
/// the apex keeps its SOA and NS.
fn delete_rrsets(data: &mut ZoneData, u: &UpdateRecord, key: &Name, undo: &mut Undo) {
    let Some(node) = data.nodes.get(key) else {
        return;
    };
    let at_apex = *key == data.origin;
    let keep = |t: Rtype| at_apex && (t == Rtype::SOA || t == Rtype::NS);
    let doomed: usize = node
        .sets
        .iter()
        .filter(|s| (u.rtype == Rtype::ANY || s.rtype == u.rtype) && !keep(s.rtype))
        .map(|s| s.rdatas().len())
        .sum();
    if doomed == 0 {
        return;
    }
    undo.save(data, key);
    let node = data.nodes.get_mut(key).expect("present above");
    node.sets
        .retain(|s| !((u.rtype == Rtype::ANY || s.rtype == u.rtype) && !keep(s.rtype)));
    if node.sets.is_empty() {
        data.nodes.remove(key);
    }
    data.records -= doomed;
}

/// §3.4.2.4 (class NONE): deletes the one record `u` at `key`, never the SOA nor the
/// apex's last NS.
fn delete_record(data: &mut ZoneData, u: &UpdateRecord, key: &Name, undo: &mut Undo) {
    if u.rtype == Rtype::SOA {
        return; // §3.4.2.4: the SOA is never deleted.
    }
    let Some(set) = data.nodes.get(key).and_then(|n| n.set(u.rtype)) else {
        return;
    };
    if !set.contains(&u.rdata) {
        return;
    }
    if *key == data.origin && u.rtype == Rtype::NS && set.rdatas().len() == 1 {
        return; // §3.4.2.4: never the last apex NS.
    }
    undo.save(data, key);
    data.remove_record(&u.owner, u.rtype, &u.rdata);
}

/// The changeset of an applied update: the touched nodes before and after, and the new
/// SOA (serial + 1 unless the update raised it itself). `None` when nothing changed.
pub(super) fn changes(
    data: &mut ZoneData,
    undo: &Undo,
    old_soa: Record,
    old_serial: u32,
) -> Option<Changeset> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let empty: &[RRsetData] = &[];
    for (key, before) in &undo.nodes {
        let after = data.nodes.get(key);
        let before_sets = before.as_ref().map_or(empty, |n| &n.sets[..]);
        let after_sets = after.map_or(empty, |n| &n.sets[..]);
        // A name the update both created and emptied again (add then delete of one
        // record on an unused name) was saved but holds nothing either side: no change.
        let Some(owner) = after.or(before.as_ref()).map(|n| n.owner.clone()) else {
            continue;
        };
        let contains = |sets: &[RRsetData], t: Rtype, ttl: u32, rd: &[u8]| {
            sets.iter()
                .any(|s| s.rtype == t && s.ttl == ttl && s.contains(rd))
        };
        for s in before_sets.iter().filter(|s| s.rtype != Rtype::SOA) {
            for rd in s.rdatas() {
                if !contains(after_sets, s.rtype, s.ttl, rd) {
                    removed.push(record(&owner, s.rtype, s.ttl, rd));
                }
            }
        }
        for s in after_sets.iter().filter(|s| s.rtype != Rtype::SOA) {
            for rd in s.rdatas() {
                if !contains(before_sets, s.rtype, s.ttl, rd) {
                    added.push(record(&owner, s.rtype, s.ttl, rd));
                }
            }
        }
    }
    let explicit = data.serial();
    let soa_changed = explicit != old_serial;
    if removed.is_empty() && added.is_empty() && !soa_changed {
        return None;
    }
    let mut new_soa = data.soa_record().expect("a zone always holds its SOA");
    let to = if soa_changed {
        explicit
    } else {
        serial_next(old_serial)
    };
    set_serial(&mut new_soa.rdata, to);
    data.set_soa(new_soa.ttl, &new_soa.rdata);
    removed.insert(0, old_soa);
    added.insert(0, new_soa);
    Some(Changeset {
        from_serial: old_serial,
        to_serial: to,
        removed,
        added,
    })
}
