//! # The Cube REST API
//!
//! Lattice speaks the REST API of [Cube](https://cube.dev) under `/cubejs-api/v1/`, so
//! dashboards built on `@cubejs-client/core` (and `@cubejs-client/react`) can point at
//! Lattice unchanged. It is a translation, not a second engine:
//!
//! ```text
//! GET/POST /load --request--> CubeQuery --translate(Catalog)--> Plan(s): native Query + outputs
//!   --lattice_engine::query::execute--> Answer --response--> {queryType, results[], pivotQuery}
//! GET /meta --Catalog::meta--> {cubes: [...], compilerId}
//! ```
//!
//! - [`request`]: the Cube query document, read as Cube reads it.
//! - [`catalog`]: a built cube under Cube names (`bank_crm.fee_income`,
//!   `bank_crm.region_province`, the time dimension `bank_crm.time`) and `/meta`.
//! - [`filters`]: Cube filters (`and`/`or`, 24 operators) as member sets of levels, periods
//!   of the time dimension and `having`.
//! - [`members`]: the measures, dimensions and time dimensions a query asks for.
//! - [`translate`]: the whole query, with Cube's defaults (order, limit) and
//!   `compareDateRange` as one native query per range.
//! - [`response`]: answers in the shape the client pivots.
//! - [`dates`]: the zone-less calendar of the cube's time members; relative ranges.
//!
//! Errors are `{"error": "..."}` with a 4xx status for anything the client sent
//! ([`CubeJsError`], mapped in one exhaustive function); never 502, which the client retries.

mod catalog;
pub(crate) mod dates;
mod filters;
mod members;
mod request;
mod response;
mod translate;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use lattice_engine::query::Dataset;
use lattice_engine::query::{Answer, Query, QueryError};
use serde_json::{Value as Json, json};

use crate::audit::{NoteSlot, note};
use crate::auth::Principal;
use crate::body::{self, RawBody};
use crate::error::ApiError;
use catalog::Catalog;
use request::QueryParam;

/// An answer on its way.
pub type Answering<'a> = Pin<Box<dyn Future<Output = Result<Answer, CubeJsError>> + Send + 'a>>;

/// Where the Cube API finds the cubes it serves (the server's current snapshots).
pub trait CubeSource: Send + Sync + 'static {
    /// The names of the cubes served, in the order `/meta` lists them.
    fn cube_names(&self) -> Vec<String>;
    /// The current snapshot of a cube.
    fn cube(&self, name: &str) -> Option<Arc<Dataset>>;
    /// The most bytes a request body may have (for the error of one over it): the server's
    /// limit; alone, axum's default the router reads under.
    fn body_limit(&self) -> usize {
        2 << 20
    }
    /// Answers one native query for `principal`, restricted to what its access lets it see.
    /// The server's source runs it through the query cache and the limits its native routes
    /// use; this default asks the engine directly.
    fn execute(
        &self,
        cube: Arc<Dataset>,
        query: Query,
        principal: Arc<Principal>,
    ) -> Answering<'_> {
        Box::pin(async move { Ok(cube.session(principal.access.clone()).query(&query).await?) })
    }
}

