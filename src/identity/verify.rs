//! The lean HS256 verifier: a pinned header, HMAC-SHA256 with a constant-time compare, then one
//! borrowed scan of the payload (decoded on the stack) for the shape lastmile issues. Once every
//! check has passed, [`Verifier::verify_with`] hands the borrowed [`ClaimsRef`] to the caller,
//! which copies what it keeps (a session: subject, session and token ids); [`Verifier::verify_at`]
//! owns every claim. Nothing is allocated for a good token. No JSON is parsed before the signature
//! has been checked (the header is compared byte for byte; it is decoded only to name why it was
//! refused). A payload the scan declines takes one owned `serde_json` pass into [`Claims`], so a
//! refusal's reason is the one it always had.
//!
//! It accepts exactly what jsonwebtoken's validator accepts when configured the same way (HS256,
//! `iss`, `aud`, leeway, `nbf` checked, `exp`/`iss`/`aud`/`sub` required, claims parsed into
//! [`Claims`]) plus three rules jsonwebtoken has no setting for: the header must be the one
//! lastmile issues, the token at most [`MAX_TOKEN_BYTES`], and its lifetime at most
//! `auth.max_token_lifetime`. The differential test and the `jwt_differential` fuzz target hold it
//! to that; [`super::reference::ReferenceVerifier`] is the other side of the comparison.

use std::mem::MaybeUninit;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64_simd::Out;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::claims::{Claims, ClaimsRef};
use super::secret::{WeakSecret, check_signing_secret};
use super::time::{UnixTime, human_secs, now_unix};
use crate::config::{AuthSection, Tier};

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// The only header accepted, base64url: `{"typ":"JWT","alg":"HS256"}`, exactly what jsonwebtoken's
/// `Header::new(Algorithm::HS256)` serializes to and what [`super::TokenIssuer`] writes.
pub const PINNED_HEADER: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9";

/// Payloads up to this many decoded bytes are verified without a heap buffer (a session token's
/// is about 250).
const PAYLOAD_STACK_BYTES: usize = 1024;

/// The pinned header as JSON, for messages.
pub const PINNED_HEADER_JSON: &str = r#"{"typ":"JWT","alg":"HS256"}"#;

/// A part of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The first part: the header.
    Header,
    /// The second part: the claims.
    Payload,
    /// The third part: the signature.
    Signature,
}

