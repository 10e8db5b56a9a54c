//! How source keys become member codes: the dictionary encoding of every table dimension,
//! metric bands per entity and period, and the time axis. The build writes it
//! ([`crate::build`]); the fallback reads it to code raw facts exactly as the cuboids are coded.
//!
//! Every key count `n` has an extra code `n` for facts whose key is NULL or not in the
//! dimension table; it maps to `unknown` in every level.

use std::collections::HashMap;

use lattice_defs::model::TimeGrain;

use super::LevelDict;
use super::time::{NO_PERIOD, TimeAxis, coarsen};

/// A key value read from a key column: integers and text keys are both allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum KeyValue {
    Int(i64),
    Text(String),
}

/// Codes of one table dimension.
#[derive(Debug, PartialEq)]
pub(crate) struct DimCodes {
    /// Number of keys; code `n_keys` is the "unknown key".
    pub n_keys: usize,
    pub key_map: HashMap<KeyValue, u32>,
    pub integer_key: bool,
    /// Integer keys in a compact range: `(smallest key, key - smallest -> code)`, so facts are
    /// coded by indexing instead of hashing (`n_keys` where a key is absent).
    pub dense: Option<(i64, Vec<u32>)>,
    /// Per level: key code -> member code (column levels and column buckets).
    pub by_key: Vec<Option<Vec<u32>>>,
    /// Per level: metric bucket codes.
    pub metric: Vec<Option<MetricCodes>>,
}

impl DimCodes {
    pub fn key_code(&self, key: &Option<KeyValue>) -> u32 {
        key.as_ref()
            .and_then(|k| self.key_map.get(k))
            .copied()
            .unwrap_or(self.n_keys as u32)
    }
}

/// A metric bucket's member per (entity key code, period of its grain).
#[derive(Debug, PartialEq)]
pub(crate) struct MetricCodes {
    /// `None`: one period (the metric over all time).
    pub grain: Option<TimeGrain>,
    /// Absolute period of index 0 at `grain`.
    pub first: i64,
    pub periods: usize,
    /// `codes[key * periods + period]`: a band's code, a byte each (a million customers over
    /// 24 months is 24 MB a band, kept for the fallback as long as the cube).
    pub codes: Vec<u8>,
    /// The code of `unknown` (for facts without a period).
    pub unknown: u32,
}

impl MetricCodes {
    /// The member for a key code and an absolute period of the axis grain.
    pub fn code(&self, key: u32, axis: Option<&TimeAxis>, period: u32) -> u32 {
        if period == NO_PERIOD && self.grain.is_some() {
            return self.unknown;
        }
        let p = metric_period(self.grain, self.first, axis, period);
        u32::from(self.codes[key as usize * self.periods + p])
    }
}

/// The index among a metric's periods (of `grain`, from absolute period `first`) of axis
/// period `period`; 0 for a metric over all time.
pub(crate) fn metric_period(
    grain: Option<TimeGrain>,
    first: i64,
    axis: Option<&TimeAxis>,
    period: u32,
) -> usize {
    match (grain, axis) {
        (Some(g), Some(axis)) => (coarsen(axis.abs(period), axis.grain, g) - first) as usize,
        _ => 0,
    }
}

/// Everything stage 1 produces.
#[derive(Debug, PartialEq)]
pub(crate) struct Encoding {
    pub time: Option<TimeAxis>,
    /// Per dimension (None for the time dimension).
    pub codes: Vec<Option<DimCodes>>,
    /// Per dimension with `via: V`: V's key code -> this dimension's key code.
    pub via: Vec<Option<Vec<u32>>>,
    /// Member dictionaries, `dicts[dim][level]`.
    pub dicts: Vec<Vec<LevelDict>>,
    /// Roll-up arrays `(dim, child level, ancestor level)` -> child code -> ancestor code, for
    /// every pair of a hierarchy; `None` where a child member (such as `unknown`) lies under
    /// several ancestors, so that roll-up must start from finer data.
    pub parents: HashMap<(usize, usize, usize), Option<Vec<u32>>>,
}

/// SQL casting a key column to the type keys are compared in.
pub(crate) fn key_sql(expr: &str, integer: bool) -> String {
    if integer {
        format!("CAST({expr} AS BIGINT)")
    } else {
        format!("CAST({expr} AS VARCHAR)")
    }
}
