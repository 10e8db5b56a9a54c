//! Which cuboids a build chooses: Kylin aggregation groups enumerate exactly the subsets their
//! rules allow; `auto` stays inside its memory budget; `lattice build --explain` says why.

use std::collections::BTreeSet;

use lattice_engine::build::{BuildOptions, build_cube_with_report};

use crate::cli::run_on_test_data;
use crate::reference::{SHOP_FILES, SHOP_YAML, check_cube, load_yaml, write_files};
use crate::util::{bank_crm, parquet_dir};

fn level_sets(
    report: &lattice_engine::build::BuildReport,
    model: &lattice_defs::Model,
    fact: &str,
) -> BTreeSet<Vec<String>> {
    let f = model.fact(fact).expect("fact");
    report
        .plans
        .iter()
        .filter(|p| p.fact == f)
        .map(|p| {
            let mut names: Vec<String> = p.levels.iter().map(|l| model.level_name(*l)).collect();
            names.sort();
            names
        })
        .collect()
}

#[tokio::test]
async fn aggregation_groups_enumerate_what_their_rules_allow() {
    let yaml = SHOP_YAML.replace(
        "  mode: explicit\n  cuboids: [[customer.kind]]",
        "  mode: groups\n  groups:\n\
         \x20   - includes: [time.year, time.month, customer.kind, city.city]\n\
         \x20     mandatory: [time.year]\n\
         \x20     hierarchies: [[time.year, time.month]]\n\
         \x20     joint: [[customer.kind, city.city]]",
    );
    let dir = write_files(SHOP_FILES);
    let (model, sources) = load_yaml(&yaml, dir.path()).await;
    let (cube, report) = build_cube_with_report(&model, &sources, &BuildOptions::default())
        .await
        .expect("build");
    // Always the year; the month only with the year (it is); kind and city together or not.
    let expected: BTreeSet<Vec<String>> = [
        vec!["time.year"],
        vec!["time.month", "time.year"],
        vec!["city.city", "customer.kind", "time.year"],
        vec!["city.city", "customer.kind", "time.month", "time.year"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect();
    for fact in ["sales", "balances"] {
        assert_eq!(level_sets(&report, &model, fact), expected, "fact {fact}");
    }
    assert!(
        report
            .plans
            .iter()
            .all(|p| p.reason == "aggregation group 0")
    );
    let (cuboids, _) = check_cube(&cube, &sources.ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cuboids, 8);
}

#[tokio::test]
async fn auto_stays_inside_its_budget_and_says_why() {
    let dir = parquet_dir();
    let tight = lattice_defs::BANK_CRM_YAML.replace("budget_mb: 1024", "budget_mb: 1");
    let model = lattice_defs::parse_str(&tight, "bank_crm.yaml", dir).expect("definition");
    let sources = lattice_engine::source::load::load(&model)
        .await
        .expect("load");
    let (_, small) = build_cube_with_report(&model, &sources, &BuildOptions::default())
        .await
        .expect("build");
    for f in 0..model.facts.len() {
        let bytes: u64 = small
            .plans
            .iter()
            .filter(|p| p.fact == f)
            .map(|p| p.est_bytes)
            .sum();
        let grand_total = small
            .plans
            .iter()
            .find(|p| p.fact == f && p.levels.is_empty())
            .expect("grand total");
        assert!(
            bytes <= 1024 * 1024 + grand_total.est_bytes,
            "fact {f}: {bytes} estimated bytes over a 1 MB budget"
        );
    }
    let model = bank_crm(dir, false).expect("definition");
    let (_, large) = build_cube_with_report(&model, &sources, &BuildOptions::default())
        .await
        .expect("build");
    assert!(large.plans.len() >= small.plans.len());
    assert!(large.plans.iter().any(|p| p.reason == "grand total"));
    assert!(
        large
            .plans
            .iter()
            .any(|p| p.reason.starts_with("greedy: saves "))
    );
    // What was built matches what was planned, plan for plan.
    assert_eq!(large.built.len(), large.plans.len());
}

#[test]
fn build_explain_lists_cuboids_and_reasons() {
    let stdout = run_on_test_data(&["build", "--explain"]);
    assert!(
        stdout.contains("(grand total)") && stdout.contains("greedy: saves"),
        "{stdout}"
    );
    assert!(stdout.contains("built cube 'bank_crm'"), "{stdout}");
    let fact_rows: u64 = stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("transactions: ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no transactions line in:\n{stdout}"));
    assert!(fact_rows > 10_000, "{stdout}");
}
