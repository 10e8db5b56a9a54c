//! The Postgres wire protocol (`serve --pg-addr`): the cubes as SQL tables
//! ([`lattice_engine::sql`]) for psql, drivers and BI tools.
//!
//! - **Startup.** With an auth file the client sends a cleartext password: an API key or a JWT,
//!   checked as HTTP checks a bearer token (the user name is only recorded). Without `--auth`
//!   every connection is the anonymous principal (and the CLI listens on loopback only).
//! - **A session per connection.** Each connection gets a DataFusion session over the served
//!   cubes as its principal sees them (tables looked up on the serving snapshot at each
//!   statement), with `pg_catalog` and `information_schema` for introspection.
//! - **Statements.** The simple and extended protocols (prepared statements with `$n`
//!   parameters). Only queries run: DDL, DML, `COPY` and DataFusion's own statements are
//!   refused; `SET`, `BEGIN`/`COMMIT`/`ROLLBACK` are acknowledged (there is nothing to change
//!   or commit); `SHOW` answers what drivers ask.
//! - **Limits.** Every statement runs under the principal's turns, the server's admission and
//!   the query time limit, as an HTTP query does; an answer over the row limit is refused.
//!   Connections beyond `max_connections` are refused with `53300`.
//! - **Errors** are Postgres errors with a SQLSTATE and the engine's message; a connection is
//!   never dropped for a bad statement.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use axum::http::HeaderValue;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{ColumnarValue, Expr, LogicalPlan, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, stream};
use lattice_engine::query::Session;
use lattice_engine::sql::{self, Cubes, SqlError};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, ConnectionManager, METADATA_USER,
    PgWireConnectionState, PgWireServerHandlers, PidSecretKeyGenerator,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::AppState;
use crate::auth::{Denied, Principal};
use crate::error::ApiError;

/// The served cubes as one principal sees them, on their serving snapshots.
#[derive(Debug)]
pub(crate) struct PrincipalCubes {
    pub state: Arc<AppState>,
    pub principal: Principal,
}

impl Cubes for PrincipalCubes {
    fn names(&self) -> Vec<String> {
        self.state.registry.names()
    }

    fn session(&self, cube: &str) -> Option<Session> {
        let data = self.state.registry.cube(cube)?;
        Some(
            data.session(self.principal.access.clone())
                .with_cache(self.state.cache.clone()),
        )
    }
}

/// One connection's principal and SQL session.
struct Conn {
    principal: Principal,
    ctx: SessionContext,
}

fn conn<C: ClientInfo + ?Sized>(c: &C) -> PgWireResult<Arc<Conn>> {
    c.session_extensions().get::<Conn>().ok_or_else(|| {
        pg_error(
            "FATAL",
            "28000",
            "the connection is not authenticated".into(),
        )
    })
}

fn pg_error(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.into(),
        code.into(),
        message,
    )))
}

/// A DataFusion error as a Postgres error: the cube's own refusals as `0A000`/`42000` or the
/// engine's code, syntax as `42601`, unknown tables and columns as `42P01`/`42703`.
fn df_error(e: &DataFusionError) -> PgWireError {
    if let Some(s) = SqlError::find(e) {
        let code = match s {
            SqlError::Unsupported(_) => "0A000",
            SqlError::Query(q) => match q.code() {
                "unknown_level" | "unknown_measure" => "42703",
                "forbidden" => "42501",
                "too_large" | "too_many_rows" => "54000",
                _ => "42000",
            },
            SqlError::Value(_) => "22003",
        };
        return pg_error("ERROR", code, s.to_string());
    }
    let code = match e.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(m) if m.contains("not found") => "42P01",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::ResourcesExhausted(_) => "53200",
        _ => "XX000",
    };
    pg_error("ERROR", code, sql::message(e))
}

/// An HTTP-shaped refusal (time limit, too many queries) as a Postgres error.
fn api_error(e: &ApiError) -> PgWireError {
    let code = match e.code {
        "query_timeout" => "57014",
        "too_many_queries" => "53300",
        "too_many_rows" => "54000",
        "forbidden" => "42501",
        _ => "XX000",
    };
    pg_error("ERROR", code, e.message.clone())
}

/// Authenticates each connection and gives it its session.
struct Startup {
    state: Arc<AppState>,
    params: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
    conns: Arc<ConnectionManager>,
}

