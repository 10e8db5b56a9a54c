//! The cuboids built from a base table, all in one pass over its rows.
//!
//! Most cuboids of a fact have no built parent that can derive them (per-period bands, value
//! classes and distinct customer sets need the customer), so they are aggregated from the base
//! table. Reading the base once per cuboid made the lattice a memory-bound stream of about 190
//! passes over 100M rows at scale 10, and the member codes of every level over every base row
//! (a byte each, 2 GB at scale 10) had to be kept for those passes.
//!
//! Instead the base rows are read once, a chunk at a time. Each chunk's member codes are
//! computed for the levels the cuboids need, while the chunk is in cache, and every cuboid
//! merges the chunk into its cells, which persist from chunk to chunk (and from one range of
//! periods to the next, for a fact streamed through the build: [`Scanner`]). Each build
//! thread reads its own part of the rows, whole customers each, into its own cells; the parts
//! are merged at the end.
//!
//! The base rows are in the order of the fact's largest key (the customer; see
//! [`BaseTable::sort_and_merge`]), so the values of a distinct count over that key reach each
//! cell in increasing order, within a range of periods.

use std::borrow::Cow;
use std::collections::HashMap;

use lattice_defs::model::{Agg, DimensionKind, LevelKind, LevelRef};
use roaring::RoaringBitmap;

use super::base::{
    BaseTable, MeasureSpec, ValueStats, column_decimal_scale, empty_column, merge_decimal,
    push_empty,
};
use super::lattice::{FactInputs, in_code_order, reorder, time_grain};
use super::select::Plan;
use crate::Result;
use crate::store::encoding::metric_period;
use crate::store::time::NO_PERIOD;
use crate::store::{Cuboid, MeasureColumn, NO_VALUE};

/// Base rows per chunk: the chunk's member codes (a few dozen levels of 4 bytes) stay in the
/// core's cache while every cuboid reads them.
const CHUNK_ROWS: usize = 8192;

/// Cuboids with at most this many possible cells find a row's cell by indexing an array (4
/// bytes a slot, kept for the whole scan), not by hashing.
const DENSE_SLOTS: usize = 1 << 21;

/// Most bytes of plain per-cell bit sets one distinct measure of one cuboid may keep; above
/// that (customers: 125 KB a cell at a million) its cells are roaring sets from the start.
const BITSET_BYTES: usize = 4 << 20;

/// Which base rows a scan reads: those whose member of every level lets through (a
/// question's filters, pushed into the scan of the base rows at query time).
#[derive(Debug, Clone)]
pub(crate) struct RowFilter {
    /// The levels filtered, each once.
    pub levels: Vec<LevelRef>,
    /// Per level, per member code: whether it passes.
    pub passes: Vec<Vec<bool>>,
    /// Per measure column of the base: whether the question reads it (the others are not
    /// aggregated, and the cuboid has no column for them).
    pub wanted: Vec<bool>,
}

impl RowFilter {
    fn wants(&self, j: usize) -> bool {
        self.wanted.get(j).copied().unwrap_or(true)
    }
}

/// Builds `plans` (indexes into `all`, all of `inputs`' fact) from its whole base table,
/// spread over `workers` threads; returns each plan's index and cuboid.
pub(crate) fn build_from_base(
    inputs: &FactInputs<'_>,
    all: &[Plan],
    plans: &[usize],
    workers: usize,
    done: &(dyn Fn() + Sync),
) -> Result<Vec<(usize, Cuboid)>> {
    if plans.is_empty() {
        return Ok(Vec::new());
    }
    let ranges: Vec<Option<ValueStats>> = inputs
        .base
        .measures
        .iter()
        .map(|m| match m {
            MeasureColumn::DistinctValues(v) => Some(ValueStats {
                max: v.iter().copied().filter(|x| *x != NO_VALUE).max(),
                ascending: v.is_sorted(),
            }),
            _ => None,
        })
        .collect();
    // Small bases are split too: the differential tests then check the merging.
    let workers = workers.clamp(1, inputs.base.len().max(1));
    let mut scanner = Scanner::new(inputs, all, plans, workers, ranges);
    scanner.add(inputs)?;
    Ok(scanner.finish(inputs, done))
}

/// The cuboids of one fact that are built from its base rows, while the rows come: a whole
/// base table at once, or a range of periods at a time (each range's rows sorted by the
/// widest key). Each build thread reads its own part of each range, whole keys each (the
/// customers' runs and the order of their distinct values stay whole), for every cuboid, into
/// its own cells; the parts' cuboids are merged at the end. Splitting the cuboids instead left
/// one thread idle up to a third of the time, and both read every chunk.
pub(crate) struct Scanner {
    plans: Vec<usize>,
    row_levels: Vec<LevelRef>,
    run_levels: Vec<LevelRef>,
    /// Per thread, its cells of every plan.
    parts: Vec<Vec<Acc>>,
    ranges: Vec<Option<ValueStats>>,
    /// Only the rows this lets through are read (every cuboid then reads rows, not runs).
    filter: Option<RowFilter>,
}

impl Scanner {
    /// Cells for `plans` of `inputs`' fact; `inputs.base` need only have the fact's columns
    /// (and its sort key, and rows or [`BaseTable::planned_rows`]); `ranges` describes its
    /// distinct-value columns over all the rows to come.
    pub(crate) fn new(
        inputs: &FactInputs<'_>,
        all: &[Plan],
        plans: &[usize],
        workers: usize,
        ranges: Vec<Option<ValueStats>>,
    ) -> Scanner {
        Scanner::filtered(inputs, all, plans, workers, ranges, None)
    }

