//! Writing an updatable zone back: the operator's zone file (layout kept) and musterd's
//! base copy beside the journal, atomically and never over a file that changed since
//! musterd last read or wrote it or that does not load; then the journal compacted to
//! the history the write-back leaves.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::ZoneWorker;
use crate::proto::name::Name;
use crate::update::journal::{self, JournalError};
use crate::update::{self, writeback, ZoneData};
use crate::zone::changeset::Changeset;

/// musterd's copy of an updatable zone's file, beside its journal.
pub(super) fn base_path(state_dir: &Path, zone: &Name) -> PathBuf {
    state_dir.join(format!("{}.zone", journal::file_name(zone)))
}

/// What a write-back reports.
pub(super) enum WriteOutcome {
    /// Both files written: the version written, the zone file's fingerprint now, and why
    /// the operator's layout could not be kept, if it could not.
    Done {
        serial: u32,
        file_print: Fingerprint,
        layout_lost: Option<String>,
    },
    /// The zone file changed since musterd last read or wrote it: merged first.
    Changed,
    /// The zone file does not load: it is never written over.
    Broken(String),
    Failed(JournalError),
}

/// A file's identity for change detection: inode, size, modification and change times.
pub(super) type Fingerprint = Option<(u64, u64, i64, i64, i64)>;

pub(super) fn fingerprint(path: &Path) -> Fingerprint {
    fingerprint_of(&std::fs::metadata(path).ok()?)
}

