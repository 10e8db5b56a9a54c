//! Abnormal change and band migration (`engine/src/analytics/`), each held to a SQL twin
//! written here over the raw tables, on the default cube (cuboids) and on the same model
//! without cuboids (the fallback); the planted anomalies of the generator are found; a scoped
//! principal sees exactly the unscoped answer restricted to their customers.

use std::collections::BTreeSet;
use std::sync::Arc;

use lattice_defs::model::AggMode;
use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::analytics::{
    AbnormalAnswer, AbnormalQuery, AnalyticsError, MigrationAnswer, MigrationDrill,
    MigrationDrillAnswer, MigrationQuery,
};
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Dataset;
use lattice_engine::source::load::load;
use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::query_suite::{Cell, Fixture, compare_rows, fixture, run_sql};
use crate::util::post_json;
use crate::util::{bank_crm, parquet_dir};

fn everyone() -> Access {
    Access::everything()
}

fn manager_scope(manager: &str) -> Access {
    let rule: ScopeRule = format!("manager.manager = {manager}")
        .parse()
        .expect("scope rule");
    Access {
        scope: vec![rule],
        roles: Vec::new(),
    }
}

fn abnormal_query(json: &str) -> AbnormalQuery {
    AbnormalQuery::from_json(json).expect("request")
}

async fn ask(cube: &Arc<Dataset>, q: &AbnormalQuery, access: &Access) -> AbnormalAnswer {
    cube.session(access.clone())
        .abnormal(q)
        .await
        .unwrap_or_else(|e| panic!("{e} ({})", e.code()))
}

fn text(v: &str) -> Cell {
    Cell::Text(v.to_string())
}

fn dec(v: &Json) -> Cell {
    Cell::from_json(v, Some("decimal"))
}

/// Rows as (member, before, after, change) for a decimal measure.
fn change_rows(a: &AbnormalAnswer) -> Vec<Vec<Cell>> {
    a.rows
        .iter()
        .map(|r| {
            vec![
                text(&r.member),
                dec(&r.before),
                dec(&r.after),
                dec(&r.change),
            ]
        })
        .collect()
}

/// Checks the answers of the cube and of the cuboid-less cube against `sql` with `rows`.
async fn check_both(
    fx: &Fixture,
    what: &str,
    q: &AbnormalQuery,
    sql: &str,
    rows: fn(&AbnormalAnswer) -> Vec<Vec<Cell>>,
) -> AbnormalAnswer {
    let want = run_sql(&fx.sql, sql).await.expect("SQL");
    let built = ask(&fx.cube, q, &everyone()).await;
    let bare = ask(&fx.bare, q, &everyone()).await;
    compare_rows(&format!("{what} (cube)"), &rows(&built), &want.rows)
        .unwrap_or_else(|e| panic!("{e}"));
    compare_rows(&format!("{what} (fallback)"), &rows(&bare), &want.rows)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(built.total, want.rows.len(), "{what}: total");
    assert!(
        bare.meta.facts.iter().all(|f| f.source == "fallback"),
        "{what}: the bare cube answered from a cuboid"
    );
    built
}

/// The first day of month `i` of the window (0 = 2024-01) and its member name.
fn month(i: usize) -> (String, String) {
    let (y, m) = (2024 + i / 12, i % 12 + 1);
    (format!("{y}-{m:02}-01"), format!("{y}-{m:02}"))
}

/// SQL: customers whose deposits fell by more than half from `b` to `a` (first days).
fn halved_sql(b: &str, a: &str) -> String {
    format!(
        "WITH b AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances WHERE month = DATE '{b}' GROUP BY 1),
              a AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances WHERE month = DATE '{a}' GROUP BY 1),
              j AS (SELECT COALESCE(b.customer_id, a.customer_id) AS id, b.v AS before, a.v AS after,
                           COALESCE(a.v, 0) - COALESCE(b.v, 0) AS change
                    FROM b FULL JOIN a ON a.customer_id = b.customer_id)
         SELECT CAST(id AS VARCHAR) AS member, before, after, change FROM j
         WHERE change < 0 AND before <> 0 AND ABS(change) > 0.5 * ABS(before)
         ORDER BY ABS(change) DESC, id"
    )
}

