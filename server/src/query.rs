//! `POST /v1/cubes/{cube}/query` and `/drillthrough`, and the limits every query passes:
//! admission (a bounded number running, a bounded queue, 429 beyond it), a time limit that
//! cancels (504), and a bound on the rows of an answer (400).
//!
//! Where a query runs: most are answered from a cuboid in microseconds without ever waiting,
//! so they run inline on the I/O runtime — their first poll completes them. A query that does
//! not finish on its first poll is waiting on DataFusion (the fallback over the raw facts); it
//! is handed, as it is, to the query runtime, so that its CPU-heavy operators never hold an
//! I/O worker. The first poll runs with the query runtime entered, so the tasks DataFusion
//! spawns in it start there too. Cancelling (the time limit, or a client that goes away) drops
//! the query's task, and DataFusion stops with it.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use lattice_engine::query::{Answer, DrillAnswer, DrillQuery, Query, QueryError};
use lattice_engine::search::SearchError;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::AppState;
use crate::audit::{NoteSlot, note};
use crate::auth::Principal;
use crate::body::{self, RawBody};
use crate::error::{ApiError, BodyRouteErrors, ErrorResponse};
use crate::metrics::{QueryPath, Rejection};

/// How many queries run at once, and how many may wait for a turn.
#[derive(Debug)]
pub struct Admission {
    running: Semaphore,
    waiting: AtomicUsize,
    max_running: usize,
    max_waiting: usize,
}

/// Why a query was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    QueueFull,
    Timeout,
}

impl Admission {
    pub fn new(max_running: usize, max_waiting: usize) -> Admission {
        Admission {
            running: Semaphore::new(max_running.max(1)),
            waiting: AtomicUsize::new(0),
            max_running: max_running.max(1),
            max_waiting,
        }
    }

    /// A turn to run, waiting until `deadline` at most; refused at once when the queue is full.
    pub async fn enter(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, Refused> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let ahead = self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        if ahead >= self.max_waiting {
            return Err(Refused::QueueFull);
        }
        match tokio::time::timeout_at(deadline, self.running.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it as no turn.
            Ok(Err(_)) | Err(_) => Err(Refused::Timeout),
        }
    }

    pub fn running(&self) -> usize {
        self.max_running - self.running.available_permits()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    pub fn max_running(&self) -> usize {
        self.max_running
    }

    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }
}

/// Aborts a spawned task when dropped (a client that goes away, a time limit).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a query under the limits: the principal's turn and time limit (from the auth file),
/// then a turn from the server's [`Admission`], inline when it completes at once and on the
/// query runtime otherwise (see the module docs). Its error, any engine error, is answered in
/// the API's shape.
pub(crate) async fn run_limited<T, E, F>(
    state: &AppState,
    principal: &Principal,
    query: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Into<ApiError> + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
{
    let limit = principal
        .query_timeout
        .unwrap_or(state.config.limits.query_timeout);
    let deadline = Instant::now() + limit;
    // The principal's own turn first: a principal over its limit waits in its own queue and
    // holds none of the server's turns meanwhile.
    let _own_turn = match &principal.turns {
        None => None,
        Some(turns) => match turns.enter(deadline).await {
            Ok(turn) => Some(turn),
            Err(Refused::QueueFull) => {
                state.metrics.rejected(Rejection::QueueFull);
                return Err(ApiError::too_many_queries_of(
                    &principal.name,
                    turns.max_running(),
                    turns.max_waiting(),
                ));
            }
            Err(Refused::Timeout) => {
                state.metrics.rejected(Rejection::Timeout);
                return Err(ApiError::query_timeout(limit));
            }
        },
    };
    let _turn = match state.admission.enter(deadline).await {
        Ok(turn) => turn,
        Err(Refused::QueueFull) => {
            state.metrics.rejected(Rejection::QueueFull);
            return Err(ApiError::too_many_queries(
                state.admission.max_running(),
                state.admission.max_waiting(),
            ));
        }
        Err(Refused::Timeout) => {
            state.metrics.rejected(Rejection::Timeout);
            return Err(ApiError::query_timeout(limit));
        }
    };
    let mut query = Box::pin(query);
    let first = {
        let _enter = state.runtimes.query().enter();
        query.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    };
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => {
            // A future may be polled again with another waker: the task's poll registers it.
            let mut task = AbortOnDrop(state.runtimes.query().spawn(query));
            match tokio::time::timeout_at(deadline, &mut task.0).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => return Err(ApiError::internal("running a query", &join)),
                Err(_) => {
                    state.metrics.rejected(Rejection::Timeout);
                    return Err(ApiError::query_timeout(limit));
                }
            }
        }
    };
    result.map_err(Into::into)
}

/// The `limit` to ask the engine for so that an answer over the row limit is noticed without
/// materialising all of it: at most one row more than the limit.
fn capped(limit: Option<u64>, max_rows: usize) -> Option<u64> {
    let cap = max_rows as u64 + 1;
    Some(limit.map_or(cap, |l| l.min(cap)))
}

fn too_many_rows(state: &AppState, total: usize, offset: u64) -> ApiError {
    state.metrics.rejected(Rejection::TooManyRows);
    QueryError::TooManyRows {
        rows: total.saturating_sub(offset as usize),
        limit: state.config.limits.max_result_rows,
    }
    .into()
}

