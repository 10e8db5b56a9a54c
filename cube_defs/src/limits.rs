//! How big a definition may be. Each limit keeps a definition from asking the engine for more
//! than a build or a query can give without running out of time or memory — a lattice of a
//! million cuboids, a bucket with 100,000 edges, a derived measure that expands to 2^60 terms —
//! and is checked during validation, so such a definition is refused with a located
//! [`crate::DefError::TooMany`] before any data is read. They are far above what a real cube
//! needs (the shipped `bank_crm` has 25 levels, 14 measures, one allocation and buckets of at
//! most 7 edges).

/// Characters in any name (cube, source, dimension, level, measure).
pub const MAX_NAME_CHARS: usize = 128;
/// Sources (tables) one definition reads.
pub const MAX_SOURCES: usize = 256;
/// Levels over all dimensions: the cuboid lattice has 2^levels nodes, and `auto` weighs
/// every pair of levels against every other.
pub const MAX_LEVELS: usize = 64;
/// Allocations: each is a fact the build computes from a split of its pool.
pub const MAX_ALLOCATIONS: usize = 64;
/// Measures, aggregated and derived.
pub const MAX_MEASURES: usize = 256;
/// Edges of one bucket (a bucket has one member more than it has edges).
pub const MAX_BUCKET_EDGES: usize = 1024;
/// Cuboids listed in `aggregates.cuboids` plus those the aggregation groups make.
pub const MAX_CUBOIDS: usize = 4096;
/// Levels one aggregation group includes (its combinations are checked one by one).
pub const MAX_GROUP_LEVELS: usize = 20;
/// Aggregation groups.
pub const MAX_GROUPS: usize = 64;
/// Tokens of one derived measure's expression.
pub const MAX_EXPR_TOKENS: usize = 1024;
/// Nesting of parentheses and unary minus in one expression.
pub const MAX_EXPR_DEPTH: usize = 64;
/// Terms of a derived measure once every derived measure it names is expanded into it (what
/// evaluating it costs per answer cell): `m2 = m1 + m1`, `m3 = m2 + m2`, ... doubles each step.
pub const MAX_EXPANDED_TERMS: u64 = 10_000;
