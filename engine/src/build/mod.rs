//! Building a cube: from a validated [`Model`] and its registered [`Sources`] to a [`Cube`].
//!
//! 1. [`dims`] — read every dimension table once, dictionary-encode every level (member names
//!    once per level, in the order a person expects) and map each key to its members;
//! 2. [`base`] — DataFusion plans per fact table (one per range of periods) aggregate the raw
//!    facts to the cube grain (the keys the fact carries and the finest time period); the only
//!    step that reads raw facts. A fact whose rows are nearly at the grain already is read
//!    ungrouped and its rows of one grain merged after sorting. The base rows end in the order
//!    of the fact's widest key (the customer) and period. Metric buckets ([`bands`]) follow
//!    from the base tables (the metric per entity and period, bucketed);
//! 3. [`select`] chooses cuboids. Those that no chosen cuboid with more levels derives are
//!    aggregated from the base table all together, in one pass over its rows ([`base_pass`]); the
//!    rest from their smallest built parent ([`lattice`]), level count by level count. Both
//!    run on every core.
//!
//! The largest facts never have a whole base table ([`streamed_facts`]): they are read a range
//! of periods at a time after step 3 has chosen their cuboids, and each range, once sorted,
//! decides its own periods' metric buckets and is merged into every cuboid built from the
//! base before the next is read. At scale 10 this keeps the balances' 62.5M base rows (3.5 GB)
//! from ever being in memory together. The other facts' base tables are read whole first, as
//! the streamed facts' cuboids show their metric buckets.
//!
//! [`budget`] estimates the memory of steps 1-2 before any data is read, and of step 3 before
//! it starts; a build over [`BuildOptions::memory_budget`] is refused there. The definition's
//! saved searches are checked against the data when the cube is opened ([`crate::open()`]).

pub(crate) mod bands;
pub(crate) mod base;
pub(crate) mod base_pass;
pub mod budget;
pub(crate) mod dims;
pub(crate) mod lattice;
pub(crate) mod merge;
pub mod refresh;
pub mod select;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use lattice_defs::Model;
use lattice_defs::model::{LevelKind, LevelRef};
use tracing::{info, instrument};

use crate::Result;
use crate::source::load::{Sources, load_checked};
use crate::store::base::FactBase;
use crate::store::encoding::Encoding;
use crate::store::{Cube, CubeIndex, Cuboid};
pub use select::Plan;

/// Loads the sources of `model` ([`load_checked`]), refused before any data is read when
/// building its cube would need more than `memory_budget` bytes ([`budget`]).
pub async fn load_within(model: &Model, memory_budget: Option<u64>) -> Result<Sources> {
    load_checked(model, |catalog| match memory_budget {
        Some(bytes) => budget::check_sources(model, catalog, bytes),
        None => Ok(()),
    })
    .await
}

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Show progress on the terminal (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Most bytes the build may hold at its peak, by [`budget`]'s estimate; `None` for no
    /// limit (the command line and the server default to [`budget::machine_budget`]).
    pub memory_budget: Option<u64>,
    /// Fact rows one base query groups at most (the fact is read by ranges of periods);
    /// `None`: about two million.
    pub base_range_rows: Option<u64>,
    /// Drop the base rows once the cuboids are built (a question no cuboid covers then goes
    /// to DataFusion over the raw facts): less memory, slower questions.
    pub without_base: bool,
    /// Group-bys that questions asked and no cuboid answered, weighed first by `auto`.
    pub learned: Vec<select::Learned>,
}

/// What a build did, for `lattice build --explain` and logs.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub plans: Vec<Plan>,
    /// Built cells and bytes per plan (parallel to `plans`).
    pub built: Vec<(usize, usize)>,
    /// Raw fact rows read per fact, and rows of each base table.
    pub fact_rows: Vec<u64>,
    pub base_rows: Vec<usize>,
    /// Queries each fact was read with (one per range of periods).
    pub base_queries: Vec<usize>,
    /// Per fact, whether it was read a range of periods at a time through the whole build
    /// (its base table never whole in memory).
    pub streamed: Vec<bool>,
    pub stages: Vec<(&'static str, Duration)>,
    /// What each allocation split, and what it could not.
    pub allocations: Vec<crate::source::allocate::AllocationReport>,
    /// For a refresh, how its cuboids were made from the cube's.
    pub merged: Option<Merged>,
}

