//! The translation on a small hand-made cube (every number below can be checked by eye), and
//! the routes through `Router::oneshot`.
//!
//! Sales (2024-11 .. 2025-04), by customer and channel:
//!
//! ```text
//! day         customer  channel  amount
//! 2024-11-10  1 Ann     web       10.00
//! 2024-12-05  2 Bob     store     20.00
//! 2025-01-15  1 Ann     store     30.00
//! 2025-02-20  3 Cid     web       40.00
//! 2025-03-01  4 Dee     web        5.50
//! 2025-04-30  2 Bob     web      100.00
//! ```
//!
//! Customers: Ann (Oslo, 25), Bob (Bergen, 40), Cid (Oslo, 70), Dee (no city, no age).

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use lattice_engine::access::Access;
use lattice_engine::query::{Dataset, Query};
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::request::{QueryParam, parse_query};
use super::translate::{QueryType, Translation, translate};
use super::*;

const YAML: &str = r#"
version: 1
cube: shop
sources:
  customers: { path: customers.csv }
  channels:  { path: channels.csv }
  sales:     { path: sales.csv }
  stock:     { path: stock.csv }
facts:
  sales: { time: day, dimensions: [customer, channel] }
  stock: { time: month, dimensions: [customer] }
dimensions:
  time: { type: time, hierarchy: [year, quarter, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      name:     { column: name }
      city:     { column: city }
      age_band: { bucket: { column: age, edges: [30, 50], labels: ["young", "mid", "old"] } }
  channel:
    table: channels
    key: channel_id
    levels:
      channel: { column: channel }
measures:
  amount:      { fact: sales, agg: sum, column: amount, format: money }
  sales_count: { fact: sales, agg: count }
  avg_sale:    { expr: amount / sales_count }
  stock:       { fact: stock, agg: sum, column: units, over_time: last }
"#;

const FILES: &[(&str, &str)] = &[
    (
        "customers.csv",
        "customer_id,name,city,age\n1,Ann,Oslo,25\n2,Bob,Bergen,40\n3,Cid,Oslo,70\n4,Dee,,\n",
    ),
    ("channels.csv", "channel_id,channel\n1,web\n2,store\n"),
    (
        "sales.csv",
        "day,customer_id,channel_id,amount\n\
         2024-11-10,1,1,10.00\n\
         2024-12-05,2,2,20.00\n\
         2025-01-15,1,2,30.00\n\
         2025-02-20,3,1,40.00\n\
         2025-03-01,4,1,5.50\n\
         2025-04-30,2,1,100.00\n",
    ),
    (
        "stock.csv",
        "month,customer_id,units\n2025-03-01,1,7\n2025-04-01,1,9\n2025-04-01,2,1\n",
    ),
];

fn cube() -> Arc<Dataset> {
    static CUBE: OnceLock<Arc<Dataset>> = OnceLock::new();
    CUBE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("lattice-cubejs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, text) in FILES {
            std::fs::write(dir.join(name), text).expect("write");
        }
        let model = lattice_defs::parse_str(YAML, "shop.yaml", &dir).expect("definition");
        // Built on a thread and runtime of its own: the cube is shared by tests that each run
        // their own runtime, and a runtime cannot be started inside another.
        let build = move || {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(async {
                let sources = lattice_engine::source::load::load(&model)
                    .await
                    .expect("load");
                lattice_engine::open(
                    &model,
                    &sources,
                    &lattice_engine::build::BuildOptions::default(),
                )
                .await
                .expect("build")
            })
        };
        Arc::new(std::thread::spawn(build).join().expect("build thread"))
    })
    .clone()
}

fn tr(q: Json) -> Result<Translation, CubeJsError> {
    let QueryParam::One(q) = parse_query(&q.to_string())? else {
        panic!("one query")
    };
    let cube = cube();
    let cat = Catalog::new("shop", &cube);
    translate(&cat, &q)
}

