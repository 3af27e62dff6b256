//! The running cluster, if one answers: `POST /v3/cluster/member/list` with body `{}` on
//! the JSON gateway of a client URL from the `_etcd-client*` records
//! (docs/etcd-discovery.md §8), then the members compared with the peer records.
//!
//! One plain HTTP/1.0 request over a TCP connection: HTTP/1.0 makes the server close the
//! connection after a body without chunked encoding, so reading to the end is the whole
//! answer, and no HTTP client library is needed for one request.
//!
//! Limitations: `https` client URLs are not asked (that needs the client's CA and
//! certificate); doctor says so. The 64-bit IDs come as decimal strings (etcd 3.4's
//! gateway) or numbers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::Serialize;

/// How long one endpoint may take to connect and to answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// One member as the cluster lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveMember {
    /// ID, hex as etcd prints it.
    pub id: String,
    /// Name; empty for a member added but not started yet.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// True for a learner.
    pub learner: bool,
}

/// Asks `addr` (the resolved `host:port` of `url`) for the member list.
pub fn member_list(url: &str, addr: SocketAddr) -> Result<Vec<LiveMember>, String> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {url} ({addr}): {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("{url}: {e}"))?;
    let host = url.split("://").nth(1).unwrap_or(url);
    let req = format!(
        "POST /v3/cluster/member/list HTTP/1.0\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{url}: cannot send the request: {e}"))?;
    let mut raw = Vec::new();
    s.take(16 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{url}: no answer: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("{url}: HTTP {status}: {}", body.trim()));
    }
    parse(body).map_err(|e| format!("{url}: {e}"))
}

/// Parses the gateway's JSON member list.
pub fn parse(body: &str) -> Result<Vec<LiveMember>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("the member list is not JSON: {e}"))?;
    let members = v
        .get("members")
        .and_then(|m| m.as_array())
        .ok_or("the answer has no \"members\" list")?;
    members
        .iter()
        .map(|m| {
            let id = match m.get("ID") {
                Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .ok_or("a member has no ID")?;
            Ok(LiveMember {
                id: crate::ids::hex(id),
                name: m
                    .get("name")
                    .and_then(|n| n.as_str())
                    .unwrap_or_default()
                    .to_string(),
                peer_urls: m
                    .get("peerURLs")
                    .and_then(|u| u.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|u| u.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                learner: m.get("isLearner").and_then(|l| l.as_bool()) == Some(true),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_3_4_gateway_answer() {
        let body = r#"{"header":{"cluster_id":"1","member_id":"2","raft_term":"2"},
            "members":[{"ID":"11465625223646675324","name":"m1","peerURLs":["https://m1.etcd.test:2380"],"clientURLs":["https://m1.etcd.test:2379"]},
                       {"ID":"4167815107493747664","peerURLs":["https://m2.etcd.test:2380"],"isLearner":true}]}"#;
        let m = parse(body).unwrap();
        assert_eq!(m[0].id, "9f1e1564b738017c");
        assert_eq!(m[1].name, "");
        assert!(m[1].learner && !m[0].learner);
    }
}
