//! The planner rule that turns an aggregate over a cube table into one cube query node, and
//! `MEASURE()`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::source_as_provider;
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::Transformed;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{AggregateFunction, Between, InList, Like};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, BinaryExpr, Distinct, Expr, Extension, LogicalPlan, Operator,
    Signature, UserDefinedLogicalNodeCore, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::scalar::ScalarValue;
use lattice_defs::model::{Agg, MeasureKind};

use super::SqlError;
use super::table::{CubeColumn, CubeTable, aggregates_of, measure_words};
use crate::query::FilterOp;

/// `MEASURE(m)`: a measure's value as the cube defines it (a distinct count, a balance at the
/// closing period, a ratio of sums). Only the pushdown answers it; run as a DataFusion
/// aggregate it is an error.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Measure {
    signature: Signature,
}

impl Measure {
    pub fn new() -> Measure {
        Measure {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for Measure {
    fn default() -> Measure {
        Measure::new()
    }
}

impl AggregateUDFImpl for Measure {
    fn name(&self) -> &str {
        "measure"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Err(SqlError::Unsupported(
            "MEASURE(m) is answered by a cube: use it in an aggregate directly over a cube \
             table, grouped by its level columns"
                .into(),
        )
        .into_df())
    }
}

/// A level filter pushed into the cube query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The level's API name (`region.province`).
    pub level: String,
    pub op: FilterOp,
    pub values: Vec<String>,
}

/// One cube query in a plan: the levels grouped (one per group column), the measure of each
/// aggregate column, the level filters. Its schema is the aggregate's it replaced.
#[derive(Debug, Clone)]
pub struct CubeScan {
    pub cube: String,
    /// The level of each group column, in the aggregate's order.
    pub levels: Vec<String>,
    /// The measure of each aggregate column, in order.
    pub measures: Vec<String>,
    pub filters: Vec<Pushed>,
    pub schema: DFSchemaRef,
}

impl CubeScan {
    fn key(&self) -> String {
        format!(
            "{} {:?} {:?} {:?}",
            self.cube, self.levels, self.measures, self.filters
        )
    }
}

impl PartialEq for CubeScan {
    fn eq(&self, other: &CubeScan) -> bool {
        self.key() == other.key() && self.schema == other.schema
    }
}

impl Eq for CubeScan {}

impl Hash for CubeScan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialOrd for CubeScan {
    fn partial_cmp(&self, other: &CubeScan) -> Option<Ordering> {
        match self.key().cmp(&other.key()) {
            Ordering::Equal if self.schema != other.schema => None,
            o => Some(o),
        }
    }
}

impl UserDefinedLogicalNodeCore for CubeScan {
    fn name(&self) -> &str {
        "CubeScan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CubeScan: {}", describe(self))
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// `cube=bank_crm levels=[..] measures=[..] filters=[..]`, for EXPLAIN.
pub fn describe(s: &CubeScan) -> String {
    let filters: Vec<String> = s
        .filters
        .iter()
        .map(|f| format!("{} {} {:?}", f.level, f.op.name(), f.values))
        .collect();
    format!(
        "cube={} levels=[{}] measures=[{}] filters=[{}]",
        s.cube,
        s.levels.join(", "),
        s.measures.join(", "),
        filters.join(", ")
    )
}

/// The rule: an `Aggregate` (or a `DISTINCT` of level columns) directly over a cube table,
/// through filters and aliases, becomes a [`CubeScan`]. First among the optimizer's rules, so
/// it sees the plan as the SQL wrote it.
#[derive(Debug, Default)]
pub struct CubePushdown;

impl OptimizerRule for CubePushdown {
    fn name(&self) -> &str {
        "lattice_cube_pushdown"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let scan = match &plan {
            LogicalPlan::Aggregate(agg) => match cube_input(&agg.input)? {
                Some((table, predicates)) => {
                    let mut levels = Vec::new();
                    for e in &agg.group_expr {
                        levels.push(group_level(&table, e)?);
                    }
                    let mut measures = Vec::new();
                    for e in &agg.aggr_expr {
                        measures.push(aggregate_measure(&table, e)?);
                    }
                    Some(CubeScan {
                        cube: table.name.clone(),
                        levels,
                        measures,
                        filters: pushed_filters(&table, &predicates)?,
                        schema: agg.schema.clone(),
                    })
                }
                None => None,
            },
            LogicalPlan::Distinct(Distinct::All(input)) => match distinct_columns(input)? {
                Some((table, exprs, predicates)) => {
                    let mut levels = Vec::new();
                    for e in &exprs {
                        levels.push(group_level(&table, e)?);
                    }
                    Some(CubeScan {
                        cube: table.name.clone(),
                        levels,
                        measures: Vec::new(),
                        filters: pushed_filters(&table, &predicates)?,
                        schema: plan.schema().clone(),
                    })
                }
                None => None,
            },
            _ => None,
        };
        Ok(match scan {
            Some(s) => Transformed::yes(LogicalPlan::Extension(Extension { node: Arc::new(s) })),
            None => Transformed::no(plan),
        })
    }
}

/// The cube table under `plan` through filters and aliases, and the filters' predicates.
fn cube_input(plan: &LogicalPlan) -> Result<Option<(Arc<CubeTable>, Vec<Expr>)>> {
    let mut predicates = Vec::new();
    let mut plan = plan;
    loop {
        match plan {
            LogicalPlan::Filter(f) => {
                predicates.push(f.predicate.clone());
                plan = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => plan = &a.input,
            LogicalPlan::TableScan(scan) => {
                let Ok(provider) = source_as_provider(&scan.source) else {
                    return Ok(None);
                };
                let Some(table) = cube_table(provider) else {
                    return Ok(None);
                };
                predicates.extend(scan.filters.iter().cloned());
                return Ok(Some((table, predicates)));
            }
            _ => return Ok(None),
        }
    }
}

fn cube_table(provider: Arc<dyn TableProvider>) -> Option<Arc<CubeTable>> {
    let any: Arc<dyn std::any::Any + Send + Sync> = provider;
    any.downcast::<CubeTable>().ok()
}

/// A cube table, the expressions selected over it, the predicates of its filters.
type CubeInput = (Arc<CubeTable>, Vec<Expr>, Vec<Expr>);

/// `SELECT DISTINCT a, b FROM cube`: the projection's columns over a cube table.
fn distinct_columns(plan: &LogicalPlan) -> Result<Option<CubeInput>> {
    let LogicalPlan::Projection(p) = plan else {
        return Ok(None);
    };
    match cube_input(&p.input)? {
        Some((table, predicates)) => Ok(Some((table, p.expr.clone(), predicates))),
        None => Ok(None),
    }
}

fn unsupported(message: String) -> DataFusionError {
    SqlError::Unsupported(message).into_df()
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        e => e,
    }
}

/// The column an expression reads as it is (through casts the type checker added).
fn column_name(e: &Expr) -> Option<&str> {
    match strip_alias(e) {
        Expr::Column(c) => Some(c.name.as_str()),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// The level of a `GROUP BY` expression: a level column.
fn group_level(table: &CubeTable, e: &Expr) -> Result<String> {
    let name = column_name(e).ok_or_else(|| {
        unsupported(format!(
            "GROUP BY {e} over cube {}: group by level columns only; expressions over them \
             belong in an outer query",
            table.name
        ))
    })?;
    match table.columns.find(name) {
        Some(CubeColumn::Level(l)) => Ok(l.clone()),
        Some(CubeColumn::Measure(m)) => Err(unsupported(format!(
            "GROUP BY {m}: {m} is a measure of cube {}; group by level columns and aggregate \
             measures with MEASURE({m})",
            table.name
        ))),
        None => Err(unsupported(format!(
            "GROUP BY {name}: no such column in cube {}",
            table.name
        ))),
    }
}

/// The measure an aggregate expression asks for: `MEASURE(m)`, or the measure's own aggregate
/// (`SUM` of a sum or count, `MIN` of a minimum, `MAX` of a maximum).
fn aggregate_measure(table: &CubeTable, e: &Expr) -> Result<String> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = strip_alias(e) else {
        return Err(unsupported(format!(
            "{e} over cube {}: only aggregates of measures are answered by the cube",
            table.name
        )));
    };
    let f = func.name().to_lowercase();
    let model = &table.session.cube().model;
    let arg = match params.args.as_slice() {
        [a] => column_name(a),
        _ => None,
    };
    let Some(arg) = arg else {
        let example = model
            .measures
            .iter()
            .find(|m| {
                matches!(
                    m.kind,
                    MeasureKind::Aggregate {
                        agg: Agg::Count,
                        ..
                    }
                )
            })
            .map_or(String::new(), |m| {
                format!(", e.g. MEASURE({}) for a count of rows", m.name)
            });
        return Err(unsupported(format!(
            "{e} over cube {}: aggregate one measure column{example}",
            table.name
        )));
    };
    let measure = match table.columns.find(arg) {
        Some(CubeColumn::Measure(m)) => m.clone(),
        Some(CubeColumn::Level(_)) => {
            return Err(unsupported(format!(
                "{e}: {arg} is a level of cube {}; group by it, or count members with a \
                 distinct-count measure",
                table.name
            )));
        }
        None => {
            return Err(unsupported(format!(
                "{e}: no such column in cube {}",
                table.name
            )));
        }
    };
    if params.distinct || params.filter.is_some() || !params.order_by.is_empty() {
        return Err(unsupported(format!(
            "{e}: DISTINCT, FILTER and ORDER BY inside an aggregate are not answered by cube \
             {}; use MEASURE({measure})",
            table.name
        )));
    }
    if f == "measure" {
        return Ok(measure);
    }
    let m = model
        .measure(&measure)
        .expect("a measure column names a measure");
    let fits = aggregates_of(model, m);
    if fits.contains(&f.as_str()) {
        return Ok(measure);
    }
    let instead = match fits.first() {
        Some(g) => format!("MEASURE({measure}) or {}({measure})", g.to_uppercase()),
        None => format!("MEASURE({measure})"),
    };
    Err(unsupported(format!(
        "{}({measure}) would be wrong: {measure} is {}, which {} does not combine; use \
         {instead}",
        f.to_uppercase(),
        measure_words(model, m),
        f.to_uppercase()
    )))
}

/// The level filters of `WHERE`: each conjunct one filter on a level column.
fn pushed_filters(table: &CubeTable, predicates: &[Expr]) -> Result<Vec<Pushed>> {
    let mut out = Vec::new();
    for p in predicates {
        conjuncts(table, p, &mut out)?;
    }
    Ok(out)
}

fn conjuncts(table: &CubeTable, e: &Expr, out: &mut Vec<Pushed>) -> Result<()> {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            conjuncts(table, left, out)?;
            conjuncts(table, right, out)
        }
        Expr::IsNotNull(inner) if column_name(inner).is_some() => {
            // Level columns are never null (a missing key is the member `unknown`).
            level_of(table, inner, e)?;
            Ok(())
        }
        e => {
            out.push(filter(table, e)?);
            Ok(())
        }
    }
}

/// One predicate as a level filter.
fn filter(table: &CubeTable, e: &Expr) -> Result<Pushed> {
    let cannot = || {
        unsupported(format!(
            "WHERE {e} on cube {}: a filter on a cube is one of =, <>, IN, NOT IN, BETWEEN, \
             LIKE 'prefix%', ILIKE '%text%', or ORs of = on one level, between a level column \
             and text, joined by AND",
            table.name
        ))
    };
    let pushed = |level: String, op: FilterOp, values: Vec<String>| Pushed { level, op, values };
    for c in e.column_refs() {
        if let Some(CubeColumn::Measure(m)) = table.columns.find(&c.name) {
            return Err(unsupported(format!(
                "WHERE {e}: {m} is a measure of cube {}; measures are known after \
                 aggregation, so filter them in HAVING",
                table.name
            )));
        }
    }
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right })
            if matches!(op, Operator::Eq | Operator::NotEq) =>
        {
            let (col, lit) = match (column_name(left), column_name(right)) {
                (Some(_), None) => (left, right),
                (None, Some(_)) => (right, left),
                _ => return Err(cannot()),
            };
            let level = level_of(table, col, e)?;
            let value = text(lit).ok_or_else(cannot)?;
            Ok(match op {
                Operator::Eq => pushed(level, FilterOp::Eq, vec![value]),
                _ => pushed(level, FilterOp::NotIn, vec![value]),
            })
        }
        Expr::BinaryExpr(BinaryExpr {
            op: Operator::Or, ..
        }) => {
            let mut level = None;
            let mut values = Vec::new();
            let mut stack = vec![e];
            while let Some(x) = stack.pop() {
                match x {
                    Expr::BinaryExpr(BinaryExpr {
                        left,
                        op: Operator::Or,
                        right,
                    }) => {
                        stack.push(right);
                        stack.push(left);
                    }
                    x => {
                        let f = filter(table, x)?;
                        if !matches!(f.op, FilterOp::Eq | FilterOp::In)
                            || level.get_or_insert_with(|| f.level.clone()) != &f.level
                        {
                            return Err(cannot());
                        }
                        values.extend(f.values);
                    }
                }
            }
            Ok(pushed(level.ok_or_else(cannot)?, FilterOp::In, values))
        }
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let level = level_of(table, expr, e)?;
            let values = list.iter().map(text).collect::<Option<Vec<_>>>();
            let values = values.ok_or_else(cannot)?;
            let op = if *negated {
                FilterOp::NotIn
            } else {
                FilterOp::In
            };
            Ok(pushed(level, op, values))
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) => {
            let level = level_of(table, expr, e)?;
            let (lo, hi) = (
                text(low).ok_or_else(cannot)?,
                text(high).ok_or_else(cannot)?,
            );
            Ok(pushed(level, FilterOp::Between, vec![lo, hi]))
        }
        Expr::Like(Like {
            negated: false,
            expr,
            pattern,
            escape_char: None,
            case_insensitive,
        }) => {
            let level = level_of(table, expr, e)?;
            let p = text(pattern).ok_or_else(cannot)?;
            let wild = |s: &str| s.contains(['%', '_']);
            if !case_insensitive && !wild(&p) {
                return Ok(pushed(level, FilterOp::Eq, vec![p]));
            }
            if let Some(prefix) = p.strip_suffix('%')
                && !case_insensitive
                && !wild(prefix)
            {
                return Ok(pushed(level, FilterOp::Prefix, vec![prefix.to_string()]));
            }
            if let Some(inner) = p.strip_prefix('%').and_then(|p| p.strip_suffix('%'))
                && *case_insensitive
                && !wild(inner)
            {
                return Ok(pushed(level, FilterOp::Search, vec![inner.to_string()]));
            }
            Err(cannot())
        }
        _ => Err(cannot()),
    }
}

/// The level a filter's column is; a measure or another expression is an error.
fn level_of(table: &CubeTable, col: &Expr, whole: &Expr) -> Result<String> {
    let Some(name) = column_name(col) else {
        return Err(unsupported(format!(
            "WHERE {whole} on cube {}: filters compare a level column itself",
            table.name
        )));
    };
    match table.columns.find(name) {
        Some(CubeColumn::Level(l)) => Ok(l.clone()),
        Some(CubeColumn::Measure(m)) => Err(unsupported(format!(
            "WHERE {whole}: {m} is a measure of cube {}; measures are known after \
             aggregation, so filter them in HAVING",
            table.name
        ))),
        None => Err(unsupported(format!(
            "WHERE {whole}: no such column in cube {}",
            table.name
        ))),
    }
}

/// A literal as a member name: text as it is, numbers and dates as they print.
fn text(e: &Expr) -> Option<String> {
    match strip_alias(e) {
        Expr::Literal(v, _) => match v {
            _ if v.is_null() => None,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
            v => Some(v.to_string()),
        },
        Expr::Cast(c) => text(&c.expr),
        Expr::TryCast(c) => text(&c.expr),
        _ => None,
    }
}
