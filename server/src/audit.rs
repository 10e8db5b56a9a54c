//! The audit log (`--audit-log PATH`): one JSON line per request — when, who (the principal's
//! name, never a key or token), which route and cube, what was asked, how it ended, how many
//! rows, how long it took.
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
    pub cube: Option<String>,
    /// The query document as sent (a body, or a GET's `query` parameter).
    pub query: Option<Bytes>,
    pub rows: Option<u64>,
}

/// The slot a handler fills ([`Note`]), present in a request's extensions when the server
/// keeps an audit log.
#[derive(Debug, Clone, Default)]
pub struct NoteSlot(pub Arc<std::sync::Mutex<Note>>);

impl NoteSlot {
    pub fn set_query(&self, cube: &str, query: Bytes) {
        let mut n = lock(&self.0);
        n.cube = Some(cube.to_string());
        n.query = Some(query);
    }

    pub fn set_body(&self, query: Bytes) {
        lock(&self.0).query = Some(query);
    }

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
    pub params: Option<String>,
    pub note: Note,
    pub status: u16,
    /// The error code, for an error.
    pub error: Option<&'static str>,
    pub elapsed_us: u64,
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
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<Value>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    elapsed_us: u64,
}

/// The most of a query document kept in a line.
const MAX_QUERY_BYTES: usize = 64 * 1024;
/// How long the writer waits for more lines before it flushes what it has.
const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(50);
/// Records waiting for the writer; more are dropped and counted.
const CHANNEL: usize = 16 * 1024;

impl Record {
    fn write(&self, out: &mut impl Write) -> std::io::Result<usize> {
        let query = self.note.query.as_ref().map(|q| {
            if q.len() > MAX_QUERY_BYTES {
                Value::String(format!("({} bytes, not kept)", q.len()))
            } else {
                serde_json::from_slice(q)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(q).into_owned()))
            }
        });
        let line = Line {
            time: crate::cubejs::dates::format_utc(self.time),
            principal: self.principal.as_deref(),
            auth: self.method,
            method: &self.http_method,
            route: &self.route,
            cube: self.note.cube.as_deref(),
            scope: &self.scope,
            params: self.params.as_deref(),
            query,
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
        Record {
            time: SystemTime::UNIX_EPOCH,
            principal: Some(format!("p{i}")),
            method: Method::Key,
            http_method: "POST".into(),
            route: "/v1/cubes/{cube}/query".into(),
            scope: "manager.manager = M0001".into(),
            params: None,
            note: Note {
                cube: Some("bank_crm".into()),
                query: Some(Bytes::from_static(br#"{"measures": ["txn_amount"]}"#)),
                rows: Some(3),
            },
            status: 200,
            error: None,
            elapsed_us: 42,
        }
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
        let mut out = Vec::new();
        record(1).write(&mut out).expect("write");
        let line: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(
            line,
            serde_json::json!({
                "time": "1970-01-01T00:00:00.000Z", "principal": "p1", "auth": "key",
                "method": "POST", "route": "/v1/cubes/{cube}/query", "cube": "bank_crm",
                "scope": "manager.manager = M0001",
                "query": {"measures": ["txn_amount"]}, "status": 200, "rows": 3, "elapsed_us": 42
            })
        );
        assert!(out.ends_with(b"\n"));
        // A body that is not JSON is kept as text.
        let mut r = record(2);
        r.note.query = Some(Bytes::from_static(b"not json"));
        let mut out = Vec::new();
        r.write(&mut out).expect("write");
        let line: Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(line["query"], "not json");
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
