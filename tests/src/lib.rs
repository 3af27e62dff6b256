//! Test harness for end-to-end tests: finds the built binaries, starts `musterd` on a free
//! port and stops it by PID, checks that real programs (dig, etcd, ...) are installed.
//!
//! Under `CI=true` a missing program fails the test; elsewhere the test is skipped with a
//! printed reason.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// Path of a binary built by `cargo build --workspace --bins` in the same profile as the
/// test executable (target/<profile>/NAME).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/test-xxxx -> target/<profile>/
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` before the tests (the README's test command does)",
        p.display()
    );
    p
}

/// True when running under CI (`CI=true`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Records that the current test is skipped, and why. Rust's test harness has no "skipped"
/// outcome, so a skipping test returns early and passes; `tests/run` points
/// `MUSTER_SKIP_LOG` at a file where each skip is appended as `TEST: REASON`, counts those
/// lines as skipped instead of passed and lists them under the closing line. Without the
/// variable (a bare `cargo test`) the reason goes to stderr.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("?");
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|s| match s.rsplit_once('-') {
            // cargo names test binaries NAME-HASH.
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
            _ => s,
        })
        .unwrap_or_default();
    let line = format!("{binary}::{test}: {reason}\n");
    match std::env::var_os("MUSTER_SKIP_LOG") {
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("cannot append to MUSTER_SKIP_LOG: {e}"));
            // One write per line: O_APPEND keeps lines from parallel tests whole.
            f.write_all(line.as_bytes())
                .unwrap_or_else(|e| panic!("cannot append to MUSTER_SKIP_LOG: {e}"));
        }
        None => eprint!("SKIP: {line}"),
    }
}

/// Whether `program` is on PATH. In CI a missing program panics; elsewhere the test is
/// recorded as skipped ([`skip`]) and this returns false.
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        if in_ci() {
            panic!("{program} is not installed; .ci/run must install it (CI=true: a missing program is a failure)");
        }
        skip(&format!("{program} is not installed"));
    }
    found
}

/// True when the tests run as root (network-namespace tests need it). In CI, not being
/// root is a failure; elsewhere the test is recorded as skipped.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if in_ci() {
            panic!("this test needs root (unshare -n -m); CI runs as root");
        }
        skip("needs root (network namespaces)");
    }
    root
}

/// Golden files: expected output kept in the repository and compared byte for byte.
pub mod golden {
    use std::fmt::Write as _;
    use std::path::Path;

    /// Compares `actual` with the file at `path`. `UPDATE_GOLDEN=1` rewrites the file
    /// instead (review the diff: the golden files are the specification) — except under
    /// `CI=true`, where a golden file is never rewritten and asking for it fails.
    pub fn assert_golden(path: &Path, actual: &str) {
        if let Err(e) = check(path, actual) {
            panic!("{e}");
        }
    }

    /// [`assert_golden`] returning the mismatch as an error, for tests that collect
    /// several files before failing.
    pub fn check(path: &Path, actual: &str) -> Result<(), String> {
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            if super::in_ci() {
                return Err(format!(
                    "UPDATE_GOLDEN is set under CI=true: golden files are not rewritten in CI ({})",
                    path.display()
                ));
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            return std::fs::write(path, actual).map_err(|e| format!("{}: {e}", path.display()));
        }
        let expected = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "{}: {e} (UPDATE_GOLDEN=1 creates it; review it before committing)",
                path.display()
            )
        })?;
        if expected == actual {
            return Ok(());
        }
        Err(format!(
            "{} differs (UPDATE_GOLDEN=1 regenerates it; review the diff):\n{}",
            path.display(),
            diff(&expected, actual)
        ))
    }

    /// The differing lines, numbered, expected before actual.
    pub fn diff(expected: &str, actual: &str) -> String {
        let mut out = String::new();
        let e: Vec<&str> = expected.lines().collect();
        let a: Vec<&str> = actual.lines().collect();
        for i in 0..e.len().max(a.len()) {
            let (x, y) = (e.get(i).copied(), a.get(i).copied());
            if x != y {
                let _ = writeln!(
                    out,
                    "line {}:\n  expected: {}\n  actual:   {}",
                    i + 1,
                    x.unwrap_or("<none>"),
                    y.unwrap_or("<none>")
                );
            }
        }
        out
    }
}

/// DNS query packets for tests: one builder instead of one per test file.
pub mod query {
    /// A query to build; [`Query::new`] gives `NAME TYPE IN` with RD clear, no EDNS.
    #[derive(Clone, Debug)]
    pub struct Query {
        /// Message ID.
        pub id: u16,
        /// The name as written (a trailing dot is optional; case is kept).
        pub name: String,
        /// QTYPE.
        pub qtype: u16,
        /// QCLASS (1 = IN).
        pub qclass: u16,
        /// OPCODE (0 = QUERY).
        pub opcode: u8,
        /// The RD flag.
        pub rd: bool,
        /// An OPT record: (UDP payload size, version, DO flag).
        pub edns: Option<(u16, u8, bool)>,
    }

    impl Query {
        /// `name qtype IN`, ID 0x4d51.
        pub fn new(name: &str, qtype: u16) -> Query {
            Query {
                id: 0x4d51,
                name: name.to_owned(),
                qtype,
                qclass: 1,
                opcode: 0,
                rd: false,
                edns: None,
            }
        }

        /// With this message ID.
        pub fn id(mut self, id: u16) -> Query {
            self.id = id;
            self
        }

        /// With the RD flag set.
        pub fn rd(mut self) -> Query {
            self.rd = true;
            self
        }

        /// With an OPT record (EDNS version 0, DO clear) offering `size` octets.
        pub fn edns(mut self, size: u16) -> Query {
            self.edns = Some((size, 0, false));
            self
        }

        /// The packet.
        pub fn to_bytes(&self) -> Vec<u8> {
            let mut p = self.id.to_be_bytes().to_vec();
            let flags: u16 = ((self.opcode as u16 & 0xf) << 11) | if self.rd { 0x0100 } else { 0 };
            p.extend_from_slice(&flags.to_be_bytes());
            p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
            p.extend_from_slice(&wire_name(&self.name));
            p.extend_from_slice(&self.qtype.to_be_bytes());
            p.extend_from_slice(&self.qclass.to_be_bytes());
            if let Some((size, version, dnssec_ok)) = self.edns {
                p.push(0);
                p.extend_from_slice(&41u16.to_be_bytes());
                p.extend_from_slice(&size.to_be_bytes());
                p.extend_from_slice(&[0, version, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
            }
            p
        }
    }

    /// `name` in uncompressed wire form, case kept ("." is the root). Labels are taken
    /// as written: tests that need escapes build the bytes themselves.
    pub fn wire_name(name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for label in name
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
        {
            assert!(
                label.len() <= 63,
                "label too long for a test query: {label}"
            );
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
        out
    }
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `$TMPDIR/muster-test-<pid>-<n>`.
    pub fn new() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("muster-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file inside the directory and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MUSTER_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A port for a program the test starts (etcd, musterd with a fixed port), free for both
/// UDP and TCP on 127.0.0.1 at the time of the call.
///
/// A port the kernel hands out for a bind to port 0 can be handed out again to any other
/// socket as soon as it is released, so these come from below Linux's ephemeral range
/// (32768 and up by default), where the kernel never picks ports by itself: a port
/// released here is not taken by another test's port-0 socket before its consumer binds
/// it. Within one test process no port is handed out twice; test binaries of one run each
/// start at a different offset (from the PID).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in 127.0.0.1:{LOW}-{}", LOW + SPAN - 1);
}

/// A running `musterd serve`, killed on drop.
pub struct Musterd {
    pub child: Child,
    /// The address it answers on (UDP and TCP).
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Musterd {
    /// Starts musterd on 127.0.0.1 (free port) serving `zones` (origin, path).
    pub fn start(zones: &[(&str, &Path)]) -> Musterd {
        let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        for (origin, path) in zones {
            args.push("--zone".into());
            args.push(format!("{origin}={}", path.display()));
        }
        Musterd::start_with_args(&args)
    }

    /// Starts musterd with these arguments; they must include a `--listen` with port 0 or
    /// a fixed port. Waits for the "listening on" log line.
    pub fn start_with_args<S: AsRef<str>>(args: &[S]) -> Musterd {
        Musterd::start_with_env(args, &[])
    }

    /// [`Musterd::start_with_args`] with extra environment variables.
    pub fn start_with_env<S: AsRef<str>>(args: &[S], envs: &[(&str, &std::ffi::OsStr)]) -> Musterd {
        let mut child = Command::new(bin_path("musterd"))
            .args(args.iter().map(|a| a.as_ref()))
            .env(
                "RUST_LOG",
                std::env::var("MUSTERD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // After the default, so that a test can ask for its own RUST_LOG.
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn musterd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(i) = line.find("listening on ") {
                        let rest = &line[i + "listening on ".len()..];
                        let addr = rest.split_whitespace().next().unwrap_or_default();
                        if let Ok(a) = addr.parse::<SocketAddr>() {
                            let _ = tx.send(a);
                            sent = true;
                        }
                    }
                }
                let mut l = log2.lock().expect("log lock");
                l.push_str(&line);
                l.push('\n');
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "musterd did not start within 30 s; its log:\n{}",
                    log.lock().expect("log lock")
                );
            }
        };
        Musterd { child, addr, log }
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Sends SIGHUP and waits until the log shows the reload finished.
    pub fn reload(&self) {
        let before = self.log_text().matches("reload finished").count();
        self.signal(libc::SIGHUP);
        self.wait_log(
            |l| l.matches("reload finished").count() > before,
            Duration::from_secs(20),
        );
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits until `pred(log)` holds; panics with the log after `timeout`.
    pub fn wait_log(&self, pred: impl Fn(&str) -> bool, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if pred(&self.log_text()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "condition not met in the musterd log within {timeout:?}:\n{}",
            self.log_text()
        );
    }

    /// Stops the server with SIGTERM and waits for it (up to 10 s, then SIGKILL).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(libc::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Musterd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of the Prometheus counter or gauge `name` served at `http://addr/metrics`.
