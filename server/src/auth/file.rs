//! The auth file (`lattice serve --auth FILE`): raw types that mirror the YAML exactly, and
//! their validation into an [`Auth`]. Every problem in the file is collected before the server
//! refuses to start, each naming the entry and what would be valid.
//!
//! ```yaml
//! version: 1
//! defaults: { max_concurrent: 8, max_queued: 64, query_timeout_ms: 30000 }
//! keys:
//!   - name: admin
//!     sha256: 5e884898...          # hex SHA-256 of the key: `lattice auth hash-key`
//!     roles: [admin]
//!   - name: manager-m0017
//!     sha256: 9f86d081...
//!     scope: ["manager.manager = M0017 Li Wei"]
//!     max_concurrent: 2
//! jwt:
//!   hs256_secret_env: LATTICE_JWT_SECRET   # or hs256_secret_file
//!   rs256_public_key_file: idp.pem
//!   issuer: https://idp.example            # checked when given
//!   audience: lattice                      # checked when given
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::jwt::{JwtConfig, JwtKeys};
use super::{Access, Auth, KeyEntry, Limits, ROLE_ADMIN, ScopeRule};
use crate::query::Admission;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    version: u32,
    #[serde(default)]
    defaults: RawLimits,
    #[serde(default)]
    keys: Vec<RawKey>,
    jwt: Option<RawJwt>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_concurrent: Option<usize>,
    max_queued: Option<usize>,
    query_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    name: String,
    sha256: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scope: Vec<String>,
    max_concurrent: Option<usize>,
    max_queued: Option<usize>,
    query_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    hs256_secret_env: Option<String>,
    hs256_secret_file: Option<PathBuf>,
    rs256_public_key_file: Option<PathBuf>,
    issuer: Option<String>,
    audience: Option<String>,
    #[serde(default = "default_leeway")]
    leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    30
}

/// Why an auth file cannot be used: every problem found, one per line.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read the auth file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {}", problems.join("\n  "))]
    Invalid { path: String, problems: Vec<String> },
}

/// Server-wide defaults of the per-principal limits, when the file gives none.
const DEFAULT_MAX_CONCURRENT: usize = 8;
const DEFAULT_MAX_QUEUED: usize = 64;
const MIN_HS256_SECRET: usize = 32;

impl Auth {
    /// Reads and validates the auth file at `path` (relative paths in it resolve against its
    /// folder).
    pub fn from_file(path: &Path) -> Result<Auth, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Auth::from_yaml(&text, &path.display().to_string(), base)
    }

    /// Validates auth-file text; `name` is how errors name it, `base` the folder relative
    /// paths resolve against.
    pub fn from_yaml(text: &str, name: &str, base: &Path) -> Result<Auth, AuthFileError> {
        let raw: RawAuth = serde_saphyr::from_str(text).map_err(|e| AuthFileError::Syntax {
            path: name.to_string(),
            message: e.to_string(),
        })?;
        let mut problems = Vec::new();
        if raw.version != 1 {
            problems.push(format!(
                "version {} is not known; this server reads version: 1",
                raw.version
            ));
        }
        let defaults = limits(
            "defaults",
            &raw.defaults,
            &Limits {
                max_concurrent: DEFAULT_MAX_CONCURRENT,
                max_queued: DEFAULT_MAX_QUEUED,
                query_timeout: None,
            },
            &mut problems,
        );
        let mut keys: Vec<KeyEntry> = Vec::new();
        for (i, k) in raw.keys.iter().enumerate() {
            let at = format!("keys[{i}] '{}'", k.name);
            if k.name.trim().is_empty() {
                problems.push(format!("keys[{i}]: the name is empty"));
            }
            if raw.keys[..i].iter().any(|o| o.name == k.name) {
                problems.push(format!(
                    "{at}: the name is used twice; names must be unique"
                ));
            }
            let digest = match parse_sha256(&k.sha256) {
                Some(d) => d,
                None => {
                    problems.push(format!(
                        "{at}: sha256 must be 64 hexadecimal digits (the SHA-256 of the key, as `lattice auth hash-key` prints it)"
                    ));
                    [0; 32]
                }
            };
            if keys.iter().any(|o| o.digest == digest) {
                problems.push(format!(
                    "{at}: the same key hash as another entry; each key must be different"
                ));
            }
            let access = access(&at, &k.roles, &k.scope, &mut problems);
            let lim = limits(
                &at,
                &RawLimits {
                    max_concurrent: k.max_concurrent,
                    max_queued: k.max_queued,
                    query_timeout_ms: k.query_timeout_ms,
                },
                &defaults,
                &mut problems,
            );
            keys.push(KeyEntry {
                name: k.name.clone(),
                digest,
                access,
                turns: Arc::new(Admission::new(lim.max_concurrent, lim.max_queued)),
                query_timeout: lim.query_timeout,
            });
        }
        let jwt = raw.jwt.as_ref().and_then(|j| jwt(j, base, &mut problems));
        if keys.is_empty() && jwt.is_none() && problems.is_empty() {
            problems.push(
                "no principals: give `keys:`, `jwt:` or both (an auth file that lets nobody in is a mistake)"
                    .into(),
            );
        }
        if !problems.is_empty() {
            return Err(AuthFileError::Invalid {
                path: name.to_string(),
                problems,
            });
        }
        Ok(Auth::new(keys, jwt, defaults))
    }
}

