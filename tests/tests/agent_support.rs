//! Helpers shared by the `agent_*` tests (included with `mod agent_support;`): zone text
//! for a loopback etcd cluster, running `muster-agent`, running etcd members through
//! `muster-agent exec`, and etcdctl.
//!
//! All members of a test cluster are 127.0.0.1 with their own free ports, so tests run
//! concurrently. etcd dials its peers by name (`http://m0.cluster.test:PORT`) through the
//! system resolver, which does not know our zone: each member therefore runs in a private
//! mount namespace (`unshare -m`, root only) with an /etc/hosts naming the members. The
//! agent itself ignores /etc/hosts and asks musterd.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use muster_tests::{bin_path, free_port, TempDir};

/// The discovery domain of every agent test.
pub const DOMAIN: &str = "cluster.test.";

/// Timing flags that make a loopback bootstrap take seconds, not tens of seconds.
pub const FAST_ETCD: [&str; 2] = ["--heartbeat-interval=50", "--election-timeout=500"];

/// A zone file for `cluster.test.` with an SOA, NS, and `body`.
pub fn zone(serial: u32, body: &str) -> String {
    format!(
        "$ORIGIN cluster.test.\n$TTL 5\n\
         @ IN SOA ns1 hostmaster {serial} 3600 600 86400 5\n  IN NS ns1\nns1 IN A 127.0.0.1\n{body}"
    )
}

/// A `muster-agent` command with a clean environment: no inherited ETCD_* or MUSTER_*
/// variable may change what the test sees.
pub fn agent() -> Command {
    let mut c = Command::new(bin_path("muster-agent"));
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("ETCD_") || k.starts_with("MUSTER_") || k == "NOTIFY_SOCKET" {
            c.env_remove(k);
        }
    }
    c.stdin(Stdio::null());
    c
}

