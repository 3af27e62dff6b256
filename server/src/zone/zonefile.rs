//! RFC 1035 §5 master files ("zone files") into records, with errors that name the file,
//! the line and the record.
//!
//! Supported: `$ORIGIN`, `$TTL`, `$INCLUDE file [origin]` (confined to the zone's own
//! directory), `( ... )` multi-line records, `;` comments, quoted strings with `\"` and
//! `\DDD` escapes, blank owners (the previous owner), TTL and class in either order, TTL
//! units (`1h30m`), A, AAAA, NS, CNAME, PTR, DNAME, SOA, MX, TXT, SPF, SRV, CAA, HINFO,
//! DHCID, SSHFP, TLSA, and any type in the RFC 3597 form `TYPE65534 \# 4 0a000001`.
//! Whichever form a record is written in, its data goes through [`check_rdata`]: a known
//! type's `\#` data must have that type's structure, as its text form would.
//!
//! Limitations: no `$GENERATE`; DNSSEC types only in RFC 3597 form; class IN only.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::proto::name::Name;
use crate::proto::rr::{
    check_rdata, class, rtype, rtype_more, type_from_name, type_name, Origin, Record,
};
use crate::proto::types::Rclass;

/// Most errors collected from one file before giving up.
const MAX_ERRORS: usize = 50;
/// Deepest `$INCLUDE` nesting.
const MAX_INCLUDE_DEPTH: usize = 16;

/// One problem in a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileError {
    pub file: PathBuf,
    pub line: u32,
    /// The offending record's text, trimmed and shortened.
    pub record: String,
    pub kind: ZoneFileErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneFileErrorKind {
    #[error("cannot read the file: {0}")]
    Read(String),
    #[error("{0}")]
    Syntax(String),
    #[error("bad {rtype} record: {reason}")]
    Rdata { rtype: String, reason: String },
    #[error("{0}")]
    Include(String),
}

impl fmt::Display for ZoneFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            // Not about a line: the file itself (e.g. it cannot be read).
            write!(f, "{}: {}", self.file.display(), self.kind)?;
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.kind)?;
        }
        if !self.record.is_empty() {
            write!(f, " in \"{}\"", self.record)?;
        }
        Ok(())
    }
}

/// Every error found in a file (at most 50).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileErrors(pub Vec<ZoneFileError>);

impl fmt::Display for ZoneFileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n  ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ZoneFileErrors {}

/// Parses a zone file.
pub fn parse_file(path: &Path, origin: &Name) -> Result<Vec<Record>, ZoneFileErrors> {
    parse_str(&read_file(path)?, path, origin)
}

/// The text of a zone file, or the error saying it cannot be read.
pub fn read_file(path: &Path) -> Result<String, ZoneFileErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ZoneFileErrors(vec![ZoneFileError {
            file: path.into(),
            line: 0,
            record: String::new(),
            kind: ZoneFileErrorKind::Read(e.to_string()),
        }])
    })
}

/// Parses zone text; `file` names it in messages and its directory confines `$INCLUDE`.
pub fn parse_str(text: &str, file: &Path, origin: &Name) -> Result<Vec<Record>, ZoneFileErrors> {
    let base = file
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut p = Parser {
        base,
        records: Vec::new(),
        errors: Vec::new(),
        ttl: TtlState::default(),
    };
    p.parse_text(text, file, origin.clone(), 0);
    if p.errors.is_empty() {
        Ok(p.records)
    } else {
        Err(ZoneFileErrors(p.errors))
    }
}

#[derive(Default)]
struct TtlState {
    default: Option<u32>,
    last: Option<u32>,
    soa_minimum: Option<u32>,
}

struct Parser {
    base: PathBuf,
    records: Vec<Record>,
    errors: Vec<ZoneFileError>,
    ttl: TtlState,
}

/// A token of an entry: its text as written (escapes kept; a quoted string without its
/// quotes) and whether it was quoted. Borrowed from the file text: lexing allocates
/// nothing per token.
#[derive(Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    quoted: bool,
}

/// One logical entry: the tokens of a record or directive.
struct Entry {
    line: u32,
    /// The entry began with white space: the owner is the previous one.
    blank_owner: bool,
    /// Range of this entry's tokens in the lexer's token list.
    tokens: std::ops::Range<usize>,
    start: usize,
    end: usize,
}

