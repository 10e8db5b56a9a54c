//! `manifest.json`: the format version, the definition's hash, build statistics, the shape of
//! the store (what is not a column) and the size and checksum of every other file.
//!
//! The version is read on its own first ([`check_version`]), so a manifest of another version
//! is refused by its number, never by a field this build does not know.

use std::collections::BTreeMap;
use std::path::Path;

use lattice_defs::model::{Agg, LevelRef, TimeGrain};
use serde::{Deserialize, Serialize};

use super::{FORMAT_VERSION, KNOWN_VERSIONS, bad};
use crate::error::Result;

/// The whole manifest. Field order is the order a person reads it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Manifest {
    pub format_version: u32,
    /// The cube's name (for a person; the hash is what is checked).
    pub cube: String,
    /// sha256 of the definition's text, lowercase hex.
    pub definition_sha256: String,
    /// The engine that wrote it (`lattice-engine 0.1.0`).
    pub written_by: String,
    pub stats: Stats,
    /// Members per level, `levels[dim][level]` (names: `levels.arrow`).
    pub levels: Vec<Vec<usize>>,
    /// The encoding's member dictionaries, the same way (`dicts.arrow`; empty after a build).
    pub dicts: Vec<Vec<usize>>,
    /// The finest time level, `[dim, level]`.
    pub finest_time: Option<[usize; 2]>,
    /// Decimal scale per measure.
    pub scales: Vec<i8>,
    /// The time axis.
    pub time: Option<Axis>,
    /// Per dimension: its key encoding (`null` for the time dimension).
    pub dimensions: Vec<Option<Dimension>>,
    pub cuboids: Vec<CuboidEntry>,
    /// Per fact: its base rows (`null`: not kept); empty when the cube keeps none.
    pub bases: Vec<Option<BaseEntry>>,
    /// Every other file of the folder, by name.
    pub files: BTreeMap<String, FileEntry>,
}

/// Build statistics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stats {
    pub cuboids: usize,
    pub cells: u64,
    /// What the cuboids take in memory ([`crate::store::Cube::memory_bytes`]).
    pub memory_bytes: u64,
    /// What the files take on disk, the manifest aside.
    pub file_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Axis {
    pub grain: String,
    pub first: i64,
    pub len: usize,
}

/// One table dimension's key encoding; its columns are `dim-<d>-*.arrow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Dimension {
    pub n_keys: usize,
    pub integer_key: bool,
    /// The smallest key of a dense key range (`dim-<d>-dense.arrow` holds the codes).
    pub dense_first: Option<i64>,
    /// Per level: a metric band's shape (`dim-<d>-metric-<l>.arrow` holds its codes).
    pub metric: Vec<Option<Metric>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Metric {
    pub grain: Option<String>,
    pub first: i64,
    pub periods: usize,
    pub unknown: u32,
}

/// One cuboid: its file and what its columns are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct CuboidEntry {
    pub file: String,
    pub fact: usize,
    /// `[dim, level]` of each level column, in column order.
    pub levels: Vec<[usize; 2]>,
    /// The measure of each measure column, after the level columns.
    pub measure_ids: Vec<usize>,
    /// `decimal`, `count` or `distinct`, per measure column.
    pub kinds: Vec<String>,
    pub parent: Option<usize>,
    pub cells: usize,
}

/// One fact's base rows: its parts (one for a fact read whole, one per range of periods for
/// a fact read a range at a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BaseEntry {
    /// The finest-time periods the fact has rows in (kept, not recomputed from the parts: for
    /// a fact read a range at a time they come from its counts by period).
    pub periods: Vec<u32>,
    pub parts: Vec<BasePart>,
}

/// One base table: its file and what its columns are. The file holds `keys` code columns
/// (the fact's dimensions, then the period), then a column per measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BasePart {
    pub file: String,
    pub rows: usize,
    /// Code columns, the period's included.
    pub keys: usize,
    /// The key column the rows are in the order of (then by period).
    pub sorted_by: Option<usize>,
    /// Rows of raw facts read for it.
    pub fact_rows: u64,
    /// Queries the raw facts were read with.
    pub queries: usize,
    /// Set for the header of a fact read a range at a time (never on a kept part, but kept
    /// if set, so the table reads back equal).
    pub planned_rows: Option<u64>,
    pub periods_present: Option<Vec<u32>>,
    pub measures: Vec<BaseMeasure>,
}

/// One measure column of a base table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct BaseMeasure {
    pub id: usize,
    /// `sum`, `count`, `min`, `max` or `distinct`.
    pub agg: String,
    /// Semi-additive: only closing-period rows count.
    pub semi: bool,
    /// `decimal64`, `decimal`, `count` or `values`.
    pub kind: String,
    /// The decimal scale of a `decimal64` or `decimal` column.
    pub scale: Option<i8>,
}

/// A file's size and checksum, lowercase hex: XXH3-128 from format 4 on, sha256 in format 3.
/// A reader checks the one the entry has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FileEntry {
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xxh3_128: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The version of a manifest's text, refused unless this build knows it.
pub(super) fn check_version(path: &Path, text: &str) -> Result<()> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| bad(path, format!("is not a snapshot manifest (JSON: {e})")))?;
    let found = value.get("format_version").ok_or_else(|| {
        bad(
            path,
            "has no format_version: not a snapshot manifest".to_string(),
        )
    })?;
    match found.as_u64() {
        Some(v) if KNOWN_VERSIONS.iter().any(|k| u64::from(*k) == v) => Ok(()),
        _ => Err(bad(
            path,
            format!(
                "format version {found} is not one this build reads (it reads version {}); \
                 rebuild the snapshot, or read it with the Lattice that wrote it",
                KNOWN_VERSIONS
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The manifest of a known version.
pub(super) fn parse(path: &Path, text: &str) -> Result<Manifest> {
    check_version(path, text)?;
    let manifest: Manifest = serde_json::from_str(text).map_err(|e| {
        bad(
            path,
            format!("is not a version {FORMAT_VERSION} manifest: {e}"),
        )
    })?;
    Ok(manifest)
}

pub(super) fn level_pair(l: LevelRef) -> [usize; 2] {
    [l.dim, l.level]
}

pub(super) fn level_ref([dim, level]: [usize; 2]) -> LevelRef {
    LevelRef { dim, level }
}

pub(super) fn grain_name(g: TimeGrain) -> String {
    g.name().to_string()
}

pub(super) fn agg_name(agg: Agg) -> String {
    match agg {
        Agg::Sum => "sum",
        Agg::Count => "count",
        Agg::Min => "min",
        Agg::Max => "max",
        Agg::Distinct => "distinct",
    }
    .to_string()
}

pub(super) fn agg(path: &Path, name: &str) -> Result<Agg> {
    Agg::parse(name).ok_or_else(|| bad(path, format!("unknown aggregation '{name}'")))
}

pub(super) fn grain(path: &Path, name: &str) -> Result<TimeGrain> {
    TimeGrain::ALL
        .into_iter()
        .find(|g| g.name() == name)
        .ok_or_else(|| bad(path, format!("unknown time grain '{name}'")))
}
