//! `POST /v1/cubes/{cube}/analytics/abnormal`, `.../analytics/migration`,
//! `.../analytics/migration/drill`, `.../analytics/pareto` and `.../analytics/performance`: the
//! engine's analyses ([`lattice_engine::analytics`]) under
//! the same limits as queries (admission, time limit, row limit) and with the same error shape.
//!
//! The engine computes every analysis under an [`Access`]; these routes pass the request's
//! principal — everything until the server authenticates principals.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use lattice_engine::access::Access;
use lattice_engine::analytics::{
    AbnormalAnswer, AbnormalQuery, AnalyticsError, MigrationAnswer, MigrationDrill,
    MigrationDrillAnswer, MigrationQuery, ParetoAnswer, ParetoQuery, PerformanceAnswer,
    PerformanceQuery,
};
use lattice_engine::query::{DEFAULT_DRILL_LIMIT, QueryError};
use serde_json::json;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::query::{read_body, require_content_type, run_limited};
use crate::registry::Snapshot;

/// The analytics routes, to merge into the server's router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/cubes/{cube}/analytics/abnormal", post(abnormal_route))
        .route(
            "/v1/cubes/{cube}/analytics/migration",
            post(migration_route),
        )
        .route(
            "/v1/cubes/{cube}/analytics/migration/drill",
            post(migration_drill_route),
        )
        .route("/v1/cubes/{cube}/analytics/pareto", post(pareto_route))
        .route(
            "/v1/cubes/{cube}/analytics/performance",
            post(performance_route),
        )
}

/// An analysis error as the one error shape; every variant decided here, none by default.
pub(crate) fn api_error(e: AnalyticsError) -> ApiError {
    let bad = StatusCode::BAD_REQUEST;
    let details = match &e {
        AnalyticsError::Query(q) => return ApiError::from(q.clone()),
        AnalyticsError::NotATimeLevel { level, .. } | AnalyticsError::TimeLevel { level, .. } => {
            json!({"level": level})
        }
        AnalyticsError::PeriodOrder {
            level,
            before,
            after,
        } => json!({"level": level, "before": before, "after": after}),
        AnalyticsError::BadThreshold { field, .. } => json!({"field": field}),
        AnalyticsError::Missing { kind, field, .. }
        | AnalyticsError::NotApplicable { kind, field } => json!({"kind": kind, "field": field}),
        AnalyticsError::BadPeers { level, .. } => json!({"level": level}),
        AnalyticsError::InexactMeasure { measure } => json!({"measure": measure}),
        AnalyticsError::At { field, source } => {
            // The inner problem's status and details, with the field that has it.
            let mut inner = api_error((**source).clone());
            if let Some(d) = inner.details.as_object_mut() {
                d.insert("field".into(), json!(field));
            }
            inner.message = e.to_string();
            return inner;
        }
        AnalyticsError::NotAnAncestor {
            within,
            level,
            ancestors,
        } => {
            json!({"field": "rank.within", "within": within, "level": level, "ancestors": ancestors})
        }
        AnalyticsError::Invalid { field, .. } => json!({"field": field}),
    };
    ApiError::new(bad, e.code(), e.to_string()).with_details(details)
}

fn body_text(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, ApiError> {
    require_content_type(headers, &["application/json"])?;
    let body = read_body(body, state.config.limits.max_body_bytes)?;
    String::from_utf8(body.to_vec()).map_err(|e| {
        QueryError::Malformed {
            message: format!("the body is not UTF-8 text ({e})"),
        }
        .into()
    })
}

/// Runs an analysis under the query limits; its errors in the API's shape.
async fn limited<T, F>(state: &AppState, principal: &Principal, run: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, AnalyticsError>> + Send + 'static,
{
    // The analysis error travels through the query limits inside an Ok.
    let out = run_limited(state, principal, async move { Ok(run.await) }).await?;
    out.map_err(api_error)
}

/// One analysis over HTTP: the request read from the JSON body with `parse`, answered by `run`
/// on the serving snapshot under the principal's access and the query limits.
async fn analyse<Q, A, Fut>(
    state: &AppState,
    principal: &Principal,
    cube: &str,
    (headers, body): (&HeaderMap, Result<Bytes, BytesRejection>),
    parse: fn(&str) -> Result<Q, AnalyticsError>,
    run: impl FnOnce(Arc<Snapshot>, Q, Access) -> Fut,
) -> Result<A, ApiError>
where
    A: Send + 'static,
    Fut: Future<Output = Result<A, AnalyticsError>> + Send + 'static,
{
    let slot = state.slot(cube)?;
    let q = parse(&body_text(state, headers, body)?).map_err(api_error)?;
    limited(
        state,
        principal,
        run(slot.load(), q, principal.access.clone()),
    )
    .await
}

/// The most rows a paged analysis may produce: one over the row limit, so that an answer
/// that would exceed it is refused (`too_many_rows`) rather than cut short.
fn row_cap(state: &AppState) -> u64 {
    state.config.limits.max_result_rows as u64 + 1
}

fn too_many_rows(state: &AppState, rows: usize) -> Result<(), ApiError> {
    let limit = state.config.limits.max_result_rows;
    if rows > limit {
        return Err(QueryError::TooManyRows { rows, limit }.into());
    }
    Ok(())
}

/// Members whose measure changed abnormally (threshold, outlier among peers, dormant).
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/analytics/abnormal",
    tag = "analytics",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = Object, content_type = "application/json", description = "An abnormal-change request (docs/analytics.md)"),
    responses(
        (status = 200, description = "The members that changed abnormally, by impact", body = Object),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "The principal's scope forbids it", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the query time limit", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn abnormal_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AbnormalAnswer>, ApiError> {
    let cap = row_cap(&state);
    let request = (&headers, body);
    let answer = analyse(
        &state,
        &principal,
        &cube,
        request,
        AbnormalQuery::from_json,
        move |s, mut q, access| async move {
            q.limit = Some(q.limit.map_or(cap, |l| l.min(cap)));
            s.cube.session(access).abnormal(&q).await
        },
    )
    .await?;
    too_many_rows(&state, answer.rows.len())?;
    Ok(Json(answer))
}

/// The migration matrix of a band level between two periods.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/analytics/migration",
    tag = "analytics",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = Object, content_type = "application/json", description = "A band-migration request (docs/analytics.md)"),
    responses(
        (status = 200, description = "The matrix of transitions with counts and measure totals", body = Object),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "The principal's scope forbids it", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the query time limit", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn migration_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MigrationAnswer>, ApiError> {
    let request = (&headers, body);
    let answer = analyse(
        &state,
        &principal,
        &cube,
        request,
        MigrationQuery::from_json,
        |s, q, access| async move { s.cube.session(access).migration(&q).await },
    )
    .await?;
    Ok(Json(answer))
}

