//! Counters and latency histograms, read by `GET /metrics` in the Prometheus text format.
//!
//! The series are `prometheus-client` metrics in one [`Registry`], encoded by its Prometheus
//! text (0.0.4) encoder, which writes the `# HELP`/`# TYPE` lines, escapes label values and
//! adds the `_total` of counters (so counters are registered without it).
//!
//! Per route (the route's template, so `/v1/cubes/{cube}/query` is one series whatever the
//! cube): requests by status class, errors by code, and latency as a Prometheus histogram with
//! fixed buckets. The same latencies also go to an HDR histogram per route (3 significant digits
//! from 1 µs to an hour), exposed as quantile gauges since the start: the buckets are what a
//! Prometheus user aggregates across servers and turns into quantiles over a window with
//! `histogram_quantile`; the HDR quantiles are exact to 3 digits where the buckets are coarse
//! (the load test reads them). Per server: queries by the path that answered, rejections by
//! reason, builds by outcome with a duration histogram. Values that live elsewhere in the server
//! (queries running, cube sizes) are read at scrape time into a [`Scrape`].
//!
//! Recording takes a few read locks on the families' maps, atomic adds and two short,
//! uncontended-in-practice locks (the two histograms) per request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hdrhistogram::Histogram as Hdr;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric, MetricEncoder,
    prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::ErrorCode;
use crate::registry::lock;

/// The `Content-Type` of `GET /metrics`: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Upper bounds of the request latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Upper bounds of the build duration buckets, in seconds.
const BUILD_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
/// The HDR quantiles exposed, with their label.
const QUANTILES: [(f64, &str); 4] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99"), (0.999, "0.999")];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// The label of requests no route matched.
const UNMATCHED: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    route: Arc<str>,
    code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QuantileLabels {
    route: Arc<str>,
    quantile: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PathLabels {
    path: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CubeLabels {
    cube: String,
}

/// Which path answered a query.
#[derive(Debug, Clone, Copy)]
pub enum QueryPath {
    Cuboid,
    /// The base rows kept in memory (no cuboid covers the question).
    Base,
    Fallback,
    Cache,
}

impl QueryPath {
    const ALL: [QueryPath; 4] = [
        QueryPath::Cuboid,
        QueryPath::Base,
        QueryPath::Fallback,
        QueryPath::Cache,
    ];

    fn label(self) -> &'static str {
        match self {
            QueryPath::Cuboid => "cuboid",
            QueryPath::Base => "base",
            QueryPath::Fallback => "fallback",
            QueryPath::Cache => "cache",
        }
    }
}

/// Why a query was refused or stopped.
#[derive(Debug, Clone, Copy)]
pub enum Rejection {
    QueueFull,
    Timeout,
    TooManyRows,
}

impl Rejection {
    const ALL: [Rejection; 3] = [
        Rejection::QueueFull,
        Rejection::Timeout,
        Rejection::TooManyRows,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::Timeout => "timeout",
            Rejection::TooManyRows => "too_many_rows",
        }
    }
}

/// Route template -> its HDR latency histogram, in microseconds. The router's templates are
/// few, so this map and every per-route label set stay bounded.
type RouteLatencies = Arc<RwLock<HashMap<Arc<str>, Arc<Mutex<Hdr<u64>>>>>>;

#[derive(Debug)]
pub struct Metrics {
    /// Every series below, registered once; the [`Live`] collector adds those computed at
    /// scrape time.
    registry: Registry,
    routes: RouteLatencies,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    queries: Family<PathLabels, Counter>,
    rejected: Family<ReasonLabels, Counter>,
    builds: Family<OutcomeLabels, Counter>,
    build_duration: Histogram,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// An HDR histogram from 1 to `max` with 3 significant digits.
fn hdr(max: u64) -> Hdr<u64> {
    Hdr::new_with_bounds(1, max, 3).unwrap_or_else(|_| Hdr::new(3).expect("3 digits"))
}

impl Metrics {
    /// Metrics with the route templates given listed from the start (others are added as
    /// requests reach them).
    pub fn new(routes: &[&str]) -> Metrics {
        let routes: RouteLatencies = Arc::new(RwLock::new(
            routes
                .iter()
                .copied()
                .chain([UNMATCHED])
                .map(|r| (Arc::from(r), Arc::new(Mutex::new(hdr(3_600_000_000)))))
                .collect(),
        ));
        let metrics = Metrics {
            registry: Registry::default(),
            routes,
            requests: Family::default(),
            errors: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            queries: Family::default(),
            rejected: Family::default(),
            builds: Family::default(),
            build_duration: Histogram::new(BUILD_BUCKETS),
        };
        // Every path, reason and outcome is a series from the start (at 0), so a rate over
        // the first one seen is not lost.
        for path in QueryPath::ALL {
            metrics
                .queries
                .get_or_create_owned(&PathLabels { path: path.label() });
        }
        for why in Rejection::ALL {
            metrics.rejected.get_or_create_owned(&ReasonLabels {
                reason: why.label(),
            });
        }
        for outcome in ["ok", "failed"] {
            metrics
                .builds
                .get_or_create_owned(&OutcomeLabels { outcome });
        }
        metrics.register()
    }

