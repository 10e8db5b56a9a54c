//! Incremental refresh equals a full build: a cube built before its last months' files
//! arrived, then refreshed with only those files, holds the same cuboids, cell for cell, as a
//! cube built from all the files, and its cuboids equal SQL over the raw facts. For the shipped
//! cube over the monthly layout (the last one to three months arriving later) and for random
//! cube definitions with random split points. A change a refresh cannot apply (a past month's
//! file rewritten, a dimension table changed, costs without their transactions) says why.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lattice_engine::access::Access;
use lattice_engine::build::refresh::{NotIncremental, refresh_cube_with_report};
use lattice_engine::build::{BuildOptions, Merged, build_cube};
use lattice_engine::query::{Dataset, Query};
use lattice_engine::source::load::{self, added_files, fingerprint, load_delta};
use lattice_engine::source::synth::{DataFormat, GenOptions, Layout, generate_in};
use lattice_engine::store::{CellValue, Cube};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::json;

use crate::random_cube::{Table, generate};
use crate::reference::check_cube;
use crate::util::{TEST_SCALE, TEST_SEED};

/// The monthly tables of the shipped data set's monthly layout.
const MONTHLY: [&str; 3] = ["transactions", "balances", "branch_costs"];

/// One cell of a cuboid, comparable: its member codes, each measure's value and member set.
type Cell = (Vec<u32>, Vec<Option<CellValue>>, Vec<Option<Vec<u32>>>);

/// Every cuboid of `cube` (fact, level names, cells in code order) and every level's members:
/// what two cubes of the same data must agree on, whatever order their cells were built in.
fn canonical(cube: &Cube) -> Vec<(String, Vec<String>, Vec<Cell>)> {
    let model = cube.model();
    let mut out = Vec::new();
    for (d, dim) in model.dimensions.iter().enumerate() {
        for l in 0..dim.levels.len() {
            let level = lattice_defs::model::LevelRef { dim: d, level: l };
            let names = (0..cube.members(level).len() as u32)
                .map(|c| cube.member_name(level, c).to_string())
                .collect();
            out.push((
                format!("{}.{}", dim.name, dim.levels[l].name),
                names,
                Vec::new(),
            ));
        }
    }
    for c in cube.cuboids() {
        let measures: Vec<_> = (0..model.measures.len())
            .filter(|m| c.is_empty() || c.value(0, *m).is_some() || c.member_set(0, *m).is_some())
            .collect();
        let mut cells: Vec<Cell> = (0..c.len())
            .map(|cell| {
                (
                    c.cell_codes(cell),
                    measures.iter().map(|m| c.value(cell, *m)).collect(),
                    measures
                        .iter()
                        .map(|m| c.member_set(cell, *m).map(|s| s.iter().collect()))
                        .collect(),
                )
            })
            .collect();
        cells.sort_by(|a, b| a.0.cmp(&b.0));
        let levels = c.levels().iter().map(|l| model.level_name(*l)).collect();
        out.push((model.facts[c.fact()].name.clone(), levels, cells));
    }
    out
}

/// Builds the cube of `yaml` over `dir` as it is.
async fn build(yaml: &str, dir: &Path, options: &BuildOptions) -> (lattice_defs::Model, Cube) {
    let model = lattice_defs::parse_str(yaml, "test.yaml", dir).expect("definition");
    let sources = load::load(&model).await.expect("sources");
    let cube = build_cube(&model, &sources, options).await.expect("build");
    (model, cube)
}

/// Refreshes `prior` with the files added to `dir` since `before` was taken.
async fn refresh(
    model: &lattice_defs::Model,
    prior: &Cube,
    before: &[load::SourceFingerprint],
    options: &BuildOptions,
) -> Result<Cube, NotIncremental> {
    Ok(refresh_reporting(model, prior, before, options).await?.0)
}

