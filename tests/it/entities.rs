//! The single entity view (`engine/src/entity/`): for a few customers — an individual with
//! balances and transactions, a corporate, a planted collapse, one the issue's search selects —
//! every number equals a SQL twin over the raw tables, on the default cube and on the cube
//! without cuboids (the fallback): attributes from the customers table joined to regions and
//! managers (bands from the definition's edges), products held in the latest month, every
//! measure per month, bands per month computed from the metrics and edges, breakdowns by
//! channel and by product, and the searches matched equal the searches' own members. An
//! unknown id and one outside the scope get the same `unknown_member`; an analyst is refused;
//! over HTTP the view is the engine's.

use std::collections::BTreeSet;
use std::sync::Arc;

use lattice_defs::Model;
use lattice_defs::model::{
    Agg, BinOp, Bucket, BucketSource, Cuts, DimensionKind, Expr, LevelKind, MeasureId, MeasureKind,
    OverTime, TimeGrain,
};
use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::entity::EntityView;
use lattice_engine::query::{Dataset, Filter, FilterOp, Query};
use lattice_engine::search::{Search, SearchSet, definition_searches};
use serde_json::Value;

use crate::query_suite::{Cell, Fixture, compare_rows, fixture, run_sql};

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

/// The issue's search, and two simpler ones.
fn searches() -> SearchSet {
    [
        crate::searches::EXAMPLE,
        r#"{"name": "corporates", "where": {"level": "customer.type", "op": "eq", "value": "corporate"}}"#,
        r#"{"name": "fee_payers", "where": {"measure": "fee_income", "op": "gt", "value": 500}}"#,
    ]
    .into_iter()
    .map(|j| {
        let s = Search::from_json(j).expect("search");
        (s.name.clone(), s)
    })
    .collect()
}

async fn view(cube: &Arc<Dataset>, id: &str, access: &Access) -> EntityView {
    cube.session(access.clone())
        .entity_view("customer", id, &searches())
        .await
        .unwrap_or_else(|e| panic!("customer {id}: {e} ({})", e.code()))
}

async fn texts(fx: &Fixture, sql: &str) -> Vec<String> {
    run_sql(&fx.sql, sql)
        .await
        .expect("SQL")
        .rows
        .iter()
        .map(|r| match &r[0] {
            Cell::Text(s) => s.clone(),
            other => panic!("{other}"),
        })
        .collect()
}

/// The customers the tests look at: (what, id).
async fn customers(fx: &Fixture) -> Vec<(&'static str, String)> {
    let busiest = |kind: &str| {
        format!(
            "SELECT CAST(c.customer_id AS VARCHAR) AS id FROM customers c
             JOIN transactions t ON t.customer_id = c.customer_id
             WHERE c.customer_type = '{kind}'
               AND c.customer_id IN (SELECT customer_id FROM balances)
             GROUP BY c.customer_id ORDER BY COUNT(*) DESC, id LIMIT 1"
        )
    };
    let collapse = "WITH d AS (SELECT customer_id, month, SUM(deposit_balance) AS v FROM balances GROUP BY 1, 2)
         SELECT CAST(MIN(cur.customer_id) AS VARCHAR) FROM d cur
         JOIN d prev ON prev.customer_id = cur.customer_id AND prev.month = cur.month - INTERVAL '1 month'
         WHERE cur.v <= 0.45 * prev.v AND prev.v > 0";
    let selected = format!(
        "SELECT MAX(id) FROM ({}) AS s(id)",
        crate::searches::EXAMPLE_SQL
    );
    let mut out = Vec::new();
    for (what, sql) in [
        ("individual", busiest("individual")),
        ("corporate", busiest("corporate")),
        ("collapse", collapse.to_string()),
        ("selected by the example", selected),
    ] {
        let id = texts(fx, &sql).await.into_iter().next().expect(what);
        out.push((what, id));
    }
    out
}

// ---- SQL twins, written from the model's definitions ----

/// `CASE` placing `value` in the bucket's labels (left-closed, right-open edges; null
/// `unknown`).
fn bucket_sql(value: &str, b: &Bucket) -> String {
    let Cuts::Edges(edges) = &b.cuts else {
        panic!("quantile buckets rank among every entity: see band_sql")
    };
    let mut s = format!("CASE WHEN {value} IS NULL THEN 'unknown'");
    for (e, l) in edges.iter().zip(&b.labels) {
        s += &format!(" WHEN {value} < {e} THEN '{l}'");
    }
    s + &format!(" ELSE '{}' END", b.labels.last().expect("labels"))
}

