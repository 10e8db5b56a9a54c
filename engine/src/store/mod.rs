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

mod cuboid;

pub use cuboid::{CellValue, Cuboid, MeasureColumn, NO_VALUE};

use lattice_defs::model::{FactId, LevelRef, Model};

/// One level's members: `names[code]`.
#[derive(Debug, Clone, Default)]
pub struct LevelDict {
    pub names: Vec<String>,
}

impl LevelDict {
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    pub fn code(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }
}

/// A built cube: the model it was built from, the members of every level, and the cuboids.
#[derive(Debug)]
pub struct Cube {
    pub model: Model,
    /// `levels[dim][level]`, parallel to the model's dimensions and levels.
    pub levels: Vec<Vec<LevelDict>>,
    pub cuboids: Vec<Cuboid>,
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

    /// Bytes the cuboids take in memory (cells, codes, values and bitmaps).
    pub fn memory_bytes(&self) -> usize {
        self.cuboids.iter().map(Cuboid::memory_bytes).sum()
    }
}
