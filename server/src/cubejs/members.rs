//! What a Cube query asks for, resolved against the cube: its measures, its dimension levels
//! and its time dimensions (granularities, date ranges and `compareDateRange`), the
//! granularities also when written as dimensions (`bank_crm.time.month`), as Cube accepts.

use lattice_defs::model::{Agg, FactId, LevelRef, MeasureId, MeasureKind, TimeGrain};
use serde_json::{Value as Json, json};

use super::CubeJsError;
use super::catalog::{Catalog, Member};
use super::dates::Range;
use super::filters::{self, Constraint};
use super::request::{CubeQuery, DateRangeInput};

/// A time dimension entry after reading.
#[derive(Debug, Clone)]
pub(crate) struct Td {
    pub dimension: String,
    pub grain: Option<(TimeGrain, LevelRef)>,
    pub range: Option<Range>,
    pub compare: Option<Vec<Range>>,
}

/// The members of a query.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    /// Measures asked for, without repeats, in query order.
    pub measures: Vec<MeasureId>,
    /// Dimension levels and their Cube names, in query order.
    pub levels: Vec<(LevelRef, String)>,
    /// `dimensions` as Cube normalises them (granularities moved to `timeDimensions`).
    pub dimensions: Vec<String>,
    pub tds: Vec<Td>,
    /// `timeDimensions` as Cube normalises them (date ranges resolved).
    pub tds_normalized: Vec<Json>,
    /// Grouped time levels, once per grain: (grain, level, `bank_crm.time.month`).
    pub time_levels: Vec<(TimeGrain, LevelRef, String)>,
    /// The entry of `tds` with `compareDateRange`.
    pub compare_at: Option<usize>,
}

impl Selection {
    /// The levels the answer is grouped by: time levels, then dimensions.
    pub fn grouped(&self) -> Vec<LevelRef> {
        self.time_levels
            .iter()
            .map(|(_, l, _)| *l)
            .chain(self.levels.iter().map(|(l, _)| *l))
            .collect()
    }
}

/// Reads the members of `q`.
pub(crate) fn select(cat: &Catalog, q: &CubeQuery) -> Result<Selection, CubeJsError> {
    let mut measures: Vec<MeasureId> = Vec::new();
    for name in &q.measures {
        match cat.member(name)? {
            Member::Measure(m) if !measures.contains(&m) => measures.push(m),
            Member::Measure(_) => {}
            _ => return Err(wrong_kind(name, "a dimension", "measures")),
        }
    }

    let mut levels: Vec<(LevelRef, String)> = Vec::new();
    let mut dimensions: Vec<String> = Vec::new();
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
                dimensions.push(name.clone());
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

    let mut tds: Vec<Td> = Vec::new();
    let mut tds_normalized: Vec<Json> = Vec::new();
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
        tds_normalized.push(j);
        tds.push(Td {
            dimension,
            grain,
            range,
            compare,
        });
    }

    let mut time_levels: Vec<(TimeGrain, LevelRef, String)> = Vec::new();
    for td in &tds {
        if let Some((g, l)) = td.grain
            && !time_levels.iter().any(|(x, ..)| *x == g)
        {
            time_levels.push((g, l, format!("{}.{}", td.dimension, g.name())));
        }
    }
    Ok(Selection {
        measures,
        levels,
        dimensions,
        tds,
        tds_normalized,
        time_levels,
        compare_at,
    })
}

/// `<cube>.<time>.<granularity>`: (`<cube>.<time>`, granularity).
pub(crate) fn time_with_grain(cat: &Catalog, name: &str) -> Option<(String, String)> {
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

/// The finest-level members a date range of the time dimension covers.
pub(crate) fn range_constraint(
    cat: &Catalog,
    member: &str,
    r: Range,
) -> Result<Constraint, CubeJsError> {
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
pub(crate) fn presence_measures(
    cat: &Catalog,
    levels: impl Iterator<Item = LevelRef> + Clone,
) -> Vec<MeasureId> {
    let model = cat.cube.model();
    (0..model.facts.len())
        .filter(|&f| levels.clone().all(|l| model.fact_has_dimension(f, l.dim)))
        .filter_map(|f: FactId| {
            let of_fact = |m: &lattice_defs::model::Measure| {
                matches!(m.kind, MeasureKind::Aggregate { fact, .. } if fact == f)
            };
            let count = model.measures.iter().position(|m| {
                of_fact(m) && matches!(m.kind, MeasureKind::Aggregate { agg: Agg::Count, .. })
            });
            count.or_else(|| model.measures.iter().position(of_fact))
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
