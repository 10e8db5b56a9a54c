//! The engine's first promise, checked: every question of `tests/questions.rs` answered by the
//! default cube (cuboids where they cover it) and by the same model built without a single
//! cuboid (everything through the fallback) equals its hand-written SQL twin over the raw
//! facts, and the two answers equal each other exactly. Drill-through is held to
//! `SELECT DISTINCT customer_id` the same way.
//!
//! Values compare by kind: members as text, decimals as exact strings (value and scale),
//! integers exactly, ratios with a relative tolerance of 1e-9. Rows compare in order: the
//! twins spell out the answer's order.
//!
//! `LATTICE_QUESTION=substring` runs only the matching questions and prints their answers.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use lattice_defs::model::AggMode;
use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{
    Answer, Dataset, Direction, DrillAnswer, DrillQuery, Filter, FilterOp, Order, Query,
};
use lattice_engine::source::load::load;
use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::questions::{Question, questions};
use crate::util::{bank_crm, parquet_dir};

/// The default cube, the same model built without cuboids (answering from its base rows), the
/// same without cuboids or base rows (answering through DataFusion, the fallback), and a SQL
/// session over the raw tables; built once per test binary.
pub struct Fixture {
    pub cube: Arc<Dataset>,
    /// No cuboids: every question from the base rows.
    pub base: Arc<Dataset>,
    /// No cuboids, no base rows: every question from the fallback.
    pub bare: Arc<Dataset>,
    pub sql: SessionContext,
}

pub async fn fixture() -> &'static Fixture {
    static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let model = bank_crm(parquet_dir(), false).expect("definition");
            let sources = load(&model).await.expect("load");
            let cube = lattice_engine::open(&model, &sources, &BuildOptions::default())
                .await
                .expect("build");
            let mut bare_model = model.clone();
            bare_model.aggregates.mode = AggMode::Explicit;
            bare_model.aggregates.cuboids.clear();
            let bare_sources = load(&bare_model).await.expect("load");
            let base = lattice_engine::open(&bare_model, &bare_sources, &BuildOptions::default())
                .await
                .expect("build without cuboids");
            assert!(base.cuboids().is_empty(), "the base cube has cuboids");
            let without_base = BuildOptions {
                without_base: true,
                ..BuildOptions::default()
            };
            let bare = lattice_engine::open(&bare_model, &bare_sources, &without_base)
                .await
                .expect("build without cuboids or base");
            assert!(bare.cuboids().is_empty(), "the bare cube has cuboids");
            let sql = load(&model).await.expect("load for SQL").ctx;
            Fixture {
                cube: Arc::new(cube),
                base: Arc::new(base),
                bare: Arc::new(bare),
                sql,
            }
        })
        .await
}

/// One value, as both sides are compared.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i128),
    /// `value * 10^-scale`.
    Dec(i128, u32),
    Float(f64),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Text(s) => write!(f, "{s:?}"),
            Cell::Int(i) => write!(f, "{i}"),
            Cell::Dec(v, s) => {
                let unit = 10u128.pow(*s);
                let sign = if *v < 0 { "-" } else { "" };
                let a = v.unsigned_abs();
                if *s == 0 {
                    write!(f, "{sign}{a}d")
                } else {
                    write!(f, "{sign}{}.{:0w$}d", a / unit, a % unit, w = *s as usize)
                }
            }
            Cell::Float(x) => write!(f, "{x:?}f"),
        }
    }
}

