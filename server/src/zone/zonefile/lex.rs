//! Zone text into entries (RFC 1035 §5.1): one per record or directive, parenthesised
//! lines joined, `;` comments dropped, a leading blank remembered for the owner rule.
//!
//! The bytes themselves — quoted strings, escaped words, comments, line numbers — are read
//! by the scanner key files are read with ([`muster_conventions::text`]); this module adds
//! what only zone files have: entries, parentheses and blank owners.

use std::ops::Range;

use muster_conventions::text::{Scanner, Unclosed};

/// A token of an entry: its text as written (escapes kept; a quoted string without its
/// quotes) and whether it was quoted. Borrowed from the file text: lexing allocates
/// nothing per token.
#[derive(Clone, Copy)]
pub(super) struct Token<'a> {
    pub(super) text: &'a str,
    pub(super) quoted: bool,
}

/// One logical entry: the tokens of a record or directive.
pub(super) struct Entry {
    pub(super) line: u32,
    /// The entry began with white space: the owner is the previous one.
    pub(super) blank_owner: bool,
    /// Range of this entry's tokens in the lexer's token list.
    pub(super) tokens: Range<usize>,
    /// Byte range of the entry's text, for error messages.
    pub(super) start: usize,
    pub(super) end: usize,
}

/// A file that cannot be split into entries: the line and what is wrong.
pub(super) type LexError = (u32, String);

/// A word of a zone file ends at white space, a comment, a parenthesis or a quote.
#[inline]
fn ends_word(b: &[u8], i: usize) -> bool {
    matches!(
        b[i],
        b' ' | b'\t' | b'\r' | b'\n' | b';' | b'(' | b')' | b'"'
    )
}

/// Splits text into entries, joining parenthesised lines (RFC 1035 §5.1).
/// Gives the entries and, in one list, the tokens they refer to.
pub(super) fn lex(text: &str) -> Result<(Vec<Entry>, Vec<Token<'_>>), LexError> {
    let mut l = Lexer {
        s: Scanner::new(text),
        entries: Vec::new(),
        toks: Vec::with_capacity(text.len() / 6),
        depth: 0,
        open_line: 0,
        cur: None,
        at_line_start: true,
    };
    while let Some(c) = l.s.peek() {
        match c {
            b'\n' => l.newline(),
            b' ' | b'\t' | b'\r' => l.blank(),
            b';' => l.s.skip_line(),
            b'(' => l.open(),
            b')' => l.close()?,
            _ => l.token(c)?,
        }
    }
    l.finish()
}

/// The state of [`lex`] between bytes.
struct Lexer<'a> {
    s: Scanner<'a>,
    entries: Vec<Entry>,
    toks: Vec<Token<'a>>,
    /// Parentheses open now, and the line the outermost was opened on.
    depth: u32,
    open_line: u32,
    /// The entry being read.
    cur: Option<Entry>,
    at_line_start: bool,
}

impl<'a> Lexer<'a> {
    /// A newline ends the entry unless parentheses are open.
    #[inline]
    fn newline(&mut self) {
        self.s.bump();
        if self.depth == 0 {
            if let Some(e) = self.cur.take() {
                self.entries.push(e);
            }
        }
        self.at_line_start = true;
    }

    #[inline]
    fn blank(&mut self) {
        if self.at_line_start && self.depth == 0 && self.cur.is_none() {
            // Leading white space: remember it for the blank-owner rule.
            self.cur = Some(self.entry_here(true));
        }
        self.at_line_start = false;
        self.s.bump();
    }

    fn open(&mut self) {
        if self.depth == 0 {
            self.open_line = self.s.line();
        }
        self.depth += 1;
        self.at_line_start = false;
        self.s.bump();
    }

    fn close(&mut self) -> Result<(), LexError> {
        if self.depth == 0 {
            return Err((self.s.line(), "\")\" without a matching \"(\"".into()));
        }
        self.depth -= 1;
        self.s.bump();
        Ok(())
    }

    /// A word or a quoted string, starting with byte `c`.
    #[inline]
    fn token(&mut self, c: u8) -> Result<(), LexError> {
        self.at_line_start = false;
        if self.cur.is_none() {
            self.cur = Some(self.entry_here(false));
        }
        let token = if c == b'"' {
            // The text between the quotes, escapes kept (decoded with the rdata).
            let text = self.s.quoted().map_err(|Unclosed { line }| {
                (line, "quoted string is not closed (missing \")".to_string())
            })?;
            Token { text, quoted: true }
        } else {
            Token {
                text: self.s.word(true, ends_word),
                quoted: false,
            }
        };
        self.toks.push(token);
        let entry = self.cur.as_mut().expect("an entry was begun above");
        entry.tokens.end = self.toks.len();
        entry.end = self.s.pos();
        Ok(())
    }

    /// A new entry at the cursor.
    #[inline]
    fn entry_here(&self, blank_owner: bool) -> Entry {
        let (n, pos) = (self.toks.len(), self.s.pos());
        Entry {
            line: self.s.line(),
            blank_owner,
            tokens: n..n,
            start: pos,
            end: pos,
        }
    }

    fn finish(mut self) -> Result<(Vec<Entry>, Vec<Token<'a>>), LexError> {
        if self.depth > 0 {
            return Err((
                self.open_line,
                "\"(\" opened here is not closed before the end of the file".into(),
            ));
        }
        if let Some(e) = self.cur.take() {
            self.entries.push(e);
        }
        Ok((self.entries, self.toks))
    }
}