/// The members behind one transition of a migration matrix, paged.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/analytics/migration/drill",
    tag = "analytics",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = Object, content_type = "application/json", description = "One transition of a migration (docs/analytics.md)"),
    responses(
        (status = 200, description = "The members behind the transition, paged", body = Object),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "The principal's scope forbids it", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the query time limit", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn migration_drill_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<MigrationDrillAnswer>, ApiError> {
    let cap = row_cap(&state);
    let request = (&headers, body);
    let answer = analyse(
        &state,
        &principal,
        &cube,
        request,
        MigrationDrill::from_json,
        move |s, mut d, access| async move {
            d.limit = Some(d.limit.unwrap_or(DEFAULT_DRILL_LIMIT).min(cap));
            s.cube.session(access).migration_drill(&d).await
        },
    )
    .await?;
    too_many_rows(&state, answer.rows.len())?;
    Ok(Json(answer))
}

/// Per member of a level (a manager) and period: customers managed, new and lost, measures,
/// the share of high-value customers and the rank within a parent level.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/analytics/performance",
    tag = "analytics",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = crate::openapi::PerformanceDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Rows by period, parent, rank and member, paged", body = crate::openapi::PerformanceAnswerDoc),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, a period level that is not time, a rank parent that is not above the level, ...); `details.field` names the field", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "The principal's scope forbids it", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube", body = crate::openapi::ErrorDoc),
        (status = 413, description = "Body over the size limit", body = crate::openapi::ErrorDoc),
        (status = 415, description = "Body not sent as application/json", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the time limit; cancelled", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn performance_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PerformanceAnswer>, ApiError> {
    let cap = row_cap(&state);
    let request = (&headers, body);
    let answer = analyse(
        &state,
        &principal,
        &cube,
        request,
        PerformanceQuery::from_json,
        move |s, mut q, access| async move {
            q.limit = Some(q.limit.map_or(cap, |l| l.min(cap)));
            s.cube.session(access).performance(&q).await
        },
    )
    .await?;
    too_many_rows(&state, answer.rows.len())?;
    Ok(Json(answer))
}

/// How concentrated a measure is over a level's members: the 80/20 curve, cuts and reaches.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/analytics/pareto",
    tag = "analytics",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = crate::openapi::ParetoDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "Member count, exact total, the cumulative share curve, the cuts and the reaches", body = crate::openapi::ParetoAnswerDoc),
        (status = 400, description = "A request the cube cannot answer as asked (unknown level or measure, a time level, a cut or reach not in (0, 1], a measure without exact values, ...); `details.field` names a bad number", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "The principal's scope or role forbids it (small-cell suppression)", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube", body = crate::openapi::ErrorDoc),
        (status = 413, description = "Body over the size limit", body = crate::openapi::ErrorDoc),
        (status = 415, description = "Body not sent as application/json", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the time limit; cancelled", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn pareto_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ParetoAnswer>, ApiError> {
    let request = (&headers, body);
    let answer = analyse(
        &state,
        &principal,
        &cube,
        request,
        ParetoQuery::from_json,
        |s, q, access| async move { s.cube.session(access).pareto(&q).await },
    )
    .await?;
    Ok(Json(answer))
}
