//! Stage 1: dimensions. Every table dimension is read once (with its lookups joined) and each
//! level dictionary-encoded; each key gets a code, and each key code maps to its member of
//! every column level (`by_key`). Dimensions reached `via` another get a map from the other's
//! key codes to theirs. Metric buckets come later, from the base tables ([`super::metrics`]).
//!
//! Every key count `n` has an extra code `n` for facts whose key is NULL or not in the
//! dimension table; it maps to `unknown` in every level.

use std::collections::HashMap;

use arrow::array::Array;

use datafusion::prelude::SessionContext;
use lattice_defs::model::{Decimal, DimensionKind, LevelKind, Model, UNKNOWN_MEMBER};
use lattice_defs::{Catalog, ColumnType};

use crate::source::arrays::{ints, keys, query, strings};
use crate::source::load::{dimension_from, ident, level_member_sql};
use crate::store::LevelDict;
use crate::store::encoding::{DimCodes, Encoding, KeyValue, key_sql};
use crate::store::time::{TimeAxis, period_sql};
use crate::{EngineError, Result};

/// Appends the key codes of column `i` of `batch` to `out` (unknown keys get `n_keys`).
pub(crate) fn extend_codes(
    codes: &DimCodes,
    batch: &arrow::array::RecordBatch,
    i: usize,
    out: &mut Vec<u32>,
) -> Result<()> {
    let unknown = codes.n_keys as u32;
    match &codes.dense {
        Some((min, slots)) => {
            let a = ints(batch, i)?;
            let code = |v: i64| {
                v.checked_sub(*min)
                    .and_then(|o| usize::try_from(o).ok())
                    .and_then(|o| slots.get(o).copied())
                    .unwrap_or(unknown)
            };
            if a.null_count() == 0 {
                out.extend(a.values().iter().map(|v| code(*v)));
            } else {
                out.extend((0..a.len()).map(|r| {
                    if a.is_valid(r) {
                        code(a.value(r))
                    } else {
                        unknown
                    }
                }));
            }
            Ok(())
        }
        None => {
            let keys = keys(batch, i, codes.integer_key)?;
            out.extend(keys.iter().map(|k| codes.key_code(k)));
            Ok(())
        }
    }
}

/// The direct-index table of integer keys spanning at most four slots per key.
fn dense_keys(key_map: &HashMap<KeyValue, u32>, n_keys: usize) -> Option<(i64, Vec<u32>)> {
    let ints: Vec<(i64, u32)> = key_map
        .iter()
        .map(|(k, c)| match k {
            KeyValue::Int(i) => Some((*i, *c)),
            KeyValue::Text(_) => None,
        })
        .collect::<Option<_>>()?;
    let min = ints.iter().map(|(k, _)| *k).min()?;
    let max = ints.iter().map(|(k, _)| *k).max()?;
    let span = usize::try_from(max.checked_sub(min)?)
        .ok()?
        .checked_add(1)?;
    if span > 4 * n_keys + 1024 {
        return None;
    }
    let mut slots = vec![n_keys as u32; span];
    for (k, c) in ints {
        slots[(k - min) as usize] = c;
    }
    Some((min, slots))
}

fn is_integer(catalog: &Catalog, table: &str, column: &str) -> bool {
    matches!(
        catalog
            .table(table)
            .and_then(|t| t.columns.iter().find(|(n, _)| n == column)),
        Some((_, ColumnType::Integer))
    )
}

fn is_numeric(catalog: &Catalog, table: &str, column: &str) -> bool {
    matches!(
        catalog
            .table(table)
            .and_then(|t| t.columns.iter().find(|(n, _)| n == column)),
        Some((
            _,
            ColumnType::Integer | ColumnType::Decimal { .. } | ColumnType::Float
        ))
    )
}

