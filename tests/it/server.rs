//! The HTTP server end to end, over a real socket on 127.0.0.1: every route, every error
//! shape, hot reload (good and bad definitions, from a PUT and from an edit on disk, queries
//! during a swap), the limits (time, rows, queue, body size) and graceful shutdown.
//!
//! The tests that only read share one server, built once per test binary ([`shared`]); a
//! test that swaps a definition in, adds a cube, changes the limits or counts metrics starts
//! its own ([`start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use lattice_server::{Config, Limits, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::parquet_dir;

/// The shipped definition with the age bands changed: answers by `customer.age_band` differ.
fn two_age_bands() -> String {
    let yaml = lattice_defs::BANK_CRM_YAML.replace(
        "edges: [25, 35, 45, 55, 65]\n          labels: [\"<25\", \"25-34\", \"35-44\", \"45-54\", \"55-64\", \"65+\"]",
        "edges: [40]\n          labels: [\"under 40\", \"40 and over\"]",
    );
    assert_ne!(
        yaml,
        lattice_defs::BANK_CRM_YAML,
        "the age bands moved in bank_crm.yaml"
    );
    yaml
}

/// A server on a free port, serving bank_crm over the test data from a definitions folder.
struct TestServer {
    client: Client,
    defs: tempfile::TempDir,
    listening: crate::util::Listening,
}

/// Serving the definitions of `defs` over the test data, without watching the folder.
fn config_in(defs: &std::path::Path) -> Config {
    Config {
        definitions_dir: Some(defs.to_path_buf()),
        data_dir: Some(parquet_dir().to_path_buf()),
        watch_interval: None,
        ..Config::default()
    }
}

/// A server of the calling test's own, `tune`d, for a test that changes what it serves or
/// counts on exact metrics; it stops with [`TestServer::stop`].
async fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
    let defs = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_fallback_cube_in(defs.path()).await;
    let mut config = config_in(defs.path());
    tune(&mut config);
    let server = Server::new(config, vec![served]).expect("server");
    let listening = crate::util::listen(server).await;
    TestServer {
        client: Client {
            addr: listening.addr,
        },
        defs,
        listening,
    }
}

/// A response, as read off the socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error document's code, after checking the shape.
    #[track_caller]
    fn error(&self, status: u16, code: &str) -> Value {
        let body = self.json();
        assert_eq!(
            (self.status, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        let error = body["error"].as_object().expect("error object");
        let mut keys: Vec<_> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "details", "message"], "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body["error"].clone()
    }
}

/// Talks HTTP/1.1 to a test server; cheap to copy into client tasks.
#[derive(Debug, Clone, Copy)]
struct Client {
    addr: SocketAddr,
}

impl std::ops::Deref for TestServer {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    /// One request on its own connection (`Connection: close`).
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Reply {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.expect("send head");
        // A server may answer (413) before reading all of a large body; that is fine.
        let _ = s.write_all(body).await;
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
            .await
            .expect("an answer within a minute")
            .expect("read");
        parse(&raw)
    }

    async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, b"").await
    }

    async fn post(&self, path: &str, body: &Value) -> Reply {
        self.send(
            "POST",
            path,
            Some("application/json"),
            body.to_string().as_bytes(),
        )
        .await
    }

    async fn query(&self, q: &Value) -> Reply {
        self.post("/v1/cubes/bank_crm/query", q).await
    }

    async fn put_definition(&self, cube: &str, yaml: &str) -> Reply {
        self.send(
            "PUT",
            &format!("/v1/cubes/{cube}/definition"),
            Some("application/yaml"),
            yaml.as_bytes(),
        )
        .await
    }
}

impl TestServer {
    fn definition_file(&self, cube: &str) -> PathBuf {
        self.defs.path().join(format!("{cube}.yaml"))
    }

