//! Stage 2: the base table of each fact — the raw facts aggregated by one DataFusion plan to
//! the cube grain: the key of every dimension the fact carries and the finest time period.
//! This is the only step that reads raw facts, so the same plan could run on a distributed
//! DataFusion; everything after it works on this much smaller table.

use std::collections::HashMap;

use arrow::array::Array;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use lattice_defs::model::{Agg, FactId, MeasureId, MeasureKind, Model, OverTime};
use lattice_defs::{Catalog, ColumnType};
use roaring::RoaringBitmap;

use super::arrays::{KeyValue, decimals, ints, keys};
use super::dims::{Dims, key_sql};
use super::time::{NO_PERIOD, fact_period_sql};
use crate::source::load::ident;
use crate::store::{MeasureColumn, NO_VALUE};
use crate::{EngineError, Result};

/// How a stored measure combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeasureSpec {
    pub agg: Agg,
    /// Semi-additive: only closing-period rows count.
    pub semi: bool,
}

/// The aggregate measures of a fact, with their specs and decimal scales.
pub(crate) fn fact_measures(model: &Model, fact: FactId) -> Vec<(MeasureId, MeasureSpec)> {
    model
        .measures
        .iter()
        .enumerate()
        .filter_map(|(i, m)| match &m.kind {
            MeasureKind::Aggregate {
                fact: f,
                agg,
                over_time,
                ..
            } if *f == fact => Some((
                i,
                MeasureSpec {
                    agg: *agg,
                    semi: *over_time == OverTime::Last,
                },
            )),
            _ => None,
        })
        .collect()
}

/// A fact at the cube grain: `codes` holds one column per direct dimension (key codes) and,
/// last, the period (0 when the fact has no time); no two rows share all codes.
#[derive(Debug)]
pub(crate) struct BaseTable {
    pub codes: Vec<Vec<u32>>,
    pub measure_ids: Vec<MeasureId>,
    pub specs: Vec<MeasureSpec>,
    pub measures: Vec<MeasureColumn>,
    /// Rows of raw facts read.
    pub fact_rows: u64,
    /// Queries the raw facts were read with (one per range of periods).
    pub queries: usize,
    /// The key column the rows are in the order of (then by period), if any.
    pub sorted_by: Option<usize>,
}

impl BaseTable {
    pub fn len(&self) -> usize {
        self.codes.last().map_or(0, Vec::len)
    }

