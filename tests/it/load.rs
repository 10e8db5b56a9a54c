//! Loading sources through a definition: row counts and sums through DataFusion equal values
//! computed here independently (the Parquet reader directly, the CSV text by hand); schema and
//! hierarchy problems come back as located diagnostics.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use arrow::array::{Array, Decimal128Array, Int64Array};
use datafusion::prelude::SessionContext;
use lattice_engine::EngineError;
use lattice_engine::source::load::load;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::util::{bank_crm, csv_dir, parquet_dir};

/// (rows, sum of amount in cents, sum of fee_income in cents) per customer segment... kept
/// simple: totals over the whole table, and per customer for a few customers.
#[derive(Debug, PartialEq, Default, Clone, Copy)]
struct Totals {
    rows: i64,
    amount_cents: i128,
    fee_cents: i128,
}

/// Reads transactions.parquet with the Parquet reader, no DataFusion.
fn parquet_totals(dir: &Path) -> (Totals, BTreeMap<i64, i128>) {
    let file = fs::File::open(dir.join("transactions.parquet")).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut t = Totals::default();
    let mut per_customer = BTreeMap::new();
    for batch in reader {
        let batch = batch.expect("batch");
        let col = |name: &str| {
            batch
                .column(batch.schema().index_of(name).expect("column"))
                .clone()
        };
        let cust = col("customer_id");
        let cust = cust
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64 customer_id");
        let amount = col("amount");
        let amount = amount
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .expect("decimal amount");
        let fee = col("fee_income");
        let fee = fee
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .expect("decimal fee");
        assert_eq!(amount.scale(), 2);
        for i in 0..batch.num_rows() {
            t.rows += 1;
            t.amount_cents += amount.value(i);
            t.fee_cents += fee.value(i);
            *per_customer.entry(cust.value(i)).or_insert(0) += amount.value(i);
        }
    }
    (t, per_customer)
}

/// Parses "123.45" / "-0.50" / "7" into cents without floating point.
fn cents(text: &str) -> i128 {
    let (neg, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let frac = format!("{frac:0<2}");
    assert!(frac.len() == 2, "more than 2 decimals in {text}");
    let v: i128 =
        int.parse::<i128>().expect("int part") * 100 + frac.parse::<i128>().expect("frac");
    if neg { -v } else { v }
}

/// The first cell of a one-decimal-column result, with its scale; it must not be NULL.
async fn first_decimal(ctx: &SessionContext, sql: &str) -> (i128, i8) {
    let batches = ctx
        .sql(sql)
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    let a = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .expect("decimal");
    assert!(!a.is_null(0), "NULL from {sql}");
    (a.value(0), a.scale())
}

/// Reads transactions.csv as text, no CSV library.
fn csv_totals(dir: &Path) -> Totals {
    let text = fs::read_to_string(dir.join("transactions.csv")).expect("read csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .expect("column in header")
    };
    let (amount, fee) = (at("amount"), at("fee_income"));
    let mut t = Totals::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        t.rows += 1;
        t.amount_cents += cents(fields[amount]);
        t.fee_cents += cents(fields[fee]);
    }
    t
}

/// The same totals through the definition's DataFusion registration. Money comes back as a
/// decimal; it is compared in cents, exactly.
async fn engine_totals(ctx: &SessionContext) -> Totals {
    let batches = ctx
        .sql("SELECT COUNT(*) AS n, SUM(amount) AS a, SUM(fee_income) AS f FROM transactions")
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    let b = &batches[0];
    let n = b
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("count")
        .value(0);
    let dec = |i: usize| {
        let a = b
            .column(i)
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .expect("decimal sum");
        let scale = a.scale() as u32;
        assert!(scale >= 2, "sum kept scale {scale}");
        let v = a.value(0);
        assert_eq!(
            v % 10i128.pow(scale - 2),
            0,
            "sub-cent digits in a sum of cents"
        );
        v / 10i128.pow(scale - 2)
    };
    Totals {
        rows: n,
        amount_cents: dec(1),
        fee_cents: dec(2),
    }
}