impl std::fmt::Display for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// Why a token was refused: every failure has its own variant and says exactly what.
///
/// Values taken from the token are quoted, escaped and cut to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token is {len} bytes, over the {max}-byte limit")]
    Oversized {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nothing at all.
    #[error("token is empty")]
    Empty,
    /// Not three dot-separated parts (truncated, or not a JWT).
    #[error("token is malformed: {segments} dot-separated part(s) where a JWT has 3")]
    WrongSegmentCount {
        /// How many parts it has.
        segments: usize,
    },
    /// A part is not unpadded base64url.
    #[error("token's {segment} is not unpadded base64url")]
    NotBase64Url {
        /// Which part.
        segment: Segment,
    },
    /// The header is not a JSON object with a string `alg`.
    #[error("token header is not a JSON object with an `alg`")]
    MalformedHeader,
    /// `alg: none`: an unsigned token.
    #[error("algorithm `none` (an unsigned token) is never accepted")]
    AlgNone,
    /// Another algorithm than HS256 (HS384, HS512, RS256, …).
    #[error("algorithm {alg} is not accepted; only HS256 is")]
    WrongAlgorithm {
        /// The header's `alg`, quoted.
        alg: String,
    },
    /// An HS256 header other than the one lastmile issues.
    #[error("header {header} is not the one lastmile issues ({PINNED_HEADER_JSON})")]
    UnexpectedHeader {
        /// The header's JSON, quoted.
        header: String,
    },
    /// The signature does not match the signing secret.
    #[error(
        "signature does not match the signing secret: the token was signed with another secret, or altered"
    )]
    BadSignature,
    /// The (authentic) payload is not a valid claims object.
    #[error("claims are malformed: {detail}")]
    MalformedClaims {
        /// What the JSON parser said.
        detail: String,
    },
    /// A required claim is absent (or `null`).
    #[error("required claim `{claim}` is missing")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },
    /// A claim has the wrong type or value.
    #[error("claim `{claim}` is invalid: {detail}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// `tier` is not one of the six tiers.
    #[error("unknown tier {tier} (expected one of admin, user, service, a2a, mcp, anonymous)")]
    UnknownTier {
        /// The claim's value, quoted.
        tier: String,
    },
    /// `exp` (plus leeway) is in the past.
    #[error("expired at {at}")]
    Expired {
        /// The `exp` claim.
        at: UnixTime,
    },
    /// `nbf` (minus leeway) is in the future.
    #[error("not valid before {from}")]
    NotYetValid {
        /// The `nbf` claim.
        from: UnixTime,
    },
    /// `iss` is not the profile's issuer.
    #[error("issuer {found} is not the expected {expected:?}")]
    WrongIssuer {
        /// The claim, quoted.
        found: String,
        /// The profile's `auth.issuer`.
        expected: String,
    },
    /// `aud` is not the profile's audience.
    #[error("audience {found} is not the expected {expected:?}")]
    WrongAudience {
        /// The claim, quoted.
        found: String,
        /// The profile's `auth.audience`.
        expected: String,
    },
    /// `exp` lies further than the maximum token lifetime from now (or from `iat`).
    #[error(
        "expires at {exp}, {} after {}, beyond the maximum token lifetime of {}",
        human_secs(*lifetime_secs),
        if *from_iat { "it was issued" } else { "now" },
        human_secs(*max_secs)
    )]
    LifetimeTooLong {
        /// The `exp` claim.
        exp: UnixTime,
        /// `exp - iat` or `exp - now`.
        lifetime_secs: u64,
        /// Whether the lifetime was measured from `iat`.
        from_iat: bool,
        /// The profile's `auth.max_token_lifetime` in seconds.
        max_secs: u64,
    },
}

impl Rejection {
    /// A stable snake_case name for logs, audit rows and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::Oversized { .. } => "oversized",
            Rejection::Empty => "empty",
            Rejection::WrongSegmentCount { .. } => "malformed",
            Rejection::NotBase64Url { .. } => "not_base64url",
            Rejection::MalformedHeader => "malformed_header",
            Rejection::AlgNone => "alg_none",
            Rejection::WrongAlgorithm { .. } => "wrong_algorithm",
            Rejection::UnexpectedHeader { .. } => "unexpected_header",
            Rejection::BadSignature => "bad_signature",
            Rejection::MalformedClaims { .. } => "malformed_claims",
            Rejection::MissingClaim { .. } => "missing_claim",
            Rejection::InvalidClaim { .. } => "invalid_claim",
            Rejection::UnknownTier { .. } => "unknown_tier",
            Rejection::Expired { .. } => "expired",
            Rejection::NotYetValid { .. } => "not_yet_valid",
            Rejection::WrongIssuer { .. } => "wrong_issuer",
            Rejection::WrongAudience { .. } => "wrong_audience",
            Rejection::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

/// A value from a token, made safe for a message: escaped, quoted, at most 64 characters.
pub(crate) fn quote(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{text:?}")
    }
}

/// The three parts of a structurally sound token with the pinned header.
pub(crate) struct Parts<'a> {
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: &'a [u8],
    pub(crate) signature: &'a [u8],
}

/// Size, three parts, pinned header. Needs no secret.
pub(crate) fn split(token: &[u8]) -> Result<Parts<'_>, Rejection> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::Oversized {
            len: token.len(),
            max: MAX_TOKEN_BYTES,
        });
    }
    if token.is_empty() {
        return Err(Rejection::Empty);
    }
    let mut dots = memchr::memchr_iter(b'.', token);
    let (first, second) = match (dots.next(), dots.next(), dots.next()) {
        (Some(a), Some(b), None) => (a, b),
        _ => {
            let segments = memchr::memchr_iter(b'.', token).count() + 1;
            return Err(Rejection::WrongSegmentCount { segments });
        }
    };
    let header = &token[..first];
    if header != PINNED_HEADER.as_bytes() {
        return Err(diagnose_header(header));
    }
    Ok(Parts {
        signing_input: &token[..second],
        payload: &token[first + 1..second],
        signature: &token[second + 1..],
    })
}