impl Startup {
    fn accept<C: ClientInfo + ?Sized>(&self, client: &C, principal: Principal) {
        let cubes = Arc::new(PrincipalCubes {
            state: self.state.clone(),
            principal: principal.clone(),
        });
        let ctx = sql::context(cubes);
        if let Err(e) = setup_pg_catalog(&ctx, sql::CATALOG, EmptyContextProvider) {
            tracing::warn!(error = %e, "pg_catalog could not be set up");
        }
        crate::pg_introspect::extend_catalog(&ctx);
        // `to_regtype(name)`: the oid of a built-in type, NULL for others (psycopg asks for
        // `hstore` at connect; there is none).
        ctx.register_udf(create_udf(
            "to_regtype",
            vec![DataType::Utf8],
            DataType::Int32,
            Volatility::Immutable,
            Arc::new(|args| {
                let oid = |name: Option<&str>| {
                    let name = name?.trim().to_ascii_lowercase();
                    [
                        Type::BOOL,
                        Type::INT2,
                        Type::INT4,
                        Type::INT8,
                        Type::FLOAT4,
                        Type::FLOAT8,
                        Type::NUMERIC,
                        Type::TEXT,
                        Type::VARCHAR,
                        Type::DATE,
                        Type::TIMESTAMP,
                        Type::TIMESTAMPTZ,
                    ]
                    .into_iter()
                    .find(|t| t.name() == name)
                    .map(|t| t.oid() as i32)
                };
                Ok(match &args[0] {
                    ColumnarValue::Scalar(v) => {
                        let name = match v {
                            ScalarValue::Utf8(s)
                            | ScalarValue::LargeUtf8(s)
                            | ScalarValue::Utf8View(s) => s.as_deref(),
                            _ => None,
                        };
                        ColumnarValue::Scalar(ScalarValue::Int32(oid(name)))
                    }
                    ColumnarValue::Array(a) => {
                        let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                        let a = a
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::StringArray>()
                            .expect("cast to Utf8");
                        ColumnarValue::Array(Arc::new(
                            a.iter()
                                .map(oid)
                                .collect::<datafusion::arrow::array::Int32Array>(),
                        ))
                    }
                })
            }),
        ));
        // Drivers parse `version()` as Postgres writes it (SQLAlchemy reads "PostgreSQL X.Y").
        ctx.register_udf(create_udf(
            "version",
            Vec::new(),
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(|_| {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(format!(
                    "PostgreSQL {PG_VERSION} (Lattice {}, Apache DataFusion)",
                    env!("CARGO_PKG_VERSION")
                )))))
            }),
        ));
        client.session_extensions().insert(Conn { principal, ctx });
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.state.config.auth.is_none() {
                    self.accept(client, Principal::anonymous());
                    self.finish(client).await?;
                } else {
                    client.set_state(PgWireConnectionState::AuthenticationInProgress);
                    client
                        .send(PgWireBackendMessage::Authentication(
                            Authentication::CleartextPassword,
                        ))
                        .await?;
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let Some(auth) = &self.state.config.auth else {
                    return Err(pg_error(
                        "FATAL",
                        "28000",
                        "no password was asked for".into(),
                    ));
                };
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                let header = HeaderValue::from_str(&format!("Bearer {}", pwd.password.trim()))
                    .map_err(|_| {
                        pg_error("FATAL", "28P01", "the password is not a valid key".into())
                    })?;
                let principal = auth.authenticate(Some(&header), false).map_err(|d| {
                    let why = match d {
                        Denied::Missing => "no password (an API key or a token) was given",
                        Denied::Malformed => "the password is not a valid key or token",
                        _ => "the password is not a known API key or a valid token",
                    };
                    tracing::info!(%user, "pg authentication failed");
                    pg_error("FATAL", "28P01", format!("user \"{user}\": {why}"))
                })?;
                self.accept(client, principal);
                self.finish(client).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Startup {
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key.clone());
        let (handle, guard) = self.conns.register(pid, key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        finish_authentication(client, &self.params).await
    }
}

/// A parsed statement: its plan, or none for what is answered without DataFusion.
#[derive(Clone, Debug)]
pub struct Prepared {
    stmt: SqlStatement,
    plan: Option<LogicalPlan>,
}

