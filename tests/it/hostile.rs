//! Hostile input: requests and definitions built to break the server — deeply nested JSON,
//! huge arrays, control characters and unicode in names and values, absurd limits, NaN and
//! infinities, bodies that are not UTF-8 or not JSON, definitions that would explode the
//! lattice or the memory. Each must get a clear 4xx (or a validation error) that names what is
//! wrong; never a panic, a 500, a hang or running out of memory. The fuzz targets (`fuzz/`)
//! search for more; what they found is kept here and beside the code it broke.
//!
//! HTTP cases run over a real socket against one server (built once per test binary, see
//! [`server`]), each kind a test of its own; engine cases call the engine directly, where JSON
//! cannot carry the value (NaN).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lattice_engine::EngineError;
use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Having, HavingOp, Query};
use lattice_server::{BuildError, Config, Server};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::parquet_dir;

const QUERY: &str = "/v1/cubes/bank_crm/query";
const DRILL: &str = "/v1/cubes/bank_crm/drillthrough";

/// An answer read off the socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(2000)])
            )
        })
    }

    /// The error's status, code and every word of `words` in its message; the error document.
    #[track_caller]
    fn error(&self, status: u16, code: &str, words: &[&str]) -> Value {
        let body = self.json();
        let shown = || {
            let text = body.to_string();
            text[..text.len().min(2000)].to_string()
        };
        assert_eq!(
            (self.status, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            shown()
        );
        let message = body["error"]["message"].as_str().unwrap_or_default();
        for w in words {
            assert!(message.contains(w), "'{w}' not in: {}", shown());
        }
        body["error"].clone()
    }
}

/// One request on its own connection, any bytes as the body.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.expect("send head");
    // A server may answer (413) before reading all of a large body.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut raw))
        .await
        .expect("an answer, not a hang")
        .expect("an answer, not a dropped connection");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Reply { status, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
    out
}

async fn post(addr: SocketAddr, path: &str, body: &[u8]) -> Reply {
    send(addr, "POST", path, Some("application/json"), body).await
}

async fn query(addr: SocketAddr, q: &Value) -> Reply {
    post(addr, QUERY, q.to_string().as_bytes()).await
}

/// A Parquet table of `rows` rows (one batch written again and again, so the file is small and
/// quick to write): `customer_id` (all 1) and `segment` (all "x").
fn big_dimension_table(path: &Path, rows: usize) {
    use arrow::array::{ArrayRef, Int64Array, StringArray};
    use arrow::record_batch::RecordBatch;
    use parquet::arrow::ArrowWriter;
    let batch_rows = 1 << 20;
    let batch = RecordBatch::try_from_iter([
        (
            "customer_id",
            Arc::new(Int64Array::from(vec![1i64; batch_rows])) as ArrayRef,
        ),
        (
            "segment",
            Arc::new(StringArray::from(vec!["x"; batch_rows])) as ArrayRef,
        ),
    ])
    .expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    let mut left = rows;
    while left > 0 {
        let n = left.min(batch_rows);
        w.write(&batch.slice(0, n)).expect("write");
        left -= n;
    }
    w.close().expect("close");
}

/// A definition whose customer dimension reads `customers` (an absolute path) and whose fact is
/// the test data's transactions.
fn huge_dimension_definition(customers: &Path) -> String {
    format!(
        r#"version: 1
cube: huge
sources:
  transactions: {{ path: {} }}
  customers: {{ path: {} }}
facts:
  transactions: {{ time: txn_date, dimensions: [customer] }}
dimensions:
  time: {{ type: time, hierarchy: [year, month] }}
  customer:
    table: customers
    key: customer_id
    levels:
      id: {{ column: customer_id }}
      segment: {{ column: segment }}
measures:
  txn_count: {{ fact: transactions, agg: count }}
"#,
        parquet_dir().join("transactions.parquet").display(),
        customers.display()
    )
}

/// The server the HTTP cases share, built once per test binary: the shipped cube served from a
/// definitions folder, under a memory budget of 64 MiB. No case changes what it serves (every
/// definition put here is refused), so the cases run side by side.
fn server() -> SocketAddr {
    static ADDR: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
    *ADDR.get_or_init(|| {
        crate::util::serve_for_the_binary(|| async {
            // Lives as long as the server: the process.
            let defs = tempfile::tempdir().expect("tempdir").keep();
            let served = crate::util::shipped_fallback_cube_in(&defs).await;
            let config = Config {
                definitions_dir: Some(defs),
                data_dir: Some(parquet_dir().to_path_buf()),
                watch_interval: None,
                memory_budget: Some(64 << 20),
                ..Config::default()
            };
            Server::new(config, vec![served]).expect("server")
        })
    })
}