    /// [`Scanner::new`], reading only the rows `filter` lets through.
    pub(crate) fn filtered(
        inputs: &FactInputs<'_>,
        all: &[Plan],
        plans: &[usize],
        workers: usize,
        ranges: Vec<Option<ValueStats>>,
        filter: Option<RowFilter>,
    ) -> Scanner {
        let sources = LevelSources::new(inputs);
        let by_runs: Vec<bool> = plans
            .iter()
            .map(|&i| {
                filter.as_ref().is_none_or(|f| f.levels.is_empty())
                    && sources.by_runs(&all[i].levels)
            })
            .collect();
        // The levels each kind of cuboid needs, computed once per chunk.
        let needed = |runs: bool| {
            let mut v: Vec<LevelRef> = plans
                .iter()
                .zip(&by_runs)
                .filter(|(_, r)| **r == runs)
                .flat_map(|(&i, _)| all[i].levels.iter().copied())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (row_levels, run_levels) = (needed(false), needed(true));
        let parts = (0..workers.max(1))
            .map(|_| {
                plans
                    .iter()
                    .zip(&by_runs)
                    .map(|(&i, &runs)| {
                        Acc::new(
                            inputs,
                            &all[i],
                            if runs { &run_levels } else { &row_levels },
                            runs,
                            &ranges,
                            filter.as_ref(),
                        )
                    })
                    .collect()
            })
            .collect();
        Scanner {
            plans: plans.to_vec(),
            row_levels,
            run_levels,
            parts,
            ranges,
            filter,
        }
    }

    /// Merges the rows of `inputs.base` (sorted by its key) into every plan's cells.
    pub(crate) fn add(&mut self, inputs: &FactInputs<'_>) -> Result<()> {
        let sources = LevelSources::new(inputs);
        let base = inputs.base;
        let n = base.len();
        let workers = self.parts.len();
        let key = base.sorted_by.map(|k| &base.codes[k][..]);
        let mut bounds = vec![0];
        for w in 1..workers {
            let mut at = (n * w / workers).max(*bounds.last().unwrap_or(&0));
            while at > 0 && at < n && key.is_some_and(|k| k[at] == k[at - 1]) {
                at += 1;
            }
            bounds.push(at);
        }
        bounds.push(n);
        let mut parts = std::mem::take(&mut self.parts);
        let (sources, ranges) = (&sources, &self.ranges[..]);
        let (row_levels, run_levels) = (&self.row_levels[..], &self.run_levels[..]);
        let filter = self.filter.as_ref();
        let result = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter_mut()
                .enumerate()
                .map(|(w, accs)| {
                    let rows = bounds[w]..bounds[w + 1];
                    s.spawn(move || {
                        let t = std::time::Instant::now();
                        let levels = (row_levels, run_levels);
                        scan(inputs, sources, ranges, levels, filter, accs, rows.clone());
                        for acc in accs.iter_mut() {
                            acc.end_of_rows();
                        }
                        tracing::debug!(
                            fact = inputs.fact,
                            rows = rows.len(),
                            secs = t.elapsed().as_secs_f64(),
                            "cuboids from the base"
                        );
                    })
                })
                .collect();
            // Every thread is joined before the cells are used again; one that panicked is
            // an internal error, not a panic of the build.
            let mut result = Ok(());
            for h in handles {
                if h.join().is_err() {
                    result = Err(crate::EngineError::Internal(
                        "a build thread panicked".into(),
                    ));
                }
            }
            result
        });
        self.parts = parts;
        result
    }

    /// The plans' cuboids: each thread's cells, merged.
    pub(crate) fn finish(
        self,
        inputs: &FactInputs<'_>,
        done: &(dyn Fn() + Sync),
    ) -> Vec<(usize, Cuboid)> {
        let specs = &inputs.base.specs;
        let mut merged: Option<Vec<Cuboid>> = None;
        for accs in self.parts {
            let part: Vec<Cuboid> = accs.into_iter().map(|a| a.finish(inputs)).collect();
            merged = Some(match merged {
                None => part,
                Some(done) => done
                    .into_iter()
                    .zip(part)
                    .map(|(a, b)| merge_parts(a, b, specs))
                    .collect(),
            });
        }
        self.plans
            .into_iter()
            .zip(merged.unwrap_or_default())
            .inspect(|_| done())
            .collect()
    }
}

/// One cuboid from two parts of the base rows: cells of the same codes merged (both in code
/// order).
pub(crate) fn merge_parts(a: Cuboid, b: Cuboid, specs: &[MeasureSpec]) -> Cuboid {
    let width = a.levels.len();
    let pairs = merged_cells(&a, &b);
    let codes = (0..width)
        .map(|k| {
            pairs
                .iter()
                .map(|p| match p {
                    (Some(i), _) => a.codes[k][*i],
                    (None, Some(j)) => b.codes[k][*j],
                    (None, None) => 0,
                })
                .collect()
        })
        .collect();
    let measures = a
        .measures
        .into_iter()
        .zip(b.measures)
        .zip(specs)
        .map(|((ma, mb), spec)| merge_measure(ma, mb, *spec, &pairs))
        .collect();
    Cuboid {
        fact: a.fact,
        levels: a.levels,
        codes,
        measure_ids: a.measure_ids,
        measures,
        parent: None,
    }
}

/// The cells of `a` and `b` (both in code order) merged, in code order: each from a, from b,
/// or from both (the same codes).
fn merged_cells(a: &Cuboid, b: &Cuboid) -> Vec<(Option<usize>, Option<usize>)> {
    let width = a.levels.len();
    let (na, nb) = (a.len(), b.len());
    let cmp = |i: usize, j: usize| {
        (0..width)
            .map(|k| a.codes[k][i].cmp(&b.codes[k][j]))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    };
    let mut pairs: Vec<(Option<usize>, Option<usize>)> = Vec::with_capacity(na.max(nb));
    let (mut i, mut j) = (0, 0);
    while i < na || j < nb {
        let o = match (i < na, j < nb) {
            (true, true) => cmp(i, j),
            (true, false) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match o {
            std::cmp::Ordering::Less => {
                pairs.push((Some(i), None));
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                pairs.push((None, Some(j)));
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                pairs.push((Some(i), Some(j)));
                i += 1;
                j += 1;
            }
        }
    }
    pairs
}

/// One measure column of two parts merged by `spec` over the merged cells `pairs` (see
/// [`merged_cells`]).
fn merge_measure(
    ma: MeasureColumn,
    mb: MeasureColumn,
    spec: MeasureSpec,
    pairs: &[(Option<usize>, Option<usize>)],
) -> MeasureColumn {
    match (ma, mb) {
        (MeasureColumn::Count(x), MeasureColumn::Count(y)) => MeasureColumn::Count(
            pairs
                .iter()
                .map(|p| p.0.map_or(0, |i| x[i]) + p.1.map_or(0, |j| y[j]))
                .collect(),
        ),
        (
            MeasureColumn::Decimal {
                values: x,
                valid: xok,
                scale,
            },
            MeasureColumn::Decimal {
                values: y,
                valid: yok,
                ..
            },
        ) => {
            let mut values = vec![0i128; pairs.len()];
            let mut valid = vec![false; pairs.len()];
            for (c, p) in pairs.iter().enumerate() {
                if let Some(i) = p.0.filter(|i| xok[*i]) {
                    merge_decimal(&mut values, &mut valid, c, x[i], spec.agg);
                }
                if let Some(j) = p.1.filter(|j| yok[*j]) {
                    merge_decimal(&mut values, &mut valid, c, y[j], spec.agg);
                }
            }
            MeasureColumn::Decimal {
                values: values.into(),
                valid,
                scale,
            }
        }
        (MeasureColumn::Distinct(mut x), MeasureColumn::Distinct(mut y)) => {
            MeasureColumn::Distinct(
                pairs
                    .iter()
                    .map(|p| {
                        let mut set = p.0.map(|i| std::mem::take(&mut x[i])).unwrap_or_default();
                        if let Some(j) = p.1 {
                            set |= std::mem::take(&mut y[j]);
                        }
                        set
                    })
                    .collect(),
            )
        }
        (x, _) => x,
    }
}

/// Merges base rows `part` into one thread's cells (`accs`).
///
/// A cuboid whose levels all follow from the base's sort key and the period (the customer's
/// levels, its region and manager, its bands, time) reads the chunk's runs of one key and
/// period, each merged once; the others read the rows.
fn scan(
    inputs: &FactInputs<'_>,
    sources: &LevelSources<'_>,
    ranges: &[Option<ValueStats>],
    (row_levels, run_levels): (&[LevelRef], &[LevelRef]),
    filter: Option<&RowFilter>,
    accs: &mut [Acc],
    part: std::ops::Range<usize>,
) {
    let mut filter_codes: Vec<Vec<u32>> =
        vec![Vec::with_capacity(CHUNK_ROWS); filter.map_or(0, |f| f.levels.len())];
    let base = inputs.base;
    let any_rows = accs.iter().any(|a| !a.runs);
    let any_runs = accs.iter().any(|a| a.runs);
    let mut row_codes: Vec<Vec<u32>> = vec![Vec::with_capacity(CHUNK_ROWS); row_levels.len()];
    let mut run_codes: Vec<Vec<u32>> = vec![Vec::with_capacity(CHUNK_ROWS); run_levels.len()];
    let mut scratch = Scratch::default();
    let n = part.end;
    let key = base.sorted_by.map(|k| &base.codes[k][..]);
    let periods = &base.codes[base.codes.len() - 1][..];
    let same_run = |r: usize| key.is_some_and(|k| k[r] == k[r - 1] && periods[r] == periods[r - 1]);
    let mut start = part.start;
    let mut at: Vec<u32> = Vec::with_capacity(CHUNK_ROWS);
    // A filter on the levels of the sort key (the customer's), on time or on the fact's own
    // keys: only the rows it lets through by those levels are read, a chunk of them at a
    // time, each checked against the rest of the filter.
    let chosen = filter
        .filter(|f| !f.levels.is_empty())
        .and_then(|f| sources.candidates(f, part.clone()));
    let mut buffers = Buffers {
        filter_codes: &mut filter_codes,
        row_codes: &mut row_codes,
        scratch: &mut scratch,
    };
    if let Some(Chosen { rows, rest }) = chosen {
        for chunk in rows.chunks(CHUNK_ROWS) {
            at.clear();
            at.extend_from_slice(chunk);
            read_filtered(sources, &rest, row_levels, &mut at, &mut buffers, accs);
        }
        return;
    }
    while start < n {
        // A chunk ends between runs.
        let mut end = (start + CHUNK_ROWS).min(n);
        while any_runs && end < n && same_run(end) {
            end += 1;
        }
        if any_rows {
            at.clear();
            at.extend(start as u32..end as u32);
            if let Some(f) = filter.filter(|f| !f.levels.is_empty()) {
                read_filtered(sources, f, row_levels, &mut at, &mut buffers, accs);
                start = end;
                continue;
            }
            sources.fill(row_levels, &at, buffers.row_codes);
            let view = View::rows(base, start..end, buffers.row_codes, filter);
            for acc in accs.iter_mut().filter(|a| !a.runs) {
                acc.add(&view, buffers.scratch);
            }
        }
        if any_runs {
            at.clear();
            at.extend(
                (start..end)
                    .filter(|&r| r == start || !same_run(r))
                    .map(|r| r as u32),
            );
            sources.fill(run_levels, &at, &mut run_codes);
            let view = View::runs(base, start..end, &at, &run_codes, ranges, filter);
            for acc in accs.iter_mut().filter(|a| a.runs) {
                acc.add(&view, buffers.scratch);
            }
        }
        start = end;
    }
}

/// The first index from `from` on whose value `holds` does not (it holds for a prefix of
/// `values[from..]`): an exponential search, then a binary one, so that the cost follows the
/// distance (the rows of one key) rather than the length.
fn gallop(values: &[u32], from: usize, holds: impl Fn(u32) -> bool) -> usize {
    let (mut lo, mut step) = (from, 1);
    while lo + step <= values.len() && holds(values[lo + step - 1]) {
        lo += step;
        step *= 2;
    }
    let hi = (lo + step).min(values.len());
    lo + values[lo..hi].partition_point(|v| holds(*v))
}

/// The rows a filter lets through by the levels told without reading each row's members
/// ([`LevelSources::candidates`]), and the rest of the filter, which the rows are checked
/// against as they are read.
struct Chosen {
    rows: Vec<u32>,
    rest: RowFilter,
}

/// Buffers of one thread's scan, reused from chunk to chunk.
struct Buffers<'b> {
    filter_codes: &'b mut Vec<Vec<u32>>,
    row_codes: &'b mut Vec<Vec<u32>>,
    scratch: &'b mut Scratch,
}

