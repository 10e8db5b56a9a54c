//! The Postgres wire protocol (`serve --pg-addr`, server/src/pg.rs) with real clients: `psql`,
//! psycopg 3 with server-side parameters and SQLAlchemy's inspector (tests/pg/clients.py).
//! Their answers equal the engine's; a manager's key sees only its scope, suppressed cells
//! stay NULL; bad passwords, wrong aggregates, writes, huge statements, endless statements,
//! garbage bytes and a flood of connections get Postgres errors while the server keeps
//! serving.
//!
//! Where `psql` or the Python clients are missing the tests say so and pass, unless
//! `LATTICE_REQUIRE_PG_CLIENTS` is set (`.ci/run` installs them and sets it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::query::Query;
use lattice_server::auth::Auth;
use lattice_server::{Config, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::auth::{ADMIN_KEY, MANAGER_KEY};
use crate::util::{Listening, listen, parquet_dir};

/// The scope of the manager's and the analyst's keys.
const SCOPE: &str = "region.province in [Zhejiang, Jiangsu]";
/// A key with the scope and the role `analyst`, to whom small cells are withheld.
const ANALYST_KEY: &str = "test-analyst-key-0123456789abcdef";

/// An admin, a manager and an analyst (both scoped by [`SCOPE`]).
fn auth_file(dir: &Path) -> std::path::PathBuf {
    use lattice_server::auth::hash_key;
    let yaml = format!(
        "version: 1\nkeys:\n  - {{name: admin, sha256: {}, roles: [admin]}}\n  - {{name: manager, sha256: {}, roles: [manager], scope: [{SCOPE:?}]}}\n  - {{name: analyst, sha256: {}, roles: [analyst], scope: [{SCOPE:?}]}}\n",
        hash_key(ADMIN_KEY),
        hash_key(MANAGER_KEY),
        hash_key(ANALYST_KEY)
    );
    let path = dir.join("auth.yaml");
    std::fs::write(&path, yaml).expect("auth file");
    path
}

struct Pg {
    server: Server,
    pg: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    _http: Listening,
    _dir: tempfile::TempDir,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(tune: impl FnOnce(&mut Config)) -> Pg {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(dir.path()).await;
    let file = auth_file(dir.path());
    let mut config = Config {
        definitions_dir: Some(dir.path().to_path_buf()),
        data_dir: Some(parquet_dir().to_path_buf()),
        watch_interval: None,
        limits: lattice_server::Limits {
            max_questions_per_minute: 0,
            ..lattice_server::Limits::default()
        },
        auth: Some(Arc::new(
            Auth::from_file(&file).unwrap_or_else(|e| panic!("{e}")),
        )),
        ..Config::default()
    };
    tune(&mut config);
    let server = Server::new(config, vec![served]).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let pg = listener.local_addr().expect("address");
    let task = tokio::spawn(server.serve_pg(listener));
    let http = listen(server.clone()).await;
    Pg {
        server,
        pg,
        task,
        _http: http,
        _dir: dir,
    }
}

/// Whether `program` runs here; a missing one fails the test where clients are required.
fn have(program: &str, probe: &[&str]) -> bool {
    let ok = std::process::Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("LATTICE_REQUIRE_PG_CLIENTS").is_none(),
            "{program} is required (LATTICE_REQUIRE_PG_CLIENTS) but does not run"
        );
        eprintln!("skipped: {program} is not installed");
    }
    ok
}

