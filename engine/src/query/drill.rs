//! Drill-through: the members of an entity level (say `customer.id`) behind a cell — the same
//! filters as a query — found by uniting the roaring sets of a distinct measure over the
//! entity's key (`active_customers`, `customers`) in the smallest covering cuboid, not by a
//! rescan. Paged in member order, or by a measure, whose values come from a query grouped by
//! the level and restricted to the members found.

use std::time::Instant;

use lattice_defs::model::{
    Agg, ColumnRef, DimensionKind, FactId, LevelRef, MeasureId, MeasureKind,
};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::answer::{Answer, Column};
use super::error::QueryError;
use super::exec::{aggregate, execute_resolved, level_members_from};
use super::group::AggRequest;
use super::resolve::{OrderKey, Resolved, ResolvedFilter, check_page, resolve_visible};
use super::scan::{derive, filter_masks, passes};
use super::session::Dataset;
use super::spec::{Direction, Filter, Order, Query};
use super::visible::{restrict, visible_for};
use crate::access::Applied;
use crate::store::MeasureColumn;
use crate::store::encoding::KeyValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Members listed when a drill-through names no `limit`.
pub const DEFAULT_DRILL_LIMIT: u64 = 100;

/// A drill-through request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DrillQuery {
    /// The level whose members to list (`customer.id`).
    pub level: String,
    /// The cell: the same filters as a query.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Measures to show per member (under the same filters).
    #[serde(default)]
    pub measures: Vec<String>,
    /// By a measure of `measures` or by the level; default member order.
    #[serde(default)]
    pub order: Vec<Order>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

impl DrillQuery {
    /// Reads a drill-through document; a page beyond [`super::MAX_PAGE_ROWS`] is refused.
    pub fn from_json(text: &str) -> Result<DrillQuery, QueryError> {
        let q: DrillQuery = serde_json::from_str(text).map_err(|e| QueryError::Malformed {
            message: e.to_string(),
        })?;
        check_page(q.limit, q.offset)?;
        Ok(q)
    }
}

