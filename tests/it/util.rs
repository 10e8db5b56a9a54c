//! Shared helpers: a small generated data set, made once per test binary.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

/// Scale of the data sets tests use: 1,000 customers, about 20k transactions.
pub const TEST_SCALE: f64 = 0.01;
pub const TEST_SEED: u64 = 7;

fn make(format: DataFormat) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("lattice-it-")
        .tempdir()
        .expect("tempdir")
        .keep();
    generate(
        &GenOptions {
            scale: TEST_SCALE,
            seed: TEST_SEED,
            format,
        },
        &dir,
    )
    .expect("generate test data");
    dir
}

/// The test data set as Parquet (generated once, shared by the tests of this binary).
pub fn parquet_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| make(DataFormat::Parquet))
}

/// The same data set (same seed) as CSV.
pub fn csv_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| make(DataFormat::Csv))
}

/// The shipped bank_crm definition, with sources in `dir` (and `.parquet` swapped for `.csv`
/// when `csv`).
pub fn bank_crm(dir: &Path, csv: bool) -> Result<lattice_defs::Model, lattice_defs::Diagnostics> {
    let yaml = if csv {
        lattice_defs::BANK_CRM_YAML.replace(".parquet", ".csv")
    } else {
        lattice_defs::BANK_CRM_YAML.to_string()
    };
    lattice_defs::parse_str(&yaml, "bank_crm.yaml", dir)
}

/// `yaml` (a definition shaped like the shipped one) with its whole `aggregates:` section — up
/// to the next blank line — replaced by `section`.
pub fn with_aggregates(yaml: &str, section: &str) -> String {
    let start = yaml.find("\naggregates:\n").expect("an aggregates section") + 1;
    let end = yaml[start..]
        .find("\n\n")
        .map_or(yaml.len(), |e| start + e + 1);
    format!("{}{section}{}", &yaml[..start], &yaml[end..])
}

/// Runs a future to completion on a fresh single-threaded runtime (for proptest bodies).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Proptest cases per run: `LATTICE_PROPTEST_CASES`, else `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("LATTICE_PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// The shipped `bank_crm` definition written into `dir` and built over the test data, for a
/// server to serve from that folder.
pub async fn shipped_cube_in(dir: &Path) -> lattice_server::Served {
    shipped_cube_with(dir, &lattice_engine::build::BuildOptions::default()).await
}

/// [`shipped_cube_in`], built without its base rows: a question no cuboid covers goes to
/// DataFusion, on the server's query runtime, under its time limit (what the tests of the
/// fallback, time limits and cancellation need).
pub async fn shipped_fallback_cube_in(dir: &Path) -> lattice_server::Served {
    let options = lattice_engine::build::BuildOptions {
        without_base: true,
        ..Default::default()
    };
    shipped_cube_with(dir, &options).await
}

async fn shipped_cube_with(
    dir: &Path,
    options: &lattice_engine::build::BuildOptions,
) -> lattice_server::Served {
    let path = dir.join("bank_crm.yaml");
    std::fs::write(&path, lattice_defs::BANK_CRM_YAML).expect("write definition");
    let built = lattice_server::build_definition_with(
        lattice_defs::BANK_CRM_YAML.to_string(),
        Some(&path),
        Some(parquet_dir()),
        options,
    )
    .await
    .expect("the shipped cube builds");
    lattice_server::Served {
        built,
        path: Some(path),
    }
}

/// The shipped cube over the test data, served (without watching files) on a free loopback
/// port.
pub async fn serve_shipped() -> Listening {
    let built = lattice_server::build_definition(
        lattice_defs::BANK_CRM_YAML.to_string(),
        None,
        Some(parquet_dir()),
        false,
    )
    .await
    .expect("the shipped cube builds");
    let server = lattice_server::Server::new(
        lattice_server::Config {
            watch_interval: None,
            ..lattice_server::Config::default()
        },
        vec![lattice_server::Served { built, path: None }],
    )
    .expect("server");
    listen(server).await
}

/// POSTs the JSON `body` to `path` of a server on `addr` over a fresh connection; the status
/// and the JSON body.
pub async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    send_json(addr, "POST", path, "application/json", body).await
}

/// `method path` with `body` sent as `content_type` on its own connection: the status and the
/// JSON answer.
pub async fn send_json(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let status = head[9..12].parse().expect("status");
    (status, serde_json::from_str(body).expect("JSON body"))
}

