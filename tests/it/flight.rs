//! Arrow Flight SQL (`serve --flight-addr`, server/src/flight.rs) with arrow-flight's own
//! Flight SQL client: answers equal the engine's, record batch for record batch; a manager's
//! key sees only its scope, an analyst's small cells stay null; a handshake with Basic credentials gives a bearer token; a wrong
//! key, a wrong aggregate and a write are refused with gRPC statuses.

use std::sync::Arc;

use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::RecordBatch;
use futures::TryStreamExt;
use lattice_engine::access::Access;
use lattice_engine::query::Query;
use lattice_server::auth::Auth;
use lattice_server::{Config, Server};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use crate::auth::{ADMIN_KEY, MANAGER_KEY};
use crate::query_suite::{Cell, compare_rows};
use crate::util::parquet_dir;

struct Running {
    server: Server,
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(dir.path()).await;
    let file = crate::auth::auth_file(dir.path(), "region.province in [Zhejiang, Jiangsu]");
    let config = Config {
        definitions_dir: Some(dir.path().to_path_buf()),
        data_dir: Some(parquet_dir().to_path_buf()),
        watch_interval: None,
        auth: Some(Arc::new(
            Auth::from_file(&file).unwrap_or_else(|e| panic!("{e}")),
        )),
        ..Config::default()
    };
    let server = Server::new(config, vec![served]).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(server.serve_flight(listener));
    Running {
        server,
        addr,
        task,
        _dir: dir,
    }
}

async fn client(addr: std::net::SocketAddr) -> FlightSqlServiceClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    FlightSqlServiceClient::new(channel)
}

/// Runs `sql`: every batch of every endpoint.
async fn run(
    c: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, arrow_flight::error::FlightError> {
    let info = c.execute(sql.to_string(), None).await?;
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.expect("a ticket");
        let stream = c.do_get(ticket).await?;
        out.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok(out)
}

fn cells(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut rows: Vec<Vec<Cell>> = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| Cell::from_arrow(c, r)).collect());
        }
    }
    rows.sort_by_key(|r| r[0].to_string());
    rows
}

