//! Domain names in uncompressed wire form (RFC 1035 §3.1).
//!
//! A [`Name`] is the sequence of length-prefixed labels ending with the root label, exactly
//! as it goes on the wire when not compressed. Keeping names in wire form means the query
//! path compares and hashes bytes and never converts to text. Case is preserved as given;
//! [`Name::to_lowercase`] gives the canonical key used for lookups (RFC 4343).
//!
//! Limitations: only ASCII case folding (RFC 4343); labels other than normal labels (0x40,
//! 0x80 types) are rejected.

use std::fmt;

/// Maximum length of a name on the wire, including the root label (RFC 1035 §2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// Maximum length of one label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// An absolute domain name in uncompressed wire form.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

/// Why a name could not be read from text or wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("empty label in {0:?} (two dots in a row, or a leading dot)")]
    EmptyLabel(String),
    #[error("label longer than 63 octets in {0:?}")]
    LabelTooLong(String),
    #[error("name longer than 255 octets: {0:?}")]
    NameTooLong(String),
    #[error("bad escape sequence in {0:?} (use \\. or \\DDD with DDD <= 255)")]
    BadEscape(String),
    #[error("relative name {0:?} with no $ORIGIN to complete it")]
    NoOrigin(String),
    #[error("malformed wire-format name")]
    BadWire,
}

impl Name {
    /// The root name `.`.
    pub fn root() -> Name {
        Name(Box::new([0u8]))
    }

    /// Wraps bytes already known to be a valid uncompressed wire name.
    ///
    /// Returns an error if the bytes are not exactly one well-formed name.
    pub fn from_wire(wire: &[u8]) -> Result<Name, NameError> {
        let len = wire_name_len(wire).ok_or(NameError::BadWire)?;
        if len != wire.len() {
            return Err(NameError::BadWire);
        }
        Ok(Name(wire.into()))
    }

    /// Parses a name in master-file text form (RFC 1035 §5.1): `@`, relative names
    /// completed with `origin`, `\.` and `\DDD` escapes.
    pub fn parse(text: &str, origin: Option<&Name>) -> Result<Name, NameError> {
        if text == "@" {
            return origin
                .cloned()
                .ok_or_else(|| NameError::NoOrigin(text.into()));
        }
        Ok(Name(parse_wire(text, origin)?[..].into()))
    }

    /// Parses a name that is absolute whether or not it ends with a dot, as key names,
    /// zone names in the config and command-line names are (`update-key` is
    /// `update-key.`).
    pub fn parse_absolute(text: &str) -> Result<Name, NameError> {
        if text.ends_with('.') {
            Name::parse(text, None)
        } else {
            Name::parse(&format!("{text}."), None)
        }
    }

    /// The uncompressed wire bytes, root label included.
    pub fn as_wire(&self) -> &[u8] {
        &self.0
    }

    /// Length on the wire, uncompressed.
    pub fn wire_len(&self) -> usize {
        self.0.len()
    }

    /// True for the root name.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// The same name with ASCII letters folded to lower case: the lookup key.
    pub fn to_lowercase(&self) -> Name {
        let mut out = self.0.clone();
        lowercase_wire_in_place(&mut out);
        Name(out)
    }

