//! The discovery listener: HTTP/1.1 (optionally over TLS) on the server's tokio runtime,
//! the waits, and everything that keeps clients from exhausting the server.
//!
//! A change is planned against the registry, made durable in the [`Store`], then applied
//! and answered, one change at a time and in a task of its own, so that a client that
//! hangs up mid-request cannot leave memory and disk disagreeing.
//!
//! A wait that has nothing to report yet is answered at once with 200 and the headers
//! (as etcd does) and the event follows in the body when a member registers. A wait that
//! reaches `wait_timeout`, or whose token is deleted or expires, ends with an empty body:
//! etcd's client then asks again (and learns the token is gone, if it is).
//!
//! Bounds: connections (`max_connections`, beyond it 503 and close), waits overall and
//! per token (503, which etcd's client retries after a back-off), request head and body
//! time (`request_timeout`, also idle keep-alive time), body size (`max_body`, 413), head
//! size (16 KiB), and the age of a connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST, WWW_AUTHENTICATE,
};
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::rustls;

use super::protocol::{self, Change, Key, Op, Refusal, RefusalKind, Registry, Reply, Request};
use super::store::{Store, StoreError};
use super::{DiscoveryConfig, Metrics};

/// Largest request head (request line and headers) hyper buffers; its minimum is 8 KiB.
const MAX_HEAD: usize = 16 * 1024;

/// Why the discovery service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the discovery secret file {path}: {source}")]
    Secret {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the discovery secret file {path} is empty")]
    EmptySecret { path: PathBuf },
    #[error("discovery TLS: cannot read {path}: {message}")]
    TlsFile { path: PathBuf, message: String },
    #[error("discovery TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Store(#[from] Box<StoreError>),
    #[error("cannot serve discovery on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("discovery: {0}")]
    Runtime(String),
}

/// The running service.
#[derive(Debug)]
pub struct Handle {
    /// The bound address (the port is chosen when the config says 0).
    pub local_addr: SocketAddr,
    pub metrics: Arc<Metrics>,
}

/// One waiting request.
struct Waiter {
    id: u64,
    key: Key,
    recursive: bool,
    since: u64,
    tx: oneshot::Sender<Bytes>,
}

/// What the lock guards: the registry and the waits on it.
struct State {
    registry: Registry,
    waiters: HashMap<String, Vec<Waiter>>,
    waits: usize,
}

