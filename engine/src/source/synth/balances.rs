//! The balances table: one row per month, customer and held product, each an integer random
//! walk, with the collapses and the interest margin.

use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::bank::Bank;
use super::catalog::Category::{Card, Deposit, Intermediary, Loan, Wealth};
use super::catalog::{MAX_HOLDINGS, PRODUCTS, Product};
use super::columns::{MONEY, batch, money, schema};
use super::customers::Customer;
use super::random::{Stream, apply_bp, lognormal, rng_for};
use super::write::{BATCH_ROWS, TableWriter};
use super::{
    BALANCE_EXPONENT, BALANCE_SPREAD, COLLAPSE_KEEP_PERCENT, CREDIT_LINE_RAISE_BP,
    CREDIT_LINE_RAISE_SHARE, CREDIT_LINE_UNIT_CENTS, DEPOSIT_STEP_BP, LOAN_STEP_BP, TableSummary,
};
use crate::Result;

pub(super) fn write_balances(
    bank: &Bank,
    seed: u64,
    writer: &TableWriter<'_>,
) -> Result<TableSummary> {
    let mut rng = rng_for(seed, Stream::Balances);
    let mut sink = writer.create("balances", balances_schema())?;
    let mut columns = BalanceColumns::new();
    // The current balance (or credit line) of each customer's holdings, in cents.
    let mut state = vec![[0i64; MAX_HOLDINGS]; bank.customers.len()];
    for month in &bank.calendar {
        for (c, current) in bank.customers.iter().zip(state.iter_mut()) {
            if month.index < c.first_month {
                continue;
            }
            for (slot, product) in c.holdings.indexes().enumerate() {
                let spec = &PRODUCTS[product];
                current[slot] = if month.index == c.first_month {
                    initial_balance(c, spec, &mut rng)
                } else {
                    next_balance(
                        current[slot],
                        spec,
                        c.collapse_month == Some(month.index),
                        &mut rng,
                    )
                };
                columns.push(month.first_day, c.id, product, current[slot]);
                if columns.len() == BATCH_ROWS {
                    sink.write(&columns.take()?)?;
                }
            }
        }
    }
    sink.write(&columns.take()?)?;
    sink.finish()
}

fn initial_balance(c: &Customer, spec: &Product, rng: &mut ChaCha8Rng) -> i64 {
    let factor = c
        .segment
        .profile()
        .balance_factor
        .powf(spec.category.balance_elasticity());
    let spread = c.weight.powf(BALANCE_EXPONENT) * lognormal(rng, BALANCE_SPREAD);
    let cents = (spec.balance_cny * factor * spread * 100.0).round() as i64;
    match spec.category {
        Deposit | Loan | Wealth => cents,
        Card => round_credit_line(cents),
        Intermediary => 0,
    }
}

fn next_balance(current: i64, spec: &Product, collapses: bool, rng: &mut ChaCha8Rng) -> i64 {
    match spec.category {
        Deposit | Wealth => {
            let (low, high) = DEPOSIT_STEP_BP;
            let walked = (current + apply_bp(current, rng.random_range(low..=high))).max(0);
            if collapses {
                let (low, high) = COLLAPSE_KEEP_PERCENT;
                apply_bp(walked, rng.random_range(low..=high) * 100)
            } else {
                walked
            }
        }
        Loan => {
            let (low, high) = LOAN_STEP_BP;
            (current + apply_bp(current, rng.random_range(low..=high))).max(0)
        }
        Card if rng.random_bool(CREDIT_LINE_RAISE_SHARE) => {
            let (low, high) = CREDIT_LINE_RAISE_BP;
            round_credit_line(current + apply_bp(current, rng.random_range(low..=high)))
        }
        Card | Intermediary => current,
    }
}

fn round_credit_line(cents: i64) -> i64 {
    (cents / CREDIT_LINE_UNIT_CENTS).max(1) * CREDIT_LINE_UNIT_CENTS
}

#[derive(Debug)]
struct BalanceColumns {
    month: Vec<i32>,
    customer: Vec<i64>,
    product: Vec<i32>,
    deposit: Vec<i128>,
    loan: Vec<i128>,
    credit_line: Vec<i128>,
    margin: Vec<i128>,
}

impl BalanceColumns {
    fn new() -> BalanceColumns {
        BalanceColumns {
            month: Vec::with_capacity(BATCH_ROWS),
            customer: Vec::with_capacity(BATCH_ROWS),
            product: Vec::with_capacity(BATCH_ROWS),
            deposit: Vec::with_capacity(BATCH_ROWS),
            loan: Vec::with_capacity(BATCH_ROWS),
            credit_line: Vec::with_capacity(BATCH_ROWS),
            margin: Vec::with_capacity(BATCH_ROWS),
        }
    }

    /// One row; `balance` goes to the column of the product's category.
    fn push(&mut self, month: i32, customer: i64, product: usize, balance: i64) {
        let spec = &PRODUCTS[product];
        let balance = i128::from(balance);
        let (deposit, loan, credit_line) = match spec.category {
            Deposit | Wealth => (balance, 0, 0),
            Loan => (0, balance, 0),
            Card => (0, 0, balance),
            Intermediary => (0, 0, 0),
        };
        self.month.push(month);
        self.customer.push(customer);
        self.product.push(product as i32 + 1);
        self.deposit.push(deposit);
        self.loan.push(loan);
        self.credit_line.push(credit_line);
        // Yearly basis points over 12 months: balance * bp / 120_000, rounded half up.
        let margin = (balance * i128::from(spec.margin_bp) + 60_000) / 120_000;
        self.margin.push(margin);
    }

    fn len(&self) -> usize {
        self.month.len()
    }

    fn take(&mut self) -> Result<RecordBatch> {
        let b = std::mem::replace(self, BalanceColumns::new());
        batch(
            balances_schema(),
            vec![
                Arc::new(Date32Array::from(b.month)),
                Arc::new(Int64Array::from(b.customer)),
                Arc::new(Int32Array::from(b.product)),
                money(b.deposit)?,
                money(b.loan)?,
                money(b.credit_line)?,
                money(b.margin)?,
            ],
        )
    }
}

fn balances_schema() -> SchemaRef {
    schema(&[
        ("month", DataType::Date32),
        ("customer_id", DataType::Int64),
        ("product_id", DataType::Int32),
        ("deposit_balance", MONEY),
        ("loan_balance", MONEY),
        ("credit_line", MONEY),
        ("interest_margin", MONEY),
    ])
}