impl Cell {
    /// Equal as the suite means it: decimals digit for digit (the same value at the same
    /// scale, as SQL keeps the source's), floats within 1e-9 relative.
    pub fn same(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Float(a), Cell::Float(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
            }
            (a, b) => a == b,
        }
    }

    /// A JSON value of an answer column of type `ty` (`None` for a level).
    pub fn from_json(v: &Json, ty: Option<&str>) -> Cell {
        match (v, ty) {
            (Json::Null, _) => Cell::Null,
            (Json::String(s), None) => Cell::Text(s.clone()),
            (Json::String(s), Some("decimal")) => {
                parse_decimal(s).unwrap_or_else(|| Cell::Text(format!("bad decimal {s}")))
            }
            (Json::Number(n), Some("integer" | "decimal")) if n.is_i64() || n.is_u64() => {
                Cell::Int(
                    n.as_i64()
                        .map_or(i128::from(n.as_u64().unwrap_or(0)), i128::from),
                )
            }
            (Json::Number(n), Some("number")) => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
            (v, ty) => Cell::Text(format!("unexpected {v} for type {ty:?}")),
        }
    }

    /// Row `row` of a SQL result column.
    pub fn from_arrow(a: &ArrayRef, row: usize) -> Cell {
        if a.logical_nulls().is_some_and(|n| n.is_null(row)) {
            return Cell::Null;
        }
        match a.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let a = arrow::compute::cast(a, &DataType::Utf8).expect("utf8");
                Cell::Text(a.as_string::<i32>().value(row).to_string())
            }
            DataType::Decimal128(_, s) => Cell::Dec(
                a.as_primitive::<arrow::datatypes::Decimal128Type>()
                    .value(row),
                u32::try_from(*s).expect("scale"),
            ),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                let a = arrow::compute::cast(a, &DataType::Float64).expect("float");
                Cell::Float(a.as_primitive::<arrow::datatypes::Float64Type>().value(row))
            }
            t if t.is_integer() => {
                let a = arrow::compute::cast(a, &DataType::Int64).expect("int");
                Cell::Int(i128::from(a.as_primitive::<Int64Type>().value(row)))
            }
            t => Cell::Text(format!(
                "{t}: {}",
                arrow::util::display::array_value_to_string(a, row).expect("display")
            )),
        }
    }
}

fn parse_decimal(s: &str) -> Option<Cell> {
    let (neg, digits) = s.strip_prefix('-').map_or((false, s), |d| (true, d));
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let v: i128 = format!("{int}{frac}").parse().ok()?;
    Some(Cell::Dec(if neg { -v } else { v }, frac.len() as u32))
}

/// A SQL result: column names and rows.
pub struct Table {
    pub names: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Table, String> {
    let df = ctx.sql(sql).await.map_err(|e| format!("SQL: {e}\n{sql}"))?;
    let names = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches: Vec<RecordBatch> = df.collect().await.map_err(|e| format!("SQL: {e}\n{sql}"))?;
    let mut rows = Vec::new();
    for b in &batches {
        for r in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| Cell::from_arrow(c, r)).collect());
        }
    }
    Ok(Table { names, rows })
}

fn show_row(r: &[Cell]) -> String {
    r.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Compares rows in order; on a difference, both sides around the first rows that differ.
pub fn compare_rows(what: &str, got: &[Vec<Cell>], want: &[Vec<Cell>]) -> Result<(), String> {
    let same = |a: &Vec<Cell>, b: &Vec<Cell>| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
    };
    let first_diff = (0..got.len().max(want.len())).find(|&i| match (got.get(i), want.get(i)) {
        (Some(a), Some(b)) => !same(a, b),
        _ => true,
    });
    let Some(i) = first_diff else {
        return Ok(());
    };
    let mut msg = format!(
        "{what}: the engine has {} rows, SQL {}; first difference at row {i}\n",
        got.len(),
        want.len()
    );
    for j in i.saturating_sub(1)..(i + 4).min(got.len().max(want.len())) {
        let show = |r: Option<&Vec<Cell>>| r.map_or("(no row)".into(), |r| show_row(r));
        writeln!(
            msg,
            "  row {j}\n    engine: {}\n    SQL:    {}",
            show(got.get(j)),
            show(want.get(j))
        )
        .unwrap();
    }
    Err(msg)
}

/// The type of each answer column (`None` for levels).
fn column_types(a: &Answer) -> Vec<Option<&'static str>> {
    a.columns
        .iter()
        .map(|c| if c.kind == "level" { None } else { c.ty })
        .collect()
}

/// The type of a measure (or a pivot column `..|measure`) by name, from the answer's columns.
fn measure_type(a: &Answer, name: &str) -> Option<&'static str> {
    let m = name.rsplit('|').next().unwrap_or(name);
    a.columns
        .iter()
        .find(|c| c.kind == "measure" && c.name.rsplit('|').next() == Some(m))
        .and_then(|c| c.ty)
}

