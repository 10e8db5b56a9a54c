//! JWT bearer tokens: HS256 (a shared secret) or RS256 (an identity provider's public key),
//! verified by `jsonwebtoken`. The token's header picks the key; an algorithm with no key
//! configured is refused (so an RS256 public key is never used as an HMAC secret). `exp` and
//! `sub` are required; `iss` and `aud` are checked when the file names them.
//!
//! Claims read: `sub` (the principal's name in the audit log), `lattice_roles` (strings) and
//! `lattice_scope`, which every token must state:
//!
//! - `"lattice_scope": ["manager.manager = M0017 Li Wei", ...]`: scope rules, as in the auth
//!   file (every rule must hold);
//! - `"lattice_scope": "*"`: everything, said on purpose (an admin token says this).
//!
//! A token without the claim, or with an empty list, is refused: a provider that forgets to add
//! the claim must not hand out tokens that read everything.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::{Access, Denied};

/// The keys tokens are verified with.
pub(crate) struct JwtKeys {
    pub hs256: Option<DecodingKey>,
    pub rs256: Option<DecodingKey>,
}

impl std::fmt::Debug for JwtKeys {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("hs256", &self.hs256.is_some())
            .field("rs256", &self.rs256.is_some())
            .finish()
    }
}

#[derive(Debug)]
pub(crate) struct JwtConfig {
    pub keys: JwtKeys,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    lattice_roles: Vec<String>,
    /// Absent is refused (see the module docs).
    lattice_scope: Option<ScopeClaim>,
}

/// The marker of a token that may read everything.
pub const EVERYTHING: &str = "*";

/// `lattice_scope` as sent: `"*"` or a list of rules (anything else is refused).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ScopeClaim {
    Rules(Vec<String>),
    Marker(String),
}

impl ScopeClaim {
    /// The rules of the claim (none for `"*"`), or why the claim cannot be used.
    fn rules(self) -> Result<Vec<String>, Denied> {
        match self {
            ScopeClaim::Marker(m) if m == EVERYTHING => Ok(Vec::new()),
            ScopeClaim::Marker(_) => Err(Denied::Invalid(
                "the token's lattice_scope is a string other than \"*\"; give a list of scope rules, or \"*\" for everything",
            )),
            ScopeClaim::Rules(r) if r.is_empty() => Err(Denied::Invalid(
                "the token's lattice_scope is an empty list; give scope rules, or \"*\" for a token that may read everything",
            )),
            ScopeClaim::Rules(r) => Ok(r),
        }
    }
}

/// A verified token's subject and access.
#[derive(Debug)]
pub(crate) struct Verified {
    pub subject: String,
    pub access: Access,
}

impl JwtConfig {
    /// Verifies `token`: signature, expiry, issuer and audience, then reads its claims.
    pub fn verify(&self, token: &str) -> Result<Verified, Denied> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Denied::Invalid("the token is not a well-formed JWT"))?;
        let key = match header.alg {
            Algorithm::HS256 => self.keys.hs256.as_ref(),
            Algorithm::RS256 => self.keys.rs256.as_ref(),
            _ => None,
        }
        .ok_or(Denied::Invalid(
            "the token's algorithm is not one this server accepts",
        ))?;
        let mut v = Validation::new(header.alg);
        v.set_required_spec_claims(&["exp", "sub"]);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => Denied::Expired,
            ErrorKind::ImmatureSignature => Denied::Invalid("the token is not valid yet (nbf)"),
            ErrorKind::InvalidSignature => Denied::Invalid("the token's signature does not verify"),
            ErrorKind::InvalidIssuer => Denied::Invalid("the token's issuer is not accepted"),
            ErrorKind::InvalidAudience => Denied::Invalid("the token's audience is not accepted"),
            ErrorKind::MissingRequiredClaim(_) => {
                Denied::Invalid("the token lacks a required claim (exp and sub)")
            }
            ErrorKind::Json(_) => Denied::Invalid(
                "the token's claims cannot be read: lattice_scope is a list of strings or \"*\", lattice_roles a list of strings",
            ),
            _ => Denied::Invalid("the token cannot be verified"),
        })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(Denied::Invalid("the token's sub claim is empty"));
        }
        let scope = claims
            .lattice_scope
            .ok_or(Denied::Invalid(
                "the token has no lattice_scope claim: give a list of scope rules, or \"*\" for a token that may read everything",
            ))?
            .rules()?;
        let mut problems = Vec::new();
        let access = super::file::access("token", &claims.lattice_roles, &scope, &mut problems);
        if !problems.is_empty() {
            tracing::warn!(subject = %claims.sub, problems = ?problems, "a verified token carries claims that cannot be used");
            return Err(Denied::Invalid(
                "the token's lattice_scope or lattice_roles claims cannot be used",
            ));
        }
        Ok(Verified {
            subject: claims.sub,
            access,
        })
    }
}
