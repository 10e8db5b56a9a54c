//! The cuboid path: filter a cuboid's cells by member-code masks and re-aggregate them into the
//! query's grain, rolling members up through parent arrays where the cuboid is finer.

use lattice_defs::model::{Agg, LevelRef, MeasureId, MeasureKind, OverTime};
use roaring::{MultiOps, RoaringBitmap};

use super::group::{Acc, AggRequest, Grouped, Grouper};
use super::resolve::ResolvedFilter;
use crate::store::{Cube, Cuboid, MeasureColumn};

/// How a level's code is read from a cuboid: column `col`, through `map` when the cuboid holds
/// a finer level of the same hierarchy.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LevelRead<'a> {
    pub col: usize,
    pub map: Option<&'a [u32]>,
}

impl LevelRead<'_> {
    #[inline]
    pub(crate) fn code(&self, c: u32) -> u32 {
        self.map.map_or(c, |m| m[c as usize])
    }
}

/// How `cuboid` yields `target`, if it can.
pub(crate) fn derive<'a>(
    cube: &'a Cube,
    cuboid: &Cuboid,
    target: LevelRef,
) -> Option<LevelRead<'a>> {
    if let Some(col) = cuboid.levels.iter().position(|l| *l == target) {
        return Some(LevelRead { col, map: None });
    }
    cuboid.levels.iter().enumerate().find_map(|(col, l)| {
        if l.dim != target.dim {
            return None;
        }
        cube.parent_map(l.dim, l.level, target.level)
            .map(|map| LevelRead {
                col,
                map: Some(map),
            })
    })
}

/// The finest-time codes at which semi-additive measures are read: for each group's time
/// member (of the finest time level the request groups by; one group when none), the latest
/// period present in the fact that passes every time filter. `None` when the fact has no
/// time.
pub(crate) fn closing_periods(
    cube: &Cube,
    fact: usize,
    levels: &[LevelRef],
    filters: &[ResolvedFilter],
) -> Option<RoaringBitmap> {
    let finest = cube.index.finest_time?;
    cube.model.facts[fact].time.as_ref()?;
    let to = |l: LevelRef| -> Option<&[u32]> {
        if l == finest {
            None
        } else {
            cube.parent_map(finest.dim, finest.level, l.level)
        }
    };
    let time_filters: Vec<(Option<&[u32]>, &RoaringBitmap)> = filters
        .iter()
        .filter(|f| f.level.dim == finest.dim)
        .map(|f| (to(f.level), &f.members))
        .collect();
    let group = finest_time_level(cube, levels).map(|(_, l)| to(l));
    let mut best: std::collections::BTreeMap<u32, u32> = Default::default();
    for p in &cube.index.present[fact] {
        let at = |m: Option<&[u32]>| m.map_or(p, |m| m[p as usize]);
        if time_filters.iter().all(|(m, set)| set.contains(at(*m))) {
            let g = group.map_or(0, at);
            let e = best.entry(g).or_insert(p);
            *e = (*e).max(p);
        }
    }
    Some(best.into_values().collect())
}

/// One mask per filtered column of `cuboid`: which of its members pass every filter on it.
pub(crate) fn filter_masks(
    cube: &Cube,
    cuboid: &Cuboid,
    filters: &[ResolvedFilter],
) -> Vec<(usize, Vec<bool>)> {
    let mut masks: Vec<(usize, Vec<bool>)> = Vec::new();
    for f in filters {
        let Some(d) = derive(cube, cuboid, f.level) else {
            continue;
        };
        let slot = match masks.iter().position(|(c, _)| *c == d.col) {
            Some(i) => i,
            None => {
                let size = cube.members(cuboid.levels[d.col]).len();
                masks.push((d.col, vec![true; size]));
                masks.len() - 1
            }
        };
        for (c, keep) in masks[slot].1.iter_mut().enumerate() {
            *keep = *keep && f.members.contains(d.code(c as u32));
        }
    }
    masks
}

/// Whether `cell` passes every mask of [`filter_masks`].
#[inline]
pub(crate) fn passes(cuboid: &Cuboid, masks: &[(usize, Vec<bool>)], cell: usize) -> bool {
    masks
        .iter()
        .all(|(col, mask)| mask[cuboid.codes[*col][cell] as usize])
}

/// The finest time level among `levels` (deepest in the time hierarchy), with its position.
fn finest_time_level(cube: &Cube, levels: &[LevelRef]) -> Option<(usize, LevelRef)> {
    let t = cube.index.finest_time?.dim;
    let hierarchy = &cube.model.dimensions[t].hierarchy;
    levels
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, l)| l.dim == t)
        .max_by_key(|(_, l)| hierarchy.iter().position(|h| *h == l.level))
}

/// Aggregates `req` from `cuboid`, which must be able to derive every level of the request.
pub(crate) fn scan(
    cube: &Cube,
    cuboid: &Cuboid,
    req: &AggRequest<'_>,
    closing: Option<&RoaringBitmap>,
) -> Grouped {
    let model = &cube.model;
    let (cell_group, keys, groups) = group_cells(cube, cuboid, req);
    let closing_mask = closing_mask(cube, cuboid, closing);
    let mut accs = Vec::with_capacity(req.measures.len());
    for &m in req.measures {
        if let Some(acc) = accumulate(cube, cuboid, m, &cell_group, groups, &closing_mask) {
            accs.push(acc);
        }
    }
    Grouped {
        levels: req.levels.to_vec(),
        keys,
        measures: req
            .measures
            .iter()
            .copied()
            .filter(|m| matches!(model.measures[*m].kind, MeasureKind::Aggregate { .. }))
            .collect(),
        accs,
    }
}