#[tokio::test]
async fn deposits_that_halved_month_on_month_equal_sql_and_are_the_planted_collapses() {
    let fx = fixture().await;
    let mut found: Vec<(String, f64)> = Vec::new();
    for i in 0..23 {
        let ((b_day, b), (a_day, a)) = (month(i), month(i + 1));
        let q = abnormal_query(&format!(
            r#"{{"kind": "change", "measure": "deposit_balance", "before": "{b}", "after": "{a}",
                "relative": 0.5, "direction": "down"}}"#
        ));
        let answer = check_both(
            fx,
            &format!("halved {b} -> {a}"),
            &q,
            &halved_sql(&b_day, &a_day),
            change_rows,
        )
        .await;
        for r in &answer.rows {
            found.push((r.member.clone(), r.relative_change.expect("relative")));
        }
    }
    // The generator's collapses keep 10-40% of deposits (a drop of 60-90%, give or take a
    // month's walk of a few percent); no ordinary month moves deposits by more than 3.4%. So
    // every drop found is a collapse, one per customer, and about 1% of the customers have one.
    let customers: BTreeSet<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        customers.len(),
        found.len(),
        "a customer collapsed twice: {found:?}"
    );
    assert!(
        (4..=25).contains(&found.len()),
        "{} collapses among 1,000 customers",
        found.len()
    );
    for (c, rel) in &found {
        assert!(
            (-0.95..=-0.55).contains(rel),
            "customer {c} fell {rel}, not a planted collapse"
        );
    }
    // In SQL terms: every customer whose deposits fell to at most 45% of the month before.
    let planted = run_sql(
        &fx.sql,
        "WITH d AS (SELECT customer_id, month, SUM(deposit_balance) AS v FROM balances GROUP BY 1, 2)
         SELECT DISTINCT CAST(cur.customer_id AS VARCHAR) FROM d cur
         JOIN d prev ON prev.customer_id = cur.customer_id AND prev.month = cur.month - INTERVAL '1 month'
         WHERE cur.v <= 0.45 * prev.v AND prev.v > 0",
    )
    .await
    .expect("SQL");
    let planted: BTreeSet<String> = planted
        .rows
        .iter()
        .map(|r| match &r[0] {
            Cell::Text(s) => s.clone(),
            other => panic!("{other}"),
        })
        .collect();
    let customers: BTreeSet<String> = customers.into_iter().map(String::from).collect();
    assert_eq!(customers, planted, "the list misses a planted collapse");
    println!("planted collapses found: {}", planted.len());
}

#[tokio::test]
async fn quarter_on_quarter_change_reads_closing_months_under_filters() {
    let fx = fixture().await;
    let q = abnormal_query(
        r#"{"kind": "change", "measure": "deposit_balance", "level": "time.quarter",
            "before": "2025-Q1", "after": "2025-Q2", "absolute": 5000, "relative": 0.05,
            "filters": [{"level": "customer.segment", "op": "in", "values": ["affluent", "private", "sme"]}]}"#,
    );
    // A quarter's balance is its closing month's: the latest month of the quarter in balances.
    let sql = "WITH closing AS (SELECT date_trunc('quarter', month) AS q, MAX(month) AS m FROM balances GROUP BY 1),
          kept AS (SELECT b.* FROM balances b JOIN customers c ON c.customer_id = b.customer_id
                   WHERE c.segment IN ('affluent', 'private', 'sme')),
          b AS (SELECT customer_id, SUM(deposit_balance) AS v FROM kept
                WHERE month = (SELECT m FROM closing WHERE q = DATE '2025-01-01') GROUP BY 1),
          a AS (SELECT customer_id, SUM(deposit_balance) AS v FROM kept
                WHERE month = (SELECT m FROM closing WHERE q = DATE '2025-04-01') GROUP BY 1),
          j AS (SELECT COALESCE(b.customer_id, a.customer_id) AS id, b.v AS before, a.v AS after,
                       COALESCE(a.v, 0) - COALESCE(b.v, 0) AS change
                FROM b FULL JOIN a ON a.customer_id = b.customer_id)
         SELECT CAST(id AS VARCHAR) AS member, before, after, change FROM j
         WHERE change <> 0 AND ABS(change) > 5000 AND before <> 0 AND ABS(change) > 0.05 * ABS(before)
         ORDER BY ABS(change) DESC, id";
    let a = check_both(fx, "quarter on quarter", &q, sql, change_rows).await;
    assert!(a.total > 0, "nothing changed by 5k and 5%");
    assert_eq!(a.periods, vec!["2025-Q1", "2025-Q2"]);
}

