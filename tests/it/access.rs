//! A principal's access, applied by the engine (`engine/src/access/`): scoped answers are the
//! unscoped answers restricted to the principal's customers — checked against every question
//! of the suite and against SQL written here — members outside the scope are invisible (and
//! as unknown as a missing name), and small cells are suppressed so that no total gives one
//! away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::query::{
    Answer, DrillQuery, Filter, FilterOp, Query, QueryCache, QueryError, Session,
};
use serde_json::Value as Json;

use crate::query_props::answer_cells;
use crate::query_suite::{Cell, Fixture, compare_rows, fixture, run_sql, without_meta};
use crate::questions::questions;

/// Fewest customers per cell the default cube's `privacy` allows the `analyst` role.
const MIN_CUSTOMERS: i128 = 5;

fn rule(s: &str) -> ScopeRule {
    s.parse().expect("scope rule")
}

fn scoped(rules: &[&str], roles: &[&str]) -> Access {
    Access {
        scope: rules.iter().map(|r| rule(r)).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn filter_in(level: &str, values: &[String]) -> Filter {
    Filter {
        level: level.into(),
        op: FilterOp::In,
        value: None,
        values: Some(values.to_vec()),
    }
}

/// The manager with the most customers in the test data.
async fn busiest_manager(fx: &Fixture) -> String {
    let t = run_sql(
        &fx.sql,
        "SELECT m.manager_name, COUNT(*) AS n FROM customers c
         JOIN managers m ON m.manager_id = c.manager_id
         GROUP BY m.manager_name ORDER BY n DESC, m.manager_name LIMIT 1",
    )
    .await
    .expect("SQL");
    match &t.rows[0][0] {
        Cell::Text(s) => s.clone(),
        other => panic!("manager name {other}"),
    }
}

fn types(a: &Answer) -> Vec<Option<&'static str>> {
    a.columns
        .iter()
        .map(|c| if c.kind == "level" { None } else { c.ty })
        .collect()
}

fn text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int(c: &Cell) -> i128 {
    match c {
        Cell::Int(i) => *i,
        other => panic!("expected an integer, got {other}"),
    }
}

/// Whether the level is one whose members the scope of a manager restricts.
fn restricted_by_a_managers_scope(level: &str) -> bool {
    let restricted = ["customer.", "region.", "manager."];
    let labels = ["_band"];
    restricted.iter().any(|p| level.starts_with(p)) && !labels.iter().any(|b| level.contains(b))
}

#[tokio::test]
async fn every_question_under_a_managers_scope_equals_it_filtered_to_the_manager() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &[]);
    let mut failures = Vec::new();
    let mut answered = 0;
    for q in questions() {
        let query = Query::from_json(q.query).expect("question");
        let mut filtered = query.clone();
        filtered
            .filters
            .push(filter_in("manager.manager", std::slice::from_ref(&manager)));
        for (which, cube) in [
            ("cube", &fx.cube),
            ("base rows", &fx.base),
            ("no cuboids", &fx.bare),
        ] {
            let session = cube.session(access.clone());
            let want = cube.session(Access::everything()).query(&filtered).await;
            match (session.query(&query).await, want) {
                (Ok(got), Ok(want)) => {
                    answered += 1;
                    if without_meta(&got) != without_meta(&want) {
                        failures.push(format!(
                            "{} ({which}): scoped {}\n  filtered {}",
                            q.name,
                            without_meta(&got),
                            without_meta(&want)
                        ));
                    }
                }
                // A filter naming a member outside the scope: as unknown as a missing one.
                (Err(QueryError::UnknownMember { level, value, .. }), _) => {
                    let l = cube.model().level(&level).expect("level");
                    let code = cube.members(l).code(&value).expect("a real member");
                    let visible = session.visible_members(l).await.expect("visible");
                    assert!(
                        restricted_by_a_managers_scope(&level)
                            && visible.is_some_and(|v| !v.contains(code)),
                        "{}: '{value}' of {level} was refused though visible",
                        q.name
                    );
                }
                (got, want) => failures.push(format!(
                    "{} ({which}): scoped {:?}, filtered {:?}",
                    q.name,
                    got.map(|a| without_meta(&a)),
                    want.map(|a| without_meta(&a))
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(answered > 100, "only {answered} answers compared");
}

#[tokio::test]
async fn a_managers_answers_and_totals_equal_sql_over_their_customers() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &[]);
    let query = Query::from_json(
        r#"{"measures": ["fee_income", "txn_count", "active_customers"],
            "rows": ["time.year", "channel.channel"], "totals": true}"#,
    )
    .unwrap();
    let cell = format!(
        "FROM transactions t
         JOIN customers c ON c.customer_id = t.customer_id
         JOIN managers m ON m.manager_id = c.manager_id
         JOIN channels ch ON ch.channel_id = t.channel_id
         WHERE m.manager_name = '{manager}'"
    );
    let sums = "SUM(t.fee_income) AS fee_income, COUNT(*) AS txn_count,
                COUNT(DISTINCT t.customer_id) AS active_customers";
    for (which, cube) in [
        ("cube", &fx.cube),
        ("base rows", &fx.base),
        ("no cuboids", &fx.bare),
    ] {
        let a = cube
            .session(access.clone())
            .query(&query)
            .await
            .expect("answer");
        let ty = types(&a);
        let rows = run_sql(
            &fx.sql,
            &format!(
                "SELECT to_char(t.txn_date, '%Y') AS y, ch.channel, {sums} {cell}
                 GROUP BY 1, 2 ORDER BY 1, 2"
            ),
        )
        .await
        .unwrap();
        compare_rows(which, &answer_cells(&a.rows, &ty), &rows.rows).unwrap();
        let grand = run_sql(&fx.sql, &format!("SELECT {sums} {cell}"))
            .await
            .unwrap();
        let totals = a.totals.as_ref().expect("totals");
        let got: Vec<Cell> = ["fee_income", "txn_count", "active_customers"]
            .iter()
            .zip(&ty[2..])
            .map(|(m, t)| Cell::from_json(&totals[*m], *t))
            .collect();
        compare_rows(which, &[got], &grand.rows).unwrap();
        let by_year = run_sql(
            &fx.sql,
            &format!("SELECT to_char(t.txn_date, '%Y') AS y, {sums} {cell} GROUP BY 1 ORDER BY 1"),
        )
        .await
        .unwrap();
        let mut sub_types = vec![None];
        sub_types.extend_from_slice(&ty[2..]);
        compare_rows(
            which,
            &answer_cells(&a.subtotals[0].rows, &sub_types),
            &by_year.rows,
        )
        .unwrap();
    }
}

#[tokio::test]
async fn a_provinces_scope_reads_balances_of_its_customers_only() {
    let fx = fixture().await;
    let provinces = run_sql(
        &fx.sql,
        "SELECT DISTINCT province FROM regions ORDER BY province LIMIT 2",
    )
    .await
    .unwrap();
    let [a, b] = [text(&provinces.rows[0][0]), text(&provinces.rows[1][0])];
    let access = scoped(&[&format!("region.province in [{a}, {b}]")], &[]);
    let query = Query::from_json(
        r#"{"measures": ["interest_margin", "customers", "deposit_balance"],
            "rows": ["product.category"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
    )
    .unwrap();
    let sql = format!(
        r#"WITH scoped AS (
             SELECT b.* FROM balances b
             JOIN customers c ON c.customer_id = b.customer_id
             JOIN regions r ON r.region_id = c.region_id
             WHERE r.province IN ('{a}', '{b}') AND to_char(b.month, '%Y') = '2025'),
           closing AS (SELECT MAX(month) AS month FROM balances WHERE to_char(month, '%Y') = '2025')
           SELECT p.category, SUM(s.interest_margin) AS interest_margin,
                  COUNT(DISTINCT s.customer_id) AS customers,
                  SUM(CASE WHEN s.month = (SELECT month FROM closing) THEN s.deposit_balance END) AS deposit_balance
           FROM scoped s JOIN products p ON p.product_id = s.product_id
           GROUP BY p.category ORDER BY p.category"#
    );
    let want = run_sql(&fx.sql, &sql).await.unwrap();
    for (which, cube) in [
        ("cube", &fx.cube),
        ("base rows", &fx.base),
        ("no cuboids", &fx.bare),
    ] {
        let got = cube
            .session(access.clone())
            .query(&query)
            .await
            .expect("answer");
        compare_rows(which, &answer_cells(&got.rows, &types(&got)), &want.rows).unwrap();
    }
}

#[tokio::test]
async fn members_outside_the_scope_are_invisible_and_unknown() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &[]);
    let theirs = run_sql(
        &fx.sql,
        &format!(
            "SELECT DISTINCT CAST(customer_id AS VARCHAR) FROM (
               SELECT customer_id FROM transactions UNION ALL SELECT customer_id FROM balances) f
             WHERE customer_id IN (SELECT c.customer_id FROM customers c
               JOIN managers m ON m.manager_id = c.manager_id WHERE m.manager_name = '{manager}')"
        ),
    )
    .await
    .unwrap();
    let want: BTreeSet<String> = theirs.rows.iter().map(|r| text(&r[0])).collect();
    assert!(
        want.len() >= 5,
        "the busiest manager has {} customers",
        want.len()
    );
    let other = run_sql(
        &fx.sql,
        &format!(
            "SELECT CAST(MIN(t.customer_id) AS VARCHAR) FROM transactions t
             JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id WHERE m.manager_name <> '{manager}'"
        ),
    )
    .await
    .unwrap();
    let other = text(&other.rows[0][0]);

    for cube in [&fx.cube, &fx.base, &fx.bare] {
        let session = cube.session(access.clone());
        let id = cube.model().level("customer.id").unwrap();
        let visible = session
            .visible_members(id)
            .await
            .unwrap()
            .expect("restricted");
        let got: BTreeSet<String> = visible
            .iter()
            .map(|c| cube.member_name(id, c).to_string())
            .collect();
        assert_eq!(got, want);
        // Channels are not the principal's customers: every one is listed.
        let channel = cube.model().level("channel.channel").unwrap();
        assert!(session.visible_members(channel).await.unwrap().is_none());
        // Bands are the definition's labels.
        let band = cube.model().level("customer.deposit_band").unwrap();
        assert!(session.visible_members(band).await.unwrap().is_none());

        // Another manager's customer is refused exactly as a missing one.
        let ask = |value: &str| {
            Query::from_json(&format!(
                r#"{{"measures": ["txn_count"], "filters": [{{"level": "customer.id", "op": "eq", "value": "{value}"}}]}}"#
            ))
            .unwrap()
        };
        let not_theirs = session.query(&ask(&other)).await.unwrap_err();
        let missing = session.query(&ask("99999999")).await.unwrap_err();
        for e in [&not_theirs, &missing] {
            let QueryError::UnknownMember { suggestions, .. } = e else {
                panic!("expected unknown_member, got {e:?}");
            };
            assert!(
                suggestions.iter().all(|s| want.contains(s)),
                "suggested someone else's customer: {suggestions:?}"
            );
        }
        assert_eq!(not_theirs.code(), missing.code());
        assert_eq!(
            not_theirs.to_string().replace(&other, "X"),
            session
                .query(&ask(&other))
                .await
                .unwrap_err()
                .to_string()
                .replace(&other, "X"),
        );
        // Their own customer is found.
        let mine = want.iter().next().unwrap();
        session.query(&ask(mine)).await.expect("own customer");
    }
}

