//! Opening an updatable zone at start: musterd's base copy (or the zone file, the first
//! time), the journal's changesets that continue it, an edit made to the zone file while
//! musterd was stopped merged, and the files written back so that they agree.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

use super::metrics::UpdateMetrics;
use super::save::{base_path, fingerprint, write_files};
use super::versions::Versions;
use super::{Command, OpenError, UpdateConfig, ZoneWorker};
use crate::config::ZoneSpec;
use crate::proto::name::Name;
use crate::query::answer::Responder;
use crate::stats::Stats;
use crate::update::journal::{self, Journal, JournalError};
use crate::update::{writeback, Policy, ZoneData};
use crate::zone::catalog::Catalog;
use crate::zone::changeset::Changeset;
use crate::zone::history::History;
use crate::zone::Zone;

/// musterd's base copy of a zone, if it has one.
fn read_base(base: &Path, origin: &Name) -> Result<Option<ZoneData>, OpenError> {
    let error = |message: String| OpenError::Base {
        zone: origin.clone(),
        path: base.to_path_buf(),
        message,
    };
    let Some(text) = writeback::read(base).map_err(|e| error(e.to_string()))? else {
        return Ok(None);
    };
    let records =
        crate::zone::zonefile::parse_str(&text, base, origin).map_err(|e| error(e.to_string()))?;
    ZoneData::from_records(origin, records)
        .map(Some)
        .map_err(|e| error(e.to_string()))
}

/// Makes sure musterd's own copy of the zone file exists in `config.state_dir` and reads
/// it: the base the journal continues, whatever was done to the operator's file
/// meanwhile. On the first start with updates it is the operator's file as it is
/// (`file_data`; the journal, if any, continues it).
fn open_base(
    config: &UpdateConfig,
    origin: &Name,
    file_data: &ZoneData,
) -> Result<(PathBuf, ZoneData), OpenError> {
    let base = base_path(&config.state_dir, origin);
    std::fs::create_dir_all(&config.state_dir).map_err(|e| OpenError::Base {
        zone: origin.clone(),
        path: config.state_dir.clone(),
        message: e.to_string(),
    })?;
    if let Some(data) = read_base(&base, origin)? {
        return Ok((base, data));
    }
    journal::write_atomically(&base, writeback::canonical(file_data).as_bytes()).map_err(
        |source| OpenError::Journal {
            zone: origin.clone(),
            source,
        },
    )?;
    Ok((base, file_data.clone()))
}

