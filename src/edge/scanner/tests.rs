use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;
use crate::config::GenericClient;

const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn scanner_with(cfg: &ScannerSection) -> (Scanner, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at(0));
    (Scanner::new(cfg, clock.clone()).unwrap(), clock)
}

fn scanner() -> Scanner {
    scanner_with(&ScannerSection::default()).0
}

/// Agents the real MCP clients send, which must pass from anywhere.
const REAL_CLIENTS: &[&str] = &[
    "node",                // Node's global fetch (TypeScript SDK)
    "undici",              // undici's own fetch
    "python-httpx/0.27.0", // Python SDK
    "python-httpx/0.28.1",
    "claude-code/2.0.14", // Claude Code
    "claude-code/1.0.72 (external, cli)",
    "Claude-User",             // Claude's remote connectors
    "mcp-inspector/0.17.0",    // the Inspector's proxy
    "Java-http-client/21.0.5", // Java SDK
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Go-http-client/1.1", // Go SDK (net/http default)
    "Go-http-client/2.0",
    "curl/8.5.0 my-mcp-smoke-test", // a generic client that names itself
    "python-requests/2.32.3 acme-mcp-bridge/1.4",
];

#[test]
fn the_real_clients_user_agents_pass_from_a_remote_address() {
    let s = scanner();
    for ua in REAL_CLIENTS {
        assert_eq!(
            s.check("/mcp", Some(ua.as_bytes()), REMOTE),
            Ok(()),
            "{ua} must pass"
        );
    }
}

#[test]
fn the_paths_the_transport_serves_pass() {
    let s = scanner();
    for path in [
        "/mcp",
        "/mcp/",
        "/",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/mcp/v1.2",
    ] {
        assert_eq!(s.check_path(path), Ok(()), "{path}");
    }
}

