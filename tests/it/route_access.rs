//! Access on every route, generated from the route lists: for each route the server lists
//! (`lattice_server::ROUTES` and the Cube API's `cubejs::ROUTES`), random requests drawn the
//! way a client (or an attacker) would send them, as every role:
//!
//! - a scoped principal (one manager's customers; two provinces' customers with small-cell
//!   suppression) never reads a member outside its scope — in an answer, an error, a
//!   suggestion or a dry-run — unless its own request named it;
//! - a principal under small-cell suppression never reads a value of a cell with fewer
//!   customers than the threshold (checked against the admin's answer to the same question).
//!
//! A route added to a list without a probe here fails `every_route_has_a_probe`, so no route
//! can forget access. A failure prints the route, the request and the seed
//! (`LATTICE_ROUTE_SEED` replays one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::auth::{App, Reply, app};
use crate::query_suite::{Cell, fixture, run_sql};

const ADMIN: &str = "route-admin-key-0123456789abcdef";
const MANAGER: &str = "route-manager-key-0123456789abcdef";
/// Two provinces' customers, with small cells suppressed.
const ANALYST: &str = "route-analyst-key-0123456789abcdef";
/// Every customer, with small cells suppressed.
const SUPPRESSED: &str = "route-suppressed-key-0123456789abcdef";

const MIN_CUSTOMERS: i64 = 5;
const PROVINCES: [&str; 2] = ["Zhejiang", "Sichuan"];

fn hash(key: &str) -> String {
    lattice_server::auth::hash_key(key)
}

fn auth_yaml(dir: &Path, manager: &str) -> PathBuf {
    let yaml = format!(
        r#"version: 1
keys:
  - {{name: admin, sha256: {admin}, roles: [admin]}}
  - {{name: manager, sha256: {manager}, roles: [manager], scope: [{scope:?}]}}
  - {{name: analyst, sha256: {analyst}, roles: [analyst], scope: ["region.province in [{provinces}]"]}}
  - {{name: suppressed, sha256: {suppressed}, roles: [analyst]}}
"#,
        admin = hash(ADMIN),
        manager = hash(MANAGER),
        analyst = hash(ANALYST),
        suppressed = hash(SUPPRESSED),
        scope = format!("manager.manager = {manager}"),
        provinces = PROVINCES.join(", "),
    );
    let path = dir.join("route-auth.yaml");
    std::fs::write(&path, yaml).expect("auth file");
    path
}

/// The names of the levels that identify customers, where they live and who manages them.
#[derive(Debug, Default)]
struct Names {
    /// Per level (`customer.id`, `region.city`, ...): every member.
    all: BTreeMap<&'static str, Vec<String>>,
}

/// What one scoped principal may and may not read.
#[derive(Debug)]
struct Scope {
    key: &'static str,
    /// Names of its own customers, regions and managers.
    allowed: BTreeSet<String>,
    /// Every other name of those levels (minus any that is also allowed).
    forbidden: BTreeSet<String>,
}

struct World {
    app: App,
    names: Names,
    scopes: Vec<Scope>,
    /// The served definition's text (the band workbench's routes are sent changes of it).
    definition: String,
}

async fn texts(sql: &str) -> BTreeSet<String> {
    let fx = fixture().await;
    run_sql(&fx.sql, sql)
        .await
        .expect("SQL")
        .rows
        .into_iter()
        .filter_map(|r| match &r[0] {
            Cell::Text(s) => Some(s.clone()),
            Cell::Int(i) => Some(i.to_string()),
            Cell::Null => None,
            other => panic!("text, not {other}"),
        })
        .collect()
}

/// Each identifying level and the SQL column of it over `customers c`, `regions r` (the
/// customer's home) and `managers m` with `regions mr` (the manager's branch).
const LEVELS: [(&str, &str); 6] = [
    ("customer.id", "CAST(c.customer_id AS VARCHAR)"),
    ("region.province", "r.province"),
    ("region.city", "r.city"),
    ("region.branch", "r.branch"),
    ("manager.manager", "m.manager_name"),
    ("manager.branch", "mr.branch"),
];

const FROM: &str = "customers c JOIN regions r ON r.region_id = c.region_id
    JOIN managers m ON m.manager_id = c.manager_id JOIN regions mr ON mr.region_id = m.region_id";

