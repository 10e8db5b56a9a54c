//! The audit log (`--audit-log PATH`): one JSON line per request — when, who (the principal's
//! name, never a key or token), which route, cube and ids, what was asked (the body, bounded),
//! how it ended, how many rows, how long it took.
//!
//! The gate fills every line the same way for every route (route, path parameters, query string,
//! body), so a new route cannot forget what it was asked; a handler adds only what it learns
//! while answering ([`Note`]: the rows, and for the Cube API the cube its query names). Enough
//! to replay a principal's questions, and so to see differencing (two overlapping questions
//! whose answers subtract to a withheld cell).
//!
//! ```text
//! gate (per request) --Record, try_send--> bounded channel --> writer thread
//!   --serialize, append; flush after 50 ms without a line--> PATH
//!   --over max_bytes--> PATH.1 .. PATH.<keep> (the oldest is deleted)
//! ```
//!
//! The request path only fills a [`Record`] and hands it over without waiting: a full channel
//! (a disk that stalls) drops the line and counts it ([`AuditLog::dropped`], in `/metrics`)
//! rather than slowing a query. Serialising, writing and rotating happen on the writer thread.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::SystemTime;

use axum::body::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::auth::Method;
use crate::registry::lock;

/// Where and how much.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// A file grows to about this many bytes before it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept (`PATH.1` is the newest).
    pub keep: usize,
}

/// What the handler learnt, for the gate's line: filled while the request is answered.
#[derive(Debug, Default)]
pub struct Note {
    /// The cube, where the path does not name it (the Cube API's query names it).
    pub cube: Option<String>,
    pub rows: Option<u64>,
}

/// The slot a handler fills ([`Note`]), present in a request's extensions when the server
/// keeps an audit log.
#[derive(Debug, Clone, Default)]
pub struct NoteSlot(pub Arc<std::sync::Mutex<Note>>);

impl NoteSlot {
    pub fn set_cube(&self, cube: &str) {
        lock(&self.0).cube = Some(cube.to_string());
    }

    pub fn set_rows(&self, rows: usize) {
        lock(&self.0).rows = Some(rows as u64);
    }
}

/// Fills `slot` when there is one (the server keeps an audit log).
pub fn note(slot: Option<&NoteSlot>, f: impl FnOnce(&NoteSlot)) {
    if let Some(s) = slot {
        f(s);
    }
}

/// One request, as handed to the writer.
#[derive(Debug)]
pub struct Record {
    pub time: SystemTime,
    pub principal: Option<String>,
    pub method: Method,
    pub http_method: String,
    /// The route as written in the router (`/v1/cubes/{cube}/query`), or the path when no
    /// route matched.
    pub route: String,
    /// The scope the answer was restricted by ("" for everything).
    pub scope: String,
    /// The path's parameters as the route names them (`cube`, `dimension`, `id`, `name`).
    pub path: Vec<(String, String)>,
    /// The query string.
    pub params: Option<String>,
    /// What the body held (none for a body-less request, or one refused before it was read).
    pub body: Option<BodyCopy>,
    pub note: Note,
    pub status: u16,
    /// The error code, for an error.
    pub error: Option<&'static str>,
    pub elapsed_us: u64,
}

/// A request body as the audit line keeps it: its first [`MAX_BODY_BYTES`].
#[derive(Debug, Clone)]
pub struct BodyCopy {
    /// The first bytes, at most [`MAX_BODY_BYTES`].
    head: Bytes,
    /// The body's length; `None` when it was over the server's body limit and not read whole.
    len: Option<usize>,
}

impl BodyCopy {
    /// Keeps the first [`MAX_BODY_BYTES`] of `bytes`, a body of `len` bytes (`None`: longer
    /// than was read).
    pub fn new(bytes: &Bytes, len: Option<usize>) -> BodyCopy {
        BodyCopy {
            head: bytes.slice(..bytes.len().min(MAX_BODY_BYTES)),
            len,
        }
    }

    fn truncated(&self) -> bool {
        self.len != Some(self.head.len())
    }

    /// The JSON document when the body is one and is kept whole, else its text (lossy UTF-8).
    fn value(&self) -> Value {
        let whole = (!self.truncated())
            .then(|| serde_json::from_slice(&self.head).ok())
            .flatten();
        whole.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&self.head).into_owned()))
    }
}

