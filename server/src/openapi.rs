//! `GET /openapi.json`, generated from the types: each route's `#[utoipa::path]` (listed once,
//! in [`crate::api`]), the server's own answer types and the engine's request and answer types,
//! which derive `ToSchema` under the engine's `openapi` feature. No schema is written by hand,
//! so the document cannot drift from what the routes read and write.
//!
//! This module imports the routes it documents; no route imports it (the server holds the
//! document it makes).

use std::sync::OnceLock;

use utoipa::OpenApi;

use crate::api::{self, Schemas};

/// What the document says besides its paths: the title, the tags, the security scheme.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Lattice",
        description = "Slice-and-dice queries over in-memory OLAP cubes, with hot reload of their definitions."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "query", description = "Slice-and-dice queries and drill-through"),
        (name = "cubes", description = "What is served: cubes, their metadata and members"),
        (name = "definitions", description = "Cube definitions: read, replace (hot reload)"),
        (name = "analytics", description = "Analyses over the cube: Pareto (80/20), manager performance"),
        (name = "server", description = "Health, metrics, this document"),
        (name = "analytics", description = "Abnormal change, band migration, the single entity (customer) view"),
        (name = "searches", description = "Target-customer searches: the definition's and those saved over the API, run as lists"),
    )
)]
pub struct ApiDoc;

/// With `--auth`, every route but `/health` and `/openapi.json` needs
/// `Authorization: Bearer <API key or JWT>` (README, "Authentication").
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key of the auth file, or a JWT (HS256/RS256); only with `--auth`",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document: [`ApiDoc`], every route of the table, and the schemas they name.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let mut schemas = Schemas::new();
    for e in api::endpoints() {
        doc.paths
            .add_path_operation(&e.path, e.methods, e.operation);
        (e.schemas)(&mut schemas);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.extend(schemas);
    doc
}

