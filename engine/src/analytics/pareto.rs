//! Pareto (80/20): how concentrated a measure is over the members of a level — the share of
//! fee income the top 20% of customers bring, the cumulative share curve, and how many
//! members it takes to reach 80%.
//!
//! The members are those a query grouped by the level shows with a value of the measure
//! (under the request's filters and the principal's scope; `unknown` included when facts have
//! no member), ordered by value, largest first, ties by member name. With `N` members and
//! `total` the exact sum of their values:
//!
//! - the curve has a point per rank `k = ceil(i * N / points)` for `i = 0..=points` (distinct
//!   ranks, so at most `points + 1`, from `(0, 0)` to the exact end `k = N`): `x = k / N`, the
//!   exact `cumulative` value of the top `k`, and `y = cumulative / total`;
//! - a cut `c` (0.2) takes the top `ceil(c * N)` members and gives their exact value and share;
//! - a reach `r` (0.8) gives the fewest top members whose cumulative value is at least
//!   `r * total`.
//!
//! Cuts and reaches are decimals with at most six places and are applied exactly (no float
//! rounding in `ceil(c * N)` or the comparison); shares are `f64`. Zero values count as members
//! (at the tail); negative values (a contribution after costs) too, after the zeros, so the
//! curve can rise above 1 and come back down to 1 (the "whale curve"). When the total is zero or
//! negative there is nothing to share: shares and reaches are null, the exact values stand.

use std::time::Instant;

use lattice_defs::model::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{AnalyticsError, AnalyticsMeta, Ctx, default_entity};
use crate::query::Session;
use crate::query::{Filter, QueryError, V};

/// Most curve points a request may ask for.
pub const MAX_POINTS: u32 = 10_000;
/// Most cuts or reaches in one request.
pub const MAX_SHARES: usize = 100;

/// A Pareto request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ParetoQuery {
    /// The level whose members are ranked (default `customer.id`).
    #[serde(default = "default_entity")]
    pub level: String,
    /// The measure whose concentration is measured (an exact one: a sum, a count, or sums and
    /// differences of them).
    pub measure: String,
    /// Which facts count, as a query's filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    /// Shares of the members from the top (default `[0.2]`: the top 20%).
    #[serde(default = "default_cuts")]
    pub cuts: Vec<f64>,
    /// Shares of the total to reach (default `[0.8]`).
    #[serde(default = "default_reach")]
    pub reach: Vec<f64>,
    /// Curve resolution: evenly spaced member ranks (default 100).
    #[serde(default = "default_points")]
    pub points: u32,
}

fn default_cuts() -> Vec<f64> {
    vec![0.2]
}

fn default_reach() -> Vec<f64> {
    vec![0.8]
}

fn default_points() -> u32 {
    100
}

impl ParetoQuery {
    pub fn from_json(text: &str) -> Result<ParetoQuery, AnalyticsError> {
        serde_json::from_str(text).map_err(|e| {
            QueryError::Malformed {
                message: e.to_string(),
            }
            .into()
        })
    }
}

/// One point of the cumulative share curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParetoPoint {
    /// The top `members` members...
    pub members: usize,
    /// ...as a share of all members,
    pub x: f64,
    /// hold `cumulative` (exact)...
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub cumulative: Json,
    /// ...as a share of the total (null when the total is not positive).
    pub y: Option<f64>,
}

/// What the top `cut` of the members hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParetoCut {
    pub cut: f64,
    /// `ceil(cut * N)`.
    pub members: usize,
    /// Their value, exact.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub value: Json,
    /// Their share of the total (null when the total is not positive).
    pub share: Option<f64>,
}

/// How many top members it takes to hold `share` of the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParetoReach {
    pub share: f64,
    /// The fewest top members whose cumulative value is at least `share * total` (null when
    /// the total is not positive).
    pub members: Option<usize>,
    /// `members / N`.
    pub member_share: Option<f64>,
}

/// The concentration of a measure over a level's members.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ParetoAnswer {
    pub level: String,
    pub measure: String,
    /// `N`: the members with a value.
    pub members: usize,
    /// Members whose value is below zero.
    pub negative_members: usize,
    /// The sum of the members' values, exact.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub total: Json,
    pub curve: Vec<ParetoPoint>,
    pub cuts: Vec<ParetoCut>,
    pub reach: Vec<ParetoReach>,
    pub meta: AnalyticsMeta,
}

/// A share given in the request, checked and made exact (millionths).
fn share(field: &'static str, value: f64) -> Result<i128, AnalyticsError> {
    let bad = |why: &str| AnalyticsError::BadThreshold {
        field,
        message: format!("{value} {why}"),
    };
    if !(value > 0.0 && value <= 1.0) {
        return Err(bad(
            "is not a share: give a number above 0 and at most 1 (0.2 for 20%)",
        ));
    }
    // The shortest decimal that reads back as `value` (0.7, not 0.69999...), exactly.
    Decimal::parse(&value.to_string())
        .map(|d| d.0)
        .ok_or_else(|| bad("has more than 6 decimal places"))
}

