//! Planning and executing a query: per fact, the smallest cuboid that can derive every level
//! the query groups or filters by (else the fallback), then one shared finish — derived
//! measures, comparison, having, pivot, order, paging and totals — over the merged groups.
//!
//! The finish runs the stages of [`super::finish`] over a [`Frame`]; this module reads the
//! cube for them (the earlier rows a comparison needs, share and row totals, which cells
//! suppression withholds) and turns the page into the [`Answer`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use lattice_defs::model::{FactId, LevelRef, MeasureId, MeasureKind, UNKNOWN_MEMBER};
use roaring::RoaringBitmap;
use serde_json::Value as Json;

use super::answer::{
    Answer, Candidate, Column, Explain, FactMeta, Meta, Subtotal, Suppressed, V, eval, measure_type,
};
use super::error::QueryError;
use super::fallback;
use super::finish::{Frame, HavingCond, Row, SmallCells, SortKey, contains_small};
use super::group::{AggRequest, Grouped};
use super::resolve::{OrderKey, Resolved, ResolvedFilter, resolve};
use super::scan::{closing_periods, scan};
use super::session::Dataset;
use super::spec::{Direction, Query};
use super::visible::{refuse_single_customers, resolve_restricted};
use crate::access::Applied;

/// Answers `query` from `cube`, unrestricted.
pub(crate) async fn execute(cube: &Dataset, query: &Query) -> Result<Answer, QueryError> {
    let start = Instant::now();
    let r = resolve(query, cube)?;
    let mut answer = Exec::new(cube, &r).run().await?;
    answer.meta.elapsed_us = start.elapsed().as_micros() as u64;
    Ok(answer)
}

/// Answers `query` under a principal's applied access.
pub(crate) async fn execute_restricted(
    cube: &Dataset,
    query: &Query,
    applied: &Applied,
) -> Result<Answer, QueryError> {
    if applied.is_unrestricted() {
        return execute(cube, query).await;
    }
    let r = resolve_restricted(cube, query, applied).await?;
    refuse_single_customers(&cube.model, &r, applied)?;
    let mut answer = execute_resolved(cube, &r).await?;
    answer.meta.facts = std::mem::take(&mut answer.meta.facts)
        .into_iter()
        .map(FactMeta::restricted)
        .collect();
    Ok(answer)
}

/// The members of `level` with facts of `fact` under `filters` (a cell's filters, a
/// principal's scope), from the smallest cuboid holding them, else the fallback.
pub(crate) async fn level_members(
    cube: &Dataset,
    fact: FactId,
    level: LevelRef,
    filters: &[ResolvedFilter],
    measure: MeasureId,
) -> Result<RoaringBitmap, QueryError> {
    let req = AggRequest {
        fact,
        levels: &[level],
        filters,
        measures: &[measure],
    };
    Ok(level_members_from(cube, &req).await?.0)
}

/// [`level_members`] of a request, and the path that answered (`cuboid`, `base`, `fallback`).
pub(crate) async fn level_members_from(
    cube: &Dataset,
    req: &AggRequest<'_>,
) -> Result<(RoaringBitmap, &'static str), QueryError> {
    let (grouped, meta) = aggregate(cube, req, false).await?;
    let members = (0..grouped.len()).map(|g| grouped.key(g)[0]).collect();
    Ok((members, meta.source))
}

/// Answers an already resolved query.
pub(crate) async fn execute_resolved(cube: &Dataset, r: &Resolved) -> Result<Answer, QueryError> {
    let start = Instant::now();
    let mut answer = Exec::new(cube, r).run().await?;
    answer.meta.elapsed_us = start.elapsed().as_micros() as u64;
    Ok(answer)
}

/// A measure column of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MCol {
    Plain(MeasureId),
    Prev(MeasureId),
    Change(MeasureId),
    /// The query's `shares[i]`.
    Share(usize),
}

/// Groups of every fact merged: per key (member codes of `levels`), the value of each leaf
/// (aggregate) measure, in [`Exec::leaves`] order.
struct Table {
    rows: BTreeMap<Vec<u32>, Vec<V>>,
    /// When the fallback kept only the first groups of a [`Top`]: how many there are in all.
    groups: Option<usize>,
}

struct Exec<'a> {
    cube: &'a Dataset,
    r: &'a Resolved,
    /// Aggregate measures the query needs (requested or inside derived ones), by fact.
    facts: BTreeMap<FactId, Vec<MeasureId>>,
    leaves: Vec<MeasureId>,
    mcols: Vec<MCol>,
    /// With small-cell suppression: which groups are small.
    small_cells: SmallCells,
}

