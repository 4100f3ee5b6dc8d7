//! Issuing with jsonwebtoken, verified by the lean verifier.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::config::{DurationSpec, Tier};
use crate::identity::reference::ReferenceVerifier;
use crate::identity::{IssueError, IssueRequest, PINNED_HEADER, TokenIssuer, WeakSecret};

fn issuer() -> TokenIssuer {
    TokenIssuer::new(&auth(), &secret()).unwrap()
}

#[test]
fn issued_token_verifies_with_both_verifiers() {
    let mut req = IssueRequest::new("alice", Tier::Service);
    req.ttl = Some(Duration::from_secs(3600));
    req.scope = vec!["tools:call resources:read".into(), "prompts:get".into()];
    req.roles = vec!["developer".into()];
    let issued = issuer().issue(&req).unwrap();
    let token = issued.token.expose_secret();
    assert!(token.starts_with(&format!("{PINNED_HEADER}.")));
    let claims = verifier().verify(&issued.token).unwrap();
    assert_eq!(claims, issued.claims);
    assert_eq!(claims.tier, Tier::Service);
    assert_eq!(
        claims.scope.as_deref(),
        Some("tools:call resources:read prompts:get")
    );
    assert_eq!(claims.exp - claims.iat.unwrap(), 3600);
    assert!(!issued.ttl_capped);
    let reference = ReferenceVerifier::new(&auth(), &secret()).unwrap();
    assert_eq!(reference.decode(token.as_bytes()).unwrap(), claims);
}

#[test]
fn jti_and_session_id_are_fresh_uuids() {
    let a = issuer().issue(&IssueRequest::new("a", Tier::User)).unwrap();
    let b = issuer().issue(&IssueRequest::new("a", Tier::User)).unwrap();
    assert_ne!(a.claims.jti, b.claims.jti);
    assert_ne!(a.claims.session_id, b.claims.session_id);
    let jti = uuid::Uuid::parse_str(&a.claims.jti).unwrap();
    assert_eq!(jti.get_version_num(), 4);
    let sid = uuid::Uuid::parse_str(&a.claims.session_id).unwrap();
    assert_eq!(sid.get_version_num(), 7);
}

#[test]
fn default_ttl_is_eight_hours_and_capped_by_max_lifetime() {
    let t = issuer()
        .issue_at(&IssueRequest::new("a", Tier::User), NOW)
        .unwrap();
    assert_eq!(t.claims.exp, NOW + 8 * 3600);
    let mut auth = auth();
    auth.max_token_lifetime = DurationSpec(Duration::from_secs(3600));
    let issuer = TokenIssuer::new(&auth, &secret()).unwrap();
    let mut req = IssueRequest::new("a", Tier::User);
    req.ttl = Some(Duration::from_secs(86_400));
    let t = issuer.issue_at(&req, NOW).unwrap();
    assert!(t.ttl_capped);
    assert_eq!(t.claims.exp, NOW + 3600);
    let v = Verifier::new(&auth, &secret()).unwrap();
    assert!(v.verify_at(t.token.expose_secret().as_bytes(), NOW).is_ok());
}

#[test]
fn bad_requests_are_named() {
    let i = issuer();
    assert_eq!(
        i.issue(&IssueRequest::new("", Tier::User)).unwrap_err(),
        IssueError::EmptySubject
    );
    assert_eq!(
        i.issue(&IssueRequest::new("a\u{1b}[2J", Tier::User))
            .unwrap_err(),
        IssueError::ControlCharacter { claim: "sub" }
    );
    let mut req = IssueRequest::new("a", Tier::User);
    req.ttl = Some(Duration::from_millis(500));
    assert_eq!(i.issue(&req).unwrap_err(), IssueError::ZeroTtl);
    let mut req = IssueRequest::new("a", Tier::User);
    req.roles = vec![String::new()];
    assert_eq!(i.issue(&req).unwrap_err(), IssueError::EmptyRole);
    let mut req = IssueRequest::new("a", Tier::User);
    req.roles = vec!["r".repeat(7000)];
    assert!(matches!(
        i.issue(&req).unwrap_err(),
        IssueError::TooLarge { max: 8192, .. }
    ));
}

#[test]
fn weak_secrets_make_no_issuer_or_verifier() {
    let weak = [
        ("short", WeakSecret::TooShort { len: 5, min: 32 }),
        (&"x".repeat(40), WeakSecret::RepeatedByte),
        (&"changeme".repeat(5), WeakSecret::Placeholder),
        (&"your-256-bit-secret".repeat(2), WeakSecret::Placeholder),
        (&"secret".repeat(6), WeakSecret::Placeholder),
    ];
    for (text, expected) in weak {
        let s = SecretString::from(text.to_string());
        assert_eq!(TokenIssuer::new(&auth(), &s).unwrap_err(), expected);
        assert_eq!(Verifier::new(&auth(), &s).unwrap_err(), expected);
        assert_eq!(ReferenceVerifier::new(&auth(), &s).unwrap_err(), expected);
    }
    let mut raised = auth();
    raised.min_secret_length = 64;
    assert!(matches!(
        Verifier::new(&raised, &secret()),
        Err(WeakSecret::TooShort { min: 64, .. })
    ));
}
