//! Authentication end to end, through the server's router: API keys and JWTs (HS256 and
//! RS256) that are missing, malformed, unknown, expired, forged or signed for someone else get
//! 401 in the one error shape; known principals that may not use a route get 403; the Cube API
//! takes the same principals in Cube's shape; the per-principal limits; the audit log (every
//! request, no secret); and `lattice serve` refusing to listen beyond loopback without `--auth`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lattice_server::audit::AuditConfig;
use lattice_server::auth::{Auth, hash_key};
use lattice_server::{Config, Server};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::util::parquet_dir;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";
pub const MANAGER_KEY: &str = "test-manager-key-0123456789abcdef";
pub const METRICS_KEY: &str = "test-metrics-key-0123456789abcdef";
pub const SERIAL_KEY: &str = "test-serial-key-0123456789abcdef";
pub const HASTY_KEY: &str = "test-hasty-key-0123456789abcdef";
pub const HS256_SECRET: &str = "an HS256 secret of the tests, 48 bytes long....";
pub const ISSUER: &str = "https://idp.test";
pub const AUDIENCE: &str = "lattice";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The auth file of these tests: an admin, a principal scoped by `scope`, a scraper, two with
/// tight limits, and JWTs of both algorithms. Written into `dir` (with the HS256 secret).
pub fn auth_file(dir: &Path, scope: &str) -> PathBuf {
    std::fs::write(dir.join("hs256.secret"), format!("{HS256_SECRET}\n")).expect("secret");
    let yaml = format!(
        r#"version: 1
defaults: {{max_concurrent: 4, max_queued: 8}}
keys:
  - {{name: admin, sha256: {admin}, roles: [admin]}}
  - {{name: manager, sha256: {manager}, roles: [manager], scope: [{scope:?}]}}
  - {{name: scraper, sha256: {metrics}, roles: [metrics], scope: [{scope:?}]}}
  - {{name: serial, sha256: {serial}, max_concurrent: 1, max_queued: 0}}
  - {{name: hasty, sha256: {hasty}, query_timeout_ms: 1}}
jwt:
  hs256_secret_file: hs256.secret
  rs256_public_key_file: {public}
  issuer: {ISSUER}
  audience: {AUDIENCE}
  leeway_seconds: 0
"#,
        admin = hash_key(ADMIN_KEY),
        manager = hash_key(MANAGER_KEY),
        metrics = hash_key(METRICS_KEY),
        serial = hash_key(SERIAL_KEY),
        hasty = hash_key(HASTY_KEY),
        public = fixture("jwt-test-public.pem").display(),
    );
    let path = dir.join("auth.yaml");
    std::fs::write(&path, yaml).expect("auth file");
    path
}

/// A JWT with `claims` (and `iss`, `aud`, `exp` in an hour unless `claims` sets them).
pub fn token(alg: Algorithm, mut claims: Value) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let obj = claims.as_object_mut().expect("claims object");
    obj.entry("iss").or_insert(json!(ISSUER));
    obj.entry("aud").or_insert(json!(AUDIENCE));
    obj.entry("exp").or_insert(json!(now + 3600));
    let key = match alg {
        Algorithm::HS256 => EncodingKey::from_secret(HS256_SECRET.as_bytes()).expect("secret"),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(
            &std::fs::read(fixture("jwt-test-private.pem")).expect("test key"),
        )
        .expect("RSA key"),
        other => panic!("no test key for {other:?}"),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).expect("sign")
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The server's router over bank_crm on the test data.
pub struct App {
    pub router: Router,
    /// Keeps the definitions folder (and the auth file's folder) alive.
    pub dir: tempfile::TempDir,
}

/// A reply: status, headers, JSON body (`Null` when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    /// Checks the one error shape and returns the error object.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(
            (self.status.as_u16(), self.body["error"]["code"].as_str()),
            (status, Some(code)),
            "{}",
            self.text
        );
        let mut keys: Vec<_> = self.body["error"]
            .as_object()
            .expect("error object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "details", "message"], "{}", self.text);
        &self.body["error"]
    }
}

