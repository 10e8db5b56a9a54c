//! Pareto (`engine/src/analytics/pareto.rs`) held to a SQL twin written here over the raw
//! tables — each member's total, `ROW_NUMBER` by value (ties by name) and a running `SUM`
//! window — on the default cube (cuboids) and without cuboids (the fallback), with a filter,
//! on a coarser level with a count, and under a principal's scope; bad requests; HTTP and the
//! CLI once; and the generator's planted skew (the top 20% of customers bring about 80% of the
//! fee income).

use std::sync::Arc;

use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::analytics::{AnalyticsError, ParetoAnswer, ParetoQuery};
use lattice_engine::query::Dataset;
use serde_json::Value as Json;

use crate::query_suite::{Cell, Fixture, fixture, run_sql};
use crate::util::parquet_dir;
use crate::util::post_json;

fn request(json: &str) -> ParetoQuery {
    ParetoQuery::from_json(json).expect("request")
}

async fn ask(cube: &Arc<Dataset>, json: &str, access: &Access) -> ParetoAnswer {
    cube.session(access.clone())
        .pareto(&request(json))
        .await
        .unwrap_or_else(|e| panic!("{json}: {e} ({})", e.code()))
}

/// The SQL twin's ranking of the members of `values` (a query with columns `member`, `v`):
/// those with a value, by value descending then member name, with running totals.
fn ranking(values: &str) -> String {
    format!(
        "WITH v AS ({values}),
              r AS (SELECT v, ROW_NUMBER() OVER (ORDER BY v DESC, member) AS k,
                           SUM(v) OVER (ORDER BY v DESC, member ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum
                    FROM v WHERE v IS NOT NULL),
              n AS (SELECT COUNT(*) AS n, SUM(v) AS total FROM r)"
    )
}

/// The cumulative value of the top `k` members, `k = 1..=N`.
async fn ranked(fx: &Fixture, values: &str) -> Vec<Cell> {
    let sql = format!("{} SELECT k, cum FROM r ORDER BY k", ranking(values));
    let t = run_sql(&fx.sql, &sql).await.expect("SQL");
    for (i, r) in t.rows.iter().enumerate() {
        assert_eq!(r[0], Cell::Int(i as i128 + 1), "ranks are 1..N");
    }
    t.rows.into_iter().map(|mut r| r.remove(1)).collect()
}

/// `ceil(c * N)`, and the first rank whose running total reaches `r * total`, in SQL's exact
/// decimals.
async fn cut_and_reach(fx: &Fixture, values: &str, c: f64, r: f64) -> (usize, Option<usize>) {
    let sql = format!(
        "{} SELECT MAX(CAST(CEIL(CAST({c} AS DECIMAL(10, 6)) * n.n) AS BIGINT)) AS top,
                  MIN(CASE WHEN n.total > 0 AND r.cum >= CAST({r} AS DECIMAL(10, 6)) * n.total THEN r.k END) AS reach
           FROM r CROSS JOIN n",
        ranking(values)
    );
    let t = run_sql(&fx.sql, &sql).await.expect("SQL");
    let Cell::Int(top) = t.rows[0][0] else {
        panic!("{:?}", t.rows)
    };
    let reach = match t.rows[0][1] {
        Cell::Int(k) => Some(k as usize),
        Cell::Null => None,
        ref other => panic!("{other}"),
    };
    (top as usize, reach)
}

fn f(c: &Cell) -> f64 {
    match c {
        Cell::Dec(v, s) => *v as f64 / 10f64.powi(*s as i32),
        Cell::Int(v) => *v as f64,
        other => panic!("{other}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

fn cell(v: &Json) -> Cell {
    Cell::from_json(v, Some("decimal"))
}

/// Checks `a` against the SQL twin over `values`.
async fn check(fx: &Fixture, what: &str, a: &ParetoAnswer, q: &ParetoQuery, values: &str) {
    let cum = ranked(fx, values).await;
    let n = cum.len();
    assert!(n > 3, "{what}: {n} members");
    assert_eq!(a.members, n, "{what}: members");
    // The top 0 hold 0, at the scale of the others.
    let zero = match &cum[0] {
        Cell::Dec(_, s) => Cell::Dec(0, *s),
        _ => Cell::Int(0),
    };
    let at = |k: usize| if k == 0 { &zero } else { &cum[k - 1] };
    let total = at(n);
    assert!(
        cell(&a.total).same(total),
        "{what}: total {} vs SQL {total}",
        a.total
    );
    let share = |k: usize| (f(total) > 0.0).then(|| f(at(k)) / f(total));
    // The curve: ranks ceil(i * N / points), i = 0..=points, distinct.
    let mut ranks: Vec<usize> = (0..=q.points as usize)
        .map(|i| (i * n).div_ceil(q.points as usize))
        .collect();
    ranks.dedup();
    assert_eq!(
        a.curve.iter().map(|p| p.members).collect::<Vec<_>>(),
        ranks,
        "{what}: curve ranks"
    );
    for p in &a.curve {
        let k = p.members;
        assert!(
            cell(&p.cumulative).same(at(k)),
            "{what}: cumulative at {k}: {} vs SQL {}",
            p.cumulative,
            at(k)
        );
        match (p.y, share(k)) {
            (Some(y), Some(want)) => assert!(close(y, want), "{what}: y at {k}: {y} vs {want}"),
            (y, want) => assert_eq!(y, want, "{what}: y at {k}"),
        }
        assert!(close(p.x, k as f64 / n.max(1) as f64), "{what}: x at {k}");
    }
    assert_eq!(a.cuts.len(), q.cuts.len());
    assert_eq!(a.reach.len(), q.reach.len());
    for (i, (c, r)) in q.cuts.iter().zip(&q.reach).enumerate() {
        let (top, reach) = cut_and_reach(fx, values, *c, *r).await;
        let got = &a.cuts[i];
        assert_eq!(got.members, top, "{what}: members in the top {c}");
        assert!(
            cell(&got.value).same(at(top)),
            "{what}: value of the top {c}"
        );
        match (got.share, share(top)) {
            (Some(s), Some(want)) => assert!(close(s, want), "{what}: share of the top {c}"),
            (s, want) => assert_eq!(s, want, "{what}: share of the top {c}"),
        }
        assert_eq!(a.reach[i].members, reach, "{what}: members to reach {r}");
    }
}

const FEES: &str =
    "SELECT COALESCE(CAST(c.customer_id AS VARCHAR), 'unknown') AS member, SUM(t.fee_income) AS v
                    FROM transactions t LEFT JOIN customers c ON c.customer_id = t.customer_id";

#[tokio::test]
async fn top_cuts_curve_and_reach_equal_sql_with_and_without_a_filter() {
    let fx = fixture().await;
    let cases = [
        (
            "fee income per customer",
            r#"{"measure": "fee_income", "cuts": [0.2, 0.01, 0.5], "reach": [0.8, 0.5, 1.0], "points": 100}"#,
            format!("{FEES} GROUP BY 1"),
        ),
        (
            "fee income per customer in 2025",
            r#"{"level": "customer.id", "measure": "fee_income", "cuts": [0.2], "reach": [0.8], "points": 7,
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
            format!("{FEES} WHERE date_part('year', t.txn_date) = 2025 GROUP BY 1"),
        ),
        (
            "transactions per segment",
            r#"{"level": "customer.segment", "measure": "txn_count", "cuts": [0.5], "reach": [0.9], "points": 1000}"#,
            "SELECT COALESCE(c.segment, 'unknown') AS member, COUNT(*) AS v
             FROM transactions t LEFT JOIN customers c ON c.customer_id = t.customer_id GROUP BY 1"
                .to_string(),
        ),
    ];
    for (what, json, values) in cases {
        let q = request(json);
        for (path, cube) in [("cube", &fx.cube), ("fallback", &fx.bare)] {
            let a = ask(cube, json, &Access::everything()).await;
            check(fx, &format!("{what} ({path})"), &a, &q, &values).await;
        }
    }
}

#[tokio::test]
async fn a_scoped_principal_gets_the_pareto_of_their_own_customers() {
    let fx = fixture().await;
    let t = run_sql(
        &fx.sql,
        "SELECT manager_name FROM managers ORDER BY manager_id LIMIT 1",
    )
    .await
    .expect("SQL");
    let Cell::Text(manager) = &t.rows[0][0] else {
        panic!("{:?}", t.rows)
    };
    let rule: ScopeRule = format!("manager.manager = {manager}")
        .parse()
        .expect("scope");
    let access = Access {
        scope: vec![rule],
        roles: Vec::new(),
    };
    let json = r#"{"measure": "fee_income", "cuts": [0.2], "reach": [0.8], "points": 20}"#;
    let values = format!(
        "{FEES} JOIN managers m ON m.manager_id = c.manager_id WHERE m.manager_name = '{manager}' GROUP BY 1"
    );
    for (path, cube) in [("cube", &fx.cube), ("fallback", &fx.bare)] {
        let a = ask(cube, json, &access).await;
        check(
            fx,
            &format!("scoped to {manager} ({path})"),
            &a,
            &request(json),
            &values,
        )
        .await;
    }
    // Roles that see no single customer's values get no curve of the top few.
    let analyst = Access {
        scope: Vec::new(),
        roles: vec!["analyst".into()],
    };
    let e = fx
        .cube
        .session(analyst.clone())
        .pareto(&request(json))
        .await
        .expect_err("analyst");
    assert_eq!(e.code(), "forbidden", "{e}");
}

#[tokio::test]
async fn the_top_fifth_of_customers_bring_about_four_fifths_of_the_fee_income() {
    let fx = fixture().await;
    let a = ask(
        &fx.cube,
        r#"{"measure": "fee_income"}"#,
        &Access::everything(),
    )
    .await;
    let top = a.cuts[0].share.expect("a positive total");
    let reach = a.reach[0].member_share.expect("reached");
    eprintln!(
        "pareto: {} customers, fee income {}; the top 20% ({}) hold {top:.3}; 80% is reached by the top {:.3} ({} customers)",
        a.members,
        a.total,
        a.cuts[0].members,
        reach,
        a.reach[0].members.unwrap_or(0)
    );
    assert!((0.7..=0.9).contains(&top), "the top 20% hold {top}");
    assert!((0.1..=0.3).contains(&reach), "80% needs the top {reach}");
    assert_eq!(a.curve.len(), 101);
    assert_eq!(a.curve.last().map(|p| p.y), Some(Some(1.0)));
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let fx = fixture().await;
    let cases = [
        (
            r#"{"measure": "fee_incom"}"#,
            "unknown_measure",
            "did you mean 'fee_income'",
        ),
        (
            r#"{"level": "customer.idd", "measure": "fee_income"}"#,
            "unknown_level",
            "did you mean 'customer.id'",
        ),
        (
            r#"{"level": "time.month", "measure": "fee_income"}"#,
            "bad_level",
            "is a time level",
        ),
        (
            r#"{"measure": "fee_income", "cuts": [1.5]}"#,
            "bad_threshold",
            "`cuts`: 1.5 is not a share",
        ),
        (
            r#"{"measure": "fee_income", "cuts": [0]}"#,
            "bad_threshold",
            "`cuts`: 0 is not a share",
        ),
        (
            r#"{"measure": "fee_income", "reach": [0.1234567]}"#,
            "bad_threshold",
            "more than 6 decimal places",
        ),
        (
            r#"{"measure": "fee_income", "points": 0}"#,
            "bad_threshold",
            "`points`: 0 curve points",
        ),
        (
            r#"{"measure": "avg_ticket"}"#,
            "bad_measure",
            "'avg_ticket' has inexact values",
        ),
        (
            r#"{"measure": "fee_income", "cut": [0.2]}"#,
            "malformed_query",
            "unknown field `cut`",
        ),
        (
            r#"{"measure": "fee_income", "filters": [{"level": "time.year", "op": "eq", "value": "2030"}]}"#,
            "unknown_member",
            "'2030' is not a member of 'time.year'",
        ),
    ];
    for (json, code, says) in cases {
        let e: AnalyticsError = match ParetoQuery::from_json(json) {
            Ok(q) => fx
                .cube
                .session(Access::everything())
                .pareto(&q)
                .await
                .expect_err(json),
            Err(e) => e,
        };
        assert_eq!(e.code(), code, "{json}: {e}");
        assert!(e.to_string().contains(says), "{json}: {e}");
    }
}

/// The answer as a client reads it (through JSON text, as floats round-trip there), without
/// its timings.
fn without_meta(a: &ParetoAnswer) -> Json {
    let text = serde_json::to_string(a).expect("answer");
    let mut v: Json = serde_json::from_str(&text).expect("JSON");
    v.as_object_mut().expect("object").remove("meta");
    v
}

#[tokio::test]
async fn pareto_answers_over_http_and_from_the_cli() {
    let fx = fixture().await;
    let listening = crate::util::serve_shipped().await;
    let path = "/v1/cubes/bank_crm/analytics/pareto";
    let json = r#"{"measure": "fee_income", "cuts": [0.2, 0.05], "points": 10}"#;
    let (status, mut body) = post_json(listening.addr, path, json).await;
    assert_eq!(status, 200, "{body}");
    crate::util::assert_conforms("ParetoAnswer", &body);
    body.as_object_mut().expect("object").remove("meta");
    let engine = ask(&fx.cube, json, &Access::everything()).await;
    assert_eq!(body, without_meta(&engine));
    let (status, body) = post_json(
        listening.addr,
        path,
        r#"{"measure": "fee_income", "cuts": [2]}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Json::from("bad_threshold")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["field"], "cuts");
    listening.stop().await;

    let defs = tempfile::tempdir().expect("tempdir");
    let yaml = defs.path().join("bank_crm.yaml");
    std::fs::write(&yaml, lattice_defs::BANK_CRM_YAML).expect("write");
    let request = defs.path().join("q.json");
    std::fs::write(&request, json).expect("write");
    let out = crate::cli::lattice()
        .arg("analyze")
        .arg(&yaml)
        .arg("--data")
        .arg(parquet_dir())
        .args(["--kind", "pareto", "--json"])
        .arg(&request)
        .output()
        .expect("run lattice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut answer: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    answer.as_object_mut().expect("object").remove("meta");
    assert_eq!(answer, without_meta(&engine));
}