/// Answers a slice-and-dice query.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/query",
    tag = "query",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = Query, content_type = "application/json"),
    responses(
        (status = 200, description = "The answer", body = Answer),
        (status = 400, description = "A query the cube cannot answer as asked (unknown names, too many rows, ...)", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the time limit; cancelled", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn query(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    audit: Option<Extension<NoteSlot>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<Answer>, ApiError> {
    let audit = audit.map(|Extension(n)| n);
    let slot = state.slot(&cube)?;
    let limit = state.config.limits.max_body_bytes;
    let mut q = Query::from_json(&body::read(&headers, body, body::JSON, limit)?)?;
    let max_rows = state.config.limits.max_result_rows;
    q.limit = capped(q.limit, max_rows);
    let offset = q.offset;
    let snapshot = slot.load();
    let session = snapshot
        .cube
        .session(principal.access.clone())
        .with_cache(state.cache.clone());
    // Segments (saved searches) become filters on their entity's members first.
    let searches = if q.segments.is_empty() {
        None
    } else {
        Some(crate::searches::all_searches(&state, &cube, &principal).await?)
    };
    let answer = run_limited(&state, &principal, async move {
        if let Some(searches) = searches {
            session.expand_segments(&mut q, &searches).await?;
        }
        session.query(&q).await.map_err(SearchError::from)
    })
    .await?;
    note(audit.as_ref(), |n| n.set_rows(answer.rows.len()));
    if answer.rows.len() > max_rows {
        return Err(too_many_rows(&state, answer.meta.total_rows, offset));
    }
    state.metrics.query(if answer.meta.cached {
        QueryPath::Cache
    } else if answer.meta.source == "cuboid" {
        QueryPath::Cuboid
    } else if answer.meta.source == "base" {
        QueryPath::Base
    } else {
        QueryPath::Fallback
    });
    Ok(Json(answer))
}

/// Lists the members of an entity level behind a cell.
#[utoipa::path(
    post,
    path = "/v1/cubes/{cube}/drillthrough",
    tag = "query",
    params(("cube" = String, Path, description = "The cube's name")),
    request_body(content = DrillQuery, content_type = "application/json"),
    responses(
        (status = 200, description = "The members behind the cell, paged", body = DrillAnswer),
        (status = 400, description = "A drill-through the cube cannot answer as asked", body = ErrorResponse),
        (status = 403, description = "The principal's scope forbids it", body = ErrorResponse),
        (status = 404, description = "Unknown cube", body = ErrorResponse),
        (status = 504, description = "Over the time limit; cancelled", body = ErrorResponse),
        BodyRouteErrors,
    )
)]
pub(crate) async fn drillthrough(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Arc<Principal>>,
    audit: Option<Extension<NoteSlot>>,
    Path(cube): Path<String>,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Json<DrillAnswer>, ApiError> {
    let audit = audit.map(|Extension(n)| n);
    let slot = state.slot(&cube)?;
    let limit = state.config.limits.max_body_bytes;
    let mut q = DrillQuery::from_json(&body::read(&headers, body, body::JSON, limit)?)?;
    let max_rows = state.config.limits.max_result_rows;
    q.limit = capped(
        Some(
            q.limit
                .unwrap_or(lattice_engine::query::DEFAULT_DRILL_LIMIT),
        ),
        max_rows,
    );
    let offset = q.offset;
    let snapshot = slot.load();
    let session = snapshot.cube.session(principal.access.clone());
    let answer = run_limited(&state, &principal, async move {
        session.drill_through(&q).await
    })
    .await?;
    note(audit.as_ref(), |n| n.set_rows(answer.rows.len()));
    if answer.rows.len() > max_rows {
        return Err(too_many_rows(&state, answer.total as usize, offset));
    }
    Ok(Json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_queue_is_bounded_and_waits_end_at_the_deadline() {
        let a = Admission::new(1, 1);
        let far = Instant::now() + Duration::from_secs(10);
        let first = a.enter(far).await.expect("a free turn");
        assert_eq!(a.running(), 1);
        // One may wait; it gets the turn when the first ends.
        let waiter = async { a.enter(far).await.map(|_| ()) };
        let second = async {
            for _ in 0..10 {
                if a.waiting() == 1 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            assert_eq!(a.waiting(), 1);
            // The queue is full now: refused at once.
            let third = a.enter(far).await.map(|_| ());
            drop(first);
            third
        };
        let (waited, third) = tokio::join!(waiter, second);
        assert_eq!(waited, Ok(()));
        assert_eq!(third, Err(Refused::QueueFull));
        assert_eq!(a.waiting(), 0);
        // A wait that outlasts its deadline ends in a timeout.
        let _held = a.enter(far).await.expect("free again");
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(a.enter(soon).await.map(|_| ()), Err(Refused::Timeout));
    }

    #[test]
    fn the_engine_is_asked_for_one_row_over_the_limit_at_most() {
        assert_eq!(capped(None, 100), Some(101));
        assert_eq!(capped(Some(10), 100), Some(10));
        assert_eq!(capped(Some(1000), 100), Some(101));
    }
}
