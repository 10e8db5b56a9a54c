//! A Cube query as the engine's [`Query`]: one native query per result (two or more for
//! `compareDateRange`), with how each answer column becomes a Cube data key, and the query
//! as Cube normalises it (echoed back in `results[].query`, which the client pivots by).
//!
//! Cube's defaults are applied here, where the client expects them: the default order (the
//! first time dimension with a granularity ascending, else the first measure descending,
//! else the first dimension ascending; `order: []` opts out), the default limit of 10,000
//! rows and the maximum of 50,000.

use std::collections::BTreeSet;

use lattice_defs::model::{Agg, FactId, LevelRef, MeasureId, MeasureKind, TimeGrain};
use lattice_engine::query::{Direction, Order, Query};
use serde_json::{Value as Json, json};

use super::CubeJsError;
use super::catalog::{Catalog, Member};
use super::dates::Range;
use super::filters::{self, Constraint};
use super::request::{CubeQuery, DateRangeInput, FilterNode};

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

/// A time dimension entry after reading: the granularity level (if grouped) and its range.
struct Td {
    dimension: String,
    grain: Option<(TimeGrain, LevelRef)>,
    range: Option<Range>,
    compare: Option<Vec<Range>>,
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

    // Measures.
    let mut measures: Vec<MeasureId> = Vec::new();
    for name in &q.measures {
        match cat.member(name)? {
            Member::Measure(m) if !measures.contains(&m) => measures.push(m),
            Member::Measure(_) => {}
            _ => return Err(wrong_kind(name, "a dimension", "measures")),
        }
    }

    // Dimensions, and time dimensions written as `<cube>.time.<granularity>`.
    let mut levels: Vec<(LevelRef, String)> = Vec::new();
    let mut tds: Vec<Td> = Vec::new();
    let mut td_json: Vec<Json> = Vec::new();
    let mut regular_dims: Vec<String> = Vec::new();
    let mut as_time: Vec<(String, String)> = Vec::new();
    for name in &q.dimensions {
        if let Some((dim, g)) = time_with_grain(cat, name) {
            as_time.push((dim, g));
            continue;
        }
        match cat.member(name)? {
            Member::Level(l) => {
                if !levels.iter().any(|(x, _)| *x == l) {
                    levels.push((l, name.clone()));
                }
                regular_dims.push(name.clone());
            }
            Member::Time => {
                return Err(CubeJsError::BadGranularity {
                    member: name.clone(),
                    granularity: "none".into(),
                    available: cat
                        .time
                        .as_ref()
                        .map(|t| t.grain_names())
                        .unwrap_or_default(),
                });
            }
            Member::Measure(_) => return Err(wrong_kind(name, "a measure", "dimensions")),
        }
    }
    let mut compare_at: Option<usize> = None;
    let entries = q
        .time_dimensions
        .iter()
        .map(|t| {
            if let Some(k) = t.unknown.keys().next() {
                return Err(CubeJsError::InvalidQuery {
                    message: format!("timeDimensions: \"{k}\" is not allowed"),
                });
            }
            Ok((
                t.dimension.clone(),
                t.granularity.clone(),
                t.date_range.clone(),
                t.compare_date_range.clone(),
            ))
        })
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .chain(as_time.into_iter().map(|(d, g)| (d, Some(g), None, None)));
    for (dimension, granularity, date_range, compare) in entries {
        if cat.member(&dimension)? != Member::Time {
            return Err(wrong_kind(
                &dimension,
                "not the time dimension",
                "timeDimensions",
            ));
        }
        let t = cat
            .time
            .as_ref()
            .expect("a time member implies a time dimension");
        let grain = match &granularity {
            None => None,
            Some(g) => {
                let level =
                    TimeGrain::parse(g).and_then(|grain| t.level(grain).map(|l| (grain, l)));
                Some(level.ok_or_else(|| CubeJsError::BadGranularity {
                    member: dimension.clone(),
                    granularity: g.clone(),
                    available: t.grain_names(),
                })?)
            }
        };
        if date_range.is_some() && compare.is_some() {
            return Err(CubeJsError::InvalidQuery {
                message: format!(
                    "timeDimensions '{dimension}': dateRange and compareDateRange exclude each other"
                ),
            });
        }
        let range = date_range
            .as_ref()
            .map(|r| range_of(cat, &dimension, r))
            .transpose()?;
        let compare = match compare {
            None => None,
            Some(ranges) => {
                if compare_at.is_some() {
                    return Err(CubeJsError::Unsupported {
                        part: "compareDateRange on more than one time dimension".into(),
                        hint: "compare one time dimension at a time".into(),
                    });
                }
                if ranges.is_empty() {
                    return Err(CubeJsError::InvalidQuery {
                        message: "compareDateRange needs at least one date range".into(),
                    });
                }
                compare_at = Some(tds.len());
                Some(
                    ranges
                        .iter()
                        .map(|r| range_of(cat, &dimension, r))
                        .collect::<Result<Vec<_>, _>>()?,
                )
            }
        };
        let mut j = json!({"dimension": dimension});
        if let Some(g) = &granularity {
            j["granularity"] = json!(g);
        }
        if let Some(r) = range {
            j["dateRange"] = json!(r.formatted());
        }
        td_json.push(j);
        tds.push(Td {
            dimension,
            grain,
            range,
            compare,
        });
    }