/// Splits text into entries, joining parenthesised lines (RFC 1035 §5.1).
/// Gives the entries and, in one list, the tokens they refer to.
fn lex(text: &str) -> Result<(Vec<Entry>, Vec<Token<'_>>), (u32, String)> {
    let b = text.as_bytes();
    let mut entries = Vec::new();
    let mut toks: Vec<Token<'_>> = Vec::with_capacity(text.len() / 6);
    let mut i = 0;
    let mut line: u32 = 1;
    let mut depth = 0u32;
    let mut open_line = 0u32;
    let mut cur: Option<Entry> = None;
    let mut at_line_start = true;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
                if depth == 0 {
                    if let Some(e) = cur.take() {
                        entries.push(e);
                    }
                }
                at_line_start = true;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                if at_line_start && depth == 0 && cur.is_none() {
                    // Leading white space: remember it for the blank-owner rule.
                    cur = Some(Entry {
                        line,
                        blank_owner: true,
                        tokens: toks.len()..toks.len(),
                        start: i,
                        end: i,
                    });
                }
                at_line_start = false;
                i += 1;
                continue;
            }
            b';' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                if depth == 0 {
                    open_line = line;
                }
                depth += 1;
                at_line_start = false;
                i += 1;
                continue;
            }
            b')' => {
                if depth == 0 {
                    return Err((line, "\")\" without a matching \"(\"".into()));
                }
                depth -= 1;
                i += 1;
                continue;
            }
            _ => {}
        }
        at_line_start = false;
        let entry = cur.get_or_insert(Entry {
            line,
            blank_owner: false,
            tokens: toks.len()..toks.len(),
            start: i,
            end: i,
        });
        if c == b'"' {
            let start_line = line;
            i += 1;
            let start = i;
            // The text between the quotes, escapes kept (decoded with the rdata).
            let end = loop {
                if i >= b.len() {
                    return Err((
                        start_line,
                        "quoted string is not closed (missing \")".into(),
                    ));
                }
                match b[i] {
                    b'"' => {
                        i += 1;
                        break i - 1;
                    }
                    b'\\' if i + 1 < b.len() => {
                        if b[i + 1] == b'\n' {
                            line += 1;
                        }
                        i += 1 + utf8_len(b[i + 1]);
                    }
                    b'\n' => {
                        line += 1;
                        i += 1;
                    }
                    x => i += utf8_len(x),
                }
            };
            toks.push(Token {
                text: &text[start..end.min(b.len())],
                quoted: true,
            });
            entry.tokens.end = toks.len();
        } else {
            let start = i;
            while i < b.len() {
                match b[i] {
                    b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"' => break,
                    b'\\' if i + 1 < b.len() && b[i + 1] != b'\n' => i += 1 + utf8_len(b[i + 1]),
                    x => i += utf8_len(x),
                }
            }
            let end = i.min(b.len());
            toks.push(Token {
                text: &text[start..end],
                quoted: false,
            });
            entry.tokens.end = toks.len();
        }
        entry.end = i.min(b.len());
    }
    if depth > 0 {
        return Err((
            open_line,
            "\"(\" opened here is not closed before the end of the file".into(),
        ));
    }
    if let Some(e) = cur.take() {
        entries.push(e);
    }
    Ok((entries, toks))
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

/// Parses a TTL: seconds, or units s/m/h/d/w (case-insensitive), e.g. `1h30m`.
pub fn parse_ttl(s: &str) -> Option<u32> {
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|c| c.is_ascii_digit()) {
        return s.parse().ok();
    }
    let mut total: u64 = 0;
    let mut num: Option<u64> = None;
    for c in s.bytes() {
        match c {
            b'0'..=b'9' => num = Some(num.unwrap_or(0) * 10 + (c - b'0') as u64),
            _ => {
                let mult = match c.to_ascii_lowercase() {
                    b's' => 1,
                    b'm' => 60,
                    b'h' => 3600,
                    b'd' => 86400,
                    b'w' => 604800,
                    _ => return None,
                };
                total += num.take()? * mult;
            }
        }
        if total > u32::MAX as u64 || num.is_some_and(|n| n > u32::MAX as u64) {
            return None;
        }
    }
    if num.is_some() {
        return None; // digits after the last unit: "1h30"
    }
    u32::try_from(total).ok()
}

fn snippet(text: &str, e: &Entry) -> String {
    let raw = &text[e.start..e.end.max(e.start)];
    let one: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 80 {
        format!("{}...", one.chars().take(77).collect::<String>())
    } else {
        one
    }
}

