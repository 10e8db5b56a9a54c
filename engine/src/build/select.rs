//! Which cuboids to build: an explicit list, Kylin-style aggregation groups, or `auto` — a
//! greedy choice of the cuboid with the most benefit per byte, under the memory budget, in the
//! spirit of Harinarayan, Rajaraman and Ullman ("Implementing data cubes efficiently", 1996).
//!
//! Sizes are estimated before building: a cuboid has at most as many cells as the product of
//! its levels' member counts and never more than the fact's base table. The workload `auto`
//! optimises for is every group-by of up to two levels, plus a time level with two others.

use lattice_defs::limits::MAX_GROUP_LEVELS;
use lattice_defs::model::{AggMode, FactId, LevelKind, LevelRef, Model, TimeGrain};

use super::base::BaseTable;
use crate::store::encoding::Encoding;
use crate::{EngineError, Result};

/// Most cuboids `auto` picks per fact, whatever the budget.
pub const AUTO_MAX_PER_FACT: usize = 160;

/// Most group-bys `auto` weighs (singles first, then pairs, then triples): each step of the
/// greedy choice compares every one with every other, so a cube with many levels (64 levels
/// make over 8,000 group-bys of up to three) would take minutes to choose.
pub const AUTO_MAX_WORKLOAD: usize = 2048;

/// A cuboid to build, and why.
#[derive(Debug, Clone)]
pub struct Plan {
    pub fact: FactId,
    pub levels: Vec<LevelRef>,
    pub est_cells: u64,
    pub est_bytes: u64,
    pub reason: String,
}

/// A group-by that questions asked and no cuboid answered (recorded by a serving dataset, see
/// [`crate::query::Dataset::missed`]): the next build of the cube weighs it first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Learned {
    /// The fact it reads.
    pub fact: String,
    /// Every level the questions grouped or filtered by (`dimension.level`).
    pub levels: Vec<String>,
    /// Questions of this group-by answered without a cuboid.
    pub questions: u64,
    /// Their time in all, in milliseconds.
    pub cost_ms: f64,
}

/// Every level the fact's rows vary by.
fn fact_levels(model: &Model, fact: FactId) -> Vec<LevelRef> {
    let mut out = Vec::new();
    for (d, dim) in model.dimensions.iter().enumerate() {
        if model.fact_has_dimension(fact, d) {
            out.extend((0..dim.levels.len()).map(|level| LevelRef { dim: d, level }));
        }
    }
    out
}

fn time_grain(model: &Model, l: LevelRef) -> Option<TimeGrain> {
    match model.dimensions[l.dim].levels[l.level].kind {
        LevelKind::Time(g) => Some(g),
        _ => None,
    }
}

/// Whether `parent` can answer `target` by the structure of the model alone: each target
/// level is in the parent, or a finer level of its hierarchy (or time grain) is.
pub fn derives(model: &Model, parent: &[LevelRef], target: &[LevelRef]) -> bool {
    target.iter().all(|t| {
        parent.iter().any(|p| {
            if p == t {
                return true;
            }
            if p.dim != t.dim {
                return false;
            }
            if let (Some(pg), Some(tg)) = (time_grain(model, *p), time_grain(model, *t)) {
                return pg > tg;
            }
            let h = &model.dimensions[t.dim].hierarchy;
            match (
                h.iter().position(|x| *x == p.level),
                h.iter().position(|x| *x == t.level),
            ) {
                (Some(pp), Some(tp)) => pp > tp,
                _ => false,
            }
        })
    })
}

struct Estimator<'a> {
    dims: &'a Encoding,
    base_rows: u64,
    bytes_per_cell_measures: u64,
    distinct_measures: u64,
}

impl Estimator<'_> {
    fn cells(&self, levels: &[LevelRef]) -> u64 {
        let mut product: u64 = 1;
        for l in levels {
            let card = self.dims.dicts[l.dim][l.level].len().max(1) as u64;
            product = product.saturating_mul(card);
        }
        product.min(self.base_rows.max(1))
    }

    fn bytes(&self, levels: &[LevelRef]) -> u64 {
        let cells = self.cells(levels);
        // Codes, fixed-size measures, and for each distinct measure a bitmap per cell that
        // holds at most every base row once (two bytes per value in a dense roaring container).
        cells * (4 * levels.len() as u64 + self.bytes_per_cell_measures)
            + self.distinct_measures * (cells * 16 + self.base_rows.min(cells * 64) * 2)
    }
}

