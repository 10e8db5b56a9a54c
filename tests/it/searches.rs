//! Target-customer searches (`engine/src/search/`): the issue's example and other conditions
//! equal a SQL twin over the raw tables, on the default cube, on the cube without cuboids (the
//! fallback) and on a cube whose cuboids hold the atoms' member sets; a scoped principal gets
//! the unscoped list restricted to their customers; a search used as a segment equals the same
//! query with the members written out; and over HTTP: CRUD kept on disk, runs, scope, CSV.

use std::collections::BTreeSet;
use std::sync::Arc;

use lattice_defs::model::AggMode;
use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Dataset, Query};
use lattice_engine::search::{
    HIDDEN, Search, SearchAnswer, SearchRun, SearchSet, definition_searches,
};
use lattice_engine::source::load::load;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::query_suite::{Cell, Fixture, fixture, run_sql};
use crate::util::{bank_crm, parquet_dir};

/// The issue's example: deposit band 200k+ in the latest month, no loan product (in the
/// latest month), used online or mobile in the last three months.
pub const EXAMPLE: &str = r#"{
  "name": "affluent_digital_no_loan",
  "description": "deposits of 200k+ in the latest month, no loan, online or mobile in the last 3 months",
  "where": {"all": [
    {"level": "customer.deposit_band", "op": "in", "values": ["200k-1M", "1M+"],
     "period": {"level": "time.month", "value": "latest"}},
    {"not": {"measure": "customers", "op": "gt", "value": 0,
             "filters": [{"level": "product.category", "op": "eq", "value": "loan"}],
             "period": {"value": "latest"}}},
    {"measure": "txn_count", "op": "gt", "value": 0,
     "filters": [{"level": "channel.channel", "op": "in", "values": ["online", "mobile"]}],
     "period": {"level": "time.month", "value": "latest", "last": 3}}
  ]}
}"#;

/// SQL: the example's customers, the latest months written out (checked below).
pub const EXAMPLE_SQL: &str = "
WITH d AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances
           WHERE month = DATE '2025-12-01' GROUP BY 1),
     loan AS (SELECT DISTINCT b.customer_id FROM balances b JOIN products p ON p.product_id = b.product_id
              WHERE p.category = 'loan' AND b.month = DATE '2025-12-01'),
     digital AS (SELECT DISTINCT t.customer_id FROM transactions t JOIN channels ch ON ch.channel_id = t.channel_id
                 WHERE ch.channel IN ('online', 'mobile') AND t.txn_date >= DATE '2025-10-01')
SELECT CAST(customer_id AS VARCHAR) FROM d
WHERE v >= 200000
  AND customer_id NOT IN (SELECT customer_id FROM loan)
  AND customer_id IN (SELECT customer_id FROM digital)";

fn search(json: &str) -> Search {
    Search::from_json(json).unwrap_or_else(|e| panic!("{e}\n{json}"))
}

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

/// The default model with cuboids holding every atom's member sets (deposit band per month,
/// product category per month, channel per month), also per manager for scopes.
async fn with_sets() -> &'static Arc<Dataset> {
    static CUBE: OnceCell<Arc<Dataset>> = OnceCell::const_new();
    CUBE.get_or_init(|| async {
        let mut model = bank_crm(parquet_dir(), false).expect("definition");
        let level = |n: &str| model.level(n).expect(n);
        let (band, month, manager) = (
            level("customer.deposit_band"),
            level("time.month"),
            level("manager.manager"),
        );
        let (category, channel) = (level("product.category"), level("channel.channel"));
        model.aggregates.mode = AggMode::Explicit;
        model.aggregates.cuboids = vec![
            vec![band, month, manager],
            vec![category, month, manager],
            vec![channel, month, manager],
        ];
        let sources = load(&model).await.expect("load");
        Arc::new(
            lattice_engine::open(&model, &sources, &BuildOptions::default())
                .await
                .expect("build"),
        )
    })
    .await
}

async fn sql_set(fx: &Fixture, sql: &str) -> BTreeSet<String> {
    let t = run_sql(&fx.sql, sql).await.expect("SQL");
    t.rows
        .iter()
        .map(|r| match &r[0] {
            Cell::Text(s) => s.clone(),
            other => panic!("{other}"),
        })
        .collect()
}

async fn names(cube: &Arc<Dataset>, s: &Search, access: &Access) -> BTreeSet<String> {
    let m = cube
        .session(access.clone())
        .search_members(s)
        .await
        .unwrap_or_else(|e| panic!("{e} ({})", e.code()));
    m.members
        .iter()
        .map(|c| cube.member_name(m.entity, c).to_string())
        .collect()
}

/// The three cubes with the paths they take for `s`.
async fn cubes(fx: &'static Fixture) -> [(&'static str, &'static Arc<Dataset>); 3] {
    [
        ("default", &fx.cube),
        ("no cuboids", &fx.bare),
        ("member sets", with_sets().await),
    ]
}

