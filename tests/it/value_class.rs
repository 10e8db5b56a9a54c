//! Quantile buckets (`customer.value_class`: fee income per customer and year, cut at the 80th
//! and 95th percentile into C/B/A) against a SQL twin that ranks with `CUME_DIST()` over the
//! raw transactions: the class of every customer in every year, and the customers and fees
//! per class and year, from the cuboids and from the fallback.

use std::collections::BTreeMap;
use std::sync::Arc;

use lattice_engine::access::Access;
use lattice_engine::query::{Answer, Dataset, Query};

use crate::query_suite::{Cell, compare_rows, fixture, run_sql};

/// Per (year, customer key): the fee income and its class, written from the definition of a
/// quantile bucket: ranked within the year among the known customers with a value; no value
/// (or no year, or a key missing from the customers table) is `unknown`.
const CLASSES: &str = "
    f AS (SELECT date_part('year', t.txn_date) AS y, c.customer_id AS k, t.customer_id AS raw,
                 t.fee_income AS fee
          FROM transactions t LEFT JOIN customers c ON c.customer_id = t.customer_id),
    m AS (SELECT y, k, SUM(fee) AS v FROM f GROUP BY y, k),
    r AS (SELECT y, k, CUME_DIST() OVER (PARTITION BY y ORDER BY v) AS cd
          FROM m WHERE k IS NOT NULL AND v IS NOT NULL AND y IS NOT NULL),
    classed AS (
        SELECT COALESCE(CAST(CAST(f.y AS BIGINT) AS VARCHAR), 'unknown') AS year,
               COALESCE(CAST(f.k AS VARCHAR), 'unknown') AS id,
               CASE WHEN r.cd IS NULL THEN 'unknown' WHEN r.cd > 0.95 THEN 'A'
                    WHEN r.cd > 0.8 THEN 'B' ELSE 'C' END AS class,
               f.raw, f.fee
        FROM f LEFT JOIN r ON r.y = f.y AND r.k = f.k)";

async fn ask(cube: &Arc<Dataset>, json: &str) -> Answer {
    let q = Query::from_json(json).expect("query");
    cube.session(Access::everything())
        .query(&q)
        .await
        .unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// The answer's rows as cells (measure columns typed as the answer declares), sorted.
fn sorted_rows(a: &Answer) -> Vec<Vec<Cell>> {
    let types: Vec<Option<&str>> = a.columns.iter().map(|c| c.ty).collect();
    let mut rows: Vec<Vec<Cell>> = a
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&types)
                .map(|(v, t)| Cell::from_json(v, *t))
                .collect()
        })
        .collect();
    sort(&mut rows);
    rows
}

fn sort(rows: &mut [Vec<Cell>]) {
    rows.sort_by_cached_key(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>());
}

