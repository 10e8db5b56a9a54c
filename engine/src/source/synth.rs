//! The synthetic bank data set of DESIGN.md ("The default data set and cube"): eight tables
//! written as Parquet or CSV, byte for byte the same for the same seed and scale.
//!
//! # What the data looks like
//!
//! A bank with 63 branches in 18 cities of six provinces, 20 products in five categories, six
//! channels, and customers looked after by customer managers, observed over 24 months
//! (2024-01 .. 2025-12). At scale 1 there are 100,000 customers, about 400 managers, about
//! 2,000,000 transactions and about 6,000,000 monthly balance rows; everything except the fixed
//! dimension tables (regions, products, channels) grows linearly with the scale.
//!
//! - **Customers.** 88% individuals (segments mass, affluent and private by wealth; age 18-85;
//!   an education), 12% corporates (sme and large_corp; age null; education `n/a`; their
//!   `monthly_income` is monthly revenue). About 2% of individuals did not disclose an income
//!   (null), so income bands have an `unknown` member to show. Every customer has a home branch,
//!   a manager who works at that branch, an open date between 2005 and 2025 (15% opened during
//!   the window), and holds 1-6 distinct products, always including the demand deposit account.
//! - **Skew (the 80/20 view).** Each customer has an activity weight drawn from a capped Pareto
//!   distribution. The number of transactions grows with the square root of the weight and so
//!   does the ticket size (times a segment factor: corporates transact bigger), so fee income is
//!   roughly proportional to the weight: the top 20% of customers bring about 80% of the fee
//!   income. Segments follow the weight (the heaviest individuals are private clients).
//! - **Time.** Transaction volume has a seasonal shape (Chinese New Year in January/February,
//!   Golden Week in October, Singles' Day in November, the year end; a summer dip) on top of
//!   about 10% yearly growth. Channel mixes depend on the segment and the product category, and
//!   drift month by month: mobile and online grow, the counter, ATM and phone shrink, so the
//!   channel trend has a story.
//! - **Balances.** One row per month, customer and held product from the customer's first month
//!   in the window. They are integer random walks that move smoothly: deposits and wealth by a
//!   few percent a month, loans amortise, credit lines stay put and are raised now and then.
//!   Their level follows the segment and the weight. `interest_margin` is the balance times the
//!   product's yearly margin rate over 12, rounded to the cent in integer arithmetic.
//! - **Abnormal change.** About 5% of customers go dormant: no transactions from some month on
//!   (their balances carry on). About 1% collapse: in one month their deposit and wealth
//!   balances fall to 10-40% of the month before and stay low.
//! - **Costs.** `branch_costs` has a fixed part per branch (the same everywhere, times the scale)
//!   and a part per customer of the branch, with a little inflation and noise. Costs are about
//!   70% of margin plus fees, so contribution is positive for the bank, and negative for a few
//!   branches in small cities (fewer customers carrying the same fixed cost).
//!
//! # Determinism
//!
//! Every random draw comes from a ChaCha8 generator keyed by the seed, one stream per table
//! family (`set_stream`), so writing tables on several threads changes nothing. Money is integer
//! cents from the start (`f64` only shapes random draws, each rounded to cents once); sums and
//! margins are integer arithmetic. Parquet files carry no timestamps. The same binary on the same
//! platform writes the same bytes; another platform's `libm` could round a draw differently.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Int32Array, Int64Array, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{EngineError, Result};

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// The file format of the generated tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    Parquet,
    Csv,
}

impl DataFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            DataFormat::Parquet => "parquet",
            DataFormat::Csv => "csv",
        }
    }
}

/// What to generate: `scale` 1 is 100,000 customers and about 2,000,000 transactions.
#[derive(Debug, Clone)]
pub struct GenOptions {
    pub scale: f64,
    pub seed: u64,
    pub format: DataFormat,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            scale: 1.0,
            seed: 42,
            format: DataFormat::Parquet,
        }
    }
}

/// What [`generate`] wrote, one entry per table in the order of DESIGN.md.
#[derive(Debug)]
pub struct GenSummary {
    pub tables: Vec<TableSummary>,
}

/// One written table.
#[derive(Debug)]
pub struct TableSummary {
    pub name: &'static str,
    pub rows: usize,
    pub path: PathBuf,
}

