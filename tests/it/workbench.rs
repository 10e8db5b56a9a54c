//! The band workbench: a changed band previewed from the served cube (no rebuild) places the
//! customers exactly as SQL over the raw facts does with the new edges or quantiles, beside
//! the bands serving; the HTTP routes validate at line and column and keep the preview from
//! scoped and suppressed principals.

use std::collections::BTreeMap;

use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::analytics::BandPreview;
use serde_json::json;

use crate::auth::{App, app_over};
use crate::query_suite::{Cell, fixture, run_sql};
use crate::util::parquet_dir;

const DEPOSIT_EDGES: &str = "edges: [10000, 50000, 200000, 1000000]";

/// The shipped definition with `from` replaced by `to` (once).
fn changed(from: &str, to: &str) -> lattice_defs::Model {
    let yaml = lattice_defs::BANK_CRM_YAML;
    assert!(yaml.contains(from), "the definition has {from}");
    lattice_defs::parse_str(&yaml.replacen(from, to, 1), "bank_crm.yaml", parquet_dir())
        .expect("the changed definition is valid")
}

fn only(bands: &[BandPreview], level: &str) -> BandPreview {
    assert_eq!(bands.len(), 1, "one changed band: {bands:?}");
    assert_eq!(bands[0].level, level);
    bands[0].clone()
}

/// `(old band, new band) -> customers` from SQL whose rows are `(old, new, count)` with band
/// indexes (NULL: `unknown`, the last).
pub(crate) async fn sql_moves(sql: &str, unknown: usize) -> BTreeMap<(usize, usize), u64> {
    let f = fixture().await;
    let table = run_sql(&f.sql, sql).await.expect("SQL");
    let index = |c: &Cell| match c {
        Cell::Int(i) => *i as usize,
        Cell::Null => unknown,
        other => panic!("a band index, not {other:?}"),
    };
    table
        .rows
        .iter()
        .map(|r| {
            let Cell::Int(n) = r[2] else {
                panic!("a count")
            };
            ((index(&r[0]), index(&r[1])), n as u64)
        })
        .collect()
}

fn preview_moves(p: &BandPreview) -> BTreeMap<(usize, usize), u64> {
    let mut out = BTreeMap::new();
    for (i, row) in p.moves.iter().enumerate() {
        for (j, n) in row.iter().enumerate() {
            if *n > 0 {
                out.insert((i, j), *n);
            }
        }
    }
    out
}

/// `CASE` giving the index of the fixed-edge band of `v`.
fn edge_band(v: &str, edges: &[&str]) -> String {
    let mut s = "CASE".to_string();
    for (i, e) in edges.iter().enumerate() {
        s += &format!(" WHEN {v} < {e} THEN {i}");
    }
    s + &format!(" ELSE {} END", edges.len())
}

/// A month's deposit band per customer: every customer of the dimension table, the sum of
/// its deposits that month (no rows: 0; rows of NULLs only: unknown).
pub(crate) fn deposit_moves_sql(month: &str, old: &[&str], new: &[&str]) -> String {
    let v = "CASE WHEN d.customer_id IS NULL THEN 0 ELSE d.deposit END";
    format!(
        "WITH d AS (SELECT customer_id, SUM(deposit_balance) AS deposit FROM balances
                    WHERE month = DATE '{month}-01' GROUP BY customer_id),
              per AS (SELECT c.customer_id, {v} AS v FROM customers c
                      LEFT JOIN d ON d.customer_id = c.customer_id)
         SELECT {} AS old_band, {} AS new_band, COUNT(*) AS n FROM per
         GROUP BY 1, 2",
        edge_band("v", old),
        edge_band("v", new)
    )
}

