//! The Cube REST API driven by the real `@cubejs-client/core` from npm, as a dashboard would
//! drive it: the Cube API is served on a socket, `node tests/cubejs/run.mjs` asks every
//! question through the client (`load`, `meta`, `dryRun`, GET and POST, the three response
//! formats, tokens) and prints what the client made of each answer — its raw data and its
//! `ResultSet` methods (`tablePivot`, `chartPivot`, `series`). Each answer is compared with
//! the native engine's answer to the same question written as a native query by hand, so the
//! translation has an independent twin. Node runs once per test binary ([`client_run`]); each
//! test checks one kind of case, listing every case of that kind that failed.
//!
//! Skipped, with the reason printed, only when `node` is not installed; `npm ci` runs in
//! `tests/cubejs` when its `node_modules` is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Answer, Dataset, Query};
use lattice_engine::store::Cube;
use lattice_server::cubejs::{self, CubeSource};
use serde_json::{Value as Json, json};
use tokio::sync::OnceCell;

use crate::util::{bank_crm, parquet_dir};

const TOKEN: &str = "lattice-test-token";
const C: &str = "bank_crm";

async fn cube() -> Arc<Dataset> {
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
    .clone()
}

struct Source(Arc<Dataset>);

impl CubeSource for Source {
    fn cube_names(&self) -> Vec<String> {
        vec![C.into()]
    }
    fn cube(&self, name: &str) -> Option<Arc<Dataset>> {
        (name == C).then(|| self.0.clone())
    }
}

/// `bank_crm.<name>`.
fn m(name: &str) -> String {
    format!("{C}.{name}")
}

/// One question: the Cube query, the native twin (one per result) and what to check.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    kind: &'static str,
    cube: Json,
    native: Vec<Json>,
    /// Native measure columns the Cube answer does not show.
    hidden: Vec<&'static str>,
    /// Whether row order is part of the answer (an `order`, or the default one, with a limit).
    ordered: bool,
    method: Option<&'static str>,
    format: Option<&'static str>,
    token: Option<String>,
    /// (status, part of the message) of an expected error.
    error: Option<(u16, &'static str)>,
    /// The `compareDateRange` label of each result.
    labels: Vec<&'static str>,
}

fn case(name: &'static str, cube: Json, native: Json) -> Case {
    Case {
        name,
        kind: "load",
        cube,
        native: vec![native],
        hidden: Vec::new(),
        ordered: false,
        method: None,
        format: None,
        token: None,
        error: None,
        labels: Vec::new(),
    }
}

fn failing(name: &'static str, cube: Json, status: u16, message: &'static str) -> Case {
    Case {
        native: Vec::new(),
        error: Some((status, message)),
        ..case(name, cube, Json::Null)
    }
}

