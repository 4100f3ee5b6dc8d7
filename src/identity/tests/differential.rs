//! The lean verifier against jsonwebtoken's validator (configured the same way, plus lastmile's
//! pinned header, size limit and maximum lifetime) on generated and mutated tokens: both refuse,
//! or both accept with equal claims. A fixed seed makes every run the same cases.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha384;

use super::*;
use crate::identity::reference::{ReferenceVerifier, compare};
use crate::identity::{PINNED_HEADER, now_unix};

const CASES: usize = 20_000;
const SEED: u64 = 0x5eed_1d3e_7a11_0005;

/// SplitMix64: small, deterministic, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const LEEWAY: i64 = 30;
const MAX: i64 = 30 * 86_400;

fn time_text(rng: &mut Rng, wild: bool, now: u64, offsets: &[i64]) -> String {
    if wild && rng.percent(8) {
        return rng
            .pick(&[
                "null",
                "\"1800000000\"",
                "1.8e9",
                "1800000000.0",
                "-1",
                "0",
                "18446744073709551615",
                "18446744073709551616",
                "true",
                "[]",
            ])
            .to_string();
    }
    let t = now as i64 + *rng.pick(offsets);
    t.max(0).to_string()
}

fn string_text(rng: &mut Rng, wild: bool, good: &str, bad: &[&str]) -> String {
    if !wild || rng.percent(85) {
        format!("{good:?}")
    } else {
        rng.pick(bad).to_string()
    }
}

/// Claims as raw JSON text. `wild` ones may miss fields or have them null, mistyped, duplicated
/// or unknown; tame ones are well-formed and vary only in their times.
fn payload(rng: &mut Rng, wild: bool, now: u64) -> String {
    let mut fields: Vec<(String, String)> = Vec::new();
    let exp_offsets = [
        -86_400,
        -LEEWAY - 1,
        -LEEWAY,
        -LEEWAY + 1,
        0,
        60,
        8 * 3600,
        MAX,
        MAX + LEEWAY,
        MAX + LEEWAY + 1,
        10 * MAX,
    ];
    let mut add = |rng: &mut Rng, key: &str, p_present: u64, value: String| {
        if (!wild && p_present >= 90) || rng.percent(p_present) {
            fields.push((key.to_string(), value));
        }
    };
    let v = string_text(
        rng,
        wild,
        "lastmile",
        &[
            "\"Lastmile\"",
            "\"\"",
            "\"other\"",
            "5",
            "null",
            "[\"lastmile\"]",
            "\"lastm\\u0069le\"",
        ],
    );
    add(rng, "iss", 95, v);
    let v = string_text(
        rng,
        wild,
        "lastmile",
        &[
            "\"lastmile \"",
            "\"x\"",
            "null",
            "[\"lastmile\"]",
            "[]",
            "\"last\\u006dile\"",
            "{}",
        ],
    );
    add(rng, "aud", 95, v);
    let v = string_text(
        rng,
        wild,
        "alice",
        &["\"\"", "7", "null", "\"\\u0000x\"", "[\"a\"]"],
    );
    add(rng, "sub", 95, v);
    let exp = time_text(rng, wild, now, &exp_offsets);
    add(rng, "exp", 95, exp.clone());
    let exp_value: Option<i64> = exp.parse().ok();
    if let Some(exp) = exp_value {
        let iat = match rng.below(6) {
            0 => (exp - MAX).max(0).to_string(),
            1 => (exp - MAX - 1).max(0).to_string(),
            2 => (exp + 10).to_string(),
            3 if wild => "null".to_string(),
            4 if wild => "\"yesterday\"".to_string(),
            _ => (now as i64 - 60).to_string(),
        };
        add(rng, "iat", 70, iat);
    }
    let nbf = time_text(
        rng,
        wild,
        now,
        &[-100, -60, LEEWAY - 1, LEEWAY, LEEWAY + 1, 3600],
    );
    add(rng, "nbf", 60, nbf);
    let v = string_text(rng, wild, "0b5e3c1a-8d52", &["null", "1", "[]"]);
    add(rng, "jti", 95, v);
    let v = string_text(rng, wild, "019a1b2c-3d4e", &["null", "2", "{}"]);
    add(rng, "session_id", 95, v);
    let tiers: &[&str] = if wild {
        &[
            "\"admin\"",
            "\"user\"",
            "\"superadmin\"",
            "\"Admin\"",
            "\"\"",
            "null",
            "3",
        ]
    } else {
        &[]
    };
    let tier = if wild && rng.percent(30) {
        rng.pick(tiers).to_string()
    } else {
        rng.pick(&[
            "\"admin\"",
            "\"user\"",
            "\"service\"",
            "\"a2a\"",
            "\"mcp\"",
            "\"anonymous\"",
        ])
        .to_string()
    };
    add(rng, "tier", 95, tier);
    let v = if wild {
        rng.pick(&[
            "\"tools:call resources:read\"",
            "\"\"",
            "null",
            "[\"a\"]",
            "5",
        ])
    } else {
        rng.pick(&["\"tools:call resources:read\"", "\"\"", "null"])
    }
    .to_string();
    add(rng, "scope", 50, v);
    let v = if wild {
        rng.pick(&[
            "[]",
            "[\"developer\"]",
            "[\"a\",\"b\"]",
            "[1]",
            "\"admin\"",
            "null",
        ])
    } else {
        rng.pick(&["[]", "[\"developer\"]", "[\"a\",\"b\"]"])
    }
    .to_string();
    add(rng, "roles", 50, v);
    let v = if wild {
        rng.pick(&["\"human\"", "null", "5"])
    } else {
        &"\"human\""
    }
    .to_string();
    add(rng, "user_type", 30, v);
    let v = if wild {
        rng.pick(&["\"admin\"", "\"user\"", "\"nope\"", "null"])
    } else {
        rng.pick(&["\"admin\"", "\"user\"", "null"])
    }
    .to_string();
    add(rng, "rate_limit_tier", 20, v);
    let v = rng
        .pick(&["1", "\"x\"", "{\"nested\":[1,2,{}]}", "null"])
        .to_string();
    add(rng, "unknown_claim", 20, v);
    if rng.percent(1) {
        fields.push(("padding".into(), format!("{:?}", "p".repeat(6200))));
    }
    if wild && !fields.is_empty() && rng.percent(4) {
        let (k, _) = fields[rng.below(fields.len())].clone();
        let v = fields[rng.below(fields.len())].1.clone();
        fields.push((k, v));
    }
    if wild && rng.percent(3) {
        return rng
            .pick(&[
                "[]",
                "null",
                "\"claims\"",
                "{",
                "{}",
                "{\"iss\":\"lastmile\"} x",
            ])
            .to_string();
    }
    let sep = if rng.percent(10) { ", " } else { "," };
    let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(sep))
}

