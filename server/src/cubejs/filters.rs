//! Cube filters as the engine's filters.
//!
//! The engine slices one level at a time and intersects its filters; Cube filters are
//! predicates on members with `and`/`or`. Each leaf is turned into what it selects:
//!
//! - on a level: the set of the level's members it lets through, computed over the cube's
//!   dictionary (`contains` is a case-insensitive substring match, as Cube's `ILIKE`; a
//!   negation is the complement, so it keeps `unknown` — SQL's NULL — exactly when Cube's
//!   `OR col IS NULL` does);
//! - on the time dimension: the set of instants it selects, which must cover whole periods of
//!   the finest time level; the periods it covers are the member set;
//! - on a measure: a `having` condition.
//!
//! `and` intersects member sets and concatenates `having`; `or` is a union, which the engine
//! can answer only when every branch constrains the same level. A set becomes one native
//! filter: `between` for a run of an ordered level, else `in` or `not_in`, whichever is
//! shorter.

use std::collections::{BTreeMap, BTreeSet};

use lattice_defs::model::{LevelKind, LevelRef, TimeGrain, UNKNOWN_MEMBER};
use lattice_engine::query::{Filter, FilterOp, Having, HavingOp};

use super::CubeJsError;
use super::catalog::{Catalog, Member};
use super::dates::{self, Ms, Range, Side};
use super::request::{FilterNode, Leaf};

/// What a filter (or a group of them) selects.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Constraint {
    /// Per level, the members let through (indexed by member code). Levels intersect.
    pub levels: BTreeMap<LevelRef, Vec<bool>>,
    pub having: Vec<Having>,
    /// The Cube members the constraint is on, for error messages.
    pub members: BTreeSet<String>,
}

impl Constraint {
    /// Both constraints at once.
    pub fn and(mut self, other: Constraint) -> Constraint {
        for (l, set) in other.levels {
            match self.levels.get_mut(&l) {
                Some(mine) => mine.iter_mut().zip(set).for_each(|(a, b)| *a &= b),
                None => {
                    self.levels.insert(l, set);
                }
            }
        }
        self.having.extend(other.having);
        self.members.extend(other.members);
        self
    }

    fn is_true(&self) -> bool {
        self.levels.is_empty() && self.having.is_empty()
    }
}

/// Reads a filter tree into the constraint it puts on the cube.
pub(crate) fn constraint(cat: &Catalog, node: &FilterNode) -> Result<Constraint, CubeJsError> {
    match node {
        FilterNode::Leaf(leaf) => leaf_constraint(cat, leaf),
        FilterNode::And(items) => items.iter().try_fold(Constraint::default(), |acc, n| {
            Ok(acc.and(constraint(cat, n)?))
        }),
        FilterNode::Or(items) => {
            let parts = items
                .iter()
                .map(|n| constraint(cat, n))
                .collect::<Result<Vec<_>, _>>()?;
            if parts.is_empty() || parts.iter().any(Constraint::is_true) {
                // `or` with an always-true branch (or no branch) selects everything.
                return Ok(Constraint::default());
            }
            let members: BTreeSet<String> = parts
                .iter()
                .flat_map(|p| p.members.iter().cloned())
                .collect();
            let level = parts[0].levels.keys().next().copied();
            let one_level = parts.iter().all(|p| {
                p.having.is_empty()
                    && p.levels.len() == 1
                    && p.levels.keys().next() == level.as_ref()
            });
            let Some(level) = level.filter(|_| one_level) else {
                return Err(CubeJsError::OrAcrossMembers {
                    members: members.into_iter().collect(),
                });
            };
            let mut union = vec![false; cat.cube.members(level).len()];
            for p in &parts {
                union
                    .iter_mut()
                    .zip(&p.levels[&level])
                    .for_each(|(a, b)| *a |= *b);
            }
            Ok(Constraint {
                levels: BTreeMap::from([(level, union)]),
                having: Vec::new(),
                members,
            })
        }
    }
}