/// How a refresh made its cuboids: merged with the new rows' cells, their changed time
/// members built again, or built from every base row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    pub combined: usize,
    pub replaced: usize,
    pub rebuilt: usize,
}

/// Builds the cube of `model` over `sources` (registered by [`crate::source::load::load`]),
/// and checks the definition's searches against it.
pub async fn build_cube(model: &Model, sources: &Sources, opts: &BuildOptions) -> Result<Cube> {
    Ok(build_cube_with_report(model, sources, opts).await?.0)
}

/// [`build_cube`], and what it chose and measured.
#[instrument(skip_all, fields(cube = %model.name))]
pub async fn build_cube_with_report(
    model: &Model,
    sources: &Sources,
    opts: &BuildOptions,
) -> Result<(Cube, BuildReport)> {
    let progress = spinner(opts.progress);
    let mut stages = Stages::default();
    if let Some(b) = opts.memory_budget {
        budget::check_sources(model, &sources.catalog, b)?;
    }

    let t = Instant::now();
    progress.set_message("encoding dimensions");
    let mut dims = dims::build_dims(model, &sources.catalog, &sources.ctx, None).await?;
    stages.end("dimensions", t);

    let t = Instant::now();
    let range_rows = opts.base_range_rows.unwrap_or(base::RANGE_ROWS);
    let bases = read_bases(model, sources, &mut dims, range_rows, &progress).await?;
    stages.end("base", t);
    complete(model, sources, dims, bases, opts, progress, stages).await
}

/// Steps 3 and on of a build (or a refresh): chooses the cuboids from the base tables in
/// `bases`, builds them (reading the streamed facts) and assembles the cube.
async fn complete(
    model: &Model,
    sources: &Sources,
    mut dims: Encoding,
    mut bases: Bases<'_>,
    opts: &BuildOptions,
    progress: ProgressBar,
    mut stages: Stages,
) -> Result<(Cube, BuildReport)> {
    let t = Instant::now();
    let plans = select::choose(model, &dims, &bases.tables, &opts.learned)?;
    stages.end("select", t);
    if let Some(b) = opts.memory_budget {
        budget::check_plans(model, &dims, &bases.tables, &plans, b)?;
    }
    // A refreshed fact chosen for as if streamed is whole in memory from here on.
    for &f in &bases.chosen_as_streamed {
        bases.tables[f].planned_rows = None;
        bases.tables[f].periods_present = None;
    }

    let t = Instant::now();
    progress.finish_and_clear();
    let bar = cuboid_bar(opts.progress, plans.len());
    let closing: Vec<lattice::Closing> = bases
        .tables
        .iter()
        .map(|b| lattice::Closing::new(b, &dims, model))
        .collect();
    let ctx = &sources.ctx;
    let (slots, mut streamed_parts) =
        build_streamed(model, ctx, &mut dims, &mut bases, &plans, &closing, &bar).await?;
    let tables = &bases.tables;
    let fact_rows: Vec<u64> = tables.iter().map(|b| b.fact_rows).collect();
    // What the query layer and the report need of the base tables, before the lattice frees
    // them.
    let index = cube_index(model, &dims, tables);
    let base_rows: Vec<usize> = tables.iter().map(|b| b.rows_hint()).collect();
    let base_queries: Vec<usize> = tables.iter().map(|b| b.queries).collect();
    let streamed = (0..model.facts.len())
        .map(|f| bases.streamed.contains(&f))
        .collect();
    let inputs: Vec<lattice::FactInputs<'_>> = tables
        .iter()
        .enumerate()
        .map(|(fact, base)| lattice::FactInputs::new(model, &dims, fact, base, &closing[fact]))
        .collect();
    let (cuboids, merged) = match &bases.prior {
        None => (
            build_lattice(model, &dims, &inputs, &plans, slots, &bar)?,
            None,
        ),
        Some(prior) => {
            let (cuboids, merged) =
                merge::merge_cuboids(model, &dims, &inputs, &plans, prior, &bar)?;
            (cuboids, Some(merged))
        }
    };
    drop(inputs);
    let kept = match opts.without_base {
        true => Vec::new(),
        false => keep_bases(bases.tables, &mut streamed_parts),
    };
    bar.finish_and_clear();
    stages.end("lattice", t);

    let built = cuboids
        .iter()
        .map(|c| (c.len(), c.memory_bytes()))
        .collect();
    let cube = assemble(model, dims, cuboids, index, kept);
    let report = BuildReport {
        plans,
        built,
        fact_rows,
        base_rows,
        base_queries,
        streamed,
        stages: stages.0,
        allocations: sources.allocations.clone(),
        merged,
    };
    Ok((cube, report))
}