/// Merges the rows `at` (absolute, increasing) that `f` lets through into every cuboid's
/// cells, reading only those rows' levels and values.
fn read_filtered(
    sources: &LevelSources<'_>,
    f: &RowFilter,
    row_levels: &[LevelRef],
    at: &mut Vec<u32>,
    buffers: &mut Buffers<'_>,
    accs: &mut [Acc],
) {
    if !f.levels.is_empty() {
        sources.fill(&f.levels, at, buffers.filter_codes);
        keep_passing(f, buffers.filter_codes, at);
    }
    if at.is_empty() {
        return;
    }
    sources.fill(row_levels, at, buffers.row_codes);
    let view = View::gather(sources.inputs.base, at, buffers.row_codes, f);
    for acc in accs.iter_mut() {
        acc.add(&view, buffers.scratch);
    }
}

/// Keeps the rows `at` whose members (`codes`, parallel to `f.levels`) pass every level.
fn keep_passing(f: &RowFilter, codes: &[Vec<u32>], at: &mut Vec<u32>) {
    let mut kept = 0;
    for i in 0..at.len() {
        let pass = f
            .passes
            .iter()
            .zip(codes)
            .all(|(p, c)| p.get(c[i] as usize).copied().unwrap_or(false));
        if pass {
            at[kept] = at[i];
            kept += 1;
        }
    }
    at.truncate(kept);
}

/// Buffers a thread reuses from chunk to chunk.
#[derive(Default)]
struct Scratch {
    cells: Vec<u32>,
    ok: Vec<bool>,
}

/// What a cuboid reads of one chunk: its rows, or its runs of one key and period.
struct View<'a> {
    len: usize,
    /// Member codes per level (the thread's levels of this kind), per item.
    codes: &'a [Vec<u32>],
    periods: Cow<'a, [u32]>,
    measures: Vec<MeasureView<'a>>,
}

