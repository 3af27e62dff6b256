//! TSIG keys: from BIND key files or the config, and the key ring that finds them by name.
//!
//! Key files are read by the parser `muster-agent` uses too
//! ([`muster_conventions::keyfile`]); this module turns its key blocks into [`Key`]s
//! (names, the algorithms musterd implements) and its errors into [`KeyError`]s that name
//! the file.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use muster_conventions::keyfile::{self, ErrorKind, Statement};

use super::Algorithm;
use crate::proto::name::Name;

/// A TSIG key: name, algorithm and shared secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The key name, lower-cased: the canonical form the MAC covers (RFC 8945 §4.3.3).
    pub name: Name,
    pub algorithm: Algorithm,
    pub secret: Vec<u8>,
    /// Accept requests whose MAC is truncated (RFC 8945 §5.2.2.1 case 4). Off unless the
    /// operator asks: a truncated MAC is weaker, and BIND and hickory refuse it by default.
    pub allow_truncated_mac: bool,
}

impl fmt::Debug for Key {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} octets>", self.secret.len()))
            .field("allow_truncated_mac", &self.allow_truncated_mac)
            .finish()
    }
}

impl Key {
    /// A key from its parts; the name is folded to lower case.
    pub fn new(name: &Name, algorithm: Algorithm, secret: Vec<u8>) -> Key {
        Key {
            name: name.to_lowercase(),
            algorithm,
            secret,
            allow_truncated_mac: false,
        }
    }

    /// A key from the three values of an inline config entry (or of `nsupdate -y` and
    /// Kea's `tsig-keys`): name, algorithm name, base64 secret.
    pub fn from_config(name: &str, algorithm: &str, secret: &str) -> Result<Key, KeyError> {
        let at = Location {
            source: "the config".into(),
            line: None,
        };
        let key_name = parse_key_name(name, &at)?;
        let algorithm =
            Algorithm::from_text(algorithm).ok_or_else(|| KeyError::UnknownAlgorithm {
                at: at.clone(),
                key: name.to_string(),
                algorithm: algorithm.to_string(),
            })?;
        let secret = decode_secret(secret, name, &at)?;
        Ok(Key::new(&key_name, algorithm, secret))
    }
}

/// Where a key was defined, for error messages: `file:line`, or a description such as
/// "the config".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    pub line: Option<u32>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}", self.source, l),
            None => f.write_str(&self.source),
        }
    }
}

/// Why a key could not be loaded. Every variant names where, and the key when known.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {what}")]
    Syntax { at: Location, what: String },
    #[error("{at}: key {name:?}: not a valid domain name ({reason})")]
    BadName {
        at: Location,
        name: String,
        reason: String,
    },
    #[error(
        "{at}: key {key:?}: unsupported algorithm {algorithm:?}; musterd supports hmac-sha1, \
         hmac-sha224, hmac-sha256, hmac-sha384 and hmac-sha512 \
         (make a new key with `tsig-keygen -a hmac-sha256 {key}`)"
    )]
    UnknownAlgorithm {
        at: Location,
        key: String,
        algorithm: String,
    },
    #[error("{at}: key {key:?}: the secret is not valid base64 ({reason})")]
    BadSecret {
        at: Location,
        key: String,
        reason: String,
    },
    #[error("{at}: key {key:?} has no algorithm statement")]
    MissingAlgorithm { at: Location, key: String },
    #[error("{at}: key {key:?} has no secret statement")]
    MissingSecret { at: Location, key: String },
    #[error("{at}: key {key:?} is already defined at {first}")]
    Duplicate {
        at: Location,
        key: String,
        first: Location,
    },
}

fn parse_key_name(text: &str, at: &Location) -> Result<Name, KeyError> {
    // Key names are absolute: `tsig-keygen update-key` and `nsupdate -y ...:update-key:...`
    // both mean `update-key.`.
    Name::parse_absolute(text).map_err(|e| KeyError::BadName {
        at: at.clone(),
        name: text.to_string(),
        reason: e.to_string(),
    })
}

