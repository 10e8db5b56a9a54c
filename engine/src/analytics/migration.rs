//! Band migration: the members of an entity (customers) by their member of a band level in
//! one period against the same level in a later one, with counts and measure totals per
//! transition, and drill-through from a transition to its members.
//!
//! A member's band in a period is its band at the period's closing period (the latest
//! finest-time period of the period present in the fact), as a balance closes: each member is
//! in one band per period, so the transitions partition the members. For each band member the
//! set of members in it is the union of the roaring sets of a distinct measure over the
//! entity's key (`customers`) in the cells of the smallest cuboid holding the band and time
//! levels, filtered to that closing period — no rescan; a transition's members are the
//! intersection of two such sets. Where no cuboid holds the sets (keys that are not integers,
//! no covering cuboid) a query grouped by (entity, band) gives them. Members in only one of
//! the two periods move from or to `null`. Measure totals per transition add up the members'
//! values of each period, from a query grouped by (entity, period).

use std::collections::HashMap;
use std::time::Instant;

use lattice_defs::model::{
    Agg, BinOp, BucketSource, DimensionKind, FactId, LevelKind, LevelRef, MeasureId, MeasureKind,
};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{AnalyticsError, AnalyticsMeta, Ctx, default_entity, default_level, only, page};
use crate::query::Session;
use crate::query::{Filter, QueryError, ResolvedFilter, V, closing_periods, member_sets};

/// A migration matrix request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrationQuery {
    /// The band level (`customer.deposit_band`).
    pub band: String,
    /// The members that move (default `customer.id`, the key level of the band's dimension).
    #[serde(default = "default_entity")]
    pub entity: String,
    /// The time level of the two periods (default `time.month`).
    #[serde(default = "default_level")]
    pub level: String,
    /// The earlier and the later period.
    pub from: String,
    pub to: String,
    /// Measures totalled per transition, in each period (`<m>_from`, `<m>_to`).
    #[serde(default)]
    pub measures: Vec<String>,
    /// Which facts count, as a query's filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

impl MigrationQuery {
    pub fn from_json(text: &str) -> Result<MigrationQuery, AnalyticsError> {
        malformed(serde_json::from_str(text))
    }
}

fn malformed<T>(r: serde_json::Result<T>) -> Result<T, AnalyticsError> {
    r.map_err(|e| {
        QueryError::Malformed {
            message: e.to_string(),
        }
        .into()
    })
}

/// One transition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationCell {
    /// The band in the earlier period; null: the member had no facts there (it entered).
    pub from: Option<String>,
    /// The band in the later period; null: no facts there (it left).
    pub to: Option<String>,
    /// Members that made this move.
    pub members: u64,
    /// Per measure, `<m>_from` and `<m>_to`: the total over these members in each period.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub values: serde_json::Map<String, Json>,
}

/// How the member sets were found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationMeta {
    /// `member_sets` (roaring sets of a cuboid) or `grouped` (a query grouped by entity and band).
    pub source: &'static str,
    /// The distinct measure whose sets were used.
    pub via_measure: String,
    /// The cuboid whose sets were read.
    pub cuboid: Option<Vec<String>>,
    /// The closing periods read (finest time level) for `from` and `to`.
    pub closing: Vec<Option<String>>,
    #[serde(flatten)]
    pub run: AnalyticsMeta,
}

/// The migration matrix as a list of non-empty transitions, in band order (null last).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationAnswer {
    pub band: String,
    pub entity: String,
    pub level: String,
    pub from: String,
    pub to: String,
    /// The band level's members, in order (the matrix's rows and columns).
    pub bands: Vec<String>,
    pub cells: Vec<MigrationCell>,
    pub meta: MigrationMeta,
}

/// Drill-through from one transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct MigrationDrill {
    pub migration: MigrationQuery,
    /// The transition's bands; null or absent: not in any band in that period.
    #[serde(default)]
    pub from_band: Option<String>,
    #[serde(default)]
    pub to_band: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

impl MigrationDrill {
    /// Reads the request; a page beyond [`crate::query::MAX_PAGE_ROWS`] is refused.
    pub fn from_json(text: &str) -> Result<MigrationDrill, AnalyticsError> {
        let d: MigrationDrill = malformed(serde_json::from_str(text))?;
        crate::query::check_page(d.limit, d.offset)?;
        Ok(d)
    }
}

