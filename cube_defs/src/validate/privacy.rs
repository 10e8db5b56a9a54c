//! Small-cell suppression: how many distinct customers a cell needs, which dimension's keys
//! are the customers, and which roles it applies to.

use super::{Ctx, pos};
use crate::model::*;
use crate::raw::*;

/// The default dimension whose keys are counted.
const DEFAULT_CUSTOMERS: &str = "customer";

pub(super) fn privacy(
    raw: Option<&RawPrivacy>,
    model: &Model,
    ctx: &mut Ctx<'_>,
) -> Option<Privacy> {
    let raw = raw?;
    let mut ok = true;
    if raw.min_customers.value < 2 {
        ctx.invalid(
            pos(&raw.min_customers),
            "privacy.min_customers",
            "must be at least 2 (a cell of one customer is that customer's data)",
        );
        ok = false;
    }
    if raw.applies_to.value.is_empty() {
        ctx.invalid(
            pos(&raw.applies_to),
            "privacy.applies_to",
            "name at least one role whose answers are suppressed",
        );
        ok = false;
    }
    let name = raw
        .customers
        .as_ref()
        .map_or(DEFAULT_CUSTOMERS, |c| c.value.as_str());
    let at = raw.customers.as_ref().map_or(pos(&raw.min_customers), pos);
    let Some(dim) = model.dimensions.iter().position(|d| d.name == name) else {
        ctx.unknown(
            at,
            "privacy.customers",
            "dimension",
            name,
            None,
            model.dimensions.iter().map(|d| d.name.as_str()),
        );
        return None;
    };
    let DimensionKind::Table { key, .. } = &model.dimensions[dim].kind else {
        ctx.invalid(
            at,
            "privacy.customers",
            format!("'{name}' is the time dimension; name the dimension whose keys are customers"),
        );
        return None;
    };
    let mut counts = Vec::new();
    for (f, fact) in model.facts.iter().enumerate() {
        if !fact.direct.contains(&dim) {
            continue;
        }
        let found = model.measures.iter().position(|m| {
            matches!(&m.kind, MeasureKind::Aggregate {
                fact: mf,
                agg: Agg::Distinct,
                column: Some(c),
                ..
            } if *mf == f && c.column == key.column)
        });
        match found {
            Some(m) => counts.push((f, m)),
            None => {
                ctx.invalid(
                    at,
                    "privacy.customers",
                    format!(
                        "fact '{}' has no distinct measure over {} (e.g. `{{ fact: {}, agg: distinct, column: {} }}`); suppression counts each cell's customers with one",
                        fact.name, key.column, fact.name, key.column
                    ),
                );
                ok = false;
            }
        }
    }
    ok.then(|| Privacy {
        min_customers: raw.min_customers.value,
        customers: dim,
        applies_to: raw
            .applies_to
            .value
            .iter()
            .map(|r| r.value.clone())
            .collect(),
        counts,
    })
}
