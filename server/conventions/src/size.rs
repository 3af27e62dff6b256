//! The cluster-size record: a TXT record `"muster-size=N"` at an etcd server SRV owner
//! name says the cluster has N members, so that a stable set of records can be told
//! from a complete one (musterd withholds the SRV set until N targets have addresses;
//! muster-agent bootstraps only from N members).
//!
//! The rule for one record: when its first character-string starts with
//! [`SIZE_PREFIX`], the whole record must be exactly one character-string
//! `muster-size=N`, N a decimal number above 0 that fits in 32 bits; anything else that
//! starts with the prefix is malformed (never silently ignored). Records that do not
//! start with the prefix are not size records.

/// What a TXT record's first character-string starts with when it declares a size.
pub const SIZE_PREFIX: &str = "muster-size";

/// What one TXT record says about the cluster size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRecord {
    /// Not a size record (its first character-string does not start with
    /// [`SIZE_PREFIX`], or it has none).
    NotSize,
    /// `muster-size=N`.
    Size(u32),
    /// Starts with [`SIZE_PREFIX`] but is not exactly one `muster-size=N`, N > 0.
    Malformed,
}

/// Reads one TXT record, given as its character-strings (text or wire bytes).
pub fn size_record<S: AsRef<[u8]>>(strings: &[S]) -> SizeRecord {
    let Some(first) = strings.first() else {
        return SizeRecord::NotSize;
    };
    if !first.as_ref().starts_with(SIZE_PREFIX.as_bytes()) {
        return SizeRecord::NotSize;
    }
    let n = match strings {
        [one] => std::str::from_utf8(one.as_ref())
            .ok()
            .and_then(|s| s.strip_prefix(SIZE_PREFIX)?.strip_prefix('='))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|&n| n > 0),
        _ => None,
    };
    n.map_or(SizeRecord::Malformed, SizeRecord::Size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_string_muster_size_n() {
        assert_eq!(size_record(&["muster-size=3"]), SizeRecord::Size(3));
        assert_eq!(
            size_record(&[b"muster-size=12".to_vec()]),
            SizeRecord::Size(12)
        );
        for not in [&["v=spf1"][..], &[], &["x", "muster-size=3"]] {
            assert_eq!(size_record(not), SizeRecord::NotSize, "{not:?}");
        }
        for bad in [
            &["muster-size=0"][..],
            &["muster-size="],
            &["muster-size=3x"],
            &["muster-size=+3"],
            &["muster-size 3"],
            &["muster-size=3", "more"],
            &["muster-size=99999999999"],
        ] {
            assert_eq!(size_record(bad), SizeRecord::Malformed, "{bad:?}");
        }
    }
}
