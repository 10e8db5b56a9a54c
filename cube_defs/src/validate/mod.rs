//! Validation: [`RawCube`] -> [`Model`], or every problem found, each with its line, column and
//! key path. Names are resolved in two passes (all names first, then references) so forward
//! references work and every unknown name gets a "did you mean".
//!
//! - this module: the entry point, sources and facts;
//! - [`dimensions`]: dimensions, levels, hierarchies and buckets;
//! - [`measures`]: aggregations, derived expressions and their cycles;
//! - [`allocations`]: fact tables computed by spreading a pool over a driver fact's cells;
//! - [`aggregates`]: which cuboids to precompute;
//! - [`searches`]: saved target-customer searches (their names, shapes and references).

mod aggregates;
mod allocations;
mod dimensions;
mod measures;
mod privacy;
mod searches;

use aggregates::aggregates;
use allocations::allocations;
pub use dimensions::default_labels;
use dimensions::dimensions;
use measures::{derived_cycles, measures, metric_buckets_vary};
use privacy::privacy;
use searches::searches;

use std::path::Path;

use serde_saphyr::Spanned;

use crate::diag::{DefError, Diagnostic, Pos, suggest};
use crate::limits::{MAX_ALLOCATIONS, MAX_LEVELS, MAX_MEASURES, MAX_NAME_CHARS, MAX_SOURCES};
use crate::model::*;
use crate::raw::*;

/// Collects diagnostics for one file.
pub(crate) struct Ctx<'a> {
    pub file: &'a str,
    pub text: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn report(&mut self, pos: Pos, path: impl Into<String>, error: DefError) {
        self.diags.push(Diagnostic {
            file: self.file.to_string(),
            pos,
            path: path.into(),
            error,
        });
    }

    fn invalid(&mut self, pos: Pos, path: impl Into<String>, message: impl Into<String>) {
        self.report(
            pos,
            path,
            DefError::Invalid {
                message: message.into(),
            },
        );
    }

    fn unknown<'n>(
        &mut self,
        pos: Pos,
        path: impl Into<String>,
        what: &'static str,
        name: &str,
        scope: Option<String>,
        candidates: impl IntoIterator<Item = &'n str>,
    ) {
        let suggestion = suggest(name, candidates);
        self.report(
            pos,
            path,
            DefError::Unknown {
                what,
                name: name.to_string(),
                scope,
                suggestion,
            },
        );
    }
}

pub(super) fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos::from_location(s.referenced)
}