fn leaf_constraint(cat: &Catalog, leaf: &Leaf) -> Result<Constraint, CubeJsError> {
    let bad = |message: String| CubeJsError::BadFilter {
        member: leaf.member.clone(),
        message,
    };
    let mut c = Constraint {
        members: BTreeSet::from([leaf.member.clone()]),
        ..Constraint::default()
    };
    match cat.member(&leaf.member)? {
        Member::Measure(m) => {
            if let Some(h) = measure_having(cat, m, leaf)? {
                c.having.push(h);
            }
        }
        Member::Level(l) => {
            if is_date_operator(&leaf.operator) {
                return Err(bad(format!(
                    "'{}' applies to the time dimension{}; '{}' is not one",
                    leaf.operator,
                    cat.time
                        .as_ref()
                        .map_or(String::new(), |t| format!(" '{}'", t.member)),
                    leaf.member
                )));
            }
            let mut set = level_set(cat, l, leaf)?;
            // What the principal cannot see is never matched, so it never reaches a
            // native filter, a dry-run or an error.
            for (code, keep) in (0u32..).zip(set.iter_mut()) {
                *keep &= cat.view.sees(l, code);
            }
            c.levels.insert(l, set);
        }
        Member::Time => {
            let t = cat
                .time
                .as_ref()
                .expect("a time member implies a time dimension");
            c.levels.insert(t.finest.1, time_set(cat, leaf)?);
        }
    }
    Ok(c)
}

fn is_date_operator(op: &str) -> bool {
    matches!(
        op,
        "inDateRange"
            | "notInDateRange"
            | "onTheDate"
            | "beforeDate"
            | "beforeOrOnDate"
            | "afterDate"
            | "afterOrOnDate"
    )
}

/// A condition on a measure's value, as `having` (`None`: it changes nothing).
fn measure_having(cat: &Catalog, m: usize, leaf: &Leaf) -> Result<Option<Having>, CubeJsError> {
    let bad = |message: String| CubeJsError::BadFilter {
        member: leaf.member.clone(),
        message,
    };
    let measure = cat.cube.model().measures[m].name.clone();
    let op = match leaf.operator.as_str() {
        // A Cube measure's own filters; Lattice measures have none.
        "measureFilter" => return Ok(None),
        "set" => {
            return Ok(Some(Having {
                measure,
                op: HavingOp::Ge,
                value: f64::MIN,
            }));
        }
        "notSet" => {
            return Err(CubeJsError::Unsupported {
                part: format!("'notSet' on the measure '{}'", leaf.member),
                hint: "conditions on measures (having) never let an empty value through".into(),
            });
        }
        "gt" => HavingOp::Gt,
        "gte" => HavingOp::Ge,
        "lt" => HavingOp::Lt,
        "lte" => HavingOp::Le,
        "equals" | "in" => HavingOp::Eq,
        "notEquals" | "notIn" => HavingOp::Ne,
        op => {
            return Err(bad(format!(
                "'{op}' does not apply to a measure; use equals, notEquals, gt, gte, lt, lte, set or measureFilter"
            )));
        }
    };
    let value = match leaf.values.as_slice() {
        [Some(v)] => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(format!("'{v}' is not a number")))?,
        [None] => return Err(bad("a measure is compared with a number, not null".into())),
        vs => {
            return Err(CubeJsError::Unsupported {
                part: format!(
                    "'{}' with {} values on the measure '{}'",
                    leaf.operator,
                    vs.len(),
                    leaf.member
                ),
                hint: "a condition on a measure takes one value".into(),
            });
        }
    };
    Ok(Some(Having { measure, op, value }))
}

