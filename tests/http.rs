//! Streamable HTTP end to end: `lastmile serve --http` driven as an HTTP client would — each
//! credential carrier and its named failures, sessions bound to identities, DNS rebinding,
//! scanner traffic, 2026-07-28 without a session, progress on an event stream, and the canary.

use serde_json::{Value, json};

use crate::http_util::*;
use crate::util::*;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_bearer_token_opens_a_session_that_lists_and_calls_tools() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = w.token("alice", "user").await;
    let server = HttpServer::start(&w).await;
    let auth = bearer(&token);
    let session = open_session(&server, &[("authorization", &auth)]).await;
    let with = [
        ("authorization", auth.as_str()),
        ("mcp-session-id", session.as_str()),
    ];

    let list = server
        .post(&request(2, "tools/list", json!({})), &with)
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let tools = list.json()["result"]["tools"].clone();
    assert!(
        tools
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "alpha__echo"),
        "{tools}"
    );

    let call = server
        .post(
            &request(
                3,
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"text": "over http"}}),
            ),
            &with,
        )
        .await;
    assert_eq!(call.status, 200, "{}", call.body);
    let answer = call.json();
    assert_eq!(answer["id"], 3, "the client's id comes back: {answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "over http");
    let execution = answer["result"]["_meta"][lastmile::gateway::EXECUTION_ID_META]
        .as_str()
        .expect("execution id")
        .to_string();

    // DELETE ends the session; it is gone afterwards.
    let del = server
        .request("DELETE", "/mcp")
        .header("authorization", &auth)
        .header("mcp-session-id", &session)
        .send()
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    let after = server
        .post(&request(4, "tools/list", json!({})), &with)
        .await;
    assert_eq!(after.status, 404, "{}", after.body);
    assert_eq!(after.json()["error"]["data"]["reason"], "unknown_session");
    server.stop().await;

    let rows = w.audit_export().await;
    let row = rows
        .iter()
        .find(|r| r["execution_id"] == execution.as_str())
        .unwrap_or_else(|| panic!("the call is audited: {rows:?}"));
    assert_eq!(row["subject"], "alice");
    assert_eq!(row["transport"], "http");
}

#[tokio::test]
async fn without_a_credential_the_401_names_every_carrier_and_where_tokens_come_from() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let r = server.post(&initialize(1), &[]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let challenge = r.header("www-authenticate").expect("WWW-Authenticate");
    assert!(
        challenge.starts_with("Bearer realm=\"lastmile\""),
        "{challenge}"
    );
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"http://{}/.well-known/oauth-protected-resource/mcp\"",
            server.addr
        )),
        "{challenge}"
    );
    let body = r.json();
    let tried = body.to_string();
    for carrier in ["authorization", "x-forwarded-authorization", "cookie"] {
        assert!(
            tried.to_ascii_lowercase().contains(carrier),
            "{carrier} not named: {tried}"
        );
    }

    // RFC 9728: readable without a credential.
    let meta = server
        .request("GET", "/.well-known/oauth-protected-resource/mcp")
        .send()
        .await;
    assert_eq!(meta.status, 200, "{}", meta.body);
    let doc = meta.json();
    assert_eq!(doc["resource"], format!("http://{}/mcp", server.addr));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));

    // A malformed credential fails at once with its reason, never as anonymous.
    let bad = server
        .post(&initialize(1), &[("authorization", "Bearer not.a.jwt")])
        .await;
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert_eq!(bad.json()["error"], "invalid_token");
    server.stop().await;
}

