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

use sha1::{Digest, Sha1};

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

    /// The example in docs/etcd-discovery.md, seen with the real etcd 3.4.23.
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
    }
}
