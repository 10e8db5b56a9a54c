//! Allocations: fact tables the build computes by spreading a pool (a cost per branch and
//! month) over the cells of a driver fact. Each becomes a [`Fact`] after the facts read from
//! sources, so measures name it like any other fact.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::DefError;
use crate::model::*;
use crate::raw::*;

/// The allocations' facts (in order, to append to the model's facts) and the allocations.
/// Every allocation gets a fact, valid or not, so fact indices stay those the measures were
/// resolved against; on any problem the definition is rejected anyway.
pub(super) fn allocations(
    raw: &RawCube,
    ctx: &mut Ctx<'_>,
    sources: &[&str],
    facts: &[Fact],
    dimensions: &[Dimension],
    measures: &[Measure],
) -> (Vec<Fact>, Vec<Allocation>) {
    let mut out_facts = Vec::new();
    let mut out = Vec::new();
    let dim_names: Vec<&str> = dimensions.iter().map(|d| d.name.as_str()).collect();
    let fact_names: Vec<&str> = facts.iter().map(|f| f.name.as_str()).collect();
    let measure_names: Vec<&str> = measures.iter().map(|m| m.name.as_str()).collect();
    let time_dim = dimensions
        .iter()
        .position(|d| matches!(d.kind, DimensionKind::Time));
    for (i, (name, a)) in raw.allocations.0.iter().enumerate() {
        let base = format!("allocations.{}", name.value);
        let fact_id = facts.len() + i;
        let mut ok = true;
        if sources.contains(&name.value.as_str()) || fact_names.contains(&name.value.as_str()) {
            ctx.invalid(
                pos(name),
                &base,
                format!(
                    "'{}' is already a source or fact table; an allocation's name is the name of the fact it creates",
                    name.value
                ),
            );
            ok = false;
        }
        if time_dim.is_none() {
            ctx.invalid(
                pos(name),
                &base,
                "an allocation spreads each period's pool over that period's cells; the cube needs a time dimension (`type: time`)",
            );
            ok = false;
        }

        // The driver: which fact's cells receive, and their weights.
        let d = &a.driver.value;
        let dpath = format!("{base}.driver");
        let (driver, from) = match (&d.measure, &d.equal) {
            (Some(m), None) => match measure_names.iter().position(|n| *n == m.value) {
                None => {
                    ctx.unknown(
                        pos(m),
                        format!("{dpath}.measure"),
                        "measure",
                        &m.value,
                        None,
                        measure_names.iter().copied(),
                    );
                    (None, None)
                }
                Some(mi) => match &measures[mi].kind {
                    MeasureKind::Aggregate {
                        fact,
                        agg: Agg::Sum | Agg::Count,
                        ..
                    } if *fact < facts.len() => (Some(Driver::Measure(mi)), Some(*fact)),
                    MeasureKind::Aggregate { fact, .. } if *fact >= facts.len() => {
                        ctx.invalid(
                            pos(m),
                            format!("{dpath}.measure"),
                            format!(
                                "driver '{}' is a measure of another allocation; drive by a measure of a fact read from a source",
                                m.value
                            ),
                        );
                        (None, None)
                    }
                    _ => {
                        ctx.invalid(
                            pos(m),
                            format!("{dpath}.measure"),
                            format!(
                                "driver '{}' is not additive: shares follow a sum or count measure (min, max, distinct and derived measures do not add up over cells)",
                                m.value
                            ),
                        );
                        (None, None)
                    }
                },
            },
            (None, Some(f)) => match fact_names.iter().position(|n| *n == f.value) {
                Some(fi) => (Some(Driver::Equal), Some(fi)),
                None => {
                    ctx.unknown(
                        pos(f),
                        format!("{dpath}.equal"),
                        "fact",
                        &f.value,
                        Some("facts".into()),
                        fact_names.iter().copied(),
                    );
                    (None, None)
                }
            },
            _ => {
                ctx.invalid(
                    pos(&a.driver),
                    &dpath,
                    "a driver is either `measure: <sum or count measure>` or `equal: <fact>`, exactly one of them",
                );
                (None, None)
            }
        };
        if let Some(f) = from
            && facts[f].time.is_none()
        {
            ctx.invalid(
                pos(&a.driver),
                &dpath,
                format!(
                    "the driver's fact '{}' has no time column, so its cells cannot be matched to each period's pool",
                    facts[f].name
                ),
            );
            ok = false;
        }

        // The allocated fact's dimensions: some the driver fact carries.
        let mut direct = Vec::new();
        let mut direct_pos = Vec::new();
        match (&a.dimensions, from) {
            (Some(list), _) => {
                let path = format!("{base}.dimensions");
                for dn in &list.value {
                    match dim_names.iter().position(|n| *n == dn.value) {
                        None => {
                            ctx.unknown(
                                pos(dn),
                                &path,
                                "dimension",
                                &dn.value,
                                None,
                                dim_names.iter().copied(),
                            );
                            ok = false;
                        }
                        Some(di) if direct.contains(&di) => {
                            ctx.report(
                                pos(dn),
                                &path,
                                DefError::Duplicate {
                                    what: "dimension",
                                    name: dn.value.clone(),
                                    first_line: pos(dn).line,
                                },
                            );
                            ok = false;
                        }
                        Some(di) => {
                            if let Some(f) = from
                                && !facts[f].direct.contains(&di)
                            {
                                ctx.invalid(
                                    pos(dn),
                                    &path,
                                    format!(
                                        "the driver's fact '{}' does not carry dimension '{}' (it carries: {})",
                                        facts[f].name,
                                        dn.value,
                                        names(dimensions, &facts[f].direct)
                                    ),
                                );
                                ok = false;
                            }
                            direct.push(di);
                            direct_pos.push(pos(dn));
                        }
                    }
                }
            }
            (None, Some(f)) => {
                direct = facts[f].direct.clone();
                direct_pos = vec![pos(name); direct.len()];
            }
            (None, None) => {}
        }

        // The pool.
        let p = &a.pool.value;
        let ppath = format!("{base}.pool");
        if !sources.contains(&p.source.value.as_str()) {
            ctx.unknown(
                pos(&p.source),
                format!("{ppath}.source"),
                "table",
                &p.source.value,
                Some("sources".into()),
                sources.iter().copied(),
            );
            ok = false;
        }
        let member_raw = &p.member.value;
        let member = dim_names
            .iter()
            .position(|n| *n == member_raw.dimension.value);
        let member_key = match member.map(|m| &dimensions[m].kind) {
            None => {
                ctx.unknown(
                    pos(&member_raw.dimension),
                    format!("{ppath}.member.dimension"),
                    "dimension",
                    &member_raw.dimension.value,
                    None,
                    dim_names.iter().copied(),
                );
                None
            }
            Some(DimensionKind::Time) => {
                ctx.invalid(
                    pos(&member_raw.dimension),
                    format!("{ppath}.member.dimension"),
                    "the pool's periods come from `time`; `member` names the dimension each pool row belongs to (a branch)",
                );
                None
            }
            Some(DimensionKind::Table { key, .. }) => Some(key.column.clone()),
        };
        if let (Some(m), Some(_), Some(_)) = (member, from, &member_key)
            && !direct.is_empty()
            && !reaches(dimensions, &direct, m)
        {
            ctx.invalid(
                pos(&member_raw.dimension),
                format!("{ppath}.member.dimension"),
                format!(
                    "no cell of '{}' lies under a member of '{}': none of its dimensions ({}) is '{}' or reaches it `via` another",
                    name.value,
                    member_raw.dimension.value,
                    names(dimensions, &direct),
                    member_raw.dimension.value
                ),
            );
            ok = false;
        }
        let col = |s: &Spanned<String>, field: &str| ColumnRef {
            table: p.source.value.clone(),
            column: s.value.clone(),
            pos: pos(s),
            path: format!("{ppath}.{field}"),
        };
        let key = match (&member_raw.key, member_key) {
            (Some(k), _) => Some(col(k, "member.key")),
            (None, Some(k)) => Some(ColumnRef {
                table: p.source.value.clone(),
                column: k,
                pos: pos(&member_raw.dimension),
                path: format!("{ppath}.member"),
            }),
            (None, None) => None,
        };

        // The allocated table's columns: each dimension's key, the time column, the amount.
        let mut columns: Vec<&str> = direct
            .iter()
            .filter_map(|&d| match &dimensions[d].kind {
                DimensionKind::Table { key, .. } => Some(key.column.as_str()),
                DimensionKind::Time => None,
            })
            .collect();
        for (field, c) in [("time", &p.time), ("amount", &p.amount)] {
            if columns.contains(&c.value.as_str()) {
                ctx.invalid(
                    pos(c),
                    format!("{ppath}.{field}"),
                    format!(
                        "the allocated table '{}' would have two columns named '{}'; its columns are its dimensions' keys, the pool's time column and the pool's amount column",
                        name.value, c.value
                    ),
                );
                ok = false;
            }
            columns.push(c.value.as_str());
        }

        out_facts.push(Fact {
            name: name.value.clone(),
            time: Some(ColumnRef {
                table: name.value.clone(),
                column: p.time.value.clone(),
                pos: pos(&p.time),
                path: format!("{ppath}.time"),
            }),
            direct,
            direct_pos,
        });
        if let (true, Some(driver), Some(from), Some(member), Some(key)) =
            (ok, driver, from, member, key)
        {
            out.push(Allocation {
                fact: fact_id,
                pool: Pool {
                    table: p.source.value.clone(),
                    amount: col(&p.amount, "amount"),
                    time: col(&p.time, "time"),
                    member,
                    key,
                },
                driver,
                from,
                pos: pos(name),
            });
        }
    }
    (out_facts, out)
}

/// Whether `target` is one of `dims` or reached from one of them `via` others.
fn reaches(dimensions: &[Dimension], dims: &[DimId], target: DimId) -> bool {
    let mut at = Some(target);
    // A `via` chain has no cycles (checked with the dimensions); bound it anyway.
    for _ in 0..=dimensions.len() {
        let Some(d) = at else { return false };
        if dims.contains(&d) {
            return true;
        }
        at = match &dimensions[d].kind {
            DimensionKind::Table { via, .. } => *via,
            DimensionKind::Time => None,
        };
    }
    false
}

fn names(dimensions: &[Dimension], dims: &[DimId]) -> String {
    let n: Vec<&str> = dims.iter().map(|&d| dimensions[d].name.as_str()).collect();
    if n.is_empty() {
        "none".into()
    } else {
        n.join(", ")
    }
}
