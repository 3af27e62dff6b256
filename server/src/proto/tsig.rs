//! TSIG: secret-key transaction signatures (RFC 8945), for dynamic updates, the queries
//! that come with them, and zone transfers.
//!
//! Keys come from BIND key files exactly as `tsig-keygen` prints them, or from the config
//! ([`Key::from_config`]); a [`KeyRing`] finds them by name, case-insensitively (RFC 4343).
//! The HMACs are RustCrypto's `hmac` over `sha1`/`sha2`, and every tag is compared in
//! constant time by the `Mac` trait; nothing cryptographic is written here.
//!
//! Server side: [`verify_request`] checks a raw request in the order of RFC 8945 §5.2
//! (placement and format → key → MAC → time → truncation policy) and gives either a
//! [`Verified`] request or a [`TsigError`] that says which rcode to answer and which TSIG
//! the answer carries. [`sign_response`] then appends that TSIG to the finished response
//! (RFC 8945 §4.3.1, §5.3, §5.3.2). [`StreamSigner`] signs the messages of a multi-message
//! answer such as AXFR (RFC 8945 §5.3.1).
//!
//! Client side (the agent's `register`, tests): [`sign_request`], [`verify_response`] and
//! [`StreamVerifier`].
//!
//! Every function that reads a message is total: any byte string gives a result, never a
//! panic, and the work is linear in its length.
//!
//! Limitations: HMAC-MD5 and GSS-TSIG are not supported (RFC 8945 §6 makes MD5 optional,
//! and it is refused when keys load, never at packet time). The server does not remember
//! the last Time Signed per key, so a replay inside the fudge window is not refused
//! (RFC 8945 §5.2.3 says SHOULD); updates stay safe to replay through their prerequisites.
//! Responses are always signed with the full-length MAC, even when a truncated request MAC
//! was accepted (any verifier accepts a full MAC, RFC 8945 §5.2.2.1 case 2).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

use crate::proto::name::{wire_name_len, Name};
use crate::proto::reader::Reader;
use crate::proto::types::{class, rtype, Rcode};
use crate::proto::HEADER_LEN;

/// The fudge BIND, Knot and nsupdate use: five minutes of clock difference either way
/// (RFC 8945 §10 recommends 300 seconds).
pub const DEFAULT_FUDGE: u16 = 300;

/// Response codes TSIG processing answers with (RFC 1035 §4.1.1, RFC 2136 §2.2).
pub mod rcode {
    pub use crate::proto::types::rcode::{FORMERR, NOTAUTH};
}

/// Values of the TSIG Error field (RFC 8945 §3), from [`Rcode`]'s table.
pub mod error_code {
    use crate::proto::types::Rcode;
    pub const NOERROR: u16 = Rcode::NOERROR.to_u16();
    pub const BADSIG: u16 = Rcode::BADSIG.to_u16();
    pub const BADKEY: u16 = Rcode::BADKEY.to_u16();
    pub const BADTIME: u16 = Rcode::BADTIME.to_u16();
    pub const BADTRUNC: u16 = Rcode::BADTRUNC.to_u16();
}

/// A TSIG MAC algorithm musterd implements (RFC 8945 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    HmacSha1,
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl Algorithm {
    /// Every supported algorithm, weakest first.
    pub const ALL: [Algorithm; 5] = [
        Algorithm::HmacSha1,
        Algorithm::HmacSha224,
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// The algorithm's name as RFC 8945 §6 spells it, absolute.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha1 => "hmac-sha1.",
            Algorithm::HmacSha224 => "hmac-sha224.",
            Algorithm::HmacSha256 => "hmac-sha256.",
            Algorithm::HmacSha384 => "hmac-sha384.",
            Algorithm::HmacSha512 => "hmac-sha512.",
        }
    }

    /// The algorithm name in canonical (lower-case, uncompressed) wire form, as it goes
    /// into the TSIG RR and the MAC input (RFC 8945 §4.3.3).
    pub fn wire_name(self) -> &'static [u8] {
        match self {
            Algorithm::HmacSha1 => b"\x09hmac-sha1\x00",
            Algorithm::HmacSha224 => b"\x0bhmac-sha224\x00",
            Algorithm::HmacSha256 => b"\x0bhmac-sha256\x00",
            Algorithm::HmacSha384 => b"\x0bhmac-sha384\x00",
            Algorithm::HmacSha512 => b"\x0bhmac-sha512\x00",
        }
    }

    /// Reads an algorithm from text: BIND's and Kea's spellings (`hmac-sha256`,
    /// `HMAC-SHA256`), with or without the trailing dot.
    pub fn from_text(text: &str) -> Option<Algorithm> {
        let t = text.strip_suffix('.').unwrap_or(text);
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().trim_end_matches('.').eq_ignore_ascii_case(t))
    }

    /// Reads an algorithm from an uncompressed wire name, case-insensitively.
    pub fn from_wire_name(wire: &[u8]) -> Option<Algorithm> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.wire_name().eq_ignore_ascii_case(wire))
    }

    /// Length of the full MAC, the hash output length.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacSha1 => 20,
            Algorithm::HmacSha224 => 28,
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    /// The shortest MAC RFC 8945 §5.2.2.1 lets anyone send: the larger of 10 octets and
    /// half the hash length.
    pub fn min_mac_len(self) -> usize {
        (self.mac_len() / 2).max(10)
    }

    /// The HMAC of the concatenation of `parts`.
    fn mac(self, secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Algorithm::HmacSha1 => mac_with::<Hmac<sha1::Sha1>>(secret, parts),
            Algorithm::HmacSha224 => mac_with::<Hmac<sha2::Sha224>>(secret, parts),
            Algorithm::HmacSha256 => mac_with::<Hmac<sha2::Sha256>>(secret, parts),
            Algorithm::HmacSha384 => mac_with::<Hmac<sha2::Sha384>>(secret, parts),
            Algorithm::HmacSha512 => mac_with::<Hmac<sha2::Sha512>>(secret, parts),
        }
    }

    /// Whether `tag` is the HMAC of `parts`, or its leftmost `tag.len()` octets (a
    /// truncated MAC, RFC 8945 §5.2.2.1 case 4), compared in constant time.
    fn verify(self, secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
        match self {
            Algorithm::HmacSha1 => verify_with::<Hmac<sha1::Sha1>>(secret, parts, tag),
            Algorithm::HmacSha224 => verify_with::<Hmac<sha2::Sha224>>(secret, parts, tag),
            Algorithm::HmacSha256 => verify_with::<Hmac<sha2::Sha256>>(secret, parts, tag),
            Algorithm::HmacSha384 => verify_with::<Hmac<sha2::Sha384>>(secret, parts, tag),
            Algorithm::HmacSha512 => verify_with::<Hmac<sha2::Sha512>>(secret, parts, tag),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name().trim_end_matches('.'))
    }
}

fn keyed<M: KeyInit>(secret: &[u8]) -> M {
    // HMAC accepts keys of any length (RFC 2104 §2: longer keys are hashed first), so
    // `new_from_slice` cannot fail for an `Hmac<_>`.
    M::new_from_slice(secret).expect("HMAC takes keys of any length")
}

fn mac_with<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m: M = keyed(secret);
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn verify_with<M: Mac + KeyInit>(secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut m: M = keyed(secret);
    for p in parts {
        m.update(p);
    }
    // `verify_truncated_left` also accepts a full-length tag; an empty one is refused.
    m.verify_truncated_left(tag).is_ok()
}

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
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::parse(&absolute, None).map_err(|e| KeyError::BadName {
        at: at.clone(),
        name: text.to_string(),
        reason: e.to_string(),
    })
}

