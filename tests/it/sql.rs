//! SQL over the cube tables (`engine/src/sql`): the same answers as the JSON API and as SQL
//! over the raw facts, digit for digit, on every path (cuboids, base rows, fallback), under a
//! principal's scope; what SQL adds above the cube node; and the errors that say which
//! aggregate or filter to write instead.
//!
//! The random questions are the workload generator's (`tests/workload.rs`), written as SQL
//! over the cube table by [`cube_sql`]; `LATTICE_PROPTEST_CASES` sets their number.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use lattice_defs::Model;
use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::query::{Dataset, FilterOp, HavingOp, Query};
use lattice_engine::sql::{self, FixedCubes};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;

use crate::query_props::answer_cells;
use crate::query_suite::{Cell, compare_rows, fixture, run_sql};
use crate::questions::questions;

use crate::query_props::workload::{Rng, question_sql, random_query};

/// A SQL session over one cube as `access` sees it.
pub fn cube_ctx(data: &Arc<Dataset>, access: Access) -> SessionContext {
    let name = data.cube().model.name.clone();
    sql::context(Arc::new(FixedCubes(vec![(name, data.session(access))])))
}

fn ident(level: &str) -> String {
    format!("\"{}\"", level.replace('.', "_"))
}

fn lit(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// `q` as SQL over the cube table: its row levels grouped, its measures through `MEASURE()`,
/// its filters in `WHERE`, its having in `HAVING`. `None` for what SQL over one cube node does
/// not say the same way (a pivot, compare, shares, totals, segments, order or paging, whose
/// ties SQL leaves open, or a prefix with a LIKE wildcard in it).
pub fn cube_sql(model: &Model, q: &Query) -> Option<String> {
    if !q.columns.is_empty()
        || q.compare.is_some()
        || !q.shares.is_empty()
        || q.totals
        || !q.segments.is_empty()
        || !q.order.is_empty()
        || q.limit.is_some()
        || q.offset > 0
    {
        return None;
    }
    let mut select: Vec<String> = q.rows.iter().map(|l| ident(l)).collect();
    select.extend(q.measures.iter().map(|m| format!("MEASURE(\"{m}\")")));
    let mut wheres = Vec::new();
    for f in &q.filters {
        let col = ident(&f.level);
        let one = || lit(f.value.as_deref().unwrap_or(""));
        let list = || {
            f.values
                .iter()
                .flatten()
                .map(|v| lit(v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        wheres.push(match f.op {
            FilterOp::Eq => format!("{col} = {}", one()),
            FilterOp::In => format!("{col} IN ({})", list()),
            FilterOp::NotIn => format!("{col} NOT IN ({})", list()),
            FilterOp::Between => {
                let v = f.values.as_ref()?;
                format!("{col} BETWEEN {} AND {}", lit(&v[0]), lit(&v[1]))
            }
            FilterOp::Prefix => {
                let p = f.value.as_deref()?;
                if p.contains(['%', '_']) {
                    return None;
                }
                format!("{col} LIKE {}", lit(&format!("{p}%")))
            }
            FilterOp::Search => {
                let s = f.value.as_deref()?;
                if s.contains(['%', '_']) {
                    return None;
                }
                format!("{col} ILIKE {}", lit(&format!("%{s}%")))
            }
        });
    }
    let havings: Vec<String> = q
        .having
        .iter()
        .map(|h| {
            let op = match h.op {
                HavingOp::Gt => ">",
                HavingOp::Ge => ">=",
                HavingOp::Lt => "<",
                HavingOp::Le => "<=",
                HavingOp::Eq => "=",
                HavingOp::Ne => "<>",
            };
            format!("MEASURE(\"{}\") {op} {:?}", h.measure, h.value)
        })
        .collect();
    let _ = model;
    let mut sql = format!("SELECT {} FROM bank_crm", select.join(", "));
    if !wheres.is_empty() {
        sql += &format!(" WHERE {}", wheres.join(" AND "));
    }
    if !q.rows.is_empty() {
        let groups: Vec<String> = q.rows.iter().map(|l| ident(l)).collect();
        sql += &format!(" GROUP BY {}", groups.join(", "));
    }
    if !havings.is_empty() {
        sql += &format!(" HAVING {}", havings.join(" AND "));
    }
    Some(sql)
}

/// Rows sorted by their members (the first `levels` cells), for comparing answers whose
/// order SQL leaves open.
fn sorted(mut rows: Vec<Vec<Cell>>, levels: usize) -> Vec<Vec<Cell>> {
    rows.sort_by_key(|r| {
        r.iter()
            .take(levels)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    });
    rows
}

/// One random question: the cube's SQL answers as the JSON API does on every path, and as
/// SQL over the raw facts; a question the cube refuses is refused in SQL with the same words.
async fn check_case(seed: u64) -> Result<(), String> {
    let fx = fixture().await;
    let model = fx.cube.model();
    let mut rng = Rng(seed);
    let json = random_query(&fx.cube, &mut rng);
    let mut query = Query::from_json(&json.to_string()).map_err(|e| e.to_string())?;
    // What one cube node cannot say (pivots, compare, ...) is left to other tests; the rest
    // of the question is kept.
    query.columns.clear();
    query.compare = None;
    query.shares.clear();
    query.totals = false;
    query.order.clear();
    query.limit = None;
    query.offset = 0;
    let Some(text) = cube_sql(model, &query) else {
        return Ok(());
    };
    let case = format!("seed {seed}\n{text}");
    let native = fx.cube.session(Access::everything()).query(&query).await;
    for (path, data) in [
        ("cuboids", &fx.cube),
        ("base", &fx.base),
        ("fallback", &fx.bare),
    ] {
        let ctx = cube_ctx(data, Access::everything());
        let got = run_sql(&ctx, &text).await;
        let a = match (&native, got) {
            (Ok(a), Ok(got)) => {
                let types: Vec<Option<&str>> = a
                    .columns
                    .iter()
                    .map(|c| if c.kind == "level" { None } else { c.ty })
                    .collect();
                let want = sorted(answer_cells(&a.rows, &types), query.rows.len());
                compare_rows(path, &sorted(got.rows, query.rows.len()), &want)
                    .map_err(|e| format!("{e}\n{case}"))?;
                a
            }
            (Err(e), Err(got)) => {
                if !got.contains(&e.to_string()) {
                    return Err(format!("{path}: JSON refuses ({e}), SQL: {got}\n{case}"));
                }
                continue;
            }
            (a, b) => {
                return Err(format!(
                    "{path}: one answers, one refuses: JSON {:?} / SQL {:?}\n{case}",
                    a.as_ref().map(|_| "answer").map_err(|e| e.to_string()),
                    b.map(|_| "answer")
                ));
            }
        };
        if path == "cuboids" {
            let raw = question_sql(model, &query);
            let want = run_sql(&fx.sql, &raw).await?;
            let got = run_sql(&ctx, &text).await?;
            compare_rows(
                "raw facts",
                &sorted(got.rows, query.rows.len()),
                &sorted(want.rows, query.rows.len()),
            )
            .map_err(|e| format!("{e}\n{case}\nraw SQL: {raw}"))?;
            let _ = a;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: crate::util::proptest_cases(24),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sql_aggregates_equal_the_json_api_and_the_raw_facts(seed in any::<u64>()) {
        let result = crate::util::block_on(check_case(seed));
        prop_assert!(result.is_ok(), "{}", result.unwrap_err());
    }
}

/// Every question of the suite that one cube node can say equals its JSON answer in SQL.
#[tokio::test]
async fn the_question_suite_in_sql_equals_the_json_answers() {
    let fx = fixture().await;
    let model = fx.cube.model();
    let ctx = cube_ctx(&fx.cube, Access::everything());
    let mut asked = 0;
    for q in questions() {
        let query = Query::from_json(q.query).expect(q.name);
        let Some(text) = cube_sql(model, &query) else {
            continue;
        };
        let a = fx
            .cube
            .session(Access::everything())
            .query(&query)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", q.name));
        let got = run_sql(&ctx, &text)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", q.name));
        let types: Vec<Option<&str>> = a
            .columns
            .iter()
            .map(|c| if c.kind == "level" { None } else { c.ty })
            .collect();
        let n = query.rows.len();
        compare_rows(
            q.name,
            &sorted(got.rows, n),
            &sorted(answer_cells(&a.rows, &types), n),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        asked += 1;
    }
    assert!(
        asked >= 10,
        "only {asked} questions of the suite asked in SQL"
    );
}

/// Runs `text`, panicking with the statement on an error.
async fn rows(ctx: &SessionContext, text: &str) -> Vec<Vec<Cell>> {
    run_sql(ctx, text)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .rows
}

async fn error(ctx: &SessionContext, text: &str) -> String {
    match sql::run(ctx, text).await {
        Ok((_, b)) => panic!("answered {text}: {} batches", b.len()),
        Err(e) => sql::message(&e),
    }
}

#[tokio::test]
async fn wrong_aggregates_and_filters_say_what_to_write() {
    let fx = fixture().await;
    let ctx = cube_ctx(&fx.cube, Access::everything());
    let e = error(&ctx, "SELECT SUM(active_customers) FROM bank_crm").await;
    assert!(
        e.contains("distinct count") && e.contains("MEASURE(active_customers)"),
        "{e}"
    );
    let e = error(
        &ctx,
        "SELECT time_year, AVG(deposit_balance) FROM bank_crm GROUP BY time_year",
    )
    .await;
    assert!(
        e.contains("semi-additive") && e.contains("MEASURE(deposit_balance)"),
        "{e}"
    );
    let e = error(&ctx, "SELECT * FROM bank_crm").await;
    assert!(e.contains("bank_crm is a cube"), "{e}");
    let e = error(&ctx, "SELECT COUNT(*) FROM bank_crm").await;
    assert!(e.contains("MEASURE(txn_count)"), "{e}");
    let e = error(
        &ctx,
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm WHERE txn_amount > 5 GROUP BY 1",
    )
    .await;
    assert!(e.contains("HAVING"), "{e}");
    let e = error(
        &ctx,
        "SELECT MEASURE(txn_amount) FROM bank_crm WHERE region_province = 'Hubei' OR time_year = '2025'",
    )
    .await;
    assert!(e.contains("a filter on a cube is one of"), "{e}");
    let e = error(
        &ctx,
        "SELECT MEASURE(deposit_balance) FROM bank_crm WHERE channel_channel = 'ATM'",
    )
    .await;
    assert!(e.contains("does not vary"), "{e}");
    let e = error(&ctx, "SELECT MEASURE(nope) FROM bank_crm").await;
    assert!(e.contains("nope"), "{e}");
    // SUM of a sum, MIN/MAX as the measure's own, are the measure.
    let by_sum = rows(
        &ctx,
        "SELECT SUM(txn_amount), SUM(txn_count) FROM bank_crm WHERE time_year = '2025'",
    )
    .await;
    let by_measure = rows(
        &ctx,
        "SELECT MEASURE(txn_amount), MEASURE(txn_count) FROM bank_crm WHERE time_year = '2025'",
    )
    .await;
    assert_eq!(
        format!("{by_sum:?}"),
        format!("{by_measure:?}"),
        "SUM of a sum is the measure"
    );
}

/// A member no one has is a filter that matches nothing, as in SQL (not the JSON API's
/// error); one unknown value of an IN list is dropped.
#[tokio::test]
async fn unknown_members_match_nothing() {
    let fx = fixture().await;
    let ctx = cube_ctx(&fx.cube, Access::everything());
    let none = rows(
        &ctx,
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm WHERE region_province = 'Atlantis' GROUP BY 1",
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let some = rows(
        &ctx,
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm WHERE region_province IN ('Atlantis', 'Hubei') GROUP BY 1",
    )
    .await;
    let hubei = rows(
        &ctx,
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm WHERE region_province = 'Hubei' GROUP BY 1",
    )
    .await;
    assert_eq!(some.len(), 1);
    assert_eq!(format!("{some:?}"), format!("{hubei:?}"));
    let all = rows(&ctx, "SELECT MEASURE(txn_amount) FROM bank_crm").await;
    let not_atlantis = rows(
        &ctx,
        "SELECT MEASURE(txn_amount) FROM bank_crm WHERE region_province <> 'Atlantis'",
    )
    .await;
    assert_eq!(format!("{all:?}"), format!("{not_atlantis:?}"));
}

/// What SQL adds above the cube node (expressions, windows, CTEs, joins of two cube answers,
/// UNION, ORDER BY and LIMIT) runs in DataFusion over the node's exact rows.
#[tokio::test]
async fn sql_above_the_cube_node_runs_over_its_rows() {
    let fx = fixture().await;
    let ctx = cube_ctx(&fx.cube, Access::everything());
    let base = rows(
        &ctx,
        "SELECT region_province, MEASURE(txn_amount) FROM bank_crm GROUP BY 1",
    )
    .await;
    let total: i128 = base
        .iter()
        .map(|r| match r[1] {
            Cell::Dec(v, 2) => v,
            ref c => panic!("not a decimal: {c}"),
        })
        .sum();
    let top = rows(
        &ctx,
        "WITH p AS (SELECT region_province AS province, MEASURE(txn_amount) AS amount \
         FROM bank_crm GROUP BY 1) \
         SELECT province, amount, RANK() OVER (ORDER BY amount DESC) AS r, \
         SUM(amount) OVER () AS total FROM p ORDER BY amount DESC LIMIT 3",
    )
    .await;
    assert_eq!(top.len(), 3);
    assert!(
        matches!(top[0][2], Cell::Int(1)),
        "rank of the first: {}",
        top[0][2]
    );
    match &top[0][3] {
        Cell::Dec(v, 2) => assert_eq!(*v, total, "the window's total is the sum of the cells"),
        c => panic!("total: {c}"),
    }
    let joined = rows(
        &ctx,
        "SELECT t.province, t.amount, b.deposits FROM \
         (SELECT region_province AS province, MEASURE(txn_amount) AS amount FROM bank_crm GROUP BY 1) t \
         JOIN (SELECT region_province AS province, MEASURE(deposit_balance) AS deposits FROM bank_crm GROUP BY 1) b \
         ON t.province = b.province",
    )
    .await;
    assert_eq!(joined.len(), base.len());
    let union = rows(
        &ctx,
        "SELECT 'year' AS kind, time_year AS member, MEASURE(txn_count) AS n FROM bank_crm GROUP BY time_year \
         UNION ALL SELECT 'quarter', time_quarter, MEASURE(txn_count) FROM bank_crm GROUP BY time_quarter",
    )
    .await;
    let years = union
        .iter()
        .filter(|r| matches!(&r[0], Cell::Text(k) if k == "year"))
        .count();
    assert!(years >= 1 && union.len() > years);
    // EXPLAIN shows the cube node and how the engine answers it.
    let plan = rows(
        &ctx,
        "EXPLAIN SELECT region_province, MEASURE(txn_amount) FROM bank_crm GROUP BY 1",
    )
    .await;
    let text: String = plan
        .iter()
        .map(|r| r.iter().map(ToString::to_string).collect::<String>())
        .collect();
    assert!(
        text.contains("CubeScan: cube=bank_crm levels=[region.province]"),
        "{text}"
    );
    assert!(
        text.contains("answered_from=[transactions: cuboid"),
        "{text}"
    );
}

/// A manager's scope holds in SQL as in the JSON API: the same rows, nothing of another
/// manager's, and members outside the scope match nothing.
#[tokio::test]
async fn a_scoped_principal_sees_its_scope_in_sql() {
    let fx = fixture().await;
    let manager = fx
        .cube
        .members(fx.cube.model().level("manager.manager").expect("level"))
        .names[0]
        .clone();
    let access = Access {
        scope: vec![ScopeRule {
            level: "manager.manager".into(),
            values: vec![manager.clone()],
        }],
        roles: Vec::new(),
    };
    let ctx = cube_ctx(&fx.cube, access.clone());
    let got = rows(
        &ctx,
        "SELECT manager_manager, MEASURE(txn_amount), MEASURE(customers) FROM bank_crm GROUP BY 1",
    )
    .await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(matches!(&got[0][0], Cell::Text(m) if *m == manager));
    let q = Query::from_json(
        r#"{"measures": ["txn_amount", "customers"], "rows": ["manager.manager"]}"#,
    )
    .expect("query");
    let a = fx.cube.session(access).query(&q).await.expect("answer");
    let types = [None, Some("decimal"), Some("integer")];
    compare_rows("scoped", &got, &answer_cells(&a.rows, &types)).expect("same as JSON");
    let other = fx
        .cube
        .members(fx.cube.model().level("manager.manager").expect("level"))
        .names[1]
        .clone();
    let none = rows(
        &ctx,
        &format!(
            "SELECT MEASURE(txn_amount) FROM bank_crm WHERE manager_manager = {}",
            lit(&other)
        ),
    )
    .await;
    assert!(
        none.is_empty() || matches!(none[0][0], Cell::Null),
        "{none:?}"
    );
}
