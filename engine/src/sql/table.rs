//! The cube tables: their columns (one per level, one per measure), the schema provider that
//! finds them on the serving snapshot, and the table that refuses to be scanned.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session as DfSession, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use lattice_defs::Model;
use lattice_defs::model::{Agg, BinOp, Expr as MExpr, MeasureId, MeasureKind, OverTime};

use super::{Cubes, SqlError};
use crate::query::Session;

/// The largest precision of Arrow's `Decimal128`.
pub const DECIMAL_PRECISION: u8 = 38;

/// What a column of a cube table is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CubeColumn {
    /// A level, by its API name (`region.province`).
    Level(String),
    /// A measure, by name.
    Measure(String),
}

/// The columns of a cube's table, in order: every level, then every measure.
#[derive(Debug, Clone)]
pub struct Columns {
    pub names: Vec<String>,
    pub kinds: Vec<CubeColumn>,
    pub schema: SchemaRef,
}

impl Columns {
    /// The table of `model`: `<dimension>_<level>` text columns, then the measures. A column
    /// name two levels (or a level and a measure) would share is given to the first only.
    pub fn of(model: &Model, scales: &[i8]) -> Columns {
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        let mut fields = Vec::new();
        for d in &model.dimensions {
            for l in &d.levels {
                let name = format!("{}_{}", d.name, l.name);
                if names.contains(&name) {
                    continue;
                }
                fields.push(Field::new(&name, DataType::Utf8, true));
                names.push(name);
                kinds.push(CubeColumn::Level(format!("{}.{}", d.name, l.name)));
            }
        }
        for (m, measure) in model.measures.iter().enumerate() {
            if names.contains(&measure.name) {
                continue;
            }
            let mut field = Field::new(&measure.name, measure_type(model, scales, m), true);
            if let Some(d) = &measure.description {
                field = field.with_metadata([("comment".to_string(), d.clone())].into());
            }
            fields.push(field);
            names.push(measure.name.clone());
            kinds.push(CubeColumn::Measure(measure.name.clone()));
        }
        Columns {
            names,
            kinds,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    pub fn find(&self, name: &str) -> Option<&CubeColumn> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.kinds[i])
    }

    /// The column of a level's API name (`region.province` -> `region_province`).
    pub fn level_column(&self, level: &str) -> Option<&str> {
        self.kinds
            .iter()
            .position(|k| matches!(k, CubeColumn::Level(l) if l == level))
            .map(|i| self.names[i].as_str())
    }
}

/// The SQL type of a measure: `BIGINT` for counts and integer sums, `DECIMAL(38, s)` for money
/// at its scale, `DOUBLE` for ratios (as the JSON API's `integer`, `decimal`, `number`).
pub fn measure_type(model: &Model, scales: &[i8], m: MeasureId) -> DataType {
    match exact_scale(model, scales, m) {
        Some(0) => DataType::Int64,
        Some(s) => DataType::Decimal128(DECIMAL_PRECISION, s),
        None => DataType::Float64,
    }
}

/// The scale of an exact measure (0: an integer); `None` for a ratio.
fn exact_scale(model: &Model, scales: &[i8], m: MeasureId) -> Option<i8> {
    match &model.measures[m].kind {
        MeasureKind::Aggregate {
            agg: Agg::Count | Agg::Distinct,
            ..
        } => Some(0),
        MeasureKind::Aggregate { .. } => Some(scales[m].max(0)),
        MeasureKind::Derived(e) => expr_scale(model, scales, e),
    }
}

fn expr_scale(model: &Model, scales: &[i8], e: &MExpr) -> Option<i8> {
    match e {
        MExpr::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(0),
        MExpr::Number(_) => None,
        MExpr::Neg(e) => expr_scale(model, scales, e),
        MExpr::Measure(m) => exact_scale(model, scales, *m),
        MExpr::Binary(BinOp::Div, ..) => None,
        MExpr::Binary(op, a, b) => {
            let (a, b) = (expr_scale(model, scales, a)?, expr_scale(model, scales, b)?);
            match op {
                BinOp::Mul if a + b <= 18 => Some(a + b),
                BinOp::Mul => None,
                _ => Some(a.max(b)),
            }
        }
    }
}