impl Session {
    /// Ranks the members of `q.level` by `q.measure` and measures how concentrated it is, as
    /// `access` may see it.
    pub async fn pareto(&self, q: &ParetoQuery) -> Result<ParetoAnswer, AnalyticsError> {
        let cube = self.data();
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        if let Some(s) = &ctx.applied.suppress {
            return Err(QueryError::Forbidden {
            message: format!(
                "a Pareto curve shows what the top few members hold, and your role sees no cell of fewer than {} customers",
                s.min
            ),
        }
        .into());
        }
        let level = ctx.entity_level(&q.level, "`level`")?;
        let measure = ctx.measure(&q.measure)?;
        if q.points == 0 || q.points > MAX_POINTS {
            return Err(AnalyticsError::BadThreshold {
                field: "points",
                message: format!("{} curve points: give between 1 and {MAX_POINTS}", q.points),
            });
        }
        for (field, list) in [("cuts", &q.cuts), ("reach", &q.reach)] {
            if list.len() > MAX_SHARES {
                return Err(AnalyticsError::BadThreshold {
                    field,
                    message: format!("{} shares: give at most {MAX_SHARES}", list.len()),
                });
            }
        }
        let cuts = q
            .cuts
            .iter()
            .map(|&c| Ok((c, share("cuts", c)?)))
            .collect::<Result<Vec<_>, AnalyticsError>>()?;
        let reach = q
            .reach
            .iter()
            .map(|&r| Ok((r, share("reach", r)?)))
            .collect::<Result<Vec<_>, AnalyticsError>>()?;
        let filters = ctx.filters(measure, &[level], &q.filters).await?;
        let values = ctx.values(measure, &[level], &filters).await?;

        // Exact values at one scale.
        let mut ranked: Vec<(i128, i8, &str)> = Vec::with_capacity(values.len());
        for (key, v) in &values {
            let (x, s) = match *v {
                V::Null => continue,
                V::Int(i) => (i, 0),
                V::Dec(x, s) => (x, s),
                V::Float(_) => {
                    return Err(AnalyticsError::InexactMeasure {
                        measure: q.measure.clone(),
                    });
                }
            };
            ranked.push((x, s, cube.member_name(level, key[0])));
        }
        // The finest scale among the values (integers are scale 0).
        let scale = ranked.iter().map(|r| r.1).max().unwrap_or(0).max(0);
        let overflow = || QueryError::Engine {
            message: format!("the values of '{}' overflow 128 bits", q.measure),
        };
        let mut members: Vec<(i128, &str)> = Vec::with_capacity(ranked.len());
        for (x, s, name) in ranked {
            let up = 10i128
                .checked_pow((scale - s) as u32)
                .and_then(|f| x.checked_mul(f))
                .ok_or_else(overflow)?;
            members.push((up, name));
        }
        let shares =
            Shares::of(members, scale, q.points as usize, &cuts, &reach).ok_or_else(overflow)?;
        Ok(ParetoAnswer {
            level: q.level.clone(),
            measure: q.measure.clone(),
            members: shares.members,
            negative_members: shares.negative_members,
            total: shares.total,
            curve: shares.curve,
            cuts: shares.cuts,
            reach: shares.reach,
            meta: ctx.meta(start),
        })
    }
}

/// The concentration of exact values (at one scale) over named members.
struct Shares {
    members: usize,
    negative_members: usize,
    total: Json,
    curve: Vec<ParetoPoint>,
    cuts: Vec<ParetoCut>,
    reach: Vec<ParetoReach>,
}