pub fn metric(addr: SocketAddr, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics connect");
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .expect("metrics request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("metrics response");
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{body}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Sends one UDP packet to `addr` and returns the reply, or `None` after `timeout`.
pub fn udp_exchange(addr: SocketAddr, pkt: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s.send_to(pkt, addr).expect("send");
    let mut buf = vec![0u8; 65535];
    match s.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Sends one length-prefixed message over a new TCP connection and reads one reply.
pub fn tcp_exchange(addr: SocketAddr, pkt: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut msg = (pkt.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(pkt);
    s.write_all(&msg).expect("write");
    let mut len = [0u8; 2];
    s.read_exact(&mut len).expect("read length");
    let mut out = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut out).expect("read message");
    out
}

/// Runs a command and returns (status success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `bash SCRIPT ARGS...` under `unshare UNSHARE_ARGS... --kill-child` with its
/// stdout and stderr in `dir/script.out`, killing it at `deadline`. Returns the exit
/// status (`None` when killed at the deadline) and the output. `--kill-child` with `-p -f`
/// makes the namespace's PID 1 the script, so killing `unshare` ends everything inside.
pub fn run_in_namespaces(
    unshare_args: &[&str],
    envs: &[(&str, &std::ffi::OsStr)],
    script: &Path,
    args: &[&Path],
    dir: &Path,
    deadline: Duration,
) -> (Option<std::process::ExitStatus>, String) {
    let out_path = dir.join("script.out");
    let out = std::fs::File::create(&out_path).expect("create script.out");
    let err = out.try_clone().expect("clone script.out");
    let started = Instant::now();
    let mut child = Command::new("unshare")
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .args(unshare_args)
        .args(["-p", "-f", "--kill-child", "bash"])
        .arg(script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn unshare");
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for unshare") {
            break Some(st);
        }
        if started.elapsed() > deadline {
            // SIGKILL to the unshare we started; --kill-child takes the namespace down.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
    )
}