async fn engine(run: &Running, access: Access, query: &str) -> Vec<Vec<Cell>> {
    let data = run.server.registry().cube("bank_crm").expect("cube");
    let q = Query::from_json(query).expect("query");
    let a = data.session(access).query(&q).await.expect("answer");
    let types: Vec<Option<&str>> = a
        .columns
        .iter()
        .map(|c| if c.kind == "level" { None } else { c.ty })
        .collect();
    let mut rows = crate::query_props::answer_cells(&a.rows, &types);
    rows.sort_by_key(|r| r[0].to_string());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_answers_equal_the_engine_under_each_key() {
    let running = start().await;
    let mut c = client(running.addr).await;
    // No credential: refused.
    let e = run(&mut c, "SELECT 1").await.expect_err("no key");
    assert!(e.to_string().contains("authorization"), "{e}");
    // A handshake with Basic user:key gives the bearer token.
    c.handshake("admin", ADMIN_KEY).await.expect("handshake");
    let sql = "SELECT region_province, MEASURE(txn_amount), MEASURE(active_customers) \
               FROM bank_crm WHERE time_year = '2025' GROUP BY region_province";
    let got = cells(&run(&mut c, sql).await.expect("answer"));
    let want = engine(
        &running,
        Access::everything(),
        r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.province"],
            "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
    )
    .await;
    assert!(want.len() > 3);
    compare_rows("flight", &got, &want).expect("same as the engine");
    // A wrong aggregate and a write: invalid_argument with the cube's message.
    let e = run(&mut c, "SELECT SUM(active_customers) FROM bank_crm")
        .await
        .expect_err("wrong aggregate");
    assert!(e.to_string().contains("MEASURE(active_customers)"), "{e}");
    let e = run(&mut c, "CREATE TABLE t (a INT)")
        .await
        .expect_err("write");
    assert!(!e.to_string().is_empty());
    // The manager's key: only its provinces.
    let mut m = client(running.addr).await;
    m.set_token(MANAGER_KEY.to_string());
    let got = cells(
        &run(
            &mut m,
            "SELECT region_province, MEASURE(customers) FROM bank_crm GROUP BY 1",
        )
        .await
        .expect("answer"),
    );
    let names: Vec<String> = got.iter().map(|r| r[0].to_string()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.contains("Jiangsu") || n.contains("Zhejiang")),
        "{names:?}"
    );
    // An analyst's token (small-cell suppression, same scope): null exactly where the engine
    // withholds a cell, and some cell is withheld.
    let mut a = client(running.addr).await;
    a.set_token(crate::auth::token(
        jsonwebtoken::Algorithm::HS256,
        serde_json::json!({"sub": "analyst", "lattice_roles": ["analyst"],
                           "lattice_scope": ["region.province in [Zhejiang, Jiangsu]"]}),
    ));
    let sql = "SELECT region_branch, product_product, MEASURE(txn_amount) FROM bank_crm \
               WHERE time_month = '2025-03' GROUP BY 1, 2";
    let got = cells(&run(&mut a, sql).await.expect("answer"));
    let analyst = Access {
        scope: vec![lattice_engine::access::ScopeRule {
            level: "region.province".into(),
            values: vec!["Zhejiang".into(), "Jiangsu".into()],
        }],
        roles: vec!["analyst".into()],
    };
    let query = r#"{"measures": ["txn_amount"], "rows": ["region.branch", "product.product"],
                    "filters": [{"level": "time.month", "op": "eq", "value": "2025-03"}]}"#;
    let want = engine(&running, analyst, query).await;
    assert!(!want.is_empty());
    compare_rows("flight analyst", &got, &want).expect("same as the engine");
    let manager = run(&mut m, sql).await.expect("answer");
    assert!(
        cells(&manager).len() > got.len(),
        "suppression withheld nothing: {got:?}"
    );
    // A wrong key.
    let mut w = client(running.addr).await;
    w.set_token("not-a-key".into());
    let e = run(&mut w, "SELECT 1").await.expect_err("wrong key");
    assert!(e.to_string().contains("not a known key"), "{e}");
    assert!(w.handshake("x", "not-a-key").await.is_err());
}

/// Every batch behind a `FlightInfo`.
async fn fetch(
    c: &mut FlightSqlServiceClient<Channel>,
    info: arrow_flight::FlightInfo,
) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for endpoint in info.endpoint {
        let stream = c
            .do_get(endpoint.ticket.expect("a ticket"))
            .await
            .expect("do_get");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("batches"));
    }
    out
}

/// The text of column `name` of `batches`, row by row.
fn texts(batches: &[RecordBatch], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let col = b
            .column_by_name(name)
            .unwrap_or_else(|| panic!("a column {name}"));
        for r in 0..col.len() {
            out.push(
                Cell::from_arrow(col, r)
                    .to_string()
                    .trim_matches('"')
                    .to_string(),
            );
        }
    }
    out
}

/// What a driver lists before it asks: the catalog, the schema, each cube as a table with its
/// columns, the table types and the server's SQL info; all behind a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flight_sql_lists_the_catalog_as_drivers_ask() {
    use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
    let running = start().await;
    let mut anonymous = client(running.addr).await;
    assert!(
        anonymous.get_catalogs().await.is_err(),
        "no key, no catalog"
    );
    let mut c = client(running.addr).await;
    c.set_token(MANAGER_KEY.to_string());
    let info = c.get_catalogs().await.expect("catalogs");
    assert_eq!(
        texts(&fetch(&mut c, info).await, "catalog_name"),
        ["lattice"]
    );
    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("lattice".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .expect("schemas");
    assert_eq!(
        texts(&fetch(&mut c, info).await, "db_schema_name"),
        ["public"]
    );
    let info = c
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: Some("pub%".into()),
            table_name_filter_pattern: Some("bank%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("tables");
    let batches = fetch(&mut c, info).await;
    assert_eq!(texts(&batches, "table_name"), ["bank_crm"]);
    assert_eq!(texts(&batches, "table_type"), ["TABLE"]);
    // The table's schema, as IPC bytes: the columns the SQL layer gives the cube.
    let bytes = batches[0]
        .column_by_name("table_schema")
        .expect("table_schema")
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BinaryArray>()
        .expect("binary")
        .value(0)
        .to_vec();
    let schema =
        datafusion::arrow::ipc::convert::try_schema_from_ipc_buffer(&bytes).expect("an IPC schema");
    for column in [
        "region_province",
        "time_month",
        "customer_id",
        "txn_amount",
        "active_customers",
    ] {
        assert!(
            schema.field_with_name(column).is_ok(),
            "{column} in {schema:?}"
        );
    }
    let info = c
        .get_tables(CommandGetTables {
            table_name_filter_pattern: Some("nothing%".into()),
            ..CommandGetTables::default()
        })
        .await
        .expect("tables");
    assert!(texts(&fetch(&mut c, info).await, "table_name").is_empty());
    let info = c.get_table_types().await.expect("table types");
    assert_eq!(texts(&fetch(&mut c, info).await, "table_type"), ["TABLE"]);
    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
        ])
        .await
        .expect("sql info");
    let batches = fetch(&mut c, info).await;
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
}

