//! The cube build against its slow twin: every cuboid of the default cube on the generated
//! data set equals the SQL reference ([`crate::reference`]) — the cuboids its own selection
//! chooses, and cuboids this file chooses (the large and the per-month ones) — and so do the
//! cuboids of small hand-written cubes made for one edge case each (an empty fact table, an
//! empty bucket, NULLs, refunds, a one-member dimension, a key missing from its dimension
//! table, a level with 120,000 members, year and month in one cuboid, two measures alike).
//!
//! `LATTICE_SHOW_CUBOIDS=1` prints the cuboids the default cube's selection built.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Instant;

use lattice_defs::Model;
use lattice_engine::build::{BuildOptions, build_cube, build_cube_with_report};
use lattice_engine::source::load::{Sources, load};
use lattice_engine::store::{Cube, Cuboid};

use crate::random_cube::{ColType, Table};
use crate::reference::{
    SHOP_FILES, SHOP_SALES_BY_KIND_CITY_AGE, SHOP_YAML, check_cube, check_cuboid, cube_rows,
    describe_cuboid, load_yaml, write_files,
};
use crate::util::{bank_crm, parquet_dir};

async fn build(model: &Model, sources: &Sources) -> Cube {
    build_cube(model, sources, &BuildOptions::default())
        .await
        .unwrap_or_else(|e| panic!("build of cube '{}': {e}", model.name))
}

/// What was built, one cuboid a line.
fn built_list(cube: &Cube) -> String {
    let mut out = String::new();
    for c in cube.cuboids() {
        writeln!(
            out,
            "  {} ({} cells)",
            describe_cuboid(cube.model(), c.fact(), c.levels()),
            c.len()
        )
        .unwrap();
    }
    out
}

/// The built cuboid of `fact` grouped by exactly `levels` (names), or a panic listing what
/// was built.
fn cuboid<'c>(cube: &'c Cube, fact: &str, levels: &[&str]) -> &'c Cuboid {
    let model = cube.model();
    let f = model.fact(fact).expect("fact");
    let refs: Vec<_> = levels
        .iter()
        .map(|l| model.level(l).unwrap_or_else(|| panic!("level {l}")))
        .collect();
    cube.cuboid(f, &refs)
        .unwrap_or_else(|| panic!("no cuboid {fact} {levels:?}; built:\n{}", built_list(cube)))
}

/// The rows of a cuboid with its columns in the order of `levels` (the cuboid may keep its
/// levels in another order), sorted.
fn rows_by(cube: &Cube, fact: &str, levels: &[&str]) -> Vec<Vec<String>> {
    let c = cuboid(cube, fact, levels);
    let model = cube.model();
    let order: Vec<usize> = levels
        .iter()
        .map(|l| {
            let r = model.level(l).expect("level");
            c.levels()
                .iter()
                .position(|x| *x == r)
                .expect("level in cuboid")
        })
        .collect();
    let mut rows: Vec<Vec<String>> = cube_rows(cube, c)
        .into_iter()
        .map(|r| {
            let mut out: Vec<String> = order.iter().map(|&i| r[i].clone()).collect();
            out.extend_from_slice(&r[levels.len()..]);
            out
        })
        .collect();
    rows.sort();
    rows
}

fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
    let mut v: Vec<Vec<String>> = expected
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
    v.sort();
    v
}

/// Builds a small cube over CSV files and checks every cuboid against SQL.
async fn build_and_check(yaml: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Cube) {
    let dir = write_files(files);
    let (model, sources) = load_yaml(yaml, dir.path()).await;
    let cube = build(&model, &sources).await;
    if let Err(e) = check_cube(&cube, &sources.ctx).await {
        panic!("{e}\n--- definition\n{yaml}");
    }
    (dir, cube)
}

