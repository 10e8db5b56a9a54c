//! The explorer's files served from the binary, and answers exported as CSV and XLSX: the same
//! answer as the JSON one, for the same principal (a scope exports only its own rows).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use axum::http::{Request, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use axum::Router;

use crate::auth::app_over;

const ADMIN: &str = "web-admin-key-0123456789abcdef";
const SCOPED: &str = "web-scoped-key-0123456789abcdef";
/// An analyst: every customer, small cells withheld (the shipped cube's `privacy`).
const SUPPRESSED: &str = "web-analyst-key-0123456789abcdef";
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

fn auth_yaml(dir: &Path) -> PathBuf {
    let hash = lattice_server::auth::hash_key;
    let yaml = format!(
        r#"version: 1
keys:
  - {{name: admin, sha256: {}, roles: [admin]}}
  - {{name: scoped, sha256: {}, roles: [manager], scope: ["region.province = Zhejiang"]}}
"#,
        hash(ADMIN),
        hash(SCOPED)
    );
    let path = dir.join("web-auth.yaml");
    std::fs::write(&path, yaml).expect("auth file");
    path
}

async fn server() -> Router {
    app_over(true, Some(&auth_yaml), |_, _| {}).await.router
}

/// A JSON answer to a POST, which must succeed.
async fn post_json(app: &Router, key: &str, uri: &str, body: &Value) -> Value {
    let (status, _, bytes) = raw(app, "POST", uri, Some(key), None, Some(body)).await;
    assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A raw request: status, headers and the body's bytes.
async fn raw(
    app: &Router,
    method: &str,
    uri: &str,
    key: Option<&str>,
    accept: Option<&str>,
    body: Option<&Value>,
) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let req = match body {
        Some(b) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(b.to_string())),
        None => req.body(axum::body::Body::empty()),
    }
    .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, bytes.to_vec())
}

fn content_type(h: &axum::http::HeaderMap) -> String {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

#[tokio::test]
async fn the_explorer_is_served_to_anyone_from_the_binary_and_names_no_other_host() {
    let app = server().await;
    let (status, headers, body) = raw(&app, "GET", "/", None, None, None).await;
    assert_eq!(
        status,
        200,
        "GET / without a key: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        content_type(&headers).starts_with("text/html"),
        "{headers:?}"
    );
    let html = String::from_utf8(body).expect("utf-8");
    // Every file the page loads or links comes from this server.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let rest = &html[i + attr.len()..];
            let url = &rest[..rest.find('"').expect("closing quote")];
            assert!(
                (url.starts_with('/') && !url.starts_with("//"))
                    || url.starts_with('#')
                    || url.starts_with("data:"),
                "the page loads {url} from elsewhere"
            );
            if url.starts_with("/assets/") {
                assets.push(url.to_string());
            }
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "a script: {assets:?}"
    );
    for a in &assets {
        let (status, headers, body) = raw(&app, "GET", a, None, None, None).await;
        assert_eq!(status, 200, "{a}");
        assert!(!body.is_empty(), "{a} is empty");
        let ct = content_type(&headers);
        if a.ends_with(".js") {
            assert!(ct.contains("javascript"), "{a}: {ct}");
        } else if a.ends_with(".css") {
            assert!(ct.starts_with("text/css"), "{a}: {ct}");
        }
    }
    // Nothing outside the assets, and the API still asks for a key.
    for probe in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
        "/assets/nope.js",
    ] {
        let (status, _, _) = raw(&app, "GET", probe, None, None, None).await;
        assert_eq!(status, 404, "{probe}");
    }
    let (status, _, _) = raw(&app, "GET", "/v1/cubes", None, None, None).await;
    assert_eq!(status, 401);
}

/// The JSON answer to a POST and, asked again with `Accept: text/csv`, its CSV rows.
async fn json_and_csv(
    app: &Router,
    key: &str,
    uri: &str,
    body: &Value,
) -> (Value, Vec<Vec<String>>) {
    let json = post_json(app, key, uri, body).await;
    let (status, headers, csv) =
        raw(app, "POST", uri, Some(key), Some("text/csv"), Some(body)).await;
    assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&csv));
    assert!(content_type(&headers).starts_with("text/csv"));
    (json, csv_rows(&csv))
}

/// CSV text as rows of fields.
fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.expect("a CSV record").iter().map(String::from).collect())
        .collect()
}