/// Parses and plans statements, and answers the simple protocol.
struct Statements {
    state: Arc<AppState>,
    parser: PostgresCompatibilityParser,
}

/// The Postgres version announced to drivers (what the protocol and catalogs follow).
const PG_VERSION: &str = "16.0";

/// The longest statement taken, in bytes.
const MAX_STATEMENT_BYTES: usize = 1 << 20;

impl Statements {
    fn parse(&self, text: &str) -> PgWireResult<Vec<SqlStatement>> {
        if text.len() > MAX_STATEMENT_BYTES {
            return Err(pg_error(
                "ERROR",
                "54000",
                format!(
                    "the statement is {} bytes, more than the limit of {MAX_STATEMENT_BYTES}",
                    text.len()
                ),
            ));
        }
        let mut statements = self
            .parser
            .parse(text)
            .map_err(|e| pg_error("ERROR", "42601", e.to_string()))?;
        statements
            .iter_mut()
            .for_each(crate::pg_introspect::rewrite_for_planning);
        Ok(statements)
    }

    async fn plan(&self, ctx: &SessionContext, stmt: SqlStatement) -> PgWireResult<Prepared> {
        if let Some(batch) = show(&stmt) {
            batch?;
            return Ok(Prepared { stmt, plan: None });
        }
        if utility(&stmt).is_some() {
            return Ok(Prepared { stmt, plan: None });
        }
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(stmt.clone())))
            .await
            .map_err(|e| df_error(&e))?;
        let plan = backslash_escapes(plan).map_err(|e| df_error(&e))?;
        sql::read_only().verify_plan(&plan).map_err(|_| {
            pg_error(
                "ERROR",
                "25006",
                "only queries are answered: the cubes are read-only".into(),
            )
        })?;
        Ok(Prepared {
            stmt,
            plan: Some(plan),
        })
    }

    /// Runs a plan under the principal's limits; the rows, encoded in `format`.
    async fn run(
        &self,
        c: &Conn,
        plan: LogicalPlan,
        format: &Format,
        options: Arc<FormatOptions>,
    ) -> PgWireResult<Response> {
        let ctx = c.ctx.clone();
        let max_rows = self.state.config.limits.max_result_rows;
        let work = async move {
            let df = ctx.execute_logical_plan(plan).await?;
            let schema = Arc::new(df.schema().as_arrow().clone());
            let batches = df.collect().await?;
            Ok::<_, DataFusionError>((schema, batches))
        };
        let done = crate::query::run_limited(&self.state, &c.principal, async move {
            Ok::<_, ApiError>(work.await)
        })
        .await
        .map_err(|e| api_error(&e))?;
        let (schema, batches) = done.map_err(|e| df_error(&e))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > max_rows {
            return Err(pg_error(
                "ERROR",
                "54000",
                format!(
                    "the answer has {rows} rows, more than the limit of {max_rows}; add a LIMIT or filter"
                ),
            ));
        }
        Ok(Response::Query(encode(&schema, batches, format, options)?))
    }
}

fn encode(
    schema: &Schema,
    batches: Vec<RecordBatch>,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(schema, format, Some(options))?);
    let rows = batches
        .into_iter()
        .flat_map({
            let fields = fields.clone();
            move |b| encode_recordbatch(fields.clone(), b)
        })
        .collect::<Vec<_>>();
    Ok(QueryResponse::new(fields, stream::iter(rows)))
}

/// The settings `SHOW` answers, as Postgres names and spells them (what drivers ask at connect).
fn setting(name: &str) -> Option<String> {
    Some(
        match name.to_ascii_lowercase().as_str() {
            "server_version" => PG_VERSION,
            "server_version_num" => "160000",
            "server_encoding" | "client_encoding" => "UTF8",
            "standard_conforming_strings" | "integer_datetimes" => "on",
            "transaction isolation level" | "transaction_isolation" => "read committed",
            "transaction_read_only" | "default_transaction_read_only" => "on",
            "datestyle" => "ISO, MDY",
            "intervalstyle" => "postgres",
            "timezone" | "time zone" => "UTC",
            "search_path" => "public",
            "application_name" => "",
            "max_identifier_length" => "63",
            "lc_collate" | "lc_ctype" => "C",
            _ => return None,
        }
        .to_string(),
    )
}

