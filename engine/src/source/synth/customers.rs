//! Who the customers are: each one drawn on its own (segment, home branch, dates, holdings,
//! person), and the customers table written from them.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{
    Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::Datelike;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::bank::Bank;
use super::calendar::month_start;
use super::catalog::{
    FIRM_KINDS, FIRM_NAMES, GIVEN_NAMES, MAX_HOLDINGS, PRODUCTS, SURNAMES, Segment, SegmentProfile,
};
use super::columns::{MONEY, batch, money};
use super::random::{lognormal, normal, pareto, pick, yuan_to_cents};
use super::write::{BATCH_ROWS, TableWriter};
use super::{
    AFFLUENT_OR_PRIVATE_SHARE, COLLAPSE_SHARE, CORPORATE_SHARE, DORMANT_SHARE, FIRST_YEAR,
    INCOME_SPREAD, LARGE_CORP_SHARE, MONTHS, OPEN_FROM_YEAR, OPENED_IN_WINDOW_SHARE, PARETO_ALPHA,
    PRIVATE_SHARE, TableSummary, UNDISCLOSED_INCOME_SHARE,
};
use crate::{EngineError, Result};

const EDUCATIONS: [&str; 4] = ["high_school", "bachelor", "master", "doctorate"];
const CORPORATE_EDUCATION: &str = "n/a";
const MIN_AGE: f64 = 18.0;
const MAX_AGE: f64 = 85.0;
const AGE_SPREAD: f64 = 13.0;

/// The products a customer holds, as indexes into `PRODUCTS`, ascending.
#[derive(Debug, Clone, Copy)]
pub(super) struct Holdings {
    pub(super) products: [u8; MAX_HOLDINGS],
    pub(super) len: u8,
}

impl Holdings {
    /// How often each held product is used, by slot (0 for empty slots).
    pub(super) fn activity(&self) -> [f64; MAX_HOLDINGS] {
        let mut activity = [0.0; MAX_HOLDINGS];
        for (slot, product) in self.indexes().enumerate() {
            activity[slot] = PRODUCTS[product].activity;
        }
        activity
    }

    pub(super) fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.products[..self.len as usize]
            .iter()
            .map(|&p| p as usize)
    }
}

/// Who a customer is; corporates have no age and education `n/a`.
#[derive(Debug)]
pub(super) struct Person {
    pub(super) age: Option<i32>,
    education: &'static str,
    /// Monthly income (revenue for corporates); `None` when not disclosed.
    income_cents: Option<i64>,
    /// Indexes into the name lists (surname and given name, or firm name and kind).
    name: (u8, u8),
}

#[derive(Debug)]
pub(super) struct Customer {
    pub(super) id: i64,
    pub(super) segment: Segment,
    /// Pareto activity weight, at least 1.
    pub(super) weight: f64,
    pub(super) region_id: i32,
    pub(super) manager_id: i32,
    pub(super) open_date: i32,
    /// The first month of the window with balances (0 when opened before the window).
    pub(super) first_month: usize,
    /// Months from this one on have no transactions (`MONTHS` unless dormant).
    pub(super) active_until: usize,
    pub(super) collapse_month: Option<usize>,
    pub(super) holdings: Holdings,
    pub(super) person: Person,
    /// Expected transactions in a month of seasonal weight 1.
    pub(super) txn_rate: f64,
}

/// Draws everything about a customer except the manager and the transaction rate, which depend
/// on the other customers.
pub(super) fn draw_customer(id: i64, branch_weights: &[f64], rng: &mut ChaCha8Rng) -> Customer {
    let weight = pareto(rng);
    let corporate = rng.random_bool(CORPORATE_SHARE);
    let segment = segment_for(corporate, weight);
    let profile = segment.profile();
    let region_id = pick(rng, branch_weights) as i32 + 1;
    let (open_date, open_month) = draw_open_date(rng);
    let first_month = open_month.max(0) as usize;
    let active_until = draw_dormancy(rng, first_month).unwrap_or(MONTHS);
    let collapse_month = draw_collapse(rng, first_month);
    let holdings = draw_holdings(rng, profile);
    let person = draw_person(rng, profile);
    Customer {
        id,
        segment,
        weight,
        region_id,
        manager_id: 0,
        open_date,
        first_month,
        active_until,
        collapse_month,
        holdings,
        person,
        txn_rate: 0.0,
    }
}

