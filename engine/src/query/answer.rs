//! The answer document, and the values in it: exact decimals as strings, counts as integers,
//! ratios as numbers, an empty cell as null.

use lattice_defs::Model;
use lattice_defs::model::{Agg, BinOp, Expr, MeasureId, MeasureKind};
use serde::Serialize;
use serde_json::Value as Json;

use crate::store::CellValue;

/// The answer to a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Answer {
    pub columns: Vec<Column>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
    /// Grand totals per measure (and per pivot column, `<member>|<measure>`), when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub totals: Option<serde_json::Map<String, Json>>,
    /// Sub-totals: the measures grouped by each leading part of `rows` (and, in a pivot, by
    /// all of `rows`: the row totals across columns), when totals are asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subtotals: Vec<Subtotal>,
    /// Present when small cells are suppressed for the principal: which values came back null
    /// because too few customers are behind them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppressed>,
    pub meta: Meta,
}

/// The cells (and totals) withheld from an answer because fewer than `min_customers`
/// distinct customers are behind them, or because they contain such a cell.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Suppressed {
    pub min_customers: u64,
    /// `[row, column]` of each null value in `rows` that hides a small cell.
    pub cells: Vec<[usize; 2]>,
    /// Keys of `totals` withheld.
    pub totals: Vec<String>,
    /// `[sub-total, row]` of each withheld row of `subtotals` (its measures are null).
    pub subtotals: Vec<[usize; 2]>,
}

/// One column of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Column {
    pub name: String,
    /// `level` or `measure`.
    pub kind: &'static str,
    /// For measures: `decimal` (exact, as a string), `integer` or `number`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<&'static str>,
}

/// Measures grouped by some of the query's levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subtotal {
    pub levels: Vec<String>,
    /// Members of `levels`, then the measures, in the query's order.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
}

/// How an answer was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Meta {
    /// `cuboid` when every fact was answered from a cuboid; `base` when some fact was
    /// aggregated from its base rows and none needed DataFusion; else `fallback`.
    pub source: &'static str,
    /// The levels of the cuboid that answered (the first fact's), `null` for the base rows and
    /// the fallback.
    pub cuboid: Option<Vec<String>>,
    /// Per fact the query reads: its path and cuboid.
    pub facts: Vec<FactMeta>,
    /// Rows before `offset` and `limit`.
    pub total_rows: usize,
    pub elapsed_us: u64,
    pub snapshot: u64,
    /// Whether this answer came from the result cache.
    pub cached: bool,
}

/// How one fact's aggregates were found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FactMeta {
    pub fact: String,
    pub source: &'static str,
    pub cuboid: Option<Vec<String>>,
    /// Cells of the cuboid scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cells: Option<usize>,
    /// With `explain`: every cuboid that could answer, smallest first, and why this path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explain: Option<Explain>,
}