    /// Case-insensitive equality (RFC 4343).
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }

    /// Number of labels, not counting the root label.
    pub fn label_count(&self) -> usize {
        self.labels().count()
    }

    /// The labels from left to right, without length bytes, not including the root.
    pub fn labels(&self) -> Labels<'_> {
        Labels { wire: &self.0 }
    }

    /// The first (leftmost) label, or `None` for the root.
    pub fn first_label(&self) -> Option<&[u8]> {
        self.labels().next()
    }

    /// The name with its leftmost label removed, or `None` for the root.
    pub fn parent(&self) -> Option<Name> {
        if self.is_root() {
            return None;
        }
        let l = self.0[0] as usize;
        Some(Name(self.0[l + 1..].into()))
    }

    /// Wire suffixes of this name from itself up to the root: `a.b.` yields `a.b.`, `b.`, `.`.
    /// Each item is a byte slice of this name, so walking ancestors does not allocate.
    pub fn suffixes(&self) -> Suffixes<'_> {
        Suffixes {
            wire: &self.0,
            done: false,
        }
    }

    /// True if `self` is `ancestor` or below it (case-insensitive).
    pub fn is_subdomain_of(&self, ancestor: &Name) -> bool {
        self.suffixes()
            .any(|s| s.len() == ancestor.0.len() && s.eq_ignore_ascii_case(&ancestor.0))
    }

    /// True if the leftmost label is exactly `*` (RFC 4592 §2.1.1).
    pub fn is_wildcard(&self) -> bool {
        self.0.len() >= 2 && self.0[0] == 1 && self.0[1] == b'*'
    }

    /// Prepends one label.
    pub fn prepend_label(&self, label: &[u8]) -> Result<Name, NameError> {
        if label.is_empty() || label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(
                String::from_utf8_lossy(label).into(),
            ));
        }
        let mut wire = Vec::with_capacity(self.0.len() + label.len() + 1);
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
        wire.extend_from_slice(&self.0);
        if wire.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(self.to_string()));
        }
        Ok(Name(wire.into_boxed_slice()))
    }

    /// Text form relative to `origin` when below it (`@` for the origin itself), for
    /// messages and zone output.
    pub fn to_relative_string(&self, origin: &Name) -> String {
        if self.eq_ignore_case(origin) {
            return "@".into();
        }
        if self.is_subdomain_of(origin) {
            let keep = self.0.len() - origin.0.len();
            let head = Name([&self.0[..keep], &[0u8][..]].concat().into_boxed_slice());
            let s = head.to_string();
            return s.trim_end_matches('.').to_string();
        }
        self.to_string()
    }
}

/// Folds ASCII letters of a wire name to lower case, leaving length bytes alone.
pub fn lowercase_wire_in_place(wire: &mut [u8]) {
    // Length bytes are <= 63, never in 'A'..='Z' (65..=90), so folding every byte is safe.
    wire.make_ascii_lowercase();
}

/// Length of the uncompressed wire name at the start of `wire`, if well formed.
pub fn wire_name_len(wire: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let l = *wire.get(i)? as usize;
        if l > MAX_LABEL_LEN {
            return None;
        }
        i += 1 + l;
        if i > MAX_NAME_LEN {
            return None;
        }
        if l == 0 {
            return Some(i);
        }
    }
}

/// A wire name on the stack: what [`parse_wire`] gives, so that a zone file's names can
/// be read without a heap allocation each (a large zone has hundreds of thousands).
#[derive(Clone, Copy)]
pub struct WireBuf {
    pub(super) buf: [u8; MAX_NAME_LEN],
    pub(super) len: usize,
}

impl WireBuf {
    /// No name yet (length 0), to be filled by the reader.
    pub(super) fn empty() -> WireBuf {
        WireBuf {
            buf: [0; MAX_NAME_LEN],
            len: 0,
        }
    }
}