/// The members behind a transition, in member order, with their values in both periods.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MigrationDrillAnswer {
    pub entity: String,
    pub from_band: Option<String>,
    pub to_band: Option<String>,
    /// Members behind the transition (before paging).
    pub total: u64,
    /// `entity`, then `<m>_from`, `<m>_to` per measure.
    pub columns: Vec<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
    /// The members are listed but their values are null: each row is one member's numbers,
    /// a cell smaller than the principal's small-cell threshold.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub values_suppressed: bool,
    pub meta: MigrationMeta,
}

/// The members of each band in both periods, and the measures per member and period.
struct Prepared {
    entity: LevelRef,
    band: LevelRef,
    /// `[from, to]`: per band member, the entity members in it.
    sets: [Vec<RoaringBitmap>; 2],
    measures: Vec<MeasureId>,
    /// Per measure: (entity member, period) -> value; periods `0` (from) and `1` (to).
    values: Vec<HashMap<(u32, u8), V>>,
    min_customers: Option<u64>,
    source: &'static str,
    via: MeasureId,
    cuboid: Option<Vec<LevelRef>>,
    closing: Vec<Option<u32>>,
    finest: LevelRef,
}

impl Prepared {
    fn all(&self, side: usize) -> RoaringBitmap {
        self.sets[side]
            .iter()
            .fold(RoaringBitmap::new(), |a, s| a | s)
    }

    /// The members of the transition (`None`: in no band in that period).
    fn cell(&self, from: Option<usize>, to: Option<usize>) -> RoaringBitmap {
        let side = |s: usize, b: Option<usize>| match b {
            Some(b) => self.sets[s][b].clone(),
            None => self.all(1 - s) - self.all(s),
        };
        side(0, from) & side(1, to)
    }

    fn small(&self, n: u64) -> bool {
        self.min_customers.is_some_and(|min| n > 0 && n < min)
    }

    fn meta(&self, ctx: &mut Ctx<'_>, start: Instant) -> MigrationMeta {
        let model = ctx.model();
        MigrationMeta {
            source: self.source,
            via_measure: model.measures[self.via].name.clone(),
            cuboid: self
                .cuboid
                .as_ref()
                .map(|ls| ls.iter().map(|l| model.level_name(*l)).collect()),
            closing: self
                .closing
                .iter()
                .map(|c| c.map(|c| ctx.cube.member_name(self.finest, c).to_string()))
                .collect(),
            run: ctx.meta(start),
        }
    }
}

/// The distinct measure over the entity's key whose sets say who is in a band: on the fact of
/// the band's metric when it has one (deposit bands: the balances' `customers`).
fn via_measure(
    ctx: &Ctx<'_>,
    entity: LevelRef,
    band: LevelRef,
) -> Result<(MeasureId, FactId), AnalyticsError> {
    let model = ctx.model();
    let entity_name = model.level_name(entity);
    let DimensionKind::Table { key, .. } = &model.dimensions[entity.dim].kind else {
        return Err(AnalyticsError::TimeLevel {
            level: entity_name,
            role: "`entity`",
        });
    };
    let candidates: Vec<(MeasureId, FactId)> = model
        .measures
        .iter()
        .enumerate()
        .filter_map(|(m, meas)| match &meas.kind {
            MeasureKind::Aggregate {
                fact,
                agg: Agg::Distinct,
                column: Some(c),
                ..
            } if c.column == key.column
                && model.facts[*fact].direct.contains(&entity.dim)
                && model.fact_has_dimension(*fact, band.dim) =>
            {
                Some((m, *fact))
            }
            _ => None,
        })
        .collect();
    let metric_fact = match &model.dimensions[band.dim].levels[band.level].kind {
        LevelKind::Bucket(b) => match &b.source {
            BucketSource::Metric { measure, .. } => match model.measures[*measure].kind {
                MeasureKind::Aggregate { fact, .. } => Some(fact),
                MeasureKind::Derived(_) => None,
            },
            BucketSource::Column(_) => None,
        },
        _ => None,
    };
    candidates
        .iter()
        .find(|(_, f)| Some(*f) == metric_fact)
        .or(candidates.first())
        .copied()
        .ok_or_else(|| {
            QueryError::BadDrill {
                level: entity_name,
                message: format!(
                    "no distinct measure counts the keys of '{}' ({}); band migration needs one",
                    model.dimensions[entity.dim].name, key.column
                ),
            }
            .into()
        })
}

