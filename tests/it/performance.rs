//! Manager performance (`engine/src/analytics/performance.rs`), every number held to a SQL
//! twin written here over the raw tables: customers per manager and period (distinct customers
//! with balances rows), new and lost by anti-joins between consecutive periods, balances at the
//! period's closing month, fees, the high-value share from deposit bands computed in SQL from
//! the definition's bucket edges, and `RANK()` within the branch — per month and per quarter,
//! with a filter, under a manager's scope, on the default cube, a cube whose cuboids hold the
//! customer sets, and one without cuboids (grouped queries). Then bad requests, HTTP and CLI.

use std::sync::Arc;

use lattice_defs::model::{AggMode, Cuts, LevelKind};
use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::analytics::{AnalyticsError, PerformanceAnswer, PerformanceQuery};
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Dataset;
use lattice_engine::source::load::load;
use lattice_engine::store::Cube;
use serde_json::Value as Json;
use tokio::sync::OnceCell;

use crate::query_suite::{Cell, Fixture, compare_rows, fixture, run_sql};
use crate::util::post_json;
use crate::util::{bank_crm, parquet_dir};

fn manager_scope(manager: &str) -> Access {
    let rule: ScopeRule = format!("manager.manager = {manager}")
        .parse()
        .expect("scope rule");
    Access {
        scope: vec![rule],
        roles: Vec::new(),
    }
}

