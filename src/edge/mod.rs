//! The HTTP edge's triage: every layer in front of the MCP handler that needs no session, as a
//! transport-agnostic library over `http` types. A transport calls [`Edge::triage`] with each
//! request's head and peer address and either gets a [`Verified`] identity or a [`Refusal`] that
//! carries the status, headers and JSON body to send.
//!
//! The order is fixed:
//!
//! 1. [`scanner`]: path, user agent, velocity per address — 403, or 429 with `Retry-After`.
//! 2. [`proxy_identity`]: a signed identity header from a fronting proxy; present, it decides
//!    (a refusal is a 403, never a fall-through).
//! 3. [`bearer`]: the token extractor chain — first present carrier wins; a malformed one fails
//!    at once (401, or 400 for a repeated carrier).
//! 4. The validator: the same [`Authenticator`] as stdio. In `optional` mode a request without any
//!    credential is anonymous; a bad credential is refused in every mode.
//! 5. Velocity again, keyed by the verified identity, so rotating addresses does not help.
//!
//! Every refusal is a denial event ([`denial`]): logged as structured fields and queued for the
//! audit database, collapsed under a flood. No refusal body, header or event holds a token or a
//! secret: reasons name what was wrong, never the bytes.
//!
//! ```
//! # use std::sync::Arc;
//! # use lastmile::config::{AuthMode, AuthSection, HttpSection};
//! # use lastmile::identity::Authenticator;
//! use lastmile::edge::{Edge, SystemClock};
//! let auth = AuthSection { mode: AuthMode::Optional, ..AuthSection::default() };
//! let secret = secrecy::SecretString::from("k5Qm2Zr8Lw0Ny4Tb7Vc1Xd6Fg9Hj3Ps-example".to_string());
//! let authn = Arc::new(Authenticator::new(&auth, Some(&secret), false).unwrap());
//! let edge = Edge::new(&HttpSection::default(), authn, None, Arc::new(SystemClock::default())).unwrap();
//! let (parts, ()) = http::Request::post("/mcp").header("user-agent", "node").body(()).unwrap().into_parts();
//! let who = edge.triage(&parts, "127.0.0.1".parse().unwrap()).unwrap();
//! assert_eq!(who.subject(), "anonymous");
//! ```

pub mod bearer;
pub mod denial;
pub mod proxy_identity;
pub mod scanner;

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, StatusCode};
use secrecy::SecretString;

pub use bearer::{
    BearerError, ChainSetupError, Extraction, ExtractorChain, Malformed, Method, Miss, MissReason,
    NoCredential,
};
pub use denial::{Denial, DenialAggregator, DenialCheck, DenialRef};
pub use proxy_identity::{
    KeyUsed, PROXY_KEY_ENTRY, PROXY_KEY_PREVIOUS_ENTRY, ProxyIdentity, ProxyKeys, ProxyRejection,
    ProxySetupError, ProxyVerifier, sign_header,
};
pub use scanner::{
    Check, ClientKey, Clock, ManualClock, Scanner, ScannerSetupError, SystemClock, Verdict,
};

use crate::audit::{AuditError, AuditSink};
use crate::config::{HttpSection, Tier};
use crate::identity::{
    Authenticator, Rejection, Session, TokenSource, TokenSources, UnixTime, now_unix,
};

/// The realm named in `WWW-Authenticate`.
pub const REALM: &str = "lastmile";

/// Who a request is, once triage let it through.
#[derive(Debug, Clone)]
pub enum Verified {
    /// A session from the validator: a verified token (with the carrier it came in), or, without
    /// any credential, the anonymous session of `optional` mode or the test identity of
    /// `disabled` mode (`method` is then `None`).
    Token {
        /// The session.
        session: Session,
        /// The carrier the token came in.
        method: Option<Method>,
    },
    /// An identity a fronting proxy signed.
    Proxy(ProxyIdentity),
}

