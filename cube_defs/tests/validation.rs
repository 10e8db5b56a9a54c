//! One negative case per validation rule: each asserts the whole message, its line, column and
//! key path. The base definition is valid; each case changes one thing.

use std::path::Path;

use lattice_defs::model::{Cuts, Decimal, LevelKind};
use lattice_defs::{Catalog, ColumnType, Model, TableSchema, check_catalog, parse_str};

const BASE: &str = r#"version: 1
cube: shop
sources:
  sales: { path: sales.csv }
  stores: { path: stores.csv }
facts:
  sales: { time: day, dimensions: [store] }
dimensions:
  time:
    type: time
    hierarchy: [year, month]
  store:
    table: stores
    key: store_id
    levels:
      region: { column: region }
      city: { column: city }
      size_band:
        bucket: { column: floor_area, edges: [100, 500], labels: [small, medium, large] }
      revenue_band:
        bucket:
          metric: revenue
          per: [store, time.month]
          edges: [1000, 10000]
    hierarchy: [region, city]
measures:
  revenue: { fact: sales, agg: sum, column: amount }
  orders: { fact: sales, agg: count }
  avg_order: { expr: revenue / orders }
aggregates:
  mode: auto
  cuboids: [[store.region, time.month]]
"#;

/// `BASE` with the first occurrence of `from` replaced by `to` (which must exist).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "test bug: '{from}' is not in BASE");
    BASE.replacen(from, to, 1)
}