/// An answer's JSON without `meta` (which says how, not what).
pub fn without_meta(a: &Answer) -> Json {
    let mut v = serde_json::to_value(a).expect("answer as JSON");
    v.as_object_mut().expect("object").remove("meta");
    v
}

/// Checks one answer against the question's twins, run in `sql` (the raw tables, or views of
/// them restricted to a principal's customers).
pub async fn check_answer(
    sql: &SessionContext,
    q: &Question,
    query: &Query,
    a: &Answer,
) -> Result<(), String> {
    let want = run_sql(sql, q.sql).await?;
    let names: Vec<&str> = a.columns.iter().map(|c| c.name.as_str()).collect();
    if names != want.names {
        return Err(format!(
            "columns: the engine has {names:?}, SQL {:?}",
            want.names
        ));
    }
    let types = column_types(a);
    let got: Vec<Vec<Cell>> = a
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&types)
                .map(|(v, t)| Cell::from_json(v, *t))
                .collect()
        })
        .collect();
    // The declared type of each measure column matches what SQL computes.
    for (i, t) in types.iter().enumerate() {
        let Some(t) = t else { continue };
        if let Some(cell) = want.rows.iter().map(|r| &r[i]).find(|c| **c != Cell::Null) {
            let fits = matches!(
                (*t, cell),
                ("decimal", Cell::Dec(..)) | ("integer", Cell::Int(_)) | ("number", Cell::Float(_))
            );
            if !fits {
                return Err(format!(
                    "column {}: the engine says {t}, SQL computes {cell}",
                    names[i]
                ));
            }
        }
    }
    compare_rows("rows", &got, &want.rows)?;

    if !query.totals {
        if a.totals.is_some() || !a.subtotals.is_empty() {
            return Err("totals without `totals`".into());
        }
        return Ok(());
    }
    let (Some(totals), Some(totals_sql)) = (&a.totals, q.totals_sql) else {
        return Err(format!(
            "totals: the engine has {:?}; the question has SQL: {}",
            a.totals,
            q.totals_sql.is_some()
        ));
    };
    let want = run_sql(sql, totals_sql).await?;
    let mut keys: Vec<&String> = totals.keys().collect();
    keys.sort();
    let mut want_keys: Vec<&String> = want.names.iter().collect();
    want_keys.sort();
    if keys != want_keys {
        return Err(format!(
            "totals: the engine has {keys:?}, SQL {want_keys:?}"
        ));
    }
    let got: Vec<Cell> = want
        .names
        .iter()
        .map(|k| Cell::from_json(&totals[k], measure_type(a, k)))
        .collect();
    compare_rows("totals", &[got], &want.rows)?;

    if a.subtotals.len() != q.subtotals_sql.len() {
        return Err(format!(
            "subtotals: the engine has {} ({:?}), the question {}",
            a.subtotals.len(),
            a.subtotals.iter().map(|s| &s.levels).collect::<Vec<_>>(),
            q.subtotals_sql.len()
        ));
    }
    for (s, subtotal_sql) in a.subtotals.iter().zip(q.subtotals_sql) {
        let want = run_sql(sql, subtotal_sql).await?;
        let mut names = s.levels.clone();
        names.extend(query.measures.iter().cloned());
        if names != want.names {
            return Err(format!(
                "subtotal columns: the engine has {names:?}, SQL {:?}",
                want.names
            ));
        }
        let types: Vec<Option<&str>> = s
            .levels
            .iter()
            .map(|_| None)
            .chain(query.measures.iter().map(|m| measure_type(a, m)))
            .collect();
        let got: Vec<Vec<Cell>> = s
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&types)
                    .map(|(v, t)| Cell::from_json(v, *t))
                    .collect()
            })
            .collect();
        compare_rows(&format!("subtotal by {:?}", s.levels), &got, &want.rows)?;
    }
    Ok(())
}

