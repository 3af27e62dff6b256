//! BIND key files, as `tsig-keygen NAME` and `ddns-confgen` print them: `key "NAME" {
//! algorithm ALG; secret "BASE64"; };`, in named.conf syntax (quoted strings, `#`, `//`
//! and `/* */` comments). One parser for both programs: `musterd` refuses any other
//! statement, `muster-agent` skips them (a key file included from named.conf may hold
//! them); [`statements`] gives both kinds and each caller applies its rule.
//!
//! The parser checks the shape of a key block and decodes its secret; it leaves the
//! algorithm as written, because which algorithms are usable is the caller's business
//! (the server's HMACs, the agent's signer).

use std::fmt;

use base64::Engine as _;

use crate::text::{unescape_plain, Scanner, Unclosed};

/// One `key` block of a key file, as written.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// The key name as written (quotes removed, a trailing dot kept).
    pub name: String,
    /// The line of the `key` word.
    pub line: u32,
    /// The algorithm as written, e.g. `hmac-sha256` or Kea's `HMAC-SHA256.`.
    pub algorithm: String,
    /// The line of the algorithm's value.
    pub algorithm_line: u32,
    /// The decoded secret (never empty).
    pub secret: Vec<u8>,
}

impl fmt::Debug for KeyBlock {
    // Never print the secret, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBlock")
            .field("name", &self.name)
            .field("line", &self.line)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A statement of a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// A `key` block.
    Key(KeyBlock),
    /// Any other statement, skipped up to its `;`: its first token as an error message
    /// shows it (`` `options` ``) and its line.
    Other {
        /// The first token, quoted for a message.
        first: String,
        /// Its line.
        line: u32,
    },
}

/// A key file that cannot be read; `line` counts from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Where the problem is.
    pub line: u32,
    /// What it is.
    pub kind: ErrorKind,
}

/// What is wrong with a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text is not a well-formed key statement; the message says what was expected.
    Syntax(String),
    /// The secret of key `key` is not base64 (or is empty).
    BadSecret {
        /// The key name as written.
        key: String,
        /// Why, e.g. `it is empty`.
        reason: String,
    },
    /// Key `key` has no `algorithm` statement.
    MissingAlgorithm {
        /// The key name as written.
        key: String,
    },
    /// Key `key` has no `secret` statement.
    MissingSecret {
        /// The key name as written.
        key: String,
    },
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Syntax(what) => f.write_str(what),
            ErrorKind::BadSecret { key, reason } => {
                write!(f, "key {key:?}: the secret is not valid base64 ({reason})")
            }
            ErrorKind::MissingAlgorithm { key } => {
                write!(f, "key {key:?} has no algorithm statement")
            }
            ErrorKind::MissingSecret { key } => write!(f, "key {key:?} has no secret statement"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.kind)
    }
}

impl std::error::Error for Error {}

/// Decodes a TSIG secret: base64 (RFC 4648 §4) with white space skipped, as BIND does (a
/// long secret may be wrapped). The error says why, e.g. `it is empty`.
pub fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return Err("it is empty".into());
    }
    base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word (`key`, `algorithm`, `hmac-sha256`).
    Word(String),
    /// A double-quoted string, quotes removed and escapes decoded.
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

fn syntax(line: u32, what: impl Into<String>) -> Error {
    Error {
        line,
        kind: ErrorKind::Syntax(what.into()),
    }
}

/// A word ends at white space, punctuation, a quote or a comment.
fn ends_word(b: &[u8], i: usize) -> bool {
    b[i].is_ascii_whitespace()
        || matches!(b[i], b'{' | b'}' | b';' | b'"' | b'#')
        || (b[i] == b'/' && matches!(b.get(i + 1), Some(b'/') | Some(b'*')))
}

