//! Signed proxy identity: a fronting SSO-terminating proxy asserts who the caller is in one
//! header, signed with HMAC-SHA256 under a secret it shares with lastmile. It is looked for before
//! the token chain; present, it decides — a valid one is the identity, any other is refused with
//! its named reason, loopback or not, and never falls through to the chain.
//!
//! # Header format (version 1)
//!
//! Header name: `X-Lastmile-Identity` (`http.proxy_identity.header`). Value, ASCII, no spaces:
//!
//! ```text
//! v1;sub=<subject>;tier=<tier>;sid=<session id>;exp=<unix seconds>;sig=<signature>
//! ```
//!
//! - The six fields appear exactly once, in this order; nothing else is accepted.
//! - `sub`: the subject, UTF-8 percent-encoded: every byte outside `A-Z a-z 0-9 - . _ ~` is written
//!   `%XX` (hex, either case); 1 to 256 bytes once decoded.
//! - `tier`: `admin`, `user`, `service`, `a2a`, `mcp` or `anonymous`.
//! - `sid`: the proxy's session id, 1 to 128 characters of `A-Z a-z 0-9 - . _ ~`.
//! - `exp`: expiry, decimal Unix seconds without sign or leading zero. Refused once
//!   `now > exp + leeway` (`http.proxy_identity.leeway`, default 5 s), and when
//!   `exp - now > max_lifetime + leeway` (default 5 min) so a captured header cannot be replayed for
//!   long: a proxy signs a fresh header per request or every few minutes.
//! - `sig`: base64url without padding (43 characters) of
//!   `HMAC-SHA256(key, <every byte of the value before ";sig=">)`.
//!
//! For example, for subject `alice@example.com`, tier `user`, session `s-1` and expiry
//! `1800000000` the signed text is `v1;sub=alice%40example.com;tier=user;sid=s-1;exp=1800000000`,
//! and [`sign_header`] appends `;sig=` and its MAC.
//!
//! The key is the profile's secret [`PROXY_KEY_ENTRY`] (at least 32 bytes); during a rotation the
//! previous key [`PROXY_KEY_PREVIOUS_ENTRY`] is accepted too: put the new key in place, move the
//! old one to the previous entry, update the proxy, then delete the previous entry. The signature
//! is checked (in constant time, against both keys) before any field is parsed. Without a
//! configured key a header that arrives is refused ([`ProxyRejection::NotConfigured`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use http::HeaderMap;
use http::header::HeaderName;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::{ProxyIdentitySection, Tier};
use crate::identity::{UnixTime, WeakSecret, check_signing_secret};

/// The secret store entry holding the current proxy key.
pub const PROXY_KEY_ENTRY: &str = "proxy-identity-key";
/// The secret store entry holding the previous proxy key, accepted during a rotation.
pub const PROXY_KEY_PREVIOUS_ENTRY: &str = "proxy-identity-key-previous";
/// The least key length, in bytes.
pub const MIN_PROXY_KEY_BYTES: usize = 32;
/// The version prefix of the value.
pub const VERSION: &str = "v1";

const SIG_SEP: &str = ";sig=";
const SIG_CHARS: usize = 43;
const MAX_SUBJECT_BYTES: usize = 256;
const MAX_SID_BYTES: usize = 128;
/// Longest value looked at.
const MAX_VALUE_BYTES: usize = 2048;

/// Which key verified an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// The current key.
    Current,
    /// The previous key (a rotation is under way).
    Previous,
}

/// An identity a proxy signed, verified. Only [`ProxyVerifier::verify`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyIdentity {
    subject: String,
    tier: Tier,
    session_id: String,
    expires_at: UnixTime,
    key: KeyUsed,
}

impl ProxyIdentity {
    /// The subject.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The tier.
    pub fn tier(&self) -> Tier {
        self.tier
    }
    /// The proxy's session id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }
    /// When the assertion expires.
    pub fn expires_at(&self) -> UnixTime {
        self.expires_at
    }
    /// Which key verified it.
    pub fn key(&self) -> KeyUsed {
        self.key
    }
}

/// Why a proxy identity header was refused. No variant holds the header's bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyRejection {
    /// A header arrived but this profile has no proxy key.
    #[error(
        "a proxy identity header arrived, but no proxy key is configured, so it cannot be trusted"
    )]
    NotConfigured,
    /// The header appears more than once.
    #[error("the proxy identity header appears more than once")]
    Repeated,
    /// Not a `v1;` value.
    #[error("the proxy identity is not version {VERSION}")]
    UnknownVersion,
    /// No `;sig=` field.
    #[error("the proxy identity is unsigned")]
    Unsigned,
    /// The signature is not 43 characters of base64url.
    #[error("the proxy identity's signature is not 43 characters of unpadded base64url")]
    MalformedSignature,
    /// The signature matches neither key.
    #[error("the proxy identity's signature does not match the proxy key: forged or altered")]
    BadSignature,
    /// A field is missing, out of order, repeated or badly formed.
    #[error("the proxy identity's `{field}` field is missing or malformed")]
    Malformed {
        /// The field (`sub`, `tier`, `sid`, `exp`, or `value` for the whole).
        field: &'static str,
    },
    /// The tier is not one of the six.
    #[error("the proxy identity names an unknown tier")]
    UnknownTier,
    /// Past its expiry.
    #[error("the proxy identity expired at {at}")]
    Expired {
        /// `exp`.
        at: UnixTime,
    },
    /// Expires further ahead than the maximum lifetime.
    #[error("the proxy identity expires at {exp}, more than {max_secs} s ahead")]
    LifetimeTooLong {
        /// `exp`.
        exp: UnixTime,
        /// `max_lifetime` in seconds.
        max_secs: u64,
    },
}