#[tokio::test]
async fn a_changed_deposit_band_moves_the_customers_sql_moves() {
    let f = fixture().await;
    let session = f.cube.session(Access::everything());
    let new = changed(DEPOSIT_EDGES, "edges: [20000, 50000, 300000, 1000000]");
    let old_edges = ["10000", "50000", "200000", "1000000"];
    let new_edges = ["20000", "50000", "300000", "1000000"];
    // The latest month by default, and an earlier one asked for.
    for period in [None, Some("2025-03")] {
        let answer = session.preview_bands(&new, period).expect("preview");
        assert!(answer.skipped.is_empty(), "{:?}", answer.skipped);
        let p = only(&answer.bands, "deposit_band");
        let month = p.period.clone().expect("a monthly band has a period");
        if let Some(asked) = period {
            assert_eq!(month, asked);
        } else {
            assert_eq!(Some(&month), p.periods.last(), "the latest by default");
        }
        assert_eq!(
            p.old_labels,
            ["<10k", "10k-50k", "50k-200k", "200k-1M", "1M+", "unknown"]
        );
        assert_eq!(p.new_labels, p.old_labels, "labels unchanged");
        let want = sql_moves(&deposit_moves_sql(&month, &old_edges, &new_edges), 5).await;
        assert_eq!(preview_moves(&p), want, "moves in {month}");
        let customers: u64 = want.values().sum();
        assert_eq!(p.entities, customers, "every customer counted once");
        assert_eq!(p.old_counts.iter().sum::<u64>(), customers);
        assert_eq!(p.new_counts.iter().sum::<u64>(), customers);
        let moved: u64 = want
            .iter()
            .filter(|((i, j), _)| i != j)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(p.moved, moved);
        assert!(moved > 0, "raising the first edge moves someone in {month}");
    }
}

#[tokio::test]
async fn new_quantiles_rank_the_customers_as_cume_dist_does() {
    let f = fixture().await;
    let session = f.cube.session(Access::everything());
    let new = changed("quantiles: [0.8, 0.95]", "quantiles: [0.5, 0.9]");
    let answer = session.preview_bands(&new, Some("2025")).expect("preview");
    let p = only(&answer.bands, "value_class");
    assert_eq!(p.period.as_deref(), Some("2025"));
    assert_eq!(p.new_labels, ["C", "B", "A", "unknown"]);
    // Each year the customers (of the dimension table) with fee income, ranked.
    let class = |qs: [&str; 2]| {
        format!(
            "CASE WHEN r.cd IS NULL THEN NULL
                  ELSE (CASE WHEN r.cd > {} THEN 1 ELSE 0 END + CASE WHEN r.cd > {} THEN 1 ELSE 0 END) END",
            qs[0], qs[1]
        )
    };
    let (old_class, new_class) = (class(["0.8", "0.95"]), class(["0.5", "0.9"]));
    let sql = format!(
        "WITH v AS (SELECT t.customer_id, SUM(t.fee_income) AS v FROM transactions t
                    JOIN customers c ON c.customer_id = t.customer_id
                    WHERE t.txn_date >= DATE '2025-01-01' AND t.txn_date < DATE '2026-01-01'
                    GROUP BY t.customer_id HAVING SUM(t.fee_income) IS NOT NULL),
              r AS (SELECT customer_id, CUME_DIST() OVER (ORDER BY v) AS cd FROM v)
         SELECT {old_class} AS old_band, {new_class} AS new_band, COUNT(*) AS n
         FROM customers c LEFT JOIN r ON r.customer_id = c.customer_id
         GROUP BY 1, 2"
    );
    assert_eq!(preview_moves(&p), sql_moves(&sql, 3).await);
    assert!(p.moved > 0);
}

#[tokio::test]
async fn renamed_labels_move_no_one() {
    let f = fixture().await;
    let session = f.cube.session(Access::everything());
    let new = changed(
        r#"labels: ["0", "1", "2", "3-4", "5+"]"#,
        r#"labels: ["none", "one", "two", "3-4", "5+"]"#,
    );
    let answer = session.preview_bands(&new, None).expect("preview");
    let p = only(&answer.bands, "products_band");
    assert_eq!(
        p.old_counts, p.new_counts,
        "the same edges: the same counts"
    );
    assert_eq!(p.moved, 0, "a renamed band is the same band");
    assert_eq!(p.new_labels[..3], ["none", "one", "two"]);
    for (i, row) in p.moves.iter().enumerate() {
        for (j, n) in row.iter().enumerate() {
            assert!(i == j || *n == 0, "only the diagonal: {:?}", p.moves);
        }
    }
}

