//! How fast does a cube build turn raw facts into cuboids, stage by stage, next to DataFusion
//! doing the comparable work in SQL over the same Parquet, in the same run?
//!
//! Both sides read the synthetic bank data set at scale 0.05 (5,000 customers, about 100k
//! transactions and 300k balance rows; `LATTICE_BENCH_SCALE` overrides), generated once with a
//! fixed seed before timing. Group `build_bank_crm`, throughput in rows so results read as
//! rows/s:
//!
//! - `lattice_build_cube`: the whole build (fact rows);
//! - `lattice_stage_dimensions`: reading every dimension table and dictionary-encoding its
//!   levels (dimension rows), next to `datafusion_dimension_scan`, DataFusion reading the same
//!   tables and listing the distinct members of the same columns;
//! - `lattice_stage_base`: aggregating the raw facts to the cube grain and bucketing metric
//!   levels (fact rows), next to `datafusion_base_group_by`, the same GROUP BY in SQL (without
//!   the bucketing or distinct sets);
//! - `lattice_stage_lattice`: aggregating every chosen cuboid from its parent (fact rows, so
//!   the figure compares with the other stages; the stage reads base rows, not fact rows).
//!
//! The stages are not callable one by one (they are private to the engine's build module), so
//! a stage's function runs whole builds and counts only that stage's time, from the
//! [`BuildReport`](lattice_engine::build::BuildReport) each build returns. `select` (choosing
//! cuboids, about 0.1 ms at this scale) is not benched.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use lattice_engine::build::{BuildOptions, build_cube, build_cube_with_report};
use lattice_engine::source::load::load;
use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

const FACTS: [&str; 2] = ["transactions", "balances"];
const DIMENSION_TABLES: [&str; 5] = ["customers", "regions", "managers", "products", "channels"];

/// DataFusion's side of the dimension stage: read each dimension table and list the distinct
/// members of the columns the cube's levels are made of.
const DIMENSION_SQL: [&str; 5] = [
    "SELECT DISTINCT customer_type, segment, education, customer_id, age, monthly_income FROM customers",
    "SELECT DISTINCT * FROM regions",
    "SELECT DISTINCT manager_id, manager_name, region_id FROM managers",
    "SELECT DISTINCT product_id, category, product_name FROM products",
    "SELECT DISTINCT * FROM channels",
];

/// DataFusion's side of the base stage: the raw facts grouped at the cube's base grain.
const BASE_SQL: [&str; 2] = [
    "SELECT customer_id, product_id, channel_id, date_trunc('month', CAST(txn_date AS TIMESTAMP)) AS m, \
     SUM(amount), COUNT(*), SUM(fee_income) FROM transactions GROUP BY 1, 2, 3, 4",
    "SELECT customer_id, product_id, month, SUM(deposit_balance), SUM(loan_balance), SUM(credit_line), \
     SUM(interest_margin) FROM balances GROUP BY 1, 2, 3",
];

fn bench_build(c: &mut Criterion) {
    let scale: f64 = std::env::var("LATTICE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.05);
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(
        &GenOptions {
            scale,
            seed: 42,
            format: DataFormat::Parquet,
        },
        dir.path(),
    )
    .expect("generate");
    let rows_of = |names: &[&str]| -> u64 {
        summary
            .tables
            .iter()
            .filter(|t| names.contains(&t.name))
            .map(|t| t.rows as u64)
            .sum()
    };
    let fact_rows = rows_of(&FACTS);
    let dimension_rows = rows_of(&DIMENSION_TABLES);
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", dir.path())
        .expect("definition");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let options = BuildOptions::default();

    let mut group = c.benchmark_group("build_bank_crm");
    // Every Lattice iteration is a whole build (about 0.5 s at scale 0.05): flat sampling keeps
    // it to one build per sample.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(fact_rows));
    group.bench_function("lattice_build_cube", |b| {
        b.iter(|| {
            runtime
                .block_on(build_cube(&model, &sources, &options))
                .expect("build")
        })
    });

    // One stage of `iters` whole builds, timed from each build's report.
    let stage = |name: &'static str, iters: u64| -> Duration {
        (0..iters)
            .map(|_| {
                let (_cube, report) = runtime
                    .block_on(build_cube_with_report(&model, &sources, &options))
                    .expect("build");
                report
                    .stages
                    .iter()
                    .find(|(s, _)| *s == name)
                    .unwrap_or_else(|| panic!("the build report has no stage {name}"))
                    .1
            })
            .sum()
    };
    let sql = |queries: &[&str]| {
        runtime.block_on(async {
            for q in queries {
                sources
                    .ctx
                    .sql(q)
                    .await
                    .expect("plan")
                    .collect()
                    .await
                    .expect("run");
            }
        })
    };

    group.throughput(Throughput::Elements(dimension_rows));
    group.bench_function("lattice_stage_dimensions", |b| {
        b.iter_custom(|iters| stage("dimensions", iters))
    });
    group.bench_function("datafusion_dimension_scan", |b| {
        b.iter(|| sql(&DIMENSION_SQL))
    });

    group.throughput(Throughput::Elements(fact_rows));
    group.bench_function("lattice_stage_base", |b| {
        b.iter_custom(|iters| stage("base", iters))
    });
    group.bench_function("datafusion_base_group_by", |b| b.iter(|| sql(&BASE_SQL)));
    group.bench_function("lattice_stage_lattice", |b| {
        b.iter_custom(|iters| stage("lattice", iters))
    });
    group.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