fn column_of(m: &lattice_defs::model::Measure) -> String {
    match &m.kind {
        MeasureKind::Aggregate {
            column: Some(c), ..
        } => c.column.clone(),
        _ => String::new(),
    }
}

/// An aggregate measure over the rows of its fact in scope; `closing` is a condition picking
/// the rows of the closing period for `over_time: last` measures.
fn agg_sql(model: &Model, m: MeasureId, closing: Option<&str>, alias: &str) -> String {
    let measure = &model.measures[m];
    let MeasureKind::Aggregate { agg, over_time, .. } = &measure.kind else {
        panic!("{} is derived", measure.name)
    };
    let col = format!("{alias}{}", column_of(measure));
    let col = match (over_time, closing) {
        (OverTime::Last, Some(c)) => format!("CASE WHEN {c} THEN {col} END"),
        _ => col,
    };
    match agg {
        Agg::Sum => format!("SUM({col})"),
        Agg::Count => "COUNT(*)".into(),
        Agg::Distinct => format!("COUNT(DISTINCT {col})"),
        Agg::Min => format!("MIN({col})"),
        Agg::Max => format!("MAX({col})"),
    }
}

/// A derived measure's expression over columns named as the measures.
fn derived_sql(model: &Model, m: MeasureId) -> String {
    fn expr(model: &Model, e: &Expr) -> String {
        match e {
            Expr::Measure(m) => match &model.measures[*m].kind {
                MeasureKind::Derived(inner) => format!("({})", expr(model, inner)),
                MeasureKind::Aggregate { .. } => format!("\"{}\"", model.measures[*m].name),
            },
            Expr::Number(x) => format!("{x}"),
            Expr::Neg(a) => format!("(-{})", expr(model, a)),
            Expr::Binary(BinOp::Div, a, b) => format!(
                "(CAST({} AS DOUBLE) / NULLIF(CAST({} AS DOUBLE), 0))",
                expr(model, a),
                expr(model, b)
            ),
            Expr::Binary(op, a, b) => {
                let op = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => unreachable!(),
                };
                format!("({} {op} {})", expr(model, a), expr(model, b))
            }
        }
    }
    match &model.measures[m].kind {
        MeasureKind::Derived(e) => {
            // Over several facts a missing part reads as 0, and the whole is null only when
            // every part is (docs/query.md, "Derived measures over several facts").
            let mut leaves = Vec::new();
            collect_aggregates(model, m, &mut leaves);
            let facts: BTreeSet<usize> = leaves
                .iter()
                .map(|&l| match model.measures[l].kind {
                    MeasureKind::Aggregate { fact, .. } => fact,
                    MeasureKind::Derived(_) => unreachable!(),
                })
                .collect();
            let plain = expr(model, e);
            if facts.len() < 2 {
                return plain;
            }
            let mut names: Vec<String> = leaves
                .iter()
                .map(|&l| format!("\"{}\"", model.measures[l].name))
                .collect();
            names.dedup();
            let mut zeroed = plain;
            for n in &names {
                zeroed = zeroed.replace(n, &format!("COALESCE({n}, 0)"));
            }
            let all_null: Vec<String> = names.iter().map(|n| format!("{n} IS NULL")).collect();
            format!(
                "(CASE WHEN {} THEN NULL ELSE {zeroed} END)",
                all_null.join(" AND ")
            )
        }
        MeasureKind::Aggregate { .. } => format!("\"{}\"", model.measures[m].name),
    }
}

fn time_column(model: &Model, fact: usize) -> String {
    model.facts[fact]
        .time
        .as_ref()
        .expect("time")
        .column
        .clone()
}

fn trunc(grain: TimeGrain) -> (&'static str, &'static str) {
    match grain {
        TimeGrain::Month => ("month", "%Y-%m"),
        TimeGrain::Year => ("year", "%Y"),
        other => panic!("no twin for periods of {other:?}"),
    }
}

