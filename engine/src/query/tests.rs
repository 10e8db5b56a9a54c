//! Unit tests of the query layer's own steps — resolution ([`super::resolve`]), the cuboid scan
//! ([`super::scan`]) and the fallback's SQL ([`super::fallback`]) — and of the whole path, on
//! a hand-made shop whose every expected number is worked out by hand below.
//!
//! ```text
//! customer  city       province  segment     transactions (amount; count)
//! 1         Toronto    Ontario   retail      100.00 branch, 20.50 online, 5.25 mobile   125.75; 3
//! 2         Ottawa     Ontario   business    300.00 branch, 80.00 online                380.00; 2
//! 3         Toronto    Ontario   business     45.25 mobile, 10.00 online                 55.25; 2
//! 4         Montreal   Quebec    retail      200.00 branch, NULL online, 30.00 mobile   230.00; 3
//! 5         Laval      Quebec    retail       60.00 mobile, 15.75 branch                 75.75; 2
//! 6         Vancouver  BC        business    500.00 online, 25.00 mobile                525.00; 2
//! 9         (not in customers.csv: unknown)   70.00 branch                               70.00; 1
//! ```
//!
//! Total 1461.75 over 15 transactions. Members are coded alphabetically, `unknown` last:
//! province BC 0, Ontario 1, Quebec 2, unknown 3; city Laval 0, Montreal 1, Ottawa 2,
//! Toronto 3, Vancouver 4, unknown 5.

use std::collections::BTreeMap;
use std::sync::Arc;

use lattice_defs::model::{LevelRef, MeasureId};
use roaring::RoaringBitmap;

use super::error::QueryError;
use super::fallback;
use super::group::{AggRequest, Grouped};
use super::resolve::{OrderKey, ResolvedFilter, resolve};
use super::scan::{derive, filter_masks, scan};
use super::session::Dataset;
use super::spec::{Direction, Query};
use crate::source::load::Sources;
use crate::store::Cube;

const CUSTOMERS: &str = "customer_id,city,province,segment\n\
1,Toronto,Ontario,retail\n\
2,Ottawa,Ontario,business\n\
3,Toronto,Ontario,business\n\
4,Montreal,Quebec,retail\n\
5,Laval,Quebec,retail\n\
6,Vancouver,BC,business\n";

const CHANNELS: &str = "channel\nbranch\nonline\nmobile\n";

const TRANSACTIONS: &str = "txn_date,customer_id,channel,amount\n\
2025-01-05,1,branch,100.00\n\
2025-01-10,1,online,20.50\n\
2025-01-15,2,branch,300.00\n\
2025-01-20,3,mobile,45.25\n\
2025-02-02,3,online,10.00\n\
2025-02-03,4,branch,200.00\n\
2025-02-10,4,online,\n\
2025-02-14,5,mobile,60.00\n\
2025-02-20,5,branch,15.75\n\
2025-03-01,6,online,500.00\n\
2025-03-05,6,mobile,25.00\n\
2025-03-09,2,online,80.00\n\
2025-03-12,1,mobile,5.25\n\
2025-03-20,9,branch,70.00\n\
2025-03-25,4,mobile,30.00\n";

/// One cuboid besides what `explicit` always builds: city x channel. Province rolls up from
/// it; segment and time are in no cuboid, so questions about them go to the fallback.
const YAML: &str = r#"
version: 1
cube: shop
sources:
  customers:    { path: customers.csv }
  channels:     { path: channels.csv }
  transactions: { path: transactions.csv }
facts:
  transactions: { time: txn_date, dimensions: [customer, channel] }
dimensions:
  time: { type: time, hierarchy: [year, month] }
  customer:
    table: customers
    key: customer_id
    levels:
      province: { column: province }
      city:     { column: city }
      segment:  { column: segment }
    hierarchy: [province, city]
  channel:
    table: channels
    key: channel
    levels:
      channel: { column: channel }
measures:
  amount:    { fact: transactions, agg: sum, column: amount }
  txn_count: { fact: transactions, agg: count }
aggregates:
  mode: explicit
  cuboids: [[customer.city, channel.channel]]
"#;

struct Fixture {
    data: Arc<Dataset>,
    sources: Sources,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn cube(&self) -> &Cube {
        &self.data
    }

    fn level(&self, name: &str) -> LevelRef {
        self.cube()
            .model()
            .level(name)
            .unwrap_or_else(|| panic!("level {name}"))
    }

