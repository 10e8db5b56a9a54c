//! The slow twin of the cube build: the cells of any cuboid, computed by one plain DataFusion
//! SQL query over the raw source tables, and the same cells read out of a built [`Cube`], both
//! rendered as sorted rows of text so that they compare exactly.
//!
//! The SQL is written here from the semantics of the definition language, independently of
//! the build (it does not call the build's SQL helpers):
//!
//! - a fact row's member of a level comes from LEFT JOINs fact -> dimension table (-> the
//!   dimension reached `via` it) -> lookups; a missing key or a NULL value is `unknown`;
//! - column buckets are `CASE` expressions over exact decimals (left-closed, right-open);
//! - time members are built from `date_part` (`2025`, `2025-Q1`, `2025-03`, `2025-03-14`);
//! - metric buckets join a per-(entity key, period) aggregate of the metric's own fact table
//!   (no rows: 0 for sum, count and distinct); quantile buckets rank it with `CUME_DIST() OVER
//!   (PARTITION BY period ORDER BY value)` over the known entities with a value (no rows or
//!   no value: `unknown`);
//! - semi-additive measures (`over_time: last`) count only rows of the closing period of the
//!   cell's time member (the latest period of that member anywhere in the fact table; without a
//!   time level, the latest period of the table);
//! - a cell exists iff at least one fact row maps to it.
//!
//! The tests of this file check the reference itself against numbers worked out by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use arrow::array::{Array, ArrayRef, Decimal128Array};
use arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use lattice_defs::Model;
use lattice_defs::model::{
    Agg, Bucket, BucketSource, ColumnRef, Cuts, Decimal, DimId, DimensionKind, FactId, LevelKind,
    LevelRef, MeasureId, MeasureKind, OverTime, TimeGrain, UNKNOWN_MEMBER,
};
use lattice_engine::source::load::{Sources, load};
use lattice_engine::store::{Cube, Cuboid};

/// Quotes an identifier.
fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal.
fn lit(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The aggregate measures of `fact`, in model order: the value columns of its cuboids.
pub fn fact_measures(model: &Model, fact: FactId) -> Vec<MeasureId> {
    model
        .measures
        .iter()
        .enumerate()
        .filter(|(_, m)| matches!(&m.kind, MeasureKind::Aggregate { fact: f, .. } if *f == fact))
        .map(|(i, _)| i)
        .collect()
}

/// The finest grain of the cube's time dimension: the period semi-additive measures close on.
fn finest_grain(model: &Model) -> Option<TimeGrain> {
    let t = model.time_dimension()?;
    model.dimensions[t]
        .levels
        .iter()
        .filter_map(|l| match l.kind {
            LevelKind::Time(g) => Some(g),
            _ => None,
        })
        .max()
}

/// `date_part(part, t)` as a BIGINT.
fn part(t: &str, part: &str) -> String {
    format!("CAST(date_part('{part}', {t}) AS BIGINT)")
}

/// Two digits: `3` -> `03`.
fn two_digits(x: &str) -> String {
    format!("CASE WHEN {x} < 10 THEN '0' || CAST({x} AS VARCHAR) ELSE CAST({x} AS VARCHAR) END")
}

/// The member name of a time level: `2025`, `2025-Q1`, `2025-03`, `2025-03-14`.
fn time_member(t: &str, grain: TimeGrain) -> String {
    let y = format!("CAST({} AS VARCHAR)", part(t, "year"));
    let name = match grain {
        TimeGrain::Year => y,
        TimeGrain::Quarter => format!("{y} || '-Q' || CAST({} AS VARCHAR)", part(t, "quarter")),
        TimeGrain::Month => format!("{y} || '-' || {}", two_digits(&part(t, "month"))),
        TimeGrain::Day => format!(
            "{y} || '-' || {} || '-' || {}",
            two_digits(&part(t, "month")),
            two_digits(&part(t, "day"))
        ),
    };
    format!(
        "CASE WHEN {t} IS NULL THEN {} ELSE {name} END",
        lit(UNKNOWN_MEMBER)
    )
}

/// A period of `grain` as a sortable integer (yyyymmdd of its first day).
fn period(t: &str, grain: Option<TimeGrain>) -> String {
    let y = format!("{} * 10000", part(t, "year"));
    let m = part(t, "month");
    match grain {
        None => "0".into(),
        Some(TimeGrain::Year) => y,
        Some(TimeGrain::Quarter) => {
            format!("{y} + ({} * 3 - 2) * 100", part(t, "quarter"))
        }
        Some(TimeGrain::Month) => format!("{y} + {m} * 100"),
        Some(TimeGrain::Day) => format!("{y} + {m} * 100 + {}", part(t, "day")),
    }
}

/// `CASE WHEN cd IS NULL THEN 'unknown' WHEN cd > qn THEN ln ... WHEN cd > q1 THEN l1 ELSE l0
/// END`: the number of quantiles below the `CUME_DIST`.
fn quantile_bucket(cume_dist: &str, quantiles: &[Decimal], labels: &[String]) -> String {
    let mut sql = format!("CASE WHEN {cume_dist} IS NULL THEN {}", lit(UNKNOWN_MEMBER));
    for (q, label) in quantiles.iter().zip(&labels[1..]).rev() {
        write!(sql, " WHEN {cume_dist} > {q} THEN {}", lit(label)).unwrap();
    }
    write!(sql, " ELSE {} END", lit(&labels[0])).unwrap();
    sql
}

/// `CASE WHEN v IS NULL THEN 'unknown' WHEN v < e1 THEN l0 ... ELSE ln END`, exact decimals.
fn bucket(value: &str, b: &Bucket) -> String {
    let Cuts::Edges(edges) = &b.cuts else {
        panic!("fixed-edge bucket expected");
    };
    let v = format!("CAST({value} AS DECIMAL(38, 6))");
    let mut sql = format!("CASE WHEN {v} IS NULL THEN {}", lit(UNKNOWN_MEMBER));
    for (edge, label) in edges.iter().zip(&b.labels) {
        write!(
            sql,
            " WHEN {v} < CAST({} AS DECIMAL(38, 6)) THEN {}",
            lit(&edge.to_string()),
            lit(label)
        )
        .unwrap();
    }
    write!(sql, " ELSE {} END", lit(b.labels.last().expect("labels"))).unwrap();
    sql
}

/// The FROM clause of one fact table and the dimension tables its levels need, joined on
/// demand. Aliases start with `prefix`, so that several such clauses can share a query.
struct Joins<'m> {
    model: &'m Model,
    fact: FactId,
    prefix: String,
    from: String,
    joined: BTreeSet<DimId>,
}

