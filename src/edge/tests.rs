use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use secrecy::ExposeSecret;

use super::*;
use crate::config::{AuthMode, AuthSection, ExtractorPreset, ScannerSection};
use crate::identity::{IssueRequest, TokenIssuer};

const NOW: u64 = 1_800_000_000;
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SIGNING: &str = "signing-canary-SECRET-Zq8v2Lr0yXk4Wm1sT7hB9cN3";
const PROXY_KEY: &str = "proxy-canary-SECRET-Hq3m9Tz1Wc7Lp5Nx2Rb8Vd4Kf6";

struct World {
    edge: Edge,
    clock: Arc<ManualClock>,
    auth: AuthSection,
}

fn world_with(mode: AuthMode, http: HttpSection) -> World {
    let auth = AuthSection {
        mode,
        ..AuthSection::default()
    };
    let secret = SecretString::from(SIGNING.to_string());
    let authn = Arc::new(Authenticator::new(&auth, Some(&secret), true).unwrap());
    let clock = Arc::new(ManualClock::at(0));
    let keys = ProxyKeys::new(&SecretString::from(PROXY_KEY.to_string()), None).unwrap();
    let edge = Edge::new(&http, authn, Some(keys), clock.clone())
        .unwrap()
        .with_resource_metadata("http://127.0.0.1:8080/.well-known/oauth-protected-resource");
    World { edge, clock, auth }
}

fn world(mode: AuthMode) -> World {
    world_with(mode, HttpSection::default())
}

impl World {
    fn token(&self, subject: &str) -> String {
        let issuer =
            TokenIssuer::new(&self.auth, &SecretString::from(SIGNING.to_string())).unwrap();
        let issued = issuer
            .issue_at(&IssueRequest::new(subject, Tier::User), NOW)
            .unwrap();
        issued.token.expose_secret().to_string()
    }

    fn triage(&self, req: http::request::Builder, peer: IpAddr) -> Result<Verified, Refusal> {
        let (parts, ()) = req.body(()).unwrap().into_parts();
        self.edge.triage_at(&parts, peer, NOW)
    }
}

fn post() -> http::request::Builder {
    http::Request::post("/mcp").header("user-agent", "python-httpx/0.28.1")
}

#[test]
fn a_bearer_token_in_the_header_is_verified_by_the_stdio_validator() {
    let w = world(AuthMode::Required);
    let t = w.token("alice");
    let who = w
        .triage(
            post().header("authorization", format!("Bearer {t}")),
            REMOTE,
        )
        .unwrap();
    assert_eq!((who.subject(), who.tier()), ("alice", Tier::User));
    assert!(who.is_authenticated());
    assert!(matches!(
        who,
        Verified::Token {
            method: Some(Method::AuthorizationHeader),
            ..
        }
    ));
}

#[test]
fn each_preset_accepts_its_carriers_only() {
    for (preset, header, proxy, cookie) in [
        (ExtractorPreset::Standard, true, true, true),
        (ExtractorPreset::Browser, true, false, true),
        (ExtractorPreset::Api, true, false, false),
    ] {
        let w = world_with(
            AuthMode::Required,
            HttpSection {
                extractor: preset,
                ..HttpSection::default()
            },
        );
        let t = w.token("alice");
        let carriers = [
            (
                post().header("authorization", format!("Bearer {t}")),
                header,
            ),
            (
                post().header("x-forwarded-authorization", format!("Bearer {t}")),
                proxy,
            ),
            (
                post().header("cookie", format!("a=b; lastmile_session={t}")),
                cookie,
            ),
        ];
        for (req, accepted) in carriers {
            let got = w.triage(req, REMOTE);
            assert_eq!(got.is_ok(), accepted, "{preset:?}: {got:?}");
            if let Err(r) = got {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
                assert_eq!(r.reason().code(), "no_credential");
            }
        }
    }
}

