//! The cube node's execution: one engine query through the caller's session, its answer as
//! one record batch of the aggregate's schema.

use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, Decimal128Builder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session as DfSession;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{LogicalPlan, UserDefinedLogicalNode};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use lattice_defs::model::{Agg, MeasureKind};
use serde_json::Value as Json;

use super::pushdown::{CubeScan, Pushed, describe};
use super::{Cubes, SqlError};
use crate::query::{Answer, Filter, FilterOp, Query, QueryError, Session};

/// Plans statements with cube nodes: DataFusion's planner with [`ScanPlanner`]. For `EXPLAIN`,
/// each cube node's path (cuboid, base rows, fallback) is found as it is planned.
#[derive(Debug)]
pub struct CubePlanner {
    cubes: Arc<dyn Cubes>,
}

impl CubePlanner {
    pub fn new(cubes: Arc<dyn Cubes>) -> CubePlanner {
        CubePlanner { cubes }
    }
}

#[async_trait]
impl QueryPlanner for CubePlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn DfSession,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let explain = matches!(plan, LogicalPlan::Explain(_));
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(ScanPlanner {
                cubes: self.cubes.clone(),
                explain,
            })]);
        planner.create_physical_plan(plan, session).await
    }
}

/// Plans a [`CubeScan`] as a [`CubeScanExec`] on the cube's serving snapshot.
#[derive(Debug)]
struct ScanPlanner {
    cubes: Arc<dyn Cubes>,
    explain: bool,
}

#[async_trait]
impl ExtensionPlanner for ScanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn DfSession,
        _ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(scan) = node.as_any().downcast_ref::<CubeScan>() else {
            return Ok(None);
        };
        let session = self.cubes.session(&scan.cube).ok_or_else(|| {
            DataFusionError::Plan(format!("cube {} is no longer served", scan.cube))
        })?;
        let exec = CubeScanExec::new(scan.clone(), session);
        if self.explain {
            let path = exec.path().await.map_err(SqlError::into_df)?;
            *exec.path.lock().expect("not poisoned") = Some(path);
        }
        Ok(Some(Arc::new(exec)))
    }
}

/// One cube query, executed.
#[derive(Debug)]
pub struct CubeScanExec {
    scan: CubeScan,
    session: Session,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// How the engine answered (for EXPLAIN): found when planning an EXPLAIN, or on execution.
    path: Mutex<Option<String>>,
}

impl CubeScanExec {
    fn new(scan: CubeScan, session: Session) -> CubeScanExec {
        let schema: SchemaRef = Arc::new(scan.schema.as_arrow().clone());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        CubeScanExec {
            scan,
            session,
            schema,
            properties: Arc::new(properties),
            path: Mutex::new(None),
        }
    }

    /// The engine's path for this node: `cuboid [levels]`, `base` or `fallback`, per fact.
    async fn path(&self) -> Result<String, SqlError> {
        let mut q = query_of(&self.scan, self.session.cube())?;
        q.explain = true;
        let answer = answer(&self.session, q).await?;
        Ok(path_of(&answer))
    }
}

