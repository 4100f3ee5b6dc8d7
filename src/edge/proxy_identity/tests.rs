use super::*;

const NOW: u64 = 1_800_000_000;

fn key(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

fn current() -> SecretString {
    key("proxy-current-Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQ")
}

fn previous() -> SecretString {
    key("proxy-previous-Hq3m9Tz1Wc7Lp5Nx2Rb8Vd4Kf6Gs0Ja")
}

fn verifier(keys: Option<ProxyKeys>) -> ProxyVerifier {
    ProxyVerifier::new(&ProxyIdentitySection::default(), keys).unwrap()
}

fn both() -> ProxyVerifier {
    verifier(Some(ProxyKeys::new(&current(), Some(&previous())).unwrap()))
}

fn signed(k: &SecretString, exp: u64) -> String {
    sign_header(k, "alice@example.com", Tier::User, "sess-01", exp).unwrap()
}

#[test]
fn a_valid_header_gives_the_identity() {
    let v = both();
    let value = signed(&current(), NOW + 60);
    assert!(
        value.starts_with("v1;sub=alice%40example.com;tier=user;sid=sess-01;exp=1800000060;sig=")
    );
    let id = v.verify_value(value.as_bytes(), NOW).unwrap();
    assert_eq!(id.subject(), "alice@example.com");
    assert_eq!(id.tier(), Tier::User);
    assert_eq!(id.session_id(), "sess-01");
    assert_eq!(id.expires_at(), UnixTime(NOW + 60));
    assert_eq!(id.key(), KeyUsed::Current);
}

#[test]
fn the_signature_is_hmac_sha256_of_the_text_before_sig() {
    // What the README tells proxy authors, computed independently of `sign_header`.
    let input = "v1;sub=alice%40example.com;tier=user;sid=s-1;exp=1800000000";
    let mut mac = Hmac::<Sha256>::new_from_slice(current().expose_secret().as_bytes()).unwrap();
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    assert_eq!(sig.len(), 43);
    let value = format!("{input};sig={sig}");
    assert_eq!(
        sign_header(&current(), "alice@example.com", Tier::User, "s-1", NOW).unwrap(),
        value
    );
    assert!(both().verify_value(value.as_bytes(), NOW).is_ok());
}

#[test]
fn a_header_signed_with_the_previous_key_is_accepted_during_a_rotation_only() {
    let value = signed(&previous(), NOW + 60);
    let id = both().verify_value(value.as_bytes(), NOW).unwrap();
    assert_eq!(id.key(), KeyUsed::Previous);
    // Once the previous key is removed, the same header is refused.
    let rotated = verifier(Some(ProxyKeys::new(&current(), None).unwrap()));
    assert_eq!(
        rotated.verify_value(value.as_bytes(), NOW),
        Err(ProxyRejection::BadSignature)
    );
}

#[test]
fn any_tampering_is_a_bad_signature() {
    let v = both();
    let value = signed(&current(), NOW + 60);
    for (from, to) in [
        ("tier=user", "tier=admin"),
        ("alice", "mallory"),
        ("sess-01", "sess-02"),
        ("exp=1800000060", "exp=1800000099"),
    ] {
        let tampered = value.replacen(from, to, 1);
        assert_eq!(
            v.verify_value(tampered.as_bytes(), NOW),
            Err(ProxyRejection::BadSignature),
            "{tampered}"
        );
    }
    // A flipped signature character.
    let mut bytes = value.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        v.verify_value(&bytes, NOW),
        Err(ProxyRejection::BadSignature)
    );
    // Signed with a key lastmile does not hold.
    let other = signed(
        &key("some-other-proxy-key-Pq7Wn2Xc9Vb4Mz1Lk8Jh5Gf3"),
        NOW + 60,
    );
    assert_eq!(
        v.verify_value(other.as_bytes(), NOW),
        Err(ProxyRejection::BadSignature)
    );
}

#[test]
fn an_expired_header_is_refused_and_stays_refused_when_replayed() {
    let v = both();
    let value = signed(&current(), NOW + 60);
    let leeway = ProxyIdentitySection::default().leeway.0.as_secs();
    assert!(v.verify_value(value.as_bytes(), NOW + 60 + leeway).is_ok());
    for later in [NOW + 61 + leeway, NOW + 3600, NOW + 86_400 * 365] {
        assert_eq!(
            v.verify_value(value.as_bytes(), later),
            Err(ProxyRejection::Expired {
                at: UnixTime(NOW + 60)
            })
        );
    }
}

#[test]
fn a_header_that_lives_too_long_is_refused() {
    let max = ProxyIdentitySection::default().max_lifetime.0.as_secs();
    let leeway = ProxyIdentitySection::default().leeway.0.as_secs();
    let ok = signed(&current(), NOW + max + leeway);
    assert!(both().verify_value(ok.as_bytes(), NOW).is_ok());
    let long = signed(&current(), NOW + max + leeway + 1);
    assert!(matches!(
        both().verify_value(long.as_bytes(), NOW),
        Err(ProxyRejection::LifetimeTooLong { .. })
    ));
}

