//! Resolution: a [`Query`] checked against a built cube, with names turned into indices and
//! filter values into sets of member codes.

use lattice_defs::diag::{suggest, suggest_many};
use lattice_defs::model::{LevelKind, LevelRef, MeasureId, Model};
use roaring::RoaringBitmap;
use std::collections::HashMap;
use std::sync::Arc;

use super::error::QueryError;
use super::spec::{Direction, FilterOp, HavingOp, Query};
use crate::access::Suppress;
use crate::store::Cube;
pub use crate::store::ResolvedFilter;

/// Close members suggested for a value that is not one.
const SUGGESTIONS: usize = 3;

/// What a query orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderKey {
    Measure(MeasureId),
    Level(LevelRef),
}

/// A share column: `measure` over its total at `of`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedShare {
    pub measure: MeasureId,
    pub of: Vec<LevelRef>,
    pub name: String,
}

/// A query whose every name the cube knows.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub measures: Vec<MeasureId>,
    pub rows: Vec<LevelRef>,
    pub columns: Vec<LevelRef>,
    /// Several filters on one level intersect.
    pub filters: Vec<ResolvedFilter>,
    pub having: Vec<(MeasureId, HavingOp, f64)>,
    pub order: Vec<(OrderKey, Direction)>,
    pub limit: Option<u64>,
    pub offset: u64,
    pub totals: bool,
    pub compare: Option<(LevelRef, u32)>,
    pub explain: bool,
    pub shares: Vec<ResolvedShare>,
    /// The principal's scope: filters applied to every aggregate and never lifted.
    pub(crate) scope: Vec<ResolvedFilter>,
    /// Small-cell suppression in force for the principal.
    pub(crate) suppress: Option<Suppress>,
}

/// Most names of each kind one query may list. A cube has at most 256 measures and 64 levels
/// ([`lattice_defs::limits`]), so a longer list repeats itself; refusing it first keeps a
/// hostile query from costing more than reading it.
const MAX_MEASURES: usize = lattice_defs::limits::MAX_MEASURES;
const MAX_GROUPED: usize = lattice_defs::limits::MAX_LEVELS;
const MAX_CONDITIONS: usize = 256;

/// Most rows a `limit` or an `offset` may name. No answer comes near it (a member code is a
/// `u32`, and the server caps answers far lower), and keeping both under it keeps
/// `offset + limit` inside the `Int64` that DataFusion's `LIMIT` takes: `offset` at `i64::MAX`
/// reached its optimizer and failed there as an internal error.
pub const MAX_PAGE_ROWS: u64 = u32::MAX as u64;

/// `limit` and `offset` within [`MAX_PAGE_ROWS`], each named in the error. Every request
/// that pages (a query, a drill-through, an analysis, a search run) calls it as it is read,
/// before a server caps `limit` at its row limit, so an absurd number is refused rather than
/// quietly cut; resolution checks again for callers of the Rust API.
pub fn check_page(limit: Option<u64>, offset: u64) -> Result<(), QueryError> {
    let named = [
        ("rows by `limit`", limit),
        ("rows skipped by `offset`", Some(offset)),
    ];
    for (what, found) in named {
        if let Some(found) = found.filter(|n| *n > MAX_PAGE_ROWS) {
            return Err(QueryError::TooLarge {
                what,
                found: usize::try_from(found).unwrap_or(usize::MAX),
                limit: MAX_PAGE_ROWS as usize,
            });
        }
    }
    Ok(())
}

/// The lists of `query` within the limits above.
fn check_size(query: &Query) -> Result<(), QueryError> {
    let grouped = query.rows.len() + query.columns.len();
    for (what, found, limit) in [
        ("measures", query.measures.len(), MAX_MEASURES),
        ("levels on rows and columns", grouped, MAX_GROUPED),
        ("filters", query.filters.len(), MAX_CONDITIONS),
        ("having conditions", query.having.len(), MAX_CONDITIONS),
        ("order keys", query.order.len(), MAX_CONDITIONS),
        ("shares", query.shares.len(), MAX_CONDITIONS),
    ] {
        if found > limit {
            return Err(QueryError::TooLarge { what, found, limit });
        }
    }
    check_page(query.limit, query.offset)
}