/// [`refresh`], and how its cuboids were made.
async fn refresh_reporting(
    model: &lattice_defs::Model,
    prior: &Cube,
    before: &[load::SourceFingerprint],
    options: &BuildOptions,
) -> Result<(Cube, Merged), NotIncremental> {
    let added = added_files(model, before, &fingerprint(model)).map_err(NotIncremental)?;
    let delta = load_delta(model, &added).await.expect("delta sources");
    let (cube, report) = refresh_cube_with_report(model, prior, &delta, options)
        .await
        .expect("refresh")?;
    Ok((cube, report.merged.expect("a refresh says how it merged")))
}

/// The shipped data set in the monthly layout (Parquet).
pub(crate) fn monthly() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_in(
        &GenOptions {
            scale: TEST_SCALE,
            seed: TEST_SEED,
            format: DataFormat::Parquet,
        },
        Layout::MonthlyFolders,
        dir.path(),
    )
    .expect("generate");
    dir
}

/// Moves the last `months` files of every monthly table out of `dir` into `aside`; returns
/// them (their path in `dir`, and where they are now).
pub(crate) fn hold_back(dir: &Path, aside: &Path, months: usize) -> Vec<(PathBuf, PathBuf)> {
    let mut held = Vec::new();
    for table in MONTHLY {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(table))
            .expect("monthly folder")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        for file in files.split_off(files.len() - months) {
            let to = aside.join(format!(
                "{table}-{}",
                file.file_name().expect("name").to_string_lossy()
            ));
            std::fs::rename(&file, &to).expect("move aside");
            held.push((file, to));
        }
    }
    held
}

fn answer(data: Dataset, questions: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let session = Arc::new(data).session(Access::everything());
    crate::util::block_on(async {
        let mut out = Vec::new();
        for q in questions {
            let query = Query::from_json(&q.to_string()).expect("query");
            let mut v =
                serde_json::to_value(session.query(&query).await.expect("answer")).expect("JSON");
            v.as_object_mut().expect("object").remove("meta");
            out.push(v);
        }
        out
    })
}

#[test]
fn the_shipped_cube_refreshed_with_its_last_months_equals_a_full_build() {
    let yaml = lattice_defs::BANK_CRM_YAML;
    let options = BuildOptions::default();
    for months in [1, 3] {
        let data = monthly();
        let aside = tempfile::tempdir().expect("tempdir");
        let held = hold_back(data.path(), aside.path(), months);
        let (model, prior) = crate::util::block_on(build(yaml, data.path(), &options));
        let before = fingerprint(&model);
        for (home, at) in &held {
            std::fs::rename(at, home).expect("the month arrives");
        }
        let (refreshed, merged) =
            crate::util::block_on(refresh_reporting(&model, &prior, &before, &options))
                .unwrap_or_else(|e| panic!("{months} new months: not refreshed: {e}"));
        // The year of the new months changes its value classes: the cuboids showing them
        // with time have that year's cells built again, those without time are built anew;
        // every other cuboid only merges the new months' cells.
        assert!(merged.replaced > 0, "{months} new months: {merged:?}");
        assert!(
            merged.combined > 3 * (merged.replaced + merged.rebuilt),
            "{months} new months: {merged:?}"
        );
        let (_, full) = crate::util::block_on(build(yaml, data.path(), &options));
        assert_eq!(
            canonical(&refreshed),
            canonical(&full),
            "{months} new months: the refreshed cube differs from a full build"
        );
        assert!(refreshed.base_rows(0) > prior.base_rows(0));
        assert_eq!(refreshed.base_rows(0), full.base_rows(0));

        // Questions no cuboid answers (the base rows), and cuboid ones, answer alike.
        let questions = vec![
            json!({"measures": ["txn_amount", "active_customers"], "rows": ["time.month", "customer.segment", "region.city"]}),
            json!({"measures": ["deposit_balance", "contribution"], "rows": ["customer.value_class", "region.city"]}),
            json!({"measures": ["txn_count"], "rows": ["customer.txn_amount_band", "time.quarter"]}),
        ];
        let sources = crate::util::block_on(load::load(&model)).expect("sources");
        let open = |cube| Dataset::new(cube, Some(&sources));
        assert_eq!(
            answer(open(refreshed), &questions),
            answer(open(full), &questions)
        );
    }
}