#[tokio::test]
async fn a_comparison_never_lifts_the_scope() {
    let fx = fixture().await;
    // Scope and comparison on the same dimension: a query's own filter there would be lifted.
    let access = scoped(&["customer.segment = mass"], &[]);
    let query = Query::from_json(
        r#"{"measures": ["txn_count"], "rows": ["customer.txn_count_band"],
            "compare": {"level": "customer.txn_count_band", "lag": 1}}"#,
    )
    .unwrap();
    for cube in [&fx.cube, &fx.base, &fx.bare] {
        let a = cube.session(access.clone()).query(&query).await.unwrap();
        let plain = Query::from_json(
            r#"{"measures": ["txn_count"], "rows": ["customer.txn_count_band"],
                "filters": [{"level": "customer.segment", "op": "eq", "value": "mass"}]}"#,
        )
        .unwrap();
        let want = cube
            .session(Access::everything())
            .query(&plain)
            .await
            .unwrap();
        // Each band's earlier value is the band before's value within the scope.
        let value: BTreeMap<&str, &Json> = want
            .rows
            .iter()
            .map(|r| (r[0].as_str().unwrap(), &r[1]))
            .collect();
        let names = &cube
            .members(cube.model().level("customer.txn_count_band").unwrap())
            .names;
        for row in &a.rows {
            let band = row[0].as_str().unwrap();
            assert_eq!(&row[1], value[band], "{band}");
            let i = names.iter().position(|n| n == band).unwrap();
            let before = (i > 0 && band != "unknown")
                .then(|| value.get(names[i - 1].as_str()).copied())
                .flatten();
            assert_eq!(Some(&row[2]), Some(before.unwrap_or(&Json::Null)), "{band}");
        }
    }
}

