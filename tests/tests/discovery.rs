//! The etcd discovery service (`musterd serve --discovery-listen`) against the real
//! programs: stock etcd 3.4 bootstrapping with `--discovery`, curl sessions that follow
//! etcd's discovery protocol document, and bad or abusive clients.
//!
//! Every etcd member runs on 127.0.0.1 with its own ports from `free_port` and its data
//! in a `TempDir`; members and musterd are stopped by PID. Tests wait for things they can
//! observe (a log line, a registration, a healthy endpoint), never for fixed times, except
//! where the point is that nothing happens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_tests::{free_port, metric, require_program, Musterd, TempDir};
use serde_json::Value;

/// Timing flags that make a loopback bootstrap take about a second.
const FAST_ETCD: [&str; 2] = ["--heartbeat-interval=50", "--election-timeout=500"];

/// A bootstrap against a correct server takes a second or two here; etcd's retry
/// back-off after a lost connection adds 2 s.
const BOOTSTRAP: Duration = Duration::from_secs(60);

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the etcd programs (and curl) are there; a missing one skips the test, or
/// fails it under CI.
fn have(programs: &[&str]) -> bool {
    programs.iter().all(|p| require_program(p))
}

/// musterd with the discovery service on a fixed port (kept across restarts), its state in
/// `state`, metrics on another port, and `extra` arguments.
struct Service {
    musterd: Musterd,
    port: u16,
    metrics: SocketAddr,
    args: Vec<String>,
}

impl Service {
    fn start(state: &Path, extra: &[String]) -> Service {
        let port = free_port();
        let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-listen".into(),
            metrics.to_string(),
            "--discovery-listen".into(),
            format!("127.0.0.1:{port}"),
            "--discovery-state".into(),
            state.display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let musterd = Musterd::start_with_args(&args);
        assert!(
            musterd
                .log_text()
                .contains(&format!("discovery service on http://127.0.0.1:{port}")),
            "{}",
            musterd.log_text()
        );
        Service {
            musterd,
            port,
            metrics,
            args,
        }
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops musterd and starts it again with the same arguments and state.
    fn restart(&mut self) {
        self.musterd.stop();
        self.musterd = Musterd::start_with_args(&self.args);
    }

    fn metric(&self, name: &str) -> u64 {
        metric(self.metrics, name)
    }

    /// `GET /new?size=N`: the token URL.
    fn new_token(&self, size: u32) -> String {
        let r = http(self.port, "GET", &format!("/new?size={size}"), &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body.starts_with(&self.base()), "{r:?}");
        assert!(
            r.body.ends_with('\n'),
            "one line, newline-terminated: {r:?}"
        );
        r.body.trim_end().to_string()
    }
}

/// An HTTP response read by [`http`].
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    fn etcd_index(&self) -> u64 {
        self.header("x-etcd-index")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no X-Etcd-Index: {self:?}"))
    }
}

/// Parses a complete response as read from the socket (a chunked body is decoded).
fn parse_response(raw: &[u8]) -> Resp {
    parse_head_and_body(raw, true)
}

/// Parses `curl -i` output (curl has decoded the body already).
fn parse_curl(raw: &[u8]) -> Resp {
    parse_head_and_body(raw, false)
}

fn parse_head_and_body(raw: &[u8], decode_chunks: bool) -> Resp {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = decode_chunks
        && headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_owned()
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// One request over a fresh connection (`Connection: close`), read to the end.
fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to discovery");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "PUT" {
        req.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send request");
    s.write_all(body).expect("send body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    parse_response(&raw)
}

/// Sends raw bytes and reads what comes back until the server closes (a reset counts as
/// the end).
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    raw
}

/// A stock etcd member on 127.0.0.1, stopped (SIGTERM, then SIGKILL) on drop.
struct Etcd {
    child: Child,
    name: String,
    client: u16,
    log: PathBuf,
}

impl Etcd {
    fn start(dir: &Path, name: &str, discovery: &str, extra: &[&str]) -> Etcd {
        Etcd::start_with_env(dir, name, discovery, extra, &[])
    }

    fn start_with_env(
        dir: &Path,
        name: &str,
        discovery: &str,
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Etcd {
        let client = free_port();
        let peer = free_port();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create etcd log");
        let mut cmd = Command::new("etcd");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(["--name", name, "--data-dir"])
            .arg(dir.join(name))
            .args([
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--discovery={discovery}"),
            ])
            .args(FAST_ETCD)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out)
            .spawn()
            .expect("spawn etcd");
        Etcd {
            child,
            name: name.into(),
            client,
            log,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client)
    }