#[tokio::test]
async fn the_issue_example_equals_sql_on_every_path() {
    let fx = fixture().await;
    let latest = sql_set(
        fx,
        "SELECT CAST(MAX(month) AS VARCHAR) FROM balances UNION ALL
         SELECT CAST(date_trunc('month', MAX(txn_date)) AS VARCHAR) FROM transactions",
    )
    .await;
    assert!(
        latest.iter().all(|m| m.starts_with("2025-12-01")),
        "the SQL twin assumes December 2025 is the latest month: {latest:?}"
    );
    let want = sql_set(fx, EXAMPLE_SQL).await;
    assert!(!want.is_empty(), "the example selects someone");
    let s = search(EXAMPLE);
    for (what, cube) in cubes(fx).await {
        assert_eq!(names(cube, &s, &everyone()).await, want, "{what}");
    }
    let sets = with_sets()
        .await
        .session(everyone())
        .search_members(&s)
        .await
        .expect("run");
    assert_eq!(sets.sources, ["member_sets", "member_sets", "member_sets"]);
    let bare = fx
        .bare
        .session(everyone())
        .search_members(&s)
        .await
        .expect("run");
    assert_eq!(bare.sources, ["grouped", "grouped", "grouped"]);
    println!("example: {} customers", want.len());
}

#[tokio::test]
async fn any_not_bands_over_periods_and_exact_thresholds_equal_sql() {
    let fx = fixture().await;
    let cases = [
        (
            // Static attributes: customers with any fact, by segment.
            r#"{"name": "a", "where": {"any": [
                {"level": "customer.segment", "op": "eq", "value": "private"},
                {"all": [{"level": "customer.type", "op": "eq", "value": "corporate"},
                         {"not": {"level": "region.province", "op": "in", "values": ["Zhejiang"]}}]}]}}"#,
            "SELECT CAST(c.customer_id AS VARCHAR) FROM customers c JOIN regions r ON r.region_id = c.region_id
             WHERE (c.segment = 'private' OR (c.customer_type = 'corporate' AND r.province <> 'Zhejiang'))
               AND (c.customer_id IN (SELECT customer_id FROM balances)
                    OR c.customer_id IN (SELECT customer_id FROM transactions))",
        ),
        (
            // In the <10k band in any of 2025-04..2025-06.
            r#"{"name": "b", "where": {"level": "customer.deposit_band", "op": "eq", "value": "<10k",
                "period": {"value": "2025-06", "last": 3}}}"#,
            "SELECT DISTINCT CAST(customer_id AS VARCHAR) FROM
               (SELECT customer_id, month, SUM(deposit_balance) AS v FROM balances GROUP BY 1, 2)
             WHERE v < 10000 AND month BETWEEN DATE '2025-04-01' AND DATE '2025-06-01'",
        ),
        (
            // An exact decimal threshold, over a quarter, on a derived-free sum.
            r#"{"name": "c", "where": {"measure": "txn_amount", "op": "ge", "value": 12345.67,
                "period": {"level": "time.quarter", "value": "2025-Q2"}}}"#,
            "SELECT CAST(customer_id AS VARCHAR) FROM transactions
             WHERE txn_date BETWEEN DATE '2025-04-01' AND DATE '2025-06-30'
             GROUP BY customer_id HAVING SUM(amount) >= 12345.67",
        ),
        (
            // A semi-additive measure over several months reads the last of them.
            r#"{"name": "d", "where": {"measure": "loan_balance", "op": "gt", "value": "100000",
                "period": {"value": "2025-09", "last": 6}}}"#,
            "SELECT CAST(customer_id AS VARCHAR) FROM balances WHERE month = DATE '2025-09-01'
             GROUP BY customer_id HAVING SUM(loan_balance) > 100000",
        ),
    ];
    for (json, sql) in cases {
        let want = sql_set(fx, sql).await;
        assert!(!want.is_empty(), "{json}: SQL selects someone");
        let s = search(json);
        for (what, cube) in cubes(fx).await {
            assert_eq!(names(cube, &s, &everyone()).await, want, "{what}: {json}");
        }
    }
}

/// The customer ids of a manager, in SQL.
async fn customers_of(fx: &Fixture, manager: &str) -> BTreeSet<String> {
    sql_set(
        fx,
        &format!(
            "SELECT CAST(c.customer_id AS VARCHAR) FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE m.manager_name = '{manager}'"
        ),
    )
    .await
}

