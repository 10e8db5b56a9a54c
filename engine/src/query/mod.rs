//! Queries over a built cube: the query document (the same JSON over HTTP, the CLI and the
//! Rust API), its resolution against a [`crate::store::Cube`], planning, execution and the
//! answer.
//!
//! ```text
//! Query --resolve--> Resolved (indices, filters as member-code sets)
//!   --plan, per fact--> smallest cuboid deriving every grouped and filtered level
//!                       | none: fallback (DataFusion SQL over the raw facts)
//!   --scan / SQL--> Grouped (codes + aggregates, one shape for both paths)
//!   --finish--> derived measures, compare, having, pivot, order, limit, totals --> Answer
//! ```
//!
//! # Semantics (the differential tests hold both paths to these)
//!
//! - A row exists for every combination of grouped members that has at least one fact row
//!   passing the filters (for several facts: in any of them; the others' measures are null).
//!   Without grouped levels the answer has exactly one row, as SQL's aggregate without GROUP
//!   BY: sums null, counts 0 when nothing passes.
//! - Semi-additive (`over_time: last`) measures read, per group, only the fact rows of its
//!   closing period: the latest period present in the fact table (anywhere in it) that lies in
//!   the group's finest grouped time member and passes every time filter; without a time
//!   level, the latest such period overall.
//! - Derived measures follow SQL over the aggregates: null in, null out; `+ - *` exact on
//!   decimals; `/` a float, null when dividing by zero. A derived measure over several facts
//!   reads each null sum or count as 0 (`COALESCE(x, 0)`), null only when every input is.
//! - `compare` (level L, lag n) adds `<m>_prev`, the row with L's member n steps earlier,
//!   computed with the query's filters except those on L's dimension (so January's previous
//!   month is December even when the year is filtered), and `<m>_change` = (m - prev) / prev,
//!   null when either is null or prev is 0. `unknown` has no previous member. Other grouped
//!   levels of L's hierarchy move with it: a coarser one to the earlier member's parent
//!   (rows `[year, month]`: January's previous month is December of the year before), a finer
//!   time level by as many of its periods (the year before (2025, 2025-03) is (2024, 2024-03)).
//! - `having` compares measure values at the full grain (rows and columns) as numbers; null
//!   fails every condition.
//! - Rows come in member order of the grouped levels (rows, then columns) unless `order` says
//!   otherwise; ties keep member order; nulls sort last in either direction. In a pivot,
//!   ordering by a measure orders rows by the row total of that measure (the measure at the
//!   grain of `rows` alone).
//! - A pivot has one row per `rows` key and a column `<m1>|..|<mk>|<measure>` per columns
//!   key present after `having`, in member order.
//! - `shares`: a measure divided by its total over the rows that share the members of the
//!   share's levels (none: the grand total; a level above a grouped one: its parent member),
//!   a number; null when the total is null or zero. The totals cover every filtered fact, as
//!   `totals` do (not limited by having or limit).
//! - `totals`: the measures over all the filtered facts (not limited by having or limit),
//!   sub-totals per leading part of `rows`, and in a pivot the column and row totals.
//! - A principal's access ([`crate::access`]) adds its scope to every aggregate (never
//!   lifted) and, with small-cell suppression, nulls and flags every cell with too few
//!   customers and every total containing one, before `having`, order and paging.

mod answer;
mod base;
mod cache;
mod drill;
mod error;
mod exec;
mod fallback;
mod finish;
mod group;
mod missed;
mod resolve;
mod scan;
mod session;
mod spec;
#[cfg(test)]
mod tests;
mod visible;

pub use answer::{Answer, Candidate, Column, Explain, FactMeta, Meta, Subtotal, Suppressed};
pub(crate) use answer::{V, eval};
pub use cache::QueryCache;
pub use drill::{DEFAULT_DRILL_LIMIT, DrillAnswer, DrillMeta, DrillQuery};
pub(crate) use drill::{MemberSets, member_sets, member_sets_by};
pub use error::QueryError;
pub(crate) use exec::{aggregate, cmp_v, collect_leaves, execute_resolved, execute_restricted};
pub(crate) use group::AggRequest;
pub use resolve::{
    MAX_PAGE_ROWS, OrderKey, Resolved, ResolvedFilter, ResolvedShare, check_page, resolve,
};
pub(crate) use scan::closing_periods;
pub use session::{Dataset, Session};
pub use spec::{Compare, Direction, Filter, FilterOp, Having, HavingOp, Order, Query, Share};
pub(crate) use visible::{resolve_restricted, row_measure, visible};
