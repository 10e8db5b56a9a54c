//! Sources as folders and globs: the shipped cube over the data set written one file per month
//! (`lattice gen --partition-by month`, Parquet and CSV) answers as over single files; a glob
//! reads the files it matches; a folder holding a file of another format or a bad file is
//! refused naming that file; a new month's file changes the source's fingerprint.

use std::path::Path;
use std::sync::Arc;

use lattice_engine::EngineError;
use lattice_engine::access::Access;
use lattice_engine::query::Query;
use lattice_engine::source::load;
use lattice_engine::source::synth::{DataFormat, GenOptions, Layout, generate_in};
use serde_json::{Value, json};

use crate::util::{TEST_SCALE, TEST_SEED, csv_dir, parquet_dir};

fn monthly(format: DataFormat) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    generate_in(
        &GenOptions {
            scale: TEST_SCALE,
            seed: TEST_SEED,
            format,
        },
        Layout::MonthlyFolders,
        dir.path(),
    )
    .expect("generate");
    dir
}

fn questions() -> Vec<Value> {
    vec![
        json!({"measures": ["txn_amount", "txn_count", "active_customers"], "rows": ["time.month", "channel.channel"]}),
        json!({"measures": ["deposit_balance", "loan_balance", "customers"], "rows": ["time.quarter", "product.category"]}),
        json!({"measures": ["contribution", "allocated_cost"], "rows": ["region.province", "time.year"]}),
        json!({"measures": ["txn_count"], "rows": ["customer.value_class", "customer.txn_amount_band"]}),
    ]
}

/// The shipped cube over `yaml` in `data`, its answers to `questions` (without `meta`).
async fn answers(yaml: &str, data: &Path, questions: &[Value]) -> Vec<Value> {
    let model = lattice_defs::parse_str(yaml, "bank_crm.yaml", data).expect("definition");
    let sources = load::load(&model).await.expect("sources");
    let cube = lattice_engine::open(
        &model,
        &sources,
        &lattice_engine::build::BuildOptions::default(),
    )
    .await
    .expect("build");
    let session = Arc::new(cube).session(Access::everything());
    let mut out = Vec::new();
    for q in questions {
        let query = Query::from_json(&q.to_string()).expect("query");
        let answer = session.query(&query).await.expect("answer");
        let mut value = serde_json::to_value(&answer).expect("JSON");
        value.as_object_mut().expect("object").remove("meta");
        out.push(value);
    }
    out
}

#[tokio::test]
async fn the_shipped_cube_answers_the_same_over_monthly_folders() {
    let yaml = lattice_defs::BANK_CRM_YAML;
    let expected = answers(yaml, parquet_dir(), &questions()).await;
    let parquet = monthly(DataFormat::Parquet);
    assert!(
        parquet
            .path()
            .join("transactions/2025-03.parquet")
            .is_file()
    );
    assert!(!parquet.path().join("transactions.parquet").exists());
    assert!(parquet.path().join("customers.parquet").is_file());
    assert_eq!(answers(yaml, parquet.path(), &questions()).await, expected);
    let csv = monthly(DataFormat::Csv);
    assert!(csv.path().join("balances/2024-01.csv").is_file());
    // CSV reads fractions at scale 6: compared with the single CSV files.
    let csv_yaml = yaml.replace(".parquet", ".csv");
    let over_csv = answers(&csv_yaml, csv.path(), &questions()).await;
    assert_eq!(over_csv, answers(&csv_yaml, csv_dir(), &questions()).await);
}

#[tokio::test]
async fn a_glob_reads_the_files_it_matches() {
    let data = monthly(DataFormat::Parquet);
    let year = json!({"measures": ["txn_count", "txn_amount"], "rows": ["time.year"]});
    let full = answers(
        lattice_defs::BANK_CRM_YAML,
        data.path(),
        std::slice::from_ref(&year),
    )
    .await;
    let globbed = lattice_defs::BANK_CRM_YAML.replace(
        "transactions: { path: transactions.parquet }",
        "transactions: { path: \"transactions/2024-*.parquet\" }",
    );
    assert_ne!(globbed, lattice_defs::BANK_CRM_YAML);
    let only_2024 = answers(&globbed, data.path(), &[year]).await;
    let rows = only_2024[0]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{}", only_2024[0]);
    assert_eq!(rows[0][0], "2024");
    assert_eq!(
        Some(&rows[0]),
        full[0]["rows"].as_array().expect("rows").first()
    );
}

/// The load error of the shipped cube over `data`.
async fn load_error(data: &Path) -> String {
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", data)
        .expect("definition");
    match load::load(&model).await {
        Ok(_) => panic!("the sources loaded"),
        Err(EngineError::Definition(diags)) => diags
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => panic!("not a definition error: {e}"),
    }
}

#[tokio::test]
async fn a_stray_or_bad_file_in_a_source_folder_is_named() {
    let data = monthly(DataFormat::Parquet);
    let stray = data.path().join("transactions/2026-01.csv");
    std::fs::write(&stray, "txn_id\n1\n").expect("write");
    let err = load_error(data.path()).await;
    assert!(
        err.contains("sources.transactions.path")
            && err.contains(&format!("{} is not a .parquet file", stray.display())),
        "{err}"
    );
    std::fs::remove_file(&stray).expect("rm");
    let bad = data.path().join("balances/2026-01.parquet");
    std::fs::write(&bad, b"PAR1 not really").expect("write");
    let err = load_error(data.path()).await;
    assert!(
        err.contains("sources.balances.path")
            && err.contains(&format!("{} is not a readable parquet file", bad.display())),
        "{err}"
    );
    // Another table's columns in the folder.
    std::fs::copy(data.path().join("customers.parquet"), &bad).expect("copy");
    let err = load_error(data.path()).await;
    assert!(
        err.contains(&format!(
            "the columns of {} differ from those of",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn a_new_month_changes_the_fingerprint() {
    let data = monthly(DataFormat::Parquet);
    let model = lattice_defs::parse_str(lattice_defs::BANK_CRM_YAML, "bank_crm.yaml", data.path())
        .expect("definition");
    let before = load::fingerprint(&model);
    let transactions = before
        .iter()
        .find(|s| s.name == "transactions")
        .expect("transactions");
    let files = transactions.files.as_ref().expect("a folder's files");
    assert_eq!(files.len(), 24);
    assert_eq!(
        transactions.size,
        Some(files.iter().map(|f| f.size.expect("size")).sum())
    );
    assert_eq!(
        transactions.path,
        data.path().join("transactions").display().to_string()
    );
    let customers = before
        .iter()
        .find(|s| s.name == "customers")
        .expect("customers");
    assert!(customers.files.is_none());
    std::fs::copy(
        data.path().join("transactions/2025-12.parquet"),
        data.path().join("transactions/2026-01.parquet"),
    )
    .expect("copy");
    let after = load::fingerprint(&model);
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, _)| b.name.as_str())
        .collect();
    assert_eq!(changed, vec!["transactions"]);
}
