//! Resolving queries against the default cube: every error case gives its code and a message
//! that says what would be valid; valid filters become the member codes they name.

use std::sync::Arc;

use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Dataset, Query, QueryError, resolve};
use tokio::sync::OnceCell;

use crate::util::{bank_crm, parquet_dir};

async fn cube() -> &'static Arc<Dataset> {
    static CUBE: OnceCell<Arc<Dataset>> = OnceCell::const_new();
    CUBE.get_or_init(|| async {
        let model = bank_crm(parquet_dir(), false).expect("definition");
        let sources = lattice_engine::source::load::load(&model)
            .await
            .expect("load");
        Arc::new(
            lattice_engine::open(&model, &sources, &BuildOptions::default())
                .await
                .expect("build"),
        )
    })
    .await
}

async fn error(json: &str) -> QueryError {
    let query = match Query::from_json(json) {
        Ok(q) => q,
        Err(e) => return e,
    };
    match resolve(&query, cube().await) {
        Ok(r) => panic!("expected an error for {json}, got {r:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_error(e: &QueryError, code: &str, message: &str) {
    assert_eq!((e.code(), e.to_string().as_str()), (code, message));
}

#[tokio::test]
async fn names_that_do_not_exist_get_suggestions() {
    let e = error(r#"{"measures": ["fee_incme"]}"#).await;
    assert_error(
        &e,
        "unknown_measure",
        "unknown measure 'fee_incme' (did you mean 'fee_income'?)",
    );
    let e = error(r#"{"measures": ["fee_income"], "rows": ["region.provnce"]}"#).await;
    assert_error(
        &e,
        "unknown_level",
        "unknown level 'region.provnce' (did you mean 'region.province'?)",
    );
    let e = error(r#"{"measures": ["fee_income"], "filters": [{"level": "time.yaer", "op": "eq", "value": "2025"}]}"#).await;
    assert_error(
        &e,
        "unknown_level",
        "unknown level 'time.yaer' (did you mean 'time.year'?)",
    );
}

#[tokio::test]
async fn malformed_documents_and_empty_questions() {
    let e = error(r#"{"measures": ["fee_income"], "rowz": []}"#).await;
    assert_eq!(e.code(), "malformed_query");
    assert!(e.to_string().contains("unknown field `rowz`"), "{e}");
    let e = error(r#"{"measures": "fee_income"}"#).await;
    assert_eq!(e.code(), "malformed_query");
    assert!(e.to_string().contains("invalid type"), "{e}");
    let e = error(r#"{"measures": []}"#).await;
    assert_error(&e, "no_measures", "a query needs at least one measure");
}

#[tokio::test]
async fn a_level_used_twice() {
    let e =
        error(r#"{"measures": ["txn_count"], "rows": ["time.month"], "columns": ["time.month"]}"#)
            .await;
    assert_error(
        &e,
        "level_twice",
        "level 'time.month' is used twice (in rows and in columns)",
    );
}

#[tokio::test]
async fn a_measure_that_does_not_vary_by_a_level() {
    let e = error(r#"{"measures": ["deposit_balance"], "rows": ["channel.channel"]}"#).await;
    assert_error(
        &e,
        "measure_does_not_vary",
        "measure 'deposit_balance' does not vary by 'channel.channel' (its facts have no 'channel'); ask for them in separate queries",
    );
    // Also when the level only filters.
    let e = error(r#"{"measures": ["customers"], "filters": [{"level": "channel.channel", "op": "eq", "value": "ATM"}]}"#).await;
    assert_eq!(e.code(), "measure_does_not_vary");
}

#[tokio::test]
async fn filter_values_that_are_not_members_get_close_members() {
    let e = error(r#"{"measures": ["txn_count"], "filters": [{"level": "channel.channel", "op": "in", "values": ["ATM", "mobil"]}]}"#).await;
    assert_error(
        &e,
        "unknown_member",
        "'mobil' is not a member of 'channel.channel' (close members: 'mobile')",
    );
    let e = error(r#"{"measures": ["txn_count"], "filters": [{"level": "time.year", "op": "eq", "value": "2031"}]}"#).await;
    assert_error(
        &e,
        "unknown_member",
        "'2031' is not a member of 'time.year' (close members: '2024', '2025')",
    );
}

#[tokio::test]
async fn filters_of_the_wrong_shape() {
    let cases = [
        (
            r#"{"level": "time.year", "op": "eq"}"#,
            "filter on 'time.year': `eq` needs `value`",
        ),
        (
            r#"{"level": "time.year", "op": "in", "values": []}"#,
            "filter on 'time.year': `in` needs a non-empty `values` list",
        ),
        (
            r#"{"level": "time.month", "op": "between", "values": ["2025-01"]}"#,
            "filter on 'time.month': `between` needs exactly two values [low, high], not 1",
        ),
        (
            r#"{"level": "time.month", "op": "between", "values": ["2025-06", "2025-01"]}"#,
            "filter on 'time.month': '2025-06' comes after '2025-01'; write [low, high]",
        ),
        (
            r#"{"level": "region.province", "op": "between", "values": ["Hubei", "Sichuan"]}"#,
            "filter on 'region.province': `between` needs an ordered level (time or bands)",
        ),
    ];
    for (filter, message) in cases {
        let e = error(&format!(
            r#"{{"measures": ["txn_count"], "filters": [{filter}]}}"#
        ))
        .await;
        assert_error(&e, "bad_filter", message);
    }
}

#[tokio::test]
async fn having_order_and_compare_must_fit_the_question() {
    let e = error(r#"{"measures": ["txn_count"], "having": [{"measure": "fee_income", "op": "gt", "value": 1}]}"#).await;
    assert_error(
        &e,
        "having_not_asked",
        "having on 'fee_income': the measure is not asked for in `measures`",
    );
    let e = error(r#"{"measures": ["txn_count"], "rows": ["time.year"], "order": [{"by": "region.province"}]}"#).await;
    assert_error(
        &e,
        "bad_order",
        "cannot order by 'region.province': it is neither a measure of the query nor a grouped level",
    );
    let e = error(r#"{"measures": ["txn_count"], "rows": ["region.province"], "compare": {"level": "region.province", "lag": 1}}"#).await;
    assert_error(
        &e,
        "bad_compare",
        "compare on 'region.province': compare needs an ordered level (time or bands)",
    );
    let e = error(r#"{"measures": ["txn_count"], "rows": ["time.year"], "compare": {"level": "time.month", "lag": 1}}"#).await;
    assert_error(
        &e,
        "bad_compare",
        "compare on 'time.month': the level must be on rows or columns",
    );
    let e = error(r#"{"measures": ["txn_count"], "rows": ["time.month"], "compare": {"level": "time.month", "lag": 0}}"#).await;
    assert_error(
        &e,
        "bad_compare",
        "compare on 'time.month': lag must be at least 1",
    );
}

#[tokio::test]
async fn shares_must_name_an_asked_measure_and_reachable_levels() {
    let cases = [
        (
            r#"{"measures": ["txn_count"], "shares": [{"measure": "fee_income"}]}"#,
            "share of 'fee_income': ask for the measure in `measures` too",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["region.city"], "shares": [{"measure": "txn_count", "of": ["region.branch"]}]}"#,
            "share of 'txn_count': 'region.branch' must be on rows or columns, or above a level there in its hierarchy",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["channel.channel"], "shares": [{"measure": "txn_count", "of": ["time.year"]}]}"#,
            "share of 'txn_count': 'time.year' must be on rows or columns, or above a level there in its hierarchy",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["time.month"], "shares": [{"measure": "txn_count", "of": ["time.year", "time.year"]}]}"#,
            "share of 'txn_count': 'time.year' is named twice",
        ),
        (
            r#"{"measures": ["txn_count"], "shares": [{"measure": "txn_count"}, {"measure": "txn_count"}]}"#,
            "share of 'txn_count': the column name 'txn_count_share' is taken; give the share a `name`",
        ),
        (
            r#"{"measures": ["txn_count"], "shares": [{"measure": "txn_count", "name": "txn_count"}]}"#,
            "share of 'txn_count': the column name 'txn_count' is taken; give the share a `name`",
        ),
    ];
    for (json, message) in cases {
        assert_error(&error(json).await, "bad_share", message);
    }
    // A level above a grouped one is reachable: months roll up to years.
    let ok = r#"{"measures": ["txn_count"], "rows": ["time.month"], "shares": [{"measure": "txn_count", "of": ["time.year"]}]}"#;
    resolve(&Query::from_json(ok).unwrap(), cube().await).expect("months roll up to years");
}

#[tokio::test]
async fn valid_filters_become_member_codes() {
    let cube = cube().await;
    let query = Query::from_json(
        r#"{"measures": ["fee_income", "avg_ticket"], "rows": ["region.province"], "columns": ["time.quarter"],
            "filters": [
              {"level": "time.month", "op": "between", "values": ["2025-02", "2025-04"]},
              {"level": "channel.channel", "op": "not_in", "values": ["ATM", "POS"]},
              {"level": "customer.deposit_band", "op": "in", "values": ["<10k", "1M+"]},
              {"level": "region.city", "op": "prefix", "value": "Hang"},
              {"level": "product.product", "op": "search", "value": "LOAN"}
            ],
            "order": [{"by": "fee_income", "dir": "desc"}], "limit": 5}"#,
    )
    .expect("query");
    let r = resolve(&query, cube).expect("resolves");
    let names = |i: usize| -> Vec<String> {
        let f = &r.filters[i];
        f.members
            .iter()
            .map(|c| cube.member_name(f.level, c).to_string())
            .collect()
    };
    assert_eq!(names(0), ["2025-02", "2025-03", "2025-04"]);
    // Every channel but the two excluded, and `unknown`.
    let mut channels = names(1);
    channels.sort();
    assert_eq!(
        channels,
        ["counter", "mobile", "online", "phone", "unknown"]
    );
    assert_eq!(names(2), ["<10k", "1M+"]);
    assert!(
        !names(3).is_empty() && names(3).iter().all(|c| c.starts_with("Hang")),
        "{:?}",
        names(3)
    );
    assert!(
        !names(4).is_empty() && names(4).iter().all(|p| p.to_lowercase().contains("loan")),
        "{:?}",
        names(4)
    );
    assert_eq!(r.limit, Some(5));
    assert_eq!(r.measures.len(), 2);
}

/// Answers `json` through a session's query, expecting an error.
async fn execute_error(json: &str) -> QueryError {
    let query = match Query::from_json(json) {
        Ok(q) => q,
        Err(e) => return e,
    };
    match cube()
        .await
        .session(Access::everything())
        .query(&query)
        .await
    {
        Ok(a) => panic!(
            "expected an error for {json}, got {}",
            serde_json::to_string(&a).expect("json")
        ),
        Err(e) => e,
    }
}

/// Every code a query can fail with, through the whole engine (resolution, planning and the
/// finish): one question each, with its message.
#[tokio::test]
async fn every_query_error_code_through_execute() {
    let cases = [
        (
            r#"{"measures": ["txn_count"], "limit": "ten"}"#,
            "malformed_query",
            "the query is not valid JSON for a query: invalid type: string \"ten\", expected u64 at line 1 column 42",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["time.months"]}"#,
            "unknown_level",
            "unknown level 'time.months' (did you mean 'time.month'?)",
        ),
        (
            r#"{"measures": ["avg_tiket"]}"#,
            "unknown_measure",
            "unknown measure 'avg_tiket' (did you mean 'avg_ticket'?)",
        ),
        (
            r#"{"measures": [], "rows": ["time.year"]}"#,
            "no_measures",
            "a query needs at least one measure",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["region.city", "region.city"]}"#,
            "level_twice",
            "level 'region.city' is used twice (in rows and in rows)",
        ),
        (
            r#"{"measures": ["txn_count", "customers"], "rows": ["channel.channel"]}"#,
            "measure_does_not_vary",
            "measure 'customers' does not vary by 'channel.channel' (its facts have no 'channel'); ask for them in separate queries",
        ),
        (
            r#"{"measures": ["txn_count"], "filters": [{"level": "region.province", "op": "eq", "value": "Zhejang"}]}"#,
            "unknown_member",
            "'Zhejang' is not a member of 'region.province' (close members: 'Zhejiang')",
        ),
        (
            r#"{"measures": ["txn_count"], "filters": [{"level": "customer.deposit_band", "op": "between", "values": ["1M+", "<10k"]}]}"#,
            "bad_filter",
            "filter on 'customer.deposit_band': '1M+' comes after '<10k'; write [low, high]",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["time.year"], "having": [{"measure": "avg_ticket", "op": "lt", "value": 5}]}"#,
            "having_not_asked",
            "having on 'avg_ticket': the measure is not asked for in `measures`",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["time.year"], "order": [{"by": "fee_income"}]}"#,
            "bad_order",
            "cannot order by 'fee_income': it is neither a measure of the query nor a grouped level",
        ),
        (
            r#"{"measures": ["txn_count"], "rows": ["channel.channel"], "compare": {"level": "channel.channel", "lag": 1}}"#,
            "bad_compare",
            "compare on 'channel.channel': compare needs an ordered level (time or bands)",
        ),
    ];
    for (json, code, message) in cases {
        let e = execute_error(json).await;
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (code, message),
            "{json}"
        );
    }
}

/// Ordering a pivot by a level on its columns: the rows have no single member of it.
#[tokio::test]
async fn a_pivot_cannot_be_ordered_by_a_column_level() {
    let e = execute_error(
        r#"{"measures": ["txn_count"], "rows": ["region.province"], "columns": ["time.year"],
            "order": [{"by": "time.year", "dir": "desc"}]}"#,
    )
    .await;
    assert_error(
        &e,
        "bad_order",
        "cannot order by 'time.year': it is on the pivot's columns; order a pivot by a row level or by a measure (its row total)",
    );
}

/// A filter naming no member of an ordered level, and the shapes `between` refuses, through
/// the whole engine.
#[tokio::test]
async fn bad_filters_through_execute() {
    let cases = [
        (
            r#"{"level": "customer.products_band", "op": "between", "values": ["3-4", "1"]}"#,
            "filter on 'customer.products_band': '3-4' comes after '1'; write [low, high]",
        ),
        (
            r#"{"level": "customer.segment", "op": "between", "values": ["affluent", "mass"]}"#,
            "filter on 'customer.segment': `between` needs an ordered level (time or bands)",
        ),
        (
            r#"{"level": "region.city", "op": "prefix"}"#,
            "filter on 'region.city': `prefix` needs `value`",
        ),
        (
            r#"{"level": "channel.channel", "op": "not_in"}"#,
            "filter on 'channel.channel': `not_in` needs a non-empty `values` list",
        ),
    ];
    for (filter, message) in cases {
        let e = execute_error(&format!(
            r#"{{"measures": ["txn_count"], "filters": [{filter}]}}"#
        ))
        .await;
        assert_error(&e, "bad_filter", message);
    }
}

async fn drill_error(json: &str) -> QueryError {
    let q = match lattice_engine::query::DrillQuery::from_json(json) {
        Ok(q) => q,
        Err(e) => return e,
    };
    match cube()
        .await
        .session(Access::everything())
        .drill_through(&q)
        .await
    {
        Ok(a) => panic!(
            "expected an error for {json}, got {}",
            serde_json::to_string(&a).expect("json")
        ),
        Err(e) => e,
    }
}

#[tokio::test]
async fn drill_through_needs_an_entity_and_a_distinct_measure_over_it() {
    let e = drill_error(r#"{"level": "time.month"}"#).await;
    assert_error(
        &e,
        "bad_drill",
        "drill-through to 'time.month': drill-through lists the members of an entity such as customer.id, not time",
    );
    let e = drill_error(r#"{"level": "region.branch"}"#).await;
    assert_error(
        &e,
        "bad_drill",
        "drill-through to 'region.branch': no distinct measure counts the keys of 'region' (region_id); drill-through needs one",
    );
    let e = drill_error(r#"{"level": "channel.channel", "filters": []}"#).await;
    assert_error(
        &e,
        "bad_drill",
        "drill-through to 'channel.channel': no distinct measure counts the keys of 'channel' (channel_id); drill-through needs one",
    );
}

#[tokio::test]
async fn drill_through_checks_names_filters_and_order_like_a_query() {
    let e = drill_error(r#"{"level": "customer.id", "limt": 5}"#).await;
    assert_eq!(e.code(), "malformed_query");
    assert!(e.to_string().contains("unknown field `limt`"), "{e}");
    let e = drill_error(r#"{"level": "customer.idd"}"#).await;
    assert_error(
        &e,
        "unknown_level",
        "unknown level 'customer.idd' (did you mean 'customer.id'?)",
    );
    let e = drill_error(
        r#"{"level": "customer.id", "filters": [{"level": "channel.channel", "op": "eq", "value": "ATMs"}]}"#,
    )
    .await;
    assert_error(
        &e,
        "unknown_member",
        "'ATMs' is not a member of 'channel.channel' (close members: 'ATM')",
    );
    // Products are listed through `products_held`, a balances measure: balances have no channel.
    let e = drill_error(
        r#"{"level": "product.product", "filters": [{"level": "channel.channel", "op": "eq", "value": "ATM"}]}"#,
    )
    .await;
    assert_error(
        &e,
        "measure_does_not_vary",
        "measure 'products_held' does not vary by 'channel.channel' (its facts have no 'channel'); ask for them in separate queries",
    );
    let e = drill_error(r#"{"level": "customer.id", "order": [{"by": "txn_count"}]}"#).await;
    assert_error(
        &e,
        "bad_order",
        "cannot order by 'txn_count': it is neither a measure of the query nor a grouped level",
    );
    let e = drill_error(
        r#"{"level": "customer.id", "measures": ["txn_count"], "order": [{"by": "fee_income"}]}"#,
    )
    .await;
    assert_eq!(e.code(), "bad_order");
}

/// Two cubes built from the same loaded sources share its DataFusion session: each one's
/// fallback registers its own code tables there without colliding with the other's.
#[tokio::test]
async fn cubes_built_from_the_same_sources_each_answer_by_the_fallback() {
    let mut model = bank_crm(parquet_dir(), false).expect("definition");
    model.aggregates.mode = lattice_defs::model::AggMode::Explicit;
    model.aggregates.cuboids.clear();
    let sources = lattice_engine::source::load::load(&model)
        .await
        .expect("load");
    let q = Query::from_json(
        r#"{"measures": ["txn_amount", "deposit_balance"], "rows": ["region.province", "customer.deposit_band"]}"#,
    )
    .expect("query");
    let without_base = BuildOptions {
        without_base: true,
        ..BuildOptions::default()
    };
    let mut answers = Vec::new();
    for _ in 0..2 {
        let cube = Arc::new(
            lattice_engine::open(&model, &sources, &without_base)
                .await
                .expect("build"),
        );
        let a = cube
            .session(Access::everything())
            .query(&q)
            .await
            .expect("the fallback answers");
        assert_eq!(a.meta.source, "fallback");
        answers.push(a.rows);
    }
    assert_eq!(answers[0], answers[1]);
}
