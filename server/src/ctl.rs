//! `musterd ctl`: the control socket, as `knotc`, `nsd-control` and `rndc` have one.
//!
//! A Unix stream socket in the runtime directory (mode 0660: root and the musterd group).
//! One request per connection: a line `COMMAND [ZONE]`; the answer is `ok` or `error` on
//! the first line, then text, then the server closes the connection. Every command is
//! carried out by the serving loop ([`crate::serve`]), so `reload` is exactly SIGHUP's
//! reload and nothing here touches a zone itself.
//!
//! `edit` is the client's alone: freeze the zone, open `$EDITOR` on its file, check the
//! saved file and reopen it on errors (as `visudo` does), then thaw, which merges it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::proto::name::Name;

pub use crate::config::DEFAULT_CONTROL_SOCKET as DEFAULT_SOCKET;

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Version, uptime and every zone with its serial.
    Status,
    /// Reload every zone (as SIGHUP), or one.
    Reload(Option<Name>),
    /// Serial, history, journal, pending write-back, gate, secondaries of one zone.
    ZoneStatus(Name),
    /// Write an updatable zone's file back now.
    Flush(Name),
    /// Refuse dynamic updates to a zone (REFUSED with an Extended DNS Error) while its
    /// file is edited.
    Freeze(Name),
    /// Take updates again; the zone file is merged first.
    Thaw(Name),
    /// Send NOTIFY to the zone's secondaries now.
    Notify(Name),
    /// Transfer a secondary zone from its primary now, in full.
    Retransfer(Name),
}

impl Request {
    /// Parses `COMMAND [ZONE]`.
    pub fn parse(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let zone = |w: Option<&&str>| -> Result<Name, String> {
            let w = w.ok_or("this command needs a zone name")?;
            Name::parse_absolute(w).map_err(|e| format!("{w}: {e}"))
        };
        let (cmd, rest) = words.split_first().ok_or("empty request")?;
        let zone_arg = rest.first();
        if rest.len() > 1 {
            return Err(format!("{cmd}: one zone at most"));
        }
        Ok(match *cmd {
            "status" if rest.is_empty() => Request::Status,
            "reload" => Request::Reload(zone_arg.map(|_| zone(zone_arg)).transpose()?),
            "zone-status" => Request::ZoneStatus(zone(zone_arg)?),
            "flush" => Request::Flush(zone(zone_arg)?),
            "freeze" => Request::Freeze(zone(zone_arg)?),
            "thaw" => Request::Thaw(zone(zone_arg)?),
            "notify" => Request::Notify(zone(zone_arg)?),
            "retransfer" => Request::Retransfer(zone(zone_arg)?),
            "status" => return Err("status takes no zone".into()),
            other => {
                return Err(format!(
                    "unknown command {other} (known: status, reload, zone-status, flush, \
                     freeze, thaw, notify, retransfer, edit)"
                ))
            }
        })
    }

    /// The request line.
    pub fn to_line(&self) -> String {
        let (cmd, zone) = match self {
            Request::Status => ("status", None),
            Request::Reload(z) => ("reload", z.as_ref()),
            Request::ZoneStatus(z) => ("zone-status", Some(z)),
            Request::Flush(z) => ("flush", Some(z)),
            Request::Freeze(z) => ("freeze", Some(z)),
            Request::Thaw(z) => ("thaw", Some(z)),
            Request::Notify(z) => ("notify", Some(z)),
            Request::Retransfer(z) => ("retransfer", Some(z)),
        };
        match zone {
            Some(z) => format!("{cmd} {z}\n"),
            None => format!("{cmd}\n"),
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub ok: bool,
    pub text: String,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            ok: true,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            text: text.into(),
        }
    }
}

impl From<Result<String, String>> for Reply {
    fn from(r: Result<String, String>) -> Reply {
        match r {
            Ok(text) => Reply::ok(text),
            Err(text) => Reply::error(text),
        }
    }
}

/// A request on its way to the serving loop, with where its answer goes.
pub type Job = (Request, oneshot::Sender<Reply>);

/// Binds the control socket at `path` (mode 0660; a stale socket file is replaced) and
/// serves it until the runtime stops, handing each request to `jobs`.
pub fn listen(path: &Path, jobs: mpsc::Sender<Job>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(path).is_ok() {
        // Only a socket that nobody answers on is stale: refuse to take over a live one.
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use by another musterd", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(serve_one(stream, jobs.clone()));
        }
    });
    Ok(())
}

