//! One validator, three modes: from the token sources tried in order (`--token-file`, then
//! `LASTMILE_TOKEN`, then the saved token), an [`Authenticator`] makes a [`Session`] or a
//! [`Refusal`] that lists each source tried and why it failed.
//!
//! - `required`: a missing or invalid token is a [`Refusal`].
//! - `optional`: a missing or invalid token gives an anonymous session that keeps the refusal.
//! - `disabled`: no verification, the fixed test identity; the profile setting alone is not
//!   enough, `LASTMILE_ALLOW_DISABLED_AUTH=1` must be set too.
//!
//! The first source that has a token decides: a bad `--token-file` is refused rather than
//! silently replaced by another token. A [`Session`] can only be made here.

use std::io::Read;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use super::claims::ClaimsRef;
use super::secret::WeakSecret;
use super::time::{UnixTime, now_unix};
use super::verify::{MAX_TOKEN_BYTES, Rejection, Verifier};
use crate::config::{AuthMode, AuthSection, Tier};

/// Environment variable holding a session token.
pub const ENV_TOKEN: &str = "LASTMILE_TOKEN";
/// Environment variable that must be `1` for `auth.mode = "disabled"` to take effect.
pub const ENV_ALLOW_DISABLED: &str = "LASTMILE_ALLOW_DISABLED_AUTH";
/// Subject of the fixed test identity of `disabled` mode.
pub const TEST_SUBJECT: &str = "lastmile-test";
/// Subject of anonymous sessions.
pub const ANONYMOUS_SUBJECT: &str = "anonymous";

/// Whether `LASTMILE_ALLOW_DISABLED_AUTH=1` is set.
pub fn disabled_auth_allowed_by_env() -> bool {
    std::env::var_os(ENV_ALLOW_DISABLED).is_some_and(|v| v == "1")
}

/// Where a token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token-file PATH`.
    File(PathBuf),
    /// The `LASTMILE_TOKEN` environment variable.
    Env,
    /// The token saved for the profile (`lastmile token issue --save`).
    Saved,
    /// A bearer token carried by a request (HTTP).
    Bearer,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(path) => write!(f, "--token-file {}", path.display()),
            TokenSource::Env => f.write_str(ENV_TOKEN),
            TokenSource::Saved => f.write_str("the saved token"),
            TokenSource::Bearer => f.write_str("the bearer token"),
        }
    }
}

/// What happened with one token source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The source had no token (flag not given, variable unset or empty, nothing saved).
    Absent,
    /// The source could not be read (file missing, store unavailable).
    Unreadable(String),
    /// The source's token was refused.
    Rejected(Rejection),
    /// An earlier source had a token, so this one was not looked at.
    NotConsulted,
}

/// One token source and what happened with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAttempt {
    /// The source.
    pub source: TokenSource,
    /// What happened.
    pub outcome: SourceOutcome,
}

impl std::fmt::Display for SourceAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.outcome, &self.source) {
            (SourceOutcome::Absent, TokenSource::File(_)) => {
                write!(f, "{}: no such file", self.source)
            }
            (SourceOutcome::Absent, TokenSource::Env) => write!(f, "{}: not set", self.source),
            (SourceOutcome::Absent, TokenSource::Saved) => write!(f, "{}: none saved", self.source),
            (SourceOutcome::Absent, TokenSource::Bearer) => write!(f, "{}: none sent", self.source),
            (SourceOutcome::Unreadable(why), _) => write!(f, "{}: {why}", self.source),
            (SourceOutcome::Rejected(why), _) => write!(f, "{}: {why}", self.source),
            (SourceOutcome::NotConsulted, _) => write!(f, "{}: not consulted", self.source),
        }
    }
}

/// No session: every token source tried, and why each failed. `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Refusal {
    /// Each source in the order tried.
    pub attempts: Vec<SourceAttempt>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no valid session token (")?;
        for (i, attempt) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{attempt}")?;
        }
        f.write_str(")")
    }
}

impl Refusal {
    /// The rejection of the token that decided, if a token was found.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.attempts.iter().find_map(|a| match &a.outcome {
            SourceOutcome::Rejected(r) => Some(r),
            _ => None,
        })
    }

    /// A stable snake_case name: the rejection's code, `unreadable`, or `no_token`.
    pub fn code(&self) -> &'static str {
        if let Some(r) = self.rejection() {
            return r.code();
        }
        if self
            .attempts
            .iter()
            .any(|a| matches!(a.outcome, SourceOutcome::Unreadable(_)))
        {
            return "unreadable";
        }
        "no_token"
    }

    /// The next step for the user.
    pub fn hint(&self) -> &'static str {
        "hint: issue a token with `lastmile token issue --sub NAME --tier TIER --save`, or pass --token-file / LASTMILE_TOKEN"
    }
}