    fn measure(&self, name: &str) -> MeasureId {
        self.cube()
            .model()
            .measure(name)
            .unwrap_or_else(|| panic!("measure {name}"))
    }

    fn code(&self, level: &str, member: &str) -> u32 {
        self.cube()
            .members(self.level(level))
            .code(member)
            .unwrap_or_else(|| panic!("member {member} of {level}"))
    }

    fn fact(&self) -> usize {
        self.cube().model().fact("transactions").expect("fact")
    }

    fn filter(&self, level: &str, members: &[&str]) -> ResolvedFilter {
        ResolvedFilter {
            level: self.level(level),
            members: members.iter().map(|m| self.code(level, m)).collect(),
        }
    }

    /// The city x channel cuboid.
    fn city_channel(&self) -> &crate::store::Cuboid {
        self.cube()
            .cuboid(
                self.fact(),
                &[self.level("customer.city"), self.level("channel.channel")],
            )
            .expect("the city x channel cuboid")
    }

    /// Each group of `g` by its members' names: its measures as text.
    fn named(&self, g: &Grouped) -> BTreeMap<Vec<String>, Vec<String>> {
        (0..g.len())
            .map(|i| {
                let key = g
                    .key(i)
                    .iter()
                    .zip(&g.levels)
                    .map(|(c, l)| self.cube().member_name(*l, *c).to_string())
                    .collect();
                let values = g.accs.iter().map(|a| a.value(i).to_string()).collect();
                (key, values)
            })
            .collect()
    }
}

/// The shop above, built and opened over its sources (as `open` does).
async fn fixture() -> Fixture {
    fixture_built(&crate::build::BuildOptions::default()).await
}

/// The shop, built with `opts` (a cube without base rows sends what no cuboid covers to the
/// fallback).
async fn fixture_built(opts: &crate::build::BuildOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        ("customers.csv", CUSTOMERS),
        ("channels.csv", CHANNELS),
        ("transactions.csv", TRANSACTIONS),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write fixture");
    }
    let model = lattice_defs::parse_str(YAML, "t.yaml", dir.path())
        .unwrap_or_else(|e| panic!("definition: {e:?}"));
    let sources = crate::source::load::load(&model).await.expect("load");
    // `crate::open` without its check of saved searches (this cube has none).
    let cube = crate::build::build_cube(&model, &sources, opts)
        .await
        .expect("build");
    let data = Dataset::new(cube, Some(&sources));
    Fixture {
        data: Arc::new(data),
        sources,
        _dir: dir,
    }
}