/// The members behind a cell.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillAnswer {
    pub level: String,
    /// Members behind the cell (before paging).
    pub total: u64,
    pub columns: Vec<Column>,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
    pub meta: DrillMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DrillMeta {
    /// `member_sets` (united roaring sets of a cuboid), or the path of the grouped query that
    /// listed them: `cuboid`, `base` (the base rows) or `fallback` (DataFusion).
    pub source: &'static str,
    /// The distinct measure whose sets were used.
    pub via_measure: String,
    pub cuboid: Option<Vec<String>>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// Lists the members of `q.level` behind the cell `q.filters`, under a principal's applied access: the scope joins the cell's filters,
/// filters see only visible members, and with suppression a cell of too few customers lists
/// no one, as an empty cell (and each member's values are suppressed as any small cell is).
pub(crate) async fn drill_through_restricted(
    cube: &Dataset,
    q: &DrillQuery,
    applied: &Applied,
) -> Result<DrillAnswer, QueryError> {
    if applied.is_unrestricted() {
        return drill(cube, q, None).await;
    }
    drill(cube, q, Some(applied)).await
}

async fn drill(
    cube: &Dataset,
    q: &DrillQuery,
    applied: Option<&Applied>,
) -> Result<DrillAnswer, QueryError> {
    let start = Instant::now();
    check_page(q.limit, q.offset)?;
    let visible = match applied {
        Some(a) => visible_for(cube, a, q.filters.iter().map(|f| f.level.as_str())).await?,
        None => HashMap::new(),
    };
    let model = &cube.model;
    let (level, key) = drill_level(cube, q)?;
    let entity_measures = entity_measures(cube, q, level, key)?;
    let (via, fact, filters) = choose_measure(cube, q, &visible, applied, &entity_measures)?;
    let r_req = resolve_requested(cube, q, &visible, applied)?;
    let small = too_few(cube, applied, fact, &filters).await?;

    // The members, from the sets of the smallest cuboid that covers the filters.
    let (members, source, cuboid) = match member_sets(cube, fact, via, level, &filters) {
        Some((set, c)) => (set, "member_sets", Some(c)),
        None => {
            // The level's groups under the filters (a cuboid holding the level, else the base
            // rows, else SQL).
            let req = AggRequest {
                fact,
                levels: &[level],
                filters: &filters,
                measures: &[via],
            };
            let (codes, path) = level_members_from(cube, &req).await?;
            (codes, path, None)
        }
    };
    let members = if small { RoaringBitmap::new() } else { members };
    let total = members.len();
    let limit = q.limit.unwrap_or(DEFAULT_DRILL_LIMIT);
    let desc = q
        .order
        .iter()
        .find(|o| o.by == q.level)
        .is_some_and(|o| o.dir == Direction::Desc);

    let mut columns = vec![Column {
        name: q.level.clone(),
        kind: "level",
        ty: None,
    }];
    let rows: Vec<Vec<Json>> = match r_req {
        None => page(&members, desc, q.offset, limit)
            .into_iter()
            .map(|c| vec![Json::String(cube.member_name(level, c).to_string())])
            .collect(),
        Some(r) => {
            let page = Page {
                members: &members,
                desc,
                limit,
            };
            measure_rows(cube, q, level, r, page, &mut columns).await?
        }
    };
    Ok(DrillAnswer {
        level: q.level.clone(),
        total,
        columns,
        rows,
        meta: DrillMeta {
            source,
            via_measure: model.measures[via].name.clone(),
            cuboid: cuboid
                .map(|ls: Vec<LevelRef>| ls.iter().map(|l| model.level_name(*l)).collect()),
            elapsed_us: start.elapsed().as_micros() as u64,
            snapshot: cube.version,
        },
    })
}

/// A drill-through's refusal of `q`, naming its level.
fn bad_drill(q: &DrillQuery, message: String) -> QueryError {
    QueryError::BadDrill {
        level: q.level.clone(),
        message,
    }
}

/// `query` resolved as the principal sees it: only `visible` members, and within the scope of
/// `applied`.
fn resolve_for(
    cube: &Dataset,
    query: &Query,
    visible: &HashMap<LevelRef, Arc<RoaringBitmap>>,
    applied: Option<&Applied>,
) -> Result<Resolved, QueryError> {
    let mut r = resolve_visible(query, cube, visible)?;
    if let Some(a) = applied {
        restrict(cube, &mut r, a)?;
    }
    Ok(r)
}

/// The level drilled into and the key column of its dimension, which must be an entity
/// (a table dimension), not time.
fn drill_level<'m>(
    cube: &'m Dataset,
    q: &DrillQuery,
) -> Result<(LevelRef, &'m ColumnRef), QueryError> {
    let model = &cube.model;
    let level = model
        .level(&q.level)
        .ok_or_else(|| QueryError::UnknownLevel {
            name: q.level.clone(),
            suggestion: lattice_defs::diag::suggest(
                &q.level,
                model.level_names().iter().map(String::as_str),
            ),
        })?;
    let DimensionKind::Table { key, .. } = &model.dimensions[level.dim].kind else {
        return Err(bad_drill(
            q,
            "drill-through lists the members of an entity such as customer.id, not time".into(),
        ));
    };
    Ok((level, key))
}

/// Distinct measures over the entity's key, on facts that carry it; at least one.
fn entity_measures(
    cube: &Dataset,
    q: &DrillQuery,
    level: LevelRef,
    key: &ColumnRef,
) -> Result<Vec<(MeasureId, FactId)>, QueryError> {
    let model = &cube.model;
    let found: Vec<(MeasureId, FactId)> = model
        .measures
        .iter()
        .enumerate()
        .filter_map(|(m, meas)| match &meas.kind {
            MeasureKind::Aggregate {
                fact,
                agg: Agg::Distinct,
                column: Some(c),
                ..
            } if c.column == key.column && model.facts[*fact].direct.contains(&level.dim) => {
                Some((m, *fact))
            }
            _ => None,
        })
        .collect();
    if found.is_empty() {
        return Err(bad_drill(
            q,
            format!(
                "no distinct measure counts the keys of '{}' ({}); drill-through needs one",
                model.dimensions[level.dim].name, key.column
            ),
        ));
    }
    Ok(found)
}

