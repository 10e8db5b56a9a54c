//! From definition text to a cube ready to serve, the same way at start (the CLI calls
//! [`build_definition`]) and on every reload; and the atomic write of an accepted definition.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use lattice_defs::Model;
use lattice_engine::EngineError;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Dataset;

use crate::error::BuildError;

/// A cube built from a definition, not yet serving.
#[derive(Debug)]
pub struct Built {
    /// The cube opened over its sources (snapshot 1 until the registry numbers it).
    pub data: Dataset,
    /// The definition's text, as served by `GET .../definition`.
    pub yaml: String,
    /// Wall time of loading and building.
    pub seconds: f64,
    /// Raw fact rows read.
    pub fact_rows: u64,
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
    Ok(Built {
        data,
        yaml,
        seconds: started.elapsed().as_secs_f64(),
        fact_rows: report.fact_rows.iter().sum(),
    })
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
    let label = file.map_or_else(|| "<input>".to_string(), |f| f.display().to_string());
    let model = parse(&text, &label, &base_dir(file, data_dir))?;
    build_model(model, text, options).await
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
