//! The etcd v2 keys subset that etcd's `--discovery` client speaks, as pure functions over
//! a [`Registry`] of tokens: route and parse a request, answer a read, plan a change,
//! apply it, and find the event a wait is owed. No sockets, files or clocks here: the
//! caller passes the time and the fresh token, and persists a [`Change`] before applying
//! it.
//!
//! What etcd parses, and therefore what must be exact (etcd 3.4 `client` and
//! `etcdserver/api/v2discovery`; 3.5's copy behaves the same):
//! - `X-Etcd-Index` on every answer, a decimal number; the client uses the one of the
//!   token listing as the index to wait after.
//! - Success bodies `{"action":..,"node":{"key","value","dir","nodes","modifiedIndex",
//!   "createdIndex"}}` with etcd's field names; the client keeps only `path.Base(key)`,
//!   `value` and `createdIndex` (members are ranked by it).
//! - Error bodies `{"errorCode","message","cause","index"}`; the client acts on 100 (key
//!   not found) and 105 (node exists, which it reports as a duplicate member ID).
//! - 5xx answers are taken as "this server is unavailable": the client backs off and
//!   retries reads and waits, so limits answer 503.
//! - A wait answered 200 with an empty body is simply issued again.
//!
//! Bodies are encoded as Go's `encoding/json` encodes them (`<`, `>`, `&`, U+2028 and
//! U+2029 escaped, a newline after the object), so a transcript from etcd and one from
//! musterd compare byte for byte.
//!
//! Limitations: only the keys etcd's discovery uses exist (`<token>/_config/size` and
//! `<token>/<member id>`); registrations cannot be changed or removed one by one (a token
//! bootstraps one cluster, as etcd's protocol document says); TTLs, compare-and-swap,
//! in-order keys and streaming waits are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where etcd's protocol document keeps discovery tokens; every key we answer with
/// starts here, whichever URL style the client used.
pub const REGISTRY_PREFIX: &str = "/_etcd/registry";

/// The size `GET /new` gives a token when the request names none (discovery.etcd.io's
/// default).
pub const DEFAULT_SIZE: u32 = 3;

/// The longest member value accepted. etcd writes `name=peer-url[,name=peer-url...]`
/// for one member: a few hundred bytes even with several long URLs.
pub const MAX_VALUE_LEN: usize = 4096;

/// Bounds that the protocol layer enforces (the HTTP layer enforces the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live tokens at most.
    pub max_tokens: usize,
    /// Registrations per token at most; also the largest size a token may have.
    pub max_members: u32,
}

/// One registered etcd member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// etcd's member ID in hex, as etcd writes it (the last element of the key).
    pub id: String,
    /// `name=peer-url[,name=peer-url...]`, checked as etcd will parse it.
    pub value: String,
    /// The etcd index at which the member registered: its rank.
    pub index: u64,
}

/// One discovery token: one cluster to bootstrap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Members the cluster starts with; fixed at creation.
    pub size: u32,
    /// The etcd index at which the token (its `_config/size` key) was created.
    pub created_index: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// The token is gone from this time on (seconds since the Unix epoch).
    pub expires_unix: u64,
    /// In registration order, which is also index order.
    pub members: Vec<Member>,
}

impl Token {
    fn expired(&self, now_unix: u64) -> bool {
        now_unix >= self.expires_unix
    }
}

/// Every token, and the etcd index: one counter for all tokens, as in etcd, which only
/// grows (it is persisted with every change, so it grows across restarts too).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    /// The index of the latest change.
    pub index: u64,
    /// By token name.
    pub tokens: BTreeMap<String, Token>,
}

/// A key under a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// The token's directory, `<token>`.
    Dir,
    /// `<token>/_config`.
    ConfigDir,
    /// `<token>/_config/size`.
    Size,
    /// `<token>/<member id>`.
    Member(String),
    /// Anything else (kept for error causes).
    Other(String),
}

