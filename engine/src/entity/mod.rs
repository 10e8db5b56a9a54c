//! The single entity view: everything the cube knows about one member of an entity level (a
//! customer), derived from the model alone, so any dimension whose key is a level has one.
//!
//! ```text
//! (dimension, id) --the dimension's key level (the level on its key column: customer.id)
//!   --one filter `key = id`, resolved as any query's (scope: out of sight = unknown)-->
//!   attributes   the dimension's levels that do not vary by period, and the levels of the
//!                dimensions reached through it (`via`: region, manager)
//!   held         per fact with closing-period measures (balances), the members of its other
//!                dimensions with facts in its latest period (products held)
//!   periods      every measure that varies by the entity and time, per finest time period
//!   bands        per per-period level (deposit_band per month), the member in each period
//!   breakdowns   per fact, its measures by the finest level of each other dimension it
//!                carries (transactions by channel, by product; balances by product)
//!   searches     the saved searches on the key level whose members include the entity
//! ```
//!
//! Every number is a query the engine answers as usual (a cuboid, else the fallback) under the
//! principal's [`Access`], so a value here equals the same query's value, and money stays
//! exact. An id outside the principal's scope gets the same `unknown_member` error as an id
//! that does not exist. One member's numbers are exactly what small-cell suppression hides, so
//! a principal it applies to is refused (`forbidden`) rather than shown a page of nulls.

use std::time::Instant;

use lattice_defs::diag::suggest;
use lattice_defs::model::{
    BucketSource, DimId, DimensionKind, FactId, LevelKind, LevelRef, MeasureKind, OverTime,
    UNKNOWN_MEMBER,
};
use serde::Serialize;
use serde_json::Value as Json;

use crate::access::Applied;
use crate::query::{
    Answer, Column, FactMeta, Filter, FilterOp, Query, QueryError, execute_restricted, resolve,
};
use crate::query::{Dataset, Session};
use crate::query::{resolve_restricted, row_measure};
use crate::search::SearchSet;

/// What can be wrong with an entity view request; each has a stable [`EntityError::code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EntityError {
    /// A problem any query could have: the id is not a member the principal may see
    /// (`unknown_member`), or the principal may not see one member's numbers (`forbidden`).
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("unknown dimension '{name}'{}", suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default())]
    UnknownDimension {
        name: String,
        suggestion: Option<String>,
    },
    #[error(
        "dimension '{dimension}' has no level on its key column '{key}', so its members have no ids to view; view a dimension with one (customer)"
    )]
    NoKeyLevel { dimension: String, key: String },
}

impl EntityError {
    pub fn code(&self) -> &'static str {
        match self {
            EntityError::Query(e) => e.code(),
            EntityError::UnknownDimension { .. } => "unknown_dimension",
            EntityError::NoKeyLevel { .. } => "no_key_level",
        }
    }
}

/// One level's member for the entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attribute {
    pub level: String,
    /// `null` when the entity has no facts to read it from.
    pub member: Option<String>,
}

/// The members of `level` the entity has facts of `fact` with in `period` (its latest).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Held {
    pub fact: String,
    pub level: String,
    pub period: String,
    pub members: Vec<String>,
}

/// An answer's columns and rows (the query engine's values: decimals as exact strings).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Table {
    pub columns: Vec<Column>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
}

impl From<Answer> for Table {
    fn from(a: Answer) -> Table {
        Table {
            columns: a.columns,
            rows: a.rows,
        }
    }
}

/// The entity's member of a per-period level in each period it has facts in.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Bands {
    pub level: String,
    /// The time level of the band's period (`time.month`).
    pub period_level: String,
    /// `[period, member]`, in period order.
    pub rows: Vec<[String; 2]>,
}

/// One fact's measures by the finest level of one of its other dimensions.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breakdown {
    pub fact: String,
    pub level: String,
    #[serde(flatten)]
    pub table: Table,
}

/// A saved search that could not be evaluated (its definition no longer fits the cube).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchFailure {
    pub name: String,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntityMeta {
    /// Per aggregation the view ran: its fact, path (`cuboid` or `fallback`) and cuboid.
    pub facts: Vec<FactMeta>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// The single entity view.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntityView {
    pub cube: String,
    pub dimension: String,
    /// The key level (`customer.id`).
    pub level: String,
    pub id: String,
    /// The dimension's levels that do not vary by period, in definition order.
    pub attributes: Vec<Attribute>,
    /// The levels of the dimensions reached through this one (region, manager).
    pub related: Vec<Attribute>,
    pub held: Vec<Held>,
    /// Every measure varying by the entity and time, per finest time period with facts.
    pub periods: Table,
    pub bands: Vec<Bands>,
    pub breakdowns: Vec<Breakdown>,
    /// Saved searches on the key level that select the entity, by name.
    pub searches: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search_failures: Vec<SearchFailure>,
    pub meta: EntityMeta,
}

