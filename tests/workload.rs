//! The random workload shared by the property tests (`tests/it/query_props.rs`), the workload
//! bench (`benches/workload.rs`) and `examples/dump_workload.rs`: random queries over the default
//! cube, the SQL twin of a grouped question written from the semantics
//! (`engine/src/query/mod.rs`) over the raw tables, and [`bi_question`], a question drawn the
//! way a BI front end draws one. Included with `#[path]`; not every includer uses every item.

#![allow(dead_code)]

use std::fmt::Write as _;

use lattice_defs::Model;
use lattice_defs::model::{LevelKind, LevelRef};
use lattice_engine::query::Query;
use lattice_engine::store::Cube;
use serde_json::{Value as Json, json};

/// SplitMix64: the choices of one case, from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `p` percent.
    pub fn chance(&mut self, p: u64) -> bool {
        self.next_u64() % 100 < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

pub fn is_ordered(model: &Model, l: LevelRef) -> bool {
    matches!(
        model.dimensions[l.dim].levels[l.level].kind,
        LevelKind::Time(_) | LevelKind::Bucket(_)
    )
}

/// A random query over `cube`: valid by construction except that a measure may meet a level
/// it does not vary by.
pub fn random_query(cube: &Cube, rng: &mut Rng) -> Json {
    let model = cube.model();
    let levels: Vec<String> = model
        .level_names()
        .into_iter()
        .filter(|l| l != "customer.id")
        .collect();
    let measures: Vec<&str> = model.measures.iter().map(|m| m.name.as_str()).collect();
    let members =
        |name: &str| -> &[String] { &cube.members(model.level(name).expect("level")).names };

    let mut chosen: Vec<&str> = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let m = *rng.pick(&measures);
        if !chosen.contains(&m) {
            chosen.push(m);
        }
    }
    let mut grouped: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for _ in 0..rng.below(3) {
        let l = rng.pick(&levels).clone();
        if !grouped.contains(&l) {
            grouped.push(l.clone());
            rows.push(l);
        }
    }
    let mut columns = Vec::new();
    if rng.chance(20) {
        let l = rng.pick(&levels).clone();
        if !grouped.contains(&l) {
            grouped.push(l.clone());
            columns.push(l);
        }
    }

    // Mostly zero to two filters: random members soon leave nothing.
    let n_filters = *rng.pick(&[0, 0, 0, 1, 1, 1, 1, 2, 2, 3]);
    let mut filters = Vec::new();
    for _ in 0..n_filters {
        // Now and then a filter on customers themselves.
        let name = if rng.chance(10) {
            "customer.id".to_string()
        } else {
            rng.pick(&levels).clone()
        };
        let names = members(&name);
        let l = model.level(&name).expect("level");
        let some = |n: usize, rng: &mut Rng| -> Vec<String> {
            (0..n).map(|_| rng.pick(names).clone()).collect()
        };
        let filter = match rng.below(6) {
            0 => json!({"level": name, "op": "eq", "value": some(1, rng)[0]}),
            1 => json!({"level": name, "op": "in", "values": some(1 + rng.below(3), rng)}),
            2 => json!({"level": name, "op": "not_in", "values": some(1 + rng.below(2), rng)}),
            3 if is_ordered(model, l) => {
                let (a, b) = (rng.below(names.len()), rng.below(names.len()));
                json!({"level": name, "op": "between",
                       "values": [names[a.min(b)].clone(), names[a.max(b)].clone()]})
            }
            4 => {
                let m = rng.pick(names);
                let cut = m
                    .chars()
                    .take(1 + rng.below(m.chars().count()))
                    .collect::<String>();
                json!({"level": name, "op": "prefix", "value": cut})
            }
            _ => {
                let m: Vec<char> = rng.pick(names).chars().collect();
                let start = rng.below(m.len());
                let part: String = m[start..start + 1 + rng.below(m.len() - start)]
                    .iter()
                    .collect();
                let part = if rng.chance(50) {
                    part.to_uppercase()
                } else {
                    part
                };
                json!({"level": name, "op": "search", "value": part})
            }
        };
        filters.push(filter);
    }

    let mut q = json!({"measures": chosen, "rows": rows, "columns": columns, "filters": filters});
    if rng.chance(25) {
        let thresholds = [0.0, 5.0, 100.0, 1000.0, 100_000.0, 10_000_000.0];
        let ops = ["gt", "ge", "lt", "le", "eq", "ne"];
        q["having"] = json!([{"measure": rng.pick(&chosen), "op": rng.pick(&ops),
                              "value": rng.pick(&thresholds)}]);
    }
    if rng.chance(30) {
        let mut keys: Vec<&str> = chosen.clone();
        keys.extend(
            q["rows"]
                .as_array()
                .expect("rows")
                .iter()
                .filter_map(Json::as_str),
        );
        let by = rng.pick(&keys).to_string();
        let dir = if rng.chance(50) { "asc" } else { "desc" };
        q["order"] = json!([{"by": by, "dir": dir}]);
    }
    if rng.chance(25) {
        q["limit"] = json!(rng.below(8));
    }
    if rng.chance(15) {
        q["offset"] = json!(rng.below(5));
    }
    if rng.chance(20) {
        q["totals"] = json!(true);
    }
    if rng.chance(10) {
        q["explain"] = json!(true);
    }
    if rng.chance(25) {
        let mut ordered: Vec<String> = grouped
            .iter()
            .filter(|l| is_ordered(model, model.level(l).expect("level")))
            .cloned()
            .collect();
        if ordered.is_empty() {
            // Compare needs an ordered level on rows or columns: add a time level.
            let time = rng
                .pick(&["time.year", "time.quarter", "time.month"])
                .to_string();
            q["rows"].as_array_mut().expect("rows").push(json!(time));
            ordered.push(time);
        }
        q["compare"] = json!({"level": rng.pick(&ordered), "lag": 1 + rng.below(12)});
    }
    q
}

