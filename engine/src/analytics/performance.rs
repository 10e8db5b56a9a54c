//! Performance per member of a level (a customer manager) and period: customers managed, new
//! and lost since the previous period, measures, the share of high-value customers, and the
//! rank within a parent level (the manager's branch).
//!
//! - Customers managed in a period: the distinct customers (members of `customers.level`) with
//!   facts of the distinct measure `customers.measure` in the period under the member — the
//!   union of that measure's roaring sets in the cells of the smallest cuboid holding the
//!   level and period (one pass for every member and period), else a query grouped by
//!   (customer, level, period).
//! - New: in this period's set, not in the previous period's; lost: the other way round. The
//!   previous period of `from` is the period before it when the fact has data there; where it
//!   has none, new and lost are null.
//! - Measures: per (member, period) as a query grouped by both answers them (balances at the
//!   period's closing month).
//! - High-value share: the customers managed whose member of `high_value.level` at the
//!   period's closing month (the latest finest-time period with facts, as balances close) is
//!   one of `high_value.members`, over the customers managed.
//! - Rank: standard competition rank (`RANK()`: 1 is the largest value, ties share a rank and
//!   the next rank skips) of `rank.by` among the members under the same parent member of
//!   `rank.within` in the same period; members without a value rank after those with one.
//!
//! Rows come by period, then parent, then rank, then member.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use lattice_defs::model::{Agg, DimensionKind, FactId, LevelRef, MeasureId, MeasureKind};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{AnalyticsError, AnalyticsMeta, Ctx, default_entity, default_level, only, page};
use crate::query::{Dataset, Session};
use crate::query::{
    Filter, FilterOp, MemberSets, QueryError, ResolvedFilter, V, closing_periods, cmp_v,
    member_sets_by,
};

/// A performance request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PerformanceQuery {
    /// The level whose members are assessed (`manager.manager`).
    pub level: String,
    /// The time level of the periods (default `time.month`).
    #[serde(default = "default_level")]
    pub period: String,
    /// The first and last period, inclusive.
    pub from: String,
    pub to: String,
    /// Who counts as a customer, and the distinct measure whose facts say who was served.
    #[serde(default)]
    pub customers: CustomersSpec,
    /// Measures per member and period (`deposit_balance`, `fee_income`, `contribution`).
    #[serde(default)]
    pub measures: Vec<String>,
    /// Which customers are high-value: members of a band or class level.
    #[serde(default)]
    pub high_value: Option<HighValue>,
    /// Rank within a parent level by a measure.
    #[serde(default)]
    pub rank: Option<RankSpec>,
    /// Which facts count, as a query's filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

/// The customers of a performance request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomersSpec {
    /// The customer level (default `customer.id`).
    #[serde(default = "default_entity")]
    pub level: String,
    /// A distinct count of that level's dimension keys (default `customers`).
    #[serde(default = "default_customers")]
    pub measure: String,
}

impl Default for CustomersSpec {
    fn default() -> CustomersSpec {
        CustomersSpec {
            level: default_entity(),
            measure: default_customers(),
        }
    }
}

fn default_customers() -> String {
    "customers".into()
}

/// High-value customers: those whose member of `level` is one of `members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HighValue {
    pub level: String,
    pub members: Vec<String>,
}

/// Rank within the members of `within` (an ancestor of the level) by measure `by`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RankSpec {
    pub within: String,
    pub by: String,
}

impl PerformanceQuery {
    /// Reads the request; a page beyond [`crate::query::MAX_PAGE_ROWS`] is refused.
    pub fn from_json(text: &str) -> Result<PerformanceQuery, AnalyticsError> {
        let q: PerformanceQuery =
            serde_json::from_str(text).map_err(|e| QueryError::Malformed {
                message: e.to_string(),
            })?;
        crate::query::check_page(q.limit, q.offset)?;
        Ok(q)
    }
}

