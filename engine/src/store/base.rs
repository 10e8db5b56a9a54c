//! The base tables: each fact at the cube grain (the key of every dimension it carries and the
//! finest time period), kept with the cube as its last cuboid. A question no cuboid covers is
//! aggregated from them by the same pass that builds cuboids from the base.

use lattice_defs::model::{Agg, MeasureId};
use roaring::RoaringBitmap;

use super::time::NO_PERIOD;
use super::{Column, MeasureColumn, NO_VALUE};

/// How a stored measure combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MeasureSpec {
    pub agg: Agg,
    /// Semi-additive: only closing-period rows count.
    pub semi: bool,
}

/// A fact at the cube grain: `codes` holds one column per direct dimension (key codes) and,
/// last, the period (0 when the fact has no time); no two rows share all codes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BaseTable {
    pub codes: Vec<Column<u32>>,
    pub measure_ids: Vec<MeasureId>,
    pub specs: Vec<MeasureSpec>,
    pub measures: Vec<MeasureColumn>,
    /// Rows of raw facts read.
    pub fact_rows: u64,
    /// Queries the raw facts were read with (one per range of periods).
    pub queries: usize,
    /// The key column the rows are in the order of (then by period), if any.
    pub sorted_by: Option<usize>,
    /// Set for a fact read a range of periods at a time (this table then holds one range,
    /// or none): the fact rows the whole fact has, for choosing its cuboids.
    pub planned_rows: Option<u64>,
    /// Set with `planned_rows`: the periods the whole fact has rows in.
    pub periods_present: Option<RoaringBitmap>,
}

impl BaseTable {
    pub fn len(&self) -> usize {
        self.codes.last().map_or(0, |c| c.len())
    }

    /// Rows of the whole fact at the grain, for estimates: the table's, or, for a fact read
    /// a range at a time, its fact rows (at most as many).
    pub fn rows_hint(&self) -> usize {
        self.planned_rows
            .map_or(self.len(), |r| usize::try_from(r).unwrap_or(usize::MAX))
    }

    /// The periods with rows (not [`NO_PERIOD`]), each once.
    pub fn periods(&self) -> RoaringBitmap {
        if let Some(p) = &self.periods_present {
            return p.clone();
        }
        let Some(col) = self.codes.last() else {
            return RoaringBitmap::new();
        };
        // Periods are a few hundred axis indexes at most: flags, not a set insert per row.
        let mut seen: Vec<bool> = Vec::new();
        for &p in col.iter().filter(|p| **p != NO_PERIOD) {
            if p as usize >= seen.len() {
                seen.resize(p as usize + 1, false);
            }
            seen[p as usize] = true;
        }
        (0..seen.len() as u32)
            .filter(|p| seen[*p as usize])
            .collect()
    }

    /// Bytes of codes and values.
    pub fn memory_bytes(&self) -> usize {
        self.codes.iter().map(|c| c.len() * 4).sum::<usize>()
            + self
                .measures
                .iter()
                .map(MeasureColumn::memory_bytes)
                .sum::<usize>()
    }
}

/// What a fact's distinct-value columns hold, for choosing how to keep their sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ValueStats {
    pub max: Option<u32>,
    /// Non-decreasing in the base's order (values of its sort key).
    pub ascending: bool,
}

/// A fact's base rows kept in the store: one table for a fact read whole, one per range of
/// periods for a fact read a range at a time (each sorted by the fact's widest key, then
/// period).
#[derive(Debug, PartialEq)]
pub(crate) struct FactBase {
    pub parts: Vec<BaseTable>,
    /// Per measure column: what its distinct values hold over all the parts.
    pub ranges: Vec<Option<ValueStats>>,
    /// The periods with rows.
    pub periods: RoaringBitmap,
    /// Per part, the periods it has rows in.
    pub part_periods: Vec<RoaringBitmap>,
}

impl FactBase {
    /// The base of a fact from its tables (all of one fact, each sorted as the build sorts
    /// it) and the periods it has rows in.
    pub fn new(parts: Vec<BaseTable>, periods: RoaringBitmap) -> FactBase {
        let columns = parts.first().map_or(0, |p| p.measures.len());
        let ranges = (0..columns)
            .map(|j| {
                let mut stats: Option<ValueStats> = None;
                for part in &parts {
                    let MeasureColumn::DistinctValues(v) = &part.measures[j] else {
                        return None;
                    };
                    let max = v.iter().copied().filter(|x| *x != NO_VALUE).max();
                    let s = stats.get_or_insert(ValueStats {
                        max: None,
                        ascending: true,
                    });
                    s.max = s.max.max(max);
                    s.ascending = s.ascending && v.is_sorted();
                }
                stats
            })
            .collect();
        FactBase {
            part_periods: parts.iter().map(BaseTable::periods).collect(),
            parts,
            ranges,
            periods,
        }
    }

    /// Rows over all the parts.
    pub fn len(&self) -> usize {
        self.parts.iter().map(BaseTable::len).sum()
    }

    /// Bytes of codes and values.
    pub fn memory_bytes(&self) -> usize {
        self.parts.iter().map(BaseTable::memory_bytes).sum()
    }
}
