//! # lattice-defs: the cube definition language
//!
//! Analysts describe a cube in YAML: its sources, fact tables, dimensions with levels,
//! hierarchies and buckets, measures, and which aggregates to precompute. This crate turns that
//! text into a [`Model`] the engine can trust, or into [`Diagnostics`] that say, for every
//! problem at once, the file, line, column and key path, what is wrong and how to fix it.
//!
//! ```text
//! YAML text --serde-saphyr--> raw::RawCube --validate--> Model
//!                                                  \--> Diagnostics (file:line:col: path: message)
//! Model + Catalog (source schemas, read by the engine) --check_catalog--> Diagnostics
//! ```
//!
//! - [`raw`] mirrors the file exactly (`deny_unknown_fields`, positions on every name);
//! - [`model`] is the validated form: names resolved to indices, edges as exact decimals,
//!   derived expressions parsed and free of cycles;
//! - [`catalog`] checks a model against its sources' schemas (missing columns, wrong types);
//! - [`diag`] is the error type: [`DefError`] carries the data, [`Diagnostic`] the place;
//! - [`limits`] bounds what a definition may ask for (levels, cuboids, edges, expressions).
//!
//! This crate knows nothing about execution and does not depend on Arrow or DataFusion, so it
//! builds in seconds and can be fuzzed alone. The language is documented in `README.md`.

pub mod catalog;
pub mod diag;
pub mod expr;
pub mod limits;
pub mod model;
pub mod raw;
mod validate;

use std::path::Path;

pub use catalog::{Catalog, ColumnType, TableSchema, allocation_schema, check_catalog};
pub use diag::{DefError, Diagnostic, Diagnostics, Pos};
pub use model::Model;
pub use validate::default_labels;

/// The default cube, shipped with Lattice: bank customer analytics.
pub const BANK_CRM_YAML: &str = include_str!("../bank_crm.yaml");

/// Parses and validates a definition given as text. `file` names it in diagnostics; relative
/// source paths resolve against `base_dir`.
pub fn parse_str(text: &str, file: &str, base_dir: &Path) -> Result<Model, Diagnostics> {
    let mut ctx = validate::Ctx {
        file,
        text,
        diags: Vec::new(),
    };
    let raw: raw::RawCube = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(err) => {
            let pos = err.location().map_or(Pos::UNKNOWN, Pos::from_location);
            return Err(Diagnostics(vec![Diagnostic {
                file: file.to_string(),
                pos,
                path: key_path_at(text, pos),
                error: DefError::Syntax {
                    message: syntax_message(&err),
                },
            }]));
        }
    };
    let model = validate::validate(raw, &mut ctx, base_dir);
    match model {
        Some(m) if ctx.diags.is_empty() => Ok(m),
        _ => {
            let mut d = Diagnostics(ctx.diags);
            d.sort();
            Err(d)
        }
    }
}

/// Reads, parses and validates a definition file.
pub fn load_file(path: &Path) -> Result<Model, Diagnostics> {
    load_file_in(path, None)
}

/// Reads, parses and validates a definition file; relative source paths resolve against
/// `base_dir` when given (a data folder), else against the file's folder.
pub fn load_file_in(path: &Path, base_dir: Option<&Path>) -> Result<Model, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: file.clone(),
            pos: Pos::UNKNOWN,
            path: String::new(),
            error: DefError::Invalid {
                message: format!("cannot read the definition: {e}"),
            },
        }])
    })?;
    let base = base_dir.unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")));
    parse_str(&text, &file, base)
}

/// The parser's message without its own location prefix (the diagnostic says where).
fn syntax_message(err: &serde_saphyr::Error) -> String {
    let text = err.to_string();
    let mut msg = text.lines().next().unwrap_or("").trim();
    msg = msg.strip_prefix("error: ").unwrap_or(msg);
    // "line L column C: message"
    if msg.starts_with("line ")
        && let Some((_, rest)) = msg.split_once(": ")
    {
        msg = rest;
    }
    if let Some(rest) = msg.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!("duplicate name '{key}': each name may appear once in a mapping");
    }
    msg.to_string()
}

/// The key path of the mapping entry at `pos`, read from the block structure of the text
/// (indentation). Best effort: flow mappings `{ .. }` give the path of their line.
pub fn key_path_at(text: &str, pos: Pos) -> String {
    if pos.line == 0 {
        return String::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut idx = (pos.line as usize).min(lines.len()).saturating_sub(1);
    let mut keys = Vec::new();
    let mut limit = usize::MAX;
    loop {
        let line = lines.get(idx).copied().unwrap_or("");
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let entry = trimmed.trim_start_matches("- ");
        if !trimmed.is_empty() && !trimmed.starts_with('#') && indent < limit {
            if let Some((key, _)) = entry.split_once(':')
                && !key.contains(' ')
                && !key.is_empty()
            {
                let key = key.trim_matches(|c| c == '"' || c == '\'');
                // A key past any name's length is shown cut short.
                let mut shown: String = key.chars().take(limits::MAX_NAME_CHARS).collect();
                if shown.len() < key.len() {
                    shown.push_str("...");
                }
                keys.push(shown);
            }
            limit = indent;
        }
        if idx == 0 || limit == 0 {
            break;
        }
        idx -= 1;
    }
    keys.reverse();
    keys.join(".")
}
