//! Target-customer search: saved conditions on an entity's attributes, bands and per-period
//! measures that evaluate to the set of entity members (customers) satisfying them, listed
//! (paged, sortable by the entity or a measure) and counted, and usable as a segment (a filter
//! on the entity level) in any query. Searches come as JSON documents (saved over the API) or
//! from the definition's `searches:` ([`definition_searches`], checked against the data at
//! build time by [`check_definition_searches`]).
//!
//! ```text
//! Search { where: all / any / not / atom }
//!   --atoms, each--> member atom: distinct-customer roaring sets of the smallest covering
//!                    cuboid (`member_sets`), else a query grouped by the entity
//!                    measure atom: the measure per entity member (the engine's aggregation),
//!                    compared exactly with the threshold
//!   --set algebra--> all = intersection, any = union, not = universe minus the set
//!   --∩ universe (the entity's members, minus `unknown`, that the principal may see)--> members
//! ```
//!
//! A principal's [`Access`] applies to everything: its scope filters every aggregate and set
//! an atom reads, and the universe `not` is relative to is the members the principal may see,
//! so a scoped principal's result is the unscoped result restricted to their customers.
//! [`redact`] shows a search someone else wrote to a scoped principal without the member
//! names outside their scope, and gives the document to run in their place. Under small-cell
//! suppression a condition on the customers' key is refused and an answer is withheld when
//! any set the condition forms, or any one branch's effect on it, is smaller than the minimum
//! (`privacy` in `eval`).

mod eval;
mod privacy;
mod redact;

pub use redact::{HIDDEN, Redacted};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use lattice_defs::diag::suggest;
use lattice_defs::model::{LevelRef, SearchCondition, SearchFilter, SearchPeriod};
use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::access::{Access, Applied};
use crate::analytics::{AnalyticsError, Ctx, default_entity, default_level};
use crate::query::resolve_restricted;
use crate::query::{
    Answer, Column, DEFAULT_DRILL_LIMIT, Direction, FactMeta, Filter, FilterOp, OrderKey, Query,
    QueryError, ResolvedFilter, execute_resolved, resolve,
};
use crate::query::{Dataset, Session};

/// A saved (or ad hoc) search document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Search {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The level whose members are searched (default `customer.id`).
    #[serde(default = "default_entity")]
    pub entity: String,
    /// The condition.
    #[serde(rename = "where")]
    pub condition: Condition,
    /// Who saved it, as the server names principals (`key:<name>`, `jwt:<subject>`,
    /// `anonymous`); none for the definition's searches and for those saved before searches
    /// had owners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Listed and runnable by every principal of the cube (each under their own scope, with
    /// the names outside it hidden); only an admin may set it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

impl Search {
    /// Reads a search document; malformed JSON, unknown keys and wrong types are
    /// `malformed_query` with serde's line and column.
    pub fn from_json(text: &str) -> Result<Search, SearchError> {
        serde_json::from_str(text).map_err(|e| {
            QueryError::Malformed {
                message: e.to_string(),
            }
            .into()
        })
    }
}

/// One condition: exactly one of `all`, `any`, `not`, `level` (a member atom) or `measure` (a
/// measure atom). Written as one flat object so that a wrong key is named by serde and a
/// wrong combination by [`SearchError::BadCondition`] with its path (`where.all[1]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// Every condition holds (intersection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub all: Option<Vec<Condition>>,
    /// At least one holds (union).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub any: Option<Vec<Condition>>,
    /// Does not hold: every member of the entity (the principal may see) minus the set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub not: Option<Box<Condition>>,
    /// Member atom: the members with facts in these members of `level` (a query filter's
    /// `op`, `value`, `values`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Measure atom: the members whose `measure` under `filters` compares true with `value`
    /// (`op`: gt, ge, lt, le, eq, ne).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    /// A member name (member atom) or a number (measure atom; exact decimals compare exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<serde_json::Value>))]
    pub value: Option<Json>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
    /// Measure atom: which facts count, as a query's filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    /// The periods the atom reads (default: all time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// The periods an atom reads: `last` periods of `level` ending at `value` (a member name or
