//! # lattice-server
//!
//! The HTTP shell over the engine: axum routes, limits, metrics and hot reload. It holds no
//! analytics of its own.
//!
//! ```text
//! request --metrics (route, status, latency)--> catch panics --> CORS
//!   --gate: Authorization -> Principal (401), audit line after the answer--> body limit --> route
//!   /v1/cubes/{cube}/query --Registry: the cube's slot --> Arc<Snapshot> (loaded once)
//!       --Admission (bounded running + bounded queue: 429)--> QueryCache / engine
//!       (inline when a cuboid answers; on the query runtime when DataFusion must: 504 on time)
//!   PUT /v1/cubes/{cube}/definition --parse (400 with line:column)--> build runtime
//!       --load + build--> write the file (temporary + rename) --> swap the slot's snapshot
//! ```
//!
//! - [`Server`]: the state and the router; [`Server::serve`] runs it until a shutdown signal
//!   and lets the requests in flight finish.
//! - `listen`: the accept loop under it: at most `max_connections` open, and read timeouts
//!   for headers, bodies and idle keep-alive connections, so slow clients cannot hold them.
//! - [`registry`]: the served cubes, one atomically swapped [`registry::Snapshot`] each.
//! - [`build`]: definition text to a built cube, the same at start and on reload.
//! - `reload`: `PUT .../definition` and the watcher of definition files.
//! - `query`: the query and drill-through routes and the limits they run under.
//! - `searches`: saved target-customer searches (CRUD kept in a file beside the definition,
//!   runs, CSV export); a query's `segments` name them.
//! - `entities`: the single entity view (`GET .../entities/{dimension}/{id}`).
//! - [`auth`]: API keys and JWTs -> a [`auth::Principal`] with the engine's `Access`; the
//!   auth file. `gate`: the middleware that authenticates every request and writes its line in
//!   the [`audit`] log (JSON lines, rotated, off the request path). Every route answers for the
//!   principal's access only; the query limits apply per principal too.
//! - [`metrics`]: per-route counters and HDR latency histograms, Prometheus text.
//! - `api`: every native route, declared once (its handler and `#[utoipa::path]`): the router,
//!   [`ROUTES`] and the OpenAPI document's paths come from it.
//! - [`openapi`]: `GET /openapi.json`, generated from the route table and the types (the
//!   engine's own, with its `openapi` feature).
//! - `body`: the one reader of request bodies (content type, then size, then UTF-8).
//! - [`cubejs`]: Cube's REST API under `/cubejs-api/v1`, answered from the same snapshots
//!   (the registry is its [`cubejs::CubeSource`]); its errors keep Cube's own shape.
//!
//! Errors everywhere have one shape: an HTTP status and
//! `{"error": {"code": "...", "message": "...", "details": {...}}}` ([`ApiError`]).

pub mod cubejs;

mod analytics;
mod api;
pub mod audit;
pub mod auth;
mod body;
pub mod build;
pub mod config;
mod entities;
pub mod error;
mod export;
mod flight;
mod gate;
pub mod info;
mod listen;
pub mod metrics;
pub mod openapi;
mod pg;
mod pg_introspect;
mod query;
pub mod registry;
mod reload;
mod routes;
mod searches;
pub mod web;
mod workbench;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use lattice_engine::query::QueryCache;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};

pub use build::{
    Built, How, Origin, Snapshots, build_definition, build_definition_with,
    build_or_load_definition,
};
pub use config::{Config, Limits};
pub use error::{ApiError, BuildError};
pub use info::CubeInfo;

use metrics::Metrics;
use query::Admission;
use registry::{Registry, Slot, Snapshot};

/// Every path of the native API, as the router matches it (the metrics' `route` label, the
/// OpenAPI paths), in the order of the route table (`api`), which is their one declaration.
/// The Cube API's routes are merged beside them ([`cubejs::ROUTES`]).
pub static ROUTES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    // Made once per process: leaking the few paths gives them the list's lifetime.
    api::paths()
        .into_iter()
        .map(String::leak)
        .map(|p| &*p)
        .collect()
});