impl<'m> Joins<'m> {
    fn new(model: &'m Model, fact: FactId, prefix: &str) -> Self {
        Joins {
            model,
            fact,
            prefix: prefix.to_string(),
            from: format!("{} AS {}", q(&model.facts[fact].name), q(prefix)),
            joined: BTreeSet::new(),
        }
    }

    /// A column of the fact table.
    fn fact_column(&self, column: &str) -> String {
        format!("{}.{}", q(&self.prefix), q(column))
    }

    fn dim_alias(&self, dim: DimId) -> String {
        format!("{}_d{dim}", self.prefix)
    }

    fn lookup_alias(&self, dim: DimId, i: usize) -> String {
        format!("{}_d{dim}_l{i}", self.prefix)
    }

    /// Joins the table of `dim` (and what it is reached through), returning its alias.
    fn dim(&mut self, dim: DimId) -> String {
        let alias = self.dim_alias(dim);
        if self.joined.contains(&dim) {
            return alias;
        }
        let DimensionKind::Table {
            table,
            key,
            via,
            lookups,
        } = &self.model.dimensions[dim].kind
        else {
            panic!("the time dimension has no table");
        };
        let k = q(&key.column);
        // The key's column: in the fact table when the fact carries it, else in the table of
        // the dimension it is reached through.
        let carrier = if self.model.facts[self.fact].direct.contains(&dim) {
            q(&self.prefix)
        } else {
            let v = via.unwrap_or_else(|| {
                panic!(
                    "fact '{}' does not reach dimension '{}'",
                    self.model.facts[self.fact].name, self.model.dimensions[dim].name
                )
            });
            q(&self.dim(v))
        };
        write!(
            self.from,
            " LEFT JOIN {} AS {} ON {carrier}.{k} = {}.{k}",
            q(table),
            q(&alias),
            q(&alias)
        )
        .unwrap();
        for (i, l) in lookups.iter().enumerate() {
            let lk = q(&l.key.column);
            let la = q(&self.lookup_alias(dim, i));
            write!(
                self.from,
                " LEFT JOIN {} AS {la} ON {}.{lk} = {la}.{lk}",
                q(&l.table),
                q(&alias)
            )
            .unwrap();
        }
        self.joined.insert(dim);
        alias
    }

