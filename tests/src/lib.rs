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

/// Whether `program` is on PATH. In CI a missing program panics; locally it returns false
/// after printing why the test is skipped.
pub fn require_program(program: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()));
    if !found {
        if in_ci() {
            panic!("{program} is not installed; .ci/run must install it (CI=true: a missing program is a failure)");
        }
        eprintln!("SKIP: {program} is not installed");
    }
    found
}

/// True when the tests run as root (network-namespace tests need it). In CI, not being
/// root is a failure.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        if in_ci() {
            panic!("this test needs root (unshare -n -m); CI runs as root");
        }
        eprintln!("SKIP: not root");
    }
    root
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

/// A port free for both UDP and TCP on 127.0.0.1 at the time of the call.
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
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
        let mut child = Command::new(bin_path("musterd"))
            .args(args.iter().map(|a| a.as_ref()))
            .env(
                "RUST_LOG",
                std::env::var("MUSTERD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
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
