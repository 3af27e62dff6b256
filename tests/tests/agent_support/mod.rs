//! Helpers shared by the `agent_*` tests (included with `mod agent_support;`; a directory
//! module, so cargo does not build it as a test binary of its own): zone text for a
//! loopback etcd cluster, running `muster-agent`, running etcd members through
//! `muster-agent exec`, and etcdctl.
//!
//! All members of a test cluster are 127.0.0.1 with their own free ports, so tests run
//! concurrently. etcd dials its peers by name (`http://m0.cluster.test:PORT`) through the
//! system resolver, which does not know our zone: each member therefore runs in a private
//! mount namespace (`unshare -m`, root only) with an /etc/hosts naming the members. The
//! agent itself ignores /etc/hosts and asks musterd.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
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

/// TLS material for a cluster with `-ssl` records: one CA, and one certificate that every
/// member uses as server and client certificate.
pub struct Tls {
    /// CA certificate.
    pub ca: PathBuf,
    /// Member certificate: SANs for every member name, the bare domain and 127.0.0.1 (peers
    /// on loopback connect from 127.0.0.1, and etcd checks the client certificate
    /// against that address).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
}

/// A loopback test cluster: names, ports, data dirs, and the hosts file for etcd.
pub struct Cluster {
    /// Member names m0, m1, ...
    pub names: Vec<String>,
    /// Peer port of each member.
    pub peer: Vec<u16>,
    /// Client port of each member.
    pub client: Vec<u16>,
    /// TLS peers and clients (`_etcd-server-ssl` records), or plain http.
    pub tls: Option<Tls>,
    /// Everything on disk: zone, hosts file, data dirs, logs.
    pub dir: TempDir,
}

