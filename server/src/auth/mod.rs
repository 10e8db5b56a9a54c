//! Who is asking: API keys and JWT bearer tokens, turned into a [`Principal`] that every route
//! answers for.
//!
//! ```text
//! Authorization: Bearer <key or JWT> --Auth::authenticate--> Principal { name, access, limits }
//!   a JWT (three dot-separated parts, when the file has `jwt:`) --jwt::JwtConfig::verify
//!   anything else --SHA-256--> compared with every key's hash in the file (constant time)
//! ```
//!
//! - [`Auth`]: the principals of the auth file ([`file`] reads and validates it).
//! - [`Principal`]: a name for the audit log (never the key or token), the engine's
//!   [`Access`] (row-level scope and roles) and the per-principal limits.
//! - Without `--auth` every request is [`Principal::anonymous`]: everything, admin.
//! - [`questions`]: the distinct questions each principal asked lately, for the limit on them.
//! - [`Auth::missing_members`]: scope rules naming members the served data lacks (warned
//!   about at start and on each reload).
//!
//! Keys are stored as their SHA-256 only. A key is a long random string (`openssl rand -hex
//! 32`), so an unsalted hash is as strong as the key; a leaked auth file gives nobody a key.
//! The hash of what a client sends is compared with every stored hash in constant time, so the
//! time an answer takes says nothing about how close a guess was.

pub(crate) mod file;
pub(crate) mod jwt;
pub(crate) mod questions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub use file::AuthFileError;
pub use lattice_engine::access::{Access, ScopeRule};
use lattice_engine::store::Cube;

use crate::error::ApiError;
use crate::query::Admission;
use crate::registry::lock;

/// The role that may replace definitions and read `/metrics`; it carries no scope.
pub const ROLE_ADMIN: &str = "admin";
/// The role that may read `/metrics` (a Prometheus scraper's key).
pub const ROLE_METRICS: &str = "metrics";

/// The per-principal limits.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Queries one principal runs at once.
    pub max_concurrent: usize,
    /// Queries of one principal waiting for a turn; one more is refused (429).
    pub max_queued: usize,
    /// Replaces the server's query time limit for this principal.
    pub query_timeout: Option<Duration>,
}

/// One API key of the auth file.
#[derive(Debug)]
pub(crate) struct KeyEntry {
    pub name: String,
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    pub access: Access,
    pub turns: Arc<Admission>,
    pub query_timeout: Option<Duration>,
}

/// The principals a server lets in.
#[derive(Debug)]
pub struct Auth {
    keys: Vec<KeyEntry>,
    jwt: Option<jwt::JwtConfig>,
    /// Limits of token subjects (keys have their own).
    defaults: Limits,
    /// The running queries of each token subject: shared while any is in flight, dropped
    /// when none is, so the map holds no more than the subjects asking now.
    subject_turns: Mutex<HashMap<String, Weak<Admission>>>,
    /// The distinct questions each principal asked in the last minute.
    questions: questions::Questions,
}

/// A key's scope rule that names a member its cube does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingMember {
    /// The key's name in the auth file.
    pub principal: String,
    pub rule: String,
    pub member: String,
    pub cube: String,
}

impl std::fmt::Display for MissingMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key '{}': scope rule '{}' names '{}', which is not a member of cube '{}' (the key sees none of those rows); check the member's spelling, or that the data is the one the auth file was written for",
            self.principal, self.rule, self.member, self.cube
        )
    }
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The server runs without `--auth`.
    None,
    Key,
    Jwt,
}

/// Who a request is answered for.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's name in the auth file, or the token's `sub`; never a secret.
    pub name: String,
    pub method: Method,
    /// What the engine lets this principal see.
    pub access: Access,
    /// Its own turns (per-principal concurrency), beside the server's.
    pub(crate) turns: Option<Arc<Admission>>,
    /// Its own query time limit, in place of the server's.
    pub query_timeout: Option<Duration>,
}

impl Principal {
    /// Every request of a server without `--auth`.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            method: Method::None,
            access: Access::everything(),
            turns: None,
            query_timeout: None,
        }
    }

    /// May replace definitions: the server has no auth, or the principal has the role
    /// `admin` (which the auth file and tokens only allow without a scope).
    pub fn is_admin(&self) -> bool {
        self.method == Method::None
            || (self.access.scope.is_empty() && self.access.roles.iter().any(|r| r == ROLE_ADMIN))
    }

    /// May read `/metrics`.
    pub fn may_read_metrics(&self) -> bool {
        self.is_admin() || self.access.roles.iter().any(|r| r == ROLE_METRICS)
    }

    /// 403 unless [`Principal::is_admin`].
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(forbidden(format!(
                "{what} needs a principal with the role '{ROLE_ADMIN}'; '{}' does not have it",
                self.name
            )))
        }
    }
}

