//! `musterd check` as operators run it: exit status, text and JSON output.

use std::process::Command;

use muster_tests::{bin_path, run, workspace_root};

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