/// Still serving after a hostile case.
async fn still_serving(addr: SocketAddr) {
    let r = query(addr, &json!({"measures": ["txn_count"]})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Deeply nested documents, huge arrays, many levels.
#[tokio::test]
async fn deep_nesting_and_huge_arrays_get_a_clear_4xx() {
    let addr = server();
    // 100k '[' (and 100k '{"a":'), alone and inside a field. The typed reader stops at the
    // first value of the wrong type, long before serde_json's recursion limit (128) would.
    let deep = "[".repeat(100_000);
    post(addr, QUERY, deep.as_bytes()).await.error(
        400,
        "malformed_query",
        &["expected a string", "column 2"],
    );
    // Inside a field, the first '[' where a string belongs is the error.
    let inside = format!(r#"{{"measures": [{deep}"#);
    post(addr, QUERY, inside.as_bytes()).await.error(
        400,
        "malformed_query",
        &["expected a string", "column 14"],
    );
    let objects = r#"{"a":"#.repeat(100_000);
    post(addr, DRILL, objects.as_bytes()).await.error(
        400,
        "malformed_query",
        &["unknown field `a`"],
    );

    // A body over the size limit is refused before it is parsed.
    let huge = format!(
        r#"{{"measures": [{}]}}"#,
        vec![r#""txn_amount""#; 100_000].join(",")
    );
    assert!(huge.len() > 1 << 20);
    post(addr, QUERY, huge.as_bytes())
        .await
        .error(413, "body_too_large", &["limit"]);

    // Under the size limit: 50k measures (more than a cube may have), 50k filter values (a
    // saved list of customers may be long).
    let many = json!({"measures": vec!["txn_amount"; 50_000]});
    query(addr, &many)
        .await
        .error(400, "query_too_large", &["50000 measures", "limit of 256"]);
    let values = json!({"measures": ["txn_amount"], "filters": [
        {"level": "time.year", "op": "in", "values": vec!["2025"; 50_000]}]});
    let r = query(addr, &values).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let values = json!({"measures": ["txn_amount"], "filters": [
        {"level": "customer.id", "op": "not_in", "values": vec!["no such customer"; 50_000]}]});
    query(addr, &values)
        .await
        .error(400, "unknown_member", &["no such customer"]);

    // A query naming 1000 levels: unknown ones, or the same one over and over.
    let unknown: Vec<String> = (0..1000).map(|i| format!("dim{i}.level{i}")).collect();
    query(addr, &json!({"measures": ["txn_amount"], "rows": unknown}))
        .await
        .error(400, "query_too_large", &["1000 levels"]);
    let again = vec!["time.year"; 1000];
    query(addr, &json!({"measures": ["txn_amount"], "rows": again}))
        .await
        .error(400, "query_too_large", &["1000 levels"]);
    let some: Vec<String> = (0..20).map(|i| format!("dim{i}.level{i}")).collect();
    query(addr, &json!({"measures": ["txn_amount"], "rows": some}))
        .await
        .error(400, "unknown_level", &["dim0.level0"]);
    still_serving(addr).await;
}

/// NUL, RTL marks, emoji and long strings in names and filter values: echoed back exactly,
/// in valid JSON, with the right error.
#[tokio::test]
async fn control_characters_and_unicode_are_echoed_in_their_errors() {
    let addr = server();
    let strange = "nul\u{0}rtl\u{202e}emoji😀\u{1b}[31m\r\n";
    let e = query(
        addr,
        &json!({"measures": ["txn_amount"], "filters": [
            {"level": "time.year", "op": "eq", "value": strange}]}),
    )
    .await
    .error(400, "unknown_member", &["time.year"]);
    assert_eq!(e["details"]["value"], strange);

    let e = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": [format!("time.{strange}")]}),
    )
    .await
    .error(400, "unknown_level", &["unknown level"]);
    assert_eq!(e["details"]["level"], format!("time.{strange}"));

    let e = query(addr, &json!({"measures": [strange]})).await.error(
        400,
        "unknown_measure",
        &["unknown measure"],
    );
    assert_eq!(e["details"]["measure"], strange);

    // Prefix and search with them match nothing: an empty answer, not an error.
    for op in ["prefix", "search"] {
        let r = query(
            addr,
            &json!({"measures": ["txn_amount"], "rows": ["customer.segment"], "filters": [
                {"level": "customer.segment", "op": op, "value": strange}]}),
        )
        .await;
        assert_eq!(r.status, 200, "{op}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["rows"], json!([]), "{op}");
    }

    // A 500 kB member name: refused fast (no suggestions computed over it), message short.
    let long = "x".repeat(500_000);
    let start = Instant::now();
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "filters": [
            {"level": "customer.id", "op": "eq", "value": long}]}),
    )
    .await;
    let e = r.error(400, "unknown_member", &["customer.id"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert!(
        e["message"].as_str().is_some_and(|m| m.len() < 2000),
        "the message echoes 500 kB"
    );
    let long_level = format!("time.{}", "y".repeat(500_000));
    let start = Instant::now();
    query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": [long_level]}),
    )
    .await
    .error(400, "unknown_level", &["unknown level"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // The members route, with control characters and emoji in the path.
    let r = send(
        addr,
        "GET",
        "/v1/cubes/bank_crm/members/%00%E2%80%AE/%F0%9F%98%80",
        None,
        b"",
    )
    .await;
    r.error(404, "unknown_dimension", &["unknown dimension"]);
    let r = send(
        addr,
        "GET",
        "/v1/cubes/bank_crm/members/time/year?search=%00%F0%9F%98%80&limit=18446744073709551615",
        None,
        b"",
    )
    .await;
    r.error(400, "too_many_rows", &["limit"]);
    let r = send(
        addr,
        "GET",
        "/v1/cubes/bank_crm/members/time/year?offset=18446744073709551615",
        None,
        b"",
    )
    .await;
    r.error(
        400,
        "query_too_large",
        &["`offset`", "18446744073709551615"],
    );
    let r = send(
        addr,
        "GET",
        "/v1/cubes/bank_crm/members/time/year?offset=4294967295",
        None,
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["members"], json!([]));
    // A cube name with control characters.
    send(addr, "GET", "/v1/cubes/%00%1B%5B31m", None, b"")
        .await
        .error(404, "unknown_cube", &["unknown cube"]);
    still_serving(addr).await;
}

/// Enormous, negative and fractional limits and offsets; NaN and infinities.
#[tokio::test]
async fn absurd_limits_offsets_and_non_finite_numbers_get_a_clear_4xx() {
    let addr = server();
    let base = || json!({"measures": ["txn_amount"], "rows": ["time.month"]});
    let with = |key: &str, raw: &str| {
        let mut text = base().to_string();
        text.pop();
        format!(r#"{text},"{key}":{raw}}}"#)
    };
    // Issue 18, finding 3: an offset at i64::MAX on a question DataFusion answers reached its
    // optimizer (`offset + limit` cast to Int64) and came back a 500.
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": ["customer.id"], "limit": 1}),
    )
    .await;
    assert_eq!(r.json()["meta"]["source"], "fallback", "{}", r.json());
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": ["customer.id"], "limit": 1,
                "offset": i64::MAX}),
    )
    .await;
    let e = r.error(400, "query_too_large", &["`offset`", "9223372036854775807"]);
    assert_eq!(e["details"]["found"], json!(i64::MAX), "{e}");
    // u64::MAX and i64::MAX name more rows than any answer has: refused, the field named.
    for (key, raw) in [
        ("limit", "18446744073709551615"),
        ("offset", "18446744073709551615"),
        ("offset", "9223372036854775807"),
    ] {
        post(addr, QUERY, with(key, raw).as_bytes()).await.error(
            400,
            "query_too_large",
            &[&format!("`{key}`"), raw],
        );
    }
    // The largest page allowed is answered (no rows that far).
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": ["customer.id"], "limit": u32::MAX,
                "offset": u32::MAX}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["rows"], json!([]));
    for (key, raw, word) in [
        ("limit", "-1", "invalid value"),
        ("limit", "1e300", "invalid type"),
        ("limit", "18446744073709551616", "invalid"),
        ("offset", "-9223372036854775808", "invalid value"),
        ("offset", "0.5", "invalid type"),
        ("limit", "\"10\"", "invalid type"),
    ] {
        post(addr, QUERY, with(key, raw).as_bytes()).await.error(
            400,
            "malformed_query",
            &[word, "column"],
        );
    }
    let having = |raw: &str| {
        let mut text = base().to_string();
        text.pop();
        format!(r#"{text},"having":[{{"measure":"txn_amount","op":"gt","value":{raw}}}]}}"#)
    };
    // JSON has no NaN or infinity: the textual forms are not numbers to serde, and a number
    // too large for an f64 is out of range rather than infinite.
    for (raw, word) in [
        ("NaN", "expected value"),
        ("Infinity", "expected value"),
        ("-Infinity", "invalid number"),
        ("\"NaN\"", "invalid type"),
        ("1e999", "out of range"),
        ("-1e999", "out of range"),
        ("null", "invalid type"),
    ] {
        post(addr, QUERY, having(raw).as_bytes())
            .await
            .error(400, "malformed_query", &[word]);
    }
    // The largest finite number is fine.
    let r = post(addr, QUERY, having("1.7976931348623157e308").as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["rows"], json!([]));
    // Compare with an absurd lag.
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": ["time.month"],
                "compare": {"level": "time.month", "lag": u32::MAX}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = query(
        addr,
        &json!({"measures": ["txn_amount"], "rows": ["time.month"],
                "compare": {"level": "time.month", "lag": 1u64 << 32}}),
    )
    .await;
    r.error(400, "malformed_query", &["invalid value"]);
    // Drill-through with u64::MAX paging.
    post(
        addr,
        DRILL,
        br#"{"level":"customer.id","limit":18446744073709551615,"offset":18446744073709551615}"#,
    )
    .await
    .error(400, "query_too_large", &["`limit`"]);
    still_serving(addr).await;
}