/// A server listening on a free loopback port until [`Listening::stop`].
#[derive(Debug)]
pub struct Listening {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Serves `server` on 127.0.0.1 at a free port.
pub async fn listen(server: lattice_server::Server) -> Listening {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    Listening {
        addr,
        stop: Some(stop),
        task,
    }
}

impl Listening {
    /// Tells the server to stop as SIGTERM would, without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server as SIGTERM would and waits (at most 30 s) until it has stopped.
    pub async fn stop(mut self) {
        self.signal_stop();
        tokio::time::timeout(std::time::Duration::from_secs(30), &mut self.task)
            .await
            .expect("the server stops")
            .expect("the server task")
            .expect("serve ends cleanly");
    }
}

/// A server for the whole test binary, listening until the binary exits: `make` builds it on a
/// thread of its own with its own runtime, because `#[tokio::test]` makes a runtime per test and
/// a server spawned on one test's runtime would stop when that test ends. Call it from a
/// `OnceLock` so the tests of a module share one build; it blocks until the server listens.
pub fn serve_for_the_binary<F, Fut>(make: F) -> std::net::SocketAddr
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = lattice_server::Server>,
{
    let (addr, listening) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("shared-test-server".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let served = listen(make().await).await;
                addr.send(served.addr)
                    .expect("the test waits for the address");
                // Never stopped: the server (and its runtimes) end with the process.
                std::future::pending::<()>().await;
            });
        })
        .expect("a thread for the shared server");
    listening.recv().expect("the shared server starts")
}

/// Checks `value` against the schema `name` of the server's OpenAPI document, as a client
/// generated from it would read it: every key a documented property (through `$ref`, `allOf`
/// for flattened parts, arrays, maps and nullable alternatives), every required one there, and
/// each value of its documented type. Panics with the path of the first mismatch. The
/// published schema is the engine's type itself, so this holds the HTTP answer to it.
pub fn assert_conforms(name: &str, value: &serde_json::Value) {
    let doc: serde_json::Value =
        serde_json::from_str(lattice_server::openapi::document()).expect("json");
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    if let Some(mismatch) = mismatch(&doc, &schema, value, name) {
        panic!("the answer does not read as its OpenAPI schema {name}: {mismatch}\n{value}");
    }
}

fn mismatch(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
    at: &str,
) -> Option<String> {
    use serde_json::Value;
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let target = &doc["components"]["schemas"][name];
        assert!(!target.is_null(), "{at}: no schema {name}");
        return mismatch(doc, target, value, at);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            let fits = alts.iter().any(|a| mismatch(doc, a, value, at).is_none());
            return (!fits).then(|| format!("{at}: none of the {key} alternatives"));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::Array(t) => t.iter().filter_map(Value::as_str).collect(),
            t => t.as_str().into_iter().collect(),
        };
        let fits = |t: &str| match t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            return Some(format!("{at}: {value} is not {types:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !value.is_null()
        && !allowed.contains(value)
    {
        return Some(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Array(items) => {
            let item = schema.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, v)| mismatch(doc, item, v, &format!("{at}[{i}]")))
        }
        Value::Object(map) => object_mismatch(doc, schema, map, at),
        _ => None,
    }
}

/// An object against its properties (its `allOf` parts' too: serde's `flatten`).
fn object_mismatch(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    map: &serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Option<String> {
    use serde_json::Value;
    let mut properties = serde_json::Map::new();
    let mut required: Vec<&str> = Vec::new();
    let mut parts = vec![schema];
    while let Some(part) = parts.pop() {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap_or(r)],
            None => part,
        };
        if let Some(p) = part.get("properties").and_then(Value::as_object) {
            properties.extend(p.clone());
        }
        if let Some(r) = part.get("required").and_then(Value::as_array) {
            required.extend(r.iter().filter_map(Value::as_str));
        }
        parts.extend(
            part.get("allOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    if let Some(missing) = required.iter().find(|r| !map.contains_key(**r)) {
        return Some(format!("{at}: no `{missing}`"));
    }
    let extra = schema.get("additionalProperties");
    for (key, v) in map {
        let at = format!("{at}.{key}");
        let found = match (properties.get(key), extra) {
            (Some(s), _) => mismatch(doc, s, v, &at),
            (None, Some(s)) if s.is_object() => mismatch(doc, s, v, &at),
            // A free-form object (a map of measures) documents no properties.
            (None, _) if properties.is_empty() => None,
            (None, _) => Some(format!("{at}: not documented")),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}
