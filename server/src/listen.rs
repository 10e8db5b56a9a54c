//! Accepting connections and keeping slow clients from holding them: the loop under
//! [`crate::Server::serve`].
//!
//! ```text
//! accept --a permit of `max_connections`? no: 503 written if it fits, closed--> task
//! task: hyper HTTP/1 over Watched(TcpStream) --each request--> the router (body: WatchedBody)
//!       watchdog: the connection's Clock names the next deadline; past it, the connection
//!       is dropped (closed) whatever hyper is waiting for
//! ```
//!
//! A connection is in one of three phases, and the [`Clock`] keeps the deadline of each:
//!
//! - **idle**: no request in flight and no byte moved since the last one (or since accept):
//!   closed `idle_timeout` after the last byte written or read.
//! - **head**: a byte of a request arrived but its headers are not all here: closed
//!   `header_read_timeout` after that first byte, however slowly the rest trickles in.
//! - **request**: a handler is answering. While the request's body is still being read it must
//!   all arrive within `body_read_timeout` of the headers; after that no deadline here (the
//!   query limits bound the handler).
//!
//! Invariant: the watchdog never closes a connection whose deadline it has not seen pass; a
//! phase change that moves the deadline earlier wakes it (`Clock::changed`).

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::Request;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::config::Limits;

/// How long a connection may take over each phase.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
    idle: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, asks every
/// connection to finish its request in flight and close, and returns when all have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let timeouts = Timeouts {
        header: limits.header_read_timeout,
        body: limits.body_read_timeout,
        idle: limits.idle_timeout,
    };
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let refusal = refusal(max);
    // `stop` tells the connections to wind down; every task holds a `done` receiver, so
    // `done_tx.closed()` completes when the last one has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut last_refusal_logged: Option<Instant> = None;
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection; retrying in 100 ms");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Refused at once: a best-effort 503 without reading the request, then closed.
            let _ = stream.try_write(&refusal);
            if last_refusal_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_refusal_logged = Some(Instant::now());
                tracing::warn!(
                    max_connections = max,
                    "refusing connections: the server has its most open connections"
                );
            }
            continue;
        };
        tokio::spawn(connection(
            stream,
            router.clone(),
            timeouts,
            permit,
            stop_rx.clone(),
            done_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Errors of one connection that came and went before it was accepted: not the listener's.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The answer to a connection over `max_connections`, in the API's error shape.
fn refusal(max: usize) -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": format!("the server has {max} connections open, the most it keeps; retry shortly"),
        "details": {"max_connections": max},
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One connection, served until it ends, its deadline passes or the server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    timeouts: Timeouts,
    _permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let clock = Arc::new(Clock::new(timeouts));
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: clock.clone(),
    });
    let router = TowerToHyperService::new(router);
    let on_request = clock.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = on_request.request_started(!req.body().is_end_stream());
        let reading = Reading(on_request.clone());
        let req = req.map(|inner| WatchedBody {
            inner,
            reading: Some(reading),
        });
        let answer = hyper::service::Service::call(&router, req);
        async move {
            let _in_flight = in_flight;
            answer.await
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = clock.deadline();
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                if let Some(phase) = clock.expired(Instant::now()) {
                    tracing::debug!(phase, "closing a connection over its time limit");
                    break;
                }
            }
            () = clock.changed.notified() => {}
        }
    }
}

