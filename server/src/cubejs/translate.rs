//! A Cube query as the engine's [`Query`]: one native query per result (two or more for
//! `compareDateRange`), with how each answer column becomes a Cube data key, and the query
//! as Cube normalises it (echoed back in `results[].query`, which the client pivots by).
//!
//! Cube's defaults are applied here, where the client expects them: the default order (the
//! first time dimension with a granularity ascending, else the first measure descending,
//! else the first dimension ascending; `order: []` opts out), the default limit of 10,000
//! rows and the maximum of 50,000.

use std::collections::BTreeSet;

use lattice_defs::model::{LevelRef, MeasureId, TimeGrain};
use lattice_engine::query::{Direction, Order, Query};
use serde_json::{Value as Json, json};

use super::CubeJsError;
use super::catalog::{Catalog, Member};
use super::dates::Range;
use super::filters::{self, Constraint};
use super::members::{self, Selection};
use super::request::{CubeQuery, FilterNode};

/// Rows a query returns when it sets no limit (Cube's `CUBEJS_DB_QUERY_DEFAULT_LIMIT`).
pub(crate) const DEFAULT_LIMIT: u64 = 10_000;
/// The most rows a query may ask for (Cube's `CUBEJS_DB_QUERY_LIMIT`).
pub(crate) const MAX_LIMIT: u64 = 50_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryType {
    Regular,
    CompareDateRange,
}

impl QueryType {
    pub fn name(self) -> &'static str {
        match self {
            QueryType::Regular => "regularQuery",
            QueryType::CompareDateRange => "compareDateRangeQuery",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseFormat {
    Default,
    Compact,
    Columnar,
}

/// How one column of the native answer appears in Cube's data.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Level {
        key: String,
    },
    /// A time level: `bank_crm.time.month`, and the bare `bank_crm.time` for the first one.
    Time {
        key: String,
        bare: Option<String>,
        grain: TimeGrain,
    },
    Measure {
        key: String,
    },
    /// A measure asked for only to filter, order or find rows; not shown.
    Hidden,
}

/// One native query and how to answer with it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub native: Query,
    /// Parallel to the answer's columns: levels (rows), then measures.
    pub outputs: Vec<Output>,
    /// The query as Cube normalises it.
    pub normalized: Json,
    pub annotation: Json,
    /// The effective order, in Cube names: (member, descending).
    pub order: Vec<(String, bool)>,
    /// `compareDateRange`'s value for the rows of this result.
    pub compare_label: Option<String>,
    pub total: bool,
    pub format: ResponseFormat,
}

#[derive(Debug, Clone)]
pub(crate) struct Translation {
    pub query_type: QueryType,
    pub plans: Vec<Plan>,
    pub pivot_query: Json,
}

