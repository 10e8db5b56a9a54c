//! The fallback: a question no cuboid covers becomes one DataFusion SQL query over the raw
//! facts. Members come from code functions (scalar UDFs: a fact's key, and for per-period
//! bands its period, -> member code, per level) registered next to the sources, built from the
//! same encoding as the cube, so both paths agree on every member, `unknown` included, and
//! return the same [`Grouped`] shape. A function is an array lookup per row, where a join to a
//! code table (100k customers, or customers x months for a band) cost a hash join per level.
//!
//! ```sql
//! SELECT __lattice0_d1_l3_x1(b.k0) AS g0, SUM(b.x0) AS a0, COUNT(DISTINCT b.x1) AS a1
//! FROM (SELECT CAST(f."customer_id" AS BIGINT) AS k0, <period> AS p, f."amount" AS x0, ...
//!       FROM "transactions" AS f) AS b
//! WHERE __lattice0_d1_l2_x1(b.k0) IN (0, 2)
//! GROUP BY 1
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionImplementation, ScalarUDF, Signature, SimpleScalarUDF, Volatility,
};
use datafusion::prelude::SessionContext;
use lattice_defs::model::{
    Agg, DimensionKind, Fact, LevelKind, LevelRef, MeasureKind, OverTime, TimeGrain,
};
use lattice_defs::{Catalog, ColumnType};
use roaring::RoaringBitmap;

use super::exec::{Top, TopKey};
use super::group::{Acc, AggRequest, Grouped};
use super::spec::Direction;
use crate::source::arrays::{decimals, ints};
use crate::source::load::fact_period_sql;
use crate::source::load::ident;
use crate::store::Cube;
use crate::store::encoding::KeyValue;
use crate::store::encoding::{DimCodes, Encoding, MetricCodes, key_sql};
use crate::store::time::{TimeAxis, coarsen};
use crate::{EngineError, Result};

/// Numbers the fallbacks of this process, for their code tables' names.
static NEXT_FALLBACK: AtomicU64 = AtomicU64::new(0);

/// What the fallback needs beyond the cube: the sources' DataFusion session and schemas.
pub struct FallbackData {
    ctx: SessionContext,
    catalog: Catalog,
    /// Code tables already registered in `ctx`.
    registered: Mutex<HashSet<String>>,
    /// Starts the name of every code table this cube registers: cubes built from the same
    /// sources share `ctx`, and their code tables (which differ when their models do) must not
    /// collide.
    prefix: String,
}

impl std::fmt::Debug for FallbackData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackData")
            .field("tables", &self.catalog.tables.len())
            .finish_non_exhaustive()
    }
}

impl FallbackData {
    pub(crate) fn new(ctx: SessionContext, catalog: Catalog) -> FallbackData {
        FallbackData {
            ctx,
            catalog,
            registered: Mutex::new(HashSet::new()),
            prefix: format!(
                "__lattice{}_",
                NEXT_FALLBACK.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.catalog
            .table(table)?
            .columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, ty)| ty.clone())
    }

    /// Registers the code function `name` (built by `make`) unless it already is.
    fn ensure(&self, name: &str, make: impl FnOnce() -> Result<ScalarUDF>) -> Result<()> {
        let mut done = self
            .registered
            .lock()
            .map_err(|_| EngineError::Internal("fallback function registry poisoned".into()))?;
        if done.contains(name) {
            return Ok(());
        }
        self.ctx.register_udf(make()?);
        done.insert(name.to_string());
        Ok(())
    }
}

/// A code function: `f(args) -> member code` (BIGINT), computed per batch by `codes`.
fn code_udf(
    name: &str,
    arity: usize,
    codes: impl Fn(&[ArrayRef]) -> Result<Vec<u32>> + Send + Sync + 'static,
) -> ScalarUDF {
    let fun: ScalarFunctionImplementation = Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let c = codes(&arrays).map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(Arc::new(
            Int64Array::from_iter_values(c.into_iter().map(i64::from)),
        )))
    });
    ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        name,
        Signature::any(arity, Volatility::Immutable),
        DataType::Int64,
        fun,
    ))
}