    /// Puts the rows in the order of key column `k`, then period (stable otherwise). The
    /// lattice reads the base in this order: a distinct count over that key (customers)
    /// appends each cell's values in increasing order instead of inserting them, and the rows
    /// of one key and period are together, so cuboids that need only that key's levels and
    /// time merge them once ([`super::scan`]). Key codes follow the keys' order, so integer
    /// keys stay in numeric order.
    pub fn sort_by_key(&mut self, k: usize) {
        let n = self.codes.len();
        if k + 1 >= n {
            return;
        }
        self.sorted_by = Some(k);
        let (key, period) = (&self.codes[k], &self.codes[n - 1]);
        let in_order = (1..key.len()).all(|r| (key[r - 1], period[r - 1]) <= (key[r], period[r]));
        if in_order {
            return;
        }
        // Two stable counting sorts of the row numbers, by period and then by key. Codes
        // are dense; `NO_PERIOD` sorts last.
        fn by(values: &[u32], rows: impl Iterator<Item = u32>) -> Vec<u32> {
            let top = values
                .iter()
                .copied()
                .filter(|v| *v != u32::MAX)
                .max()
                .map_or(0, |m| m as usize + 1);
            let bucket = |v: u32| if v == u32::MAX { top } else { v as usize };
            let mut start = vec![0u32; top + 2];
            for &v in values {
                start[bucket(v) + 1] += 1;
            }
            for i in 1..start.len() {
                start[i] += start[i - 1];
            }
            let mut order = vec![0u32; values.len()];
            for r in rows {
                let b = bucket(values[r as usize]);
                order[start[b] as usize] = r;
                start[b] += 1;
            }
            order
        }
        let rows = 0..key.len() as u32;
        let by_period = by(period, rows);
        let order = by(key, by_period.iter().copied());
        drop(by_period);
        fn gather<T: Copy>(v: &mut Vec<T>, order: &[u32]) {
            let sorted: Vec<T> = order.iter().map(|&r| v[r as usize]).collect();
            *v = sorted;
        }
        // Column by column, both cores at once: each column is one gather.
        let order = &order;
        std::thread::scope(|s| {
            let mut jobs: Vec<Box<dyn FnOnce() + Send + '_>> = Vec::new();
            for c in &mut self.codes {
                jobs.push(Box::new(move || gather(c, order)));
            }
            for m in &mut self.measures {
                match m {
                    MeasureColumn::Count(v) => jobs.push(Box::new(move || gather(v, order))),
                    MeasureColumn::DistinctValues(v) => {
                        jobs.push(Box::new(move || gather(v, order)))
                    }
                    MeasureColumn::Decimal { values, valid, .. } => {
                        jobs.push(Box::new(move || gather(values, order)));
                        jobs.push(Box::new(move || gather(valid, order)));
                    }
                    MeasureColumn::Decimal64 { values, valid, .. } => {
                        jobs.push(Box::new(move || gather(values, order)));
                        jobs.push(Box::new(move || gather(valid, order)));
                    }
                    MeasureColumn::Distinct(v) => {
                        let sorted = order.iter().map(|&r| std::mem::take(&mut v[r as usize]));
                        *v = sorted.collect();
                    }
                }
            }
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let shares: Vec<Vec<_>> = {
                let mut shares: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
                for (i, job) in jobs.into_iter().enumerate() {
                    shares[i % workers].push(job);
                }
                shares
            };
            for share in shares {
                s.spawn(move || share.into_iter().for_each(|job| job()));
            }
        });
    }
}

fn column_scale(catalog: &Catalog, table: &str, column: &str) -> i8 {
    match catalog
        .table(table)
        .and_then(|t| t.columns.iter().find(|(n, _)| n == column))
    {
        Some((_, ColumnType::Decimal { scale })) => *scale,
        Some((_, ColumnType::Float)) => 6,
        _ => 0,
    }
}

fn is_integer(catalog: &Catalog, table: &str, column: &str) -> bool {
    matches!(
        catalog
            .table(table)
            .and_then(|t| t.columns.iter().find(|(n, _)| n == column)),
        Some((_, ColumnType::Integer))
    )
}

pub(crate) fn empty_column(spec: MeasureSpec, scale: i8) -> MeasureColumn {
    match spec.agg {
        Agg::Count => MeasureColumn::Count(Vec::new()),
        Agg::Distinct => MeasureColumn::Distinct(Vec::new()),
        Agg::Sum | Agg::Min | Agg::Max => MeasureColumn::Decimal {
            values: Vec::new(),
            valid: Vec::new(),
            scale,
        },
    }
}

