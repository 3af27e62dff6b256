//! The durable log of a zone's changesets: what makes an acknowledged dynamic update
//! survive a crash (RFC 2136 §3.5: the change is on stable storage before the response is
//! sent), and the history IXFR serves (RFC 1995).
//!
//! One file per zone, `<state-dir>/<zone>.journal`:
//!
//! ```text
//! header = magic "MUSTRJNL" | version u16 (= 1) | name length u8 | zone name (lower-case wire) | crc32c u32 of the preceding
//! record = length u32 | crc32c u32 of the payload | payload (an encoded Changeset)
//! ```
//!
//! Integers are big-endian. [`Journal::append`] returns only after the record is written
//! and `fdatasync`ed. A single writer thread owns the file: appends that arrive while it
//! is writing or syncing are written together and share the next `fdatasync` (group
//! commit), and async callers wait on a oneshot channel, never blocking a runtime thread.
//!
//! Opening recovers: every record's checksum is verified; a torn tail (the last record
//! cut short, or its checksum wrong with nothing after it, or only zero bytes from the
//! damaged record to the end, which is what a file extended but never written looks
//! like after power loss) is cut off with a warning naming the offset. Damage followed by
//! further data, a bad magic or header checksum, an unknown version or another zone's
//! name is an error: the zone must not load from a journal that lies.
//!
//! [`Journal::rewrite`] replaces the whole file atomically to bound the history, and
//! [`write_atomically`] writes any file the same way (temp file, fsync, rename, fsync
//! the directory) — also for the zone file write-back.
//!
//! Limitations: a bit flip in the length field of a record that makes it point past the
//! end of the file is indistinguishable from a torn tail, and loses the records after it
//! (with the warning). The journal does not check that serials chain from one changeset
//! to the next; the zone that replays it does.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use crate::proto::name::Name;
use crate::zone::changeset::{Changeset, ChangesetError};

/// First eight octets of every journal file.
pub const MAGIC: &[u8; 8] = b"MUSTRJNL";
/// The file format this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Length and checksum in front of each record.
const RECORD_HEADER_LEN: usize = 8;

/// Why a journal could not be opened, read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// A system call failed: ENOSPC, EROFS, EACCES and the like. The update that asked
    /// for it is not durable and must not be applied (answer SERVFAIL).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: Arc<io::Error>,
    },
    #[error(
        "{}: not a musterd journal (bad magic); move it aside to load the zone without it",
        path.display()
    )]
    BadMagic { path: PathBuf },
    #[error(
        "{}: journal format version {version} is not known to this musterd (it reads \
         version {FORMAT_VERSION}); run the musterd that wrote it, or move the journal aside",
        path.display()
    )]
    UnknownVersion { path: PathBuf, version: u16 },
    #[error(
        "{}: the journal header is damaged ({what}); move the journal aside to load the \
         zone file without its updates, or restore it from a backup",
        path.display()
    )]
    BadHeader { path: PathBuf, what: &'static str },
    #[error(
        "{}: the journal belongs to zone {found}, not {expected}; move it to the right name",
        path.display()
    )]
    ZoneMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "{}: the record at offset {offset} is damaged ({what}) and more data follows it, so \
         this is not a torn write; refusing to load the zone. Move the journal aside to load \
         the zone file without its updates, or restore the journal from a backup",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("cannot encode the changeset: {0}")]
    Encode(#[from] ChangesetError),
    #[error("the changeset encodes to {len} octets, more than a journal record holds")]
    TooLarge { len: usize },
    #[error(
        "{}: an earlier write or sync failed ({cause}), so what is on disk is unknown; \
         restart musterd to recover the journal",
        path.display()
    )]
    Poisoned { path: PathBuf, cause: String },
    #[error("the journal writer for {} has stopped", path.display())]
    Closed { path: PathBuf },
}

impl JournalError {
    /// The OS error behind an I/O failure (ENOSPC, EROFS, EACCES, ...), if that is what
    /// this is.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            JournalError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |e| JournalError::Io {
        path,
        action,
        source: Arc::new(e),
    }
}