async fn serve_one(stream: tokio::net::UnixStream, jobs: mpsc::Sender<Job>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(AsyncReadExt::take(read, 4096));
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    let reply = match read {
        Ok(Ok(_)) => match Request::parse(&line) {
            Ok(req) => {
                tracing::info!(request = %line.trim(), "control request");
                let (tx, rx) = oneshot::channel();
                if jobs.send((req, tx)).await.is_err() {
                    Reply::error("musterd is shutting down")
                } else {
                    rx.await
                        .unwrap_or_else(|_| Reply::error("the request was dropped"))
                }
            }
            Err(e) => Reply::error(e),
        },
        _ => Reply::error("no request line within 5 s"),
    };
    let head = if reply.ok { "ok" } else { "error" };
    let mut text = format!("{head}\n{}", reply.text);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    let _ = write.write_all(text.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Sends one request to the musterd at `socket` and waits for its answer.
pub fn send(socket: &Path, req: &Request, timeout: Duration) -> Result<Reply, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot reach musterd's control socket {}: {e} (is musterd running, and may \
             this user open the socket? --socket names another one)",
            socket.display()
        )
    })?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(req.to_line().as_bytes())
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    reader
        .read_line(&mut head)
        .map_err(|e| format!("{}: no answer: {e}", socket.display()))?;
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    match head.trim() {
        "ok" => Ok(Reply::ok(text)),
        "error" => Ok(Reply::error(text)),
        other => Err(format!("{}: unexpected answer {other:?}", socket.display())),
    }
}

/// The value of a `KEY: value` line of a zone-status answer.
fn field<'a>(zone_status: &'a str, key: &str) -> Option<&'a str> {
    zone_status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(": "))
        .map(str::trim)
}

/// `musterd ctl edit ZONE`: freezes the zone, opens `$VISUAL`/`$EDITOR` (default `vi`) on
/// a copy of its file, checks what was saved and reopens it on errors, installs it, and
/// thaws the zone (which merges the edit). The zone is thawed on every path.
pub fn edit(socket: &Path, zone: &str, timeout: Duration) -> Result<Reply, String> {
    let zone = match Request::parse(&format!("zone-status {zone}"))? {
        Request::ZoneStatus(z) => z,
        _ => unreachable!("parsed as zone-status"),
    };
    let status = send(socket, &Request::ZoneStatus(zone.clone()), timeout)?;
    if !status.ok {
        return Ok(status);
    }
    let file = field(&status.text, "file")
        .filter(|_| field(&status.text, "kind") == Some("primary, dynamic updates"))
        .map(PathBuf::from)
        .ok_or_else(|| format!("{zone} takes no dynamic updates: edit its file and run `musterd ctl reload {zone}`"))?;
    let frozen = send(socket, &Request::Freeze(zone.clone()), timeout)?;
    if !frozen.ok {
        return Ok(frozen);
    }
    let edited = edit_checked(&file, &zone);
    let thawed = send(socket, &Request::Thaw(zone.clone()), timeout)?;
    match edited {
        Ok(true) => Ok(thawed),
        Ok(false) => Ok(Reply {
            ok: thawed.ok,
            text: format!("no change to {}\n{}", file.display(), thawed.text),
        }),
        Err(e) => Err(format!("{e} ({zone} thawed, the zone file unchanged)")),
    }
}

/// Edits a copy of `file` until it checks clean or the editor saves nothing new; installs
/// it. True when the file changed.
fn edit_checked(file: &Path, zone: &Name) -> Result<bool, String> {
    let original = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let copy = std::env::temp_dir().join(format!(
        "musterd-edit-{}-{}.zone",
        zone.to_string().trim_end_matches('.'),
        std::process::id()
    ));
    std::fs::write(&copy, &original).map_err(|e| format!("{}: {e}", copy.display()))?;
    let set = |v: &str| std::env::var(v).ok().filter(|e| !e.trim().is_empty());
    let editor = set("VISUAL")
        .or_else(|| set("EDITOR"))
        .unwrap_or_else(|| "vi".into());
    let mut last = original.clone();
    let outcome = loop {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("sh")
            .arg(&copy)
            .status()
            .map_err(|e| format!("cannot run the editor {editor}: {e}"));
        if let Err(e) = status {
            break Err(e);
        }
        let text =
            std::fs::read_to_string(&copy).map_err(|e| format!("{}: {e}", copy.display()))?;
        if text == original {
            break Ok(None);
        }
        match check_text(&text, file, zone) {
            Ok(()) => break Ok(Some(text)),
            Err(errors) if text == last => {
                break Err(format!(
                    "{}: still not valid, edit abandoned:\n{errors}",
                    file.display()
                ))
            }
            Err(errors) => {
                eprintln!(
                    "musterd ctl edit: the zone does not check, reopening the editor:\n{errors}"
                );
                last = text;
            }
        }
    };
    let _ = std::fs::remove_file(&copy);
    match outcome? {
        Some(text) => {
            crate::update::journal::write_atomically(file, text.as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The zone checks that a reload would make: it parses and builds.
fn check_text(text: &str, file: &Path, zone: &Name) -> Result<(), String> {
    let records = crate::zone::zonefile::parse_str(text, file, zone).map_err(|e| e.to_string())?;
    crate::zone::Zone::build(zone, records)
        .map(|_| ())
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_print_back() {
        for line in [
            "status",
            "reload",
            "reload d.test.",
            "zone-status d.test.",
            "flush d.test.",
            "freeze d.test.",
            "thaw d.test.",
            "notify d.test.",
            "retransfer d.test.",
        ] {
            let r = Request::parse(line).unwrap();
            assert_eq!(r.to_line(), format!("{line}\n"));
        }
        assert_eq!(
            Request::parse("flush d.test").unwrap(),
            Request::Flush(Name::parse("d.test.", None).unwrap())
        );
        for bad in ["", "flush", "status d.test.", "frob d.test.", "flush a. b."] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }
}
