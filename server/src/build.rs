//! From definition text to a cube ready to serve, the same way at start (the CLI calls
//! [`build_definition`]) and on every reload; and the atomic write of an accepted definition.
//!
//! With a snapshot folder ([`Snapshots`]), [`build_or_load`] first looks for the newest
//! snapshot of the cube written from the same definition over the same source files, and
//! serves it instead of building; otherwise it builds and writes a new snapshot before the cube
//! is served (`lattice_engine::store::snapshot::versions`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lattice_defs::Model;
use lattice_engine::EngineError;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Dataset;
use lattice_engine::source::load::{self, SourceFingerprint};
use lattice_engine::store::snapshot::versions;

use crate::error::BuildError;
use crate::info::SnapshotRef;

/// A cube built from a definition (or loaded from a snapshot of it), not yet serving.
#[derive(Debug)]
pub struct Built {
    /// The cube opened over its sources (snapshot 1 until the registry numbers it).
    pub data: Dataset,
    /// The definition's text, as served by `GET .../definition`.
    pub yaml: String,
    /// Wall time of loading and building (or of reading the snapshot and loading the sources).
    pub seconds: f64,
    /// Raw fact rows read (none when loaded from a snapshot).
    pub fact_rows: u64,
    /// How the cube was made.
    pub origin: Origin,
    /// The sources' fingerprints, taken before the build or checked against the snapshot.
    pub sources: Vec<SourceFingerprint>,
    /// The cuboids this build added for questions the cube it replaces answered without a
    /// cuboid ([`BuildOptions::learned`]): their levels, and the questions they serve.
    pub learned: Vec<LearnedCuboid>,
    /// For a refresh, how its cuboids were made from the cube it refreshed.
    pub merged: Option<CuboidsMerged>,
}

/// How a refresh made its cuboids from the cube it refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct CuboidsMerged {
    /// Merged with the cells of the new rows alone.
    pub combined: usize,
    /// Their cells in the time members a changed band touches built again, the rest kept.
    pub replaced: usize,
    /// Built from every base row (new, or showing a level that changed everywhere).
    pub rebuilt: usize,
}

/// A cuboid a build chose for recorded questions no cuboid answered.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct LearnedCuboid {
    pub fact: String,
    /// Its levels, `dimension.level`.
    pub levels: Vec<String>,
    /// The recorded questions it serves.
    pub questions: u64,
    /// Their time in all before, in milliseconds.
    pub cost_ms: f64,
}

/// How a served cube was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub how: How,
    /// Why a refresh could not be applied and the cube was built in full instead.
    pub rebuilt_because: Option<String>,
    /// When it was made: built (seconds since the Unix epoch), or its snapshot written.
    pub made_at: u64,
    /// The snapshot it was read from, or the one written after the build.
    pub snapshot: Option<SnapshotRef>,
}

/// How a cube came to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Built from all the sources.
    Built,
    /// Read from a snapshot of the same definition and sources.
    Loaded,
    /// An earlier cube with the files added since it was made
    /// (`lattice_engine::build::refresh`).
    Refreshed,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::Built => "built",
            How::Loaded => "loaded",
            How::Refreshed => "refreshed",
        }
    }
}

/// Where a server keeps its snapshots, and how many versions of each cube.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshots {
    /// `<dir>/<cube>/<version>/`.
    pub dir: PathBuf,
    /// Versions kept per cube (besides the one being served).
    pub keep: usize,
}

impl Snapshots {
    /// Snapshots in `dir`, keeping [`versions::KEEP`] versions of each cube.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Snapshots {
        Snapshots {
            dir: dir.into(),
            keep: versions::KEEP,
        }
    }
}

/// The folder relative source paths resolve against: the data folder when given, else the
/// definition's folder.
pub fn base_dir(file: Option<&Path>, data_dir: Option<&Path>) -> PathBuf {
    match (data_dir, file) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(f)) => f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        (None, None) => PathBuf::from("."),
    }
}

/// Validates a definition's text (every error, located; `file` names it in them).
pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Model, BuildError> {
    lattice_defs::parse_str(text, file, base_dir).map_err(BuildError::Invalid)
}

