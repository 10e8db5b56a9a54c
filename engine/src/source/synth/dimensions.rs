//! The tables written on the calling thread while transactions and balances are written on
//! others: the dimension tables (customers, products, regions, managers, channels) and
//! `branch_costs`.

use std::sync::Arc;

use arrow::array::{Date32Array, Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use rand::RngExt;

use super::bank::Bank;
use super::catalog::{CHANNELS, PRODUCTS};
use super::columns::{MONEY, batch, money, schema};
use super::customers::write_customers;
use super::random::{Stream, rng_for};
use super::write::TableWriter;
use super::{
    BRANCH_FIXED_COST_CNY, COST_INFLATION, COST_NOISE, COST_PER_CUSTOMER_CNY, MONTHS, TableSummary,
};
use crate::Result;

/// customers, products, regions, managers, channels, branch_costs.
pub(super) fn write_dimensions(
    bank: &Bank,
    seed: u64,
    writer: &TableWriter<'_>,
) -> Result<[TableSummary; 6]> {
    Ok([
        write_customers(bank, writer)?,
        writer.write_one("products", products_batch()?)?,
        writer.write_one("regions", regions_batch(bank)?)?,
        writer.write_one("managers", managers_batch(bank)?)?,
        writer.write_one("channels", channels_batch()?)?,
        writer.write_one("branch_costs", branch_costs_batch(bank, seed)?)?,
    ])
}

fn products_batch() -> Result<RecordBatch> {
    batch(
        schema(&[
            ("product_id", DataType::Int32),
            ("product_name", DataType::Utf8),
            ("category", DataType::Utf8),
        ]),
        vec![
            Arc::new(Int32Array::from_iter_values(1..=PRODUCTS.len() as i32)),
            Arc::new(StringArray::from_iter_values(
                PRODUCTS.iter().map(|p| p.name),
            )),
            Arc::new(StringArray::from_iter_values(
                PRODUCTS.iter().map(|p| p.category.name()),
            )),
        ],
    )
}

fn regions_batch(bank: &Bank) -> Result<RecordBatch> {
    let b = &bank.branches;
    batch(
        schema(&[
            ("region_id", DataType::Int32),
            ("province", DataType::Utf8),
            ("city", DataType::Utf8),
            ("branch", DataType::Utf8),
        ]),
        vec![
            Arc::new(Int32Array::from_iter_values(1..=b.len() as i32)),
            Arc::new(StringArray::from_iter_values(b.iter().map(|b| b.province))),
            Arc::new(StringArray::from_iter_values(b.iter().map(|b| b.city))),
            Arc::new(StringArray::from_iter_values(
                b.iter().map(|b| b.name.as_str()),
            )),
        ],
    )
}

fn managers_batch(bank: &Bank) -> Result<RecordBatch> {
    let m = &bank.managers;
    batch(
        schema(&[
            ("manager_id", DataType::Int32),
            ("manager_name", DataType::Utf8),
            ("region_id", DataType::Int32),
        ]),
        vec![
            Arc::new(Int32Array::from_iter_values(1..=m.len() as i32)),
            Arc::new(StringArray::from_iter_values(
                m.iter().map(|m| m.name.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(m.iter().map(|m| m.region_id))),
        ],
    )
}

fn channels_batch() -> Result<RecordBatch> {
    batch(
        schema(&[("channel_id", DataType::Int32), ("channel", DataType::Utf8)]),
        vec![
            Arc::new(Int32Array::from_iter_values(1..=CHANNELS.len() as i32)),
            Arc::new(StringArray::from_iter_values(CHANNELS)),
        ],
    )
}

/// One row per (month, branch): a fixed part (times the scale, so that the ratio of cost to
/// revenue does not depend on it) plus a part per customer of the branch.
fn branch_costs_batch(bank: &Bank, seed: u64) -> Result<RecordBatch> {
    let mut rng = rng_for(seed, Stream::BranchCosts);
    let mut customers = vec![0u32; bank.branches.len()];
    for c in &bank.customers {
        customers[c.region_id as usize - 1] += 1;
    }
    let rows = MONTHS * bank.branches.len();
    let (mut month, mut region, mut cost) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    for m in &bank.calendar {
        let inflation = (1.0 + COST_INFLATION).powi(m.index as i32);
        for (i, &branch_customers) in customers.iter().enumerate() {
            let fixed = BRANCH_FIXED_COST_CNY * bank.scale;
            let variable = COST_PER_CUSTOMER_CNY * f64::from(branch_customers);
            let noise = 1.0 + COST_NOISE * (2.0 * rng.random::<f64>() - 1.0);
            let cents = ((fixed + variable) * inflation * noise * 100.0).round() as i128;
            month.push(m.first_day);
            region.push(i as i32 + 1);
            cost.push(cents.max(100));
        }
    }
    batch(
        branch_costs_schema(),
        vec![
            Arc::new(Date32Array::from(month)),
            Arc::new(Int32Array::from(region)),
            money(cost)?,
        ],
    )
}

fn branch_costs_schema() -> SchemaRef {
    schema(&[
        ("month", DataType::Date32),
        ("region_id", DataType::Int32),
        ("operating_cost", MONEY),
    ])
}