fn decode_secret(text: &str, key: &str, at: &Location) -> Result<Vec<u8>, KeyError> {
    keyfile::decode_secret(text).map_err(|reason| KeyError::BadSecret {
        at: at.clone(),
        key: key.to_string(),
        reason,
    })
}

/// The keys the server knows, by lower-cased name.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<Name, (Arc<Key>, Location)>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> KeyRing {
        KeyRing::default()
    }

    /// Adds one key; a second key with the same name (in any case) is an error.
    pub fn insert(&mut self, key: Key, at: Location) -> Result<(), KeyError> {
        let lower = key.name.to_lowercase();
        if let Some((_, first)) = self.keys.get(&lower) {
            return Err(KeyError::Duplicate {
                at,
                key: display_name(&key.name),
                first: first.clone(),
            });
        }
        self.keys.insert(lower, (Arc::new(key), at));
        Ok(())
    }

    /// Reads every key of a BIND key file. Returns how many keys it held.
    pub fn load_file(&mut self, path: &Path) -> Result<usize, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_text(&text, &path.display().to_string())
    }

    /// Reads every key of BIND key file text; `source` names it in errors.
    pub fn load_text(&mut self, text: &str, source: &str) -> Result<usize, KeyError> {
        let keys = parse_key_file(text, source)?;
        let n = keys.len();
        for (key, at) in keys {
            self.insert(key, at)?;
        }
        Ok(n)
    }

    /// The key with this name, compared case-insensitively.
    pub fn get(&self, name: &Name) -> Option<&Arc<Key>> {
        self.keys.get(&name.to_lowercase()).map(|(k, _)| k)
    }

    /// Where the key with this name was defined.
    pub fn location(&self, name: &Name) -> Option<&Location> {
        self.keys.get(&name.to_lowercase()).map(|(_, at)| at)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &Name> {
        self.keys.keys()
    }
}

/// A name for messages: text form without the final dot, as the operator typed it.
pub(super) fn display_name(name: &Name) -> String {
    let s = name.to_string();
    if s.len() > 1 {
        s.trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Parses the `key "name" { algorithm ...; secret "..."; };` blocks of a BIND key file,
/// as `tsig-keygen` and `ddns-confgen` print them. Anything else is an error naming the
/// line.
pub fn parse_key_file(text: &str, source: &str) -> Result<Vec<(Key, Location)>, KeyError> {
    let at = |line: u32| Location {
        source: source.to_string(),
        line: Some(line),
    };
    let mut keys: Vec<(Key, Location)> = Vec::new();
    for statement in keyfile::statements(text) {
        let block = match statement {
            Ok(Statement::Key(block)) => block,
            Ok(Statement::Other { first, line }) => {
                return Err(KeyError::Syntax {
                    at: at(line),
                    what: format!("expected a `key` statement, found {first}"),
                })
            }
            Err(e) => {
                let line = e.line;
                return Err(key_file_error(e, at(line)));
            }
        };
        let key_at = at(block.line);
        let name = parse_key_name(&block.name, &key_at)?;
        let algorithm =
            Algorithm::from_text(&block.algorithm).ok_or_else(|| KeyError::UnknownAlgorithm {
                at: at(block.algorithm_line),
                key: block.name.clone(),
                algorithm: block.algorithm.clone(),
            })?;
        if let Some((_, first)) = keys.iter().find(|(k, _)| k.name.eq_ignore_case(&name)) {
            return Err(KeyError::Duplicate {
                at: key_at,
                key: block.name,
                first: first.clone(),
            });
        }
        keys.push((Key::new(&name, algorithm, block.secret), key_at));
    }
    Ok(keys)
}

/// The server's form of a key-file error: the file and line, the key when known.
fn key_file_error(e: keyfile::Error, at: Location) -> KeyError {
    match e.kind {
        ErrorKind::Syntax(what) => KeyError::Syntax { at, what },
        ErrorKind::BadSecret { key, reason } => KeyError::BadSecret { at, key, reason },
        ErrorKind::MissingAlgorithm { key } => KeyError::MissingAlgorithm { at, key },
        ErrorKind::MissingSecret { key } => KeyError::MissingSecret { at, key },
    }
}