/// The members of a (non-time) level a leaf lets through.
fn level_set(cat: &Catalog, l: LevelRef, leaf: &Leaf) -> Result<Vec<bool>, CubeJsError> {
    let bad = |message: String| CubeJsError::BadFilter {
        member: leaf.member.clone(),
        message,
    };
    let names = &cat.cube.members(l).names;
    let is_null = |n: &str| n == UNKNOWN_MEMBER;
    let texts: Vec<String> = leaf.values.iter().flatten().cloned().collect();
    let has_null = leaf.values.iter().any(Option::is_none);
    // A positive operator: members matching any value, plus `unknown` when null is a value.
    let positive = |matches: &dyn Fn(&str, &str) -> bool| -> Vec<bool> {
        names
            .iter()
            .map(|n| {
                if is_null(n) {
                    has_null
                } else {
                    texts.iter().any(|v| matches(n, v))
                }
            })
            .collect()
    };
    let negate = |set: Vec<bool>| set.into_iter().map(|b| !b).collect();
    let ci =
        |f: fn(&str, &str) -> bool| move |n: &str, v: &str| f(&n.to_lowercase(), &v.to_lowercase());
    let contains = ci(|n, v| n.contains(v));
    let starts = ci(|n, v| n.starts_with(v));
    let ends = ci(|n, v| n.ends_with(v));
    let equal = |n: &str, v: &str| n == v;
    Ok(match leaf.operator.as_str() {
        "equals" | "in" => positive(&equal),
        "notEquals" | "notIn" => negate(positive(&equal)),
        "contains" => positive(&contains),
        "notContains" => negate(positive(&contains)),
        "startsWith" => positive(&starts),
        "notStartsWith" => negate(positive(&starts)),
        "endsWith" => positive(&ends),
        "notEndsWith" => negate(positive(&ends)),
        "set" => names.iter().map(|n| !is_null(n)).collect(),
        "notSet" => names.iter().map(|n| is_null(n)).collect(),
        op @ ("gt" | "gte" | "lt" | "lte") => {
            let [Some(v)] = leaf.values.as_slice() else {
                return Err(bad(format!("'{op}' takes one value")));
            };
            let keep = |o: std::cmp::Ordering| match op {
                "gt" => o.is_gt(),
                "gte" => o.is_ge(),
                "lt" => o.is_lt(),
                _ => o.is_le(),
            };
            let kind = &cat.cube.model().dimensions[l.dim].levels[l.level].kind;
            if matches!(kind, LevelKind::Bucket(_) | LevelKind::Time(_)) {
                // Ordered levels compare in member order (bands low to high).
                let at = names
                    .iter()
                    .position(|n| n == v && !is_null(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "'{v}' is not a member of this ordered level (members: {})",
                            names.join(", ")
                        ))
                    })?;
                (0..names.len())
                    .map(|i| !is_null(&names[i]) && keep(i.cmp(&at)))
                    .collect()
            } else if let Ok(x) = v.trim().parse::<f64>() {
                // Numbers compare as numbers; members that are not numbers never match.
                names
                    .iter()
                    .map(|n| {
                        n.trim()
                            .parse::<f64>()
                            .ok()
                            .and_then(|y| y.partial_cmp(&x))
                            .is_some_and(keep)
                    })
                    .collect()
            } else {
                names
                    .iter()
                    .map(|n| !is_null(n) && keep(n.as_str().cmp(v.as_str())))
                    .collect()
            }
        }
        "measureFilter" => {
            return Err(bad(
                "'measureFilter' applies to measures, not dimensions".into()
            ));
        }
        op => return Err(bad(format!("'{op}' does not apply to a dimension"))),
    })
}

/// A date range value (or a pair) of a filter or of `timeDimensions`: relative strings,
/// one absolute value (that whole day) or `[from, to]`.
pub(crate) fn date_range(
    cat: &Catalog,
    member: &str,
    values: &[&str],
) -> Result<Range, CubeJsError> {
    let bad = |message: String| CubeJsError::BadDateRange {
        member: member.to_string(),
        range: format!("{values:?}"),
        message,
    };
    match values {
        [one] => {
            if let (Some(from), Some(to)) = (
                dates::parse_absolute(one, Side::Start),
                dates::parse_absolute(one, Side::End),
            ) {
                // A bare date is that day; a timestamp is that instant.
                return Ok(Range { from, to });
            }
            let today = cat
                .time
                .as_ref()
                .and_then(|t| t.today)
                .ok_or_else(|| bad("the cube has no periods to be relative to".into()))?;
            dates::parse_relative(one, today).map_err(bad)
        }
        [a, b] => {
            let from = dates::parse_absolute(a, Side::Start).ok_or_else(|| {
                bad(format!(
                    "cannot read '{a}' as a date (YYYY-MM-DD or an ISO timestamp)"
                ))
            })?;
            let to = dates::parse_absolute(b, Side::End).ok_or_else(|| {
                bad(format!(
                    "cannot read '{b}' as a date (YYYY-MM-DD or an ISO timestamp)"
                ))
            })?;
            if from > to {
                return Err(bad(format!("'{a}' is after '{b}'; write [from, to]")));
            }
            Ok(Range { from, to })
        }
        _ => Err(bad(
            "a date range is one relative string or [from, to]".into()
        )),
    }
}

