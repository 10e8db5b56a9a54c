//! A cuboid: the aggregates of one fact table grouped by a set of levels.
//!
//! # Invariants
//!
//! - `codes[k][cell]` is the member code of `levels[k]` for `cell`; no two cells have the same
//!   codes; cells are sorted by their codes (lexicographically, in `levels` order).
//! - `measures[j]` holds the values of `measure_ids[j]` for every cell (`len()` entries).
//! - Money and other decimals are exact integers at the source column's `scale`.
//! - Semi-additive (`over_time: last`) measures hold, per cell, the value at the closing
//!   period of the cell's time member (the last period of that member present in the fact
//!   table), or at the latest period when the cuboid has no time level.

use lattice_defs::model::{FactId, LevelRef, MeasureId};
use roaring::RoaringBitmap;

use super::Column;

/// One measure's values over the cells of a cuboid.
#[derive(Debug, Clone, PartialEq)]
pub enum MeasureColumn {
    /// Sums, minimums or maximums at `scale`; `valid[cell]` is false where every input was null
    /// (SQL's NULL).
    Decimal {
        values: Column<i128>,
        valid: Vec<bool>,
        scale: i8,
    },
    /// [`MeasureColumn::Decimal`] in 64 bits: the form a base table keeps decimals in while
    /// every value fits (half the memory of the base stage's largest columns). Never in a
    /// cuboid.
    Decimal64 {
        values: Column<i64>,
        valid: Vec<bool>,
        scale: i8,
    },
    /// Row counts (or non-null counts).
    Count(Column<u64>),
    /// Exact distinct sets: the codes of the distinct values per cell.
    Distinct(Vec<RoaringBitmap>),
    /// One distinct value per row ([`NO_VALUE`] for none): the form a base table keeps them in
    /// (its grain includes the distinct values). Never in a cuboid.
    DistinctValues(Column<u32>),
}

/// Marks a row without a value in [`MeasureColumn::DistinctValues`].
pub const NO_VALUE: u32 = u32::MAX;

impl MeasureColumn {
    /// The values of `rows` (in order).
    pub(crate) fn gather(&self, rows: &[usize]) -> MeasureColumn {
        let pick = |v: &[bool]| rows.iter().map(|&r| v[r]).collect();
        match self {
            MeasureColumn::Count(v) => MeasureColumn::Count(rows.iter().map(|&r| v[r]).collect()),
            MeasureColumn::Decimal {
                values,
                valid,
                scale,
            } => MeasureColumn::Decimal {
                values: rows.iter().map(|&r| values[r]).collect(),
                valid: pick(valid),
                scale: *scale,
            },
            MeasureColumn::Decimal64 {
                values,
                valid,
                scale,
            } => MeasureColumn::Decimal64 {
                values: rows.iter().map(|&r| values[r]).collect(),
                valid: pick(valid),
                scale: *scale,
            },
            MeasureColumn::Distinct(v) => {
                MeasureColumn::Distinct(rows.iter().map(|&r| v[r].clone()).collect())
            }
            MeasureColumn::DistinctValues(v) => {
                MeasureColumn::DistinctValues(rows.iter().map(|&r| v[r]).collect())
            }
        }
    }

    /// Hands its vector over to a shared buffer ([`Column::share`]).
    pub(crate) fn share(&mut self) {
        match self {
            MeasureColumn::Decimal { values, .. } => values.share(),
            MeasureColumn::Decimal64 { values, .. } => values.share(),
            MeasureColumn::Count(v) => v.share(),
            MeasureColumn::DistinctValues(v) => v.share(),
            MeasureColumn::Distinct(_) => {}
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        match self {
            MeasureColumn::Decimal { values, valid, .. } => values.len() * 16 + valid.len(),
            MeasureColumn::Decimal64 { values, valid, .. } => values.len() * 8 + valid.len(),
            MeasureColumn::Count(v) => v.len() * 8,
            MeasureColumn::Distinct(v) => v.iter().map(|b| b.serialized_size() + 8).sum(),
            MeasureColumn::DistinctValues(v) => v.len() * 4,
        }
    }
}

/// A measure value of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellValue {
    /// An exact decimal: `value * 10^-scale`.
    Decimal {
        value: i128,
        scale: i8,
    },
    /// A count (rows, non-null values, or distinct values).
    Count(u64),
    Null,
}

