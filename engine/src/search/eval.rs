//! A search's condition to a set of entity members: the atoms are evaluated one by one (in
//! document order), then combined by set algebra in one synchronous pass over the tree.

use lattice_defs::model::{
    Agg, BucketSource, DimensionKind, FactId, LevelKind, LevelRef, MeasureId, MeasureKind,
    UNKNOWN_MEMBER,
};
use roaring::RoaringBitmap;
use serde_json::Value as Json;

use super::{Condition, Members, Period, Search, SearchError};
use crate::analytics::{Ctx, only};
use crate::query::{
    Filter, FilterOp, HavingOp, QueryError, V, closing_periods, cmp_v, collect_leaves, member_sets,
};

/// Conditions nest at most this deep.
const MAX_DEPTH: usize = 32;

pub(super) async fn evaluate(ctx: &mut Ctx<'_>, search: &Search) -> Result<Members, SearchError> {
    let entity = ctx.entity_level(&search.entity, "`entity`")?;
    let mut atoms = Vec::new();
    collect(&search.condition, "where".into(), 0, &mut atoms)?;
    super::privacy::refuse_pinned(ctx, &atoms)?;
    let mut sets = Vec::with_capacity(atoms.len());
    let mut sources = Vec::with_capacity(atoms.len());
    for (at, c) in &atoms {
        let (set, source) = if c.level.is_some() {
            member_atom(ctx, entity, c, at).await?
        } else {
            measure_atom(ctx, entity, c, at).await?
        };
        sets.push(set);
        sources.push(source);
    }
    let universe = universe(ctx, entity).await?;
    let mut next = 0;
    let mut least = u64::MAX;
    let members = combine(&search.condition, &sets, &mut next, &universe, &mut least);
    let withheld = ctx.applied.suppress.as_ref().is_some_and(|s| least < s.min);
    let unlisted = ctx.applied.suppress.is_some() && atoms.iter().any(|(_, c)| c.level.is_none());
    Ok(Members {
        entity,
        members,
        universe,
        facts: std::mem::take(&mut ctx.facts),
        sources,
        withheld,
        unlisted,
    })
}

/// Every member of `entity` but `unknown`, restricted to those the principal may see.
async fn universe(ctx: &Ctx<'_>, entity: LevelRef) -> Result<RoaringBitmap, SearchError> {
    let dict = ctx.cube.members(entity);
    let mut all: RoaringBitmap = (0..dict.len() as u32).collect();
    if let Some(u) = dict.code(UNKNOWN_MEMBER) {
        all.remove(u);
    }
    if let Some(v) = crate::query::visible(ctx.cube, entity, &ctx.applied).await? {
        all &= &*v;
    }
    Ok(all)
}

/// Checks the tree's shape and lists its atoms in pre-order, each with its path.
fn collect<'c>(
    c: &'c Condition,
    at: String,
    depth: usize,
    out: &mut Vec<(String, &'c Condition)>,
) -> Result<(), SearchError> {
    let bad = |message: String| SearchError::BadCondition {
        at: at.clone(),
        message,
    };
    if depth > MAX_DEPTH {
        return Err(bad(format!("conditions nest at most {MAX_DEPTH} deep")));
    }
    let kinds = [
        ("all", c.all.is_some()),
        ("any", c.any.is_some()),
        ("not", c.not.is_some()),
        ("level", c.level.is_some()),
        ("measure", c.measure.is_some()),
    ];
    let present: Vec<&str> = kinds.iter().filter(|k| k.1).map(|k| k.0).collect();
    if present.len() != 1 {
        return Err(bad(format!(
            "a condition has exactly one of `all`, `any`, `not`, `level` or `measure`, not {}",
            if present.is_empty() {
                "none".to_string()
            } else {
                present.join(" and ")
            }
        )));
    }
    let atom_keys = [
        ("op", c.op.is_some()),
        ("value", c.value.is_some()),
        ("values", c.values.is_some()),
        ("filters", !c.filters.is_empty()),
        ("period", c.period.is_some()),
    ];
    let combinator = present[0];
    match (&c.all, &c.any, &c.not) {
        (Some(cs), _, _) | (_, Some(cs), _) => {
            if cs.is_empty() {
                return Err(bad(format!("`{combinator}` needs at least one condition")));
            }
            reject_atom_keys(&atom_keys, combinator, &at)?;
            for (i, sub) in cs.iter().enumerate() {
                collect(sub, format!("{at}.{combinator}[{i}]"), depth + 1, out)?;
            }
        }
        (_, _, Some(sub)) => {
            reject_atom_keys(&atom_keys, combinator, &at)?;
            collect(sub, format!("{at}.not"), depth + 1, out)?;
        }
        _ => {
            if c.op.is_none() {
                return Err(bad(format!("a {combinator} atom needs `op`")));
            }
            if c.level.is_some() && !c.filters.is_empty() {
                return Err(bad(
                    "`filters` belong to measure atoms; combine member atoms with `all`".into(),
                ));
            }
            if c.measure.is_some() && c.values.is_some() {
                return Err(bad(
                    "a measure atom compares with one number, `value`, not `values`".into(),
                ));
            }
            out.push((at, c));
        }
    }
    Ok(())
}