/// Answers a question on both cubes and checks both; returns the default cube's source.
async fn check_question(fx: &Fixture, q: &Question) -> Result<&'static str, String> {
    let query = Query::from_json(q.query).map_err(|e| format!("query: {e}"))?;
    let built = fx
        .cube
        .session(Access::everything())
        .query(&query)
        .await
        .map_err(|e| format!("the cube: {e}"))?;
    let base = fx
        .base
        .session(Access::everything())
        .query(&query)
        .await
        .map_err(|e| format!("without cuboids: {e}"))?;
    let bare = fx
        .bare
        .session(Access::everything())
        .query(&query)
        .await
        .map_err(|e| format!("without cuboids or base: {e}"))?;
    if std::env::var_os("LATTICE_QUESTION").is_some() {
        println!(
            "{}\n{}",
            q.name,
            serde_json::to_string(&built).expect("json")
        );
    }
    let mut problems = Vec::new();
    if let Err(e) = check_answer(&fx.sql, q, &query, &built).await {
        problems.push(format!(
            "the cube ({}, {:?}) differs from SQL: {e}",
            built.meta.source, built.meta.cuboid
        ));
    }
    if let Err(e) = check_answer(&fx.sql, q, &query, &base).await {
        problems.push(format!("the base rows differ from SQL: {e}"));
    }
    if let Err(e) = check_answer(&fx.sql, q, &query, &bare).await {
        problems.push(format!("the fallback differs from SQL: {e}"));
    }
    if without_meta(&built) != without_meta(&base) {
        problems.push(format!(
            "the cube and the base rows differ:\n  cube: {}\n  base: {}",
            without_meta(&built),
            without_meta(&base)
        ));
    }
    if base.meta.source != "base" {
        problems.push(format!(
            "the cube without cuboids answered from '{}'",
            base.meta.source
        ));
    }
    if without_meta(&built) != without_meta(&bare) {
        problems.push(format!(
            "the cube and the fallback differ:\n  cube:     {}\n  fallback: {}",
            without_meta(&built),
            without_meta(&bare)
        ));
    }
    if bare.meta.source != "fallback" {
        problems.push(format!(
            "the cube without cuboids or base answered from '{}'",
            bare.meta.source
        ));
    }
    if built.meta.total_rows != bare.meta.total_rows {
        problems.push(format!(
            "total_rows: cube {}, fallback {}",
            built.meta.total_rows, bare.meta.total_rows
        ));
    }
    if problems.is_empty() {
        Ok(built.meta.source)
    } else {
        Err(problems.join("\n"))
    }
}

#[tokio::test]
async fn every_question_equals_its_sql_twin_with_and_without_cuboids() {
    let fx = fixture().await;
    let only = std::env::var("LATTICE_QUESTION").ok();
    let all = questions();
    let mut names: Vec<&str> = all.iter().map(|q| q.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "two questions share a name");
    if only.is_none() {
        assert!(all.len() >= 40, "{} questions", all.len());
    }
    let mut failures = Vec::new();
    let (mut asked, mut from_cuboids) = (0, 0);
    for q in &all {
        if only.as_ref().is_some_and(|o| !q.name.contains(o.as_str())) {
            continue;
        }
        asked += 1;
        match check_question(fx, q).await {
            Ok("cuboid") => from_cuboids += 1,
            Ok(_) => {}
            Err(e) => failures.push(format!("--- {}\n{}\n{e}", q.name, q.query)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {asked} questions differ from SQL:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    println!("{from_cuboids} of {asked} questions answered from cuboids");
    if only.is_none() {
        // Most questions group and filter by levels some cuboid holds.
        assert!(
            from_cuboids * 2 >= asked,
            "only {from_cuboids} of {asked} questions were answered from cuboids"
        );
    }
}

/// The twins join facts to dimensions with plain joins: that is right only if every key of
/// the test data is in its table.
#[tokio::test]
async fn every_fact_key_of_the_test_data_is_in_its_dimension_table() {
    let fx = fixture().await;
    let orphans = run_sql(
        &fx.sql,
        "SELECT
            (SELECT COUNT(*) FROM transactions t LEFT JOIN customers c ON c.customer_id = t.customer_id WHERE c.customer_id IS NULL)
          + (SELECT COUNT(*) FROM transactions t LEFT JOIN products p ON p.product_id = t.product_id WHERE p.product_id IS NULL)
          + (SELECT COUNT(*) FROM transactions t LEFT JOIN channels h ON h.channel_id = t.channel_id WHERE h.channel_id IS NULL)
          + (SELECT COUNT(*) FROM balances b LEFT JOIN customers c ON c.customer_id = b.customer_id WHERE c.customer_id IS NULL)
          + (SELECT COUNT(*) FROM balances b LEFT JOIN products p ON p.product_id = b.product_id WHERE p.product_id IS NULL)
          + (SELECT COUNT(*) FROM customers c LEFT JOIN regions r ON r.region_id = c.region_id WHERE r.region_id IS NULL)
          + (SELECT COUNT(*) FROM customers c LEFT JOIN managers m ON m.manager_id = c.manager_id WHERE m.manager_id IS NULL)
          + (SELECT COUNT(*) FROM managers m LEFT JOIN regions r ON r.region_id = m.region_id WHERE r.region_id IS NULL)
          AS orphans",
    )
    .await
    .expect("sql");
    assert_eq!(want_int(&orphans.rows[0][0]), 0);
}

fn want_int(c: &Cell) -> i128 {
    match c {
        Cell::Int(i) => *i,
        other => panic!("not an integer: {other}"),
    }
}

// ---- drill-through ----

fn filter(level: &str, op: FilterOp, values: &[&str]) -> Filter {
    let (value, values) = match op {
        FilterOp::Eq | FilterOp::Prefix | FilterOp::Search => (Some(values[0].to_string()), None),
        _ => (None, Some(values.iter().map(|v| v.to_string()).collect())),
    };
    Filter {
        level: level.into(),
        op,
        value,
        values,
    }
}

fn drill_rows(d: &DrillAnswer) -> Vec<Vec<Cell>> {
    let types: Vec<Option<&str>> = d
        .columns
        .iter()
        .map(|c| if c.kind == "level" { None } else { c.ty })
        .collect();
    d.rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&types)
                .map(|(v, t)| Cell::from_json(v, *t))
                .collect()
        })
        .collect()
}