#[tokio::test]
async fn a_session_belongs_to_its_identity_and_a_fresh_token_of_it_keeps_it() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let alice = bearer(&w.token("alice", "user").await);
    let alice_again = bearer(&w.token("alice", "user").await);
    let bob = bearer(&w.token("bob", "user").await);
    let alice_admin = bearer(&w.token("alice", "admin").await);
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[("authorization", &alice)]).await;
    let echo = request(
        2,
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"text": "x"}}),
    );

    for (who, token) in [("bob", &bob), ("alice as admin", &alice_admin)] {
        let r = server
            .post(
                &echo,
                &[("authorization", token), ("mcp-session-id", &session)],
            )
            .await;
        assert_eq!(r.status, 403, "{who}: {}", r.body);
        assert_eq!(
            r.json()["error"]["data"]["reason"],
            "session_identity_mismatch",
            "{who}"
        );
    }
    // Another token of the same subject and tier (a refreshed cookie, say) keeps the session.
    let r = server
        .post(
            &echo,
            &[
                ("authorization", &alice_again),
                ("mcp-session-id", &session),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"]["content"][0]["text"], "x");
    // A session id nobody issued is unknown, not a way in.
    let r = server
        .post(
            &echo,
            &[
                ("authorization", &bob),
                ("mcp-session-id", "0123456789abcdef0123456789abcdef"),
            ],
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn dns_rebinding_and_foreign_origins_are_refused_before_mcp() {
    let w = World::new();
    w.profile_file(
        "[auth]\nmode = \"disabled\"\n[http]\nallowed_origins = [\"http://localhost:6274\"]\n",
    );
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let port = server.addr.port();

    let rebound = server
        .post(
            &initialize(1),
            &[("host", &format!("attacker.example:{port}"))],
        )
        .await;
    assert_eq!(rebound.status, 403, "{}", rebound.body);
    assert_eq!(rebound.json()["error"], "host_not_allowed");

    for origin in ["http://attacker.example", "http://localhost:3000", "null"] {
        let r = server.post(&initialize(1), &[("origin", origin)]).await;
        assert_eq!(r.status, 403, "{origin}: {}", r.body);
        assert_eq!(r.json()["error"], "origin_not_allowed", "{origin}");
        assert!(r.header("access-control-allow-origin").is_none());
    }

    // lastmile's own origin is served: it serves no page, so only it could claim it.
    let own = format!("http://127.0.0.1:{port}");
    let r = server.post(&initialize(1), &[("origin", &own)]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A listed origin is served, with CORS headers, and its preflight answered.
    let pre = server
        .request("OPTIONS", "/mcp")
        .header("origin", "http://localhost:6274")
        .header("access-control-request-method", "POST")
        .send()
        .await;
    assert_eq!(pre.status, 204, "{}", pre.body);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    assert!(
        pre.header("access-control-allow-headers")
            .unwrap()
            .contains("mcp-session-id")
    );
    let ok = server
        .post(&initialize(1), &[("origin", "http://localhost:6274")])
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:6274")
    );
    assert!(
        ok.header("access-control-expose-headers")
            .unwrap()
            .contains("mcp-session-id")
    );
    server.stop().await;

    let rows = w.audit_export().await;
    assert!(
        rows.iter()
            .any(|r| r["check_name"] == "origin" || r.to_string().contains("host_not_allowed")),
        "the refusals are denial events in the audit database: {rows:?}"
    );
}

#[tokio::test]
async fn scanner_traffic_is_refused_before_any_handler() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = bearer(&w.token("alice", "user").await);
    let server = HttpServer::start(&w).await;
    for path in [
        "/.env",
        "/.git/config",
        "/wp-admin/",
        "/backup.sql",
        "/phpmyadmin/index.php",
    ] {
        let r = server
            .request("GET", path)
            .header("authorization", &token)
            .send()
            .await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json()["check"], "path", "{path}");
    }
    let r = server
        .post(
            &initialize(1),
            &[("authorization", &token), ("user-agent", "sqlmap/1.7")],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["check"], "user_agent");
    // Node's fetch is an MCP client, not a scanner.
    let r = server
        .post(
            &initialize(1),
            &[("authorization", &token), ("user-agent", "node")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn on_2026_07_28_the_identity_is_the_unit_and_no_session_is_needed() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = bearer(&w.token("alice", "user").await);
    let server = HttpServer::start(&w).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "http-2026", "version": "0"}
    });
    let headers = [
        ("authorization", token.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
    ];
    let discover = server
        .post(
            &request(1, "server/discover", json!({"_meta": meta})),
            &headers,
        )
        .await;
    assert_eq!(discover.status, 200, "{}", discover.body);
    assert!(
        discover.header("mcp-session-id").is_none(),
        "stateless: no session id"
    );
    assert!(
        discover.json()["result"]["supportedVersions"].is_array(),
        "{}",
        discover.body
    );

    let call = server
        .post(
            &request(
                7,
                "tools/call",
                json!({"name": "alpha__echo", "arguments": {"text": "stateless"}, "_meta": meta}),
            ),
            &headers,
        )
        .await;
    assert_eq!(call.status, 200, "{}", call.body);
    let answer = call.json();
    assert_eq!(answer["id"], 7);
    assert_eq!(answer["result"]["content"][0]["text"], "stateless");
    assert_eq!(answer["result"]["resultType"], "complete", "{answer}");

    // Without a session and without 2026-07-28, a request is refused by name.
    let r = server
        .post(
            &request(8, "tools/list", json!({})),
            &[("authorization", &token)],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Mcp-Session-Id")
    );
    server.stop().await;
}

#[tokio::test]
async fn progress_travels_on_the_request_stream_with_the_clients_token() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[]).await;
    let r = server
        .post(
            &request(5, "tools/call", json!({"name": "alpha__progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "mine-1"}})),
            &[("mcp-session-id", &session)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream"),
        "{:?}",
        r.headers
    );
    let messages = r.messages();
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine-1"),
        "{progress:?}"
    );
    let last = messages.last().unwrap();
    assert_eq!(last["id"], 5);
    assert_eq!(last["result"]["content"][0]["text"], "done 3 steps");
    server.stop().await;
}

#[tokio::test]
async fn the_canary_never_reaches_an_http_response_header_log_or_audit_row() {
    let w = World::new();
    w.require_auth("").await;
    let value = format!("canary{}", uuid_like());
    w.set_secret("MY_CANARY", &value).await;
    w.fixture("leaky", &[], "secrets = [\"MY_CANARY\"]");
    let token = bearer(&w.token("alice", "user").await);
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[("authorization", &token)]).await;
    let with = [
        ("authorization", token.as_str()),
        ("mcp-session-id", session.as_str()),
    ];
    let mut seen = String::new();
    for (id, tool) in [
        (2, "leaky__leak"),
        (3, "leaky__leak_error"),
        (4, "leaky__env"),
    ] {
        let r = server
            .post(
                &request(
                    id,
                    "tools/call",
                    json!({"name": tool, "arguments": {"name": "MY_CANARY"}}),
                ),
                &with,
            )
            .await;
        assert_eq!(r.status, 200, "{tool}: {}", r.body);
        seen.push_str(&r.raw);
    }
    // The model passes it back as an argument, and in a progress token.
    let r = server
        .post(
            &request(5, "tools/call", json!({"name": "leaky__progress", "arguments": {"steps": 1, "echo": value}, "_meta": {"progressToken": "p"}})),
            &with,
        )
        .await;
    seen.push_str(&r.raw);
    assert!(
        seen.contains("[REDACTED:MY_CANARY]"),
        "the child did hand it back: {seen}"
    );
    let stderr = server.stop().await;
    assert!(
        !seen.contains(&value),
        "the canary reached an HTTP response"
    );
    assert!(!stderr.contains(&value), "the canary reached stderr");
    assert!(
        !w.logs().contains(&value),
        "the canary reached the log folder"
    );
    let audit = w.run(&["audit", "export", "--jsonl"]).await;
    assert!(
        !String::from_utf8_lossy(&audit.stdout).contains(&value),
        "the canary reached the audit log"
    );
}

fn uuid_like() -> String {
    use secrecy::ExposeSecret;
    lastmile::secrets::random_secret(24)
        .unwrap()
        .expose_secret()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

#[tokio::test]
async fn a_non_loopback_address_is_refused_unless_asked_for() {
    let w = World::new();
    let out = w.run(&["serve", "--http", "0.0.0.0:0"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-non-loopback"),
        "{err}"
    );
}

#[tokio::test]
async fn a_sessions_get_stream_carries_its_own_notifications_and_no_one_elses() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let a = open_session(&server, &[]).await;
    let b = open_session(&server, &[]).await;
    assert_ne!(a, b);
    let open = |id: &str| {
        server
            .request("GET", "/mcp")
            .header("accept", "text/event-stream")
            .header("mcp-session-id", id)
    };
    let mut stream_a = open(&a).open().await;
    let mut stream_b = open(&b).open().await;
    assert_eq!(stream_a.status, 200);
    assert!(stream_a.headers["content-type"].starts_with("text/event-stream"));
    // A client hears of list changes once it has listed.
    for id in [&a, &b] {
        let r = server
            .post(
                &request(9, "tools/list", json!({})),
                &[("mcp-session-id", id)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // A's child logs and adds a tool: A hears of both.
    let r = server
        .post(
            &request(2, "tools/call", json!({"name": "alpha__log", "arguments": {"message": "from a", "level": "warning"}})),
            &[("mcp-session-id", &a)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = server
        .post(
            &request(
                3,
                "tools/call",
                json!({"name": "alpha__add_tool", "arguments": {"name": "only_for_a"}}),
            ),
            &[("mcp-session-id", &a)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut heard = Vec::new();
    while heard.len() < 2 {
        heard.push(
            stream_a
                .next()
                .await
                .expect("A's notifications on A's stream"),
        );
    }
    let methods: Vec<&str> = heard
        .iter()
        .map(|n| n["method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"notifications/message"), "{heard:?}");
    assert!(
        methods.contains(&"notifications/tools/list_changed"),
        "{heard:?}"
    );

    // B's own change is the first thing B's stream carries: nothing of A's came before it.
    let r = server
        .post(
            &request(
                2,
                "tools/call",
                json!({"name": "alpha__add_tool", "arguments": {"name": "only_for_b"}}),
            ),
            &[("mcp-session-id", &b)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let note = stream_b.next().await.expect("a notification on B's stream");
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    let list_b = server
        .post(
            &request(3, "tools/list", json!({})),
            &[("mcp-session-id", &b)],
        )
        .await;
    let names = list_b.json()["result"]["tools"].to_string();
    assert!(
        names.contains("alpha__only_for_b") && !names.contains("only_for_a"),
        "{names}"
    );
    server.stop().await;
}

#[tokio::test]
async fn each_carrier_of_the_chain_and_each_preset() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = w.token("alice", "user").await;
    let server = HttpServer::start(&w).await;
    let cookie = format!("theme=dark; lastmile_session={token}");
    let proxied = format!("Bearer {token}");
    for (name, header) in [
        ("authorization", bearer(&token)),
        ("cookie", cookie.clone()),
        ("x-forwarded-authorization", proxied.clone()),
    ] {
        let r = server.post(&initialize(1), &[(name, &header)]).await;
        assert_eq!(r.status, 200, "{name}: {}", r.body);
    }
    // A carrier that is present but malformed fails at once, even when a later one is valid.
    let r = server
        .post(
            &initialize(1),
            &[("authorization", "Bearer two words"), ("cookie", &cookie)],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["method"], "authorization_header", "{}", r.body);
    // Found in review: `Bearer` alone (HTTP trims the space after it) and a tab for the space
    // passed as no Authorization header, so a later carrier decided.
    for malformed in ["Bearer", "Bearer ", "Bearer\tjunk"] {
        let r = server
            .post(
                &initialize(1),
                &[("authorization", malformed), ("cookie", &cookie)],
            )
            .await;
        assert_eq!(r.status, 401, "{malformed:?}: {}", r.body);
        assert_eq!(r.json()["method"], "authorization_header", "{}", r.body);
    }
    server.stop().await;

    // `api`: the header only — a cookie is not a credential there.
    w.profile_file("[auth]\nmode = \"required\"\n[http]\nextractor = \"api\"\n");
    let server = HttpServer::start(&w).await;
    let r = server.post(&initialize(1), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let tried = r.json()["tried"].to_string();
    assert!(
        tried.contains("authorization_header") && !tried.contains("cookie"),
        "{tried}"
    );
    server.stop().await;

    // `browser`: header and cookie, not the proxy's header.
    w.profile_file("[auth]\nmode = \"required\"\n[http]\nextractor = \"browser\"\n");
    let server = HttpServer::start(&w).await;
    let r = server
        .post(&initialize(1), &[("x-forwarded-authorization", &proxied)])
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = server.post(&initialize(1), &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn a_signed_proxy_identity_decides_and_a_bad_one_is_refused_outright() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let key = "k7Jq2Lm9Vx4Rt8Nw1Zc6Hb3Fy5Pd0Gs-proxy-key-for-tests";
    // No key yet: a header that arrives cannot be trusted.
    let server = HttpServer::start(&w).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let secret = secrecy::SecretString::from(key.to_string());
    let signed = lastmile::edge::sign_header(
        &secret,
        "carol@corp",
        lastmile::config::Tier::Admin,
        "sso-1",
        now + 120,
    )
    .unwrap();
    let r = server
        .post(&initialize(1), &[("x-lastmile-identity", &signed)])
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.json()["reason"], "proxy_identity_not_configured");
    server.stop().await;

    // The key is stored like any secret, from stdin; a weak one is refused.
    let weak = w
        .command(&["secrets", "set-proxy-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = feed(weak, "short").await;
    assert!(!out.status.success(), "a weak proxy key is refused");
    let ok = w
        .command(&["secrets", "set-proxy-key"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = feed(ok, key).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = HttpServer::start(&w).await;
    let token = bearer(&w.token("alice", "user").await);
    // Valid: the proxy's identity wins over a bearer token, and its tier applies.
    let r = server
        .post(
            &initialize(1),
            &[("x-lastmile-identity", &signed), ("authorization", &token)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let session = r.header("mcp-session-id").unwrap().to_string();
    // The session is carol's: alice's token cannot use it.
    let r = server
        .post(
            &request(2, "tools/list", json!({})),
            &[("authorization", &token), ("mcp-session-id", &session)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);

    let tampered = signed.replace("tier=admin", "tier=user");
    let expired = lastmile::edge::sign_header(
        &secret,
        "carol@corp",
        lastmile::config::Tier::Admin,
        "sso-1",
        now - 60,
    )
    .unwrap();
    let wrong_key = lastmile::edge::sign_header(
        &secrecy::SecretString::from("another-key-of-more-than-32-bytes-zz9".to_string()),
        "carol@corp",
        lastmile::config::Tier::Admin,
        "sso-1",
        now + 120,
    )
    .unwrap();
    let unsigned = signed.split(";sig=").next().unwrap().to_string();
    for (what, header, code) in [
        ("tampered", tampered.as_str(), "bad_signature"),
        (
            "expired (a replay after its expiry)",
            expired.as_str(),
            "expired",
        ),
        (
            "signed with another key",
            wrong_key.as_str(),
            "bad_signature",
        ),
        ("unsigned", unsigned.as_str(), "unsigned"),
    ] {
        // A valid bearer token beside it does not rescue it: a present identity decides.
        let r = server
            .post(
                &initialize(1),
                &[("x-lastmile-identity", header), ("authorization", &token)],
            )
            .await;
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert_eq!(r.json()["reason"], code, "{what}");
    }
    server.stop().await;
    let rows = w.audit_export().await;
    assert!(
        rows.iter().any(|r| r.to_string().contains("bad_signature")),
        "proxy refusals are denial events: {rows:?}"
    );
}

async fn feed(mut child: tokio::process::Child, value: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(value.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn velocity_over_the_ceiling_is_429_with_retry_after() {
    let w = World::new();
    w.profile_file(
        "[auth]\nmode = \"disabled\"\n[http.scanner]\nper_minute = 3\nloopback_per_minute = 3\n",
    );
    let server = HttpServer::start(&w).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(server.request("GET", "/nothing-here").send().await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .unwrap_or_else(|| {
            panic!(
                "no 429 among {:?}",
                statuses.iter().map(|r| r.status).collect::<Vec<_>>()
            )
        });
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{:?}",
        limited.headers
    );
    assert_eq!(limited.json()["check"], "velocity");
    server.stop().await;
}

#[tokio::test]
async fn an_identitys_rate_limit_is_shared_by_all_its_sessions() {
    let w = World::new();
    w.require_auth("[rate_limit]\nbase_per_minute = 1\nburst_multiplier = 1.0\n")
        .await;
    w.fixture("alpha", &[], "");
    let token = bearer(&w.token("alice", "user").await);
    let server = HttpServer::start(&w).await;
    let echo = request(
        2,
        "tools/call",
        json!({"name": "alpha__echo", "arguments": {"text": "x"}}),
    );
    let first = open_session(&server, &[("authorization", &token)]).await;
    let r = server
        .post(
            &echo,
            &[("authorization", &token), ("mcp-session-id", &first)],
        )
        .await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "x", "{}", r.body);
    // A second session buys no more calls.
    let second = open_session(&server, &[("authorization", &token)]).await;
    let r = server
        .post(
            &echo,
            &[("authorization", &token), ("mcp-session-id", &second)],
        )
        .await;
    assert_eq!(r.json()["error"]["code"], -32029, "{}", r.body);
    // Another identity has its own.
    let bob = bearer(&w.token("bob", "user").await);
    let third = open_session(&server, &[("authorization", &bob)]).await;
    let r = server
        .post(
            &echo,
            &[("authorization", &bob), ("mcp-session-id", &third)],
        )
        .await;
    assert_eq!(r.json()["result"]["content"][0]["text"], "x", "{}", r.body);
    server.stop().await;
}

#[tokio::test]
async fn a_task_belongs_to_the_identity_whose_call_made_it() {
    let w = World::new();
    w.require_auth("").await;
    let log = w.path("tasks.log");
    w.server_file(
        "jobs",
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--tasks\", {:?}]\ntiers = [\"admin\", \"user\"]\n",
            log.to_string_lossy()
        ),
    );
    let alice = bearer(&w.token("alice", "user").await);
    let bob = bearer(&w.token("bob", "user").await);
    let server = HttpServer::start(&w).await;
    let a = open_session(&server, &[("authorization", &alice)]).await;
    let b = open_session(&server, &[("authorization", &bob)]).await;
    let as_alice = [
        ("authorization", alice.as_str()),
        ("mcp-session-id", a.as_str()),
    ];
    let as_bob = [
        ("authorization", bob.as_str()),
        ("mcp-session-id", b.as_str()),
    ];
    let created = server
        .post(
            &request(
                2,
                "tools/call",
                json!({"name": "jobs__job", "arguments": {"text": "hi"}}),
            ),
            &as_alice,
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let task = created.json()["result"]["taskId"]
        .as_str()
        .expect("a task")
        .to_string();
    assert!(task.starts_with("lmt-"), "{task}");

    // Bob, in his own session, cannot read or cancel it: it is unknown there.
    for method in ["tasks/get", "tasks/cancel"] {
        let r = server
            .post(&request(3, method, json!({"taskId": task})), &as_bob)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["error"]["code"], -32602, "{method}: {}", r.body);
    }
    // Alice can.
    let got = server
        .post(&request(4, "tasks/get", json!({"taskId": task})), &as_alice)
        .await;
    assert_eq!(
        got.json()["result"]["taskId"],
        task.as_str(),
        "{}",
        got.body
    );
    server.stop().await;
    let child = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !child.contains("tasks/cancel"),
        "bob's cancel reached the child: {child}"
    );
}

#[tokio::test]
async fn over_http_a_childs_request_is_input_required_and_only_its_identity_can_answer() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let alice = bearer(&w.token("alice", "user").await);
    let bob = bearer(&w.token("bob", "user").await);
    let server = HttpServer::start(&w).await;
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"roots": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "http-2026", "version": "0"}
    });
    let headers = |token: &str| {
        [
            ("authorization", token.to_string()),
            ("mcp-protocol-version", "2026-07-28".to_string()),
        ]
    };
    let post = |id: u64, params: Value, token: &str| {
        let h = headers(token);
        let server = &server;
        async move {
            let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .post(&request(id, "tools/call", params), &pairs)
                .await
                .json()
        }
    };
    let first = post(
        1,
        json!({"name": "alpha__roots", "arguments": {}, "_meta": meta}),
        &alice,
    )
    .await;
    assert_eq!(first["result"]["resultType"], "input_required", "{first}");
    let (key, ask) = first["result"]["inputRequests"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    assert_eq!(ask["method"], "roots/list");
    let state = first["result"]["requestState"].clone();
    let answer = json!({key.clone(): {"roots": [{"uri": "file:///alice"}]}});

    // Bob cannot answer in Alice's place: the state is unknown in his session.
    let stolen = post(2, json!({"name": "alpha__roots", "arguments": {}, "_meta": meta, "inputResponses": answer, "requestState": state}), &bob).await;
    assert_eq!(
        stolen["error"]["data"]["reason"], "invalid_request_state",
        "{stolen}"
    );

    let done = post(3, json!({"name": "alpha__roots", "arguments": {}, "_meta": meta, "inputResponses": answer, "requestState": state}), &alice).await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["content"][0]["text"], "roots: file:///alice",
        "{done}"
    );
    server.stop().await;
}

#[tokio::test]
async fn at_its_cap_an_identitys_longest_idle_session_makes_room() {
    let w = World::new();
    w.profile_file("[auth]\nmode = \"disabled\"\n[http]\nmax_sessions_per_identity = 2\n");
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let first = open_session(&server, &[]).await;
    let second = open_session(&server, &[]).await;
    // `second` is busy: its GET stream is open, so it is not idle.
    let stream = server
        .request("GET", "/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &second)
        .open()
        .await;
    assert_eq!(stream.status, 200);
    let third = open_session(&server, &[]).await;
    let list = request(5, "tools/list", json!({}));
    let gone = server.post(&list, &[("mcp-session-id", &first)]).await;
    assert_eq!(
        gone.status, 404,
        "the idle session made room: {}",
        gone.body
    );
    for kept in [&second, &third] {
        let r = server.post(&list, &[("mcp-session-id", kept)]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // With every session busy, a new one is refused by name.
    let busy = server
        .request("GET", "/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &third)
        .open()
        .await;
    assert_eq!(busy.status, 200);
    let refused = server.post(&initialize(1), &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        refused.json()["error"]["data"]["reason"],
        "too_many_sessions"
    );
    drop((stream, busy));
    server.stop().await;
}

/// The `_meta` of a 2026-07-28 request from `client`.
fn meta_2026(client: &str) -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": client, "version": "0" }
    })
}

/// Found in review: in `optional` mode every client without a credential is the one anonymous
/// identity, so on 2026-07-28 they share one session, and one anonymous client listed, read
/// and could cancel another's tasks. A task's id, which only its maker was told, is the one
/// proof of who made it there: no task is listed, and the id still reaches the task.
#[tokio::test]
async fn anonymous_2026_clients_do_not_see_each_others_tasks() {
    let w = World::new();
    w.require_auth("").await;
    w.profile_file("[auth]\nmode = \"optional\"\n");
    let log = w.path("tasks.log");
    w.server_file(
        "jobs",
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--tasks\", {:?}]\ntiers = [\"anonymous\"]\n",
            log.to_string_lossy()
        ),
    );
    let server = HttpServer::start(&w).await;
    let v2026 = [("mcp-protocol-version", "2026-07-28")];
    let call = json!({ "name": "jobs__job", "arguments": { "text": "a's work" }, "_meta": meta_2026("a") });
    let created = server.post(&request(1, "tools/call", call), &v2026).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let task = created.json()["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("a task: {}", created.body))
        .to_string();
    let listed = server
        .post(
            &request(2, "tasks/list", json!({ "_meta": meta_2026("b") })),
            &v2026,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        listed.json()["result"]["tasks"].is_array(),
        "{}",
        listed.body
    );
    assert!(
        !listed.body.contains(&task),
        "another anonymous client listed it: {}",
        listed.body
    );
    // Its maker, holding the id, still reaches it.
    let got = server
        .post(
            &request(
                3,
                "tasks/get",
                json!({ "taskId": task, "_meta": meta_2026("a") }),
            ),
            &v2026,
        )
        .await;
    assert!(got.json()["result"].is_object(), "{}", got.body);
    server.stop().await;
}

/// Found in review: on 2026-07-28 the clients of one session cancelled by their own ids, so an
/// anonymous client's `notifications/cancelled` for "its" request 1 cancelled another client's
/// request 1. Anonymous clients are not one principal: each cancels by closing its request.
#[tokio::test]
async fn an_anonymous_2026_client_cannot_cancel_another_clients_call() {
    let w = World::new();
    w.require_auth("").await;
    w.profile_file("[auth]\nmode = \"optional\"\n");
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let release = w.path("release");
    let call = json!({
        "name": "alpha__progress",
        "arguments": { "steps": 1, "until": release.to_string_lossy() },
        "_meta": { "progressToken": "a-1" }
    });
    let mut call = call;
    call["_meta"]
        .as_object_mut()
        .unwrap()
        .extend(meta_2026("a").as_object().unwrap().clone());
    let mut a = server
        .request("POST", "/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .body(request(1, "tools/call", call).to_string())
        .open()
        .await;
    // A's call is in flight once its progress arrives.
    let progress = a.next().await.expect("progress");
    assert_eq!(progress["method"], "notifications/progress", "{progress}");
    let cancel = json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": 1, "reason": "b cancels its own request 1" }
    });
    let r = server
        .post(&cancel, &[("mcp-protocol-version", "2026-07-28")])
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    std::fs::write(&release, "").unwrap();
    let answer = a.next().await.expect("A's answer");
    assert_eq!(answer["id"], 1, "{answer}");
    assert_eq!(
        answer["result"]["content"][0]["text"], "done 1 steps",
        "{answer}"
    );
    server.stop().await;
}
