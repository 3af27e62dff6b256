//! Kea's DHCP-DDNS daemon (D2, Debian `kea-dhcp-ddns-server`) updating musterd on
//! loopback: the real DHCP-side sender of RFC 2136 updates (RFC 4703 conflict
//! resolution with DHCID records, TSIG-signed, over UDP). NameChangeRequests are fed to
//! D2 directly as JSON over UDP, as kea-dhcp4 sends them.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use muster_tests::{free_port, require_program, run, Musterd, TempDir};

const ZONE: &str = "$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster 1 3600 600 86400 60
@ 300 IN NS ns1
ns1 IN A 127.0.0.1
";

/// D2, killed on drop.
struct D2 {
    child: Child,
    log: std::path::PathBuf,
}

impl Drop for D2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl D2 {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until D2's log holds `code` `n` times.
    fn wait_for(&self, code: &str, n: usize) {
        let start = Instant::now();
        while self.log().matches(code).count() < n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "D2 never logged {code} x{n}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start_d2(dir: &TempDir, ncr_port: u16, dns: SocketAddr, secret: &str) -> D2 {
    let config = dir.write(
        "d2.json",
        &format!(
            r#"{{ "DhcpDdns": {{
  "ip-address": "127.0.0.1", "port": {ncr_port}, "dns-server-timeout": 1000,
  "ncr-protocol": "UDP", "ncr-format": "JSON",
  "tsig-keys": [ {{ "name": "ddns-key", "algorithm": "HMAC-SHA256", "secret": "{secret}" }} ],
  "forward-ddns": {{ "ddns-domains": [ {{ "name": "d.test.", "key-name": "ddns-key",
      "dns-servers": [ {{ "ip-address": "{}", "port": {} }} ] }} ] }},
  "reverse-ddns": {{ "ddns-domains": [] }},
  "loggers": [ {{ "name": "kea-dhcp-ddns", "output_options": [ {{ "output": "stdout" }} ],
      "severity": "DEBUG", "debuglevel": 40 }} ]
}} }}"#,
            dns.ip(),
            dns.port()
        ),
    );
    let log = dir.path().join("d2.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new("kea-dhcp-ddns")
        .arg("-c")
        .arg(&config)
        // Its PID and lock files go to the test's directory, not /run/kea.
        .env("KEA_PIDFILE_DIR", dir.path())
        .env("KEA_LOCKFILE_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn kea-dhcp-ddns");
    let d2 = D2 { child, log };
    d2.wait_for("DHCP_DDNS_STARTED", 1);
    d2
}

/// Sends a NameChangeRequest to D2 as kea-dhcp4 does: JSON text after a two-octet length.
fn ncr(port: u16, add: bool, fqdn: &str, ip: &str, dhcid: &str) {
    let json = format!(
        r#"{{"change-type": {}, "forward-change": true, "reverse-change": false, "fqdn": "{fqdn}", "ip-address": "{ip}", "dhcid": "{dhcid}", "lease-expires-on": "20301231235959", "lease-length": 3600, "use-conflict-resolution": true}}"#,
        if add { 0 } else { 1 }
    );
    let mut msg = (json.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(json.as_bytes());
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .send_to(&msg, ("127.0.0.1", port))
        .unwrap();
}

fn dig(addr: SocketAddr, name: &str, t: &str) -> Vec<String> {
    let (ok, out, err) = run(Command::new("dig").args([
        &format!("@{}", addr.ip()),
        "-p",
        &addr.port().to_string(),
        name,
        t,
        "+short",
    ]));
    assert!(ok, "{err}");
    out.lines().map(str::to_string).collect()
}

fn secret(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find(|l| l.contains("secret"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string()
}

/// Add creates A + DHCID; a second client for the same name takes D2's conflict path
/// (YXDOMAIN, then NXRRSET on the DHCID prerequisite) and changes nothing; remove deletes
/// both records.
#[test]
fn kea_d2_adds_conflicts_and_removes() {
    if !require_program("kea-dhcp-ddns")
        || !require_program("dig")
        || !require_program("tsig-keygen")
    {
        return;
    }
    let dir = TempDir::new();
    let zone = dir.write("d.test.zone", ZONE);
    let (ok, key_text, err) =
        run(Command::new("tsig-keygen").args(["-a", "hmac-sha256", "ddns-key"]));
    assert!(ok, "{err}");
    let key = dir.write("ddns-key.key", &key_text);
    let m = Musterd::start_with_args(&[
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--zone".into(),
        format!("d.test.={}", zone.display()),
        "--key-file".into(),
        key.display().to_string(),
        "--allow-update".into(),
        "d.test=ddns-key".into(),
        "--state-dir".into(),
        dir.path().join("state").display().to_string(),
    ]);
    let port = free_port();
    let d2 = start_d2(&dir, port, m.addr, &secret(&key));
    let first = "000102030405060708090A0B0C0D0E0F10111213141516171819";
    let second = "FF0102030405060708090A0B0C0D0E0F10111213141516171819";

    ncr(port, true, "host1.d.test.", "192.0.2.10", first);
    d2.wait_for("DHCP_DDNS_ADD_SUCCEEDED", 1);
    assert_eq!(dig(m.addr, "host1.d.test.", "A"), ["192.0.2.10"]);
    assert_eq!(
        dig(m.addr, "host1.d.test.", "DHCID"),
        ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBk="]
    );

    ncr(port, true, "host1.d.test.", "192.0.2.11", second);
    d2.wait_for("DHCP_DDNS_FORWARD_REPLACE_REJECTED", 1);
    d2.wait_for("DHCP_DDNS_ADD_FAILED", 1);
    assert_eq!(
        dig(m.addr, "host1.d.test.", "A"),
        ["192.0.2.10"],
        "the first client keeps its name"
    );
    let log = m.log_text();
    assert!(
        log.contains("rcode=YXDOMAIN") && log.contains("rcode=NXRRSET"),
        "YXDOMAIN then NXRRSET:\n{log}"
    );

    ncr(port, false, "host1.d.test.", "192.0.2.10", first);
    d2.wait_for("DHCP_DDNS_REMOVE_SUCCEEDED", 1);
    assert!(dig(m.addr, "host1.d.test.", "A").is_empty());
    assert!(dig(m.addr, "host1.d.test.", "DHCID").is_empty());
    assert_eq!(dig(m.addr, "ns1.d.test.", "A"), ["127.0.0.1"]);
}
