//! The lexical layer of master-file text, written once for the two grammars that use it:
//! zone files (RFC 1035 §5: `;` comments, parentheses, owner names) and BIND key files
//! (named.conf syntax: `#`, `//` and `/* */` comments, braces, `;` ending statements).
//!
//! A [`Scanner`] walks the text byte by byte and counts lines, so every token and every
//! error can name its line. It knows the pieces both grammars are made of — white space,
//! comments to the end of the line, block comments, double-quoted strings and bare words
//! — and nothing of what they mean: which bytes end a word, whether `;` is a comment or a
//! token, and how escapes decode (`\DDD` in zone data, a plain `\X` in key files) stay
//! with each grammar's parser.
//!
//! Zone files are large (hundreds of thousands of records), so the scanner allocates
//! nothing: words and quoted strings are slices of the text, escapes as written.

use std::borrow::Cow;

/// A cursor over master-file text that counts lines.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
}

/// A quoted string or block comment that the text ends inside; `line` is where it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unclosed {
    /// The line of the opening quote or `/*`.
    pub line: u32,
}

impl<'a> Scanner<'a> {
    /// A scanner at the start of `text`, on line 1.
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            pos: 0,
            line: 1,
        }
    }

    /// The byte under the cursor, `None` at the end.
    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    /// The byte `n` places after the cursor.
    #[inline]
    pub fn peek_at(&self, n: usize) -> Option<u8> {
        self.text.as_bytes().get(self.pos + n).copied()
    }

    /// The cursor's byte offset in the text.
    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The cursor's line, counting from 1.
    #[inline]
    pub fn line(&self) -> u32 {
        self.line
    }

    /// Steps over one byte, counting a newline.
    #[inline]
    pub fn bump(&mut self) {
        if let Some(c) = self.peek() {
            if c == b'\n' {
                self.line += 1;
            }
            self.pos += 1;
        }
    }

    /// Skips a comment to the end of its line. The newline stays under the cursor: in a
    /// zone file it ends the entry.
    #[inline]
    pub fn skip_line(&mut self) {
        let rest = &self.text.as_bytes()[self.pos..];
        self.pos += rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
    }

    /// Skips a `/* ... */` comment; the cursor is on its `/`.
    pub fn skip_block_comment(&mut self) -> Result<(), Unclosed> {
        let start = self.line;
        self.pos += 2;
        loop {
            match self.peek() {
                None => return Err(Unclosed { line: start }),
                Some(b'*') if self.peek_at(1) == Some(b'/') => {
                    self.pos += 2;
                    return Ok(());
                }
                Some(_) => self.bump(),
            }
        }
    }

    /// Reads a double-quoted string; the cursor is on its opening quote. Gives the text
    /// between the quotes with its escapes as written (a backslash protects the byte after
    /// it, a quote or a newline too): the grammar decodes them.
    #[inline]
    pub fn quoted(&mut self) -> Result<&'a str, Unclosed> {
        let b = self.text.as_bytes();
        let start_line = self.line;
        self.pos += 1;
        let start = self.pos;
        loop {
            match b.get(self.pos) {
                None => return Err(Unclosed { line: start_line }),
                Some(b'"') => break,
                Some(b'\\') if self.pos + 1 < b.len() => {
                    self.pos += 1;
                    self.bump();
                }
                Some(_) => self.bump(),
            }
        }
        self.pos += 1;
        // Both ends are ASCII quotes, so the slice is on character boundaries.
        Ok(&self.text[start..self.pos - 1])
    }

    /// Reads a bare word from the cursor up to the first byte for which `ends(bytes, i)`
    /// holds (or the end of the text). With `escapes`, a backslash protects the byte after
    /// it unless that is a newline, so `\;` or `\ ` stay inside the word. `ends` must hold
    /// only for ASCII bytes, so the word ends on a character boundary.
    #[inline]
    pub fn word(&mut self, escapes: bool, ends: impl Fn(&[u8], usize) -> bool) -> &'a str {
        let b = self.text.as_bytes();
        let start = self.pos;
        let mut i = start;
        while i < b.len() {
            if escapes && b[i] == b'\\' && i + 1 < b.len() && b[i + 1] != b'\n' {
                i += 2;
            } else if ends(b, i) {
                break;
            } else {
                i += 1;
            }
        }
        // A word holds no newline (the grammars end words at white space), so the line
        // count stays right.
        self.pos = i;
        &self.text[start..i]
    }
}

/// Decodes the escapes of a named.conf string: a backslash takes the next character as it
/// is. (Zone data has its own `\DDD` form, decoded with the record data.)
pub fn unescape_plain(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blank(b: &[u8], i: usize) -> bool {
        matches!(b[i], b' ' | b'\t' | b'\n' | b';')
    }

    #[test]
    fn words_quotes_and_lines() {
        let mut s = Scanner::new("ab\\;c d\n\"x\\\"y\nz\" é;w");
        assert_eq!(s.word(true, blank), "ab\\;c");
        s.bump();
        assert_eq!(s.word(false, blank), "d");
        s.bump();
        assert_eq!(s.line(), 2);
        assert_eq!(s.quoted(), Ok("x\\\"y\nz"));
        assert_eq!(s.line(), 3);
        s.bump();
        // A non-ASCII word ends on a character boundary.
        assert_eq!(s.word(false, blank), "é");
        assert_eq!(s.peek(), Some(b';'));
        s.skip_line();
        assert_eq!(s.peek(), None);
        assert_eq!(s.pos(), s.text.len());
    }

    #[test]
    fn escaped_newline_in_a_word_is_not_protected() {
        let mut s = Scanner::new("a\\\nb");
        assert_eq!(s.word(true, blank), "a\\");
        assert_eq!(s.peek(), Some(b'\n'));
        // A trailing backslash is a plain byte.
        assert_eq!(Scanner::new("a\\").word(true, blank), "a\\");
    }

    #[test]
    fn comments() {
        let mut s = Scanner::new("; one\n/* two\nthree */x");
        s.skip_line();
        assert_eq!((s.peek(), s.line()), (Some(b'\n'), 1));
        s.bump();
        assert_eq!(s.skip_block_comment(), Ok(()));
        assert_eq!((s.peek(), s.line()), (Some(b'x'), 3));
        let mut s = Scanner::new("\n/* never closed\n");
        s.bump();
        assert_eq!(s.skip_block_comment(), Err(Unclosed { line: 2 }));
        // `/*/` does not close itself.
        assert_eq!(
            Scanner::new("/*/").skip_block_comment(),
            Err(Unclosed { line: 1 })
        );
    }

    #[test]
    fn unclosed_quotes_name_their_first_line() {
        for text in ["\"abc", "\"abc\\\"", "\"a\nb\\"] {
            let mut s = Scanner::new(text);
            assert_eq!(s.quoted(), Err(Unclosed { line: 1 }), "{text:?}");
        }
        let mut s = Scanner::new("\"\"");
        assert_eq!(s.quoted(), Ok(""));
        assert_eq!(s.peek(), None);
    }

    #[test]
    fn plain_unescape() {
        assert!(matches!(unescape_plain("abc"), Cow::Borrowed("abc")));
        assert_eq!(unescape_plain("a\\\"b\\\\c\\é"), "a\"b\\cé");
        assert_eq!(unescape_plain("end\\"), "end");
    }
}