/// Splits named.conf text into tokens with their lines, dropping comments.
fn tokenize(text: &str) -> Result<Vec<(Token, u32)>, Error> {
    let mut s = Scanner::new(text);
    let mut out = Vec::new();
    while let Some(c) = s.peek() {
        let line = s.line();
        let token = match c {
            _ if c.is_ascii_whitespace() => {
                s.bump();
                continue;
            }
            b'#' => {
                s.skip_line();
                continue;
            }
            b'/' if s.peek_at(1) == Some(b'/') => {
                s.skip_line();
                continue;
            }
            b'/' if s.peek_at(1) == Some(b'*') => {
                s.skip_block_comment()
                    .map_err(|Unclosed { line }| syntax(line, "comment `/*` is never closed"))?;
                continue;
            }
            b'{' | b'}' | b';' => {
                s.bump();
                match c {
                    b'{' => Token::Open,
                    b'}' => Token::Close,
                    _ => Token::Semicolon,
                }
            }
            b'"' => {
                let raw = s
                    .quoted()
                    .map_err(|Unclosed { line }| syntax(line, "quoted string is never closed"))?;
                Token::Quoted(unescape_plain(raw).into_owned())
            }
            _ => Token::Word(s.word(false, ends_word).to_string()),
        };
        out.push((token, line));
    }
    Ok(out)
}

/// The statements of a key file, one at a time: a caller that refuses other statements
/// stops at the first, before any later syntax error.
pub fn statements(text: &str) -> Statements {
    Statements {
        tokens: tokenize(text).map_err(Some),
        at: 0,
        last_line: text.lines().count().max(1) as u32,
    }
}

/// The iterator of [`statements`].
#[derive(Debug)]
pub struct Statements {
    /// The tokens, or the tokenizer's error until it has been given out.
    tokens: Result<Vec<(Token, u32)>, Option<Error>>,
    at: usize,
    /// Where "the file ends" errors point.
    last_line: u32,
}

impl Iterator for Statements {
    type Item = Result<Statement, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let toks = match &mut self.tokens {
            Ok(t) => t,
            Err(e) => return e.take().map(Err),
        };
        let (first, line) = toks.get(self.at)?.clone();
        let mut p = Cursor {
            toks,
            at: self.at + 1,
            last_line: self.last_line,
        };
        let result = match &first {
            Token::Word(w) if w.eq_ignore_ascii_case("key") => {
                p.key_block(line).map(Statement::Key)
            }
            other => {
                p.skip_statement();
                Ok(Statement::Other {
                    first: other.to_string(),
                    line,
                })
            }
        };
        // After an error, nothing more: the rest of the file cannot be trusted.
        self.at = if result.is_ok() { p.at } else { toks.len() };
        Some(result)
    }
}

/// A position in the token list while one statement is read.
struct Cursor<'t> {
    toks: &'t [(Token, u32)],
    at: usize,
    last_line: u32,
}

