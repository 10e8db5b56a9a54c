//! The middleware every route passes (inside CORS, so that preflights need no credentials):
//! who is asking, whether they may use this route at all, whether they may ask one more
//! question, and the audit line of the answer.
//!
//! - `/health` and `/openapi.json` are open to anyone.
//! - `/metrics` needs the role `admin` or `metrics` when the server has `--auth`.
//! - Every other route, the Cube API's included, needs a principal; the handler finds it in
//!   the request's extensions (`Arc<Principal>`) and answers for its [`Access`] only. Route
//!   rules that depend on the principal (definitions need `admin`) live in the handlers.
//! - A principal whose answers are restricted may ask at most `max_questions_per_minute`
//!   distinct questions a minute on every route but [`NOT_QUESTIONS`], repeats free; one more
//!   gets 429 `too_many_questions` with `Retry-After` (`crate::auth::questions` says why).
//! - The audit line is filled here alike for every route, so a new route cannot forget it: the
//!   route, its path parameters (cube, ids, a search's name), the query string and the body.
//!   The body is read here, up to the server's body limit, a bounded copy kept, and handed on
//!   to the route as it came (over the limit, the route still answers 413 as before).
//! - The Cube API keeps Cube's error shape (`{"error": "..."}`, 403) for refused credentials,
//!   as its clients expect; the native API answers 401 with `WWW-Authenticate`.
//!
//! [`Access`]: crate::auth::Access

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use crate::AppState;
use crate::audit::{BodyCopy, Note, NoteSlot, Record};
use crate::auth::{Denied, Method, Principal, forbidden};
use crate::error::{ApiError, ErrorCode};

/// Routes anyone may call.
const OPEN: [&str; 2] = ["/health", "/openapi.json"];
const METRICS: &str = "/metrics";
const CUBE_API: &str = "/cubejs-api/";

/// Routes that answer no question about the data: definitions, metadata, saved searches as
/// documents, the Cube API's metadata and translation. Every other route counts toward a
/// principal's distinct questions, so a new route is counted unless it is named here.
const NOT_QUESTIONS: [&str; 8] = [
    METRICS,
    "/v1/cubes",
    "/v1/cubes/{cube}",
    "/v1/cubes/{cube}/definition",
    "/v1/cubes/{cube}/searches",
    "/v1/cubes/{cube}/searches/{name}",
    "/cubejs-api/v1/meta",
    "/cubejs-api/v1/dry-run",
];

