//! RFC 1035 §5 master files ("zone files") into records, with errors that name the file,
//! the line and the record.
//!
//! Supported: `$ORIGIN`, `$TTL`, `$INCLUDE file [origin]` (confined to the zone's own
//! directory), `( ... )` multi-line records, `;` comments, quoted strings with `\"` and
//! `\DDD` escapes, blank owners (the previous owner), TTL and class in either order, TTL
//! units (`1h30m`), A, AAAA, NS, CNAME, PTR, DNAME, SOA, MX, TXT, SPF, SRV, CAA, HINFO,
//! DHCID, SSHFP, TLSA, and any type in the RFC 3597 form `TYPE65534 \# 4 0a000001`.
//! Whichever form a record is written in, its data goes through
//! [`check_rdata`](crate::proto::rr::check_rdata): a known type's `\#` data must have that
//! type's structure, as its text form would.
//!
//! Limitations: no `$GENERATE`; DNSSEC types only in RFC 3597 form; class IN only.
//!
//! Here: directives, owners, TTLs and classes. `lex` splits the text into entries (on
//! the scanner key files share, `muster_conventions::text`), `rdata` reads each type's
//! data, `print` writes records back as text.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::proto::name::Name;
use crate::proto::rr::{Origin, Rclass, Record, Rtype};

use lex::{lex, Entry, Token};

mod lex;
mod print;
mod rdata;
#[cfg(test)]
mod tests;

pub use print::{format_record, rdata_to_text};

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
            if !e.blank_owner && toks[0].text.starts_with('$') {
                self.directive(file, text, e, toks, &mut origin, depth);
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

    /// A `$` directive: `$ORIGIN` and `$TTL` change the state, `$INCLUDE` reads a file.
    fn directive(
        &mut self,
        file: &Path,
        text: &str,
        e: &Entry,
        toks: &[Token<'_>],
        origin: &mut Name,
        depth: usize,
    ) {
        let first = toks[0].text;
        let args: Vec<&str> = toks[1..].iter().map(|t| t.text).collect();
        let rec = snippet(text, e);
        match first.to_ascii_uppercase().as_str() {
            "$ORIGIN" => match args.as_slice() {
                [o] => match Name::parse(o, Some(origin)) {
                    Ok(n) => *origin = n,
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
                    return;
                }
                let inc_origin = match args.get(1) {
                    Some(o) => match Name::parse(o, Some(origin)) {
                        Ok(n) => n,
                        Err(err) => {
                            self.error(
                                file,
                                e.line,
                                rec,
                                ZoneFileErrorKind::Syntax(format!("bad $INCLUDE origin: {err}")),
                            );
                            return;
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
                if let Some(c) = Rclass::from_text(t.text) {
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
        let cls = cls.unwrap_or(Rclass::IN);
        if cls != Rclass::IN {
            return Err(syntax(format!(
                "class {} is not served; only IN records belong in a zone file",
                cls
            )));
        }
        let type_tok = toks.next().ok_or_else(|| {
            syntax(format!(
                "record \"{}\" has no type (expected e.g. A, AAAA, SRV after the owner, TTL and class)",
                snippet(text, e)
            ))
        })?;
        let rt = Rtype::from_text(type_tok.text)
            .ok_or_else(|| syntax(format!("unknown record type \"{}\"", type_tok.text)))?;
        let rest = &tokens[tokens.len() - toks.len()..];
        let rdata =
            rdata::from_text(rt, rest, origin).map_err(|reason| ZoneFileErrorKind::Rdata {
                rtype: rt.to_string(),
                reason,
            })?;
        let ttl = match ttl
            .or(self.ttl.default)
            .or(self.ttl.last)
            .or(self.ttl.soa_minimum)
        {
            Some(t) => t,
            None if rt == Rtype::SOA => 0, // fixed below from MINIMUM
            None => {
                return Err(syntax(
                    "record has no TTL and no $TTL is set; add \"$TTL 300\" at the top".into(),
                ))
            }
        };
        let ttl = if rt == Rtype::SOA {
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
