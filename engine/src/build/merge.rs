//! A refresh's cuboids from the cube it brings up to date: each planned cuboid the cube has
//! already is merged with what changed, not built again from every base row.
//!
//! A cuboid's cells change where rows were added (the new periods) and where a level it shows
//! coded old rows otherwise than before: a band whose periods were decided again (a customer's
//! value class for a year that gained a month), a level whose definition changed. Per planned
//! cuboid ([`Way`]):
//!
//! - **combine**: no level changed its old codes. The cuboid of the new rows alone is built
//!   and merged cell by cell into the old one: sums and counts add, minimums and maximums
//!   keep theirs, distinct sets unite; a semi-additive value counts on the side whose closing
//!   period is still the cell's (a year that gained a month closes at the new month).
//! - **replace**: a level changed the codes of some old periods, and the cuboid shows time.
//!   The cells of every time member touched (by a change or a new row) are built again from
//!   the base rows of those members' periods; the other cells are kept.
//! - **rebuild**: the cube had no such cuboid, a level changed everywhere (its dictionary or
//!   its key codes), or old periods changed and the cuboid has no time level: built as a
//!   build builds it, from the smallest cuboid made already that derives it (a replaced one
//!   with time, say), else from every base row.
//!
//! The cuboids of a fact merged one way are built together by the build's own machinery (a
//! pass over their rows for those no other derives, the rest from their smallest parent), so
//! a merged cuboid holds exactly what a full build of the same data holds (the refresh
//! differential tests compare them cell for cell).

use std::collections::HashMap;

use indicatif::ProgressBar;
use lattice_defs::Model;
use lattice_defs::model::{LevelRef, TimeGrain};
use roaring::RoaringBitmap;

use super::base::BaseTable;
use super::base::MeasureSpec;
use super::base_pass::merge_parts;
use super::lattice::{Closing, FactInputs, reorder, time_grain};
use super::{Merged, Plan, build_lattice};
use crate::Result;
use crate::store::encoding::{Encoding, MetricCodes, metric_period};
use crate::store::time::{NO_PERIOD, TimeAxis};
use crate::store::{Cube, Cuboid, MeasureColumn};

/// What a refresh reuses of the cube it brings up to date: the cube, and each fact's new base
/// rows (the delta's, sorted as the build sorts them).
pub(crate) struct Prior<'a> {
    pub cube: &'a Cube,
    pub news: Vec<BaseTable>,
}

/// How a level's codes of old rows compare with the refreshed encoding's.
#[derive(Debug, Clone, PartialEq)]
enum Stale {
    /// Every row may be coded otherwise (the dictionary or the key codes changed).
    All,
    /// The rows of these axis periods may be (a per-period band decided again).
    Periods(RoaringBitmap),
}

/// How one planned cuboid is made.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Way {
    Rebuild,
    /// Merged with the cube's cuboid at this index.
    Combine(usize),
    /// The cube's cuboid at this index keeps its cells outside `members` (of the cuboid's
    /// finest time level, at `level`); theirs come from the rows of `periods` (with the
    /// undated rows when `undated`).
    Replace {
        prior: usize,
        level: usize,
        members: Vec<u32>,
        periods: Vec<u32>,
        undated: bool,
    },
}

/// The base rows cuboids merged one way are built from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Rows {
    /// The new rows.
    New,
    /// The rows of these periods (and the undated ones when `undated`).
    Periods { periods: Vec<u32>, undated: bool },
}

impl Way {
    /// The rows the cuboid is merged from; `None` for one built again.
    fn rows(&self) -> Option<Rows> {
        match self {
            Way::Rebuild => None,
            Way::Combine(_) => Some(Rows::New),
            Way::Replace {
                periods, undated, ..
            } => Some(Rows::Periods {
                periods: periods.clone(),
                undated: *undated,
            }),
        }
    }
}

