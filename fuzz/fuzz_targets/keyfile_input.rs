//! The `keyfile` fuzz target's invariants, shared with `tests/tests/properties.rs`: BIND
//! key-file text read the way musterd reads it (`tsig::parse_key_file`) and the way
//! muster-agent reads it (`muster_conventions::keyfile::parse_keys`): neither panics; a
//! file musterd accepts gives the agent the same keys (names, algorithms, secrets, in
//! order); and the key blocks of any readable file, printed back as `tsig-keygen` would,
//! read back the same.

use base64::Engine as _;
use muster_conventions::keyfile::{self, KeyBlock, Statement};
use muster_server::proto::name::Name;
use muster_server::proto::tsig;

/// A named.conf quoted string holding `s`.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `block` as `tsig-keygen` prints a key.
fn print(block: &KeyBlock) -> String {
    format!(
        "key {} {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
        quoted(&block.name),
        quoted(&block.algorithm),
        base64::engine::general_purpose::STANDARD.encode(&block.secret)
    )
}

fn blocks(text: &str) -> Option<Vec<KeyBlock>> {
    let mut out = Vec::new();
    for s in keyfile::statements(text) {
        match s.ok()? {
            Statement::Key(b) => out.push(b),
            Statement::Other { .. } => {}
        }
    }
    Some(out)
}

/// Panics when an invariant does not hold for `text`.
pub fn check(text: &str) {
    let server = tsig::parse_key_file(text, "fuzz.key");
    let agent = keyfile::parse_keys(text);
    if let Ok(server) = &server {
        let agent = agent
            .as_ref()
            .unwrap_or_else(|e| panic!("musterd reads it, the agent does not: {e}"));
        assert_eq!(server.len(), agent.len(), "{text:?}");
        for ((s, _), a) in server.iter().zip(agent) {
            assert_eq!(s.secret, a.secret, "{text:?}");
            assert_eq!(s.algorithm.name().trim_end_matches('.'), a.algorithm);
            let agent_name = Name::parse(&format!("{}.", a.name), None)
                .unwrap_or_else(|e| panic!("agent's key name {:?}: {e}", a.name));
            assert!(s.name.eq_ignore_case(&agent_name), "{text:?}");
        }
    }
    if let Some(first) = blocks(text) {
        let printed: String = first.iter().map(print).collect();
        let again = blocks(&printed).unwrap_or_else(|| panic!("printed: {printed:?}"));
        let shape = |b: &KeyBlock| (b.name.clone(), b.algorithm.clone(), b.secret.clone());
        assert_eq!(
            first.iter().map(shape).collect::<Vec<_>>(),
            again.iter().map(shape).collect::<Vec<_>>(),
            "{printed:?}"
        );
    }
}
