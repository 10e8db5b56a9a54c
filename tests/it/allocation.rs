//! Cost allocation, held to SQL written here over the raw tables (never to the table the
//! engine computes): the default cube's `branch_cost` (each branch's monthly operating cost
//! split over its customers' (customer, product) cells of the month by transaction count) and
//! `contribution` (interest margin + fee income - allocated cost), answered from cuboids and
//! through the fallback; then each driver kind and the edge rules on a hand-made data set.
//!
//! The SQL twin of the split: floor of `pool * w / W` in integer cents, and one more cent to
//! the `k` cells with the largest remainders (`k` the cents left), ties to the smaller
//! (customer_id, product_id), by a `ROW_NUMBER()` window per pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use lattice_defs::model::AggMode;
use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Dataset, Query};
use lattice_engine::source::allocate::AllocationReport;
use lattice_engine::source::load::load;
use serde_json::Value as Json;

use crate::query_suite::{Cell, fixture, run_sql};
use crate::util::{bank_crm, parquet_dir};

/// The raw tables of the test data set, read straight from their files.
async fn raw(dir: &Path) -> SessionContext {
    let ctx = SessionContext::new();
    for t in [
        "customers",
        "products",
        "regions",
        "managers",
        "transactions",
        "balances",
        "branch_costs",
    ] {
        let path = dir.join(format!("{t}.parquet"));
        ctx.register_parquet(
            t,
            path.to_str().expect("path"),
            ParquetReadOptions::default(),
        )
        .await
        .expect("register");
    }
    ctx
}

const MONTH: &str = "CAST(date_trunc('month', {d}) AS DATE)";

fn month(d: &str) -> String {
    MONTH.replace("{d}", d)
}

/// Each pool in cents: (member, month, cents).
fn pools_sql() -> String {
    let m = month("month");
    format!(
        "SELECT region_id AS member, {m} AS month, CAST(SUM(operating_cost) * 100 AS BIGINT) AS cents \
         FROM branch_costs GROUP BY region_id, {m}"
    )
}

/// The driver's cells: (customer_id, product_id, month, member, w), transaction counts.
fn cells_sql() -> String {
    let m = month("t.txn_date");
    format!(
        "SELECT t.customer_id, t.product_id, {m} AS month, c.region_id AS member, COUNT(*) AS w \
         FROM transactions t JOIN customers c ON c.customer_id = t.customer_id \
         GROUP BY t.customer_id, t.product_id, {m}, c.region_id"
    )
}

/// The largest-remainder split of each pool over its cells, in SQL:
/// (customer_id, product_id, month, cents).
fn split_sql() -> String {
    format!(
        "WITH c AS ({cells}), p AS ({pools}), \
         j AS (SELECT c.customer_id, c.product_id, c.month, c.member, \
                      CASE WHEN c.w > 0 THEN c.w ELSE 0 END AS w, p.cents \
               FROM c JOIN p ON p.member = c.member AND p.month = c.month), \
         t AS (SELECT j.*, SUM(w) OVER (PARTITION BY member, month) AS wt, \
                      COUNT(*) OVER (PARTITION BY member, month) AS n FROM j), \
         e AS (SELECT customer_id, product_id, month, member, cents, \
                      CASE WHEN wt = 0 THEN 1 ELSE w END AS ew, \
                      CASE WHEN wt = 0 THEN n ELSE wt END AS et FROM t), \
         f AS (SELECT e.*, (abs(cents) * ew) / et AS fl, (abs(cents) * ew) % et AS rem FROM e), \
         r AS (SELECT f.*, abs(cents) - SUM(fl) OVER (PARTITION BY member, month) AS k, \
                      ROW_NUMBER() OVER (PARTITION BY member, month \
                                         ORDER BY rem DESC, customer_id, product_id) AS rk \
               FROM f) \
         SELECT customer_id, product_id, month, \
                CASE WHEN cents < 0 THEN -1 ELSE 1 END * (fl + CASE WHEN rk <= k THEN 1 ELSE 0 END) AS cents \
         FROM r",
        cells = cells_sql(),
        pools = pools_sql()
    )
}

