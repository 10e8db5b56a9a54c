//! The served cubes: per cube a slot holding its current snapshot behind an atomic pointer.
//!
//! INVARIANTS
//! - A snapshot is immutable once published. A request loads the slot's pointer once and answers
//!   from that snapshot only, so a query in flight during a swap finishes on the snapshot it
//!   started with, and every answer comes from exactly one snapshot (its `meta.snapshot`).
//! - Snapshot versions are unique for the life of the server (one counter for all cubes), so
//!   the query cache, keyed by cube and version, never serves an answer of a replaced snapshot.
//! - At most one build per cube is in progress ([`Registry::begin_build`]); a slot's pointer is
//!   only swapped by the build that holds that cube's ticket.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use lattice_engine::query::Dataset;
use lattice_engine::source::load::SourceFingerprint;
use serde::Serialize;
use utoipa::ToSchema;

use crate::build::Built;
use crate::info::{BuildInfo, CubeInfo};

/// One built cube as served: never changed after it is published.
#[derive(Debug)]
pub struct Snapshot {
    /// The cube opened for reading, shared with anything that answers from this snapshot
    /// (other API front ends too).
    pub cube: Arc<Dataset>,
    pub info: CubeInfo,
    pub yaml: String,
}

impl Snapshot {
    /// Numbers `built` as snapshot `version` and computes its metadata.
    pub fn new(built: Built, version: u64) -> Snapshot {
        let cube = built.data.with_version(version);
        let build = BuildInfo {
            seconds: built.seconds,
            served_since: unix_now(),
            cuboids: cube.cuboids.len(),
            cells: cube.cuboids.iter().map(|c| c.len()).sum(),
            bytes: cube.memory_bytes(),
            fact_rows: built.fact_rows,
            base_rows: (0..cube.model.facts.len()).map(|f| cube.base_rows(f)).sum(),
            base_bytes: cube.base_bytes(),
            learned: built.learned.clone(),
            merged: built.merged,
        };
        let info = CubeInfo::new(&cube, build, &built.origin, built.sources);
        Snapshot {
            cube: Arc::new(cube),
            info,
            yaml: built.yaml,
        }
    }
}

/// How the last reload of a cube went.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReloadOutcome {
    /// Seconds since the Unix epoch.
    pub at: u64,
    /// `put` (a request), `file` (an edit on disk), `refresh` (a request to refresh) or
    /// `sources` (the watcher saw the source files change).
    pub trigger: &'static str,
    pub ok: bool,
    /// The snapshot now serving when it went well.
    pub version: Option<u64>,
    /// The error document (as a failed `PUT` gets it) when it did not.
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
}

/// A file's modification time and length, to notice edits.
pub type FileStamp = (SystemTime, u64);

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// One served cube.
#[derive(Debug)]
pub struct Slot {
    pub name: String,
    /// The definition file, when the cube has one (a reload writes it; the watcher reads it).
    pub path: Option<PathBuf>,
    pub current: ArcSwap<Snapshot>,
    pub last_reload: Mutex<Option<ReloadOutcome>>,
    /// The file as the watcher last saw it.
    pub seen: Mutex<Option<FileStamp>>,
    /// The sources as the watcher last saw them, and as it last refreshed the cube for.
    pub sources_seen: Mutex<SourcesSeen>,
}

/// What the watcher knows of a cube's source files.
#[derive(Debug, Default)]
pub struct SourcesSeen {
    /// Their fingerprints at the last tick: a change is acted on once it holds for a tick
    /// (a file still being written is not read).
    pub last: Option<Vec<SourceFingerprint>>,
    /// The fingerprints a refresh was last started for (not started again if it failed).
    pub tried: Option<Vec<SourceFingerprint>>,
}

impl Slot {
    pub fn new(snapshot: Snapshot, path: Option<PathBuf>) -> Slot {
        let seen = path.as_deref().and_then(stamp);
        Slot {
            name: snapshot.info.name.clone(),
            path,
            current: ArcSwap::from_pointee(snapshot),
            last_reload: Mutex::new(None),
            sources_seen: Mutex::new(SourcesSeen::default()),
            seen: Mutex::new(seen),
        }
    }

    /// The snapshot serving now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

/// Every served cube, and the builds in progress.
#[derive(Debug, Default)]
pub struct Registry {
    slots: ArcSwap<BTreeMap<String, Arc<Slot>>>,
    versions: AtomicU64,
    /// Cube name -> the definition text being built.
    building: Mutex<HashMap<String, String>>,
}

/// The right to build one cube; dropping it ends the build (done or not).
#[derive(Debug)]
pub struct BuildTicket {
    registry: Arc<Registry>,
    pub name: String,
}

impl Drop for BuildTicket {
    fn drop(&mut self) {
        lock(&self.registry.building).remove(&self.name);
    }
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.load().get(name).cloned()
    }

    pub fn slots(&self) -> Vec<Arc<Slot>> {
        self.slots.load().values().cloned().collect()
    }

    pub fn names(&self) -> Vec<String> {
        self.slots.load().keys().cloned().collect()
    }

    /// The cube `name` serves now.
    pub fn cube(&self, name: &str) -> Option<Arc<Dataset>> {
        self.get(name).map(|s| s.load().cube.clone())
    }

    /// A version number never given before.
    pub fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Serves a new cube (or replaces the slot of one with the same name).
    pub fn insert(&self, slot: Slot) -> Arc<Slot> {
        let slot = Arc::new(slot);
        self.slots.rcu(|map| {
            let mut map = BTreeMap::clone(map);
            map.insert(slot.name.clone(), slot.clone());
            map
        });
        slot
    }

    /// Starts a build of `name` from `text`, unless one is in progress.
    pub fn begin_build(self: &Arc<Self>, name: &str, text: &str) -> Option<BuildTicket> {
        let mut building = lock(&self.building);
        if building.contains_key(name) {
            return None;
        }
        building.insert(name.to_string(), text.to_string());
        Some(BuildTicket {
            registry: self.clone(),
            name: name.to_string(),
        })
    }

    /// Whether `text` is the definition being built for `name`.
    pub fn is_building(&self, name: &str, text: &str) -> bool {
        lock(&self.building).get(name).is_some_and(|t| t == text)
    }

    pub fn builds_in_progress(&self) -> usize {
        lock(&self.building).len()
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (plain values, each write
/// complete).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