/// Writes the 8 tables of DESIGN.md into `out` (created if missing) as `<table>.parquet` or
/// `<table>.csv`, replacing files of the same name.
#[tracing::instrument(skip_all, fields(scale = opts.scale, seed = opts.seed))]
pub fn generate(opts: &GenOptions, out: &Path) -> Result<GenSummary> {
    check_scale(opts.scale)?;
    fs::create_dir_all(out).map_err(|source| EngineError::Io {
        path: out.into(),
        source,
    })?;
    let bank = Bank::build(opts.scale, opts.seed);
    let writer = TableWriter {
        out,
        format: opts.format,
    };

    let (transactions, balances, dimensions) = thread::scope(|s| {
        let transactions = s.spawn(|| write_transactions(&bank, opts.seed, &writer));
        let balances = s.spawn(|| write_balances(&bank, opts.seed, &writer));
        let dimensions = write_dimensions(&bank, opts.seed, &writer);
        (join(transactions), join(balances), dimensions)
    });
    let [
        customers,
        products,
        regions,
        managers,
        channels,
        branch_costs,
    ] = dimensions?;
    let tables = vec![
        customers,
        products,
        regions,
        managers,
        channels,
        transactions?,
        balances?,
        branch_costs,
    ];
    tracing::info!(
        rows = tables.iter().map(|t| t.rows).sum::<usize>(),
        "generated data set"
    );
    Ok(GenSummary { tables })
}

fn check_scale(scale: f64) -> Result<()> {
    if scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE {
        return Ok(());
    }
    Err(EngineError::InvalidOption {
        option: "scale",
        message: format!("{scale} is not a number in (0, {MAX_SCALE}]; 1 means 100,000 customers"),
    })
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

// ---------------------------------------------------------------------------------------------
// The shape of the data set
// ---------------------------------------------------------------------------------------------

const CUSTOMERS_PER_SCALE: f64 = 100_000.0;
/// Refuses typos such as `--scale 1e9`; scale 1000 is already 2 billion transactions.
const MAX_SCALE: f64 = 1000.0;
/// Transactions per customer over the whole window, on average.
const TXNS_PER_CUSTOMER: f64 = 20.0;
const CUSTOMERS_PER_MANAGER: f64 = 250.0;
/// The window: `MONTHS` months from January of `FIRST_YEAR`.
const FIRST_YEAR: i32 = 2024;
const MONTHS: usize = 24;
/// Customers opened accounts from January of this year to the end of the window.
const OPEN_FROM_YEAR: i32 = 2005;
const OPENED_IN_WINDOW_SHARE: f64 = 0.15;
const CORPORATE_SHARE: f64 = 0.12;
const UNDISCLOSED_INCOME_SHARE: f64 = 0.02;
const DORMANT_SHARE: f64 = 0.05;
const COLLAPSE_SHARE: f64 = 0.01;
/// A collapsed customer keeps this many percent (inclusive range) of deposits and wealth.
const COLLAPSE_KEEP_PERCENT: (i64, i64) = (10, 40);
const REFUND_SHARE: f64 = 0.01;

/// Activity weights: Pareto with this shape, capped so one customer cannot dwarf a branch.
const PARETO_ALPHA: f64 = 2.0;
const WEIGHT_CAP: f64 = 100.0;
/// Transaction count and ticket size both grow with the weight to these powers.
const COUNT_EXPONENT: f64 = 0.5;
const TICKET_EXPONENT: f64 = 0.5;
const BALANCE_EXPONENT: f64 = 0.3;
/// Spread (log scale) of single amounts, balance levels and incomes around their typical value.
const AMOUNT_SPREAD: f64 = 0.7;
const BALANCE_SPREAD: f64 = 0.5;
const INCOME_SPREAD: f64 = 0.5;
/// Shares of individuals in the top segments, and of corporates that are large.
const PRIVATE_SHARE: f64 = 0.02;
const AFFLUENT_OR_PRIVATE_SHARE: f64 = 0.17;
const LARGE_CORP_SHARE: f64 = 0.15;

/// Transaction volume by calendar month (January first): New Year, summer dip, Golden Week,
/// Singles' Day, year end.
#[rustfmt::skip]
const SEASON: [f64; 12] = [1.20, 1.15, 0.95, 0.95, 1.00, 1.05, 0.85, 0.85, 0.95, 1.05, 1.10, 1.25];
const MONTHLY_GROWTH: f64 = 0.008;
/// A customer's volume in a month varies by up to this fraction around its expectation.
const MONTHLY_VOLUME_NOISE: f64 = 0.2;

/// Balance random walks, in basis points per month (inclusive ranges).
const DEPOSIT_STEP_BP: (i64, i64) = (-300, 340);
const LOAN_STEP_BP: (i64, i64) = (-150, -30);
const CREDIT_LINE_RAISE_SHARE: f64 = 0.04;
const CREDIT_LINE_RAISE_BP: (i64, i64) = (1_000, 2_500);
/// Credit lines are whole thousands of yuan.
const CREDIT_LINE_UNIT_CENTS: i64 = 100_000;

/// Branch operating cost per month: a fixed part (the same for every branch, times the scale)
/// plus a part per customer of the branch.
const BRANCH_FIXED_COST_CNY: f64 = 200_000.0;
const COST_PER_CUSTOMER_CNY: f64 = 230.0;
const COST_INFLATION: f64 = 0.003;
const COST_NOISE: f64 = 0.05;

/// Rows per Arrow batch and per Parquet row group.
const BATCH_ROWS: usize = 65_536;
const ROW_GROUP_ROWS: usize = 262_144;
const MONEY_PRECISION: u8 = 18;
const MONEY_SCALE: i8 = 2;
const MONEY: DataType = DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE);

