//! What a server is told at start: where definitions and data live, and how far it lets a
//! request go.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::AuditConfig;
use crate::auth::Auth;
use crate::build::Snapshots;

/// How a [`crate::Server`] runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The folder of definitions (`*.yaml`): a `PUT` of a cube that is not served creates
    /// `<cube>.yaml` here, and new files that appear here are built and served. `None` when the
    /// server was given single files (a `PUT` may then only replace a served cube).
    pub definitions_dir: Option<PathBuf>,
    /// The folder relative source paths resolve against (default: each definition's folder).
    pub data_dir: Option<PathBuf>,
    pub limits: Limits,
    /// Origins allowed to call from a browser (`*` for any); empty sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// Answers kept by the query cache (0 turns it off).
    pub cache_entries: usize,
    /// How often definition files are checked for edits on disk (`None`: never).
    pub watch_interval: Option<Duration>,
    /// The token the Cube REST API (`/cubejs-api/v1`) requires in `Authorization`; `None`
    /// lets every request in. Not used with `auth`, whose principals the Cube API takes too.
    pub cubejs_token: Option<String>,
    /// The principals let in (`--auth FILE`); `None` answers everyone as an anonymous admin
    /// (the CLI then listens on loopback only).
    pub auth: Option<Arc<Auth>>,
    /// Where the audit log goes (`--audit-log`); `None` keeps none.
    pub audit: Option<AuditConfig>,
    /// Most bytes a definition's build may hold at its peak (a reload over it is refused with
    /// the estimate, 422 `build_failed`); `None` for no limit. Default: half the machine's
    /// memory ([`lattice_engine::build::budget::machine_budget`]).
    pub memory_budget: Option<u64>,
    /// Where cubes are kept as snapshots (`--snapshots DIR`): a reload that builds writes one
    /// (the CLI also loads them at start); `None` keeps none.
    pub snapshots: Option<Snapshots>,
    /// Serve the explorer's files from this folder instead of those built in (`--web-dir`).
    pub web_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            definitions_dir: None,
            data_dir: None,
            limits: Limits::default(),
            cors_origins: Vec::new(),
            cache_entries: 4096,
            watch_interval: Some(Duration::from_secs(1)),
            cubejs_token: None,
            auth: None,
            audit: None,
            memory_budget: lattice_engine::build::budget::machine_budget(),
            snapshots: None,
            web_dir: None,
        }
    }
}

/// Bounds on what one request, and all of them together, may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body (413 `body_too_large` above it).
    pub max_body_bytes: usize,
    /// Time a query or drill-through may take, waiting for its turn included (504
    /// `query_timeout`; the query is cancelled).
    pub query_timeout: Duration,
    /// Most rows an answer may carry (400 `too_many_rows`).
    pub max_result_rows: usize,
    /// Queries running at once.
    pub max_concurrent_queries: usize,
    /// Queries waiting for a turn; one more is refused (429 `too_many_queries`).
    pub max_queued_queries: usize,
    /// Definition builds running at once; one more is refused (429 `too_many_builds`).
    pub max_concurrent_builds: usize,
    /// Time a request's headers may take to arrive, from their first byte; the connection is
    /// closed beyond it (a client trickling a header cannot hold it open).
    pub header_read_timeout: Duration,
    /// Time a request's body may take to arrive in full, from the end of its headers; the
    /// connection is closed beyond it.
    pub body_read_timeout: Duration,
    /// Time a connection may sit idle between requests (keep-alive) before it is closed.
    pub idle_timeout: Duration,
    /// Connections open at once; one more is answered 503 `too_many_connections` and closed
    /// at once. Keep it under the process's open-file limit (`ulimit -n`).
    pub max_connections: usize,
    /// Distinct questions (method, path, query string, body) a principal whose answers are
    /// restricted may ask in any minute; asking one again is free. One more is refused (429
    /// `too_many_questions` with `Retry-After`). Slows differencing; 0 turns it off.
    pub max_questions_per_minute: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Limits {
            max_body_bytes: 1 << 20,
            query_timeout: Duration::from_secs(30),
            max_result_rows: 100_000,
            max_concurrent_queries: (2 * cores).max(4),
            max_queued_queries: 1024,
            max_concurrent_builds: 1,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_questions_per_minute: 600,
        }
    }
}
