//! The read-only routes: cubes and their metadata, members, the definition's text, health,
//! metrics and the OpenAPI document.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query as UrlQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lattice_defs::model::LevelRef;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::audit::{NoteSlot, note};
use crate::auth::Access;
use crate::error::{ApiError, ErrorResponse};
use crate::info::{BuildInfo, CubeInfo};
use crate::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Scrape};
use crate::registry::{ReloadOutcome, lock};
use lattice_engine::build::select::Learned;

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the server answers.
    pub status: &'static str,
    pub cubes: usize,
    /// Definition builds running now.
    pub builds_in_progress: usize,
}

/// One line of `GET /v1/cubes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CubeSummary {
    pub name: String,
    pub description: Option<String>,
    pub version: u64,
    /// Absent for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildInfo>,
    /// Absent for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadOutcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CubeList {
    pub cubes: Vec<CubeSummary>,
}

/// `GET /v1/cubes/{cube}`: the metadata, and how its last reload went.
#[derive(Debug, Serialize, ToSchema)]
pub struct CubeDetail {
    #[serde(flatten)]
    pub info: CubeInfo,
    /// Absent for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadOutcome>,
    /// The group-bys of the questions no cuboid answered since this snapshot started serving
    /// (from the base rows or the fallback), costliest first, at most 20: the next build of
    /// the cube adds cuboids for them within its budget. Absent for a scoped principal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed: Option<Vec<Learned>>,
}

/// Recorded group-bys shown at most.
const MISSED_SHOWN: usize = 20;

/// Paging and search of a level's members.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MembersParams {
    /// Only members whose name contains this, ignoring case.
    pub search: Option<String>,
    /// Members to return (default 100).
    pub limit: Option<usize>,
    /// Members to skip.
    pub offset: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Member {
    pub name: String,
    /// The member above it in the dimension's hierarchy, when the level has a parent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// `GET /v1/cubes/{cube}/members/{dimension}/{level}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Members {
    pub cube: String,
    pub dimension: String,
    pub level: String,
    /// Members matching `search` (all of the level's without it), before paging.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    /// In the level's order (calendar order for time, bucket order for bands).
    pub members: Vec<Member>,
}

pub const DEFAULT_MEMBERS_LIMIT: usize = 100;

#[utoipa::path(get, path = "/health", tag = "server", security(()),
    responses((status = 200, description = "The server is up", body = Health)))]
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "ok",
        cubes: state.registry.names().len(),
        builds_in_progress: state.registry.builds_in_progress(),
    })
}

#[utoipa::path(get, path = "/v1/cubes", tag = "cubes",
    responses((status = 200, description = "The cubes served", body = CubeList)))]
pub(crate) async fn list_cubes(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
) -> Json<CubeList> {
    // Roles alone (privacy rules) restrict no rows; a scope does.
    let whole = access.scope.is_empty();
    let cubes = state
        .registry
        .slots()
        .iter()
        .map(|slot| {
            let snap = slot.load();
            CubeSummary {
                name: snap.info.name.clone(),
                description: snap.info.description.clone(),
                version: snap.info.version,
                build: snap.info.build.clone().filter(|_| whole),
                last_reload: lock(&slot.last_reload).clone().filter(|_| whole),
            }
        })
        .collect();
    Json(CubeList { cubes })
}

#[utoipa::path(get, path = "/v1/cubes/{cube}", tag = "cubes",
    params(("cube" = String, Path, description = "The cube's name")),
    responses(
        (status = 200, description = "Dimensions, levels, hierarchies, member counts, measures", body = CubeDetail),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
    ))]
pub(crate) async fn cube_metadata(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    Path(cube): Path<String>,
) -> Result<Json<CubeDetail>, ApiError> {
    let slot = state.slot(&cube)?;
    let snap = slot.load();
    if access.scope.is_empty() {
        let mut missed = snap.cube.missed();
        missed.truncate(MISSED_SHOWN);
        return Ok(Json(CubeDetail {
            info: snap.info.clone(),
            last_reload: lock(&slot.last_reload).clone(),
            missed: Some(missed),
        }));
    }
    // A scoped principal: member counts of what it may see, and nothing about the whole cube.
    let mut info = snap.info.clone();
    info.build = None;
    info.snapshot = None;
    info.sources = None;
    let session = snap.cube.session(access);
    for (d, dim) in info.dimensions.iter_mut().enumerate() {
        for (l, level) in dim.levels.iter_mut().enumerate() {
            let visible = session
                .visible_members(LevelRef { dim: d, level: l })
                .await?;
            if let Some(v) = visible {
                level.members = v.len() as usize;
            }
        }
    }
    Ok(Json(CubeDetail {
        info,
        last_reload: None,
        missed: None,
    }))
}