/// The time each stage of a build took, in order.
#[derive(Default)]
struct Stages(Vec<(&'static str, Duration)>);

impl Stages {
    /// Ends the stage `name` begun at `t`: logs its time and the memory held, and keeps the
    /// time for the report.
    fn end(&mut self, name: &'static str, t: Instant) {
        let (rss_mb, peak_mb) = memory_mb().unwrap_or_default();
        info!(
            stage = name,
            secs = t.elapsed().as_secs_f64(),
            rss_mb,
            peak_mb,
            "build stage"
        );
        self.0.push((name, t.elapsed()));
    }
}

/// The spinner shown while the dimensions and base tables are read (hidden unless `shown`).
fn spinner(shown: bool) -> ProgressBar {
    let progress = if shown {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    progress
}

/// The bar counting the `cuboids` built (hidden unless `shown`).
fn cuboid_bar(shown: bool, cuboids: usize) -> ProgressBar {
    let bar = if shown {
        ProgressBar::new(cuboids as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} cuboids [{elapsed}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A streamed fact's rows per period and its distinct values' ranges.
type FactStats = (Vec<(u32, u64)>, Vec<Option<base::ValueStats>>);

/// Every fact's base table after step 2, and what reading the streamed facts later needs.
struct Bases<'a> {
    /// Per fact, the reader of its rows.
    readers: Vec<base::BaseReader>,
    /// Per fact, its base table; a streamed fact's has no rows, only what is planned.
    tables: Vec<base::BaseTable>,
    /// Per fact, its [`FactStats`] when it is streamed (taken when it is read).
    stats: Vec<Option<FactStats>>,
    /// The streamed facts, in the order to read them ([`streamed_facts`]).
    streamed: Vec<usize>,
    /// Fact rows one base query groups at most.
    range_rows: u64,
    /// Facts a refresh holds whole that a build would stream: their tables carry a streamed
    /// fact's planned rows and periods until the cuboids are chosen, so a refresh chooses
    /// what a build of the same data chooses.
    chosen_as_streamed: Vec<usize>,
    /// For a refresh, the cube it brings up to date and the new rows (its cuboids are merged).
    prior: Option<merge::Prior<'a>>,
}

/// Step 2: reads the base table of every fact not streamed, and counts the streamed facts'
/// rows by period; decides the metric buckets of the facts read whole (into `dims`), and sets
/// the streamed facts' to `unknown` until each range of periods decides its own.
async fn read_bases(
    model: &Model,
    sources: &Sources,
    dims: &mut Encoding,
    range_rows: u64,
    progress: &ProgressBar,
) -> Result<Bases<'static>> {
    let ctx = &sources.ctx;
    let mut readers = (0..model.facts.len())
        .map(|fact| base::BaseReader::new(model, &sources.catalog, dims, fact))
        .collect::<Result<Vec<_>>>()?;
    // Rows of each fact: its file's, or the allocation's.
    let rows = |f: usize| -> u64 {
        let name = &model.facts[f].name;
        match sources.allocations.iter().find(|a| &a.name == name) {
            Some(a) => a.rows as u64,
            None => budget::source_rows(model, &sources.catalog, name),
        }
    };
    let streamed = streamed_facts(model, &sources.catalog, &rows, range_rows);
    let mut tables = Vec::new();
    let mut stats = Vec::new();
    for (fact, reader) in readers.iter_mut().enumerate() {
        let name = &model.facts[fact].name;
        if streamed.contains(&fact) {
            progress.set_message(format!("counting {name} by period"));
            let (header, fact_stats) = streamed_header(model, ctx, dims, reader).await?;
            tables.push(header);
            stats.push(Some(fact_stats));
        } else {
            progress.set_message(format!("aggregating {name} to the cube grain"));
            let base =
                base::build_base(model, reader, ctx, dims, &sources.catalog, range_rows).await?;
            bands::metric_buckets(model, dims, &base, fact, None)?;
            tables.push(base);
            stats.push(None);
        }
    }
    // The bands of a streamed fact's metrics, `unknown` until each range of periods decides
    // its own.
    for &fact in &streamed {
        bands::metric_buckets(model, dims, &tables[fact], fact, Some((0, 1)))?;
    }
    Ok(Bases {
        readers,
        tables,
        stats,
        streamed,
        range_rows,
        chosen_as_streamed: Vec::new(),
        prior: None,
    })
}

/// Counts the rows of `reader`'s (streamed) fact by period: its base table's header, with the
/// rows and periods planned, and its [`FactStats`].
async fn streamed_header(
    model: &Model,
    ctx: &datafusion::prelude::SessionContext,
    dims: &Encoding,
    reader: &mut base::BaseReader,
) -> Result<(base::BaseTable, FactStats)> {
    let (per_period, ranges) = reader.stats(model, ctx, dims).await?;
    let mut header = reader.table();
    header.planned_rows = Some(per_period.iter().map(|(_, n)| n).sum());
    header.periods_present = Some(
        per_period
            .iter()
            .filter(|(p, _)| *p != crate::store::time::NO_PERIOD)
            .map(|(p, _)| *p)
            .collect(),
    );
    info!(
        fact = &model.facts[reader.fact].name,
        rows = header.planned_rows,
        "read a range of periods at a time"
    );
    Ok((header, (per_period, ranges)))
}

/// Reads each streamed fact a range of periods at a time ([`Streaming`]) and builds the
/// cuboids of `plans` it builds from the base; returns a slot per plan, those cuboids filled.
async fn build_streamed(
    model: &Model,
    ctx: &datafusion::prelude::SessionContext,
    dims: &mut Encoding,
    bases: &mut Bases<'_>,
    plans: &[Plan],
    closing: &[lattice::Closing],
    bar: &ProgressBar,
) -> Result<StreamedCuboids> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut slots: Vec<Option<Cuboid>> = (0..plans.len()).map(|_| None).collect();
    let mut parts: Vec<Vec<base::BaseTable>> = (0..model.facts.len()).map(|_| Vec::new()).collect();
    let done = || bar.inc(1);
    // Streamed facts: a range of periods is read, decides its periods' bands, merges into
    // every cuboid built from the base, and goes.
    for &fact in &bases.streamed {
        let Some(stats) = bases.stats[fact].take() else {
            continue;
        };
        bar.set_message(format!("({} by ranges of periods)", model.facts[fact].name));
        let streaming = Streaming {
            model,
            ctx,
            plans,
            closing: &closing[fact],
            range_rows: bases.range_rows,
            workers,
        };
        let (built, kept) = streaming
            .run(
                dims,
                &mut bases.readers[fact],
                &mut bases.tables[fact],
                stats,
                &done,
            )
            .await?;
        for (i, cuboid) in built {
            slots[i] = Some(cuboid);
        }
        parts[fact] = kept;
    }
    Ok((slots, parts))
}

/// Per plan, its cuboid where a streamed fact built it; per fact, a streamed fact's base
/// rows, a table per range of periods.
type StreamedCuboids = (Vec<Option<Cuboid>>, Vec<Vec<base::BaseTable>>);

/// Every fact's base rows, kept in the store: a fact read whole keeps its table, a streamed
/// fact its ranges' tables (`streamed[fact]`).
fn keep_bases(
    tables: Vec<base::BaseTable>,
    streamed: &mut [Vec<base::BaseTable>],
) -> Vec<Option<FactBase>> {
    tables
        .into_iter()
        .zip(streamed.iter_mut())
        .map(|(table, ranges)| {
            let periods = table.periods();
            let parts = match table.planned_rows {
                Some(_) => std::mem::take(ranges),
                None => vec![table],
            };
            Some(FactBase::new(parts, periods))
        })
        .collect()
}

/// The cube of `model` from its encoding `dims` (whose level dictionaries move into the
/// cube), its `cuboids` and `index`, with the cuboids indexed.
fn assemble(
    model: &Model,
    mut dims: Encoding,
    cuboids: Vec<Cuboid>,
    index: CubeIndex,
    bases: Vec<Option<FactBase>>,
) -> Cube {
    let levels = std::mem::take(&mut dims.dicts);
    let mut cube = Cube {
        model: model.clone(),
        levels,
        cuboids,
        index,
        encoding: dims,
        bases,
    };
    cube.index_cuboids();
    info!(
        cuboids = cube.cuboids.len(),
        bytes = cube.memory_bytes(),
        "cube built"
    );
    cube
}

/// What the query layer needs beyond the cuboids: roll-up maps (time included), the periods
/// present in each fact, and each measure's decimal scale.
fn cube_index(model: &Model, dims: &Encoding, bases: &[base::BaseTable]) -> CubeIndex {
    let mut parents: HashMap<(usize, usize, usize), Vec<u32>> = dims
        .parents
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (*k, v)))
        .collect();
    let mut finest_time = None;
    if let (Some(t), Some(axis)) = (model.time_dimension(), &dims.time) {
        let dim = &model.dimensions[t];
        let grain = |l: usize| match dim.levels[l].kind {
            LevelKind::Time(g) => Some(g),
            _ => None,
        };
        finest_time = dim.hierarchy.last().map(|&l| LevelRef { dim: t, level: l });
        for (i, &anc) in dim.hierarchy.iter().enumerate() {
            for &child in &dim.hierarchy[i + 1..] {
                let (Some(ga), Some(gc)) = (grain(anc), grain(child)) else {
                    continue;
                };
                let first_c = crate::store::time::coarsen(axis.first, axis.grain, gc);
                let first_a = crate::store::time::coarsen(axis.first, axis.grain, ga);
                let n = axis.names(gc).len();
                let mut map: Vec<u32> = (0..n)
                    .map(|c| {
                        (crate::store::time::coarsen(first_c + c as i64, gc, ga) - first_a) as u32
                    })
                    .collect();
                map.push(axis.unknown_code(ga)); // unknown lies under unknown
                parents.insert((t, child, anc), map);
            }
        }
    }
    let present = bases.iter().map(base::BaseTable::periods).collect();
    let mut scales = vec![0i8; model.measures.len()];
    for b in bases {
        for (m, col) in b.measure_ids.iter().zip(&b.measures) {
            scales[*m] = base::column_decimal_scale(col);
        }
    }
    CubeIndex {
        parents,
        finest_time,
        present,
        scales,
        ..CubeIndex::default()
    }
}

/// The plans of `fact` built from its base rows: those that no plan with more levels (built
/// in an earlier layer) derives. Each fact's are built in one pass over its base rows.
fn from_base(model: &Model, dims: &Encoding, plans: &[Plan], fact: usize) -> Vec<usize> {
    let derived = |p: &Plan| {
        plans.iter().any(|q| {
            q.fact == p.fact
                && q.levels.len() > p.levels.len()
                && select::derives(model, &q.levels, &p.levels)
                && lattice::can_derive(model, dims, &q.levels, &p.levels)
        })
    };
    (0..plans.len())
        .filter(|&i| plans[i].fact == fact && !derived(&plans[i]))
        .collect()
}

/// What streaming a fact through the build reads (see the module docs).
struct Streaming<'a> {
    model: &'a Model,
    ctx: &'a datafusion::prelude::SessionContext,
    plans: &'a [Plan],
    closing: &'a lattice::Closing,
    range_rows: u64,
    workers: usize,
}