/// A decimal or integer answer value in cents.
fn cents(v: &Json) -> Option<i128> {
    match v {
        Json::Null => None,
        Json::Number(n) => Some(i128::from(n.as_i64().expect("integer")) * 100),
        Json::String(s) => {
            let (neg, digits) = s
                .strip_prefix('-')
                .map_or((false, s.as_str()), |d| (true, d));
            let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
            let frac = format!("{frac:0<2}");
            assert_eq!(frac.len(), 2, "not cents: {s}");
            let v: i128 = format!("{int}{frac}").parse().expect("decimal");
            Some(if neg { -v } else { v })
        }
        other => panic!("not money: {other}"),
    }
}

/// The rows of a SQL result whose last column is cents, keyed by the other columns as text.
async fn sql_map(ctx: &SessionContext, sql: &str) -> BTreeMap<Vec<String>, i128> {
    let table = run_sql(ctx, sql).await.unwrap_or_else(|e| panic!("{e}"));
    let mut out = BTreeMap::new();
    for row in table.rows {
        let (value, key) = row.split_last().expect("a value column");
        let key: Vec<String> = key
            .iter()
            .map(|c| match c {
                Cell::Text(s) => s.clone(),
                Cell::Int(i) => i.to_string(),
                Cell::Null => "unknown".into(),
                other => panic!("key {other}"),
            })
            .collect();
        let v = match value {
            Cell::Int(i) => *i,
            Cell::Null => 0,
            other => panic!("value {other}"),
        };
        assert!(out.insert(key.clone(), v).is_none(), "key twice: {key:?}");
    }
    out
}

/// An answer's rows keyed by their members, the one measure in cents.
async fn answer_map(
    cube: &Arc<Dataset>,
    query: &str,
) -> (BTreeMap<Vec<String>, i128>, &'static str) {
    let q = Query::from_json(query).expect("query");
    let a = cube
        .session(Access::everything())
        .query(&q)
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"));
    let n = q.rows.len();
    let mut out = BTreeMap::new();
    for row in &a.rows {
        let key: Vec<String> = row[..n]
            .iter()
            .map(|v| v.as_str().expect("member").to_string())
            .collect();
        if let Some(c) = cents(&row[n]) {
            out.insert(key, c);
        }
    }
    (out, a.meta.source)
}

#[track_caller]
fn assert_same(what: &str, got: &BTreeMap<Vec<String>, i128>, want: &BTreeMap<Vec<String>, i128>) {
    if got == want {
        return;
    }
    let mut msg = format!(
        "{what}: the engine has {} rows, SQL {}\n",
        got.len(),
        want.len()
    );
    let keys: std::collections::BTreeSet<_> = got.keys().chain(want.keys()).collect();
    for k in keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .take(10)
    {
        msg.push_str(&format!(
            "  {k:?}: engine {:?}, SQL {:?}\n",
            got.get(k),
            want.get(k)
        ));
    }
    panic!("{msg}");
}

#[tokio::test]
async fn every_pool_sums_back_to_the_cent_and_the_rest_is_reported() {
    let fx = fixture().await;
    let ctx = raw(parquet_dir()).await;
    // Pools with at least one cell, by branch name and month.
    let sql = format!(
        "SELECT r.branch, to_char(p.month, '%Y-%m') AS month, SUM(p.cents) AS cents \
         FROM ({pools}) p JOIN regions r ON r.region_id = p.member \
         WHERE EXISTS (SELECT 1 FROM ({cells}) c WHERE c.member = p.member AND c.month = p.month) \
         GROUP BY r.branch, to_char(p.month, '%Y-%m')",
        pools = pools_sql(),
        cells = cells_sql()
    );
    let want = sql_map(&ctx, &sql).await;
    let query = r#"{"measures": ["allocated_cost"], "rows": ["region.branch", "time.month"]}"#;
    for (cube, path) in [(&fx.cube, "cube"), (&fx.bare, "fallback")] {
        let (got, source) = answer_map(cube, query).await;
        assert!(path == "cube" || source == "fallback");
        assert_same(
            &format!("allocated cost by branch and month ({path})"),
            &got,
            &want,
        );
    }

    // What no cell received is what the build reports, pool by pool.
    let sql = format!(
        "SELECT CAST(p.member AS VARCHAR), CAST(p.month AS VARCHAR), p.cents FROM ({pools}) p \
         WHERE NOT EXISTS (SELECT 1 FROM ({cells}) c WHERE c.member = p.member AND c.month = p.month)",
        pools = pools_sql(),
        cells = cells_sql()
    );
    let want = sql_map(&ctx, &sql).await;
    let model = bank_crm(parquet_dir(), false).expect("definition");
    let sources = load(&model).await.expect("load");
    let report: &AllocationReport = &sources.allocations[0];
    assert_eq!(report.name, "branch_cost");
    assert_eq!(report.scale, 2);
    let got: BTreeMap<Vec<String>, i128> = report
        .unallocated
        .iter()
        .map(|u| {
            (
                vec![
                    u.member.clone().expect("member"),
                    u.period.clone().expect("period"),
                ],
                u.amount,
            )
        })
        .collect();
    assert_same("unallocated pools", &got, &want);
    let total = sql_map(
        &ctx,
        &format!("SELECT 'all', SUM(cents) FROM ({})", pools_sql()),
    )
    .await;
    assert_eq!(report.total, total[&vec!["all".to_string()]]);
    assert_eq!(
        report.unallocated_total(),
        want.values().sum::<i128>(),
        "unallocated total"
    );
}