/// A measure over a view's items.
enum MeasureView<'a> {
    Count(Cow<'a, [u64]>),
    Decimal64(Cow<'a, [i64]>, Cow<'a, [bool]>),
    Decimal(Cow<'a, [i128]>, Cow<'a, [bool]>),
    /// A distinct value per item.
    Values(Cow<'a, [u32]>),
    /// Distinct values per row, and each row's item (a run whose rows differ).
    RowValues(&'a [u32], Vec<u32>),
    /// Per item, the set of its rows' values as bits (values under 64: products).
    Masks(Vec<u64>),
    None,
}

impl<'a> View<'a> {
    fn rows(
        base: &'a BaseTable,
        rows: std::ops::Range<usize>,
        codes: &'a [Vec<u32>],
        filter: Option<&RowFilter>,
    ) -> View<'a> {
        let measures = base
            .measures
            .iter()
            .enumerate()
            .map(|(j, m)| match m {
                _ if filter.is_some_and(|f| !f.wants(j)) => MeasureView::None,
                MeasureColumn::Count(v) => MeasureView::Count(Cow::Borrowed(&v[rows.clone()])),
                MeasureColumn::Decimal64 { values, valid, .. } => MeasureView::Decimal64(
                    Cow::Borrowed(&values[rows.clone()]),
                    Cow::Borrowed(&valid[rows.clone()]),
                ),
                MeasureColumn::Decimal { values, valid, .. } => MeasureView::Decimal(
                    Cow::Borrowed(&values[rows.clone()]),
                    Cow::Borrowed(&valid[rows.clone()]),
                ),
                MeasureColumn::DistinctValues(v) => {
                    MeasureView::Values(Cow::Borrowed(&v[rows.clone()]))
                }
                MeasureColumn::Distinct(_) => MeasureView::None,
            })
            .collect();
        View {
            len: rows.len(),
            codes,
            periods: Cow::Borrowed(&base.codes[base.codes.len() - 1][rows]),
            measures,
        }
    }

    /// Rows `at` (absolute, increasing), their values copied out.
    fn gather(
        base: &'a BaseTable,
        at: &[u32],
        codes: &'a [Vec<u32>],
        filter: &RowFilter,
    ) -> View<'a> {
        fn pick<T: Copy>(v: &[T], at: &[u32]) -> Vec<T> {
            at.iter().map(|&r| v[r as usize]).collect()
        }
        let measures = base
            .measures
            .iter()
            .enumerate()
            .map(|(j, m)| match m {
                _ if !filter.wants(j) => MeasureView::None,
                MeasureColumn::Count(v) => MeasureView::Count(Cow::Owned(pick(v, at))),
                MeasureColumn::Decimal64 { values, valid, .. } => MeasureView::Decimal64(
                    Cow::Owned(pick(values, at)),
                    Cow::Owned(pick(valid, at)),
                ),
                MeasureColumn::Decimal { values, valid, .. } => {
                    MeasureView::Decimal(Cow::Owned(pick(values, at)), Cow::Owned(pick(valid, at)))
                }
                MeasureColumn::DistinctValues(v) => MeasureView::Values(Cow::Owned(pick(v, at))),
                MeasureColumn::Distinct(_) => MeasureView::None,
            })
            .collect();
        View {
            len: at.len(),
            codes,
            periods: Cow::Owned(pick(&base.codes[base.codes.len() - 1], at)),
            measures,
        }
    }

    /// The runs starting at rows `starts` (absolute) up to `rows.end`, each measure merged
    /// over its run as the cuboids would merge it.
    fn runs(
        base: &'a BaseTable,
        rows: std::ops::Range<usize>,
        starts: &[u32],
        codes: &'a [Vec<u32>],
        ranges: &[Option<ValueStats>],
        filter: Option<&RowFilter>,
    ) -> View<'a> {
        let bounds = |i: usize| {
            let s = starts[i] as usize;
            let e = starts.get(i + 1).map_or(rows.end, |e| *e as usize);
            s..e
        };
        let runs = starts.len();
        let measures = base
            .measures
            .iter()
            .zip(&base.specs)
            .zip(ranges)
            .enumerate()
            .map(|(j, ((m, spec), range))| match m {
                _ if filter.is_some_and(|f| !f.wants(j)) => MeasureView::None,
                MeasureColumn::Count(v) => MeasureView::Count(Cow::Owned(
                    (0..runs).map(|i| v[bounds(i)].iter().sum()).collect(),
                )),
                MeasureColumn::Decimal64 { values, valid, .. } => {
                    let (v, ok) = fold_runs(runs, &bounds, values, valid, spec.agg);
                    MeasureView::Decimal(Cow::Owned(v), Cow::Owned(ok))
                }
                MeasureColumn::Decimal { values, valid, .. } => {
                    let (v, ok) = fold_runs(runs, &bounds, values, valid, spec.agg);
                    MeasureView::Decimal(Cow::Owned(v), Cow::Owned(ok))
                }
                MeasureColumn::DistinctValues(v) => {
                    // One value per run where its rows share it (customers, by the key the
                    // rows are sorted by), else each row's.
                    let constant = (0..runs).all(|i| {
                        let b = bounds(i);
                        v[b.clone()].iter().all(|x| *x == v[b.start])
                    });
                    if constant {
                        MeasureView::Values(Cow::Owned(
                            starts.iter().map(|&s| v[s as usize]).collect(),
                        ))
                    } else if range.is_some_and(|r| r.max.is_none_or(|m| m < 64)) {
                        MeasureView::Masks(
                            (0..runs)
                                .map(|i| {
                                    v[bounds(i)]
                                        .iter()
                                        .filter(|x| **x != NO_VALUE)
                                        .fold(0u64, |m, x| m | 1 << x)
                                })
                                .collect(),
                        )
                    } else {
                        let item = (0..runs)
                            .flat_map(|i| std::iter::repeat_n(i as u32, bounds(i).len()))
                            .collect();
                        MeasureView::RowValues(&v[rows.clone()], item)
                    }
                }
                MeasureColumn::Distinct(_) => MeasureView::None,
            })
            .collect();
        let periods = &base.codes[base.codes.len() - 1];
        View {
            len: runs,
            codes,
            periods: Cow::Owned(starts.iter().map(|&s| periods[s as usize]).collect()),
            measures,
        }
    }
}

/// Each run's non-null values merged by `agg`, and whether it has one.
fn fold_runs<T: Copy + Into<i128>>(
    runs: usize,
    bounds: &impl Fn(usize) -> std::ops::Range<usize>,
    values: &[T],
    valid: &[bool],
    agg: Agg,
) -> (Vec<i128>, Vec<bool>) {
    let mut out = vec![0i128; runs];
    let mut ok = vec![false; runs];
    for i in 0..runs {
        for r in bounds(i) {
            if valid[r] {
                merge_decimal(&mut out, &mut ok, i, values[r].into(), agg);
            }
        }
    }
    (out, ok)
}

/// How a level's member code follows from a base row.
enum LevelSource<'a> {
    /// Its member at each period of the axis; `unknown` for rows without a period.
    Time {
        by_period: Vec<u32>,
        unknown: u32,
    },
    /// A member per key of the level's dimension.
    Key {
        dim: usize,
        by_key: &'a [u32],
    },
    /// A metric bucket: `codes[key * periods + period index]`, the index per axis period.
    Metric {
        dim: usize,
        codes: &'a [u8],
        periods: usize,
        index: Vec<u32>,
        unknown: Option<u32>,
    },
    Zero,
}

/// The source of every level of the fact, and how each dimension's key follows from the
/// base row (a key the fact carries, or one reached through `via`).
struct LevelSources<'a> {
    inputs: &'a FactInputs<'a>,
    levels: HashMap<LevelRef, LevelSource<'a>>,
}

