//! Hand edits of an updatable zone file (SIGHUP, the file watcher, `musterd ctl thaw`):
//! the saved file read and checked off the runtime, merged three ways against the
//! version its stamp names (rebuilt from the served zone and the changeset history), and
//! the resulting changeset built, journaled and served like an update.

use std::path::Path;

use super::save::fingerprint;
use super::{touched_by, ZoneWorker};
use crate::proto::name::Name;
use crate::update::{writeback, ZoneData};
use crate::zone::changeset::Changeset;
use crate::zone::Zone;

/// Why a saved zone file is not applied; the served zone stays as it is.
#[derive(Debug)]
pub(super) enum EditRefused {
    /// It does not parse or build (message with file and line).
    Broken(String),
    /// Its stamp names a version the history no longer holds, or that does not match.
    UnknownBase(String),
    Conflict(crate::update::MergeConflict),
}

impl ZoneWorker {
    /// The zone as it was at `version`, rebuilt from the served zone by taking the
    /// changesets since then back out; checked against the version's digest.
    pub(super) fn version_at(&self, version: writeback::Version) -> Result<ZoneData, String> {
        let current = self.data.serial();
        let mut data = self.data.clone();
        if version.serial != current {
            let start = self
                .history
                .iter()
                .rposition(|c| c.from_serial == version.serial)
                .ok_or_else(|| {
                    format!(
                        "serial {} is older than the history musterd keeps (journal_history = {}; \
                         the served zone is at serial {current})",
                        version.serial, self.journal_history
                    )
                })?;
            for cs in self.history.range(start..).rev() {
                data.revert_changeset(cs).map_err(|e| e.to_string())?;
            }
        }
        if data.digest() != version.digest {
            return Err(format!(
                "no version of the zone with serial {} has the digest {:016x} the stamp names",
                version.serial, version.digest
            ));
        }
        Ok(data)
    }

    /// The changeset that applies the saved zone file (`file`, in `state`) to the served
    /// zone: merged three ways against the version its stamp names; an unstamped file
    /// that holds exactly a version in the history is that version; any other unstamped
    /// file is taken as written (with a warning naming what it removes).
    pub(super) fn merge_file(
        &self,
        state: writeback::FileState,
        file: &ZoneData,
    ) -> Result<Option<Changeset>, EditRefused> {
        if file.serial() == self.data.serial() && file.digest() == self.data.digest() {
            // The file holds the served records (say, a first start): nothing to merge,
            // and no copy of a large zone made to find that out.
            return Ok(None);
        }
        let base = match state {
            writeback::FileState::Unedited => return Ok(None),
            writeback::FileState::Edited(v) => {
                self.version_at(v).map_err(EditRefused::UnknownBase)?
            }
            writeback::FileState::Unstamped => {
                match self.version_at(writeback::Version::of(file)) {
                    Ok(base) => base,
                    Err(_) => {
                        let cs = self.data.replace_with(file);
                        if let Some(cs) = &cs {
                            let removed = self.data.records_missing_from(file, 20);
                            if !removed.is_empty() {
                                tracing::warn!(
                                    zone = %self.origin,
                                    file = %self.file.display(),
                                    "the zone file has no musterd stamp (replaced wholesale?): taken as written; it removes {} record(s) the served zone held, among them: {}",
                                    cs.removed.len() - 1,
                                    writeback::describe(&removed, &self.origin)
                                );
                            }
                            self.metrics.edit("taken_as_written");
                        }
                        return Ok(cs);
                    }
                }
            }
        };
        let cs = self
            .data
            .merge_edit(&base, file)
            .map_err(EditRefused::Conflict)?;
        if cs.is_some() {
            self.metrics.edit("merged");
        }
        Ok(cs)
    }

    /// Logs and counts a refused edit; write-backs wait until the file is saved again.
    pub(super) fn refuse_edit(&mut self, refused: EditRefused) {
        let why = match &refused {
            EditRefused::Broken(m) => format!("it does not load: {m}"),
            EditRefused::UnknownBase(m) => format!("its stamp cannot be placed: {m}; copy the records you changed into the current file and save it again, or delete the file's first line to have it taken as written"),
            EditRefused::Conflict(c) => format!("it conflicts with a dynamic update made since the file was written: {c}; edit that RRset to the value you want (the served one or yours) and save again"),
        };
        if !matches!(refused, EditRefused::Broken(_)) {
            self.metrics.edit("refused");
        }
        crate::stats::bump(&self.stats.reload_failures);
        tracing::error!(
            zone = %self.origin,
            file = %self.file.display(),
            serial = self.data.serial(),
            "the zone file is not applied, {why}. The served zone (with its updates) keeps serving, and the file is not written back until it is fixed"
        );
        self.file_blocked = Some(why);
    }

