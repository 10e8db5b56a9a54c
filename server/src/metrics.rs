//! Counters and latency histograms, read by `GET /metrics` in the Prometheus text format.
//!
//! Per route (the route's template, so `/v1/cubes/{cube}/query` is one series whatever the
//! cube): requests by status class, errors by code, and latency in an HDR histogram (3
//! significant digits from 1 µs to an hour), exported as a Prometheus histogram with fixed
//! buckets and as quantile gauges. Per server: queries by the path that answered, rejections by
//! reason, builds by outcome with a duration histogram. Recording takes a few atomic adds and
//! one short, uncontended-in-practice lock per request.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hdrhistogram::Histogram;

use crate::error::ErrorCode;
use crate::registry::lock;

/// Upper bounds of the exported histogram buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];
/// The label of requests no route matched.
const UNMATCHED: &str = "unmatched";

#[derive(Debug)]
struct RouteStats {
    route: String,
    /// 1xx .. 5xx.
    status: [AtomicU64; 5],
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Microseconds.
    latency: Mutex<Histogram<u64>>,
    sum_us: AtomicU64,
}

impl RouteStats {
    fn new(route: &str) -> RouteStats {
        RouteStats {
            route: route.to_string(),
            status: Default::default(),
            errors: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(histogram(3_600_000_000)),
            sum_us: AtomicU64::new(0),
        }
    }
}

/// Which path answered a query.
#[derive(Debug, Clone, Copy)]
pub enum QueryPath {
    Cuboid,
    Fallback,
    Cache,
}

/// Why a query was refused or stopped.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    QueueFull,
    Timeout,
    TooManyRows,
}

#[derive(Debug)]
pub struct Metrics {
    /// By route template: the router's templates are few, so the label set stays bounded.
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
    /// By [`QueryPath`].
    queries: [AtomicU64; 3],
    /// By [`Rejection`].
    rejected: [AtomicU64; 3],
    builds_ok: AtomicU64,
    builds_failed: AtomicU64,
    /// Milliseconds.
    build_ms: Mutex<Histogram<u64>>,
    build_sum_ms: AtomicU64,
    started: Instant,
}

fn histogram(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).unwrap_or_else(|_| Histogram::new(3).expect("3 digits"))
}

