//! Metric buckets: a measure aggregated per entity and period (a customer's deposit total in a
//! month) decides the entity's band in that period. Computed from the fact's base table —
//! already grouped by the fact's keys and periods — so raw facts are read once per build.
//!
//! An entity with no facts in a period has a metric of 0 for sum, count and distinct, and none
//! (`unknown`) for min and max; so does an all-NULL sum. The unknown key (facts whose key is
//! NULL or not in the dimension table) and facts without a date are `unknown`.
//!
//! Quantile buckets rank instead: within each period, the entities with a metric value in it
//! are ordered by value and an entity's bucket is the number of quantiles below its
//! `cume_dist` (SQL's `CUME_DIST() OVER (PARTITION BY period ORDER BY value)`). Entities with
//! no value in the period (no facts, or only NULLs) are `unknown`.

use std::borrow::Cow;

use lattice_defs::model::{
    Agg, Bucket, BucketSource, Cuts, Decimal, DimensionKind, FactId, LevelKind, MeasureId,
    MeasureKind, Model, TimeGrain, UNKNOWN_MEMBER,
};

use super::base::BaseTable;
use crate::store::base::FactBase;
use crate::store::encoding::{Encoding, MetricCodes, metric_period};
use crate::store::time::{TimeAxis, coarsen};
use crate::store::{Column, LevelDict, MeasureColumn, NO_VALUE};
use crate::{EngineError, Result};

/// A metric bucket level's dimension, level, dictionary and codes, and where the codes' periods
/// lie among the whole metric's.
type Band = (usize, usize, LevelDict, MetricCodes, Span);

/// Metric periods computed (a window's) within all of the metric's: the index of the first,
/// and how many the metric has in all.
#[derive(Clone, Copy)]
struct Span {
    lo: usize,
    all: usize,
}

/// A metric bucket level: its dimension, level, bucket, measure and period grain.
type BandLevel<'m> = (usize, usize, &'m Bucket, MeasureId, Option<TimeGrain>);

/// The metric bucket levels whose measure aggregates `fact`.
fn bands_of(model: &Model, fact: FactId) -> Vec<BandLevel<'_>> {
    let mut out = Vec::new();
    for (d, dim) in model.dimensions.iter().enumerate() {
        for (l, level) in dim.levels.iter().enumerate() {
            if let LevelKind::Bucket(b) = &level.kind
                && let BucketSource::Metric { measure, period } = &b.source
                && matches!(&model.measures[*measure].kind,
                    MeasureKind::Aggregate { fact: f, .. } if *f == fact)
            {
                out.push((d, l, b, *measure, *period));
            }
        }
    }
    out
}

/// The facts whose measures some metric bucket level reads, per fact: the facts of the
/// metric levels its cuboids can show (its own dimensions', and those reached through `via`).
pub(crate) fn metric_sources(model: &Model, fact: FactId) -> Vec<FactId> {
    let mut out: Vec<FactId> = Vec::new();
    for (d, dim) in model.dimensions.iter().enumerate() {
        if !model.fact_has_dimension(fact, d) {
            continue;
        }
        for level in &dim.levels {
            if let LevelKind::Bucket(b) = &level.kind
                && let BucketSource::Metric { measure, .. } = &b.source
                && let MeasureKind::Aggregate { fact: f, .. } = &model.measures[*measure].kind
                && !out.contains(f)
            {
                out.push(*f);
            }
        }
    }
    out
}

/// Whether every metric bucket over `fact`'s measures has a period grain (a fact read a
/// range of periods at a time can decide those periods' bands from that range alone), and
/// the grain of each (to align the ranges to).
pub(crate) fn metric_grains(model: &Model, fact: FactId) -> Option<Vec<TimeGrain>> {
    bands_of(model, fact)
        .into_iter()
        .map(|(_, _, _, _, period)| period)
        .collect()
}