impl<'a> LevelSources<'a> {
    fn new(inputs: &'a FactInputs<'a>) -> LevelSources<'a> {
        let (model, dims) = (inputs.model, inputs.dims);
        let mut levels = HashMap::new();
        for (d, dim) in model.dimensions.iter().enumerate() {
            if !model.fact_has_dimension(inputs.fact, d) {
                continue;
            }
            for (l, level) in dim.levels.iter().enumerate() {
                let source = match &level.kind {
                    LevelKind::Time(g) => match &dims.time {
                        Some(axis) => LevelSource::Time {
                            by_period: (0..axis.len as u32).map(|p| axis.code(p, *g)).collect(),
                            unknown: axis.code(NO_PERIOD, *g),
                        },
                        None => LevelSource::Zero,
                    },
                    _ => match dims.codes[d].as_ref() {
                        Some(codes) => match (&codes.by_key[l], &codes.metric[l]) {
                            (Some(map), _) => LevelSource::Key {
                                dim: d,
                                by_key: map,
                            },
                            (None, Some(metric)) => {
                                let axis = dims.time.as_ref();
                                let len = axis.map_or(0, |a| a.len);
                                let index = (0..len as u32)
                                    .map(|p| {
                                        metric_period(metric.grain, metric.first, axis, p) as u32
                                    })
                                    .collect();
                                LevelSource::Metric {
                                    dim: d,
                                    codes: &metric.codes,
                                    periods: metric.periods,
                                    index,
                                    unknown: metric.grain.map(|_| metric.unknown),
                                }
                            }
                            (None, None) => LevelSource::Zero,
                        },
                        None => LevelSource::Zero,
                    },
                };
                levels.insert(LevelRef { dim: d, level: l }, source);
            }
        }
        LevelSources { inputs, levels }
    }

    /// Whether every level follows from the base's sort key and the period alone.
    fn by_runs(&self, levels: &[LevelRef]) -> bool {
        let base = self.inputs.base;
        let Some(k) = base.sorted_by else {
            return false;
        };
        let sort_dim = self.inputs.model.facts[self.inputs.fact].direct[k];
        levels
            .iter()
            .all(|l| match self.levels.get(l).unwrap_or(&LevelSource::Zero) {
                LevelSource::Time { .. } | LevelSource::Zero => true,
                LevelSource::Key { dim, .. } | LevelSource::Metric { dim, .. } => {
                    self.reaches(*dim, sort_dim)
                }
            })
    }

    /// Whether dimension `dim`'s key follows from `to`'s (it is `to`, or reached through
    /// `via` from it).
    fn reaches(&self, dim: usize, to: usize) -> bool {
        let model = self.inputs.model;
        if dim == to {
            return true;
        }
        if model.facts[self.inputs.fact].direct.contains(&dim) {
            return false;
        }
        match &model.dimensions[dim].kind {
            DimensionKind::Table { via: Some(v), .. } => self.reaches(*v, to),
            _ => true, // a key of 0 for every row
        }
    }

    /// The rows of `rows` that `f` may let through, in order, told without reading each
    /// row's members: those of the sort key's values whose members of the filtered levels
    /// that follow from the key alone pass (told once per key value, whose rows are found by
    /// binary search, the rows being in key order), and, of those, the rows whose period and
    /// whose keys of the other dimensions the fact carries (a product, a channel) pass the
    /// filtered levels of time and of those dimensions (one look-up per row and level). A
    /// superset of the rows `f` passes (levels that follow from anything else, a monthly
    /// band, are not looked at; nor rows one by one when a sample shows most of them pass);
    /// `None` when no filtered level is told this way, or when nearly every key passes and
    /// nothing else is filtered. The levels told this way are told exactly: the rest of `f`
    /// is what the rows chosen still have to pass.
    fn candidates(&self, f: &RowFilter, rows: std::ops::Range<usize>) -> Option<Chosen> {
        let (base, model) = (self.inputs.base, self.inputs.model);
        let direct = &model.facts[self.inputs.fact].direct;
        let sort_dim = base.sorted_by.map(|k| direct[k]);
        // Per level told by the sort key: its member per value of its dimension's key, and
        // which members pass.
        let mut by_key: Vec<(usize, &[u32], &[bool])> = Vec::new();
        // Per column looked up row by row (the period, a key the fact carries): whether each
        // of its values passes, and whether a value past them does (`unknown`).
        let mut by_row: Vec<(usize, Vec<bool>, bool)> = Vec::new();
        // Per level of `f`: told by the key (1), by a column row by row (2), or not (0).
        let mut told = vec![0u8; f.levels.len()];
        let period_col = base.codes.len() - 1;
        for (i, (l, passes)) in f.levels.iter().zip(&f.passes).enumerate() {
            let pass = |code: u32| passes.get(code as usize).copied().unwrap_or(false);
            let (col, ok, other): (usize, Vec<bool>, bool) = match self.levels.get(l) {
                Some(LevelSource::Key { dim, by_key: map })
                    if sort_dim.is_some_and(|k| self.reaches(*dim, k)) =>
                {
                    by_key.push((*dim, map, passes));
                    told[i] = 1;
                    continue;
                }
                Some(LevelSource::Key { dim, by_key: map }) => {
                    let Some(i) = direct.iter().position(|d| d == dim) else {
                        continue;
                    };
                    (i, map.iter().map(|m| pass(*m)).collect(), false)
                }
                Some(LevelSource::Time { by_period, unknown }) => (
                    period_col,
                    by_period.iter().map(|c| pass(*c)).collect(),
                    pass(*unknown),
                ),
                _ => continue,
            };
            told[i] = 2;
            match by_row.iter_mut().find(|(c, _, _)| *c == col) {
                Some((_, have, have_other)) => {
                    for (h, o) in have.iter_mut().zip(&ok) {
                        *h = *h && *o;
                    }
                    *have_other = *have_other && other;
                }
                None => by_row.push((col, ok, other)),
            }
        }
        // A column whose every value passes chooses nothing.
        by_row.retain(|(_, ok, other)| !(*other && ok.iter().all(|p| *p)));
        if rows.is_empty() {
            return None;
        }
        let row_passes = |checks: &[(usize, Vec<bool>, bool)], r: usize| {
            checks.iter().all(|(col, ok, other)| {
                ok.get(base.codes[*col][r] as usize)
                    .copied()
                    .unwrap_or(*other)
            })
        };
        // Looking up rows one by one pays only when it leaves most of them out: a sample of
        // about a thousand rows tells.
        let step = (rows.len() / 1024).max(1);
        let sampled = rows.clone().step_by(step);
        let kept = sampled.clone().filter(|&r| row_passes(&by_row, r)).count();
        if kept * 2 > sampled.count() {
            by_row.clear();
            told.iter_mut().filter(|t| **t == 2).for_each(|t| *t = 0);
        }
        if by_key.is_empty() && by_row.is_empty() {
            return None;
        }
        let row_passes = |r: usize| row_passes(&by_row, r);
        let rest = || RowFilter {
            levels: (f.levels.iter().zip(&told))
                .filter(|(_, t)| **t == 0)
                .map(|(l, _)| *l)
                .collect(),
            passes: (f.passes.iter().zip(&told))
                .filter(|(_, t)| **t == 0)
                .map(|(p, _)| p.clone())
                .collect(),
            wanted: f.wanted.clone(),
        };
        let (Some(k), Some(sort_dim)) = (base.sorted_by.filter(|_| !by_key.is_empty()), sort_dim)
        else {
            let rows = rows.filter(|&r| row_passes(r)).map(|r| r as u32).collect();
            return Some(Chosen { rows, rest: rest() });
        };
        // The key values of these rows, in increasing order; whether each passes.
        let key = &base.codes[k];
        let (first, last) = (key[rows.start], key[rows.end - 1]);
        let values: Vec<u32> = (first..=last).collect();
        let mut pass = vec![true; values.len()];
        let mut keys_of: HashMap<usize, Vec<u32>> = HashMap::new();
        for (dim, map, passes) in &by_key {
            let keys = keys_of
                .entry(*dim)
                .or_insert_with(|| self.keys_from(*dim, sort_dim, &values));
            for (p, key) in pass.iter_mut().zip(keys.iter()) {
                let member = map.get(*key as usize).copied().unwrap_or(u32::MAX);
                *p = *p && passes.get(member as usize).copied().unwrap_or(false);
            }
        }
        let passing = pass.iter().filter(|p| **p).count();
        if by_row.is_empty() && passing * 10 > values.len() * 9 {
            return None;
        }
        let mut out = Vec::new();
        let mut at = rows.start;
        for (value, _) in values.iter().zip(&pass).filter(|(_, p)| **p) {
            let lo = gallop(&key[..rows.end], at, |k| k < *value);
            let hi = gallop(&key[..rows.end], lo, |k| k == *value);
            out.extend((lo..hi).filter(|&r| row_passes(r)).map(|r| r as u32));
            at = hi;
        }
        Some(Chosen {
            rows: out,
            rest: rest(),
        })
    }

    /// The key of dimension `dim` for each of `values` of the key of `sort_dim` (which `dim`'s
    /// key follows from: it is `sort_dim`, or reached through `via` from it), as
    /// [`super::bands::key_codes`] finds it for a row.
    fn keys_from(&self, dim: usize, sort_dim: usize, values: &[u32]) -> Vec<u32> {
        if dim == sort_dim {
            return values.to_vec();
        }
        let (model, dims) = (self.inputs.model, self.inputs.dims);
        let DimensionKind::Table { via: Some(v), .. } = &model.dimensions[dim].kind else {
            return vec![0; values.len()];
        };
        let from = self.keys_from(*v, sort_dim, values);
        match dims.via[dim].as_ref() {
            // A value with no rows may have no key (`u32::MAX`: no member passes it).
            Some(map) => from
                .iter()
                .map(|k| map.get(*k as usize).copied().unwrap_or(u32::MAX))
                .collect(),
            None => vec![0; values.len()],
        }
    }

    /// The member codes of `needed` at base rows `at`, into `out` (parallel to `needed`).
    fn fill(&self, needed: &[LevelRef], at: &[u32], out: &mut [Vec<u32>]) {
        let base = self.inputs.base;
        let period_col = &base.codes[base.codes.len() - 1];
        let periods: Vec<u32> = at.iter().map(|&r| period_col[r as usize]).collect();
        // Key columns of the chunk, per dimension, made once for all its levels.
        let mut keys: HashMap<usize, Vec<u32>> = HashMap::new();
        let key_at = |dim: usize| {
            let i = self.inputs;
            super::bands::key_codes(i.model, i.dims, i.base, i.fact, dim, Some(at)).into_owned()
        };
        for (l, codes) in needed.iter().zip(out.iter_mut()) {
            codes.clear();
            match self.levels.get(l).unwrap_or(&LevelSource::Zero) {
                LevelSource::Time { by_period, unknown } => codes.extend(
                    periods
                        .iter()
                        .map(|&p| by_period.get(p as usize).copied().unwrap_or(*unknown)),
                ),
                LevelSource::Key { dim, by_key } => {
                    let key = keys.entry(*dim).or_insert_with(|| key_at(*dim));
                    codes.extend(key.iter().map(|k| by_key[*k as usize]));
                }
                LevelSource::Metric {
                    dim,
                    codes: metric,
                    periods: n,
                    index,
                    unknown,
                } => {
                    let key = keys.entry(*dim).or_insert_with(|| key_at(*dim));
                    codes.extend(key.iter().zip(&periods).map(|(k, p)| {
                        match (index.get(*p as usize), unknown) {
                            (Some(i), _) => u32::from(metric[*k as usize * n + *i as usize]),
                            (None, Some(u)) => *u,
                            // No grain: one period for every row.
                            (None, None) => u32::from(metric[*k as usize * n]),
                        }
                    }));
                }
                LevelSource::Zero => codes.resize(at.len(), 0),
            }
        }
    }
}