/// The one cube a query names (every member is `<cube>.<member>`).
pub(crate) fn cube_of(q: &CubeQuery) -> Result<String, CubeJsError> {
    let has_granularity = q.time_dimensions.iter().any(|t| t.granularity.is_some());
    if q.measures.is_empty() && q.dimensions.is_empty() && !has_granularity {
        return Err(CubeJsError::EmptyQuery);
    }
    let mut names: Vec<&str> = Vec::new();
    names.extend(q.measures.iter().map(String::as_str));
    names.extend(q.dimensions.iter().map(String::as_str));
    names.extend(q.segments.iter().map(String::as_str));
    names.extend(q.time_dimensions.iter().map(|t| t.dimension.as_str()));
    if let Some(o) = &q.order {
        names.extend(o.0.iter().map(|(k, _)| k.as_str()));
    }
    fn walk<'a>(v: &'a Json, out: &mut Vec<&'a str>) {
        match v {
            Json::Object(o) => {
                for k in ["member", "dimension"] {
                    if let Some(Json::String(s)) = o.get(k) {
                        out.push(s);
                    }
                }
                for k in ["and", "or"] {
                    if let Some(Json::Array(items)) = o.get(k) {
                        items.iter().for_each(|i| walk(i, out));
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    q.filters.iter().for_each(|f| walk(f, &mut names));
    let mut cubes = BTreeSet::new();
    for n in names {
        if n.starts_with('{') {
            return Err(CubeJsError::Unsupported {
                part: "member expressions".into(),
                hint: "name members as <cube>.<member> (see /cubejs-api/v1/meta)".into(),
            });
        }
        match n.split_once('.') {
            Some((cube, rest)) if !cube.is_empty() && !rest.is_empty() => {
                cubes.insert(cube.to_string());
            }
            _ => {
                return Err(CubeJsError::InvalidQuery {
                    message: format!("'{n}' is not a member name (<cube>.<member>)"),
                });
            }
        }
    }
    let mut cubes = cubes.into_iter();
    match (cubes.next(), cubes.next()) {
        (Some(one), None) => Ok(one),
        (Some(a), Some(b)) => Err(CubeJsError::SeveralCubes {
            cubes: [a, b].into_iter().chain(cubes).collect(),
        }),
        (None, _) => Err(CubeJsError::EmptyQuery),
    }
}

/// The levels whose members `q`'s filters match (a filter that cannot be read names none:
/// [`translate`] reports it).
pub(crate) fn filtered_levels(cat: &Catalog, q: &CubeQuery) -> Vec<LevelRef> {
    fn walk(cat: &Catalog, n: &FilterNode, out: &mut Vec<LevelRef>) {
        match n {
            FilterNode::Leaf(leaf) => {
                if let Ok(super::catalog::Member::Level(l)) = cat.member(&leaf.member) {
                    out.push(l);
                }
            }
            FilterNode::And(items) | FilterNode::Or(items) => {
                items.iter().for_each(|i| walk(cat, i, out));
            }
        }
    }
    let mut out = Vec::new();
    for node in q.filters.iter().filter_map(|f| FilterNode::parse(f).ok()) {
        walk(cat, &node, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Translates `q` for the cube of `cat`.
pub(crate) fn translate(cat: &Catalog, q: &CubeQuery) -> Result<Translation, CubeJsError> {
    check_supported(q)?;
    let model = cat.cube.model();
    let format = match q.response_format.as_deref() {
        None | Some("default") => ResponseFormat::Default,
        Some("compact") => ResponseFormat::Compact,
        Some("columnar") => ResponseFormat::Columnar,
        Some(other) => {
            return Err(CubeJsError::InvalidQuery {
                message: format!(
                    "\"responseFormat\" must be one of [default, compact, columnar], not '{other}'"
                ),
            });
        }
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit > MAX_LIMIT {
        return Err(CubeJsError::LimitTooLarge {
            limit,
            max: MAX_LIMIT,
        });
    }
    if let Some(s) = q.segments.first() {
        return Err(CubeJsError::UnknownSegment {
            segment: s.clone(),
            cube: cat.name.to_string(),
        });
    }
    let sel = members::select(cat, q)?;

    // Filters, and the date ranges of timeDimensions.
    let nodes = q
        .filters
        .iter()
        .map(FilterNode::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let mut base = Constraint::default();
    for n in &nodes {
        base = base.and(filters::constraint(cat, n)?);
    }
    for td in &sel.tds {
        if let Some(r) = td.range {
            base = base.and(members::range_constraint(cat, &td.dimension, r)?);
        }
    }

    // The measures the engine computes: those asked for, then hidden ones — those the
    // conditions name, and for a query without measures one per fact that can tell which
    // member combinations have facts — then those only the order names.
    let mut native_measures = sel.measures.clone();
    for h in &base.having {
        let m = model
            .measure(&h.measure)
            .expect("having names a measure of the cube");
        add(&mut native_measures, m);
    }
    let grouped = sel.grouped();
    let filtered: Vec<LevelRef> = base.levels.keys().copied().collect();
    if native_measures.is_empty() {
        for m in members::presence_measures(cat, grouped.iter().chain(&filtered).copied()) {
            add(&mut native_measures, m);
        }
        if native_measures.is_empty() {
            return Err(CubeJsError::NoFacts {
                members: sel.levels.iter().map(|(_, n)| n.clone()).collect(),
            });
        }
    }
    let order = order(cat, q, &sel, &mut native_measures)?;
    check_varies(cat, &native_measures, grouped.iter().chain(&filtered))?;

    let outputs = outputs(cat, &sel, &native_measures, format);
    let annotation = annotation(cat, &sel);
    let normalized = normalized(q, &sel, &nodes, limit);
    let rows: Vec<String> = grouped.iter().map(|l| cat.native_level(*l)).collect();
    let plan = |extra: Option<(usize, Range)>| -> Result<Plan, CubeJsError> {
        let mut c = base.clone();
        let mut normalized = normalized.clone();
        let mut compare_label = None;
        if let Some((i, r)) = extra {
            c = c.and(members::range_constraint(cat, &sel.tds[i].dimension, r)?);
            let [from, to] = r.formatted();
            normalized["timeDimensions"][i]["dateRange"] = json!([from, to]);
            compare_label = Some(format!("{from} - {to}"));
        }
        let native = Query {
            measures: native_measures
                .iter()
                .map(|&m| model.measures[m].name.clone())
                .collect(),
            rows: rows.clone(),
            columns: Vec::new(),
            filters: c
                .levels
                .iter()
                .filter_map(|(l, set)| filters::native_filter(cat, *l, set))
                .collect(),
            having: c.having.clone(),
            order: order.iter().map(|(o, _)| o.clone()).collect(),
            limit: Some(limit),
            offset: q.offset.unwrap_or(0),
            totals: false,
            compare: None,
            explain: false,
            shares: Vec::new(),
            segments: Vec::new(),
        };
        Ok(Plan {
            native,
            outputs: outputs.clone(),
            normalized,
            annotation: annotation.clone(),
            order: order.iter().map(|(_, c)| c.clone()).collect(),
            compare_label,
            total: q.total.unwrap_or(false),
            format,
        })
    };
    let (query_type, plans) = match sel.compare_at {
        None => (QueryType::Regular, vec![plan(None)?]),
        Some(i) => (
            QueryType::CompareDateRange,
            sel.tds[i]
                .compare
                .as_ref()
                .expect("compare_at points at a compareDateRange")
                .iter()
                .map(|r| plan(Some((i, *r))))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let mut pivot_query = plans[0].normalized.clone();
    if query_type == QueryType::CompareDateRange {
        let mut dims = vec![json!("compareDateRange")];
        dims.extend(sel.dimensions.iter().map(|d| json!(d)));
        pivot_query["dimensions"] = Json::Array(dims);
    }
    pivot_query["queryType"] = json!(query_type.name());
    Ok(Translation {
        query_type,
        plans,
        pivot_query,
    })
}

/// One order key: native, and in Cube names (member, descending).
type OrderKey = (Order, (String, bool));

fn add(list: &mut Vec<MeasureId>, m: MeasureId) {
    if !list.contains(&m) {
        list.push(m);
    }
}

/// The order as written, or Cube's default; native and in Cube names (member, descending).
/// A measure ordered by but not asked for is computed hidden.
fn order(
    cat: &Catalog,
    q: &CubeQuery,
    sel: &Selection,
    native_measures: &mut Vec<MeasureId>,
) -> Result<Vec<OrderKey>, CubeJsError> {
    let written = match &q.order {
        Some(o) => o.0.clone(),
        None => match (
            sel.time_levels.first(),
            q.measures.first(),
            sel.dimensions.first(),
        ) {
            (Some((_, _, key)), ..) => vec![(key.clone(), "asc".to_string())],
            (None, Some(m), _) => vec![(m.clone(), "desc".to_string())],
            (None, None, Some(d)) => vec![(d.clone(), "asc".to_string())],
            _ => Vec::new(),
        },
    };
    let bad_order = |member: &str, reason: &str| CubeJsError::BadOrder {
        member: member.to_string(),
        reason: reason.to_string(),
    };
    let mut order = Vec::new();
    for (key, dir) in written {
        let desc = match dir.as_str() {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(CubeJsError::InvalidQuery {
                    message: format!("order of '{key}' must be 'asc' or 'desc', not '{other}'"),
                });
            }
        };
        let by = match members::time_with_grain(cat, &key) {
            Some((_, g)) => {
                let grain = TimeGrain::parse(&g);
                let l = sel
                    .time_levels
                    .iter()
                    .find(|(x, ..)| Some(*x) == grain)
                    .ok_or_else(|| bad_order(&key, "that granularity is not in the query"))?;
                cat.native_level(l.1)
            }
            None => match cat.member(&key)? {
                Member::Measure(m) => {
                    add(native_measures, m);
                    cat.cube.model().measures[m].name.clone()
                }
                Member::Level(l) => {
                    if !sel.levels.iter().any(|(x, _)| *x == l) {
                        return Err(bad_order(&key, "it is not a dimension of the query"));
                    }
                    cat.native_level(l)
                }
                Member::Time => {
                    let (_, l, _) = sel
                        .time_levels
                        .first()
                        .ok_or_else(|| bad_order(&key, "the query groups it by no granularity"))?;
                    cat.native_level(*l)
                }
            },
        };
        let dir = if desc {
            Direction::Desc
        } else {
            Direction::Asc
        };
        order.push((Order { by, dir }, (key, desc)));
    }
    Ok(order)
}

/// Every measure must vary by every level the query groups or filters by (the engine says
/// so too, in its own names; this says it in Cube's).
fn check_varies<'a>(
    cat: &Catalog,
    measures: &[MeasureId],
    levels: impl Iterator<Item = &'a LevelRef> + Clone,
) -> Result<(), CubeJsError> {
    let model = cat.cube.model();
    for &m in measures {
        for &l in levels.clone() {
            if !model.measure_varies_by(m, l) {
                let member = match &cat.time {
                    Some(t) if t.dim == l.dim => t.member.clone(),
                    _ => cat.level_name(l),
                };
                return Err(CubeJsError::MeasureDoesNotVary {
                    measure: cat.measure_name(m),
                    member,
                    dimension: model.dimensions[l.dim].name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// How the answer's columns — rows (time levels, then dimensions), then measures — appear.
fn outputs(
    cat: &Catalog,
    sel: &Selection,
    native_measures: &[MeasureId],
    format: ResponseFormat,
) -> Vec<Output> {
    let bare = sel
        .tds
        .iter()
        .find(|t| t.grain.is_some())
        .map(|t| t.dimension.clone())
        .filter(|_| format == ResponseFormat::Default);
    let time = sel
        .time_levels
        .iter()
        .enumerate()
        .map(|(i, (g, _, key))| Output::Time {
            key: key.clone(),
            bare: bare.clone().filter(|_| i == 0),
            grain: *g,
        });
    let levels = sel
        .levels
        .iter()
        .map(|(_, name)| Output::Level { key: name.clone() });
    let measures = native_measures.iter().map(|&m| {
        if sel.measures.contains(&m) {
            Output::Measure {
                key: cat.measure_name(m),
            }
        } else {
            Output::Hidden
        }
    });
    time.chain(levels).chain(measures).collect()
}

/// Titles and types of the members shown, as Cube annotates a result.
fn annotation(cat: &Catalog, sel: &Selection) -> Json {
    let mut times = serde_json::Map::new();
    for (g, _, key) in &sel.time_levels {
        times.insert(key.clone(), cat.time_annotation(Some(*g)));
    }
    if let Some(td) = sel.tds.iter().find(|t| t.grain.is_some()) {
        times.insert(td.dimension.clone(), cat.time_annotation(None));
    }
    json!({
        "measures": sel.measures.iter()
            .map(|&m| (cat.measure_name(m), cat.measure_annotation(m)))
            .collect::<serde_json::Map<_, _>>(),
        "dimensions": sel.levels.iter()
            .map(|(l, n)| (n.clone(), cat.level_annotation(*l)))
            .collect::<serde_json::Map<_, _>>(),
        "segments": {},
        "timeDimensions": times,
    })
}

/// The query as Cube normalises it (before `compareDateRange` splits it).
fn normalized(q: &CubeQuery, sel: &Selection, nodes: &[FilterNode], limit: u64) -> Json {
    let mut n = json!({
        "measures": q.measures,
        "dimensions": sel.dimensions,
        "segments": [],
        "filters": nodes.iter().map(FilterNode::normalized).collect::<Vec<_>>(),
        "timeDimensions": sel.tds_normalized,
        "limit": limit,
        "rowLimit": limit,
        "timezone": q.timezone.clone().unwrap_or_else(|| "UTC".into()),
    });
    if let Some(o) = &q.order {
        n["order"] =
            o.0.iter()
                .map(|(k, d)| json!({"id": k, "desc": d == "desc"}))
                .collect();
    }
    if let Some(o) = q.offset {
        n["offset"] = json!(o);
    }
    if let Some(t) = q.total {
        n["total"] = json!(t);
    }
    if let Some(f) = &q.response_format {
        n["responseFormat"] = json!(f);
    }
    n
}

/// Rejects the parts of the Cube query format Lattice does not answer, naming them.
fn check_supported(q: &CubeQuery) -> Result<(), CubeJsError> {
    if let Some(k) = q.unknown.keys().next() {
        return Err(CubeJsError::InvalidQuery {
            message: format!("\"{k}\" is not allowed"),
        });
    }
    let unsupported = |part: &str, hint: &str| {
        Err(CubeJsError::Unsupported {
            part: part.into(),
            hint: hint.into(),
        })
    };
    if q.ungrouped == Some(true) {
        return unsupported(
            "ungrouped queries",
            "Lattice answers aggregates; drill through to facts with the native /v1 API",
        );
    }
    if q.subquery_joins.is_some() {
        return unsupported("subqueryJoins", "a Lattice cube has its joins built in");
    }
    if q.join_hints.is_some() {
        return unsupported("joinHints", "a Lattice cube has its joins built in");
    }
    Ok(())
}
