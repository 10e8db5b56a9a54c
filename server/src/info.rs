//! What the server says about a served cube (`GET /v1/cubes`, `GET /v1/cubes/{cube}`), computed
//! once per snapshot from its model and member dictionaries.

use lattice_defs::model::{Agg, DimensionKind, Format, LevelKind, MeasureKind, OverTime};
use lattice_engine::query::Dataset;
use lattice_engine::source::load::SourceFingerprint;
use serde::Serialize;
use utoipa::ToSchema;

/// A served cube's metadata.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CubeInfo {
    pub name: String,
    pub description: Option<String>,
    /// The snapshot number; answers carry it as `meta.snapshot`.
    pub version: u64,
    /// Absent for a scoped principal: the cube's size counts every customer's data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
    /// How the serving cube was made: `built` from the sources, `loaded` from a snapshot, or
    /// `refreshed`: an earlier cube with the files added since.
    pub origin: &'static str,
    /// Why the files that changed could not be refreshed, when a refresh was asked for and
    /// the cube was built in full instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rebuilt_because: Option<String>,
    /// The first and last period of the cube's finest time level (absent without time data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub periods: Option<Periods>,
    /// When it was made: built, or its snapshot written; seconds since the Unix epoch.
    pub made_at: u64,
    /// The snapshot it was loaded from, or the one written after its build; absent when the
    /// server keeps no snapshots, and for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotRef>,
    /// The sources it was made from: per source its files, their sizes and modification times
    /// (a snapshot is loaded only while they are the same). Absent for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceFingerprint>>,
    pub dimensions: Vec<DimensionInfo>,
    pub measures: Vec<MeasureInfo>,
    pub facts: Vec<FactInfo>,
}

/// The periods a cube covers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Periods {
    /// `time.month`, say.
    pub level: String,
    pub first: String,
    pub last: String,
}

/// The periods `cube` covers, by its finest time level.
fn periods(cube: &Dataset) -> Option<Periods> {
    let model = &cube.model;
    let t = model.time_dimension()?;
    let finest = *model.dimensions[t].hierarchy.last()?;
    let level = lattice_defs::model::LevelRef {
        dim: t,
        level: finest,
    };
    let members = cube.cube().members(level);
    // The axis's periods, then `unknown`.
    let periods = members.len().checked_sub(1).filter(|n| *n > 0)?;
    let name = |c: usize| cube.cube().member_name(level, c as u32).to_string();
    Some(Periods {
        level: model.level_name(level),
        first: name(0),
        last: name(periods - 1),
    })
}

/// What the build of a snapshot did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BuildInfo {
    /// Wall time of loading and building.
    pub seconds: f64,
    /// When the snapshot started serving, in seconds since the Unix epoch.
    pub served_since: u64,
    pub cuboids: usize,
    pub cells: usize,
    /// Bytes the cuboids take in memory.
    pub bytes: usize,
    /// Raw fact rows read.
    pub fact_rows: u64,
    /// Base rows kept in memory (what answers a question no cuboid covers), over all facts.
    pub base_rows: usize,
    /// Bytes the base rows take in memory.
    pub base_bytes: usize,
    /// The cuboids this build added for questions the cube before it answered without one.
    pub learned: Vec<crate::build::LearnedCuboid>,
    /// For a refresh, how its cuboids were made from the cube it refreshed.
    pub merged: Option<crate::build::CuboidsMerged>,
}