/// `SHOW name`: one row, one text column named after the setting.
fn show(stmt: &SqlStatement) -> Option<PgWireResult<RecordBatch>> {
    let SqlStatement::ShowVariable { variable } = stmt else {
        return None;
    };
    let name = variable
        .iter()
        .map(|i| i.value.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let Some(value) = setting(&name) else {
        return Some(Err(pg_error(
            "ERROR",
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )));
    };
    let column = variable
        .last()
        .map_or("setting".to_string(), |i| i.value.clone());
    let schema = Arc::new(Schema::new(vec![datafusion::arrow::datatypes::Field::new(
        column,
        DataType::Utf8,
        false,
    )]));
    let values = datafusion::arrow::array::StringArray::from(vec![value]);
    Some(
        RecordBatch::try_new(schema, vec![Arc::new(values)])
            .map_err(|e| pg_error("ERROR", "XX000", e.to_string())),
    )
}

/// What is answered without DataFusion: `SET` (acknowledged; the session's settings are the
/// server's), `SHOW` of the settings drivers ask for, and transactions (nothing to commit in a
/// read-only server).
fn utility(stmt: &SqlStatement) -> Option<Response> {
    match stmt {
        SqlStatement::Set(_) => Some(Response::Execution(Tag::new("SET"))),
        SqlStatement::StartTransaction { .. } => {
            Some(Response::TransactionStart(Tag::new("BEGIN")))
        }
        SqlStatement::Commit { .. } => Some(Response::TransactionEnd(Tag::new("COMMIT"))),
        SqlStatement::Rollback {
            savepoint: Some(_), ..
        } => Some(Response::Execution(Tag::new("ROLLBACK"))),
        SqlStatement::Rollback { .. } => Some(Response::TransactionEnd(Tag::new("ROLLBACK"))),
        SqlStatement::Savepoint { .. } => Some(Response::Execution(Tag::new("SAVEPOINT"))),
        SqlStatement::ReleaseSavepoint { .. } => Some(Response::Execution(Tag::new("RELEASE"))),
        _ => None,
    }
}

/// `LIKE p ESCAPE 'c'` with another escape than the backslash (SQLAlchemy writes `ESCAPE '/'`),
/// which DataFusion does not take, as the same pattern escaped with a backslash.
fn backslash_escapes(plan: LogicalPlan) -> datafusion::error::Result<LogicalPlan> {
    use datafusion::common::tree_node::Transformed;
    use datafusion::functions::string::expr_fn::replace;
    use datafusion::prelude::lit;
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|e| {
            e.transform_up(|e| match e {
                Expr::Like(mut like) if like.escape_char.is_some_and(|c| c != '\\') => {
                    let c = like.escape_char.take().unwrap_or('\\');
                    let pattern = replace(*like.pattern, lit("\\"), lit("\\\\"));
                    like.pattern = Box::new(replace(pattern, lit(c.to_string()), lit("\\")));
                    like.escape_char = Some('\\');
                    Ok(Transformed::yes(Expr::Like(like)))
                }
                e => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|t| t.data)
}

/// The answer to a statement without a plan: `SHOW`'s row, or [`utility`]'s tag.
fn answer_utility(
    stmt: &SqlStatement,
    format: &Format,
    options: &Arc<FormatOptions>,
) -> PgWireResult<Option<Response>> {
    if let Some(batch) = show(stmt) {
        let batch = batch?;
        let schema = batch.schema();
        return Ok(Some(Response::Query(encode(
            &schema,
            vec![batch],
            format,
            options.clone(),
        )?)));
    }
    Ok(utility(stmt))
}

/// The types of `$n` parameters, in order: DataFusion's, or the target of a cast
/// (`$1::BIGINT`) where DataFusion leaves it open.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types().map_err(|e| df_error(&e))?;
    plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            e.apply(|e| {
                if let Expr::Cast(c) = e
                    && let Expr::Placeholder(p) = c.expr.as_ref()
                    && let Some(slot) = types.get_mut(&p.id)
                    && slot.is_none()
                {
                    *slot = Some(c.field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| df_error(&e))?;
    // Positional: `$n` is the n-th. A parameter the statement no longer reads (a rewrite
    // dropped it) keeps its place, as text; one compared with a level column is text too.
    let position = |id: &str| id.trim_start_matches('$').parse::<usize>().ok();
    let len = types
        .keys()
        .filter_map(|id| position(id))
        .max()
        .unwrap_or(0);
    let mut v = vec![Some(DataType::Utf8); len];
    for (id, t) in types {
        if let Some(n) = position(&id).filter(|n| *n >= 1) {
            v[n - 1] = t.or(Some(DataType::Utf8));
        }
    }
    Ok(v)
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let c = conn(client)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let mut out = Vec::new();
        for stmt in self.parse(query)? {
            let p = self.plan(&c.ctx, stmt).await?;
            match p.plan {
                None => out.extend(answer_utility(&p.stmt, &Format::UnifiedText, &options)?),
                Some(plan) => {
                    out.push(
                        self.run(&c, plan, &Format::UnifiedText, options.clone())
                            .await?,
                    );
                }
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

#[async_trait]
impl QueryParser for Statements {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        text: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let c = conn(client)?;
        let mut statements = self.parse(text)?.into_iter();
        let Some(stmt) = statements.next() else {
            return Ok(None);
        };
        if statements.next().is_some() {
            return Err(pg_error(
                "ERROR",
                "42601",
                "a prepared statement holds one statement".into(),
            ));
        }
        Ok(Some(self.plan(&c.ctx, stmt).await?))
    }

    fn get_parameter_types(&self, s: &Prepared) -> PgWireResult<Vec<Type>> {
        let Some(plan) = &s.plan else {
            return Ok(Vec::new());
        };
        parameter_types(plan)?
            .iter()
            .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
            .collect()
    }

    fn get_result_schema(
        &self,
        s: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = format.unwrap_or(&Format::UnifiedText);
        match (&s.plan, show(&s.stmt)) {
            (Some(plan), _) => arrow_schema_to_pg_fields(plan.schema().as_arrow(), format, None),
            (None, Some(batch)) => arrow_schema_to_pg_fields(&batch?.schema(), format, None),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// Every handler of a connection.
struct Handlers {
    statements: Arc<Statements>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

#[async_trait]
impl ExtendedQueryHandler for Handlers {
    type Statement = Prepared;
    type QueryParser = Statements;

    fn query_parser(&self) -> Arc<Statements> {
        self.statements.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let c = conn(client)?;
        let p = &portal.statement.statement;
        let Some(plan) = &p.plan else {
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            return Ok(
                answer_utility(&p.stmt, &portal.result_column_format, &options)?
                    .unwrap_or(Response::EmptyQuery),
            );
        };
        let types = parameter_types(plan)?;
        let refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let params = deserialize_parameters(portal, &refs)?;
        let plan = plan
            .clone()
            .replace_params_with_values(&params)
            .map_err(|e| df_error(&e))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        self.statements
            .run(&c, plan, &portal.result_column_format, options)
            .await
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.statements.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(Handlers {
            statements: self.statements.clone(),
            startup: self.startup.clone(),
            cancel: self.cancel.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves the Postgres wire protocol on `listener` until the task is dropped.
pub(crate) async fn serve(state: Arc<AppState>, listener: TcpListener) {
    let conns = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        statements: Arc::new(Statements {
            state: state.clone(),
            parser: PostgresCompatibilityParser::new(),
        }),
        startup: Arc::new(Startup {
            state: state.clone(),
            params: DefaultServerParameterProvider::default(),
            pids: RandomPidSecretKeyGenerator::default(),
            conns: conns.clone(),
        }),
        cancel: Arc::new(DefaultCancelHandler::new(conns)),
    });
    let open = Arc::new(Semaphore::new(state.config.limits.max_connections.max(1)));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "pg accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "pg connection refused: too many connections");
            tokio::spawn(refuse(socket));
            continue;
        };
        let handlers = handlers.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%peer, error = %e, "pg connection ended");
            }
        });
    }
}

/// Answers a connection over the cap with `53300 too_many_connections` and closes it.
async fn refuse(mut socket: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let fields = b"SFATAL\0C53300\0Mtoo many connections to the Postgres listener\0\0";
    let mut frame = vec![b'E'];
    frame.extend_from_slice(&((fields.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(fields);
    let _ = socket.write_all(&frame).await;
    let _ = socket.shutdown().await;
}
