//! etcd's SRV owner names (RFC 2782 form, as etcd's `--discovery-srv` reads them):
//! `_etcd-server-ssl[-S]._tcp.DOMAIN` and `_etcd-server[-S]._tcp.DOMAIN` for the peers
//! (TLS and plain), `_etcd-client-ssl[-S]._tcp.DOMAIN` and `_etcd-client[-S]._tcp.DOMAIN`
//! for the clients. `-S` is the `--discovery-srv-name` suffix.

/// The first label of a peer set, without `-ssl` or a suffix.
pub const SERVER: &str = "_etcd-server";
/// The first label of a client set, without `-ssl` or a suffix.
pub const CLIENT: &str = "_etcd-client";
/// What TLS sets add to the first label.
pub const SSL: &str = "-ssl";
/// The second label of every owner name.
pub const TCP: &str = "_tcp";

/// Who reads a set: etcd peers or clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `_etcd-server*`: the members.
    Server,
    /// `_etcd-client*`: the members' client ports.
    Client,
}

/// The parts of an etcd SRV owner name's first label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerLabel {
    /// Peers or clients.
    pub role: Role,
    /// The `-ssl` set.
    pub tls: bool,
    /// The `--discovery-srv-name` suffix, lower-case; empty for none.
    pub suffix: String,
}

/// The first label, e.g. `_etcd-server-ssl-prod` (`suffix` None or empty: none).
pub fn owner_label(role: Role, tls: bool, suffix: Option<&str>) -> String {
    let role = match role {
        Role::Server => SERVER,
        Role::Client => CLIENT,
    };
    let ssl = if tls { SSL } else { "" };
    let suffix = suffix
        .filter(|s| !s.is_empty())
        .map(|s| format!("-{s}"))
        .unwrap_or_default();
    format!("{role}{ssl}{suffix}")
}

/// The owner name under `domain` (absolute or not; the result is as `domain` is), e.g.
/// `_etcd-server-ssl._tcp.example.com.`.
pub fn owner_name(role: Role, tls: bool, suffix: Option<&str>, domain: &str) -> String {
    format!("{}.{TCP}.{domain}", owner_label(role, tls, suffix))
}

/// Reads a first label in any case: `_etcd-(server|client)[-ssl][-SUFFIX]`.
pub fn parse_owner_label(label: &str) -> Option<OwnerLabel> {
    let first = label.to_ascii_lowercase();
    let rest = first.strip_prefix("_etcd-")?;
    let (role, rest) = if let Some(r) = rest.strip_prefix("server") {
        (Role::Server, r)
    } else {
        (Role::Client, rest.strip_prefix("client")?)
    };
    let (tls, rest) = match rest.strip_prefix(SSL) {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let suffix = match rest {
        "" => String::new(),
        r => r.strip_prefix('-')?.to_string(),
    };
    Some(OwnerLabel { role, tls, suffix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_parts() {
        assert_eq!(
            owner_name(Role::Server, true, Some("prod"), "d.test."),
            "_etcd-server-ssl-prod._tcp.d.test."
        );
        assert_eq!(
            owner_name(Role::Client, false, None, "d"),
            "_etcd-client._tcp.d"
        );
        assert_eq!(owner_label(Role::Server, false, Some("")), "_etcd-server");
        for (role, tls) in [(Role::Server, true), (Role::Client, false)] {
            let l = owner_label(role, tls, Some("b"));
            let p = parse_owner_label(&l.to_ascii_uppercase()).unwrap();
            assert_eq!((p.role, p.tls, p.suffix.as_str()), (role, tls, "b"));
        }
        for not in ["_etcd-serverx", "_etcd-peer", "etcd-server", "_tcp"] {
            assert_eq!(parse_owner_label(not), None, "{not}");
        }
    }
}
