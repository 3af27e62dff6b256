//! `muster-agent exec`: replace this process with etcd (execve, same PID), so that under
//! systemd `Type=notify` etcd's own READY=1 comes from the main PID and NOTIFY_SOCKET,
//! left untouched, reaches it.
//!
//! etcd exits when a setting arrives both as a flag and as an `ETCD_*` variable
//! ("conflicting environment variable ... is shadowed by corresponding command-line
//! flag"), and when DNS discovery is configured next to `--initial-cluster` ("multiple
//! discovery or bootstrap flags are set"). Both are checked here, before exec, so the
//! operator gets one message naming every offending variable and how to fix it.

use std::ffi::OsString;
use std::fmt;

use crate::envfile::env_name;
use crate::plan::Flag;

/// A flag that the environment also sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The `ETCD_*` variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// The flag and where it comes from, e.g. `--name (from the plan)`.
    pub flag: String,
}

/// Why etcd is not executed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `ETCD_*` variables that etcd would reject next to our flags.
    #[error("{}", Conflicts(conflicts))]
    EnvConflict {
        /// Every conflict found.
        conflicts: Vec<Conflict>,
    },
    /// An argument after `--` repeats a flag the plan sets.
    #[error(
        "{arg} after -- is a flag muster-agent sets from the plan (--{flag}={value}); remove it \
         (for the URLs use --listen-peer-url, --listen-client-url or --advertise-client-url, for the name --name)"
    )]
    DuplicateFlag {
        /// The argument as given.
        arg: String,
        /// The flag name.
        flag: String,
        /// The plan's value.
        value: String,
    },
    /// etcd's own discovery is configured as well.
    #[error(
        "{what} is set: etcd would exit with \"multiple discovery or bootstrap flags are set\" \
         because muster-agent passes --initial-cluster; remove it, muster-agent does the SRV discovery"
    )]
    Discovery {
        /// The variable or argument.
        what: String,
    },
    /// execve failed.
    #[error("cannot execute {bin}: {source}; pass --etcd-bin with the path of etcd")]
    Exec {
        /// The program.
        bin: String,
        /// Why.
        source: std::io::Error,
    },
}

struct Conflicts<'a>(&'a [Conflict]);

impl fmt::Display for Conflicts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vars: Vec<&str> = self.0.iter().map(|c| c.var.as_str()).collect();
        writeln!(
            f,
            "the environment sets {} that muster-agent also passes as flag{}; etcd would exit \
             with \"conflicting environment variable ... is shadowed by corresponding command-line flag\":",
            vars.join(", "),
            if vars.len() == 1 { "" } else { "s" }
        )?;
        for c in self.0 {
            writeln!(f, "  {}={} vs {}", c.var, c.value, c.flag)?;
        }
        write!(
            f,
            "fix: remove {} from the unit's Environment=/EnvironmentFile= (or list them in \
             UnsetEnvironment=), and let muster-agent set them",
            vars.join(" ")
        )
    }
}

/// The flag name of an argument (`--cert-file=x`, `-cert-file` -> `cert-file`), or None
/// for a value.
fn flag_name(arg: &str) -> Option<&str> {
    let name = arg.strip_prefix('-')?;
    let name = name.strip_prefix('-').unwrap_or(name);
    let name = name.split('=').next().unwrap_or(name);
    if name.is_empty() || name.starts_with('-') {
        None
    } else {
        Some(name)
    }
}