/// How a session came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOrigin {
    /// A token verified from this source.
    Verified {
        /// Where the token came from.
        source: TokenSource,
    },
    /// `optional` mode without a valid token; the reason is kept.
    Anonymous {
        /// Why no token was accepted.
        reason: Refusal,
    },
    /// `disabled` mode: the fixed test identity.
    TestIdentity,
    /// An identity a fronting proxy signed into a header (HTTP), verified by the edge.
    Proxy,
}

/// An authenticated (or explicitly anonymous, or test) session. Only this module makes one.
#[derive(Debug, Clone)]
pub struct Session {
    session_id: String,
    jti: Option<String>,
    subject: String,
    tier: Tier,
    rate_limit_tier: Tier,
    mode: AuthMode,
    expires_at: Option<u64>,
    valid_until: Option<u64>,
    scope: Vec<String>,
    roles: Vec<String>,
    user_type: Option<String>,
    origin: SessionOrigin,
}

impl Session {
    fn verified(claims: &ClaimsRef<'_>, mode: AuthMode, leeway: u64, source: TokenSource) -> Self {
        Session {
            scope: claims.scopes().map(str::to_string).collect(),
            rate_limit_tier: claims.rate_limit_tier.unwrap_or(claims.tier),
            valid_until: Some(claims.exp.saturating_add(leeway)),
            expires_at: Some(claims.exp),
            session_id: claims.session_id.to_string(),
            jti: Some(claims.jti.to_string()),
            subject: claims.sub.to_string(),
            tier: claims.tier,
            mode,
            roles: claims.roles.iter().map(|r| (*r).to_string()).collect(),
            user_type: claims.user_type.map(str::to_string),
            origin: SessionOrigin::Verified { source },
        }
    }

    fn unverified(subject: &str, tier: Tier, mode: AuthMode, origin: SessionOrigin) -> Self {
        Session {
            session_id: uuid::Uuid::now_v7().to_string(),
            jti: None,
            subject: subject.to_string(),
            tier,
            rate_limit_tier: tier,
            mode,
            expires_at: None,
            valid_until: None,
            scope: Vec::new(),
            roles: Vec::new(),
            user_type: None,
            origin,
        }
    }

    /// The session of an identity a fronting proxy signed (the edge verified its signature and
    /// expiry): its subject, tier, session id and expiry, with the profile's mode.
    pub fn from_proxy(
        subject: &str,
        tier: Tier,
        session_id: &str,
        expires_at: UnixTime,
        mode: AuthMode,
    ) -> Self {
        Session {
            session_id: session_id.to_string(),
            expires_at: Some(expires_at.0),
            valid_until: Some(expires_at.0),
            ..Session::unverified(subject, tier, mode, SessionOrigin::Proxy)
        }
    }

    /// The session id (the token's `session_id`; a fresh UUID v7 for anonymous and test sessions).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// The token's `jti` (`None` for anonymous and test sessions).
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    /// Who: the token's `sub`, [`ANONYMOUS_SUBJECT`] or [`TEST_SUBJECT`].
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The permission tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }
    /// The tier whose rate limit applies (`rate_limit_tier`, else `tier`).
    pub fn rate_limit_tier(&self) -> Tier {
        self.rate_limit_tier
    }
    /// The auth mode the session was made under.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }
    /// The token's `exp` (`None` for anonymous and test sessions).
    pub fn expires_at(&self) -> Option<UnixTime> {
        self.expires_at.map(UnixTime)
    }
    /// The scopes.
    pub fn scope(&self) -> &[String] {
        &self.scope
    }
    /// The roles.
    pub fn roles(&self) -> &[String] {
        &self.roles
    }
    /// The token's `user_type`.
    pub fn user_type(&self) -> Option<&str> {
        self.user_type.as_deref()
    }
    /// How the session came to be.
    pub fn origin(&self) -> &SessionOrigin {
        &self.origin
    }
    /// Whether the session's token is still valid at `now` (leeway included). A gate calls this
    /// before each call so that a long-lived stdio session ends with its token.
    pub fn check_live_at(&self, now: u64) -> Result<(), Rejection> {
        match (self.valid_until, self.expires_at) {
            (Some(until), Some(exp)) if until < now => {
                Err(Rejection::Expired { at: UnixTime(exp) })
            }
            _ => Ok(()),
        }
    }
    /// Until when (Unix seconds, leeway included) the session is live; `None` if it never ends.
    pub fn valid_until(&self) -> Option<u64> {
        self.valid_until
    }
    /// [`Session::check_live_at`] against the wall clock.
    pub fn check_live(&self) -> Result<(), Rejection> {
        self.check_live_at(now_unix())
    }
}