/// One member in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PerformanceRow {
    pub period: String,
    pub member: String,
    /// The member of `rank.within` above it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Distinct customers with facts in the period.
    pub customers: Option<u64>,
    /// Customers this period who were not customers the previous period (null: no previous
    /// period in the data).
    pub new_customers: Option<u64>,
    /// Customers the previous period who are not this period.
    pub lost_customers: Option<u64>,
    /// Per measure, its value (decimals as exact strings).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub values: serde_json::Map<String, Json>,
    /// Customers managed who are high-value at the period's close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_value_customers: Option<u64>,
    /// `high_value_customers / customers` (null when either is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high_value_share: Option<f64>,
    /// Rank within the parent in this period (1 = the largest `rank.by`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
}

/// How the answer was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PerformanceMeta {
    /// `member_sets` (roaring sets of a cuboid) or `grouped` (a grouped query).
    pub source: &'static str,
    /// The distinct measure whose sets were used.
    pub via_measure: String,
    /// The cuboid whose sets were read.
    pub cuboid: Option<Vec<String>>,
    /// Per period, the closing finest-time period at which high value is read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub closing: Vec<Option<String>>,
    #[serde(flatten)]
    pub run: AnalyticsMeta,
}

/// Performance rows, by period, parent, rank and member.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PerformanceAnswer {
    pub level: String,
    pub period: String,
    /// The periods from `from` to `to`.
    pub periods: Vec<String>,
    pub measures: Vec<String>,
    /// Rows before paging.
    pub total: usize,
    pub rows: Vec<PerformanceRow>,
    pub meta: PerformanceMeta,
}

/// Names the request field a query error comes from.
fn at<T>(field: &str, r: Result<T, AnalyticsError>) -> Result<T, AnalyticsError> {
    r.map_err(|e| match e {
        AnalyticsError::Query(_) => AnalyticsError::At {
            field: field.to_string(),
            source: Box::new(e),
        },
        e => e,
    })
}

/// The fact of `via` when it is a distinct count of the keys of `entity`'s dimension.
fn customers_fact(ctx: &Ctx<'_>, via: MeasureId, entity: LevelRef) -> Result<FactId, String> {
    let model = ctx.model();
    let dim = &model.dimensions[entity.dim];
    let DimensionKind::Table { key, .. } = &dim.kind else {
        return Err(format!("'{}' has no key to count", dim.name));
    };
    match &model.measures[via].kind {
        MeasureKind::Aggregate {
            fact,
            agg: Agg::Distinct,
            column: Some(c),
            ..
        } if c.column == key.column && model.facts[*fact].direct.contains(&entity.dim) => Ok(*fact),
        _ => Err(format!(
            "'{}' is not a distinct count of the keys of '{}' ({}); name one such as `customers`",
            model.measures[via].name, dim.name, key.column
        )),
    }
}

/// Whether `within` is above `level` in their dimension's hierarchy; else the levels that are.
fn check_ancestor(ctx: &Ctx<'_>, level: LevelRef, within: LevelRef) -> Result<(), AnalyticsError> {
    let model = ctx.model();
    let h = &model.dimensions[level.dim].hierarchy;
    let above: Vec<usize> = match h.iter().position(|l| *l == level.level) {
        Some(i) => h[..i].to_vec(),
        None => Vec::new(),
    };
    if within.dim == level.dim && above.contains(&within.level) {
        return Ok(());
    }
    Err(AnalyticsError::NotAnAncestor {
        within: model.level_name(within),
        level: model.level_name(level),
        ancestors: above
            .iter()
            .map(|&l| {
                model.level_name(LevelRef {
                    dim: level.dim,
                    level: l,
                })
            })
            .collect(),
    })
}

/// Per (member of `by`..., as keys) the members of `entity`, from a cuboid's sets or a grouped
/// query; the source and cuboid.
async fn sets_by(
    ctx: &mut Ctx<'_>,
    fact: FactId,
    via: MeasureId,
    entity: LevelRef,
    by: &[LevelRef],
    filters: &[ResolvedFilter],
) -> Result<(MemberSets, Option<Vec<LevelRef>>), AnalyticsError> {
    if let Some((sets, cuboid)) = member_sets_by(ctx.cube, fact, via, entity, by, filters) {
        return Ok((sets, Some(cuboid)));
    }
    let mut levels = by.to_vec();
    levels.push(entity);
    let mut sets = MemberSets::new();
    for key in ctx.values(via, &levels, filters).await?.keys() {
        let (group, e) = key.split_at(by.len());
        sets.entry(group.to_vec()).or_default().insert(e[0]);
    }
    Ok((sets, None))
}

