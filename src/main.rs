//! `lattice`: the command-line program. Each subcommand is a thin shell over the crates:
//! `gen` (engine::source::synth), `validate` (cube_defs + engine::source::load) and `serve`
//! (server). Logs go to stderr through `tracing`; `RUST_LOG` picks what is shown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use lattice_engine::EngineError;
use lattice_engine::source::load;
use lattice_engine::source::synth::{self, DataFormat, GenOptions};

#[derive(Parser, Debug)]
#[command(
    name = "lattice",
    version,
    about = "Columnar in-memory OLAP cube engine"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Parquet,
    Csv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PartitionBy {
    Month,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write the synthetic bank data set (the default data set of docs/architecture.md).
    Gen {
        /// 1 = about 100k customers and 2M transactions over 24 months; linear in scale.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Parquet)]
        format: Format,
        /// Write each monthly table (transactions, balances, branch_costs) as a folder of one
        /// file per month, transactions/2025-03.parquet; the same rows.
        #[arg(long, value_enum)]
        partition_by: Option<PartitionBy>,
    },
    /// Check a cube definition, and its data when --data is given; print every error.
    Validate {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Build a cube from its definition and data, and report what was built.
    Build {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Print every cuboid chosen, its cells and bytes, and why it was chosen.
        #[arg(long)]
        explain: bool,
        /// Write the built cube as a new snapshot version, SNAPDIR/<cube name>/<version>/,
        /// keeping the newest --keep-snapshots (see docs/snapshots.md).
        #[arg(long, value_name = "SNAPDIR")]
        snapshots: Option<PathBuf>,
        /// Snapshot versions kept per cube.
        #[arg(long, default_value_t = lattice_engine::store::snapshot::versions::KEEP)]
        keep_snapshots: usize,
        #[command(flatten)]
        budget: BudgetArgs,
    },
    /// Answer one query (JSON, as over HTTP) and print the JSON answer.
    Query {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The query document: a file, or `-` for standard input.
        #[arg(long)]
        json: PathBuf,
        /// A drill-through document instead of a query.
        #[arg(long)]
        drill: bool,
    },
    /// Answer one SQL statement over the cube (its table is named after the cube: levels as
    /// `<dimension>_<level>` columns, measures through `MEASURE(m)`) and print the rows.
    Sql {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The statement, e.g. "SELECT region_province, MEASURE(txn_amount) FROM bank_crm
        /// GROUP BY 1".
        statement: String,
        /// `table` (aligned text), `csv` or `json` (one object per row, decimals as strings).
        #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
        format: SqlFormat,
    },
    /// Run an analysis (JSON, as over HTTP) and print the JSON answer.
    Analyze {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
        /// `abnormal`, `migration`, `migration-drill`, `pareto` or `performance`.
        #[arg(long)]
        kind: AnalysisKind,
        /// The request document: a file, or `-` for standard input.
        #[arg(long)]
        json: PathBuf,
    },
    /// Print the single entity view of one member (a customer) as JSON, with the definition's
    /// saved searches.
    Entity {
        /// The definition (YAML).
        file: PathBuf,
        /// Folder that relative source paths resolve against (default: the definition's folder).
        #[arg(long)]
        data: Option<PathBuf>,
        /// A dimension with a level on its key column.
        #[arg(long, default_value = "customer")]
        dimension: String,
        /// The member of the key level (a customer id).
        id: String,
    },
    /// Serve cubes over HTTP. With no arguments: generate the default data set into a cache
    /// folder if it is not there, build the default cube and serve it.
    // Boxed: its flags outweigh every other command's.
    Serve(Box<ServeArgs>),
    /// Helpers for the auth file of `serve --auth`.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Subcommand, Debug)]
enum AuthCommand {
    /// Print the SHA-256 of an API key, as the auth file's `sha256:` wants it. The key is read
    /// from standard input (one line), so that it stays out of the shell's history.
    HashKey,
    /// Check an auth file and print its principals (no secrets).
    Check {
        /// The auth file (YAML).
        file: PathBuf,
    },
}

/// How much memory a build may take.
#[derive(clap::Args, Debug, Clone, Copy)]
struct BudgetArgs {
    /// Most memory a build may hold at its peak, in MiB, by its estimate: a build over it is
    /// refused before it allocates, with the estimate (default: half the machine's memory;
    /// 0: no limit).
    #[arg(long)]
    memory_budget_mb: Option<u64>,
}

impl BudgetArgs {
    fn bytes(self) -> Option<u64> {
        match self.memory_budget_mb {
            Some(0) => None,
            Some(mb) => Some(mb.saturating_mul(1 << 20)),
            None => lattice_engine::build::budget::machine_budget(),
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SqlFormat {
    Table,
    Csv,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum AnalysisKind {
    Abnormal,
    Migration,
    MigrationDrill,
    Pareto,
    Performance,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// A folder of definitions (every `*.yaml` in it is served; PUTs of new cubes land there),
    /// or one definition file (default: cube_defs/bank_crm.yaml, else the shipped bank_crm
    /// cube copied into the cache folder).
    #[arg(long)]
    defs: Option<PathBuf>,
    /// The data folder (default: a generated scale-1 data set in the cache folder).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Also speak the Postgres wire protocol here (e.g. 127.0.0.1:5433): the cubes as SQL
    /// tables for psql, drivers and BI tools (docs/sql.md). Off unless given.
    #[arg(long, value_name = "ADDR")]
    pg_addr: Option<String>,
    /// Also serve Arrow Flight SQL here (e.g. 127.0.0.1:50051): the same tables and
    /// semantics for ADBC and JDBC Flight SQL drivers, batches streamed. Off unless given.
    #[arg(long, value_name = "ADDR")]
    flight_addr: Option<String>,
    /// An origin browsers may call from (repeat for several; `*` for any). None by default.
    #[arg(long = "cors-origin")]
    cors_origins: Vec<String>,
    /// Serve the explorer (at `/`) from this folder instead of the files built into the
    /// binary: for working on `web/` (`npm run build` there, then reload the page).
    #[arg(long, value_name = "DIR")]
    web_dir: Option<PathBuf>,
    /// Time limit of a query or drill-through, in milliseconds (504 query_timeout beyond).
    #[arg(long, default_value_t = 30_000)]
    query_timeout_ms: u64,
    /// Most rows an answer may carry (400 too_many_rows beyond).
    #[arg(long, default_value_t = 100_000)]
    max_rows: usize,
    /// Largest request body in bytes (413 beyond).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Queries running at once (default: twice the cores, at least 4).
    #[arg(long)]
    max_concurrent_queries: Option<usize>,
    /// Queries waiting for a turn (429 too_many_queries beyond).
    #[arg(long, default_value_t = 1024)]
    max_queued_queries: usize,
    /// Definition builds running at once (429 too_many_builds beyond).
    #[arg(long, default_value_t = 1)]
    max_builds: usize,
    /// Time a request's headers may take from their first byte, in milliseconds (the
    /// connection is closed beyond it).
    #[arg(long, default_value_t = 10_000)]
    header_timeout_ms: u64,
    /// Time a request's body may take to arrive in full, in milliseconds (closed beyond it).
    #[arg(long, default_value_t = 30_000)]
    body_timeout_ms: u64,
    /// Time a keep-alive connection may sit idle between requests, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    idle_timeout_ms: u64,
    /// Connections open at once (beyond it: 503 too_many_connections, closed at once); keep it
    /// under the open-file limit (ulimit -n).
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Distinct questions a principal whose answers are restricted (a scope, or a role that
    /// withholds small cells) may ask in any minute; asking one again is free (429
    /// too_many_questions with Retry-After beyond it; slows differencing). 0: no limit.
    #[arg(long, default_value_t = 600)]
    max_questions_per_minute: usize,
    /// Answers kept in the query cache (0: no cache).
    #[arg(long, default_value_t = 4096)]
    cache_entries: usize,
    /// How often definition files are checked for edits, in milliseconds (0: never).
    #[arg(long, default_value_t = 1000)]
    watch_ms: u64,
    /// The token the Cube REST API (/cubejs-api/v1) requires (default: none required).
    /// Not allowed with --auth, whose principals the Cube API takes too.
    #[arg(long, conflicts_with = "auth")]
    cubejs_token: Option<String>,
    /// The auth file: API keys, JWT verification, row-level scopes and per-principal limits
    /// (README, "Authentication"). Without it the server is unauthenticated and listens on
    /// loopback only.
    #[arg(long)]
    auth: Option<PathBuf>,
    /// Write an audit log here: one JSON line per request (who, what, when, how long, rows).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Rotate the audit log when it passes this many megabytes.
    #[arg(long, default_value_t = 100)]
    audit_max_mb: u64,
    /// Rotated audit logs kept (PATH.1 .. PATH.N).
    #[arg(long, default_value_t = 10)]
    audit_keep: usize,
    /// Where cubes are kept as snapshots, DIR/<cube>/<version>/: at start each cube loads the
    /// newest one written from the same definition over the same source files instead of
    /// building; a build writes one (default: snapshots/ in the cache folder).
    #[arg(long, value_name = "DIR")]
    snapshots: Option<PathBuf>,
    /// Neither load nor write snapshots: build every cube from its sources.
    #[arg(long, conflicts_with_all = ["snapshots", "keep_snapshots"])]
    no_snapshots: bool,
    /// Snapshot versions kept per cube (the one being served is never removed).
    #[arg(long, default_value_t = lattice_engine::store::snapshot::versions::KEEP)]
    keep_snapshots: usize,
    #[command(flatten)]
    budget: BudgetArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Gen {
            scale,
            seed,
            out,
            format,
            partition_by,
        } => {
            let format = match format {
                Format::Parquet => DataFormat::Parquet,
                Format::Csv => DataFormat::Csv,
            };
            let layout = match partition_by {
                None => synth::Layout::Files,
                Some(PartitionBy::Month) => synth::Layout::MonthlyFolders,
            };
            let started = Instant::now();
            let summary = synth::generate_in(
                &GenOptions {
                    scale,
                    seed,
                    format,
                },
                layout,
                &out,
            )?;
            for t in &summary.tables {
                println!("{:>12} {:>10} rows  {}", t.name, t.rows, t.path.display());
            }
            println!("generated in {:.2} s", started.elapsed().as_secs_f64());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file, data } => validate(&file, data.as_deref()),
        Command::Build {
            file,
            data,
            explain,
            snapshots,
            keep_snapshots,
            budget,
        } => build(
            &file,
            data.as_deref(),
            explain,
            snapshots.as_deref().map(|dir| (dir, keep_snapshots.max(1))),
            budget,
        ),
        Command::Serve(args) => serve(*args),
        Command::Auth(AuthCommand::HashKey) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the key from standard input")?;
            let key = line.trim_end_matches(['\r', '\n']);
            if key.is_empty() {
                anyhow::bail!(
                    "no key on standard input; try: echo -n \"$KEY\" | lattice auth hash-key"
                );
            }
            println!("{}", lattice_server::auth::hash_key(key));
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth(AuthCommand::Check { file }) => {
            let auth = lattice_server::auth::Auth::from_file(&file)?;
            for (name, access) in auth.key_access() {
                let rules: Vec<String> = access.scope.iter().map(ToString::to_string).collect();
                let scope = rules.join(" & ");
                println!(
                    "key {name}: roles [{}], scope: {}",
                    access.roles.join(", "),
                    if scope.is_empty() {
                        "everything"
                    } else {
                        &scope
                    }
                );
            }
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Query {
            file,
            data,
            json,
            drill,
        } => query(&file, data.as_deref(), &json, drill),
        Command::Sql {
            file,
            data,
            statement,
            format,
        } => sql(&file, data.as_deref(), &statement, format),
        Command::Analyze {
            file,
            data,
            kind,
            json,
        } => analyze(&file, data.as_deref(), kind, &json),
        Command::Entity {
            file,
            data,
            dimension,
            id,
        } => entity(&file, data.as_deref(), &dimension, &id),
    }
}

/// Builds the cube quietly and prints one member's entity view (or its error as the server's
/// JSON error document, with exit code 2).
fn entity(file: &Path, data: Option<&Path>, dimension: &str, id: &str) -> anyhow::Result<ExitCode> {
    let (rt, session) = match build_quietly(file, data)? {
        Ok(built) => built,
        Err(code) => return Ok(code),
    };
    let searches = lattice_engine::search::definition_searches(&session.cube().model);
    let view = rt
        .block_on(session.entity_view(dimension, id, &searches))
        .map(|v| serde_json::to_string_pretty(&v).unwrap_or_default());
    print_answer(view.map_err(|e| (e.code(), e.to_string())))
}

/// Builds the cube quietly, runs one analysis and prints the answer (or its error as the
/// server's JSON error document, with exit code 2).
fn analyze(
    file: &Path,
    data: Option<&Path>,
    kind: AnalysisKind,
    json: &Path,
) -> anyhow::Result<ExitCode> {
    use lattice_engine::analytics as an;
    let text = read_request(json, "request")?;
    let (rt, session) = match build_quietly(file, data)? {
        Ok(built) => built,
        Err(code) => return Ok(code),
    };
    let pretty = |v: serde_json::Result<String>| v.unwrap_or_default();
    let answer = match kind {
        AnalysisKind::Abnormal => an::AbnormalQuery::from_json(&text).and_then(|q| {
            rt.block_on(session.abnormal(&q))
                .map(|a| pretty(serde_json::to_string_pretty(&a)))
        }),
        AnalysisKind::Migration => an::MigrationQuery::from_json(&text).and_then(|q| {
            rt.block_on(session.migration(&q))
                .map(|a| pretty(serde_json::to_string_pretty(&a)))
        }),
        AnalysisKind::MigrationDrill => an::MigrationDrill::from_json(&text).and_then(|q| {
            rt.block_on(session.migration_drill(&q))
                .map(|a| pretty(serde_json::to_string_pretty(&a)))
        }),
        AnalysisKind::Pareto => an::ParetoQuery::from_json(&text).and_then(|q| {
            rt.block_on(session.pareto(&q))
                .map(|a| pretty(serde_json::to_string_pretty(&a)))
        }),
        AnalysisKind::Performance => an::PerformanceQuery::from_json(&text).and_then(|q| {
            rt.block_on(session.performance(&q))
                .map(|a| pretty(serde_json::to_string_pretty(&a)))
        }),
    };
    print_answer(answer.map_err(|e| (e.code(), e.to_string())))
}

/// Builds the cube quietly, answers one query and prints the answer (or the query's error as
/// the same JSON error document the server sends, with exit code 2).
fn query(file: &Path, data: Option<&Path>, json: &Path, drill: bool) -> anyhow::Result<ExitCode> {
    let text = read_request(json, "query")?;
    let (rt, session) = match build_quietly(file, data)? {
        Ok(built) => built,
        Err(code) => return Ok(code),
    };
    let answer = if drill {
        lattice_engine::query::DrillQuery::from_json(&text).and_then(|q| {
            rt.block_on(session.drill_through(&q))
                .map(|a| serde_json::to_string_pretty(&a).unwrap_or_default())
        })
    } else {
        lattice_engine::query::Query::from_json(&text).and_then(|q| {
            rt.block_on(session.query(&q))
                .map(|a| serde_json::to_string_pretty(&a).unwrap_or_default())
        })
    };
    print_answer(answer.map_err(|e| (e.code(), e.to_string())))
}

/// Builds the cube quietly, answers one SQL statement and prints its rows (or the error as
/// the server's JSON error document, with exit code 2).
fn sql(
    file: &Path,
    data: Option<&Path>,
    statement: &str,
    format: SqlFormat,
) -> anyhow::Result<ExitCode> {
    use lattice_engine::sql;
    let (rt, session) = match build_quietly(file, data)? {
        Ok(built) => built,
        Err(code) => return Ok(code),
    };
    let name = session.cube().model.name.clone();
    let ctx = sql::context(std::sync::Arc::new(sql::FixedCubes(vec![(name, session)])));
    let (schema, batches) = match rt.block_on(sql::run(&ctx, statement)) {
        Ok(r) => r,
        Err(e) => return print_answer(Err(("sql", sql::message(&e)))),
    };
    let text = match format {
        SqlFormat::Table => sql::output::table(&batches)?,
        SqlFormat::Csv => sql::output::csv(&schema, &batches)?,
        SqlFormat::Json => serde_json::to_string_pretty(&sql::output::json(&batches)?)?,
    };
    print!("{text}");
    if format == SqlFormat::Table {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// The request document of `lattice query` or `lattice analyze`: a file, or `-` for standard
/// input.
fn read_request(json: &Path, what: &str) -> anyhow::Result<String> {
    if json == Path::new("-") {
        return Ok(std::io::read_to_string(std::io::stdin())?);
    }
    std::fs::read_to_string(json)
        .map_err(|e| anyhow::anyhow!("cannot read the {what} {}: {e}", json.display()))
}

/// Loads and builds the cube of `file` without progress output; a definition's errors are
/// reported and become the exit code.
fn build_quietly(
    file: &Path,
    data: Option<&Path>,
) -> anyhow::Result<Result<(tokio::runtime::Runtime, lattice_engine::query::Session), ExitCode>> {
    let model = match read_definition(file, data) {
        Ok(m) => m,
        Err(diags) => return Ok(Err(report(&diags))),
    };
    let rt = runtime()?;
    let sources = match rt.block_on(load::load(&model)) {
        Ok(s) => s,
        Err(EngineError::Definition(diags)) => return Ok(Err(report(&diags))),
        Err(e) => return Err(e.into()),
    };
    let data = match rt.block_on(lattice_engine::open(
        &model,
        &sources,
        &lattice_engine::build::BuildOptions::default(),
    )) {
        Ok(data) => std::sync::Arc::new(data),
        // What only the data shows (a search naming a member it lacks), at its line.
        Err(EngineError::Definition(diags)) => return Ok(Err(report(&diags))),
        Err(e) => return Err(e.into()),
    };
    let everything = lattice_engine::access::Access::everything();
    Ok(Ok((rt, data.session(everything))))
}

/// Prints an answer (already JSON), or an error as the server's JSON error document with exit
/// code 2.
fn print_answer(answer: Result<String, (&str, String)>) -> anyhow::Result<ExitCode> {
    match answer {
        Ok(a) => {
            println!("{a}");
            Ok(ExitCode::SUCCESS)
        }
        Err((code, message)) => {
            let doc = serde_json::json!({"error": {"code": code, "message": message}});
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::from(2))
        }
    }
}

/// Parses a definition from a file; relative source paths resolve against `data` if given.
fn read_definition(
    file: &Path,
    data: Option<&Path>,
) -> Result<lattice_defs::Model, lattice_defs::Diagnostics> {
    lattice_defs::load_file_in(file, data)
}

fn validate(file: &Path, data: Option<&Path>) -> anyhow::Result<ExitCode> {
    let model = match read_definition(file, data) {
        Ok(m) => m,
        Err(diags) => return Ok(report(&diags)),
    };
    if data.is_some() {
        match runtime()?.block_on(load::load(&model)) {
            Ok(_) => {}
            Err(EngineError::Definition(diags)) => return Ok(report(&diags)),
            Err(e) => return Err(e.into()),
        }
    }
    println!(
        "{}: ok — cube '{}': {} dimensions, {} levels, {} measures{}",
        file.display(),
        model.name,
        model.dimensions.len(),
        model.level_names().len(),
        model.measures.len(),
        if data.is_some() {
            ", data checked"
        } else {
            " (no --data: data not checked)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A cube opened for reading, and what its build (or refresh) did.
type Opened = (
    lattice_engine::query::Dataset,
    lattice_engine::build::BuildReport,
);

/// The newest snapshot of `model`'s definition (`text`) under `root`, refreshed with the files
/// added to its sources since it was written (only those are read). `None`, after saying why,
/// when there is none, nothing was added, or the change needs a full build.
fn refresh_newest(
    rt: &tokio::runtime::Runtime,
    model: &lattice_defs::Model,
    text: &str,
    root: &Path,
    budget: BudgetArgs,
) -> anyhow::Result<Option<Opened>> {
    let dir = root.join(&model.name);
    let now = load::fingerprint(model);
    // Only a version whose sources grew by added files is read.
    let refreshable = |recorded: &serde_json::Value| load::added_since(model, recorded, &now).err();
    let search = lattice_engine::store::snapshot::versions::find_newest_where(
        &dir,
        model,
        text,
        &refreshable,
    )
    .with_context(|| format!("cannot look for snapshots in {}", dir.display()))?;
    for skipped in search.skipped.iter().filter(|s| s.moved_to.is_some()) {
        println!(
            "snapshot {} is damaged ({}): moved aside",
            skipped.version, skipped.reason
        );
    }
    let Some(found) = search.found else {
        // Why the newest version of the definition could not be refreshed, when it was not
        // only that nothing was added.
        if let Some(newest) = search
            .skipped
            .first()
            .filter(|s| s.moved_to.is_none() && !s.reason.starts_with("no file was added"))
        {
            println!(
                "snapshot {} cannot be refreshed ({}): building in full",
                newest.version, newest.reason
            );
        }
        return Ok(None);
    };
    // What the search accepted it for.
    let added = match load::added_since(model, &found.sources, &now) {
        Ok(added) => added,
        Err(why) => {
            println!(
                "snapshot {} cannot be refreshed ({why}): building in full",
                found.version
            );
            return Ok(None);
        }
    };
    let files: usize = added.values().map(Vec::len).sum();
    println!(
        "refreshing snapshot {} with {files} new file{}",
        found.version,
        if files == 1 { "" } else { "s" }
    );
    let definition = |e: EngineError| match e {
        EngineError::Definition(diags) => {
            report(&diags);
            anyhow::anyhow!("the new files do not match the definition")
        }
        e => e.into(),
    };
    let delta = rt
        .block_on(load::load_delta(model, &added))
        .map_err(definition)?;
    let sources = rt
        .block_on(load::load_registered(model))
        .map_err(definition)?;
    let options = lattice_engine::build::BuildOptions {
        progress: true,
        memory_budget: budget.bytes(),
        ..Default::default()
    };
    let refreshed = rt
        .block_on(lattice_engine::open_refreshed(
            model,
            &found.cube,
            &delta,
            &sources,
            &options,
        ))
        .map_err(definition)?;
    match refreshed {
        Ok(done) => Ok(Some(done)),
        Err(not) => {
            println!(
                "snapshot {} cannot be refreshed ({not}): building in full",
                found.version
            );
            Ok(None)
        }
    }
}

/// Loads a model's sources and builds its cube, with progress on a terminal. `Ok(None)` when
/// the definition does not match its data; those errors are printed.
fn load_and_build(
    rt: &tokio::runtime::Runtime,
    model: &lattice_defs::Model,
    budget: BudgetArgs,
) -> anyhow::Result<Option<Opened>> {
    let sources = match rt.block_on(lattice_engine::build::load_within(model, budget.bytes())) {
        Ok(s) => s,
        Err(EngineError::Definition(diags)) => {
            report(&diags);
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    let options = lattice_engine::build::BuildOptions {
        progress: true,
        memory_budget: budget.bytes(),
        ..Default::default()
    };
    // `open`, not the bare build: the definition's searches are checked against the data too.
    let built = match rt.block_on(lattice_engine::open_with_report(model, &sources, &options)) {
        Ok(built) => built,
        Err(EngineError::Definition(diags)) => {
            report(&diags);
            return Ok(None);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Some(built))
}

fn build(
    file: &Path,
    data: Option<&Path>,
    explain: bool,
    snapshots: Option<(&Path, usize)>,
    budget: BudgetArgs,
) -> anyhow::Result<ExitCode> {
    let model = match read_definition(file, data) {
        Ok(m) => m,
        Err(diags) => return Ok(report(&diags)),
    };
    // What the snapshot records is taken before the build: data changed during it is then
    // seen as changed, never taken for the data the cube was built from.
    let snapshot_of = match snapshots {
        Some(_) => Some((
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
            serde_json::to_value(load::fingerprint(&model))?,
        )),
        None => None,
    };
    let rt = runtime()?;
    let started = Instant::now();
    let refreshed = match (snapshots, &snapshot_of) {
        (Some((root, _)), Some((text, _))) => refresh_newest(&rt, &model, text, root, budget)?,
        _ => None,
    };
    let verb = if refreshed.is_some() {
        "refreshed"
    } else {
        "built"
    };
    let (cube, rep) = match refreshed {
        Some(done) => done,
        None => match load_and_build(&rt, &model, budget)? {
            Some(done) => done,
            None => return Ok(ExitCode::FAILURE),
        },
    };
    let secs = started.elapsed().as_secs_f64();
    if explain {
        println!(
            "{:<14} {:>10} {:>12} {:>12}  {:<60} why",
            "fact", "cells", "bytes", "est. cells", "levels"
        );
        for (plan, (cells, bytes)) in rep.plans.iter().zip(&rep.built) {
            let levels: Vec<String> = plan.levels.iter().map(|l| model.level_name(*l)).collect();
            let levels = if levels.is_empty() {
                "(grand total)".to_string()
            } else {
                levels.join(", ")
            };
            println!(
                "{:<14} {:>10} {:>12} {:>12}  {:<60} {}",
                model.facts[plan.fact].name, cells, bytes, plan.est_cells, levels, plan.reason
            );
        }
    }
    for (f, fact) in model.facts.iter().enumerate() {
        println!(
            "{}: {} fact rows -> {} rows at the cube grain",
            fact.name, rep.fact_rows[f], rep.base_rows[f]
        );
    }
    for a in &rep.allocations {
        let money = |units: i128| {
            lattice_engine::store::CellValue::Decimal {
                value: units,
                scale: a.scale,
            }
            .to_string()
        };
        let from = model
            .fact(&a.name)
            .and_then(|f| model.allocation_of(f))
            .map_or("", |x| model.facts[x.from].name.as_str());
        println!(
            "allocation {}: {} pools totalling {} split over {} cells of {from} ({} split equally: no driver); unallocated: {}",
            a.name,
            a.pools,
            money(a.total),
            a.rows,
            a.equal_split,
            money(a.unallocated_total())
        );
        for u in a.unallocated.iter().take(20) {
            println!(
                "  unallocated: member {} in {}: {} (no cell of that member in that period)",
                u.member.as_deref().unwrap_or("(none)"),
                u.period.as_deref().unwrap_or("(no date)"),
                money(u.amount)
            );
        }
        if a.unallocated.len() > 20 {
            println!("  ... and {} more", a.unallocated.len() - 20);
        }
    }
    let stages: Vec<String> = rep
        .stages
        .iter()
        .map(|(n, d)| format!("{n} {:.2}s", d.as_secs_f64()))
        .collect();
    println!(
        "{verb} cube '{}' in {secs:.2} s ({}): {} cuboids, {} cells, {:.1} MB; base rows kept: {}, {:.1} MB",
        model.name,
        stages.join(", "),
        cube.cuboids.len(),
        cube.cuboids.iter().map(|c| c.len()).sum::<usize>(),
        cube.memory_bytes() as f64 / 1e6,
        (0..model.facts.len())
            .map(|f| cube.base_rows(f))
            .sum::<usize>(),
        cube.base_bytes() as f64 / 1e6
    );
    if let Some(m) = rep.merged {
        println!(
            "cuboids of the refreshed cube: {} merged with the new rows' cells, {} with the time members a changed band touches built again, {} built again",
            m.combined, m.replaced, m.rebuilt
        );
    }
    if let (Some((root, keep)), Some((text, sources))) = (snapshots, snapshot_of) {
        let started = Instant::now();
        let dir = root.join(&model.name);
        let written = lattice_engine::store::snapshot::versions::write_version(
            cube.cube(),
            &text,
            &sources,
            &dir,
            keep,
            None,
        )
        .with_context(|| format!("cannot write a snapshot in {}", dir.display()))?;
        for left in &written.leftovers {
            println!(
                "removed {}, left by an interrupted snapshot write",
                left.display()
            );
        }
        println!(
            "wrote snapshot {}: {} files, {} bytes (manifest.json aside) in {:.2} s",
            written.info.dir.display(),
            written.info.files,
            written.info.file_bytes,
            started.elapsed().as_secs_f64()
        );
        for old in &written.removed {
            println!("removed the older snapshot {}", old.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(diags: &lattice_defs::Diagnostics) -> ExitCode {
    for d in diags.iter() {
        eprintln!("{d}");
    }
    eprintln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
    ExitCode::FAILURE
}

/// Without `--auth`, an address that is not loopback is refused: an unauthenticated server
/// must not be reachable from other machines.
fn refuse_open_listen(flag: &str, addr: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    let resolved: Vec<std::net::SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {flag} {addr}"))?
        .collect();
    if resolved.is_empty() || resolved.iter().any(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "{flag} {addr} is reachable from other machines, and this server has no --auth: give --auth FILE (README, \"Authentication\"; examples/auth.yaml is a start), or listen on 127.0.0.1"
        );
    }
    Ok(())
}

/// A key whose scope fits none of the served cubes is an error (a typo would otherwise refuse
/// the principal every answer); one that fits some is a warning: on the others the engine
/// refuses it (403), as it cannot restrict them.
/// A scope rule naming a member a cube does not have is a warning too (the key sees none of
/// those rows: the demo manager of the scale-1 data set, served over other data).
fn check_scopes(
    auth: &lattice_server::auth::Auth,
    cubes: &[lattice_server::Served],
) -> anyhow::Result<()> {
    auth.warn_missing_members(cubes.iter().map(|s| s.built.data.cube()));
    let mut problems = Vec::new();
    for (name, access) in auth.key_access() {
        let misfits: Vec<String> = cubes
            .iter()
            .filter_map(|served| {
                let model = &served.built.data.model;
                access
                    .check(model)
                    .err()
                    .map(|e| format!("cube '{}': {e}", model.name))
            })
            .collect();
        if misfits.is_empty() {
            continue;
        }
        if misfits.len() == cubes.len() {
            problems.push(format!("key '{name}': {}", misfits.join("; ")));
        } else {
            tracing::warn!(key = %name, cubes = %misfits.join("; "), "the key's scope does not fit these cubes; it is refused on them");
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "the auth file's scopes fit none of the served cubes:\n  {}",
            problems.join("\n  ")
        );
    }
    Ok(())
}

/// Where `serve` keeps the generated default data set and its snapshots: `$LATTICE_CACHE`,
/// else `~/.cache/lattice`.
fn cache_dir() -> PathBuf {
    std::env::var_os("LATTICE_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/lattice")))
        .unwrap_or_else(|| PathBuf::from(".lattice-cache"))
}

/// The data folder `serve` uses without `--data`: the default data set, generated into the
/// cache folder the first time.
fn default_data() -> anyhow::Result<PathBuf> {
    let dir = cache_dir().join("data-scale1-seed42");
    if !dir.join("transactions.parquet").is_file() {
        eprintln!(
            "generating the default data set (scale 1: 100k customers, 2M transactions) into {} ...",
            dir.display()
        );
        let started = Instant::now();
        synth::generate(
            &GenOptions {
                scale: 1.0,
                seed: 42,
                format: DataFormat::Parquet,
            },
            &dir,
        )?;
        eprintln!("data set ready in {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(dir)
}

/// The definition `serve` uses without `--defs`: the shipped file when run from a checkout,
/// else a copy of the shipped definition in the cache folder (so that hot reload has a file to
/// write).
fn default_definition() -> anyhow::Result<PathBuf> {
    let shipped = PathBuf::from("cube_defs/bank_crm.yaml");
    if shipped.is_file() {
        return Ok(shipped);
    }
    let copy = cache_dir().join("defs/bank_crm.yaml");
    if !copy.is_file() {
        let dir = cache_dir().join("defs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&copy, lattice_defs::BANK_CRM_YAML)
            .with_context(|| format!("cannot write {}", copy.display()))?;
    }
    Ok(copy)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    // Before anything slow: a server without auth answers everyone, so it listens on this
    // machine only.
    let auth = match &args.auth {
        Some(file) => Some(std::sync::Arc::new(lattice_server::auth::Auth::from_file(
            file,
        )?)),
        None => {
            refuse_open_listen("--addr", &args.addr)?;
            if let Some(pg) = &args.pg_addr {
                refuse_open_listen("--pg-addr", pg)?;
            }
            if let Some(flight) = &args.flight_addr {
                refuse_open_listen("--flight-addr", flight)?;
            }
            None
        }
    };
    let data = match &args.data {
        Some(d) => d.clone(),
        None => default_data()?,
    };
    let (files, definitions_dir) = definition_files(args.defs.clone())?;
    let snapshots = (!args.no_snapshots).then(|| lattice_server::Snapshots {
        dir: args
            .snapshots
            .clone()
            .unwrap_or_else(|| cache_dir().join("snapshots")),
        keep: args.keep_snapshots.max(1),
    });
    let rt = runtime()?;
    let cubes = match build_all(&rt, files, &data, args.budget.bytes(), snapshots.as_ref())? {
        Ok(cubes) => cubes,
        Err(code) => return Ok(code),
    };
    let first = cubes
        .first()
        .map_or_else(String::new, |c| c.built.data.model.name.clone());
    if let Some(auth) = &auth {
        check_scopes(auth, &cubes)?;
    }
    let config = server_config(&args, definitions_dir, data, auth, snapshots);
    let server = lattice_server::Server::new(config, cubes)?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(&args.addr))
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    tracing::info!(%local, "serving");
    if let Some(pg) = &args.pg_addr {
        let pg_listener = rt
            .block_on(tokio::net::TcpListener::bind(pg))
            .with_context(|| format!("cannot listen on --pg-addr {pg}"))?;
        let pg_local = pg_listener.local_addr()?;
        tracing::info!(%pg_local, "serving the Postgres wire protocol");
        eprintln!(
            "Postgres wire protocol on {pg_local}: psql \"host={} port={} dbname=lattice\"",
            pg_local.ip(),
            pg_local.port()
        );
        rt.spawn(server.serve_pg(pg_listener));
    }
    if let Some(flight) = &args.flight_addr {
        let flight_listener = rt
            .block_on(tokio::net::TcpListener::bind(flight))
            .with_context(|| format!("cannot listen on --flight-addr {flight}"))?;
        let flight_local = flight_listener.local_addr()?;
        tracing::info!(%flight_local, "serving Arrow Flight SQL");
        eprintln!("Arrow Flight SQL on grpc://{flight_local}");
        rt.spawn(server.serve_flight(flight_listener));
    }
    greet(local, &first, args.auth.as_deref());
    rt.block_on(server.serve(listener, lattice_server::shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

/// The definitions to serve: the shipped one, one file, or every `*.yaml` of a folder (then
/// also the folder, where new definitions are picked up).
fn definition_files(defs: Option<PathBuf>) -> anyhow::Result<(Vec<PathBuf>, Option<PathBuf>)> {
    Ok(match defs {
        None => (vec![default_definition()?], None),
        Some(p) if p.is_dir() => {
            let mut v: Vec<_> = std::fs::read_dir(&p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            v.sort();
            if v.is_empty() {
                anyhow::bail!("no definitions (*.yaml) in {}", p.display());
            }
            (v, Some(p))
        }
        Some(p) => (vec![p], None),
    })
}

/// Builds every definition over `data` (or loads its newest matching snapshot), saying what
/// each took; an invalid one is reported (exit code 2) and nothing is served.
fn build_all(
    rt: &tokio::runtime::Runtime,
    files: Vec<PathBuf>,
    data: &Path,
    memory_budget: Option<u64>,
    snapshots: Option<&lattice_server::Snapshots>,
) -> anyhow::Result<Result<Vec<lattice_server::Served>, ExitCode>> {
    let mut cubes = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        eprintln!(
            "building {} over the data in {} ...",
            file.display(),
            data.display()
        );
        let built = rt.block_on(lattice_server::build_or_load_definition(
            text,
            Some(&file),
            Some(data),
            &lattice_engine::build::BuildOptions {
                progress: true,
                memory_budget,
                ..Default::default()
            },
            snapshots,
        ));
        let built = match built {
            Ok(b) => b,
            Err(lattice_server::BuildError::Invalid(diags)) => return Ok(Err(report(&diags))),
            Err(e) => return Err(e.into()),
        };
        let name = &built.data.model.name;
        let how = match (&built.origin.snapshot, built.origin.how) {
            (Some(s), lattice_server::How::Loaded) => {
                format!("loaded cube '{name}' from {}", s.dir)
            }
            (_, lattice_server::How::Refreshed) => {
                let merged = built.merged.map_or(String::new(), |m| {
                    format!(
                        "; cuboids: {} merged, {} with time members built again, {} built again",
                        m.combined, m.replaced, m.rebuilt
                    )
                });
                format!(
                    "refreshed cube '{name}' with the new files ({} fact rows read{merged})",
                    built.fact_rows
                )
            }
            _ => format!("built cube '{name}'"),
        };
        eprintln!(
            "{how} in {:.1} s: {} cuboids, {:.1} MB",
            built.seconds,
            built.data.cuboids.len(),
            built.data.memory_bytes() as f64 / 1e6
        );
        cubes.push(lattice_server::Served {
            built,
            path: Some(file),
        });
    }
    Ok(Ok(cubes))
}

/// The server's configuration from the command line.
fn server_config(
    args: &ServeArgs,
    definitions_dir: Option<PathBuf>,
    data: PathBuf,
    auth: Option<std::sync::Arc<lattice_server::auth::Auth>>,
    snapshots: Option<lattice_server::Snapshots>,
) -> lattice_server::Config {
    let defaults = lattice_server::Limits::default();
    let ms = std::time::Duration::from_millis;
    lattice_server::Config {
        definitions_dir,
        data_dir: Some(data),
        limits: lattice_server::Limits {
            max_body_bytes: args.max_body_bytes,
            query_timeout: ms(args.query_timeout_ms),
            max_result_rows: args.max_rows,
            max_concurrent_queries: args
                .max_concurrent_queries
                .unwrap_or(defaults.max_concurrent_queries),
            max_queued_queries: args.max_queued_queries,
            max_concurrent_builds: args.max_builds,
            header_read_timeout: ms(args.header_timeout_ms),
            body_read_timeout: ms(args.body_timeout_ms),
            idle_timeout: ms(args.idle_timeout_ms),
            max_connections: args.max_connections,
            max_questions_per_minute: args.max_questions_per_minute,
        },
        cors_origins: args.cors_origins.clone(),
        web_dir: args.web_dir.clone(),
        cache_entries: args.cache_entries,
        watch_interval: (args.watch_ms > 0).then(|| ms(args.watch_ms)),
        cubejs_token: args.cubejs_token.clone(),
        auth,
        audit: args
            .audit_log
            .clone()
            .map(|path| lattice_server::audit::AuditConfig {
                path,
                max_bytes: args.audit_max_mb.saturating_mul(1 << 20).max(1),
                keep: args.audit_keep,
            }),
        memory_budget: args.budget.bytes(),
        snapshots,
    }
}

/// What a person starting the server reads first: where it listens, how to ask it, and
/// whether anyone may.
fn greet(local: std::net::SocketAddr, first: &str, auth: Option<&Path>) {
    match auth {
        Some(file) => eprintln!(
            "authentication: principals from {} (send Authorization: Bearer <key or JWT>)",
            file.display()
        ),
        None => tracing::warn!(
            %local,
            "UNAUTHENTICATED: no --auth file, so every request is answered as an admin that sees everything; listening on loopback only"
        ),
    }
    eprintln!("Lattice is serving on http://{local}");
    eprintln!("  open the explorer in a browser: http://{local}/");
    eprintln!("  or ask it from a shell: curl -s http://{local}/v1/cubes/{first}");
    eprintln!(
        "  a query: curl -s http://{local}/v1/cubes/{first}/query -H 'content-type: application/json' -d '{{\"measures\": [\"txn_amount\", \"active_customers\"], \"rows\": [\"time.year\"]}}'"
    );
    eprintln!(
        "  the API: http://{local}/openapi.json   metrics: http://{local}/metrics   stop: Ctrl-C"
    );
}
