//! Prints the random BI workload of `benches/workload.rs` as JSON lines, without timing it:
//! `{"i": ..., "query": {...}, "sql": "...", "path": "cuboid"|"fallback"}` (the path as the
//! engine answers the question), the same questions as the bench for the same
//! `LATTICE_WORKLOAD_N` (default 300), `LATTICE_WORKLOAD_SEED` (default 1) and
//! `LATTICE_BENCH_SCALE` (default 1): the generator draws members from the cube's dictionaries.
//!
//! `--branch-cost FILE` also writes the table the cost allocation computes (`branch_cost`,
//! which exists only inside the engine) as Parquet, so that another engine can run the twins
//! of `allocated_cost`, `cost_customers` and `contribution`.
//!
//! ```sh
//! LATTICE_BENCH_SCALE=0.1 cargo run --release --example dump_workload -- \
//!     --branch-cost /tmp/branch_cost.parquet > /tmp/workload.jsonl
//! ```
//!
//! Read by `scripts/workload_compare.py`.

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../tests/workload.rs"]
mod workload;

use std::io::Write;

use datafusion::dataframe::DataFrameWriteOptions;
use lattice_engine::query::Query;
use lattice_engine::source::load::load;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let branch_cost = match args.as_slice() {
        [] => None,
        [flag, file] if flag == "--branch-cost" => Some(file.clone()),
        _ => anyhow::bail!("usage: dump_workload [--branch-cost FILE]"),
    };
    let n: usize = std::env::var("LATTICE_WORKLOAD_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let seed: u64 = std::env::var("LATTICE_WORKLOAD_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);

    let (_dir, model) = common::bench_model();
    let runtime = tokio::runtime::Runtime::new()?;
    let sources = runtime.block_on(load(&model))?;
    if let Some(file) = &branch_cost {
        runtime.block_on(async {
            sources
                .ctx
                .table("branch_cost")
                .await?
                .write_parquet(
                    file,
                    DataFrameWriteOptions::new().with_single_file_output(true),
                    None,
                )
                .await
        })?;
        eprintln!("branch_cost written to {file}");
    }
    let session = common::open_session(&runtime, &model, &sources);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut rng = workload::Rng(seed);
    for i in 0..n {
        let json = workload::bi_question(session.cube(), &mut rng);
        let query = Query::from_json(&json.to_string())?;
        let path = runtime
            .block_on(session.query(&query))
            .map_or("refused", |a| a.meta.source);
        let line = serde_json::json!({
            "i": i,
            "query": json,
            "sql": workload::workload_sql(&model, &query),
            "path": path,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