fn outlier_rows(a: &AbnormalAnswer) -> Vec<Vec<Cell>> {
    a.rows
        .iter()
        .map(|r| {
            vec![
                text(&r.member),
                text(r.peer.as_deref().unwrap_or("?")),
                dec(&r.before),
                dec(&r.after),
                dec(&r.change),
                Cell::Float(r.z.unwrap_or(f64::NAN)),
            ]
        })
        .collect()
}

#[tokio::test]
async fn outliers_among_their_segment_equal_a_median_and_mad_in_sql() {
    let fx = fixture().await;
    // The month with the most planted collapses decides which pair shows them best.
    let best = run_sql(
        &fx.sql,
        "WITH d AS (SELECT customer_id, month, SUM(deposit_balance) AS v FROM balances GROUP BY 1, 2)
         SELECT to_char(cur.month - INTERVAL '1 month', '%Y-%m-%d') AS b, to_char(cur.month, '%Y-%m-%d') AS a, COUNT(*) AS n
         FROM d cur JOIN d prev ON prev.customer_id = cur.customer_id AND prev.month = cur.month - INTERVAL '1 month'
         WHERE cur.v <= 0.45 * prev.v AND prev.v > 0 GROUP BY 1, 2 ORDER BY n DESC, a LIMIT 1",
    )
    .await
    .expect("SQL");
    let (Cell::Text(b_day), Cell::Text(a_day)) = (&best.rows[0][0], &best.rows[0][1]) else {
        panic!("months")
    };
    let q = abnormal_query(&format!(
        r#"{{"kind": "outlier", "measure": "deposit_balance", "before": "{}", "after": "{}",
            "peers": "customer.segment"}}"#,
        &b_day[..7],
        &a_day[..7]
    ));
    let sql = format!(
        "WITH b AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances WHERE month = DATE '{b_day}' GROUP BY 1),
              a AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances WHERE month = DATE '{a_day}' GROUP BY 1),
              j AS (SELECT COALESCE(b.customer_id, a.customer_id) AS id, b.v AS before, a.v AS after,
                           COALESCE(a.v, 0) - COALESCE(b.v, 0) AS change
                    FROM b FULL JOIN a ON a.customer_id = b.customer_id),
              x AS (SELECT j.*, c.segment, CAST(j.change AS DOUBLE) / ABS(CAST(j.before AS DOUBLE)) AS rel
                    FROM j JOIN customers c ON c.customer_id = j.id
                    WHERE j.before IS NOT NULL AND j.before <> 0),
              med AS (SELECT segment, median(rel) AS m FROM x GROUP BY segment),
              mad AS (SELECT x.segment, median(ABS(x.rel - med.m)) AS mad
                      FROM x JOIN med ON med.segment = x.segment GROUP BY x.segment),
              z AS (SELECT x.*, 0.6745 * (x.rel - med.m) / mad.mad AS z
                    FROM x JOIN med ON med.segment = x.segment JOIN mad ON mad.segment = x.segment
                    WHERE mad.mad > 0)
         SELECT CAST(id AS VARCHAR) AS member, segment, before, after, change, z FROM z
         WHERE ABS(z) > 3.5 ORDER BY ABS(change) DESC, id"
    );
    let a = check_both(fx, "outliers", &q, &sql, outlier_rows).await;
    // The month's collapses are among the outliers of their segment.
    let collapsed = run_sql(&fx.sql, &halved_sql(b_day, a_day))
        .await
        .expect("SQL");
    let members: BTreeSet<&str> = a.rows.iter().map(|r| r.member.as_str()).collect();
    for row in &collapsed.rows {
        let Cell::Text(c) = &row[0] else { panic!() };
        assert!(
            members.contains(c.as_str()),
            "collapse {c} is not an outlier"
        );
    }
    assert!(!collapsed.rows.is_empty());
    println!(
        "outliers {} -> {}: {} (of them {} planted collapses)",
        b_day,
        a_day,
        a.total,
        collapsed.rows.len()
    );
}