impl ProxyRejection {
    /// A stable snake_case name.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyRejection::NotConfigured => "proxy_identity_not_configured",
            ProxyRejection::Repeated => "repeated",
            ProxyRejection::UnknownVersion => "unknown_version",
            ProxyRejection::Unsigned => "unsigned",
            ProxyRejection::MalformedSignature => "malformed_signature",
            ProxyRejection::BadSignature => "bad_signature",
            ProxyRejection::Malformed { .. } => "malformed",
            ProxyRejection::UnknownTier => "unknown_tier",
            ProxyRejection::Expired { .. } => "expired",
            ProxyRejection::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

/// Why a header cannot be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key is weak.
    #[error(transparent)]
    WeakKey(#[from] WeakSecret),
    /// The subject is empty or longer than 256 bytes.
    #[error("the subject must be 1 to {MAX_SUBJECT_BYTES} bytes")]
    Subject,
    /// The session id is empty, too long, or has other characters than `A-Z a-z 0-9 - . _ ~`.
    #[error("the session id must be 1 to {MAX_SID_BYTES} characters of A-Z a-z 0-9 - . _ ~")]
    SessionId,
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The proxy keys: the current one and, during a rotation, the previous one.
pub struct ProxyKeys {
    current: Hmac<Sha256>,
    previous: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for ProxyKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyKeys")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn keyed(secret: &SecretString) -> Result<Hmac<Sha256>, WeakSecret> {
    let bytes = secret.expose_secret().as_bytes();
    check_signing_secret(bytes, MIN_PROXY_KEY_BYTES)?;
    // HMAC takes a key of any length, so this cannot fail; map it rather than unwrap.
    Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| WeakSecret::TooShort {
        len: bytes.len(),
        min: MIN_PROXY_KEY_BYTES,
    })
}

impl ProxyKeys {
    /// The keys; each must be a strong secret (at least 32 bytes, not a pattern).
    pub fn new(
        current: &SecretString,
        previous: Option<&SecretString>,
    ) -> Result<Self, WeakSecret> {
        Ok(ProxyKeys {
            current: keyed(current)?,
            previous: previous.map(keyed).transpose()?,
        })
    }
}

/// Verifies proxy identity headers.
#[derive(Debug)]
pub struct ProxyVerifier {
    header: HeaderName,
    keys: Option<ProxyKeys>,
    max_lifetime: u64,
    leeway: u64,
}

/// Why the verifier cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxySetupError {
    /// `http.proxy_identity.header` is not a header name.
    #[error(
        "`http.proxy_identity.header = {0:?}` is not a valid HTTP header name\nhint: use letters, digits and dashes, e.g. `x-lastmile-identity`"
    )]
    BadHeader(String),
}

impl ProxyVerifier {
    /// From `[http.proxy_identity]` and the keys (`None`: no proxy key in the store).
    pub fn new(
        cfg: &ProxyIdentitySection,
        keys: Option<ProxyKeys>,
    ) -> Result<Self, ProxySetupError> {
        let header = HeaderName::from_bytes(cfg.header.as_bytes())
            .map_err(|_| ProxySetupError::BadHeader(cfg.header.clone()))?;
        Ok(ProxyVerifier {
            header,
            keys,
            max_lifetime: cfg.max_lifetime.0.as_secs(),
            leeway: cfg.leeway.0.as_secs(),
        })
    }

