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

/// A parsed request: a route and its form values.
struct Form {
    /// Body values first, then query values: Go's `FormValue` prefers the body.
    pairs: Vec<(String, String)>,
}

impl Form {
    fn parse(req: &Request<'_>) -> Form {
        let mut pairs = Vec::new();
        let is_form = req.content_type.is_some_and(|ct| {
            ct.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        // Go's ParseForm reads bodies of PUT, POST and PATCH only.
        if is_form && matches!(req.method, "PUT" | "POST" | "PATCH") {
            pairs.extend(form_urlencoded::parse(req.body).into_owned());
        }
        if let Some(q) = req.query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Form { pairs }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// etcd's `getBool`: absent is false; present must be a Go boolean.
    fn bool(&self, key: &str) -> Result<bool, Refusal> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => go_parse_bool(v).ok_or_else(|| {
                Refusal::bad(
                    ErrorCode::InvalidField,
                    format!("invalid value for {key:?}"),
                )
            }),
        }
    }

    /// etcd's `getUint64`: absent is 0.
    fn uint(&self, key: &str) -> Result<u64, Refusal> {
        match self.get(key) {
            None => Ok(0),
            Some(v) => v.parse::<u64>().map_err(|_| {
                Refusal::bad(ErrorCode::IndexNaN, format!("invalid value for {key:?}"))
            }),
        }
    }
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    New,
    Health,
    /// `/v2/keys/...` outside the registry, the registry itself, or nothing known.
    NotFound(String),
    /// The registry listing (`/v2/keys/_etcd/registry`): refused, tokens are secrets.
    RegistryRoot,
    Keys {
        token: String,
        key: Key,
    },
}

/// Whether `s` can name a token: 16 to 64 letters, digits and hyphens (32 hex digits
/// from `/new`; a UUID from `uuidgen` for the self-hosted flow). The length floor keeps
/// hand-made tokens from being trivially guessable and keeps tokens apart from `new`,
/// `health` and `v2` in discovery.etcd.io-style paths.
pub fn is_token(s: &str) -> bool {
    (16..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether `s` is a member ID as etcd writes it (`types.ID.String()`: lowercase hex
/// without leading zeros, 64 bits).
pub fn is_member_id(s: &str) -> bool {
    (1..=16).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && !s.starts_with('0')
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // etcd's client cleans paths (`pathutil.CanonicalURLPath`); dot segments from
    // anyone else are not resolved, just not found.
    if segs.iter().any(|s| *s == "." || *s == "..") {
        return Route::NotFound(path.into());
    }
    let (token, rest) = match segs.as_slice() {
        ["new"] => return Route::New,
        ["health"] => return Route::Health,
        ["v2", "keys", "_etcd", "registry", token, rest @ ..] => (*token, rest),
        ["v2", "keys", "_etcd", "registry"] | ["v2", "keys", "_etcd"] | ["v2", "keys"] => {
            return Route::RegistryRoot
        }
        ["v2", "keys", rest @ ..] => return Route::NotFound(format!("/{}", rest.join("/"))),
        [token, rest @ ..] if is_token(token) => (*token, rest),
        _ => return Route::NotFound(path.into()),
    };
    let key = match rest {
        [] => Key::Dir,
        ["_config"] => Key::ConfigDir,
        ["_config", "size"] => Key::Size,
        [id] if is_member_id(id) => Key::Member((*id).into()),
        other => Key::Other(other.join("/")),
    };
    Route::Keys {
        token: token.into(),
        key,
    }
}

/// The full etcd key of `key` under `token`.
pub fn key_path(token: &str, key: &Key) -> String {
    let rel = key.rel();
    if rel.is_empty() {
        format!("{REGISTRY_PREFIX}/{token}")
    } else {
        format!("{REGISTRY_PREFIX}/{token}/{rel}")
    }
}

/// A request that is not an etcd keys request: answered by the HTTP layer or here.
fn method_not_allowed() -> Reply {
    let mut r = Reply::text(405, "Method Not Allowed");
    r.allow = true;
    r
}

/// Parses a request into an [`Op`], or the answer that refuses it.
///
/// The registry is consulted only for the current index (which etcd puts in its errors
/// about keys); whether tokens exist is decided when the op runs.
pub fn parse(req: &Request<'_>, limits: &Limits, current_index: u64) -> Result<Op, Reply> {
    let form = Form::parse(req);
    match route(req.path) {
        Route::New => {
            if req.method != "GET" {
                return Err(method_not_allowed());
            }
            if !req.admin {
                let mut r = Reply::text(
                    401,
                    "creating a discovery token needs the bearer secret (Authorization: Bearer ...)\n",
                );
                r.auth_challenge = true;
                return Err(r);
            }
            let size = match form.get("size") {
                None | Some("") => DEFAULT_SIZE,
                Some(s) => s
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=limits.max_members).contains(n))
                    .ok_or_else(|| {
                        Reply::text(
                            400,
                            format!(
                                "invalid size {s:?}: a cluster size is a whole number from 1 to {}\n",
                                limits.max_members
                            ),
                        )
                    })?,
            };
            Ok(Op::New { size })
        }
        Route::Health => match req.method {
            "GET" | "HEAD" => Ok(Op::Health),
            _ => Err(method_not_allowed()),
        },
        Route::NotFound(cause) => Err(Refusal::new(
            ErrorCode::KeyNotFound,
            cause,
            current_index,
            RefusalKind::BadRequest,
        )
        .reply()),
        Route::RegistryRoot => Err(Refusal::unauthorized(
            "the registry of discovery tokens cannot be listed; use the token URL",
        )
        .reply()),
        Route::Keys { token, key } => {
            parse_keys(req, &form, token, key, limits, current_index).map_err(|r| r.reply())
        }
    }
}

fn parse_keys(
    req: &Request<'_>,
    form: &Form,
    token: String,
    key: Key,
    limits: &Limits,
    current_index: u64,
) -> Result<Op, Refusal> {
    // The checks etcd's parseKeyRequest makes, in its order, for the fields we use.
    let wait_index = form.uint("waitIndex")?;
    let recursive = form.bool("recursive")?;
    let sorted = form.bool("sorted")?;
    let wait = form.bool("wait")?;
    let dir = form.bool("dir")?;
    form.bool("quorum")?;
    let stream = form.bool("stream")?;
    let unsupported = |what: &str| {
        Refusal::bad(
            ErrorCode::InvalidField,
            format!("{what} is not supported by the discovery service"),
        )
    };
    if wait && req.method != "GET" {
        return Err(Refusal::bad(
            ErrorCode::InvalidField,
            "\"wait\" can only be used with GET requests",
        ));
    }
    match req.method {
        "GET" | "HEAD" => {
            if wait {
                if stream {
                    return Err(unsupported("stream"));
                }
                // etcd treats waitIndex=0 as absent.
                let since = (wait_index != 0).then_some(wait_index);
                Ok(Op::Wait {
                    token,
                    key,
                    recursive,
                    since,
                })
            } else {
                Ok(Op::Get { token, key, sorted })
            }
        }
        "PUT" => {
            for field in ["prevValue", "prevIndex", "ttl", "refresh"] {
                if form.get(field).is_some() {
                    return Err(unsupported(field));
                }
            }
            if dir {
                return Err(unsupported("dir"));
            }
            // Only create-only writes: prevExist absent (a first write) or false.
            if form.bool("prevExist")? {
                return Err(Refusal::bad(
                    ErrorCode::InvalidField,
                    "registrations cannot be updated (prevExist=true); a token bootstraps one cluster",
                ));
            }
            let value = form.get("value").unwrap_or("");
            match key {
                Key::Member(id) => {
                    check_member_value(value).map_err(|why| {
                        Refusal::bad(
                            ErrorCode::InvalidField,
                            format!(
                                "{}: {why}",
                                key_path(&token, &Key::Member(id.clone()))
                            ),
                        )
                    })?;
                    Ok(Op::Register {
                        token,
                        id,
                        value: value.into(),
                    })
                }
                Key::Size => {
                    if !req.admin {
                        return Err(Refusal::unauthorized(
                            "creating a discovery token needs the bearer secret (Authorization: Bearer ...)",
                        ));
                    }
                    let size = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=limits.max_members).contains(n))
                        .ok_or_else(|| {
                            Refusal::bad(
                                ErrorCode::InvalidField,
                                format!(
                                    "{}: invalid size {value:?}: a cluster size is a whole number from 1 to {}",
                                    key_path(&token, &Key::Size),
                                    limits.max_members
                                ),
                            )
                        })?;
                    Ok(Op::CreateToken { token, size })
                }
                Key::Dir | Key::ConfigDir => Err(Refusal::new(
                    ErrorCode::NotFile,
                    key_path(&token, &key),
                    current_index,
                    RefusalKind::BadRequest,
                )),
                Key::Other(_) => Err(Refusal::bad(
                    ErrorCode::InvalidField,
                    format!(
                        "{}: only <token>/<member id> (etcd's member ID: up to 16 lowercase hex digits) and <token>/_config/size can be written",
                        key_path(&token, &key)
                    ),
                )),
            }
        }
        "DELETE" => match key {
            Key::Dir => {
                if !req.admin {
                    return Err(Refusal::unauthorized(
                        "deleting a discovery token needs the bearer secret (Authorization: Bearer ...)",
                    ));
                }
                Ok(Op::DeleteToken { token })
            }
            _ => Err(Refusal::bad(
                ErrorCode::InvalidField,
                format!(
                    "{}: registrations cannot be removed one by one; delete the token and create a new one",
                    key_path(&token, &key)
                ),
            )),
        },
        _ => Err(Refusal {
            status: Some(405),
            ..unsupported(&format!("method {}", req.method))
        }),
    }
}

