//! Dimensions: table and time dimensions, levels, hierarchies, buckets.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::{DefError, Pos};
use crate::limits::MAX_BUCKET_EDGES;
use crate::model::*;
use crate::raw::*;

pub(super) fn dimensions(
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

#[expect(
    clippy::too_many_arguments,
    reason = "the resolution context of one dimension; a struct would only rename it"
)]
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

    // Cuts: exactly one of `edges` (fixed) or `quantiles` (by rank, metric buckets only), exact
    // decimals, strictly ascending; as many as a bucket may have (labels too).
    let (field, what, cuts) = match (&b.edges, &b.quantiles) {
        (Some(e), None) => ("edges", "edge", e),
        (None, Some(q)) => {
            if b.column.is_some() {
                ctx.invalid(
                    pos(q),
                    format!("{base}.quantiles"),
                    "`quantiles` rank entities by a metric within a period; a column bucket needs `edges`",
                );
            }
            ("quantiles", "quantile", q)
        }
        (Some(_), Some(q)) => {
            ctx.invalid(
                pos(q),
                format!("{base}.quantiles"),
                "a bucket has `edges` (fixed cuts) or `quantiles` (cuts by rank), not both",
            );
            return None;
        }
        (None, None) => {
            ctx.invalid(
                b_pos,
                &base,
                "a bucket needs `edges` (fixed cuts, e.g. `edges: [1000, 10000]`) or, over a metric, `quantiles` (cuts by rank, e.g. `quantiles: [0.8, 0.95]`)",
            );
            return None;
        }
    };
    let too_many = if cuts.value.len() > MAX_BUCKET_EDGES {
        Some((
            pos(cuts),
            field,
            "bucket edges",
            cuts.value.len(),
            MAX_BUCKET_EDGES,
        ))
    } else {
        b.labels
            .as_ref()
            .filter(|l| l.value.len() > MAX_BUCKET_EDGES + 1)
            .map(|l| {
                (
                    pos(l),
                    "labels",
                    "bucket labels",
                    l.value.len(),
                    MAX_BUCKET_EDGES + 1,
                )
            })
    };
    if let Some((at, field, what, found, limit)) = too_many {
        ctx.report(
            at,
            format!("{base}.{field}"),
            DefError::TooMany {
                what,
                found: found as u64,
                limit: limit as u64,
            },
        );
        return None;
    }
    let mut values: Vec<Decimal> = Vec::new();
    if cuts.value.is_empty() {
        ctx.report(
            pos(cuts),
            format!("{base}.{field}"),
            DefError::NoEdges { what },
        );
    }
    let one = Decimal(10i128.pow(Decimal::SCALE));
    for (i, e) in cuts.value.iter().enumerate() {
        let path = format!("{base}.{field}[{i}]");
        match Decimal::parse(&e.value.0) {
            None => ctx.invalid(
                pos(e),
                path,
                format!(
                    "{what} '{}' is not a number with at most {} decimals",
                    e.value.0,
                    Decimal::SCALE
                ),
            ),
            Some(v) => {
                if field == "quantiles" && (v.0 <= 0 || v >= one) {
                    ctx.invalid(
                        pos(e),
                        path,
                        format!(
                            "quantile {v} must lie strictly between 0 and 1 (0.8: the top 20% are above it)"
                        ),
                    );
                }
                if let Some(prev) = values.last()
                    && v <= *prev
                {
                    ctx.report(
                        pos(e),
                        format!("{base}.{field}"),
                        DefError::EdgesNotAscending {
                            what,
                            previous: prev.to_string(),
                            next: v.to_string(),
                        },
                    );
                }
                values.push(v);
            }
        }
    }

    let labels = match &b.labels {
        Some(labels) => {
            let n = cuts.value.len() + 1;
            if labels.value.len() != n && !cuts.value.is_empty() {
                ctx.report(
                    pos(labels),
                    format!("{base}.labels"),
                    DefError::LabelCount {
                        labels: labels.value.len(),
                        cuts: cuts.value.len(),
                        what,
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
        None if field == "quantiles" => quantile_labels(&values),
        None => default_labels(&values),
    };
    let source = source?;
    let cuts = if field == "quantiles" {
        Cuts::Quantiles(values)
    } else {
        Cuts::Edges(values)
    };
    (ctx.diags.len() == before).then_some(Bucket {
        source,
        cuts,
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

/// `<p80`, `p80-p95`, `p95+`: quantiles as percentiles, first and last bucket open.
fn quantile_labels(quantiles: &[Decimal]) -> Vec<String> {
    let p = |q: &Decimal| format!("p{}", Decimal(q.0 * 100));
    let Some((first, last)) = quantiles.first().zip(quantiles.last()) else {
        return vec!["all".into()];
    };
    let mut out = vec![format!("<{}", p(first))];
    out.extend(
        quantiles
            .windows(2)
            .map(|w| format!("{}-{}", p(&w[0]), p(&w[1]))),
    );
    out.push(format!("{}+", p(last)));
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