impl FactMeta {
    /// This fact's path as a principal with a scope or suppression may see it: the cuboid's
    /// cells (and each candidate's) count the whole cube's groups, not the principal's, and
    /// the fallback's SQL names members by their codes in the whole cube (whose gaps count
    /// the members hidden), so they are left out.
    pub(crate) fn restricted(mut self) -> FactMeta {
        self.cells = None;
        if let Some(e) = &mut self.explain {
            for c in &mut e.candidates {
                c.cells = None;
            }
            e.sql = None;
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explain {
    /// The levels the cuboid must hold (grouped and filtered).
    pub needs: Vec<String>,
    pub candidates: Vec<Candidate>,
    pub reason: String,
    /// The SQL the fallback ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Candidate {
    pub cuboid: Vec<String>,
    /// The cuboid's cells (absent for a restricted principal: a cube-wide count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cells: Option<usize>,
}

/// A value while an answer is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum V {
    Null,
    /// `v * 10^-s`.
    Dec(i128, i8),
    Int(i128),
    Float(f64),
}

impl From<CellValue> for V {
    fn from(c: CellValue) -> V {
        match c {
            CellValue::Null => V::Null,
            CellValue::Count(n) => V::Int(i128::from(n)),
            CellValue::Decimal { value, scale } => V::Dec(value, scale),
        }
    }
}

impl V {
    pub fn as_f64(self) -> Option<f64> {
        match self {
            V::Null => None,
            V::Dec(v, s) => Some(v as f64 / 10f64.powi(i32::from(s))),
            V::Int(i) => Some(i as f64),
            V::Float(f) => Some(f),
        }
    }

    /// (value, scale) of an exact value.
    fn exact(self) -> Option<(i128, i8)> {
        match self {
            V::Dec(v, s) => Some((v, s)),
            V::Int(i) => Some((i, 0)),
            _ => None,
        }
    }

    fn float(f: f64) -> V {
        if f.is_finite() { V::Float(f) } else { V::Null }
    }

    fn from_exact(v: i128, s: i8, int: bool) -> V {
        if int { V::Int(v) } else { V::Dec(v, s) }
    }

    /// SQL arithmetic: NULL in, NULL out; exact for `+ - *` of exact values, a float for `/`
    /// (NULL when dividing by zero).
    pub fn binary(op: BinOp, a: V, b: V) -> V {
        if a == V::Null || b == V::Null {
            return V::Null;
        }
        let int = matches!((a, b), (V::Int(_), V::Int(_)));
        if let (Some((x, sx)), Some((y, sy)), false) = (a.exact(), b.exact(), op == BinOp::Div) {
            let s = sx.max(sy);
            let up = |v: i128, from: i8| v.checked_mul(10i128.checked_pow((s - from) as u32)?);
            let exact = match op {
                BinOp::Add => up(x, sx).zip(up(y, sy)).and_then(|(x, y)| x.checked_add(y)),
                BinOp::Sub => up(x, sx).zip(up(y, sy)).and_then(|(x, y)| x.checked_sub(y)),
                _ => None,
            };
            if let Some(v) = exact {
                return V::from_exact(v, s, int);
            }
            if op == BinOp::Mul
                && i32::from(sx) + i32::from(sy) <= 18
                && let Some(v) = x.checked_mul(y)
            {
                return V::from_exact(v, sx + sy, int);
            }
        }
        let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
            return V::Null;
        };
        match op {
            BinOp::Add => V::float(x + y),
            BinOp::Sub => V::float(x - y),
            BinOp::Mul => V::float(x * y),
            BinOp::Div if y == 0.0 => V::Null,
            BinOp::Div => V::float(x / y),
        }
    }

    /// The JSON of a value: decimals as exact strings, integers as numbers.
    pub fn json(self) -> Json {
        match self {
            V::Null => Json::Null,
            V::Dec(v, s) if s <= 0 => int_json(v),
            V::Dec(v, s) => Json::String(CellValue::Decimal { value: v, scale: s }.to_string()),
            V::Int(i) => int_json(i),
            V::Float(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        }
    }
}

fn int_json(i: i128) -> Json {
    if let Ok(i) = i64::try_from(i) {
        Json::from(i)
    } else if let Ok(u) = u64::try_from(i) {
        Json::from(u)
    } else {
        Json::String(i.to_string())
    }
}

/// Evaluates a measure from the aggregates of a row (`value(m)` of aggregate measures).
///
/// A derived measure over several facts (`interest_margin + fee_income - allocated_cost`)
/// reads a null sum, count or distinct count as 0: a row where one fact has no rows (a
/// customer with balances but no transactions that month) still has the others' part, as a
/// `COALESCE(x, 0)` over each fact's aggregate would give. It is null only when every input
/// is. Over one fact, derived measures follow SQL: null in, null out.
pub(crate) fn eval(model: &Model, m: MeasureId, value: &impl Fn(MeasureId) -> V) -> V {
    match &model.measures[m].kind {
        MeasureKind::Aggregate { .. } => value(m),
        MeasureKind::Derived(e) if model.measure_facts(m).len() > 1 => {
            let any = std::cell::Cell::new(false);
            let filled = |x: MeasureId| {
                let v = value(x);
                if v != V::Null {
                    any.set(true);
                    return v;
                }
                match &model.measures[x].kind {
                    MeasureKind::Aggregate {
                        agg: Agg::Sum | Agg::Count | Agg::Distinct,
                        ..
                    } => V::Int(0),
                    _ => V::Null,
                }
            };
            let v = eval_expr(model, e, &filled);
            if any.get() { v } else { V::Null }
        }
        MeasureKind::Derived(e) => eval_expr(model, e, value),
    }
}

/// A measure as it is, inside an expression (the outermost measure decided how nulls read).
fn eval_inner(model: &Model, m: MeasureId, value: &impl Fn(MeasureId) -> V) -> V {
    match &model.measures[m].kind {
        MeasureKind::Aggregate { .. } => value(m),
        MeasureKind::Derived(e) => eval_expr(model, e, value),
    }
}

fn eval_expr(model: &Model, e: &Expr, value: &impl Fn(MeasureId) -> V) -> V {
    match e {
        Expr::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => V::Int(*n as i128),
        Expr::Number(n) => V::float(*n),
        Expr::Neg(e) => match eval_expr(model, e, value) {
            V::Dec(v, s) => V::Dec(-v, s),
            V::Int(i) => V::Int(-i),
            V::Float(f) => V::Float(-f),
            V::Null => V::Null,
        },
        Expr::Measure(m) => eval_inner(model, *m, value),
        Expr::Binary(op, a, b) => {
            V::binary(*op, eval_expr(model, a, value), eval_expr(model, b, value))
        }
    }
}

/// The type a measure's values have in an answer.
pub(crate) fn measure_type(model: &Model, scales: &[i8], m: MeasureId) -> &'static str {
    match &model.measures[m].kind {
        MeasureKind::Aggregate {
            agg: Agg::Count | Agg::Distinct,
            ..
        } => "integer",
        MeasureKind::Aggregate { .. } if scales[m] <= 0 => "integer",
        MeasureKind::Aggregate { .. } => "decimal",
        MeasureKind::Derived(e) => expr_type(model, scales, e),
    }
}

fn expr_type(model: &Model, scales: &[i8], e: &Expr) -> &'static str {
    match e {
        Expr::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => "integer",
        Expr::Number(_) => "number",
        Expr::Neg(e) => expr_type(model, scales, e),
        Expr::Measure(m) => measure_type(model, scales, *m),
        Expr::Binary(BinOp::Div, ..) => "number",
        Expr::Binary(_, a, b) => match (expr_type(model, scales, a), expr_type(model, scales, b)) {
            ("number", _) | (_, "number") => "number",
            ("decimal", _) | (_, "decimal") => "decimal",
            _ => "integer",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_arithmetic_keeps_cents() {
        assert_eq!(
            V::binary(BinOp::Sub, V::Dec(1050, 2), V::Dec(25, 1)),
            V::Dec(800, 2)
        );
        assert_eq!(
            V::binary(BinOp::Add, V::Int(2), V::Dec(5, 2)),
            V::Dec(205, 2)
        );
        assert_eq!(V::binary(BinOp::Div, V::Int(1), V::Int(0)), V::Null);
        assert_eq!(V::binary(BinOp::Div, V::Int(1), V::Int(4)), V::Float(0.25));
        assert_eq!(V::binary(BinOp::Mul, V::Null, V::Int(4)), V::Null);
        assert_eq!(V::Dec(-5, 2).json(), Json::String("-0.05".into()));
        assert_eq!(V::Int(7).json(), Json::from(7));
    }

    #[test]
    fn derived_divides_and_gives_null_on_zero() {
        let model = lattice_defs::parse_str(
            "version: 1\ncube: t\nsources: { f: { path: f.csv } }\nfacts: { f: {} }\ndimensions: {}\n\
             measures:\n  amount: { agg: sum, column: a }\n  n: { agg: count }\n  avg: { expr: amount / n }\n",
            "t.yaml",
            std::path::Path::new("."),
        )
        .expect("valid");
        let cell = |amount: i128, n: i128| {
            move |m: MeasureId| if m == 0 { V::Dec(amount, 2) } else { V::Int(n) }
        };
        assert_eq!(eval(&model, 2, &cell(1000, 4)), V::Float(2.5));
        assert_eq!(eval(&model, 2, &cell(500, 0)), V::Null);
    }
}