/// `latest`, the latest period with facts of the atom's fact table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Period {
    #[serde(default = "default_level")]
    pub level: String,
    #[serde(default = "latest")]
    pub value: String,
    #[serde(default = "one")]
    pub last: u32,
}

fn latest() -> String {
    "latest".into()
}

fn one() -> u32 {
    1
}

/// The searches a query's `segments` and the run routes can name.
pub type SearchSet = BTreeMap<String, Search>;

/// How to list a search's members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SearchRun {
    /// An ad hoc search (the `/searches/run` route); a named run leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
    /// Measures shown per member (over all the member's facts).
    #[serde(default)]
    pub measures: Vec<String>,
    /// By the entity level or a measure of `measures`; default member order.
    #[serde(default)]
    pub order: Vec<crate::query::Order>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

impl SearchRun {
    pub fn from_json(text: &str) -> Result<SearchRun, SearchError> {
        if text.trim().is_empty() {
            return Ok(SearchRun::default());
        }
        serde_json::from_str(text).map_err(|e| {
            QueryError::Malformed {
                message: e.to_string(),
            }
            .into()
        })
    }
}

/// What can be wrong with a search; each has a stable [`SearchError::code`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    /// A problem any query or analysis could have (unknown level, measure or member, bad
    /// filter, a scope that does not fit, a bad period).
    #[error(transparent)]
    Analytics(#[from] AnalyticsError),
    #[error("unknown search '{name}'{}", suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default())]
    UnknownSearch {
        name: String,
        suggestion: Option<String>,
    },
    #[error("{at}: {message}")]
    BadCondition { at: String, message: String },
    #[error("{at}: period: {message}")]
    BadPeriod { at: String, message: String },
    #[error("search name '{name}': {message}")]
    BadName { name: String, message: String },
    #[error(
        "search '{name}' is defined in the cube's definition; change it there, or save this one under another name"
    )]
    ReadOnly { name: String },
    /// A saved search the principal may see but not change.
    #[error(
        "search '{name}' belongs to '{owner}'; only its owner or an admin may change or delete it (save a copy under another name)"
    )]
    NotOwner { name: String, owner: String },
    /// The name of a saved search the principal may not see.
    #[error("the search name '{name}' is taken; save this one under another name")]
    NameTaken { name: String },
    /// `shared` changed by a principal that is not an admin.
    #[error(
        "search '{name}': only an admin may share a search or stop sharing it; leave `shared` as it is ({shared})"
    )]
    SharingNeedsAdmin { name: String, shared: bool },
    /// A document naming an owner other than the one the server keeps.
    #[error(
        "search '{name}': `owner` is kept by the server ('{owner}'); leave it out or send it unchanged"
    )]
    OwnerIsKept { name: String, owner: String },
    /// Under small-cell suppression: a condition on the customers' key pins single customers.
    #[error(
        "{at}: a condition on '{level}' picks single customers, and small-cell suppression (fewer than {min} customers) applies to your role; select customers by their attributes, bands or measures instead"
    )]
    PinsCustomers { at: String, level: String, min: u64 },
    /// Under small-cell suppression: a segment whose members are withheld.
    #[error(
        "segment '{name}': the search forms a set of fewer than {min} customers (or one of its conditions changes its members by fewer), and small-cell suppression applies to your role; it cannot filter a query"
    )]
    Withheld { name: String, min: u64 },
    /// Under small-cell suppression: a segment whose condition compares a measure's value
    /// ([`Members::unlisted`]): a query filtered by it would tell one member's value.
    #[error(
        "segment '{name}': the search compares a measure's value, and small-cell suppression (fewer than {min} customers) applies to your role: whether one customer is among its members would tell that customer's value, so it cannot filter a query (run it for its count)"
    )]
    OnValues { name: String, min: u64 },
}

impl From<QueryError> for SearchError {
    fn from(e: QueryError) -> SearchError {
        SearchError::Analytics(AnalyticsError::Query(e))
    }
}

