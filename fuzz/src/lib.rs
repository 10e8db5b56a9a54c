//! What the engine targets share: a tiny cube, built once per fuzzing process from a small
//! synthetic data set (the shipped bank_crm definition over about 100 customers), and a
//! runtime to run queries on. Only with the `engine` feature (the default).
#![cfg(feature = "engine")]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lattice_engine::access::{Access, ScopeRule, drill_through_as, execute_as};
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

/// A principal scoped to the first manager of the cube, with small cells suppressed: every
/// query and drill-through also runs as them.
pub fn scoped() -> &'static Access {
    static ACCESS: OnceLock<Access> = OnceLock::new();
    ACCESS.get_or_init(|| {
        let cube = cube();
        let level = cube.model().level("manager.manager").expect("manager level");
        let first = cube.members(level).names[0].clone();
        Access {
            scope: vec![ScopeRule {
                level: "manager.manager".into(),
                values: vec![first],
            }],
            roles: vec!["analyst".into()],
        }
    })
}

/// An answer (already serialised) or a clear error.
fn check(what: &dyn std::fmt::Debug, result: Result<String, lattice_engine::query::QueryError>) {
    match result {
        Ok(json) => assert!(!json.is_empty()),
        Err(e) => {
            assert!(!e.code().is_empty() && !e.to_string().is_empty());
            assert_ne!(e.code(), "internal", "engine error for {what:?}: {e}");
        }
    }
}

/// Runs a query to its answer or its error, for everyone and for a scoped principal; neither
/// may panic. Errors must name themselves.
pub fn run_query(q: &Query) {
    let cube = cube();
    let json = |a: lattice_engine::query::Answer| serde_json::to_string(&a).expect("serialises");
    check(q, runtime().block_on(execute(cube, q)).map(json));
    check(q, runtime().block_on(execute_as(cube, q, scoped())).map(json));
}

/// Runs a drill-through to its answer or its error, for everyone and for a scoped principal.
pub fn run_drill(q: &DrillQuery) {
    let cube = cube();
    let json =
        |a: lattice_engine::query::DrillAnswer| serde_json::to_string(&a).expect("serialises");
    check(q, runtime().block_on(drill_through(cube, q)).map(json));
    check(q, runtime().block_on(drill_through_as(cube, q, scoped())).map(json));
}