fn reject_atom_keys(keys: &[(&str, bool)], kind: &str, at: &str) -> Result<(), SearchError> {
    match keys.iter().find(|k| k.1) {
        Some((k, _)) => Err(SearchError::BadCondition {
            at: at.to_string(),
            message: format!("`{k}` belongs to an atom, not to `{kind}`"),
        }),
        None => Ok(()),
    }
}

/// The tree's set within `universe`, with the atoms' sets taken in pre-order. `least` keeps
/// the fewest members of any set formed on the way and of any one branch's step in an `all`
/// or `any` (what suppression checks, `super::privacy`).
fn combine(
    c: &Condition,
    sets: &[RoaringBitmap],
    next: &mut usize,
    universe: &RoaringBitmap,
    least: &mut u64,
) -> RoaringBitmap {
    let set = if let Some(cs) = &c.all {
        let parts: Vec<RoaringBitmap> = cs
            .iter()
            .map(|c| combine(c, sets, next, universe, least))
            .collect();
        let mut it = parts.iter();
        let first = it.next().cloned().unwrap_or_default();
        let set = it.fold(first, |a, b| a & b);
        *least = (*least).min(super::privacy::least_step_of_all(&parts, &set));
        set
    } else if let Some(cs) = &c.any {
        let parts: Vec<RoaringBitmap> = cs
            .iter()
            .map(|c| combine(c, sets, next, universe, least))
            .collect();
        let set = parts.iter().fold(RoaringBitmap::new(), |a, b| a | b);
        *least = (*least).min(super::privacy::least_step_of_any(&parts, &set));
        set
    } else if let Some(sub) = &c.not {
        universe - combine(sub, sets, next, universe, least)
    } else {
        *next += 1;
        &sets[*next - 1] & universe
    };
    *least = (*least).min(set.len());
    set
}