#[tokio::test]
async fn scopes_that_do_not_fit_are_forbidden() {
    let fx = fixture().await;
    let query = Query::from_json(r#"{"measures": ["txn_count"]}"#).unwrap();
    let e = fx
        .cube
        .session(scoped(&["branch.nowhere = x"], &[]))
        .query(&query)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
    assert!(e.to_string().contains("branch.nowhere"), "{e}");
    // Balances do not vary by channel: a channel scope cannot restrict them.
    let balances = Query::from_json(r#"{"measures": ["deposit_balance"]}"#).unwrap();
    let e = fx
        .cube
        .session(scoped(&["channel.channel = ATM"], &[]))
        .query(&balances)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
    assert!(e.to_string().contains("deposit_balance"), "{e}");
    // A member the cube does not have matches nothing.
    let a = fx
        .cube
        .session(scoped(&["manager.manager = nobody"], &[]))
        .query(&query)
        .await
        .unwrap();
    assert_eq!(a.rows, vec![vec![Json::from(0)]]);
}

#[tokio::test]
async fn the_result_cache_keeps_principals_apart() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let cache = Arc::new(QueryCache::new(100));
    let query =
        Query::from_json(r#"{"measures": ["txn_count"], "rows": ["channel.channel"]}"#).unwrap();
    let mine = scoped(&[&format!("manager.manager = {manager}")], &[]);
    let cached =
        |access: &Access| Session::new(fx.cube.clone(), access.clone()).with_cache(cache.clone());
    let all = cached(&Access::everything()).query(&query).await.unwrap();
    let scoped_first = cached(&mine).query(&query).await.unwrap();
    let scoped_again = cached(&mine).query(&query).await.unwrap();
    let all_again = cached(&Access::everything()).query(&query).await.unwrap();
    assert!(!scoped_first.meta.cached && scoped_again.meta.cached && all_again.meta.cached);
    assert_eq!(without_meta(&scoped_first), without_meta(&scoped_again));
    assert_eq!(without_meta(&all), without_meta(&all_again));
    assert_ne!(without_meta(&all), without_meta(&scoped_first));
    assert_eq!(
        without_meta(&scoped_first),
        without_meta(&fx.cube.session(mine.clone()).query(&query).await.unwrap())
    );
}

// ---- small-cell suppression ----

/// Distinct customers per key, from SQL returning the key's columns then the count.
async fn counts(fx: &Fixture, sql: &str) -> BTreeMap<Vec<String>, i128> {
    let t = run_sql(&fx.sql, sql).await.unwrap();
    t.rows
        .iter()
        .map(|r| {
            let n = r.len() - 1;
            (r[..n].iter().map(text).collect(), int(&r[n]))
        })
        .collect()
}

fn small(n: i128) -> bool {
    n > 0 && n < MIN_CUSTOMERS
}

#[tokio::test]
async fn small_cells_and_every_total_holding_one_are_suppressed() {
    let fx = fixture().await;
    let query = Query::from_json(
        r#"{"measures": ["fee_income", "active_customers", "avg_ticket"],
            "rows": ["region.city", "channel.channel"],
            "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q1"}], "totals": true}"#,
    )
    .unwrap();
    let cell = "FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
                JOIN regions r ON r.region_id = c.region_id JOIN channels ch ON ch.channel_id = t.channel_id
                WHERE t.txn_date >= DATE '2025-01-01' AND t.txn_date < DATE '2025-04-01'";
    let by_cell = counts(
        fx,
        &format!("SELECT r.city, ch.channel, COUNT(DISTINCT t.customer_id) {cell} GROUP BY 1, 2"),
    )
    .await;
    let by_city = counts(
        fx,
        &format!("SELECT r.city, COUNT(DISTINCT t.customer_id) {cell} GROUP BY 1"),
    )
    .await;
    let n_small = by_cell.values().filter(|n| small(**n)).count();
    assert!(
        n_small > 0 && n_small < by_cell.len(),
        "the test needs both small and large cells: {n_small} of {}",
        by_cell.len()
    );
    let analyst = scoped(&[], &["analyst"]);
    for (which, cube) in [
        ("cube", &fx.cube),
        ("base rows", &fx.base),
        ("no cuboids", &fx.bare),
    ] {
        let as_analyst = cube.session(analyst.clone());
        let open = cube
            .session(Access::everything())
            .query(&query)
            .await
            .unwrap();
        let a = as_analyst.query(&query).await.unwrap();
        let sup = a.suppressed.as_ref().expect("suppression reported");
        assert_eq!(i128::from(sup.min_customers), MIN_CUSTOMERS);
        // A small cell's row is left out, as an empty one is: its presence alone would say
        // that 1 to 4 customers are there. Every other row is the unsuppressed one.
        let key_of = |row: &Vec<Json>| {
            vec![
                text(&Cell::from_json(&row[0], None)),
                text(&Cell::from_json(&row[1], None)),
            ]
        };
        let shown: Vec<&Vec<Json>> = open
            .rows
            .iter()
            .filter(|row| !small(by_cell[&key_of(row)]))
            .collect();
        assert_eq!(a.rows.len(), open.rows.len() - n_small, "{which}");
        for (row, plain) in a.rows.iter().zip(&shown) {
            assert_eq!(&row, plain, "{which}: {:?}", key_of(row));
        }
        assert!(sup.cells.is_empty(), "{which}: {:?}", sup.cells);
        assert_eq!(a.meta.total_rows, a.rows.len(), "{which}");
        let small_cities: BTreeSet<String> = by_cell
            .iter()
            .filter(|(_, n)| small(**n))
            .map(|(k, _)| k[0].clone())
            .collect();
        // A share is withheld when its row is, or when its whole (the city) holds a small
        // cell: the share of a shown cell would give the withheld whole away.
        let mut with_share = query.clone();
        with_share.shares = vec![lattice_engine::query::Share {
            measure: "fee_income".into(),
            of: vec!["region.city".into()],
            name: None,
        }];
        let s = as_analyst.query(&with_share).await.unwrap();
        let s_flags: BTreeSet<[usize; 2]> = s
            .suppressed
            .as_ref()
            .unwrap()
            .cells
            .iter()
            .copied()
            .collect();
        for (j, row) in s.rows.iter().enumerate() {
            let city = text(&Cell::from_json(&row[0], None));
            let key = vec![city.clone(), text(&Cell::from_json(&row[1], None))];
            let whole_hidden = small(by_city[&vec![city.clone()]])
                || by_cell.iter().any(|(k, n)| k[0] == city && small(*n));
            let hidden = small(by_cell[&key]) || whole_hidden;
            assert_eq!(row[5].is_null(), hidden, "{which}: share of {key:?}");
            assert_eq!(
                s_flags.contains(&[j, 5]),
                hidden,
                "{which}: share flag of {key:?}"
            );
        }
        // The grand total holds small cells: withheld.
        let totals = a.totals.as_ref().unwrap();
        assert!(totals.values().all(Json::is_null), "{which}: {totals:?}");
        assert_eq!(sup.totals.len(), 3);
        // A city's sub-total is shown only if none of its cells (nor itself) is small, and then
        // equals the unsuppressed one.
        let open_sub = &open.subtotals[0].rows;
        for (j, (row, plain)) in a.subtotals[0].rows.iter().zip(open_sub).enumerate() {
            let city = text(&Cell::from_json(&row[0], None));
            let hidden = small_cities.contains(&city) || small(by_city[&vec![city.clone()]]);
            assert_eq!(sup.subtotals.contains(&[0, j]), hidden, "{which}: {city}");
            if hidden {
                assert!(row[1..].iter().all(Json::is_null), "{which}: {city}");
            } else {
                assert_eq!(row, plain, "{which}: {city}");
            }
        }
    }
}

