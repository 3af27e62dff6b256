//! Routing and parsing a request into an [`Op`] as etcd's v2 keys API parses it (its
//! form handling, its checks in their order), and checking member values as etcd will
//! parse them when it builds its initial cluster.

use super::{ErrorCode, Key, Limits, Op, Refusal, RefusalKind, Reply, Request, DEFAULT_SIZE};
use super::{MAX_VALUE_LEN, REGISTRY_PREFIX};

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

/// A `<token>/...` keys request: the form checks etcd's `parseKeyRequest` makes, then
/// the method.
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
    if wait && req.method != "GET" {
        return Err(Refusal::bad(
            ErrorCode::InvalidField,
            "\"wait\" can only be used with GET requests",
        ));
    }
    match req.method {
        "GET" | "HEAD" if wait => {
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
        }
        "GET" | "HEAD" => Ok(Op::Get { token, key, sorted }),
        "PUT" => parse_put(req, form, dir, token, key, limits, current_index),
        "DELETE" => parse_delete(req, token, key),
        _ => Err(Refusal {
            status: Some(405),
            ..unsupported(&format!("method {}", req.method))
        }),
    }
}

/// A field or feature of etcd's keys API the discovery service does not have.
fn unsupported(what: &str) -> Refusal {
    Refusal::bad(
        ErrorCode::InvalidField,
        format!("{what} is not supported by the discovery service"),
    )
}

/// A PUT: a member registering (create-only), or an admin creating a token by writing
/// its size, as etcd's discovery document does.
fn parse_put(
    req: &Request<'_>,
    form: &Form,
    dir: bool,
    token: String,
    key: Key,
    limits: &Limits,
    current_index: u64,
) -> Result<Op, Refusal> {
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
                    format!("{}: {why}", key_path(&token, &Key::Member(id.clone()))),
                )
            })?;
            Ok(Op::Register {
                token,
                id,
                value: value.into(),
            })
        }
        Key::Size => parse_size_write(req, value, token, limits),
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

/// `PUT <token>/_config/size`: creates the token (admin only).
fn parse_size_write(
    req: &Request<'_>,
    value: &str,
    token: String,
    limits: &Limits,
) -> Result<Op, Refusal> {
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

/// A DELETE: only a whole token, by an admin.
fn parse_delete(req: &Request<'_>, token: String, key: Key) -> Result<Op, Refusal> {
    match key {
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
