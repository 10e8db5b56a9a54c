//! Analyses built from the engine's general mechanisms, so that any cube can ask them of any
//! entity level and measure (the bank's customers and deposits are one instance):
//!
//! - [`abnormal`]: the members of an entity level (customers) whose measure changed abnormally
//!   between two periods — by more than a threshold, as an outlier among their peers (a robust
//!   z-score over the median and MAD of the changes within their peer group), or by going
//!   dormant (active before, nothing for the last N periods) — with before and after values,
//!   by impact.
//! - [`migration`]: the members of a band level in one period against the same level in another
//!   (deposit band in 2025-Q1 against 2025-Q2), with counts and measure totals per transition,
//!   and drill-through from any transition to its members. Built from the cuboids' roaring
//!   member sets; a grouped query where no cuboid holds them.
//! - [`pareto`]: how concentrated a measure is over a level's members (the 80/20 view): the
//!   cumulative share curve, what the top 20% (any cut) hold, and how many members reach 80%.
//! - [`performance`]: per member of a level (a manager) and period, the customers managed,
//!   new and lost since the previous period, measures, the share of high-value customers and
//!   the rank within a parent level (the branch).
//!
//! ```text
//! request --resolve (names, filters, the principal's scope)--> levels, filter code sets
//!   --aggregate (cuboid or fallback, as any query)--> per (entity, period) values (exact V)
//!   --rule / band sets--> rows, cells --> answer
//! ```
//!
//! Every per-member value comes from the query engine's own aggregation
//! ([`crate::query`]'s `aggregate`): a cuboid answers when one covers the levels, else the
//! fallback, and a value "in a period" means what a query grouped by that period means —
//! balances (`over_time: last`) at the period's closing month. A principal's [`Access`]
//! applies to everything: the scope filters every aggregate and every member set, and names
//! outside it are unknown.

pub mod abnormal;
pub mod migration;
pub mod pareto;
pub mod performance;
pub mod preview;

pub use abnormal::{
    AbnormalAnswer, AbnormalKind, AbnormalQuery, AbnormalRow, Basis, ChangeDirection,
};
pub use migration::{
    MigrationAnswer, MigrationCell, MigrationDrill, MigrationDrillAnswer, MigrationMeta,
    MigrationQuery,
};
pub use pareto::{ParetoAnswer, ParetoCut, ParetoPoint, ParetoQuery, ParetoReach};
pub use performance::{
    CustomersSpec, HighValue, PerformanceAnswer, PerformanceMeta, PerformanceQuery, PerformanceRow,
    RankSpec,
};
pub use preview::{BandPreview, BandSkipped, BandsPreview, same_bucket};

use std::collections::BTreeMap;

use lattice_defs::diag::{suggest, suggest_many};
use lattice_defs::model::{FactId, LevelKind, LevelRef, MeasureId, MeasureKind};
use serde::Serialize;

use crate::access::Applied;
use crate::query::resolve_restricted;
use crate::query::{
    AggRequest, FactMeta, Filter, Query, QueryError, ResolvedFilter, V, aggregate, collect_leaves,
    eval, resolve,
};
use crate::query::{Dataset, Session};