#[tokio::test]
async fn no_suppressed_cell_can_be_recovered_from_a_pivots_totals() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &["analyst"]);
    let query = Query::from_json(
        r#"{"measures": ["txn_count"], "rows": ["channel.channel"], "columns": ["time.quarter"],
            "totals": true}"#,
    )
    .unwrap();
    let by_cell = counts(
        fx,
        &format!(
            "SELECT ch.channel, to_char(t.txn_date, '%Y') || '-Q' || CAST(CAST(date_part('quarter', t.txn_date) AS BIGINT) AS VARCHAR),
                    COUNT(DISTINCT t.customer_id)
             FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE m.manager_name = '{manager}' GROUP BY 1, 2"
        ),
    )
    .await;
    assert!(by_cell.values().any(|n| small(*n)), "no small cell to test");
    for (which, cube) in [
        ("cube", &fx.cube),
        ("base rows", &fx.base),
        ("no cuboids", &fx.bare),
    ] {
        let a = cube.session(access.clone()).query(&query).await.unwrap();
        let sup = a.suppressed.as_ref().unwrap();
        let flagged: BTreeSet<[usize; 2]> = sup.cells.iter().copied().collect();
        let mut small_rows = BTreeSet::new();
        let mut small_cols = BTreeSet::new();
        for (j, row) in a.rows.iter().enumerate() {
            let channel = row[0].as_str().unwrap();
            for (c, col) in a.columns.iter().enumerate().skip(1) {
                let quarter = col.name.split('|').next().unwrap();
                let n = by_cell
                    .get(&vec![channel.to_string(), quarter.to_string()])
                    .copied()
                    .unwrap_or(0);
                // A small cell is left empty, unflagged, as a cell without customers is.
                assert!(
                    !flagged.contains(&[j, c]),
                    "{which}: {channel} {quarter} flagged"
                );
                if small(n) {
                    assert!(row[c].is_null());
                    small_rows.insert(channel.to_string());
                    small_cols.insert(quarter.to_string());
                } else if n > 0 {
                    assert!(!row[c].is_null(), "{which}: {channel} {quarter}");
                }
            }
        }
        // A channel whose every cell is small has no row at all: the small rows and columns
        // are the SQL's.
        for (k, n) in &by_cell {
            if small(*n) {
                small_rows.insert(k[0].clone());
                small_cols.insert(k[1].clone());
            }
        }
        // Every total shown sums cells that are all shown: subtracting them reveals nothing.
        let totals = a.totals.as_ref().unwrap();
        for (key, v) in totals {
            let quarter = key.split('|').next().unwrap();
            let holds_small = key == "txn_count" || small_cols.contains(quarter);
            assert_eq!(v.is_null(), holds_small, "{which}: total {key}");
            assert_eq!(
                sup.totals.contains(key),
                holds_small,
                "{which}: flag of {key}"
            );
        }
        let row_totals = a.subtotals.last().unwrap();
        assert_eq!(row_totals.levels, vec!["channel.channel"]);
        for (j, row) in row_totals.rows.iter().enumerate() {
            let channel = row[0].as_str().unwrap();
            let holds_small = small_rows.contains(channel);
            assert_eq!(
                row[1].is_null(),
                holds_small,
                "{which}: row total {channel}"
            );
            let index = a.subtotals.len() - 1;
            assert_eq!(sup.subtotals.contains(&[index, j]), holds_small);
        }
    }
}

