//! Cubes as SQL tables: a DataFusion session in which each cube a caller may read is a table
//! (`bank_crm`) with a text column per level (`region_province`) and a column per measure
//! (`txn_amount`), typed as the JSON API types them.
//!
//! A cube table is never scanned. The planner rule of [`pushdown`] recognises an aggregate over
//! a cube table (`GROUP BY` level columns, measures through `MEASURE(m)` or through their own
//! aggregate, `WHERE` on levels) and replaces it with one [`pushdown::CubeScan`] node: one
//! engine query, answered through the caller's [`Session`] (cuboid, base rows or fallback,
//! under the caller's scope and suppression). Everything SQL adds above it (expressions over
//! the measures, `HAVING`, `ORDER BY`, windows, joins, `UNION`) runs in DataFusion over that
//! node's rows. A measure aggregated in a way that would be wrong is an error that says which
//! aggregate to use; a cube table read without an aggregate is refused with a message.
//!
//! ```text
//! SQL --DataFusion parse/analyze--> Aggregate(Filter(TableScan bank_crm))
//!     --pushdown--> CubeScan{levels, measures, filters} --planner--> CubeScanExec
//!     --execute--> Session::query --> Answer --> one RecordBatch
//! ```

pub mod exec;
pub mod output;
pub mod pushdown;
pub mod table;

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::catalog::{CatalogProvider, MemoryCatalogProvider};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::AggregateUDF;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::query::{QueryError, Session};

/// The catalog (a Postgres database) the cube tables are in.
pub const CATALOG: &str = "lattice";
/// The schema the cube tables are in.
pub const SCHEMA: &str = "public";

/// The cubes one caller may read, each on its serving snapshot: asked each time a statement
/// is planned, so a reload is seen by the next statement and never in the middle of one.
pub trait Cubes: Send + Sync + std::fmt::Debug {
    /// The cubes' names (their table names), sorted.
    fn names(&self) -> Vec<String>;
    /// A session on `cube` as this caller sees it; `None` when there is no such cube.
    fn session(&self, cube: &str) -> Option<Session>;
}

/// A fixed set of sessions: the command line's, and tests'.
#[derive(Debug, Clone, Default)]
pub struct FixedCubes(pub Vec<(String, Session)>);

impl Cubes for FixedCubes {
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.0.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    fn session(&self, cube: &str) -> Option<Session> {
        self.0
            .iter()
            .find(|(n, _)| n == cube)
            .map(|(_, s)| s.clone())
    }
}

/// Why a statement failed, as SQL front ends report it.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The statement asks something a cube cannot answer (a wrong aggregate, a filter that
    /// cannot be pushed down, a cube table without an aggregate); the message says what to
    /// write instead.
    #[error("{0}")]
    Unsupported(String),
    /// The engine refused the question (an unknown member, a level used twice, access).
    #[error("{0}")]
    Query(#[from] QueryError),
    /// A result value the SQL column type cannot hold.
    #[error("{0}")]
    Value(String),
}

impl SqlError {
    /// The error as DataFusion carries it (and [`SqlError::find`] gets it back).
    pub fn into_df(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }

    /// The [`SqlError`] inside a DataFusion error, however deep DataFusion wrapped it.
    pub fn find(e: &DataFusionError) -> Option<&SqlError> {
        let mut e = e;
        loop {
            match e {
                DataFusionError::External(inner) => return inner.downcast_ref::<SqlError>(),
                DataFusionError::Context(_, inner) => e = inner,
                DataFusionError::Shared(inner) => e = inner,
                DataFusionError::Diagnostic(_, inner) => e = inner,
                _ => return None,
            }
        }
    }
}

/// The message of a failed statement: the cube's own message where the cube refused it,
/// DataFusion's otherwise (without its "External error: " prefix).
pub fn message(e: &DataFusionError) -> String {
    match SqlError::find(e) {
        Some(s) => s.to_string(),
        None => e.to_string(),
    }
}

/// A DataFusion session over `cubes`: their tables in `lattice.public`, `MEASURE()`, the
/// pushdown rule first among the optimizer's rules, and the planner of cube nodes.
/// `information_schema` lists the tables and columns.
pub fn context(cubes: Arc<dyn Cubes>) -> SessionContext {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        // Cube answers are small; one partition avoids repartitioning them for nothing.
        .with_target_partitions(1);
    let mut rules: Vec<Arc<dyn datafusion::optimizer::OptimizerRule + Send + Sync>> =
        vec![Arc::new(pushdown::CubePushdown)];
    rules.extend(datafusion::optimizer::Optimizer::new().rules);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(rules)
        .with_query_planner(Arc::new(exec::CubePlanner::new(cubes.clone())))
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_udaf(AggregateUDF::new_from_impl(pushdown::Measure::new()));
    let catalog = MemoryCatalogProvider::new();
    catalog
        .register_schema(SCHEMA, Arc::new(table::CubeSchema::new(cubes)))
        .expect("a memory catalog takes any schema");
    ctx.register_catalog(CATALOG, Arc::new(catalog));
    ctx
}

/// What the network front ends run: queries only. No DDL (`CREATE EXTERNAL TABLE` would read
/// the server's files), no DML or `COPY`, no DataFusion `SET` that would change a session's
/// limits.
pub fn read_only() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Runs one statement: its schema and record batches.
pub async fn run(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), DataFusionError> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok((schema, batches))
}