#[test]
fn every_default_extension_is_refused_in_any_case() {
    let s = scanner();
    for ext in ScannerSection::default().extensions {
        for path in [
            format!("/index.{ext}"),
            format!("/a/b/backup.{}", ext.to_ascii_uppercase()),
            format!("/x.{ext}"),
        ] {
            match s.check_path(&path) {
                Err(Verdict::ScannerExtension { extension }) => assert_eq!(extension, ext),
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}

#[test]
fn an_extension_elsewhere_than_the_last_segment_does_not_count() {
    let s = scanner();
    assert_eq!(s.check_path("/mcp.php/x"), Ok(()));
    assert_eq!(s.check_path("/mcp/phpinfo"), Ok(()));
    assert_eq!(s.check_path("/mcp/file.json"), Ok(()));
}

#[test]
fn every_default_known_path_is_refused_in_any_case_and_when_percent_encoded() {
    let s = scanner();
    for pattern in ScannerSection::default().paths {
        let upper = pattern.to_ascii_uppercase();
        let encoded: String = pattern
            .bytes()
            .map(|b| {
                if b == b'/' {
                    "/".to_string()
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect();
        for path in [
            pattern.clone(),
            format!("/prefix{pattern}"),
            format!("{pattern}x"),
            upper,
            encoded,
        ] {
            match s.check_path(&path) {
                Err(Verdict::KnownScannerPath { pattern: p }) => assert_eq!(p, pattern, "{path}"),
                // A path whose last segment also ends in a scanner extension may be named by
                // that check first; either way it is refused.
                Err(Verdict::ScannerExtension { .. }) => {}
                other => panic!("{path}: {other:?}"),
            }
        }
    }
}

#[test]
fn every_default_scanner_tool_is_refused_anywhere_in_the_agent_and_in_any_case() {
    let s = scanner();
    for tool in ScannerSection::default().user_agents {
        for ua in [
            tool.clone(),
            format!("Mozilla/5.0 ({tool}/2.1; +https://example.org)"),
            tool.to_ascii_uppercase(),
        ] {
            match s.check_agent(Some(ua.as_bytes()), REMOTE) {
                Err(Verdict::ScannerAgent { tool: t }) => assert_eq!(t, tool, "{ua}"),
                other => panic!("{ua}: {other:?}"),
            }
        }
        // A scanner cannot hide behind an allowed prefix.
        let disguised = format!("python-httpx/0.27.0 {tool}");
        assert!(
            matches!(
                s.check_agent(Some(disguised.as_bytes()), REMOTE),
                Err(Verdict::ScannerAgent { .. })
            ),
            "{disguised}"
        );
    }
}

#[test]
fn every_default_generic_client_is_refused_under_its_threshold_and_passes_at_it() {
    let s = scanner();
    for GenericClient { prefix, min_length } in ScannerSection::default().generic_clients {
        let pad = |len: usize| {
            let mut ua = prefix.clone();
            while ua.len() < len {
                ua.push('1');
            }
            ua
        };
        let under = pad(min_length.saturating_sub(1).max(prefix.len()));
        match s.check_agent(Some(under.as_bytes()), REMOTE) {
            Err(Verdict::GenericClient {
                prefix: p,
                len,
                min,
            }) => {
                assert_eq!(
                    (p.as_str(), len, min),
                    (prefix.as_str(), under.len(), min_length)
                );
            }
            Err(Verdict::ShortAgent { .. }) if under.len() < 4 => {}
            other => panic!("{under}: {other:?}"),
        }
        let at = pad(min_length);
        assert_eq!(s.check_agent(Some(at.as_bytes()), REMOTE), Ok(()), "{at}");
    }
    // The bare defaults of the common libraries, as they really look.
    for ua in [
        "curl/8.5.0",
        "Wget/1.21.4",
        "python-requests/2.32.3",
        "Python-urllib/3.12",
        "Python/3.12 aiohttp/3.9.5",
        "libwww-perl/6.72",
        "okhttp/4.12.0",
        "Apache-HttpClient/5.2.1",
        "Java/1.8.0_392",
        "axios/1.7.2",
        "HTTPie/3.2.2",
        "Ruby",
    ] {
        assert!(s.check_agent(Some(ua.as_bytes()), REMOTE).is_err(), "{ua}");
    }
}

#[test]
fn empty_and_short_agents_are_refused_remotely() {
    let s = scanner();
    assert_eq!(s.check_agent(None, REMOTE), Err(Verdict::EmptyAgent));
    assert_eq!(s.check_agent(Some(b""), REMOTE), Err(Verdict::EmptyAgent));
    assert_eq!(
        s.check_agent(Some(b"   "), REMOTE),
        Err(Verdict::EmptyAgent)
    );
    assert_eq!(
        s.check_agent(Some(b"abc"), REMOTE),
        Err(Verdict::ShortAgent { len: 3, min: 4 })
    );
    assert_eq!(s.check_agent(Some(b"abcd"), REMOTE), Ok(()));
    // Short agents are refused on loopback too; only a missing one is let through there.
    assert_eq!(
        s.check_agent(Some(b"x"), LOCAL),
        Err(Verdict::ShortAgent { len: 1, min: 4 })
    );
}

#[test]
fn a_missing_agent_passes_on_loopback_only_while_allowed() {
    let s = scanner();
    assert_eq!(s.check_agent(None, LOCAL), Ok(()));
    assert_eq!(s.check_agent(None, IpAddr::V6(Ipv6Addr::LOCALHOST)), Ok(()));
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(s.check_agent(None, mapped), Ok(()));
    let cfg = ScannerSection {
        allow_empty_user_agent_on_loopback: false,
        ..ScannerSection::default()
    };
    let (strict, _) = scanner_with(&cfg);
    assert_eq!(strict.check_agent(None, LOCAL), Err(Verdict::EmptyAgent));
}

#[test]
fn length_thresholds_follow_the_configuration() {
    let cfg = ScannerSection {
        min_user_agent_length: 10,
        generic_clients: vec![GenericClient {
            prefix: "MyLib/".into(),
            min_length: 12,
        }],
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    assert_eq!(
        s.check_agent(Some(b"123456789"), REMOTE),
        Err(Verdict::ShortAgent { len: 9, min: 10 })
    );
    assert_eq!(s.check_agent(Some(b"1234567890"), REMOTE), Ok(()));
    assert!(matches!(
        s.check_agent(Some(b"mylib/1.2.3"), REMOTE),
        Err(Verdict::GenericClient {
            len: 11,
            min: 12,
            ..
        })
    ));
    assert_eq!(s.check_agent(Some(b"mylib/1.2.34"), REMOTE), Ok(()));
    // The configured tables replace the defaults: curl is no longer special.
    assert_eq!(s.check_agent(Some(b"curl/8.5.0"), REMOTE), Ok(()));
    // `node` is shorter than 10 but a known client.
    assert_eq!(s.check_agent(Some(b"node"), REMOTE), Ok(()));
}

#[test]
fn a_known_client_entry_without_a_star_matches_exactly() {
    let s = scanner();
    // "node" is exact: "nodex" is an unknown 5-byte agent (passes on length), "nod" is short.
    assert_eq!(
        s.check_agent(Some(b"nod"), REMOTE),
        Err(Verdict::ShortAgent { len: 3, min: 4 })
    );
    assert_eq!(s.check_agent(Some(b"NODE"), REMOTE), Ok(()));
}

#[test]
fn the_checks_run_in_order_path_then_agent_then_velocity() {
    let cfg = ScannerSection {
        per_minute: 1,
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    // Both path and agent would fire: the path is named.
    assert!(matches!(
        s.check("/.env", Some(b"sqlmap/1.7"), REMOTE),
        Err(Verdict::KnownScannerPath { .. } | Verdict::ScannerExtension { .. })
    ));
    assert!(matches!(
        s.check("/mcp", Some(b"sqlmap/1.7"), REMOTE),
        Err(Verdict::ScannerAgent { .. })
    ));
    // Refused requests are not counted for velocity: the first clean one passes.
    assert_eq!(s.check("/mcp", Some(b"node"), REMOTE), Ok(()));
    assert!(matches!(
        s.check("/mcp", Some(b"node"), REMOTE),
        Err(Verdict::Velocity { .. })
    ));
}

#[test]
fn velocity_refuses_over_the_ceiling_with_retry_after_and_recovers() {
    let cfg = ScannerSection {
        per_minute: 10,
        ..ScannerSection::default()
    };
    let (s, clock) = scanner_with(&cfg);
    for i in 0..10 {
        assert_eq!(
            s.check("/mcp", Some(b"node"), REMOTE),
            Ok(()),
            "request {i}"
        );
    }
    let v = s.check("/mcp", Some(b"node"), REMOTE).unwrap_err();
    assert_eq!(v.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v.check(), Check::Velocity);
    let Verdict::Velocity {
        per_minute,
        ceiling,
        retry_after_secs,
        key,
    } = v
    else {
        unreachable!()
    };
    assert_eq!((per_minute, ceiling), (11, 10));
    assert_eq!(key, ClientKey::of_addr(REMOTE));
    // 11 in the window at t=0: the window ends in 60 s, and then 11 weighted down to 9 (room
    // for one more) takes 60 - 9*60/11 = 10.9 s more: 71 s in all.
    assert_eq!(retry_after_secs, 71);
    // Another client is unaffected.
    let other: IpAddr = "198.51.100.1".parse().unwrap();
    assert_eq!(s.check("/mcp", Some(b"node"), other), Ok(()));
    // After Retry-After without requests, the client is let in again.
    clock.advance(u64::from(retry_after_secs) * 1000);
    assert_eq!(s.check("/mcp", Some(b"node"), REMOTE), Ok(()));
}

#[test]
fn retry_after_is_honest_when_the_previous_window_holds_the_excess() {
    let cfg = ScannerSection {
        per_minute: 10,
        ..ScannerSection::default()
    };
    let (s, clock) = scanner_with(&cfg);
    clock.advance(50_000);
    for _ in 0..10 {
        s.check("/mcp", Some(b"node"), REMOTE).unwrap();
    }
    // Next window, 6 s in: 10 * 54/60 = 9 from before, plus this one = 10: still fine.
    clock.advance(16_000);
    assert_eq!(s.check("/mcp", Some(b"node"), REMOTE), Ok(()));
    let v = s.check("/mcp", Some(b"node"), REMOTE).unwrap_err();
    let secs = v.retry_after_secs().unwrap();
    assert!(secs >= 1, "{secs}");
    clock.advance(u64::from(secs) * 1000);
    assert_eq!(s.check("/mcp", Some(b"node"), REMOTE), Ok(()));
}

#[test]
fn loopback_has_its_own_ceiling() {
    let cfg = ScannerSection {
        per_minute: 5,
        loopback_per_minute: 50,
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    for _ in 0..50 {
        assert_eq!(s.check("/mcp", Some(b"node"), LOCAL), Ok(()));
    }
    match s.check("/mcp", Some(b"node"), LOCAL) {
        Err(Verdict::Velocity { ceiling, .. }) => assert_eq!(ceiling, 50),
        other => panic!("{other:?}"),
    }
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    for _ in 0..50 {
        assert_eq!(s.check("/mcp", Some(b"node"), v6), Ok(()));
    }
    for _ in 0..5 {
        assert_eq!(s.check("/mcp", Some(b"node"), REMOTE), Ok(()));
    }
    assert!(s.check("/mcp", Some(b"node"), REMOTE).is_err());
}

#[test]
fn an_ipv6_client_is_counted_by_its_64() {
    let cfg = ScannerSection {
        per_minute: 3,
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    for i in 1..=3 {
        let addr: IpAddr = format!("2001:db8:1:2::{i}").parse().unwrap();
        assert_eq!(s.check("/mcp", Some(b"node"), addr), Ok(()));
    }
    let rotated: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    assert!(s.check("/mcp", Some(b"node"), rotated).is_err());
    let other_net: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(s.check("/mcp", Some(b"node"), other_net), Ok(()));
}

#[test]
fn velocity_by_identity_is_counted_across_addresses() {
    let cfg = ScannerSection {
        per_minute: 3,
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    for i in 1..=3u8 {
        let addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, i));
        assert_eq!(s.check_identity("alice", Tier::User, addr), Ok(()));
    }
    let addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
    assert!(matches!(
        s.check_identity("alice", Tier::User, addr),
        Err(Verdict::Velocity {
            key: ClientKey::Identity(_),
            ..
        })
    ));
    assert_eq!(s.check_identity("bob", Tier::User, addr), Ok(()));
}

#[test]
fn the_velocity_map_stays_bounded_under_address_rotation() {
    let cfg = ScannerSection {
        max_clients: 64,
        ..ScannerSection::default()
    };
    let (s, clock) = scanner_with(&cfg);
    for i in 0..10_000u32 {
        let addr = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = s.check("/mcp", Some(b"node"), addr);
        if i % 1000 == 0 {
            clock.advance(1_500);
        }
    }
    let tracked: usize = s
        .velocity
        .shards
        .iter()
        .map(|sh| sh.lock().unwrap().map.len())
        .sum();
    assert!(tracked <= 64, "{tracked}");
}

#[test]
fn a_disabled_detector_lets_everything_through() {
    let cfg = ScannerSection {
        enabled: false,
        per_minute: 1,
        ..ScannerSection::default()
    };
    let (s, _) = scanner_with(&cfg);
    for _ in 0..3 {
        assert_eq!(s.check("/.env", Some(b"sqlmap"), REMOTE), Ok(()));
    }
}

#[test]
fn bad_tables_are_refused_at_setup() {
    let bad = |cfg: ScannerSection| Scanner::new(&cfg, Arc::new(ManualClock::at(0))).unwrap_err();
    assert!(matches!(
        bad(ScannerSection {
            extensions: vec![".php".into()],
            ..ScannerSection::default()
        }),
        ScannerSetupError::BadExtension { .. }
    ));
    assert!(matches!(
        bad(ScannerSection {
            paths: vec![String::new()],
            ..ScannerSection::default()
        }),
        ScannerSetupError::EmptyEntry { table: "paths" }
    ));
    assert!(matches!(
        bad(ScannerSection {
            allowed_agents: vec!["*".into()],
            ..ScannerSection::default()
        }),
        ScannerSetupError::EmptyEntry { .. }
    ));
    assert!(matches!(
        bad(ScannerSection {
            per_minute: 0,
            ..ScannerSection::default()
        }),
        ScannerSetupError::Zero {
            field: "per_minute"
        }
    ));
}

#[test]
fn a_new_scanner_family_is_a_config_change() {
    let text = r#"
[http.scanner]
user_agents = ["evilscan"]
extensions = ["xyz"]
paths = ["/secret-admin"]
"#;
    let cfg = crate::config::ProfileConfig::parse(text).unwrap();
    let (s, _) = scanner_with(&cfg.http.scanner);
    assert!(matches!(
        s.check_agent(Some(b"EvilScan/1.0"), REMOTE),
        Err(Verdict::ScannerAgent { .. })
    ));
    assert!(s.check_path("/a.xyz").is_err());
    assert!(s.check_path("/secret-admin/x").is_err());
    // The tables were replaced, not extended.
    assert_eq!(s.check_agent(Some(b"nikto"), REMOTE), Ok(()));
}

#[test]
fn extension_packing_never_confuses_two_extensions() {
    assert_ne!(pack(b"a"), pack(b"\0a"));
    assert_ne!(pack(b"php"), pack(b"ph"));
    assert_eq!(pack(b"PHP"), pack(b"php"));
    assert_eq!(pack(b"abcdefgh"), None);
    assert_eq!(pack(b""), None);
}