/// Pass 1 of [`scan`]: the group of every cell of `cuboid` (`u32::MAX`: filtered out), the
/// groups' member codes (one run of `req.levels.len()` codes per group, in group order) and
/// the number of groups.
fn group_cells(cube: &Cube, cuboid: &Cuboid, req: &AggRequest<'_>) -> (Vec<u32>, Vec<u32>, usize) {
    let masks = filter_masks(cube, cuboid, req.filters);
    let group: Vec<LevelRead<'_>> = req
        .levels
        .iter()
        .filter_map(|l| derive(cube, cuboid, *l))
        .collect();
    let sizes: Vec<usize> = req.levels.iter().map(|l| cube.members(*l).len()).collect();
    let mut grouper = Grouper::new(&sizes);
    let mut keys: Vec<u32> = Vec::new();
    let mut groups = 0u32;
    let mut cell_group = vec![u32::MAX; cuboid.len()];
    let mut codes = vec![0u32; group.len()];
    for (cell, slot) in cell_group.iter_mut().enumerate() {
        if !passes(cuboid, &masks, cell) {
            continue;
        }
        for (k, d) in group.iter().enumerate() {
            codes[k] = d.code(cuboid.codes[d.col][cell]);
        }
        let g = grouper.group(&codes, groups);
        if g == groups {
            groups += 1;
            keys.extend_from_slice(&codes);
        }
        *slot = g;
    }
    (cell_group, keys, groups as usize)
}

/// Semi-additive measures read only the cells of each group's closing period: the column of
/// `cuboid`'s finest time level and which of its members hold a period of `closing`.
fn closing_mask(
    cube: &Cube,
    cuboid: &Cuboid,
    closing: Option<&RoaringBitmap>,
) -> Option<(usize, Vec<bool>)> {
    let set = closing?;
    let finest = cube.index.finest_time?;
    let (col, t) = finest_time_level(cube, &cuboid.levels)?;
    let map = if t == finest {
        None
    } else {
        cube.parent_map(finest.dim, finest.level, t.level)
    };
    let mut mask = vec![false; cube.members(t).len()];
    for p in set {
        mask[map.map_or(p, |m| m[p as usize]) as usize] = true;
    }
    Some((col, mask))
}

/// Pass 2 of [`scan`] for measure `m`: its accumulator over the `groups` groups of
/// `cell_group`; `None` for a measure that is not an aggregate.
///
/// The per-cell loops stay here, beside the `counts` closure they call, so that it inlines
/// into each of them; each loop is monomorphic over its column type.
fn accumulate(
    cube: &Cube,
    cuboid: &Cuboid,
    m: MeasureId,
    cell_group: &[u32],
    groups: usize,
    closing_mask: &Option<(usize, Vec<bool>)>,
) -> Option<Acc> {
    let MeasureKind::Aggregate { agg, over_time, .. } = &cube.model.measures[m].kind else {
        return None;
    };
    let semi = *over_time == OverTime::Last;
    let column = cuboid
        .measure_ids
        .iter()
        .position(|x| *x == m)
        .map(|j| &cuboid.measures[j]);
    let mut acc = Acc::new(*agg, cube.index.scales[m]);
    for _ in 0..groups {
        acc.push_empty();
    }
    let counts = |cell: usize| match (closing_mask, semi) {
        (Some((col, mask)), true) => mask[cuboid.codes[*col][cell] as usize],
        _ => true,
    };
    match (column, &mut acc) {
        (Some(MeasureColumn::Decimal { values, valid, .. }), Acc::Decimal { .. }) => {
            for (cell, g) in cell_group.iter().enumerate() {
                if *g != u32::MAX && valid[cell] && counts(cell) {
                    acc.add_decimal(*g as usize, values[cell]);
                }
            }
        }
        (Some(MeasureColumn::Count(values)), Acc::Count(out)) => {
            for (cell, g) in cell_group.iter().enumerate() {
                if *g != u32::MAX && counts(cell) {
                    out[*g as usize] += values[cell];
                }
            }
        }
        (Some(MeasureColumn::Distinct(sets)), Acc::Sets(out)) => {
            union_sets(cell_group, sets, out, |cell, g| {
                g != u32::MAX && counts(cell)
            });
        }
        _ => {}
    }
    debug_assert!(!matches!(agg, Agg::Distinct) || matches!(acc, Acc::Sets(_)));
    Some(acc)
}

/// Each group's distinct set in `out`: the union of `sets` over the cells `kept` assigns to it
/// (`kept` is generic, so it inlines into the per-cell loops).
///
/// Each group's sets are unioned at once: OR-ing them in one by one re-merges the growing
/// result every time (a group of a few thousand customer sets took a second at scale 10),
/// where a multi-way union promotes to bit maps lazily.
fn union_sets(
    cell_group: &[u32],
    sets: &[RoaringBitmap],
    out: &mut [RoaringBitmap],
    kept: impl Fn(usize, u32) -> bool,
) {
    let mut start = vec![0usize; out.len() + 1];
    for (cell, &g) in cell_group.iter().enumerate() {
        if kept(cell, g) {
            start[g as usize + 1] += 1;
        }
    }
    for g in 1..start.len() {
        start[g] += start[g - 1];
    }
    let mut cells = vec![0usize; start[out.len()]];
    let mut next = start.clone();
    for (cell, &g) in cell_group.iter().enumerate() {
        if kept(cell, g) {
            cells[next[g as usize]] = cell;
            next[g as usize] += 1;
        }
    }
    for (g, set) in out.iter_mut().enumerate() {
        *set = match &cells[start[g]..start[g + 1]] {
            [] => RoaringBitmap::new(),
            [one] => sets[*one].clone(),
            many => many.iter().map(|&c| &sets[c]).union(),
        };
    }
}
