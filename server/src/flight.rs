//! Arrow Flight SQL (`serve --flight-addr`): the cube tables of [`lattice_engine::sql`] for
//! Flight SQL clients (ADBC, JDBC, arrow-flight's own client), record batches streamed as they
//! are.
//!
//! - **Authentication.** Each call carries `authorization: Bearer <API key or JWT>`, checked
//!   as HTTP checks it; or the client first does a handshake with `Basic user:key`, and gets
//!   the key back as its bearer token (nothing is stored on the server). Without `--auth`
//!   every call is the anonymous principal.
//! - **Statements.** `GetFlightInfo(CommandStatementQuery)` plans the statement under the
//!   caller's access (its schema, or the planning error) and answers a ticket that holds the
//!   statement itself; `DoGet` of that ticket runs it under the same limits as an HTTP query
//!   (turns, admission, time limit, row limit). A ticket is re-authenticated and re-planned,
//!   so it grants nothing by itself.
//! - **Prepared statements.** `CreatePreparedStatement` plans the statement (`?` or `$1`
//!   placeholders) and answers its parameters' types; binding parameters (`DoPut`, one row)
//!   answers a new handle holding them; `GetFlightInfo`/`DoGet` of the handle run it as a
//!   statement. The handle is the statement and its values: the server keeps nothing.
//! - **Catalog.** `GetCatalogs`, `GetDbSchemas`, `GetTables` (with each table's Arrow
//!   schema), `GetTableTypes` and `GetSqlInfo` answer what drivers and BI tools list before
//!   they ask: catalog `lattice`, schema `public`, one table per cube.
//! - **Errors** are gRPC statuses: `unauthenticated`, `invalid_argument` for a statement the
//!   cube refuses (with what to write instead), `deadline_exceeded`, `resource_exhausted`.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{Action, IpcMessage, SchemaAsIpc};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use axum::http::HeaderValue;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use lattice_engine::sql::{self, SqlError};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::pg::PrincipalCubes;

/// The Flight SQL service over the served cubes.
#[derive(Debug, Clone)]
pub struct Flight {
    state: Arc<AppState>,
}

impl Flight {
    pub(crate) fn new(state: Arc<AppState>) -> Flight {
        Flight { state }
    }

    /// The gRPC service to serve (`tonic::transport::Server::builder().add_service(..)`).
    pub fn service(self) -> FlightServiceServer<Flight> {
        FlightServiceServer::new(self)
    }

    /// Who sent `request`: its bearer credential, or anonymous without an auth file.
    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let Some(auth) = &self.state.config.auth else {
            return Ok(Principal::anonymous());
        };
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| HeaderValue::from_str(v).ok());
        auth.authenticate(header.as_ref(), false).map_err(|_| {
            Status::unauthenticated(
                "an `authorization: Bearer <API key or JWT>` header is needed (or a handshake \
                 with Basic user:key); this one is missing or not a known key or valid token",
            )
        })
    }

    fn context(&self, principal: Principal) -> SessionContext {
        sql::context(Arc::new(PrincipalCubes {
            state: self.state.clone(),
            principal,
        }))
    }

    /// Plans `text` in `ctx` (queries only), or says why not.
    async fn plan(
        &self,
        ctx: &SessionContext,
        text: &str,
    ) -> Result<datafusion::dataframe::DataFrame, Status> {
        ctx.sql_with_options(text, sql::read_only())
            .await
            .map_err(status)
    }

    /// [`Flight::plan`], with `params` for its `$1`, `$2`... (none: as it is).
    async fn plan_with(
        &self,
        ctx: &SessionContext,
        text: &str,
        params: Vec<ScalarValue>,
    ) -> Result<datafusion::dataframe::DataFrame, Status> {
        let df = self.plan(ctx, text).await?;
        if params.is_empty() {
            return Ok(df);
        }
        df.with_param_values(params).map_err(status)
    }

    /// Runs `text` (with `params`) for `principal` under the HTTP query limits (turns,
    /// admission, time limit, row limit), as record batches.
    async fn run(
        &self,
        principal: Principal,
        text: &str,
        params: Vec<ScalarValue>,
    ) -> Result<Response<DoGetStream>, Status> {
        let ctx = self.context(principal.clone());
        let df = self.plan_with(&ctx, text, params).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        let max_rows = self.state.config.limits.max_result_rows;
        let batches = crate::query::run_limited(&self.state, &principal, async move {
            Ok::<_, ApiError>(df.collect().await)
        })
        .await
        .map_err(|e| api_status(&e))?
        .map_err(status)?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > max_rows {
            return Err(Status::resource_exhausted(format!(
                "the answer has {rows} rows, more than the limit of {max_rows}; add a LIMIT or filter"
            )));
        }
        let flights = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .build(stream::iter(batches.into_iter().map(Ok)))
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(flights.boxed()))
    }
}

