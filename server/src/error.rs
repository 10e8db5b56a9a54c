//! The one error shape: an HTTP status and
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`.
//!
//! Every error the engine or the definition language can return is mapped here, in
//! exhaustive matches with no `_` arm, so that a new variant forces a decision about its status:
//! handlers return the engine's errors with `?` and never choose a status themselves. Internal
//! failures are logged with their detail and answered with a generic message.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lattice_defs::Diagnostics;
use lattice_engine::EngineError;
use lattice_engine::analytics::AnalyticsError;
use lattice_engine::entity::EntityError;
use lattice_engine::query::QueryError;
use lattice_engine::search::SearchError;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

/// An error answered to a client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable name of the problem.
    pub code: &'static str,
    /// What is wrong, for a person, with the fix where there is one.
    pub message: String,
    pub details: Value,
}

/// The error code of a response, left in its extensions for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Every error's body, `{"error": {"code", "message", "details"}}`: what [`ApiError`] is
/// written as, and its schema in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// The errors every route with a JSON body can answer before its own (the gate's, the body
/// reader's and admission's), documented once and listed in each such route's
/// `#[utoipa::path(responses(...))]`. A type for the OpenAPI document only: the answers
/// themselves are [`ApiError`]s.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // never built: its variants describe responses, not values
pub(crate) enum BodyRouteErrors {
    /// No valid API key or token (with `--auth`)
    #[response(status = 401)]
    Unauthorized(ErrorResponse),
    /// Body over the size limit
    #[response(status = 413)]
    TooLarge(ErrorResponse),
    /// Body not sent as application/json
    #[response(status = 415)]
    NotJson(ErrorResponse),
    /// Too many queries running and waiting
    #[response(status = 429)]
    TooMany(ErrorResponse),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable name of the problem (`unknown_level`, `query_timeout`, ...).
    pub code: &'static str,
    /// What is wrong, for a person, with the fix where there is one.
    pub message: String,
    /// The data of the problem (names, suggestions, limits, located definition errors).
    #[schema(value_type = Object)]
    pub details: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code,
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn unknown_cube(cube: &str, served: Vec<String>) -> ApiError {
        let suggestion = lattice_defs::diag::suggest(cube, served.iter().map(String::as_str));
        let hint = suggestion
            .as_ref()
            .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"));
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_cube",
            format!("unknown cube '{cube}'{hint}; GET /v1/cubes lists the cubes served"),
        )
        .with_details(json!({"cube": cube, "cubes": served, "suggestion": suggestion}))
    }

    pub fn unsupported_media_type(expected: &[&str], found: Option<&str>) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "the body must be sent as {} (content-type was {})",
                expected.join(" or "),
                found.map_or("missing".to_string(), |f| format!("'{f}'"))
            ),
        )
        .with_details(json!({"expected": expected, "found": found}))
    }

    pub fn body_too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
        .with_details(json!({"limit_bytes": limit}))
    }

    pub fn query_timeout(limit: Duration) -> ApiError {
        let ms = limit.as_millis() as u64;
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "query_timeout",
            format!(
                "the query took longer than the limit of {ms} ms and was cancelled; add filters, or ask at a coarser level that a cuboid answers"
            ),
        )
        .with_details(json!({"limit_ms": ms}))
    }

    pub fn too_many_queries(running: usize, queued: usize) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_queries",
            format!("{running} queries are running and {queued} waiting, the most this server queues; retry shortly"),
        )
        .with_details(json!({"max_concurrent": running, "max_queued": queued}))
    }

    /// A principal over its own limit (the auth file's `max_concurrent`, `max_queued`).
    pub fn too_many_queries_of(principal: &str, running: usize, queued: usize) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_queries",
            format!("'{principal}' has {running} queries running and {queued} waiting, the most its limits allow; retry when one has finished"),
        )
        .with_details(json!({"principal": principal, "max_concurrent": running, "max_queued": queued}))
    }

    /// A principal over its distinct questions a minute (`--max-questions-per-minute`); the
    /// gate adds `Retry-After`.
    pub fn too_many_questions(principal: &str, limit: usize, secs: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_questions",
            format!("'{principal}' has asked {limit} different questions in the last minute, the most this server answers a principal; asking one of them again is answered, a new one in {secs} s"),
        )
        .with_details(json!({"principal": principal, "max_questions_per_minute": limit, "retry_after_s": secs}))
    }

    /// A failure that is not the client's: logged in full, answered with a generic message.
    pub fn internal(context: &str, detail: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal error while {context}; the server log has the details"),
        )
    }

    /// A definition that does not validate, or does not match its data: every diagnostic, each
    /// with its line and column.
    pub fn invalid_definition(diags: &Diagnostics) -> ApiError {
        let errors: Vec<Value> = diags.iter().map(diagnostic_json).collect();
        let first = diags
            .iter()
            .next()
            .map_or(String::new(), |d| format!(": {d}"));
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_definition",
            format!(
                "the definition has {} error{}{first}; the cube keeps serving its previous definition",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            ),
        )
        .with_details(json!({"errors": errors}))
    }
}