impl std::ops::Deref for WireBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Parses a name in master-file text form (see [`Name::parse`]) into wire form on the
/// stack.
pub fn parse_wire(text: &str, origin: Option<&Name>) -> Result<WireBuf, NameError> {
    let mut out = WireBuf {
        buf: [0; MAX_NAME_LEN],
        len: 0,
    };
    let origin_wire = || {
        origin
            .map(Name::as_wire)
            .ok_or_else(|| NameError::NoOrigin(text.into()))
    };
    if text == "@" {
        let o = origin_wire()?;
        out.buf[..o.len()].copy_from_slice(o);
        out.len = o.len();
        return Ok(out);
    }
    if text == "." {
        out.len = 1;
        return Ok(out);
    }
    let w = &mut out.buf;
    let bytes = text.as_bytes();
    // Labels are written in place: `len_at` holds the current label's length byte, filled
    // in when the label ends.
    let mut len_at = 0usize;
    let mut pos = 1usize;
    let mut i = 0;
    let mut absolute = false;
    while i < bytes.len() {
        let c = bytes[i];
        let byte = match c {
            b'.' => {
                let l = pos - len_at - 1;
                if l == 0 {
                    return Err(NameError::EmptyLabel(text.into()));
                }
                w[len_at] = l as u8;
                // Room for the next length byte or the root label.
                if pos + 1 > MAX_NAME_LEN {
                    return Err(NameError::NameTooLong(text.into()));
                }
                len_at = pos;
                pos += 1;
                if i + 1 == bytes.len() {
                    absolute = true;
                }
                i += 1;
                continue;
            }
            b'\\' => {
                let rest = &bytes[i + 1..];
                if rest.len() >= 3 && rest[..3].iter().all(u8::is_ascii_digit) {
                    let v = (rest[0] - b'0') as u32 * 100
                        + (rest[1] - b'0') as u32 * 10
                        + (rest[2] - b'0') as u32;
                    if v > 255 {
                        return Err(NameError::BadEscape(text.into()));
                    }
                    i += 4;
                    v as u8
                } else if let Some(&next) = rest.first() {
                    i += 2;
                    next
                } else {
                    return Err(NameError::BadEscape(text.into()));
                }
            }
            _ => {
                i += 1;
                c
            }
        };
        if pos - len_at > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong(text.into()));
        }
        if pos >= MAX_NAME_LEN {
            return Err(NameError::NameTooLong(text.into()));
        }
        w[pos] = byte;
        pos += 1;
    }
    let open = pos - len_at - 1;
    if open > 0 {
        w[len_at] = open as u8;
        if pos + 1 > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(text.into()));
        }
    } else {
        pos = len_at; // the length byte reserved after a final dot
    }
    if absolute {
        w[pos] = 0;
        pos += 1;
    } else {
        let o = origin_wire()?;
        if pos + o.len() > MAX_NAME_LEN {
            return Err(NameError::NameTooLong(text.into()));
        }
        w[pos..pos + o.len()].copy_from_slice(o);
        pos += o.len();
    }
    out.len = pos;
    Ok(out)
}

/// Iterator over the labels of a [`Name`].
pub struct Labels<'a> {
    wire: &'a [u8],
}

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let l = *self.wire.first()? as usize;
        if l == 0 {
            return None;
        }
        let label = &self.wire[1..1 + l];
        self.wire = &self.wire[1 + l..];
        Some(label)
    }
}

/// Wire suffixes of a valid uncompressed wire name, longest first, root last.
pub fn suffixes(wire: &[u8]) -> Suffixes<'_> {
    Suffixes { wire, done: false }
}

/// Iterator over the wire suffixes of a [`Name`], longest first, root last.
pub struct Suffixes<'a> {
    wire: &'a [u8],
    done: bool,
}

impl<'a> Iterator for Suffixes<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.done {
            return None;
        }
        let cur = self.wire;
        let l = cur[0] as usize;
        if l == 0 {
            self.done = true;
        } else {
            self.wire = &cur[1 + l..];
        }
        Some(cur)
    }
}

