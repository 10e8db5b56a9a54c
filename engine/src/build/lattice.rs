//! Stage 3: the lattice. Each chosen cuboid is aggregated from its smallest already-built
//! parent that can derive every one of its levels (the same level, a finer level of the same
//! hierarchy, or a finer time grain), else from the fact's base table. Semi-additive measures
//! keep only closing-period contributions (see [`crate::store::Cuboid`]).

use std::collections::HashMap;

use lattice_defs::model::{FactId, LevelKind, LevelRef, Model, TimeGrain};
use roaring::RoaringBitmap;

use super::base::{
    BaseTable, MeasureSpec, column_decimal_scale, empty_column, merge_decimal, push_empty,
};
use crate::store::encoding::Encoding;
use crate::store::time::coarsen;
use crate::store::{Column, Cuboid, LevelDict, MeasureColumn};
use crate::{EngineError, Result};

/// Closing periods of a fact: per grain, per member, the last period present in the fact.
#[derive(Debug)]
pub(crate) struct Closing {
    by_grain: HashMap<TimeGrain, Vec<Option<u32>>>,
    latest: Option<u32>,
}

impl Closing {
    pub fn new(base: &BaseTable, dims: &Encoding, model: &Model) -> Closing {
        Closing::from_periods(&base.periods(), dims, model)
    }

    /// The closing periods of a fact with rows in `periods`.
    pub fn from_periods(periods: &RoaringBitmap, dims: &Encoding, model: &Model) -> Closing {
        let mut by_grain = HashMap::new();
        let dated = || periods.iter();
        let latest = periods.max();
        if let (Some(axis), Some(t)) = (&dims.time, model.time_dimension()) {
            for level in &model.dimensions[t].levels {
                let LevelKind::Time(g) = level.kind else {
                    continue;
                };
                // One slot per member, and one for `unknown` (never closing).
                let mut closing = vec![None; axis.names(g).len() + 1];
                for p in dated() {
                    let m = axis.code(p, g) as usize;
                    closing[m] = Some(closing[m].map_or(p, |c: u32| c.max(p)));
                }
                by_grain.insert(g, closing);
            }
        }
        Closing { by_grain, latest }
    }

    /// Whether a contribution at period `p` is the closing one for the member of `grain`
    /// containing it (or the latest overall when `grain` is None).
    pub(crate) fn is_closing(&self, p: u32, grain: Option<TimeGrain>, dims: &Encoding) -> bool {
        match (grain, &dims.time) {
            (Some(g), Some(axis)) => self.by_grain[&g][axis.code(p, g) as usize] == Some(p),
            _ => self.latest == Some(p),
        }
    }

    /// The closing period of `member` of `grain`, if it has periods.
    pub(crate) fn closing_of(&self, grain: TimeGrain, member: u32) -> Option<u32> {
        self.by_grain.get(&grain).and_then(|v| v[member as usize])
    }

    /// The latest period of the fact (the closing one of a cuboid without time).
    pub(crate) fn latest(&self) -> Option<u32> {
        self.latest
    }
}

/// The time grain of a level, if it is a time level.
pub(crate) fn time_grain(model: &Model, l: LevelRef) -> Option<TimeGrain> {
    match model.dimensions[l.dim].levels[l.level].kind {
        LevelKind::Time(g) => Some(g),
        _ => None,
    }
}

/// How a target level's code is obtained from a parent cuboid's codes.
enum CodeFrom {
    Copy(usize),
    Time {
        from: usize,
        fine: TimeGrain,
        coarse: TimeGrain,
    },
    Parent {
        from: usize,
        map: Vec<u32>,
    },
}

/// Parent array from `child` to `ancestor` (levels of one table dimension), if every child
/// member lies under one ancestor member.
pub(crate) fn parent_array(
    dims: &Encoding,
    dim: usize,
    child: usize,
    ancestor: usize,
) -> Option<Vec<u32>> {
    let codes = dims.codes[dim].as_ref()?;
    let (c, a) = (
        codes.by_key[child].as_ref()?,
        codes.by_key[ancestor].as_ref()?,
    );
    let mut map = vec![u32::MAX; dims.dicts[dim][child].len()];
    for (cc, ac) in c.iter().zip(a) {
        let slot = &mut map[*cc as usize];
        if *slot == u32::MAX {
            *slot = *ac;
        } else if *slot != *ac {
            return None;
        }
    }
    Some(map)
}

