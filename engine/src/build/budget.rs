//! The memory budget of a build: an estimate of what each stage will hold, checked before the
//! stage allocates it, so that a build that cannot fit is refused with the arithmetic instead
//! of being killed by the operating system halfway (or taking the server down with it).
//!
//! Two checks, each against [`BuildOptions::memory_budget`](super::BuildOptions):
//!
//! 1. **Before reading any data** (before even the data checks of
//!    [`load_within`](super::load_within)), from the sources' row counts (Parquet footers; for CSV, an
//!    upper bound from the file size): the member dictionaries of every table dimension (at most
//!    one member per table row and level) and each fact's base table (at most one row per fact
//!    row; for a fact that streams through the build, one range of periods) with the working
//!    memory of the DataFusion aggregation that makes it.
//! 2. **Before the lattice**, with what stage 1 measured: the dictionaries and base tables as
//!    built, plus every planned cuboid at its estimated size ([`super::Plan::est_bytes`]).
//!
//! The estimates are deliberately simple and on the high side: calibrated on the default cube
//! at scale 1 (8.3 M fact rows), where stage 1 estimates about 2.0 GB and the build peaks at
//! about 2.1 GB.

use lattice_defs::Catalog;
use lattice_defs::model::{Agg, DimensionKind, MeasureKind, Model, SourceFormat};

use super::base::BaseTable;
use super::select::Plan;
use crate::error::EstimateItem;
use crate::store::MeasureColumn;
use crate::store::encoding::Encoding;
use crate::{EngineError, Result};

/// Bytes a member of a level holds: its name (a `String` and about 16 bytes of text), its
/// entry in the name index, and its code in the key-to-member array.
const MEMBER_BYTES: u64 = 64;
/// Bytes per row of a dimension table while it is read (Arrow batches of its columns).
const DIM_ROW_BYTES: u64 = 32;
/// A base table's peak over its final size: DataFusion's hash aggregation holds the groups and
/// their accumulators while it converts them into the base table's columns.
const BASE_PEAK_FACTOR: u64 = 3;

/// A memory budget of half the machine's memory (or of the container's limit, when lower):
/// the other half is for the cube already serving while a new one builds, and for the rest
/// of the system. `None` where the memory cannot be read (no budget then).
pub fn machine_budget() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut total = total_kib.saturating_mul(1024);
    // cgroup v2, then v1; "max" (or an absurd v1 value) means no limit.
    for limit in [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ] {
        if let Some(n) = std::fs::read_to_string(limit)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
        {
            total = total.min(n);
        }
    }
    Some(total / 2)
}

fn over_budget(stage: &'static str, items: Vec<EstimateItem>, budget: u64) -> Result<()> {
    let estimate: u64 = items.iter().map(|i| i.bytes).fold(0, u64::saturating_add);
    if estimate <= budget {
        return Ok(());
    }
    Err(EngineError::OverMemoryBudget {
        stage,
        estimate_bytes: estimate,
        budget_bytes: budget,
        items,
    })
}

/// Rows of a source table without reading it: the Parquet footers' counts, or for CSV at most
/// one row per `columns` bytes of its files (each field takes at least a separator).
pub(crate) fn source_rows(model: &Model, catalog: &Catalog, table: &str) -> u64 {
    let Some(found) = model
        .source(table)
        .and_then(|s| crate::source::files::resolve(s).ok())
    else {
        return 0;
    };
    let rows = |path: &std::path::Path| match found.format {
        SourceFormat::Parquet => std::fs::File::open(path)
            .ok()
            .and_then(|f| parquet::file::reader::SerializedFileReader::new(f).ok())
            .map_or(0, |r| {
                use parquet::file::reader::FileReader;
                r.metadata().file_metadata().num_rows().max(0) as u64
            }),
        SourceFormat::Csv => {
            let columns = catalog.table(table).map_or(1, |t| t.columns.len().max(1)) as u64;
            std::fs::metadata(path).map_or(0, |m| m.len() / columns)
        }
    };
    found.files.iter().map(|f| rows(f)).sum()
}

/// Bytes of one base-table row of `fact`: a code per key the fact carries and its period, and
/// each of its measures.
fn base_row_bytes(model: &Model, fact: usize) -> u64 {
    let keys = model.facts[fact].direct.len() as u64 + 1;
    let measures: u64 = model
        .measures
        .iter()
        .filter_map(|m| match &m.kind {
            MeasureKind::Aggregate { fact: f, agg, .. } if *f == fact => Some(match agg {
                Agg::Count => 8,
                Agg::Distinct => 4,
                Agg::Sum | Agg::Min | Agg::Max => 17,
            }),
            _ => None,
        })
        .sum();
    4 * keys + measures
}