impl<'a> Exec<'a> {
    fn new(cube: &'a Dataset, r: &'a Resolved) -> Exec<'a> {
        let model = &cube.model;
        let mut leaves = Vec::new();
        for &m in &r.measures {
            collect_leaves(model, m, &mut leaves);
        }
        // Suppression counts the customers of every fact asked about.
        let counts_of: Vec<MeasureId> = r.suppress.as_ref().map_or(Vec::new(), |s| {
            s.counts
                .iter()
                .filter(|(f, _)| {
                    leaves.iter().any(|m| {
                        matches!(model.measures[*m].kind, MeasureKind::Aggregate { fact, .. } if fact == *f)
                    })
                })
                .map(|(_, m)| *m)
                .collect()
        });
        leaves.extend(&counts_of);
        leaves.sort_unstable();
        leaves.dedup();
        let counts = counts_of
            .iter()
            .filter_map(|m| leaves.iter().position(|l| l == m))
            .collect();
        let small_cells = SmallCells {
            min_customers: r.suppress.as_ref().map_or(0, |s| s.min),
            counts,
        };
        let mut facts: BTreeMap<FactId, Vec<MeasureId>> = BTreeMap::new();
        for &m in &leaves {
            if let MeasureKind::Aggregate { fact, .. } = model.measures[m].kind {
                facts.entry(fact).or_default().push(m);
            }
        }
        let mut mcols = Vec::new();
        for &m in &r.measures {
            mcols.push(MCol::Plain(m));
            if r.compare.is_some() {
                mcols.push(MCol::Prev(m));
                mcols.push(MCol::Change(m));
            }
        }
        mcols.extend((0..r.shares.len()).map(MCol::Share));
        Exec {
            cube,
            r,
            facts,
            leaves,
            mcols,
            small_cells,
        }
    }

    /// Whether a group's leaf values have too few customers to be shown.
    fn small(&self, leaf_values: &[V]) -> bool {
        self.small_cells.is_small(leaf_values)
    }

    fn grain(&self) -> Vec<LevelRef> {
        self.r.rows.iter().chain(&self.r.columns).copied().collect()
    }

    /// The answer: the groups at the grain, then the finish's stages in the order the
    /// semantics fix — measures (with compare and shares), suppression, having, pivot,
    /// order, page — and the totals beside them.
    async fn run(&self) -> Result<Answer, QueryError> {
        let r = self.r;
        let pivot = !r.columns.is_empty();
        let grain = self.grain();
        let mut metas = Vec::new();
        let top = self.top();
        let main = self
            .table(&grain, &r.filters, Some(&mut metas), top.as_ref())
            .await?;

        let prev = self.compare_table(&grain).await?;
        let prev = prev.as_ref().unwrap_or(&main);
        let suppressing = r.suppress.is_some();
        let small_keys = self.small_keys(&main);
        let shares = self.share_totals(&main, &small_keys).await?;

        // Logical rows: key, then the value of every measure column. Small cells (and
        // comparisons with a small earlier cell) are nulled here, before having and order.
        let mut frame = self.measures(&main, prev, &shares);
        let mut flags = if suppressing {
            self.withheld(&main, prev, &small_keys, &shares)
        } else {
            HashMap::new()
        };
        frame.suppress(&flags);
        if suppressing {
            let own: Vec<bool> = self
                .mcols
                .iter()
                .map(|c| matches!(c, MCol::Plain(_)))
                .collect();
            frame.drop_withheld(&mut flags, &own);
        }

        // Having, on the measures at the full grain.
        frame.having(&self.having_conds());

        let (mut frame, col_keys) = if pivot {
            frame.pivot(r.rows.len(), self.mcols.len())
        } else {
            (frame, Vec::new())
        };
        let columns = self.columns(pivot.then_some(&col_keys[..]));

        // Order: the keys asked for, then member order (the rows are already in it).
        let row_totals = self.row_totals(&main).await?;
        let hidden_row_totals = self.hidden_row_totals(row_totals.as_ref(), &small_keys);
        if !r.order.is_empty() {
            let totals = row_totals.as_ref().map(|t| (t, &hidden_row_totals));
            frame.order(|row| self.sort_key(row, totals));
        }

        let total_rows = if suppressing {
            frame.rows.len()
        } else {
            main.groups.unwrap_or(frame.rows.len())
        };
        let page = frame.page(r.offset, r.limit);
        let mut suppressed = r.suppress.as_ref().map(|s| Suppressed {
            min_customers: s.min,
            cells: page.withheld_cells(
                pivot.then_some(&col_keys[..]),
                &flags,
                r.rows.len(),
                self.mcols.len(),
            ),
            ..Suppressed::default()
        });
        let json_rows = self.json_rows(page);

        let (totals, subtotals) = if r.totals {
            self.totals(&main, row_totals.as_ref(), &small_keys, suppressed.as_mut())
                .await?
        } else {
            (None, Vec::new())
        };

        Ok(Answer {
            columns,
            rows: json_rows,
            totals,
            subtotals,
            suppressed,
            meta: self.meta(metas, total_rows),
        })
    }

    /// The query's `having` on the positions of its measure columns.
    fn having_conds(&self) -> Vec<HavingCond> {
        self.r
            .having
            .iter()
            .map(|(m, op, x)| (self.mcol(MCol::Plain(*m)), *op, *x))
            .collect()
    }

    /// The page's rows as JSON: the members of `rows`, then the values.
    fn json_rows(&self, page: Frame) -> Vec<Vec<Json>> {
        let levels = &self.r.rows;
        page.rows
            .into_iter()
            .map(|(k, vals)| {
                self.member_json(levels, &k[..levels.len()])
                    .into_iter()
                    .chain(vals.into_iter().map(V::json))
                    .collect()
            })
            .collect()
    }

    fn meta(&self, metas: Vec<FactMeta>, total_rows: usize) -> Meta {
        let path = |p: &str| metas.iter().any(|m| m.source == p);
        Meta {
            source: match (path("fallback"), path("base")) {
                (true, _) => "fallback",
                (false, true) => "base",
                (false, false) => "cuboid",
            },
            cuboid: metas.first().and_then(|m| m.cuboid.clone()),
            facts: metas,
            total_rows,
            elapsed_us: 0,
            snapshot: self.cube.version,
            cached: false,
        }
    }

    /// The position of a measure column, if the answer has it.
    fn mcol(&self, c: MCol) -> Option<usize> {
        self.mcols.iter().position(|x| *x == c)
    }

    /// The frame of the measure columns, one row per group of `main`: the requested
    /// measures, with a comparison each measure's value in `prev` and the change, then the
    /// shares (`shares`: each one's totals).
    fn measures(
        &self,
        main: &Table,
        prev: &Table,
        shares: &[(Table, BTreeSet<Vec<u32>>)],
    ) -> Frame {
        let r = self.r;
        let grain = self.grain();
        let mut frame = Frame {
            rows: main
                .rows
                .iter()
                .map(|(k, v)| (k.clone(), self.outputs(v)))
                .collect(),
        };
        if let Some((l, lag)) = r.compare {
            frame.compare(|key| {
                let pk = self.prev_key(&grain, key, l, lag)?;
                prev.rows.get(&pk).map(|v| self.outputs(v))
            });
        }
        for (s, (totals, _)) in r.shares.iter().zip(shares) {
            frame.share(|key| {
                let part = self.value_of(s.measure, &main.rows[key]);
                let whole = self
                    .share_key(&grain, key, &s.of)
                    .and_then(|k| totals.rows.get(&k))
                    .map_or(V::Null, |t| self.value_of(s.measure, t));
                (part, whole)
            });
        }
        frame
    }

    /// In a pivot ordered by a measure or with totals: the groups at the grain of `rows`
    /// alone (row totals).
    async fn row_totals(&self, main: &Table) -> Result<Option<Table>, QueryError> {
        let r = self.r;
        let by_measure = r
            .order
            .iter()
            .any(|(k, _)| matches!(k, OrderKey::Measure(_)));
        if r.columns.is_empty() || !(r.totals || by_measure) {
            return Ok(None);
        }
        Ok(Some(self.coarser(main, &r.rows).await?))
    }

    /// With suppression, the row totals that hold a small cell (or are small): they order
    /// as nulls.
    fn hidden_row_totals(
        &self,
        row_totals: Option<&Table>,
        small_keys: &BTreeSet<Vec<u32>>,
    ) -> BTreeSet<Vec<u32>> {
        match row_totals {
            Some(t) if self.r.suppress.is_some() => t
                .rows
                .iter()
                .filter(|(k, v)| self.small(v) || contains_small(small_keys, 0, k))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// A row's sort key under the query's `order`: a level's member code, or a measure's
    /// value — in a pivot, that of the row total in `row_totals` (null when withheld).
    fn sort_key(
        &self,
        (k, vals): &Row,
        row_totals: Option<(&Table, &BTreeSet<Vec<u32>>)>,
    ) -> Vec<SortKey> {
        let r = self.r;
        let nr = r.rows.len();
        let mut sk = Vec::new();
        for (key, dir) in &r.order {
            sk.push(match key {
                OrderKey::Level(l) => {
                    let Some(i) = r.rows.iter().chain(&r.columns).position(|g| g == l) else {
                        continue;
                    };
                    SortKey::code(k[i], *dir)
                }
                OrderKey::Measure(m) => {
                    let v = match row_totals {
                        Some((_, hidden)) if hidden.contains(&k[..nr]) => V::Null,
                        Some((t, _)) => t
                            .rows
                            .get(&k[..nr])
                            .map_or(V::Null, |v| self.value_of(*m, v)),
                        None => self.mcol(MCol::Plain(*m)).map_or(V::Null, |i| vals[i]),
                    };
                    SortKey::value(v, *dir)
                }
            });
        }
        sk
    }

    /// The groups a comparison reads: the same grain with the filters on the compared
    /// level's hierarchy lifted, so that the first member shown still has its predecessor.
    /// Other levels of the same dimension (a customer's segment beside a band) stay filtered.
    /// `None`: no comparison, or no filter to lift (the main groups serve).
    async fn compare_table(&self, grain: &[LevelRef]) -> Result<Option<Table>, QueryError> {
        let r = self.r;
        let Some((l, _)) = r.compare else {
            return Ok(None);
        };
        let hierarchy = &self.cube.model().dimensions[l.dim].hierarchy;
        let moves = |f: &LevelRef| {
            f.dim == l.dim
                && (f.level == l.level
                    || (hierarchy.contains(&f.level) && hierarchy.contains(&l.level)))
        };
        if r.filters.iter().all(|f| !moves(&f.level)) {
            return Ok(None);
        }
        let kept: Vec<ResolvedFilter> = r
            .filters
            .iter()
            .filter(|f| !moves(&f.level))
            .cloned()
            .collect();
        Ok(Some(self.table(grain, &kept, None, None).await?))
    }

    /// With suppression, the keys of the small groups of `main`; else none.
    fn small_keys(&self, main: &Table) -> BTreeSet<Vec<u32>> {
        if self.r.suppress.is_none() {
            return BTreeSet::new();
        }
        main.rows
            .iter()
            .filter(|(_, v)| self.small(v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Each share's totals, and (with suppression) the totals that are small or hold a
    /// small cell: a share there would give the withheld total away.
    async fn share_totals(
        &self,
        main: &Table,
        small_keys: &BTreeSet<Vec<u32>>,
    ) -> Result<Vec<(Table, BTreeSet<Vec<u32>>)>, QueryError> {
        let grain = self.grain();
        let mut shares = Vec::with_capacity(self.r.shares.len());
        for s in &self.r.shares {
            let totals = self.coarser(main, &s.of).await?;
            let hidden: BTreeSet<Vec<u32>> = if self.r.suppress.is_some() {
                small_keys
                    .iter()
                    .filter_map(|k| self.share_key(&grain, k, &s.of))
                    .chain(
                        totals
                            .rows
                            .iter()
                            .filter(|(_, v)| self.small(v))
                            .map(|(k, _)| k.clone()),
                    )
                    .collect()
            } else {
                BTreeSet::new()
            };
            shares.push((totals, hidden));
        }
        Ok(shares)
    }

    /// The cells suppression withholds: per key of `main` with any, a flag per measure
    /// column — the row's measures when it is small, the comparison's when the earlier row
    /// is, a share's when the row or its total is withheld.
    fn withheld(
        &self,
        main: &Table,
        prev: &Table,
        small_keys: &BTreeSet<Vec<u32>>,
        shares: &[(Table, BTreeSet<Vec<u32>>)],
    ) -> HashMap<Vec<u32>, Vec<bool>> {
        let r = self.r;
        let grain = self.grain();
        let mut flags = HashMap::new();
        for key in main.rows.keys() {
            let hide = small_keys.contains(key);
            let hide_prev = r
                .compare
                .and_then(|(l, lag)| self.prev_key(&grain, key, l, lag))
                .and_then(|pk| prev.rows.get(&pk))
                .is_some_and(|b| self.small(b));
            let share_hidden: Vec<bool> = r
                .shares
                .iter()
                .zip(shares)
                .map(|(s, (_, hidden))| {
                    let tk = self.share_key(&grain, key, &s.of);
                    hide || tk.is_some_and(|k| hidden.contains(&k))
                })
                .collect();
            if hide || hide_prev || share_hidden.iter().any(|h| *h) {
                let f = self
                    .mcols
                    .iter()
                    .map(|c| match c {
                        MCol::Plain(_) => hide,
                        MCol::Prev(_) => hide_prev,
                        MCol::Change(_) => hide || hide_prev,
                        MCol::Share(i) => share_hidden[*i],
                    })
                    .collect();
                flags.insert(key.clone(), f);
            }
        }
        flags
    }

    /// The key of the row `lag` members of `l` before `key`. Other grouped levels of the same
    /// hierarchy move with it: a coarser one to the shifted member's parent (March's previous
    /// month in the rows `[year, month]` is February, and January's is December of the year
    /// before), a finer time level by as many of its periods (the year before 2025-03 is
    /// 2024-03). `None` when there is no such member.
    fn prev_key(&self, grain: &[LevelRef], key: &[u32], l: LevelRef, lag: u32) -> Option<Vec<u32>> {
        use lattice_defs::model::{LevelKind, TimeGrain};
        let names = |lv: LevelRef| &self.cube.members(lv).names;
        let k = grain.iter().position(|g| *g == l)?;
        let code = key[k];
        if code < lag || names(l)[code as usize] == UNKNOWN_MEMBER {
            return None;
        }
        let shifted = code - lag;
        let mut pk = key.to_vec();
        pk[k] = shifted;
        let model = &self.cube.model;
        let grain_of = |lv: LevelRef| match model.dimensions[lv.dim].levels[lv.level].kind {
            LevelKind::Time(g) => Some(g),
            _ => None,
        };
        let per_year = |g: TimeGrain| match g {
            TimeGrain::Year => Some(1),
            TimeGrain::Quarter => Some(4),
            TimeGrain::Month => Some(12),
            TimeGrain::Day => None,
        };
        for (i, g) in grain.iter().enumerate() {
            if i == k || g.dim != l.dim {
                continue;
            }
            if let Some(map) = self.cube.parent_map(l.dim, l.level, g.level) {
                pk[i] = map[shifted as usize];
            } else if let (Some(gl), Some(gg)) = (grain_of(l), grain_of(*g))
                && gg > gl
            {
                let ratio = per_year(gg)? / per_year(gl)?;
                let by = lag.checked_mul(ratio)?;
                if key[i] < by || names(*g)[key[i] as usize] == UNKNOWN_MEMBER {
                    return None;
                }
                pk[i] = key[i] - by;
            }
        }
        Some(pk)
    }

    /// The key of the total a share of the row `key` (at `grain`) is divided by: each of the
    /// share's levels read from the grain, or mapped up from a finer grouped level of its
    /// hierarchy.
    fn share_key(&self, grain: &[LevelRef], key: &[u32], of: &[LevelRef]) -> Option<Vec<u32>> {
        of.iter()
            .map(|l| match grain.iter().position(|g| g == l) {
                Some(i) => Some(key[i]),
                None => grain.iter().enumerate().find_map(|(i, g)| {
                    let map = self.cube.parent_map(l.dim, g.level, l.level)?;
                    (g.dim == l.dim).then(|| map[key[i] as usize])
                }),
            })
            .collect()
    }

    /// Grand totals (and pivot column totals), and sub-totals.
    /// With suppression (`sup`), a total is withheld when it is small itself or contains a
    /// small cell of `small_keys` (the grain's small keys), so that no hidden cell can be
    /// recovered by subtracting the cells shown from a total.
    async fn totals(
        &self,
        main: &Table,
        row_totals: Option<&Table>,
        small_keys: &BTreeSet<Vec<u32>>,
        mut sup: Option<&mut Suppressed>,
    ) -> Result<(Option<serde_json::Map<String, Json>>, Vec<Subtotal>), QueryError> {
        let map = self
            .grand_totals(main, small_keys, sup.as_deref_mut())
            .await?;
        let subtotals = self.subtotals(main, row_totals, small_keys, sup).await?;
        Ok((Some(map), subtotals))
    }

    /// Whether suppression withholds a total with leaf values `vals` and key `key` (the
    /// grain's levels from `start`).
    fn total_hidden(
        &self,
        small_keys: &BTreeSet<Vec<u32>>,
        vals: &[V],
        start: usize,
        key: &[u32],
    ) -> bool {
        self.r.suppress.is_some() && (self.small(vals) || contains_small(small_keys, start, key))
    }

    /// The grand total of each measure, and in a pivot each column's (`<members>|<measure>`).
    async fn grand_totals(
        &self,
        main: &Table,
        small_keys: &BTreeSet<Vec<u32>>,
        mut sup: Option<&mut Suppressed>,
    ) -> Result<serde_json::Map<String, Json>, QueryError> {
        let r = self.r;
        let model = &self.cube.model;
        let mut map = serde_json::Map::new();
        let grand = self.coarser(main, &[]).await?;
        let values = grand
            .rows
            .get(&Vec::new())
            .cloned()
            .unwrap_or_else(|| self.empty_leaves());
        // One total per measure under `prefix` (a pivot column's members), withheld or not.
        let mut put = |prefix: &str, vals: &[V], hide: bool| {
            for (m, v) in r.measures.iter().zip(self.outputs(vals)) {
                let name = format!("{prefix}{}", model.measures[*m].name);
                if hide {
                    if let Some(s) = sup.as_deref_mut() {
                        s.totals.push(name.clone());
                    }
                    map.insert(name, Json::Null);
                } else {
                    map.insert(name, v.json());
                }
            }
        };
        put("", &values, self.total_hidden(small_keys, &values, 0, &[]));
        if !r.columns.is_empty() {
            let nr = r.rows.len();
            let by_col = self.coarser(main, &r.columns).await?;
            for (k, vals) in &by_col.rows {
                let member = self.member_path(&r.columns, k);
                let hide = self.total_hidden(small_keys, vals, nr, k);
                put(&format!("{member}|"), vals, hide);
            }
        }
        Ok(map)
    }

    /// A sub-total per leading part of `rows` (the whole of it in a pivot, from
    /// `row_totals`), withheld rows listed in `sup`.
    async fn subtotals(
        &self,
        main: &Table,
        row_totals: Option<&Table>,
        small_keys: &BTreeSet<Vec<u32>>,
        mut sup: Option<&mut Suppressed>,
    ) -> Result<Vec<Subtotal>, QueryError> {
        let r = self.r;
        let nr = r.rows.len();
        let mut subtotals = Vec::new();
        for n in 1..=nr {
            let owned;
            let t: &Table = match (n == nr, row_totals) {
                (true, Some(t)) => t,
                (true, None) => break,
                (false, _) => {
                    owned = self.coarser(main, &r.rows[..n]).await?;
                    &owned
                }
            };
            let index = subtotals.len();
            let mut hidden_rows = Vec::new();
            let rows = t
                .rows
                .iter()
                .enumerate()
                .map(|(j, (k, vals))| {
                    let hide = self.total_hidden(small_keys, vals, 0, k);
                    if hide {
                        hidden_rows.push([index, j]);
                    }
                    self.member_json(&r.rows[..n], k)
                        .into_iter()
                        .chain(
                            self.outputs(vals)
                                .into_iter()
                                .map(|v| if hide { Json::Null } else { v.json() }),
                        )
                        .collect()
                })
                .collect();
            if let Some(s) = sup.as_deref_mut() {
                s.subtotals.extend(hidden_rows);
            }
            subtotals.push(Subtotal {
                levels: r.rows[..n]
                    .iter()
                    .map(|l| self.cube.model.level_name(*l))
                    .collect(),
                rows,
            });
        }
        Ok(subtotals)
    }

    /// The aggregates at `levels`, part of the grain, over the query's filters: rolled up in
    /// memory from `main` (the grain's aggregates) when every leaf measure adds up (sums,
    /// counts, minimums, maximums; not distinct counts, not closing-period balances), else
    /// aggregated again from a cuboid or the fallback.
    async fn coarser(&self, main: &Table, levels: &[LevelRef]) -> Result<Table, QueryError> {
        use lattice_defs::model::{Agg, OverTime};
        let model = &self.cube.model;
        let grain = self.grain();
        let aggs: Option<Vec<Agg>> = self
            .leaves
            .iter()
            .map(|m| match &model.measures[*m].kind {
                MeasureKind::Aggregate {
                    agg: agg @ (Agg::Sum | Agg::Count | Agg::Min | Agg::Max),
                    over_time: OverTime::Additive,
                    ..
                } => Some(*agg),
                _ => None,
            })
            .collect();
        let positions: Option<Vec<usize>> = levels
            .iter()
            .map(|l| grain.iter().position(|g| g == l))
            .collect();
        let (Some(aggs), Some(positions)) = (aggs, positions) else {
            return self.table(levels, &self.r.filters, None, None).await;
        };
        let mut rows: BTreeMap<Vec<u32>, Vec<V>> = BTreeMap::new();
        if levels.is_empty() {
            rows.insert(Vec::new(), self.empty_leaves());
        }
        for (key, vals) in &main.rows {
            let k: Vec<u32> = positions.iter().map(|&i| key[i]).collect();
            match rows.entry(k) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(vals.clone());
                }
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    for ((acc, v), agg) in e.get_mut().iter_mut().zip(vals).zip(&aggs) {
                        *acc = fold(*agg, *acc, *v);
                    }
                }
            }
        }
        Ok(Table { rows, groups: None })
    }

    /// The answer's columns: the `rows` levels, then each measure column (in a pivot, each
    /// under every column key of `col_keys`).
    fn columns(&self, col_keys: Option<&[Vec<u32>]>) -> Vec<Column> {
        let r = self.r;
        let mut columns: Vec<Column> = r
            .rows
            .iter()
            .map(|l| Column {
                name: self.cube.model.level_name(*l),
                kind: "level",
                ty: None,
            })
            .collect();
        let prefixes: Vec<String> = match col_keys {
            None => vec![String::new()],
            Some(keys) => keys
                .iter()
                .map(|ck| format!("{}|", self.member_path(&r.columns, ck)))
                .collect(),
        };
        for prefix in &prefixes {
            for mc in &self.mcols {
                columns.push(Column {
                    name: format!("{prefix}{}", self.mcol_name(*mc)),
                    kind: "measure",
                    ty: Some(self.mcol_type(*mc)),
                });
            }
        }
        columns
    }

    fn member_json(&self, levels: &[LevelRef], key: &[u32]) -> Vec<Json> {
        levels
            .iter()
            .zip(key)
            .map(|(l, c)| Json::String(self.cube.member_name(*l, *c).to_string()))
            .collect()
    }

    fn member_path(&self, levels: &[LevelRef], key: &[u32]) -> String {
        levels
            .iter()
            .zip(key)
            .map(|(l, c)| self.cube.member_name(*l, *c))
            .collect::<Vec<_>>()
            .join("|")
    }

    fn mcol_name(&self, c: MCol) -> String {
        let name = |m: MeasureId| self.cube.model.measures[m].name.clone();
        match c {
            MCol::Plain(m) => name(m),
            MCol::Prev(m) => format!("{}_prev", name(m)),
            MCol::Change(m) => format!("{}_change", name(m)),
            MCol::Share(i) => self.r.shares[i].name.clone(),
        }
    }

    fn mcol_type(&self, c: MCol) -> &'static str {
        match c {
            MCol::Plain(m) | MCol::Prev(m) => {
                measure_type(&self.cube.model, &self.cube.index.scales, m)
            }
            MCol::Change(_) | MCol::Share(_) => "number",
        }
    }

    /// The requested measures' values from a row's leaf values.
    fn outputs(&self, leaf_values: &[V]) -> Vec<V> {
        self.r
            .measures
            .iter()
            .map(|m| self.value_of(*m, leaf_values))
            .collect()
    }

    fn value_of(&self, m: MeasureId, leaf_values: &[V]) -> V {
        let get = |x: MeasureId| {
            self.leaves
                .iter()
                .position(|l| *l == x)
                .map_or(V::Null, |i| leaf_values[i])
        };
        eval(&self.cube.model, m, &get)
    }

    /// Leaf values of an aggregate over no rows: SQL's NULL for sums, 0 for counts.
    fn empty_leaves(&self) -> Vec<V> {
        self.leaves
            .iter()
            .map(|m| match &self.cube.model.measures[*m].kind {
                MeasureKind::Aggregate {
                    agg: lattice_defs::model::Agg::Count | lattice_defs::model::Agg::Distinct,
                    ..
                } => V::Int(0),
                _ => V::Null,
            })
            .collect()
    }

    /// Every fact's aggregates at `levels`, merged by key.
    async fn table(
        &self,
        levels: &[LevelRef],
        filters: &[ResolvedFilter],
        mut metas: Option<&mut Vec<FactMeta>>,
        top: Option<&Top>,
    ) -> Result<Table, QueryError> {
        // The principal's scope applies to every aggregate, whatever else is lifted.
        let scoped: Vec<ResolvedFilter>;
        let filters = if self.r.scope.is_empty() {
            filters
        } else {
            scoped = filters.iter().chain(&self.r.scope).cloned().collect();
            &scoped
        };
        let mut rows: BTreeMap<Vec<u32>, Vec<V>> = BTreeMap::new();
        let n = self.leaves.len();
        if levels.is_empty() {
            // Like SQL's aggregate without GROUP BY: one row, even over no facts.
            rows.insert(Vec::new(), self.empty_leaves());
        }
        // Every fact at once: with two facts on the fallback, two DataFusion queries overlap.
        let reqs: Vec<AggRequest<'_>> = self
            .facts
            .iter()
            .map(|(&fact, measures)| AggRequest {
                fact,
                levels,
                filters,
                measures,
            })
            .collect();
        let answers = futures::future::try_join_all(
            reqs.iter()
                .map(|req| aggregate_top(self.cube, req, self.r.explain, top)),
        )
        .await?;
        let mut groups = None;
        for (grouped, meta, all) in answers {
            groups = all;
            if let Some(metas) = metas.as_deref_mut() {
                metas.push(meta);
            }
            // Where each of the fact's aggregates goes among the leaves, found once.
            let slots: Vec<(usize, usize)> = grouped
                .measures
                .iter()
                .enumerate()
                .filter_map(|(j, m)| Some((j, self.leaves.iter().position(|l| l == m)?)))
                .collect();
            for g in 0..grouped.len() {
                let slot = rows
                    .entry(grouped.key(g).to_vec())
                    .or_insert_with(|| vec![V::Null; n]);
                for &(j, i) in &slots {
                    slot[i] = grouped.accs[j].value(g).into();
                }
            }
        }
        Ok(Table { rows, groups })
    }

    /// The order and limit the fallback may apply itself: with one fact and nothing after the
    /// aggregation that needs every group (having, comparison, shares, suppression, totals,
    /// a pivot), ordered by levels and the fact's own aggregate measures. The answer is the
    /// same; DataFusion keeps the first `offset + limit` groups (a top-k) instead of handing
    /// every group (100k customers) to the finish.
    fn top(&self) -> Option<Top> {
        let r = self.r;
        let limit = r.limit?;
        let grain = self.grain();
        let (_, measures) = self.facts.iter().next()?;
        if self.facts.len() != 1
            || grain.is_empty()
            || r.compare.is_some()
            || !r.having.is_empty()
            || !r.shares.is_empty()
            || r.suppress.is_some()
            || r.totals
            || !r.columns.is_empty()
        {
            return None;
        }
        let mut order = Vec::new();
        for (key, dir) in &r.order {
            match key {
                OrderKey::Level(l) => {
                    if let Some(i) = grain.iter().position(|g| g == l) {
                        order.push((TopKey::Level(i), *dir));
                    }
                }
                // A measure not asked for orders every row alike, as in the finish.
                OrderKey::Measure(m) if !r.measures.contains(m) => {}
                OrderKey::Measure(m) => {
                    let j = measures.iter().position(|x| x == m)?;
                    order.push((TopKey::Measure(j), *dir));
                }
            }
        }
        // At least one group comes back whenever there is one, and with it the count.
        let limit = r.offset.checked_add(limit).filter(|l| *l > 0)?;
        Some(Top { order, limit })
    }
}

