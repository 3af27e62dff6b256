//! The subject alternative names (RFC 5280 §4.2.1.6) a member's peer certificate needs
//! for stock etcd's DNS discovery, and the check of a PEM certificate against them.
//!
//! docs/etcd-discovery.md §6: with https peers and no `--peer-trusted-ca-file`, etcd
//! verifies every peer's server certificate against the bare discovery domain, which must
//! therefore be a DNS SAN; with a trusted CA the name peers dial (the SRV target) must be.
//! With `--peer-client-cert-auth` the connecting side is checked too: an IP SAN equal to
//! its address, or a DNS SAN that resolves to it (the target name does).
//!
//! Limitations: the certificate chain and signature are not verified (doctor has no CA to
//! verify against); only the first certificate of the file is read.

use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The file.
    pub file: String,
    /// DNS SANs, lower-case.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
    /// Seconds since the epoch after which it is no longer valid.
    pub not_after: i64,
    /// Seconds since the epoch before which it is not valid yet.
    pub not_before: i64,
}

/// Reads the first certificate of a PEM file.
pub fn load(path: &Path) -> Result<CertInfo, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "{} holds a {:?} block, not a CERTIFICATE: give the certificate, not the key",
            path.display(),
            pem.label
        ));
    }
    let (_, cert) = X509Certificate::from_der(&pem.contents)
        .map_err(|e| format!("{} is not an X.509 certificate: {e}", path.display()))?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.trim_end_matches('.').to_ascii_lowercase()),
                GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    Ok(CertInfo {
        file: path.display().to_string(),
        dns,
        ips,
        not_after: validity.not_after.timestamp(),
        not_before: validity.not_before.timestamp(),
    })
}

/// True when a DNS SAN (possibly `*.` wildcard for one label, RFC 6125 §6.4.3) covers
/// `name`.
pub fn covers(san: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if san == name {
        return true;
    }
    match san.strip_prefix("*.") {
        Some(rest) => name
            .split_once('.')
            .is_some_and(|(first, tail)| !first.is_empty() && tail == rest),
        None => false,
    }
}

impl CertInfo {
    /// True when some DNS SAN covers `name`.
    pub fn has_dns(&self, name: &str) -> bool {
        self.dns.iter().any(|s| covers(s, name))
    }

    /// The SANs, as `DNS:x` and `IP:y`.
    pub fn sans(&self) -> Vec<String> {
        self.dns
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ips.iter().map(|i| format!("IP:{i}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.d.test", "m1.d.test."));
        assert!(!covers("*.d.test", "d.test"));
        assert!(!covers("*.d.test", "a.m1.d.test"));
        assert!(covers("d.test", "D.Test."));
    }
}