/// The journal's file name for a zone: its labels, lower-cased, joined by dots, with every
/// octet other than `a-z 0-9 - _` written as `%HH` (so no name can climb out of the state
/// directory or collide with another), and `@` for the root zone.
pub fn file_name(zone: &Name) -> String {
    let lower = zone.to_lowercase();
    let mut out = String::new();
    for (i, label) in lower.labels().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    if out.is_empty() {
        out.push('@');
    }
    out.push_str(".journal");
    out
}

fn header_bytes(zone: &Name) -> Vec<u8> {
    let wire = zone.to_lowercase();
    let wire = wire.as_wire();
    let mut h = Vec::with_capacity(MAGIC.len() + 2 + 1 + wire.len() + 4);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    // A wire name is at most 255 octets (RFC 1035 §2.3.4), so it fits the length octet.
    h.push(wire.len() as u8);
    h.extend_from_slice(wire);
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_be_bytes());
    h
}

/// Frames an encoded changeset as a journal record.
fn frame(payload: &[u8]) -> Result<Vec<u8>, JournalError> {
    let len =
        u32::try_from(payload.len()).map_err(|_| JournalError::TooLarge { len: payload.len() })?;
    let mut rec = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    rec.extend_from_slice(&len.to_be_bytes());
    rec.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    rec.extend_from_slice(payload);
    Ok(rec)
}

/// Checks the header; returns its length.
fn check_header(path: &Path, data: &[u8], zone: &Name) -> Result<usize, JournalError> {
    let damaged = |what| JournalError::BadHeader {
        path: path.to_path_buf(),
        what,
    };
    if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
        return Err(JournalError::BadMagic {
            path: path.to_path_buf(),
        });
    }
    let version = data
        .get(8..10)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(damaged("it is cut short"))?;
    if version != FORMAT_VERSION {
        return Err(JournalError::UnknownVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let name_len = *data.get(10).ok_or(damaged("it is cut short"))? as usize;
    let end = 11 + name_len;
    let name = data.get(11..end).ok_or(damaged("it is cut short"))?;
    let crc = data
        .get(end..end + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(damaged("it is cut short"))?;
    if crc32c::crc32c(&data[..end]) != crc {
        return Err(damaged("checksum mismatch"));
    }
    let found = Name::from_wire(name).map_err(|_| damaged("malformed zone name"))?;
    if !found.eq_ignore_case(zone) {
        return Err(JournalError::ZoneMismatch {
            path: path.to_path_buf(),
            expected: zone.to_string(),
            found: found.to_string(),
        });
    }
    Ok(end + 4)
}

/// A torn tail that opening cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the damaged record started; the file now ends here.
    pub offset: u64,
    /// How many octets were cut.
    pub dropped: u64,
}

/// What opening a journal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Every complete record, in the order written.
    pub changesets: Vec<Changeset>,
    pub torn_tail: Option<TornTail>,
}

/// Reads the records after the header. Returns the changesets, the length of the good
/// prefix of the file, and the torn tail if there is one.
fn scan(
    path: &Path,
    data: &[u8],
    start: usize,
) -> Result<(Vec<Changeset>, usize, Option<TornTail>), JournalError> {
    let mut out = Vec::new();
    let mut pos = start;
    let torn = |pos: usize| TornTail {
        offset: pos as u64,
        dropped: (data.len() - pos) as u64,
    };
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.len() < RECORD_HEADER_LEN {
            return Ok((out, pos, Some(torn(pos))));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let body = &rest[RECORD_HEADER_LEN..];
        if body.len() < len {
            return Ok((out, pos, Some(torn(pos))));
        }
        let payload = &body[..len];
        let end = pos + RECORD_HEADER_LEN + len;
        // An empty payload is never written; an all-zero record header would otherwise
        // pass the checksum (the CRC-32C of nothing is 0).
        if len == 0 || crc32c::crc32c(payload) != crc {
            if end == data.len() || rest.iter().all(|&b| b == 0) {
                return Ok((out, pos, Some(torn(pos))));
            }
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                offset: pos as u64,
                what: if len == 0 {
                    "zero length".into()
                } else {
                    "checksum mismatch".into()
                },
            });
        }
        let cs = Changeset::decode(payload).map_err(|e| JournalError::Corrupt {
            path: path.to_path_buf(),
            offset: pos as u64,
            what: format!("the checksum matches but the changeset is invalid: {e}"),
        })?;
        out.push(cs);
        pos = end;
    }
    Ok((out, pos, None))
}