/// Check 1: before any data is read (the sources registered, their schemas in `catalog`).
pub(crate) fn check_sources(model: &Model, catalog: &Catalog, budget: u64) -> Result<()> {
    let mut items = Vec::new();
    for dim in &model.dimensions {
        let DimensionKind::Table { table, lookups, .. } = &dim.kind else {
            continue;
        };
        let rows = source_rows(model, catalog, table)
            + lookups
                .iter()
                .map(|l| source_rows(model, catalog, &l.table))
                .sum::<u64>();
        let levels = dim.levels.len() as u64;
        items.push(EstimateItem {
            what: format!(
                "dimension '{}' ({levels} levels over table '{table}')",
                dim.name
            ),
            count: rows,
            unit: "rows",
            bytes: rows.saturating_mul(levels * MEMBER_BYTES + DIM_ROW_BYTES),
        });
    }
    // An allocated fact has at most a row per cell of its driver fact.
    let rows = |f: usize| {
        let table = model
            .allocation_of(f)
            .map_or(&model.facts[f].name, |a| &model.facts[a.from].name);
        source_rows(model, catalog, table)
    };
    let streamed = super::streamed_facts(model, catalog, &rows, super::base::RANGE_ROWS);
    for (f, fact) in model.facts.iter().enumerate() {
        let row = base_row_bytes(model, f);
        let (rows, how) = if streamed.contains(&f) {
            // One range of periods at a time: about RANGE_ROWS rows, more where one period
            // has more.
            (
                rows(f).min(2 * super::base::RANGE_ROWS),
                "a range of periods at a time",
            )
        } else {
            (rows(f), "aggregated to the cube grain")
        };
        items.push(EstimateItem {
            what: format!(
                "fact '{}' {how} ({row} bytes a row, x{BASE_PEAK_FACTOR} while aggregating)",
                fact.name
            ),
            count: rows,
            unit: "rows",
            bytes: rows.saturating_mul(row * BASE_PEAK_FACTOR),
        });
    }
    over_budget("reading the sources", items, budget)
}

fn column_bytes(c: &MeasureColumn) -> u64 {
    (match c {
        MeasureColumn::Decimal { values, valid, .. } => values.len() * 16 + valid.len(),
        MeasureColumn::Decimal64 { values, valid, .. } => values.len() * 8 + valid.len(),
        MeasureColumn::Count(v) => v.len() * 8,
        MeasureColumn::Distinct(v) => v.iter().map(|b| b.serialized_size() + 8).sum(),
        MeasureColumn::DistinctValues(v) => v.len() * 4,
    }) as u64
}

/// Check 2: the dictionaries and base tables as built, and the planned cuboids.
pub(crate) fn check_plans(
    model: &Model,
    dims: &Encoding,
    bases: &[BaseTable],
    plans: &[Plan],
    budget: u64,
) -> Result<()> {
    let members: u64 = dims.dicts.iter().flatten().map(|d| d.len() as u64).sum();
    let mut items = vec![EstimateItem {
        what: "member dictionaries".into(),
        count: members,
        unit: "members",
        bytes: members * MEMBER_BYTES,
    }];
    for (f, base) in bases.iter().enumerate() {
        let codes: u64 = base.codes.iter().map(|c| c.len() as u64 * 4).sum();
        let measures: u64 = base.measures.iter().map(column_bytes).sum();
        items.push(EstimateItem {
            what: format!("base table of '{}'", model.facts[f].name),
            count: base.len() as u64,
            unit: "rows",
            bytes: codes + measures,
        });
    }
    for (f, fact) in model.facts.iter().enumerate() {
        let planned: Vec<&Plan> = plans.iter().filter(|p| p.fact == f).collect();
        if planned.is_empty() {
            continue;
        }
        items.push(EstimateItem {
            what: format!("{} cuboids of '{}'", planned.len(), fact.name),
            count: planned
                .iter()
                .map(|p| p.est_cells)
                .fold(0, u64::saturating_add),
            unit: "cells",
            bytes: planned
                .iter()
                .map(|p| p.est_bytes)
                .fold(0, u64::saturating_add),
        });
    }
    over_budget("building the cuboids", items, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_budget_is_half_its_memory() {
        if let Some(b) = machine_budget() {
            assert!(b > 16 << 20, "{b}");
        }
    }

    #[test]
    fn an_estimate_over_the_budget_names_every_part() {
        let items = vec![
            EstimateItem {
                what: "fact 'sales'".into(),
                count: 1000,
                unit: "rows",
                bytes: 3 << 20,
            },
            EstimateItem {
                what: "dimension 'shop'".into(),
                count: 10,
                unit: "rows",
                bytes: 1 << 20,
            },
        ];
        assert!(over_budget("reading the sources", items.clone(), 4 << 20).is_ok());
        let e = over_budget("reading the sources", items, 2 << 20).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("4.0 MiB"), "{text}");
        assert!(text.contains("2.0 MiB"), "{text}");
        assert!(text.contains("fact 'sales': 1000 rows = 3.0 MiB"), "{text}");
    }
}
