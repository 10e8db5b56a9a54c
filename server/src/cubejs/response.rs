//! The engine's answer in the shape `@cubejs-client/core` reads: one result per native query,
//! data keyed by Cube member names, time members as local ISO timestamps, measure values as
//! strings (as Cube's SQL drivers return numerics), `unknown` members as null.

use lattice_engine::query::Answer;
use serde_json::{Value as Json, json};

use super::dates;
use super::translate::{Output, Plan, ResponseFormat, Translation};

/// One entry of `results`.
pub(crate) fn result(plan: &Plan, answer: &Answer, last_refresh: &str) -> Json {
    // (key, value) per shown column, in answer order; the bare time key in default format.
    let rows: Vec<Vec<(String, Json)>> = answer
        .rows
        .iter()
        .map(|row| {
            let mut out = Vec::with_capacity(plan.outputs.len() + 2);
            for (v, o) in row.iter().zip(&plan.outputs) {
                match o {
                    Output::Level { key } => out.push((key.clone(), member(v))),
                    Output::Time { key, bare, grain } => {
                        let t = match v {
                            Json::String(s) => {
                                dates::period_start_iso(s, *grain).map_or(Json::Null, Json::String)
                            }
                            _ => Json::Null,
                        };
                        out.push((key.clone(), t.clone()));
                        if let Some(b) = bare {
                            out.push((b.clone(), t));
                        }
                    }
                    Output::Measure { key } => out.push((key.clone(), number(v))),
                    Output::Hidden => {}
                }
            }
            if let Some(label) = &plan.compare_label {
                out.push(("compareDateRange".into(), Json::String(label.clone())));
            }
            out
        })
        .collect();
    let members = || -> Vec<String> {
        let mut m: Vec<String> = plan
            .outputs
            .iter()
            .filter_map(|o| match o {
                Output::Level { key } | Output::Time { key, .. } | Output::Measure { key } => {
                    Some(key.clone())
                }
                Output::Hidden => None,
            })
            .collect();
        if plan.compare_label.is_some() {
            m.push("compareDateRange".into());
        }
        m
    };
    let data = match plan.format {
        ResponseFormat::Default => Json::Array(
            rows.into_iter()
                .map(|r| Json::Object(r.into_iter().collect()))
                .collect(),
        ),
        ResponseFormat::Compact => json!({
            "members": members(),
            "dataset": rows.into_iter()
                .map(|r| r.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        }),
        ResponseFormat::Columnar => {
            let members = members();
            let mut columns = vec![Vec::with_capacity(rows.len()); members.len()];
            for r in rows {
                for (c, (_, v)) in columns.iter_mut().zip(r) {
                    c.push(v);
                }
            }
            json!({"members": members, "columns": columns})
        }
    };
    json!({
        "query": plan.normalized,
        "lastRefreshTime": last_refresh,
        "annotation": plan.annotation,
        "dataSource": "default",
        "dbType": "lattice",
        "external": false,
        "slowQuery": false,
        "total": if plan.total { json!(answer.meta.total_rows) } else { Json::Null },
        "data": data,
        // What the engine did, for whoever reads the raw response.
        "lattice": {
            "query": plan.native,
            "source": answer.meta.source,
            "cuboid": answer.meta.cuboid,
            "elapsedUs": answer.meta.elapsed_us,
            "snapshot": answer.meta.snapshot,
        },
    })
}

/// The `/load` response: the multi form the client asks for (`queryType=multi`), else the one
/// result alone, as Cube answers old clients.
pub(crate) fn load(t: &Translation, results: Vec<Json>, multi: bool) -> Json {
    if multi {
        json!({
            "queryType": t.query_type.name(),
            "results": results,
            "pivotQuery": t.pivot_query,
            "slowQuery": false,
        })
    } else {
        results.into_iter().next().unwrap_or(Json::Null)
    }
}

/// The `/dry-run` response: the normalised queries, their order, and the native queries.
pub(crate) fn dry_run(t: &Translation) -> Json {
    json!({
        "queryType": t.query_type.name(),
        "normalizedQueries": t.plans.iter().map(|p| p.normalized.clone()).collect::<Vec<_>>(),
        "queryOrder": t.plans.iter().map(|p| {
            p.order.iter()
                .map(|(k, desc)| (k.clone(), json!(if *desc { "desc" } else { "asc" })))
                .collect::<serde_json::Map<_, _>>()
        }).collect::<Vec<_>>(),
        "transformedQueries": t.plans.iter().map(|_| Json::Null).collect::<Vec<_>>(),
        "pivotQuery": t.pivot_query,
        "nativeQueries": t.plans.iter().map(|p| json!(p.native)).collect::<Vec<_>>(),
    })
}

/// A dimension member: its name, `unknown` as null (Cube's NULL).
fn member(v: &Json) -> Json {
    match v {
        Json::String(s) if s == lattice_defs::model::UNKNOWN_MEMBER => Json::Null,
        other => other.clone(),
    }
}

/// A measure value as a string (exact decimals stay exact), null as null.
fn number(v: &Json) -> Json {
    match v {
        Json::Null => Json::Null,
        Json::String(s) => Json::String(s.clone()),
        // Floats as JavaScript writes them (`10`, not `10.0`).
        Json::Number(n) if n.is_f64() => Json::String(format!("{}", n.as_f64().unwrap_or(0.0))),
        other => Json::String(other.to_string()),
    }
}