/// A request the Cube API cannot answer as sent.
#[derive(Debug, thiserror::Error)]
pub enum CubeJsError {
    #[error("Query param is required")]
    MissingQuery,
    #[error("Invalid query format: {message}")]
    InvalidQuery { message: String },
    #[error("{part} is not supported by Lattice's Cube API: {hint}")]
    Unsupported { part: String, hint: String },
    #[error(
        "Query should contain either measures, dimensions or timeDimensions with granularities in order to be valid"
    )]
    EmptyQuery,
    #[error("Cube '{cube}' not found{}", did_you_mean(suggestion))]
    UnknownCube {
        cube: String,
        suggestion: Option<String>,
    },
    #[error(
        "a query reads one cube, but this one names members of {}; Lattice cubes do not join",
        cubes.join(", ")
    )]
    SeveralCubes { cubes: Vec<String> },
    #[error("'{member}' not found{}", did_you_mean(suggestion))]
    UnknownMember {
        member: String,
        suggestion: Option<String>,
    },
    #[error("'{member}' is {is}; it cannot be in `{place}`")]
    WrongKind {
        member: String,
        is: &'static str,
        place: &'static str,
    },
    #[error("segment '{segment}' not found: cube '{cube}' has no segments")]
    UnknownSegment { segment: String, cube: String },
    #[error(
        "granularity '{granularity}' of '{member}' is not available; the cube's time dimension has {}",
        available.join(", ")
    )]
    BadGranularity {
        member: String,
        granularity: String,
        available: Vec<String>,
    },
    #[error("filter on '{member}': {message}")]
    BadFilter { member: String, message: String },
    #[error("date range {range} of '{member}': {message}")]
    BadDateRange {
        member: String,
        range: String,
        message: String,
    },
    #[error(
        "{condition} on '{member}' covers part of the {grain} {period}; the cube's finest time grain is the {grain}, so a date condition must select whole {grain}s (from the first day of one to the last day of one)"
    )]
    PartialPeriod {
        member: String,
        condition: String,
        period: String,
        grain: &'static str,
    },
    #[error(
        "an `or` across different members ({}) is not supported by Lattice's Cube API: the cube slices one level at a time and intersects the slices; an `or` may only combine conditions on the same dimension",
        members.join(", ")
    )]
    OrAcrossMembers { members: Vec<String> },
    #[error(
        "measure '{measure}' does not vary by '{member}' (its facts have no '{dimension}'); ask for them in separate queries"
    )]
    MeasureDoesNotVary {
        measure: String,
        member: String,
        dimension: String,
    },
    #[error(
        "no fact table varies by all of {}; ask for a measure, or for them in separate queries",
        members.join(", ")
    )]
    NoFacts { members: Vec<String> },
    #[error("cannot order by '{member}': {reason}")]
    BadOrder { member: String, reason: String },
    #[error("The query limit has been exceeded: {limit} is more than the maximum of {max} rows")]
    LimitTooLarge { limit: u64, max: u64 },
    #[error("'{query_type}' query type is not supported by the client.Please update the client.")]
    NeedsMulti { query_type: &'static str },
    #[error("Authorization header isn't set")]
    MissingToken,
    #[error("Invalid token")]
    InvalidToken,
    #[error(
        "unknown Cube API endpoint '/cubejs-api/v1/{path}'; Lattice serves meta, load, subscribe and dry-run"
    )]
    UnknownEndpoint { path: String },
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Refused or failed by the server that runs the query (its limits: 429, 504).
    #[error("{}", .0.message)]
    Server(ApiError),
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"))
}