#[tokio::test]
async fn what_cannot_be_previewed_says_why_and_scopes_are_refused() {
    let f = fixture().await;
    let admin = f.cube.session(Access::everything());
    // A band over a column of the customers table: its values are not kept.
    let new = changed("edges: [25, 35, 45, 55, 65]", "edges: [30, 40, 50, 60, 70]");
    let answer = admin.preview_bands(&new, None).expect("preview");
    assert!(answer.bands.is_empty());
    assert_eq!(answer.skipped.len(), 1);
    assert_eq!(answer.skipped[0].band, "customer.age_band");
    assert!(
        answer.skipped[0].reason.contains("column"),
        "{:?}",
        answer.skipped
    );
    // An unchanged definition previews nothing.
    let same = changed(DEPOSIT_EDGES, DEPOSIT_EDGES);
    let none = admin.preview_bands(&same, None).expect("preview");
    assert!(none.bands.is_empty() && none.skipped.is_empty());
    // A period the band does not have.
    let moved = changed(DEPOSIT_EDGES, "edges: [20000, 50000, 300000, 1000000]");
    let err = admin.preview_bands(&moved, Some("1999-01")).unwrap_err();
    assert!(
        err.to_string().contains("'1999-01' is not a period"),
        "{err}"
    );
    // Counts over every customer: not for a scope, nor under suppression.
    let scoped = f.cube.session(Access {
        scope: vec![
            "region.province = Zhejiang"
                .parse::<ScopeRule>()
                .expect("rule"),
        ],
        roles: vec![],
    });
    let err = scoped.preview_bands(&moved, None).unwrap_err();
    assert_eq!(err.code(), "forbidden", "{err}");
}

async fn server() -> App {
    app_over(true, None, |_, _| {}).await
}

#[tokio::test]
async fn the_routes_validate_at_line_and_column_and_preview() {
    let app = server().await;
    let text = app
        .call("GET", "/v1/cubes/bank_crm/definition", None, None)
        .await
        .text;
    // Valid, with one band changed.
    let moved = text.replacen(DEPOSIT_EDGES, "edges: [20000, 50000, 300000, 1000000]", 1);
    let r = app
        .call(
            "POST",
            "/v1/cubes/bank_crm/definition/validate",
            None,
            Some(&json!(moved)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["valid"], true);
    assert_eq!(r.body["changed_bands"], json!(["customer.deposit_band"]));
    // Broken: edges out of order, reported at their line.
    let line = text
        .lines()
        .position(|l| l.contains("edges: [1, 5, 20, 50]"))
        .expect("txn_count_band's edges")
        + 1;
    let broken = text.replacen("edges: [1, 5, 20, 50]", "edges: [50, 5]", 1);
    let r = app
        .call(
            "POST",
            "/v1/cubes/bank_crm/definition/validate",
            None,
            Some(&json!(broken)),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "invalid_definition");
    let errors = r.body["error"]["details"]["errors"]
        .as_array()
        .expect("errors");
    assert!(
        errors.iter().any(|e| e["line"] == line),
        "an error at line {line}: {errors:?}"
    );
    // Nothing was applied: the served definition is as it was.
    let now = app
        .call("GET", "/v1/cubes/bank_crm/definition", None, None)
        .await
        .text;
    assert_eq!(now, text);
    // The preview over HTTP is the engine's.
    let r = app
        .call(
            "POST",
            "/v1/cubes/bank_crm/bands/preview?period=2025-03",
            None,
            Some(&json!(moved)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let f = fixture().await;
    let want = f
        .cube
        .session(Access::everything())
        .preview_bands(
            &changed(DEPOSIT_EDGES, "edges: [20000, 50000, 300000, 1000000]"),
            Some("2025-03"),
        )
        .expect("preview");
    assert_eq!(r.body["bands"][0]["moves"], json!(want.bands[0].moves));
    assert_eq!(r.body["bands"][0]["period"], "2025-03");
    // A bad period and a definition of another cube are errors that say so.
    let r = app
        .call(
            "POST",
            "/v1/cubes/bank_crm/bands/preview?period=2031-01",
            None,
            Some(&json!(moved)),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("2031-01"), "{}", r.text);
    let other = moved.replacen("cube: bank_crm", "cube: other", 1);
    let r = app
        .call(
            "POST",
            "/v1/cubes/bank_crm/definition/validate",
            None,
            Some(&json!(other)),
        )
        .await;
    assert_eq!(r.body["error"]["code"], "cube_name_mismatch", "{}", r.text);
}