fn derivation(
    model: &Model,
    dims: &Encoding,
    parent: &[LevelRef],
    target: LevelRef,
) -> Option<CodeFrom> {
    if let Some(i) = parent.iter().position(|l| *l == target) {
        return Some(CodeFrom::Copy(i));
    }
    if let Some(coarse) = time_grain(model, target) {
        return parent.iter().enumerate().find_map(|(i, l)| {
            let fine = time_grain(model, *l)?;
            (l.dim == target.dim && fine > coarse).then_some(CodeFrom::Time {
                from: i,
                fine,
                coarse,
            })
        });
    }
    let h = &model.dimensions[target.dim].hierarchy;
    let pos = h.iter().position(|x| *x == target.level)?;
    parent.iter().enumerate().find_map(|(i, l)| {
        let lpos = h.iter().position(|x| *x == l.level)?;
        if l.dim != target.dim || lpos <= pos {
            return None;
        }
        dims.parents
            .get(&(target.dim, l.level, target.level))
            .cloned()
            .flatten()
            .map(|map| CodeFrom::Parent { from: i, map })
    })
}

/// Whether `parent` can derive every level of `target`.
pub(crate) fn can_derive(
    model: &Model,
    dims: &Encoding,
    parent: &[LevelRef],
    target: &[LevelRef],
) -> bool {
    target
        .iter()
        .all(|t| derivation(model, dims, parent, *t).is_some())
}

/// What every cuboid of one fact is built from.
pub(crate) struct FactInputs<'a> {
    pub model: &'a Model,
    pub dims: &'a Encoding,
    /// Every level's members: the encoding's during a build, the cube's once built (the
    /// build moves them there).
    pub dicts: &'a [Vec<LevelDict>],
    pub fact: FactId,
    pub base: &'a BaseTable,
    pub closing: &'a Closing,
}

impl<'a> FactInputs<'a> {
    pub fn new(
        model: &'a Model,
        dims: &'a Encoding,
        fact: FactId,
        base: &'a BaseTable,
        closing: &'a Closing,
    ) -> FactInputs<'a> {
        FactInputs {
            model,
            dims,
            dicts: &dims.dicts,
            fact,
            base,
            closing,
        }
    }

    /// The same inputs reading the members of every level from `dicts` (a built cube's).
    pub fn with_dicts(self, dicts: &'a [Vec<LevelDict>]) -> FactInputs<'a> {
        FactInputs { dicts, ..self }
    }
}

/// Aggregates `levels` of the fact from a built cuboid (`parent`, at `parent_index`); the
/// cuboids no built cuboid derives come from the base table ([`super::scan`]).
pub(crate) fn aggregate(
    inputs: &FactInputs<'_>,
    parent: &Cuboid,
    parent_index: usize,
    levels: &[LevelRef],
) -> Result<Cuboid> {
    let (dims, base) = (inputs.dims, inputs.base);
    let rows = parent.len();
    let (row_codes, semi_ok) = parent_rows(inputs, parent, levels)?;
    let mut cell_of_row = Vec::with_capacity(rows);
    let keys = group_rows(&row_codes, rows, levels, dims, &mut cell_of_row);
    drop(row_codes);
    let width = levels.len();
    let n_cells = keys
        .len()
        .checked_div(width)
        .unwrap_or(usize::from(rows > 0));
    let mut out = empty_cells(&base.specs, &parent.measures, n_cells);
    merge_rows(
        &base.specs,
        &parent.measures,
        &mut out,
        &cell_of_row,
        &semi_ok,
    )?;
    let (order, codes) = in_code_order(&keys, width, n_cells);
    let measures = out.into_iter().map(|col| reorder(col, &order)).collect();
    Ok(Cuboid {
        fact: inputs.fact,
        levels: levels.to_vec(),
        codes,
        measure_ids: base.measure_ids.clone(),
        measures,
        parent: Some(parent_index),
    })
}