impl Verified {
    /// The subject.
    pub fn subject(&self) -> &str {
        match self {
            Verified::Token { session, .. } => session.subject(),
            Verified::Proxy(p) => p.subject(),
        }
    }
    /// The tier.
    pub fn tier(&self) -> Tier {
        match self {
            Verified::Token { session, .. } => session.tier(),
            Verified::Proxy(p) => p.tier(),
        }
    }
    /// The tier whose rate limit applies.
    pub fn rate_limit_tier(&self) -> Tier {
        match self {
            Verified::Token { session, .. } => session.rate_limit_tier(),
            Verified::Proxy(p) => p.tier(),
        }
    }
    /// The session id (the token's, the proxy's, or a fresh one for anonymous requests).
    pub fn session_id(&self) -> &str {
        match self {
            Verified::Token { session, .. } => session.session_id(),
            Verified::Proxy(p) => p.session_id(),
        }
    }
    /// When the credential expires (`None` for anonymous and test sessions).
    pub fn expires_at(&self) -> Option<UnixTime> {
        match self {
            Verified::Token { session, .. } => session.expires_at(),
            Verified::Proxy(p) => Some(p.expires_at()),
        }
    }
    /// Until when (Unix seconds) the credential is valid, leeway included (`None`: no end).
    pub fn valid_until(&self) -> Option<u64> {
        match self {
            Verified::Token { session, .. } => session.valid_until(),
            Verified::Proxy(p) => Some(p.expires_at().0),
        }
    }
    /// The session this identity opens: the verified token's, or one made from the proxy's
    /// signed identity under `mode`.
    pub fn to_session(&self, mode: crate::config::AuthMode) -> Session {
        match self {
            Verified::Token { session, .. } => session.clone(),
            Verified::Proxy(p) => {
                Session::from_proxy(p.subject(), p.tier(), p.session_id(), p.expires_at(), mode)
            }
        }
    }
    /// Whether a credential was verified (not anonymous, not the test identity).
    pub fn is_authenticated(&self) -> bool {
        match self {
            Verified::Token { method, .. } => method.is_some(),
            Verified::Proxy(_) => true,
        }
    }
}

/// Why triage refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The scanner detector (path, user agent, or velocity by address).
    #[error(transparent)]
    Scanner(Verdict),
    /// The proxy identity header.
    #[error(transparent)]
    ProxyIdentity(ProxyRejection),
    /// A present credential is malformed.
    #[error(transparent)]
    Malformed(Malformed),
    /// The validator refused the token.
    #[error("{method}: {rejection}")]
    InvalidToken {
        /// The carrier.
        method: Method,
        /// The validator's reason.
        rejection: Rejection,
    },
    /// No credential, and the mode requires one.
    #[error(transparent)]
    NoCredential(NoCredential),
    /// The verified identity is over the velocity ceiling.
    #[error("identity over the velocity ceiling: {0}")]
    IdentityVelocity(Verdict),
}

impl RefusalReason {
    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            RefusalReason::Scanner(v) | RefusalReason::IdentityVelocity(v) => v.code(),
            RefusalReason::ProxyIdentity(p) => p.code(),
            RefusalReason::Malformed(m) => m.code(),
            RefusalReason::InvalidToken { rejection, .. } => rejection.code(),
            RefusalReason::NoCredential(_) => "no_credential",
        }
    }

    /// The layer that refused.
    pub fn check(&self) -> DenialCheck {
        match self {
            RefusalReason::Scanner(v) | RefusalReason::IdentityVelocity(v) => v.check().into(),
            RefusalReason::ProxyIdentity(_) => DenialCheck::ProxyIdentity,
            RefusalReason::Malformed(_)
            | RefusalReason::InvalidToken { .. }
            | RefusalReason::NoCredential(_) => DenialCheck::Credential,
        }
    }
}

/// A refused request: what to answer. Holds no credential.
#[derive(Debug, Clone)]
pub struct Refusal(Box<RefusalInner>);

#[derive(Debug, Clone)]
struct RefusalInner {
    status: StatusCode,
    headers: HeaderMap,
    body: serde_json::Value,
    reason: RefusalReason,
}

impl Refusal {
    /// The status: 400, 401, 403 or 429.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
    /// The headers to send (`Content-Type`, and `WWW-Authenticate` or `Retry-After` when due).
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
    /// The JSON body: `error`, `reason` (a stable code), `message`, and per refusal more fields.
    pub fn body(&self) -> &serde_json::Value {
        &self.0.body
    }
    /// The body as bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0.body).unwrap_or_default()
    }
    /// Why.
    pub fn reason(&self) -> &RefusalReason {
        &self.0.reason
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.0.status.as_u16(),
            self.0.reason.code(),
            self.0.reason
        )
    }
}