/// The level of `dim` on its key column (`customer.id` on `customer_id`).
pub fn key_level(cube: &Dataset, dimension: &str) -> Result<LevelRef, EntityError> {
    let model = &cube.model;
    let dim = model
        .dimension(dimension)
        .ok_or_else(|| EntityError::UnknownDimension {
            name: dimension.to_string(),
            suggestion: suggest(dimension, model.dimensions.iter().map(|d| d.name.as_str())),
        })?;
    let d = &model.dimensions[dim];
    let DimensionKind::Table { table, key, .. } = &d.kind else {
        return Err(EntityError::NoKeyLevel {
            dimension: dimension.to_string(),
            key: "none: it is the time dimension".into(),
        });
    };
    d.levels
        .iter()
        .position(|l| matches!(&l.kind, LevelKind::Column(c) if c.table == *table && c.column == key.column))
        .map(|level| LevelRef { dim, level })
        .ok_or_else(|| EntityError::NoKeyLevel {
            dimension: dimension.to_string(),
            key: key.column.clone(),
        })
}

impl Session {
    /// The view of member `id` of `dimension`'s key level, as `access` may see it; `searches`
    /// are the cube's saved searches (the definition's and the API's).
    pub async fn entity_view(
        &self,
        dimension: &str,
        id: &str,
        searches: &SearchSet,
    ) -> Result<EntityView, EntityError> {
        let cube = self.data();
        let start = Instant::now();
        let model = &cube.model;
        let applied = self.applied()?;
        refuse_suppressed(&applied)?;
        let key = key_level(cube, dimension)?;
        let key_name = model.level_name(key);
        let v = View {
            cube,
            applied: &applied,
            key,
            filter: Filter {
                level: key_name.clone(),
                op: FilterOp::Eq,
                value: Some(id.to_string()),
                values: None,
            },
        };
        let facts: Vec<FactId> = (0..model.facts.len())
            .filter(|&f| model.fact_has_dimension(f, key.dim))
            .collect();
        let code = v.check_member(id, &facts).await?;
        let mut meta = Vec::new();
        let fact_counts: Vec<String> = facts
            .iter()
            .filter_map(|&f| row_measure(model, f))
            .map(|m| model.measures[m].name.clone())
            .collect();
        let (attributes, related) = v.attributes(&fact_counts, &mut meta).await?;
        let held = v.held(&facts, &mut meta).await?;
        let periods = v.periods(&mut meta).await?;
        let bands = v.bands(&fact_counts, &mut meta).await?;
        let breakdowns = v.breakdowns(&facts, &mut meta).await?;
        let (matched, search_failures) = self.searches_of(&key_name, code, searches).await;
        Ok(EntityView {
            cube: model.name.clone(),
            dimension: model.dimensions[key.dim].name.clone(),
            level: key_name,
            id: id.to_string(),
            attributes,
            related,
            held,
            periods,
            bands,
            breakdowns,
            searches: matched,
            search_failures,
            meta: EntityMeta {
                facts: meta,
                elapsed_us: start.elapsed().as_micros() as u64,
                snapshot: cube.version,
            },
        })
    }

    /// Saved searches on the key level `key_name` whose members include the entity (`code`),
    /// by name, and those that could not be evaluated.
    async fn searches_of(
        &self,
        key_name: &str,
        code: u32,
        searches: &SearchSet,
    ) -> (Vec<String>, Vec<SearchFailure>) {
        let mut matched = Vec::new();
        let mut search_failures = Vec::new();
        for (name, s) in searches {
            if s.entity != key_name {
                continue;
            }
            match self.search_members(s).await {
                Ok(found) if found.members.contains(code) => matched.push(name.clone()),
                Ok(_) => {}
                Err(e) => search_failures.push(SearchFailure {
                    name: name.clone(),
                    code: e.code(),
                    message: e.to_string(),
                }),
            }
        }
        (matched, search_failures)
    }
}

/// One member's numbers are exactly what small-cell suppression hides: a principal it applies
/// to is refused.
fn refuse_suppressed(applied: &Applied) -> Result<(), QueryError> {
    if let Some(s) = &applied.suppress {
        return Err(QueryError::Forbidden {
            message: format!(
                "the entity view shows one member's numbers, and small-cell suppression (fewer than {} customers) applies to your role; ask for groups with a query instead",
                s.min
            ),
        });
    }
    Ok(())
}

/// One view request: the cube, the principal's access and the filter on the entity.
struct View<'a> {
    cube: &'a Dataset,
    applied: &'a Applied,
    key: LevelRef,
    filter: Filter,
}