/// The default cube with cuboids that hold the customer sets per manager and month (with and
/// without product category) and per deposit band and month, so that every set is read from
/// roaring sets.
async fn with_sets() -> &'static Arc<Dataset> {
    static CUBE: OnceCell<Arc<Dataset>> = OnceCell::const_new();
    CUBE.get_or_init(|| async {
        let mut model = bank_crm(parquet_dir(), false).expect("definition");
        let level = |n: &str| model.level(n).expect(n);
        let (manager, month) = (level("manager.manager"), level("time.month"));
        let (band, category) = (level("customer.deposit_band"), level("product.category"));
        model.aggregates.mode = AggMode::Explicit;
        model.aggregates.cuboids = vec![
            vec![manager, month],
            vec![manager, month, category],
            vec![band, month],
            vec![band, month, manager],
            vec![band, month, category],
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

/// SQL: the deposit band label of a customer's total `v`, from the definition's edges.
fn band_sql(cube: &Cube, v: &str) -> String {
    let model = &cube.model;
    let l = model.level("customer.deposit_band").expect("deposit_band");
    let LevelKind::Bucket(b) = &model.dimensions[l.dim].levels[l.level].kind else {
        panic!("deposit_band is a bucket");
    };
    let Cuts::Edges(edges) = &b.cuts else {
        panic!("deposit_band has fixed edges");
    };
    let mut sql = "CASE".to_string();
    for (edge, label) in edges.iter().zip(&b.labels) {
        sql.push_str(&format!(" WHEN {v} < {edge} THEN '{label}'"));
    }
    sql.push_str(&format!(" ELSE '{}' END", b.labels.last().expect("labels")));
    sql
}

/// SQL: the period of date `d` (`month` or `quarter`), named as the time levels name them.
fn period_sql(kind: &str, d: &str) -> String {
    match kind {
        "month" => format!("to_char({d}, '%Y-%m')"),
        _ => format!(
            "CONCAT(CAST(CAST(date_part('year', {d}) AS BIGINT) AS VARCHAR), '-Q', CAST(CAST(date_part('quarter', {d}) AS BIGINT) AS VARCHAR))"
        ),
    }
}

/// The SQL twin of a performance request.
struct Twin<'a> {
    /// The level assessed and its SQL over customers `c`, their manager `m`, the manager's
    /// branch `r` and the customer's home branch `rc`; the rank's parent level likewise.
    level: (&'a str, &'a str),
    within: (&'a str, &'a str),
    /// `month` or `quarter`.
    period: &'a str,
    from: &'a str,
    to: &'a str,
    /// A condition on products `p` (the request's filter).
    products: &'a str,
    /// A condition on managers `m` (the principal's scope).
    managers: &'a str,
    /// The high-value deposit bands.
    high: &'a [&'a str],
}

impl Twin<'_> {
    fn sql(&self, cube: &Cube) -> String {
        let (products, managers) = (self.products, self.managers);
        let (member, parent) = (self.level.1, self.within.1);
        let p = |d: &str| period_sql(self.period, d);
        let (p_bal, p_month, p_txn) = (p("b.month"), p("month"), p("t.txn_date"));
        let band = band_sql(cube, "dc.v");
        let high = self
            .high
            .iter()
            .map(|h| format!("'{h}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let (from, to) = (self.from, self.to);
        format!(
            "WITH cm AS (SELECT c.customer_id, {member} AS manager, {parent} AS branch
                         FROM customers c JOIN managers m ON m.manager_id = c.manager_id
                         JOIN regions r ON r.region_id = m.region_id
                         JOIN regions rc ON rc.region_id = c.region_id WHERE {managers}),
                  mgr AS (SELECT DISTINCT manager, branch FROM cm),
                  pidx AS (SELECT period, close, ROW_NUMBER() OVER (ORDER BY period) AS i
                           FROM (SELECT {p_month} AS period, MAX(month) AS close FROM balances GROUP BY 1)),
                  bal AS (SELECT b.*, {p_bal} AS period FROM balances b
                          JOIN products p ON p.product_id = b.product_id WHERE {products}),
                  act AS (SELECT DISTINCT cm.manager, pidx.i, bal.customer_id FROM bal
                          JOIN cm ON cm.customer_id = bal.customer_id JOIN pidx ON pidx.period = bal.period),
                  cust AS (SELECT manager, i, COUNT(*) AS n FROM act GROUP BY 1, 2),
                  newc AS (SELECT a.manager, a.i, COUNT(*) AS n FROM act a
                           LEFT JOIN act b ON b.manager = a.manager AND b.customer_id = a.customer_id AND b.i = a.i - 1
                           WHERE b.customer_id IS NULL GROUP BY 1, 2),
                  lostc AS (SELECT b.manager, b.i + 1 AS i, COUNT(*) AS n FROM act b
                            LEFT JOIN act a ON a.manager = b.manager AND a.customer_id = b.customer_id AND a.i = b.i + 1
                            WHERE a.customer_id IS NULL GROUP BY 1, 2),
                  bals AS (SELECT cm.manager, pidx.i, SUM(bal.deposit_balance) AS dep, SUM(bal.loan_balance) AS loan
                           FROM bal JOIN cm ON cm.customer_id = bal.customer_id
                           JOIN pidx ON pidx.period = bal.period AND pidx.close = bal.month GROUP BY 1, 2),
                  fees AS (SELECT cm.manager, pidx.i, SUM(t.fee_income) AS fee FROM transactions t
                           JOIN products p ON p.product_id = t.product_id
                           JOIN cm ON cm.customer_id = t.customer_id
                           JOIN pidx ON pidx.period = {p_txn} WHERE {products} GROUP BY 1, 2),
                  dc AS (SELECT b.customer_id, pidx.i, SUM(b.deposit_balance) AS v FROM balances b
                         JOIN pidx ON pidx.close = b.month GROUP BY 1, 2),
                  hvset AS (SELECT DISTINCT bal.customer_id, pidx.i FROM bal
                            JOIN pidx ON pidx.close = bal.month AND pidx.period = bal.period
                            JOIN dc ON dc.customer_id = bal.customer_id AND dc.i = pidx.i
                            WHERE {band} IN ({high})),
                  hv AS (SELECT act.manager, act.i, COUNT(*) AS n FROM act
                         JOIN hvset ON hvset.customer_id = act.customer_id AND hvset.i = act.i GROUP BY 1, 2),
                  keys AS (SELECT manager, i FROM cust UNION SELECT manager, i FROM lostc
                           UNION SELECT manager, i FROM bals UNION SELECT manager, i FROM fees),
                  r AS (SELECT pidx.period, mgr.branch, k.manager, COALESCE(cust.n, 0) AS customers,
                               CASE WHEN k.i > 1 THEN COALESCE(newc.n, 0) END AS new_customers,
                               CASE WHEN k.i > 1 THEN COALESCE(lostc.n, 0) END AS lost_customers,
                               bals.dep, bals.loan, fees.fee, COALESCE(hv.n, 0) AS hv,
                               CASE WHEN COALESCE(cust.n, 0) > 0
                                    THEN CAST(COALESCE(hv.n, 0) AS DOUBLE) / CAST(cust.n AS DOUBLE) END AS share
                        FROM keys k JOIN mgr ON mgr.manager = k.manager JOIN pidx ON pidx.i = k.i
                        LEFT JOIN cust ON cust.manager = k.manager AND cust.i = k.i
                        LEFT JOIN newc ON newc.manager = k.manager AND newc.i = k.i
                        LEFT JOIN lostc ON lostc.manager = k.manager AND lostc.i = k.i
                        LEFT JOIN bals ON bals.manager = k.manager AND bals.i = k.i
                        LEFT JOIN fees ON fees.manager = k.manager AND fees.i = k.i
                        LEFT JOIN hv ON hv.manager = k.manager AND hv.i = k.i
                        WHERE pidx.period BETWEEN '{from}' AND '{to}')
             SELECT period, branch, manager, customers, new_customers, lost_customers, dep, loan, fee, hv, share,
                    RANK() OVER (PARTITION BY branch, period ORDER BY fee DESC NULLS LAST) AS rank
             FROM r ORDER BY period, manager"
        )
    }

    /// The request the twin answers.
    fn request(&self, filters: &str) -> PerformanceQuery {
        let high = self
            .high
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect::<Vec<_>>()
            .join(", ");
        PerformanceQuery::from_json(&format!(
            r#"{{"level": "{}", "period": "time.{}", "from": "{}", "to": "{}",
                "customers": {{"level": "customer.id", "measure": "customers"}},
                "measures": ["deposit_balance", "loan_balance", "fee_income"],
                "high_value": {{"level": "customer.deposit_band", "members": [{high}]}},
                "rank": {{"within": "{}", "by": "fee_income"}},
                "filters": [{filters}]}}"#,
            self.level.0, self.period, self.from, self.to, self.within.0
        ))
        .expect("request")
    }
}

