//! `GET /openapi.json`, generated from the types: the server's own response types derive
//! `ToSchema`, each route carries `#[utoipa::path]`, and [`ApiDoc`] lists the routes.
//!
//! The query, drill-through and answer documents are the engine's types, which do not derive
//! `ToSchema` (the engine knows nothing about HTTP). Their schemas come from the mirrors below,
//! which the tests hold in lockstep with the engine's serde shapes: a fully populated engine
//! document must read into its mirror (which denies unknown fields) and back, so a field added
//! to either side fails a test until the other follows.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// A slice-and-dice question (`lattice_engine::query::Query`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Query)]
pub struct QueryDoc {
    /// Measures to compute, by name.
    pub measures: Vec<String>,
    /// Levels on rows (`dimension.level`).
    #[serde(default)]
    pub rows: Vec<String>,
    /// Levels on columns: a pivot.
    #[serde(default)]
    pub columns: Vec<String>,
    #[serde(default)]
    pub filters: Vec<FilterDoc>,
    /// Conditions on measure values after aggregation.
    #[serde(default)]
    pub having: Vec<HavingDoc>,
    #[serde(default)]
    pub order: Vec<OrderDoc>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
    /// Grand and sub-totals of the grouped levels.
    #[serde(default)]
    pub totals: bool,
    /// Each measure also against the member `lag` steps earlier on an ordered level.
    #[serde(default)]
    pub compare: Option<CompareDoc>,
    /// Say which cuboid answers, and why.
    #[serde(default)]
    pub explain: bool,
    /// Measures as shares of their totals over coarser groups (a column each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<ShareDoc>,
    /// Saved searches whose customers filter the query (several intersect).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

/// A measure as a share of its total (`of: []`: the grand total; `of: ["time.month"]`: within
/// each month; a level above a grouped one: the parent member).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Share)]
pub struct ShareDoc {
    pub measure: String,
    #[serde(default)]
    pub of: Vec<String>,
    /// Default `<measure>_share` or `<measure>_share_of_<levels>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = FilterOp)]
pub enum FilterOpDoc {
    Eq,
    In,
    NotIn,
    /// Inclusive, on ordered levels (time, bands).
    Between,
    /// Member names starting with `value`.
    Prefix,
    /// Member names containing `value`, ignoring case.
    Search,
}

/// A slice of the cube on one level.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Filter)]
pub struct FilterDoc {
    pub level: String,
    pub op: FilterOpDoc,
    /// For `eq`, `prefix`, `search`.
    #[serde(default)]
    pub value: Option<String>,
    /// For `in`, `not_in`, and `between` (two members).
    #[serde(default)]
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = HavingOp)]
pub enum HavingOpDoc {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Having)]
pub struct HavingDoc {
    pub measure: String,
    pub op: HavingOpDoc,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Direction)]
pub enum DirectionDoc {
    #[default]
    Asc,
    Desc,
}

/// Order by a measure or a grouped level.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Order)]
pub struct OrderDoc {
    pub by: String,
    #[serde(default)]
    pub dir: DirectionDoc,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Compare)]
pub struct CompareDoc {
    pub level: String,
    pub lag: u32,
}

/// The answer to a query (`lattice_engine::query::Answer`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Answer)]
pub struct AnswerDoc {
    pub columns: Vec<ColumnDoc>,
    /// One array per row: level members as strings, then measures (decimals as exact
    /// strings, counts as integers, ratios as numbers, an empty cell as null).
    pub rows: Vec<Vec<Value>>,
    /// Grand totals per measure (and per pivot column, `<member>|<measure>`), when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub totals: Option<serde_json::Map<String, Value>>,
    /// Measures grouped by each leading part of `rows`, when totals are asked for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtotals: Vec<SubtotalDoc>,
    /// For principals with small-cell suppression: the values withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<SuppressedDoc>,
    pub meta: MetaDoc,
}