/// Age, education, income and name, as the segment makes them likely.
fn draw_person(rng: &mut ChaCha8Rng, profile: &SegmentProfile) -> Person {
    let income = profile.income_cny * lognormal(rng, INCOME_SPREAD);
    let income_cents = Some(yuan_to_cents(income.round()));
    if profile.corporate {
        let name = (
            random_index(rng, &FIRM_NAMES),
            random_index(rng, &FIRM_KINDS),
        );
        return Person {
            age: None,
            education: CORPORATE_EDUCATION,
            income_cents,
            name,
        };
    }
    let age = (profile.mean_age + AGE_SPREAD * normal(rng)).clamp(MIN_AGE, MAX_AGE);
    let disclosed = !rng.random_bool(UNDISCLOSED_INCOME_SHARE);
    Person {
        age: Some(age.round() as i32),
        education: EDUCATIONS[pick(rng, &profile.education)],
        income_cents: income_cents.filter(|_| disclosed),
        name: (
            random_index(rng, &SURNAMES),
            random_index(rng, &GIVEN_NAMES),
        ),
    }
}

fn random_index(rng: &mut ChaCha8Rng, names: &[&str]) -> u8 {
    rng.random_range(0..names.len()) as u8
}

/// Segments follow the weight: the heaviest individuals are private clients, the heaviest
/// corporates are large ones. Thresholds are the Pareto quantiles of the wanted shares.
fn segment_for(corporate: bool, weight: f64) -> Segment {
    let above = |share: f64| weight >= share.powf(-1.0 / PARETO_ALPHA);
    match (
        corporate,
        above(PRIVATE_SHARE),
        above(AFFLUENT_OR_PRIVATE_SHARE),
    ) {
        (true, ..) if above(LARGE_CORP_SHARE) => Segment::LargeCorp,
        (true, ..) => Segment::Sme,
        (false, true, _) => Segment::Private,
        (false, false, true) => Segment::Affluent,
        (false, false, false) => Segment::Mass,
    }
}

/// The open date (Date32) and its month relative to the window (negative: before it).
fn draw_open_date(rng: &mut ChaCha8Rng) -> (i32, i64) {
    let months_before = i64::from(FIRST_YEAR - OPEN_FROM_YEAR) * 12;
    let month = if rng.random_bool(OPENED_IN_WINDOW_SHARE) {
        rng.random_range(0..MONTHS as i64)
    } else {
        rng.random_range(-months_before..0)
    };
    let start = month_start(month);
    let day: u32 = rng.random_range(1..=u32::from(start.num_days_in_month()));
    (start.to_epoch_days() + day as i32 - 1, month)
}

/// The month from which a dormant customer stops transacting: late enough to have a history,
/// early enough to leave at least the last three months silent.
fn draw_dormancy(rng: &mut ChaCha8Rng, first_month: usize) -> Option<usize> {
    let dormant = rng.random_bool(DORMANT_SHARE);
    let earliest = (first_month + 3).max(6);
    (dormant && earliest <= MONTHS - 4).then(|| rng.random_range(earliest..=MONTHS - 4))
}

/// The month in which a collapsing customer's deposits fall; there is always a month before it.
fn draw_collapse(rng: &mut ChaCha8Rng, first_month: usize) -> Option<usize> {
    let collapses = rng.random_bool(COLLAPSE_SHARE);
    let earliest = (first_month + 1).max(3);
    (collapses && earliest <= MONTHS - 2).then(|| rng.random_range(earliest..=MONTHS - 2))
}

