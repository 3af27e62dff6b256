//! `musterd serve`: load zones, bind sockets, answer until SIGTERM; reload on SIGHUP or
//! when a zone file changes; talk to systemd (sd_notify) when run as `Type=notify`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::ServerConfig;
use crate::loader::{LoadError, Zones};
use crate::net::listen::{self, Shared, TcpLimits};
use crate::query::answer::Responder;
use crate::stats::Stats;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Load(Vec<LoadError>),
    #[error("cannot listen on {addr}: {source} (is another DNS server running there? ports below 1024 need CAP_NET_BIND_SERVICE)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the control socket {}: {source} (set control_socket, or --control-socket \"\" to run without one)", path.display())]
    Control {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error(
        "{0} UDP worker thread(s) died of a panic their supervisor did not catch (see the log)"
    )]
    WorkerDied(usize),
    #[error(transparent)]
    Discovery(#[from] crate::discovery::StartError),
    #[error("{0}")]
    Updates(crate::dynamic::OpenError),
    #[error(transparent)]
    Transfers(#[from] crate::transfer::xfr::StartError),
}

fn notify(state: &[NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(state);
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: ServerConfig) -> Result<(), ServeError> {
    crate::loader::tune_allocator();
    let services = Services::open(&config)?;
    let workers = match config.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let sockets = bind_all(&config.listen, workers, &services.shared)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("musterd-tcp")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let stats = services.stats.clone();
    rt.block_on(serve(config, services, sockets.tcp, sockets.bound))?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // Each worker contains its own panics (see `listen`), so a thread that ended in one
    // failed outside that net: make it visible in the exit status.
    let mut died = 0;
    for t in sockets.udp_threads {
        let name = t.thread().name().unwrap_or("udp worker").to_string();
        if let Err(payload) = t.join() {
            died += 1;
            tracing::error!("{name} died: {}", crate::loader::panic_message(&*payload));
        }
    }
    tracing::info!(
        udp_queries = stats.udp_queries.load(Ordering::Relaxed),
        tcp_queries = stats.tcp_queries.load(Ordering::Relaxed),
        malformed_dropped = stats.malformed_dropped.load(Ordering::Relaxed),
        "stopped"
    );
    if died > 0 {
        return Err(ServeError::WorkerDied(died));
    }
    Ok(())
}

/// What the server is made of, set up before any socket is bound: zones loaded, journals
/// replayed, transfers and secondaries opened.
struct Services {
    zones: Zones,
    updates: Arc<crate::dynamic::Updates>,
    transfers: Option<Arc<crate::transfer::xfr::Transfers>>,
    shared: Arc<Shared>,
    stats: Arc<Stats>,
    discovery_metrics: Arc<crate::discovery::Metrics>,
}

impl Services {
    fn open(config: &ServerConfig) -> Result<Services, ServeError> {
        let stats = Arc::new(Stats::default());
        // The discovery service's metrics are exported (as zeros) also when it is off.
        let discovery_metrics = Arc::new(crate::discovery::Metrics::default());
        stats.register(discovery_metrics.clone());
        let responder = Responder::new(config.answer.clone());
        let mut zones = Zones::load_all(&config.zones, stats.clone(), responder.clone())
            .map_err(ServeError::Load)?;
        // The changes IXFR serves: recorded by whoever publishes a version, before it is
        // visible.
        let history = Arc::new(crate::zone::history::History::bounded(
            config.transfer.ixfr_history,
            config.transfer.ixfr_history_bytes,
        ));
        // The TSIG keys, read again on every reload.
        let keys: crate::dynamic::SharedKeys =
            Arc::new(arc_swap::ArcSwap::new(config.updates.keys.clone()));
        // Updatable zones: their journals are replayed now, and from here on their task,
        // not the loader, rereads their files.
        let updates = Arc::new(
            crate::dynamic::Updates::open(
                &config.updates,
                &config.zones,
                zones.catalog(),
                keys.clone(),
                history.clone(),
                responder.clone(),
                stats.clone(),
            )
            .map_err(ServeError::Updates)?,
        );
        zones.manage(&updates.origins());
        let xfr_metrics = Arc::new(crate::transfer::metrics::XfrMetrics::default());
        stats.register(xfr_metrics.clone());
        // Transfers, NOTIFY and secondary zones, whose saved copies are served from here on.
        let transfers = if config.transfer.is_empty() {
            None
        } else {
            Some(crate::transfer::xfr::Transfers::new(
                &config.transfer,
                keys,
                &config.updates.state_dir,
                zones.catalog(),
                history,
                responder.clone(),
                stats.clone(),
                xfr_metrics,
                &config.listen,
            )?)
        };
        let shared = Arc::new(Shared {
            catalog: zones.catalog(),
            udp_coalesce: config.udp_coalesce,
            responder,
            stats: stats.clone(),
            query_log: config.query_log,
            shutdown: Default::default(),
            updates: Some(updates.clone()),
            xfr: transfers.clone(),
        });
        Ok(Services {
            zones,
            updates,
            transfers,
            shared,
            stats,
            discovery_metrics,
        })
    }
}

/// The bound sockets: TCP listeners for the runtime, the UDP worker threads already
/// running, and the addresses as bound (port 0 resolved).
struct Sockets {
    tcp: Vec<std::net::TcpListener>,
    udp_threads: Vec<std::thread::JoinHandle<()>>,
    bound: Vec<SocketAddr>,
}

/// Binds UDP and TCP on every `listen` address, with `workers` UDP threads each.
fn bind_all(
    listen: &[SocketAddr],
    workers: usize,
    shared: &Arc<Shared>,
) -> Result<Sockets, ServeError> {
    let mut sockets = Sockets {
        tcp: Vec::new(),
        udp_threads: Vec::new(),
        bound: Vec::new(),
    };
    for &addr in listen {
        let (udp, tcp, local) =
            listen::bind_pair(addr, workers).map_err(|source| ServeError::Bind { addr, source })?;
        for (i, sock) in udp.into_iter().enumerate() {
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("udp-{local}-{i}"))
                .spawn(move || listen::udp_worker(sock, shared))
                .map_err(ServeError::Runtime)?;
            sockets.udp_threads.push(t);
        }
        sockets.tcp.push(tcp);
        sockets.bound.push(local);
    }
    Ok(sockets)
}

/// Inside the runtime: signal handlers, listeners, metrics, control socket, discovery,
/// the update and transfer tasks; then reloads and `musterd ctl` until SIGTERM or SIGINT.
async fn serve(
    config: ServerConfig,
    services: Services,
    tcp_listeners: Vec<std::net::TcpListener>,
    bound: Vec<SocketAddr>,
) -> Result<(), ServeError> {
    // Handlers first: a SIGHUP that arrives right after the "listening" line must
    // reload, not kill the process (the default action).
    let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Runtime)?;
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
    let Services {
        mut zones,
        updates,
        transfers,
        shared,
        stats,
        discovery_metrics,
    } = services;
    let limits = TcpLimits {
        max_clients: config.tcp_max_clients,
        idle_timeout: config.tcp_idle_timeout,
        io_timeout: config.tcp_io_timeout,
    };
    for l in tcp_listeners {
        let l = tokio::net::TcpListener::from_std(l).map_err(ServeError::Runtime)?;
        tokio::spawn(listen::tcp_accept_loop(l, shared.clone(), limits));
    }
    if let Some(addr) = config.metrics_listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Metrics { addr, source })?;
        tracing::info!(
            "metrics on http://{}/metrics",
            l.local_addr().unwrap_or(addr)
        );
        tokio::spawn(serve_metrics(l, stats.clone()));
    }
    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<crate::ctl::Job>(16);
    if let Some(path) = &config.control_socket {
        crate::ctl::listen(path, ctl_tx).map_err(|source| ServeError::Control {
            path: path.clone(),
            source,
        })?;
        tracing::info!("control socket {} (musterd ctl)", path.display());
    }
    let started = std::time::Instant::now();
    if let Some(d) = config.discovery.clone() {
        crate::discovery::start(d, discovery_metrics.clone()).await?;
    }
    updates.start();
    if let Some(t) = &transfers {
        t.start();
    }
    announce(&config, &bound);
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);

    let watch = !config.watch_interval.is_zero();
    let mut ticker = tokio::time::interval(if watch {
        config.watch_interval
    } else {
        std::time::Duration::from_secs(3600)
    });
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify(&[NotifyState::Reloading, NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading"))]);
                let failed = reload_keys(&updates)
                    + zones.off_runtime(Zones::reload_all).await
                    + updates.reload(true).await;
                tracing::info!(failed, "reload finished");
                notify(&[NotifyState::Ready, NotifyState::Status(if failed == 0 { "serving" } else { "serving; some zones failed to reload, see the log" })]);
            }
            Some((req, reply)) = ctl_rx.recv() => {
                let ctx = Control { zones: &mut zones, updates: &updates, transfers: transfers.as_deref(), started };
                let _ = reply.send(ctx.handle(req).await);
            }
            _ = ticker.tick(), if watch => {
                zones.off_runtime(Zones::reload_changed).await;
                updates.reload(false).await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(&[NotifyState::Stopping]);
    tracing::info!("shutting down");
    shared.shutdown.store(true, Ordering::Relaxed);
    Ok(())
}

/// The lines operators and tests read once the server answers: where it listens (the
/// chosen port when `--listen` used port 0), or that it serves no DNS, and how to try
/// the built-in example zone.
fn announce(config: &ServerConfig, bound: &[SocketAddr]) {
    for local in bound {
        tracing::info!("listening on {local} (udp+tcp)");
    }
    if bound.is_empty() {
        tracing::info!("serving no DNS: no --listen, --zone or secondary zone is configured");
    }
    if let (true, Some(first)) = (config.zones.iter().any(|z| z.file.is_none()), bound.first()) {
        tracing::info!(
            "serving the built-in example zone {}; try: dig @{} -p {} _etcd-server-ssl._tcp.example.test SRV",
            crate::example::ORIGIN,
            first.ip(),
            first.port()
        );
    }
}

/// Reads the TSIG keys again; 1 when that failed (the keys in force stay).
fn reload_keys(updates: &crate::dynamic::Updates) -> usize {
    match updates.reload_keys() {
        Ok(n) => {
            tracing::info!(keys = n, "TSIG keys reread");
            0
        }
        Err(e) => {
            tracing::error!("TSIG keys not reread, the keys in force stay: {e}");
            1
        }
    }
}

/// What a `musterd ctl` request can reach: the serving loop's own state.
struct Control<'a> {
    zones: &'a mut Zones,
    updates: &'a crate::dynamic::Updates,
    transfers: Option<&'a crate::transfer::xfr::Transfers>,
    started: std::time::Instant,
}

