//! `musterd check` on arbitrary zone text: it reports findings and never panics, and both
//! report formats render.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use muster_server::check;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The origin comes from `$ORIGIN` in the text or else the file name, as for a file
    // given on the command line without --origin.
    let findings = check::check_text(None, Path::new("fuzz.test.zone"), &text);
    let _ = check::render_text(&findings);
    let _ = check::render_json(&findings);
    let _ = check::exit_code(&findings);
});