/// The OpenAPI document as JSON, made once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        openapi().to_json().unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot write the OpenAPI document: {e}\"}}")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_engine::query::{
        Compare, Direction, DrillQuery, Filter, FilterOp, Having, HavingOp, Order, Query, Share,
    };
    use serde_json::Value;

    /// Every field set, every enum's variants used somewhere.
    fn full_query() -> Query {
        Query {
            measures: vec!["txn_amount".into()],
            rows: vec!["time.year".into()],
            columns: vec!["channel.channel".into()],
            filters: vec![
                Filter {
                    level: "region.province".into(),
                    op: FilterOp::In,
                    value: Some("x".into()),
                    values: Some(vec!["a".into()]),
                },
                Filter {
                    level: "a.b".into(),
                    op: FilterOp::NotIn,
                    value: None,
                    values: None,
                },
                Filter {
                    level: "a.b".into(),
                    op: FilterOp::Between,
                    value: None,
                    values: None,
                },
                Filter {
                    level: "a.b".into(),
                    op: FilterOp::Prefix,
                    value: None,
                    values: None,
                },
                Filter {
                    level: "a.b".into(),
                    op: FilterOp::Search,
                    value: None,
                    values: None,
                },
                Filter {
                    level: "a.b".into(),
                    op: FilterOp::Eq,
                    value: None,
                    values: None,
                },
            ],
            having: [
                HavingOp::Gt,
                HavingOp::Ge,
                HavingOp::Lt,
                HavingOp::Le,
                HavingOp::Eq,
                HavingOp::Ne,
            ]
            .into_iter()
            .map(|op| Having {
                measure: "txn_amount".into(),
                op,
                value: 1.5,
            })
            .collect(),
            order: vec![
                Order {
                    by: "txn_amount".into(),
                    dir: Direction::Desc,
                },
                Order {
                    by: "time.year".into(),
                    dir: Direction::Asc,
                },
            ],
            limit: Some(10),
            offset: 5,
            totals: true,
            compare: Some(Compare {
                level: "time.year".into(),
                lag: 1,
            }),
            explain: true,
            shares: vec![Share {
                measure: "txn_amount".into(),
                of: vec!["time.year".into()],
                name: Some("s".into()),
            }],
            segments: vec!["s".into()],
        }
    }

    /// The properties a schema documents: exactly the keys its type writes when every field is
    /// set (a field renamed or skipped for serde is so in the schema too).
    fn assert_properties_are_keys(name: &str, full: &impl serde::Serialize) {
        let doc: Value = serde_json::from_str(document()).expect("json");
        let schema = &doc["components"]["schemas"][name];
        let mut documented: Vec<&String> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: {schema}"))
            .keys()
            .collect();
        let value = serde_json::to_value(full).expect("serialise");
        let mut written: Vec<&String> = value.as_object().expect("an object").keys().collect();
        documented.sort_unstable();
        written.sort_unstable();
        assert_eq!(documented, written, "{name}");
    }

    #[test]
    fn request_schemas_document_every_field_the_engine_reads() {
        use lattice_engine::analytics::{
            CustomersSpec, HighValue, ParetoQuery, PerformanceQuery, RankSpec,
        };
        assert_properties_are_keys("Query", &full_query());
        let drill = DrillQuery {
            level: "customer.id".into(),
            filters: full_query().filters,
            measures: vec!["txn_amount".into()],
            order: full_query().order,
            limit: Some(3),
            offset: 1,
        };
        assert_properties_are_keys("DrillQuery", &drill);
        let performance = PerformanceQuery {
            level: "manager.manager".into(),
            period: "time.quarter".into(),
            from: "2025-Q1".into(),
            to: "2025-Q2".into(),
            customers: CustomersSpec {
                level: "customer.id".into(),
                measure: "customers".into(),
            },
            measures: vec!["fee_income".into()],
            high_value: Some(HighValue {
                level: "customer.deposit_band".into(),
                members: vec!["1M+".into()],
            }),
            rank: Some(RankSpec {
                within: "manager.branch".into(),
                by: "fee_income".into(),
            }),
            filters: full_query().filters,
            limit: Some(3),
            offset: 1,
        };
        assert_properties_are_keys("PerformanceQuery", &performance);
        let pareto = ParetoQuery {
            level: "customer.segment".into(),
            measure: "fee_income".into(),
            filters: full_query().filters,
            cuts: vec![0.2, 0.05],
            reach: vec![0.8],
            points: 50,
        };
        assert_properties_are_keys("ParetoQuery", &pareto);
    }

    /// utoipa names a schema after its type alone: two types of one name in different
    /// modules would overwrite each other in the document without a word.
    #[test]
    fn no_two_types_share_a_schema_name() {
        let mut schemas = Schemas::new();
        for e in api::endpoints() {
            (e.schemas)(&mut schemas);
        }
        let mut by_name: std::collections::BTreeMap<String, String> = Default::default();
        for (name, schema) in schemas {
            let text = serde_json::to_string(&schema).expect("json");
            let first = by_name.entry(name.clone()).or_insert_with(|| text.clone());
            assert_eq!(*first, text, "two schemas named {name}");
        }
    }

    /// No answer is documented as a bare object where the route writes a type.
    #[test]
    fn every_json_answer_has_a_schema_of_its_own() {
        let doc: Value = serde_json::from_str(document()).expect("json");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("methods") {
                let mut bodies: Vec<&Value> = Vec::new();
                if let Some(rb) = op.get("requestBody") {
                    bodies.extend(
                        rb["content"]
                            .as_object()
                            .into_iter()
                            .flat_map(|c| c.values()),
                    );
                }
                for response in op["responses"].as_object().expect("responses").values() {
                    let content = response.get("content").and_then(Value::as_object);
                    bodies.extend(content.into_iter().flat_map(|c| c.values()));
                }
                for body in bodies {
                    let schema = &body["schema"];
                    let free = schema["type"] == "object" && schema.get("properties").is_none();
                    // The OpenAPI document itself is the one free-form answer.
                    assert!(
                        !free || path == "/openapi.json",
                        "{method} {path}: {schema}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_document_lists_every_route_with_its_schemas() {
        let doc: Value = serde_json::from_str(document()).expect("json");
        let paths = doc["paths"].as_object().expect("paths");
        let mut listed: Vec<&str> = paths.keys().map(String::as_str).collect();
        listed.sort_unstable();
        let mut routes: Vec<&str> = crate::ROUTES.to_vec();
        routes.sort_unstable();
        assert_eq!(listed, routes);
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for name in [
            "Query",
            "Filter",
            "Answer",
            "Meta",
            "DrillQuery",
            "DrillAnswer",
            "Error",
            "CubeDetail",
            "Members",
            "PerformanceQuery",
            "PerformanceAnswer",
            "ParetoQuery",
            "ParetoAnswer",
        ] {
            assert!(
                schemas.contains_key(name),
                "no schema {name}: {:?}",
                schemas.keys()
            );
        }
        assert_eq!(
            doc["paths"]["/v1/cubes/{cube}/query"]["post"]["requestBody"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/Query"
        );
    }
}