/// A JSON document with `raw` (any text, a number JSON may not even hold) at `path`.
fn with_raw(doc: &Value, path: &[&str], raw: &str) -> String {
    const MARK: &str = "__number_under_test__";
    let mut doc = doc.clone();
    let (last, parents) = path.split_last().expect("a field");
    let mut at = &mut doc;
    for key in parents {
        at = &mut at[*key];
    }
    at[*last] = json!(MARK);
    doc.to_string().replace(&format!("\"{MARK}\""), raw)
}

/// Numbers no count, page or lag needs.
const ABSURD: [&str; 7] = [
    "9223372036854775807",
    "18446744073709551615",
    "-1",
    "-9223372036854775808",
    "1e308",
    "0.5",
    "-1.5e300",
];

/// Every integer a client can send, on every route that takes one: each absurd number is a
/// 4xx with the API's error document (never a 500, never a dropped connection), and `-0` is
/// never a 5xx. Each request without the number is answered 200 first, so the 4xx is the
/// number's.
#[tokio::test]
async fn every_absurd_integer_on_every_route_gets_a_4xx() {
    let addr = server();
    let cube = |p: &str| format!("/v1/cubes/bank_crm{p}");
    let migration = json!({"band": "customer.deposit_band", "entity": "customer.id",
        "level": "time.quarter", "from": "2025-Q1", "to": "2025-Q2",
        "measures": ["deposit_balance"]});
    let cases: Vec<(String, Value, Vec<Vec<&str>>)> = vec![
        (
            cube("/query"),
            json!({"measures": ["txn_amount"], "rows": ["time.month"],
                   "compare": {"level": "time.month", "lag": 1}}),
            vec![vec!["limit"], vec!["offset"], vec!["compare", "lag"]],
        ),
        (
            cube("/drillthrough"),
            json!({"level": "customer.id"}),
            vec![vec!["limit"], vec!["offset"]],
        ),
        (
            cube("/analytics/abnormal"),
            json!({"kind": "change", "entity": "customer.id", "measure": "deposit_balance",
                   "level": "time.month", "before": "2025-05", "after": "2025-06",
                   "relative": 0.1}),
            vec![vec!["limit"], vec!["offset"]],
        ),
        (
            cube("/analytics/migration"),
            migration.clone(),
            vec![vec!["limit"], vec!["offset"]],
        ),
        (
            cube("/analytics/migration/drill"),
            json!({"migration": migration, "from_band": "<10k", "to_band": "10k-50k"}),
            vec![vec!["limit"], vec!["offset"]],
        ),
        (
            cube("/analytics/pareto"),
            json!({"level": "customer.id", "measure": "fee_income"}),
            vec![vec!["points"]],
        ),
        (
            cube("/analytics/performance"),
            json!({"level": "manager.manager", "period": "time.month", "from": "2025-01",
                   "to": "2025-03", "measures": ["fee_income"]}),
            vec![vec!["limit"]],
        ),
        (
            cube("/searches/run"),
            json!({"search": {"name": "adhoc", "entity": "customer.id",
                              "where": {"measure": "txn_amount", "op": "gt", "value": 0}},
                   "measures": ["txn_amount"]}),
            vec![vec!["limit"], vec!["offset"]],
        ),
        (
            "/cubejs-api/v1/load".to_string(),
            json!({"query": {"measures": ["bank_crm.txn_count"],
                             "dimensions": ["bank_crm.region_province"]}}),
            vec![vec!["query", "limit"], vec!["query", "offset"]],
        ),
    ];
    let mut failures = Vec::new();
    for (path, doc, fields) in &cases {
        let r = post(addr, path, doc.to_string().as_bytes()).await;
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        for field in fields {
            for raw in ABSURD.iter().chain(&["-0"]) {
                let r = post(addr, path, with_raw(doc, field, raw).as_bytes()).await;
                let client_error = (400..500).contains(&r.status);
                let ok = if *raw == "-0" {
                    r.status < 500
                } else {
                    client_error
                };
                if !ok || (client_error && !r.body.starts_with(b"{")) {
                    failures.push(format!(
                        "{path} {}={raw}: {} {}",
                        field.join("."),
                        r.status,
                        String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
                    ));
                }
            }
        }
    }
    // A level's members, paged in the URL.
    let members = cube("/members/customer/id");
    for key in ["limit", "offset"] {
        for raw in ABSURD {
            let r = send(addr, "GET", &format!("{members}?{key}={raw}"), None, b"").await;
            if !(400..500).contains(&r.status) {
                failures.push(format!("{members} {key}={raw}: {}", r.status));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    still_serving(addr).await;
}

/// Bodies that are not UTF-8, not JSON, not sent as JSON.
#[tokio::test]
async fn bodies_not_utf8_or_not_json_get_a_clear_4xx() {
    let addr = server();
    post(addr, QUERY, &[0xff, 0xfe, b'{', 0x80, b'}'])
        .await
        .error(400, "malformed_query", &["UTF-8"]);
    post(addr, QUERY, b"\xef\xbb\xbf{\"measures\":[\"txn_amount\"]}")
        .await
        .error(400, "malformed_query", &["expected value"]);
    post(addr, QUERY, b"")
        .await
        .error(400, "malformed_query", &["EOF"]);
    post(addr, QUERY, b"\0\0\0\0")
        .await
        .error(400, "malformed_query", &["expected value"]);
    send(addr, "POST", QUERY, Some("text/plain"), b"{}")
        .await
        .error(415, "unsupported_media_type", &["application/json"]);
    send(addr, "POST", QUERY, None, b"{}")
        .await
        .error(415, "unsupported_media_type", &["missing"]);
    send(
        addr,
        "POST",
        QUERY,
        Some("application/json-seq; x=\"😀\""),
        b"{}",
    )
    .await
    .error(415, "unsupported_media_type", &["application/json"]);
    // A control character in a header is not HTTP: hyper answers 400 itself, before any route
    // (no error document, but an answer and a closed connection, not a hang).
    for ct in ["application/json\0", "application/json\u{1}"] {
        let r = send(addr, "POST", QUERY, Some(ct), b"{}").await;
        assert_eq!(r.status, 400, "{ct:?}");
    }
    send(
        addr,
        "PUT",
        "/v1/cubes/bank_crm/definition",
        Some("application/yaml"),
        &[0xc3, 0x28],
    )
    .await
    .error(400, "bad_body", &["UTF-8"]);
    send(
        addr,
        "PUT",
        "/v1/cubes/bank_crm/definition",
        Some("application/json"),
        b"cube: x",
    )
    .await
    .error(415, "unsupported_media_type", &["yaml"]);
    still_serving(addr).await;
}

async fn put(addr: SocketAddr, cube: &str, yaml: &str) -> Reply {
    send(
        addr,
        "PUT",
        &format!("/v1/cubes/{cube}/definition"),
        Some("application/yaml"),
        yaml.as_bytes(),
    )
    .await
}

/// Definitions that would explode the lattice, the parser or the memory.
#[tokio::test]
async fn definitions_that_would_explode_are_refused_with_the_reason() {
    let addr = server();
    // Billion laughs, where the definition takes lists of lists: the typed reader stops at the
    // first list where a name belongs, before expanding anything (serde-saphyr's alias budget
    // is the backstop).
    let mut bomb = String::from("[&a0 [x, x, x, x, x, x, x, x, x]");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            ", &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
        ));
    }
    bomb.push(']');
    let yaml = replace_aggregates(&format!(
        "aggregates:\n  mode: groups\n  groups:\n    - includes: [time.year]\n      hierarchies: {bomb}\n"
    ));
    let start = Instant::now();
    let e = put(addr, "bank_crm", &yaml).await.error(
        400,
        "invalid_definition",
        &["expected string scalar", "hierarchies"],
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e["details"]["errors"][0]["code"], "syntax", "{e}");
    // Deeply nested YAML.
    put(addr, "bank_crm", &"[".repeat(100_000)).await.error(
        400,
        "invalid_definition",
        &["1 error"],
    );

    // Groups that make 2^20 cuboids.
    let levels = [
        "time.year",
        "time.quarter",
        "time.month",
        "region.province",
        "region.city",
        "region.branch",
        "manager.manager",
        "product.category",
        "product.product",
        "customer.type",
        "customer.segment",
        "customer.education",
        "customer.id",
        "customer.age_band",
        "customer.income_band",
        "customer.deposit_band",
        "customer.loan_band",
        "customer.credit_line_band",
        "customer.products_band",
        "customer.txn_amount_band",
    ];
    let groups = format!(
        "aggregates:\n  mode: groups\n  groups:\n    - includes: [{}]\n",
        levels.join(", ")
    );
    let yaml = replace_aggregates(&groups);
    let e = put(addr, "bank_crm", &yaml).await.error(
        400,
        "invalid_definition",
        &["cuboids", "limit of 4096"],
    );
    assert_eq!(e["details"]["errors"][0]["code"], "too_many", "{e}");
    assert!(
        e["details"]["errors"][0]["line"]
            .as_u64()
            .is_some_and(|l| l > 0),
        "{e}"
    );

    // A bucket with 100k edges.
    let edges: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let yaml = lattice_defs::BANK_CRM_YAML.replacen(
        "edges: [25, 35, 45, 55, 65]",
        &format!("edges: [{}]", edges.join(", ")),
        1,
    );
    assert_ne!(yaml, lattice_defs::BANK_CRM_YAML, "the age bands moved");
    let yaml = yaml.replacen(
        "labels: [\"<25\", \"25-34\", \"35-44\", \"45-54\", \"55-64\", \"65+\"]",
        "",
        1,
    );
    put(addr, "bank_crm", &yaml)
        .await
        .error(400, "invalid_definition", &["100000 bucket edges"]);

    // A dimension table of 10M rows (a level of up to 10M members): refused with the estimate,
    // before any of it is read, under the server's 64 MiB budget.
    let dir = tempfile::tempdir().expect("tempdir");
    let customers = dir.path().join("customers.parquet");
    big_dimension_table(&customers, 10_000_000);
    let start = Instant::now();
    let e = put(addr, "huge", &huge_dimension_definition(&customers))
        .await
        .error(
            422,
            "build_failed",
            &[
                "memory budget of 64.0 MiB",
                "dimension 'customer'",
                "10000000 rows",
            ],
        );
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert!(
        !e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("datafusion"),
        "{e}"
    );
    still_serving(addr).await;
}