impl std::fmt::Display for CellValue {
    /// Decimals with exactly their scale's digits (`-12.50`), counts as integers, `NULL`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            CellValue::Null => f.write_str("NULL"),
            CellValue::Count(n) => write!(f, "{n}"),
            CellValue::Decimal { value, scale } if scale <= 0 => write!(f, "{value}"),
            CellValue::Decimal { value, scale } => {
                let unit = 10u128.pow(scale as u32);
                let sign = if value < 0 { "-" } else { "" };
                let abs = value.unsigned_abs();
                write!(
                    f,
                    "{sign}{}.{:0width$}",
                    abs / unit,
                    abs % unit,
                    width = scale as usize
                )
            }
        }
    }
}

/// The aggregates of one fact table grouped by `levels`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cuboid {
    pub fact: FactId,
    pub levels: Vec<LevelRef>,
    /// `codes[k][cell]`: member code of `levels[k]`.
    pub codes: Vec<Column<u32>>,
    pub measure_ids: Vec<MeasureId>,
    pub measures: Vec<MeasureColumn>,
    /// Which cuboid it was aggregated from (`None`: from the base table of the fact).
    pub parent: Option<usize>,
}

impl Cuboid {
    pub fn fact(&self) -> FactId {
        self.fact
    }

    pub fn levels(&self) -> &[LevelRef] {
        &self.levels
    }

    pub(crate) fn sorted_levels(&self) -> Vec<LevelRef> {
        let mut v = self.levels.clone();
        v.sort_unstable();
        v
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.codes
            .first()
            .map_or(self.cell_count_without_levels(), |c| c.len())
    }

    fn cell_count_without_levels(&self) -> usize {
        match self.measures.first() {
            Some(MeasureColumn::Decimal { values, .. }) => values.len(),
            Some(MeasureColumn::Decimal64 { values, .. }) => values.len(),
            Some(MeasureColumn::Count(v)) => v.len(),
            Some(MeasureColumn::Distinct(v)) => v.len(),
            Some(MeasureColumn::DistinctValues(v)) => v.len(),
            None => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The member codes of a cell, one per level.
    pub fn cell_codes(&self, cell: usize) -> Vec<u32> {
        self.codes.iter().map(|c| c[cell]).collect()
    }

    fn column(&self, measure: MeasureId) -> Option<&MeasureColumn> {
        let j = self.measure_ids.iter().position(|m| *m == measure)?;
        self.measures.get(j)
    }

    /// The value of an aggregate measure of this cuboid's fact in `cell` (`None` if the measure
    /// is not stored here).
    pub fn value(&self, cell: usize, measure: MeasureId) -> Option<CellValue> {
        Some(match self.column(measure)? {
            MeasureColumn::Decimal {
                values,
                valid,
                scale,
            } => {
                if valid[cell] {
                    CellValue::Decimal {
                        value: values[cell],
                        scale: *scale,
                    }
                } else {
                    CellValue::Null
                }
            }
            MeasureColumn::Decimal64 {
                values,
                valid,
                scale,
            } => match valid[cell] {
                true => CellValue::Decimal {
                    value: i128::from(values[cell]),
                    scale: *scale,
                },
                false => CellValue::Null,
            },
            MeasureColumn::Count(v) => CellValue::Count(v[cell]),
            MeasureColumn::Distinct(v) => CellValue::Count(v[cell].len()),
            MeasureColumn::DistinctValues(v) => CellValue::Count(u64::from(v[cell] != NO_VALUE)),
        })
    }

    /// The exact set behind a distinct measure in `cell`.
    pub fn member_set(&self, cell: usize, measure: MeasureId) -> Option<&RoaringBitmap> {
        match self.column(measure)? {
            MeasureColumn::Distinct(v) => v.get(cell),
            _ => None,
        }
    }

    /// Bytes of codes, values and bitmaps.
    pub fn memory_bytes(&self) -> usize {
        self.codes.iter().map(|c| c.len() * 4).sum::<usize>()
            + self
                .measures
                .iter()
                .map(MeasureColumn::memory_bytes)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_render_exactly() {
        assert_eq!(
            CellValue::Decimal {
                value: -1250,
                scale: 2
            }
            .to_string(),
            "-12.50"
        );
        assert_eq!(
            CellValue::Decimal { value: 5, scale: 2 }.to_string(),
            "0.05"
        );
        assert_eq!(CellValue::Decimal { value: 7, scale: 0 }.to_string(), "7");
        assert_eq!(CellValue::Count(3).to_string(), "3");
        assert_eq!(CellValue::Null.to_string(), "NULL");
    }
}