/// One diagnostic as JSON: where, what, and the fix.
pub fn diagnostic_json(d: &lattice_defs::Diagnostic) -> Value {
    json!({
        "file": d.file,
        "line": d.pos.line,
        "column": d.pos.column,
        "path": d.path,
        "code": d.error.code(),
        "message": d.error.to_string(),
        "help": d.error.help(),
    })
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        let bad = StatusCode::BAD_REQUEST;
        let (status, details) = match &e {
            QueryError::Malformed { .. } => (bad, json!({})),
            QueryError::TooLarge { what, found, limit } => {
                (bad, json!({"what": what, "found": found, "limit": limit}))
            }
            QueryError::UnknownLevel { name, suggestion } => {
                (bad, json!({"level": name, "suggestion": suggestion}))
            }
            QueryError::UnknownMeasure { name, suggestion } => {
                (bad, json!({"measure": name, "suggestion": suggestion}))
            }
            QueryError::NoMeasures => (bad, json!({})),
            QueryError::LevelTwice {
                level,
                first,
                second,
            } => (
                bad,
                json!({"level": level, "first": first, "second": second}),
            ),
            QueryError::MeasureDoesNotVary {
                measure,
                level,
                dimension,
            } => (
                bad,
                json!({"measure": measure, "level": level, "dimension": dimension}),
            ),
            QueryError::UnknownMember {
                level,
                value,
                suggestions,
            } => (
                bad,
                json!({"level": level, "value": value, "suggestions": suggestions}),
            ),
            QueryError::BadFilter { level, .. } => (bad, json!({"level": level})),
            QueryError::HavingNotAsked { measure } => (bad, json!({"measure": measure})),
            QueryError::BadOrder { by } | QueryError::OrderByColumn { by } => {
                (bad, json!({"by": by}))
            }
            QueryError::BadCompare { level, .. } => (bad, json!({"level": level})),
            QueryError::BadDrill { level, .. } => (bad, json!({"level": level})),
            QueryError::BadShare { measure, .. } => (bad, json!({"measure": measure})),
            QueryError::TooManyRows { rows, limit } => (bad, json!({"rows": rows, "limit": limit})),
            QueryError::Forbidden { .. } => (StatusCode::FORBIDDEN, json!({})),
            QueryError::Engine { message } => {
                return ApiError::internal("answering a query", message);
            }
        };
        ApiError::new(status, e.code(), e.to_string()).with_details(details)
    }
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> ApiError {
        let details = match &e {
            AnalyticsError::Query(q) => return ApiError::from(q.clone()),
            AnalyticsError::NotATimeLevel { level, .. }
            | AnalyticsError::TimeLevel { level, .. } => json!({"level": level}),
            AnalyticsError::PeriodOrder {
                level,
                before,
                after,
            } => json!({"level": level, "before": before, "after": after}),
            AnalyticsError::BadThreshold { field, .. } => json!({"field": field}),
            AnalyticsError::Missing { kind, field, .. }
            | AnalyticsError::NotApplicable { kind, field } => {
                json!({"kind": kind, "field": field})
            }
            AnalyticsError::BadPeers { level, .. } => json!({"level": level}),
            AnalyticsError::InexactMeasure { measure } => json!({"measure": measure}),
            AnalyticsError::At { field, source } => {
                // The inner problem's status and details, with the field that has it.
                let mut inner = ApiError::from((**source).clone());
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
        ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()).with_details(details)
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        let (status, details) = match &e {
            SearchError::Analytics(a) => return ApiError::from(a.clone()),
            SearchError::UnknownSearch { name, suggestion } => (
                StatusCode::NOT_FOUND,
                json!({"name": name, "suggestion": suggestion}),
            ),
            SearchError::ReadOnly { name } | SearchError::NameTaken { name } => {
                (StatusCode::CONFLICT, json!({"name": name}))
            }
            SearchError::NotOwner { name, owner } => {
                (StatusCode::FORBIDDEN, json!({"name": name, "owner": owner}))
            }
            SearchError::SharingNeedsAdmin { name, .. }
            | SearchError::Withheld { name, .. }
            | SearchError::OnValues { name, .. } => (StatusCode::FORBIDDEN, json!({"name": name})),
            SearchError::PinsCustomers { at, level, .. } => {
                (StatusCode::FORBIDDEN, json!({"at": at, "level": level}))
            }
            SearchError::OwnerIsKept { name, owner } => (
                StatusCode::BAD_REQUEST,
                json!({"name": name, "owner": owner}),
            ),
            SearchError::BadCondition { at, .. } | SearchError::BadPeriod { at, .. } => {
                (StatusCode::BAD_REQUEST, json!({"at": at}))
            }
            SearchError::BadName { name, .. } => (StatusCode::BAD_REQUEST, json!({"name": name})),
        };
        ApiError::new(status, e.code(), e.to_string()).with_details(details)
    }
}