// ---------------------------------------------------------------------------------------------
// Fixed dimension tables
// ---------------------------------------------------------------------------------------------

/// A city: name, number of branches, tier (how many customers each of its branches has).
type City = (&'static str, u32, u32);

/// The provinces and their cities.
#[rustfmt::skip]
const PROVINCES: [(&str, &[City]); 6] = [
    ("Zhejiang",  &[("Hangzhou", 5, 3), ("Ningbo", 4, 2), ("Wenzhou", 3, 2), ("Shaoxing", 2, 1)]),
    ("Jiangsu",   &[("Nanjing", 5, 3), ("Suzhou", 4, 3), ("Wuxi", 3, 2)]),
    ("Guangdong", &[("Guangzhou", 5, 3), ("Shenzhen", 5, 3), ("Dongguan", 3, 2), ("Foshan", 2, 2)]),
    ("Shandong",  &[("Jinan", 3, 2), ("Qingdao", 4, 2)]),
    ("Sichuan",   &[("Chengdu", 5, 3), ("Mianyang", 2, 1)]),
    ("Hubei",     &[("Wuhan", 4, 3), ("Yichang", 2, 1), ("Xiangyang", 2, 1)]),
];
const BRANCH_NAMES: [&str; 5] = ["Central", "East", "West", "North", "South"];
/// The first ("Central") branch of a city is this much busier than the others.
const CENTRAL_BRANCH_FACTOR: f64 = 1.5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Deposit,
    Loan,
    Card,
    Wealth,
    Intermediary,
}

impl Category {
    fn name(self) -> &'static str {
        match self {
            Category::Deposit => "deposit",
            Category::Loan => "loan",
            Category::Card => "card",
            Category::Wealth => "wealth",
            Category::Intermediary => "intermediary",
        }
    }

    /// How balances grow with the segment's `balance_factor`: wealthier customers hold much more
    /// money, borrow somewhat more and get somewhat higher credit lines.
    fn balance_elasticity(self) -> f64 {
        match self {
            Category::Deposit | Category::Wealth | Category::Intermediary => 1.0,
            Category::Loan => 0.75,
            Category::Card => 0.5,
        }
    }
}

/// A product and how customers use it. Money is in CNY for a mass customer of weight 1.
#[derive(Debug)]
struct Product {
    name: &'static str,
    category: Category,
    /// How likely an individual / a corporate is to hold it (0: never).
    individual: f64,
    corporate: f64,
    /// How often a holder transacts with it, relative to the other products held.
    activity: f64,
    ticket_cny: f64,
    fee_bp: i64,
    /// Yearly interest margin on the balance, in basis points.
    margin_bp: i64,
    /// Typical balance (or credit line), CNY.
    balance_cny: f64,
}

const fn product(
    name: &'static str,
    category: Category,
    (individual, corporate): (f64, f64),
    activity: f64,
    ticket_cny: f64,
    (fee_bp, margin_bp): (i64, i64),
    balance_cny: f64,
) -> Product {
    Product {
        name,
        category,
        individual,
        corporate,
        activity,
        ticket_cny,
        fee_bp,
        margin_bp,
        balance_cny,
    }
}