#[tokio::test]
async fn each_customers_class_per_year_equals_cume_dist_in_sql() {
    let fx = fixture().await;
    let mut want = run_sql(
        &fx.sql,
        &format!("WITH {CLASSES} SELECT year, id, class, SUM(fee) AS fee_income FROM classed GROUP BY year, id, class"),
    )
    .await
    .expect("SQL");
    sort(&mut want.rows);
    let q = r#"{"rows": ["time.year", "customer.id", "customer.value_class"], "measures": ["fee_income"]}"#;
    for (what, cube) in [("cube", &fx.cube), ("fallback", &fx.bare)] {
        let got = sorted_rows(&ask(cube, q).await);
        compare_rows(
            &format!("class per customer and year ({what})"),
            &got,
            &want.rows,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test]
async fn customers_and_fees_per_class_and_year_equal_sql_and_the_top_fifth_is_b_or_a() {
    let fx = fixture().await;
    let mut want = run_sql(
        &fx.sql,
        &format!(
            "WITH {CLASSES} SELECT year, class, COUNT(DISTINCT raw) AS active_customers, \
             SUM(fee) AS fee_income FROM classed GROUP BY year, class"
        ),
    )
    .await
    .expect("SQL");
    sort(&mut want.rows);
    let q = r#"{"rows": ["time.year", "customer.value_class"], "measures": ["active_customers", "fee_income"]}"#;
    for (what, cube) in [("cube", &fx.cube), ("fallback", &fx.bare)] {
        let got = sorted_rows(&ask(cube, q).await);
        compare_rows(&format!("per class and year ({what})"), &got, &want.rows)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // By construction about a fifth of each year's ranked customers are B or A, a twentieth A.
    let mut per_year: BTreeMap<String, BTreeMap<String, i128>> = BTreeMap::new();
    for r in &want.rows {
        if let (Cell::Text(y), Cell::Text(c), Cell::Int(n)) = (&r[0], &r[1], &r[2]) {
            per_year.entry(y.clone()).or_default().insert(c.clone(), *n);
        }
    }
    for (year, classes) in &per_year {
        let n = |c: &str| classes.get(c).copied().unwrap_or(0) as f64;
        let ranked = n("A") + n("B") + n("C");
        if ranked < 100.0 {
            continue;
        }
        let (top, a) = ((n("A") + n("B")) / ranked, n("A") / ranked);
        eprintln!("value classes {year}: {classes:?}; B or A {top:.3}, A {a:.3}");
        assert!((0.17..=0.21).contains(&top), "{year}: B or A {top}");
        assert!((0.03..=0.06).contains(&a), "{year}: A {a}");
    }
}

/// Quantile buckets over other periods and metrics: one rank over the whole window (`per:
/// [customer]`), per quarter, and over a count and a closing balance; every cuboid of each
/// cube (on transactions and on balances, which carry the class of their period) equals the
/// SQL reference, which ranks with `CUME_DIST()`.
#[tokio::test]
async fn quantile_classes_over_other_periods_and_metrics_equal_the_sql_reference() {
    let variants = [
        (
            "per: [customer, time.year]",
            "per: [customer]",
            "quantiles: [0.8, 0.95]",
        ),
        (
            "per: [customer, time.year]",
            "per: [customer, time.quarter]",
            "quantiles: [0.5, 0.9]",
        ),
        (
            "metric: fee_income",
            "metric: txn_count",
            "quantiles: [0.25, 0.5, 0.75]",
        ),
        (
            "metric: fee_income",
            "metric: deposit_balance",
            "quantiles: [0.1, 0.5]",
        ),
    ];
    for (from, to, quantiles) in variants {
        let labels = match quantiles.matches(',').count() {
            1 => "[low, mid, top]",
            2 => "[q1, q2, q3, q4]",
            _ => unreachable!(),
        };
        let yaml = crate::util::with_aggregates(
            lattice_defs::BANK_CRM_YAML,
            "aggregates:\n  mode: explicit\n  cuboids:\n    - [customer.value_class]\n    - [customer.value_class, time.month]\n    - [customer.value_class, customer.segment, time.year]\n",
        )
        .replacen(
                "          metric: fee_income\n          per: [customer, time.year]\n          quantiles: [0.8, 0.95]\n          labels: [C, B, A]",
                &format!(
                    "          metric: fee_income\n          per: [customer, time.year]\n          {quantiles}\n          labels: {labels}"
                ),
                1,
            );
        // The variant's own change, inside the value_class block only.
        let at = yaml.find("value_class:").expect("value_class");
        let (head, tail) = yaml.split_at(at);
        let yaml = format!("{head}{}", tail.replacen(from, to, 1));
        assert!(
            yaml.contains("mode: explicit") && yaml.contains(to),
            "the shipped YAML changed"
        );
        let model = lattice_defs::parse_str(&yaml, "bank_crm.yaml", crate::util::parquet_dir())
            .unwrap_or_else(|d| panic!("{d}"));
        let sources = lattice_engine::source::load::load(&model)
            .await
            .expect("load");
        let cube = lattice_engine::build::build_cube(
            &model,
            &sources,
            &lattice_engine::build::BuildOptions::default(),
        )
        .await
        .expect("build");
        assert!(cube.cuboids().len() >= 3, "{to}: cuboids built");
        crate::reference::check_cube(&cube, &sources.ctx)
            .await
            .unwrap_or_else(|e| panic!("{to} {quantiles}: {e}"));
    }
}