/// Counters for metrics and for checking that group commit works.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records made durable.
    pub records: u64,
    /// `fdatasync` calls made for them.
    pub syncs: u64,
}

#[derive(Default)]
struct Counters {
    records: AtomicU64,
    syncs: AtomicU64,
}

type Reply = tokio::sync::oneshot::Sender<Result<(), JournalError>>;

enum Command {
    Append { record: Vec<u8>, reply: Reply },
    Rewrite { records: Vec<u8>, reply: Reply },
}

/// An open journal: appends go through its writer thread.
pub struct Journal {
    path: PathBuf,
    zone: Name,
    tx: Option<mpsc::Sender<Command>>,
    writer: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("zone", &self.zone)
            .finish()
    }
}

impl Journal {
    /// Opens (or creates) the journal of `zone` in `state_dir`, recovering it as the
    /// module documentation says, and starts its writer thread.
    ///
    /// This reads the whole file and may fsync: call it at start-up or from a blocking
    /// task, not on a runtime thread.
    pub fn open(state_dir: &Path, zone: &Name) -> Result<(Journal, Recovery), JournalError> {
        std::fs::create_dir_all(state_dir).map_err(io_error(state_dir, "create"))?;
        let path = state_dir.join(file_name(zone));
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&path, "read")(e)),
        };
        let (changesets, good_len, torn_tail) = if data.is_empty() {
            // New, or left empty by something else: start it with a header, atomically,
            // so that a crash can never leave half a header behind.
            write_atomically(&path, &header_bytes(zone))?;
            (Vec::new(), header_bytes(zone).len(), None)
        } else {
            let start = check_header(&path, &data, zone)?;
            scan(&path, &data, start)?
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io_error(&path, "open"))?;
        if let Some(t) = torn_tail {
            tracing::warn!(
                journal = %path.display(),
                offset = t.offset,
                dropped = t.dropped,
                "journal ends with a torn record at offset {}: cutting off {} octets \
                 (an update that was never acknowledged)",
                t.offset,
                t.dropped
            );
            file.set_len(good_len as u64)
                .map_err(io_error(&path, "truncate"))?;
            file.sync_all().map_err(io_error(&path, "sync"))?;
        }
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::channel();
        let mut state = Writer {
            path: path.clone(),
            header: header_bytes(zone),
            file,
            len: good_len as u64,
            poisoned: None,
            counters: Arc::clone(&counters),
        };
        let writer = std::thread::Builder::new()
            .name(format!("journal {}", zone))
            .spawn(move || state.run(rx))
            .map_err(io_error(&path, "start the writer thread for"))?;
        Ok((
            Journal {
                path,
                zone: zone.clone(),
                tx: Some(tx),
                writer: Some(writer),
                counters,
            },
            Recovery {
                changesets,
                torn_tail,
            },
        ))
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The zone it belongs to.
    pub fn zone(&self) -> &Name {
        &self.zone
    }

    /// Records written and fsyncs made since opening.
    pub fn stats(&self) -> JournalStats {
        JournalStats {
            records: self.counters.records.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
        }
    }

    fn submit(
        &self,
        make: impl FnOnce(Reply) -> Command,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), JournalError>>, JournalError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let closed = || JournalError::Closed {
            path: self.path.clone(),
        };
        self.tx
            .as_ref()
            .ok_or_else(closed)?
            .send(make(reply))
            .map_err(|_| closed())?;
        Ok(rx)
    }

    /// Appends one changeset and waits until it is on stable storage. Once submitted the
    /// append completes even if this future is dropped.
    pub async fn append(&self, changeset: &Changeset) -> Result<(), JournalError> {
        let record = frame(&changeset.encode()?)?;
        let rx = self.submit(|reply| Command::Append { record, reply })?;
        rx.await.map_err(|_| JournalError::Closed {
            path: self.path.clone(),
        })?
    }

    /// [`Journal::append`] for threads outside an async runtime (it blocks).
    pub fn append_blocking(&self, changeset: &Changeset) -> Result<(), JournalError> {
        let record = frame(&changeset.encode()?)?;
        let rx = self.submit(|reply| Command::Append { record, reply })?;
        rx.blocking_recv().map_err(|_| JournalError::Closed {
            path: self.path.clone(),
        })?
    }

    fn rewrite_command(&self, keep: &[Changeset]) -> Result<Vec<u8>, JournalError> {
        let mut records = Vec::new();
        for cs in keep {
            records.extend_from_slice(&frame(&cs.encode()?)?);
        }
        Ok(records)
    }

    /// Replaces the journal with exactly `keep`, atomically: a crash leaves either the old
    /// or the new file. Appends wait behind it. A successful rewrite also clears a
    /// poisoned journal, since the new file's content is known.
    pub async fn rewrite(&self, keep: &[Changeset]) -> Result<(), JournalError> {
        let records = self.rewrite_command(keep)?;
        let rx = self.submit(|reply| Command::Rewrite { records, reply })?;
        rx.await.map_err(|_| JournalError::Closed {
            path: self.path.clone(),
        })?
    }

    /// [`Journal::rewrite`] for threads outside an async runtime (it blocks).
    pub fn rewrite_blocking(&self, keep: &[Changeset]) -> Result<(), JournalError> {
        let records = self.rewrite_command(keep)?;
        let rx = self.submit(|reply| Command::Rewrite { records, reply })?;
        rx.blocking_recv().map_err(|_| JournalError::Closed {
            path: self.path.clone(),
        })?
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop after the queued commands.
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer thread's state: the only code that touches the journal file after opening.
struct Writer {
    path: PathBuf,
    header: Vec<u8>,
    file: File,
    /// Length of the journal's known-good content.
    len: u64,
    /// Set after a failure that leaves the file's content unknown.
    poisoned: Option<String>,
    counters: Arc<Counters>,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Command>) {
        let mut queue = Vec::new();
        while let Ok(first) = rx.recv() {
            // Everything that queued up while we were busy goes into this round.
            queue.push(first);
            queue.extend(rx.try_iter());
            let mut batch: Vec<(Vec<u8>, Reply)> = Vec::new();
            for cmd in queue.drain(..) {
                match cmd {
                    Command::Append { record, reply } => batch.push((record, reply)),
                    Command::Rewrite { records, reply } => {
                        // Appends submitted before the rewrite are written before it.
                        self.commit(std::mem::take(&mut batch));
                        let _ = reply.send(self.rewrite(&records));
                    }
                }
            }
            self.commit(batch);
        }
    }

    /// Writes a batch of records with one write and one `fdatasync`, then answers each.
    fn commit(&mut self, batch: Vec<(Vec<u8>, Reply)>) {
        if batch.is_empty() {
            return;
        }
        let result = self.write_batch(&batch);
        if result.is_ok() {
            self.counters
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        for (_, reply) in batch {
            // A caller that went away no longer needs the answer.
            let _ = reply.send(result.clone());
        }
    }

    fn write_batch(&mut self, batch: &[(Vec<u8>, Reply)]) -> Result<(), JournalError> {
        if let Some(cause) = &self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
                cause: cause.clone(),
            });
        }
        let buf: Vec<u8> = batch.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        if let Err(e) = self.file.write_all_at(&buf, self.len) {
            // Cut off whatever part was written, so the next append does not land after a
            // partial record; if even that fails the file is in an unknown state.
            if let Err(t) = self.file.set_len(self.len) {
                self.poisoned = Some(format!("write failed ({e}), then truncate failed ({t})"));
            }
            return Err(io_error(&self.path, "write to")(e));
        }
        // After a failed fdatasync the kernel may have dropped the dirty pages and cleared
        // the error, so a retry could falsely succeed: nothing after it can be trusted.
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.file.sync_data() {
            self.poisoned = Some(format!("fdatasync failed ({e})"));
            return Err(io_error(&self.path, "sync")(e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    fn rewrite(&mut self, records: &[u8]) -> Result<(), JournalError> {
        let mut content = self.header.clone();
        content.extend_from_slice(records);
        write_atomically(&self.path, &content)?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io_error(&self.path, "open"))?;
        self.len = content.len() as u64;
        self.poisoned = None;
        Ok(())
    }
}

/// Replaces the file at `path` with `bytes` so that a crash at any instant leaves either
/// the old file or the new one, complete: write a temp file beside it, fsync it, rename it
/// over `path`, fsync the directory (so the rename itself is durable).
///
/// The temp file is `.<name>.tmp` in the same directory; one writer per path at a time.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    write_atomically_if(path, bytes, || true).map(|_| ())
}