/// Checks a member value as etcd's `types.NewURLsMap` will parse it when it builds the
/// initial cluster, so that one bad registration cannot stop every member of the token
/// with `discovery: invalid URL` or `found duplicate name`: comma-separated `name=url`
/// pairs, one name, each URL `http`, `https`, `unix` or `unixs` with `host:port` and no
/// path.
pub fn check_member_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value; expected name=peer-url[,name=peer-url...]".into());
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!(
            "value longer than {MAX_VALUE_LEN} bytes; expected name=peer-url[,name=peer-url...]"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("control character in value".into());
    }
    let mut name_seen: Option<&str> = None;
    for pair in value.split(',').filter(|p| !p.is_empty()) {
        let (name, url) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not name=peer-url"))?;
        if name.is_empty() {
            return Err(format!("{pair:?} has an empty member name"));
        }
        match name_seen {
            Some(n) if n != name => {
                return Err(format!(
                    "two member names ({n:?} and {name:?}) in one registration"
                ))
            }
            _ => name_seen = Some(name),
        }
        check_peer_url(url.trim()).map_err(|why| format!("peer URL {url:?}: {why}"))?;
    }
    if name_seen.is_none() {
        return Err("no name=peer-url pair".into());
    }
    Ok(())
}

fn check_peer_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or("expected scheme://host:port")?;
    if !matches!(scheme, "http" | "https" | "unix" | "unixs") {
        return Err("scheme must be http, https, unix or unixs".into());
    }
    if rest.contains(['/', '?', '#']) {
        return Err("a peer URL has no path, query or fragment".into());
    }
    let host_port = rest.rsplit_once('@').map_or(rest, |(_, hp)| hp);
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or("unclosed [ in the address")?;
        (h, p.strip_prefix(':').ok_or("expected host:port")?)
    } else {
        let (h, p) = host_port.rsplit_once(':').ok_or("expected host:port")?;
        if h.contains(':') {
            return Err("an IPv6 address must be written in brackets".into());
        }
        (h, p)
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port must be a number".into());
    }
    Ok(())
}