impl ZoneWorker {
    /// Opens an updatable zone as [`super::Updates::open`] describes: its base copy and
    /// journal replayed, an edit of its file made while musterd was stopped merged.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn open(
        config: &UpdateConfig,
        spec: ZoneSpec,
        policy: Policy,
        loaded: &Zone,
        rx: mpsc::Receiver<Command>,
        catalog: &Arc<ArcSwap<Catalog>>,
        ixfr: Arc<History>,
        responder: Responder,
        stats: Arc<Stats>,
        metrics: Arc<UpdateMetrics>,
    ) -> Result<ZoneWorker, OpenError> {
        let origin = loaded.origin.clone();
        let file = spec
            .file
            .clone()
            .ok_or_else(|| OpenError::NotLoaded(origin.clone()))?;
        let file_data = ZoneData::from_zone(loaded);
        let (base, data) = open_base(config, &origin, &file_data)?;
        let (journal, recovery) =
            Journal::open(&config.state_dir, &origin).map_err(|source| OpenError::Journal {
                zone: origin.clone(),
                source,
            })?;
        let (written_tx, written_rx) = mpsc::unbounded_channel();
        let mut w = ZoneWorker {
            origin: origin.clone(),
            file,
            base,
            policy,
            limits: config.limits,
            writeback_changes: config.writeback_changes,
            writeback_interval: config.writeback_interval,
            journal_history: config.journal_history,
            written_serial: data.serial(),
            data,
            journal,
            file_print: None,
            file_blocked: None,
            frozen: false,
            history: VecDeque::new(),
            unsaved: 0,
            unsaved_since: None,
            precompile_after: None,
            versions: Versions::new(),
            writing: false,
            written_tx,
            written_rx,
            rx,
            catalog: catalog.clone(),
            ixfr,
            responder,
            stats,
            metrics,
        };
        let replayed = w.replay(recovery.changesets)?;
        w.ixfr.reset(&origin, w.history.iter().cloned());
        w.catch_up(replayed, &file_data)?;
        Ok(w)
    }

    fn journal_error(&self, source: JournalError) -> OpenError {
        OpenError::Journal {
            zone: self.origin.clone(),
            source,
        }
    }

    /// Takes in the operator's file as musterd finds it (`file_data`, loaded at start):
    /// an edit made while musterd was down is merged now; an unstamped file is stamped
    /// (so that an editor's copy of it names its version); a file behind the journal is
    /// written back. Then serves the result.
    fn catch_up(&mut self, replayed: usize, file_data: &ZoneData) -> Result<(), OpenError> {
        let print = fingerprint(&self.file);
        let text = writeback::read(&self.file)
            .ok()
            .flatten()
            .unwrap_or_default();
        let state = writeback::file_state(&text);
        let edited = self.merge_stopped_edit(state, file_data)?;
        self.file_print = print;
        // The base copy is ahead of the operator's file when musterd was killed between
        // writing the two.
        let behind = file_data.digest() != self.data.digest();
        let ahead = behind && replayed == 0;
        if replayed > 0 || edited || behind {
            let zone = self.build().map_err(|message| OpenError::Build {
                zone: self.origin.clone(),
                message,
            })?;
            tracing::info!(zone = %self.origin, changesets = replayed, serial = zone.serial(), "journal replayed");
            self.publish(zone, None);
            self.precompile_now();
        } else if let Some(served) = self.catalog.load().get(&self.origin) {
            // The loaded snapshot holds what the task holds: updates patch it.
            self.versions.published(served.clone(), None);
        }
        let unstamped = !matches!(state, writeback::FileState::Unedited);
        if self.file_blocked.is_none() && unstamped && !(edited || behind || replayed > 0) {
            // The file holds the served records and lacks only its stamp (a first start):
            // the stamp line is added, nothing rendered, before anyone can open it in an
            // editor.
            let outcome = write_files(&self.file, None, &self.data, self.file_print);
            self.finish_write_back(outcome)
                .map_err(|e| self.journal_error(e))?;
        } else if self.file_blocked.is_none() && (edited || ahead || unstamped) {
            // Written now so that the operator's file, the base copy and the journal agree.
            self.write_back_now().map_err(|e| self.journal_error(e))?;
        }
        Ok(())
    }

    /// Merges an edit of the zone file (in `state`, holding `file_data`) made while
    /// musterd was stopped into the replayed zone and journals it; true when there was
    /// one to apply. A refused edit is logged and blocks write-backs, as at run time.
    fn merge_stopped_edit(
        &mut self,
        state: writeback::FileState,
        file_data: &ZoneData,
    ) -> Result<bool, OpenError> {
        if state == writeback::FileState::Unedited {
            return Ok(false);
        }
        let cs = match self.merge_file(state, file_data) {
            Ok(Some(cs)) => cs,
            Ok(None) => return Ok(false),
            Err(refused) => {
                self.refuse_edit(refused);
                return Ok(false);
            }
        };
        let mut next = self.data.clone();
        next.apply_changeset(&cs).map_err(|e| OpenError::Build {
            zone: self.origin.clone(),
            message: format!("the hand edit does not apply: {e}"),
        })?;
        self.journal
            .append_blocking(&cs)
            .map_err(|e| self.journal_error(e))?;
        tracing::info!(zone = %self.origin, serial = cs.to_serial, "zone file edited while musterd was stopped: merged with the journaled updates");
        self.data = next;
        self.ixfr.record(&self.origin, cs.clone());
        self.remember(cs);
        Ok(true)
    }

    /// Applies the journal's changesets that continue the base copy; returns how many.
    pub(super) fn replay(&mut self, changesets: Vec<Changeset>) -> Result<usize, OpenError> {
        let replay_error = |message: String| OpenError::Replay {
            zone: self.origin.clone(),
            journal: self.journal.path().to_path_buf(),
            message,
        };
        let base_serial = self.data.serial();
        let start = changesets.iter().position(|c| c.from_serial == base_serial);
        let mut replayed = 0;
        match (start, changesets.last()) {
            (Some(i), _) => {
                for cs in &changesets[i..] {
                    self.data
                        .apply_changeset(cs)
                        .map_err(|e| replay_error(e.to_string()))?;
                    replayed += 1;
                }
            }
            (None, None) => {}
            (None, Some(last)) if last.to_serial == base_serial => {}
            (None, Some(last)) => {
                return Err(replay_error(format!(
                    "musterd's base copy has serial {base_serial}, and no journal record starts \
                     there (the journal ends at serial {})",
                    last.to_serial
                )))
            }
        }
        self.unsaved = replayed;
        self.unsaved_since = (replayed > 0).then(Instant::now);
        self.history = changesets.into();
        Ok(replayed)
    }
}
