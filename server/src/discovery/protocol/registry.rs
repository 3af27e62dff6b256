//! Answers and changes over the [`Registry`]: reads and waits answered with etcd's JSON
//! (encoded as Go encodes it), changes planned, applied, and answered.

use serde::Serialize;

use super::{key_path, Change, ErrorCode, Key, Limits, Member, Refusal, RefusalKind, Registry};
use super::{Reply, Token};

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
pub(super) fn go_json<T: Serialize>(v: &T) -> String {
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