/// Drills on both cubes; checks the members page and the total against SQL. Returns the
/// default cube's source.
async fn check_drill(q: &DrillQuery, page_sql: &str, total_sql: &str) -> &'static str {
    let fx = fixture().await;
    let want = run_sql(&fx.sql, page_sql).await.unwrap();
    let total = want_int(&run_sql(&fx.sql, total_sql).await.unwrap().rows[0][0]);
    let mut sources = Vec::new();
    for (which, cube) in [
        ("cube", &fx.cube),
        ("base rows", &fx.base),
        ("no cuboids", &fx.bare),
    ] {
        let d = cube
            .session(Access::everything())
            .drill_through(q)
            .await
            .unwrap_or_else(|e| panic!("{which}: {e}\n{q:?}"));
        let names: Vec<&str> = d.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, want.names, "{which}: columns\n{q:?}");
        assert_eq!(i128::from(d.total), total, "{which}: total\n{q:?}");
        if let Err(e) = compare_rows(which, &drill_rows(&d), &want.rows) {
            panic!("{e}\n{q:?}");
        }
        sources.push(d.meta.source);
    }
    assert_eq!(sources[2], "fallback", "no cuboids, yet {}", sources[2]);
    sources[0]
}

#[tokio::test]
async fn drill_through_lists_the_customers_behind_a_cell() {
    let q = DrillQuery {
        level: "customer.id".into(),
        filters: vec![
            filter("region.province", FilterOp::Eq, &["Zhejiang"]),
            filter("time.year", FilterOp::Eq, &["2025"]),
        ],
        limit: Some(20),
        offset: 5,
        ..DrillQuery::default()
    };
    let cell = "FROM transactions t
         JOIN customers c ON c.customer_id = t.customer_id
         JOIN regions r ON r.region_id = c.region_id
         WHERE r.province = 'Zhejiang' AND to_char(t.txn_date, '%Y') = '2025'";
    let source = check_drill(
        &q,
        &format!(
            r#"SELECT CAST(customer_id AS VARCHAR) AS "customer.id" FROM
               (SELECT DISTINCT t.customer_id {cell}) ORDER BY customer_id LIMIT 20 OFFSET 5"#
        ),
        &format!("SELECT COUNT(DISTINCT t.customer_id) {cell}"),
    )
    .await;
    assert_eq!(source, "member_sets");
}

