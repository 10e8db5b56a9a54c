//! SQL over the cube tables, in process: what the SQL layer adds to a cuboid-served question.
//! Per question (criterion group `sql/<name>`):
//!
//! - `engine`: the engine's own query (`Session::query`), the floor;
//! - `plan`: parse, analyze, the optimizer with the pushdown rule, and the physical plan of
//!   the SQL statement, nothing run (the pushdown rule's cost with DataFusion's planning);
//! - `sql`: the whole statement, planned and run, rows collected;
//! - `datafusion`: the same question in DataFusion SQL over the raw Parquet, in the same run.
//!
//! Data: the synthetic bank data set at scale 1 (`LATTICE_BENCH_SCALE` overrides).
//! Run: `cargo bench --bench sql`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lattice_engine::query::Query;
use lattice_engine::source::load::load;
use lattice_engine::sql::{self, FixedCubes};

/// A question: the JSON query, its SQL over the cube table, its SQL over the raw facts.
struct Question {
    name: &'static str,
    query: &'static str,
    cube_sql: &'static str,
    raw_sql: &'static str,
}

fn questions() -> Vec<Question> {
    vec![
        Question {
            name: "amount_by_province_2025",
            query: r#"{"measures": ["txn_amount", "txn_count"], "rows": ["region.province"],
                       "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
            cube_sql: "SELECT region_province, MEASURE(txn_amount), MEASURE(txn_count) \
                       FROM bank_crm WHERE time_year = '2025' GROUP BY region_province",
            raw_sql: "SELECT r.province, SUM(t.amount), COUNT(*) FROM transactions t \
                      JOIN customers c ON c.customer_id = t.customer_id \
                      JOIN regions r ON r.region_id = c.region_id \
                      WHERE to_char(t.txn_date, '%Y') = '2025' GROUP BY r.province",
        },
        Question {
            name: "fee_by_month_atm",
            query: r#"{"measures": ["fee_income"], "rows": ["time.month"],
                       "filters": [{"level": "channel.channel", "op": "eq", "value": "ATM"}]}"#,
            cube_sql: "SELECT time_month, MEASURE(fee_income) FROM bank_crm \
                       WHERE channel_channel = 'ATM' GROUP BY time_month",
            raw_sql: "SELECT to_char(t.txn_date, '%Y-%m'), SUM(t.fee_income) FROM transactions t \
                      JOIN channels ch ON ch.channel_id = t.channel_id \
                      WHERE ch.channel = 'ATM' GROUP BY 1",
        },
    ]
}

fn bench_sql(c: &mut Criterion) {
    let (_dir, model) = common::bench_model();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    let ctx = sql::context(Arc::new(FixedCubes(vec![(
        model.name.clone(),
        session.clone(),
    )])));
    let raw = runtime.block_on(load(&model)).expect("load for DataFusion");

    for q in questions() {
        let query = Query::from_json(q.query).expect("query");
        let first = runtime.block_on(session.query(&query)).expect("answer");
        let mut group = c.benchmark_group(format!("sql/{}", q.name));
        group.sample_size(50);
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(2));
        group.bench_function("engine", |b| {
            b.iter(|| runtime.block_on(session.query(&query)).expect("answer"))
        });
        group.bench_function("plan", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    ctx.sql(q.cube_sql)
                        .await
                        .expect("plan")
                        .create_physical_plan()
                        .await
                        .expect("physical plan")
                })
            })
        });
        group.bench_function("sql", |b| {
            b.iter(|| {
                let (_, batches) = runtime.block_on(sql::run(&ctx, q.cube_sql)).expect("run");
                assert_eq!(
                    batches.iter().map(|b| b.num_rows()).sum::<usize>(),
                    first.rows.len()
                );
            })
        });
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("datafusion", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    raw.ctx
                        .sql(q.raw_sql)
                        .await
                        .expect("plan")
                        .collect()
                        .await
                        .expect("run")
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_sql);
criterion_main!(benches);