#[test]
fn required_mode_without_a_credential_is_a_401_naming_every_method() {
    let w = world(AuthMode::Required);
    let r = w.triage(post(), REMOTE).unwrap_err();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[WWW_AUTHENTICATE],
        r#"Bearer realm="lastmile", resource_metadata="http://127.0.0.1:8080/.well-known/oauth-protected-resource""#
    );
    let tried: Vec<&str> = r.body()["tried"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["missed"].as_str().unwrap())
        .collect();
    assert_eq!(
        tried,
        [
            "missing_header",
            "missing_proxy_header",
            "missing_cookie_header"
        ]
    );
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[test]
fn optional_mode_makes_a_request_without_credential_anonymous_but_refuses_a_bad_one() {
    let w = world(AuthMode::Optional);
    let who = w.triage(post(), REMOTE).unwrap();
    assert_eq!((who.subject(), who.tier()), ("anonymous", Tier::Anonymous));
    assert!(!who.is_authenticated());
    let r = w
        .triage(post().header("authorization", "Bearer not.a.token"), REMOTE)
        .unwrap_err();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge
            .starts_with(r#"Bearer realm="lastmile", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    assert_eq!(r.body()["method"], "authorization_header");
    // A malformed credential is refused in optional mode too, without falling back.
    let r = w
        .triage(post().header("authorization", "Bearer "), REMOTE)
        .unwrap_err();
    assert_eq!(r.reason().code(), "empty_token");
}

#[test]
fn an_expired_token_is_refused_with_its_time() {
    let w = world(AuthMode::Required);
    let t = w.token("alice");
    let (parts, ()) = post()
        .header("authorization", format!("Bearer {t}"))
        .body(())
        .unwrap()
        .into_parts();
    let r = w
        .edge
        .triage_at(&parts, REMOTE, NOW + 400 * 86_400)
        .unwrap_err();
    assert_eq!(r.reason().code(), "expired");
    assert!(r.body()["message"].as_str().unwrap().contains("expired at"));
}

#[test]
fn a_repeated_credential_is_a_400_invalid_request() {
    let w = world(AuthMode::Required);
    let r = w
        .triage(
            post()
                .header("authorization", "Bearer a")
                .header("authorization", "Bearer b"),
            REMOTE,
        )
        .unwrap_err();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_request""#)
    );
}

#[test]
fn the_scanner_runs_before_any_credential_is_looked_at() {
    let w = world(AuthMode::Required);
    let t = w.token("alice");
    let r = w
        .triage(
            http::Request::get("/.env")
                .header("user-agent", "node")
                .header("authorization", format!("Bearer {t}")),
            REMOTE,
        )
        .unwrap_err();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.body()["check"], "path");
    let r = w
        .triage(
            http::Request::post("/mcp")
                .header("user-agent", "sqlmap/1.8")
                .header("authorization", format!("Bearer {t}")),
            REMOTE,
        )
        .unwrap_err();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r.body()["check"], "user_agent");
    assert_eq!(r.body()["reason"], "scanner_agent");
}

#[test]
fn velocity_is_a_429_with_retry_after_and_counts_the_identity_across_addresses() {
    let http = HttpSection {
        scanner: ScannerSection {
            per_minute: 3,
            ..ScannerSection::default()
        },
        ..HttpSection::default()
    };
    let w = world_with(AuthMode::Required, http);
    let t = w.token("alice");
    let bearer = || post().header("authorization", format!("Bearer {t}"));
    for i in 1..=3u8 {
        w.triage(bearer(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)))
            .unwrap();
    }
    let r = w
        .triage(bearer(), IpAddr::V4(Ipv4Addr::new(198, 51, 100, 4)))
        .unwrap_err();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(matches!(r.reason(), RefusalReason::IdentityVelocity(_)));
    let secs: u32 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(secs >= 1);
    assert_eq!(r.body()["retry_after"], secs);
    // By address: the fourth request of one address is refused before any credential is read.
    let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    for _ in 0..3 {
        let _ = w.triage(post(), addr);
    }
    let r = w.triage(post(), addr).unwrap_err();
    assert!(matches!(
        r.reason(),
        RefusalReason::Scanner(Verdict::Velocity { .. })
    ));
    assert!(r.headers().contains_key(RETRY_AFTER));
    // After Retry-After the identity is let in again.
    w.clock.advance(u64::from(secs) * 1000);
    assert!(w.triage(bearer(), REMOTE).is_ok());
}

