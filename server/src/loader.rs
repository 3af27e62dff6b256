//! Loading zones from files into snapshots, and reloading them without losing service.
//!
//! A reload builds every zone anew; a zone that fails keeps serving its previous snapshot
//! and the error is logged with file and line. The new catalog is swapped in whole, so a
//! query sees either the old or the new version of a zone, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::ZoneSpec;
use crate::proto::name::Name;
use crate::query::answer::Responder;
use crate::stats::{bump, PanicSite, Stats};
use crate::zone::catalog::Catalog;
use crate::zone::zonefile;
use crate::zone::{Zone, ZoneError};

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
    #[error(
        "zone {origin}: loading panicked: {message} (a bug: please report it with the zone file)"
    )]
    Panicked { origin: Name, message: String },
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
    #[cfg(test)]
    if records
        .iter()
        .any(|r| r.owner.as_wire().starts_with(crate::INJECT_PANIC))
    {
        panic!("panic injected by a test");
    }
    let parsed = started.elapsed();
    let (zone, warnings) =
        Zone::build_with_sizes(&spec.origin, records, &spec.sizes).map_err(|errors| {
            LoadError::Invalid {
                origin: spec.origin.clone(),
                errors,
            }
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
pub fn precompile_in_background(
    zones: Vec<Arc<Zone>>,
    responder: Responder,
    origins: Vec<Name>,
    stats: Arc<Stats>,
) {
    if zones.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("precompile".into())
        .spawn(move || precompile_zones(&zones, &responder, &origins, &stats));
    if let Err(e) = spawned {
        // Not fatal: the full path answers everything, only slower.
        tracing::warn!("cannot start the precompile thread: {e}");
    }
}

/// Precompiles each zone in turn. A zone whose precompiling panics is left to the full
/// path — correct answers, only slower — and the panic is counted and logged; the other
/// zones are still precompiled. Nothing is shared with the serving threads but the zone,
/// which is immutable apart from the one-shot install that a panic never reaches.
pub(crate) fn precompile_zones(
    zones: &[Arc<Zone>],
    responder: &Responder,
    origins: &[Name],
    stats: &Stats,
) {
    for zone in zones {
        if zone.is_patched() || zone.is_precompiled() {
            // A patched version keeps its base's answers (and is compacted by its
            // publisher); a precompiled one has them.
            continue;
        }
        let started = Instant::now();
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::query::fastpath::precompile(zone, responder, origins)
        }));
        let report = match run {
            Ok(report) => report,
            Err(payload) => {
                stats.count_panic(PanicSite::Precompile);
                tracing::error!(
                    zone = %zone.origin,
                    "precompiling the answers panicked: {}; the zone is answered by the full \
                     path (a bug: please report it with the zone file)",
                    panic_message(&*payload)
                );
                continue;
            }
        };
        if let Some((owner, rtype, error)) = &report.first_refused {
            stats
                .precompile_refused
                .fetch_add(report.refused, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                zone = %zone.origin,
                "{} answer(s) cannot be written from the zone data and are answered SERVFAIL, \
                 the first for {owner} {}: {error}",
                report.refused,
                crate::proto::rr::type_name(*rtype)
            );
        }
        tracing::debug!(
            zone = %zone.origin,
            ms = started.elapsed().as_millis() as u64,
            bytes = zone.heap_bytes(),
            "answers precompiled"
        );
    }
    trim_allocator();
}

