//! Abnormal change: the members of an entity level whose measure changed abnormally.
//!
//! - `change`: between periods `before` and `after` of a time level, by more than `relative`
//!   (a share of the before value) and/or `absolute` (in the measure's unit), in `direction`.
//! - `outlier`: the change (relative by default) is an outlier among the entity's `peers` (the
//!   members of the same `customer.segment`, say): the modified z-score
//!   `0.6745 * (x - median) / MAD` over the changes of the peer group exceeds `z` (3.5).
//! - `dormant`: active (a non-zero `measure`, e.g. `txn_count`) in some period before the
//!   last `periods` periods up to `as_of`, and in none of those.
//!
//! Values per (member, period) come from the engine's aggregation, so a balance "in 2025-Q1"
//! is its closing-month balance, as in any query. A member with facts in only one of the two
//! periods changed from or to 0 (its missing value is shown as null). Rows come by impact:
//! the size of the change (for `dormant`, the activity before), largest first, then member
//! order.

use std::collections::BTreeMap;
use std::time::Instant;

use lattice_defs::model::{BinOp, Decimal, LevelRef, MeasureId};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::{
    AnalyticsError, AnalyticsMeta, Ctx, abs, default_entity, default_level, only, or_zero, page,
};
use crate::query::Session;
use crate::query::{Filter, QueryError, V, cmp_v};

/// Which abnormality to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AbnormalKind {
    Change,
    Outlier,
    Dormant,
}

impl AbnormalKind {
    fn name(self) -> &'static str {
        match self {
            AbnormalKind::Change => "change",
            AbnormalKind::Outlier => "outlier",
            AbnormalKind::Dormant => "dormant",
        }
    }
}

/// Which way a change must go to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ChangeDirection {
    Down,
    Up,
    #[default]
    Any,
}

/// What an outlier's change is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// `(after - before) / |before|`; members with no before value are left out.
    #[default]
    Relative,
    /// `after - before`.
    Absolute,
}

/// An abnormal-change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AbnormalQuery {
    pub kind: AbnormalKind,
    /// The level whose members are listed (default `customer.id`).
    #[serde(default = "default_entity")]
    pub entity: String,
    /// The measure that changes (for `dormant`: the activity, e.g. `txn_count`).
    pub measure: String,
    /// The time level of the periods (default `time.month`).
    #[serde(default = "default_level")]
    pub level: String,
    /// `change`, `outlier`: the two periods compared, earlier first.
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    /// `change`: the least share of the before value the change exceeds (0.5: by more than
    /// half).
    #[serde(default)]
    pub relative: Option<f64>,
    /// `change`: the least size of the change, in the measure's unit.
    #[serde(default)]
    pub absolute: Option<f64>,
    /// `change`, `outlier`: `down`, `up` or `any` (default).
    #[serde(default)]
    pub direction: ChangeDirection,
    /// `outlier`: the level whose members are the peer groups (`customer.segment`).
    #[serde(default)]
    pub peers: Option<String>,
    /// `outlier`: `relative` (default) or `absolute` changes.
    #[serde(default)]
    pub basis: Option<Basis>,
    /// `outlier`: the modified z-score a change must exceed (default 3.5).
    #[serde(default)]
    pub z: Option<f64>,
    /// `dormant`: how many periods without activity.
    #[serde(default)]
    pub periods: Option<u32>,
    /// `dormant`: the last period of the quiet window (default: the latest with activity).
    #[serde(default)]
    pub as_of: Option<String>,
    /// Which facts count, as a query's filters.
    #[serde(default)]
    pub filters: Vec<Filter>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

impl AbnormalQuery {
    /// Reads the request; a page beyond [`crate::query::MAX_PAGE_ROWS`] is refused.
    pub fn from_json(text: &str) -> Result<AbnormalQuery, AnalyticsError> {
        let q: AbnormalQuery = serde_json::from_str(text).map_err(|e| QueryError::Malformed {
            message: e.to_string(),
        })?;
        crate::query::check_page(q.limit, q.offset)?;
        Ok(q)
    }
}