#[test]
fn a_signed_proxy_identity_comes_first_and_a_bad_one_never_falls_through() {
    let w = world(AuthMode::Required);
    let t = w.token("alice");
    let key = SecretString::from(PROXY_KEY.to_string());
    let good = sign_header(&key, "bob@corp", Tier::Service, "px-1", NOW + 60).unwrap();
    // Valid proxy identity wins over a bearer token.
    let who = w
        .triage(
            post()
                .header("x-lastmile-identity", &good)
                .header("authorization", format!("Bearer {t}")),
            REMOTE,
        )
        .unwrap();
    assert!(matches!(who, Verified::Proxy(_)));
    assert_eq!((who.subject(), who.tier()), ("bob@corp", Tier::Service));
    // A forged one is refused even with a valid bearer token beside it, on loopback too.
    let forged = good.replacen("tier=service", "tier=admin", 1);
    for peer in [REMOTE, LOCAL] {
        let r = w
            .triage(
                post()
                    .header("x-lastmile-identity", &forged)
                    .header("authorization", format!("Bearer {t}")),
                peer,
            )
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.reason().code(), "bad_signature");
    }
    // Expired.
    let old = sign_header(&key, "bob@corp", Tier::Service, "px-1", NOW - 3600).unwrap();
    let r = w
        .triage(post().header("x-lastmile-identity", &old), REMOTE)
        .unwrap_err();
    assert_eq!(r.reason().code(), "expired");
}

#[test]
fn a_flood_of_denials_is_one_event_then_one_summary_with_its_count() {
    let w = world(AuthMode::Required);
    for _ in 0..1000 {
        let r = w
            .triage(
                http::Request::get("/wp-admin/").header("user-agent", "node"),
                REMOTE,
            )
            .unwrap_err();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let first = w.edge.denials().take_audit_events();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].check, "path");
    assert!(first[0].reason.starts_with("known_scanner_path"));
    assert_eq!(first[0].remote_addr.as_deref(), Some("203.0.113.7"));
    // Within the window nothing more is emitted.
    w.edge.denials().flush();
    assert!(w.edge.denials().take_audit_events().is_empty());
    // After it, one summary counting the rest.
    w.clock.advance(60_000);
    w.edge.denials().flush();
    let summary = w.edge.denials().take_audit_events();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert_eq!(summary[0].count, 999);
    assert_eq!(first[0].count, 1);
    // Another client or another check is its own event.
    let _ = w.triage(
        http::Request::get("/mcp").header("user-agent", "nikto"),
        REMOTE,
    );
    let _ = w.triage(
        http::Request::get("/x.php").header("user-agent", "node"),
        LOCAL,
    );
    assert_eq!(w.edge.denials().take_audit_events().len(), 2);
}

#[test]
fn the_aggregator_stays_bounded_when_addresses_rotate() {
    let w = world(AuthMode::Required);
    for i in 0..20_000u32 {
        let peer = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = w.triage(
            http::Request::get("/.git/config").header("user-agent", "node"),
            peer,
        );
    }
    let events = w.edge.denials().take_audit_events();
    // The first MAX_DENIAL_SLOTS clients get an event each; the rest share one overflow slot.
    assert!(events.len() <= MAX_DENIAL_SLOTS + 1, "{}", events.len());
}

#[tokio::test]
async fn aggregated_denials_land_in_the_audit_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = crate::audit::db_path(dir.path());
    let key = || {
        crate::audit::AuditKey::from_bytes(b"test-audit-key-0123456789abcdef!".to_vec()).unwrap()
    };
    let writer = crate::audit::AuditWriter::open(&path, key()).unwrap();
    let sink = writer.sink();
    let w = world(AuthMode::Required);
    for _ in 0..50 {
        let _ = w.triage(
            http::Request::get("/mcp?access_token=canary-in-query")
                .header("user-agent", "Nikto/2.5"),
            REMOTE,
        );
    }
    assert_eq!(w.edge.forward_denials(&sink).await.unwrap(), 1);
    w.clock.advance(61_000);
    assert_eq!(w.edge.forward_denials(&sink).await.unwrap(), 1);
    sink.flush().await.unwrap();
    tokio::task::spawn_blocking(move || writer.shutdown().unwrap())
        .await
        .unwrap();
    let reader = crate::audit::AuditReader::open(&path).unwrap();
    let mut out = Vec::new();
    reader.export_jsonl(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["kind"] == "edge_event")
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[0]["check_name"], "user_agent");
    assert_eq!(rows[0]["path"], "/mcp");
    assert_eq!(rows[0]["count"], 1, "{text}");
    assert_eq!(rows[1]["count"], 49, "{text}");
    assert!(!text.contains("canary"), "{text}");
    assert!(reader.verify(&key()).unwrap().is_intact());
}

/// A writer that keeps what the JSON log layer writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line of this test binary, JSON-encoded. A scoped subscriber would race with the
/// other tests' threads over the shared callsites' cached interest; a global one does not, and
/// it also holds what every other edge test logged, which must be as clean.
fn global_log() -> &'static Captured {
    static LOG: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets a global subscriber");
        log
    })
}