    /// A column of `dim`'s table or of one of its lookups.
    fn dim_column(&mut self, dim: DimId, c: &ColumnRef) -> String {
        let alias = self.dim(dim);
        let DimensionKind::Table { table, lookups, .. } = &self.model.dimensions[dim].kind else {
            unreachable!()
        };
        if c.table == *table {
            return format!("{}.{}", q(&alias), q(&c.column));
        }
        let i = lookups
            .iter()
            .position(|l| l.table == c.table)
            .unwrap_or_else(|| panic!("column {}.{} is in no lookup", c.table, c.column));
        format!("{}.{}", q(&self.lookup_alias(dim, i)), q(&c.column))
    }

    /// The key of `dim` for each row (NULL where the row does not reach a member of `dim`).
    fn dim_key(&mut self, dim: DimId) -> String {
        let DimensionKind::Table { key, .. } = &self.model.dimensions[dim].kind else {
            unreachable!()
        };
        let alias = self.dim(dim);
        format!("{}.{}", q(&alias), q(&key.column))
    }

    /// The fact's date column.
    fn time(&self) -> Option<String> {
        self.model.facts[self.fact]
            .time
            .as_ref()
            .map(|t| self.fact_column(&t.column))
    }
}

/// The parts of the reference query: common table expressions (metric aggregates) and the
/// FROM clause of the fact.
struct Query<'m> {
    model: &'m Model,
    joins: Joins<'m>,
    ctes: Vec<String>,
}

impl Query<'_> {
    /// The member of `level` for each fact row.
    fn member(&mut self, level: LevelRef) -> String {
        let dim = &self.model.dimensions[level.dim];
        match &dim.levels[level.level].kind {
            LevelKind::Time(g) => time_member(
                &self
                    .joins
                    .time()
                    .expect("a time level of a fact without time"),
                *g,
            ),
            LevelKind::Column(c) => format!(
                "COALESCE(CAST({} AS VARCHAR), {})",
                self.joins.dim_column(level.dim, c),
                lit(UNKNOWN_MEMBER)
            ),
            LevelKind::Bucket(b) => match &b.source {
                BucketSource::Column(c) => bucket(&self.joins.dim_column(level.dim, c), b),
                BucketSource::Metric { measure, period: p } => match &b.cuts {
                    Cuts::Edges(_) => {
                        let value = self.metric(level.dim, *measure, *p, false);
                        bucket(&value, b)
                    }
                    Cuts::Quantiles(qs) => {
                        let cume_dist = self.metric(level.dim, *measure, *p, true);
                        quantile_bucket(&cume_dist, qs, &b.labels)
                    }
                },
            },
        }
    }

    /// The value of `measure` aggregated over its own fact's rows with this row's entity key
    /// (of `entity`) and period; joins the aggregate and returns the value expression. With
    /// `rank`, the value's `CUME_DIST` among the period's known entities with a value instead
    /// (NULL for the others).
    fn metric(
        &mut self,
        entity: DimId,
        measure: MeasureId,
        grain: Option<TimeGrain>,
        rank: bool,
    ) -> String {
        let MeasureKind::Aggregate {
            fact, agg, column, ..
        } = &self.model.measures[measure].kind
        else {
            panic!("a metric bucket over a derived measure");
        };
        let name = format!("metric{}", self.ctes.len());
        let mut inner = Joins::new(self.model, *fact, &format!("{name}_src"));
        let key = inner.dim_key(entity);
        let p = period(&inner.time().unwrap_or_else(|| "NULL".into()), grain);
        let v = column
            .as_ref()
            .map_or("1".into(), |c| inner.fact_column(&c.column));
        let aggregate = match agg {
            Agg::Sum => "SUM(v)",
            Agg::Count => "COUNT(v)",
            Agg::Min => "MIN(v)",
            Agg::Max => "MAX(v)",
            Agg::Distinct => "COUNT(DISTINCT v)",
        };
        let grouped = format!(
            "SELECT k, p, {aggregate} AS v FROM (SELECT {key} AS k, {p} AS p, {v} AS v FROM {}) GROUP BY k, p",
            inner.from
        );
        let body = if rank {
            format!(
                "SELECT k, p, v, CASE WHEN k IS NULL OR v IS NULL THEN NULL ELSE \
                 CUME_DIST() OVER (PARTITION BY p, k IS NULL OR v IS NULL ORDER BY v) END AS cd \
                 FROM ({grouped})"
            )
        } else {
            grouped
        };
        self.ctes.push(format!("{} AS ({body})", q(&name)));
        let row_key = self.joins.dim_key(entity);
        let row_period = period(&self.joins.time().unwrap_or_else(|| "NULL".into()), grain);
        let n = q(&name);
        write!(
            self.joins.from,
            " LEFT JOIN {n} ON {n}.k = {row_key} AND {n}.p = {row_period}"
        )
        .unwrap();
        // No rows for this entity and period: 0 for sums and counts; nothing for min/max, and
        // no rank.
        let empty = match agg {
            _ if rank => "NULL",
            Agg::Sum | Agg::Count | Agg::Distinct => "0",
            Agg::Min | Agg::Max => "NULL",
        };
        let value = if rank { "cd" } else { "v" };
        // A row without a date has no period, so no band for it: `unknown`.
        let no_period = if grain.is_some() {
            format!("WHEN {row_period} IS NULL THEN NULL ")
        } else {
            String::new()
        };
        format!(
            "CASE WHEN {row_key} IS NULL THEN NULL {no_period}WHEN {n}.k IS NULL THEN {empty} ELSE {n}.{value} END"
        )
    }
}