impl Streaming<'_> {
    /// Reads `header`'s fact a range of periods at a time: each range is sorted, decides its
    /// own periods' bands (into `dims`), and is merged into every cuboid of the fact built from
    /// the base; returns those cuboids (plan index, cuboid) and fills in the header's counts.
    /// `stats` are the fact's rows per period and its distinct values' ranges.
    async fn run(
        &self,
        dims: &mut Encoding,
        reader: &mut base::BaseReader,
        header: &mut base::BaseTable,
        (per_period, ranges): (Vec<(u32, u64)>, Vec<Option<base::ValueStats>>),
        done: &(dyn Fn() + Sync),
    ) -> Result<(Vec<(usize, Cuboid)>, Vec<base::BaseTable>)> {
        let model = self.model;
        let mut kept = Vec::new();
        let fact = reader.fact;
        let name = &model.facts[fact].name;
        let (Some(time), Some(axis)) = (&model.facts[fact].time, dims.time.as_ref()) else {
            return Err(crate::EngineError::Internal(
                "a streamed fact without time".into(),
            ));
        };
        let mine = from_base(model, dims, self.plans, fact);
        let grains = bands::metric_grains(model, fact).unwrap_or_default();
        let parts = base::stream_ranges(time, axis, &per_period, self.range_rows, &grains);
        let inputs = lattice::FactInputs::new(model, dims, fact, header, self.closing);
        let mut scanner = base_pass::Scanner::new(&inputs, self.plans, &mine, self.workers, ranges);
        let (mut fact_rows, mut rows) = (0u64, 0usize);
        for (i, ((a, b), filter)) in parts.iter().enumerate() {
            let started = Instant::now();
            let mut part = reader.table();
            // Room for the range's fact rows up front (at least its base rows), instead of
            // growing each column by doubling.
            let last = i + 1 == parts.len();
            let room: u64 = per_period
                .iter()
                .filter(|(p, _)| {
                    (*a..*b).contains(p) || (last && *p == crate::store::time::NO_PERIOD)
                })
                .map(|(_, n)| n)
                .sum();
            part.reserve(usize::try_from(room).unwrap_or(0));
            let (groups, facts) = reader
                .read(model, self.ctx, dims, filter, &mut part)
                .await?;
            if i == 0 && parts.len() > 1 && !model.facts[fact].direct.is_empty() {
                reader.raw = reader.raw || groups * 5 >= facts * 4;
            }
            let read = started.elapsed();
            reader.sort(&mut part)?;
            bands::metric_buckets(model, dims, &part, fact, Some((*a, *b)))?;
            scanner.add(&lattice::FactInputs::new(
                model,
                dims,
                fact,
                &part,
                self.closing,
            ))?;
            (fact_rows, rows) = (fact_rows + part.fact_rows, rows + part.len());
            tracing::debug!(
                fact = name,
                periods = ?(a, b),
                rows = part.len(),
                read_secs = read.as_secs_f64(),
                secs = started.elapsed().as_secs_f64(),
                "range of periods"
            );
            part.shrink();
            kept.push(part);
        }
        (header.fact_rows, header.queries) = (fact_rows, parts.len());
        header.planned_rows = Some(rows as u64);
        let inputs = lattice::FactInputs::new(model, dims, fact, header, self.closing);
        let built = scanner.finish(&inputs, done);
        let (rss_mb, peak_mb) = memory_mb().unwrap_or_default();
        info!(
            fact = name,
            rows,
            fact_rows,
            ranges = parts.len(),
            rss_mb,
            peak_mb,
            "streamed base"
        );
        Ok((built, kept))
    }
}