impl CubeJsError {
    /// The HTTP status: 4xx for whatever the request got wrong, 500 only for the engine's own
    /// failures. Never 502: the client retries those forever.
    pub fn status(&self) -> StatusCode {
        match self {
            CubeJsError::MissingToken | CubeJsError::InvalidToken => StatusCode::FORBIDDEN,
            CubeJsError::UnknownEndpoint { .. } => StatusCode::NOT_FOUND,
            CubeJsError::MissingQuery
            | CubeJsError::InvalidQuery { .. }
            | CubeJsError::Unsupported { .. }
            | CubeJsError::EmptyQuery
            | CubeJsError::UnknownCube { .. }
            | CubeJsError::SeveralCubes { .. }
            | CubeJsError::UnknownMember { .. }
            | CubeJsError::WrongKind { .. }
            | CubeJsError::UnknownSegment { .. }
            | CubeJsError::BadGranularity { .. }
            | CubeJsError::BadFilter { .. }
            | CubeJsError::BadDateRange { .. }
            | CubeJsError::PartialPeriod { .. }
            | CubeJsError::OrAcrossMembers { .. }
            | CubeJsError::MeasureDoesNotVary { .. }
            | CubeJsError::NoFacts { .. }
            | CubeJsError::BadOrder { .. }
            | CubeJsError::LimitTooLarge { .. }
            | CubeJsError::NeedsMulti { .. } => StatusCode::BAD_REQUEST,
            CubeJsError::Server(e) => e.status,
            CubeJsError::Query(e) => match e {
                QueryError::Malformed { .. }
                | QueryError::TooLarge { .. }
                | QueryError::UnknownLevel { .. }
                | QueryError::UnknownMeasure { .. }
                | QueryError::NoMeasures
                | QueryError::LevelTwice { .. }
                | QueryError::MeasureDoesNotVary { .. }
                | QueryError::UnknownMember { .. }
                | QueryError::BadFilter { .. }
                | QueryError::HavingNotAsked { .. }
                | QueryError::BadOrder { .. }
                | QueryError::OrderByColumn { .. }
                | QueryError::BadCompare { .. }
                | QueryError::BadDrill { .. }
                | QueryError::BadShare { .. }
                | QueryError::TooManyRows { .. } => StatusCode::BAD_REQUEST,
                QueryError::Forbidden { .. } => StatusCode::FORBIDDEN,
                QueryError::Engine { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

impl IntoResponse for CubeJsError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "cube api: the engine failed");
            "internal error; the server log has the details".to_string()
        } else {
            self.to_string()
        };
        (status, axum::Json(json!({ "error": message }))).into_response()
    }
}

/// A route: its path, and its handlers by method.
type Route = (&'static str, fn() -> MethodRouter<AppState>);

/// The Cube API's routes (its catch-all for other endpoints aside), each declared once: its
/// path and handlers. `subscribe` answers as `load` does (no web sockets: one answer).
const TABLE: [Route; 4] = [
    ("/cubejs-api/v1/meta", || get(meta)),
    ("/cubejs-api/v1/load", || get(load_get).post(load_post)),
    ("/cubejs-api/v1/subscribe", || get(load_get).post(load_post)),
    ("/cubejs-api/v1/dry-run", || get(dry_get).post(dry_post)),
];

/// The paths of the Cube API's routes, as routed.
pub const ROUTES: [&str; TABLE.len()] = paths(&TABLE);

const fn paths<const N: usize>(table: &[Route; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = table[i].0;
        i += 1;
    }
    out
}

#[derive(Clone)]
struct AppState {
    source: Arc<dyn CubeSource>,
    token: Option<Arc<str>>,
    /// When this server first served each (cube, snapshot): Cube's `lastRefreshTime`.
    first_seen: Arc<Mutex<HashMap<(String, u64), SystemTime>>>,
}

/// The Cube API routes over `source`, accepting any `Authorization` header.
pub fn router(source: Arc<dyn CubeSource>) -> Router {
    router_with_token(source, None)
}

/// The Cube API routes; with `token`, a request must carry it in `Authorization`, raw or
/// after `Bearer ` (403 otherwise), as the client sends its API token.
pub fn router_with_token(source: Arc<dyn CubeSource>, token: Option<String>) -> Router {
    let state = AppState {
        source,
        token: token.map(Arc::from),
        first_seen: Arc::default(),
    };
    TABLE
        .iter()
        .fold(Router::new(), |router, (path, routed)| {
            router.route(path, routed())
        })
        .route(
            "/cubejs-api/v1/{*rest}",
            axum::routing::any(|Path(rest): Path<String>| async move { unknown_endpoint(rest) }),
        )
        .with_state(state)
}

/// Serves the Cube API alone on `listener` until `shutdown` resolves (tests, embedding); with
/// `token`, as [`router_with_token`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    source: Arc<dyn CubeSource>,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with_token(source, token))
        .with_graceful_shutdown(shutdown)
        .await
}

fn unknown_endpoint(path: String) -> CubeJsError {
    let first = path.split('/').next().unwrap_or_default();
    match first {
        "sql" | "cubesql" | "graphql" | "graphql-to-json" | "convert-query" | "running-query"
        | "pre-aggregations" => CubeJsError::Unsupported {
            part: format!("the /cubejs-api/v1/{first} endpoint"),
            hint: "Lattice serves meta, load, subscribe and dry-run; its own query API is /v1"
                .into(),
        },
        _ => CubeJsError::UnknownEndpoint { path },
    }
}

fn check_token(state: &AppState, headers: &HeaderMap) -> Result<(), CubeJsError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .ok_or(CubeJsError::MissingToken)?
        .to_str()
        .map_err(|_| CubeJsError::InvalidToken)?;
    let given = given.strip_prefix("Bearer ").unwrap_or(given).trim();
    if given == token.as_ref() {
        Ok(())
    } else {
        Err(CubeJsError::InvalidToken)
    }
}

/// Who asks: the server's gate puts the principal in the request; a Cube API served alone
/// (with its own token, or none) answers everything.
type Asker = Option<Extension<Arc<Principal>>>;

fn asker(p: Asker) -> Arc<Principal> {
    p.map_or_else(|| Arc::new(Principal::anonymous()), |Extension(p)| p)
}