/// The reference query for the cuboid of `fact` grouped by `levels`: one row per non-empty
/// cell with the members of `levels`, each aggregate measure of the fact (model order), and
/// the cell's row count last (`__rows`, dropped after reading).
pub fn reference_sql(model: &Model, fact: FactId, levels: &[LevelRef]) -> String {
    let mut query = Query {
        model,
        joins: Joins::new(model, fact, "f"),
        ctes: Vec::new(),
    };
    let members: Vec<String> = levels.iter().map(|l| query.member(*l)).collect();
    let time = query.joins.time();
    let grain = finest_grain(model).filter(|_| time.is_some());
    let row_period = time.as_ref().map_or("0".into(), |t| period(t, grain));
    // The cell's time member: that of its finest time level (the closing period is the latest
    // period of that member); without one, the whole table.
    let cell_time = levels
        .iter()
        .zip(&members)
        .filter_map(
            |(l, m)| match model.dimensions[l.dim].levels[l.level].kind {
                LevelKind::Time(g) => Some((g, m)),
                _ => None,
            },
        )
        .max_by_key(|(g, _)| *g)
        .map_or("''".into(), |(_, m)| m.clone());
    let measures = fact_measures(model, fact);
    let mut values = Vec::new();
    let mut aggs = Vec::new();
    for (j, &m) in measures.iter().enumerate() {
        let MeasureKind::Aggregate {
            agg,
            column,
            over_time,
            ..
        } = &model.measures[m].kind
        else {
            unreachable!()
        };
        let v = format!("v{j}");
        values.push(format!(
            "{} AS {v}",
            column
                .as_ref()
                .map_or("1".into(), |c| query.joins.fact_column(&c.column))
        ));
        let input = match over_time {
            OverTime::Additive => v.clone(),
            OverTime::Last => format!("CASE WHEN base.p = closing.cp THEN {v} END"),
        };
        let aggregate = match (agg, column) {
            (Agg::Count, None) if *over_time == OverTime::Additive => "COUNT(*)".to_string(),
            (Agg::Count, _) => format!("COUNT({input})"),
            (Agg::Sum, _) => format!("SUM({input})"),
            (Agg::Min, _) => format!("MIN({input})"),
            (Agg::Max, _) => format!("MAX({input})"),
            (Agg::Distinct, _) => format!("COUNT(DISTINCT {input})"),
        };
        aggs.push(format!("{aggregate} AS a{j}"));
    }
    let mut base_cols: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{m} AS c{i}"))
        .collect();
    base_cols.push(format!("{row_period} AS p"));
    base_cols.push(format!("{cell_time} AS tm"));
    base_cols.extend(values);
    let group: Vec<String> = (0..levels.len()).map(|i| format!("base.c{i}")).collect();
    let mut select = group.clone();
    select.extend(aggs);
    select.push("COUNT(*) AS __rows".into());
    let mut ctes = query.ctes;
    ctes.push(format!(
        "base AS (SELECT {} FROM {})",
        base_cols.join(", "),
        query.joins.from
    ));
    ctes.push("closing AS (SELECT tm, MAX(p) AS cp FROM base GROUP BY tm)".into());
    let mut sql = format!(
        "WITH {}\nSELECT {}\nFROM base LEFT JOIN closing ON base.tm = closing.tm",
        ctes.join(",\n"),
        select.join(", ")
    );
    if !group.is_empty() {
        write!(sql, "\nGROUP BY {}", group.join(", ")).unwrap();
    }
    sql
}