impl Key {
    /// The key path below the token, without a leading slash ("" for the directory).
    fn rel(&self) -> String {
        match self {
            Key::Dir => String::new(),
            Key::ConfigDir => "_config".into(),
            Key::Size => "_config/size".into(),
            Key::Member(id) => id.clone(),
            Key::Other(p) => p.clone(),
        }
    }
}

/// What a request asks for, once parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `GET /new?size=N`: make a token.
    New { size: u32 },
    /// `GET /health`.
    Health,
    /// Read a key.
    Get {
        token: String,
        key: Key,
        sorted: bool,
    },
    /// Wait for the first change at or after `since` (`None`: after the current index).
    Wait {
        token: String,
        key: Key,
        recursive: bool,
        since: Option<u64>,
    },
    /// Create-only PUT of `<token>/<id>`: a member registers.
    Register {
        token: String,
        id: String,
        value: String,
    },
    /// PUT of `<token>/_config/size` for a token that does not exist yet (the
    /// self-hosted flow of etcd's protocol document).
    CreateToken { token: String, size: u32 },
    /// DELETE of `<token>`.
    DeleteToken { token: String },
}

/// An HTTP request as the protocol layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, not percent-decoded (valid tokens and keys never need escapes).
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The Content-Type header, if any: only form bodies are read, as Go's ParseForm does.
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Whether the request may create and delete tokens (no secret is configured, or it
    /// carried the right one).
    pub admin: bool,
}

/// An answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// The `X-Etcd-Index` header.
    pub etcd_index: Option<u64>,
    pub content_type: &'static str,
    pub body: String,
    /// Add `WWW-Authenticate: Bearer` (the request lacked the creation secret).
    pub auth_challenge: bool,
    /// Add `Allow:` with the methods etcd's keys API allows (answer to a 405).
    pub allow: bool,
}

impl Reply {
    fn json(status: u16, index: u64, body: String) -> Reply {
        Reply {
            status,
            etcd_index: Some(index),
            content_type: "application/json",
            body,
            auth_challenge: false,
            allow: false,
        }
    }

    /// A plain-text answer (the discovery.etcd.io conveniences answer in text).
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            etcd_index: None,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            auth_challenge: false,
            allow: false,
        }
    }
}

/// etcd's v2 error codes that this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    KeyNotFound = 100,
    NotFile = 102,
    NoMorePeer = 103,
    NodeExist = 105,
    Unauthorized = 110,
    IndexNaN = 203,
    InvalidField = 209,
    InvalidForm = 210,
    RaftInternal = 300,
}

impl ErrorCode {
    /// etcd's message for the code (`v2error.errors`).
    fn message(self) -> &'static str {
        match self {
            ErrorCode::KeyNotFound => "Key not found",
            ErrorCode::NotFile => "Not a file",
            ErrorCode::NoMorePeer => "Reached the max number of peers in the cluster",
            ErrorCode::NodeExist => "Key already exists",
            ErrorCode::Unauthorized => "The request requires user authentication",
            ErrorCode::IndexNaN => "The given index in POST form is not a number",
            ErrorCode::InvalidField => "Invalid field",
            ErrorCode::InvalidForm => "Invalid POST form",
            ErrorCode::RaftInternal => "Raft Internal Error",
        }
    }

    /// etcd's HTTP status for the code (`v2error.errorStatus`, 400 otherwise).
    fn status(self) -> u16 {
        match self {
            ErrorCode::KeyNotFound => 404,
            ErrorCode::NotFile => 403,
            ErrorCode::Unauthorized => 401,
            ErrorCode::NodeExist => 412,
            ErrorCode::RaftInternal => 500,
            _ => 400,
        }
    }
}