/// Names every principal reads whatever its scope: the labels of the definition's bands
/// (the products band's "1" is no customer id).
fn public_names() -> BTreeSet<String> {
    let model = crate::util::bank_crm(crate::util::parquet_dir(), false).expect("definition");
    model
        .dimensions
        .iter()
        .flat_map(|d| &d.levels)
        .filter_map(|l| match &l.kind {
            lattice_defs::model::LevelKind::Bucket(b) => Some(b.labels.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

async fn scope(key: &'static str, keeps: &str, names: &Names) -> Scope {
    let mut allowed = public_names();
    for (_, col) in LEVELS {
        allowed.extend(texts(&format!("SELECT DISTINCT {col} FROM {FROM} WHERE {keeps}")).await);
    }
    let forbidden = names
        .all
        .values()
        .flatten()
        .filter(|n| !allowed.contains(*n))
        .cloned()
        .collect();
    Scope {
        key,
        allowed,
        forbidden,
    }
}

async fn world() -> &'static World {
    static WORLD: OnceCell<World> = OnceCell::const_new();
    WORLD
        .get_or_init(|| async {
            let manager = texts(&format!(
                "SELECT m.manager_name FROM {FROM} GROUP BY m.manager_name
                 ORDER BY COUNT(*) DESC, m.manager_name LIMIT 1"
            ))
            .await
            .pop_first()
            .expect("a manager");
            let mut names = Names::default();
            for (level, col) in LEVELS {
                let all = texts(&format!("SELECT DISTINCT {col} FROM {FROM}")).await;
                names.all.insert(level, all.into_iter().collect());
            }
            let quoted = PROVINCES.map(|p| format!("'{p}'")).join(", ");
            let scopes = vec![
                scope(
                    MANAGER,
                    &format!("m.manager_name = '{}'", manager.replace('\'', "''")),
                    &names,
                )
                .await,
                scope(ANALYST, &format!("r.province IN ({quoted})"), &names).await,
            ];
            for s in &scopes {
                assert!(
                    !s.allowed.is_empty() && !s.forbidden.is_empty(),
                    "{}: a scope that keeps some and hides some",
                    s.key
                );
            }
            let auth = move |dir: &Path| auth_yaml(dir, &manager);
            // Many distinct questions per principal: the differencing rate limit is off here.
            let app = app(Some(&auth), |c, _| c.limits.max_questions_per_minute = 0).await;
            let definition = app
                .as_(ADMIN, "GET", "/v1/cubes/bank_crm/definition", None)
                .await
                .text;
            World {
                app,
                names,
                scopes,
                definition,
            }
        })
        .await
}

/// A small deterministic generator (xorshift), so a failure replays from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Levels a client filters and groups by; the identifying ones first.
const ALL_LEVELS: [&str; 12] = [
    "customer.id",
    "region.province",
    "region.city",
    "region.branch",
    "manager.manager",
    "manager.branch",
    "customer.segment",
    "channel.channel",
    "product.category",
    "time.quarter",
    "time.month",
    "customer.deposit_band",
];

const TXN_MEASURES: [&str; 4] = ["txn_amount", "txn_count", "fee_income", "avg_ticket"];
const BAL_MEASURES: [&str; 3] = ["deposit_balance", "loan_balance", "interest_margin"];

impl World {
    /// The served definition with one band changed (new edges, labels or quantiles), or, at
    /// times, broken: what a person at the band workbench sends.
    fn changed_definition(&self, rng: &mut Rng) -> String {
        let changes: [(&str, &str); 5] = [
            (
                "edges: [10000, 50000, 200000, 1000000]",
                "edges: [20000, 50000, 300000, 1000000]",
            ),
            ("edges: [1, 5, 20, 50]", "edges: [1, 10, 20, 50]"),
            ("quantiles: [0.8, 0.95]", "quantiles: [0.5, 0.9]"),
            (
                r#"labels: ["0", "1", "2", "3-4", "5+"]"#,
                r#"labels: ["none", "one", "two", "3-4", "5+"]"#,
            ),
            ("edges: [1, 5, 20, 50]", "edges: [50, 5]"),
        ];
        let (from, to) = *rng.pick(&changes);
        assert!(self.definition.contains(from), "the definition has {from}");
        self.definition.replacen(from, to, 1)
    }

    /// A member name of `level`: usually one of the identifying levels' names (inside or
    /// outside any scope), else something plausible.
    fn member(&self, rng: &mut Rng, level: &str) -> String {
        match self.names.all.get(level) {
            Some(names) => rng.pick(names).clone(),
            None => match level {
                "customer.segment" => rng.pick(&["mass", "affluent", "private"]).to_string(),
                "channel.channel" => rng
                    .pick(&["counter", "online", "mobile", "ATM"])
                    .to_string(),
                "product.category" => rng.pick(&["deposit", "loan", "card"]).to_string(),
                "time.quarter" => rng.pick(&["2024-Q3", "2025-Q1", "2025-Q2"]).to_string(),
                "time.month" => rng.pick(&["2024-12", "2025-03", "2025-06"]).to_string(),
                _ => rng.pick(&["<10k", "10k-50k", "1M+"]).to_string(),
            },
        }
    }

    /// A piece of a name (for `search`, `contains`, `startsWith`, ...).
    fn piece(&self, rng: &mut Rng, level: &str) -> String {
        let name = self.member(rng, level);
        let chars: Vec<char> = name.chars().collect();
        let from = rng.below(chars.len());
        let len = 1 + rng.below(3.min(chars.len() - from));
        chars[from..from + len].iter().collect()
    }

    fn native_filter(&self, rng: &mut Rng) -> Value {
        let level = *rng.pick(&ALL_LEVELS);
        match rng.below(5) {
            0 => json!({"level": level, "op": "eq", "value": self.member(rng, level)}),
            1 => json!({"level": level, "op": "in",
                        "values": [self.member(rng, level), self.member(rng, level)]}),
            2 => json!({"level": level, "op": "not_in", "values": [self.member(rng, level)]}),
            3 => json!({"level": level, "op": "search", "value": self.piece(rng, level)}),
            _ => json!({"level": level, "op": "prefix", "value": self.piece(rng, level)}),
        }
    }

    fn native_filters(&self, rng: &mut Rng) -> Vec<Value> {
        (0..rng.below(3)).map(|_| self.native_filter(rng)).collect()
    }

    fn measures(&self, rng: &mut Rng) -> Vec<&'static str> {
        let pool: &[&str] = if rng.chance(60) {
            &TXN_MEASURES
        } else {
            &BAL_MEASURES
        };
        let mut out = vec![*rng.pick(pool)];
        if rng.chance(50) {
            let m = *rng.pick(pool);
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    fn query(&self, rng: &mut Rng) -> Value {
        let mut rows: Vec<&str> = Vec::new();
        for _ in 0..rng.below(3) {
            let l = *rng.pick(&ALL_LEVELS);
            if !rows.contains(&l) {
                rows.push(l);
            }
        }
        json!({"measures": self.measures(rng), "rows": rows,
               "filters": self.native_filters(rng), "totals": rng.chance(50), "limit": 2000})
    }

    fn search_doc(&self, rng: &mut Rng, name: &str) -> Value {
        let level = *rng.pick(&ALL_LEVELS[..6]);
        let atom = json!({"level": level, "op": "in",
                          "values": [self.member(rng, level), self.member(rng, level)]});
        let cond = if rng.chance(50) {
            json!({"any": [atom, {"measure": "txn_amount", "op": "gt", "value": rng.below(5000)}]})
        } else {
            atom
        };
        json!({"name": name, "entity": "customer.id", "where": cond})
    }

    fn cube_filter(&self, rng: &mut Rng) -> Value {
        let level = *rng.pick(&ALL_LEVELS[..9]);
        let member = format!("bank_crm.{}", level.replace('.', "_"));
        let op = *rng.pick(&[
            "contains",
            "notContains",
            "startsWith",
            "endsWith",
            "notStartsWith",
            "equals",
            "notEquals",
            "gt",
            "lt",
            "set",
        ]);
        let value = match op {
            "equals" | "notEquals" => self.member(rng, level),
            "gt" | "lt" => rng.below(1000).to_string(),
            _ => self.piece(rng, level),
        };
        json!({"member": member, "operator": op, "values": [value]})
    }

    fn cube_query(&self, rng: &mut Rng) -> Value {
        let measures: Vec<String> = self
            .measures(rng)
            .iter()
            .map(|m| format!("bank_crm.{m}"))
            .collect();
        let dims: Vec<String> = (0..rng.below(2))
            .map(|_| format!("bank_crm.{}", rng.pick(&ALL_LEVELS[..9]).replace('.', "_")))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let filters: Vec<Value> = (0..1 + rng.below(2))
            .map(|_| self.cube_filter(rng))
            .collect();
        json!({"measures": measures, "dimensions": dims, "filters": filters, "limit": 2000})
    }

    fn migration(&self, rng: &mut Rng) -> Value {
        let (from, to) = *rng.pick(&[("2025-Q1", "2025-Q2"), ("2024-Q4", "2025-Q1")]);
        json!({"band": "customer.deposit_band", "entity": "customer.id", "level": "time.quarter",
               "from": from, "to": to,
               "measures": [*rng.pick(&["deposit_balance", "loan_balance", "fee_income", "txn_amount"])],
               "filters": self.native_filters(rng)})
    }
}

const BANDS: [&str; 5] = ["<10k", "10k-50k", "50k-200k", "200k-1M", "1M+"];

/// One request: method, path and body.
type Request = (&'static str, String, Option<Value>);

/// Random requests for `route` (`None`: the route is not probed — then the test fails).
fn probes(w: &World, rng: &mut Rng, route: &str) -> Option<Vec<Request>> {
    let cube = |rest: &str| format!("/v1/cubes/bank_crm{rest}");
    let post = |path: String, body: Value| ("POST", path, Some(body));
    let get = |path: String| ("GET", path, None);
    Some(match route {
        "/health" | "/metrics" | "/openapi.json" | "/v1/cubes" => {
            vec![get(route.to_string())]
        }
        "/v1/cubes/{cube}" => vec![get(cube(""))],
        "/v1/cubes/{cube}/members/{dimension}/{level}" => {
            let level = *rng.pick(&ALL_LEVELS[..9]);
            let (d, l) = level.split_once('.').expect("dimension.level");
            let search = w.piece(rng, level);
            let search: String = url_escape(&search);
            vec![
                get(cube(&format!("/members/{d}/{l}?limit=200"))),
                get(cube(&format!("/members/{d}/{l}?search={search}&limit=200"))),
            ]
        }
        "/v1/cubes/{cube}/query" => vec![post(cube("/query"), w.query(rng))],
        "/v1/cubes/{cube}/drillthrough" => {
            let level = *rng.pick(&["customer.id", "region.city", "manager.manager"]);
            vec![post(
                cube("/drillthrough"),
                json!({"level": level, "filters": w.native_filters(rng),
                       "measures": w.measures(rng), "limit": 200}),
            )]
        }
        "/v1/cubes/{cube}/definition" => vec![
            get(cube("/definition")),
            ("PUT", cube("/definition"), Some(json!("version: 1"))),
        ],
        "/v1/cubes/{cube}/definition/validate" => vec![(
            "POST",
            cube("/definition/validate"),
            Some(json!(w.changed_definition(rng))),
        )],
        "/v1/cubes/{cube}/bands/preview" => vec![(
            "POST",
            cube(if rng.below(2) == 0 {
                "/bands/preview"
            } else {
                "/bands/preview?period=2025-03"
            }),
            Some(json!(w.changed_definition(rng))),
        )],
        // Admins only; the sources never change here, so an admin's is `up_to_date`.
        "/v1/cubes/{cube}/refresh" => vec![("POST", cube("/refresh"), None)],
        "/v1/cubes/{cube}/analytics/abnormal" => vec![post(
            cube("/analytics/abnormal"),
            json!({"kind": "change", "entity": "customer.id", "measure": "deposit_balance",
                   "level": "time.month", "before": "2025-05", "after": "2025-06",
                   "relative": 0.1, "filters": w.native_filters(rng), "limit": 50}),
        )],
        "/v1/cubes/{cube}/analytics/migration" => {
            vec![post(cube("/analytics/migration"), w.migration(rng))]
        }
        "/v1/cubes/{cube}/analytics/migration/drill" => vec![post(
            cube("/analytics/migration/drill"),
            json!({"migration": w.migration(rng), "from_band": rng.pick(&BANDS),
                   "to_band": rng.pick(&BANDS), "limit": 50}),
        )],
        "/v1/cubes/{cube}/analytics/pareto" => vec![post(
            cube("/analytics/pareto"),
            json!({"level": *rng.pick(&["customer.id", "region.city", "manager.manager"]),
                   "measure": "fee_income", "filters": w.native_filters(rng)}),
        )],
        "/v1/cubes/{cube}/analytics/performance" => vec![post(
            cube("/analytics/performance"),
            json!({"level": "manager.manager", "period": "time.month",
                   "from": "2025-01", "to": "2025-03", "measures": ["fee_income", "deposit_balance"],
                   "filters": w.native_filters(rng), "limit": 500}),
        )],
        "/v1/cubes/{cube}/searches" => vec![get(cube("/searches"))],
        "/v1/cubes/{cube}/searches/run" => vec![post(
            cube("/searches/run"),
            json!({"search": w.search_doc(rng, "adhoc"), "measures": ["txn_amount"], "limit": 50}),
        )],
        "/v1/cubes/{cube}/searches/{name}" => {
            let name = format!("probe_{}", rng.below(1000));
            vec![
                (
                    "PUT",
                    cube(&format!("/searches/{name}")),
                    Some(w.search_doc(rng, &name)),
                ),
                get(cube(&format!("/searches/{name}"))),
                get(cube("/searches/affluent_digital_no_loan")),
                ("DELETE", cube(&format!("/searches/{name}")), None),
            ]
        }
        "/v1/cubes/{cube}/searches/{name}/run" => vec![post(
            cube("/searches/affluent_digital_no_loan/run"),
            json!({"measures": ["deposit_balance"], "limit": 50}),
        )],
        "/v1/cubes/{cube}/entities/{dimension}/{id}" => {
            let id = w.member(rng, "customer.id");
            vec![get(cube(&format!("/entities/customer/{id}")))]
        }
        "/cubejs-api/v1/meta" => vec![get(route.to_string())],
        "/cubejs-api/v1/load" | "/cubejs-api/v1/subscribe" | "/cubejs-api/v1/dry-run" => {
            vec![post(route.to_string(), json!({"query": w.cube_query(rng)}))]
        }
        _ => return None,
    })
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn every_route() -> Vec<&'static str> {
    lattice_server::ROUTES
        .iter()
        .chain(lattice_server::cubejs::ROUTES.iter())
        .copied()
        .collect()
}

async fn send(app: &App, key: &str, (method, uri, body): &Request) -> Reply {
    app.as_(key, method, uri, body.as_ref()).await
}

/// Forbidden names that `reply` holds and `request` did not name itself.
fn leaks(scope: &Scope, request: &str, reply: &str) -> Vec<String> {
    // A scope's own names may contain a forbidden one ("Hangzhou" in "Hangzhou West"):
    // blank them first, longest first.
    let mut text = reply.to_string();
    let mut own: Vec<&String> = scope
        .allowed
        .iter()
        .filter(|n| text.contains(n.as_str()))
        .collect();
    own.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in own {
        if n.len() > 2 && !n.bytes().all(|b| b.is_ascii_digit()) {
            text = text.replace(n.as_str(), "\u{1}");
        }
    }
    let ids = id_like(reply);
    let sent: BTreeSet<&str> = request
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect();
    scope
        .forbidden
        .iter()
        .filter(|n| {
            if n.bytes().all(|b| b.is_ascii_digit()) {
                ids.contains(n.as_str()) && !sent.contains(n.as_str())
            } else {
                text.contains(n.as_str()) && !request.contains(n.as_str())
            }
        })
        .cloned()
        .collect()
}

/// The texts of a reply that could name a customer id: in a JSON reply, the string values
/// (but a measure's, which the Cube API writes as a string) and the names a message quotes;
/// in another reply, every quoted token.
fn id_like(reply: &str) -> BTreeSet<String> {
    fn quoted(s: &str, out: &mut BTreeSet<String>) {
        for q in ['\'', '"'] {
            out.extend(s.split(q).skip(1).step_by(2).map(str::to_string));
        }
    }
    fn walk(v: &Value, key: Option<&str>, out: &mut BTreeSet<String>) {
        match v {
            Value::String(s) => {
                let measure = key.is_some_and(|k| {
                    let k = k.rsplit('.').next().unwrap_or(k);
                    TXN_MEASURES.contains(&k)
                        || BAL_MEASURES.contains(&k)
                        || [
                            "active_customers",
                            "customers",
                            "products_held",
                            "contribution",
                        ]
                        .contains(&k)
                });
                if !measure {
                    out.insert(s.clone());
                    quoted(s, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, None, out)),
            Value::Object(o) => o.iter().for_each(|(k, v)| walk(v, Some(k), out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    match serde_json::from_str::<Value>(reply) {
        Ok(v) => walk(&v, None, &mut out),
        Err(_) => quoted(reply, &mut out),
    }
    out
}

/// At most `n` characters of `text`, for a failure message.
fn cut(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

fn cases() -> u64 {
    crate::util::proptest_cases(12).into()
}

fn seeds() -> Vec<u64> {
    match std::env::var("LATTICE_ROUTE_SEED") {
        Ok(s) => vec![s.parse().expect("LATTICE_ROUTE_SEED is a number")],
        Err(_) => (1..=cases()).collect(),
    }
}

#[tokio::test]
async fn every_route_has_a_probe() {
    let w = world().await;
    let mut rng = Rng::new(1);
    let missing: Vec<&str> = every_route()
        .into_iter()
        .filter(|r| probes(w, &mut rng, r).is_none_or(|p| p.is_empty()))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without an access probe in tests/it/route_access.rs: {missing:?}"
    );
}

/// The property: on every route, for random requests, a scoped principal's reply (answer,
/// error, dry-run, suggestion) holds no name outside its scope that it did not send itself.
#[tokio::test]
async fn no_route_shows_a_scoped_principal_anything_outside_its_scope() {
    let w = world().await;
    let mut checked = 0;
    for route in every_route() {
        for seed in seeds() {
            let mut rng = Rng::new(seed ^ fnv(route));
            let requests = probes(w, &mut rng, route).expect("every route has a probe");
            for scope in &w.scopes {
                for req in &requests {
                    let reply = send(&w.app, scope.key, req).await;
                    assert!(
                        reply.status.as_u16() < 500 && reply.status != 429,
                        "{route} as {}: {} {}\n{}",
                        scope.key,
                        req.0,
                        req.1,
                        cut(&reply.text, 2000)
                    );
                    let sent = format!(
                        "{} {}",
                        req.1,
                        req.2.as_ref().map_or(String::new(), Value::to_string)
                    );
                    let found = leaks(scope, &sent, &reply.text);
                    assert!(
                        found.is_empty(),
                        "{route} (seed {seed}) as {}: the reply names {found:?}, outside the scope\nrequest: {sent}\nreply {}: {}",
                        scope.key,
                        reply.status,
                        cut(&reply.text, 2000)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "{checked} requests checked");
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fact's distinct-customer measure (the cube's `privacy` counts).
fn counter(measure: &str) -> &'static str {
    if BAL_MEASURES.contains(&measure) {
        "customers"
    } else {
        "active_customers"
    }
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
}

fn small(n: Option<i64>) -> bool {
    n.is_some_and(|n| n > 0 && n < MIN_CUSTOMERS)
}

/// What the suppressed principal gets for one request, held against the admin's answer.
async fn check_suppressed(w: &World, route: &str, req: &Request) -> Result<(), String> {
    let reply = send(&w.app, SUPPRESSED, req).await;
    let body = &reply.body;
    let fail = |what: String| Err(format!("{what}\nreply {}: {}", reply.status, reply.text));
    if reply.status.as_u16() >= 500 || reply.status == 429 {
        return fail("a server error, or a refusal by the rate limit that is off here".into());
    }
    if !reply.status.is_success() {
        return Ok(()); // refused: no value at all
    }
    match route {
        "/v1/cubes/{cube}/query" => {
            let mut q = req.2.clone().expect("a body");
            let measures: Vec<String> = q["measures"]
                .as_array()
                .expect("measures")
                .iter()
                .map(|m| m.as_str().expect("name").to_string())
                .collect();
            let count = counter(&measures[0]);
            q["measures"]
                .as_array_mut()
                .expect("measures")
                .push(json!(count));
            let admin = send(&w.app, ADMIN, &("POST", req.1.clone(), Some(q))).await;
            let levels = body["rows"]
                .as_array()
                .and_then(|r| r.first())
                .map_or(0, |_| {
                    body["columns"]
                        .as_array()
                        .expect("columns")
                        .iter()
                        .filter(|c| c["kind"] == "level")
                        .count()
                });
            let n = admin.body["columns"].as_array().map_or(0, Vec::len);
            let counts: BTreeMap<String, Option<i64>> = admin.body["rows"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        Value::from(r.as_array().expect("row")[..levels].to_vec()).to_string(),
                        int(&r[n - 1]),
                    )
                })
                .collect();
            for row in body["rows"].as_array().into_iter().flatten() {
                let row = row.as_array().expect("row");
                let key = Value::from(row[..levels].to_vec()).to_string();
                if small(counts.get(&key).copied().flatten())
                    && row[levels..].iter().any(|v| !v.is_null())
                {
                    return fail(format!(
                        "row {key} holds fewer than {MIN_CUSTOMERS} customers but shows values"
                    ));
                }
            }
        }
        "/v1/cubes/{cube}/drillthrough" => {
            let level = req.2.as_ref().expect("body")["level"]
                .as_str()
                .expect("level");
            if level == "customer.id" {
                for row in body["rows"].as_array().into_iter().flatten() {
                    if row.as_array().expect("row")[1..]
                        .iter()
                        .any(|v| !v.is_null())
                    {
                        return fail("one customer's values in a drill-through".into());
                    }
                }
            }
        }
        "/v1/cubes/{cube}/analytics/migration" => {
            let admin = send(&w.app, ADMIN, req).await;
            let key = |c: &Value| format!("{}>{}", c["from"], c["to"]);
            let members: BTreeMap<String, Option<i64>> = admin.body["cells"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| (key(c), int(&c["members"])))
                .collect();
            // A small transition is not even listed: it looks like an empty one.
            for c in body["cells"].as_array().into_iter().flatten() {
                if small(members.get(&key(c)).copied().flatten()) {
                    return fail(format!("transition {} of a few members is listed", key(c)));
                }
            }
        }
        "/v1/cubes/{cube}/analytics/migration/drill" => {
            for row in body["rows"].as_array().into_iter().flatten() {
                if row.as_array().expect("row")[1..]
                    .iter()
                    .any(|v| !v.is_null())
                {
                    return fail("one member's values in a migration drill".into());
                }
            }
        }
        "/v1/cubes/{cube}/analytics/performance" => {
            for row in body["rows"].as_array().into_iter().flatten() {
                let shown = row["values"]
                    .as_object()
                    .is_some_and(|v| v.values().any(|x| !x.is_null()));
                let customers = int(&row["customers"]);
                if shown && customers.is_none_or(|n| n < MIN_CUSTOMERS) {
                    return fail(format!("a row of {customers:?} customers shows values"));
                }
                let (new, lost) = (int(&row["new_customers"]), int(&row["lost_customers"]));
                if new.is_some() != lost.is_some() || small(new) || small(lost) {
                    return fail(format!("new {new:?} and lost {lost:?} customers"));
                }
            }
        }
        "/v1/cubes/{cube}/analytics/abnormal"
        | "/v1/cubes/{cube}/analytics/pareto"
        | "/v1/cubes/{cube}/bands/preview"
        | "/v1/cubes/{cube}/entities/{dimension}/{id}" => {
            return fail("single members' values answered under suppression".into());
        }
        "/v1/cubes/{cube}/searches/run" | "/v1/cubes/{cube}/searches/{name}/run" => {
            let count = int(&body["count"]);
            if count.is_some_and(|n| n < MIN_CUSTOMERS) && count != Some(0) {
                return fail(format!("a count of {count:?} customers"));
            }
            for row in body["rows"].as_array().into_iter().flatten() {
                if row.as_array().expect("row")[1..]
                    .iter()
                    .any(|v| !v.is_null())
                {
                    return fail("one customer's values in a search".into());
                }
            }
            let on_values = route.ends_with("searches/run")
                && req
                    .2
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("\"measure\""));
            if on_values && !body["rows"].as_array().is_none_or(Vec::is_empty) {
                return fail("the members of a condition on a value".into());
            }
        }
        "/cubejs-api/v1/load" | "/cubejs-api/v1/subscribe" => {
            // Each result row is one cell: its customers are the admin's count for it.
            let mut q = req.2.clone().expect("a body");
            let first = q["query"]["measures"][0]
                .as_str()
                .expect("measure")
                .to_string();
            let count = format!(
                "bank_crm.{}",
                counter(first.trim_start_matches("bank_crm."))
            );
            q["query"]["measures"]
                .as_array_mut()
                .expect("measures")
                .push(json!(count));
            let admin = send(&w.app, ADMIN, &("POST", req.1.clone(), Some(q.clone()))).await;
            let dims: Vec<&str> = q["query"]["dimensions"]
                .as_array()
                .expect("dimensions")
                .iter()
                .map(|d| d.as_str().expect("name"))
                .collect();
            let key = |r: &Value| {
                dims.iter()
                    .map(|d| r[*d].to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            };
            let counts: BTreeMap<String, Option<i64>> = admin.body["results"][0]["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    (
                        key(r),
                        r[&count]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .or_else(|| int(&r[&count])),
                    )
                })
                .collect();
            for r in body["results"][0]["data"].as_array().into_iter().flatten() {
                let shown = r
                    .as_object()
                    .expect("row")
                    .iter()
                    .any(|(k, v)| !dims.contains(&k.as_str()) && !v.is_null());
                if small(counts.get(&key(r)).copied().flatten()) && shown {
                    return fail(format!("Cube API row {} holds a few customers", key(r)));
                }
            }
        }
        // Routes that answer no cell's value: names, counts of members, documents.
        "/health"
        | "/metrics"
        | "/openapi.json"
        | "/v1/cubes"
        | "/v1/cubes/{cube}"
        | "/v1/cubes/{cube}/members/{dimension}/{level}"
        | "/v1/cubes/{cube}/definition"
        | "/v1/cubes/{cube}/definition/validate"
        | "/v1/cubes/{cube}/refresh"
        | "/v1/cubes/{cube}/searches"
        | "/v1/cubes/{cube}/searches/{name}"
        | "/cubejs-api/v1/meta"
        | "/cubejs-api/v1/dry-run" => {}
        other => return fail(format!("no suppression check for route {other}; add one")),
    }
    Ok(())
}

/// Small-cell suppression on every route that answers values, for random requests.
#[tokio::test]
async fn no_route_shows_a_suppressed_role_a_small_cell() {
    let w = world().await;
    for route in every_route() {
        for seed in seeds() {
            let mut rng = Rng::new(seed ^ fnv(route) ^ 0x5eed);
            for req in probes(w, &mut rng, route).expect("every route has a probe") {
                if let Err(e) = check_suppressed(w, route, &req).await {
                    panic!(
                        "{route} (seed {seed}): {e}\nrequest: {} {} {}",
                        req.0,
                        req.1,
                        req.2.as_ref().map_or(String::new(), Value::to_string)
                    );
                }
            }
        }
    }
}

// Regressions of the findings, one by one.

fn scope_of(w: &'static World, key: &str) -> &'static Scope {
    w.scopes.iter().find(|s| s.key == key).expect("a scope")
}

/// Finding 1: the Cube API expanded `contains` and friends over every member, so a dry-run
/// listed other managers, ten calls listed every customer id, and `/load` named outside
/// members in its error.
#[tokio::test]
async fn cube_api_filters_expand_over_the_principal_s_members_only() {
    let w = world().await;
    let manager = scope_of(w, MANAGER);
    let analyst = scope_of(w, ANALYST);
    let filter = |member: &str, op: &str, value: &str| {
        json!({"query": {"measures": ["bank_crm.txn_amount"],
                         "filters": [{"member": member, "operator": op, "values": [value]}]}})
    };
    // Every id a manager can reach through the digits of a dry-run is its own customer's.
    let mut ids = BTreeSet::new();
    for digit in 0..10 {
        let body = filter("bank_crm.customer_id", "contains", &digit.to_string());
        let r = w
            .app
            .as_(MANAGER, "POST", "/cubejs-api/v1/dry-run", Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        for f in r.body["nativeQueries"][0]["filters"]
            .as_array()
            .expect("filters")
        {
            for v in f["values"].as_array().into_iter().flatten() {
                ids.insert(v.as_str().expect("a name").to_string());
            }
        }
    }
    assert!(!ids.is_empty(), "the manager's own ids are listed");
    let outside: Vec<&String> = ids
        .iter()
        .filter(|i| !manager.allowed.contains(*i))
        .collect();
    assert!(
        outside.is_empty(),
        "ids outside the manager's scope: {outside:?}"
    );

    // Pieces of other managers' names, through dry-run and load.
    let others: Vec<&String> = w.names.all["manager.manager"]
        .iter()
        .filter(|n| manager.forbidden.contains(*n))
        .take(5)
        .collect();
    for other in others {
        let piece = other.split(' ').nth(1).unwrap_or(other);
        let body = filter("bank_crm.manager_manager", "contains", piece);
        for route in ["/cubejs-api/v1/dry-run", "/cubejs-api/v1/load"] {
            let r = w.app.as_(MANAGER, "POST", route, Some(&body)).await;
            assert!(r.status.as_u16() < 500, "{route}: {}", r.text);
            let found = leaks(manager, &body.to_string(), &r.text);
            assert!(
                found.is_empty(),
                "{route} '{piece}': {found:?} in {}",
                r.text
            );
        }
    }

    // A province analyst gets only its provinces' cities, whatever the letter.
    for letter in ["z", "a", "g", "n"] {
        let body = filter("bank_crm.region_city", "contains", letter);
        let r = w
            .app
            .as_(ANALYST, "POST", "/cubejs-api/v1/dry-run", Some(&body))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let found = leaks(analyst, &body.to_string(), &r.text);
        assert!(found.is_empty(), "cities outside the provinces: {found:?}");
    }
}

/// Finding 2: the migration drill paged out each customer's own values to a role under
/// small-cell suppression.
#[tokio::test]
async fn the_migration_drill_withholds_one_customer_s_values_under_suppression() {
    let w = world().await;
    let mut shown_to_admin = 0;
    for measure in [
        "deposit_balance",
        "loan_balance",
        "fee_income",
        "txn_amount",
    ] {
        for (from, to) in [
            ("10k-50k", "<10k"),
            ("<10k", "<10k"),
            ("50k-200k", "50k-200k"),
        ] {
            let body = json!({"migration": {"band": "customer.deposit_band", "entity": "customer.id",
                "level": "time.quarter", "from": "2025-Q1", "to": "2025-Q2", "measures": [measure]},
                "from_band": from, "to_band": to, "limit": 20});
            let route = "/v1/cubes/bank_crm/analytics/migration/drill";
            let admin = w.app.as_(ADMIN, "POST", route, Some(&body)).await;
            assert_eq!(admin.status, 200, "{}", admin.text);
            shown_to_admin += admin.body["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .filter(|r| r.as_array().expect("row")[1..].iter().any(|v| !v.is_null()))
                .count();
            for key in [ANALYST, SUPPRESSED] {
                let r = w.app.as_(key, "POST", route, Some(&body)).await;
                assert_eq!(r.status, 200, "{}", r.text);
                for row in r.body["rows"].as_array().expect("rows") {
                    let row = row.as_array().expect("row");
                    assert!(
                        row[1..].iter().all(Value::is_null),
                        "{key} reads one customer's {measure}: {row:?}"
                    );
                }
                if !r.body["rows"].as_array().expect("rows").is_empty() {
                    assert_eq!(r.body["values_suppressed"], true, "{}", r.text);
                }
            }
        }
    }
    assert!(
        shown_to_admin > 0,
        "the admin reads the values the others may not"
    );
}

/// Finding 6: a scoped answer said how many cells the whole cube's cuboid holds.
#[tokio::test]
async fn scoped_answers_carry_no_cube_wide_statistics() {
    let w = world().await;
    let empty = json!({"measures": ["txn_amount"], "rows": ["time.month"], "explain": true});
    let admin = w.app.query_as(ADMIN, &empty).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    assert!(
        admin.body["meta"]["facts"][0]["cells"].is_u64(),
        "the admin sees the cuboid's size: {}",
        admin.text
    );
    let performance = json!({"level": "manager.manager", "period": "time.month",
        "from": "2025-01", "to": "2025-03", "measures": ["fee_income"]});
    for key in [MANAGER, ANALYST, SUPPRESSED] {
        let r = w.app.query_as(key, &empty).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let r2 = w
            .app
            .as_(
                key,
                "POST",
                "/v1/cubes/bank_crm/analytics/performance",
                Some(&performance),
            )
            .await;
        assert_eq!(r2.status, 200, "{}", r2.text);
        for reply in [&r, &r2] {
            for fact in reply.body["meta"]["facts"].as_array().expect("facts") {
                assert!(fact.get("cells").is_none(), "{key}: {fact}");
                for c in fact["explain"]["candidates"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert!(c.get("cells").is_none(), "{key}: {c}");
                }
            }
        }
    }
}

// Found by probing the server as an attacker would, after the findings above were closed.

/// A search's member list answered "is this customer's balance over X?" to a role under
/// suppression, and a few thresholds found the balance: a condition on a measure's value lists
/// no members for such a role, only the count.
#[tokio::test]
async fn a_search_on_a_value_lists_no_members_under_suppression() {
    let w = world().await;
    let body = json!({"search": {"name": "rich", "entity": "customer.id",
        "where": {"measure": "deposit_balance", "op": "gt", "value": 10000,
                  "period": {"level": "time.month", "value": "2025-06"}}},
        "limit": 1000});
    let route = "/v1/cubes/bank_crm/searches/run";
    let admin = w.app.as_(ADMIN, "POST", route, Some(&body)).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let count = admin.body["count"].as_i64().expect("a count");
    assert!(count >= MIN_CUSTOMERS, "a large search: {count}");
    assert_eq!(
        admin.body["rows"].as_array().expect("rows").len() as i64,
        count
    );
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["count"], count, "{}", r.text);
    assert_eq!(r.body["rows"], json!([]), "{}", r.text);
    assert_eq!(r.body["members_withheld"], true, "{}", r.text);
    // A condition on members alone lists them, as drill-through lists a large cell's.
    let bands = json!({"search": {"name": "bands", "entity": "customer.id",
        "where": {"level": "customer.deposit_band", "op": "in", "values": ["50k-200k", "200k-1M"],
                  "period": {"level": "time.month", "value": "2025-06"}}}});
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&bands)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !r.body["rows"].as_array().expect("rows").is_empty(),
        "{}",
        r.text
    );
}

/// A manager's customers this month and last are shown, so `new - lost` is known: one of
/// them withheld beside the other shown gave it away. Both are shown, or neither.
#[tokio::test]
async fn new_and_lost_customers_are_withheld_together() {
    let w = world().await;
    let body = json!({"level": "manager.manager", "period": "time.month",
        "from": "2024-01", "to": "2025-12", "measures": ["fee_income"], "limit": 100000});
    let route = "/v1/cubes/bank_crm/analytics/performance";
    let admin = w.app.as_(ADMIN, "POST", route, Some(&body)).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let small_moves = admin.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| small(int(&r["new_customers"])) != small(int(&r["lost_customers"])))
        .count();
    assert!(
        small_moves > 0,
        "some month has one small move and not the other"
    );
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for row in r.body["rows"].as_array().expect("rows") {
        let (new, lost) = (int(&row["new_customers"]), int(&row["lost_customers"]));
        assert_eq!(
            new.is_some(),
            lost.is_some(),
            "one of new/lost shown: {row}"
        );
        assert!(!small(new) && !small(lost), "a small move shown: {row}");
    }
}

/// The fallback's SQL names members by their codes in the whole cube, whose gaps count the
/// members a scope hides: a restricted principal's explain leaves it out.
#[tokio::test]
async fn a_restricted_explain_shows_no_sql() {
    let w = world().await;
    let q = json!({"measures": ["txn_amount"], "rows": ["customer.segment"], "explain": true,
        "filters": [{"level": "region.city", "op": "not_in", "values": ["Hangzhou"]}]});
    let admin = w.app.query_as(ADMIN, &q).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    assert_eq!(admin.body["meta"]["source"], "fallback", "{}", admin.text);
    assert!(admin.body["meta"]["facts"][0]["explain"]["sql"].is_string());
    for key in [MANAGER, ANALYST, SUPPRESSED] {
        let r = w.app.query_as(key, &q).await;
        assert!(r.status.as_u16() < 500, "{}", r.text);
        for fact in r.body["meta"]["facts"].as_array().into_iter().flatten() {
            assert!(fact["explain"].get("sql").is_none(), "{key}: {fact}");
            assert!(fact["explain"]["reason"].is_string(), "{key}: {fact}");
        }
    }
}

// Found by probing the fixed server a second time.

/// Grouping by `customer.id` listed the customers behind every small cell (with their bands as
/// more row levels), and a short id list asked whether one customer was in a segment: a role
/// under suppression may do neither, on the query route or the Cube API.
#[tokio::test]
async fn a_suppressed_role_may_not_group_or_pick_single_customers() {
    let w = world().await;
    let grouped = json!({"measures": ["customers"],
        "rows": ["customer.id", "customer.deposit_band"],
        "filters": [{"level": "time.month", "op": "eq", "value": "2025-06"}]});
    let public = public_names();
    for key in [ANALYST, SUPPRESSED] {
        // Two of the principal's own customers.
        let ids: Vec<&String> = scope_of(w, ANALYST)
            .allowed
            .iter()
            .filter(|n| {
                !public.contains(*n)
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && w.names.all["customer.id"].contains(n)
            })
            .take(2)
            .collect();
        let picked = json!({"measures": ["txn_amount"], "rows": ["customer.deposit_band"],
            "filters": [{"level": "customer.id", "op": "in", "values": ids}]});
        for q in [&grouped, &picked] {
            let r = w.app.query_as(key, q).await;
            assert_eq!(r.status, 403, "{key}: {}", r.text);
            assert!(r.text.contains("customer.id"), "{}", r.text);
        }
        let cube = json!({"query": {"measures": ["bank_crm.customers"],
            "dimensions": ["bank_crm.customer_id"]}});
        let r = w
            .app
            .as_(key, "POST", "/cubejs-api/v1/load", Some(&cube))
            .await;
        assert_eq!(r.status, 403, "{key}: {}", r.text);
    }
    // Drill-through still lists a large cell's customers, and others may still group by them.
    let r = w.app.query_as(MANAGER, &grouped).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let drill = json!({"level": "customer.id",
        "filters": [{"level": "time.month", "op": "eq", "value": "2025-06"}], "limit": 10});
    let r = w
        .app
        .as_(
            SUPPRESSED,
            "POST",
            "/v1/cubes/bank_crm/drillthrough",
            Some(&drill),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        !r.body["rows"].as_array().expect("rows").is_empty(),
        "{}",
        r.text
    );
}

/// A search on a measure's value lists no members to a suppressed role, but as a query's
/// segment it filtered rows by customer, and moving the threshold found one balance: such a
/// search cannot be a suppressed role's segment.
#[tokio::test]
async fn a_search_on_a_value_is_no_segment_under_suppression() {
    let w = world().await;
    let name = "route_rich";
    let doc = json!({"name": name, "entity": "customer.id",
        "where": {"measure": "deposit_balance", "op": "gt", "value": 10000,
                  "period": {"level": "time.month", "value": "2025-06"}}});
    let path = format!("/v1/cubes/bank_crm/searches/{name}");
    let r = w.app.as_(SUPPRESSED, "PUT", &path, Some(&doc)).await;
    assert!(r.status.is_success(), "{}", r.text);
    let q = json!({"measures": ["txn_amount"], "rows": ["region.city"], "segments": [name]});
    let r = w.app.query_as(SUPPRESSED, &q).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains(name), "{}", r.text);
    let r = w.app.as_(SUPPRESSED, "DELETE", &path, None).await;
    assert!(r.status.is_success(), "{}", r.text);
}

/// Performance showed the customers and the high-value customers side by side, so when the
/// others were few their withheld count was a subtraction away: both must be large to show.
#[tokio::test]
async fn high_value_customers_show_only_when_the_others_are_many_too() {
    let w = world().await;
    let body = json!({"level": "manager.manager", "period": "time.month",
        "from": "2025-01", "to": "2025-12", "measures": ["fee_income"],
        "high_value": {"level": "customer.txn_amount_band",
                       "members": ["<1k", "1k-10k", "10k-50k", "50k-200k", "unknown"]},
        "limit": 100000});
    let route = "/v1/cubes/bank_crm/analytics/performance";
    let admin = w.app.as_(ADMIN, "POST", route, Some(&body)).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let others_few = |r: &Value| {
        let (n, h) = (int(&r["customers"]), int(&r["high_value_customers"]));
        small(n.zip(h).map(|(n, h)| n - h))
    };
    let rows = admin.body["rows"].as_array().expect("rows");
    assert!(rows.iter().any(others_few), "some manager has few others");
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for row in r.body["rows"].as_array().expect("rows") {
        assert!(
            !others_few(row),
            "the others' small count is a subtraction away: {row}"
        );
    }
}

// Found by probing a third time.

/// Filters that pin one customer by attributes (manager, segment, age band, education) and
/// rows by product listed, row by row, what that customer holds, every value null: a row
/// that shows nothing because of suppression is now left out, as an empty one is. And a
/// small transition of a migration answers as an empty one.
#[tokio::test]
async fn a_small_cell_looks_like_an_empty_one_under_suppression() {
    let w = world().await;
    let levels = [
        "manager.manager",
        "customer.segment",
        "customer.age_band",
        "customer.education",
    ];
    let by = json!({"measures": ["customers"], "rows": levels, "limit": 100000});
    let admin = w.app.query_as(ADMIN, &by).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let one = admin.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r[4] == 1)
        .expect("some combination pins one customer")
        .clone();
    let filters: Vec<Value> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| json!({"level": l, "op": "eq", "value": one[i]}))
        .collect();
    let q = json!({"measures": ["customers"], "rows": ["product.product"], "filters": filters});
    let admin = w.app.query_as(ADMIN, &q).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    assert!(!admin.body["rows"].as_array().expect("rows").is_empty());
    let r = w.app.query_as(SUPPRESSED, &q).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["rows"], json!([]), "{}", r.text);
    assert_eq!(r.body["meta"]["total_rows"], 0, "{}", r.text);

    // Drill-through of that one customer's cell: no one, and nothing that says why.
    let drill = json!({"level": "customer.id", "filters": filters});
    let route = "/v1/cubes/bank_crm/drillthrough";
    let admin = w.app.as_(ADMIN, "POST", route, Some(&drill)).await;
    assert_eq!(admin.body["total"], 1, "{}", admin.text);
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&drill)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (&r.body["total"], &r.body["rows"]),
        (&json!(0), &json!([])),
        "{}",
        r.text
    );
    assert!(r.body.get("suppressed").is_none(), "{}", r.text);

    // The same customer's loan-band transition: one member, answered as no one.
    let migration = json!({"band": "customer.loan_band", "entity": "customer.id",
        "level": "time.quarter", "from": "2024-Q1", "to": "2025-Q4", "filters": filters});
    let route = "/v1/cubes/bank_crm/analytics/migration";
    let admin = w.app.as_(ADMIN, "POST", route, Some(&migration)).await;
    assert_eq!(admin.status, 200, "{}", admin.text);
    let cell = admin.body["cells"][0].clone();
    assert_eq!(cell["members"], 1, "{}", admin.text);
    let r = w.app.as_(SUPPRESSED, "POST", route, Some(&migration)).await;
    assert_eq!(r.body["cells"], json!([]), "{}", r.text);
    let drill = |from: &Value, to: &Value| json!({"migration": migration, "from_band": from, "to_band": to});
    let route = "/v1/cubes/bank_crm/analytics/migration/drill";
    let small = w
        .app
        .as_(
            SUPPRESSED,
            "POST",
            route,
            Some(&drill(&cell["from"], &cell["to"])),
        )
        .await;
    let empty = w
        .app
        .as_(
            SUPPRESSED,
            "POST",
            route,
            Some(&drill(&json!("2M+"), &json!("2M+"))),
        )
        .await;
    assert_eq!(small.status, 200, "{}", small.text);
    let strip = |b: &Value| {
        let mut b = b.clone();
        b["meta"] = Value::Null;
        b["from_band"] = Value::Null;
        b["to_band"] = Value::Null;
        b
    };
    assert_eq!(
        strip(&small.body),
        strip(&empty.body),
        "{}\n{}",
        small.text,
        empty.text
    );
}
