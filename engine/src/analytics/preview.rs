//! Band preview: what a changed band definition would do to the customers, before it is
//! applied. For each metric band level whose bucket a new definition changes (edges, labels,
//! quantiles, the measure), the band is computed again from the base rows the served cube
//! keeps — the same pass a build makes, without reading the facts or building cuboids — and
//! set beside the band serving now: how many entities (customers) fall in each old and new
//! band in a period, and how many move from each old band to each new one.
//!
//! Every entity of the dimension counts, as a band's members do in a query (one with no facts
//! in the period is in the band of 0 for sums and counts, `unknown` for min, max and
//! quantiles). The counts are over the whole cube, so a principal with a scope or small-cell
//! suppression is refused.

use std::time::Instant;

use lattice_defs::model::{Bucket, BucketSource, LevelKind, MeasureKind, Model};
use serde::Serialize;

use super::AnalyticsError;
use crate::build::bands::recompute;
use crate::query::{QueryError, Session};
use crate::store::encoding::MetricCodes;
use crate::store::time::period_name;

/// One band level as the new definition makes it, beside the band serving.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BandPreview {
    /// `customer`, `deposit_band`.
    pub dimension: String,
    pub level: String,
    /// The period counted (`2025-06`); none for a band over all time.
    pub period: Option<String>,
    /// The band's periods, earliest first (empty for a band over all time).
    pub periods: Vec<String>,
    /// The serving band's members, `unknown` last.
    pub old_labels: Vec<String>,
    /// The new definition's, `unknown` last.
    pub new_labels: Vec<String>,
    /// Entities per old band in the period, parallel to `old_labels`.
    pub old_counts: Vec<u64>,
    pub new_counts: Vec<u64>,
    /// `moves[i][j]`: entities in old band `i` and new band `j`.
    pub moves: Vec<Vec<u64>>,
    /// Entities counted (every member of the dimension's key).
    pub entities: u64,
    /// Entities that change band: with as many bands as before, those whose band's position
    /// changes (renaming a label moves no one); else those whose label changes.
    pub moved: u64,
}

/// A changed band level that cannot be previewed, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BandSkipped {
    /// `customer.age_band`.
    pub band: String,
    pub reason: String,
}

/// `POST /v1/cubes/{cube}/bands/preview`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BandsPreview {
    pub cube: String,
    /// The band levels the new definition changes, in its order.
    pub bands: Vec<BandPreview>,
    /// Changed band levels that need a build to be seen.
    pub skipped: Vec<BandSkipped>,
    pub elapsed_us: u64,
}

impl Session {
    /// How the band levels that `new` (a definition of this cube) changes would place the
    /// entities, in `period` (a member of the band's period level, such as `2025-06`; default
    /// each band's latest), against the bands serving.
    pub fn preview_bands(
        &self,
        new: &Model,
        period: Option<&str>,
    ) -> Result<BandsPreview, AnalyticsError> {
        let start = Instant::now();
        let applied = self.applied()?;
        if !self.access().scope.is_empty() {
            return Err(QueryError::Forbidden {
                message: "a band preview counts every customer of the cube, and your scope limits what you see; ask someone without a scope".into(),
            }
            .into());
        }
        if let Some(s) = &applied.suppress {
            return Err(QueryError::Forbidden {
                message: format!(
                    "a band preview counts customers per band without withholding, and your role sees no cell of fewer than {} customers",
                    s.min
                ),
            }
            .into());
        }
        let old = &self.cube().model;
        let mut bands = Vec::new();
        let mut skipped = Vec::new();
        for dim in &new.dimensions {
            for level in &dim.levels {
                let LevelKind::Bucket(bucket) = &level.kind else {
                    continue;
                };
                let name = format!("{}.{}", dim.name, level.name);
                match self.preview_one(new, (&dim.name, &level.name), bucket, period) {
                    Ok(Some(p)) => bands.push(p),
                    Ok(None) => {}
                    Err(Skip::Reason(reason)) => skipped.push(BandSkipped { band: name, reason }),
                    Err(Skip::Fatal(e)) => return Err(e),
                }
            }
        }
        Ok(BandsPreview {
            cube: old.name.clone(),
            bands,
            skipped,
            elapsed_us: start.elapsed().as_micros() as u64,
        })
    }