// ---- SQL written from the semantics ----

/// A fact table's columns the SQL reads.
pub struct FactSql {
    pub table: &'static str,
    pub date: &'static str,
}

pub fn fact_sql(name: &str) -> FactSql {
    match name {
        "transactions" => FactSql {
            table: "transactions",
            date: "f.txn_date",
        },
        "balances" => FactSql {
            table: "balances",
            date: "f.month",
        },
        // The table the allocation computed (registered by the engine's load; its split is
        // held to SQL in `crate::allocation`): here it is read like any fact.
        "branch_cost" => FactSql {
            table: "branch_cost",
            date: "f.month",
        },
        other => panic!("no SQL for fact {other}"),
    }
}

/// A CASE over `value` cutting bands at `edges`, left-closed. The values are cents and the
/// edges have at most two decimals, so doubles keep their order exactly (and DataFusion 55
/// fails comparing a COALESCEd decimal with a decimal literal of another precision).
pub fn bands(value: &str, edges: &[&str], labels: &[&str]) -> String {
    let mut s = "CASE".to_string();
    for (e, l) in edges.iter().zip(labels) {
        write!(s, " WHEN CAST({value} AS DOUBLE) < {e} THEN '{l}'").unwrap();
    }
    write!(s, " ELSE '{}' END", labels[labels.len() - 1]).unwrap();
    s
}

/// The member of `level` for a fact row of `f` (joined as in [`from_clause`]).
pub fn member_sql(level: &str, date: &str) -> String {
    let quarter = format!(
        "to_char({date}, '%Y') || '-Q' || CAST(CAST(date_part('quarter', {date}) AS BIGINT) AS VARCHAR)"
    );
    let expr = match level {
        "time.year" => format!("to_char({date}, '%Y')"),
        "time.quarter" => quarter,
        "time.month" => format!("to_char({date}, '%Y-%m')"),
        "customer.type" => "c.customer_type".into(),
        "customer.segment" => "c.segment".into(),
        "customer.education" => "c.education".into(),
        "customer.id" => "CAST(c.customer_id AS VARCHAR)".into(),
        "customer.age_band" => format!(
            "CASE WHEN c.age IS NULL THEN NULL ELSE {} END",
            bands(
                "c.age",
                &["25", "35", "45", "55", "65"],
                &["<25", "25-34", "35-44", "45-54", "55-64", "65+"]
            )
        ),
        "customer.income_band" => format!(
            "CASE WHEN c.monthly_income IS NULL THEN NULL ELSE {} END",
            bands(
                "c.monthly_income",
                &["3000", "8000", "15000", "30000", "80000"],
                &["<3k", "3k-8k", "8k-15k", "15k-30k", "30k-80k", "80k+"]
            )
        ),
        "customer.deposit_band" => bands(
            "COALESCE(bx.deposit, 0)",
            &["10000", "50000", "200000", "1000000"],
            &["<10k", "10k-50k", "50k-200k", "200k-1M", "1M+"],
        ),
        "customer.loan_band" => bands(
            "COALESCE(bx.loan, 0)",
            &["0.01", "100000", "500000", "2000000"],
            &["none", "<100k", "100k-500k", "500k-2M", "2M+"],
        ),
        "customer.credit_line_band" => bands(
            "COALESCE(bx.line, 0)",
            &["0.01", "10000", "50000", "200000"],
            &["none", "<10k", "10k-50k", "50k-200k", "200k+"],
        ),
        "customer.products_band" => bands(
            "COALESCE(bx.held, 0)",
            &["1", "2", "3", "5"],
            &["0", "1", "2", "3-4", "5+"],
        ),
        "customer.txn_amount_band" => bands(
            "COALESCE(tx.amount, 0)",
            &["1000", "10000", "50000", "200000"],
            &["<1k", "1k-10k", "10k-50k", "50k-200k", "200k+"],
        ),
        "customer.txn_count_band" => bands(
            "COALESCE(tx.n, 0)",
            &["1", "5", "20", "50"],
            &["0", "1-4", "5-19", "20-49", "50+"],
        ),
        // Ranked within the year among the customers with fees in it (`vc`).
        "customer.value_class" => "CASE WHEN vc.cd IS NULL THEN NULL WHEN vc.cd > 0.95 THEN 'A' \
             WHEN vc.cd > 0.8 THEN 'B' ELSE 'C' END"
            .into(),
        "region.province" => "r.province".into(),
        "region.city" => "r.city".into(),
        "region.branch" => "r.branch".into(),
        "manager.branch" => "mr.branch".into(),
        "manager.manager" => "m.manager_name".into(),
        "product.category" => "p.category".into(),
        "product.product" => "p.product_name".into(),
        "channel.channel" => "ch.channel".into(),
        other => panic!("no SQL for level {other}"),
    };
    format!("COALESCE({expr}, 'unknown')")
}