#[tokio::test]
async fn drill_through_in_reverse_member_order_with_the_default_limit() {
    let q = DrillQuery {
        level: "customer.id".into(),
        filters: vec![filter(
            "channel.channel",
            FilterOp::In,
            &["phone", "counter"],
        )],
        order: vec![Order {
            by: "customer.id".into(),
            dir: Direction::Desc,
        }],
        ..DrillQuery::default()
    };
    let cell = "FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
         WHERE ch.channel IN ('phone', 'counter')";
    check_drill(
        &q,
        &format!(
            r#"SELECT CAST(customer_id AS VARCHAR) AS "customer.id" FROM
               (SELECT DISTINCT t.customer_id {cell}) ORDER BY customer_id DESC LIMIT 100"#
        ),
        &format!("SELECT COUNT(DISTINCT t.customer_id) {cell}"),
    )
    .await;
}

#[tokio::test]
async fn drill_through_ordered_by_a_measure() {
    let q = DrillQuery {
        level: "customer.id".into(),
        filters: vec![
            filter("product.category", FilterOp::Eq, &["card"]),
            filter("time.month", FilterOp::Between, &["2025-01", "2025-03"]),
        ],
        measures: vec!["txn_amount".into(), "txn_count".into()],
        order: vec![Order {
            by: "txn_amount".into(),
            dir: Direction::Desc,
        }],
        limit: Some(15),
        offset: 2,
    };
    let cell = "FROM transactions t JOIN products p ON p.product_id = t.product_id
         WHERE p.category = 'card' AND t.txn_date >= DATE '2025-01-01' AND t.txn_date < DATE '2025-04-01'";
    check_drill(
        &q,
        &format!(
            r#"SELECT CAST(t.customer_id AS VARCHAR) AS "customer.id", SUM(t.amount) AS txn_amount,
                   COUNT(*) AS txn_count
               {cell} GROUP BY t.customer_id ORDER BY txn_amount DESC, t.customer_id LIMIT 15 OFFSET 2"#
        ),
        &format!("SELECT COUNT(DISTINCT t.customer_id) {cell}"),
    )
    .await;
}

#[tokio::test]
async fn drill_through_with_measures_in_member_order_and_a_cell_no_cuboid_holds() {
    // Branch and channel together: no cuboid of the default cube holds both.
    let q = DrillQuery {
        level: "customer.id".into(),
        filters: vec![
            filter("region.branch", FilterOp::Eq, &["Hangzhou Central"]),
            filter("channel.channel", FilterOp::Eq, &["mobile"]),
        ],
        measures: vec!["active_customers".into(), "fee_income".into()],
        limit: Some(10),
        ..DrillQuery::default()
    };
    let cell = "FROM transactions t
         JOIN customers c ON c.customer_id = t.customer_id
         JOIN regions r ON r.region_id = c.region_id
         JOIN channels ch ON ch.channel_id = t.channel_id
         WHERE r.branch = 'Hangzhou Central' AND ch.channel = 'mobile'";
    check_drill(
        &q,
        &format!(
            r#"SELECT CAST(t.customer_id AS VARCHAR) AS "customer.id", COUNT(DISTINCT t.customer_id) AS active_customers,
                   SUM(t.fee_income) AS fee_income
               {cell} GROUP BY t.customer_id ORDER BY t.customer_id LIMIT 10"#
        ),
        &format!("SELECT COUNT(DISTINCT t.customer_id) {cell}"),
    )
    .await;
}

#[tokio::test]
async fn drill_through_to_products_through_their_holders() {
    // Products are listed through `products_held`, the distinct products of balances.
    let q = DrillQuery {
        level: "product.product".into(),
        filters: vec![
            filter("region.province", FilterOp::Eq, &["Sichuan"]),
            filter("customer.deposit_band", FilterOp::In, &["200k-1M", "1M+"]),
        ],
        ..DrillQuery::default()
    };
    let cell = "FROM balances b
         JOIN customers c ON c.customer_id = b.customer_id
         JOIN regions r ON r.region_id = c.region_id
         JOIN products p ON p.product_id = b.product_id
         JOIN (SELECT customer_id, month, SUM(deposit_balance) AS deposit FROM balances GROUP BY 1, 2) d
           ON d.customer_id = b.customer_id AND d.month = b.month
         WHERE r.province = 'Sichuan' AND d.deposit >= 200000";
    check_drill(
        &q,
        &format!(
            r#"SELECT DISTINCT p.product_name AS "product.product" {cell} ORDER BY 1 LIMIT 100"#
        ),
        &format!("SELECT COUNT(DISTINCT p.product_name) {cell}"),
    )
    .await;
}