/// A fact's raw keys -> the key codes of their dimension (`n_keys` for NULL and keys not in
/// the dimension table), as the build encodes them.
enum KeyCodes {
    /// Integer keys in a dense range: `codes[key - min]`, `u32::MAX` where no key is.
    Dense {
        min: i64,
        codes: Vec<u32>,
    },
    Int(HashMap<i64, u32>),
    Text(HashMap<String, u32>),
}

impl KeyCodes {
    fn new(codes: &DimCodes) -> KeyCodes {
        if !codes.integer_key {
            return KeyCodes::Text(
                codes
                    .key_map
                    .iter()
                    .map(|(k, c)| {
                        let t = match k {
                            KeyValue::Text(t) => t.clone(),
                            KeyValue::Int(i) => i.to_string(),
                        };
                        (t, *c)
                    })
                    .collect(),
            );
        }
        let ints: HashMap<i64, u32> = codes
            .key_map
            .iter()
            .filter_map(|(k, c)| match k {
                KeyValue::Int(i) => Some((*i, *c)),
                KeyValue::Text(_) => None,
            })
            .collect();
        let (min, max) = (ints.keys().min(), ints.keys().max());
        if let (Some(&min), Some(&max)) = (min, max)
            && let Some(span) = max.checked_sub(min)
            && span < 4 * ints.len() as i64 + 1024
        {
            let mut dense = vec![u32::MAX; span as usize + 1];
            for (k, c) in &ints {
                dense[(k - min) as usize] = *c;
            }
            return KeyCodes::Dense { min, codes: dense };
        }
        KeyCodes::Int(ints)
    }

    /// The key code of every row of `keys` (`unknown` for NULL and keys not in the table).
    fn codes(&self, keys: &ArrayRef, unknown: u32) -> Result<Vec<u32>> {
        let lookup = |c: Option<u32>| c.filter(|c| *c != u32::MAX).unwrap_or(unknown);
        match self {
            KeyCodes::Dense { min, codes } => {
                let a = cast(keys, &DataType::Int64)?;
                let a = a.as_primitive::<Int64Type>();
                Ok(a.iter()
                    .map(|k| {
                        lookup(k.and_then(|k| {
                            let i = usize::try_from(k.checked_sub(*min)?).ok()?;
                            codes.get(i).copied()
                        }))
                    })
                    .collect())
            }
            KeyCodes::Int(map) => {
                let a = cast(keys, &DataType::Int64)?;
                let a = a.as_primitive::<Int64Type>();
                Ok(a.iter()
                    .map(|k| lookup(k.and_then(|k| map.get(&k).copied())))
                    .collect())
            }
            KeyCodes::Text(map) => {
                let a = cast(keys, &DataType::Utf8)?;
                let a = a.as_string::<i32>();
                Ok(a.iter()
                    .map(|k| lookup(k.and_then(|k| map.get(k).copied())))
                    .collect())
            }
        }
    }
}

/// The axis periods of `p` (`None` for NULL or a period off the axis).
fn periods(p: &ArrayRef, len: usize) -> Result<Vec<Option<usize>>> {
    let a = cast(p, &DataType::Int64)?;
    let a = a.as_primitive::<Int64Type>();
    Ok(a.iter()
        .map(|p| p.and_then(|p| usize::try_from(p).ok()).filter(|p| *p < len))
        .collect())
}

/// The direct dimension of `fact` through which it reaches `dim` (following `via`), and the
/// map from that dimension's key codes to `dim`'s.
fn reach(cube: &Cube, dims: &Encoding, fact: usize, dim: usize) -> Option<(usize, Vec<u32>)> {
    let model = &cube.model;
    let f = &model.facts[fact];
    if let Some(i) = f.direct.iter().position(|d| *d == dim) {
        let n = dims.codes[dim].as_ref()?.n_keys;
        return Some((i, (0..=n as u32).collect()));
    }
    let DimensionKind::Table { via: Some(v), .. } = &model.dimensions[dim].kind else {
        return None;
    };
    let (i, to_v) = reach(cube, dims, fact, *v)?;
    let via = dims.via[dim].as_ref()?;
    Some((i, to_v.iter().map(|k| via[*k as usize]).collect()))
}

