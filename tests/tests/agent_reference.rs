//! The README's muster-agent reference table against the command line: every flag of
//! `backup`, `restore`, `exec`, `plan` and `env` (the common flags included) has a row,
//! with the variable `--help` names. The `--etcd-*` and `--register-*` groups are
//! documented in their own sections and skipped here.

use std::process::Command;

use muster_tests::{bin_path, run, workspace_root};

/// (flag, variable) pairs from `muster-agent COMMAND --help`.
fn flags(command: &str) -> Vec<(String, Option<String>)> {
    let (ok, out, err) = run(Command::new(bin_path("muster-agent")).args([command, "--help"]));
    assert!(ok, "{command} --help: {err}");
    // Option lines have 6 spaces (or a short flag); the description, wrapped text and the
    // `[env: ...]` line (in the long form) follow, indented more.
    let mut v: Vec<(String, Option<String>)> = Vec::new();
    for l in out.lines() {
        if l.starts_with("      --") || l.starts_with("  -") {
            let t = l.trim_start();
            let t = t.strip_prefix("-h, ").unwrap_or(t);
            if let Some(name) = t
                .strip_prefix("--")
                .and_then(|t| t.split([' ', '=']).next())
            {
                v.push((name.to_string(), None));
            }
        }
        if let (Some(env), Some(last)) = (l.split("[env: ").nth(1), v.last_mut()) {
            last.1
                .get_or_insert_with(|| env.split(['=', ']']).next().unwrap_or("").to_string());
        }
    }
    v.retain(|(n, _)| {
        !matches!(n.as_str(), "help" | "version")
            && !n.starts_with("etcd-")
            && !n.starts_with("register-")
    });
    v
}

/// The rows of the reference table: (first cell, second cell).
fn rows() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find("### Reference\n")
        .expect("README has a Reference section");
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| flag |"))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            // `\|` is a pipe inside a cell (`--scheme http\|https`).
            let l = l.replace("\\|", "\u{1}");
            let cells: Vec<String> = l
                .split('|')
                .map(|c| c.trim().replace('\u{1}', "|"))
                .collect();
            // "| a | b | c |" splits into "", a, b, c, "".
            (cells.len() >= 5).then(|| (cells[1].clone(), cells[2].clone()))
        })
        .collect()
}

#[test]
fn every_flag_has_a_reference_row() {
    let rows = rows();
    let mut missing = Vec::new();
    for command in ["backup", "restore", "exec", "plan", "env"] {
        for (flag, env) in flags(command) {
            let specific = format!("`{command} --{flag}");
            let generic = format!("`--{flag}");
            // The flag, then a blank (its value) or the closing backtick.
            let is = |f: &str, p: &str| f.starts_with(p) && f[p.len()..].starts_with([' ', '`']);
            let row = rows
                .iter()
                .find(|(f, _)| is(f, &specific) || is(f, &generic));
            match (row, env) {
                (None, _) => missing.push(format!("{command} --{flag}: no row")),
                (Some((f, v)), Some(env)) if !v.contains(&format!("`{env}`")) => {
                    missing.push(format!("{command} --{flag}: row {f} lacks `{env}`"))
                }
                _ => {}
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README reference table:\n{}",
        missing.join("\n")
    );
}