    // Grouped time levels, once per grain, before the dimensions.
    let mut time_levels: Vec<(TimeGrain, LevelRef, String)> = Vec::new();
    for td in &tds {
        if let Some((g, l)) = td.grain
            && !time_levels.iter().any(|(x, ..)| *x == g)
        {
            time_levels.push((g, l, format!("{}.{}", td.dimension, g.name())));
        }
    }

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
    for td in &tds {
        if let Some(r) = td.range {
            base = base.and(range_constraint(cat, &td.dimension, r)?);
        }
    }

    // Hidden measures: those the conditions and the order name, and for a query without
    // measures one per fact that can tell which member combinations have facts.
    let mut native_measures = measures.clone();
    let add_hidden = |m: MeasureId, list: &mut Vec<MeasureId>| {
        if !list.contains(&m) {
            list.push(m);
        }
    };
    for h in &base.having {
        let m = model
            .measure(&h.measure)
            .expect("having names a measure of the cube");
        add_hidden(m, &mut native_measures);
    }
    let grouped: Vec<LevelRef> = time_levels
        .iter()
        .map(|(_, l, _)| *l)
        .chain(levels.iter().map(|(l, _)| *l))
        .collect();
    let filtered: Vec<LevelRef> = base.levels.keys().copied().collect();
    if native_measures.is_empty() {
        for m in presence_measures(cat, grouped.iter().chain(&filtered).copied()) {
            add_hidden(m, &mut native_measures);
        }
        if native_measures.is_empty() {
            return Err(CubeJsError::NoFacts {
                members: levels.iter().map(|(_, n)| n.clone()).collect(),
            });
        }
    }