/// The facts read a range of periods at a time through the whole build, in the order to read
/// them; the others are read whole first. A fact streams when it has more rows than one range
/// and a date, its distinct values are integers, and every metric band over its measures is
/// per period (a range decides its own periods' bands). The bands its cuboids show must be
/// known before its first range, so a streamed fact may show bands of its own, of facts read
/// whole, and of streamed facts read before it: the largest facts are taken first while that
/// order exists (balances and transactions show each other's bands, so one is read whole).
pub(crate) fn streamed_facts(
    model: &Model,
    catalog: &lattice_defs::Catalog,
    rows: &dyn Fn(usize) -> u64,
    range_rows: u64,
) -> Vec<usize> {
    let mut candidates: Vec<(u64, usize)> = (0..model.facts.len())
        .filter(|&f| {
            model.facts[f].time.is_some()
                && model.time_dimension().is_some()
                && base::distinct_values_are_integers(model, catalog, f)
                && bands::metric_grains(model, f).is_some()
        })
        .map(|f| (rows(f), f))
        .filter(|(n, _)| *n > range_rows)
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    // Streamed facts in an order where each shows bands only of those before it (or its own,
    // or of facts read whole); `None` when there is none.
    let order = |set: &[usize]| -> Option<Vec<usize>> {
        let mut left = set.to_vec();
        let mut out = Vec::new();
        while !left.is_empty() {
            let i = left.iter().position(|&f| {
                bands::metric_sources(model, f)
                    .iter()
                    .all(|g| *g == f || !left.contains(g))
            })?;
            out.push(left.remove(i));
        }
        Some(out)
    };
    let mut set = Vec::new();
    for (_, f) in candidates {
        set.push(f);
        if order(&set).is_none() {
            set.pop();
        }
    }
    order(&set).unwrap_or_default()
}