/// The member name of a (checked) member value.
fn member_name(value: &str) -> &str {
    value
        .split(',')
        .find(|p| !p.is_empty())
        .and_then(|p| p.split_once('='))
        .map_or("", |(n, _)| n)
}

/// A node as etcd's `NodeExtern` serializes it (field order and omissions included).
#[derive(Debug, Serialize)]
struct Node<'a> {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "is_false")]
    dir: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    nodes: Vec<Node<'a>>,
    #[serde(rename = "modifiedIndex")]
    modified_index: u64,
    #[serde(rename = "createdIndex")]
    created_index: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An event as etcd's `v2store.Event` serializes it.
#[derive(Debug, Serialize)]
struct Event<'a> {
    action: &'static str,
    node: Node<'a>,
    #[serde(rename = "prevNode", skip_serializing_if = "Option::is_none")]
    prev_node: Option<Node<'a>>,
}

/// Serializes as Go's `json.Encoder` does: HTML-sensitive characters and the two
/// JavaScript line terminators escaped, newline at the end. Those characters can only
/// occur inside strings in serde_json's output, so replacing them is safe.
fn go_json<T: Serialize>(v: &T) -> String {
    // Serializing plain structs of strings and integers cannot fail.
    let raw = serde_json::to_string(v).unwrap_or_default();
    let mut out = String::with_capacity(raw.len() + 1);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

fn member_node<'a>(token: &str, m: &'a Member) -> Node<'a> {
    Node {
        key: key_path(token, &Key::Member(m.id.clone())),
        value: Some(&m.value),
        dir: false,
        nodes: Vec::new(),
        modified_index: m.index,
        created_index: m.index,
    }
}

fn size_node<'a>(name: &str, size: &'a str, t: &Token) -> Node<'a> {
    Node {
        key: key_path(name, &Key::Size),
        value: Some(size),
        dir: false,
        nodes: Vec::new(),
        modified_index: t.created_index,
        created_index: t.created_index,
    }
}

fn dir_node<'a>(path: String, index: u64, nodes: Vec<Node<'a>>) -> Node<'a> {
    Node {
        key: path,
        value: None,
        dir: true,
        nodes,
        modified_index: index,
        created_index: index,
    }
}

impl Registry {
    /// The token if it exists and has not expired.
    pub fn live(&self, name: &str, now_unix: u64) -> Option<&Token> {
        self.tokens.get(name).filter(|t| !t.expired(now_unix))
    }

    /// Live tokens.
    pub fn live_count(&self, now_unix: u64) -> usize {
        self.tokens
            .values()
            .filter(|t| !t.expired(now_unix))
            .count()
    }