/// Reads one fact at the cube grain.
pub(crate) async fn build_base(
    model: &Model,
    catalog: &Catalog,
    ctx: &SessionContext,
    dims: &Dims,
    fact: FactId,
    range_rows: u64,
) -> Result<BaseTable> {
    let f = &model.facts[fact];
    let measures = fact_measures(model, fact);
    let mut inner = Vec::new();
    let mut group = Vec::new();
    let mut integer_keys = Vec::new();
    for (i, &d) in f.direct.iter().enumerate() {
        let codes = dims.codes[d].as_ref().ok_or_else(|| {
            EngineError::Internal("a fact's direct dimension is the time dimension".into())
        })?;
        let lattice_defs::model::DimensionKind::Table { key, .. } = &model.dimensions[d].kind
        else {
            return Err(EngineError::Internal("direct time dimension".into()));
        };
        inner.push(format!(
            "{} AS k{i}",
            key_sql(&format!("f.{}", ident(&key.column)), codes.integer_key)
        ));
        group.push(format!("k{i}"));
        integer_keys.push(codes.integer_key);
    }
    inner.push(format!(
        "{} AS p",
        fact_period_sql(f.time.as_ref(), dims.time.as_ref())
    ));
    group.push("p".into());

    let mut outer_aggs = Vec::new();
    let mut scales = Vec::new();
    let mut distinct_integer = Vec::new();
    // A distinct count over the column of a key already in the grain (customers of a fact
    // keyed by customer) reads that key's column instead of grouping by it twice.
    let mut reuse_key: Vec<Option<usize>> = vec![None; measures.len()];
    let key_columns: Vec<Option<&str>> = f
        .direct
        .iter()
        .map(|&d| match &model.dimensions[d].kind {
            lattice_defs::model::DimensionKind::Table { key, .. } => Some(key.column.as_str()),
            _ => None,
        })
        .collect();
    for (j, (m, spec)) in measures.iter().enumerate() {
        let MeasureKind::Aggregate { column, .. } = &model.measures[*m].kind else {
            continue;
        };
        let scale = column
            .as_ref()
            .map_or(0, |c| column_scale(catalog, &f.name, &c.column));
        scales.push(scale);
        let x = column.as_ref().map(|c| format!("f.{}", ident(&c.column)));
        match (spec.agg, &x) {
            (Agg::Distinct, Some(x)) => {
                let int = column
                    .as_ref()
                    .is_some_and(|c| is_integer(catalog, &f.name, &c.column));
                distinct_integer.push(int);
                let same_key = column.as_ref().and_then(|c| {
                    key_columns
                        .iter()
                        .zip(&integer_keys)
                        .position(|(k, ik)| *k == Some(c.column.as_str()) && *ik == int)
                });
                if let Some(i) = same_key {
                    reuse_key[j] = Some(i);
                } else {
                    inner.push(format!("{} AS x{j}", key_sql(x, int)));
                    group.push(format!("x{j}"));
                }
            }
            (Agg::Count, None) => outer_aggs.push(format!("COUNT(*) AS a{j}")),
            (agg, Some(x)) => {
                let x = if scale == 6 && matches!(agg, Agg::Sum | Agg::Min | Agg::Max) {
                    format!("CAST({x} AS DECIMAL(38, 6))")
                } else {
                    x.clone()
                };
                inner.push(format!("{x} AS x{j}"));
                outer_aggs.push(match agg {
                    Agg::Sum => format!("SUM(x{j}) AS a{j}"),
                    Agg::Min => format!("MIN(x{j}) AS a{j}"),
                    Agg::Max => format!("MAX(x{j}) AS a{j}"),
                    _ => format!("COUNT(x{j}) AS a{j}"),
                });
            }
            (_, None) => return Err(EngineError::Internal("aggregate without a column".into())),
        }
    }
    let sql = |filter: &str| {
        format!(
            "SELECT {}, COUNT(*) AS fact_rows{} FROM (SELECT {} FROM {} AS f{filter}) GROUP BY {}",
            group.join(", "),
            outer_aggs
                .iter()
                .map(|a| format!(", {a}"))
                .collect::<String>(),
            inner.join(", "),
            ident(&f.name),
            group.join(", ")
        )
    };

    // DataFusion's groups are the base rows: the grain is the keys, the period and the
    // distinct values, so each row holds at most one value per distinct measure.
    let n_keys = f.direct.len();
    let mut codes: Vec<Vec<u32>> = vec![Vec::new(); n_keys + 1];
    let mut cols: Vec<MeasureColumn> = measures
        .iter()
        .zip(&scales)
        .map(|((_, s), sc)| match s.agg {
            Agg::Distinct => MeasureColumn::DistinctValues(Vec::new()),
            Agg::Sum | Agg::Min | Agg::Max => MeasureColumn::Decimal64 {
                values: Vec::new(),
                valid: Vec::new(),
                scale: *sc,
            },
            _ => empty_column(*s, *sc),
        })
        .collect();
    let mut fact_rows = 0u64;
    let n_group = group.len();
    // Outer aggregate columns follow the group columns and fact_rows; distinct values are
    // group columns (after the keys and the period).
    let mut agg_cols = Vec::new();
    let (mut next_outer, mut next_group) = (n_group + 1, n_keys + 1);
    for (j, (_, spec)) in measures.iter().enumerate() {
        if let Some(i) = reuse_key[j] {
            agg_cols.push(i);
            continue;
        }
        let next = if spec.agg == Agg::Distinct {
            &mut next_group
        } else {
            &mut next_outer
        };
        agg_cols.push(*next);
        *next += 1;
    }
    let mut dictionaries: Vec<HashMap<KeyValue, u32>> = vec![HashMap::new(); measures.len()];
    // One query per range of periods: the period is part of the grain, so the ranges' groups
    // are disjoint and DataFusion holds one range's groups at a time. Streamed: each batch is
    // converted to codes and dropped, so the raw groups and the base table are never both
    // whole in memory.
    let rows = super::budget::source_rows(model, catalog, &f.name);
    let ranges = period_ranges(f.time.as_ref(), dims.time.as_ref(), rows, range_rows);
    let queries = ranges.len();
    // A base table has at most a row per fact row: room for that many up front (address
    // space only until written) saves copying the columns as they double.
    let room = usize::try_from(rows).unwrap_or(0).min(1 << 31);
    codes.iter_mut().for_each(|c| c.reserve(room));
    for col in &mut cols {
        match col {
            MeasureColumn::Count(v) => v.reserve(room),
            MeasureColumn::DistinctValues(v) => v.reserve(room),
            MeasureColumn::Decimal64 { values, valid, .. } => {
                values.reserve(room);
                valid.reserve(room);
            }
            MeasureColumn::Decimal { .. } | MeasureColumn::Distinct(_) => {}
        }
    }
    let started = std::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    for filter in ranges {
        let sql = sql(&filter);
        tracing::debug!(sql, "base query");
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        loop {
            let t = std::time::Instant::now();
            let Some(batch) = stream.next().await else {
                break;
            };
            waited += t.elapsed();
            let b = &batch?;
            for (i, &d) in f.direct.iter().enumerate() {
                let dc = dims.codes[d]
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("no codes".into()))?;
                codes[i].extend(dc.column_codes(b, i)?);
            }
            let periods = ints(b, n_keys)?;
            codes[n_keys].extend((0..b.num_rows()).map(|r| {
                if periods.is_valid(r) {
                    periods.value(r) as u32
                } else {
                    NO_PERIOD
                }
            }));
            fact_rows += ints(b, n_group)?
                .values()
                .iter()
                .map(|v| *v as u64)
                .sum::<u64>();
            let mut distinct_pos = 0;
            for (j, (_, spec)) in measures.iter().enumerate() {
                let c = agg_cols[j];
                match (&mut cols[j], spec.agg) {
                    (MeasureColumn::Count(v), _) => {
                        v.extend(ints(b, c)?.values().iter().map(|x| *x as u64))
                    }
                    (MeasureColumn::DistinctValues(v), _) => {
                        let int = distinct_integer[distinct_pos];
                        distinct_pos += 1;
                        if int {
                            v.extend(distinct_ints(&ints(b, c)?)?);
                        } else {
                            let vals = distinct_codes(&keys(b, c, int)?, &mut dictionaries[j])?;
                            v.extend(vals.into_iter().map(|x| x.unwrap_or(NO_VALUE)));
                        }
                    }
                    (
                        col @ (MeasureColumn::Decimal { .. } | MeasureColumn::Decimal64 { .. }),
                        _,
                    ) => {
                        push_decimals(col, &decimals(b, c, scales[j])?);
                    }
                    (MeasureColumn::Distinct(_), _) => {
                        return Err(EngineError::Internal("bitmaps in a base table".into()));
                    }
                }
            }
        }
    }
    // Batches were appended by doubling; give the slack back (the base table lives through
    // the lattice stage, the build's peak).
    codes.iter_mut().for_each(Vec::shrink_to_fit);
    for col in &mut cols {
        match col {
            MeasureColumn::Count(v) => v.shrink_to_fit(),
            MeasureColumn::DistinctValues(v) => v.shrink_to_fit(),
            MeasureColumn::Decimal { values, valid, .. } => {
                values.shrink_to_fit();
                valid.shrink_to_fit();
            }
            MeasureColumn::Decimal64 { values, valid, .. } => {
                values.shrink_to_fit();
                valid.shrink_to_fit();
            }
            MeasureColumn::Distinct(v) => v.shrink_to_fit(),
        }
    }
    let mut table = BaseTable {
        codes,
        measure_ids: measures.iter().map(|(m, _)| *m).collect(),
        specs: measures.iter().map(|(_, s)| *s).collect(),
        measures: cols,
        fact_rows,
        queries,
        sorted_by: None,
    };
    // In the order of the key with the most members (the customer).
    let widest =
        (0..n_keys).max_by_key(|&i| dims.codes[f.direct[i]].as_ref().map_or(0, |c| c.n_keys));
    let read = started.elapsed();
    if let Some(k) = widest {
        table.sort_by_key(k);
    }
    tracing::info!(
        fact = f.name,
        rows = table.len(),
        fact_rows,
        query_secs = waited.as_secs_f64(),
        convert_secs = (read - waited).as_secs_f64(),
        sort_secs = (started.elapsed() - read).as_secs_f64(),
        "base table"
    );
    Ok(table)
}