/// The token sources, in the order they are tried.
pub struct TokenSources<F> {
    /// `--token-file PATH`, if given.
    pub token_file: Option<PathBuf>,
    /// The value of `LASTMILE_TOKEN`, if set.
    pub env_token: Option<SecretString>,
    /// Loads the saved token; called only if the earlier sources had none. Its error message must
    /// not contain a secret.
    pub saved: F,
}

impl<F> TokenSources<F>
where
    F: FnOnce() -> Result<Option<SecretString>, String>,
{
    /// `--token-file` as given, `LASTMILE_TOKEN` from the environment (empty means unset), and the
    /// saved-token loader.
    pub fn from_env(token_file: Option<PathBuf>, saved: F) -> Self {
        let env_token = std::env::var(ENV_TOKEN)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(SecretString::from);
        TokenSources {
            token_file,
            env_token,
            saved,
        }
    }
}

/// Why the authenticator cannot be set up: the gateway refuses to boot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthSetupError {
    /// The signing secret is weak.
    #[error(transparent)]
    WeakSecret(#[from] WeakSecret),
    /// `required` or `optional` mode without a signing secret.
    #[error(
        "auth.mode = \"{mode}\" needs the profile's signing secret, and none was given\nhint: store one in the profile's keyring (`lastmile secrets`)"
    )]
    NoSigningSecret {
        /// The mode.
        mode: &'static str,
    },
    /// `disabled` mode without `LASTMILE_ALLOW_DISABLED_AUTH=1`.
    #[error(
        "auth.mode = \"disabled\" also needs LASTMILE_ALLOW_DISABLED_AUTH=1 in the environment\nhint: disabled auth gives every session the fixed test identity; it is for tests only"
    )]
    DisabledNotAllowed,
}

/// Turns token sources into sessions under one of the three modes.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    verifier: Option<Verifier>,
    leeway: u64,
}

fn mode_name(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Required => "required",
        AuthMode::Optional => "optional",
        AuthMode::Disabled => "disabled",
    }
}

impl Authenticator {
    /// Set up for the profile's `[auth]`. `secret` is the profile's signing secret: needed in
    /// `required` and `optional` mode, checked whenever given. `allow_disabled` is
    /// [`disabled_auth_allowed_by_env`] (passed in so tests need not touch the environment).
    pub fn new(
        auth: &AuthSection,
        secret: Option<&SecretString>,
        allow_disabled: bool,
    ) -> Result<Self, AuthSetupError> {
        let verifier = secret.map(|s| Verifier::new(auth, s)).transpose()?;
        match auth.mode {
            AuthMode::Disabled if !allow_disabled => {
                return Err(AuthSetupError::DisabledNotAllowed);
            }
            AuthMode::Required | AuthMode::Optional if verifier.is_none() => {
                return Err(AuthSetupError::NoSigningSecret {
                    mode: mode_name(auth.mode),
                });
            }
            _ => {}
        }
        Ok(Authenticator {
            mode: auth.mode,
            verifier,
            leeway: auth.leeway.0.as_secs(),
        })
    }

