//! Measures: aggregations, derived expressions, cycles between them.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::{DefError, Pos};
use crate::expr::{self, ParsedExpr};
use crate::limits::MAX_EXPANDED_TERMS;
use crate::model::*;
use crate::raw::*;

pub(super) fn measures(
    raw: &RawCube,
    ctx: &mut Ctx<'_>,
    facts: &[&str],
    measure_names: &[&str],
) -> Option<Vec<Measure>> {
    let mut out = Vec::new();
    let before = ctx.diags.len();
    for (name, m) in &raw.measures.0 {
        let base = format!("measures.{}", name.value);
        let format = m.format.as_ref().and_then(|f| {
            let parsed = Format::parse(&f.value);
            if parsed.is_none() {
                ctx.invalid(
                    pos(f),
                    format!("{base}.format"),
                    format!(
                        "unknown format '{}' (money, integer, number, percent)",
                        f.value
                    ),
                );
            }
            parsed
        });
        let kind = match (&m.expr, &m.agg) {
            (Some(e), None) => {
                for (field, p) in [
                    ("fact", m.fact.as_ref().map(pos)),
                    ("column", m.column.as_ref().map(pos)),
                    ("over_time", m.over_time.as_ref().map(pos)),
                ] {
                    if let Some(p) = p {
                        ctx.invalid(
                            p,
                            format!("{base}.{field}"),
                            format!("a derived measure (`expr`) has no `{field}`: it is computed from other measures"),
                        );
                    }
                }
                derived(e, &base, ctx, measure_names).map(MeasureKind::Derived)
            }
            (None, Some(agg)) => aggregate(m, agg, &base, ctx, facts),
            (Some(e), Some(_)) => {
                ctx.invalid(
                    pos(e),
                    &base,
                    "a measure has either `agg` (with `fact`) or `expr`, not both",
                );
                None
            }
            (None, None) => {
                ctx.invalid(
                    pos(name),
                    &base,
                    "a measure needs `agg` (sum, count, min, max, distinct) or `expr`",
                );
                None
            }
        };
        if let Some(kind) = kind {
            out.push(Measure {
                name: name.value.clone(),
                kind,
                format,
                description: m.description.clone(),
                pos: pos(name),
            });
        }
    }
    (ctx.diags.len() == before).then_some(out)
}

fn aggregate(
    m: &RawMeasure,
    agg: &Spanned<String>,
    base: &str,
    ctx: &mut Ctx<'_>,
    facts: &[&str],
) -> Option<MeasureKind> {
    let parsed = Agg::parse(&agg.value);
    if parsed.is_none() {
        ctx.report(
            pos(agg),
            format!("{base}.agg"),
            DefError::UnsupportedAggregation {
                agg: agg.value.clone(),
            },
        );
    }
    let fact = match &m.fact {
        Some(f) => {
            let i = facts.iter().position(|n| *n == f.value);
            if i.is_none() {
                ctx.unknown(
                    pos(f),
                    format!("{base}.fact"),
                    "fact",
                    &f.value,
                    Some("facts".into()),
                    facts.iter().copied(),
                );
            }
            i
        }
        None if facts.len() == 1 => Some(0),
        None => {
            ctx.invalid(
                pos(agg),
                base,
                format!(
                    "which fact table? add `fact:` (one of: {})",
                    facts.join(", ")
                ),
            );
            None
        }
    };
    let over_time = match &m.over_time {
        None => OverTime::Additive,
        Some(o) => match o.value.as_str() {
            "last" if parsed == Some(Agg::Distinct) => {
                ctx.invalid(
                    pos(o),
                    format!("{base}.over_time"),
                    "`over_time: last` applies to sum, count, min and max, not to distinct counts",
                );
                OverTime::Additive
            }
            "last" => OverTime::Last,
            "sum" => OverTime::Additive,
            other => {
                ctx.invalid(
                    pos(o),
                    format!("{base}.over_time"),
                    format!(
                        "unknown over_time '{other}' (use `last` for balances, or leave it out)"
                    ),
                );
                OverTime::Additive
            }
        },
    };
    let agg = parsed?;
    if agg != Agg::Count && m.column.is_none() {
        ctx.report(
            pos(agg_pos(m)),
            base,
            DefError::MissingColumn {
                agg: agg_name(agg).into(),
            },
        );
        return None;
    }
    let fact = fact?;
    Some(MeasureKind::Aggregate {
        fact,
        agg,
        column: m.column.as_ref().map(|c| ColumnRef {
            table: facts[fact].to_string(),
            column: c.value.clone(),
            pos: pos(c),
            path: format!("{base}.column"),
        }),
        over_time,
    })
}