#[tokio::test]
async fn comparisons_order_and_having_do_not_reveal_small_cells() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &["analyst"]);
    let by_month = counts(
        fx,
        &format!(
            "SELECT to_char(t.txn_date, '%Y-%m'), COUNT(DISTINCT t.customer_id)
             FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE m.manager_name = '{manager}' AND ch.channel = 'ATM' GROUP BY 1"
        ),
    )
    .await;
    assert!(by_month.values().any(|n| small(*n)) && by_month.values().any(|n| !small(*n)));
    let query = Query::from_json(
        r#"{"measures": ["fee_income"], "rows": ["time.month"],
            "filters": [{"level": "channel.channel", "op": "eq", "value": "ATM"}],
            "compare": {"level": "time.month", "lag": 1}}"#,
    )
    .unwrap();
    let count = |m: &str| by_month.get(&vec![m.to_string()]).copied().unwrap_or(0);
    for cube in [&fx.cube, &fx.base, &fx.bare] {
        let session = cube.session(access.clone());
        let a = session.query(&query).await.unwrap();
        let months = &cube
            .members(cube.model().level("time.month").unwrap())
            .names;
        // Small months are left out, as months without facts are.
        for row in &a.rows {
            let m = row[0].as_str().unwrap();
            assert!(!small(count(m)) && !row[1].is_null(), "{m}");
            let i = months.iter().position(|x| x == m).unwrap();
            if i > 0 && small(count(&months[i - 1])) {
                assert!(
                    row[2].is_null() && row[3].is_null(),
                    "{m}: the earlier month is small"
                );
            }
        }
        // Ordered by the measure or filtered by having, the small months stay out: neither
        // tells their value.
        let mut ordered = query.clone();
        ordered.compare = None;
        ordered.order = vec![lattice_engine::query::Order {
            by: "fee_income".into(),
            dir: lattice_engine::query::Direction::Desc,
        }];
        let a = session.query(&ordered).await.unwrap();
        assert!(a.rows.iter().all(|r| !r[1].is_null()));
        let first_null = a.rows.len();
        let shown = by_month.values().filter(|n| !small(**n)).count();
        assert_eq!(first_null, shown);
        let mut having = ordered.clone();
        having.having = vec![lattice_engine::query::Having {
            measure: "fee_income".into(),
            op: lattice_engine::query::HavingOp::Ge,
            value: 0.0,
        }];
        let a = session.query(&having).await.unwrap();
        assert_eq!(a.rows.len(), first_null);
    }
}