impl Shares {
    /// Ranks `members` (value, name) by value descending then name, and reads the curve at
    /// `points` ranks, each `(cut, millionths)` and each `(reach, millionths)` off the running
    /// totals. `None` when the running total overflows.
    fn of(
        mut members: Vec<(i128, &str)>,
        scale: i8,
        points: usize,
        cuts: &[(f64, i128)],
        reach: &[(f64, i128)],
    ) -> Option<Shares> {
        members.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let n = members.len();
        // cumulative[k]: the top k members' value.
        let mut cumulative = Vec::with_capacity(n + 1);
        cumulative.push(0i128);
        for (v, _) in &members {
            cumulative.push(cumulative[cumulative.len() - 1].checked_add(*v)?);
        }
        let total = cumulative[n];
        let exact = |v: i128| {
            if scale > 0 {
                V::Dec(v, scale)
            } else {
                V::Int(v)
            }
            .json()
        };
        let y = |k: usize| (total > 0).then(|| cumulative[k] as f64 / total as f64);
        let x = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
        let mut curve: Vec<ParetoPoint> = Vec::with_capacity(points.min(n) + 1);
        for i in 0..=points {
            let k = (i * n).div_ceil(points.max(1));
            if curve.last().is_some_and(|p| p.members == k) {
                continue;
            }
            curve.push(ParetoPoint {
                members: k,
                x: x(k),
                cumulative: exact(cumulative[k]),
                y: y(k),
            });
        }
        let unit = 10i128.pow(Decimal::SCALE);
        let cuts = cuts
            .iter()
            .map(|&(cut, c)| {
                // ceil(c * N), c in millionths, at most N.
                let k = ((c * n as i128 + unit - 1) / unit) as usize;
                ParetoCut {
                    cut,
                    members: k,
                    value: exact(cumulative[k]),
                    share: y(k),
                }
            })
            .collect();
        let reach = reach
            .iter()
            .map(|&(share, r)| {
                // The first k with cumulative[k] >= r * total, exactly.
                let k = (total > 0)
                    .then(|| {
                        (0..=n).find(|&k| {
                            cumulative[k]
                                .checked_mul(unit)
                                .zip(r.checked_mul(total))
                                .is_some_and(|(c, t)| c >= t)
                        })
                    })
                    .flatten();
                ParetoReach {
                    share,
                    members: k,
                    member_share: k.map(x),
                }
            })
            .collect();
        Some(Shares {
            members: n,
            negative_members: members.iter().filter(|m| m.0 < 0).count(),
            total: exact(total),
            curve,
            cuts,
            reach,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_exact_decimals_in_range() {
        assert_eq!(share("cuts", 0.2).unwrap(), 200_000);
        assert_eq!(share("cuts", 0.7).unwrap(), 700_000);
        assert_eq!(share("cuts", 1.0).unwrap(), 1_000_000);
        for bad in [0.0, -0.1, 1.5, f64::NAN, 0.123_456_7] {
            let e = share("cuts", bad).unwrap_err();
            assert_eq!(e.code(), "bad_threshold", "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod shares_tests {
    use super::*;

    fn shares(values: &[(i128, &'static str)], points: usize) -> Shares {
        Shares::of(
            values.to_vec(),
            2,
            points,
            &[(0.2, 200_000), (0.7, 700_000), (1.0, 1_000_000)],
            &[(0.8, 800_000), (0.5, 500_000)],
        )
        .expect("no overflow")
    }

    #[test]
    fn ranks_by_value_then_name_and_cuts_exactly() {
        // Ten members: 91.00, then nine of 1.00 (ties by name), total 100.00.
        let mut values = vec![(9100, "z")];
        let names = ["i", "h", "g", "f", "e", "d", "c", "b", "a"];
        values.extend(names.iter().map(|n| (100, *n)));
        let s = shares(&values, 4);
        assert_eq!(s.members, 10);
        assert_eq!(s.total, Json::from("100.00"));
        // Ranks ceil(i * 10 / 4): 0, 3, 5, 8, 10.
        let ranks: Vec<usize> = s.curve.iter().map(|p| p.members).collect();
        assert_eq!(ranks, [0, 3, 5, 8, 10]);
        assert_eq!(s.curve[1].cumulative, Json::from("93.00"));
        assert_eq!(s.curve[1].y, Some(0.93));
        // Top 20%: 2 members; 70%: exactly 7 (not 8, as 0.7 * 10 in floating point would give).
        let tops: Vec<usize> = s.cuts.iter().map(|c| c.members).collect();
        assert_eq!(tops, [2, 7, 10]);
        assert_eq!(s.cuts[1].value, Json::from("97.00"));
        // 80% is reached by the top one member alone; 50% too.
        assert_eq!(s.reach[0].members, Some(1));
        assert_eq!(s.reach[1].members, Some(1));
        assert_eq!(s.reach[0].member_share, Some(0.1));
    }

    #[test]
    fn negative_values_rank_last_and_the_curve_rises_above_one() {
        // Contributions: 80 + 40 + 0 - 20 = 100.
        let s = shares(&[(-2000, "loss"), (8000, "a"), (0, "zero"), (4000, "b")], 4);
        assert_eq!(s.negative_members, 1);
        assert_eq!(s.total, Json::from("100.00"));
        let ys: Vec<Option<f64>> = s.curve.iter().map(|p| p.y).collect();
        assert_eq!(ys, [Some(0.0), Some(0.8), Some(1.2), Some(1.2), Some(1.0)]);
        // 80% is reached by the first member; the top 70% (3 members) hold 120%.
        assert_eq!(s.reach[0].members, Some(1));
        assert_eq!(s.cuts[1].members, 3);
        assert_eq!(s.cuts[1].share, Some(1.2));
    }

    #[test]
    fn a_total_that_is_not_positive_shares_nothing() {
        let s = shares(&[(-500, "a"), (300, "b")], 10);
        assert_eq!(s.total, Json::from("-2.00"));
        assert!(s.curve.iter().all(|p| p.y.is_none()));
        assert!(s.cuts.iter().all(|c| c.share.is_none()));
        assert!(s.reach.iter().all(|r| r.members.is_none()));
        // Nothing at all: one point at the origin, cuts of no members.
        let s = shares(&[], 10);
        assert_eq!(s.members, 0);
        assert_eq!(s.curve.len(), 1);
        assert_eq!(s.cuts[0].members, 0);
        assert_eq!(s.total, Json::from("0.00"));
    }
}
