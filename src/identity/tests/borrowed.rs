//! The borrowed claims scan accepts nothing the owned serde parse refuses, and reads what it
//! accepts to equal claims: the verifier relies on it to keep every refusal's reason.

use crate::identity::Claims;
use crate::identity::Rejection;
use crate::identity::claims::ClaimsRef;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

/// Payloads around the edges of the claims grammar: escapes, nulls, wrong types, duplicates,
/// numbers at the limits, other JSON shapes.
fn payloads() -> Vec<String> {
    let good = good_claims().to_string();
    let mut out = vec![
        good.clone(),
        format!("  {good}\n\t"),
        good.replace(r#""alice""#, r#""al\u0069ce""#),
        good.replace(r#""alice""#, r#""al\"ice\n""#),
        good.replace(r#""developer""#, r#""dev\/eloper""#),
        good.replace(r#""human""#, r#""h\u00fcman""#),
        good.replace(r#""user""#, r#""us\u0065r""#),
        good.replace(r#""user""#, r#""root""#),
        good.replace(r#""lastmile""#, r#""\u006castmile""#),
        good.replace('}', r#","extra":{"deep":[1,2,{"x":null}]}}"#),
        good.replace('}', r#","sub":"mallory"}"#),
        good.replace('}', r#","rate_limit_tier":"admin"}"#),
        good.replace('}', r#","rate_limit_tier":null}"#),
        good.replace('}', r#","rate_limit_tier":"boss"}"#),
        good.replace('}', r#","iat":null}"#),
        good.replace(r#""tools:call resources:read""#, "null"),
        good.replace(r#""human""#, "null"),
        good.replace(r#"["developer"]"#, "null"),
        good.replace(r#"["developer"]"#, "[]"),
        good.replace(r#"["developer"]"#, r#"["a",1]"#),
        good.replace(r#"["developer"]"#, r#""developer""#),
        good.replace('}', "} trailing"),
        good.replace('}', ",}"),
        good[..good.len() - 1].to_string(),
        "{}".to_string(),
        "[]".to_string(),
        "null".to_string(),
        "\"claims\"".to_string(),
        String::new(),
    ];
    let nbf = (NOW - 60).to_string();
    for number in [
        "0",
        "18446744073709551615",
        "18446744073709551616",
        "-1",
        "1e9",
        "1800000000.0",
        "01800000000",
        "null",
        "\"1800000000\"",
        "true",
    ] {
        out.push(good.replace(&nbf, number));
        out.push(good.replace(&(NOW + 8 * 3600).to_string(), number));
    }
    for claim in Claims::REQUIRED {
        out.push(claims_with(json!({ claim: null })).to_string());
    }
    // The claims as a JSON array: serde reads a struct from a sequence too.
    out.push(
        r#"["lastmile","lastmile","alice",1800028800,null,1799999940,"j","s","user"]"#.to_string(),
    );
    out
}

/// The scan's answer, checked against the owned parse: whatever it accepts, serde accepts with
/// equal claims. Returns whether the scan accepted.
fn scan_agrees(payload: &[u8]) -> bool {
    let owned = serde_json::from_slice::<Claims>(payload).ok();
    match ClaimsRef::scan(payload) {
        Some(scanned) => {
            assert_eq!(
                Some(scanned.to_owned_claims()),
                owned,
                "payload: {}",
                String::from_utf8_lossy(payload)
            );
            true
        }
        None => false,
    }
}

#[test]
fn the_scan_accepts_nothing_the_owned_parse_refuses() {
    let accepted: Vec<bool> = payloads()
        .iter()
        .map(|p| scan_agrees(p.as_bytes()))
        .collect();
    // The plain shapes take the scan (the fast path is really used); escapes, nulls, duplicates,
    // unknown claims and every refusal decline to the owned parse.
    assert!(accepted[0] && accepted[1], "the good payload must scan");
    assert!(accepted.iter().filter(|a| **a).count() >= 6, "{accepted:?}");
    assert!(
        accepted.iter().filter(|a| !**a).count() >= 30,
        "{accepted:?}"
    );
}

#[test]
fn the_shape_lastmile_issues_takes_the_scan() {
    let issuer = crate::identity::TokenIssuer::new(&auth(), &secret()).unwrap();
    let mut req = crate::identity::IssueRequest::new("alice", crate::config::Tier::Service);
    req.scope = vec!["tools:call".into(), "resources:read".into()];
    req.roles = vec!["developer".into()];
    let issued = issuer.issue(&req).unwrap();
    let payload = {
        use secrecy::ExposeSecret;
        let token = issued.token.expose_secret();
        let mut parts = token.split('.');
        parts.next();
        base64::Engine::decode(&URL_SAFE_NO_PAD, parts.next().unwrap()).unwrap()
    };
    assert!(scan_agrees(&payload));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Edits of a good payload with the bytes JSON cares about: each scanned result equals the
    /// owned parse's.
    #[test]
    fn edited_payloads_scan_only_to_what_serde_reads(
        edits in proptest::collection::vec(
            (0usize..400, 0u8..4, proptest::sample::select(
                b"\"\\{}[],: 019eE.-+nultrx\x00\x1f\x7f\xc3\xa9\xff".to_vec())),
            1..4,
        )
    ) {
        let mut payload = good_claims().to_string().into_bytes();
        for (at, op, byte) in edits {
            let at = at % (payload.len() + 1);
            match op {
                0 => payload.insert(at, byte),
                1 if at < payload.len() => { payload.remove(at); }
                2 if at < payload.len() => payload[at] = byte,
                _ => payload.truncate(at),
            }
        }
        scan_agrees(&payload);
    }
}

#[test]
fn escaped_claims_verify_to_their_unescaped_values() {
    let payload = good_claims()
        .to_string()
        .replace(r#""alice""#, r#""al\u0069ce""#)
        .replace(r#""developer""#, r#""dev\"eloper""#);
    let t = token_raw(PINNED_HEADER_JSON, &payload, SECRET);
    let claims = verifier().verify_at(t.as_bytes(), NOW).unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.roles, ["dev\"eloper"]);
}

#[test]
fn a_payload_over_the_stack_buffer_is_verified_the_same() {
    let big = "r".repeat(3000);
    let t = token(&claims_with(json!({ "roles": [big] })));
    let claims = verifier().verify_at(t.as_bytes(), NOW).unwrap();
    assert_eq!(claims.roles[0].len(), 3000);
    let t = token(&claims_with(json!({ "roles": [big], "exp": NOW - 3600 })));
    assert_eq!(refuse_code(&t), "expired");
}

#[test]
fn a_refused_borrowed_parse_keeps_the_owned_reason() {
    let t = token(&claims_with(json!({ "sub": null })));
    assert_eq!(
        verifier().verify_at(t.as_bytes(), NOW).unwrap_err(),
        Rejection::MissingClaim { claim: "sub" }
    );
    // Not UTF-8: the borrowed parse never sees it; the owned one names it.
    let input = format!(
        "{}.{}",
        b64(PINNED_HEADER_JSON.as_bytes()),
        b64(b"{\"iss\":\"\xff\"}")
    );
    let t = format!("{input}.{}", hs256(SECRET, &input));
    assert_eq!(refuse_code(&t), "malformed_claims");
}

fn refuse_code(token: &str) -> &'static str {
    verifier()
        .verify_at(token.as_bytes(), NOW)
        .unwrap_err()
        .code()
}

/// `verify_with` hands its reader the same claims whether the payload took the scan or the
/// owned parse (an escape or an unknown claim sends it there), and `verify_at` owns exactly those.
#[test]
fn the_borrowed_reader_sees_the_same_claims_on_both_paths() {
    let v = verifier();
    let plain = good_claims();
    let declined = plain
        .to_string()
        .replace(r#""alice""#, r#""al\u0069ce""#)
        .replace('}', r#","extra":[1]}"#);
    assert!(ClaimsRef::scan(plain.to_string().as_bytes()).is_some());
    assert!(ClaimsRef::scan(declined.as_bytes()).is_none());
    let read = |token: &str| {
        v.verify_with(token.as_bytes(), NOW, |c| c.to_owned_claims())
            .unwrap()
    };
    let scanned = read(&token(&plain));
    let parsed = read(&token_raw(PINNED_HEADER_JSON, &declined, SECRET));
    assert_eq!(scanned, parsed);
    assert_eq!(scanned.sub, "alice");
    assert_eq!(v.verify_at(token(&plain).as_bytes(), NOW).unwrap(), scanned);
    // A refusal reaches no reader.
    let expired = token(&claims_with(
        json!({ "exp": NOW - 3600, "iat": NOW - 7200 }),
    ));
    let mut reached = false;
    let refused = v.verify_with(expired.as_bytes(), NOW, |_| reached = true);
    assert!(
        matches!(refused, Err(Rejection::Expired { .. })),
        "{refused:?}"
    );
    assert!(!reached);
}