impl View<'_> {
    /// `measures` of the entity grouped by `levels`, under `filters` and the principal's
    /// access, as a query answers them.
    async fn ask(
        &self,
        measures: &[String],
        levels: &[LevelRef],
        filters: &[Filter],
    ) -> Result<Answer, QueryError> {
        let model = &self.cube.model;
        let mut all = vec![self.filter.clone()];
        all.extend_from_slice(filters);
        let q = Query {
            measures: measures.to_vec(),
            rows: levels.iter().map(|l| model.level_name(*l)).collect(),
            filters: all,
            ..Query::default()
        };
        execute_restricted(self.cube, &q, self.applied).await
    }

    /// The entity's member code, resolved as a query's filter resolves it: a name that does
    /// not exist and one outside the principal's scope are the same `unknown_member`. The
    /// `unknown` member (facts without a known key) is not an entity.
    async fn check_member(&self, id: &str, facts: &[FactId]) -> Result<u32, QueryError> {
        let model = &self.cube.model;
        let level = model.level_name(self.key);
        let unknown = || QueryError::UnknownMember {
            level: level.clone(),
            value: id.to_string(),
            suggestions: Vec::new(),
        };
        if id == UNKNOWN_MEMBER {
            return Err(unknown());
        }
        let measure = facts
            .iter()
            .find_map(|&f| row_measure(model, f))
            .ok_or_else(unknown)?;
        let q = Query {
            measures: vec![model.measures[measure].name.clone()],
            filters: vec![self.filter.clone()],
            ..Query::default()
        };
        let r = if self.applied.is_unrestricted() {
            resolve(&q, self.cube)?
        } else {
            resolve_restricted(self.cube, &q, self.applied).await?
        };
        r.filters
            .iter()
            .find(|f| f.level == self.key)
            .and_then(|f| f.members.min())
            .ok_or_else(unknown)
    }

    /// Attributes: the key's dimension's levels fixed per member (the first list), and the
    /// levels of the dimensions linked through it (the second), read with the facts' counts.
    async fn attributes(
        &self,
        fact_counts: &[String],
        meta: &mut Vec<FactMeta>,
    ) -> Result<(Vec<Attribute>, Vec<Attribute>), QueryError> {
        let (cube, key) = (self.cube, self.key);
        let model = &cube.model;
        let own: Vec<LevelRef> = levels_of(model, key.dim)
            .filter(|l| *l != key && per_period(cube, *l).is_none())
            .collect();
        let linked: Vec<LevelRef> = (0..model.dimensions.len())
            .filter(|&d| d != key.dim && via(model, d) == Some(key.dim))
            .flat_map(|d| levels_of(model, d))
            .collect();
        let all: Vec<LevelRef> = own.iter().chain(&linked).copied().collect();
        let a = self.ask(fact_counts, &all, &[]).await?;
        meta.extend(a.meta.facts.iter().cloned());
        let first = a.rows.first();
        let at = |i: usize, l: LevelRef| Attribute {
            level: model.level_name(l),
            member: first.and_then(|r| r[i].as_str()).map(str::to_string),
        };
        let attributes = own.iter().enumerate().map(|(i, &l)| at(i, l)).collect();
        let related = linked
            .iter()
            .enumerate()
            .map(|(i, &l)| at(own.len() + i, l))
            .collect();
        Ok((attributes, related))
    }

    /// Held: the members of other dimensions in the latest period of each closing-period
    /// fact of `facts`.
    async fn held(
        &self,
        facts: &[FactId],
        meta: &mut Vec<FactMeta>,
    ) -> Result<Vec<Held>, QueryError> {
        let cube = self.cube;
        let model = &cube.model;
        let mut held = Vec::new();
        let Some(finest) = cube.index.finest_time else {
            return Ok(held);
        };
        for &f in facts {
            let closing = model.measures.iter().any(|m| {
                matches!(m.kind, MeasureKind::Aggregate { fact, over_time: OverTime::Last, .. } if fact == f)
            });
            // The fact's latest period (not `unknown`, which holds facts without a date).
            let latest = cube.index.present[f]
                .iter()
                .rev()
                .find(|&c| cube.member_name(finest, c) != UNKNOWN_MEMBER);
            let (Some(m), Some(latest)) = (row_measure(model, f), latest) else {
                continue;
            };
            if !closing {
                continue;
            }
            let period = cube.member_name(finest, latest).to_string();
            let at = Filter {
                level: model.level_name(finest),
                op: FilterOp::Eq,
                value: Some(period.clone()),
                values: None,
            };
            for level in other_levels(model, f, self.key.dim) {
                let measure = [model.measures[m].name.clone()];
                let a = self
                    .ask(&measure, &[level], std::slice::from_ref(&at))
                    .await?;
                meta.extend(a.meta.facts.iter().cloned());
                held.push(Held {
                    fact: model.facts[f].name.clone(),
                    level: model.level_name(level),
                    period: period.clone(),
                    members: a
                        .rows
                        .iter()
                        .filter_map(|r| r[0].as_str().map(str::to_string))
                        .collect(),
                });
            }
        }
        Ok(held)
    }

    /// Per period: every measure varying by the entity and time, per finest time period.
    async fn periods(&self, meta: &mut Vec<FactMeta>) -> Result<Table, QueryError> {
        let model = &self.cube.model;
        let Some(finest) = self.cube.index.finest_time else {
            return Ok(Table {
                columns: Vec::new(),
                rows: Vec::new(),
            });
        };
        let measures: Vec<String> = (0..model.measures.len())
            .filter(|&m| model.measure_varies_by(m, self.key) && model.measure_varies_by(m, finest))
            .map(|m| model.measures[m].name.clone())
            .collect();
        let a = self.ask(&measures, &[finest], &[]).await?;
        meta.extend(a.meta.facts.iter().cloned());
        Ok(Table::from(a))
    }

    /// Bands: each per-period level of the dimension, per period of its grain.
    async fn bands(
        &self,
        fact_counts: &[String],
        meta: &mut Vec<FactMeta>,
    ) -> Result<Vec<Bands>, QueryError> {
        let model = &self.cube.model;
        let mut bands = Vec::new();
        for level in levels_of(model, self.key.dim) {
            let Some(period) = per_period(self.cube, level) else {
                continue;
            };
            let a = self.ask(fact_counts, &[period, level], &[]).await?;
            meta.extend(a.meta.facts.iter().cloned());
            bands.push(Bands {
                level: model.level_name(level),
                period_level: model.level_name(period),
                rows: a
                    .rows
                    .iter()
                    .map(|r| {
                        let s = |j: usize| r[j].as_str().unwrap_or_default().to_string();
                        [s(0), s(1)]
                    })
                    .collect(),
            });
        }
        Ok(bands)
    }

    /// Breakdowns: each fact's own measures by its other dimensions' finest levels.
    async fn breakdowns(
        &self,
        facts: &[FactId],
        meta: &mut Vec<FactMeta>,
    ) -> Result<Vec<Breakdown>, QueryError> {
        let (model, key) = (&self.cube.model, self.key);
        let mut breakdowns = Vec::new();
        for &f in facts {
            for level in other_levels(model, f, key.dim) {
                let measures: Vec<String> = (0..model.measures.len())
                    .filter(|&m| {
                        model.measure_facts(m) == [f]
                            && model.measure_varies_by(m, level)
                            && model.measure_varies_by(m, key)
                    })
                    .map(|m| model.measures[m].name.clone())
                    .collect();
                if measures.is_empty() {
                    continue;
                }
                let a = self.ask(&measures, &[level], &[]).await?;
                meta.extend(a.meta.facts.iter().cloned());
                breakdowns.push(Breakdown {
                    fact: model.facts[f].name.clone(),
                    level: model.level_name(level),
                    table: a.into(),
                });
            }
        }
        Ok(breakdowns)
    }
}

