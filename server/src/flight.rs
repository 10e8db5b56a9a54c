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
//! - **Catalog.** `GetCatalogs`, `GetDbSchemas`, `GetTables` (with each table's Arrow
//!   schema), `GetTableTypes` and `GetSqlInfo` answer what drivers and BI tools list before
//!   they ask: catalog `lattice`, schema `public`, one table per cube.
//! - **Errors** are gRPC statuses: `unauthenticated`, `invalid_argument` for a statement the
//!   cube refuses (with what to write instead), `deadline_exceeded`, `resource_exhausted`.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes,
    CommandGetTables, CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use axum::http::HeaderValue;
use datafusion::arrow::array::RecordBatch;
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
        let ctx = self.context(principal.clone());
        let df = self.plan(&ctx, &text).await?;
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