/// Builds the cube and a server with `auth_yaml(dir)` as its auth file (none: no auth). The
/// limit on distinct questions a minute is off (tests ask many; `tune` may set it).
pub async fn app(
    auth: Option<&dyn Fn(&Path) -> PathBuf>,
    tune: impl FnOnce(&mut Config, &Path),
) -> App {
    app_over(false, auth, tune).await
}

/// [`app`], over the shipped cube with its base rows kept (`base`) or without them.
pub async fn app_over(
    base: bool,
    auth: Option<&dyn Fn(&Path) -> PathBuf>,
    tune: impl FnOnce(&mut Config, &Path),
) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = if base {
        crate::util::shipped_cube_in(dir.path()).await
    } else {
        crate::util::shipped_fallback_cube_in(dir.path()).await
    };
    let mut config = Config {
        definitions_dir: Some(dir.path().to_path_buf()),
        data_dir: Some(parquet_dir().to_path_buf()),
        watch_interval: None,
        limits: lattice_server::Limits {
            max_questions_per_minute: 0,
            ..lattice_server::Limits::default()
        },
        auth: auth.map(|f| {
            let file = f(dir.path());
            Arc::new(Auth::from_file(&file).unwrap_or_else(|e| panic!("{e}")))
        }),
        ..Config::default()
    };
    tune(&mut config, dir.path());
    let server = Server::new(config, vec![served]).expect("server");
    App {
        router: server.router(),
        dir,
    }
}

