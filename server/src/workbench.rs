//! The band workbench's routes: a definition checked without applying it, and what its changed
//! bands would do to the customers, computed from the serving cube without a rebuild.
//!
//! ```text
//! POST .../definition/validate  YAML --parse--> 200 {valid, changed_bands} | 400 every error at line:column
//! POST .../bands/preview        YAML --parse--> Session::preview_bands (engine: access checked there)
//! ```
//!
//! Neither writes anything nor starts a build; `PUT .../definition` applies.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, StatusCode};
use lattice_defs::model::{LevelKind, Model};
use lattice_engine::analytics::{BandsPreview, same_bucket};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::Principal;
use crate::body::{self, RawBody};
use crate::error::{ApiError, ErrorResponse};
use crate::query::run_limited;
use crate::reload::parse_for;

/// `POST /v1/cubes/{cube}/definition/validate`: the definition is valid.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validated {
    /// Always true (an invalid definition answers 400 `invalid_definition`).
    pub valid: bool,
    pub cube: String,
    pub dimensions: usize,
    pub levels: usize,
    pub measures: usize,
    /// The band levels (`customer.deposit_band`) whose definition differs from the serving
    /// cube's: what `POST .../bands/preview` shows.
    pub changed_bands: Vec<String>,
    /// Whether the sources were read to check the definition against its data: never here
    /// (a build does it); `lattice validate FILE --data DIR` does it from a shell.
    pub data_checked: bool,
}

/// Checks a definition of the cube — every error with its line and column — without applying
/// it: nothing is written and nothing is built.
#[utoipa::path(post, path = "/v1/cubes/{cube}/definition/validate", tag = "definitions",
    params(("cube" = String, Path, description = "The cube's name (the definition's `cube:`)")),
    request_body(content = String, content_type = "application/yaml", description = "The definition, as YAML"),
    responses(
        (status = 200, description = "The definition is valid", body = Validated),
        (status = 400, description = "The definition does not validate: every error with its line and column (`details.errors`), or it is of another cube", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 413, description = "Body over the size limit", body = ErrorResponse),
        (status = 415, description = "Body not sent as YAML", body = ErrorResponse),
    ))]
pub(crate) async fn validate_definition(
    State(state): State<Arc<AppState>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<Validated>, ApiError> {
    let slot = state.slot(&cube)?;
    let limit = state.config.limits.max_body_bytes;
    let text = body::read(&headers, body, body::YAML, limit)?;
    let model = parse_for(&state, &cube, &text, slot.path.as_deref())?;
    let serving = slot.load();
    Ok(Json(Validated {
        valid: true,
        cube: model.name.clone(),
        dimensions: model.dimensions.len(),
        levels: model.level_names().len(),
        measures: model.measures.len(),
        changed_bands: changed_bands(&serving.cube.model, &model),
        data_checked: false,
    }))
}

/// The band levels of `new` whose bucket differs from `old`'s level of the same name (or that
/// `old` lacks).
fn changed_bands(old: &Model, new: &Model) -> Vec<String> {
    let mut out = Vec::new();
    for dim in &new.dimensions {
        for level in &dim.levels {
            let LevelKind::Bucket(b) = &level.kind else {
                continue;
            };
            let was = old
                .dimensions
                .iter()
                .find(|d| d.name == dim.name)
                .and_then(|d| d.levels.iter().find(|l| l.name == level.name));
            let same = match was.map(|l| &l.kind) {
                Some(LevelKind::Bucket(a)) => same_bucket(old, a, new, b),
                _ => false,
            };
            if !same {
                out.push(format!("{}.{}", dim.name, level.name));
            }
        }
    }
    out
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewParams {
    /// The period counted, a member of the band's period level (`2025-06`); default the
    /// latest.
    pub period: Option<String>,
}

/// What the definition's changed bands would do: per band level, the customers in each old and
/// new band in a period and how many move between them, computed from the base rows the
/// serving cube keeps (no rebuild, nothing applied).
#[utoipa::path(post, path = "/v1/cubes/{cube}/bands/preview", tag = "definitions",
    params(("cube" = String, Path, description = "The cube's name (the definition's `cube:`)"), PreviewParams),
    request_body(content = String, content_type = "application/yaml", description = "The changed definition, as YAML"),
    responses(
        (status = 200, description = "The changed bands, old beside new", body = BandsPreview),
        (status = 400, description = "The definition does not validate (every error with its line and column), or an unknown period", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal has a scope or small-cell suppression: the preview counts every customer", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 413, description = "Body over the size limit", body = ErrorResponse),
        (status = 415, description = "Body not sent as YAML", body = ErrorResponse),
        (status = 504, description = "Over the query time limit", body = ErrorResponse),
    ))]
pub(crate) async fn preview_bands(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(cube): Path<String>,
    params: Result<UrlQuery<PreviewParams>, QueryRejection>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<BandsPreview>, ApiError> {
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_parameters",
            format!(
                "{}; expected period=<a period of the band, such as 2025-06>",
                e.body_text()
            ),
        )
    })?;
    let slot = state.slot(&cube)?;
    let limit = state.config.limits.max_body_bytes;
    let text = body::read(&headers, body, body::YAML, limit)?;
    let model = parse_for(&state, &cube, &text, slot.path.as_deref())?;
    let snap = slot.load();
    let session = snap.cube.session(principal.access.clone());
    let answer = run_limited(&state, &principal, async move {
        session.preview_bands(&model, params.period.as_deref())
    })
    .await?;
    Ok(Json(answer))
}