impl Parser {
    fn error(&mut self, file: &Path, line: u32, record: String, kind: ZoneFileErrorKind) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(ZoneFileError {
                file: file.into(),
                line,
                record,
                kind,
            });
        }
    }

    fn parse_text(&mut self, text: &str, file: &Path, mut origin: Name, depth: usize) {
        let (entries, tokens) = match lex(text) {
            Ok(e) => e,
            Err((line, msg)) => {
                self.error(file, line, String::new(), ZoneFileErrorKind::Syntax(msg));
                return;
            }
        };
        let file_arc = Arc::new(file.to_path_buf());
        let mut owner: Option<Name> = None;
        for e in &entries {
            if self.errors.len() >= MAX_ERRORS {
                return;
            }
            let toks = &tokens[e.tokens.clone()];
            if toks.is_empty() {
                continue;
            }
            let first = toks[0].text;
            if !e.blank_owner && first.starts_with('$') {
                let args: Vec<&str> = toks[1..].iter().map(|t| t.text).collect();
                let rec = snippet(text, e);
                match first.to_ascii_uppercase().as_str() {
                    "$ORIGIN" => match args.as_slice() {
                        [o] => match Name::parse(o, Some(&origin)) {
                            Ok(n) => origin = n,
                            Err(err) => self.error(
                                file,
                                e.line,
                                rec,
                                ZoneFileErrorKind::Syntax(format!("bad $ORIGIN: {err}")),
                            ),
                        },
                        _ => self.error(
                            file,
                            e.line,
                            rec,
                            ZoneFileErrorKind::Syntax("$ORIGIN takes one name".into()),
                        ),
                    },
                    "$TTL" => match args.as_slice() {
                        [t] => match parse_ttl(t) {
                            Some(v) => self.ttl.default = Some(v),
                            None => self.error(
                                file,
                                e.line,
                                rec,
                                ZoneFileErrorKind::Syntax(format!(
                                    "bad $TTL value \"{t}\" (write seconds or e.g. 1h30m)"
                                )),
                            ),
                        },
                        _ => self.error(
                            file,
                            e.line,
                            rec,
                            ZoneFileErrorKind::Syntax("$TTL takes one value".into()),
                        ),
                    },
                    "$INCLUDE" => {
                        if args.is_empty() || args.len() > 2 {
                            self.error(
                                file,
                                e.line,
                                rec,
                                ZoneFileErrorKind::Syntax(
                                    "$INCLUDE takes a file name and an optional origin".into(),
                                ),
                            );
                            continue;
                        }
                        let inc_origin = match args.get(1) {
                            Some(o) => match Name::parse(o, Some(&origin)) {
                                Ok(n) => n,
                                Err(err) => {
                                    self.error(
                                        file,
                                        e.line,
                                        rec,
                                        ZoneFileErrorKind::Syntax(format!(
                                            "bad $INCLUDE origin: {err}"
                                        )),
                                    );
                                    continue;
                                }
                            },
                            None => origin.clone(),
                        };
                        self.include(file, e.line, rec, args[0], inc_origin, depth);
                    }
                    "$GENERATE" => self.error(
                        file,
                        e.line,
                        rec,
                        ZoneFileErrorKind::Syntax(
                            "$GENERATE is not supported; write the records out".into(),
                        ),
                    ),
                    d => self.error(
                        file,
                        e.line,
                        rec,
                        ZoneFileErrorKind::Syntax(format!(
                            "unknown directive {d} (known: $ORIGIN, $TTL, $INCLUDE)"
                        )),
                    ),
                }
                continue;
            }
            match self.record(e, toks, text, &origin, &mut owner) {
                Ok(mut r) => {
                    r.source = Some(Origin {
                        file: file_arc.clone(),
                        line: e.line,
                    });
                    self.records.push(r);
                }
                Err(kind) => self.error(file, e.line, snippet(text, e), kind),
            }
        }
    }

    fn include(
        &mut self,
        file: &Path,
        line: u32,
        rec: String,
        target: &str,
        origin: Name,
        depth: usize,
    ) {
        if depth >= MAX_INCLUDE_DEPTH {
            self.error(
                file,
                line,
                rec,
                ZoneFileErrorKind::Include(format!(
                    "$INCLUDE nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)"
                )),
            );
            return;
        }
        let path = self.base.join(target);
        let (canon_base, canon) = match (self.base.canonicalize(), path.canonicalize()) {
            (Ok(b), Ok(p)) => (b, p),
            (_, Err(e)) => {
                self.error(
                    file,
                    line,
                    rec,
                    ZoneFileErrorKind::Include(format!(
                        "cannot read included file {}: {e}",
                        path.display()
                    )),
                );
                return;
            }
            (Err(e), _) => {
                self.error(
                    file,
                    line,
                    rec,
                    ZoneFileErrorKind::Include(format!(
                        "cannot resolve the zone directory {}: {e}",
                        self.base.display()
                    )),
                );
                return;
            }
        };
        if !canon.starts_with(&canon_base) {
            self.error(
                file,
                line,
                rec,
                ZoneFileErrorKind::Include(format!(
                    "include refused: {} is outside the zone directory {}",
                    path.display(),
                    canon_base.display()
                )),
            );
            return;
        }
        match std::fs::read_to_string(&canon) {
            Ok(text) => self.parse_text(&text, &path, origin, depth + 1),
            Err(e) => self.error(
                file,
                line,
                rec,
                ZoneFileErrorKind::Include(format!(
                    "cannot read included file {}: {e}",
                    path.display()
                )),
            ),
        }
    }

    fn record(
        &mut self,
        e: &Entry,
        tokens: &[Token<'_>],
        text: &str,
        origin: &Name,
        owner: &mut Option<Name>,
    ) -> Result<Record, ZoneFileErrorKind> {
        let syntax = |m: String| ZoneFileErrorKind::Syntax(m);
        let mut toks = tokens.iter().peekable();
        let this_owner = if e.blank_owner {
            owner.clone().ok_or_else(|| {
                syntax(
                    "record has no owner name and there is no previous record to take it from"
                        .into(),
                )
            })?
        } else {
            let t = toks.next().expect("entry has a token");
            Name::parse(t.text, Some(origin))
                .map_err(|err| syntax(format!("bad owner name: {err}")))?
        };
        *owner = Some(this_owner.clone());
        let mut ttl = None;
        let mut cls = None;
        for _ in 0..2 {
            let Some(t) = toks.peek() else { break };
            if t.quoted {
                break;
            }
            if cls.is_none() {
                if let Some(c) = Rclass::from_text(t.text).map(u16::from) {
                    cls = Some(c);
                    toks.next();
                    continue;
                }
            }
            if ttl.is_none() && t.text.as_bytes()[0].is_ascii_digit() {
                match parse_ttl(t.text) {
                    Some(v) => {
                        ttl = Some(v);
                        toks.next();
                        continue;
                    }
                    None => {
                        return Err(syntax(format!(
                            "bad TTL \"{}\" (write seconds or e.g. 1h30m)",
                            t.text
                        )))
                    }
                }
            }
            break;
        }
        let cls = cls.unwrap_or(class::IN);
        if cls != class::IN {
            return Err(syntax(format!(
                "class {} is not served; only IN records belong in a zone file",
                Rclass(cls)
            )));
        }
        let type_tok = toks.next().ok_or_else(|| {
            syntax(format!(
                "record \"{}\" has no type (expected e.g. A, AAAA, SRV after the owner, TTL and class)",
                snippet(text, e)
            ))
        })?;
        let rt = type_from_name(type_tok.text)
            .ok_or_else(|| syntax(format!("unknown record type \"{}\"", type_tok.text)))?;
        let rest = &tokens[tokens.len() - toks.len()..];
        let rdata = rdata(rt, rest, origin).map_err(|reason| ZoneFileErrorKind::Rdata {
            rtype: type_name(rt),
            reason,
        })?;
        let ttl = match ttl
            .or(self.ttl.default)
            .or(self.ttl.last)
            .or(self.ttl.soa_minimum)
        {
            Some(t) => t,
            None if rt == rtype::SOA => 0, // fixed below from MINIMUM
            None => {
                return Err(syntax(
                    "record has no TTL and no $TTL is set; add \"$TTL 300\" at the top".into(),
                ))
            }
        };
        let ttl = if rt == rtype::SOA {
            let soa = crate::proto::rr::Soa::from_rdata(&rdata);
            self.ttl.soa_minimum = soa.as_ref().map(|s| s.minimum);
            if ttl == 0 && self.ttl.default.is_none() {
                soa.map_or(0, |s| s.minimum)
            } else {
                ttl
            }
        } else {
            ttl
        };
        self.ttl.last = Some(ttl);
        Ok(Record {
            owner: this_owner,
            rtype: rt,
            class: cls,
            ttl,
            rdata,
            source: None,
        })
    }
}