/// Encodes every dimension of `model`. The time axis spans the periods of the facts in `ctx`
/// and, when refreshing a cube, those of its `prior` axis.
pub(crate) async fn build_dims(
    model: &Model,
    catalog: &Catalog,
    ctx: &SessionContext,
    prior: Option<&TimeAxis>,
) -> Result<Encoding> {
    let time = time_axis(model, ctx, prior).await?;
    let mut codes = Vec::new();
    let mut dicts = Vec::new();
    for dim in &model.dimensions {
        match &dim.kind {
            DimensionKind::Time => {
                // Time members, then `unknown` (facts whose date is NULL).
                let names = |g| {
                    let mut names = time.as_ref().map_or_else(Vec::new, |t| t.names(g));
                    names.push(UNKNOWN_MEMBER.to_string());
                    LevelDict::new(names)
                };
                dicts.push(
                    dim.levels
                        .iter()
                        .map(|l| match l.kind {
                            LevelKind::Time(g) => names(g),
                            _ => LevelDict::default(),
                        })
                        .collect(),
                );
                codes.push(None);
            }
            DimensionKind::Table { .. } => {
                let (c, d) = encode_table_dim(dim, catalog, ctx).await?;
                codes.push(Some(c));
                dicts.push(d);
            }
        }
    }
    let via = via_maps(model, catalog, ctx, &codes).await?;
    let mut dims = Encoding {
        time,
        codes,
        via,
        dicts,
        parents: HashMap::new(),
    };
    for (d, dim) in model.dimensions.iter().enumerate() {
        for (i, &ancestor) in dim.hierarchy.iter().enumerate() {
            for &child in &dim.hierarchy[i + 1..] {
                let map = super::lattice::parent_array(&dims, d, child, ancestor);
                dims.parents.insert((d, child, ancestor), map);
            }
        }
    }
    Ok(dims)
}

async fn time_axis(
    model: &Model,
    ctx: &SessionContext,
    prior: Option<&TimeAxis>,
) -> Result<Option<TimeAxis>> {
    let Some(t) = model.time_dimension() else {
        return Ok(None);
    };
    let dim = &model.dimensions[t];
    let Some(&finest) = dim.hierarchy.last() else {
        return Ok(None);
    };
    let LevelKind::Time(grain) = dim.levels[finest].kind else {
        return Err(EngineError::Internal(
            "time dimension with a non-time level".into(),
        ));
    };
    let (mut lo, mut hi): (Option<i64>, Option<i64>) = match prior {
        Some(p) if p.len > 0 && p.grain == grain => {
            (Some(p.first), Some(p.first + p.len as i64 - 1))
        }
        _ => (None, None),
    };
    for fact in &model.facts {
        let Some(col) = &fact.time else { continue };
        let p = period_sql(&ident(&col.column), grain);
        let sql = format!("SELECT MIN({p}), MAX({p}) FROM {}", ident(&fact.name));
        for b in query(ctx, &sql).await? {
            let (min, max) = (ints(&b, 0)?, ints(&b, 1)?);
            if b.num_rows() > 0 && min.is_valid(0) {
                lo = Some(lo.map_or(min.value(0), |l| l.min(min.value(0))));
                hi = Some(hi.map_or(max.value(0), |h| h.max(max.value(0))));
            }
        }
    }
    Ok(Some(match (lo, hi) {
        (Some(lo), Some(hi)) => TimeAxis {
            grain,
            first: lo,
            len: (hi - lo + 1) as usize,
        },
        _ => TimeAxis {
            grain,
            first: 0,
            len: 0,
        },
    }))
}

