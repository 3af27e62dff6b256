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

/// A gated zone mid-rollout (muster-size=3, m3's address not yet published): the closed
/// gate and the address it waits for are warnings, exit 0, so the unit's
/// `ExecStartPre=musterd check --config` lets musterd (re)start.
#[test]
fn a_closed_gate_mid_rollout_passes_check_config() {
    let dir = muster_tests::TempDir::new();
    dir.write(
        "d.test.zone",
        "$ORIGIN d.test.\n$TTL 60\n@ IN SOA ns1 hostmaster 1 3600 600 86400 60\n@ IN NS ns1\nns1 IN A 192.0.2.53\n\
         _etcd-server-ssl._tcp IN TXT \"muster-size=3\"\n\
         _etcd-server-ssl._tcp IN SRV 0 0 2380 m1\n_etcd-server-ssl._tcp IN SRV 0 0 2380 m2\n_etcd-server-ssl._tcp IN SRV 0 0 2380 m3\n\
         m1 IN A 192.0.2.1\nm2 IN A 192.0.2.2\n",
    );
    let config = dir.write(
        "musterd.toml",
        "[[zone]]\norigin = \"d.test\"\nfile = \"d.test.zone\"\n",
    );
    let (ok, out, err) = run(Command::new(bin_path("musterd")).args([
        "check",
        "--config",
        config.to_str().unwrap(),
    ]));
    assert!(ok, "warnings only: {out}{err}");
    assert!(
        out.contains("warning[gate-closed]")
            && out.contains("warning[srv-target-no-address]: _etcd-server-ssl._tcp.d.test.: SRV target m3.d.test. has no A or AAAA record yet: the completeness gate waits for it")
            && out.contains("0 errors"),
        "{out}"
    );
}
