//! The finish of a query as stages over one table type, [`Frame`]: the rows of the answer
//! between the aggregation and the JSON, each a key of member codes and a value per measure
//! column. [`super::exec`] runs the stages in the order the semantics ask (module docs of
//! [`super`]): compare and shares fill the measure columns, suppression nulls small cells,
//! then having, pivot, order and page; the totals are read beside them from the groups.
//!
//! Each stage is a plain function of its inputs (no cube), so that it can be tested on small
//! hand-made frames.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::answer::V;
use super::exec::cmp_v;
use super::spec::{Direction, HavingOp};

/// One row: its key (member codes of the grain's levels; of `rows` alone after the pivot)
/// and its values (one per measure column; after the pivot, one per column key and measure
/// column).
pub(super) type Row = (Vec<u32>, Vec<V>);

/// The answer's rows while they are finished, in member order (the order of their keys)
/// until [`Frame::order`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Frame {
    pub rows: Vec<Row>,
}

/// A `having` condition on a measure column: its position (`None`: not a column of the
/// answer, which no row passes), the operator and the number compared with.
pub(super) type HavingCond = (Option<usize>, HavingOp, f64);

impl Frame {
    /// Compare: after each value (the frame holds the plain measures), the value of the row
    /// `before` gives for the row's key (the outputs of the row a compared member earlier;
    /// `None`: there is none) and the change from it.
    pub fn compare(&mut self, before: impl Fn(&[u32]) -> Option<Vec<V>>) {
        for (key, vals) in &mut self.rows {
            let before = before(key);
            let mut out = Vec::with_capacity(vals.len() * 3);
            for (i, v) in vals.iter().enumerate() {
                let p = before.as_ref().map_or(V::Null, |b| b[i]);
                out.extend([*v, p, change(*v, p)]);
            }
            *vals = out;
        }
    }

    /// Shares: one more value per row, its part over its whole, as `part_whole` gives them
    /// for the row's key; a number, null when either is null or the whole is zero.
    pub fn share(&mut self, mut part_whole: impl FnMut(&[u32]) -> (V, V)) {
        for (key, vals) in &mut self.rows {
            let (part, whole) = part_whole(key);
            vals.push(ratio(part, whole));
        }
    }

    /// Suppression: nulls the values `flags` withholds (per row key, a flag per value).
    pub fn suppress(&mut self, flags: &HashMap<Vec<u32>, Vec<bool>>) {
        for (key, vals) in &mut self.rows {
            let Some(f) = flags.get(key) else { continue };
            for (v, hide) in vals.iter_mut().zip(f) {
                if *hide {
                    *v = V::Null;
                }
            }
        }
    }

    /// Under suppression: drops the rows that show nothing because of it (every value null,
    /// some withheld), and forgets their flags. Such a row would still say that its members
    /// have between 1 and the threshold of customers, so a grouping that pins one customer by
    /// attributes would list, row by row, what that customer is (a band every month, the
    /// products held); without it a small cell looks like an empty one.
    /// `own[i]`: whether value column `i` is the row's own cell (a measure), not a value of
    /// another cell beside it (a comparison's earlier value).
    pub fn drop_withheld(&mut self, flags: &mut HashMap<Vec<u32>, Vec<bool>>, own: &[bool]) {
        self.rows.retain(|(key, vals)| {
            let withheld = flags.get(key).is_some_and(|f| f.iter().any(|h| *h));
            let keep = !withheld || vals.iter().zip(own).any(|(v, o)| *o && *v != V::Null);
            if !keep {
                flags.remove(key);
            }
            keep
        });
    }

    /// Keeps the rows that pass every condition; a null value fails every condition.
    pub fn having(&mut self, conds: &[HavingCond]) {
        self.rows.retain(|(_, vals)| {
            conds.iter().all(|&(i, op, x)| {
                i.and_then(|i| vals[i].as_f64())
                    .is_some_and(|v| having(op, v, x))
            })
        });
    }

    /// Sorts the rows by the keys `sort_key` gives each; ties keep the order they had (member
    /// order), nulls sort last in either direction.
    pub fn order(&mut self, mut sort_key: impl FnMut(&Row) -> Vec<SortKey>) {
        let keys: Vec<Vec<SortKey>> = self.rows.iter().map(&mut sort_key).collect();
        let mut idx: Vec<usize> = (0..self.rows.len()).collect();
        // A stable sort: ties keep member order.
        idx.sort_by(|a, b| cmp_keys(&keys[*a], &keys[*b]));
        let mut taken: Vec<Option<Row>> = std::mem::take(&mut self.rows)
            .into_iter()
            .map(Some)
            .collect();
        self.rows = idx.into_iter().filter_map(|i| taken[i].take()).collect();
    }

