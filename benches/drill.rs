//! Drill-through latency: the members of `customer.id` (or `product.product`) behind a cell,
//! answered by the engine's `drill_through` (roaring member sets of a covering cuboid, or the
//! fallback over the raw facts where no cuboid holds the cell) and by DataFusion running the
//! SQL twin — the page and the total count, as the engine's answer has both — over the raw
//! Parquet, in the same run.
//!
//! The requests and twins are those of the differential tests in `tests/it/query_suite.rs`.
//! Data: the synthetic bank data set at scale 1 (`LATTICE_BENCH_SCALE` overrides), generated
//! once into `~/.cache/lattice/`. Each request is a criterion group `drill/<source>/<name>`
//! (source: the engine's `meta.source`, `member_sets` or `fallback`) with the functions
//! `lattice` and `datafusion`.

mod common;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lattice_engine::query::DrillQuery;
use lattice_engine::source::load::load;

/// A drill-through and its SQL twin: the page, then the total.
struct Drill {
    name: &'static str,
    request: &'static str,
    page_sql: String,
    total_sql: String,
}

fn drills() -> Vec<Drill> {
    let zhejiang = "FROM transactions t
         JOIN customers c ON c.customer_id = t.customer_id
         JOIN regions r ON r.region_id = c.region_id
         WHERE r.province = 'Zhejiang' AND to_char(t.txn_date, '%Y') = '2025'";
    let phone = "FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
         WHERE ch.channel IN ('phone', 'counter')";
    let cards = "FROM transactions t JOIN products p ON p.product_id = t.product_id
         WHERE p.category = 'card' AND t.txn_date >= DATE '2025-01-01' AND t.txn_date < DATE '2025-04-01'";
    let branch_mobile = "FROM transactions t
         JOIN customers c ON c.customer_id = t.customer_id
         JOIN regions r ON r.region_id = c.region_id
         JOIN channels ch ON ch.channel_id = t.channel_id
         WHERE r.branch = 'Hangzhou Central' AND ch.channel = 'mobile'";
    vec![
        Drill {
            name: "customers_of_a_province_in_a_year",
            request: r#"{"level": "customer.id", "filters": [
                {"level": "region.province", "op": "eq", "value": "Zhejiang"},
                {"level": "time.year", "op": "eq", "value": "2025"}], "limit": 20, "offset": 5}"#,
            page_sql: format!(
                r#"SELECT CAST(customer_id AS VARCHAR) AS "customer.id" FROM
                   (SELECT DISTINCT t.customer_id {zhejiang}) ORDER BY customer_id LIMIT 20 OFFSET 5"#
            ),
            total_sql: format!("SELECT COUNT(DISTINCT t.customer_id) {zhejiang}"),
        },
        Drill {
            name: "customers_of_two_channels_in_reverse",
            request: r#"{"level": "customer.id",
                "filters": [{"level": "channel.channel", "op": "in", "values": ["phone", "counter"]}],
                "order": [{"by": "customer.id", "dir": "desc"}]}"#,
            page_sql: format!(
                r#"SELECT CAST(customer_id AS VARCHAR) AS "customer.id" FROM
                   (SELECT DISTINCT t.customer_id {phone}) ORDER BY customer_id DESC LIMIT 100"#
            ),
            total_sql: format!("SELECT COUNT(DISTINCT t.customer_id) {phone}"),
        },
        Drill {
            name: "card_customers_by_amount",
            request: r#"{"level": "customer.id", "filters": [
                {"level": "product.category", "op": "eq", "value": "card"},
                {"level": "time.month", "op": "between", "values": ["2025-01", "2025-03"]}],
                "measures": ["txn_amount", "txn_count"],
                "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 15, "offset": 2}"#,
            page_sql: format!(
                r#"SELECT CAST(t.customer_id AS VARCHAR) AS "customer.id", SUM(t.amount) AS txn_amount,
                       COUNT(*) AS txn_count
                   {cards} GROUP BY t.customer_id ORDER BY txn_amount DESC, t.customer_id LIMIT 15 OFFSET 2"#
            ),
            total_sql: format!("SELECT COUNT(DISTINCT t.customer_id) {cards}"),
        },
        Drill {
            // Branch and channel together: no cuboid of the default cube holds both.
            name: "customers_of_a_branch_on_mobile",
            request: r#"{"level": "customer.id", "filters": [
                {"level": "region.branch", "op": "eq", "value": "Hangzhou Central"},
                {"level": "channel.channel", "op": "eq", "value": "mobile"}],
                "measures": ["active_customers", "fee_income"], "limit": 10}"#,
            page_sql: format!(
                r#"SELECT CAST(t.customer_id AS VARCHAR) AS "customer.id",
                       COUNT(DISTINCT t.customer_id) AS active_customers, SUM(t.fee_income) AS fee_income
                   {branch_mobile} GROUP BY t.customer_id ORDER BY t.customer_id LIMIT 10"#
            ),
            total_sql: format!("SELECT COUNT(DISTINCT t.customer_id) {branch_mobile}"),
        },
    ]
}

fn bench_drill(c: &mut Criterion) {
    let (_dir, model) = common::bench_model();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    // DataFusion gets its own session over the same files.
    let df = runtime.block_on(load(&model)).expect("load for DataFusion");

    for d in drills() {
        let q = DrillQuery::from_json(d.request).expect("drill-through parses");
        let first = runtime
            .block_on(session.drill_through(&q))
            .expect("drill-through answers");
        let mut group = c.benchmark_group(format!("drill/{}/{}", first.meta.source, d.name));
        let fast = first.meta.source != "fallback";
        group.sample_size(if fast { 50 } else { 10 });
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(if fast { 1 } else { 3 }));
        group.bench_function("lattice", |b| {
            b.iter(|| runtime.block_on(session.drill_through(&q)).expect("answer"))
        });
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("datafusion", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    for sql in [&d.page_sql, &d.total_sql] {
                        df.ctx
                            .sql(sql)
                            .await
                            .expect("plan")
                            .collect()
                            .await
                            .expect("run");
                    }
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_drill);
criterion_main!(benches);