/// Every fact's rows of the customer with their period at `grain` (`p`), one CTE each (`f0`,
/// `f1`, ..) plus `ps`, the periods where the customer has any fact.
fn fact_ctes(model: &Model, id: &str, grain: TimeGrain, aggs: &[Vec<(String, String)>]) -> String {
    let (unit, _) = trunc(grain);
    let mut ctes = Vec::new();
    for (f, fact) in model.facts.iter().enumerate() {
        let cols: String = aggs[f]
            .iter()
            .map(|(name, sql)| format!(", {sql} AS \"{name}\""))
            .collect();
        ctes.push(format!(
            "f{f} AS (SELECT date_trunc('{unit}', {t}) AS p{cols} FROM {n} WHERE customer_id = {id} GROUP BY 1)",
            t = time_column(model, f),
            n = fact.name
        ));
    }
    let union: Vec<String> = (0..model.facts.len())
        .map(|f| format!("SELECT p FROM f{f}"))
        .collect();
    ctes.push(format!("ps AS ({})", union.join(" UNION ")));
    format!("WITH {}", ctes.join(",\n"))
}

fn joins(model: &Model) -> String {
    (0..model.facts.len())
        .map(|f| format!(" LEFT JOIN f{f} ON f{f}.p = ps.p"))
        .collect()
}

/// The view's `periods` table (columns as the view has them) in SQL.
fn periods_sql(model: &Model, id: &str, columns: &[String]) -> String {
    let mut aggs = vec![Vec::new(); model.facts.len()];
    let mut select = vec!["to_char(ps.p, '%Y-%m')".to_string()];
    for name in columns {
        let m = model.measure(name).expect(name);
        let mut leaves = Vec::new();
        collect_aggregates(model, m, &mut leaves);
        for l in leaves {
            let MeasureKind::Aggregate { fact, .. } = model.measures[l].kind else {
                unreachable!()
            };
            let entry = (model.measures[l].name.clone(), agg_sql(model, l, None, ""));
            if !aggs[fact].contains(&entry) {
                aggs[fact].push(entry);
            }
        }
        select.push(derived_sql(model, m));
    }
    // Columns qualified by the fact CTE holding them.
    let mut select_q = Vec::new();
    for s in select {
        let mut s = s;
        for (f, list) in aggs.iter().enumerate() {
            for (name, _) in list {
                s = s.replace(&format!("\"{name}\""), &format!("f{f}.\"{name}\""));
            }
        }
        select_q.push(s);
    }
    format!(
        "{} SELECT {} FROM ps{} ORDER BY ps.p",
        fact_ctes(model, id, TimeGrain::Month, &aggs),
        select_q.join(", "),
        joins(model)
    )
}

fn collect_aggregates(model: &Model, m: MeasureId, out: &mut Vec<MeasureId>) {
    match &model.measures[m].kind {
        MeasureKind::Aggregate { .. } => out.push(m),
        MeasureKind::Derived(e) => {
            let mut refs = Vec::new();
            e.measures(&mut refs);
            for r in refs {
                collect_aggregates(model, r, out);
            }
        }
    }
}

/// A per-period band of the customer, per period where the customer has any fact: the
/// metric (0 without facts of its fact, as the build has it) placed by the edges.
fn band_sql(model: &Model, id: &str, level: &str) -> String {
    let l = model.level(level).expect(level);
    let LevelKind::Bucket(b) = &model.dimensions[l.dim].levels[l.level].kind else {
        panic!("{level} is not a band")
    };
    let BucketSource::Metric {
        measure,
        period: Some(grain),
    } = b.source
    else {
        panic!("{level} is not per period")
    };
    let MeasureKind::Aggregate { fact, .. } = model.measures[measure].kind else {
        panic!(
            "no twin for a band over derived '{}'",
            model.measures[measure].name
        )
    };
    let mut aggs = vec![Vec::new(); model.facts.len()];
    aggs[fact].push(("v".to_string(), agg_sql(model, measure, None, "")));
    let (unit, fmt) = trunc(grain);
    if let Cuts::Quantiles(qs) = &b.cuts {
        // Ranked within the period among every customer with a value (CUME_DIST, ties alike);
        // a period where this customer has facts but no value is `unknown`.
        let f = &model.facts[fact];
        let mut class = "CASE WHEN r.cd IS NULL THEN 'unknown'".to_string();
        for (q, l) in qs.iter().zip(&b.labels[1..]).rev() {
            class += &format!(" WHEN r.cd > {q} THEN '{l}'");
        }
        class += &format!(" ELSE '{}' END", b.labels[0]);
        return format!(
            "{}, allv AS (SELECT date_trunc('{unit}', {t}) AS p, customer_id AS k, {agg} AS v
                          FROM {n} GROUP BY 1, 2),
             r AS (SELECT p, k, CUME_DIST() OVER (PARTITION BY p ORDER BY v) AS cd
                   FROM allv WHERE v IS NOT NULL)
             SELECT to_char(ps.p, '{fmt}'), {class} FROM ps
             LEFT JOIN r ON r.p = ps.p AND r.k = {id} ORDER BY ps.p",
            fact_ctes(model, id, grain, &aggs),
            t = time_column(model, fact),
            n = f.name,
            agg = agg_sql(model, measure, None, ""),
        );
    }
    let value = format!("CASE WHEN f{fact}.p IS NULL THEN 0 ELSE f{fact}.v END");
    format!(
        "{} SELECT to_char(ps.p, '{fmt}'), {} FROM ps{} ORDER BY ps.p",
        fact_ctes(model, id, grain, &aggs),
        bucket_sql(&value, b),
        joins(model)
    )
}

