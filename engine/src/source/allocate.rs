//! Allocations: the fact tables a definition's `allocations:` compute from other sources,
//! registered with DataFusion beside them so that the build and the fallback read them like
//! any source.
//!
//! For each allocation, two queries: the pool, summed per (member key, period), and the driver
//! fact's cells (its rows grouped by the allocated fact's dimension keys and the period), each
//! with the member it lies under and its weight. Each pool is then split over the cells with
//! its member and period by [`split`], in integer units of the pool's scale (cents):
//!
//! - shares are in proportion to the weights: `floor(pool * w / W)`, and the units left over go
//!   one each to the cells with the largest remainders, ties to the smaller keys (the keys in
//!   the order of the allocated fact's dimensions), so a pool's shares sum back to it exactly;
//! - a negative driver value weighs 0; when the weights of a pool's cells sum to 0 (no cell has
//!   a positive driver) every cell weighs 1: an equal split;
//! - a negative pool (a credit) is split as its absolute value and every share negated;
//! - a pool with no cell under its member in its period (or with no member or period) stays
//!   unallocated: [`AllocationReport::unallocated`] lists it, and the build reports it.
//!
//! The allocated table has one row per receiving cell (a cell whose share is 0 included), with
//! the keys, the period's first day and the share.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Decimal128Array, DictionaryArray, RecordBatch, StringArray,
    UInt32Array,
};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use lattice_defs::model::{
    Agg, Allocation, DimId, DimensionKind, Driver, LevelKind, MeasureKind, TimeGrain,
};
use lattice_defs::{Catalog, ColumnType, Model};
use tracing::{info, instrument, warn};

use super::load::ident;
use crate::store::time::date_of_day;
use crate::{EngineError, Result};

/// What one allocation did, for the build report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationReport {
    /// The allocation (and its fact).
    pub name: String,
    /// Decimal scale of the amounts (2: cents).
    pub scale: i8,
    /// Pools read (pool rows summed per member and period).
    pub pools: usize,
    /// Their total, in units of `scale`.
    pub total: i128,
    /// The part split over cells; `total - allocated` is what no cell received.
    pub allocated: i128,
    /// Rows of the allocated table (receiving cells).
    pub rows: usize,
    /// Pools whose cells' driver summed to 0, split equally.
    pub equal_split: usize,
    /// Pools no cell received: member key, period (first day) and amount.
    pub unallocated: Vec<Unallocated>,
}

/// A pool that no cell received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unallocated {
    /// The member's key as text (`None`: the pool row has none).
    pub member: Option<String>,
    /// `YYYY-MM-DD` (`None`: the pool row has no date).
    pub period: Option<String>,
    /// In units of the report's scale.
    pub amount: i128,
}

impl AllocationReport {
    /// The amount no cell received, in units of `scale`.
    pub fn unallocated_total(&self) -> i128 {
        self.total - self.allocated
    }
}

/// Splits `amount` over cells in proportion to `weights`, exactly: the shares sum to
/// `amount`. Largest remainder, ties to the earlier cell; negative weights count as 0; all
/// weights 0 (or none positive) is an equal split; a negative amount is split as its absolute
/// value, negated. `None` when the arithmetic would pass 128 bits, or there are no cells.
pub fn split(amount: i128, weights: &[i128]) -> Option<Vec<i128>> {
    split_by(amount, weights, |i, j| i.cmp(&j))
}

/// [`split`], with ties of remainders to the cell that `earlier` orders first (cells by their
/// index in `weights`).
pub fn split_by(
    amount: i128,
    weights: &[i128],
    earlier: impl Fn(usize, usize) -> std::cmp::Ordering,
) -> Option<Vec<i128>> {
    if weights.is_empty() {
        return None;
    }
    let mut w: Vec<i128> = weights.iter().map(|&x| x.max(0)).collect();
    let mut total = w.iter().try_fold(0i128, |acc, &x| acc.checked_add(x))?;
    if total == 0 {
        w.fill(1);
        total = w.len() as i128;
    }
    let a = amount.checked_abs()?;
    let mut shares = Vec::with_capacity(w.len());
    let mut remainders = Vec::with_capacity(w.len());
    let mut given = 0i128;
    for &x in &w {
        let p = a.checked_mul(x)?;
        shares.push(p / total);
        remainders.push(p % total);
        given += p / total;
    }
    // Fewer units are left than cells: each remainder is under `total`, and they sum to
    // (a - given) * total. They go to the largest remainders; only those need finding.
    let left = (a - given) as usize;
    if left > 0 {
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.select_nth_unstable_by(left - 1, |&i, &j| {
            remainders[j]
                .cmp(&remainders[i])
                .then_with(|| earlier(i, j))
        });
        for &i in &order[..left] {
            shares[i] += 1;
        }
    }
    if amount < 0 {
        shares.iter_mut().for_each(|s| *s = -*s);
    }
    Some(shares)
}