/// Computes the codes and dictionary of every metric bucket level over `fact`'s measures from
/// its base table `base`. With `window` (axis periods `a..b`, the periods `base` holds), only
/// the metric periods in it are computed, into codes the first window made (the other
/// periods `unknown` until theirs come). The bands are independent of each other, so the
/// build's threads take them in turns.
pub(crate) fn metric_buckets(
    model: &Model,
    dims: &mut Encoding,
    base: &BaseTable,
    fact: FactId,
    window: Option<(u32, u32)>,
) -> Result<()> {
    let jobs = bands_of(model, fact);
    if jobs.is_empty() {
        return Ok(());
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, jobs.len());
    let shared: &Encoding = dims;
    let done: Vec<Vec<Band>> = super::on_threads(workers, |w| {
        jobs.iter()
            .skip(w)
            .step_by(workers)
            .map(|&level| {
                let (dict, codes, span) = band(model, shared, base, level, window)?;
                Ok((level.0, level.1, dict, codes, span))
            })
            .collect()
    })?;
    for part in done {
        for (d, l, dict, codes, span) in part {
            let Some(c) = dims.codes[d].as_mut() else {
                continue;
            };
            dims.dicts[d][l] = dict;
            merge_window(&mut c.metric[l], codes, span);
        }
    }
    Ok(())
}

/// Whether a refresh may compute the metric buckets over `fact`'s measures for some periods
/// only ([`refresh_buckets`]): each has a period grain, `prior` (the definition the cube was
/// built from) defines it the same (level, measure, period, cuts and labels), and the cube's
/// encoding `prior_dims` has its codes.
pub(crate) fn buckets_refreshable(
    model: &Model,
    prior: &Model,
    prior_dims: &Encoding,
    fact: FactId,
) -> bool {
    bands_of(model, fact)
        .into_iter()
        .all(|(d, l, b, measure, period)| {
            let was = prior
                .dimensions
                .get(d)
                .and_then(|dim| dim.levels.get(l))
                .filter(|level| level.name == model.dimensions[d].levels[l].name);
            let same = match was.map(|level| &level.kind) {
                Some(LevelKind::Bucket(a)) => match &a.source {
                    BucketSource::Metric {
                        measure: m,
                        period: p,
                    } => {
                        prior.measures[*m].name == model.measures[measure].name
                            && *p == period
                            && a.cuts == b.cuts
                            && a.labels == b.labels
                    }
                    BucketSource::Column(_) => false,
                },
                _ => false,
            };
            let codes = prior_dims.codes[d]
                .as_ref()
                .and_then(|c| c.metric.get(l)?.as_ref())
                .is_some_and(|c| c.periods > 0);
            period.is_some() && same && codes
        })
}

/// The metric buckets over `fact`'s measures for a refresh: the cube's codes (`prior`, over
/// fewer periods) kept, and those of the axis periods `window` computed again from `part`
/// (its rows of those periods; the window begins and ends at a period of every band's
/// grain). With no window, the cube's codes only, `unknown` in periods it did not have.
/// Requires [`buckets_refreshable`].
pub(crate) fn refresh_buckets(
    model: &Model,
    dims: &mut Encoding,
    prior: &Encoding,
    part: &BaseTable,
    fact: FactId,
    window: Option<(u32, u32)>,
) -> Result<()> {
    for (d, l, b, _, period) in bands_of(model, fact) {
        let old = prior.codes[d]
            .as_ref()
            .and_then(|c| c.metric.get(l)?.as_ref())
            .filter(|c| c.periods > 0)
            .ok_or_else(|| EngineError::Internal("a band refreshed without its codes".into()))?;
        let all = metric_periods(model, dims, fact, period, None).count;
        if old.periods > all {
            return Err(EngineError::Internal(
                "a refreshed band with fewer periods".into(),
            ));
        }
        let mut codes = vec![old.unknown as u8; old.codes.len() / old.periods * all];
        for (k, row) in old.codes.chunks_exact(old.periods).enumerate() {
            codes[k * all..k * all + old.periods].copy_from_slice(row);
        }
        if let Some(c) = dims.codes[d].as_mut() {
            c.metric[l] = Some(MetricCodes {
                grain: old.grain,
                first: old.first,
                periods: all,
                codes,
                unknown: old.unknown,
            });
            dims.dicts[d][l] = band_dict(b);
        }
    }
    match window {
        Some(w) => metric_buckets(model, dims, part, fact, Some(w)),
        None => Ok(()),
    }
}

