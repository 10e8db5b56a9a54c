//! The fallback: a question no cuboid covers becomes one DataFusion SQL query over the raw
//! facts. Members come from small code tables (key -> member code, per level) registered next
//! to the sources, built from the same encoding as the cube, so both paths agree on every
//! member, `unknown` included, and return the same [`Grouped`] shape.
//!
//! ```sql
//! SELECT COALESCE(l0.c, 7) AS g0, SUM(b.x0) AS a0, COUNT(DISTINCT b.x1) AS a1
//! FROM (SELECT CAST(f."customer_id" AS BIGINT) AS k0, <period> AS p, f."amount" AS x0, ...
//!       FROM "transactions" AS f) AS b
//! LEFT JOIN __lattice0_d1_l3_x1 AS l0 ON l0.k = b.k0
//! WHERE COALESCE(l0.c, 7) IN (0, 2)
//! GROUP BY 1
//! ```

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use lattice_defs::model::{
    Agg, DimensionKind, LevelKind, LevelRef, MeasureKind, OverTime, TimeGrain,
};
use lattice_defs::{Catalog, ColumnType};
use roaring::RoaringBitmap;

use super::group::{Acc, AggRequest, Grouped};
use crate::build::arrays::{KeyValue, decimals, ints};
use crate::build::dims::{Dims, key_sql};
use crate::build::time::{TimeAxis, coarsen, fact_period_sql};
use crate::source::load::ident;
use crate::store::Cube;
use crate::{EngineError, Result};

/// Numbers the fallbacks of this process, for their code tables' names.
static NEXT_FALLBACK: AtomicU64 = AtomicU64::new(0);