    fn not_found(&self, token: &str, key: &Key) -> Refusal {
        Refusal::new(
            ErrorCode::KeyNotFound,
            key_path(token, key),
            self.index,
            RefusalKind::BadRequest,
        )
    }

    /// Answers a GET of `key` under `token`, as etcd's store would.
    pub fn get(&self, token: &str, key: &Key, sorted: bool, now_unix: u64) -> Reply {
        let Some(t) = self.live(token, now_unix) else {
            // etcd names the first missing element of the path.
            return self.not_found(token, &Key::Dir).reply();
        };
        let size = t.size.to_string();
        let node = match key {
            Key::Dir => {
                // `_config` is hidden (its name starts with `_`), as etcd hides it.
                let mut nodes: Vec<Node<'_>> =
                    t.members.iter().map(|m| member_node(token, m)).collect();
                if sorted {
                    nodes.sort_by(|a, b| a.key.cmp(&b.key));
                }
                dir_node(key_path(token, key), t.created_index, nodes)
            }
            Key::ConfigDir => dir_node(
                key_path(token, key),
                t.created_index,
                vec![size_node(token, &size, t)],
            ),
            Key::Size => size_node(token, &size, t),
            Key::Member(id) => match t.members.iter().find(|m| &m.id == id) {
                Some(m) => member_node(token, m),
                None => return self.not_found(token, key).reply(),
            },
            Key::Other(_) => return self.not_found(token, key).reply(),
        };
        Reply::json(
            200,
            self.index,
            go_json(&Event {
                action: "get",
                node,
                prev_node: None,
            }),
        )
    }

    /// Checks that a wait on `key` under `token` can be registered: the token must be
    /// live (etcd would wait forever on a missing key; a discovery client waiting on a
    /// token that does not exist is better told at once) and the key one that can change.
    pub fn check_wait(&self, token: &str, key: &Key, now_unix: u64) -> Result<(), Reply> {
        if self.live(token, now_unix).is_none() {
            return Err(self.not_found(token, &Key::Dir).reply());
        }
        if let Key::Other(_) = key {
            return Err(self.not_found(token, key).reply());
        }
        Ok(())
    }

    /// The body of the first event at or after `since` that a wait on `key` is owed, as
    /// etcd's watcher hub finds it: the key itself, or any key below it for a recursive
    /// wait, except keys below it that are hidden (`_config/size` for a wait on the
    /// token directory), which etcd does not report to recursive watchers above them.
    pub fn first_event(
        &self,
        token: &str,
        key: &Key,
        recursive: bool,
        since: u64,
        now_unix: u64,
    ) -> Option<String> {
        let t = self.live(token, now_unix)?;
        let size = t.size.to_string();
        let size_event = || {
            go_json(&Event {
                action: "set",
                node: size_node(token, &size, t),
                prev_node: None,
            })
        };
        let member_event = |m: &Member| {
            go_json(&Event {
                action: "create",
                node: member_node(token, m),
                prev_node: None,
            })
        };
        match key {
            Key::Dir if recursive => t
                .members
                .iter()
                .find(|m| m.index >= since)
                .map(member_event),
            Key::ConfigDir if recursive => (t.created_index >= since).then(size_event),
            Key::Size => (t.created_index >= since).then(size_event),
            Key::Member(id) => t
                .members
                .iter()
                .find(|m| &m.id == id && m.index >= since)
                .map(member_event),
            _ => None,
        }
    }

    /// Plans a new token (from `GET /new` or the self-hosted PUT of `_config/size`).
    pub fn plan_token(
        &self,
        name: &str,
        size: u32,
        now_unix: u64,
        ttl_secs: u64,
        limits: &Limits,
    ) -> Result<Change, Refusal> {
        if self.live(name, now_unix).is_some() {
            return Err(Refusal::new(
                ErrorCode::NodeExist,
                key_path(name, &Key::Size),
                self.index,
                RefusalKind::Duplicate,
            ));
        }
        if self.live_count(now_unix) >= limits.max_tokens {
            return Err(Refusal::limit(
                format!(
                    "too many discovery tokens (limit {}); delete unused tokens or wait until they expire",
                    limits.max_tokens
                ),
                self.index,
            ));
        }
        Ok(Change::AddToken {
            name: name.into(),
            token: Token {
                size,
                created_index: self.index + 1,
                created_unix: now_unix,
                expires_unix: now_unix.saturating_add(ttl_secs),
                members: Vec::new(),
            },
        })
    }