/// The native query of a Cube query, as JSON (without the limit, the same everywhere).
fn native(q: Json) -> Json {
    let t = tr(q).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.plans.len(), 1);
    let mut n = json!(t.plans[0].native);
    let o = n.as_object_mut().unwrap();
    assert_eq!(o.remove("limit"), Some(json!(10_000)));
    for k in ["columns", "totals", "compare", "explain"] {
        o.remove(k);
    }
    n
}

fn err(q: Json) -> String {
    match tr(q) {
        Ok(t) => panic!("expected an error, got {:?}", t.plans[0].native),
        Err(e) => {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
            e.to_string()
        }
    }
}

#[test]
fn measures_dimensions_and_the_default_order() {
    assert_eq!(
        native(json!({"measures": ["shop.amount"], "dimensions": ["shop.customer_city"]})),
        json!({"measures": ["amount"], "rows": ["customer.city"], "filters": [], "having": [],
               "order": [{"by": "amount", "dir": "desc"}], "offset": 0})
    );
    // A granularity orders by time; `order: []` opts out of ordering.
    let n = native(json!({"measures": ["shop.amount"],
        "timeDimensions": [{"dimension": "shop.time", "granularity": "quarter"}], "order": []}));
    assert_eq!(n["rows"], json!(["time.quarter"]));
    assert_eq!(n["order"], json!([]));
    let n = native(json!({"measures": ["shop.amount"], "dimensions": ["shop.time.month"]}));
    assert_eq!(n["rows"], json!(["time.month"]));
    assert_eq!(n["order"], json!([{"by": "time.month", "dir": "asc"}]));
}

#[test]
fn text_operators_are_member_sets() {
    let f = |filter: Json| {
        native(json!({"measures": ["shop.amount"], "filters": [filter]}))["filters"].clone()
    };
    // Case-insensitive, as Cube's ILIKE.
    assert_eq!(
        f(json!({"member": "shop.customer_name", "operator": "contains", "values": ["N"]})),
        json!([{"level": "customer.name", "op": "in", "value": null, "values": ["Ann"]}])
    );
    assert_eq!(
        f(json!({"member": "shop.customer_name", "operator": "startsWith", "values": ["a", "b"]})),
        json!([{"level": "customer.name", "op": "in", "value": null, "values": ["Ann", "Bob"]}])
    );
    // A negation keeps the empty member (Cube adds OR col IS NULL).
    let n = f(json!({"member": "shop.customer_city", "operator": "notEquals", "values": ["Oslo"]}));
    assert_eq!(n[0]["op"], "not_in");
    assert_eq!(n[0]["values"], json!(["Oslo"]));
    assert_eq!(
        f(json!({"member": "shop.customer_city", "operator": "notSet"}))[0]["values"],
        json!(["unknown"])
    );
    // Nothing matches: a filter nothing passes, not an error.
    let n = f(json!({"member": "shop.customer_name", "operator": "equals", "values": ["Zed"]}));
    assert_eq!(n[0]["op"], "search");
    // Bands compare in band order.
    assert_eq!(
        f(json!({"member": "shop.customer_age_band", "operator": "gte", "values": ["mid"]})),
        json!([{"level": "customer.age_band", "op": "between", "value": null, "values": ["mid", "old"]}])
    );
}

#[test]
fn or_on_one_level_is_a_union_and_across_levels_an_error() {
    let n = native(json!({"measures": ["shop.amount"], "filters": [{"or": [
        {"member": "shop.customer_name", "operator": "equals", "values": ["Ann"]},
        {"member": "shop.customer_name", "operator": "endsWith", "values": ["e"]}]}]}));
    assert_eq!(n["filters"][0]["values"], json!(["Ann", "Dee"]));
    let e = err(json!({"measures": ["shop.amount"], "filters": [{"or": [
        {"member": "shop.customer_name", "operator": "equals", "values": ["Ann"]},
        {"member": "shop.customer_city", "operator": "equals", "values": ["Oslo"]}]}]}));
    assert!(
        e.starts_with("an `or` across different members (shop.customer_city, shop.customer_name)"),
        "{e}"
    );
}

