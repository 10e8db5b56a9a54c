//! The in-memory cube: member dictionaries per level, and cuboids — aggregates of one fact
//! table grouped by a set of levels.
//!
//! ```text
//! Cube
//! ├── dims[d].levels[l]: member names (code -> name), in the order a person expects
//! └── cuboids[i]: (fact, levels) -> cells; each cell: one code per level + measure values
//! ```
//!
//! Member codes are `u32` indexes into a level's dictionary. Every level may have the member
//! [`UNKNOWN_MEMBER`](lattice_defs::model::UNKNOWN_MEMBER) (nulls, facts whose key is not in
//! the dimension table, entities with no metric); it sorts last.

pub(crate) mod base;
mod column;
mod cuboid;
pub(crate) mod encoding;
pub mod snapshot;
pub mod time;

pub use column::Column;
pub use cuboid::{CellValue, Cuboid, MeasureColumn, NO_VALUE};

use encoding::Encoding;

use std::collections::HashMap;

use lattice_defs::model::{FactId, LevelRef, Model};
use roaring::RoaringBitmap;

/// A filter over one level, as the member codes it lets through (a query's filter, a
/// principal's scope rule).
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFilter {
    pub level: LevelRef,
    pub members: RoaringBitmap,
}

/// One level's members: `names[code]`.
#[derive(Debug, Clone, Default)]
pub struct LevelDict {
    pub names: Vec<String>,
    /// name -> code, built on first use for long levels.
    index: std::sync::OnceLock<HashMap<String, u32>>,
}

/// Two dictionaries are equal when their names are (the lookup index is a cache).
impl PartialEq for LevelDict {
    fn eq(&self, other: &LevelDict) -> bool {
        self.names == other.names
    }
}

impl LevelDict {
    pub fn new(names: Vec<String>) -> LevelDict {
        LevelDict {
            names,
            index: std::sync::OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The code of the member named `name`.
    pub fn code(&self, name: &str) -> Option<u32> {
        if self.names.len() <= 32 {
            return self.names.iter().position(|n| n == name).map(|i| i as u32);
        }
        let index = self.index.get_or_init(|| {
            self.names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.clone(), i as u32))
                .collect()
        });
        index.get(name).copied()
    }
}

/// A built cube: the model it was built from, the members of every level, the cuboids and the
/// encoding of source keys. Pure data: reading it goes through a [`crate::query::Session`].
#[derive(Debug)]
pub struct Cube {
    pub model: Model,
    /// `levels[dim][level]`, parallel to the model's dimensions and levels.
    pub levels: Vec<Vec<LevelDict>>,
    pub cuboids: Vec<Cuboid>,
    /// How members roll up and which periods each fact has, for the query layer.
    pub(crate) index: CubeIndex,
    /// How source keys map to member codes (the fallback codes raw facts with it).
    pub(crate) encoding: Encoding,
    /// Per fact, its base rows, where kept (none, or fewer than the facts: not kept): what
    /// answers a question no cuboid covers.
    pub(crate) bases: Vec<Option<base::FactBase>>,
}

/// What the query layer looks up about a cube beyond its cuboids: how members roll up (parent
/// arrays), the periods each fact has, measure scales, and which cuboid covers which level.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CubeIndex {
    /// `(dim, child level, ancestor level)` -> ancestor code per child code, for every pair of a
    /// hierarchy (time included) where each child member lies under one ancestor.
    pub parents: HashMap<(usize, usize, usize), Vec<u32>>,
    /// The finest time level (its codes are the periods of the time axis).
    pub finest_time: Option<LevelRef>,
    /// Per fact: the finest-time codes present in its facts (closing periods come from these).
    pub present: Vec<RoaringBitmap>,
    /// Per measure: the decimal scale of its values (0 for counts and derived measures).
    pub scales: Vec<i8>,
    /// Index of the first level of each dimension in a flat numbering of all levels.
    pub level_base: Vec<usize>,
    /// Per cuboid, per level (flat): whether the cuboid holds the level or rolls up to it.
    pub covers: Vec<Vec<bool>>,
    /// Cuboid indices, smallest first (cells, then levels).
    pub by_size: Vec<usize>,
}

impl Cube {
    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn cuboids(&self) -> &[Cuboid] {
        &self.cuboids
    }