/// The dimension table, key and column of the finest level of a dimension a fact carries.
fn level_table(model: &Model, level: &str) -> (String, String, String) {
    let l = model.level(level).expect(level);
    let dim = &model.dimensions[l.dim];
    let DimensionKind::Table { table, key, .. } = &dim.kind else {
        panic!("{level}")
    };
    let LevelKind::Column(c) = &dim.levels[l.level].kind else {
        panic!("{level} is not a column")
    };
    (table.clone(), key.column.clone(), c.column.clone())
}

/// One fact's measures (as the breakdown's columns) by a level.
fn breakdown_sql(model: &Model, id: &str, fact: &str, level: &str, columns: &[String]) -> String {
    let f = model.fact(fact).expect(fact);
    let (table, key, col) = level_table(model, level);
    let t = time_column(model, f);
    let closing =
        format!("date_trunc('month', x.{t}) = (SELECT MAX(date_trunc('month', {t})) FROM {fact})");
    let mut select = vec![format!("d.{col}")];
    for name in columns {
        let m = model.measure(name).expect(name);
        let mut leaves = Vec::new();
        collect_aggregates(model, m, &mut leaves);
        let mut s = derived_sql(model, m);
        for l in leaves {
            let a = agg_sql(model, l, Some(&closing), "x.");
            s = s.replace(&format!("\"{}\"", model.measures[l].name), &a);
        }
        select.push(s);
    }
    format!(
        "SELECT {} FROM {fact} x JOIN {table} d ON d.{key} = x.{key}
         WHERE x.customer_id = {id} GROUP BY d.{col} ORDER BY d.{col}",
        select.join(", ")
    )
}

/// The customer's static attributes and linked members, from the tables.
fn attributes_sql(model: &Model, id: &str) -> String {
    let band = |level: &str, col: &str| {
        let l = model.level(level).expect(level);
        let LevelKind::Bucket(b) = &model.dimensions[l.dim].levels[l.level].kind else {
            panic!("{level}")
        };
        bucket_sql(col, b)
    };
    format!(
        "SELECT c.customer_type, c.segment, c.education, {age}, {income},
                r.province, r.city, r.branch, mr.branch, m.manager_name
         FROM customers c JOIN regions r ON r.region_id = c.region_id
         JOIN managers m ON m.manager_id = c.manager_id JOIN regions mr ON mr.region_id = m.region_id
         WHERE c.customer_id = {id}",
        age = band("customer.age_band", "c.age"),
        income = band("customer.income_band", "c.monthly_income"),
    )
}

fn cells(columns: &[lattice_engine::query::Column], rows: &[Vec<Value>]) -> Vec<Vec<Cell>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(columns)
                .map(|(v, c)| Cell::from_json(v, if c.kind == "level" { None } else { c.ty }))
                .collect()
        })
        .collect()
}

fn sorted(mut rows: Vec<Vec<Cell>>) -> Vec<Vec<Cell>> {
    rows.sort_by_key(|r| r.first().map(ToString::to_string));
    rows
}