#[test]
fn date_ranges_select_whole_months() {
    let n = native(
        json!({"measures": ["shop.amount"], "timeDimensions": [{"dimension": "shop.time",
        "dateRange": ["2024-12-01", "2025-02-28"]}]}),
    );
    assert_eq!(
        n["filters"],
        json!([{"level": "time.month", "op": "between", "value": null, "values": ["2024-12", "2025-02"]}])
    );
    // Relative ranges count from the latest month in the cube (2025-04).
    let t = tr(
        json!({"measures": ["shop.amount"], "timeDimensions": [{"dimension": "shop.time",
        "granularity": "month", "dateRange": "last 3 months"}]}),
    )
    .unwrap();
    assert_eq!(
        json!(t.plans[0].native.filters[0].values),
        json!(["2025-01", "2025-03"])
    );
    assert_eq!(
        t.plans[0].normalized["timeDimensions"][0]["dateRange"],
        json!(["2025-01-01T00:00:00.000", "2025-03-31T23:59:59.999"])
    );
    let e = err(
        json!({"measures": ["shop.amount"], "timeDimensions": [{"dimension": "shop.time",
        "dateRange": ["2025-01-10", "2025-02-28"]}]}),
    );
    assert!(
        e.starts_with("dateRange on 'shop.time' covers part of the month 2025-01"),
        "{e}"
    );
    // Filter operators on the time dimension.
    let f = |op: &str, v: &str| {
        native(json!({"measures": ["shop.amount"],
            "filters": [{"member": "shop.time", "operator": op, "values": [v]}]}))["filters"][0]["values"]
            .clone()
    };
    assert_eq!(f("beforeDate", "2025-01-01"), json!(["2024-11", "2024-12"]));
    assert_eq!(f("afterDate", "2025-02-28"), json!(["2025-03", "2025-04"]));
    assert_eq!(
        f("beforeOrOnDate", "2024-12-31"),
        json!(["2024-11", "2024-12"])
    );
    assert_eq!(
        f("afterOrOnDate", "2025-04-01"),
        json!(["2025-04", "2025-04"])
    );
    let e = err(json!({"measures": ["shop.amount"],
        "filters": [{"member": "shop.time", "operator": "onTheDate", "values": ["2025-03-01"]}]}));
    assert!(e.contains("covers part of the month 2025-03"), "{e}");
}

#[test]
fn measure_filters_are_having_on_hidden_measures() {
    let t = tr(json!({"dimensions": ["shop.customer_name"], "filters": [
        {"member": "shop.amount", "operator": "gt", "values": ["25"]},
        {"member": "shop.sales_count", "operator": "measureFilter"}]}))
    .unwrap();
    let n = json!(t.plans[0].native);
    // No measure asked for: the filter's measure rides along, hidden, and finds the rows.
    assert_eq!(n["measures"], json!(["amount"]));
    assert_eq!(
        t.plans[0].outputs.last(),
        Some(&super::translate::Output::Hidden)
    );
    assert_eq!(
        n["having"],
        json!([{"measure": "amount", "op": "gt", "value": 25.0}])
    );
    assert_eq!(n["order"], json!([{"by": "customer.name", "dir": "asc"}]));
    // Without any: per fact that varies by the levels, one measure (its row count when it has
    // one) finds the rows where that fact has facts.
    let n = native(json!({"dimensions": ["shop.customer_name"]}));
    assert_eq!(n["measures"], json!(["sales_count", "stock"]));
    let n = native(json!({"dimensions": ["shop.channel_channel"]}));
    assert_eq!(n["measures"], json!(["sales_count"]));
    let e = err(json!({"measures": ["shop.amount"],
        "filters": [{"member": "shop.amount", "operator": "contains", "values": ["1"]}]}));
    assert!(e.contains("'contains' does not apply to a measure"), "{e}");
}