fn dormant_rows(a: &AbnormalAnswer) -> Vec<Vec<Cell>> {
    a.rows
        .iter()
        .map(|r| {
            vec![
                text(&r.member),
                Cell::from_json(&r.before, Some("integer")),
                text(r.last_active.as_deref().unwrap_or("?")),
            ]
        })
        .collect()
}

#[tokio::test]
async fn dormant_customers_equal_sql_and_include_the_planted_ones() {
    let fx = fixture().await;
    let q = abnormal_query(r#"{"kind": "dormant", "measure": "txn_count", "periods": 4}"#);
    let sql = "WITH m AS (SELECT customer_id, date_trunc('month', txn_date) AS month, COUNT(*) AS n
                         FROM transactions GROUP BY 1, 2),
                    quiet AS (SELECT DISTINCT customer_id FROM m WHERE month >= DATE '2025-09-01'),
                    last AS (SELECT customer_id, MAX(month) AS last_active, SUM(n) AS n
                             FROM m WHERE month < DATE '2025-09-01' GROUP BY 1)
               SELECT CAST(l.customer_id AS VARCHAR) AS member, l.n AS before,
                      to_char(l.last_active, '%Y-%m') AS last_active
               FROM last l WHERE l.customer_id NOT IN (SELECT customer_id FROM quiet)
               ORDER BY l.n DESC, l.customer_id";
    let a = check_both(fx, "dormant", &q, sql, dormant_rows).await;
    assert_eq!(a.periods, vec!["2025-09", "2025-10", "2025-11", "2025-12"]);
    assert!(a.rows.iter().all(|r| r.after.is_null()));
    // About 5% of the customers are planted dormant with at least the last four months
    // silent; customers who transact rarely can be silent that long too.
    assert!(a.total >= 30, "{} dormant of 1,000", a.total);
    println!("dormant for 4 months: {}", a.total);
}

/// The customer ids of a manager, in SQL.
async fn customers_of(fx: &Fixture, manager: &str) -> BTreeSet<String> {
    let t = run_sql(
        &fx.sql,
        &format!(
            "SELECT CAST(c.customer_id AS VARCHAR) FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE m.manager_name = '{manager}'"
        ),
    )
    .await
    .expect("SQL");
    t.rows
        .iter()
        .map(|r| match &r[0] {
            Cell::Text(s) => s.clone(),
            other => panic!("{other}"),
        })
        .collect()
}

/// The manager of a customer.
async fn manager_of(fx: &Fixture, customer: &str) -> String {
    let t = run_sql(
        &fx.sql,
        &format!(
            "SELECT m.manager_name FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE c.customer_id = {customer}"
        ),
    )
    .await
    .expect("SQL");
    match &t.rows[0][0] {
        Cell::Text(s) => s.clone(),
        other => panic!("{other}"),
    }
}

fn content(a: &AbnormalAnswer) -> Vec<Json> {
    a.rows
        .iter()
        .map(|r| serde_json::to_value(r).expect("row"))
        .collect()
}

