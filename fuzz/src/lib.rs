//! What the engine targets share: a tiny cube, built once per fuzzing process from a small
//! synthetic data set (the shipped bank_crm definition over about 100 customers), and a
//! runtime to run queries on. Only with the `engine` feature (the default).
#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lattice_engine::build::{BuildOptions, build_cube};
use lattice_engine::query::{DrillQuery, Query, drill_through, execute};
use lattice_engine::source::synth::{DataFormat, GenOptions, generate};
use lattice_engine::store::Cube;

/// 100 customers, about 2,000 transactions: big enough for every level to have members.
const SCALE: f64 = 0.001;
const SEED: u64 = 7;

/// A current-thread runtime: the fuzzer calls from one thread.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// The data folder, generated on first use and reused by later runs (written under a
/// temporary name and renamed, so parallel fuzzing jobs never read half a data set).
fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lattice-fuzz-data-{SCALE}-{SEED}"));
    if dir.join("transactions.parquet").is_file() {
        return dir;
    }
    let tmp = std::env::temp_dir().join(format!("lattice-fuzz-data-tmp-{}", std::process::id()));
    let opts = GenOptions {
        scale: SCALE,
        seed: SEED,
        format: DataFormat::Parquet,
    };
    generate(&opts, &tmp).expect("generate the fuzz data set");
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another job got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

fn build(dir: &Path) -> Cube {
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", dir)
        .expect("the shipped definition validates");
    runtime().block_on(async {
        let sources = lattice_engine::source::load::load(&model)
            .await
            .expect("load the fuzz data set");
        build_cube(&model, &sources, &BuildOptions::default())
            .await
            .expect("build the fuzz cube")
    })
}

/// The tiny cube every engine target queries.
pub fn cube() -> &'static Cube {
    static CUBE: OnceLock<Cube> = OnceLock::new();
    CUBE.get_or_init(|| build(&data_dir()))
}

/// Every `dimension.level` of the cube, and every measure name.
pub fn names() -> &'static (Vec<String>, Vec<String>) {
    static NAMES: OnceLock<(Vec<String>, Vec<String>)> = OnceLock::new();
    NAMES.get_or_init(|| {
        let model = cube().model();
        (
            model.level_names(),
            model.measures.iter().map(|m| m.name.clone()).collect(),
        )
    })
}

/// Runs a query to its answer or its error; neither may panic. Errors must name themselves.
pub fn run_query(q: &Query) {
    let cube = cube();
    match runtime().block_on(execute(cube, q)) {
        Ok(answer) => {
            serde_json::to_string(&answer).expect("an answer serialises");
        }
        Err(e) => {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
            assert_ne!(e.code(), "internal", "engine error for {q:?}: {e}");
        }
    }
}

/// Runs a drill-through to its answer or its error.
pub fn run_drill(q: &DrillQuery) {
    let cube = cube();
    match runtime().block_on(drill_through(cube, q)) {
        Ok(answer) => {
            serde_json::to_string(&answer).expect("an answer serialises");
        }
        Err(e) => {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
            assert_ne!(e.code(), "internal", "engine error for {q:?}: {e}");
        }
    }
}