/// The fact `f` with everything its members come from; per-month metrics of the customer in
/// `tx` (transactions) and `bx` (balances), and their yearly value class in `vc`, joined only
/// where one of `levels` needs them (each is one row per customer and period, so a join no
/// member reads changes nothing but the cost).
pub fn from_clause(fact: &str, levels: &[&str]) -> String {
    let FactSql { table, date } = fact_sql(fact);
    let mut from = format!(
        "{table} AS f
         LEFT JOIN customers c ON c.customer_id = f.customer_id
         LEFT JOIN regions r ON r.region_id = c.region_id
         LEFT JOIN managers m ON m.manager_id = c.manager_id
         LEFT JOIN regions mr ON mr.region_id = m.region_id
         LEFT JOIN products p ON p.product_id = f.product_id"
    );
    let [tx, bx, vc] = metrics_needed(levels);
    if tx {
        write!(from, " LEFT JOIN tx ON tx.customer_id = c.customer_id AND tx.period = date_trunc('month', {date})").unwrap();
    }
    if bx {
        write!(from, " LEFT JOIN bx ON bx.customer_id = c.customer_id AND bx.period = date_trunc('month', {date})").unwrap();
    }
    if vc {
        write!(
            from,
            " LEFT JOIN vc ON vc.customer_id = c.customer_id AND vc.y = date_part('year', {date})"
        )
        .unwrap();
    }
    if fact == "transactions" {
        from.push_str(" LEFT JOIN channels ch ON ch.channel_id = f.channel_id");
    }
    from
}

/// Whether `levels` read the customer's per-month transactions (`tx`), balances (`bx`), or
/// yearly value class (`vc`).
fn metrics_needed(levels: &[&str]) -> [bool; 3] {
    let any = |names: &[&str]| levels.iter().any(|l| names.contains(l));
    [
        any(&["customer.txn_amount_band", "customer.txn_count_band"]),
        any(&[
            "customer.deposit_band",
            "customer.loan_band",
            "customer.credit_line_band",
            "customer.products_band",
        ]),
        any(&["customer.value_class"]),
    ]
}

/// The common table expressions `levels` need ([`METRICS`]), each followed by a comma.
fn metrics_sql(levels: &[&str]) -> String {
    metrics_needed(levels)
        .into_iter()
        .zip(METRICS)
        .filter(|(needed, _)| *needed)
        .map(|(_, cte)| format!("{cte},\n"))
        .collect()
}