fn decode_secret(text: &str, key: &str, at: &Location) -> Result<Vec<u8>, KeyError> {
    // BIND skips white space inside a base64 string (a long secret may be wrapped).
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bad = |reason: String| KeyError::BadSecret {
        at: at.clone(),
        key: key.to_string(),
        reason,
    };
    if compact.is_empty() {
        return Err(bad("it is empty".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| bad(e.to_string()))
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
fn display_name(name: &Name) -> String {
    let s = name.to_string();
    if s.len() > 1 {
        s.trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// BIND key files

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (`key`, `algorithm`, `hmac-sha256`).
    Word(String),
    /// A double-quoted string, quotes removed.
    Quoted(String),
    Open,
    Close,
    Semicolon,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => write!(f, "`{w}`"),
            Token::Quoted(q) => write!(f, "\"{q}\""),
            Token::Open => f.write_str("`{`"),
            Token::Close => f.write_str("`}`"),
            Token::Semicolon => f.write_str("`;`"),
        }
    }
}

/// Splits named.conf-style text into tokens with their line numbers, dropping `//`, `#`
/// and `/* */` comments.
fn tokenize(text: &str, source: &str) -> Result<Vec<(Token, u32)>, KeyError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1u32;
    let at = |line| Location {
        source: source.to_string(),
        line: Some(line),
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            _ if c.is_ascii_whitespace() => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = line;
                i += 2;
                loop {
                    match b.get(i) {
                        None => {
                            return Err(KeyError::Syntax {
                                at: at(start),
                                what: "comment `/*` is never closed".into(),
                            })
                        }
                        Some(b'*') if b.get(i + 1) == Some(&b'/') => {
                            i += 2;
                            break;
                        }
                        Some(b'\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'{' => {
                out.push((Token::Open, line));
                i += 1;
            }
            b'}' => {
                out.push((Token::Close, line));
                i += 1;
            }
            b';' => {
                out.push((Token::Semicolon, line));
                i += 1;
            }
            b'"' => {
                let start = line;
                let mut s = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => {
                            return Err(KeyError::Syntax {
                                at: at(start),
                                what: "quoted string is never closed".into(),
                            })
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if i + 1 < b.len() => {
                            s.push(b[i + 1]);
                            if b[i + 1] == b'\n' {
                                line += 1;
                            }
                            i += 2;
                        }
                        Some(&ch) => {
                            if ch == b'\n' {
                                line += 1;
                            }
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((
                    Token::Quoted(String::from_utf8_lossy(&s).into_owned()),
                    start,
                ));
            }
            _ => {
                let start = i;
                // A word ends at white space, punctuation, a quote or a comment.
                let ends_word = |i: usize| {
                    b[i].is_ascii_whitespace()
                        || matches!(b[i], b'{' | b'}' | b';' | b'"' | b'#')
                        || (b[i] == b'/' && matches!(b.get(i + 1), Some(b'/') | Some(b'*')))
                };
                while i < b.len() && !ends_word(i) {
                    i += 1;
                }
                out.push((
                    Token::Word(String::from_utf8_lossy(&b[start..i]).into_owned()),
                    line,
                ));
            }
        }
    }
    Ok(out)
}

/// Parses the `key "name" { algorithm ...; secret "..."; };` blocks of a BIND key file,
/// as `tsig-keygen` and `ddns-confgen` print them. Anything else is an error naming the
/// line.
pub fn parse_key_file(text: &str, source: &str) -> Result<Vec<(Key, Location)>, KeyError> {
    let tokens = tokenize(text, source)?;
    let at = |line: u32| Location {
        source: source.to_string(),
        line: Some(line),
    };
    let last_line = text.lines().count().max(1) as u32;
    let mut it = tokens.into_iter().peekable();
    let mut keys: Vec<(Key, Location)> = Vec::new();
    let next = |what: &str, it: &mut std::iter::Peekable<std::vec::IntoIter<(Token, u32)>>| {
        it.next().ok_or_else(|| KeyError::Syntax {
            at: at(last_line),
            what: format!("the file ends where {what} was expected"),
        })
    };
    while let Some((tok, line)) = it.next() {
        match &tok {
            Token::Word(w) if w.eq_ignore_ascii_case("key") => {}
            other => {
                return Err(KeyError::Syntax {
                    at: at(line),
                    what: format!("expected a `key` statement, found {other}"),
                })
            }
        }
        let key_at = at(line);
        let (name_tok, name_line) = next("the key name", &mut it)?;
        let name_text = match name_tok {
            Token::Word(w) | Token::Quoted(w) => w,
            other => {
                return Err(KeyError::Syntax {
                    at: at(name_line),
                    what: format!("expected the key name after `key`, found {other}"),
                })
            }
        };
        let name = parse_key_name(&name_text, &key_at)?;
        match next("`{`", &mut it)? {
            (Token::Open, _) => {}
            (other, l) => {
                return Err(KeyError::Syntax {
                    at: at(l),
                    what: format!("expected `{{` after key {name_text:?}, found {other}"),
                })
            }
        }
        let mut algorithm: Option<Algorithm> = None;
        let mut secret: Option<Vec<u8>> = None;
        loop {
            let (tok, l) = next("`}`", &mut it)?;
            let word = match tok {
                Token::Close => break,
                Token::Word(w) => w,
                other => {
                    return Err(KeyError::Syntax {
                        at: at(l),
                        what: format!(
                            "expected `algorithm`, `secret` or `}}` in key {name_text:?}, \
                             found {other}"
                        ),
                    })
                }
            };
            let (value, vl) = match next("a value", &mut it)? {
                (Token::Word(v) | Token::Quoted(v), vl) => (v, vl),
                (other, vl) => {
                    return Err(KeyError::Syntax {
                        at: at(vl),
                        what: format!("expected a value after `{word}`, found {other}"),
                    })
                }
            };
            match next("`;`", &mut it)? {
                (Token::Semicolon, _) => {}
                (other, sl) => {
                    return Err(KeyError::Syntax {
                        at: at(sl),
                        what: format!("expected `;` after `{word} {value}`, found {other}"),
                    })
                }
            }
            let dup = |what: &str| KeyError::Syntax {
                at: at(l),
                what: format!("key {name_text:?} has a second `{what}` statement"),
            };
            if word.eq_ignore_ascii_case("algorithm") {
                if algorithm.is_some() {
                    return Err(dup("algorithm"));
                }
                algorithm = Some(Algorithm::from_text(&value).ok_or_else(|| {
                    KeyError::UnknownAlgorithm {
                        at: at(vl),
                        key: name_text.clone(),
                        algorithm: value.clone(),
                    }
                })?);
            } else if word.eq_ignore_ascii_case("secret") {
                if secret.is_some() {
                    return Err(dup("secret"));
                }
                secret = Some(decode_secret(&value, &name_text, &at(vl))?);
            } else {
                return Err(KeyError::Syntax {
                    at: at(l),
                    what: format!(
                        "unknown statement `{word}` in key {name_text:?} \
                         (a key has only `algorithm` and `secret`)"
                    ),
                });
            }
        }
        match next("`;`", &mut it)? {
            (Token::Semicolon, _) => {}
            (other, l) => {
                return Err(KeyError::Syntax {
                    at: at(l),
                    what: format!(
                        "expected `;` after the `}}` of key {name_text:?}, found {other}"
                    ),
                })
            }
        }
        let algorithm = algorithm.ok_or_else(|| KeyError::MissingAlgorithm {
            at: key_at.clone(),
            key: name_text.clone(),
        })?;
        let secret = secret.ok_or_else(|| KeyError::MissingSecret {
            at: key_at.clone(),
            key: name_text.clone(),
        })?;
        if let Some((_, first)) = keys.iter().find(|(k, _)| k.name.eq_ignore_case(&name)) {
            return Err(KeyError::Duplicate {
                at: key_at,
                key: name_text,
                first: first.clone(),
            });
        }
        keys.push((Key::new(&name, algorithm, secret), key_at));
    }
    Ok(keys)
}

// ---------------------------------------------------------------------------------------
// Messages

/// Why a message's TSIG is malformed or misplaced: the answer is FORMERR without a TSIG
/// (RFC 8945 §5.1, §5.2.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the message is shorter than a DNS header")]
    Short,
    #[error("a record or question runs past the end of the message or holds a bad name")]
    Truncated,
    #[error("the TSIG record is not the last record of the additional section")]
    NotLast,
    #[error("the message has more than one TSIG record")]
    Several,
    #[error("the TSIG record's class is not ANY")]
    WrongClass,
    #[error("the TSIG record's TTL is not 0")]
    NonZeroTtl,
    #[error("the TSIG record data is malformed")]
    BadRdata,
    #[error("data follows the TSIG record")]
    TrailingData,
    #[error("the MAC is longer than the algorithm's output")]
    MacTooLong,
    #[error("the MAC is shorter than RFC 8945 §5.2.2.1 allows")]
    MacTooShort,
}

/// The fields of a TSIG record in a message (RFC 8945 §4.2).
#[derive(Debug, Clone)]
struct TsigRecord<'a> {
    /// Offset of the TSIG record (its owner name) in the message.
    start: usize,
    /// The key name, decompressed, as the sender wrote it.
    key_name: Name,
    /// The algorithm name, uncompressed wire form as sent.
    algorithm: &'a [u8],
    time_signed: u64,
    fudge: u16,
    mac: &'a [u8],
    original_id: u16,
    error: u16,
    other: &'a [u8],
}

/// Finds the message's TSIG record, if it has one, and checks where it is and how it is
/// formed (RFC 8945 §5.1: the last record of the additional section, exactly one, class
/// ANY, TTL 0).
fn find_tsig(msg: &[u8]) -> Result<Option<TsigRecord<'_>>, Malformed> {
    let (h, mut r) = Reader::after_header(msg).map_err(|_| Malformed::Short)?;
    let [qd, an, ns, ar] = h.counts.map(usize::from);
    for _ in 0..qd {
        r.question().map_err(|_| Malformed::Truncated)?;
    }
    let total = an + ns + ar;
    let mut found: Option<(usize, usize)> = None; // (record index, start offset)
    for i in 0..total {
        let (t, start) = r.skip_record().map_err(|_| Malformed::Truncated)?;
        if t == rtype::TSIG {
            if found.is_some() {
                return Err(Malformed::Several);
            }
            found = Some((i, start));
        }
    }
    let Some((index, start)) = found else {
        return Ok(None);
    };
    if index + 1 != total || ar == 0 {
        return Err(Malformed::NotLast);
    }
    if r.remaining() != 0 {
        // The MAC covers nothing past the TSIG record, so bytes there would be unsigned.
        return Err(Malformed::TrailingData);
    }
    let rec = Reader::at(msg, start)
        .record()
        .map_err(|_| Malformed::Truncated)?;
    let key_name = Name::from_wire(&rec.owner).map_err(|_| Malformed::Truncated)?;
    if rec.class != class::ANY {
        return Err(Malformed::WrongClass);
    }
    if rec.ttl != 0 {
        return Err(Malformed::NonZeroTtl);
    }
    tsig_rdata(start, key_name, rec.rdata).map_err(|_| Malformed::BadRdata)
}

/// The fields of TSIG rdata (RFC 8945 §4.2), which must fill it exactly.
fn tsig_rdata(
    start: usize,
    key_name: Name,
    rd: &[u8],
) -> Result<Option<TsigRecord<'_>>, crate::proto::ReadError> {
    let mut d = Reader::new(rd);
    // RFC 8945 §4.2: the algorithm name is never compressed.
    let alg_len = wire_name_len(rd).ok_or(crate::proto::ReadError::BadRdata)?;
    let algorithm = d.bytes(alg_len)?;
    let time_signed = d.u48()?;
    let fudge = d.u16()?;
    let mac_len = d.u16()?;
    let mac = d.bytes(mac_len.into())?;
    let original_id = d.u16()?;
    let error = d.u16()?;
    let other_len = d.u16()?;
    let other = d.bytes(other_len.into())?;
    if d.remaining() != 0 {
        return Err(crate::proto::ReadError::BadRdata);
    }
    Ok(Some(TsigRecord {
        start,
        key_name,
        algorithm,
        time_signed,
        fudge,
        mac,
        original_id,
        error,
        other,
    }))
}

/// The header of a signed message as the MAC sees it: the Original ID in place of the
/// ID, ARCOUNT without the TSIG record (RFC 8945 §4.3.1–4.3.2).
fn mac_header(msg: &[u8], original_id: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    h[..2].copy_from_slice(&original_id.to_be_bytes());
    let ar = u16::from_be_bytes([h[10], h[11]]).wrapping_sub(1);
    h[10..12].copy_from_slice(&ar.to_be_bytes());
    h
}

/// The TSIG variables of RFC 8945 §4.3.3, in canonical form.
fn tsig_variables(
    key_name: &Name,
    algorithm: &[u8],
    time_signed: u64,
    fudge: u16,
    error: u16,
    other: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(key_name.wire_len() + algorithm.len() + 24 + other.len());
    v.extend_from_slice(key_name.to_lowercase().as_wire());
    v.extend_from_slice(&class::ANY.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    let mut alg = algorithm.to_vec();
    alg.make_ascii_lowercase();
    v.extend_from_slice(&alg);
    v.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    v.extend_from_slice(&fudge.to_be_bytes());
    v.extend_from_slice(&error.to_be_bytes());
    v.extend_from_slice(&(other.len() as u16).to_be_bytes());
    v.extend_from_slice(other);
    v
}

/// The TSIG timers of RFC 8945 §5.3.1, for the later messages of a stream.
fn tsig_timers(time_signed: u64, fudge: u16) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..6].copy_from_slice(&time_signed.to_be_bytes()[2..]);
    t[6..].copy_from_slice(&fudge.to_be_bytes());
    t
}