/// A file's bytes and modification time, to put it back as it was.
fn save(file: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let modified = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .expect("modified");
    (std::fs::read(file).expect("read"), modified)
}

/// Puts `file` back as [`save`] found it, its modification time included (its fingerprint).
fn restore(file: &Path, (bytes, modified): (Vec<u8>, std::time::SystemTime)) {
    std::fs::write(file, bytes).expect("restore");
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_modified(modified))
        .expect("set the modification time");
}

#[test]
fn a_change_a_refresh_cannot_apply_says_why() {
    let yaml = lattice_defs::BANK_CRM_YAML;
    let options = BuildOptions::default();
    let data = monthly();
    let aside = tempfile::tempdir().expect("tempdir");
    let held = hold_back(data.path(), aside.path(), 1);
    let (model, prior) = crate::util::block_on(build(yaml, data.path(), &options));
    let before = fingerprint(&model);
    let why = |before: &[load::SourceFingerprint]| {
        crate::util::block_on(refresh(&model, &prior, before, &options))
            .expect_err("not incremental")
            .0
    };

    // The transactions of a month arrive without its branch costs.
    let (home, at) = &held[0];
    std::fs::copy(at, home).expect("transactions arrive");
    let reason = why(&before);
    assert!(
        reason.contains("branch_costs") && reason.contains("cover different periods"),
        "{reason}"
    );
    std::fs::remove_file(home).expect("remove");

    // A past month's file is rewritten.
    let past = data.path().join("balances/2024-02.parquet");
    let saved = save(&past);
    std::fs::write(&past, [saved.0.as_slice(), b"x"].concat()).expect("rewrite");
    let reason = why(&before);
    assert!(
        reason.contains("2024-02.parquet") && reason.contains("changed"),
        "{reason}"
    );
    restore(&past, saved);

    // A dimension table changes.
    let customers = data.path().join("customers.parquet");
    let saved = save(&customers);
    std::fs::write(&customers, [saved.0.as_slice(), b"x"].concat()).expect("rewrite");
    let reason = why(&before);
    assert!(reason.contains("'customers' changed"), "{reason}");
    restore(&customers, saved);

    // A new file with rows of a month the cube has already.
    let balances = data.path().join("balances");
    std::fs::copy(
        balances.join("2024-03.parquet"),
        balances.join("2024-03-late.parquet"),
    )
    .expect("copy");
    let reason = why(&before);
    assert!(
        reason.contains("'balances'") && reason.contains("a period the cube has already"),
        "{reason}"
    );
}

