//! A cube's snapshots kept as versions side by side, so that a reader always has the newest
//! one that matches its definition and data, and a writer never disturbs the one being read.
//!
//! ```text
//! SNAPDIR/<cube>/20261207T051500.123Z-1a2b3c4d/   a version: UTC time written, then the first
//!                                                  8 hex digits of the definition's sha256
//! SNAPDIR/<cube>/.20261207T051502.007Z-1a2b3c4d.tmp-4242/   being written by process 4242
//! SNAPDIR/<cube>/damaged/20261201T000000.000Z-1a2b3c4d/     set aside by a reader: never
//!                                                  read again, never deleted by Lattice
//! ```
//!
//! Version names sort by time as text (fixed width), so the newest is the greatest; a writer
//! that finds its clock at or behind the newest version takes the newest's time plus a
//! millisecond. [`write_version`] writes through [`super::write`] (a temporary folder beside
//! the version, fsynced, renamed into place), then keeps the newest [`KEEP`] versions and the
//! one being served. [`find_newest`] tries the versions newest first: one of another definition
//! or other data is skipped (the reason is returned for the caller to log); a damaged one
//! (unparsable manifest, unknown format version, a file missing, truncated or with another
//! checksum) is moved into `damaged/` and skipped, so it is never served and a person can
//! look at it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate};
use lattice_defs::Model;
use serde_json::Value;

use super::{
    MANIFEST, SnapshotInfo, definition_hash, io, manifest, read, recorded_sources,
    remove_dir_if_there, sources_change, sync_dir, write,
};
use crate::error::Result;
use crate::store::Cube;

/// Versions kept per cube by default: the newest three (and the one being served).
pub const KEEP: usize = 3;
/// The folder damaged versions are moved into, inside the cube's folder.
pub const DAMAGED: &str = "damaged";

/// Characters of a version name before the definition hash: `20261207T051500.123Z`.
const TIME_CHARS: usize = 20;
/// Hex digits of the definition's sha256 in a version name.
const HASH_CHARS: usize = 8;

/// A version written by [`write_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenVersion {
    /// The version's name (its folder's name).
    pub version: String,
    pub info: SnapshotInfo,
    /// Older versions removed to keep [`KEEP`] (or the number asked for).
    pub removed: Vec<PathBuf>,
    /// Temporary folders of interrupted writers removed before writing.
    pub leftovers: Vec<PathBuf>,
}

/// A version that [`find_newest`] did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub version: String,
    /// Why: the definition or a source that changed, or the damage found.
    pub reason: String,
    /// Where a damaged version was moved (`damaged/<version>`); `None` for one that only does
    /// not match, which stays where it is.
    pub moved_to: Option<PathBuf>,
}

/// The version [`find_newest`] loaded.
#[derive(Debug)]
pub struct Found {
    pub cube: Cube,
    pub version: String,
    pub dir: PathBuf,
    /// When it was written (from its name).
    pub written_at: SystemTime,
    /// The fingerprints of the sources it was made from, as its manifest records them.
    pub sources: Value,
}

/// What [`find_newest`] found: the newest matching version, if any, and every newer one it
/// passed over.
#[derive(Debug)]
pub struct Search {
    pub found: Option<Found>,
    pub skipped: Vec<Skipped>,
}

/// The name of a version written at `at` from a definition with sha256 `definition_sha256`.
pub fn version_name(at: SystemTime, definition_sha256: &str) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let time = DateTime::from_timestamp(secs, since.subsec_millis() * 1_000_000)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%S%.3fZ");
    let hash: String = definition_sha256.chars().take(HASH_CHARS).collect();
    format!("{time}-{hash}")
}