/// The SQL of one level's member code for the fact rows of `b`.
fn level_sql(cube: &Cube, fb: &FallbackData, fact: usize, l: LevelRef) -> Result<String> {
    let model = &cube.model;
    let dims = &cube.encoding;
    let level = &model.dimensions[l.dim].levels[l.level];
    if let LevelKind::Time(g) = level.kind {
        let axis = dims
            .time
            .as_ref()
            .ok_or_else(|| EngineError::Internal("time level without a time axis".into()))?;
        let name = format!("{}time_{}", fb.prefix, l.level);
        fb.ensure(&name, || {
            let codes: Vec<u32> = (0..axis.len as u32).map(|p| axis.code(p, g)).collect();
            let unknown = axis.unknown_code(g);
            Ok(code_udf(&name, 1, move |args| {
                Ok(periods(&args[0], codes.len())?
                    .into_iter()
                    .map(|p| p.map_or(unknown, |p| codes[p]))
                    .collect())
            }))
        })?;
        return Ok(format!("{name}(b.p)"));
    }
    let (i, to_dim) = reach(cube, dims, fact, l.dim).ok_or_else(|| {
        EngineError::Internal(format!(
            "fact {} does not reach {}",
            model.facts[fact].name,
            model.level_name(l)
        ))
    })?;
    let x = model.facts[fact].direct[i];
    let codes = dims.codes[l.dim]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("codes of a table dimension".into()))?;
    let x_codes = dims.codes[x]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("key codes of a direct dimension".into()))?;
    let name = format!("{}d{}_l{}_x{}", fb.prefix, l.dim, l.level, x);
    let n_x = to_dim.len() - 1; // the last entry is the unknown key of x
    if let Some(by_key) = &codes.by_key[l.level] {
        fb.ensure(&name, || {
            let keys = KeyCodes::new(x_codes);
            let member: Vec<u32> = to_dim.iter().map(|k| by_key[*k as usize]).collect();
            Ok(code_udf(&name, 1, move |args| {
                Ok(keys
                    .codes(&args[0], n_x as u32)?
                    .into_iter()
                    .map(|k| member[k as usize])
                    .collect())
            }))
        })?;
        return Ok(format!("{name}(b.k{i})"));
    }
    let metric = codes.metric[l.level]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("a level without codes".into()))?;
    let n_periods = dims.time.as_ref().map_or(1, |a| a.len.max(1));
    fb.ensure(&name, || {
        let keys = KeyCodes::new(x_codes);
        // Per key code of x, the entity's key code (`None` for the unknown key: no band).
        let entity: Vec<Option<u32>> = (0..=n_x).map(|k| (k < n_x).then(|| to_dim[k])).collect();
        let axis = dims.time.clone();
        let metric = MetricCodes {
            grain: metric.grain,
            first: metric.first,
            periods: metric.periods,
            codes: metric.codes.clone(),
            unknown: metric.unknown,
        };
        Ok(code_udf(&name, 2, move |args| {
            let k = keys.codes(&args[0], n_x as u32)?;
            let p = periods(&args[1], n_periods)?;
            Ok(k.into_iter()
                .zip(p)
                .map(|(k, p)| match (entity[k as usize], p) {
                    (Some(e), Some(p)) => metric.code(e, axis.as_ref(), p as u32),
                    _ => metric.unknown,
                })
                .collect())
        }))
    })?;
    Ok(format!("{name}(b.k{i}, b.p)"))
}

/// Most raw keys a filter lists in the scan (see [`key_filter_sql`]).
const MAX_KEY_FILTER: usize = 64;