    /// The cuboid of `fact` grouped by exactly `levels` (in any order), if it was built.
    pub fn cuboid(&self, fact: FactId, levels: &[LevelRef]) -> Option<&Cuboid> {
        let mut want = levels.to_vec();
        want.sort_unstable();
        self.cuboids
            .iter()
            .find(|c| c.fact == fact && c.sorted_levels() == want)
    }

    /// The members of a level.
    pub fn members(&self, level: LevelRef) -> &LevelDict {
        &self.levels[level.dim][level.level]
    }

    /// A member's name.
    pub fn member_name(&self, level: LevelRef, code: u32) -> &str {
        &self.levels[level.dim][level.level].names[code as usize]
    }

    /// The map from `child` codes to `ancestor` codes of one dimension, if every child member
    /// lies under one ancestor.
    pub fn parent_map(&self, dim: usize, child: usize, ancestor: usize) -> Option<&[u32]> {
        self.index
            .parents
            .get(&(dim, child, ancestor))
            .map(Vec::as_slice)
    }

    /// Whether cuboid `i` holds `level` or a finer level of its hierarchy that rolls up to it.
    pub fn covers(&self, i: usize, level: LevelRef) -> bool {
        self.index.covers[i][self.index.level_base[level.dim] + level.level]
    }

    /// Cuboid indices, smallest first.
    pub fn cuboids_by_size(&self) -> &[usize] {
        &self.index.by_size
    }

    /// Fills the cuboid indexes of [`CubeIndex`] (after the cuboids and parent maps are set).
    pub(crate) fn index_cuboids(&mut self) {
        let mut base = Vec::new();
        let mut n = 0;
        for d in &self.model.dimensions {
            base.push(n);
            n += d.levels.len();
        }
        let covers = self
            .cuboids
            .iter()
            .map(|c| {
                let mut v = vec![false; n];
                for (d, dim) in self.model.dimensions.iter().enumerate() {
                    for l in 0..dim.levels.len() {
                        let target = LevelRef { dim: d, level: l };
                        v[base[d] + l] = c.levels.iter().any(|x| {
                            *x == target || (x.dim == d && self.parent_map(d, x.level, l).is_some())
                        });
                    }
                }
                v
            })
            .collect();
        let mut by_size: Vec<usize> = (0..self.cuboids.len()).collect();
        by_size.sort_by_key(|&i| (self.cuboids[i].len(), self.cuboids[i].levels.len()));
        self.index.level_base = base;
        self.index.covers = covers;
        self.index.by_size = by_size;
    }

    /// Rows of `fact`'s base, where kept (0 where not).
    pub fn base_rows(&self, fact: FactId) -> usize {
        self.bases
            .get(fact)
            .and_then(Option::as_ref)
            .map_or(0, base::FactBase::len)
    }

    /// Raw fact rows behind `fact`'s base, where kept (0 where not).
    pub fn base_fact_rows(&self, fact: FactId) -> u64 {
        self.bases
            .get(fact)
            .and_then(Option::as_ref)
            .map_or(0, |b| b.parts.iter().map(|p| p.fact_rows).sum())
    }

    /// Bytes the base tables take in memory.
    pub fn base_bytes(&self) -> usize {
        self.bases
            .iter()
            .flatten()
            .map(base::FactBase::memory_bytes)
            .sum()
    }

    /// Bytes the cuboids take in memory (cells, codes, values and bitmaps).
    pub fn memory_bytes(&self) -> usize {
        self.cuboids.iter().map(Cuboid::memory_bytes).sum()
    }

    /// Hands every code and value column over to a shared buffer ([`Column::share`]), without
    /// a copy: a cube that starts serving, so that a snapshot is written from its buffers and a
    /// refresh keeps what it does not change by reference.
    pub fn share_columns(&mut self) {
        let cuboids = self
            .cuboids
            .iter_mut()
            .map(|c| (&mut c.codes, &mut c.measures));
        let bases = self
            .bases
            .iter_mut()
            .flatten()
            .flat_map(|b| b.parts.iter_mut())
            .map(|t| (&mut t.codes, &mut t.measures));
        for (codes, measures) in cuboids.chain(bases) {
            codes.iter_mut().for_each(Column::share);
            measures.iter_mut().for_each(MeasureColumn::share);
        }
    }
}