    /// Stops the server as SIGTERM would and waits until it has stopped.
    async fn stop(self) {
        self.listening.stop().await;
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .expect("hex size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    Reply {
        status,
        headers,
        body,
    }
}

/// Polls `check` every 50 ms for up to 60 s.
/// Replaces `file` as a careful editor does (a temporary file beside it, then a rename), so
/// the watcher never reads a half-written definition and reports it as invalid after the
/// whole one was served.
fn edit_atomically(file: &std::path::Path, text: &str) {
    let tmp = file.with_extension("editing");
    std::fs::write(&tmp, text).expect("edit");
    std::fs::rename(&tmp, file).expect("replace");
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn by_year() -> Value {
    json!({"measures": ["txn_amount", "txn_count"], "rows": ["time.year"]})
}

fn by_age_band() -> Value {
    json!({"measures": ["txn_count"], "rows": ["customer.age_band"]})
}

/// A question no cuboid answers: it goes to DataFusion over the raw facts.
fn by_customer(offset: u64) -> Value {
    json!({"measures": ["txn_amount"], "rows": ["customer.id"], "limit": 5, "offset": offset})
}

/// A heavier one: both facts, by customer and month, with totals — many milliseconds of
/// DataFusion work even on the small test data.
fn heavy(offset: u64) -> Value {
    json!({"measures": ["txn_amount", "active_customers", "deposit_balance"],
           "rows": ["customer.id", "time.month"], "totals": true, "limit": 5, "offset": offset})
}

/// The body limit of the shared server (and of the metrics test's own), small enough to exceed.
const BODY_LIMIT: usize = 64 * 1024;

/// The server the read-only tests share, and its definitions folder: bank_crm served from that
/// folder with a body limit of [`BODY_LIMIT`], built once per test binary. Tests that count
/// metrics, swap a definition in, add a cube or change the limits start their own, so nothing
/// here changes under a reader; the one that puts bad definitions here leaves the cube as it
/// was.
fn shared() -> (Client, &'static std::path::Path) {
    static SHARED: std::sync::OnceLock<(SocketAddr, PathBuf)> = std::sync::OnceLock::new();
    let (addr, defs) = SHARED.get_or_init(|| {
        // Lives as long as the server: the process.
        let defs = tempfile::tempdir().expect("tempdir").keep();
        let folder = defs.clone();
        let addr = crate::util::serve_for_the_binary(|| async move {
            let served = crate::util::shipped_cube_in(&folder).await;
            let mut config = config_in(&folder);
            config.limits.max_body_bytes = BODY_LIMIT;
            Server::new(config, vec![served]).expect("server")
        });
        (addr, defs)
    });
    (Client { addr: *addr }, defs)
}

/// The shared server's client.
fn srv() -> Client {
    shared().0
}

/// The number of provinces, as the metadata reports it.
async fn province_count(srv: &Client) -> u64 {
    let meta = srv.get("/v1/cubes/bank_crm").await.json();
    meta["dimensions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "region"))
        .and_then(|r| r["levels"][0]["members"].as_u64())
        .expect("a province member count")
}

/// The provinces' names, in the members route's order.
async fn province_names(srv: &Client) -> Vec<String> {
    let all = srv
        .get("/v1/cubes/bank_crm/members/region/province?limit=1000")
        .await
        .json();
    all["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn health_and_the_cube_list_show_the_served_cube() {
    let srv = srv();
    let health = srv.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["cubes"], 1);

    let cubes = srv.get("/v1/cubes").await.json();
    assert_eq!(cubes["cubes"][0]["name"], "bank_crm");
    assert_eq!(cubes["cubes"][0]["version"], 1);
    assert!(
        cubes["cubes"][0]["build"]["cuboids"].as_u64() > Some(0),
        "{cubes}"
    );
}

#[tokio::test]
async fn metadata_lists_dimensions_levels_hierarchies_and_measures() {
    let srv = srv();
    let meta = srv.get("/v1/cubes/bank_crm").await;
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    let region = meta["dimensions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "region"))
        .expect("region");
    assert_eq!(region["hierarchy"], json!(["province", "city", "branch"]));
    let province = &region["levels"][0];
    assert_eq!(
        (&province["name"], &province["qualified"]),
        (&json!("province"), &json!("region.province"))
    );
    let provinces = province["members"].as_u64().expect("member count");
    assert!(provinces > 1, "{region}");
    assert_eq!(region["levels"][1]["parent"], "province");
    let txn_amount = meta["measures"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "txn_amount"))
        .expect("txn_amount");
    assert_eq!(
        (
            &txn_amount["format"],
            &txn_amount["agg"],
            &txn_amount["fact"]
        ),
        (&json!("money"), &json!("sum"), &json!("transactions"))
    );
    assert!(
        // transactions, balances and the allocated branch_cost.
        meta["facts"].as_array().is_some_and(|f| f.len() == 3),
        "{meta}"
    );
}

#[tokio::test]
async fn members_are_paged_and_number_as_the_metadata_says() {
    let srv = srv();
    let provinces = province_count(&srv).await;
    let all = srv
        .get("/v1/cubes/bank_crm/members/region/province?limit=1000")
        .await
        .json();
    assert_eq!(all["total"].as_u64(), Some(provinces));
    let names = province_names(&srv).await;
    let page = srv
        .get("/v1/cubes/bank_crm/members/region/province?limit=1&offset=1")
        .await
        .json();
    assert_eq!(page["members"], json!([{"name": names[1]}]));
    assert_eq!(
        (page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn a_member_search_finds_the_names_that_contain_it() {
    let srv = srv();
    let names = province_names(&srv).await;
    let needle = &names[0][..names[0].len().min(3)];
    let found = srv
        .get(&format!(
            "/v1/cubes/bank_crm/members/region/province?search={}",
            needle.to_lowercase()
        ))
        .await
        .json();
    assert!(
        found["members"].as_array().is_some_and(|m| !m.is_empty()
            && m.iter().all(|m| m["name"]
                .as_str()
                .is_some_and(|n| n.to_lowercase().contains(&needle.to_lowercase())))),
        "{found}"
    );
}

#[tokio::test]
async fn members_carry_their_parents() {
    let srv = srv();
    let names = province_names(&srv).await;
    let cities = srv
        .get("/v1/cubes/bank_crm/members/region/city?limit=3")
        .await
        .json();
    assert!(
        cities["members"][0]["parent"]
            .as_str()
            .is_some_and(|p| names.iter().any(|n| n == p)),
        "{cities}"
    );
}

#[tokio::test]
async fn members_errors_name_the_dimension_level_or_parameter() {
    let srv = srv();
    srv.get("/v1/cubes/bank_crm/members/regoin/province")
        .await
        .error(404, "unknown_dimension");
    let e = srv
        .get("/v1/cubes/bank_crm/members/region/provnce")
        .await
        .error(404, "unknown_level");
    assert_eq!(e["details"]["suggestion"], "province");
    srv.get("/v1/cubes/bank_crm/members/region/province?limit=many")
        .await
        .error(400, "bad_parameters");
    srv.get("/v1/cubes/bank_crm/members/region/province?limit=1000000")
        .await
        .error(400, "too_many_rows");
}

/// `by_year()` is asked of the shared server by this test alone, so its first answer is
/// computed and its second cached.
#[tokio::test]
async fn a_repeated_query_is_answered_from_the_cache() {
    let srv = srv();
    let first = srv.query(&by_year()).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    assert_eq!(
        first["columns"]
            .as_array()
            .map(|c| c.iter().map(|c| c["name"].clone()).collect::<Vec<_>>()),
        Some(vec![
            json!("time.year"),
            json!("txn_amount"),
            json!("txn_count")
        ])
    );
    assert_eq!(first["meta"]["snapshot"], 1);
    assert_eq!(first["meta"]["cached"], false);
    let again = srv.query(&by_year()).await.json();
    assert_eq!(again["meta"]["cached"], true);
    assert_eq!(again["rows"], first["rows"]);
}

#[tokio::test]
async fn a_question_no_cuboid_answers_comes_from_the_base_rows() {
    let a = srv().query(&by_customer(0)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = a.json();
    assert_eq!(a["meta"]["source"], "base", "{a}");
    assert_eq!(a["rows"].as_array().map(Vec::len), Some(5));
}

#[tokio::test]
async fn a_question_no_cuboid_answers_goes_to_datafusion_without_base_rows() {
    // On the query runtime, and it answers.
    let srv = limited_by(Duration::from_secs(60)).await;
    let slow = srv.client.query(&by_customer(0)).await;
    assert_eq!(slow.status, 200, "{}", slow.text());
    let slow = slow.json();
    assert_eq!(slow["meta"]["source"], "fallback", "{slow}");
    assert_eq!(slow["rows"].as_array().map(Vec::len), Some(5));
    srv.stop().await;
}

/// Every part of an answer reads as the OpenAPI schema (no field it does not document): the
/// published schema is the engine's shape.
#[tokio::test]
async fn every_part_of_an_answer_reads_into_the_openapi_schema() {
    let full = srv()
        .query(&json!({
            "measures": ["txn_amount", "deposit_balance"],
            "rows": ["time.year", "customer.segment"],
            "totals": true, "explain": true,
            "compare": {"level": "time.year", "lag": 1}
        }))
        .await;
    assert_eq!(full.status, 200, "{}", full.text());
    let doc = full.json();
    crate::util::assert_conforms("Answer", &doc);
    let subtotals = doc["subtotals"].as_array().expect("subtotals");
    assert!(doc["totals"].is_object() && !subtotals.is_empty());
    let facts = doc["meta"]["facts"].as_array().expect("facts");
    assert!(facts.iter().any(|f| f.get("explain").is_some()));
    // A field the schema does not document, or a wrong type, fails the check.
    let mut extra = doc.clone();
    extra["meta"]["facts"][0]["unknown"] = json!(1);
    let mut wrong = doc.clone();
    wrong["meta"]["total_rows"] = json!("many");
    for bad in [extra, wrong] {
        let checked = std::panic::catch_unwind(|| crate::util::assert_conforms("Answer", &bad));
        assert!(checked.is_err(), "{bad}");
    }
}

/// Query errors: the engine's code, a 4xx, never a 500.
#[tokio::test]
async fn query_errors_are_4xx_with_the_engines_code() {
    let srv = srv();
    let e = srv
        .query(&json!({"measures": ["fee_incme"]}))
        .await
        .error(400, "unknown_measure");
    assert_eq!(e["details"]["suggestion"], "fee_income");
    srv.send(
        "POST",
        "/v1/cubes/bank_crm/query",
        Some("application/json"),
        b"{\"measures\": [",
    )
    .await
    .error(400, "malformed_query");
    srv.query(&json!({"measures": ["txn_count"], "rows": ["channel.channel"], "filters": [{"level": "channel.channel", "op": "eq", "value": "telegraph"}]}))
        .await
        .error(400, "unknown_member");
    let e = srv
        .post("/v1/cubes/bank_crn/query", &by_year())
        .await
        .error(404, "unknown_cube");
    assert_eq!(e["details"]["suggestion"], "bank_crm");
}

#[tokio::test]
async fn a_query_must_be_sent_as_json() {
    let srv = srv();
    let e = srv
        .send(
            "POST",
            "/v1/cubes/bank_crm/query",
            Some("text/plain"),
            by_year().to_string().as_bytes(),
        )
        .await
        .error(415, "unsupported_media_type");
    assert_eq!(e["details"]["found"], "text/plain");
    srv.send(
        "POST",
        "/v1/cubes/bank_crm/query",
        None,
        by_year().to_string().as_bytes(),
    )
    .await
    .error(415, "unsupported_media_type");
    // JSON with a charset is JSON. (Not `by_year()`, which the cache test must ask first.)
    let r = srv
        .send(
            "POST",
            "/v1/cubes/bank_crm/query",
            Some("application/json; charset=utf-8"),
            by_age_band().to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_the_limit() {
    let big = format!(
        "{{\"measures\": [\"txn_count\"], \"pad\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let e = srv()
        .send(
            "POST",
            "/v1/cubes/bank_crm/query",
            Some("application/json"),
            big.as_bytes(),
        )
        .await
        .error(413, "body_too_large");
    assert_eq!(e["details"]["limit_bytes"], BODY_LIMIT);
}

/// Drill-through: the customers behind a cell, paged.
#[tokio::test]
async fn drill_through_pages_the_customers_behind_a_cell() {
    let drill = srv()
        .post(
            "/v1/cubes/bank_crm/drillthrough",
            &json!({"level": "customer.id", "filters": [{"level": "time.year", "op": "eq", "value": "2025"}],
                    "measures": ["txn_amount"], "limit": 5}),
        )
        .await;
    assert_eq!(drill.status, 200, "{}", drill.text());
    let drill_doc = drill.json();
    crate::util::assert_conforms("DrillAnswer", &drill_doc);
    let rows = drill_doc["rows"].as_array().map(Vec::len);
    assert!(
        drill_doc["total"].as_u64() > Some(5) && rows == Some(5),
        "{}",
        drill.text()
    );
}

#[tokio::test]
async fn drill_through_errors_name_the_level_or_the_cube() {
    let srv = srv();
    srv.post(
        "/v1/cubes/bank_crm/drillthrough",
        &json!({"level": "time.month"}),
    )
    .await
    .error(400, "bad_drill");
    srv.post(
        "/v1/cubes/nope/drillthrough",
        &json!({"level": "customer.id"}),
    )
    .await
    .error(404, "unknown_cube");
}

#[tokio::test]
async fn the_definition_is_served_as_yaml_with_its_version() {
    let def = srv().get("/v1/cubes/bank_crm/definition").await;
    assert_eq!(def.status, 200);
    assert_eq!(def.header("content-type"), Some("application/yaml"));
    assert_eq!(def.header("etag"), Some("\"1\""));
    assert_eq!(def.text(), lattice_defs::BANK_CRM_YAML);
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_error_shape() {
    let srv = srv();
    srv.get("/v2/cubes").await.error(404, "not_found");
    srv.send("DELETE", "/v1/cubes/bank_crm", None, b"")
        .await
        .error(405, "method_not_allowed");
}

#[tokio::test]
async fn the_cube_api_answers_from_the_same_snapshot() {
    let cube_meta = srv().get("/cubejs-api/v1/meta").await;
    assert_eq!(cube_meta.status, 200, "{}", cube_meta.text());
    assert_eq!(cube_meta.json()["cubes"][0]["name"], "bank_crm");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let api = srv().get("/openapi.json").await.json();
    assert_eq!(
        api["paths"].as_object().map(|p| p.len()),
        Some(lattice_server::ROUTES.len())
    );
}

/// Counts are exact, so this test has a server of its own and makes the requests it counts:
/// three `by_year()` queries (one computed, two from the cache, one of them sent with a
/// charset), an unknown measure, a body over the limit, an unknown route and the Cube API's
/// metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_errors_and_cache_hits() {
    let srv = start(|c| c.limits.max_body_bytes = BODY_LIMIT).await;
    for content_type in [
        "application/json",
        "application/json",
        "application/json; charset=utf-8",
    ] {
        let r = srv
            .send(
                "POST",
                "/v1/cubes/bank_crm/query",
                Some(content_type),
                by_year().to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    srv.query(&json!({"measures": ["fee_incme"]}))
        .await
        .error(400, "unknown_measure");
    let big = format!(
        "{{\"measures\": [\"txn_count\"], \"pad\": \"{}\"}}",
        "x".repeat(100 * 1024)
    );
    srv.send(
        "POST",
        "/v1/cubes/bank_crm/query",
        Some("application/json"),
        big.as_bytes(),
    )
    .await
    .error(413, "body_too_large");
    srv.get("/v2/cubes").await.error(404, "not_found");
    assert_eq!(srv.get("/cubejs-api/v1/meta").await.status, 200);

    let metrics = srv.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in [
        "lattice_http_errors_total{route=\"/v1/cubes/{cube}/query\",code=\"unknown_measure\"} 1",
        "lattice_http_errors_total{route=\"/v1/cubes/{cube}/query\",code=\"body_too_large\"} 1",
        "lattice_http_errors_total{route=\"unmatched\",code=\"not_found\"} 1",
        "lattice_queries_total{path=\"cache\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    for prefix in [
        "lattice_http_requests_total{route=\"/v1/cubes/{cube}/query\",status=\"2xx\"}",
        "lattice_http_request_duration_seconds_bucket{route=\"/v1/cubes/{cube}/query\",le=\"+Inf\"}",
        "lattice_http_request_duration_quantile_seconds{route=\"/v1/cubes/{cube}/query\",quantile=\"0.99\"}",
        "lattice_cube_bytes{cube=\"bank_crm\"}",
        "lattice_cube_version{cube=\"bank_crm\"} 1",
        "lattice_http_requests_total{route=\"/cubejs-api/v1/meta\",status=\"2xx\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "no {prefix} in\n{text}"
        );
    }
    srv.stop().await;
}

/// The shipped definition with a typo in a hierarchy (`categry`).
fn typo() -> String {
    lattice_defs::BANK_CRM_YAML.replace(
        "hierarchy: [category, product]",
        "hierarchy: [categry, product]",
    )
}

/// Not YAML, a definition with a typo, one that does not match its data, one for another
/// cube: all rejected with every error located, and the old snapshot keeps serving; the file
/// is untouched. Nothing is swapped in, so this runs on the shared server.
#[tokio::test]
async fn bad_definitions_are_refused_with_their_place_and_the_old_snapshot_serves_on() {
    let (srv, defs) = shared();
    let file = defs.join("bank_crm.yaml");
    let old = srv.query(&by_age_band()).await.json();

    srv.send(
        "PUT",
        "/v1/cubes/bank_crm/definition",
        Some("application/json"),
        b"{}",
    )
    .await
    .error(415, "unsupported_media_type");
    let typo = typo();
    let line = typo
        .lines()
        .position(|l| l.contains("categry"))
        .expect("line")
        + 1;
    let e = srv
        .put_definition("bank_crm", &typo)
        .await
        .error(400, "invalid_definition");
    assert_eq!(
        (
            &e["details"]["errors"][0]["line"],
            &e["details"]["errors"][0]["column"],
            &e["details"]["errors"][0]["code"]
        ),
        (&json!(line), &json!(17), &json!("unknown_level")),
        "{e}"
    );
    assert_eq!(
        e["details"]["errors"][0]["help"],
        "did you mean 'category'?"
    );
    let wrong_column = lattice_defs::BANK_CRM_YAML.replace("column: amount,", "column: amont,");
    let line = wrong_column
        .lines()
        .position(|l| l.contains("amont"))
        .expect("line")
        + 1;
    let e = srv
        .put_definition("bank_crm", &wrong_column)
        .await
        .error(400, "invalid_definition");
    assert_eq!(e["details"]["errors"][0]["line"], json!(line), "{e}");
    assert!(
        e["details"]["errors"][0]["column"].as_u64() > Some(0),
        "{e}"
    );
    let e = srv
        .put_definition("other", lattice_defs::BANK_CRM_YAML)
        .await
        .error(400, "cube_name_mismatch");
    assert_eq!(e["details"]["found"], "bank_crm");
    let still = srv.query(&by_age_band()).await.json();
    assert_eq!(
        (&still["meta"]["snapshot"], &still["rows"]),
        (&json!(1), &old["rows"])
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("file"),
        lattice_defs::BANK_CRM_YAML
    );
}

/// A good definition: built, written to disk, swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_definition_is_built_written_and_swapped_in() {
    let srv = start(|_| {}).await;
    let file = srv.definition_file("bank_crm");
    let yaml = two_age_bands();
    let done = srv.put_definition("bank_crm", &yaml).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let done = done.json();
    assert_eq!(
        (&done["version"], &done["previous_version"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(std::fs::read_to_string(&file).expect("file"), yaml);
    let new = srv.query(&by_age_band()).await.json();
    assert_eq!(new["meta"]["snapshot"], 2);
    let bands: Vec<&Value> = new["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r[0])
        .collect();
    assert!(bands.contains(&&json!("under 40")), "{new}");
    assert_eq!(srv.get("/v1/cubes/bank_crm/definition").await.text(), yaml);
    let meta = srv.get("/v1/cubes/bank_crm").await.json();
    assert_eq!(
        (
            &meta["version"],
            &meta["last_reload"]["ok"],
            &meta["last_reload"]["trigger"]
        ),
        (&json!(2), &json!(true), &json!("put"))
    );
    srv.stop().await;
}

/// A new cube, created by PUT into the definitions folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_put_under_a_new_name_creates_the_cube() {
    let srv = start(|_| {}).await;
    let copy = lattice_defs::BANK_CRM_YAML.replace("cube: bank_crm", "cube: bank_copy");
    let created = srv.put_definition("bank_copy", &copy).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(
        std::fs::read_to_string(srv.definition_file("bank_copy")).expect("new file"),
        copy
    );
    let names: Vec<Value> = srv.get("/v1/cubes").await.json()["cubes"]
        .as_array()
        .expect("cubes")
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("bank_copy"), json!("bank_crm")]);
    srv.stop().await;
}

/// The file edited on disk: a bad edit is reported and ignored, a good one is served. The
/// steps depend on each other, so they stay in one test: the PUT first moves the cube to
/// version 2 with other answers, so that the good edit back to the shipped definition is seen
/// (its answers return) and is a later version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_on_disk_are_served_and_bad_ones_reported() {
    let srv = start(|c| c.watch_interval = Some(Duration::from_millis(50))).await;
    let file = srv.definition_file("bank_crm");
    let old = srv.query(&by_age_band()).await.json();
    let done = srv.put_definition("bank_crm", &two_age_bands()).await;
    assert_eq!(done.status, 200, "{}", done.text());

    edit_atomically(&file, &typo());
    eventually("the bad edit is reported", async || {
        let m = srv.get("/v1/cubes/bank_crm").await.json();
        m["last_reload"]["trigger"] == "file" && m["last_reload"]["ok"] == false
    })
    .await;
    let m = srv.get("/v1/cubes/bank_crm").await.json();
    assert_eq!(m["version"], 2);
    assert_eq!(
        m["last_reload"]["error"]["code"], "invalid_definition",
        "{m}"
    );
    edit_atomically(&file, lattice_defs::BANK_CRM_YAML);
    eventually("the good edit is served", async || {
        srv.query(&by_age_band()).await.json()["rows"] == old["rows"]
    })
    .await;
    let m = srv.get("/v1/cubes/bank_crm").await.json();
    assert_eq!(
        (&m["last_reload"]["ok"], &m["last_reload"]["trigger"]),
        (&json!(true), &json!("file"))
    );
    assert!(m["version"].as_u64() > Some(2), "{m}");
    let metrics = srv.get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lattice_builds_total{outcome=\"ok\"} ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_a_swap_are_answered_by_exactly_one_snapshot() {
    let srv = start(|_| {}).await;
    let old = srv.query(&by_age_band()).await.json();
    assert_eq!(old["meta"]["snapshot"], 1);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, stop) = (srv.client, stop.clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client.query(&by_age_band()).await;
                assert_eq!(r.status, 200, "{}", r.text());
                answers.push(r.json());
            }
            answers
        }));
    }
    let put = srv.put_definition("bank_crm", &two_age_bands()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let new = srv.query(&by_age_band()).await.json();
    assert_eq!(new["meta"]["snapshot"], 2);
    assert_ne!(new["rows"], old["rows"]);
    // Let the clients see the new snapshot too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut olds, mut news) = (0, 0);
    for c in clients {
        for a in c.await.expect("client") {
            match a["meta"]["snapshot"].as_u64() {
                Some(1) => {
                    assert_eq!(a["rows"], old["rows"]);
                    olds += 1;
                }
                Some(2) => {
                    assert_eq!(a["rows"], new["rows"]);
                    news += 1;
                }
                other => panic!("snapshot {other:?} in {a}"),
            }
        }
    }
    assert!(
        olds > 0 && news > 0,
        "old answers {olds}, new answers {news}"
    );
    srv.stop().await;
}

/// A server where DataFusion's answers time out after 1 ms, answers hold at most 10 rows, one
/// query runs and one waits, and nothing is cached.
async fn limited() -> TestServer {
    limited_by(Duration::from_millis(1)).await
}

/// [`limited`], with a time limit of `timeout`.
async fn limited_by(timeout: Duration) -> TestServer {
    start(|c| {
        c.limits = Limits {
            query_timeout: timeout,
            max_result_rows: 10,
            max_concurrent_queries: 1,
            max_queued_queries: 1,
            ..Limits::default()
        };
        c.cache_entries = 0;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_query_times_out_and_a_cuboid_still_answers() {
    let srv = limited().await;
    // DataFusion's answer over the raw facts takes longer than 1 ms: cancelled, 504.
    let e = srv.query(&heavy(0)).await.error(504, "query_timeout");
    assert_eq!(e["details"]["limit_ms"], 1);
    // A cuboid still answers at once.
    let r = srv
        .query(&json!({"measures": ["txn_count"], "rows": ["time.year"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_row_limit_is_refused_unless_the_query_pages() {
    let srv = limited().await;
    // 24 months are more rows than the limit of 10, unless the query asks for fewer.
    let e = srv
        .query(&json!({"measures": ["txn_count"], "rows": ["time.month"]}))
        .await
        .error(400, "too_many_rows");
    assert_eq!(
        (&e["details"]["limit"], &e["details"]["rows"]),
        (&json!(10), &json!(24))
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.contains("10")),
        "{e}"
    );
    let r = srv
        .query(&json!({"measures": ["txn_count"], "rows": ["time.month"], "limit": 10}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    srv.stop().await;
}

/// One running, one waiting: a burst of slow queries gets some 429s, never a pile-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_queries_with_429() {
    let srv = limited().await;
    let mut refused = 0;
    for _ in 0..5 {
        let burst: Vec<_> = (0..16)
            .map(|i| {
                let client = srv.client;
                tokio::spawn(async move { client.query(&heavy(i)).await })
            })
            .collect();
        for r in burst {
            let r = r.await.expect("client");
            match r.status {
                429 => {
                    r.error(429, "too_many_queries");
                    refused += 1;
                }
                504 => {
                    r.error(504, "query_timeout");
                }
                other => assert_eq!(other, 200, "{}", r.text()),
            }
        }
        if refused > 0 {
            break;
        }
    }
    assert!(refused > 0, "no query was refused");
    let metrics = srv.get("/metrics").await.text();
    assert!(
        metrics.lines().any(|l| l
            .starts_with("lattice_queries_rejected_total{reason=\"queue_full\"} ")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_requests_in_flight() {
    let mut srv = start(|_| {}).await;
    // A request that takes a while: a PUT waits for its build.
    let put = {
        let client = srv.client;
        tokio::spawn(async move { client.put_definition("bank_crm", &two_age_bands()).await })
    };
    eventually("the build is running", async || {
        srv.get("/health").await.json()["builds_in_progress"] == 1
    })
    .await;
    let addr = srv.addr;
    srv.listening.signal_stop();
    let reply = put.await.expect("client");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["version"], 2);
    srv.stop().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

/// Learning from the workload: a question no cuboid answers is recorded with its group-by and
/// shown to an admin; the next build of the cube (here, a PUT of a changed definition) adds a
/// cuboid for it, says so, and the same question is then answered from that cuboid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_adds_cuboids_for_the_questions_no_cuboid_answered() {
    let srv = start(|c| c.cache_entries = 0).await;
    let q = json!({"measures": ["fee_income"],
        "rows": ["manager.manager", "channel.channel"], "columns": ["customer.education"],
        "filters": [{"level": "product.category", "op": "eq", "value": "card"}]});
    let first = srv.query(&q).await.json();
    assert_ne!(first["meta"]["source"], "cuboid", "{}", first["meta"]);
    srv.query(&q).await;
    let meta = srv.get("/v1/cubes/bank_crm").await.json();
    let missed = meta["missed"].as_array().expect("missed");
    let want = json!([
        "customer.education",
        "manager.manager",
        "product.category",
        "channel.channel"
    ]);
    let mine = missed
        .iter()
        .find(|m| {
            let mut got: Vec<&Value> = m["levels"].as_array().expect("levels").iter().collect();
            let mut w: Vec<&Value> = want.as_array().expect("want").iter().collect();
            got.sort_by_key(|v| v.to_string());
            w.sort_by_key(|v| v.to_string());
            got == w
        })
        .unwrap_or_else(|| panic!("the question's group-by is not recorded: {missed:?}"));
    assert_eq!(mine["fact"], "transactions");
    assert_eq!(mine["questions"], 2);
    assert!(mine["cost_ms"].as_f64().expect("cost") > 0.0);

    let done = srv.put_definition("bank_crm", &two_age_bands()).await;
    assert_eq!(done.status, 200, "{}", done.text());
    let meta = srv.get("/v1/cubes/bank_crm").await.json();
    let learned = meta["build"]["learned"].as_array().expect("learned");
    assert!(
        learned
            .iter()
            .any(|l| l["fact"] == "transactions" && l["questions"] == 2),
        "{learned:?}"
    );
    let again = srv.query(&q).await.json();
    assert_eq!(again["meta"]["source"], "cuboid", "{}", again["meta"]);
    assert_eq!(again["rows"], first["rows"]);
    // The new snapshot has answered nothing without a cuboid yet.
    let meta = srv.get("/v1/cubes/bank_crm").await.json();
    assert!(
        meta["missed"].as_array().is_some_and(Vec::is_empty),
        "{}",
        meta["missed"]
    );
    srv.stop().await;
}