/// Standard competition ranks (largest first, `None` last and tied) of `values`.
fn ranks(values: &[Option<V>]) -> Vec<u64> {
    // Best first: values descending, then the missing ones.
    let order = |x: &Option<V>, y: &Option<V>| match (x, y) {
        (Some(x), Some(y)) => cmp_v(*y, *x),
        (x, y) => y.is_some().cmp(&x.is_some()),
    };
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&i, &j| order(&values[i], &values[j]));
    let mut out = vec![0; values.len()];
    for (pos, &i) in idx.iter().enumerate() {
        out[i] = match pos.checked_sub(1).map(|p| idx[p]) {
            Some(prev) if order(&values[prev], &values[i]).is_eq() => out[prev],
            _ => pos as u64 + 1,
        };
    }
    out
}

/// A request's names resolved, with the filters of the customer sets.
struct Plan {
    level: LevelRef,
    period: LevelRef,
    /// The first and last period's codes.
    from: u32,
    to: u32,
    entity: LevelRef,
    via: MeasureId,
    fact: FactId,
    measures: Vec<MeasureId>,
    /// `rank.within` and `rank.by`.
    rank: Option<(LevelRef, MeasureId)>,
    /// The request's filters and the scope, resolved for the customer sets.
    base: Vec<ResolvedFilter>,
    /// The periods of `period` with facts of the customers' fact.
    present: BTreeSet<u32>,
}

impl Plan {
    /// The period before `p` when the customers' fact has data there.
    fn prev(&self, p: u32) -> Option<u32> {
        p.checked_sub(1).filter(|p| self.present.contains(p))
    }

    fn range(&self) -> std::ops::RangeInclusive<u32> {
        self.from..=self.to
    }
}

async fn plan(ctx: &Ctx<'_>, q: &PerformanceQuery) -> Result<Plan, AnalyticsError> {
    let cube = ctx.cube;
    let level = at("level", ctx.entity_level(&q.level, "`level`"))?;
    let period = at("period", ctx.time_level(&q.period, "`period`"))?;
    let from = at("from", ctx.period(period, &q.from))?;
    let to = at("to", ctx.period(period, &q.to))?;
    if from > to {
        return Err(AnalyticsError::PeriodOrder {
            level: q.period.clone(),
            before: q.from.clone(),
            after: q.to.clone(),
        });
    }
    let entity = at(
        "customers.level",
        ctx.entity_level(&q.customers.level, "`customers.level`"),
    )?;
    let via = at("customers.measure", ctx.measure(&q.customers.measure))?;
    let fact = customers_fact(ctx, via, entity).map_err(|message| AnalyticsError::Invalid {
        field: "customers.measure",
        message,
    })?;
    let measures = q
        .measures
        .iter()
        .map(|m| at("measures", ctx.measure(m)))
        .collect::<Result<Vec<_>, _>>()?;
    let rank = match &q.rank {
        Some(r) => {
            let within = at("rank.within", ctx.level(&r.within))?;
            check_ancestor(ctx, level, within)?;
            Some((within, at("rank.by", ctx.measure(&r.by))?))
        }
        None => None,
    };
    // The grouping alone first, so that a level the customers' fact lacks is named as such.
    at(
        "level",
        ctx.filters(via, &[entity, level, period], &[]).await,
    )?;
    let base = at(
        "filters",
        ctx.filters(via, &[entity, level, period], &q.filters).await,
    )?;
    let finest = finest(cube)?;
    let to_period = cube.parent_map(finest.dim, finest.level, period.level);
    let present = cube.index.present[fact]
        .iter()
        .map(|p| to_period.map_or(p, |m| m[p as usize]))
        .collect();
    Ok(Plan {
        level,
        period,
        from,
        to,
        entity,
        via,
        fact,
        measures,
        rank,
        base,
        present,
    })
}