/// The customer's metrics per month of transactions (`tx`) and of balances (`bx`), and its
/// value class per year (`vc`), as the bands and the value class read them.
pub const METRICS: [&str; 3] = [
    "tx AS (SELECT customer_id, date_trunc('month', txn_date) AS period,
        SUM(amount) AS amount, COUNT(*) AS n FROM transactions GROUP BY 1, 2)",
    "bx AS (SELECT customer_id, date_trunc('month', month) AS period,
        SUM(deposit_balance) AS deposit, SUM(loan_balance) AS loan, SUM(credit_line) AS line,
        COUNT(DISTINCT product_id) AS held FROM balances GROUP BY 1, 2)",
    "vc AS (SELECT customer_id, y, CUME_DIST() OVER (PARTITION BY y ORDER BY v) AS cd
        FROM (SELECT c0.customer_id, date_part('year', t.txn_date) AS y, SUM(t.fee_income) AS v
              FROM transactions t JOIN customers c0 ON c0.customer_id = t.customer_id
              WHERE t.txn_date IS NOT NULL GROUP BY 1, 2)
        WHERE v IS NOT NULL)",
];

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The SQL condition of one filter on `member` (the member's SQL).
pub fn filter_sql(model: &Model, f: &lattice_engine::query::Filter, member: &str) -> String {
    use lattice_engine::query::FilterOp;
    let list = |vs: &[String]| vs.iter().map(|v| quote(v)).collect::<Vec<_>>().join(", ");
    let values = f.values.clone().unwrap_or_default();
    match f.op {
        FilterOp::Eq => format!("{member} = {}", quote(f.value.as_deref().unwrap_or(""))),
        FilterOp::In => format!("{member} IN ({})", list(&values)),
        FilterOp::NotIn => format!("{member} NOT IN ({})", list(&values)),
        FilterOp::Prefix => format!(
            "starts_with({member}, {})",
            quote(f.value.as_deref().unwrap_or(""))
        ),
        FilterOp::Search => format!(
            "contains(lower({member}), lower({}))",
            quote(f.value.as_deref().unwrap_or(""))
        ),
        FilterOp::Between => {
            let l = model.level(&f.level).expect("level");
            match &model.dimensions[l.dim].levels[l.level].kind {
                // Time members sort as text (`unknown` after every period).
                LevelKind::Time(_) => format!(
                    "{member} BETWEEN {} AND {}",
                    quote(&values[0]),
                    quote(&values[1])
                ),
                // Bands by their position, `unknown` after the last.
                LevelKind::Bucket(b) => {
                    let mut rank = format!("CASE {member}");
                    for (i, label) in b.labels.iter().enumerate() {
                        write!(rank, " WHEN {} THEN {i}", quote(label)).unwrap();
                    }
                    write!(rank, " ELSE {} END", b.labels.len()).unwrap();
                    let at = |v: &str| {
                        b.labels
                            .iter()
                            .position(|x| x == v)
                            .unwrap_or(b.labels.len())
                    };
                    format!("{rank} BETWEEN {} AND {}", at(&values[0]), at(&values[1]))
                }
                LevelKind::Column(_) => panic!("between on an unordered level"),
            }
        }
    }
}

/// One fact's part of the answer: the grouped members `g0..`, then each of `outputs` (a
/// column name and its aggregate over this fact's rows).
pub fn fact_query(model: &Model, q: &Query, fact: &str, outputs: &[(String, String)]) -> String {
    let FactSql { date, .. } = fact_sql(fact);
    let members: Vec<String> = q.rows.iter().map(|l| member_sql(l, date)).collect();
    let conditions: Vec<String> = q
        .filters
        .iter()
        .map(|f| filter_sql(model, f, &member_sql(&f.level, date)))
        .collect();
    // Balances close on the latest month of the finest grouped time member that passes the
    // time filters (the other filters do not move it).
    let finest_time = ["time.month", "time.quarter", "time.year"]
        .into_iter()
        .find(|t| q.rows.iter().any(|l| l == t));
    let time_member = finest_time.map_or("''".into(), |t| member_sql(t, date));
    let time_filters: Vec<&String> = q
        .filters
        .iter()
        .zip(&conditions)
        .filter(|(f, _)| f.level.starts_with("time."))
        .map(|(_, c)| c)
        .collect();
    let mut select: Vec<String> = members
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{m} AS g{i}"))
        .collect();
    for (name, expr) in outputs {
        select.push(format!("{expr} AS {name}"));
    }
    let levels: Vec<&str> = q
        .rows
        .iter()
        .chain(q.filters.iter().map(|f| &f.level))
        .map(String::as_str)
        .collect();
    let (with, from) = (metrics_sql(&levels), from_clause(fact, &levels));
    let mut sql = if fact == "balances" {
        let time_where = if time_filters.is_empty() {
            String::new()
        } else {
            let c: Vec<&str> = time_filters.iter().map(|c| c.as_str()).collect();
            format!("WHERE {}", c.join(" AND "))
        };
        // The closing month reads only time members: the fact's own date.
        format!(
            "WITH {with}
             closing AS (SELECT {time_member} AS tm, MAX(date_trunc('month', {date})) AS cp
                         FROM {} {time_where} GROUP BY 1)
             SELECT {} FROM {from} LEFT JOIN closing ON closing.tm = {time_member}",
            from_clause(fact, &[]),
            select.join(", "),
        )
    } else if with.is_empty() {
        format!("SELECT {} FROM {from}", select.join(", "))
    } else {
        let with = with.trim_end().trim_end_matches(',');
        format!("WITH {with} SELECT {} FROM {from}", select.join(", "))
    };
    if !conditions.is_empty() {
        write!(sql, " WHERE {}", conditions.join(" AND ")).unwrap();
    }
    if !members.is_empty() {
        let groups: Vec<String> = (0..members.len()).map(|i| format!("g{i}")).collect();
        write!(sql, " GROUP BY {}", groups.join(", ")).unwrap();
    }
    sql
}

/// A measure's fact and its SQL over the fact's rows `f` (balances: `closing.cp` is the
/// closing month of the row's group).
pub fn measure_sql(measure: &str) -> (&'static str, String) {
    let last = |column: &str| {
        format!("SUM(CASE WHEN date_trunc('month', f.month) = closing.cp THEN f.{column} END)")
    };
    match measure {
        "txn_amount" => ("transactions", "SUM(f.amount)".into()),
        "txn_count" => ("transactions", "COUNT(*)".into()),
        "fee_income" => ("transactions", "SUM(f.fee_income)".into()),
        "active_customers" => ("transactions", "COUNT(DISTINCT f.customer_id)".into()),
        "avg_ticket" => (
            "transactions",
            "CAST(SUM(f.amount) AS DOUBLE) / COUNT(*)".into(),
        ),
        "interest_margin" => ("balances", "SUM(f.interest_margin)".into()),
        "customers" => ("balances", "COUNT(DISTINCT f.customer_id)".into()),
        "products_held" => ("balances", "COUNT(DISTINCT f.product_id)".into()),
        "deposit_balance" => ("balances", last("deposit_balance")),
        "loan_balance" => ("balances", last("loan_balance")),
        "credit_line" => ("balances", last("credit_line")),
        "allocated_cost" => ("branch_cost", "SUM(f.operating_cost)".into()),
        "cost_customers" => ("branch_cost", "COUNT(DISTINCT f.customer_id)".into()),
        other => panic!("no SQL for measure {other}"),
    }
}

/// The whole question in SQL: each fact's part, FULL JOINed on the members (a row where any
/// fact has rows), having on top. A measure is one aggregate of one fact, except
/// `contribution`, whose three parts come from three facts and add up with a missing one as 0
/// (null when all are).
pub fn question_sql(model: &Model, q: &Query) -> String {
    let mut facts: Vec<(&str, Vec<(String, String)>)> = Vec::new();
    let mut outputs = Vec::new();
    for (i, m) in q.measures.iter().enumerate() {
        let parts = match m.as_str() {
            "contribution" => vec![
                measure_sql("interest_margin"),
                measure_sql("fee_income"),
                measure_sql("allocated_cost"),
            ],
            other => vec![measure_sql(other)],
        };
        let mut names = Vec::new();
        for (j, (fact, expr)) in parts.into_iter().enumerate() {
            let name = format!("s{i}_{j}");
            names.push(name.clone());
            match facts.iter_mut().find(|(f, _)| *f == fact) {
                Some((_, outs)) => outs.push((name, expr)),
                None => facts.push((fact, vec![(name, expr)])),
            }
        }
        outputs.push(match names.as_slice() {
            [one] => one.clone(),
            [margin, fees, cost] => format!(
                "CASE WHEN {margin} IS NULL AND {fees} IS NULL AND {cost} IS NULL THEN NULL \
                 ELSE COALESCE({margin}, 0) + COALESCE({fees}, 0) - COALESCE({cost}, 0) END"
            ),
            _ => unreachable!("one or three parts"),
        });
    }
    let n = q.rows.len();
    let parts: Vec<String> = facts
        .iter()
        .map(|(fact, outs)| fact_query(model, q, fact, outs))
        .collect();
    // q0 FULL JOIN q1 ON q1.g = q0.g FULL JOIN q2 ON q2.g = COALESCE(q0.g, q1.g) ...; without
    // members each part is one row.
    let key = |i: usize, upto: usize| {
        let all: Vec<String> = (0..upto).map(|p| format!("q{p}.g{i}")).collect();
        if upto == 1 {
            all[0].clone()
        } else {
            format!("COALESCE({})", all.join(", "))
        }
    };
    let mut from = format!("({}) AS q0", parts[0]);
    for (p, part) in parts.iter().enumerate().skip(1) {
        if n == 0 {
            write!(from, " CROSS JOIN ({part}) AS q{p}").unwrap();
        } else {
            let on: Vec<String> = (0..n)
                .map(|i| format!("q{p}.g{i} = {}", key(i, p)))
                .collect();
            write!(from, " FULL JOIN ({part}) AS q{p} ON {}", on.join(" AND ")).unwrap();
        }
    }
    let mut cols: Vec<String> = (0..n)
        .map(|i| format!("{} AS g{i}", key(i, parts.len())))
        .collect();
    for (fi, (_, outs)) in facts.iter().enumerate() {
        for (name, _) in outs {
            cols.push(format!("q{fi}.{name} AS {name}"));
        }
    }
    let sql = format!("SELECT {} FROM {from}", cols.join(", "));
    let mut select: Vec<String> = (0..n).map(|i| format!("g{i}")).collect();
    select.extend(
        outputs
            .iter()
            .enumerate()
            .map(|(i, o)| format!("{o} AS m{i}")),
    );
    let mut out = format!(
        "SELECT * FROM (SELECT {} FROM ({sql}) AS joined) AS answer",
        select.join(", ")
    );
    if !q.having.is_empty() {
        let conditions: Vec<String> = q
            .having
            .iter()
            .map(|h| {
                let i = q
                    .measures
                    .iter()
                    .position(|m| *m == h.measure)
                    .expect("asked");
                let op = match h.op {
                    lattice_engine::query::HavingOp::Gt => ">",
                    lattice_engine::query::HavingOp::Ge => ">=",
                    lattice_engine::query::HavingOp::Lt => "<",
                    lattice_engine::query::HavingOp::Le => "<=",
                    lattice_engine::query::HavingOp::Eq => "=",
                    lattice_engine::query::HavingOp::Ne => "<>",
                };
                format!("CAST(m{i} AS DOUBLE) {op} {:?}", h.value)
            })
            .collect();
        write!(out, " WHERE {}", conditions.join(" AND ")).unwrap();
    }
    out
}

// ---- The BI workload ----

/// A question drawn the way a BI front end draws one, not tuned to the cube: one to three
/// measures of any kind (sums, counts, distinct counts, closing balances, derived ones), one or
/// two levels of any dimension the measures vary by on rows, sometimes one on columns (a
/// pivot), and zero to three filters of every kind a front end sends (a member, a list, a list
/// left out, a prefix, a range of an ordered level, a time range), now and then a having.
/// Always a question the SQL twin ([`question_sql`], with the columns grouped like rows) can
/// ask: no order, paging, totals or comparisons, no having with a pivot, no `customer.id` on
/// rows or columns (a filter on customers is drawn now and then).
pub fn bi_question(cube: &Cube, rng: &mut Rng) -> Json {
    let model = cube.model();
    let members =
        |name: &str| -> &[String] { &cube.members(model.level(name).expect("level")).names };

    // Measures first; then only the dimensions every measure's facts vary by.
    let mut chosen: Vec<&str> = Vec::new();
    for _ in 0..*rng.pick(&[1, 1, 1, 2, 2, 3]) {
        let m = rng.pick(&model.measures).name.as_str();
        if !chosen.contains(&m) {
            chosen.push(m);
        }
    }
    let dims: Vec<usize> = (0..model.dimensions.len())
        .filter(|&d| {
            chosen.iter().all(|m| {
                let id = model.measure(m).expect("measure");
                model
                    .measure_facts(id)
                    .into_iter()
                    .all(|f| model.fact_has_dimension(f, d))
            })
        })
        .collect();
    // A level of a random dimension (each dimension as likely), not the customers themselves.
    let random_level = |rng: &mut Rng| -> String {
        loop {
            let d = &model.dimensions[*rng.pick(&dims)];
            let name = format!("{}.{}", d.name, rng.pick(&d.levels).name);
            if name != "customer.id" {
                return name;
            }
        }
    };

    let mut rows: Vec<String> = Vec::new();
    for _ in 0..1 + usize::from(rng.chance(45)) {
        let l = random_level(rng);
        if !rows.contains(&l) {
            rows.push(l);
        }
    }
    let mut columns: Vec<String> = Vec::new();
    if rng.chance(20) {
        let l = random_level(rng);
        if !rows.contains(&l) {
            columns.push(l);
        }
    }

    let mut filters = Vec::new();
    for _ in 0..*rng.pick(&[0, 0, 0, 1, 1, 1, 1, 2, 2, 3]) {
        let name = if rng.chance(5) && dims.contains(&model.dimension("customer").expect("dim")) {
            "customer.id".to_string()
        } else if rng.chance(30) {
            rng.pick(&["time.year", "time.quarter", "time.month"])
                .to_string()
        } else {
            random_level(rng)
        };
        let names: Vec<&String> = members(&name)
            .iter()
            .filter(|m| m.as_str() != "unknown")
            .collect();
        if names.is_empty() {
            continue;
        }
        let ordered = is_ordered(model, model.level(&name).expect("level"));
        let some = |n: usize, rng: &mut Rng| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for _ in 0..n {
                let m = (*rng.pick(&names)).clone();
                if !out.contains(&m) {
                    out.push(m);
                }
            }
            out
        };
        let filter = match rng.below(if ordered { 6 } else { 4 }) {
            0 => json!({"level": name, "op": "eq", "value": some(1, rng)[0]}),
            1 => json!({"level": name, "op": "in", "values": some(2 + rng.below(4), rng)}),
            2 => json!({"level": name, "op": "not_in", "values": some(1 + rng.below(2), rng)}),
            // A "starts with" box: the first characters of a member (of a time member, its year).
            3 => {
                let m = rng.pick(&names);
                let n = if name.starts_with("time.") {
                    4
                } else {
                    1 + rng.below(3)
                };
                json!({"level": name, "op": "prefix", "value": m.chars().take(n).collect::<String>()})
            }
            // A range of an ordered level; on time, a window of 2 to 12 consecutive periods
            // (members are in time order).
            _ => {
                let a = rng.below(names.len());
                let b = if name.starts_with("time.") {
                    (a + 1 + rng.below(12)).min(names.len() - 1)
                } else {
                    rng.below(names.len())
                };
                json!({"level": name, "op": "between",
                       "values": [names[a.min(b)].clone(), names[a.max(b)].clone()]})
            }
        };
        filters.push(filter);
    }

    let mut q = json!({"measures": chosen, "rows": rows, "columns": columns, "filters": filters});
    if columns.is_empty() && rng.chance(10) {
        let thresholds = [0.0, 100.0, 10_000.0, 1_000_000.0];
        q["having"] = json!([{"measure": rng.pick(&chosen), "op": rng.pick(&["gt", "ge", "lt"]),
                              "value": rng.pick(&thresholds)}]);
    }
    q
}