/// Validates a parsed definition. `base_dir` resolves relative source paths.
pub(crate) fn validate(raw: RawCube, ctx: &mut Ctx<'_>, base_dir: &Path) -> Option<Model> {
    if raw.version.value != 1 {
        ctx.report(
            pos(&raw.version),
            "version",
            DefError::UnsupportedVersion {
                found: raw.version.value,
            },
        );
    }
    if raw.cube.value.trim().is_empty() {
        ctx.invalid(pos(&raw.cube), "cube", "the cube needs a name");
    } else {
        check_name(ctx, "cube", &raw.cube, "cube".into(), false);
    }
    // Sizes first: past a limit nothing else is checked, so that a hostile definition costs
    // no more than reading it.
    if !within_limits(&raw, ctx) {
        return None;
    }
    for (name, _) in &raw.sources.0 {
        check_name(
            ctx,
            "source",
            name,
            format!("sources.{}", name.value),
            false,
        );
    }
    for (name, dim) in &raw.dimensions.0 {
        let base = format!("dimensions.{}", name.value);
        check_name(ctx, "dimension", name, base.clone(), true);
        for (level, _) in dim.levels.iter().flat_map(|l| &l.0) {
            let path = format!("{base}.levels.{}", level.value);
            check_name(ctx, "level", level, path, false);
        }
    }
    for (name, _) in &raw.allocations.0 {
        check_name(
            ctx,
            "allocation",
            name,
            format!("allocations.{}", name.value),
            false,
        );
    }
    for (name, _) in &raw.measures.0 {
        check_name(
            ctx,
            "measure",
            name,
            format!("measures.{}", name.value),
            false,
        );
    }

    let sources = sources(&raw.sources, ctx, base_dir);
    let source_names: Vec<&str> = raw
        .sources
        .0
        .iter()
        .map(|(k, _)| k.value.as_str())
        .collect();
    let dim_names: Vec<&str> = raw
        .dimensions
        .0
        .iter()
        .map(|(k, _)| k.value.as_str())
        .collect();
    let measure_names: Vec<&str> = raw
        .measures
        .0
        .iter()
        .map(|(k, _)| k.value.as_str())
        .collect();
    // Allocations are facts too, after those read from sources: measures may name them.
    let fact_names: Vec<&str> = raw
        .facts
        .0
        .iter()
        .map(|(k, _)| k.value.as_str())
        .chain(raw.allocations.0.iter().map(|(k, _)| k.value.as_str()))
        .collect();

    let mut facts = facts(&raw.facts, ctx, &source_names, &dim_names);
    let dimensions = dimensions(&raw, ctx, &source_names, &measure_names);
    let measures = measures(&raw, ctx, &fact_names, &measure_names);
    if let Some(measures) = &measures {
        derived_cycles(measures, &raw, ctx);
    }
    let dimensions = dimensions?;
    let mut allocated = Vec::new();
    if let Some(measures) = &measures
        && facts.len() == raw.facts.0.len()
    {
        let (more, list) = allocations(&raw, ctx, &source_names, &facts, &dimensions, measures);
        facts.extend(more);
        allocated = list;
    } else if !raw.allocations.0.is_empty() {
        // Reported once the facts and measures they name are valid.
        return None;
    }
    let clean_so_far = ctx.diags.is_empty();

    let mut model = Model {
        name: raw.cube.value.clone(),
        description: raw.description.clone(),
        file: ctx.file.to_string(),
        sources,
        facts,
        dimensions,
        measures: measures.unwrap_or_default(),
        allocations: allocated,
        aggregates: Aggregates::default(),
        privacy: None,
        searches: Vec::new(),
    };
    // Level references resolve even when other sections have errors, so they are reported in
    // the same run; the cross-checks below only make sense on an otherwise clean definition.
    model.aggregates = aggregates(raw.aggregates.as_ref(), &model, ctx);
    model.searches = searches(raw.searches.as_ref(), &model, &measure_names, ctx);
    if clean_so_far {
        metric_buckets_vary(&model, &raw, ctx);
        model.privacy = privacy(raw.privacy.as_ref(), &model, ctx);
    }
    ctx.diags.is_empty().then_some(model)
}

/// Whether the definition is within [`crate::limits`] in the number of its sources,
/// dimensions, levels and measures; reports the first entry over each limit otherwise.
fn within_limits(raw: &RawCube, ctx: &mut Ctx<'_>) -> bool {
    let mut ok = true;
    let mut over = |ctx: &mut Ctx<'_>,
                    at: Option<&Spanned<String>>,
                    path: &str,
                    what,
                    found: usize,
                    limit: usize| {
        if found > limit {
            ok = false;
            ctx.report(
                at.map_or(Pos::UNKNOWN, pos),
                path,
                DefError::TooMany {
                    what,
                    found: found as u64,
                    limit: limit as u64,
                },
            );
        }
    };
    let key = |map_len: usize, i: usize| (i < map_len).then_some(i);
    let s = &raw.sources.0;
    over(
        ctx,
        key(s.len(), MAX_SOURCES).map(|i| &s[i].0),
        "sources",
        "sources",
        s.len(),
        MAX_SOURCES,
    );
    let a = &raw.allocations.0;
    over(
        ctx,
        key(a.len(), MAX_ALLOCATIONS).map(|i| &a[i].0),
        "allocations",
        "allocations",
        a.len(),
        MAX_ALLOCATIONS,
    );
    let m = &raw.measures.0;
    over(
        ctx,
        key(m.len(), MAX_MEASURES).map(|i| &m[i].0),
        "measures",
        "measures",
        m.len(),
        MAX_MEASURES,
    );
    // Every dimension has at least one level, so this bounds the dimensions too.
    let d = &raw.dimensions.0;
    let levels_of = |dim: &RawDimension| {
        dim.levels
            .as_ref()
            .map(|l| l.0.len())
            .or_else(|| dim.hierarchy.as_ref().map(|h| h.value.len()))
            .unwrap_or(0)
            .max(1)
    };
    let mut total = 0;
    let mut first_over = None;
    for (name, dim) in d {
        total += levels_of(dim);
        if total > MAX_LEVELS && first_over.is_none() {
            first_over = Some(name);
        }
    }
    over(ctx, first_over, "dimensions", "levels", total, MAX_LEVELS);
    ok
}