/// Instants as disjoint inclusive intervals.
type Instants = Vec<(Ms, Ms)>;

/// The periods of the finest time level a leaf on the time dimension selects.
fn time_set(cat: &Catalog, leaf: &Leaf) -> Result<Vec<bool>, CubeJsError> {
    let t = cat
        .time
        .as_ref()
        .expect("a time member implies a time dimension");
    let bad = |message: String| CubeJsError::BadFilter {
        member: leaf.member.clone(),
        message,
    };
    let names = &cat.cube.members(t.finest.1).names;
    let values: Vec<&str> = leaf
        .values
        .iter()
        .map(|v| v.as_deref().ok_or_else(|| bad("a date is not null".into())))
        .collect::<Result<_, _>>()?;
    let one = || -> Result<&str, CubeJsError> {
        match values.as_slice() {
            [v] => Ok(v),
            _ => Err(bad(format!("'{}' takes one date", leaf.operator))),
        }
    };
    // A single value: an absolute date or timestamp, or a relative range's start or end.
    let point = |side: Side| -> Result<Ms, CubeJsError> {
        let v = one()?;
        if let Some(ms) = dates::parse_absolute(v, side) {
            return Ok(ms);
        }
        let r = date_range(cat, &leaf.member, &[v])?;
        Ok(if side == Side::Start { r.from } else { r.to })
    };
    let exact = |v: &str| {
        dates::parse_absolute(v, Side::Start)
            .ok_or_else(|| bad(format!("cannot read '{v}' as a date")))
    };
    let instants: Instants = match leaf.operator.as_str() {
        "set" => return Ok(names.iter().map(|n| n != UNKNOWN_MEMBER).collect()),
        "notSet" => return Ok(names.iter().map(|n| n == UNKNOWN_MEMBER).collect()),
        "inDateRange" | "onTheDate" => {
            let r = date_range(cat, &leaf.member, &values)?;
            vec![(r.from, r.to)]
        }
        "notInDateRange" => {
            let r = date_range(cat, &leaf.member, &values)?;
            vec![(Ms::MIN, r.from - 1), (r.to + 1, Ms::MAX)]
        }
        "beforeDate" => vec![(Ms::MIN, point(Side::Start)? - 1)],
        "afterOrOnDate" => vec![(point(Side::Start)?, Ms::MAX)],
        "beforeOrOnDate" => vec![(Ms::MIN, point(Side::End)?)],
        "afterDate" => vec![(point(Side::End)? + 1, Ms::MAX)],
        "gt" => vec![(exact(one()?)? + 1, Ms::MAX)],
        "gte" => vec![(exact(one()?)?, Ms::MAX)],
        "lt" => vec![(Ms::MIN, exact(one()?)? - 1)],
        "lte" => vec![(Ms::MIN, exact(one()?)?)],
        "equals" | "in" => values
            .iter()
            .map(|v| exact(v).map(|ms| (ms, ms)))
            .collect::<Result<_, _>>()?,
        "notEquals" | "notIn" => {
            let mut points: Vec<Ms> = values.iter().map(|v| exact(v)).collect::<Result<_, _>>()?;
            points.sort_unstable();
            let mut out = Vec::new();
            let mut from = Ms::MIN;
            for p in points {
                if p > from {
                    out.push((from, p - 1));
                }
                from = p.saturating_add(1);
            }
            out.push((from, Ms::MAX));
            out
        }
        op => {
            return Err(bad(format!(
                "'{op}' does not apply to the time dimension; use inDateRange, notInDateRange, beforeDate, beforeOrOnDate, afterDate, afterOrOnDate, set or notSet"
            )));
        }
    };
    periods_covered(&leaf.member, &leaf.operator, t.finest.0, names, &instants)
}