/// Loads the sources of a validated definition (checking them against it) and builds its cube.
/// Runs wherever it is awaited; the server awaits it on its build runtime.
pub async fn build_model(
    model: Model,
    yaml: String,
    options: &BuildOptions,
) -> Result<Built, BuildError> {
    let started = Instant::now();
    let sources = match lattice_engine::build::load_within(&model, options.memory_budget).await {
        Ok(s) => s,
        Err(EngineError::Definition(diags)) => return Err(BuildError::Invalid(diags)),
        Err(e) => return Err(e.into()),
    };
    let (data, report) = lattice_engine::open_with_report(&model, &sources, options).await?;
    // The recorded group-bys the chosen cuboids serve now.
    let learned = report
        .plans
        .iter()
        .filter(|p| p.reason.starts_with("learned"))
        .map(|p| {
            let served: Vec<_> = options
                .learned
                .iter()
                .filter(|l| {
                    model.fact(&l.fact) == Some(p.fact)
                        && l.levels.iter().all(|n| {
                            model.level(n).is_some_and(|want| {
                                lattice_engine::build::select::derives(&model, &p.levels, &[want])
                            })
                        })
                })
                .collect();
            LearnedCuboid {
                fact: model.facts[p.fact].name.clone(),
                levels: p.levels.iter().map(|l| model.level_name(*l)).collect(),
                questions: served.iter().map(|l| l.questions).sum(),
                cost_ms: served.iter().map(|l| l.cost_ms).sum(),
            }
        })
        .collect();
    Ok(Built {
        data,
        yaml,
        seconds: started.elapsed().as_secs_f64(),
        fact_rows: report.fact_rows.iter().sum(),
        origin: Origin {
            how: How::Built,
            rebuilt_because: None,
            made_at: crate::registry::unix_now(),
            snapshot: None,
        },
        sources: Vec::new(),
        learned,
        merged: None,
    })
}

/// [`build_model`], through `snapshots` when given: the newest snapshot of the same definition
/// over the same source files is loaded instead of building (each newer one passed over is
/// logged, with why; damaged ones are moved aside); else the cube is built, and written as a
/// new snapshot before it is returned. `serving`: the folder of the snapshot the cube serves
/// now, which the write never removes. A snapshot that cannot be written is logged, not an
/// error: the cube serves anyway.
pub async fn build_or_load(
    model: Model,
    yaml: String,
    options: &BuildOptions,
    snapshots: Option<&Snapshots>,
    serving: Option<&Path>,
) -> Result<Built, BuildError> {
    // Taken before the build: data changed during it is then seen as changed.
    let fingerprints = load::fingerprint(&model);
    let Some(snapshots) = snapshots else {
        let mut built = build_model(model, yaml, options).await?;
        built.sources = fingerprints;
        return Ok(built);
    };
    let recorded = as_json(&fingerprints)?;
    let cube_dir = snapshots.dir.join(&model.name);
    if let Some(built) = load_snapshot(&model, &yaml, &cube_dir, &recorded, &fingerprints).await? {
        return Ok(built);
    }
    let mut built = match refresh_snapshot(&model, &yaml, &cube_dir, &fingerprints, options).await?
    {
        Ok(built) => built,
        Err(why) => {
            let mut built = build_model(model, yaml, options).await?;
            built.origin.rebuilt_because = why;
            built
        }
    };
    built.sources = fingerprints;
    write_snapshot(&mut built, snapshots, &cube_dir, &recorded, serving);
    Ok(built)
}

/// The cube of `model` made from `prior` (the cube serving, made from sources with the
/// fingerprints `before`, of this definition or an earlier one): a snapshot of this definition
/// over the sources as they are now when `snapshots` has one; else `prior` refreshed
/// ([`refresh`]: only the files added since are read, and `prior`'s base rows reused, which a
/// definition that changes only bands, classes or derived measures allows too); else built in
/// full, saying why. A refreshed or built cube is written as a new snapshot when `snapshots` is
/// given.
pub async fn refresh_or_build(
    model: Model,
    yaml: String,
    options: &BuildOptions,
    snapshots: Option<&Snapshots>,
    serving: Option<&Path>,
    prior: &lattice_engine::store::Cube,
    before: &[SourceFingerprint],
) -> Result<Built, BuildError> {
    let now = load::fingerprint(&model);
    if let Some(snapshots) = snapshots {
        let recorded = as_json(&now)?;
        let cube_dir = snapshots.dir.join(&model.name);
        if let Some(built) = load_snapshot(&model, &yaml, &cube_dir, &recorded, &now).await? {
            return Ok(built);
        }
    }
    let mut built = match refresh(&model, &yaml, prior, before, &now, options).await? {
        Ok(built) => built,
        Err(why) => {
            tracing::info!(cube = %model.name, reason = %why, "cannot refresh; building in full");
            let mut built = build_model(model, yaml, options).await?;
            built.origin.rebuilt_because = Some(why);
            built.sources = now.clone();
            built
        }
    };
    if let Some(snapshots) = snapshots {
        let recorded = as_json(&now)?;
        let cube_dir = snapshots.dir.join(&built.data.model.name);
        write_snapshot(&mut built, snapshots, &cube_dir, &recorded, serving);
    }
    Ok(built)
}

