//! The Debian package (issue 20): `xtask deb` lays out `muster` from the metadata in
//! server/Cargo.toml and builds it with dpkg-deb (here from the debug binaries, gzip -1),
//! `dpkg -i` installs it on this machine, and what it installed must work as the docs say:
//! both binaries, `musterd check --config` on the installed config (the unit's
//! ExecStartPre), the units (`systemd-analyze verify` where systemd-analyze exists), man
//! pages, completions and conffiles. The package is purged on every path.
//!
//! It installs system-wide, so it needs root (CI runs as root) and refuses to touch a
//! `muster` package that was installed before it started.

use std::path::Path;
use std::process::Command;

use muster_tests::{bin_path, require_program, require_root, run, skip, TempDir};

/// Purges the package when dropped, so a failing assertion leaves no install behind.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "muster"]).output();
    }
}

#[test]
fn the_debian_package_installs_and_works() {
    if !require_root() || !require_program("dpkg") || !require_program("dpkg-deb") {
        return;
    }
    let (installed, _, _) = run(Command::new("dpkg-query").args(["-W", "muster"]));
    if installed {
        skip("a muster package is already installed on this machine; not touching it");
        return;
    }
    let out = TempDir::new();
    let debug = bin_path("musterd").parent().unwrap().to_path_buf();
    let (ok, stdout, err) = run(Command::new(bin_path("xtask"))
        .args(["deb", "--fast", "--bin-dir"])
        .arg(&debug)
        .arg("--out")
        .arg(out.path()));
    assert!(ok, "xtask deb: {err}");
    let deb = stdout.trim().to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "{stdout}"
    );

    let (ok, _, err) = run(Command::new("dpkg").args(["-i", &deb]));
    let _guard = Installed;
    assert!(ok, "dpkg -i: {err}");

    for (bin, arg) in [
        ("/usr/bin/musterd", "--version"),
        ("/usr/bin/muster-agent", "--version"),
    ] {
        let (ok, out, err) = run(Command::new(bin).arg(arg));
        assert!(ok && out.contains("0.1.0"), "{bin} {arg}: {out}{err}");
    }
    // The unit's ExecStartPre on the installed (template) config.
    let (ok, out, err) = run(Command::new("/usr/bin/musterd").args([
        "check",
        "--config",
        "/etc/muster/musterd.toml",
    ]));
    assert!(ok && out.contains("0 errors"), "{out}{err}");
    let unit = std::fs::read_to_string("/lib/systemd/system/musterd.service").unwrap();
    assert!(
        unit.contains("ExecStartPre=/usr/bin/musterd check --config /etc/muster/musterd.toml"),
        "{unit}"
    );
    let (_, conffiles, _) =
        run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "muster"]));
    for f in ["/etc/muster/musterd.toml", "/etc/default/etcd-muster"] {
        assert!(conffiles.contains(f), "{f} is no conffile: {conffiles}");
    }
    for f in [
        "/usr/share/man/man1/musterd.1.gz",
        "/usr/share/man/man1/musterd-serve.1.gz",
        "/usr/share/man/man1/muster-agent-register.1.gz",
        "/usr/share/doc/muster/copyright",
        "/usr/share/bash-completion/completions/musterd",
        "/usr/share/bash-completion/completions/muster-agent",
        "/usr/share/zsh/vendor-completions/_musterd",
        "/usr/share/fish/vendor_completions.d/muster-agent.fish",
        "/usr/share/doc/muster/examples/kubernetes/etcd.yaml",
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    let (ok, man, err) = run(Command::new("zcat").arg("/usr/share/man/man1/musterd-serve.1.gz"));
    assert!(ok, "{err}");
    assert!(
        man.contains("discovery\\-listen"),
        "the man page lists the flags: {man}"
    );
    if require_program("bash") {
        let (ok, _, err) = run(Command::new("bash").args([
            "-c",
            "source /usr/share/bash-completion/completions/muster-agent && complete -p muster-agent",
        ]));
        assert!(ok, "the bash completion loads: {err}");
    }
    // The units (outside CI a machine without systemd records a skip; in CI .ci/run
    // installs it and a missing systemd-analyze is a failure).
    if require_program("systemd-analyze") {
        let (ok, out, err) = run(Command::new("systemd-analyze").args([
            "verify",
            "/lib/systemd/system/musterd.service",
            "/lib/systemd/system/etcd-agent-env.service",
            "/lib/systemd/system/etcd-agent-exec.service",
        ]));
        assert!(
            ok && err.trim().is_empty(),
            "systemd-analyze verify: {out}{err}"
        );
    }
}