fn finest(cube: &Dataset) -> Result<LevelRef, AnalyticsError> {
    cube.index.finest_time.ok_or_else(|| {
        QueryError::Engine {
            message: "a cube with a time level has a finest time level".into(),
        }
        .into()
    })
}

/// Per period, the customers who are high-value at its closing period (and those closing
/// periods, for the answer's meta).
async fn high_value(
    ctx: &mut Ctx<'_>,
    q: &PerformanceQuery,
    hv: &HighValue,
    plan: &Plan,
) -> Result<(HashMap<u32, RoaringBitmap>, Vec<Option<String>>), AnalyticsError> {
    let cube = ctx.cube;
    let band = at(
        "high_value.level",
        ctx.entity_level(&hv.level, "`high_value.level`"),
    )?;
    if hv.members.is_empty() {
        return Err(AnalyticsError::Invalid {
            field: "high_value.members",
            message: format!("name at least one member of '{}'", hv.level),
        });
    }
    at(
        "high_value.level",
        ctx.filters(plan.via, &[plan.entity, band], &[]).await,
    )?;
    let mut filters = q.filters.clone();
    filters.push(Filter {
        level: hv.level.clone(),
        op: FilterOp::In,
        value: None,
        values: Some(hv.members.clone()),
    });
    let mut f = at(
        "high_value.members",
        ctx.filters(plan.via, &[plan.entity, band], &filters).await,
    )?;
    let finest = finest(cube)?;
    let mut period_of: HashMap<u32, u32> = HashMap::new();
    let mut closing = Vec::new();
    for p in plan.range() {
        let mut with_period = plan.base.clone();
        with_period.push(only(plan.period, [p]));
        let c =
            closing_periods(cube, plan.fact, &[plan.period], &with_period).and_then(|c| c.min());
        closing.push(c.map(|c| cube.member_name(finest, c).to_string()));
        if let Some(c) = c {
            period_of.insert(c, p);
        }
    }
    f.push(only(finest, period_of.keys().copied()));
    let (by_close, _) = sets_by(ctx, plan.fact, plan.via, plan.entity, &[finest], &f).await?;
    let sets = by_close
        .into_iter()
        .filter_map(|(k, s)| Some((*period_of.get(&k[0])?, s)))
        .collect();
    Ok((sets, closing))
}

/// One row before ranking, with what it is sorted and ranked by.
struct Built {
    period: u32,
    parent: Option<u32>,
    member: u32,
    by: Option<V>,
    row: PerformanceRow,
}

/// What the rows are built from: the customer sets and the measures' values per
/// (member, period), and the high-value customers per period.
struct Gathered {
    /// Customers per `[member, period]`, the period before `from` included.
    sets: MemberSets,
    /// The measures asked for, then the rank's when it is not among them.
    wanted: Vec<MeasureId>,
    /// Per measure of `wanted`: its value per `[member, period]`.
    values: Vec<BTreeMap<Vec<u32>, V>>,
    /// Per period, the customers high-value at its closing period.
    high: HashMap<u32, RoaringBitmap>,
    empty: RoaringBitmap,
}

impl Gathered {
    /// The customers of member `m` in period `p`.
    fn set(&self, m: u32, p: u32) -> &RoaringBitmap {
        self.sets.get(&vec![m, p]).unwrap_or(&self.empty)
    }

    /// The value of measure `i` of `wanted` for member `m` in period `p`.
    fn value(&self, i: usize, m: u32, p: u32) -> V {
        match self.values[i].get(&vec![m, p]) {
            Some(v) => *v,
            _ => V::Null,
        }
    }
}