/// One random case: the fact's rows from `cut` on (and, when `nulls_late`, those without a
/// date) arrive after the cube is built.
async fn run_case(
    seed: u64,
    rows: usize,
    dims: usize,
    cut: usize,
    nulls_late: bool,
) -> Result<(), String> {
    let case = generate(seed, rows, dims);
    let fail = |what: String| {
        format!(
            "case seed={seed} rows={rows} dims={dims} cut={cut} nulls_late={nulls_late}: {what}\n{}",
            case.describe()
        )
    };
    let dir = tempfile::Builder::new()
        .prefix("lattice-refresh-")
        .tempdir()
        .expect("tempdir");
    let mut facts = None;
    for t in &case.tables {
        if t.name == "facts" {
            facts = Some(t.clone());
        } else if case.parquet {
            t.write_parquet(dir.path());
        } else {
            t.write_csv(dir.path());
        }
    }
    let facts = facts.expect("the fact table");
    // Months 2024-01 .. 2025-06 are 0..18; rows of month `cut` and later are late.
    let cut_day = format!("{}-{:02}-01", 2024 + cut / 12, cut % 12 + 1);
    let day = facts
        .columns
        .iter()
        .position(|c| c.name == "day")
        .expect("day");
    let late: Vec<bool> = facts.columns[day]
        .values
        .iter()
        .map(|v| v.as_ref().map_or(nulls_late, |d| *d >= cut_day))
        .collect();
    let part = |name: &str, keep: bool| Table {
        name: name.into(),
        columns: facts
            .columns
            .iter()
            .map(|c| crate::random_cube::Column {
                values: c
                    .values
                    .iter()
                    .zip(&late)
                    .filter(|(_, l)| **l == keep)
                    .map(|(v, _)| v.clone())
                    .collect(),
                ..c.clone()
            })
            .collect(),
    };
    let (early, later) = (part("a", false), part("b", true));
    // CSV cannot type a column without a value (a file without rows, say).
    let typed = |t: &Table| {
        t.columns
            .iter()
            .all(|c| c.values.iter().any(Option::is_some))
    };
    let parquet = case.parquet || !typed(&early) || !typed(&later);
    let folder = dir.path().join("facts");
    std::fs::create_dir(&folder).expect("folder");
    let write = |t: &Table| match parquet {
        true => t.write_parquet(&folder),
        false => t.write_csv(&folder),
    };
    let yaml = case
        .yaml
        .replace("facts: { path: facts.parquet }", "facts: { path: facts }")
        .replace("facts: { path: facts.csv }", "facts: { path: facts }");
    write(&early);
    let options = BuildOptions {
        base_range_rows: seed.is_multiple_of(2).then_some((rows as u64 / 4).max(1)),
        ..BuildOptions::default()
    };
    let model = lattice_defs::parse_str(&yaml, "test.yaml", dir.path())
        .map_err(|d| fail(format!("the definition does not validate:\n{d}")))?;
    let sources = load::load(&model)
        .await
        .map_err(|e| fail(format!("load: {e}")))?;
    let prior = build_cube(&model, &sources, &options)
        .await
        .map_err(|e| fail(format!("build: {e}")))?;
    let before = fingerprint(&model);
    write(&later);
    let sources = load::load(&model)
        .await
        .map_err(|e| fail(format!("load: {e}")))?;
    let full = build_cube(&model, &sources, &options)
        .await
        .map_err(|e| fail(format!("full build: {e}")))?;
    // The periods of the cube's finest grain that early and late dated rows share: a
    // refresh must refuse exactly when there is one.
    let finest = yaml
        .lines()
        .find_map(|l| l.split("type: time, hierarchy: [").nth(1))
        .and_then(|l| l.split(']').next())
        .and_then(|l| l.split(", ").last())
        .expect("the time hierarchy")
        .to_string();
    let period = |d: &str| -> String {
        let (y, m) = (&d[..4], d[5..7].parse::<u32>().expect("month"));
        match finest.as_str() {
            "year" => y.to_string(),
            "quarter" => format!("{y}Q{}", (m - 1) / 3),
            "month" => d[..7].to_string(),
            _ => d.to_string(),
        }
    };
    let periods = |t: &Table| -> std::collections::BTreeSet<String> {
        t.columns[day]
            .values
            .iter()
            .flatten()
            .map(|d| period(d))
            .collect()
    };
    let shared = periods(&early)
        .intersection(&periods(&later))
        .next()
        .cloned();
    match (
        refresh_reporting(&model, &prior, &before, &options).await,
        shared,
    ) {
        (Ok((refreshed, _)), None) => {
            if canonical(&refreshed) != canonical(&full) {
                return Err(fail("the refreshed cube differs from a full build".into()));
            }
            check_cube(&refreshed, &sources.ctx).await.map_err(fail)?;
            Ok(())
        }
        (Err(NotIncremental(why)), Some(_)) if why.contains("a period the cube has already") => {
            Ok(())
        }
        (Ok(_), Some(p)) => Err(fail(format!(
            "refreshed although early and late rows share {p}"
        ))),
        (Err(NotIncremental(why)), _) => Err(fail(format!("not refreshed: {why}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::util::proptest_cases(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_cubes_refreshed_equal_a_full_build_and_sql(
        seed in any::<u64>(),
        rows in 0usize..200,
        dims in 1usize..=3,
        back in 1usize..=3,
        nulls_late in any::<bool>(),
    ) {
        let result = crate::util::block_on(run_case(seed, rows, dims, 18 - back, nulls_late));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// `added_files` lists what a refresh reads: the added files of each fact's source, none of
/// another's.
#[test]
fn added_files_are_the_new_files_of_the_fact_sources() {
    let data = monthly();
    let aside = tempfile::tempdir().expect("tempdir");
    let held = hold_back(data.path(), aside.path(), 2);
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", data.path())
        .expect("definition");
    let before = fingerprint(&model);
    assert_eq!(
        added_files(&model, &before, &before).expect("unchanged"),
        MONTHLY
            .iter()
            .map(|t| (t.to_string(), Vec::new()))
            .collect::<HashMap<_, _>>()
    );
    for (home, at) in &held {
        std::fs::rename(at, home).expect("arrive");
    }
    let added = added_files(&model, &before, &fingerprint(&model)).expect("added");
    for table in MONTHLY {
        let mut files: Vec<String> = added[table]
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{table}: {files:?}");
        assert!(files.iter().all(|f| f.ends_with(".parquet")));
    }
    assert!(!added.contains_key("customers"));
}

/// The server: a start whose newest snapshot predates a new month refreshes it; `POST
/// .../refresh` refreshes the cube serving (or says it is up to date, or builds in full and
/// says why); a refresh that fails leaves the cube serving as it was. Every refreshed cube
/// answers as a cube built from all the files.
#[tokio::test]
async fn the_server_refreshes_at_start_and_on_request_and_answers_as_a_full_build() {
    use crate::snapshots::{answers, get_json, start};
    use crate::util::post_json;
    let yaml = lattice_defs::BANK_CRM_YAML;
    let data = monthly();
    let aside = tempfile::tempdir().expect("tempdir");
    let snaps = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let held = hold_back(data.path(), aside.path(), 2);
    let last_month = |info: &serde_json::Value| info["periods"]["last"].clone();

    let first = start(yaml, data.path(), snaps.path()).await;
    assert_eq!(first.info["origin"], "built", "{}", first.info);
    // The definition's searches, evaluated as the cube opens, are no user's questions: none
    // is recorded as missed (a refresh or rebuild would add cuboids for them).
    assert!(
        first.info["missed"].as_array().is_none_or(Vec::is_empty),
        "{}",
        first.info["missed"]
    );
    let before = last_month(&first.info);
    first.server.stop().await;

    // A month arrives while the server is down: the next start refreshes the snapshot.
    // Per table, the earlier month's file, then the later's.
    let (one, two): (Vec<_>, Vec<_>) = held.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for (_, (home, at)) in &one {
        std::fs::rename(at, home).expect("the first month arrives");
    }
    let second = start(yaml, data.path(), snaps.path()).await;
    assert_eq!(second.info["origin"], "refreshed", "{}", second.info);
    assert_ne!(last_month(&second.info), before);
    let full = start(yaml, data.path(), elsewhere.path()).await;
    assert_eq!(full.info["origin"], "built");
    assert_eq!(answers(&second.server).await, answers(&full.server).await);
    assert_eq!(last_month(&second.info), last_month(&full.info));
    full.server.stop().await;

    // Nothing new: up to date.
    let refresh = format!("/v1/cubes/{CUBE}/refresh");
    let (status, body) = post_json(second.server.addr, &refresh, "").await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("up_to_date")),
        "{body}"
    );

    // The next month lands while it serves: refreshed on request, from memory.
    for (_, (home, at)) in &two {
        std::fs::rename(at, home).expect("the second month arrives");
    }
    let (status, body) = post_json(second.server.addr, &refresh, "").await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("refreshed")),
        "{body}"
    );
    let info = get_json(second.server.addr, &format!("/v1/cubes/{CUBE}")).await;
    assert_eq!(info["origin"], "refreshed");
    let full = start(yaml, data.path(), elsewhere.path()).await;
    assert_eq!(answers(&second.server).await, answers(&full.server).await);
    assert_eq!(last_month(&info), last_month(&full.info));
    full.server.stop().await;

    // A file that is not Parquet lands: the refresh fails, the cube serving stays.
    let version = info["version"].clone();
    let bad = data.path().join("transactions/2099-01.parquet");
    std::fs::write(&bad, b"not parquet").expect("write");
    let (status, body) = post_json(second.server.addr, &refresh, "").await;
    assert_ne!(status, 200, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("2099-01.parquet"),
        "{body}"
    );
    let info = get_json(second.server.addr, &format!("/v1/cubes/{CUBE}")).await;
    assert_eq!(info["version"], version);
    std::fs::remove_file(&bad).expect("remove");

    // A past month rewritten: built in full, and said why.
    let past = data.path().join("balances/2024-02.parquet");
    let bytes = std::fs::read(&past).expect("read");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&past, bytes).expect("rewrite");
    let (status, body) = post_json(second.server.addr, &refresh, "").await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("rebuilt")),
        "{body}"
    );
    assert!(
        body["rebuilt_because"]
            .as_str()
            .unwrap_or("")
            .contains("2024-02.parquet"),
        "{body}"
    );
    let info = get_json(second.server.addr, &format!("/v1/cubes/{CUBE}")).await;
    assert_eq!(info["origin"], "built");
    assert!(info["rebuilt_because"].is_string(), "{info}");
    second.server.stop().await;
}