/// [`write_atomically`], asking `still` right before the rename whether the file should
/// still be replaced (the temp file is written and synced by then, so what `still` checks
/// can change only in the moment before the rename). `Ok(false)` when it said no: nothing
/// was replaced.
pub fn write_atomically_if(
    path: &Path,
    bytes: &[u8],
    still: impl FnOnce() -> bool,
) -> Result<bool, JournalError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| JournalError::Io {
            path: path.to_path_buf(),
            action: "write",
            source: Arc::new(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path has no file name",
            )),
        })?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_error(&tmp, "create"))?;
        f.write_all(bytes).map_err(io_error(&tmp, "write to"))?;
        f.sync_all().map_err(io_error(&tmp, "sync"))?;
        drop(f);
        if !still() {
            return Ok(false);
        }
        std::fs::rename(&tmp, path).map_err(io_error(path, "rename a temp file onto"))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir, "sync the directory"))
            .map(|()| true)
    })();
    if !matches!(result, Ok(true)) {
        // Best effort: a leftover temp file is harmless and overwritten next time.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::changeset::tests::sample;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    fn zone() -> Name {
        Name::parse("Example.COM.", None).unwrap()
    }

    fn open(dir: &Path) -> Result<(Journal, Recovery), JournalError> {
        Journal::open(dir, &zone())
    }

    /// A journal holding `n` changesets, closed; returns its path and each record's end.
    fn written(dir: &Path, n: u32) -> (PathBuf, Vec<u64>) {
        let (j, rec) = open(dir).unwrap();
        assert!(rec.changesets.is_empty());
        let mut ends = Vec::new();
        for i in 0..n {
            j.append_blocking(&sample("example.com.", 100 + i)).unwrap();
            ends.push(std::fs::metadata(j.path()).unwrap().len());
        }
        (j.path().to_path_buf(), ends)
    }

    #[test]
    fn file_names_are_safe() {
        let n = |s| Name::parse(s, None).unwrap();
        assert_eq!(file_name(&n("Example.COM.")), "example.com.journal");
        assert_eq!(file_name(&n(".")), "@.journal");
        assert_eq!(file_name(&n("a\\/b.x.")), "a%2Fb.x.journal");
        assert_eq!(file_name(&n("a\\.b.x.")), "a%2Eb.x.journal");
        assert_eq!(file_name(&n("\\.\\..")), "%2E%2E.journal");
    }

    #[test]
    fn appends_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path(), 5);
        assert!(path.ends_with("example.com.journal"));
        let (j, rec) = open(dir.path()).unwrap();
        assert_eq!(rec.torn_tail, None);
        let want: Vec<_> = (0..5).map(|i| sample("example.com.", 100 + i)).collect();
        assert_eq!(rec.changesets, want);
        j.append_blocking(&sample("example.com.", 105)).unwrap();
        drop(j);
        assert_eq!(open(dir.path()).unwrap().1.changesets.len(), 6);
    }

    #[test]
    fn torn_tail_at_every_offset_of_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = written(dir.path(), 3);
        let full = std::fs::read(&path).unwrap();
        let last_start = ends[1] as usize;
        for cut in last_start + 1..full.len() {
            std::fs::write(&path, &full[..cut]).unwrap();
            let (j, rec) = open(dir.path()).unwrap();
            assert_eq!(rec.changesets.len(), 2, "cut at {cut}");
            assert_eq!(
                rec.torn_tail,
                Some(TornTail {
                    offset: last_start as u64,
                    dropped: (cut - last_start) as u64
                })
            );
            drop(j);
            // Cut off for good: the second open finds a clean file.
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_start as u64);
            let (_, again) = open(dir.path()).unwrap();
            assert_eq!((again.changesets.len(), again.torn_tail), (2, None));
        }
        // Cutting exactly at a record boundary is simply a shorter journal.
        std::fs::write(&path, &full[..last_start]).unwrap();
        let (_, rec) = open(dir.path()).unwrap();
        assert_eq!((rec.changesets.len(), rec.torn_tail), (2, None));
    }

    #[test]
    fn bad_checksum_on_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = written(dir.path(), 3);
        let mut data = std::fs::read(&path).unwrap();
        let n = data.len();
        data[n - 1] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let (_, rec) = open(dir.path()).unwrap();
        assert_eq!(rec.changesets.len(), 2);
        assert_eq!(rec.torn_tail.unwrap().offset, ends[1]);
    }

    #[test]
    fn zeros_after_the_last_good_record_are_a_torn_tail() {
        // What ext4/xfs may leave after power loss: the size was extended, the data blocks
        // never written.
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = written(dir.path(), 2);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &data).unwrap();
        let (_, rec) = open(dir.path()).unwrap();
        assert_eq!(rec.changesets.len(), 2);
        assert_eq!(rec.torn_tail.unwrap().offset, ends[1]);
    }

    #[test]
    fn flipped_byte_in_a_middle_record_stops_the_zone() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = written(dir.path(), 3);
        let clean = std::fs::read(&path).unwrap();
        // Every byte of the middle record's payload (not its length field, see the module
        // Limitations) is covered by the checksum.
        for at in ends[0] as usize + 4..ends[1] as usize {
            let mut data = clean.clone();
            data[at] ^= 0x01;
            std::fs::write(&path, &data).unwrap();
            let err = open(dir.path()).unwrap_err();
            match &err {
                JournalError::Corrupt { offset, .. } => assert_eq!(*offset, ends[0]),
                other => panic!("byte {at}: {other}"),
            }
        }
        let msg = open(dir.path()).unwrap_err().to_string();
        assert!(msg.contains(&format!("offset {}", ends[0])), "{msg}");
        assert!(msg.contains("example.com.journal"), "{msg}");
        assert!(msg.contains("Move the journal aside"), "{msg}");
        // The file was not touched.
        assert_eq!(std::fs::read(&path).unwrap().len(), clean.len());
    }

    #[test]
    fn zero_length_file_is_an_empty_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.journal");
        std::fs::write(&path, b"").unwrap();
        let (j, rec) = open(dir.path()).unwrap();
        assert_eq!((rec.changesets.len(), rec.torn_tail), (0, None));
        j.append_blocking(&sample("example.com.", 1)).unwrap();
        drop(j);
        assert_eq!(open(dir.path()).unwrap().1.changesets.len(), 1);
    }

    #[test]
    fn header_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path(), 1);
        let clean = std::fs::read(&path).unwrap();

        let mut data = clean.clone();
        data[9] = 7; // version 7
        std::fs::write(&path, &data).unwrap();
        let err = open(dir.path()).unwrap_err();
        assert!(matches!(
            err,
            JournalError::UnknownVersion { version: 7, .. }
        ));
        assert!(err.to_string().contains("version 7"), "{err}");

        let mut data = clean.clone();
        data[0] = b'X';
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(
            open(dir.path()).unwrap_err(),
            JournalError::BadMagic { .. }
        ));

        let mut data = clean.clone();
        data[12] ^= 0x20; // a letter of the zone name: the header checksum catches it
        std::fs::write(&path, &data).unwrap();
        assert!(matches!(
            open(dir.path()).unwrap_err(),
            JournalError::BadHeader { .. }
        ));

        // Another zone's journal under this zone's name.
        std::fs::write(&path, &clean).unwrap();
        std::fs::rename(&path, dir.path().join("example.org.journal")).unwrap();
        let err =
            Journal::open(dir.path(), &Name::parse("example.org.", None).unwrap()).unwrap_err();
        assert!(
            matches!(&err, JournalError::ZoneMismatch { found, .. } if found == "example.com."),
            "{err}"
        );
    }

    #[test]
    fn rewrite_keeps_only_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path()).unwrap();
        for i in 0..10 {
            j.append_blocking(&sample("example.com.", i)).unwrap();
        }
        let keep: Vec<_> = (7..10).map(|i| sample("example.com.", i)).collect();
        j.rewrite_blocking(&keep).unwrap();
        j.append_blocking(&sample("example.com.", 10)).unwrap();
        drop(j);
        let (_, rec) = open(dir.path()).unwrap();
        let want: Vec<_> = (7..11).map(|i| sample("example.com.", i)).collect();
        assert_eq!(rec.changesets, want);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("example.com.journal")]);
    }

    #[test]
    fn write_atomically_replaces_whole_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("example.com.zone");
        write_atomically(&p, b"first").unwrap();
        write_atomically(&p, b"second, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
        // A directory that cannot be written gives a typed I/O error.
        let err = write_atomically(&dir.path().join("missing/x.zone"), b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(2), "{err}");
    }

    #[test]
    fn unwritable_state_dir_is_a_typed_error() {
        // Root ignores permission bits, so use a path under a regular file (ENOTDIR).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = open(&file.join("state")).unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }), "{err}");
        assert!(err.raw_os_error().is_some(), "{err}");
    }

    #[test]
    fn full_disk_fails_the_append_and_keeps_the_journal_usable() {
        // /dev/full answers every write with ENOSPC: the write error reaches the caller,
        // the partial write is cut off, and nothing is acknowledged.
        if !Path::new("/dev/full").exists() {
            eprintln!("skipped: /dev/full is missing");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = open(dir.path()).unwrap();
        // Point the writer at /dev/full by rebuilding it around that file.
        let (tx, rx) = mpsc::channel();
        let mut w = Writer {
            path: PathBuf::from("/dev/full"),
            header: header_bytes(&zone()),
            file: OpenOptions::new().write(true).open("/dev/full").unwrap(),
            len: 0,
            poisoned: None,
            counters: Arc::new(Counters::default()),
        };
        let old_tx = j.tx.replace(tx);
        drop(old_tx);
        if let Some(h) = j.writer.replace(std::thread::spawn(move || w.run(rx))) {
            h.join().unwrap();
        }
        let err = j.append_blocking(&sample("example.com.", 1)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28), "{err}"); // ENOSPC
        assert_eq!(j.stats().records, 0);
    }

    /// Group commit: 50 appends in flight at once share far fewer than 50 fsyncs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_appends_share_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = open(dir.path()).unwrap();
        let j = Arc::new(j);

        let t = Instant::now();
        for i in 0..50 {
            j.append(&sample("example.com.", i)).await.unwrap();
        }
        let sequential = t.elapsed();
        let seq_stats = j.stats();
        assert_eq!(
            seq_stats,
            JournalStats {
                records: 50,
                syncs: 50
            }
        );

        let t = Instant::now();
        let tasks: Vec<_> = (50..100)
            .map(|i| {
                let j = Arc::clone(&j);
                tokio::spawn(async move { j.append(&sample("example.com.", i)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let concurrent = t.elapsed();
        let syncs = j.stats().syncs - seq_stats.syncs;
        eprintln!(
            "group commit: 50 sequential appends {sequential:?} (50 fsyncs); \
             50 concurrent appends {concurrent:?} ({syncs} fsyncs)"
        );
        assert_eq!(j.stats().records, 100);
        assert!(syncs <= 25, "{syncs} fsyncs for 50 concurrent appends");
        drop(Arc::try_unwrap(j).expect("every task has finished"));
        let (_, rec) = open(dir.path()).unwrap();
        assert_eq!(rec.changesets.len(), 100);
    }

    const CRASH_DIR_ENV: &str = "MUSTER_JOURNAL_CRASH_DIR";

    /// The child of [`kill_9_loses_no_acknowledged_append`]: appends from four threads
    /// until killed, printing `ack <serial>` for each acknowledged append. Does
    /// nothing when run by itself.
    #[test]
    #[ignore = "run by kill_9_loses_no_acknowledged_append in a child process"]
    fn crash_child_writer() {
        let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
            return;
        };
        let round: u32 = std::env::var("MUSTER_JOURNAL_CRASH_ROUND")
            .unwrap()
            .parse()
            .unwrap();
        let (j, _) = Journal::open(Path::new(&dir), &zone()).unwrap();
        let j = Arc::new(j);
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let j = Arc::clone(&j);
                std::thread::spawn(move || {
                    for i in 0.. {
                        let serial = crash_serial(round, t, i);
                        j.append_blocking(&sample("example.com.", serial)).unwrap();
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "ack {serial}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    fn crash_serial(round: u32, thread: u32, i: u32) -> u32 {
        round * 10_000_000 + thread * 1_000_000 + i
    }

    /// kill -9 at random moments while four threads append: after each round every
    /// acknowledged changeset is in the journal, whole, in each thread's order, and the
    /// journal opens without manual help.
    #[test]
    fn kill_9_loses_no_acknowledged_append() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        // The child's test name as the harness spells it: the module path without the
        // crate, so that moving this module does not silently break the test.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let child_test = format!("{module}::crash_child_writer");
        let mut acked: Vec<u32> = Vec::new();
        let mut torn_rounds = 0;
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let started = Instant::now();
        let rounds = 20;
        for round in 1..=rounds {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = Duration::from_millis(seed % 250);
            let mut child = std::process::Command::new(&exe)
                .args([
                    &child_test,
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR_ENV, dir.path())
                .env("MUSTER_JOURNAL_CRASH_ROUND", round.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let (tx, rx) = mpsc::channel::<u32>();
            let reader = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(s) = line.strip_prefix("ack ").and_then(|s| s.parse().ok()) {
                        let _ = tx.send(s);
                    }
                }
            });
            // Kill a random time after the first acknowledgement, so every round dies in
            // the middle of the stream rather than while the child starts.
            let mut this_round: Vec<u32> = rx
                .recv_timeout(Duration::from_secs(20))
                .map(|s| vec![s])
                .unwrap_or_else(|_| panic!("round {round}: the child never acknowledged"));
            std::thread::sleep(delay);
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            reader.join().unwrap();
            this_round.extend(rx.try_iter());
            acked.extend(&this_round);

            let (j, rec) = open(dir.path()).unwrap_or_else(|e| panic!("round {round}: {e}"));
            drop(j);
            if rec.torn_tail.is_some() {
                torn_rounds += 1;
            }
            let serials: Vec<u32> = rec.changesets.iter().map(|c| c.from_serial).collect();
            for cs in &rec.changesets {
                assert_eq!(*cs, sample("example.com.", cs.from_serial), "round {round}");
            }
            let present: std::collections::HashSet<u32> = serials.iter().copied().collect();
            assert_eq!(present.len(), serials.len(), "round {round}: a duplicate");
            for s in &acked {
                assert!(
                    present.contains(s),
                    "round {round}: acknowledged {s} is lost"
                );
            }
            // Each thread's appends are in its own order.
            let mut last: std::collections::HashMap<u32, u32> = Default::default();
            for s in &serials {
                let stream = s / 1_000_000;
                if let Some(prev) = last.insert(stream, *s) {
                    assert!(prev < *s, "round {round}: {prev} before {s}");
                }
            }
            eprintln!(
                "round {round}: killed {delay:?} after the first ack, {} acknowledged, \
                 {} in the journal, torn tail: {:?}",
                this_round.len(),
                serials.len(),
                rec.torn_tail
            );
        }
        eprintln!(
            "crash test: {rounds} rounds, {} acknowledged appends, all present; {torn_rounds} \
             rounds ended with a torn tail; {:?}",
            acked.len(),
            started.elapsed()
        );
        assert!(!acked.is_empty());
    }
}