/// Why a request is refused, in etcd's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub cause: String,
    /// etcd puts the store's index in errors about keys and 0 in errors about the request.
    pub index: u64,
    /// Overrides etcd's status for the code: 503 for limits (etcd clients back off and
    /// retry on 5xx), 413 for oversized bodies.
    pub status: Option<u16>,
    /// Which counter the refusal bumps.
    pub kind: RefusalKind,
}

/// Refusals by what the metrics count them as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Malformed or unsupported request, unknown key.
    BadRequest,
    /// A member ID or name that is already registered.
    Duplicate,
    /// The token already holds as many registrations as it may.
    Full,
    /// A service limit (tokens, waits, connections, body size).
    Limit,
    /// The creation secret was missing or wrong.
    Unauthorized,
    /// The durable store failed.
    Internal,
}

impl Refusal {
    fn new(code: ErrorCode, cause: impl Into<String>, index: u64, kind: RefusalKind) -> Refusal {
        Refusal {
            code,
            cause: cause.into(),
            index,
            status: None,
            kind,
        }
    }

    /// A malformed request (etcd reports those with index 0).
    pub fn bad(code: ErrorCode, cause: impl Into<String>) -> Refusal {
        Refusal::new(code, cause, 0, RefusalKind::BadRequest)
    }

    /// A service limit: 503, which etcd's client treats as "retry later".
    pub fn limit(cause: impl Into<String>, index: u64) -> Refusal {
        Refusal {
            status: Some(503),
            ..Refusal::new(ErrorCode::RaftInternal, cause, index, RefusalKind::Limit)
        }
    }

    /// A body over the size limit.
    pub fn too_large(limit: usize) -> Refusal {
        Refusal {
            status: Some(413),
            ..Refusal::new(
                ErrorCode::InvalidForm,
                format!("request body larger than {limit} bytes"),
                0,
                RefusalKind::Limit,
            )
        }
    }

    /// The durable store failed: nothing changed.
    pub fn internal(cause: impl Into<String>, index: u64) -> Refusal {
        Refusal::new(ErrorCode::RaftInternal, cause, index, RefusalKind::Internal)
    }

    fn unauthorized(cause: &str) -> Refusal {
        Refusal::new(ErrorCode::Unauthorized, cause, 0, RefusalKind::Unauthorized)
    }

    /// The answer, as etcd's `v2error.Error.WriteTo` writes it.
    pub fn reply(&self) -> Reply {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "errorCode")]
            error_code: u16,
            message: &'a str,
            #[serde(skip_serializing_if = "str::is_empty")]
            cause: &'a str,
            index: u64,
        }
        let body = Body {
            error_code: self.code as u16,
            message: self.code.message(),
            cause: &self.cause,
            index: self.index,
        };
        let mut reply = Reply::json(
            self.status.unwrap_or_else(|| self.code.status()),
            self.index,
            go_json(&body),
        );
        reply.auth_challenge = self.kind == RefusalKind::Unauthorized;
        reply
    }
}

/// A change to the registry, planned against its current state and applied after it is
/// persisted. Each carries the index it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddToken {
        name: String,
        token: Token,
    },
    AddMember {
        token: String,
        member: Member,
    },
    RemoveToken {
        name: String,
        index: u64,
        created_index: u64,
        /// Removed by expiry rather than by a DELETE.
        expired: bool,
    },
}

impl Change {
    /// The etcd index the change takes.
    pub fn index(&self) -> u64 {
        match self {
            Change::AddToken { token, .. } => token.created_index,
            Change::AddMember { member, .. } => member.index,
            Change::RemoveToken { index, .. } => *index,
        }
    }

    /// The token the change is about.
    pub fn token_name(&self) -> &str {
        match self {
            Change::AddToken { name, .. } | Change::RemoveToken { name, .. } => name,
            Change::AddMember { token, .. } => token,
        }
    }
}

mod registry;
mod request;

use registry::go_json;
pub use request::{check_member_value, is_member_id, is_token, key_path, parse};

#[cfg(test)]
mod tests;