/// Reads one table dimension: key codes in key order, and the members of its column levels.
async fn encode_table_dim(
    dim: &lattice_defs::model::Dimension,
    catalog: &Catalog,
    ctx: &SessionContext,
) -> Result<(DimCodes, Vec<LevelDict>)> {
    let DimensionKind::Table { table, key, .. } = &dim.kind else {
        return Err(EngineError::Internal(
            "encode_table_dim on a time dimension".into(),
        ));
    };
    let integer_key = is_integer(catalog, table, &key.column);
    let from = dimension_from(dim)
        .ok_or_else(|| EngineError::Internal("no FROM for a table dimension".into()))?;
    let level_sql: Vec<Option<String>> = dim
        .levels
        .iter()
        .map(|l| level_member_sql(dim, l))
        .collect();
    let mut select = vec![format!(
        "{} AS k",
        key_sql(&format!("d.{}", ident(&key.column)), integer_key)
    )];
    select.extend(
        level_sql
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| format!("{s} AS l{i}")),
    );
    let sql = format!("SELECT {} FROM {from} ORDER BY 1", select.join(", "));
    let batches = query(ctx, &sql).await?;

    let mut key_map = HashMap::new();
    // Per level with SQL: the member name of each key (in key order).
    let mut names_by_key: Vec<Vec<Option<String>>> =
        vec![Vec::new(); level_sql.iter().flatten().count()];
    for b in &batches {
        let ks = keys(b, 0, integer_key)?;
        let cols: Vec<_> = (0..names_by_key.len())
            .map(|i| strings(b, i + 1))
            .collect::<Result<_>>()?;
        for (r, k) in ks.into_iter().enumerate() {
            let Some(k) = k else { continue }; // a NULL key cannot be referenced by a fact
            let code = key_map.len() as u32;
            if key_map.insert(k, code).is_some() {
                return Err(EngineError::Internal(format!(
                    "duplicate key in {table} after the uniqueness check"
                )));
            }
            for (names, col) in names_by_key.iter_mut().zip(&cols) {
                names.push(col.is_valid(r).then(|| col.value(r).to_string()));
            }
        }
    }
    let n_keys = key_map.len();

    let mut by_key = Vec::new();
    let mut dicts = Vec::new();
    let mut next_sql_col = 0;
    for (level, sql) in dim.levels.iter().zip(&level_sql) {
        if sql.is_none() {
            by_key.push(None);
            dicts.push(LevelDict::default()); // metric buckets fill theirs later
            continue;
        }
        let names = &names_by_key[next_sql_col];
        next_sql_col += 1;
        let dict = level_dictionary(level, names, catalog);
        let index: HashMap<&str, u32> = dict
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as u32))
            .collect();
        let unknown = index[UNKNOWN_MEMBER];
        let mut map: Vec<u32> = names
            .iter()
            .map(|n| n.as_deref().map_or(unknown, |n| index[n]))
            .collect();
        map.push(unknown); // the unknown key
        by_key.push(Some(map));
        dicts.push(dict);
    }
    let dense = if integer_key {
        dense_keys(&key_map, n_keys)
    } else {
        None
    };
    let codes = DimCodes {
        n_keys,
        key_map,
        integer_key,
        dense,
        by_key,
        metric: dim.levels.iter().map(|_| None).collect(),
    };
    Ok((codes, dicts))
}

/// Members in the order a person expects: bucket labels in bucket order; numbers by value;
/// text alphabetically; `unknown` last.
fn level_dictionary(
    level: &lattice_defs::model::Level,
    names: &[Option<String>],
    catalog: &Catalog,
) -> LevelDict {
    let mut out: Vec<String> = match &level.kind {
        LevelKind::Bucket(b) => b.labels.clone(),
        LevelKind::Column(c) => {
            let mut distinct: Vec<String> = names.iter().flatten().cloned().collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.retain(|n| n != UNKNOWN_MEMBER);
            if is_numeric(catalog, &c.table, &c.column) {
                // Parsed once per member (a key level has a member per key).
                distinct
                    .sort_by_cached_key(|n| Decimal::parse(n).map(|d| d.0).unwrap_or(i128::MAX));
            }
            distinct
        }
        LevelKind::Time(_) => Vec::new(),
    };
    out.push(UNKNOWN_MEMBER.to_string());
    LevelDict::new(out)
}

/// For each dimension with `via: V`: V's key code -> this dimension's key code.
async fn via_maps(
    model: &Model,
    catalog: &Catalog,
    ctx: &SessionContext,
    codes: &[Option<DimCodes>],
) -> Result<Vec<Option<Vec<u32>>>> {
    let mut out = Vec::new();
    for (d, dim) in model.dimensions.iter().enumerate() {
        let DimensionKind::Table {
            key, via: Some(v), ..
        } = &dim.kind
        else {
            out.push(None);
            continue;
        };
        let (Some(mine), Some(theirs)) = (&codes[d], &codes[*v]) else {
            return Err(EngineError::Internal(
                "via between non-table dimensions".into(),
            ));
        };
        let DimensionKind::Table {
            table: vt,
            key: vkey,
            ..
        } = &model.dimensions[*v].kind
        else {
            return Err(EngineError::Internal("via to a time dimension".into()));
        };
        let sql = format!(
            "SELECT {} AS v, {} AS k FROM {}",
            key_sql(&ident(&vkey.column), theirs.integer_key),
            key_sql(
                &ident(&key.column),
                is_integer(catalog, vt, &key.column) && mine.integer_key
            ),
            ident(vt)
        );
        let mut map = vec![mine.n_keys as u32; theirs.n_keys + 1];
        for b in query(ctx, &sql).await? {
            let vk = keys(&b, 0, theirs.integer_key)?;
            let mk = keys(&b, 1, mine.integer_key)?;
            for (a, m) in vk.iter().zip(&mk) {
                let from = theirs.key_code(a);
                if (from as usize) < theirs.n_keys {
                    map[from as usize] = mine.key_code(m);
                }
            }
        }
        out.push(Some(map));
    }
    Ok(out)
}