/// Cells and totals withheld because fewer than `min_customers` customers are behind them (or
/// they contain such a cell).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Suppressed)]
pub struct SuppressedDoc {
    pub min_customers: u64,
    /// `[row, column]` of each withheld value in `rows`.
    pub cells: Vec<[usize; 2]>,
    /// Keys of `totals` withheld.
    pub totals: Vec<String>,
    /// `[sub-total, row]` of each withheld sub-total row.
    pub subtotals: Vec<[usize; 2]>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Column)]
pub struct ColumnDoc {
    pub name: String,
    /// `level` or `measure`.
    pub kind: String,
    /// For measures: `decimal` (exact, as a string), `integer` or `number`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Subtotal)]
pub struct SubtotalDoc {
    pub levels: Vec<String>,
    /// Members of `levels`, then the measures.
    pub rows: Vec<Vec<Value>>,
}

/// How an answer was found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Meta)]
pub struct MetaDoc {
    /// `cuboid` when every fact was answered from a cuboid, else `fallback`.
    pub source: String,
    /// The levels of the cuboid that answered (the first fact's); null for the fallback.
    pub cuboid: Option<Vec<String>>,
    pub facts: Vec<FactMetaDoc>,
    /// Rows before `offset` and `limit`.
    pub total_rows: usize,
    pub elapsed_us: u64,
    /// The snapshot (cube version) that answered.
    pub snapshot: u64,
    /// Whether the answer came from the result cache.
    pub cached: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FactMeta)]