fn cells(a: &PerformanceAnswer) -> Vec<Vec<Cell>> {
    let text = |s: &str| Cell::Text(s.to_string());
    let count = |n: Option<u64>| n.map_or(Cell::Null, |n| Cell::Int(i128::from(n)));
    let dec = |v: &Json| Cell::from_json(v, Some("decimal"));
    let mut rows: Vec<Vec<Cell>> = a
        .rows
        .iter()
        .map(|r| {
            vec![
                text(&r.period),
                r.parent.as_deref().map_or(Cell::Null, text),
                text(&r.member),
                count(r.customers),
                count(r.new_customers),
                count(r.lost_customers),
                dec(&r.values["deposit_balance"]),
                dec(&r.values["loan_balance"]),
                dec(&r.values["fee_income"]),
                count(r.high_value_customers),
                r.high_value_share.map_or(Cell::Null, Cell::Float),
                count(r.rank),
            ]
        })
        .collect();
    let key = |r: &Vec<Cell>| format!("{}\u{0}{}", r[0], r[2]);
    rows.sort_by_key(key);
    rows
}

/// Rows come by period, then parent (each parent's rows together), then rank.
fn assert_ordered(what: &str, a: &PerformanceAnswer) {
    for w in a.rows.windows(2) {
        let (x, y) = (&w[0], &w[1]);
        assert!(x.period <= y.period, "{what}: periods out of order");
        if x.period == y.period && x.parent == y.parent {
            assert!(
                x.rank <= y.rank,
                "{what}: ranks out of order in {} {:?}",
                x.period,
                x.parent
            );
        }
    }
    let mut groups: Vec<(&str, Option<&str>)> = a
        .rows
        .iter()
        .map(|r| (r.period.as_str(), r.parent.as_deref()))
        .collect();
    groups.dedup();
    let n = groups.len();
    groups.sort_unstable();
    groups.dedup();
    assert_eq!(n, groups.len(), "{what}: a parent's rows are split");
}

