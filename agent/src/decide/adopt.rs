//! A data dir with a WAL but no `muster-plan.json` — made by `etcdctl snapshot restore`
//! by hand, or started once with the listen flags — is adopted: the plan is derived,
//! written to `muster-plan.json`, and every later start is an ordinary restart.
//!
//! With the four restart flags given, they are the plan. Otherwise, with `--domain`, the
//! records are read with the bootstrap rules to say which member this host is and its
//! URLs, and the WAL's own metadata (member ID and cluster ID, the record etcd writes at
//! the start of every WAL file) is compared with the IDs those records give under the
//! tokens the data dir may have been made with (`--token`, the default token, and
//! etcdctl's default `etcd-cluster`): a match records the cluster in the plan, as a
//! bootstrap would have; no match is said, and the plan holds the URLs only.

use std::io::Read;
use std::path::Path;

use super::records::{self, TO_RESTORE};
use super::restart::{self, RestartError};
use crate::config::AgentConfig;
use crate::ids::{self, EtcdId};
use crate::plan::{Bootstrap, Plan, Start};
use crate::plan_file::{self, PLAN_FILE};
use crate::Error;

/// etcd's WAL record type of the metadata record (`walpb` `metadataType`).
const METADATA_TYPE: u64 = 1;

/// The member and cluster ID a WAL was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalIds {
    /// This member's ID.
    pub member: EtcdId,
    /// The cluster's ID.
    pub cluster: EtcdId,
}

/// A protobuf varint at `*at`, advancing it.
fn varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The varint fields 1 and 2 and the bytes field 3 of a protobuf message (all that
/// `walpb.Record` and `etcdserverpb.Metadata` use).
fn fields(msg: &[u8]) -> Option<(u64, u64, &[u8])> {
    let (mut f1, mut f2, mut f3): (u64, u64, &[u8]) = (0, 0, &[]);
    let mut at = 0;
    while at < msg.len() {
        let key = varint(msg, &mut at)?;
        match (key >> 3, key & 7) {
            (1, 0) => f1 = varint(msg, &mut at)?,
            (2, 0) => f2 = varint(msg, &mut at)?,
            (3, 2) => {
                let len = usize::try_from(varint(msg, &mut at)?).ok()?;
                f3 = msg.get(at..at.checked_add(len)?)?;
                at += len;
            }
            (_, 0) => {
                varint(msg, &mut at)?;
            }
            _ => return None,
        }
    }
    Some((f1, f2, f3))
}

/// The IDs in the first metadata record of a WAL file's bytes: records are a
/// little-endian u64 length (the top byte flags padding) and a `walpb.Record`.
pub fn wal_ids(bytes: &[u8]) -> Option<WalIds> {
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let word = u64::from_le_bytes(bytes[at..at + 8].try_into().ok()?);
        at += 8;
        let len = usize::try_from(word & 0x00ff_ffff_ffff_ffff).ok()?;
        let pad = if word >> 63 == 1 {
            usize::from((word >> 56) as u8 & 0x7)
        } else {
            0
        };
        let rec = bytes.get(at..at.checked_add(len)?)?;
        at += len + pad;
        let (kind, _crc, data) = fields(rec)?;
        if kind == METADATA_TYPE {
            let (member, cluster, _) = fields(data)?;
            return Some(WalIds {
                member: EtcdId(member),
                cluster: EtcdId(cluster),
            });
        }
    }
    None
}

/// The IDs of the data dir's WAL (its first file), if it can be read.
pub fn read_wal_ids(data_dir: &Path) -> Option<WalIds> {
    let wal = data_dir.join("member").join("wal");
    let mut files: Vec<_> = std::fs::read_dir(&wal)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    let mut buf = Vec::new();
    std::fs::File::open(files.first()?)
        .ok()?
        .take(64 * 1024)
        .read_to_end(&mut buf)
        .ok()?;
    wal_ids(&buf)
}

/// `b` as it would be with `token`: the member and cluster IDs follow the token.
pub fn with_token(mut b: Bootstrap, token: &str) -> Bootstrap {
    for m in &mut b.members {
        m.id = EtcdId(ids::member_id(std::slice::from_ref(&m.peer_url), token));
    }
    let member_ids: Vec<u64> = b.members.iter().map(|m| m.id.0).collect();
    b.cluster_id = EtcdId(ids::cluster_id(&member_ids));
    b.member_id = EtcdId(ids::member_id(&b.initial_advertise_peer_urls, token));
    b.token = token.to_string();
    b
}

