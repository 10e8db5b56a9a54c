//! The base path: a question no cuboid covers is answered from its fact's base rows, which
//! the store keeps as the last cuboid. The pass that builds cuboids from the base during a
//! build ([`crate::build::base_pass`]) aggregates the cuboid of exactly the levels the
//! question groups or filters by, and the cuboid path ([`super::scan`]) answers from it, so
//! the base path holds the same semantics as every built cuboid, with no second
//! implementation of bands, roll-ups, closing periods or distinct sets.
//!
//! A fact read a range of periods at a time keeps one table per range; a range with no period
//! a time filter lets through is not read.

use lattice_defs::model::{FactId, LevelRef, MeasureId, MeasureKind, OverTime, UNKNOWN_MEMBER};
use roaring::RoaringBitmap;

use super::group::AggRequest;
use super::resolve::ResolvedFilter;
use crate::build::base_pass::{RowFilter, Scanner};
use crate::build::lattice::{Closing, FactInputs};
use crate::build::select::Plan;
use crate::store::base::{BaseTable, FactBase};
use crate::store::{Cube, Cuboid};

/// What the base path keeps per fact of a dataset: the fact's closing periods (which
/// semi-additive contributions count), made once when the dataset opens.
#[derive(Debug, Default)]
pub(crate) struct BasePath {
    closing: Vec<Option<Closing>>,
}

impl BasePath {
    pub fn new(cube: &Cube) -> BasePath {
        let closing = cube
            .bases
            .iter()
            .map(|b| {
                b.as_ref()
                    .map(|b| Closing::from_periods(&b.periods, &cube.encoding, &cube.model))
            })
            .collect();
        BasePath { closing }
    }

    /// Whether `fact`'s base rows are kept.
    pub fn has(&self, cube: &Cube, fact: FactId) -> bool {
        base_of(cube, fact).is_some() && self.closing.get(fact).is_some_and(Option::is_some)
    }

    /// The cuboid of `req`'s fact over every level it groups or filters by, aggregated from
    /// the base rows of the periods its time filters let through; `None` when the fact's base
    /// is not kept.
    pub fn cuboid(&self, cube: &Cube, req: &AggRequest<'_>) -> crate::Result<Option<Cuboid>> {
        let (Some(base), Some(Some(closing))) =
            (base_of(cube, req.fact), self.closing.get(req.fact))
        else {
            return Ok(None);
        };
        // The filters are applied as the rows are read, but for those on time when a measure
        // is semi-additive: its closing periods depend on them, so they are levels of the
        // cuboid and the cuboid path applies them.
        let semi = req.measures.iter().any(|m| {
            matches!(
                cube.model.measures[*m].kind,
                MeasureKind::Aggregate {
                    over_time: OverTime::Last,
                    ..
                }
            )
        });
        let time = cube.index.finest_time.map(|t| t.dim);
        let kept_as_level = |f: &&ResolvedFilter| semi && Some(f.level.dim) == time;
        let mut levels: Vec<LevelRef> = req.levels.to_vec();
        levels.extend(req.filters.iter().filter(kept_as_level).map(|f| f.level));
        levels.sort_unstable();
        levels.dedup();
        let pushed: Vec<&ResolvedFilter> =
            req.filters.iter().filter(|f| !kept_as_level(f)).collect();

        let parts: Vec<&BaseTable> = base
            .parts
            .iter()
            .zip(&base.part_periods)
            .filter(|(_, periods)| base.parts.len() == 1 || reads(cube, periods, req.filters))
            .map(|(p, _)| p)
            .collect();
        let Some(first) = parts.first().copied().or(base.parts.first()) else {
            return Ok(None);
        };
        let rows: usize = parts.iter().map(|p| p.len()).sum();
        let cells: u64 = levels
            .iter()
            .map(|l| cube.members(*l).len().max(1) as u64)
            .try_fold(1u64, |a, n| a.checked_mul(n))
            .unwrap_or(u64::MAX)
            .min(rows as u64)
            .max(1);
        let plans = [Plan {
            fact: req.fact,
            levels,
            est_cells: cells,
            est_bytes: 0,
            reason: String::new(),
        }];
        let inputs = |table| {
            FactInputs::new(&cube.model, &cube.encoding, req.fact, table, closing)
                .with_dicts(&cube.levels)
        };
        // Two threads at most: a question shares the machine with the others in flight.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 2)
            .min(rows / 50_000 + 1);
        let filter = row_filter(cube, first, &pushed, req.measures);
        let ranges = base.ranges.clone();
        let mut scanner =
            Scanner::filtered(&inputs(first), &plans, &[0], workers, ranges, Some(filter));
        for part in parts {
            scanner.add(&inputs(part))?;
        }
        Ok(scanner
            .finish(&inputs(first), &|| {})
            .into_iter()
            .next()
            .map(|(_, c)| c))
    }
}

/// The filters as a [`RowFilter`] (filters on one level combined: a member passes all of
/// them), reading only the measure columns of `base` that `measures` names.
fn row_filter(
    cube: &Cube,
    base: &BaseTable,
    filters: &[&ResolvedFilter],
    measures: &[MeasureId],
) -> RowFilter {
    let mut out = RowFilter {
        levels: Vec::new(),
        passes: Vec::new(),
        wanted: base
            .measure_ids
            .iter()
            .map(|m| measures.contains(m))
            .collect(),
    };
    for f in filters {
        let slot = match out.levels.iter().position(|l| *l == f.level) {
            Some(i) => i,
            None => {
                out.levels.push(f.level);
                out.passes.push(vec![true; cube.members(f.level).len()]);
                out.levels.len() - 1
            }
        };
        for (code, pass) in out.passes[slot].iter_mut().enumerate() {
            *pass = *pass && f.members.contains(code as u32);
        }
    }
    out
}

fn base_of(cube: &Cube, fact: FactId) -> Option<&FactBase> {
    cube.bases.get(fact).and_then(Option::as_ref)
}

/// Whether a base table with rows in `periods` (one range of periods) has a period every
/// time filter lets through; true where that cannot be told (a filter that lets `unknown`
/// through, a time level with no roll-up from the finest).
fn reads(cube: &Cube, periods: &RoaringBitmap, filters: &[ResolvedFilter]) -> bool {
    let Some(finest) = cube.index.finest_time else {
        return true;
    };
    let mut time_filters: Vec<(Option<&[u32]>, &RoaringBitmap)> = Vec::new();
    for f in filters.iter().filter(|f| f.level.dim == finest.dim) {
        let unknown = cube.members(f.level).code(UNKNOWN_MEMBER);
        if unknown.is_some_and(|u| f.members.contains(u)) {
            return true;
        }
        let map = match f.level == finest {
            true => None,
            false => match cube.parent_map(finest.dim, finest.level, f.level.level) {
                Some(m) => Some(m),
                None => return true,
            },
        };
        time_filters.push((map, &f.members));
    }
    time_filters.is_empty()
        || periods.is_empty()
        || periods.iter().any(|p| {
            time_filters
                .iter()
                .all(|(m, set)| set.contains(m.map_or(p, |m| m[p as usize])))
        })
}