fn errors(yaml: &str) -> Vec<String> {
    match parse_str(yaml, "shop.yaml", Path::new("/data")) {
        Ok(_) => vec![],
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn model(yaml: &str) -> Model {
    parse_str(yaml, "shop.yaml", Path::new("/data")).unwrap_or_else(|d| panic!("{d}"))
}

#[track_caller]
fn assert_errors(yaml: &str, expected: &[&str]) {
    assert_eq!(errors(yaml), expected, "definition:\n{yaml}");
}

#[test]
fn base_is_valid() {
    let m = model(BASE);
    assert_eq!(m.name, "shop");
    assert_eq!(m.dimensions.len(), 2);
    assert_eq!(m.measures.len(), 3);
    assert_eq!(m.sources[0].path, Path::new("/data/sales.csv"));
    let band = m.level("store.size_band").expect("level");
    assert_eq!(m.level_name(band), "store.size_band");
}

#[test]
fn unknown_level_in_hierarchy_suggests() {
    assert_errors(
        &with("hierarchy: [region, city]", "hierarchy: [regon, city]"),
        &[
            "shop.yaml:25:17: dimensions.store.hierarchy[0]: unknown level 'regon' in dimension 'store' (did you mean 'region'?)",
        ],
    );
}

#[test]
fn unknown_table_suggests() {
    assert_errors(
        &with("table: stores", "table: stors"),
        &[
            "shop.yaml:13:12: dimensions.store.table: unknown table 'stors' in sources (did you mean 'stores'?)",
        ],
    );
}

#[test]
fn unknown_measure_in_expression_points_inside_it() {
    assert_errors(
        &with("expr: revenue / orders", "expr: revenue / ordrs"),
        &[
            "shop.yaml:29:32: measures.avg_order.expr: unknown measure 'ordrs' (did you mean 'orders'?)",
        ],
    );
}

#[test]
fn unknown_fact_suggests() {
    assert_errors(
        &with("{ fact: sales, agg: count }", "{ fact: sale, agg: count }"),
        &[
            "shop.yaml:28:19: measures.orders.fact: unknown fact 'sale' in facts (did you mean 'sales'?)",
        ],
    );
}

#[test]
fn unknown_dimension_of_a_fact_suggests() {
    assert_errors(
        &with("dimensions: [store]", "dimensions: [stor]"),
        &[
            "shop.yaml:7:36: facts.sales.dimensions: unknown dimension 'stor' (did you mean 'store'?)",
        ],
    );
}

#[test]
fn unknown_level_in_aggregates_suggests() {
    assert_errors(
        &with(
            "[[store.region, time.month]]",
            "[[store.regin, time.month]]",
        ),
        &[
            "shop.yaml:32:14: aggregates.cuboids[0][0]: unknown level 'store.regin' (did you mean 'store.region'?)",
        ],
    );
}

#[test]
fn unknown_time_grain_suggests() {
    let errs = errors(&with("hierarchy: [year, month]", "hierarchy: [year, mnth]"));
    assert_eq!(
        errs[0],
        "shop.yaml:11:23: dimensions.time.hierarchy[1]: unknown level 'mnth' in time dimension 'time' \
         (time levels: year, quarter, month, day) (did you mean 'month'?)"
    );
}

#[test]
fn duplicate_measure_name() {
    assert_errors(
        &with(
            "  orders: { fact: sales, agg: count }",
            "  orders: { fact: sales, agg: count }\n  orders: { fact: sales, agg: count }",
        ),
        &[
            "shop.yaml:29:3: measures.orders: duplicate name 'orders': each name may appear once in a mapping",
        ],
    );
}

#[test]
fn duplicate_level_in_hierarchy() {
    assert_errors(
        &with(
            "hierarchy: [region, city]",
            "hierarchy: [region, city, region]",
        ),
        &[
            "shop.yaml:25:31: dimensions.store.hierarchy[2]: duplicate level in hierarchy 'region' (first defined at line 25)",
        ],
    );
}

#[test]
fn duplicate_bucket_label() {
    assert_errors(
        &with(
            "labels: [small, medium, large]",
            "labels: [small, medium, small]",
        ),
        &[
            "shop.yaml:19:82: dimensions.store.levels.size_band.bucket.labels[2]: duplicate bucket label 'small'",
        ],
    );
}

#[test]
fn edges_must_ascend() {
    assert_errors(
        &with("edges: [100, 500]", "edges: [500, 100]"),
        &[
            "shop.yaml:19:52: dimensions.store.levels.size_band.bucket.edges: bucket edges must be strictly ascending: 500 is followed by 100",
        ],
    );
}

#[test]
fn edges_must_not_repeat() {
    assert_errors(
        &with("edges: [100, 500]", "edges: [100, 100]"),
        &[
            "shop.yaml:19:52: dimensions.store.levels.size_band.bucket.edges: bucket edges must be strictly ascending: 100 is followed by 100",
        ],
    );
}

#[test]
fn edges_must_be_numbers_and_present() {
    assert_errors(
        &with("edges: [100, 500]", "edges: [100, abc]"),
        &[
            "shop.yaml:19:52: dimensions.store.levels.size_band.bucket.edges[1]: edge 'abc' is not a number with at most 6 decimals",
        ],
    );
    assert_errors(
        &with("edges: [100, 500]", "edges: []"),
        &[
            "shop.yaml:19:46: dimensions.store.levels.size_band.bucket.edges: a bucket needs at least one edge",
        ],
    );
}

#[test]
fn label_count_must_match_buckets() {
    assert_errors(
        &with("labels: [small, medium, large]", "labels: [small, large]"),
        &[
            "shop.yaml:19:66: dimensions.store.levels.size_band.bucket.labels: 2 labels given for 3 buckets (2 edges make 3 buckets)",
        ],
    );
}

#[test]
fn derived_measure_referring_to_itself() {
    assert_errors(
        &with("expr: revenue / orders", "expr: avg_order / orders"),
        &[
            "shop.yaml:29:22: measures.avg_order.expr: derived measure 'avg_order' refers to itself: avg_order -> avg_order",
        ],
    );
}

#[test]
fn derived_measures_in_a_cycle() {
    assert_errors(
        &with(
            "  avg_order: { expr: revenue / orders }",
            "  avg_order: { expr: revenue / ratio }\n  ratio: { expr: avg_order * 2 }",
        ),
        &[
            "shop.yaml:29:22: measures.avg_order.expr: derived measure 'avg_order' refers to itself: avg_order -> ratio -> avg_order",
            "shop.yaml:30:18: measures.ratio.expr: derived measure 'ratio' refers to itself: ratio -> avg_order -> ratio",
        ],
    );
}

#[test]
fn unsupported_aggregation() {
    assert_errors(
        &with(
            "{ fact: sales, agg: sum, column: amount }",
            "{ fact: sales, agg: avg, column: amount }",
        ),
        &[
            "shop.yaml:27:32: measures.revenue.agg: unsupported aggregation 'avg' (supported: sum, count, min, max, distinct) \
           (for an average, define a derived measure such as `expr: total / count`)",
        ],
    );
    assert_errors(
        &with("agg: sum, column: amount", "agg: sum"),
        &["shop.yaml:27:32: measures.revenue: aggregation 'sum' needs a column"],
    );
    assert_errors(
        &with(
            "{ fact: sales, agg: count }",
            "{ fact: sales, agg: distinct, column: c, over_time: last }",
        ),
        &[
            "shop.yaml:28:63: measures.orders.over_time: `over_time: last` applies to sum, count, min and max, not to distinct counts",
        ],
    );
}

#[test]
fn unknown_key_is_a_syntax_error_with_its_path() {
    assert_errors(
        &with("edges: [1000, 10000]", "edgs: [1000, 10000]"),
        &[
            "shop.yaml:24:11: dimensions.store.levels.revenue_band.bucket.edgs: unknown field `edgs`, \
           expected one of column, metric, per, edges, quantiles, labels",
        ],
    );
    assert_errors(
        &with(
            "  orders: { fact: sales, agg: count }",
            "  orders: { fact: sales, agg: count ",
        ),
        &[
            "shop.yaml:29:12: measures.avg_order: while parsing a flow mapping, did not find expected ',' or '}'",
        ],
    );
}

#[test]
fn metric_bucket_needs_its_entity_and_a_period() {
    assert_errors(
        &with("          per: [store, time.month]\n", ""),
        &[
            "shop.yaml:22:11: dimensions.store.levels.revenue_band.bucket: a metric bucket needs `per`: \
           the entity and period it is computed for, e.g. `per: [store, time.month]`",
        ],
    );
    assert_errors(
        &with("per: [store, time.month]", "per: [time.month]"),
        &[
            "shop.yaml:23:16: dimensions.store.levels.revenue_band.bucket.per: `per` must name the entity 'store' whose metric decides the bucket",
        ],
    );
}

#[test]
fn unsupported_version() {
    assert_errors(
        &with("version: 1", "version: 2"),
        &[
            "shop.yaml:1:10: version: unsupported definition version 2 (this Lattice reads version 1)",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once_in_document_order() {
    let yaml = with("table: stores", "table: stors")
        .replace("agg: count", "agg: median")
        .replace("[[store.region", "[[store.regon");
    assert_errors(
        &yaml,
        &[
            "shop.yaml:13:12: dimensions.store.table: unknown table 'stors' in sources (did you mean 'stores'?)",
            "shop.yaml:28:31: measures.orders.agg: unsupported aggregation 'median' (supported: sum, count, min, max, distinct) \
             (for an average, define a derived measure such as `expr: total / count`)",
            "shop.yaml:32:14: aggregates.cuboids[0][0]: unknown level 'store.regon' (did you mean 'store.region'?)",
        ],
    );
}

fn catalog(amount: ColumnType) -> Catalog {
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
                    ("store_id", ColumnType::Integer),
                    ("amount", amount),
                ],
            ),
            table(
                "stores",
                vec![
                    ("store_id", ColumnType::Integer),
                    ("region", ColumnType::Text),
                    ("city", ColumnType::Text),
                    ("floor_area", ColumnType::Integer),
                ],
            ),
        ],
    }
}

#[test]
fn catalog_matches_base() {
    let diags = check_catalog(&model(BASE), &catalog(ColumnType::Decimal { scale: 2 }));
    assert!(diags.is_empty(), "{diags}");
}

#[test]
fn unknown_column_names_the_file_and_suggests() {
    let m = model(&with("column: amount", "column: amout"));
    let diags = check_catalog(&m, &catalog(ColumnType::Decimal { scale: 2 }));
    assert_eq!(
        diags.to_string(),
        "shop.yaml:27:45: measures.revenue.column: column 'amout' not found in table 'sales' (/data/sales.csv) (did you mean 'amount'?)"
    );
}

#[test]
fn wrong_column_type() {
    let diags = check_catalog(&model(BASE), &catalog(ColumnType::Text));
    assert_eq!(
        diags.to_string(),
        "shop.yaml:27:45: measures.revenue.column: column 'sales.amount' has type text, but a number (integer, decimal or float) is needed here"
    );
    let m = model(&with("{ time: day,", "{ time: store_id,"));
    assert_eq!(
        check_catalog(&m, &catalog(ColumnType::Float)).to_string(),
        "shop.yaml:7:18: facts.sales.time: column 'sales.store_id' has type integer, but a date is needed here"
    );
}

#[test]
fn model_knows_which_levels_a_measure_varies_by() {
    let m = lattice_defs::parse_str(
        lattice_defs::BANK_CRM_YAML,
        "bank_crm.yaml",
        Path::new("/d"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let level = |n: &str| m.level(n).unwrap_or_else(|| panic!("no level {n}"));
    let measure = |n: &str| m.measure(n).unwrap_or_else(|| panic!("no measure {n}"));
    assert!(!m.measure_varies_by(measure("deposit_balance"), level("channel.channel")));
    assert!(m.measure_varies_by(measure("txn_amount"), level("channel.channel")));
    assert!(m.measure_varies_by(measure("deposit_balance"), level("region.province")));
    assert!(m.measure_varies_by(measure("avg_ticket"), level("manager.branch")));
    assert!(m.measure_varies_by(measure("customers"), level("time.month")));
}

#[test]
fn a_listed_cuboid_must_be_one_fact_s_and_list_a_level_once() {
    let two_facts = BASE
        .replace(
            "  stores: { path: stores.csv }",
            "  stores: { path: stores.csv }\n  stock: { path: stock.csv }\n  items: { path: items.csv }",
        )
        .replace(
            "  sales: { time: day, dimensions: [store] }",
            "  sales: { time: day, dimensions: [store] }\n  stock: { time: day, dimensions: [item] }",
        )
        .replace(
            "dimensions:\n  time:",
            "dimensions:\n  item: { table: items, key: item_id, hierarchy: [family] }\n  time:",
        )
        .replace("[[store.region, time.month]]", "[[store.region, item.family], [time.month, time.month]]");
    assert_errors(
        &two_facts,
        &[
            "shop.yaml:36:13: aggregates.cuboids[0]: no fact varies by all of store.region, item.family: \
             each cuboid aggregates one fact table",
            "shop.yaml:36:55: aggregates.cuboids[1][1]: duplicate level in cuboid 'time.month' (first defined at line 36)",
        ],
    );
}

/// `BASE` with a `privacy` section appended.
fn with_privacy(privacy: &str) -> String {
    format!("{BASE}privacy:\n{privacy}")
}

#[test]
fn privacy_finds_each_facts_customer_count() {
    let yaml = with(
        "  orders: { fact: sales, agg: count }",
        "  orders: { fact: sales, agg: count }\n  stores_selling: { fact: sales, agg: distinct, column: store_id }",
    );
    let m = model(&format!(
        "{yaml}privacy:\n  min_customers: 3\n  customers: store\n  applies_to: [analyst]\n"
    ));
    let p = m.privacy.as_ref().expect("privacy");
    assert_eq!(p.min_customers, 3);
    assert_eq!(m.dimensions[p.customers].name, "store");
    assert_eq!(p.applies_to, vec!["analyst"]);
    let stores = m.measure("stores_selling").expect("measure");
    assert_eq!(p.counts, vec![(0, stores)]);
}

#[test]
fn privacy_needs_a_distinct_measure_a_real_dimension_and_a_sane_minimum() {
    assert_errors(
        &with_privacy("  min_customers: 5\n  customers: store\n  applies_to: [analyst]\n"),
        &[
            "shop.yaml:35:14: privacy.customers: fact 'sales' has no distinct measure over store_id (e.g. `{ fact: sales, agg: distinct, column: store_id }`); suppression counts each cell's customers with one",
        ],
    );
    assert_errors(
        &with_privacy("  min_customers: 5\n  customers: shop\n  applies_to: [analyst]\n"),
        &["shop.yaml:35:14: privacy.customers: unknown dimension 'shop'"],
    );
    assert_errors(
        &with_privacy("  min_customers: 1\n  customers: time\n  applies_to: []\n"),
        &[
            "shop.yaml:34:18: privacy.min_customers: must be at least 2 (a cell of one customer is that customer's data)",
            "shop.yaml:35:14: privacy.customers: 'time' is the time dimension; name the dimension whose keys are customers",
            "shop.yaml:36:15: privacy.applies_to: name at least one role whose answers are suppressed",
        ],
    );
}

#[test]
fn quantile_bucket_over_a_metric() {
    let m = model(&with("edges: [1000, 10000]", "quantiles: [0.8, 0.95]"));
    let l = m.level("store.revenue_band").expect("level");
    let LevelKind::Bucket(b) = &m.dimensions[l.dim].levels[l.level].kind else {
        panic!("a bucket");
    };
    assert_eq!(
        b.cuts,
        Cuts::Quantiles(vec![
            Decimal::parse("0.8").unwrap(),
            Decimal::parse("0.95").unwrap()
        ])
    );
    assert_eq!(b.labels, ["<p80", "p80-p95", "p95+"]);
}

#[test]
fn quantiles_lie_between_0_and_1_and_ascend() {
    assert_errors(
        &with("edges: [1000, 10000]", "quantiles: [0, 1.5]"),
        &[
            "shop.yaml:24:23: dimensions.store.levels.revenue_band.bucket.quantiles[0]: quantile 0 must lie strictly between 0 and 1 (0.8: the top 20% are above it)",
            "shop.yaml:24:26: dimensions.store.levels.revenue_band.bucket.quantiles[1]: quantile 1.5 must lie strictly between 0 and 1 (0.8: the top 20% are above it)",
        ],
    );
    assert_errors(
        &with("edges: [1000, 10000]", "quantiles: [0.9, 0.5]"),
        &[
            "shop.yaml:24:28: dimensions.store.levels.revenue_band.bucket.quantiles: bucket quantiles must be strictly ascending: 0.9 is followed by 0.5",
        ],
    );
    assert_errors(
        &with("edges: [1000, 10000]", "quantiles: [0.8, top]"),
        &[
            "shop.yaml:24:28: dimensions.store.levels.revenue_band.bucket.quantiles[1]: quantile 'top' is not a number with at most 6 decimals",
        ],
    );
    assert_errors(
        &with("edges: [1000, 10000]", "quantiles: []"),
        &[
            "shop.yaml:24:22: dimensions.store.levels.revenue_band.bucket.quantiles: a bucket needs at least one quantile",
        ],
    );
}

#[test]
fn quantile_labels_count_and_one_kind_of_cuts() {
    assert_errors(
        &with(
            "edges: [1000, 10000]",
            "quantiles: [0.8, 0.95]\n          labels: [C, B]",
        ),
        &[
            "shop.yaml:25:19: dimensions.store.levels.revenue_band.bucket.labels: 2 labels given for 3 buckets (2 quantiles make 3 buckets)",
        ],
    );
    assert_errors(
        &with(
            "edges: [1000, 10000]",
            "edges: [1000, 10000]\n          quantiles: [0.5]",
        ),
        &[
            "shop.yaml:25:22: dimensions.store.levels.revenue_band.bucket.quantiles: a bucket has `edges` (fixed cuts) or `quantiles` (cuts by rank), not both",
        ],
    );
    assert_errors(
        &with("\n          edges: [1000, 10000]", ""),
        &[
            "shop.yaml:22:11: dimensions.store.levels.revenue_band.bucket: a bucket needs `edges` (fixed cuts, e.g. `edges: [1000, 10000]`) or, over a metric, `quantiles` (cuts by rank, e.g. `quantiles: [0.8, 0.95]`)",
        ],
    );
    assert_errors(
        &with(
            "edges: [100, 500], labels: [small, medium, large]",
            "quantiles: [0.5], labels: [low, high]",
        ),
        &[
            "shop.yaml:19:50: dimensions.store.levels.size_band.bucket.quantiles: `quantiles` rank entities by a metric within a period; a column bucket needs `edges`",
        ],
    );
}

/// `BASE` with a `searches` section appended.
fn with_searches(searches: &str) -> String {
    format!("{BASE}searches:\n{searches}")
}

#[test]
fn searches_read_into_the_model() {
    let m = model(&with_searches(
        "  big_stores:
    description: large stores that sold online lately
    entity: store.city
    where:
      all:
        - { level: store.size_band, op: in, values: [large] }
        - not: { measure: revenue, op: lt, value: 1000.50, period: { value: latest, last: 3 } }
        - measure: orders
          op: gt
          value: 0
          filters: [{ level: time.month, op: between, values: [2025-01, 2025-03] }]
",
    ));
    assert_eq!(m.searches.len(), 1);
    let s = &m.searches[0];
    assert_eq!(
        (s.name.as_str(), s.entity.as_str()),
        ("big_stores", "store.city")
    );
    assert_eq!((s.pos.line, s.pos.column), (34, 3));
    use lattice_defs::model::{SearchCondition as C, SearchFilter, SearchPeriod};
    let C::All(parts) = &s.condition else {
        panic!("{:?}", s.condition)
    };
    assert_eq!(
        parts[0],
        C::Member {
            filter: SearchFilter {
                level: "store.size_band".into(),
                op: "in".into(),
                value: None,
                values: Some(vec!["large".into()]),
            },
            period: None,
        }
    );
    let C::Not(inner) = &parts[1] else {
        panic!("{:?}", parts[1])
    };
    let C::Measure { value, period, .. } = &**inner else {
        panic!("{inner:?}")
    };
    assert_eq!(value, "1000.5");
    assert_eq!(
        period,
        &Some(SearchPeriod {
            level: "time.month".into(),
            value: "latest".into(),
            last: 3
        })
    );
    // The shipped definition's search reads too.
    let bank = parse_str(
        lattice_defs::BANK_CRM_YAML,
        "bank_crm.yaml",
        Path::new("/data"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(bank.searches[0].name, "affluent_digital_no_loan");
}

#[test]
fn search_errors_name_the_search_the_condition_and_the_place() {
    let cases: &[(&str, &[&str])] = &[
        (
            "  s1:\n    entity: store.city\n    where: { level: store.regon, op: eq, value: north }\n",
            &[
                "shop.yaml:36:21: searches.s1.where.level: unknown level 'store.regon' in search 's1' (did you mean 'store.region'?)",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: revenu, op: gt, value: 5 }\n",
            &[
                "shop.yaml:36:23: searches.s1.where.measure: unknown measure 'revenu' in search 's1' (did you mean 'revenue'?)",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: revenue, op: above, value: 5 }\n",
            &[
                "shop.yaml:36:36: searches.s1.where.op: unknown comparison 'above' for a measure atom (one of gt, ge, lt, le, eq, ne)",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: revenue, op: gt, value: lots }\n",
            &[
                "shop.yaml:36:47: searches.s1.where.value: 'lots' is not a number (a measure atom's threshold, e.g. 200000 or 0.5)",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { level: store.region, op: in, value: north }\n",
            &[
                "shop.yaml:36:39: searches.s1.where.op: `in` takes a list of members, `values: [..]`, and no `value`",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { level: store.region, op: between, values: [a, b, c] }\n",
            &[
                "shop.yaml:36:56: searches.s1.where.values: `between` takes two members, the first and the last, not 3",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { level: time.month, op: eq, value: 2025-01 }\n",
            &[
                "shop.yaml:36:21: searches.s1.where.level: 'time.month' is a time level; a search's entity and member atoms name levels of other dimensions, and say which periods with `period`",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: orders, op: gt, value: 0, period: { level: store.city } }\n",
            &[
                "shop.yaml:36:66: searches.s1.where.period.level: 'store.city' is not a time level; periods are members of a time level such as time.month",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: orders, op: gt, value: 0, period: { last: 0 } }\n",
            &["shop.yaml:36:65: searches.s1.where.period.last: `last` counts periods: at least 1"],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { all: [{ level: store.region, measure: orders, op: gt, value: 0 }] }\n",
            &[
                "shop.yaml:36:20: searches.s1.where.all[0]: a condition has exactly one of `all`, `any`, `not`, `level` or `measure`, not level and measure",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { any: [], op: eq }\n",
            &["shop.yaml:36:12: searches.s1.where: `op` belongs to an atom, not to `any`"],
        ),
        (
            "  s1:\n    entity: time.year\n    where: { measure: orders, op: gt, value: 0 }\n",
            &[
                "shop.yaml:35:13: searches.s1.entity: 'time.year' is a time level; a search's entity and member atoms name levels of other dimensions, and say which periods with `period`",
            ],
        ),
        (
            "  bad name:\n    entity: store.city\n    where: { measure: orders, op: gt, value: 0 }\n",
            &[
                "shop.yaml:34:3: searches.bad name: invalid search name 'bad name': a search's name has 1 to 64 letters, digits, '_' or '-' (it is a path segment of the API)",
            ],
        ),
        (
            "  s1:\n    entity: store.city\n    where: { measure: orders, op: gt, value: 0, colour: red }\n",
            &[
                "shop.yaml:36:49: searches.s1.where: unknown field `colour`, expected one of all, any, not, level, measure, op, value, values, filters, period",
            ],
        ),
    ];
    assert_errors(
        &with_searches("  s1:\n    where: { measure: orders, op: gt, value: 0 }\n"),
        &[
            "shop.yaml:34:3: searches.s1: a search lists the members of its `entity`, by default 'customer.id', which this cube does not have; name one (`entity: dimension.level`)",
        ],
    );
    let mut wrong = Vec::new();
    for (section, want) in cases {
        let got = errors(&with_searches(section));
        if &got != want {
            wrong.push(format!("{section}  got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
