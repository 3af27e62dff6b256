//! etcd's member and cluster IDs, computed the way etcd 3.4 computes them.
//!
//! Member ID: the first 8 bytes (big-endian) of SHA-1 over the member's peer-URL strings,
//! sorted and concatenated, followed by the cluster token (`computeMemberId` in etcd's
//! `membership/member.go`; no timestamp for `--initial-cluster` members). Cluster ID: the
//! same over the sorted member IDs, each as 8 big-endian bytes (`RaftCluster.genID`).
//! Names do not enter, so every host must build byte-identical URL strings and use the
//! same token, or the cluster splits.
//!
//! Limitations: members added at runtime (`member add`) get a timestamp in their hash;
//! their IDs cannot be predicted and are not computed here.

use std::fmt;

use sha1::{Digest, Sha1};

/// A member or cluster ID. etcd prints it in hex (logs, `member list` tables) and as a
/// decimal in JSON; the plan file keeps both, so reading one back checks that they agree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EtcdId(pub u64);

impl EtcdId {
    /// Lower-case hex without leading zeros, as etcd prints it.
    pub fn hex(self) -> String {
        hex(self.0)
    }

    /// Reads the two forms of one ID (`field` and `field_hex`) and checks that they agree.
    pub fn from_both(field: &str, decimal: u64, hex: &str) -> Result<EtcdId, String> {
        let parsed =
            if !hex.is_empty() && hex.len() <= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                u64::from_str_radix(hex, 16).ok()
            } else {
                None
            };
        match parsed {
            None => Err(format!("{field}_hex {hex:?} is not a hexadecimal etcd ID")),
            Some(h) if h != decimal => Err(format!(
                "{field} {decimal} and {field}_hex {hex:?} ({h}) are different IDs"
            )),
            Some(_) => Ok(EtcdId(decimal)),
        }
    }
}

/// `{:x}`: the hex form, as [`EtcdId::hex`].
impl fmt::LowerHex for EtcdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

impl fmt::Display for EtcdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// First 8 bytes of SHA-1 as a big-endian integer.
fn sha1_u64(bytes: &[u8]) -> u64 {
    let digest = Sha1::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The ID etcd gives a member with these peer URLs in a cluster with this token.
pub fn member_id<S: AsRef<str>>(peer_urls: &[S], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(AsRef::as_ref).collect();
    urls.sort_unstable();
    let mut bytes = urls.concat().into_bytes();
    bytes.extend_from_slice(token.as_bytes());
    sha1_u64(&bytes)
}

/// The ID etcd gives a cluster made of these members.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    sha1_u64(&bytes)
}

/// An ID the way etcd prints it in logs and `member list` tables: lower-case hex without
/// leading zeros.
pub fn hex(id: u64) -> String {
    format!("{id:x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three https members with token `tkn`: the cluster ID the real etcd 3.4.23 reported
    /// for them.
    #[test]
    fn three_https_members_with_token_tkn() {
        let ids: Vec<u64> = (1..=3)
            .map(|n| member_id(&[format!("https://m{n}.etcd.test:2380")], "tkn"))
            .collect();
        assert_eq!(cluster_id(&ids), 15172527772512277119);
    }

    #[test]
    fn member_id_sorts_urls_and_ignores_their_order() {
        let a = member_id(&["http://b:2380", "http://a:2380"], "t");
        let b = member_id(&["http://a:2380", "http://b:2380"], "t");
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:2380", "http://b:2380"], "u"));
    }

    #[test]
    fn cluster_id_ignores_member_order() {
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }

    #[test]
    fn hex_has_no_leading_zeros() {
        assert_eq!(hex(0x0abc), "abc");
        assert_eq!(EtcdId(0x0abc).hex(), "abc");
    }

    #[test]
    fn both_forms_must_agree() {
        assert_eq!(EtcdId::from_both("id", 2748, "abc"), Ok(EtcdId(2748)));
        let e = EtcdId::from_both("id", 2748, "abd").unwrap_err();
        assert!(e.contains("are different IDs"), "{e}");
        for bad in ["", "xyz", "-1", "0x1", "11111111111111111"] {
            assert!(EtcdId::from_both("id", 1, bad).is_err(), "{bad}");
        }
    }
}