    /// The header's name.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Look for the header: `None` when absent (the chain runs), else the verdict.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<Result<ProxyIdentity, ProxyRejection>> {
        let mut all = headers.get_all(&self.header).iter();
        let value = all.next()?;
        if all.next().is_some() {
            return Some(Err(ProxyRejection::Repeated));
        }
        Some(self.verify_value(value.as_bytes(), now))
    }

    /// Verify one header value at `now` (Unix seconds).
    pub fn verify_value(&self, value: &[u8], now: u64) -> Result<ProxyIdentity, ProxyRejection> {
        let Some(keys) = &self.keys else {
            return Err(ProxyRejection::NotConfigured);
        };
        if value.len() > MAX_VALUE_BYTES {
            return Err(ProxyRejection::Malformed { field: "value" });
        }
        if !value.starts_with(b"v1;") {
            return Err(ProxyRejection::UnknownVersion);
        }
        let Some(at) = memchr::memmem::rfind(value, SIG_SEP.as_bytes()) else {
            return Err(ProxyRejection::Unsigned);
        };
        let (signed, sig) = (&value[..at], &value[at + SIG_SEP.len()..]);
        if sig.len() != SIG_CHARS {
            return Err(ProxyRejection::MalformedSignature);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| ProxyRejection::MalformedSignature)?;
        // Both keys are always tried, so timing does not tell which one a forgery came close to.
        let mut current = keys.current.clone();
        current.update(signed);
        let by_current = current.verify_slice(&sig).is_ok();
        let by_previous = keys.previous.as_ref().is_some_and(|k| {
            let mut mac = k.clone();
            mac.update(signed);
            mac.verify_slice(&sig).is_ok()
        });
        let key = match (by_current, by_previous) {
            (true, _) => KeyUsed::Current,
            (false, true) => KeyUsed::Previous,
            (false, false) => return Err(ProxyRejection::BadSignature),
        };
        let fields = parse_fields(signed)?;
        if now > fields.exp.saturating_add(self.leeway) {
            return Err(ProxyRejection::Expired {
                at: UnixTime(fields.exp),
            });
        }
        if fields.exp.saturating_sub(now) > self.max_lifetime.saturating_add(self.leeway) {
            return Err(ProxyRejection::LifetimeTooLong {
                exp: UnixTime(fields.exp),
                max_secs: self.max_lifetime,
            });
        }
        Ok(ProxyIdentity {
            subject: fields.subject,
            tier: fields.tier,
            session_id: fields.sid,
            expires_at: UnixTime(fields.exp),
            key,
        })
    }
}

struct Fields {
    subject: String,
    tier: Tier,
    sid: String,
    exp: u64,
}

fn parse_fields(signed: &[u8]) -> Result<Fields, ProxyRejection> {
    let text =
        std::str::from_utf8(signed).map_err(|_| ProxyRejection::Malformed { field: "value" })?;
    let mut parts = text.split(';');
    if parts.next() != Some(VERSION) {
        return Err(ProxyRejection::UnknownVersion);
    }
    let mut field = |name: &'static str| -> Result<&str, ProxyRejection> {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .and_then(|p| p.strip_prefix('='))
            .ok_or(ProxyRejection::Malformed { field: name })
    };
    let sub = field("sub")?;
    let tier = field("tier")?;
    let sid = field("sid")?;
    let exp = field("exp")?;
    if parts.next().is_some() {
        return Err(ProxyRejection::Malformed { field: "value" });
    }
    let subject = decode_subject(sub).ok_or(ProxyRejection::Malformed { field: "sub" })?;
    let tier: Tier = tier.parse().map_err(|_| ProxyRejection::UnknownTier)?;
    if sid.is_empty() || sid.len() > MAX_SID_BYTES || !sid.bytes().all(is_unreserved) {
        return Err(ProxyRejection::Malformed { field: "sid" });
    }
    let exp_ok = !exp.is_empty()
        && exp.len() <= 20
        && exp.bytes().all(|b| b.is_ascii_digit())
        && (exp == "0" || !exp.starts_with('0'));
    let exp: u64 = exp
        .parse()
        .ok()
        .filter(|_| exp_ok)
        .ok_or(ProxyRejection::Malformed { field: "exp" })?;
    Ok(Fields {
        subject,
        tier,
        sid: sid.to_string(),
        exp,
    })
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Strict percent-decoding: only unreserved bytes and `%XX`; UTF-8; 1 to 256 bytes.
fn decode_subject(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = hex(*b.get(i + 1)?)?;
                let lo = hex(*b.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            c if is_unreserved(c) => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    if out.is_empty() || out.len() > MAX_SUBJECT_BYTES {
        return None;
    }
    String::from_utf8(out).ok()
}

fn encode_subject(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text a proxy signs for these fields (the value without `;sig=…`).
pub fn signing_input(
    subject: &str,
    tier: Tier,
    session_id: &str,
    expires_at: u64,
) -> Result<String, SignError> {
    if subject.is_empty() || subject.len() > MAX_SUBJECT_BYTES {
        return Err(SignError::Subject);
    }
    if session_id.is_empty()
        || session_id.len() > MAX_SID_BYTES
        || !session_id.bytes().all(is_unreserved)
    {
        return Err(SignError::SessionId);
    }
    Ok(format!(
        "{VERSION};sub={};tier={};sid={session_id};exp={expires_at}",
        encode_subject(subject),
        tier.as_str()
    ))
}

/// A signed header value for these fields under `key` — for proxy authors and tests.
pub fn sign_header(
    key: &SecretString,
    subject: &str,
    tier: Tier,
    session_id: &str,
    expires_at: u64,
) -> Result<String, SignError> {
    let mut mac = keyed(key)?;
    let input = signing_input(subject, tier, session_id, expires_at)?;
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{input}{SIG_SEP}{sig}"))
}

#[cfg(test)]
mod tests;
