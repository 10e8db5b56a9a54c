//! The middleware every route passes (inside CORS, so that preflights need no credentials):
//! who is asking, whether they may use this route at all, and the audit line of the answer.
//!
//! - `/health` and `/openapi.json` are open to anyone.
//! - `/metrics` needs the role `admin` or `metrics` when the server has `--auth`.
//! - Every other route, the Cube API's included, needs a principal; the handler finds it in
//!   the request's extensions (`Arc<Principal>`) and answers for its [`Access`] only. Route
//!   rules that depend on the principal (definitions need `admin`) live in the handlers.
//! - The Cube API keeps Cube's error shape (`{"error": "..."}`, 403) for refused credentials,
//!   as its clients expect; the native API answers 401 with `WWW-Authenticate`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::audit::{NoteSlot, Record};
use crate::auth::{Denied, Principal, forbidden};
use crate::error::ErrorCode;

/// Routes anyone may call.
const OPEN: [&str; 2] = ["/health", "/openapi.json"];
const METRICS: &str = "/metrics";
const CUBE_API: &str = "/cubejs-api/";

pub(crate) async fn gate(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let time = SystemTime::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    if route.as_deref().is_some_and(|r| OPEN.contains(&r)) {
        return next.run(req).await;
    }
    let cube_api = route.as_deref().is_some_and(|r| r.starts_with(CUBE_API));
    let principal = match &state.config.auth {
        None => Ok(Principal::anonymous()),
        Some(auth) => auth.authenticate(req.headers().get(header::AUTHORIZATION), cube_api),
    };
    let audited = route.as_deref() != Some(METRICS);
    let req_method = req.method().to_string();
    let path = req.uri().path().to_string();
    let params = req.uri().query().map(str::to_string);
    let record = |principal: Option<&Principal>, note: Option<NoteSlot>, response: &Response| {
        let Some(audit) = state.audit.as_ref().filter(|_| audited) else {
            return;
        };
        audit.record(Record {
            time,
            principal: principal.map(|p| p.name.clone()),
            method: principal.map_or(crate::auth::Method::None, |p| p.method),
            http_method: req_method.clone(),
            route: route.clone().unwrap_or_else(|| path.clone()),
            scope: principal.map_or_else(String::new, |p| {
                let rules: Vec<String> = p.access.scope.iter().map(ToString::to_string).collect();
                rules.join(" & ")
            }),
            params: params.clone(),
            note: note
                .map(|n| std::mem::take(&mut *crate::registry::lock(&n.0)))
                .unwrap_or_default(),
            status: response.status().as_u16(),
            error: response.extensions().get::<ErrorCode>().map(|c| c.0),
            elapsed_us: started.elapsed().as_micros() as u64,
        });
    };
    let principal = match principal {
        Ok(p) => Arc::new(p),
        Err(denied) => {
            let response = if cube_api {
                cube_api_refusal(&denied)
            } else {
                denied.into_response()
            };
            record(None, None, &response);
            return response;
        }
    };
    if route.as_deref() == Some(METRICS) && !principal.may_read_metrics() {
        return forbidden(format!(
            "/metrics needs a principal with the role 'admin' or 'metrics'; '{}' has neither",
            principal.name
        ))
        .into_response();
    }
    let note = state.audit.as_ref().map(|_| NoteSlot::default());
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(principal.access.clone());
    if let Some(n) = &note {
        req.extensions_mut().insert(n.clone());
    }
    let response = next.run(req).await;
    record(Some(&principal), note, &response);
    response
}

/// Refused credentials on the Cube API, in Cube's shape.
fn cube_api_refusal(denied: &Denied) -> Response {
    let message = match denied {
        Denied::Missing => "Authorization header isn't set",
        Denied::Expired => "Token expired",
        Denied::Malformed | Denied::UnknownKey | Denied::Invalid(_) => "Invalid token",
    };
    let mut response = (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(ErrorCode("invalid_credentials"));
    response
}