/// A window's codes into the whole metric's `all`: as they are when they cover every period,
/// else their periods into the codes the first window makes (`unknown` until each period's
/// window comes).
fn merge_window(all: &mut Option<MetricCodes>, codes: MetricCodes, span: Span) {
    if codes.periods == span.all {
        *all = Some(codes);
        return;
    }
    let keys = codes.codes.len() / codes.periods;
    let all = all.get_or_insert_with(|| MetricCodes {
        grain: codes.grain,
        first: codes.first - span.lo as i64,
        periods: span.all,
        codes: vec![codes.unknown as u8; keys * span.all],
        unknown: codes.unknown,
    });
    for (k, part) in codes.codes.chunks_exact(codes.periods).enumerate() {
        let at = k * span.all + span.lo;
        all.codes[at..at + codes.periods].copy_from_slice(part);
    }
}

/// Metric bucket level `(d, l)` of a built cube as bucket `bucket` (of `measure`, per
/// `period`) would make it, computed from the base rows the cube keeps — the same pass a build
/// makes, without reading the facts again: its dictionary (the labels and `unknown`) and
/// codes. `model`, `dims` and `base` are the cube's; the level's current definition is not
/// read.
pub(crate) fn recompute(
    model: &Model,
    dims: &Encoding,
    base: &FactBase,
    (d, l): (usize, usize),
    bucket: &Bucket,
    (measure, period): (MeasureId, Option<TimeGrain>),
) -> Result<(LevelDict, MetricCodes)> {
    let level: BandLevel<'_> = (d, l, bucket, measure, period);
    let mut all: Option<MetricCodes> = None;
    let mut names = None;
    let whole = base.parts.len() == 1;
    for (part, periods) in base.parts.iter().zip(&base.part_periods) {
        // A base read a range of periods at a time: each part is the window of its periods.
        let window = match (whole, periods.min(), periods.max()) {
            (true, _, _) => None,
            (false, Some(a), Some(b)) => Some((a, b + 1)),
            (false, _, _) => continue,
        };
        let (dict, codes, span) = band(model, dims, part, level, window)?;
        merge_window(&mut all, codes, span);
        names = Some(dict);
    }
    match (names, all) {
        (Some(dict), Some(codes)) => Ok((dict, codes)),
        _ => Err(EngineError::Internal(
            "a metric band over a fact with no base rows".into(),
        )),
    }
}

/// The metric periods a band computes: the metric's grain and the time axis (`None`: one
/// period for the whole metric), the first period (at the grain), how many, and where they
/// lie among the whole metric's.
struct Periods<'a> {
    grain: Option<(TimeGrain, &'a TimeAxis)>,
    first: i64,
    count: usize,
    span: Span,
}

/// The metric measure's fact and aggregation, checked: an aggregate, over a bucket with
/// fewer labels than a code holds (one code is kept for `unknown`).
fn metric_measure(model: &Model, (d, _, b, measure, _): BandLevel<'_>) -> Result<(FactId, Agg)> {
    let MeasureKind::Aggregate { fact, agg, .. } = &model.measures[measure].kind else {
        return Err(EngineError::Internal(
            "metric bucket over a derived measure".into(),
        ));
    };
    if b.labels.len() >= usize::from(u8::MAX) {
        return Err(EngineError::Unsupported {
            what: format!(
                "a metric bucket of {} labels on dimension '{}' (at most {})",
                b.labels.len(),
                model.dimensions[d].name,
                u8::MAX - 1
            ),
        });
    }
    Ok((*fact, *agg))
}

/// The metric periods computed for a metric of grain `period` over `fact`: all, or those of
/// `window` (axis periods).
fn metric_periods<'a>(
    model: &Model,
    dims: &'a Encoding,
    fact: FactId,
    period: Option<TimeGrain>,
    window: Option<(u32, u32)>,
) -> Periods<'a> {
    let grain = match (period, &dims.time, &model.facts[fact].time) {
        (Some(g), Some(axis), Some(_)) if axis.len > 0 => Some((g, axis)),
        _ => None,
    };
    let (first, count, span) = match grain {
        Some((g, axis)) => {
            let (a, b) = window.unwrap_or((0, axis.len as u32));
            let at = |p: u32| coarsen(axis.abs(p), axis.grain, g);
            let (all_first, all_last) = (at(0), at(axis.len as u32 - 1));
            let (first, last) = (at(a), at(b.max(a + 1) - 1));
            let span = Span {
                lo: (first - all_first) as usize,
                all: (all_last - all_first + 1) as usize,
            };
            (first, (last - first + 1) as usize, span)
        }
        None => (0, 1, Span { lo: 0, all: 1 }),
    };
    Periods {
        grain,
        first,
        count,
        span,
    }
}