    /// Pivots rows at the full grain (`nr` levels of `rows`, then those of `columns`; `width`
    /// values each) into one row per `rows` key holding `width` values per column key present,
    /// both in member order; a combination without a row is null. Returns the column keys too.
    pub fn pivot(self, nr: usize, width: usize) -> (Frame, Vec<Vec<u32>>) {
        let keys: BTreeSet<Vec<u32>> = self.rows.iter().map(|(k, _)| k[nr..].to_vec()).collect();
        let col_keys: Vec<Vec<u32>> = keys.into_iter().collect();
        let col_index: HashMap<&[u32], usize> = col_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_slice(), i))
            .collect();
        let mut by_row: BTreeMap<Vec<u32>, Vec<V>> = BTreeMap::new();
        for (k, vals) in &self.rows {
            let slot = by_row
                .entry(k[..nr].to_vec())
                .or_insert_with(|| vec![V::Null; width * col_keys.len()]);
            let c = col_index[&k[nr..]];
            slot[c * width..(c + 1) * width].copy_from_slice(vals);
        }
        let rows = by_row.into_iter().collect();
        (Frame { rows }, col_keys)
    }

    /// The page `offset..offset + limit` of the rows (no limit: to the end).
    pub fn page(self, offset: u64, limit: Option<u64>) -> Frame {
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        Frame {
            rows: self.rows.into_iter().skip(offset).take(limit).collect(),
        }
    }
}

impl Frame {
    /// The cells of a page that suppression withholds, as `[row, column]` of the answer:
    /// `flags` by full key (rows then columns), a flag per measure column; the measure
    /// columns start after `nr` level columns, `width` per column key in a pivot
    /// (`col_keys`).
    pub fn withheld_cells(
        &self,
        col_keys: Option<&[Vec<u32>]>,
        flags: &HashMap<Vec<u32>, Vec<bool>>,
        nr: usize,
        width: usize,
    ) -> Vec<[usize; 2]> {
        let mut cells = Vec::new();
        for (j, (k, _)) in self.rows.iter().enumerate() {
            let mut mark = |full: &[u32], first: usize| {
                if let Some(f) = flags.get(full) {
                    let cols = f.iter().enumerate().filter(|(_, h)| **h);
                    cells.extend(cols.map(|(i, _)| [j, first + i]));
                }
            };
            match col_keys {
                Some(col_keys) => {
                    for (c, ck) in col_keys.iter().enumerate() {
                        let full: Vec<u32> = k.iter().chain(ck).copied().collect();
                        mark(&full, nr + c * width);
                    }
                }
                None => mark(k, nr),
            }
        }
        cells
    }
}

/// Small-cell suppression's test of a group, on its leaf values.
#[derive(Debug, Clone, Default)]
pub(super) struct SmallCells {
    /// The fewest customers a cell needs.
    pub min_customers: u64,
    /// The leaf positions of the customer counts of the facts asked about.
    pub counts: Vec<usize>,
}

impl SmallCells {
    /// Whether a group has too few customers to be shown: some fact has between 1 and
    /// `min_customers - 1` of them (none at all is not small; a null count is not either).
    pub fn is_small(&self, leaf_values: &[V]) -> bool {
        self.counts.iter().any(|&i| match leaf_values[i] {
            V::Int(n) => n > 0 && n < i128::from(self.min_customers),
            _ => false,
        })
    }
}

/// Whether some small key has `key` as its part from `start` (the key's levels being the
/// grain's levels `start..start + key.len()`, or a leading part of rows when `start` is 0).
pub(super) fn contains_small(small_keys: &BTreeSet<Vec<u32>>, start: usize, key: &[u32]) -> bool {
    small_keys
        .iter()
        .any(|s| s.get(start..start + key.len()) == Some(key))
}

/// `part / whole` as a number; NULL when either is NULL or the whole is 0.
fn ratio(part: V, whole: V) -> V {
    match (part.as_f64(), whole.as_f64()) {
        (Some(p), Some(w)) if w != 0.0 => {
            let x = p / w;
            if x.is_finite() { V::Float(x) } else { V::Null }
        }
        _ => V::Null,
    }
}