/// What a fallback may order and keep itself: positions among the request's levels and
/// measures, and how many groups to keep (see [`Exec::top`]).
#[derive(Debug, Clone)]
pub(crate) struct Top {
    pub order: Vec<(TopKey, Direction)>,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TopKey {
    Level(usize),
    Measure(usize),
}

/// Aggregates one fact: from the smallest cuboid that covers the request, else the fallback.
pub(crate) async fn aggregate(
    cube: &Dataset,
    req: &AggRequest<'_>,
    explain: bool,
) -> Result<(Grouped, FactMeta), QueryError> {
    let (grouped, meta, _) = aggregate_top(cube, req, explain, None).await?;
    Ok((grouped, meta))
}

/// Base rows above which the base path gives way once before its scan.
const YIELD_ROWS: usize = 100_000;

/// [`aggregate`], where the fallback may keep only the first groups of `top` (a cuboid scan
/// keeps every group); then also the number of groups in all.
async fn aggregate_top(
    cube: &Dataset,
    req: &AggRequest<'_>,
    explain: bool,
    top: Option<&Top>,
) -> Result<(Grouped, FactMeta, Option<usize>), QueryError> {
    let plan = Plan::new(cube, req, explain);
    let closing = closing_for(cube, req);
    let fact_name = cube.model.facts[req.fact].name.clone();
    if let Some(&best) = plan.candidates.first() {
        let c = &cube.cuboids[best];
        let grouped = scan(cube, c, req, closing.as_ref());
        let reason = format!(
            "the smallest of the {} cuboids that hold (or roll up to) every grouped and filtered level",
            plan.candidates.len()
        );
        return Ok((
            grouped,
            FactMeta {
                fact: fact_name,
                source: "cuboid",
                cuboid: Some(plan.names(&c.levels)),
                cells: Some(c.len()),
                explain: plan.explained(reason, None),
            },
            None,
        ));
    }
    let started = Instant::now();
    let missed = |took| cube.missed.record(req.fact, &plan.needs, took);
    if cube.base.has(cube, req.fact) {
        // A scan of many rows gives way once first, so that a server's first poll of the
        // question does not run it on an I/O thread (it moves it to its query runtime).
        if cube.base_rows(req.fact) > YIELD_ROWS {
            tokio::task::yield_now().await;
        }
        let built = cube
            .base
            .cuboid(cube, req)
            .map_err(|e| QueryError::Engine {
                message: format!("the base scan failed: {e}"),
            })?;
        if let Some(c) = built {
            let grouped = scan(cube, &c, req, closing.as_ref());
            missed(started.elapsed());
            let reason = format!(
                "no cuboid of {fact_name} holds {}; aggregated from its base rows ({} rows)",
                plan.names(&plan.needs).join(", "),
                cube.base_rows(req.fact)
            );
            return Ok((
                grouped,
                FactMeta {
                    fact: fact_name,
                    source: "base",
                    cuboid: None,
                    cells: Some(c.len()),
                    explain: plan.explained(reason, None),
                },
                None,
            ));
        }
    }
    let fb = cube.fallback.as_ref().ok_or_else(|| QueryError::Engine {
        message: format!(
            "no cuboid of {fact_name} holds {} and this cube has no sources to fall back to",
            plan.names(&plan.needs).join(", ")
        ),
    })?;
    let (grouped, sql, groups) = fallback::aggregate(cube, fb, req, closing.as_ref(), top)
        .await
        .map_err(|e| QueryError::Engine {
            message: format!("the fallback query failed: {e}"),
        })?;
    missed(started.elapsed());
    let reason = format!(
        "no cuboid of {fact_name} holds {}; answered by DataFusion over the raw facts",
        plan.names(&plan.needs).join(", ")
    );
    Ok((
        grouped,
        FactMeta {
            fact: fact_name,
            source: "fallback",
            cuboid: None,
            cells: None,
            explain: plan.explained(reason, Some(sql)),
        },
        groups,
    ))
}

/// Where one fact's aggregates can come from: the levels a request needs (grouped or
/// filtered) and the cuboids that cover them, smallest first — every one only to explain,
/// else just the smallest.
struct Plan<'c> {
    cube: &'c Dataset,
    needs: Vec<LevelRef>,
    candidates: Vec<usize>,
    explain: bool,
}