/// Checks the MAC size against RFC 8945 §5.2.2.1 rules 1 and 3.
fn check_mac_size(algorithm: Algorithm, mac: &[u8]) -> Result<(), Malformed> {
    if mac.len() > algorithm.mac_len() {
        return Err(Malformed::MacTooLong);
    }
    if mac.len() < algorithm.min_mac_len() {
        return Err(Malformed::MacTooShort);
    }
    Ok(())
}

impl TsigRecord<'_> {
    /// Its TSIG variables (RFC 8945 §4.3.3), which the MAC of a single message covers.
    fn variables(&self) -> Vec<u8> {
        tsig_variables(
            &self.key_name,
            self.algorithm,
            self.time_signed,
            self.fudge,
            self.error,
            self.other,
        )
    }

    /// Whether it names `key` and `key`'s algorithm (any case).
    fn names_key(&self, key: &Key) -> bool {
        self.key_name.eq_ignore_case(&key.name)
            && key
                .algorithm
                .wire_name()
                .eq_ignore_ascii_case(self.algorithm)
    }
}

/// The prior MAC with its length in front (RFC 8945 §4.3.1, §5.3.1), which a response's
/// MAC covers first; none (two empty parts) for a request.
fn prior_parts<'a>(prior_len: &'a mut [u8; 2], prior_mac: Option<&'a [u8]>) -> [&'a [u8]; 2] {
    match prior_mac {
        Some(mac) => {
            *prior_len = (mac.len() as u16).to_be_bytes();
            [&prior_len[..], mac]
        }
        None => [&[], &[]],
    }
}

/// The MAC of a message about to be signed (RFC 8945 §4.3, §5.3.1): over the prior MAC
/// (responses), the messages left unsigned since (later messages of a stream), the message
/// with its ID replaced by `original_id`, and `tail` (the TSIG variables, or the timers of
/// a later stream message).
fn sign_mac(
    key: &Key,
    msg: &[u8],
    original_id: u16,
    prior_mac: Option<&[u8]>,
    pending: &[u8],
    tail: &[u8],
) -> Vec<u8> {
    let header = unsigned_header(msg, original_id);
    let mut prior_len = [0u8; 2];
    let [len, prior] = prior_parts(&mut prior_len, prior_mac);
    let parts: [&[u8]; 6] = [len, prior, pending, &header, &msg[HEADER_LEN..], tail];
    key.algorithm.mac(&key.secret, &parts)
}

/// Checks the MAC of a received message whose TSIG record is `t` (RFC 8945 §5.2.2): its
/// size rules first (§5.2.2.1), then the MAC over what [`sign_mac`] covers, the message
/// taken without its TSIG record. `Ok(false)`: the signature does not verify.
fn check_mac(
    key: &Key,
    msg: &[u8],
    t: &TsigRecord<'_>,
    prior_mac: Option<&[u8]>,
    pending: &[u8],
    tail: &[u8],
) -> Result<bool, Malformed> {
    check_mac_size(key.algorithm, t.mac)?;
    let header = mac_header(msg, t.original_id);
    let mut prior_len = [0u8; 2];
    let [len, prior] = prior_parts(&mut prior_len, prior_mac);
    let parts: [&[u8]; 6] = [
        len,
        prior,
        pending,
        &header,
        &msg[HEADER_LEN..t.start],
        tail,
    ];
    Ok(key.algorithm.verify(&key.secret, &parts, t.mac))
}

/// A request whose TSIG checked out: what the response needs to be signed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub key: Arc<Key>,
    /// The request's MAC, which the response MAC covers (RFC 8945 §4.3.1).
    pub request_mac: Vec<u8>,
    pub time_signed: u64,
    pub fudge: u16,
    /// The Original ID of the request's TSIG, echoed in the response's.
    pub original_id: u16,
}

impl Verified {
    /// How to sign a normal response to this request.
    pub fn response(&self) -> ResponseTsig {
        ResponseTsig::Signed {
            key: Arc::clone(&self.key),
            request_mac: self.request_mac.clone(),
            original_id: self.original_id,
            fudge: self.fudge,
            error: error_code::NOERROR,
            request_time: None,
        }
    }
}

/// Why a signed request was refused, in the terms of RFC 8945 §5.2.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TsigError {
    /// FORMERR, answered without a TSIG.
    #[error("malformed TSIG: {0}")]
    Malformed(Malformed),
    /// Unknown key, or known key with another algorithm: NOTAUTH/BADKEY, unsigned.
    #[error(
        "TSIG key {} with algorithm {} is not known",
        display_name(key_name),
        algorithm_text(algorithm)
    )]
    BadKey {
        key_name: Name,
        algorithm: Vec<u8>,
        original_id: u16,
        fudge: u16,
    },
    /// The MAC does not match: NOTAUTH/BADSIG, unsigned.
    #[error("TSIG signature with key {} does not verify", display_name(&key.name))]
    BadSig {
        key: Arc<Key>,
        original_id: u16,
        fudge: u16,
    },
    /// The request was signed too long ago or too far ahead: NOTAUTH/BADTIME, signed,
    /// Other Data = our time.
    #[error(
        "TSIG time {} is outside our time {now} ± fudge {}",
        verified.time_signed,
        verified.fudge
    )]
    BadTime { verified: Verified, now: u64 },
    /// A truncated MAC the key does not allow: NOTAUTH/BADTRUNC, signed.
    #[error("TSIG MAC truncated to {mac_len} octets, which key {} does not allow", display_name(&verified.key.name))]
    BadTrunc { verified: Verified, mac_len: usize },
}

fn algorithm_text(wire: &[u8]) -> String {
    Name::from_wire(wire)
        .map(|n| display_name(&n))
        .unwrap_or_else(|_| "?".into())
}

impl TsigError {
    /// The response's RCODE: FORMERR for a malformed TSIG, NOTAUTH for the rest
    /// (RFC 8945 §5.2).
    pub fn rcode(&self) -> u16 {
        match self {
            TsigError::Malformed(_) => rcode::FORMERR,
            _ => rcode::NOTAUTH,
        }
    }

    /// The TSIG Error the response carries, if it carries a TSIG.
    pub fn tsig_error(&self) -> Option<u16> {
        match self {
            TsigError::Malformed(_) => None,
            TsigError::BadKey { .. } => Some(error_code::BADKEY),
            TsigError::BadSig { .. } => Some(error_code::BADSIG),
            TsigError::BadTime { .. } => Some(error_code::BADTIME),
            TsigError::BadTrunc { .. } => Some(error_code::BADTRUNC),
        }
    }

    /// The TSIG the error response carries; `None` for FORMERR, which carries none.
    pub fn response(&self) -> Option<ResponseTsig> {
        match self {
            TsigError::Malformed(_) => None,
            // RFC 8945 §5.3.2: BADKEY and BADSIG answers are unsigned (we cannot, or must
            // not, use the key), with the request's key and algorithm names echoed.
            TsigError::BadKey {
                key_name,
                algorithm,
                original_id,
                fudge,
            } => Some(ResponseTsig::Unsigned {
                key_name: key_name.clone(),
                algorithm: algorithm.clone(),
                original_id: *original_id,
                fudge: *fudge,
                error: error_code::BADKEY,
            }),
            TsigError::BadSig {
                key,
                original_id,
                fudge,
            } => Some(ResponseTsig::Unsigned {
                key_name: key.name.clone(),
                algorithm: key.algorithm.wire_name().to_vec(),
                original_id: *original_id,
                fudge: *fudge,
                error: error_code::BADSIG,
            }),
            // RFC 8945 §5.2.3: a BADTIME answer is signed and carries our time in Other
            // Data. Its Time Signed is the request's, as BIND and Knot do, so the client's
            // own time check passes and it can read the error and adjust.
            TsigError::BadTime { verified, .. } => Some(ResponseTsig::Signed {
                key: Arc::clone(&verified.key),
                request_mac: verified.request_mac.clone(),
                original_id: verified.original_id,
                fudge: verified.fudge,
                error: error_code::BADTIME,
                request_time: Some(verified.time_signed),
            }),
            // The MAC was good, so the answer can be and is signed (RFC 8945 §5.2.4).
            TsigError::BadTrunc { verified, .. } => Some(ResponseTsig::Signed {
                key: Arc::clone(&verified.key),
                request_mac: verified.request_mac.clone(),
                original_id: verified.original_id,
                fudge: verified.fudge,
                error: error_code::BADTRUNC,
                request_time: None,
            }),
        }
    }
}

/// Checks the TSIG of a request in the order of RFC 8945 §5.2, at time `now` (seconds
/// since the epoch).
///
/// `Ok(None)`: the request is not signed. `Ok(Some(_))`: it is signed and good.
/// `Err(_)`: the error says which rcode to answer and, through
/// [`TsigError::response`], which TSIG the answer carries.
pub fn verify_request(msg: &[u8], keys: &KeyRing, now: u64) -> Result<Option<Verified>, TsigError> {
    let Some(t) = find_tsig(msg).map_err(TsigError::Malformed)? else {
        return Ok(None);
    };
    // §5.2.1: the key must be known and its algorithm the one the request names.
    let key = match keys.get(&t.key_name) {
        Some(k) if k.algorithm.wire_name().eq_ignore_ascii_case(t.algorithm) => Arc::clone(k),
        _ => {
            let mut algorithm = t.algorithm.to_vec();
            algorithm.make_ascii_lowercase();
            return Err(TsigError::BadKey {
                key_name: t.key_name.clone(),
                algorithm,
                original_id: t.original_id,
                fudge: t.fudge,
            });
        }
    };
    // §5.2.2: the MAC, whose size rules come first (§5.2.2.1).
    if !check_mac(&key, msg, &t, None, &[], &t.variables()).map_err(TsigError::Malformed)? {
        return Err(TsigError::BadSig {
            key,
            original_id: t.original_id,
            fudge: t.fudge,
        });
    }
    let verified = Verified {
        key,
        request_mac: t.mac.to_vec(),
        time_signed: t.time_signed,
        fudge: t.fudge,
        original_id: t.original_id,
    };
    // §5.2.3: the window includes both ends (catalogue row 24: exactly ±fudge passes).
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(TsigError::BadTime { verified, now });
    }
    // §5.2.4: local truncation policy.
    if t.mac.len() < verified.key.algorithm.mac_len() && !verified.key.allow_truncated_mac {
        let mac_len = t.mac.len();
        return Err(TsigError::BadTrunc { verified, mac_len });
    }
    Ok(Some(verified))
}

