//! Library-level tests of identity: the attack matrix, the vectors in `tests/data/jwt`, issuing,
//! the three modes, rate limits per tier, and the differential test against jsonwebtoken.

mod attacks;
mod borrowed;
mod differential;
mod issuing;
mod modes;
mod rate;
mod vectors;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::AuthSection;

use super::{PINNED_HEADER_JSON, Verifier};

pub(super) const SECRET: &str = "test-secret:Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQ";
pub(super) const OTHER_SECRET: &str = "other-secret:Hc5nM8bV2xZ7qW4eR1tY6uI9oP3aS0dF";
/// 2027-01-15T08:00:00Z
pub(super) const NOW: u64 = 1_800_000_000;

pub(super) fn secret() -> SecretString {
    SecretString::from(SECRET.to_string())
}

pub(super) fn auth() -> AuthSection {
    AuthSection::default()
}

pub(super) fn verifier() -> Verifier {
    Verifier::new(&auth(), &secret()).unwrap()
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn hs256(key: &str, signing_input: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// A token over raw header and payload JSON text, signed with `key`.
pub(super) fn token_raw(header: &str, payload: &str, key: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = hs256(key, &input);
    format!("{input}.{sig}")
}

/// Good claims as of `NOW`.
pub(super) fn good_claims() -> Value {
    json!({
        "iss": "lastmile",
        "aud": "lastmile",
        "sub": "alice",
        "exp": NOW + 8 * 3600,
        "iat": NOW - 60,
        "nbf": NOW - 60,
        "jti": "0b5e3c1a-8d52-4c55-9a0e-6c0f6f4f2b11",
        "session_id": "019a1b2c-3d4e-7f60-8a9b-0c1d2e3f4a5b",
        "tier": "user",
        "scope": "tools:call resources:read",
        "roles": ["developer"],
        "user_type": "human"
    })
}

/// Good claims with `changes` applied (`null` removes a claim).
pub(super) fn claims_with(changes: Value) -> Value {
    let mut c = good_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A token with the pinned header over `claims`, signed with the test secret.
pub(super) fn token(claims: &Value) -> String {
    token_raw(PINNED_HEADER_JSON, &claims.to_string(), SECRET)
}