use Category::{Card, Deposit, Intermediary, Loan, Wealth};
/// The products; `product_id` is the position plus one. Everyone holds the first, the demand
/// deposit account, so its holding weights are unused.
#[rustfmt::skip]
const PRODUCTS: [Product; 20] = [
    //       name                     category      held by (ind, corp)  activity  ticket   (fee, margin) bp  balance
    product("Demand Deposit",        Deposit,      (0.0, 0.0), 10.0,   2_400.0, (10, 150),   8_000.0),
    product("Time Deposit 1Y",       Deposit,      (5.0, 4.0),  0.3,  60_000.0, (0, 120),   30_000.0),
    product("Time Deposit 3Y",       Deposit,      (3.0, 2.0),  0.2, 150_000.0, (0, 100),   50_000.0),
    product("Large-Denomination CD", Deposit,      (1.0, 4.0),  0.2, 600_000.0, (0, 80),   100_000.0),
    product("Mortgage",              Loan,         (4.0, 0.0),  1.0,  15_000.0, (20, 180), 300_000.0),
    product("Consumer Loan",         Loan,         (3.0, 0.0),  1.0,   6_000.0, (60, 400),  20_000.0),
    product("Auto Loan",             Loan,         (2.0, 0.0),  1.0,   9_000.0, (40, 300),  60_000.0),
    product("Business Loan",         Loan,         (1.0, 6.0),  1.0,  60_000.0, (20, 250), 100_000.0),
    product("Working Capital Loan",  Loan,         (0.0, 6.0),  1.5,  90_000.0, (16, 220), 150_000.0),
    product("Classic Credit Card",   Card,         (6.0, 0.0),  8.0,     900.0, (120, 300), 15_000.0),
    product("Platinum Credit Card",  Card,         (2.0, 0.0),  8.0,   3_600.0, (80, 300),  50_000.0),
    product("Corporate Card",        Card,         (0.0, 4.0),  6.0,   9_000.0, (60, 200),  20_000.0),
    product("Money Market Fund",     Wealth,       (5.0, 3.0),  1.0,  15_000.0, (20, 40),   20_000.0),
    product("Bond Fund",             Wealth,       (3.0, 2.0),  0.5,  30_000.0, (60, 60),   30_000.0),
    product("Equity Fund",           Wealth,       (3.0, 1.0),  0.8,  24_000.0, (100, 80),  25_000.0),
    product("Structured Note",       Wealth,       (1.0, 2.0),  0.3,  90_000.0, (100, 70), 100_000.0),
    product("Insurance Agency",      Intermediary, (3.0, 2.0),  0.3,   9_000.0, (600, 0),        0.0),
    product("FX Service",            Intermediary, (2.0, 4.0),  0.5,  30_000.0, (60, 0),         0.0),
    product("Payroll Service",       Intermediary, (0.0, 5.0),  2.0,  90_000.0, (6, 0),          0.0),
    product("Cash Management",       Intermediary, (0.0, 4.0),  2.0, 150_000.0, (6, 0),          0.0),
];
const MAX_HOLDINGS: usize = 6;

const CHANNELS: [&str; 6] = ["counter", "ATM", "POS", "phone", "online", "mobile"];
/// Channel mix by product category, in the order of `CHANNELS`, at the start of the window.
const CHANNEL_MIX: [[f64; 6]; 5] = [
    [20.0, 25.0, 0.0, 5.0, 20.0, 30.0], // deposit
    [40.0, 0.0, 0.0, 10.0, 25.0, 25.0], // loan
    [3.0, 10.0, 55.0, 2.0, 10.0, 20.0], // card
    [30.0, 0.0, 0.0, 10.0, 25.0, 35.0], // wealth
    [45.0, 0.0, 0.0, 15.0, 25.0, 15.0], // intermediary
];
/// Each channel's weight is multiplied by this every month: the shift to mobile and online.
const CHANNEL_TREND: [f64; 6] = [0.975, 0.985, 1.0, 0.98, 1.005, 1.03];
/// A flat fee per transaction by channel, in cents.
const CHANNEL_FEE_CENTS: [i64; 6] = [200, 0, 0, 100, 0, 0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Mass,
    Affluent,
    Private,
    Sme,
    LargeCorp,
}

/// How a segment differs: size, channels, holdings, and who its customers are.
#[derive(Debug)]
struct SegmentProfile {
    name: &'static str,
    corporate: bool,
    /// Balances relative to a mass customer (see `Category::balance_elasticity`).
    balance_factor: f64,
    /// Ticket sizes relative to a mass customer.
    ticket_factor: f64,
    /// Products held, inclusive range.
    holdings: (usize, usize),
    /// Multiplies `CHANNEL_MIX`, in the order of `CHANNELS`.
    channel_bias: [f64; 6],
    /// Weights of `EDUCATIONS` (unused for corporates).
    education: [f64; 4],
    mean_age: f64,
    /// Median monthly income (revenue for corporates), CNY.
    income_cny: f64,
}