/// Each row of cuboid `c` at `levels`: their codes (per level, per row), and, for a fact with
/// semi-additive measures, whether its semi-additive values count (empty otherwise).
// One loop over the rows for both: the rows' codes are read once, while in cache.
fn parent_rows(
    inputs: &FactInputs<'_>,
    c: &Cuboid,
    levels: &[LevelRef],
) -> Result<(Vec<Vec<u32>>, Vec<bool>)> {
    let FactInputs {
        model,
        dims,
        base,
        closing,
        ..
    } = *inputs;
    // The finest time level of the cuboid decides its cells' closing periods.
    let target_grain = levels.iter().filter_map(|l| time_grain(model, *l)).max();
    let rows = c.len();
    // Only facts with semi-additive measures need to know which rows close their period.
    let any_semi = base.specs.iter().any(|s| s.semi);
    let mut semi_ok = Vec::new();
    let derive: Vec<CodeFrom> = levels
        .iter()
        .map(|t| derivation(model, dims, &c.levels, *t))
        .collect::<Option<_>>()
        .ok_or_else(|| EngineError::Internal("parent cannot derive the cuboid".into()))?;
    let parent_time = c
        .levels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| time_grain(model, *l).map(|g| (i, g)))
        .max_by_key(|(_, g)| *g);
    let mut row_codes: Vec<Vec<u32>> = vec![Vec::with_capacity(rows); levels.len()];
    for r in 0..rows {
        for (k, d) in derive.iter().enumerate() {
            let code = match d {
                CodeFrom::Copy(i) => c.codes[*i][r],
                CodeFrom::Parent { from, map } => map[c.codes[*from][r] as usize],
                CodeFrom::Time { from, fine, coarse } => {
                    let axis = dims.time.as_ref().expect("time levels need an axis");
                    if c.codes[*from][r] == axis.unknown_code(*fine) {
                        row_codes[k].push(axis.unknown_code(*coarse));
                        continue;
                    }
                    let first_fine = coarsen(axis.first, axis.grain, *fine);
                    let abs = first_fine + c.codes[*from][r] as i64;
                    (coarsen(abs, *fine, *coarse) - coarsen(axis.first, axis.grain, *coarse)) as u32
                }
            };
            row_codes[k].push(code);
        }
        // The parent cell's semi-additive values are at its closing period; they count if
        // that is also the closing period of the target cell's time member.
        if !any_semi {
            continue;
        }
        semi_ok.push(match parent_time {
            None => true,
            Some((i, g)) => closing
                .closing_of(g, c.codes[i][r])
                .is_some_and(|p| closing.is_closing(p, target_grain, dims)),
        });
    }
    Ok((row_codes, semi_ok))
}

/// `n_cells` empty cells of each measure (`specs`, at the scales of `columns`).
fn empty_cells(
    specs: &[MeasureSpec],
    columns: &[MeasureColumn],
    n_cells: usize,
) -> Vec<MeasureColumn> {
    specs
        .iter()
        .zip(columns)
        .map(|(s, c)| {
            let mut col = empty_column(*s, column_decimal_scale(c));
            for _ in 0..n_cells {
                push_empty(&mut col);
            }
            col
        })
        .collect()
}

/// Merges each row of the measure `columns` into its cell (`cell_of_row`) of `out`, column by
/// column; a semi-additive measure's rows only where `semi_ok`.
fn merge_rows(
    specs: &[MeasureSpec],
    columns: &[MeasureColumn],
    out: &mut [MeasureColumn],
    cell_of_row: &[u32],
    semi_ok: &[bool],
) -> Result<()> {
    for ((spec, src), dst) in specs.iter().zip(columns).zip(out.iter_mut()) {
        let counts = |r: usize| !spec.semi || semi_ok[r];
        match (src, dst) {
            (MeasureColumn::Count(s), MeasureColumn::Count(d)) => {
                for (r, cell) in cell_of_row.iter().map(|c| *c as usize).enumerate() {
                    if counts(r) {
                        d[cell] += s[r];
                    }
                }
            }
            (
                MeasureColumn::Decimal {
                    values: sv,
                    valid: sok,
                    ..
                },
                MeasureColumn::Decimal { values, valid, .. },
            ) => {
                for (r, cell) in cell_of_row.iter().map(|c| *c as usize).enumerate() {
                    if counts(r) && sok[r] {
                        merge_decimal(values, valid, cell, sv[r], spec.agg);
                    }
                }
            }
            (MeasureColumn::Distinct(s), MeasureColumn::Distinct(d)) => {
                for (r, cell) in cell_of_row.iter().map(|c| *c as usize).enumerate() {
                    d[cell] |= &s[r];
                }
            }
            _ => return Err(EngineError::Internal("measure column kinds differ".into())),
        }
    }
    Ok(())
}