/// The twin's request on the default cube, the cube with customer-set cuboids and the cube
/// without cuboids, each equal to the twin's SQL; returns the answer of the set cube.
async fn check(
    fx: &Fixture,
    what: &str,
    twin: &Twin<'_>,
    filters: &str,
    access: &Access,
) -> PerformanceAnswer {
    let sets = with_sets().await;
    let want = run_sql(&fx.sql, &twin.sql(sets)).await.expect("SQL");
    assert!(!want.rows.is_empty(), "{what}: SQL has no rows");
    let q = twin.request(filters);
    let mut first = None;
    for (name, cube) in [("sets", sets), ("default", &fx.cube), ("bare", &fx.bare)] {
        let a = cube
            .session(access.clone())
            .performance(&q)
            .await
            .unwrap_or_else(|e| panic!("{what} ({name}): {e} ({})", e.code()));
        compare_rows(&format!("{what} ({name})"), &cells(&a), &want.rows)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.total, want.rows.len(), "{what} ({name}): total");
        assert_ordered(&format!("{what} ({name})"), &a);
        if name == "bare" {
            assert_eq!(a.meta.source, "grouped", "{what}");
            assert!(a.meta.run.facts.iter().all(|f| f.source == "fallback"));
        }
        first.get_or_insert(a);
    }
    first.expect("answered")
}

#[tokio::test]
async fn manager_performance_per_month_equals_sql() {
    let fx = fixture().await;
    let twin = Twin {
        level: MANAGER,
        within: BRANCH,
        period: "month",
        from: "2024-01",
        to: "2025-12",
        products: "TRUE",
        managers: "TRUE",
        high: &["200k-1M", "1M+"],
    };
    let a = check(fx, "per month", &twin, "", &Access::everything()).await;
    assert_eq!(a.meta.source, "member_sets", "{:?}", a.meta);
    // The shipped cube lists the manager-by-month cuboid, so it answers from the sets too.
    let shipped = fx
        .cube
        .session(Access::everything())
        .performance(&twin.request(""))
        .await
        .expect("shipped cube");
    assert_eq!(shipped.meta.source, "member_sets", "{:?}", shipped.meta);
    assert_eq!(a.periods.len(), 24);
    // The first month of the data has no previous month: new and lost are unknown there.
    let first: Vec<_> = a.rows.iter().filter(|r| r.period == "2024-01").collect();
    assert!(!first.is_empty());
    assert!(first.iter().all(|r| r.new_customers.is_none()));
    assert!(
        a.rows
            .iter()
            .filter(|r| r.period != "2024-01")
            .all(|r| r.new_customers.is_some())
    );
    assert!(
        a.rows
            .iter()
            .any(|r| r.new_customers.is_some_and(|n| n > 0)),
        "nobody gained a customer"
    );
    assert!(
        a.rows
            .iter()
            .any(|r| r.high_value_share.is_some_and(|s| s > 0.0)),
        "no high-value customers"
    );
    // At the test scale a branch has one manager, so every manager ranks first.
    assert!(a.rows.iter().all(|r| r.rank == Some(1)));

    // From a later month: its previous month counts, though it is outside the range.
    let twin = Twin {
        from: "2025-01",
        to: "2025-03",
        ..twin
    };
    let a = check(
        fx,
        "per month from 2025-01",
        &twin,
        "",
        &Access::everything(),
    )
    .await;
    assert!(a.rows.iter().all(|r| r.new_customers.is_some()));
}

const MANAGER: (&str, &str) = ("manager.manager", "m.manager_name");
const BRANCH: (&str, &str) = ("manager.branch", "r.branch");

#[tokio::test]
async fn city_performance_ranks_within_the_province_as_sql() {
    // The same analysis of another level: the customers' home cities, ranked in provinces.
    let fx = fixture().await;
    let twin = Twin {
        level: ("region.city", "rc.city"),
        within: ("region.province", "rc.province"),
        period: "quarter",
        from: "2025-Q1",
        to: "2025-Q4",
        products: "TRUE",
        managers: "TRUE",
        high: &["200k-1M", "1M+"],
    };
    let a = check(fx, "cities", &twin, "", &Access::everything()).await;
    assert!(
        a.rows.iter().any(|r| r.rank.is_some_and(|r| r > 1)),
        "every city ranks first"
    );
}

