//! Shared helpers: a small generated data set, made once per test binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

/// Scale of the data sets tests use: 1,000 customers, about 20k transactions.
pub const TEST_SCALE: f64 = 0.01;
pub const TEST_SEED: u64 = 7;

fn make(format: DataFormat) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("lattice-it-")
        .tempdir()
        .expect("tempdir")
        .keep();
    generate(
        &GenOptions {
            scale: TEST_SCALE,
            seed: TEST_SEED,
            format,
        },
        &dir,
    )
    .expect("generate test data");
    dir
}

/// The test data set as Parquet (generated once, shared by the tests of this binary).
pub fn parquet_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| make(DataFormat::Parquet))
}

/// The same data set (same seed) as CSV.
pub fn csv_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| make(DataFormat::Csv))
}

/// The shipped bank_crm definition, with sources in `dir` (and `.parquet` swapped for `.csv`
/// when `csv`).
pub fn bank_crm(dir: &Path, csv: bool) -> Result<lattice_defs::Model, lattice_defs::Diagnostics> {
    let yaml = if csv {
        lattice_defs::BANK_CRM_YAML.replace(".parquet", ".csv")
    } else {
        lattice_defs::BANK_CRM_YAML.to_string()
    };
    lattice_defs::parse_str(&yaml, "bank_crm.yaml", dir)
}

/// Runs a future to completion on a fresh single-threaded runtime (for proptest bodies).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Proptest cases per run: `LATTICE_PROPTEST_CASES`, else `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("LATTICE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}
