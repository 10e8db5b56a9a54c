//! The bank: branches, managers and customers, drawn once and shared by every table.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::calendar::Month;
use super::catalog::{BRANCH_NAMES, CENTRAL_BRANCH_FACTOR, GIVEN_NAMES, PROVINCES, SURNAMES};
use super::customers::{Customer, draw_customer};
use super::random::{Stream, rng_for};
use super::{
    COUNT_EXPONENT, CUSTOMERS_PER_MANAGER, CUSTOMERS_PER_SCALE, MONTHS, TXNS_PER_CUSTOMER,
};

#[derive(Debug)]
pub(super) struct Branch {
    pub(super) province: &'static str,
    pub(super) city: &'static str,
    pub(super) name: String,
    /// Share of customers, relative to the other branches.
    weight: f64,
}

#[derive(Debug)]
pub(super) struct Manager {
    pub(super) name: String,
    pub(super) region_id: i32,
}

#[derive(Debug)]
pub(super) struct Bank {
    pub(super) scale: f64,
    pub(super) branches: Vec<Branch>,
    pub(super) managers: Vec<Manager>,
    pub(super) customers: Vec<Customer>,
    pub(super) calendar: [Month; MONTHS],
}

impl Bank {
    pub(super) fn build(scale: f64, seed: u64) -> Bank {
        let mut rng = rng_for(seed, Stream::Bank);
        let branches = branches();
        let calendar = std::array::from_fn(Month::new);
        let count = ((CUSTOMERS_PER_SCALE * scale).round() as usize).max(1);
        let branch_weights: Vec<f64> = branches.iter().map(|b| b.weight).collect();
        let mut customers: Vec<Customer> = (1..=count as i64)
            .map(|id| draw_customer(id, &branch_weights, &mut rng))
            .collect();
        let managers = assign_managers(&mut customers, branches.len(), &mut rng);
        set_txn_rates(&mut customers, &calendar, count as f64 * TXNS_PER_CUSTOMER);
        Bank {
            scale,
            branches,
            managers,
            customers,
            calendar,
        }
    }

    pub(super) fn branch(&self, region_id: i32) -> &Branch {
        &self.branches[region_id as usize - 1]
    }
}

fn branches() -> Vec<Branch> {
    let mut branches = Vec::new();
    for (province, cities) in PROVINCES {
        for &(city, count, tier) in cities {
            for (i, suffix) in BRANCH_NAMES.iter().take(count as usize).enumerate() {
                let central = if i == 0 { CENTRAL_BRANCH_FACTOR } else { 1.0 };
                branches.push(Branch {
                    province,
                    city,
                    name: format!("{city} {suffix}"),
                    weight: f64::from(tier) * central,
                });
            }
        }
    }
    branches
}

/// One manager per `CUSTOMERS_PER_MANAGER` customers of a branch (at least one where it has
/// customers); each customer gets one of the managers of its home branch.
fn assign_managers(
    customers: &mut [Customer],
    branch_count: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Manager> {
    let mut per_branch = vec![0usize; branch_count];
    for c in customers.iter() {
        per_branch[c.region_id as usize - 1] += 1;
    }
    let mut managers = Vec::new();
    let mut first_manager = vec![0i32; branch_count];
    let mut manager_count = vec![0i32; branch_count];
    for (branch, &n) in per_branch.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let count = ((n as f64 / CUSTOMERS_PER_MANAGER).round() as i32).max(1);
        first_manager[branch] = managers.len() as i32 + 1;
        manager_count[branch] = count;
        for _ in 0..count {
            let id = managers.len() + 1;
            let surname = SURNAMES[rng.random_range(0..SURNAMES.len())];
            let given = GIVEN_NAMES[rng.random_range(0..GIVEN_NAMES.len())];
            let name = format!("M{id:04} {surname} {given}");
            managers.push(Manager {
                name,
                region_id: branch as i32 + 1,
            });
        }
    }
    for c in customers.iter_mut() {
        let branch = c.region_id as usize - 1;
        c.manager_id = first_manager[branch] + rng.random_range(0..manager_count[branch]);
    }
    managers
}

/// Scales every customer's monthly rate so that the expected total is `target` transactions.
fn set_txn_rates(customers: &mut [Customer], calendar: &[Month; MONTHS], target: f64) {
    let exposure = |c: &Customer| -> f64 {
        (c.first_month..c.active_until)
            .map(|m| calendar[m].volume * calendar[m].open_fraction(c.open_date))
            .sum()
    };
    let total: f64 = customers
        .iter()
        .map(|c| c.weight.powf(COUNT_EXPONENT) * exposure(c))
        .sum();
    let per_weight = if total > 0.0 { target / total } else { 0.0 };
    for c in customers.iter_mut() {
        c.txn_rate = per_weight * c.weight.powf(COUNT_EXPONENT);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::source::synth::catalog::MAX_HOLDINGS;

    #[test]
    fn bank_keeps_its_invariants() {
        let bank = Bank::build(0.05, 11);
        let manager_branch: Vec<i32> = bank.managers.iter().map(|m| m.region_id).collect();
        for c in &bank.customers {
            assert_eq!(
                manager_branch[c.manager_id as usize - 1],
                c.region_id,
                "customer {}",
                c.id
            );
            let held: HashSet<usize> = c.holdings.indexes().collect();
            assert!((1..=MAX_HOLDINGS).contains(&held.len()));
            assert_eq!(held.len(), c.holdings.len as usize, "distinct products");
            assert!(held.contains(&0), "everyone has a demand deposit account");
            assert_eq!(c.person.age.is_none(), c.segment.profile().corporate);
            assert!(c.first_month < MONTHS && c.active_until <= MONTHS);
        }
        let dormant = bank
            .customers
            .iter()
            .filter(|c| c.active_until < MONTHS)
            .count();
        let collapsing = bank
            .customers
            .iter()
            .filter(|c| c.collapse_month.is_some())
            .count();
        assert!((150..350).contains(&dormant), "{dormant} dormant of 5000");
        assert!(
            (20..90).contains(&collapsing),
            "{collapsing} collapsing of 5000"
        );
    }
}
