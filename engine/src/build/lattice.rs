//! Stage 3: the lattice. Each chosen cuboid is aggregated from its smallest already-built
//! parent that can derive every one of its levels (the same level, a finer level of the same
//! hierarchy, or a finer time grain), else from the fact's base table. Semi-additive measures
//! keep only closing-period contributions (see [`crate::store::Cuboid`]).

use std::borrow::Cow;
use std::collections::HashMap;

use lattice_defs::model::{DimensionKind, FactId, LevelKind, LevelRef, Model, TimeGrain};

use super::base::{BaseTable, MeasureSpec, empty_column, merge_decimal, push_empty};
use super::dims::Dims;
use super::time::{NO_PERIOD, coarsen};
use crate::store::{Cuboid, MeasureColumn, NO_VALUE};
use crate::{EngineError, Result};

/// Closing periods of a fact: per grain, per member, the last period present in the fact.
#[derive(Debug)]
pub(crate) struct Closing {
    by_grain: HashMap<TimeGrain, Vec<Option<u32>>>,
    latest: Option<u32>,
}

impl Closing {
    pub fn new(base: &BaseTable, dims: &Dims, model: &Model) -> Closing {
        let mut by_grain = HashMap::new();
        let periods = base.codes.last().map(Vec::as_slice).unwrap_or(&[]);
        let dated = || periods.iter().copied().filter(|p| *p != NO_PERIOD);
        let latest = dated().max();
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
    fn is_closing(&self, p: u32, grain: Option<TimeGrain>, dims: &Dims) -> bool {
        match (grain, &dims.time) {
            (Some(g), Some(axis)) => self.by_grain[&g][axis.code(p, g) as usize] == Some(p),
            _ => self.latest == Some(p),
        }
    }

    fn closing_of(&self, grain: TimeGrain, member: u32) -> Option<u32> {
        self.by_grain.get(&grain).and_then(|v| v[member as usize])
    }
}

/// The time grain of a level, if it is a time level.
fn time_grain(model: &Model, l: LevelRef) -> Option<TimeGrain> {
    match model.dimensions[l.dim].levels[l.level].kind {
        LevelKind::Time(g) => Some(g),
        _ => None,
    }
}

/// Key code of dimension `dim` for base row `r` (following `via`).
pub(crate) fn base_key(
    model: &Model,
    dims: &Dims,
    base: &BaseTable,
    fact: FactId,
    dim: usize,
    r: usize,
) -> u32 {
    let f = &model.facts[fact];
    if let Some(i) = f.direct.iter().position(|d| *d == dim) {
        return base.codes[i][r];
    }
    let DimensionKind::Table { via: Some(v), .. } = &model.dimensions[dim].kind else {
        return 0;
    };
    let from = base_key(model, dims, base, fact, *v, r);
    dims.via[dim].as_ref().map_or(0, |m| m[from as usize])
}

/// How a target level's code is obtained from a parent cuboid's codes.
enum Derive {
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
    dims: &Dims,
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

fn derivation(model: &Model, dims: &Dims, parent: &[LevelRef], target: LevelRef) -> Option<Derive> {
    if let Some(i) = parent.iter().position(|l| *l == target) {
        return Some(Derive::Copy(i));
    }
    if let Some(coarse) = time_grain(model, target) {
        return parent.iter().enumerate().find_map(|(i, l)| {
            let fine = time_grain(model, *l)?;
            (l.dim == target.dim && fine > coarse).then_some(Derive::Time {
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
            .map(|map| Derive::Parent { from: i, map })
    })
}

/// A source of rows to aggregate: the base table, or a built cuboid.
pub(crate) enum Source<'a> {
    Base(&'a BaseTable),
    Cuboid(&'a Cuboid),
}

/// Whether `parent` can derive every level of `target`.
pub(crate) fn can_derive(
    model: &Model,
    dims: &Dims,
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
    pub dims: &'a Dims,
    pub fact: FactId,
    pub base: &'a BaseTable,
    pub closing: &'a Closing,
    /// Member codes of the levels plans need, per base row (see [`base_level_codes`]).
    pub base_codes: &'a HashMap<LevelRef, CodeColumn>,
}

/// Aggregates `levels` of the fact from `source` (cuboid `parent_index`, or the base table).
pub(crate) fn aggregate(
    inputs: &FactInputs<'_>,
    source: Source<'_>,
    parent_index: Option<usize>,
    levels: &[LevelRef],
) -> Result<Cuboid> {
    let FactInputs {
        model,
        dims,
        fact,
        base,
        closing,
        base_codes,
    } = *inputs;
    // The finest time level of the cuboid decides its cells' closing periods.
    let target_grain = levels.iter().filter_map(|l| time_grain(model, *l)).max();
    let (rows, columns, specs): (usize, &[MeasureColumn], &[MeasureSpec]) = match &source {
        Source::Base(b) => (b.len(), &b.measures, &b.specs),
        Source::Cuboid(c) => (c.len(), &c.measures, &base.specs),
    };
    // Row -> target codes, and whether its semi-additive values count.
    // Base sources borrow the precomputed code columns; parent cuboids derive owned ones.
    let mut row_codes: Vec<Codes<'_>> = Vec::with_capacity(levels.len());
    // Only facts with semi-additive measures need to know which rows close their period.
    let any_semi = specs.iter().any(|s| s.semi);
    let mut scratch = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let mut semi_ok = std::mem::take(&mut scratch.semi_ok);
    semi_ok.clear();
    match &source {
        Source::Base(b) => {
            let periods = b.codes.last().map(Vec::as_slice).unwrap_or(&[]);
            for l in levels {
                row_codes.push(match base_codes.get(l) {
                    Some(col) => col.codes(),
                    None => Codes::U32(Cow::Owned(level_column(
                        model, dims, b, fact, *l, &mut None,
                    ))),
                });
            }
            if any_semi {
                // Which periods close their member of the target grain, once per cuboid.
                let axis_len = dims.time.as_ref().map_or(0, |a| a.len);
                let flags: Vec<bool> = (0..axis_len as u32)
                    .map(|p| closing.is_closing(p, target_grain, dims))
                    .collect();
                semi_ok.extend(
                    periods
                        .iter()
                        .map(|&p| flags.get(p as usize).copied().unwrap_or(false)),
                );
            }
        }
        Source::Cuboid(c) => {
            let derive: Vec<Derive> = levels
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
            let mut owned: Vec<Vec<u32>> = vec![Vec::with_capacity(rows); levels.len()];
            for r in 0..rows {
                for (k, d) in derive.iter().enumerate() {
                    let code = match d {
                        Derive::Copy(i) => c.codes[*i][r],
                        Derive::Parent { from, map } => map[c.codes[*from][r] as usize],
                        Derive::Time { from, fine, coarse } => {
                            let axis = dims.time.as_ref().expect("time levels need an axis");
                            if c.codes[*from][r] == axis.unknown_code(*fine) {
                                owned[k].push(axis.unknown_code(*coarse));
                                continue;
                            }
                            let first_fine = coarsen(axis.first, axis.grain, *fine);
                            let abs = first_fine + c.codes[*from][r] as i64;
                            (coarsen(abs, *fine, *coarse)
                                - coarsen(axis.first, axis.grain, *coarse))
                                as u32
                        }
                    };
                    owned[k].push(code);
                }
                // The parent cell's semi-additive values are at its closing period; they count
                // if that is also the closing period of the target cell's time member.
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
            row_codes.extend(owned.into_iter().map(|v| Codes::U32(Cow::Owned(v))));
        }
    }

    let mut cell_of_row = std::mem::take(&mut scratch.cell_of_row);
    let keys = group_rows(&row_codes, rows, levels, dims, &mut cell_of_row);
    drop(row_codes);
    let width = levels.len();
    let n_cells = keys
        .len()
        .checked_div(width)
        .unwrap_or(usize::from(rows > 0));
    let mut out: Vec<MeasureColumn> = specs
        .iter()
        .zip(columns)
        .map(|(s, c)| {
            let scale = match c {
                MeasureColumn::Decimal { scale, .. } | MeasureColumn::Decimal64 { scale, .. } => {
                    *scale
                }
                _ => 0,
            };
            let mut col = empty_column(*s, scale);
            for _ in 0..n_cells {
                push_empty(&mut col);
            }
            col
        })
        .collect();
    // Column by column: each measure's rows merge into their cells.
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
            ) => merge_decimals(sv, sok, &cell_of_row, counts, values, valid, spec.agg),
            (
                MeasureColumn::Decimal64 {
                    values: sv,
                    valid: sok,
                    ..
                },
                MeasureColumn::Decimal { values, valid, .. },
            ) => merge_decimals(sv, sok, &cell_of_row, counts, values, valid, spec.agg),
            (MeasureColumn::Distinct(s), MeasureColumn::Distinct(d)) => {
                for (r, cell) in cell_of_row.iter().map(|c| *c as usize).enumerate() {
                    d[cell] |= &s[r];
                }
            }
            (MeasureColumn::DistinctValues(s), MeasureColumn::Distinct(d)) => {
                distinct_sets(s, &cell_of_row, d, &mut scratch.bits);
            }
            _ => return Err(EngineError::Internal("measure column kinds differ".into())),
        }
    }

    scratch.cell_of_row = cell_of_row;
    scratch.semi_ok = semi_ok;
    SCRATCH.with(|s| *s.borrow_mut() = scratch);

    // Cells in code order.
    let key = |c: usize| &keys[c * width..(c + 1) * width];
    let mut order: Vec<usize> = (0..n_cells).collect();
    order.sort_unstable_by(|a, b| key(*a).cmp(key(*b)));
    let codes: Vec<Vec<u32>> = (0..width)
        .map(|k| order.iter().map(|&c| keys[c * width + k]).collect())
        .collect();
    let measures = out.into_iter().map(|col| reorder(col, &order)).collect();
    Ok(Cuboid {
        fact,
        levels: levels.to_vec(),
        codes,
        measure_ids: base.measure_ids.clone(),
        measures,
        parent: parent_index,
    })
}

/// Merges each counted, non-null source row's decimal into its cell.
fn merge_decimals<T: Copy + Into<i128>>(
    source: &[T],
    source_valid: &[bool],
    cell_of_row: &[u32],
    counts: impl Fn(usize) -> bool,
    values: &mut [i128],
    valid: &mut [bool],
    agg: lattice_defs::model::Agg,
) {
    for (r, cell) in cell_of_row.iter().map(|c| *c as usize).enumerate() {
        if counts(r) && source_valid[r] {
            merge_decimal(values, valid, cell, source[r].into(), agg);
        }
    }
}

/// Row-sized buffers a build thread reuses from one cuboid to the next. Fresh ones per cuboid
/// cost more in the kernel's zeroing of new pages than the aggregation itself (13% of the
/// build at scale 5 was `clear_page_erms`).
#[derive(Default)]
struct Scratch {
    cell_of_row: Vec<u32>,
    semi_ok: Vec<bool>,
    bits: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Most bytes of per-cell bit sets [`distinct_sets`] fills for one measure of one cuboid.
const BITSET_BYTES: usize = 64 << 20;

/// Fills each cell's set with the distinct values of its rows (`NO_VALUE`: none).
///
/// A roaring insert per row (a binary search and a shift in a sorted array) was most of the
/// build's time; instead each cell's values are gathered first and every set is made at once:
/// into a plain bit set per cell when those fit [`BITSET_BYTES`] (setting a bit is one store),
/// else grouped by cell, sorted and appended in order.
fn distinct_sets(
    values: &[u32],
    cell_of_row: &[u32],
    sets: &mut [roaring::RoaringBitmap],
    bits: &mut Vec<u8>,
) {
    // Proportionate to the rows too, so a small input does not zero a large array.
    let limit = BITSET_BYTES.min(values.len().saturating_mul(32).max(1 << 16));
    distinct_sets_within(values, cell_of_row, sets, limit, bits);
}

fn distinct_sets_within(
    values: &[u32],
    cell_of_row: &[u32],
    sets: &mut [roaring::RoaringBitmap],
    limit: usize,
    bits: &mut Vec<u8>,
) {
    let Some(max) = values.iter().copied().filter(|v| *v != NO_VALUE).max() else {
        return;
    };
    let width = (max as usize >> 3) + 1;
    if sets.len().saturating_mul(width) <= limit {
        bits.clear();
        bits.resize(sets.len() * width, 0);
        for (&v, &c) in values.iter().zip(cell_of_row) {
            if v != NO_VALUE {
                bits[c as usize * width + (v as usize >> 3)] |= 1 << (v & 7);
            }
        }
        for (set, cell_bits) in sets.iter_mut().zip(bits.chunks_exact(width)) {
            *set = roaring::RoaringBitmap::from_lsb0_bytes(0, cell_bits);
        }
        return;
    }
    // Counting sort of the values by cell, then each cell's run sorted.
    let mut start = vec![0usize; sets.len() + 1];
    for (&v, &c) in values.iter().zip(cell_of_row) {
        if v != NO_VALUE {
            start[c as usize + 1] += 1;
        }
    }
    for c in 1..start.len() {
        start[c] += start[c - 1];
    }
    let mut flat = vec![0u32; start[sets.len()]];
    let mut next = start.clone();
    for (&v, &c) in values.iter().zip(cell_of_row) {
        if v != NO_VALUE {
            flat[next[c as usize]] = v;
            next[c as usize] += 1;
        }
    }
    for (c, set) in sets.iter_mut().enumerate() {
        let run = &mut flat[start[c]..start[c + 1]];
        run.sort_unstable();
        let mut last = None;
        let unique = run.iter().copied().filter(|v| last.replace(*v) != Some(*v));
        *set = roaring::RoaringBitmap::from_sorted_iter(unique)
            .expect("a sorted run without repeats is sorted");
    }
}

/// Cuboids with at most this many possible cells group rows through an array, not a hash map.
const DENSE_SLOTS: usize = 1 << 22;

/// Assigns each row its cell: rows with the same codes share one. Returns each row's cell and
/// the cells' codes, flat (`levels.len()` codes per cell). Codes are packed into one `u64`
/// when the levels' member counts allow (the common case), else hashed as vectors.
// Row `r` indexes every level's code column at once; an iterator would not read better.
#[allow(clippy::needless_range_loop)]
fn group_rows(
    row_codes: &[Codes<'_>],
    rows: usize,
    levels: &[LevelRef],
    dims: &Dims,
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
    let push_key = |keys: &mut Vec<u32>, r: usize| keys.extend(row_codes.iter().map(|c| c.get(r)));
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
        // Few possible cells: a mixed-radix index into an array, no hashing.
        // Each row's slot, column by column (tight loops over contiguous codes), computed in
        // place of its cell (`slots` fits a u32), which then replaces it.
        cell_of_row.resize(rows, 0u32);
        for (codes, card) in row_codes.iter().zip(&cards) {
            let card = *card as u32;
            codes.fold_into(cell_of_row, |at, code| at * card + code);
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
                packed = (packed << b) | u64::from(codes.get(r));
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
            let key: Vec<u32> = row_codes.iter().map(|c| c.get(r)).collect();
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

/// Member codes of `levels` for every row of a base table, computed once per build, a level
/// at a time: each dimension's key column (following `via`) is made once for all its levels,
/// and each level's codes are one lookup per row in a tight loop (looking codes up row by row
/// was 12% of the build at scale 5).
pub(crate) fn base_level_codes(
    model: &Model,
    dims: &Dims,
    base: &BaseTable,
    fact: FactId,
    levels: impl IntoIterator<Item = LevelRef>,
) -> HashMap<LevelRef, CodeColumn> {
    let mut levels: Vec<LevelRef> = levels.into_iter().collect();
    levels.sort_unstable();
    let mut out = HashMap::new();
    for same_dim in levels.chunk_by(|a, b| a.dim == b.dim) {
        // A dimension's key column lives for its levels.
        let mut key = None;
        for &l in same_dim {
            let codes = level_column(model, dims, base, fact, l, &mut key);
            out.insert(l, CodeColumn::narrow(codes));
        }
    }
    out
}

/// The member code of `l` for every base row; `key` holds the key column of `l`'s dimension
/// once a table level has needed it (`None` to start).
fn level_column<'b>(
    model: &Model,
    dims: &Dims,
    base: &'b BaseTable,
    fact: FactId,
    l: LevelRef,
    key: &mut Option<Cow<'b, [u32]>>,
) -> Vec<u32> {
    let periods = base.codes.last().map(Vec::as_slice).unwrap_or(&[]);
    match &model.dimensions[l.dim].levels[l.level].kind {
        LevelKind::Time(g) => match &dims.time {
            Some(axis) => {
                let table: Vec<u32> = (0..axis.len as u32).map(|p| axis.code(p, *g)).collect();
                periods
                    .iter()
                    .map(|&p| match table.get(p as usize) {
                        Some(c) => *c,
                        None => axis.code(p, *g),
                    })
                    .collect()
            }
            None => vec![0; base.len()],
        },
        _ => {
            let key = key.get_or_insert_with(|| key_column(model, dims, base, fact, l.dim));
            match dims.codes[l.dim].as_ref() {
                Some(codes) => match (&codes.by_key[l.level], &codes.metric[l.level]) {
                    (Some(map), _) => key.iter().map(|k| map[*k as usize]).collect(),
                    (None, Some(metric)) => key
                        .iter()
                        .zip(periods)
                        .map(|(k, p)| metric.code(*k, dims.time.as_ref(), *p))
                        .collect(),
                    (None, None) => vec![0; base.len()],
                },
                None => vec![0; base.len()],
            }
        }
    }
}

/// Key codes of dimension `dim` for every base row: [`base_key`] column-wise, borrowed for a
/// dimension the fact carries.
fn key_column<'b>(
    model: &Model,
    dims: &Dims,
    base: &'b BaseTable,
    fact: FactId,
    dim: usize,
) -> Cow<'b, [u32]> {
    if let Some(i) = model.facts[fact].direct.iter().position(|d| *d == dim) {
        return Cow::Borrowed(&base.codes[i]);
    }
    let DimensionKind::Table { via: Some(v), .. } = &model.dimensions[dim].kind else {
        return Cow::Owned(vec![0; base.len()]);
    };
    let from = key_column(model, dims, base, fact, *v);
    Cow::Owned(match dims.via[dim].as_ref() {
        Some(map) => from.iter().map(|k| map[*k as usize]).collect(),
        None => vec![0; base.len()],
    })
}

/// Member codes of one level over a base table's rows, in the narrowest integer that holds
/// them: most levels have a few members, so a byte per row instead of four.
#[derive(Debug)]
pub(crate) enum CodeColumn {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl CodeColumn {
    fn narrow(codes: Vec<u32>) -> CodeColumn {
        match codes.iter().copied().max().unwrap_or(0) {
            m if m <= u32::from(u8::MAX) => {
                CodeColumn::U8(codes.iter().map(|c| *c as u8).collect())
            }
            m if m <= u32::from(u16::MAX) => {
                CodeColumn::U16(codes.iter().map(|c| *c as u16).collect())
            }
            _ => CodeColumn::U32(codes),
        }
    }

    fn codes(&self) -> Codes<'_> {
        match self {
            CodeColumn::U8(v) => Codes::U8(v),
            CodeColumn::U16(v) => Codes::U16(v),
            CodeColumn::U32(v) => Codes::U32(Cow::Borrowed(v)),
        }
    }
}

/// A level's member code per input row, borrowed from a [`CodeColumn`] or derived.
enum Codes<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(Cow<'a, [u32]>),
}

impl Codes<'_> {
    fn get(&self, r: usize) -> u32 {
        match self {
            Codes::U8(v) => u32::from(v[r]),
            Codes::U16(v) => u32::from(v[r]),
            Codes::U32(v) => v[r],
        }
    }

    /// `acc[r] = f(acc[r], code of row r)` for every row, one loop per code width.
    fn fold_into<T: Copy>(&self, acc: &mut [T], f: impl Fn(T, u32) -> T) {
        match self {
            Codes::U8(v) => acc
                .iter_mut()
                .zip(v.iter())
                .for_each(|(a, c)| *a = f(*a, u32::from(*c))),
            Codes::U16(v) => acc
                .iter_mut()
                .zip(v.iter())
                .for_each(|(a, c)| *a = f(*a, u32::from(*c))),
            Codes::U32(v) => acc
                .iter_mut()
                .zip(v.iter())
                .for_each(|(a, c)| *a = f(*a, *c)),
        }
    }
}

fn reorder(col: MeasureColumn, order: &[usize]) -> MeasureColumn {
    match col {
        MeasureColumn::Count(v) => MeasureColumn::Count(order.iter().map(|&i| v[i]).collect()),
        MeasureColumn::Decimal {
            values,
            valid,
            scale,
        } => MeasureColumn::Decimal {
            values: order.iter().map(|&i| values[i]).collect(),
            valid: order.iter().map(|&i| valid[i]).collect(),
            scale,
        },
        MeasureColumn::Decimal64 {
            values,
            valid,
            scale,
        } => MeasureColumn::Decimal64 {
            values: order.iter().map(|&i| values[i]).collect(),
            valid: order.iter().map(|&i| valid[i]).collect(),
            scale,
        },
        MeasureColumn::DistinctValues(v) => {
            MeasureColumn::DistinctValues(order.iter().map(|&i| v[i]).collect())
        }
        MeasureColumn::Distinct(mut v) => {
            MeasureColumn::Distinct(order.iter().map(|&i| std::mem::take(&mut v[i])).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use roaring::RoaringBitmap;

    use super::{NO_VALUE, distinct_sets_within};

    /// Both ways of filling sets (bit sets, sorted runs) equal a roaring insert per row.
    #[test]
    fn distinct_sets_equal_inserting_row_by_row() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..40 {
            let cells = 1 + (next() % 50) as usize;
            let rows = (next() % 2000) as usize;
            let span = 1 + next() % if case % 2 == 0 { 300 } else { 200_000 };
            let cell_of_row: Vec<u32> = (0..rows).map(|_| (next() % cells as u64) as u32).collect();
            let values: Vec<u32> = (0..rows)
                .map(|_| match next() % 10 {
                    0 => NO_VALUE,
                    _ => (next() % span) as u32,
                })
                .collect();
            let mut want = vec![RoaringBitmap::new(); cells];
            for (&v, &c) in values.iter().zip(&cell_of_row) {
                if v != NO_VALUE {
                    want[c as usize].insert(v);
                }
            }
            for limit in [0, usize::MAX] {
                let mut got = vec![RoaringBitmap::new(); cells];
                distinct_sets_within(&values, &cell_of_row, &mut got, limit, &mut Vec::new());
                assert_eq!(got, want, "case {case}, limit {limit}");
            }
        }
    }
}