    // Order.
    let explicit = q.order.as_ref().map(|o| o.0.clone());
    let written = match &explicit {
        Some(o) => o.clone(),
        None => match (
            time_levels.first(),
            q.measures.first(),
            regular_dims.first(),
        ) {
            (Some((_, _, key)), ..) => vec![(key.clone(), "asc".to_string())],
            (None, Some(m), _) => vec![(m.clone(), "desc".to_string())],
            (None, None, Some(d)) => vec![(d.clone(), "asc".to_string())],
            _ => Vec::new(),
        },
    };
    let mut order = Vec::new();
    let mut order_cube = Vec::new();
    for (key, dir) in &written {
        let desc = match dir.as_str() {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(CubeJsError::InvalidQuery {
                    message: format!("order of '{key}' must be 'asc' or 'desc', not '{other}'"),
                });
            }
        };
        let by = match time_with_grain(cat, key) {
            Some((_, g)) => {
                let grain = TimeGrain::parse(&g);
                let l = time_levels
                    .iter()
                    .find(|(x, ..)| Some(*x) == grain)
                    .ok_or_else(|| bad_order(key, "that granularity is not in the query"))?;
                cat.native_level(l.1)
            }
            None => match cat.member(key)? {
                Member::Measure(m) => {
                    add_hidden(m, &mut native_measures);
                    model.measures[m].name.clone()
                }
                Member::Level(l) => {
                    if !levels.iter().any(|(x, _)| *x == l) {
                        return Err(bad_order(key, "it is not a dimension of the query"));
                    }
                    cat.native_level(l)
                }
                Member::Time => {
                    let (_, l, _) = time_levels
                        .first()
                        .ok_or_else(|| bad_order(key, "the query groups it by no granularity"))?;
                    cat.native_level(*l)
                }
            },
        };
        order.push(Order {
            by,
            dir: if desc {
                Direction::Desc
            } else {
                Direction::Asc
            },
        });
        order_cube.push((key.clone(), desc));
    }

    // Every measure must vary by every level the query groups or filters by.
    for &m in &native_measures {
        for &l in grouped.iter().chain(&filtered) {
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

    // Outputs, in the answer's column order: rows (time levels, then dimensions), measures.
    let mut outputs = Vec::new();
    for (i, (g, _, key)) in time_levels.iter().enumerate() {
        outputs.push(Output::Time {
            key: key.clone(),
            bare: (i == 0 && format == ResponseFormat::Default)
                .then(|| {
                    tds.iter()
                        .find(|t| t.grain.is_some())
                        .map(|t| t.dimension.clone())
                })
                .flatten(),
            grain: *g,
        });
    }
    for (_, name) in &levels {
        outputs.push(Output::Level { key: name.clone() });
    }
    for &m in &native_measures {
        outputs.push(if measures.contains(&m) {
            Output::Measure {
                key: cat.measure_name(m),
            }
        } else {
            Output::Hidden
        });
    }

    // Annotation.
    let mut ann_t = serde_json::Map::new();
    for (g, _, key) in &time_levels {
        ann_t.insert(key.clone(), cat.time_annotation(Some(*g)));
    }
    if let Some(td) = tds.iter().find(|t| t.grain.is_some()) {
        ann_t.insert(td.dimension.clone(), cat.time_annotation(None));
    }
    let annotation = json!({
        "measures": measures.iter().map(|&m| (cat.measure_name(m), cat.measure_annotation(m))).collect::<serde_json::Map<_, _>>(),
        "dimensions": levels.iter().map(|(l, n)| (n.clone(), cat.level_annotation(*l))).collect::<serde_json::Map<_, _>>(),
        "segments": {},
        "timeDimensions": ann_t,
    });

    // The normalised query (before compareDateRange splits it).
    let mut normalized = json!({
        "measures": q.measures,
        "dimensions": regular_dims,
        "segments": [],
        "filters": nodes.iter().map(FilterNode::normalized).collect::<Vec<_>>(),
        "timeDimensions": td_json,
        "limit": limit,
        "rowLimit": limit,
        "timezone": q.timezone.clone().unwrap_or_else(|| "UTC".into()),
    });
    if let Some(o) = &explicit {
        normalized["order"] = o
            .iter()
            .map(|(k, d)| json!({"id": k, "desc": d == "desc"}))
            .collect();
    }
    if let Some(o) = q.offset {
        normalized["offset"] = json!(o);
    }
    if let Some(t) = q.total {
        normalized["total"] = json!(t);
    }
    if let Some(f) = &q.response_format {
        normalized["responseFormat"] = json!(f);
    }

    let rows: Vec<String> = grouped.iter().map(|l| cat.native_level(*l)).collect();
    let plan = |extra: Option<(usize, Range)>| -> Result<Plan, CubeJsError> {
        let mut c = base.clone();
        let mut normalized = normalized.clone();
        let mut compare_label = None;
        if let Some((i, r)) = extra {
            c = c.and(range_constraint(cat, &tds[i].dimension, r)?);
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
            order: order.clone(),
            limit: Some(limit),
            offset: q.offset.unwrap_or(0),
            totals: false,
            compare: None,
            explain: false,
        };
        Ok(Plan {
            native,
            outputs: outputs.clone(),
            normalized,
            annotation: annotation.clone(),
            order: order_cube.clone(),
            compare_label,
            total: q.total.unwrap_or(false),
            format,
        })
    };
    let (query_type, plans) = match compare_at {
        None => (QueryType::Regular, vec![plan(None)?]),
        Some(i) => (
            QueryType::CompareDateRange,
            tds[i]
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
        dims.extend(regular_dims.iter().map(|d| json!(d)));
        pivot_query["dimensions"] = Json::Array(dims);
    }
    pivot_query["queryType"] = json!(query_type.name());
    Ok(Translation {
        query_type,
        plans,
        pivot_query,
    })
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

/// `<cube>.<time>.<granularity>`: (`<cube>.<time>`, granularity).
fn time_with_grain(cat: &Catalog, name: &str) -> Option<(String, String)> {
    let t = cat.time.as_ref()?;
    let g = name.strip_prefix(t.member.as_str())?.strip_prefix('.')?;
    Some((t.member.clone(), g.to_string()))
}

fn range_of(cat: &Catalog, member: &str, r: &DateRangeInput) -> Result<Range, CubeJsError> {
    match r {
        DateRangeInput::Text(s) => filters::date_range(cat, member, &[s.as_str()]),
        DateRangeInput::Pair(v) => {
            let v: Vec<&str> = v.iter().map(String::as_str).collect();
            match v.as_slice() {
                [one] => filters::date_range(cat, member, &[one, one]),
                _ => filters::date_range(cat, member, &v),
            }
        }
    }
}

/// The finest-level members a date range of a time dimension covers.
fn range_constraint(cat: &Catalog, member: &str, r: Range) -> Result<Constraint, CubeJsError> {
    let t = cat
        .time
        .as_ref()
        .expect("a time member implies a time dimension");
    let names = &cat.cube.members(t.finest.1).names;
    let set = filters::periods_covered(member, "dateRange", t.finest.0, names, &[(r.from, r.to)])?;
    Ok(Constraint {
        levels: [(t.finest.1, set)].into_iter().collect(),
        having: Vec::new(),
        members: [member.to_string()].into_iter().collect(),
    })
}

/// For a query without measures: per fact that varies by every level, one measure of it (its
/// row count when it has one), so that a row exists where any such fact has rows.
fn presence_measures(
    cat: &Catalog,
    levels: impl Iterator<Item = LevelRef> + Clone,
) -> Vec<MeasureId> {
    let model = cat.cube.model();
    (0..model.facts.len())
        .filter(|&f| levels.clone().all(|l| model.fact_has_dimension(f, l.dim)))
        .filter_map(|f: FactId| {
            let of_fact = |m: &&lattice_defs::model::Measure| {
                matches!(m.kind, MeasureKind::Aggregate { fact, .. } if fact == f)
            };
            let count = model.measures.iter().position(|m| {
                of_fact(&m) && matches!(m.kind, MeasureKind::Aggregate { agg: Agg::Count, .. })
            });
            count.or_else(|| model.measures.iter().position(|m| of_fact(&m)))
        })
        .collect()
}

fn wrong_kind(member: &str, is: &'static str, place: &'static str) -> CubeJsError {
    CubeJsError::WrongKind {
        member: member.to_string(),
        is,
        place,
    }
}

fn bad_order(member: &str, reason: &str) -> CubeJsError {
    CubeJsError::BadOrder {
        member: member.to_string(),
        reason: reason.to_string(),
    }
}
