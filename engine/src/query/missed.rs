//! The group-bys no cuboid answered: each question answered from the base rows or by the
//! fallback is counted, with its time, by the fact and the levels it grouped or filtered by.
//! A server shows the costliest (`GET /v1/cubes/{cube}`) and its next build of the cube weighs
//! them first ([`crate::build::select::Learned`]), as Kylin recommends cuboids from its query
//! history.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lattice_defs::model::{FactId, LevelRef, Model};

use crate::build::select::Learned;

/// Distinct group-bys kept at most; questions of others are not counted once it is full.
const MAX_GROUP_BYS: usize = 4096;

/// A group-by: a fact and the levels (sorted) a question grouped or filtered it by.
type GroupBy = (FactId, Vec<LevelRef>);

/// The questions of one dataset that no cuboid answered: per group-by, how many and their
/// time in all.
#[derive(Debug, Default)]
pub(crate) struct MissLog {
    entries: Mutex<HashMap<GroupBy, (u64, Duration)>>,
}

impl MissLog {
    /// Counts one question of `fact` needing `levels` (sorted), which took `took`.
    pub fn record(&self, fact: FactId, levels: &[LevelRef], took: Duration) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let full = entries.len() >= MAX_GROUP_BYS;
        match entries.get_mut(&(fact, levels.to_vec())) {
            Some((n, t)) => {
                *n += 1;
                *t += took;
            }
            None if !full => {
                entries.insert((fact, levels.to_vec()), (1, took));
            }
            None => {}
        }
    }

    /// Forgets every group-by counted (the questions the engine asked itself, not a user).
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Every group-by counted, costliest first, by name.
    pub fn learned(&self, model: &Model) -> Vec<Learned> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Learned> = entries
            .iter()
            .map(|((fact, levels), (n, took))| Learned {
                fact: model.facts[*fact].name.clone(),
                levels: levels.iter().map(|l| model.level_name(*l)).collect(),
                questions: *n,
                cost_ms: took.as_secs_f64() * 1e3,
            })
            .collect();
        out.sort_by(|a, b| {
            b.cost_ms
                .total_cmp(&a.cost_ms)
                .then_with(|| a.levels.cmp(&b.levels))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_group_by_and_lists_the_costliest_first() {
        let model = lattice_defs::parse_str(
            lattice_defs::BANK_CRM_YAML,
            "bank_crm.yaml",
            std::path::Path::new("."),
        )
        .expect("the shipped definition");
        let log = MissLog::default();
        let month = model.level("time.month").expect("level");
        let segment = model.level("customer.segment").expect("level");
        let ms = Duration::from_millis;
        log.record(0, &[segment], ms(5));
        log.record(0, &[month, segment], ms(3));
        log.record(0, &[month, segment], ms(4));
        let learned = log.learned(&model);
        assert_eq!(learned.len(), 2);
        assert_eq!(learned[0].levels, ["time.month", "customer.segment"]);
        assert_eq!(learned[0].questions, 2);
        assert!((learned[0].cost_ms - 7.0).abs() < 1e-9);
        assert_eq!(learned[1].levels, ["customer.segment"]);
        assert_eq!(learned[1].fact, model.facts[0].name);
    }
}
