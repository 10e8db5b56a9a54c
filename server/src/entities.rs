//! `GET /v1/cubes/{cube}/entities/{dimension}/{id}`: the single entity view
//! ([`lattice_engine::entity`]) — a customer's attributes, region and manager, products held,
//! measures and bands per period, breakdowns by channel and product, and the saved searches
//! (the definition's and the API's) that select them — as the request's principal may see it,
//! under the query limits.
//!
//! An id that does not exist and one outside the principal's scope get the same 404
//! `unknown_member`; a principal under small-cell suppression gets 403 `forbidden`.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use lattice_engine::entity::{EntityError, EntityView};
use lattice_engine::query::QueryError;
use serde_json::json;

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::query::run_limited;

/// The entity route, to merge into the server's router.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/v1/cubes/{cube}/entities/{dimension}/{id}",
        get(entity_route),
    )
}

/// An entity view error as the one error shape; every variant decided here, none by default.
pub(crate) fn api_error(e: EntityError) -> ApiError {
    match &e {
        // The id is part of the path: a member that is not there (or not for this
        // principal) is a resource that is not there.
        EntityError::Query(q @ QueryError::UnknownMember { .. }) => ApiError {
            status: StatusCode::NOT_FOUND,
            ..ApiError::from(q.clone())
        },
        EntityError::Query(q) => ApiError::from(q.clone()),
        EntityError::UnknownDimension { name, suggestion } => {
            ApiError::new(StatusCode::NOT_FOUND, e.code(), e.to_string())
                .with_details(json!({"dimension": name, "suggestion": suggestion}))
        }
        EntityError::NoKeyLevel { dimension, key } => {
            ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
                .with_details(json!({"dimension": dimension, "key": key}))
        }
    }
}

/// One member of a dimension's key level, everything the cube knows about it.
#[utoipa::path(
    get,
    path = "/v1/cubes/{cube}/entities/{dimension}/{id}",
    tag = "analytics",
    params(
        ("cube" = String, Path, description = "The cube's name"),
        ("dimension" = String, Path, description = "A dimension with a level on its key column (`customer`)"),
        ("id" = String, Path, description = "The member of the key level (`customer.id`)"),
    ),
    responses(
        (status = 200, description = "The entity view (docs/entities.md)", body = Object),
        (status = 400, description = "The dimension has no level on its key", body = crate::openapi::ErrorDoc),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = crate::openapi::ErrorDoc),
        (status = 403, description = "Small-cell suppression applies to the principal: one member's numbers are not shown", body = crate::openapi::ErrorDoc),
        (status = 404, description = "Unknown cube or dimension; an id that does not exist or is outside the principal's scope (`unknown_member`)", body = crate::openapi::ErrorDoc),
        (status = 429, description = "Too many queries running and waiting", body = crate::openapi::ErrorDoc),
        (status = 504, description = "Over the query time limit", body = crate::openapi::ErrorDoc),
    )
)]
pub(crate) async fn entity_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((cube, dimension, id)): Path<(String, String, String)>,
) -> Result<Json<EntityView>, ApiError> {
    let slot = state.slot(&cube)?;
    let searches = crate::searches::all_searches(&state, &cube, &principal).await?;
    let snapshot = slot.load();
    let session = snapshot.cube.session(principal.access.clone());
    // The entity error travels through the query limits inside an Ok.
    let view = run_limited(&state, &principal, async move {
        Ok(session.entity_view(&dimension, &id, &searches).await)
    })
    .await?
    .map_err(api_error)?;
    Ok(Json(view))
}