fn agg_pos(m: &RawMeasure) -> &Spanned<String> {
    m.agg.as_ref().expect("called only for aggregate measures")
}

fn agg_name(a: Agg) -> &'static str {
    match a {
        Agg::Sum => "sum",
        Agg::Count => "count",
        Agg::Min => "min",
        Agg::Max => "max",
        Agg::Distinct => "distinct",
    }
}

/// The position of byte `offset` of a string scalar, accounting for an opening quote.
fn offset_pos(ctx: &Ctx<'_>, at: Pos, offset: usize) -> Pos {
    let quoted = ctx
        .text
        .lines()
        .nth(at.line.saturating_sub(1) as usize)
        .and_then(|line| line.chars().nth(at.column.saturating_sub(1) as usize))
        .is_some_and(|c| c == '"' || c == '\'');
    Pos::new(at.line, at.column + offset as u64 + u64::from(quoted))
}

fn derived(e: &Spanned<String>, base: &str, ctx: &mut Ctx<'_>, measures: &[&str]) -> Option<Expr> {
    let path = format!("{base}.expr");
    let parsed = match expr::parse(&e.value) {
        Ok(p) => p,
        Err(err) => {
            let p = offset_pos(ctx, pos(e), err.offset);
            ctx.report(
                p,
                path,
                DefError::Expression {
                    message: err.message,
                },
            );
            return None;
        }
    };
    fn resolve(
        p: &ParsedExpr,
        ctx: &mut Ctx<'_>,
        at: Pos,
        path: &str,
        measures: &[&str],
    ) -> Option<Expr> {
        Some(match p {
            ParsedExpr::Name(n, off) => match measures.iter().position(|m| m == n) {
                Some(i) => Expr::Measure(i),
                None => {
                    let p = offset_pos(ctx, at, *off);
                    ctx.unknown(p, path, "measure", n, None, measures.iter().copied());
                    return None;
                }
            },
            ParsedExpr::Number(v) => Expr::Number(*v),
            ParsedExpr::Neg(inner) => Expr::Neg(Box::new(resolve(inner, ctx, at, path, measures)?)),
            ParsedExpr::Binary(op, a, b) => {
                let a = resolve(a, ctx, at, path, measures);
                let b = resolve(b, ctx, at, path, measures);
                Expr::Binary(*op, Box::new(a?), Box::new(b?))
            }
        })
    }
    resolve(&parsed, ctx, pos(e), &path, measures)
}

/// Reports every derived measure that reaches itself, with the cycle it is on: the user may
/// break the cycle at any of them.
pub(super) fn derived_cycles(measures: &[Measure], raw: &RawCube, ctx: &mut Ctx<'_>) {
    let deps: Vec<Vec<usize>> = measures
        .iter()
        .map(|m| {
            let mut v = Vec::new();
            if let MeasureKind::Derived(e) = &m.kind {
                e.measures(&mut v);
            }
            v
        })
        .collect();
    let mut cyclic = false;
    for start in 0..measures.len() {
        if let Some(cycle) = path_back_to(start, &deps) {
            cyclic = true;
            let names = cycle.iter().map(|&i| measures[i].name.clone()).collect();
            let expr_pos = raw.measures.0[start]
                .1
                .expr
                .as_ref()
                .map_or(measures[start].pos, pos);
            ctx.report(
                expr_pos,
                format!("measures.{}.expr", measures[start].name),
                DefError::DerivedCycle {
                    measure: measures[start].name.clone(),
                    cycle: names,
                },
            );
        }
    }
    if !cyclic {
        expansion_limits(measures, raw, ctx);
    }
}

