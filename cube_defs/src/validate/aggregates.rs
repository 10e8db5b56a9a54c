//! The aggregates policy: mode, budget, listed cuboids and aggregation groups.

use serde_saphyr::Spanned;

use super::{Ctx, pos};
use crate::diag::DefError;
use crate::limits::{MAX_CUBOIDS, MAX_GROUP_LEVELS, MAX_GROUPS, MAX_LEVELS};
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
    // Sizes first: a list past its limit is not looked into.
    let too_many = |ctx: &mut Ctx<'_>, at, path: String, what, found: usize, limit: usize| {
        ctx.report(
            at,
            path,
            DefError::TooMany {
                what,
                found: found as u64,
                limit: limit as u64,
            },
        );
    };
    if raw.cuboids.len() > MAX_CUBOIDS {
        let at = pos(&raw.cuboids[MAX_CUBOIDS]);
        too_many(
            ctx,
            at,
            "aggregates.cuboids".into(),
            "cuboids",
            raw.cuboids.len(),
            MAX_CUBOIDS,
        );
        return Aggregates::default();
    }
    if raw.groups.len() > MAX_GROUPS {
        let at = pos(&raw.groups[MAX_GROUPS].includes);
        let path = "aggregates.groups".into();
        too_many(
            ctx,
            at,
            path,
            "aggregation groups",
            raw.groups.len(),
            MAX_GROUPS,
        );
        return Aggregates::default();
    }
    let mut sized = true;
    for (i, c) in raw.cuboids.iter().enumerate() {
        if c.value.len() > MAX_LEVELS {
            let path = format!("aggregates.cuboids[{i}]");
            too_many(
                ctx,
                pos(c),
                path,
                "levels in a cuboid",
                c.value.len(),
                MAX_LEVELS,
            );
            sized = false;
        }
    }
    for (i, g) in raw.groups.iter().enumerate() {
        let n = g.includes.value.len();
        if n > MAX_GROUP_LEVELS {
            let path = format!("aggregates.groups[{i}].includes");
            let what = "levels in an aggregation group";
            too_many(ctx, pos(&g.includes), path, what, n, MAX_GROUP_LEVELS);
            sized = false;
        }
        // Each list within a group names its levels; more than the group has is a mistake
        // that would only cost time to report one by one.
        let lists = g.hierarchies.iter().chain(&g.joint).map(Vec::len);
        let longest = lists.chain([g.mandatory.len()]).max().unwrap_or(0);
        if longest > MAX_GROUP_LEVELS {
            let path = format!("aggregates.groups[{i}]");
            let what = "levels in a list of an aggregation group";
            too_many(ctx, pos(&g.includes), path, what, longest, MAX_GROUP_LEVELS);
            sized = false;
        }
        let lists = g.hierarchies.len() + g.joint.len();
        if lists > MAX_GROUP_LEVELS {
            let path = format!("aggregates.groups[{i}]");
            let what = "hierarchies and joints in an aggregation group";
            too_many(ctx, pos(&g.includes), path, what, lists, MAX_GROUP_LEVELS);
            sized = false;
        }
    }
    if !sized {
        return Aggregates::default();
    }
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
    // What the groups and the list make together, counted as the build will enumerate them.
    if mode == AggMode::Groups {
        let made = cuboid_count(&cuboids, &groups, MAX_CUBOIDS);
        if made > MAX_CUBOIDS {
            let at = raw
                .groups
                .first()
                .map_or(pos(&raw.mode), |g| pos(&g.includes));
            let path = "aggregates.groups".into();
            too_many(ctx, at, path, "cuboids", made, MAX_CUBOIDS);
        }
    }
    Aggregates {
        mode,
        budget_mb,
        cuboids,
        groups,
    }
}

/// The distinct cuboids `listed` and the combinations of `groups` make (what the build
/// enumerates in groups mode), counted up to just past `limit`. A combination of a group is a
/// subset of its `includes` with every `mandatory` level, each `joint` all or none, and each
/// level of a `hierarchies` entry only with every level above it.
pub(super) fn cuboid_count(listed: &[Vec<LevelRef>], groups: &[AggGroup], limit: usize) -> usize {
    let mut seen: std::collections::HashSet<Vec<LevelRef>> = listed
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c.sort_unstable();
            c
        })
        .collect();
    for g in groups {
        let n = g.includes.len().min(MAX_GROUP_LEVELS);
        let bit = |l: &LevelRef| {
            g.includes[..n]
                .iter()
                .position(|x| x == l)
                .map_or(0u32, |i| 1 << i)
        };
        let mask_of = |ls: &[LevelRef]| ls.iter().fold(0u32, |m, l| m | bit(l));
        let mandatory = mask_of(&g.mandatory);
        let joints: Vec<u32> = g.joint.iter().map(|j| mask_of(j)).collect();
        // For each level of a hierarchy, the levels above it.
        let above: Vec<(u32, u32)> = g
            .hierarchies
            .iter()
            .flat_map(|h| (0..h.len()).map(move |i| (bit(&h[i]), mask_of(&h[..i]))))
            .collect();
        for mask in 0u32..(1u32 << n) {
            let ok = mask & mandatory == mandatory
                && joints.iter().all(|&j| mask & j == 0 || mask & j == j)
                && above.iter().all(|&(l, a)| mask & l == 0 || mask & a == a);
            if ok {
                let mut c: Vec<LevelRef> = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| g.includes[i])
                    .collect();
                c.sort_unstable();
                seen.insert(c);
                if seen.len() > limit {
                    return seen.len();
                }
            }
        }
    }
    seen.len()
}