/// Checks `query` against `cube` and resolves it; the first problem found is the error.
pub fn resolve(query: &Query, cube: &Cube) -> Result<Resolved, QueryError> {
    resolve_visible(query, cube, &HashMap::new())
}

/// [`resolve`] for a principal who sees only `visible` members of some levels: any other
/// member is unknown, exactly as a name the cube does not have.
pub(crate) fn resolve_visible(
    query: &Query,
    cube: &Cube,
    visible: &HashMap<LevelRef, Arc<RoaringBitmap>>,
) -> Result<Resolved, QueryError> {
    check_size(query)?;
    if let Some(name) = query.segments.first() {
        return Err(QueryError::BadFilter {
            level: format!("segment '{name}'"),
            message: "segments are saved searches; run the query through a server or \
                      `lattice_engine::search::expand_segments`, which knows them"
                .into(),
        });
    }
    let model = cube.model();
    if query.measures.is_empty() {
        return Err(QueryError::NoMeasures);
    }
    let measures = query
        .measures
        .iter()
        .map(|m| measure_named(model, m))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = levels_named(model, &query.rows)?;
    let columns = levels_named(model, &query.columns)?;
    let grouped = grouped_levels(model, &rows, &columns)?;
    let filters = resolve_filters(query, cube, visible)?;
    check_measures_vary(model, &measures, &grouped, &filters)?;
    let having = resolve_having(query, model, &measures)?;
    let order = resolve_order(query, model, &measures, &columns, &grouped)?;
    let compare = resolve_compare(query, cube, &grouped)?;
    let shares = resolve_shares(query, cube, &measures, &grouped)?;
    Ok(Resolved {
        measures,
        rows,
        columns,
        filters,
        having,
        order,
        limit: query.limit,
        offset: query.offset,
        totals: query.totals,
        compare,
        explain: query.explain,
        shares,
        scope: Vec::new(),
        suppress: None,
    })
}

/// The level called `name`, or an unknown-level error suggesting close names.
fn level_named(model: &Model, name: &str) -> Result<LevelRef, QueryError> {
    model.level(name).ok_or_else(|| QueryError::UnknownLevel {
        name: name.to_string(),
        suggestion: suggest(name, model.level_names().iter().map(String::as_str)),
    })
}

/// The measure called `name`, or an unknown-measure error suggesting close names.
fn measure_named(model: &Model, name: &str) -> Result<MeasureId, QueryError> {
    model
        .measure(name)
        .ok_or_else(|| QueryError::UnknownMeasure {
            name: name.to_string(),
            suggestion: suggest(name, model.measures.iter().map(|m| m.name.as_str())),
        })
}

/// The levels called `names`, in order; the first unknown name is the error.
fn levels_named(model: &Model, names: &[String]) -> Result<Vec<LevelRef>, QueryError> {
    names.iter().map(|l| level_named(model, l)).collect()
}

