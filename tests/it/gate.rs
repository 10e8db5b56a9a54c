//! The gate's work on every route alike: the audit line says which cube, which ids and which
//! body each request asked about (so a principal's questions can be replayed, and differencing
//! seen), and a principal whose answers are restricted may ask only so many distinct questions
//! a minute (so differencing at scale is slow).

use std::path::Path;

use axum::http::{StatusCode, header};
use lattice_server::audit::{AuditConfig, MAX_BODY_BYTES};
use serde_json::{Value, json};

use crate::auth::{ADMIN_KEY, App, MANAGER_KEY, app, auth_file};

fn scope() -> String {
    "region.province in [Zhejiang, Jiangsu]".to_string()
}

/// The server with the test auth file, an audit log and `tune`.
async fn audited(tune: impl FnOnce(&mut lattice_server::Config)) -> App {
    let scope = scope();
    app(Some(&move |d: &Path| auth_file(d, &scope)), |c, dir| {
        c.audit = Some(AuditConfig {
            path: dir.join("audit.log"),
            max_bytes: 1 << 24,
            keep: 1,
        });
        tune(c);
    })
    .await
}

/// The audit file's lines, once `count` of them are there.
async fn audit_lines(app: &App, count: usize) -> Vec<Value> {
    let path = app.dir.path().join("audit.log");
    for _ in 0..200 {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // Only whole lines: the writer may be halfway through the last one (a long body).
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let lines: Vec<Value> = whole
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("fewer than {count} audit lines in {}", path.display());
}

fn cube_query() -> Value {
    json!({"measures": ["bank_crm.txn_count"], "dimensions": ["bank_crm.region_province"]})
}

#[tokio::test]
async fn every_route_s_audit_line_names_its_cube_ids_and_body() {
    let app = audited(|c| c.limits.max_body_bytes = 256 * 1024).await;
    let members = app
        .as_(
            MANAGER_KEY,
            "GET",
            "/v1/cubes/bank_crm/members/customer/id?limit=1",
            None,
        )
        .await;
    let id = members.body["members"][0]["name"]
        .as_str()
        .expect("a customer of the scope")
        .to_string();
    let pareto = json!({"level": "region.city", "measure": "fee_income"});
    let search = json!({"name": "probe", "entity": "customer.id",
                        "where": {"level": "region.province", "op": "in", "values": ["Zhejiang"]}});
    let run = json!({"search": search, "measures": ["txn_amount"], "limit": 5});
    let named = json!({"measures": ["deposit_balance"], "limit": 5});
    let dry = json!({"query": cube_query()});
    // A body past what a line keeps (but under the server's limit), and one past the limit.
    let long = json!({"measures": ["txn_amount"], "rows": ["x".repeat(MAX_BODY_BYTES)]});
    let huge = json!({"measures": ["txn_amount"], "rows": ["x".repeat(300 * 1024)]});
    // Saving a search is the admin's; the rest the manager's.
    let calls: Vec<(&str, &str, String, Option<&Value>)> = vec![
        (
            "manager",
            "POST",
            "/v1/cubes/bank_crm/analytics/pareto".into(),
            Some(&pareto),
        ),
        (
            "manager",
            "POST",
            "/v1/cubes/bank_crm/searches/run".into(),
            Some(&run),
        ),
        (
            "admin",
            "PUT",
            "/v1/cubes/bank_crm/searches/probe".into(),
            Some(&search),
        ),
        (
            "manager",
            "POST",
            "/v1/cubes/bank_crm/searches/affluent_digital_no_loan/run".into(),
            Some(&named),
        ),
        (
            "manager",
            "GET",
            format!("/v1/cubes/bank_crm/entities/customer/{id}"),
            None,
        ),
        (
            "manager",
            "POST",
            "/cubejs-api/v1/dry-run".into(),
            Some(&dry),
        ),
        (
            "manager",
            "POST",
            "/v1/cubes/bank_crm/query".into(),
            Some(&long),
        ),
        (
            "manager",
            "POST",
            "/v1/cubes/bank_crm/query".into(),
            Some(&huge),
        ),
    ];
    let mut replies = Vec::new();
    for (who, method, uri, body) in &calls {
        let key = if *who == "admin" {
            ADMIN_KEY
        } else {
            MANAGER_KEY
        };
        replies.push(app.as_(key, method, uri, *body).await);
    }
    // The routes read the bodies the gate read before them.
    for r in &replies[..6] {
        assert!(r.status.is_success(), "{}", r.text);
    }
    assert_eq!(
        replies[6].status,
        StatusCode::BAD_REQUEST,
        "{}",
        replies[6].text
    );
    replies[7].error(413, "body_too_large");

    let lines = audit_lines(&app, 1 + calls.len()).await;
    let lines = &lines[1..];
    for (line, (who, ..)) in lines.iter().zip(&calls) {
        assert_eq!(
            (line["principal"].as_str(), line["cube"].as_str()),
            (Some(*who), Some("bank_crm")),
            "{line}"
        );
    }
    let want_routes = [
        "/v1/cubes/{cube}/analytics/pareto",
        "/v1/cubes/{cube}/searches/run",
        "/v1/cubes/{cube}/searches/{name}",
        "/v1/cubes/{cube}/searches/{name}/run",
        "/v1/cubes/{cube}/entities/{dimension}/{id}",
        "/cubejs-api/v1/dry-run",
        "/v1/cubes/{cube}/query",
        "/v1/cubes/{cube}/query",
    ];
    let routes: Vec<&str> = lines.iter().filter_map(|l| l["route"].as_str()).collect();
    assert_eq!(routes, want_routes);
    // The bodies, as sent.
    for (line, (.., body)) in lines.iter().zip(&calls).take(6) {
        match body {
            Some(b) => {
                assert_eq!(&line["body"], *b, "{line}");
                assert_eq!(line["body_bytes"], b.to_string().len(), "{line}");
                assert!(line.get("body_truncated").is_none(), "{line}");
            }
            None => assert!(line.get("body").is_none(), "{line}"),
        }
    }
    // The path's ids.
    assert_eq!(lines[2]["path"], json!({"name": "probe"}));
    assert_eq!(
        lines[3]["path"],
        json!({"name": "affluent_digital_no_loan"})
    );
    assert_eq!(lines[4]["path"], json!({"dimension": "customer", "id": id}));
    assert!(lines[0].get("path").is_none(), "{}", lines[0]);
    // A long body: its head, and how long it was.
    let head = lines[6]["body"].as_str().expect("the head as text");
    assert_eq!(head.len(), MAX_BODY_BYTES);
    assert!(long.to_string().starts_with(head));
    assert_eq!(lines[6]["body_bytes"], long.to_string().len());
    assert_eq!(lines[6]["body_truncated"], true);
    // Over the server's limit: the head, not the length (the body was not read whole).
    assert_eq!(lines[7]["body_truncated"], true);
    assert!(lines[7].get("body_bytes").is_none(), "{}", lines[7]);
    assert_eq!(lines[7]["status"], 413);
}

#[tokio::test]
async fn distinct_questions_are_limited_per_principal_and_repeats_are_free() {
    let app = audited(|c| c.limits.max_questions_per_minute = 3).await;
    // Four different questions, each answered on its own.
    let q = |level: &str| json!({"measures": ["txn_amount"], "rows": [level]});
    let levels = [
        "region.province",
        "time.year",
        "channel.channel",
        "product.category",
    ];
    for l in &levels[..3] {
        let r = app.query_as(MANAGER_KEY, &q(l)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // Asking again is free, however often.
    for _ in 0..3 {
        let r = app.query_as(MANAGER_KEY, &q(levels[0])).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // A fourth distinct question, on any route that answers one: 429, with when to retry.
    let r = app.query_as(MANAGER_KEY, &q(levels[3])).await;
    let e = r.error(429, "too_many_questions");
    assert_eq!(e["details"]["principal"], "manager");
    assert_eq!(e["details"]["max_questions_per_minute"], 3);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(e["details"]["retry_after_s"], retry);
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("3 different questions") && m.contains("again")),
        "{e}"
    );
    for uri in [
        "/v1/cubes/bank_crm/members/region/province",
        "/v1/cubes/bank_crm/entities/customer/C0000001",
    ] {
        app.as_(MANAGER_KEY, "GET", uri, None)
            .await
            .error(429, "too_many_questions");
    }
    let r = app
        .call(
            "POST",
            "/cubejs-api/v1/load",
            Some(MANAGER_KEY),
            Some(&json!({"query": cube_query()})),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert!(r.body["error"].is_string(), "Cube's shape: {}", r.text);
    assert!(r.headers.contains_key(header::RETRY_AFTER));
    // Routes that answer no question stay open.
    for uri in ["/v1/cubes", "/v1/cubes/bank_crm", "/cubejs-api/v1/meta"] {
        let r = app.as_(MANAGER_KEY, "GET", uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.text);
    }
    // The admin (who could read anything anyway) is not counted.
    for l in levels {
        let r = app.query_as(ADMIN_KEY, &q(l)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    // The refusals are in the audit log, with the question.
    let lines = audit_lines(&app, 17).await;
    let refused: Vec<&Value> = lines
        .iter()
        .filter(|l| l["error"] == "too_many_questions")
        .collect();
    assert_eq!(refused.len(), 4, "{lines:#?}");
    assert_eq!(refused[0]["body"], q(levels[3]));
}

#[test]
fn serve_has_a_flag_for_the_limit() {
    let out = crate::cli::lattice()
        .args(["serve", "--help"])
        .output()
        .expect("run lattice");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--max-questions-per-minute"), "{help}");
}
