//! Hostile definitions: each is refused by validation with a located error naming the limit
//! it is over (`lattice_defs::limits`), quickly and without exhausting the stack or memory.
//! One case per limit, plus what the YAML parser itself bounds (nesting, alias bombs).

use std::path::Path;
use std::time::{Duration, Instant};

use lattice_defs::{Diagnostics, parse_str};

/// A valid cube with one table dimension; `{levels}`, `{measures}` and `{aggregates}` are
/// filled in by each case.
const TEMPLATE: &str = r#"version: 1
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
{levels}
measures:
  revenue: { fact: sales, agg: sum, column: amount }
{measures}
{aggregates}
"#;

fn cube(levels: &str, measures: &str, aggregates: &str) -> String {
    TEMPLATE
        .replace("{levels}", levels)
        .replace("{measures}", measures)
        .replace("{aggregates}", aggregates)
}

fn plain_levels(n: usize) -> String {
    (0..n)
        .map(|i| format!("      l{i}: {{ column: c{i} }}\n"))
        .collect()
}

/// The diagnostics of `yaml`, which must be refused, in under a few seconds.
#[track_caller]
fn refused(yaml: &str) -> Diagnostics {
    let start = Instant::now();
    let result = parse_str(yaml, "shop.yaml", Path::new("/data"));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "validation took {took:?}");
    match result {
        Ok(_) => panic!("accepted:\n{}", &yaml[..yaml.len().min(2000)]),
        Err(d) => d,
    }
}

/// The one diagnostic with `code`, its text containing every word of `words`.
#[track_caller]
fn assert_one(d: &Diagnostics, code: &str, words: &[&str]) -> String {
    let found: Vec<_> = d.iter().filter(|x| x.error.code() == code).collect();
    assert_eq!(found.len(), 1, "{d}");
    let text = found[0].to_string();
    for w in words {
        assert!(text.contains(w), "'{w}' not in: {text}");
    }
    assert!(found[0].pos.line > 0, "not located: {text}");
    text
}

