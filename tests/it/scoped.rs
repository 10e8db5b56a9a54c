//! Row-level scopes through every route: a scoped principal's answers equal the unscoped
//! answer restricted to its customers, computed independently in SQL, and never contain
//! anything else — rows, totals, sub-totals, member lists and counts, drill-through, the Cube
//! API, answers the result cache holds for someone else, and errors.
//!
//! The SQL side: the question suite's twins (`tests/questions.rs`) run over a session whose
//! `customers`, `transactions` and `balances` are views holding only the principal's customers
//! (by the manager or home province the scope names); every other table is whole. So each twin,
//! unchanged, asks "the same question, over my customers only".
//!
//! The HTTP side: each question is asked over HTTP by the scoped principal (twice: the second
//! from the cache) after the admin asked it (so the cache holds the admin's answer first), and
//! must equal the engine's answer to a session with the same access, which must equal the twin.

use std::collections::BTreeSet;

use datafusion::prelude::SessionContext;
use lattice_engine::access::Access;
use lattice_engine::query::{DrillQuery, Query};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::auth::{ADMIN_KEY, App, MANAGER_KEY, Reply, app, auth_file};
use crate::query_suite::{Cell, check_answer, fixture, run_sql};
use crate::questions::questions;
use crate::util::bank_crm;

/// A scope under test: the rule, and which customers it keeps (a condition over the raw
/// `customers` as `c`, `regions` as `r` and `managers` as `m`).
struct Scope {
    rule: String,
    keeps: String,
}

/// The manager of the test data with the most customers.
async fn busiest_manager() -> &'static String {
    static NAME: OnceCell<String> = OnceCell::const_new();
    NAME.get_or_init(|| async {
        let fx = fixture().await;
        let t = run_sql(
            &fx.sql,
            "SELECT m.manager_name FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             GROUP BY m.manager_name ORDER BY COUNT(*) DESC, m.manager_name LIMIT 1",
        )
        .await
        .expect("SQL");
        match &t.rows[0][0] {
            Cell::Text(s) => s.clone(),
            other => panic!("a manager name, not {other}"),
        }
    })
    .await
}

async fn manager_scope() -> Scope {
    let name = busiest_manager().await;
    Scope {
        rule: format!("manager.manager = {name}"),
        keeps: format!("m.manager_name = '{}'", name.replace('\'', "''")),
    }
}

fn province_scope() -> Scope {
    Scope {
        rule: "region.province in [Zhejiang, Sichuan]".into(),
        keeps: "r.province IN ('Zhejiang', 'Sichuan')".into(),
    }
}

fn access(scope: &Scope) -> Access {
    Access {
        scope: vec![scope.rule.parse().expect("a scope rule")],
        roles: Vec::new(),
    }
}

/// The raw tables, with `customers`, `transactions` and `balances` restricted to the scope's
/// customers.
async fn restricted(scope: &Scope) -> SessionContext {
    let model = bank_crm(crate::util::parquet_dir(), false).expect("definition");
    let ctx = lattice_engine::source::load::load(&model)
        .await
        .expect("load")
        .ctx;
    for t in ["customers", "transactions", "balances"] {
        let raw = ctx
            .deregister_table(t)
            .expect("deregister")
            .unwrap_or_else(|| panic!("no table {t}"));
        ctx.register_table(format!("raw_{t}"), raw)
            .expect("register");
    }
    let views = [
        (
            "customers",
            format!(
                "SELECT c.* FROM raw_customers c
                 JOIN regions r ON r.region_id = c.region_id
                 JOIN managers m ON m.manager_id = c.manager_id
                 WHERE {}",
                scope.keeps
            ),
        ),
        (
            "transactions",
            "SELECT t.* FROM raw_transactions t WHERE t.customer_id IN (SELECT customer_id FROM customers)".into(),
        ),
        (
            "balances",
            "SELECT b.* FROM raw_balances b WHERE b.customer_id IN (SELECT customer_id FROM customers)".into(),
        ),
    ];
    for (name, sql) in views {
        let view = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_view();
        ctx.register_table(name, view).expect("register view");
    }
    ctx
}

/// An engine answer as a client reads it (serde_json's float parsing is not exact, so both
/// sides go through the same text).
fn as_read(answer: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(answer).expect("JSON")).expect("JSON")
}