/// The rules every name follows: not empty, at most [`MAX_NAME_CHARS`] characters, no control
/// characters; a dimension's name has no `.` (it separates the dimension from the level in
/// `region.city`).
fn check_name(
    ctx: &mut Ctx<'_>,
    what: &'static str,
    name: &Spanned<String>,
    path: String,
    no_dot: bool,
) {
    let n = &name.value;
    let reason = if n.is_empty() {
        "a name cannot be empty"
    } else if n.chars().count() > MAX_NAME_CHARS {
        "a name has at most 128 characters"
    } else if n.chars().any(char::is_control) {
        "a name cannot contain control characters (tabs, line breaks, NUL, ...)"
    } else if no_dot && n.contains('.') {
        "a dimension's name cannot contain '.', which separates it from the level ('region.city')"
    } else {
        return;
    };
    // A name that is too long is shown cut short.
    let shown: String = n.chars().take(MAX_NAME_CHARS).collect();
    let shown = if shown.len() < n.len() {
        format!("{shown}...")
    } else {
        shown
    };
    ctx.report(
        pos(name),
        path,
        DefError::BadName {
            what,
            name: shown,
            reason,
        },
    );
}

fn sources(raw: &SpannedMap<RawSource>, ctx: &mut Ctx<'_>, base_dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for (name, src) in &raw.0 {
        let format = match &src.format {
            Some(f) => match f.value.as_str() {
                "parquet" => Some(SourceFormat::Parquet),
                "csv" => Some(SourceFormat::Csv),
                other => {
                    ctx.invalid(
                        pos(f),
                        format!("sources.{}.format", name.value),
                        format!("unknown format '{other}' (use parquet or csv)"),
                    );
                    None
                }
            },
            None => {
                let lower = src.path.value.to_ascii_lowercase();
                if lower.ends_with(".parquet") {
                    Some(SourceFormat::Parquet)
                } else if lower.ends_with(".csv") {
                    Some(SourceFormat::Csv)
                } else {
                    // A folder, or a name without an extension: the files found tell.
                    None
                }
            }
        };
        if src.format.is_some() && format.is_none() {
            continue;
        }
        out.push(Source {
            name: name.value.clone(),
            path: base_dir.join(&src.path.value),
            format,
            pos: pos(&src.path),
        });
    }
    out
}

fn facts(
    raw: &SpannedMap<RawFact>,
    ctx: &mut Ctx<'_>,
    sources: &[&str],
    dims: &[&str],
) -> Vec<Fact> {
    if raw.0.is_empty() {
        ctx.invalid(
            Pos::UNKNOWN,
            "facts",
            "the cube needs at least one fact table",
        );
    }
    let mut out = Vec::new();
    for (name, fact) in &raw.0 {
        let base = format!("facts.{}", name.value);
        if !sources.contains(&name.value.as_str()) {
            ctx.unknown(
                pos(name),
                &base,
                "table",
                &name.value,
                Some("sources".into()),
                sources.iter().copied(),
            );
        }
        let mut direct = Vec::new();
        let mut direct_pos = Vec::new();
        for d in &fact.dimensions {
            match dims.iter().position(|n| *n == d.value) {
                Some(i) if direct.contains(&i) => ctx.report(
                    pos(d),
                    format!("{base}.dimensions"),
                    DefError::Duplicate {
                        what: "dimension",
                        name: d.value.clone(),
                        first_line: pos(d).line,
                    },
                ),
                Some(i) => {
                    direct.push(i);
                    direct_pos.push(pos(d));
                }
                None => ctx.unknown(
                    pos(d),
                    format!("{base}.dimensions"),
                    "dimension",
                    &d.value,
                    None,
                    dims.iter().copied(),
                ),
            }
        }
        out.push(Fact {
            name: name.value.clone(),
            time: fact.time.as_ref().map(|t| ColumnRef {
                table: name.value.clone(),
                column: t.value.clone(),
                pos: pos(t),
                path: format!("{base}.time"),
            }),
            direct,
            direct_pos,
        });
    }
    out
}