    /// One band level of `new`: `None` when it is as serving.
    fn preview_one(
        &self,
        new: &Model,
        (dim_name, level_name): (&str, &str),
        bucket: &Bucket,
        period: Option<&str>,
    ) -> Result<Option<BandPreview>, Skip> {
        let cube = self.cube();
        let old = &cube.model;
        let skip = |why: String| Err(Skip::Reason(why));
        let Some(d) = old.dimensions.iter().position(|x| x.name == dim_name) else {
            return skip("a new dimension: apply the definition to see it".into());
        };
        let Some(l) = old.dimensions[d]
            .levels
            .iter()
            .position(|x| x.name == level_name)
        else {
            return skip("a new band: apply the definition to see it".into());
        };
        let LevelKind::Bucket(serving) = &old.dimensions[d].levels[l].kind else {
            return skip("a level that is not a band now: apply the definition to see it".into());
        };
        if same_bucket(old, serving, new, bucket) {
            return Ok(None);
        }
        let BucketSource::Metric {
            measure: new_measure,
            period: grain,
        } = &bucket.source
        else {
            return skip(
                "its members come from a column of the dimension's table, which the served cube does not keep: apply the definition to see them".into(),
            );
        };
        let measure_name = &new.measures[*new_measure].name;
        let Some(measure) = old.measures.iter().position(|m| &m.name == measure_name) else {
            return skip(format!(
                "measure '{measure_name}' is not in the serving cube: apply the definition to see the band"
            ));
        };
        let MeasureKind::Aggregate { fact, .. } = &old.measures[measure].kind else {
            return skip(format!("measure '{measure_name}' is not an aggregate"));
        };
        let Some(base) = cube.bases.get(*fact).and_then(Option::as_ref) else {
            return skip(format!(
                "the serving cube keeps no base rows of fact '{}' (over its memory budget): apply the definition to see the band",
                old.facts[*fact].name
            ));
        };
        let Some(was) = cube.encoding.codes[d]
            .as_ref()
            .and_then(|c| c.metric.get(l))
            .and_then(Option::as_ref)
        else {
            return skip(
                "the serving band is not a metric band: apply the definition to see it".into(),
            );
        };
        let (dict, now) = recompute(old, &cube.encoding, base, (d, l), bucket, (measure, *grain))
            .map_err(|e| {
            Skip::Fatal(
                QueryError::Engine {
                    message: e.to_string(),
                }
                .into(),
            )
        })?;
        if now.grain != was.grain {
            return skip(
                "its period changes (`per:`): the old and new bands count different periods; apply the definition to see it".into(),
            );
        }
        let n_keys = cube.encoding.codes[d].as_ref().map_or(0, |c| c.n_keys);
        let periods = period_names(was);
        let (at_old, at_new) = match (period, was.grain) {
            (_, None) => (0, 0),
            (Some(p), Some(_)) => {
                let Some(i) = periods.iter().position(|x| x == p) else {
                    return Err(Skip::Fatal(AnalyticsError::Invalid {
                        field: "period",
                        message: format!(
                            "'{p}' is not a period of band '{dim_name}.{level_name}'; its periods are {} to {}",
                            periods.first().map_or("", String::as_str),
                            periods.last().map_or("", String::as_str)
                        ),
                    }));
                };
                (i, i as i64 + was.first - now.first)
            }
            (None, Some(_)) => {
                let i = was.periods.saturating_sub(1);
                (i, i as i64 + was.first - now.first)
            }
        };
        let old_labels = cube.levels[d][l].names.clone();
        let new_labels = dict.names;
        let mut moves = vec![vec![0u64; new_labels.len()]; old_labels.len()];
        for k in 0..n_keys {
            let o = usize::from(was.codes[k * was.periods + at_old]);
            let n = match usize::try_from(at_new).ok().filter(|p| *p < now.periods) {
                Some(p) => usize::from(now.codes[k * now.periods + p]),
                None => new_labels.len() - 1,
            };
            if let Some(cell) = moves.get_mut(o).and_then(|row| row.get_mut(n)) {
                *cell += 1;
            }
        }
        let old_counts = moves.iter().map(|row| row.iter().sum()).collect();
        let new_counts = (0..new_labels.len())
            .map(|j| moves.iter().map(|row| row[j]).sum())
            .collect();
        // As many bands as before: the i-th band is the same band (a renamed label moves no
        // one); else a band is its label.
        let same_count = old_labels.len() == new_labels.len();
        let moved = moves
            .iter()
            .enumerate()
            .flat_map(|(i, row)| row.iter().enumerate().map(move |(j, n)| (i, j, *n)))
            .filter(|(i, j, _)| {
                if same_count {
                    i != j
                } else {
                    old_labels[*i] != new_labels[*j]
                }
            })
            .map(|(_, _, n)| n)
            .sum();
        Ok(Some(BandPreview {
            dimension: dim_name.to_string(),
            level: level_name.to_string(),
            period: was.grain.map(|_| periods[at_old].clone()),
            periods: if was.grain.is_some() {
                periods
            } else {
                Vec::new()
            },
            old_labels,
            new_labels,
            old_counts,
            new_counts,
            moves,
            entities: n_keys as u64,
            moved,
        }))
    }
}

/// Why a band is not previewed: a reason to show beside the others, or an error that
/// answers the whole request.
enum Skip {
    Reason(String),
    Fatal(AnalyticsError),
}

/// The names of a metric's periods (one, unnamed, for a metric over all time).
fn period_names(codes: &MetricCodes) -> Vec<String> {
    match codes.grain {
        Some(g) => (0..codes.periods)
            .map(|i| period_name(codes.first + i as i64, g))
            .collect(),
        None => vec![String::new()],
    }
}

/// Whether two buckets (of two models) place members alike: the same cuts and labels over the
/// same column, or over the same measure (by name) and period.
pub fn same_bucket(a_model: &Model, a: &Bucket, b_model: &Model, b: &Bucket) -> bool {
    let source = match (&a.source, &b.source) {
        (BucketSource::Column(x), BucketSource::Column(y)) => x == y,
        (
            BucketSource::Metric {
                measure: m,
                period: p,
            },
            BucketSource::Metric {
                measure: n,
                period: q,
            },
        ) => p == q && a_model.measures[*m].name == b_model.measures[*n].name,
        _ => false,
    };
    source && a.cuts == b.cuts && a.labels == b.labels
}