impl From<EntityError> for ApiError {
    fn from(e: EntityError) -> ApiError {
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
}

/// A build's failure: what the definition's author can act on goes back (422), the
/// server's own failures are internal.
impl From<&EngineError> for ApiError {
    fn from(engine: &EngineError) -> ApiError {
        match engine {
            // The data the definition names cannot be read or used: the definition's author
            // can act on these, so the message goes back.
            EngineError::Io { .. }
            | EngineError::Parquet { .. }
            | EngineError::Arrow(_)
            | EngineError::DataFusion(_)
            | EngineError::Unsupported { .. }
            | EngineError::OverMemoryBudget { .. }
            | EngineError::InvalidOption { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "build_failed",
                format!("{engine}; the cube keeps serving its previous definition"),
            ),
            EngineError::Definition(diags) => ApiError::from(diags),
            EngineError::Internal(_) => ApiError::internal("building a cube", engine),
            // A snapshot the server could not write or read back: its own files, not the
            // definition's author's.
            EngineError::Snapshot { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "snapshot",
                engine.to_string(),
            ),
        }
    }
}

impl From<&Diagnostics> for ApiError {
    fn from(diags: &Diagnostics) -> ApiError {
        ApiError::invalid_definition(diags)
    }
}

/// Why a definition could not become a served cube.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// It does not validate, or does not match its data: located diagnostics.
    #[error("{0}")]
    Invalid(Diagnostics),
    /// The build failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The accepted definition could not be written to disk (the cube was not swapped).
    #[error("cannot write the definition to {path}: {source}")]
    Persist {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The build task ended without an answer (it panicked, or the server is stopping).
    #[error("the build task ended early: {0}")]
    Aborted(String),
}

impl From<&BuildError> for ApiError {
    fn from(e: &BuildError) -> ApiError {
        match e {
            BuildError::Invalid(diags) => ApiError::from(diags),
            BuildError::Engine(engine) => ApiError::from(engine),
            BuildError::Persist { .. } | BuildError::Aborted(_) => {
                ApiError::internal("replacing a definition", e)
            }
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> ApiError {
        ApiError::from(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_errors_keep_their_code_and_data() {
        let e = ApiError::from(QueryError::UnknownMeasure {
            name: "fee_incme".into(),
            suggestion: Some("fee_income".into()),
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.code, "unknown_measure");
        assert_eq!(e.details["suggestion"], "fee_income");
        let e = ApiError::from(QueryError::TooManyRows { rows: 10, limit: 5 });
        assert_eq!(
            (e.code, e.details["limit"].as_u64()),
            ("too_many_rows", Some(5))
        );
    }

    #[test]
    fn engine_failures_are_internal_and_say_nothing_inside() {
        let e = ApiError::from(QueryError::Engine {
            message: "secret path /x/y".into(),
        });
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.code, "internal");
        assert!(!e.message.contains("/x/y"), "{}", e.message);
    }

    #[test]
    fn each_engine_error_keeps_its_status_through_the_layers_above_it() {
        let unknown_member = QueryError::UnknownMember {
            level: "customer.id".into(),
            value: "42".into(),
            suggestions: vec![],
        };
        // A query's unknown member is a bad request; an entity id that is not there is a
        // resource that is not there.
        let e = ApiError::from(SearchError::from(unknown_member.clone()));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, "unknown_member")
        );
        let e = ApiError::from(EntityError::Query(unknown_member));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::NOT_FOUND, "unknown_member")
        );
        let e = ApiError::from(SearchError::ReadOnly { name: "s".into() });
        assert_eq!(
            (e.status, e.code),
            (StatusCode::CONFLICT, "search_read_only")
        );
        // A field's problem: the inner problem's status and code, with the field named.
        let e = ApiError::from(AnalyticsError::At {
            field: "rank.by".into(),
            source: Box::new(AnalyticsError::InexactMeasure {
                measure: "avg_ticket".into(),
            }),
        });
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.details["field"], "rank.by");
        assert_eq!(e.details["measure"], "avg_ticket");
    }
}