#[tokio::test]
async fn each_cells_share_equals_the_sql_largest_remainder() {
    let fx = fixture().await;
    let ctx = raw(parquet_dir()).await;
    let sql = format!(
        "SELECT CAST(s.customer_id AS VARCHAR), p.product_name, to_char(s.month, '%Y-%m'), s.cents \
         FROM ({split}) s JOIN products p ON p.product_id = s.product_id",
        split = split_sql()
    );
    let want = sql_map(&ctx, &sql).await;
    assert!(want.len() > 1000, "the test data has cells: {}", want.len());
    let query = r#"{"measures": ["allocated_cost"],
                    "rows": ["customer.id", "product.product", "time.month"]}"#;
    for (cube, path) in [(&fx.cube, "cube"), (&fx.bare, "fallback")] {
        let (got, _) = answer_map(cube, query).await;
        assert_same(&format!("allocated cost per cell ({path})"), &got, &want);
    }
}

/// Contribution by some levels in SQL (each level's member as an expression): each fact's
/// part per member in cents, full outer joined (a member any fact has), a missing part 0.
fn contribution_sql(levels: &[String]) -> String {
    let joins = "LEFT JOIN customers c ON c.customer_id = f.customer_id \
                 LEFT JOIN regions r ON r.region_id = c.region_id \
                 LEFT JOIN managers m ON m.manager_id = c.manager_id \
                 LEFT JOIN products p ON p.product_id = f.product_id";
    let keys: Vec<String> = levels
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS k{i}"))
        .collect();
    let part = |table: &str, date: &str, value: &str| {
        format!(
            "SELECT {}, SUM(f.v) AS v FROM \
             (SELECT customer_id, product_id, {date} AS d, {value} AS v FROM {table}) f {joins} \
             GROUP BY {}",
            keys.join(", "),
            levels.join(", ")
        )
    };
    let margin = part("balances", "month", "CAST(interest_margin * 100 AS BIGINT)");
    let fees = part(
        "transactions",
        "txn_date",
        "CAST(fee_income * 100 AS BIGINT)",
    );
    let cost = part(&format!("({})", split_sql()), "month", "cents");
    let n = levels.len();
    let on = |l: &str, r: &str| {
        (0..n)
            .map(|i| format!("{l}.k{i} = {}", r.replace("{i}", &i.to_string())))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let select: Vec<String> = (0..n)
        .map(|i| format!("COALESCE(b.k{i}, t.k{i}, a.k{i})"))
        .collect();
    format!(
        "SELECT {}, COALESCE(b.v, 0) + COALESCE(t.v, 0) - COALESCE(a.v, 0) AS cents \
         FROM ({margin}) b FULL OUTER JOIN ({fees}) t ON {} \
         FULL OUTER JOIN ({cost}) a ON {}",
        select.join(", "),
        on("t", "b.k{i}"),
        on("a", "COALESCE(b.k{i}, t.k{i})")
    )
}

#[tokio::test]
async fn contribution_equals_sql_by_product_region_manager_customer_and_quarter() {
    let fx = fixture().await;
    let ctx = raw(parquet_dir()).await;
    let customer = "CAST(f.customer_id AS VARCHAR)";
    let quarter =
        "to_char(f.d, '%Y') || '-Q' || CAST(CAST(date_part('quarter', f.d) AS BIGINT) AS VARCHAR)";
    let levels: [(&[&str], &[&str]); 6] = [
        (&["product.product"], &["p.product_name"]),
        (&["region.province"], &["r.province"]),
        (&["manager.manager"], &["m.manager_name"]),
        (&["customer.id"], &[customer]),
        (&["time.quarter"], &[quarter]),
        // Customer-months with balances but no transactions: margin alone.
        (
            &["customer.id", "time.month"],
            &[customer, "to_char(f.d, '%Y-%m')"],
        ),
    ];
    let mut sources = Vec::new();
    for (level, exprs) in levels {
        let exprs: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
        let want = sql_map(&ctx, &contribution_sql(&exprs)).await;
        let query = format!(
            r#"{{"measures": ["contribution"], "rows": {}}}"#,
            serde_json::to_string(level).expect("json")
        );
        for (cube, path) in [(&fx.cube, "cube"), (&fx.bare, "fallback")] {
            let (got, source) = answer_map(cube, &query).await;
            assert!(path == "cube" || source == "fallback", "{level:?}");
            if path == "cube" {
                sources.push(format!("{level:?}: {source}"));
            }
            assert_same(&format!("contribution by {level:?} ({path})"), &got, &want);
        }
    }
    // Some customer-months have no transaction (their contribution is the margin alone).
    let without = sql_map(
        &ctx,
        &format!(
            "SELECT 'n', COUNT(*) FROM (SELECT DISTINCT customer_id, month FROM balances) b \
             WHERE NOT EXISTS (SELECT 1 FROM transactions t WHERE t.customer_id = b.customer_id \
                               AND {} = b.month)",
            month("t.txn_date")
        ),
    )
    .await;
    assert!(
        without[&vec!["n".to_string()]] > 0,
        "the test data has such months"
    );
    // The default cube answers the coarser ones from cuboids of all three facts.
    assert!(sources.iter().any(|s| s.ends_with("cuboid")), "{sources:?}");
    // Channel: transactions vary by it, balances and the allocated cost do not.
    let q = Query::from_json(r#"{"measures": ["contribution"], "rows": ["channel.channel"]}"#)
        .expect("query");
    let err = fx
        .cube
        .session(Access::everything())
        .query(&q)
        .await
        .expect_err("no contribution by channel");
    assert_eq!(err.code(), "measure_does_not_vary", "{err}");
}

// A hand-made data set: every driver kind and every edge rule, with the shares worked out by
// hand.
const DEFINITION: &str = r#"version: 1
cube: tiny
sources:
  customers: { path: customers.csv }
  branches: { path: branches.csv }
  visits: { path: visits.csv }
  costs: { path: costs.csv }
facts:
  visits: { time: day, dimensions: [customer] }
allocations:
  by_count:
    pool: { source: costs, amount: cost, time: month, member: { dimension: branch, key: branch_id } }
    driver: { measure: visit_count }
  by_amount:
    pool: { source: costs, amount: cost, time: month, member: { dimension: branch } }
    driver: { measure: visit_amount }
  by_equal:
    pool: { source: costs, amount: cost, time: month, member: { dimension: branch } }
    driver: { equal: visits }
dimensions:
  time: { type: time, hierarchy: [year, month] }
  customer: { table: customers, key: customer_id, levels: { id: { column: customer_id } } }
  branch: { table: branches, key: branch_id, via: customer, levels: { city: { column: city } } }
measures:
  visit_count: { fact: visits, agg: count }
  visit_amount: { fact: visits, agg: sum, column: amount }
  count_cost: { fact: by_count, agg: sum, column: cost }
  amount_cost: { fact: by_amount, agg: sum, column: cost }
  equal_cost: { fact: by_equal, agg: sum, column: cost }
"#;

fn write_tiny(dir: &Path) {
    let files = [
        (
            "branches.csv",
            "branch_id,city\n10,North\n20,South\n30,West\n",
        ),
        (
            "customers.csv",
            "customer_id,branch_id\n1,10\n2,10\n3,10\n4,20\n5,30\n",
        ),
        // January: branch 10's customers visit 2, 1 and 1 times with amounts 0, 3 and -1;
        // branch 20's one customer has amount 0; branch 30's none visits. February: 1 and 2
        // at branch 10 (5 each), 5 at branch 30.
        (
            "visits.csv",
            "customer_id,day,amount\n\
             1,2025-01-03,0\n1,2025-01-20,0\n2,2025-01-05,3\n3,2025-01-09,-1\n4,2025-01-11,0\n\
             1,2025-02-02,5\n2,2025-02-03,5\n5,2025-02-14,2\n",
        ),
        (
            "costs.csv",
            "month,branch_id,cost\n2025-01-01,10,101\n2025-01-01,20,-7\n2025-01-01,30,50\n\
             2025-02-01,10,10\n2025-02-01,30,9\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write");
    }
}

#[tokio::test]
async fn each_driver_kind_and_the_edge_rules_on_a_hand_made_data_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny(dir.path());
    let model = lattice_defs::parse_str(DEFINITION, "tiny.yaml", dir.path())
        .unwrap_or_else(|d| panic!("{d}"));
    let sources = load(&model).await.unwrap_or_else(|e| panic!("{e}"));
    let cube = Arc::new(
        lattice_engine::open(&model, &sources, &BuildOptions::default())
            .await
            .expect("build"),
    );
    let mut bare_model = model.clone();
    bare_model.aggregates.mode = AggMode::Explicit;
    bare_model.aggregates.cuboids.clear();
    let bare_sources = load(&bare_model).await.expect("load");
    let bare = Arc::new(
        lattice_engine::open(&bare_model, &bare_sources, &BuildOptions::default())
            .await
            .expect("build without cuboids"),
    );

    let row = |c: &str, m: &str, v: i128| (vec![c.to_string(), m.to_string()], v * 100);
    let expected = [
        (
            "count_cost",
            // 101 over 2:1:1 = 50.5, 25.25, 25.25: the cent left goes to the largest remainder;
            // a negative pool is split like a positive one, negated.
            vec![
                row("1", "2025-01", 51),
                row("2", "2025-01", 25),
                row("3", "2025-01", 25),
                row("4", "2025-01", -7),
                row("1", "2025-02", 5),
                row("2", "2025-02", 5),
                row("5", "2025-02", 9),
            ],
        ),
        (
            "amount_cost",
            // Weights 0, 3 and -1 (counts as 0): all to customer 2, the others' cells get 0;
            // branch 20's only weight is 0: an equal split.
            vec![
                row("1", "2025-01", 0),
                row("2", "2025-01", 101),
                row("3", "2025-01", 0),
                row("4", "2025-01", -7),
                row("1", "2025-02", 5),
                row("2", "2025-02", 5),
                row("5", "2025-02", 9),
            ],
        ),
        (
            "equal_cost",
            // 101 / 3 = 33 r 2 each: the two cents left go to the smaller keys.
            vec![
                row("1", "2025-01", 34),
                row("2", "2025-01", 34),
                row("3", "2025-01", 33),
                row("4", "2025-01", -7),
                row("1", "2025-02", 5),
                row("2", "2025-02", 5),
                row("5", "2025-02", 9),
            ],
        ),
    ];
    for (measure, rows) in expected {
        let want: BTreeMap<Vec<String>, i128> = rows.into_iter().collect();
        let query =
            format!(r#"{{"measures": ["{measure}"], "rows": ["customer.id", "time.month"]}}"#);
        for (c, path) in [(&cube, "cuboid"), (&bare, "fallback")] {
            let (got, _) = answer_map(c, &query).await;
            assert_same(&format!("{measure} ({path})"), &got, &want);
        }
        // By branch: each allocated pool back whole; branch 30's January pool nowhere.
        let query =
            format!(r#"{{"measures": ["{measure}"], "rows": ["branch.city", "time.month"]}}"#);
        let (got, _) = answer_map(&cube, &query).await;
        let pools: BTreeMap<Vec<String>, i128> = [
            ("North", "2025-01", 101),
            ("South", "2025-01", -7),
            ("North", "2025-02", 10),
            ("West", "2025-02", 9),
        ]
        .into_iter()
        .map(|(b, m, v)| (vec![b.to_string(), m.to_string()], v * 100))
        .collect();
        assert_same(&format!("{measure} by branch"), &got, &pools);
    }

    let reports = &sources.allocations;
    assert_eq!(reports.len(), 3);
    for r in reports {
        assert_eq!((r.scale, r.pools, r.total), (0, 5, 163), "{r:?}");
        assert_eq!(r.unallocated.len(), 1, "{r:?}");
        let u = &r.unallocated[0];
        assert_eq!(
            (u.member.as_deref(), u.period.as_deref(), u.amount),
            (Some("30"), Some("2025-01-01"), 50)
        );
        assert_eq!(r.unallocated_total(), 50);
        assert_eq!(r.rows, 7);
    }
    let equal_splits: Vec<usize> = reports.iter().map(|r| r.equal_split).collect();
    assert_eq!(equal_splits, vec![0, 1, 0]);
}