    /// Registers the series (the registry holds clones: the metrics share their values).
    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register_collector(Box::new(Live {
            started: Instant::now(),
            routes: self.routes.clone(),
        }));
        r.register(
            "lattice_http_requests",
            "HTTP requests answered, by route and status class",
            Described(self.requests.clone()),
        );
        r.register(
            "lattice_http_errors",
            "Error answers, by route and error code",
            Described(self.errors.clone()),
        );
        r.register(
            "lattice_http_request_duration_seconds",
            "Time from a request's arrival to its response, by route",
            Described(self.latency.clone()),
        );
        r.register(
            "lattice_queries",
            "Queries answered, by the path that answered them",
            self.queries.clone(),
        );
        r.register(
            "lattice_queries_rejected",
            "Queries refused or stopped by a limit, by reason",
            self.rejected.clone(),
        );
        r.register(
            "lattice_builds",
            "Cube builds for reloads, by outcome",
            self.builds.clone(),
        );
        r.register(
            "lattice_build_duration_seconds",
            "Time to validate, load and build a reloaded definition",
            self.build_duration.clone(),
        );
        self
    }

    /// The route's label and HDR histogram.
    fn route(&self, route: &str) -> (Arc<str>, Arc<Mutex<Hdr<u64>>>) {
        let known = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get_key_value(route)
            .map(|(k, v)| (k.clone(), v.clone()));
        known.unwrap_or_else(|| {
            let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
            let label: Arc<str> = Arc::from(route);
            let hdr = routes
                .entry(label.clone())
                .or_insert_with(|| Arc::new(Mutex::new(hdr(3_600_000_000))))
                .clone();
            (label, hdr)
        })
    }

    fn record(&self, route: Option<&str>, status: u16, code: Option<&'static str>, took: Duration) {
        let (route, hdr) = self.route(route.unwrap_or(UNMATCHED));
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                status: STATUS_CLASSES[class],
            })
            .inc();
        if let Some(code) = code {
            self.errors
                .get_or_create(&ErrorLabels {
                    route: route.clone(),
                    code,
                })
                .inc();
        }
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
        let us = took.as_micros().min(u128::from(u64::MAX)) as u64;
        lock(&hdr).saturating_record(us.max(1));
    }

    pub fn query(&self, path: QueryPath) {
        self.queries
            .get_or_create(&PathLabels { path: path.label() })
            .inc();
    }

    pub fn rejected(&self, why: Rejection) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: why.label(),
            })
            .inc();
    }

    pub fn build(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "failed" };
        self.builds.get_or_create(&OutcomeLabels { outcome }).inc();
        self.build_duration.observe(took.as_secs_f64());
    }

    /// This registry's series, then `scrape`'s, in the Prometheus text format.
    pub fn render(&self, scrape: &Scrape) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut out, &self.registry)?;
        prometheus_text::encode(&mut out, &scrape.registry)?;
        Ok(out)
    }
}

/// A family whose `# HELP` and `# TYPE` lines are written before its first series too (the
/// encoder skips empty metrics), so a scraper sees the metric from the server's start.
#[derive(Debug)]
struct Described<M>(M);

impl<M: EncodeMetric> EncodeMetric for Described<M> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// The series computed when scraped: the uptime, and the latency quantiles from the routes' HDR
/// histograms.
#[derive(Debug)]
struct Live {
    started: Instant,
    routes: RouteLatencies,
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let uptime = ConstGauge::new(self.started.elapsed().as_secs_f64());
        uptime.encode(encoder.encode_descriptor(
            "lattice_uptime_seconds",
            "Seconds since the server started.",
            None,
            uptime.metric_type(),
        )?)?;