/// Every number of `v` against its SQL twin.
async fn check(fx: &Fixture, model: &Model, what: &str, id: &str, v: &EntityView) {
    let ctx = |part: &str| format!("{what} customer {id}: {part}");
    assert_eq!((v.level.as_str(), v.id.as_str()), ("customer.id", id));

    // Attributes and linked members.
    let levels: Vec<&str> = v
        .attributes
        .iter()
        .chain(&v.related)
        .map(|a| a.level.as_str())
        .collect();
    assert_eq!(
        levels,
        [
            "customer.type",
            "customer.segment",
            "customer.education",
            "customer.age_band",
            "customer.income_band",
            "region.province",
            "region.city",
            "region.branch",
            "manager.branch",
            "manager.manager"
        ],
        "{}",
        ctx("attribute levels")
    );
    let got: Vec<Cell> = v
        .attributes
        .iter()
        .chain(&v.related)
        .map(|a| a.member.clone().map_or(Cell::Null, Cell::Text))
        .collect();
    let want = run_sql(&fx.sql, &attributes_sql(model, id))
        .await
        .expect("SQL");
    compare_rows(&ctx("attributes"), &[got], &want.rows).unwrap_or_else(|e| panic!("{e}"));

    // Products held in the latest month.
    assert_eq!(v.held.len(), 1, "{}", ctx("held"));
    let h = &v.held[0];
    assert_eq!(
        (h.fact.as_str(), h.level.as_str()),
        ("balances", "product.product")
    );
    let want = texts(
        fx,
        &format!(
            "SELECT DISTINCT p.product_name FROM balances b JOIN products p ON p.product_id = b.product_id
             WHERE b.customer_id = {id} AND b.month = (SELECT MAX(month) FROM balances)"
        ),
    )
    .await;
    let latest = texts(fx, "SELECT to_char(MAX(month), '%Y-%m') FROM balances").await;
    assert_eq!(h.period, latest[0], "{}", ctx("held period"));
    assert_eq!(
        h.members.iter().cloned().collect::<BTreeSet<_>>(),
        want.into_iter().collect::<BTreeSet<_>>(),
        "{}",
        ctx("products held")
    );

    // Every measure per month.
    let names: Vec<String> = v.periods.columns[1..]
        .iter()
        .map(|c| c.name.clone())
        .collect();
    for m in [
        "txn_amount",
        "txn_count",
        "fee_income",
        "deposit_balance",
        "interest_margin",
    ] {
        assert!(names.iter().any(|n| n == m), "{}", ctx(&format!("no {m}")));
    }
    let want = run_sql(&fx.sql, &periods_sql(model, id, &names))
        .await
        .expect("SQL");
    compare_rows(
        &ctx("per month"),
        &cells(&v.periods.columns, &v.periods.rows),
        &want.rows,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    // Bands per month, from the metrics and the edges.
    let per_period: Vec<String> = model.dimensions[model.dimension("customer").unwrap()]
        .levels
        .iter()
        .filter(|l| {
            matches!(&l.kind, LevelKind::Bucket(b) if matches!(b.source, BucketSource::Metric { period: Some(_), .. }))
        })
        .map(|l| format!("customer.{}", l.name))
        .collect();
    assert_eq!(
        v.bands.iter().map(|b| b.level.clone()).collect::<Vec<_>>(),
        per_period
    );
    for b in &v.bands {
        let got: Vec<Vec<Cell>> = b
            .rows
            .iter()
            .map(|[p, m]| vec![Cell::Text(p.clone()), Cell::Text(m.clone())])
            .collect();
        let want = run_sql(&fx.sql, &band_sql(model, id, &b.level))
            .await
            .expect("SQL");
        compare_rows(&ctx(&b.level), &got, &want.rows).unwrap_or_else(|e| panic!("{e}"));
    }

    // Breakdowns: transactions by channel and by product, balances by product.
    let shown: Vec<(&str, &str)> = v
        .breakdowns
        .iter()
        .map(|b| (b.fact.as_str(), b.level.as_str()))
        .collect();
    for want in [
        ("transactions", "channel.channel"),
        ("transactions", "product.product"),
        ("balances", "product.product"),
    ] {
        assert!(shown.contains(&want), "{}", ctx(&format!("no {want:?}")));
    }
    for b in &v.breakdowns {
        let names: Vec<String> = b.table.columns[1..]
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let sql = breakdown_sql(model, id, &b.fact, &b.level, &names);
        let want = run_sql(&fx.sql, &sql).await.expect("SQL");
        compare_rows(
            &ctx(&format!("{} by {}", b.fact, b.level)),
            &sorted(cells(&b.table.columns, &b.table.rows)),
            &sorted(want.rows),
        )
        .unwrap_or_else(|e| panic!("{e}\n{sql}"));
    }
}

/// The searches a view lists are those whose own members include the customer.
async fn check_searches(cube: &Arc<Dataset>, id: &str, v: &EntityView, access: &Access) {
    let mut want = Vec::new();
    for (name, s) in &searches() {
        let m = cube
            .session(access.clone())
            .search_members(s)
            .await
            .expect("search");
        let code = cube.members(m.entity).code(id).expect("a member");
        if m.members.contains(code) {
            want.push(name.clone());
        }
    }
    assert_eq!(v.searches, want, "customer {id}");
    assert!(v.search_failures.is_empty(), "{:?}", v.search_failures);
}

#[tokio::test]
async fn every_number_of_the_customer_view_equals_sql_on_both_paths() {
    let fx = fixture().await;
    let model = &fx.cube.model;
    let picked = customers(fx).await;
    for (what, id) in &picked {
        let v = view(&fx.cube, id, &everyone()).await;
        if std::env::var("LATTICE_SHOW_VIEW").is_ok() {
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
        }
        check(fx, model, what, id, &v).await;
        check_searches(&fx.cube, id, &v, &everyone()).await;
        // The cube without cuboids (the fallback) says the same.
        let bare = view(&fx.bare, id, &everyone()).await;
        assert_eq!(without_meta(&bare), without_meta(&v), "{what} {id}");
        println!(
            "{what} {id}: {} months, {} products held, searches {:?}",
            v.periods.rows.len(),
            v.held[0].members.len(),
            v.searches
        );
    }
    let selected = &picked[3].1;
    let v = view(&fx.cube, selected, &everyone()).await;
    assert!(
        v.searches.contains(&"affluent_digital_no_loan".to_string()),
        "{:?}",
        v.searches
    );
}

fn without_meta(v: &EntityView) -> Value {
    let mut j = serde_json::to_value(v).expect("JSON");
    j.as_object_mut().expect("object").remove("meta");
    j
}

/// A manager and one of their customers, and a customer of someone else.
async fn scope_case(fx: &Fixture) -> (String, String, String) {
    let row = run_sql(
        &fx.sql,
        "SELECT m.manager_name, CAST(MIN(c.customer_id) AS VARCHAR) FROM customers c
         JOIN managers m ON m.manager_id = c.manager_id
         WHERE c.customer_id IN (SELECT customer_id FROM transactions)
         GROUP BY 1 ORDER BY 1 LIMIT 1",
    )
    .await
    .expect("SQL");
    let (Cell::Text(manager), Cell::Text(own)) = (&row.rows[0][0], &row.rows[0][1]) else {
        panic!("{:?}", row.rows)
    };
    let other = texts(
        fx,
        &format!(
            "SELECT CAST(MIN(c.customer_id) AS VARCHAR) FROM customers c JOIN managers m ON m.manager_id = c.manager_id
             WHERE m.manager_name <> '{}' AND c.customer_id IN (SELECT customer_id FROM transactions)",
            manager.replace('\'', "''")
        ),
    )
    .await;
    (manager.clone(), own.clone(), other[0].clone())
}

#[tokio::test]
async fn out_of_scope_is_unknown_and_suppressed_principals_are_refused() {
    let fx = fixture().await;
    let (manager, own, other) = scope_case(fx).await;
    let scoped = manager_scope(&manager);

    // Their own customer: the same numbers as unscoped.
    let mine = view(&fx.cube, &own, &scoped).await;
    let all = view(&fx.cube, &own, &everyone()).await;
    let strip = |v: &EntityView| {
        let mut j = without_meta(v);
        j.as_object_mut().unwrap().remove("searches");
        j
    };
    assert_eq!(strip(&mine), strip(&all));
    check_searches(&fx.cube, &own, &mine, &scoped).await;

    // Someone else's customer: exactly what a query filtering on that id gets, and the same
    // error as an id that does not exist.
    let e = fx
        .cube
        .session(scoped.clone())
        .entity_view("customer", &other, &searches())
        .await
        .expect_err("out of scope");
    assert_eq!(e.code(), "unknown_member");
    let q = Query {
        measures: vec!["txn_count".into()],
        filters: vec![Filter {
            level: "customer.id".into(),
            op: FilterOp::Eq,
            value: Some(other.clone()),
            values: None,
        }],
        ..Query::default()
    };
    let qe = fx
        .cube
        .session(scoped.clone())
        .query(&q)
        .await
        .expect_err("query");
    assert_eq!(e.to_string(), qe.to_string());
    let missing = fx
        .cube
        .session(scoped.clone())
        .entity_view("customer", "99999999", &searches())
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), "unknown_member");
    assert_eq!(
        e.to_string().replace(&other, "ID").split(" (close").next(),
        missing
            .to_string()
            .replace("99999999", "ID")
            .split(" (close")
            .next()
    );
    for bad in ["99999999", "unknown", ""] {
        let e = fx
            .cube
            .session(everyone())
            .entity_view("customer", bad, &searches())
            .await
            .expect_err(bad);
        assert_eq!(e.code(), "unknown_member", "{bad}: {e}");
    }

    // Small-cell suppression forbids one customer's numbers, whoever the customer is.
    let analyst = Access {
        scope: Vec::new(),
        roles: vec!["analyst".into()],
    };
    for id in [own.as_str(), "99999999"] {
        let e = fx
            .cube
            .session(analyst.clone())
            .entity_view("customer", id, &searches())
            .await
            .expect_err("analyst");
        assert_eq!(e.code(), "forbidden");
        assert!(e.to_string().contains("small-cell suppression"), "{e}");
    }

    // Dimensions without a key level, and unknown ones.
    let e = fx
        .cube
        .session(everyone())
        .entity_view("region", "1", &searches())
        .await
        .expect_err("region");
    assert_eq!(e.code(), "no_key_level", "{e}");
    let e = fx
        .cube
        .session(everyone())
        .entity_view("custmer", "1", &searches())
        .await
        .expect_err("custmer");
    assert_eq!(e.code(), "unknown_dimension");
    assert!(e.to_string().contains("did you mean 'customer'"), "{e}");
}

