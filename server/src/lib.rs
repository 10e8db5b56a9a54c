//! # lattice-server
//!
//! The HTTP shell over the engine: axum routes, JSON codecs, one error shape. It holds no
//! analytics of its own. Today it serves what the engine can answer so far — the cubes that
//! are loaded and their metadata — under `/v1`, plus `/health`; the query, drill-through,
//! definition and metrics routes of DESIGN.md come with the query engine.
//!
//! Errors everywhere have one shape: an HTTP status and
//! `{"error": {"code": "...", "message": "...", "details": {...}}}` ([`ApiError`]).

pub mod cubejs;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lattice_defs::model::{DimensionKind, LevelKind, MeasureKind, Model};
use serde::Serialize;
use serde_json::json;

/// What `/v1/cubes/{cube}` says about a cube.
#[derive(Debug, Clone, Serialize)]
pub struct CubeInfo {
    pub name: String,
    pub description: Option<String>,
    /// How the served snapshot was built (absent when only the definition is known).
    pub build: Option<BuildInfo>,
    pub dimensions: Vec<DimensionInfo>,
    pub measures: Vec<MeasureInfo>,
}

/// What the build of a served cube did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub seconds: f64,
    pub cuboids: usize,
    pub cells: usize,
    pub bytes: usize,
    pub fact_rows: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DimensionInfo {
    pub name: String,
    pub kind: &'static str,
    pub levels: Vec<LevelInfo>,
    /// Level names from the coarsest to the finest.
    pub hierarchy: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelInfo {
    pub name: String,
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeasureInfo {
    pub name: String,
    pub kind: &'static str,
    pub description: Option<String>,
}

impl CubeInfo {
    pub fn from_model(model: &Model) -> Self {
        CubeInfo {
            name: model.name.clone(),
            description: model.description.clone(),
            build: None,
            dimensions: model
                .dimensions
                .iter()
                .map(|d| DimensionInfo {
                    name: d.name.clone(),
                    kind: match d.kind {
                        DimensionKind::Time => "time",
                        DimensionKind::Table { .. } => "table",
                    },
                    levels: d
                        .levels
                        .iter()
                        .map(|l| LevelInfo {
                            name: l.name.clone(),
                            kind: match l.kind {
                                LevelKind::Column(_) => "column",
                                LevelKind::Time(_) => "time",
                                LevelKind::Bucket(_) => "bucket",
                            },
                        })
                        .collect(),
                    hierarchy: d
                        .hierarchy
                        .iter()
                        .map(|&i| d.levels[i].name.clone())
                        .collect(),
                })
                .collect(),
            measures: model
                .measures
                .iter()
                .map(|m| MeasureInfo {
                    name: m.name.clone(),
                    kind: match m.kind {
                        MeasureKind::Aggregate { .. } => "aggregate",
                        MeasureKind::Derived(_) => "derived",
                    },
                    description: m.description.clone(),
                })
                .collect(),
        }
    }
}

/// An error answered to a client: status, stable code, a message a person can act on.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, Json(body)).into_response()
    }
}

#[derive(Debug)]
struct AppState {
    cubes: Vec<CubeInfo>,
}

/// The routes, over the cubes given.
pub fn router(cubes: Vec<CubeInfo>) -> Router {
    let state = Arc::new(AppState { cubes });
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/cubes", get(list_cubes))
        .route("/v1/cubes/{cube}", get(cube_metadata))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                code: "not_found",
                message: "no such route; see /v1/cubes".into(),
                details: json!({}),
            }
        })
        .with_state(state)
}

async fn list_cubes(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let cubes: Vec<_> = state
        .cubes
        .iter()
        .map(|c| json!({"name": c.name, "description": c.description, "build": c.build}))
        .collect();
    Json(json!({ "cubes": cubes }))
}

async fn cube_metadata(
    State(state): State<Arc<AppState>>,
    Path(cube): Path<String>,
) -> Result<Json<CubeInfo>, ApiError> {
    state
        .cubes
        .iter()
        .find(|c| c.name == cube)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            code: "unknown_cube",
            message: format!("unknown cube '{cube}'"),
            details: json!({"cube": cube, "cubes": state.cubes.iter().map(|c| c.name.clone()).collect::<Vec<_>>()}),
        })
}

/// Serves `cubes` on `addr` until Ctrl-C or SIGTERM, finishing requests in flight.
pub async fn serve(addr: &str, cubes: Vec<CubeInfo>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local: SocketAddr = listener.local_addr()?;
    tracing::info!(%local, "serving; try: curl http://{local}/v1/cubes");
    eprintln!("Lattice is serving on http://{local}  (try: curl http://{local}/v1/cubes/bank_crm)");
    axum::serve(listener, router(cubes))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        let model = lattice_defs::parse_str(
            lattice_defs::BANK_CRM_YAML,
            "bank_crm.yaml",
            std::path::Path::new("."),
        )
        .expect("shipped cube is valid");
        router(vec![CubeInfo::from_model(&model)])
    }

    async fn get_json(uri: &str) -> (StatusCode, serde_json::Value) {
        let resp = app()
            .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("json body"))
    }

    #[tokio::test]
    async fn lists_and_describes_cubes() {
        let (status, body) = get_json("/v1/cubes").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["cubes"][0]["name"], "bank_crm");
        let (status, body) = get_json("/v1/cubes/bank_crm").await;
        assert_eq!(status, StatusCode::OK);
        let region = body["dimensions"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["name"] == "region"))
            .expect("region dimension");
        assert_eq!(region["hierarchy"], json!(["province", "city", "branch"]));
    }

    #[tokio::test]
    async fn unknown_cube_and_route_use_the_error_shape() {
        let (status, body) = get_json("/v1/cubes/bank").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "unknown_cube");
        assert_eq!(body["error"]["details"]["cubes"], json!(["bank_crm"]));
        let (status, body) = get_json("/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["code"], "not_found");
    }
}