/// Digits of an exact decimal: `-1250` at scale 2 is `-12.50`.
fn decimal_text(value: i128, scale: u32) -> String {
    if scale == 0 {
        return value.to_string();
    }
    let unit = 10u128.pow(scale);
    let sign = if value < 0 { "-" } else { "" };
    let abs = value.unsigned_abs();
    format!(
        "{sign}{}.{:0width$}",
        abs / unit,
        abs % unit,
        width = scale as usize
    )
}

/// The scale a measure's values are rendered at: the source column's (decimal columns), or
/// None (integers and counts).
async fn measure_scale(model: &Model, ctx: &SessionContext, m: MeasureId) -> Option<u32> {
    let MeasureKind::Aggregate {
        agg,
        column: Some(c),
        ..
    } = &model.measures[m].kind
    else {
        return None;
    };
    if matches!(agg, Agg::Count | Agg::Distinct) {
        return None;
    }
    let schema = ctx
        .table_provider(c.table.as_str())
        .await
        .expect("source table")
        .schema();
    match schema
        .field_with_name(&c.column)
        .expect("column")
        .data_type()
    {
        DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(*s as u32),
        _ => None,
    }
}

/// One value of a result column as text; decimals at `scale`.
fn cell_text(array: &ArrayRef, row: usize, scale: Option<u32>) -> String {
    if array.is_null(row) {
        return "NULL".into();
    }
    if let (Some(scale), Some(d)) = (scale, array.as_any().downcast_ref::<Decimal128Array>()) {
        let (value, have) = (d.value(row), d.scale() as u32);
        if have >= scale {
            let div = 10i128.pow(have - scale);
            if value % div == 0 {
                return decimal_text(value / div, scale);
            }
            // Digits beyond the source's scale: show them all, the comparison will fail.
            return decimal_text(value, have);
        }
        return decimal_text(value * 10i128.pow(scale - have), scale);
    }
    arrow::util::display::array_value_to_string(array, row).expect("display")
}

/// The cells of the cuboid of `fact` grouped by `levels`, by SQL over the raw sources: member
/// names of `levels` in order, then each aggregate measure of the fact; sorted.
pub async fn reference_rows(
    model: &Model,
    ctx: &SessionContext,
    fact: FactId,
    levels: &[LevelRef],
) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = reference_cells(model, ctx, fact, levels)
        .await
        .into_iter()
        .map(|(row, _)| row)
        .collect();
    rows.sort();
    rows
}

/// The reference cells with the number of fact rows in each.
pub async fn reference_cells(
    model: &Model,
    ctx: &SessionContext,
    fact: FactId,
    levels: &[LevelRef],
) -> Vec<(Vec<String>, i64)> {
    let sql = reference_sql(model, fact, levels);
    let batches = match ctx.sql(&sql).await {
        Ok(df) => df.collect().await,
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| panic!("reference query failed: {e}\n{sql}"));
    let measures = fact_measures(model, fact);
    let mut scales = Vec::new();
    for &m in &measures {
        scales.push(measure_scale(model, ctx, m).await);
    }
    let mut cells = Vec::new();
    for batch in &batches {
        let rows_col = batch.num_columns() - 1;
        let counts =
            arrow::compute::cast(batch.column(rows_col), &DataType::Int64).expect("count as int64");
        let counts = counts
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("int64");
        for r in 0..batch.num_rows() {
            // A grand total over no rows still comes back as one row: it is no cell.
            if counts.value(r) == 0 {
                continue;
            }
            let mut row = Vec::with_capacity(rows_col);
            for c in 0..levels.len() {
                row.push(cell_text(batch.column(c), r, None));
            }
            for (j, scale) in scales.iter().enumerate() {
                row.push(cell_text(batch.column(levels.len() + j), r, *scale));
            }
            cells.push((row, counts.value(r)));
        }
    }
    cells
}

