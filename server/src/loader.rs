//! Loading zones from files into snapshots, and reloading them without losing service.
//!
//! A reload builds every zone anew; a zone that fails keeps serving its previous snapshot
//! and the error is logged with file and line. The new catalog is swapped in whole, so a
//! query sees either the old or the new version of a zone, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::answer::Responder;
use crate::catalog::Catalog;
use crate::config::ZoneSpec;
use crate::name::Name;
use crate::stats::{bump, Stats};
use crate::zone::{Zone, ZoneError};
use crate::zonefile;

/// Why a zone could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("zone {origin}: {errors}")]
    Parse {
        origin: Name,
        errors: zonefile::ZoneFileErrors,
    },
    #[error("zone {origin}: {}", join(errors))]
    Invalid {
        origin: Name,
        errors: Vec<ZoneError>,
    },
}

fn join(errors: &[ZoneError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Reads and builds one zone, logging its warnings. Its answers are precompiled later,
/// in the background, by [`precompile_in_background`].
pub fn load_zone(spec: &ZoneSpec) -> Result<Zone, LoadError> {
    let started = Instant::now();
    let records = match &spec.file {
        Some(path) => zonefile::parse_file(path, &spec.origin),
        None => zonefile::parse_str(
            crate::example::ZONE,
            Path::new(crate::example::PATH),
            &spec.origin,
        ),
    }
    .map_err(|errors| LoadError::Parse {
        origin: spec.origin.clone(),
        errors,
    })?;
    let parsed = started.elapsed();
    let (zone, warnings) =
        Zone::build(&spec.origin, records).map_err(|errors| LoadError::Invalid {
            origin: spec.origin.clone(),
            errors,
        })?;
    for w in warnings {
        tracing::warn!("{}: {}", w.at, w.message);
    }
    tracing::debug!(
        zone = %spec.origin,
        parse_ms = parsed.as_millis() as u64,
        build_ms = (started.elapsed() - parsed).as_millis() as u64,
        "zone load phases"
    );
    trim_allocator();
    Ok(zone)
}

/// Makes glibc return large freed blocks to the system. By default its mmap threshold
/// rises to the size of the largest block freed (up to 32 MiB), after which the big
/// vectors of a zone load come from the heap and per-thread arenas, where freeing them
/// leaves holes: a large zone then kept ~25 MB it no longer used (60 MB instead of 36 MB).
/// A fixed threshold keeps big blocks in their own mappings, unmapped when freed. The
/// query path does not allocate, so this costs nothing there.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters (it takes the allocator's lock).
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Parsing and building free far more memory than a zone keeps; hand it back to the
/// system instead of leaving it in the allocator's free lists.
fn trim_allocator() {
    // SAFETY: malloc_trim only releases free heap pages.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Precompiles the answers of freshly published zones on a background thread. Until it
/// is done the full path answers, so loading is not delayed by it.
pub fn precompile_in_background(zones: Vec<Arc<Zone>>, responder: Responder, origins: Vec<Name>) {
    if zones.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("precompile".into())
        .spawn(move || {
            for zone in zones {
                let started = Instant::now();
                crate::fastpath::precompile(&zone, &responder, &origins);
                tracing::debug!(
                    zone = %zone.origin,
                    ms = started.elapsed().as_millis() as u64,
                    bytes = zone.heap_bytes(),
                    "answers precompiled"
                );
            }
            trim_allocator();
        });
    if let Err(e) = spawned {
        // Not fatal: the full path answers everything, only slower.
        tracing::warn!("cannot start the precompile thread: {e}");
    }
}

/// A file's identity for change detection: inode, size, modification and change times.
/// The inode and ctime catch a file replaced by one with the same size and a preserved
/// mtime (`rsync -t`, `cp -p` then `mv`).
type Fingerprint = Vec<(PathBuf, Option<(u64, u64, SystemTime, i64, i64)>)>;

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    files
        .iter()
        .map(|f| {
            let meta = std::fs::metadata(f).ok();
            let id = meta.and_then(|m| {
                Some((
                    m.ino(),
                    m.len(),
                    m.modified().ok()?,
                    m.ctime(),
                    m.ctime_nsec(),
                ))
            });
            (f.clone(), id)
        })
        .collect()
}

/// One configured zone and what was last loaded for it.
struct Slot {
    spec: ZoneSpec,
    files: Vec<PathBuf>,
    fingerprint: Fingerprint,
}

/// The configured zones and the live catalog built from them.
pub struct Zones {
    slots: Vec<Slot>,
    responder: Responder,
    catalog: Arc<ArcSwap<Catalog>>,
    stats: Arc<Stats>,
}

impl Zones {
    /// Loads every zone; fails if any does not load (at start-up there is nothing to keep).
    pub fn load_all(
        specs: &[ZoneSpec],
        stats: Arc<Stats>,
        responder: Responder,
    ) -> Result<Zones, Vec<LoadError>> {
        let mut catalog = Catalog::new();
        let mut slots = Vec::new();
        let mut errors = Vec::new();
        for spec in specs {
            let started = Instant::now();
            match load_zone(spec) {
                Ok(zone) => {
                    tracing::info!(
                        zone = %spec.origin,
                        serial = zone.serial(),
                        records = zone.record_count,
                        names = zone.name_count(),
                        ms = started.elapsed().as_millis() as u64,
                        "zone loaded"
                    );
                    let files = zone.files.clone();
                    slots.push(Slot {
                        spec: spec.clone(),
                        fingerprint: fingerprint(&files),
                        files,
                    });
                    catalog.insert(Arc::new(zone));
                }
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let zones = Zones {
            slots,
            responder,
            catalog: Arc::new(ArcSwap::from_pointee(catalog)),
            stats,
        };
        let all = zones.catalog.load().zones().cloned().collect();
        precompile_in_background(all, zones.responder.clone(), zones.origins());
        Ok(zones)
    }

    fn origins(&self) -> Vec<Name> {
        self.slots.iter().map(|s| s.spec.origin.clone()).collect()
    }

    /// The live catalog, shared with the transports.
    pub fn catalog(&self) -> Arc<ArcSwap<Catalog>> {
        self.catalog.clone()
    }

    /// Reloads every zone (SIGHUP). Returns how many failed.
    pub fn reload_all(&mut self) -> usize {
        let all: Vec<usize> = (0..self.slots.len()).collect();
        self.reload(&all)
    }

    /// Reloads the zones whose files changed since they were last loaded.
    pub fn reload_changed(&mut self) -> usize {
        let changed: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.spec.file.is_some() && fingerprint(&s.files) != s.fingerprint)
            .map(|(i, _)| i)
            .collect();
        if changed.is_empty() {
            return 0;
        }
        self.reload(&changed)
    }

    fn reload(&mut self, which: &[usize]) -> usize {
        let current = self.catalog.load_full();
        let mut next = (*current).clone();
        let mut failed = 0;
        let mut fresh = Vec::new();
        for &i in which {
            let slot = &mut self.slots[i];
            // Take the fingerprint before reading, so an edit during the read is seen next time.
            let before = fingerprint(&slot.files);
            match load_zone(&slot.spec) {
                Ok(zone) => {
                    if let Some(old) = current.get(&slot.spec.origin) {
                        warn_serial(&slot.spec.origin, old.serial(), zone.serial());
                    }
                    tracing::info!(
                        zone = %slot.spec.origin,
                        serial = zone.serial(),
                        records = zone.record_count,
                        "zone reloaded"
                    );
                    slot.files = zone.files.clone();
                    slot.fingerprint = if before.len() == slot.files.len() {
                        before
                    } else {
                        fingerprint(&slot.files)
                    };
                    let zone = Arc::new(zone);
                    fresh.push(zone.clone());
                    next.insert(zone);
                }
                Err(e) => {
                    failed += 1;
                    bump(&self.stats.zone_load_failures);
                    // Remember the broken version so the watcher does not retry it every tick.
                    slot.fingerprint = before;
                    tracing::error!(
                        "{e}\n  the previous version of zone {} keeps serving",
                        slot.spec.origin
                    );
                }
            }
        }
        bump(&self.stats.reloads);
        self.catalog.store(Arc::new(next));
        precompile_in_background(fresh, self.responder.clone(), self.origins());
        failed
    }
}

/// RFC 1982 serial arithmetic: secondaries ignore a zone whose serial did not increase.
fn warn_serial(origin: &Name, old: u32, new: u32) {
    let diff = new.wrapping_sub(old);
    if diff == 0 {
        return;
    }
    if diff >= 0x8000_0000 {
        tracing::warn!(
            zone = %origin,
            "serial went backwards from {old} to {new}: secondaries will keep the old data; \
             raise the serial above {old}"
        );
    }
}
