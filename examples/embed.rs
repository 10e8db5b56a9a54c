//! Embedding Lattice as a library: make a small synthetic bank data set, define a cube in
//! YAML, load and build it, read a cuboid's cells (the store), and ask a question through a
//! session (the way every read goes: the server, the CLI and the SQL layer all do).
//!
//! ```sh
//! cargo run --example embed
//! ```

use lattice_engine::access::Access;
use lattice_engine::build::BuildOptions;
use lattice_engine::query::Query;
use lattice_engine::source::load::load;
use lattice_engine::source::synth::{DataFormat, GenOptions, generate};

/// Deposits and active customers by province and year, with the two cuboids listed.
const CUBE: &str = r#"
version: 1
cube: deposits
sources:
  customers:    { path: customers.parquet }
  regions:      { path: regions.parquet }
  transactions: { path: transactions.parquet }
  balances:     { path: balances.parquet }
facts:
  transactions: { time: txn_date, dimensions: [customer] }
  balances:     { time: month, dimensions: [customer] }
dimensions:
  time:     { type: time, hierarchy: [year, quarter, month] }
  customer: { table: customers, key: customer_id, levels: { segment: { column: segment } } }
  region:   { table: regions, key: region_id, via: customer, hierarchy: [province, city, branch] }
measures:
  active_customers: { fact: transactions, agg: distinct, column: customer_id }
  deposits:         { fact: balances, agg: sum, column: deposit_balance, over_time: last }
aggregates:
  mode: explicit
  cuboids: [[region.province, time.year]]
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join("lattice-example-embed");
    generate(
        &GenOptions {
            scale: 0.01,
            seed: 42,
            format: DataFormat::Parquet,
        },
        &dir,
    )?;
    let model = lattice_defs::parse_str(CUBE, "deposits.yaml", &dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let sources = runtime.block_on(load(&model))?;
    let data = runtime.block_on(lattice_engine::open(
        &model,
        &sources,
        &BuildOptions::default(),
    ))?;
    let data = std::sync::Arc::new(data);
    let cube = data.cube();

    let province = model.level("region.province").ok_or("no region.province")?;
    let year = model.level("time.year").ok_or("no time.year")?;
    let balances = model.fact("balances").ok_or("no balances fact")?;
    let deposits = model.measure("deposits").ok_or("no deposits measure")?;
    let cuboid = cube
        .cuboid(balances, &[province, year])
        .ok_or("the listed cuboid was not built")?;
    println!(
        "{:<12} {:>6} {:>18}",
        "province", "year", "deposits (year end)"
    );
    for cell in 0..cuboid.len() {
        let codes = cuboid.cell_codes(cell);
        let value = cuboid.value(cell, deposits).ok_or("deposits not stored")?;
        println!(
            "{:<12} {:>6} {:>18}",
            cube.member_name(cuboid.levels()[0], codes[0]),
            cube.member_name(cuboid.levels()[1], codes[1]),
            value.to_string()
        );
    }

    // The same numbers asked as a question: a session applies the caller's access (here:
    // everything) and picks the cuboid, or falls back to DataFusion over the sources.
    let question = Query::from_json(
        r#"{"measures": ["deposits", "active_customers"], "rows": ["customer.segment"]}"#,
    )?;
    let answer = runtime.block_on(data.session(Access::everything()).query(&question))?;
    println!("\nby segment (answered from {}):", answer.meta.source);
    for row in &answer.rows {
        println!("{row:?}");
    }
    Ok(())
}