const SEGMENTS: [SegmentProfile; 5] = [
    SegmentProfile {
        name: "mass",
        corporate: false,
        balance_factor: 1.0,
        ticket_factor: 1.0,
        holdings: (1, 4),
        channel_bias: [0.8, 1.3, 1.1, 0.6, 0.9, 1.3],
        education: [40.0, 45.0, 12.0, 3.0],
        mean_age: 40.0,
        income_cny: 6_000.0,
    },
    SegmentProfile {
        name: "affluent",
        corporate: false,
        balance_factor: 4.0,
        ticket_factor: 1.3,
        holdings: (2, 5),
        channel_bias: [1.0, 1.0, 1.0, 1.0, 1.1, 1.1],
        education: [15.0, 50.0, 28.0, 7.0],
        mean_age: 47.0,
        income_cny: 25_000.0,
    },
    SegmentProfile {
        name: "private",
        corporate: false,
        balance_factor: 20.0,
        ticket_factor: 2.0,
        holdings: (3, 6),
        channel_bias: [2.0, 0.5, 1.0, 2.5, 1.0, 0.8],
        education: [10.0, 40.0, 35.0, 15.0],
        mean_age: 55.0,
        income_cny: 120_000.0,
    },
    SegmentProfile {
        name: "sme",
        corporate: true,
        balance_factor: 8.0,
        ticket_factor: 2.0,
        holdings: (2, 5),
        channel_bias: [1.5, 0.8, 0.6, 1.0, 1.5, 0.7],
        education: [0.0; 4],
        mean_age: 0.0,
        income_cny: 800_000.0,
    },
    SegmentProfile {
        name: "large_corp",
        corporate: true,
        balance_factor: 30.0,
        ticket_factor: 4.0,
        holdings: (3, 6),
        channel_bias: [2.0, 0.2, 0.3, 1.0, 2.5, 0.3],
        education: [0.0; 4],
        mean_age: 0.0,
        income_cny: 30_000_000.0,
    },
];

impl Segment {
    fn profile(self) -> &'static SegmentProfile {
        &SEGMENTS[self as usize]
    }
}

const EDUCATIONS: [&str; 4] = ["high_school", "bachelor", "master", "doctorate"];
const CORPORATE_EDUCATION: &str = "n/a";
const MIN_AGE: f64 = 18.0;
const MAX_AGE: f64 = 85.0;
const AGE_SPREAD: f64 = 13.0;

const SURNAMES: [&str; 20] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
];
const GIVEN_NAMES: [&str; 20] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Jun", "Yang", "Yong", "Yan", "Jie", "Tao",
    "Ming", "Chao", "Xiuying", "Hua", "Ping", "Gang", "Xia",
];
const FIRM_NAMES: [&str; 12] = [
    "Hengda", "Xinghe", "Jinhui", "Tianrui", "Huaxin", "Longteng", "Minsheng", "Ruifeng", "Boya",
    "Zhongtai", "Yuanhang", "Kaiyuan",
];
const FIRM_KINDS: [&str; 8] = [
    "Trading Co.",
    "Technology Co.",
    "Manufacturing Co.",
    "Logistics Co.",
    "Textiles Co.",
    "Foods Co.",
    "Construction Co.",
    "Pharma Co.",
];

// ---------------------------------------------------------------------------------------------
// The bank: branches, managers and customers, drawn once and shared by every table
// ---------------------------------------------------------------------------------------------

/// One ChaCha stream per table family, so the tables can be written on any thread.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Bank = 1,
    Transactions = 2,
    Balances = 3,
    BranchCosts = 4,
}

fn rng_for(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream as u64);
    rng
}

#[derive(Debug)]
struct Branch {
    province: &'static str,
    city: &'static str,
    name: String,
    /// Share of customers, relative to the other branches.
    weight: f64,
}

#[derive(Debug)]
struct Manager {
    name: String,
    region_id: i32,
}

/// The products a customer holds, as indexes into `PRODUCTS`, ascending.
#[derive(Debug, Clone, Copy)]
struct Holdings {
    products: [u8; MAX_HOLDINGS],
    len: u8,
}

impl Holdings {
    /// How often each held product is used, by slot (0 for empty slots).
    fn activity(&self) -> [f64; MAX_HOLDINGS] {
        let mut activity = [0.0; MAX_HOLDINGS];
        for (slot, product) in self.indexes().enumerate() {
            activity[slot] = PRODUCTS[product].activity;
        }
        activity
    }

    fn indexes(&self) -> impl Iterator<Item = usize> + '_ {
        self.products[..self.len as usize]
            .iter()
            .map(|&p| p as usize)
    }
}

/// Who a customer is; corporates have no age and education `n/a`.
#[derive(Debug)]
struct Person {
    age: Option<i32>,
    education: &'static str,
    /// Monthly income (revenue for corporates); `None` when not disclosed.
    income_cents: Option<i64>,
    /// Indexes into the name lists (surname and given name, or firm name and kind).
    name: (u8, u8),
}

