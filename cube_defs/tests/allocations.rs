//! The `allocations:` section: a valid allocation becomes a fact after the source facts, and
//! each rule has a negative case that asserts the whole message, its line, column and path.

use std::path::Path;

use lattice_defs::model::Driver;
use lattice_defs::{Catalog, ColumnType, Model, TableSchema, allocation_schema, check_catalog};

const BASE: &str = r#"version: 1
cube: shop
sources:
  sales: { path: sales.csv }
  stores: { path: stores.csv }
  customers: { path: customers.csv }
  costs: { path: costs.csv }
  products: { path: products.csv }
facts:
  sales: { time: day, dimensions: [customer, product] }
allocations:
  store_cost:
    pool: { source: costs, amount: cost, time: month, member: { dimension: store, key: store_id } }
    driver: { measure: orders }
    dimensions: [customer, product]
dimensions:
  time:
    type: time
    hierarchy: [year, month]
  customer:
    table: customers
    key: customer_id
    levels:
      id: { column: customer_id }
  store:
    table: stores
    key: store_id
    via: customer
    levels:
      city: { column: city }
  product:
    table: products
    key: product_id
    levels:
      sku: { column: sku }
measures:
  revenue: { fact: sales, agg: sum, column: amount }
  orders: { fact: sales, agg: count }
  buyers: { fact: sales, agg: distinct, column: customer_id }
  avg_order: { expr: revenue / orders }
  cost: { fact: store_cost, agg: sum, column: cost }
  margin: { expr: revenue - cost }
"#;

/// `BASE` with the first occurrence of `from` replaced by `to` (which must exist).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: '{from}' is not in BASE");
    BASE.replacen(from, to, 1)
}