fn limits(at: &str, raw: &RawLimits, inherit: &Limits, problems: &mut Vec<String>) -> Limits {
    if raw.max_concurrent == Some(0) {
        problems.push(format!("{at}: max_concurrent must be at least 1"));
    }
    if raw.query_timeout_ms == Some(0) {
        problems.push(format!("{at}: query_timeout_ms must be at least 1"));
    }
    Limits {
        max_concurrent: raw.max_concurrent.unwrap_or(inherit.max_concurrent).max(1),
        max_queued: raw.max_queued.unwrap_or(inherit.max_queued),
        query_timeout: raw
            .query_timeout_ms
            .map(Duration::from_millis)
            .or(inherit.query_timeout),
    }
}

/// A principal's access from its roles and scope rules (the file's and a token's alike).
pub(super) fn access(
    at: &str,
    roles: &[String],
    scope: &[String],
    problems: &mut Vec<String>,
) -> Access {
    let mut rules = Vec::new();
    for text in scope {
        match text.parse::<ScopeRule>() {
            Ok(r) => rules.push(r),
            Err(e) => problems.push(format!("{at}: scope '{text}': {e}")),
        }
    }
    if roles.iter().any(|r| r == ROLE_ADMIN) && !rules.is_empty() {
        problems.push(format!(
            "{at}: the role '{ROLE_ADMIN}' may replace definitions (and so read anything), so it cannot carry a scope; give the scope to a principal without '{ROLE_ADMIN}'"
        ));
    }
    Access {
        scope: rules,
        roles: roles.to_vec(),
    }
}