#[utoipa::path(get, path = "/v1/cubes/{cube}/members/{dimension}/{level}", tag = "cubes",
    params(
        ("cube" = String, Path, description = "The cube's name"),
        ("dimension" = String, Path, description = "A dimension of the cube"),
        ("level" = String, Path, description = "A level of the dimension"),
        MembersParams,
    ),
    responses(
        (status = 200, description = "The level's members, paged", body = Members),
        (status = 400, description = "Bad paging parameters, or a limit over the row limit", body = ErrorResponse),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 404, description = "Unknown cube, dimension or level", body = ErrorResponse),
    ))]
pub(crate) async fn members(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    audit: Option<Extension<NoteSlot>>,
    Path((cube, dimension, level)): Path<(String, String, String)>,
    params: Result<UrlQuery<MembersParams>, QueryRejection>,
) -> Result<Json<Members>, ApiError> {
    let audit = audit.map(|Extension(n)| n);
    note(audit.as_ref(), |n| n.set_cube(&cube));
    let slot = state.slot(&cube)?;
    let UrlQuery(params) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_parameters",
            format!(
                "{}; expected search=<text>&limit=<n>&offset=<n>",
                e.body_text()
            ),
        )
    })?;
    let snap = slot.load();
    let model = &snap.cube.model;
    let Some(d) = model.dimension(&dimension) else {
        return Err(unknown(
            "dimension",
            &dimension,
            model.dimensions.iter().map(|d| d.name.as_str()),
        ));
    };
    let dim = &model.dimensions[d];
    let Some(l) = dim.level(&level) else {
        return Err(unknown(
            "level",
            &level,
            dim.levels.iter().map(|l| l.name.as_str()),
        ));
    };
    let max = state.config.limits.max_result_rows;
    let limit = params.limit.unwrap_or(DEFAULT_MEMBERS_LIMIT);
    if limit > max {
        return Err(lattice_engine::query::QueryError::TooManyRows {
            rows: limit,
            limit: max,
        }
        .into());
    }
    let offset = params.offset.unwrap_or(0);
    let most = lattice_engine::query::MAX_PAGE_ROWS as usize;
    if offset > most {
        return Err(lattice_engine::query::QueryError::TooLarge {
            what: "members skipped by `offset`",
            found: offset,
            limit: most,
        }
        .into());
    }
    let at = LevelRef { dim: d, level: l };
    // The members the principal may see (None: all of them).
    let visible = snap.cube.session(access).visible_members(at).await?;
    let names = &snap.cube.members(at).names;
    // The parent level in the hierarchy, and each member's parent code when it has one.
    let parent = dim
        .hierarchy
        .iter()
        .position(|&h| h == l)
        .and_then(|i| i.checked_sub(1))
        .map(|i| dim.hierarchy[i])
        .and_then(|p| {
            Some((
                &snap.cube.members(LevelRef { dim: d, level: p }).names,
                snap.cube.parent_map(d, l, p)?,
            ))
        });
    let needle = params.search.as_deref().map(str::to_lowercase);
    let matching = names
        .iter()
        .enumerate()
        .filter(|(code, _)| {
            visible
                .as_ref()
                .is_none_or(|v| u32::try_from(*code).is_ok_and(|c| v.contains(c)))
        })
        .filter(|(_, n)| needle.as_ref().is_none_or(|s| n.to_lowercase().contains(s)));
    let mut total = 0;
    let mut page = Vec::new();
    for (code, name) in matching {
        if total >= offset && page.len() < limit {
            page.push(Member {
                name: name.clone(),
                parent: parent
                    .and_then(|(parents, map)| parents.get(*map.get(code)? as usize).cloned()),
            });
        }
        total += 1;
    }
    note(audit.as_ref(), |n| n.set_rows(page.len()));
    Ok(Json(Members {
        cube,
        dimension,
        level,
        total,
        offset,
        limit,
        members: page,
    }))
}