/// A member atom: the members with facts in the level's members (in the periods).
async fn member_atom(
    ctx: &mut Ctx<'_>,
    entity: LevelRef,
    c: &Condition,
    at: &str,
) -> Result<(RoaringBitmap, &'static str), SearchError> {
    let name = c.level.as_deref().unwrap_or_default();
    let level = ctx.level(name)?;
    let model = ctx.model();
    if matches!(
        model.dimensions[level.dim].levels[level.level].kind,
        LevelKind::Time(_)
    ) {
        return Err(SearchError::BadCondition {
            at: at.to_string(),
            message: format!("'{name}' is a time level; say which periods with `period`"),
        });
    }
    let op: FilterOp = parse_op(
        c.op.as_deref().unwrap_or_default(),
        at,
        "eq, in, not_in, between, prefix, search",
    )?;
    let value = match &c.value {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let filter = Filter {
        level: name.to_string(),
        op,
        value,
        values: c.values.clone(),
    };
    let vias = vias(ctx, entity, level, at)?;
    let mut set = RoaringBitmap::new();
    let mut source = "member_sets";
    for (via, fact) in vias {
        let mut f = ctx
            .filters(via, &[entity], std::slice::from_ref(&filter))
            .await?;
        if let Some(p) = &c.period {
            let (plevel, periods) = periods(ctx, p, fact, at)?;
            let finest = ctx
                .cube
                .index
                .finest_time
                .ok_or_else(|| QueryError::Engine {
                    message: "a cube with a time level has a finest time level".into(),
                })?;
            // A member's band in a period is its band at the period's closing period.
            let closes: Vec<u32> = periods
                .iter()
                .filter_map(|&p| {
                    let mut with = f.clone();
                    with.push(only(plevel, [p]));
                    closing_periods(ctx.cube, fact, &[plevel], &with).and_then(|c| c.min())
                })
                .collect();
            f.push(only(finest, closes));
        }
        match member_sets(ctx.cube, fact, via, entity, &f) {
            Some((s, _)) => set |= s,
            None => {
                source = "grouped";
                for key in ctx.values(via, &[entity], &f).await?.keys() {
                    set.insert(key[0]);
                }
            }
        }
    }
    Ok((set, source))
}

/// A measure atom: the members whose measure (over the filters and periods) compares true.
async fn measure_atom(
    ctx: &mut Ctx<'_>,
    entity: LevelRef,
    c: &Condition,
    at: &str,
) -> Result<(RoaringBitmap, &'static str), SearchError> {
    let m = ctx.measure(c.measure.as_deref().unwrap_or_default())?;
    let op: HavingOp = parse_op(
        c.op.as_deref().unwrap_or_default(),
        at,
        "gt, ge, lt, le, eq, ne",
    )?;
    let threshold = number(c.value.as_ref(), at)?;
    let mut f = ctx.filters(m, &[entity], &c.filters).await?;
    let fact = measure_fact(ctx, m);
    if let Some(p) = &c.period {
        let fact = fact.ok_or_else(|| SearchError::BadPeriod {
            at: at.to_string(),
            message: "the measure has no facts to take periods from".into(),
        })?;
        let (plevel, periods) = periods(ctx, p, fact, at)?;
        f.push(only(plevel, periods));
    }
    // "Has any fact": the distinct set of the entity's key, straight from a cuboid.
    let any_fact = matches!(op, HavingOp::Gt) && cmp_v(threshold, V::Int(0)).is_eq()
        || matches!(op, HavingOp::Ge) && cmp_v(threshold, V::Int(1)).is_eq();
    if let (true, Some(fact)) = (any_fact, fact)
        && let Some(via) = has_fact_measure(ctx, m, fact, entity)
        && let Some((s, _)) = member_sets(ctx.cube, fact, via, entity, &f)
    {
        return Ok((s, "member_sets"));
    }
    let values = ctx.values(m, &[entity], &f).await?;
    let set = values
        .iter()
        .filter(|(_, v)| **v != V::Null && holds(op, cmp_v(**v, threshold)))
        .map(|(k, _)| k[0])
        .collect();
    Ok((set, "grouped"))
}

fn holds(op: HavingOp, o: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        HavingOp::Gt => o == Greater,
        HavingOp::Ge => o != Less,
        HavingOp::Lt => o == Less,
        HavingOp::Le => o != Greater,
        HavingOp::Eq => o == Equal,
        HavingOp::Ne => o != Equal,
    }
}

fn parse_op<T: serde::de::DeserializeOwned>(
    op: &str,
    at: &str,
    valid: &str,
) -> Result<T, SearchError> {
    serde_json::from_value(Json::String(op.to_string())).map_err(|_| SearchError::BadCondition {
        at: at.to_string(),
        message: format!("unknown op '{op}' (one of {valid})"),
    })
}

/// A threshold as an exact value where it is written as one (`200000`, `0.5`, `"1e3"` is a
/// float).
fn number(v: Option<&Json>, at: &str) -> Result<V, SearchError> {
    let bad = || SearchError::BadCondition {
        at: at.to_string(),
        message: "a measure atom needs a number `value`".into(),
    };
    let text = match v {
        Some(Json::Number(n)) => n.to_string(),
        Some(Json::String(s)) => s.trim().to_string(),
        _ => return Err(bad()),
    };
    if let Some(v) = exact(&text) {
        return Ok(v);
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(V::Float)
        .ok_or_else(bad)
}

fn exact(text: &str) -> Option<V> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 18 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    let digits = if neg { -digits } else { digits };
    Some(if frac.is_empty() {
        V::Int(digits)
    } else {
        V::Dec(digits, frac.len() as i8)
    })
}

/// The fact of a measure's first aggregate leaf.
fn measure_fact(ctx: &Ctx<'_>, m: MeasureId) -> Option<FactId> {
    let model = ctx.model();
    let mut leaves = Vec::new();
    collect_leaves(model, m, &mut leaves);
    leaves.iter().find_map(|&l| match model.measures[l].kind {
        MeasureKind::Aggregate { fact, .. } => Some(fact),
        MeasureKind::Derived(_) => None,
    })
}