#[tokio::test]
async fn the_view_over_http_is_the_engines_and_out_of_scope_is_404() {
    let fx = fixture().await;
    let (manager, own, other) = scope_case(fx).await;
    let rule = format!("manager.manager = {manager}");
    let app = crate::auth::app(
        Some(&move |d: &std::path::Path| crate::auth::auth_file(d, &rule)),
        |_, _| {},
    )
    .await;
    let (admin, scoped) = (crate::auth::ADMIN_KEY, crate::auth::MANAGER_KEY);
    let path = |id: &str| format!("/v1/cubes/bank_crm/entities/customer/{id}");

    let r = app.as_(admin, "GET", &path(&own), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The server's searches: the definition's (none saved over the API here).
    let defined = definition_searches(&fx.cube.model);
    assert!(defined.contains_key("affluent_digital_no_loan"));
    let engine = fx
        .cube
        .session(everyone())
        .entity_view("customer", &own, &defined)
        .await
        .expect("view");
    let mut got = r.body.clone();
    got.as_object_mut().expect("object").remove("meta");
    assert_eq!(got, without_meta(&engine));

    // Out of scope and missing: 404 unknown_member, the same body but for the id.
    let out = app.as_(scoped, "GET", &path(&other), None).await;
    let out = out.error(404, "unknown_member").clone();
    let missing = app.as_(scoped, "GET", &path("99999999"), None).await;
    let missing = missing.error(404, "unknown_member").clone();
    assert_eq!(out["details"]["level"], missing["details"]["level"]);
    assert_eq!(out["details"]["value"], other.as_str());
    let r = app.as_(scoped, "GET", &path(&own), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app
        .as_(admin, "GET", "/v1/cubes/bank_crm/entities/custmer/1", None)
        .await;
    r.error(404, "unknown_dimension");
}

#[tokio::test]
async fn lattice_entity_prints_the_engines_view() {
    let fx = fixture().await;
    let id = customers(fx).await[0].1.clone();
    let out = crate::cli::run_on_test_data(&["entity", &id]);
    let mut printed: Value = serde_json::from_str(&out).expect("JSON");
    printed.as_object_mut().expect("object").remove("meta");
    let defined = definition_searches(&fx.cube.model);
    let engine = fx
        .cube
        .session(everyone())
        .entity_view("customer", &id, &defined)
        .await
        .expect("view");
    // Ratios (floats) as the suite compares them: to 1e-9 relative; everything else exactly.
    assert_eq!(rounded(printed), rounded(without_meta(&engine)));
}

fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            Value::String(format!("{:.9e}", n.as_f64().unwrap_or(0.0)))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        v => v,
    }
}