async fn prepare(ctx: &mut Ctx<'_>, q: &MigrationQuery) -> Result<Prepared, AnalyticsError> {
    let cube = ctx.cube;
    let band = ctx.entity_level(&q.band, "`band`")?;
    let entity = ctx.entity_level(&q.entity, "`entity`")?;
    let level = ctx.time_level(&q.level, "`level`")?;
    let (pa, pb) = (ctx.period(level, &q.from)?, ctx.period(level, &q.to)?);
    if pa >= pb {
        return Err(AnalyticsError::PeriodOrder {
            level: q.level.clone(),
            before: q.from.clone(),
            after: q.to.clone(),
        });
    }
    let measures = q
        .measures
        .iter()
        .map(|m| ctx.measure(m))
        .collect::<Result<Vec<_>, _>>()?;
    let (via, fact) = via_measure(ctx, entity, band)?;
    let base = ctx.filters(via, &[entity, band], &q.filters).await?;
    let finest = cube.index.finest_time.ok_or_else(|| QueryError::Engine {
        message: "a cube with a time level has a finest time level".into(),
    })?;
    let n_bands = cube.members(band).len();
    let mut sets: [Vec<RoaringBitmap>; 2] = [Vec::new(), Vec::new()];
    let mut closing = Vec::new();
    let mut source = "member_sets";
    let mut cuboid = None;
    for (side, p) in [pa, pb].into_iter().enumerate() {
        let mut with_period = base.clone();
        with_period.push(only(level, [p]));
        let close = closing_periods(cube, fact, &[level], &with_period).and_then(|c| c.min());
        closing.push(close);
        let Some(close) = close else {
            sets[side] = vec![RoaringBitmap::new(); n_bands];
            continue;
        };
        let mut at: Vec<ResolvedFilter> = base.clone();
        at.push(only(finest, [close]));
        let mut found = Vec::with_capacity(n_bands);
        for b in 0..n_bands as u32 {
            let mut f = at.clone();
            f.push(only(band, [b]));
            match member_sets(cube, fact, via, entity, &f) {
                Some((set, c)) if source == "member_sets" => {
                    cuboid = Some(c);
                    found.push(set);
                }
                _ => {
                    found.clear();
                    break;
                }
            }
        }
        if found.len() != n_bands {
            // No cuboid holds the sets: the (entity, band) groups of a query.
            source = "grouped";
            cuboid = None;
            found = vec![RoaringBitmap::new(); n_bands];
            for key in ctx.values(via, &[entity, band], &at).await?.keys() {
                found[key[1] as usize].insert(key[0]);
            }
        }
        sets[side] = found;
    }
    let mut values = Vec::new();
    for &m in &measures {
        let mut f = ctx.filters(m, &[entity, level], &q.filters).await?;
        f.push(only(level, [pa, pb]));
        let by = ctx.values(m, &[entity, level], &f).await?;
        values.push(
            by.into_iter()
                .map(|(k, v)| ((k[0], u8::from(k[1] == pb)), v))
                .collect(),
        );
    }
    Ok(Prepared {
        entity,
        band,
        sets,
        measures,
        values,
        min_customers: ctx.applied.suppress.as_ref().map(|s| s.min),
        source,
        via,
        cuboid,
        closing,
        finest,
    })
}