/// Why a header that is not the pinned one is refused.
fn diagnose_header(header: &[u8]) -> Rejection {
    let Ok(json) = URL_SAFE_NO_PAD.decode(header) else {
        return Rejection::NotBase64Url {
            segment: Segment::Header,
        };
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&json)
    else {
        return Rejection::MalformedHeader;
    };
    match map.get("alg") {
        Some(serde_json::Value::String(alg)) if alg.eq_ignore_ascii_case("none") => {
            Rejection::AlgNone
        }
        Some(serde_json::Value::String(alg)) if alg != "HS256" => {
            Rejection::WrongAlgorithm { alg: quote(alg) }
        }
        Some(serde_json::Value::String(_)) => Rejection::UnexpectedHeader {
            header: quote(&String::from_utf8_lossy(&json)),
        },
        _ => Rejection::MalformedHeader,
    }
}

/// Decode the signature into its 32 bytes.
pub(crate) fn decode_signature(signature: &[u8]) -> Result<[u8; 32], Rejection> {
    let mut sig = [0u8; 32];
    // 43 characters are 32 bytes. The fast decoder is as strict as `base64` (no padding, no
    // stray trailing bits); whatever it declines, `base64` decodes again and names the reason.
    if signature.len() == 43
        && base64_simd::URL_SAFE_NO_PAD
            .decode(signature, Out::from_slice(&mut sig))
            .is_ok()
    {
        return Ok(sig);
    }
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut sig) {
        Ok(32) => Ok(sig),
        Ok(_) | Err(base64::DecodeSliceError::OutputSliceTooSmall) => Err(Rejection::BadSignature),
        Err(base64::DecodeSliceError::DecodeError(_)) => Err(Rejection::NotBase64Url {
            segment: Segment::Signature,
        }),
    }
}

/// Decode the payload's bytes.
pub(crate) fn decode_payload(payload: &[u8]) -> Result<Vec<u8>, Rejection> {
    URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Rejection::NotBase64Url {
            segment: Segment::Payload,
        })
}