/// The TSIG a response gets.
#[derive(Debug, Clone)]
pub enum ResponseTsig {
    /// Signed with the request's key, its MAC covering the request's (normal answers,
    /// BADTIME, BADTRUNC).
    Signed {
        key: Arc<Key>,
        request_mac: Vec<u8>,
        original_id: u16,
        fudge: u16,
        error: u16,
        /// For BADTIME: the request's Time Signed, which the response repeats while Other
        /// Data carries our time.
        request_time: Option<u64>,
    },
    /// An unsigned TSIG with an error and an empty MAC (BADKEY, BADSIG).
    Unsigned {
        key_name: Name,
        algorithm: Vec<u8>,
        original_id: u16,
        fudge: u16,
        error: u16,
    },
}

impl ResponseTsig {
    /// Octets the TSIG record will add to the response (uncompressed owner): what the
    /// answer path must keep free when it fits a UDP response to the client's size.
    pub fn record_len(&self) -> usize {
        match self {
            ResponseTsig::Signed {
                key, request_time, ..
            } => {
                let other = if request_time.is_some() { 6 } else { 0 };
                tsig_rr_len(
                    key.name.wire_len(),
                    key.algorithm.wire_name().len(),
                    key.algorithm.mac_len(),
                    other,
                )
            }
            ResponseTsig::Unsigned {
                key_name,
                algorithm,
                ..
            } => tsig_rr_len(key_name.wire_len(), algorithm.len(), 0, 0),
        }
    }
}

fn tsig_rr_len(owner: usize, alg: usize, mac: usize, other: usize) -> usize {
    // owner, type, class, TTL, rdlength; algorithm, time, fudge, MAC size, MAC, original
    // ID, error, other length, other data.
    owner + 10 + alg + 10 + mac + 6 + other
}

/// Why a message could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("the message is shorter than a DNS header")]
    Short,
    #[error("the additional section already holds 65535 records")]
    TooManyRecords,
    #[error("the signed message would be longer than 65535 octets")]
    TooLong,
}

/// Appends a TSIG record to `msg` and increments ARCOUNT.
#[allow(clippy::too_many_arguments)]
fn append_tsig(
    msg: &mut Vec<u8>,
    key_name: &Name,
    algorithm: &[u8],
    time_signed: u64,
    fudge: u16,
    mac: &[u8],
    original_id: u16,
    error: u16,
    other: &[u8],
) -> Result<(), SignError> {
    let ar = u16::from_be_bytes([msg[10], msg[11]])
        .checked_add(1)
        .ok_or(SignError::TooManyRecords)?;
    let rr_len = tsig_rr_len(key_name.wire_len(), algorithm.len(), mac.len(), other.len());
    if msg.len() + rr_len > u16::MAX as usize {
        return Err(SignError::TooLong);
    }
    let rdlen = (rr_len - key_name.wire_len() - 10) as u16;
    msg.extend_from_slice(key_name.as_wire());
    msg.extend_from_slice(&rtype::TSIG.to_be_bytes());
    msg.extend_from_slice(&class::ANY.to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&rdlen.to_be_bytes());
    msg.extend_from_slice(algorithm);
    msg.extend_from_slice(&time_signed.to_be_bytes()[2..]);
    msg.extend_from_slice(&fudge.to_be_bytes());
    msg.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    msg.extend_from_slice(mac);
    msg.extend_from_slice(&original_id.to_be_bytes());
    msg.extend_from_slice(&error.to_be_bytes());
    msg.extend_from_slice(&(other.len() as u16).to_be_bytes());
    msg.extend_from_slice(other);
    msg[10..12].copy_from_slice(&ar.to_be_bytes());
    Ok(())
}

/// The header as the MAC sees a message we are about to sign: its ID replaced by the
/// Original ID (RFC 8945 §4.3.1: the MAC covers the message as it was first built).
fn unsigned_header(msg: &[u8], original_id: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    h[..2].copy_from_slice(&original_id.to_be_bytes());
    h
}

/// Signs a finished response (header, rcode and every section written) by appending the
/// TSIG record `tsig` describes (RFC 8945 §4.3.1, §5.3, §5.3.2). Returns the response MAC
/// (empty for an unsigned error TSIG): the prior MAC of the next message of a stream.
pub fn sign_response(
    msg: &mut Vec<u8>,
    tsig: &ResponseTsig,
    now: u64,
) -> Result<Vec<u8>, SignError> {
    if msg.len() < HEADER_LEN {
        return Err(SignError::Short);
    }
    match tsig {
        ResponseTsig::Signed {
            key,
            request_mac,
            original_id,
            fudge,
            error,
            request_time,
        } => {
            let (time_signed, other) = match request_time {
                Some(t) => (*t, now.to_be_bytes()[2..].to_vec()),
                None => (now, Vec::new()),
            };
            let vars = tsig_variables(
                &key.name,
                key.algorithm.wire_name(),
                time_signed,
                *fudge,
                *error,
                &other,
            );
            let mac = sign_mac(key, msg, *original_id, Some(request_mac), &[], &vars);
            append_tsig(
                msg,
                &key.name,
                key.algorithm.wire_name(),
                time_signed,
                *fudge,
                &mac,
                *original_id,
                *error,
                &other,
            )?;
            Ok(mac)
        }
        ResponseTsig::Unsigned {
            key_name,
            algorithm,
            original_id,
            fudge,
            error,
        } => {
            append_tsig(
                msg,
                key_name,
                algorithm,
                now,
                *fudge,
                &[],
                *original_id,
                *error,
                &[],
            )?;
            Ok(Vec::new())
        }
    }
}

/// Signs a request (RFC 8945 §4.3.2 applied to a request: no prior MAC) by appending the
/// TSIG record. Returns the request MAC, which [`verify_response`] needs.
pub fn sign_request(
    msg: &mut Vec<u8>,
    key: &Key,
    fudge: u16,
    now: u64,
) -> Result<Vec<u8>, SignError> {
    if msg.len() < HEADER_LEN {
        return Err(SignError::Short);
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let vars = tsig_variables(&key.name, key.algorithm.wire_name(), now, fudge, 0, &[]);
    let parts: [&[u8]; 2] = [msg, &vars];
    let mac = key.algorithm.mac(&key.secret, &parts);
    append_tsig(
        msg,
        &key.name,
        key.algorithm.wire_name(),
        now,
        fudge,
        &mac,
        id,
        0,
        &[],
    )?;
    Ok(mac)
}

/// Why a client refuses a server's response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed TSIG in the response: {0}")]
    Malformed(Malformed),
    #[error("the response is not signed")]
    Unsigned,
    #[error("the response is signed with another key or algorithm")]
    WrongKey,
    #[error("the server refused our signature: TSIG error {}", tsig_error_name(*error))]
    ServerError {
        /// BADKEY, BADSIG (unsigned answers) or BADTIME, BADTRUNC (signed).
        error: u16,
        /// With BADTIME: the server's clock, from Other Data.
        server_time: Option<u64>,
    },
    #[error("the response's TSIG signature does not verify")]
    BadSig,
    #[error("the response was signed at {time_signed}, outside our time {now} ± {fudge}")]
    BadTime {
        time_signed: u64,
        now: u64,
        fudge: u16,
    },
    #[error("more than 99 unsigned messages in a row (RFC 8945 §5.3.1)")]
    TooManyUnsigned,
}

/// The name of a TSIG error code, as `dig` and nsupdate print it.
pub fn tsig_error_name(code: u16) -> String {
    Rcode(code)
        .tsig_mnemonic()
        .map_or_else(|| code.to_string(), str::to_string)
}

/// A response whose TSIG checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedResponse {
    /// The response MAC: the prior MAC of the next message of a stream.
    pub mac: Vec<u8>,
    pub time_signed: u64,
}

/// Checks the TSIG of the first (or only) response to a request we signed with `key`,
/// whose MAC was `request_mac` (RFC 8945 §5.3, client side of §5.2).
pub fn verify_response(
    msg: &[u8],
    key: &Key,
    request_mac: &[u8],
    now: u64,
) -> Result<VerifiedResponse, ResponseError> {
    let t = find_tsig(msg)
        .map_err(ResponseError::Malformed)?
        .ok_or(ResponseError::Unsigned)?;
    if !t.names_key(key) {
        return Err(ResponseError::WrongKey);
    }
    if t.mac.is_empty() && t.error != error_code::NOERROR {
        return Err(ResponseError::ServerError {
            error: t.error,
            server_time: None,
        });
    }
    if !check_mac(key, msg, &t, Some(request_mac), &[], &t.variables())
        .map_err(ResponseError::Malformed)?
    {
        return Err(ResponseError::BadSig);
    }
    if t.error != error_code::NOERROR {
        let server_time = (t.error == error_code::BADTIME)
            .then(|| Reader::new(t.other).u48().ok())
            .flatten();
        return Err(ResponseError::ServerError {
            error: t.error,
            server_time,
        });
    }
    if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
        return Err(ResponseError::BadTime {
            time_signed: t.time_signed,
            now,
            fudge: t.fudge,
        });
    }
    Ok(VerifiedResponse {
        mac: t.mac.to_vec(),
        time_signed: t.time_signed,
    })
}

/// The most messages of a stream that may go unsigned in a row (RFC 8945 §5.3.1).
pub const MAX_UNSIGNED_IN_A_ROW: usize = 99;

/// Signs the messages of a multi-message response such as AXFR (RFC 8945 §5.3.1).
///
/// The first message is signed like any response; each later signed message's MAC covers
/// the prior MAC, every message left unsigned since, this message and the timers only.
/// The first and last messages must be signed and no more than 99 may be skipped in a
/// row; [`StreamSigner::skip`] refuses a 100th.
#[derive(Debug, Clone)]
pub struct StreamSigner {
    key: Arc<Key>,
    prior_mac: Vec<u8>,
    original_id: u16,
    fudge: u16,
    first: bool,
    /// The unsigned messages since the last signed one, as sent.
    pending: Vec<u8>,
    skipped: usize,
}

impl StreamSigner {
    /// A signer for the answer to this request.
    pub fn new(request: &Verified) -> StreamSigner {
        StreamSigner {
            key: Arc::clone(&request.key),
            prior_mac: request.request_mac.clone(),
            original_id: request.original_id,
            fudge: request.fudge,
            first: true,
            pending: Vec::new(),
            skipped: 0,
        }
    }