/// The measure whose sets are used, its fact, and the cell's filters (the scope included):
/// the filters (and measures) are resolved as a query would be with each candidate, and the
/// first whose fact varies by every filter level is chosen.
fn choose_measure(
    cube: &Dataset,
    q: &DrillQuery,
    visible: &HashMap<LevelRef, Arc<RoaringBitmap>>,
    applied: Option<&Applied>,
    candidates: &[(MeasureId, FactId)],
) -> Result<(MeasureId, FactId, Vec<ResolvedFilter>), QueryError> {
    let mut last_err = None;
    for &(m, fact) in candidates {
        let probe = Query {
            measures: vec![cube.model.measures[m].name.clone()],
            filters: q.filters.clone(),
            ..Query::default()
        };
        match resolve_for(cube, &probe, visible, applied) {
            Ok(r) => {
                let mut filters = r.filters;
                filters.extend(r.scope);
                return Ok((m, fact, filters));
            }
            Err(e @ (QueryError::MeasureDoesNotVary { .. } | QueryError::Forbidden { .. })) => {
                last_err = Some(e)
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| bad_drill(q, "no fact varies by the filters".into())))
}

/// The query of the measures shown per member, grouped by the level (`None` when none are
/// asked for); the order may name only the level or one of those measures.
fn resolve_requested(
    cube: &Dataset,
    q: &DrillQuery,
    visible: &HashMap<LevelRef, Arc<RoaringBitmap>>,
    applied: Option<&Applied>,
) -> Result<Option<Resolved>, QueryError> {
    let requested = Query {
        measures: q.measures.clone(),
        rows: vec![q.level.clone()],
        filters: q.filters.clone(),
        order: q.order.clone(),
        ..Query::default()
    };
    let r_req = if q.measures.is_empty() {
        None
    } else {
        Some(resolve_for(cube, &requested, visible, applied)?)
    };
    for o in &q.order {
        let ok = o.by == q.level || q.measures.contains(&o.by);
        if !ok {
            return Err(QueryError::BadOrder { by: o.by.clone() });
        }
    }
    Ok(r_req)
}

/// Whether suppression hides the cell: a cell of too few customers lists no one, and answers
/// exactly as an empty cell does (a flag would say that 1 to 4 customers are there).
async fn too_few(
    cube: &Dataset,
    applied: Option<&Applied>,
    fact: FactId,
    filters: &[ResolvedFilter],
) -> Result<bool, QueryError> {
    let counter = applied
        .and_then(|a| a.suppress.as_ref())
        .and_then(|s| Some((s.min, s.counts.iter().find(|(f, _)| *f == fact)?.1)));
    let Some((min, count)) = counter else {
        return Ok(false);
    };
    let req = AggRequest {
        fact,
        levels: &[],
        filters,
        measures: &[count],
    };
    let (grouped, _) = aggregate(cube, &req, false).await?;
    let n: u64 = (0..grouped.len())
        .map(|g| match grouped.accs[0].value(g) {
            crate::store::CellValue::Count(n) => n,
            _ => 0,
        })
        .sum();
    Ok(n > 0 && n < min)
}

/// The members behind the cell and how a page of them is taken.
#[derive(Clone, Copy)]
struct Page<'a> {
    members: &'a RoaringBitmap,
    /// Member order descending.
    desc: bool,
    limit: u64,
}