/// A cube built at start, and the file it came from.
#[derive(Debug)]
pub struct Served {
    pub built: Built,
    pub path: Option<PathBuf>,
}

/// The runtimes beside the I/O one: queries that DataFusion answers, and builds.
#[derive(Debug)]
pub(crate) struct Runtimes {
    query: Option<tokio::runtime::Runtime>,
    build: Option<tokio::runtime::Runtime>,
}

impl Runtimes {
    fn new() -> std::io::Result<Runtimes> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let make = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .enable_all()
                .build()
        };
        Ok(Runtimes {
            query: Some(make("lattice-query")?),
            build: Some(make("lattice-build")?),
        })
    }

    pub(crate) fn query(&self) -> &tokio::runtime::Handle {
        self.query
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }

    pub(crate) fn build(&self) -> &tokio::runtime::Handle {
        self.build
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        // Without blocking: the server may be dropped inside another runtime. Tasks still
        // running (a build nobody waits for) are cancelled.
        for rt in [self.query.take(), self.build.take()].into_iter().flatten() {
            rt.shutdown_background();
        }
    }
}

/// Everything the routes share.
#[derive(Debug)]
pub(crate) struct AppState {
    pub config: Config,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<QueryCache>,
    pub admission: Admission,
    pub builds: Arc<Semaphore>,
    pub runtimes: Runtimes,
    pub audit: Option<audit::AuditLog>,
    /// Target-customer searches saved over the API, per cube.
    pub searches: searches::Store,
    /// `GET /openapi.json`, made once.
    pub openapi: &'static str,
}

impl AppState {
    /// The slot of a served cube, or 404 `unknown_cube`.
    pub(crate) fn slot(&self, name: &str) -> Result<Arc<Slot>, ApiError> {
        self.registry
            .get(name)
            .ok_or_else(|| ApiError::unknown_cube(name, self.registry.names()))
    }
}

