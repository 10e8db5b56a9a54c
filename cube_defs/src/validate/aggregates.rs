//! The aggregates policy: mode, budget, listed cuboids and aggregation groups.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::DefError;
use crate::model::*;
use crate::raw::*;

pub(super) fn aggregates(
    raw: Option<&RawAggregates>,
    model: &Model,
    ctx: &mut Ctx<'_>,
) -> Aggregates {
    let Some(raw) = raw else {
        return Aggregates::default();
    };
    // Cross-checks against facts only mean something when the rest is clean.
    let clean = ctx.diags.is_empty();
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
        let path = format!("aggregates.cuboids[{i}]");
        for (j, l) in levels.iter().enumerate() {
            if let Some(first) = levels[..j].iter().position(|x| x == l) {
                ctx.report(
                    pos(&c.value[j]),
                    format!("{path}[{j}]"),
                    DefError::Duplicate {
                        what: "level in cuboid",
                        name: model.level_name(*l),
                        first_line: pos(&c.value[first]).line,
                    },
                );
            }
        }
        // A cuboid aggregates one fact: some fact must vary by every one of its levels.
        let dims: Vec<usize> = levels.iter().map(|l| l.dim).collect();
        if clean
            && levels.len() == c.value.len()
            && !(0..model.facts.len()).any(|f| dims.iter().all(|d| model.fact_has_dimension(f, *d)))
        {
            let names: Vec<String> = levels.iter().map(|l| model.level_name(*l)).collect();
            ctx.invalid(
                pos(c),
                path,
                format!(
                    "no fact varies by all of {}: each cuboid aggregates one fact table",
                    names.join(", ")
                ),
            );
        }
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