/// The cells (their codes flat in `keys`, `width` a cell) in code order: the order, and each
/// level's codes in it.
pub(crate) fn in_code_order(
    keys: &[u32],
    width: usize,
    n_cells: usize,
) -> (Vec<usize>, Vec<Column<u32>>) {
    let key = |c: usize| &keys[c * width..(c + 1) * width];
    let mut order: Vec<usize> = (0..n_cells).collect();
    order.sort_unstable_by(|a, b| key(*a).cmp(key(*b)));
    let codes = (0..width)
        .map(|k| order.iter().map(|&c| keys[c * width + k]).collect())
        .collect();
    (order, codes)
}

/// Cuboids with at most this many possible cells group rows through an array, not a hash map.
const DENSE_SLOTS: usize = 1 << 22;

/// Assigns each row its cell: rows with the same codes share one. Returns each row's cell and
/// the cells' codes, flat (`levels.len()` codes per cell). Codes are packed into one `u64`
/// when the levels' member counts allow (the common case), else hashed as vectors.
// Row `r` indexes every level's code column at once; an iterator would not read better.
#[allow(clippy::needless_range_loop)]
fn group_rows(
    row_codes: &[Vec<u32>],
    rows: usize,
    levels: &[LevelRef],
    dims: &Encoding,
    cell_of_row: &mut Vec<u32>,
) -> Vec<u32> {
    let bits: Vec<u32> = levels
        .iter()
        .map(|l| {
            let n = dims.dicts[l.dim][l.level].len().max(1) as u64;
            64 - n.leading_zeros()
        })
        .collect();
    let width = levels.len();
    cell_of_row.clear();
    let mut keys: Vec<u32> = Vec::new();
    let push_key = |keys: &mut Vec<u32>, r: usize| keys.extend(row_codes.iter().map(|c| c[r]));
    let cards: Vec<usize> = levels
        .iter()
        .map(|l| dims.dicts[l.dim][l.level].len().max(1))
        .collect();
    let slots = cards.iter().try_fold(1usize, |acc, c| acc.checked_mul(*c));
    let mut n_cells = 0u32;
    // The array is filled before use, so it must not dwarf the rows (a small parent would
    // spend its time zeroing pages).
    let dense_limit = DENSE_SLOTS.min(rows.saturating_mul(4).max(4096));
    if let Some(slots) = slots.filter(|s| *s <= dense_limit) {
        // Few possible cells: a mixed-radix index into an array, no hashing. Each row's slot
        // is computed column by column in place of its cell (`slots` fits a u32), which then
        // replaces it.
        cell_of_row.resize(rows, 0u32);
        for (codes, card) in row_codes.iter().zip(&cards) {
            let card = *card as u32;
            for (at, code) in cell_of_row.iter_mut().zip(codes) {
                *at = *at * card + code;
            }
        }
        let mut index = vec![u32::MAX; slots];
        for (r, at) in cell_of_row.iter_mut().enumerate() {
            let slot = &mut index[*at as usize];
            if *slot == u32::MAX {
                *slot = n_cells;
                n_cells += 1;
                push_key(&mut keys, r);
            }
            *at = *slot;
        }
    } else if bits.iter().sum::<u32>() <= 64 {
        let mut index: HashMap<u64, u32> = HashMap::with_capacity(rows.min(1 << 20));
        for r in 0..rows {
            let mut packed = 0u64;
            for (codes, b) in row_codes.iter().zip(&bits) {
                packed = (packed << b) | u64::from(codes[r]);
            }
            let cell = *index.entry(packed).or_insert_with(|| {
                push_key(&mut keys, r);
                n_cells += 1;
                n_cells - 1
            });
            cell_of_row.push(cell);
        }
    } else {
        let mut index: HashMap<Vec<u32>, u32> = HashMap::new();
        for r in 0..rows {
            let key: Vec<u32> = row_codes.iter().map(|c| c[r]).collect();
            let cell = *index.entry(key).or_insert_with(|| {
                push_key(&mut keys, r);
                n_cells += 1;
                n_cells - 1
            });
            cell_of_row.push(cell);
        }
    }
    debug_assert_eq!(keys.len(), n_cells as usize * width);
    keys
}

/// `col`'s values in `order` (row numbers, each at most once): distinct sets are moved, not
/// copied.
pub(crate) fn reorder(col: MeasureColumn, order: &[usize]) -> MeasureColumn {
    match col {
        MeasureColumn::Distinct(mut v) => {
            MeasureColumn::Distinct(order.iter().map(|&i| std::mem::take(&mut v[i])).collect())
        }
        col => col.gather(order),
    }
}