/// The shipped definition with its `aggregates:` section replaced.
fn replace_aggregates(section: &str) -> String {
    let yaml = lattice_defs::BANK_CRM_YAML;
    let at = yaml.find("\naggregates:").expect("bank_crm has aggregates") + 1;
    let rest = &yaml[at..];
    // The section ends at the next top-level key, or at the end.
    let end = rest[1..]
        .lines()
        .scan(1, |off, line| {
            let start = *off;
            *off += line.len() + 1;
            Some((start, line))
        })
        .skip(1)
        .find(|(_, l)| !l.is_empty() && !l.starts_with([' ', '#']))
        .map_or(rest.len(), |(o, _)| o);
    format!("{}{section}{}", &yaml[..at], &rest[end..])
}

/// NaN, infinities and extreme paging through the Rust API, where JSON cannot go.
#[tokio::test]
async fn nan_infinities_and_extreme_paging_through_the_engine() {
    let defs = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(defs.path()).await;
    let session = Arc::new(served.built.data).session(Access::everything());
    for value in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE,
    ] {
        for op in [HavingOp::Gt, HavingOp::Le, HavingOp::Eq, HavingOp::Ne] {
            let q = Query {
                measures: vec!["txn_amount".into(), "avg_ticket".into()],
                rows: vec!["time.year".into()],
                having: vec![Having {
                    measure: "avg_ticket".into(),
                    op,
                    value,
                }],
                totals: true,
                ..Query::default()
            };
            let a = session
                .query(&q)
                .await
                .unwrap_or_else(|e| panic!("{value} {op:?}: {e}"));
            if value.is_nan() && op != HavingOp::Ne {
                assert!(a.rows.is_empty(), "NaN {op:?} matched {:?}", a.rows);
            }
        }
    }
    let paged = |limit, offset| Query {
        measures: vec!["txn_amount".into()],
        rows: vec!["customer.id".into()],
        limit,
        offset,
        totals: true,
        ..Query::default()
    };
    // The largest page is answered, past the end: no rows.
    let most = lattice_engine::query::MAX_PAGE_ROWS;
    for (limit, offset) in [(Some(most), most), (Some(0), most), (None, most - 1)] {
        let a = session
            .query(&paged(limit, offset))
            .await
            .expect("paging past the end");
        assert!(a.rows.is_empty());
    }
    // Beyond it, refused naming the field, whichever path would answer.
    for (limit, offset, field) in [
        (Some(u64::MAX), 0, "`limit`"),
        (Some(most + 1), 0, "`limit`"),
        (Some(0), u64::MAX, "`offset`"),
        (None, u64::MAX - 1, "`offset`"),
        (Some(1), i64::MAX as u64, "`offset`"),
    ] {
        let e = session
            .query(&paged(limit, offset))
            .await
            .expect_err("a page beyond the most rows");
        assert_eq!(e.code(), "query_too_large", "{e}");
        assert!(e.to_string().contains(field), "{field} not in: {e}");
    }
}