#[tokio::test]
async fn a_scoped_principal_sees_the_unscoped_list_restricted_to_their_customers() {
    let fx = fixture().await;
    let requests = [
        r#"{"kind": "change", "measure": "deposit_balance", "level": "time.year",
            "before": "2024", "after": "2025", "relative": 0.2}"#,
        r#"{"kind": "dormant", "measure": "txn_count", "periods": 3}"#,
        r#"{"kind": "outlier", "measure": "txn_amount", "level": "time.quarter",
            "before": "2025-Q1", "after": "2025-Q2", "peers": "customer.segment", "basis": "absolute"}"#,
    ];
    let all = ask(&fx.cube, &abnormal_query(requests[0]), &everyone()).await;
    assert!(all.total > 0);
    let manager = manager_of(fx, &all.rows[0].member).await;
    let theirs = customers_of(fx, &manager).await;
    let access = manager_scope(&manager);
    for json in requests {
        let q = abnormal_query(json);
        let all = ask(&fx.cube, &q, &everyone()).await;
        for cube in [&fx.cube, &fx.base, &fx.bare] {
            let scoped = ask(cube, &q, &access).await;
            assert!(
                scoped.rows.iter().all(|r| theirs.contains(&r.member)),
                "{json}: another manager's customer is listed"
            );
            if q.kind == lattice_engine::analytics::AbnormalKind::Outlier {
                // Peers are the principal's own customers: their medians are their own.
                continue;
            }
            let mut restricted = all.clone();
            restricted.rows.retain(|r| theirs.contains(&r.member));
            assert_eq!(
                content(&scoped),
                content(&restricted),
                "{json}: scoped list differs"
            );
            assert_eq!(scoped.total, restricted.rows.len());
        }
    }
    // A member outside the scope is unknown, as in any query.
    let outside = ask(&fx.cube, &abnormal_query(requests[1]), &everyone())
        .await
        .rows
        .into_iter()
        .find(|r| !theirs.contains(&r.member))
        .expect("someone else's dormant customer");
    let q = abnormal_query(&format!(
        r#"{{"kind": "dormant", "measure": "txn_count", "periods": 3,
            "filters": [{{"level": "customer.id", "op": "eq", "value": "{}"}}]}}"#,
        outside.member
    ));
    let e = fx
        .cube
        .session(access.clone())
        .abnormal(&q)
        .await
        .expect_err("outside");
    assert_eq!(e.code(), "unknown_member");
    // Analysts see no single customer's values.
    let analyst = Access {
        scope: Vec::new(),
        roles: vec!["analyst".into()],
    };
    let e = fx
        .cube
        .session(analyst.clone())
        .abnormal(&q)
        .await
        .expect_err("analyst");
    assert_eq!(e.code(), "forbidden");
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let fx = fixture().await;
    let cases: [(&str, &str, &str); 9] = [
        (
            r#"{"kind": "change", "measure": "deposit_balanse", "before": "2025-01", "after": "2025-02", "relative": 0.5}"#,
            "unknown_measure",
            "did you mean 'deposit_balance'",
        ),
        (
            r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-02", "after": "2025-01", "relative": 0.5}"#,
            "bad_period",
            "put the earlier period first",
        ),
        (
            r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-01", "after": "2025-13", "relative": 0.5}"#,
            "unknown_member",
            "'2025-13' is not a member of 'time.month'",
        ),
        (
            r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-01", "after": "2025-02", "relative": -0.5}"#,
            "bad_threshold",
            "give `direction` for its sign",
        ),
        (
            r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-01", "after": "2025-02"}"#,
            "missing_field",
            "give `relative`",
        ),
        (
            r#"{"kind": "change", "measure": "deposit_balance", "level": "customer.segment", "before": "a", "after": "b", "relative": 1}"#,
            "bad_period",
            "not a time level",
        ),
        (
            r#"{"kind": "outlier", "measure": "deposit_balance", "before": "2025-01", "after": "2025-02", "peers": "customer.deposit_band"}"#,
            "bad_peers",
            "one group per member",
        ),
        (
            r#"{"kind": "dormant", "measure": "txn_count", "periods": 3, "relative": 0.5}"#,
            "field_not_applicable",
            "`relative` does not apply to kind 'dormant'",
        ),
        (
            r#"{"kind": "dormant", "measure": "txn_count", "period": 3}"#,
            "malformed_query",
            "unknown field `period`",
        ),
    ];
    for (json, code, says) in cases {
        let e: AnalyticsError = match AbnormalQuery::from_json(json) {
            Ok(q) => fx
                .cube
                .session(everyone())
                .abnormal(&q)
                .await
                .expect_err(json),
            Err(e) => e,
        };
        assert_eq!(e.code(), code, "{json}: {e}");
        assert!(e.to_string().contains(says), "{json}: {e}");
    }
}