/// Chooses the cuboids of every fact.
pub(crate) fn choose(
    model: &Model,
    dims: &Encoding,
    bases: &[BaseTable],
    learned: &[Learned],
) -> Result<Vec<Plan>> {
    let mut plans = Vec::new();
    let budget = model.aggregates.budget_mb.saturating_mul(1024 * 1024);
    for (fact, base) in bases.iter().enumerate() {
        let levels = fact_levels(model, fact);
        let est = Estimator {
            dims,
            base_rows: base.rows_hint() as u64,
            bytes_per_cell_measures: base
                .measures
                .iter()
                .map(|m| match m {
                    crate::store::MeasureColumn::Decimal { .. }
                    | crate::store::MeasureColumn::Decimal64 { .. } => 17,
                    crate::store::MeasureColumn::Count(_) => 8,
                    crate::store::MeasureColumn::Distinct(_)
                    | crate::store::MeasureColumn::DistinctValues(_) => 0,
                })
                .sum(),
            distinct_measures: base
                .measures
                .iter()
                .filter(|m| {
                    matches!(
                        m,
                        crate::store::MeasureColumn::Distinct(_)
                            | crate::store::MeasureColumn::DistinctValues(_)
                    )
                })
                .count() as u64,
        };
        let plan = |levels: Vec<LevelRef>, reason: String| Plan {
            fact,
            est_cells: est.cells(&levels),
            est_bytes: est.bytes(&levels),
            levels,
            reason,
        };
        let reachable = |c: &[LevelRef]| c.iter().all(|l| levels.contains(l));
        let mut chosen: Vec<Plan> = Vec::new();
        // Listed cuboids, in every mode that has them.
        for c in &model.aggregates.cuboids {
            if reachable(c) && !chosen.iter().any(|p| same(&p.levels, c)) {
                chosen.push(plan(c.clone(), "listed in aggregates.cuboids".into()));
            }
        }
        match model.aggregates.mode {
            AggMode::Explicit => {}
            AggMode::Groups => {
                for (gi, g) in model.aggregates.groups.iter().enumerate() {
                    // Validation refuses these; a model built by hand might not be validated.
                    if g.includes.len() > MAX_GROUP_LEVELS {
                        return Err(EngineError::Unsupported {
                            what: format!(
                                "aggregation group {gi} with {} levels (at most {MAX_GROUP_LEVELS})",
                                g.includes.len()
                            ),
                        });
                    }
                    for mask in 0u32..(1 << g.includes.len()) {
                        let subset: Vec<LevelRef> = g
                            .includes
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| mask & (1 << i) != 0)
                            .map(|(_, l)| *l)
                            .collect();
                        let ok = g.mandatory.iter().all(|m| subset.contains(m))
                            && g.joint.iter().all(|j| {
                                let n = j.iter().filter(|l| subset.contains(l)).count();
                                n == 0 || n == j.len()
                            })
                            && g.hierarchies.iter().all(|h| {
                                // A level only with every level above it.
                                h.iter().enumerate().all(|(i, l)| {
                                    !subset.contains(l) || h[..i].iter().all(|a| subset.contains(a))
                                })
                            });
                        if ok
                            && reachable(&subset)
                            && !chosen.iter().any(|p| same(&p.levels, &subset))
                        {
                            chosen.push(plan(subset, format!("aggregation group {gi}")));
                        }
                    }
                }
            }
            AggMode::Auto => {
                if !chosen.iter().any(|p| p.levels.is_empty()) {
                    chosen.push(plan(Vec::new(), "grand total".into()));
                }
                // What served questions missed, costliest first, while the budget lasts.
                let mut used: u64 = chosen.iter().map(|p| p.est_bytes).sum();
                let mut costliest: Vec<&Learned> = learned.iter().collect();
                costliest.sort_by(|a, b| b.cost_ms.total_cmp(&a.cost_ms));
                for l in costliest {
                    if model.fact(&l.fact) != Some(fact) || chosen.len() >= AUTO_MAX_PER_FACT {
                        continue;
                    }
                    let Some(mut want) = l
                        .levels
                        .iter()
                        .map(|n| model.level(n))
                        .collect::<Option<Vec<LevelRef>>>()
                    else {
                        continue; // a level the definition no longer has
                    };
                    want.sort_unstable();
                    want.dedup();
                    let p = plan(
                        want,
                        format!(
                            "learned: {} questions no cuboid answered ({:.1} ms in all)",
                            l.questions, l.cost_ms
                        ),
                    );
                    let fits = used + p.est_bytes <= budget;
                    if fits
                        && reachable(&p.levels)
                        && !chosen.iter().any(|c| same(&c.levels, &p.levels))
                    {
                        used += p.est_bytes;
                        chosen.push(p);
                    }
                }
                greedy(model, &est, &levels, &mut chosen, budget, &plan);
            }
        }
        plans.extend(chosen);
    }
    Ok(plans)
}

