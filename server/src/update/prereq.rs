//! RFC 2136 §3.2: an update's prerequisites, checked against the zone's records before
//! anything is changed. The first that fails decides the rcode.

use super::{in_zone, reject, RRsetData, Reason, Rejection, Request, UpdateRecord, ZoneData};
use crate::proto::name::Name;
use crate::proto::rr::{is_meta_or_query_only, Rclass, Rtype};
use crate::proto::types::Rcode;

/// RFC 2136 §3.2.
pub(super) fn check_prerequisites(data: &ZoneData, req: &Request) -> Result<(), Rejection> {
    // Value-dependent prerequisites are gathered into RRsets and compared at the end.
    let mut wanted: Vec<(Name, RRsetData)> = Vec::new();
    for p in &req.prerequisites {
        if p.ttl != 0 {
            return Err(reject(
                Rcode::FORMERR,
                Reason::Format,
                format!("prerequisite {} has TTL {}, not 0", p.owner, p.ttl),
            ));
        }
        if !in_zone(data, &p.owner) {
            return Err(reject(
                Rcode::NOTZONE,
                Reason::NotZone,
                format!("prerequisite {} is outside zone {}", p.owner, data.origin),
            ));
        }
        match p.class {
            Rclass::ANY => in_use(data, p)?,
            Rclass::NONE => not_in_use(data, p)?,
            c if c == req.zclass => gather(&mut wanted, p)?,
            _ => {
                return Err(reject(
                    Rcode::FORMERR,
                    Reason::Format,
                    format!("prerequisite of class {}", p.class),
                ))
            }
        }
    }
    compare(data, &wanted)
}

/// Class ANY (RFC 2136 §2.4.4, §2.4.1): the name is in use, or the RRset exists.
fn in_use(data: &ZoneData, p: &UpdateRecord) -> Result<(), Rejection> {
    if !p.rdata.is_empty() {
        return Err(reject(
            Rcode::FORMERR,
            Reason::Format,
            "a class ANY prerequisite carries data",
        ));
    }
    let node = data.node(&p.owner);
    if p.rtype == Rtype::ANY {
        if node.is_none() {
            return Err(reject(
                Rcode::NXDOMAIN,
                Reason::Prerequisite,
                format!("{} is not in use", p.owner),
            ));
        }
    } else if node.and_then(|n| n.set(p.rtype)).is_none() {
        return Err(reject(
            Rcode::NXRRSET,
            Reason::Prerequisite,
            format!("{} {} does not exist", p.owner, p.rtype),
        ));
    }
    Ok(())
}

/// Class NONE (RFC 2136 §2.4.5, §2.4.3): the name is not in use, or the RRset does not
/// exist.
fn not_in_use(data: &ZoneData, p: &UpdateRecord) -> Result<(), Rejection> {
    if !p.rdata.is_empty() {
        return Err(reject(
            Rcode::FORMERR,
            Reason::Format,
            "a class NONE prerequisite carries data",
        ));
    }
    let node = data.node(&p.owner);
    if p.rtype == Rtype::ANY {
        if node.is_some() {
            return Err(reject(
                Rcode::YXDOMAIN,
                Reason::Prerequisite,
                format!("{} is in use", p.owner),
            ));
        }
    } else if node.and_then(|n| n.set(p.rtype)).is_some() {
        return Err(reject(
            Rcode::YXRRSET,
            Reason::Prerequisite,
            format!("{} {} exists", p.owner, p.rtype),
        ));
    }
    Ok(())
}

/// The zone's class (RFC 2136 §2.4.2): adds the record to the RRset it must be part of.
fn gather(wanted: &mut Vec<(Name, RRsetData)>, p: &UpdateRecord) -> Result<(), Rejection> {
    if p.rtype == Rtype::ANY || is_meta_or_query_only(p.rtype) {
        return Err(reject(
            Rcode::FORMERR,
            Reason::Format,
            "a value-dependent prerequisite of a meta type",
        ));
    }
    let key = p.owner.to_lowercase();
    let at = wanted
        .iter()
        .position(|(k, s)| *k == key && s.rtype == p.rtype);
    let set = match at {
        Some(i) => &mut wanted[i].1,
        None => {
            wanted.push((key, RRsetData::new(p.rtype, 0)));
            &mut wanted.last_mut().expect("just pushed").1
        }
    };
    if !set.contains(&p.rdata) {
        set.push(p.rdata.clone().into_boxed_slice());
    }
    Ok(())
}

/// RFC 2136 §2.4.2: each gathered RRset exists and holds exactly the values given.
fn compare(data: &ZoneData, wanted: &[(Name, RRsetData)]) -> Result<(), Rejection> {
    for (key, want) in wanted {
        let have = data.nodes.get(key).and_then(|n| n.set(want.rtype));
        let equal = have.is_some_and(|h| {
            h.rdatas().len() == want.rdatas().len() && want.rdatas().iter().all(|r| h.contains(r))
        });
        if !equal {
            return Err(reject(
                Rcode::NXRRSET,
                Reason::Prerequisite,
                format!(
                    "{} {} does not hold exactly the values given",
                    Name::from_wire(key.as_wire()).unwrap_or_else(|_| Name::root()),
                    want.rtype
                ),
            ));
        }
    }
    Ok(())
}