impl Metrics {
    /// Metrics with the route templates given listed from the start (others are added as
    /// requests reach them).
    pub fn new(routes: &[&str]) -> Metrics {
        let routes = routes
            .iter()
            .copied()
            .chain([UNMATCHED])
            .map(|r| (r.to_string(), Arc::new(RouteStats::new(r))))
            .collect();
        Metrics {
            routes: RwLock::new(routes),
            queries: Default::default(),
            rejected: Default::default(),
            builds_ok: AtomicU64::new(0),
            builds_failed: AtomicU64::new(0),
            build_ms: Mutex::new(histogram(86_400_000)),
            build_sum_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    fn route(&self, route: &str) -> Arc<RouteStats> {
        let known = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(route)
            .cloned();
        known.unwrap_or_else(|| {
            self.routes
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(route.to_string())
                .or_insert_with(|| Arc::new(RouteStats::new(route)))
                .clone()
        })
    }

    /// The routes' stats, by template.
    fn all_routes(&self) -> Vec<Arc<RouteStats>> {
        let mut v: Vec<_> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.route.cmp(&b.route));
        v
    }

    fn record(&self, route: Option<&str>, status: u16, code: Option<&'static str>, took: Duration) {
        let r = self.route(route.unwrap_or(UNMATCHED));
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        r.status[class].fetch_add(1, Ordering::Relaxed);
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        r.sum_us.fetch_add(us, Ordering::Relaxed);
        lock(&r.latency).saturating_record(us.max(1));
        if let Some(code) = code {
            *lock(&r.errors).entry(code).or_insert(0) += 1;
        }
    }

    pub fn query(&self, path: QueryPath) {
        self.queries[path as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, why: Rejection) {
        self.rejected[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn build(&self, ok: bool, took: Duration) {
        if ok {
            &self.builds_ok
        } else {
            &self.builds_failed
        }
        .fetch_add(1, Ordering::Relaxed);
        let ms = took.as_millis() as u64;
        self.build_sum_ms.fetch_add(ms, Ordering::Relaxed);
        lock(&self.build_ms).saturating_record(ms.max(1));
    }

    /// Writes this registry's series in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let routes = self.all_routes();
        header(
            out,
            "lattice_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
        );
        let _ = writeln!(
            out,
            "lattice_uptime_seconds {}",
            self.started.elapsed().as_secs_f64()
        );

        header(
            out,
            "lattice_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status class.",
        );
        for r in &routes {
            for (c, n) in r.status.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "lattice_http_requests_total{{route=\"{}\",status=\"{}xx\"}} {n}",
                        r.route,
                        c + 1
                    );
                }
            }
        }
        header(
            out,
            "lattice_http_errors_total",
            "counter",
            "Error answers, by route and error code.",
        );
        for r in &routes {
            for (code, n) in lock(&r.errors).iter() {
                let _ = writeln!(
                    out,
                    "lattice_http_errors_total{{route=\"{}\",code=\"{code}\"}} {n}",
                    r.route
                );
            }
        }

        header(
            out,
            "lattice_http_request_duration_seconds",
            "histogram",
            "Time from a request's arrival to its response, by route.",
        );
        let mut quantiles = String::new();
        for r in &routes {
            let h = lock(&r.latency).clone();
            if h.is_empty() {
                continue;
            }
            for le in BUCKETS {
                let n = h.count_between(0, (le * 1e6) as u64);
                let _ = writeln!(
                    out,
                    "lattice_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{le}\"}} {n}",
                    r.route
                );
            }
            let _ = writeln!(
                out,
                "lattice_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}",
                r.route,
                h.len()
            );
            let _ = writeln!(
                out,
                "lattice_http_request_duration_seconds_sum{{route=\"{}\"}} {}",
                r.route,
                r.sum_us.load(Ordering::Relaxed) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "lattice_http_request_duration_seconds_count{{route=\"{}\"}} {}",
                r.route,
                h.len()
            );
            for q in QUANTILES {
                let _ = writeln!(
                    quantiles,
                    "lattice_http_request_duration_quantile_seconds{{route=\"{}\",quantile=\"{q}\"}} {}",
                    r.route,
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
        }
        header(
            out,
            "lattice_http_request_duration_quantile_seconds",
            "gauge",
            "Latency quantiles by route since the start (HDR histogram, 3 significant digits).",
        );
        out.push_str(&quantiles);

        header(
            out,
            "lattice_queries_total",
            "counter",
            "Queries answered, by the path that answered them.",
        );
        for (i, path) in ["cuboid", "fallback", "cache"].iter().enumerate() {
            let _ = writeln!(
                out,
                "lattice_queries_total{{path=\"{path}\"}} {}",
                self.queries[i].load(Ordering::Relaxed)
            );
        }
        header(
            out,
            "lattice_queries_rejected_total",
            "counter",
            "Queries refused or stopped by a limit, by reason.",
        );
        for (i, why) in ["queue_full", "timeout", "too_many_rows"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "lattice_queries_rejected_total{{reason=\"{why}\"}} {}",
                self.rejected[i].load(Ordering::Relaxed)
            );
        }

        header(
            out,
            "lattice_builds_total",
            "counter",
            "Cube builds for reloads, by outcome.",
        );
        let _ = writeln!(
            out,
            "lattice_builds_total{{outcome=\"ok\"}} {}",
            self.builds_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "lattice_builds_total{{outcome=\"failed\"}} {}",
            self.builds_failed.load(Ordering::Relaxed)
        );
        let h = lock(&self.build_ms).clone();
        header(
            out,
            "lattice_build_duration_seconds",
            "histogram",
            "Time to validate, load and build a reloaded definition.",
        );
        for le in [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0] {
            let _ = writeln!(
                out,
                "lattice_build_duration_seconds_bucket{{le=\"{le}\"}} {}",
                h.count_between(0, (le * 1e3) as u64)
            );
        }
        let _ = writeln!(
            out,
            "lattice_build_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.len()
        );
        let sum_ms = self.build_sum_ms.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "lattice_build_duration_seconds_sum {}",
            sum_ms as f64 / 1e3
        );
        let _ = writeln!(out, "lattice_build_duration_seconds_count {}", h.len());
    }
}

/// Writes `# HELP` and `# TYPE` for a series.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
pub fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times every request and counts it under its route and status.
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let response = next.run(req).await;
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    metrics.record(
        route.as_ref().map(MatchedPath::as_str),
        response.status().as_u16(),
        code,
        start.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_counters_render_as_prometheus_text() {
        let m = Metrics::new(&["/health"]);
        m.record(Some("/health"), 200, None, Duration::from_micros(300));
        m.record(Some("/health"), 200, None, Duration::from_millis(3));
        m.record(None, 404, Some("not_found"), Duration::from_micros(50));
        m.build(true, Duration::from_millis(1500));
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "lattice_http_requests_total{route=\"/health\",status=\"2xx\"} 2",
            "lattice_http_requests_total{route=\"unmatched\",status=\"4xx\"} 1",
            "lattice_http_errors_total{route=\"unmatched\",code=\"not_found\"} 1",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.0005\"} 1",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.005\"} 2",
            "lattice_http_request_duration_seconds_count{route=\"/health\"} 2",
            "lattice_builds_total{outcome=\"ok\"} 1",
            "lattice_build_duration_seconds_bucket{le=\"2.5\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }
}