/// Runs `psql` with `key` as the password; each statement its own `-c`, on one connection.
async fn psql(pg: SocketAddr, key: &str, statements: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new("psql");
    cmd.args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=0"]);
    for s in statements {
        cmd.args(["-c", s]);
    }
    cmd.arg(format!(
        "host=127.0.0.1 port={} dbname=lattice user=tester connect_timeout=10",
        pg.port()
    ))
    .env("PGPASSWORD", key)
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("psql finishes")
        .expect("psql runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The engine's answer to `query` under `access`, as psql prints it (`|` between cells, an
/// empty cell for NULL).
async fn engine_lines(pg: &Pg, access: Access, query: &str) -> Vec<String> {
    let data = pg.server.registry().cube("bank_crm").expect("cube");
    let q = Query::from_json(query).expect("query");
    let a = data.session(access).query(&q).await.expect("answer");
    let mut lines: Vec<String> = a
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    lines.sort();
    lines
}

fn lines(out: &Output) -> Vec<String> {
    let mut l: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    l.sort();
    l
}

fn analyst_access() -> Access {
    Access {
        scope: vec![ScopeRule {
            level: "region.province".into(),
            values: vec!["Zhejiang".into(), "Jiangsu".into()],
        }],
        roles: vec!["analyst".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_answers_equal_the_engine_and_introspects() {
    if !have("psql", &["--version"]) {
        return;
    }
    let pg = start(|_| {}).await;
    let out = psql(
        pg.pg,
        ADMIN_KEY,
        &[
            "SELECT region_province, MEASURE(txn_amount), MEASURE(active_customers) \
           FROM bank_crm WHERE time_year = '2025' GROUP BY region_province",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = engine_lines(
        &pg,
        Access::everything(),
        r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.province"],
            "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
    )
    .await;
    assert!(want.len() > 3);
    assert_eq!(lines(&out), want, "psql and the engine differ");

    // Browsing: \dt lists the cube, information_schema its columns with their types.
    let out = psql(
        pg.pg,
        ADMIN_KEY,
        &[
            "\\dt",
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_name = 'bank_crm' AND column_name IN ('region_province', 'txn_amount', 'txn_count')",
        ],
    )
    .await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("bank_crm"),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("region_province|Utf8"), "{stdout}");
    assert!(stdout.contains("txn_amount|Decimal128(38, 2)"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_sees_only_its_scope_and_suppressed_cells_stay_null() {
    if !have("psql", &["--version"]) {
        return;
    }
    let pg = start(|_| {}).await;
    let out = psql(
        pg.pg,
        MANAGER_KEY,
        &["SELECT region_province, MEASURE(customers) FROM bank_crm GROUP BY 1"],
    )
    .await;
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{got:?} {}", text(&out.stderr));
    assert!(
        got.iter()
            .all(|l| l.starts_with("Jiangsu|") || l.starts_with("Zhejiang|")),
        "{got:?}"
    );
    // Another province matches nothing (as a member no one has).
    let out = psql(
        pg.pg,
        MANAGER_KEY,
        &["SELECT region_province, MEASURE(customers) FROM bank_crm WHERE region_province = 'Hubei' GROUP BY 1"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(lines(&out).is_empty(), "{:?}", lines(&out));
    // Small cells (the analyst's): NULL over the wire exactly where the engine withholds them.
    let out = psql(
        pg.pg,
        ANALYST_KEY,
        &[
            "SELECT region_branch, product_product, MEASURE(txn_amount) FROM bank_crm \
           WHERE time_month = '2025-03' GROUP BY 1, 2",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = engine_lines(
        &pg,
        analyst_access(),
        r#"{"measures": ["txn_amount"], "rows": ["region.branch", "product.product"],
            "filters": [{"level": "time.month", "op": "eq", "value": "2025-03"}]}"#,
    )
    .await;
    let analyst = lines(&out);
    assert_eq!(analyst, want);
    // The manager (same scope, not an analyst) sees the small cells the analyst does not.
    let out = psql(
        pg.pg,
        MANAGER_KEY,
        &[
            "SELECT region_branch, product_product, MEASURE(txn_amount) FROM bank_crm \
           WHERE time_month = '2025-03' GROUP BY 1, 2",
        ],
    )
    .await;
    assert!(
        lines(&out).len() > analyst.len(),
        "suppression withheld nothing: {analyst:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_postgres_errors_and_the_connection_goes_on() {
    if !have("psql", &["--version"]) {
        return;
    }
    let pg = start(|c| c.limits.query_timeout = Duration::from_millis(500)).await;
    // Wrong and missing passwords.
    let out = psql(pg.pg, "not-a-key", &["SELECT 1"]).await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a known API key"),
        "{}",
        text(&out.stderr)
    );
    // On one connection: each bad statement an error, the good ones answered.
    let big = format!("SELECT '{}'", "x".repeat(1_100_000));
    let statements = [
        "SELECT SUM(active_customers) FROM bank_crm",
        "SELECT * FROM bank_crm",
        "SELECT no_such_function(1)",
        "SELEC 1",
        "CREATE TABLE t (a INT)",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        "SELECT 41 + 1",
    ];
    let out = psql(pg.pg, ADMIN_KEY, &statements).await;
    let stderr = text(&out.stderr);
    for want in [
        "use MEASURE(active_customers)",
        "bank_crm is a cube",
        "no_such_function",
        "sql parser error",
        "read-only",
        "longer than the limit of 500 ms",
    ] {
        assert!(stderr.contains(want), "no '{want}' in:\n{stderr}");
    }
    assert!(text(&out.stdout).contains("42"), "{}", text(&out.stdout));
    // A statement over the size limit.
    let file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(file.path(), format!("{big};\nSELECT 7 * 6;\n")).expect("write");
    let out = psql(
        pg.pg,
        ADMIN_KEY,
        &[&format!("\\i {}", file.path().display())],
    )
    .await;
    assert!(
        text(&out.stderr).contains("more than the limit"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("42"));
}

/// Reads what the server sends until it closes the connection (or 5 s pass).
async fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_a_flood_of_connections_leave_the_server_serving() {
    if !have("psql", &["--version"]) {
        return;
    }
    let pg = start(|c| c.limits.max_connections = 4).await;
    // Garbage instead of a startup message, and a startup message with a lying length.
    for bytes in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff],
        vec![0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0],
    ] {
        let mut s = TcpStream::connect(pg.pg).await.expect("connect");
        let _ = s.write_all(&bytes).await;
        let _ = read_all(&mut s).await;
    }
    // More connections than the cap: the ones beyond it are refused with 53300.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(pg.pg).await.expect("connect"));
    }
    // The server counts a connection when its accept loop takes it, which a loaded machine
    // can delay: ask again (an unanswered try is closed) until an answer comes, for 10 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let mut extra = TcpStream::connect(pg.pg).await.expect("connect");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_millis(500), extra.read_to_end(&mut out)).await;
        if !out.is_empty() || std::time::Instant::now() > deadline {
            break out;
        }
    };
    assert!(
        refused.first() == Some(&b'E') && text(&refused).contains("53300"),
        "{refused:?}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = psql(
        pg.pg,
        ADMIN_KEY,
        &["SELECT MEASURE(txn_count) FROM bank_crm"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(lines(&out).len(), 1);
}

/// psycopg binds server-side parameters; SQLAlchemy's inspector reads what Superset reads when a
/// table becomes a dataset, through its own catalog queries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_sqlalchemy_connect_bind_and_introspect() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg/clients.py");
    if !have("python3", &["-c", "import psycopg, sqlalchemy"]) {
        return;
    }
    let pg = start(|_| {}).await;
    let out = tokio::process::Command::new("python3")
        .arg(&script)
        .args(["127.0.0.1", &pg.pg.port().to_string(), ADMIN_KEY])
        .kill_on_drop(true)
        .output()
        .await
        .expect("python runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let want = engine_lines(
        &pg,
        Access::everything(),
        r#"{"measures": ["txn_amount", "active_customers"], "rows": ["region.province"],
            "filters": [{"level": "time.year", "op": "eq", "value": "2025"},
                        {"level": "region.province", "op": "in", "values": ["Zhejiang", "Jiangsu"]}]}"#,
    )
    .await;
    let mut got: Vec<String> = doc["psycopg_rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    got.sort();
    assert_eq!(got, want, "{doc}");
    assert_eq!(doc["psycopg_error"]["sqlstate"], "0A000", "{doc}");
    assert_eq!(doc["after_error"], 1);
    assert!(
        doc["tables"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "bank_crm")),
        "{doc}"
    );
    assert!(
        doc["schemas"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "public")),
        "{doc}"
    );
    // The inspector's own column query (no fallback): every column of the SQL table, in
    // order, typed as the engine types it, measures with their definition's comments.
    let model = &pg.server.registry().cube("bank_crm").expect("cube").model;
    let columns = doc["columns"].as_array().expect("columns");
    let names: Vec<&str> = columns.iter().filter_map(|c| c["name"].as_str()).collect();
    let levels = model
        .dimensions
        .iter()
        .map(|d| d.levels.len())
        .sum::<usize>();
    assert_eq!(names.len(), levels + model.measures.len(), "{doc}");
    let column = |name: &str| {
        columns
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no column {name}: {doc}"))
    };
    assert_eq!(column("region_province")["type"], "TEXT");
    assert_eq!(column("txn_amount")["type"], "NUMERIC");
    assert_eq!(column("active_customers")["type"], "BIGINT");
    for m in &model.measures {
        let want = m.description.as_deref().map_or(Value::Null, |d| d.into());
        assert_eq!(column(&m.name)["comment"], want, "{}", m.name);
    }
    assert!(model.measures.iter().any(|m| m.description.is_some()));
    assert_eq!(
        doc["table_comment"].as_str(),
        model.description.as_deref(),
        "{doc}"
    );
    for none in ["pk", "foreign_keys", "indexes", "unique"] {
        assert_eq!(doc[none], serde_json::json!([]), "{none}: {doc}");
    }
    let by_year = engine_lines(
        &pg,
        Access::everything(),
        r#"{"measures": ["txn_count"], "rows": ["time.year"]}"#,
    )
    .await;
    let rows = doc["sqlalchemy_rows"].as_array().expect("rows");
    assert_eq!(rows.len(), by_year.len(), "{doc}");
}

/// The question suite, each question one cube node can say, asked over the wire with psql:
/// every answer equals the engine's, as psql prints it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_question_suite_over_the_wire_equals_the_engine() {
    if !have("psql", &["--version"]) {
        return;
    }
    let pg = start(|_| {}).await;
    let data = pg.server.registry().cube("bank_crm").expect("cube");
    let mut asked = 0;
    for q in crate::questions::questions() {
        let query = Query::from_json(q.query).expect(q.name);
        let Some(statement) = crate::sql::cube_sql(&data.model, &query) else {
            continue;
        };
        let out = psql(pg.pg, ADMIN_KEY, &[&statement]).await;
        assert!(out.status.success(), "{}: {}", q.name, text(&out.stderr));
        let want = engine_lines(&pg, Access::everything(), q.query).await;
        assert_eq!(lines(&out), want, "{}\n{statement}", q.name);
        asked += 1;
    }
    assert!(asked >= 10, "only {asked} questions asked over the wire");
}