/// Why the edge cannot be set up from `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EdgeSetupError {
    /// `[http.scanner]`.
    #[error(transparent)]
    Scanner(#[from] ScannerSetupError),
    /// `http.proxy_header` / `http.cookie_name`.
    #[error(transparent)]
    Chain(#[from] ChainSetupError),
    /// `[http.proxy_identity]`.
    #[error(transparent)]
    Proxy(#[from] ProxySetupError),
}

/// The triage layers over one configuration.
pub struct Edge {
    scanner: Scanner,
    proxy: ProxyVerifier,
    chain: ExtractorChain,
    auth: Arc<Authenticator>,
    denials: DenialAggregator,
    resource_metadata: Option<String>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge")
            .field("scanner", &self.scanner)
            .field("proxy", &self.proxy)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// A subscriber that records nothing. Unlike `Dispatch::none()` it answers "sometimes" for a
/// callsite first seen in its scope, so that callsite is not cached as never-enabled for the
/// whole process; and it is registered once, not per request.
struct Silent;

impl tracing::Subscriber for Silent {
    fn register_callsite(&self, _: &tracing::Metadata<'_>) -> tracing::subscriber::Interest {
        tracing::subscriber::Interest::sometimes()
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::OFF)
    }
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        false
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

static SILENT: std::sync::LazyLock<tracing::Dispatch> =
    std::sync::LazyLock::new(|| tracing::Dispatch::new(Silent));

/// Denials tracked at once by the aggregator.
const MAX_DENIAL_SLOTS: usize = 4096;

fn json_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h
}

impl Edge {
    /// The edge of `[http]`, with the profile's authenticator, the proxy keys (`None` when the
    /// store holds no [`PROXY_KEY_ENTRY`]) and a clock (velocity and denial windows).
    pub fn new(
        http: &HttpSection,
        auth: Arc<Authenticator>,
        proxy_keys: Option<ProxyKeys>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, EdgeSetupError> {
        Ok(Edge {
            scanner: Scanner::new(&http.scanner, clock.clone())?,
            proxy: ProxyVerifier::new(&http.proxy_identity, proxy_keys)?,
            chain: ExtractorChain::new(http.extractor, &http.proxy_header, &http.cookie_name)?,
            auth,
            denials: DenialAggregator::new(
                u64::try_from(http.scanner.denial_window.0.as_millis()).unwrap_or(u64::MAX),
                MAX_DENIAL_SLOTS,
                clock,
            ),
            resource_metadata: None,
        })
    }

    /// Name the RFC 9728 protected-resource metadata URL in every 401's `WWW-Authenticate`.
    pub fn with_resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(url.into());
        self
    }

    /// The scanner detector.
    pub fn scanner(&self) -> &Scanner {
        &self.scanner
    }

    /// The denial aggregator (call [`DenialAggregator::flush`] every few seconds).
    pub fn denials(&self) -> &DenialAggregator {
        &self.denials
    }

    /// Triage one request against the wall clock.
    pub fn triage(&self, parts: &http::request::Parts, peer: IpAddr) -> Result<Verified, Refusal> {
        self.triage_at(parts, peer, now_unix())
    }

    /// [`Edge::triage`] as of `now` (Unix seconds, for token and proxy expiry).
    pub fn triage_at(
        &self,
        parts: &http::request::Parts,
        peer: IpAddr,
        now: u64,
    ) -> Result<Verified, Refusal> {
        let path = parts.uri.path();
        let agent = parts.headers.get(USER_AGENT).map(HeaderValue::as_bytes);
        let refuse = |reason: RefusalReason, identity: Option<&str>| {
            self.deny(parts, peer, reason, identity)
        };

        if let Err(v) = self.scanner.check(path, agent, peer) {
            return Err(refuse(RefusalReason::Scanner(v), None));
        }
        let verified = match self.proxy.verify(&parts.headers, now) {
            Some(Ok(identity)) => {
                if identity.key() == KeyUsed::Previous {
                    tracing::debug!(
                        subject = identity.subject(),
                        "proxy identity signed with the previous proxy key"
                    );
                }
                Verified::Proxy(identity)
            }
            Some(Err(rejection)) => {
                return Err(refuse(RefusalReason::ProxyIdentity(rejection), None));
            }
            None => match self.chain.extract(&parts.headers) {
                Extraction::Found { method, token } => {
                    match self
                        .auth
                        .session_for_token_at(&token, TokenSource::Bearer, now)
                    {
                        Ok(session) => Verified::Token {
                            session,
                            method: Some(method),
                        },
                        Err(rejection) => {
                            return Err(refuse(
                                RefusalReason::InvalidToken { method, rejection },
                                None,
                            ));
                        }
                    }
                }
                Extraction::Malformed(m) => return Err(refuse(RefusalReason::Malformed(m), None)),
                Extraction::Missing(none) => match self.without_credential(now) {
                    Some(session) => Verified::Token {
                        session,
                        method: None,
                    },
                    None => return Err(refuse(RefusalReason::NoCredential(none), None)),
                },
            },
        };
        // Anonymous requests share one subject: they are counted by address only.
        if verified.is_authenticated()
            && let Err(v) = self
                .scanner
                .check_identity(verified.subject(), verified.tier(), peer)
        {
            return Err(refuse(
                RefusalReason::IdentityVelocity(v),
                Some(verified.subject()),
            ));
        }
        Ok(verified)
    }

    /// Only the scanner detector (for endpoints that need no credential, such as the
    /// protected-resource metadata): a hit is a refusal and a denial event, as in triage.
    pub fn screen(&self, parts: &http::request::Parts, peer: IpAddr) -> Result<(), Refusal> {
        let agent = parts.headers.get(USER_AGENT).map(HeaderValue::as_bytes);
        self.scanner
            .check(parts.uri.path(), agent, peer)
            .map_err(|v| self.deny(parts, peer, RefusalReason::Scanner(v), None))
    }

    /// A denial event for `reason`, and the refusal to answer with.
    fn deny(
        &self,
        parts: &http::request::Parts,
        peer: IpAddr,
        reason: RefusalReason,
        identity: Option<&str>,
    ) -> Refusal {
        let rpm = match &reason {
            RefusalReason::Scanner(v) | RefusalReason::IdentityVelocity(v) => v.per_minute(),
            _ => None,
        };
        self.observe(
            parts,
            peer,
            reason.check(),
            reason.code(),
            &reason,
            identity,
            rpm,
        );
        self.refusal(reason)
    }

    /// Record a denial event for a request refused by `check` (here or by a layer of the
    /// transport, such as the `Host`/`Origin` check).
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        parts: &http::request::Parts,
        peer: IpAddr,
        check: DenialCheck,
        code: &'static str,
        reason: &dyn std::fmt::Display,
        identity: Option<&str>,
        requests_per_minute: Option<u32>,
    ) {
        self.denials.observe(&DenialRef {
            check,
            code,
            reason,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            user_agent: parts.headers.get(USER_AGENT).map(HeaderValue::as_bytes),
            client: peer,
            identity,
            requests_per_minute,
        });
    }

    /// The session of a request without any credential: anonymous in `optional` mode, the test
    /// identity in `disabled` mode, none in `required` mode.
    fn without_credential(&self, now: u64) -> Option<Session> {
        let none = TokenSources {
            token_file: None,
            env_token: None,
            saved: || Ok::<Option<SecretString>, String>(None),
        };
        // The authenticator warns on every anonymous or test session it makes, which suits one
        // stdio launch but would write a log line per HTTP request: silence it for this call.
        tracing::dispatcher::with_default(&SILENT, || self.auth.establish_at(none, now).ok())
    }

    fn refusal(&self, reason: RefusalReason) -> Refusal {
        let mut headers = json_headers();
        let message = reason.to_string();
        let code = reason.code();
        let metadata = self.resource_metadata.as_deref();
        let (status, error, body) = match &reason {
            RefusalReason::Scanner(v) | RefusalReason::IdentityVelocity(v) => {
                if let Some(secs) = v.retry_after_secs() {
                    headers.insert(RETRY_AFTER, HeaderValue::from(secs));
                }
                let error = if v.status() == StatusCode::TOO_MANY_REQUESTS {
                    "too_many_requests"
                } else {
                    "forbidden"
                };
                let mut body = serde_json::json!({
                    "error": error,
                    "reason": code,
                    "check": v.check().as_str(),
                    "message": message,
                });
                if let Some(secs) = v.retry_after_secs() {
                    body["retry_after"] = secs.into();
                }
                (v.status(), None, body)
            }
            RefusalReason::ProxyIdentity(_) => (
                StatusCode::FORBIDDEN,
                None,
                serde_json::json!({
                    "error": "forbidden",
                    "reason": code,
                    "check": "proxy_identity",
                    "message": message,
                }),
            ),
            RefusalReason::Malformed(m) => {
                let (status, error) = match m {
                    Malformed::Repeated { .. } => {
                        (StatusCode::BAD_REQUEST, bearer::BearerError::InvalidRequest)
                    }
                    _ => (StatusCode::UNAUTHORIZED, bearer::BearerError::InvalidToken),
                };
                let body = serde_json::json!({
                    "error": if status == StatusCode::BAD_REQUEST { "invalid_request" } else { "invalid_token" },
                    "reason": code,
                    "method": m.method().as_str(),
                    "message": message,
                });
                (status, Some(error), body)
            }
            RefusalReason::InvalidToken { method, .. } => (
                StatusCode::UNAUTHORIZED,
                Some(bearer::BearerError::InvalidToken),
                serde_json::json!({
                    "error": "invalid_token",
                    "reason": code,
                    "method": method.as_str(),
                    "message": message,
                }),
            ),
            RefusalReason::NoCredential(none) => (
                StatusCode::UNAUTHORIZED,
                Some(bearer::BearerError::None),
                bearer::no_credential_body(none),
            ),
        };
        if let Some(error) = error {
            let description = (error != bearer::BearerError::None).then_some(message.as_str());
            let value = bearer::challenge(REALM, error, description, metadata);
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        Refusal(Box::new(RefusalInner {
            status,
            headers,
            body,
            reason,
        }))
    }

    /// Write the denial events waiting for the audit database (after flushing ended windows);
    /// returns how many were handed over. Call it every few seconds from the transport.
    pub async fn forward_denials(&self, sink: &AuditSink) -> Result<usize, AuditError> {
        self.denials.flush();
        let events = self.denials.take_audit_events();
        let n = events.len();
        for e in events {
            sink.record(e).await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