#[test]
fn the_template_is_valid() {
    let yaml = cube(&plain_levels(2), "", "");
    parse_str(&yaml, "shop.yaml", Path::new("/data")).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn too_many_levels() {
    let d = refused(&cube(&plain_levels(100), "", ""));
    let text = assert_one(&d, "too_many", &["102 levels", "limit of 64"]);
    assert!(text.starts_with("shop.yaml:12:3: dimensions: "), "{text}");
    // Nothing else is looked into: one error, not a hundred.
    assert_eq!(d.len(), 1, "{d}");
}

#[test]
fn too_many_measures() {
    let measures: String = (0..300)
        .map(|i| format!("  m{i}: {{ fact: sales, agg: count }}\n"))
        .collect();
    let d = refused(&cube(&plain_levels(1), &measures, ""));
    assert_one(&d, "too_many", &["301 measures", "limit of 256"]);
}

#[test]
fn too_many_allocations() {
    let allocations: String = (0..100)
        .map(|i| {
            format!(
                "  a{i}:\n    pool: {{ source: stores, amount: cost, time: month, member: {{ dimension: store }} }}\n    driver: {{ measure: revenue }}\n"
            )
        })
        .collect();
    let yaml = cube(&plain_levels(1), "", "").replace(
        "dimensions:\n  time:",
        &format!("allocations:\n{allocations}dimensions:\n  time:"),
    );
    let d = refused(&yaml);
    let text = assert_one(&d, "too_many", &["100 allocations", "limit of 64"]);
    assert!(text.contains(": allocations: "), "{text}");
    assert_eq!(d.len(), 1, "{d}");
}

#[test]
fn a_bucket_with_100k_edges() {
    let edges: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let level = format!(
        "      band: {{ bucket: {{ column: area, edges: [{}] }} }}\n",
        edges.join(", ")
    );
    let d = refused(&cube(&level, "", ""));
    let text = assert_one(
        &d,
        "too_many",
        &["100000 bucket edges", "limit of 1024", "column:"],
    );
    assert!(
        text.contains("dimensions.store.levels.band.bucket.edges"),
        "{text}"
    );
}

#[test]
fn bucket_labels_past_the_limit() {
    let labels: Vec<String> = (0..50_000).map(|i| format!("b{i}")).collect();
    let level = format!(
        "      band: {{ bucket: {{ column: area, edges: [1], labels: [{}] }} }}\n",
        labels.join(", ")
    );
    let d = refused(&cube(&level, "", ""));
    assert_one(&d, "too_many", &["50000 bucket labels", "limit of 1025"]);
}

#[test]
fn groups_that_make_a_million_cuboids() {
    let levels = plain_levels(20);
    let includes: Vec<String> = (0..20).map(|i| format!("store.l{i}")).collect();
    let aggregates = format!(
        "aggregates:\n  mode: groups\n  groups:\n    - includes: [{}]\n",
        includes.join(", ")
    );
    let d = refused(&cube(&levels, "", &aggregates));
    let text = assert_one(&d, "too_many", &["cuboids", "limit of 4096", "mandatory"]);
    assert!(text.contains("aggregates.groups"), "{text}");

    // The same group, pruned by a joint of 10 levels, makes 2^11 = 2048: accepted.
    let joint: Vec<String> = (0..10).map(|i| format!("store.l{i}")).collect();
    let pruned = format!("{aggregates}      joint: [[{}]]\n", joint.join(", "));
    parse_str(&cube(&levels, "", &pruned), "shop.yaml", Path::new("/data"))
        .unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn a_group_of_more_than_20_levels() {
    let includes: Vec<String> = (0..30).map(|i| format!("store.l{i}")).collect();
    let aggregates = format!(
        "aggregates:\n  mode: groups\n  groups:\n    - includes: [{}]\n",
        includes.join(", ")
    );
    let d = refused(&cube(&plain_levels(30), "", &aggregates));
    assert_one(
        &d,
        "too_many",
        &["30 levels in an aggregation group", "limit of 20", "split"],
    );
}

#[test]
fn too_many_listed_cuboids() {
    let listed: String = (0..5000)
        .map(|_| "    - [store.l0]\n".to_string())
        .collect();
    let aggregates = format!("aggregates:\n  mode: explicit\n  cuboids:\n{listed}");
    let d = refused(&cube(&plain_levels(1), "", &aggregates));
    assert_one(&d, "too_many", &["5000 cuboids", "limit of 4096"]);
}

#[test]
fn a_cuboid_naming_100k_levels() {
    let names = vec!["store.l0"; 100_000].join(", ");
    let aggregates = format!("aggregates:\n  mode: explicit\n  cuboids:\n    - [{names}]\n");
    let d = refused(&cube(&plain_levels(1), "", &aggregates));
    assert_one(
        &d,
        "too_many",
        &["100000 levels in a cuboid", "limit of 64"],
    );
}

#[test]
fn derived_measures_that_double_at_each_step() {
    // m1 = m0 + m0, m2 = m1 + m1, ...: m60 would be 2^60 terms to evaluate per cell.
    let mut measures = String::from("  m0: { expr: revenue + revenue }\n");
    for i in 1..=60 {
        measures.push_str(&format!("  m{i}: {{ expr: m{} + m{} }}\n", i - 1, i - 1));
    }
    let d = refused(&cube(&plain_levels(1), &measures, ""));
    let over: Vec<_> = d.iter().filter(|x| x.error.code() == "too_many").collect();
    // m12 is the first past 10,000 terms (2^14 - 1), and every one after it is too.
    assert_eq!(over.len(), 60 - 11, "{d}");
    let first = over[0].to_string();
    assert!(first.contains("measures.m12.expr"), "{first}");
    assert!(
        first.contains("terms in the expanded expression"),
        "{first}"
    );
}

#[test]
fn deep_and_long_expressions() {
    let deep = format!("{}revenue{}", "(".repeat(200), ")".repeat(200));
    let d = refused(&cube(
        &plain_levels(1),
        &format!("  deep: {{ expr: \"{deep}\" }}\n"),
        "",
    ));
    assert_one(&d, "bad_expression", &["more than 64 deep"]);
    let long = vec!["revenue"; 5000].join(" + ");
    let d = refused(&cube(
        &plain_levels(1),
        &format!("  long: {{ expr: \"{long}\" }}\n"),
        "",
    ));
    assert_one(&d, "bad_expression", &["limit of 1024"]);
}

#[test]
fn names_with_control_characters_dots_or_no_end() {
    let d = refused(&cube(
        "      \"bad\\0name\": { column: c }\n",
        "  \"m\\u202e\\t\": { fact: sales, agg: count }\n",
        "",
    ));
    let texts: Vec<String> = d
        .iter()
        .filter(|x| x.error.code() == "bad_name")
        .map(ToString::to_string)
        .collect();
    assert_eq!(texts.len(), 2, "{d}");
    assert!(
        texts[0].contains("invalid level name 'bad\\0name'"),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("control characters"), "{}", texts[0]);
    assert!(texts[1].contains("invalid measure name"), "{}", texts[1]);

    let dotted = cube(&plain_levels(1), "", "").replace("  store:\n", "  \"st.ore\":\n");
    let d = refused(&dotted);
    assert_one(&d, "bad_name", &["dimension name 'st.ore'", "separates"]);

    let long = "x".repeat(500);
    let d = refused(&cube(
        &plain_levels(1),
        &format!("  {long}: {{ fact: sales, agg: count }}\n"),
        "",
    ));
    let text = assert_one(&d, "bad_name", &["at most 128 characters", "..."]);
    assert!(text.len() < 1000, "the name is shown cut short: {text}");
    // Past the parser's lookahead for a key, it is a syntax error, also shown short.
    let longer = "x".repeat(100_000);
    let d = refused(&cube(
        &plain_levels(1),
        &format!("  {longer}: {{ fact: sales, agg: count }}\n"),
        "",
    ));
    let text = assert_one(&d, "syntax", &[]);
    assert!(text.len() < 1000, "{}", &text[..1000]);

    // Unicode that is not a control character is a fine name.
    let ok = cube(
        "      客户类型: { column: c }\n",
        "  \"收入 💰\": { fact: sales, agg: count }\n",
        "",
    );
    parse_str(&ok, "shop.yaml", Path::new("/data")).unwrap_or_else(|d| panic!("{d}"));
}

#[test]
fn the_parser_bounds_nesting_and_alias_bombs() {
    // 100k nested flow sequences.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let d = refused(&deep);
    assert_one(&d, "syntax", &[]);
    // Nested block mappings.
    let mut nested = String::new();
    for i in 0..500 {
        nested.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    let d = refused(&nested);
    assert_eq!(
        d.iter().next().map(|x| x.error.code()),
        Some("syntax"),
        "{d}"
    );
    // Billion laughs: each level nine times the one before.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let yaml = format!("{bomb}{}", cube(&plain_levels(1), "", ""));
    let d = refused(&yaml);
    assert_one(&d, "syntax", &[]);
}

#[test]
fn include_tags_read_no_files() {
    // serde-saphyr's `include` feature is off: a tag names no file to read.
    let yaml = cube(&plain_levels(1), "", "").replace("cube: shop", "cube: !include /etc/passwd");
    match parse_str(&yaml, "shop.yaml", Path::new("/data")) {
        Ok(m) => assert_eq!(m.name, "/etc/passwd", "the tag is ignored, the text kept"),
        Err(d) => assert!(!d.to_string().contains("root:"), "{d}"),
    }
    let d = refused(
        &cube(&plain_levels(1), "", "").replace("sources:", "sources: !include /etc/passwd\nx:"),
    );
    assert!(!d.to_string().contains("root:"), "{d}");
}
