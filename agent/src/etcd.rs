//! etcd's member API through its v3 JSON gateway (the gRPC gateway on every client URL):
//! list, add as learner, promote, remove, update, and `GET /health`.
//!
//! Facts this relies on (etcd 3.4; docs/etcd-discovery.md §8): every call is a `POST`
//! with a JSON body; 64-bit IDs are decimal strings both ways; errors are a JSON object
//! with `error`/`message` and a gRPC `code`, and the HTTP status differs between versions
//! (412 in 3.4, 400 later), so errors are told apart by their message, never by status;
//! a member added but not started has no `name`; `isLearner` appears only when true; a
//! learner refuses member calls, so they go to the other members. `/health` is true only
//! when the member sees a leader and a quorum read succeeds, so it is the quorum test.
//!
//! Client URLs are by name (`https://m1.example.com:2379`), because that is what etcd
//! advertises and what a certificate names; the address to dial comes from the addresses
//! the agent resolved itself ([`Endpoint::addrs`]), so TLS still checks the name while
//! neither /etc/hosts nor a cache decides where the request goes.
//!
//! TLS (CA, client certificate) and etcd authentication (user and password, traded for a
//! token at `/v3/auth/authenticate`) pass through [`Access`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::ids::EtcdId;
use crate::urls::EtcdUrl;

/// A client URL and the addresses to dial for its host (empty: resolve with the system
/// resolver).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `scheme://host:port`.
    pub url: String,
    /// Addresses of the host, as the agent resolved them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<IpAddr>,
}

/// TLS and authentication for the member API.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// CA bundle to verify etcd's client-port certificate (default: the web PKI roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for etcd run with `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    /// Its key.
    pub key_file: Option<PathBuf>,
    /// etcd user (with authentication enabled).
    pub user: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Time allowed for one request.
    pub request_timeout: Duration,
}

/// One member as `member list` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member ID.
    pub id: EtcdId,
    /// Name; empty while the member was added but has not started.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs (empty until started).
    pub client_urls: Vec<String>,
    /// A learner (non-voting) member.
    pub is_learner: bool,
}

impl Member {
    /// Has started at least once: it published its client URLs. (The name is no test:
    /// members of a new cluster have theirs from `--initial-cluster` before they start;
    /// only members added later lack one until they start.)
    pub fn started(&self) -> bool {
        !self.client_urls.is_empty()
    }

    /// The name, or the ID in hex for a member that has not started: `--initial-cluster`
    /// needs a key for every member.
    pub fn label(&self) -> String {
        if self.name.is_empty() {
            format!("{:x}", self.id)
        } else {
            self.name.clone()
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({:x}, {}{}{})",
            if self.name.is_empty() {
                "<unnamed>"
            } else {
                &self.name
            },
            self.id,
            self.peer_urls.join(","),
            if self.is_learner { ", learner" } else { "" },
            if self.started() {
                ""
            } else {
                ", never started"
            },
        )
    }
}

/// A member list and the cluster it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Cluster ID from the response header.
    pub cluster_id: EtcdId,
    /// The member that answered.
    pub answered_by: EtcdId,
    /// Every member.
    pub members: Vec<Member>,
}