    /// The mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The verifier (`None` only in `disabled` mode without a secret).
    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_ref()
    }

    /// Make the session for a launch from its token sources, against the wall clock.
    pub fn establish<F>(&self, sources: TokenSources<F>) -> Result<Session, Refusal>
    where
        F: FnOnce() -> Result<Option<SecretString>, String>,
    {
        self.establish_at(sources, now_unix())
    }

    /// [`Authenticator::establish`] as of `now` (Unix seconds).
    pub fn establish_at<F>(&self, sources: TokenSources<F>, now: u64) -> Result<Session, Refusal>
    where
        F: FnOnce() -> Result<Option<SecretString>, String>,
    {
        let verifier = match (&self.verifier, self.mode) {
            (_, AuthMode::Disabled) | (None, _) => {
                tracing::warn!(
                    "auth is disabled ({ENV_ALLOW_DISABLED}=1): no token is verified and every session is the test identity `{TEST_SUBJECT}` at tier admin"
                );
                return Ok(Session::unverified(
                    TEST_SUBJECT,
                    Tier::Admin,
                    self.mode,
                    SessionOrigin::TestIdentity,
                ));
            }
            (Some(v), _) => v,
        };
        let mut attempts = Vec::with_capacity(3);
        let mut found: Option<(TokenSource, SecretString)> = None;
        let mut decided = false;

        if let Some(path) = sources.token_file {
            let read = read_token_file(&path);
            let source = TokenSource::File(path);
            match read {
                Ok(token) => found = Some((source, token)),
                Err(why) => {
                    attempts.push(SourceAttempt {
                        source,
                        outcome: SourceOutcome::Unreadable(why),
                    });
                    decided = true;
                }
            }
        }
        if found.is_none() && !decided {
            match sources.env_token {
                Some(token) => found = Some((TokenSource::Env, trimmed(token))),
                None => attempts.push(SourceAttempt {
                    source: TokenSource::Env,
                    outcome: SourceOutcome::Absent,
                }),
            }
        }
        if found.is_none() && !decided {
            match (sources.saved)() {
                Ok(Some(token)) => found = Some((TokenSource::Saved, trimmed(token))),
                Ok(None) => attempts.push(SourceAttempt {
                    source: TokenSource::Saved,
                    outcome: SourceOutcome::Absent,
                }),
                Err(why) => attempts.push(SourceAttempt {
                    source: TokenSource::Saved,
                    outcome: SourceOutcome::Unreadable(why),
                }),
            }
        }
        let result = match found {
            Some((source, token)) => {
                let verified = verifier.verify_with(token.expose_secret().as_bytes(), now, |c| {
                    Session::verified(c, self.mode, self.leeway, source.clone())
                });
                match verified {
                    Ok(session) => return Ok(session),
                    Err(rejection) => {
                        attempts.push(SourceAttempt {
                            source,
                            outcome: SourceOutcome::Rejected(rejection),
                        });
                        Refusal {
                            attempts: complete(attempts),
                        }
                    }
                }
            }
            None => Refusal {
                attempts: complete(attempts),
            },
        };
        self.refused(result)
    }

    /// Verify one token from a known source (an HTTP request's bearer token). `disabled` mode
    /// gives the test identity; `optional` mode does not fall back here: the caller decides.
    pub fn session_for_token_at(
        &self,
        token: &SecretString,
        source: TokenSource,
        now: u64,
    ) -> Result<Session, Rejection> {
        match (&self.verifier, self.mode) {
            (_, AuthMode::Disabled) | (None, _) => Ok(Session::unverified(
                TEST_SUBJECT,
                Tier::Admin,
                self.mode,
                SessionOrigin::TestIdentity,
            )),
            (Some(v), _) => v.verify_with(token.expose_secret().trim().as_bytes(), now, |c| {
                Session::verified(c, self.mode, self.leeway, source)
            }),
        }
    }

    /// `optional` mode turns a refusal into an anonymous session; `required` keeps it.
    fn refused(&self, refusal: Refusal) -> Result<Session, Refusal> {
        match self.mode {
            AuthMode::Optional => {
                tracing::warn!("continuing as an anonymous session: {refusal}");
                Ok(Session::unverified(
                    ANONYMOUS_SUBJECT,
                    Tier::Anonymous,
                    self.mode,
                    SessionOrigin::Anonymous { reason: refusal },
                ))
            }
            _ => Err(refusal),
        }
    }
}

/// Fill in the sources that were not reached, so a refusal always lists all three.
fn complete(mut attempts: Vec<SourceAttempt>) -> Vec<SourceAttempt> {
    for source in [TokenSource::Env, TokenSource::Saved] {
        if !attempts.iter().any(|a| a.source == source) {
            attempts.push(SourceAttempt {
                source,
                outcome: SourceOutcome::NotConsulted,
            });
        }
    }
    attempts
}

fn trimmed(token: SecretString) -> SecretString {
    let text = token.expose_secret();
    if text.trim() == text {
        token
    } else {
        SecretString::from(text.trim().to_string())
    }
}

/// Read a token file: at most a little more than [`MAX_TOKEN_BYTES`] (so `/dev/zero` cannot hang
/// us; an oversized file is then refused as oversized), surrounding whitespace trimmed.
fn read_token_file(path: &Path) -> Result<SecretString, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_TOKEN_BYTES as u64 + 1024)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    Ok(SecretString::from(text.trim().to_string()))
}