/// A filter on a column level that keeps a few keys of the fact's direct dimension, and not
/// `unknown`, as a list of those raw keys on the fact's key column: the scan tests the column
/// itself (and can prune by it) instead of computing every row's member. `None` otherwise.
fn key_filter_sql(
    cube: &Cube,
    fact: usize,
    flt: &super::resolve::ResolvedFilter,
) -> Option<String> {
    let model = &cube.model;
    let dims = &cube.encoding;
    let l = flt.level;
    let by_key = dims.codes[l.dim].as_ref()?.by_key[l.level].as_ref()?;
    let (i, to_dim) = reach(cube, dims, fact, l.dim)?;
    let n_x = to_dim.len() - 1;
    if flt.members.contains(by_key[to_dim[n_x] as usize]) {
        return None;
    }
    let x = model.facts[fact].direct[i];
    let x_codes = dims.codes[x].as_ref()?;
    let DimensionKind::Table { key, .. } = &model.dimensions[x].kind else {
        return None;
    };
    let mut items = Vec::new();
    for (k, c) in &x_codes.key_map {
        if flt.members.contains(by_key[to_dim[*c as usize] as usize]) {
            if items.len() == MAX_KEY_FILTER {
                return None;
            }
            items.push(match k {
                KeyValue::Int(v) if x_codes.integer_key => v.to_string(),
                KeyValue::Int(v) => format!("'{v}'"),
                KeyValue::Text(t) => format!("'{}'", t.replace('\'', "''")),
            });
        }
    }
    if items.is_empty() {
        return Some("FALSE".into());
    }
    items.sort_unstable();
    let col = format!("f.{}", ident(&key.column));
    let col = if x_codes.integer_key {
        col
    } else {
        key_sql(&col, false)
    };
    Some(format!("{col} IN ({})", items.join(", ")))
}

fn in_list(set: &RoaringBitmap) -> String {
    if set.is_empty() {
        return "(NULL)".into();
    }
    let items: Vec<String> = set.iter().map(|c| c.to_string()).collect();
    format!("({})", items.join(", "))
}

/// A predicate on a fact's date column that holds exactly for the periods of `grain` in
/// `members` (member codes; the last code past the axis is `unknown`: a NULL date), as
/// half-open date ranges, one per run of consecutive members.
fn date_ranges_sql(
    date: &str,
    members: &RoaringBitmap,
    grain: TimeGrain,
    axis: &TimeAxis,
) -> String {
    let first = coarsen(axis.first, axis.grain, grain);
    let unknown = axis.unknown_code(grain);
    let mut parts = Vec::new();
    let mut codes = members.iter().filter(|c| *c < unknown).peekable();
    while let Some(start) = codes.next() {
        let mut end = start;
        while codes.peek() == Some(&(end + 1)) {
            end += 1;
            codes.next();
        }
        let from = period_start(first + i64::from(start), grain);
        let to = period_start(first + i64::from(end) + 1, grain);
        parts.push(format!(
            "({date} >= DATE '{from}' AND {date} < DATE '{to}')"
        ));
    }
    if members.contains(unknown) {
        parts.push(format!("{date} IS NULL"));
    }
    if parts.is_empty() {
        "FALSE".into()
    } else {
        format!("({})", parts.join(" OR "))
    }
}

/// The first day (`YYYY-MM-DD`) of an absolute period of `grain`.
fn period_start(p: i64, grain: TimeGrain) -> String {
    crate::store::time::period_start(p, grain).to_string()
}

/// The SQL the fallback runs for `req`.
pub(crate) fn sql(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
    closing: Option<&RoaringBitmap>,
    top: Option<&Top>,
) -> Result<String> {
    let f = &cube.model.facts[req.fact];
    let mut inner = scan_columns(cube, f)?;
    let mut select = Vec::new();
    let mut group = Vec::new();
    for (k, l) in req.levels.iter().enumerate() {
        select.push(format!("{} AS g{k}", level_sql(cube, fb, req.fact, *l)?));
        group.push(format!("g{k}"));
    }
    let (filters, scan_filters) = filter_sql(cube, fb, req)?;
    let closing_cond = closing_sql(cube, f, closing, &mut inner);
    measures_sql(
        cube,
        fb,
        req,
        closing_cond.as_deref(),
        &mut inner,
        &mut select,
    );
    let scan_where = if scan_filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", scan_filters.join(" AND "))
    };
    let mut sql = format!(
        "SELECT {} FROM (SELECT {} FROM {} AS f{scan_where}) AS b",
        select.join(", "),
        inner.join(", "),
        ident(&f.name),
    );
    if !filters.is_empty() {
        sql.push_str(&format!(" WHERE {}", filters.join(" AND ")));
    }
    if group.is_empty() {
        // Like a cuboid: no group at all when no fact row passes.
        sql.push_str(" HAVING COUNT(*) > 0");
    } else {
        sql.push_str(&format!(" GROUP BY {}", group.join(", ")));
    }
    Ok(match top {
        Some(top) => top_sql(&sql, top, &group),
        None => sql,
    })
}