/// When the version `name` was written, or `None` when `name` is not a version's name.
pub fn version_time(name: &str) -> Option<SystemTime> {
    let b = name.as_bytes();
    let shape = b.len() == TIME_CHARS + 1 + HASH_CHARS
        && b[8] == b'T'
        && b[15] == b'.'
        && b[19] == b'Z'
        && b[20] == b'-'
        && b[TIME_CHARS + 1..].iter().all(u8::is_ascii_hexdigit);
    if !shape {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let digits = name.get(from..to)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let time = NaiveDate::from_ymd_opt(year, num(4, 6)?, num(6, 8)?)?.and_hms_milli_opt(
        num(9, 11)?,
        num(11, 13)?,
        num(13, 15)?,
        num(16, 19)?,
    )?;
    let millis = u64::try_from(time.and_utc().timestamp_millis()).ok()?;
    Some(UNIX_EPOCH + Duration::from_millis(millis))
}

/// The versions in `cube_dir`, oldest first (an absent folder has none).
pub fn versions(cube_dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(cube_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(cube_dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io(cube_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if version_time(&name).is_some() && entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `cube` as a new version in `cube_dir` (see [`super::write`] for `sources`), then
/// removes all but the newest `keep` versions (at least one), never `serving` (the folder of
/// the version being served, when there is one). Temporary folders that interrupted writers
/// left in `cube_dir` are removed first.
pub fn write_version(
    cube: &Cube,
    definition_text: &str,
    sources: &Value,
    cube_dir: &Path,
    keep: usize,
    serving: Option<&Path>,
) -> Result<WrittenVersion> {
    std::fs::create_dir_all(cube_dir).map_err(|e| io(cube_dir, e))?;
    let leftovers = remove_leftovers(cube_dir)?;
    let existing = versions(cube_dir)?;
    let mut at = SystemTime::now();
    if let Some(newest) = existing.last().and_then(|v| version_time(v))
        && at < newest + Duration::from_millis(1)
    {
        at = newest + Duration::from_millis(1);
    }
    let version = version_name(at, &definition_hash(definition_text));
    let info = write(cube, definition_text, sources, &cube_dir.join(&version))?;
    let removed = prune(cube_dir, keep, serving)?;
    Ok(WrittenVersion {
        version,
        info,
        removed,
        leftovers,
    })
}

/// Removes all but the newest `keep` versions of `cube_dir` (at least one is kept), never
/// `serving`; the folders removed.
pub fn prune(cube_dir: &Path, keep: usize, serving: Option<&Path>) -> Result<Vec<PathBuf>> {
    let all = versions(cube_dir)?;
    let old = all.len().saturating_sub(keep.max(1));
    let mut removed = Vec::new();
    for name in &all[..old] {
        let dir = cube_dir.join(name);
        if serving.is_some_and(|s| same_folder(s, &dir)) {
            continue;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        removed.push(dir);
    }
    if !removed.is_empty() {
        sync_dir(cube_dir)?;
    }
    Ok(removed)
}

fn same_folder(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// Removes the temporary folders (`.<version>.tmp-<pid>`, `.<version>.old-<pid>`) of writers
/// that are no longer running (Linux's `/proc` tells; elsewhere every one is taken as
/// abandoned); the folders removed.
pub fn remove_leftovers(cube_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(cube_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(cube_dir, e)),
    };
    let own = std::process::id();
    let running = |pid: u32| pid != own && Path::new(&format!("/proc/{pid}/stat")).exists();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temporary_of(&name) else {
            continue;
        };
        if running(pid) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        remove_dir_if_there(&path)?;
        removed.push(path);
    }
    Ok(removed)
}

/// The pid of a writer's temporary folder name, `.<version>.tmp-<pid>` or `.<version>.old-<pid>`.
fn temporary_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (version, pid) = rest
        .rsplit_once(".tmp-")
        .or_else(|| rest.rsplit_once(".old-"))?;
    version_time(version)?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The newest version in `cube_dir` written from `definition_text` (which `model` is parsed
/// from) over sources with these fingerprints (any, when `None`: a refresh starts from the
/// newest of the definition), read back. Newer versions that do not match are
/// skipped with the reason; damaged ones are moved into `damaged/` (see the module docs).
/// Temporary folders of interrupted writers are never read. An error is only for a cube folder
/// that cannot be listed, or a damaged version that cannot be moved aside.
pub fn find_newest(
    cube_dir: &Path,
    model: &Model,
    definition_text: &str,
    sources: Option<&Value>,
) -> Result<Search> {
    let accept = |recorded: &Value| sources.and_then(|s| sources_change(recorded, s));
    find_newest_where(cube_dir, model, definition_text, &accept)
}

/// [`find_newest`] of the versions whose recorded sources `accept` takes (it says why not,
/// else `None`); asked of each version's manifest before any of its data is read.
pub fn find_newest_where(
    cube_dir: &Path,
    model: &Model,
    definition_text: &str,
    accept: &dyn Fn(&Value) -> Option<String>,
) -> Result<Search> {
    let mut skipped = Vec::new();
    for version in versions(cube_dir)?.into_iter().rev() {
        let dir = cube_dir.join(&version);
        match try_version(&dir, model, definition_text, accept) {
            Ok((cube, sources)) => {
                let written_at = version_time(&version).unwrap_or(UNIX_EPOCH);
                return Ok(Search {
                    found: Some(Found {
                        cube,
                        version,
                        dir,
                        written_at,
                        sources,
                    }),
                    skipped,
                });
            }
            Err(Refusal::Mismatch(reason)) => skipped.push(Skipped {
                version,
                reason,
                moved_to: None,
            }),
            Err(Refusal::Damaged(reason)) => {
                let moved_to = set_aside(cube_dir, &version)?;
                skipped.push(Skipped {
                    version,
                    reason,
                    moved_to: Some(moved_to),
                });
            }
        }
    }
    Ok(Search {
        found: None,
        skipped,
    })
}

/// Why a version was not read.
enum Refusal {
    /// Sound, but of another definition or other data.
    Mismatch(String),
    /// Not to be trusted: the manifest or a file is not what was written.
    Damaged(String),
}

/// Reads one version, telling a mismatch (checked on the manifest alone, before any file is
/// read) from damage.
fn try_version(
    dir: &Path,
    model: &Model,
    definition_text: &str,
    accept: &dyn Fn(&Value) -> Option<String>,
) -> std::result::Result<(Cube, Value), Refusal> {
    let path = dir.join(MANIFEST);
    let damaged = |e: crate::error::EngineError| Refusal::Damaged(e.to_string());
    let text = std::fs::read_to_string(&path).map_err(|e| damaged(io(&path, e)))?;
    let manifest = manifest::parse(&path, &text).map_err(damaged)?;
    let now = definition_hash(definition_text);
    if manifest.definition_sha256 != now {
        return Err(Refusal::Mismatch(format!(
            "written from another definition (sha256 {}, the definition's is now {now})",
            manifest.definition_sha256
        )));
    }
    let recorded = recorded_sources(&path, &text).map_err(damaged)?;
    if let Some(change) = accept(&recorded) {
        return Err(Refusal::Mismatch(change));
    }
    let cube = read(dir, model.clone(), definition_text, &recorded).map_err(damaged)?;
    Ok((cube, recorded))
}

/// Moves the version `name` into `cube_dir/damaged/` (under a free name), durably; where it
/// went.
fn set_aside(cube_dir: &Path, name: &str) -> Result<PathBuf> {
    let damaged = cube_dir.join(DAMAGED);
    std::fs::create_dir_all(&damaged).map_err(|e| io(&damaged, e))?;
    let mut target = damaged.join(name);
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = damaged.join(format!("{name}-{n}"));
    }
    let from = cube_dir.join(name);
    std::fs::rename(&from, &target).map_err(|e| io(&from, e))?;
    sync_dir(&damaged)?;
    sync_dir(cube_dir)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    //! Names, pruning and setting aside, on folders alone; `tests/it/snapshots.rs` writes and
    //! reads real cubes through a server and the CLI.

    use super::*;

    fn model() -> Model {
        let yaml = "version: 1\ncube: c\nsources:\n  f: { path: f.csv }\nfacts:\n  f: { time: d, dimensions: [] }\ndimensions:\n  time: { type: time, hierarchy: [year] }\nmeasures:\n  n: { fact: f, agg: count }\n";
        lattice_defs::parse_str(yaml, "c.yaml", Path::new("."))
            .unwrap_or_else(|e| panic!("definition: {e:?}"))
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_version_name_says_when_and_sorts_by_time() {
        let at = UNIX_EPOCH + Duration::from_millis(1_796_620_500_123);
        let name = version_name(at, "1a2b3c4d5e6f");
        assert_eq!(name, "20261207T051500.123Z-1a2b3c4d");
        assert_eq!(version_time(&name), Some(at));
        let later = version_name(at + Duration::from_millis(1), "00000000");
        assert!(later > name, "{later} sorts after {name}");
        for not in [
            "damaged",
            "20261202T051500.123Z",
            "20261202T051500.123Z-1a2b3c4x",
            "20261302T051500.123Z-1a2b3c4d",
            ".20261202T051500.123Z-1a2b3c4d.tmp-12",
        ] {
            assert_eq!(version_time(not), None, "{not}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_one_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let all: Vec<String> = (0..5)
            .map(|i| version_name(UNIX_EPOCH + Duration::from_secs(i), "ab12cd34"))
            .collect();
        for v in &all {
            std::fs::create_dir(dir.path().join(v)).expect("mkdir");
        }
        std::fs::create_dir(dir.path().join(DAMAGED)).expect("mkdir");
        let removed = prune(dir.path(), 2, Some(&dir.path().join(&all[1]))).expect("prune");
        assert_eq!(
            removed,
            vec![dir.path().join(&all[0]), dir.path().join(&all[2])]
        );
        assert_eq!(
            names(dir.path()),
            vec![
                all[1].clone(),
                all[3].clone(),
                all[4].clone(),
                DAMAGED.to_string()
            ]
        );
    }

    #[test]
    fn temporaries_of_dead_writers_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = version_name(UNIX_EPOCH, "ab12cd34");
        // Past Linux's pid_max: no such process.
        let dead = [
            format!(".{v}.tmp-4000000000"),
            format!(".{v}.old-4000000001"),
        ];
        let kept = [
            v.clone(),
            format!(".{v}.tmp-"),
            format!(".{v}.tmp-x"),
            ".notes.tmp-4000000000".to_string(),
            DAMAGED.to_string(),
        ];
        for name in dead.iter().chain(&kept) {
            std::fs::create_dir(dir.path().join(name)).expect("mkdir");
        }
        let removed = remove_leftovers(dir.path()).expect("clean");
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut expected = kept.to_vec();
        expected.sort();
        assert_eq!(names(dir.path()), expected);
    }

    #[test]
    fn a_damaged_version_is_set_aside_and_an_absent_folder_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "not used: the manifest fails first";
        let search = find_newest(
            &dir.path().join("absent"),
            &model(),
            text,
            Some(&Value::Null),
        )
        .expect("search");
        assert!(search.found.is_none() && search.skipped.is_empty());
        let v = version_name(UNIX_EPOCH, "ab12cd34");
        std::fs::create_dir(dir.path().join(&v)).expect("mkdir");
        std::fs::write(dir.path().join(&v).join(MANIFEST), "{ not json").expect("write");
        // A second damaged copy of the same name lands beside the first.
        std::fs::create_dir_all(dir.path().join(DAMAGED).join(&v)).expect("mkdir");
        let search = find_newest(dir.path(), &model(), text, Some(&Value::Null)).expect("search");
        assert!(search.found.is_none());
        let [skipped] = &search.skipped[..] else {
            panic!("one skipped: {:?}", search.skipped);
        };
        assert_eq!(skipped.version, v);
        assert!(
            skipped.reason.contains("is not a snapshot manifest"),
            "{}",
            skipped.reason
        );
        let moved = dir.path().join(DAMAGED).join(format!("{v}-2"));
        assert_eq!(skipped.moved_to.as_deref(), Some(moved.as_path()));
        assert!(moved.join(MANIFEST).is_file());
        assert_eq!(names(dir.path()), vec![DAMAGED.to_string()]);
    }
}
