//! Arbitrary bytes as a query document (and as a drill-through document), read, resolved and
//! executed against a tiny cube: a clear error or an answer, never a panic, hang or OOM.
#![no_main]

use lattice_engine::query::{DrillQuery, Query};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = Query::from_json(text) {
        lattice_fuzz::run_query(&q);
    }
    if let Ok(q) = DrillQuery::from_json(text) {
        lattice_fuzz::run_drill(&q);
    }
});
