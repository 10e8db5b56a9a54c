//! Hostile input: requests and definitions built to break the server — deeply nested JSON,
//! huge arrays, control characters and unicode in names and values, absurd limits, NaN and
//! infinities, bodies that are not UTF-8 or not JSON, definitions that would explode the
//! lattice or the memory. Each must get a clear 4xx (or a validation error) that names what is
//! wrong; never a panic, a 500, a hang or running out of memory. The fuzz targets (`fuzz/`)
//! search for more; what they found is kept here and beside the code it broke.
//!
//! HTTP cases run over a real socket against one server (built once, stopped at the end);
//! engine cases call the engine directly, where JSON cannot carry the value (NaN).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lattice_engine::EngineError;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::{Having, HavingOp, Query, execute};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_4xx_answers() {
    let started = Instant::now();
    let defs = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(defs.path()).await;

    // What JSON cannot carry goes to the engine directly, before the cube moves to the server.
    engine_cases(&served.built.cube).await;

    let config = Config {
        definitions_dir: Some(defs.path().to_path_buf()),
        data_dir: Some(parquet_dir().to_path_buf()),
        watch_interval: None,
        memory_budget: Some(64 << 20),
        ..Config::default()
    };
    let server = Server::new(config, vec![served]).expect("server");
    let listening = crate::util::listen(server).await;
    let addr = listening.addr;

    json_shape_cases(addr).await;
    name_and_value_cases(addr).await;
    number_cases(addr).await;
    body_cases(addr).await;
    definition_cases(addr).await;

    // Still serving after all that.
    let r = query(addr, &json!({"measures": ["txn_count"]})).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

    listening.stop().await;
    eprintln!("hostile HTTP cases took {:?}", started.elapsed());
}

/// Deeply nested documents, huge arrays, many levels.
async fn json_shape_cases(addr: SocketAddr) {
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
}

/// NUL, RTL marks, emoji and long strings in names and filter values: echoed back exactly,
/// in valid JSON, with the right error.
async fn name_and_value_cases(addr: SocketAddr) {
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
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["members"], json!([]));
    // A cube name with control characters.
    send(addr, "GET", "/v1/cubes/%00%1B%5B31m", None, b"")
        .await
        .error(404, "unknown_cube", &["unknown cube"]);
}

/// Enormous, negative and fractional limits and offsets; NaN and infinities.
async fn number_cases(addr: SocketAddr) {
    let base = || json!({"measures": ["txn_amount"], "rows": ["time.month"]});
    let with = |key: &str, raw: &str| {
        let mut text = base().to_string();
        text.pop();
        format!(r#"{text},"{key}":{raw}}}"#)
    };
    // u64::MAX: the server's row cap applies; offsets past the end give no rows.
    let r = post(
        addr,
        QUERY,
        with("limit", "18446744073709551615").as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = post(
        addr,
        QUERY,
        with("offset", "18446744073709551615").as_bytes(),
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
    let r = post(
        addr,
        DRILL,
        br#"{"level":"customer.id","limit":18446744073709551615,"offset":18446744073709551615}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Bodies that are not UTF-8, not JSON, not sent as JSON.
async fn body_cases(addr: SocketAddr) {
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
async fn definition_cases(addr: SocketAddr) {
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
async fn engine_cases(cube: &lattice_engine::store::Cube) {
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
            let a = execute(cube, &q)
                .await
                .unwrap_or_else(|e| panic!("{value} {op:?}: {e}"));
            if value.is_nan() && op != HavingOp::Ne {
                assert!(a.rows.is_empty(), "NaN {op:?} matched {:?}", a.rows);
            }
        }
    }
    for (limit, offset) in [
        (Some(u64::MAX), u64::MAX),
        (Some(0), u64::MAX),
        (None, u64::MAX - 1),
    ] {
        let q = Query {
            measures: vec!["txn_amount".into()],
            rows: vec!["customer.id".into()],
            limit,
            offset,
            totals: true,
            ..Query::default()
        };
        let a = execute(cube, &q).await.expect("paging past the end");
        assert!(a.rows.is_empty());
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
