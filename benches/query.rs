//! Query latency over the hand-written question suite (`tests/questions.rs`), each question
//! answered by Lattice (engine only: resolve, plan, scan or fallback, finish to JSON values)
//! and by DataFusion running the question's SQL twin over the raw Parquet, in the same run.
//!
//! Data: the synthetic bank data set at scale 1 (100k customers, ~2M transactions, 24 months;
//! `LATTICE_BENCH_SCALE` overrides), generated once into `~/.cache/lattice/`. Each question is
//! a criterion group `q/<path>/<name>` (path: `cuboid` or `fallback`, as the engine answers it)
//! with two functions, `lattice` and `datafusion`; `scripts/bench_table.py` turns criterion's
//! medians into the table of docs/perf/README.md.
//!
//! `LATTICE_BENCH_FILTER=substring` limits the questions, `LATTICE_BENCH_PATH=fallback` (or
//! `cuboid`) to one path; `LATTICE_BENCH_SKIP_DF=1` benches only Lattice.

#[path = "../tests/questions.rs"]
mod questions;

mod common;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lattice_engine::query::Query;
use lattice_engine::source::load::load;

fn bench_queries(c: &mut Criterion) {
    let filter = std::env::var("LATTICE_BENCH_FILTER").unwrap_or_default();
    let skip_df = std::env::var_os("LATTICE_BENCH_SKIP_DF").is_some();
    let only_path = std::env::var("LATTICE_BENCH_PATH").ok();
    let (_dir, model) = common::bench_model();
    // A multi-threaded runtime, so that DataFusion gets every core.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    // DataFusion gets its own session over the same files, with the default (all cores)
    // parallelism.
    let df = runtime.block_on(load(&model)).expect("load for DataFusion");

    for q in questions::questions() {
        if !q.name.contains(&filter) {
            continue;
        }
        let query = Query::from_json(q.query).expect("question parses");
        let first = runtime
            .block_on(session.query(&query))
            .expect("question answers");
        let path = first.meta.source;
        if only_path.as_deref().is_some_and(|p| p != path) {
            continue;
        }
        let mut group = c.benchmark_group(format!("q/{path}/{}", q.name));
        group.sample_size(if path == "cuboid" { 50 } else { 10 });
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(if path == "cuboid" { 1 } else { 3 }));
        group.bench_function("lattice", |b| {
            b.iter(|| runtime.block_on(session.query(&query)).expect("answer"))
        });
        // A twin DataFusion cannot run at this scale is reported, not benched (the tests
        // run every twin at the test scale).
        let df_runs = !skip_df
            && runtime
                .block_on(async { df.ctx.sql(q.sql).await?.collect().await })
                .map_err(|e| eprintln!("{}: DataFusion fails on the twin: {e}", q.name))
                .is_ok();
        if df_runs {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(3));
            group.bench_function("datafusion", |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        df.ctx
                            .sql(q.sql)
                            .await
                            .expect("plan")
                            .collect()
                            .await
                            .expect("run")
                    })
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_queries);
criterion_main!(benches);
