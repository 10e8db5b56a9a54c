//! Small-cell suppression for searches: what a principal under `privacy` may not learn from
//! a search's members or count.
//!
//! A count is an aggregate over customers like any cell, and a search is a set expression, so
//! a count can be made to turn on one customer's value: `any[{one customer with deposit > X},
//! {five known customers}]` counts 6 or 5. Two rules close that:
//!
//! - **No condition on the customers' key** (`customer.id`, anywhere in the tree, in a member
//!   atom or a measure atom's filters): it names single customers, so it is refused (403).
//! - **No small set and no small step.** Every set the condition forms — each atom, each
//!   `all`, `any` and `not`, the whole — must hold at least `min_customers` members, and so must
//!   the change each child of an `all` or `any` makes (the members the node has that the
//!   others' union lacks, or the others' intersection has that the node lacks). Fewer, none
//!   included, withholds the answer: no members, no count ([`super::Members::withheld`]).
//!   "None" counts as small because telling 0 from "withheld" is the same oracle as telling 0
//!   from 1. The one-customer branch above is a set of 0 or 1 members, so the answer is
//!   withheld either way, whatever X is.
//!
//! What the rules do not stop is a tracker spread over several requests (two searches whose
//! every set is large but whose counts differ by one customer): no check on one expression
//! can, as for the query cells the engine suppresses. Adding noise or auditing a principal's
//! history would be the next step.

use roaring::RoaringBitmap;

use super::{Condition, SearchError};
use crate::analytics::Ctx;

/// Under suppression, refuses an atom (or a measure atom's filter) on the level of the
/// customers' key.
pub(super) fn refuse_pinned(
    ctx: &Ctx<'_>,
    atoms: &[(String, &Condition)],
) -> Result<(), SearchError> {
    let (Some(s), Some(key)) = (
        &ctx.applied.suppress,
        crate::access::customers_key(ctx.model()),
    ) else {
        return Ok(());
    };
    let model = ctx.model();
    for (at, c) in atoms {
        let levels = c.level.iter().map(|l| (at.clone(), l)).chain(
            c.filters
                .iter()
                .enumerate()
                .map(|(i, f)| (format!("{at}.filters[{i}]"), &f.level)),
        );
        for (at, level) in levels {
            if model.level(level) == Some(key) {
                return Err(SearchError::PinsCustomers {
                    at,
                    level: level.clone(),
                    min: s.min,
                });
            }
        }
    }
    Ok(())
}

/// The fewest members any one of `parts` adds to their union `node`: per part, what `node`
/// holds that the other parts' union lacks.
pub(super) fn least_step_of_any(parts: &[RoaringBitmap], node: &RoaringBitmap) -> u64 {
    least_step(parts, |others| node - others, |a, b| a | b)
}

/// The fewest members any one of `parts` removes from the other parts' intersection to give
/// `node`.
pub(super) fn least_step_of_all(parts: &[RoaringBitmap], node: &RoaringBitmap) -> u64 {
    least_step(parts, |others| others - node, |a, b| a & b)
}

fn least_step(
    parts: &[RoaringBitmap],
    step: impl Fn(&RoaringBitmap) -> RoaringBitmap,
    join: impl Fn(RoaringBitmap, &RoaringBitmap) -> RoaringBitmap,
) -> u64 {
    if parts.len() < 2 {
        return u64::MAX;
    }
    (0..parts.len())
        .map(|i| {
            let mut others = parts.iter().enumerate().filter(|(j, _)| *j != i);
            let first = others.next().map(|(_, p)| p.clone()).unwrap_or_default();
            let others = others.fold(first, |acc, (_, p)| join(acc, p));
            step(&others).len()
        })
        .min()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[u32]) -> RoaringBitmap {
        xs.iter().copied().collect()
    }

    #[test]
    fn the_step_of_a_branch_is_what_it_alone_adds_or_removes() {
        let parts = [set(&[1, 2, 3, 4]), set(&[4, 5]), set(&[5, 6, 7])];
        let union = set(&[1, 2, 3, 4, 5, 6, 7]);
        // The second part adds nothing the others lack: a step of none.
        assert_eq!(least_step_of_any(&parts, &union), 0);
        let parts = [set(&[1, 2, 3, 4]), set(&[4, 5, 6])];
        let both = set(&[4]);
        // The first takes 5 and 6 from the second, the second 1, 2 and 3 from the first.
        assert_eq!(least_step_of_all(&parts, &both), 2);
        assert_eq!(least_step_of_any(&parts[..1], &parts[0]), u64::MAX);
    }
}