fn jwt(raw: &RawJwt, base: &Path, problems: &mut Vec<String>) -> Option<JwtConfig> {
    let before = problems.len();
    let hs256 = match (&raw.hs256_secret_env, &raw.hs256_secret_file) {
        (Some(_), Some(_)) => {
            problems.push("jwt: give hs256_secret_env or hs256_secret_file, not both".to_string());
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(s) => Some(s.into_bytes()),
            Err(_) => {
                problems.push(format!(
                    "jwt: hs256_secret_env names the environment variable {var}, which is not set"
                ));
                None
            }
        },
        (None, Some(file)) => {
            let path = base.join(file);
            match std::fs::read(&path) {
                // A trailing newline from an editor or `echo` is not part of the secret.
                Ok(mut s) => {
                    while s.last().is_some_and(|b| b.is_ascii_whitespace()) {
                        s.pop();
                    }
                    Some(s)
                }
                Err(e) => {
                    problems.push(format!(
                        "jwt: cannot read hs256_secret_file {}: {e}",
                        path.display()
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    };
    if let Some(s) = &hs256
        && s.len() < MIN_HS256_SECRET
    {
        problems.push(format!(
            "jwt: the HS256 secret is {} bytes; use at least {MIN_HS256_SECRET} random bytes",
            s.len()
        ));
    }
    let rs256 = raw.rs256_public_key_file.as_ref().and_then(|file| {
        let path = base.join(file);
        let pem = match std::fs::read(&path) {
            Ok(p) => p,
            Err(e) => {
                problems.push(format!(
                    "jwt: cannot read rs256_public_key_file {}: {e}",
                    path.display()
                ));
                return None;
            }
        };
        match jsonwebtoken::DecodingKey::from_rsa_pem(&pem) {
            Ok(k) => Some(k),
            Err(e) => {
                problems.push(format!(
                    "jwt: rs256_public_key_file {} is not an RSA public key in PEM ({e})",
                    path.display()
                ));
                None
            }
        }
    });
    if raw.hs256_secret_env.is_none()
        && raw.hs256_secret_file.is_none()
        && raw.rs256_public_key_file.is_none()
    {
        problems.push(
            "jwt: give a key to verify tokens with: hs256_secret_env, hs256_secret_file or rs256_public_key_file".into(),
        );
    }
    let hs256 = hs256.and_then(|s| match jsonwebtoken::DecodingKey::from_secret(&s) {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(format!("jwt: the HS256 secret cannot be used ({e})"));
            None
        }
    });
    if problems.len() > before {
        return None;
    }
    Some(JwtConfig {
        keys: JwtKeys { hs256, rs256 },
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        leeway: raw.leeway_seconds,
    })
}

/// The 32 bytes of a hex SHA-256 (either case; `sha256:` prefix allowed).
fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Auth, AuthFileError> {
        Auth::from_yaml(text, "auth.yaml", Path::new("."))
    }

    fn problems(text: &str) -> String {
        match read(text) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{text}"),
        }
    }

    #[test]
    fn the_hash_is_read_in_either_case_and_with_a_prefix() {
        let h = super::super::hash_key("demo-admin-key");
        assert_eq!(parse_sha256(&h), parse_sha256(&h.to_uppercase()));
        assert_eq!(parse_sha256(&format!("sha256:{h}")), parse_sha256(&h));
        assert_eq!(parse_sha256("abc"), None);
        assert_eq!(parse_sha256(&"zz".repeat(32)), None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = format!(
            "version: 1\nkeys:\n  - {{name: a, sha256: nothex}}\n  - {{name: a, sha256: {h}, roles: [admin], scope: [\"manager.manager = M1\"]}}\n  - {{name: b, sha256: {h}, max_concurrent: 0}}\n",
            h = super::super::hash_key("k")
        );
        let msg = problems(&text);
        for part in [
            "keys[0] 'a': sha256 must be 64 hexadecimal digits",
            "keys[1] 'a': the name is used twice",
            "keys[1] 'a': the role 'admin' may replace definitions",
            "keys[2] 'b': the same key hash as another entry",
            "keys[2] 'b': max_concurrent must be at least 1",
        ] {
            assert!(msg.contains(part), "missing {part:?} in:\n{msg}");
        }
    }

    #[test]
    fn unknown_fields_a_bad_version_and_no_principals_are_refused() {
        assert!(problems("version: 1\nkeys: []\nextra: 1\n").contains("extra"));
        assert!(problems("version: 2\nkeys: []\n").contains("version 2 is not known"));
        assert!(problems("version: 1\n").contains("no principals"));
        assert!(problems("version: 1\njwt: {}\n").contains("give a key to verify tokens"));
        assert!(
            problems("version: 1\njwt: {hs256_secret_env: LATTICE_TEST_SURELY_UNSET_VAR}\n")
                .contains("LATTICE_TEST_SURELY_UNSET_VAR, which is not set")
        );
    }

    #[test]
    fn short_hs256_secrets_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secret"), "short\n").expect("write");
        let err = Auth::from_yaml(
            "version: 1\njwt: {hs256_secret_file: secret}\n",
            "auth.yaml",
            dir.path(),
        )
        .expect_err("a 5-byte secret");
        assert!(err.to_string().contains("5 bytes"), "{err}");
    }

    #[test]
    fn the_shipped_example_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/auth.yaml");
        let auth = Auth::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(auth.key_names().contains(&"demo-admin".to_string()));
        assert!(auth.key_names().contains(&"demo-manager".to_string()));
    }
}