/// The SQL twin of a grouped question, a pivot grouped by its rows then its columns (compare
/// with [`answer_rows`], which unpivots the answer the same way).
pub fn workload_sql(model: &Model, q: &Query) -> String {
    let mut grouped = q.clone();
    grouped.rows.append(&mut grouped.columns);
    question_sql(model, &grouped)
}

/// One value of an answer or of a twin's result, as the workload compares them: members as
/// text, exact numbers (decimals, integers) with no trailing zeros, ratios as doubles.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum Val {
    Null,
    Text(String),
    /// `value * 10^-scale`, the scale as small as the value allows.
    Exact(i128, u32),
    Float(f64),
}

impl Val {
    fn exact(mut v: i128, mut scale: u32) -> Val {
        while scale > 0 && v % 10 == 0 {
            v /= 10;
            scale -= 1;
        }
        Val::Exact(v, scale)
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Val::Exact(v, s) => Some(*v as f64 / 10f64.powi(*s as i32)),
            Val::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// Equal: exact numbers exactly, doubles (and a double against an exact number) within
    /// 1e-9 relative.
    pub fn same(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Exact(..), Val::Exact(..)) | (Val::Null | Val::Text(_), _) => self == other,
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
                _ => false,
            },
        }
    }

    /// A JSON value of an answer column of type `ty` (`None` for a level).
    pub fn from_json(v: &Json, ty: Option<&str>) -> Val {
        match (v, ty) {
            (Json::Null, _) => Val::Null,
            (Json::String(s), None) => Val::Text(s.clone()),
            (Json::String(s), Some(_)) => {
                let (neg, digits) = s
                    .strip_prefix('-')
                    .map_or((false, s.as_str()), |d| (true, d));
                let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
                match format!("{int}{frac}").parse::<i128>() {
                    Ok(v) => Val::exact(if neg { -v } else { v }, frac.len() as u32),
                    Err(_) => Val::Text(format!("bad number {s}")),
                }
            }
            (Json::Number(n), Some("number")) => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            (Json::Number(n), _) => match n.as_i64() {
                Some(i) => Val::exact(i128::from(i), 0),
                None => Val::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            (v, ty) => Val::Text(format!("unexpected {v} for type {ty:?}")),
        }
    }

    /// Row `row` of a SQL result column.
    pub fn from_arrow(a: &arrow::array::ArrayRef, row: usize) -> Val {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
        if a.logical_nulls().is_some_and(|n| n.is_null(row)) {
            return Val::Null;
        }
        match a.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let a = arrow::compute::cast(a, &DataType::Utf8).expect("utf8");
                Val::Text(a.as_string::<i32>().value(row).to_string())
            }
            DataType::Decimal128(_, s) => Val::exact(
                a.as_primitive::<Decimal128Type>().value(row),
                u32::try_from(*s).expect("scale"),
            ),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                let a = arrow::compute::cast(a, &DataType::Float64).expect("float");
                Val::Float(a.as_primitive::<Float64Type>().value(row))
            }
            t if t.is_integer() => {
                let a = arrow::compute::cast(a, &DataType::Int64).expect("int");
                Val::exact(i128::from(a.as_primitive::<Int64Type>().value(row)), 0)
            }
            t => Val::Text(format!(
                "{t}: {}",
                arrow::util::display::array_value_to_string(a, row).expect("display")
            )),
        }
    }
}

