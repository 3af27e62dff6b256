//! The README's reference tables against the command lines, as clap defines them: every
//! long flag of every `musterd` and `muster-agent` subcommand has a row in its program's
//! table, whose variable cell names exactly the flag's environment variable (or none), and
//! every row names a flag that exists.
//!
//! A row's first cell holds one or more code spans: `command --flag VALUE` is that
//! subcommand's flag, `--flag VALUE` the flag of every subcommand that has it and no row
//! of its own.

use clap::CommandFactory;
use muster_tests::workspace_root;

/// One flag of one subcommand: (subcommand, long name, variable).
#[derive(Debug)]
struct Flag {
    command: String,
    long: String,
    env: Option<String>,
}

/// Every long flag of every subcommand of `cli` (clap's own `--help` and `--version`
/// aside).
fn flags(cli: clap::Command) -> Vec<Flag> {
    let mut v = Vec::new();
    for sub in cli.get_subcommands() {
        for arg in sub.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") || arg.is_hide_set() {
                continue;
            }
            v.push(Flag {
                command: sub.get_name().to_string(),
                long: long.to_string(),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
            });
        }
    }
    assert!(!v.is_empty(), "no flags found");
    v
}

/// A span of a row's first cell: (subcommand or None for every one, long name).
type Key = (Option<String>, String);

/// A row of a reference table: the flags it names, and the variables of its second cell.
#[derive(Debug)]
struct Row {
    text: String,
    keys: Vec<Key>,
    vars: Vec<String>,
}

/// The code spans of a Markdown table cell.
fn spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.trim().to_string())
        .collect()
}

fn key_of(span: &str) -> Key {
    let mut words = span.split_whitespace();
    let first = words.next().unwrap_or_default();
    let (command, flag) = match first.strip_prefix("--") {
        Some(flag) => (None, flag),
        None => (
            Some(first.to_string()),
            words
                .next()
                .and_then(|w| w.strip_prefix("--"))
                .unwrap_or_else(|| panic!("{span:?}: `command --flag` or `--flag`")),
        ),
    };
    let flag = flag.split('=').next().unwrap_or_default();
    (command, flag.to_string())
}

/// The rows of the table that follows `heading` in the README.
fn rows(heading: &str) -> Vec<Row> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no section {heading:?}"));
    let rows: Vec<Row> = readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| flag | variable |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            // `\|` is a pipe inside a cell (`--scheme http\|https`).
            let cells: Vec<String> = l
                .replace("\\|", "\u{1}")
                .split('|')
                .map(|c| c.trim().replace('\u{1}', "|"))
                .collect();
            // "| a | b | c |" splits into "", a, b, c, "".
            assert!(cells.len() >= 5, "README row with too few cells: {l}");
            Row {
                text: l.to_string(),
                keys: spans(&cells[1]).iter().map(|s| key_of(s)).collect(),
                vars: spans(&cells[2]),
            }
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

/// What is wrong between `flags` and the table under `heading`, one line per problem.
fn compare(program: &str, flags: &[Flag], heading: &str) -> Vec<String> {
    let rows = rows(heading);
    let find = |key: &Key| rows.iter().find(|r| r.keys.contains(key));
    let mut wrong = Vec::new();
    for f in flags {
        let own = (Some(f.command.clone()), f.long.clone());
        let any = (None, f.long.clone());
        let Some(row) = find(&own).or_else(|| find(&any)) else {
            wrong.push(format!("{program} {} --{}: no row", f.command, f.long));
            continue;
        };
        let want: Vec<String> = f.env.iter().cloned().collect();
        if row.vars != want {
            wrong.push(format!(
                "{program} {} --{}: the variable is {want:?}, the row says {:?}: {}",
                f.command, f.long, row.vars, row.text
            ));
        }
    }
    for row in &rows {
        for (command, long) in &row.keys {
            let exists = flags
                .iter()
                .any(|f| &f.long == long && command.as_ref().is_none_or(|c| c == &f.command));
            if !exists {
                wrong.push(format!(
                    "{program}: no such flag {}--{long}: {}",
                    command
                        .as_ref()
                        .map(|c| format!("{c} "))
                        .unwrap_or_default(),
                    row.text
                ));
            }
        }
    }
    wrong
}

#[test]
fn every_musterd_flag_has_a_reference_row() {
    let flags = flags(muster_server::cli::Cli::command());
    for sub in ["serve", "check", "ctl"] {
        assert!(flags.iter().any(|f| f.command == sub), "musterd {sub}");
    }
    let wrong = compare("musterd", &flags, "### musterd reference");
    assert!(
        wrong.is_empty(),
        "README musterd reference:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_muster_agent_flag_has_a_reference_row() {
    let flags = flags(muster_agent::cli::Cli::command());
    let wrong = compare("muster-agent", &flags, "### muster-agent reference");
    assert!(
        wrong.is_empty(),
        "README muster-agent reference:\n{}",
        wrong.join("\n")
    );
}

/// The check itself: a flag without a row, a wrong variable and a row for no flag are
/// each found.
#[test]
fn the_comparison_finds_missing_rows_wrong_variables_and_stale_rows() {
    let flags = vec![
        Flag {
            command: "serve".into(),
            long: "listen".into(),
            env: None,
        },
        Flag {
            command: "ctl".into(),
            long: "socket".into(),
            env: Some("MUSTERD_CONTROL_SOCKET".into()),
        },
    ];
    let wrong = compare("musterd", &flags, "### musterd reference");
    assert!(
        wrong.iter().all(|w| !w.contains("serve --listen")),
        "{wrong:?}"
    );
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("no such flag serve --zone")),
        "{wrong:?}"
    );
    let renamed = vec![Flag {
        command: "ctl".into(),
        long: "socket".into(),
        env: Some("MUSTERD_SOCKET".into()),
    }];
    let wrong = compare("musterd", &renamed, "### musterd reference");
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("ctl --socket: the variable is")),
        "{wrong:?}"
    );
    let unknown = vec![Flag {
        command: "serve".into(),
        long: "no-such-flag".into(),
        env: None,
    }];
    let wrong = compare("musterd", &unknown, "### musterd reference");
    assert!(
        wrong
            .iter()
            .any(|w| w.contains("serve --no-such-flag: no row")),
        "{wrong:?}"
    );
}