#[tokio::test]
async fn a_build_over_its_memory_budget_is_refused_before_it_allocates() {
    let build = |budget: u64, yaml: String| async move {
        let options = BuildOptions {
            progress: false,
            memory_budget: Some(budget),
            ..Default::default()
        };
        let file = parquet_dir().join("bank_crm.yaml");
        lattice_server::build_definition_with(yaml, Some(&file), Some(parquet_dir()), &options)
            .await
    };
    // 1 MiB: refused from the sources' sizes alone.
    let start = Instant::now();
    let err = build(1 << 20, lattice_defs::BANK_CRM_YAML.to_string())
        .await
        .expect_err("1 MiB is not enough");
    let BuildError::Engine(EngineError::OverMemoryBudget {
        stage,
        estimate_bytes,
        budget_bytes,
        ref items,
    }) = err
    else {
        panic!("{err}");
    };
    assert_eq!((stage, budget_bytes), ("reading the sources", 1 << 20));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let text = err.to_string();
    for word in [
        "memory budget of 1.0 MiB",
        "fact 'transactions' aggregated to the cube grain",
        "fact 'balances'",
        "dimension 'customer'",
        "rows",
        "--memory-budget-mb",
    ] {
        assert!(text.contains(word), "'{word}' not in: {text}");
    }
    assert_eq!(
        items.iter().map(|i| i.bytes).sum::<u64>(),
        estimate_bytes,
        "{text}"
    );

    // Enough for the sources, not for eight listed cuboids at the customer grain: refused
    // after the base tables, before the lattice.
    let big = [
        "[customer.id, time.month, product.product]",
        "[customer.id, time.month, product.category]",
        "[customer.id, time.quarter, product.product]",
        "[customer.id, time.month, region.branch, product.product]",
        "[customer.id, time.month, customer.segment, product.product]",
        "[customer.id, time.month, customer.type, product.product]",
        "[customer.id, time.month, customer.age_band, product.product]",
        "[customer.id, time.month, customer.education, product.product]",
    ];
    let section = format!(
        "aggregates:\n  mode: explicit\n  cuboids:\n{}",
        big.iter()
            .map(|c| format!("    - {c}\n"))
            .collect::<String>()
    );
    let err = build(estimate_bytes + (1 << 20), replace_aggregates(&section))
        .await
        .expect_err("the cuboids do not fit");
    let text = err.to_string();
    let BuildError::Engine(EngineError::OverMemoryBudget { stage, .. }) = err else {
        panic!("{err}");
    };
    assert_eq!(stage, "building the cuboids", "{text}");
    assert!(text.contains("8 cuboids of 'balances'"), "{text}");
    assert!(text.contains("cells"), "{text}");
}

