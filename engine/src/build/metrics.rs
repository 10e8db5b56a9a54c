//! Metric buckets: a measure aggregated per entity and period (a customer's deposit total in a
//! month) decides the entity's band in that period. Computed from the fact's base table —
//! already grouped by the fact's keys and periods — so raw facts are read once per build.
//!
//! An entity with no facts in a period has a metric of 0 for sum, count and distinct, and none
//! (`unknown`) for min and max; so does an all-NULL sum. The unknown key (facts whose key is
//! NULL or not in the dimension table) and facts without a date are `unknown`.

use lattice_defs::model::{
    Agg, BucketSource, Decimal, LevelKind, MeasureKind, Model, UNKNOWN_MEMBER,
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
                MeasureColumn::Decimal { scale, .. } => Acc::Decimal {
                    values: vec![0; slots],
                    valid: vec![false; slots],
                    scale: *scale,
                },
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
            let unknown = b.labels.len() as u32;
            let zero_band = b.index_of(Decimal(0)) as u32;
            let empty = if matches!(agg, Agg::Sum | Agg::Count | Agg::Distinct) {
                zero_band
            } else {
                unknown
            };
            let mut codes = vec![empty; slots];
            codes[n_keys * periods..].fill(unknown);
            let band = |count: u64| {
                b.index_of(Decimal(i128::from(count) * 10i128.pow(Decimal::SCALE))) as u32
            };
            match acc {
                Acc::Decimal {
                    values,
                    valid,
                    scale,
                } => {
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        codes[slot] = if valid[slot] {
                            b.index_of(Decimal(at_edge_scale(values[slot], scale)?)) as u32
                        } else {
                            unknown
                        };
                    }
                }
                Acc::Count(counts) => {
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        codes[slot] = band(counts[slot]);
                    }
                }
                Acc::Distinct(mut pairs) => {
                    pairs.sort_unstable();
                    pairs.dedup();
                    let mut counts = vec![0u64; slots];
                    for (slot, _) in pairs {
                        counts[slot] += 1;
                    }
                    for slot in (0..n_keys * periods).filter(|s| seen[*s]) {
                        codes[slot] = band(counts[slot]);
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
