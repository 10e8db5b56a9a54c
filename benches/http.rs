//! The HTTP path: `POST /v1/cubes/bank_crm/query` to the server's whole router (routes, limits,
//! admission, metrics, the result cache, JSON in and out) served in-process on a real loopback
//! socket, sent by one keep-alive HTTP/1.1 connection that waits for each answer before the
//! next request; next to the engine alone (`execute`) and DataFusion's SQL twin, in the same
//! run.
//!
//! Two servers over two builds of the same cube: one with the result cache (4,096 entries, the
//! default; after the first request every answer is a cache hit), one with the cache off
//! (`cache_entries: 0`, as `lattice serve --cache-entries 0`; every request is answered
//! afresh). The questions come from the suite (`tests/questions.rs`): four cuboid-served and
//! one the fallback answers. Each is a criterion group `http/<path>/<name>` with the functions
//! `http_cached`, `http_uncached`, `engine` and `datafusion`.
//!
//! Data: the synthetic bank data set at scale 1 (`LATTICE_BENCH_SCALE` overrides), generated
//! once into `~/.cache/lattice/`. Client, server and DataFusion share the machine's cores.

#[path = "../tests/questions.rs"]
mod questions;

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use lattice_engine::query::Query;
use lattice_engine::source::load::load;
use lattice_server::{Config, Served, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUESTIONS: [&str; 5] = [
    "grand_total_of_transactions",
    "amount_by_province",
    "pivot_provinces_by_year",
    "year_on_year_by_month",
    "top_10_customers_by_amount",
];

/// Builds the shipped cube over `dir` and serves it on a free loopback port.
async fn serve(dir: &Path, cache_entries: usize) -> SocketAddr {
    let built = lattice_server::build_definition(
        lattice_defs::BANK_CRM_YAML.to_string(),
        None,
        Some(dir),
        false,
    )
    .await
    .expect("the shipped cube builds");
    let config = Config {
        cache_entries,
        watch_interval: None,
        memory_budget: None,
        ..Config::default()
    };
    let server = Server::new(config, vec![Served { built, path: None }]).expect("server");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

/// One keep-alive HTTP/1.1 connection.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(addr: SocketAddr) -> Connection {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Connection {
            stream,
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// Sends `request` and reads its answer to the last byte; panics unless it is a 200.
    async fn send(&mut self, request: &[u8]) {
        self.stream.write_all(request).await.expect("write");
        let mut chunk = [0u8; 16 * 1024];
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).expect("ASCII head");
        assert!(head.starts_with("HTTP/1.1 200"), "not a 200: {head}");
        let length: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .expect("content-length");
        while self.buf.len() < head_end + length {
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.buf.drain(..head_end + length);
    }
}

fn bench_http(c: &mut Criterion) {
    let (dir, model) = common::bench_model();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let cached_addr = runtime.block_on(serve(&dir, 4096));
    let uncached_addr = runtime.block_on(serve(&dir, 0));
    // The engine alone answers from a third build; DataFusion from its own session.
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    let df = runtime.block_on(load(&model)).expect("load for DataFusion");
    let mut cached = runtime.block_on(Connection::open(cached_addr));
    let mut uncached = runtime.block_on(Connection::open(uncached_addr));

    for q in questions::questions() {
        if !QUESTIONS.contains(&q.name) {
            continue;
        }
        let query = Query::from_json(q.query).expect("question parses");
        let path = runtime
            .block_on(session.query(&query))
            .expect("question answers")
            .meta
            .source;
        let request = format!(
            "POST /v1/cubes/bank_crm/query HTTP/1.1\r\nHost: lattice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            q.query.len(),
            q.query
        )
        .into_bytes();
        let fast = path == "cuboid";
        let mut group = c.benchmark_group(format!("http/{path}/{}", q.name));
        group.sample_size(if fast { 50 } else { 10 });
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(if fast { 1 } else { 3 }));
        // `iters` requests in one go on the runtime, so that criterion times the requests and
        // not a `block_on` per request.
        let requests = |conn: &mut Connection, iters: u64| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    conn.send(&request).await;
                }
                start.elapsed()
            })
        };
        group.bench_function("http_cached", |b| {
            b.iter_custom(|iters| requests(&mut cached, iters))
        });
        // The fallback question answered afresh is as slow as DataFusion's twin: the
        // datafusion sampling then.
        if !fast {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(3));
        }
        group.bench_function("http_uncached", |b| {
            b.iter_custom(|iters| requests(&mut uncached, iters))
        });
        group.bench_function("engine", |b| {
            b.iter(|| runtime.block_on(session.query(&query)).expect("answer"))
        });
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("datafusion", |b| {
            b.iter(|| {
                runtime.block_on(async {
                    df.ctx
                        .sql(q.sql)
                        .await
                        .expect("plan")
                        .collect()
                        .await
                        .expect("run")
                })
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_http);
criterion_main!(benches);