#[tokio::test]
async fn manager_performance_per_quarter_equals_sql() {
    let fx = fixture().await;
    let twin = Twin {
        level: MANAGER,
        within: BRANCH,
        period: "quarter",
        from: "2024-Q1",
        to: "2025-Q4",
        products: "TRUE",
        managers: "TRUE",
        high: &["1M+"],
    };
    let a = check(fx, "per quarter", &twin, "", &Access::everything()).await;
    assert_eq!(a.periods.len(), 8);
    assert_eq!(a.meta.closing.len(), 8);
    assert_eq!(a.meta.closing[0].as_deref(), Some("2024-03"));
}

#[tokio::test]
async fn manager_performance_with_a_product_filter_equals_sql() {
    let fx = fixture().await;
    let twin = Twin {
        level: MANAGER,
        within: BRANCH,
        period: "month",
        from: "2025-01",
        to: "2025-06",
        products: "p.category IN ('deposit', 'card')",
        managers: "TRUE",
        high: &["50k-200k", "200k-1M", "1M+"],
    };
    check(
        fx,
        "deposit and card products",
        &twin,
        r#"{"level": "product.category", "op": "in", "values": ["deposit", "card"]}"#,
        &Access::everything(),
    )
    .await;
}

#[tokio::test]
async fn a_managers_scope_sees_their_own_performance() {
    let fx = fixture().await;
    let t = run_sql(
        &fx.sql,
        "SELECT m.manager_name, COUNT(*) AS n FROM customers c JOIN managers m ON m.manager_id = c.manager_id
         GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1",
    )
    .await
    .expect("SQL");
    let Cell::Text(manager) = &t.rows[0][0] else {
        panic!("{}", t.rows[0][0]);
    };
    let cond = format!("m.manager_name = '{manager}'");
    let twin = Twin {
        level: MANAGER,
        within: BRANCH,
        period: "quarter",
        from: "2025-Q1",
        to: "2025-Q4",
        products: "TRUE",
        managers: &cond,
        high: &["200k-1M", "1M+"],
    };
    let a = check(fx, "scoped", &twin, "", &manager_scope(manager)).await;
    assert_eq!(a.rows.len(), 4);
    assert!(
        a.rows
            .iter()
            .all(|r| &r.member == manager && r.rank == Some(1))
    );
}