impl SearchError {
    pub fn code(&self) -> &'static str {
        match self {
            SearchError::Analytics(e) => e.code(),
            SearchError::UnknownSearch { .. } => "unknown_search",
            SearchError::BadCondition { .. } => "bad_condition",
            SearchError::BadPeriod { .. } => "bad_period",
            SearchError::BadName { .. } => "bad_search_name",
            SearchError::ReadOnly { .. } => "search_read_only",
            SearchError::NotOwner { .. }
            | SearchError::SharingNeedsAdmin { .. }
            | SearchError::PinsCustomers { .. }
            | SearchError::Withheld { .. }
            | SearchError::OnValues { .. } => "forbidden",
            SearchError::NameTaken { .. } => "search_name_taken",
            SearchError::OwnerIsKept { .. } => "malformed_query",
        }
    }
}

/// Checks a search's name: 1 to 64 letters, digits, `_` or `-` (it is a path segment and a
/// file key).
pub fn check_name(name: &str) -> Result<(), SearchError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(SearchError::BadName {
            name: name.to_string(),
            message: "use 1 to 64 letters, digits, '_' or '-'".into(),
        })
    }
}

/// The members a search selects, as `access` may see them.
#[derive(Debug, Clone, PartialEq)]
pub struct Members {
    pub entity: LevelRef,
    pub members: RoaringBitmap,
    /// Every member of the entity the principal may see (what `not` is relative to).
    pub universe: RoaringBitmap,
    pub facts: Vec<FactMeta>,
    /// Per atom, in document order: `member_sets` or `grouped`.
    pub sources: Vec<&'static str>,
    /// Under small-cell suppression: some set the condition forms (an atom, an `all`, `any`
    /// or `not`, the whole), or the change one branch of an `all` or `any` makes to it, holds
    /// fewer than the minimum number of members, none included. Then neither the members nor
    /// their count may be shown, and the search may not filter a query.
    pub withheld: bool,
    /// Under small-cell suppression: a condition compares a measure's value, so whether one
    /// member is among those selected tells that member's value against the threshold (a
    /// few runs with other thresholds find it). The count may be shown, the members not.
    pub unlisted: bool,
}

impl Session {
    /// Evaluates `search` on `cube` as `access` may see it.
    pub async fn search_members(&self, search: &Search) -> Result<Members, SearchError> {
        let mut ctx = Ctx::new(self).await?;
        eval::evaluate(&mut ctx, search).await
    }
}