/// Fact rows one base query should group at most, by default: DataFusion's hash table for
/// this many groups, with its sums, is what the base stage holds beyond the base table itself.
pub(crate) const RANGE_ROWS: u64 = 2_000_000;

/// Most queries one base table is read with (each prunes by date where the file is sorted).
const MAX_RANGES: u64 = 12;

/// `WHERE` clauses that split a fact's rows by contiguous ranges of periods, about
/// `range_rows` rows each; the last range also takes rows without a date. One empty clause
/// where the fact has no date or few rows.
fn period_ranges(
    time: Option<&lattice_defs::model::ColumnRef>,
    axis: Option<&super::time::TimeAxis>,
    rows: u64,
    range_rows: u64,
) -> Vec<String> {
    let (Some(t), Some(axis)) = (time, axis) else {
        return vec![String::new()];
    };
    let n = rows
        .div_ceil(range_rows.max(1))
        .clamp(1, MAX_RANGES)
        .min(axis.len.max(1) as u64) as usize;
    if n == 1 {
        return vec![String::new()];
    }
    let col = format!("f.{}", ident(&t.column));
    let start = |i: usize| {
        let (y, m, d) = super::time::period_start(axis.abs((i * axis.len / n) as u32), axis.grain);
        format!("DATE '{y:04}-{m:02}-{d:02}'")
    };
    (0..n)
        .map(|i| match i {
            0 => format!(" WHERE {col} < {}", start(1)),
            i if i + 1 == n => format!(" WHERE {col} >= {} OR {col} IS NULL", start(i)),
            i => format!(" WHERE {col} >= {} AND {col} < {}", start(i), start(i + 1)),
        })
        .collect()
}