fn query(json: &str) -> Query {
    Query::from_json(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn expected(rows: &[(&[&str], &[&str])]) -> BTreeMap<Vec<String>, Vec<String>> {
    rows.iter()
        .map(|(k, v)| {
            (
                k.iter().map(|s| s.to_string()).collect(),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

fn bitmap(codes: &[u32]) -> RoaringBitmap {
    codes.iter().copied().collect()
}

// ---------------------------------------------------------------------------------------------
// resolve

#[tokio::test]
async fn resolve_turns_names_into_indices_and_filter_values_into_member_codes() {
    let fx = fixture().await;
    let q = query(
        r#"{"measures": ["txn_count", "amount"], "rows": ["customer.province"],
            "columns": ["channel.channel"],
            "filters": [
              {"level": "customer.province", "op": "in", "values": ["Ontario", "BC"]},
              {"level": "customer.province", "op": "not_in", "values": ["Ontario"]},
              {"level": "customer.city", "op": "prefix", "value": "T"},
              {"level": "customer.city", "op": "search", "value": "AL"},
              {"level": "time.month", "op": "between", "values": ["2025-01", "2025-02"]}
            ]}"#,
    );
    let r = resolve(&q, fx.cube()).expect("resolves");
    assert_eq!(
        r.measures,
        vec![fx.measure("txn_count"), fx.measure("amount")]
    );
    assert_eq!(r.rows, vec![fx.level("customer.province")]);
    assert_eq!(r.columns, vec![fx.level("channel.channel")]);
    let sets: Vec<(LevelRef, RoaringBitmap)> = r
        .filters
        .iter()
        .map(|f| (f.level, f.members.clone()))
        .collect();
    let (province, city) = (fx.level("customer.province"), fx.level("customer.city"));
    // Months: 2025-01 0, 2025-02 1, 2025-03 2.
    assert_eq!(
        sets,
        vec![
            (province, bitmap(&[0, 1])),    // BC, Ontario
            (province, bitmap(&[0, 2, 3])), // all but Ontario, unknown included
            (city, bitmap(&[3])),           // Toronto
            (city, bitmap(&[0, 1])),        // Laval, Montreal (case ignored)
            (fx.level("time.month"), bitmap(&[0, 1])),
        ]
    );
    assert_eq!(fx.code("customer.province", "Ontario"), 1);
    assert_eq!(fx.code("customer.city", "Toronto"), 3);
}

#[tokio::test]
async fn resolve_names_an_unknown_level_with_a_suggestion() {
    let fx = fixture().await;
    let q = query(r#"{"measures": ["amount"], "rows": ["customer.provnce"]}"#);
    assert_eq!(
        resolve(&q, fx.cube()),
        Err(QueryError::UnknownLevel {
            name: "customer.provnce".into(),
            suggestion: Some("customer.province".into()),
        })
    );
    // Nothing near: no suggestion.
    let q = query(r#"{"measures": ["amount"], "rows": ["weather.rain"]}"#);
    assert!(matches!(
        resolve(&q, fx.cube()),
        Err(QueryError::UnknownLevel {
            suggestion: None,
            ..
        })
    ));
}

#[tokio::test]
async fn resolve_names_an_unknown_member_with_close_members() {
    let fx = fixture().await;
    let q = query(
        r#"{"measures": ["amount"],
            "filters": [{"level": "customer.province", "op": "eq", "value": "Ontaro"}]}"#,
    );
    match resolve(&q, fx.cube()) {
        Err(QueryError::UnknownMember {
            level,
            value,
            suggestions,
        }) => {
            assert_eq!(level, "customer.province");
            assert_eq!(value, "Ontaro");
            assert_eq!(suggestions.first().map(String::as_str), Some("Ontario"));
        }
        other => panic!("expected an unknown member, got {other:?}"),
    }
    // A member in the list of `in` is checked the same way.
    let q = query(
        r#"{"measures": ["amount"],
            "filters": [{"level": "channel.channel", "op": "in", "values": ["online", "mobil"]}]}"#,
    );
    assert!(matches!(
        resolve(&q, fx.cube()),
        Err(QueryError::UnknownMember { value, suggestions, .. })
            if value == "mobil" && suggestions.contains(&"mobile".to_string())
    ));
}

#[tokio::test]
async fn resolve_refuses_in_with_an_empty_list() {
    let fx = fixture().await;
    for values in [r#""values": []"#, r#""value": "Ontario""#] {
        let q = query(&format!(
            r#"{{"measures": ["amount"],
                "filters": [{{"level": "customer.province", "op": "in", {values}}}]}}"#
        ));
        match resolve(&q, fx.cube()) {
            Err(QueryError::BadFilter { level, message }) => {
                assert_eq!(level, "customer.province");
                assert!(message.contains("non-empty `values`"), "{message}");
            }
            other => panic!("expected a bad filter, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn resolve_refuses_a_level_grouped_twice() {
    let fx = fixture().await;
    let q = query(
        r#"{"measures": ["amount"], "rows": ["customer.province"],
            "columns": ["customer.province"]}"#,
    );
    assert_eq!(
        resolve(&q, fx.cube()),
        Err(QueryError::LevelTwice {
            level: "customer.province".into(),
            first: "rows",
            second: "columns",
        })
    );
    let q = query(r#"{"measures": ["amount"], "rows": ["customer.city", "customer.city"]}"#);
    assert_eq!(
        resolve(&q, fx.cube()),
        Err(QueryError::LevelTwice {
            level: "customer.city".into(),
            first: "rows",
            second: "rows",
        })
    );
}

#[tokio::test]
async fn resolve_names_an_unknown_measure_with_a_suggestion() {
    let fx = fixture().await;
    let q = query(r#"{"measures": ["amont"]}"#);
    assert_eq!(
        resolve(&q, fx.cube()),
        Err(QueryError::UnknownMeasure {
            name: "amont".into(),
            suggestion: Some("amount".into()),
        })
    );
    let q = query(r#"{"measures": []}"#);
    assert_eq!(resolve(&q, fx.cube()), Err(QueryError::NoMeasures));
}

#[tokio::test]
async fn resolve_orders_by_a_measure_or_a_grouped_row_level_only() {
    let fx = fixture().await;
    let q = query(
        r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"],
            "order": [{"by": "txn_count", "dir": "desc"}, {"by": "customer.province"}]}"#,
    );
    let r = resolve(&q, fx.cube()).expect("resolves");
    assert_eq!(
        r.order,
        vec![
            (OrderKey::Measure(fx.measure("txn_count")), Direction::Desc),
            (
                OrderKey::Level(fx.level("customer.province")),
                Direction::Asc
            ),
        ]
    );
    for (doc, err) in [
        // A level not grouped, and a measure not asked for.
        (
            r#"{"measures": ["amount"], "rows": ["customer.province"],
                "order": [{"by": "customer.city"}]}"#,
            QueryError::BadOrder {
                by: "customer.city".into(),
            },
        ),
        (
            r#"{"measures": ["amount"], "order": [{"by": "txn_count"}]}"#,
            QueryError::BadOrder {
                by: "txn_count".into(),
            },
        ),
        (
            r#"{"measures": ["amount"], "rows": ["customer.province"],
                "columns": ["channel.channel"], "order": [{"by": "channel.channel"}]}"#,
            QueryError::OrderByColumn {
                by: "channel.channel".into(),
            },
        ),
    ] {
        assert_eq!(resolve(&query(doc), fx.cube()), Err(err), "{doc}");
    }
}

// ---------------------------------------------------------------------------------------------
// scan

#[tokio::test]
async fn scan_rolls_cities_up_to_provinces_through_the_parent_map() {
    let fx = fixture().await;
    let cube = fx.cube();
    let (province, city) = (fx.level("customer.province"), fx.level("customer.city"));
    // Toronto, Ottawa -> Ontario; Montreal, Laval -> Quebec; Vancouver -> BC; unknown -> unknown.
    let map = cube
        .parent_map(city.dim, city.level, province.level)
        .expect("city -> province");
    assert_eq!(map, &[2, 2, 1, 1, 0, 3]);
    let cuboid = fx.city_channel();
    let d = derive(cube, cuboid, province).expect("province derives from the cuboid");
    assert_eq!(cuboid.levels[d.col], city);
    assert_eq!(d.map, Some(map));

    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &[province],
        filters: &[],
        measures: &measures,
    };
    let g = scan(cube, cuboid, &req, None);
    assert_eq!(
        fx.named(&g),
        expected(&[
            (&["BC"], &["525.000000", "2"]),
            (&["Ontario"], &["561.000000", "7"]),
            (&["Quebec"], &["305.750000", "5"]),
            (&["unknown"], &["70.000000", "1"]),
        ])
    );
    // No levels: one group, the grand total.
    let req = AggRequest { levels: &[], ..req };
    let g = scan(cube, cuboid, &req, None);
    assert_eq!(fx.named(&g), expected(&[(&[], &["1461.750000", "15"])]));
}

#[tokio::test]
async fn scan_keeps_only_the_cells_the_member_masks_pass() {
    let fx = fixture().await;
    let cube = fx.cube();
    let cuboid = fx.city_channel();
    let city_col = cuboid
        .levels
        .iter()
        .position(|l| *l == fx.level("customer.city"))
        .expect("city column");
    // A filter on province becomes a mask over the cuboid's cities: Laval and Montreal.
    let quebec = [fx.filter("customer.province", &["Quebec"])];
    let masks = filter_masks(cube, cuboid, &quebec);
    assert_eq!(
        masks,
        vec![(city_col, vec![true, true, false, false, false, false])]
    );

    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &[fx.level("customer.city")],
        filters: &quebec,
        measures: &measures,
    };
    assert_eq!(
        fx.named(&scan(cube, cuboid, &req, None)),
        expected(&[
            (&["Laval"], &["75.750000", "2"]),
            (&["Montreal"], &["230.000000", "3"]),
        ])
    );

    // Branch transactions by province: BC has none, so no group.
    let branch = [fx.filter("channel.channel", &["branch"])];
    let req = AggRequest {
        levels: &[fx.level("customer.province")],
        filters: &branch,
        ..req
    };
    assert_eq!(
        fx.named(&scan(cube, cuboid, &req, None)),
        expected(&[
            (&["Ontario"], &["400.000000", "2"]),
            (&["Quebec"], &["215.750000", "2"]),
            (&["unknown"], &["70.000000", "1"]),
        ])
    );

    // Two filters on one column intersect: Ontario and Quebec, and not Ontario -> Quebec; the
    // NULL amount of customer 4 counts as a row but not in the sum.
    let both = [
        fx.filter("customer.province", &["Ontario", "Quebec"]),
        fx.filter("customer.province", &["BC", "Quebec", "unknown"]),
        fx.filter("channel.channel", &["online"]),
    ];
    let req = AggRequest {
        filters: &both,
        ..req
    };
    assert_eq!(
        fx.named(&scan(cube, cuboid, &req, None)),
        expected(&[(&["Quebec"], &["NULL", "1"])])
    );
}

#[tokio::test]
async fn scan_of_a_filter_matching_nothing_has_no_groups() {
    let fx = fixture().await;
    let cube = fx.cube();
    let cuboid = fx.city_channel();
    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    // Vancouver's customer never used a branch.
    let none = [
        fx.filter("customer.province", &["BC"]),
        fx.filter("channel.channel", &["branch"]),
    ];
    let province = [fx.level("customer.province")];
    for levels in [&province[..], &[]] {
        let req = AggRequest {
            fact: fx.fact(),
            levels,
            filters: &none,
            measures: &measures,
        };
        let g = scan(cube, cuboid, &req, None);
        assert_eq!(g.len(), 0, "levels {levels:?}");
        assert!(g.keys.is_empty());
    }
    // An empty member set, too.
    let empty = [ResolvedFilter {
        level: fx.level("customer.city"),
        members: RoaringBitmap::new(),
    }];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &province,
        filters: &empty,
        measures: &measures,
    };
    assert_eq!(scan(cube, cuboid, &req, None).len(), 0);
}

#[tokio::test]
async fn scan_keeps_the_unknown_customer_a_group_of_its_own() {
    let fx = fixture().await;
    let cube = fx.cube();
    let cuboid = fx.city_channel();
    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    let levels = [fx.level("customer.city"), fx.level("channel.channel")];
    let unknown = [fx.filter("customer.city", &["unknown"])];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &levels,
        filters: &unknown,
        measures: &measures,
    };
    assert_eq!(
        fx.named(&scan(cube, cuboid, &req, None)),
        expected(&[(&["unknown", "branch"], &["70.000000", "1"])])
    );
    // By city, unfiltered: six groups, unknown among them, nothing merged into another city.
    let req = AggRequest {
        levels: &levels[..1],
        filters: &[],
        ..req
    };
    assert_eq!(
        fx.named(&scan(cube, cuboid, &req, None)),
        expected(&[
            (&["Laval"], &["75.750000", "2"]),
            (&["Montreal"], &["230.000000", "3"]),
            (&["Ottawa"], &["380.000000", "2"]),
            (&["Toronto"], &["181.000000", "5"]),
            (&["Vancouver"], &["525.000000", "2"]),
            (&["unknown"], &["70.000000", "1"]),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// fallback

#[tokio::test]
async fn fallback_sql_filters_a_column_level_by_raw_keys() {
    let fx = fixture().await;
    let cube = fx.cube();
    let fb = fx.data.fallback.as_ref().expect("opened with sources");
    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    let levels = [fx.level("channel.channel")];
    // Business customers are 2, 3 and 6: their keys, on the fact's own column.
    let business = [fx.filter("customer.segment", &["business"])];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &levels,
        filters: &business,
        measures: &measures,
    };
    let sql = fallback::sql(cube, fb, &req, None, None).expect("sql");
    assert!(
        sql.contains(r#" AS f WHERE f."customer_id" IN (2, 3, 6)) AS b GROUP BY g0"#),
        "{sql}"
    );
    assert!(sql.contains("SUM(b.x0) AS a0"), "{sql}");
    assert!(sql.contains("COUNT(b.x1) AS a1"), "{sql}");

    // A text key is compared as text.
    let online = [fx.filter("channel.channel", &["online"])];
    let req = AggRequest {
        filters: &online,
        ..req.clone()
    };
    let sql = fallback::sql(cube, fb, &req, None, None).expect("sql");
    assert!(
        sql.contains(r#"WHERE CAST(f."channel" AS VARCHAR) IN ('online')"#),
        "{sql}"
    );

    // A filter keeping `unknown` cannot be a list of keys: the code function filters instead.
    let not_ontario = [fx.filter("customer.province", &["BC", "Quebec", "unknown"])];
    let req = AggRequest {
        filters: &not_ontario,
        ..req.clone()
    };
    let sql = fallback::sql(cube, fb, &req, None, None).expect("sql");
    let province = fx.level("customer.province");
    let function = format!(
        "_d{}_l{}_x{}(b.k0) IN (0, 2, 3)",
        province.dim, province.level, province.dim
    );
    assert!(sql.contains(") AS b WHERE __lattice"), "{sql}");
    assert!(sql.contains(&function), "{sql}");

    // No filters, no WHERE; no levels, no GROUP BY but a HAVING.
    let req = AggRequest {
        levels: &[],
        filters: &[],
        ..req
    };
    let sql = fallback::sql(cube, fb, &req, None, None).expect("sql");
    assert!(!sql.contains("WHERE"), "{sql}");
    assert!(sql.ends_with(" HAVING COUNT(*) > 0"), "{sql}");
}

#[tokio::test]
async fn fallback_sql_runs_and_matches_the_hand_computed_answer() {
    let fx = fixture().await;
    let cube = fx.cube();
    let fb = fx.data.fallback.as_ref().expect("opened with sources");
    let measures = [fx.measure("amount"), fx.measure("txn_count")];
    // Segment is in no cuboid. Online: 20.50 (1, retail), 10.00 (3, business), NULL (4,
    // retail), 500.00 (6, business), 80.00 (2, business).
    let levels = [fx.level("customer.segment")];
    let online = [fx.filter("channel.channel", &["online"])];
    let req = AggRequest {
        fact: fx.fact(),
        levels: &levels,
        filters: &online,
        measures: &measures,
    };
    assert!(
        cube.cuboids
            .iter()
            .all(|c| c.fact != fx.fact() || !c.levels.contains(&levels[0])),
        "no cuboid holds the segment"
    );
    let (g, ran, groups) = fallback::aggregate(cube, fb, &req, None, None)
        .await
        .expect("the fallback runs");
    assert_eq!(ran, fallback::sql(cube, fb, &req, None, None).expect("sql"));
    assert_eq!(groups, None);
    assert_eq!(
        fx.named(&g),
        expected(&[
            (&["business"], &["590.000000", "3"]),
            (&["retail"], &["20.500000", "2"]),
        ])
    );
    // The same SQL straight through the sources' session (the code functions are registered
    // there): two groups.
    let batches = fx
        .sources
        .ctx
        .sql(&ran)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    // Every segment, unknown included (customer 9).
    let req = AggRequest {
        filters: &[],
        ..req
    };
    let (g, _, _) = fallback::aggregate(cube, fb, &req, None, None)
        .await
        .expect("the fallback runs");
    assert_eq!(
        fx.named(&g),
        expected(&[
            (&["business"], &["960.250000", "6"]),
            (&["retail"], &["431.500000", "8"]),
            (&["unknown"], &["70.000000", "1"]),
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// the whole path

/// The rows of `answer` as text, and the path of its first fact.
fn answered(answer: &super::Answer) -> (Vec<Vec<String>>, &'static str) {
    let rows = answer
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect();
    (rows, answer.meta.facts[0].source)
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn query_gives_the_same_numbers_from_a_cuboid_and_from_the_fallback() {
    // Without base rows: what no cuboid covers goes to DataFusion.
    let fx = fixture_built(&crate::build::BuildOptions {
        without_base: true,
        ..Default::default()
    })
    .await;
    let session = fx.data.session(crate::access::Access::everything());
    let by_province = table(&[
        &["BC", "525.000000", "2"],
        &["Ontario", "561.000000", "7"],
        &["Quebec", "305.750000", "5"],
        &["unknown", "70.000000", "1"],
    ]);
    let q = query(r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"]}"#);
    let a = session.query(&q).await.expect("answers");
    assert_eq!(answered(&a), (by_province.clone(), "cuboid"));

    // Every fact is in 2025: filtering by the year changes no number, but no cuboid holds a
    // time level, so DataFusion answers.
    let q = query(
        r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"],
            "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
    );
    let a = session.query(&q).await.expect("answers");
    assert_eq!(answered(&a), (by_province, "fallback"));

    // Branch transactions by province, both ways: a filter on the channel (cuboid), and the
    // same with a filter on every month of the data (fallback).
    let branch = table(&[
        &["Ontario", "400.000000", "2"],
        &["Quebec", "215.750000", "2"],
        &["unknown", "70.000000", "1"],
    ]);
    let q = query(
        r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"],
            "filters": [{"level": "channel.channel", "op": "eq", "value": "branch"}]}"#,
    );
    let a = session.query(&q).await.expect("answers");
    assert_eq!(answered(&a), (branch.clone(), "cuboid"));
    let q = query(
        r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"],
            "filters": [{"level": "channel.channel", "op": "eq", "value": "branch"},
                        {"level": "time.month", "op": "between",
                         "values": ["2025-01", "2025-03"]}]}"#,
    );
    let a = session.query(&q).await.expect("answers");
    assert_eq!(answered(&a), (branch, "fallback"));

    // Segments, which no cuboid holds: business 380.00 + 55.25 + 525.00, retail 125.75 +
    // 230.00 + 75.75, the largest first.
    let q = query(
        r#"{"measures": ["amount"], "rows": ["customer.segment"],
            "filters": [{"level": "customer.segment", "op": "in",
                         "values": ["retail", "business"]}],
            "order": [{"by": "amount", "dir": "desc"}]}"#,
    );
    let a = session.query(&q).await.expect("answers");
    assert_eq!(
        answered(&a),
        (
            table(&[&["business", "960.250000"], &["retail", "431.500000"]]),
            "fallback"
        )
    );
}

#[tokio::test]
async fn a_built_cube_read_back_from_its_snapshot_is_equal_and_answers_the_same() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let at = dir.path().join("snap");
    let model = fx.cube().model.clone();
    let sources =
        serde_json::to_value(crate::source::load::fingerprint(&model)).expect("fingerprints");
    crate::store::snapshot::write(fx.cube(), YAML, &sources, &at).expect("write");
    let back = crate::store::snapshot::read(&at, model.clone(), YAML, &sources).expect("read");
    let cube = fx.cube();
    assert_eq!(back.levels, cube.levels);
    assert!(back.cuboids == cube.cuboids, "cuboids differ");
    assert!(back.index == cube.index, "index differs");
    assert!(back.encoding == cube.encoding, "encoding differs");
    assert!(!cube.bases.is_empty(), "the build keeps base rows");
    assert!(back.bases == cube.bases, "base rows differ");

    // The same questions give the same answers the same way: on a cuboid, and from the base
    // rows read back (segments and time are in no cuboid).
    let reread = Arc::new(Dataset::new(back, Some(&fx.sources)));
    let everything = crate::access::Access::everything;
    for (json, source) in [
        (
            r#"{"measures": ["amount", "txn_count"], "rows": ["customer.province"]}"#,
            "cuboid",
        ),
        (
            r#"{"measures": ["amount"], "rows": ["customer.segment"],
                "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
            "base",
        ),
        (
            r#"{"measures": ["amount", "txn_count"], "rows": ["time.month", "channel.channel"]}"#,
            "base",
        ),
    ] {
        let q = query(json);
        let want = fx
            .data
            .session(everything())
            .query(&q)
            .await
            .expect("answers");
        let got = reread
            .session(everything())
            .query(&q)
            .await
            .expect("answers");
        assert_eq!(answered(&got), answered(&want), "{json}");
        assert_eq!(answered(&got).1, source, "{json}");
        assert_eq!(got.meta.source, source, "{json}");
        assert!(!got.rows.is_empty(), "{json}");
    }

    // Without its base rows, the cube read back answers through the fallback, which codes raw
    // facts with the encoding read back: the same numbers.
    let mut bare = crate::store::snapshot::read(&at, model, YAML, &sources).expect("read");
    bare.bases = Vec::new();
    let bare = Arc::new(Dataset::new(bare, Some(&fx.sources)));
    let q = query(
        r#"{"measures": ["amount"], "rows": ["customer.segment"],
            "filters": [{"level": "time.year", "op": "eq", "value": "2025"}]}"#,
    );
    let want = fx
        .data
        .session(everything())
        .query(&q)
        .await
        .expect("answers");
    let got = bare.session(everything()).query(&q).await.expect("answers");
    assert_eq!(answered(&got), (answered(&want).0, "fallback"));
}