    /// Plans a registration: a create-only PUT of `<token>/<id>`.
    ///
    /// Registrations past the token's size are accepted (up to the member limit): etcd's
    /// client ranks members by index and itself concludes "cluster is full", falling back
    /// to a proxy or exiting as configured.
    pub fn plan_register(
        &self,
        token: &str,
        id: &str,
        value: &str,
        now_unix: u64,
        limits: &Limits,
    ) -> Result<Change, Refusal> {
        let t = self
            .live(token, now_unix)
            .ok_or_else(|| self.not_found(token, &Key::Dir))?;
        let key = key_path(token, &Key::Member(id.into()));
        if t.members.iter().any(|m| m.id == id) {
            // etcd's create-only PUT of an existing key; the client reports it as
            // "discovery: found duplicate id".
            return Err(Refusal::new(
                ErrorCode::NodeExist,
                key,
                self.index,
                RefusalKind::Duplicate,
            ));
        }
        let name = member_name(value);
        if let Some(other) = t.members.iter().find(|m| member_name(&m.value) == name) {
            // Accepting it would make every member of the token fail with "found
            // duplicate name" when it builds the cluster. The same node coming back with
            // another peer URL is the usual cause, which is what etcd's advice for a
            // duplicate ID ("check the data dir, or use a new token") fits.
            return Err(Refusal::new(
                ErrorCode::NodeExist,
                format!(
                    "{key}: member name {name:?} is already registered by member {}",
                    other.id
                ),
                self.index,
                RefusalKind::Duplicate,
            ));
        }
        if t.members.len() >= limits.max_members as usize {
            return Err(Refusal::new(
                ErrorCode::NoMorePeer,
                format!(
                    "{}: the token already holds {} registrations (its cluster size is {})",
                    key_path(token, &Key::Dir),
                    t.members.len(),
                    t.size
                ),
                self.index,
                RefusalKind::Full,
            ));
        }
        Ok(Change::AddMember {
            token: token.into(),
            member: Member {
                id: id.into(),
                value: value.into(),
                index: self.index + 1,
            },
        })
    }

    /// Plans the deletion of a token.
    pub fn plan_delete(&self, token: &str, now_unix: u64) -> Result<Change, Refusal> {
        let t = self
            .live(token, now_unix)
            .ok_or_else(|| self.not_found(token, &Key::Dir))?;
        Ok(Change::RemoveToken {
            name: token.into(),
            index: self.index + 1,
            created_index: t.created_index,
            expired: false,
        })
    }

    /// Plans the removal of the first expired token, if any (one change at a time, as
    /// each takes the next index).
    pub fn plan_expiry(&self, now_unix: u64) -> Option<Change> {
        self.tokens
            .iter()
            .find(|(_, t)| t.expired(now_unix))
            .map(|(name, t)| Change::RemoveToken {
                name: name.clone(),
                index: self.index + 1,
                created_index: t.created_index,
                expired: true,
            })
    }

    /// The token record as it will be after `change` (`None`: removed), for the store.
    pub fn record_after(&self, change: &Change) -> Option<Token> {
        match change {
            Change::AddToken { token, .. } => Some(token.clone()),
            Change::AddMember { token, member } => {
                let mut t = self.tokens.get(token)?.clone();
                t.members.push(member.clone());
                Some(t)
            }
            Change::RemoveToken { .. } => None,
        }
    }

    /// Applies a planned (and persisted) change.
    pub fn apply(&mut self, change: &Change) {
        self.index = self.index.max(change.index());
        match change {
            Change::AddToken { name, token } => {
                self.tokens.insert(name.clone(), token.clone());
            }
            Change::AddMember { token, member } => {
                if let Some(t) = self.tokens.get_mut(token) {
                    t.members.push(member.clone());
                }
            }
            Change::RemoveToken { name, .. } => {
                self.tokens.remove(name);
            }
        }
    }

