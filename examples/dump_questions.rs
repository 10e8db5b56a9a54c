//! Prints the question suite (`tests/questions.rs`) as JSON lines, one question a line:
//! `{"name": ..., "sql": ..., "totals_sql": ..., "subtotals_sql": [...]}`.
//!
//! Read by `scripts/duckdb_compare.py`, which runs the SQL twins on DuckDB.
//!
//! ```sh
//! cargo run --example dump_questions > questions.jsonl
//! ```

#[path = "../tests/questions.rs"]
mod questions;

use std::io::Write;

fn main() -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for q in questions::questions() {
        let line = serde_json::json!({
            "name": q.name,
            "sql": q.sql,
            "totals_sql": q.totals_sql,
            "subtotals_sql": q.subtotals_sql,
        });
        writeln!(out, "{line}")?;
    }
    Ok(())
}