/// An HTTP server over built cubes.
#[derive(Debug, Clone)]
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    /// A server for `cubes` (snapshot versions are numbered from 1 in this order).
    pub fn new(config: Config, cubes: Vec<Served>) -> std::io::Result<Server> {
        let registry = Arc::new(Registry::default());
        for served in cubes {
            let snapshot = Snapshot::new(served.built, registry.next_version());
            registry.insert(Slot::new(snapshot, served.path));
        }
        let limits = &config.limits;
        let state = AppState {
            registry,
            metrics: Arc::new(Metrics::new(&ROUTES)),
            cache: Arc::new(QueryCache::new(config.cache_entries)),
            admission: Admission::new(limits.max_concurrent_queries, limits.max_queued_queries),
            builds: Arc::new(Semaphore::new(limits.max_concurrent_builds.max(1))),
            runtimes: Runtimes::new()?,
            searches: searches::Store::default(),
            openapi: openapi::document(),
            audit: config
                .audit
                .clone()
                .map(audit::AuditLog::open)
                .transpose()?,
            config,
        };
        Ok(Server {
            state: Arc::new(state),
        })
    }

    /// The served cubes (for other front ends that answer from the same snapshots).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.state.registry
    }

    /// The routes, with their limits, CORS and metrics.
    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let limits = &state.config.limits;
        let mut router = api::router()
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route; GET /openapi.json lists the routes",
                )
            })
            .method_not_allowed_fallback(|method: Method| async move {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{method} is not allowed on this route; GET /openapi.json lists the methods of each route"),
                )
            })
            .with_state(state.clone())
            .merge(cubejs::router_with_token(
                Arc::new(ServedCubes(state.clone())),
                // With an auth file the gate lets principals in, the Cube API's included.
                state
                    .config
                    .cubejs_token
                    .clone()
                    .filter(|_| state.config.auth.is_none()),
            ))
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                export::export,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                gate::gate,
            ))
            // The explorer's files carry no data: open, outside the gate.
            .merge(web::router(state.config.web_dir.clone()));
        if let Some(cors) = cors(&state.config.cors_origins) {
            router = router.layer(cors);
        }
        router
            .layer(CatchPanicLayer::custom(
                |_: Box<dyn std::any::Any + Send>| {
                    ApiError::internal("answering a request", &"a handler panicked").into_response()
                },
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.metrics.clone(),
                metrics::track,
            ))
    }

    /// Serves on `listener` until `shutdown` completes, then stops taking connections and
    /// lets the requests in flight finish. First it removes the temporary files that writes
    /// cut short by a crash left in the served definitions' folders.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        for dir in self.definition_folders() {
            build::remove_leftover_temporaries(&dir);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let watcher = self
            .state
            .config
            .watch_interval
            .map(|every| tokio::spawn(reload::watch(self.state.clone(), every, stopped)));
        let router = self.router();
        let limits = self.state.config.limits.clone();
        drop(self);
        let result = listen::serve(listener, router, &limits, shutdown).await;
        let _ = stop.send(true);
        if let Some(w) = watcher {
            let _ = w.await;
        }
        result
    }

    /// Serves the Postgres wire protocol on `listener` (`serve --pg-addr`): the cubes as SQL
    /// tables, under the same principals, scopes and limits as HTTP. Runs until dropped.
    pub fn serve_pg(&self, listener: TcpListener) -> impl Future<Output = ()> + Send + 'static {
        pg::serve(self.state.clone(), listener)
    }

    /// Serves Arrow Flight SQL on `listener` (`serve --flight-addr`): the same tables, under
    /// the same principals, scopes and limits. Runs until dropped.
    pub fn serve_flight(&self, listener: TcpListener) -> impl Future<Output = ()> + Send + 'static {
        flight::serve(self.state.clone(), listener)
    }

    /// The folders the served definitions live in (the definitions folder first), once each.
    fn definition_folders(&self) -> Vec<PathBuf> {
        let config = &self.state.config;
        let files = self.state.registry.slots();
        let parents = files
            .iter()
            .filter_map(|slot| slot.path.as_deref())
            .map(|p| build::base_dir(Some(p), None));
        let mut folders: Vec<PathBuf> = Vec::new();
        for dir in config.definitions_dir.clone().into_iter().chain(parents) {
            if !folders.contains(&dir) {
                folders.push(dir);
            }
        }
        folders
    }
}

impl cubejs::CubeSource for Registry {
    fn cube_names(&self) -> Vec<String> {
        self.names()
    }

    fn cube(&self, name: &str) -> Option<Arc<lattice_engine::query::Dataset>> {
        Registry::cube(self, name)
    }
}

/// The Cube API's view of the server: the registry's cubes, and queries through the cache and
/// the limits (the server's and the principal's) that the native routes use.
#[derive(Debug)]
struct ServedCubes(Arc<AppState>);

impl cubejs::CubeSource for ServedCubes {
    fn cube_names(&self) -> Vec<String> {
        self.0.registry.names()
    }

    fn cube(&self, name: &str) -> Option<Arc<lattice_engine::query::Dataset>> {
        self.0.registry.cube(name)
    }

    fn body_limit(&self) -> usize {
        self.0.config.limits.max_body_bytes
    }

    fn execute(
        &self,
        cube: Arc<lattice_engine::query::Dataset>,
        query: lattice_engine::query::Query,
        principal: Arc<auth::Principal>,
    ) -> cubejs::Answering<'_> {
        Box::pin(async move {
            let cache = self.0.cache.clone();
            let session = cube.session(principal.access.clone()).with_cache(cache);
            query::run_limited(
                &self.0,
                &principal,
                async move { session.query(&query).await },
            )
            .await
            .map_err(cubejs::CubeJsError::Server)
        })
    }
}

