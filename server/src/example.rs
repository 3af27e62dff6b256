//! The built-in example zone, served when no zone is configured (the README's "run"
//! command). The same text is shipped as `zones/example.test.zone`.

/// Origin of the example zone.
pub const ORIGIN: &str = "example.test.";
/// The path shown in messages for the built-in copy.
pub const PATH: &str = "<built-in>/example.test.zone";
/// The zone text.
pub const ZONE: &str = include_str!("../../zones/example.test.zone");