/// Appends a batch of decimals to a base column: in 64 bits while every value fits, else the
/// column is widened to 128 bits once and stays so.
fn push_decimals(col: &mut MeasureColumn, a: &arrow::array::Decimal128Array) {
    if let MeasureColumn::Decimal64 {
        values,
        valid,
        scale,
    } = col
    {
        if a.values().iter().all(|v| i64::try_from(*v).is_ok()) {
            values.extend(a.values().iter().map(|v| *v as i64));
            valid.extend((0..a.len()).map(|r| a.is_valid(r)));
            return;
        }
        *col = MeasureColumn::Decimal {
            values: values.iter().map(|v| i128::from(*v)).collect(),
            valid: std::mem::take(valid),
            scale: *scale,
        };
    }
    if let MeasureColumn::Decimal { values, valid, .. } = col {
        values.extend(a.values().iter().copied());
        valid.extend((0..a.len()).map(|r| a.is_valid(r)));
    }
}

/// Integer distinct values as themselves ([`NO_VALUE`] for NULL), as [`distinct_codes`] does.
fn distinct_ints(a: &arrow::array::Int64Array) -> Result<Vec<u32>> {
    (0..a.len())
        .map(|r| {
            if !a.is_valid(r) {
                return Ok(NO_VALUE);
            }
            let i = a.value(r);
            u32::try_from(i).map_err(|_| EngineError::Unsupported {
                what: format!("a distinct count over the integer {i}: distinct integers must lie in 0..=4294967295"),
            })
        })
        .collect()
}