    /// Rereads the zone file (all of it on SIGHUP, `force`; otherwise only when it
    /// changed) and merges a hand edit into the served zone. False when the file is not
    /// applied.
    pub(super) async fn reload(&mut self, force: bool) -> bool {
        // A write-back in flight finishes first: it must not overwrite what this writes.
        if self.writing {
            if let Some(w) = self.written_rx.recv().await {
                self.written(w);
            }
        }
        let print = fingerprint(&self.file);
        if !force && print == self.file_print {
            return true;
        }
        let (file, state) = match self.read_file().await {
            Ok(Some(read)) => read,
            Ok(None) => {
                self.file_print = print;
                return true;
            }
            Err(refused) => {
                self.file_print = print;
                self.refuse_edit(refused);
                return false;
            }
        };
        self.file_print = print;
        let merged = tokio::task::block_in_place(|| self.merge_file(state, &file));
        let cs = match merged {
            Ok(Some(cs)) => cs,
            Ok(None) => {
                self.file_blocked = None;
                tracing::info!(zone = %self.origin, "zone file reread: no change against the served zone");
                if self.unsaved > 0 || !matches!(state, writeback::FileState::Unedited) {
                    self.write_back_logged();
                }
                return true;
            }
            Err(refused) => {
                self.refuse_edit(refused);
                return false;
            }
        };
        self.file_blocked = None;
        if !self.apply_edit(cs).await {
            return false;
        }
        // Written at once, so that the file carries the served version and the next
        // edit starts from it.
        self.write_back_logged();
        true
    }

    /// Reads and checks the zone file: `None` when it is exactly what musterd wrote.
    /// Reads the zone file on the blocking pool (parsing and checking a large file takes
    /// seconds, which must not hold a runtime thread).
    pub(super) async fn read_file(
        &self,
    ) -> Result<Option<(ZoneData, writeback::FileState)>, EditRefused> {
        let (file, origin, sizes) = (self.file.clone(), self.origin.clone(), self.gate_sizes());
        tokio::task::spawn_blocking(move || read_zone_file(&file, &origin, &sizes))
            .await
            .unwrap_or_else(|panic| {
                Err(EditRefused::Broken(format!(
                    "reading it panicked: {} (a bug: please report it)",
                    crate::loader::panic_message(&*panic.into_panic())
                )))
            })
    }
}

/// The records of a saved zone file, checked as a load would check them; `None` when the
/// file is as musterd wrote it.
fn read_zone_file(
    file: &Path,
    origin: &Name,
    sizes: &[(Name, u32)],
) -> Result<Option<(ZoneData, writeback::FileState)>, EditRefused> {
    {
        let broken = |m: String| EditRefused::Broken(m);
        let text = std::fs::read_to_string(file)
            .map_err(|e| broken(format!("{}: {e}", file.display())))?;
        let state = writeback::file_state(&text);
        if state == writeback::FileState::Unedited {
            return Ok(None);
        }
        let records = crate::zone::zonefile::parse_str(&text, file, origin)
            .map_err(|e| broken(e.to_string()))?;
        if let Err(errors) = Zone::build_with_sizes(origin, records.clone(), sizes) {
            let text = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ");
            return Err(broken(text));
        }
        let data = ZoneData::from_records(origin, records).map_err(|e| broken(e.to_string()))?;
        Ok(Some((data, state)))
    }
}
impl ZoneWorker {
    /// Applies a hand edit's changeset: built, journaled, published. False (nothing
    /// changed) when it does not build or cannot be made durable.
    pub(super) async fn apply_edit(&mut self, cs: Changeset) -> bool {
        let mut next = self.data.clone();
        if let Err(e) = next.apply_changeset(&cs) {
            tracing::error!(zone = %self.origin, "cannot apply the hand edit: {e}");
            return false;
        }
        let previous = std::mem::replace(&mut self.data, next);
        let touched = touched_by(std::iter::once(&cs));
        let zone = match self.next_version(&touched) {
            Ok(z) => z,
            Err(message) => {
                self.data = previous;
                crate::stats::bump(&self.stats.reload_failures);
                tracing::error!(zone = %self.origin, "the hand edit merged with the updates does not build: {message}");
                return false;
            }
        };
        if let Err(e) = self.journal.append(&cs).await {
            self.data = previous;
            crate::stats::bump(&self.stats.reload_failures);
            tracing::error!(zone = %self.origin, "cannot journal the hand edit, it is not applied: {e}");
            return false;
        }
        tracing::info!(
            zone = %self.origin,
            serial = cs.to_serial,
            removed = cs.removed.len() - 1,
            added = cs.added.len() - 1,
            "hand edit merged with the served zone"
        );
        crate::stats::bump(&self.stats.reloads);
        self.ixfr.record(&self.origin, cs.clone());
        self.publish(zone, Some(&touched));
        self.remember(cs);
        true
    }
}