impl Case {
    fn ordered(mut self) -> Case {
        self.ordered = true;
        self
    }
    fn hidden(mut self, h: &[&'static str]) -> Case {
        self.hidden = h.to_vec();
        self
    }
    fn method(mut self, m: &'static str) -> Case {
        self.method = Some(m);
        self
    }
    fn format(mut self, f: &'static str) -> Case {
        self.format = Some(f);
        self
    }
    fn token(mut self, t: String) -> Case {
        self.token = Some(t);
        self
    }
}

/// A filter leaf.
fn f(member: &str, operator: &str, values: &[&str]) -> Json {
    json!({"member": m(member), "operator": operator, "values": values})
}

/// A time dimension entry.
fn td(granularity: Option<&str>, date_range: Json) -> Json {
    let mut t = json!({"dimension": m("time")});
    if let Some(g) = granularity {
        t["granularity"] = json!(g);
    }
    if !date_range.is_null() {
        t["dateRange"] = date_range;
    }
    t
}

fn between(level: &str, lo: &str, hi: &str) -> Json {
    json!({"level": level, "op": "between", "values": [lo, hi]})
}

fn cases(cube: &Cube) -> Vec<Case> {
    let ids: Vec<String> = {
        let model = cube.model();
        let id = model.level("customer.id").expect("customer.id");
        cube.members(id).names.iter().take(400).cloned().collect()
    };
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    vec![
        Case {
            kind: "meta",
            ..case("meta lists the cube", Json::Null, Json::Null)
        },
        case(
            "measures by a dimension, in Cube's default order",
            json!({"measures": [m("fee_income"), m("txn_count")], "dimensions": [m("region_province")]}),
            json!({"measures": ["fee_income", "txn_count"], "rows": ["region.province"],
                   "order": [{"by": "fee_income", "dir": "desc"}]}),
        )
        .ordered(),
        case(
            "a month series over an absolute date range",
            json!({"measures": [m("txn_amount")], "timeDimensions": [td(Some("month"), json!(["2025-01-01", "2025-06-30"]))]}),
            json!({"measures": ["txn_amount"], "rows": ["time.month"],
                   "filters": [between("time.month", "2025-01", "2025-06")]}),
        )
        .ordered(),
        case(
            "quarters of this year",
            json!({"measures": [m("txn_amount"), m("fee_income")], "timeDimensions": [td(Some("quarter"), json!("this year"))]}),
            json!({"measures": ["txn_amount", "fee_income"], "rows": ["time.quarter"],
                   "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}),
        )
        .ordered(),
        case(
            "a granularity written as a dimension",
            json!({"measures": [m("txn_count"), m("active_customers")], "dimensions": [m("time.year")]}),
            json!({"measures": ["txn_count", "active_customers"], "rows": ["time.year"]}),
        )
        .ordered(),
        case(
            "the last 6 months (before the latest month in the data)",
            json!({"measures": [m("txn_count")], "timeDimensions": [td(Some("month"), json!("last 6 months"))]}),
            json!({"measures": ["txn_count"], "rows": ["time.month"],
                   "filters": [between("time.month", "2025-06", "2025-11")]}),
        )
        .ordered(),
        case(
            "last quarter as a date range without granularity",
            json!({"measures": [m("fee_income")], "dimensions": [m("channel_channel")],
                   "timeDimensions": [td(None, json!("last quarter"))]}),
            json!({"measures": ["fee_income"], "rows": ["channel.channel"],
                   "filters": [{"level": "time.quarter", "op": "eq", "value": "2025-Q3"}],
                   "order": [{"by": "fee_income", "dir": "desc"}]}),
        )
        .ordered(),
        case(
            "last year by quarter",
            json!({"measures": [m("interest_margin")], "timeDimensions": [td(Some("quarter"), json!("last year"))]}),
            json!({"measures": ["interest_margin"], "rows": ["time.quarter"],
                   "filters": [{"level": "time.year", "op": "eq", "value": "2024"}]}),
        )
        .ordered(),
        Case {
            native: vec![
                json!({"measures": ["fee_income"], "rows": ["time.month"],
                       "filters": [between("time.month", "2024-01", "2024-06")]}),
                json!({"measures": ["fee_income"], "rows": ["time.month"],
                       "filters": [between("time.month", "2025-01", "2025-06")]}),
            ],
            labels: vec![
                "2024-01-01T00:00:00.000 - 2024-06-30T23:59:59.999",
                "2025-01-01T00:00:00.000 - 2025-06-30T23:59:59.999",
            ],
            ..case(
                "compareDateRange: one result per range",
                json!({"measures": [m("fee_income")], "timeDimensions": [{"dimension": m("time"), "granularity": "month",
                       "compareDateRange": [["2024-01-01", "2024-06-30"], ["2025-01-01", "2025-06-30"]]}]}),
                Json::Null,
            )
            .ordered()
        },
        case(
            "equals",
            json!({"measures": [m("txn_count")], "dimensions": [m("product_category")],
                   "filters": [f("channel_channel", "equals", &["mobile"])]}),
            json!({"measures": ["txn_count"], "rows": ["product.category"],
                   "filters": [{"level": "channel.channel", "op": "eq", "value": "mobile"}]}),
        ),
        case(
            "notEquals",
            json!({"measures": [m("txn_amount")], "dimensions": [m("channel_channel")],
                   "filters": [f("channel_channel", "notEquals", &["ATM"])]}),
            json!({"measures": ["txn_amount"], "rows": ["channel.channel"],
                   "filters": [{"level": "channel.channel", "op": "not_in", "values": ["ATM"]}]}),
        ),
        case(
            "in",
            json!({"measures": [m("fee_income")], "dimensions": [m("region_city")],
                   "filters": [f("region_province", "in", &["Zhejiang", "Jiangsu"])]}),
            json!({"measures": ["fee_income"], "rows": ["region.city"],
                   "filters": [{"level": "region.province", "op": "in", "values": ["Zhejiang", "Jiangsu"]}]}),
        ),
        case(
            "notIn",
            json!({"measures": [m("deposit_balance")], "dimensions": [m("customer_segment")],
                   "filters": [f("customer_segment", "notIn", &["mass", "affluent"])]}),
            json!({"measures": ["deposit_balance"], "rows": ["customer.segment"],
                   "filters": [{"level": "customer.segment", "op": "not_in", "values": ["mass", "affluent"]}]}),
        ),
        case(
            "contains, ignoring case",
            json!({"measures": [m("txn_amount")], "dimensions": [m("product_product")],
                   "filters": [f("product_product", "contains", &["LOAN"])]}),
            json!({"measures": ["txn_amount"], "rows": ["product.product"],
                   "filters": [{"level": "product.product", "op": "search", "value": "loan"}]}),
        ),
        case(
            "notContains",
            json!({"measures": [m("txn_count")], "dimensions": [m("product_category")],
                   "filters": [f("product_product", "notContains", &["card"])]}),
            json!({"measures": ["txn_count"], "rows": ["product.category"],
                   "filters": [{"level": "product.product", "op": "not_in",
                                "values": ["Classic Credit Card", "Platinum Credit Card", "Corporate Card"]}]}),
        ),
        case(
            "startsWith",
            json!({"measures": [m("txn_count")], "dimensions": [m("region_city")],
                   "filters": [f("region_city", "startsWith", &["Wu"])]}),
            json!({"measures": ["txn_count"], "rows": ["region.city"],
                   "filters": [{"level": "region.city", "op": "prefix", "value": "Wu"}]}),
        ),
        case(
            "notStartsWith",
            json!({"measures": [m("txn_count")], "dimensions": [m("region_province")],
                   "filters": [f("region_city", "notStartsWith", &["S"])]}),
            json!({"measures": ["txn_count"], "rows": ["region.province"],
                   "filters": [{"level": "region.city", "op": "not_in", "values": ["Shaoxing", "Suzhou", "Shenzhen"]}]}),
        ),
        case(
            "endsWith",
            json!({"measures": [m("fee_income")], "dimensions": [m("region_city")],
                   "filters": [f("region_city", "endsWith", &["zhou"])]}),
            json!({"measures": ["fee_income"], "rows": ["region.city"],
                   "filters": [{"level": "region.city", "op": "in",
                                "values": ["Hangzhou", "Wenzhou", "Suzhou", "Guangzhou"]}]}),
        ),
        case(
            "notEndsWith",
            json!({"measures": [m("fee_income")], "dimensions": [m("region_province")],
                   "filters": [f("region_city", "notEndsWith", &["zhou"])]}),
            json!({"measures": ["fee_income"], "rows": ["region.province"],
                   "filters": [{"level": "region.city", "op": "not_in",
                                "values": ["Hangzhou", "Wenzhou", "Suzhou", "Guangzhou"]}]}),
        ),
        case(
            "gt and lte on measures",
            json!({"measures": [m("fee_income"), m("txn_count")], "dimensions": [m("region_city")],
                   "filters": [f("txn_count", "gt", &["600"]), f("fee_income", "lte", &["400000"])]}),
            json!({"measures": ["fee_income", "txn_count"], "rows": ["region.city"],
                   "having": [{"measure": "txn_count", "op": "gt", "value": 600},
                              {"measure": "fee_income", "op": "le", "value": 400000}]}),
        ),
        case(
            "gte and lt on a measure not asked for",
            json!({"measures": [m("txn_amount")], "dimensions": [m("region_city")],
                   "filters": [f("txn_count", "gte", &["500"]), f("txn_count", "lt", &["1500"])]}),
            json!({"measures": ["txn_amount", "txn_count"], "rows": ["region.city"],
                   "having": [{"measure": "txn_count", "op": "ge", "value": 500},
                              {"measure": "txn_count", "op": "lt", "value": 1500}]}),
        )
        .hidden(&["txn_count"]),
        case(
            "gte and lt on bands follow band order",
            json!({"measures": [m("customers")], "dimensions": [m("customer_age_band")],
                   "filters": [f("customer_age_band", "gte", &["35-44"]), f("customer_age_band", "lt", &["65+"])]}),
            json!({"measures": ["customers"], "rows": ["customer.age_band"],
                   "filters": [between("customer.age_band", "35-44", "55-64")]}),
        ),
        case(
            "set",
            json!({"measures": [m("customers")], "dimensions": [m("customer_age_band")],
                   "filters": [{"member": m("customer_age_band"), "operator": "set"}]}),
            json!({"measures": ["customers"], "rows": ["customer.age_band"],
                   "filters": [{"level": "customer.age_band", "op": "not_in", "values": ["unknown"]}]}),
        ),
        case(
            "notSet is the unknown member, answered as null",
            json!({"measures": [m("customers")], "dimensions": [m("customer_segment"), m("customer_age_band")],
                   "filters": [{"member": m("customer_age_band"), "operator": "notSet"}]}),
            json!({"measures": ["customers"], "rows": ["customer.segment", "customer.age_band"],
                   "filters": [{"level": "customer.age_band", "op": "eq", "value": "unknown"}]}),
        ),
        case(
            "inDateRange as a filter",
            json!({"measures": [m("txn_count")], "dimensions": [m("product_category")],
                   "filters": [f("time", "inDateRange", &["2024-04-01", "2024-06-30"])]}),
            json!({"measures": ["txn_count"], "rows": ["product.category"],
                   "filters": [{"level": "time.quarter", "op": "eq", "value": "2024-Q2"}]}),
        ),
        case(
            "notInDateRange",
            json!({"measures": [m("txn_count")], "timeDimensions": [td(Some("quarter"), Json::Null)],
                   "filters": [f("time", "notInDateRange", &["2024-01-01", "2024-12-31"])]}),
            json!({"measures": ["txn_count"], "rows": ["time.quarter"],
                   "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}),
        )
        .ordered(),
        case(
            "beforeDate and afterDate",
            json!({"measures": [m("fee_income")], "dimensions": [m("channel_channel")],
                   "filters": [f("time", "beforeDate", &["2024-07-01"]), f("time", "afterDate", &["2024-02-29"])]}),
            json!({"measures": ["fee_income"], "rows": ["channel.channel"],
                   "filters": [between("time.month", "2024-03", "2024-06")]}),
        ),
        case(
            "beforeOrOnDate and afterOrOnDate",
            json!({"measures": [m("txn_amount")], "dimensions": [m("customer_segment")],
                   "filters": [f("time", "afterOrOnDate", &["2024-10-01"]), f("time", "beforeOrOnDate", &["2024-12-31"])]}),
            json!({"measures": ["txn_amount"], "rows": ["customer.segment"],
                   "filters": [{"level": "time.quarter", "op": "eq", "value": "2024-Q4"}]}),
        ),
        case(
            "onTheDate over a whole month",
            json!({"measures": [m("txn_count")], "dimensions": [m("channel_channel")],
                   "filters": [f("time", "onTheDate", &["2025-03-01", "2025-03-31"])]}),
            json!({"measures": ["txn_count"], "rows": ["channel.channel"],
                   "filters": [{"level": "time.month", "op": "eq", "value": "2025-03"}]}),
        ),
        case(
            "measureFilter (Lattice measures have no filters of their own)",
            json!({"measures": [m("fee_income")], "dimensions": [m("product_category")],
                   "filters": [{"member": m("fee_income"), "operator": "measureFilter"}]}),
            json!({"measures": ["fee_income"], "rows": ["product.category"]}),
        ),
        case(
            "nested and/or: an or on one dimension is a union",
            json!({"measures": [m("txn_count")], "dimensions": [m("region_province"), m("channel_channel")],
                   "filters": [{"and": [
                       {"or": [f("region_province", "equals", &["Zhejiang"]),
                               {"and": [f("region_province", "startsWith", &["J"]),
                                        f("region_province", "notEquals", &["Jiangxi"])]}]},
                       f("channel_channel", "notEquals", &["counter"])]}]}),
            json!({"measures": ["txn_count"], "rows": ["region.province", "channel.channel"],
                   "filters": [{"level": "region.province", "op": "in", "values": ["Zhejiang", "Jiangsu"]},
                               {"level": "channel.channel", "op": "not_in", "values": ["counter"]}]}),
        ),
        case(
            "order as an object, limit and offset",
            json!({"measures": [m("txn_amount")], "dimensions": [m("region_province"), m("channel_channel")],
                   "order": {m("region_province"): "asc", m("txn_amount"): "desc"}, "limit": 5, "offset": 2}),
            json!({"measures": ["txn_amount"], "rows": ["region.province", "channel.channel"],
                   "order": [{"by": "region.province", "dir": "asc"}, {"by": "txn_amount", "dir": "desc"}],
                   "limit": 5, "offset": 2}),
        )
        .ordered(),
        case(
            "order as an array, with the total before the limit",
            json!({"measures": [m("txn_count")], "dimensions": [m("region_city")],
                   "order": [[m("txn_count"), "asc"]], "limit": 4, "total": true}),
            json!({"measures": ["txn_count"], "rows": ["region.city"],
                   "order": [{"by": "txn_count", "dir": "asc"}], "limit": 4}),
        )
        .ordered(),
        case(
            "a time zone is accepted (the calendar has none)",
            json!({"measures": [m("fee_income")], "timeDimensions": [td(Some("year"), Json::Null)], "timezone": "Asia/Shanghai"}),
            json!({"measures": ["fee_income"], "rows": ["time.year"]}),
        )
        .ordered(),
        case(
            "compact response format",
            json!({"measures": [m("txn_count"), m("fee_income")], "dimensions": [m("channel_channel")],
                   "timeDimensions": [td(Some("quarter"), json!(["2025-01-01", "2025-06-30"]))]}),
            json!({"measures": ["txn_count", "fee_income"], "rows": ["time.quarter", "channel.channel"],
                   "filters": [between("time.month", "2025-01", "2025-06")]}),
        )
        .format("compact"),
        case(
            "columnar response format",
            json!({"measures": [m("txn_count")], "dimensions": [m("product_category")]}),
            json!({"measures": ["txn_count"], "rows": ["product.category"]}),
        )
        .format("columnar"),
        case(
            "POST",
            json!({"measures": [m("loan_balance"), m("credit_line")], "dimensions": [m("customer_segment")]}),
            json!({"measures": ["loan_balance", "credit_line"], "rows": ["customer.segment"]}),
        )
        .method("POST"),
        case(
            "a long query: the client switches to POST by itself",
            json!({"measures": [m("txn_count")], "dimensions": [m("customer_segment")],
                   "filters": [f("customer_id", "in", &id_refs)]}),
            json!({"measures": ["txn_count"], "rows": ["customer.segment"],
                   "filters": [{"level": "customer.id", "op": "in", "values": ids}]}),
        ),
        case(
            "a Bearer token",
            json!({"measures": [m("products_held")], "dimensions": [m("customer_type")]}),
            json!({"measures": ["products_held"], "rows": ["customer.type"]}),
        )
        .token(format!("Bearer {TOKEN}")),
        case(
            "semi-additive balances by quarter",
            json!({"measures": [m("deposit_balance"), m("customers")], "timeDimensions": [td(Some("quarter"), json!("this year"))]}),
            json!({"measures": ["deposit_balance", "customers"], "rows": ["time.quarter"],
                   "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}),
        )
        .ordered(),
        case(
            "dimensions without measures: the member combinations with facts",
            json!({"dimensions": [m("region_province")]}),
            json!({"measures": ["txn_count", "deposit_balance"], "rows": ["region.province"],
                   "order": [{"by": "region.province", "dir": "asc"}]}),
        )
        .hidden(&["txn_count", "deposit_balance"])
        .ordered(),
        case(
            "a ratio measure",
            json!({"measures": [m("avg_ticket")], "dimensions": [m("customer_segment")]}),
            json!({"measures": ["avg_ticket"], "rows": ["customer.segment"]}),
        ),
        Case {
            kind: "dryRun",
            ..case(
                "dry run",
                json!({"measures": [m("fee_income")], "dimensions": [m("region_province")],
                       "timeDimensions": [td(None, json!("last 6 months"))]}),
                Json::Null,
            )
        },
        failing(
            "an or across dimensions",
            json!({"measures": [m("txn_count")], "filters": [{"or": [
                f("region_province", "equals", &["Zhejiang"]), f("channel_channel", "equals", &["ATM"])]}]}),
            400,
            "an `or` across different members (bank_crm.channel_channel, bank_crm.region_province)",
        ),
        failing(
            "a segment",
            json!({"measures": [m("txn_count")], "segments": [m("vip")]}),
            400,
            "segment 'bank_crm.vip' not found: cube 'bank_crm' has no segments",
        ),
        failing(
            "a date range inside a month",
            json!({"measures": [m("txn_count")], "timeDimensions": [td(Some("month"), json!(["2025-01-10", "2025-03-31"]))]}),
            400,
            "dateRange on 'bank_crm.time' covers part of the month 2025-01",
        ),
        failing(
            "onTheDate on one day",
            json!({"measures": [m("txn_count")], "filters": [f("time", "onTheDate", &["2025-03-14"])]}),
            400,
            "onTheDate on 'bank_crm.time' covers part of the month 2025-03",
        ),
        failing(
            "an ungrouped query",
            json!({"measures": [m("txn_count")], "ungrouped": true}),
            400,
            "ungrouped queries is not supported",
        ),
        failing(
            "a misspelt member",
            json!({"measures": [m("fee_incme")]}),
            400,
            "'bank_crm.fee_incme' not found (did you mean 'bank_crm.fee_income'?)",
        ),
        failing(
            "a granularity finer than the month",
            json!({"measures": [m("txn_count")], "timeDimensions": [td(Some("week"), Json::Null)]}),
            400,
            "granularity 'week' of 'bank_crm.time' is not available",
        ),
        failing(
            "a measure by a dimension its facts lack",
            json!({"measures": [m("deposit_balance")], "dimensions": [m("channel_channel")]}),
            400,
            "measure 'bank_crm.deposit_balance' does not vary by 'bank_crm.channel_channel'",
        ),
        failing(
            "data blending",
            json!([{"measures": [m("txn_count")]}, {"measures": [m("fee_income")]}]),
            400,
            "data blending (an array of 2 queries) is not supported",
        ),
        Case {
            token: Some("wrong".into()),
            ..failing(
                "a wrong token",
                json!({"measures": [m("txn_count")]}),
                403,
                "Invalid token",
            )
        },
    ]
}

/// `2025-Q2` -> `2025-04-01T00:00:00.000`: the test's own reading of time members.
fn iso(member: &str) -> String {
    let (year, rest) = member.split_at(4);
    let month = match rest {
        "" => 1,
        q if q.starts_with("-Q") => (q[2..].parse::<u32>().expect("quarter") - 1) * 3 + 1,
        mm => mm[1..].parse().expect("month"),
    };
    format!("{year}-{month:02}-01T00:00:00.000")
}

type Row = BTreeMap<String, Json>;

/// The native answer as the Cube rows it should become.
fn expected_rows(a: &Answer, c: &Case, label: Option<&str>) -> Vec<Row> {
    a.rows
        .iter()
        .map(|row| {
            let mut out = Row::new();
            let mut bare_done = false;
            for (col, v) in a.columns.iter().zip(row) {
                if col.kind == "measure" {
                    if !c.hidden.contains(&col.name.as_str()) {
                        out.insert(m(&col.name), v.clone());
                    }
                    continue;
                }
                let (dim, level) = col.name.split_once('.').expect("dim.level");
                let member = v.as_str().expect("a member name");
                if dim == "time" {
                    let t = json!(iso(member));
                    out.insert(format!("{C}.time.{level}"), t.clone());
                    // The bare `bank_crm.time` repeats the first granularity (default format).
                    if !bare_done && c.format.is_none() {
                        out.insert(m("time"), t);
                        bare_done = true;
                    }
                } else {
                    let value = if member == "unknown" {
                        Json::Null
                    } else {
                        json!(member)
                    };
                    out.insert(m(&format!("{dim}_{level}")), value);
                }
            }
            if let Some(l) = label {
                out.insert("compareDateRange".into(), json!(l));
            }
            out
        })
        .collect()
}

/// Whether the client's value is the engine's: exact decimals and integers as the same
/// text, ratios within rounding, members equal.
fn same(client: &Json, native: &Json) -> bool {
    match (client, native) {
        (Json::String(c), Json::Number(n)) if n.is_f64() => c
            .parse::<f64>()
            .is_ok_and(|c| (c - n.as_f64().unwrap()).abs() <= 1e-9 * c.abs().max(1.0)),
        (Json::String(c), Json::Number(n)) => *c == n.to_string(),
        (c, n) => c == n,
    }
}

fn rows_match(client: &[Row], native: &[Row], ordered: bool) -> Result<(), String> {
    if client.len() != native.len() {
        return Err(format!(
            "{} rows from the client, {} from the engine",
            client.len(),
            native.len()
        ));
    }
    // Unordered answers are compared after sorting both by their members.
    let key = |r: &Row| -> String {
        r.iter()
            .filter(|(k, _)| !is_measure_key(k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let (mut cs, mut ns): (Vec<&Row>, Vec<&Row>) =
        (client.iter().collect(), native.iter().collect());
    if !ordered {
        cs.sort_by_key(|r| key(r));
        ns.sort_by_key(|r| key(r));
    }
    for (i, (c, n)) in cs.iter().zip(&ns).enumerate() {
        let keys_c: Vec<&String> = c.keys().collect();
        let keys_n: Vec<&String> = n.keys().collect();
        if keys_c != keys_n {
            return Err(format!(
                "row {i}: keys {keys_c:?} from the client, {keys_n:?} expected"
            ));
        }
        for (k, nv) in n.iter() {
            if !same(&c[k], nv) {
                return Err(format!(
                    "row {i}, {k}: {} from the client, {nv} from the engine",
                    c[k]
                ));
            }
        }
    }
    Ok(())
}

fn is_measure_key(k: &str) -> bool {
    const MEASURES: [&str; 11] = [
        "txn_amount",
        "txn_count",
        "fee_income",
        "active_customers",
        "avg_ticket",
        "deposit_balance",
        "loan_balance",
        "credit_line",
        "interest_margin",
        "customers",
        "products_held",
    ];
    k.strip_prefix("bank_crm.")
        .is_some_and(|m| MEASURES.contains(&m))
}

fn num(v: &Json) -> f64 {
    match v {
        Json::String(s) => s.parse().expect("a number"),
        Json::Number(n) => n.as_f64().expect("a number"),
        Json::Null => 0.0,
        other => panic!("not a number: {other}"),
    }
}

/// `tablePivot`, `chartPivot` and `series` agree with the data they pivot.
fn check_pivots(c: &Case, out: &Json, expected: &[Vec<Row>]) -> Result<(), String> {
    let measures: Vec<String> = c.cube["measures"]
        .as_array()
        .map(|a| a.iter().map(|m| m.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let chart = out["chartPivot"].as_array().ok_or("no chartPivot")?;
    let series = out["series"].as_array().ok_or("no series")?;
    let table = out["tablePivot"].as_array().ok_or("no tablePivot")?;
    // Every series is one column of chartPivot.
    for s in series {
        let key = s["key"].as_str().ok_or("a series without a key")?;
        let points = s["series"].as_array().ok_or("a series without points")?;
        if points.len() != chart.len() {
            return Err(format!(
                "series {key}: {} points, chartPivot has {}",
                points.len(),
                chart.len()
            ));
        }
        for (p, row) in points.iter().zip(chart) {
            if p["x"] != row["x"] || p["value"] != row[key] {
                return Err(format!("series {key}: {p} is not {row}"));
            }
        }
    }
    let rows = c.native[0]["rows"].as_array().cloned().unwrap_or_default();
    let is_time = |l: &Json| l.as_str().is_some_and(|l| l.starts_with("time."));
    let time_rows = rows.len() == 1 && is_time(&rows[0]);
    let any_time = rows.iter().any(is_time);
    if time_rows && !measures.is_empty() {
        // A time series: chartPivot has one point per period (each range of a comparison
        // side by side), each measure's value parsed as a number.
        let (label_keys, first): (Vec<String>, &[Row]) = if c.labels.is_empty() {
            (measures.clone(), &expected[0])
        } else {
            (
                c.labels
                    .iter()
                    .flat_map(|l| measures.iter().map(move |m| format!("{l},{m}")))
                    .collect(),
                &expected[0],
            )
        };
        if chart.len() != first.len() {
            return Err(format!(
                "chartPivot has {} points, the engine {} periods",
                chart.len(),
                first.len()
            ));
        }
        let time_key = c.native[0]["rows"][0]
            .as_str()
            .unwrap()
            .replace("time.", &format!("{C}.time."));
        for (i, point) in chart.iter().enumerate() {
            if point["x"] != first[i][&time_key] {
                return Err(format!(
                    "chartPivot point {i}: x {} is not {}",
                    point["x"], first[i][&time_key]
                ));
            }
            for (j, key) in label_keys.iter().enumerate() {
                let result = if c.labels.is_empty() {
                    0
                } else {
                    j / measures.len()
                };
                let measure = &measures[j % measures.len()];
                let want = num(&expected[result][i][measure]);
                let got = num(&point[key]);
                if (got - want).abs() > 1e-6 * want.abs().max(1.0) {
                    return Err(format!(
                        "chartPivot point {i}, {key}: {got}, the engine {want}"
                    ));
                }
            }
        }
        if series.len() != label_keys.len() {
            return Err(format!(
                "{} series for {} measures",
                series.len(),
                label_keys.len()
            ));
        }
    } else if !any_time && c.labels.is_empty() {
        // Without time: tablePivot is the data itself, row for row.
        let rows: Vec<Row> = table
            .iter()
            .map(|r| r.as_object().unwrap().clone().into_iter().collect())
            .collect();
        let data: Vec<Row> = out["results"][0]["data"]
            .as_array()
            .ok_or("no data")?
            .iter()
            .map(|r| r.as_object().unwrap().clone().into_iter().collect())
            .collect();
        rows_match(&rows, &data, true).map_err(|e| format!("tablePivot: {e}"))?;
    }
    Ok(())
}

fn check_meta(out: &Json, version: u64) -> Result<(), String> {
    let cube = &out["cubes"][0];
    let names = |k: &str| -> Vec<String> {
        cube[k].as_array().map_or(Vec::new(), |a| {
            a.iter()
                .map(|m| m["name"].as_str().unwrap_or("").to_string())
                .collect()
        })
    };
    let want = |cond: bool, what: &str| {
        if cond {
            Ok(())
        } else {
            Err(format!("meta: {what}: {out}"))
        }
    };
    want(cube["name"] == C && cube["type"] == "cube", "the cube")?;
    want(
        // bank_crm's 14 measures, the allocated cost and contribution among them.
        names("measures").len() == 14
            && names("measures").contains(&m("fee_income"))
            && names("measures").contains(&m("contribution")),
        "measures",
    )?;
    want(
        names("dimensions").contains(&m("region_province")),
        "levels",
    )?;
    want(
        names("dimensions").contains(&m("customer_deposit_band")),
        "bands",
    )?;
    want(cube["segments"] == json!([]), "segments")?;
    let time = cube["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == m("time"));
    want(
        time.is_some_and(|t| {
            t["type"] == "time"
                && t["granularities"].as_array().is_some_and(|g| {
                    g.iter().map(|x| x["name"].clone()).collect::<Vec<_>>()
                        == [json!("year"), json!("quarter"), json!("month")]
                })
        }),
        "the time dimension",
    )?;
    want(
        cube["hierarchies"].as_array().is_some_and(|h| {
            h.iter().any(|x| {
                x["name"] == m("region")
                    && x["levels"]
                        == json!([m("region_province"), m("region_city"), m("region_branch")])
            })
        }),
        "the region hierarchy",
    )?;
    want(
        out["compilerId"] == json!(version.to_string()),
        "compilerId",
    )?;
    want(
        out["resolved"]["title"] == "Bank Crm Fee Income",
        "resolveMember",
    )?;
    want(
        out["timeDimensions"] == json!([m("time")]),
        "time dimensions",
    )?;
    want(
        out["operators"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("contains"))),
        "operators",
    )?;
    Ok(())
}

fn check_dry_run(out: &Json) -> Result<(), String> {
    let d = &out["dryRun"];
    let want = |cond: bool, what: &str| {
        if cond {
            Ok(())
        } else {
            Err(format!("dry run: {what}: {d}"))
        }
    };
    want(d["queryType"] == "regularQuery", "queryType")?;
    want(
        d["normalizedQueries"][0]["timeDimensions"][0]["dateRange"]
            == json!(["2025-06-01T00:00:00.000", "2025-11-30T23:59:59.999"]),
        "the relative range resolved",
    )?;
    want(
        d["queryOrder"] == json!([{m("fee_income"): "desc"}]),
        "the default order",
    )?;
    want(
        d["nativeQueries"][0]["filters"]
            == json!([{"level": "time.month", "op": "between", "value": null, "values": ["2025-06", "2025-11"]}]),
        "the native query",
    )?;
    Ok(())
}

async fn run_node(dir: &Path, url: &str, spec: &Json) -> Option<Vec<Json>> {
    let node = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await;
    if !node.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED cubejs client tests: `node` is not installed (the Cube client runs on Node.js 20+)"
        );
        return None;
    }
    if !dir
        .join("node_modules/@cubejs-client/core/package.json")
        .exists()
    {
        let out = tokio::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .output()
            .await
            .expect("npm runs");
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), spec.to_string()).expect("write cases");
    let out = tokio::process::Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(url)
        .arg(file.path())
        .output()
        .await
        .expect("node runs");
    assert!(
        out.status.success(),
        "node run.mjs failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Json> = serde_json::from_slice(&out.stdout).expect("run.mjs prints JSON");
    Some(results)
}

/// The cases, and what the client made of each: one Node run for the whole test binary.
struct ClientRun {
    cube: Arc<Dataset>,
    cases: Vec<Case>,
    results: Vec<Json>,
}

/// Serves the Cube API on a socket while `node tests/cubejs/run.mjs` asks every case, once per
/// test binary; `None` when `node` is not installed (the reason is printed). The server stops
/// before the run is returned, so the runtime it ran on may end with the first test.
async fn client_run() -> Option<&'static ClientRun> {
    static RUN: OnceCell<Option<ClientRun>> = OnceCell::const_new();
    RUN.get_or_init(|| async {
        let started = Instant::now();
        let cube = cube().await;
        let cases = cases(&cube);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(cubejs::serve(
            listener,
            Arc::new(Source(cube.clone())),
            Some(TOKEN.into()),
            async {
                let _ = stopped.await;
            },
        ));

        let spec = json!({
            "token": TOKEN,
            "cases": cases.iter().map(|c| {
                let mut j = json!({"name": c.name, "kind": c.kind, "query": c.cube});
                if let Some(mth) = c.method { j["method"] = json!(mth); }
                if let Some(fm) = c.format { j["responseFormat"] = json!(fm); }
                if let Some(t) = &c.token { j["token"] = json!(t); }
                j
            }).collect::<Vec<_>>(),
        });
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cubejs");
        let outcome = run_node(&dir, &url, &spec).await;
        let _ = stop.send(());
        server.await.expect("server task").expect("server");
        let results = outcome?;
        eprintln!(
            "cubejs: {} client requests in {:.1}s",
            cases.len(),
            started.elapsed().as_secs_f64()
        );
        Some(ClientRun {
            cube,
            cases,
            results,
        })
    })
    .await
    .as_ref()
}

/// Checks what the client made of each case `which` picks; fails with every failure listed.
/// The number of cases checked.
async fn check_cases(run: &ClientRun, which: impl Fn(&Case) -> bool) -> usize {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (c, out) in run.cases.iter().zip(&run.results).filter(|(c, _)| which(c)) {
        checked += 1;
        if let Err(e) = check(c, out, &run.cube).await {
            failures.push(format!("{}: {e}\n  cube query: {}", c.name, c.cube));
        }
    }
    assert!(checked > 0, "no case of this kind");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    checked
}

/// Whether the client should get an answer the engine's native twin gives: a `load` case (or
/// any other that is neither `meta` nor `dryRun`) that expects no error.
fn compared(c: &Case) -> bool {
    c.error.is_none() && c.kind != "meta" && c.kind != "dryRun"
}

#[tokio::test]
async fn the_client_gets_one_result_for_each_of_at_least_25_cases() {
    let Some(run) = client_run().await else {
        return;
    };
    assert_eq!(run.results.len(), run.cases.len(), "one result per case");
    assert!(run.cases.len() >= 25);
}

#[tokio::test]
async fn every_load_gets_the_native_answer_and_its_pivots() {
    let Some(run) = client_run().await else {
        return;
    };
    let compared = check_cases(run, compared).await;
    eprintln!("cubejs: {compared} answers compared with the engine");
    assert!(compared >= 25);
}

#[tokio::test]
async fn meta_describes_the_cube_as_the_client_expects() {
    let Some(run) = client_run().await else {
        return;
    };
    check_cases(run, |c| c.error.is_none() && c.kind == "meta").await;
}

#[tokio::test]
async fn a_dry_run_resolves_the_range_the_order_and_the_native_query() {
    let Some(run) = client_run().await else {
        return;
    };
    check_cases(run, |c| c.error.is_none() && c.kind == "dryRun").await;
}

#[tokio::test]
async fn errors_reach_the_client_with_their_status_and_message() {
    let Some(run) = client_run().await else {
        return;
    };
    check_cases(run, |c| c.error.is_some()).await;
}

async fn check(c: &Case, out: &Json, cube: &Arc<Dataset>) -> Result<(), String> {
    if let Some((status, message)) = c.error {
        if out["ok"] == true {
            return Err(format!("expected an error, the client got {out}"));
        }
        let got = out["error"].as_str().unwrap_or("");
        if out["status"] != json!(status) || !got.contains(message) {
            return Err(format!(
                "expected {status} with '{message}', got {} '{got}'",
                out["status"]
            ));
        }
        return Ok(());
    }
    if out["ok"] != true {
        return Err(format!(
            "the client failed: {} {}",
            out["status"], out["error"]
        ));
    }
    match c.kind {
        "meta" => return check_meta(out, cube.version),
        "dryRun" => return check_dry_run(out),
        _ => {}
    }
    let results = out["results"].as_array().ok_or("no results")?;
    if results.len() != c.native.len() {
        return Err(format!(
            "{} results, expected {}",
            results.len(),
            c.native.len()
        ));
    }
    let mut expected = Vec::new();
    for (i, (native, result)) in c.native.iter().zip(results).enumerate() {
        let q: Query =
            serde_json::from_value(native.clone()).map_err(|e| format!("native query: {e}"))?;
        let a = cube
            .session(Access::everything())
            .query(&q)
            .await
            .map_err(|e| format!("native query {native}: {e}"))?;
        let want = expected_rows(&a, c, c.labels.get(i).copied());
        let data: Vec<Row> = result["data"]
            .as_array()
            .ok_or("no data")?
            .iter()
            .map(|r| r.as_object().unwrap().clone().into_iter().collect())
            .collect();
        rows_match(&data, &want, c.ordered).map_err(|e| format!("result {i}: {e}"))?;
        if c.cube["total"] == true && result["total"] != json!(a.meta.total_rows) {
            return Err(format!(
                "total {} is not the engine's {}",
                result["total"], a.meta.total_rows
            ));
        }
        if want.is_empty() {
            return Err("the engine's answer is empty: the case checks nothing".into());
        }
        expected.push(want);
    }
    let query_type = if c.labels.is_empty() {
        "regularQuery"
    } else {
        "compareDateRangeQuery"
    };
    if out["queryType"] != query_type || out["pivotQuery"]["queryType"] != query_type {
        return Err(format!(
            "queryType {} / {}",
            out["queryType"], out["pivotQuery"]["queryType"]
        ));
    }
    if let Some(tz) = c.cube.get("timezone")
        && results[0]["query"]["timezone"] != *tz
    {
        return Err(format!("timezone not echoed: {}", results[0]["query"]));
    }
    check_pivots(c, out, &expected)
}
