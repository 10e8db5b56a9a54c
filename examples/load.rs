//! A load generator for `lattice serve`: keep-alive HTTP/1.1 connections that send a mixed
//! slice-and-dice workload to `POST /v1/cubes/{cube}/query` (with some metadata and member
//! look-ups), and the throughput and latency percentiles it saw.
//!
//! Each connection sends one request at a time and waits for the answer (a closed loop, like
//! wrk), cycling through the workload from its own starting point. Latency is measured per
//! request from writing it to reading the last byte of its answer, into an HDR histogram;
//! requests during the warm-up are not counted. Any answer but 200 counts as an error.
//!
//! ```sh
//! cargo run --release --example load -- --addr 127.0.0.1:8080 --connections 64 --seconds 30
//! ```
//! `scripts/load_test.sh` starts the server, runs this and watches the server's memory.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug)]
struct Options {
    addr: SocketAddr,
    cube: String,
    connections: usize,
    seconds: f64,
    warmup: f64,
    threads: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?,
        cube: "bank_crm".into(),
        connections: 64,
        seconds: 30.0,
        warmup: 2.0,
        threads: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => o.addr = value()?.parse().map_err(|e| format!("--addr: {e}"))?,
            "--cube" => o.cube = value()?,
            "--connections" => {
                o.connections = value()?
                    .parse()
                    .map_err(|e| format!("--connections: {e}"))?
            }
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--threads" => o.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            other => {
                return Err(format!(
                    "unknown option {other}; options: --addr --cube --connections --seconds --warmup --threads"
                ));
            }
        }
    }
    Ok(o)
}

/// The mixed workload: what a BI front end asks of the default cube — totals by period,
/// breakdowns by region, product, channel and customer bands, filters on one or two levels,
/// pivots, top N, a period-over-period comparison, totals — plus metadata and member look-ups.
fn workload(cube: &str) -> Vec<Vec<u8>> {
    let queries = [
        r#"{"measures": ["txn_amount", "txn_count"], "rows": ["time.year"]}"#,
        r#"{"measures": ["txn_amount", "active_customers"], "rows": ["time.month"]}"#,
        r#"{"measures": ["fee_income"], "rows": ["time.quarter"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
        r#"{"measures": ["txn_count"], "rows": ["channel.channel"], "columns": ["time.year"]}"#,
        r#"{"measures": ["txn_amount"], "rows": ["region.province"], "order": [{"by": "txn_amount", "dir": "desc"}], "limit": 5}"#,
        r#"{"measures": ["deposit_balance", "loan_balance"], "rows": ["time.year"]}"#,
        r#"{"measures": ["deposit_balance"], "rows": ["time.month"], "filters": [{"level": "time.year", "op": "eq", "value": "2024"}]}"#,
        r#"{"measures": ["customers"], "rows": ["product.category"]}"#,
        r#"{"measures": ["txn_amount", "avg_ticket"], "rows": ["customer.segment"], "totals": true}"#,
        r#"{"measures": ["txn_amount"], "rows": ["customer.deposit_band"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
        r#"{"measures": ["txn_amount"], "rows": ["time.month"], "compare": {"level": "time.month", "lag": 1}, "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
        r#"{"measures": ["interest_margin"], "rows": ["product.category"], "columns": ["time.year"]}"#,
        r#"{"measures": ["txn_count", "active_customers"], "rows": ["customer.type"]}"#,
        r#"{"measures": ["fee_income"], "rows": ["channel.channel"], "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
        r#"{"measures": ["txn_amount"], "rows": ["region.city"], "filters": [{"level": "region.province", "op": "eq", "value": "Guangdong"}]}"#,
        r#"{"measures": ["loan_balance"], "rows": ["customer.loan_band"]}"#,
        r#"{"measures": ["txn_count"], "rows": ["customer.age_band"], "columns": ["customer.type"]}"#,
    ];
    let mut out: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| {
            format!(
                "POST /v1/cubes/{cube}/query HTTP/1.1\r\nHost: lattice\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{q}",
                q.len()
            )
            .into_bytes()
        })
        .collect();
    for path in [
        format!("/v1/cubes/{cube}"),
        format!("/v1/cubes/{cube}/members/region/city?limit=20"),
    ] {
        out.push(format!("GET {path} HTTP/1.1\r\nHost: lattice\r\n\r\n").into_bytes());
    }
    out
}

/// What one connection saw.
struct Tally {
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Reads one response from `s`, using `buf` (which may hold bytes of the next one after).
/// Returns the status.
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<(u16, String)> {
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(|| std::io::Error::other("no content-length in the answer"))?;
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = if status == 200 {
        String::new()
    } else {
        String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned()
    };
    buf.drain(..head_end + length);
    Ok((status, body))
}

async fn connection(
    addr: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    start_at: usize,
    measure_from: Instant,
    done: Arc<AtomicBool>,
) -> std::io::Result<Tally> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut tally = Tally {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).map_err(std::io::Error::other)?,
        errors: 0,
        first_error: None,
    };
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut i = start_at;
    while !done.load(Ordering::Relaxed) {
        let req = &requests[i % requests.len()];
        i += 1;
        let sent = Instant::now();
        s.write_all(req).await?;
        let (status, body) = read_response(&mut s, &mut buf).await?;
        if sent < measure_from {
            continue;
        }
        tally
            .latency
            .saturating_record(sent.elapsed().as_micros() as u64);
        if status != 200 {
            tally.errors += 1;
            tally
                .first_error
                .get_or_insert_with(|| format!("{status} {body}"));
        }
    }
    Ok(tally)
}

fn main() -> std::process::ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let requests = Arc::new(workload(&o.cube));
        let done = Arc::new(AtomicBool::new(false));
        let measure_from = Instant::now() + Duration::from_secs_f64(o.warmup);
        let tasks: Vec<_> = (0..o.connections)
            .map(|c| {
                tokio::spawn(connection(
                    o.addr,
                    requests.clone(),
                    c * 7,
                    measure_from,
                    done.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs_f64(o.warmup + o.seconds)).await;
        done.store(true, Ordering::Relaxed);
        let elapsed = measure_from.elapsed().as_secs_f64();
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        let (mut errors, mut failed, mut first_error) = (0, 0, None);
        for t in tasks {
            match t.await {
                Ok(Ok(t)) => {
                    let _ = all.add(&t.latency);
                    errors += t.errors;
                    if first_error.is_none() {
                        first_error = t.first_error;
                    }
                }
                Ok(Err(e)) => {
                    failed += 1;
                    eprintln!("a connection failed: {e}");
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("a connection task failed: {e}");
                }
            }
        }
        let ms = |q: f64| all.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{} connections, {:.0} s (after {:.0} s warm-up), {} kinds of request",
            o.connections,
            elapsed,
            o.warmup,
            requests.len()
        );
        println!(
            "requests: {}   errors: {errors}   failed connections: {failed}",
            all.len()
        );
        println!("throughput: {:.0} requests/s", all.len() as f64 / elapsed);
        println!(
            "latency ms: p50 {:.3}   p90 {:.3}   p99 {:.3}   p99.9 {:.3}   max {:.3}",
            ms(0.5),
            ms(0.9),
            ms(0.99),
            ms(0.999),
            all.max() as f64 / 1000.0
        );
        if let Some(e) = first_error {
            println!("first error: {e}");
        }
        if errors > 0 || failed > 0 {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        }
    })
}