// ---- migration ----

const BAND_SQL: &str = "CASE WHEN v < 10000 THEN 0 WHEN v < 50000 THEN 1 WHEN v < 200000 THEN 2
                        WHEN v < 1000000 THEN 3 ELSE 4 END";
const BAND_NAME: &str = "CASE {b} WHEN 0 THEN '<10k' WHEN 1 THEN '10k-50k' WHEN 2 THEN '50k-200k'
                         WHEN 3 THEN '200k-1M' WHEN 4 THEN '1M+' END";

/// SQL: the deposit-band migration between the closing months `a` and `b` of the customers
/// in `kept` (a condition on customers `c`).
fn migration_sql(a: &str, b: &str, kept: &str) -> String {
    format!(
        "WITH d AS (SELECT bal.customer_id, bal.month, SUM(bal.deposit_balance) AS v FROM balances bal
                    JOIN customers c ON c.customer_id = bal.customer_id
                    JOIN managers m ON m.manager_id = c.manager_id
                    WHERE {kept} GROUP BY 1, 2),
              banded AS (SELECT customer_id, month, v, {BAND_SQL} AS band FROM d),
              fa AS (SELECT * FROM banded WHERE month = DATE '{a}'),
              tb AS (SELECT * FROM banded WHERE month = DATE '{b}'),
              j AS (SELECT fa.band AS f, tb.band AS t, fa.v AS vf, tb.v AS vt
                    FROM fa FULL JOIN tb ON fa.customer_id = tb.customer_id)
         SELECT {} AS \"from\", {} AS \"to\", COUNT(*) AS members,
                SUM(vf) AS deposit_balance_from, SUM(vt) AS deposit_balance_to
         FROM j GROUP BY f, t ORDER BY f NULLS LAST, t NULLS LAST",
        BAND_NAME.replace("{b}", "f"),
        BAND_NAME.replace("{b}", "t"),
    )
}

fn cell_rows(a: &MigrationAnswer) -> Vec<Vec<Cell>> {
    let opt = |s: &Option<String>| s.as_deref().map_or(Cell::Null, text);
    a.cells
        .iter()
        .map(|c| {
            vec![
                opt(&c.from),
                opt(&c.to),
                Cell::Int(i128::from(c.members)),
                dec(&c.values["deposit_balance_from"]),
                dec(&c.values["deposit_balance_to"]),
            ]
        })
        .collect()
}

/// The default model with only the cuboids that hold the deposit-band sets per month (the
/// automatic selection of the small test cube does not pick one).
async fn banded() -> &'static Arc<Dataset> {
    static CUBE: OnceCell<Arc<Dataset>> = OnceCell::const_new();
    CUBE.get_or_init(|| async {
        let mut model = bank_crm(parquet_dir(), false).expect("definition");
        let level = |n: &str| model.level(n).expect(n);
        let band = level("customer.deposit_band");
        let month = level("time.month");
        let manager = level("manager.manager");
        model.aggregates.mode = AggMode::Explicit;
        model.aggregates.cuboids = vec![vec![band, month], vec![band, month, manager]];
        let sources = load(&model).await.expect("load");
        Arc::new(
            lattice_engine::open(&model, &sources, &BuildOptions::default())
                .await
                .expect("build"),
        )
    })
    .await
}