/// How rows find their cell.
enum Index {
    /// Mixed-radix slot of the codes -> cell (`u32::MAX`: none yet).
    Dense { cards: Vec<u32>, slots: Vec<u32> },
    /// Codes packed into 64 bits -> cell.
    Packed {
        bits: Vec<u32>,
        map: HashMap<u64, u32>,
    },
    /// Codes -> cell.
    Wide(HashMap<Vec<u32>, u32>),
}

/// A distinct measure's sets while the scan runs.
enum DistinctAcc {
    /// `width` bytes of bits per cell, for small value ranges.
    Bits { width: usize, bits: Vec<u8> },
    /// Values that arrive in increasing order (customers: the base's sort key): per cell, a
    /// window of 65,536 bits for the current high 16 bits of the values, added to the cell's
    /// roaring set as one container when the values move past it. Setting a bit replaces a
    /// roaring append per value (a quarter of the build).
    Window {
        high: u32,
        bits: Vec<u8>,
        /// Cells with a bit set in the window, and a flag per cell.
        touched: Vec<u32>,
        flag: Vec<bool>,
        sets: Vec<RoaringBitmap>,
    },
    /// A roaring set per cell, and the last value added to it (rows repeat a customer).
    Sets {
        sets: Vec<RoaringBitmap>,
        last: Vec<u32>,
    },
}

impl DistinctAcc {
    fn bits(width: usize) -> DistinctAcc {
        DistinctAcc::Bits {
            width,
            bits: Vec::new(),
        }
    }

    fn window() -> DistinctAcc {
        DistinctAcc::Window {
            high: 0,
            bits: Vec::new(),
            touched: Vec::new(),
            flag: Vec::new(),
            sets: Vec::new(),
        }
    }

    fn sets() -> DistinctAcc {
        DistinctAcc::Sets {
            sets: Vec::new(),
            last: Vec::new(),
        }
    }

    fn new_cell(&mut self) {
        match self {
            DistinctAcc::Bits { width, bits } => bits.resize(bits.len() + *width, 0),
            DistinctAcc::Window {
                bits, flag, sets, ..
            } => {
                bits.resize(bits.len() + WINDOW, 0);
                flag.push(false);
                sets.push(RoaringBitmap::new());
            }
            DistinctAcc::Sets { sets, last } => {
                sets.push(RoaringBitmap::new());
                last.push(NO_VALUE);
            }
        }
    }

    fn add(&mut self, cell: usize, v: u32) {
        if v == NO_VALUE {
            return;
        }
        match self {
            DistinctAcc::Bits { width, bits } => {
                bits[cell * *width + (v as usize >> 3)] |= 1 << (v & 7);
            }
            DistinctAcc::Window {
                high,
                bits,
                touched,
                flag,
                sets,
            } => {
                let h = v >> 16;
                if h != *high {
                    if h < *high {
                        // Out of order (a key outside the dimension): straight in.
                        sets[cell].insert(v);
                        return;
                    }
                    flush_window(*high, bits, touched, flag, sets);
                    *high = h;
                }
                bits[cell * WINDOW + ((v & 0xffff) as usize >> 3)] |= 1 << (v & 7);
                if !flag[cell] {
                    flag[cell] = true;
                    touched.push(cell as u32);
                }
            }
            DistinctAcc::Sets { sets, last } => {
                if last[cell] == v {
                    return;
                }
                last[cell] = v;
                // Appending is the common case (rows in the order of the values' key);
                // otherwise an insert.
                if sets[cell].try_push(v).is_err() {
                    sets[cell].insert(v);
                }
            }
        }
    }

    /// Adds the values under 64 whose bits `mask` sets.
    fn add_mask(&mut self, cell: usize, mut mask: u64) {
        if let DistinctAcc::Bits { width, bits } = self {
            let cell_bits = &mut bits[cell * *width..(cell + 1) * *width];
            for (b, byte) in cell_bits.iter_mut().enumerate().take(8) {
                *byte |= (mask >> (8 * b)) as u8;
            }
            return;
        }
        while mask != 0 {
            let v = mask.trailing_zeros();
            self.add(cell, v);
            mask &= mask - 1;
        }
    }

    fn finish(self) -> Vec<RoaringBitmap> {
        match self {
            DistinctAcc::Window {
                high,
                mut bits,
                mut touched,
                mut flag,
                mut sets,
            } => {
                flush_window(high, &mut bits, &mut touched, &mut flag, &mut sets);
                sets
            }
            DistinctAcc::Bits { width, bits } => bits
                .chunks_exact(width)
                .map(|b| RoaringBitmap::from_lsb0_bytes(0, b))
                .collect(),
            DistinctAcc::Sets { sets, .. } => sets,
        }
    }
}

/// Bytes of one cell's window in [`DistinctAcc::Window`]: 65,536 bits.
const WINDOW: usize = 8192;

/// Most bytes of windows one distinct measure of one cuboid may keep.
const WINDOW_BYTES: usize = 4 << 20;

/// Adds each touched cell's window (values `high << 16` onwards) to its set, and clears it.
fn flush_window(
    high: u32,
    bits: &mut [u8],
    touched: &mut Vec<u32>,
    flag: &mut [bool],
    sets: &mut [RoaringBitmap],
) {
    for &cell in touched.iter() {
        let cell = cell as usize;
        let window = &mut bits[cell * WINDOW..(cell + 1) * WINDOW];
        sets[cell] |= RoaringBitmap::from_lsb0_bytes(high << 16, window);
        window.fill(0);
        flag[cell] = false;
    }
    touched.clear();
}