#[tokio::test]
async fn drill_through_with_a_measure_of_the_other_fact() {
    // Customers with a transaction in a month they held under 10k, by their deposits at the
    // latest month: balances of the months in that band, so a customer above 10k by then has
    // a row with no deposit; NULLs come last, in member order like any tie.
    let q = DrillQuery {
        level: "customer.id".into(),
        filters: vec![filter("customer.deposit_band", FilterOp::Eq, &["<10k"])],
        measures: vec!["deposit_balance".into()],
        order: vec![Order {
            by: "deposit_balance".into(),
            dir: Direction::Desc,
        }],
        limit: Some(500),
        offset: 0,
    };
    let deposits =
        "SELECT customer_id, month, SUM(deposit_balance) AS deposit FROM balances GROUP BY 1, 2";
    let members = format!(
        "SELECT DISTINCT t.customer_id FROM transactions t
         LEFT JOIN ({deposits}) d ON d.customer_id = t.customer_id AND d.month = date_trunc('month', t.txn_date)
         WHERE COALESCE(d.deposit, 0) < 10000"
    );
    check_drill(
        &q,
        &format!(
            r#"WITH members AS ({members}),
               closing AS (SELECT MAX(month) AS last_month FROM balances),
               held AS (
                 SELECT b.customer_id,
                     SUM(CASE WHEN b.month = closing.last_month THEN b.deposit_balance END) AS deposit_balance
                 FROM balances b
                 JOIN ({deposits}) d ON d.customer_id = b.customer_id AND d.month = b.month
                 CROSS JOIN closing
                 WHERE d.deposit < 10000
                 GROUP BY b.customer_id)
               SELECT CAST(m.customer_id AS VARCHAR) AS "customer.id", h.deposit_balance
               FROM members m LEFT JOIN held h ON h.customer_id = m.customer_id
               ORDER BY h.deposit_balance DESC NULLS LAST, m.customer_id LIMIT 500"#
        ),
        &format!("SELECT COUNT(*) FROM ({members})"),
    )
    .await;
}

/// Drill-through ordered by a measure: a member whose row has no value and a member with no
/// row at all both have NULL, a tie, so they keep member order (customer 1 before 2), as
/// `ORDER BY balance DESC NULLS LAST, customer_id` would list them.
#[tokio::test]
async fn drill_through_ordered_by_a_measure_keeps_member_order_among_nulls() {
    let yaml = r#"
version: 1
cube: shop
sources:
  customers: { path: customers.csv }
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
      id: { column: customer_id }
measures:
  buyers:  { fact: sales, agg: distinct, column: customer_id }
  balance: { fact: balances, agg: sum, column: balance, over_time: last }
aggregates:
  mode: explicit
  cuboids: [[time.month]]
"#;
    // Customers 1 and 2 buy; 2 has a balance in January only, so none at the closing month
    // (February, customer 3's); 1 has no balance at all.
    let dir = crate::reference::write_files(&[
        ("customers.csv", "customer_id\n1\n2\n3\n"),
        ("sales.csv", "day,customer_id\n2025-01-05,1\n2025-01-06,2\n"),
        (
            "balances.csv",
            "month,customer_id,balance\n2025-01-01,2,100.00\n2025-02-01,3,50.00\n",
        ),
    ]);
    let (model, sources) = crate::reference::load_yaml(yaml, dir.path()).await;
    let cube = Arc::new(
        lattice_engine::open(&model, &sources, &BuildOptions::default())
            .await
            .expect("build"),
    );
    let q = DrillQuery {
        level: "customer.id".into(),
        measures: vec!["balance".into()],
        order: vec![Order {
            by: "balance".into(),
            dir: Direction::Desc,
        }],
        ..DrillQuery::default()
    };
    let d = cube
        .session(Access::everything())
        .drill_through(&q)
        .await
        .expect("drill");
    assert_eq!(d.total, 2);
    assert_eq!(
        d.rows,
        vec![
            vec![Json::from("1"), Json::Null],
            vec![Json::from("2"), Json::Null]
        ]
    );
}
