//! `examples/analyst_day.sh`, the analyst's-day walkthrough README links to, runs end to end
//! against `lattice serve` on the test data set: every documented request must succeed (the
//! script stops at the first HTTP error), so the walkthrough cannot drift from the API.

use std::process::Command;

use crate::util::parquet_dir;

#[test]
fn the_analysts_day_walkthrough_runs_end_to_end() {
    for tool in ["curl", "python3"] {
        let found = Command::new(tool).arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "the walkthrough needs {tool}"
        );
    }
    // `serve` keeps its snapshots in the cache folder: a temporary one, not the user's.
    let cache = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/analyst_day.sh"
        ))
        .env("LATTICE", env!("CARGO_BIN_EXE_lattice"))
        .env("DATA", parquet_dir())
        .env("PORT", "0")
        .env("LATTICE_CACHE", cache.path())
        .output()
        .expect("run the walkthrough");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "walkthrough failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Every step printed its question, the Pareto cut was read back from its answer, the saved
    // search was created and used as a segment, and the customer views were shown.
    for want in [
        "== 1. What does the cube hold?",
        "-> the top 20% hold 0.",
        "source: \"api\"",
        "== 16. Use it as a segment",
        "attributes: [{\"level\": \"customer.type\"",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }
    let done = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Done: "))
        .expect("the closing line");
    let answered: usize = done
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(answered >= 17, "{done}");
}