/// 403 `forbidden`: who is asking is known, and may not do this.
pub fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// Why a request was not let in (401).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header.
    Missing,
    /// A header that is not `Bearer <credential>`.
    Malformed,
    /// No key in the file has this hash.
    UnknownKey,
    /// A token past its `exp`.
    Expired,
    /// A token that does not verify, and why.
    Invalid(&'static str),
}

impl Denied {
    /// The error document: 401 with `WWW-Authenticate: Bearer` (RFC 6750).
    pub fn into_api_error(self) -> (ApiError, HeaderValue) {
        let (code, message) = match self {
            Denied::Missing => (
                "missing_credentials",
                "this server requires authentication: send `Authorization: Bearer <API key or JWT>`".to_string(),
            ),
            Denied::Malformed => (
                "invalid_credentials",
                "the Authorization header must be `Bearer <API key or JWT>`".to_string(),
            ),
            Denied::UnknownKey => (
                "invalid_credentials",
                "the API key is not valid".to_string(),
            ),
            Denied::Expired => (
                "expired_token",
                "the token has expired; get a new one".to_string(),
            ),
            Denied::Invalid(why) => ("invalid_credentials", why.to_string()),
        };
        let challenge = if code == "missing_credentials" {
            HeaderValue::from_static("Bearer realm=\"lattice\"")
        } else {
            HeaderValue::from_static("Bearer realm=\"lattice\", error=\"invalid_token\"")
        };
        (
            ApiError::new(StatusCode::UNAUTHORIZED, code, message),
            challenge,
        )
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let (error, challenge) = self.into_api_error();
        let mut response = error.into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
        response
    }
}