/// Evaluating a derived measure evaluates every derived measure it names, each time it names
/// it: `m2 = m1 + m1, m3 = m2 + m2, ...` doubles the work at each step. Each derived measure's
/// expanded size (its terms, with every derived measure named replaced by its own) stays under
/// [`MAX_EXPANDED_TERMS`]. Needs the measures free of cycles.
fn expansion_limits(measures: &[Measure], raw: &RawCube, ctx: &mut Ctx<'_>) {
    fn terms(e: &Expr, sizes: &[Option<u64>]) -> u64 {
        match e {
            Expr::Number(_) => 1,
            Expr::Measure(m) => sizes[*m].unwrap_or(1),
            Expr::Neg(e) => terms(e, sizes).saturating_add(1),
            Expr::Binary(_, a, b) => terms(a, sizes)
                .saturating_add(terms(b, sizes))
                .saturating_add(1),
        }
    }
    // Sizes in dependency order: a measure once every derived measure it names has one.
    let mut sizes: Vec<Option<u64>> = measures
        .iter()
        .map(|m| match m.kind {
            MeasureKind::Derived(_) => None,
            MeasureKind::Aggregate { .. } => Some(1),
        })
        .collect();
    loop {
        let mut progressed = false;
        for (i, m) in measures.iter().enumerate() {
            let MeasureKind::Derived(e) = &m.kind else {
                continue;
            };
            let mut named = Vec::new();
            e.measures(&mut named);
            if sizes[i].is_none() && named.iter().all(|n| sizes[*n].is_some()) {
                sizes[i] = Some(terms(e, &sizes));
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    for (i, m) in measures.iter().enumerate() {
        if let Some(n) = sizes[i].filter(|n| *n > MAX_EXPANDED_TERMS) {
            let at = raw.measures.0[i].1.expr.as_ref().map_or(m.pos, pos);
            ctx.report(
                at,
                format!("measures.{}.expr", m.name),
                DefError::TooMany {
                    what: "terms in the expanded expression",
                    found: n,
                    limit: MAX_EXPANDED_TERMS,
                },
            );
        }
    }
}

/// A path `start -> ... -> start` through `deps`, if there is one (depth-first).
fn path_back_to(start: usize, deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut seen = vec![false; deps.len()];
    let mut stack = vec![vec![start]];
    while let Some(path) = stack.pop() {
        let at = *path.last()?;
        for &next in &deps[at] {
            let mut p = path.clone();
            p.push(next);
            if next == start {
                return Some(p);
            }
            if !seen[next] {
                seen[next] = true;
                stack.push(p);
            }
        }
    }
    None
}

/// A metric bucket's measure must be one the entity's facts carry (a customer's deposit total
/// needs balances that vary by customer).
pub(super) fn metric_buckets_vary(model: &Model, raw: &RawCube, ctx: &mut Ctx<'_>) {
    for (di, d) in model.dimensions.iter().enumerate() {
        for (li, l) in d.levels.iter().enumerate() {
            if let LevelKind::Bucket(Bucket {
                source: BucketSource::Metric { measure, .. },
                ..
            }) = &l.kind
            {
                let m = &model.measures[*measure];
                let ok = matches!(m.kind, MeasureKind::Aggregate { .. })
                    && model.measure_varies_by(*measure, LevelRef { dim: di, level: li });
                if !ok {
                    let metric_pos = raw.dimensions.0[di]
                        .1
                        .levels
                        .as_ref()
                        .and_then(|ls| ls.0.iter().find(|(k, _)| k.value == l.name))
                        .and_then(|(_, lv)| lv.bucket.as_ref())
                        .and_then(|b| b.value.metric.as_ref())
                        .map_or(l.pos, pos);
                    ctx.invalid(
                        metric_pos,
                        format!("dimensions.{}.levels.{}.bucket.metric", d.name, l.name),
                        format!(
                            "metric '{}' must be an aggregate measure whose fact varies by '{}'",
                            m.name, d.name
                        ),
                    );
                }
            }
        }
    }
}