/// One member whose change is abnormal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbnormalRow {
    pub member: String,
    /// `outlier`: the member's peer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The measure before and after (for `dormant`: over every period before the quiet
    /// window, and over the window); null where the member has no facts.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub before: Json,
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub after: Json,
    /// `after - before`, a missing value counting 0.
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub change: Json,
    /// `change / |before|`; null when before is null or 0.
    pub relative_change: Option<f64>,
    /// `outlier`: the modified z-score of the change within the peer group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub z: Option<f64>,
    /// `dormant`: the last period with activity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_active: Option<String>,
    /// What the rows are ordered by: `|change|` (for `dormant`, `|before|`).
    #[cfg_attr(feature = "openapi", schema(value_type = serde_json::Value))]
    pub impact: Json,
}

/// The abnormal members, by impact.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbnormalAnswer {
    pub kind: AbnormalKind,
    pub entity: String,
    pub measure: String,
    pub level: String,
    /// The periods compared (`change`, `outlier`), or the quiet window (`dormant`).
    pub periods: Vec<String>,
    /// Members found (before paging).
    pub total: usize,
    pub rows: Vec<AbnormalRow>,
    pub meta: AnalyticsMeta,
}

impl Session {
    /// Lists the members of `q.entity` whose `q.measure` changed abnormally, as `access` may see
    /// them.
    pub async fn abnormal(&self, q: &AbnormalQuery) -> Result<AbnormalAnswer, AnalyticsError> {
        let start = Instant::now();
        let mut ctx = Ctx::new(self).await?;
        refuse_suppressed(&ctx)?;
        let entity = ctx.entity_level(&q.entity, "`entity`")?;
        let measure = ctx.measure(&q.measure)?;
        let level = ctx.time_level(&q.level, "`level`")?;
        let (periods, mut rows) = match q.kind {
            AbnormalKind::Change | AbnormalKind::Outlier => {
                let (before, after, b, a) = compared_periods(&ctx, q, level)?;
                let rows = if q.kind == AbnormalKind::Change {
                    refuse_given(
                        q,
                        &[
                            ("peers", q.peers.is_some()),
                            ("basis", q.basis.is_some()),
                            ("z", q.z.is_some()),
                        ],
                    )?;
                    change(&mut ctx, q, entity, measure, level, (b, a)).await?
                } else {
                    refuse_given(
                        q,
                        &[
                            ("relative", q.relative.is_some()),
                            ("absolute", q.absolute.is_some()),
                        ],
                    )?;
                    outlier(&mut ctx, q, entity, measure, level, (b, a)).await?
                };
                (vec![before.to_string(), after.to_string()], rows)
            }
            AbnormalKind::Dormant => {
                refuse_given(
                    q,
                    &[
                        ("before", q.before.is_some()),
                        ("after", q.after.is_some()),
                        ("relative", q.relative.is_some()),
                        ("absolute", q.absolute.is_some()),
                        ("peers", q.peers.is_some()),
                        ("basis", q.basis.is_some()),
                        ("z", q.z.is_some()),
                        ("direction", q.direction != ChangeDirection::Any),
                    ],
                )?;
                dormant(&mut ctx, q, entity, measure, level).await?
            }
        };
        rows.sort_by(|(ca, ia, _), (cb, ib, _)| cmp_v(*ib, *ia).then(ca.cmp(cb)));
        let total = rows.len();
        let rows = page(rows, q.offset, q.limit)
            .into_iter()
            .map(|(_, _, r)| r)
            .collect();
        Ok(AbnormalAnswer {
            kind: q.kind,
            entity: q.entity.clone(),
            measure: q.measure.clone(),
            level: q.level.clone(),
            periods,
            total,
            rows,
            meta: ctx.meta(start),
        })
    }
}

/// The list shows single members' values: a principal under small-cell suppression is
/// refused.
fn refuse_suppressed(ctx: &Ctx<'_>) -> Result<(), AnalyticsError> {
    if let Some(s) = &ctx.applied.suppress {
        return Err(QueryError::Forbidden {
            message: format!(
                "the abnormal-change list shows single members' values, and your role sees no cell of fewer than {} customers",
                s.min
            ),
        }
        .into());
    }
    Ok(())
}