impl Control<'_> {
    async fn handle(self, req: crate::ctl::Request) -> crate::ctl::Reply {
        use crate::ctl::{Reply, Request};
        use crate::dynamic::ZoneControl;
        let catalog = self.zones.catalog().load_full();
        let known = |z: &crate::proto::name::Name| catalog.get(z).is_some();
        match req {
            Request::Status => Reply::ok(self.status(&catalog)),
            Request::Reload(None) => {
                let failed = reload_keys(self.updates)
                    + self.zones.off_runtime(Zones::reload_all).await
                    + self.updates.reload(true).await;
                tracing::info!(failed, "reload finished");
                if failed == 0 {
                    Reply::ok("every zone reloaded\n")
                } else {
                    Reply::error(format!(
                        "{failed} zone(s) failed to reload; the log says why\n"
                    ))
                }
            }
            Request::Reload(Some(z)) => {
                if let Some(r) = self.updates.control(&z, ZoneControl::Reload).await {
                    return Reply::from(r);
                }
                let zone = z.clone();
                match self.zones.off_runtime(move |zones| zones.reload_zone(&zone)).await {
                    Some(0) => Reply::ok(format!("{z} reloaded\n")),
                    Some(_) => Reply::error(format!("{z} failed to reload; the previous version keeps serving, the log says why\n")),
                    None => Reply::error(format!("{z} is not a zone loaded from a file here\n")),
                }
            }
            Request::ZoneStatus(z) if known(&z) => Reply::ok(self.zone_status(&z, &catalog).await),
            Request::Flush(ref z) | Request::Freeze(ref z) | Request::Thaw(ref z) if known(z) => {
                let what = match req {
                    Request::Flush(_) => ZoneControl::Flush,
                    Request::Freeze(_) => ZoneControl::Freeze,
                    _ => ZoneControl::Thaw,
                };
                self.updates
                    .control(z, what)
                    .await
                    .map(Reply::from)
                    .unwrap_or_else(|| {
                        Reply::error(format!(
                        "{z} takes no dynamic updates: there is nothing to flush, freeze or thaw\n"
                    ))
                    })
            }
            Request::Notify(z) if known(&z) => {
                let Some(t) = self
                    .transfers
                    .filter(|t| !t.notifier.targets_of(&z).is_empty())
                else {
                    return Reply::error(format!("{z} has no secondaries to NOTIFY (--notify)\n"));
                };
                t.notifier.serial_changed(catalog.get(&z).expect("known"));
                Reply::ok(format!(
                    "NOTIFY sent for {z} to {:?}\n",
                    t.notifier.targets_of(&z)
                ))
            }
            Request::Retransfer(z) => match self.transfers {
                Some(t) if t.shared.secondaries.retransfer(&z) => {
                    Reply::ok(format!("{z}: full transfer from the primary started\n"))
                }
                _ => Reply::error(format!("{z} is not a secondary zone here\n")),
            },
            Request::ZoneStatus(z)
            | Request::Flush(z)
            | Request::Freeze(z)
            | Request::Thaw(z)
            | Request::Notify(z) => Reply::error(format!("{z} is not served here\n")),
        }
    }

    fn status(&self, catalog: &crate::zone::catalog::Catalog) -> String {
        let mut out = format!(
            "musterd {}\nup {}s\nzones:\n",
            env!("CARGO_PKG_VERSION"),
            self.started.elapsed().as_secs()
        );
        for z in catalog.zones() {
            out.push_str(&format!("  {} serial {}\n", z.origin, z.serial()));
        }
        out
    }

    async fn zone_status(
        &self,
        z: &crate::proto::name::Name,
        catalog: &crate::zone::catalog::Catalog,
    ) -> String {
        let zone = catalog.get(z).expect("known");
        let mut out = match self
            .updates
            .control(z, crate::dynamic::ZoneControl::Status)
            .await
        {
            Some(Ok(text) | Err(text)) => text,
            None => match self
                .transfers
                .and_then(|t| t.shared.secondaries.describe(z))
            {
                Some(text) => format!("zone: {}\n{text}serial: {}\n", zone.origin, zone.serial()),
                None => format!(
                    "zone: {}\nkind: primary\nfile: {}\nserial: {}\n",
                    zone.origin,
                    self.zones
                        .file_of(z)
                        .map_or("(built in)".into(), |f| f.display().to_string()),
                    zone.serial()
                ),
            },
        };
        for g in zone.gates() {
            out.push_str(&format!("gate: {}: {}\n", g.state(), g.text));
        }
        if let Some(t) = self.transfers {
            let targets = t.notifier.targets_of(z);
            if !targets.is_empty() {
                out.push_str(&format!("secondaries (NOTIFY): {targets:?}\n"));
            }
        }
        out
    }
}

/// A minimal HTTP/1.0 responder for Prometheus scrapes: every request gets the counters.
async fn serve_metrics(listener: tokio::net::TcpListener, stats: Arc<Stats>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), s.read(&mut req)).await;
            let body = stats.render();
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