fn same(a: &[LevelRef], b: &[LevelRef]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// Harinarayan-Rajaraman-Ullman greedy: repeatedly add the candidate whose benefit (rows
/// saved over the workload) per byte is highest, while it fits the budget.
fn greedy(
    model: &Model,
    est: &Estimator<'_>,
    levels: &[LevelRef],
    chosen: &mut Vec<Plan>,
    budget: u64,
    plan: &dyn Fn(Vec<LevelRef>, String) -> Plan,
) {
    let mut workload: Vec<Vec<LevelRef>> = Vec::new();
    for (i, a) in levels.iter().enumerate() {
        workload.push(vec![*a]);
        for b in &levels[i + 1..] {
            if a.dim != b.dim || time_grain(model, *a).is_none() {
                workload.push(vec![*a, *b]);
            }
        }
    }
    let times: Vec<LevelRef> = levels
        .iter()
        .copied()
        .filter(|l| time_grain(model, *l).is_some())
        .collect();
    let others: Vec<LevelRef> = levels
        .iter()
        .copied()
        .filter(|l| time_grain(model, *l).is_none())
        .collect();
    'triples: for t in &times {
        for (i, a) in others.iter().enumerate() {
            for b in &others[i + 1..] {
                if workload.len() >= AUTO_MAX_WORKLOAD {
                    break 'triples;
                }
                workload.push(vec![*t, *a, *b]);
            }
        }
    }
    if workload.len() > AUTO_MAX_WORKLOAD {
        // Every single level stays; pairs and triples fill the rest, in order.
        let (singles, more): (Vec<_>, Vec<_>) = workload.into_iter().partition(|w| w.len() == 1);
        workload = singles;
        workload.extend(more);
        workload.truncate(AUTO_MAX_WORKLOAD);
    }
    let sizes: Vec<u64> = workload.iter().map(|w| est.cells(w)).collect();
    // answers[v][w]: cuboid v can answer query w (computed once; the loop below is hot).
    let answers: Vec<Vec<bool>> = workload
        .iter()
        .map(|v| workload.iter().map(|w| derives(model, v, w)).collect())
        .collect();
    // Cost of answering each workload query now: the smallest chosen cuboid that derives it.
    let mut cost: Vec<u64> = workload
        .iter()
        .map(|w| {
            chosen
                .iter()
                .filter(|p| derives(model, &p.levels, w))
                .map(|p| p.est_cells)
                .min()
                .unwrap_or(est.base_rows)
        })
        .collect();
    let mut used: u64 = chosen.iter().map(|p| p.est_bytes).sum();
    let mut taken: Vec<bool> = workload
        .iter()
        .map(|w| chosen.iter().any(|p| same(&p.levels, w)))
        .collect();
    let bytes: Vec<u64> = workload.iter().map(|w| est.bytes(w).max(1)).collect();
    while chosen.len() < AUTO_MAX_PER_FACT {
        let mut best: Option<(f64, usize, u64)> = None;
        for v in 0..workload.len() {
            if taken[v] || used + bytes[v] > budget {
                continue;
            }
            let benefit: u64 = (0..workload.len())
                .filter(|&w| answers[v][w] && cost[w] > sizes[v])
                .map(|w| cost[w] - sizes[v])
                .sum();
            let score = benefit as f64 / bytes[v] as f64;
            if benefit > 0 && best.is_none_or(|(s, _, _)| score > s) {
                best = Some((score, v, benefit));
            }
        }
        let Some((score, v, benefit)) = best else {
            break;
        };
        taken[v] = true;
        for w in 0..workload.len() {
            if answers[v][w] {
                cost[w] = cost[w].min(sizes[v]);
            }
        }
        let p = plan(
            workload[v].clone(),
            format!("greedy: saves {benefit} rows over the workload ({score:.3} rows/byte)"),
        );
        used += p.est_bytes;
        chosen.push(p);
    }
}