/// `(current - previous) / previous`; NULL when either is NULL or the previous is 0.
fn change(cur: V, prev: V) -> V {
    match (cur.as_f64(), prev.as_f64()) {
        (Some(c), Some(p)) if p != 0.0 => {
            let x = (c - p) / p;
            if x.is_finite() { V::Float(x) } else { V::Null }
        }
        _ => V::Null,
    }
}

fn having(op: HavingOp, v: f64, x: f64) -> bool {
    match op {
        HavingOp::Gt => v > x,
        HavingOp::Ge => v >= x,
        HavingOp::Lt => v < x,
        HavingOp::Le => v <= x,
        HavingOp::Eq => v == x,
        HavingOp::Ne => v != x,
    }
}

/// One part of a row's sort key.
#[derive(Debug, Clone, Copy)]
pub(super) enum SortKey {
    Code(u32, Direction),
    /// `None`: NULL, which sorts last in both directions.
    Value(Option<V>, Direction),
}

impl SortKey {
    pub fn code(c: u32, d: Direction) -> SortKey {
        SortKey::Code(c, d)
    }
    pub fn value(v: V, d: Direction) -> SortKey {
        SortKey::Value((v != V::Null).then_some(v), d)
    }
}

fn cmp_keys(a: &[SortKey], b: &[SortKey]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (SortKey::Code(x, d), SortKey::Code(y, _)) => directed(x.cmp(y), *d),
            (SortKey::Value(None, _), SortKey::Value(None, _)) => Ordering::Equal,
            (SortKey::Value(None, _), SortKey::Value(Some(_), _)) => Ordering::Greater,
            (SortKey::Value(Some(_), _), SortKey::Value(None, _)) => Ordering::Less,
            (SortKey::Value(Some(x), d), SortKey::Value(Some(y), _)) => directed(cmp_v(*x, *y), *d),
            _ => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn directed(o: Ordering, d: Direction) -> Ordering {
    match d {
        Direction::Asc => o,
        Direction::Desc => o.reverse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame of one-level keys `0..` with one value each.
    fn frame(vals: &[V]) -> Frame {
        Frame {
            rows: (0u32..)
                .zip(vals)
                .map(|(k, v)| (vec![k], vec![*v]))
                .collect(),
        }
    }

    fn keys(f: &Frame) -> Vec<u32> {
        f.rows.iter().map(|(k, _)| k[0]).collect()
    }

    #[test]
    fn compare_adds_previous_and_change_after_each_measure() {
        let mut f = Frame {
            rows: vec![
                (vec![0], vec![V::Int(10), V::Null]),
                (vec![1], vec![V::Int(15), V::Int(4)]),
                (vec![2], vec![V::Int(5), V::Int(0)]),
            ],
        };
        // Member 0 has no earlier one (the first, or `unknown`); each other row's is the one
        // before.
        let earlier = f.clone();
        f.compare(|k| {
            let pk = k[0].checked_sub(1)?;
            Some(earlier.rows[pk as usize].1.clone())
        });
        let n = V::Null;
        let want = [
            vec![V::Int(10), n, n, n, n, n],
            vec![V::Int(15), V::Int(10), V::Float(0.5), V::Int(4), n, n],
            vec![
                V::Int(5),
                V::Int(15),
                V::Float(-2.0 / 3.0),
                V::Int(0),
                V::Int(4),
                V::Float(-1.0),
            ],
        ];
        let got: Vec<_> = f.rows.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn compare_with_a_zero_earlier_value_has_no_change() {
        let mut f = frame(&[V::Int(3)]);
        f.compare(|_| Some(vec![V::Int(0)]));
        assert_eq!(f.rows[0].1, [V::Int(3), V::Int(0), V::Null]);
        let mut f = Frame::default();
        f.compare(|_| unreachable!("no rows"));
        assert!(f.rows.is_empty());
    }

    #[test]
    fn share_appends_part_over_whole() {
        let mut f = frame(&[V::Int(1), V::Int(2), V::Int(3), V::Null]);
        // Row 2's whole is unknown (no total), row 1's is zero.
        f.share(|k| match k[0] {
            0 => (V::Int(1), V::Int(4)),
            1 => (V::Int(2), V::Int(0)),
            2 => (V::Int(3), V::Null),
            _ => (V::Null, V::Int(4)),
        });
        let shares: Vec<_> = f.rows.iter().map(|(_, v)| v[1]).collect();
        assert_eq!(shares, [V::Float(0.25), V::Null, V::Null, V::Null]);
        let mut f = Frame::default();
        f.share(|_| unreachable!("no rows"));
        assert!(f.rows.is_empty());
    }

    #[test]
    fn suppress_nulls_only_the_flagged_values() {
        let mut f = Frame {
            rows: vec![
                (vec![0], vec![V::Int(1), V::Int(2)]),
                (vec![1], vec![V::Int(3), V::Null]),
            ],
        };
        let flags = HashMap::from([(vec![1], vec![true, false]), (vec![7], vec![true, true])]);
        f.suppress(&flags);
        assert_eq!(f.rows[0].1, [V::Int(1), V::Int(2)]);
        assert_eq!(f.rows[1].1, [V::Null, V::Null]);
        let mut f = Frame::default();
        f.suppress(&flags);
        assert!(f.rows.is_empty());
    }

    #[test]
    fn rows_showing_nothing_because_of_suppression_are_dropped() {
        let mut f = Frame {
            rows: vec![
                (vec![0], vec![V::Null, V::Null]),     // withheld entirely: dropped
                (vec![1], vec![V::Null, V::Int(4)]),   // one value withheld, one shown: kept
                (vec![2], vec![V::Null, V::Null]),     // empty, nothing withheld: kept
                (vec![3], vec![V::Int(9), V::Int(8)]), // nothing withheld
            ],
        };
        let mut flags = HashMap::from([
            (vec![0], vec![true, true]),
            (vec![1], vec![true, false]),
            (vec![2], vec![false, false]),
        ]);
        f.drop_withheld(&mut flags, &[true, true]);
        assert_eq!(keys(&f), [1, 2, 3]);
        assert!(!flags.contains_key(&vec![0]));
        assert!(flags.contains_key(&vec![1]));
        // A row whose own cell is withheld goes even with another cell's value beside it.
        let mut f = Frame {
            rows: vec![(vec![1], vec![V::Null, V::Int(4)])],
        };
        f.drop_withheld(&mut flags, &[true, false]);
        assert!(f.rows.is_empty());
        let mut f = Frame::default();
        f.drop_withheld(&mut flags, &[true, true]);
        assert!(f.rows.is_empty());
    }

    #[test]
    fn having_keeps_rows_that_pass_and_nulls_fail() {
        let mut f = frame(&[V::Int(5), V::Null, V::Dec(150, 1), V::Float(2.0)]);
        f.having(&[(Some(0), HavingOp::Ge, 5.0)]);
        assert_eq!(keys(&f), [0, 2]);
        let mut f = frame(&[V::Int(5), V::Null]);
        f.having(&[(Some(0), HavingOp::Ne, 7.0)]);
        assert_eq!(keys(&f), [0], "null fails even !=");
    }

    #[test]
    fn having_on_a_ties_and_every_condition() {
        let mut f = frame(&[V::Int(3), V::Int(3), V::Int(4)]);
        f.having(&[(Some(0), HavingOp::Eq, 3.0), (Some(0), HavingOp::Le, 3.0)]);
        assert_eq!(keys(&f), [0, 1]);
    }

    #[test]
    fn having_on_an_unknown_column_keeps_nothing() {
        let mut f = frame(&[V::Int(3)]);
        f.having(&[(None, HavingOp::Gt, 0.0)]);
        assert!(f.rows.is_empty());
    }

    #[test]
    fn having_without_conditions_or_rows() {
        let mut f = frame(&[V::Null]);
        f.having(&[]);
        assert_eq!(keys(&f), [0]);
        let mut f = Frame::default();
        f.having(&[(Some(0), HavingOp::Gt, 0.0)]);
        assert_eq!(f, Frame::default());
    }

    #[test]
    fn order_puts_nulls_last_either_way_and_keeps_ties() {
        let vals = [V::Int(2), V::Null, V::Dec(10, 1), V::Int(2), V::Float(3.5)];
        for (dir, want) in [
            (Direction::Asc, [2, 0, 3, 4, 1]),
            (Direction::Desc, [4, 0, 3, 2, 1]),
        ] {
            let mut f = frame(&vals);
            f.order(|(_, v)| vec![SortKey::value(v[0], dir)]);
            assert_eq!(keys(&f), want, "{dir:?}");
        }
    }

    #[test]
    fn order_by_codes_then_values() {
        let mut f = Frame {
            rows: vec![
                (vec![0, 1], vec![V::Int(1)]),
                (vec![0, 2], vec![V::Int(9)]),
                (vec![1, 0], vec![V::Int(5)]),
            ],
        };
        f.order(|(k, v)| {
            vec![
                SortKey::code(k[0], Direction::Desc),
                SortKey::value(v[0], Direction::Desc),
            ]
        });
        let order: Vec<_> = f.rows.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(order, [vec![1, 0], vec![0, 2], vec![0, 1]]);
    }

    #[test]
    fn order_of_nothing() {
        let mut f = Frame::default();
        f.order(|_| Vec::new());
        assert!(f.rows.is_empty());
        let mut f = frame(&[V::Int(2), V::Int(1)]);
        f.order(|_| Vec::new());
        assert_eq!(keys(&f), [0, 1], "no keys: member order");
    }

    #[test]
    fn pivot_spreads_columns_and_fills_gaps_with_null() {
        // Rows (row member, column member): (0, 1), (0, 0), (1, 1); two values each.
        let f = Frame {
            rows: vec![
                (vec![0, 0], vec![V::Int(1), V::Null]),
                (vec![0, 1], vec![V::Int(2), V::Int(3)]),
                (vec![1, 1], vec![V::Int(4), V::Int(5)]),
            ],
        };
        let (p, cols) = f.pivot(1, 2);
        assert_eq!(cols, [vec![0], vec![1]]);
        let n = V::Null;
        assert_eq!(
            p.rows,
            [
                (vec![0], vec![V::Int(1), n, V::Int(2), V::Int(3)]),
                (vec![1], vec![n, n, V::Int(4), V::Int(5)]),
            ]
        );
    }

    #[test]
    fn pivot_in_member_order_with_unknown_last() {
        // The highest code stands for `unknown`, which the dictionaries put after every member.
        let f = Frame {
            rows: vec![
                (vec![2, u32::MAX], vec![V::Int(1)]),
                (vec![1, 0], vec![V::Int(2)]),
            ],
        };
        let (p, cols) = f.pivot(1, 1);
        assert_eq!(cols, [vec![0], vec![u32::MAX]]);
        let keys: Vec<_> = p.rows.iter().map(|(k, _)| k[0]).collect();
        assert_eq!(keys, [1, 2]);
        assert_eq!(p.rows[1].1, [V::Null, V::Int(1)]);
    }

    #[test]
    fn pivot_of_nothing_has_no_columns() {
        let (p, cols) = Frame::default().pivot(1, 3);
        assert!(p.rows.is_empty() && cols.is_empty());
    }

    #[test]
    fn pivot_without_row_levels_is_one_row() {
        let f = Frame {
            rows: vec![(vec![0], vec![V::Int(1)]), (vec![1], vec![V::Int(2)])],
        };
        let (p, _) = f.pivot(0, 1);
        assert_eq!(p.rows, [(vec![], vec![V::Int(1), V::Int(2)])]);
    }

    #[test]
    fn withheld_cells_by_row_and_column() {
        let f = Frame {
            rows: vec![(vec![0], vec![V::Null; 2]), (vec![1], vec![V::Null; 2])],
        };
        let flags = HashMap::from([(vec![1], vec![false, true])]);
        assert_eq!(f.withheld_cells(None, &flags, 1, 2), [[1, 2]]);
        assert!(f.withheld_cells(None, &HashMap::new(), 1, 2).is_empty());
        assert!(
            Frame::default()
                .withheld_cells(None, &flags, 1, 2)
                .is_empty()
        );
    }

    #[test]
    fn withheld_cells_in_a_pivot_by_full_key() {
        // One row member (0), column members 3 and 4, two measure columns each.
        let f = Frame {
            rows: vec![(vec![0], vec![V::Null; 4])],
        };
        let flags = HashMap::from([
            (vec![0, 4], vec![true, true]),
            (vec![0, 9], vec![true, true]),
        ]);
        let cols = [vec![3], vec![4]];
        assert_eq!(
            f.withheld_cells(Some(&cols), &flags, 1, 2),
            [[0, 3], [0, 4]]
        );
    }

    #[test]
    fn small_cells_are_between_one_and_the_minimum() {
        let small = SmallCells {
            min_customers: 3,
            counts: vec![1, 2],
        };
        let cell = |a: V, b: V| small.is_small(&[V::Int(100), a, b]);
        assert!(cell(V::Int(1), V::Int(9)));
        assert!(cell(V::Int(9), V::Int(2)), "any fact's count");
        assert!(!cell(V::Int(3), V::Int(3)), "the minimum itself is shown");
        assert!(!cell(V::Int(0), V::Int(0)), "no customers is not small");
        assert!(!cell(V::Null, V::Null));
        assert!(!SmallCells::default().is_small(&[]), "no suppression");
    }

    #[test]
    fn contains_small_matches_a_part_of_a_small_key() {
        let small = BTreeSet::from([vec![1, 2, 3]]);
        assert!(
            contains_small(&small, 0, &[]),
            "the grand total holds every cell"
        );
        assert!(contains_small(&small, 0, &[1, 2]));
        assert!(contains_small(&small, 1, &[2, 3]));
        assert!(!contains_small(&small, 0, &[2]));
        assert!(!contains_small(&small, 2, &[3, 4]), "past the key's end");
        assert!(!contains_small(&BTreeSet::new(), 0, &[]));
    }

    #[test]
    fn stages_in_order_on_one_frame() {
        // Rows (region, month) with one measure; region 1 month 0 is small and withheld.
        let mut f = Frame {
            rows: vec![
                (vec![0, 0], vec![V::Int(4)]),
                (vec![0, 1], vec![V::Int(6)]),
                (vec![1, 0], vec![V::Int(1)]),
                (vec![1, 1], vec![V::Int(2)]),
                (vec![2, 1], vec![V::Null]),
            ],
        };
        let earlier: HashMap<Vec<u32>, Vec<V>> = f.rows.iter().cloned().collect();
        f.compare(|k| {
            let m = k[1].checked_sub(1)?;
            earlier.get(&vec![k[0], m]).cloned()
        });
        let flags = HashMap::from([
            (vec![1, 0], vec![true, false, true]),
            (vec![1, 1], vec![false, true, true]),
        ]);
        f.suppress(&flags);
        // Region 2's null fails the condition; region 1's withheld month 0 too.
        f.having(&[(Some(0), HavingOp::Ge, 2.0)]);
        let (mut p, cols) = f.pivot(1, 3);
        assert_eq!(cols, [vec![0], vec![1]]);
        p.order(|(_, v)| vec![SortKey::value(v[3], Direction::Asc)]);
        let n = V::Null;
        assert_eq!(
            p.rows,
            [
                (vec![1], vec![n, n, n, V::Int(2), n, n]),
                (
                    vec![0],
                    vec![V::Int(4), n, n, V::Int(6), V::Int(4), V::Float(0.5)]
                ),
            ]
        );
        // Flags go by full key: region 1's month 0, dropped by having (its withheld value is
        // null), still lists its empty slot as withheld.
        let cells = p.withheld_cells(Some(&cols), &flags, 1, 3);
        assert_eq!(cells, [[0, 1], [0, 3], [0, 5], [0, 6]]);
        assert_eq!(p.page(1, Some(5)).rows.len(), 1);
    }

    #[test]
    fn page_skips_and_limits() {
        let f = frame(&[V::Int(0), V::Int(1), V::Int(2), V::Int(3)]);
        assert_eq!(keys(&f.clone().page(1, Some(2))), [1, 2]);
        assert_eq!(keys(&f.clone().page(2, None)), [2, 3]);
        assert_eq!(keys(&f.clone().page(0, Some(0))), Vec::<u32>::new());
        assert_eq!(keys(&f.clone().page(9, Some(1))), Vec::<u32>::new());
        assert_eq!(keys(&f.page(u64::MAX, Some(u64::MAX))), Vec::<u32>::new());
        assert_eq!(Frame::default().page(0, None), Frame::default());
    }

    #[test]
    fn ratio_and_change_are_null_on_null_or_zero() {
        assert_eq!(ratio(V::Int(1), V::Int(4)), V::Float(0.25));
        assert_eq!(ratio(V::Int(1), V::Int(0)), V::Null);
        assert_eq!(ratio(V::Null, V::Int(4)), V::Null);
        assert_eq!(ratio(V::Int(1), V::Null), V::Null);
        assert_eq!(change(V::Dec(150, 1), V::Int(10)), V::Float(0.5));
        assert_eq!(change(V::Int(3), V::Int(0)), V::Null);
        assert_eq!(change(V::Null, V::Int(3)), V::Null);
        assert_eq!(change(V::Int(3), V::Null), V::Null);
    }
}
