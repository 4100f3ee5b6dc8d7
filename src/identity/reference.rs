//! The reference verifier: jsonwebtoken's own `decode` and `Validation`, configured the way
//! lastmile's `[auth]` says, plus the three rules jsonwebtoken has no setting for (pinned header,
//! size limit, maximum lifetime). The lean [`super::Verifier`] must accept exactly what this
//! accepts; the differential test, the `jwt_differential` fuzz target and the `verify` benchmark
//! use it. `serve` does not.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};

use super::claims::Claims;
use super::secret::{WeakSecret, check_signing_secret};
use super::verify::{MAX_TOKEN_BYTES, PINNED_HEADER};
use crate::config::AuthSection;

/// jsonwebtoken 12's validator, configured like lastmile's verifier.
pub struct ReferenceVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway: u64,
    max_lifetime: u64,
}

impl std::fmt::Debug for ReferenceVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceVerifier")
            .field("key", &"[redacted]")
            .field("validation", &self.validation)
            .finish()
    }
}

impl ReferenceVerifier {
    /// A reference verifier for the profile's `[auth]` settings; refuses a weak secret.
    pub fn new(auth: &AuthSection, secret: &SecretString) -> Result<Self, WeakSecret> {
        let key = secret.expose_secret().as_bytes();
        check_signing_secret(key, auth.min_secret_length)?;
        // `from_secret` refuses only an empty key, which the check above already refused.
        let key = DecodingKey::from_secret(key).map_err(|_| WeakSecret::TooShort {
            len: 0,
            min: auth.min_secret_length,
        })?;
        let leeway = auth.leeway.0.as_secs();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&auth.issuer]);
        validation.set_audience(&[&auth.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(ReferenceVerifier {
            key,
            validation,
            leeway,
            max_lifetime: auth.max_token_lifetime.0.as_secs(),
        })
    }

    /// jsonwebtoken's `decode` alone (it reads the wall clock itself).
    pub fn decode(&self, token: &[u8]) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map(|data| data.claims)
    }

    /// `decode`, then lastmile's own rules: the header is the pinned one, the token is at most
    /// [`MAX_TOKEN_BYTES`], and `exp` is within the maximum lifetime of `iat` and of `now`.
    /// `now` must be the wall-clock second `decode` saw (callers re-run when the second ticks).
    pub fn verify(&self, token: &[u8], now: u64) -> Result<Claims, String> {
        let claims = self
            .decode(token)
            .map_err(|e| format!("jsonwebtoken: {e}"))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err("lastmile: oversized".into());
        }
        let header = token.split(|b| *b == b'.').next().unwrap_or_default();
        if header != PINNED_HEADER.as_bytes() {
            return Err("lastmile: header is not the pinned one".into());
        }
        if let Some(iat) = claims.iat
            && claims.exp.saturating_sub(iat) > self.max_lifetime
        {
            return Err("lastmile: lifetime from iat too long".into());
        }
        if claims.exp.saturating_sub(now) > self.max_lifetime.saturating_add(self.leeway) {
            return Err("lastmile: lifetime from now too long".into());
        }
        Ok(claims)
    }
}

/// Where the lean verifier and the reference disagree about one token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lean verifier says {lean}, reference says {reference}")]
pub struct Disagreement {
    /// The lean verifier's answer.
    pub lean: String,
    /// The reference's answer.
    pub reference: String,
}

/// Run both verifiers on `token` at the same wall-clock second and compare: both refuse, or both
/// accept with equal claims. Returns the lean verifier's answer when they agree.
pub fn compare(
    lean: &super::Verifier,
    reference: &ReferenceVerifier,
    token: &[u8],
) -> Result<Result<Claims, super::Rejection>, Disagreement> {
    // jsonwebtoken reads the clock itself: retry until no second boundary fell inside the call.
    let (now, reference_answer) = loop {
        let before = super::now_unix();
        let answer = reference.verify(token, before);
        if super::now_unix() == before {
            break (before, answer);
        }
    };
    let lean_answer = lean.verify_at(token, now);
    match (&lean_answer, &reference_answer) {
        (Ok(a), Ok(b)) if a == b => Ok(lean_answer),
        (Err(_), Err(_)) => Ok(lean_answer),
        _ => Err(Disagreement {
            lean: format!("{lean_answer:?}"),
            reference: format!("{reference_answer:?}"),
        }),
    }
}
