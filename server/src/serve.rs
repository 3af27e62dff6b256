//! `musterd serve`: load zones, bind sockets, answer until SIGTERM; reload on SIGHUP or
//! when a zone file changes; talk to systemd (sd_notify) when run as `Type=notify`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::answer::Responder;
use crate::config::ServerConfig;
use crate::listen::{self, Shared, TcpLimits};
use crate::loader::{LoadError, Zones};
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
    Transfers(#[from] crate::xfr::StartError),
}

fn notify(state: &[NotifyState<'_>]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    let _ = sd_notify::notify(state);
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: ServerConfig) -> Result<(), ServeError> {
    crate::loader::tune_allocator();
    let stats = Arc::new(Stats::default());
    let responder = Responder::new(config.answer.clone());
    let mut zones = Zones::load_all(&config.zones, stats.clone(), responder.clone())
        .map_err(ServeError::Load)?;
    // Updatable zones: their journals are replayed now, and from here on their task, not
    // the loader, rereads their files.
    let updates = Arc::new(
        crate::dynamic::Updates::open(
            &config.updates,
            &config.zones,
            zones.catalog(),
            responder.clone(),
            stats.clone(),
        )
        .map_err(ServeError::Updates)?,
    );
    zones.manage(&updates.origins());
    // Transfers, NOTIFY and secondary zones, whose saved copies are served from here on.
    let transfers = if config.transfer.is_empty() {
        None
    } else {
        Some(crate::xfr::Transfers::new(
            &config.transfer,
            config.updates.keys.clone(),
            &config.updates.state_dir,
            zones.catalog(),
            responder.clone(),
            stats.clone(),
            &config.listen,
        )?)
    };
    let workers = match config.udp_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
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

    let mut tcp_listeners = Vec::new();
    let mut udp_threads = Vec::new();
    let mut bound = Vec::new();
    for &addr in &config.listen {
        let (udp, tcp, local) =
            listen::bind_pair(addr, workers).map_err(|source| ServeError::Bind { addr, source })?;
        for (i, sock) in udp.into_iter().enumerate() {
            let shared = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("udp-{local}-{i}"))
                .spawn(move || listen::udp_worker(sock, shared))
                .map_err(ServeError::Runtime)?;
            udp_threads.push(t);
        }
        tcp_listeners.push(tcp);
        bound.push(local);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("musterd-tcp")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let final_stats = stats.clone();
    rt.block_on(async move {
        // Handlers first: a SIGHUP that arrives right after the "listening" line must
        // reload, not kill the process (the default action).
        let mut hup = signal(SignalKind::hangup()).map_err(ServeError::Runtime)?;
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
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
            tracing::info!("metrics on http://{}/metrics", l.local_addr().unwrap_or(addr));
            tokio::spawn(serve_metrics(l, stats.clone()));
        }
        if let Some(d) = config.discovery.clone() {
            crate::discovery::start(d, stats.discovery.clone()).await?;
        }
        updates.start();
        if let Some(t) = &transfers {
            t.start();
        }
        for local in &bound {
            // Tests and operators read the chosen port from this line when --listen used port 0.
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
                    let failed = tokio::task::block_in_place(|| zones.reload_all())
                        + updates.reload(true).await;
                    tracing::info!(failed, "reload finished");
                    notify(&[NotifyState::Ready, NotifyState::Status(if failed == 0 { "serving" } else { "serving; some zones failed to reload, see the log" })]);
                }
                _ = ticker.tick(), if watch => {
                    tokio::task::block_in_place(|| zones.reload_changed());
                    updates.reload(false).await;
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        notify(&[NotifyState::Stopping]);
        tracing::info!("shutting down");
        shared.shutdown.store(true, Ordering::Relaxed);
        Ok::<(), ServeError>(())
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    // Each worker contains its own panics (see `listen`), so a thread that ended in one
    // failed outside that net: make it visible in the exit status.
    let mut died = 0;
    for t in udp_threads {
        let name = t.thread().name().unwrap_or("udp worker").to_string();
        if let Err(payload) = t.join() {
            died += 1;
            tracing::error!("{name} died: {}", crate::loader::panic_message(&*payload));
        }
    }
    let stats = final_stats;
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
            let mut body = stats.render();
            stats.discovery.render(&mut body);
            stats.updates.render(&mut body);
            stats.xfr.render(&mut body);
            let resp = format!(
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                body.len(),
                body
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