/// The message of a panic payload (what `panic!` was given), for the log.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
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
    /// Zones that take dynamic updates: [`crate::dynamic`] rereads their files (as a
    /// difference against the served zone), so reloads here leave them alone.
    managed: Vec<Name>,
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
                    crate::zone::withheld::announce(&stats, &spec.origin, None, &zone);
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
            managed: Vec::new(),
        };
        let all = zones.catalog.load().zones().cloned().collect();
        precompile_in_background(
            all,
            zones.responder.clone(),
            zones.origins(),
            zones.stats.clone(),
        );
        Ok(zones)
    }

    fn origins(&self) -> Vec<Name> {
        self.slots.iter().map(|s| s.spec.origin.clone()).collect()
    }

    /// The live catalog, shared with the transports.
    pub fn catalog(&self) -> Arc<ArcSwap<Catalog>> {
        self.catalog.clone()
    }

    /// Leaves these zones to [`crate::dynamic`] from now on.
    pub fn manage(&mut self, origins: &[Name]) {
        self.managed.extend(origins.iter().map(Name::to_lowercase));
    }

    fn is_managed(&self, slot: &Slot) -> bool {
        self.managed
            .iter()
            .any(|o| o.eq_ignore_case(&slot.spec.origin))
    }

    /// Reloads every zone (SIGHUP). Returns how many failed.
    /// Runs `f` (a reload: it parses files and builds snapshots, seconds for a large zone)
    /// with the zones moved to the blocking pool and back, so that no runtime thread is
    /// held meanwhile. A panic in `f` is passed on once the zones are back.
    pub async fn off_runtime<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Zones) -> R + Send + 'static,
    ) -> R {
        let mut owned = Zones {
            slots: std::mem::take(&mut self.slots),
            managed: std::mem::take(&mut self.managed),
            responder: self.responder.clone(),
            catalog: self.catalog.clone(),
            stats: self.stats.clone(),
        };
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut owned)));
            (owned, r)
        })
        .await
        .expect("the closure's panics are caught");
        *self = back;
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    pub fn reload_all(&mut self) -> usize {
        let all: Vec<usize> = (0..self.slots.len())
            .filter(|&i| !self.is_managed(&self.slots[i]))
            .collect();
        self.reload(&all)
    }

    /// Reloads one zone from its file (`musterd ctl reload ZONE`). `None` when this loader
    /// does not load it (not configured, or its updates task rereads it); else how many
    /// failed (0 or 1).
    pub fn reload_zone(&mut self, origin: &Name) -> Option<usize> {
        let i = self
            .slots
            .iter()
            .position(|s| s.spec.origin.eq_ignore_case(origin) && !self.is_managed(s))?;
        Some(self.reload(&[i]))
    }

    /// The zone file of a configured zone.
    pub fn file_of(&self, origin: &Name) -> Option<PathBuf> {
        self.slots
            .iter()
            .find(|s| s.spec.origin.eq_ignore_case(origin))
            .and_then(|s| s.spec.file.clone())
    }

    /// Reloads the zones whose files changed since they were last loaded.
    pub fn reload_changed(&mut self) -> usize {
        let changed: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.spec.file.is_some()
                    && !self.is_managed(s)
                    && fingerprint(&s.files) != s.fingerprint
            })
            .map(|(i, _)| i)
            .collect();
        if changed.is_empty() {
            return 0;
        }
        self.reload(&changed)
    }

    fn reload(&mut self, which: &[usize]) -> usize {
        let current = self.catalog.load_full();
        let mut failed = 0;
        let mut fresh = Vec::new();
        for &i in which {
            let slot = &mut self.slots[i];
            // Take the fingerprint before reading, so an edit during the read is seen next time.
            let before = fingerprint(&slot.files);
            match load_contained(&slot.spec, &self.stats) {
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
                    let serving = current.get(&slot.spec.origin).map(|z| &**z);
                    crate::zone::withheld::announce(&self.stats, &slot.spec.origin, serving, &zone);
                    slot.files = zone.files.clone();
                    slot.fingerprint = if before.len() == slot.files.len() {
                        before
                    } else {
                        fingerprint(&slot.files)
                    };
                    let zone = Arc::new(zone);
                    fresh.push(zone);
                    bump(&self.stats.reloads);
                }
                Err(e) => {
                    failed += 1;
                    bump(&self.stats.reload_failures);
                    // Remember the broken version so the watcher does not retry it every tick.
                    slot.fingerprint = before;
                    tracing::error!(
                        "{e}\n  the previous version of zone {} keeps serving",
                        slot.spec.origin
                    );
                }
            }
        }
        // Only the reloaded zones are replaced: an updatable zone's task may have swapped
        // in a new version of its zone meanwhile.
        self.catalog.rcu(|now| {
            let mut merged = (**now).clone();
            for z in &fresh {
                merged.insert(z.clone());
            }
            merged
        });
        precompile_in_background(
            fresh,
            self.responder.clone(),
            self.origins(),
            self.stats.clone(),
        );
        failed
    }
}