fn levels_of(model: &lattice_defs::Model, dim: DimId) -> impl Iterator<Item = LevelRef> + '_ {
    (0..model.dimensions[dim].levels.len()).map(move |level| LevelRef { dim, level })
}

fn via(model: &lattice_defs::Model, dim: DimId) -> Option<DimId> {
    match &model.dimensions[dim].kind {
        DimensionKind::Table { via, .. } => *via,
        DimensionKind::Time => None,
    }
}

/// For a level whose member changes by period (a band over a metric per month): the time
/// level of that period.
fn per_period(cube: &Dataset, level: LevelRef) -> Option<LevelRef> {
    let model = &cube.model;
    let LevelKind::Bucket(b) = &model.dimensions[level.dim].levels[level.level].kind else {
        return None;
    };
    let BucketSource::Metric {
        period: Some(grain),
        ..
    } = b.source
    else {
        return None;
    };
    let t = model.time_dimension()?;
    model.dimensions[t]
        .levels
        .iter()
        .position(|l| matches!(l.kind, LevelKind::Time(g) if g == grain))
        .map(|level| LevelRef { dim: t, level })
}

/// The finest level of each dimension `fact` carries directly, other than `entity`'s and
/// time (product.product and channel.channel for transactions).
fn other_levels(model: &lattice_defs::Model, fact: FactId, entity: DimId) -> Vec<LevelRef> {
    model.facts[fact]
        .direct
        .iter()
        .filter(|&&d| d != entity && !matches!(model.dimensions[d].kind, DimensionKind::Time))
        .filter_map(|&d| {
            let dim = &model.dimensions[d];
            let level = dim
                .hierarchy
                .last()
                .copied()
                .or_else(|| dim.levels.len().checked_sub(1))?;
            Some(LevelRef { dim: d, level })
        })
        .collect()
}