fn path_of(a: &Option<Answer>) -> String {
    let Some(answer) = a else {
        return "no rows (a filter names no member)".into();
    };
    answer
        .meta
        .facts
        .iter()
        .map(|f| match &f.cuboid {
            Some(c) => format!("{}: {} [{}]", f.fact, f.source, c.join(", ")),
            None => format!("{}: {}", f.fact, f.source),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl DisplayAs for CubeScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CubeScanExec: {}", describe(&self.scan))?;
        if let Some(path) = &*self.path.lock().expect("not poisoned") {
            write!(f, " answered_from=[{path}]")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CubeScanExec {
    fn name(&self) -> &str {
        "CubeScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let scan = self.scan.clone();
        let session = self.session.clone();
        let schema = self.schema.clone();
        let run = async move {
            let q = query_of(&scan, session.cube()).map_err(SqlError::into_df)?;
            let a = answer(&session, q).await.map_err(SqlError::into_df)?;
            batch(&scan, &schema, &a).map_err(SqlError::into_df)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(run),
        )))
    }
}

/// The engine query of a cube node: its distinct levels on rows, its distinct measures (or,
/// for a `DISTINCT` of levels, a count of one fact that has them all, dropped again).
pub fn query_of(scan: &CubeScan, cube: &crate::store::Cube) -> Result<Query, SqlError> {
    let mut rows: Vec<String> = Vec::new();
    for l in &scan.levels {
        if !rows.contains(l) {
            rows.push(l.clone());
        }
    }
    let mut measures: Vec<String> = Vec::new();
    for m in &scan.measures {
        if !measures.contains(m) {
            measures.push(m.clone());
        }
    }
    if measures.is_empty() {
        measures.push(member_measure(cube, &rows)?);
    }
    let filters = scan.filters.iter().map(filter_of).collect::<Vec<_>>();
    Ok(Query {
        measures,
        rows,
        filters,
        ..Query::default()
    })
}

fn filter_of(f: &Pushed) -> Filter {
    let one = matches!(f.op, FilterOp::Eq | FilterOp::Prefix | FilterOp::Search);
    Filter {
        level: f.level.clone(),
        op: f.op,
        value: one.then(|| f.values.first().cloned()).flatten(),
        values: (!one).then(|| f.values.clone()),
    }
}

/// A measure whose facts vary by every level of `rows`: the members with facts are the groups
/// of a question about it. A count is preferred (the cheapest to aggregate).
fn member_measure(cube: &crate::store::Cube, rows: &[String]) -> Result<String, SqlError> {
    let model = &cube.model;
    let varies = |fact| {
        rows.iter().all(|l| {
            model
                .level(l)
                .is_some_and(|l| model.fact_has_dimension(fact, l.dim))
        })
    };
    let mut best: Option<(bool, &str)> = None;
    for m in &model.measures {
        if let MeasureKind::Aggregate { fact, agg, .. } = &m.kind
            && varies(*fact)
        {
            let count = *agg == Agg::Count;
            if best.is_none_or(|(c, _)| count && !c) {
                best = Some((count, &m.name));
            }
        }
    }
    best.map(|(_, m)| m.to_string()).ok_or_else(|| {
        SqlError::Unsupported(format!(
            "no fact of cube {} varies by all of {}: ask for them in separate queries",
            model.name,
            rows.join(", ")
        ))
    })
}

/// Asks the engine: its answer, or none when a filter keeps no member. SQL reads a value no member has as a filter matching nothing (the JSON
/// API's "not a member" error): it is taken out of the filter, and an `=` or `IN` left with no
/// value answers no rows. A member outside the caller's scope reads the same way.
async fn answer(session: &Session, mut q: Query) -> Result<Option<Answer>, SqlError> {
    loop {
        match session.query(&q).await {
            Ok(a) => return Ok(Some(a)),
            Err(QueryError::UnknownMember { level, value, .. }) => {
                let Some(i) = q.filters.iter().position(|f| {
                    f.level == level
                        && (f.value.as_deref() == Some(value.as_str())
                            || f.values.as_ref().is_some_and(|v| v.contains(&value)))
                }) else {
                    return Err(SqlError::Query(QueryError::UnknownMember {
                        level,
                        value,
                        suggestions: Vec::new(),
                    }));
                };
                let f = &mut q.filters[i];
                match f.op {
                    FilterOp::Eq => return Ok(None),
                    FilterOp::In | FilterOp::NotIn => {
                        let values = f.values.get_or_insert_with(Vec::new);
                        values.retain(|v| *v != value);
                        if values.is_empty() {
                            if f.op == FilterOp::In {
                                return Ok(None);
                            }
                            q.filters.remove(i);
                        }
                    }
                    _ => {
                        return Err(SqlError::Query(QueryError::UnknownMember {
                            level,
                            value,
                            suggestions: Vec::new(),
                        }));
                    }
                }
            }
            Err(e) => return Err(SqlError::Query(e)),
        }
    }
}

/// The answer as a record batch of `schema`: each group column from its level's column, each
/// aggregate column from its measure's.
fn batch(scan: &CubeScan, schema: &SchemaRef, a: &Option<Answer>) -> Result<RecordBatch, SqlError> {
    let a = match a {
        Some(a) => a,
        // A filter that keeps no member: no groups, or SQL's one row of nulls for an
        // aggregate without GROUP BY.
        None if scan.levels.is_empty() => {
            let columns = (0..schema.fields().len())
                .map(|i| arrow::array::new_null_array(schema.field(i).data_type(), 1))
                .collect();
            return RecordBatch::try_new(schema.clone(), columns)
                .map_err(|e| SqlError::Value(e.to_string()));
        }
        None => return Ok(RecordBatch::new_empty(schema.clone())),
    };
    let names: Vec<&String> = scan.levels.iter().chain(&scan.measures).collect();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(names.len());
    for (i, field) in schema.fields().iter().enumerate() {
        let name = names.get(i).ok_or_else(|| {
            SqlError::Value(format!("cube node column {i} has no level or measure"))
        })?;
        let at = a.columns.iter().position(|c| &c.name == *name);
        let values = a.rows.iter().map(|r| at.map_or(&Json::Null, |c| &r[c]));
        columns.push(array(field.data_type(), name, values)?);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| SqlError::Value(e.to_string()))
}

/// One column from the answer's JSON values: text, integers, exact decimals, numbers.
fn array<'a>(
    ty: &DataType,
    name: &str,
    values: impl Iterator<Item = &'a Json>,
) -> Result<ArrayRef, SqlError> {
    let bad = |v: &Json| SqlError::Value(format!("{name}: {v} is not a {ty} value"));
    Ok(match ty {
        DataType::Utf8 => {
            let mut b = StringBuilder::new();
            for v in values {
                match v {
                    Json::Null => b.append_null(),
                    Json::String(s) => b.append_value(s),
                    v => b.append_value(v.to_string()),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Int64 => {
            let mut b = Int64Builder::new();
            for v in values {
                match v {
                    Json::Null => b.append_null(),
                    Json::Number(n) => b.append_value(n.as_i64().ok_or_else(|| bad(v))?),
                    Json::String(s) => b.append_value(s.parse().map_err(|_| bad(v))?),
                    v => return Err(bad(v)),
                }
            }
            Arc::new(b.finish())
        }
        DataType::Decimal128(p, s) => {
            let mut b = Decimal128Builder::new();
            for v in values {
                match v {
                    Json::Null => b.append_null(),
                    Json::Number(n) if n.is_i64() => {
                        let i = i128::from(n.as_i64().expect("checked"));
                        b.append_value(rescale(i, 0, *s).ok_or_else(|| bad(v))?);
                    }
                    Json::Number(n) => {
                        let f = n.as_f64().ok_or_else(|| bad(v))?;
                        b.append_value((f * 10f64.powi(i32::from(*s))).round() as i128);
                    }
                    Json::String(t) => b.append_value(parse_decimal(t, *s).ok_or_else(|| bad(v))?),
                    v => return Err(bad(v)),
                }
            }
            Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| SqlError::Value(e.to_string()))?,
            )
        }
        DataType::Float64 => {
            let mut b = Float64Builder::new();
            for v in values {
                match v {
                    Json::Null => b.append_null(),
                    Json::Number(n) => b.append_value(n.as_f64().ok_or_else(|| bad(v))?),
                    Json::String(t) => b.append_value(t.parse().map_err(|_| bad(v))?),
                    v => return Err(bad(v)),
                }
            }
            Arc::new(b.finish())
        }
        other => {
            // A type the aggregate gave its column (COUNT's Int64 aside, the same as the
            // measure's): build the measure's natural type and cast.
            let natural = match other {
                DataType::Float32 | DataType::Float16 => DataType::Float64,
                DataType::Decimal256(_, s) => DataType::Decimal128(38, *s),
                _ => DataType::Int64,
            };
            let a = array(&natural, name, values)?;
            arrow::compute::cast(&a, other).map_err(|e| SqlError::Value(e.to_string()))?
        }
    })
}

/// `v * 10^-from` at scale `to`, exactly (`None` when digits would be lost or it overflows).
fn rescale(v: i128, from: i8, to: i8) -> Option<i128> {
    if to >= from {
        v.checked_mul(10i128.checked_pow(u32::try_from(to - from).ok()?)?)
    } else {
        let d = 10i128.checked_pow(u32::try_from(from - to).ok()?)?;
        (v % d == 0).then_some(v / d)
    }
}

/// An exact decimal string (`-12.50`) at `scale`.
fn parse_decimal(t: &str, scale: i8) -> Option<i128> {
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let all = format!("{int}{frac}");
    if !all.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i128 = all.parse().ok()?;
    let v = rescale(v, i8::try_from(frac.len()).ok()?, scale)?;
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_exactly_at_their_scale() {
        assert_eq!(parse_decimal("12.5", 2), Some(1250));
        assert_eq!(parse_decimal("-0.07", 2), Some(-7));
        assert_eq!(parse_decimal("3", 2), Some(300));
        assert_eq!(parse_decimal("1.234", 2), None);
        assert_eq!(parse_decimal("1e5", 2), None);
        assert_eq!(parse_decimal("", 2), None);
    }
}