#[tokio::test]
async fn drill_through_lists_no_one_behind_a_small_cell() {
    let fx = fixture().await;
    let manager = busiest_manager(fx).await;
    let access = scoped(&[&format!("manager.manager = {manager}")], &["analyst"]);
    let by_channel = counts(
        fx,
        &format!(
            "SELECT ch.channel, COUNT(DISTINCT t.customer_id)
             FROM transactions t JOIN customers c ON c.customer_id = t.customer_id
             JOIN managers m ON m.manager_id = c.manager_id JOIN channels ch ON ch.channel_id = t.channel_id
             WHERE m.manager_name = '{manager}' AND to_char(t.txn_date, '%Y-%m') = '2025-03' GROUP BY 1"
        ),
    )
    .await;
    let pick = |want_small: bool| {
        by_channel
            .iter()
            .find(|(_, n)| small(**n) == want_small)
            .map(|(k, n)| (k[0].clone(), *n))
    };
    let drill = |channel: &str| DrillQuery {
        level: "customer.id".into(),
        filters: vec![
            filter_in("channel.channel", &[channel.to_string()]),
            filter_in("time.month", &["2025-03".to_string()]),
        ],
        measures: vec!["fee_income".into()],
        ..DrillQuery::default()
    };
    for cube in [&fx.cube, &fx.base, &fx.bare] {
        let session = cube.session(access.clone());
        if let Some((channel, _)) = pick(true) {
            let d = session.drill_through(&drill(&channel)).await.unwrap();
            // As an empty cell: no one, nothing that says why.
            assert!(d.rows.is_empty() && d.total == 0, "{channel}: {d:?}");
            let json = serde_json::to_value(&d).unwrap();
            assert!(json.get("suppressed").is_none(), "{json}");
        }
        let (channel, n) = pick(false).expect("a cell large enough to list");
        let d = session.drill_through(&drill(&channel)).await.unwrap();
        assert_eq!(i128::from(d.total), n);
        // Each member is one customer: their own values are small cells.
        assert!(d.rows.iter().all(|r| r[1].is_null()), "{d:?}");
        // Without the role the same principal sees the values.
        let open = scoped(&[&format!("manager.manager = {manager}")], &[]);
        let d = cube
            .session(open.clone())
            .drill_through(&drill(&channel))
            .await
            .unwrap();
        assert!(d.rows.iter().any(|r| !r[1].is_null()));
    }
}

#[tokio::test]
async fn roles_outside_the_privacy_rule_are_not_suppressed() {
    let fx = fixture().await;
    let query =
        Query::from_json(r#"{"measures": ["txn_count"], "rows": ["customer.id"], "limit": 3}"#)
            .unwrap();
    let a = fx
        .cube
        .session(scoped(&[], &["admin"]))
        .query(&query)
        .await
        .unwrap();
    assert!(a.suppressed.is_none());
    assert_eq!(
        without_meta(&a),
        without_meta(
            &fx.cube
                .session(Access::everything())
                .query(&query)
                .await
                .unwrap()
        )
    );
    // One customer per row: a suppressed role may not group by them at all.
    let e = fx
        .cube
        .session(scoped(&[], &["analyst"]))
        .query(&query)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, QueryError::Forbidden { message } if message.contains("customer.id")),
        "{e}"
    );
}
