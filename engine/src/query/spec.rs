//! The query document, exactly as clients send it.

use serde::{Deserialize, Serialize};

/// A slice-and-dice question.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Query {
    /// Measures to compute, by name.
    pub measures: Vec<String>,
    /// Levels on rows (`dimension.level`).
    #[serde(default)]
    pub rows: Vec<String>,
    /// Levels on columns: a pivot.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Conditions on measure values after aggregation.
    #[serde(default)]
    pub having: Vec<Having>,
    #[serde(default)]
    pub order: Vec<Order>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
    /// Grand and sub-totals of the grouped levels.
    #[serde(default)]
    pub totals: bool,
    /// Each measure also against the member `lag` steps earlier on an ordered level.
    #[serde(default)]
    pub compare: Option<Compare>,
    /// Say which cuboid answers, and why.
    #[serde(default)]
    pub explain: bool,
    /// Measures as shares of their totals over coarser groups (a column each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<Share>,
    /// Saved searches whose members filter the query (on each search's entity level; several
    /// intersect). Expanded by [`crate::search::expand_segments`] before the query resolves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

/// A measure as a share of its total: of the grand total (`of: []`), within each member of
/// some grouped levels (`of: ["time.month"]`: each channel's share of the month's
/// transactions), or of a parent member (`of: ["region.city"]` with `region.branch` on rows:
/// each branch's share of its city).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Share {
    /// A measure of `measures`.
    pub measure: String,
    /// The levels the total keeps; each grouped, or above a grouped level of its hierarchy.
    #[serde(default)]
    pub of: Vec<String>,
    /// The column's name; default `<measure>_share`, or `<measure>_share_of_<level>[_<level>..]`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    In,
    NotIn,
    /// Inclusive, on ordered levels (time, bands).
    Between,
    /// Member names starting with `value`.
    Prefix,
    /// Member names containing `value`, ignoring case.
    Search,
}

impl FilterOp {
    /// The name a query writes (`not_in`).
    pub fn name(self) -> &'static str {
        match self {
            FilterOp::Eq => "eq",
            FilterOp::In => "in",
            FilterOp::NotIn => "not_in",
            FilterOp::Between => "between",
            FilterOp::Prefix => "prefix",
            FilterOp::Search => "search",
        }
    }
}

/// A slice (one level) of the cube.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub level: String,
    pub op: FilterOp,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HavingOp {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Having {
    pub measure: String,
    pub op: HavingOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

/// Order by a measure or a grouped level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Order {
    pub by: String,
    #[serde(default)]
    pub dir: Direction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub level: String,
    pub lag: u32,
}

impl Query {
    /// Reads a query document; malformed JSON, unknown keys and wrong types are
    /// [`QueryError::Malformed`] with serde's line and column, and a page beyond
    /// [`super::MAX_PAGE_ROWS`] is [`QueryError::TooLarge`](super::QueryError::TooLarge).
    pub fn from_json(text: &str) -> Result<Query, super::QueryError> {
        let q: Query = serde_json::from_str(text).map_err(|e| super::QueryError::Malformed {
            message: e.to_string(),
        })?;
        super::check_page(q.limit, q.offset)?;
        Ok(q)
    }
}
