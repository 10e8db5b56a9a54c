//! Validation: [`RawCube`] -> [`Model`], or every problem found, each with its line, column and
//! key path. Names are resolved in two passes (all names first, then references) so forward
//! references work and every unknown name gets a "did you mean".
//!
//! - this module: the entry point, sources and facts;
//! - [`dimensions`]: dimensions, levels, hierarchies and buckets;
//! - [`measures`]: aggregations, derived expressions and their cycles;
//! - [`aggregates`]: which cuboids to precompute.

mod aggregates;
mod dimensions;
mod measures;
mod privacy;

use aggregates::aggregates;
pub use dimensions::default_labels;
use dimensions::dimensions;
use measures::{derived_cycles, measures, metric_buckets_vary};
use privacy::privacy;

use std::path::Path;

use serde_saphyr::Spanned;

use crate::diag::{DefError, Diagnostic, Pos, suggest};
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
    let fact_names: Vec<&str> = raw.facts.0.iter().map(|(k, _)| k.value.as_str()).collect();

    let facts = facts(&raw.facts, ctx, &source_names, &dim_names);
    let dimensions = dimensions(&raw, ctx, &source_names, &measure_names);
    let measures = measures(&raw, ctx, &fact_names, &measure_names);
    if let Some(measures) = &measures {
        derived_cycles(measures, &raw, ctx);
    }
    let clean_so_far = ctx.diags.is_empty();

    let mut model = Model {
        name: raw.cube.value.clone(),
        description: raw.description.clone(),
        file: ctx.file.to_string(),
        sources,
        facts,
        dimensions: dimensions?,
        measures: measures.unwrap_or_default(),
        aggregates: Aggregates::default(),
        privacy: None,
    };
    // Level references resolve even when other sections have errors, so they are reported in
    // the same run; the cross-checks below only make sense on an otherwise clean definition.
    model.aggregates = aggregates(raw.aggregates.as_ref(), &model, ctx);
    if clean_so_far {
        metric_buckets_vary(&model, &raw, ctx);
        model.privacy = privacy(raw.privacy.as_ref(), &model, ctx);
    }
    ctx.diags.is_empty().then_some(model)
}

fn sources(raw: &SpannedMap<RawSource>, ctx: &mut Ctx<'_>, base_dir: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    for (name, src) in &raw.0 {
        let path_key = format!("sources.{}.path", name.value);
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
                    ctx.invalid(
                        pos(&src.path),
                        &path_key,
                        format!(
                            "cannot tell the format of '{}' from its name; add `format: parquet` or `format: csv`",
                            src.path.value
                        ),
                    );
                    None
                }
            }
        };
        if let Some(format) = format {
            out.push(Source {
                name: name.value.clone(),
                path: base_dir.join(&src.path.value),
                format,
                pos: pos(&src.path),
            });
        }
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
