//! `POST /v1/cubes/{cube}/analytics/abnormal`, `.../analytics/migration`,
//! `.../analytics/migration/drill`, `.../analytics/pareto` and `.../analytics/performance`: the
//! engine's analyses ([`lattice_engine::analytics`]) under
//! the same limits as queries (admission, time limit, row limit) and with the same error shape.
//!
//! The engine computes every analysis under an [`Access`]; these routes pass the request's
//! principal — everything until the server authenticates principals.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use lattice_engine::access::Access;
use lattice_engine::analytics::{
    AbnormalAnswer, AbnormalQuery, AnalyticsError, MigrationAnswer, MigrationDrill,
    MigrationDrillAnswer, MigrationQuery, ParetoAnswer, ParetoQuery, PerformanceAnswer,
    PerformanceQuery,
};
use lattice_engine::query::{DEFAULT_DRILL_LIMIT, QueryError};

use crate::AppState;
use crate::auth::Principal;
use crate::body::{self, RawBody};
use crate::error::{ApiError, BodyRouteErrors, ErrorResponse};
use crate::query::run_limited;
use crate::registry::Snapshot;

/// One analysis over HTTP: the request read from the JSON body with `parse`, answered by `run`
/// on the serving snapshot under the principal's access and the query limits.
async fn analyse<Q, A, Fut>(
    state: &AppState,
    principal: &Principal,
    cube: &str,
    (headers, body): (&HeaderMap, RawBody),
    parse: fn(&str) -> Result<Q, AnalyticsError>,
    run: impl FnOnce(Arc<Snapshot>, Q, Access) -> Fut,
) -> Result<A, ApiError>
where
    A: Send + 'static,
    Fut: Future<Output = Result<A, AnalyticsError>> + Send + 'static,
{
    let slot = state.slot(cube)?;
    let limit = state.config.limits.max_body_bytes;
    let q = parse(&body::read(headers, body, body::JSON, limit)?)?;
    run_limited(
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
    request_body(content = AbnormalQuery, content_type = "application/json", description = "An abnormal-change request (docs/analytics.md)"),
    responses(
        (status = 200, description = "The members that changed abnormally, by impact", body = AbnormalAnswer),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn abnormal_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
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
    request_body(content = MigrationQuery, content_type = "application/json", description = "A band-migration request (docs/analytics.md)"),
    responses(
        (status = 200, description = "The matrix of transitions with counts and measure totals", body = MigrationAnswer),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn migration_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
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
    request_body(content = MigrationDrill, content_type = "application/json", description = "One transition of a migration (docs/analytics.md)"),
    responses(
        (status = 200, description = "The members behind the transition, paged", body = MigrationDrillAnswer),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, bad periods or thresholds, too many rows)", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn migration_drill_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
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
    request_body(content = PerformanceQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "Rows by period, parent, rank and member, paged", body = PerformanceAnswer),
        (status = 400, description = "A request the cube cannot answer as asked (unknown names, a period level that is not time, a rank parent that is not above the level, ...); `details.field` names the field", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the time limit; cancelled", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn performance_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
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
    request_body(content = ParetoQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "Member count, exact total, the cumulative share curve, the cuts and the reaches", body = ParetoAnswer),
        (status = 400, description = "A request the cube cannot answer as asked (unknown level or measure, a time level, a cut or reach not in (0, 1], a measure without exact values, ...); `details.field` names a bad number", body = ErrorResponse),
        (status = 403, description = "The principal's scope or role forbids it (small-cell suppression)", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the time limit; cancelled", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn pareto_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
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