/// One cuboid's cells so far.
struct Acc {
    levels: Vec<LevelRef>,
    /// Position of each level among the thread's chunk codes.
    at: Vec<usize>,
    index: Index,
    /// Cells' codes, flat (`levels.len()` per cell).
    keys: Vec<u32>,
    n_cells: usize,
    specs: Vec<MeasureSpec>,
    measures: Vec<MeasureColumn>,
    distinct: Vec<Option<DistinctAcc>>,
    /// Per axis period: whether a semi-additive value there closes its cell's time member
    /// (empty when the fact has no semi-additive measure).
    closing: Vec<bool>,
    /// Reads runs of one key and period, not rows.
    runs: bool,
    /// Per measure column: whether it is aggregated (see [`RowFilter::wanted`]).
    wanted: Vec<bool>,
}

impl Acc {
    fn new(
        inputs: &FactInputs<'_>,
        plan: &Plan,
        needed: &[LevelRef],
        runs: bool,
        ranges: &[Option<ValueStats>],
        filter: Option<&RowFilter>,
    ) -> Acc {
        let (model, dims, base) = (inputs.model, inputs.dims, inputs.base);
        let levels = plan.levels.clone();
        let at = levels
            .iter()
            .map(|l| needed.binary_search(l).unwrap_or(0))
            .collect();
        let cards: Vec<usize> = levels
            .iter()
            .map(|l| inputs.dicts[l.dim][l.level].len().max(1))
            .collect();
        let bits: Vec<u32> = cards
            .iter()
            .map(|c| 64 - (*c as u64).leading_zeros())
            .collect();
        let slots = cards.iter().try_fold(1usize, |acc, c| acc.checked_mul(*c));
        let dense_limit = DENSE_SLOTS.min(base.rows_hint().saturating_mul(4).max(4096));
        let index = match slots.filter(|s| *s <= dense_limit) {
            Some(slots) => Index::Dense {
                cards: cards.iter().map(|c| *c as u32).collect(),
                slots: vec![u32::MAX; slots],
            },
            None if bits.iter().sum::<u32>() <= 64 => Index::Packed {
                bits,
                map: HashMap::new(),
            },
            None => Index::Wide(HashMap::new()),
        };
        let est_cells = usize::try_from(plan.est_cells).unwrap_or(usize::MAX).max(1);
        let wanted: Vec<bool> = (0..base.measures.len())
            .map(|j| filter.is_none_or(|f| f.wants(j)))
            .collect();
        let distinct = ranges
            .iter()
            .zip(&wanted)
            .map(|(r, wanted)| {
                let r = (*r).filter(|_| *wanted)?;
                let width = r.max.map_or(1, |m| (m as usize >> 3) + 1);
                Some(if est_cells.saturating_mul(width) <= BITSET_BYTES {
                    DistinctAcc::bits(width)
                } else if r.ascending && est_cells.saturating_mul(WINDOW) <= WINDOW_BYTES {
                    DistinctAcc::window()
                } else {
                    DistinctAcc::sets()
                })
            })
            .collect();
        let measures = base
            .specs
            .iter()
            .zip(&base.measures)
            .map(|(s, c)| empty_column(*s, column_decimal_scale(c)))
            .collect();
        let closing = if base.specs.iter().any(|s| s.semi) {
            let target = levels.iter().filter_map(|l| time_grain(model, *l)).max();
            let len = dims.time.as_ref().map_or(0, |a| a.len);
            (0..len as u32)
                .map(|p| inputs.closing.is_closing(p, target, dims))
                .collect()
        } else {
            Vec::new()
        };
        Acc {
            levels,
            at,
            index,
            keys: Vec::new(),
            n_cells: 0,
            specs: base.specs.clone(),
            measures,
            distinct,
            closing,
            runs,
            wanted,
        }
    }

    fn new_cell(&mut self, codes: &[Vec<u32>], r: usize) -> u32 {
        let cell = self.n_cells as u32;
        self.n_cells += 1;
        self.keys.extend(self.at.iter().map(|&k| codes[k][r]));
        for m in &mut self.measures {
            push_empty(m);
        }
        for d in self.distinct.iter_mut().flatten() {
            d.new_cell();
        }
        cell
    }

    /// Merges a chunk's items (rows or runs) into the cells.
    fn add(&mut self, view: &View<'_>, scratch: &mut Scratch) {
        let Scratch { cells, ok } = scratch;
        cells.clear();
        match self.index {
            Index::Dense { .. } => self.cells_dense(view, cells),
            Index::Packed { .. } => self.cells_packed(view, cells),
            Index::Wide(_) => self.cells_wide(view, cells),
        }
        self.closing_items(view, ok);
        self.merge_items(view, cells, ok);
    }

    /// Each item's cell by its slot in the [`Index::Dense`] array (a new cell for a slot not
    /// seen), into `cells`.
    fn cells_dense(&mut self, view: &View<'_>, cells: &mut Vec<u32>) {
        let (n, codes) = (view.len, view.codes);
        let Index::Dense { cards, .. } = &self.index else {
            unreachable!()
        };
        cells.resize(n, 0);
        for (&k, &card) in self.at.iter().zip(cards.iter()) {
            for (c, code) in cells.iter_mut().zip(&codes[k]) {
                *c = *c * card + code;
            }
        }
        for r in 0..n {
            let Index::Dense { slots, .. } = &mut self.index else {
                unreachable!()
            };
            let slot = slots[cells[r] as usize];
            cells[r] = if slot == u32::MAX {
                let cell = self.new_cell(codes, r);
                let Index::Dense { slots, .. } = &mut self.index else {
                    unreachable!()
                };
                slots[cells[r] as usize] = cell;
                cell
            } else {
                slot
            };
        }
    }

    /// Each item's cell by its codes packed into 64 bits ([`Index::Packed`]; a new cell for
    /// codes not seen), into `cells`.
    fn cells_packed(&mut self, view: &View<'_>, cells: &mut Vec<u32>) {
        let codes = view.codes;
        for r in 0..view.len {
            let Index::Packed { bits, map } = &mut self.index else {
                unreachable!()
            };
            let mut packed = 0u64;
            for (&k, b) in self.at.iter().zip(bits.iter()) {
                packed = (packed << b) | u64::from(codes[k][r]);
            }
            let cell = match map.get(&packed) {
                Some(c) => *c,
                None => {
                    let cell = self.new_cell(codes, r);
                    let Index::Packed { map, .. } = &mut self.index else {
                        unreachable!()
                    };
                    map.insert(packed, cell);
                    cell
                }
            };
            cells.push(cell);
        }
    }

    /// Each item's cell by its codes ([`Index::Wide`]; a new cell for codes not seen), into
    /// `cells`.
    fn cells_wide(&mut self, view: &View<'_>, cells: &mut Vec<u32>) {
        let codes = view.codes;
        for r in 0..view.len {
            let key: Vec<u32> = self.at.iter().map(|&k| codes[k][r]).collect();
            let Index::Wide(map) = &mut self.index else {
                unreachable!()
            };
            let cell = match map.get(&key) {
                Some(c) => *c,
                None => {
                    let cell = self.new_cell(codes, r);
                    let Index::Wide(map) = &mut self.index else {
                        unreachable!()
                    };
                    map.insert(key, cell);
                    cell
                }
            };
            cells.push(cell);
        }
    }

    /// Which items' semi-additive values count, into `ok`: those at their cell's closing
    /// period (`ok` empty when the fact has no semi-additive measure).
    fn closing_items(&self, view: &View<'_>, ok: &mut Vec<bool>) {
        ok.clear();
        if !self.closing.is_empty() {
            ok.extend(
                view.periods
                    .iter()
                    .map(|&p| self.closing.get(p as usize).copied().unwrap_or(false)),
            );
        }
    }