/// The levels grouped by, rows then columns, each with its place; a level named twice is
/// refused.
fn grouped_levels(
    model: &Model,
    rows: &[LevelRef],
    columns: &[LevelRef],
) -> Result<Vec<(LevelRef, &'static str)>, QueryError> {
    let grouped: Vec<(LevelRef, &'static str)> = rows
        .iter()
        .map(|l| (*l, "rows"))
        .chain(columns.iter().map(|l| (*l, "columns")))
        .collect();
    for (i, (l, place)) in grouped.iter().enumerate() {
        if let Some((_, first)) = grouped[..i].iter().find(|(x, _)| x == l) {
            return Err(QueryError::LevelTwice {
                level: model.level_name(*l),
                first,
                second: place,
            });
        }
    }
    Ok(grouped)
}

/// The query's filters as sets of member codes, each within the members visible at its level.
fn resolve_filters(
    query: &Query,
    cube: &Cube,
    visible: &HashMap<LevelRef, Arc<RoaringBitmap>>,
) -> Result<Vec<ResolvedFilter>, QueryError> {
    let mut filters = Vec::new();
    for f in &query.filters {
        let l = level_named(cube.model(), &f.level)?;
        filters.push(ResolvedFilter {
            level: l,
            members: filter_members(
                cube,
                l,
                &f.level,
                f.op,
                f.value.as_deref(),
                f.values.as_deref(),
                visible.get(&l).map(|v| v.as_ref()),
            )?,
        });
    }
    Ok(filters)
}

/// Every measure must vary by every level the query groups or filters by.
fn check_measures_vary(
    model: &Model,
    measures: &[MeasureId],
    grouped: &[(LevelRef, &'static str)],
    filters: &[ResolvedFilter],
) -> Result<(), QueryError> {
    for &m in measures {
        for l in grouped
            .iter()
            .map(|(l, _)| *l)
            .chain(filters.iter().map(|f| f.level))
        {
            if !model.measure_varies_by(m, l) {
                return Err(QueryError::MeasureDoesNotVary {
                    measure: model.measures[m].name.clone(),
                    level: model.level_name(l),
                    dimension: model.dimensions[l.dim].name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The `having` conditions, each on a measure the query asks for.
fn resolve_having(
    query: &Query,
    model: &Model,
    measures: &[MeasureId],
) -> Result<Vec<(MeasureId, HavingOp, f64)>, QueryError> {
    let mut having = Vec::new();
    for h in &query.having {
        let m = measure_named(model, &h.measure)?;
        if !measures.contains(&m) {
            return Err(QueryError::HavingNotAsked {
                measure: h.measure.clone(),
            });
        }
        having.push((m, h.op, h.value));
    }
    Ok(having)
}

/// The order keys: a measure asked for, or a level on rows (never one on columns).
fn resolve_order(
    query: &Query,
    model: &Model,
    measures: &[MeasureId],
    columns: &[LevelRef],
    grouped: &[(LevelRef, &'static str)],
) -> Result<Vec<(OrderKey, Direction)>, QueryError> {
    let mut order = Vec::new();
    for o in &query.order {
        let key = match (model.measure(&o.by), model.level(&o.by)) {
            (Some(m), _) if measures.contains(&m) => OrderKey::Measure(m),
            (_, Some(l)) if columns.contains(&l) => {
                return Err(QueryError::OrderByColumn { by: o.by.clone() });
            }
            (_, Some(l)) if grouped.iter().any(|(g, _)| *g == l) => OrderKey::Level(l),
            _ => return Err(QueryError::BadOrder { by: o.by.clone() }),
        };
        order.push((key, o.dir));
    }
    Ok(order)
}

/// The comparison, if any: an ordered level grouped by, and a lag of at least 1.
fn resolve_compare(
    query: &Query,
    cube: &Cube,
    grouped: &[(LevelRef, &'static str)],
) -> Result<Option<(LevelRef, u32)>, QueryError> {
    let Some(c) = &query.compare else {
        return Ok(None);
    };
    let l = level_named(cube.model(), &c.level)?;
    let bad = |message: &str| QueryError::BadCompare {
        level: c.level.clone(),
        message: message.to_string(),
    };
    if !is_ordered(cube, l) {
        return Err(bad("compare needs an ordered level (time or bands)"));
    }
    if !grouped.iter().any(|(g, _)| *g == l) {
        return Err(bad("the level must be on rows or columns"));
    }
    if c.lag == 0 {
        return Err(bad("lag must be at least 1"));
    }
    Ok(Some((l, c.lag)))
}

/// The share columns: each of a measure asked for, over levels grouped by (or above one in
/// its hierarchy), under a column name not yet taken.
fn resolve_shares(
    query: &Query,
    cube: &Cube,
    measures: &[MeasureId],
    grouped: &[(LevelRef, &'static str)],
) -> Result<Vec<ResolvedShare>, QueryError> {
    let model = cube.model();
    let mut shares: Vec<ResolvedShare> = Vec::new();
    for s in &query.shares {
        let bad = |message: String| QueryError::BadShare {
            measure: s.measure.clone(),
            message,
        };
        let m = measure_named(model, &s.measure)?;
        if !measures.contains(&m) {
            return Err(bad("ask for the measure in `measures` too".into()));
        }
        let mut of = Vec::new();
        for name in &s.of {
            let l = level_named(model, name)?;
            let reachable = grouped.iter().any(|(g, _)| {
                *g == l || (g.dim == l.dim && cube.parent_map(l.dim, g.level, l.level).is_some())
            });
            if !reachable {
                return Err(bad(format!(
                    "'{name}' must be on rows or columns, or above a level there in its hierarchy"
                )));
            }
            if of.contains(&l) {
                return Err(bad(format!("'{name}' is named twice")));
            }
            of.push(l);
        }
        let name = s.name.clone().unwrap_or_else(|| {
            if s.of.is_empty() {
                format!("{}_share", s.measure)
            } else {
                format!("{}_share_of_{}", s.measure, s.of.join("_"))
            }
        });
        let taken = query.measures.contains(&name) || shares.iter().any(|x| x.name == name);
        if taken || name.is_empty() {
            return Err(bad(format!(
                "the column name '{name}' is taken; give the share a `name`"
            )));
        }
        shares.push(ResolvedShare {
            measure: m,
            of,
            name,
        });
    }
    Ok(shares)
}

/// Time levels and bands have an order a comparison or a range can follow.
fn is_ordered(cube: &Cube, l: LevelRef) -> bool {
    matches!(
        cube.model().dimensions[l.dim].levels[l.level].kind,
        LevelKind::Time(_) | LevelKind::Bucket(_)
    )
}

fn filter_members(
    cube: &Cube,
    l: LevelRef,
    name: &str,
    op: FilterOp,
    value: Option<&str>,
    values: Option<&[String]>,
    visible: Option<&RoaringBitmap>,
) -> Result<RoaringBitmap, QueryError> {
    let dict = cube.members(l);
    let sees = |c: u32| visible.is_none_or(|v| v.contains(c));
    let bad = |message: String| QueryError::BadFilter {
        level: name.to_string(),
        message,
    };
    let code = |v: &str| {
        dict.code(v)
            .filter(|c| sees(*c))
            .ok_or_else(|| QueryError::UnknownMember {
                level: name.to_string(),
                value: v.to_string(),
                suggestions: suggest_many(
                    v,
                    dict.names
                        .iter()
                        .enumerate()
                        .filter(|(c, _)| sees(*c as u32))
                        .map(|(_, n)| n.as_str()),
                    SUGGESTIONS,
                ),
            })
    };
    let one = || value.ok_or_else(|| bad(format!("`{}` needs `value`", op.name())));
    let many = || match values {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(bad(format!(
            "`{}` needs a non-empty `values` list",
            op.name()
        ))),
    };
    let all = || match visible {
        Some(v) => v.clone(),
        None => (0..dict.len() as u32).collect::<RoaringBitmap>(),
    };
    let set = match op {
        FilterOp::Eq => std::iter::once(code(one()?)?).collect(),
        FilterOp::In => many()?.iter().map(|v| code(v)).collect::<Result<_, _>>()?,
        FilterOp::NotIn => {
            let out: RoaringBitmap = many()?.iter().map(|v| code(v)).collect::<Result<_, _>>()?;
            all() - out
        }
        FilterOp::Between => {
            let v = many()?;
            let [low, high] = v else {
                return Err(bad(format!(
                    "`between` needs exactly two values [low, high], not {}",
                    v.len()
                )));
            };
            if !is_ordered(cube, l) {
                return Err(bad(
                    "`between` needs an ordered level (time or bands)".into()
                ));
            }
            let (lo, hi) = (code(low)?, code(high)?);
            if lo > hi {
                return Err(bad(format!(
                    "'{low}' comes after '{high}'; write [low, high]"
                )));
            }
            (lo..=hi).collect()
        }
        FilterOp::Prefix => {
            let p = one()?;
            dict.names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.starts_with(p))
                .map(|(i, _)| i as u32)
                .collect()
        }
        FilterOp::Search => {
            let s = one()?.to_lowercase();
            dict.names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.to_lowercase().contains(&s))
                .map(|(i, _)| i as u32)
                .collect()
        }
    };
    Ok(match visible {
        Some(v) => set & v,
        None => set,
    })
}