impl App {
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        authorization: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = authorization {
            req = req.header(header::AUTHORIZATION, a);
        }
        let req = match body {
            // A string is a definition's text: sent as YAML.
            Some(Value::String(text)) => req
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(Body::from(text.clone())),
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Reply {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    /// `Authorization: Bearer <credential>`.
    pub async fn as_(
        &self,
        credential: &str,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> Reply {
        self.call(method, uri, Some(&format!("Bearer {credential}")), body)
            .await
    }

    pub async fn query_as(&self, credential: &str, q: &Value) -> Reply {
        self.as_(credential, "POST", "/v1/cubes/bank_crm/query", Some(q))
            .await
    }
}

fn by_year() -> Value {
    json!({"measures": ["txn_amount"], "rows": ["time.year"]})
}

/// Any manager of the test data (the limits and shapes below do not depend on which).
fn some_scope() -> String {
    "region.province in [Zhejiang, Jiangsu]".to_string()
}

async fn authed() -> App {
    let scope = some_scope();
    app(Some(&move |d: &Path| auth_file(d, &scope)), |_, _| {}).await
}

#[tokio::test]
async fn missing_malformed_unknown_expired_and_forged_credentials_get_401() {
    let app = authed().await;
    let q = by_year();
    let now = unix_now();
    let good_hs = token(
        Algorithm::HS256,
        json!({"sub": "alice", "lattice_scope": "*"}),
    );
    let good_rs = token(
        Algorithm::RS256,
        json!({"sub": "bob", "lattice_scope": [some_scope()]}),
    );
    // Both algorithms work when the token is good.
    for t in [&good_hs, &good_rs] {
        let r = app.query_as(t, &q).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let r = app.query_as(ADMIN_KEY, &q).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // No header at all.
    let r = app
        .call("POST", "/v1/cubes/bank_crm/query", None, Some(&q))
        .await;
    r.error(401, "missing_credentials");
    assert_eq!(
        r.headers[header::WWW_AUTHENTICATE],
        "Bearer realm=\"lattice\""
    );

    let forged = |part: usize, with: &str, of: &str| {
        let mut parts: Vec<String> = of.split('.').map(str::to_string).collect();
        parts[part] = with.to_string();
        parts.join(".")
    };
    let other_payload = token(
        Algorithm::HS256,
        json!({"sub": "mallory", "lattice_roles": ["admin"]}),
    )
    .split('.')
    .nth(1)
    .expect("payload")
    .to_string();
    let signed_by_another_key = {
        let key = EncodingKey::from_rsa_pem(
            &std::fs::read(fixture("jwt-test-other-private.pem")).expect("key"),
        )
        .expect("RSA key");
        let claims = json!({"sub": "bob", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600});
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
    };
    // The RS256 public key used as an HS256 secret: the classic algorithm confusion.
    let confused = {
        let public = std::fs::read(fixture("jwt-test-public.pem")).expect("public key");
        let claims = json!({"sub": "bob", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 3600});
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&public).expect("secret"),
        )
        .expect("sign")
    };
    // {"alg":"none","typ":"JWT"}
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        good_hs.split('.').nth(1).expect("payload")
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "basic auth",
            "Basic YWRtaW46YWRtaW4=".into(),
            "invalid_credentials",
        ),
        (
            "a key without Bearer",
            ADMIN_KEY.into(),
            "invalid_credentials",
        ),
        ("an empty bearer", "Bearer ".into(), "missing_credentials"),
        (
            "an unknown key",
            "Bearer not-a-key".into(),
            "invalid_credentials",
        ),
        (
            "a key that differs in its last letter",
            format!("Bearer {}", ADMIN_KEY.replace('f', "e")),
            "invalid_credentials",
        ),
        (
            "a key's hash sent as the key",
            format!("Bearer {}", hash_key(ADMIN_KEY)),
            "invalid_credentials",
        ),
        (
            "an expired HS256 token",
            format!(
                "Bearer {}",
                token(Algorithm::HS256, json!({"sub": "alice", "exp": now - 10}))
            ),
            "expired_token",
        ),
        (
            "an expired RS256 token",
            format!(
                "Bearer {}",
                token(Algorithm::RS256, json!({"sub": "bob", "exp": now - 10}))
            ),
            "expired_token",
        ),
        (
            "a token with another token's claims",
            format!("Bearer {}", forged(1, &other_payload, &good_hs)),
            "invalid_credentials",
        ),
        (
            "a token with a bad signature",
            format!("Bearer {}", forged(2, "AAAA", &good_rs)),
            "invalid_credentials",
        ),
        (
            "an RS256 token signed by another key",
            format!("Bearer {signed_by_another_key}"),
            "invalid_credentials",
        ),
        (
            "an HS256 token signed with the RS256 public key",
            format!("Bearer {confused}"),
            "invalid_credentials",
        ),
        (
            "an unsigned token (alg none)",
            format!("Bearer {unsigned}"),
            "invalid_credentials",
        ),
        (
            "a token without exp",
            format!(
                "Bearer {}",
                token(Algorithm::HS256, json!({"sub": "alice", "exp": null}))
            ),
            "invalid_credentials",
        ),
        (
            "a token without sub",
            format!("Bearer {}", token(Algorithm::HS256, json!({}))),
            "invalid_credentials",
        ),
        (
            "a token of another issuer",
            format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    json!({"sub": "alice", "iss": "https://evil.test"})
                )
            ),
            "invalid_credentials",
        ),
        (
            "a token for another audience",
            format!(
                "Bearer {}",
                token(Algorithm::HS256, json!({"sub": "alice", "aud": "other"}))
            ),
            "invalid_credentials",
        ),
        (
            "a token whose scope cannot be read",
            format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    json!({"sub": "alice", "lattice_scope": ["no rule here"]})
                )
            ),
            "invalid_credentials",
        ),
        (
            "a token that does not state its scope",
            format!(
                "Bearer {}",
                token(Algorithm::HS256, json!({"sub": "alice"}))
            ),
            "invalid_credentials",
        ),
        (
            "a token whose scope is an empty list",
            format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    json!({"sub": "alice", "lattice_scope": []})
                )
            ),
            "invalid_credentials",
        ),
        (
            "a token whose scope is a string other than *",
            format!(
                "Bearer {}",
                token(
                    Algorithm::RS256,
                    json!({"sub": "alice", "lattice_scope": "everything"})
                )
            ),
            "invalid_credentials",
        ),
        (
            "a token whose scope is not text",
            format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    json!({"sub": "alice", "lattice_scope": 1})
                )
            ),
            "invalid_credentials",
        ),
        (
            "an admin token with a scope",
            format!(
                "Bearer {}",
                token(
                    Algorithm::HS256,
                    json!({"sub": "alice", "lattice_roles": ["admin"], "lattice_scope": [some_scope()]})
                )
            ),
            "invalid_credentials",
        ),
        ("garbage", "Bearer a.b.c".into(), "invalid_credentials"),
    ];
    for (what, authorization, code) in cases {
        for (method, uri, body) in [
            ("POST", "/v1/cubes/bank_crm/query", Some(&q)),
            ("GET", "/v1/cubes", None),
            ("GET", "/v1/cubes/bank_crm/members/region/province", None),
        ] {
            let r = app.call(method, uri, Some(&authorization), body).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{what} on {uri}: {}",
                r.text
            );
            r.error(401, code);
            assert!(
                r.headers[header::WWW_AUTHENTICATE]
                    .to_str()
                    .is_ok_and(|v| v.starts_with("Bearer realm=\"lattice\"")),
                "{what}"
            );
            // Nothing of the cube in a refusal.
            assert!(
                !r.text.contains("Zhejiang") && !r.text.contains("txn_amount"),
                "{what}: {}",
                r.text
            );
        }
    }
}

