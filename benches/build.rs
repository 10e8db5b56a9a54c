//! How fast does a cube build turn raw facts into cuboids, next to DataFusion computing the
//! same base aggregation in SQL over the same Parquet, in the same run?
//!
//! Both sides read the synthetic bank data set at scale 0.05 (5,000 customers, about 100k
//! transactions and 300k balance rows), generated once with a fixed seed before timing.
//! Throughput is in fact rows, so results read as rows/s. Lattice's build does more than the
//! SQL (dimension encoding, metric bands, every chosen cuboid); the ratio says what the whole
//! cube costs over one GROUP BY.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lattice_engine::build::{BuildOptions, build_cube};
use lattice_engine::source::load::load;
use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

const SCALE: f64 = 0.05;

fn bench_build(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = generate(
        &GenOptions {
            scale: SCALE,
            seed: 42,
            format: DataFormat::Parquet,
        },
        dir.path(),
    )
    .expect("generate");
    let fact_rows: usize = summary
        .tables
        .iter()
        .filter(|t| t.name == "transactions" || t.name == "balances")
        .map(|t| t.rows)
        .sum();
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", dir.path())
        .expect("definition");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");

    let mut group = c.benchmark_group("build_bank_crm");
    group.sample_size(10);
    group.throughput(Throughput::Elements(fact_rows as u64));
    group.bench_function("lattice_build_cube", |b| {
        b.iter(|| {
            runtime
                .block_on(build_cube(&model, &sources, &BuildOptions::default()))
                .expect("build")
        })
    });
    let sql = [
        "SELECT customer_id, product_id, channel_id, date_trunc('month', CAST(txn_date AS TIMESTAMP)) AS m, \
         SUM(amount), COUNT(*), SUM(fee_income) FROM transactions GROUP BY 1, 2, 3, 4",
        "SELECT customer_id, product_id, month, SUM(deposit_balance), SUM(loan_balance), SUM(credit_line), \
         SUM(interest_margin) FROM balances GROUP BY 1, 2, 3",
    ];
    group.bench_function("datafusion_base_group_by", |b| {
        b.iter(|| {
            runtime.block_on(async {
                for q in sql {
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
        })
    });
    group.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
