//! What the criterion suites and the performance examples share: the generated data set.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lattice_engine::access::Access;
use lattice_engine::query::Session;
use lattice_engine::source::load::Sources;
use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

/// The synthetic bank data set at `scale` (seed 42) in `~/.cache/lattice`, generated once and
/// reused by every suite and run.
/// The default cube over the bench data set at `LATTICE_BENCH_SCALE` (default 1): the data
/// folder and the definition read against it.
#[allow(dead_code)] // not every includer (`#[path]`) calls it
pub fn bench_model() -> (PathBuf, lattice_defs::Model) {
    let scale: f64 = std::env::var("LATTICE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let dir = data_dir(scale);
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", &dir)
        .expect("definition");
    (dir, model)
}

#[allow(dead_code)] // not every includer (`#[path]`) calls both
pub fn data_dir(scale: f64) -> PathBuf {
    generated_data(scale).0
}

/// [`data_dir`], and how long generating it took if this call generated it.
pub fn generated_data(scale: f64) -> (PathBuf, Option<Duration>) {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home
        .join(".cache/lattice")
        .join(format!("data-scale{scale}-seed42"));
    let mut took = None;
    if !dir.join("transactions.parquet").exists() {
        let start = Instant::now();
        generate(
            &GenOptions {
                scale,
                seed: 42,
                format: DataFormat::Parquet,
            },
            &dir,
        )
        .expect("generate the data set");
        took = Some(start.elapsed());
    }
    (dir, took)
}

/// `model`'s cube built over `sources` and opened for an unrestricted reader.
#[allow(dead_code)] // not every includer (`#[path]`) calls it
pub fn open_session(
    runtime: &tokio::runtime::Runtime,
    model: &lattice_defs::Model,
    sources: &Sources,
) -> Session {
    let options = lattice_engine::build::BuildOptions::default();
    let data = runtime
        .block_on(lattice_engine::open(model, sources, &options))
        .expect("build");
    std::sync::Arc::new(data).session(Access::everything())
}
