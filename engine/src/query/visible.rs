//! What a principal may see of a cube's members, found by reading the cube: the members of
//! each level that occur among the principal's facts ([`visible`], cached per snapshot), and
//! a query resolved and restricted for a principal ([`resolve_restricted`]).

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use lattice_defs::Model;
use lattice_defs::model::{Agg, FactId, LevelKind, LevelRef, MeasureId, MeasureKind, OverTime};
use roaring::RoaringBitmap;

use super::error::QueryError;
use super::exec::level_members;
use super::resolve::{Resolved, resolve_visible};
use super::session::Dataset;
use super::spec::Query;
use crate::access::{Applied, customers_key};

/// Per cube snapshot: the members of a level visible under an access, computed once.
#[derive(Debug, Default)]
pub(crate) struct VisibleCache {
    map: DashMap<(String, LevelRef), Arc<RoaringBitmap>>,
}

/// Most (partition, level) pairs kept per snapshot before the cache starts over.
const VISIBLE_CACHE_ENTRIES: usize = 4096;

/// The members of `level` visible under `applied`; `None` when all of them are.
pub(crate) async fn visible(
    cube: &Dataset,
    level: LevelRef,
    applied: &Applied,
) -> Result<Option<Arc<RoaringBitmap>>, QueryError> {
    let model = &cube.model;
    let kind = &model.dimensions[level.dim].levels[level.level].kind;
    if applied.scope.is_empty()
        || !applied.restricted[level.dim]
        || matches!(kind, LevelKind::Time(_) | LevelKind::Bucket(_))
    {
        return Ok(None);
    }
    let key = (applied.partition.clone(), level);
    if let Some(hit) = cube.visible.map.get(&key) {
        return Ok(Some(hit.clone()));
    }
    let mut members = RoaringBitmap::new();
    for fact in 0..model.facts.len() {
        let reaches = |l: LevelRef| model.fact_has_dimension(fact, l.dim);
        if !reaches(level) || !applied.scope.iter().all(|f| reaches(f.level)) {
            continue;
        }
        let Some(m) = row_measure(model, fact) else {
            continue;
        };
        members |= level_members(cube, fact, level, &applied.scope, m).await?;
    }
    let members = Arc::new(members);
    if cube.visible.map.len() >= VISIBLE_CACHE_ENTRIES {
        cube.visible.map.clear();
    }
    cube.visible.map.insert(key, members.clone());
    Ok(Some(members))
}

/// A measure of `fact` with a value in every group that has facts, whose groups are exactly
/// the fact rows' groups (not a closing-period balance, which keeps only the last period's):
/// a row count, else the first additive aggregate.
pub(crate) fn row_measure(model: &Model, fact: FactId) -> Option<MeasureId> {
    let additive = |m: &&lattice_defs::model::Measure| matches!(&m.kind, MeasureKind::Aggregate { fact: f, over_time: OverTime::Additive, .. } if *f == fact);
    let counts_first = model
        .measures
        .iter()
        .enumerate()
        .filter(|(_, m)| additive(m));
    counts_first
        .clone()
        .find(|(_, m)| {
            matches!(
                m.kind,
                MeasureKind::Aggregate {
                    agg: Agg::Count,
                    ..
                }
            )
        })
        .or_else(|| counts_first.clone().next())
        .map(|(i, _)| i)
}

/// Visible members of every restricted level a query's filters name, found before it is
/// resolved.
pub(crate) async fn visible_for(
    cube: &Dataset,
    applied: &Applied,
    levels: impl Iterator<Item = &str>,
) -> Result<HashMap<LevelRef, Arc<RoaringBitmap>>, QueryError> {
    let mut out = HashMap::new();
    for name in levels {
        let Some(l) = cube.model.level(name) else {
            continue; // resolution reports it
        };
        if out.contains_key(&l) {
            continue;
        }
        if let Some(v) = visible(cube, l, applied).await? {
            out.insert(l, v);
        }
    }
    Ok(out)
}

/// Resolves `query` for a principal: filters see only visible members, every measure must
/// vary by the scope's levels (else the scope could not be applied to it), and the scope and
/// suppression ride along to execution.
pub(crate) async fn resolve_restricted(
    cube: &Dataset,
    query: &Query,
    applied: &Applied,
) -> Result<Resolved, QueryError> {
    let levels = query.filters.iter().map(|f| f.level.as_str());
    let visible = visible_for(cube, applied, levels).await?;
    let mut r = resolve_visible(query, cube, &visible)?;
    restrict(cube, &mut r, applied)?;
    Ok(r)
}

/// Attaches the principal's scope and suppression to a resolved query.
pub(crate) fn restrict(
    cube: &Dataset,
    r: &mut Resolved,
    applied: &Applied,
) -> Result<(), QueryError> {
    let model = &cube.model;
    for &m in &r.measures {
        for f in &applied.scope {
            if !model.measure_varies_by(m, f.level) {
                return Err(QueryError::Forbidden {
                    message: format!(
                        "measure '{}' cannot be restricted to your scope: its facts have no '{}'",
                        model.measures[m].name, model.dimensions[f.level.dim].name
                    ),
                });
            }
        }
    }
    r.scope = applied.scope.clone();
    r.suppress = applied.suppress.clone();
    Ok(())
}

/// Under small-cell suppression a query may not group by single customers (each row would
/// name one customer, and which rows exist would tell who is behind a small cell) nor pick
/// fewer customers than the threshold by their ids (then whether a row exists tells about
/// them). A longer list, as a saved search used as a segment gives, is a group like any other.
/// (A query's own question only: the analyses group by customers inside, and answer with
/// groups.)
pub(crate) fn refuse_single_customers(
    model: &Model,
    r: &Resolved,
    applied: &Applied,
) -> Result<(), QueryError> {
    let (Some(min), Some(key)) = (
        applied.suppress.as_ref().map(|s| s.min),
        customers_key(model),
    ) else {
        return Ok(());
    };
    let name = model.level_name(key);
    if r.rows.contains(&key) || r.columns.contains(&key) {
        return Err(QueryError::Forbidden {
            message: format!(
                "grouping by '{name}' shows single customers, and small-cell suppression (fewer than {min} customers) applies to your role; group by their attributes or bands, or drill through a cell"
            ),
        });
    }
    if let Some(f) = r
        .filters
        .iter()
        .find(|f| f.level == key && f.members.len() < min)
    {
        return Err(QueryError::Forbidden {
            message: format!(
                "a filter on '{name}' picks {} customers, and small-cell suppression (fewer than {min} customers) applies to your role; pick customers by their attributes, bands or a saved search",
                f.members.len()
            ),
        });
    }
    Ok(())
}