/// The demand deposit account plus distinct products drawn by how likely this kind of customer
/// is to hold them.
fn draw_holdings(rng: &mut ChaCha8Rng, profile: &SegmentProfile) -> Holdings {
    let (min, max) = profile.holdings;
    let count = rng.random_range(min..=max);
    let mut weights: [f64; PRODUCTS.len()] = std::array::from_fn(|i| {
        let p = &PRODUCTS[i];
        if profile.corporate {
            p.corporate
        } else {
            p.individual
        }
    });
    let mut products = [0u8; MAX_HOLDINGS];
    for slot in products.iter_mut().take(count).skip(1) {
        let chosen = pick(rng, &weights);
        weights[chosen] = 0.0;
        *slot = chosen as u8;
    }
    products[..count].sort_unstable();
    Holdings {
        products,
        len: count as u8,
    }
}

pub(super) fn write_customers(bank: &Bank, writer: &TableWriter<'_>) -> Result<TableSummary> {
    let mut sink = writer.create("customers", customers_schema())?;
    for chunk in bank.customers.chunks(BATCH_ROWS) {
        sink.write(&customers_batch(bank, chunk)?)?;
    }
    sink.finish()
}

fn customers_batch(bank: &Bank, customers: &[Customer]) -> Result<RecordBatch> {
    let n = customers.len();
    let mut kind = StringBuilder::with_capacity(n, n * 10);
    let mut name = StringBuilder::with_capacity(n, n * 24);
    let mut education = StringBuilder::with_capacity(n, n * 10);
    let mut segment = StringBuilder::with_capacity(n, n * 8);
    for c in customers {
        let profile = c.segment.profile();
        let (first, second) = (c.person.name.0 as usize, c.person.name.1 as usize);
        if profile.corporate {
            kind.append_value("corporate");
            let city = bank.branch(c.region_id).city;
            write_str(
                &mut name,
                format_args!("{city} {} {}", FIRM_NAMES[first], FIRM_KINDS[second]),
            )?;
        } else {
            kind.append_value("individual");
            write_str(
                &mut name,
                format_args!("{} {}", SURNAMES[first], GIVEN_NAMES[second]),
            )?;
        }
        education.append_value(c.person.education);
        segment.append_value(profile.name);
    }
    batch(
        customers_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(customers.iter().map(|c| c.id))),
            Arc::new(kind.finish()),
            Arc::new(name.finish()),
            Arc::new(Int32Array::from_iter(
                customers.iter().map(|c| c.person.age),
            )),
            money(Decimal128Array::from_iter(
                customers
                    .iter()
                    .map(|c| c.person.income_cents.map(i128::from)),
            ))?,
            Arc::new(education.finish()),
            Arc::new(segment.finish()),
            Arc::new(Int32Array::from_iter_values(
                customers.iter().map(|c| c.region_id),
            )),
            Arc::new(Int32Array::from_iter_values(
                customers.iter().map(|c| c.manager_id),
            )),
            Arc::new(Date32Array::from_iter_values(
                customers.iter().map(|c| c.open_date),
            )),
        ],
    )
}

/// Appends one formatted string value without an intermediate `String`.
fn write_str(builder: &mut StringBuilder, args: std::fmt::Arguments<'_>) -> Result<()> {
    builder
        .write_fmt(args)
        .map_err(|e| EngineError::Internal(format!("formatting a generated name: {e}")))?;
    builder.append_value("");
    Ok(())
}

fn customers_schema() -> SchemaRef {
    let nullable = ["age", "monthly_income"];
    let fields = [
        ("customer_id", DataType::Int64),
        ("customer_type", DataType::Utf8),
        ("name", DataType::Utf8),
        ("age", DataType::Int32),
        ("monthly_income", MONEY),
        ("education", DataType::Utf8),
        ("segment", DataType::Utf8),
        ("region_id", DataType::Int32),
        ("manager_id", DataType::Int32),
        ("open_date", DataType::Date32),
    ]
    .map(|(name, t)| Field::new(name, t, nullable.contains(&name)));
    Arc::new(Schema::new(fields.to_vec()))
}
