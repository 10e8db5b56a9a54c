//! Grouped aggregates: the one shape both paths produce — a cuboid scan
//! ([`super::scan`]) and the DataFusion fallback ([`super::fallback`]) — and everything after
//! them (derived measures, comparison, pivot, totals) consumes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use lattice_defs::model::{Agg, FactId, LevelRef, MeasureId};
use roaring::RoaringBitmap;

use super::resolve::ResolvedFilter;
use crate::store::CellValue;

/// One aggregation a query needs: a fact's measures grouped by `levels`, over the cells that
/// pass `filters`.
#[derive(Debug, Clone)]
pub(crate) struct AggRequest<'a> {
    pub fact: FactId,
    pub levels: &'a [LevelRef],
    pub filters: &'a [ResolvedFilter],
    pub measures: &'a [MeasureId],
}

/// Running aggregates of one measure, one slot per group.
#[derive(Debug, Clone)]
pub(crate) enum Acc {
    Decimal {
        agg: Agg,
        values: Vec<i128>,
        valid: Vec<bool>,
        scale: i8,
    },
    Count(Vec<u64>),
    /// Exact sets (from cuboids), counted at the end.
    Sets(Vec<RoaringBitmap>),
}

impl Acc {
    pub fn new(agg: Agg, scale: i8) -> Acc {
        match agg {
            Agg::Count => Acc::Count(Vec::new()),
            Agg::Distinct => Acc::Sets(Vec::new()),
            _ => Acc::Decimal {
                agg,
                values: Vec::new(),
                valid: Vec::new(),
                scale,
            },
        }
    }

    pub fn push_empty(&mut self) {
        match self {
            Acc::Decimal { values, valid, .. } => {
                values.push(0);
                valid.push(false);
            }
            Acc::Count(v) => v.push(0),
            Acc::Sets(v) => v.push(RoaringBitmap::new()),
        }
    }

    /// Folds a decimal into group `g` (SQL's SUM/MIN/MAX, ignoring NULLs).
    #[inline]
    pub fn add_decimal(&mut self, g: usize, x: i128) {
        if let Acc::Decimal {
            agg, values, valid, ..
        } = self
        {
            let v = &mut values[g];
            *v = if !valid[g] {
                x
            } else {
                match agg {
                    Agg::Min => (*v).min(x),
                    Agg::Max => (*v).max(x),
                    _ => *v + x,
                }
            };
            valid[g] = true;
        }
    }

    pub fn value(&self, g: usize) -> CellValue {
        match self {
            Acc::Decimal {
                values,
                valid,
                scale,
                ..
            } => {
                if valid[g] {
                    CellValue::Decimal {
                        value: values[g],
                        scale: *scale,
                    }
                } else {
                    CellValue::Null
                }
            }
            Acc::Count(v) => CellValue::Count(v[g]),
            Acc::Sets(v) => CellValue::Count(v[g].len()),
        }
    }
}

/// The groups of one [`AggRequest`]: `keys[g * levels + k]` is group `g`'s code of level `k`.
#[derive(Debug, Clone)]
pub(crate) struct Grouped {
    pub levels: Vec<LevelRef>,
    pub keys: Vec<u32>,
    pub measures: Vec<MeasureId>,
    pub accs: Vec<Acc>,
}

impl Grouped {
    pub fn len(&self) -> usize {
        if self.levels.is_empty() {
            // One group (the grand total) when anything was aggregated.
            self.accs.first().map_or(0, |a| match a {
                Acc::Decimal { values, .. } => values.len(),
                Acc::Count(v) => v.len(),
                Acc::Sets(v) => v.len(),
            })
        } else {
            self.keys.len() / self.levels.len()
        }
    }

    pub fn key(&self, g: usize) -> &[u32] {
        let n = self.levels.len();
        &self.keys[g * n..(g + 1) * n]
    }
}

/// A fast hasher for keys that are already well-spread integers (packed member codes).
#[derive(Default)]
pub(crate) struct CodeHasher(u64);

impl Hasher for CodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}

pub(crate) type CodeMap<K, V> = HashMap<K, V, BuildHasherDefault<CodeHasher>>;

/// Maps a tuple of member codes to a dense group number.
pub(crate) enum Grouper {
    /// No levels: everything is group 0.
    One,
    /// Mixed-radix index into a small table.
    Dense { radix: Vec<u64>, slots: Vec<u32> },
    /// Mixed-radix key in a hash map.
    Packed {
        radix: Vec<u64>,
        map: CodeMap<u64, u32>,
    },
    /// Keys too wide to pack.
    Wide(HashMap<Vec<u32>, u32>),
}

/// Largest dense table (slots) worth allocating per query.
const DENSE_SLOTS: u64 = 4096;

impl Grouper {
    /// A grouper for levels with `sizes` members each.
    pub fn new(sizes: &[usize]) -> Grouper {
        if sizes.is_empty() {
            return Grouper::One;
        }
        let mut radix = Vec::with_capacity(sizes.len());
        let mut product: u64 = 1;
        for &s in sizes {
            radix.push(product);
            match product.checked_mul(s.max(1) as u64) {
                Some(p) if p < (1 << 62) => product = p,
                _ => return Grouper::Wide(HashMap::new()),
            }
        }
        if product <= DENSE_SLOTS {
            Grouper::Dense {
                radix,
                slots: vec![u32::MAX; product as usize],
            }
        } else {
            Grouper::Packed {
                radix,
                map: CodeMap::default(),
            }
        }
    }

    /// The group of `codes`, or `next` (which the caller then creates) if it is new.
    #[inline]
    pub fn group(&mut self, codes: &[u32], next: u32) -> u32 {
        match self {
            Grouper::One => 0,
            Grouper::Dense { radix, slots } => {
                let i: u64 = codes
                    .iter()
                    .zip(radix.iter())
                    .map(|(c, r)| u64::from(*c) * r)
                    .sum();
                let s = &mut slots[i as usize];
                if *s == u32::MAX {
                    *s = next;
                }
                *s
            }
            Grouper::Packed { radix, map } => {
                let i: u64 = codes
                    .iter()
                    .zip(radix.iter())
                    .map(|(c, r)| u64::from(*c) * r)
                    .sum();
                *map.entry(i).or_insert(next)
            }
            Grouper::Wide(map) => *map.entry(codes.to_vec()).or_insert(next),
        }
    }
}