    fn log_text(&self) -> String {
        format!(
            "--- {} ---\n{}",
            self.name,
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        if !self.running() {
            return;
        }
        // SAFETY: kill(2) on the PID of a child we started and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        if wait_for(Duration::from_secs(15), || {
            self.child.try_wait().ok().flatten()
        })
        .is_none()
        {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops members one at a time (all at once makes the leader spend seconds handing over).
fn stop_all(members: &mut [Etcd]) {
    for m in members.iter_mut().rev() {
        m.stop();
    }
}

fn logs(members: &[Etcd]) -> String {
    members
        .iter()
        .map(Etcd::log_text)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `etcdctl endpoint health` on every member, and `member list` from the first: the
/// names of a healthy cluster of all of them, or None.
fn healthy_cluster(members: &[Etcd]) -> Option<Vec<String>> {
    let endpoints = members
        .iter()
        .map(Etcd::endpoint)
        .collect::<Vec<_>>()
        .join(",");
    let ok = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &endpoints,
            "--dial-timeout=1s",
            "--command-timeout=2s",
            "endpoint",
            "health",
        ])
        .output()
        .ok()?
        .status
        .success();
    if !ok {
        return None;
    }
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &members[0].endpoint(), "member", "list"])
        .output()
        .ok()?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(", ").nth(2).map(str::to_owned))
        .collect();
    names.sort();
    Some(names)
}

fn wait_healthy(members: &[Etcd], what: &str) -> Duration {
    let started = Instant::now();
    let want: Vec<String> = {
        let mut n: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        n.sort();
        n
    };
    let got = wait_for(BOOTSTRAP, || {
        healthy_cluster(members).filter(|n| *n == want)
    });
    assert!(
        got.is_some(),
        "{what}: no healthy cluster of {want:?} within {BOOTSTRAP:?}; logs:\n{}",
        logs(members)
    );
    started.elapsed()
}

