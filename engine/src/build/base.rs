//! Stage 2: the base table of each fact — the raw facts aggregated by one DataFusion plan to
//! the cube grain: the key of every dimension the fact carries and the finest time period.
//! This is the only step that reads raw facts, so the same plan could run on a distributed
//! DataFusion; everything after it works on this much smaller table. A [`BaseReader`] reads a
//! fact whole ([`build_base`]) or, for a fact that streams through the build, one range of
//! periods at a time ([`stream_ranges`]).

use std::collections::HashMap;

use arrow::array::Array;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use lattice_defs::model::{
    Agg, DimensionKind, Fact, FactId, MeasureId, MeasureKind, Model, OverTime,
};
use lattice_defs::{Catalog, ColumnType};
use roaring::RoaringBitmap;

use super::dims::extend_codes;
use crate::source::arrays::{decimal_values, ints, keys};
use crate::source::load::fact_period_sql;
use crate::source::load::ident;
pub(crate) use crate::store::base::{BaseTable, MeasureSpec, ValueStats};
use crate::store::encoding::{Encoding, KeyValue, key_sql};
use crate::store::time::NO_PERIOD;
use crate::store::{Column, MeasureColumn, NO_VALUE};
use crate::{EngineError, Result};

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

impl BaseTable {
    /// Room for `room` more rows in every column.
    pub fn reserve(&mut self, room: usize) {
        self.codes.iter_mut().for_each(|c| c.reserve(room));
        for col in &mut self.measures {
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
    }

    /// Appends `other`'s rows (a table of the same fact) after this table's, unsorted: a
    /// decimal column kept in 64 bits on one side and 128 on the other becomes 128.
    pub(crate) fn append(&mut self, other: &BaseTable) -> Result<()> {
        for (mine, theirs) in self.codes.iter_mut().zip(&other.codes) {
            mine.extend_from_slice(theirs);
        }
        for (mine, theirs) in self.measures.iter_mut().zip(&other.measures) {
            if matches!(
                (&*mine, theirs),
                (
                    MeasureColumn::Decimal64 { .. },
                    MeasureColumn::Decimal { .. }
                )
            ) {
                *mine = widen(std::mem::replace(mine, MeasureColumn::Count(Column::new())));
            }
            match (mine, theirs) {
                (MeasureColumn::Count(a), MeasureColumn::Count(b)) => a.extend_from_slice(b),
                (MeasureColumn::DistinctValues(a), MeasureColumn::DistinctValues(b)) => {
                    a.extend_from_slice(b);
                }
                (MeasureColumn::Distinct(a), MeasureColumn::Distinct(b)) => {
                    a.extend_from_slice(b);
                }
                (
                    MeasureColumn::Decimal64 { values, valid, .. },
                    MeasureColumn::Decimal64 {
                        values: v,
                        valid: ok,
                        ..
                    },
                ) => {
                    values.extend_from_slice(v);
                    valid.extend_from_slice(ok);
                }
                (
                    MeasureColumn::Decimal { values, valid, .. },
                    MeasureColumn::Decimal {
                        values: v,
                        valid: ok,
                        ..
                    },
                ) => {
                    values.extend_from_slice(v);
                    valid.extend_from_slice(ok);
                }
                (
                    MeasureColumn::Decimal { values, valid, .. },
                    MeasureColumn::Decimal64 {
                        values: v,
                        valid: ok,
                        ..
                    },
                ) => {
                    values.extend(v.iter().map(|x| i128::from(*x)));
                    valid.extend_from_slice(ok);
                }
                _ => {
                    return Err(EngineError::Internal(
                        "two base tables of one fact with columns of different kinds".into(),
                    ));
                }
            }
        }
        self.fact_rows += other.fact_rows;
        self.queries += other.queries;
        Ok(())
    }

    /// The rows whose period `keep` keeps, in their order.
    pub(crate) fn rows_where(&self, keep: impl Fn(u32) -> bool) -> BaseTable {
        let rows: Vec<usize> = self
            .codes
            .last()
            .map(|p| (0..p.len()).filter(|&r| keep(p[r])).collect())
            .unwrap_or_default();
        BaseTable {
            codes: self
                .codes
                .iter()
                .map(|col| rows.iter().map(|&r| col[r]).collect())
                .collect(),
            measure_ids: self.measure_ids.clone(),
            specs: self.specs.clone(),
            measures: self.measures.iter().map(|m| m.gather(&rows)).collect(),
            fact_rows: 0,
            queries: 0,
            sorted_by: self.sorted_by,
            planned_rows: None,
            periods_present: None,
        }
    }

    pub(crate) fn shrink(&mut self) {
        self.codes.iter_mut().for_each(Column::shrink_to_fit);
        for col in &mut self.measures {
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
    }

    /// Puts the rows in the order of key column `k`, then period, then the rest of the grain
    /// (the other keys and the distinct-value columns `grain_values`), and merges rows of one
    /// grain (from ranges read row by row) into one. The lattice reads the base in this
    /// order: a distinct count over that key (customers) appends each cell's values in
    /// increasing order instead of inserting them, and the rows of one key and period are
    /// together, so cuboids that need only that key's levels and time merge them once
    /// ([`super::scan`]). Key codes follow the keys' order, so integer keys stay in numeric
    /// order.
    pub fn sort_and_merge(
        &mut self,
        k: usize,
        grain_values: &[usize],
        ungrouped: bool,
    ) -> Result<()> {
        let n = self.codes.len();
        if k + 1 >= n {
            return Ok(());
        }
        self.sorted_by = Some(k);
        let (key, period) = (&self.codes[k], &self.codes[n - 1]);
        // Two stable counting sorts of the row numbers, by period and then by key.
        let rows = 0..key.len() as u32;
        let by_period = counting_sort(period, rows);
        let mut order = counting_sort(key, by_period.iter().copied());
        drop(by_period);
        // Rows DataFusion grouped are one per grain already.
        let starts: Vec<u32> = if ungrouped {
            self.grain_starts(k, grain_values, &mut order)
        } else {
            Vec::new()
        };
        let merged = ungrouped && starts.len() < order.len();
        let starts = if merged { starts } else { Vec::new() };
        let groups = Groups {
            order: &order,
            starts: &starts,
            merged,
        };
        if !self.gather(groups) {
            return Err(EngineError::Unsupported {
                what: "a sum of one cell of the cube grain passes 128-bit decimals".into(),
            });
        }
        Ok(())
    }

    /// Sorts each run of `order` (rows in the order of key column `k` and period) by the rest
    /// of the grain (the other keys and the distinct-value columns `grain_values`), and
    /// returns where each grain's rows start in it.
    fn grain_starts(&self, k: usize, grain_values: &[usize], order: &mut [u32]) -> Vec<u32> {
        let n = self.codes.len();
        let (key, period) = (&self.codes[k], &self.codes[n - 1]);
        // The rest of the grain, compared within each run of one key and period.
        let rest: Vec<&[u32]> = self
            .codes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != k && *i != n - 1)
            .map(|(_, c)| c.as_slice())
            .chain(
                grain_values
                    .iter()
                    .filter_map(|j| match &self.measures[*j] {
                        MeasureColumn::DistinctValues(v) => Some(v.as_slice()),
                        _ => None,
                    }),
            )
            .collect();
        let same_run = |a: u32, b: u32| {
            key[a as usize] == key[b as usize] && period[a as usize] == period[b as usize]
        };
        let cmp_rest = |a: &u32, b: &u32| {
            rest.iter()
                .map(|c| c[*a as usize].cmp(&c[*b as usize]))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && same_run(order[start], order[end]) {
                end += 1;
            }
            if end - start > 1 && !rest.is_empty() {
                order[start..end].sort_by(cmp_rest);
            }
            start = end;
        }
        // Where each grain's rows start.
        (0..order.len())
            .filter(|&p| {
                p == 0
                    || !same_run(order[p - 1], order[p])
                    || cmp_rest(&order[p - 1], &order[p]).is_ne()
            })
            .map(|p| p as u32)
            .collect()
    }

    /// Puts every column in the order of `groups`, each grain's rows merged into one; false
    /// when a sum passes 128 bits. Column by column, every core at once: each column is one
    /// gather (and merge).
    fn gather(&mut self, groups: Groups<'_>) -> bool {
        let merged = groups.merged;
        let specs = &self.specs;
        let overflowed = std::sync::atomic::AtomicBool::new(false);
        let overflow = &overflowed;
        std::thread::scope(|s| {
            let mut jobs: Vec<Box<dyn FnOnce() + Send + '_>> = Vec::new();
            for c in &mut self.codes {
                jobs.push(Box::new(move || groups.first(c.to_mut())));
            }
            for (m, spec) in self.measures.iter_mut().zip(specs) {
                let agg = spec.agg;
                match m {
                    MeasureColumn::Count(v) => jobs.push(Box::new(move || {
                        if merged {
                            *v = groups.each(|rows| rows.map(|r| v[r]).sum()).into();
                        } else {
                            groups.first(v.to_mut());
                        }
                    })),
                    MeasureColumn::DistinctValues(v) => {
                        jobs.push(Box::new(move || groups.first(v.to_mut())))
                    }
                    col @ (MeasureColumn::Decimal { .. } | MeasureColumn::Decimal64 { .. }) => jobs
                        .push(Box::new(move || {
                            if !groups.merge_decimals(col, agg) {
                                overflow.store(true, std::sync::atomic::Ordering::Relaxed);
                            }
                        })),
                    MeasureColumn::Distinct(v) => {
                        let order = groups.order.iter();
                        let sorted = order.map(|&r| std::mem::take(&mut v[r as usize]));
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
        !overflowed.into_inner()
    }
}

/// The row numbers `rows` in a stable counting sort by `values` (dense codes; `NO_PERIOD`,
/// `u32::MAX`, sorts last).
fn counting_sort(values: &[u32], rows: impl Iterator<Item = u32>) -> Vec<u32> {
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

/// Rows in their new order, and where each grain's rows start in it.
#[derive(Clone, Copy)]
struct Groups<'a> {
    order: &'a [u32],
    starts: &'a [u32],
    /// Whether some grain has more than one row (else `starts` is unused).
    merged: bool,
}

impl Groups<'_> {
    /// Each grain's rows (indexes into the old columns).
    fn rows(&self, g: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self
            .starts
            .get(g + 1)
            .map_or(self.order.len(), |e| *e as usize);
        self.order[self.starts[g] as usize..end]
            .iter()
            .map(|r| *r as usize)
    }

    fn each<T>(&self, mut f: impl FnMut(&mut dyn Iterator<Item = usize>) -> T) -> Vec<T> {
        (0..self.starts.len())
            .map(|g| f(&mut self.rows(g)))
            .collect()
    }

    /// The column in the new order, a grain's first row for the grain.
    fn first<T: Copy>(&self, v: &mut Vec<T>) {
        let out: Vec<T> = if !self.merged {
            self.order.iter().map(|&r| v[r as usize]).collect()
        } else {
            self.starts
                .iter()
                .map(|&p| v[self.order[p as usize] as usize])
                .collect()
        };
        *v = out;
    }

    /// A decimal column in the new order, each grain's non-null values merged by `agg` (in 64
    /// bits while they fit); false when a sum passes 128 bits.
    fn merge_decimals(&self, col: &mut MeasureColumn, agg: Agg) -> bool {
        if !self.merged {
            match col {
                MeasureColumn::Decimal { values, valid, .. } => {
                    self.first(values.to_mut());
                    self.first(valid);
                }
                MeasureColumn::Decimal64 { values, valid, .. } => {
                    self.first(values.to_mut());
                    self.first(valid);
                }
                _ => {}
            }
            return true;
        }
        let (wide, scale) = match col {
            MeasureColumn::Decimal {
                values,
                valid,
                scale,
            } => (self.fold(values, valid, agg), *scale),
            MeasureColumn::Decimal64 {
                values,
                valid,
                scale,
            } => (self.fold(values, valid, agg), *scale),
            _ => return true,
        };
        let Some((values, merged_ok)) = wide else {
            return false;
        };
        *col = if values.iter().all(|v| i64::try_from(*v).is_ok()) {
            MeasureColumn::Decimal64 {
                values: values.iter().map(|v| *v as i64).collect(),
                valid: merged_ok,
                scale,
            }
        } else {
            MeasureColumn::Decimal {
                values: values.into(),
                valid: merged_ok,
                scale,
            }
        };
        true
    }

    fn fold<T: Copy + Into<i128>>(
        &self,
        values: &[T],
        valid: &[bool],
        agg: Agg,
    ) -> Option<(Vec<i128>, Vec<bool>)> {
        let mut out = Vec::with_capacity(self.starts.len());
        let mut ok = Vec::with_capacity(self.starts.len());
        for g in 0..self.starts.len() {
            let mut acc: Option<i128> = None;
            for r in self.rows(g).filter(|r| valid[*r]) {
                let x: i128 = values[r].into();
                acc = Some(match (acc, agg) {
                    (None, _) => x,
                    (Some(a), Agg::Min) => a.min(x),
                    (Some(a), Agg::Max) => a.max(x),
                    (Some(a), _) => a.checked_add(x)?,
                });
            }
            out.push(acc.unwrap_or(0));
            ok.push(acc.is_some());
        }
        Some((out, ok))
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

/// The decimal scale of a measure column (0 for counts and sets).
pub(crate) fn column_decimal_scale(c: &MeasureColumn) -> i8 {
    match c {
        MeasureColumn::Decimal { scale, .. } | MeasureColumn::Decimal64 { scale, .. } => *scale,
        _ => 0,
    }
}

pub(crate) fn empty_column(spec: MeasureSpec, scale: i8) -> MeasureColumn {
    match spec.agg {
        Agg::Count => MeasureColumn::Count(Column::new()),
        Agg::Distinct => MeasureColumn::Distinct(Vec::new()),
        Agg::Sum | Agg::Min | Agg::Max => MeasureColumn::Decimal {
            values: Column::new(),
            valid: Vec::new(),
            scale,
        },
    }
}

/// How one fact is read at the cube grain: its DataFusion queries (one per range of periods)
/// and where each measure lands in their results.
pub(crate) struct BaseReader {
    pub fact: FactId,
    measures: Vec<(MeasureId, MeasureSpec)>,
    /// The inner select (keys, period, measure inputs) and the group columns.
    inner: Vec<String>,
    group: Vec<String>,
    outer_aggs: Vec<String>,
    /// The same columns per fact row, ungrouped (see `raw`).
    raw_aggs: Vec<String>,
    scales: Vec<i8>,
    distinct_integer: Vec<bool>,
    /// A distinct count over the column of a key already in the grain (customers of a fact
    /// keyed by customer) reads that key's column instead of grouping by it twice.
    reuse_key: Vec<Option<usize>>,
    /// Result column of each measure.
    agg_cols: Vec<usize>,
    /// The fact's column each distinct measure counts values of (`f."column"`).
    distinct_columns: Vec<Option<String>>,
    dictionaries: Vec<HashMap<KeyValue, u32>>,
    /// Read row by row (DataFusion does not group): a fact whose rows are (nearly) at the
    /// grain already (balances: one per customer, product and month) gains nothing from
    /// DataFusion's grouping, which then costs most of the stage. Decided by the first range:
    /// when its groups are most of its rows, the other ranges are read row by row, and rows of
    /// one grain are merged after sorting (`sort_and_merge`). An allocated fact has one row
    /// per cell of its driver, so it is at the grain already.
    pub raw: bool,
    n_keys: usize,
    /// The key with the most members (the customer): the rows' order.
    widest: Option<usize>,
}

/// The SQL of a fact's base query as it is put together: the inner select (keys, period,
/// measure inputs), the group columns, and the measures' aggregates when grouped and when
/// read row by row.
#[derive(Default)]
struct BaseSql {
    inner: Vec<String>,
    group: Vec<String>,
    outer_aggs: Vec<String>,
    raw_aggs: Vec<String>,
}

/// How each measure of a fact is read from its base query (see [`BaseReader`]'s fields).
struct MeasureReads {
    scales: Vec<i8>,
    distinct_integer: Vec<bool>,
    reuse_key: Vec<Option<usize>>,
    distinct_columns: Vec<Option<String>>,
}

impl BaseSql {
    /// Selects and groups by the key of every dimension `f` carries, then the period; returns
    /// whether each key is an integer.
    fn push_keys(&mut self, model: &Model, dims: &Encoding, f: &Fact) -> Result<Vec<bool>> {
        let mut integer_keys = Vec::new();
        for (i, &d) in f.direct.iter().enumerate() {
            let codes = dims.codes[d].as_ref().ok_or_else(|| {
                EngineError::Internal("a fact's direct dimension is the time dimension".into())
            })?;
            let DimensionKind::Table { key, .. } = &model.dimensions[d].kind else {
                return Err(EngineError::Internal("direct time dimension".into()));
            };
            self.inner.push(format!(
                "{} AS k{i}",
                key_sql(&format!("f.{}", ident(&key.column)), codes.integer_key)
            ));
            self.group.push(format!("k{i}"));
            integer_keys.push(codes.integer_key);
        }
        self.inner.push(format!(
            "{} AS p",
            fact_period_sql(f.time.as_ref(), dims.time.as_ref())
        ));
        self.group.push("p".into());
        Ok(integer_keys)
    }

    /// Selects the input of each of `f`'s `measures` and its aggregates: a distinct count's
    /// values are group columns (or a key's, `integer_keys` telling which keys are integers);
    /// the others are aggregated.
    fn push_measures(
        &mut self,
        model: &Model,
        catalog: &Catalog,
        f: &Fact,
        measures: &[(MeasureId, MeasureSpec)],
        integer_keys: &[bool],
    ) -> Result<MeasureReads> {
        let mut reads = MeasureReads {
            scales: Vec::new(),
            distinct_integer: Vec::new(),
            reuse_key: vec![None; measures.len()],
            distinct_columns: vec![None; measures.len()],
        };
        let key_columns: Vec<Option<&str>> = f
            .direct
            .iter()
            .map(|&d| match &model.dimensions[d].kind {
                DimensionKind::Table { key, .. } => Some(key.column.as_str()),
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
            reads.scales.push(scale);
            let x = column.as_ref().map(|c| format!("f.{}", ident(&c.column)));
            match (spec.agg, &x) {
                (Agg::Distinct, Some(x)) => {
                    reads.distinct_columns[j] = Some(x.clone());
                    let int = column
                        .as_ref()
                        .is_some_and(|c| is_integer(catalog, &f.name, &c.column));
                    reads.distinct_integer.push(int);
                    let same_key = column.as_ref().and_then(|c| {
                        key_columns
                            .iter()
                            .zip(integer_keys)
                            .position(|(k, ik)| *k == Some(c.column.as_str()) && *ik == int)
                    });
                    if let Some(i) = same_key {
                        reads.reuse_key[j] = Some(i);
                    } else {
                        self.inner.push(format!("{} AS x{j}", key_sql(x, int)));
                        self.group.push(format!("x{j}"));
                    }
                }
                (Agg::Count, None) => {
                    self.outer_aggs.push(format!("COUNT(*) AS a{j}"));
                    self.raw_aggs.push(format!("CAST(1 AS BIGINT) AS a{j}"));
                }
                (agg, Some(x)) => self.push_aggregate(j, agg, x, scale),
                (_, None) => {
                    return Err(EngineError::Internal("aggregate without a column".into()));
                }
            }
        }
        Ok(reads)
    }

    /// Selects measure `j`'s input `x` (at `scale`) and aggregates it by `agg`: a sum,
    /// minimum or maximum, or a count of its non-null values.
    fn push_aggregate(&mut self, j: usize, agg: Agg, x: &str, scale: i8) {
        let x = if scale == 6 && matches!(agg, Agg::Sum | Agg::Min | Agg::Max) {
            format!("CAST({x} AS DECIMAL(38, 6))")
        } else {
            x.to_string()
        };
        self.inner.push(format!("{x} AS x{j}"));
        self.outer_aggs.push(match agg {
            Agg::Sum => format!("SUM(x{j}) AS a{j}"),
            Agg::Min => format!("MIN(x{j}) AS a{j}"),
            Agg::Max => format!("MAX(x{j}) AS a{j}"),
            _ => format!("COUNT(x{j}) AS a{j}"),
        });
        self.raw_aggs.push(match agg {
            Agg::Sum | Agg::Min | Agg::Max => format!("x{j} AS a{j}"),
            _ => format!("CAST(CASE WHEN x{j} IS NULL THEN 0 ELSE 1 END AS BIGINT) AS a{j}"),
        });
    }
}

/// The result column of each of `measures` in a base query with `n_group` group columns, of
/// which `n_keys` keys: outer aggregate columns follow the group columns and fact_rows;
/// distinct values are group columns (after the keys and the period), or a key's
/// (`reuse_key`).
fn agg_columns(
    measures: &[(MeasureId, MeasureSpec)],
    reuse_key: &[Option<usize>],
    n_group: usize,
    n_keys: usize,
) -> Vec<usize> {
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
    agg_cols
}

impl BaseReader {
    /// The reader of `fact`: its base query's SQL and where each measure lands in it.
    pub fn new(
        model: &Model,
        catalog: &Catalog,
        dims: &Encoding,
        fact: FactId,
    ) -> Result<BaseReader> {
        let f = &model.facts[fact];
        let measures = fact_measures(model, fact);
        let mut sql = BaseSql::default();
        let integer_keys = sql.push_keys(model, dims, f)?;
        let reads = sql.push_measures(model, catalog, f, &measures, &integer_keys)?;
        let n_keys = f.direct.len();
        let agg_cols = agg_columns(&measures, &reads.reuse_key, sql.group.len(), n_keys);
        let widest =
            (0..n_keys).max_by_key(|&i| dims.codes[f.direct[i]].as_ref().map_or(0, |c| c.n_keys));
        Ok(BaseReader {
            fact,
            dictionaries: vec![HashMap::new(); measures.len()],
            measures,
            inner: sql.inner,
            group: sql.group,
            outer_aggs: sql.outer_aggs,
            raw_aggs: sql.raw_aggs,
            scales: reads.scales,
            distinct_integer: reads.distinct_integer,
            reuse_key: reads.reuse_key,
            agg_cols,
            distinct_columns: reads.distinct_columns,
            raw: model.allocation_of(fact).is_some() && n_keys > 0,
            n_keys,
            widest,
        })
    }

    fn sql(&self, table: &str, filter: &str) -> String {
        let aggs = |aggs: &[String]| aggs.iter().map(|a| format!(", {a}")).collect::<String>();
        let from = format!(
            "(SELECT {} FROM {} AS f{filter})",
            self.inner.join(", "),
            ident(table)
        );
        let group = self.group.join(", ");
        if self.raw {
            format!(
                "SELECT {group}, CAST(1 AS BIGINT) AS fact_rows{} FROM {from}",
                aggs(&self.raw_aggs),
            )
        } else {
            format!(
                "SELECT {group}, COUNT(*) AS fact_rows{} FROM {from} GROUP BY {group}",
                aggs(&self.outer_aggs),
            )
        }
    }

    /// What the base rows read by this reader hold: the query that reads them, and each
    /// measure column's measure and combination. Two readers of one signature (of two
    /// definitions) read the same base rows.
    pub fn signature(&self) -> (String, Vec<MeasureId>, Vec<MeasureSpec>) {
        (
            self.sql("fact", ""),
            self.measures.iter().map(|(m, _)| *m).collect(),
            self.measures.iter().map(|(_, s)| *s).collect(),
        )
    }

    /// A table without rows, of this fact's columns.
    pub fn table(&self) -> BaseTable {
        let cols = self
            .measures
            .iter()
            .zip(&self.scales)
            .map(|((_, s), sc)| match s.agg {
                Agg::Distinct => MeasureColumn::DistinctValues(Column::new()),
                Agg::Sum | Agg::Min | Agg::Max => MeasureColumn::Decimal64 {
                    values: Column::new(),
                    valid: Vec::new(),
                    scale: *sc,
                },
                _ => empty_column(*s, *sc),
            })
            .collect();
        BaseTable {
            codes: vec![Column::new(); self.n_keys + 1],
            measure_ids: self.measures.iter().map(|(m, _)| *m).collect(),
            specs: self.measures.iter().map(|(_, s)| *s).collect(),
            measures: cols,
            fact_rows: 0,
            queries: 0,
            sorted_by: self.widest,
            planned_rows: None,
            periods_present: None,
        }
    }

    /// Appends the fact's rows that `filter` keeps (a `WHERE` clause) to `table`, grouped to
    /// the grain unless [`BaseReader::raw`]; returns the groups and the fact rows read.
    /// Streamed: each batch is converted to codes and dropped, so the raw groups and the base
    /// table are never both whole in memory.
    pub async fn read(
        &mut self,
        model: &Model,
        ctx: &SessionContext,
        dims: &Encoding,
        filter: &str,
        table: &mut BaseTable,
    ) -> Result<(u64, u64)> {
        let f = &model.facts[self.fact];
        let n_keys = self.n_keys;
        let n_group = self.group.len();
        let sql = self.sql(&f.name, filter);
        let (rows_before, facts_before) = (table.codes[n_keys].len(), table.fact_rows);
        tracing::debug!(sql, "base query");
        table.queries += 1;
        let mut stream = ctx.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let b = &batch?;
            let codes = &mut table.codes;
            for (i, &d) in f.direct.iter().enumerate() {
                let dc = dims.codes[d]
                    .as_ref()
                    .ok_or_else(|| EngineError::Internal("no codes".into()))?;
                extend_codes(dc, b, i, codes[i].to_mut())?;
            }
            let periods = ints(b, n_keys)?;
            if periods.null_count() == 0 {
                codes[n_keys].extend(periods.values().iter().map(|p| *p as u32));
            } else {
                codes[n_keys].extend((0..b.num_rows()).map(|r| {
                    if periods.is_valid(r) {
                        periods.value(r) as u32
                    } else {
                        NO_PERIOD
                    }
                }));
            }
            table.fact_rows += ints(b, n_group)?
                .values()
                .iter()
                .map(|v| *v as u64)
                .sum::<u64>();
            let mut distinct_pos = 0;
            for (j, (_, spec)) in self.measures.iter().enumerate() {
                let c = self.agg_cols[j];
                match (&mut table.measures[j], spec.agg) {
                    (MeasureColumn::Count(v), _) => {
                        v.extend(ints(b, c)?.values().iter().map(|x| *x as u64))
                    }
                    (MeasureColumn::DistinctValues(v), _) => {
                        let int = self.distinct_integer[distinct_pos];
                        distinct_pos += 1;
                        if int {
                            distinct_ints(&ints(b, c)?, v.to_mut())?;
                        } else {
                            let vals =
                                distinct_codes(&keys(b, c, int)?, &mut self.dictionaries[j])?;
                            v.extend(vals.into_iter().map(|x| x.unwrap_or(NO_VALUE)));
                        }
                    }
                    (
                        col @ (MeasureColumn::Decimal { .. } | MeasureColumn::Decimal64 { .. }),
                        _,
                    ) => {
                        push_decimals(col, &decimal_values(b, c, self.scales[j])?);
                    }
                    (MeasureColumn::Distinct(_), _) => {
                        return Err(EngineError::Internal("bitmaps in a base table".into()));
                    }
                }
            }
        }
        Ok((
            (table.codes[n_keys].len() - rows_before) as u64,
            table.fact_rows - facts_before,
        ))
    }

    /// Puts `table`'s rows in the order of the widest key and period, rows of one grain
    /// merged ([`BaseTable::sort_and_merge`]).
    pub fn sort(&self, table: &mut BaseTable) -> Result<()> {
        self.sort_merging(table, self.raw)
    }

    /// [`BaseReader::sort`], rows of one grain merged when `ungrouped` (a table put together
    /// from tables read apart may hold a grain twice).
    pub fn sort_merging(&self, table: &mut BaseTable, ungrouped: bool) -> Result<()> {
        let Some(k) = self.widest else {
            return Ok(());
        };
        // Distinct values are part of the grain; those of a key in the grain too, as keys
        // outside the dimension table share the unknown key's code but not their value.
        let grain_values: Vec<usize> = (0..self.measures.len())
            .filter(|j| self.measures[*j].1.agg == Agg::Distinct)
            .collect();
        table.sort_and_merge(k, &grain_values, ungrouped)
    }

    /// One table of `parts` (tables of this fact, each sorted by [`BaseReader::sort`], no
    /// two with a dated period in common), sorted as the sort sorts. Where the parts' dated
    /// periods lie in ranges one after the other (a refresh's new months after the cube's)
    /// and only the last has undated rows, each key's rows are the parts' runs of that key
    /// in turn: copied, not sorted again. Otherwise they are appended and sorted, rows of one
    /// grain merged.
    pub fn join_sorted(&self, parts: &[&BaseTable]) -> Result<BaseTable> {
        if let Some(k) = self.widest
            && let Some(joined) = join_runs(parts, k)
        {
            return Ok(joined);
        }
        let mut table = self.table();
        table.reserve(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            table.append(part)?;
        }
        self.sort_merging(&mut table, true)?;
        Ok(table)
    }

    /// Per period present (axis index; [`NO_PERIOD`] for rows without one), the fact rows
    /// in it; and each distinct measure's value range over the whole fact, largest value
    /// and whether the values follow the rows' order (those of the widest key).
    pub async fn stats(
        &self,
        model: &Model,
        ctx: &SessionContext,
        dims: &Encoding,
    ) -> Result<(Vec<(u32, u64)>, Vec<Option<ValueStats>>)> {
        let f = &model.facts[self.fact];
        let table = ident(&f.name);
        // Two queries: the periods read the date column alone, and the extremes of plain
        // columns come from the Parquet statistics where they are exact.
        let sql = format!(
            "SELECT p, COUNT(*) FROM (SELECT {} AS p FROM {table} AS f) GROUP BY p",
            fact_period_sql(f.time.as_ref(), dims.time.as_ref())
        );
        tracing::debug!(sql, "fact periods");
        let mut periods = Vec::new();
        for b in ctx.sql(&sql).await?.collect().await? {
            let (p, n) = (ints(&b, 0)?, ints(&b, 1)?);
            for r in 0..b.num_rows() {
                let period = if p.is_valid(r) {
                    u32::try_from(p.value(r)).unwrap_or(NO_PERIOD)
                } else {
                    NO_PERIOD
                };
                periods.push((period, n.value(r) as u64));
            }
        }
        let distinct: Vec<(usize, &String)> = self
            .distinct_columns
            .iter()
            .enumerate()
            .filter_map(|(j, c)| c.as_ref().map(|c| (j, c)))
            .collect();
        let mut ranges: Vec<Option<ValueStats>> = vec![None; self.measures.len()];
        if distinct.is_empty() {
            periods.sort_unstable();
            return Ok((periods, ranges));
        }
        // Aliased: two measures may count the same column.
        let extremes: Vec<String> = distinct
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("MAX({c}) AS hi{i}, MIN({c}) AS lo{i}"))
            .collect();
        let sql = format!("SELECT {} FROM {table} AS f", extremes.join(", "));
        tracing::debug!(sql, "distinct value ranges");
        let batches = ctx.sql(&sql).await?.collect().await?;
        for (i, &(j, _)) in distinct.iter().enumerate() {
            let mut seen: Option<(i64, i64)> = None;
            for b in &batches {
                let (hi, lo) = (ints(b, 2 * i)?, ints(b, 2 * i + 1)?);
                for r in (0..b.num_rows()).filter(|r| hi.is_valid(*r)) {
                    let (h, l) = (hi.value(r), lo.value(r));
                    seen = Some(seen.map_or((h, l), |(a, b)| (a.max(h), b.min(l))));
                }
            }
            if let Some((hi, lo)) = seen {
                for v in [hi, lo] {
                    if u32::try_from(v).is_err() {
                        return Err(EngineError::Unsupported {
                            what: format!(
                                "a distinct count over the integer {v}: distinct integers must lie in 0..=4294967295"
                            ),
                        });
                    }
                }
            }
            ranges[j] = Some(ValueStats {
                max: seen.map(|(hi, _)| hi as u32),
                ascending: self.reuse_key[j].is_some() && self.reuse_key[j] == self.widest,
            });
        }
        periods.sort_unstable();
        Ok((periods, ranges))
    }
}

/// [`BaseReader::join_sorted`] without sorting: `None` unless every part is sorted by key
/// column `k`, their dated periods lie in ranges one after another, only the last in that
/// order has undated rows, and each column is of one kind in every part.
fn join_runs(parts: &[&BaseTable], k: usize) -> Option<BaseTable> {
    let first = parts.first()?;
    let n = first.codes.len();
    if k + 1 >= n
        || parts
            .iter()
            .any(|p| p.sorted_by != Some(k) || p.codes.len() != n)
    {
        return None;
    }
    // Each part's dated periods' range and whether it has undated rows, in period order.
    let mut spans: Vec<(u32, u32, bool, &BaseTable)> = Vec::new();
    for part in parts {
        let periods = &part.codes[n - 1];
        let undated = periods.contains(&NO_PERIOD);
        let dated = periods.iter().copied().filter(|p| *p != NO_PERIOD);
        let (lo, hi) = dated.fold((u32::MAX, 0), |(lo, hi), p| (lo.min(p), hi.max(p)));
        if part.len() > 0 {
            spans.push((lo, hi, undated, part));
        }
    }
    spans.sort_by_key(|s| (s.0, s.1));
    let follow = spans.windows(2).all(|w| w[0].1 < w[1].0 && !w[0].2);
    let kinds = |p: &BaseTable| -> Vec<std::mem::Discriminant<MeasureColumn>> {
        p.measures.iter().map(std::mem::discriminant).collect()
    };
    if !follow || spans.iter().any(|s| kinds(s.3) != kinds(first)) {
        return None;
    }
    let keys = spans
        .iter()
        .filter_map(|s| s.3.codes[k].last())
        .max()
        .map_or(0, |m| *m as usize + 1);
    // Per part, where each key's run starts (the key column is sorted).
    let starts: Vec<Vec<usize>> = spans
        .iter()
        .map(|s| {
            let mut at = vec![0usize; keys + 1];
            for &c in &s.3.codes[k] {
                at[c as usize + 1] += 1;
            }
            for i in 0..keys {
                at[i + 1] += at[i];
            }
            at
        })
        .collect();
    let rows: usize = spans.iter().map(|s| s.3.len()).sum();
    fn runs<T: Clone>(cols: &[&[T]], starts: &[Vec<usize>], keys: usize, rows: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(rows);
        for key in 0..keys {
            for (col, at) in cols.iter().zip(starts) {
                out.extend_from_slice(&col[at[key]..at[key + 1]]);
            }
        }
        out
    }
    let tables: Vec<&BaseTable> = spans.iter().map(|s| s.3).collect();
    let codes = (0..n)
        .map(|c| {
            let cols: Vec<&[u32]> = tables.iter().map(|t| t.codes[c].as_slice()).collect();
            runs(&cols, &starts, keys, rows).into()
        })
        .collect();
    let measures = (0..first.measures.len())
        .map(|j| {
            let cols: Vec<&MeasureColumn> = tables.iter().map(|t| &t.measures[j]).collect();
            // Every part's values of one kind (the parts' kinds are checked alike above),
            // each key's runs in turn.
            fn joined<'a, T: Clone + 'a>(
                cols: &[&'a MeasureColumn],
                pick: impl Fn(&'a MeasureColumn) -> Option<&'a [T]>,
                (starts, keys, rows): (&[Vec<usize>], usize, usize),
            ) -> Vec<T> {
                let slices: Vec<&[T]> = cols.iter().filter_map(|c| pick(c)).collect();
                runs(&slices, starts, keys, rows)
            }
            macro_rules! pick {
                ($kind:ident) => {
                    |c: &'_ MeasureColumn| match c {
                        MeasureColumn::$kind(v) => Some(v.as_slice()),
                        _ => None,
                    }
                };
                ($kind:ident . $field:ident) => {
                    |c: &'_ MeasureColumn| match c {
                        MeasureColumn::$kind { $field, .. } => Some($field.as_slice()),
                        _ => None,
                    }
                };
            }
            let at = (starts.as_slice(), keys, rows);
            match &first.measures[j] {
                MeasureColumn::Count(_) => {
                    MeasureColumn::Count(joined(&cols, pick!(Count), at).into())
                }
                MeasureColumn::DistinctValues(_) => {
                    MeasureColumn::DistinctValues(joined(&cols, pick!(DistinctValues), at).into())
                }
                MeasureColumn::Distinct(_) => {
                    MeasureColumn::Distinct(joined(&cols, pick!(Distinct), at))
                }
                MeasureColumn::Decimal { scale, .. } => MeasureColumn::Decimal {
                    values: joined(&cols, pick!(Decimal.values), at).into(),
                    valid: joined(&cols, pick!(Decimal.valid), at),
                    scale: *scale,
                },
                MeasureColumn::Decimal64 { scale, .. } => MeasureColumn::Decimal64 {
                    values: joined(&cols, pick!(Decimal64.values), at).into(),
                    valid: joined(&cols, pick!(Decimal64.valid), at),
                    scale: *scale,
                },
            }
        })
        .collect();
    Some(BaseTable {
        codes,
        measure_ids: first.measure_ids.clone(),
        specs: first.specs.clone(),
        measures,
        fact_rows: tables.iter().map(|t| t.fact_rows).sum(),
        queries: 0,
        sorted_by: Some(k),
        planned_rows: None,
        periods_present: None,
    })
}

/// Whether `fact` can be read a range of periods at a time through the whole build, as far as
/// its columns go: every distinct value an integer (their range is known up front, from
/// [`BaseReader::stats`]; a text value's code is known only once seen).
pub(crate) fn distinct_values_are_integers(model: &Model, catalog: &Catalog, fact: FactId) -> bool {
    let table = &model.facts[fact].name;
    fact_measures(model, fact).iter().all(|(m, spec)| {
        spec.agg != Agg::Distinct
            || matches!(&model.measures[*m].kind, MeasureKind::Aggregate { column: Some(c), .. }
                if is_integer(catalog, table, &c.column))
    })
}

/// Reads one fact at the cube grain, whole.
pub(crate) async fn build_base(
    model: &Model,
    reader: &mut BaseReader,
    ctx: &SessionContext,
    dims: &Encoding,
    catalog: &Catalog,
    range_rows: u64,
) -> Result<BaseTable> {
    let f = &model.facts[reader.fact];
    let mut table = reader.table();
    // One query per range of periods: the period is part of the grain, so the ranges' groups
    // are disjoint and DataFusion holds one range's groups at a time.
    let rows = super::budget::source_rows(model, catalog, &f.name);
    let ranges = period_ranges(f.time.as_ref(), dims.time.as_ref(), rows, range_rows);
    // A base table has at most a row per fact row: room for that many up front (address
    // space only until written) saves copying the columns as they double.
    table.reserve(usize::try_from(rows).unwrap_or(0).min(1 << 31));
    let started = std::time::Instant::now();
    for (i, filter) in ranges.iter().enumerate() {
        let (groups, facts) = reader.read(model, ctx, dims, filter, &mut table).await?;
        if i == 0 && ranges.len() > 1 && reader.n_keys > 0 {
            reader.raw = groups * 5 >= facts * 4;
        }
    }
    // Batches were appended by doubling; give the slack back.
    table.shrink();
    let read = started.elapsed();
    reader.sort(&mut table)?;
    tracing::info!(
        fact = f.name,
        rows = table.len(),
        fact_rows = table.fact_rows,
        read_secs = read.as_secs_f64(),
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
    axis: Option<&crate::store::time::TimeAxis>,
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
    let bounds: Vec<u32> = (0..=n).map(|i| (i * axis.len / n) as u32).collect();
    range_filters(t, axis, &bounds)
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

/// A fact's ranges of periods for reading it a range at a time: axis periods `a..b` of about
/// `range_rows` fact rows each (by `per_period`, the rows of each period), never splitting a
/// period of any of `grains` (each metric period's bands come from one range), each with its
/// `WHERE` clause. The last also takes the rows without a date.
pub(crate) fn stream_ranges(
    time: &lattice_defs::model::ColumnRef,
    axis: &crate::store::time::TimeAxis,
    per_period: &[(u32, u64)],
    range_rows: u64,
    grains: &[lattice_defs::model::TimeGrain],
) -> Vec<((u32, u32), String)> {
    let len = axis.len as u32;
    let mut rows = vec![0u64; axis.len];
    for &(p, n) in per_period {
        if let Some(r) = rows.get_mut(p as usize) {
            *r += n;
        }
    }
    let splits = |b: u32| axis.begins_period(b, grains);
    let mut bounds = vec![0u32];
    let mut acc = 0;
    for p in 0..len {
        acc += rows[p as usize];
        if acc >= range_rows.max(1) && p + 1 < len && splits(p + 1) {
            bounds.push(p + 1);
            acc = 0;
        }
    }
    bounds.push(len.max(1));
    range_filters(time, axis, &bounds)
}

/// Per range of axis periods `bounds[i]..bounds[i + 1]`, the range and the `WHERE` clause that
/// keeps its rows by `time`; the last also keeps rows without a date, and a single range needs
/// no clause.
fn range_filters(
    time: &lattice_defs::model::ColumnRef,
    axis: &crate::store::time::TimeAxis,
    bounds: &[u32],
) -> Vec<((u32, u32), String)> {
    let n = bounds.len().saturating_sub(1);
    let col = format!("f.{}", ident(&time.column));
    let start = |p: u32| {
        format!(
            "DATE '{}'",
            crate::store::time::period_start(axis.abs(p), axis.grain)
        )
    };
    (0..n)
        .map(|i| {
            let (a, b) = (bounds[i], bounds[i + 1]);
            let filter = match i {
                _ if n == 1 => String::new(),
                0 => format!(" WHERE {col} < {}", start(b)),
                i if i + 1 == n => format!(" WHERE {col} >= {} OR {col} IS NULL", start(a)),
                _ => format!(" WHERE {col} >= {} AND {col} < {}", start(a), start(b)),
            };
            ((a, b), filter)
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
            push_valid(valid, a);
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
        push_valid(valid, a);
    }
}

/// A 64-bit decimal column in 128 bits (any other column as it is).
fn widen(col: MeasureColumn) -> MeasureColumn {
    match col {
        MeasureColumn::Decimal64 {
            values,
            valid,
            scale,
        } => MeasureColumn::Decimal {
            values: values.into_iter().map(i128::from).collect(),
            valid,
            scale,
        },
        other => other,
    }
}

/// Appends whether each value of `a` is not NULL.
fn push_valid(valid: &mut Vec<bool>, a: &arrow::array::Decimal128Array) {
    if a.null_count() == 0 {
        valid.resize(valid.len() + a.len(), true);
    } else {
        valid.extend((0..a.len()).map(|r| a.is_valid(r)));
    }
}

/// Integer distinct values as themselves ([`NO_VALUE`] for NULL), as [`distinct_codes`] does,
/// appended to `out`.
fn distinct_ints(a: &arrow::array::Int64Array, out: &mut Vec<u32>) -> Result<()> {
    let out_of_range = |i: i64| EngineError::Unsupported {
        what: format!(
            "a distinct count over the integer {i}: distinct integers must lie in 0..=4294967295"
        ),
    };
    if a.null_count() == 0 {
        if let Some(bad) = a.values().iter().find(|v| u32::try_from(**v).is_err()) {
            return Err(out_of_range(*bad));
        }
        out.extend(a.values().iter().map(|v| *v as u32));
        return Ok(());
    }
    for r in 0..a.len() {
        out.push(if a.is_valid(r) {
            u32::try_from(a.value(r)).map_err(|_| out_of_range(a.value(r)))?
        } else {
            NO_VALUE
        });
    }
    Ok(())
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
    use lattice_defs::model::Agg;

    use super::{BaseTable, MeasureSpec, join_runs, push_decimals};
    use crate::store::{Column, MeasureColumn, NO_VALUE};

    /// A table of one key, one other key and the period, with a count and a sum, sorted.
    fn sorted(rows: &[(u32, u32, u32, i64)]) -> BaseTable {
        let mut t = BaseTable {
            codes: vec![
                rows.iter().map(|r| r.0).collect(),
                rows.iter().map(|r| r.1).collect(),
                rows.iter().map(|r| r.2).collect(),
            ],
            measure_ids: vec![0, 1],
            specs: vec![
                MeasureSpec {
                    agg: Agg::Count,
                    semi: false,
                },
                MeasureSpec {
                    agg: Agg::Sum,
                    semi: false,
                },
            ],
            measures: vec![
                MeasureColumn::Count(vec![1; rows.len()].into()),
                MeasureColumn::Decimal64 {
                    values: rows.iter().map(|r| r.3).collect(),
                    valid: vec![true; rows.len()],
                    scale: 2,
                },
            ],
            fact_rows: rows.len() as u64,
            queries: 1,
            sorted_by: None,
            planned_rows: None,
            periods_present: None,
        };
        t.sort_and_merge(0, &[], false).expect("sorted");
        t
    }

    /// Tables whose periods follow each other are joined by copying each key's runs, in the
    /// order sorting them all gives; a new period inside another's range, or undated rows
    /// before the last, are left to sorting.
    #[test]
    fn tables_of_later_periods_join_as_sorting_joins_them() {
        let old = sorted(&[(3, 0, 1, 10), (0, 1, 0, 20), (3, 1, 0, 30), (1, 0, 1, 40)]);
        let new = sorted(&[
            (0, 0, 2, 50),
            (2, 1, 3, 60),
            (3, 0, 2, 70),
            (5, 0, u32::MAX, 80),
        ]);
        let joined = join_runs(&[&new, &old], 0).expect("periods follow each other");
        let mut all = old.clone();
        all.append(&new).expect("same columns");
        all.sort_and_merge(0, &[], false).expect("sorted");
        assert_eq!(joined.codes, all.codes);
        assert_eq!(joined.measures, all.measures);
        assert_eq!(joined.fact_rows, 8);
        assert_eq!(joined.sorted_by, Some(0));

        let inside = sorted(&[(1, 0, 1, 1)]);
        let wide = sorted(&[(1, 0, 0, 1), (2, 0, 2, 1)]);
        assert!(join_runs(&[&wide, &inside], 0).is_none());
        let undated = sorted(&[(1, 0, u32::MAX, 1)]);
        assert!(join_runs(&[&undated, &new], 0).is_none());
    }

    /// Rows read ungrouped are sorted by key and period and merged per grain: sums add,
    /// minimums keep the least, NULLs count for nothing, and a distinct value is part of
    /// the grain.
    #[test]
    fn rows_of_one_grain_merge_after_sorting() {
        let spec = |agg| MeasureSpec { agg, semi: false };
        // Columns: key, other key, period. Rows 0, 2 and 4 share a grain; so do 1 and 5;
        // row 3 differs from row 1 only in its distinct value.
        let mut base = BaseTable {
            codes: vec![
                vec![2, 1, 2, 1, 2, 1, 0].into(),
                vec![0, 3, 0, 3, 0, 3, 0].into(),
                vec![5, 4, 5, 4, 5, 4, u32::MAX].into(),
            ],
            measure_ids: vec![0, 1, 2, 3],
            specs: vec![
                spec(Agg::Count),
                spec(Agg::Sum),
                spec(Agg::Min),
                spec(Agg::Distinct),
            ],
            measures: vec![
                MeasureColumn::Count(vec![1, 1, 1, 1, 1, 1, 1].into()),
                MeasureColumn::Decimal64 {
                    values: vec![10, 1, 20, 2, i64::MAX, 3, 7].into(),
                    valid: vec![true, true, true, true, true, false, true],
                    scale: 2,
                },
                MeasureColumn::Decimal64 {
                    values: vec![10, 1, -20, 2, 0, 3, 7].into(),
                    valid: vec![true, false, true, true, false, false, true],
                    scale: 2,
                },
                MeasureColumn::DistinctValues(vec![9, 8, 9, 7, 9, 8, NO_VALUE].into()),
            ],
            fact_rows: 7,
            queries: 1,
            sorted_by: None,
            planned_rows: None,
            periods_present: None,
        };
        base.sort_and_merge(0, &[3], true).expect("no overflow");
        assert_eq!(base.sorted_by, Some(0));
        assert_eq!(
            base.codes,
            vec![vec![0, 1, 1, 2], vec![0, 3, 3, 0], vec![u32::MAX, 4, 4, 5]]
        );
        let MeasureColumn::Count(count) = &base.measures[0] else {
            panic!("count");
        };
        assert_eq!(count, &[1, 1, 2, 3]);
        // The sum passes 64 bits, so the column widens.
        let MeasureColumn::Decimal { values, valid, .. } = &base.measures[1] else {
            panic!("sum not widened: {:?}", base.measures[1]);
        };
        assert_eq!(values, &[7, 2, 1, 30 + i128::from(i64::MAX)]);
        assert_eq!(valid, &[true, true, true, true]);
        let MeasureColumn::Decimal64 { values, valid, .. } = &base.measures[2] else {
            panic!("min");
        };
        assert_eq!(valid, &[true, true, false, true]);
        assert_eq!((values[0], values[1], values[3]), (7, 2, -20));
        let MeasureColumn::DistinctValues(v) = &base.measures[3] else {
            panic!("distinct");
        };
        assert_eq!(v, &[NO_VALUE, 7, 8, 9]);
    }

    /// A streamed fact's ranges hold about the rows asked for, follow the rows per period,
    /// never split a period of a metric's grain, and cover every period once; the last also
    /// takes rows without a date.
    #[test]
    fn stream_ranges_follow_the_rows_and_keep_metric_periods_whole() {
        use lattice_defs::model::{ColumnRef, TimeGrain};

        use super::stream_ranges;
        use crate::store::time::TimeAxis;
        // Months from 2024-11: 14 periods, the year changing after period 1.
        let axis = TimeAxis {
            grain: TimeGrain::Month,
            first: 2024 * 12 + 10,
            len: 14,
        };
        let time = ColumnRef {
            table: "f".into(),
            column: "day".into(),
            pos: lattice_defs::Pos::UNKNOWN,
            path: String::new(),
        };
        let per_period: Vec<(u32, u64)> = (0..14).map(|p| (p, 100 + u64::from(p))).collect();
        let bounds = |grains: &[TimeGrain], rows| -> Vec<(u32, u32)> {
            let r = stream_ranges(&time, &axis, &per_period, rows, grains);
            let b: Vec<(u32, u32)> = r.iter().map(|(b, _)| *b).collect();
            assert_eq!(b.first().map(|b| b.0), Some(0));
            assert_eq!(b.last().map(|b| b.1), Some(14));
            assert!(b.windows(2).all(|w| w[0].1 == w[1].0), "{b:?}");
            b
        };
        // Monthly metrics: a range closes as soon as it has 250 rows (three months here).
        assert_eq!(
            bounds(&[TimeGrain::Month], 250),
            [(0, 3), (3, 6), (6, 9), (9, 12), (12, 14)]
        );
        // A quarterly metric: ranges end where quarters start (2025-01 is period 2).
        assert_eq!(
            bounds(&[TimeGrain::Month, TimeGrain::Quarter], 250),
            [(0, 5), (5, 8), (8, 11), (11, 14)]
        );
        // A yearly one: one range per year at most.
        assert_eq!(bounds(&[TimeGrain::Year], 150), [(0, 2), (2, 14)]);
        assert_eq!(bounds(&[TimeGrain::Year], 250), [(0, 14)]);
        // One range: no filter; several: the last takes rows without a date.
        let one = stream_ranges(&time, &axis, &per_period, 10_000, &[]);
        assert_eq!(one, [((0, 14), String::new())]);
        let two = stream_ranges(&time, &axis, &per_period, 900, &[]);
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].1, " WHERE f.\"day\" < DATE '2025-08-01'");
        assert_eq!(
            two[1].1,
            " WHERE f.\"day\" >= DATE '2025-08-01' OR f.\"day\" IS NULL"
        );
    }

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
            values: Column::new(),
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