/// The inner scan's columns for fact `f`: each direct dimension's key as `k{i}`, then the
/// period as `p`.
fn scan_columns(cube: &Cube, f: &Fact) -> Result<Vec<String>> {
    let model = &cube.model;
    let dims = &cube.encoding;
    let mut inner = Vec::new();
    for (i, &d) in f.direct.iter().enumerate() {
        let (DimensionKind::Table { key, .. }, Some(codes)) =
            (&model.dimensions[d].kind, dims.codes[d].as_ref())
        else {
            return Err(EngineError::Internal("direct time dimension".into()));
        };
        inner.push(format!(
            "{} AS k{i}",
            key_sql(&format!("f.{}", ident(&key.column)), codes.integer_key)
        ));
    }
    inner.push(format!(
        "{} AS p",
        fact_period_sql(f.time.as_ref(), dims.time.as_ref())
    ));
    Ok(inner)
}

/// The conditions of `req.filters`: those on member codes (outer `WHERE`), and those on raw
/// columns the scan can prune by (inner `WHERE`): time filters as ranges of the date column,
/// and filters keeping a few keys as lists of them.
fn filter_sql(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
) -> Result<(Vec<String>, Vec<String>)> {
    let model = &cube.model;
    let f = &model.facts[req.fact];
    let mut filters = Vec::new();
    let mut scan_filters = Vec::new();
    for flt in req.filters {
        if let (LevelKind::Time(g), Some(t), Some(axis)) = (
            &model.dimensions[flt.level.dim].levels[flt.level.level].kind,
            &f.time,
            &cube.encoding.time,
        ) {
            let date = format!("f.{}", ident(&t.column));
            scan_filters.push(date_ranges_sql(&date, &flt.members, *g, axis));
            continue;
        }
        if let Some(keys) = key_filter_sql(cube, req.fact, flt) {
            scan_filters.push(keys);
            continue;
        }
        filters.push(format!(
            "{} IN {}",
            level_sql(cube, fb, req.fact, flt.level)?,
            in_list(&flt.members)
        ));
    }
    Ok((filters, scan_filters))
}

/// The condition that a row is in a closing period, if `closing` names any: as ranges of the
/// raw date column (a column `c` pushed onto `inner`: no period to compute per row), where
/// the fact has one and the finest time level has a grain, else as a list of periods.
fn closing_sql(
    cube: &Cube,
    f: &Fact,
    closing: Option<&RoaringBitmap>,
    inner: &mut Vec<String>,
) -> Option<String> {
    let model = &cube.model;
    let finest_grain =
        cube.index
            .finest_time
            .and_then(|l| match model.dimensions[l.dim].levels[l.level].kind {
                LevelKind::Time(g) => Some(g),
                _ => None,
            });
    match (closing, &f.time, &cube.encoding.time, finest_grain) {
        (Some(set), Some(t), Some(axis), Some(g)) => {
            let date = format!("f.{}", ident(&t.column));
            inner.push(format!("{} AS c", date_ranges_sql(&date, set, g, axis)));
            Some("b.c".to_string())
        }
        (Some(set), ..) => Some(format!("b.p IN {}", in_list(set))),
        (None, ..) => None,
    }
}

/// Each aggregate measure of `req`: its column `x{j}` of the inner scan onto `inner`, and its
/// aggregate `a{j}` onto `select` (semi-additive ones only over `closing_cond`).
fn measures_sql(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
    closing_cond: Option<&str>,
    inner: &mut Vec<String>,
    select: &mut Vec<String>,
) {
    let model = &cube.model;
    let f = &model.facts[req.fact];
    for (j, &m) in req.measures.iter().enumerate() {
        let MeasureKind::Aggregate {
            agg,
            column,
            over_time,
            ..
        } = &model.measures[m].kind
        else {
            continue;
        };
        let x = match column {
            Some(c) => {
                let ty = fb.column_type(&f.name, &c.column);
                let col = format!("f.{}", ident(&c.column));
                match agg {
                    Agg::Distinct => key_sql(&col, matches!(ty, Some(ColumnType::Integer))),
                    Agg::Sum | Agg::Min | Agg::Max if cube.index.scales[m] == 6 => {
                        format!("CAST({col} AS DECIMAL(38, 6))")
                    }
                    _ => col,
                }
            }
            None => "1".into(),
        };
        inner.push(format!("{x} AS x{j}"));
        let arg = if *over_time == OverTime::Last
            && let Some(cond) = closing_cond
        {
            format!("CASE WHEN {cond} THEN b.x{j} END")
        } else {
            format!("b.x{j}")
        };
        select.push(match agg {
            Agg::Sum => format!("SUM({arg}) AS a{j}"),
            Agg::Min => format!("MIN({arg}) AS a{j}"),
            Agg::Max => format!("MAX({arg}) AS a{j}"),
            Agg::Count => format!("COUNT({arg}) AS a{j}"),
            Agg::Distinct => format!("COUNT(DISTINCT {arg}) AS a{j}"),
        });
    }
}