/// An answer's JSON without `meta` (which says how, not what).
fn what(answer: &Value) -> Value {
    let mut v = answer.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

/// A server with the test auth file, `key` scoped by `scope`.
async fn server(scope: &Scope) -> App {
    let rule = scope.rule.clone();
    app(
        Some(&move |d: &std::path::Path| auth_file(d, &rule)),
        |_, _| {},
    )
    .await
}

async fn every_question_through_http(scope: Scope) {
    let fx = fixture().await;
    let sql = restricted(&scope).await;
    let app = server(&scope).await;
    let access = access(&scope);
    let mut failures = Vec::new();
    let mut answered = 0;
    for q in questions() {
        let query = Query::from_json(q.query).expect("query");
        let doc: Value = serde_json::from_str(q.query).expect("query JSON");
        // The admin first: the cache then holds the whole answer.
        let whole = app.query_as(ADMIN_KEY, &doc).await;
        let first = app.query_as(MANAGER_KEY, &doc).await;
        let again = app.query_as(MANAGER_KEY, &doc).await;
        let engine = fx.cube.session(access.clone()).query(&query).await;
        let mut problems = Vec::new();
        match engine {
            Ok(a) => {
                let want = what(&as_read(&a));
                for (n, r) in [("first", &first), ("cached", &again)] {
                    if r.status != 200 || what(&r.body) != want {
                        problems.push(format!(
                            "HTTP ({n}) differs from the scoped session:\n  http:   {} {}\n  engine: {want}",
                            r.status, r.text
                        ));
                    }
                }
                let checked = if !query.columns.is_empty() && !query.having.is_empty() {
                    pivot_with_having(&sql, q.sql, &a).await
                } else {
                    check_answer(&sql, &q, &query, &a).await
                };
                if let Err(e) = checked {
                    problems.push(format!(
                        "the scoped session differs from SQL over the scope: {e}"
                    ));
                }
                answered += 1;
            }
            Err(e) => {
                // Only a member the scope hides may fail, and then as a missing one does: the
                // value is not among the members the principal may list.
                let hidden = match &e {
                    lattice_engine::query::QueryError::UnknownMember { level, value, .. } => {
                        let (dim, lvl) = level.split_once('.').expect("dimension.level");
                        !members(&app, MANAGER_KEY, dim, lvl).await.0.contains(value)
                    }
                    _ => false,
                };
                if !hidden {
                    problems.push(format!("the scoped session failed ({}: {e})", e.code()));
                }
                for r in [&first, &again] {
                    if r.status != 400 || r.body["error"]["code"] != e.code() {
                        problems.push(format!("HTTP: {} {}", r.status, r.text));
                    }
                }
            }
        }
        // The admin still gets the whole answer.
        let unscoped = fx.cube.session(Access::everything()).query(&query).await;
        if let Ok(u) = unscoped {
            let want = what(&as_read(&u));
            if what(&whole.body) != want {
                problems.push(format!(
                    "the admin's answer is not the whole one: {}",
                    whole.text
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{} ({}):\n{}",
                q.name,
                q.query,
                problems.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "scope {}: {} of the questions differ:\n\n{}",
        scope.rule,
        failures.len(),
        failures.join("\n\n")
    );
    assert!(answered > 20, "only {answered} questions answered");
}

#[tokio::test]
async fn a_manager_s_answers_are_the_sql_answers_over_its_customers() {
    every_question_through_http(manager_scope().await).await;
}

#[tokio::test]
async fn a_province_analyst_s_answers_are_the_sql_answers_over_its_customers() {
    every_question_through_http(province_scope()).await;
}

/// A pivot with `having` drops the pivot columns no cell of which passes. The twins name the
/// columns that survive over all the data; over a scope's customers fewer may, so here the
/// twin's columns that are empty over the scope are dropped before comparing.
async fn pivot_with_having(
    sql: &SessionContext,
    twin: &str,
    a: &lattice_engine::query::Answer,
) -> Result<(), String> {
    let want = run_sql(sql, twin).await?;
    let keep: Vec<usize> = (0..want.names.len())
        .filter(|&i| {
            a.columns.get(i).is_some_and(|c| c.kind == "level")
                || want.rows.iter().any(|r| r[i] != Cell::Null)
        })
        .collect();
    let names: Vec<&str> = keep.iter().map(|&i| want.names[i].as_str()).collect();
    let got_names: Vec<&str> = a.columns.iter().map(|c| c.name.as_str()).collect();
    if names != got_names {
        return Err(format!(
            "columns: the engine has {got_names:?}, SQL {names:?}"
        ));
    }
    let want_rows: Vec<Vec<Cell>> = want
        .rows
        .iter()
        .map(|r| keep.iter().map(|&i| r[i].clone()).collect())
        .collect();
    let got: Vec<Vec<Cell>> = a
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .zip(&a.columns)
                .map(|(v, c)| Cell::from_json(v, (c.kind != "level").then_some(c.ty).flatten()))
                .collect()
        })
        .collect();
    crate::query_suite::compare_rows("rows", &got, &want_rows)
}

/// The texts of a SQL column.
async fn texts(sql: &SessionContext, query: &str) -> BTreeSet<String> {
    run_sql(sql, query)
        .await
        .expect("SQL")
        .rows
        .into_iter()
        .map(|r| match &r[0] {
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            other => panic!("text, not {other}"),
        })
        .collect()
}

/// Every member of a level over HTTP (all pages).
async fn members(app: &App, key: &str, dim: &str, level: &str) -> (BTreeSet<String>, u64) {
    let mut out = BTreeSet::new();
    let mut offset = 0;
    loop {
        let r = app
            .as_(
                key,
                "GET",
                &format!("/v1/cubes/bank_crm/members/{dim}/{level}?limit=1000&offset={offset}"),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.body["members"].as_array().expect("members");
        out.extend(
            page.iter()
                .map(|m| m["name"].as_str().expect("name").to_string()),
        );
        offset += page.len();
        if page.is_empty() || offset as u64 >= r.body["total"].as_u64().expect("total") {
            return (out, r.body["total"].as_u64().expect("total"));
        }
    }
}

#[tokio::test]
async fn member_lists_and_counts_hold_only_the_scope_s_members() {
    let scope = manager_scope().await;
    let sql = restricted(&scope).await;
    let app = server(&scope).await;
    // The customers: exactly the manager's.
    let want_customers = texts(&sql, "SELECT CAST(customer_id AS VARCHAR) FROM customers").await;
    let (got, total) = members(&app, MANAGER_KEY, "customer", "id").await;
    assert_eq!(got, want_customers);
    assert_eq!(total as usize, want_customers.len());
    // The managers: only this one.
    let (got, _) = members(&app, MANAGER_KEY, "manager", "manager").await;
    assert_eq!(
        got,
        BTreeSet::from([busiest_manager().await.clone()]),
        "manager members"
    );
    // Other levels: never a member none of its customers has.
    for (dim, level, sql_members) in [
        (
            "region",
            "province",
            "SELECT DISTINCT r.province FROM customers c JOIN regions r ON r.region_id = c.region_id",
        ),
        (
            "region",
            "branch",
            "SELECT DISTINCT r.branch FROM customers c JOIN regions r ON r.region_id = c.region_id",
        ),
        (
            "customer",
            "segment",
            "SELECT DISTINCT segment FROM customers",
        ),
    ] {
        let (got, _) = members(&app, MANAGER_KEY, dim, level).await;
        let allowed = texts(&sql, sql_members).await;
        assert!(
            got.is_subset(&allowed),
            "{dim}.{level}: {:?} are not the scope's",
            got.difference(&allowed).collect::<Vec<_>>()
        );
    }
    // Searching for another manager's customer finds nothing.
    let other = texts(
        &fixture().await.sql,
        &format!(
            "SELECT CAST(MIN(c.customer_id) AS VARCHAR) FROM customers c JOIN managers m
             ON m.manager_id = c.manager_id WHERE {} IS NOT TRUE",
            scope.keeps
        ),
    )
    .await;
    let other = other.first().expect("another manager's customer");
    let r = app
        .as_(
            MANAGER_KEY,
            "GET",
            &format!("/v1/cubes/bank_crm/members/customer/id?search={other}"),
            None,
        )
        .await;
    assert!(
        r.body["members"]
            .as_array()
            .expect("members")
            .iter()
            .all(|m| want_customers.contains(m["name"].as_str().unwrap_or(""))),
        "{}",
        r.text
    );
    // The cube's metadata: member counts of what it sees, and nothing about the whole cube.
    let r = app
        .as_(MANAGER_KEY, "GET", "/v1/cubes/bank_crm", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body.get("build").is_none(), "{}", r.text);
    let level = |dim: &str, level: &str| -> u64 {
        r.body["dimensions"]
            .as_array()
            .expect("dimensions")
            .iter()
            .find(|d| d["name"] == dim)
            .and_then(|d| d["levels"].as_array())
            .and_then(|ls| ls.iter().find(|l| l["name"] == level))
            .and_then(|l| l["members"].as_u64())
            .expect("a member count")
    };
    assert_eq!(level("customer", "id") as usize, want_customers.len());
    assert_eq!(level("manager", "manager"), 1);
    let r = app.as_(MANAGER_KEY, "GET", "/v1/cubes", None).await;
    assert!(r.body["cubes"][0].get("build").is_none(), "{}", r.text);
    // The admin sees the whole cube.
    let r = app.as_(ADMIN_KEY, "GET", "/v1/cubes/bank_crm", None).await;
    assert!(r.body["build"].is_object(), "{}", r.text);
}

#[tokio::test]
async fn drill_through_lists_only_the_scope_s_customers() {
    let fx = fixture().await;
    for scope in [manager_scope().await, province_scope()] {
        let sql = restricted(&scope).await;
        let app = server(&scope).await;
        let access = access(&scope);
        for (doc, cell) in [
            (
                json!({"level": "customer.id", "filters": [{"level": "time.year", "op": "eq", "value": "2025"}], "limit": 1000}),
                "FROM transactions t WHERE to_char(t.txn_date, '%Y') = '2025'",
            ),
            (
                json!({"level": "customer.id", "limit": 1000, "measures": ["txn_amount"]}),
                "FROM transactions t",
            ),
        ] {
            let r = app
                .as_(
                    MANAGER_KEY,
                    "POST",
                    "/v1/cubes/bank_crm/drillthrough",
                    Some(&doc),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            let want = texts(
                &sql,
                &format!("SELECT DISTINCT CAST(t.customer_id AS VARCHAR) {cell}"),
            )
            .await;
            let got: BTreeSet<String> = r.body["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| row[0].as_str().expect("a member").to_string())
                .collect();
            assert_eq!(got, want, "{} {doc}", scope.rule);
            assert_eq!(r.body["total"].as_u64(), Some(want.len() as u64));
            // The route answers as the engine does for the same access.
            let q = DrillQuery::from_json(&doc.to_string()).expect("drill query");
            let engine = fx
                .cube
                .session(access.clone())
                .drill_through(&q)
                .await
                .expect("drill_through");
            assert_eq!(what(&r.body), what(&as_read(&engine)), "{doc}");
        }
    }
}

#[tokio::test]
async fn the_cube_api_answers_within_the_scope() {
    let scope = manager_scope().await;
    let sql = restricted(&scope).await;
    let app = server(&scope).await;
    let cube_query = json!({"query": {
        "measures": ["bank_crm.txn_count"],
        "dimensions": ["bank_crm.region_province"],
        "order": {"bank_crm.region_province": "asc"},
    }});
    for authorization in [MANAGER_KEY.to_string(), format!("Bearer {MANAGER_KEY}")] {
        let r = app
            .call(
                "POST",
                "/cubejs-api/v1/load",
                Some(&authorization),
                Some(&cube_query),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let got: Vec<(String, String)> = r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|row| {
                (
                    row["bank_crm.region_province"]
                        .as_str()
                        .expect("province")
                        .to_string(),
                    row["bank_crm.txn_count"]
                        .as_str()
                        .expect("count")
                        .to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = run_sql(
            &sql,
            "SELECT r.province, CAST(COUNT(*) AS VARCHAR) FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN regions r ON r.region_id = c.region_id GROUP BY r.province ORDER BY r.province",
        )
        .await
        .expect("SQL")
        .rows
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Cell::Text(a), Cell::Text(b)) => (a.clone(), b.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn another_s_customer_and_no_customer_look_the_same() {
    let scope = manager_scope().await;
    let app = server(&scope).await;
    let other = texts(
        &fixture().await.sql,
        &format!(
            "SELECT CAST(MIN(c.customer_id) AS VARCHAR) FROM customers c JOIN managers m
             ON m.manager_id = c.manager_id WHERE {} IS NOT TRUE",
            scope.keeps
        ),
    )
    .await;
    let other = other.first().expect("another manager's customer").clone();
    let missing = "987654321".to_string();
    let sql = restricted(&scope).await;
    let mine = texts(&sql, "SELECT CAST(customer_id AS VARCHAR) FROM customers").await;
    // The same error for both but for the value itself and the suggestions (close members of
    // the value, drawn only from the principal's own customers).
    let strip = |r: &Reply, value: &str, what: &str| {
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        let suggestions = r.body["error"]["details"]["suggestions"].clone();
        for s in suggestions.as_array().into_iter().flatten() {
            let s = s.as_str().expect("a suggestion");
            assert!(
                mine.contains(s),
                "{what}: suggests {s}, not the principal's"
            );
        }
        let mut e = r.body.clone();
        e["error"]["details"]["suggestions"] = Value::Null;
        e["error"]["details"]["value"] = Value::Null;
        let message = e["error"]["message"].as_str().unwrap_or("").to_string();
        let message = message
            .split(" (close members")
            .next()
            .unwrap_or("")
            .replace(value, "ID");
        e["error"]["message"] = json!(message);
        e
    };
    let ask = |id: &str| {
        json!({"measures": ["txn_amount"], "rows": ["time.year"],
               "filters": [{"level": "customer.id", "op": "eq", "value": id}]})
    };
    let a = app.query_as(MANAGER_KEY, &ask(&other)).await;
    let b = app.query_as(MANAGER_KEY, &ask(&missing)).await;
    assert_eq!(
        strip(&a, &other, "query"),
        strip(&b, &missing, "query"),
        "another's customer and a missing one differ"
    );
    let drill = |id: &str| json!({"level": "customer.id", "filters": [{"level": "customer.id", "op": "eq", "value": id}]});
    let path = "/v1/cubes/bank_crm/drillthrough";
    let a = app
        .as_(MANAGER_KEY, "POST", path, Some(&drill(&other)))
        .await;
    let b = app
        .as_(MANAGER_KEY, "POST", path, Some(&drill(&missing)))
        .await;
    assert_eq!(
        strip(&a, &other, "drill-through"),
        strip(&b, &missing, "drill-through"),
        "another's customer and a missing one differ"
    );
    // The admin sees that customer.
    let r = app.query_as(ADMIN_KEY, &ask(&other)).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_abnormal_change_list_holds_only_the_scope_s_customers() {
    use lattice_engine::analytics::AbnormalQuery;
    let fx = fixture().await;
    let mut found = 0;
    for scope in [manager_scope().await, province_scope()] {
        let sql = restricted(&scope).await;
        let app = server(&scope).await;
        let theirs = texts(&sql, "SELECT CAST(customer_id AS VARCHAR) FROM customers").await;
        for doc in [
            json!({"kind": "dormant", "measure": "txn_count", "periods": 4, "limit": 1000}),
            json!({"kind": "change", "measure": "txn_amount", "level": "time.month",
                   "before": "2025-05", "after": "2025-06", "relative": 0.5, "direction": "any",
                   "limit": 1000}),
        ] {
            let r = app
                .as_(
                    MANAGER_KEY,
                    "POST",
                    "/v1/cubes/bank_crm/analytics/abnormal",
                    Some(&doc),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            let listed: BTreeSet<String> = r.body["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| row["member"].as_str().expect("a member").to_string())
                .collect();
            assert!(
                listed.is_subset(&theirs),
                "{}: someone else's customer listed: {:?}",
                scope.rule,
                listed.difference(&theirs).collect::<Vec<_>>()
            );
            // The route answers as the engine does for the same access, and the admin sees
            // at least as much.
            let q = AbnormalQuery::from_json(&doc.to_string()).expect("abnormal query");
            let engine = fx
                .cube
                .session(access(&scope))
                .abnormal(&q)
                .await
                .expect("abnormal");
            assert_eq!(what(&r.body), what(&as_read(&engine)), "{doc}");
            let admin = app
                .as_(
                    ADMIN_KEY,
                    "POST",
                    "/v1/cubes/bank_crm/analytics/abnormal",
                    Some(&doc),
                )
                .await;
            let everyone: BTreeSet<String> = admin.body["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .map(|row| row["member"].as_str().expect("a member").to_string())
                .collect();
            assert_eq!(listed, &everyone & &theirs, "{}: {doc}", scope.rule);
            assert!(
                everyone.len() > listed.len(),
                "{}: {doc}: {} of {}",
                scope.rule,
                listed.len(),
                everyone.len()
            );
            found += listed.len();
        }
    }
    assert!(found > 0, "no scoped principal had a customer to list");
}