fn header(rng: &mut Rng) -> String {
    if rng.percent(85) {
        return PINNED_HEADER_JSON.to_string();
    }
    rng.pick(&[
        r#"{"alg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"typ":"JWT","alg":"HS256","kid":"k1"}"#,
        r#"{"typ":"JWT","alg":"HS256","kid":5}"#,
        r#"{"typ":"JWT","alg":"HS384"}"#,
        r#"{"alg":"none"}"#,
        r#"{"typ":"JWT","alg":"RS256"}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        r#"{"alg":"HS256","crit":["b64"],"b64":true}"#,
        r#"{"typ":"JWT","alg":"HS256"} "#,
        r#"{"typ":"JWT","alg":"HS256","typ":"JWT"}"#,
        r#"[]"#,
    ])
    .to_string()
}

fn signature(rng: &mut Rng, input: &str) -> String {
    match rng.below(100) {
        0..85 => hs256(SECRET, input),
        85..90 => hs256(OTHER_SECRET, input),
        90..95 => {
            let mut mac = Hmac::<Sha384>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            b64(&mac.finalize().into_bytes())
        }
        _ => b64(&rng.next().to_le_bytes().repeat(4)),
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \n";

fn mutate(rng: &mut Rng, token: &mut Vec<u8>, other_payload: &str) {
    if token.is_empty() {
        return;
    }
    let at = rng.below(token.len());
    match rng.below(9) {
        0 => token[at] ^= 1 << rng.below(8),
        1 => {
            token.remove(at);
        }
        2 => token.insert(at, *rng.pick(ALPHABET)),
        3 => token.truncate(at),
        4 => {
            // Change the last character of a part: trailing bits of base64url.
            let ends: Vec<usize> = token
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'.')
                .map(|(i, _)| i.saturating_sub(1))
                .chain([token.len() - 1])
                .collect();
            let i = *rng.pick(&ends);
            token[i] = *rng.pick(&ALPHABET[..64]);
        }
        5 => token.extend_from_slice(b"=="),
        6 => {
            // Keep header and signature, swap the payload.
            let text = String::from_utf8_lossy(token).to_string();
            let parts: Vec<&str> = text.split('.').collect();
            if parts.len() == 3 {
                *token = format!(
                    "{}.{}.{}",
                    parts[0],
                    b64(other_payload.as_bytes()),
                    parts[2]
                )
                .into_bytes();
            }
        }
        7 => token.insert(0, b'.'),
        _ => token.extend_from_slice(b"."),
    }
}

#[test]
fn lean_verifier_agrees_with_jsonwebtoken() {
    let lean = verifier();
    let reference = ReferenceVerifier::new(&auth(), &secret()).unwrap();
    let mut rng = Rng(SEED);
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut stricter_header = 0usize;
    for case in 0..CASES {
        let now = now_unix();
        let wild = rng.percent(60);
        let header_json = if wild {
            header(&mut rng)
        } else {
            PINNED_HEADER_JSON.to_string()
        };
        let payload_json = payload(&mut rng, wild, now);
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let sig = if wild {
            signature(&mut rng, &input)
        } else {
            hs256(SECRET, &input)
        };
        let mut token = format!("{input}.{sig}").into_bytes();
        if wild && rng.percent(30) {
            let other = payload(&mut rng, true, now);
            for _ in 0..=rng.below(3) {
                mutate(&mut rng, &mut token, &other);
            }
        }
        let answer = compare(&lean, &reference, &token).unwrap_or_else(|d| {
            panic!(
                "case {case}: {d}\n  header  {header_json}\n  payload {payload_json}\n  token   {}",
                String::from_utf8_lossy(&token)
            )
        });
        let code = match &answer {
            Ok(_) => "ok",
            Err(r) => r.code(),
        };
        *outcomes.entry(code).or_default() += 1;
        // The one place the lean path is stricter by design: another HS256 header that
        // jsonwebtoken alone would take.
        if code == "unexpected_header" && reference.decode(&token).is_ok() {
            stricter_header += 1;
            assert!(!token.starts_with(format!("{PINNED_HEADER}.").as_bytes()));
        }
    }
    eprintln!("outcomes over {CASES} cases: {outcomes:?}; stricter header: {stricter_header}");
    let accepted = outcomes.get("ok").copied().unwrap_or(0);
    assert!(accepted > CASES / 20, "too few accepted: {outcomes:?}");
    assert!(accepted < CASES / 2, "too few refused: {outcomes:?}");
    for code in [
        "oversized",
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
    ] {
        assert!(
            outcomes.contains_key(code),
            "no case refused as {code}: {outcomes:?}"
        );
    }
    assert!(stricter_header > 0);
}