/// The cuboids of `plans` for the refreshed cube: `inputs` holds every fact's whole base rows
/// (old and new) and closing periods (see the module docs).
pub(crate) fn merge_cuboids(
    model: &Model,
    dims: &Encoding,
    inputs: &[FactInputs<'_>],
    plans: &[Plan],
    prior: &Prior<'_>,
    bar: &ProgressBar,
) -> Result<(Vec<Cuboid>, Merged)> {
    let cube = prior.cube;
    let stale = stale_levels(model, cube, dims);
    let periods: Vec<FactPeriods> = inputs
        .iter()
        .zip(&prior.news)
        .enumerate()
        .map(|(f, (whole, new))| FactPeriods {
            all: whole.base.periods(),
            new: new.periods(),
            new_undated: new.codes.last().is_some_and(|c| c.contains(&NO_PERIOD)),
            closing: Closing::from_periods(&cube_periods(cube, f), dims, model),
        })
        .collect();
    let ways: Vec<Way> = plans
        .iter()
        .map(|p| {
            way(
                model,
                dims,
                cube,
                &stale,
                &inputs[p.fact],
                &periods[p.fact],
                p,
            )
        })
        .collect();
    let mut merged = Merged::default();
    for w in &ways {
        match w {
            Way::Rebuild => merged.rebuilt += 1,
            Way::Combine(_) => merged.combined += 1,
            Way::Replace { .. } => merged.replaced += 1,
        }
    }
    tracing::info!(
        combined = merged.combined,
        replaced = merged.replaced,
        rebuilt = merged.rebuilt,
        "refresh merges cuboids"
    );
    let mut groups: HashMap<(usize, Rows), Vec<usize>> = HashMap::new();
    for (i, (p, w)) in plans.iter().zip(&ways).enumerate() {
        if let Some(rows) = w.rows() {
            groups.entry((p.fact, rows)).or_default().push(i);
        }
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort();
    let old_axis = cube.encoding.time.as_ref();
    let mut out: Vec<Option<Cuboid>> = (0..plans.len()).map(|_| None).collect();
    for ((fact, rows), members) in groups {
        let whole = &inputs[fact];
        let started = std::time::Instant::now();
        let subset;
        let table: &BaseTable = match &rows {
            Rows::New => &prior.news[fact],
            Rows::Periods { periods, undated } => {
                let keep: RoaringBitmap = periods.iter().copied().collect();
                subset = whole.base.rows_where(|p| match p {
                    NO_PERIOD => *undated,
                    p => keep.contains(p),
                });
                &subset
            }
        };
        let closing = Closing::new(table, dims, model);
        let group_inputs: Vec<FactInputs<'_>> = inputs
            .iter()
            .enumerate()
            .map(|(f, i)| match f == fact {
                true => FactInputs::new(model, dims, f, table, &closing),
                false => FactInputs::new(model, dims, f, i.base, i.closing),
            })
            .collect();
        let sub: Vec<Plan> = members.iter().map(|&i| plans[i].clone()).collect();
        let slots = (0..sub.len()).map(|_| None).collect();
        let built = build_lattice(
            model,
            dims,
            &group_inputs,
            &sub,
            slots,
            &ProgressBar::hidden(),
        )?;
        for (&i, mut made) in members.iter().zip(built) {
            made.parent = made.parent.map(|j| members[j]);
            let specs = &whole.base.specs;
            let (old, new) = match &ways[i] {
                Way::Rebuild => continue,
                Way::Combine(at) => {
                    let old = with_axis(model, &cube.cuboids[*at], old_axis, dims.time.as_ref());
                    let finest = finest_time(model, &old.levels);
                    let old_ok = counted(&old, finest, &periods[fact].closing, whole.closing);
                    let new_ok = counted(&made, finest, &closing, whole.closing);
                    (
                        unclosed_dropped(old, specs, &old_ok),
                        unclosed_dropped(made, specs, &new_ok),
                    )
                }
                Way::Replace {
                    prior: at,
                    level,
                    members,
                    ..
                } => {
                    let old = with_axis(model, &cube.cuboids[*at], old_axis, dims.time.as_ref());
                    let kept: Vec<usize> = (0..old.len())
                        .filter(|&c| members.binary_search(&old.codes[*level][c]).is_err())
                        .collect();
                    (cells(old, &kept), made)
                }
            };
            let parent = new.parent;
            out[i] = Some(Cuboid {
                parent,
                ..merge_parts(old, new, specs)
            });
            bar.inc(1);
        }
        tracing::debug!(
            fact = %model.facts[fact].name,
            new_rows_only = rows == Rows::New,
            rows = table.len(),
            cuboids = members.len(),
            secs = started.elapsed().as_secs_f64(),
            "merged cuboids"
        );
    }
    // The rest as a build builds them: from the smallest cuboid made (merged ones included)
    // that derives them, else from every base row.
    let started = std::time::Instant::now();
    let cuboids = build_lattice(model, dims, inputs, plans, out, bar)?;
    tracing::debug!(
        cuboids = merged.rebuilt,
        secs = started.elapsed().as_secs_f64(),
        "built cuboids again"
    );
    Ok((cuboids, merged))
}

/// The periods the cube's fact had rows in.
fn cube_periods(cube: &Cube, fact: usize) -> RoaringBitmap {
    cube.bases
        .get(fact)
        .and_then(Option::as_ref)
        .map(|b| b.periods.clone())
        .unwrap_or_default()
}

/// The periods of a fact's rows, of its new rows, and of its old rows' closing.
struct FactPeriods {
    all: RoaringBitmap,
    new: RoaringBitmap,
    /// Whether some new rows have no date.
    new_undated: bool,
    /// The closing periods of the fact's old rows.
    closing: Closing,
}

/// How planned cuboid `plan` is made (see [`Way`]).
fn way(
    model: &Model,
    dims: &Encoding,
    cube: &Cube,
    stale: &HashMap<(usize, usize), Stale>,
    whole: &FactInputs<'_>,
    fact_periods: &FactPeriods,
    plan: &Plan,
) -> Way {
    let Some(at) = cube.cuboids.iter().position(|c| {
        c.fact == plan.fact && c.levels == plan.levels && c.measure_ids == whole.base.measure_ids
    }) else {
        return Way::Rebuild;
    };
    let mut periods = RoaringBitmap::new();
    for l in &plan.levels {
        match stale.get(&(l.dim, l.level)) {
            None => {}
            Some(Stale::All) => return Way::Rebuild,
            Some(Stale::Periods(p)) => periods |= p,
        }
    }
    if periods.is_empty() {
        return Way::Combine(at);
    }
    let (Some((level, grain)), Some(axis)) = (finest_time(model, &plan.levels), &dims.time) else {
        return Way::Rebuild;
    };
    // Every member a change or a new row touches is built again whole.
    periods |= &fact_periods.new;
    let mut members: Vec<u32> = periods.iter().map(|p| axis.code(p, grain)).collect();
    let undated = fact_periods.new_undated;
    if undated {
        members.push(axis.unknown_code(grain));
    }
    members.sort_unstable();
    members.dedup();
    let periods = fact_periods
        .all
        .iter()
        .filter(|p| members.binary_search(&axis.code(*p, grain)).is_ok())
        .collect();
    Way::Replace {
        prior: at,
        level,
        members,
        periods,
        undated,
    }
}

/// The position and grain of the finest time level among `levels`.
fn finest_time(model: &Model, levels: &[LevelRef]) -> Option<(usize, TimeGrain)> {
    levels
        .iter()
        .enumerate()
        .filter_map(|(k, l)| time_grain(model, *l).map(|g| (k, g)))
        .max_by_key(|(_, g)| *g)
}

/// Per cell of `c` (built over periods closing as `from`), whether its semi-additive values
/// count in the refreshed cube: where its time member (or, without time, the fact) still
/// closes at the same period in `whole`.
fn counted(
    c: &Cuboid,
    finest: Option<(usize, TimeGrain)>,
    from: &Closing,
    whole: &Closing,
) -> Vec<bool> {
    match finest {
        None => vec![from.latest() == whole.latest(); c.len()],
        Some((k, g)) => c.codes[k]
            .iter()
            .map(|&m| from.closing_of(g, m) == whole.closing_of(g, m))
            .collect(),
    }
}

/// The levels whose old rows the refreshed encoding `dims` may code otherwise than `cube`
/// did; a level absent is coded as before. The time dimension's codes never change (the axis
/// only grows; its `unknown` is moved by [`with_axis`]).
fn stale_levels(model: &Model, cube: &Cube, dims: &Encoding) -> HashMap<(usize, usize), Stale> {
    let mut out = HashMap::new();
    let axis = dims.time.as_ref();
    for (d, dim) in model.dimensions.iter().enumerate() {
        if model.time_dimension() == Some(d) {
            continue;
        }
        let via_changed = cube.encoding.via.get(d) != dims.via.get(d);
        for l in 0..dim.levels.len() {
            let dict_changed = cube.levels.get(d).and_then(|v| v.get(l)) != dims.dicts[d].get(l);
            let stale = match (&cube.encoding.codes[d], &dims.codes[d]) {
                _ if via_changed || dict_changed => Some(Stale::All),
                (Some(was), Some(is)) if was.by_key.get(l) != is.by_key.get(l) => Some(Stale::All),
                (Some(was), Some(is)) => match (&was.metric[l], &is.metric[l]) {
                    (None, None) => None,
                    (Some(a), Some(b)) => metric_stale(a, b, axis),
                    _ => Some(Stale::All),
                },
                (None, None) => None,
                _ => Some(Stale::All),
            };
            if let Some(s) = stale {
                out.insert((d, l), s);
            }
        }
    }
    out
}

/// The axis periods whose band codes differ between `was` and `is` (the same band's codes
/// before and after a refresh), `None` when none does.
fn metric_stale(was: &MetricCodes, is: &MetricCodes, axis: Option<&TimeAxis>) -> Option<Stale> {
    if was.periods == 0 {
        return None;
    }
    if is.periods == 0
        || was.grain != is.grain
        || was.first != is.first
        || was.unknown != is.unknown
        || is.periods < was.periods
        || was.codes.len() / was.periods != is.codes.len() / is.periods
    {
        return Some(Stale::All);
    }
    let (Some(grain), Some(axis)) = (was.grain, axis) else {
        return (was.codes != is.codes).then_some(Stale::All);
    };
    let mut changed = vec![false; was.periods];
    for (old, new) in was
        .codes
        .chunks_exact(was.periods)
        .zip(is.codes.chunks_exact(is.periods))
    {
        for (p, (a, b)) in old.iter().zip(new).enumerate() {
            changed[p] |= a != b;
        }
    }
    if !changed.contains(&true) {
        return None;
    }
    let periods: RoaringBitmap = (0..axis.len as u32)
        .filter(|&p| {
            let m = metric_period(Some(grain), was.first, Some(axis), p);
            changed.get(m).copied().unwrap_or(false)
        })
        .collect();
    Some(Stale::Periods(periods))
}

/// `c` with its time levels' `unknown` moved where the refreshed axis has it (after its new
/// periods); every other code is the same.
fn with_axis(model: &Model, c: &Cuboid, was: Option<&TimeAxis>, is: Option<&TimeAxis>) -> Cuboid {
    let mut c = c.clone();
    let (Some(was), Some(is)) = (was, is) else {
        return c;
    };
    for (k, l) in c.levels.iter().enumerate() {
        let Some(g) = time_grain(model, *l) else {
            continue;
        };
        let (from, to) = (was.unknown_code(g), is.unknown_code(g));
        if from != to {
            c.codes[k]
                .iter_mut()
                .filter(|x| **x == from)
                .for_each(|x| *x = to);
        }
    }
    c
}

/// The cells `rows` (in order) of `c`.
fn cells(c: Cuboid, rows: &[usize]) -> Cuboid {
    Cuboid {
        codes: c
            .codes
            .iter()
            .map(|col| rows.iter().map(|&r| col[r]).collect())
            .collect(),
        measures: c.measures.into_iter().map(|m| reorder(m, rows)).collect(),
        ..c
    }
}

/// `c` with its semi-additive values left out of the cells where `ok` is false (their closing
/// period is no longer their time member's): each as a cell with no closing row holds it.
fn unclosed_dropped(mut c: Cuboid, specs: &[MeasureSpec], ok: &[bool]) -> Cuboid {
    for (spec, col) in specs.iter().zip(&mut c.measures) {
        if !spec.semi {
            continue;
        }
        let dropped = ok
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i);
        match col {
            MeasureColumn::Count(v) => dropped.for_each(|i| v[i] = 0),
            MeasureColumn::Decimal { values, valid, .. } => dropped.for_each(|i| {
                values[i] = 0;
                valid[i] = false;
            }),
            // Distinct sets count whatever the period; a cuboid holds no other kind.
            _ => {}
        }
    }
    c
}