struct Service {
    config: DiscoveryConfig,
    secret: Option<Vec<u8>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    store: Arc<Store>,
    state: Mutex<State>,
    /// Serializes changes: plan, persist and apply happen as one step.
    write_lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    connections: Arc<Semaphore>,
    next_waiter: AtomicU64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn read_secret(path: &PathBuf) -> Result<Vec<u8>, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::Secret {
        path: path.clone(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(StartError::EmptySecret { path: path.clone() });
    }
    Ok(secret.as_bytes().to_vec())
}

fn tls_acceptor(files: &super::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let file_err = |path: &PathBuf, e: &dyn std::fmt::Display| StartError::TlsFile {
        path: path.clone(),
        message: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_err(&files.cert, &e))?;
    if certs.is_empty() {
        return Err(file_err(&files.cert, &"no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err(&files.key, &e))?;
    // ring, explicitly: the process installs no default provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Raises the soft open-files limit towards what `max_connections` needs (the hard limit
/// caps it); a limit below it would turn a burst of clients into accept errors.
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= want {
            return;
        }
        let target = want.min(lim.rlim_max);
        if target > lim.rlim_cur {
            lim.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        if target < want {
            tracing::warn!(
                "discovery: the open-files limit ({target}) is below max_connections plus the server's own files ({want}); raise LimitNOFILE"
            );
        }
    }
}

/// Starts the discovery service on the current tokio runtime: reads the secret and the
/// TLS files, opens the state, binds, and spawns the accept loop and the expiry sweep.
pub async fn start(config: DiscoveryConfig, metrics: Arc<Metrics>) -> Result<Handle, StartError> {
    let secret = config.secret_file.as_ref().map(read_secret).transpose()?;
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let dir = config.state_dir.clone();
    let (store, registry) = tokio::task::spawn_blocking(move || Store::open(&dir))
        .await
        .map_err(|e| StartError::Runtime(e.to_string()))?
        .map_err(Box::new)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    raise_fd_limit(config.max_connections as u64 + 256);
    let now = now_unix();
    metrics
        .tokens
        .store(registry.live_count(now) as u64, Ordering::Relaxed);
    tracing::info!(
        "discovery service on {}://{local_addr} (state {}, {} tokens, etcd index {})",
        if tls.is_some() { "https" } else { "http" },
        config.state_dir.display(),
        registry.live_count(now),
        registry.index
    );
    if secret.is_none() {
        tracing::info!("discovery: no secret_file, so anyone who reaches the port can create tokens (up to max_tokens)");
    }
    let svc = Arc::new(Service {
        connections: Arc::new(Semaphore::new(config.max_connections)),
        config,
        secret,
        tls,
        store: Arc::new(store),
        state: Mutex::new(State {
            registry,
            waiters: HashMap::new(),
            waits: 0,
        }),
        write_lock: tokio::sync::Mutex::new(()),
        metrics: metrics.clone(),
        next_waiter: AtomicU64::new(0),
    });
    tokio::spawn(svc.clone().accept_loop(listener));
    tokio::spawn(svc.expiry_loop());
    Ok(Handle {
        local_addr,
        metrics,
    })
}

/// A response body: all at once, or the event a wait is owed.
enum Body {
    Full(Option<Bytes>),
    Wait(Box<WaitBody>),
}

/// The body of a waiting request; dropping it (client gone, connection closed) removes
/// the wait.
struct WaitBody {
    rx: oneshot::Receiver<Bytes>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    done: bool,
    _guard: WaitGuard,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Wait(w) => {
                if w.done {
                    return Poll::Ready(None);
                }
                match Pin::new(&mut w.rx).poll(cx) {
                    Poll::Ready(Ok(event)) => {
                        w.done = true;
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                    // The token was deleted or expired: an empty body makes etcd's client
                    // ask again, and be told the token is gone.
                    Poll::Ready(Err(_)) => {
                        w.done = true;
                        return Poll::Ready(None);
                    }
                    Poll::Pending => {}
                }
                match w.deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        w.done = true;
                        Poll::Ready(None)
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Body::Full(b) => {
                http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            Body::Wait(_) => http_body::SizeHint::default(),
        }
    }
}

/// Removes its wait from the state when the response body goes away.
struct WaitGuard {
    svc: Arc<Service>,
    token: String,
    id: u64,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut st = self.svc.lock_state();
        if let Some(list) = st.waiters.get_mut(&self.token) {
            if let Some(pos) = list.iter().position(|w| w.id == self.id) {
                list.swap_remove(pos);
                if list.is_empty() {
                    st.waiters.remove(&self.token);
                }
                st.waits -= 1;
                self.svc
                    .metrics
                    .active_waits
                    .store(st.waits as u64, Ordering::Relaxed);
            }
        }
    }
}

fn respond(reply: Reply) -> Response<Body> {
    let mut resp = Response::new(Body::Full(Some(Bytes::from(reply.body))));
    *resp.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if let Some(i) = reply.etcd_index {
        h.insert("x-etcd-index", HeaderValue::from(i));
    }
    if reply.auth_challenge {
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"musterd discovery\""),
        );
    }
    if reply.allow {
        h.insert(ALLOW, HeaderValue::from_static("GET, HEAD, PUT, DELETE"));
    }
    resp
}

/// Reads a request body up to `limit` bytes.
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Refusal> {
    use hyper::body::Body as _;
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|e| {
            Refusal::bad(
                protocol::ErrorCode::InvalidForm,
                format!("cannot read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(Refusal::too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf)
}

/// A 16-byte (128-bit) random token in hex.
fn new_token_name() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw)?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// A Host header value that may go into a URL as it is.
fn usable_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

impl Service {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a
        // single push, remove or assignment), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admin(&self, auth: Option<&HeaderValue>) -> bool {
        use subtle::ConstantTimeEq;
        let Some(secret) = &self.secret else {
            return true;
        };
        auth.and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(secret)))
    }

    fn count_reply(&self, reply: &Reply) {
        let m = &self.metrics;
        match reply.status {
            401 => bump(&m.unauthorized),
            412 => bump(&m.duplicates),
            413 | 503 => bump(&m.limit_refusals),
            500 => bump(&m.store_errors),
            s if s >= 400 => bump(&m.bad_requests),
            _ => {}
        }
    }

    fn count_refusal(&self, r: &Refusal) {
        let m = &self.metrics;
        bump(match r.kind {
            RefusalKind::BadRequest => &m.bad_requests,
            RefusalKind::Duplicate => &m.duplicates,
            RefusalKind::Full => &m.full,
            RefusalKind::Limit => &m.limit_refusals,
            RefusalKind::Unauthorized => &m.unauthorized,
            RefusalKind::Internal => &m.store_errors,
        });
    }

    async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!("discovery: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match self.connections.clone().try_acquire_owned() {
                Ok(permit) => {
                    tokio::spawn(self.clone().serve_connection(stream, permit));
                }
                Err(_) => {
                    bump(&self.metrics.limit_refusals);
                    let tls = self.tls.is_some();
                    let limit = self.config.max_connections;
                    tokio::spawn(refuse_connection(stream, tls, limit));
                }
            }
        }
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, _permit: OwnedSemaphorePermit) {
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            return;
        };
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        match self.tls.clone() {
            Some(tls) => {
                if let Ok(Ok(s)) =
                    tokio::time::timeout(self.config.request_timeout, tls.accept(stream)).await
                {
                    self.clone().serve_http(s, "https", local).await;
                }
            }
            None => self.clone().serve_http(stream, "http", local).await,
        }
        self.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    }

    async fn serve_http<IO>(self: Arc<Self>, io: IO, scheme: &'static str, local: SocketAddr)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let svc = svc.clone();
            async move { Ok::<_, Infallible>(svc.handle(req, scheme, local).await) }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            // Also bounds how long an idle keep-alive connection is kept.
            .header_read_timeout(self.config.request_timeout)
            .max_buf_size(MAX_HEAD)
            .keep_alive(true);
        let conn = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        // However busy a connection is kept, it is closed after two full waits: a
        // client cannot hold a slot for ever.
        let age = self.config.wait_timeout * 2 + self.config.request_timeout;
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = tokio::time::sleep(age) => {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(self.config.wait_timeout + self.config.request_timeout, conn).await;
            }
        }
    }

    async fn handle(
        self: Arc<Self>,
        req: hyper::Request<Incoming>,
        scheme: &'static str,
        local: SocketAddr,
    ) -> Response<Body> {
        bump(&self.metrics.requests);
        let (parts, body) = req.into_parts();
        let body = match self.body(&parts.headers, body).await {
            Ok(b) => b,
            Err(r) => {
                self.count_refusal(&r);
                return respond(r.reply());
            }
        };
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        let request = Request {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_type: header(CONTENT_TYPE),
            body: &body,
            admin: self.admin(parts.headers.get(AUTHORIZATION)),
        };
        let index = self.lock_state().registry.index;
        let op = match protocol::parse(&request, &self.config.limits, index) {
            Ok(op) => op,
            Err(reply) => {
                self.count_reply(&reply);
                return respond(reply);
            }
        };
        match op {
            Op::Health => respond(Reply {
                content_type: "application/json",
                ..Reply::text(200, "{\"health\":\"true\"}\n")
            }),
            Op::New { size } => {
                let base = match &self.config.public_url {
                    Some(u) => u.clone(),
                    None => match header(HOST).filter(|h| usable_host(h)) {
                        Some(h) => format!("{scheme}://{h}"),
                        None => format!("{scheme}://{local}"),
                    },
                };
                self.new_token(size, base).await
            }
            Op::Get { token, key, sorted } => respond(self.lock_state().registry.get(
                &token,
                &key,
                sorted,
                now_unix(),
            )),
            Op::Wait {
                token,
                key,
                recursive,
                since,
            } => self.wait(token, key, recursive, since),
            Op::Register { token, id, value } => {
                let limits = self.config.limits;
                respond(
                    self.change(move |reg, now| {
                        reg.plan_register(&token, &id, &value, now, &limits)
                    })
                    .await,
                )
            }
            Op::CreateToken { token, size } => {
                let ttl = self.config.token_ttl.as_secs();
                let limits = self.config.limits;
                respond(
                    self.change(move |reg, now| reg.plan_token(&token, size, now, ttl, &limits))
                        .await,
                )
            }
            Op::DeleteToken { token } => respond(
                self.change(move |reg, now| reg.plan_delete(&token, now))
                    .await,
            ),
        }
    }

    /// The request body, refused when it says or turns out to be longer than
    /// `max_body`, or does not arrive within `request_timeout`.
    async fn body(&self, headers: &hyper::HeaderMap, body: Incoming) -> Result<Vec<u8>, Refusal> {
        let too_long = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > self.config.max_body as u64);
        if too_long {
            return Err(Refusal::too_large(self.config.max_body));
        }
        let read = read_body(body, self.config.max_body);
        match tokio::time::timeout(self.config.request_timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(Refusal::bad(
                protocol::ErrorCode::InvalidForm,
                "the request body did not arrive in time",
            )),
        }
    }

    /// `GET /new`: a fresh token of `size`, answered with its URL under `base` as text
    /// (errors too: the refusal's cause).
    async fn new_token(self: &Arc<Self>, size: u32, base: String) -> Response<Body> {
        let name = match new_token_name() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("discovery: no random numbers for a token: {e}");
                return respond(Reply::text(500, "cannot make a token: no random numbers\n"));
            }
        };
        let ttl = self.config.token_ttl.as_secs();
        let limits = self.config.limits;
        let n = name.clone();
        let reply = self
            .change(move |reg, now| reg.plan_token(&n, size, now, ttl, &limits))
            .await;
        if reply.status == 201 {
            return respond(Reply::text(200, format!("{base}/{name}\n")));
        }
        let cause = serde_json::from_str::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|v| v["cause"].as_str().map(str::to_owned))
            .unwrap_or(reply.body);
        respond(Reply::text(reply.status, format!("{cause}\n")))
    }

    /// Plans, persists and applies one change in a task of its own (see the module docs)
    /// and returns its answer.
    async fn change<F>(self: &Arc<Self>, plan: F) -> Reply
    where
        F: FnOnce(&Registry, u64) -> Result<Change, Refusal> + Send + 'static,
    {
        let svc = self.clone();
        match tokio::spawn(async move { svc.run_change(plan).await }).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(r)) => {
                self.count_refusal(&r);
                r.reply()
            }
            Err(e) => {
                tracing::error!("discovery: change task failed: {e}");
                bump(&self.metrics.store_errors);
                Refusal::internal("internal error", 0).reply()
            }
        }
    }

    /// Plans, persists and applies one change. Must run where no client can cancel it
    /// (a task of its own, or the expiry loop).
    async fn run_change<F>(&self, plan: F) -> Result<Reply, Refusal>
    where
        F: FnOnce(&Registry, u64) -> Result<Change, Refusal>,
    {
        let _serial = self.write_lock.lock().await;
        let now = now_unix();
        let (change, record) = {
            let st = self.lock_state();
            let change = plan(&st.registry, now)?;
            let record = st.registry.record_after(&change);
            (change, record)
        };
        self.persist(&change, record).await?;
        Ok(self.apply(&change, now))
    }

    async fn persist(
        &self,
        change: &Change,
        record: Option<protocol::Token>,
    ) -> Result<(), Refusal> {
        let store = self.store.clone();
        let name = change.token_name().to_owned();
        let index = change.index();
        let result =
            tokio::task::spawn_blocking(move || store.commit(&name, record.as_ref(), index))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        result.map_err(|e| {
            tracing::error!("discovery: {e}");
            let current = self.lock_state().registry.index;
            Refusal::internal(format!("the change could not be stored: {e}"), current)
        })
    }

    /// Applies a persisted change, wakes the waits it satisfies, counts and logs it.
    fn apply(&self, change: &Change, now: u64) -> Reply {
        let mut st = self.lock_state();
        st.registry.apply(change);
        let m = &self.metrics;
        let short = |t: &str| t.chars().take(8).collect::<String>();
        match change {
            Change::AddToken { name, token } => {
                bump(&m.tokens_created);
                // Waits left on an expired token of the same name (not yet swept) must
                // not see the new token's members.
                if let Some(list) = st.waiters.remove(name) {
                    st.waits -= list.len();
                }
                tracing::info!(
                    "discovery: token {}… created, size {}",
                    short(name),
                    token.size
                );
            }
            Change::AddMember { token, member } => {
                let t = &st.registry.tokens[token];
                let rank = t.members.len();
                if rank <= t.size as usize {
                    bump(&m.registrations);
                    tracing::info!(
                        "discovery: token {}…: member {} registered ({rank}/{})",
                        short(token),
                        member.id,
                        t.size
                    );
                } else {
                    bump(&m.full);
                    tracing::info!(
                        "discovery: token {}…: member {} registered after the cluster was full ({rank} > {}); it will find the cluster full",
                        short(token),
                        member.id,
                        t.size
                    );
                }
                let registry = &st.registry;
                let mut woken = Vec::new();
                if let Some(list) = st.waiters.get(token) {
                    for (i, w) in list.iter().enumerate() {
                        if let Some(ev) =
                            registry.first_event(token, &w.key, w.recursive, w.since, now)
                        {
                            woken.push((i, ev));
                        }
                    }
                }
                let n = woken.len();
                if let Some(list) = st.waiters.get_mut(token) {
                    // Highest positions first, so swap_remove leaves the others in place.
                    for (i, ev) in woken.into_iter().rev() {
                        let w = list.swap_remove(i);
                        let _ = w.tx.send(Bytes::from(ev));
                    }
                    if list.is_empty() {
                        st.waiters.remove(token);
                    }
                }
                st.waits -= n;
            }
            Change::RemoveToken { name, expired, .. } => {
                bump(if *expired {
                    &m.tokens_expired
                } else {
                    &m.tokens_deleted
                });
                tracing::info!(
                    "discovery: token {}… {}",
                    short(name),
                    if *expired { "expired" } else { "deleted" }
                );
                // Dropping the senders ends those waits with an empty body.
                if let Some(list) = st.waiters.remove(name) {
                    st.waits -= list.len();
                }
            }
        }
        m.active_waits.store(st.waits as u64, Ordering::Relaxed);
        m.tokens
            .store(st.registry.live_count(now) as u64, Ordering::Relaxed);
        st.registry.change_reply(change)
    }

    fn wait(
        self: Arc<Self>,
        token: String,
        key: Key,
        recursive: bool,
        since: Option<u64>,
    ) -> Response<Body> {
        let now = now_unix();
        let mut st = self.lock_state();
        if let Err(reply) = st.registry.check_wait(&token, &key, now) {
            drop(st);
            self.count_reply(&reply);
            return respond(reply);
        }
        let index = st.registry.index;
        let since = since.unwrap_or(index + 1);
        if let Some(ev) = st.registry.first_event(&token, &key, recursive, since, now) {
            return respond(Reply {
                content_type: "application/json",
                etcd_index: Some(index),
                ..Reply::text(200, ev)
            });
        }
        let on_token = st.waiters.get(&token).map_or(0, Vec::len);
        let refusal = if st.waits >= self.config.max_waits {
            Some(format!(
                "too many waiting requests (limit {}); retry later",
                self.config.max_waits
            ))
        } else if on_token >= self.config.max_waits_per_token {
            Some(format!(
                "too many waiting requests on this token (limit {}); retry later",
                self.config.max_waits_per_token
            ))
        } else {
            None
        };
        if let Some(cause) = refusal {
            drop(st);
            let r = Refusal::limit(cause, index);
            self.count_refusal(&r);
            return respond(r.reply());
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        st.waiters.entry(token.clone()).or_default().push(Waiter {
            id,
            key,
            recursive,
            since,
            tx,
        });
        st.waits += 1;
        self.metrics
            .active_waits
            .store(st.waits as u64, Ordering::Relaxed);
        drop(st);
        let deadline = Box::pin(tokio::time::sleep(self.config.wait_timeout));
        let mut resp = Response::new(Body::Wait(Box::new(WaitBody {
            rx,
            deadline,
            done: false,
            _guard: WaitGuard {
                svc: self,
                token,
                id,
            },
        })));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert("x-etcd-index", HeaderValue::from(index));
        resp
    }

    /// Removes expired tokens (durably, one change each), so that their waits end and
    /// their slots are freed; reads already treat them as gone.
    async fn expiry_loop(self: Arc<Self>) {
        let every =
            (self.config.token_ttl / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut ticker = tokio::time::interval(every);
        loop {
            ticker.tick().await;
            loop {
                let removed = self
                    .run_change(|reg, now| {
                        reg.plan_expiry(now).ok_or_else(|| {
                            Refusal::bad(protocol::ErrorCode::KeyNotFound, "nothing expired")
                        })
                    })
                    .await;
                match removed {
                    Ok(_) => {}
                    Err(r) => {
                        if r.kind == RefusalKind::Internal {
                            // The store failed (logged); try again at the next tick.
                            bump(&self.metrics.store_errors);
                        }
                        break;
                    }
                }
            }
        }
    }
}

/// Answers a connection over the limit with 503 (plain HTTP only: a TLS client would
/// not understand it) and closes it.
async fn refuse_connection(mut stream: TcpStream, tls: bool, limit: usize) {
    if tls {
        return;
    }
    let r = Refusal::limit(
        format!("too many connections (limit {limit}); retry later"),
        0,
    )
    .reply();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nX-Etcd-Index: 0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(r.body.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
