//! One point of the scaling study (`scripts/scaling.py`): the default cube at one scale.
//!
//! Generates the data set if it is not there (timed apart), then loads and builds the cube and
//! answers every question of `tests/questions.rs`, and prints one JSON line: fact rows, build
//! time and its stages, the build's peak resident memory (the kernel's high-water mark, reset
//! after generation), the cube's size, and the median latency of each question (engine only,
//! as the query bench measures it).
//!
//! ```sh
//! cargo run --release --example scaling -- 1          # scale 1: 100k customers, 2M transactions
//! ```

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../tests/questions.rs"]
mod questions;

use std::time::{Duration, Instant};

use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Query;
use lattice_engine::source::load::load;
use serde_json::json;

/// Runs of each cuboid-served question (the median is reported).
const CUBOID_RUNS: usize = 101;
/// Runs of each fallback question.
const FALLBACK_RUNS: usize = 3;

fn main() -> anyhow::Result<()> {
    let scale: f64 = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: scaling SCALE"))?
        .parse()?;
    let (dir, generated) = common::generated_data(scale);
    let gen_s = generated.map(|d| d.as_secs_f64());
    reset_peak_memory();

    let runtime = tokio::runtime::Runtime::new()?;
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", &dir)
        .map_err(|d| anyhow::anyhow!("{d}"))?;
    let start = Instant::now();
    let sources = runtime.block_on(load(&model))?;
    let load_s = start.elapsed().as_secs_f64();
    let (data, report) = runtime.block_on(lattice_engine::open_with_report(
        &model,
        &sources,
        &BuildOptions::default(),
    ))?;
    let session = std::sync::Arc::new(data).session(Access::everything());
    let build_s = start.elapsed().as_secs_f64();
    let peak_mb = peak_memory_mb();

    let mut questions = Vec::new();
    // LATTICE_SCALING_BUILD_ONLY=1: build and report, no questions (for profiling the build).
    let ask = std::env::var_os("LATTICE_SCALING_BUILD_ONLY").is_none();
    for q in questions::questions().into_iter().filter(|_| ask) {
        let query = Query::from_json(q.query)?;
        let first = runtime.block_on(session.query(&query))?;
        let path = first.meta.source;
        let runs = if path == "cuboid" {
            CUBOID_RUNS
        } else {
            FALLBACK_RUNS
        };
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                runtime.block_on(session.query(&query)).map(|_| t.elapsed())
            })
            .collect::<Result<_, _>>()?;
        times.sort_unstable();
        questions.push(json!({
            "name": q.name,
            "path": path,
            "median_us": times[times.len() / 2].as_secs_f64() * 1e6,
        }));
    }
    let line = json!({
        "scale": scale,
        "gen_s": gen_s,
        "fact_rows": report.fact_rows,
        "build_s": build_s,
        // `load` registers the sources and computes the allocations.
        "stages_s": std::iter::once(("load".to_string(), json!(load_s)))
            .chain(
                report
                    .stages
                    .iter()
                    .map(|(name, d)| (name.to_string(), json!(d.as_secs_f64()))),
            )
            .collect::<serde_json::Map<_, _>>(),
        "peak_rss_mb": peak_mb,
        "cube_mb": session.cube().memory_bytes() as f64 / 1e6,
        "cuboids": session.cube().cuboids().len(),
        "questions": questions,
    });
    println!("{line}");
    Ok(())
}

/// Resets the kernel's resident-memory high-water mark of this process (Linux; elsewhere the
/// peak includes generation).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `VmHWM` of this process, in MB.
fn peak_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1e3)
}
