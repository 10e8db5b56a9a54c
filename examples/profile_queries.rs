//! A driver for profiling the cuboid query path: builds the default cube over a small data set,
//! then answers the suite's cuboid-served questions (`tests/questions.rs`) many times each in
//! one function, `hot_loop`, that a profiler can single out, and serialises every answer to
//! JSON as the server would.
//!
//! ```sh
//! cargo build --release --example profile_queries
//! valgrind --tool=callgrind --toggle-collect='*hot_loop*' \
//!     $CARGO_TARGET_DIR/release/examples/profile_queries 0.05 20
//! callgrind_annotate callgrind.out.<pid> | head -60
//! ```
//! Arguments: the data set's scale (0.05) and the rounds over the questions (20). Prints the
//! questions, the rounds and the answers' total JSON bytes (so the work is not optimised away).

#[path = "../benches/common/mod.rs"]
mod common;
#[path = "../tests/questions.rs"]
mod questions;

use lattice_engine::query::{Query, Session};
use lattice_engine::source::load::load;

/// Answers every query `rounds` times and serialises each answer; returns the JSON bytes.
#[inline(never)]
fn hot_loop(
    runtime: &tokio::runtime::Runtime,
    session: &Session,
    queries: &[Query],
    rounds: usize,
) -> usize {
    let mut bytes = 0;
    for _ in 0..rounds {
        for q in queries {
            let answer = runtime.block_on(session.query(q)).expect("answer");
            bytes += serde_json::to_vec(&answer).expect("JSON").len();
        }
    }
    bytes
}

fn main() {
    let mut args = std::env::args().skip(1);
    let scale: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(0.05);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20);
    let dir = common::data_dir(scale);
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", &dir)
        .expect("definition");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    let queries: Vec<Query> = questions::questions()
        .iter()
        .map(|q| Query::from_json(q.query).expect("question parses"))
        .filter(|q| {
            runtime
                .block_on(session.query(q))
                .is_ok_and(|a| a.meta.source == "cuboid")
        })
        .collect();
    let bytes = hot_loop(&runtime, &session, &queries, rounds);
    println!(
        "{} cuboid-served questions, {rounds} rounds, {bytes} JSON bytes",
        queries.len()
    );
}