impl<'c> Plan<'c> {
    fn new(cube: &'c Dataset, req: &AggRequest<'_>, explain: bool) -> Plan<'c> {
        let mut needs: Vec<LevelRef> = req.levels.to_vec();
        needs.extend(req.filters.iter().map(|f| f.level));
        needs.sort_unstable();
        needs.dedup();
        let covering = |i: &usize| {
            let c = &cube.cuboids[*i];
            c.fact == req.fact && needs.iter().all(|l| cube.covers(*i, *l))
        };
        let by_size = cube.cuboids_by_size().iter().copied();
        let candidates: Vec<usize> = if explain {
            by_size.filter(covering).collect()
        } else {
            by_size.filter(covering).take(1).collect()
        };
        Plan {
            cube,
            needs,
            candidates,
            explain,
        }
    }

    fn names(&self, levels: &[LevelRef]) -> Vec<String> {
        levels
            .iter()
            .map(|l| self.cube.model.level_name(*l))
            .collect()
    }

    /// The explanation of the choice, when asked for.
    fn explained(&self, reason: String, sql: Option<String>) -> Option<Explain> {
        self.explain.then(|| Explain {
            needs: self.names(&self.needs),
            candidates: self
                .candidates
                .iter()
                .map(|&i| Candidate {
                    cuboid: self.names(&self.cube.cuboids[i].levels),
                    cells: Some(self.cube.cuboids[i].len()),
                })
                .collect(),
            reason,
            sql,
        })
    }
}