impl Cursor<'_> {
    /// The next token; at the end of the file, an error saying what was expected.
    fn next(&mut self, expected: &str) -> Result<(Token, u32), Error> {
        let t = self.toks.get(self.at).cloned().ok_or_else(|| {
            syntax(
                self.last_line,
                format!("the file ends where {expected} was expected"),
            )
        })?;
        self.at += 1;
        Ok(t)
    }

    /// Skips to the `;` that ends a statement at brace depth 0, or the end of the file.
    fn skip_statement(&mut self) {
        let mut depth = 0usize;
        // The first token may itself be the `{` or `;`.
        self.at -= 1;
        while let Some((t, _)) = self.toks.get(self.at) {
            self.at += 1;
            match t {
                Token::Open => depth += 1,
                Token::Close => depth = depth.saturating_sub(1),
                Token::Semicolon if depth == 0 => return,
                _ => {}
            }
        }
    }

    /// Reads `NAME { algorithm ALG; secret "BASE64"; };` after the `key` word on `line`.
    fn key_block(&mut self, line: u32) -> Result<KeyBlock, Error> {
        let name = match self.next("the key name")? {
            (Token::Word(w) | Token::Quoted(w), _) => w,
            (other, l) => {
                return Err(syntax(
                    l,
                    format!("expected the key name after `key`, found {other}"),
                ))
            }
        };
        self.expect(Token::Open, || format!("after key {name:?}"))?;
        let mut algorithm: Option<(String, u32)> = None;
        let mut secret: Option<Vec<u8>> = None;
        while let Some((field, l, value, vl)) = self.field(&name)? {
            let twice = || syntax(l, format!("key {name:?} has a second `{field}` statement"));
            if field.eq_ignore_ascii_case("algorithm") {
                if algorithm.is_some() {
                    return Err(twice());
                }
                algorithm = Some((value, vl));
            } else if field.eq_ignore_ascii_case("secret") {
                if secret.is_some() {
                    return Err(twice());
                }
                secret = Some(decode_secret(&value).map_err(|reason| Error {
                    line: vl,
                    kind: ErrorKind::BadSecret {
                        key: name.clone(),
                        reason,
                    },
                })?);
            } else {
                return Err(syntax(
                    l,
                    format!(
                        "unknown statement `{field}` in key {name:?} \
                         (a key has only `algorithm` and `secret`)"
                    ),
                ));
            }
        }
        self.expect(Token::Semicolon, || {
            format!("after the `}}` of key {name:?}")
        })?;
        let missing = |kind| Error { line, kind };
        let (algorithm, algorithm_line) =
            algorithm.ok_or_else(|| missing(ErrorKind::MissingAlgorithm { key: name.clone() }))?;
        let secret =
            secret.ok_or_else(|| missing(ErrorKind::MissingSecret { key: name.clone() }))?;
        Ok(KeyBlock {
            name,
            line,
            algorithm,
            algorithm_line,
            secret,
        })
    }

    /// The next `FIELD VALUE;` of key `name` with the lines of field and value, or `None`
    /// at its closing `}`.
    #[allow(clippy::type_complexity)]
    fn field(&mut self, name: &str) -> Result<Option<(String, u32, String, u32)>, Error> {
        let (field, l) = match self.next("`}`")? {
            (Token::Close, _) => return Ok(None),
            (Token::Word(w), l) => (w, l),
            (other, l) => {
                return Err(syntax(
                    l,
                    format!(
                        "expected `algorithm`, `secret` or `}}` in key {name:?}, found {other}"
                    ),
                ))
            }
        };
        let (value, vl) = match self.next("a value")? {
            (Token::Word(v) | Token::Quoted(v), vl) => (v, vl),
            (other, vl) => {
                return Err(syntax(
                    vl,
                    format!("expected a value after `{field}`, found {other}"),
                ))
            }
        };
        self.expect(Token::Semicolon, || format!("after `{field} {value}`"))?;
        Ok(Some((field, l, value, vl)))
    }

    /// The next token must be `want`; `after` says where, for the error.
    fn expect(&mut self, want: Token, after: impl Fn() -> String) -> Result<(), Error> {
        match self.next(&want.to_string())? {
            (t, _) if t == want => Ok(()),
            (other, l) => Err(syntax(
                l,
                format!("expected {want} {}, found {other}", after()),
            )),
        }
    }
}

/// One TSIG key of a BIND key file, as the agent signs with it.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// The key name, as the server knows it.
    pub name: String,
    /// Lower-case algorithm name without a trailing dot, e.g. `hmac-sha256`.
    pub algorithm: String,
    /// The decoded secret.
    pub secret: Vec<u8>,
}