/// Computes every allocation of `model` over the sources registered in `ctx` and registers
/// each result under its fact's name.
#[instrument(skip_all, fields(cube = %model.name))]
pub(crate) async fn allocate_all(
    model: &Model,
    ctx: &SessionContext,
    catalog: &Catalog,
) -> Result<Vec<AllocationReport>> {
    let mut reports = Vec::new();
    for a in &model.allocations {
        let report = allocate(model, ctx, catalog, a).await?;
        let unit = 10f64.powi(i32::from(report.scale));
        if report.unallocated.is_empty() {
            info!(
                allocation = report.name,
                pools = report.pools,
                rows = report.rows,
                "allocated"
            );
        } else {
            warn!(
                allocation = report.name,
                pools = report.unallocated.len(),
                amount = report.unallocated_total() as f64 / unit,
                "pools without receiving cells stay unallocated"
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Registers each allocation's table in `ctx` to be computed the first time a query reads it
/// ([`LazyAllocation`]): a cube that was built (or loaded from a snapshot) reads its
/// allocations from its base rows, and only a question that goes to DataFusion needs them.
pub(crate) async fn register_lazy(
    model: &Model,
    ctx: &SessionContext,
    catalog: &Catalog,
) -> Result<()> {
    for (i, a) in model.allocations.iter().enumerate() {
        let from = &model.facts[a.from];
        // The sources the allocation reads (its driver, its pool, the dimension tables that
        // place the pool's members), in a session of its own: no cycle through `ctx`.
        let own = SessionContext::new();
        for source in &model.sources {
            let provider = ctx.table_provider(source.name.as_str()).await?;
            own.register_table(source.name.as_str(), provider)?;
        }
        let driver = ctx.table_provider(from.name.as_str()).await?.schema();
        let keys = allocation_keys(model, a);
        let mut fields = Vec::new();
        for k in &keys {
            let field = driver.field_with_name(k)?;
            fields.push(Field::new(*k, field.data_type().clone(), true));
        }
        let scale = scale_of(catalog, &a.pool.table, &a.pool.amount.column);
        fields.push(Field::new(&a.pool.time.column, DataType::Date32, true));
        fields.push(Field::new(
            &a.pool.amount.column,
            DataType::Decimal128(38, scale),
            true,
        ));
        let lazy = LazyAllocation {
            schema: Arc::new(Schema::new(fields)),
            ctx: own,
            model: Arc::new(model.clone()),
            catalog: Arc::new(catalog.clone()),
            index: i,
            table: tokio::sync::OnceCell::new(),
        };
        ctx.register_table(model.facts[a.fact].name.as_str(), Arc::new(lazy))?;
    }
    Ok(())
}

/// The key columns of the allocated fact: those of its dimension tables, in order.
fn allocation_keys<'m>(model: &'m Model, a: &Allocation) -> Vec<&'m str> {
    model.facts[a.fact]
        .direct
        .iter()
        .filter_map(|&d| match &model.dimensions[d].kind {
            DimensionKind::Table { key, .. } => Some(key.column.as_str()),
            DimensionKind::Time => None,
        })
        .collect()
}

/// An allocation's table, computed by [`allocate`] the first time it is scanned.
struct LazyAllocation {
    schema: arrow::datatypes::SchemaRef,
    /// The sources the allocation reads.
    ctx: SessionContext,
    model: Arc<Model>,
    catalog: Arc<Catalog>,
    /// Which of the model's allocations.
    index: usize,
    table: tokio::sync::OnceCell<Arc<dyn datafusion::catalog::TableProvider>>,
}

impl std::fmt::Debug for LazyAllocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyAllocation")
            .field("index", &self.index)
            .field("computed", &self.table.initialized())
            .finish()
    }
}