const CUBE: &str = "bank_crm";

/// `lattice build --snapshots DIR` over a snapshot whose sources gained a month refreshes it
/// (reading only the new files) and writes the result as a new version, equal to a full build.
#[test]
fn the_cli_refreshes_the_newest_snapshot_with_a_new_month() {
    let data = monthly();
    let aside = tempfile::tempdir().expect("tempdir");
    let snaps = tempfile::tempdir().expect("tempdir");
    let held = hold_back(data.path(), aside.path(), 1);
    let definition = Path::new(env!("CARGO_MANIFEST_DIR")).join("cube_defs/bank_crm.yaml");
    let build = || {
        let out = crate::cli::lattice()
            .arg("build")
            .arg(&definition)
            .arg("--data")
            .arg(data.path())
            .arg("--snapshots")
            .arg(snaps.path())
            .output()
            .expect("run lattice build");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = build();
    assert!(first.contains("built cube 'bank_crm'"), "{first}");
    for (home, at) in &held {
        std::fs::rename(at, home).expect("the month arrives");
    }
    let second = build();
    assert!(second.contains("refreshing snapshot"), "{second}");
    assert!(second.contains("refreshed cube 'bank_crm'"), "{second}");

    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", data.path())
        .expect("definition");
    let cube_dir = snaps.path().join("bank_crm");
    let versions = lattice_engine::store::snapshot::versions::versions(&cube_dir).expect("list");
    assert_eq!(versions.len(), 2, "{versions:?}");
    let recorded = serde_json::to_value(fingerprint(&model)).expect("JSON");
    let newest = lattice_engine::store::snapshot::versions::find_newest(
        &cube_dir,
        &model,
        lattice_defs::BANK_CRM_YAML,
        Some(&recorded),
    )
    .expect("search")
    .found
    .expect("the refreshed version matches the sources as they are");
    assert_eq!(newest.version, versions[1]);
    let (_, full) = crate::util::block_on(build_full(data.path()));
    assert_eq!(canonical(&newest.cube), canonical(&full));
}

async fn build_full(dir: &Path) -> (lattice_defs::Model, Cube) {
    build(lattice_defs::BANK_CRM_YAML, dir, &BuildOptions::default()).await
}

/// `lattice build --snapshots` refreshing a snapshot with a new month, killed (SIGKILL) at
/// points spread over its whole run (reading the new files, building, writing): after each
/// kill, the newest snapshot is a whole one (the one refreshed from, or a finished refresh),
/// never one set aside as damaged; a run let finish writes what a full build makes.
#[cfg(unix)]
#[test]
fn a_refresh_killed_midway_never_leaves_a_damaged_snapshot() {
    use lattice_engine::store::snapshot::versions;
    let data = monthly();
    let aside = tempfile::tempdir().expect("tempdir");
    let snaps = tempfile::tempdir().expect("tempdir");
    let held = hold_back(data.path(), aside.path(), 1);
    let definition = Path::new(env!("CARGO_MANIFEST_DIR")).join("cube_defs/bank_crm.yaml");
    let build = |delay_ms: &str| {
        let mut cmd = crate::cli::lattice();
        cmd.arg("build")
            .arg(&definition)
            .arg("--data")
            .arg(data.path())
            .arg("--snapshots")
            .arg(snaps.path())
            .env("LATTICE_SNAPSHOT_WRITE_DELAY_MS", delay_ms)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    assert!(build("0").status().expect("run").success());
    for (home, at) in &held {
        std::fs::rename(at, home).expect("the month arrives");
    }
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", data.path())
        .expect("definition");
    let cube_dir = snaps.path().join("bank_crm");
    let (_, full) = crate::util::block_on(build_full(data.path()));
    let full = canonical(&full);
    // How long a refresh that writes slowly runs, to spread the kills over it.
    let timed = std::time::Instant::now();
    assert!(build("2").status().expect("run").success());
    let span = timed.elapsed().as_millis() as u64;
    // Back to the snapshot before the month: remove what the timed run wrote.
    let written = versions::versions(&cube_dir).expect("list");
    let last = written.last().expect("a version");
    std::fs::remove_dir_all(cube_dir.join(last)).expect("remove the timed run's version");
    // The last kills land after a run would have finished: some runs finish.
    for run in 0..8u64 {
        let mut child = build("2").spawn().expect("start lattice build");
        std::thread::sleep(std::time::Duration::from_millis(span * run / 6));
        let _ = child.kill();
        child.wait().expect("reap");
        let search = versions::find_newest(&cube_dir, &model, lattice_defs::BANK_CRM_YAML, None)
            .expect("search");
        assert!(
            search.skipped.iter().all(|s| s.moved_to.is_none()),
            "run {run}: a damaged snapshot: {:?}",
            search.skipped
        );
        let found = search.found.expect("a whole snapshot");
        // A finished refresh holds what a full build makes; otherwise it is the one before.
        let refreshed = found.sources == serde_json::to_value(fingerprint(&model)).expect("JSON");
        if refreshed {
            assert_eq!(canonical(&found.cube), full, "run {run}");
            std::fs::remove_dir_all(&found.dir).expect("back to the snapshot before");
        }
    }
    assert!(build("0").status().expect("run").success());
    let found = versions::find_newest(
        &cube_dir,
        &model,
        lattice_defs::BANK_CRM_YAML,
        Some(&serde_json::to_value(fingerprint(&model)).expect("JSON")),
    )
    .expect("search")
    .found
    .expect("the refreshed snapshot");
    assert_eq!(canonical(&found.cube), full);
}

/// `PUT` of a request to `addr`, with a YAML body: the status and the JSON answer.
async fn put_yaml(addr: std::net::SocketAddr, path: &str, yaml: &str) -> (u16, serde_json::Value) {
    crate::util::send_json(addr, "PUT", path, "application/yaml", yaml).await
}

/// A server of `yaml` over `data` (relative source paths resolve there), no snapshots.
async fn serve(yaml: &str, data: &Path) -> crate::util::Listening {
    let built = lattice_server::build_or_load_definition(
        yaml.to_string(),
        None,
        Some(data),
        &BuildOptions::default(),
        None,
    )
    .await
    .expect("the cube is served");
    let config = lattice_server::Config {
        watch_interval: None,
        data_dir: Some(data.to_path_buf()),
        ..lattice_server::Config::default()
    };
    crate::util::listen(
        lattice_server::Server::new(config, vec![lattice_server::Served { built, path: None }])
            .expect("server"),
    )
    .await
}

/// A new definition that only moves a band's edges is made from the serving cube's base rows
/// (no fact read again) and answers as a full build of it; one that changes what a fact's base
/// rows hold is built in full and says why.
#[tokio::test]
async fn a_definition_changing_only_bands_reuses_the_base_rows() {
    use crate::snapshots::{answers, get_json};
    let yaml = lattice_defs::BANK_CRM_YAML;
    let data = crate::util::parquet_dir();
    let server = serve(yaml, data).await;
    let edges = "edges: [10000, 50000, 200000, 1000000]";
    assert!(yaml.contains(edges));
    let banded = yaml.replace(edges, "edges: [5000, 60000, 150000, 900000]");
    let put = format!("/v1/cubes/{CUBE}/definition");
    let (status, body) = put_yaml(server.addr, &put, &banded).await;
    assert_eq!(status, 200, "{body}");
    let info = get_json(server.addr, &format!("/v1/cubes/{CUBE}")).await;
    assert_eq!(info["origin"], "refreshed", "{info}");
    assert_eq!(
        info["build"]["fact_rows"], 0,
        "no fact row read again: {info}"
    );
    // Only the cuboids showing the deposit band are built again; the others are the cube's.
    let merged = &info["build"]["merged"];
    let count = |way: &str| {
        merged[way]
            .as_u64()
            .unwrap_or_else(|| panic!("{way}: {info}"))
    };
    assert!(count("replaced") + count("rebuilt") > 0, "{merged}");
    assert!(
        count("combined") > count("replaced") + count("rebuilt"),
        "{merged}"
    );
    let full = serve(&banded, data).await;
    assert_eq!(answers(&server).await, answers(&full).await);
    let band = json!({"measures": ["customers", "deposit_balance"], "rows": ["customer.deposit_band", "time.quarter"]});
    let ask = |addr| {
        let band = band.clone();
        async move {
            let (status, mut answer) =
                crate::util::post_json(addr, &format!("/v1/cubes/{CUBE}/query"), &band.to_string())
                    .await;
            assert_eq!(status, 200, "{answer}");
            answer.as_object_mut().expect("object").remove("meta");
            answer
        }
    };
    assert_eq!(ask(server.addr).await, ask(full.addr).await);
    full.stop().await;

    let measured = banded.replace(
        "fee_income:       { fact: transactions, agg: sum, column: fee_income,",
        "fee_income:       { fact: transactions, agg: sum, column: amount,",
    );
    assert_ne!(measured, banded);
    let (status, body) = put_yaml(server.addr, &put, &measured).await;
    assert_eq!(status, 200, "{body}");
    let info = get_json(server.addr, &format!("/v1/cubes/{CUBE}")).await;
    assert_eq!(info["origin"], "built", "{info}");
    let why = info["rebuilt_because"].as_str().unwrap_or("");
    assert!(why.contains("'transactions'"), "{info}");
    server.stop().await;
}

/// Sources registered for a cube built from them (`load_registered`, as a snapshot start and
/// a refresh take them) compute an allocation only when a question reads it, and then the same
/// table as a load that computes it up front.
#[tokio::test]
async fn a_lazily_computed_allocation_equals_the_one_computed_up_front() {
    let model = crate::util::bank_crm(crate::util::parquet_dir(), false).expect("definition");
    let eager = load::load(&model).await.expect("sources");
    let lazy = load::load_registered(&model).await.expect("sources");
    assert!(lazy.allocations.is_empty());
    let sql = "SELECT customer_id, month, SUM(operating_cost) AS cost, COUNT(*) AS n \
               FROM branch_cost GROUP BY customer_id, month ORDER BY customer_id, month";
    let rows = |ctx: &datafusion::prelude::SessionContext| {
        let ctx = ctx.clone();
        async move {
            let batches = ctx
                .sql(sql)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            arrow::util::pretty::pretty_format_batches(&batches)
                .expect("format")
                .to_string()
        }
    };
    let expected = rows(&eager.ctx).await;
    assert!(expected.lines().count() > 100, "{expected}");
    assert_eq!(rows(&lazy.ctx).await, expected);
    // Asked again: the table computed once answers.
    assert_eq!(rows(&lazy.ctx).await, expected);
}
