//! `musterd check` as operators run it: exit status, text and JSON output.

use std::process::Command;

use std::path::{Path, PathBuf};

use muster_server::check::{check_files, render_json, render_text};
use muster_tests::{bin_path, golden, run, workspace_root};

/// Golden files: tests/golden/check/NAME.zone with NAME.txt and NAME.json expected
/// (`UPDATE_GOLDEN=1` rewrites them, never under CI). Integration tests run in the tests/
/// package directory, so the relative paths in the outputs are the same on every machine.
#[test]
fn golden_outputs() {
    let dir = Path::new("../tests/golden/check");
    let mut zones: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/golden/check")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "zone"))
        .collect();
    zones.sort();
    // NAME.rev.zone is the reverse zone checked together with NAME.zone.
    zones.retain(|z| !z.to_string_lossy().ends_with(".rev.zone"));
    assert!(
        zones.len() >= 10,
        "golden zones missing in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for z in &zones {
        let mut files = vec![z.clone()];
        let rev = z.with_extension("rev.zone");
        if rev.exists() {
            files.push(rev);
        }
        let findings = check_files(None, &files);
        for (ext, text) in [
            ("txt", render_text(&findings)),
            ("json", render_json(&findings)),
        ] {
            if let Err(e) = golden::check(&z.with_extension(ext), &text) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_exit_status_and_formats() {
    let root = workspace_root();
    let (ok, out, _) = run(Command::new(bin_path("musterd"))
        .current_dir(&root)
        .args(["check", "zones/example.test.zone"]));
    assert!(ok, "the example zone must pass: {out}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");

    let (ok, out, _) = run(Command::new(bin_path("musterd"))
        .current_dir(&root)
        .args(["check", "tests/golden/check/srv-no-address.zone"]));
    assert!(!ok, "an SRV target without address must fail the check");
    assert!(
        out.contains("tests/golden/check/srv-no-address.zone:9: error[srv-target-no-address]"),
        "{out}"
    );

    let (ok, out, _) = run(Command::new(bin_path("musterd")).current_dir(&root).args([
        "check",
        "--format",
        "json",
        "--origin",
        "syntax-error.test",
        "tests/golden/check/syntax-error.zone",
    ]));
    assert!(!ok);
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["errors"], 3, "{out}");
    assert_eq!(v["findings"][0]["line"], 6);

    // --config checks every zone the server would load, with the configured origins.
    let dir = muster_tests::TempDir::new();
    let config = dir.write(
        "musterd.toml",
        &format!(
            "[[zone]]\norigin = \"example.test.\"\nfile = \"{}\"\n[[zone]]\norigin = \"srv-no-address.test.\"\nfile = \"{}\"\n",
            root.join("zones/example.test.zone").display(),
            root.join("tests/golden/check/srv-no-address.zone").display()
        ),
    );
    let (ok, out, _) = run(Command::new(bin_path("musterd")).args([
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(!ok, "{out}");
    assert!(
        out.contains("srv-target-no-address") && out.contains("1 errors"),
        "{out}"
    );

    let (ok, _, err) = run(Command::new(bin_path("musterd")).args(["check"]));
    assert!(!ok && err.contains("FILE"), "usage error expected: {err}");
}