/// Verifies session tokens against the profile's signing secret and `[auth]` settings.
///
/// ```
/// use lastmile::config::{AuthSection, Tier};
/// use lastmile::identity::{IssueRequest, TokenIssuer, Verifier};
/// use secrecy::SecretString;
///
/// let auth = AuthSection::default();
/// let secret = SecretString::from("kP3xV9qL2mZ7wR4tY8uB1nC6sD0fG5hJ".to_string());
/// let issued = TokenIssuer::new(&auth, &secret)?.issue(&IssueRequest::new("alice", Tier::User))?;
/// let claims = Verifier::new(&auth, &secret)?.verify(&issued.token)?;
/// assert_eq!(claims.sub, "alice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Verifier {
    /// HMAC-SHA256 keyed with the signing secret (inner and outer pads already absorbed).
    mac: Hmac<Sha256>,
    issuer: String,
    audience: String,
    leeway: u64,
    max_lifetime: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("key", &"[redacted]")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl Verifier {
    /// A verifier for the profile's `[auth]` settings; refuses a weak secret.
    pub fn new(auth: &AuthSection, secret: &SecretString) -> Result<Self, WeakSecret> {
        let key = secret.expose_secret().as_bytes();
        check_signing_secret(key, auth.min_secret_length)?;
        // HMAC takes keys of any length (longer ones are hashed), so this cannot fail; the
        // mapping only keeps the code free of panics.
        let mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| WeakSecret::TooShort {
            len: key.len(),
            min: auth.min_secret_length,
        })?;
        Ok(Verifier {
            mac,
            issuer: auth.issuer.clone(),
            audience: auth.audience.clone(),
            leeway: auth.leeway.0.as_secs(),
            max_lifetime: auth.max_token_lifetime.0.as_secs(),
        })
    }

    /// Verify a token against the wall clock.
    pub fn verify(&self, token: &SecretString) -> Result<Claims, Rejection> {
        self.verify_at(token.expose_secret().as_bytes(), now_unix())
    }

    /// Verify a token as of `now` (Unix seconds).
    pub fn verify_at(&self, token: &[u8], now: u64) -> Result<Claims, Rejection> {
        self.verify_with(token, now, |c| c.to_owned_claims())
    }

    /// Verify a token as of `now` (Unix seconds) and hand its claims, borrowed from the decoded
    /// payload, to `read`: the caller copies only what it keeps. Nothing is allocated for a
    /// token of the shape lastmile issues.
    pub fn verify_with<T>(
        &self,
        token: &[u8],
        now: u64,
        read: impl FnOnce(&ClaimsRef<'_>) -> T,
    ) -> Result<T, Rejection> {
        let parts = split(token)?;
        let signature = decode_signature(parts.signature)?;
        // A session token's payload fits the stack buffer and takes the fast decoder. A larger
        // one (up to the size limit), or one the fast decoder declines, is decoded by `base64`
        // onto the heap, which accepts exactly the same and names why it refuses.
        let mut stack = [MaybeUninit::<u8>::uninit(); PAYLOAD_STACK_BYTES];
        let heap;
        let fast = base64_simd::URL_SAFE_NO_PAD;
        let decoded = match fast.decoded_length(parts.payload) {
            Ok(len) if len <= PAYLOAD_STACK_BYTES => fast
                .decode(parts.payload, Out::from_uninit_slice(&mut stack[..len]))
                .ok(),
            _ => None,
        };
        let payload: &[u8] = match decoded {
            Some(bytes) => bytes,
            None => {
                heap = decode_payload(parts.payload)?;
                &heap
            }
        };
        let mut mac = self.mac.clone();
        mac.update(parts.signing_input);
        // `verify_slice` compares in constant time.
        mac.verify_slice(&signature)
            .map_err(|_| Rejection::BadSignature)?;
        // The borrowed scan reads the shape lastmile issues; anything else (escapes, unknown
        // claims, nulls, a refusal) takes the owned serde parse, so every refusal keeps the exact
        // reason and message it always had.
        if let Some(claims) = ClaimsRef::scan(payload) {
            self.check_claims(&claims, now)?;
            return Ok(read(&claims));
        }
        let owned: Claims =
            serde_json::from_slice(payload).map_err(|e| diagnose_claims(payload, &e))?;
        let claims = ClaimsRef::of(&owned);
        self.check_claims(&claims, now)?;
        Ok(read(&claims))
    }

    fn check_claims(&self, claims: &ClaimsRef<'_>, now: u64) -> Result<(), Rejection> {
        let ClaimsRef {
            iss,
            aud,
            exp,
            iat,
            nbf,
            ..
        } = *claims;
        if iss != self.issuer {
            return Err(Rejection::WrongIssuer {
                found: quote(iss),
                expected: self.issuer.clone(),
            });
        }
        if aud != self.audience {
            return Err(Rejection::WrongAudience {
                found: quote(aud),
                expected: self.audience.clone(),
            });
        }
        if exp.saturating_add(self.leeway) < now {
            return Err(Rejection::Expired { at: UnixTime(exp) });
        }
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(Rejection::NotYetValid {
                from: UnixTime(nbf),
            });
        }
        let too_long = |lifetime_secs: u64, from_iat: bool| Rejection::LifetimeTooLong {
            exp: UnixTime(exp),
            lifetime_secs,
            from_iat,
            max_secs: self.max_lifetime,
        };
        if let Some(iat) = iat {
            let lifetime = exp.saturating_sub(iat);
            if lifetime > self.max_lifetime {
                return Err(too_long(lifetime, true));
            }
        }
        let remaining = exp.saturating_sub(now);
        if remaining > self.max_lifetime.saturating_add(self.leeway) {
            return Err(too_long(remaining, false));
        }
        Ok(())
    }

    /// The profile's issuer this verifier expects.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The profile's audience this verifier expects.
    pub fn audience(&self) -> &str {
        &self.audience
    }
}