fn fingerprint_of(m: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Some((m.ino(), m.len(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// Writes `data` to musterd's base copy (its own layout) and then to the operator's zone
/// file (layout kept, [`writeback::render`]): in this order, so that a crash between the
/// two leaves a base copy that the journal continues. Nothing is written when the zone
/// file is no longer the one musterd last read or wrote (`expected`), or does not load.
/// Writes `data` into the operator's `file` (unless it changed since `expected`) and into
/// the `base` copy. Without a base (the base already holds `data`, and so does `file`,
/// unstamped), only the stamp line is added to the file.
pub(super) fn write_files(
    file: &Path,
    base: Option<&Path>,
    data: &ZoneData,
    expected: Fingerprint,
) -> WriteOutcome {
    if fingerprint(file) != expected {
        return WriteOutcome::Changed;
    }
    let current = match writeback::read(file) {
        Ok(t) => t.unwrap_or_default(),
        Err(e) => return WriteOutcome::Broken(format!("{}: {e}", file.display())),
    };
    let rendered = if base.is_none() {
        writeback::Rendered {
            text: writeback::stamp(&current, data),
            layout_lost: None,
        }
    } else if current.is_empty() {
        writeback::Rendered {
            text: writeback::canonical(data),
            layout_lost: None,
        }
    } else {
        match writeback::render(&current, file, data) {
            Ok(r) => r,
            Err(e) => return WriteOutcome::Broken(e),
        }
    };
    if let Some(base) = base {
        if let Err(e) = journal::write_atomically(base, writeback::canonical(data).as_bytes()) {
            return WriteOutcome::Failed(e);
        }
    }
    // The operator's file as musterd knows it, held open: an edit saved into it (appended,
    // or written in place) even in the moment of the rename stays readable through it.
    let held = std::fs::File::open(file).ok();
    // Content only: the rename changes the old inode's ctime (one link fewer).
    let written_to = |f: &Option<std::fs::File>| {
        use std::os::unix::fs::MetadataExt;
        let m = f.as_ref()?.metadata().ok()?;
        Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    };
    let before = written_to(&held);
    let unchanged = || fingerprint(file) == expected && written_to(&held) == before;
    match journal::write_atomically_if(file, rendered.text.as_bytes(), unchanged) {
        Ok(true) => {}
        Ok(false) => return WriteOutcome::Changed,
        Err(e) => return WriteOutcome::Failed(e),
    }
    if held.is_some() && written_to(&held) != before {
        // Written into the old file after the last check: put that version back (its stamp
        // names the version it was edited from), to be merged like any edit.
        let mut text = String::new();
        let restored = held.as_ref().is_some_and(|mut f| {
            use std::io::{Read, Seek};
            f.rewind().is_ok() && f.read_to_string(&mut text).is_ok()
        });
        if restored {
            if let Err(e) = journal::write_atomically(file, text.as_bytes()) {
                return WriteOutcome::Failed(e);
            }
        }
        return WriteOutcome::Changed;
    }
    WriteOutcome::Done {
        serial: data.serial(),
        file_print: fingerprint(file),
        layout_lost: rendered.layout_lost,
    }
}

impl ZoneWorker {
    /// Writes the zone file back now, on this thread (at start, and after a hand edit),
    /// and compacts the journal. A zone file that changed meanwhile or does not load is
    /// left alone: the journal keeps everything until the next write-back.
    pub(super) fn write_back_now(&mut self) -> Result<(), JournalError> {
        let outcome = write_files(&self.file, Some(&self.base), &self.data, self.file_print);
        self.finish_write_back(outcome)
    }

    /// Takes the result of a write-back: on success the journal is compacted to what the
    /// file does not hold plus the history.
    pub(super) fn finish_write_back(&mut self, outcome: WriteOutcome) -> Result<(), JournalError> {
        let (serial, file_print, layout_lost) = match outcome {
            WriteOutcome::Done {
                serial,
                file_print,
                layout_lost,
            } => (serial, file_print, layout_lost),
            WriteOutcome::Changed => {
                tracing::info!(zone = %self.origin, "the zone file changed since musterd last read it: its edit is merged before the next write-back");
                self.unsaved_since = Some(Instant::now());
                self.file_print = None;
                return Ok(());
            }
            WriteOutcome::Broken(why) => {
                self.blocked_write_back(&why);
                return Ok(());
            }
            WriteOutcome::Failed(e) => {
                self.unsaved_since = Some(Instant::now());
                return Err(e);
            }
        };
        if let Some(why) = layout_lost {
            tracing::warn!(zone = %self.origin, file = %self.file.display(), "the zone file was written in musterd's own layout, its comments and directives could not be kept: {why}");
        }
        self.file_print = file_print;
        if !update::serial_gt(serial, self.written_serial) && serial != self.written_serial {
            return Ok(());
        }
        self.written_serial = serial;
        self.unsaved = self
            .history
            .iter()
            .filter(|c| update::serial_gt(c.to_serial, serial))
            .count();
        self.unsaved_since = (self.unsaved > 0).then(Instant::now);
        let keep_from = self
            .history
            .len()
            .saturating_sub(self.journal_history.max(self.unsaved));
        self.history.drain(..keep_from);
        let keep: Vec<Changeset> = self.history.iter().cloned().collect();
        self.journal.rewrite_blocking(&keep)?;
        tracing::info!(zone = %self.origin, serial, file = %self.file.display(), "zone file written back, journal compacted");
        Ok(())
    }

    /// A write-back that cannot happen because the operator's file is broken: counted,
    /// logged, retried after the next interval or save.
    pub(super) fn blocked_write_back(&mut self, why: &str) {
        self.metrics
            .writeback_blocked
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(zone = %self.origin, file = %self.file.display(), unsaved = self.unsaved, "zone file not written back: {why}; the journal keeps every update until the file is fixed and saved");
        self.unsaved_since = Some(Instant::now());
    }

    /// Starts writing the served version back on a blocking thread (on a large zone it
    /// takes longer than many updates, which go on meanwhile); a zone file that changed
    /// since musterd last read it is merged first, and a broken one is not written over.
    pub(super) async fn flush(&mut self) {
        if self.writing {
            return;
        }
        if let Some(why) = self.file_blocked.clone() {
            if fingerprint(&self.file) == self.file_print {
                self.blocked_write_back(&why);
                return;
            }
        }
        if fingerprint(&self.file) != self.file_print {
            // Merging writes back itself.
            self.reload(false).await;
            return;
        }
        self.unsaved_since = None;
        self.writing = true;
        let (file, base, data, print) = (
            self.file.clone(),
            self.base.clone(),
            self.data.clone(),
            self.file_print,
        );
        let tx = self.written_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(write_files(&file, Some(&base), &data, print));
        });
    }

    /// A background write-back finished.
    pub(super) fn written(&mut self, outcome: WriteOutcome) {
        self.writing = false;
        if let Err(e) = tokio::task::block_in_place(|| self.finish_write_back(outcome)) {
            tracing::error!(zone = %self.origin, "cannot write the zone file back or compact the journal (the journal keeps every update; retrying later): {e}");
        }
    }

    pub(super) fn write_back_logged(&mut self) {
        if let Err(e) = tokio::task::block_in_place(|| self.write_back_now()) {
            tracing::error!(zone = %self.origin, "cannot write the zone file back or compact the journal (the journal keeps every update; retrying later): {e}");
        }
    }
}
