//! The attack matrix: each defect is refused with its own named reason.

use serde_json::json;

use super::*;
use crate::identity::{Rejection, Segment, UnixTime};

/// Already encoded header and payload, signed with the test secret.
fn signed(header: &str, payload: &str) -> String {
    let input = format!("{header}.{payload}");
    format!("{input}.{}", hs256(SECRET, &input))
}

fn refuse(token: &str) -> Rejection {
    verifier().verify_at(token.as_bytes(), NOW).unwrap_err()
}

#[test]
fn good_token_is_accepted() {
    let claims = verifier()
        .verify_at(token(&good_claims()).as_bytes(), NOW)
        .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.tier, crate::config::Tier::User);
    assert_eq!(
        claims.scopes().collect::<Vec<_>>(),
        ["tools:call", "resources:read"]
    );
}

#[test]
fn alg_none() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good_claims().to_string().as_bytes());
    assert_eq!(refuse(&format!("{header}.{payload}.")), Rejection::AlgNone);
    let header = b64(br#"{"alg":"NoNe"}"#);
    assert_eq!(refuse(&format!("{header}.{payload}.")), Rejection::AlgNone);
}

#[test]
fn other_algorithms_are_named() {
    for alg in ["HS384", "HS512", "RS256", "ES256", "EdDSA"] {
        let header = format!(r#"{{"typ":"JWT","alg":"{alg}"}}"#);
        let t = token_raw(&header, &good_claims().to_string(), SECRET);
        let r = refuse(&t);
        assert_eq!(
            r,
            Rejection::WrongAlgorithm {
                alg: format!("{alg:?}")
            }
        );
        assert_eq!(
            r.to_string(),
            format!("algorithm \"{alg}\" is not accepted; only HS256 is")
        );
    }
}

#[test]
fn another_hs256_header_is_not_the_pinned_one() {
    let t = token_raw(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(refuse(&t).code(), "unexpected_header");
    let t = token_raw(
        r#"{"typ":"JWT","alg":"HS256","kid":"x"}"#,
        &good_claims().to_string(),
        SECRET,
    );
    assert_eq!(refuse(&t).code(), "unexpected_header");
}

#[test]
fn signed_with_another_secret() {
    let t = token_raw(PINNED_HEADER_JSON, &good_claims().to_string(), OTHER_SECRET);
    assert_eq!(refuse(&t), Rejection::BadSignature);
}

#[test]
fn tampered_payload() {
    let good = token(&good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let admin = b64(claims_with(json!({"tier": "admin"})).to_string().as_bytes());
    let t = format!("{}.{admin}.{}", parts[0], parts[2]);
    assert_eq!(refuse(&t), Rejection::BadSignature);
}

#[test]
fn tampered_signature() {
    let good = token(&good_claims());
    let mut bytes = good.into_bytes();
    let at = bytes.len() - 20;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let t = String::from_utf8(bytes).unwrap();
    assert_eq!(refuse(&t), Rejection::BadSignature);
}

#[test]
fn truncated() {
    let good = token(&good_claims());
    let two = good.rsplit_once('.').unwrap().0;
    assert_eq!(refuse(two), Rejection::WrongSegmentCount { segments: 2 });
    let one = good.split_once('.').unwrap().0;
    assert_eq!(refuse(one), Rejection::WrongSegmentCount { segments: 1 });
    // Cut inside the signature: 40 characters decode to 30 bytes.
    assert_eq!(refuse(&good[..good.len() - 3]), Rejection::BadSignature);
    assert_eq!(refuse(""), Rejection::Empty);
    assert_eq!(
        refuse(&format!("{good}.x")),
        Rejection::WrongSegmentCount { segments: 4 }
    );
}

#[test]
fn not_base64url() {
    use base64::engine::general_purpose::STANDARD;
    let header = b64(PINNED_HEADER_JSON.as_bytes());
    // Standard base64 with padding, signed correctly over those very bytes.
    let payload = STANDARD.encode(claims_with(json!({"sub": "al?ce>>"})).to_string());
    assert!(payload.contains(['+', '/', '=']));
    let t = signed(&header, &payload);
    assert_eq!(
        refuse(&t),
        Rejection::NotBase64Url {
            segment: Segment::Payload
        }
    );
    let good = token(&good_claims());
    let t = format!("{}!", &good[..good.len() - 1]);
    assert_eq!(
        refuse(&t),
        Rejection::NotBase64Url {
            segment: Segment::Signature
        }
    );
    let t = format!("e$J.{}", good.split_once('.').unwrap().1);
    assert_eq!(
        refuse(&t),
        Rejection::NotBase64Url {
            segment: Segment::Header
        }
    );
}

#[test]
fn oversized() {
    let t = token(&claims_with(json!({"roles": ["r".repeat(9000)]})));
    assert_eq!(
        refuse(&t),
        Rejection::Oversized {
            len: t.len(),
            max: 8192
        }
    );
    let big = "A".repeat(1 << 20);
    assert_eq!(refuse(&big).code(), "oversized");
}

#[test]
fn expired_names_the_time() {
    let t = token(&claims_with(
        json!({"exp": 1_795_860_000u64, "iat": 1_795_850_000u64, "nbf": 1_795_850_000u64}),
    ));
    let r = verifier()
        .verify_at(t.as_bytes(), 1_795_870_000)
        .unwrap_err();
    assert_eq!(
        r,
        Rejection::Expired {
            at: UnixTime(1_795_860_000)
        }
    );
    assert_eq!(r.to_string(), "expired at 2026-11-28T10:00:00Z");
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let v = verifier();
    let exp = NOW + 100;
    let t = token(&claims_with(json!({"exp": exp})));
    assert!(v.verify_at(t.as_bytes(), exp + 30).is_ok());
    assert_eq!(
        v.verify_at(t.as_bytes(), exp + 31).unwrap_err().code(),
        "expired"
    );
    let nbf = NOW + 100;
    let t = token(&claims_with(json!({"nbf": nbf})));
    assert!(v.verify_at(t.as_bytes(), nbf - 30).is_ok());
    assert_eq!(
        v.verify_at(t.as_bytes(), nbf - 31).unwrap_err(),
        Rejection::NotYetValid {
            from: UnixTime(nbf)
        }
    );
}

#[test]
fn not_yet_valid() {
    let t = token(&claims_with(json!({"nbf": NOW + 3600, "exp": NOW + 7200})));
    assert_eq!(refuse(&t).code(), "not_yet_valid");
}

#[test]
fn wrong_issuer_and_audience() {
    let r = refuse(&token(&claims_with(json!({"iss": "evil\u{1b}[2J"}))));
    assert_eq!(r.code(), "wrong_issuer");
    assert!(!r.to_string().contains('\u{1b}'), "escaped: {r}");
    assert_eq!(
        r.to_string(),
        r#"issuer "evil\u{1b}[2J" is not the expected "lastmile""#
    );
    let r = refuse(&token(&claims_with(json!({"aud": "other"}))));
    assert_eq!(
        r,
        Rejection::WrongAudience {
            found: "\"other\"".into(),
            expected: "lastmile".into()
        }
    );
    // An array audience is not accepted either (jsonwebtoken, given our Claims type, agrees).
    let r = refuse(&token(&claims_with(json!({"aud": ["lastmile"]}))));
    assert_eq!(r.code(), "invalid_claim");
}

#[test]
fn each_missing_required_claim_is_named() {
    for claim in crate::identity::Claims::REQUIRED {
        let r = refuse(&token(&claims_with(json!({ claim: null }))));
        assert_eq!(r, Rejection::MissingClaim { claim }, "{claim}");
        assert_eq!(
            r.to_string(),
            format!("required claim `{claim}` is missing")
        );
        // An explicit null is missing too.
        let mut c = good_claims();
        c[claim] = serde_json::Value::Null;
        assert_eq!(refuse(&token(&c)), Rejection::MissingClaim { claim });
    }
}

#[test]
fn unknown_tier() {
    let r = refuse(&token(&claims_with(json!({"tier": "superadmin"}))));
    assert_eq!(
        r,
        Rejection::UnknownTier {
            tier: "\"superadmin\"".into()
        }
    );
    let r = refuse(&token(&claims_with(json!({"rate_limit_tier": "root"}))));
    assert_eq!(r.code(), "invalid_claim");
}

#[test]
fn wrongly_typed_claims_are_named() {
    let cases = [
        (json!({"exp": "tomorrow"}), "exp"),
        (json!({"exp": 1.8e9}), "exp"),
        (json!({"exp": -5}), "exp"),
        (json!({"sub": 42}), "sub"),
        (json!({"roles": "admin"}), "roles"),
        (json!({"roles": [1]}), "roles"),
        (json!({"scope": ["a"]}), "scope"),
        (json!({"nbf": "now"}), "nbf"),
        (json!({"iat": true}), "iat"),
    ];
    for (change, claim) in cases {
        let r = refuse(&token(&claims_with(change.clone())));
        assert!(
            matches!(r, Rejection::InvalidClaim { claim: c, .. } if c == claim),
            "{change}: {r}"
        );
    }
    let mut c = good_claims();
    c["nbf"] = serde_json::Value::Null;
    assert_eq!(refuse(&token(&c)).code(), "invalid_claim");
}

#[test]
fn malformed_claims() {
    let r = refuse(&token_raw(PINNED_HEADER_JSON, "[1,2]", SECRET));
    assert_eq!(r.code(), "malformed_claims");
    let r = refuse(&token_raw(PINNED_HEADER_JSON, "not json", SECRET));
    assert_eq!(r.code(), "malformed_claims");
    // A duplicate claim is refused rather than resolved either way.
    let dup = good_claims()
        .to_string()
        .replacen('{', r#"{"tier":"admin","#, 1);
    let r = refuse(&token_raw(PINNED_HEADER_JSON, &dup, SECRET));
    assert_eq!(r.code(), "malformed_claims");
    assert!(r.to_string().contains("duplicate field `tier`"), "{r}");
}

#[test]
fn exp_beyond_the_maximum_lifetime() {
    let max = 30 * 86_400;
    let t = token(&claims_with(
        json!({"iat": NOW, "nbf": NOW, "exp": NOW + max + 1}),
    ));
    let r = refuse(&t);
    assert_eq!(
        r,
        Rejection::LifetimeTooLong {
            exp: UnixTime(NOW + max + 1),
            lifetime_secs: max + 1,
            from_iat: true,
            max_secs: max
        }
    );
    assert!(
        r.to_string()
            .contains("beyond the maximum token lifetime of 30d")
    );
    // Without iat, measured from now (leeway allowed).
    let t = token(&claims_with(json!({"iat": null, "exp": NOW + max + 30})));
    assert!(verifier().verify_at(t.as_bytes(), NOW).is_ok());
    let t = token(&claims_with(json!({"iat": null, "exp": NOW + max + 31})));
    assert_eq!(refuse(&t).code(), "lifetime_too_long");
    // A backdated iat does not hide a far exp.
    let t = token(&claims_with(
        json!({"iat": NOW + max, "exp": NOW + 2 * max}),
    ));
    assert_eq!(refuse(&t).code(), "lifetime_too_long");
}

#[test]
fn codes_are_distinct_across_the_matrix() {
    let codes = [
        "oversized",
        "empty",
        "malformed",
        "not_base64url",
        "malformed_header",
        "alg_none",
        "wrong_algorithm",
        "unexpected_header",
        "bad_signature",
        "malformed_claims",
        "missing_claim",
        "invalid_claim",
        "unknown_tier",
        "expired",
        "not_yet_valid",
        "wrong_issuer",
        "wrong_audience",
        "lifetime_too_long",
    ];
    let unique: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
    let r = refuse(&format!("{}.e30.", b64(b"[]")));
    assert_eq!(r, Rejection::MalformedHeader);
}

#[test]
fn debug_never_shows_the_key() {
    let text = format!("{:?}", verifier());
    assert!(!text.contains(SECRET), "{text}");
    assert!(text.contains("[redacted]"));
}

/// The same bytes written with stray trailing bits in a part's last character: a lenient decoder
/// reads them as the canonical text, which would make a signed token malleable. Refused as not
/// base64url, even when the odd text itself is signed, as jsonwebtoken refuses it.
#[test]
fn stray_trailing_bits_are_refused_even_when_signed() {
    const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // Setting the lowest bit of the last character's six keeps the decoded bytes for a lenient
    // decoder (those bits are padding) and breaks canonical form.
    let stray = |part: &str| {
        let mut bytes = part.as_bytes().to_vec();
        let last = bytes.last_mut().unwrap();
        let index = URL_SAFE.iter().position(|c| c == last).unwrap();
        assert_eq!(index % 4, 0, "a canonical last character of {part}");
        *last = URL_SAFE[index + 1];
        String::from_utf8(bytes).unwrap()
    };
    let header = b64(PINNED_HEADER_JSON.as_bytes());
    let reference = crate::identity::reference::ReferenceVerifier::new(&auth(), &secret()).unwrap();
    // Claims whose JSON leaves trailing bits in its last character (not a multiple of 3 long).
    let mut claims = good_claims().to_string();
    while claims.len().is_multiple_of(3) {
        claims.insert(1, ' ');
    }
    let payload = stray(&b64(claims.as_bytes()));
    let signed = signed(&header, &payload);
    assert_eq!(
        refuse(&signed),
        Rejection::NotBase64Url {
            segment: Segment::Payload
        }
    );
    assert!(reference.decode(signed.as_bytes()).is_err());

    let good = token(&good_claims());
    let (input, signature) = good.rsplit_once('.').unwrap();
    assert_eq!(signature.len(), 43);
    let odd = format!("{input}.{}", stray(signature));
    assert_eq!(
        refuse(&odd),
        Rejection::NotBase64Url {
            segment: Segment::Signature
        }
    );
    assert!(reference.decode(odd.as_bytes()).is_err());
}