impl Session {
    /// Performance of the members of `q.level` per period of `q.period`, as `access` may see it.
    pub async fn performance(
        &self,
        q: &PerformanceQuery,
    ) -> Result<PerformanceAnswer, AnalyticsError> {
        let cube = self.data();
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        let model = ctx.model();
        let plan = plan(&ctx, q).await?;
        let period = plan.period;
        let (sets, cuboid) = customer_sets(&mut ctx, &plan).await?;
        let (wanted, values) = measure_values(&mut ctx, q, &plan).await?;
        let (high, closing) = match &q.high_value {
            Some(hv) => high_value(&mut ctx, q, hv, &plan).await?,
            None => (HashMap::new(), Vec::new()),
        };
        let g = Gathered {
            sets,
            wanted,
            values,
            high,
            empty: RoaringBitmap::new(),
        };
        let min = ctx.applied.suppress.as_ref().map(|s| s.min);
        let mut built = build_rows(cube, q, &plan, &g, min);
        if plan.rank.is_some() {
            rank_rows(&mut built);
        }
        built.sort_by_key(|b| (b.period, b.parent, b.row.rank.unwrap_or(u64::MAX), b.member));
        let total = built.len();
        let rows = page(built, q.offset, q.limit)
            .into_iter()
            .map(|b| b.row)
            .collect();
        let meta = PerformanceMeta {
            source: if cuboid.is_some() {
                "member_sets"
            } else {
                "grouped"
            },
            via_measure: model.measures[plan.via].name.clone(),
            cuboid: cuboid.map(|ls| ls.iter().map(|l| model.level_name(*l)).collect()),
            closing,
            run: ctx.meta(start),
        };
        Ok(PerformanceAnswer {
            level: q.level.clone(),
            period: q.period.clone(),
            periods: plan
                .range()
                .map(|p| cube.member_name(period, p).to_string())
                .collect(),
            measures: q.measures.clone(),
            total,
            rows,
            meta,
        })
    }
}

/// Customers per (member, period), the period before `from` included, and the cuboid whose
/// sets gave them (`None`: a grouped query).
async fn customer_sets(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
) -> Result<(MemberSets, Option<Vec<LevelRef>>), AnalyticsError> {
    let (level, period) = (plan.level, plan.period);
    let mut f = plan.base.clone();
    f.push(only(
        period,
        plan.prev(plan.from).unwrap_or(plan.from)..=plan.to,
    ));
    sets_by(ctx, plan.fact, plan.via, plan.entity, &[level, period], &f).await
}

/// Measures per (member, period) from `from` to `to`; the rank's too when it is not among
/// them. The measures, in that order, and their values.
async fn measure_values(
    ctx: &mut Ctx<'_>,
    q: &PerformanceQuery,
    plan: &Plan,
) -> Result<(Vec<MeasureId>, Vec<BTreeMap<Vec<u32>, V>>), AnalyticsError> {
    let (level, period) = (plan.level, plan.period);
    let mut wanted = plan.measures.clone();
    if let Some((_, by)) = plan.rank
        && !wanted.contains(&by)
    {
        wanted.push(by);
    }
    let mut values: Vec<BTreeMap<Vec<u32>, V>> = Vec::new();
    for &m in &wanted {
        let mut f = at(
            "measures",
            ctx.filters(m, &[level, period], &q.filters).await,
        )?;
        f.push(only(period, plan.range()));
        values.push(ctx.values(m, &[level, period], &f).await?);
    }
    Ok((wanted, values))
}

/// The (period, member) pairs with customers now or the period before, or a value.
fn pairs(plan: &Plan, g: &Gathered) -> BTreeSet<(u32, u32)> {
    let mut pairs: BTreeSet<(u32, u32)> = BTreeSet::new();
    for (k, s) in &g.sets {
        if s.is_empty() {
            continue;
        }
        let (m, p) = (k[0], k[1]);
        if plan.range().contains(&p) {
            pairs.insert((p, m));
        }
        if let Some(next) = p.checked_add(1)
            && plan.range().contains(&next)
            && plan.prev(next) == Some(p)
        {
            pairs.insert((next, m));
        }
    }
    for vals in &g.values {
        for (k, v) in vals {
            if *v != V::Null {
                pairs.insert((k[1], k[0]));
            }
        }
    }
    pairs
}

