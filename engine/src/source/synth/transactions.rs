//! The transactions table: each month's transactions drawn from the customers' rates, with the
//! seasons, the channel trend and the refunds.

use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::bank::Bank;
use super::calendar::Month;
use super::catalog::{CHANNEL_FEE_CENTS, CHANNEL_MIX, CHANNEL_TREND, PRODUCTS, SEGMENTS};
use super::columns::{MONEY, batch, money, schema};
use super::customers::Customer;
use super::random::{Stream, apply_bp, lognormal, pick, rng_for, stochastic_round};
use super::write::{BATCH_ROWS, TableWriter};
use super::{AMOUNT_SPREAD, MONTHLY_VOLUME_NOISE, REFUND_SHARE, TICKET_EXPONENT, TableSummary};
use crate::Result;

#[derive(Debug, Clone, Copy)]
struct Txn {
    date: i32,
    customer_id: i64,
    product_id: i32,
    channel_id: i32,
    amount: i64,
    fee: i64,
}

/// Channel weights (in the order of `CHANNELS`) by segment and product category, for one month.
type ChannelMix = [[[f64; 6]; 5]; 5];

fn channel_mix(month: &Month) -> ChannelMix {
    std::array::from_fn(|segment| {
        std::array::from_fn(|category| {
            std::array::from_fn(|channel| {
                CHANNEL_MIX[category][channel]
                    * SEGMENTS[segment].channel_bias[channel]
                    * CHANNEL_TREND[channel].powi(month.index as i32)
            })
        })
    })
}

pub(super) fn write_transactions(
    bank: &Bank,
    seed: u64,
    writer: &TableWriter<'_>,
) -> Result<TableSummary> {
    let mut rng = rng_for(seed, Stream::Transactions);
    let mut sink = writer.create("transactions", transactions_schema())?;
    let mut columns = TxnColumns::new();
    let mut month_txns = Vec::new();
    let mut next_id = 1i64;
    for month in &bank.calendar {
        month_transactions(bank, month, &mut rng, &mut month_txns);
        for txn in &month_txns {
            columns.push(next_id, txn);
            next_id += 1;
            if columns.len() == BATCH_ROWS {
                sink.write(&columns.take()?)?;
            }
        }
    }
    sink.write(&columns.take()?)?;
    sink.finish()
}

/// All transactions of one month, ordered by date and customer.
fn month_transactions(bank: &Bank, month: &Month, rng: &mut ChaCha8Rng, out: &mut Vec<Txn>) {
    out.clear();
    let mix = channel_mix(month);
    for c in &bank.customers {
        if month.index < c.first_month || month.index >= c.active_until {
            continue;
        }
        let noise = 1.0 + MONTHLY_VOLUME_NOISE * (2.0 * rng.random::<f64>() - 1.0);
        let expected = c.txn_rate * month.volume * month.open_fraction(c.open_date) * noise;
        let count = stochastic_round(rng, expected);
        if count == 0 {
            continue;
        }
        let activity = c.holdings.activity();
        let first_day = month.first_open_day(c.open_date);
        for _ in 0..count {
            let day = rng.random_range(first_day..month.days);
            let product = c.holdings.products[pick(rng, &activity)] as usize;
            out.push(draw_txn(
                c,
                product,
                month.first_day + day as i32,
                &mix,
                rng,
            ));
        }
    }
    out.sort_by_key(|t| (t.date, t.customer_id));
}

fn draw_txn(
    c: &Customer,
    product: usize,
    date: i32,
    mix: &ChannelMix,
    rng: &mut ChaCha8Rng,
) -> Txn {
    let spec = &PRODUCTS[product];
    let profile = c.segment.profile();
    let channel = pick(rng, &mix[c.segment as usize][spec.category as usize]);
    let typical = spec.ticket_cny * profile.ticket_factor * c.weight.powf(TICKET_EXPONENT);
    let cents = ((typical * lognormal(rng, AMOUNT_SPREAD) * 100.0).round() as i64).max(100);
    let (amount, fee) = if rng.random_bool(REFUND_SHARE) {
        // A reversal: the money goes back, the fee is not charged.
        (-cents, 0)
    } else {
        (
            cents,
            apply_bp(cents, spec.fee_bp) + CHANNEL_FEE_CENTS[channel],
        )
    };
    Txn {
        date,
        customer_id: c.id,
        product_id: product as i32 + 1,
        channel_id: channel as i32 + 1,
        amount,
        fee,
    }
}

#[derive(Debug)]
struct TxnColumns {
    id: Vec<i64>,
    date: Vec<i32>,
    customer: Vec<i64>,
    product: Vec<i32>,
    channel: Vec<i32>,
    amount: Vec<i128>,
    fee: Vec<i128>,
}

impl TxnColumns {
    fn new() -> TxnColumns {
        TxnColumns {
            id: Vec::with_capacity(BATCH_ROWS),
            date: Vec::with_capacity(BATCH_ROWS),
            customer: Vec::with_capacity(BATCH_ROWS),
            product: Vec::with_capacity(BATCH_ROWS),
            channel: Vec::with_capacity(BATCH_ROWS),
            amount: Vec::with_capacity(BATCH_ROWS),
            fee: Vec::with_capacity(BATCH_ROWS),
        }
    }

    fn push(&mut self, id: i64, t: &Txn) {
        self.id.push(id);
        self.date.push(t.date);
        self.customer.push(t.customer_id);
        self.product.push(t.product_id);
        self.channel.push(t.channel_id);
        self.amount.push(i128::from(t.amount));
        self.fee.push(i128::from(t.fee));
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn take(&mut self) -> Result<RecordBatch> {
        let t = std::mem::replace(self, TxnColumns::new());
        batch(
            transactions_schema(),
            vec![
                Arc::new(Int64Array::from(t.id)),
                Arc::new(Date32Array::from(t.date)),
                Arc::new(Int64Array::from(t.customer)),
                Arc::new(Int32Array::from(t.product)),
                Arc::new(Int32Array::from(t.channel)),
                money(t.amount)?,
                money(t.fee)?,
            ],
        )
    }
}

fn transactions_schema() -> SchemaRef {
    schema(&[
        ("txn_id", DataType::Int64),
        ("txn_date", DataType::Date32),
        ("customer_id", DataType::Int64),
        ("product_id", DataType::Int32),
        ("channel_id", DataType::Int32),
        ("amount", MONEY),
        ("fee_income", MONEY),
    ])
}