/// `sql` wrapped to keep only `top`'s first groups, in the finish's order: the keys asked for
/// (NULLs last both ways), then member order (`group`); `n` counts every group before the
/// limit.
fn top_sql(sql: &str, top: &Top, group: &[String]) -> String {
    let mut keys: Vec<String> = top
        .order
        .iter()
        .map(|(k, d)| {
            let dir = match d {
                Direction::Asc => "ASC",
                Direction::Desc => "DESC",
            };
            match k {
                TopKey::Level(i) => format!("g{i} {dir}"),
                TopKey::Measure(j) => format!("a{j} {dir} NULLS LAST"),
            }
        })
        .collect();
    keys.extend(group.iter().map(|g| format!("{g} ASC")));
    // DataFusion takes the limit as an Int64; resolution bounds `offset + limit` far below.
    debug_assert!(i64::try_from(top.limit).is_ok(), "limit {}", top.limit);
    format!(
        "SELECT *, COUNT(*) OVER () AS n FROM ({sql}) AS q ORDER BY {} LIMIT {}",
        keys.join(", "),
        top.limit
    )
}

/// Answers `req` with DataFusion over the raw facts; with `top`, only its first groups, and
/// then also the number of groups in all.
pub(crate) async fn aggregate(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
    closing: Option<&RoaringBitmap>,
    top: Option<&Top>,
) -> Result<(Grouped, String, Option<usize>)> {
    let model = &cube.model;
    let sql = sql(cube, fb, req, closing, top)?;
    tracing::debug!(sql, "fallback query");
    let batches = fb.ctx.sql(&sql).await?.collect().await?;
    let nl = req.levels.len();
    let measures: Vec<_> = req
        .measures
        .iter()
        .copied()
        .filter(|m| matches!(model.measures[*m].kind, MeasureKind::Aggregate { .. }))
        .collect();
    let mut keys = Vec::new();
    let mut groups = top.map(|_| 0);
    let mut accs: Vec<Acc> = measures
        .iter()
        .map(|&m| match &model.measures[m].kind {
            MeasureKind::Aggregate {
                agg: Agg::Distinct, ..
            } => Acc::Count(Vec::new()),
            MeasureKind::Aggregate { agg, .. } => Acc::new(*agg, cube.index.scales[m]),
            MeasureKind::Derived(_) => Acc::Count(Vec::new()),
        })
        .collect();
    for b in &batches {
        let rows = b.num_rows();
        if top.is_some() && rows > 0 {
            groups = Some(ints(b, nl + measures.len())?.value(0) as usize);
        }
        let cols: Vec<Int64Array> = (0..nl).map(|k| ints(b, k)).collect::<Result<_>>()?;
        for r in 0..rows {
            for c in &cols {
                keys.push(c.value(r) as u32);
            }
        }
        for (j, acc) in accs.iter_mut().enumerate() {
            match acc {
                Acc::Decimal {
                    values,
                    valid,
                    scale,
                    ..
                } => {
                    let a = decimals(b, nl + j, *scale)?;
                    values.extend(a.values().iter().copied());
                    valid.extend((0..rows).map(|r| a.is_valid(r)));
                }
                Acc::Count(v) => v.extend(ints(b, nl + j)?.values().iter().map(|x| *x as u64)),
                Acc::Sets(_) => {}
            }
        }
    }
    Ok((
        Grouped {
            levels: req.levels.to_vec(),
            keys,
            measures,
            accs,
        },
        sql,
        groups,
    ))
}
