//! Issue 16: one history for every change of an updatable zone. The reproducers of the
//! data losses (an editor's buffer older than the write-back, two edits in quick
//! succession, a broken edit, an SOA changed by update), a file replaced wholesale, and
//! IXFR answered from the journal right after a change and after a restart, kill -9 while
//! updates stream in and the file is edited, `musterd ctl`, TSIG keys reread — against the
//! real musterd binary, with nsupdate and dig.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster_tests::{free_port, metric, require_program, run, Musterd, TempDir};

mod update_support;
use update_support::{count, Lcg};

const ZONE: &str = "; the d.test zone, kept by hand
$ORIGIN d.test.
$TTL 30
@ 300 IN SOA ns1 hostmaster ( 10 ; serial
      3600 600 86400 60 )
    IN NS ns1 ; our name server
ns1 IN A 127.0.0.1
www IN A 10.0.0.1
m0 IN A 10.1.0.1
";

fn have_tools() -> bool {
    require_program("nsupdate") && require_program("dig") && require_program("tsig-keygen")
}

struct Server {
    dir: TempDir,
    ctl: PathBuf,
    zone: PathBuf,
    key: PathBuf,
    args: Vec<String>,
    metrics: SocketAddr,
    musterd: Musterd,
}

impl Server {
    /// musterd with d.test. updatable, written back `writeback` after a change.
    fn start(writeback: &str) -> Server {
        let dir = TempDir::new();
        let zone = dir.write("d.test.zone", ZONE);
        let (ok, key_text, err) = run(Command::new("tsig-keygen").args(["-a", "hmac-sha256", "k"]));
        assert!(ok, "tsig-keygen: {err}");
        let key = dir.write("k.key", &key_text);
        let config = dir.write(
            "musterd.toml",
            &format!(
                "key_files = [\"{}\"]\nstate_dir = \"{}\"\n\
                 update.writeback_interval = \"{writeback}\"\n\
                 transfer.allow.\"d.test.\" = [\"127.0.0.0/8\"]\n\
                 [[zone]]\norigin = \"d.test\"\nfile = \"{}\"\nallow_update = [\"k\"]\n",
                key.display(),
                dir.path().join("state").display(),
                zone.display()
            ),
        );
        let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let ctl = dir.path().join("control");
        let args: Vec<String> = [
            "serve",
            "--config",
            &config.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--metrics-listen",
            &metrics.to_string(),
            "--watch-interval",
            "1h",
            "--control-socket",
            &ctl.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let musterd = Musterd::start_with_args(&args);
        Server {
            dir,
            ctl,
            zone,
            key,
            args,
            metrics,
            musterd,
        }
    }

    /// `musterd ctl ARGS` against this server: (exit code, stdout, stderr).
    fn ctl(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = Command::new(muster_tests::bin_path("musterd"))
            .arg("ctl")
            .arg("--socket")
            .arg(&self.ctl)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run musterd ctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// nsupdate's output and whether it succeeded, signed with the server's key.
    fn try_update(&self, script: &str) -> (bool, String) {
        self.update_with(&self.key, script)
    }

    /// nsupdate signed with the key in `key_file`.
    fn update_with(&self, key_file: &Path, script: &str) -> (bool, String) {
        let addr = self.musterd.addr;
        let mut child = Command::new("nsupdate")
            .arg("-k")
            .arg(key_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nsupdate");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            writeln!(
                stdin,
                "server {} {}\n{script}\nsend",
                addr.ip(),
                addr.port()
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

    fn update(&self, script: &str) {
        let (ok, out) = self.try_update(script);
        assert!(ok, "nsupdate {script}: {out}");
    }

    fn dig(&self, args: &[&str]) -> Vec<String> {
        let addr = self.musterd.addr;
        let (ok, out, err) = run(Command::new("dig")
            .args([&format!("@{}", addr.ip()), "-p", &addr.port().to_string()])
            .args(args)
            .args(["+norec", "+time=2", "+tries=2"]));
        assert!(ok, "dig {args:?}: {err}");
        out.lines().map(str::to_string).collect()
    }

    fn answer(&self, name: &str, t: &str) -> Vec<String> {
        let mut v = self.dig(&[name, t, "+short"]);
        v.sort();
        v
    }

    fn serial(&self) -> u32 {
        let soa = self.answer("d.test.", "SOA");
        soa[0].split_whitespace().nth(2).unwrap().parse().unwrap()
    }

    fn file(&self) -> String {
        std::fs::read_to_string(&self.zone).unwrap()
    }

    fn metric(&self, name: &str) -> u64 {
        metric(self.metrics, name)
    }

    /// Waits until the zone file satisfies `pred`.
    fn wait_file(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while !pred(&self.file()) {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{what}; file:\n{}\nlog:\n{}",
                self.file(),
                self.musterd.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn restart(&mut self) {
        let _ = self.musterd.stop();
        self.musterd = Musterd::start_with_args(&self.args);
    }

    fn kill9(&mut self) {
        let _ = self.musterd.child.kill();
        let _ = self.musterd.child.wait();
        self.musterd = Musterd::start_with_args(&self.args);
    }
}

/// An editor's buffer opened before an update, saved after the update was written back,
/// does not undo the update; the edit applies, comments stay, nothing is sent on as a
/// removal.
#[test]
fn an_editors_buffer_older_than_the_write_back_keeps_the_update() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start("100ms");
    // musterd stamped the file at start (it had no stamp): that is what the editor opens.
    s.wait_file("the file is stamped", |t| {
        t.starts_with("; musterd zone version")
    });
    let buffer = s.file();
    s.update("update add u1.d.test. 60 A 10.9.0.1");
    s.wait_file("u1 written back", |t| t.contains("u1.d.test."));
    let served = s.serial();
    let saved = buffer.replace("( 10 ;", "( 50 ;") + "x1 IN A 10.9.0.2\n";
    std::fs::write(&s.zone, saved).unwrap();
    s.musterd.reload();
    assert_eq!(
        s.answer("u1.d.test.", "A"),
        ["10.9.0.1"],
        "{}",
        s.musterd.log_text()
    );
    assert_eq!(s.answer("x1.d.test.", "A"), ["10.9.0.2"]);
    assert_eq!(s.serial(), 51.max(served + 1));
    let text = s.file();
    assert!(text.contains("; the d.test zone, kept by hand\n"), "{text}");
    assert!(text.contains("    IN NS ns1 ; our name server\n"), "{text}");
    assert!(
        text.contains("x1 IN A 10.9.0.2\n") && text.contains("u1.d.test. 60 IN A 10.9.0.1"),
        "{text}"
    );
    // IXFR from the version before the edit: the edit adds x1 and removes nothing.
    let ixfr = s.dig(&["d.test.", &format!("IXFR={served}"), "+tcp"]);
    let records: Vec<&String> = ixfr
        .iter()
        .filter(|l| !l.starts_with(';') && !l.is_empty())
        .collect();
    assert_eq!(records.len(), 5, "{ixfr:#?}");
    s.restart();
    assert_eq!(s.answer("u1.d.test.", "A"), ["10.9.0.1"]);
    assert_eq!(s.answer("x1.d.test.", "A"), ["10.9.0.2"]);
}

/// Two edits, the second saved right after the first is served: both stay (the
/// write-back after the first merge never overwrites a file that changed since).
#[test]
fn two_edits_in_quick_succession_both_apply() {
    if !have_tools() {
        return;
    }
    let s = Server::start("60s");
    for round in 0..5 {
        let first = format!("e{round}a");
        let second = format!("e{round}b");
        std::fs::write(&s.zone, s.file() + &format!("{first} IN TXT \"one\"\n")).unwrap();
        s.musterd.reload();
        assert_eq!(s.answer(&format!("{first}.d.test."), "TXT"), ["\"one\""]);
        std::fs::write(&s.zone, s.file() + &format!("{second} IN TXT \"two\"\n")).unwrap();
        s.musterd.reload();
        assert_eq!(
            s.answer(&format!("{first}.d.test."), "TXT"),
            ["\"one\""],
            "round {round}"
        );
        assert_eq!(
            s.answer(&format!("{second}.d.test."), "TXT"),
            ["\"two\""],
            "round {round}:\n{}",
            s.musterd.log_text()
        );
        let text = s.file();
        assert!(
            text.contains(&first) && text.contains(&second),
            "round {round}: {text}"
        );
    }
}

/// A broken edit keeps the old zone serving and is never written over: the comment and
/// the good line survive write-backs of later updates, counted; once fixed it applies.
#[test]
fn a_broken_edit_is_never_written_over() {
    if !have_tools() {
        return;
    }
    let s = Server::start("100ms");
    s.wait_file("stamped", |t| t.starts_with("; musterd zone version"));
    let broken = s.file() + "; added by the operator\nbroken IN A 300.1.1.1\ngood IN A 10.9.1.1\n";
    std::fs::write(&s.zone, &broken).unwrap();
    s.musterd.reload();
    assert!(s.answer("good.d.test.", "A").is_empty());
    s.update("update add u2.d.test. 60 A 10.9.1.2");
    assert_eq!(s.answer("u2.d.test.", "A"), ["10.9.1.2"]);
    let start = Instant::now();
    while s.metric("musterd_writeback_blocked_total") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            s.musterd.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.file(), broken, "a broken file is never written over");
    let log = s.musterd.log_text();
    assert!(
        log.contains("d.test.zone") && log.contains("not written back"),
        "{log}"
    );
    // Fixed: the edit and the update are both served, the operator's comment stays.
    std::fs::write(&s.zone, broken.replace("300.1.1.1", "10.9.1.3")).unwrap();
    s.musterd.reload();
    assert_eq!(s.answer("good.d.test.", "A"), ["10.9.1.1"]);
    assert_eq!(s.answer("broken.d.test.", "A"), ["10.9.1.3"]);
    assert_eq!(s.answer("u2.d.test.", "A"), ["10.9.1.2"]);
    s.wait_file("u2 written back", |t| t.contains("u2.d.test."));
    assert!(
        s.file().contains("; added by the operator\n"),
        "{}",
        s.file()
    );
}

/// A file without a stamp (replaced wholesale) is taken as written, with a warning that
/// names what it removed.
#[test]
fn a_file_replaced_wholesale_is_taken_as_written() {
    if !have_tools() {
        return;
    }
    let s = Server::start("60s");
    s.update("update add u3.d.test. 60 A 10.9.2.1");
    std::fs::write(&s.zone, ZONE.replace("( 10 ;", "( 90 ;")).unwrap();
    s.musterd.reload();
    assert!(s.answer("u3.d.test.", "A").is_empty());
    assert_eq!(s.serial(), 91);
    let log = s.musterd.log_text();
    assert!(
        log.contains("taken as written") && log.contains("u3"),
        "{log}"
    );
    assert_eq!(
        s.metric("musterd_hand_edits_total{outcome=\"taken_as_written\"}"),
        1
    );
}

/// An SOA changed by update survives a SIGHUP with the file untouched, a restart and a
/// kill -9.
#[test]
fn an_soa_changed_by_update_survives_reload_and_restart() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start("60s");
    s.update("update add d.test. 600 SOA ns1.d.test. admin.d.test. 2000 7200 900 604800 30");
    let want = "ns1.d.test. admin.d.test. 2000 7200 900 604800 30";
    assert_eq!(s.answer("d.test.", "SOA"), [want]);
    s.musterd.reload();
    assert_eq!(
        s.answer("d.test.", "SOA"),
        [want],
        "{}",
        s.musterd.log_text()
    );
    s.restart();
    assert_eq!(
        s.answer("d.test.", "SOA"),
        [want],
        "{}",
        s.musterd.log_text()
    );
    s.kill9();
    assert_eq!(
        s.answer("d.test.", "SOA"),
        [want],
        "{}",
        s.musterd.log_text()
    );
    let ttl = s.dig(&["d.test.", "SOA", "+noall", "+answer"]);
    assert!(ttl[0].split_whitespace().nth(1) == Some("600"), "{ttl:?}");
}

/// IXFR asked the moment an update is acknowledged is incremental, every time, and
/// still is after a restart (the history is the journal).
#[test]
fn ixfr_right_after_an_update_is_incremental_also_after_a_restart() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start("60s");
    for i in 0..20 {
        let before = s.serial();
        s.update(&format!("update add n{i}.d.test. 60 A 10.9.3.{i}"));
        let ixfr = s.dig(&[
            "d.test.",
            &format!("IXFR={before}"),
            "+tcp",
            "+noall",
            "+answer",
        ]);
        // SOA new, SOA old, SOA new, the record, SOA new.
        assert_eq!(ixfr.len(), 5, "update {i}: {ixfr:#?}");
    }
    let before = s.serial() - 3;
    s.restart();
    let ixfr = s.dig(&[
        "d.test.",
        &format!("IXFR={before}"),
        "+tcp",
        "+noall",
        "+answer",
    ]);
    assert_eq!(ixfr.len(), 2 + 3 * 3, "{ixfr:#?}");
    assert_eq!(
        s.metric("musterd_xfr_out_total{kind=\"ixfr_axfr_style\"}"),
        0
    );
}

/// `musterd ctl`: status and zone-status say what is served, flush writes back now,
/// freeze refuses updates (REFUSED, counted) until thaw merges the edited file, reload
/// rereads one zone, and commands that do not apply say why.
#[test]
fn ctl_status_flush_freeze_thaw_and_reload() {
    if !have_tools() {
        return;
    }
    let s = Server::start("60s");
    let (code, out, err) = s.ctl(&["status"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("d.test. serial 10"), "{out}");
    s.update("update add c1.d.test. 60 A 10.9.4.1");
    let (code, out, _) = s.ctl(&["zone-status", "d.test"], &[]);
    assert_eq!(code, 0);
    for want in [
        "kind: primary, dynamic updates",
        "serial: 11",
        "pending write-back: 1 changes",
        "frozen: no",
        "history: serials 10 to 11 (1 changesets)",
    ] {
        assert!(out.contains(want), "{want} in\n{out}");
    }
    // flush: written back now, not after the 60 s interval.
    let (code, out, err) = s.ctl(&["flush", "d.test."], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        s.file().contains("c1.d.test. 60 IN A 10.9.4.1"),
        "{}",
        s.file()
    );
    // freeze: updates are refused, the file is edited meanwhile, thaw merges it.
    let (code, _, err) = s.ctl(&["freeze", "d.test"], &[]);
    assert_eq!(code, 0, "{err}");
    let (ok, out) = s.try_update("update add c2.d.test. 60 A 10.9.4.2");
    assert!(!ok && out.contains("REFUSED"), "{out}");
    assert!(s.answer("c2.d.test.", "A").is_empty());
    assert_eq!(
        s.metric("musterd_updates_refused_total{reason=\"frozen\"}"),
        1
    );
    std::fs::write(&s.zone, s.file() + "c3 IN A 10.9.4.3\n").unwrap();
    let (code, out, err) = s.ctl(&["thaw", "d.test"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(s.answer("c3.d.test.", "A"), ["10.9.4.3"]);
    s.update("update add c2.d.test. 60 A 10.9.4.2");
    assert_eq!(s.answer("c2.d.test.", "A"), ["10.9.4.2"]);
    // reload ZONE rereads the file as SIGHUP does.
    std::fs::write(&s.zone, s.file() + "c4 IN A 10.9.4.4\n").unwrap();
    let (code, out, err) = s.ctl(&["reload", "d.test"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(s.answer("c4.d.test.", "A"), ["10.9.4.4"]);
    // What does not apply says so, with exit 1; a bad request exits 2.
    let (code, _, err) = s.ctl(&["notify", "d.test"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("no secondaries"), "{err}");
    let (code, _, err) = s.ctl(&["retransfer", "d.test"], &[]);
    assert_eq!(
        (code, err.contains("not a secondary zone")),
        (1, true),
        "{err}"
    );
    let (code, _, err) = s.ctl(&["flush", "nowhere.test"], &[]);
    assert_eq!((code, err.contains("not served here")), (1, true), "{err}");
    let (code, _, err) = s.ctl(&["frob", "d.test"], &[]);
    assert_eq!((code, err.contains("unknown command")), (2, true), "{err}");
    // The socket is for root and the musterd group only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&s.ctl).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

/// `musterd ctl edit` with a scripted $EDITOR: the first save does not check (the editor
/// is reopened, as visudo does), the second does; the zone is frozen meanwhile and the
/// edit is merged with an update made before.
#[test]
fn ctl_edit_reopens_the_editor_until_the_zone_checks() {
    if !have_tools() {
        return;
    }
    let s = Server::start("60s");
    s.update("update add d1.d.test. 60 A 10.9.5.1");
    let script = s.dir.write(
        "editor.sh",
        "#!/bin/sh\n\
         n=$(cat \"$0.count\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$0.count\"\n\
         if [ $n = 1 ]; then echo 'bad IN A 300.1.1.1' >> \"$1\"; else sed -i 's/300.1.1.1/10.9.5.2/' \"$1\"; fi\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, err) = s.ctl(
        &["edit", "d.test"],
        &[("EDITOR", &script.display().to_string()), ("VISUAL", "")],
    );
    assert_eq!(code, 0, "{out}{err}\n{}", s.musterd.log_text());
    assert!(
        err.contains("reopening the editor") && err.contains("300.1.1.1"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(script.with_extension("sh.count"))
            .unwrap()
            .trim(),
        "2"
    );
    assert_eq!(s.answer("bad.d.test.", "A"), ["10.9.5.2"]);
    assert_eq!(s.answer("d1.d.test.", "A"), ["10.9.5.1"]);
    let (_, status, _) = s.ctl(&["zone-status", "d.test"], &[]);
    assert!(status.contains("frozen: no"), "{status}");
}

/// TSIG keys are read again on SIGHUP: a rotated secret works at once, the old one no
/// longer does.
#[test]
fn a_rotated_tsig_key_is_taken_on_sighup() {
    if !have_tools() {
        return;
    }
    let s = Server::start("60s");
    s.update("update add r1.d.test. 60 A 10.9.6.1");
    let old = s.dir.path().join("old.key");
    std::fs::copy(&s.key, &old).unwrap();
    let (ok, rotated, err) = run(Command::new("tsig-keygen").args(["-a", "hmac-sha256", "k"]));
    assert!(ok, "{err}");
    std::fs::write(&s.key, rotated).unwrap();
    s.musterd.reload();
    assert!(
        s.musterd.log_text().contains("TSIG keys reread"),
        "{}",
        s.musterd.log_text()
    );
    s.update("update add r2.d.test. 60 A 10.9.6.2");
    assert_eq!(s.answer("r2.d.test.", "A"), ["10.9.6.2"]);
    let (ok, _) = s.update_with(&old, "update add r3.d.test. 60 A 10.9.6.3");
    assert!(!ok, "the old secret still works");
    assert!(s.answer("r3.d.test.", "A").is_empty());
}

/// Appends `line` to the zone file in place (no new file), as `echo >>` does.
fn append(path: &Path, line: &str) {
    use std::io::Write;
    let ends_in_newline = std::fs::read(path)
        .map(|t| t.last() == Some(&b'\n'))
        .unwrap_or(true);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open the zone file");
    let sep = if ends_in_newline { "" } else { "\n" };
    f.write_all(format!("{sep}{line}\n").as_bytes())
        .expect("append to the zone file");
}

/// Names collected by several threads.
type Names = Arc<Mutex<Vec<String>>>;

/// Signed updates streaming in from three threads until `stop`: the names tried and the
/// names acknowledged (each update adds an A and a TXT record to a new name). REFUSED is
/// an answer only once `frozen` is set (the zone was frozen with `musterd ctl`).
fn stream_updates(
    s: &Server,
    round: u32,
    stop: &Arc<AtomicBool>,
    frozen: &Arc<AtomicBool>,
) -> (Vec<std::thread::JoinHandle<()>>, Names, Names) {
    let key = Arc::new(update_support::load_key(&s.key));
    let (tried, acked) = (Arc::default(), Arc::default());
    let addr = s.musterd.addr;
    let threads = (0..3u8)
        .map(|t| {
            let (stop, key, frozen) = (stop.clone(), key.clone(), frozen.clone());
            let (tried, acked): (Names, Names) = (Arc::clone(&tried), Arc::clone(&acked));
            std::thread::spawn(move || {
                let mut i = 0u16;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("r{round}-t{t}-{i}.d.test.");
                    tried.lock().unwrap().push(name.clone());
                    let ip = [10, round as u8, t, i as u8];
                    let msg = update_support::add_a_and_txt("d.test.", i, &name, ip, &name);
                    match update_support::send(addr, &key, &msg, Duration::from_millis(500)) {
                        Some(0) => acked.lock().unwrap().push(name),
                        Some(5) if frozen.load(Ordering::SeqCst) => {}
                        Some(rc) => panic!("update {name}: rcode {rc}"),
                        None => {}
                    }
                    i += 1;
                }
            })
        })
        .collect();
    (threads, tried, acked)
}

/// kill -9 at random moments while signed updates stream in and the operator edits the
/// stamped zone file in place (a record appended, SIGHUP; now and then `musterd ctl flush`,
/// `reload`, or `freeze` and `thaw`), with write-backs every 50 ms
/// (so they are killed too): after each restart every acknowledged update is served, no
/// update is served in part, every edit that was served before the kill is served, every
/// edit line the file holds is served, and the serial is never below one served before.
#[test]
fn kill_9_during_updates_and_hand_edits_loses_nothing_served() {
    if !have_tools() {
        return;
    }
    let mut s = Server::start("50ms");
    s.wait_file("stamped", |t| t.starts_with("; musterd zone version"));
    let mut lcg = Lcg::seeded();
    let (mut acked, mut tried) = (Vec::new(), Vec::new());
    let (mut served_edits, mut edits) = (Vec::new(), Vec::new());
    let mut highest = s.serial();
    let mut killed_before_served = 0;
    // Exit codes of the control commands issued between the edits.
    let mut ctl_commands = Vec::new();
    let frozen = Arc::new(AtomicBool::new(false));
    for round in 0..12u32 {
        let addr = s.musterd.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let (threads, round_tried, round_acked) = stream_updates(&s, round, &stop, &frozen);
        let deadline = Instant::now() + Duration::from_millis(200 + lcg.next(800));
        let mut k = 0;
        while Instant::now() < deadline {
            let name = format!("e{round}-{k}.d.test.");
            append(&s.zone, &format!("{name} 60 IN TXT \"edit {round} {k}\""));
            s.musterd.signal(libc::SIGHUP);
            edits.push(name.clone());
            // Control commands now and then, as an operator issues them meanwhile (each
            // waits for its answer; a freeze refuses the updates that arrive until thawed).
            match lcg.next(6) {
                0 => ctl_commands.push(s.ctl(&["flush", "d.test"], &[]).0),
                1 => ctl_commands.push(s.ctl(&["reload", "d.test"], &[]).0),
                2 => {
                    frozen.store(true, Ordering::SeqCst);
                    ctl_commands.push(s.ctl(&["freeze", "d.test"], &[]).0);
                    std::thread::sleep(Duration::from_millis(lcg.next(50)));
                    ctl_commands.push(s.ctl(&["thaw", "d.test"], &[]).0);
                }
                _ => {}
            }
            // Watched for a random while: the next edit or the kill may come first.
            let until = Instant::now() + Duration::from_millis(20 + lcg.next(300));
            while Instant::now() < until.min(deadline) {
                if count(addr, &name, 16) == Some(1) {
                    served_edits.push(name.clone());
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if served_edits.last() != Some(&name) {
                killed_before_served += usize::from(Instant::now() >= deadline);
            }
            if let Some(now) = update_support::serial(addr, "d.test.") {
                highest = highest.max(now);
            }
            k += 1;
        }
        s.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        acked.extend(std::mem::take(&mut *round_acked.lock().unwrap()));
        tried.extend(std::mem::take(&mut *round_tried.lock().unwrap()));
        let addr = s.musterd.addr;
        let log = || s.musterd.log_text();
        let now = update_support::serial(addr, "d.test.").expect("an SOA after the restart");
        assert!(
            now >= highest,
            "round {round}: serial {now} after the restart, {highest} served before:\n{}",
            log()
        );
        highest = now;
        for name in &acked {
            assert_eq!(
                count(addr, name, 1),
                Some(1),
                "round {round}: acknowledged {name} A lost"
            );
            assert_eq!(
                count(addr, name, 16),
                Some(1),
                "round {round}: acknowledged {name} TXT lost"
            );
        }
        for name in &tried {
            let (a, t) = (count(addr, name, 1), count(addr, name, 16));
            assert_eq!(
                a, t,
                "round {round}: {name} is served in part (A {a:?}, TXT {t:?})"
            );
        }
        for name in &served_edits {
            assert_eq!(
                count(addr, name, 16),
                Some(1),
                "round {round}: the served edit {name} is lost; file:\n{}\nlog:\n{}",
                s.file(),
                log()
            );
        }
        let text = s.file();
        for name in edits.iter().filter(|n| text.contains(n.as_str())) {
            assert_eq!(
                count(addr, name, 16),
                Some(1),
                "round {round}: the file holds {name} but it is not served; log:\n{}",
                log()
            );
        }
    }
    // An edit appended while a write-back renders and syncs its new file can be replaced
    // unseen (the file's fingerprint is checked before the new file is synced and renamed
    // over it, not at the rename): such edits were never served; they are named here.
    let text = s.file();
    let gone: Vec<&String> = edits
        .iter()
        .filter(|n| !text.contains(n.as_str()))
        .collect();
    eprintln!(
        "{} updates acknowledged, {} edits ({} seen served before a kill, {} killed before \
         being served, {} never served and not in the file: {gone:?}), {} control commands \
         ({} answered 0), serial {highest}",
        acked.len(),
        edits.len(),
        served_edits.len(),
        killed_before_served,
        gone.len(),
        ctl_commands.len(),
        ctl_commands.iter().filter(|&&c| c == 0).count()
    );
    assert!(
        ctl_commands.len() > 5,
        "only {} control commands",
        ctl_commands.len()
    );
    assert!(
        acked.len() > 50,
        "only {} updates acknowledged",
        acked.len()
    );
    assert!(
        served_edits.len() > 12,
        "only {} edits served",
        served_edits.len()
    );
    assert!(
        !s.musterd.log_text().contains("panicked"),
        "{}",
        s.musterd.log_text()
    );
}