async fn error_of(cube: &Arc<Dataset>, json: &str) -> AnalyticsError {
    let q = PerformanceQuery::from_json(json).expect("request");
    match cube.session(Access::everything()).performance(&q).await {
        Ok(_) => panic!("{json}: answered"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn bad_requests_name_the_field_and_what_would_do() {
    let fx = fixture().await;
    let base = r#""level": "manager.manager", "from": "2025-01", "to": "2025-03""#;
    let cases: &[(&str, &str, &[&str])] = &[
        (
            r#""level": "manager.manger", "from": "2025-01", "to": "2025-03""#,
            "unknown_level",
            &["`level`", "manager.manager"],
        ),
        (
            r#""level": "manager.manager", "period": "customer.segment", "from": "2025-01", "to": "2025-03""#,
            "bad_period",
            &["customer.segment", "not a time level"],
        ),
        (
            r#""level": "manager.manager", "from": "2025-13", "to": "2025-03""#,
            "unknown_member",
            &["`from`", "2025-13"],
        ),
        (
            r#""level": "manager.manager", "from": "2025-03", "to": "2025-01""#,
            "bad_period",
            &["2025-03", "earlier period first"],
        ),
        (
            &format!(r#"{base}, "measures": ["fee_incme"]"#),
            "unknown_measure",
            &["`measures`", "fee_income"],
        ),
        (
            &format!(r#"{base}, "customers": {{"measure": "fee_income"}}"#),
            "invalid_field",
            &["`customers.measure`", "distinct count"],
        ),
        (
            &format!(r#"{base}, "rank": {{"within": "region.branch", "by": "fee_income"}}"#),
            "bad_rank",
            &["`rank.within`", "region.branch", "manager.branch"],
        ),
        (
            &format!(r#"{base}, "rank": {{"within": "manager.manager", "by": "fee_income"}}"#),
            "bad_rank",
            &["not above"],
        ),
        (
            &format!(r#"{base}, "rank": {{"within": "manager.branch", "by": "fees"}}"#),
            "unknown_measure",
            &["`rank.by`"],
        ),
        (
            &format!(r#"{base}, "high_value": {{"level": "time.month", "members": ["2025-01"]}}"#),
            "bad_level",
            &["`high_value.level`"],
        ),
        (
            &format!(r#"{base}, "high_value": {{"level": "channel.channel", "members": ["ATM"]}}"#),
            "",
            &["`high_value.level`", "channel"],
        ),
        (
            &format!(
                r#"{base}, "high_value": {{"level": "customer.deposit_band", "members": ["1m+"]}}"#
            ),
            "unknown_member",
            &["`high_value.members`", "1M+"],
        ),
        (
            &format!(
                r#"{base}, "high_value": {{"level": "customer.deposit_band", "members": []}}"#
            ),
            "invalid_field",
            &["`high_value.members`"],
        ),
        (
            &format!(
                r#"{base}, "filters": [{{"level": "product.categry", "op": "eq", "value": "loan"}}]"#
            ),
            "unknown_level",
            &["`filters`", "product.category"],
        ),
        (
            r#""level": "channel.channel", "from": "2025-01", "to": "2025-03""#,
            "",
            &["`level`", "channel"],
        ),
    ];
    for (body, code, says) in cases {
        let json = format!("{{{body}}}");
        let e = error_of(&fx.cube, &json).await;
        let msg = e.to_string();
        if !code.is_empty() {
            assert_eq!(e.code(), *code, "{json}: {msg}");
        }
        for s in *says {
            assert!(msg.contains(s), "{json}: {msg:?} does not say {s:?}");
        }
    }
    assert!(
        PerformanceQuery::from_json(r#"{"level": "manager.manager", "from": "2025-01"}"#).is_err(),
        "no `to`"
    );
}

#[tokio::test]
async fn performance_answers_over_http_and_pages() {
    let fx = fixture().await;
    let listening = crate::util::serve_shipped().await;
    let addr = listening.addr;
    let path = "/v1/cubes/bank_crm/analytics/performance";
    let request = r#"{"level": "manager.manager", "period": "time.quarter", "from": "2025-Q1", "to": "2025-Q2",
        "measures": ["deposit_balance", "fee_income"],
        "high_value": {"level": "customer.deposit_band", "members": ["200k-1M", "1M+"]},
        "rank": {"within": "manager.branch", "by": "fee_income"}, "limit": 5, "offset": 2}"#;
    let (status, body) = post_json(addr, path, request).await;
    assert_eq!(status, 200, "{body}");
    let engine = fx
        .cube
        .session(Access::everything())
        .performance(&PerformanceQuery::from_json(request).expect("request"))
        .await
        .expect("engine");
    assert_eq!(
        body["rows"],
        serde_json::to_value(&engine.rows).expect("rows")
    );
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(body["total"], engine.total);
    assert!(engine.total > 5);
    // The answer reads as its OpenAPI schema (no field it does not document).
    crate::util::assert_conforms("PerformanceAnswer", &body);

    let (status, body) = post_json(
        addr,
        path,
        r#"{"level": "manager.manager", "from": "2025-01", "to": "2025-02",
            "rank": {"within": "region.branch", "by": "fee_income"}}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Json::from("bad_rank")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["field"], "rank.within");
    let (status, body) = post_json(
        addr,
        path,
        r#"{"level": "manager.manager", "from": "2025-01", "to": "2025-02", "measures": ["fee_incme"]}"#,
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &Json::from("unknown_measure")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["field"], "measures");
    listening.stop().await;
}

#[tokio::test]
async fn small_counts_are_suppressed_for_a_suppressed_role() {
    // An analyst (privacy.min_customers 5) sees the same rows, with every count of 1 to 4
    // customers, and the share it would reveal, hidden.
    let fx = fixture().await;
    let q = PerformanceQuery::from_json(
        r#"{"level": "manager.manager", "from": "2025-01", "to": "2025-06",
            "measures": ["fee_income"],
            "high_value": {"level": "customer.deposit_band", "members": ["1M+"]},
            "rank": {"within": "manager.branch", "by": "fee_income"}}"#,
    )
    .expect("request");
    let analyst = Access {
        scope: Vec::new(),
        roles: vec!["analyst".into()],
    };
    let open = fx
        .cube
        .session(Access::everything())
        .performance(&q)
        .await
        .expect("open");
    let hidden = fx
        .cube
        .session(analyst.clone())
        .performance(&q)
        .await
        .expect("analyst");
    // A member with too few customers in a period has no row, as one without any.
    let n_small = open
        .rows
        .iter()
        .filter(|r| r.customers.is_some_and(|n| (1..5).contains(&n)))
        .count();
    assert_eq!(open.rows.len() - n_small, hidden.rows.len());
    let small = |n: Option<u64>| n.is_some_and(|n| (1..5).contains(&n));
    let mut seen_small = false;
    let key = |r: &lattice_engine::analytics::PerformanceRow| (r.period.clone(), r.member.clone());
    let mut open_rows = open.rows.clone();
    open_rows.sort_by_key(key);
    let mut hidden_rows = hidden.rows.clone();
    hidden_rows.sort_by_key(key);
    // Left-out rows rank nowhere, so a parent with one is ranked among fewer members.
    let with_suppressed: std::collections::BTreeSet<(String, Option<String>)> = open_rows
        .iter()
        .filter(|r| small(r.customers))
        .map(|r| (r.period.clone(), r.parent.clone()))
        .collect();
    seen_small |= !with_suppressed.is_empty();
    let shown = open_rows.iter().filter(|r| !small(r.customers));
    for (o, h) in shown.zip(&hidden_rows) {
        assert_eq!((&o.period, &o.member), (&h.period, &h.member));
        // New and lost go together: the customer counts give `new - lost`, so one shown
        // beside the other withheld would give it away.
        let moved = [o.new_customers, o.lost_customers];
        let either_small = moved.iter().any(|&n| small(n));
        seen_small |= either_small;
        for (a, b) in moved.into_iter().zip([h.new_customers, h.lost_customers]) {
            assert_eq!(b, if either_small { None } else { a });
        }
        seen_small |= small(o.high_value_customers);
        assert_eq!(
            h.high_value_customers,
            if small(o.high_value_customers) {
                None
            } else {
                o.high_value_customers
            }
        );
        if small(o.high_value_customers) {
            assert_eq!(h.high_value_share, None);
        } else {
            assert_eq!(h.high_value_share, o.high_value_share);
        }
        assert_eq!(h.values, o.values);
        if !with_suppressed.contains(&(o.period.clone(), o.parent.clone())) {
            assert_eq!(h.rank, o.rank);
        }
    }
    assert!(seen_small, "no small count to hide");
}

#[test]
fn the_cli_runs_a_performance_request() {
    let defs = tempfile::tempdir().expect("tempdir");
    let yaml = defs.path().join("bank_crm.yaml");
    std::fs::write(&yaml, lattice_defs::BANK_CRM_YAML).expect("write");
    let request = defs.path().join("q.json");
    std::fs::write(
        &request,
        r#"{"level": "manager.manager", "period": "time.quarter", "from": "2025-Q1", "to": "2025-Q1",
            "measures": ["fee_income"], "rank": {"within": "manager.branch", "by": "fee_income"}}"#,
    )
    .expect("write");
    let out = crate::cli::lattice()
        .arg("analyze")
        .arg(&yaml)
        .arg("--data")
        .arg(parquet_dir())
        .args(["--kind", "performance", "--json"])
        .arg(&request)
        .output()
        .expect("run lattice");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Json = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["periods"], serde_json::json!(["2025-Q1"]));
    assert!(answer["rows"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(answer["rows"][0]["values"]["fee_income"].is_string());
}
