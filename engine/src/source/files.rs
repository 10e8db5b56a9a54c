//! Which files a source reads. A source's `path` names one file, a folder of files or a glob
//! (`transactions/*.parquet`); its format is `format:`, else the path's extension, else the
//! extension of the files found.
//!
//! ```text
//! path                       reads
//! transactions.parquet       that file; if there is none, the folder transactions/
//! transactions               transactions.parquet, transactions.csv or the folder transactions/
//! transactions/              every file in the folder (names starting with . or _ aside)
//! transactions/2025-*.csv    every file the glob matches
//! ```
//!
//! Every file of a folder or a glob must be of the source's one format: a file of another
//! extension, or a subfolder, is an error naming it (never skipped silently), and so is a
//! folder or a glob with no file. So a definition that names `transactions.parquet` reads a
//! data set written as one file or as one file per month (`lattice gen --partition-by
//! month`), unchanged.

use std::path::{Path, PathBuf};

use lattice_defs::model::{Source, SourceFormat};

/// A source's files, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFiles {
    pub format: SourceFormat,
    /// Where they were found: the file, the folder, or the glob.
    pub location: PathBuf,
    /// How `location` names them.
    pub layout: Layout,
    /// The files read, sorted by path.
    pub files: Vec<PathBuf>,
}

/// How a source's location names its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    File,
    Folder,
    Glob,
}

/// The extension of a format's files, without the dot.
pub fn extension(format: SourceFormat) -> &'static str {
    match format {
        SourceFormat::Parquet => "parquet",
        SourceFormat::Csv => "csv",
    }
}

fn format_of(path: &Path) -> Option<SourceFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => Some(SourceFormat::Parquet),
        "csv" => Some(SourceFormat::Csv),
        _ => None,
    }
}

/// `path` made absolute, links resolved (as it is where it cannot be): the name a source's
/// fingerprint records, the same whether the data folder was given as a relative path or not.
pub fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether `path` (as written) is a glob: it holds `*`, `?` or `[`.
fn is_glob(path: &Path) -> bool {
    path.to_string_lossy().contains(['*', '?', '['])
}

/// The files of `source`, or why there are none to read (a message naming the path or the
/// file at fault).
pub fn resolve(source: &Source) -> Result<SourceFiles, String> {
    let path = &source.path;
    if is_glob(path) {
        return glob_files(path, source.format);
    }
    if path.is_file() {
        let format = source.format.or_else(|| format_of(path)).ok_or_else(|| {
            format!(
                "cannot tell the format of {}; add `format: parquet` or `format: csv`",
                path.display()
            )
        })?;
        return Ok(SourceFiles {
            format,
            location: path.clone(),
            layout: Layout::File,
            files: vec![path.clone()],
        });
    }
    if path.is_dir() {
        return folder_files(path, source.format);
    }
    let given = source.format.or_else(|| format_of(path));
    match (format_of(path), given) {
        // `transactions.parquet` absent: the folder `transactions/`.
        (Some(format), _) => {
            let folder = path.with_extension("");
            if folder.is_dir() {
                return folder_files(&folder, Some(format));
            }
        }
        // `transactions`: `transactions.parquet`, `transactions.csv`.
        (None, given) => {
            for format in [SourceFormat::Parquet, SourceFormat::Csv] {
                let file = with_added_extension(path, extension(format));
                if file.is_file() && given.is_none_or(|g| g == format) {
                    return Ok(SourceFiles {
                        format,
                        location: file.clone(),
                        layout: Layout::File,
                        files: vec![file],
                    });
                }
            }
        }
    }
    Err(format!("no file at {}", path.display()))
}

/// `path` with `.ext` added to its name (`data/transactions` -> `data/transactions.csv`).
fn with_added_extension(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// A name a folder source skips: hidden files and markers such as `_SUCCESS`.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

fn folder_files(dir: &Path, format: Option<SourceFormat>) -> Result<SourceFiles, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        if skipped(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            return Err(format!(
                "{} is a folder inside the source folder {}; a source folder holds only files (name a glob to pick some)",
                path.display(),
                dir.display()
            ));
        }
        files.push(path);
    }
    files.sort();
    let format = one_format(&files, format, &dir.display().to_string())?;
    Ok(SourceFiles {
        format,
        location: dir.to_path_buf(),
        layout: Layout::Folder,
        files,
    })
}