pub struct FactMetaDoc {
    pub fact: String,
    pub source: String,
    pub cuboid: Option<Vec<String>>,
    /// Cells of the cuboid scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cells: Option<usize>,
    /// With `explain`: every cuboid that could answer, and why this path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explain: Option<ExplainDoc>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Explain)]
pub struct ExplainDoc {
    pub needs: Vec<String>,
    pub candidates: Vec<CandidateDoc>,
    pub reason: String,
    /// The SQL the fallback ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Candidate)]
pub struct CandidateDoc {
    pub cuboid: Vec<String>,
    pub cells: usize,
}

/// A drill-through request (`lattice_engine::query::DrillQuery`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DrillQuery)]
pub struct DrillDoc {
    /// The level whose members to list (`customer.id`).
    pub level: String,
    /// The cell: the same filters as a query.
    #[serde(default)]
    pub filters: Vec<FilterDoc>,
    /// Measures to show per member.
    #[serde(default)]
    pub measures: Vec<String>,
    #[serde(default)]
    pub order: Vec<OrderDoc>,
    /// Default 100.
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

/// The members behind a cell (`lattice_engine::query::DrillAnswer`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DrillAnswer)]
pub struct DrillAnswerDoc {
    pub level: String,
    /// Members behind the cell, before paging.
    pub total: u64,
    pub columns: Vec<ColumnDoc>,
    pub rows: Vec<Vec<Value>>,
    pub meta: DrillMetaDoc,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DrillMeta)]
pub struct DrillMetaDoc {
    /// `member_sets` (united roaring sets of a cuboid) or `fallback`.
    pub source: String,
    /// The distinct measure whose sets were used.
    pub via_measure: String,
    pub cuboid: Option<Vec<String>>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// Manager performance (`lattice_engine::analytics::PerformanceQuery`): per member of `level`
/// and period, customers managed, new and lost, measures, high-value share and rank.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PerformanceQuery)]
pub struct PerformanceDoc {
    /// The level assessed (`manager.manager`).
    pub level: String,
    /// The time level of the periods (default `time.month`).
    #[serde(default)]
    pub period: Option<String>,
    /// First and last period, inclusive.
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub customers: Option<CustomersDoc>,
    #[serde(default)]
    pub measures: Vec<String>,
    #[serde(default)]
    pub high_value: Option<HighValueDoc>,
    #[serde(default)]
    pub rank: Option<RankDoc>,
    #[serde(default)]
    pub filters: Vec<FilterDoc>,
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub offset: u64,
}

/// The customer level and the distinct measure that counts them.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PerformanceCustomers)]
pub struct CustomersDoc {
    /// Default `customer.id`.
    #[serde(default)]
    pub level: Option<String>,
    /// Default `customers`.
    #[serde(default)]
    pub measure: Option<String>,
}

/// High-value customers: members of `level` (a band or class) at the period's close.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = HighValue)]
pub struct HighValueDoc {
    pub level: String,
    pub members: Vec<String>,
}

/// Standard competition rank (1 = largest `by`) within the members of `within`, an ancestor
/// of the level, per period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Rank)]
pub struct RankDoc {
    pub within: String,
    pub by: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PerformanceAnswer)]
pub struct PerformanceAnswerDoc {
    pub level: String,
    pub period: String,
    pub periods: Vec<String>,
    pub measures: Vec<String>,
    /// Rows before paging.
    pub total: usize,
    pub rows: Vec<PerformanceRowDoc>,
    pub meta: PerformanceMetaDoc,
}

/// One member in one period.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PerformanceRow)]
pub struct PerformanceRowDoc {
    pub period: String,
    pub member: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub customers: Option<u64>,
    /// Null where the data has no previous period.
    pub new_customers: Option<u64>,
    pub lost_customers: Option<u64>,
    /// Per measure its value (decimals as exact strings).
    #[schema(value_type = Object)]
    pub values: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value_customers: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_value_share: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PerformanceMeta)]
pub struct PerformanceMetaDoc {
    /// `member_sets` (roaring sets of a cuboid) or `grouped`.
    pub source: String,
    pub via_measure: String,
    pub cuboid: Option<Vec<String>>,
    /// Per period, the closing finest-time period where high value is read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closing: Vec<Option<String>>,
    pub facts: Vec<FactMetaDoc>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// A Pareto request (`lattice_engine::analytics::ParetoQuery`): how concentrated `measure` is
/// over the members of `level`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ParetoQuery)]
pub struct ParetoDoc {
    /// The level whose members are ranked (default `customer.id`).
    #[serde(default)]
    pub level: Option<String>,
    /// An exact measure: a sum, a count, or sums and differences of them.
    pub measure: String,
    #[serde(default)]
    pub filters: Vec<FilterDoc>,
    /// Shares of the members from the top, each in (0, 1] with at most 6 decimals (default
    /// `[0.2]`).
    #[serde(default)]
    pub cuts: Option<Vec<f64>>,
    /// Shares of the total to reach (default `[0.8]`).
    #[serde(default)]
    pub reach: Option<Vec<f64>>,
    /// Curve resolution, 1 to 10,000 (default 100).
    #[serde(default)]
    pub points: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ParetoAnswer)]
pub struct ParetoAnswerDoc {
    pub level: String,
    pub measure: String,
    /// Members with a value.
    pub members: usize,
    pub negative_members: usize,
    /// The sum of the members' values (a decimal as an exact string, or an integer).
    #[schema(value_type = Object)]
    pub total: Value,
    pub curve: Vec<ParetoPointDoc>,
    pub cuts: Vec<ParetoCutDoc>,
    pub reach: Vec<ParetoReachDoc>,
    pub meta: AnalyticsMetaDoc,
}

/// The top `members` (share `x` of all) hold `cumulative`, share `y` of the total (null when
/// the total is not positive).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ParetoPoint)]
pub struct ParetoPointDoc {
    pub members: usize,
    pub x: f64,
    #[schema(value_type = Object)]
    pub cumulative: Value,
    pub y: Option<f64>,
}

/// The top `ceil(cut * N)` members, their exact value and share.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ParetoCut)]
pub struct ParetoCutDoc {
    pub cut: f64,
    pub members: usize,
    #[schema(value_type = Object)]
    pub value: Value,
    pub share: Option<f64>,
}

/// The fewest top members holding at least `share` of the total.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ParetoReach)]
pub struct ParetoReachDoc {
    pub share: f64,
    pub members: Option<usize>,
    pub member_share: Option<f64>,
}

/// How an analysis was answered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AnalyticsMeta)]
pub struct AnalyticsMetaDoc {
    pub facts: Vec<FactMetaDoc>,
    pub elapsed_us: u64,
    pub snapshot: u64,
}

/// Every error: `{"error": {"code", "message", "details"}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorDoc {
    pub error: ErrorBodyDoc,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ErrorBody)]