/// Source fingerprints as a snapshot's manifest records them.
fn as_json(fingerprints: &[SourceFingerprint]) -> Result<serde_json::Value, BuildError> {
    serde_json::to_value(fingerprints)
        .map_err(|e| EngineError::Internal(format!("source fingerprints as JSON: {e}")).into())
}

/// Writes `built` as a new version in `cube_dir` and records it in its origin; a snapshot
/// that cannot be written is logged, and the cube serves without one.
fn write_snapshot(
    built: &mut Built,
    snapshots: &Snapshots,
    cube_dir: &Path,
    recorded: &serde_json::Value,
    serving: Option<&Path>,
) {
    let started = Instant::now();
    let name = &built.data.model.name;
    match versions::write_version(
        built.data.cube(),
        &built.yaml,
        recorded,
        cube_dir,
        snapshots.keep,
        serving,
    ) {
        Ok(written) => {
            for dir in &written.leftovers {
                tracing::info!(cube = %name, dir = %dir.display(), "removed the temporary folder of an interrupted snapshot write");
            }
            tracing::info!(cube = %name, version = %written.version, dir = %written.info.dir.display(), bytes = written.info.file_bytes, seconds = started.elapsed().as_secs_f64(), removed = written.removed.len(), "wrote snapshot");
            built.origin.made_at =
                versions::version_time(&written.version).map_or(built.origin.made_at, unix_secs);
            built.origin.snapshot = Some(SnapshotRef {
                version: written.version,
                dir: written.info.dir.display().to_string(),
            });
        }
        Err(e) => {
            tracing::warn!(cube = %name, dir = %cube_dir.display(), error = %e, "cannot write the snapshot; serving the built cube without one");
        }
    }
}

/// The newest snapshot of the definition in `cube_dir` (over whatever sources), refreshed
/// with the files added since; `Err` with why not (logged) when there is none, or its
/// sources changed otherwise than by added files, or the refresh cannot apply them.
async fn refresh_snapshot(
    model: &Model,
    yaml: &str,
    cube_dir: &Path,
    fingerprints: &[SourceFingerprint],
    options: &BuildOptions,
) -> Result<Result<Built, Option<String>>, BuildError> {
    // Only a version whose sources grew by added files is read.
    let refreshable =
        |recorded: &serde_json::Value| load::added_since(model, recorded, fingerprints).err();
    let search = match versions::find_newest_where(cube_dir, model, yaml, &refreshable) {
        Ok(search) => search,
        Err(_) => return Ok(Err(None)),
    };
    let Some(found) = search.found else {
        return Ok(Err(None));
    };
    // The search read them already (`added_since` accepted them).
    let before: Vec<SourceFingerprint> = serde_json::from_value(found.sources.clone())
        .map_err(|e| EngineError::Internal(format!("recorded sources: {e}")))?;
    let refreshed = refresh(model, yaml, &found.cube, &before, fingerprints, options).await?;
    match &refreshed {
        Ok(built) => {
            tracing::info!(cube = %model.name, from = %found.version, seconds = built.seconds, fact_rows = built.fact_rows, "refreshed snapshot with the new files")
        }
        Err(why) => {
            tracing::info!(cube = %model.name, version = %found.version, reason = %why, "snapshot cannot be refreshed; building in full")
        }
    }
    Ok(refreshed.map_err(Some))
}