/// The registered member IDs of a token, by listing it.
fn registered(port: u16, token_path: &str) -> Vec<String> {
    let r = http(port, "GET", token_path, &[], b"");
    if r.status != 200 {
        return Vec::new();
    }
    r.json()["node"]["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n["key"].as_str())
                .map(|k| k.rsplit('/').next().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/".into(), |i| rest[i..].to_owned())
}

#[test]
fn three_members_bootstrap_and_a_fourth_is_refused_as_etcd_expects() {
    if !have(&["etcd", "etcdctl"]) {
        return;
    }
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    let url = svc.new_token(3);

    let started = Instant::now();
    let mut members: Vec<Etcd> = (0..3)
        .map(|i| Etcd::start(dir.path(), &format!("m{i}"), &url, &[]))
        .collect();
    wait_healthy(&members, "three members with --discovery");
    eprintln!(
        "discovery bootstrap of 3 members took {:?}",
        started.elapsed()
    );
    assert_eq!(registered(svc.port, &path_of(&url)).len(), 3);
    for m in &members {
        assert!(
            m.log_text().contains("found 3 needed peer(s)"),
            "{}",
            m.log_text()
        );
    }

    // A fourth member sees the full cluster before registering (etcd checks first) and,
    // by etcd 3.4's default --discovery-fallback=proxy, becomes a v2 proxy of it.
    let mut late = Etcd::start(dir.path(), "m3", &url, &[]);
    let proxied = wait_for(BOOTSTRAP, || {
        late.log_text()
            .contains("v2 proxy started listening on client requests")
            .then_some(())
    });
    assert!(proxied.is_some(), "{}", late.log_text());
    assert!(late
        .log_text()
        .contains("discovery cluster full, falling back to proxy"));
    // The proxy forwards to the cluster.
    let version = http(late.client, "GET", "/version", &[], b"");
    assert!(version.body.contains("etcdcluster"), "{version:?}");
    // With --discovery-fallback=exit it stops with etcd's "cluster is full".
    let mut exiting = Etcd::start(dir.path(), "m4", &url, &["--discovery-fallback=exit"]);
    let status = wait_for(BOOTSTRAP, || exiting.child.try_wait().ok().flatten());
    assert!(
        status.is_some_and(|s| !s.success()),
        "{}",
        exiting.log_text()
    );
    assert!(
        exiting.log_text().contains("discovery: cluster is full"),
        "{}",
        exiting.log_text()
    );
    // Nothing broke: same three members, healthy; nobody registered past the size.
    wait_healthy(&members, "after the fourth and fifth member");
    assert_eq!(registered(svc.port, &path_of(&url)).len(), 3);
    assert_eq!(svc.metric("musterd_discovery_registrations_total"), 3);
    assert_eq!(svc.metric("musterd_discovery_full_total"), 0);
    assert_eq!(svc.metric("musterd_discovery_tokens_created_total"), 1);
    late.stop();
    stop_all(&mut members);
}

#[test]
fn the_self_hosted_url_style_bootstraps_too() {
    if !have(&["etcd", "etcdctl"]) {
        return;
    }
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    // The protocol document's self-hosted flow: the operator picks the token (uuidgen)
    // and PUTs its size under /v2/keys/_etcd/registry.
    let uuid = "6c007a14-875d-4d5a-a6d6-c2e6b14ac7a1";
    let prefix = format!("/v2/keys/_etcd/registry/{uuid}");
    let r = http(
        svc.port,
        "PUT",
        &format!("{prefix}/_config/size"),
        &[],
        b"value=3",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let url = format!("{}{prefix}", svc.base());
    let mut members: Vec<Etcd> = (0..3)
        .map(|i| Etcd::start(dir.path(), &format!("s{i}"), &url, &[]))
        .collect();
    wait_healthy(&members, "three members with a /v2/keys/_etcd/registry URL");
    // The same token answers in discovery.etcd.io's style as well.
    assert_eq!(registered(svc.port, &format!("/{uuid}")).len(), 3);
    stop_all(&mut members);
}

#[test]
fn a_size_five_token_with_three_members_keeps_them_waiting() {
    if !have(&["etcd", "etcdctl"]) {
        return;
    }
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    let url = svc.new_token(5);
    let path = path_of(&url);
    let mut members: Vec<Etcd> = (0..3)
        .map(|i| Etcd::start(dir.path(), &format!("w{i}"), &url, &[]))
        .collect();
    // All three register and wait, as etcd does with too few peers.
    let waiting = wait_for(BOOTSTRAP, || {
        members
            .iter()
            .all(|m| m.log_text().contains("waiting for 2 more"))
            .then_some(())
    });
    assert!(waiting.is_some(), "{}", logs(&members));
    assert_eq!(registered(svc.port, &path).len(), 3);
    let waits = wait_for(Duration::from_secs(10), || {
        (svc.metric("musterd_discovery_active_waits") == 3).then_some(())
    });
    assert!(
        waits.is_some(),
        "active waits: {}",
        svc.metric("musterd_discovery_active_waits")
    );
    // Nothing happens while they wait: still running, nobody serves clients.
    std::thread::sleep(Duration::from_secs(2));
    for m in members.iter_mut() {
        assert!(m.running(), "{}", m.log_text());
    }
    assert!(healthy_cluster(&members[..1]).is_none());
    // Two more members complete the token: the waits resume and all five form a cluster.
    members.push(Etcd::start(dir.path(), "w3", &url, &[]));
    members.push(Etcd::start(dir.path(), "w4", &url, &[]));
    wait_healthy(&members, "five members after waiting");
    stop_all(&mut members);
}

#[test]
fn musterd_restarted_in_the_middle_of_a_bootstrap() {
    if !have(&["etcd", "etcdctl"]) {
        return;
    }
    let dir = TempDir::new();
    let mut svc = Service::start(&dir.path().join("state"), &[]);
    let url = svc.new_token(3);
    let path = path_of(&url);
    let mut members: Vec<Etcd> = (0..2)
        .map(|i| Etcd::start(dir.path(), &format!("r{i}"), &url, &[]))
        .collect();
    let waiting = wait_for(BOOTSTRAP, || {
        members
            .iter()
            .all(|m| m.log_text().contains("waiting for 1 more"))
            .then_some(())
    });
    assert!(waiting.is_some(), "{}", logs(&members));
    let before = http(svc.port, "GET", &path, &[], b"");
    let index_before = before.etcd_index();

    svc.restart();
    // The state came back: same registrations, and an index that did not go back.
    let after = http(svc.port, "GET", &path, &[], b"");
    assert_eq!(after.etcd_index(), index_before);
    assert_eq!(after.json(), before.json());
    assert!(svc
        .musterd
        .log_text()
        .contains(&format!("1 tokens, etcd index {index_before}")));

    // A wait from before the restart means the same thing after it: waiting on the first
    // member's key from its createdIndex finds its registration at once.
    let first = &before.json()["node"]["nodes"][0];
    let (key, created) = (
        first["key"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned(),
        first["createdIndex"].as_u64().unwrap(),
    );
    let r = http(
        svc.port,
        "GET",
        &format!("{path}/{key}?wait=true&waitIndex={created}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["node"], *first);

    let started = Instant::now();
    members.push(Etcd::start(dir.path(), "r2", &url, &[]));
    wait_healthy(&members, "after musterd restarted mid-bootstrap");
    eprintln!(
        "cluster formed {:?} after the third member started (musterd was restarted)",
        started.elapsed()
    );
    let third = http(svc.port, "GET", &path, &[], b"");
    assert!(third.etcd_index() > index_before);
    stop_all(&mut members);
}

/// The curl session of etcd's discovery protocol document, step by step, each answer
/// compared field by field with what etcd's v2 API answers.
#[test]
fn curl_session_follows_the_protocol_document() {
    if !have(&["curl"]) {
        return;
    }
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    let curl = |args: &[&str]| -> Resp {
        let out = Command::new("curl")
            .args(["-s", "-i", "--max-time", "10"])
            .args(args)
            .output()
            .expect("run curl");
        parse_curl(&out.stdout)
    };
    let prefix = format!("{}/v2/keys/_etcd/registry", svc.base());
    let uuid = "1e0f7c6d-6ad9-4ab2-9d5c-3c0e6b2f2a10";
    let key = |rest: &str| format!("/_etcd/registry/{uuid}{rest}");

    // Specifying the expected cluster size.
    let r = curl(&[
        "-X",
        "PUT",
        &format!("{prefix}/{uuid}/_config/size"),
        "-d",
        "value=3",
    ]);
    assert_eq!(r.status, 201);
    let j = r.json();
    assert_eq!(j["action"], "set");
    assert_eq!(j["node"]["key"], key("/_config/size"));
    assert_eq!(j["node"]["value"], "3");
    let size_index = r.etcd_index();
    assert_eq!(j["node"]["createdIndex"], size_index);
    assert_eq!(j["node"]["modifiedIndex"], size_index);

    // Registering itself. The document's value joins two URLs with '&', which curl -d
    // sends as two form fields: the member is registered with the first, as etcd would.
    let r = curl(&[
        "-X",
        "PUT",
        &format!("{prefix}/{uuid}/8e9e05c52164694d?prevExist=false"),
        "-d",
        "value=infra0=http://10.0.1.10:2380&infra0=http://10.0.1.10:7001",
    ]);
    assert_eq!(r.status, 201);
    let j = r.json();
    assert_eq!(j["action"], "create");
    assert_eq!(j["node"]["key"], key("/8e9e05c52164694d"));
    assert_eq!(j["node"]["value"], "infra0=http://10.0.1.10:2380");
    let member_index = r.etcd_index();
    assert_eq!(member_index, size_index + 1);
    assert_eq!(j["node"]["createdIndex"], member_index);
    // Registering again is etcd's "Key already exists".
    let r = curl(&[
        "-X",
        "PUT",
        &format!("{prefix}/{uuid}/8e9e05c52164694d?prevExist=false"),
        "-d",
        "value=infra0=http://10.0.1.10:2380",
    ]);
    assert_eq!(r.status, 412);
    assert_eq!(
        r.json(),
        serde_json::json!({"errorCode": 105, "message": "Key already exists",
            "cause": key("/8e9e05c52164694d"), "index": member_index})
    );

    // Checking the status.
    let r = curl(&[&format!("{prefix}/{uuid}/_config/size")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["action"], "get");
    assert_eq!(r.json()["node"]["value"], "3");
    assert_eq!(r.etcd_index(), member_index);
    let r = curl(&[&format!("{prefix}/{uuid}")]);
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["node"]["key"], key(""));
    assert_eq!(j["node"]["dir"], true);
    let nodes = j["node"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "_config is hidden, as in etcd: {j}");
    assert_eq!(nodes[0]["createdIndex"], member_index);

    // Waiting for all members: the recursive wait etcd's client makes, from the index
    // after the listing, is answered by the next registration.
    let waiter = {
        let url = format!(
            "{prefix}/{uuid}?wait=true&recursive=true&waitIndex={}",
            member_index + 1
        );
        std::thread::spawn(move || {
            let out = Command::new("curl")
                .args(["-s", "-i", "--max-time", "20", &url])
                .output()
                .expect("run curl");
            parse_curl(&out.stdout)
        })
    };
    wait_for(Duration::from_secs(10), || {
        (svc.metric("musterd_discovery_active_waits") == 1).then_some(())
    })
    .expect("the wait is registered");
    let r = curl(&[
        "-X",
        "PUT",
        &format!("{prefix}/{uuid}/4a5b6c7d?prevExist=false"),
        "-d",
        "value=infra1=http://10.0.1.11:2380",
    ]);
    assert_eq!(r.status, 201);
    let w = waiter.join().expect("waiter");
    assert_eq!(w.status, 200);
    let j = w.json();
    assert_eq!(j["action"], "create");
    assert_eq!(j["node"]["key"], key("/4a5b6c7d"));
    assert_eq!(j["node"]["value"], "infra1=http://10.0.1.11:2380");
    assert_eq!(j["node"]["createdIndex"], member_index + 1);
    // The wait etcd makes on its own key right after registering (waitIndex = its
    // createdIndex) is answered at once from the registrations.
    let r = curl(&[&format!(
        "{prefix}/{uuid}/4a5b6c7d?wait=true&waitIndex={}",
        member_index + 1
    )]);
    assert_eq!(r.json()["node"]["createdIndex"], member_index + 1);
    // The document's literal wait (not recursive) sees no member: it waits.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!(
            "{prefix}/{uuid}?wait=true&waitIndex={member_index}"
        ))
        .output()
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(out.status.code(), Some(28), "curl should time out waiting");

    // The public service's conveniences: /new and GET /<token>.
    let r = curl(&[&format!("{}/new?size=5", svc.base())]);
    assert_eq!(r.status, 200);
    let token_url = r.body.trim_end().to_string();
    let token = token_url.rsplit('/').next().unwrap();
    assert_eq!(token.len(), 32, "128 random bits in hex: {token_url}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    let r = curl(&[&format!("{token_url}/_config/size")]);
    assert_eq!(r.json()["node"]["value"], "5");
    let r = curl(&[&token_url]);
    assert_eq!(r.json()["node"]["key"], format!("/_etcd/registry/{token}"));
    assert!(r.json()["node"].get("nodes").is_none());

    // Deleting a token; afterwards it is not found.
    let r = curl(&["-X", "DELETE", &token_url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["action"], "delete");
    assert_eq!(r.json()["prevNode"]["dir"], true);
    let r = curl(&[&token_url]);
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["errorCode"], 100);
    assert_eq!(r.json()["cause"], format!("/_etcd/registry/{token}"));
}

fn config(dir: &TempDir, text: &str) -> Vec<String> {
    let path = dir.write("musterd.toml", text);
    vec!["--config".into(), path.display().to_string()]
}

#[test]
fn bad_input_gets_clear_errors_and_breaks_nothing() {
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    let p = svc.port;
    let tok = path_of(&svc.new_token(3));

    let unknown = http(p, "GET", "/0123456789abcdef0123456789abcdef", &[], b"");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["errorCode"], 100);
    let r = http(
        p,
        "PUT",
        "/0123456789abcdef0123456789abcdef/abc",
        &[],
        b"value=a%3Dhttp%3A%2F%2Fh%3A1",
    );
    assert_eq!(r.status, 404, "{r:?}");

    for size in ["0", "65", "1000000", "-3", "three"] {
        let r = http(p, "GET", &format!("/new?size={size}"), &[], b"");
        assert_eq!(r.status, 400, "size={size}: {r:?}");
        assert!(r.body.contains("from 1 to 64"), "{r:?}");
    }

    for (value, why) in [
        ("infra0", "is not name=peer-url"),
        ("infra0%3Dftp%3A%2F%2Fh%3A1", "scheme"),
        ("infra0%3Dhttp%3A%2F%2Fh", "host:port"),
        ("infra0%3Dhttp%3A%2F%2Fh%3A1%2Fpath", "no path"),
        (
            "a%3Dhttp%3A%2F%2Fh%3A1%2Cb%3Dhttp%3A%2F%2Fh%3A2",
            "two member names",
        ),
        ("", "empty value"),
    ] {
        let r = http(
            p,
            "PUT",
            &format!("{tok}/abc?prevExist=false"),
            &[],
            format!("value={value}").as_bytes(),
        );
        assert_eq!(r.status, 400, "{value}: {r:?}");
        assert_eq!(r.json()["errorCode"], 209, "{r:?}");
        assert!(
            r.json()["cause"].as_str().unwrap().contains(why),
            "{value}: {r:?}"
        );
    }
    let r = http(
        p,
        "PUT",
        &format!("{tok}/ABC"),
        &[],
        b"value=a%3Dhttp%3A%2F%2Fh%3A1",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("member ID"), "{r:?}");
    let r = http(
        p,
        "GET",
        &format!("{tok}?wait=true&waitIndex=soon"),
        &[],
        b"",
    );
    assert_eq!((r.status, r.json()["errorCode"].as_u64()), (400, Some(203)));
    let r = http(p, "GET", "/v2/keys/_etcd/registry", &[], b"");
    assert_eq!(r.status, 401, "tokens must not be listable: {r:?}");
    let r = http(p, "POST", &tok, &[], b"value=x");
    assert_eq!(r.status, 405);
    let r = http(p, "DELETE", &format!("{tok}/abc"), &[], b"");
    assert_eq!(r.status, 400);

    // Oversized body (refused from its Content-Length, before it is sent) and head
    // (431, or the connection closed under the client while it was still sending).
    let raw = exchange(
        p,
        format!("PUT {tok}/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n").as_bytes(),
    );
    let r = parse_response(&raw);
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.body.contains("larger than 16384 bytes"), "{r:?}");
    let long_header = format!(
        "GET {tok} HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "x".repeat(32 * 1024)
    );
    let raw = exchange(p, long_header.as_bytes());
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    // Garbage instead of HTTP.
    let raw = exchange(
        p,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    );
    assert!(
        raw.is_empty() || raw.starts_with(b"HTTP/1.1 400"),
        "{raw:?}"
    );

    // After all that, the token still works.
    let r = http(
        p,
        "PUT",
        &format!("{tok}/abc?prevExist=false"),
        &[],
        b"value=m0%3Dhttp%3A%2F%2F127.0.0.1%3A2380",
    );
    assert_eq!(r.status, 201, "{r:?}");
    let r = http(p, "GET", "/health", &[], b"");
    assert_eq!(r.body, "{\"health\":\"true\"}\n");
    assert!(svc.metric("musterd_discovery_bad_requests_total") >= 15);
    assert!(svc.metric("musterd_discovery_limit_refusals_total") >= 1);
}

/// Opens a wait on `path` and returns the connection once the head has arrived, with
/// the status.
fn open_wait(port: u16, path: &str) -> (TcpStream, u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let req = format!(
        "GET {path}?wait=true&recursive=true HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rest = String::new();
    if status != 200 {
        let _ = s.read_to_string(&mut rest);
    }
    (s, status, rest)
}

/// Raises this process's soft open-files limit to its hard limit (the waits test holds
/// over a thousand sockets).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[test]
fn thousands_of_waits_are_bounded_and_other_tokens_keep_working() {
    raise_fd_limit();
    let dir = TempDir::new();
    let args = config(
        &dir,
        "discovery.max_waits = 300\ndiscovery.max_waits_per_token = 100\ndiscovery.max_connections = 3000\n",
    );
    let svc = Service::start(&dir.path().join("state"), &args);
    let p = svc.port;
    let a = path_of(&svc.new_token(3));
    let b = path_of(&svc.new_token(3));

    // 1000 waits on one token: 100 are taken, the rest refused with a reason.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..1000 {
        let (s, status, body) = open_wait(p, &a);
        match status {
            200 => open.push(s),
            503 => {
                assert!(
                    body.contains("too many waiting requests on this token (limit 100)"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("status {other}: {body}"),
        }
    }
    assert_eq!((open.len(), refused), (100, 900));
    // Another token is not affected: its wait is taken and answered.
    let (mut wb, status, _) = open_wait(p, &b);
    assert_eq!(status, 200);
    let r = http(
        p,
        "PUT",
        &format!("{b}/b1?prevExist=false"),
        &[],
        b"value=m1%3Dhttp%3A%2F%2F127.0.0.1%3A2380",
    );
    assert_eq!(r.status, 201);
    let mut body = String::new();
    wb.read_to_string(&mut body).unwrap();
    assert!(body.contains("\"action\":\"create\""), "{body}");
    // The overall limit: 200 more on other tokens fill it, then waits are refused.
    let mut more = Vec::new();
    let mut global_refusals = 0;
    for i in 0..250 {
        let t = path_of(&svc.new_token(3));
        let (s, status, body) = open_wait(p, &t);
        if status == 200 {
            more.push(s);
        } else {
            assert!(
                body.contains("too many waiting requests (limit 300)"),
                "{i}: {body}"
            );
            global_refusals += 1;
        }
    }
    assert_eq!((more.len(), global_refusals), (200, 50));
    assert_eq!(svc.metric("musterd_discovery_active_waits"), 300);
    // One registration on A answers all its 100 waits at once.
    let r = http(
        p,
        "PUT",
        &format!("{a}/a1?prevExist=false"),
        &[],
        b"value=m1%3Dhttp%3A%2F%2F127.0.0.1%3A2380",
    );
    assert_eq!(r.status, 201);
    for mut s in open {
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.contains("/a1\""), "{body}");
    }
    drop(more);
    let drained = wait_for(Duration::from_secs(10), || {
        (svc.metric("musterd_discovery_active_waits") == 0).then_some(())
    });
    assert!(
        drained.is_some(),
        "waits left: {}",
        svc.metric("musterd_discovery_active_waits")
    );
    assert_eq!(http(p, "GET", "/health", &[], b"").status, 200);
}

#[test]
fn slow_clients_timeouts_expiry_and_the_creation_secret() {
    let dir = TempDir::new();
    let secret = dir.write("secret", "s3cret-value\n");
    let args = config(
        &dir,
        &format!(
            "discovery.secret_file = {:?}\ndiscovery.request_timeout = \"1s\"\ndiscovery.wait_timeout = \"1s\"\n\
             discovery.token_ttl = \"3s\"\ndiscovery.max_connections = 5\n",
            secret.display().to_string()
        ),
    );
    let svc = Service::start(&dir.path().join("state"), &args);
    let p = svc.port;

    // Creating needs the secret; registering does not.
    let r = http(p, "GET", "/new?size=1", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"musterd discovery\"")
    );
    let r = http(
        p,
        "GET",
        "/new?size=1",
        &[("Authorization", "Bearer wrong")],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = http(
        p,
        "GET",
        "/new?size=1",
        &[("Authorization", "Bearer s3cret-value")],
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let tok = path_of(r.body.trim_end());
    let r = http(
        p,
        "PUT",
        &format!("{tok}/a1?prevExist=false"),
        &[],
        b"value=m1%3Dhttp%3A%2F%2F127.0.0.1%3A2380",
    );
    assert_eq!(r.status, 201);
    let r = http(p, "DELETE", &tok, &[], b"");
    assert_eq!(r.status, 401);

    // A wait that sees nothing for wait_timeout ends with an empty body (etcd's client
    // asks again).
    let started = Instant::now();
    let r = http(
        p,
        "GET",
        &format!("{tok}?wait=true&recursive=true"),
        &[],
        b"",
    );
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert!(started.elapsed() < Duration::from_secs(5));

    // A client that sends half a request head is cut off after request_timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", p)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut raw = Vec::new();
    let _ = slow.read_to_end(&mut raw);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "held for {took:?}");

    // Connections over max_connections get 503 and are closed.
    let idle: Vec<TcpStream> = (0..5)
        .map(|_| TcpStream::connect(("127.0.0.1", p)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(("127.0.0.1", p)).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    let _ = extra.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("too many connections (limit 5)"), "{r:?}");
    drop(idle);

    // Tokens expire (token_ttl = 3s): gone for readers, then swept.
    let gone = wait_for(Duration::from_secs(15), || {
        let r = http(p, "GET", &tok, &[], b"");
        (r.status == 404).then_some(())
    });
    assert!(gone.is_some());
    let swept = wait_for(Duration::from_secs(10), || {
        (svc.metric("musterd_discovery_tokens_expired_total") == 1).then_some(())
    });
    assert!(swept.is_some(), "{}", svc.musterd.log_text());
    assert_eq!(svc.metric("musterd_discovery_tokens"), 0);
}

#[test]
fn https_with_a_certificate_from_the_config() {
    if !have(&["openssl", "curl", "etcd", "etcdctl"]) {
        return;
    }
    let dir = TempDir::new();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl")
        .success();
    assert!(ok, "openssl could not make a test certificate");
    let args = config(
        &dir,
        &format!(
            "discovery.tls_cert = {:?}\ndiscovery.tls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let port = free_port();
    let mut all = vec![
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--discovery-listen".into(),
        format!("127.0.0.1:{port}"),
        "--discovery-state".into(),
        dir.path().join("state").display().to_string(),
    ];
    all.extend(args);
    let musterd = Musterd::start_with_args(&all);
    assert!(musterd
        .log_text()
        .contains(&format!("discovery service on https://127.0.0.1:{port}")));
    let out = Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&cert)
        .arg(format!("https://127.0.0.1:{port}/new?size=1"))
        .output()
        .expect("run curl");
    let url = String::from_utf8_lossy(&out.stdout).trim_end().to_owned();
    assert!(
        url.starts_with(&format!("https://127.0.0.1:{port}/")),
        "{url:?}"
    );
    // Plain HTTP to the TLS port gets nowhere.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{port}/health"))
        .output()
        .expect("run curl");
    assert!(!out.status.success());
    // Stock etcd trusts the certificate through SSL_CERT_FILE (Go's system roots) and
    // bootstraps a one-member cluster over https.
    let mut member = Etcd::start_with_env(dir.path(), "t0", &url, &[], &[("SSL_CERT_FILE", &cert)]);
    let members = std::slice::from_mut(&mut member);
    wait_healthy(members, "one member over https");
}

#[test]
fn token_limit_and_public_url() {
    let dir = TempDir::new();
    let args = config(
        &dir,
        "discovery.max_tokens = 2\ndiscovery.public_url = \"https://discovery.example.net/base/\"\n",
    );
    let svc = Service::start(&dir.path().join("state"), &args);
    let p = svc.port;
    let mut urls = Vec::new();
    for _ in 0..2 {
        let r = http(p, "GET", "/new", &[], b"");
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.body.starts_with("https://discovery.example.net/base/"),
            "{r:?}"
        );
        urls.push(r.body.trim_end().to_string());
    }
    let r = http(p, "GET", "/new", &[], b"");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.body.contains("too many discovery tokens (limit 2)"),
        "{r:?}"
    );
    // The URL's path is the public one; locally the token is the last element.
    let token = urls[0].rsplit('/').next().unwrap();
    assert_eq!(
        http(p, "GET", &format!("/{token}/_config/size"), &[], b"").json()["node"]["value"],
        "3"
    );
    assert_eq!(
        http(p, "DELETE", &format!("/{token}"), &[], b"").status,
        200
    );
    assert_eq!(http(p, "GET", "/new?size=1", &[], b"").status, 200);
    assert_eq!(svc.metric("musterd_discovery_tokens"), 2);
    assert_eq!(svc.metric("musterd_discovery_tokens_deleted_total"), 1);
}

/// Subtracts `offset` from every `"modifiedIndex"`, `"createdIndex"` and non-zero
/// `"index"` number in a JSON text, leaving every other byte as it is.
fn shift_indexes(body: &str, offset: u64) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = ["\"modifiedIndex\":", "\"createdIndex\":", "\"index\":"]
        .iter()
        .filter_map(|k| rest.find(k).map(|i| i + k.len()))
        .min()
    {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().unwrap_or(0);
        out.push_str(&(if n == 0 { 0 } else { n - offset }).to_string());
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The protocol document's curl session against a real etcd 3.4 v2 store (the discovery
/// service the document describes) and against musterd: every status, `X-Etcd-Index` and
/// body is the same, byte for byte, once the index numbers are counted from the same
/// start (etcd's own keys take its first indexes).
#[test]
fn curl_transcript_matches_a_real_etcd_v2_store() {
    if !have(&["etcd", "curl"]) {
        return;
    }
    let dir = TempDir::new();
    let svc = Service::start(&dir.path().join("state"), &[]);
    let (client, peer) = (free_port(), free_port());
    let log = std::fs::File::create(dir.path().join("v2.log")).unwrap();
    let mut etcd = Etcd {
        child: Command::new("etcd")
            .args(["--name", "v2", "--enable-v2", "--data-dir"])
            .arg(dir.path().join("v2"))
            .args([
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=v2=http://127.0.0.1:{peer}"),
            ])
            .args(FAST_ETCD)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn etcd"),
        name: "v2".into(),
        client,
        log: dir.path().join("v2.log"),
    };
    let up = wait_for(BOOTSTRAP, || {
        TcpStream::connect(("127.0.0.1", client)).ok()?;
        (http(client, "GET", "/v2/keys/", &[], b"").status == 200).then_some(())
    });
    assert!(up.is_some(), "{}", etcd.log_text());

    let uuid = "6c007a14-875d-4d5a-a6d6-c2e6b14ac7a1";
    let steps: Vec<(&str, String, &str)> = vec![
        ("PUT", "/_config/size".into(), "value=3"),
        (
            "PUT",
            "/8e9e05c52164694d?prevExist=false".into(),
            "value=infra0=http://10.0.1.10:2380",
        ),
        (
            "PUT",
            "/8e9e05c52164694d?prevExist=false".into(),
            "value=infra0=http://10.0.1.10:2380",
        ),
        (
            "GET",
            "/_config/size?quorum=false&recursive=false&sorted=false".into(),
            "",
        ),
        (
            "GET",
            "?quorum=false&recursive=false&sorted=false".into(),
            "",
        ),
        (
            "PUT",
            "/2b1c3d4e5f6a7b8c?prevExist=false".into(),
            "value=infra1=http://10.0.1.11:2380",
        ),
        ("GET", "?recursive=true&sorted=true".into(), ""),
        ("GET", "/_config".into(), ""),
        (
            "GET",
            "/8e9e05c52164694d?wait=true&waitIndex=@2&recursive=false".into(),
            "",
        ),
        ("GET", "?wait=true&waitIndex=@2&recursive=true".into(), ""),
        ("GET", "/ffff".into(), ""),
        ("GET", "?wait=true&waitIndex=soon".into(), ""),
        ("GET", "?recursive=maybe".into(), ""),
        ("DELETE", "?recursive=true".into(), ""),
        ("GET", "/_config/size".into(), ""),
    ];
    // One session per server: (status, X-Etcd-Index, body) for each step.
    let session = |base: String| {
        let mut first: Option<u64> = None;
        steps
            .iter()
            .map(|(method, rest, data)| {
                // `@2`: the index of the second step's registration on this server.
                let rest = match first {
                    Some(f) => rest.replace("@2", &(f + 1).to_string()),
                    None => rest.clone(),
                };
                let mut cmd = Command::new("curl");
                cmd.args(["-s", "-i", "--max-time", "10", "-X", method]);
                if !data.is_empty() {
                    cmd.args(["-d", data]);
                }
                let out = cmd
                    .arg(format!("{base}/v2/keys/_etcd/registry/{uuid}{rest}"))
                    .output()
                    .expect("run curl");
                let r = parse_curl(&out.stdout);
                let index = r.etcd_index();
                first.get_or_insert(index);
                (r.status, index, r.body)
            })
            .collect::<Vec<_>>()
    };
    let theirs = session(format!("http://127.0.0.1:{client}"));
    let ours = session(svc.base());
    let offset = theirs[0].1 - ours[0].1;
    for (i, (t, o)) in theirs.iter().zip(&ours).enumerate() {
        let t_index = if t.1 == 0 { 0 } else { t.1 - offset };
        let expected = (t.0, t_index, shift_indexes(&t.2, offset));
        assert_eq!(
            (o.0, o.1, o.2.clone()),
            expected,
            "step {i} ({} {}): musterd differs from etcd",
            steps[i].0,
            steps[i].1
        );
    }
    etcd.stop();
}

/// `musterd serve` with only the discovery flags serves only the discovery service: no DNS
/// port is bound (not even the default 127.0.0.1:5353, which the test holds itself when
/// it can), and no example zone is served.
#[test]
fn discovery_flags_alone_serve_no_dns() {
    let dir = TempDir::new();
    // Hold the default DNS port, as another DNS server would: musterd must not need it.
    let _udp = std::net::UdpSocket::bind("127.0.0.1:5353");
    let _tcp = std::net::TcpListener::bind("127.0.0.1:5353");
    let port = free_port();
    let mut child = Command::new(muster_tests::bin_path("musterd"))
        .args(["serve", "--discovery-listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--discovery-state")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn musterd");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = false;
    while Instant::now() < deadline && !up {
        up = TcpStream::connect(("127.0.0.1", port)).is_ok();
        if !up {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let health = up.then(|| http(port, "GET", "/health", &[], b""));
    let r = http(port, "GET", "/new?size=1", &[], b"");
    let _ = child.kill();
    let out = child.wait_with_output().expect("musterd output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(up, "the discovery service never answered; log:\n{log}");
    assert_eq!(health.map(|h| h.status), Some(200), "{log}");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.ends_with('\n') && !r.body.trim_end().contains('\n'),
        "{r:?}"
    );
    assert!(
        !log.contains("(udp+tcp)") && !log.contains("example zone"),
        "DNS was started: {log}"
    );
    assert!(log.contains("serving no DNS"), "{log}");
}