#[tokio::test]
async fn parquet_through_the_definition_matches_the_files() {
    let dir = parquet_dir();
    let model = bank_crm(dir, false).expect("definition");
    let sources = load(&model).await.expect("load");
    let (expected, per_customer) = parquet_totals(dir);
    assert!(expected.rows > 10_000, "test data too small: {expected:?}");
    assert_eq!(engine_totals(&sources.ctx).await, expected);

    // A few customers' totals, by SQL against the independent sums.
    for (&cust, &cents) in per_customer.iter().take(5) {
        let sql = format!("SELECT SUM(amount) FROM transactions WHERE customer_id = {cust}");
        let (value, scale) = first_decimal(&sources.ctx, &sql).await;
        assert_eq!(
            value / 10i128.pow(scale as u32 - 2),
            cents,
            "customer {cust}"
        );
    }

    // Every table the definition names is registered with the rows the generator wrote.
    let counts = sources
        .ctx
        .sql("SELECT COUNT(*) FROM customers")
        .await
        .expect("sql")
        .collect()
        .await
        .expect("collect");
    let n = counts[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("count")
        .value(0);
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn csv_through_the_definition_matches_the_files_and_the_parquet() {
    let dir = csv_dir();
    let model = bank_crm(dir, true).expect("definition");
    let sources = load(&model).await.expect("load csv");
    let expected = csv_totals(dir);
    assert_eq!(engine_totals(&sources.ctx).await, expected);
    // Same seed, same data: CSV and Parquet agree to the cent.
    let (from_parquet, _) = parquet_totals(parquet_dir());
    assert_eq!(expected, from_parquet);
    // Money from CSV is an exact decimal, not a float.
    let amount = sources
        .catalog
        .table("transactions")
        .and_then(|t| t.columns.iter().find(|(n, _)| n == "amount"));
    assert!(
        matches!(amount, Some((_, lattice_defs::ColumnType::Decimal { .. }))),
        "{amount:?}"
    );
}

/// 1-based line and column of the first occurrence of `needle` in `text`.
fn line_col(text: &str, needle: &str) -> (usize, usize) {
    let at = text.find(needle).expect("needle in text");
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    (text[..at].matches('\n').count() + 1, at - line_start + 1)
}

fn definition_errors(err: EngineError) -> Vec<String> {
    match err {
        EngineError::Definition(d) => d.iter().map(ToString::to_string).collect(),
        other => panic!("expected definition errors, got {other}"),
    }
}

#[tokio::test]
async fn missing_column_and_wrong_type_name_the_file_and_the_place() {
    let dir = parquet_dir();
    let yaml = lattice_defs::BANK_CRM_YAML
        .replace("column: fee_income,", "column: fee_incme,")
        .replace("column: segment }", "column: open_date }")
        .replace(
            "bucket:\n          column: age,",
            "bucket:\n          column: name,",
        )
        .replace("          column: age\n", "          column: name\n");
    let model = lattice_defs::parse_str(&yaml, "bank_crm.yaml", dir).expect("definition parses");
    let errors = definition_errors(load(&model).await.expect_err("must fail"));
    let file = dir.join("transactions.parquet").display().to_string();
    let (fee_line, fee_col) = line_col(&yaml, "fee_incme");
    assert!(
        errors.contains(&format!(
            "bank_crm.yaml:{fee_line}:{fee_col}: measures.fee_income.column: column 'fee_incme' not found in table 'transactions' ({file}) (did you mean 'fee_income'?)"
        )),
        "{errors:#?}"
    );
    let (age_line, age_col) = line_col(&yaml, "name\n");
    assert!(
        errors.contains(&format!(
            "bank_crm.yaml:{age_line}:{age_col}: dimensions.customer.levels.age_band.bucket.column: column 'customers.name' has type text, but a number (integer, decimal or float) is needed here"
        )),
        "{errors:#?}"
    );
    assert_eq!(errors.len(), 2, "{errors:#?}");
}

#[tokio::test]
async fn missing_source_file_is_reported_at_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = bank_crm(dir.path(), false).expect("definition");
    let errors = definition_errors(load(&model).await.expect_err("no files"));
    assert_eq!(errors.len(), 8, "{errors:#?}");
    assert!(errors[0].starts_with("bank_crm.yaml:13:25: sources.customers.path: source 'customers' cannot be read: no file at"), "{}", errors[0]);
}

const SHOP: &str = r#"version: 1
cube: shop
sources:
  sales: { path: sales.csv }
  stores: { path: stores.csv }
facts:
  sales: { time: day, dimensions: [store] }
dimensions:
  time: { type: time, hierarchy: [year, month] }
  store:
    table: stores
    key: store_id
    hierarchy: [region, city]
measures:
  revenue: { fact: sales, agg: sum, column: amount }
"#;

fn shop_data(stores: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("stores.csv"), stores).expect("write");
    fs::write(
        dir.path().join("sales.csv"),
        "day,store_id,amount\n2025-01-03,1,10.50\n2025-02-04,2,-3.25\n2025-02-05,3,7.00\n",
    )
    .expect("write");
    dir
}

#[tokio::test]
async fn a_city_under_two_regions_is_not_a_hierarchy() {
    let dir = shop_data(
        "store_id,region,city\n1,North,Springfield\n2,South,Springfield\n3,South,Shelbyville\n",
    );
    let model = lattice_defs::parse_str(SHOP, "shop.yaml", dir.path()).expect("definition");
    let errors = definition_errors(load(&model).await.expect_err("not functional"));
    assert_eq!(
        errors,
        vec![
            "shop.yaml:13:25: dimensions.store.hierarchy[1]: level 'region' is not functionally above 'city' in dimension 'store': \
             city 'Springfield' lies under 2 different region members ('North', 'South')"
        ]
    );
}

#[tokio::test]
async fn duplicate_dimension_keys_are_reported() {
    let dir = shop_data(
        "store_id,region,city\n1,North,Springfield\n1,North,Ogdenville\n3,South,Shelbyville\n",
    );
    let model = lattice_defs::parse_str(SHOP, "shop.yaml", dir.path()).expect("definition");
    let errors = definition_errors(load(&model).await.expect_err("duplicate key"));
    assert_eq!(
        errors,
        vec![
            "shop.yaml:12:10: dimensions.store.key: key 'store_id' is not unique in table 'stores': 1 appears 2 times"
        ]
    );
}

#[tokio::test]
async fn a_functional_hierarchy_loads() {
    let dir = shop_data(
        "store_id,region,city\n1,North,Springfield\n2,North,Springfield\n3,South,Shelbyville\n",
    );
    let model = lattice_defs::parse_str(SHOP, "shop.yaml", dir.path()).expect("definition");
    let sources = load(&model).await.expect("loads");
    // Not NULL (first_decimal checks), and exact at the CSV scale.
    let (value, scale) = first_decimal(&sources.ctx, "SELECT SUM(amount) FROM sales").await;
    assert_eq!(value, 14_250_000, "10.50 - 3.25 + 7.00 at scale {scale}");
}