    /// Signs the next message.
    pub fn sign(&mut self, msg: &mut Vec<u8>, now: u64) -> Result<(), SignError> {
        if self.first {
            let tsig = ResponseTsig::Signed {
                key: Arc::clone(&self.key),
                request_mac: std::mem::take(&mut self.prior_mac),
                original_id: self.original_id,
                fudge: self.fudge,
                error: error_code::NOERROR,
                request_time: None,
            };
            self.prior_mac = sign_response(msg, &tsig, now)?;
            self.first = false;
            return Ok(());
        }
        if msg.len() < HEADER_LEN {
            return Err(SignError::Short);
        }
        let mac = sign_mac(
            &self.key,
            msg,
            self.original_id,
            Some(&self.prior_mac),
            &self.pending,
            &tsig_timers(now, self.fudge),
        );
        append_tsig(
            msg,
            &self.key.name,
            self.key.algorithm.wire_name(),
            now,
            self.fudge,
            &mac,
            self.original_id,
            error_code::NOERROR,
            &[],
        )?;
        self.prior_mac = mac;
        self.pending.clear();
        self.skipped = 0;
        Ok(())
    }

    /// Sends the next message unsigned; its bytes go into the next MAC. Returns `false`
    /// (and takes nothing) when the message must be signed instead: it is the first, or
    /// 99 are already unsigned in a row.
    pub fn skip(&mut self, msg: &[u8]) -> bool {
        if self.first || self.skipped >= MAX_UNSIGNED_IN_A_ROW {
            return false;
        }
        self.pending.extend_from_slice(msg);
        self.skipped += 1;
        true
    }
}

/// Checks the messages of a multi-message response (RFC 8945 §5.3.1), client side.
#[derive(Debug, Clone)]
pub struct StreamVerifier {
    key: Key,
    prior_mac: Vec<u8>,
    first: bool,
    pending: Vec<u8>,
    skipped: usize,
}

impl StreamVerifier {
    /// A verifier for the answer to a request signed with `key` whose MAC was
    /// `request_mac`.
    pub fn new(key: &Key, request_mac: &[u8]) -> StreamVerifier {
        StreamVerifier {
            key: key.clone(),
            prior_mac: request_mac.to_vec(),
            first: true,
            pending: Vec::new(),
            skipped: 0,
        }
    }

    /// Checks the next message. `Ok(true)`: signed and good; `Ok(false)`: unsigned,
    /// accepted for now (the next signed message covers it). The caller must see a signed
    /// message last.
    pub fn verify(&mut self, msg: &[u8], now: u64) -> Result<bool, ResponseError> {
        if self.first {
            let v = verify_response(msg, &self.key, &self.prior_mac, now)?;
            self.prior_mac = v.mac;
            self.first = false;
            return Ok(true);
        }
        let Some(t) = find_tsig(msg).map_err(ResponseError::Malformed)? else {
            if self.skipped >= MAX_UNSIGNED_IN_A_ROW {
                return Err(ResponseError::TooManyUnsigned);
            }
            self.pending.extend_from_slice(msg);
            self.skipped += 1;
            return Ok(false);
        };
        if !t.names_key(&self.key) {
            return Err(ResponseError::WrongKey);
        }
        let timers = tsig_timers(t.time_signed, t.fudge);
        if !check_mac(
            &self.key,
            msg,
            &t,
            Some(&self.prior_mac),
            &self.pending,
            &timers,
        )
        .map_err(ResponseError::Malformed)?
        {
            return Err(ResponseError::BadSig);
        }
        if now.abs_diff(t.time_signed) > u64::from(t.fudge) {
            return Err(ResponseError::BadTime {
                time_signed: t.time_signed,
                now,
                fudge: t.fudge,
            });
        }
        self.prior_mac = t.mac.to_vec();
        self.pending.clear();
        self.skipped = 0;
        Ok(true)
    }
}