/// A line as written.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    principal: Option<&'a str>,
    auth: Method,
    method: &'a str,
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cube: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
    path: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Value>,
    /// The body's length (absent when it was over the server's limit and not read whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    body_bytes: Option<usize>,
    /// Only the first [`MAX_BODY_BYTES`] of the body are in `body`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    body_truncated: bool,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    elapsed_us: u64,
}

/// The most of a request body kept in a line.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long the writer waits for more lines before it flushes what it has.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);
/// Records waiting for the writer; more are dropped and counted.
const CHANNEL: usize = 16 * 1024;

impl Record {
    /// The cube: the path's, else the one the handler noted.
    fn cube(&self) -> Option<&str> {
        self.path
            .iter()
            .find(|(k, _)| k == "cube")
            .map(|(_, v)| v.as_str())
            .or(self.note.cube.as_deref())
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<usize> {
        let path = self
            .path
            .iter()
            .filter(|(k, _)| k != "cube")
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let line = Line {
            time: crate::cubejs::dates::format_utc(self.time),
            principal: self.principal.as_deref(),
            auth: self.method,
            method: &self.http_method,
            route: &self.route,
            cube: self.cube(),
            path,
            scope: &self.scope,
            params: self.params.as_deref(),
            body: self.body.as_ref().map(BodyCopy::value),
            body_bytes: self.body.as_ref().and_then(|b| b.len),
            body_truncated: self.body.as_ref().is_some_and(BodyCopy::truncated),
            status: self.status,
            error: self.error,
            rows: self.note.rows,
            elapsed_us: self.elapsed_us,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        out.write_all(&bytes)?;
        Ok(bytes.len())
    }
}

/// The audit log: a channel to its writer thread.
#[derive(Debug)]
pub struct AuditLog {
    sender: Option<SyncSender<Record>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dropped: Arc<AtomicU64>,
}

impl AuditLog {
    /// Opens (appends to) the log and starts its writer.
    pub fn open(config: AuditConfig) -> std::io::Result<AuditLog> {
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        let (sender, receiver) = std::sync::mpsc::sync_channel(CHANNEL);
        let writer = Writer {
            out: BufWriter::new(file),
            size,
            config,
        };
        let writer = std::thread::Builder::new()
            .name("lattice-audit".into())
            .spawn(move || writer.run(receiver))?;
        Ok(AuditLog {
            sender: Some(sender),
            writer: Some(writer),
            dropped: Arc::default(),
        })
    }

    /// Hands a record to the writer without waiting.
    pub fn record(&self, record: Record) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AuditLog {
    /// Writes what is queued, then stops the writer.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

struct Writer {
    out: BufWriter<File>,
    size: u64,
    config: AuditConfig,
}

impl Writer {
    fn run(mut self, records: Receiver<Record>) {
        // Lines are buffered and flushed once no record has come for FLUSH_AFTER (or the buffer
        // fills): one write per burst, not per request.
        let mut unflushed = false;
        loop {
            let next = if unflushed {
                records.recv_timeout(FLUSH_AFTER)
            } else {
                records.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match next {
                Ok(record) => {
                    self.write(&record);
                    unflushed = true;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = self.out.flush() {
                        tracing::error!(error = %e, path = %self.config.path.display(), "cannot write the audit log");
                    }
                    unflushed = false;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.out.flush();
    }

    fn write(&mut self, record: &Record) {
        if self.size >= self.config.max_bytes
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, path = %self.config.path.display(), "cannot rotate the audit log");
        }
        match record.write(&mut self.out) {
            Ok(n) => self.size += n as u64,
            Err(e) => {
                tracing::error!(error = %e, path = %self.config.path.display(), "cannot write the audit log");
            }
        }
    }

    /// PATH -> PATH.1 -> ... -> PATH.<keep>, the oldest deleted; a new PATH.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let path = &self.config.path;
        let numbered = |i: usize| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if self.config.keep == 0 {
            std::fs::remove_file(path)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.config.keep));
            for i in (1..self.config.keep).rev() {
                let from = numbered(i);
                if from.exists() {
                    std::fs::rename(&from, numbered(i + 1))?;
                }
            }
            std::fs::rename(path, numbered(1))?;
        }
        self.out = BufWriter::new(open_append(path)?);
        self.size = 0;
        Ok(())
    }
}

/// Opens for appending; on Unix new files are readable by their owner and group only.
fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o640);
    }
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Record {
        let body = Bytes::from_static(br#"{"measures": ["txn_amount"]}"#);
        Record {
            time: SystemTime::UNIX_EPOCH,
            principal: Some(format!("p{i}")),
            method: Method::Key,
            http_method: "POST".into(),
            route: "/v1/cubes/{cube}/query".into(),
            scope: "manager.manager = M0001".into(),
            path: vec![("cube".into(), "bank_crm".into())],
            params: None,
            body: Some(BodyCopy::new(&body, Some(body.len()))),
            note: Note {
                cube: None,
                rows: Some(3),
            },
            status: 200,
            error: None,
            elapsed_us: 42,
        }
    }

    fn line(r: &Record) -> Value {
        let mut out = Vec::new();
        r.write(&mut out).expect("write");
        assert!(out.ends_with(b"\n"));
        serde_json::from_slice(&out).expect("json")
    }

    fn lines(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    #[test]
    fn a_line_has_who_what_when_and_how_it_went() {
        assert_eq!(
            line(&record(1)),
            serde_json::json!({
                "time": "1970-01-01T00:00:00.000Z", "principal": "p1", "auth": "key",
                "method": "POST", "route": "/v1/cubes/{cube}/query", "cube": "bank_crm",
                "scope": "manager.manager = M0001",
                "body": {"measures": ["txn_amount"]}, "body_bytes": 28,
                "status": 200, "rows": 3, "elapsed_us": 42
            })
        );
        // A body that is not JSON is kept as text.
        let mut r = record(2);
        let text = Bytes::from_static(b"not json");
        r.body = Some(BodyCopy::new(&text, Some(text.len())));
        assert_eq!(line(&r)["body"], "not json");
    }

    #[test]
    fn ids_come_from_the_path_and_the_cube_from_the_path_or_the_handler() {
        let mut r = record(3);
        r.route = "/v1/cubes/{cube}/entities/{dimension}/{id}".into();
        r.path.push(("dimension".into(), "customer".into()));
        r.path.push(("id".into(), "C000042".into()));
        r.body = None;
        let l = line(&r);
        assert_eq!(l["cube"], "bank_crm");
        assert_eq!(
            l["path"],
            serde_json::json!({"dimension": "customer", "id": "C000042"})
        );
        assert!(
            l.get("body").is_none() && l.get("body_bytes").is_none(),
            "{l}"
        );
        // The Cube API's path names no cube; its handler notes the one its query names.
        let mut r = record(4);
        r.path.clear();
        r.note.cube = Some("bank_crm".into());
        let l = line(&r);
        assert_eq!(l["cube"], "bank_crm");
        assert!(l.get("path").is_none(), "{l}");
    }

    #[test]
    fn a_long_body_is_kept_in_part_and_says_so() {
        let long = Bytes::from(format!(
            r#"{{"measures": ["{}"]}}"#,
            "m".repeat(MAX_BODY_BYTES)
        ));
        let mut r = record(5);
        r.body = Some(BodyCopy::new(&long, Some(long.len())));
        let l = line(&r);
        let kept = l["body"].as_str().expect("the head as text");
        assert_eq!(kept.len(), MAX_BODY_BYTES);
        assert!(long.starts_with(kept.as_bytes()));
        assert_eq!(l["body_bytes"], long.len());
        assert_eq!(l["body_truncated"], true);
        // Over the server's limit: the length is not known.
        r.body = Some(BodyCopy::new(&long.slice(..100), None));
        let l = line(&r);
        assert_eq!(
            (l["body_truncated"].as_bool(), l.get("body_bytes")),
            (Some(true), None)
        );
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let line_len = {
            let mut out = Vec::new();
            record(0).write(&mut out).expect("write")
        } as u64;
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: 3 * line_len,
            keep: 2,
        })
        .expect("open");
        for i in 0..10 {
            log.record(record(i));
        }
        drop(log);
        let current = lines(&path);
        let one = lines(&dir.path().join("audit.log.1"));
        let two = lines(&dir.path().join("audit.log.2"));
        assert!(!dir.path().join("audit.log.3").exists());
        // 10 lines, 3 a file: p9 now; p6..p8 in .1; p3..p5 in .2; p0..p2 deleted.
        let names = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|l| l["principal"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(names(&current), ["p9"]);
        assert_eq!(names(&one), ["p6", "p7", "p8"]);
        assert_eq!(names(&two), ["p3", "p4", "p5"]);
        // Appends to what is there after a restart.
        let log = AuditLog::open(AuditConfig {
            path: path.clone(),
            max_bytes: 3 * line_len,
            keep: 2,
        })
        .expect("reopen");
        log.record(record(10));
        drop(log);
        assert_eq!(names(&lines(&path)), ["p9", "p10"]);
    }
}