fn glob_files(pattern: &Path, format: Option<SourceFormat>) -> Result<SourceFiles, String> {
    let text = pattern.to_string_lossy();
    let paths = glob::glob(&text).map_err(|e| format!("{text} is not a valid glob: {e}"))?;
    let mut files = Vec::new();
    for path in paths {
        let path = path.map_err(|e| format!("cannot list a match of {text}: {e}"))?;
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let format = one_format(&files, format, &text)?;
    Ok(SourceFiles {
        format,
        location: pattern.to_path_buf(),
        layout: Layout::Glob,
        files,
    })
}

/// The one format of `files` (those of a folder or a glob at `place`): `given`, else that of
/// the first file; an error naming the first file of another extension, or saying there are
/// none.
fn one_format(
    files: &[PathBuf],
    given: Option<SourceFormat>,
    place: &str,
) -> Result<SourceFormat, String> {
    let Some(first) = files.first() else {
        return Err(format!("no file in {place}"));
    };
    let format = match given.or_else(|| format_of(first)) {
        Some(f) => f,
        None => {
            return Err(format!(
                "cannot tell the format of {}: its extension is neither .parquet nor .csv",
                first.display()
            ));
        }
    };
    if let Some(odd) = files.iter().find(|f| format_of(f) != Some(format)) {
        return Err(format!(
            "{} is not a .{} file like the source's others in {place}; move it out, or name the files with a glob",
            odd.display(),
            extension(format)
        ));
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &Path, format: Option<SourceFormat>) -> Source {
        Source {
            name: "t".into(),
            path: path.to_path_buf(),
            format,
            pos: lattice_defs::Pos::UNKNOWN,
        }
    }

    fn touch(path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, "x").expect("write");
    }

    #[test]
    fn a_named_file_its_folder_or_a_name_without_extension_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        touch(&d.join("a.parquet"));
        touch(&d.join("b/2025-01.parquet"));
        touch(&d.join("b/2025-02.parquet"));
        touch(&d.join("b/_SUCCESS"));
        touch(&d.join("c.csv"));
        let got =
            resolve(&source(&d.join("a.parquet"), Some(SourceFormat::Parquet))).expect("a file");
        assert_eq!(
            (got.layout, got.files),
            (Layout::File, vec![d.join("a.parquet")])
        );
        let got = resolve(&source(&d.join("b.parquet"), Some(SourceFormat::Parquet)))
            .expect("the folder of the name");
        assert_eq!(got.layout, Layout::Folder);
        assert_eq!(got.location, d.join("b"));
        assert_eq!(
            got.files,
            vec![d.join("b/2025-01.parquet"), d.join("b/2025-02.parquet")]
        );
        let got = resolve(&source(&d.join("c"), None)).expect("c.csv");
        assert_eq!(
            (got.format, got.files),
            (SourceFormat::Csv, vec![d.join("c.csv")])
        );
        let got = resolve(&source(&d.join("b"), None)).expect("the folder");
        assert_eq!(got.format, SourceFormat::Parquet);
        let got = resolve(&source(
            &d.join("b/*-02.parquet"),
            Some(SourceFormat::Parquet),
        ))
        .expect("a glob");
        assert_eq!(
            (got.layout, got.files),
            (Layout::Glob, vec![d.join("b/2025-02.parquet")])
        );
        let err = resolve(&source(&d.join("nothing.csv"), Some(SourceFormat::Csv)))
            .expect_err("nothing there");
        assert!(err.starts_with("no file at "), "{err}");
        let err =
            resolve(&source(&d.join("b/*.csv"), Some(SourceFormat::Csv))).expect_err("no match");
        assert!(err.starts_with("no file in "), "{err}");
    }

    #[test]
    fn a_file_of_another_format_or_a_subfolder_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        touch(&d.join("t/2025-01.parquet"));
        touch(&d.join("t/2025-02.csv"));
        let err =
            resolve(&source(&d.join("t.parquet"), Some(SourceFormat::Parquet))).expect_err("mixed");
        assert!(err.contains("2025-02.csv is not a .parquet file"), "{err}");
        std::fs::remove_file(d.join("t/2025-02.csv")).expect("rm");
        touch(&d.join("t/old/2024-12.parquet"));
        let err = resolve(&source(&d.join("t"), None)).expect_err("a subfolder");
        assert!(
            err.contains("old is a folder inside the source folder"),
            "{err}"
        );
    }
}