/// What can be wrong with an analysis request: a query's problems, and the analyses' own.
/// Each has a stable [`AnalyticsError::code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnalyticsError {
    /// A problem any query could have (unknown level, measure or member, a bad filter, a
    /// scope that does not fit).
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(
        "'{level}' is not a time level; {role} periods are members of a time level such as time.month"
    )]
    NotATimeLevel { level: String, role: &'static str },
    #[error(
        "'{level}' is a time level; {role} must be a level of an entity dimension (customer.id, customer.deposit_band)"
    )]
    TimeLevel { level: String, role: &'static str },
    #[error(
        "period '{before}' does not come before '{after}' on '{level}'; put the earlier period first"
    )]
    PeriodOrder {
        level: String,
        before: String,
        after: String,
    },
    #[error("`{field}`: {message}")]
    BadThreshold {
        field: &'static str,
        message: String,
    },
    #[error("kind '{kind}' needs `{field}`: {hint}")]
    Missing {
        kind: &'static str,
        field: &'static str,
        hint: &'static str,
    },
    #[error("`{field}` does not apply to kind '{kind}'")]
    NotApplicable {
        kind: &'static str,
        field: &'static str,
    },
    #[error("peers '{level}': {message}")]
    BadPeers { level: String, message: String },
    #[error(
        "measure '{measure}' has inexact values (a ratio); shares of a total need a sum, a count, or sums and differences of them"
    )]
    InexactMeasure { measure: String },
    /// A problem with the value of one request field (`high_value.level`, `rank.by`).
    #[error("`{field}`: {source}")]
    At {
        field: String,
        source: Box<AnalyticsError>,
    },
    #[error(
        "`rank.within`: '{within}' is not above '{level}' in its dimension's hierarchy; rank within one of: {}",
        if ancestors.is_empty() { "(none: the level is the top of its hierarchy)".to_string() } else { ancestors.join(", ") }
    )]
    NotAnAncestor {
        within: String,
        level: String,
        ancestors: Vec<String>,
    },
    #[error("`{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl AnalyticsError {
    /// Stable, machine-readable name of the problem.
    pub fn code(&self) -> &'static str {
        match self {
            AnalyticsError::Query(e) => e.code(),
            AnalyticsError::NotATimeLevel { .. } | AnalyticsError::PeriodOrder { .. } => {
                "bad_period"
            }
            AnalyticsError::TimeLevel { .. } => "bad_level",
            AnalyticsError::BadThreshold { .. } => "bad_threshold",
            AnalyticsError::Missing { .. } => "missing_field",
            AnalyticsError::NotApplicable { .. } => "field_not_applicable",
            AnalyticsError::BadPeers { .. } => "bad_peers",
            AnalyticsError::InexactMeasure { .. } => "bad_measure",
            AnalyticsError::At { source, .. } => source.code(),
            AnalyticsError::NotAnAncestor { .. } => "bad_rank",
            AnalyticsError::Invalid { .. } => "invalid_field",
        }
    }
}

/// How an analysis was answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalyticsMeta {
    /// Per aggregation the analysis ran: its fact, path (`cuboid` or `fallback`) and cuboid.
    pub facts: Vec<FactMeta>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// One analysis request against a cube, under a principal's applied access.
pub(crate) struct Ctx<'a> {
    pub cube: &'a Dataset,
    pub applied: Applied,
    pub facts: Vec<FactMeta>,
}

impl<'a> Ctx<'a> {
    pub async fn new(session: &'a Session) -> Result<Ctx<'a>, AnalyticsError> {
        Ok(Ctx {
            cube: session.data(),
            applied: session.applied()?,
            facts: Vec::new(),
        })
    }

    pub fn model(&self) -> &'a lattice_defs::Model {
        &self.cube.model
    }

    pub fn measure(&self, name: &str) -> Result<MeasureId, AnalyticsError> {
        let model = self.model();
        model.measure(name).ok_or_else(|| {
            QueryError::UnknownMeasure {
                name: name.to_string(),
                suggestion: suggest(name, model.measures.iter().map(|m| m.name.as_str())),
            }
            .into()
        })
    }

    pub fn level(&self, name: &str) -> Result<LevelRef, AnalyticsError> {
        let model = self.model();
        model.level(name).ok_or_else(|| {
            QueryError::UnknownLevel {
                name: name.to_string(),
                suggestion: suggest(name, model.level_names().iter().map(String::as_str)),
            }
            .into()
        })
    }

    /// A level of a time dimension, for the periods of `role`.
    pub fn time_level(&self, name: &str, role: &'static str) -> Result<LevelRef, AnalyticsError> {
        let l = self.level(name)?;
        if !is_time(self.cube, l) {
            return Err(AnalyticsError::NotATimeLevel {
                level: name.to_string(),
                role,
            });
        }
        Ok(l)
    }

    /// A level of an entity (non-time) dimension, for `role`.
    pub fn entity_level(&self, name: &str, role: &'static str) -> Result<LevelRef, AnalyticsError> {
        let l = self.level(name)?;
        if is_time(self.cube, l) {
            return Err(AnalyticsError::TimeLevel {
                level: name.to_string(),
                role,
            });
        }
        Ok(l)
    }

    /// The code of period `name` of time level `level` (`role` names the field).
    pub fn period(&self, level: LevelRef, name: &str) -> Result<u32, AnalyticsError> {
        let dict = self.cube.members(level);
        dict.code(name).ok_or_else(|| {
            QueryError::UnknownMember {
                level: self.model().level_name(level),
                value: name.to_string(),
                suggestions: suggest_many(name, dict.names.iter().map(String::as_str), 3),
            }
            .into()
        })
    }

