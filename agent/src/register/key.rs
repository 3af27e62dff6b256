//! The TSIG key: read from a BIND key file (as `tsig-keygen` prints it) and turned into
//! hickory's signer.

use std::path::Path;

use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};

pub use muster_conventions::keyfile::{parse_keys, Key};

use super::RegisterError;

/// TSIG fudge: the clock difference the server may accept (BIND's and nsupdate's value).
pub const FUDGE: u16 = 300;

/// A warning when users other than the owner of key file `path` may read it (anyone who
/// can read it can sign updates as this host).
pub fn key_mode_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "key file {} is readable by others (mode {mode:04o}): chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

/// The key to sign with: the only one in the file, or the one named.
pub fn load_key(path: &Path, name: Option<&str>) -> Result<Key, RegisterError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RegisterError::Usage(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    if let Some(w) = key_mode_warning(path) {
        eprintln!("muster-agent: warning: {w}");
    }
    let keys = parse_keys(&text)
        .map_err(|e| RegisterError::Usage(format!("key file {}: {e}", path.display())))?;
    let names = || {
        keys.iter()
            .map(|k| format!("{:?}", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => {
            let n = n.trim_end_matches('.');
            keys.iter()
                .find(|k| k.name.eq_ignore_ascii_case(n))
                .cloned()
                .ok_or_else(|| {
                    RegisterError::Usage(format!(
                        "key file {} has no key {n:?} (it has {})",
                        path.display(),
                        if keys.is_empty() {
                            "none".into()
                        } else {
                            names()
                        }
                    ))
                })
        }
        None => match keys.len() {
            1 => Ok(keys[0].clone()),
            0 => Err(RegisterError::Usage(format!(
                "key file {} holds no `key` statement (create one with `tsig-keygen NAME > FILE`)",
                path.display()
            ))),
            _ => Err(RegisterError::Usage(format!(
                "key file {} holds several keys ({}): choose one with --key-name",
                path.display(),
                names()
            ))),
        },
    }
}

/// hickory's signer for `key`.
pub fn signer(key: &Key) -> Result<TSigner, RegisterError> {
    let algorithm = match key.algorithm.as_str() {
        "hmac-sha256" => TsigAlgorithm::HmacSha256,
        "hmac-sha384" => TsigAlgorithm::HmacSha384,
        "hmac-sha512" => TsigAlgorithm::HmacSha512,
        other => {
            return Err(RegisterError::Usage(format!(
                "key {:?}: algorithm {other} is not supported by muster-agent (hmac-sha256, \
                 hmac-sha384, hmac-sha512 are): create the key with `tsig-keygen -a hmac-sha256 {}`",
                key.name, key.name
            )))
        }
    };
    let name = Name::from_ascii(&key.name).map_err(|e| {
        RegisterError::Usage(format!("key name {:?} is not a domain name: {e}", key.name))
    })?;
    TSigner::new(key.secret.clone(), algorithm, name, FUDGE)
        .map_err(|e| RegisterError::Usage(format!("key {:?}: {e}", key.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_algorithms_name_the_fix() {
        let k = Key {
            name: "k".into(),
            algorithm: "hmac-md5.sig-alg.reg.int".into(),
            secret: b"abc".to_vec(),
        };
        let e = signer(&k).err().unwrap().to_string();
        assert!(e.contains("tsig-keygen -a hmac-sha256 k"), "{e}");
    }
}