/// The manager of the most customers the example selects.
async fn example_manager(fx: &Fixture) -> String {
    let t = run_sql(
        &fx.sql,
        &format!(
            "SELECT m.manager_name FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE CAST(c.customer_id AS VARCHAR) IN ({EXAMPLE_SQL})
             GROUP BY 1 ORDER BY COUNT(*) DESC, 1 LIMIT 1"
        ),
    )
    .await
    .expect("SQL");
    match &t.rows[0][0] {
        Cell::Text(s) => s.clone(),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_scoped_principal_gets_the_unscoped_list_restricted_to_their_customers() {
    let fx = fixture().await;
    let manager = example_manager(fx).await;
    let theirs = customers_of(fx, &manager).await;
    let access = manager_scope(&manager);
    let with_not = r#"{"name": "n", "where": {"not": {"level": "customer.segment", "op": "eq", "value": "mass"}}}"#;
    for json in [EXAMPLE, with_not] {
        let s = search(json);
        let all = names(&fx.cube, &s, &everyone()).await;
        let want: BTreeSet<String> = all.intersection(&theirs).cloned().collect();
        assert!(!want.is_empty() && want.len() < all.len(), "{json}");
        for (what, cube) in cubes(fx).await {
            assert_eq!(names(cube, &s, &access).await, want, "{what}: {json}");
        }
        // The run's count and rows too; `total` is the principal's customers.
        let a = fx
            .cube
            .session(access.clone())
            .run_search(
                &s,
                &SearchRun {
                    limit: Some(10_000),
                    ..SearchRun::default()
                },
            )
            .await
            .expect("run");
        assert_eq!(a.count, Some(want.len() as u64));
        let listed: BTreeSet<String> = a
            .rows
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, want);
        assert!(a.total <= theirs.len() as u64);
    }
}

fn ids(a: &SearchAnswer) -> Vec<String> {
    a.rows
        .iter()
        .map(|r| r[0].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn runs_page_and_order_by_the_entity_or_a_measure() {
    let fx = fixture().await;
    let s = search(EXAMPLE);
    let all = fx
        .cube
        .session(everyone())
        .run_search(
            &s,
            &SearchRun {
                measures: vec!["deposit_balance".into(), "txn_count".into()],
                limit: Some(100_000),
                ..SearchRun::default()
            },
        )
        .await
        .expect("run");
    assert_eq!(all.count, Some(all.rows.len() as u64));
    let names: Vec<&str> = all.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["customer.id", "deposit_balance", "txn_count"]);
    // Pages in member order, then descending.
    let page = |order: Value, offset: u64, limit: u64| {
        let s = s.clone();
        async move {
            let r: SearchRun = serde_json::from_value(json!({
                "measures": ["deposit_balance", "txn_count"], "order": order,
                "offset": offset, "limit": limit
            }))
            .expect("run");
            fx.cube
                .session(everyone())
                .run_search(&s, &r)
                .await
                .expect("run")
        }
    };
    let p = page(json!([]), 2, 3).await;
    assert_eq!(p.rows, all.rows[2..5].to_vec());
    assert_eq!(p.count, all.count);
    let p = page(json!([{"by": "customer.id", "dir": "desc"}]), 0, 2).await;
    let mut rev = all.rows.clone();
    rev.reverse();
    assert_eq!(p.rows, rev[..2].to_vec());
    // By a measure, descending: the same order the deposits give, ties in member order.
    let p = page(json!([{"by": "deposit_balance", "dir": "desc"}]), 1, 4).await;
    let mut by = all.rows.clone();
    // Two-place decimals: exact enough as floats to order; nulls last.
    let num = |v: &Value| match v {
        Value::String(s) => s.parse::<f64>().ok(),
        v => v.as_f64(),
    };
    by.sort_by(|a, b| match (num(&a[1]), num(&b[1])) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (x, y) => x.is_none().cmp(&y.is_none()),
    });
    assert_eq!(
        ids(&p),
        by[1..5]
            .iter()
            .map(|r| r[0].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    // Ordering by something not listed is an error.
    let r: SearchRun =
        serde_json::from_value(json!({"order": [{"by": "fee_income"}]})).expect("run");
    let e = fx
        .cube
        .session(everyone())
        .run_search(&s, &r)
        .await
        .expect_err("bad order");
    assert_eq!(e.code(), "bad_order");
}

#[tokio::test]
async fn a_search_as_a_segment_equals_the_query_with_its_members_written_out() {
    let fx = fixture().await;
    let s = search(EXAMPLE);
    let searches: SearchSet = [(s.name.clone(), s.clone())].into_iter().collect();
    let manager = example_manager(fx).await;
    for access in [everyone(), manager_scope(&manager)] {
        let ids = names(&fx.cube, &s, &access).await;
        for doc in [
            json!({"measures": ["txn_amount", "active_customers"], "rows": ["channel.channel"]}),
            json!({"measures": ["deposit_balance", "customers"], "rows": ["customer.segment"], "totals": true}),
        ] {
            let mut with_segment = doc.clone();
            with_segment["segments"] = json!([s.name]);
            let mut q: Query = serde_json::from_value(with_segment).expect("query");
            for cube in [&fx.cube, &fx.base, &fx.bare] {
                let session = cube.session(access.clone());
                let mut expanded = q.clone();
                session
                    .expand_segments(&mut expanded, &searches)
                    .await
                    .expect("segments");
                let got = session.query(&expanded).await.expect("query");
                let mut explicit = doc.clone();
                explicit["filters"] = json!([{"level": "customer.id", "op": "in", "values": ids}]);
                let explicit: Query = serde_json::from_value(explicit).expect("query");
                let want = session.query(&explicit).await.expect("query");
                assert_eq!(got.rows, want.rows, "{doc}");
                assert_eq!(got.totals, want.totals, "{doc}");
            }
            // Unexpanded, a query says what segments need; unknown names are named.
            let e = fx
                .cube
                .session(Access::everything())
                .query(&q)
                .await
                .expect_err("raw");
            assert_eq!(e.code(), "bad_filter");
            q.segments = vec!["affluent_digital_no_lon".into()];
            let e = fx
                .cube
                .session(access.clone())
                .expand_segments(&mut q, &searches)
                .await
                .expect_err("unknown");
            assert_eq!(e.code(), "unknown_search");
            assert!(
                e.to_string()
                    .contains("did you mean 'affluent_digital_no_loan'"),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn bad_searches_say_what_and_where() {
    let fx = fixture().await;
    let cases = [
        (
            r#"{"name": "x", "where": {"all": [{"level": "customer.segmnt", "op": "eq", "value": "mass"}]}}"#,
            "unknown_level",
            "segment",
        ),
        (
            r#"{"name": "x", "where": {"measure": "txn_cnt", "op": "gt", "value": 0}}"#,
            "unknown_measure",
            "txn_count",
        ),
        (
            r#"{"name": "x", "where": {"level": "customer.segment", "op": "eq", "value": "rich"}}"#,
            "unknown_member",
            "rich",
        ),
        (
            r#"{"name": "x", "where": {"any": [{"level": "customer.segment", "measure": "txn_count", "op": "eq"}]}}"#,
            "bad_condition",
            "where.any[0]: a condition has exactly one",
        ),
        (
            r#"{"name": "x", "where": {"all": []}}"#,
            "bad_condition",
            "`all` needs at least one",
        ),
        (
            r#"{"name": "x", "where": {"measure": "txn_count", "op": "gt", "value": "lots"}}"#,
            "bad_condition",
            "number `value`",
        ),
        (
            r#"{"name": "x", "where": {"measure": "txn_count", "op": "bigger", "value": 1}}"#,
            "bad_condition",
            "unknown op 'bigger'",
        ),
        (
            r#"{"name": "x", "where": {"not": {"measure": "txn_count", "op": "gt", "value": 0, "period": {"last": 0}}}}"#,
            "bad_period",
            "where.not: period: `last`",
        ),
        (
            r#"{"name": "x", "where": {"measure": "txn_count", "op": "gt", "value": 0, "period": {"value": "2031-01"}}}"#,
            "unknown_member",
            "2031-01",
        ),
        (
            r#"{"name": "x", "where": {"measure": "txn_count", "op": "gt", "value": 0, "period": {"level": "customer.segment"}}}"#,
            "bad_period",
            "not a time level",
        ),
        (
            r#"{"name": "x", "where": {"level": "time.month", "op": "eq", "value": "2025-01"}}"#,
            "bad_condition",
            "say which periods",
        ),
        (
            r#"{"name": "x", "where": {"level": "customer.segment", "op": "eq", "value": "mass", "colour": 1}}"#,
            "malformed_query",
            "colour",
        ),
    ];
    for (json, code, says) in cases {
        let e = match Search::from_json(json) {
            Ok(s) => fx
                .cube
                .session(everyone())
                .search_members(&s)
                .await
                .expect_err(json),
            Err(e) => e,
        };
        assert_eq!(e.code(), code, "{json}: {e}");
        assert!(e.to_string().contains(says), "{json}: {e}");
    }
}

// ---- HTTP ----

/// An engine answer as a client reads it, without `meta` (which says how, not what).
fn what(answer: &impl serde::Serialize) -> Value {
    let mut v: Value =
        serde_json::from_str(&serde_json::to_string(answer).expect("JSON")).expect("JSON");
    if let Some(o) = v.as_object_mut() {
        o.remove("meta");
    }
    v
}

#[tokio::test]
async fn searches_are_saved_run_and_used_as_segments_over_http_as_the_principal_may_see() {
    let fx = fixture().await;
    let manager = example_manager(fx).await;
    let rule = format!("manager.manager = {manager}");
    let app = crate::auth::app(
        Some(&move |d: &std::path::Path| crate::auth::auth_file(d, &rule)),
        |_, _| {},
    )
    .await;
    let (admin, scoped) = (crate::auth::ADMIN_KEY, crate::auth::MANAGER_KEY);
    // The definition names the example; the API saves it under another name, shared.
    let saved = EXAMPLE.replace("affluent_digital_no_loan", "saved_digital_no_loan");
    let mut doc: Value = serde_json::from_str(&saved).expect("JSON");
    doc["shared"] = json!(true);
    let path = "/v1/cubes/bank_crm/searches/saved_digital_no_loan";

    // Sharing needs `admin`; the file beside the definition holds what was saved, and whose.
    app.as_(scoped, "PUT", path, Some(&doc))
        .await
        .error(403, "forbidden");
    let r = app.as_(admin, "PUT", path, Some(&doc)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(app.as_(admin, "PUT", path, Some(&doc)).await.status, 200);
    let file = app.dir.path().join("bank_crm.searches.json");
    let kept: Vec<Search> =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("JSON");
    let mut owned = search(&saved);
    owned.owner = Some("key:admin".into());
    owned.shared = true;
    assert_eq!(kept, vec![owned.clone()]);
    let r = app
        .as_(scoped, "GET", "/v1/cubes/bank_crm/searches", None)
        .await;
    assert_eq!(
        r.body["searches"][1]["name"], "saved_digital_no_loan",
        "{}",
        r.text
    );
    assert_eq!(r.body["searches"][1]["source"], "api");
    assert_eq!(
        (
            &r.body["searches"][0]["name"],
            &r.body["searches"][0]["source"]
        ),
        (&json!("affluent_digital_no_loan"), &json!("definition"))
    );
    let mut r = app.as_(scoped, "GET", path, None).await;
    r.body.as_object_mut().expect("object").remove("source");
    let read: Search = serde_json::from_value(r.body).expect("a search document");
    assert_eq!(read, owned);

    // Runs answer as the engine does for each principal.
    let s = search(&saved);
    let body = json!({"measures": ["deposit_balance"], "limit": 5000});
    let opts: SearchRun = serde_json::from_value(body.clone()).expect("run");
    for (key, access) in [(admin, everyone()), (scoped, manager_scope(&manager))] {
        let r = app
            .as_(key, "POST", &format!("{path}/run"), Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let engine = fx
            .cube
            .session(access.clone())
            .run_search(&s, &opts)
            .await
            .expect("run");
        let mut got = r.body.clone();
        got.as_object_mut().expect("object").remove("meta");
        assert_eq!(got, what(&engine));
        // Ad hoc, the same.
        let mut adhoc = body.clone();
        adhoc["search"] = doc.clone();
        let r = app
            .as_(key, "POST", "/v1/cubes/bank_crm/searches/run", Some(&adhoc))
            .await;
        let mut got = r.body.clone();
        got.as_object_mut().expect("object").remove("meta");
        assert_eq!(got, what(&engine), "{}", r.text);
        // CSV: a header and one line per member.
        let r = app
            .as_(key, "POST", &format!("{path}/run?format=csv"), Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(
            r.headers[axum::http::header::CONTENT_TYPE]
                .to_str()
                .expect("type")
                .starts_with("text/csv")
        );
        let lines: Vec<&str> = r.text.lines().collect();
        assert_eq!(lines[0], "customer.id,deposit_balance");
        assert_eq!(lines.len() - 1, engine.rows.len());
        let first = &engine.rows[0];
        assert_eq!(
            lines[1],
            format!(
                "{},{}",
                first[0].as_str().unwrap(),
                first[1].as_str().unwrap()
            )
        );
        // A query with the segment equals the engine's with the members written out.
        let ids = names(&fx.cube, &s, &access).await;
        let q = json!({"measures": ["txn_amount", "active_customers"], "rows": ["channel.channel"],
                       "segments": ["saved_digital_no_loan"]});
        let r = app.query_as(key, &q).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let explicit: Query = serde_json::from_value(json!({
            "measures": ["txn_amount", "active_customers"], "rows": ["channel.channel"],
            "filters": [{"level": "customer.id", "op": "in", "values": ids}]}))
        .expect("query");
        let want = fx
            .cube
            .session(access.clone())
            .query(&explicit)
            .await
            .expect("query");
        assert_eq!(r.body["rows"], what(&want)["rows"]);
    }

    // Errors say what and where.
    let r = app
        .as_(
            admin,
            "POST",
            "/v1/cubes/bank_crm/searches/saved_digital_no_lon/run",
            None,
        )
        .await;
    let e = r.error(404, "unknown_search");
    assert!(
        e["message"].as_str().unwrap().contains("did you mean"),
        "{e}"
    );
    let bad = json!({"name": "bad", "where": {"all": [{"level": "customer.segment"}]}});
    let r = app
        .as_(admin, "PUT", "/v1/cubes/bank_crm/searches/bad", Some(&bad))
        .await;
    assert_eq!(
        r.error(400, "bad_condition")["details"]["at"],
        "where.all[0]"
    );
    let r = app
        .query_as(
            admin,
            &json!({"measures": ["txn_count"], "segments": ["nope"]}),
        )
        .await;
    r.error(404, "unknown_search");
    let r = app
        .as_(
            admin,
            "PUT",
            "/v1/cubes/bank_crm/searches/other",
            Some(&doc),
        )
        .await;
    r.error(400, "bad_search_name");

    // The definition's search: run by name as the engine runs it, and read-only.
    let yaml_path = "/v1/cubes/bank_crm/searches/affluent_digital_no_loan";
    let r = app
        .as_(admin, "POST", &format!("{yaml_path}/run"), Some(&body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let engine = fx
        .cube
        .session(everyone())
        .run_search(&search(EXAMPLE), &opts)
        .await
        .expect("run");
    let mut got = r.body.clone();
    got.as_object_mut().expect("object").remove("meta");
    assert_eq!(got, what(&engine));
    let example: Value = serde_json::from_str(EXAMPLE).expect("JSON");
    for (method, body) in [("PUT", Some(&example)), ("DELETE", None)] {
        let r = app.as_(admin, method, yaml_path, body).await;
        let e = r.error(409, "search_read_only");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("defined in the cube's definition"),
            "{e}"
        );
    }

    // Deleting is the owner's (or an admin's), and empties the file.
    app.as_(scoped, "DELETE", path, None)
        .await
        .error(403, "forbidden");
    assert_eq!(app.as_(admin, "DELETE", path, None).await.status, 204);
    app.as_(admin, "DELETE", path, None)
        .await
        .error(404, "unknown_search");
    let kept: Vec<Search> =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("file")).expect("JSON");
    assert!(kept.is_empty());
}

// ---- the definition's searches (`searches:` in the YAML) ----

#[tokio::test]
async fn the_yaml_search_is_the_issue_example_and_equals_sql_on_every_path() {
    let fx = fixture().await;
    let defined = definition_searches(&fx.cube.model);
    let s = defined
        .get("affluent_digital_no_loan")
        .expect("the shipped definition names the example");
    assert_eq!(s, &search(EXAMPLE));
    let want = sql_set(fx, EXAMPLE_SQL).await;
    assert!(!want.is_empty());
    for (what, cube) in cubes(fx).await {
        assert_eq!(names(cube, s, &everyone()).await, want, "{what}");
    }
    // As a segment, as the server expands it (the definition's searches with the saved).
    let mut q: Query = serde_json::from_value(json!({
        "measures": ["customers"], "segments": ["affluent_digital_no_loan"]}))
    .expect("query");
    fx.cube
        .session(everyone())
        .expand_segments(&mut q, &defined)
        .await
        .expect("segments");
    let a = fx.cube.session(everyone()).query(&q).await.expect("query");
    assert_eq!(a.rows[0][0], json!(want.len()));
}

#[tokio::test]
async fn a_yaml_search_naming_a_member_the_data_lacks_fails_the_build_at_its_line() {
    let yaml = lattice_defs::BANK_CRM_YAML.replace(
        r#"values: ["200k-1M", "1M+"]"#,
        r#"values: ["200k-1M", "2M+"]"#,
    );
    let model = lattice_defs::parse_str(&yaml, "bank_crm.yaml", parquet_dir())
        .expect("valid without the data");
    let sources = load(&model).await.expect("load");
    let e = lattice_engine::open(&model, &sources, &BuildOptions::default())
        .await
        .expect_err("no member 2M+");
    let text = e.to_string();
    let line = 1 + yaml
        .lines()
        .position(|l| l.trim_start().starts_with("affluent_digital_no_loan:"))
        .expect("the search");
    assert!(
        text.contains(&format!(
            "bank_crm.yaml:{line}:3: searches.affluent_digital_no_loan: search 'affluent_digital_no_loan': "
        )),
        "{text}"
    );
    assert!(
        text.contains("'2M+' is not a member of 'customer.deposit_band'"),
        "{text}"
    );
}

// ---- owners, sharing and what a scope hides (issue 18) ----

/// A manager other than `manager` with customers who have facts.
async fn another_manager(fx: &Fixture, manager: &str) -> String {
    let names = sql_set(
        fx,
        &format!(
            "SELECT m.manager_name FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE m.manager_name <> '{manager}'
               AND c.customer_id IN (SELECT customer_id FROM transactions)"
        ),
    )
    .await;
    names.into_iter().next().expect("another manager")
}

/// The server of the auth tests, its `manager` key scoped to `manager`.
async fn app_scoped_to(manager: &str) -> crate::auth::App {
    let rule = format!("manager.manager = {manager}");
    crate::auth::app(
        Some(&move |d: &std::path::Path| crate::auth::auth_file(d, &rule)),
        |_, _| {},
    )
    .await
}

#[tokio::test]
async fn a_saved_search_is_its_owner_s_and_others_get_404_unless_an_admin_shares_it() {
    use crate::auth::{ADMIN_KEY, MANAGER_KEY, SERIAL_KEY, token};
    let fx = fixture().await;
    let manager = example_manager(fx).await;
    let app = app_scoped_to(&manager).await;
    // A token whose subject is named like the key, with the same scope: another principal.
    let twin = token(
        jsonwebtoken::Algorithm::HS256,
        json!({"sub": "manager", "lattice_roles": ["manager"],
               "lattice_scope": [format!("manager.manager = {manager}")]}),
    );
    let base = "/v1/cubes/bank_crm/searches";
    let path = format!("{base}/my_private");
    let mine = json!({"name": "my_private",
                      "where": {"level": "customer.segment", "op": "eq", "value": "private"}});
    let mut shared = mine.clone();
    shared["shared"] = json!(true);

    // Any principal saves its own, but only an admin shares.
    let r = app.as_(MANAGER_KEY, "PUT", &path, Some(&mine)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["owner"], "key:manager", "{}", r.text);
    app.as_(MANAGER_KEY, "PUT", &path, Some(&shared))
        .await
        .error(403, "forbidden");
    let mut claimed = mine.clone();
    claimed["owner"] = json!("key:admin");
    app.as_(MANAGER_KEY, "PUT", &path, Some(&claimed))
        .await
        .error(400, "malformed_query");

    // To anyone else it does not exist: not listed, 404 everywhere, never suggested.
    for key in [SERIAL_KEY, twin.as_str()] {
        let r = app.as_(key, "GET", base, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!r.text.contains("my_private"), "{}", r.text);
        for (method, uri) in [
            ("GET", path.clone()),
            ("POST", format!("{path}/run")),
            ("POST", format!("{path}/run?format=csv")),
            ("DELETE", path.clone()),
        ] {
            let r = app.as_(key, method, &uri, None).await;
            r.error(404, "unknown_search");
            assert!(!r.text.contains("did you mean"), "{}", r.text);
        }
        let r = app
            .as_(key, "GET", &format!("{base}/my_privat"), None)
            .await;
        r.error(404, "unknown_search");
        assert!(!r.text.contains("my_private"), "{}", r.text);
        app.query_as(
            key,
            &json!({"measures": ["customers"], "segments": ["my_private"]}),
        )
        .await
        .error(404, "unknown_search");
        // Its name is taken, and that is all a save says.
        app.as_(key, "PUT", &path, Some(&mine))
            .await
            .error(409, "search_name_taken");
    }
    for key in [MANAGER_KEY, ADMIN_KEY] {
        let r = app.as_(key, "GET", &path, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r = app.as_(key, "POST", &format!("{path}/run"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }

    // An admin shares it; it stays the manager's. Others read and run it, but may not change
    // or delete it; the owner may not stop sharing it, and deletes it.
    let r = app.as_(ADMIN_KEY, "PUT", &path, Some(&shared)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["owner"], "key:manager", "{}", r.text);
    for key in [SERIAL_KEY, twin.as_str()] {
        let r = app.as_(key, "GET", base, None).await;
        assert!(r.text.contains("my_private"), "{}", r.text);
        let r = app.as_(key, "POST", &format!("{path}/run"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        app.as_(key, "PUT", &path, Some(&shared))
            .await
            .error(403, "forbidden");
        app.as_(key, "DELETE", &path, None)
            .await
            .error(403, "forbidden");
    }
    app.as_(MANAGER_KEY, "PUT", &path, Some(&mine))
        .await
        .error(403, "forbidden");
    assert_eq!(
        app.as_(MANAGER_KEY, "DELETE", &path, None).await.status,
        204
    );
}

#[tokio::test]
async fn member_names_outside_the_scope_are_hidden_and_runs_answer_as_if_absent() {
    use crate::auth::{ADMIN_KEY, MANAGER_KEY};
    let fx = fixture().await;
    let manager = example_manager(fx).await;
    let other = another_manager(fx, &manager).await;
    let app = app_scoped_to(&manager).await;
    let base = "/v1/cubes/bank_crm/searches";
    // A file from before searches had owners: an admin's, shared with every principal.
    let legacy = json!({"name": "legacy", "where":
        {"level": "manager.manager", "op": "in", "values": [other, manager]}});
    std::fs::write(
        app.dir.path().join("bank_crm.searches.json"),
        json!([legacy]).to_string(),
    )
    .expect("searches file");
    // The manager lists and reads it without the other's name, told how many are hidden.
    let r = app.as_(MANAGER_KEY, "GET", base, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains(&other), "{}", r.text);
    let r = app
        .as_(MANAGER_KEY, "GET", &format!("{base}/legacy"), None)
        .await;
    assert!(!r.text.contains(&other), "{}", r.text);
    assert_eq!(r.body["where"]["values"], json!([HIDDEN, manager]));
    assert_eq!(r.body["hidden"], 1);
    // An admin's shared search naming the other manager in a member atom and in a filter.
    let mixed = json!({"name": "mixed", "shared": true, "where": {"any": [
        {"level": "manager.manager", "op": "eq", "value": other},
        {"all": [{"level": "customer.segment", "op": "eq", "value": "private"},
                 {"measure": "txn_count", "op": "gt", "value": 0,
                  "filters": [{"level": "manager.manager", "op": "not_in", "values": [other]}]}]}]}});
    let r = app
        .as_(ADMIN_KEY, "PUT", &format!("{base}/mixed"), Some(&mixed))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.as_(MANAGER_KEY, "GET", base, None).await;
    assert!(!r.text.contains(&other), "{}", r.text);
    let r = app
        .as_(MANAGER_KEY, "GET", &format!("{base}/mixed"), None)
        .await;
    assert!(!r.text.contains(&other), "{}", r.text);
    assert_eq!(r.body["hidden"], 2);
    // An admin reads them as written.
    let r = app
        .as_(ADMIN_KEY, "GET", &format!("{base}/mixed"), None)
        .await;
    assert!(r.text.contains(&other) && r.body.get("hidden").is_none());

    // Runs, exports and segments answer as the search does for the manager: the unscoped
    // members restricted to theirs, the hidden names nowhere.
    let theirs = customers_of(fx, &manager).await;
    for doc in [&legacy, &mixed] {
        let name = doc["name"].as_str().unwrap();
        let all = names(&fx.cube, &search(&doc.to_string()), &everyone()).await;
        let want: BTreeSet<String> = all.intersection(&theirs).cloned().collect();
        assert!(!want.is_empty() && want.len() < all.len(), "{doc}");
        let body = json!({"limit": 5000});
        let r = app
            .as_(
                MANAGER_KEY,
                "POST",
                &format!("{base}/{name}/run"),
                Some(&body),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!r.text.contains(&other), "{}", r.text);
        let got: BTreeSet<String> = r.body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| row[0].as_str().expect("id").to_string())
            .collect();
        assert_eq!(got, want, "{name}");
        let r = app
            .as_(
                MANAGER_KEY,
                "POST",
                &format!("{base}/{name}/run?format=csv"),
                Some(&body),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.text.lines().count()),
            (200, want.len() + 1)
        );
        let r = app
            .query_as(
                MANAGER_KEY,
                &json!({"measures": ["customers"], "segments": [name]}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(!r.text.contains(&other), "{}", r.text);
    }

    // The search from the old file is shared, not the manager's to delete; an admin's.
    let legacy_path = format!("{base}/legacy");
    app.as_(MANAGER_KEY, "DELETE", &legacy_path, None)
        .await
        .error(403, "forbidden");
    assert_eq!(
        app.as_(ADMIN_KEY, "DELETE", &legacy_path, None)
            .await
            .status,
        204
    );
}

// ---- small-cell suppression (issue 18) ----

fn analyst() -> Access {
    Access {
        scope: Vec::new(),
        roles: vec!["analyst".into()],
    }
}

/// The customer with the largest deposits in the latest month, the deposits of the runner-up
/// and theirs (as exact text), and a segment the customer is not in.
async fn top_depositor(fx: &Fixture) -> (String, String, String, String) {
    let t = run_sql(
        &fx.sql,
        "WITH d AS (SELECT customer_id, SUM(deposit_balance) AS v FROM balances
                    WHERE month = DATE '2025-12-01' GROUP BY 1)
         SELECT CAST(d.customer_id AS VARCHAR) AS id, CAST(d.v AS VARCHAR) AS deposits, c.segment
         FROM d JOIN customers c ON c.customer_id = d.customer_id ORDER BY d.v DESC LIMIT 2",
    )
    .await
    .expect("SQL");
    let text = |c: &Cell| match c {
        Cell::Text(s) => s.clone(),
        other => panic!("{other}"),
    };
    let (top, runner_up) = (&t.rows[0], &t.rows[1]);
    assert_ne!(text(&top[1]), text(&runner_up[1]), "a single top depositor");
    let segment = sql_set(
        fx,
        &format!(
            "SELECT DISTINCT segment FROM customers WHERE segment <> '{}'",
            text(&top[2])
        ),
    )
    .await
    .into_iter()
    .next()
    .expect("another segment");
    (text(&top[0]), text(&runner_up[1]), text(&top[1]), segment)
}

#[tokio::test]
async fn a_search_count_is_no_oracle_on_one_customer_under_suppression() {
    let fx = fixture().await;
    let (id, below, at, segment) = top_depositor(fx).await;
    // The first branch holds the top depositor when the threshold is below their deposits,
    // and no one at them; the second is a large group without them.
    let oracle = |threshold: &str| {
        search(
            &json!({"name": "oracle", "where": {"any": [
                {"measure": "deposit_balance", "op": "gt", "value": threshold,
                 "period": {"value": "latest"}},
                {"level": "customer.segment", "op": "eq", "value": segment}]}})
            .to_string(),
        )
    };
    let everyone_counts: Vec<u64> = {
        let mut out = Vec::new();
        for t in [&below, &at] {
            out.push(
                fx.cube
                    .session(everyone())
                    .search_members(&oracle(t))
                    .await
                    .expect("run")
                    .members
                    .len(),
            );
        }
        out
    };
    assert_eq!(
        everyone_counts[0],
        everyone_counts[1] + 1,
        "the oracle works unsuppressed"
    );
    let answers: Vec<Value> = {
        let mut out = Vec::new();
        for t in [&below, &at] {
            let a = fx
                .cube
                .session(analyst())
                .run_search(&oracle(t), &SearchRun::default())
                .await
                .expect("run");
            assert!(
                a.suppressed && a.count.is_none() && a.rows.is_empty(),
                "{a:?}"
            );
            out.push(what(&a));
        }
        out
    };
    assert_eq!(
        answers[0], answers[1],
        "the answer turns on one customer's deposits"
    );

    // Nor as a segment.
    let searches: SearchSet = [("oracle".to_string(), oracle(&below))]
        .into_iter()
        .collect();
    let mut q: Query = serde_json::from_value(json!({
        "measures": ["customers"], "segments": ["oracle"]}))
    .expect("query");
    let e = fx
        .cube
        .session(analyst())
        .expand_segments(&mut q, &searches)
        .await
        .expect_err("withheld");
    assert_eq!(e.code(), "forbidden", "{e}");

    // A condition on the customers' key is refused, in an atom or in a filter.
    for doc in [
        json!({"name": "pin", "where": {"any": [
            {"all": [{"level": "customer.id", "op": "eq", "value": id},
                     {"measure": "deposit_balance", "op": "gt", "value": below,
                      "period": {"value": "latest"}}]},
            {"level": "customer.segment", "op": "eq", "value": segment}]}}),
        json!({"name": "pin", "where": {"measure": "deposit_balance", "op": "gt", "value": below,
            "filters": [{"level": "customer.id", "op": "in", "values": [id]}]}}),
    ] {
        let e = fx
            .cube
            .session(analyst())
            .search_members(&search(&doc.to_string()))
            .await
            .expect_err("pinned");
        assert_eq!(e.code(), "forbidden", "{e}");
        assert!(
            e.to_string()
                .contains("'customer.id' picks single customers")
                && e.to_string().contains("small-cell suppression"),
            "{e}"
        );
    }

    // A search of large sets and steps still answers the suppressed role in full.
    let plain = search(
        &json!({"name": "plain", "where": {"level": "customer.segment", "op": "eq", "value": segment}})
            .to_string(),
    );
    let a = fx
        .cube
        .session(analyst())
        .run_search(&plain, &SearchRun::default())
        .await
        .expect("run");
    let want = fx
        .cube
        .session(everyone())
        .search_members(&plain)
        .await
        .expect("run");
    assert_eq!((a.count, a.suppressed), (Some(want.members.len()), false));
}

#[tokio::test]
async fn over_http_a_suppressed_principal_gets_403_for_a_condition_on_one_customer() {
    let fx = fixture().await;
    let (id, below, _, segment) = top_depositor(fx).await;
    let manager = example_manager(fx).await;
    let app = app_scoped_to(&manager).await;
    // An analyst of one manager's customers: the condition is refused before any member of
    // it is looked up, in scope or not.
    let analyst = crate::auth::token(
        jsonwebtoken::Algorithm::HS256,
        json!({"sub": "ana", "lattice_roles": ["analyst"],
               "lattice_scope": [format!("manager.manager = {manager}")]}),
    );
    let body = json!({"search": {"name": "pin", "where": {"any": [
        {"all": [{"level": "customer.id", "op": "eq", "value": id},
                 {"measure": "deposit_balance", "op": "gt", "value": below,
                  "period": {"value": "latest"}}]},
        {"level": "customer.segment", "op": "eq", "value": segment}]}}});
    let r = app
        .as_(
            &analyst,
            "POST",
            "/v1/cubes/bank_crm/searches/run",
            Some(&body),
        )
        .await;
    let e = r.error(403, "forbidden");
    assert_eq!(e["details"]["level"], "customer.id", "{e}");
}