/// The closing periods a request reads; they matter only to semi-additive measures.
fn closing_for(cube: &Dataset, req: &AggRequest<'_>) -> Option<RoaringBitmap> {
    let semi = req.measures.iter().any(|m| {
        matches!(
            cube.model.measures[*m].kind,
            MeasureKind::Aggregate {
                over_time: lattice_defs::model::OverTime::Last,
                ..
            }
        )
    });
    semi.then(|| closing_periods(cube, req.fact, req.levels, req.filters))
        .flatten()
}

pub(crate) fn collect_leaves(model: &lattice_defs::Model, m: MeasureId, out: &mut Vec<MeasureId>) {
    match &model.measures[m].kind {
        MeasureKind::Aggregate { .. } => out.push(m),
        MeasureKind::Derived(e) => {
            let mut refs = Vec::new();
            e.measures(&mut refs);
            for x in refs {
                collect_leaves(model, x, out);
            }
        }
    }
}

/// Two partial aggregates of one measure combined, as SQL would over their rows (NULL is no
/// value).
fn fold(agg: lattice_defs::model::Agg, a: V, b: V) -> V {
    use lattice_defs::model::{Agg, BinOp};
    match (a, b) {
        (V::Null, x) | (x, V::Null) => x,
        _ => match agg {
            Agg::Min if cmp_v(b, a).is_lt() => b,
            Agg::Max if cmp_v(b, a).is_gt() => b,
            Agg::Min | Agg::Max => a,
            _ => V::binary(BinOp::Add, a, b),
        },
    }
}

pub(crate) fn cmp_v(a: V, b: V) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let exact = |v: V| match v {
        V::Dec(x, s) => Some((x, s)),
        V::Int(i) => Some((i, 0)),
        _ => None,
    };
    if let (Some((x, sx)), Some((y, sy))) = (exact(a), exact(b)) {
        let s = sx.max(sy);
        let up = |v: i128, from: i8| v.checked_mul(10i128.pow((s - from) as u32));
        if let (Some(x), Some(y)) = (up(x, sx), up(y, sy)) {
            return x.cmp(&y);
        }
    }
    a.as_f64()
        .partial_cmp(&b.as_f64())
        .unwrap_or(Ordering::Equal)
}
