//! What this host publishes: its name in the zone, the addresses to publish (given, or
//! the interface addresses other hosts can reach) and its SRV records.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, RecordType};

use super::{RegisterConfig, RegisterError};
use crate::cluster::records::{Role, Service};
use crate::cluster::Scheme;

/// What this host wants the zone to hold.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The zone (absolute).
    pub zone: Name,
    /// This host's name (absolute, in the zone).
    pub host: Name,
    /// Addresses to publish (empty with `deregister`).
    pub addresses: Vec<IpAddr>,
    /// TTL of every added record.
    pub ttl: u32,
    /// The SRV records to publish: owner and rdata (target = `host`).
    pub srv: Vec<(Name, SRV)>,
    /// Every SRV owner whose records of this host are managed (stale ones deleted).
    pub srv_owners: Vec<Name>,
    /// Remove instead of publish.
    pub deregister: bool,
}

pub(super) fn absolute(s: &str, what: &str) -> Result<Name, RegisterError> {
    let mut n = Name::from_ascii(s.trim())
        .map_err(|e| RegisterError::Usage(format!("{what} {s:?} is not a domain name: {e}")))?;
    n.set_fqdn(true);
    Ok(n.to_lowercase())
}

/// The host's name: a name already in the zone stays as it is, anything else (one label,
/// or a relative name) goes under the zone.
pub fn host_name(given: &str, zone: &Name) -> Result<Name, RegisterError> {
    let given = given.trim();
    if given.is_empty() || given.contains(char::is_whitespace) {
        return Err(RegisterError::Usage(format!(
            "--hostname {given:?} is not a host name"
        )));
    }
    let n = absolute(given, "--hostname")?;
    if zone.zone_of(&n) && n != *zone {
        return Ok(n);
    }
    if given.ends_with('.') {
        return Err(RegisterError::Usage(format!(
            "--hostname {given} is not in zone {zone}: an update can only change names in its zone"
        )));
    }
    let rel = Name::from_ascii(given.trim_end_matches('.'))
        .map_err(|e| RegisterError::Usage(format!("--hostname {given:?}: {e}")))?;
    rel.append_domain(zone)
        .map(|n| n.to_lowercase())
        .map_err(|e| RegisterError::Usage(format!("--hostname {given:?} under {zone}: {e}")))
}

/// The kernel's host name, first label (DHCP hosts often carry a search domain there).
fn kernel_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            let s = std::fs::read_to_string(p).ok()?;
            let first = s.trim().split('.').next()?.to_string();
            (!first.is_empty() && first != "localhost").then_some(first)
        })
}

/// Addresses worth publishing by default: not loopback, link-local, multicast or
/// unspecified (other hosts could not reach them).
pub fn publishable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            !(v6.is_loopback() || link_local || v6.is_multicast() || v6.is_unspecified())
        }
    }
}

impl Spec {
    /// Checks the arguments and finds the defaults (host name, interface addresses).
    pub fn from_config(args: &RegisterConfig) -> Result<Spec, RegisterError> {
        let zone = absolute(&args.zone, "--zone")?;
        let given = match &args.hostname {
            Some(h) => h.clone(),
            None => kernel_hostname().ok_or_else(|| {
                RegisterError::Usage(
                    "this host has no usable host name: pass --hostname NAME".into(),
                )
            })?,
        };
        let host = host_name(&given, &zone)?;
        let mut addresses = if args.deregister {
            Vec::new()
        } else if !args.address.is_empty() {
            args.address.clone()
        } else {
            let all = crate::discover::local_addresses().map_err(|e| {
                RegisterError::Failed(format!("cannot read this host's interface addresses: {e}"))
            })?;
            all.into_iter().filter(publishable).collect()
        };
        addresses.sort();
        addresses.dedup();
        if !args.deregister && addresses.is_empty() {
            return Err(RegisterError::Failed(
                "this host has no address to publish (none but loopback or link-local): pass --address IP".into(),
            ));
        }
        if let Some(bad) = addresses
            .iter()
            .find(|ip| ip.is_unspecified() || ip.is_multicast())
        {
            return Err(RegisterError::Usage(format!(
                "--address {bad} cannot be a host's address"
            )));
        }
        let (mut srv, mut srv_owners) = (Vec::new(), Vec::new());
        if let Some(domain) = &args.cluster {
            let service =
                Service::new(domain, args.srv_name.as_deref()).map_err(RegisterError::Usage)?;
            let scheme = args.scheme;
            for s in [Scheme::Http, Scheme::Https] {
                for (role, port) in [
                    (Role::Server, args.srv_port),
                    (Role::Client, args.client_srv_port),
                ] {
                    let owner = absolute(&service.record(role, s), "the SRV name")?;
                    if !zone.zone_of(&owner) {
                        return Err(RegisterError::Usage(format!(
                            "the SRV name {owner} is not in zone {zone}: pass the zone that holds --cluster {}",
                            service.domain
                        )));
                    }
                    if let (Some(port), true) = (port, s == scheme) {
                        srv.push((owner.clone(), SRV::new(0, 0, port, host.clone())));
                    }
                    srv_owners.push(owner);
                }
            }
        }
        Ok(Spec {
            zone,
            host,
            addresses,
            ttl: args.ttl,
            srv,
            srv_owners,
            deregister: args.deregister,
        })
    }

    pub(super) fn wanted(&self, t: RecordType) -> Vec<RData> {
        self.addresses
            .iter()
            .filter_map(|ip| match (ip, t) {
                (IpAddr::V4(v4), RecordType::A) => Some(RData::A(A(*v4))),
                (IpAddr::V6(v6), RecordType::AAAA) => Some(RData::AAAA(AAAA(*v6))),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_go_under_the_zone() {
        let zone = Name::from_ascii("example.test.").unwrap();
        assert_eq!(
            host_name("m1", &zone).unwrap().to_ascii(),
            "m1.example.test."
        );
        assert_eq!(
            host_name("M1.Example.Test", &zone).unwrap().to_ascii(),
            "m1.example.test."
        );
        assert_eq!(
            host_name("m1.rack2", &zone).unwrap().to_ascii(),
            "m1.rack2.example.test."
        );
        assert!(host_name("m1.other.test.", &zone).is_err());
        assert!(host_name("a b", &zone).is_err());
    }

    #[test]
    fn default_addresses_skip_unreachable_ones() {
        for ip in ["127.0.0.1", "::1", "fe80::1", "169.254.1.1", "224.0.0.1"] {
            assert!(!publishable(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.5", "192.0.2.1", "2001:db8::5", "fd00::5"] {
            assert!(publishable(&ip.parse().unwrap()), "{ip}");
        }
    }
}