fn errors(yaml: &str) -> Vec<String> {
    match lattice_defs::parse_str(yaml, "shop.yaml", Path::new("/data")) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn model(yaml: &str) -> Model {
    lattice_defs::parse_str(yaml, "shop.yaml", Path::new("/data")).unwrap_or_else(|d| panic!("{d}"))
}

#[track_caller]
fn assert_errors(yaml: &str, expected: &[&str]) {
    assert_eq!(errors(yaml), expected, "definition:\n{yaml}");
}

#[test]
fn an_allocation_is_a_fact_after_the_sources_facts() {
    let m = model(BASE);
    assert_eq!(m.facts.len(), 2);
    let f = m.fact("store_cost").expect("the allocated fact");
    let a = m.allocation_of(f).expect("its allocation");
    assert_eq!(a.from, m.fact("sales").unwrap());
    assert_eq!(a.driver, Driver::Measure(m.measure("orders").unwrap()));
    assert_eq!(a.pool.member, m.dimension("store").unwrap());
    assert_eq!(m.facts[f].time.as_ref().unwrap().column, "month");
    // The allocated cost varies by customer, product and (through the customer) store and
    // time; a derived measure over both facts too.
    let margin = m.measure("margin").unwrap();
    assert_eq!(m.measure_facts(margin), vec![0, 1]);
    for l in ["customer.id", "store.city", "product.sku", "time.month"] {
        assert!(m.measure_varies_by(margin, m.level(l).unwrap()), "{l}");
    }
    // `equal` names the fact; the dimensions default to the driver fact's.
    let m = model(&with(
        "driver: { measure: orders }\n    dimensions: [customer, product]",
        "driver: { equal: sales }",
    ));
    let a = &m.allocations[0];
    assert_eq!(a.driver, Driver::Equal);
    assert_eq!(m.facts[a.fact].direct, m.facts[0].direct);
}

#[test]
fn the_pool_names_known_tables_and_dimensions() {
    assert_errors(
        &with("source: costs", "source: cost"),
        &[
            "shop.yaml:13:21: allocations.store_cost.pool.source: unknown table 'cost' in sources (did you mean 'costs'?)",
        ],
    );
    assert_errors(
        &with("dimension: store", "dimension: stor"),
        &[
            "shop.yaml:13:76: allocations.store_cost.pool.member.dimension: unknown dimension 'stor' (did you mean 'store'?)",
        ],
    );
    assert_errors(
        &with("dimension: store", "dimension: time"),
        &[
            "shop.yaml:13:76: allocations.store_cost.pool.member.dimension: the pool's periods come from `time`; `member` names the dimension each pool row belongs to (a branch)",
        ],
    );
}

#[test]
fn the_driver_is_one_additive_measure_or_an_equal_split() {
    assert_errors(
        &with("measure: orders }", "measure: order }"),
        &[
            "shop.yaml:14:24: allocations.store_cost.driver.measure: unknown measure 'order' (did you mean 'orders'?)",
        ],
    );
    for not_additive in ["avg_order", "buyers"] {
        assert_errors(
            &with("measure: orders }", &format!("measure: {not_additive} }}")),
            &[&format!(
                "shop.yaml:14:24: allocations.store_cost.driver.measure: driver '{not_additive}' is not additive: shares follow a sum or count measure (min, max, distinct and derived measures do not add up over cells)"
            )],
        );
    }
    assert_errors(
        &with("measure: orders }", "measure: cost }"),
        &[
            "shop.yaml:14:24: allocations.store_cost.driver.measure: driver 'cost' is a measure of another allocation; drive by a measure of a fact read from a source",
        ],
    );
    assert_errors(
        &with("{ measure: orders }", "{ measure: orders, equal: sales }"),
        &[
            "shop.yaml:14:13: allocations.store_cost.driver: a driver is either `measure: <sum or count measure>` or `equal: <fact>`, exactly one of them",
        ],
    );
    assert_errors(
        &with("{ measure: orders }", "{ equal: sale }"),
        &[
            "shop.yaml:14:22: allocations.store_cost.driver.equal: unknown fact 'sale' in facts (did you mean 'sales'?)",
        ],
    );
}

#[test]
fn the_allocated_dimensions_are_the_driver_facts_and_reach_the_member() {
    assert_errors(
        &with(
            "dimensions: [customer, product]\ndimensions",
            "dimensions: [customer, store]\ndimensions",
        ),
        &[
            "shop.yaml:15:28: allocations.store_cost.dimensions: the driver's fact 'sales' does not carry dimension 'store' (it carries: customer, product)",
        ],
    );
    assert_errors(
        &with(
            "dimensions: [customer, product]\ndimensions",
            "dimensions: [product]\ndimensions",
        ),
        &[
            "shop.yaml:13:76: allocations.store_cost.pool.member.dimension: no cell of 'store_cost' lies under a member of 'store': none of its dimensions (product) is 'store' or reaches it `via` another",
        ],
    );
    assert_errors(
        &with(
            "dimensions: [customer, product]\ndimensions",
            "dimensions: [custmer]\ndimensions",
        ),
        &[
            "shop.yaml:15:18: allocations.store_cost.dimensions: unknown dimension 'custmer' (did you mean 'customer'?)",
        ],
    );
}

#[test]
fn names_and_columns_do_not_clash() {
    assert_errors(
        &with("  store_cost:\n    pool", "  costs:\n    pool")
            .replace("fact: store_cost", "fact: costs"),
        &[
            "shop.yaml:12:3: allocations.costs: 'costs' is already a source or fact table; an allocation's name is the name of the fact it creates",
        ],
    );
    assert_errors(
        &with("amount: cost,", "amount: customer_id,"),
        &[
            "shop.yaml:13:36: allocations.store_cost.pool.amount: the allocated table 'store_cost' would have two columns named 'customer_id'; its columns are its dimensions' keys, the pool's time column and the pool's amount column",
        ],
    );
}

#[test]
fn an_allocation_needs_a_time_dimension() {
    let no_time = with(
        "  time:\n    type: time\n    hierarchy: [year, month]\n",
        "",
    );
    let errs = errors(&no_time);
    assert!(
        errs.iter().any(|e| e.starts_with(
            "shop.yaml:12:3: allocations.store_cost: an allocation spreads each period's pool over that period's cells; the cube needs a time dimension"
        )),
        "{errs:?}"
    );
}

fn catalog(cost: ColumnType) -> Catalog {
    let table = |name: &str, cols: Vec<(&str, ColumnType)>| TableSchema {
        name: name.into(),
        file: format!("/data/{name}.csv"),
        columns: cols.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
    };
    Catalog {
        tables: vec![
            table(
                "sales",
                vec![
                    ("day", ColumnType::Date),
                    ("customer_id", ColumnType::Integer),
                    ("product_id", ColumnType::Text),
                    ("amount", ColumnType::Decimal { scale: 2 }),
                ],
            ),
            table(
                "customers",
                vec![
                    ("customer_id", ColumnType::Integer),
                    ("store_id", ColumnType::Integer),
                ],
            ),
            table(
                "stores",
                vec![
                    ("store_id", ColumnType::Integer),
                    ("city", ColumnType::Text),
                ],
            ),
            table(
                "products",
                vec![("product_id", ColumnType::Text), ("sku", ColumnType::Text)],
            ),
            table(
                "costs",
                vec![
                    ("month", ColumnType::Date),
                    ("store_id", ColumnType::Integer),
                    ("cost", cost),
                ],
            ),
        ],
    }
}

/// The catalog with the allocated tables' schemas added, as the engine does before checking.
fn with_allocations(m: &Model, mut c: Catalog) -> Catalog {
    for a in &m.allocations {
        let schema = allocation_schema(m, &c, a).expect("schema");
        c.tables.push(schema);
    }
    c
}

#[test]
fn the_allocated_table_has_the_keys_the_period_and_the_amount() {
    let m = model(BASE);
    let c = with_allocations(&m, catalog(ColumnType::Decimal { scale: 2 }));
    let t = c.table("store_cost").expect("allocated table");
    assert_eq!(
        t.columns,
        vec![
            ("customer_id".to_string(), ColumnType::Integer),
            ("product_id".to_string(), ColumnType::Text),
            ("month".to_string(), ColumnType::Date),
            ("cost".to_string(), ColumnType::Decimal { scale: 2 }),
        ]
    );
    let diags = check_catalog(&m, &c);
    assert!(diags.is_empty(), "{diags}");
}

#[test]
fn pool_columns_are_checked_against_the_data() {
    let m = model(BASE);
    let diags = check_catalog(&m, &with_allocations(&m, catalog(ColumnType::Float)));
    assert_eq!(
        diags.to_string(),
        "shop.yaml:13:36: allocations.store_cost.pool.amount: column 'costs.cost' has type float, but an exact number (integer or decimal; a float cannot be split to the cent) is needed here"
    );
    let m = model(&with("time: month,", "time: mont,"));
    let diags = check_catalog(
        &m,
        &with_allocations(&m, catalog(ColumnType::Decimal { scale: 2 })),
    );
    assert_eq!(
        diags.to_string(),
        "shop.yaml:13:48: allocations.store_cost.pool.time: column 'mont' not found in table 'costs' (/data/costs.csv) (did you mean 'month'?)"
    );
    // A measure over the allocated fact names one of its columns.
    let m = model(&with("column: cost }", "column: costs }"));
    let diags = check_catalog(
        &m,
        &with_allocations(&m, catalog(ColumnType::Decimal { scale: 2 })),
    );
    assert_eq!(
        diags.to_string(),
        "shop.yaml:41:47: measures.cost.column: column 'costs' not found in table 'store_cost' (allocation 'store_cost') (did you mean 'cost'?)"
    );
}
