//! BIND key files, as `tsig-keygen NAME` prints them: `key "NAME" { algorithm ALG;
//! secret "BASE64"; };`, in named.conf syntax (quoted strings, `#`, `//` and `/* */`
//! comments). Other statements are skipped, as a key file included from named.conf may
//! hold them.

use std::fmt;

/// One TSIG key of a BIND key file.
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

/// Splits named.conf syntax into tokens: quoted strings (quotes removed, marked by
/// `true`), words, and the punctuation `{ } ;`. Comments `#`, `//` and `/* */` are skipped.
fn tokens(text: &str) -> Result<Vec<(String, bool)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => {
                chars.by_ref().find(|&c| c == '\n');
            }
            '/' => {
                chars.next();
                match chars.next() {
                    Some('/') => {
                        chars.by_ref().find(|&c| c == '\n');
                    }
                    Some('*') => {
                        let mut prev = ' ';
                        loop {
                            match chars.next() {
                                Some('/') if prev == '*' => break,
                                Some(c) => prev = c,
                                None => return Err("a /* comment is not closed".into()),
                            }
                        }
                    }
                    _ => return Err("a stray '/' (comments are #, // or /* */)".into()),
                }
            }
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => s.extend(chars.next()),
                        Some(c) => s.push(c),
                        None => return Err("a quoted string is not closed".into()),
                    }
                }
                out.push((s, true));
            }
            '{' | '}' | ';' => {
                chars.next();
                out.push((c.to_string(), false));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                out.push((s, false));
            }
        }
    }
    Ok(out)
}

/// Reads every `key "NAME" { algorithm ALG; secret "BASE64"; };` statement of a BIND key
/// file, as `tsig-keygen` prints it (other statements are skipped, as a key file included
/// from named.conf may hold them).
pub fn parse_keys(text: &str) -> Result<Vec<Key>, String> {
    let toks = tokens(text)?;
    let mut keys = Vec::new();
    let mut i = 0;
    let punct = |i: usize, p: &str| toks.get(i).is_some_and(|(t, q)| !q && t == p);
    while i < toks.len() {
        let (word, quoted) = &toks[i];
        if *quoted || !word.eq_ignore_ascii_case("key") {
            // Skip one statement: up to its `;` at depth 0.
            let mut depth = 0usize;
            while i < toks.len() {
                if punct(i, "{") {
                    depth += 1;
                } else if punct(i, "}") {
                    depth = depth.saturating_sub(1);
                } else if punct(i, ";") && depth == 0 {
                    break;
                }
                i += 1;
            }
            i += 1;
            continue;
        }
        let name = toks
            .get(i + 1)
            .filter(|(t, _)| !punct(i + 1, "{") && !t.is_empty())
            .map(|(t, _)| t.trim_end_matches('.').to_string())
            .ok_or("`key` must be followed by the key's name")?;
        if !punct(i + 2, "{") {
            return Err(format!("key {name:?}: expected `{{` after the name"));
        }
        i += 3;
        let (mut algorithm, mut secret) = (None, None);
        while !punct(i, "}") {
            let field = toks
                .get(i)
                .map(|(t, _)| t.to_ascii_lowercase())
                .ok_or_else(|| format!("key {name:?}: missing `}};`"))?;
            let value = toks
                .get(i + 1)
                .filter(|_| punct(i + 2, ";"))
                .map(|(t, _)| t.clone())
                .ok_or_else(|| format!("key {name:?}: `{field}` needs a value and `;`"))?;
            match field.as_str() {
                "algorithm" => {
                    algorithm = Some(value.to_ascii_lowercase().trim_end_matches('.').to_string())
                }
                "secret" => secret = Some(value),
                other => return Err(format!("key {name:?}: unknown field `{other}`")),
            }
            i += 3;
        }
        if !punct(i + 1, ";") {
            return Err(format!("key {name:?}: expected `;` after `}}`"));
        }
        i += 2;
        let algorithm = algorithm.ok_or_else(|| format!("key {name:?} has no algorithm"))?;
        let secret = secret.ok_or_else(|| format!("key {name:?} has no secret"))?;
        let compact: String = secret.chars().filter(|c| !c.is_whitespace()).collect();
        let secret = data_encoding::BASE64
            .decode(compact.as_bytes())
            .map_err(|e| format!("key {name:?}: the secret is not base64 ({e})"))?;
        if secret.is_empty() {
            return Err(format!("key {name:?}: the secret is empty"));
        }
        keys.push(Key {
            name,
            algorithm,
            secret,
        });
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
    }

    #[test]
    fn broken_key_files_are_refused() {
        for (text, want) in [
            ("key \"k\" { algorithm hmac-sha256; };", "no secret"),
            ("key \"k\" { secret \"YWJj\"; };", "no algorithm"),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"!!\"; };",
                "not base64",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YWJj\" };",
                "needs a value",
            ),
            (
                "key \"k\" { algorithm hmac-sha256; secret \"YWJj; };",
                "not closed",
            ),
            ("key \"k\" { algo hmac-sha256; };", "unknown field"),
        ] {
            let e = parse_keys(text).expect_err(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