/// For a measure that is positive exactly where a member has a fact (a count of fact rows, a
/// distinct count of the entity's keys): the distinct measure of its fact whose sets list
/// those members.
fn has_fact_measure(
    ctx: &Ctx<'_>,
    m: MeasureId,
    fact: FactId,
    entity: LevelRef,
) -> Option<MeasureId> {
    let model = ctx.model();
    let counts_rows = matches!(
        model.measures[m].kind,
        MeasureKind::Aggregate {
            agg: Agg::Count,
            column: None,
            ..
        }
    );
    if !counts_rows && !counts_entity(ctx, m, entity) {
        return None;
    }
    (0..model.measures.len()).find(|&d| {
        counts_entity(ctx, d, entity)
            && matches!(model.measures[d].kind, MeasureKind::Aggregate { fact: f, .. } if f == fact)
    })
}

/// Whether `m` counts the distinct keys of `entity`'s dimension.
fn counts_entity(ctx: &Ctx<'_>, m: MeasureId, entity: LevelRef) -> bool {
    let model = ctx.model();
    let DimensionKind::Table { key, .. } = &model.dimensions[entity.dim].kind else {
        return false;
    };
    matches!(&model.measures[m].kind, MeasureKind::Aggregate { agg: Agg::Distinct, column: Some(c), .. } if c.column == key.column)
}

/// The distinct measures over the entity's key whose sets say who has facts in `level`'s
/// members: on the fact of the band's metric for a band over a metric (deposit bands: the
/// balances' `customers`), else on every fact carrying both.
fn vias(
    ctx: &Ctx<'_>,
    entity: LevelRef,
    level: LevelRef,
    at: &str,
) -> Result<Vec<(MeasureId, FactId)>, SearchError> {
    let model = ctx.model();
    let candidates: Vec<(MeasureId, FactId)> = model
        .measures
        .iter()
        .enumerate()
        .filter_map(|(m, meas)| match &meas.kind {
            MeasureKind::Aggregate { fact, .. }
                if counts_entity(ctx, m, entity)
                    && model.facts[*fact].direct.contains(&entity.dim)
                    && model.fact_has_dimension(*fact, level.dim) =>
            {
                Some((m, *fact))
            }
            _ => None,
        })
        .collect();
    let metric_fact = match &model.dimensions[level.dim].levels[level.level].kind {
        LevelKind::Bucket(b) => match &b.source {
            BucketSource::Metric { measure, .. } => match model.measures[*measure].kind {
                MeasureKind::Aggregate { fact, .. } => Some(fact),
                MeasureKind::Derived(_) => None,
            },
            BucketSource::Column(_) => None,
        },
        _ => None,
    };
    let mut out: Vec<(MeasureId, FactId)> = match metric_fact {
        Some(f) if candidates.iter().any(|c| c.1 == f) => {
            candidates.into_iter().filter(|c| c.1 == f).collect()
        }
        _ => candidates,
    };
    // One set per fact is enough.
    out.sort_by_key(|c| c.1);
    out.dedup_by_key(|c| c.1);
    if out.is_empty() {
        return Err(SearchError::BadCondition {
            at: at.to_string(),
            message: format!(
                "no fact carries both '{}' and a distinct count of '{}'",
                model.level_name(level),
                model.level_name(entity)
            ),
        });
    }
    Ok(out)
}

/// The periods of `p` on its level for `fact`.
fn periods(
    ctx: &Ctx<'_>,
    p: &Period,
    fact: FactId,
    at: &str,
) -> Result<(LevelRef, Vec<u32>), SearchError> {
    let bad = |message: String| SearchError::BadPeriod {
        at: at.to_string(),
        message,
    };
    let level = ctx.time_level(&p.level, "`period`")?;
    if p.last == 0 {
        return Err(bad("`last` counts periods; it is at least 1".into()));
    }
    let end = if p.value == "latest" {
        let cube = ctx.cube;
        let finest = cube
            .index
            .finest_time
            .ok_or_else(|| bad("the cube has no time level".into()))?;
        let max = cube.index.present[fact].max().ok_or_else(|| {
            bad(format!(
                "'{}' has no facts in any period",
                ctx.model().facts[fact].name
            ))
        })?;
        if level == finest {
            max
        } else {
            cube.parent_map(finest.dim, finest.level, level.level)
                .map(|m| m[max as usize])
                .ok_or_else(|| bad(format!("'{}' is not above the finest time level", p.level)))?
        }
    } else {
        ctx.period(level, &p.value)?
    };
    let start = end.saturating_sub(p.last - 1);
    Ok((level, (start..=end).collect()))
}