#[tokio::test]
async fn a_token_must_state_its_scope_and_star_means_everything() {
    let app = authed().await;
    let q = json!({"measures": ["txn_count"], "rows": ["region.province"]});
    let r = app
        .query_as(&token(Algorithm::HS256, json!({"sub": "alice"})), &q)
        .await;
    let e = r.error(401, "invalid_credentials");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("lattice_scope") && message.contains("\"*\""),
        "{message}"
    );
    // On the Cube API too, in Cube's shape.
    let r = app
        .call(
            "GET",
            "/cubejs-api/v1/meta",
            Some(&token(Algorithm::RS256, json!({"sub": "alice"}))),
            None,
        )
        .await;
    assert_eq!(
        (r.status, &r.body),
        (StatusCode::FORBIDDEN, &json!({"error": "Invalid token"}))
    );
    // "*" reads what the admin reads; a list of rules reads its scope only.
    let everything = app
        .query_as(
            &token(Algorithm::HS256, json!({"sub": "bi", "lattice_scope": "*"})),
            &q,
        )
        .await;
    let admin = app.query_as(ADMIN_KEY, &q).await;
    let scoped = app
        .query_as(
            &token(
                Algorithm::HS256,
                json!({"sub": "bi", "lattice_scope": [some_scope()]}),
            ),
            &q,
        )
        .await;
    assert_eq!(everything.status, StatusCode::OK, "{}", everything.text);
    assert_eq!(everything.body["rows"], admin.body["rows"]);
    let provinces = |r: &Reply| r.body["rows"].as_array().map_or(0, Vec::len);
    assert!(
        (1..=2).contains(&provinces(&scoped)) && provinces(&admin) > 2,
        "{}",
        scoped.text
    );
}