/// A snapshot on disk (`--snapshots DIR`): `DIR/<cube>/<version>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct SnapshotRef {
    /// The version: the UTC time it was written and the first 8 hex digits of the
    /// definition's sha256, `20261207T051500.123Z-1a2b3c4d`.
    pub version: String,
    /// Its folder.
    pub dir: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DimensionInfo {
    pub name: String,
    /// `time` (calendar levels of the facts' dates) or `table` (columns of a dimension table).
    pub kind: &'static str,
    pub levels: Vec<LevelInfo>,
    /// Level names from the coarsest to the finest: each rolls up into the one before.
    pub hierarchy: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LevelInfo {
    pub name: String,
    /// `dimension.level`, as queries name it.
    pub qualified: String,
    /// `column`, `time` or `bucket`.
    pub kind: &'static str,
    /// Members of the level (`unknown` included when present); for a scoped principal, the
    /// members it may see.
    pub members: usize,
    /// The level above it in the dimension's hierarchy, if any.
    pub parent: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MeasureInfo {
    pub name: String,
    /// `aggregate` (over a fact's rows) or `derived` (an expression over other measures).
    pub kind: &'static str,
    /// The fact table of an aggregate measure.
    pub fact: Option<String>,
    /// `sum`, `count`, `min`, `max` or `distinct`.
    pub agg: Option<&'static str>,
    /// `last` for semi-additive measures (balances), else `additive`.
    pub over_time: Option<&'static str>,
    /// How a front end should show values: `money`, `integer`, `number` or `percent`.
    pub format: Option<&'static str>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FactInfo {
    pub name: String,
    /// Dimensions whose levels the fact's measures vary by.
    pub dimensions: Vec<String>,
}

impl CubeInfo {
    pub fn new(
        cube: &Dataset,
        build: BuildInfo,
        origin: &crate::build::Origin,
        sources: Vec<SourceFingerprint>,
    ) -> CubeInfo {
        let model = &cube.model;
        CubeInfo {
            name: model.name.clone(),
            description: model.description.clone(),
            version: cube.version,
            build: Some(build),
            origin: origin.how.as_str(),
            rebuilt_because: origin.rebuilt_because.clone(),
            periods: periods(cube),
            made_at: origin.made_at,
            snapshot: origin.snapshot.clone(),
            sources: Some(sources),
            dimensions: model
                .dimensions
                .iter()
                .enumerate()
                .map(|(d, dim)| DimensionInfo {
                    name: dim.name.clone(),
                    kind: match dim.kind {
                        DimensionKind::Time => "time",
                        DimensionKind::Table { .. } => "table",
                    },
                    levels: dim
                        .levels
                        .iter()
                        .enumerate()
                        .map(|(l, level)| {
                            let at = dim.hierarchy.iter().position(|&h| h == l);
                            LevelInfo {
                                name: level.name.clone(),
                                qualified: format!("{}.{}", dim.name, level.name),
                                kind: match level.kind {
                                    LevelKind::Column(_) => "column",
                                    LevelKind::Time(_) => "time",
                                    LevelKind::Bucket(_) => "bucket",
                                },
                                members: cube.levels[d][l].len(),
                                parent: at
                                    .and_then(|i| i.checked_sub(1))
                                    .map(|i| dim.levels[dim.hierarchy[i]].name.clone()),
                            }
                        })
                        .collect(),
                    hierarchy: dim
                        .hierarchy
                        .iter()
                        .map(|&i| dim.levels[i].name.clone())
                        .collect(),
                })
                .collect(),
            measures: model
                .measures
                .iter()
                .map(|m| {
                    let (fact, agg, over_time) = match &m.kind {
                        MeasureKind::Aggregate {
                            fact,
                            agg,
                            over_time,
                            ..
                        } => (
                            Some(model.facts[*fact].name.clone()),
                            Some(agg_name(*agg)),
                            Some(match over_time {
                                OverTime::Additive => "additive",
                                OverTime::Last => "last",
                            }),
                        ),
                        MeasureKind::Derived(_) => (None, None, None),
                    };
                    MeasureInfo {
                        name: m.name.clone(),
                        kind: match m.kind {
                            MeasureKind::Aggregate { .. } => "aggregate",
                            MeasureKind::Derived(_) => "derived",
                        },
                        fact,
                        agg,
                        over_time,
                        format: m.format.map(format_name),
                        description: m.description.clone(),
                    }
                })
                .collect(),
            facts: model
                .facts
                .iter()
                .enumerate()
                .map(|(f, fact)| FactInfo {
                    name: fact.name.clone(),
                    dimensions: (0..model.dimensions.len())
                        .filter(|&d| model.fact_has_dimension(f, d))
                        .map(|d| model.dimensions[d].name.clone())
                        .collect(),
                })
                .collect(),
        }
    }
}

fn agg_name(agg: Agg) -> &'static str {
    match agg {
        Agg::Sum => "sum",
        Agg::Count => "count",
        Agg::Min => "min",
        Agg::Max => "max",
        Agg::Distinct => "distinct",
    }
}

fn format_name(format: Format) -> &'static str {
    match format {
        Format::Money => "money",
        Format::Integer => "integer",
        Format::Number => "number",
        Format::Percent => "percent",
    }
}