/// A prepared statement's handle, kept by the client (the server keeps nothing): the statement
/// (its `?` numbered `$1`, `$2`...) and, once bound, its parameters as an Arrow IPC stream of
/// one row.
#[derive(Debug, Clone, PartialEq)]
struct Prepared {
    sql: String,
    params: Vec<ScalarValue>,
}

impl Prepared {
    const MAGIC: &'static [u8] = b"LPS1";

    fn encode(&self) -> Vec<u8> {
        let mut out = Prepared::MAGIC.to_vec();
        out.extend((self.sql.len() as u32).to_le_bytes());
        out.extend(self.sql.as_bytes());
        if !self.params.is_empty() {
            let columns: Vec<(String, ArrayRef)> = self
                .params
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((format!("${}", i + 1), v.to_array().ok()?)))
                .collect();
            if let Ok(batch) = RecordBatch::try_from_iter(columns) {
                let mut w = StreamWriter::try_new(Vec::new(), &batch.schema()).expect("IPC writer");
                if w.write(&batch).is_ok() && w.finish().is_ok() {
                    out.extend(w.into_inner().unwrap_or_default());
                }
            }
        }
        out
    }

    fn decode(handle: &[u8]) -> Result<Prepared, Status> {
        let bad = || Status::invalid_argument("not a prepared statement handle of this server");
        let rest = handle.strip_prefix(Prepared::MAGIC).ok_or_else(bad)?;
        let (len, rest) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_le_bytes(*len) as usize;
        let sql = rest.get(..len).ok_or_else(bad)?;
        let sql = String::from_utf8(sql.to_vec()).map_err(|_| bad())?;
        let mut params = Vec::new();
        let ipc = &rest[len..];
        if !ipc.is_empty() {
            let reader =
                StreamReader::try_new(std::io::Cursor::new(ipc), None).map_err(|_| bad())?;
            for batch in reader {
                let batch = batch.map_err(|_| bad())?;
                for c in batch.columns() {
                    params.push(ScalarValue::try_from_array(c, 0).map_err(|_| bad())?);
                }
            }
        }
        Ok(Prepared { sql, params })
    }
}

/// `sql` with each `?` placeholder (outside quotes and comments) numbered `$1`, `$2`..., as
/// DataFusion numbers positional parameters.
fn positional(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut n = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // To the closing quote (a doubled quote stays inside).
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == c {
                        if chars.peek() == Some(&c) {
                            out.push(chars.next().expect("peeked"));
                        } else {
                            break;
                        }
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                out.push(c);
                out.push(chars.next().expect("peeked"));
                let mut last = ' ';
                for d in chars.by_ref() {
                    out.push(d);
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            c => out.push(c),
        }
    }
    out
}

/// An Arrow schema as the IPC message Flight SQL sends it in.
fn ipc_schema(schema: &Schema) -> Result<prost::bytes::Bytes, Status> {
    let options = IpcWriteOptions::default();
    let message: IpcMessage = SchemaAsIpc::new(schema, &options)
        .try_into()
        .map_err(|e: datafusion::arrow::error::ArrowError| Status::internal(e.to_string()))?;
    Ok(message.0)
}

/// A DataFusion error as a gRPC status: what the cube or the SQL refused is the caller's
/// (`invalid_argument`, with the message); anything else internal.
fn status(e: DataFusionError) -> Status {
    match SqlError::find(&e) {
        Some(SqlError::Value(m)) => Status::internal(m.clone()),
        Some(s) => Status::invalid_argument(s.to_string()),
        None => match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => Status::invalid_argument(sql::message(&e)),
            DataFusionError::ResourcesExhausted(m) => Status::resource_exhausted(m.clone()),
            _ => Status::internal(sql::message(&e)),
        },
    }
}

