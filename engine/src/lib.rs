//! # lattice-engine
//!
//! Everything between a validated [`lattice_defs::Model`] and an answer, in layers. Each
//! module imports only the modules above it in this list (the test `layers` below reads every
//! `crate::` path of the engine and fails on one against the order):
//!
//! 1. [`error`]: the engine's error type.
//! 2. [`store`]: the ground floor — the cube as pure data: member dictionaries and the
//!    encoding of source keys, parent arrays, the time axis and calendar, cuboids with their
//!    member sets, the periods each fact has.
//! 3. [`source`]: reading sources through DataFusion, with their schemas checked
//!    ([`source::load`]), allocations, and the synthetic bank data set ([`source::synth`]).
//! 4. [`build`]: bucketing, encoding, cuboid selection and materialisation; writes a store
//!    ([`build::build_cube`]).
//! 5. [`access`]: a principal's scope and suppression, turned into filters over the store.
//! 6. [`query`]: the [`query::Session`] — the one entry point of every read (cube, sources for
//!    the fallback, access, result cache) — with resolution, planning, the cuboid scan, the
//!    DataFusion fallback and the finish stages.
//! 7. [`analytics`], then [`search`], then [`entity`]: built on the session — Pareto,
//!    performance, abnormal change and migration; target-customer searches; the single entity
//!    view. Each adds its reads as methods of [`query::Session`].
//! 8. [`sql`]: cubes as SQL tables in a DataFusion session: an aggregate over a cube table
//!    becomes one engine query through the caller's [`query::Session`].
//!
//! ```text
//! Model --source::load--> Sources --build--> store::Cube --open--> query::Dataset
//!   Dataset --.session(access)--> Session --query / drill_through / pareto / ...--> answers
//! ```
//!
//! [`open()`] builds a cube and opens it for reading, checking the definition's saved searches
//! against the data. Nothing here knows about HTTP; the server crate is a thin shell over this
//! one.

pub mod access;
pub mod analytics;
pub mod build;
pub mod entity;
pub mod error;
pub mod query;
pub mod search;
pub mod source;
pub mod sql;
pub mod store;

pub use error::{EngineError, Result};

use build::{BuildOptions, BuildReport};
use query::Dataset;
use source::load::Sources;

/// Builds the cube of `model` over `sources` and opens it for reading (snapshot 1, with the
/// sources for the fallback). The definition's saved searches are checked against the data
/// here, so one naming a member or period the data lacks fails at its line
/// ([`EngineError::Definition`]).
pub async fn open(
    model: &lattice_defs::Model,
    sources: &Sources,
    options: &BuildOptions,
) -> Result<Dataset> {
    Ok(open_with_report(model, sources, options).await?.0)
}

/// [`open()`], with the build's report (what was chosen and why, stage times).
pub async fn open_with_report(
    model: &lattice_defs::Model,
    sources: &Sources,
    options: &BuildOptions,
) -> Result<(Dataset, BuildReport)> {
    let (cube, report) = build::build_cube_with_report(model, sources, options).await?;
    let data = search::check_definition_searches(Dataset::new(cube, Some(sources)))
        .await
        .map_err(EngineError::Definition)?;
    Ok((data, report))
}

/// Refreshes `prior` with the new rows of `delta` ([`build::refresh`]) and opens the cube over
/// `sources` (all the files) as [`open()`] does; why it cannot, when it cannot.
pub async fn open_refreshed(
    model: &lattice_defs::Model,
    prior: &store::Cube,
    delta: &Sources,
    sources: &Sources,
    options: &BuildOptions,
) -> Result<std::result::Result<(Dataset, BuildReport), build::refresh::NotIncremental>> {
    let (cube, report) =
        match build::refresh::refresh_cube_with_report(model, prior, delta, options).await? {
            Ok(done) => done,
            Err(not) => return Ok(Err(not)),
        };
    let data = search::check_definition_searches(Dataset::new(cube, Some(sources)))
        .await
        .map_err(EngineError::Definition)?;
    Ok(Ok((data, report)))
}

/// A cube read back from a snapshot (`store::snapshot`), opened over its `sources` as
/// [`open()`] opens a cube it built. The definition's saved searches are not run again (at
/// scale 10 that took a second, as long as the rest of a start): a snapshot is written only
/// from a cube they passed on, and is read only for the same definition (its hash) over the
/// same data (its sources' fingerprints), so they would pass on it again.
pub async fn open_cube(cube: store::Cube, sources: &Sources) -> Result<Dataset> {
    Ok(Dataset::new(cube, Some(sources)))
}

#[cfg(test)]
mod layers {
    //! The import order of the module docs above, held: every `crate::` path in the engine's
    //! code (comments aside) names its own module or one earlier in [`ORDER`].

    use std::path::Path;

    /// The engine's modules, lowest first; `lib.rs` itself is above them all.
    const ORDER: [&str; 10] = [
        "error",
        "store",
        "source",
        "build",
        "access",
        "query",
        "analytics",
        "search",
        "entity",
        "sql",
    ];

    fn rank(module: &str) -> Option<usize> {
        // The crate root re-exports the error type.
        let module = match module {
            "EngineError" | "Result" => "error",
            m => m,
        };
        ORDER.iter().position(|m| *m == module)
    }

    /// The `crate::` paths of one line of code (after any `//` comment is cut off), by the
    /// module they name first.
    fn imports(line: &str) -> Vec<String> {
        let code = line.split("//").next().unwrap_or("");
        let mut out = Vec::new();
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() && rest.starts_with('{') {
                let inner = rest[1..].split('}').next().unwrap_or("");
                out.extend(inner.split(',').map(|n| n.trim().to_string()));
            } else {
                out.push(name);
            }
        }
        out
    }

    fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("engine/src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn modules_import_only_the_layers_below_them() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut all = Vec::new();
        files(&src, &mut all);
        assert!(all.len() > 30, "the engine's sources: {all:?}");
        let mut wrong = Vec::new();
        for path in &all {
            let rel = path.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a component");
            let own = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if own == "lib" {
                continue;
            }
            let mine = rank(&own).unwrap_or_else(|| panic!("module '{own}' is not in ORDER"));
            let text = std::fs::read_to_string(path).expect("read");
            for (n, line) in text.lines().enumerate() {
                for name in imports(line) {
                    let theirs = rank(&name).unwrap_or_else(|| {
                        panic!("{}:{}: unknown crate::{name}", rel.display(), n + 1)
                    });
                    if theirs > mine {
                        wrong.push(format!("{}:{}: {own} imports {name}", rel.display(), n + 1));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layer order:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_check_sees_paths_braces_and_skips_comments() {
        assert_eq!(imports("use crate::query::{Session};"), ["query"]);
        assert_eq!(
            imports("use crate::{EngineError, Result};"),
            ["EngineError", "Result"]
        );
        assert_eq!(
            imports("let x = crate::store::time::coarsen(a); // crate::entity"),
            ["store"]
        );
        assert!(imports("/// see [`crate::search`]").is_empty());
        assert!(rank("entity") > rank("query"));
    }
}