pub struct ErrorBodyDoc {
    /// Stable, machine-readable name of the problem (`unknown_level`, `query_timeout`, ...).
    pub code: String,
    /// What is wrong, for a person, with the fix where there is one.
    pub message: String,
    /// The data of the problem (names, suggestions, limits, located definition errors).
    #[schema(value_type = Object)]
    pub details: Value,
}

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Lattice",
        description = "Slice-and-dice queries over in-memory OLAP cubes, with hot reload of their definitions."
    ),
    paths(
        crate::routes::health,
        crate::routes::metrics,
        crate::routes::openapi,
        crate::routes::list_cubes,
        crate::routes::cube_metadata,
        crate::routes::members,
        crate::query::query,
        crate::query::drillthrough,
        crate::routes::get_definition,
        crate::reload::put_definition,
        crate::analytics::abnormal_route,
        crate::analytics::migration_route,
        crate::analytics::migration_drill_route,
        crate::searches::list,
        crate::searches::run_adhoc,
        crate::searches::get_one,
        crate::searches::put_one,
        crate::searches::delete_one,
        crate::searches::run_named,
        crate::entities::entity_route,
        crate::analytics::pareto_route,
        crate::analytics::performance_route,
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

/// The OpenAPI document as JSON, made once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi().to_json().unwrap_or_else(|e| {
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

    #[test]
    fn the_query_schema_follows_the_engine_query() {
        let engine = full_query();
        let json = serde_json::to_string(&engine).expect("serialise");
        let mirror: QueryDoc = serde_json::from_str(&json).expect("the mirror reads every field");
        let back = serde_json::to_string(&mirror).expect("serialise");
        assert_eq!(
            Query::from_json(&back).expect("the engine reads the mirror"),
            engine
        );
    }

    #[test]
    fn the_drill_schema_follows_the_engine_drill_query() {
        let engine = DrillQuery {
            level: "customer.id".into(),
            filters: full_query().filters,
            measures: vec!["txn_amount".into()],
            order: full_query().order,
            limit: Some(3),
            offset: 1,
        };
        let json = serde_json::to_string(&engine).expect("serialise");
        let mirror: DrillDoc = serde_json::from_str(&json).expect("the mirror reads every field");
        let back = serde_json::to_string(&mirror).expect("serialise");
        assert_eq!(
            DrillQuery::from_json(&back).expect("the engine reads the mirror"),
            engine
        );
    }

    #[test]
    fn the_performance_schema_follows_the_engine_request() {
        use lattice_engine::analytics::{CustomersSpec, HighValue, PerformanceQuery, RankSpec};
        let engine = PerformanceQuery {
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
        let json = serde_json::to_string(&engine).expect("serialise");
        let mirror: PerformanceDoc =
            serde_json::from_str(&json).expect("the mirror reads every field");
        let back = serde_json::to_string(&mirror).expect("serialise");
        assert_eq!(
            PerformanceQuery::from_json(&back).expect("the engine reads the mirror"),
            engine
        );
    }

    #[test]
    fn the_pareto_schema_follows_the_engine_request() {
        use lattice_engine::analytics::ParetoQuery;
        let engine = ParetoQuery {
            level: "customer.segment".into(),
            measure: "fee_income".into(),
            filters: full_query().filters,
            cuts: vec![0.2, 0.05],
            reach: vec![0.8],
            points: 50,
        };
        let json = serde_json::to_string(&engine).expect("serialise");
        let mirror: ParetoDoc = serde_json::from_str(&json).expect("the mirror reads every field");
        let back = serde_json::to_string(&mirror).expect("serialise");
        assert_eq!(
            ParetoQuery::from_json(&back).expect("the engine reads the mirror"),
            engine
        );
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
