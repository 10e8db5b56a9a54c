//! What the criterion suites share: the generated bench data set.

use std::path::PathBuf;

use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

/// The synthetic bank data set at `scale` (seed 42) in `~/.cache/lattice`, generated once and
/// reused by every suite and run.
pub fn data_dir(scale: f64) -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = home
        .join(".cache/lattice")
        .join(format!("data-scale{scale}-seed42"));
    if !dir.join("transactions.parquet").exists() {
        generate(
            &GenOptions {
                scale,
                seed: 42,
                format: DataFormat::Parquet,
            },
            &dir,
        )
        .expect("generate the bench data set");
    }
    dir
}