#[test]
fn compare_date_range_is_one_query_per_range() {
    let t = tr(json!({"measures": ["shop.amount"], "timeDimensions": [{"dimension": "shop.time",
        "granularity": "month", "compareDateRange": [["2024-11-01", "2024-12-31"], "last 2 months"]}]}))
    .unwrap();
    assert_eq!(t.query_type, QueryType::CompareDateRange);
    assert_eq!(t.plans.len(), 2);
    assert_eq!(
        t.plans[1].compare_label.as_deref(),
        Some("2025-02-01T00:00:00.000 - 2025-03-31T23:59:59.999")
    );
    assert_eq!(t.pivot_query["dimensions"], json!(["compareDateRange"]));
}

#[test]
fn unsupported_parts_are_named() {
    let q = |extra: Json| {
        let mut q = json!({"measures": ["shop.amount"]});
        q.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        err(q)
    };
    assert!(q(json!({"ungrouped": true})).starts_with("ungrouped queries is not supported"));
    assert_eq!(
        q(json!({"measurez": []})),
        "Invalid query format: \"measurez\" is not allowed"
    );
    assert_eq!(
        q(json!({"segments": ["shop.vip"]})),
        "segment 'shop.vip' not found: cube 'shop' has no segments"
    );
    assert!(q(json!({"limit": 50001})).contains("maximum of 50000"));
    assert!(
        q(json!({"timeDimensions": [{"dimension": "shop.time", "granularity": "week"}]}))
            .starts_with("granularity 'week' of 'shop.time' is not available; the cube's time dimension has year, quarter, month")
    );
    assert_eq!(
        err(json!({"measures": ["shop.amont"]})),
        "'shop.amont' not found (did you mean 'shop.amount'?)"
    );
    assert_eq!(
        err(json!({"measures": ["shop.stock"], "dimensions": ["shop.channel_channel"]})),
        "measure 'shop.stock' does not vary by 'shop.channel_channel' (its facts have no 'channel'); ask for them in separate queries"
    );
}

/// The same question asked natively and through the Cube API gives the same numbers.
#[tokio::test]
async fn answers_match_the_native_engine() {
    let cube = cube();
    let t = tr(json!({"measures": ["shop.amount", "shop.avg_sale"],
        "timeDimensions": [{"dimension": "shop.time", "granularity": "quarter"}],
        "filters": [{"member": "shop.channel_channel", "operator": "equals", "values": ["web"]}],
        "total": true}))
    .unwrap();
    let plan = &t.plans[0];
    let a = cube
        .session(Access::everything())
        .query(&plan.native)
        .await
        .unwrap();
    let r = response::result(plan, &a, "2026-01-01T00:00:00.000Z");
    let native: Query = serde_json::from_value(json!({"measures": ["amount", "avg_sale"],
        "rows": ["time.quarter"], "filters": [{"level": "channel.channel", "op": "eq", "value": "web"}]}))
    .unwrap();
    let n = cube
        .session(Access::everything())
        .query(&native)
        .await
        .unwrap();
    assert_eq!(r["data"].as_array().unwrap().len(), n.rows.len());
    assert_eq!(
        r["data"][0],
        json!({"shop.time.quarter": "2024-10-01T00:00:00.000", "shop.time": "2024-10-01T00:00:00.000",
               "shop.amount": "10.000000", "shop.avg_sale": "10"})
    );
    // CSV decimals are read at scale 6; the strings are the engine's exact decimals.
    assert_eq!(r["data"][2]["shop.amount"], n.rows[2][1]);
    assert_eq!(r["total"], json!(3));
}