/// CORS for browser front ends: none without origins, any origin for `*`.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT])
        .expose_headers([header::ETAG])
        .max_age(Duration::from_secs(600));
    Some(if origins.iter().any(|o| o == "*") {
        layer.allow_origin(Any)
    } else {
        layer.allow_origin(AllowOrigin::list(
            origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
    })
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    /// A server with no cubes: everything but the cube routes.
    fn app() -> Router {
        let config = Config {
            cors_origins: vec!["https://bi.example".into()],
            watch_interval: None,
            ..Config::default()
        };
        Server::new(config, Vec::new()).expect("server").router()
    }

    async fn send(req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let resp = app().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    fn get(uri: &str) -> Request<Body> {
        Request::get(uri).body(Body::empty()).expect("request")
    }

    #[tokio::test]
    async fn health_and_an_empty_cube_list() {
        let (status, _, body) = send(get("/health")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            json!({"status": "ok", "cubes": 0, "builds_in_progress": 0})
        );
        let (status, _, body) = send(get("/v1/cubes")).await;
        assert_eq!((status, body), (StatusCode::OK, json!({"cubes": []})));
    }

    #[tokio::test]
    async fn unknown_cubes_routes_and_methods_use_the_error_shape() {
        for uri in [
            "/v1/cubes/bank",
            "/v1/cubes/bank/definition",
            "/v1/cubes/bank/members/a/b",
        ] {
            let (status, _, body) = send(get(uri)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(body["error"]["code"], "unknown_cube", "{uri}");
            assert_eq!(body["error"]["details"]["cubes"], json!([]));
        }
        let (status, _, body) = send(get("/nope")).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::NOT_FOUND, &json!("not_found"))
        );
        let (status, _, body) = send(get("/v1/cubes/bank/query")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("GET"))
        );
    }

    /// Every route listed in `ROUTES` is routed with every method the OpenAPI document gives
    /// it: each answers with the route's own answer, never the router's `not_found` nor
    /// `method_not_allowed`. With the OpenAPI test (its paths are exactly `ROUTES`), a route
    /// added to a module's router but not listed, or listed but not routed, fails a test.
    #[tokio::test]
    async fn every_listed_route_is_routed_with_its_documented_methods() {
        let doc: Value = serde_json::from_str(openapi::document()).expect("json");
        for route in ROUTES.iter().copied() {
            let uri = route
                .replace("{cube}", "bank")
                .replace("{dimension}", "customer")
                .replace("{level}", "id")
                .replace("{name}", "some_search")
                .replace("{id}", "1");
            let methods = doc["paths"][route].as_object().expect(route);
            assert!(!methods.is_empty(), "{route}");
            for method in methods.keys() {
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .expect("request");
                let (status, _, body) = send(req).await;
                let code = &body["error"]["code"];
                assert!(
                    code != "not_found" && code != "method_not_allowed",
                    "{method} {route}: {status} {body}"
                );
            }
        }
    }

    #[tokio::test]
    async fn cors_preflight_names_the_allowed_origin() {
        let req = Request::options("/v1/cubes/bank_crm/query")
            .header(header::ORIGIN, "https://bi.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .expect("request");
        let (status, headers, _) = send(req).await;
        assert!(status.is_success(), "{status}");
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://bi.example"
        );
        let req = Request::get("/health")
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::empty())
            .expect("request");
        let (_, headers, _) = send(req).await;
        assert!(headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
    }

    #[tokio::test]
    async fn openapi_and_metrics_are_served() {
        let (status, headers, body) = send(get("/openapi.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        assert!(body["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
        let resp = app().oneshot(get("/metrics")).await.expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK);
        let text = String::from_utf8(
            resp.into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("utf-8");
        assert!(
            text.contains("# TYPE lattice_http_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("lattice_queries_running 0"), "{text}");
    }
}