/// One metric bucket level of dimension `d`: the metric per (key, period) slot from the
/// measure's base table, then each slot's band; within `window` (axis periods), the metric
/// periods it covers, and the index of the first.
fn band(
    model: &Model,
    dims: &Encoding,
    base: &BaseTable,
    level: BandLevel<'_>,
    window: Option<(u32, u32)>,
) -> Result<(LevelDict, MetricCodes, Span)> {
    let (d, _, b, measure, period) = level;
    let (fact, agg) = metric_measure(model, level)?;
    let column = base
        .measure_ids
        .iter()
        .position(|m| *m == measure)
        .map(|j| &base.measures[j])
        .ok_or_else(|| {
            EngineError::Internal("metric measure missing from its base table".into())
        })?;
    let n_keys = dims.codes[d]
        .as_ref()
        .ok_or_else(|| EngineError::Internal("metric bucket on the time dimension".into()))?
        .n_keys;
    let periods = metric_periods(model, dims, fact, period, window);
    let (grain, count) = (periods.grain, periods.count);
    let slots = (n_keys + 1) * count;
    // Each row's slot: its key's, at its period's index (none for the unknown key, or for a
    // row without a date when the metric is per period).
    let keys = key_codes(model, dims, base, fact, d, None);
    let period_col = base.codes.last().map(Column::as_slice).unwrap_or(&[]);
    let index: Vec<usize> = match grain {
        Some((g, axis)) => (0..axis.len as u32)
            .map(|p| metric_period(Some(g), periods.first, Some(axis), p))
            .collect(),
        None => Vec::new(),
    };
    let slot = |r: usize| -> Option<usize> {
        let k = keys[r] as usize;
        if k >= n_keys {
            return None;
        }
        let pi = if grain.is_some() {
            *index.get(period_col[r] as usize)?
        } else {
            0
        };
        Some(k * count + pi)
    };
    let rows = base.len();
    // Slots that saw at least one fact row.
    let mut seen = vec![false; slots];
    for r in 0..rows {
        if let Some(s) = slot(r) {
            seen[s] = true;
        }
    }
    let metric = slot_metric(column, agg, rows, slots, &slot, &keys)?;
    let (codes, unknown) = band_codes(b, agg, &*metric, &seen, n_keys, count)?;
    Ok((
        band_dict(b),
        MetricCodes {
            grain: grain.map(|(g, _)| g),
            first: periods.first,
            periods: count,
            codes,
            unknown: u32::from(unknown),
        },
        periods.span,
    ))
}

/// A band's members: its labels, then `unknown`.
fn band_dict(b: &Bucket) -> LevelDict {
    let mut names = b.labels.clone();
    names.push(UNKNOWN_MEMBER.to_string());
    LevelDict::new(names)
}

/// A metric per slot (see [`slot_metric`]).
type SlotMetric = Box<dyn Fn(usize) -> Result<Option<i128>>>;