fn unknown<'a>(
    what: &'static str,
    name: &str,
    names: impl Iterator<Item = &'a str> + Clone,
) -> ApiError {
    let suggestion = lattice_defs::diag::suggest(name, names.clone());
    let hint = suggestion
        .as_ref()
        .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"));
    let code = if what == "dimension" {
        "unknown_dimension"
    } else {
        "unknown_level"
    };
    ApiError::new(
        StatusCode::NOT_FOUND,
        code,
        format!("unknown {what} '{name}'{hint}"),
    )
    .with_details(serde_json::json!({
        what: name,
        "suggestion": suggestion,
        "known": names.collect::<Vec<_>>(),
    }))
}

/// The YAML media type of definitions.
pub const YAML: &str = "application/yaml";

#[utoipa::path(get, path = "/v1/cubes/{cube}/definition", tag = "definitions",
    params(("cube" = String, Path, description = "The cube's name")),
    responses(
        (status = 200, description = "The YAML the serving snapshot was built from", content_type = "application/yaml", body = String),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
    ))]
pub(crate) async fn get_definition(
    State(state): State<Arc<AppState>>,
    Path(cube): Path<String>,
) -> Result<Response, ApiError> {
    let snap = state.slot(&cube)?.load();
    let mut response = (
        [(header::CONTENT_TYPE, HeaderValue::from_static(YAML))],
        snap.yaml.clone(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", snap.info.version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    Ok(response)
}

/// A gauge per cube: name, help, its value from the serving snapshot's metadata.
type CubeGauge = (&'static str, &'static str, fn(&CubeInfo) -> u64);

#[utoipa::path(get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "Prometheus text format: requests, errors and latency per route, queries, builds, cube sizes", content_type = "text/plain", body = String),
        (status = 401, description = "No valid API key or token (with `--auth`)", body = ErrorResponse),
        (status = 403, description = "The principal has neither the role `admin` nor `metrics`", body = ErrorResponse),
    ))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let mut scrape = Scrape::default();
    scrape.gauge(
        "lattice_queries_running",
        "Queries running now",
        state.admission.running(),
    );
    scrape.gauge(
        "lattice_queries_waiting",
        "Queries waiting for a turn",
        state.admission.waiting(),
    );
    scrape.gauge(
        "lattice_query_cache_entries",
        "Answers in the query cache",
        state.cache.len(),
    );
    scrape.gauge(
        "lattice_builds_in_progress",
        "Definition builds running now",
        state.registry.builds_in_progress(),
    );
    if let Some(audit) = &state.audit {
        scrape.counter(
            "lattice_audit_dropped_lines",
            "Audit lines dropped because the writer fell behind",
            audit.dropped(),
        );
    }
    let infos: Vec<_> = state.registry.slots().iter().map(|s| s.load()).collect();
    let per_cube: [CubeGauge; 5] = [
        (
            "lattice_cube_version",
            "The serving snapshot's number",
            |c| c.version,
        ),
        (
            "lattice_cube_bytes",
            "Bytes the serving snapshot's cuboids take",
            |c| c.build.as_ref().map_or(0, |b| b.bytes as u64),
        ),
        (
            "lattice_cube_cuboids",
            "Cuboids in the serving snapshot",
            |c| c.build.as_ref().map_or(0, |b| b.cuboids as u64),
        ),
        (
            "lattice_cube_cells",
            "Cells in the serving snapshot's cuboids",
            |c| c.build.as_ref().map_or(0, |b| b.cells as u64),
        ),
        (
            "lattice_cube_fact_rows",
            "Raw fact rows the serving snapshot was built from",
            |c| c.build.as_ref().map_or(0, |b| b.fact_rows),
        ),
    ];
    for (name, help, value) in per_cube {
        let values = infos.iter().map(|s| (s.info.name.clone(), value(&s.info)));
        scrape.per_cube(name, help, values);
    }
    scrape.per_cube(
        "lattice_cube_build_seconds",
        "How long the serving snapshot took to build",
        infos.iter().map(|s| {
            let seconds = s.info.build.as_ref().map_or(0.0, |b| b.seconds);
            (s.info.name.clone(), seconds)
        }),
    );
    let out = state
        .metrics
        .render(&scrape)
        .map_err(|e| ApiError::internal("encoding the metrics", &e))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(METRICS_CONTENT_TYPE),
        )],
        out,
    )
        .into_response())
}

// The document is made once, from the route table, with the server, which holds it: this
// handler needs nothing of how it is made (and `openapi` imports the handlers, not back).
#[utoipa::path(get, path = "/openapi.json", tag = "server", security(()),
    responses((status = 200, description = "This API as an OpenAPI 3.1 document (free-form: its schema is the OpenAPI specification's)", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.openapi,
    )
        .into_response()
}