impl Cluster {
    /// `n` plain-http members with fresh free ports.
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
            tls: None,
            dir,
        }
    }

    /// `n` TLS members: `-ssl` records and certificates made with openssl.
    pub fn new_tls(n: usize) -> Cluster {
        let mut c = Cluster::new(n);
        let d = c.dir.path().to_path_buf();
        let sans: Vec<String> = c
            .names
            .iter()
            .map(|n| format!("DNS:{n}.cluster.test"))
            .chain(["DNS:cluster.test".to_string(), "IP:127.0.0.1".to_string()])
            .collect();
        c.dir.write(
            "member.ext",
            &format!(
                "subjectAltName={}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature\n",
                sans.join(",")
            ),
        );
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=muster test CA"])
            .collect(),
            [
                &["req"][..],
                &ec,
                &["-keyout", "member.key", "-out", "member.csr"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=etcd member"])
            .collect(),
            vec![
                "x509",
                "-req",
                "-in",
                "member.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "member.pem",
                "-days",
                "2",
                "-extfile",
                "member.ext",
            ],
        ];
        for args in steps {
            let (ok, _, err) = output(Command::new("openssl").args(&args).current_dir(&d));
            assert!(ok, "openssl {args:?}: {err}");
        }
        c.tls = Some(Tls {
            ca: d.join("ca.pem"),
            cert: d.join("member.pem"),
            key: d.join("member.key"),
        });
        c
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The SRV, client SRV and A records; members in `without_a` get no A record.
    pub fn records(&self, without_a: &[usize]) -> String {
        let all: Vec<usize> = (0..self.names.len()).collect();
        self.records_of(&all, without_a)
    }

    /// The TXT record that publishes the cluster size at the server SRV owner name.
    pub fn size_record(&self) -> String {
        let ssl = if self.tls.is_some() { "-ssl" } else { "" };
        format!(
            "_etcd-server{ssl}._tcp IN TXT \"muster-size={}\"\n",
            self.names.len()
        )
    }

    /// The records of the members in `members` only; those in `without_a` get no A
    /// record.
    pub fn records_of(&self, members: &[usize], without_a: &[usize]) -> String {
        let ssl = if self.tls.is_some() { "-ssl" } else { "" };
        let mut s = String::new();
        for &i in members {
            let name = &self.names[i];
            let (peer, client) = (self.peer[i], self.client[i]);
            s.push_str(&format!(
                "_etcd-server{ssl}._tcp IN SRV 0 0 {peer} {name}\n"
            ));
            s.push_str(&format!(
                "_etcd-client{ssl}._tcp IN SRV 0 0 {client} {name}\n"
            ));
            if !without_a.contains(&i) {
                s.push_str(&format!("{name} IN A 127.0.0.1\n"));
            }
        }
        s
    }

    /// Writes the zone file (serial, missing A records) and returns its path.
    pub fn write_zone(&self, serial: u32, without_a: &[usize]) -> PathBuf {
        let text = zone(serial, &self.records(without_a));
        self.dir.write("cluster.test.zone", &text)
    }

    /// Data dir of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("data-{}", self.names[i]))
    }

    /// Client URL of member `i` on 127.0.0.1 (for etcdctl).
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.client[i])
    }

    /// Every client URL, comma-separated.
    pub fn endpoints(&self) -> String {
        (0..self.names.len())
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The common agent flags for member `i` against nameserver `ns`, without `--expect`
    /// (the size must then come from the zone).
    pub fn agent_args_unsized(&self, i: usize, ns: SocketAddr) -> Vec<String> {
        let mut v = self.agent_args(i, ns);
        v.truncate(v.len() - 2);
        v
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
        self.spawn_with(i, self.agent_args(i, ns), timeout)
    }

    /// [`Cluster::spawn`] with these agent flags.
    pub fn spawn_with(&self, i: usize, agent_args: Vec<String>, timeout: &str) -> Member {
        self.spawn_command(i, "exec", agent_args, timeout)
    }

    /// Starts member `i` as `muster-agent COMMAND ... -- FAST_ETCD` (`exec`, or another
    /// command that ends by executing etcd, such as `restore`), as [`Cluster::spawn`].
    pub fn spawn_command(
        &self,
        i: usize,
        command: &str,
        agent_args: Vec<String>,
        timeout: &str,
    ) -> Member {
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
            .arg(command)
            .args(agent_args)
            .args(["--timeout", timeout, "--"])
            .args(FAST_ETCD)
            .args(self.etcd_tls_args())
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

    /// etcd's TLS flags for this cluster (none for plain http): verify peers and clients
    /// against the test CA.
    pub fn etcd_tls_args(&self) -> Vec<String> {
        let Some(t) = &self.tls else {
            return Vec::new();
        };
        let (ca, cert, key) = (t.ca.display(), t.cert.display(), t.key.display());
        vec![
            format!("--peer-trusted-ca-file={ca}"),
            format!("--peer-cert-file={cert}"),
            format!("--peer-key-file={key}"),
            "--peer-client-cert-auth".into(),
            format!("--trusted-ca-file={ca}"),
            format!("--cert-file={cert}"),
            format!("--key-file={key}"),
        ]
    }

    /// Runs etcdctl against `endpoints` (with the TLS files when the cluster has them):
    /// (success, stdout, stderr).
    pub fn ctl(&self, endpoints: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.cert)
                .arg("--key")
                .arg(&t.key);
        }
        output(cmd.args(args))
    }

    /// etcdctl's JSON output, parsed.
    pub fn ctl_json(&self, endpoints: &str, args: &[&str]) -> serde_json::Value {
        let (ok, out, err) = self.ctl(endpoints, &[args, &["-w", "json"]].concat());
        assert!(ok, "etcdctl {args:?} failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("etcdctl output is not JSON ({e}): {out}"))
    }

    /// Waits until every member reports healthy; panics with the logs otherwise.
    pub fn wait_healthy(&self, members: &[&Member], timeout: Duration) {
        let ok = wait_for(timeout, || {
            let (ok, _, _) = self.ctl(&self.endpoints(), &["endpoint", "health"]);
            ok.then_some(())
        });
        if ok.is_none() {
            let (_, out, err) = self.ctl(&self.endpoints(), &["endpoint", "health"]);
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

/// True when something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A process whose stderr is collected line by line while it runs, so a test can wait
/// for a progress line instead of sleeping.
pub struct Watched {
    /// The process.
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Spawns `cmd` with stderr piped (stdout too, read at the end).
    pub fn spawn(cmd: &mut Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("stderr lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        Watched {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    /// Waits until the reader has seen the end of stderr (the process has exited).
    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// Stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits until `line` has appeared `times` times on stderr; panics with stderr after
    /// `timeout` or if the process exits first.
    pub fn wait_line(&mut self, line: &str, times: usize, timeout: Duration) {
        let seen = wait_for(timeout, || {
            if self.stderr().matches(line).count() >= times {
                return Some(true);
            }
            match self.child.try_wait() {
                Ok(Some(_)) => Some(false),
                _ => None,
            }
        });
        if seen != Some(true) {
            if seen == Some(false) {
                self.join_reader();
            }
            panic!(
                "{line:?} not seen {times} times (status {:?}); stderr:\n{}",
                self.child.try_wait(),
                self.stderr()
            );
        }
    }

    /// Waits for the exit: (success, stdout, stderr).
    pub fn finish(mut self, timeout: Duration) -> (bool, String, String) {
        let status = wait_for(timeout, || self.child.try_wait().ok().flatten());
        let Some(status) = status else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut o, &mut out);
        }
        self.join_reader();
        (status.success(), out, self.stderr())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Cluster {
    /// Runs `muster-agent ARGS` to completion inside a mount namespace with the cluster's
    /// /etc/hosts (commands such as `leave` dial members by name): (success, stdout,
    /// stderr).
    pub fn agent_in_hosts(&self, args: &[String]) -> (bool, String, String) {
        output(
            Command::new("unshare")
                .args(["-m", "--propagation", "private", "sh", "-c"])
                .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
                .arg(self.dir.path().join("hosts"))
                .arg(bin_path("muster-agent"))
                .args(args)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .stdin(Stdio::null()),
        )
    }

    /// `member list` as (name, is learner), sorted; None while etcdctl fails.
    pub fn member_names(&self, endpoints: &str) -> Option<Vec<(String, bool)>> {
        let (ok, out, _) = self.ctl(endpoints, &["member", "list", "-w", "json"]);
        if !ok {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        let mut names: Vec<(String, bool)> = v["members"]
            .as_array()?
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap_or_default().to_string(),
                    m["isLearner"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        names.sort();
        Some(names)
    }

    /// Client URLs of the members in `members`, comma-separated.
    pub fn endpoints_of(&self, members: &[usize]) -> String {
        members
            .iter()
            .map(|&i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",")
    }
}