/// The rows of a twin's result, sorted (rows of a grouped result are distinct by their
/// members); for a pivot, the rows whose measures are all null are left out, as a pivot has
/// no cell for them.
pub fn sql_rows(q: &Query, batches: &[arrow::record_batch::RecordBatch]) -> Vec<Vec<Val>> {
    let n = q.rows.len() + q.columns.len();
    let mut out: Vec<Vec<Val>> = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            let row: Vec<Val> = b.columns().iter().map(|c| Val::from_arrow(c, r)).collect();
            if q.columns.is_empty() || row[n..].iter().any(|v| *v != Val::Null) {
                out.push(row);
            }
        }
    }
    sort_rows(&mut out);
    out
}

/// The rows of an answer as [`workload_sql`] has them, sorted: a pivot's cells
/// (`<member>|<measure>`) unpivoted into a row per row and column member, where any of its
/// measures has a value.
pub fn answer_rows(q: &Query, a: &lattice_engine::query::Answer) -> Vec<Vec<Val>> {
    let n = q.rows.len();
    let ty = |i: usize| {
        let c = &a.columns[i];
        if c.kind == "level" { None } else { c.ty }
    };
    let mut out: Vec<Vec<Val>> = Vec::new();
    if q.columns.is_empty() {
        for r in &a.rows {
            out.push(
                r.iter()
                    .enumerate()
                    .map(|(i, v)| Val::from_json(v, ty(i)))
                    .collect(),
            );
        }
    } else {
        // The pivot's column members, in order, each with the answer column of each measure.
        let mut pivot: Vec<(Vec<String>, Vec<Option<usize>>)> = Vec::new();
        for (i, c) in a.columns.iter().enumerate().skip(n) {
            let Some((member, measure)) = c.name.rsplit_once('|') else {
                continue;
            };
            let members: Vec<String> = member.split('|').map(str::to_string).collect();
            let j = q.measures.iter().position(|m| m == measure).expect("asked");
            let at = match pivot.iter().position(|(m, _)| *m == members) {
                Some(at) => at,
                None => {
                    pivot.push((members, vec![None; q.measures.len()]));
                    pivot.len() - 1
                }
            };
            pivot[at].1[j] = Some(i);
        }
        for r in &a.rows {
            for (members, cols) in &pivot {
                let values: Vec<Val> = cols
                    .iter()
                    .map(|c| c.map_or(Val::Null, |i| Val::from_json(&r[i], ty(i))))
                    .collect();
                if values.iter().all(|v| *v == Val::Null) {
                    continue;
                }
                let mut row: Vec<Val> = r[..n]
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Val::from_json(v, ty(i)))
                    .collect();
                row.extend(members.iter().map(|m| Val::Text(m.clone())));
                row.extend(values);
                out.push(row);
            }
        }
    }
    sort_rows(&mut out);
    out
}

fn sort_rows(rows: &mut [Vec<Val>]) {
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
}

/// Where two sorted row sets first differ, described; `None` when they are equal.
pub fn first_difference(got: &[Vec<Val>], want: &[Vec<Val>]) -> Option<String> {
    let same =
        |a: &Vec<Val>, b: &Vec<Val>| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y));
    let i = (0..got.len().max(want.len())).find(|&i| match (got.get(i), want.get(i)) {
        (Some(a), Some(b)) => !same(a, b),
        _ => true,
    })?;
    Some(format!(
        "Lattice has {} rows, the twin {}; first difference at row {i}: Lattice {:?}, twin {:?}",
        got.len(),
        want.len(),
        got.get(i),
        want.get(i)
    ))
}