#[derive(Debug)]
struct Customer {
    id: i64,
    segment: Segment,
    /// Pareto activity weight, at least 1.
    weight: f64,
    region_id: i32,
    manager_id: i32,
    open_date: i32,
    /// The first month of the window with balances (0 when opened before the window).
    first_month: usize,
    /// Months from this one on have no transactions (`MONTHS` unless dormant).
    active_until: usize,
    collapse_month: Option<usize>,
    holdings: Holdings,
    person: Person,
    /// Expected transactions in a month of seasonal weight 1.
    txn_rate: f64,
}

#[derive(Debug)]
struct Bank {
    scale: f64,
    branches: Vec<Branch>,
    managers: Vec<Manager>,
    customers: Vec<Customer>,
    calendar: [Month; MONTHS],
}

impl Bank {
    fn build(scale: f64, seed: u64) -> Bank {
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

    fn branch(&self, region_id: i32) -> &Branch {
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

/// Draws everything about a customer except the manager and the transaction rate, which depend
/// on the other customers.
fn draw_customer(id: i64, branch_weights: &[f64], rng: &mut ChaCha8Rng) -> Customer {
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
    let (year, month_of_year) = year_month(month);
    let day = rng.random_range(1..=days_in_month(year, month_of_year));
    (days_from_civil(year, month_of_year, day), month)
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

// ---------------------------------------------------------------------------------------------
// The calendar
// ---------------------------------------------------------------------------------------------

/// A month of the window.
#[derive(Debug)]
struct Month {
    index: usize,
    first_day: i32,
    days: u32,
    /// Relative transaction volume: season times growth.
    volume: f64,
}

impl Month {
    fn new(index: usize) -> Month {
        let (year, month) = year_month(index as i64);
        let growth = (1.0 + MONTHLY_GROWTH).powi(index as i32);
        Month {
            index,
            first_day: days_from_civil(year, month, 1),
            days: days_in_month(year, month),
            volume: SEASON[month as usize - 1] * growth,
        }
    }

    /// The first day (0-based within the month) a customer who opened on `open_date` can
    /// transact.
    fn first_open_day(&self, open_date: i32) -> u32 {
        (open_date - self.first_day).clamp(0, self.days as i32) as u32
    }

    /// The share of the month during which the customer's account is open.
    fn open_fraction(&self, open_date: i32) -> f64 {
        f64::from(self.days - self.first_open_day(open_date)) / f64::from(self.days)
    }
}

/// (year, month 1-12) of a month counted from January of `FIRST_YEAR`.
fn year_month(month: i64) -> (i32, u32) {
    let absolute = i64::from(FIRST_YEAR) * 12 + month;
    (
        absolute.div_euclid(12) as i32,
        absolute.rem_euclid(12) as u32 + 1,
    )
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Arrow's Date32) of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month as i32 + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as i32 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

// ---------------------------------------------------------------------------------------------
// Random draws
// ---------------------------------------------------------------------------------------------

/// A Pareto draw with minimum 1 and shape `PARETO_ALPHA`, capped at `WEIGHT_CAP`.
fn pareto(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random();
    (1.0 - u).powf(-1.0 / PARETO_ALPHA).min(WEIGHT_CAP)
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal factor with mean 1.
fn lognormal(rng: &mut ChaCha8Rng, spread: f64) -> f64 {
    (spread * normal(rng) - spread * spread / 2.0).exp()
}

/// An index drawn with probability proportional to `weights` (not all zero).
fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
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
fn stochastic_round(rng: &mut ChaCha8Rng, x: f64) -> u32 {
    let floor = x.floor();
    floor as u32 + u32::from(rng.random::<f64>() < x - floor)
}

/// Integer yuan (already rounded) to cents.
fn yuan_to_cents(yuan: f64) -> i64 {
    yuan as i64 * 100
}

/// `value * bp / 10_000`, rounded half away from zero, in integers.
fn apply_bp(value: i64, bp: i64) -> i64 {
    let scaled = i128::from(value) * i128::from(bp);
    let rounded = (scaled.abs() + 5_000) / 10_000 * scaled.signum();
    rounded as i64
}

// ---------------------------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------------------------

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

fn write_transactions(bank: &Bank, seed: u64, writer: &TableWriter<'_>) -> Result<TableSummary> {
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

// ---------------------------------------------------------------------------------------------
// Balances
// ---------------------------------------------------------------------------------------------

fn write_balances(bank: &Bank, seed: u64, writer: &TableWriter<'_>) -> Result<TableSummary> {
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

// ---------------------------------------------------------------------------------------------
// Dimension tables and branch costs
// ---------------------------------------------------------------------------------------------

/// customers, products, regions, managers, channels, branch_costs.
fn write_dimensions(bank: &Bank, seed: u64, writer: &TableWriter<'_>) -> Result<[TableSummary; 6]> {
    Ok([
        write_customers(bank, writer)?,
        writer.write_one("products", products_batch()?)?,
        writer.write_one("regions", regions_batch(bank)?)?,
        writer.write_one("managers", managers_batch(bank)?)?,
        writer.write_one("channels", channels_batch()?)?,
        writer.write_one("branch_costs", branch_costs_batch(bank, seed)?)?,
    ])
}

fn write_customers(bank: &Bank, writer: &TableWriter<'_>) -> Result<TableSummary> {
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

// ---------------------------------------------------------------------------------------------
// Schemas and arrays
// ---------------------------------------------------------------------------------------------

/// A schema of non-nullable columns.
fn schema(columns: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, t)| Field::new(*name, t.clone(), false))
            .collect::<Vec<_>>(),
    ))
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

fn branch_costs_schema() -> SchemaRef {
    schema(&[
        ("month", DataType::Date32),
        ("region_id", DataType::Int32),
        ("operating_cost", MONEY),
    ])
}

fn batch(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A Decimal128(18, 2) column from cents (`Vec<i128>`, or `Vec<Option<i128>>` with nulls).
fn money(cents: impl Into<Decimal128Array>) -> Result<ArrayRef> {
    let array = cents.into();
    Ok(Arc::new(
        array.with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Writing files
// ---------------------------------------------------------------------------------------------

/// Where and how tables are written.
#[derive(Debug)]
struct TableWriter<'a> {
    out: &'a Path,
    format: DataFormat,
}

impl TableWriter<'_> {
    fn create(&self, name: &'static str, schema: SchemaRef) -> Result<TableSink> {
        let path = self.out.join(format!("{name}.{}", self.format.extension()));
        let file = File::create(&path).map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        let writer = match self.format {
            DataFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::SNAPPY)
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .build();
                let writer =
                    ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|source| {
                        EngineError::Parquet {
                            path: path.clone(),
                            source,
                        }
                    })?;
                FileWriter::Parquet(writer)
            }
            DataFormat::Csv => FileWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(BufWriter::new(file)),
            ),
        };
        Ok(TableSink {
            name,
            path,
            schema,
            rows: 0,
            writer,
        })
    }

    fn write_one(&self, name: &'static str, batch: RecordBatch) -> Result<TableSummary> {
        let mut sink = self.create(name, batch.schema())?;
        sink.write(&batch)?;
        sink.finish()
    }
}

enum FileWriter {
    Parquet(ArrowWriter<File>),
    Csv(arrow::csv::Writer<BufWriter<File>>),
}

impl std::fmt::Debug for FileWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileWriter::Parquet(_) => "FileWriter::Parquet",
            FileWriter::Csv(_) => "FileWriter::Csv",
        })
    }
}