/// The page of rows when measures are shown: each member with its values from `r` (the
/// requested query), the measure columns appended to `columns`.
async fn measure_rows(
    cube: &Dataset,
    q: &DrillQuery,
    level: LevelRef,
    mut r: Resolved,
    page_of: Page<'_>,
    columns: &mut Vec<Column>,
) -> Result<Vec<Vec<Json>>, QueryError> {
    let Page {
        members,
        desc,
        limit,
    } = page_of;
    let by_measure = q
        .order
        .iter()
        .any(|o| o.by != q.level && q.measures.contains(&o.by));
    // Values for the page's members (or, to order by a measure, for all of them).
    let scope = if by_measure {
        members.clone()
    } else {
        page(members, desc, q.offset, limit).into_iter().collect()
    };
    r.filters.push(ResolvedFilter {
        level,
        members: scope.clone(),
    });
    if !by_measure {
        r.order = vec![(
            OrderKey::Level(level),
            if desc {
                Direction::Desc
            } else {
                Direction::Asc
            },
        )];
    }
    r.limit = None;
    r.offset = 0;
    let answer = execute_resolved(cube, &r).await?;
    columns.extend(answer.columns.iter().skip(1).cloned());
    let rows = with_missing_members(cube, q, level, answer, &scope, desc, by_measure);
    Ok(if by_measure {
        rows.into_iter()
            .skip(usize::try_from(q.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .collect()
    } else {
        rows
    })
}

/// The rows of `answer` with a row of nulls for each member of `scope` it lacks, in order:
/// by measure, a row whose ordered values are all null ties with a member without a row, and
/// ties keep member order; otherwise member order throughout.
fn with_missing_members(
    cube: &Dataset,
    q: &DrillQuery,
    level: LevelRef,
    answer: Answer,
    scope: &RoaringBitmap,
    desc: bool,
    by_measure: bool,
) -> Vec<Vec<Json>> {
    let width = answer.columns.len();
    // Columns of the measures ordered by.
    let order_cols: Vec<usize> = q
        .order
        .iter()
        .filter_map(|o| answer.columns.iter().position(|c| c.name == o.by))
        .filter(|&i| i > 0)
        .collect();
    let mut rows: Vec<(u32, Vec<Json>)> = answer
        .rows
        .into_iter()
        .map(|row| {
            let code = row
                .first()
                .and_then(Json::as_str)
                .and_then(|n| cube.members(level).code(n))
                .unwrap_or(u32::MAX);
            (code, row)
        })
        .collect();
    let seen: RoaringBitmap = rows.iter().map(|(c, _)| *c).collect();
    let all_null = |row: &Vec<Json>| order_cols.iter().all(|&i| row[i].is_null());
    let tail_start = if by_measure {
        rows.iter()
            .rposition(|(_, r)| !all_null(r))
            .map_or(0, |i| i + 1)
    } else {
        0 // in member order throughout
    };
    let mut tail = rows.split_off(tail_start);
    for c in scope - &seen {
        let mut row = vec![Json::String(cube.member_name(level, c).to_string())];
        row.resize(width, Json::Null);
        tail.push((c, row));
    }
    tail.sort_by_key(|(c, _)| *c);
    if desc {
        tail.reverse();
    }
    rows.extend(tail);
    rows.into_iter().map(|(_, r)| r).collect()
}

/// `limit` codes of `set` from `offset`, ascending or descending.
fn page(set: &RoaringBitmap, desc: bool, offset: u64, limit: u64) -> Vec<u32> {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if desc {
        set.iter().rev().skip(offset).take(limit).collect()
    } else {
        set.iter().skip(offset).take(limit).collect()
    }
}

/// The members of `level` behind the filtered cells, from the distinct sets of `via` in the
/// smallest cuboid of `fact` covering the filters. `None` when no cuboid covers them or the
/// keys are not integers (only integer keys are kept as themselves in the sets).
pub(crate) fn member_sets(
    cube: &Dataset,
    fact: FactId,
    via: MeasureId,
    level: LevelRef,
    filters: &[ResolvedFilter],
) -> Option<(RoaringBitmap, Vec<LevelRef>)> {
    let (mut groups, cuboid) = member_sets_by(cube, fact, via, level, &[], filters)?;
    Some((groups.remove(&Vec::new()).unwrap_or_default(), cuboid))
}

/// Members per group: the group's member codes (of the grouping levels, in order) -> the set.
pub(crate) type MemberSets = BTreeMap<Vec<u32>, RoaringBitmap>;

/// [`member_sets`] per group of `by` (member codes of those levels, in order), in one pass over
/// the smallest cuboid of `fact` covering the filters and `by`. Groups without members are
/// absent.
pub(crate) fn member_sets_by(
    cube: &Dataset,
    fact: FactId,
    via: MeasureId,
    level: LevelRef,
    by: &[LevelRef],
    filters: &[ResolvedFilter],
) -> Option<(MemberSets, Vec<LevelRef>)> {
    let codes = cube.encoding.codes[level.dim].as_ref()?;
    let by_key = codes.by_key[level.level].as_ref()?;
    if !codes.integer_key {
        return None;
    }
    let cuboid = cube
        .cuboids
        .iter()
        .filter(|c| {
            c.fact == fact
                && filters.iter().all(|f| derive(cube, c, f.level).is_some())
                && by.iter().all(|l| derive(cube, c, *l).is_some())
        })
        .min_by_key(|c| c.len())?;
    let j = cuboid.measure_ids.iter().position(|m| *m == via)?;
    let MeasureColumn::Distinct(sets) = &cuboid.measures[j] else {
        return None;
    };
    let groups: Vec<_> = by
        .iter()
        .map(|l| derive(cube, cuboid, *l))
        .collect::<Option<_>>()?;
    let masks = filter_masks(cube, cuboid, filters);
    let mut values: BTreeMap<Vec<u32>, RoaringBitmap> = BTreeMap::new();
    for (cell, set) in sets.iter().enumerate() {
        if passes(cuboid, &masks, cell) && !set.is_empty() {
            let key = groups
                .iter()
                .map(|d| d.code(cuboid.codes[d.col][cell]))
                .collect();
            *values.entry(key).or_default() |= set;
        }
    }
    let to_members = |values: RoaringBitmap| -> RoaringBitmap {
        values
            .iter()
            .map(|v| {
                let key = codes
                    .key_map
                    .get(&KeyValue::Int(i64::from(v)))
                    .copied()
                    .unwrap_or(codes.n_keys as u32);
                by_key[key as usize]
            })
            .collect()
    };
    let members = values
        .into_iter()
        .map(|(k, v)| (k, to_members(v)))
        .collect();
    Some((members, cuboid.levels.clone()))
}