/// How a slow client's connection ended: closed by the server after this long, or still
/// open when the client gave up.
type Held = Result<Duration, Duration>;

/// Sends `head` (and `body`, one byte every `every`, as a client trickling it), reading
/// whatever comes back, until the server closes the connection or `give_up` has passed.
async fn trickle(addr: SocketAddr, head: &'static [u8], body: bool, give_up: Duration) -> Held {
    let every = Duration::from_millis(100);
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let (first, rest) = if body {
        (head, &b""[..])
    } else {
        head.split_at(head.len() / 2)
    };
    s.write_all(first).await.expect("send");
    let mut trickled = rest.iter().copied().chain(std::iter::repeat(b'x'));
    let mut buf = [0u8; 4096];
    while start.elapsed() < give_up {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Ok(start.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(every) => {
                let byte = [trickled.next().expect("endless")];
                if s.write_all(&byte).await.is_err() {
                    return Ok(start.elapsed());
                }
            }
        }
    }
    Err(start.elapsed())
}

/// Opens a connection, makes one keep-alive request, reads its answer and then sends
/// nothing; how long the server keeps it, counted from before the request (so never less
/// than the idle timeout, however late this task reads the answer).
async fn idle_after_a_request(addr: SocketAddr, give_up: Duration) -> Held {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    // The answer: a head and a small JSON body ending in '}'.
    while !seen.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(n > 0, "closed before the answer");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    let left = give_up.saturating_sub(start.elapsed());
    match tokio::time::timeout(left, s.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => Ok(start.elapsed()),
        Ok(Ok(n)) => panic!("unasked bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => Err(start.elapsed()),
    }
}

/// A server with no cubes (nothing to build), its definitions folder `dir`, and `limits`.
async fn bare_server(dir: &Path, limits: lattice_server::Limits) -> crate::util::Listening {
    let config = Config {
        definitions_dir: Some(dir.to_path_buf()),
        watch_interval: None,
        limits,
        ..Config::default()
    };
    crate::util::listen(Server::new(config, Vec::new()).expect("server")).await
}

/// Issue 18, finding 4: slow clients held connections open for as long as they liked (300
/// trickling a header for 45 s; 100 idle for 120 s). Now a header must arrive within its
/// timeout from its first byte, a body within its own from the headers, and an idle
/// keep-alive connection is closed after its idle timeout; a normal client is answered
/// throughout the flood.
///
/// Each client's clock starts before the server's can (before its connect or its request),
/// so a close is never seen before the timeout; `slack` after it allows for a loaded machine,
/// and stays well under `give_up`, where a connection the server never closes is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_on_time_and_others_still_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (header, body, idle) = (
        Duration::from_millis(600),
        Duration::from_millis(900),
        Duration::from_millis(1500),
    );
    let listening = bare_server(
        dir.path(),
        lattice_server::Limits {
            header_read_timeout: header,
            body_read_timeout: body,
            idle_timeout: idle,
            max_connections: 256,
            ..lattice_server::Limits::default()
        },
    )
    .await;
    let addr = listening.addr;
    let slack = Duration::from_millis(2500);
    let give_up = Duration::from_secs(8);
    assert!(idle + slack < give_up);
    const HEAD: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n";
    // The body of a definition PUT (read before anything is built), declared 10 kB long.
    const PUT: &[u8] = b"PUT /v1/cubes/slow/definition HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 10000\r\n\r\nversion: 1\n";
    let mut floods = Vec::new();
    for _ in 0..30 {
        floods.push(("header", tokio::spawn(trickle(addr, HEAD, false, give_up))));
        floods.push(("body", tokio::spawn(trickle(addr, PUT, true, give_up))));
        floods.push(("idle", tokio::spawn(idle_after_a_request(addr, give_up))));
    }
    // Opened and sent nothing at all: closed as idle.
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // A normal client is answered during the flood, promptly.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let asked = Instant::now();
        let r = send(addr, "GET", "/health", None, b"").await;
        assert_eq!(r.status, 200);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
    }
    for (kind, task) in floods {
        let limit = match kind {
            "header" => header,
            "body" => body,
            _ => idle,
        };
        match task.await.expect("client task") {
            Ok(after) => assert!(
                after >= limit && after <= limit + slack,
                "{kind}: closed after {after:?}, the timeout is {limit:?}"
            ),
            Err(after) => panic!("{kind}: still open after {after:?} (timeout {limit:?})"),
        }
    }
    for mut s in silent {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(idle + slack, s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "a silent connection still open past its idle timeout: {read:?}"
        );
    }
    let r = send(addr, "GET", "/health", None, b"").await;
    assert_eq!(r.status, 200);
    listening.stop().await;
}