fn api_status(e: &ApiError) -> Status {
    match e.code {
        "query_timeout" => Status::deadline_exceeded(e.message.clone()),
        "too_many_queries" | "too_many_rows" => Status::resource_exhausted(e.message.clone()),
        "forbidden" => Status::permission_denied(e.message.clone()),
        _ => Status::internal(e.message.clone()),
    }
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send>>;

#[tonic::async_trait]
impl FlightSqlService for Flight {
    type FlightService = Flight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let value = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let token = match value.strip_prefix("Basic ") {
            Some(b64) => {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| Status::invalid_argument("the Basic credential is not base64"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| Status::invalid_argument("the Basic credential is not UTF-8"))?;
                let (_user, key) = text.split_once(':').unwrap_or(("", text.as_str()));
                key.to_string()
            }
            None => value.strip_prefix("Bearer ").unwrap_or("").to_string(),
        };
        // The key is checked now, so a wrong one fails at the handshake.
        let mut check = Request::new(());
        if let Ok(v) = format!("Bearer {token}").parse() {
            check.metadata_mut().insert("authorization", v);
        }
        self.principal(&check)?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<Pin<Box<dyn Stream<Item = _> + Send>>> =
            Response::new(Box::pin(stream::iter(vec![Ok(reply)])));
        if let Ok(v) = format!("Bearer {token}").parse() {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let ctx = self.context(principal);
        let df = self.plan(&ctx, &query.query).await?;
        let schema = df.schema().as_arrow().clone();
        let ticket = TicketStatementQuery {
            statement_handle: query.query.clone().into_bytes().into(),
        };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket {
            ticket: ticket.as_any().encode_to_vec().into(),
        });
        let info = FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(request.into_inner());
        Ok(Response::new(info))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let text = String::from_utf8(ticket.statement_handle.to_vec())
            .map_err(|_| Status::invalid_argument("the ticket is not a statement"))?;
        self.run(principal, &text, Vec::new()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request)?;
        let prepared = Prepared::decode(&cmd.prepared_statement_handle)?;
        let ctx = self.context(principal);
        let df = self
            .plan_with(&ctx, &prepared.sql, prepared.params.clone())
            .await?;
        let schema = df.schema().as_arrow().clone();
        metadata_info(&cmd, &schema, request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let prepared = Prepared::decode(&cmd.prepared_statement_handle)?;
        self.run(principal, &prepared.sql, prepared.params).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let principal = self.principal(&request)?;
        let sql = positional(&query.query);
        let ctx = self.context(principal);
        let df = self.plan(&ctx, &sql).await?;
        // The parameters' types as DataFusion infers them from where they stand (a level is
        // text); one it cannot place is text.
        let types = df.logical_plan().get_parameter_types().map_err(status)?;
        let mut fields: Vec<(usize, Field)> = types
            .into_iter()
            .filter_map(|(name, ty)| {
                let i: usize = name.strip_prefix('$')?.parse().ok()?;
                Some((i, Field::new(name, ty.unwrap_or(DataType::Utf8), true)))
            })
            .collect();
        fields.sort_by_key(|(i, _)| *i);
        let parameters = Schema::new(fields.into_iter().map(|(_, f)| f).collect::<Vec<_>>());
        // The answer's schema once the parameters are known; without them, what planning gives.
        let dataset = df.schema().as_arrow().clone();
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Prepared {
                sql,
                params: Vec::new(),
            }
            .encode()
            .into(),
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.principal(&request)?;
        let mut prepared = Prepared::decode(&cmd.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(
            request
                .into_inner()
                .map_err(|e| FlightError::Tonic(Box::new(e))),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("the parameters: {e}")))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows != 1 {
            return Err(Status::invalid_argument(format!(
                "bind one row of parameters (got {rows}): a prepared statement runs once per binding"
            )));
        }
        let batch = batches
            .into_iter()
            .find(|b| b.num_rows() == 1)
            .expect("one row");
        prepared.params = batch
            .columns()
            .iter()
            .map(|c| ScalarValue::try_from_array(c, 0))
            .collect::<Result<_, _>>()
            .map_err(|e| Status::invalid_argument(format!("the parameters: {e}")))?;
        // Stateless: the new handle carries the values (the client uses it from now on).
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(prepared.encode().into()),
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Nothing is kept on the server: the handle is the statement.
        self.principal(&request)?;
        Ok(())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }
    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(sql::CATALOG);
        batch_stream(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(sql::CATALOG, sql::SCHEMA);
        batch_stream(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let principal = self.principal(&request)?;
        let ctx = self.context(principal);
        let mut builder = query.into_builder();
        // Every cube is a table (the cube list is no secret: `GET /v1/cubes` gives it to any
        // principal); its columns as the SQL layer types them.
        for name in self.state.registry.names() {
            let table = ctx
                .table_provider(TableReference::full(
                    sql::CATALOG,
                    sql::SCHEMA,
                    name.as_str(),
                ))
                .await
                .map_err(status)?;
            builder
                .append(sql::CATALOG, sql::SCHEMA, &name, TABLE, &table.schema())
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        batch_stream(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        let mut builder = query.into_builder();
        builder.append(TABLE);
        batch_stream(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request)?;
        let schema = query.clone().into_builder(sql_info()).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(&request)?;
        batch_stream(query.into_builder(sql_info()).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// The type of every cube table.
const TABLE: &str = "TABLE";

/// What the server says about itself (`CommandGetSqlInfo`): its name and version, Arrow's,
/// that it only reads, and how SQL is written to it.
fn sql_info() -> &'static SqlInfoData {
    static INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Lattice");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        b.append(SqlInfo::FlightSqlServerReadOnly, true);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, false);
        b.build().expect("the server's SQL info")
    });
    &INFO
}

/// The `FlightInfo` of a metadata command: its answer's schema, and a ticket that is the
/// command itself (`DoGet` dispatches on it).
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &datafusion::arrow::datatypes::Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket {
        ticket: command.as_any().encode_to_vec().into(),
    });
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

/// One record batch as a `DoGet` answer.
fn batch_stream<E: std::fmt::Display>(
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let flights = FlightDataEncoderBuilder::new()
        .with_schema(batch.schema())
        .build(stream::iter([Ok(batch)]))
        .map_err(|e| Status::internal(e.to_string()));
    Ok(Response::new(flights.boxed()))
}

/// Serves Flight SQL on `listener` until dropped.
pub(crate) async fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) {
    let incoming = tokio_stream_of(listener);
    if let Err(e) = tonic::transport::Server::builder()
        .add_service(Flight::new(state).service())
        .serve_with_incoming(incoming)
        .await
    {
        tracing::warn!(error = %e, "the Flight SQL listener stopped");
    }
}

/// The accepted connections of `listener`, as tonic takes them.
fn tokio_stream_of(
    listener: tokio::net::TcpListener,
) -> impl Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    stream::unfold(listener, |l| async move {
        let next = l.accept().await.map(|(s, _)| s);
        Some((next, l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_are_numbered_outside_quotes_and_comments() {
        assert_eq!(
            positional("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(
            positional("SELECT '?', \"a?\" -- why?\nFROM t /* ? */ WHERE x = ?"),
            "SELECT '?', \"a?\" -- why?\nFROM t /* ? */ WHERE x = $1"
        );
        assert_eq!(
            positional("SELECT 'it''s ?' WHERE y = ?"),
            "SELECT 'it''s ?' WHERE y = $1"
        );
        assert_eq!(positional("SELECT $1"), "SELECT $1");
    }

    #[test]
    fn a_handle_carries_the_statement_and_its_values() {
        let bare = Prepared {
            sql: "SELECT $1".into(),
            params: vec![],
        };
        assert_eq!(Prepared::decode(&bare.encode()).expect("decode"), bare);
        let bound = Prepared {
            sql: "SELECT $1, $2".into(),
            params: vec![
                ScalarValue::Utf8(Some("2025".into())),
                ScalarValue::Int64(Some(7)),
            ],
        };
        assert_eq!(Prepared::decode(&bound.encode()).expect("decode"), bound);
        assert!(Prepared::decode(b"SELECT 1").is_err());
        assert!(Prepared::decode(b"LPS1\xff\xff\xff\xffx").is_err());
    }
}
