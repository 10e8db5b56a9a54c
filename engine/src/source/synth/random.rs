//! The random streams and the draws made from them, and the integer money arithmetic the
//! draws are rounded into.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{PARETO_ALPHA, WEIGHT_CAP};

/// One ChaCha stream per table family, so the tables can be written on any thread.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stream {
    Bank = 1,
    Transactions = 2,
    Balances = 3,
    BranchCosts = 4,
}

pub(super) fn rng_for(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

/// A Pareto draw with minimum 1 and shape `PARETO_ALPHA`, capped at `WEIGHT_CAP`.
pub(super) fn pareto(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    (1.0 - u).powf(-1.0 / PARETO_ALPHA).min(WEIGHT_CAP)
}

/// A standard normal draw (Box-Muller).
pub(super) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal factor with mean 1.
pub(super) fn lognormal(rng: &mut ChaCha8Rng, spread: f64) -> f64 {
    (spread * normal(rng) - spread * spread / 2.0).exp()
}

/// An index drawn with probability proportional to `weights` (not all zero).
pub(super) fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if target < w {
            return i;
        }
        target -= w;
    }
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

/// `x` rounded up or down at random so that the expectation is `x`.
pub(super) fn stochastic_round(rng: &mut ChaCha8Rng, x: f64) -> u32 {
    let floor = x.floor();
    floor as u32 + u32::from(rng.random::<f64>() < x - floor)
}

/// Integer yuan (already rounded) to cents.
pub(super) fn yuan_to_cents(yuan: f64) -> i64 {
    yuan as i64 * 100
}

/// `value * bp / 10_000`, rounded half away from zero, in integers.
pub(super) fn apply_bp(value: i64, bp: i64) -> i64 {
    let scaled = i128::from(value) * i128::from(bp);
    let rounded = (scaled.abs() + 5_000) / 10_000 * scaled.signum();
    rounded as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_money_is_exact() {
        assert_eq!(apply_bp(15, 5_000), 8);
        assert_eq!(apply_bp(-15, 5_000), -8);
        assert_eq!(apply_bp(100_000, 150), 1_500);
    }
}