/// A key whose scope names a member the served data lacks sees nothing there: each such rule is
/// reported with the key, the rule and the member.
#[tokio::test]
async fn scope_members_the_data_lacks_are_reported_per_key_rule_and_member() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = crate::util::shipped_cube_in(dir.path()).await;
    let yaml = format!(
        r#"version: 1
keys:
  - {{name: admin, sha256: {admin}, roles: [admin]}}
  - {{name: ghost-manager, sha256: {manager}, scope: ["manager.manager = M9999 Nobody"]}}
  - {{name: half-right, sha256: {metrics}, scope: ["region.province in [Zhejiang, Atlantis]"]}}
  - {{name: fine, sha256: {serial}, scope: [{fine:?}]}}
"#,
        admin = hash_key(ADMIN_KEY),
        manager = hash_key(MANAGER_KEY),
        metrics = hash_key(METRICS_KEY),
        serial = hash_key(SERIAL_KEY),
        fine = some_scope(),
    );
    let auth = Auth::from_yaml(&yaml, "auth.yaml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let found = auth.warn_missing_members([served.built.data.cube()]);
    let got: Vec<(&str, &str, &str, &str)> = found
        .iter()
        .map(|m| {
            (
                m.principal.as_str(),
                m.rule.as_str(),
                m.member.as_str(),
                m.cube.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "ghost-manager",
                "manager.manager = M9999 Nobody",
                "M9999 Nobody",
                "bank_crm"
            ),
            (
                "half-right",
                "region.province in [Zhejiang, Atlantis]",
                "Atlantis",
                "bank_crm"
            ),
        ]
    );
    let said = found[0].to_string();
    assert!(
        said.contains("'ghost-manager'") && said.contains("'M9999 Nobody'"),
        "{said}"
    );
}

/// `lattice serve` logs the warning at start.
#[test]
fn serve_warns_at_start_of_scope_members_the_data_lacks() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("auth.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1\nkeys:\n  - {{name: ghost-manager, sha256: {}, scope: [\"manager.manager = M9999 Nobody\"]}}\n",
            hash_key(MANAGER_KEY)
        ),
    )
    .expect("auth file");
    let mut child = crate::cli::lattice()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--watch-ms",
            "0",
            "--no-snapshots",
            "--data",
        ])
        .arg(parquet_dir())
        .arg("--defs")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("cube_defs/bank_crm.yaml"))
        .arg("--auth")
        .arg(&file)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start lattice serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut said = Vec::new();
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let serving = line.contains("serving on http://");
        said.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let said = said.join("\n");
    assert!(
        said.lines().any(|l| l.contains("WARN")
            && l.contains("ghost-manager")
            && l.contains("manager.manager = M9999 Nobody")
            && l.contains("'M9999 Nobody'")),
        "{said}"
    );
}