/// The metric (`agg` of `column` over the `rows` of each of `slots`) per slot that saw
/// facts, at the scale of the edges; `None` where all its values were NULL. `keys` are the
/// rows' key codes (for distinct counts).
fn slot_metric(
    column: &MeasureColumn,
    agg: Agg,
    rows: usize,
    slots: usize,
    slot: &impl Fn(usize) -> Option<usize>,
    keys: &[u32],
) -> Result<SlotMetric> {
    let unit = 10i128.pow(Decimal::SCALE);
    Ok(match column {
        MeasureColumn::Decimal64 {
            values,
            valid,
            scale,
        } => {
            let scale = *scale;
            match accumulate::<i64, i64>(rows, slot, values, valid, agg, slots, |x| x) {
                Some((acc, has)) => Box::new(move |s| {
                    has[s]
                        .then(|| at_edge_scale(i128::from(acc[s]), scale))
                        .transpose()
                }),
                // A sum past 64 bits: again in 128.
                None => {
                    let (acc, has) =
                        accumulate::<i64, i128>(rows, slot, values, valid, agg, slots, i128::from)
                            .ok_or_else(|| {
                                EngineError::Internal("metric value overflows".into())
                            })?;
                    Box::new(move |s| has[s].then(|| at_edge_scale(acc[s], scale)).transpose())
                }
            }
        }
        MeasureColumn::Decimal {
            values,
            valid,
            scale,
        } => {
            let scale = *scale;
            let (acc, has) = accumulate::<i128, i128>(rows, slot, values, valid, agg, slots, |x| x)
                .ok_or_else(|| EngineError::Internal("metric value overflows".into()))?;
            Box::new(move |s| has[s].then(|| at_edge_scale(acc[s], scale)).transpose())
        }
        MeasureColumn::Count(v) => {
            let mut counts = vec![0u64; slots];
            for (r, c) in v.iter().enumerate() {
                if let Some(s) = slot(r) {
                    counts[s] += c;
                }
            }
            Box::new(move |s| Ok(Some(i128::from(counts[s]) * unit)))
        }
        MeasureColumn::DistinctValues(v) => {
            let counts = distinct_counts(rows, slot, keys, v, slots);
            Box::new(move |s| Ok(Some(i128::from(counts[s]) * unit)))
        }
        MeasureColumn::Distinct(_) => {
            return Err(EngineError::Internal("bitmaps in a base table".into()));
        }
    })
}

/// Each slot's band code (`n_keys` keys and the unknown key, `periods` each) from its
/// `metric` over bucket `b`, and the code of `unknown`. Slots not `seen` (no facts in the
/// period) take the band of 0 for sums and counts over fixed edges, and `unknown` for min
/// and max and for quantiles (nothing to rank).
fn band_codes(
    b: &Bucket,
    agg: Agg,
    metric: &dyn Fn(usize) -> Result<Option<i128>>,
    seen: &[bool],
    n_keys: usize,
    periods: usize,
) -> Result<(Vec<u8>, u8)> {
    let unknown = b.labels.len() as u32;
    let empty = match (agg, b.cuts.index_of(Decimal(0))) {
        (Agg::Sum | Agg::Count | Agg::Distinct, Some(zero_band)) => zero_band as u32,
        _ => unknown,
    };
    let (empty, unknown) = (empty as u8, unknown as u8);
    let mut codes = vec![empty; seen.len()];
    codes[n_keys * periods..].fill(unknown);
    match &b.cuts {
        Cuts::Edges(_) => {
            for s in (0..n_keys * periods).filter(|s| seen[*s]) {
                codes[s] = match metric(s)? {
                    Some(v) => b.cuts.index_of(Decimal(v)).unwrap_or(0) as u8,
                    None => unknown,
                };
            }
        }
        Cuts::Quantiles(_) => {
            for s in (0..n_keys * periods).filter(|s| seen[*s]) {
                codes[s] = unknown;
            }
            for pi in 0..periods {
                let mut ranked = Vec::new();
                for s in (0..n_keys).map(|k| k * periods + pi).filter(|s| seen[*s]) {
                    if let Some(v) = metric(s)? {
                        ranked.push((v, s));
                    }
                }
                for (s, class) in quantile_classes(&b.cuts, ranked.into_iter()) {
                    codes[s] = class as u8;
                }
            }
        }
    }
    Ok((codes, unknown))
}

/// A checked sum for the metric's accumulator.
trait Total: Copy + Ord + Default {
    fn plus(self, other: Self) -> Option<Self>;
}

impl Total for i64 {
    fn plus(self, other: i64) -> Option<i64> {
        self.checked_add(other)
    }
}

impl Total for i128 {
    fn plus(self, other: i128) -> Option<i128> {
        self.checked_add(other)
    }
}

/// The sum, minimum or maximum of each slot's non-null values, and whether it has one;
/// `None` when a sum leaves `T`.
fn accumulate<S: Copy, T: Total>(
    rows: usize,
    slot: &impl Fn(usize) -> Option<usize>,
    values: &[S],
    valid: &[bool],
    agg: Agg,
    slots: usize,
    widen: impl Fn(S) -> T,
) -> Option<(Vec<T>, Vec<bool>)> {
    let mut acc = vec![T::default(); slots];
    let mut has = vec![false; slots];
    for r in 0..rows {
        let Some(s) = slot(r) else {
            continue;
        };
        if !valid[r] {
            continue;
        }
        let x = widen(values[r]);
        acc[s] = if !has[s] {
            x
        } else {
            match agg {
                Agg::Min => acc[s].min(x),
                Agg::Max => acc[s].max(x),
                _ => acc[s].plus(x)?,
            }
        };
        has[s] = true;
    }
    Some((acc, has))
}