fn want(rest: &[Token<'_>], n: usize, what: &str) -> Result<(), String> {
    if rest.len() != n {
        return Err(format!(
            "needs {n} field{} ({what}), found {}",
            if n == 1 { "" } else { "s" },
            rest.len()
        ));
    }
    Ok(())
}

fn number<T: TryFrom<u64>>(s: &str, what: &str, max: u64) -> Result<T, String> {
    let v: u64 = s
        .parse()
        .map_err(|_| format!("{what} \"{s}\" is not a number"))?;
    if v > max {
        return Err(format!("{what} {v} out of range 0-{max}"));
    }
    T::try_from(v).map_err(|_| format!("{what} {v} out of range"))
}

fn name_field(s: &str, origin: &Name, what: &str) -> Result<crate::proto::name::WireBuf, String> {
    crate::proto::name::parse_wire(s, Some(origin)).map_err(|e| format!("bad {what}: {e}"))
}

/// Decodes `\X` and `\DDD` escapes of a character-string.
fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
                let v = (b[i + 1] - b'0') as u32 * 100
                    + (b[i + 2] - b'0') as u32 * 10
                    + (b[i + 3] - b'0') as u32;
                if v > 255 {
                    return Err(format!("escape \\{} is above 255", &s[i + 1..i + 4]));
                }
                out.push(v as u8);
                i += 4;
            } else if i + 1 < b.len() {
                out.push(b[i + 1]);
                i += 2;
            } else {
                return Err("a string ends with a lone backslash".into());
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn char_string(out: &mut Vec<u8>, t: &Token<'_>) -> Result<(), String> {
    let bytes = unescape(t.text)?;
    if bytes.len() > 255 {
        return Err(format!("a character-string holds at most 255 bytes, this one has {} (split it into several quoted strings)", bytes.len()));
    }
    out.push(bytes.len() as u8);
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes hex digits, white space ignored. Works on characters, not bytes: the text may
/// hold any Unicode, and a pair of bytes need not be a whole character.
fn hex(s: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<char> = s.chars().filter(|c| !c.is_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return Err("hex data has an odd number of digits".into());
    }
    digits
        .chunks_exact(2)
        .map(|pair| match (pair[0].to_digit(16), pair[1].to_digit(16)) {
            (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
            _ => Err(format!("\"{}{}\" is not hex", pair[0], pair[1])),
        })
        .collect()
}

fn base64(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    // Characters, not bytes: a non-ASCII character is named whole in the error.
    for c in s.chars() {
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            '=' => continue,
            _ => return Err(format!("'{c}' is not base64")),
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Rdata of type `rt` from its text fields.
fn rdata(rt: u16, rest: &[Token<'_>], origin: &Name) -> Result<Vec<u8>, String> {
    if rest.first().is_some_and(|t| !t.quoted && t.text == "\\#") {
        let len: usize = rest
            .get(1)
            .ok_or("the \\# form needs a length, e.g. \\# 4 0a000001")?
            .text
            .parse()
            .map_err(|_| "the \\# form needs a decimal length after \\#".to_string())?;
        if len > u16::MAX as usize {
            return Err(format!(
                "\\# length {len} is more than the 65535 octets a record can hold"
            ));
        }
        let data = hex(&rest[2..].iter().map(|t| t.text).collect::<String>())?;
        if data.len() != len {
            return Err(format!(
                "\\# length says {len} bytes but {} bytes of hex follow",
                data.len()
            ));
        }
        // The same check as the text form's: a known type's \# data must have that type's
        // structure, or the answers carrying it would not parse.
        check_rdata(rt, &data)
            .map_err(|why| format!("the \\# data is not valid {} rdata: {why}", type_name(rt)))?;
        return Ok(data);
    }
    let t = |i: usize| rest[i].text;
    let mut out = Vec::new();
    match rt {
        rtype::A => {
            want(rest, 1, "an IPv4 address")?;
            let a: Ipv4Addr = t(0).parse().map_err(|_| format!("invalid IPv4 address \"{}\"", t(0)))?;
            out.extend_from_slice(&a.octets());
        }
        rtype::AAAA => {
            want(rest, 1, "an IPv6 address")?;
            let a: Ipv6Addr = t(0).parse().map_err(|_| format!("invalid IPv6 address \"{}\"", t(0)))?;
            out.extend_from_slice(&a.octets());
        }
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => {
            want(rest, 1, "a domain name")?;
            out.extend_from_slice(&name_field(t(0), origin, "target name")?);
        }
        rtype::MX => {
            want(rest, 2, "preference and exchange")?;
            out.extend_from_slice(&number::<u16>(t(0), "MX preference", 65535)?.to_be_bytes());
            out.extend_from_slice(&name_field(t(1), origin, "mail exchange")?);
        }
        rtype::SOA => {
            want(rest, 7, "mname rname serial refresh retry expire minimum")?;
            out.extend_from_slice(&name_field(t(0), origin, "SOA mname")?);
            out.extend_from_slice(&name_field(t(1), origin, "SOA rname")?);
            let serial: u32 = number(t(2), "SOA serial", u32::MAX as u64)?;
            out.extend_from_slice(&serial.to_be_bytes());
            for (i, what) in [(3, "refresh"), (4, "retry"), (5, "expire"), (6, "minimum")] {
                let v = parse_ttl(t(i)).ok_or_else(|| format!("SOA {what} \"{}\" is not a time value", t(i)))?;
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        rtype::TXT | rtype_more::SPF => {
            if rest.is_empty() {
                return Err("needs at least one string".into());
            }
            for tok in rest {
                char_string(&mut out, tok)?;
            }
        }
        rtype::HINFO => {
            want(rest, 2, "CPU and OS strings")?;
            char_string(&mut out, &rest[0])?;
            char_string(&mut out, &rest[1])?;
        }
        rtype::SRV => {
            want(rest, 4, "priority weight port target")?;
            out.extend_from_slice(&number::<u16>(t(0), "SRV priority", 65535)?.to_be_bytes());
            out.extend_from_slice(&number::<u16>(t(1), "SRV weight", 65535)?.to_be_bytes());
            out.extend_from_slice(&number::<u16>(t(2), "SRV port", 65535)?.to_be_bytes());
            out.extend_from_slice(&name_field(t(3), origin, "SRV target")?);
        }
        rtype::CAA => {
            want(rest, 3, "flags tag value")?;
            out.push(number::<u8>(t(0), "CAA flags", 255)?);
            let tag = t(1);
            if tag.is_empty() || tag.len() > 255 || !tag.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(format!("CAA tag \"{tag}\" must be letters and digits"));
            }
            out.push(tag.len() as u8);
            out.extend_from_slice(tag.as_bytes());
            out.extend(unescape(t(2))?);
        }
        rtype::DHCID => {
            if rest.is_empty() {
                return Err("needs base64 data".into());
            }
            out = base64(&rest.iter().map(|t| t.text).collect::<String>())?;
        }
        rtype_more::SSHFP => {
            // SSHFP: algorithm, fingerprint type, hex fingerprint.
            if rest.len() < 3 {
                return Err("needs algorithm, type and fingerprint".into());
            }
            out.push(number::<u8>(t(0), "SSHFP algorithm", 255)?);
            out.push(number::<u8>(t(1), "SSHFP type", 255)?);
            out.extend(hex(&rest[2..].iter().map(|t| t.text).collect::<String>())?);
        }
        rtype_more::TLSA => {
            // TLSA: usage, selector, matching type, hex data.
            if rest.len() < 4 {
                return Err("needs usage, selector, matching type and data".into());
            }
            for (i, what) in [(0, "usage"), (1, "selector"), (2, "matching type")] {
                out.push(number::<u8>(t(i), what, 255)?);
            }
            out.extend(hex(&rest[3..].iter().map(|t| t.text).collect::<String>())?);
        }
        _ => {
            return Err(format!(
                "{} records cannot be written in text form here; use the RFC 3597 form, e.g. \"{} \\# 4 0a000001\"",
                type_name(rt),
                type_name(rt)
            ))
        }
    }
    if out.len() > u16::MAX as usize {
        return Err(format!(
            "record data of {} octets; at most 65535 fit in a record (split long TXT data over several records)",
            out.len()
        ));
    }
    check_rdata(rt, &out)?;
    Ok(out)
}

/// Text of one record in master-file form, readable back by [`parse_str`].
pub fn format_record(r: &Record, origin: Option<&Name>) -> String {
    let owner = match origin {
        Some(o) => r.owner.to_relative_string(o),
        None => r.owner.to_string(),
    };
    format!(
        "{owner} {} IN {} {}",
        r.ttl,
        type_name(r.rtype),
        rdata_to_text(r.rtype, &r.rdata)
    )
}

fn quote(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in bytes {
        match c {
            b'"' | b'\\' => {
                s.push('\\');
                s.push(c as char);
            }
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\{c:03}")),
        }
    }
    s.push('"');
    s
}

fn generic(data: &[u8]) -> String {
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    if data.is_empty() {
        "\\# 0".into()
    } else {
        format!("\\# {} {hex}", data.len())
    }
}

/// Rdata in presentation form (RFC 3597 `\#` form when not decodable).
pub fn rdata_to_text(rt: u16, d: &[u8]) -> String {
    let name_at = |i: usize| -> Option<(String, usize)> {
        let l = crate::proto::name::wire_name_len(&d[i..])?;
        Some((Name::from_wire(&d[i..i + l]).ok()?.to_string(), i + l))
    };
    let text = match rt {
        rtype::A if d.len() == 4 => Some(Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()),
        rtype::AAAA if d.len() == 16 => {
            let a: [u8; 16] = d.try_into().expect("length checked");
            Some(Ipv6Addr::from(a).to_string())
        }
        rtype::NS | rtype::CNAME | rtype::PTR | rtype::DNAME => {
            name_at(0).filter(|(_, e)| *e == d.len()).map(|(n, _)| n)
        }
        rtype::MX if d.len() > 2 => name_at(2)
            .filter(|(_, e)| *e == d.len())
            .map(|(n, _)| format!("{} {n}", u16::from_be_bytes([d[0], d[1]]))),
        rtype::SRV if d.len() > 6 => name_at(6).filter(|(_, e)| *e == d.len()).map(|(n, _)| {
            format!(
                "{} {} {} {n}",
                u16::from_be_bytes([d[0], d[1]]),
                u16::from_be_bytes([d[2], d[3]]),
                u16::from_be_bytes([d[4], d[5]])
            )
        }),
        rtype::SOA => crate::proto::rr::Soa::from_rdata(d).map(|s| {
            format!(
                "{} {} {} {} {} {} {}",
                s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
            )
        }),
        rtype::TXT | rtype_more::SPF | rtype::HINFO => {
            let mut parts = Vec::new();
            let mut i = 0;
            let mut ok = true;
            while i < d.len() {
                let l = d[i] as usize;
                if i + 1 + l > d.len() {
                    ok = false;
                    break;
                }
                parts.push(quote(&d[i + 1..i + 1 + l]));
                i += 1 + l;
            }
            (ok && !parts.is_empty()).then(|| parts.join(" "))
        }
        rtype::CAA if d.len() >= 2 && 2 + d[1] as usize <= d.len() => {
            let tl = d[1] as usize;
            Some(format!(
                "{} {} {}",
                d[0],
                String::from_utf8_lossy(&d[2..2 + tl]),
                quote(&d[2 + tl..])
            ))
        }
        _ => None,
    };
    text.unwrap_or_else(|| generic(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Name {
        Name::parse("example.test.", None).unwrap()
    }

    fn parse(text: &str) -> Result<Vec<Record>, ZoneFileErrors> {
        parse_str(text, Path::new("t/x.zone"), &origin())
    }

    const HEAD: &str = "$TTL 30\n@ 300 IN SOA ns1 hostmaster ( 1 ; serial\n 3600 600 86400 60 )\n";

    #[test]
    fn parses_records_and_directives() {
        let rs = parse(&format!(
            "{HEAD}@ NS ns1\nns1 IN 60 A 127.0.0.1\n  AAAA ::1\n_etcd-server-ssl._tcp SRV 0 0 2380 infra0\n\
             txt TXT \"a \\\"b\\\"\" c\n$ORIGIN sub.example.test.\nx 1h IN A 10.0.0.1\ncaa CAA 0 issue \"ca.example\"\n\
             u TYPE65534 \\# 4 0a000001\nh HINFO \"cpu\" os\n"
        ))
        .unwrap();
        assert_eq!(rs.len(), 10);
        assert_eq!(rs[0].ttl, 300);
        assert_eq!(rs[2].owner.to_string(), "ns1.example.test.");
        assert_eq!(rs[2].ttl, 60);
        assert_eq!(rs[3].owner.to_string(), "ns1.example.test.");
        assert_eq!(rs[3].rtype, rtype::AAAA);
        assert_eq!(
            rdata_to_text(rtype::SRV, &rs[4].rdata),
            "0 0 2380 infra0.example.test."
        );
        assert_eq!(
            rdata_to_text(rtype::TXT, &rs[5].rdata),
            "\"a \\\"b\\\"\" \"c\""
        );
        assert_eq!(rs[6].owner.to_string(), "x.sub.example.test.");
        assert_eq!(rs[6].ttl, 3600);
        assert_eq!(rs[8].rtype, 65534);
        assert_eq!(rs[8].rdata, vec![10, 0, 0, 1]);
        assert_eq!(rs[1].source.as_ref().unwrap().line, 4);
    }

    fn first_error(text: &str) -> String {
        parse(text).unwrap_err().0[0].to_string()
    }

    #[test]
    fn errors_name_file_line_and_record() {
        let e = first_error(&format!("{HEAD}infra2 A 10.0.0.300\n"));
        assert_eq!(e, "t/x.zone:4: bad A record: invalid IPv4 address \"10.0.0.300\" in \"infra2 A 10.0.0.300\"");
        let e = first_error(&format!("{HEAD}s SRV 0 0 2380\n"));
        assert!(
            e.contains("needs 4 fields (priority weight port target), found 3"),
            "{e}"
        );
        let e = first_error(&format!("{HEAD}s SRV 0 0 99999 t\n"));
        assert!(e.contains("SRV port 99999 out of range 0-65535"), "{e}");
        let e = first_error(&format!("{HEAD}www 3600 IN\n"));
        assert!(e.contains("has no type"), "{e}");
        let e = first_error(&format!("{HEAD}www SRVV 1\n"));
        assert!(e.contains("unknown record type \"SRVV\""), "{e}");
        let e = first_error(&format!("{HEAD}x CH TXT a\n"));
        assert!(e.contains("class CH"), "{e}");
        let e = first_error("a A 1.2.3.4\n");
        assert!(e.contains("no TTL"), "{e}");
        let e = first_error("$GENERATE 1-3 a$ A 1.2.3.$\n");
        assert!(e.contains("not supported"), "{e}");
        // Record data past the 65535 octets a record holds: refused with the line.
        let chunk = format!(" \"{}\"", "a".repeat(250));
        let e = first_error(&format!("{HEAD}big TXT{}\n", chunk.repeat(270)));
        assert!(
            e.starts_with("t/x.zone:4:") && e.contains("at most 65535"),
            "{e}"
        );
        let e = first_error(&format!("{HEAD}big TYPE65534 \\# 70000 00\n"));
        assert!(e.contains("more than the 65535 octets"), "{e}");
        let e = first_error(&format!("{HEAD}a TXT \"open\n"));
        assert!(e.contains("not closed"), "{e}");
        let e = first_error(&format!("{HEAD}a A \\# 3 0a0000\n"));
        assert!(e.contains("not valid A rdata"), "{e}");
        // Several errors are all reported.
        let errs = parse(&format!("{HEAD}a A x\nb AAAA y\n")).unwrap_err();
        assert_eq!(errs.0.len(), 2);
    }

    /// Issue 8: hex after `\#` that is not ASCII used to panic (a byte slice through a
    /// character), taking `musterd check` and a reloading server down.
    #[test]
    fn issue8_non_ascii_hex_is_an_error() {
        for (data, want) in [
            ("2 aéb", "odd number of digits"),
            ("2 aé", "\"aé\" is not hex"),
            ("1 é0", "\"é0\" is not hex"),
            ("2 00😀", "odd number of digits"),
        ] {
            let e = first_error(&format!("{HEAD}x TYPE65534 \\# {data}\n"));
            assert!(e.starts_with("t/x.zone:4: bad TYPE65534 record:"), "{e}");
            assert!(e.contains(want), "{data}: {e}");
        }
        let e = first_error(&format!("{HEAD}x SSHFP 1 1 aé\n"));
        assert!(e.contains("\"aé\" is not hex"), "{e}");
        let e = first_error(&format!("{HEAD}x DHCID AAIBé\n"));
        assert!(e.contains("'é' is not base64"), "{e}");
    }

    /// Issue 8: a known type in the RFC 3597 form gets the checks of its text form, so no
    /// record a resolver cannot parse is served.
    #[test]
    fn issue8_generic_form_of_known_types_is_validated() {
        let bad = [
            ("MX", "4 00010301", "exchange name"),
            ("MX", "1 00", "preference"),
            ("NS", "2 0161", "target name"),
            ("CNAME", "3 c00c00", "target name"),
            ("PTR", "0", "target name is missing"),
            ("TXT", "3 05abcd", "says 5 octets"),
            ("TXT", "0", "at least one"),
            ("HINFO", "2 0161", "HINFO OS is missing"),
            ("CAA", "2 ffff", "CAA tag"),
            ("CAA", "3 000000", "CAA tag"),
            ("CAA", "4 00012061", "letters and digits"),
            ("SRV", "6 000000000000", "SRV target is missing"),
            ("SRV", "10 00000000000001610000", "follow"),
            ("SOA", "2 0000", "SOA serial"),
            ("A", "3 0a0000", "IPv4 address"),
            ("AAAA", "4 0a000001", "IPv6 address"),
            ("DS", "3 000102", "digest type"),
            ("DS", "4 00010203", "digest is missing"),
            ("DNSKEY", "3 010003", "algorithm"),
            (
                "RRSIG",
                "18 000100000000000000000000000000000000",
                "signer name",
            ),
            ("NSEC", "4 01610002", "type bitmap"),
            ("NSEC", "5 0161000100", "window 1 has length 0"),
            ("NSEC", "6 016100000100", "ends with a zero octet"),
            ("NSEC3", "5 0100000000", "next hashed owner name is missing"),
            ("DHCID", "2 0001", "digest type"),
            ("TYPE35", "5 0001000203", "NAPTR"),
            (
                "TYPE35",
                "9 000a00140121000000",
                "NAPTR flags \"!\" must be letters",
            ),
            ("TYPE64", "2 0001", "target name is missing"),
            ("TYPE64", "7 00010000010000", "SvcParam"),
            ("TYPE257", "1 00", "CAA tag is missing"),
        ];
        for (t, data, want) in bad {
            let e = first_error(&format!("{HEAD}a {t} \\# {data}\n"));
            let name = type_name(type_from_name(t).unwrap());
            assert!(
                e.starts_with(&format!(
                    "t/x.zone:4: bad {name} record: the \\# data is not valid {name} rdata:"
                )) && e.contains(want)
                    && e.ends_with(&format!("in \"a {t} \\# {data}\"")),
                "{t} {data}: {e}"
            );
        }
        // The generic form of well-formed data still parses, to the same rdata as text.
        let good = [
            ("MX", "5 000a016100", "MX 10 a."),
            ("TXT", "4 01610162", "TXT a b"),
            ("HINFO", "4 01610162", "HINFO a b"),
            ("CAA", "8 0005697373756561", "CAA 0 issue a"),
            ("SRV", "9 000100020003016100", "SRV 1 2 3 a."),
            ("A", "4 0a000001", "A 10.0.0.1"),
        ];
        for (t, data, text) in good {
            let rs = parse(&format!("{HEAD}a {t} \\# {data}\na {text}\n")).unwrap();
            assert_eq!(rs[1].rdata, rs[2].rdata, "{t} {data}");
        }
        let rs = parse(&format!(
            "{HEAD}a DS \\# 5 0001020300\na TYPE47 \\# 7 01610000020040\n"
        ))
        .unwrap();
        assert_eq!(rs.len(), 3);
    }

    #[test]
    fn includes_are_confined() {
        let dir = std::env::temp_dir().join(format!("zf-{}", std::process::id()));
        let zdir = dir.join("zones");
        std::fs::create_dir_all(&zdir).unwrap();
        std::fs::write(zdir.join("inc.zone"), "inc A 10.0.0.1\n").unwrap();
        std::fs::write(dir.join("secret"), "s A 10.0.0.2\n").unwrap();
        std::fs::write(zdir.join("loop.zone"), "$INCLUDE loop.zone\n").unwrap();
        let _ = std::os::unix::fs::symlink(dir.join("secret"), zdir.join("link.zone"));
        let main = zdir.join("main.zone");
        let ok = format!("{HEAD}$INCLUDE inc.zone\n");
        let rs = parse_str(&ok, &main, &origin()).unwrap();
        assert_eq!(rs.last().unwrap().owner.to_string(), "inc.example.test.");
        assert_eq!(
            rs.last()
                .unwrap()
                .source
                .as_ref()
                .unwrap()
                .file
                .file_name()
                .unwrap(),
            "inc.zone"
        );
        for bad in ["../secret", "link.zone", "/etc/passwd"] {
            let e = parse_str(&format!("{HEAD}$INCLUDE {bad}\n"), &main, &origin()).unwrap_err();
            assert!(e.to_string().contains("include refused"), "{bad}: {e}");
        }
        let e = parse_str(&format!("{HEAD}$INCLUDE loop.zone\n"), &main, &origin()).unwrap_err();
        assert!(e.to_string().contains("nested more than"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_round_trip_through_text() {
        let tricky = Record {
            owner: Name::parse("t.example.test.", None).unwrap(),
            rtype: rtype::TXT,
            class: class::IN,
            ttl: 30,
            rdata: b"\x13a\n$INCLUDE x \"q\" \\;".to_vec(),
            source: None,
        };
        let rs = parse(&format!("{HEAD}s SRV 1 2 3 t.example.org.\nu TYPE999 \\# 2 beef\nc CAA 128 iodef \"mailto:x\"\n")).unwrap();
        for r in rs.iter().chain([&tricky]) {
            let line = format_record(r, Some(&origin()));
            let back = parse(&format!("{HEAD}{line}\n")).unwrap();
            let got = back.last().unwrap();
            assert_eq!(
                (got.rtype, &got.rdata, &got.owner),
                (r.rtype, &r.rdata, &r.owner),
                "{line}"
            );
        }
    }

    #[test]
    fn random_input_never_panics() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let alphabet = b"abc019.;()\"\\ \t\n$@*#AINSRVTXT-_";
        for _ in 0..3000 {
            let len = (x % 120) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize] as char
                })
                .collect();
            let _ = parse(&s);
        }
    }

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("1h30m"), Some(5400));
        assert_eq!(parse_ttl("1W"), Some(604800));
        assert_eq!(parse_ttl("300"), Some(300));
        assert_eq!(parse_ttl("1h30"), None);
        assert_eq!(parse_ttl("x"), None);
        assert_eq!(parse_ttl("99999999999"), None);
    }
}
