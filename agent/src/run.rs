//! The three commands: effects (environment, DNS, interfaces, files, exec) wired around
//! the pure core ([`crate::cluster`]) and the wait loop.

use std::path::PathBuf;

use crate::cli::{Cli, Command, Common, Format};
use crate::cluster::{Identity, Overrides, PlanOptions, Service};
use crate::discover::{self, DnsResolver};
use crate::envfile;
use crate::exec;
use crate::plan::{Mode, Plan, Start};
use crate::restart;
use crate::urls::EtcdUrl;
use crate::wait::{self, WaitOptions};
use crate::{notify, Error};

/// Where the data dir came from: our flag (then passed to etcd) or `ETCD_DATA_DIR`
/// (etcd reads it itself; passing the flag too would make etcd exit).
struct DataDir {
    path: Option<PathBuf>,
    from_flag: bool,
}

fn data_dir(common: &Common) -> DataDir {
    match &common.data_dir {
        Some(p) => DataDir {
            path: Some(p.clone()),
            from_flag: true,
        },
        None => DataDir {
            path: std::env::var_os("ETCD_DATA_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            from_flag: false,
        },
    }
}

fn url_texts(urls: &[EtcdUrl]) -> Vec<String> {
    urls.iter().map(|u| u.as_str().to_string()).collect()
}

/// The start decision: restart (or move) if the data dir has a WAL (DNS optional), else
/// bootstrap or join from DNS and the running cluster (see [`crate::decide`]). With
/// `enact`, a join or a move's `member update` is carried out; without it (`plan`,
/// `exec --dry-run`) nothing is changed and the plan is a prediction.
fn decide(common: &Common, dir: &DataDir, enact: bool) -> Result<Plan, Error> {
    // --register-*: publish this host's current addresses first, so that discovery (and
    // the other members) see them; on a restart too, as a DHCP lease may have changed.
    // Without `enact` only the update it would send is printed.
    crate::register::first(
        &common.register,
        common.domain.as_deref(),
        common.srv_name.as_deref(),
        common.scheme,
        enact,
    )?;
    if let Some(d) = &dir.path {
        // A data dir etcd cannot open: moved aside with quorum (then a fresh start).
        crate::repair::check(common, d, enact)?;
        // A join interrupted before the learner caught up is moved aside and made again
        // (only when enacting: `plan` shows the restart it would try).
        if restart::has_wal(d) && !(enact && crate::lifecycle::rejoin_if_interrupted(common, d)?) {
            // A WAL without muster-plan.json (etcdctl snapshot restore by hand): adopted.
            if let Some(plan) = crate::adopt::without_plan(common, d, enact)? {
                return Ok(plan);
            }
            // Restart or move: the persisted plan, checked against the records if DNS
            // answers (crate::lifecycle::restart).
            return crate::lifecycle::restart(common, d, enact);
        }
    }
    let domain = common.domain.as_deref().ok_or_else(|| {
        Error::Usage("--domain (or MUSTER_DOMAIN) is required to bootstrap: the DNS domain of the _etcd-server SRV records".into())
    })?;
    let service = Service::new(domain, common.srv_name.as_deref()).map_err(Error::Usage)?;
    let servers = if common.nameserver.is_empty() {
        discover::system_nameservers()
    } else {
        common.nameserver.clone()
    };
    let opts = WaitOptions {
        plan: PlanOptions {
            scheme: common.scheme.map(Into::into),
            expect: common.expect.map(usize::from),
            identity: Identity {
                name: common.name.clone(),
                advertise_peer_url: common.advertise_peer_url.clone(),
            },
            overrides: Overrides {
                token: common.token.clone(),
                default_client_port: common.client_port,
                data_dir: dir.path.clone(),
                listen_peer_urls: url_texts(&common.listen_peer_url),
                listen_client_urls: url_texts(&common.listen_client_url),
                advertise_client_urls: url_texts(&common.advertise_client_url),
            },
        },
        local: discover::local_addresses().map_err(Error::LocalAddrs)?,
        timeout: common.timeout,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let probe = crate::join::EtcdProbe {
        access: common.etcd.access(),
    };
    let outcome = runtime.block_on(async {
        let resolver = DnsResolver::new(&servers).map_err(|e| Error::Resolver(e.to_string()))?;
        let plan = wait::wait_for_start(&resolver, &service, &opts, &probe, |round| {
            let line = format!("{} ({:.1}s)", round.progress, round.elapsed.as_secs_f64());
            eprintln!("muster-agent: {line}");
            notify::waiting(
                &format!("waiting for etcd discovery records: {line}"),
                round.remaining,
            );
        })
        .await?;
        Ok::<_, Error>(plan)
    })?;
    eprintln!(
        "muster-agent: decision: {} ({})",
        outcome.plan().mode(),
        outcome.plan().reason
    );
    let plan = match outcome {
        wait::Outcome::Bootstrap(plan) => plan,
        wait::Outcome::Join { plan, .. } if !enact => plan,
        wait::Outcome::Join { plan, .. } => {
            let plan = crate::join::enact(plan, &common.etcd.access(), common.timeout, |line| {
                eprintln!("muster-agent: {line}");
                notify::status(line);
            })?;
            if let Start::Join(j) = &plan.start {
                eprintln!(
                    "muster-agent: added {} to cluster {} as learner {}; starting etcd with \
                     --initial-cluster-state existing",
                    plan.name,
                    j.cluster_id.hex(),
                    j.member_id.map(|m| m.hex()).unwrap_or_default()
                );
            }
            plan
        }
    };
    if let Start::Bootstrap(c) = &plan.start {
        eprintln!(
            "muster-agent: bootstrap member {} of {} from {} (cluster id {})",
            plan.name,
            c.members.len(),
            c.srv_record,
            c.cluster_id.hex()
        );
    }
    Ok(plan)
}

fn need_data_dir(dir: &DataDir) -> Result<&std::path::Path, Error> {
    dir.path.as_deref().ok_or_else(|| {
        Error::Usage(
            "--data-dir (or MUSTER_DATA_DIR, or ETCD_DATA_DIR) is required: it tells a restart \
             (member/wal exists, no DNS needed) from a bootstrap, and keeps the plan for restarts"
                .into(),
        )
    })
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Plan(args) => {
            let dir = data_dir(&args.common);
            let plan = decide(&args.common, &dir, false)?;
            let out = match args.format {
                Format::Text => plan.render_text(dir.from_flag),
                // Serialising plain data into a String cannot fail.
                Format::Json => serde_json::to_string_pretty(&plan).unwrap_or_default() + "\n",
                Format::Env => envfile::render(&plan.etcd_flags(dir.from_flag))?,
            };
            print!("{out}");
            Ok(())
        }
        Command::Env(args) => {
            let dir = data_dir(&args.common);
            let data = need_data_dir(&dir)?.to_path_buf();
            let plan = decide(&args.common, &dir, true)?;
            let text = envfile::render(&plan.etcd_flags(dir.from_flag))?;
            envfile::write_atomic(&args.out, text.as_bytes(), 0o644).map_err(|source| {
                Error::WriteEnv {
                    path: args.out.clone(),
                    source,
                }
            })?;
            if plan.creates_member() {
                restart::save(&data, &plan)?;
            }
            notify::status(&format!(
                "wrote {} for etcd member {}",
                args.out.display(),
                plan.name
            ));
            eprintln!("muster-agent: wrote {}", args.out.display());
            Ok(())
        }
        Command::Promote(args) => crate::lifecycle::promote(&args),
        Command::Leave(args) => crate::lifecycle::leave(&args),
        Command::Doctor(args) => crate::doctor::run(&args),
        Command::Register(args) => Ok(crate::register::run(&args)?),
        Command::Backup(args) => crate::backup::run(&args),
        Command::Restore(args) => crate::restore::run(&args),
        Command::Exec(args) => {
            let dir = data_dir(&args.common);
            let data = need_data_dir(&dir)?.to_path_buf();
            let plan = decide(&args.common, &dir, !args.dry_run)?;
            let flags = plan.etcd_flags(dir.from_flag);
            exec::check(&flags, &args.extra, plan.creates_member(), |k| {
                std::env::var_os(k).map(|v| v.to_string_lossy().into_owned())
            })?;
            let argv = exec::argv(&args.etcd_bin, &flags, &args.extra);
            if args.dry_run {
                for a in &argv {
                    println!("{a}");
                }
                return Ok(());
            }
            if plan.creates_member() {
                restart::save(&data, &plan)?;
            }
            // A restart of a member that joined may be a learner's that was never
            // promoted: the promoter then promotes it (and does nothing for a voter).
            let learner = plan.mode() == Mode::Join
                || (matches!(plan.mode(), Mode::Restart | Mode::Move)
                    && crate::lifecycle::joined(&data));
            if learner && !args.no_promote {
                crate::lifecycle::spawn_promoter(&data, &args.common);
            }
            Err(exec::exec(&argv).into())
        }
    }
}
