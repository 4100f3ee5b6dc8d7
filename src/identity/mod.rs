//! Identity: session-token claims, the HS256 verifier and issuer, the signing-secret check, the
//! three auth modes and per-session rate limits. Knows nothing of rmcp or the secret store: the
//! CLI hands it the signing secret and the saved token.
//!
//! The gateway's part, in order:
//! 1. [`Authenticator::new`] with the profile's `[auth]`, the signing secret and
//!    [`disabled_auth_allowed_by_env`] — a weak or missing secret refuses to boot.
//! 2. [`Authenticator::establish`] with [`TokenSources::from_env`] — a [`Session`] or a
//!    [`Refusal`] naming each source tried.
//! 3. [`SessionRateLimiter::new`] for [`Session::rate_limit_tier`]; [`SessionRateLimiter::check`]
//!    and [`Session::check_live`] before each tool call.

mod claims;
mod issue;
mod rate;
pub mod reference;
mod secret;
mod session;
mod time;
mod verify;

pub use claims::{Claims, ClaimsRef};
pub use issue::{DEFAULT_TTL, IssueError, IssueRequest, IssuedToken, TokenIssuer};
pub use rate::{
    RateBucket, RateLimitConfigError, RateLimited, SessionRateLimiter, SessionRateLimits,
};
pub use secret::{WeakSecret, check_signing_secret};
pub use session::{
    ANONYMOUS_SUBJECT, AuthSetupError, Authenticator, ENV_ALLOW_DISABLED, ENV_TOKEN, Refusal,
    Session, SessionOrigin, SourceAttempt, SourceOutcome, TEST_SUBJECT, TokenSource, TokenSources,
    disabled_auth_allowed_by_env,
};
pub use time::{UnixTime, now_unix};
pub use verify::{
    MAX_TOKEN_BYTES, PINNED_HEADER, PINNED_HEADER_JSON, Rejection, Segment, Unverified, Verifier,
    inspect_unverified,
};

#[cfg(test)]
mod tests;