/// The migration on the cube with band cuboids (member sets), the default cube and the one
/// without cuboids (grouped queries), each equal to `sql`; returns the first.
async fn check_migration(
    fx: &Fixture,
    q: &MigrationQuery,
    access: &Access,
    sql: &str,
) -> MigrationAnswer {
    let want = run_sql(&fx.sql, sql).await.expect("SQL");
    let sets = banded()
        .await
        .session(access.clone())
        .migration(q)
        .await
        .expect("migration");
    let built = fx
        .cube
        .session(access.clone())
        .migration(q)
        .await
        .expect("migration");
    let bare = fx
        .bare
        .session(access.clone())
        .migration(q)
        .await
        .expect("migration (bare)");
    compare_rows("migration (member sets)", &cell_rows(&sets), &want.rows)
        .unwrap_or_else(|e| panic!("{e}"));
    compare_rows("migration (cube)", &cell_rows(&built), &want.rows)
        .unwrap_or_else(|e| panic!("{e}"));
    compare_rows("migration (bare)", &cell_rows(&bare), &want.rows)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sets.meta.source, "member_sets", "{:?}", sets.meta);
    assert_eq!(bare.meta.source, "grouped");
    if q.band == "customer.deposit_band" && access.is_everything() && q.filters.is_empty() {
        // The shipped cube lists the deposit-band-by-month cuboid: no rescan there either.
        assert_eq!(built.meta.source, "member_sets", "{:?}", built.meta);
    }
    sets
}

#[tokio::test]
async fn deposit_band_migration_between_quarters_equals_sql_from_member_sets() {
    let fx = fixture().await;
    let q = MigrationQuery::from_json(
        r#"{"band": "customer.deposit_band", "level": "time.quarter", "from": "2025-Q1", "to": "2025-Q2",
            "measures": ["deposit_balance"]}"#,
    )
    .expect("request");
    let a = check_migration(
        fx,
        &q,
        &everyone(),
        &migration_sql("2025-03-01", "2025-06-01", "TRUE"),
    )
    .await;
    assert_eq!(a.meta.source, "member_sets", "{:?}", a.meta);
    assert_eq!(
        a.meta.cuboid.as_deref(),
        Some(
            &[
                "customer.deposit_band".to_string(),
                "time.month".to_string()
            ][..]
        )
    );
    assert_eq!(
        a.meta.closing,
        vec![Some("2025-03".into()), Some("2025-06".into())]
    );
    assert!(a.cells.iter().any(|c| c.from != c.to), "nobody moved");

    // A year apart, by month, with the customers entering in between.
    let q = MigrationQuery::from_json(
        r#"{"band": "customer.deposit_band", "from": "2024-12", "to": "2025-12", "measures": ["deposit_balance"]}"#,
    )
    .expect("request");
    let a = check_migration(
        fx,
        &q,
        &everyone(),
        &migration_sql("2024-12-01", "2025-12-01", "TRUE"),
    )
    .await;
    assert!(
        a.cells.iter().any(|c| c.from.is_none()),
        "no customer entered"
    );
}

#[tokio::test]
async fn migration_drill_lists_a_transitions_customers_and_scope_restricts_the_matrix() {
    let fx = fixture().await;
    let query = r#"{"band": "customer.deposit_band", "level": "time.quarter", "from": "2025-Q1",
                    "to": "2025-Q2", "measures": ["deposit_balance"]}"#;
    let d = MigrationDrill::from_json(&format!(
        r#"{{"migration": {query}, "from_band": "10k-50k", "to_band": "<10k", "limit": 1000}}"#
    ))
    .expect("drill");
    let want = run_sql(
        &fx.sql,
        &format!(
            "WITH d AS (SELECT customer_id, month, SUM(deposit_balance) AS v FROM balances GROUP BY 1, 2),
                  banded AS (SELECT customer_id, month, v, {BAND_SQL} AS band FROM d),
                  fa AS (SELECT * FROM banded WHERE month = DATE '2025-03-01'),
                  tb AS (SELECT * FROM banded WHERE month = DATE '2025-06-01')
             SELECT CAST(fa.customer_id AS VARCHAR) AS member, fa.v AS vf, tb.v AS vt FROM fa JOIN tb ON tb.customer_id = fa.customer_id
             WHERE fa.band = 1 AND tb.band = 0 ORDER BY fa.customer_id"
        ),
    )
    .await
    .expect("SQL");
    let rows = |a: &MigrationDrillAnswer| -> Vec<Vec<Cell>> {
        a.rows
            .iter()
            .map(|r| vec![Cell::from_json(&r[0], None), dec(&r[1]), dec(&r[2])])
            .collect()
    };
    for cube in [banded().await, &fx.cube, &fx.bare] {
        let a = cube
            .session(everyone())
            .migration_drill(&d)
            .await
            .expect("drill");
        compare_rows("drill", &rows(&a), &want.rows).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.total as usize, want.rows.len());
    }
    assert!(!want.rows.is_empty(), "nobody fell from 10k-50k to <10k");

    // Under a manager's scope: the matrix of their customers only.
    let manager = {
        let t = run_sql(
            &fx.sql,
            "SELECT m.manager_name, COUNT(*) AS n FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1",
        )
        .await
        .expect("SQL");
        match &t.rows[0][0] {
            Cell::Text(s) => s.clone(),
            other => panic!("{other}"),
        }
    };
    let q = MigrationQuery::from_json(query).expect("request");
    check_migration(
        fx,
        &q,
        &manager_scope(&manager),
        &migration_sql(
            "2025-03-01",
            "2025-06-01",
            &format!("m.manager_name = '{manager}'"),
        ),
    )
    .await;
}