/// An engine answer's rows as text (decimals exact, counts as digits).
async fn engine_texts(run: &Running, access: Access, query: &str) -> Vec<Vec<String>> {
    let data = run.server.registry().cube("bank_crm").expect("cube");
    let q = Query::from_json(query).expect("query");
    let a = data.session(access).query(&q).await.expect("answer");
    a.rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect()
        })
        .collect()
}

/// A Python program with the ADBC Flight SQL driver: a statement, one prepared statement bound
/// twice, the catalog it lists and the table's columns; equal to the engine's answers, and a
/// manager's key sees only its scope. Skipped where the driver is missing, unless
/// `LATTICE_REQUIRE_FLIGHT_CLIENTS` is set (`.ci/run` installs it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adbc_driver_asks_statements_prepared_statements_and_the_catalog() {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flight/adbc_client.py");
    let running = start().await;
    let uri = format!("grpc://{}", running.addr);
    let ask = |key: &'static str| {
        let (script, uri) = (script.clone(), uri.clone());
        async move {
            tokio::process::Command::new("python3")
                .arg(&script)
                .args([&uri, key])
                .kill_on_drop(true)
                .output()
                .await
                .expect("python3 runs")
        }
    };
    let out = ask(ADMIN_KEY).await;
    if out.status.code() == Some(3) {
        assert!(
            std::env::var_os("LATTICE_REQUIRE_FLIGHT_CLIENTS").is_none(),
            "adbc-driver-flightsql is required (LATTICE_REQUIRE_FLIGHT_CLIENTS) but missing"
        );
        eprintln!("skipped: adbc-driver-flightsql is not installed");
        return;
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let texts = |v: &serde_json::Value| -> Vec<Vec<String>> {
        serde_json::from_value(v.clone()).expect("rows of text")
    };
    let want = engine_texts(
        &running,
        Access::everything(),
        r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.province"]}"#,
    )
    .await;
    assert_eq!(texts(&got["statement"]), want);
    for year in ["2025", "2024"] {
        let want = engine_texts(
            &running,
            Access::everything(),
            &format!(
                r#"{{"measures": ["txn_amount"], "rows": ["region.province"],
                    "filters": [{{"level": "time.year", "op": "eq", "value": "{year}"}}]}}"#
            ),
        )
        .await;
        assert_eq!(texts(&got["prepared"][year]), want, "bound to {year}");
    }
    assert_eq!(
        got["objects"],
        serde_json::json!([["lattice", "public", "bank_crm", "TABLE"]])
    );
    assert_eq!(got["columns"]["region_province"], "string");
    assert_eq!(got["columns"]["txn_amount"], "decimal128(38, 2)");
    let error = got["error"].as_str().expect("an error");
    assert!(error.contains("MEASURE(active_customers)"), "{error}");
    // The manager's key: its two provinces only, prepared or not.
    let out = ask(MANAGER_KEY).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for rows in [&got["statement"], &got["prepared"]["2025"]] {
        let provinces: Vec<String> = texts(rows).into_iter().map(|r| r[0].clone()).collect();
        assert_eq!(provinces, ["Jiangsu", "Zhejiang"], "{rows}");
    }
}