#[tokio::test]
async fn open_routes_admin_routes_and_metrics() {
    let app = authed().await;
    // Open to anyone.
    for uri in ["/health", "/openapi.json"] {
        let r = app.call("GET", uri, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
    // Every other route, the unknown ones too, needs a principal first.
    for uri in [
        "/v1/cubes",
        "/v1/cubes/bank_crm",
        "/v1/cubes/bank_crm/definition",
        "/v1/cubes/nope",
        "/nowhere",
        "/metrics",
    ] {
        app.call("GET", uri, None, None)
            .await
            .error(401, "missing_credentials");
    }
    // Replacing a definition needs the role admin: 403 for the others, in the one shape.
    let yaml = "not: a definition\n";
    for key in [MANAGER_KEY, METRICS_KEY, SERIAL_KEY] {
        let r = app
            .call(
                "PUT",
                "/v1/cubes/bank_crm/definition",
                Some(&format!("Bearer {key}")),
                None,
            )
            .await;
        let e = r.error(403, "forbidden");
        assert!(
            e["message"].as_str().is_some_and(|m| m.contains("'admin'")),
            "{e}"
        );
    }
    let jwt_user = token(
        Algorithm::HS256,
        json!({"sub": "carol", "lattice_roles": ["analyst"], "lattice_scope": "*"}),
    );
    app.as_(&jwt_user, "PUT", "/v1/cubes/bank_crm/definition", None)
        .await
        .error(403, "forbidden");
    // The admin gets past the gate (and then the definition's own checks: a YAML body is
    // required, and this one does not validate).
    let r = app
        .as_(ADMIN_KEY, "PUT", "/v1/cubes/bank_crm/definition", None)
        .await;
    r.error(415, "unsupported_media_type");
    let req = Request::put("/v1/cubes/bank_crm/definition")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(yaml))
        .expect("request");
    let resp = app.router.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // An admin token works as the admin key does.
    let admin_jwt = token(
        Algorithm::RS256,
        json!({"sub": "ops", "lattice_roles": ["admin"], "lattice_scope": "*"}),
    );
    app.as_(&admin_jwt, "PUT", "/v1/cubes/bank_crm/definition", None)
        .await
        .error(415, "unsupported_media_type");

    // /metrics: admin and the metrics role; a scoped principal without it gets 403.
    for key in [ADMIN_KEY, METRICS_KEY] {
        let r = app.as_(key, "GET", "/metrics", None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(r.text.contains("lattice_http_requests_total"));
    }
    app.as_(MANAGER_KEY, "GET", "/metrics", None)
        .await
        .error(403, "forbidden");
    // Reading the definition is for every principal.
    let r = app
        .as_(MANAGER_KEY, "GET", "/v1/cubes/bank_crm/definition", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn the_cube_api_takes_the_same_principals_in_cubes_shape() {
    let app = authed().await;
    let load = format!(
        "/cubejs-api/v1/load?query={}",
        "%7B%22measures%22%3A%5B%22bank_crm.txn_count%22%5D%7D"
    );
    for uri in ["/cubejs-api/v1/meta", load.as_str()] {
        let r = app.call("GET", uri, None, None).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.body, json!({"error": "Authorization header isn't set"}));
        let r = app.call("GET", uri, Some("wrong"), None).await;
        assert_eq!(
            (r.status, &r.body),
            (StatusCode::FORBIDDEN, &json!({"error": "Invalid token"}))
        );
        let expired = token(Algorithm::HS256, json!({"sub": "a", "exp": unix_now() - 5}));
        let r = app.call("GET", uri, Some(&expired), None).await;
        assert_eq!(
            (r.status, &r.body),
            (StatusCode::FORBIDDEN, &json!({"error": "Token expired"}))
        );
        // The Cube client sends its token raw; Bearer works too.
        for authorization in [ADMIN_KEY.to_string(), format!("Bearer {ADMIN_KEY}")] {
            let r = app.call("GET", uri, Some(&authorization), None).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        }
        let jwt = token(
            Algorithm::RS256,
            json!({"sub": "dash", "lattice_scope": "*"}),
        );
        let r = app.call("GET", uri, Some(&jwt), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
}

/// Both fact tables by customer and month, with totals: DataFusion work of many milliseconds
/// that never completes on its first poll.
fn heavy(offset: u64) -> Value {
    json!({"measures": ["txn_amount", "deposit_balance"], "rows": ["customer.id", "time.month"],
           "totals": true, "limit": 5, "offset": offset})
}

#[tokio::test]
async fn a_principal_s_own_limits_apply() {
    // No cache: each heavy question really runs.
    let scope = some_scope();
    let app = app(Some(&move |d: &Path| auth_file(d, &scope)), |c, _| {
        c.cache_entries = 0
    })
    .await;
    // A time limit of 1 ms: the heavy question is cancelled with 504; a cuboid answer is not.
    let r = app.query_as(HASTY_KEY, &heavy(0)).await;
    let e = r.error(504, "query_timeout");
    assert_eq!(e["details"]["limit_ms"], 1);
    // One query at a time and none waiting: a second at once is refused with 429 while the
    // first runs; others are not held up by it.
    let first_query = heavy(1);
    let first = app.query_as(SERIAL_KEY, &first_query);
    let second = async {
        // Let the first take its turn and go to the query runtime.
        tokio::task::yield_now().await;
        let refused = app.query_as(SERIAL_KEY, &heavy(2)).await;
        let other = app.query_as(ADMIN_KEY, &heavy(3)).await;
        (refused, other)
    };
    let (first, (refused, other)) = tokio::join!(first, second);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    let e = refused.error(429, "too_many_queries");
    assert_eq!(
        (&e["details"]["principal"], &e["details"]["max_concurrent"]),
        (&json!("serial"), &json!(1))
    );
    // Afterwards it may ask again.
    let r = app.query_as(SERIAL_KEY, &heavy(4)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// The audit file's lines, once `count` of them are there.
async fn audit_lines(path: &Path, count: usize) -> Vec<Value> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if lines.len() >= count {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {count} audit lines in {}", path.display());
}

#[tokio::test]
async fn the_audit_log_says_who_asked_what_and_holds_no_secret() {
    let scope = some_scope();
    let app = app(Some(&move |d: &Path| auth_file(d, &scope)), |c, dir| {
        c.audit = Some(AuditConfig {
            path: dir.join("audit.log"),
            max_bytes: 1 << 20,
            keep: 2,
        });
    })
    .await;
    let jwt = token(
        Algorithm::HS256,
        json!({"sub": "alice@bank", "lattice_scope": [some_scope()]}),
    );
    let q = json!({"measures": ["txn_count"], "rows": ["region.province"]});
    let admin = app.query_as(ADMIN_KEY, &q).await;
    let scoped = app.query_as(&jwt, &q).await;
    let denied = app.query_as("not-a-key", &q).await;
    denied.error(401, "invalid_credentials");
    let members = app
        .as_(
            MANAGER_KEY,
            "GET",
            "/v1/cubes/bank_crm/members/region/province?limit=5",
            None,
        )
        .await;
    let _ = app.as_(ADMIN_KEY, "GET", "/metrics", None).await;
    let _ = app.call("GET", "/health", None, None).await;
    let cube_api = app
        .call(
            "POST",
            "/cubejs-api/v1/load",
            Some(MANAGER_KEY),
            Some(&json!({"query": {"measures": ["bank_crm.txn_count"], "dimensions": ["bank_crm.region_province"]}})),
        )
        .await;
    assert_eq!(cube_api.status, StatusCode::OK, "{}", cube_api.text);
    let path = app.dir.path().join("audit.log");
    let lines = audit_lines(&path, 5).await;
    // /health and /metrics are not audited.
    assert_eq!(lines.len(), 5, "{lines:#?}");
    let rows = |r: &crate::auth::Reply| r.body["rows"].as_array().map(Vec::len);
    let want = [
        ("admin", "key", 200, rows(&admin)),
        ("alice@bank", "jwt", 200, rows(&scoped)),
        ("", "none", 401, None),
        (
            "manager",
            "key",
            200,
            members.body["members"].as_array().map(Vec::len),
        ),
        (
            "manager",
            "key",
            200,
            Some(cube_api.body["data"].as_array().map_or(0, Vec::len)),
        ),
    ];
    for (line, (who, how, status, rows)) in lines.iter().zip(want) {
        assert_eq!(line["principal"].as_str().unwrap_or(""), who, "{line}");
        assert_eq!(line["auth"], how, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["rows"].as_u64().map(|r| r as usize), rows, "{line}");
        assert!(
            line["elapsed_us"].is_u64() && line["time"].is_string(),
            "{line}"
        );
    }
    assert_eq!(lines[0]["route"], "/v1/cubes/{cube}/query");
    assert_eq!(lines[0]["cube"], "bank_crm");
    assert_eq!(lines[0]["body"], q);
    assert!(lines[0].get("scope").is_none(), "{}", lines[0]);
    assert_eq!(
        lines[1]["scope"].as_str().map(|s| !s.is_empty()),
        Some(true)
    );
    assert_eq!(lines[2]["error"], "invalid_credentials");
    assert_eq!(lines[3]["params"], "limit=5");
    assert_eq!(lines[4]["route"], "/cubejs-api/v1/load");
    assert_eq!(lines[4]["cube"], "bank_crm");
    // No key, hash, token or secret anywhere.
    let text = std::fs::read_to_string(&path).expect("audit log");
    for secret in [
        ADMIN_KEY.to_string(),
        MANAGER_KEY.to_string(),
        hash_key(ADMIN_KEY),
        hash_key(MANAGER_KEY),
        jwt.clone(),
        jwt.split('.').nth(2).expect("signature").to_string(),
        HS256_SECRET.to_string(),
        "not-a-key".to_string(),
        "Bearer".to_string(),
    ] {
        assert!(
            !text.contains(&secret),
            "the audit log holds {secret:?}:\n{text}"
        );
    }
}

#[tokio::test]
async fn without_auth_everyone_is_an_anonymous_admin() {
    let app = app(None, |_, _| {}).await;
    let r = app
        .call("POST", "/v1/cubes/bank_crm/query", None, Some(&by_year()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call("GET", "/v1/cubes/bank_crm", None, None).await;
    assert!(r.body["build"].is_object(), "{}", r.text);
}

#[test]
fn serve_without_auth_refuses_an_address_beyond_loopback() {
    let out = crate::cli::lattice()
        // Refused before anything is read or built.
        .args(["serve", "--addr", "0.0.0.0:0", "--data", "/nonexistent"])
        .output()
        .expect("run lattice");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("has no --auth") && stderr.contains("127.0.0.1"),
        "{stderr}"
    );
}

#[test]
fn hash_key_prints_the_sha256_of_standard_input() {
    use std::io::Write;
    let mut child = crate::cli::lattice()
        .args(["auth", "hash-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run lattice");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"demo-admin-key\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ac5bb3526d3be432ba19fb1fc0712d350c160bd2169cd24401c9fcaeaac2d860"
    );
    // The shipped example holds that hash for its admin.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/auth.yaml"))
            .expect("examples/auth.yaml");
    assert!(example.contains(&hash_key("demo-admin-key")));
    assert!(example.contains(&hash_key("demo-manager-key")));
    let out = crate::cli::lattice()
        .args(["auth", "check"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/auth.yaml"))
        .output()
        .expect("run lattice");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("key demo-manager: roles [manager], scope: manager.manager"),
        "{stdout}"
    );
    assert!(!stdout.contains(&hash_key("demo-admin-key")), "{stdout}");
}

/// How much the gate and the audit log add to a cached cuboid answer, through the router
/// (`cargo test --test it audit_overhead -- --ignored --nocapture`; dev profile, so only the
/// ratios mean anything).
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn audit_overhead() {
    let scope = some_scope();
    let plain = app(None, |_, _| {}).await;
    let audited = app(None, |c, dir| {
        c.audit = Some(AuditConfig {
            path: dir.join("audit.log"),
            max_bytes: 1 << 30,
            keep: 1,
        });
    })
    .await;
    let keyed = app(Some(&move |d: &Path| auth_file(d, &scope)), |c, dir| {
        c.audit = Some(AuditConfig {
            path: dir.join("audit.log"),
            max_bytes: 1 << 30,
            keep: 1,
        });
    })
    .await;
    let q = by_year();
    let n = 5000;
    for (what, app, key) in [
        ("no auth, no audit", &plain, None),
        ("no auth, audit log", &audited, None),
        (
            "API key, audit log",
            &keyed,
            Some(format!("Bearer {ADMIN_KEY}")),
        ),
    ] {
        for _ in 0..200 {
            app.call("POST", "/v1/cubes/bank_crm/query", key.as_deref(), Some(&q))
                .await;
        }
        let started = std::time::Instant::now();
        for _ in 0..n {
            let r = app
                .call("POST", "/v1/cubes/bank_crm/query", key.as_deref(), Some(&q))
                .await;
            assert_eq!(r.status, StatusCode::OK);
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        println!("{what}: {us:.1} µs a request, {:.0} requests/s", 1e6 / us);
    }
}