/// Runs a command to completion: (success, stdout, stderr).
pub fn output(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Polls `f` every 100 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A loopback test cluster: names, ports, data dirs, and the hosts file for etcd.
pub struct Cluster {
    /// Member names m0, m1, ...
    pub names: Vec<String>,
    /// Peer port of each member.
    pub peer: Vec<u16>,
    /// Client port of each member.
    pub client: Vec<u16>,
    /// Everything on disk: zone, hosts file, data dirs, logs.
    pub dir: TempDir,
}

impl Cluster {
    /// `n` members with fresh free ports.
    pub fn new(n: usize) -> Cluster {
        let dir = TempDir::new();
        let names: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for name in &names {
            hosts.push_str(&format!("127.0.0.1 {name}.cluster.test\n"));
        }
        dir.write("hosts", &hosts);
        Cluster {
            names,
            peer: (0..n).map(|_| free_port()).collect(),
            client: (0..n).map(|_| free_port()).collect(),
            dir,
        }
    }

    /// The SRV, client SRV and A records; members in `without_a` get no A record.
    pub fn records(&self, without_a: &[usize]) -> String {
        let mut s = String::new();
        for (i, name) in self.names.iter().enumerate() {
            s.push_str(&format!(
                "_etcd-server._tcp IN SRV 0 0 {} {name}\n",
                self.peer[i]
            ));
            s.push_str(&format!(
                "_etcd-client._tcp IN SRV 0 0 {} {name}\n",
                self.client[i]
            ));
            if !without_a.contains(&i) {
                s.push_str(&format!("{name} IN A 127.0.0.1\n"));
            }
        }
        s
    }

    /// Writes the zone file (serial, missing A records) and returns its path.
    pub fn write_zone(&self, serial: u32, without_a: &[usize]) -> PathBuf {
        self.dir
            .write("cluster.test.zone", &zone(serial, &self.records(without_a)))
    }

    /// Data dir of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("data-{}", self.names[i]))
    }

    /// Client URL of member `i` on 127.0.0.1 (for etcdctl).
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.client[i])
    }

    /// Every client URL, comma-separated.
    pub fn endpoints(&self) -> String {
        (0..self.names.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The common agent flags for member `i` against nameserver `ns`.
    pub fn agent_args(&self, i: usize, ns: SocketAddr) -> Vec<String> {
        vec![
            "--domain".into(),
            DOMAIN.into(),
            "--nameserver".into(),
            ns.to_string(),
            "--name".into(),
            self.names[i].clone(),
            "--data-dir".into(),
            self.data_dir(i).display().to_string(),
            "--expect".into(),
            self.names.len().to_string(),
        ]
    }

    /// `muster-agent plan --format json` for member `i`, parsed.
    pub fn plan_json(&self, i: usize, ns: SocketAddr) -> serde_json::Value {
        let (ok, out, err) = output(agent().arg("plan").args(self.agent_args(i, ns)).args([
            "--format",
            "json",
            "--timeout",
            "20s",
        ]));
        assert!(ok, "muster-agent plan failed: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("plan is not JSON ({e}): {out}"))
    }

    /// Starts member `i` as `muster-agent exec ... -- FAST_ETCD` inside a mount namespace
    /// with the cluster's /etc/hosts. The returned process becomes etcd (same PID).
    pub fn spawn(&self, i: usize, ns: SocketAddr, timeout: &str) -> Member {
        let log = self
            .dir
            .path()
            .join(format!("{}-{}.log", self.names[i], now_ms()));
        let file = std::fs::File::create(&log).expect("create member log");
        // unshare and sh both exec: the PID is the agent's, and then etcd's. The
        // environment is only PATH, so no ETCD_* variable of the test runner leaks in.
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
            .arg(self.dir.path().join("hosts"))
            .arg(bin_path("muster-agent"))
            .arg("exec")
            .args(self.agent_args(i, ns))
            .args(["--timeout", timeout, "--"])
            .args(FAST_ETCD)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start member {i}: {e}"));
        Member {
            child,
            log,
            name: self.names[i].clone(),
        }
    }

    /// Waits until every member reports healthy; panics with the logs otherwise.
    pub fn wait_healthy(&self, members: &[&Member], timeout: Duration) {
        let ok = wait_for(timeout, || {
            let (ok, _, _) = etcdctl(&self.endpoints(), &["endpoint", "health"]);
            ok.then_some(())
        });
        if ok.is_none() {
            let (_, out, err) = etcdctl(&self.endpoints(), &["endpoint", "health"]);
            panic!(
                "cluster not healthy within {timeout:?}:\n{out}{err}\n{}",
                members
                    .iter()
                    .map(|m| m.log_text())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

/// Milliseconds since the epoch, to keep log file names of restarted members apart.
fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// A member process started by a test; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Member {
    /// The process: muster-agent, then etcd after exec.
    pub child: Child,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
    /// Member name.
    pub name: String,
}

impl Member {
    /// The program currently running under this PID (`/proc/PID/comm`).
    pub fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far, headed by the member name.
    pub fn log_text(&self) -> String {
        format!(
            "--- {} ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// SIGTERM, then wait up to 15 s (SIGKILL after that).
    pub fn stop(&mut self) {
        if !self.running() {
            return;
        }
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let exited = wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops members one at a time (all at once makes the leader spend seconds handing over).
pub fn stop_all(members: &mut [Member]) {
    for m in members.iter_mut() {
        m.stop();
    }
}

/// Runs etcdctl against `endpoints`: (success, stdout, stderr).
pub fn etcdctl(endpoints: &str, args: &[&str]) -> (bool, String, String) {
    output(
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=2s", "--command-timeout=5s"])
            .args(args),
    )
}

/// etcdctl's JSON output, parsed.
pub fn etcdctl_json(endpoints: &str, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = etcdctl(endpoints, &[args, &["-w", "json"]].concat());
    assert!(ok, "etcdctl {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl output is not JSON ({e}): {out}"))
}

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Compares `actual` with the golden file `tests/golden/agent/NAME`, or rewrites it under
/// `UPDATE_GOLDEN=1`.
pub fn golden(name: &str, actual: &str) {
    let path = muster_tests::workspace_root()
        .join("tests/golden/agent")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    if expected != actual {
        panic!(
            "{} differs (UPDATE_GOLDEN=1 regenerates; review the diff)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        );
    }
}