/// What the fallback keeps of a build: the sources' session and the dimension encoding.
pub struct FallbackData {
    ctx: SessionContext,
    catalog: Catalog,
    dims: Dims,
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
    pub(crate) fn new(ctx: SessionContext, catalog: Catalog, dims: Dims) -> FallbackData {
        FallbackData {
            ctx,
            catalog,
            dims,
            registered: Mutex::new(HashSet::new()),
            prefix: format!(
                "__lattice{}_",
                NEXT_FALLBACK.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    pub(crate) fn dims(&self) -> &Dims {
        &self.dims
    }

    fn column_type(&self, table: &str, column: &str) -> Option<ColumnType> {
        self.catalog
            .table(table)?
            .columns
            .iter()
            .find(|(name, _)| name == column)
            .map(|(_, ty)| ty.clone())
    }

    /// Registers `name` (built by `make`) unless it already is.
    fn ensure(&self, name: &str, make: impl FnOnce() -> Result<RecordBatch>) -> Result<()> {
        let mut done = self
            .registered
            .lock()
            .map_err(|_| EngineError::Internal("fallback table registry poisoned".into()))?;
        if done.contains(name) {
            return Ok(());
        }
        let batch = make()?;
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        self.ctx.register_table(name, Arc::new(table))?;
        done.insert(name.to_string());
        Ok(())
    }
}

/// The direct dimension of `fact` through which it reaches `dim` (following `via`), and the
/// map from that dimension's key codes to `dim`'s.
fn reach(cube: &Cube, dims: &Dims, fact: usize, dim: usize) -> Option<(usize, Vec<u32>)> {
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

/// Key column of a direct dimension's code table, in key-code order.
fn key_array(dims: &Dims, dim: usize) -> Result<(ArrayRef, usize)> {
    let codes = dims.codes[dim]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("key table of the time dimension".into()))?;
    let mut keys: Vec<(&KeyValue, u32)> = codes.key_map.iter().map(|(k, c)| (k, *c)).collect();
    keys.sort_unstable_by_key(|(_, c)| *c);
    let array: ArrayRef = if codes.integer_key {
        Arc::new(Int64Array::from_iter_values(keys.iter().map(
            |(k, _)| match k {
                KeyValue::Int(i) => *i,
                KeyValue::Text(_) => 0,
            },
        )))
    } else {
        Arc::new(StringArray::from_iter_values(keys.iter().map(
            |(k, _)| match k {
                KeyValue::Text(t) => t.clone(),
                KeyValue::Int(i) => i.to_string(),
            },
        )))
    };
    Ok((array, keys.len()))
}

/// The SQL of one level's member code for the fact rows of `b`, and the joins it needs.
struct LevelSql {
    expr: String,
    joins: Vec<String>,
}

fn level_sql(cube: &Cube, fb: &FallbackData, fact: usize, l: LevelRef) -> Result<LevelSql> {
    let model = &cube.model;
    let dims = &fb.dims;
    let level = &model.dimensions[l.dim].levels[l.level];
    if let LevelKind::Time(g) = level.kind {
        let axis = dims
            .time
            .as_ref()
            .ok_or_else(|| EngineError::Internal("time level without a time axis".into()))?;
        let name = format!("{}time_{}", fb.prefix, l.level);
        fb.ensure(&name, || {
            let p: Vec<i64> = (0..axis.len as i64).collect();
            let c: Vec<i64> = (0..axis.len as u32)
                .map(|p| i64::from(axis.code(p, g)))
                .collect();
            code_batch(vec![("p", Arc::new(Int64Array::from(p)))], c)
        })?;
        let alias = format!("t{}_{}", l.dim, l.level);
        return Ok(LevelSql {
            expr: format!("COALESCE({alias}.c, {})", axis.unknown_code(g)),
            joins: vec![format!("LEFT JOIN {name} AS {alias} ON {alias}.p = b.p")],
        });
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
    let name = format!("{}d{}_l{}_x{}", fb.prefix, l.dim, l.level, x);
    let alias = format!("l{}_{}", l.dim, l.level);
    let n_x = to_dim.len() - 1; // the last entry is the unknown key of x
    if let Some(by_key) = &codes.by_key[l.level] {
        fb.ensure(&name, || {
            let (keys, n) = key_array(dims, x)?;
            let c = (0..n)
                .map(|k| i64::from(by_key[to_dim[k] as usize]))
                .collect();
            code_batch(vec![("k", keys)], c)
        })?;
        return Ok(LevelSql {
            expr: format!("COALESCE({alias}.c, {})", by_key[to_dim[n_x] as usize]),
            joins: vec![format!("LEFT JOIN {name} AS {alias} ON {alias}.k = b.k{i}")],
        });
    }
    let metric = codes.metric[l.level]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("a level without codes".into()))?;
    let periods = dims.time.as_ref().map_or(1, |a| a.len.max(1));
    fb.ensure(&name, || {
        let (keys, n) = key_array(dims, x)?;
        let take: Vec<u32> = (0..n as u32)
            .flat_map(|k| std::iter::repeat_n(k, periods))
            .collect();
        let keys = arrow::compute::take(&keys, &arrow::array::UInt32Array::from(take), None)?;
        let p: Vec<i64> = (0..n).flat_map(|_| 0..periods as i64).collect();
        let c = (0..n)
            .flat_map(|k| {
                let key = to_dim[k];
                (0..periods as u32).map(move |p| i64::from(metric.code(key, dims.time.as_ref(), p)))
            })
            .collect();
        code_batch(vec![("k", keys), ("p", Arc::new(Int64Array::from(p)))], c)
    })?;
    Ok(LevelSql {
        expr: format!("COALESCE({alias}.c, {})", metric.unknown),
        joins: vec![format!(
            "LEFT JOIN {name} AS {alias} ON {alias}.k = b.k{i} AND {alias}.p = b.p"
        )],
    })
}

fn code_batch(mut cols: Vec<(&str, ArrayRef)>, codes: Vec<i64>) -> Result<RecordBatch> {
    cols.push(("c", Arc::new(Int64Array::from(codes))));
    let schema = Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), false))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(
        Arc::new(schema),
        cols.into_iter().map(|(_, a)| a).collect(),
    )?)
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
    let (y, m) = match grain {
        TimeGrain::Year => (p, 1),
        TimeGrain::Quarter => (p.div_euclid(4), p.rem_euclid(4) * 3 + 1),
        TimeGrain::Month => (p.div_euclid(12), p.rem_euclid(12) + 1),
        TimeGrain::Day => {
            let (y, m, d) = crate::build::time::civil_from_days(p);
            return format!("{y:04}-{m:02}-{d:02}");
        }
    };
    format!("{y:04}-{m:02}-01")
}

