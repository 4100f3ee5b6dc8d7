//! Minting session tokens with jsonwebtoken: the pinned HS256 header, a random `jti` (UUID v4) and
//! `session_id` (UUID v7, so sessions sort by start), a lifetime capped by the profile's maximum.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};

use super::claims::Claims;
use super::secret::{WeakSecret, check_signing_secret};
use super::time::now_unix;
use super::verify::MAX_TOKEN_BYTES;
use crate::config::{AuthSection, Tier};

/// Lifetime of a token when none is asked for.
pub const DEFAULT_TTL: Duration = Duration::from_secs(8 * 3600);

/// What to put in a new token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// `sub`: who the session is for.
    pub subject: String,
    /// `tier`.
    pub tier: Tier,
    /// Lifetime; [`DEFAULT_TTL`] when `None`; capped by `auth.max_token_lifetime`.
    pub ttl: Option<Duration>,
    /// Scopes; each item may itself hold several separated by spaces.
    pub scope: Vec<String>,
    /// `roles`.
    pub roles: Vec<String>,
    /// `user_type`.
    pub user_type: Option<String>,
    /// `rate_limit_tier`.
    pub rate_limit_tier: Option<Tier>,
}

impl IssueRequest {
    /// A request for `subject` at `tier` with every other field empty.
    pub fn new(subject: impl Into<String>, tier: Tier) -> Self {
        IssueRequest {
            subject: subject.into(),
            tier,
            ttl: None,
            scope: Vec::new(),
            roles: Vec::new(),
            user_type: None,
            rate_limit_tier: None,
        }
    }
}

/// A freshly minted token and what it says.
#[derive(Debug)]
pub struct IssuedToken {
    /// The token itself: a credential.
    pub token: SecretString,
    /// Its claims.
    pub claims: Claims,
    /// Whether the lifetime asked for was cut to the profile's maximum.
    pub ttl_capped: bool,
}

/// Why a token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// `sub` is empty.
    #[error("the subject is empty\nhint: pass --sub NAME")]
    EmptySubject,
    /// A lifetime of zero.
    #[error("a token lifetime must be at least one second")]
    ZeroTtl,
    /// A claim holds a control character.
    #[error("`{claim}` holds a control character")]
    ControlCharacter {
        /// The claim.
        claim: &'static str,
    },
    /// An empty role.
    #[error("a role is empty")]
    EmptyRole,
    /// The token would be larger than the verifier accepts.
    #[error(
        "the token would be {len} bytes, over the {max}-byte limit\nhint: fewer scopes or roles"
    )]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// jsonwebtoken failed to encode.
    #[error("cannot encode the token: {0}")]
    Encode(String),
}

/// Mints session tokens for the profile's `[auth]` settings.
pub struct TokenIssuer {
    key: EncodingKey,
    header: Header,
    issuer: String,
    audience: String,
    max_lifetime: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl TokenIssuer {
    /// An issuer for the profile's `[auth]` settings; refuses a weak secret.
    pub fn new(auth: &AuthSection, secret: &SecretString) -> Result<Self, WeakSecret> {
        let key = secret.expose_secret().as_bytes();
        check_signing_secret(key, auth.min_secret_length)?;
        // `from_secret` refuses only an empty key, which the check above already refused.
        let key = EncodingKey::from_secret(key).map_err(|_| WeakSecret::TooShort {
            len: 0,
            min: auth.min_secret_length,
        })?;
        Ok(TokenIssuer {
            key,
            header: Header::new(Algorithm::HS256),
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            max_lifetime: auth.max_token_lifetime.0,
        })
    }

    /// Mint a token now.
    pub fn issue(&self, request: &IssueRequest) -> Result<IssuedToken, IssueError> {
        self.issue_at(request, now_unix())
    }

    /// Mint a token as of `now` (Unix seconds).
    pub fn issue_at(&self, request: &IssueRequest, now: u64) -> Result<IssuedToken, IssueError> {
        if request.subject.is_empty() {
            return Err(IssueError::EmptySubject);
        }
        let no_control = |claim: &'static str, text: &str| {
            if text.chars().any(char::is_control) {
                Err(IssueError::ControlCharacter { claim })
            } else {
                Ok(())
            }
        };
        no_control("sub", &request.subject)?;
        for role in &request.roles {
            no_control("roles", role)?;
            if role.is_empty() {
                return Err(IssueError::EmptyRole);
            }
        }
        if let Some(user_type) = &request.user_type {
            no_control("user_type", user_type)?;
        }
        let scopes: Vec<&str> = request
            .scope
            .iter()
            .flat_map(|s| s.split_whitespace())
            .collect();
        for scope in &scopes {
            no_control("scope", scope)?;
        }
        let wanted = request.ttl.unwrap_or(DEFAULT_TTL);
        if wanted.as_secs() == 0 {
            return Err(IssueError::ZeroTtl);
        }
        let ttl_capped = wanted > self.max_lifetime;
        let ttl = wanted.min(self.max_lifetime).as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: request.subject.clone(),
            exp: now.saturating_add(ttl),
            iat: Some(now),
            nbf: Some(now),
            jti: uuid::Uuid::new_v4().to_string(),
            session_id: uuid::Uuid::now_v7().to_string(),
            tier: request.tier,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            roles: request.roles.clone(),
            user_type: request.user_type.clone(),
            rate_limit_tier: request.rate_limit_tier,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| IssueError::Encode(e.to_string()))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IssueError::TooLarge {
                len: token.len(),
                max: MAX_TOKEN_BYTES,
            });
        }
        Ok(IssuedToken {
            token: SecretString::from(token),
            claims,
            ttl_capped,
        })
    }
}