/// Name what is wrong with an authentic payload that does not parse into [`Claims`].
fn diagnose_claims(payload: &[u8], error: &serde_json::Error) -> Rejection {
    let malformed = || Rejection::MalformedClaims {
        detail: error.to_string(),
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(payload)
    else {
        return malformed();
    };
    for claim in Claims::REQUIRED {
        if map.get(claim).is_none_or(serde_json::Value::is_null) {
            return Rejection::MissingClaim { claim };
        }
    }
    for claim in ["tier", "rate_limit_tier"] {
        if let Some(serde_json::Value::String(tier)) = map.get(claim)
            && tier.parse::<Tier>().is_err()
        {
            return if claim == "tier" {
                Rejection::UnknownTier { tier: quote(tier) }
            } else {
                Rejection::InvalidClaim {
                    claim,
                    detail: format!("unknown tier {}", quote(tier)),
                }
            };
        }
    }
    let checks: [ClaimCheck; 13] = [
        ("iss", serde_json::Value::is_string, "not a string"),
        ("aud", serde_json::Value::is_string, "not a string"),
        ("sub", serde_json::Value::is_string, "not a string"),
        (
            "exp",
            serde_json::Value::is_u64,
            "not a whole number of seconds",
        ),
        ("iat", is_u64_or_null, "not a whole number of seconds"),
        (
            "nbf",
            serde_json::Value::is_u64,
            "not a whole number of seconds",
        ),
        ("jti", serde_json::Value::is_string, "not a string"),
        ("session_id", serde_json::Value::is_string, "not a string"),
        ("tier", serde_json::Value::is_string, "not a string"),
        ("scope", is_string_or_null, "not a string"),
        ("roles", is_string_array, "not an array of strings"),
        ("user_type", is_string_or_null, "not a string"),
        ("rate_limit_tier", is_string_or_null, "not a string"),
    ];
    for (claim, ok, what) in checks {
        if let Some(value) = map.get(claim)
            && !ok(value)
        {
            return Rejection::InvalidClaim {
                claim,
                detail: what.to_string(),
            };
        }
    }
    malformed()
}

/// A claim, a test of its JSON value, and what to say when the test fails.
type ClaimCheck = (&'static str, fn(&serde_json::Value) -> bool, &'static str);

fn is_u64_or_null(v: &serde_json::Value) -> bool {
    v.is_null() || v.is_u64()
}

fn is_string_or_null(v: &serde_json::Value) -> bool {
    v.is_null() || v.is_string()
}

fn is_string_array(v: &serde_json::Value) -> bool {
    v.as_array()
        .is_some_and(|items| items.iter().all(serde_json::Value::is_string))
}

/// What can be read from a token without its secret, for `lastmile token inspect`.
#[derive(Debug, Clone)]
pub struct Unverified {
    /// The decoded header, when it is JSON.
    pub header: Option<serde_json::Value>,
    /// The decoded claims, when they are JSON. Not verified: never act on them.
    pub claims: Option<serde_json::Value>,
    /// A reason the token is refused whatever the secret, if there is one.
    pub problem: Option<Rejection>,
}

/// Decode a token without verifying it: its header and claims for display, and any problem that
/// refuses it whatever the secret (size, shape, algorithm, header, encoding).
pub fn inspect_unverified(token: &[u8]) -> Unverified {
    let decode_json = |part: &[u8]| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
    };
    let mut parts = token.split(|b| *b == b'.');
    let header = parts.next().and_then(decode_json);
    let claims = parts.next().and_then(decode_json);
    let problem = split(token)
        .and_then(|p| decode_signature(p.signature).and(decode_payload(p.payload)))
        .err();
    Unverified {
        header,
        claims,
        problem,
    }
}
