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

use lattice_defs::model::{
    Agg, BucketSource, Cuts, Decimal, LevelKind, MeasureKind, Model, UNKNOWN_MEMBER,
};

use super::base::BaseTable;
use super::dims::{Dims, MetricCodes};
use super::lattice::base_key;
use super::time::{NO_PERIOD, coarsen};
use crate::store::{LevelDict, MeasureColumn, NO_VALUE};
use crate::{EngineError, Result};

/// Per (entity key, period) slot: the aggregate so far.
enum Acc {
    Decimal {
        values: Vec<i128>,
        valid: Vec<bool>,
        scale: i8,
    },
    Count(Vec<u64>),
    /// (slot, value) pairs; counted after sorting away duplicates.
    Distinct(Vec<(usize, u32)>),
}

pub(crate) fn metric_buckets(model: &Model, dims: &mut Dims, bases: &[BaseTable]) -> Result<()> {
    for (d, dim) in model.dimensions.iter().enumerate() {
        for (l, level) in dim.levels.iter().enumerate() {
            let LevelKind::Bucket(b) = &level.kind else {
                continue;
            };
            let BucketSource::Metric { measure, period } = &b.source else {
                continue;
            };
            let MeasureKind::Aggregate { fact, agg, .. } = &model.measures[*measure].kind else {
                return Err(EngineError::Internal(
                    "metric bucket over a derived measure".into(),
                ));
            };
            let base = &bases[*fact];
            let column = base
                .measure_ids
                .iter()
                .position(|m| m == measure)
                .map(|j| &base.measures[j])
                .ok_or_else(|| {
                    EngineError::Internal("metric measure missing from its base table".into())
                })?;
            let n_keys = dims.codes[d]
                .as_ref()
                .ok_or_else(|| EngineError::Internal("metric bucket on the time dimension".into()))?
                .n_keys;
            let grain = match (period, &dims.time, &model.facts[*fact].time) {
                (Some(g), Some(axis), Some(_)) if axis.len > 0 => Some((*g, axis)),
                _ => None,
            };
            let (first, periods) = match grain {
                Some((g, axis)) => {
                    let first = coarsen(axis.first, axis.grain, g);
                    let last = coarsen(axis.abs(axis.len as u32 - 1), axis.grain, g);
                    (first, (last - first + 1) as usize)
                }
                None => (0, 1),
            };
            let slots = (n_keys + 1) * periods;
            let mut acc = match column {
                MeasureColumn::Decimal { scale, .. } | MeasureColumn::Decimal64 { scale, .. } => {
                    Acc::Decimal {
                        values: vec![0; slots],
                        valid: vec![false; slots],
                        scale: *scale,
                    }
                }
                MeasureColumn::Count(_) => Acc::Count(vec![0; slots]),
                MeasureColumn::DistinctValues(_) => Acc::Distinct(Vec::new()),
                MeasureColumn::Distinct(_) => {
                    return Err(EngineError::Internal("bitmaps in a base table".into()));
                }
            };
            // Slots that saw at least one fact row.
            let mut seen = vec![false; slots];
            let period_col = base.codes.last().map(Vec::as_slice).unwrap_or(&[]);
            for (r, &p) in period_col.iter().enumerate() {
                let k = base_key(model, dims, base, *fact, d, r) as usize;
                if k >= n_keys || (grain.is_some() && p == NO_PERIOD) {
                    continue;
                }
                let pi = match grain {
                    Some((g, axis)) => (coarsen(axis.abs(p), axis.grain, g) - first) as usize,
                    None => 0,
                };
                let slot = k * periods + pi;
                seen[slot] = true;
                match (&mut acc, column) {
                    (
                        Acc::Decimal { values, valid, .. },
                        MeasureColumn::Decimal {
                            values: v,
                            valid: ok,
                            ..
                        },
                    ) => {
                        if ok[r] {
                            super::base::merge_decimal(values, valid, slot, v[r], *agg);
                        }
                    }
                    (
                        Acc::Decimal { values, valid, .. },
                        MeasureColumn::Decimal64 {
                            values: v,
                            valid: ok,
                            ..
                        },
                    ) => {
                        if ok[r] {
                            let x = i128::from(v[r]);
                            super::base::merge_decimal(values, valid, slot, x, *agg);
                        }
                    }
                    (Acc::Count(c), MeasureColumn::Count(v)) => c[slot] += v[r],
                    (Acc::Distinct(pairs), MeasureColumn::DistinctValues(v)) => {
                        if v[r] != NO_VALUE {
                            pairs.push((slot, v[r]));
                        }
                    }
                    _ => {
                        return Err(EngineError::Internal(
                            "metric accumulator kinds differ".into(),
                        ));
                    }
                }
            }
            // The metric per slot that saw facts, at the scale of the edges; `None` where all
            // its values were NULL.
            let unit = 10i128.pow(Decimal::SCALE);
            let mut metric: Vec<Option<i128>> = vec![None; slots];
            match acc {
                Acc::Decimal {
                    values,
                    valid,
                    scale,
                } => {
                    for slot in (0..n_keys * periods).filter(|s| seen[*s] && valid[*s]) {
                        metric[slot] = Some(at_edge_scale(values[slot], scale)?);
                    }
                }
                Acc::Count(counts) => {
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        metric[slot] = Some(i128::from(counts[slot]) * unit);
                    }
                }
                Acc::Distinct(mut pairs) => {
                    pairs.sort_unstable();
                    pairs.dedup();
                    let mut counts = vec![0i128; slots];
                    for (slot, _) in pairs {
                        counts[slot] += 1;
                    }
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        metric[slot] = Some(counts[slot] * unit);
                    }
                }
            }
            let unknown = b.labels.len() as u32;
            // No facts in the period: the band of 0 for sums and counts over fixed edges;
            // `unknown` for min and max, and for quantiles (nothing to rank).
            let empty = match (agg, b.cuts.index_of(Decimal(0))) {
                (Agg::Sum | Agg::Count | Agg::Distinct, Some(zero_band)) => zero_band as u32,
                _ => unknown,
            };
            let mut codes = vec![empty; slots];
            codes[n_keys * periods..].fill(unknown);
            for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                codes[slot] = unknown;
            }
            match &b.cuts {
                Cuts::Edges(_) => {
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        if let Some(v) = metric[slot] {
                            codes[slot] = b.cuts.index_of(Decimal(v)).unwrap_or(0) as u32;
                        }
                    }
                }
                Cuts::Quantiles(_) => {
                    for pi in 0..periods {
                        let ranked = (0..n_keys)
                            .map(|k| k * periods + pi)
                            .filter_map(|slot| metric[slot].map(|v| (v, slot)));
                        for (slot, class) in quantile_classes(&b.cuts, ranked) {
                            codes[slot] = class;
                        }
                    }
                }
            }
            let mut names = b.labels.clone();
            names.push(UNKNOWN_MEMBER.to_string());
            dims.dicts[d][l] = LevelDict::new(names);
            if let Some(c) = dims.codes[d].as_mut() {
                c.metric[l] = Some(MetricCodes {
                    grain: grain.map(|(g, _)| g),
                    first,
                    periods,
                    codes,
                    unknown,
                });
            }
        }
    }
    Ok(())
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