/// A search's answer: the members (paged), their count and the measures asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchAnswer {
    pub name: String,
    pub entity: String,
    /// Members the search selects (before paging); none when withheld.
    pub count: Option<u64>,
    /// Members of the entity the principal may see (the count's denominator).
    pub total: u64,
    pub columns: Vec<Column>,
    /// `[member, measure..]` per member.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<serde_json::Value>>))]
    pub rows: Vec<Vec<Json>>,
    /// Withheld under small-cell suppression ([`Members::withheld`]): no rows, no count.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub suppressed: bool,
    /// The count only, no members, under small-cell suppression ([`Members::unlisted`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub members_withheld: bool,
    pub meta: SearchMeta,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SearchMeta {
    /// Per atom, in document order: `member_sets` (roaring sets of a cuboid) or `grouped`.
    pub atoms: Vec<&'static str>,
    pub facts: Vec<FactMeta>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

impl Session {
    /// Runs `search`: its members (paged, ordered), counts, and `run.measures` per member.
    pub async fn run_search(
        &self,
        search: &Search,
        run: &SearchRun,
    ) -> Result<SearchAnswer, SearchError> {
        let cube = self.data();
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        let found = eval::evaluate(&mut ctx, search).await?;
        let entity = found.entity;
        let mut columns = vec![Column {
            name: search.entity.clone(),
            kind: "level",
            ty: None,
        }];
        let meta = |facts: Vec<FactMeta>| SearchMeta {
            atoms: found.sources.clone(),
            facts,
            elapsed_us: start.elapsed().as_micros() as u64,
            snapshot: cube.version,
        };
        let count = found.members.len();
        if found.withheld || found.unlisted {
            let m = meta(found.facts.clone());
            return Ok(without_rows(search, &found, columns, m));
        }
        let paging = Paging::of(search, run)?;
        let mut facts = found.facts.clone();
        let rows = if run.measures.is_empty() {
            page(&found.members, paging.desc, run.offset, paging.limit)
                .into_iter()
                .map(|c| vec![Json::String(cube.member_name(entity, c).to_string())])
                .collect()
        } else {
            // Values for the page's members (or, to order by a measure, for all of them).
            let scope: RoaringBitmap = if paging.by_measure {
                found.members.clone()
            } else {
                page(&found.members, paging.desc, run.offset, paging.limit)
                    .into_iter()
                    .collect()
            };
            let answer =
                member_values(cube, &ctx.applied, search, run, entity, &scope, paging).await?;
            facts.extend(answer.meta.facts.iter().cloned());
            columns.extend(answer.columns.iter().skip(1).cloned());
            arrange_rows(cube, entity, answer, &scope, paging)
        };
        Ok(SearchAnswer {
            name: search.name.clone(),
            entity: search.entity.clone(),
            count: Some(count),
            total: found.universe.len(),
            columns,
            rows,
            suppressed: false,
            members_withheld: false,
            meta: meta(facts),
        })
    }
}

/// The answer of a search whose members may not be listed under small-cell suppression: no
/// rows, and no count either when it is withheld ([`Members::withheld`], else
/// [`Members::unlisted`]).
fn without_rows(
    search: &Search,
    found: &Members,
    columns: Vec<Column>,
    meta: SearchMeta,
) -> SearchAnswer {
    SearchAnswer {
        name: search.name.clone(),
        entity: search.entity.clone(),
        count: (!found.withheld).then(|| found.members.len()),
        total: found.universe.len(),
        columns,
        rows: Vec::new(),
        suppressed: found.withheld,
        members_withheld: !found.withheld,
        meta,
    }
}

/// How a search run pages its members.
#[derive(Debug, Clone, Copy)]
struct Paging {
    /// Member order descending.
    desc: bool,
    /// Ordered by a measure (so values are read for every member, then paged).
    by_measure: bool,
    offset: u64,
    limit: u64,
}

impl Paging {
    /// The paging of `run`, whose order may name only the entity or one of its measures.
    fn of(search: &Search, run: &SearchRun) -> Result<Paging, SearchError> {
        let limit = run.limit.unwrap_or(DEFAULT_DRILL_LIMIT);
        for o in &run.order {
            if o.by != search.entity && !run.measures.contains(&o.by) {
                return Err(QueryError::BadOrder { by: o.by.clone() }.into());
            }
        }
        let desc = run
            .order
            .iter()
            .find(|o| o.by == search.entity)
            .is_some_and(|o| o.dir == Direction::Desc);
        let by_measure = run.order.iter().any(|o| o.by != search.entity);
        Ok(Paging {
            desc,
            by_measure,
            offset: run.offset,
            limit,
        })
    }
}

/// `run.measures` of the members in `scope`, grouped by the entity, as the principal
/// (`applied`) sees them; in member order unless ordered by a measure.
async fn member_values(
    cube: &Dataset,
    applied: &Applied,
    search: &Search,
    run: &SearchRun,
    entity: LevelRef,
    scope: &RoaringBitmap,
    paging: Paging,
) -> Result<Answer, SearchError> {
    let q = Query {
        measures: run.measures.clone(),
        rows: vec![search.entity.clone()],
        order: run.order.clone(),
        ..Query::default()
    };
    let mut r = if applied.is_unrestricted() {
        resolve(&q, cube)?
    } else {
        resolve_restricted(cube, &q, applied).await?
    };
    r.filters.push(ResolvedFilter {
        level: entity,
        members: scope.clone(),
    });
    if !paging.by_measure {
        let dir = if paging.desc {
            Direction::Desc
        } else {
            Direction::Asc
        };
        r.order = vec![(OrderKey::Level(entity), dir)];
    }
    r.limit = None;
    r.offset = 0;
    Ok(execute_resolved(cube, &r).await?)
}

/// The page of rows: those of `answer`, and a row of nulls for each member of `scope` without
/// any value, which sorts last (ties in member order); by measure, the page is taken here.
fn arrange_rows(
    cube: &Dataset,
    entity: LevelRef,
    answer: Answer,
    scope: &RoaringBitmap,
    paging: Paging,
) -> Vec<Vec<Json>> {
    let name = |c: u32| Json::String(cube.member_name(entity, c).to_string());
    let width = answer.columns.len();
    let dict = cube.members(entity);
    let mut rows: Vec<(u32, Vec<Json>)> = answer
        .rows
        .into_iter()
        .map(|row| {
            let code = row
                .first()
                .and_then(Json::as_str)
                .and_then(|n| dict.code(n))
                .unwrap_or(u32::MAX);
            (code, row)
        })
        .collect();
    let seen: RoaringBitmap = rows.iter().map(|(c, _)| *c).collect();
    let mut tail: Vec<(u32, Vec<Json>)> = (scope - &seen)
        .iter()
        .map(|c| {
            let mut row = vec![name(c)];
            row.resize(width, Json::Null);
            (c, row)
        })
        .collect();
    if paging.by_measure {
        rows.extend(tail);
        rows.into_iter()
            .map(|(_, r)| r)
            .skip(usize::try_from(paging.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(paging.limit).unwrap_or(usize::MAX))
            .collect()
    } else {
        rows.append(&mut tail);
        rows.sort_by_key(|(c, _)| *c);
        if paging.desc {
            rows.reverse();
        }
        rows.into_iter().map(|(_, r)| r).collect()
    }
}

/// `limit` codes of `set` from `offset`, ascending or descending.
fn page(set: &RoaringBitmap, desc: bool, offset: u64, limit: u64) -> Vec<u32> {
    let offset = usize::try_from(offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if desc {
        set.iter().rev().skip(offset).take(limit).collect()
    } else {
        set.iter().skip(offset).take(limit).collect()
    }
}

impl Session {
    /// Replaces a query's `segments` by filters on their entity levels: per entity, an `in`
    /// filter listing the members every segment on it selects (as `access` may see them), so the
    /// answer equals the same query with that filter written out (and the query cache keys on
    /// the members, not on a search's name whose definition may change). A segment selecting no
    /// one becomes a filter no member passes.
    pub async fn expand_segments(
        &self,
        query: &mut Query,
        searches: &SearchSet,
    ) -> Result<(), SearchError> {
        let cube = self.data();
        if query.segments.is_empty() {
            return Ok(());
        }
        let mut by_entity: BTreeMap<String, RoaringBitmap> = BTreeMap::new();
        for name in std::mem::take(&mut query.segments) {
            let search = find(searches, &name)?;
            let mut ctx = Ctx::new(self).await?;
            let found = eval::evaluate(&mut ctx, search).await?;
            if let Some(s) = &ctx.applied.suppress {
                if found.withheld {
                    return Err(SearchError::Withheld { name, min: s.min });
                }
                if found.unlisted {
                    return Err(SearchError::OnValues { name, min: s.min });
                }
            }
            by_entity
                .entry(search.entity.clone())
                .and_modify(|s| *s &= &found.members)
                .or_insert(found.members);
        }
        for (level, set) in by_entity {
            let l = cube
                .model
                .level(&level)
                .ok_or_else(|| QueryError::UnknownLevel {
                    name: level.clone(),
                    suggestion: None,
                })?;
            let filter = if set.is_empty() {
                // No member name contains NUL.
                Filter {
                    level,
                    op: FilterOp::Search,
                    value: Some("\u{0}".into()),
                    values: None,
                }
            } else {
                Filter {
                    level,
                    op: FilterOp::In,
                    value: None,
                    values: Some(
                        set.iter()
                            .map(|c| cube.member_name(l, c).to_string())
                            .collect(),
                    ),
                }
            };
            query.filters.push(filter);
        }
        Ok(())
    }
}

/// The search `name` of `searches`, or `unknown_search` with a suggestion.
pub fn find<'s>(searches: &'s SearchSet, name: &str) -> Result<&'s Search, SearchError> {
    searches
        .get(name)
        .ok_or_else(|| SearchError::UnknownSearch {
            name: name.to_string(),
            suggestion: suggest(name, searches.keys().map(String::as_str)),
        })
}

/// The searches a cube's definition names (`searches:`), as documents. The server lists and
/// runs them beside the saved ones and refuses to replace or delete them over the API.
pub fn definition_searches(model: &lattice_defs::Model) -> SearchSet {
    model
        .searches
        .iter()
        .map(|s| {
            let search = Search {
                name: s.name.clone(),
                description: s.description.clone().unwrap_or_default(),
                entity: s.entity.clone(),
                condition: condition_of(&s.condition),
                // Every principal sees the definition's searches, by where they come from.
                owner: None,
                shared: false,
            };
            (s.name.clone(), search)
        })
        .collect()
}

fn condition_of(c: &SearchCondition) -> Condition {
    let period = |p: &Option<SearchPeriod>| {
        p.as_ref().map(|p| Period {
            level: p.level.clone(),
            value: p.value.clone(),
            last: p.last,
        })
    };
    match c {
        SearchCondition::All(cs) => Condition {
            all: Some(cs.iter().map(condition_of).collect()),
            ..Condition::default()
        },
        SearchCondition::Any(cs) => Condition {
            any: Some(cs.iter().map(condition_of).collect()),
            ..Condition::default()
        },
        SearchCondition::Not(c) => Condition {
            not: Some(Box::new(condition_of(c))),
            ..Condition::default()
        },
        SearchCondition::Member { filter, period: p } => Condition {
            level: Some(filter.level.clone()),
            op: Some(filter.op.clone()),
            value: filter.value.clone().map(Json::String),
            values: filter.values.clone(),
            period: period(p),
            ..Condition::default()
        },
        SearchCondition::Measure {
            measure,
            op,
            value,
            filters,
            period: p,
        } => Condition {
            measure: Some(measure.clone()),
            op: Some(op.clone()),
            // An integer as a JSON number, as a document would have it; anything else as the
            // exact decimal text (a JSON number could round it).
            value: Some(
                value
                    .parse::<i64>()
                    .map_or_else(|_| Json::String(value.clone()), Json::from),
            ),
            filters: filters.iter().filter_map(filter_of).collect(),
            period: period(p),
            ..Condition::default()
        },
    }
}

/// A validated filter as a query's (the definition checked the op's name).
fn filter_of(f: &SearchFilter) -> Option<Filter> {
    Some(Filter {
        level: f.level.clone(),
        op: serde_json::from_value(Json::String(f.op.clone())).ok()?,
        value: f.value.clone(),
        values: f.values.clone(),
    })
}

/// Checks the definition's searches against a built cube — what only the data can show:
/// that the members and periods they name exist. Each search that fails is a diagnostic at
/// its name, saying which condition and what is wrong; the dataset comes back when none does.
pub async fn check_definition_searches(
    data: Dataset,
) -> Result<Dataset, lattice_defs::Diagnostics> {
    let data = Arc::new(data);
    let session = data.session(Access::everything());
    let model = &data.model;
    let documents = definition_searches(model);
    let mut diags = Vec::new();
    for s in &model.searches {
        let Some(search) = documents.get(&s.name) else {
            continue;
        };
        if let Err(e) = session.search_members(search).await {
            diags.push(lattice_defs::Diagnostic {
                file: model.file.clone(),
                pos: s.pos,
                path: format!("searches.{}", s.name),
                error: lattice_defs::DefError::Invalid {
                    message: format!("search '{}': {e}", s.name),
                },
            });
        }
    }
    if !diags.is_empty() {
        return Err(lattice_defs::Diagnostics(diags));
    }
    drop(session);
    // The searches are the engine's own questions, not a user's: what they missed is no
    // reason to build a cuboid.
    data.missed.clear();
    Ok(Arc::into_inner(data).expect("no session outlives the check"))
}
