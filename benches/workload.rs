//! A random BI workload (issue 20): questions drawn the way a BI front end draws them
//! (`bi_question` of `tests/workload.rs`: any levels on rows, sometimes a pivot, filters of every
//! kind, any measures) from a fixed seed, each answered by Lattice (the engine alone) and by
//! DataFusion running the question's SQL twin over the raw Parquet, in the same run, the answers
//! held equal. It reports the share of questions each path answers (`cuboid` when every fact
//! the question reads is answered from a cuboid, `base` when one is answered from the base
//! rows and none by DataFusion, else `fallback`, as `answer.meta.source` says) and the
//! latency percentiles per path and overall.
//!
//! Timing: each question runs once unmeasured (the warm-up, whose answer is the one checked
//! and whose path is reported), then `LATTICE_WORKLOAD_RUNS` times (default 3); its time is
//! the median of those runs. DataFusion the same way. Questions run one after the other.
//!
//! - `LATTICE_WORKLOAD_N`: questions (default 300); `LATTICE_WORKLOAD_SEED`: seed (default 1);
//! - `LATTICE_BENCH_SCALE`: the data set's scale (default 1; generated on first use into
//!   `~/.cache/lattice/`);
//! - `LATTICE_BENCH_SKIP_DF=1`: Lattice only (no DataFusion, no check);
//! - `LATTICE_WORKLOAD_OUT=file.jsonl`: each question as a JSON line (query, SQL twin, path,
//!   times), read by `scripts/workload_compare.py`.
//!
//! ```sh
//! LATTICE_BENCH_SCALE=0.1 cargo bench --bench workload
//! ```

#[path = "../tests/workload.rs"]
mod workload;

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use lattice_engine::query::Query;
use lattice_engine::source::load::load;
use serde_json::json;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `runs` timed runs of `f`, after one untimed run whose result is returned.
fn timed<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let first = f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    (first, times[times.len() / 2])
}

/// Latencies of one path (or all), in nanoseconds.
struct Latencies(Histogram<u64>);

impl Latencies {
    fn new() -> Self {
        Latencies(Histogram::new(3).expect("histogram"))
    }
    fn record(&mut self, d: Duration) {
        self.0
            .record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1))
            .expect("record");
    }
    fn quantile(&self, q: f64) -> Option<u64> {
        (!self.0.is_empty()).then(|| {
            if q >= 1.0 {
                self.0.max()
            } else {
                self.0.value_at_quantile(q)
            }
        })
    }
}

fn fmt_ns(ns: Option<u64>) -> String {
    match ns {
        None => "-".into(),
        Some(ns) if ns < 1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        Some(ns) => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(r) if r >= 10.0 => format!("{r:.0}x"),
        Some(r) => format!("{r:.2}x"),
    }
}