/// The hex SHA-256 of a key, as the auth file stores it.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Equal digests, in time that does not depend on where they differ.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Auth {
    pub(crate) fn new(keys: Vec<KeyEntry>, jwt: Option<jwt::JwtConfig>, defaults: Limits) -> Auth {
        Auth {
            keys,
            jwt,
            defaults,
            subject_turns: Mutex::new(HashMap::new()),
            questions: questions::Questions::default(),
        }
    }

    /// Lets a question (`parts`: method, path, query string, body) of `principal` through, or
    /// says how long until it would be: at most `limit` distinct questions a minute for a
    /// principal whose answers are restricted (an admin, or one that sees everything, gains
    /// nothing by differencing and is not counted).
    pub(crate) fn admit_question(
        &self,
        principal: &Principal,
        parts: &[&[u8]],
        limit: usize,
    ) -> Result<(), Duration> {
        if principal.is_admin() || principal.access.is_everything() {
            return Ok(());
        }
        let question = self.questions.key(parts);
        self.questions.admit(
            (principal.method, &principal.name),
            question,
            limit,
            Instant::now(),
        )
    }

    /// Scope rules of the file's keys that name a member `cube` does not have: such a key sees
    /// none of those rows, which is likely a mistake (a manager of another data set, a typo).
    /// Levels the cube lacks are [`Access::check`]'s to report.
    pub fn missing_members(&self, cube: &Cube) -> Vec<MissingMember> {
        let mut found = Vec::new();
        for key in &self.keys {
            for rule in &key.access.scope {
                let Some(level) = cube.model.level(&rule.level) else {
                    continue;
                };
                let members = cube.members(level);
                for value in rule.values.iter().filter(|v| members.code(v).is_none()) {
                    found.push(MissingMember {
                        principal: key.name.clone(),
                        rule: rule.to_string(),
                        member: value.clone(),
                        cube: cube.model.name.clone(),
                    });
                }
            }
        }
        found
    }

    /// [`Auth::missing_members`] of every cube, each logged as a warning; at start and
    /// whenever a cube's data is reloaded.
    pub fn warn_missing_members<'a>(
        &self,
        cubes: impl IntoIterator<Item = &'a Cube>,
    ) -> Vec<MissingMember> {
        let found: Vec<MissingMember> = cubes
            .into_iter()
            .flat_map(|c| self.missing_members(c))
            .collect();
        for m in &found {
            tracing::warn!(principal = %m.principal, rule = %m.rule, member = %m.member, cube = %m.cube, "{m}");
        }
        found
    }

    /// The names of the keys in the file.
    pub fn key_names(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.name.clone()).collect()
    }

    /// The access of every key, to check against each cube's model at start and on reload.
    pub fn key_access(&self) -> impl Iterator<Item = (&str, &Access)> {
        self.keys.iter().map(|k| (k.name.as_str(), &k.access))
    }

    /// Who sent `authorization`. With `raw_ok`, a credential without the `Bearer ` scheme is
    /// accepted too (the Cube client sends its token that way).
    pub fn authenticate(
        &self,
        authorization: Option<&HeaderValue>,
        raw_ok: bool,
    ) -> Result<Principal, Denied> {
        let value = authorization.ok_or(Denied::Missing)?;
        let value = value.to_str().map_err(|_| Denied::Malformed)?.trim();
        if value.eq_ignore_ascii_case("bearer") {
            return Err(Denied::Missing);
        }
        let credential = match value.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ if raw_ok && !value.contains(' ') => value,
            _ => return Err(Denied::Malformed),
        };
        if credential.is_empty() {
            return Err(Denied::Missing);
        }
        if let Some(jwt) = &self.jwt
            && credential.split('.').count() == 3
        {
            let verified = jwt.verify(credential)?;
            return Ok(Principal {
                turns: Some(self.subject_turns(&verified.subject)),
                name: verified.subject,
                method: Method::Jwt,
                access: verified.access,
                query_timeout: self.defaults.query_timeout,
            });
        }
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        // Every entry is compared, found or not.
        let found = self
            .keys
            .iter()
            .filter(|k| same_digest(&k.digest, &digest))
            .fold(None, |_, k| Some(k))
            .ok_or(Denied::UnknownKey)?;
        Ok(Principal {
            name: found.name.clone(),
            method: Method::Key,
            access: found.access.clone(),
            turns: Some(found.turns.clone()),
            query_timeout: found.query_timeout,
        })
    }

    fn subject_turns(&self, subject: &str) -> Arc<Admission> {
        let mut map = lock(&self.subject_turns);
        if let Some(turns) = map.get(subject).and_then(Weak::upgrade) {
            return turns;
        }
        if map.len() >= 1024 {
            map.retain(|_, w| w.strong_count() > 0);
        }
        let turns = Arc::new(Admission::new(
            self.defaults.max_concurrent,
            self.defaults.max_queued,
        ));
        map.insert(subject.to_string(), Arc::downgrade(&turns));
        turns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let text = format!(
            "version: 1\nkeys:\n  - {{name: admin, sha256: {}, roles: [admin]}}\n  - {{name: m, sha256: {}, scope: [\"manager.manager = M0001 A B\"], max_concurrent: 2, query_timeout_ms: 50}}\n",
            hash_key("admin-secret"),
            hash_key("manager-secret")
        );
        Auth::from_yaml(&text, "auth.yaml", std::path::Path::new(".")).expect("valid")
    }

    fn bearer(s: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {s}")).expect("header")
    }

    #[test]
    fn hashes_are_sha256_hex() {
        // echo -n abc | sha256sum
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys_are_found_by_their_hash() {
        let a = auth();
        let p = a
            .authenticate(Some(&bearer("admin-secret")), false)
            .expect("admin");
        assert_eq!((p.name.as_str(), p.method), ("admin", Method::Key));
        assert!(p.is_admin() && p.may_read_metrics());
        let p = a
            .authenticate(Some(&bearer("manager-secret")), false)
            .expect("manager");
        assert!(!p.is_admin() && !p.may_read_metrics());
        assert_eq!(p.access.scope.len(), 1);
        assert_eq!(p.query_timeout, Some(Duration::from_millis(50)));
        assert_eq!(p.turns.as_ref().map(|t| t.max_running()), Some(2));
    }

    #[test]
    fn missing_malformed_and_unknown_credentials_are_told_apart() {
        let a = auth();
        assert_eq!(a.authenticate(None, false).err(), Some(Denied::Missing));
        assert_eq!(
            a.authenticate(Some(&HeaderValue::from_static("Bearer ")), false)
                .err(),
            Some(Denied::Missing)
        );
        assert_eq!(
            a.authenticate(Some(&HeaderValue::from_static("Basic YTpi")), false)
                .err(),
            Some(Denied::Malformed)
        );
        assert_eq!(
            a.authenticate(Some(&HeaderValue::from_static("admin-secret")), false)
                .err(),
            Some(Denied::Malformed)
        );
        assert_eq!(
            a.authenticate(Some(&bearer("admin-secreT")), false).err(),
            Some(Denied::UnknownKey)
        );
        // The Cube client's raw token.
        let p = a
            .authenticate(Some(&HeaderValue::from_static("admin-secret")), true)
            .expect("raw on the Cube API");
        assert_eq!(p.name, "admin");
    }

    #[test]
    fn the_anonymous_principal_is_admin_and_sees_everything() {
        let p = Principal::anonymous();
        assert!(p.is_admin() && p.access.is_everything() && p.turns.is_none());
        // Roles alone restrict nothing; the admin role needs no scope.
        let a = auth();
        let admin = a
            .authenticate(Some(&bearer("admin-secret")), false)
            .expect("admin");
        assert!(admin.access.scope.is_empty() && !admin.access.is_everything());
    }

    #[test]
    fn a_subject_s_turns_are_shared_while_in_use_and_then_dropped() {
        let a = auth();
        let one = a.subject_turns("alice");
        let two = a.subject_turns("alice");
        assert!(Arc::ptr_eq(&one, &two));
        drop((one, two));
        assert!(
            lock(&a.subject_turns)
                .get("alice")
                .is_some_and(|w| w.strong_count() == 0)
        );
    }
}