/// The periods wholly inside `instants`; a period partly inside is an error naming it.
pub(crate) fn periods_covered(
    member: &str,
    condition: &str,
    grain: TimeGrain,
    names: &[String],
    instants: &[(Ms, Ms)],
) -> Result<Vec<bool>, CubeJsError> {
    names
        .iter()
        .map(|n| {
            // `unknown` (and anything that is not a period) is no date: no range holds it.
            let Some((start, next)) = dates::period_days(n, grain) else {
                return Ok(false);
            };
            let (a, b) = (dates::start_ms(start), dates::start_ms(next) - 1);
            if instants.iter().any(|&(x, y)| x <= a && b <= y) {
                Ok(true)
            } else if instants.iter().all(|&(x, y)| y < a || b < x) {
                Ok(false)
            } else {
                Err(CubeJsError::PartialPeriod {
                    member: member.to_string(),
                    condition: condition.to_string(),
                    period: n.clone(),
                    grain: grain.name(),
                })
            }
        })
        .collect()
}

/// The native filter that lets exactly `set` through (`None`: it lets everything through).
/// On a level the principal sees only part of, it lists the members let through, never
/// the others, so that it names nothing hidden and depends on nothing hidden.
pub(crate) fn native_filter(cat: &Catalog, l: LevelRef, set: &[bool]) -> Option<Filter> {
    let names = &cat.cube.members(l).names;
    let level = cat.native_level(l);
    let n = set.iter().filter(|b| **b).count();
    if cat.view.is_restricted(l) {
        if n == 0 {
            let visible: Vec<String> = cat
                .view
                .members(cat.cube, l)
                .map(|(_, n)| n.to_string())
                .collect();
            return Some(nothing(&level, &visible));
        }
        return Some(Filter {
            level,
            op: FilterOp::In,
            value: None,
            values: Some(
                names
                    .iter()
                    .zip(set)
                    .filter(|(_, b)| **b)
                    .map(|(n, _)| n.clone())
                    .collect(),
            ),
        });
    }
    if n == set.len() {
        return None;
    }
    let list = |keep: bool| -> Vec<String> {
        names
            .iter()
            .zip(set)
            .filter(|(_, b)| **b == keep)
            .map(|(n, _)| n.clone())
            .collect()
    };
    if n == 0 {
        return Some(nothing(&level, names));
    }
    let first = set.iter().position(|b| *b)?;
    let last = set.iter().rposition(|b| *b)?;
    let ordered = matches!(
        cat.cube.model().dimensions[l.dim].levels[l.level].kind,
        LevelKind::Time(_) | LevelKind::Bucket(_)
    );
    Some(if ordered && last - first + 1 == n {
        Filter {
            level,
            op: FilterOp::Between,
            value: None,
            values: Some(vec![names[first].clone(), names[last].clone()]),
        }
    } else if n <= set.len() - n {
        Filter {
            level,
            op: FilterOp::In,
            value: None,
            values: Some(list(true)),
        }
    } else {
        Filter {
            level,
            op: FilterOp::NotIn,
            value: None,
            values: Some(list(false)),
        }
    })
}

/// A filter no member passes: a search for text no member name holds (the engine's `in`
/// needs at least one member).
fn nothing(level: &str, names: &[String]) -> Filter {
    let absent = ["\u{0}", "\u{1}", "\u{7f}"]
        .into_iter()
        .find(|c| !names.iter().any(|n| n.to_lowercase().contains(c)));
    match absent {
        Some(c) => Filter {
            level: level.to_string(),
            op: FilterOp::Search,
            value: Some(c.to_string()),
            values: None,
        },
        None => Filter {
            level: level.to_string(),
            op: FilterOp::NotIn,
            value: None,
            values: Some(names.to_vec()),
        },
    }
}