pub(crate) async fn gate(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
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
    let (mut parts, body) = req.into_parts();
    let principal = match &state.config.auth {
        None => Ok(Principal::anonymous()),
        Some(auth) => auth.authenticate(parts.headers.get(header::AUTHORIZATION), cube_api),
    };
    let audit = state
        .audit
        .as_ref()
        .filter(|_| route.as_deref() != Some(METRICS));
    let mut record = Record {
        time,
        principal: None,
        method: Method::None,
        http_method: parts.method.to_string(),
        route: route
            .clone()
            .unwrap_or_else(|| parts.uri.path().to_string()),
        scope: String::new(),
        path: match audit {
            Some(_) => path_params(&mut parts).await,
            None => Vec::new(),
        },
        params: parts.uri.query().map(str::to_string),
        body: None,
        note: Note::default(),
        status: 0,
        error: None,
        elapsed_us: 0,
    };
    let finish = |mut record: Record, response: &Response| {
        if let Some(audit) = audit {
            record.status = response.status().as_u16();
            record.error = response.extensions().get::<ErrorCode>().map(|c| c.0);
            record.elapsed_us = started.elapsed().as_micros() as u64;
            audit.record(record);
        }
    };
    let principal = match principal {
        Ok(p) => Arc::new(p),
        Err(denied) => {
            let response = if cube_api {
                cube_api_refusal(&denied)
            } else {
                denied.into_response()
            };
            finish(record, &response);
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
    record.principal = Some(principal.name.clone());
    record.method = principal.method;
    record.scope = {
        let rules: Vec<String> = principal
            .access
            .scope
            .iter()
            .map(ToString::to_string)
            .collect();
        rules.join(" & ")
    };
    let limit = state.config.limits.max_questions_per_minute;
    let counted = state.config.auth.as_ref().filter(|_| {
        limit > 0
            && route
                .as_deref()
                .is_some_and(|r| !NOT_QUESTIONS.contains(&r))
    });
    let (body, read) = if audit.is_some() || counted.is_some() {
        buffer(body, state.config.limits.max_body_bytes).await
    } else {
        (body, None)
    };
    record.body = read
        .as_ref()
        .map(|r| BodyCopy::new(&r.head, r.whole.then_some(r.head.len())));
    // A body over the limit is refused by the route (413) and answers nothing.
    if let Some(auth) = counted
        && read.as_ref().is_none_or(|r| r.whole)
    {
        let question = [
            parts.method.as_str().as_bytes(),
            parts.uri.path().as_bytes(),
            parts.uri.query().unwrap_or_default().as_bytes(),
            read.as_ref().map_or(&[][..], |r| &r.head[..]),
        ];
        if let Err(wait) = auth.admit_question(&principal, &question, limit) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let error = ApiError::too_many_questions(&principal.name, limit, secs);
            let response = too_many_questions(error, secs, cube_api);
            finish(record, &response);
            return response;
        }
    }
    let note = audit.map(|_| NoteSlot::default());
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(principal.clone());
    req.extensions_mut().insert(principal.access.clone());
    if let Some(n) = &note {
        req.extensions_mut().insert(n.clone());
    }
    let response = next.run(req).await;
    if let Some(n) = note {
        record.note = std::mem::take(&mut *crate::registry::lock(&n.0));
    }
    finish(record, &response);
    response
}

/// The matched route's path parameters, decoded (none when one is not UTF-8: the route
/// refuses such a path itself).
async fn path_params(parts: &mut Parts) -> Vec<(String, String)> {
    RawPathParams::from_request_parts(parts, &())
        .await
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// What [`buffer`] read of a body.
struct Read {
    /// The whole body, or (not `whole`) the part read before the limit was passed or reading
    /// failed.
    head: Bytes,
    whole: bool,
}

/// Reads `body` up to `limit` bytes, and a body that yields the same bytes for the route. Over
/// the limit, or when reading fails, the route's body yields what was read and then the rest
/// (or the error), so that the route answers as it would have (413, 400). `None` for an empty
/// body.
async fn buffer(body: Body, limit: usize) -> (Body, Option<Read>) {
    use axum::body::HttpBody as _;
    if body.size_hint().exact() == Some(0) {
        return (body, None);
    }
    let mut stream = body.into_data_stream();
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    let failed = loop {
        match stream.next().await {
            None => {
                let head = concat(chunks, len);
                let read = Read {
                    head: head.clone(),
                    whole: true,
                };
                return (Body::from(head), Some(read));
            }
            Some(Ok(chunk)) => {
                len += chunk.len();
                chunks.push(chunk);
                if len > limit {
                    break None;
                }
            }
            Some(Err(e)) => break Some(e),
        }
    };
    let head = concat(chunks, len);
    let mut first = vec![Ok(head.clone())];
    first.extend(failed.map(Err));
    let body = Body::from_stream(futures::stream::iter(first).chain(stream));
    (body, Some(Read { head, whole: false }))
}

fn concat(mut chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.remove(0);
    }
    let mut all = Vec::with_capacity(len);
    for c in &chunks {
        all.extend_from_slice(c);
    }
    Bytes::from(all)
}

/// 429 with `Retry-After`, in the native shape or in Cube's.
fn too_many_questions(error: ApiError, retry_after_s: u64, cube_api: bool) -> Response {
    let mut response = if cube_api {
        let mut r = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(serde_json::json!({ "error": error.message })),
        )
            .into_response();
        r.extensions_mut().insert(ErrorCode(error.code));
        r
    } else {
        error.into_response()
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
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