/// `prior` (a cube of `model`, made from sources with the fingerprints `before`) refreshed
/// with the files added since (`now`): only those are read (`lattice_engine::build::refresh`).
/// `Err` says why the change cannot be refreshed: the caller builds in full.
pub async fn refresh(
    model: &Model,
    yaml: &str,
    prior: &lattice_engine::store::Cube,
    before: &[SourceFingerprint],
    now: &[SourceFingerprint],
    options: &BuildOptions,
) -> Result<Result<Built, String>, BuildError> {
    let started = Instant::now();
    let added = match load::added_files(model, before, now) {
        Ok(added) => added,
        Err(why) => return Ok(Err(why)),
    };
    let engine = |e: EngineError| match e {
        EngineError::Definition(diags) => BuildError::Invalid(diags),
        e => e.into(),
    };
    let delta = load::load_delta(model, &added).await.map_err(engine)?;
    // All the files, for the questions that go to DataFusion and the allocations' tables
    // (registered; read only when a question needs them).
    let sources = load::load_registered(model).await.map_err(engine)?;
    let (data, report) =
        match lattice_engine::open_refreshed(model, prior, &delta, &sources, options)
            .await
            .map_err(engine)?
        {
            Ok(done) => done,
            Err(not) => return Ok(Err(not.0)),
        };
    let read: u64 = report.fact_rows.iter().sum::<u64>()
        - (0..model.facts.len())
            .map(|f| prior.base_fact_rows(f))
            .sum::<u64>();
    Ok(Ok(Built {
        data,
        yaml: yaml.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        fact_rows: read,
        origin: Origin {
            how: How::Refreshed,
            rebuilt_because: None,
            made_at: crate::registry::unix_now(),
            snapshot: None,
        },
        sources: now.to_vec(),
        learned: Vec::new(),
        merged: report.merged.map(|m| CuboidsMerged {
            combined: m.combined,
            replaced: m.replaced,
            rebuilt: m.rebuilt,
        }),
    }))
}