/// A JSON value as the CSV writes it.
fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The text of every cell of the first sheet of an XLSX file, shared strings resolved.
fn xlsx_cells(bytes: &[u8]) -> Vec<String> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("an XLSX is a zip");
    let mut read = |name: &str| {
        let mut s = String::new();
        if let Ok(mut f) = zip.by_name(name) {
            f.read_to_string(&mut s).expect("utf-8");
        }
        s
    };
    let shared: Vec<String> = read("xl/sharedStrings.xml")
        .split("<t>")
        .skip(1)
        .chain(
            read("xl/sharedStrings.xml")
                .split("<t xml:space=\"preserve\">")
                .skip(1),
        )
        .map(|s| s[..s.find("</t>").expect("end")].to_string())
        .collect();
    let sheet = read("xl/worksheets/sheet1.xml");
    let mut out = Vec::new();
    for cell in sheet.split("<c ").skip(1) {
        let Some(v) = cell.split("<v>").nth(1) else {
            continue;
        };
        let v = &v[..v.find("</v>").expect("end")];
        if cell.contains("t=\"s\"") {
            out.push(shared[v.parse::<usize>().expect("index")].clone());
        } else {
            out.push(v.to_string());
        }
    }
    out
}

#[tokio::test]
async fn answers_export_as_csv_and_xlsx_for_the_principal_that_asks() {
    let app = server().await;
    // The OpenAPI document says which answers export.
    let (_, _, doc) = raw(&app, "GET", "/openapi.json", None, None, None).await;
    let doc: Value = serde_json::from_slice(&doc).expect("JSON");
    for path in [
        "/v1/cubes/{cube}/query",
        "/v1/cubes/{cube}/analytics/pareto",
    ] {
        let content = &doc["paths"][path]["post"]["responses"]["200"]["content"];
        assert!(
            content.get("text/csv").is_some() && content.get(XLSX).is_some(),
            "{path}: {content}"
        );
    }
    assert!(doc["paths"]["/v1/cubes/{cube}/members/{dimension}/{level}"]["get"]["responses"]["200"]["content"]
        .get("text/csv")
        .is_none());
    let query = json!({"measures": ["fee_income", "active_customers", "avg_ticket"],
                       "rows": ["region.province", "region.city"], "totals": true});
    for key in [ADMIN, SCOPED] {
        let uri = "/v1/cubes/bank_crm/query";
        let (status, _, body) = raw(&app, "POST", uri, Some(key), None, Some(&query)).await;
        assert_eq!(status, 200);
        let json: Value = serde_json::from_slice(&body).expect("JSON");
        let (status, headers, csv) =
            raw(&app, "POST", uri, Some(key), Some("text/csv"), Some(&query)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&csv));
        assert!(content_type(&headers).starts_with("text/csv"));
        let disposition = headers[header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii");
        assert!(disposition.contains("bank_crm-query.csv"), "{disposition}");
        let rows = csv_rows(&csv);
        let names: Vec<String> = json["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().expect("name").to_string())
            .collect();
        assert_eq!(rows[0], names, "the header is the columns");
        let answer = json["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), answer.len() + 2, "header, rows, totals");
        for (got, want) in rows[1..].iter().zip(answer) {
            let want: Vec<String> = want.as_array().expect("row").iter().map(text).collect();
            assert_eq!(got, &want);
        }
        let total = rows.last().expect("totals");
        assert_eq!(total[0], "Total");
        assert_eq!(total[2], text(&json["totals"]["fee_income"]));
        assert_eq!(total[3], text(&json["totals"]["active_customers"]));
        if key == SCOPED {
            assert!(
                answer.iter().all(|r| r[0] == "Zhejiang"),
                "the scope's rows only"
            );
        }
        // The spreadsheet holds the same cells: texts as text, decimals as numbers.
        let (status, headers, xlsx) =
            raw(&app, "POST", uri, Some(key), Some(XLSX), Some(&query)).await;
        assert_eq!(status, 200);
        assert_eq!(content_type(&headers), XLSX);
        let cells = xlsx_cells(&xlsx);
        assert_eq!(&cells[..names.len()], &names[..]);
        let first = &answer[0];
        assert_eq!(cells[names.len()], text(&first[0]));
        let fee: f64 = text(&first[2]).parse().expect("a decimal");
        let in_sheet: f64 = cells[names.len() + 2].parse().expect("a number cell");
        assert!((fee - in_sheet).abs() < 1e-6, "{fee} vs {in_sheet}");
    }
}

#[tokio::test]
async fn drill_through_and_analyses_export_their_tables_and_errors_stay_json() {
    let app = server().await;
    let drill = json!({"level": "customer.id",
                       "filters": [{"level": "region.province", "op": "eq", "value": "Zhejiang"}],
                       "measures": ["txn_amount"], "limit": 20});
    let (json, rows) = json_and_csv(&app, ADMIN, "/v1/cubes/bank_crm/drillthrough", &drill).await;
    assert_eq!(rows.len(), json["rows"].as_array().expect("rows").len() + 1);
    assert_eq!(rows[1][0], text(&json["rows"][0][0]));

    let pareto = json!({"level": "customer.id", "measure": "fee_income"});
    let uri = "/v1/cubes/bank_crm/analytics/pareto";
    let (json, rows) = json_and_csv(&app, ADMIN, uri, &pareto).await;
    let curve = json["curve"].as_array().expect("curve");
    assert_eq!(
        rows.len(),
        curve.len() + 1,
        "one row per point of the curve"
    );
    let members = rows[0]
        .iter()
        .position(|h| h == "members")
        .expect("a members column");
    assert_eq!(rows[1][members], text(&curve[0]["members"]));

    // An error is the JSON error, whatever was asked for.
    let bad = json!({"measures": ["no_such_measure"]});
    let (status, headers, body) = raw(
        &app,
        "POST",
        "/v1/cubes/bank_crm/query",
        Some(ADMIN),
        Some("text/csv"),
        Some(&bad),
    )
    .await;
    assert_eq!(status, 400);
    assert!(content_type(&headers).starts_with("application/json"));
    let err: Value = serde_json::from_slice(&body).expect("JSON error");
    assert!(
        err["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no_such_measure")
    );
    // Without a key, no export either.
    let (status, _, _) = raw(&app, "POST", uri, None, Some("text/csv"), Some(&pareto)).await;
    assert_eq!(status, 401);
}

/// Whether the browser test can run here: the system chromium and Playwright for Python. A
/// missing one fails where `LATTICE_REQUIRE_BROWSER` is set (`.ci/run` installs both).
fn have_browser() -> bool {
    let chromium = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(chromium && playwright) {
        assert!(
            std::env::var_os("LATTICE_REQUIRE_BROWSER").is_none(),
            "chromium ({chromium}) and Playwright for Python ({playwright}) are required (LATTICE_REQUIRE_BROWSER)"
        );
        eprintln!("skipped: chromium or Playwright for Python is not installed");
    }
    chromium && playwright
}

/// A number as the page shows it (thousands separated) as the API writes it.
fn plain(shown: &str) -> String {
    shown.trim().replace(',', "")
}

/// What `tests/web/explorer.py` saw, driving the page at `url` with `args` (screenshots to
/// `out`); a failed step fails the test with the script's account of it.
async fn explorer(url: &str, out: &Path, args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/explorer.py");
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(600),
        tokio::process::Command::new("python3")
            .arg(&script)
            .args(["--url", url])
            .arg("--out")
            .arg(out)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test ends within 10 minutes")
    .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser test ({args:?}) failed:\n{stderr}"
    );
    serde_json::from_slice(&run.stdout).expect("the script's JSON")
}

/// The manager with the most customers, and their ids.
async fn a_manager() -> (String, std::collections::BTreeSet<String>) {
    let f = crate::query_suite::fixture().await;
    let top = crate::query_suite::run_sql(
        &f.sql,
        "SELECT m.manager_name, COUNT(*) AS n FROM customers c
         JOIN managers m ON m.manager_id = c.manager_id
         GROUP BY m.manager_name ORDER BY n DESC, m.manager_name LIMIT 1",
    )
    .await
    .expect("SQL");
    let unquoted = |c: &crate::query_suite::Cell| match c {
        crate::query_suite::Cell::Text(s) => s.clone(),
        other => panic!("text, not {other:?}"),
    };
    let name = unquoted(&top.rows[0][0]);
    let ids = crate::query_suite::run_sql(
        &f.sql,
        &format!(
            "SELECT CAST(c.customer_id AS VARCHAR) FROM customers c
             JOIN managers m ON m.manager_id = c.manager_id WHERE m.manager_name = '{}'",
            name.replace('\'', "''")
        ),
    )
    .await
    .expect("SQL")
    .rows
    .iter()
    .map(|r| unquoted(&r[0]))
    .collect();
    (name, ids)
}

/// The page in headless Chromium against `lattice serve` on the test data
/// (`tests/web/explorer.py` drives it and says what it saw): the numbers it shows equal the
/// JSON API's, drilling down and through asks what the API answers, the CSV it saves is the
/// API's, a broken band shows its error at its line, a band preview's counts equal SQL over
/// the raw facts, and a manager sees only their own customers. `LATTICE_SCREENSHOTS=DIR`
/// keeps the screenshots (docs/screenshots holds the committed ones).
#[tokio::test]
async fn the_explorer_in_a_real_browser() {
    if !have_browser() {
        return;
    }
    let (manager, own) = a_manager().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(dir.path()).await;
    let auth = dir.path().join("auth.yaml");
    std::fs::write(
        &auth,
        format!(
            "version: 1\nkeys:\n  - {{name: admin, sha256: {}, roles: [admin]}}\n  - {{name: manager, sha256: {}, roles: [manager], scope: [{:?}]}}\n  - {{name: analyst, sha256: {}, roles: [analyst]}}\n",
            lattice_server::auth::hash_key(ADMIN),
            lattice_server::auth::hash_key(SCOPED),
            format!("manager.manager = {manager}"),
            lattice_server::auth::hash_key(SUPPRESSED),
        ),
    )
    .expect("auth file");
    let config = lattice_server::Config {
        definitions_dir: Some(dir.path().to_path_buf()),
        data_dir: Some(crate::util::parquet_dir().to_path_buf()),
        watch_interval: None,
        auth: Some(std::sync::Arc::new(
            lattice_server::auth::Auth::from_file(&auth).expect("auth"),
        )),
        ..lattice_server::Config::default()
    };
    let server = lattice_server::Server::new(config, vec![served]).expect("server");
    let app = server.router();
    let http = crate::util::listen(server).await;
    let out = std::env::var_os("LATTICE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.path().join("shots"));
    std::fs::create_dir_all(&out).expect("screenshot folder");
    let base = format!("http://{}", http.addr);
    let seen = explorer(
        &base,
        &out,
        &["--admin-key", ADMIN, "--manager-key", SCOPED],
    )
    .await;
    assert_eq!(seen["failures"], json!([]));

    // The pivot: every number shown is the API's for the query the page sent.
    let pivot = &seen["pivot"];
    let answer = post_json(&app, ADMIN, "/v1/cubes/bank_crm/query", &pivot["query"]).await;
    let columns: Vec<&str> = answer["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let levels = answer["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["kind"] == "level")
        .count();
    let cells = pivot["cells"].as_array().expect("cells");
    assert!(!cells.is_empty());
    for cell in cells {
        let cell = cell.as_array().expect("cell");
        let (members, rest) = cell.split_at(levels);
        let (column, measure, shown) = (&rest[0], &rest[1], &rest[2]);
        let name = match column.as_str().expect("column") {
            "" => measure.as_str().expect("measure").to_string(),
            c => format!("{c}|{}", measure.as_str().expect("measure")),
        };
        let j = columns
            .iter()
            .position(|c| *c == name)
            .expect("a column of the answer");
        let row = answer["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r.as_array().expect("row")[..levels] == *members)
            .unwrap_or_else(|| panic!("a row for {members:?}"));
        assert_eq!(
            plain(shown.as_str().expect("text")),
            text(&row[j]),
            "cell {members:?} {name}"
        );
    }
    // Drilling down asked for the finer level under the member clicked, and back up.
    let down = &seen["drill_down"];
    assert!(
        down["query"]["rows"].to_string().contains("region.city"),
        "{down}"
    );
    assert!(
        down["query"]
            .to_string()
            .contains(down["member"].as_str().expect("member"))
    );
    assert!(
        down["up_query"]["rows"]
            .to_string()
            .contains("region.province")
    );
    // Drill-through: the customers listed are the API's, in its order.
    let through = &seen["drill_through"];
    let api = post_json(
        &app,
        ADMIN,
        "/v1/cubes/bank_crm/drillthrough",
        &through["request"],
    )
    .await;
    assert_eq!(through["total"], api["total"]);
    for (shown, want) in through["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .zip(api["rows"].as_array().expect("rows"))
    {
        assert_eq!(shown[0].as_str().map(plain), Some(text(&want[0])));
    }
    // The CSV saved is the API's CSV of the answer on screen (the pivot or the customers).
    let csv = seen["csv"].as_str().expect("csv");
    let mut candidates = Vec::new();
    for (uri, body) in [
        ("/v1/cubes/bank_crm/query", &down["up_query"]),
        ("/v1/cubes/bank_crm/query", &pivot["query"]),
        ("/v1/cubes/bank_crm/drillthrough", &through["request"]),
    ] {
        let (_, _, bytes) = raw(&app, "POST", uri, Some(ADMIN), Some("text/csv"), Some(body)).await;
        candidates.push(String::from_utf8(bytes).expect("utf-8"));
    }
    let drill_all = {
        let mut r = through["request"].clone();
        r["offset"] = json!(0);
        r["limit"] = json!(10_000);
        let (_, _, bytes) = raw(
            &app,
            "POST",
            "/v1/cubes/bank_crm/drillthrough",
            Some(ADMIN),
            Some("text/csv"),
            Some(&r),
        )
        .await;
        String::from_utf8(bytes).expect("utf-8")
    };
    candidates.push(drill_all);
    assert!(
        candidates
            .iter()
            .any(|c| csv_rows(c.as_bytes()) == csv_rows(csv.as_bytes())),
        "the CSV the page saved is none of the API's:\n{csv}"
    );
    assert_eq!(seen["xlsx"]["zip"], true);
    // The customer view opened the customer clicked.
    assert!(
        !seen["customer"]["attributes"]
            .as_object()
            .expect("attributes")
            .is_empty()
    );
    // Pareto and migration show the API's numbers.
    let pareto = post_json(
        &app,
        ADMIN,
        "/v1/cubes/bank_crm/analytics/pareto",
        &seen["pareto"]["request"],
    )
    .await;
    // The summary marks the top 20%: the API's cut at 0.2.
    let top = pareto["cuts"]
        .as_array()
        .expect("cuts")
        .iter()
        .find(|c| c["cut"].as_f64() == Some(0.2))
        .expect("a cut at 20%");
    assert_eq!(seen["pareto"]["members"], top["members"]);
    let share = seen["pareto"]["share"].as_f64().expect("a share");
    assert!((share - top["share"].as_f64().expect("share")).abs() < 1e-9);
    let migration = post_json(
        &app,
        ADMIN,
        "/v1/cubes/bank_crm/analytics/migration",
        &seen["migration"]["request"],
    )
    .await;
    for c in migration["cells"].as_array().expect("cells") {
        let key = format!("{}|{}", text(&c["from"]), text(&c["to"]));
        if c["members"].as_u64() > Some(0) {
            assert_eq!(
                seen["migration"]["cells"][&key], c["members"],
                "transition {key}"
            );
        }
    }
    // A misspelt metric is shown at its line.
    let error = &seen["band_error"];
    assert_eq!(error["line"], error["typo_line"], "{error}");
    assert!(
        error["text"]
            .as_str()
            .expect("text")
            .contains("deposit_balanse"),
        "{error}"
    );
    // The preview's counts are SQL's over the raw facts.
    let preview = &seen["preview"];
    assert_eq!(preview["band"], "customer.deposit_band");
    let month = preview["period"].as_str().expect("period");
    let moves = crate::workbench::sql_moves(
        &crate::workbench::deposit_moves_sql(
            month,
            &["10000", "50000", "200000", "1000000"],
            &["20000", "50000", "200000", "1000000"],
        ),
        5,
    )
    .await;
    let old_labels = ["<10k", "10k-50k", "50k-200k", "200k-1M", "1M+", "unknown"];
    let new_labels = ["<20k", "20k-50k", "50k-200k", "200k-1M", "1M+", "unknown"];
    for (side, labels, pick) in [
        ("old_counts", old_labels, 0usize),
        ("new_counts", new_labels, 1),
    ] {
        for (i, label) in labels.iter().enumerate() {
            let want: u64 = moves
                .iter()
                .filter(|(k, _)| if pick == 0 { k.0 == i } else { k.1 == i })
                .map(|(_, n)| n)
                .sum();
            assert_eq!(
                preview[side][label].as_u64().unwrap_or(0),
                want,
                "{side} {label} in {month}"
            );
        }
    }
    let moved: u64 = moves
        .iter()
        .filter(|(k, _)| k.0 != k.1)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(preview["moved"], moved);
    // A manager's Apply is refused, and the manager sees only their own customers.
    assert_eq!(seen["apply"]["manager_status"], 403);
    let customers = seen["manager_customers"].as_array().expect("customers");
    assert!(!customers.is_empty(), "the manager sees their customers");
    for c in customers {
        let id = c.as_str().expect("id");
        assert!(own.contains(id), "customer {id} is not {manager}'s");
    }
    // Under small-cell suppression a withheld cell or total reads "withheld" (never a number,
    // never 0), exactly where the API withholds one; every other cell is the API's.
    // Two facts: a row whose transactions are few but whose holders are not keeps its balance
    // and withholds its transactions.
    let seen_sup = explorer(
        &base,
        &out,
        &[
            "--admin-key",
            SUPPRESSED,
            "--step",
            "pivot",
            "--rows",
            "region.branch,product.product",
            "--columns",
            "",
            "--measures",
            "txn_amount,deposit_balance",
        ],
    )
    .await;
    let query = &seen_sup["pivot"]["query"];
    let api = post_json(&app, SUPPRESSED, "/v1/cubes/bank_crm/query", query).await;
    let flagged: Vec<(usize, usize)> = api["suppressed"]["cells"]
        .as_array()
        .expect("some cells withheld")
        .iter()
        .map(|c| {
            (
                c[0].as_u64().expect("row") as usize,
                c[1].as_u64().expect("column") as usize,
            )
        })
        .collect();
    // Rows of only small cells are left out, as rows without facts are; what contains them
    // (the grand totals, the branches' sub-totals) is withheld and flagged.
    let totals_withheld: Vec<&str> = api["suppressed"]["totals"]
        .as_array()
        .expect("withheld totals")
        .iter()
        .map(|t| t.as_str().expect("a measure"))
        .collect();
    assert!(
        !totals_withheld.is_empty(),
        "the query has withheld totals: {}",
        api["suppressed"]
    );
    let shown_totals = seen_sup["pivot"]["totals"].as_array().expect("totals");
    for t in shown_totals {
        let (kind, measure, text) = (
            t[0].as_str().unwrap_or(""),
            t[2].as_str().expect("measure"),
            t[3].as_str().expect("text"),
        );
        if kind == "grand" && totals_withheld.contains(&measure) {
            assert_eq!(
                text, "withheld",
                "the grand total of {measure}: {shown_totals:?}"
            );
        }
        assert_ne!(plain(text), "0", "a withheld total must not read 0: {t}");
    }
    assert!(
        shown_totals.iter().any(|t| t[3] == "withheld"),
        "the page shows withheld totals: {shown_totals:?}"
    );
    let names: Vec<&str> = api["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    let rows = api["rows"].as_array().expect("rows");
    for cell in seen_sup["pivot"]["cells"].as_array().expect("cells") {
        let cell = cell.as_array().expect("cell");
        let (members, rest) = cell.split_at(2);
        let (measure, shown) = (
            rest[1].as_str().expect("measure"),
            rest[2].as_str().expect("text"),
        );
        let i = rows
            .iter()
            .position(|r| r.as_array().expect("row")[..2] == *members)
            .unwrap_or_else(|| panic!("a row for {members:?}"));
        let j = names.iter().position(|n| *n == measure).expect("a column");
        if flagged.contains(&(i, j)) {
            assert_eq!(shown, "withheld", "cell {members:?} {measure}");
            assert!(rows[i][j].is_null());
        } else if rows[i][j].is_null() {
            assert!(
                !shown.chars().any(|c| c.is_ascii_digit()),
                "an empty cell shows {shown}"
            );
        } else {
            assert_eq!(
                plain(shown),
                text(&rows[i][j]),
                "cell {members:?} {measure}"
            );
        }
    }
    // Last (it changes the cube the checks above asked): the admin's Apply builds the edited
    // definition, and the new cube serves.
    let seen_apply = explorer(
        &base,
        &out,
        &["--admin-key", ADMIN, "--apply", "--step", "apply_admin"],
    )
    .await;
    assert_eq!(
        seen_apply["apply"]["admin"]["ok"], true,
        "{}",
        seen_apply["apply"]
    );
    let (status, _, bytes) = raw(
        &app,
        "GET",
        "/v1/cubes/bank_crm/definition",
        Some(ADMIN),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let served = String::from_utf8(bytes).expect("utf-8");
    assert!(
        served.contains("edges: [10000, 50000, 250000, 1000000]"),
        "{served}"
    );
    let (_, _, bytes) = raw(&app, "GET", "/v1/cubes/bank_crm", Some(ADMIN), None, None).await;
    let info: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert!(
        info["version"].as_u64() > Some(1),
        "a new snapshot serves: {}",
        info["version"]
    );
    eprintln!(
        "first view in {} ms; the page's files are {} bytes",
        seen["first_view_ms"],
        lattice_server::web::embedded_size().0
    );
    http.stop().await;
}