    /// The request's filters (and the principal's scope) for `measure` grouped by `levels`,
    /// resolved as a query's: names checked, the measure must vary by every level, members
    /// outside the principal's scope are unknown. The scope's filters are included.
    pub async fn filters(
        &self,
        measure: MeasureId,
        levels: &[LevelRef],
        filters: &[Filter],
    ) -> Result<Vec<ResolvedFilter>, AnalyticsError> {
        let model = self.model();
        let query = Query {
            measures: vec![model.measures[measure].name.clone()],
            rows: levels.iter().map(|l| model.level_name(*l)).collect(),
            filters: filters.to_vec(),
            ..Query::default()
        };
        let r = if self.applied.is_unrestricted() {
            resolve(&query, self.cube)?
        } else {
            resolve_restricted(self.cube, &query, &self.applied).await?
        };
        let mut out = r.filters;
        out.extend(r.scope);
        Ok(out)
    }

    /// `measure` per group of `levels` over the cells that pass `filters`, from the engine's
    /// own aggregation (per fact of its leaves: a cuboid, else the fallback), derived measures
    /// evaluated as a query does. Groups without a value of any leaf are absent.
    pub async fn values(
        &mut self,
        measure: MeasureId,
        levels: &[LevelRef],
        filters: &[ResolvedFilter],
    ) -> Result<BTreeMap<Vec<u32>, V>, AnalyticsError> {
        let model = self.model();
        let mut leaves = Vec::new();
        collect_leaves(model, measure, &mut leaves);
        leaves.sort_unstable();
        leaves.dedup();
        let mut by_fact: BTreeMap<FactId, Vec<MeasureId>> = BTreeMap::new();
        for &m in &leaves {
            if let MeasureKind::Aggregate { fact, .. } = model.measures[m].kind {
                by_fact.entry(fact).or_default().push(m);
            }
        }
        let mut rows: BTreeMap<Vec<u32>, Vec<V>> = BTreeMap::new();
        for (fact, measures) in &by_fact {
            let req = AggRequest {
                fact: *fact,
                levels,
                filters,
                measures,
            };
            let (grouped, meta) = aggregate(self.cube, &req, false).await?;
            self.facts.push(if self.applied.is_unrestricted() {
                meta
            } else {
                meta.restricted()
            });
            let slots: Vec<(usize, usize)> = grouped
                .measures
                .iter()
                .enumerate()
                .filter_map(|(j, m)| Some((j, leaves.iter().position(|l| l == m)?)))
                .collect();
            for g in 0..grouped.len() {
                let slot = rows
                    .entry(grouped.key(g).to_vec())
                    .or_insert_with(|| vec![V::Null; leaves.len()]);
                for &(j, i) in &slots {
                    slot[i] = grouped.accs[j].value(g).into();
                }
            }
        }
        Ok(rows
            .into_iter()
            .map(|(k, vals)| {
                let get = |x: MeasureId| {
                    leaves
                        .iter()
                        .position(|l| *l == x)
                        .map_or(V::Null, |i| vals[i])
                };
                (k, eval(model, measure, &get))
            })
            .collect())
    }

    pub fn meta(&mut self, start: std::time::Instant) -> AnalyticsMeta {
        AnalyticsMeta {
            facts: std::mem::take(&mut self.facts),
            elapsed_us: start.elapsed().as_micros() as u64,
            snapshot: self.cube.version,
        }
    }
}

fn is_time(cube: &Dataset, l: LevelRef) -> bool {
    matches!(
        cube.model.dimensions[l.dim].levels[l.level].kind,
        LevelKind::Time(_)
    )
}

pub(crate) fn default_entity() -> String {
    "customer.id".into()
}

pub(crate) fn default_level() -> String {
    "time.month".into()
}

/// A filter letting `members` of `level` through.
pub(crate) fn only(level: LevelRef, members: impl IntoIterator<Item = u32>) -> ResolvedFilter {
    ResolvedFilter {
        level,
        members: members.into_iter().collect(),
    }
}

/// `v` with NULL as 0 (a period without facts).
pub(crate) fn or_zero(v: V) -> V {
    match v {
        V::Null => V::Int(0),
        v => v,
    }
}

/// `|v|`.
pub(crate) fn abs(v: V) -> V {
    match v {
        V::Dec(x, s) => V::Dec(x.abs(), s),
        V::Int(x) => V::Int(x.abs()),
        V::Float(f) => V::Float(f.abs()),
        V::Null => V::Null,
    }
}

/// Paging: `limit` items from `offset`.
pub(crate) fn page<T>(items: Vec<T>, offset: u64, limit: Option<u64>) -> Vec<T> {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    items.into_iter().skip(offset).take(limit).collect()
}