/// [`load_zone`] for a reload: a panic while reading or building the zone (a bug, most
/// likely on unusual input) fails this reload like a bad file does, instead of taking down
/// the server that is still serving the previous version.
fn load_contained(spec: &ZoneSpec, stats: &Stats) -> Result<Zone, LoadError> {
    std::panic::catch_unwind(|| load_zone(spec)).unwrap_or_else(|payload| {
        stats.count_panic(PanicSite::Reload);
        Err(LoadError::Panicked {
            origin: spec.origin.clone(),
            message: panic_message(&*payload).to_string(),
        })
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A directory of its own under the system temporary directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "musterd-loader-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn origin() -> Name {
        Name::parse(crate::example::ORIGIN, None).unwrap()
    }

    /// The example zone served from a file in `dir`.
    fn zones(dir: &TempDir) -> (Zones, PathBuf, Arc<Stats>) {
        let file = dir.0.join("example.test.zone");
        std::fs::write(&file, crate::example::ZONE).unwrap();
        let stats = Arc::new(Stats::default());
        let spec = ZoneSpec {
            origin: origin(),
            file: Some(file.clone()),
            sizes: Vec::new(),
        };
        let zones = Zones::load_all(&[spec], stats.clone(), Responder::default()).unwrap();
        (zones, file, stats)
    }

    fn counts(stats: &Stats) -> (u64, u64) {
        (
            stats.reloads.load(Ordering::Relaxed),
            stats.reload_failures.load(Ordering::Relaxed),
        )
    }

    /// Review issue 8: a reload in which the zone failed was counted as a reload too.
    #[test]
    fn reloads_count_successes_and_failures_apart() {
        let dir = TempDir::new("counts");
        let (mut zones, file, stats) = zones(&dir);
        assert_eq!(counts(&stats), (0, 0), "the first load is not a reload");
        assert_eq!(zones.reload_all(), 0);
        assert_eq!(counts(&stats), (1, 0));
        std::fs::write(&file, format!("{}broken IN A\n", crate::example::ZONE)).unwrap();
        assert_eq!(zones.reload_all(), 1);
        assert_eq!(counts(&stats), (1, 1));
        std::fs::write(&file, crate::example::ZONE).unwrap();
        assert_eq!(zones.reload_all(), 0);
        assert_eq!(counts(&stats), (2, 1));
    }

    /// A panic while loading a zone on reload fails that reload; the server and the
    /// previous version of the zone carry on.
    #[test]
    fn a_reload_that_panics_fails_like_a_bad_file() {
        let dir = TempDir::new("panic");
        let (mut zones, file, stats) = zones(&dir);
        let before = zones.catalog().load().get(&origin()).unwrap().clone();
        std::fs::write(
            &file,
            format!("{}inject-panic IN A 10.0.0.1\n", crate::example::ZONE),
        )
        .unwrap();
        assert_eq!(zones.reload_all(), 1);
        assert_eq!(counts(&stats), (0, 1));
        assert_eq!(stats.panics_at(PanicSite::Reload), 1);
        let after = zones.catalog().load().get(&origin()).unwrap().clone();
        assert!(Arc::ptr_eq(&before, &after), "the previous version serves");
    }

    /// A zone whose precompiling panics is left to the full path, the panic is counted,
    /// and the next zone is still precompiled.
    #[test]
    fn a_zone_whose_precompiling_panics_is_skipped_and_counted() {
        let build = |origin: &str, extra: &str| {
            let origin = Name::parse(origin, None).unwrap();
            let text = format!(
                "$ORIGIN {origin}\n$TTL 30\n@ IN SOA ns1 h 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 10.0.0.1\n{extra}"
            );
            let records = zonefile::parse_str(&text, Path::new("t.zone"), &origin).unwrap();
            Arc::new(Zone::build(&origin, records).unwrap().0)
        };
        // Parsed and built directly: `load_zone` would panic on the injected name itself.
        let bad = build("bad.test.", "inject-panic IN A 10.0.0.2\n");
        let good = build("good.test.", "");
        let stats = Stats::default();
        let origins = [bad.origin.clone(), good.origin.clone()];
        precompile_zones(
            &[bad.clone(), good.clone()],
            &Responder::default(),
            &origins,
            &stats,
        );
        assert_eq!(stats.panics_at(PanicSite::Precompile), 1);
        assert!(bad.nodes().all(|n| n.prebuilt().is_none()));
        assert!(good.apex().prebuilt().is_some());
    }
}