    /// The answer to the request that made `change`, once applied.
    pub fn change_reply(&self, change: &Change) -> Reply {
        match change {
            Change::AddToken { name, token } => {
                let size = token.size.to_string();
                // A PUT that creates a key is a "set" answered 201, as in etcd.
                Reply::json(
                    201,
                    change.index(),
                    go_json(&Event {
                        action: "set",
                        node: size_node(name, &size, token),
                        prev_node: None,
                    }),
                )
            }
            Change::AddMember { token, member } => Reply::json(
                201,
                change.index(),
                go_json(&Event {
                    action: "create",
                    node: member_node(token, member),
                    prev_node: None,
                }),
            ),
            Change::RemoveToken {
                name,
                index,
                created_index,
                ..
            } => {
                let path = key_path(name, &Key::Dir);
                Reply::json(
                    200,
                    *index,
                    go_json(&Event {
                        action: "delete",
                        node: Node {
                            modified_index: *index,
                            ..dir_node(path.clone(), *created_index, Vec::new())
                        },
                        prev_node: Some(dir_node(path, *created_index, Vec::new())),
                    }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_tokens: 4,
        max_members: 5,
    };
    const TOK: &str = "0123456789abcdef0123456789abcdef";

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> Request<'a> {
        Request {
            method,
            path,
            query,
            content_type: Some("application/x-www-form-urlencoded"),
            body,
            admin: true,
        }
    }

    fn with_token(size: u32) -> Registry {
        let mut r = Registry {
            index: 10,
            ..Registry::default()
        };
        let c = r.plan_token(TOK, size, 1000, 3600, &LIMITS).unwrap();
        r.apply(&c);
        r
    }

    fn register(r: &mut Registry, id: &str, value: &str) -> Result<Reply, Refusal> {
        let c = r.plan_register(TOK, id, value, 1000, &LIMITS)?;
        r.apply(&c);
        Ok(r.change_reply(&c))
    }

    #[test]
    fn both_url_styles_route_to_the_same_keys() {
        for base in [format!("/{TOK}"), format!("/v2/keys/_etcd/registry/{TOK}")] {
            let op = parse(
                &req("GET", &format!("{base}/_config/size"), None, b""),
                &LIMITS,
                0,
            );
            assert_eq!(
                op,
                Ok(Op::Get {
                    token: TOK.into(),
                    key: Key::Size,
                    sorted: false
                })
            );
            // etcd's client sends exactly these parameters for its recursive wait.
            let op = parse(
                &req(
                    "GET",
                    &base,
                    Some("recursive=true&wait=true&waitIndex=12"),
                    b"",
                ),
                &LIMITS,
                0,
            );
            assert_eq!(
                op,
                Ok(Op::Wait {
                    token: TOK.into(),
                    key: Key::Dir,
                    recursive: true,
                    since: Some(12)
                })
            );
            let op = parse(
                &req(
                    "PUT",
                    &format!("{base}/8e9e05c52164694d"),
                    Some("prevExist=false"),
                    b"value=infra0%3Dhttp%3A%2F%2F10.0.1.10%3A2380",
                ),
                &LIMITS,
                0,
            );
            assert_eq!(
                op,
                Ok(Op::Register {
                    token: TOK.into(),
                    id: "8e9e05c52164694d".into(),
                    value: "infra0=http://10.0.1.10:2380".into()
                })
            );
        }
    }

    #[test]
    fn registry_listing_and_other_keys_are_refused() {
        let r = parse(
            &req("GET", "/v2/keys/_etcd/registry", None, b""),
            &LIMITS,
            7,
        )
        .unwrap_err();
        assert_eq!(r.status, 401);
        assert!(r.auth_challenge);
        let r = parse(&req("GET", "/v2/keys/foo", None, b""), &LIMITS, 7).unwrap_err();
        assert_eq!(
            r.body,
            "{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/foo\",\"index\":7}\n"
        );
        let r = parse(&req("GET", "/short", None, b""), &LIMITS, 7).unwrap_err();
        assert_eq!(r.status, 404);
        let r = parse(&req("GET", &format!("/{TOK}/../x"), None, b""), &LIMITS, 7).unwrap_err();
        assert_eq!(r.status, 404);
    }

    #[test]
    fn new_sizes() {
        let p = |q: &str| parse(&req("GET", "/new", Some(q), b""), &LIMITS, 0);
        assert_eq!(p(""), Ok(Op::New { size: 3 }));
        assert_eq!(p("size=5"), Ok(Op::New { size: 5 }));
        for bad in ["size=0", "size=6", "size=-1", "size=x", "size=99999999999"] {
            assert_eq!(p(bad).unwrap_err().status, 400, "{bad}");
        }
        let mut r = req("GET", "/new", None, b"");
        r.admin = false;
        let reply = parse(&r, &LIMITS, 0).unwrap_err();
        assert_eq!(reply.status, 401);
        assert!(reply.auth_challenge);
    }

    #[test]
    fn request_errors_match_etcd() {
        let e = parse(
            &req(
                "GET",
                &format!("/{TOK}"),
                Some("wait=true&waitIndex=x"),
                b"",
            ),
            &LIMITS,
            9,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.body,
            "{\"errorCode\":203,\"message\":\"The given index in POST form is not a number\",\"cause\":\"invalid value for \\\"waitIndex\\\"\",\"index\":0}\n"
        );
        let e = parse(
            &req("GET", &format!("/{TOK}"), Some("recursive=yes"), b""),
            &LIMITS,
            9,
        )
        .unwrap_err();
        assert!(e.body.contains("\"errorCode\":209"), "{}", e.body);
        let e = parse(
            &req(
                "PUT",
                &format!("/{TOK}/abc"),
                Some("wait=true"),
                b"value=a=http://h:1",
            ),
            &LIMITS,
            9,
        )
        .unwrap_err();
        assert!(e.body.contains("can only be used with GET"), "{}", e.body);
        // A body is only a form when it says so, as with Go's ParseForm.
        let path = format!("/{TOK}/abc");
        let mut r = req("PUT", &path, None, b"value=a=http://h:1");
        r.content_type = Some("text/plain");
        assert!(parse(&r, &LIMITS, 9)
            .unwrap_err()
            .body
            .contains("empty value"));
    }

    #[test]
    fn malformed_member_values_are_refused() {
        for bad in [
            "",
            "infra0",
            "=http://h:1",
            "infra0=h:1",
            "infra0=ftp://h:1",
            "infra0=http://h",
            "infra0=http://h:x",
            "infra0=http://h:1/path",
            "infra0=http://:1",
            "infra0=http://::1:2380",
            "a=http://h:1,b=http://h:2",
            "infra0=http://h:1\n",
        ] {
            assert!(check_member_value(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "infra0=http://10.0.1.10:2380",
            "infra0=http://10.0.1.10:2380,infra0=https://[::1]:2380",
            "m-1.example=https://m-1.example.com:2380",
        ] {
            assert_eq!(check_member_value(good), Ok(()), "{good:?}");
        }
        let long = format!("a=http://{}:1", "h".repeat(MAX_VALUE_LEN));
        assert!(check_member_value(&long).is_err());
    }

    #[test]
    fn member_ids_are_etcd_hex() {
        assert!(is_member_id("8e9e05c52164694d"));
        assert!(is_member_id("1"));
        assert!(!is_member_id("08e9e05c52164694"));
        assert!(!is_member_id("8E9E05C52164694D"));
        assert!(!is_member_id("8e9e05c52164694d0"));
        assert!(!is_member_id("_config"));
    }

    #[test]
    fn get_answers_as_etcd_does() {
        let mut r = with_token(3);
        register(&mut r, "b", "m1=http://127.0.0.1:2380").unwrap();
        register(&mut r, "a", "m2=http://127.0.0.1:2381").unwrap();
        assert_eq!(r.index, 13);
        let reply = r.get(TOK, &Key::Size, false, 1000);
        assert_eq!(reply.status, 200);
        assert_eq!(reply.etcd_index, Some(13));
        assert_eq!(
            reply.body,
            format!("{{\"action\":\"get\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}/_config/size\",\"value\":\"3\",\"modifiedIndex\":11,\"createdIndex\":11}}}}\n")
        );
        let reply = r.get(TOK, &Key::Dir, false, 1000);
        assert_eq!(
            reply.body,
            format!(
                "{{\"action\":\"get\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"nodes\":[\
                 {{\"key\":\"/_etcd/registry/{TOK}/b\",\"value\":\"m1=http://127.0.0.1:2380\",\"modifiedIndex\":12,\"createdIndex\":12}},\
                 {{\"key\":\"/_etcd/registry/{TOK}/a\",\"value\":\"m2=http://127.0.0.1:2381\",\"modifiedIndex\":13,\"createdIndex\":13}}],\
                 \"modifiedIndex\":11,\"createdIndex\":11}}}}\n"
            )
        );
        let sorted = r.get(TOK, &Key::Dir, true, 1000).body;
        assert!(sorted.find("/a\"").unwrap() < sorted.find("/b\"").unwrap());
        // An empty directory has no "nodes" (Go's omitempty).
        let empty = with_token(3).get(TOK, &Key::Dir, false, 1000).body;
        assert!(!empty.contains("nodes"), "{empty}");
        let missing = r.get(TOK, &Key::Member("c".into()), false, 1000);
        assert_eq!(missing.status, 404);
        assert_eq!(
            missing.body,
            format!("{{\"errorCode\":100,\"message\":\"Key not found\",\"cause\":\"/_etcd/registry/{TOK}/c\",\"index\":13}}\n")
        );
        let unknown = r.get("ffffffffffffffffffffffffffffffff", &Key::Size, false, 1000);
        assert!(unknown
            .body
            .contains("\"cause\":\"/_etcd/registry/ffffffffffffffffffffffffffffffff\""));
    }

    #[test]
    fn values_are_escaped_as_go_does() {
        let mut r = with_token(3);
        // `&` is legal in a URL's user info; Go's encoder writes it as \u0026.
        register(&mut r, "b", "m1=http://a&b@h:1").unwrap();
        assert!(r
            .get(TOK, &Key::Dir, false, 1000)
            .body
            .contains("a\\u0026b@h:1"));
    }

    #[test]
    fn duplicates_and_full_tokens() {
        let mut r = with_token(2);
        let created = register(&mut r, "a1", "m1=http://127.0.0.1:1").unwrap();
        assert_eq!(created.status, 201);
        assert_eq!(created.etcd_index, Some(12));
        assert!(created
            .body
            .starts_with("{\"action\":\"create\",\"node\":{"));
        let dup = register(&mut r, "a1", "m9=http://127.0.0.1:9").unwrap_err();
        assert_eq!(
            (dup.code, dup.kind),
            (ErrorCode::NodeExist, RefusalKind::Duplicate)
        );
        assert_eq!(dup.reply().status, 412);
        assert_eq!(
            dup.reply().body,
            format!("{{\"errorCode\":105,\"message\":\"Key already exists\",\"cause\":\"/_etcd/registry/{TOK}/a1\",\"index\":12}}\n")
        );
        let dup_name = register(&mut r, "a2", "m1=http://127.0.0.1:2").unwrap_err();
        assert_eq!(dup_name.code, ErrorCode::NodeExist);
        assert!(dup_name.cause.contains("member name \"m1\""));
        // Past the size: accepted, etcd decides it is full.
        for (i, id) in ["a2", "a3", "a4", "a5"].iter().enumerate() {
            register(&mut r, id, &format!("n{i}=http://127.0.0.1:{}", 10 + i)).unwrap();
        }
        let full = register(&mut r, "a6", "n9=http://127.0.0.1:99").unwrap_err();
        assert_eq!(
            (full.code, full.kind),
            (ErrorCode::NoMorePeer, RefusalKind::Full)
        );
        // Nothing changed on refusals.
        assert_eq!(r.index, 16);
    }

    #[test]
    fn waits_find_the_first_event_at_or_after_since() {
        let mut r = with_token(3);
        register(&mut r, "a", "m1=http://127.0.0.1:1").unwrap(); // 12
        register(&mut r, "b", "m2=http://127.0.0.1:2").unwrap(); // 13
        let ev = |key: Key, rec: bool, since: u64| r.first_event(TOK, &key, rec, since, 1000);
        assert!(ev(Key::Dir, true, 13).unwrap().contains("/b\""));
        assert!(ev(Key::Dir, true, 12).unwrap().contains("/a\""));
        assert_eq!(ev(Key::Dir, true, 14), None);
        // The hidden size key is not reported to recursive waits on the directory.
        assert!(ev(Key::Dir, true, 1).unwrap().contains("/a\""));
        assert_eq!(ev(Key::Dir, false, 1), None);
        // What createSelf's wait on its own key gets: the create at its index.
        assert_eq!(
            ev(Key::Member("b".into()), false, 13).unwrap(),
            format!("{{\"action\":\"create\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}/b\",\"value\":\"m2=http://127.0.0.1:2\",\"modifiedIndex\":13,\"createdIndex\":13}}}}\n")
        );
        assert!(ev(Key::Size, false, 11)
            .unwrap()
            .starts_with("{\"action\":\"set\""));
        assert!(ev(Key::ConfigDir, true, 11).is_some());
        assert_eq!(ev(Key::Size, false, 12), None);
    }

    #[test]
    fn tokens_expire_and_are_limited() {
        let mut r = with_token(3);
        assert!(r.live(TOK, 4599).is_some());
        assert!(r.live(TOK, 4600).is_none());
        assert_eq!(r.get(TOK, &Key::Dir, false, 4600).status, 404);
        assert_eq!(r.plan_expiry(4599), None);
        let c = r.plan_expiry(4600).unwrap();
        r.apply(&c);
        assert_eq!(r.index, 12);
        assert!(r.tokens.is_empty());
        for i in 0..4 {
            let c = r
                .plan_token(&format!("{TOK}{i}"), 3, 5000, 10, &LIMITS)
                .unwrap();
            r.apply(&c);
        }
        let e = r
            .plan_token(&format!("{TOK}x"), 3, 5000, 10, &LIMITS)
            .unwrap_err();
        assert_eq!(e.reply().status, 503);
        // Expired tokens do not count against the limit.
        assert!(r
            .plan_token(&format!("{TOK}x"), 3, 5010, 10, &LIMITS)
            .is_ok());
        let e = r
            .plan_token(&format!("{TOK}0"), 3, 5000, 10, &LIMITS)
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::NodeExist);
    }

    #[test]
    fn delete_answers_like_etcd() {
        let mut r = with_token(3);
        let c = r.plan_delete(TOK, 1000).unwrap();
        r.apply(&c);
        assert_eq!(
            r.change_reply(&c).body,
            format!("{{\"action\":\"delete\",\"node\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"modifiedIndex\":12,\"createdIndex\":11}},\"prevNode\":{{\"key\":\"/_etcd/registry/{TOK}\",\"dir\":true,\"modifiedIndex\":11,\"createdIndex\":11}}}}\n")
        );
        assert_eq!(
            r.plan_delete(TOK, 1000).unwrap_err().code,
            ErrorCode::KeyNotFound
        );
        let path = format!("/{TOK}");
        let mut q = req("DELETE", &path, None, b"");
        q.admin = false;
        assert_eq!(parse(&q, &LIMITS, 0).unwrap_err().status, 401);
        let e = parse(
            &req("DELETE", &format!("/{TOK}/abc"), None, b""),
            &LIMITS,
            0,
        )
        .unwrap_err();
        assert_eq!(e.status, 400);
    }
}