/// Entry point for a fuzz target: runs every message reader on arbitrary bytes. It must
/// return, never panic.
pub fn fuzz_verify(data: &[u8]) {
    let mut keys = KeyRing::new();
    let key = Key::new(
        &Name::parse("k.", None).expect("a constant valid name"),
        Algorithm::HmacSha256,
        vec![7; 32],
    );
    let _ = keys.insert(
        key.clone(),
        Location {
            source: "fuzz".into(),
            line: None,
        },
    );
    let _ = verify_request(data, &keys, 0);
    let _ = verify_response(data, &key, &[1; 32], 0);
    let _ = StreamVerifier::new(&key, &[]).verify(data, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Keys exactly as `tsig-keygen` (BIND 9.18) printed them, one per algorithm, plus
    /// the comment styles named.conf allows.
    const KEYGEN_FILE: &str = r#"// made with tsig-keygen -a ALG key-ALG.example
# and tsig-keygen update-key
key "key-hmac-sha1.example" {
	algorithm hmac-sha1;
	secret "rCtWrYB0yDtOXafVni48zC7l+vs=";
};
key "key-hmac-sha224.example" {
	algorithm hmac-sha224;
	secret "DTVIeSkz4PaS52o8MgexFYSTK9GZym2mIYKXUQ==";
};
/* a block
   comment */
key "key-hmac-sha256.example" {
	algorithm hmac-sha256;
	secret "2Coy5ah5FxTdoEYIqle8xjD7wP/ypt67Degk9Vqdxc4=";
};
key "key-hmac-sha384.example" {
	algorithm hmac-sha384;
	secret "zAqcTbFsGwMgBDDrD0xTx8rS8TjgptoK28ij3X0qZMggy2R9fLivs5BCE1BFhxwh";
};
key "key-hmac-sha512.example" { algorithm hmac-sha512; secret "GLTd0tCEPgqwG2fwbZ6pyilOXgThNzz2sM55PAsrV+I2ElgXTjxGXOedM2CiDcgxSlXzbmRBNIhEIg5rG/FcPQ=="; };
key "update-key" {
	algorithm HMAC-SHA256.;   // Kea's spelling, with the trailing dot
	secret "2VweQ/BPa6R2A86RzwB3FOqCKPnGWAX1/Cy9RnV2ZeA=";
};
"#;

    const UPDATE_SECRET: &str = "2VweQ/BPa6R2A86RzwB3FOqCKPnGWAX1/Cy9RnV2ZeA=";

    fn ring() -> KeyRing {
        let mut r = KeyRing::new();
        assert_eq!(r.load_text(KEYGEN_FILE, "keys.conf").unwrap(), 6);
        r
    }

    fn name(s: &str) -> Name {
        Name::parse(s, None).unwrap()
    }

    fn key(n: &str) -> Arc<Key> {
        Arc::clone(ring().get(&name(n)).unwrap())
    }

    /// A query for `qname`/SOA with id 0x1234.
    fn query(qname: &str, opcode: u8) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, opcode << 3, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name(qname).as_wire());
        m.extend_from_slice(&rtype_soa());
        m
    }

    fn rtype_soa() -> [u8; 4] {
        [0, 6, 0, 1]
    }

    /// The response header and question for `req`: QR set, counts for the question only.
    fn response_to(req: &[u8], rcode: u16) -> Vec<u8> {
        let qend = {
            let mut r = Reader::at(req, HEADER_LEN);
            r.question().unwrap();
            r.pos()
        };
        let mut r = req[..qend].to_vec();
        r[2] |= 0x84; // QR, AA
        r[3] = (r[3] & 0xf0) | (rcode as u8 & 0xf);
        r[6..12].copy_from_slice(&[0; 6]);
        r
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn reads_tsig_keygen_files() {
        let r = ring();
        assert_eq!(r.len(), 6);
        for (n, alg, len) in [
            ("key-hmac-sha1.example.", Algorithm::HmacSha1, 20),
            ("key-hmac-sha224.example.", Algorithm::HmacSha224, 28),
            ("key-hmac-sha256.example.", Algorithm::HmacSha256, 32),
            ("key-hmac-sha384.example.", Algorithm::HmacSha384, 48),
            ("KEY-hmac-SHA512.Example.", Algorithm::HmacSha512, 64),
            ("Update-Key.", Algorithm::HmacSha256, 32),
        ] {
            let k = r.get(&name(n)).unwrap_or_else(|| panic!("{n}"));
            assert_eq!((k.algorithm, k.secret.len()), (alg, len), "{n}");
            assert!(!k.allow_truncated_mac);
        }
        assert_eq!(
            r.location(&name("update-key.")).unwrap().to_string(),
            "keys.conf:22"
        );
        // The secret stays out of logs.
        let dbg = format!("{:?}", r.get(&name("update-key.")).unwrap());
        assert!(
            !dbg.contains("2VweQ") && dbg.contains("<32 octets>"),
            "{dbg}"
        );
    }

    #[test]
    fn key_file_errors_name_file_line_and_key() {
        let err = |text: &str| parse_key_file(text, "k.conf").unwrap_err().to_string();
        assert_eq!(
            err("key \"old\" {\n\talgorithm hmac-md5;\n\tsecret \"JFT0JJqfUqipUxgzj9fkYw==\";\n};\n"),
            "k.conf:2: key \"old\": unsupported algorithm \"hmac-md5\"; musterd supports \
             hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384 and hmac-sha512 (make a new \
             key with `tsig-keygen -a hmac-sha256 old`)"
        );
        assert_eq!(
            err("key k {\n algorithm hmac-sha256;\n secret \"not*base64\";\n};"),
            "k.conf:3: key \"k\": the secret is not valid base64 (Invalid symbol 42, offset 3.)"
        );
        assert_eq!(
            err("\n\nkey k { algorithm hmac-sha256; };"),
            "k.conf:3: key \"k\" has no secret statement"
        );
        assert_eq!(
            err("key k { secret \"AAAA\"; };"),
            "k.conf:1: key \"k\" has no algorithm statement"
        );
        assert_eq!(
            err("key k { algorithm hmac-sha256; secret \"AAAA\"; };\n\
                 key K. { algorithm hmac-sha256; secret \"AAAA\"; };"),
            "k.conf:2: key \"K.\" is already defined at k.conf:1"
        );
        assert_eq!(
            err("key k { algorithm hmac-sha256; secret \"AAAA\"; }"),
            "k.conf:1: the file ends where `;` was expected"
        );
        assert_eq!(
            err("key k { algorithm hmac-sha256 secret \"AAAA\"; };"),
            "k.conf:1: expected `;` after `algorithm hmac-sha256`, found `secret`"
        );
        assert_eq!(
            err("key k { algorithm hmac-sha256; secret \"\"; };"),
            "k.conf:1: key \"k\": the secret is not valid base64 (it is empty)"
        );
        assert_eq!(
            err("options { };"),
            "k.conf:1: expected a `key` statement, found `options`"
        );
        assert_eq!(
            err("key k { algorithm hmac-sha256; secret \"AAAA\"; port 53; };"),
            "k.conf:1: unknown statement `port` in key \"k\" (a key has only `algorithm` and `secret`)"
        );
        assert_eq!(
            err("/* never closed\nkey k {};"),
            "k.conf:1: comment `/*` is never closed"
        );
        // A duplicate across files is caught by the ring.
        let mut r = ring();
        let e = r
            .load_text(
                "key UPDATE-KEY { algorithm hmac-sha1; secret \"AAAA\"; };",
                "b.conf",
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "b.conf:1: key \"update-key\" is already defined at keys.conf:22"
        );
        let e = KeyRing::new()
            .load_file(Path::new("/nonexistent/k.conf"))
            .unwrap_err();
        assert!(e
            .to_string()
            .starts_with("cannot read key file /nonexistent/k.conf"));
    }

    #[test]
    fn inline_config_keys() {
        let k = Key::from_config("update-key", "HMAC-SHA256", UPDATE_SECRET).unwrap();
        assert_eq!(&k, &*key("update-key."));
        let k = Key::from_config("Update-Key.", "hmac-sha256.", UPDATE_SECRET).unwrap();
        assert_eq!(k.name, name("update-key."));
        let e = Key::from_config("k", "hmac-md5", "AAAA").unwrap_err();
        assert!(matches!(e, KeyError::UnknownAlgorithm { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with("the config: key \"k\": unsupported algorithm"));
        assert!(Key::from_config("a..b", "hmac-sha256", "AAAA").is_err());
    }

    /// HMAC known answers: RFC 4231 §4.3 test case 2 for SHA-2, RFC 2202 §3 for SHA-1.
    #[test]
    fn hmac_known_answers() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let data: [&[u8]; 2] = [b"what do ya ", b"want for nothing?"];
        for (alg, want) in [
            (
                Algorithm::HmacSha1,
                "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
            ),
            (
                Algorithm::HmacSha224,
                "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
            ),
            (
                Algorithm::HmacSha256,
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                Algorithm::HmacSha384,
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
                 8e2240ca5e69e2c78b3239ecfab21649",
            ),
            (
                Algorithm::HmacSha512,
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ] {
            let want = hex(want);
            assert_eq!(alg.mac(b"Jefe", &data), want, "{alg}");
            assert_eq!(alg.mac_len(), want.len());
            assert!(alg.verify(b"Jefe", &data, &want));
            assert!(alg.verify(b"Jefe", &data, &want[..alg.min_mac_len()]));
            assert!(!alg.verify(b"Jeff", &data, &want));
            assert!(!alg.verify(b"Jefe", &data, &[]));
        }
    }

    #[test]
    fn algorithm_names() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_text(a.name()), Some(a));
            assert_eq!(Algorithm::from_wire_name(a.wire_name()), Some(a));
            assert_eq!(
                name(a.name()).as_wire(),
                a.wire_name(),
                "wire name of {a} matches its text"
            );
        }
        assert_eq!(
            Algorithm::from_text("HMAC-SHA384"),
            Some(Algorithm::HmacSha384)
        );
        assert_eq!(Algorithm::from_text("hmac-md5"), None);
        assert_eq!(Algorithm::from_text("hmac-md5.sig-alg.reg.int."), None);
        assert_eq!(
            Algorithm::from_wire_name(b"\x0bHMAC-SHA256\x00"),
            Some(Algorithm::HmacSha256)
        );
    }

    #[test]
    fn request_and_response_round_trip_for_every_algorithm() {
        let r = ring();
        let t = 1_700_000_000;
        for a in Algorithm::ALL {
            let k = key(&format!("key-{}.example.", a));
            let mut req = query("example.", 5);
            let unsigned_len = req.len();
            let mac = sign_request(&mut req, &k, DEFAULT_FUDGE, t).unwrap();
            assert_eq!(mac.len(), a.mac_len());
            assert_eq!(req[11], 1, "ARCOUNT counts the TSIG");
            let v = verify_request(&req, &r, t + 10).unwrap().unwrap();
            assert_eq!(v.key.name, k.name);
            assert_eq!(v.request_mac, mac);
            assert_eq!((v.time_signed, v.fudge, v.original_id), (t, 300, 0x1234));

            let tsig = v.response();
            let mut resp = response_to(&req[..unsigned_len], 0);
            let before = resp.len();
            sign_response(&mut resp, &tsig, t + 11).unwrap();
            assert_eq!(resp.len() - before, tsig.record_len());
            let vr = verify_response(&resp, &k, &mac, t + 12).unwrap();
            assert_eq!(vr.time_signed, t + 11);
            // The response MAC chains the request MAC: another request MAC fails.
            assert_eq!(
                verify_response(&resp, &k, &[0; 32], t + 12).unwrap_err(),
                ResponseError::BadSig
            );
        }
        // Unsigned requests are simply unsigned.
        assert!(verify_request(&query("example.", 0), &r, t)
            .unwrap()
            .is_none());
    }

    fn signed_update(key_name: &str, now: u64) -> (Vec<u8>, Vec<u8>) {
        let mut req = query("example.", 5);
        let mac = sign_request(&mut req, &key(key_name), DEFAULT_FUDGE, now).unwrap();
        (req, mac)
    }

    #[test]
    fn rfc8945_check_order_and_error_responses() {
        let r = ring();
        let t = 1_700_000_000;
        let k = key("update-key.");

        // BADKEY: a key we do not know, answered unsigned with its names echoed.
        let mut req = query("example.", 5);
        let stranger = Key::new(&name("stranger."), Algorithm::HmacSha256, vec![1; 32]);
        let mac = sign_request(&mut req, &stranger, DEFAULT_FUDGE, t).unwrap();
        let e = verify_request(&req, &r, t).unwrap_err();
        assert_eq!((e.rcode(), e.tsig_error()), (9, Some(error_code::BADKEY)));
        let mut resp = response_to(&req, e.rcode());
        assert!(sign_response(&mut resp, &e.response().unwrap(), t)
            .unwrap()
            .is_empty());
        assert_eq!(
            verify_response(&resp, &stranger, &mac, t).unwrap_err(),
            ResponseError::ServerError {
                error: error_code::BADKEY,
                server_time: None
            }
        );

        // BADKEY also for a known key name with another algorithm (RFC 8945 §5.2.1).
        let mut req = query("example.", 5);
        let other_alg = Key::new(
            &name("update-key."),
            Algorithm::HmacSha512,
            k.secret.clone(),
        );
        sign_request(&mut req, &other_alg, DEFAULT_FUDGE, t).unwrap();
        assert_eq!(
            verify_request(&req, &r, t).unwrap_err().tsig_error(),
            Some(error_code::BADKEY)
        );

        // BADSIG: right key, wrong secret; answered unsigned.
        let mut req = query("example.", 5);
        let wrong = Key::new(&name("update-key."), Algorithm::HmacSha256, vec![9; 32]);
        let mac = sign_request(&mut req, &wrong, DEFAULT_FUDGE, t).unwrap();
        let e = verify_request(&req, &r, t).unwrap_err();
        assert_eq!((e.rcode(), e.tsig_error()), (9, Some(error_code::BADSIG)));
        let mut resp = response_to(&req, e.rcode());
        sign_response(&mut resp, &e.response().unwrap(), t).unwrap();
        assert_eq!(
            verify_response(&resp, &wrong, &mac, t).unwrap_err(),
            ResponseError::ServerError {
                error: error_code::BADSIG,
                server_time: None
            }
        );

        // A tampered message is BADSIG too, but a changed ID is not: the MAC covers the
        // Original ID (RFC 8945 §4.3.1), which a forwarder may not keep.
        let (req, _) = signed_update("update-key.", t);
        let mut tampered = req.clone();
        tampered[HEADER_LEN + 2] ^= 1;
        assert_eq!(
            verify_request(&tampered, &r, t).unwrap_err().tsig_error(),
            Some(error_code::BADSIG)
        );
        let mut new_id = req.clone();
        new_id[0] = 0x77;
        assert_eq!(
            verify_request(&new_id, &r, t).unwrap().unwrap().original_id,
            0x1234
        );

        // Time: exactly ±fudge passes, one second more is BADTIME, answered signed with
        // our time in Other Data and the request's time as Time Signed.
        for (now, ok) in [
            (t + 300, true),
            (t - 300, true),
            (t + 301, false),
            (t - 301, false),
        ] {
            let (req, mac) = signed_update("update-key.", t);
            match verify_request(&req, &r, now) {
                Ok(Some(_)) => assert!(ok, "{now}"),
                Err(e) => {
                    assert!(!ok, "{now}");
                    assert_eq!((e.rcode(), e.tsig_error()), (9, Some(error_code::BADTIME)));
                    let mut resp = response_to(&req, e.rcode());
                    sign_response(&mut resp, &e.response().unwrap(), now).unwrap();
                    // The client's clock is `t`: the signed error verifies and carries ours.
                    assert_eq!(
                        verify_response(&resp, &k, &mac, t).unwrap_err(),
                        ResponseError::ServerError {
                            error: error_code::BADTIME,
                            server_time: Some(now)
                        }
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        // BADTIME is checked after the MAC: a wrong secret at a wrong time is BADSIG.
        let mut req = query("example.", 5);
        sign_request(&mut req, &wrong, DEFAULT_FUDGE, t).unwrap();
        assert_eq!(
            verify_request(&req, &r, t + 1000).unwrap_err().tsig_error(),
            Some(error_code::BADSIG)
        );
    }

    /// `msg` signed with `key` but with the MAC cut to `len` octets.
    fn signed_truncated(key: &Key, len: usize, now: u64) -> Vec<u8> {
        let mut msg = query("example.", 5);
        let vars = tsig_variables(&key.name, key.algorithm.wire_name(), now, 300, 0, &[]);
        let mac = key.algorithm.mac(&key.secret, &[&msg, &vars]);
        append_tsig(
            &mut msg,
            &key.name,
            key.algorithm.wire_name(),
            now,
            300,
            &mac[..len.min(mac.len())],
            0x1234,
            0,
            &[],
        )
        .unwrap();
        msg
    }

    #[test]
    fn truncated_macs() {
        let t = 1_700_000_000;
        let mut r = ring();
        let k = key("update-key.");
        // Within RFC 8945 §5.2.2.1 but not allowed by the key: BADTRUNC, signed.
        let req = signed_truncated(&k, 16, t);
        let e = verify_request(&req, &r, t).unwrap_err();
        assert_eq!((e.rcode(), e.tsig_error()), (9, Some(error_code::BADTRUNC)));
        assert!(matches!(e.response(), Some(ResponseTsig::Signed { .. })));
        // Shorter than max(10, 32/2): FORMERR, as is a MAC longer than the hash.
        let e = verify_request(&signed_truncated(&k, 15, t), &r, t).unwrap_err();
        assert_eq!((e.rcode(), e.tsig_error()), (1, None));
        assert!(e.response().is_none());
        let e = verify_request(&signed_truncated(&k, 0, t), &r, t).unwrap_err();
        assert_eq!(e.rcode(), 1);
        let mut long = signed_truncated(&k, 32, t);
        // Turn the 32-octet MAC into a 33-octet one by rebuilding the record.
        let start = find_tsig(&long).unwrap().unwrap().start;
        let mut mac = find_tsig(&long).unwrap().unwrap().mac.to_vec();
        mac.push(0);
        long.truncate(start);
        long[11] -= 1;
        append_tsig(
            &mut long,
            &k.name,
            k.algorithm.wire_name(),
            t,
            300,
            &mac,
            0x1234,
            0,
            &[],
        )
        .unwrap();
        assert_eq!(
            verify_request(&long, &r, t).unwrap_err().to_string(),
            "malformed TSIG: the MAC is longer than the algorithm's output"
        );
        // A key that allows truncation accepts it; a wrong truncated MAC is still BADSIG.
        let mut allowing = (*k).clone();
        allowing.allow_truncated_mac = true;
        r = KeyRing::new();
        r.insert(
            allowing,
            Location {
                source: "t".into(),
                line: None,
            },
        )
        .unwrap();
        assert!(verify_request(&req, &r, t).unwrap().is_some());
        let mut bad = req.clone();
        let n = bad.len();
        bad[n - 8] ^= 1; // the last MAC octet
        assert_eq!(
            verify_request(&bad, &r, t).unwrap_err().tsig_error(),
            Some(error_code::BADSIG)
        );
    }

    #[test]
    fn placement_and_format_are_formerr() {
        let r = ring();
        let t = 1_700_000_000;
        let (req, _) = signed_update("update-key.", t);
        let tsig_start = find_tsig(&req).unwrap().unwrap().start;
        let tsig_rr = req[tsig_start..].to_vec();
        let a_rr: Vec<u8> = [
            &[0xc0, 12][..],
            &[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1],
        ]
        .concat();
        let formerr = |m: &[u8]| match verify_request(m, &r, t) {
            Err(TsigError::Malformed(why)) => why,
            other => panic!("{other:?}"),
        };

        // Not last: an A record after it in the additional section.
        let mut m = req.clone();
        m.extend_from_slice(&a_rr);
        m[11] += 1;
        assert_eq!(formerr(&m), Malformed::NotLast);
        // In the answer section instead of additional.
        let mut m = req[..tsig_start].to_vec();
        m[11] = 0;
        m[7] = 1;
        m.extend_from_slice(&tsig_rr);
        assert_eq!(formerr(&m), Malformed::NotLast);
        // Two TSIG records.
        let mut m = req.clone();
        m.extend_from_slice(&tsig_rr);
        m[11] += 1;
        assert_eq!(formerr(&m), Malformed::Several);
        // Class IN (BIND's tsigwrongclass), TTL not 0.
        let owner_len = name("update-key.").wire_len();
        let mut m = req.clone();
        m[tsig_start + owner_len + 3] = 1;
        assert_eq!(formerr(&m), Malformed::WrongClass);
        let mut m = req.clone();
        m[tsig_start + owner_len + 7] = 1;
        assert_eq!(formerr(&m), Malformed::NonZeroTtl);
        // Bytes after the TSIG record.
        let mut m = req.clone();
        m.push(0);
        assert_eq!(formerr(&m), Malformed::TrailingData);
        // Counts larger than the message, and a short header.
        let mut m = req.clone();
        m[7] = 200;
        assert_eq!(formerr(&m), Malformed::Truncated);
        assert_eq!(formerr(&req[..5]), Malformed::Short);
        // An rdata length that disagrees with the fields.
        let mut m = req.clone();
        m[tsig_start + owner_len + 9] -= 1;
        m.pop();
        assert_eq!(formerr(&m), Malformed::BadRdata);
    }

    #[test]
    fn compressed_key_name_is_read() {
        // A key named like the zone: BIND compresses the TSIG owner into a pointer.
        let t = 1_700_000_000;
        let mut r = KeyRing::new();
        let k = Key::new(&name("example."), Algorithm::HmacSha256, vec![5; 32]);
        r.insert(
            k.clone(),
            Location {
                source: "t".into(),
                line: None,
            },
        )
        .unwrap();
        let mut req = query("example.", 5);
        sign_request(&mut req, &k, 300, t).unwrap();
        let start = find_tsig(&req).unwrap().unwrap().start;
        let rest = req[start + k.name.wire_len()..].to_vec();
        req.truncate(start);
        req.extend_from_slice(&[0xc0, 12]);
        req.extend_from_slice(&rest);
        assert!(verify_request(&req, &r, t).unwrap().is_some());
        // A pointer loop in the owner is FORMERR.
        let n = req.len();
        req[start..start + 2].copy_from_slice(&[0xc0, (start as u8)]);
        let _ = n;
        assert!(matches!(
            verify_request(&req, &r, t),
            Err(TsigError::Malformed(Malformed::Truncated))
        ));
    }

    #[test]
    fn stream_signing_chains_macs_and_counts_unsigned() {
        let t = 1_700_000_000;
        let r = ring();
        let k = key("key-hmac-sha384.example.");
        let mut req = query("example.", 0);
        let req_mac = sign_request(&mut req, &k, 300, t).unwrap();
        let v = verify_request(&req, &r, t).unwrap().unwrap();
        let mut signer = StreamSigner::new(&v);
        let mut verifier = StreamVerifier::new(&k, &req_mac);
        // A transfer message: no question, one A record in the answer.
        let msg = |i: u8| {
            let mut m = vec![0x12, 0x34, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0];
            m.extend_from_slice(&[0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, i]);
            m
        };
        let first_unsigned = msg(0);
        assert!(
            !signer.skip(&first_unsigned),
            "the first message must be signed"
        );
        let plan = [true, false, false, true, false, true];
        let mut sent = Vec::new();
        for (i, &sign) in plan.iter().enumerate() {
            let mut m = msg(i as u8);
            if sign {
                signer.sign(&mut m, t + i as u64).unwrap();
            } else {
                assert!(signer.skip(&m));
            }
            sent.push(m);
        }
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(verifier.verify(m, t + 6).unwrap(), plan[i], "message {i}");
        }
        // A change in an unsigned message breaks the next signed one.
        let mut verifier = StreamVerifier::new(&k, &req_mac);
        let mut forged = sent.clone();
        forged[1][HEADER_LEN + 14] ^= 1;
        assert!(verifier.verify(&forged[0], t).unwrap());
        assert!(!verifier.verify(&forged[1], t).unwrap());
        assert!(!verifier.verify(&forged[2], t).unwrap());
        assert_eq!(
            verifier.verify(&forged[3], t).unwrap_err(),
            ResponseError::BadSig
        );

        // At most 99 unsigned in a row, on both sides.
        let mut signer = StreamSigner::new(&v);
        let mut first = msg(0);
        signer.sign(&mut first, t).unwrap();
        let mut verifier = StreamVerifier::new(&k, &req_mac);
        verifier.verify(&first, t).unwrap();
        for _ in 0..MAX_UNSIGNED_IN_A_ROW {
            assert!(signer.skip(&msg(1)));
            assert!(!verifier.verify(&msg(1), t).unwrap());
        }
        assert!(!signer.skip(&msg(1)));
        assert_eq!(
            verifier.verify(&msg(1), t).unwrap_err(),
            ResponseError::TooManyUnsigned
        );
    }

    /// Catalogue rows 25–26: random and mutated messages, and random TSIG field values,
    /// give FORMERR or NOTAUTH (or "unsigned"), never a panic and never acceptance of a
    /// changed message.
    #[test]
    fn random_and_mutated_messages_never_panic() {
        let r = ring();
        let t = 1_700_000_000;
        let (good, _) = signed_update("update-key.", t);
        let mut x: u64 = 0x853c_49e6_748f_ea9b;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut accepted = 0;
        for i in 0..10_000 {
            let mut m = match i % 3 {
                0 => (0..(next() % 300))
                    .map(|_| next() as u8)
                    .collect::<Vec<u8>>(),
                _ => good.clone(),
            };
            for _ in 0..1 + next() % 3 {
                if m.is_empty() {
                    break;
                }
                match next() % 4 {
                    0 => {
                        let at = next() as usize % m.len();
                        let v = next() as u8;
                        m[at] = v;
                    }
                    1 => {
                        let keep = next() as usize % m.len();
                        m.truncate(keep);
                    }
                    2 => {
                        m.push(next() as u8);
                    }
                    _ => {
                        // Random TSIG fields after the algorithm name (time, fudge, MAC
                        // size, MAC, original ID, error, other).
                        let start = good.len() - 60;
                        if m.len() > start {
                            let at = start + next() as usize % (m.len() - start);
                            let v = next() as u8;
                            m[at] = v;
                        }
                    }
                }
            }
            // The ID is the one part the MAC does not cover (the Original ID stands in).
            let changed = m.len() != good.len() || m[2..] != good[2..];
            match verify_request(&m, &r, t) {
                Ok(Some(_)) => {
                    accepted += 1;
                    assert!(!changed || i % 3 == 0, "a changed message verified: {m:?}");
                }
                Ok(None) => {}
                Err(e) => assert!(matches!(e.rcode(), 1 | 9)),
            }
            fuzz_verify(&m);
        }
        assert!(accepted < 10_000);
    }

    // --- Interoperability with hickory-proto's TSIG (an independent implementation) ----

    mod hickory {
        use super::*;
        use hickory_proto::op::{Message, MessageType, OpCode, Query};
        use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
        use hickory_proto::rr::{Name as HName, RecordType, TSigResponseContext, TSigner};

        pub(super) fn algorithms() -> [(Algorithm, TsigAlgorithm); 3] {
            // hickory 0.26 implements only these three (see its `TsigAlgorithm::supported`).
            [
                (Algorithm::HmacSha256, TsigAlgorithm::HmacSha256),
                (Algorithm::HmacSha384, TsigAlgorithm::HmacSha384),
                (Algorithm::HmacSha512, TsigAlgorithm::HmacSha512),
            ]
        }

        fn signer(k: &Key, alg: TsigAlgorithm) -> TSigner {
            TSigner::new(
                k.secret.clone(),
                alg,
                HName::from_ascii(k.name.to_string()).unwrap(),
                300,
            )
            .unwrap()
        }

        fn hickory_query(id: u16, op: OpCode) -> Message {
            let mut m = Message::new(id, MessageType::Query, op);
            m.add_query(Query::query(
                HName::from_ascii("example.").unwrap(),
                RecordType::SOA,
            ));
            m
        }

        #[test]
        fn hickory_signed_request_verifies_and_our_response_verifies_in_hickory() {
            let r = ring();
            let t = now();
            for (ours, theirs) in algorithms() {
                let k = key(&format!("key-{ours}.example."));
                let mut q = hickory_query(0x4321, OpCode::Update);
                let verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap();
                let bytes = q.to_vec().unwrap();
                let v = verify_request(&bytes, &r, t)
                    .unwrap_or_else(|e| panic!("{ours}: {e}"))
                    .unwrap();
                assert_eq!(v.original_id, 0x4321);

                // Our signed answer, checked by hickory's client-side verifier.
                let unsigned_end = find_tsig(&bytes).unwrap().unwrap().start;
                let mut resp = response_to(&bytes[..unsigned_end], 0);
                sign_response(&mut resp, &v.response(), t).unwrap();
                verifier
                    .unwrap()
                    .verify(&resp)
                    .unwrap_or_else(|e| panic!("{ours}: hickory refused our response: {e}"));

                // A changed secret on our side: hickory must refuse.
                let mut q = hickory_query(0x4321, OpCode::Update);
                let verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap();
                let mut bad = v.response();
                if let ResponseTsig::Signed { key, .. } = &mut bad {
                    let mut kk = (**key).clone();
                    kk.secret[0] ^= 1;
                    *key = Arc::new(kk);
                }
                let mut resp = response_to(&bytes[..unsigned_end], 0);
                sign_response(&mut resp, &bad, t).unwrap();
                assert!(verifier.unwrap().verify(&resp).is_err());
            }
        }

        #[test]
        fn our_signed_request_verifies_in_hickory_and_its_response_verifies_here() {
            let t = now();
            for (ours, theirs) in algorithms() {
                let k = key(&format!("key-{ours}.example."));
                let s = signer(&k, theirs);
                let mut req = query("example.", 5);
                let mac = sign_request(&mut req, &k, 300, t).unwrap();
                let (their_mac, time, _) = s
                    .verify_message_byte(&req, None, true)
                    .unwrap_or_else(|e| panic!("{ours}: hickory refused our request: {e}"));
                assert_eq!((their_mac, time), (mac.clone(), t));

                // hickory's server-side response signer, checked by our client side.
                let mut resp = Message::response(0x1234, OpCode::Update);
                resp.add_query(Query::query(
                    HName::from_ascii("example.").unwrap(),
                    RecordType::SOA,
                ));
                let unsigned = resp.to_vec().unwrap();
                let ctx = TSigResponseContext::new(0x1234, t, s.clone(), mac.clone(), None);
                resp.set_signature(ctx.sign(&unsigned).unwrap());
                let bytes = resp.to_vec().unwrap();
                verify_response(&bytes, &k, &mac, t)
                    .unwrap_or_else(|e| panic!("{ours}: hickory's response refused: {e}"));

                // hickory's unsigned BADSIG answer reads as the server's BADSIG.
                let mut resp = Message::response(0x1234, OpCode::Update);
                let ctx = TSigResponseContext::bad_signature(0x1234, t, s.clone());
                let unsigned = resp.to_vec().unwrap();
                resp.set_signature(ctx.sign(&unsigned).unwrap());
                assert_eq!(
                    verify_response(&resp.to_vec().unwrap(), &k, &mac, t).unwrap_err(),
                    ResponseError::ServerError {
                        error: error_code::BADSIG,
                        server_time: None
                    }
                );
            }
        }

        #[test]
        fn our_stream_verifies_in_hickory() {
            // hickory's verifier expects every message of a stream signed (prior MAC +
            // message + timers, RFC 8945 §5.3.1); ours can sign that way.
            let r = ring();
            let t = now();
            for (ours, theirs) in algorithms() {
                let k = key(&format!("key-{ours}.example."));
                let mut q = hickory_query(7, OpCode::Query);
                let mut verifier = q.finalize(&signer(&k, theirs.clone()), t).unwrap().unwrap();
                let bytes = q.to_vec().unwrap();
                let v = verify_request(&bytes, &r, t).unwrap().unwrap();
                let mut stream = StreamSigner::new(&v);
                let unsigned_end = find_tsig(&bytes).unwrap().unwrap().start;
                for i in 0..3u64 {
                    let mut m = response_to(&bytes[..unsigned_end], 0);
                    if i > 0 {
                        // Later messages of a transfer have no question.
                        m.truncate(HEADER_LEN);
                        m[4..6].copy_from_slice(&[0, 0]);
                    }
                    stream.sign(&mut m, t + i).unwrap();
                    verifier
                        .verify(&m)
                        .unwrap_or_else(|e| panic!("{ours}: message {i}: {e}"));
                }
            }
        }
    }

    // --- The real clients: dig and nsupdate from BIND 9.18 -------------------------------

    /// A one-socket DNS responder on 127.0.0.1 that answers with our TSIG code: verify,
    /// then sign (or, when `forge` is set, sign and then spoil the MAC).
    struct Responder {
        addr: std::net::SocketAddr,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<Vec<String>>>,
    }

    impl Responder {
        fn start(keys: KeyRing, clock_offset: i64, forge: bool) -> Responder {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let addr = sock.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let req = &buf[..n];
                    let now = (now() as i64 + clock_offset) as u64;
                    let verdict = verify_request(req, &keys, now);
                    seen.push(match &verdict {
                        Ok(Some(_)) => "signed".to_string(),
                        Ok(None) => "unsigned".to_string(),
                        Err(e) => e.to_string(),
                    });
                    let Some(end) = find_tsig(req).ok().flatten().map(|t| t.start) else {
                        continue;
                    };
                    let (rcode, tsig) = match verdict {
                        Ok(Some(v)) => (0, Some(v.response())),
                        Ok(None) => (5, None),
                        Err(e) => (e.rcode(), e.response()),
                    };
                    let mut resp = response_to(&req[..end], rcode);
                    if req[2] >> 3 & 0xf == 0 && rcode == 0 {
                        // A TXT answer for queries, its owner a pointer to the question.
                        resp.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 0, 3, 2]);
                        resp.extend_from_slice(b"ok");
                        resp[7] = 1;
                    }
                    if let Some(tsig) = tsig {
                        let mac = sign_response(&mut resp, &tsig, now).unwrap();
                        if forge && !mac.is_empty() {
                            let n = resp.len();
                            // The MAC ends 6 octets before the end (original ID, error,
                            // other length follow it).
                            resp[n - 7] ^= 0x5a;
                        }
                    }
                    sock.send_to(&resp, peer).unwrap();
                }
                seen
            });
            Responder {
                addr,
                stop,
                thread: Some(thread),
            }
        }

        fn finish(mut self) -> Vec<String> {
            self.stop.store(true, Ordering::Relaxed);
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Responder {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a BIND client is installed; under CI its absence is a failure.
    fn have(program: &str) -> bool {
        let found = Command::new(program)
            .arg("-h")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{program} is required under CI (Debian package bind9-dnsutils)"
            );
            eprintln!("skipped: {program} is not installed (Debian package bind9-dnsutils)");
        }
        found
    }

    fn dig(addr: std::net::SocketAddr, y: &str) -> String {
        let out = Command::new("dig")
            .args([
                "-p",
                &addr.port().to_string(),
                "@127.0.0.1",
                "-y",
                y,
                "+tries=1",
                "+time=2",
                "+norec",
                "example.",
                "SOA",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    #[test]
    fn dig_accepts_our_signature_and_notices_a_forged_one() {
        if !have("dig") {
            return;
        }
        for alg in Algorithm::ALL {
            let k = key(&format!("key-{alg}.example."));
            let secret = base64::engine::general_purpose::STANDARD.encode(&k.secret);
            let y = format!("{alg}:key-{alg}.example:{secret}");

            let good = Responder::start(ring(), 0, false);
            let out = dig(good.addr, &y);
            assert_eq!(good.finish(), vec!["signed"], "{alg}: {out}");
            assert!(out.contains("status: NOERROR"), "{alg}: {out}");
            assert!(out.contains("\"ok\""), "{alg}: {out}");
            assert!(!out.contains("WARNING"), "{alg}: {out}");
            assert!(!out.contains("Couldn't verify"), "{alg}: {out}");
            assert!(out.contains("TSIG PSEUDOSECTION"), "{alg}: {out}");

            let forged = Responder::start(ring(), 0, true);
            let out = dig(forged.addr, &y);
            forged.finish();
            assert!(
                out.contains(";; Couldn't verify signature: tsig verify failure")
                    && out.contains(";; WARNING -- Some TSIG could not be validated"),
                "{alg}: dig accepted a forged MAC: {out}"
            );
        }
    }

    fn nsupdate(addr: std::net::SocketAddr, y: &str) -> (i32, String) {
        let mut child = Command::new("nsupdate")
            .args(["-y", y])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        write!(
            child.stdin.take().unwrap(),
            "server 127.0.0.1 {}\nzone example.\nupdate add h1.example. 300 A 192.0.2.1\nsend\n",
            addr.port()
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    #[test]
    fn nsupdate_sees_our_answers_and_errors_exactly() {
        if !have("nsupdate") {
            return;
        }
        let y = format!("hmac-sha256:update-key:{UPDATE_SECRET}");

        // Signed request, signed NOERROR answer: nsupdate is satisfied.
        let r = Responder::start(ring(), 0, false);
        let (code, out) = nsupdate(r.addr, &y);
        assert_eq!((code, out.as_str()), (0, ""));
        assert_eq!(r.finish(), vec!["signed"]);

        // Our answer with a spoiled MAC: nsupdate refuses it.
        let r = Responder::start(ring(), 0, true);
        let (code, out) = nsupdate(r.addr, &y);
        r.finish();
        assert_ne!(code, 0, "{out}");
        assert!(out.contains("tsig verify failure"), "{out}");

        // Wrong secret: BADSIG, unsigned.
        let r = Responder::start(ring(), 0, false);
        let wrong = "hmac-sha256:update-key:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let (code, out) = nsupdate(r.addr, wrong);
        r.finish();
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("update failed: NOTAUTH(BADSIG)"), "{out}");

        // Unknown key: BADKEY, unsigned.
        let r = Responder::start(ring(), 0, false);
        let (code, out) = nsupdate(r.addr, &format!("hmac-sha256:nobody:{UPDATE_SECRET}"));
        r.finish();
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("update failed: NOTAUTH(BADKEY)"), "{out}");

        // Our clock 1000 s ahead: BADTIME, signed with our time; nsupdate verifies the
        // signed error and reports it.
        let r = Responder::start(ring(), 1000, false);
        let (code, out) = nsupdate(r.addr, &y);
        r.finish();
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("update failed: NOTAUTH(BADTIME)"), "{out}");
    }
}