/// One table being written, batch by batch.
#[derive(Debug)]
struct TableSink {
    name: &'static str,
    path: PathBuf,
    schema: SchemaRef,
    rows: usize,
    writer: FileWriter,
}

impl TableSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        match &mut self.writer {
            FileWriter::Parquet(w) => w.write(batch).map_err(|e| self.parquet_error(e)),
            FileWriter::Csv(w) => w.write(batch).map_err(|e| csv_error(&self.path, e)),
        }
    }

    fn finish(self) -> Result<TableSummary> {
        let TableSink {
            name,
            path,
            schema,
            rows,
            writer,
        } = self;
        match writer {
            FileWriter::Parquet(w) => {
                w.close().map_err(|source| EngineError::Parquet {
                    path: path.clone(),
                    source,
                })?;
            }
            FileWriter::Csv(mut w) => {
                if rows == 0 {
                    // An empty batch still writes the header line.
                    w.write(&RecordBatch::new_empty(schema))
                        .map_err(|e| csv_error(&path, e))?;
                }
                w.into_inner().flush().map_err(|source| EngineError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(TableSummary { name, rows, path })
    }

    fn parquet_error(&self, source: parquet::errors::ParquetError) -> EngineError {
        EngineError::Parquet {
            path: self.path.clone(),
            source,
        }
    }
}

/// CSV errors are Arrow errors; keep the file's path when it is an I/O failure.
fn csv_error(path: &Path, error: ArrowError) -> EngineError {
    match error {
        ArrowError::IoError(_, source) => EngineError::Io {
            path: path.into(),
            source,
        },
        other => EngineError::Arrow(other),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Instant;

    use super::*;

    fn options(seed: u64, format: DataFormat) -> GenOptions {
        GenOptions {
            scale: 0.01,
            seed,
            format,
        }
    }

    fn generate_into(opts: &GenOptions) -> (tempfile::TempDir, GenSummary) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let summary = generate(opts, dir.path()).expect("generate");
        (dir, summary)
    }

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn same_seed_writes_the_same_bytes_and_another_seed_does_not() {
        let (_a, first) = generate_into(&options(7, DataFormat::Parquet));
        let (_b, second) = generate_into(&options(7, DataFormat::Parquet));
        for (x, y) in first.tables.iter().zip(&second.tables) {
            assert_eq!(
                read(&x.path),
                read(&y.path),
                "{} differs between runs",
                x.name
            );
        }
        let (_c, other) = generate_into(&options(8, DataFormat::Parquet));
        let transactions = |s: &GenSummary| read(&s.tables[5].path);
        assert_ne!(transactions(&first), transactions(&other));
    }

    #[test]
    fn summary_lists_the_eight_tables_in_design_order() {
        let (dir, summary) = generate_into(&options(1, DataFormat::Parquet));
        let rows: Vec<(&str, usize)> = summary.tables.iter().map(|t| (t.name, t.rows)).collect();
        let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "customers",
                "products",
                "regions",
                "managers",
                "channels",
                "transactions",
                "balances",
                "branch_costs"
            ]
        );
        assert_eq!(rows[0].1, 1_000);
        assert_eq!(rows[1].1, PRODUCTS.len());
        assert_eq!(rows[2].1, 63);
        assert_eq!(rows[4].1, CHANNELS.len());
        assert!(
            (17_000..23_000).contains(&rows[5].1),
            "transactions: {}",
            rows[5].1
        );
        assert_eq!(rows[7].1, MONTHS * 63);
        for t in &summary.tables {
            assert_eq!(t.path, dir.path().join(format!("{}.parquet", t.name)));
        }
    }

    #[test]
    fn csv_writes_every_table_with_a_header() {
        let (_dir, summary) = generate_into(&options(3, DataFormat::Csv));
        assert_eq!(summary.tables.len(), 8);
        for table in &summary.tables {
            assert_eq!(table.path.extension().and_then(|e| e.to_str()), Some("csv"));
            let text = String::from_utf8(read(&table.path)).expect("utf-8");
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let first_column = header.split(',').next().unwrap_or_default();
            assert!(
                first_column.ends_with("_id") || first_column == "month",
                "{header}"
            );
            assert_eq!(lines.count(), table.rows, "{} data lines", table.name);
        }
        let customers = String::from_utf8(read(&summary.tables[0].path)).expect("utf-8");
        assert!(customers.starts_with(
            "customer_id,customer_type,name,age,monthly_income,education,segment,region_id,\
             manager_id,open_date\n"
        ));
    }

    #[test]
    fn rejects_a_scale_out_of_range() {
        let out = Path::new("/nonexistent/never-created");
        for scale in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e6] {
            let opts = GenOptions {
                scale,
                ..GenOptions::default()
            };
            let err = generate(&opts, out).expect_err("scale {scale} accepted");
            assert!(
                matches!(
                    err,
                    EngineError::InvalidOption {
                        option: "scale",
                        ..
                    }
                ),
                "{scale}: {err}"
            );
        }
    }

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

    #[test]
    fn dates_and_integer_money_are_exact() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 1, 1), 19_723);
        assert_eq!(days_from_civil(2025, 12, 31), 20_453);
        assert_eq!(year_month(-1), (2023, 12));
        assert_eq!(year_month(23), (2025, 12));
        assert_eq!(apply_bp(15, 5_000), 8);
        assert_eq!(apply_bp(-15, 5_000), -8);
        assert_eq!(apply_bp(100_000, 150), 1_500);
    }

    /// Scale 1 end to end; run with `cargo test --release -p lattice-engine -- --ignored
    /// --nocapture gen`.
    #[test]
    #[ignore = "generates the full scale-1 data set (slow in debug builds)"]
    fn scale_one_generation_time() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let start = Instant::now();
        let summary = generate(&GenOptions::default(), dir.path()).expect("generate");
        println!("scale 1 generated in {:.2?}", start.elapsed());
        for t in &summary.tables {
            let bytes = fs::metadata(&t.path).map(|m| m.len()).unwrap_or(0);
            println!("{:>14} {:>10} rows {:>12} bytes", t.name, t.rows, bytes);
        }
    }
}