// ---- HTTP ----

#[tokio::test]
async fn the_analyses_answer_over_http_with_the_api_error_shape() {
    let fx = fixture().await;
    let listening = crate::util::serve_shipped().await;
    let addr = listening.addr;

    let request = r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-02", "after": "2025-03", "relative": 0.5, "direction": "down"}"#;
    let (status, body) = post_json(addr, "/v1/cubes/bank_crm/analytics/abnormal", request).await;
    assert_eq!(status, 200, "{body}");
    let engine = ask(&fx.cube, &abnormal_query(request), &everyone()).await;
    assert_eq!(
        body["rows"],
        serde_json::to_value(&engine.rows).expect("rows")
    );
    assert_eq!(body["total"], engine.total);

    let (status, body) = post_json(
        addr,
        "/v1/cubes/bank_crm/analytics/abnormal",
        r#"{"kind": "change", "measure": "deposit_balance", "before": "2025-03", "after": "2025-02", "relative": 0.5}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Json::from("bad_period")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["before"], "2025-03");

    let migration = r#"{"band": "customer.deposit_band", "level": "time.quarter", "from": "2025-Q1", "to": "2025-Q2"}"#;
    let (status, body) = post_json(addr, "/v1/cubes/bank_crm/analytics/migration", migration).await;
    assert_eq!(status, 200, "{body}");
    let total: u64 = body["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["members"].as_u64().expect("members"))
        .sum();
    assert!(total > 900, "{total} customers in the matrix");
    let (status, body) = post_json(
        addr,
        "/v1/cubes/bank_crm/analytics/migration/drill",
        &format!(
            r#"{{"migration": {migration}, "from_band": "<10k", "to_band": "<10k", "limit": 5}}"#
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(5));
    let (status, body) = post_json(
        addr,
        "/v1/cubes/bank_crm/analytics/migration",
        r#"{"band": "customer.deposit_bnd", "from": "2025-01", "to": "2025-02"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Json::from("unknown_level")),
        "{body}"
    );

    listening.stop().await;
}

#[test]
fn the_cli_runs_an_analysis_and_reports_errors_as_json() {
    let defs = tempfile::tempdir().expect("tempdir");
    let yaml = defs.path().join("bank_crm.yaml");
    std::fs::write(&yaml, lattice_defs::BANK_CRM_YAML).expect("write");
    let request = defs.path().join("q.json");
    std::fs::write(
        &request,
        r#"{"kind": "dormant", "measure": "txn_count", "periods": 4, "limit": 3}"#,
    )
    .expect("write");
    let run = |kind: &str, json: &std::path::Path| {
        crate::cli::lattice()
            .arg("analyze")
            .arg(&yaml)
            .arg("--data")
            .arg(parquet_dir())
            .args(["--kind", kind, "--json"])
            .arg(json)
            .output()
            .expect("run lattice")
    };
    let out = run("abnormal", &request);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["rows"].as_array().map(Vec::len), Some(3));
    assert_eq!(answer["kind"], "dormant");
    let out = run("migration", &request);
    let said = || {
        format!(
            "stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(out.status.code(), Some(2), "{}", said());
    let error: Json =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", said()));
    assert_eq!(error["error"]["code"], "malformed_query");
}