/// One row per pair of [`pairs`], unranked, in pair order. Under suppression (`min`) a member
/// with too few customers in a period is left out, as one without any is: its row alone would
/// say that 1 to 4 customers are there.
fn build_rows(
    cube: &Dataset,
    q: &PerformanceQuery,
    plan: &Plan,
    g: &Gathered,
    min: Option<u64>,
) -> Vec<Built> {
    let model = &cube.model;
    let (level, period) = (plan.level, plan.period);
    let hide = |n: u64| min.is_some_and(|min| n > 0 && n < min);
    let within = plan.rank.map(|(w, _)| w);
    let parent_map = within.and_then(|w| cube.parent_map(level.dim, level.level, w.level));
    let parent_of = |m: u32| parent_map.map(|map| map[m as usize]);
    let pairs = pairs(plan, g);
    let mut built: Vec<Built> = Vec::with_capacity(pairs.len());
    for &(p, m) in &pairs {
        let now = g.set(m, p);
        let n = now.len();
        if hide(n) {
            continue;
        }
        let count = |x: u64| (!hide(x)).then_some(x);
        let prev = plan.prev(p).map(|pp| g.set(m, pp));
        let shown = plan
            .measures
            .iter()
            .enumerate()
            .map(|(i, &mid)| (model.measures[mid].name.clone(), g.value(i, m, p).json()))
            .collect();
        // The customers are shown, so the high-value count also tells the others': both
        // must be large enough to show.
        let high_value_customers = q.high_value.as_ref().and_then(|_| {
            let h = g.high.get(&p).map_or(0, |s| (now & s).len());
            count(h).filter(|_| !hide(n - h))
        });
        let by = plan.rank.and_then(|(_, by)| {
            let i = g.wanted.iter().position(|w| *w == by)?;
            Some(g.value(i, m, p)).filter(|v| *v != V::Null)
        });
        // New and lost customers, both or neither: the customer counts of this period and the
        // one before give `new - lost`, so one withheld beside the other shown is no secret.
        let moves = prev.and_then(|prev| {
            let (new, lost) = ((now - prev).len(), (prev - now).len());
            Some((count(new)?, count(lost)?))
        });
        let parent = parent_of(m);
        built.push(Built {
            period: p,
            parent,
            member: m,
            by,
            row: PerformanceRow {
                period: cube.member_name(period, p).to_string(),
                member: cube.member_name(level, m).to_string(),
                parent: within
                    .zip(parent)
                    .map(|(w, c)| cube.member_name(w, c).to_string()),
                customers: Some(n),
                new_customers: moves.map(|(new, _)| new),
                lost_customers: moves.map(|(_, lost)| lost),
                values: shown,
                high_value_customers,
                high_value_share: high_value_customers
                    .filter(|_| n > 0)
                    .map(|h| h as f64 / n as f64),
                rank: None,
            },
        });
    }
    built
}

/// Ranks each row among those of the same period and parent, by its rank measure.
fn rank_rows(built: &mut [Built]) {
    let mut groups: BTreeMap<(u32, Option<u32>), Vec<usize>> = BTreeMap::new();
    for (i, b) in built.iter().enumerate() {
        groups.entry((b.period, b.parent)).or_default().push(i);
    }
    for idx in groups.values() {
        let by: Vec<Option<V>> = idx.iter().map(|&i| built[i].by).collect();
        for (&i, r) in idx.iter().zip(ranks(&by)) {
            built[i].row.rank = Some(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_are_standard_competition_ranks_with_missing_values_last() {
        let v = |x: i128| Some(V::Int(x));
        assert_eq!(
            ranks(&[v(5), v(9), v(5), None, v(1), None]),
            vec![2, 1, 2, 5, 4, 5]
        );
        let d = |x: i128, s: i8| Some(V::Dec(x, s));
        // 1.50 and 1.5 are equal; exact decimals compare across scales.
        assert_eq!(ranks(&[d(150, 2), d(15, 1), d(2, 0)]), vec![2, 2, 1]);
        assert_eq!(ranks(&[]), Vec::<u64>::new());
    }

    #[test]
    fn the_request_reads_with_defaults() {
        let q = PerformanceQuery::from_json(
            r#"{"level": "manager.manager", "from": "2025-01", "to": "2025-03"}"#,
        )
        .expect("request");
        assert_eq!(q.period, "time.month");
        assert_eq!(q.customers, CustomersSpec::default());
        assert!(
            PerformanceQuery::from_json(r#"{"level": "a", "from": "x", "to": "y", "rnk": 1}"#)
                .is_err()
        );
    }
}