/// Distinct values per slot. Base rows come in the order of their widest key, so when that
/// is the metric's key each key's rows are together and are counted on their own; otherwise
/// every (slot, value) pair is sorted at once.
fn distinct_counts(
    rows: usize,
    slot: &impl Fn(usize) -> Option<usize>,
    keys: &[u32],
    values: &[u32],
    slots: usize,
) -> Vec<u32> {
    let mut counts = vec![0u32; slots];
    let mut pairs: Vec<(usize, u32)> = Vec::new();
    let mut count = |pairs: &mut Vec<(usize, u32)>| {
        pairs.sort_unstable();
        pairs.dedup();
        for (s, _) in pairs.iter() {
            counts[*s] += 1;
        }
        pairs.clear();
    };
    let sorted = keys.is_sorted();
    for r in 0..rows {
        if sorted && r > 0 && keys[r] != keys[r - 1] {
            count(&mut pairs);
        }
        if let Some(s) = slot(r)
            && values[r] != NO_VALUE
        {
            pairs.push((s, values[r]));
        }
    }
    count(&mut pairs);
    counts
}

/// Key codes of dimension `dim` (following `via`) at base rows `at`, or at every row
/// (borrowed for a dimension the fact carries).
pub(crate) fn key_codes<'b>(
    model: &Model,
    dims: &Encoding,
    base: &'b BaseTable,
    fact: FactId,
    dim: usize,
    at: Option<&[u32]>,
) -> Cow<'b, [u32]> {
    let len = at.map_or(base.len(), <[u32]>::len);
    if let Some(i) = model.facts[fact].direct.iter().position(|d| *d == dim) {
        let col = &base.codes[i];
        return match at {
            None => Cow::Borrowed(col),
            Some(at) => Cow::Owned(at.iter().map(|&r| col[r as usize]).collect()),
        };
    }
    let DimensionKind::Table { via: Some(v), .. } = &model.dimensions[dim].kind else {
        return Cow::Owned(vec![0; len]);
    };
    let from = key_codes(model, dims, base, fact, *v, at);
    Cow::Owned(match dims.via[dim].as_ref() {
        Some(map) => from.iter().map(|k| map[*k as usize]).collect(),
        None => vec![0; len],
    })
}

/// The quantile bucket of each `(value, slot)` ranked together (one period's entities): the
/// number of quantiles below the slot's `cume_dist`, the share of values at most its own (ties
/// share a bucket).
fn quantile_classes(cuts: &Cuts, ranked: impl Iterator<Item = (i128, usize)>) -> Vec<(usize, u32)> {
    let mut ranked: Vec<(i128, usize)> = ranked.collect();
    ranked.sort_unstable();
    let n = ranked.len() as u64;
    let mut out = Vec::with_capacity(ranked.len());
    let mut i = 0;
    while i < ranked.len() {
        let ties = ranked[i..].partition_point(|(v, _)| *v == ranked[i].0);
        let at_most = (i + ties) as u64;
        let class = cuts.quantile_class(at_most, n).unwrap_or(0) as u32;
        out.extend(ranked[i..i + ties].iter().map(|(_, slot)| (*slot, class)));
        i += ties;
    }
    out
}

/// A value at `scale` as a [`Decimal`] (the scale bucket edges are kept at).
fn at_edge_scale(value: i128, scale: i8) -> Result<i128> {
    let edge = Decimal::SCALE as i32;
    let scale = i32::from(scale);
    if scale <= edge {
        value
            .checked_mul(10i128.pow((edge - scale) as u32))
            .ok_or_else(|| EngineError::Internal("metric value overflows".into()))
    } else {
        Err(EngineError::Unsupported {
            what: format!("a metric bucket over decimals with {scale} places (at most {edge})"),
        })
    }
}