impl Membership {
    /// The client URLs a member list gives the members other than `except`, to be dialled as
    /// etcd dials them (by name, with the system resolver): where they are now, which may not
    /// be where a plan saved them.
    pub fn client_endpoints(&self, except: EtcdId) -> Vec<Endpoint> {
        self.members
            .iter()
            .filter(|m| m.id != except)
            .flat_map(|m| &m.client_urls)
            .map(|u| Endpoint {
                url: u.clone(),
                addrs: vec![],
            })
            .collect()
    }
}

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// etcd answered with an error.
    #[error("{url}: etcd refused: {message}")]
    Api {
        /// The request URL.
        url: String,
        /// gRPC status code.
        code: i64,
        /// etcd's message, e.g. `etcdserver: unhealthy cluster`.
        message: String,
    },
    /// No answer (connection refused, timeout, TLS failure).
    #[error("{url}: {reason}")]
    Unreachable {
        /// The request URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An answer that is not the JSON etcd sends.
    #[error("{url}: unexpected answer: {reason}")]
    Malformed {
        /// The request URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The TLS files cannot be used.
    #[error("{0}")]
    Tls(String),
    /// No endpoint to talk to.
    #[error("no etcd client URL to ask")]
    NoEndpoint,
}

impl EtcdError {
    /// etcd's error message, if etcd answered.
    pub fn message(&self) -> Option<&str> {
        match self {
            EtcdError::Api { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True when etcd's message contains `needle` (errors are told apart by message: the
    /// HTTP status differs between etcd versions and the gRPC code is shared).
    pub fn says(&self, needle: &str) -> bool {
        self.message().is_some_and(|m| m.contains(needle))
    }
}

/// etcd's messages that the agent reacts to (etcd 3.4 `rpctypes`).
pub mod msg {
    /// A second learner while one exists (3.4 allows one).
    pub const TOO_MANY_LEARNERS: &str = "too many learner members";
    /// Promotion before the learner caught up.
    pub const NOT_IN_SYNC: &str = "in sync with leader";
    /// Promotion of a voting member.
    pub const NOT_LEARNER: &str = "can only promote a learner member";
    /// A reconfiguration while a voting member is down, or right after one.
    pub const UNHEALTHY: &str = "unhealthy cluster";
    /// Not enough started members for the change.
    pub const NOT_ENOUGH_STARTED: &str =
        "re-configuration failed due to not enough started members";
    /// The member is gone already.
    pub const NOT_FOUND: &str = "member not found";
    /// An add with a peer URL that a member has.
    pub const PEER_URL_EXISTS: &str = "Peer URLs already exists";
}

/// A client for a set of endpoints: every call tries them in order until one answers.
pub struct Client {
    endpoints: Vec<Endpoint>,
    agent: ureq::Agent,
    access: Access,
    token: std::sync::Mutex<Option<String>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

fn tls_config(access: &Access) -> Result<Option<Arc<rustls::ClientConfig>>, EtcdError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    if access.ca_file.is_none() && access.cert_file.is_none() {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Tls(format!("TLS set-up: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    match &access.ca_file {
        Some(ca) => {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    EtcdError::Tls(format!("cannot read CA file {}: {e}", ca.display()))
                })?;
            if certs.is_empty() {
                return Err(EtcdError::Tls(format!(
                    "{} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    EtcdError::Tls(format!("bad CA certificate in {}: {e}", ca.display()))
                })?;
            }
        }
        // etcd's client certificates come from a private CA in practice; guessing the
        // web PKI would only turn a missing flag into a handshake error later.
        None => {
            return Err(EtcdError::Tls(
                "--etcd-cert-file needs --etcd-ca-file (the CA that signed etcd's certificate)"
                    .into(),
            ))
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (&access.cert_file, &access.key_file) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    EtcdError::Tls(format!("cannot read certificate {}: {e}", cert.display()))
                })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| EtcdError::Tls(format!("cannot read key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| EtcdError::Tls(format!("client certificate and key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(EtcdError::Tls(
                "give both --etcd-cert-file and --etcd-key-file, or neither".into(),
            ))
        }
    };
    Ok(Some(Arc::new(config)))
}

impl Client {
    /// A client for `endpoints`.
    pub fn new(endpoints: Vec<Endpoint>, access: Access) -> Result<Client, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let mut map: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
        for e in &endpoints {
            if let Ok(u) = url::Url::parse(&e.url) {
                if let Some(h) = u.host_str() {
                    map.entry(h.trim_matches(['[', ']']).to_ascii_lowercase())
                        .or_default()
                        .extend(e.addrs.iter().copied());
                }
            }
        }
        let timeout = if access.request_timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            access.request_timeout
        };
        let mut b = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(1000).min(timeout))
            .timeout(timeout)
            .resolver(move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
                // netloc is host:port; a bracketed IPv6 literal never needs the map.
                if let Some((host, port)) = netloc.rsplit_once(':') {
                    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
                    if let (Some(addrs), Ok(port)) = (map.get(&host), port.parse::<u16>()) {
                        if !addrs.is_empty() {
                            return Ok(addrs.iter().map(|a| SocketAddr::new(*a, port)).collect());
                        }
                    }
                }
                netloc.to_socket_addrs().map(Iterator::collect)
            });
        if let Some(cfg) = tls_config(&access)? {
            b = b.tls_config(cfg);
        }
        Ok(Client {
            endpoints,
            agent: b.build(),
            access,
            token: std::sync::Mutex::new(None),
        })
    }

    /// The endpoints, in the order they are tried.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    fn post_one(&self, base: &str, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let token = self.token(base)?;
        let mut req = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json");
        if let Some(t) = &token {
            req = req.set("Authorization", t);
        }
        let resp = req.send_string(&body.to_string());
        Self::read(&url, resp)
    }

    fn read(url: &str, resp: Result<ureq::Response, ureq::Error>) -> Result<Value, EtcdError> {
        let (text, ok) = match resp {
            Ok(r) => (r.into_string(), true),
            Err(ureq::Error::Status(status, r)) => {
                let line = format!("HTTP {status} {}", r.status_text());
                // etcd 3.4's gateway ends an error body with a broken chunk: keep what
                // arrived (the whole JSON object, in practice) and ignore the rest.
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut r.into_reader(), &mut buf);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if serde_json::from_str::<Value>(&text).is_err() {
                    return Err(EtcdError::Unreachable {
                        url: url.to_string(),
                        reason: format!("{line} with an unreadable body"),
                    });
                }
                (Ok(text), false)
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(EtcdError::Unreachable {
                    url: url.to_string(),
                    reason: t.to_string(),
                })
            }
        };
        let text = text.map_err(|e| EtcdError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| EtcdError::Malformed {
            url: url.to_string(),
            reason: format!("{e}: {}", text.chars().take(200).collect::<String>()),
        })?;
        if let Some(message) = v
            .get("message")
            .or_else(|| v.get("error"))
            .and_then(Value::as_str)
        {
            if !ok || v.get("code").is_some() {
                return Err(EtcdError::Api {
                    url: url.to_string(),
                    code: v.get("code").and_then(Value::as_i64).unwrap_or(-1),
                    message: message.to_string(),
                });
            }
        }
        if !ok {
            return Err(EtcdError::Malformed {
                url: url.to_string(),
                reason: text.chars().take(200).collect(),
            });
        }
        Ok(v)
    }

    /// The auth token for `base`, fetched once with the user and password.
    fn token(&self, base: &str) -> Result<Option<String>, EtcdError> {
        let (Some(user), Some(password)) = (&self.access.user, &self.access.password) else {
            return Ok(None);
        };
        // A poisoned lock only means another call panicked; the cached value is still a
        // plain Option.
        let mut cached = self.token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cached.as_ref() {
            return Ok(Some(t.clone()));
        }
        let url = format!("{}/v3/auth/authenticate", base.trim_end_matches('/'));
        let body = json!({"name": user, "password": password});
        let v = Self::read(
            &url,
            self.agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
        )?;
        let t = v
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Malformed {
                url,
                reason: "no token in the authenticate answer".into(),
            })?
            .to_string();
        *cached = Some(t.clone());
        Ok(Some(t))
    }

    /// POSTs to the first endpoint that answers; an error etcd itself returns is final
    /// (another member would say the same), an unreachable endpoint is skipped.
    fn post(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = EtcdError::NoEndpoint;
        for e in &self.endpoints {
            match self.post_one(&e.url, path, body) {
                Ok(v) => return Ok(v),
                Err(err @ EtcdError::Api { .. }) if !err.says("not supported for learner") => {
                    return Err(err)
                }
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    /// `member list`.
    pub fn list(&self) -> Result<Membership, EtcdError> {
        let v = self.post("/v3/cluster/member/list", &json!({}))?;
        membership(&v).map_err(|reason| EtcdError::Malformed {
            url: "member list".into(),
            reason,
        })
    }

    /// `member list` from one endpoint only.
    pub fn list_at(&self, base: &str) -> Result<Membership, EtcdError> {
        let v = self.post_one(base, "/v3/cluster/member/list", &json!({}))?;
        membership(&v).map_err(|reason| EtcdError::Malformed {
            url: base.to_string(),
            reason,
        })
    }

    /// `GET /health` at one endpoint: true when it sees a leader and a quorum read works.
    pub fn healthy_at(&self, base: &str) -> bool {
        let url = format!("{}/health", base.trim_end_matches('/'));
        match self.agent.get(&url).call() {
            Ok(r) => r
                .into_string()
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["health"] == "true" || v["health"] == true),
            Err(_) => false,
        }
    }

    /// `GET /members` on a peer URL: the cluster ID (the `X-Etcd-Cluster-Id` header) and
    /// the members as that member sees them. etcd serves its peer port from the moment it
    /// starts, before its cluster has a quorum, while its client port does not answer
    /// until then: this is how a member that is still bootstrapping is recognised.
    pub fn peer_members_at(&self, peer_url: &str) -> Result<Membership, EtcdError> {
        let url = format!("{}/members", peer_url.trim_end_matches('/'));
        let unreachable = |reason: String| EtcdError::Unreachable {
            url: url.clone(),
            reason,
        };
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| unreachable(e.to_string()))?;
        let malformed = |reason: String| EtcdError::Malformed {
            url: url.clone(),
            reason,
        };
        let cluster_id = resp
            .header("X-Etcd-Cluster-Id")
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .map(EtcdId)
            .ok_or_else(|| {
                malformed("no X-Etcd-Cluster-Id header: not an etcd peer port".into())
            })?;
        let text = resp.into_string().map_err(|e| unreachable(e.to_string()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            malformed(format!(
                "{e}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        let members = peer_members(&v).map_err(malformed)?;
        Ok(Membership {
            cluster_id,
            answered_by: EtcdId::default(),
            members,
        })
    }

    /// `member add --learner`: the new member's ID and the membership after the add.
    pub fn add_learner(&self, peer_urls: &[EtcdUrl]) -> Result<(EtcdId, Membership), EtcdError> {
        let v = self.post(
            "/v3/cluster/member/add",
            &json!({"peerURLs": peer_urls, "isLearner": true}),
        )?;
        let bad = |reason: String| EtcdError::Malformed {
            url: "member add".into(),
            reason,
        };
        let id = id_of(&v["member"]["ID"])
            .map(EtcdId)
            .ok_or_else(|| bad("no member.ID".into()))?;
        Ok((id, membership(&v).map_err(bad)?))
    }

    /// `member promote`.
    pub fn promote(&self, id: EtcdId) -> Result<(), EtcdError> {
        self.post(
            "/v3/cluster/member/promote",
            &json!({"ID": id.0.to_string()}),
        )
        .map(drop)
    }

    /// `member remove`.
    pub fn remove(&self, id: EtcdId) -> Result<(), EtcdError> {
        self.post(
            "/v3/cluster/member/remove",
            &json!({"ID": id.0.to_string()}),
        )
        .map(drop)
    }

    /// `member update`: new peer URLs for a member.
    pub fn update(&self, id: EtcdId, peer_urls: &[EtcdUrl]) -> Result<(), EtcdError> {
        self.post(
            "/v3/cluster/member/update",
            &json!({"ID": id.0.to_string(), "peerURLs": peer_urls}),
        )
        .map(drop)
    }
}

/// `maintenance status` of one member: who it is, who leads, its revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Cluster ID from the response header.
    pub cluster_id: EtcdId,
    /// The member that answered.
    pub member_id: EtcdId,
    /// The leader it sees (0: none).
    pub leader: EtcdId,
    /// Its current revision.
    pub revision: i64,
}

impl Client {
    /// `maintenance status` at one endpoint.
    pub fn status_at(&self, base: &str) -> Result<Status, EtcdError> {
        let v = self.post_one(base, "/v3/maintenance/status", &json!({}))?;
        let bad = |reason: &str| EtcdError::Malformed {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        Ok(Status {
            cluster_id: id_of(&v["header"]["cluster_id"])
                .map(EtcdId)
                .ok_or_else(|| bad("no cluster_id"))?,
            member_id: id_of(&v["header"]["member_id"])
                .map(EtcdId)
                .ok_or_else(|| bad("no member_id"))?,
            leader: EtcdId(id_of(&v["leader"]).unwrap_or_default()),
            revision: id_of(&v["header"]["revision"]).unwrap_or_default() as i64,
        })
    }
}

/// A 64-bit ID: a decimal string in etcd's JSON, a number in some tools' output.
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the peer port's `/members` answer: a JSON array of `{"id": N, "name",
/// "peerURLs", "clientURLs", "isLearner"}` with the IDs as numbers (the v2 form).
pub fn peer_members(v: &Value) -> Result<Vec<Member>, String> {
    v.as_array()
        .ok_or("not a JSON array of members")?
        .iter()
        .map(|m| {
            Ok(Member {
                id: id_of(&m["id"]).map(EtcdId).ok_or("a member without id")?,
                name: m["name"].as_str().unwrap_or_default().to_string(),
                peer_urls: strings(&m["peerURLs"]),
                client_urls: strings(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
        })
        .collect()
}

/// Reads a `member list` (or `member add`) answer.
pub fn membership(v: &Value) -> Result<Membership, String> {
    let header = &v["header"];
    let cluster_id = id_of(&header["cluster_id"])
        .map(EtcdId)
        .ok_or("no header.cluster_id")?;
    let answered_by = EtcdId(id_of(&header["member_id"]).unwrap_or_default());
    let members = v["members"]
        .as_array()
        .ok_or("no members array")?
        .iter()
        .map(|m| {
            Ok(Member {
                id: id_of(&m["ID"]).map(EtcdId).ok_or("a member without ID")?,
                name: m["name"].as_str().unwrap_or_default().to_string(),
                peer_urls: strings(&m["peerURLs"]),
                client_urls: strings(&m["clientURLs"]),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
        })
        .collect::<Result<Vec<_>, &str>>()?;
    Ok(Membership {
        cluster_id,
        answered_by,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An etcd 3.4.23 `member list` answer while a learner was added but not started.
    const LIST: &str = r#"{"header":{"cluster_id":"15172527772512277119","member_id":"11465625223646675324","raft_term":"2"},"members":[{"ID":"11465625223646675324","name":"m1","peerURLs":["https://m1.etcd.test:2380"],"clientURLs":["https://m1.etcd.test:2379"]},{"ID":"77","peerURLs":["https://m4.etcd.test:2380"],"isLearner":true}]}"#;

    #[test]
    fn member_list_reads_decimal_ids_and_unstarted_learners() {
        let m = membership(&serde_json::from_str(LIST).unwrap()).unwrap();
        assert_eq!(m.cluster_id, EtcdId(15172527772512277119));
        assert_eq!(m.answered_by, EtcdId(11465625223646675324));
        assert_eq!(m.members.len(), 2);
        assert!(m.members[0].started() && !m.members[0].is_learner);
        assert!(!m.members[1].started() && m.members[1].is_learner);
        assert_eq!(m.members[1].label(), "4d");
        assert_eq!(m.members[1].client_urls, Vec::<String>::new());
    }

    /// An etcd 3.4.23 peer port's `/members` while its cluster still bootstraps (no
    /// member has published its client URLs yet).
    #[test]
    fn peer_members_read_numeric_ids() {
        let body = r#"[{"id":133647029687354924,"peerURLs":["http://127.0.0.1:60589"],"name":"b"},{"id":1672557605701516491,"peerURLs":["http://127.0.0.1:43463"],"name":"a","clientURLs":["http://127.0.0.1:2379"]}]"#;
        let m = peer_members(&serde_json::from_str(body).unwrap()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].id, EtcdId(133647029687354924));
        assert!(!m[0].started() && m[1].started());
        assert!(peer_members(&serde_json::json!({"a": 1})).is_err());
    }

    #[test]
    fn errors_are_read_from_the_body_whatever_the_status() {
        let body = r#"{"error":"etcdserver: too many learner members in cluster","message":"etcdserver: too many learner members in cluster","code":9}"#;
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["code"], 9);
        let e = EtcdError::Api {
            url: "u".into(),
            code: 9,
            message: v["message"].as_str().unwrap().into(),
        };
        assert!(e.says(msg::TOO_MANY_LEARNERS));
        assert!(!e.says(msg::NOT_IN_SYNC));
    }

    #[test]
    fn half_a_client_certificate_is_refused() {
        let e = Client::new(
            vec![Endpoint {
                url: "https://a:1".into(),
                addrs: vec![],
            }],
            Access {
                cert_file: Some("/c".into()),
                ca_file: Some("/nonexistent-ca".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot read CA file /nonexistent-ca"),
            "{e}"
        );
        assert!(matches!(
            Client::new(vec![], Access::default()),
            Err(EtcdError::NoEndpoint)
        ));
    }
}