impl fmt::Debug for Key {
    // Never print the secret, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Reads every `key` block of a BIND key file, skipping other statements (a key file
/// included from named.conf may hold them). Names lose a trailing dot; algorithms are
/// lower-cased without one.
pub fn parse_keys(text: &str) -> Result<Vec<Key>, Error> {
    let mut keys = Vec::new();
    for statement in statements(text) {
        if let Statement::Key(k) = statement? {
            keys.push(Key {
                name: k.name.trim_end_matches('.').to_string(),
                algorithm: k
                    .algorithm
                    .to_ascii_lowercase()
                    .trim_end_matches('.')
                    .into(),
                secret: k.secret,
            });
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYGEN: &str = r#"key "host1" {
	algorithm hmac-sha256;
	secret "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHNlY3JldCE=";
};
"#;

    #[test]
    fn tsig_keygen_output_parses() {
        let keys = parse_keys(KEYGEN).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "host1");
        assert_eq!(keys[0].algorithm, "hmac-sha256");
        assert_eq!(keys[0].secret, b"hello world this is a secret!");
    }

    #[test]
    fn several_keys_comments_and_other_statements() {
        let text = format!(
            "# generated\n// by hand\n/* block\n comment */ options {{ directory \"/x\"; }};\n{KEYGEN}key other. {{ algorithm HMAC-SHA512.; secret \"YWJj\"; }};"
        );
        let keys = parse_keys(&text).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].name, "other");
        assert_eq!(keys[1].algorithm, "hmac-sha512");
        assert_eq!(
            format!("{:?}", keys[1]),
            "Key { name: \"other\", algorithm: \"hmac-sha512\", .. }"
        );
        // The statements as the server sees them: the `options` statement first, with its
        // line, then the keys with theirs.
        let all: Vec<Statement> = statements(&text).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            all[0],
            Statement::Other {
                first: "`options`".into(),
                line: 4
            }
        );
        let Statement::Key(k) = &all[2] else {
            panic!("{all:?}")
        };
        assert_eq!(
            (k.name.as_str(), k.line, k.algorithm_line),
            ("other.", 9, 9)
        );
        assert_eq!(k.algorithm, "HMAC-SHA512.");
        assert!(!format!("{k:?}").contains("YWJj"));
    }

    #[test]
    fn broken_key_files_are_refused() {
        for (text, want) in [
            (
                "key \"k\" { algorithm hmac-sha256; };",
                "line 1: key \"k\" has no secret statement",
            ),
            (
                "key \"k\" { secret \"YWJj\"; };",
                "line 1: key \"k\" has no algorithm statement",
            ),
            (
                "key \"k\" {\n algorithm hmac-sha256;\n secret \"!!\"; };",
                "line 3: key \"k\": the secret is not valid base64 (Invalid symbol 33, offset 0.)",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YWJj\" };",
                "line 1: expected `;` after `secret YWJj`, found `}`",
            ),
            (
                "key \"k\" { algorithm hmac-sha256;\n secret \"YWJj; };",
                "line 2: quoted string is never closed",
            ),
            (
                "key \"k\" { algo hmac-sha256; };",
                "line 1: unknown statement `algo` in key \"k\" (a key has only `algorithm` and `secret`)",
            ),
            (
                "key \"k\" { secret \"YWJj\"; secret \"YWJj\"; };",
                "line 1: key \"k\" has a second `secret` statement",
            ),
            (
                "key k { algorithm hmac-sha256; secret \"YWJj\"; }\n",
                "line 1: the file ends where `;` was expected",
            ),
            ("key ; ", "line 1: expected the key name after `key`, found `;`"),
            ("key k k", "line 1: expected `{` after key \"k\", found `k`"),
            (
                "key k { \"algorithm\" x; };",
                "line 1: expected `algorithm`, `secret` or `}` in key \"k\", found \"algorithm\"",
            ),
            (
                "key k { secret { };",
                "line 1: expected a value after `secret`, found `{`",
            ),
            ("\n/* x", "line 2: comment `/*` is never closed"),
        ] {
            let e = parse_keys(text).expect_err(text);
            assert_eq!(e.to_string(), want, "{text}");
        }
    }

    #[test]
    fn an_error_ends_the_statements() {
        let mut it = statements("options { x; };\nkey k { port 1; };\nkey j {");
        assert!(matches!(
            it.next(),
            Some(Ok(Statement::Other { line: 1, .. }))
        ));
        assert_eq!(it.next().unwrap().unwrap_err().line, 2);
        assert!(it.next().is_none());
        // An unterminated other statement runs to the end of the file.
        let mut it = statements("options { x; ");
        assert!(matches!(
            it.next(),
            Some(Ok(Statement::Other { line: 1, .. }))
        ));
        assert!(it.next().is_none());
    }

    #[test]
    fn secrets() {
        assert_eq!(decode_secret(" YW\nJj ").unwrap(), b"abc");
        assert_eq!(decode_secret(" \t").unwrap_err(), "it is empty");
        assert!(decode_secret("YWJ").is_err());
    }
}