impl Session {
    /// The migration matrix of `q.band` from `q.from` to `q.to`, as `access` may see it.
    pub async fn migration(&self, q: &MigrationQuery) -> Result<MigrationAnswer, AnalyticsError> {
        let cube = self.data();
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        let p = prepare(&mut ctx, q).await?;
        let model = ctx.model();
        let n = cube.members(p.band).len();
        let choices: Vec<Option<usize>> = (0..n).map(Some).chain([None]).collect();
        let name = |b: Option<usize>| b.map(|b| cube.member_name(p.band, b as u32).to_string());
        let mut cells = Vec::new();
        for &from in &choices {
            for &to in &choices {
                if from.is_none() && to.is_none() {
                    continue;
                }
                let members = p.cell(from, to);
                // Under suppression a small transition is left out, as an empty one is: its
                // presence alone would say that 1 to 4 members made it.
                if members.is_empty() || p.small(members.len()) {
                    continue;
                }
                let mut values = serde_json::Map::new();
                for (i, m) in p.measures.iter().enumerate() {
                    for (side, suffix) in [(0u8, "from"), (1u8, "to")] {
                        let total = members.iter().fold(V::Null, |acc, e| {
                            match p.values[i].get(&(e, side)).copied().unwrap_or(V::Null) {
                                V::Null => acc,
                                v if acc == V::Null => v,
                                v => V::binary(BinOp::Add, acc, v),
                            }
                        });
                        values.insert(
                            format!("{}_{suffix}", model.measures[*m].name),
                            total.json(),
                        );
                    }
                }
                cells.push(MigrationCell {
                    from: name(from),
                    to: name(to),
                    members: members.len(),
                    values,
                });
            }
        }
        let meta = p.meta(&mut ctx, start);
        Ok(MigrationAnswer {
            band: q.band.clone(),
            entity: q.entity.clone(),
            level: q.level.clone(),
            from: q.from.clone(),
            to: q.to.clone(),
            bands: cube.members(p.band).names.clone(),
            cells,
            meta,
        })
    }
}

impl Session {
    /// The members behind one transition of a migration matrix, paged in member order.
    pub async fn migration_drill(
        &self,
        d: &MigrationDrill,
    ) -> Result<MigrationDrillAnswer, AnalyticsError> {
        let cube = self.data();
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        let q = &d.migration;
        let p = prepare(&mut ctx, q).await?;
        let model = ctx.model();
        let band_code = |b: &Option<String>| -> Result<Option<usize>, AnalyticsError> {
            b.as_deref()
                .map(|name| {
                    let dict = cube.members(p.band);
                    dict.code(name).map(|c| c as usize).ok_or_else(|| {
                        QueryError::UnknownMember {
                            level: q.band.clone(),
                            value: name.to_string(),
                            suggestions: lattice_defs::diag::suggest_many(
                                name,
                                dict.names.iter().map(String::as_str),
                                3,
                            ),
                        }
                        .into()
                    })
                })
                .transpose()
        };
        let (from, to) = (band_code(&d.from_band)?, band_code(&d.to_band)?);
        let members = if from.is_none() && to.is_none() {
            RoaringBitmap::new()
        } else {
            p.cell(from, to)
        };
        let mut columns = vec![q.entity.clone()];
        for m in &p.measures {
            let name = &model.measures[*m].name;
            columns.push(format!("{name}_from"));
            columns.push(format!("{name}_to"));
        }
        // A small transition answers as an empty one does (no one, no flag): telling them apart
        // would say that 1 to 4 members made it. One member's values are a cell of one member:
        // under suppression they are withheld, as drill-through withholds them.
        let small = p.small(members.len());
        let values_suppressed = !small && !members.is_empty() && p.small(1);
        let (total, rows) = if small {
            (0, Vec::new())
        } else {
            let codes: Vec<u32> = members.iter().collect();
            let rows = page(
                codes,
                d.offset,
                Some(d.limit.unwrap_or(crate::query::DEFAULT_DRILL_LIMIT)),
            )
            .into_iter()
            .map(|e| {
                let mut row = vec![Json::String(cube.member_name(p.entity, e).to_string())];
                for vals in &p.values {
                    for side in [0u8, 1] {
                        let v = if values_suppressed {
                            V::Null
                        } else {
                            vals.get(&(e, side)).copied().unwrap_or(V::Null)
                        };
                        row.push(v.json());
                    }
                }
                row
            })
            .collect();
            (members.len(), rows)
        };
        let meta = p.meta(&mut ctx, start);
        Ok(MigrationDrillAnswer {
            entity: q.entity.clone(),
            from_band: d.from_band.clone(),
            to_band: d.to_band.clone(),
            total,
            columns,
            rows,
            values_suppressed,
            meta,
        })
    }
}
