//! One validator, three modes, over the token sources in order.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::config::{AuthMode, Tier};
use crate::identity::{
    AuthSetupError, Authenticator, IssueRequest, Refusal, Rejection, SessionOrigin, SourceOutcome,
    TokenIssuer, TokenSource, TokenSources, WeakSecret,
};

fn auth_in(mode: AuthMode) -> crate::config::AuthSection {
    let mut a = auth();
    a.mode = mode;
    a
}

fn authenticator(mode: AuthMode) -> Authenticator {
    Authenticator::new(&auth_in(mode), Some(&secret()), false).unwrap()
}

fn issued(sub: &str, tier: Tier) -> SecretString {
    TokenIssuer::new(&auth(), &secret())
        .unwrap()
        .issue_at(&IssueRequest::new(sub, tier), NOW)
        .unwrap()
        .token
}

fn expired() -> SecretString {
    TokenIssuer::new(&auth(), &secret())
        .unwrap()
        .issue_at(&IssueRequest::new("old", Tier::Admin), NOW - 86_400)
        .unwrap()
        .token
}

type SavedLoader = fn() -> Result<Option<SecretString>, String>;

fn none_saved() -> Result<Option<SecretString>, String> {
    Ok(None)
}

fn sources(file: Option<PathBuf>, env: Option<SecretString>) -> TokenSources<SavedLoader> {
    TokenSources {
        token_file: file,
        env_token: env,
        saved: none_saved,
    }
}

fn write_token(dir: &tempfile::TempDir, token: &SecretString) -> PathBuf {
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{}\n", token.expose_secret())).unwrap();
    path
}

#[test]
fn required_without_any_token_lists_each_source() {
    let r = authenticator(AuthMode::Required)
        .establish_at(sources(None, None), NOW)
        .unwrap_err();
    assert_eq!(r.code(), "no_token");
    assert_eq!(
        r.to_string(),
        "no valid session token (LASTMILE_TOKEN: not set; the saved token: none saved)"
    );
    assert!(!r.to_string().contains('\n'));
}

#[test]
fn env_token_gives_a_verified_session() {
    let s = authenticator(AuthMode::Required)
        .establish_at(sources(None, Some(issued("alice", Tier::User))), NOW)
        .unwrap();
    assert_eq!(s.subject(), "alice");
    assert_eq!(s.tier(), Tier::User);
    assert_eq!(s.mode(), AuthMode::Required);
    assert_eq!(
        s.origin(),
        &SessionOrigin::Verified {
            source: TokenSource::Env
        }
    );
    assert!(s.jti().is_some());
    assert_eq!(s.expires_at().unwrap().0, NOW + 8 * 3600);
}

#[test]
fn token_file_comes_first_and_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_token(&dir, &issued("from-file", Tier::Service));
    let s = authenticator(AuthMode::Required)
        .establish_at(
            sources(Some(path.clone()), Some(issued("from-env", Tier::Admin))),
            NOW,
        )
        .unwrap();
    assert_eq!(s.subject(), "from-file");
    assert_eq!(
        s.origin(),
        &SessionOrigin::Verified {
            source: TokenSource::File(path)
        }
    );
}

#[test]
fn a_bad_first_token_decides_and_later_sources_are_not_consulted() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_token(&dir, &expired());
    let never = || -> Result<Option<SecretString>, String> {
        panic!("the saved token must not be read when an earlier source had one")
    };
    let r = authenticator(AuthMode::Required)
        .establish_at(
            TokenSources {
                token_file: Some(path.clone()),
                env_token: Some(issued("admin", Tier::Admin)),
                saved: never,
            },
            NOW,
        )
        .unwrap_err();
    assert_eq!(r.code(), "expired");
    assert_eq!(r.attempts.len(), 3);
    assert!(matches!(
        r.attempts[0].outcome,
        SourceOutcome::Rejected(Rejection::Expired { .. })
    ));
    assert_eq!(r.attempts[1].outcome, SourceOutcome::NotConsulted);
    assert_eq!(r.attempts[2].outcome, SourceOutcome::NotConsulted);
    let text = r.to_string();
    assert!(
        text.starts_with(&format!(
            "no valid session token (--token-file {}: expired at ",
            path.display()
        )),
        "{text}"
    );
    assert!(text.ends_with("LASTMILE_TOKEN: not consulted; the saved token: not consulted)"));
}

#[test]
fn an_unreadable_token_file_is_a_refusal_not_a_fallthrough() {
    let r = authenticator(AuthMode::Required)
        .establish_at(
            sources(
                Some(PathBuf::from("/nonexistent/token")),
                Some(issued("admin", Tier::Admin)),
            ),
            NOW,
        )
        .unwrap_err();
    assert_eq!(r.code(), "unreadable");
    assert!(
        r.to_string()
            .contains("--token-file /nonexistent/token: cannot read")
    );
}