/// Issue 18, finding 4: the connection cap holds; one more is refused at once (503
/// `too_many_connections`, or closed), and a slot that frees up is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listening = bare_server(
        dir.path(),
        lattice_server::Limits {
            max_connections: 4,
            idle_timeout: Duration::from_secs(20),
            ..lattice_server::Limits::default()
        },
    )
    .await;
    let addr = listening.addr;
    // Four keep-alive connections, each answered once and then held open.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("send");
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    for _ in 0..3 {
        let asked = Instant::now();
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut raw = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut raw)).await;
        assert!(
            read.is_ok(),
            "a fifth connection waited instead of being refused"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "{:?}",
            asked.elapsed()
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(
            raw.is_empty()
                || (text.starts_with("HTTP/1.1 503") && text.contains("too_many_connections")),
            "{text}"
        );
    }
    // One held connection closes: its slot serves a new client (within a bounded wait).
    drop(held.pop());
    let freed = Instant::now();
    let mut served = false;
    while !served && freed.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let _ = s
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut raw)).await;
        served = raw.starts_with(b"HTTP/1.1 200");
    }
    assert!(served, "a freed slot was never used again");
    drop(held);
    listening.stop().await;
}

/// Issue 18, finding 7: a `kill -9` between writing a temporary file and renaming it left
/// `.bank_crm.yaml.tmp-*` (and a saved search's) behind for good. A start removes the
/// temporaries of the files the server writes, and nothing else.
#[tokio::test]
async fn a_start_removes_temporaries_left_by_a_killed_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leftovers = [
        ".bank_crm.yaml.tmp-4000000000-0",
        ".bank_crm.searches.json.tmp-4000000000-1",
    ];
    let kept = [
        "bank_crm.yaml.bak",
        "notes.txt",
        ".bank_crm.yaml.swp",
        ".bank_crm.yaml.tmp-mine",
        ".notes.txt.tmp-4000000000-2",
    ];
    for name in leftovers.iter().chain(&kept) {
        std::fs::write(dir.path().join(name), "x").expect("write");
    }
    let listening = bare_server(dir.path(), lattice_server::Limits::default()).await;
    // Removed before the first answer.
    let r = send(listening.addr, "GET", "/health", None, b"").await;
    assert_eq!(r.status, 200);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut expected: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(left, expected);
    listening.stop().await;
}