#[tokio::test]
async fn every_cuboid_equals_sql() {
    let started = Instant::now();
    let model = bank_crm(parquet_dir(), false).expect("definition");
    let sources = load(&model).await.expect("load");
    let cube = build(&model, &sources).await;
    let built = started.elapsed();
    let list = built_list(&cube);
    if std::env::var_os("LATTICE_SHOW_CUBOIDS").is_some() {
        eprintln!("built:\n{list}");
    }

    // Each fact is served, and so are the bands and time (a real requirement of the default
    // cube, whatever the selection).
    for (f, fact) in model.facts.iter().enumerate() {
        assert!(
            cube.cuboids().iter().any(|c| c.fact() == f),
            "no cuboid of fact '{}'; built:\n{list}",
            fact.name
        );
    }
    for level in ["customer.deposit_band", "time.quarter"] {
        let l = model.level(level).expect("level");
        assert!(
            cube.cuboids().iter().any(|c| c.levels().contains(&l)),
            "no cuboid has {level}; built:\n{list}"
        );
    }

    let (cuboids, cells) = check_cube(&cube, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "bank_crm: built in {built:.2?}, {cuboids} cuboids and {cells} cells equal SQL in {:.2?}",
        started.elapsed() - built
    );
}

/// The default cube with cuboids the test chooses: the large ones (customer by month), the
/// per-month bands with the month, whole hierarchies, and levels reached through lookups.
#[tokio::test]
async fn bank_cuboids_chosen_by_the_test_equal_sql() {
    let cuboids = [
        "[customer.id, time.month]",
        "[customer.deposit_band, time.month]",
        "[customer.txn_count_band, customer.products_band, time.quarter]",
        "[customer.loan_band, customer.credit_line_band, customer.txn_amount_band]",
        "[customer.age_band, customer.income_band, customer.type, customer.segment, customer.education]",
        "[region.province, region.city, region.branch]",
        "[manager.branch, manager.manager, customer.segment]",
        "[channel.channel, product.category, product.product, time.year]",
        "[time.year, time.quarter, time.month]",
        "[customer.value_class, time.month]",
        "[customer.value_class, customer.segment]",
    ];
    let yaml = crate::util::with_aggregates(
        lattice_defs::BANK_CRM_YAML,
        &format!(
            "aggregates:\n  mode: explicit\n  cuboids:\n{}",
            cuboids
                .iter()
                .map(|c| format!("    - {c}\n"))
                .collect::<String>()
        ),
    );
    assert!(
        yaml.contains("mode: explicit"),
        "the shipped aggregates block changed"
    );
    let model = lattice_defs::parse_str(&yaml, "bank_crm.yaml", parquet_dir()).expect("definition");
    let sources = load(&model).await.expect("load");
    let cube = build(&model, &sources).await;
    let list = built_list(&cube);
    // Every listed cuboid, for every fact that reaches its levels.
    for (f, fact) in model.facts.iter().enumerate() {
        for c in &model.aggregates.cuboids {
            if c.iter().all(|l| model.fact_has_dimension(f, l.dim)) {
                assert!(
                    cube.cuboid(f, c).is_some(),
                    "{} was not built; built:\n{list}",
                    describe_cuboid(&model, f, c),
                );
            } else {
                assert!(cube.cuboid(f, c).is_none(), "{} was built", fact.name);
            }
        }
    }
    check_cube(&cube, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The shop of [`crate::reference`]: NULLs in a bucketed and in a plain level column, a fact
/// key missing from its dimension, a dimension reached `via` another, metric bands over the
/// same and over another fact, semi-additive balances.
#[tokio::test]
async fn shop_cuboids_equal_sql_and_hand_numbers() {
    let yaml = SHOP_YAML.replace(
        "  cuboids: [[customer.kind]]",
        "  cuboids:\n\
         \x20   - [customer.kind, city.city, customer.age_band]\n\
         \x20   - [time.month, customer.sales_band]\n\
         \x20   - [time.quarter, customer.sales_band, customer.balance_band]\n\
         \x20   - [customer.id]\n\
         \x20   - [time.month]\n\
         \x20   - []",
    );
    let (_dir, cube) = build_and_check(&yaml, SHOP_FILES).await;
    // Sales: amount, sales_count, priced, low, buyers (CSV fractions at scale 6).
    assert_eq!(
        rows_by(
            &cube,
            "sales",
            &["customer.kind", "city.city", "customer.age_band"]
        ),
        rows(SHOP_SALES_BY_KIND_CITY_AGE)
    );
    assert_eq!(
        rows_by(&cube, "sales", &[]),
        rows(&[&["115.250000", "5", "4", "-2.250000", "4"]])
    );
    // Balances: balance (last), accounts (last), top.
    assert_eq!(
        rows_by(&cube, "balances", &["time.month"]),
        rows(&[
            &["2025-01", "550.000000", "2", "500.000000"],
            &["2025-02", "150.000000", "1", "150.000000"],
            &["2025-03", "NULL", "1", "NULL"],
        ])
    );
    assert_eq!(
        rows_by(&cube, "balances", &["customer.id"]),
        rows(&[
            &["1", "NULL", "0", "150.000000"],
            &["2", "NULL", "1", "500.000000"],
        ])
    );
}

const SALES_YAML: &str = r#"
version: 1
cube: sales
sources:
  customers: { path: customers.csv }
  products:  { path: products.csv }
  sales:     { path: sales.csv }
facts:
  sales: { time: day, dimensions: [customer, product] }
dimensions:
  time: { type: time, hierarchy: [year, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      segment:  { column: segment }
      age_band: { bucket: { column: age, edges: [30, 50, 60], labels: ["<30", "30-49", "50-59", "60+"] } }
  product:
    table: products
    key: product_id
    hierarchy: [category, name]
measures:
  amount: { agg: sum, column: amount }
  n:      { agg: count }
  lowest: { agg: min, column: amount }
aggregates:
  mode: explicit
  cuboids:
    - [customer.segment]
    - [customer.age_band]
    - [customer.age_band, time.month]
    - [product.category, product.name]
    - [product.name]
    - []
"#;

#[tokio::test]
async fn a_bucket_no_value_falls_in_has_no_cells() {
    let (_dir, cube) = build_and_check(
        SALES_YAML,
        &[
            (
                "customers.csv",
                "customer_id,segment,age\n1,mass,20\n2,mass,22\n3,private,70\n",
            ),
            ("products.csv", "product_id,category,name\n1,card,gold\n"),
            (
                "sales.csv",
                "day,customer_id,product_id,amount\n\
                 2025-01-02,1,1,1.00\n2025-01-03,2,1,2.00\n2025-02-01,3,1,4.00\n",
            ),
        ],
    )
    .await;
    assert_eq!(
        rows_by(&cube, "sales", &["customer.age_band"]),
        rows(&[
            &["<30", "3.000000", "2", "1.000000"],
            &["60+", "4.000000", "1", "4.000000"],
        ])
    );
}

#[tokio::test]
async fn nulls_in_a_bucketed_and_a_plain_level_column_are_unknown() {
    let (_dir, cube) = build_and_check(
        SALES_YAML,
        &[
            (
                "customers.csv",
                "customer_id,segment,age\n1,mass,20\n2,,\n3,private,\n",
            ),
            ("products.csv", "product_id,category,name\n1,card,gold\n"),
            (
                "sales.csv",
                "day,customer_id,product_id,amount\n\
                 2025-01-02,1,1,1.00\n2025-01-03,2,1,2.00\n2025-02-01,3,1,4.00\n",
            ),
        ],
    )
    .await;
    assert_eq!(
        rows_by(&cube, "sales", &["customer.segment"]),
        rows(&[
            &["mass", "1.000000", "1", "1.000000"],
            &["private", "4.000000", "1", "4.000000"],
            &["unknown", "2.000000", "1", "2.000000"],
        ])
    );
    assert_eq!(
        rows_by(&cube, "sales", &["customer.age_band"]),
        rows(&[
            &["<30", "1.000000", "1", "1.000000"],
            &["unknown", "6.000000", "2", "2.000000"],
        ])
    );
}

#[tokio::test]
async fn refunds_sum_exactly() {
    // 0.10 + 0.20 - 0.30 is not 0 in binary floating point; huge amounts lose cents in f64.
    let (_dir, cube) = build_and_check(
        SALES_YAML,
        &[
            (
                "customers.csv",
                "customer_id,segment,age\n1,mass,20\n2,private,40\n",
            ),
            ("products.csv", "product_id,category,name\n1,card,gold\n"),
            (
                "sales.csv",
                "day,customer_id,product_id,amount\n\
                 2025-01-02,1,1,0.10\n2025-01-03,1,1,0.20\n2025-01-04,1,1,-0.30\n\
                 2025-02-01,2,1,9999999999999.99\n2025-02-02,2,1,-9999999999999.98\n\
                 2025-02-03,2,1,-0.05\n",
            ),
        ],
    )
    .await;
    assert_eq!(
        rows_by(&cube, "sales", &["customer.segment"]),
        rows(&[
            &["mass", "0.000000", "3", "-0.300000"],
            &["private", "-0.040000", "3", "-9999999999999.980000"],
        ])
    );
    assert_eq!(
        rows_by(&cube, "sales", &[]),
        rows(&[&["-0.040000", "6", "-9999999999999.980000"]])
    );
}

#[tokio::test]
async fn a_dimension_with_one_member() {
    let (_dir, cube) = build_and_check(
        SALES_YAML,
        &[
            ("customers.csv", "customer_id,segment,age\n7,mass,33\n"),
            ("products.csv", "product_id,category,name\n1,card,gold\n"),
            (
                "sales.csv",
                "day,customer_id,product_id,amount\n\
                 2024-12-31,7,1,1.50\n2025-01-01,7,1,2.50\n",
            ),
        ],
    )
    .await;
    assert_eq!(
        rows_by(&cube, "sales", &["product.category", "product.name"]),
        rows(&[&["card", "gold", "4.000000", "2", "1.500000"]])
    );
    assert_eq!(
        rows_by(&cube, "sales", &["customer.age_band", "time.month"]),
        rows(&[
            &["30-49", "2024-12", "1.500000", "1", "1.500000"],
            &["30-49", "2025-01", "2.500000", "1", "2.500000"],
        ])
    );
}

#[tokio::test]
async fn a_fact_key_missing_from_its_dimension_is_unknown() {
    let (_dir, cube) = build_and_check(
        SALES_YAML,
        &[
            (
                "customers.csv",
                "customer_id,segment,age\n1,mass,20\n2,private,40\n",
            ),
            (
                "products.csv",
                "product_id,category,name\n1,card,gold\n2,loan,home\n",
            ),
            (
                "sales.csv",
                "day,customer_id,product_id,amount\n\
                 2025-01-02,1,1,1.00\n2025-01-03,2,2,2.00\n2025-01-04,99,99,4.00\n\
                 2025-01-05,2,,8.00\n",
            ),
        ],
    )
    .await;
    assert_eq!(
        rows_by(&cube, "sales", &["product.category", "product.name"]),
        rows(&[
            &["card", "gold", "1.000000", "1", "1.000000"],
            &["loan", "home", "2.000000", "1", "2.000000"],
            &["unknown", "unknown", "12.000000", "2", "4.000000"],
        ])
    );
    assert_eq!(
        rows_by(&cube, "sales", &["customer.segment"]),
        rows(&[
            &["mass", "1.000000", "1", "1.000000"],
            &["private", "10.000000", "2", "2.000000"],
            &["unknown", "4.000000", "1", "4.000000"],
        ])
    );
}

#[tokio::test]
async fn an_empty_fact_table_builds_an_empty_cube() {
    // Parquet, not CSV: a header-only CSV has no values to infer its column types from.
    let dir = write_files(&[
        (
            "customers.csv",
            "customer_id,segment,age\n1,mass,20\n2,private,40\n",
        ),
        ("products.csv", "product_id,category,name\n1,card,gold\n"),
    ]);
    Table::new("sales")
        .column("day", ColType::Date, vec![])
        .column("customer_id", ColType::Int, vec![])
        .column("product_id", ColType::Int, vec![])
        .column("amount", ColType::Dec2, vec![])
        .write_parquet(dir.path());
    let yaml = SALES_YAML.replace("sales.csv", "sales.parquet");
    let (model, sources) = load_yaml(&yaml, dir.path()).await;
    let cube = build(&model, &sources).await;
    assert!(!cube.cuboids().is_empty(), "no cuboids at all");
    for c in cube.cuboids() {
        assert!(
            c.is_empty(),
            "cuboid {} has cells; built:\n{}",
            describe_cuboid(&model, c.fact(), c.levels()),
            built_list(&cube)
        );
    }
    check_cube(&cube, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rows_by(&cube, "sales", &[]).is_empty());
}

#[tokio::test]
async fn a_level_with_120k_members() {
    const N: usize = 120_000;
    let mut customers = String::from("customer_id,segment\n");
    let mut sales = String::from("customer_id,amount\n");
    for i in 0..N {
        writeln!(customers, "{i},s{}", i % 7).unwrap();
        writeln!(sales, "{i},{}.{:02}", i % 1000, i % 100).unwrap();
    }
    let yaml = r#"
version: 1
cube: wide
sources:
  customers: { path: customers.csv }
  sales:     { path: sales.csv }
facts:
  sales: { dimensions: [customer] }
dimensions:
  customer:
    table: customers
    key: customer_id
    levels:
      id:      { column: customer_id }
      segment: { column: segment }
measures:
  amount: { agg: sum, column: amount }
  n:      { agg: count }
aggregates:
  mode: explicit
  cuboids: [[customer.id], [customer.segment]]
"#;
    let dir = write_files(&[("customers.csv", &customers), ("sales.csv", &sales)]);
    let (model, sources) = load_yaml(yaml, dir.path()).await;
    let started = Instant::now();
    let cube = build(&model, &sources).await;
    let built = started.elapsed();
    let by_id = cuboid(&cube, "sales", &["customer.id"]);
    assert_eq!(by_id.len(), N);
    let names: BTreeSet<&str> = (0..by_id.len())
        .map(|cell| cube.member_name(by_id.levels()[0], by_id.cell_codes(cell)[0]))
        .collect();
    assert_eq!(names.len(), N, "every customer is one cell");
    check_cuboid(&cube, &sources.ctx, by_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    check_cube(&cube, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "120k members: built in {built:.2?}, checked in {:.2?}",
        started.elapsed() - built
    );
}

const BALANCES_YAML: &str = r#"
version: 1
cube: balances
sources:
  customers: { path: customers.csv }
  balances:  { path: balances.csv }
facts:
  balances: { time: month, dimensions: [customer] }
dimensions:
  time: { type: time, hierarchy: [year, quarter, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      segment: { column: segment }
      balance_band:
        bucket: { metric: balance, per: [customer, time.month], edges: [100], labels: ["small", "large"] }
measures:
  balance:  { agg: sum, column: balance, over_time: last }
  accounts: { agg: count, over_time: last }
  rows:     { agg: count, column: customer_id }
aggregates:
  mode: explicit
  cuboids: CUBOIDS
"#;

const BALANCES_FILES: &[(&str, &str)] = &[
    ("customers.csv", "customer_id,segment\n1,mass\n2,private\n"),
    (
        "balances.csv",
        "month,customer_id,balance\n\
         2025-01-01,1,10.00\n2025-01-01,2,200.00\n\
         2025-02-01,1,20.00\n2025-03-01,1,30.00\n2025-03-01,2,300.00\n\
         2025-04-01,9,5.00\n",
    ),
];

/// A cell of a cuboid with both year and month is one month: its semi-additive values are
/// that month's, not those of the year's closing month.
#[tokio::test]
async fn semi_additive_closes_on_the_cells_finest_time_level() {
    let yaml = BALANCES_YAML.replace(
        "CUBOIDS",
        "[[time.year, time.month], [time.year, time.quarter, time.month, customer.segment]]",
    );
    let (_dir, cube) = build_and_check(&yaml, BALANCES_FILES).await;
    // balance (last), accounts (last), rows
    assert_eq!(
        rows_by(&cube, "balances", &["time.year", "time.month"]),
        rows(&[
            &["2025", "2025-01", "210.000000", "2", "2"],
            &["2025", "2025-02", "20.000000", "1", "1"],
            &["2025", "2025-03", "330.000000", "2", "2"],
            &["2025", "2025-04", "5.000000", "1", "1"],
        ])
    );
}

/// A fact whose key is not in the dimension table is `unknown` in every level of that
/// dimension, metric bands included (its metric is not that of some other entity).
#[tokio::test]
async fn a_key_missing_from_its_dimension_has_unknown_metric_bands() {
    let yaml = BALANCES_YAML.replace("CUBOIDS", "[[time.quarter, customer.balance_band]]");
    let (_dir, cube) = build_and_check(&yaml, BALANCES_FILES).await;
    assert_eq!(
        rows_by(
            &cube,
            "balances",
            &["time.quarter", "customer.balance_band"]
        ),
        rows(&[
            // Q1 closes in March: customer 1 (30.00, small) and 2 (300.00, large).
            &["2025-Q1", "small", "30.000000", "1", "3"],
            &["2025-Q1", "large", "300.000000", "1", "2"],
            // Customer 9 is not in customers.csv.
            &["2025-Q2", "unknown", "5.000000", "1", "1"],
        ])
    );
}

/// Two measures may aggregate the same column the same way (a renamed copy, a second format).
#[tokio::test]
async fn two_measures_with_the_same_definition() {
    let yaml = BALANCES_YAML.replace("CUBOIDS", "[[customer.segment]]").replace(
        "  rows:     { agg: count, column: customer_id }",
        "  rows:     { agg: count, column: customer_id }\n  rows_too: { agg: count }\n  accounts_too: { agg: count, over_time: last }",
    );
    let (_dir, cube) = build_and_check(&yaml, BALANCES_FILES).await;
    // balance, accounts, rows, rows_too, accounts_too; the grand total closes in April.
    assert_eq!(
        rows_by(&cube, "balances", &["customer.segment"]),
        rows(&[
            &["mass", "NULL", "0", "3", "3", "0"],
            &["private", "NULL", "0", "2", "2", "0"],
            &["unknown", "5.000000", "1", "1", "1", "1"],
        ])
    );
}

/// A fact read by many ranges of periods (one base query each) builds the same cube as
/// one read whole: every cuboid still equals its SQL, and the ranges' rows add up.
#[tokio::test]
async fn a_fact_read_by_ranges_of_periods_equals_sql() {
    let model = bank_crm(parquet_dir(), false).expect("definition");
    let sources = load(&model).await.expect("load");
    let whole = build(&model, &sources).await;
    let options = BuildOptions {
        base_range_rows: Some(300),
        ..BuildOptions::default()
    };
    let (ranged, report) = build_cube_with_report(&model, &sources, &options)
        .await
        .expect("build by ranges");
    assert_eq!(built_list(&ranged), built_list(&whole));
    // Every fact is read in several ranges. Balances, the largest, streams through the scan
    // a range at a time, and so does the allocated fact after it; transactions and balances
    // show each other's bands, so transactions are read whole first.
    let streamed: Vec<&str> = model
        .facts
        .iter()
        .zip(&report.streamed)
        .filter(|(_, s)| **s)
        .map(|(f, _)| f.name.as_str())
        .collect();
    assert_eq!(streamed, ["balances", "branch_cost"]);
    for fact in ["transactions", "balances", "branch_cost"] {
        let f = model
            .facts
            .iter()
            .position(|x| x.name == fact)
            .expect("fact");
        assert!(
            report.base_queries[f] > 1,
            "{fact} read with {} queries over {} rows",
            report.base_queries[f],
            report.fact_rows[f]
        );
    }
    check_cube(&ranged, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}
