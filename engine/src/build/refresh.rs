//! Incremental refresh: a built cube brought up to date with the new periods of its facts,
//! reading only the files added since it was built.
//!
//! The caller registers the *delta*: the sources with only their added files (a source with
//! none is empty), the dimension tables whole. Each fact's new rows are read at the cube grain
//! from the delta ([`base::build_base`]) and joined to the base rows the cube keeps; from
//! those whole base tables the metric bands and value classes and the choice of cuboids are
//! computed as a full build computes them, and each chosen cuboid the cube has is merged with
//! what changed ([`super::merge`]): the new rows' cells, or the time members whose band codes
//! changed built again. A refreshed cube equals the cube a build of all the files makes (the
//! differential tests hold it, cuboid for cuboid).
//! What the cube had is never read again from the files; what it had is reused as it is
//! (the dimension codes, the time axis's first period).
//!
//! A delta that cannot be applied so is [`NotIncremental`], with the reason, and the caller
//! builds in full:
//!
//! - the cube keeps no base rows (built with `without_base`);
//! - new rows lie in a period the fact has already (a past month rewritten or added to), or
//!   before the cube's first period;
//! - a fact counts distinct text values (their codes are given in the order a build sees
//!   them, which a refresh cannot repeat);
//! - an allocation's new pool rows and its driver's new rows cover different periods (a
//!   month's costs arriving before or after its transactions change what is allocated);
//! - `model` is another definition than the cube's, and reads other base rows: other facts
//!   or dimensions, other key codes, another query for a fact's rows, other measures, another
//!   allocation. A definition that changes only what is computed from the base rows (a band's
//!   edges or labels, value classes, derived measures, the cuboids listed) is refreshed with
//!   no new files: the base rows are reused, everything after them computed again.

use std::collections::BTreeSet;
use std::time::Instant;

use lattice_defs::Model;

use super::{Bases, BuildOptions, BuildReport, Stages, bands, base, complete, spinner};
use crate::Result;
use crate::source::arrays::{ints, query};
use crate::source::load::{Sources, ident};
use crate::store::Cube;
use crate::store::time::{NO_PERIOD, period_sql};

/// Why a refresh cannot be applied to a cube: it is built in full instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotIncremental(pub String);