#[async_trait::async_trait]
impl datafusion::catalog::TableProvider for LazyAllocation {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::prelude::Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let table = self
            .table
            .get_or_try_init(|| async {
                let a = &self.model.allocations[self.index];
                allocate(&self.model, &self.ctx, &self.catalog, a)
                    .await
                    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                self.ctx
                    .table_provider(self.model.facts[a.fact].name.as_str())
                    .await
            })
            .await?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The finest grain of the time dimension: the period each pool is spread within.
fn period_grain(model: &Model) -> Result<TimeGrain> {
    let t = model
        .time_dimension()
        .ok_or_else(|| EngineError::Internal("allocation without a time dimension".into()))?;
    let dim = &model.dimensions[t];
    match dim.hierarchy.last().map(|&l| &dim.levels[l].kind) {
        Some(LevelKind::Time(g)) => Ok(*g),
        _ => Err(EngineError::Internal(
            "time dimension without a time level".into(),
        )),
    }
}

/// The first day of the period of `grain` holding the date `x`, as a DATE.
fn period_sql(x: &str, grain: TimeGrain) -> String {
    match grain {
        TimeGrain::Day => format!("CAST({x} AS DATE)"),
        g => format!("CAST(date_trunc('{}', {x}) AS DATE)", g.name()),
    }
}

/// The SQL of the member key of `member` for a fact row aliased `f` whose dimensions are
/// `direct`, and the joins it needs: `f.key` when the fact carries it, else through the
/// dimension tables of its `via` chain.
fn member_sql(model: &Model, direct: &[DimId], member: DimId) -> Result<(String, String)> {
    let key_of = |d: DimId| match &model.dimensions[d].kind {
        DimensionKind::Table {
            key, via, table, ..
        } => Ok((key.column.as_str(), *via, table)),
        DimensionKind::Time => Err(EngineError::Internal(
            "time dimension in a via chain".into(),
        )),
    };
    // member, via(member), via(via(member)), ... up to one the fact carries.
    let mut chain = vec![member];
    while !direct.contains(chain.last().expect("not empty")) {
        let (_, via, _) = key_of(*chain.last().expect("not empty"))?;
        match via {
            Some(v) if chain.len() <= model.dimensions.len() => chain.push(v),
            _ => {
                return Err(EngineError::Internal(
                    "allocation member not reached from its fact".into(),
                ));
            }
        }
    }
    let (carried, _, _) = key_of(*chain.last().expect("not empty"))?;
    let mut expr = format!("f.{}", ident(carried));
    let mut joins = String::new();
    for j in (0..chain.len() - 1).rev() {
        let (via_key, _, via_table) = key_of(chain[j + 1])?;
        let (key, _, _) = key_of(chain[j])?;
        let alias = format!("v{j}");
        joins.push_str(&format!(
            " LEFT JOIN {} AS {alias} ON {alias}.{} = {expr}",
            ident(via_table),
            ident(via_key)
        ));
        expr = format!("{alias}.{}", ident(key));
    }
    Ok((expr, joins))
}

fn scale_of(catalog: &Catalog, table: &str, column: &str) -> i8 {
    catalog
        .table(table)
        .and_then(|t| t.columns.iter().find(|(n, _)| n == column))
        .map_or(0, |(_, t)| match t {
            ColumnType::Decimal { scale } => *scale,
            ColumnType::Float => super::load::CSV_DECIMAL_SCALE,
            _ => 0,
        })
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<RecordBatch> {
    let df = ctx.sql(sql).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(concat_batches(&schema, &batches)?)
}

/// A column as i128 units at `scale` (integers and decimals).
fn units(col: &ArrayRef, scale: i8) -> Result<Decimal128Array> {
    let c = cast(col, &DataType::Decimal128(38, scale))?;
    Ok(c.as_any()
        .downcast_ref::<Decimal128Array>()
        .ok_or_else(|| EngineError::Internal("cast to decimal".into()))?
        .clone())
}

fn text_array(col: &ArrayRef) -> Result<arrow::array::StringArray> {
    let c = cast(col, &DataType::Utf8)?;
    c.as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .cloned()
        .ok_or_else(|| EngineError::Internal("cast to text".into()))
}

fn texts(col: &ArrayRef) -> Result<Vec<Option<String>>> {
    let c = cast(col, &DataType::Utf8)?;
    let s = c
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .ok_or_else(|| EngineError::Internal("cast to text".into()))?;
    Ok((0..s.len())
        .map(|i| s.is_valid(i).then(|| s.value(i).to_string()))
        .collect())
}

fn dates(col: &ArrayRef) -> Result<Date32Array> {
    let c = cast(col, &DataType::Date32)?;
    Ok(c.as_any()
        .downcast_ref::<Date32Array>()
        .ok_or_else(|| EngineError::Internal("cast to date".into()))?
        .clone())
}

fn day_text(days: i32) -> String {
    date_of_day(i64::from(days)).map_or_else(
        || format!("day {days} after 1970-01-01"),
        |date| date.to_string(),
    )
}

/// The driver fact's cells as read: keys, period, member and weight, one row per cell.
struct Cells {
    /// The query's result: the key columns first (`k0..`), then period, member and weight.
    batch: RecordBatch,
    period: Date32Array,
    /// Members as a dictionary: each distinct member is looked up once, not once per cell.
    member: DictionaryArray<Int32Type>,
    /// The dictionary's values as text.
    member_names: StringArray,
    weight: Decimal128Array,
}

/// The pools, one per member and period, in member, then period order.
struct Pools {
    member: Vec<Option<String>>,
    period: Date32Array,
    amount: Decimal128Array,
}

impl Pools {
    fn len(&self) -> usize {
        self.member.len()
    }
}

/// The cells of each pool together: pool `p`'s cells (rows of [`Cells`]) are
/// `cells[start[p]..start[p + 1]]`.
struct Grouped {
    start: Vec<u32>,
    cells: Vec<u32>,
}

/// The SQL aggregate of the driver's weight per cell, and the decimal scale it comes at.
fn driver_weight(
    model: &Model,
    catalog: &Catalog,
    from: &str,
    driver: &Driver,
) -> Result<(String, i8)> {
    Ok(match *driver {
        // Every cell weighs the same (any positive constant).
        Driver::Equal => ("MIN(1)".to_string(), 0),
        Driver::Measure(m) => match &model.measures[m].kind {
            MeasureKind::Aggregate {
                agg: Agg::Count,
                column: None,
                ..
            } => ("COUNT(*)".to_string(), 0),
            MeasureKind::Aggregate {
                agg: Agg::Count,
                column: Some(c),
                ..
            } => (format!("COUNT(f.{})", ident(&c.column)), 0),
            MeasureKind::Aggregate {
                agg: Agg::Sum,
                column: Some(c),
                ..
            } => {
                let s = scale_of(catalog, from, &c.column);
                (
                    format!("SUM(CAST(f.{} AS DECIMAL(38, {s})))", ident(&c.column)),
                    s,
                )
            }
            _ => {
                return Err(EngineError::Internal(
                    "allocation driver is not a sum or count".into(),
                ));
            }
        },
    })
}

/// The query of the driver's cells: the allocated fact's keys `keys`, the period of its date
/// column `time`, the member (through `joins`) and the weight, grouped by all but the weight.
fn cells_sql(
    from: &str,
    keys: &[&str],
    time: &str,
    grain: TimeGrain,
    (member, joins): (&str, &str),
    weight: &str,
) -> String {
    let key_exprs: Vec<String> = keys.iter().map(|k| format!("f.{}", ident(k))).collect();
    let period = period_sql(&format!("f.{}", ident(time)), grain);
    let member_text = format!("CAST({member} AS VARCHAR)");
    let mut group = key_exprs.clone();
    group.push(period.clone());
    group.push(member_text.clone());
    let select: Vec<String> = key_exprs
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS k{i}"))
        .chain([
            format!("{period} AS p"),
            format!("{member_text} AS m"),
            format!("{weight} AS w"),
        ])
        .collect();
    // In no order: a pool's cells are found by their member and period below, and only ties
    // compare keys. Sorting the cells by member, period and keys in the query took two thirds
    // of the allocation at scale 10 (5 of 8 s for 18.7M cells).
    format!(
        "SELECT {} FROM {} AS f{joins} WHERE f.{} IS NOT NULL GROUP BY {}",
        select.join(", "),
        ident(from),
        ident(time),
        group.join(", "),
    )
}

/// Runs the cells' query `sql` (whose first `n_keys` columns are keys) and casts its period,
/// member and weight columns (the weight at `weight_scale`).
async fn read_cells(
    ctx: &SessionContext,
    sql: &str,
    n_keys: usize,
    weight_scale: i8,
    started: std::time::Instant,
) -> Result<Cells> {
    tracing::debug!(sql, "allocation cells");
    let batch = query(ctx, sql).await?;
    tracing::debug!(
        rows = batch.num_rows(),
        secs = started.elapsed().as_secs_f64(),
        "allocation cells read"
    );
    let period = dates(batch.column(n_keys))?;
    let member = cast(
        batch.column(n_keys + 1),
        &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
    )?;
    let member = member
        .as_any()
        .downcast_ref::<DictionaryArray<Int32Type>>()
        .ok_or_else(|| EngineError::Internal("members as a dictionary".into()))?
        .clone();
    let member_names = text_array(member.values())?;
    let weight = units(batch.column(n_keys + 2), weight_scale)?;
    Ok(Cells {
        batch,
        period,
        member,
        member_names,
        weight,
    })
}

/// Reads the pools of `a`: its amounts summed per member and period of `grain`, at `scale`.
async fn read_pools(
    ctx: &SessionContext,
    a: &Allocation,
    grain: TimeGrain,
    scale: i8,
) -> Result<Pools> {
    let pool_sql = format!(
        "SELECT {m} AS m, {period} AS p, \
         CAST(SUM(CAST(p.{amount} AS DECIMAL(38, {scale}))) AS DECIMAL(38, {scale})) AS a \
         FROM {table} AS p WHERE p.{amount} IS NOT NULL GROUP BY {m}, {period} ORDER BY m, p",
        m = format!("CAST(p.{} AS VARCHAR)", ident(&a.pool.key.column)),
        period = period_sql(&format!("p.{}", ident(&a.pool.time.column)), grain),
        amount = ident(&a.pool.amount.column),
        table = ident(&a.pool.table),
    );
    let pools = query(ctx, &pool_sql).await?;
    Ok(Pools {
        member: texts(pools.column(0))?,
        period: dates(pools.column(1))?,
        amount: units(pools.column(2), scale)?,
    })
}

/// Finds each cell's pool (the one with its member and period) and lists the cells of each
/// pool together, in the pools' order (member, then period); cells without a pool are left
/// out.
fn group_by_pool(cells: &Cells, pools: &Pools) -> Grouped {
    let mut by_pool: HashMap<(&str, i32), usize> = HashMap::new();
    for (i, member) in pools.member.iter().enumerate() {
        if let (Some(m), true) = (member, pools.period.is_valid(i)) {
            by_pool.insert((m.as_str(), pools.period.value(i)), i);
        }
    }
    // Each cell's pool (`NONE`: no pool has its member and period).
    const NONE: u32 = u32::MAX;
    let mut pool_at: HashMap<(i32, i32), u32> = HashMap::new();
    let pool_of: Vec<u32> = (0..cells.batch.num_rows())
        .map(|i| {
            if !cells.member.is_valid(i) || !cells.period.is_valid(i) {
                return NONE;
            }
            let (m, day) = (cells.member.keys().value(i), cells.period.value(i));
            *pool_at.entry((m, day)).or_insert_with(|| {
                let name = cells.member_names.value(m as usize);
                by_pool.get(&(name, day)).map_or(NONE, |p| *p as u32)
            })
        })
        .collect();
    drop(pool_at);
    let mut start = vec![0u32; pools.len() + 1];
    for &p in pool_of.iter().filter(|p| **p != NONE) {
        start[p as usize + 1] += 1;
    }
    for i in 1..start.len() {
        start[i] += start[i - 1];
    }
    let mut grouped = vec![0u32; start[pools.len()] as usize];
    let mut next = start.clone();
    for (i, &p) in pool_of.iter().enumerate().filter(|(_, p)| **p != NONE) {
        grouped[next[p as usize] as usize] = i as u32;
        next[p as usize] += 1;
    }
    Grouped {
        start,
        cells: grouped,
    }
}

/// Splits each pool over its cells (ties to the smaller keys among the first `n_keys`
/// columns, compared as SQL orders them): the shares in the order of `grouped.cells`. Counts
/// the allocated amount and the equal splits into `report`, and lists the pools no cell
/// received there.
fn split_pools(
    fact: &str,
    cells: &Cells,
    n_keys: usize,
    pools: &Pools,
    grouped: &Grouped,
    report: &mut AllocationReport,
) -> Result<Vec<i128>> {
    let options = arrow::compute::SortOptions {
        descending: false,
        nulls_first: false,
    };
    let comparators = (0..n_keys)
        .map(|k| {
            let c = cells.batch.column(k);
            arrow::array::make_comparator(c.as_ref(), c.as_ref(), options)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let by_keys = |i: u32, j: u32| {
        comparators
            .iter()
            .map(|cmp| cmp(i as usize, j as usize))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut received = vec![false; pools.len()];
    let mut amounts: Vec<i128> = Vec::with_capacity(grouped.cells.len());
    for (p, got) in received.iter_mut().enumerate() {
        let cells_of = &grouped.cells[grouped.start[p] as usize..grouped.start[p + 1] as usize];
        if cells_of.is_empty() {
            continue;
        }
        let weights: Vec<i128> = cells_of
            .iter()
            .map(|&i| {
                if cells.weight.is_valid(i as usize) {
                    cells.weight.value(i as usize)
                } else {
                    0
                }
            })
            .collect();
        if weights.iter().all(|w| *w <= 0) {
            report.equal_split += 1;
        }
        let amount = pools.amount.value(p);
        let shares = split_by(amount, &weights, |a, b| by_keys(cells_of[a], cells_of[b]))
            .ok_or_else(|| EngineError::Unsupported {
                what: format!(
                    "allocation '{}': the pool of {} at {} times its driver passes 128-bit arithmetic",
                    fact,
                    pools.member[p].as_deref().unwrap_or(""),
                    day_text(pools.period.value(p))
                ),
            })?;
        *got = true;
        report.allocated += amount;
        amounts.extend(shares);
    }
    for (i, got) in received.iter().enumerate() {
        if !got {
            report.unallocated.push(Unallocated {
                member: pools.member[i].clone(),
                period: pools
                    .period
                    .is_valid(i)
                    .then(|| day_text(pools.period.value(i))),
                amount: pools.amount.value(i),
            });
        }
    }
    Ok(amounts)
}

/// Registers the allocated table under `a`'s fact name `name`: the cells `rows` with their
/// keys (named `keys`), period and share (`amounts`, at `scale`).
fn register_allocated(
    ctx: &SessionContext,
    name: &str,
    a: &Allocation,
    keys: &[&str],
    cells: &Cells,
    (rows, amounts): (Vec<u32>, Vec<i128>),
    scale: i8,
) -> Result<()> {
    let idx = UInt32Array::from(rows);
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let col = take(cells.batch.column(i).as_ref(), &idx, None)?;
        fields.push(Field::new(*k, col.data_type().clone(), true));
        columns.push(col);
    }
    fields.push(Field::new(&a.pool.time.column, DataType::Date32, true));
    columns.push(take(&cells.period, &idx, None)?);
    fields.push(Field::new(
        &a.pool.amount.column,
        DataType::Decimal128(38, scale),
        true,
    ));
    columns.push(Arc::new(
        Decimal128Array::from(amounts).with_precision_and_scale(38, scale)?,
    ));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table(name, Arc::new(table))?;
    Ok(())
}

/// Computes the allocation `a`: reads the driver's cells and the pools, splits each pool over
/// its cells and registers the result as `a`'s fact.
async fn allocate(
    model: &Model,
    ctx: &SessionContext,
    catalog: &Catalog,
    a: &Allocation,
) -> Result<AllocationReport> {
    let fact = &model.facts[a.fact];
    let from = &model.facts[a.from];
    let grain = period_grain(model)?;
    let scale = scale_of(catalog, &a.pool.table, &a.pool.amount.column);
    let time = from
        .time
        .as_ref()
        .ok_or_else(|| EngineError::Internal("allocation driver fact without time".into()))?;

    // The driver's cells: keys, period, member, weight.
    let keys = allocation_keys(model, a);
    let (member, joins) = member_sql(model, &fact.direct, a.pool.member)?;
    let (weight, weight_scale) = driver_weight(model, catalog, &from.name, &a.driver)?;
    let sql = cells_sql(
        &from.name,
        &keys,
        &time.column,
        grain,
        (&member, &joins),
        &weight,
    );
    let started = std::time::Instant::now();
    let cells = read_cells(ctx, &sql, keys.len(), weight_scale, started).await?;
    let pools = read_pools(ctx, a, grain, scale).await?;

    let mut report = AllocationReport {
        name: fact.name.clone(),
        scale,
        pools: pools.len(),
        total: (0..pools.len()).map(|i| pools.amount.value(i)).sum(),
        allocated: 0,
        rows: 0,
        equal_split: 0,
        unallocated: Vec::new(),
    };
    let grouped = group_by_pool(&cells, &pools);
    let amounts = split_pools(
        &fact.name,
        &cells,
        keys.len(),
        &pools,
        &grouped,
        &mut report,
    )?;
    report.rows = grouped.cells.len();
    tracing::debug!(secs = started.elapsed().as_secs_f64(), "allocation split");

    register_allocated(
        ctx,
        &fact.name,
        a,
        &keys,
        &cells,
        (grouped.cells, amounts),
        scale,
    )?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::{split, split_by};

    /// Ties of remainders go to the cells the given order puts first, whatever their place.
    #[test]
    fn ties_follow_the_order_given() {
        let reversed = |i: usize, j: usize| j.cmp(&i);
        assert_eq!(split_by(100, &[1, 1, 1], reversed), Some(vec![33, 33, 34]));
        assert_eq!(split_by(5, &[1, 1, 1, 1], reversed), Some(vec![1, 1, 1, 2]));
        // Larger remainders still come first: 10 over 1:2:3 leaves 4, 2, 0 (of 6).
        assert_eq!(split_by(10, &[1, 2, 3], reversed), Some(vec![2, 3, 5]));
        // Cells 1 and 3 tie for the last unit (remainder 1 of 2 each; cell 0 has none).
        let shares = split_by(3, &[2, 1, 2, 1], |i, j| {
            [3, 1, 2, 0][i].cmp(&[3, 1, 2, 0][j])
        });
        assert_eq!(shares, Some(vec![1, 0, 1, 1]));
    }

    #[test]
    fn shares_sum_back_with_largest_remainders() {
        // 100 over 1:1:1 -> 33.33.. each; the one unit left goes to the first (ties by order).
        assert_eq!(split(100, &[1, 1, 1]), Some(vec![34, 33, 33]));
        // 10 over 1:2:3 -> 1.67, 3.33, 5: remainders 4, 2, 0 (of 6): +1 to the first.
        assert_eq!(split(10, &[1, 2, 3]), Some(vec![2, 3, 5]));
        // Negative pools mirror positive ones.
        assert_eq!(split(-10, &[1, 2, 3]), Some(vec![-2, -3, -5]));
        // No positive weight: an equal split; negative weights receive nothing otherwise.
        assert_eq!(split(5, &[0, 0]), Some(vec![3, 2]));
        assert_eq!(split(5, &[-4, 1]), Some(vec![0, 5]));
        assert_eq!(split(0, &[3, 1]), Some(vec![0, 0]));
        assert_eq!(split(7, &[]), None);
        assert_eq!(split(i128::MAX, &[3, 1]), None);
    }

    #[test]
    fn shares_always_sum_to_the_pool() {
        let mut seed = 42u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i128
        };
        for _ in 0..500 {
            let n = (next() % 20 + 1) as usize;
            let weights: Vec<i128> = (0..n).map(|_| next() % 1000 - 100).collect();
            let amount = next() % 1_000_000 - 300_000;
            let shares = split(amount, &weights).expect("small numbers");
            assert_eq!(shares.iter().sum::<i128>(), amount, "{weights:?}");
            let positive: i128 = weights.iter().map(|w| (*w).max(0)).sum();
            for (s, w) in shares.iter().zip(&weights) {
                if positive > 0 {
                    // Each share is within one unit of its exact proportion.
                    let exact = amount * (*w).max(0);
                    assert!(
                        (s * positive - exact).abs() < positive,
                        "{s} {w} {weights:?}"
                    );
                }
            }
        }
    }
}