/// Builds the planned cuboids, finest first; each from its smallest built parent. Cuboids
/// with the same number of levels do not depend on each other and are built in parallel.
/// `slots` holds those of streamed facts, built already.
/// `inputs` holds each fact's base rows and closing periods; a plan whose slot is filled
/// already is not built again (and may be the parent of others).
pub(crate) fn build_lattice(
    model: &Model,
    dims: &Encoding,
    inputs: &[lattice::FactInputs<'_>],
    plans: &[Plan],
    mut slots: Vec<Option<Cuboid>>,
    bar: &ProgressBar,
) -> Result<Vec<Cuboid>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let done = || bar.inc(1);
    for (fact, input) in inputs.iter().enumerate() {
        if input.base.planned_rows.is_some() {
            continue; // streamed: built already
        }
        let mut mine = from_base(model, dims, plans, fact);
        mine.retain(|&i| slots[i].is_none());
        for (i, cuboid) in base_pass::build_from_base(input, plans, &mine, workers, &done)? {
            slots[i] = Some(cuboid);
        }
    }
    // Order: more levels first, then larger first; `slots[i]` receives plan i's cuboid.
    let mut order: Vec<usize> = (0..plans.len()).filter(|&i| slots[i].is_none()).collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(plans[i].levels.len()),
            std::cmp::Reverse(plans[i].est_cells),
        )
    });
    let mut start = 0;
    while start < order.len() {
        let width = plans[order[start]].levels.len();
        let end = order[start..]
            .iter()
            .position(|&i| plans[i].levels.len() != width)
            .map_or(order.len(), |p| start + p);
        let layer = &order[start..end];
        let built: Vec<(usize, Result<Cuboid>)> = std::thread::scope(|s| {
            let slots = &slots;
            let inputs = &inputs;
            let chunks: Vec<Vec<usize>> = (0..workers)
                .map(|w| layer.iter().copied().skip(w).step_by(workers).collect())
                .collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    s.spawn(move || {
                        chunk
                            .into_iter()
                            .map(|i| {
                                let r = build_one(&inputs[plans[i].fact], &plans[i], slots);
                                bar.inc(1);
                                (i, r)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, r) in built {
            slots[i] = Some(r?);
        }
        start = end;
    }
    slots
        .into_iter()
        .map(|c| {
            c.ok_or_else(|| crate::EngineError::Internal("a planned cuboid was not built".into()))
        })
        .collect()
}

fn build_one(
    inputs: &lattice::FactInputs<'_>,
    plan: &Plan,
    slots: &[Option<Cuboid>],
) -> Result<Cuboid> {
    let (model, dims) = (inputs.model, inputs.dims);
    let parent = slots
        .iter()
        .enumerate()
        .filter_map(|(j, c)| c.as_ref().map(|c| (j, c)))
        .filter(|(_, c)| {
            c.fact == plan.fact
                && select::derives(model, &c.levels, &plan.levels)
                && lattice::can_derive(model, dims, &c.levels, &plan.levels)
        })
        .min_by_key(|(_, c)| c.len());
    let (j, parent) = parent.ok_or_else(|| {
        crate::EngineError::Internal("a cuboid not built from the base has no parent".into())
    })?;
    lattice::aggregate(inputs, parent, j, &plan.levels)
}

/// Runs `f(0)` to `f(workers - 1)` each on its own thread and returns their results in that
/// order; a thread that panics is an internal error.
pub(crate) fn on_threads<T: Send>(
    workers: usize,
    f: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|w| s.spawn(move || f(w))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(crate::EngineError::Internal(
                        "a build thread panicked".into(),
                    ))
                })
            })
            .collect()
    })
}

/// Resident and peak resident memory of this process in MB, where the OS tells (Linux).
fn memory_mb() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((kb("VmRSS:")? / 1024, kb("VmHWM:")? / 1024))
}