/// Writes one label in master-file text form, escaping what would be misread.
pub fn write_label(f: &mut impl fmt::Write, label: &[u8]) -> fmt::Result {
    for &b in label {
        match b {
            b'.' | b'\\' | b'"' | b'(' | b')' | b';' | b'@' | b'$' => {
                f.write_char('\\')?;
                f.write_char(b as char)?;
            }
            0x21..=0x7e => f.write_char(b as char)?,
            _ => write!(f, "\\{b:03}")?,
        }
    }
    Ok(())
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            return f.write_str(".");
        }
        for label in self.labels() {
            write_label(f, label)?;
            f.write_str(".")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_absolute_and_relative() {
        let origin = Name::parse("example.test.", None).unwrap();
        assert_eq!(origin.as_wire(), b"\x07example\x04test\x00");
        let rel = Name::parse("infra0", Some(&origin)).unwrap();
        assert_eq!(rel.to_string(), "infra0.example.test.");
        assert_eq!(Name::parse("@", Some(&origin)).unwrap(), origin);
        assert_eq!(rel.to_relative_string(&origin), "infra0");
        assert_eq!(rel.parent().unwrap(), origin);
    }

    #[test]
    fn escapes_round_trip() {
        let n = Name::parse("a\\.b.c\\032d.", None).unwrap();
        assert_eq!(n.label_count(), 2);
        assert_eq!(n.to_string(), "a\\.b.c\\032d.");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            Name::parse("a..b.", None),
            Err(NameError::EmptyLabel(_))
        ));
        let long = "a".repeat(64);
        assert!(matches!(
            Name::parse(&format!("{long}."), None),
            Err(NameError::LabelTooLong(_))
        ));
        let many = "abcdefghi.".repeat(26);
        assert!(matches!(
            Name::parse(&many, None),
            Err(NameError::NameTooLong(_))
        ));
        assert!(matches!(
            Name::parse("rel", None),
            Err(NameError::NoOrigin(_))
        ));
    }

    /// The in-place writer at its limits: 63-octet labels, exactly 255 octets, relative
    /// names that only overflow once the origin is appended, a final dot.
    #[test]
    fn length_limits_are_exact() {
        let l63 = "a".repeat(63);
        let n = Name::parse(&format!("{l63}.{l63}.{l63}.{}.", "b".repeat(61)), None).unwrap();
        assert_eq!(n.wire_len(), 255);
        assert!(matches!(
            Name::parse(&format!("{l63}.{l63}.{l63}.{}.", "b".repeat(62)), None),
            Err(NameError::NameTooLong(_))
        ));
        assert!(Name::parse(&format!("{l63}."), None).is_ok());
        assert!(matches!(
            Name::parse(&format!("{l63}a"), Some(&Name::root())),
            Err(NameError::LabelTooLong(_))
        ));
        let origin = Name::parse(&format!("{l63}.{l63}."), None).unwrap();
        assert_eq!(
            Name::parse(&format!("{l63}.{}", "c".repeat(61)), Some(&origin))
                .unwrap()
                .wire_len(),
            255
        );
        assert!(matches!(
            Name::parse(&format!("{l63}.{}", "c".repeat(62)), Some(&origin)),
            Err(NameError::NameTooLong(_))
        ));
        assert!(matches!(
            Name::parse(".a.", None),
            Err(NameError::EmptyLabel(_))
        ));
        assert!(matches!(
            Name::parse("a\\", None),
            Err(NameError::BadEscape(_))
        ));
        assert!(matches!(
            Name::parse("a\\256.", None),
            Err(NameError::BadEscape(_))
        ));
        assert_eq!(Name::parse("", Some(&origin)).unwrap(), origin);
        assert_eq!(&*parse_wire("A.b.", None).unwrap(), b"\x01A\x01b\x00");
    }

    #[test]
    fn case_and_suffixes() {
        let a = Name::parse("WwW.Example.TEST.", None).unwrap();
        let b = Name::parse("www.example.test.", None).unwrap();
        assert!(a.eq_ignore_case(&b));
        assert_eq!(a.to_lowercase(), b);
        let sufs: Vec<_> = b.suffixes().map(|s| s.len()).collect();
        assert_eq!(sufs, vec![18, 14, 6, 1]);
        assert!(a.is_subdomain_of(&Name::parse("test.", None).unwrap()));
        assert!(Name::parse("*.x.", None).unwrap().is_wildcard());
        assert!(!Name::parse("a*.x.", None).unwrap().is_wildcard());
    }
}