/// The newest matching snapshot in `cube_dir`, opened over the sources; `None` (logged) when
/// there is none.
async fn load_snapshot(
    model: &Model,
    yaml: &str,
    cube_dir: &Path,
    recorded: &serde_json::Value,
    fingerprints: &[SourceFingerprint],
) -> Result<Option<Built>, BuildError> {
    let started = Instant::now();
    let search = match versions::find_newest(cube_dir, model, yaml, Some(recorded)) {
        Ok(search) => search,
        Err(e) => {
            tracing::warn!(cube = %model.name, dir = %cube_dir.display(), error = %e, "cannot look for snapshots; building");
            return Ok(None);
        }
    };
    for skipped in &search.skipped {
        match &skipped.moved_to {
            Some(to) => {
                tracing::warn!(cube = %model.name, version = %skipped.version, reason = %skipped.reason, moved_to = %to.display(), "damaged snapshot moved aside; it is never served")
            }
            None => {
                tracing::info!(cube = %model.name, version = %skipped.version, reason = %skipped.reason, "snapshot does not match; skipped")
            }
        }
    }
    let Some(found) = search.found else {
        tracing::info!(cube = %model.name, dir = %cube_dir.display(), "no snapshot matches the definition and the sources; building");
        return Ok(None);
    };
    let read_seconds = started.elapsed().as_secs_f64();
    // The sources still serve the fallback (questions no cuboid answers) and hold the
    // allocations' tables: registered, read only when a question needs them (the snapshot was
    // built from these very files).
    let sources = match load::load_registered(model).await {
        Ok(s) => s,
        Err(EngineError::Definition(diags)) => return Err(BuildError::Invalid(diags)),
        Err(e) => return Err(e.into()),
    };
    let data = match lattice_engine::open_cube(found.cube, &sources).await {
        Ok(data) => data,
        Err(EngineError::Definition(diags)) => return Err(BuildError::Invalid(diags)),
        Err(e) => return Err(e.into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(cube = %model.name, version = %found.version, dir = %found.dir.display(), read_seconds, seconds, "loaded snapshot instead of building");
    Ok(Some(Built {
        data,
        yaml: yaml.to_string(),
        seconds,
        fact_rows: 0,
        origin: Origin {
            how: How::Loaded,
            rebuilt_because: None,
            made_at: unix_secs(found.written_at),
            snapshot: Some(SnapshotRef {
                version: found.version,
                dir: found.dir.display().to_string(),
            }),
        },
        sources: fingerprints.to_vec(),
        learned: Vec::new(),
        merged: None,
    }))
}

fn unix_secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Validates and builds the definition in `text` (from `file`, when it has one), with no
/// memory budget.
pub async fn build_definition(
    text: String,
    file: Option<&Path>,
    data_dir: Option<&Path>,
    progress: bool,
) -> Result<Built, BuildError> {
    let options = BuildOptions {
        progress,
        memory_budget: None,
        ..Default::default()
    };
    build_definition_with(text, file, data_dir, &options).await
}

/// [`build_definition`] with every build option (a memory budget).
pub async fn build_definition_with(
    text: String,
    file: Option<&Path>,
    data_dir: Option<&Path>,
    options: &BuildOptions,
) -> Result<Built, BuildError> {
    build_or_load_definition(text, file, data_dir, options, None).await
}

/// [`build_definition_with`], loading a snapshot from `snapshots` when one matches and writing
/// one after a build ([`build_or_load`]).
pub async fn build_or_load_definition(
    text: String,
    file: Option<&Path>,
    data_dir: Option<&Path>,
    options: &BuildOptions,
    snapshots: Option<&Snapshots>,
) -> Result<Built, BuildError> {
    let label = file.map_or_else(|| "<input>".to_string(), |f| f.display().to_string());
    let model = parse(&text, &label, &base_dir(file, data_dir))?;
    build_or_load(model, text, options, snapshots, None).await
}

/// Writes `text` to `path` so that a reader (or a crash) sees either the old file or the new
/// one, never half of it: a temporary file in the same folder, flushed to disk, renamed over
/// the target.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = base_dir(Some(path), None);
    let name = path
        .file_name()
        .map_or_else(|| "definition".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // The rename itself is durable once the folder is.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The files the server writes with [`write_atomically`]: definitions and saved searches.
const WRITTEN: [&str; 3] = [".yaml", ".yml", ".searches.json"];

/// Whether `name` is a temporary file of [`write_atomically`] for a file the server writes:
/// `.<name>.tmp-<pid>-<seq>`; its pid, when it is one.
fn temporary_of(name: &str) -> Option<u32> {
    let (target, tail) = name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    let (pid, seq) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let written = WRITTEN
        .iter()
        .any(|ext| target.len() > ext.len() && target.ends_with(ext));
    if !(written && digits(pid) && digits(seq)) {
        return None;
    }
    pid.parse().ok()
}

/// Removes from `dir` the temporary files a write cut short left behind (a `kill -9` between
/// the create and the rename), each with a log line; nothing else. A temporary of another
/// process still running (Linux's `/proc` says so) is left to it. The number removed.
pub fn remove_leftover_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let own = std::process::id();
    let running = |pid: u32| pid != own && Path::new(&format!("/proc/{pid}/stat")).exists();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_of) else {
            continue;
        };
        if running(pid) || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                removed += 1;
                tracing::info!(path = %path.display(), "removed a temporary file left by an interrupted write");
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover temporary file");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Pids past Linux's pid_max (no such process), and this process's own (a restart
        // in a container often gets the pid of the process that was killed).
        let leftovers = [
            ".bank_crm.yaml.tmp-4000000000-0".to_string(),
            ".bank_crm.searches.json.tmp-4000000001-17".to_string(),
            format!(".other.yml.tmp-{}-3", std::process::id()),
        ];
        let kept = [
            "bank_crm.yaml",
            "bank_crm.searches.json",
            ".bank_crm.yaml.tmp-",
            ".bank_crm.yaml.tmp-12-",
            ".bank_crm.yaml.tmp-x-1",
            ".notes.txt.tmp-1-1",
            "bank_crm.yaml.tmp-1-1",
            ".yaml.tmp-1-1",
            ".bank_crm.yaml.swp",
        ];
        for name in leftovers.iter().map(String::as_str).chain(kept) {
            std::fs::write(dir.path().join(name), "x").expect("write");
        }
        // A folder with a temporary's name is not a file the server wrote.
        std::fs::create_dir(dir.path().join(".dir.yaml.tmp-1-1")).expect("mkdir");
        assert_eq!(remove_leftover_temporaries(dir.path()), leftovers.len());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
        expected.push(".dir.yaml.tmp-1-1".into());
        expected.sort();
        assert_eq!(left, expected);
        assert_eq!(remove_leftover_temporaries(&dir.path().join("absent")), 0);
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("lattice-write-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("cube.yaml");
        std::fs::write(&path, "old").expect("write");
        write_atomically(&path, "new text").expect("atomic write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "new text");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cube.yaml")]);
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn sources_resolve_against_the_data_folder_first() {
        let f = Path::new("/defs/cube.yaml");
        assert_eq!(
            base_dir(Some(f), Some(Path::new("/data"))),
            Path::new("/data")
        );
        assert_eq!(base_dir(Some(f), None), Path::new("/defs"));
        assert_eq!(base_dir(Some(Path::new("cube.yaml")), None), Path::new("."));
    }
}