async fn meta(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, CubeJsError> {
    check_token(&state, &headers)?;
    let mut cubes = Vec::new();
    let mut versions = Vec::new();
    for name in state.source.cube_names() {
        if let Some(cube) = state.source.cube(&name) {
            cubes.push(Catalog::new(&name, &cube).meta());
            versions.push(format!("{name}@{}", cube.version));
        }
    }
    // One cube: its snapshot version; several: each cube's, so that any swap changes it.
    let compiler_id = match versions.as_slice() {
        [one] => one.rsplit('@').next().unwrap_or_default().to_string(),
        _ => versions.join(","),
    };
    Ok(axum::Json(json!({"cubes": cubes, "compilerId": compiler_id})).into_response())
}

async fn load_get(
    State(state): State<AppState>,
    who: Asker,
    audit: Option<Extension<NoteSlot>>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Result<Response, CubeJsError> {
    let query = params
        .get("query")
        .filter(|q| !q.is_empty() && q.as_str() != "undefined")
        .map(|q| request::parse_query(q))
        .transpose()?;
    let ask = Ask {
        principal: asker(who),
        audit: audit.map(|Extension(n)| n),
        query_type: params.get("queryType").cloned(),
        dry: false,
    };
    answer(&state, &headers, query, ask).await
}

async fn load_post(
    State(state): State<AppState>,
    who: Asker,
    audit: Option<Extension<NoteSlot>>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, CubeJsError> {
    let audit = audit.map(|Extension(n)| n);
    let body = request::parse_body(read(&state, &headers, body)?.as_bytes())?;
    let ask = Ask {
        principal: asker(who),
        audit,
        query_type: body.query_type,
        dry: false,
    };
    answer(&state, &headers, body.query, ask).await
}

async fn dry_get(
    State(state): State<AppState>,
    who: Asker,
    audit: Option<Extension<NoteSlot>>,
    headers: HeaderMap,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Result<Response, CubeJsError> {
    let query = params
        .get("query")
        .map(|q| request::parse_query(q))
        .transpose()?;
    let ask = Ask {
        principal: asker(who),
        audit: audit.map(|Extension(n)| n),
        query_type: Some("multi".into()),
        dry: true,
    };
    answer(&state, &headers, query, ask).await
}

async fn dry_post(
    State(state): State<AppState>,
    who: Asker,
    audit: Option<Extension<NoteSlot>>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, CubeJsError> {
    let body = request::parse_body(read(&state, &headers, body)?.as_bytes())?;
    let ask = Ask {
        principal: asker(who),
        audit: audit.map(|Extension(n)| n),
        query_type: Some("multi".into()),
        dry: true,
    };
    answer(&state, &headers, body.query, ask).await
}

/// A POST's body, read as the native routes read theirs; its errors (413, 400) in Cube's shape.
fn read(state: &AppState, headers: &HeaderMap, body: RawBody) -> Result<String, CubeJsError> {
    let limit = state.source.body_limit();
    body::read(headers, body, body::ANY_JSON, limit).map_err(CubeJsError::Server)
}

/// Who asks, and how.
struct Ask {
    principal: Arc<Principal>,
    audit: Option<NoteSlot>,
    query_type: Option<String>,
    /// `/dry-run`: translate only.
    dry: bool,
}

/// Translates, runs and shapes one `/load` (or, with `dry`, `/dry-run`) request.
async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<QueryParam>,
    ask: Ask,
) -> Result<Response, CubeJsError> {
    let Ask {
        principal,
        audit,
        query_type,
        dry,
    } = ask;
    check_token(state, headers)?;
    let q = match query {
        None => return Err(CubeJsError::MissingQuery),
        Some(QueryParam::Many(n)) => {
            return Err(CubeJsError::Unsupported {
                part: format!("data blending (an array of {n} queries)"),
                hint: "send the queries one at a time".into(),
            });
        }
        Some(QueryParam::One(q)) => q,
    };
    let name = translate::cube_of(&q)?;
    note(audit.as_ref(), |n| n.set_cube(&name));
    let cube = state
        .source
        .cube(&name)
        .ok_or_else(|| CubeJsError::UnknownCube {
            suggestion: lattice_defs::diag::suggest(
                &name,
                state.source.cube_names().iter().map(String::as_str),
            ),
            cube: name.clone(),
        })?;
    let cat = Catalog::new(&name, &cube);
    // The principal's own members: filters expand over these alone, in the engine's view.
    let levels = translate::filtered_levels(&cat, &q);
    let view = cube
        .session(principal.access.clone())
        .member_view(levels)
        .await?;
    let cat = cat.seen_through(view);
    let t = translate::translate(&cat, &q)?;
    let multi = query_type.as_deref() == Some("multi");
    if t.query_type != translate::QueryType::Regular && !multi {
        return Err(CubeJsError::NeedsMulti {
            query_type: t.query_type.name(),
        });
    }
    if dry {
        return Ok(axum::Json(response::dry_run(&t)).into_response());
    }
    let refreshed = {
        let mut seen = state
            .first_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seen
            .entry((name.clone(), cube.version))
            .or_insert_with(SystemTime::now)
    };
    let refreshed = dates::format_utc(refreshed);
    let mut results = Vec::with_capacity(t.plans.len());
    let mut rows = 0;
    for plan in &t.plans {
        let a = state
            .source
            .execute(cube.clone(), plan.native.clone(), principal.clone())
            .await?;
        rows += a.rows.len();
        results.push(response::result(plan, &a, &refreshed));
    }
    note(audit.as_ref(), |n| n.set_rows(rows));
    let body: Json = response::load(&t, results, multi);
    Ok(axum::Json(body).into_response())
}

#[cfg(test)]
mod tests;