#[test]
fn unsigned_and_malformed_headers_are_refused_by_name() {
    let v = both();
    let good = signed(&current(), NOW + 60);
    let unsigned = good.split(";sig=").next().unwrap().to_string();
    let cases: Vec<(String, &str)> = vec![
        (unsigned, "unsigned"),
        (format!("{good}x"), "malformed_signature"),
        (good.replacen("v1;", "v2;", 1), "unknown_version"),
        ("alice".into(), "unknown_version"),
        (String::new(), "unknown_version"),
        (format!("{};sig=!!!", "v1;sub=a"), "malformed_signature"),
        ("x".repeat(5000), "malformed"),
    ];
    for (value, code) in cases {
        let got = v.verify_value(value.as_bytes(), NOW).unwrap_err();
        assert_eq!(got.code(), code, "{value}");
    }
}

#[test]
fn fields_are_parsed_strictly_even_when_signed() {
    // A holder of the key signing something that is not the format is still refused.
    let sign_raw = |input: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(current().expose_secret().as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input};sig={}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let v = both();
    for (input, want) in [
        (
            "v1;tier=user;sub=a;sid=s;exp=1800000060",
            ProxyRejection::Malformed { field: "sub" },
        ),
        (
            "v1;sub=a;tier=user;sid=s",
            ProxyRejection::Malformed { field: "exp" },
        ),
        (
            "v1;sub=a;tier=user;sid=s;exp=1800000060;x=1",
            ProxyRejection::Malformed { field: "value" },
        ),
        (
            "v1;sub=a b;tier=user;sid=s;exp=1800000060",
            ProxyRejection::Malformed { field: "sub" },
        ),
        (
            "v1;sub=%zz;tier=user;sid=s;exp=1800000060",
            ProxyRejection::Malformed { field: "sub" },
        ),
        (
            "v1;sub=%ff;tier=user;sid=s;exp=1800000060",
            ProxyRejection::Malformed { field: "sub" },
        ),
        (
            "v1;sub=;tier=user;sid=s;exp=1800000060",
            ProxyRejection::Malformed { field: "sub" },
        ),
        (
            "v1;sub=a;tier=root;sid=s;exp=1800000060",
            ProxyRejection::UnknownTier,
        ),
        (
            "v1;sub=a;tier=user;sid=s/1;exp=1800000060",
            ProxyRejection::Malformed { field: "sid" },
        ),
        (
            "v1;sub=a;tier=user;sid=s;exp=01800000060",
            ProxyRejection::Malformed { field: "exp" },
        ),
        (
            "v1;sub=a;tier=user;sid=s;exp=+1800000060",
            ProxyRejection::Malformed { field: "exp" },
        ),
        (
            "v1;sub=a;tier=user;sid=s;exp=99999999999999999999999",
            ProxyRejection::Malformed { field: "exp" },
        ),
    ] {
        assert_eq!(
            v.verify_value(sign_raw(input).as_bytes(), NOW),
            Err(want),
            "{input}"
        );
    }
    // Percent-encoded UTF-8 subjects round-trip.
    let value = sign_header(&current(), "Zoë; admin=yes", Tier::Admin, "s", NOW + 1).unwrap();
    assert_eq!(
        v.verify_value(value.as_bytes(), NOW).unwrap().subject(),
        "Zoë; admin=yes"
    );
}

#[test]
fn without_a_key_a_present_header_is_refused_never_trusted() {
    let v = verifier(None);
    let value = signed(&current(), NOW + 60);
    assert_eq!(
        v.verify_value(value.as_bytes(), NOW),
        Err(ProxyRejection::NotConfigured)
    );
}

#[test]
fn the_header_is_looked_up_by_its_configured_name_once() {
    let v = both();
    let value = signed(&current(), NOW + 60);
    let mut h = HeaderMap::new();
    assert!(v.verify(&h, NOW).is_none());
    h.insert("x-lastmile-identity", value.parse().unwrap());
    assert!(matches!(v.verify(&h, NOW), Some(Ok(_))));
    h.append("x-lastmile-identity", value.parse().unwrap());
    assert_eq!(v.verify(&h, NOW), Some(Err(ProxyRejection::Repeated)));
}

#[test]
fn weak_keys_and_bad_fields_cannot_sign_or_verify() {
    assert!(ProxyKeys::new(&key("short"), None).is_err());
    assert!(ProxyKeys::new(&current(), Some(&key(&"a".repeat(40)))).is_err());
    assert!(matches!(
        sign_header(&key("short"), "a", Tier::User, "s", NOW),
        Err(SignError::WeakKey(_))
    ));
    assert_eq!(
        sign_header(&current(), "", Tier::User, "s", NOW),
        Err(SignError::Subject)
    );
    assert_eq!(
        sign_header(&current(), "a", Tier::User, "s;x", NOW),
        Err(SignError::SessionId)
    );
}

#[test]
fn rejections_never_hold_the_header_or_the_key() {
    let v = both();
    let canary_sub = "canary-subject-Pq7Wn2Xc";
    let forged = sign_header(
        &key("canary-key-Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQ"),
        canary_sub,
        Tier::Admin,
        "s",
        NOW + 60,
    )
    .unwrap();
    let r = v.verify_value(forged.as_bytes(), NOW).unwrap_err();
    let text = format!("{r} {r:?} {v:?}");
    assert!(!text.contains("canary"), "{text}");
    assert!(!text.contains("proxy-current"), "{text}");
}