/// The SQL the fallback runs for `req`.
pub(crate) fn sql(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
    closing: Option<&RoaringBitmap>,
) -> Result<String> {
    let model = &cube.model;
    let f = &model.facts[req.fact];
    let dims = &fb.dims;
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

    let mut joins: Vec<String> = Vec::new();
    let level_expr = |l: LevelRef, joins: &mut Vec<String>| -> Result<String> {
        let s = level_sql(cube, fb, req.fact, l)?;
        for j in s.joins {
            if !joins.contains(&j) {
                joins.push(j);
            }
        }
        Ok(s.expr)
    };
    let mut select = Vec::new();
    let mut group = Vec::new();
    for (k, l) in req.levels.iter().enumerate() {
        select.push(format!("{} AS g{k}", level_expr(*l, &mut joins)?));
        group.push(format!("g{k}"));
    }
    let mut filters = Vec::new();
    // Time filters become ranges of the raw date column, which the scan can prune by.
    let mut date_filters = Vec::new();
    for flt in req.filters {
        if let (LevelKind::Time(g), Some(t), Some(axis)) = (
            &model.dimensions[flt.level.dim].levels[flt.level.level].kind,
            &f.time,
            &dims.time,
        ) {
            let date = format!("f.{}", ident(&t.column));
            date_filters.push(date_ranges_sql(&date, &flt.members, *g, axis));
            continue;
        }
        filters.push(format!(
            "{} IN {}",
            level_expr(flt.level, &mut joins)?,
            in_list(&flt.members)
        ));
    }
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
                    Agg::Sum | Agg::Min | Agg::Max if cube.rollup.scales[m] == 6 => {
                        format!("CAST({col} AS DECIMAL(38, 6))")
                    }
                    _ => col,
                }
            }
            None => "1".into(),
        };
        inner.push(format!("{x} AS x{j}"));
        let arg = if *over_time == OverTime::Last
            && let Some(set) = closing
        {
            format!("CASE WHEN b.p IN {} THEN b.x{j} END", in_list(set))
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
    let scan_where = if date_filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", date_filters.join(" AND "))
    };
    let mut sql = format!(
        "SELECT {} FROM (SELECT {} FROM {} AS f{scan_where}) AS b {}",
        select.join(", "),
        inner.join(", "),
        ident(&f.name),
        joins.join(" ")
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
    Ok(sql)
}

/// Answers `req` with DataFusion over the raw facts.
pub(crate) async fn aggregate(
    cube: &Cube,
    fb: &FallbackData,
    req: &AggRequest<'_>,
    closing: Option<&RoaringBitmap>,
) -> Result<(Grouped, String)> {
    let model = &cube.model;
    let sql = sql(cube, fb, req, closing)?;
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
    let mut accs: Vec<Acc> = measures
        .iter()
        .map(|&m| match &model.measures[m].kind {
            MeasureKind::Aggregate {
                agg: Agg::Distinct, ..
            } => Acc::Count(Vec::new()),
            MeasureKind::Aggregate { agg, .. } => Acc::new(*agg, cube.rollup.scales[m]),
            MeasureKind::Derived(_) => Acc::Count(Vec::new()),
        })
        .collect();
    for b in &batches {
        let rows = b.num_rows();
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
    ))
}
