//! etcd member names, one rule for every place that compares them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An etcd member name: the first label of its SRV target.
///
/// DNS compares labels without regard to ASCII case (RFC 4343), so `--name M1` and the
/// target `m1.example.com.` are the same member. The name is kept lower-case and the
/// derived equality is the only comparison: bootstrap (`--name` against the records) and
/// restart (`--name` against the persisted plan) cannot disagree about it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemberName(String);

impl MemberName {
    /// Checks a name (letters, digits, `-`, `_`; what a DNS label and etcd both accept)
    /// and lower-cases it.
    pub fn parse(name: &str) -> Result<MemberName, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "{name:?} is not a member name: letters, digits, '-' and '_' only (the first label of its SRV target)"
            ));
        }
        Ok(MemberName(name.to_ascii_lowercase()))
    }

    /// The name of the member an SRV target stands for: its first label.
    pub fn of_target(target: &str) -> Result<MemberName, String> {
        MemberName::parse(target.split('.').next().unwrap_or(target))
    }

    /// The name as etcd gets it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for MemberName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MemberName::parse(s)
    }
}

impl TryFrom<String> for MemberName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MemberName::parse(&s)
    }
}

impl From<MemberName> for String {
    fn from(n: MemberName) -> String {
        n.0
    }
}
