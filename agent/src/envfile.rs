//! The systemd `EnvironmentFile=` that `muster-agent env` writes for an `ExecStartPre=`.
//!
//! systemd reads the file after ExecStartPre finishes, for ExecStart. Format: `KEY=value`
//! lines, `#` comments. systemd treats quotes, backslashes and (in command lines) `$`
//! specially and a value cannot span lines, so values containing any of them, control
//! characters, or leading/trailing blanks (which systemd strips) are refused rather than
//! escaped: none of them can occur in a correct plan, so one that does is a mistake to
//! report. The file is replaced atomically (temp file in the same directory + rename), so
//! etcd never reads half a file.

use std::io::Write;
use std::path::Path;

use crate::plan::Flag;

/// A value systemd would misread.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{key}={value:?}: {problem}, which systemd would misread in an EnvironmentFile; fix the flag or record it comes from")]
pub struct BadValue {
    /// Variable name.
    pub key: String,
    /// The value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// `ETCD_` + the flag upper-cased with `-` as `_`: the variable etcd reads for a flag.
pub fn env_name(flag: &str) -> String {
    format!("ETCD_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Checks one value.
pub fn check_value(key: &str, value: &str) -> Result<(), BadValue> {
    let bad = |problem: String| BadValue {
        key: key.into(),
        value: value.into(),
        problem,
    };
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '"' | '\'' | '\\' | '$' | '`'))
    {
        return Err(bad(format!("it contains {c:?}")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(
            "it contains a newline or another control character".into()
        ));
    }
    if value != value.trim() {
        return Err(bad("it starts or ends with white space".into()));
    }
    Ok(())
}

/// The file text for these etcd flags.
pub fn render(flags: &[Flag]) -> Result<String, BadValue> {
    let mut out = String::from(
        "# Written by muster-agent from the etcd discovery records; rewritten on every start.\n",
    );
    for (flag, value) in flags {
        let key = env_name(flag);
        check_value(&key, value)?;
        out.push_str(&key);
        out.push('=');
        out.push_str(value);
        out.push('\n');
    }
    Ok(out)
}

/// Writes `contents` to `path` atomically, creating the parent directory if needed, mode
/// 0644 (the file holds no secrets and etcd may run as another user).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".muster-agent-")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            env_name("initial-cluster-token"),
            "ETCD_INITIAL_CLUSTER_TOKEN"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for v in ["a\"b", "a'b", "a\\b", "a$b", "a\nb", " a", "a ", "a\tb"] {
            let e = check_value("ETCD_X", v).unwrap_err();
            assert!(e.to_string().contains("systemd would misread"), "{e}");
        }
        assert!(check_value(
            "ETCD_X",
            "m0=http://m0.c.test:2380,m1=http://m1.c.test:2380"
        )
        .is_ok());
        assert!(check_value("ETCD_X", "muster:c.test:prod").is_ok());
    }

    #[test]
    fn render_lines() {
        let text = render(&[
            ("name", "m0".into()),
            ("initial-cluster-state", "new".into()),
        ])
        .unwrap();
        assert!(
            text.ends_with("ETCD_NAME=m0\nETCD_INITIAL_CLUSTER_STATE=new\n"),
            "{text}"
        );
        let err = render(&[("initial-cluster-token", "a$b".into())]).unwrap_err();
        assert_eq!(err.key, "ETCD_INITIAL_CLUSTER_TOKEN");
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/bootstrap.env");
        write_atomic(&p, b"A=1\n", 0o644).unwrap();
        write_atomic(&p, b"A=2\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "A=2\n");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    }
}