async fn sleep_until(deadline: Option<(Instant, &'static str)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is in its life, and since when (module docs).
#[derive(Debug)]
struct Clock {
    timeouts: Timeouts,
    state: Mutex<Phases>,
    /// Woken when the deadline may have moved earlier.
    changed: Notify,
}

#[derive(Debug)]
struct Phases {
    /// Requests whose answer is not yet handed to hyper (one at a time in HTTP/1).
    in_flight: usize,
    /// With none in flight: the first byte of the next request's head, once one arrived.
    head_since: Option<Instant>,
    /// A request whose body is still being read: when its headers were.
    body_since: Option<Instant>,
    /// With none in flight: the last time a byte moved (or the accept, or the last answer).
    idle_since: Instant,
}

impl Clock {
    fn new(timeouts: Timeouts) -> Clock {
        Clock {
            timeouts,
            state: Mutex::new(Phases {
                in_flight: 0,
                head_since: None,
                body_since: None,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn phases(&self) -> std::sync::MutexGuard<'_, Phases> {
        // Nothing here can panic while holding the lock; recover anyway.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next deadline and the phase it belongs to; `None` while a handler answers.
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let p = self.phases();
        let t = &self.timeouts;
        if p.in_flight > 0 {
            p.body_since.map(|at| (at + t.body, "body"))
        } else if let Some(at) = p.head_since {
            Some((at + t.header, "header"))
        } else {
            Some((p.idle_since + t.idle, "idle"))
        }
    }

    /// The phase whose deadline has passed at `now`, if one has.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        self.deadline()
            .filter(|(at, _)| *at <= now)
            .map(|(_, phase)| phase)
    }

    fn read(&self) {
        let mut p = self.phases();
        if p.in_flight == 0 && p.head_since.is_none() {
            p.head_since = Some(Instant::now());
            drop(p);
            self.changed.notify_one();
        }
    }

    fn wrote(&self) {
        let mut p = self.phases();
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
        }
    }

    fn request_started(self: &Arc<Self>, has_body: bool) -> InFlight {
        let mut p = self.phases();
        p.in_flight += 1;
        p.head_since = None;
        p.body_since = has_body.then(Instant::now);
        drop(p);
        self.changed.notify_one();
        InFlight(self.clone())
    }

    fn body_read(&self) {
        self.phases().body_since = None;
    }

    fn request_done(&self) {
        let mut p = self.phases();
        p.in_flight = p.in_flight.saturating_sub(1);
        if p.in_flight == 0 {
            p.idle_since = Instant::now();
            drop(p);
            self.changed.notify_one();
        }
    }
}

/// A request being answered; dropped when the answer is handed over (or abandoned).
#[derive(Debug)]
struct InFlight(Arc<Clock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

/// A request body not yet read to its end; dropped at the end or when the handler lets go.
#[derive(Debug)]
struct Reading(Arc<Clock>);

impl Drop for Reading {
    fn drop(&mut self) {
        self.0.body_read();
    }
}

/// The request body, telling the clock when it has all arrived.
#[derive(Debug)]
struct WatchedBody {
    inner: Incoming,
    reading: Option<Reading>,
}

impl Body for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            this.reading = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling the clock when bytes move.
#[derive(Debug)]
struct Watched {
    inner: TcpStream,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.clock.read();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        if n > 0 {
            this.clock.wrote();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.clock.wrote();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::new(Timeouts {
            header: Duration::from_secs(2),
            body: Duration::from_secs(3),
            idle: Duration::from_secs(5),
        })
    }

    /// The phase of `c`'s deadline, checked to lie `after` the moment `since` was taken.
    #[track_caller]
    fn phase(c: &Clock, since: Instant, after: u64) -> Option<&'static str> {
        let (at, phase) = c.deadline()?;
        let least = since + Duration::from_secs(after);
        assert!(at >= least && at <= Instant::now() + Duration::from_secs(after));
        Some(phase)
    }

    #[test]
    fn each_phase_has_its_own_deadline() {
        let c = Arc::new(clock());
        let t = Instant::now();
        assert_eq!(phase(&c, t - Duration::from_secs(1), 5), Some("idle"));
        let t = Instant::now();
        c.read();
        assert_eq!(phase(&c, t, 2), Some("header"));
        // More bytes of the same head do not move its deadline.
        let (first, _) = c.deadline().expect("a deadline");
        c.read();
        assert_eq!(c.deadline(), Some((first, "header")));
        let t = Instant::now();
        let req = c.request_started(true);
        assert_eq!(phase(&c, t, 3), Some("body"));
        c.body_read();
        assert_eq!(c.deadline(), None);
        assert_eq!(c.expired(Instant::now() + Duration::from_secs(60)), None);
        let t = Instant::now();
        drop(req);
        assert_eq!(phase(&c, t, 5), Some("idle"));
        assert_eq!(
            c.expired(Instant::now() + Duration::from_secs(5)),
            Some("idle")
        );
        assert_eq!(c.expired(t + Duration::from_secs(4)), None);
        // A byte read after the answer starts the next head's clock.
        let t = Instant::now();
        c.read();
        assert_eq!(phase(&c, t, 2), Some("header"));
    }

    #[test]
    fn the_refusal_is_a_whole_http_answer() {
        let text = String::from_utf8(refusal(7)).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let doc: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(doc["error"]["code"], "too_many_connections");
        assert_eq!(doc["error"]["details"]["max_connections"], 7);
    }
}