        let mut routes: Vec<_> = self
            .routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(route, h)| (route.clone(), lock(h).clone()))
            .filter(|(_, h)| !h.is_empty())
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut quantiles = encoder.encode_descriptor(
            "lattice_http_request_duration_quantile_seconds",
            "Latency quantiles by route since the start (HDR histogram, 3 significant digits).",
            None,
            MetricType::Gauge,
        )?;
        for (route, h) in routes {
            for (q, quantile) in QUANTILES {
                let labels = QuantileLabels {
                    route: route.clone(),
                    quantile,
                };
                ConstGauge::new(h.value_at_quantile(q) as f64 / 1e6)
                    .encode(quantiles.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Series whose values live elsewhere in the server (queries running, cube sizes), read at
/// scrape time and exposed after [`Metrics`]'s own by [`Metrics::render`].
#[derive(Debug, Default)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// A gauge. `help` ends without a period: the encoder adds one.
    pub fn gauge<N>(&mut self, name: &str, help: &str, value: N)
    where
        N: EncodeGaugeValue + fmt::Debug + Send + Sync + 'static,
    {
        self.registry.register(name, help, ConstGauge::new(value));
    }

    /// A counter kept elsewhere. `name` is without `_total`, which the encoder adds.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.registry.register(name, help, ConstCounter::new(value));
    }

    /// A gauge per cube, labelled `cube`.
    pub fn per_cube<N>(
        &mut self,
        name: &str,
        help: &str,
        values: impl IntoIterator<Item = (String, N)>,
    ) where
        N: EncodeGaugeValue + fmt::Debug + Send + Sync + 'static,
    {
        let values = values
            .into_iter()
            .map(|(cube, v)| (CubeLabels { cube }, v))
            .collect();
        self.registry.register(name, help, PerCube(values));
    }
}

/// Gauges by cube, read once.
#[derive(Debug)]
struct PerCube<N>(Vec<(CubeLabels, N)>);

impl<N: EncodeGaugeValue> EncodeMetric for PerCube<N> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (labels, value) in &self.0 {
            encoder.encode_family(labels)?.encode_gauge(value)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
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
        m.query(QueryPath::Cache);
        let mut scrape = Scrape::default();
        scrape.gauge("lattice_queries_running", "Queries running now", 2_u64);
        scrape.counter("lattice_audit_dropped_lines", "Audit lines dropped", 3);
        scrape.per_cube(
            "lattice_cube_version",
            "The version",
            [("a\"b".to_string(), 7_u64)],
        );
        let out = m.render(&scrape).expect("encodes");
        for line in [
            "# TYPE lattice_uptime_seconds gauge",
            "# TYPE lattice_http_requests_total counter",
            "lattice_http_requests_total{route=\"/health\",status=\"2xx\"} 2",
            "lattice_http_requests_total{route=\"unmatched\",status=\"4xx\"} 1",
            "lattice_http_errors_total{route=\"unmatched\",code=\"not_found\"} 1",
            "# TYPE lattice_http_request_duration_seconds histogram",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.0001\"} 0",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.0005\"} 1",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"0.005\"} 2",
            "lattice_http_request_duration_seconds_bucket{route=\"/health\",le=\"+Inf\"} 2",
            "lattice_http_request_duration_seconds_sum{route=\"/health\"} 0.0033",
            "lattice_http_request_duration_seconds_count{route=\"/health\"} 2",
            "# TYPE lattice_http_request_duration_quantile_seconds gauge",
            "lattice_http_request_duration_quantile_seconds{route=\"unmatched\",quantile=\"0.99\"} 0.00005",
            "lattice_queries_total{path=\"cache\"} 1",
            "lattice_queries_total{path=\"fallback\"} 0",
            "lattice_queries_rejected_total{reason=\"timeout\"} 0",
            "lattice_builds_total{outcome=\"ok\"} 1",
            "lattice_builds_total{outcome=\"failed\"} 0",
            "# TYPE lattice_build_duration_seconds histogram",
            "lattice_build_duration_seconds_bucket{le=\"1\"} 0",
            "lattice_build_duration_seconds_bucket{le=\"2.5\"} 1",
            "lattice_build_duration_seconds_count 1",
            "# HELP lattice_queries_running Queries running now.",
            "lattice_queries_running 2",
            "# TYPE lattice_audit_dropped_lines_total counter",
            "lattice_audit_dropped_lines_total 3",
            // Label values are escaped.
            "lattice_cube_version{cube=\"a\\\"b\"} 7",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
    }

    #[test]
    fn routes_without_requests_have_no_series() {
        let m = Metrics::new(&["/health", "/metrics"]);
        m.record(Some("/health"), 200, None, Duration::from_micros(300));
        let out = m.render(&Scrape::default()).expect("encodes");
        assert!(out.contains("route=\"/health\""), "{out}");
        assert!(!out.contains("route=\"/metrics\""), "{out}");
        assert!(!out.contains("lattice_http_errors_total{"), "{out}");
        assert!(
            out.contains("# TYPE lattice_http_errors_total counter"),
            "{out}"
        );
    }
}