/// Which SQL aggregates of a measure give its value, for the error that names them.
pub fn aggregates_of(model: &Model, m: MeasureId) -> &'static [&'static str] {
    match &model.measures[m].kind {
        MeasureKind::Aggregate {
            agg: Agg::Sum | Agg::Count,
            over_time: OverTime::Additive,
            ..
        } => &["sum"],
        MeasureKind::Aggregate { agg: Agg::Min, .. } => &["min"],
        MeasureKind::Aggregate { agg: Agg::Max, .. } => &["max"],
        _ => &[],
    }
}

/// What a measure is, in words, for errors.
pub fn measure_words(model: &Model, m: MeasureId) -> &'static str {
    match &model.measures[m].kind {
        MeasureKind::Aggregate {
            over_time: OverTime::Last,
            ..
        } => "a semi-additive measure (its value at the closing period)",
        MeasureKind::Aggregate { agg: Agg::Sum, .. } => "a sum",
        MeasureKind::Aggregate {
            agg: Agg::Count, ..
        } => "a count",
        MeasureKind::Aggregate { agg: Agg::Min, .. } => "a minimum",
        MeasureKind::Aggregate { agg: Agg::Max, .. } => "a maximum",
        MeasureKind::Aggregate {
            agg: Agg::Distinct, ..
        } => "a distinct count",
        MeasureKind::Derived(_) => "a derived measure",
    }
}

/// The cube tables of one caller, found on the serving snapshot each time a statement is
/// planned.
#[derive(Debug)]
pub struct CubeSchema {
    cubes: Arc<dyn Cubes>,
}

impl CubeSchema {
    pub fn new(cubes: Arc<dyn Cubes>) -> CubeSchema {
        CubeSchema { cubes }
    }
}

#[async_trait]
impl SchemaProvider for CubeSchema {
    fn table_names(&self) -> Vec<String> {
        self.cubes.names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .cubes
            .session(name)
            .map(|s| Arc::new(CubeTable::new(name, s)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.cubes.session(name).is_some()
    }
}

/// One cube as a table, on one snapshot.
#[derive(Debug)]
pub struct CubeTable {
    pub name: String,
    pub session: Session,
    pub columns: Columns,
}

impl CubeTable {
    pub fn new(name: &str, session: Session) -> CubeTable {
        let cube = session.cube();
        let columns = Columns::of(&cube.model, &cube.index.scales);
        CubeTable {
            name: name.to_string(),
            session,
            columns,
        }
    }
}

#[async_trait]
impl TableProvider for CubeTable {
    fn schema(&self) -> SchemaRef {
        self.columns.schema.clone()
    }

    /// A base table to catalogs (`pg_class.relkind = 'r'`): what `\dt` and BI tools list.
    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.session.cube().model.description.as_deref()
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(not_scanned(&self.name, &self.columns))
    }
}

/// The error of a cube table read without an aggregate over it.
pub fn not_scanned(table: &str, columns: &Columns) -> DataFusionError {
    let first = |want: fn(&CubeColumn) -> bool| {
        columns
            .kinds
            .iter()
            .position(want)
            .map_or("?", |i| columns.names[i].as_str())
    };
    let level = first(|k| matches!(k, CubeColumn::Level(_)));
    let measure = first(|k| matches!(k, CubeColumn::Measure(_)));
    SqlError::Unsupported(format!(
        "{table} is a cube: its rows are not read one by one; ask for measures grouped by \
         levels, e.g. SELECT {level}, MEASURE({measure}) FROM {table} GROUP BY {level} (an \
         aggregate directly over the table, not over a join)"
    ))
    .into_df()
}