fn main() {
    let n: usize = env("LATTICE_WORKLOAD_N", 300);
    let seed: u64 = env("LATTICE_WORKLOAD_SEED", 1);
    let runs: usize = env::<usize>("LATTICE_WORKLOAD_RUNS", 3).max(1);
    let skip_df = std::env::var_os("LATTICE_BENCH_SKIP_DF").is_some();
    let mut out = std::env::var_os("LATTICE_WORKLOAD_OUT").map(|p| {
        std::io::BufWriter::new(std::fs::File::create(p).expect("create LATTICE_WORKLOAD_OUT"))
    });

    let (dir, model) = common::bench_model();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sources = runtime.block_on(load(&model)).expect("load");
    let session = common::open_session(&runtime, &model, &sources);
    // DataFusion gets its own session over the same files, all cores.
    let df = runtime.block_on(load(&model)).expect("load for DataFusion");

    let mut rng = workload::Rng(seed);
    let paths = ["cuboid", "base", "fallback"];
    let mut lat: Vec<Latencies> = (0..=paths.len()).map(|_| Latencies::new()).collect();
    let mut dft: Vec<Latencies> = (0..=paths.len()).map(|_| Latencies::new()).collect();
    let mut counts = vec![0usize; paths.len() + 1];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); paths.len() + 1];
    let (mut mismatches, mut failures, mut refused) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for i in 0..n {
        let json = workload::bi_question(session.cube(), &mut rng);
        let text = json.to_string();
        let query = Query::from_json(&text).expect("the generator writes valid queries");
        let (answer, took) = timed(runs, || runtime.block_on(session.query(&query)));
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                refused += 1;
                eprintln!("#{i} refused ({e}): {text}");
                continue;
            }
        };
        let path = answer.meta.source;
        let p = paths.iter().position(|x| *x == path).unwrap_or_else(|| {
            panic!("a path this bench does not know: {path} (add it to `paths`)")
        });
        counts[p] += 1;
        counts[paths.len()] += 1;
        lat[p].record(took);
        lat[paths.len()].record(took);
        let sql = workload::workload_sql(&model, &query);
        let mut df_took = None;
        let mut equal = None;
        if !skip_df {
            let (result, t) = timed(runs, || {
                runtime.block_on(async { df.ctx.sql(&sql).await?.collect().await })
            });
            match result {
                Ok(batches) => {
                    dft[p].record(t);
                    dft[paths.len()].record(t);
                    let r = t.as_secs_f64() / took.as_secs_f64().max(1e-9);
                    ratios[p].push(r);
                    ratios[paths.len()].push(r);
                    df_took = Some(t);
                    let diff = workload::first_difference(
                        &workload::answer_rows(&query, &answer),
                        &workload::sql_rows(&query, &batches),
                    );
                    if let Some(d) = &diff {
                        mismatches += 1;
                        if mismatches <= 5 {
                            eprintln!("#{i} differs: {d}\n  {text}\n  {sql}");
                        }
                    }
                    equal = Some(diff.is_none());
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("#{i} DataFusion fails on the twin: {e}");
                }
            }
        }
        if let Some(out) = &mut out {
            let line = json!({
                "i": i,
                "query": json,
                "sql": sql,
                "path": path,
                "facts": answer.meta.facts.iter().map(|f| json!({"fact": f.fact, "source": f.source})).collect::<Vec<_>>(),
                "rows": answer.meta.total_rows,
                "lattice_ns": took.as_nanos() as u64,
                "datafusion_ns": df_took.map(|t| t.as_nanos() as u64),
                "equal": equal,
            });
            writeln!(out, "{line}").expect("write LATTICE_WORKLOAD_OUT");
        }
        if (i + 1) % 50 == 0 {
            eprintln!(
                "{} of {n} questions, {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(out) = &mut out {
        out.flush().expect("flush LATTICE_WORKLOAD_OUT");
    }

    println!(
        "\nrandom BI workload: {n} questions, seed {seed}, data {}, each the median of {runs} runs after a warm-up",
        dir.display()
    );
    println!(
        "| path | questions | share | Lattice p50 | p95 | p99 | max | DataFusion p50 | p95 | p99 | max | DF/Lattice (p50s) | DF/Lattice per question, median |"
    );
    println!(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    let total = counts[paths.len()].max(1);
    for (p, name) in paths.iter().chain(&["all"]).enumerate() {
        let (l, d) = (&lat[p], &dft[p]);
        let of_medians = l
            .quantile(0.5)
            .zip(d.quantile(0.5))
            .map(|(l, d)| d as f64 / l as f64);
        let mut r = ratios[p].clone();
        r.sort_by(f64::total_cmp);
        let per_question = (!r.is_empty()).then(|| r[r.len() / 2]);
        println!(
            "| {name} | {} | {:.0}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            counts[p],
            100.0 * counts[p] as f64 / total as f64,
            fmt_ns(l.quantile(0.5)),
            fmt_ns(l.quantile(0.95)),
            fmt_ns(l.quantile(0.99)),
            fmt_ns(l.quantile(1.0)),
            fmt_ns(d.quantile(0.5)),
            fmt_ns(d.quantile(0.95)),
            fmt_ns(d.quantile(0.99)),
            fmt_ns(d.quantile(1.0)),
            fmt_ratio(of_medians),
            fmt_ratio(per_question),
        );
    }
    println!(
        "\nrefused by Lattice: {refused}; twins DataFusion failed on: {failures}; answers that differ from the twin: {mismatches}{}",
        if skip_df { " (DataFusion skipped)" } else { "" }
    );
    println!("wall time {:.0} s", started.elapsed().as_secs_f64());
}