#[test]
fn saved_token_is_the_last_source() {
    let token = issued("saved", Tier::Mcp);
    let s = authenticator(AuthMode::Required)
        .establish_at(
            TokenSources {
                token_file: None,
                env_token: None,
                saved: move || Ok(Some(token)),
            },
            NOW,
        )
        .unwrap();
    assert_eq!(s.subject(), "saved");
    assert_eq!(
        s.origin(),
        &SessionOrigin::Verified {
            source: TokenSource::Saved
        }
    );
    let r = authenticator(AuthMode::Required)
        .establish_at(
            TokenSources {
                token_file: None,
                env_token: None,
                saved: || Err("the secret store is locked".to_string()),
            },
            NOW,
        )
        .unwrap_err();
    assert_eq!(
        r.to_string(),
        "no valid session token (LASTMILE_TOKEN: not set; the saved token: the secret store is locked)"
    );
}

#[test]
fn optional_falls_back_to_anonymous_and_keeps_the_reason() {
    let a = authenticator(AuthMode::Optional);
    let s = a.establish_at(sources(None, Some(expired())), NOW).unwrap();
    assert_eq!(s.tier(), Tier::Anonymous);
    assert_eq!(s.subject(), "anonymous");
    assert_eq!(s.jti(), None);
    assert_eq!(s.mode(), AuthMode::Optional);
    let SessionOrigin::Anonymous { reason } = s.origin() else {
        panic!("{:?}", s.origin())
    };
    assert_eq!(reason.code(), "expired");
    let s = a
        .establish_at(sources(None, Some(issued("bob", Tier::User))), NOW)
        .unwrap();
    assert_eq!(s.tier(), Tier::User);
    let s = a.establish_at(sources(None, None), NOW).unwrap();
    assert!(
        matches!(s.origin(), SessionOrigin::Anonymous { reason } if reason.code() == "no_token")
    );
}

#[test]
fn disabled_needs_the_environment_switch_too() {
    let disabled = auth_in(AuthMode::Disabled);
    assert_eq!(
        Authenticator::new(&disabled, None, false).unwrap_err(),
        AuthSetupError::DisabledNotAllowed
    );
    let a = Authenticator::new(&disabled, None, true).unwrap();
    // No verification at all: even an expired token is ignored.
    let s = a.establish_at(sources(None, Some(expired())), NOW).unwrap();
    assert_eq!(s.origin(), &SessionOrigin::TestIdentity);
    assert_eq!(s.subject(), "lastmile-test");
    assert_eq!(s.tier(), Tier::Admin);
    assert_eq!(s.mode(), AuthMode::Disabled);
    assert!(
        AuthSetupError::DisabledNotAllowed
            .to_string()
            .contains("LASTMILE_ALLOW_DISABLED_AUTH=1")
    );
}

#[test]
fn required_and_optional_need_a_strong_secret() {
    for mode in [AuthMode::Required, AuthMode::Optional] {
        assert!(matches!(
            Authenticator::new(&auth_in(mode), None, true).unwrap_err(),
            AuthSetupError::NoSigningSecret { .. }
        ));
        let weak = SecretString::from("changeme".repeat(4));
        assert_eq!(
            Authenticator::new(&auth_in(mode), Some(&weak), true).unwrap_err(),
            AuthSetupError::WeakSecret(WeakSecret::Placeholder)
        );
    }
    // A weak secret is refused even where it would not be used.
    let weak = SecretString::from("a".repeat(40));
    assert!(Authenticator::new(&auth_in(AuthMode::Disabled), Some(&weak), true).is_err());
}

#[test]
fn a_session_ends_with_its_token() {
    let s = authenticator(AuthMode::Required)
        .establish_at(sources(None, Some(issued("alice", Tier::User))), NOW)
        .unwrap();
    let exp = NOW + 8 * 3600;
    assert!(s.check_live_at(exp + 30).is_ok());
    assert_eq!(
        s.check_live_at(exp + 31).unwrap_err().to_string(),
        format!("expired at {}", crate::identity::UnixTime(exp))
    );
}

#[test]
fn bearer_tokens_verify_per_request() {
    let a = authenticator(AuthMode::Optional);
    let s = a
        .session_for_token_at(&issued("carol", Tier::A2a), TokenSource::Bearer, NOW)
        .unwrap();
    assert_eq!(s.tier(), Tier::A2a);
    assert_eq!(
        a.session_for_token_at(&expired(), TokenSource::Bearer, NOW)
            .unwrap_err()
            .code(),
        "expired"
    );
}

#[test]
fn refusal_reports_its_rejection() {
    let r = Refusal { attempts: vec![] };
    assert_eq!(r.rejection(), None);
    assert!(r.hint().starts_with("hint: "));
}
