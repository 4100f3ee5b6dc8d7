//! The claims a lastmile session token carries, as one typed struct. Handlers read these fields;
//! nothing re-parses the token.

use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Tier;

/// The claims of a session token.
///
/// Required: `iss`, `aud`, `sub`, `exp`, `jti`, `session_id`, `tier`. Unknown claims are ignored.
/// `nbf`, when present, must be a number (`null` is refused, as jsonwebtoken's validator does).
///
/// ```
/// use lastmile::identity::Claims;
/// let c: Claims = serde_json::from_str(r#"{"iss":"lastmile","aud":"lastmile","sub":"alice",
///     "exp":1800000000,"jti":"j","session_id":"s","tier":"user","scope":"a b"}"#).unwrap();
/// assert_eq!(c.scopes().collect::<Vec<_>>(), ["a", "b"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer; must equal the profile's `auth.issuer`.
    pub iss: String,
    /// Audience; must equal the profile's `auth.audience` (a single string, not an array).
    pub aud: String,
    /// Subject: who the session is for.
    pub sub: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, Unix seconds.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "number_not_null"
    )]
    pub nbf: Option<u64>,
    /// Unique token id.
    pub jti: String,
    /// Session id the audit log binds every execution to.
    pub session_id: String,
    /// Permission tier.
    pub tier: Tier,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Kind of principal (`human`, `agent`, …), free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
    /// Tier whose rate limit applies, when it differs from `tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_tier: Option<Tier>,
}

impl Claims {
    /// The required claims, in the order their absence is reported.
    pub const REQUIRED: [&'static str; 7] =
        ["iss", "aud", "sub", "exp", "jti", "session_id", "tier"];

    /// The scopes, split on whitespace.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split_whitespace()
    }
}

/// `nbf` present means a number: `"nbf": null` is an error, not an absent claim.
fn number_not_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    u64::deserialize(d).map(Some)
}
