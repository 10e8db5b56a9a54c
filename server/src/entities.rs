//! `GET /v1/cubes/{cube}/entities/{dimension}/{id}`: the single entity view
//! ([`lattice_engine::entity`]) — a customer's attributes, region and manager, products held,
//! measures and bands per period, breakdowns by channel and product, and the saved searches
//! (the definition's and the API's) that select them — as the request's principal may see it,
//! under the query limits.
//!
//! An id that does not exist and one outside the principal's scope get the same 404
//! `unknown_member`; a principal under small-cell suppression gets 403 `forbidden`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use lattice_engine::entity::EntityView;

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorResponse};
use crate::query::run_limited;

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
        (status = 200, description = "The entity view (docs/entities.md)", body = EntityView),
        (status = 400, description = "The dimension has no level on its key", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "Small-cell suppression applies to the principal: one member's numbers are not shown", body = ErrorResponse),
        (status = 404, description = "Unknown cube or dimension; an id that does not exist or is outside the principal's scope (`unknown_member`)", body = ErrorResponse),
        (status = 429, description = "Too many queries running and waiting", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
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
    let view = run_limited(&state, &principal, async move {
        session.entity_view(&dimension, &id, &searches).await
    })
    .await?;
    Ok(Json(view))
}