async fn call(req: Request<Body>, token: Option<&str>) -> (StatusCode, Json) {
    let source: Arc<dyn CubeSource> = Arc::new(One(cube()));
    let app = router_with_token(source, token.map(str::to_string));
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

struct One(Arc<Dataset>);

impl CubeSource for One {
    fn cube_names(&self) -> Vec<String> {
        vec!["shop".into()]
    }
    fn cube(&self, name: &str) -> Option<Arc<Dataset>> {
        (name == "shop").then(|| self.0.clone())
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn meta_lists_members_under_cube_names() {
    let (status, meta) = call(get("/cubejs-api/v1/meta"), None).await;
    assert_eq!(status, StatusCode::OK);
    let c = &meta["cubes"][0];
    assert_eq!(
        (c["name"].clone(), c["type"].clone()),
        (json!("shop"), json!("cube"))
    );
    let names = |k: &str| -> Vec<String> {
        c[k].as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("measures"),
        [
            "shop.amount",
            "shop.sales_count",
            "shop.avg_sale",
            "shop.stock"
        ]
    );
    assert_eq!(
        names("dimensions"),
        [
            "shop.time",
            "shop.customer_name",
            "shop.customer_city",
            "shop.customer_age_band",
            "shop.channel_channel"
        ]
    );
    assert_eq!(
        c["dimensions"][0]["granularities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].clone())
            .collect::<Vec<_>>(),
        [json!("year"), json!("quarter"), json!("month")]
    );
    assert_eq!(c["measures"][0]["format"], json!("currency"));
    assert_eq!(c["segments"], json!([]));
    assert_eq!(meta["compilerId"], json!(cube().version.to_string()));
}

#[tokio::test]
async fn load_by_get_and_post_and_errors_as_the_client_expects() {
    let q = json!({"measures": ["shop.sales_count"], "dimensions": ["shop.channel_channel"]});
    let uri = format!(
        "/cubejs-api/v1/load?queryType=multi&query={}",
        q.to_string().replace('"', "%22").replace(' ', "%20")
    );
    let (status, body) = call(get(&uri), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queryType"], "regularQuery");
    assert_eq!(body["pivotQuery"]["queryType"], "regularQuery");
    assert_eq!(
        body["results"][0]["data"],
        json!([{"shop.channel_channel": "web", "shop.sales_count": "4"},
               {"shop.channel_channel": "store", "shop.sales_count": "2"}])
    );
    let post = Request::post("/cubejs-api/v1/load")
        .header("content-type", "application/json")
        .header("authorization", "Bearer s3cret")
        .body(Body::from(
            json!({"query": q, "queryType": "multi"}).to_string(),
        ))
        .unwrap();
    let (status, body2) = call(post, Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body2["results"][0]["data"], body["results"][0]["data"]);
    // Without queryType=multi, the single result alone.
    let (_, single) = call(get(&uri.replace("queryType=multi&", "")), None).await;
    assert_eq!(single["data"], body["results"][0]["data"]);

    let (status, e) = call(get("/cubejs-api/v1/load"), None).await;
    assert_eq!(
        (status, e),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Query param is required"})
        )
    );
    let (status, e) = call(get(&uri), Some("s3cret")).await;
    assert_eq!(
        (status, e),
        (
            StatusCode::FORBIDDEN,
            json!({"error": "Authorization header isn't set"})
        )
    );
    let (status, e) = call(get("/cubejs-api/v1/sql?query=%7B%7D"), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .starts_with("the /cubejs-api/v1/sql endpoint is not supported")
    );
    let (status, _) = call(get("/cubejs-api/v1/nope"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn dry_run_shows_the_native_query() {
    let q = json!({"measures": ["shop.amount"], "dimensions": ["shop.customer_city"], "order": {"shop.customer_city": "asc"}});
    let post = Request::post("/cubejs-api/v1/dry-run")
        .body(Body::from(json!({"query": q}).to_string()))
        .unwrap();
    let (status, body) = call(post, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["queryOrder"], json!([{"shop.customer_city": "asc"}]));
    assert_eq!(body["nativeQueries"][0]["rows"], json!(["customer.city"]));
    assert_eq!(
        body["normalizedQueries"][0]["order"],
        json!([{"id": "shop.customer_city", "desc": false}])
    );
}