/// The cells of a built cuboid, rendered like [`reference_rows`]; sorted.
pub fn cube_rows(cube: &Cube, cuboid: &Cuboid) -> Vec<Vec<String>> {
    let measures = fact_measures(cube.model(), cuboid.fact());
    let mut rows: Vec<Vec<String>> = (0..cuboid.len())
        .map(|cell| {
            let mut row: Vec<String> = cuboid
                .levels()
                .iter()
                .zip(cuboid.cell_codes(cell))
                .map(|(l, code)| cube.member_name(*l, code).to_string())
                .collect();
            row.extend(measures.iter().map(|&m| {
                cuboid
                    .value(cell, m)
                    .map_or_else(|| "<not stored>".into(), |v| v.to_string())
            }));
            row
        })
        .collect();
    rows.sort();
    rows
}

/// `fact [a.b, c.d]`.
pub fn describe_cuboid(model: &Model, fact: FactId, levels: &[LevelRef]) -> String {
    let names: Vec<String> = levels.iter().map(|l| model.level_name(*l)).collect();
    format!("{} [{}]", model.facts[fact].name, names.join(", "))
}

/// Compares one built cuboid with the reference; on a difference, says which cuboid, the SQL
/// and the first rows that differ. Returns the number of cells.
pub async fn check_cuboid(
    cube: &Cube,
    ctx: &SessionContext,
    cuboid: &Cuboid,
) -> Result<usize, String> {
    let model = cube.model();
    let (fact, levels) = (cuboid.fact(), cuboid.levels());
    let what = describe_cuboid(model, fact, levels);
    for l in levels {
        if !model.fact_has_dimension(fact, l.dim) {
            return Err(format!(
                "cuboid {what}: level {} is of a dimension fact '{}' does not reach",
                model.level_name(*l),
                model.facts[fact].name
            ));
        }
    }
    let built = cube_rows(cube, cuboid);
    let expected = reference_rows(model, ctx, fact, levels).await;
    if built == expected {
        return Ok(built.len());
    }
    let mut header: Vec<String> = levels.iter().map(|l| model.level_name(*l)).collect();
    header.extend(
        fact_measures(model, fact)
            .into_iter()
            .map(|m| model.measures[m].name.clone()),
    );
    let key = |r: &Vec<String>| r[..levels.len()].to_vec();
    let built_by_key: BTreeMap<Vec<String>, &Vec<String>> =
        built.iter().map(|r| (key(r), r)).collect();
    let expected_by_key: BTreeMap<Vec<String>, &Vec<String>> =
        expected.iter().map(|r| (key(r), r)).collect();
    let mut msg = format!(
        "cuboid {what}: the build has {} cells, SQL {}\ncolumns: {}\n",
        built.len(),
        expected.len(),
        header.join(" | ")
    );
    let mut shown = 0;
    let keys: BTreeSet<&Vec<String>> = built_by_key.keys().chain(expected_by_key.keys()).collect();
    for k in keys {
        let (b, e) = (built_by_key.get(k), expected_by_key.get(k));
        if b == e {
            continue;
        }
        let show = |r: Option<&&Vec<String>>| r.map_or("(no cell)".into(), |r| r.join(" | "));
        writeln!(msg, "  build: {}\n  SQL:   {}", show(b), show(e)).unwrap();
        shown += 1;
        if shown == 10 {
            msg.push_str("  ...\n");
            break;
        }
    }
    if built_by_key.len() != built.len() {
        msg.push_str("  (the build has two cells with the same members)\n");
    }
    write!(msg, "SQL:\n{}", reference_sql(model, fact, levels)).unwrap();
    Err(msg)
}

