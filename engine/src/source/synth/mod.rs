//! The synthetic bank data set of docs/architecture.md ("The default data set: the data contract"): eight tables
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
//!
//! # Layout
//!
//! [`generate`] draws the `bank::Bank` once (the fixed `catalog`, the `customers` and their
//! managers, over the `calendar`), then writes `transactions` and `balances` on two threads
//! and the `dimensions` tables on the calling one, each through `write` as Parquet or CSV.
//! `random` holds the seeded streams and draws, `columns` the Arrow helpers all tables share.

mod balances;
mod bank;
mod calendar;
mod catalog;
mod columns;
mod customers;
mod dimensions;
mod random;
mod transactions;
mod write;

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;

use self::balances::write_balances;
use self::bank::Bank;
use self::dimensions::write_dimensions;
use self::transactions::write_transactions;
use self::write::TableWriter;
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

/// How the tables are laid out in the output folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// One file per table, `transactions.parquet`.
    #[default]
    Files,
    /// The monthly tables (transactions, balances, branch_costs) as a folder each, one file per
    /// month of their date (`transactions/2025-03.parquet`); the others as files. The same rows.
    MonthlyFolders,
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

/// What [`generate`] wrote, one entry per table in the order of docs/architecture.md.
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

/// Writes the 8 tables of docs/architecture.md into `out` (created if missing) as `<table>.parquet` or
/// `<table>.csv`, replacing files of the same name.
pub fn generate(opts: &GenOptions, out: &Path) -> Result<GenSummary> {
    generate_in(opts, Layout::Files, out)
}

/// [`generate`], with the monthly tables laid out as `layout` says (a monthly table's summary
/// then names its folder).
#[tracing::instrument(skip_all, fields(scale = opts.scale, seed = opts.seed))]
pub fn generate_in(opts: &GenOptions, layout: Layout, out: &Path) -> Result<GenSummary> {
    check_scale(opts.scale)?;
    fs::create_dir_all(out).map_err(|source| EngineError::Io {
        path: out.into(),
        source,
    })?;
    let bank = Bank::build(opts.scale, opts.seed);
    let writer = TableWriter {
        out,
        format: opts.format,
        layout,
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::catalog::{CHANNELS, PRODUCTS};
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