/// Checks the plan's flags and the extra arguments against the environment (`env` looks
/// a variable up). `bootstrap` adds the discovery checks (etcd ignores discovery on a
/// restart).
pub fn check(
    flags: &[Flag],
    extra: &[String],
    bootstrap: bool,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), ExecError> {
    for arg in extra {
        if let Some(name) = flag_name(arg) {
            if let Some((flag, value)) = flags.iter().find(|(f, _)| *f == name) {
                return Err(ExecError::DuplicateFlag {
                    arg: arg.clone(),
                    flag: flag.to_string(),
                    value: value.clone(),
                });
            }
            if bootstrap && (name == "discovery" || name == "discovery-srv") {
                return Err(ExecError::Discovery {
                    what: format!("{arg} (after --)"),
                });
            }
        }
    }
    if bootstrap {
        for var in ["ETCD_DISCOVERY", "ETCD_DISCOVERY_SRV"] {
            if let Some(v) = env(var) {
                return Err(ExecError::Discovery {
                    what: format!("{var}={v} (in the environment)"),
                });
            }
        }
    }
    let mut conflicts = Vec::new();
    for (flag, _) in flags {
        let var = env_name(flag);
        if let Some(value) = env(&var) {
            conflicts.push(Conflict {
                var,
                value,
                flag: format!("--{flag} (from the plan)"),
            });
        }
    }
    for arg in extra {
        if let Some(name) = flag_name(arg) {
            let var = env_name(name);
            if let Some(value) = env(&var) {
                conflicts.push(Conflict {
                    var,
                    value,
                    flag: format!("{arg} (after --)"),
                });
            }
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(ExecError::EnvConflict { conflicts })
    }
}

/// etcd's argv: the program, the plan's flags as `--flag=value`, then the extra arguments.
pub fn argv(bin: &str, flags: &[Flag], extra: &[String]) -> Vec<String> {
    let mut v = vec![bin.to_string()];
    v.extend(flags.iter().map(|(k, val)| format!("--{k}={val}")));
    v.extend(extra.iter().cloned());
    v
}

/// Replaces this process with `argv` (PATH is searched for `argv[0]`). Returns only on
/// failure.
pub fn exec(argv: &[String]) -> ExecError {
    use std::os::unix::process::CommandExt;
    let Some((bin, args)) = argv.split_first() else {
        return ExecError::Exec {
            bin: String::new(),
            source: std::io::ErrorKind::InvalidInput.into(),
        };
    };
    let source = std::process::Command::new(bin)
        .args(args.iter().map(OsString::from))
        .exec();
    ExecError::Exec {
        bin: bin.clone(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Vec<Flag> {
        vec![
            ("name", "m0".into()),
            ("initial-cluster", "m0=http://m0.c.test:2380".into()),
        ]
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn clean_environment_passes() {
        let extra = vec![
            "--heartbeat-interval=50".to_string(),
            "--cert-file".into(),
            "/x".into(),
        ];
        check(
            &flags(),
            &extra,
            true,
            env(&[("ETCD_UNRELATED_THING", "1"), ("MUSTER_NAME", "m0")]),
        )
        .unwrap();
    }

    #[test]
    fn every_conflicting_variable_is_named() {
        let extra = vec!["-cert-file=/x".to_string()];
        let e = check(
            &flags(),
            &extra,
            true,
            env(&[("ETCD_NAME", "%H"), ("ETCD_CERT_FILE", "/y")]),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("the environment sets ETCD_NAME, ETCD_CERT_FILE that muster-agent also passes as flags"), "{msg}");
        assert!(
            msg.contains("ETCD_NAME=%H vs --name (from the plan)"),
            "{msg}"
        );
        assert!(
            msg.contains("ETCD_CERT_FILE=/y vs -cert-file=/x (after --)"),
            "{msg}"
        );
        assert!(msg.contains("UnsetEnvironment="), "{msg}");
    }

    #[test]
    fn an_empty_variable_still_conflicts() {
        // etcd checks presence, not value.
        assert!(check(&flags(), &[], true, env(&[("ETCD_INITIAL_CLUSTER", "")])).is_err());
    }

    #[test]
    fn discovery_is_refused_on_bootstrap_only() {
        let e = check(
            &flags(),
            &[],
            true,
            env(&[("ETCD_DISCOVERY_SRV", "c.test")]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("multiple discovery or bootstrap flags"),
            "{e}"
        );
        check(
            &[("name", "m0".into())],
            &[],
            false,
            env(&[("ETCD_DISCOVERY_SRV", "c.test")]),
        )
        .unwrap();
        let e = check(&flags(), &["--discovery-srv=c.test".into()], true, env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("--discovery-srv=c.test (after --)"),
            "{e}"
        );
    }

    #[test]
    fn extra_args_may_not_repeat_plan_flags() {
        let e = check(&flags(), &["--name".into(), "x".into()], true, env(&[])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--name after -- is a flag muster-agent sets"),
            "{e}"
        );
    }

    #[test]
    fn argv_order() {
        assert_eq!(
            argv("etcd", &flags(), &["--debug".into()]),
            vec![
                "etcd",
                "--name=m0",
                "--initial-cluster=m0=http://m0.c.test:2380",
                "--debug"
            ]
        );
    }
}