/// Checks every cuboid of a cube against the reference; all failures in one message. Returns
/// the number of cuboids and cells checked.
pub async fn check_cube(cube: &Cube, ctx: &SessionContext) -> Result<(usize, usize), String> {
    let mut failures = Vec::new();
    let mut cells = 0;
    for cuboid in cube.cuboids() {
        match check_cuboid(cube, ctx, cuboid).await {
            Ok(n) => cells += n,
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok((cube.cuboids().len(), cells))
    } else {
        Err(format!(
            "{} of {} cuboids differ from SQL:\n\n{}",
            failures.len(),
            cube.cuboids().len(),
            failures.join("\n\n")
        ))
    }
}

/// Writes `files` (name, content) into a new temporary folder.
pub fn write_files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("lattice-cube-")
        .tempdir()
        .expect("tempdir");
    for (name, text) in files {
        fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

/// Parses `yaml` with sources in `dir` and loads them.
pub async fn load_yaml(yaml: &str, dir: &Path) -> (Model, Sources) {
    let model = lattice_defs::parse_str(yaml, "test.yaml", dir)
        .unwrap_or_else(|d| panic!("definition:\n{d}\n{yaml}"));
    let sources = load(&model)
        .await
        .unwrap_or_else(|e| panic!("load: {e}\n{yaml}"));
    (model, sources)
}

/// A small shop: sales by customer (with a city, an age band and a per-month sales band)
/// and month; balances by customer and month (semi-additive).
pub const SHOP_YAML: &str = r#"
version: 1
cube: shop
sources:
  customers: { path: customers.csv }
  cities:    { path: cities.csv }
  sales:     { path: sales.csv }
  balances:  { path: balances.csv }
facts:
  sales:    { time: day, dimensions: [customer] }
  balances: { time: month, dimensions: [customer] }
dimensions:
  time: { type: time, hierarchy: [year, quarter, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      id:   { column: customer_id }
      kind: { column: kind }
      age_band: { bucket: { column: age, edges: [30, 50], labels: ["young", "mid", "old"] } }
      sales_band:
        bucket: { metric: sales_count, per: [customer, time.month], edges: [1, 2],
                  labels: ["none", "one", "many"] }
      balance_band:
        bucket: { metric: balance, per: [customer, time.month], edges: [100],
                  labels: ["small", "large"] }
  city:
    table: cities
    key: city_id
    via: customer
    levels:
      city: { column: city_name }
measures:
  amount:      { fact: sales, agg: sum, column: amount }
  sales_count: { fact: sales, agg: count }
  priced:      { fact: sales, agg: count, column: amount }
  low:         { fact: sales, agg: min, column: amount }
  buyers:      { fact: sales, agg: distinct, column: customer_id }
  balance:     { fact: balances, agg: sum, column: balance, over_time: last }
  accounts:    { fact: balances, agg: count, over_time: last }
  top:         { fact: balances, agg: max, column: balance }
aggregates:
  mode: explicit
  cuboids: [[customer.kind]]
"#;

/// Sales of the shop by kind, city and age band, worked out by hand: amount, sales_count,
/// priced, low, buyers. Customer 3 (no kind, city or age) and customer 4 (not in
/// customers.csv) are `unknown`.
pub const SHOP_SALES_BY_KIND_CITY_AGE: &[&[&str]] = &[
    &[
        "retail",
        "Oslo",
        "young",
        "8.250000",
        "2",
        "2",
        "-2.250000",
        "1",
    ],
    &[
        "retail",
        "Bergen",
        "old",
        "100.000000",
        "1",
        "1",
        "100.000000",
        "1",
    ],
    &[
        "unknown", "unknown", "unknown", "7.000000", "2", "1", "7.000000", "2",
    ],
];

/// Customer 4 has no row in customers.csv; customer 3 has no city and no age.
pub const SHOP_FILES: &[(&str, &str)] = &[
    (
        "customers.csv",
        "customer_id,kind,age,city_id\n1,retail,25,10\n2,retail,50,20\n3,,,\n",
    ),
    ("cities.csv", "city_id,city_name\n10,Oslo\n20,Bergen\n"),
    (
        "sales.csv",
        "day,customer_id,amount\n\
         2025-01-05,1,10.50\n\
         2025-01-20,1,-2.25\n\
         2025-02-03,2,100.00\n\
         2025-03-31,3,\n\
         2025-04-01,4,7.00\n",
    ),
    (
        "balances.csv",
        "month,customer_id,balance\n\
         2025-01-01,1,50.00\n\
         2025-01-01,2,500.00\n\
         2025-02-01,1,150.00\n\
         2025-03-01,2,\n",
    ),
];

async fn shop_rows(names: &[&str], fact: &str) -> Vec<Vec<String>> {
    let dir = write_files(SHOP_FILES);
    let (model, sources) = load_yaml(SHOP_YAML, dir.path()).await;
    let levels: Vec<LevelRef> = names
        .iter()
        .map(|n| model.level(n).expect("level"))
        .collect();
    reference_rows(
        &model,
        &sources.ctx,
        model.fact(fact).expect("fact"),
        &levels,
    )
    .await
}

fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
    let mut v: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
    v.sort();
    v
}

// Sales measures: amount, sales_count, priced, low, buyers. CSV fractions are read at scale 6.

#[tokio::test]
async fn reference_grand_total_by_hand() {
    assert_eq!(
        shop_rows(&[], "sales").await,
        rows(&[&["115.250000", "5", "4", "-2.250000", "4"]])
    );
    // Balances: deposit at the latest month (March): customer 2's NULL balance; one account.
    assert_eq!(
        shop_rows(&[], "balances").await,
        rows(&[&["NULL", "1", "500.000000"]])
    );
}

#[tokio::test]
async fn reference_members_and_unknowns_by_hand() {
    assert_eq!(
        shop_rows(
            &["customer.kind", "city.city", "customer.age_band"],
            "sales"
        )
        .await,
        rows(SHOP_SALES_BY_KIND_CITY_AGE)
    );
    assert_eq!(
        shop_rows(&["customer.id"], "sales").await,
        rows(&[
            &["1", "8.250000", "2", "2", "-2.250000", "1"],
            &["2", "100.000000", "1", "1", "100.000000", "1"],
            &["3", "NULL", "1", "0", "NULL", "1"],
            &["unknown", "7.000000", "1", "1", "7.000000", "1"],
        ])
    );
}

#[tokio::test]
async fn reference_time_and_metric_bands_by_hand() {
    // Sales per month carry the customer's band of that month: customer 1 has two sales in
    // January ("many"), customer 2 one in February ("one"), customer 3 one in March; customer
    // 4 is not in customers.csv, so its band is unknown.
    assert_eq!(
        shop_rows(&["time.month", "customer.sales_band"], "sales").await,
        rows(&[
            &["2025-01", "many", "8.250000", "2", "2", "-2.250000", "1"],
            &["2025-02", "one", "100.000000", "1", "1", "100.000000", "1"],
            &["2025-03", "one", "NULL", "1", "0", "NULL", "1"],
            &["2025-04", "unknown", "7.000000", "1", "1", "7.000000", "1"],
        ])
    );
    // A balances row carries the customer's sales band of its month (a metric of another
    // fact): customer 1 in February and customer 2 in January had no sales ("none").
    // Balance band: the customer's balance that month (NULL -> unknown).
    assert_eq!(
        shop_rows(
            &[
                "time.quarter",
                "customer.sales_band",
                "customer.balance_band"
            ],
            "balances"
        )
        .await,
        rows(&[
            // Q1 closes in March: only customer 2's March row (NULL balance) is closing.
            &["2025-Q1", "many", "small", "NULL", "0", "50.000000"],
            &["2025-Q1", "none", "large", "NULL", "0", "500.000000"],
            &["2025-Q1", "none", "unknown", "NULL", "1", "NULL"],
        ])
    );
    assert_eq!(
        shop_rows(&["time.month"], "balances").await,
        rows(&[
            &["2025-01", "550.000000", "2", "500.000000"],
            &["2025-02", "150.000000", "1", "150.000000"],
            &["2025-03", "NULL", "1", "NULL"],
        ])
    );
    // Per customer without time: only rows of the latest month (March) are closing.
    assert_eq!(
        shop_rows(&["customer.id"], "balances").await,
        rows(&[
            &["1", "NULL", "0", "150.000000"],
            &["2", "NULL", "1", "500.000000"],
        ])
    );
}

/// On the default cube, each level alone partitions each fact's rows: the cells' row counts
/// add up to the table's (the joins duplicate no row and lose none), and no cell is listed
/// twice.
#[tokio::test]
async fn reference_partitions_the_bank_facts_by_every_level() {
    let model = crate::util::bank_crm(crate::util::parquet_dir(), false).expect("definition");
    let sources = load(&model).await.expect("load");
    for (f, fact) in model.facts.iter().enumerate() {
        let batches = sources
            .ctx
            .sql(&format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {}",
                q(&fact.name)
            ))
            .await
            .expect("sql")
            .collect()
            .await
            .expect("count");
        let table_rows = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .expect("count")
            .value(0);
        assert!(table_rows > 1000, "{}: {table_rows} rows", fact.name);
        for (d, dim) in model.dimensions.iter().enumerate() {
            if !model.fact_has_dimension(f, d) {
                continue;
            }
            for level in 0..dim.levels.len() {
                let l = LevelRef { dim: d, level };
                let cells = reference_cells(&model, &sources.ctx, f, &[l]).await;
                let members: BTreeSet<&String> = cells.iter().map(|(r, _)| &r[0]).collect();
                assert_eq!(
                    members.len(),
                    cells.len(),
                    "{}",
                    describe_cuboid(&model, f, &[l])
                );
                assert_eq!(
                    cells.iter().map(|(_, n)| n).sum::<i64>(),
                    table_rows,
                    "{}",
                    describe_cuboid(&model, f, &[l])
                );
            }
        }
    }
}