/// The first field named in `fields` that is given, which `q.kind` does not take, refused.
fn refuse_given(q: &AbnormalQuery, fields: &[(&'static str, bool)]) -> Result<(), AnalyticsError> {
    match fields.iter().find(|(_, given)| *given) {
        Some(&(field, _)) => Err(AnalyticsError::NotApplicable {
            kind: q.kind.name(),
            field,
        }),
        None => Ok(()),
    }
}

/// The two periods a `change` or `outlier` compares (without the `dormant` fields): their
/// names and codes, the first earlier.
fn compared_periods<'q>(
    ctx: &Ctx<'_>,
    q: &'q AbnormalQuery,
    level: LevelRef,
) -> Result<(&'q str, &'q str, u32, u32), AnalyticsError> {
    let kind = q.kind.name();
    refuse_given(
        q,
        &[
            ("periods", q.periods.is_some()),
            ("as_of", q.as_of.is_some()),
        ],
    )?;
    let missing = |field, hint| AnalyticsError::Missing { kind, field, hint };
    let before = q.before.as_deref().ok_or_else(|| {
        missing(
            "before",
            "the earlier period, a member of `level` (\"2025-05\")",
        )
    })?;
    let after = q.after.as_deref().ok_or_else(|| {
        missing(
            "after",
            "the later period, a member of `level` (\"2025-06\")",
        )
    })?;
    let (b, a) = (ctx.period(level, before)?, ctx.period(level, after)?);
    if b >= a {
        return Err(AnalyticsError::PeriodOrder {
            level: q.level.clone(),
            before: before.to_string(),
            after: after.to_string(),
        });
    }
    Ok((before, after, b, a))
}

/// A row with its sort key: (member code, impact, row).
type Found = (u32, V, AbnormalRow);

/// An exact decimal from a JSON number (its shortest text: 0.5 is exactly 5/10).
fn exact(x: f64, field: &'static str, hint: &str) -> Result<V, AnalyticsError> {
    if !x.is_finite() || x <= 0.0 {
        return Err(AnalyticsError::BadThreshold {
            field,
            message: format!("{x} is not a positive number; {hint}"),
        });
    }
    let d = Decimal::parse(&x.to_string()).ok_or_else(|| AnalyticsError::BadThreshold {
        field,
        message: format!("{x} has more than {} decimal digits", Decimal::SCALE),
    })?;
    Ok(V::Dec(d.0, Decimal::SCALE as i8))
}

fn goes(direction: ChangeDirection, diff: V) -> bool {
    let sign = cmp_v(diff, V::Int(0));
    match direction {
        ChangeDirection::Down => sign.is_lt(),
        ChangeDirection::Up => sign.is_gt(),
        ChangeDirection::Any => sign.is_ne(),
    }
}

/// The before and after values of one member, and its change.
struct Pair {
    before: V,
    after: V,
    diff: V,
    relative: Option<f64>,
}

impl Pair {
    fn new(before: V, after: V) -> Pair {
        let diff = V::binary(BinOp::Sub, or_zero(after), or_zero(before));
        let relative = match (diff.as_f64(), abs(before).as_f64()) {
            (Some(d), Some(b)) if b != 0.0 => Some(d / b).filter(|r| r.is_finite()),
            _ => None,
        };
        Pair {
            before,
            after,
            diff,
            relative,
        }
    }

    fn row(&self, member: String) -> AbnormalRow {
        AbnormalRow {
            member,
            peer: None,
            before: self.before.json(),
            after: self.after.json(),
            change: self.diff.json(),
            relative_change: self.relative,
            z: None,
            last_active: None,
            impact: abs(self.diff).json(),
        }
    }
}

/// Per member (the first key part), its values in periods `b` and `a` (the last key part),
/// and the middle key parts (the peer group).
async fn pairs(
    ctx: &mut Ctx<'_>,
    q: &AbnormalQuery,
    measure: MeasureId,
    levels: &[LevelRef],
    level: LevelRef,
    (b, a): (u32, u32),
) -> Result<BTreeMap<Vec<u32>, Pair>, AnalyticsError> {
    let mut filters = ctx.filters(measure, levels, &q.filters).await?;
    filters.push(only(level, [b, a]));
    let values = ctx.values(measure, levels, &filters).await?;
    let mut both: BTreeMap<Vec<u32>, (V, V)> = BTreeMap::new();
    for (key, v) in values {
        let (period, member) = key.split_last().expect("grouped by a period");
        let slot = both.entry(member.to_vec()).or_insert((V::Null, V::Null));
        if *period == b {
            slot.0 = v;
        } else {
            slot.1 = v;
        }
    }
    Ok(both
        .into_iter()
        .filter(|(_, (x, y))| *x != V::Null || *y != V::Null)
        .map(|(k, (x, y))| (k, Pair::new(x, y)))
        .collect())
}

async fn change(
    ctx: &mut Ctx<'_>,
    q: &AbnormalQuery,
    entity: LevelRef,
    measure: MeasureId,
    level: LevelRef,
    periods: (u32, u32),
) -> Result<Vec<Found>, AnalyticsError> {
    let relative = q
        .relative
        .map(|x| {
            exact(
                x,
                "relative",
                "it is the size of the change as a share of the before value (0.5: by more than half); give `direction` for its sign",
            )
        })
        .transpose()?;
    let absolute = q
        .absolute
        .map(|x| {
            exact(
                x,
                "absolute",
                "it is the size of the change in the measure's unit; give `direction` for its sign",
            )
        })
        .transpose()?;
    if relative.is_none() && absolute.is_none() {
        return Err(AnalyticsError::Missing {
            kind: "change",
            field: "relative",
            hint: "give `relative` (a share of the before value, 0.5 for half), `absolute` (in the measure's unit), or both",
        });
    }
    let pairs = pairs(ctx, q, measure, &[entity, level], level, periods).await?;
    let mut out = Vec::new();
    for (key, p) in pairs {
        let size = abs(p.diff);
        let big_relative = relative.is_none_or(|r| {
            let base = abs(p.before);
            p.before != V::Null
                && cmp_v(base, V::Int(0)).is_ne()
                && cmp_v(size, V::binary(BinOp::Mul, r, base)).is_gt()
        });
        let big_absolute = absolute.is_none_or(|x| cmp_v(size, x).is_gt());
        if goes(q.direction, p.diff) && big_relative && big_absolute {
            let member = ctx.cube.member_name(entity, key[0]).to_string();
            out.push((key[0], size, p.row(member)));
        }
    }
    Ok(out)
}

/// The median of sorted finite numbers (the mean of the middle two for an even count).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// The consistency constant of the modified z-score (Iglewicz and Hoaglin): 0.6745 MAD
/// estimates one standard deviation of normal data.
const MAD_TO_Z: f64 = 0.6745;
const DEFAULT_Z: f64 = 3.5;

async fn outlier(
    ctx: &mut Ctx<'_>,
    q: &AbnormalQuery,
    entity: LevelRef,
    measure: MeasureId,
    level: LevelRef,
    periods: (u32, u32),
) -> Result<Vec<Found>, AnalyticsError> {
    let peers_name = q.peers.as_deref().ok_or(AnalyticsError::Missing {
        kind: "outlier",
        field: "peers",
        hint: "the level whose members are the peer groups, such as customer.segment",
    })?;
    let peers = ctx.entity_level(peers_name, "`peers`")?;
    if peers == entity {
        return Err(AnalyticsError::BadPeers {
            level: peers_name.to_string(),
            message:
                "the peer groups must be coarser than the entity (customer.segment for customer.id)"
                    .into(),
        });
    }
    let threshold = q.z.unwrap_or(DEFAULT_Z);
    if !threshold.is_finite() || threshold <= 0.0 {
        return Err(AnalyticsError::BadThreshold {
            field: "z",
            message: format!(
                "{threshold} is not a positive number; it is the size of the z-score (3.5 is usual); give `direction` for its sign"
            ),
        });
    }
    let basis = q.basis.unwrap_or_default();
    let pairs = pairs(ctx, q, measure, &[entity, peers, level], level, periods).await?;
    // Each member in one peer group.
    let mut peer_of: BTreeMap<u32, u32> = BTreeMap::new();
    for key in pairs.keys() {
        if let Some(other) = peer_of.insert(key[0], key[1])
            && other != key[1]
        {
            let name = |l, c| ctx.cube.member_name(l, c).to_string();
            return Err(AnalyticsError::BadPeers {
                level: peers_name.to_string(),
                message: format!(
                    "'{}' of {} is in both '{}' and '{}' in these periods; peers must be one group per member (a fixed attribute such as customer.segment)",
                    name(entity, key[0]),
                    q.entity,
                    name(peers, other),
                    name(peers, key[1]),
                ),
            });
        }
    }
    let x = |p: &Pair| match basis {
        Basis::Relative => p.relative,
        Basis::Absolute => p.diff.as_f64(),
    };
    let mut groups: BTreeMap<u32, Vec<f64>> = BTreeMap::new();
    for (key, p) in &pairs {
        if let Some(v) = x(p) {
            groups.entry(key[1]).or_default().push(v);
        }
    }
    let stats: BTreeMap<u32, (f64, f64)> = groups
        .into_iter()
        .map(|(g, mut xs)| {
            xs.sort_by(f64::total_cmp);
            let m = median(&xs);
            let mut dev: Vec<f64> = xs.iter().map(|v| (v - m).abs()).collect();
            dev.sort_by(f64::total_cmp);
            (g, (m, median(&dev)))
        })
        .collect();
    let mut out = Vec::new();
    for (key, p) in &pairs {
        let Some(v) = x(p) else { continue };
        let (m, mad) = stats[&key[1]];
        if mad <= 0.0 {
            continue; // no spread: nothing stands out
        }
        let z = MAD_TO_Z * (v - m) / mad;
        let hit = match q.direction {
            ChangeDirection::Down => z < -threshold,
            ChangeDirection::Up => z > threshold,
            ChangeDirection::Any => z.abs() > threshold,
        };
        if hit {
            let mut row = p.row(ctx.cube.member_name(entity, key[0]).to_string());
            row.peer = Some(ctx.cube.member_name(peers, key[1]).to_string());
            row.z = Some(z);
            out.push((key[0], abs(p.diff), row));
        }
    }
    Ok(out)
}

fn active(v: V) -> bool {
    v.as_f64().is_some_and(|x| x != 0.0)
}

async fn dormant(
    ctx: &mut Ctx<'_>,
    q: &AbnormalQuery,
    entity: LevelRef,
    measure: MeasureId,
    level: LevelRef,
) -> Result<(Vec<String>, Vec<Found>), AnalyticsError> {
    let n = q.periods.ok_or(AnalyticsError::Missing {
        kind: "dormant",
        field: "periods",
        hint: "how many periods of `level` without activity make a member dormant (3)",
    })?;
    if n == 0 {
        return Err(AnalyticsError::BadThreshold {
            field: "periods",
            message: "0 periods: give at least 1".into(),
        });
    }
    let base = ctx.filters(measure, &[entity, level], &q.filters).await?;
    let by_period = ctx.values(measure, &[entity, level], &base).await?;
    let as_of = match &q.as_of {
        Some(name) => ctx.period(level, name)?,
        None => match by_period
            .iter()
            .filter(|(_, v)| active(**v))
            .map(|(k, _)| k[1])
            .max()
        {
            Some(p) => p,
            None => return Ok((Vec::new(), Vec::new())),
        },
    };
    let first = as_of.checked_sub(n - 1).filter(|f| *f > 0).ok_or_else(|| {
        AnalyticsError::BadThreshold {
            field: "periods",
            message: format!(
                "{n} periods up to '{}' leave no earlier period of '{}' to have been active in",
                ctx.cube.member_name(level, as_of),
                q.level
            ),
        }
    })?;
    let quiet = first..=as_of;
    // Per member: the last active period before the window, and whether it was active in it.
    let mut seen: BTreeMap<u32, (Option<u32>, bool)> = BTreeMap::new();
    for (key, v) in &by_period {
        if !active(*v) || key[1] > as_of {
            continue;
        }
        let e = seen.entry(key[0]).or_insert((None, false));
        if quiet.contains(&key[1]) {
            e.1 = true;
        } else {
            e.0 = e.0.max(Some(key[1]));
        }
    }
    let mut history = base.clone();
    history.push(only(level, 0..first));
    let before = ctx.values(measure, &[entity], &history).await?;
    let mut window = base;
    window.push(only(level, quiet.clone()));
    let after = ctx.values(measure, &[entity], &window).await?;
    let mut out = Vec::new();
    for (e, (last, in_window)) in seen {
        let Some(last) = last else { continue };
        if in_window {
            continue;
        }
        let get = |m: &BTreeMap<Vec<u32>, V>| m.get(&vec![e]).copied().unwrap_or(V::Null);
        let p = Pair::new(get(&before), get(&after));
        let mut row = p.row(ctx.cube.member_name(entity, e).to_string());
        row.last_active = Some(ctx.cube.member_name(level, last).to_string());
        row.impact = abs(p.before).json();
        out.push((e, abs(p.before), row));
    }
    let names = quiet
        .map(|p| ctx.cube.member_name(level, p).to_string())
        .collect();
    Ok((names, out))
}