impl std::fmt::Display for NotIncremental {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a refresh made: the cube and its report, or why it could not be applied.
pub type Refreshed = std::result::Result<(Cube, BuildReport), NotIncremental>;

/// Refreshes `prior` (a cube of `model`) with the rows of `delta` (see the module docs).
pub async fn refresh_cube_with_report(
    model: &Model,
    prior: &Cube,
    delta: &Sources,
    opts: &BuildOptions,
) -> Result<Refreshed> {
    let not = |why: String| Ok(Err(NotIncremental(why)));
    if prior.bases.len() != model.facts.len() || prior.bases.iter().any(Option::is_none) {
        return not("the cube keeps no base rows (built without them)".into());
    }
    for (f, fact) in model.facts.iter().enumerate() {
        let distinct = base::fact_measures(model, f)
            .iter()
            .any(|(_, s)| s.agg == lattice_defs::model::Agg::Distinct);
        if distinct && !base::distinct_values_are_integers(model, &delta.catalog, f) {
            return not(format!(
                "fact '{}' counts distinct text values, which only a full build numbers",
                fact.name
            ));
        }
    }
    if let Some(why) = allocation_mismatch(model, delta).await? {
        return not(why);
    }
    let progress = spinner(opts.progress);
    let mut stages = Stages::default();
    let t = Instant::now();
    progress.set_message("encoding dimensions");
    let axis = prior.encoding.time.as_ref();
    let mut dims = super::dims::build_dims(model, &delta.catalog, &delta.ctx, axis).await?;
    if let Some(why) = changed_base(model, prior, delta, &dims)? {
        return not(why);
    }
    if let (Some(before), Some(now)) = (axis, dims.time.as_ref())
        && before.len > 0
        && before.first != now.first
    {
        return not(format!(
            "new rows lie before the cube's first period ({})",
            crate::store::time::period_start(before.first, before.grain)
        ));
    }
    stages.end("dimensions", t);

    let t = Instant::now();
    let range_rows = opts.base_range_rows.unwrap_or(base::RANGE_ROWS);
    let mut readers = Vec::new();
    let mut tables = Vec::new();
    let mut news = Vec::new();
    for (f, kept) in prior.bases.iter().enumerate() {
        let name = &model.facts[f].name;
        let Some(kept) = kept else {
            return not("the cube keeps no base rows (built without them)".into());
        };
        progress.set_message(format!("reading the new rows of {name}"));
        let mut reader = base::BaseReader::new(model, &delta.catalog, &dims, f)?;
        let new = base::build_base(
            model,
            &mut reader,
            &delta.ctx,
            &dims,
            &delta.catalog,
            range_rows,
        )
        .await?;
        let again = new.periods() & &kept.periods;
        if let Some(p) = again.min() {
            let when = dims.time.as_ref().map_or_else(
                || p.to_string(),
                |t| crate::store::time::period_start(t.abs(p), t.grain).to_string(),
            );
            return not(format!(
                "the new files of '{name}' have rows in a period the cube has already (from {when})"
            ));
        }
        let mut parts: Vec<&base::BaseTable> = kept.parts.iter().collect();
        parts.push(&new);
        let mut table = reader.join_sorted(&parts)?;
        table.queries = new.queries;
        table.shrink();
        match band_window(model, prior, &dims, f, &new) {
            Some(window) => {
                let part = window
                    .map(|(a, b)| table.rows_where(|p| p != NO_PERIOD && (a..b).contains(&p)));
                let rows = part.as_ref().unwrap_or(&table);
                bands::refresh_buckets(model, &mut dims, &prior.encoding, rows, f, window)?;
            }
            None => bands::metric_buckets(model, &mut dims, &table, f, None)?,
        }
        news.push(new);
        readers.push(reader);
        tables.push(table);
    }
    // The facts a build of the same data would read a range at a time are chosen for as it
    // chooses for them: by their fact rows and periods.
    let rows = |f: usize| tables[f].fact_rows;
    let chosen_as_streamed = super::streamed_facts(model, &delta.catalog, &rows, range_rows);
    for &f in &chosen_as_streamed {
        let periods = tables[f].periods();
        tables[f].planned_rows = Some(tables[f].fact_rows);
        tables[f].periods_present = Some(periods);
    }
    stages.end("base", t);
    let bases = Bases {
        stats: (0..tables.len()).map(|_| None).collect(),
        readers,
        tables,
        streamed: Vec::new(),
        range_rows,
        chosen_as_streamed,
        prior: Some(super::merge::Prior { cube: prior, news }),
    };
    let (cube, report) = complete(model, delta, dims, bases, opts, progress, stages).await?;
    Ok(Ok((cube, report)))
}

/// The axis periods whose metric buckets over `fact`'s measures a refresh computes again,
/// when it need not compute them all: from the first new period (of the axis, or of the
/// fact's `new` rows) to the last, widened to begin a period of every band's grain (a year
/// that gains a month ranks its customers again). `Some(None)`: none, the cube's codes are
/// kept; `None`: every period is computed (a band without a period grain, or defined
/// otherwise than the cube's).
fn band_window(
    model: &Model,
    prior: &Cube,
    dims: &crate::store::encoding::Encoding,
    fact: usize,
    new: &base::BaseTable,
) -> Option<Option<(u32, u32)>> {
    let grains = bands::metric_grains(model, fact)?;
    let axis = dims.time.as_ref()?;
    if grains.is_empty() || !bands::buckets_refreshable(model, &prior.model, &prior.encoding, fact)
    {
        return None;
    }
    let was = prior.encoding.time.as_ref().map_or(0, |t| t.len as u32);
    let from = new.periods().min().map_or(was, |p| p.min(was));
    let len = axis.len as u32;
    if from >= len {
        return Some(None);
    }
    let mut a = from;
    while a > 0 && !axis.begins_period(a, &grains) {
        a -= 1;
    }
    Some(Some((a, len)))
}

/// Why the base rows `prior` keeps are not what `model` reads (when `model` is another
/// definition than the one `prior` was built from): its facts, their dimensions, the keys'
/// codes, the query of a fact's base rows or its measures, or an allocation differ. A change
/// elsewhere (a band's edges or labels, a derived measure, the cuboids listed) keeps them.
fn changed_base(
    model: &Model,
    prior: &Cube,
    delta: &Sources,
    dims: &crate::store::encoding::Encoding,
) -> Result<Option<String>> {
    let before = &prior.model;
    let shape = |m: &Model| {
        (
            m.dimensions
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>(),
            m.facts
                .iter()
                .map(|f| (f.name.clone(), f.direct.clone()))
                .collect::<Vec<_>>(),
        )
    };
    if shape(before) != shape(model) {
        return Ok(Some(
            "the definition changed its dimensions or facts".into(),
        ));
    }
    for (d, (was, is)) in prior.encoding.codes.iter().zip(&dims.codes).enumerate() {
        let same = match (was, is) {
            (Some(a), Some(b)) => {
                a.n_keys == b.n_keys
                    && a.integer_key == b.integer_key
                    && a.key_map == b.key_map
                    && a.dense == b.dense
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Ok(Some(format!(
                "the keys of dimension '{}' changed",
                model.dimensions[d].name
            )));
        }
    }
    let allocation = |m: &Model, a: &lattice_defs::model::Allocation| {
        let driver = match a.driver {
            lattice_defs::model::Driver::Measure(id) => m.measures[id].name.clone(),
            lattice_defs::model::Driver::Equal => String::new(),
        };
        (
            m.facts[a.fact].name.clone(),
            m.facts[a.from].name.clone(),
            a.pool.table.clone(),
            a.pool.amount.column.clone(),
            a.pool.time.column.clone(),
            a.pool.key.column.clone(),
            a.pool.member,
            driver,
        )
    };
    let allocations = |m: &Model| {
        m.allocations
            .iter()
            .map(|a| allocation(m, a))
            .collect::<Vec<_>>()
    };
    if allocations(before) != allocations(model) {
        return Ok(Some("the definition changed an allocation".into()));
    }
    for (f, fact) in model.facts.iter().enumerate() {
        let was = base::BaseReader::new(before, &delta.catalog, dims, f)?.signature();
        let is = base::BaseReader::new(model, &delta.catalog, dims, f)?.signature();
        if was != is {
            return Ok(Some(format!(
                "the definition changed what the base rows of fact '{}' hold (its keys, time or measures)",
                fact.name
            )));
        }
    }
    Ok(None)
}

/// Why the delta's allocations cannot be refreshed: an allocation whose new pool rows and
/// new driver rows cover different periods.
async fn allocation_mismatch(model: &Model, delta: &Sources) -> Result<Option<String>> {
    let Some(grain) = model
        .time_dimension()
        .and_then(|t| model.dimensions[t].hierarchy.last().map(|l| (t, *l)))
        .and_then(|(t, l)| match model.dimensions[t].levels[l].kind {
            lattice_defs::model::LevelKind::Time(g) => Some(g),
            _ => None,
        })
    else {
        return Ok(None);
    };
    let periods = |table: String, column: String| {
        let sql = format!(
            "SELECT DISTINCT {} FROM {} WHERE {column} IS NOT NULL",
            period_sql(&column, grain),
            ident(&table)
        );
        async move {
            let mut out = BTreeSet::new();
            for b in query(&delta.ctx, &sql).await? {
                let p = ints(&b, 0)?;
                out.extend((0..b.num_rows()).map(|r| p.value(r)));
            }
            Ok::<_, crate::EngineError>(out)
        }
    };
    for a in &model.allocations {
        let driver = &model.facts[a.from];
        let Some(time) = &driver.time else { continue };
        let pool = periods(a.pool.table.clone(), ident(&a.pool.time.column)).await?;
        let cells = periods(driver.name.clone(), ident(&time.column)).await?;
        if pool != cells {
            return Ok(Some(format!(
                "the new files of '{}' and of '{}' (its allocation '{}') cover different periods",
                a.pool.table, driver.name, model.facts[a.fact].name
            )));
        }
    }
    Ok(None)
}
