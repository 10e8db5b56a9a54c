//! Validation: [`RawCube`] -> [`Model`], or every problem found, each with its line, column and
//! key path. Names are resolved in two passes (all names first, then references) so forward
//! references work and every unknown name gets a "did you mean".

use std::path::Path;

use serde_saphyr::Spanned;

use crate::diag::{DefError, Diagnostic, Pos, suggest};
use crate::expr::{self, ParsedExpr};
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

fn pos<T>(s: &Spanned<T>) -> Pos {
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
    };
    // Level references resolve even when other sections have errors, so they are reported in
    // the same run; the cross-checks below only make sense on an otherwise clean definition.
    model.aggregates = aggregates(raw.aggregates.as_ref(), &model, ctx);
    if clean_so_far {
        metric_buckets_vary(&model, &raw, ctx);
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

fn dimensions(
    raw: &RawCube,
    ctx: &mut Ctx<'_>,
    sources: &[&str],
    measures: &[&str],
) -> Option<Vec<Dimension>> {
    let dim_names: Vec<&str> = raw
        .dimensions
        .0
        .iter()
        .map(|(k, _)| k.value.as_str())
        .collect();
    let time_dims: Vec<&Spanned<String>> = raw
        .dimensions
        .0
        .iter()
        .filter(|(_, d)| d.kind.as_ref().is_some_and(|k| k.value == "time"))
        .map(|(k, _)| k)
        .collect();
    for extra in time_dims.iter().skip(1) {
        ctx.invalid(
            pos(extra),
            format!("dimensions.{}.type", extra.value),
            format!(
                "a cube has one time dimension; '{}' is already it",
                time_dims[0].value
            ),
        );
    }
    let time_levels: Vec<(String, TimeGrain)> = time_dims
        .first()
        .and_then(|k| raw.dimensions.0.iter().find(|(n, _)| n.value == k.value))
        .and_then(|(n, d)| {
            d.hierarchy.as_ref().map(|h| {
                h.value
                    .iter()
                    .filter_map(|l| {
                        TimeGrain::parse(&l.value).map(|g| (format!("{}.{}", n.value, l.value), g))
                    })
                    .collect()
            })
        })
        .unwrap_or_default();

    let mut out = Vec::new();
    let mut ok = true;
    for (di, (name, dim)) in raw.dimensions.0.iter().enumerate() {
        let base = format!("dimensions.{}", name.value);
        let is_time = match &dim.kind {
            Some(k) if k.value == "time" => true,
            Some(k) => {
                ctx.invalid(
                    pos(k),
                    format!("{base}.type"),
                    format!("unknown dimension type '{}' (the only type is `time`; leave it out for table dimensions)", k.value),
                );
                ok = false;
                continue;
            }
            None => false,
        };
        let built = if is_time {
            time_dimension(name, dim, ctx, &base)
        } else {
            table_dimension(
                di,
                name,
                dim,
                ctx,
                &base,
                sources,
                &dim_names,
                measures,
                &time_levels,
                raw,
            )
        };
        match built {
            Some(d) => out.push(d),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn time_dimension(
    name: &Spanned<String>,
    dim: &RawDimension,
    ctx: &mut Ctx<'_>,
    base: &str,
) -> Option<Dimension> {
    for (field, present) in [
        ("table", dim.table.as_ref().map(pos)),
        ("key", dim.key.as_ref().map(pos)),
        ("via", dim.via.as_ref().map(pos)),
    ] {
        if let Some(p) = present {
            ctx.invalid(
                p,
                format!("{base}.{field}"),
                format!("a time dimension has no `{field}`: its column is each fact's `time`"),
            );
        }
    }
    if let Some(levels) = &dim.levels
        && let Some((k, _)) = levels.0.first()
    {
        ctx.invalid(
            pos(k),
            format!("{base}.levels"),
            "a time dimension lists its grains in `hierarchy` (year, quarter, month, day), not `levels`",
        );
    }
    let Some(h) = &dim.hierarchy else {
        ctx.invalid(
            pos(name),
            base,
            "a time dimension needs `hierarchy: [year, quarter, month]` (any of year, quarter, month, day)",
        );
        return None;
    };
    let mut levels = Vec::new();
    let mut hierarchy_pos = Vec::new();
    let mut prev: Option<TimeGrain> = None;
    for (i, l) in h.value.iter().enumerate() {
        let path = format!("{base}.hierarchy[{i}]");
        let Some(g) = TimeGrain::parse(&l.value) else {
            ctx.unknown(
                pos(l),
                path,
                "level",
                &l.value,
                Some(format!(
                    "time dimension '{}' (time levels: year, quarter, month, day)",
                    name.value
                )),
                TimeGrain::ALL.iter().map(|g| g.name()),
            );
            continue;
        };
        if let Some(p) = prev
            && g <= p
        {
            ctx.invalid(
                pos(l),
                path,
                format!(
                    "time levels go from coarse to fine: '{}' cannot follow '{}'",
                    g.name(),
                    p.name()
                ),
            );
            continue;
        }
        prev = Some(g);
        levels.push(Level {
            name: g.name().to_string(),
            kind: LevelKind::Time(g),
            pos: pos(l),
        });
        hierarchy_pos.push(pos(l));
    }
    Some(Dimension {
        name: name.value.clone(),
        kind: DimensionKind::Time,
        hierarchy: (0..levels.len()).collect(),
        levels,
        hierarchy_pos,
        pos: pos(name),
    })
}

#[allow(clippy::too_many_arguments)]
fn table_dimension(
    di: usize,
    name: &Spanned<String>,
    dim: &RawDimension,
    ctx: &mut Ctx<'_>,
    base: &str,
    sources: &[&str],
    dim_names: &[&str],
    measures: &[&str],
    time_levels: &[(String, TimeGrain)],
    raw: &RawCube,
) -> Option<Dimension> {
    let (Some(table), Some(key)) = (&dim.table, &dim.key) else {
        ctx.invalid(
            pos(name),
            base,
            format!(
                "dimension '{}' needs `table` and `key` (or `type: time`)",
                name.value
            ),
        );
        return None;
    };
    if !sources.contains(&table.value.as_str()) {
        ctx.unknown(
            pos(table),
            format!("{base}.table"),
            "table",
            &table.value,
            Some("sources".into()),
            sources.iter().copied(),
        );
    }
    let via = dim.via.as_ref().and_then(|v| {
        let path = format!("{base}.via");
        match dim_names.iter().position(|n| *n == v.value) {
            Some(i) if i == di => {
                ctx.invalid(pos(v), path, "a dimension cannot be reached via itself");
                None
            }
            Some(i) => {
                // The chain of `via` must end at a dimension the facts carry, not loop.
                let mut seen = vec![di, i];
                let mut cur = i;
                while let Some(next) = raw.dimensions.0[cur]
                    .1
                    .via
                    .as_ref()
                    .and_then(|n| dim_names.iter().position(|d| *d == n.value))
                {
                    if seen.contains(&next) {
                        ctx.invalid(
                            pos(v),
                            path.clone(),
                            format!("`via` goes round in a circle through '{}'", dim_names[next]),
                        );
                        return None;
                    }
                    seen.push(next);
                    cur = next;
                }
                Some(i)
            }
            None => {
                ctx.unknown(
                    pos(v),
                    path,
                    "dimension",
                    &v.value,
                    None,
                    dim_names.iter().copied(),
                );
                None
            }
        }
    });

    let mut lookups = Vec::new();
    if let Some(ls) = &dim.lookups {
        for (t, l) in &ls.0 {
            if !sources.contains(&t.value.as_str()) {
                ctx.unknown(
                    pos(t),
                    format!("{base}.lookups"),
                    "table",
                    &t.value,
                    Some("sources".into()),
                    sources.iter().copied(),
                );
            }
            lookups.push(Lookup {
                table: t.value.clone(),
                key: ColumnRef {
                    table: table.value.clone(),
                    column: l.key.value.clone(),
                    pos: pos(&l.key),
                    path: format!("{base}.lookups.{}.key", t.value),
                },
            });
        }
    }
    let lookup_names: Vec<&str> = lookups.iter().map(|l| l.table.as_str()).collect();

    let column_ref = |col: &Spanned<String>, path: String, ctx: &mut Ctx<'_>| -> ColumnRef {
        match col.value.split_once('.') {
            Some((t, c)) => {
                if !lookup_names.contains(&t) && t != table.value {
                    ctx.unknown(
                        pos(col),
                        path.clone(),
                        "table",
                        t,
                        Some(format!("the lookups of dimension '{}'", name.value)),
                        lookup_names.iter().copied(),
                    );
                }
                ColumnRef {
                    table: t.to_string(),
                    column: c.to_string(),
                    pos: pos(col),
                    path,
                }
            }
            None => ColumnRef {
                table: table.value.clone(),
                column: col.value.clone(),
                pos: pos(col),
                path,
            },
        }
    };

    // Levels: a map of definitions, or (shorthand) the hierarchy's names as columns.
    let mut levels = Vec::new();
    match &dim.levels {
        Some(map) => {
            for (lname, level) in &map.0 {
                let lbase = format!("{base}.levels.{}", lname.value);
                let kind = match (&level.column, &level.bucket) {
                    (Some(c), None) => Some(LevelKind::Column(column_ref(
                        c,
                        format!("{lbase}.column"),
                        ctx,
                    ))),
                    (None, Some(b)) => {
                        bucket(b, &lbase, ctx, name, measures, time_levels, &column_ref)
                            .map(LevelKind::Bucket)
                    }
                    _ => {
                        ctx.invalid(
                            pos(lname),
                            &lbase,
                            "a level needs exactly one of `column` or `bucket`",
                        );
                        None
                    }
                };
                if let Some(kind) = kind {
                    levels.push(Level {
                        name: lname.value.clone(),
                        kind,
                        pos: pos(lname),
                    });
                }
            }
        }
        None => {
            if let Some(h) = &dim.hierarchy {
                for (i, l) in h.value.iter().enumerate() {
                    levels.push(Level {
                        name: l.value.clone(),
                        kind: LevelKind::Column(column_ref(
                            l,
                            format!("{base}.hierarchy[{i}]"),
                            ctx,
                        )),
                        pos: pos(l),
                    });
                }
            } else {
                ctx.invalid(
                    pos(name),
                    base,
                    "a dimension needs `levels` or a `hierarchy`",
                );
            }
        }
    }

    let mut hierarchy: Vec<usize> = Vec::new();
    let mut hierarchy_pos: Vec<Pos> = Vec::new();
    if let Some(h) = &dim.hierarchy {
        let level_names: Vec<String> = match &dim.levels {
            Some(map) => map.0.iter().map(|(k, _)| k.value.clone()).collect(),
            None => h.value.iter().map(|l| l.value.clone()).collect(),
        };
        for (i, l) in h.value.iter().enumerate() {
            let path = format!("{base}.hierarchy[{i}]");
            match level_names.iter().position(|n| *n == l.value) {
                Some(li) if hierarchy.contains(&li) => ctx.report(
                    pos(l),
                    path,
                    DefError::Duplicate {
                        what: "level in hierarchy",
                        name: l.value.clone(),
                        first_line: hierarchy_pos
                            [hierarchy.iter().position(|x| *x == li).unwrap_or(0)]
                        .line,
                    },
                ),
                Some(li) => {
                    hierarchy.push(li);
                    hierarchy_pos.push(pos(l));
                }
                None => ctx.unknown(
                    pos(l),
                    path,
                    "level",
                    &l.value,
                    Some(format!("dimension '{}'", name.value)),
                    level_names.iter().map(String::as_str),
                ),
            }
        }
        for (i, &li) in hierarchy.iter().enumerate() {
            if let Some(Level {
                kind: LevelKind::Bucket(b),
                ..
            }) = levels.get(li)
                && matches!(b.source, BucketSource::Metric { .. })
            {
                ctx.invalid(
                    hierarchy_pos[i],
                    format!("{base}.hierarchy[{i}]"),
                    "a metric bucket changes per period, so it cannot be a step of a hierarchy",
                );
            }
        }
    }

    Some(Dimension {
        name: name.value.clone(),
        kind: DimensionKind::Table {
            table: table.value.clone(),
            key: ColumnRef {
                table: table.value.clone(),
                column: key.value.clone(),
                pos: pos(key),
                path: format!("{base}.key"),
            },
            via,
            lookups,
        },
        levels,
        hierarchy,
        hierarchy_pos,
        pos: pos(name),
    })
}

#[allow(clippy::too_many_arguments)]
fn bucket(
    b: &Spanned<RawBucket>,
    lbase: &str,
    ctx: &mut Ctx<'_>,
    dim_name: &Spanned<String>,
    measures: &[&str],
    time_levels: &[(String, TimeGrain)],
    column_ref: &dyn Fn(&Spanned<String>, String, &mut Ctx<'_>) -> ColumnRef,
) -> Option<Bucket> {
    let b_pos = pos(b);
    let b = &b.value;
    let base = format!("{lbase}.bucket");
    let before = ctx.diags.len();
    let source = match (&b.column, &b.metric) {
        (Some(c), None) => {
            if let Some(per) = &b.per {
                ctx.invalid(
                    pos(per),
                    format!("{base}.per"),
                    "`per` belongs to metric buckets; a column bucket is per row of the dimension table",
                );
            }
            Some(BucketSource::Column(column_ref(
                c,
                format!("{base}.column"),
                ctx,
            )))
        }
        (None, Some(m)) => {
            let measure = measures.iter().position(|n| *n == m.value);
            if measure.is_none() {
                ctx.unknown(
                    pos(m),
                    format!("{base}.metric"),
                    "measure",
                    &m.value,
                    None,
                    measures.iter().copied(),
                );
            }
            let mut period = None;
            match &b.per {
                None => ctx.invalid(
                    b_pos,
                    &base,
                    format!(
                        "a metric bucket needs `per`: the entity and period it is computed for, e.g. `per: [{}, time.month]`",
                        dim_name.value
                    ),
                ),
                Some(per) => {
                    let mut has_entity = false;
                    for (i, p) in per.value.iter().enumerate() {
                        let path = format!("{base}.per[{i}]");
                        if p.value == dim_name.value {
                            has_entity = true;
                        } else if let Some((_, g)) = time_levels.iter().find(|(n, _)| *n == p.value) {
                            if period.is_some() {
                                ctx.invalid(pos(p), path, "a metric bucket has at most one period");
                            }
                            period = Some(*g);
                        } else {
                            let mut candidates: Vec<&str> = time_levels.iter().map(|(n, _)| n.as_str()).collect();
                            candidates.push(&dim_name.value);
                            ctx.unknown(
                                pos(p),
                                path,
                                "level",
                                &p.value,
                                Some(format!(
                                    "`per` (use '{}' and at most one time level)",
                                    dim_name.value
                                )),
                                candidates,
                            );
                        }
                    }
                    if !has_entity {
                        ctx.invalid(
                            pos(per),
                            format!("{base}.per"),
                            format!(
                                "`per` must name the entity '{}' whose metric decides the bucket",
                                dim_name.value
                            ),
                        );
                    }
                }
            }
            measure.map(|measure| BucketSource::Metric { measure, period })
        }
        _ => {
            ctx.invalid(
                b_pos,
                &base,
                "a bucket needs exactly one of `column` or `metric`",
            );
            None
        }
    };

    // Edges: exact decimals, strictly ascending.
    let mut edges = Vec::new();
    if b.edges.value.is_empty() {
        ctx.report(pos(&b.edges), format!("{base}.edges"), DefError::NoEdges);
    }
    for (i, e) in b.edges.value.iter().enumerate() {
        let path = format!("{base}.edges[{i}]");
        match Decimal::parse(&e.value.0) {
            None => ctx.invalid(
                pos(e),
                path,
                format!(
                    "edge '{}' is not a number with at most {} decimals",
                    e.value.0,
                    Decimal::SCALE
                ),
            ),
            Some(v) => {
                if let Some(prev) = edges.last()
                    && v <= *prev
                {
                    ctx.report(
                        pos(e),
                        format!("{base}.edges"),
                        DefError::EdgesNotAscending {
                            previous: prev.to_string(),
                            next: v.to_string(),
                        },
                    );
                }
                edges.push(v);
            }
        }
    }

    let labels = match &b.labels {
        Some(labels) => {
            let n = b.edges.value.len() + 1;
            if labels.value.len() != n && !b.edges.value.is_empty() {
                ctx.report(
                    pos(labels),
                    format!("{base}.labels"),
                    DefError::LabelCount {
                        labels: labels.value.len(),
                        edges: b.edges.value.len(),
                        buckets: n,
                    },
                );
            }
            for (i, l) in labels.value.iter().enumerate() {
                if labels.value[..i].iter().any(|p| p.value == l.value) || l.value == UNKNOWN_MEMBER
                {
                    ctx.report(
                        pos(l),
                        format!("{base}.labels[{i}]"),
                        DefError::DuplicateLabel {
                            label: l.value.clone(),
                        },
                    );
                }
            }
            labels.value.iter().map(|l| l.value.clone()).collect()
        }
        None => default_labels(&edges),
    };
    let source = source?;
    (ctx.diags.len() == before).then_some(Bucket {
        source,
        edges,
        labels,
    })
}

/// `<10k`, `10k-50k`, …, `1M+`: edges in a compact form, first and last bucket open.
pub fn default_labels(edges: &[Decimal]) -> Vec<String> {
    let Some((first, last)) = edges.first().zip(edges.last()) else {
        return vec!["all".into()];
    };
    let mut out = vec![format!("<{}", compact(*first))];
    out.extend(
        edges
            .windows(2)
            .map(|w| format!("{}-{}", compact(w[0]), compact(w[1]))),
    );
    out.push(format!("{}+", compact(*last)));
    out
}

fn compact(d: Decimal) -> String {
    let unit = 10i128.pow(Decimal::SCALE);
    for (div, suffix) in [(1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")] {
        if d.0 != 0 && d.0 % (div * unit) == 0 {
            return format!("{}{suffix}", d.0 / (div * unit));
        }
    }
    d.to_string()
}

fn measures(
    raw: &RawCube,
    ctx: &mut Ctx<'_>,
    facts: &[&str],
    measure_names: &[&str],
) -> Option<Vec<Measure>> {
    let mut out = Vec::new();
    let before = ctx.diags.len();
    for (name, m) in &raw.measures.0 {
        let base = format!("measures.{}", name.value);
        let format = m.format.as_ref().and_then(|f| {
            let parsed = Format::parse(&f.value);
            if parsed.is_none() {
                ctx.invalid(
                    pos(f),
                    format!("{base}.format"),
                    format!(
                        "unknown format '{}' (money, integer, number, percent)",
                        f.value
                    ),
                );
            }
            parsed
        });
        let kind = match (&m.expr, &m.agg) {
            (Some(e), None) => {
                for (field, p) in [
                    ("fact", m.fact.as_ref().map(pos)),
                    ("column", m.column.as_ref().map(pos)),
                    ("over_time", m.over_time.as_ref().map(pos)),
                ] {
                    if let Some(p) = p {
                        ctx.invalid(
                            p,
                            format!("{base}.{field}"),
                            format!("a derived measure (`expr`) has no `{field}`: it is computed from other measures"),
                        );
                    }
                }
                derived(e, &base, ctx, measure_names).map(MeasureKind::Derived)
            }
            (None, Some(agg)) => aggregate(m, agg, &base, ctx, facts),
            (Some(e), Some(_)) => {
                ctx.invalid(
                    pos(e),
                    &base,
                    "a measure has either `agg` (with `fact`) or `expr`, not both",
                );
                None
            }
            (None, None) => {
                ctx.invalid(
                    pos(name),
                    &base,
                    "a measure needs `agg` (sum, count, min, max, distinct) or `expr`",
                );
                None
            }
        };
        if let Some(kind) = kind {
            out.push(Measure {
                name: name.value.clone(),
                kind,
                format,
                description: m.description.clone(),
                pos: pos(name),
            });
        }
    }
    (ctx.diags.len() == before).then_some(out)
}

fn aggregate(
    m: &RawMeasure,
    agg: &Spanned<String>,
    base: &str,
    ctx: &mut Ctx<'_>,
    facts: &[&str],
) -> Option<MeasureKind> {
    let parsed = Agg::parse(&agg.value);
    if parsed.is_none() {
        ctx.report(
            pos(agg),
            format!("{base}.agg"),
            DefError::UnsupportedAggregation {
                agg: agg.value.clone(),
            },
        );
    }
    let fact = match &m.fact {
        Some(f) => {
            let i = facts.iter().position(|n| *n == f.value);
            if i.is_none() {
                ctx.unknown(
                    pos(f),
                    format!("{base}.fact"),
                    "fact",
                    &f.value,
                    Some("facts".into()),
                    facts.iter().copied(),
                );
            }
            i
        }
        None if facts.len() == 1 => Some(0),
        None => {
            ctx.invalid(
                pos(agg),
                base,
                format!(
                    "which fact table? add `fact:` (one of: {})",
                    facts.join(", ")
                ),
            );
            None
        }
    };
    let over_time = match &m.over_time {
        None => OverTime::Additive,
        Some(o) => match o.value.as_str() {
            "last" if parsed == Some(Agg::Distinct) => {
                ctx.invalid(
                    pos(o),
                    format!("{base}.over_time"),
                    "`over_time: last` applies to sum, count, min and max, not to distinct counts",
                );
                OverTime::Additive
            }
            "last" => OverTime::Last,
            "sum" => OverTime::Additive,
            other => {
                ctx.invalid(
                    pos(o),
                    format!("{base}.over_time"),
                    format!(
                        "unknown over_time '{other}' (use `last` for balances, or leave it out)"
                    ),
                );
                OverTime::Additive
            }
        },
    };
    let agg = parsed?;
    if agg != Agg::Count && m.column.is_none() {
        ctx.report(
            pos(agg_pos(m)),
            base,
            DefError::MissingColumn {
                agg: agg_name(agg).into(),
            },
        );
        return None;
    }
    let fact = fact?;
    Some(MeasureKind::Aggregate {
        fact,
        agg,
        column: m.column.as_ref().map(|c| ColumnRef {
            table: facts[fact].to_string(),
            column: c.value.clone(),
            pos: pos(c),
            path: format!("{base}.column"),
        }),
        over_time,
    })
}

fn agg_pos(m: &RawMeasure) -> &Spanned<String> {
    m.agg.as_ref().expect("called only for aggregate measures")
}

fn agg_name(a: Agg) -> &'static str {
    match a {
        Agg::Sum => "sum",
        Agg::Count => "count",
        Agg::Min => "min",
        Agg::Max => "max",
        Agg::Distinct => "distinct",
    }
}

/// The position of byte `offset` of a string scalar, accounting for an opening quote.
fn offset_pos(ctx: &Ctx<'_>, at: Pos, offset: usize) -> Pos {
    let quoted = ctx
        .text
        .lines()
        .nth(at.line.saturating_sub(1) as usize)
        .and_then(|line| line.chars().nth(at.column.saturating_sub(1) as usize))
        .is_some_and(|c| c == '"' || c == '\'');
    Pos::new(at.line, at.column + offset as u64 + u64::from(quoted))
}

fn derived(e: &Spanned<String>, base: &str, ctx: &mut Ctx<'_>, measures: &[&str]) -> Option<Expr> {
    let path = format!("{base}.expr");
    let parsed = match expr::parse(&e.value) {
        Ok(p) => p,
        Err(err) => {
            let p = offset_pos(ctx, pos(e), err.offset);
            ctx.report(
                p,
                path,
                DefError::Expression {
                    message: err.message,
                },
            );
            return None;
        }
    };
    fn resolve(
        p: &ParsedExpr,
        ctx: &mut Ctx<'_>,
        at: Pos,
        path: &str,
        measures: &[&str],
    ) -> Option<Expr> {
        Some(match p {
            ParsedExpr::Name(n, off) => match measures.iter().position(|m| m == n) {
                Some(i) => Expr::Measure(i),
                None => {
                    let p = offset_pos(ctx, at, *off);
                    ctx.unknown(p, path, "measure", n, None, measures.iter().copied());
                    return None;
                }
            },
            ParsedExpr::Number(v) => Expr::Number(*v),
            ParsedExpr::Neg(inner) => Expr::Neg(Box::new(resolve(inner, ctx, at, path, measures)?)),
            ParsedExpr::Binary(op, a, b) => {
                let a = resolve(a, ctx, at, path, measures);
                let b = resolve(b, ctx, at, path, measures);
                Expr::Binary(*op, Box::new(a?), Box::new(b?))
            }
        })
    }
    resolve(&parsed, ctx, pos(e), &path, measures)
}

/// Reports every derived measure that reaches itself, with the cycle it is on: the user may
/// break the cycle at any of them.
fn derived_cycles(measures: &[Measure], raw: &RawCube, ctx: &mut Ctx<'_>) {
    let deps: Vec<Vec<usize>> = measures
        .iter()
        .map(|m| {
            let mut v = Vec::new();
            if let MeasureKind::Derived(e) = &m.kind {
                e.measures(&mut v);
            }
            v
        })
        .collect();
    for start in 0..measures.len() {
        if let Some(cycle) = path_back_to(start, &deps) {
            let names = cycle.iter().map(|&i| measures[i].name.clone()).collect();
            let expr_pos = raw.measures.0[start]
                .1
                .expr
                .as_ref()
                .map_or(measures[start].pos, pos);
            ctx.report(
                expr_pos,
                format!("measures.{}.expr", measures[start].name),
                DefError::DerivedCycle {
                    measure: measures[start].name.clone(),
                    cycle: names,
                },
            );
        }
    }
}

/// A path `start -> ... -> start` through `deps`, if there is one (depth-first).
fn path_back_to(start: usize, deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut seen = vec![false; deps.len()];
    let mut stack = vec![vec![start]];
    while let Some(path) = stack.pop() {
        let at = *path.last()?;
        for &next in &deps[at] {
            let mut p = path.clone();
            p.push(next);
            if next == start {
                return Some(p);
            }
            if !seen[next] {
                seen[next] = true;
                stack.push(p);
            }
        }
    }
    None
}

/// A metric bucket's measure must be one the entity's facts carry (a customer's deposit total
/// needs balances that vary by customer).
fn metric_buckets_vary(model: &Model, raw: &RawCube, ctx: &mut Ctx<'_>) {
    for (di, d) in model.dimensions.iter().enumerate() {
        for (li, l) in d.levels.iter().enumerate() {
            if let LevelKind::Bucket(Bucket {
                source: BucketSource::Metric { measure, .. },
                ..
            }) = &l.kind
            {
                let m = &model.measures[*measure];
                let ok = matches!(m.kind, MeasureKind::Aggregate { .. })
                    && model.measure_varies_by(*measure, LevelRef { dim: di, level: li });
                if !ok {
                    let metric_pos = raw.dimensions.0[di]
                        .1
                        .levels
                        .as_ref()
                        .and_then(|ls| ls.0.iter().find(|(k, _)| k.value == l.name))
                        .and_then(|(_, lv)| lv.bucket.as_ref())
                        .and_then(|b| b.value.metric.as_ref())
                        .map_or(l.pos, pos);
                    ctx.invalid(
                        metric_pos,
                        format!("dimensions.{}.levels.{}.bucket.metric", d.name, l.name),
                        format!(
                            "metric '{}' must be an aggregate measure whose fact varies by '{}'",
                            m.name, d.name
                        ),
                    );
                }
            }
        }
    }
}

fn aggregates(raw: Option<&RawAggregates>, model: &Model, ctx: &mut Ctx<'_>) -> Aggregates {
    let Some(raw) = raw else {
        return Aggregates::default();
    };
    let mode = match raw.mode.value.as_str() {
        "auto" => AggMode::Auto,
        "explicit" => AggMode::Explicit,
        "groups" => AggMode::Groups,
        other => {
            ctx.invalid(
                pos(&raw.mode),
                "aggregates.mode",
                format!("unknown mode '{other}' (auto, explicit, groups)"),
            );
            AggMode::Auto
        }
    };
    let budget_mb = match &raw.budget_mb {
        Some(b) if b.value == 0 => {
            ctx.invalid(
                pos(b),
                "aggregates.budget_mb",
                "the budget must be at least 1 MB",
            );
            1
        }
        Some(b) => b.value,
        None => Aggregates::default().budget_mb,
    };
    let all_levels = model.level_names();
    let resolve = |l: &Spanned<String>, path: String, ctx: &mut Ctx<'_>| -> Option<LevelRef> {
        let r = model.level(&l.value);
        if r.is_none() {
            ctx.unknown(
                pos(l),
                path,
                "level",
                &l.value,
                None,
                all_levels.iter().map(String::as_str),
            );
        }
        r
    };
    let mut cuboids = Vec::new();
    for (i, c) in raw.cuboids.iter().enumerate() {
        let levels: Vec<LevelRef> = c
            .value
            .iter()
            .enumerate()
            .filter_map(|(j, l)| resolve(l, format!("aggregates.cuboids[{i}][{j}]"), ctx))
            .collect();
        cuboids.push(levels);
    }
    if mode == AggMode::Explicit && raw.cuboids.is_empty() {
        ctx.invalid(
            pos(&raw.mode),
            "aggregates.mode",
            "`mode: explicit` needs a `cuboids:` list",
        );
    }
    if mode == AggMode::Groups && raw.groups.is_empty() {
        ctx.invalid(
            pos(&raw.mode),
            "aggregates.mode",
            "`mode: groups` needs a `groups:` list",
        );
    }
    let mut groups = Vec::new();
    for (gi, g) in raw.groups.iter().enumerate() {
        let base = format!("aggregates.groups[{gi}]");
        let includes: Vec<LevelRef> = g
            .includes
            .value
            .iter()
            .enumerate()
            .filter_map(|(j, l)| resolve(l, format!("{base}.includes[{j}]"), ctx))
            .collect();
        let subset = |list: &[Spanned<String>], path: String, ctx: &mut Ctx<'_>| -> Vec<LevelRef> {
            let mut out = Vec::new();
            for (j, l) in list.iter().enumerate() {
                if let Some(r) = resolve(l, format!("{path}[{j}]"), ctx) {
                    if !includes.contains(&r) {
                        ctx.invalid(
                            pos(l),
                            format!("{path}[{j}]"),
                            format!("'{}' is not in this group's `includes`", l.value),
                        );
                    }
                    out.push(r);
                }
            }
            out
        };
        let mandatory = subset(&g.mandatory, format!("{base}.mandatory"), ctx);
        let hierarchies = g
            .hierarchies
            .iter()
            .enumerate()
            .map(|(k, h)| subset(h, format!("{base}.hierarchies[{k}]"), ctx))
            .collect();
        let joint = g
            .joint
            .iter()
            .enumerate()
            .map(|(k, h)| subset(h, format!("{base}.joint[{k}]"), ctx))
            .collect();
        groups.push(AggGroup {
            includes,
            mandatory,
            hierarchies,
            joint,
        });
    }
    Aggregates {
        mode,
        budget_mb,
        cuboids,
        groups,
    }
}