/// The codes distinct values are kept under: integer values as themselves (customer ids stay
/// ids, so a cell's set is the customers behind it), text through a dictionary.
fn distinct_codes(
    values: &[Option<KeyValue>],
    dict: &mut HashMap<KeyValue, u32>,
) -> Result<Vec<Option<u32>>> {
    values
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(KeyValue::Int(i)) => u32::try_from(*i).map(Some).map_err(|_| EngineError::Unsupported {
                what: format!("a distinct count over the integer {i}: distinct integers must lie in 0..=4294967295"),
            }),
            Some(text) => {
                let next = dict.len() as u32;
                Ok(Some(*dict.entry(text.clone()).or_insert(next)))
            }
        })
        .collect()
}

pub(crate) fn push_empty(col: &mut MeasureColumn) {
    match col {
        MeasureColumn::Count(v) => v.push(0),
        MeasureColumn::Decimal { values, valid, .. } => {
            values.push(0);
            valid.push(false);
        }
        MeasureColumn::Decimal64 { values, valid, .. } => {
            values.push(0);
            valid.push(false);
        }
        MeasureColumn::Distinct(v) => v.push(RoaringBitmap::new()),
        MeasureColumn::DistinctValues(v) => v.push(NO_VALUE),
    }
}

pub(crate) fn merge_decimal(
    values: &mut [i128],
    valid: &mut [bool],
    cell: usize,
    x: i128,
    agg: Agg,
) {
    if !valid[cell] {
        values[cell] = x;
        valid[cell] = true;
        return;
    }
    values[cell] = match agg {
        Agg::Min => values[cell].min(x),
        Agg::Max => values[cell].max(x),
        _ => values[cell] + x,
    };
}

#[cfg(test)]
mod tests {
    use arrow::array::Decimal128Array;

    use super::push_decimals;
    use crate::store::MeasureColumn;

    fn batch(values: &[Option<i128>]) -> Decimal128Array {
        Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(38, 2)
            .expect("decimal type")
    }

    /// Decimals stay in 64 bits until one does not fit; then the column holds every value,
    /// earlier ones included, in 128 bits.
    #[test]
    fn base_decimals_widen_when_a_value_leaves_64_bits() {
        let mut col = MeasureColumn::Decimal64 {
            values: Vec::new(),
            valid: Vec::new(),
            scale: 2,
        };
        push_decimals(
            &mut col,
            &batch(&[Some(-5), None, Some(i128::from(i64::MAX))]),
        );
        assert!(matches!(&col, MeasureColumn::Decimal64 { values, .. } if values.len() == 3));
        let big = i128::from(i64::MAX) + 1;
        push_decimals(&mut col, &batch(&[Some(big), Some(7)]));
        push_decimals(&mut col, &batch(&[Some(1)]));
        let MeasureColumn::Decimal {
            values,
            valid,
            scale,
        } = col
        else {
            panic!("not widened: {col:?}");
        };
        assert_eq!(scale, 2);
        assert_eq!(valid, [true, false, true, true, true, true]);
        assert_eq!(values[0], -5);
        assert_eq!(&values[2..], [i128::from(i64::MAX), big, 7, 1]);
    }
}