#[test]
fn no_refusal_body_header_log_line_or_audit_row_holds_a_token_or_a_secret() {
    let log = global_log();
    let canary_token = "canary-TOKEN-Wm1sT7hB9cN3dF6gJ5pQ";
    let canary_jwt = "eyJhbGciOiJIUzI1NiJ9.Y2FuYXJ5LVRPS0VO.Y2FuYXJ5LVRPS0VOLXNpZw";
    let run = |seen: &mut String| {
        for mode in [AuthMode::Required, AuthMode::Optional] {
            let w = world(mode);
            // A real token signed with another secret, whose claims hold the canary.
            let other = AuthSection::default();
            let forged = TokenIssuer::new(
                &other,
                &SecretString::from("other-secret-Lp5Nx2Rb8Vd4Kf6Hq3m9Tz1Wc7".to_string()),
            )
            .unwrap()
            .issue_at(&IssueRequest::new(canary_token, Tier::Admin), NOW)
            .unwrap()
            .token
            .expose_secret()
            .to_string();
            let key = SecretString::from(PROXY_KEY.to_string());
            let proxy = sign_header(&key, canary_token, Tier::Admin, "s", NOW + 60).unwrap();
            let requests = vec![
                post().header("authorization", format!("Bearer {canary_token}")),
                post().header("authorization", format!("Bearer {canary_jwt}")),
                post().header("authorization", format!("Bearer {forged}")),
                post().header("authorization", format!("Bearer {canary_token} x")),
                post().header("authorization", canary_token),
                post().header("authorization", format!("{canary_token} {canary_token}")),
                post().header("x-forwarded-authorization", format!("{canary_token},")),
                post().header("cookie", format!("lastmile_session={canary_token}")),
                post().header("cookie", format!("lastmile_session={canary_token}%")),
                post().header(
                    "cookie",
                    format!("lastmile_session={canary_token}; lastmile_session=b"),
                ),
                post().header(
                    "x-lastmile-identity",
                    proxy.replacen("tier=admin", "tier=user", 1),
                ),
                post().header("x-lastmile-identity", format!("v1;sub={canary_token}")),
                http::Request::get(format!("/.env?token={canary_token}"))
                    .header("user-agent", format!("sqlmap {canary_jwt}")),
                http::Request::get(format!("/mcp?token={canary_token}"))
                    .header("user-agent", format!("nikto {canary_jwt}")),
            ];
            for req in requests {
                if let Err(r) = w.triage(req, REMOTE) {
                    seen.push_str(&format!(
                        "{r} {r:?} {}\n",
                        String::from_utf8_lossy(&r.body_bytes())
                    ));
                    for (k, v) in r.headers() {
                        seen.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
                    }
                }
            }
            w.edge.denials().flush_all();
            for e in w.edge.denials().take_audit_events() {
                seen.push_str(&format!("{e:?}\n"));
            }
            seen.push_str(&format!("{:?}\n", w.edge));
        }
    };
    let mut seen = String::new();
    run(&mut seen);
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("request refused at the edge"), "{logged}");
    assert!(seen.contains("bad_signature"), "{seen}");
    for text in [&seen, &logged] {
        for canary in [
            "canary-TOKEN",
            "Y2FuYXJ5LVRPS0VO",
            "signing-canary",
            "proxy-canary",
        ] {
            assert!(!text.contains(canary), "{canary} leaked:\n{text}");
        }
    }
}

#[test]
fn an_anonymous_request_does_not_silence_the_authenticators_warnings_for_good() {
    let log = global_log();
    let w = world(AuthMode::Optional);
    // The authenticator's warning is silenced for the edge's anonymous requests ...
    assert!(w.triage(post(), REMOTE).is_ok());
    // ... but its callsite still logs when the authenticator is used directly (stdio).
    let auth = AuthSection {
        mode: AuthMode::Optional,
        ..AuthSection::default()
    };
    let authn =
        Authenticator::new(&auth, Some(&SecretString::from(SIGNING.to_string())), false).unwrap();
    let none = TokenSources {
        token_file: None,
        env_token: None,
        saved: || Ok::<Option<SecretString>, String>(None),
    };
    assert!(authn.establish_at(none, NOW).is_ok());
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("continuing as an anonymous session"),
        "{logged}"
    );
}
