//! Host-scoped update grants (`match = "host"`, issue 20): each etcd host's key publishes
//! its own addresses and SRV records with `muster-agent register`, and is REFUSED —
//! nothing changed — when it tries to add or delete another host's SRV or address
//! records, with nsupdate or with the agent. Also the agent's messages around it: the
//! refusal names the grant to configure, `plan` sends nothing, an update the server nets
//! away says so, and a key file others may read is warned about; and `musterd check
//! --config` flags a host key that was given the whole zone.

mod agent_support;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use agent_support::{agent, output};
use muster_tests::{bin_path, require_program, Musterd, TempDir};

const SECRET0: &str = "2r8GNuUPHEPHhaAUxR3AsR6Cxq7XeVp/Ah/bwhV1kgA=";
const SECRET1: &str = "hUv2qCxCexn1Wt5Dx7rxWsZOc9XrHzgAqEJ2UuQoWdo=";

/// A key file as `tsig-keygen NAME` prints it, mode 0600.
fn key_file(dir: &TempDir, file: &str, name: &str, secret: &str) -> PathBuf {
    let p = dir.write(
        file,
        &format!("key \"{name}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The config: infra0's key named relative to the zone, infra1's fully qualified.
fn config(dir: &TempDir, extra_zone_lines: &str) -> PathBuf {
    dir.write(
        "musterd.toml",
        &format!(
            "state_dir = \"{}\"\nkey_files = [\"infra0.key\", \"infra1.key\"]\n\
             [[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\n{extra_zone_lines}\
             [[zone.update_policy]]\nkey = \"infra0\"\nmatch = \"host\"\nsrv = [\"_etcd-server._tcp\", \"_etcd-client._tcp\"]\n\
             [[zone.update_policy]]\nkey = \"infra1.example.test\"\nmatch = \"host\"\nsrv = [\"_etcd-server._tcp\", \"_etcd-client._tcp\"]\n",
            dir.path().join("state").display()
        ),
    )
}

struct Server {
    musterd: Musterd,
    dir: TempDir,
}

fn start() -> Server {
    start_with("")
}

/// [`start`] with more lines for the `[[zone]]` table.
fn start_with(zone_lines: &str) -> Server {
    let dir = TempDir::new();
    key_file(&dir, "infra0.key", "infra0", SECRET0);
    key_file(&dir, "infra1.key", "infra1.example.test", SECRET1);
    dir.write(
        "example.test.zone",
        "$ORIGIN example.test.\n$TTL 5\n@ IN SOA ns1 hostmaster 1 3600 600 86400 5\n  IN NS ns1\nns1 IN A 127.0.0.1\n",
    );
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let cfg = config(&dir, zone_lines);
    let musterd = Musterd::start_with_args(&[
        "serve".to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]);
    Server { musterd, dir }
}

impl Server {
    fn key(&self, host: &str) -> PathBuf {
        self.dir.path().join(format!("{host}.key"))
    }

    /// `muster-agent register` of `host` (its address 127.0.0.1N) with `key`.
    fn register(&self, key: &str, host: &str, extra: &[&str]) -> (bool, String, String) {
        let n = host.trim_start_matches("infra");
        output(
            agent()
                .arg("register")
                .arg("--server")
                .arg(self.musterd.addr.to_string())
                .arg("--key")
                .arg(self.key(key))
                .args([
                    "--zone",
                    "example.test",
                    "--hostname",
                    host,
                    "--timeout",
                    "5s",
                ])
                .args(["--address", &format!("127.0.0.1{n}")])
                .args(["--srv-port", "2380", "--client-srv-port", "2379"])
                .args(["--cluster", "example.test"])
                .args(extra),
        )
    }

    fn dig(&self, name: &str, t: &str) -> Vec<String> {
        dig(self.musterd.addr, name, t)
    }

    fn serial(&self) -> u32 {
        self.dig("example.test.", "SOA")[0]
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Everything the test looks at.
    fn state(&self) -> Vec<Vec<String>> {
        [
            ("_etcd-server._tcp.example.test.", "SRV"),
            ("_etcd-client._tcp.example.test.", "SRV"),
            ("infra0.example.test.", "A"),
            ("infra1.example.test.", "A"),
            ("example.test.", "SOA"),
        ]
        .iter()
        .map(|(n, t)| self.dig(n, t))
        .collect()
    }

    fn nsupdate(&self, key: &str, script: &str) -> (bool, String) {
        let mut child = Command::new("nsupdate")
            .arg("-k")
            .arg(self.key(key))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsupdate");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            let a = self.musterd.addr;
            writeln!(
                stdin,
                "server {} {}\nzone example.test.\n{script}\nsend",
                a.ip(),
                a.port()
            )
            .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }
}

fn dig(addr: SocketAddr, name: &str, t: &str) -> Vec<String> {
    let (ok, out, err) = output(Command::new("dig").args([
        "+short",
        "+norec",
        "+time=2",
        "+tries=1",
        &format!("@{}", addr.ip()),
        "-p",
        &addr.port().to_string(),
        name,
        t,
    ]));
    assert!(ok, "dig {name} {t}: {err}");
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn a_host_key_registers_its_host_and_touches_no_other() {
    if !require_program("dig") || !require_program("nsupdate") {
        return;
    }
    let s = start();
    for host in ["infra0", "infra1"] {
        let (ok, _, err) = s.register(host, host, &[]);
        assert!(ok, "{host}: {err}");
        assert!(
            err.contains(&format!("registered {host}.example.test.")),
            "{err}"
        );
        assert!(!err.contains("readable by others"), "{err}");
    }
    assert_eq!(
        s.dig("_etcd-server._tcp.example.test.", "SRV"),
        [
            "0 0 2380 infra0.example.test.",
            "0 0 2380 infra1.example.test."
        ]
    );
    assert_eq!(s.dig("infra1.example.test.", "A"), ["127.0.0.11"]);
    let before = s.state();

    // infra0's key against infra1's records: every attempt REFUSED, nothing changed.
    for script in [
        "update delete _etcd-server._tcp.example.test. SRV 0 0 2380 infra1.example.test.",
        "update add _etcd-server._tcp.example.test. 60 SRV 0 0 2381 infra1.example.test.",
        "update delete _etcd-server._tcp.example.test. SRV",
        "update delete _etcd-server._tcp.example.test.",
        "update delete _etcd-client._tcp.example.test. SRV 0 0 2379 infra1.example.test.",
        "update delete infra1.example.test. A",
        "update add infra1.example.test. 60 A 127.0.0.99",
        "update add infra1.example.test. 60 AAAA ::99",
        "update delete infra1.example.test.",
        "update add infra0.example.test. 60 TXT \"not an address\"",
        // Its own record and another host's in one update: refused whole.
        "update add infra0.example.test. 60 A 127.0.0.98\nupdate delete infra1.example.test. A",
    ] {
        let (ok, out) = s.nsupdate("infra0", script);
        assert!(!ok && out.contains("REFUSED"), "{script}: {out}");
        assert_eq!(s.state(), before, "{script} changed something");
    }
    // The agent with infra0's key for infra1's name (a new address: a real change, not a
    // prerequisite-only confirmation): refused, and told which grant.
    let (ok, _, err) = s.register("infra0", "infra1", &["--address", "127.0.0.77"]);
    assert!(!ok);
    assert!(
        err.contains("REFUSED: key \"infra0\" may not change infra1.example.test.")
            && err.contains("match = \"host\"")
            && err.contains("srv = [\"_etcd-server._tcp\", \"_etcd-client._tcp\"]")
            && err.contains("names infra0.example.test., not infra1.example.test.")
            && !err.contains("--allow-update"),
        "{err}"
    );
    assert_eq!(s.state(), before);
    // Its own address with nsupdate is fine.
    let (ok, out) = s.nsupdate("infra0", "update add infra0.example.test. 60 A 127.0.0.20");
    assert!(ok, "{out}");
    assert_eq!(
        s.dig("infra0.example.test.", "A"),
        ["127.0.0.10", "127.0.0.20"]
    );

    // Deregistering infra0 leaves infra1 as it was.
    let (ok, _, err) = s.register("infra0", "infra0", &["--deregister"]);
    assert!(ok, "{err}");
    assert_eq!(
        s.dig("_etcd-server._tcp.example.test.", "SRV"),
        ["0 0 2380 infra1.example.test."]
    );
    assert!(s.dig("infra0.example.test.", "A").is_empty());
    assert_eq!(s.dig("infra1.example.test.", "A"), ["127.0.0.11"]);
}

#[test]
fn plan_sends_nothing_and_a_netted_update_says_so() {
    if !require_program("dig") {
        return;
    }
    // A completeness gate withholds the SRV set until three members have addresses, so a
    // register cannot read this host's SRV records and sends its whole update.
    let s = start_with("[zone.sizes]\n\"_etcd-server._tcp\" = 3\n");
    let serial = s.serial();
    // plan --register-*: the update it would send, printed; nothing written.
    let (_, _, err) = output(
        agent()
            .args(["plan", "--domain", "example.test", "--nameserver"])
            .arg(s.musterd.addr.to_string())
            .args(["--timeout", "1s", "--register-server"])
            .arg(s.musterd.addr.to_string())
            .arg("--register-key")
            .arg(s.key("infra0"))
            .args([
                "--register-zone",
                "example.test",
                "--register-hostname",
                "infra0",
            ])
            .args([
                "--register-address",
                "127.0.0.10",
                "--register-srv-port",
                "2380",
            ]),
    );
    assert!(
        err.contains("would register infra0.example.test. (nothing is sent)")
            && err.contains("update add infra0.example.test. 60 A 127.0.0.10")
            && err.contains(
                "update add _etcd-server._tcp.example.test. 60 SRV 0 0 2380 infra0.example.test."
            ),
        "{err}"
    );
    assert_eq!(s.serial(), serial, "plan wrote to DNS");
    assert!(s.dig("infra0.example.test.", "A").is_empty());

    let (ok, _, err) = s.register("infra0", "infra0", &[]);
    assert!(
        ok && err.contains("registered infra0.example.test."),
        "{err}"
    );
    // A key file others may read is warned about (and still used).
    let key = s.key("infra0");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, _, err) = s.register("infra0", "infra0", &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "key file {} is readable by others (mode 0644): chmod 600",
            key.display()
        )),
        "{err}"
    );
    // The SRV set is withheld, so the update was sent whole; the server netted it away and
    // the agent says nothing changed (the serial did not move).
    assert!(
        err.contains("withholds _etcd-server._tcp.example.test."),
        "{err}"
    );
    assert!(
        err.contains("infra0.example.test. already registered") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(
        s.serial(),
        serial + 1,
        "only the first register changed the zone"
    );
}

/// `musterd check --config`: a host key that may also change the whole zone, and a key
/// file others may read, are warnings; the policies themselves are fine.
#[test]
fn check_flags_a_host_key_with_the_whole_zone() {
    let mut s = start();
    let run = |cfg: &Path| {
        output(
            Command::new(bin_path("musterd"))
                .args(["check", "--config"])
                .arg(cfg),
        )
    };
    let (ok, out, err) = run(&config(&s.dir, ""));
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 errors, 0 warnings"), "{out}");
    let cfg = config(&s.dir, "allow_update = [\"infra0\"]\n");
    std::fs::set_permissions(s.key("infra1"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let (ok, out, err) = run(&cfg);
    assert!(ok, "warnings only: {out}{err}");
    assert!(
        out.contains("warning[host-key-whole-zone]: example.test.: key infra0 has a per-host grant but may change anything in zone example.test.")
            && out.contains("match = \"host\""),
        "{out}"
    );
    assert!(
        out.contains(
            "infra1.key: warning[key-file-mode]: key file is readable by others (mode 0640)"
        ),
        "{out}"
    );
    // musterd serve logs the same about the key file (on the same state: one at a time).
    s.musterd.stop();
    let m = Musterd::start_with_args(&[
        "serve".to_string(),
        "--config".into(),
        config(&s.dir, "").display().to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ]);
    m.wait_log(
        |l| l.contains("infra1.key: key file is readable by others (mode 0640)"),
        std::time::Duration::from_secs(10),
    );
    // A bad host grant is a config error naming what to write.
    let bad = s.dir.write(
        "bad.toml",
        "key_files = [\"infra0.key\"]\n[[zone]]\norigin = \"example.test\"\nfile = \"example.test.zone\"\n\
         [[zone.update_policy]]\nkey = \"infra0\"\nmatch = \"host\"\nsrv = [\"_http._tcp\"]\n",
    );
    let (ok, _, err) = run(&bad);
    assert!(!ok);
    assert!(err.contains("not an etcd SRV owner name"), "{err}");
}