/// The plan of a data dir that has a WAL but no `muster-plan.json`; None when it has a
/// plan (an ordinary restart), or when neither the flags nor `--domain` can give one
/// (the restart path then names the missing flags). With `enact`, the plan is written.
pub fn without_plan(agent: &AgentConfig, dir: &Path, enact: bool) -> Result<Option<Plan>, Error> {
    if dir.join(PLAN_FILE).exists() {
        return Ok(None);
    }
    let flags = agent.restart_flags();
    let complete = flags.name.is_some()
        && !flags.listen_peer_urls.is_empty()
        && !flags.listen_client_urls.is_empty()
        && !flags.advertise_client_urls.is_empty();
    let wal = read_wal_ids(dir);
    let found = match wal {
        Some(w) => format!(
            "its WAL is member {} of cluster {}",
            w.member.hex(),
            w.cluster.hex()
        ),
        None => "its WAL metadata cannot be read".into(),
    };
    let mut plan = if complete {
        let mut p = restart::restart_plan(dir, None, &flags)?;
        p.reason = format!(
            "{} has a WAL but no {} ({found}): a restart with the URLs given as flags",
            dir.display(),
            PLAN_FILE
        );
        p
    } else if agent.domain.is_some() {
        from_records(agent, dir, wal, &found)?
    } else {
        return Ok(None);
    };
    plan.data_dir = Some(dir.to_path_buf());
    if enact {
        plan_file::save(dir, &plan)?;
        plan.reason.push_str(&format!(
            "; wrote {} so that later restarts need nothing else",
            dir.join(PLAN_FILE).display()
        ));
    }
    eprintln!("muster-agent: decision: {} ({})", plan.mode(), plan.reason);
    Ok(Some(plan))
}

/// This member's URLs from the records; the cluster when a token explains the WAL's IDs.
fn from_records(
    agent: &AgentConfig,
    dir: &Path,
    wal: Option<WalIds>,
    found: &str,
) -> Result<Plan, Error> {
    let service = agent.service(TO_RESTORE)?;
    let default = service.default_token();
    let token = agent.token.clone().unwrap_or_else(|| default.clone());
    let read = records::records_plan(agent, dir, &token)?;
    let Some(b) = read.cluster().cloned() else {
        return Err(RestartError::NeedFlags {
            data_dir: dir.to_path_buf(),
            missing: vec!["--name"],
        }
        .into());
    };
    let mut tokens = vec![token, default, "etcd-cluster".to_string()];
    tokens.dedup();
    let matched = wal.and_then(|w| {
        tokens
            .iter()
            .map(|t| with_token(b.clone(), t))
            .find(|c| c.member_id == w.member && c.cluster_id == w.cluster)
    });
    let (bootstrapped, how) = match matched {
        Some(c) => {
            let how = format!(
                "which the records give member {} with token {}",
                read.name, c.token
            );
            (Some(c), how)
        }
        None => (
            None,
            format!(
                "which no known token explains (tried {}); the records say this host is \
                 member {}",
                tokens.join(", "),
                read.name
            ),
        ),
    };
    Ok(Plan {
        reason: format!(
            "{} has a WAL but no {} (a data dir made by etcdctl snapshot restore?): {found}, \
             {how}; a restart with the URLs from the records at {}",
            dir.display(),
            PLAN_FILE,
            b.srv_record
        ),
        start: Start::Restart {
            peer_urls: bootstrapped
                .as_ref()
                .map(|b| b.initial_advertise_peer_urls.clone())
                .unwrap_or_default(),
            bootstrapped,
            moved: None,
        },
        ..read
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 0x38 bytes of an etcd 3.4.23 WAL file.
    const WAL: &str = "0400000000000084 08041000 00000000 \
        1f00000000000081 080110c0eee05a1a16088df2f48ec1f7a6d7bd0110aaf4e5f599f3ebe7d101 00";

    fn bytes() -> Vec<u8> {
        let hex: String = WAL.chars().filter(|c| !c.is_whitespace()).collect();
        data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap()
    }

    #[test]
    fn wal_metadata_gives_the_member_and_cluster_ids() {
        let ids = wal_ids(&bytes()).unwrap();
        assert_eq!(ids.member, EtcdId(13668033151171901709));
        assert_eq!(ids.cluster, EtcdId(15118495548433857066));
    }

    #[test]
    fn truncated_or_foreign_bytes_give_nothing() {
        let b = bytes();
        assert_eq!(wal_ids(&b[..20]), None);
        assert_eq!(wal_ids(b"not a wal at all"), None);
        assert_eq!(wal_ids(&[]), None);
    }
}