    /// Merges each measure of the chunk's items into their `cells`, the semi-additive ones'
    /// only where `ok`.
    fn merge_items(&mut self, view: &View<'_>, cells: &[u32], ok: &[bool]) {
        let specs = self.specs.iter();
        for (j, (spec, src)) in specs.zip(&view.measures).enumerate() {
            let dst = &mut self.measures[j];
            let semi = spec.semi;
            match (src, dst) {
                (MeasureView::Count(s), MeasureColumn::Count(d)) => {
                    for (r, (&c, x)) in cells.iter().zip(s.iter()).enumerate() {
                        if !semi || ok[r] {
                            d[c as usize] += x;
                        }
                    }
                }
                (MeasureView::Decimal64(sv, sok), MeasureColumn::Decimal { values, valid, .. }) => {
                    merge(sv, sok, cells, semi.then_some(ok), values, valid, *spec)
                }
                (MeasureView::Decimal(sv, sok), MeasureColumn::Decimal { values, valid, .. }) => {
                    merge(sv, sok, cells, semi.then_some(ok), values, valid, *spec)
                }
                (MeasureView::Values(v), _) => {
                    if let Some(d) = &mut self.distinct[j] {
                        for (&c, &v) in cells.iter().zip(v.iter()) {
                            d.add(c as usize, v);
                        }
                    }
                }
                (MeasureView::Masks(m), _) => {
                    if let Some(d) = &mut self.distinct[j] {
                        for (&c, &m) in cells.iter().zip(m.iter()) {
                            d.add_mask(c as usize, m);
                        }
                    }
                }
                (MeasureView::RowValues(v, item), _) => {
                    if let Some(d) = &mut self.distinct[j] {
                        for (&i, &v) in item.iter().zip(v.iter()) {
                            d.add(cells[i as usize] as usize, v);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// The rows so far are all there are of their keys: what waits for more of a key goes
    /// into the cells (the next rows, another range of periods, start the keys again).
    fn end_of_rows(&mut self) {
        for d in self.distinct.iter_mut().flatten() {
            if let DistinctAcc::Window {
                high,
                bits,
                touched,
                flag,
                sets,
            } = d
            {
                flush_window(*high, bits, touched, flag, sets);
                *high = 0;
            }
        }
    }

    fn finish(self, inputs: &FactInputs<'_>) -> Cuboid {
        let (order, codes) = in_code_order(&self.keys, self.levels.len(), self.n_cells);
        let wanted = &self.wanted;
        let measures = self
            .measures
            .into_iter()
            .zip(self.distinct)
            .enumerate()
            .filter(|(j, _)| wanted[*j])
            .map(|(_, (col, d))| match d {
                Some(d) => reorder(MeasureColumn::Distinct(d.finish()), &order),
                None => reorder(col, &order),
            })
            .collect();
        let measure_ids = (inputs.base.measure_ids.iter().enumerate())
            .filter(|(j, _)| wanted[*j])
            .map(|(_, m)| *m)
            .collect();
        Cuboid {
            fact: inputs.fact,
            levels: self.levels,
            codes,
            measure_ids,
            measures,
            parent: None,
        }
    }
}

/// Merges each counted, non-null row's decimal into its cell.
fn merge<T: Copy + Into<i128>>(
    source: &[T],
    source_valid: &[bool],
    cells: &[u32],
    ok: Option<&[bool]>,
    values: &mut [i128],
    valid: &mut [bool],
    spec: MeasureSpec,
) {
    match (spec.agg, ok) {
        (Agg::Sum, None) => {
            for ((&c, &x), &v) in cells.iter().zip(source).zip(source_valid) {
                if v {
                    values[c as usize] += x.into();
                    valid[c as usize] = true;
                }
            }
        }
        (Agg::Sum, Some(ok)) => {
            for (((&c, &x), &v), &k) in cells.iter().zip(source).zip(source_valid).zip(ok) {
                if v && k {
                    values[c as usize] += x.into();
                    valid[c as usize] = true;
                }
            }
        }
        (agg, ok) => {
            for (r, (&c, &x)) in cells.iter().zip(source).enumerate() {
                if source_valid[r] && ok.is_none_or(|ok| ok[r]) {
                    merge_decimal(values, valid, c as usize, x.into(), agg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use roaring::RoaringBitmap;

    use super::{DistinctAcc, NO_VALUE};

    /// Galloping finds what a binary search finds, from any start.
    #[test]
    fn gallop_finds_the_end_of_a_prefix() {
        let values: Vec<u32> = [0u32, 0, 1, 1, 1, 2, 5, 5, 9]
            .into_iter()
            .chain(std::iter::repeat_n(10, 100))
            .collect();
        for from in 0..=values.len() {
            for v in 0..12 {
                let want = from + values[from..].partition_point(|x| *x < v);
                assert_eq!(super::gallop(&values, from, |x| x < v), want, "{from} {v}");
                let want = from + values[from..].partition_point(|x| *x <= v);
                assert_eq!(super::gallop(&values, from, |x| x <= v), want, "{from} {v}");
            }
        }
    }

    /// A run's values given as a mask of bits add the same values as one by one.
    #[test]
    fn masks_add_their_bits_as_values() {
        let masks = [0u64, 1, 0b1010_0110, 1 << 63 | 1 << 9, u64::MAX];
        for mut acc in [DistinctAcc::bits(8), DistinctAcc::sets()] {
            let mut want = vec![RoaringBitmap::new(); 2];
            acc.new_cell();
            acc.new_cell();
            for (i, m) in masks.iter().enumerate() {
                acc.add_mask(i % 2, *m);
                want[i % 2].extend((0..64).filter(|b| m >> b & 1 == 1));
            }
            assert_eq!(acc.finish(), want);
        }
    }

    /// Every way of keeping a cell's values (bit sets; windows of bits; roaring sets appended
    /// to) equals a roaring insert per row, whether the values come in order or not.
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
            let rows = (next() % 3000) as usize;
            let span = 1 + next() % if case % 2 == 0 { 300 } else { 200_000 };
            let mut values: Vec<u32> = (0..rows)
                .map(|_| match next() % 10 {
                    0 => NO_VALUE,
                    _ => (next() % span) as u32,
                })
                .collect();
            // Half the cases in the order the scan reads (by value), half in any order.
            if case % 4 < 2 {
                values.sort_unstable();
            }
            let cell_of_row: Vec<u32> = (0..rows).map(|_| (next() % cells as u64) as u32).collect();
            let mut want = vec![RoaringBitmap::new(); cells];
            for (&v, &c) in values.iter().zip(&cell_of_row) {
                if v != NO_VALUE {
                    want[c as usize].insert(v);
                }
            }
            let width = (span as usize >> 3) + 1;
            let accs = [
                DistinctAcc::bits(width),
                DistinctAcc::window(),
                DistinctAcc::sets(),
            ];
            for mut acc in accs {
                // Cells appear as the scan meets them.
                let mut seen = vec![false; cells];
                let mut cell_at = vec![0usize; cells];
                let mut n = 0;
                for (&v, &c) in values.iter().zip(&cell_of_row) {
                    if !seen[c as usize] {
                        seen[c as usize] = true;
                        cell_at[c as usize] = n;
                        n += 1;
                        acc.new_cell();
                    }
                    acc.add(cell_at[c as usize], v);
                }
                let sets = acc.finish();
                for (c, want) in want.iter().enumerate() {
                    let got = if seen[c] {
                        sets[cell_at[c]].clone()
                    } else {
                        RoaringBitmap::new()
                    };
                    assert_eq!(&got, want, "case {case}, cell {c}");
                }
            }
        }
    }
}
