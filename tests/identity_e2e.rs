//! Identity end to end through `lastmile serve`: the three modes, boot refusal, tier scoping,
//! the indistinguishable answer for hidden tools, and per-tier rate limits.

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::util::*;

const ALL_TIERS: &str =
    "tiers = [\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\"]";

/// A fixture whose file lists exactly `tiers` (or none: admin only), writing its pid to a file.
fn tiered(w: &World, name: &str, tiers: Option<&str>) -> std::path::PathBuf {
    let pidfile = w.path(&format!("{name}.pid"));
    let tiers_line = tiers
        .map(|t| format!("tiers = [{t}]\n"))
        .unwrap_or_default();
    w.server_file(
        name,
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--name\", \"{name}\", \"--pid-file\", {:?}, \"--no-prompts\", \"--no-resources\"]\n{tiers_line}",
            pidfile.to_str().unwrap()
        ),
    );
    pidfile
}

/// Send `initialize` on a raw pipe and return the first line lastmile answers, and its exit code.
async fn raw_initialize(cmd: &mut tokio::process::Command) -> (String, Option<i32>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}});
    let _ = stdin.write_all(format!("{init}\n").as_bytes()).await;
    let answer = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .ok()
        .and_then(|l| l.ok())
        .flatten()
        .unwrap_or_default();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        answer,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn required_mode_without_a_token_refuses_with_every_source_named() {
    let w = World::new();
    w.require_auth("").await;
    let pidfile = tiered(&w, "alpha", Some("\"admin\", \"user\""));
    let (answer, code, stderr) = raw_initialize(&mut w.command(&["serve"])).await;
    let v: serde_json::Value = serde_json::from_str(&answer).expect("a JSON-RPC answer");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("session refused"), "{answer}");
    for source in ["--token-file", "LASTMILE_TOKEN", "saved"] {
        assert!(message.contains(source), "{source} missing from {message}");
    }
    assert_eq!(
        code,
        Some(lastmile::exit_codes::AUTH_REFUSED as i32),
        "{stderr}"
    );
    assert!(stderr.contains("session refused"), "{stderr}");
    assert!(!pidfile.exists(), "a child started for a refused session");
}

#[tokio::test]
async fn required_mode_with_a_bad_token_names_the_reason() {
    let w = World::new();
    w.require_auth("").await;
    let token = w.token("alice", "user").await;
    // Flip one character of the signature.
    let mut bad = token.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    let bad = String::from_utf8(bad).unwrap();
    let mut cmd = w.command(&["serve"]);
    cmd.env("LASTMILE_TOKEN", &bad);
    let (answer, code, stderr) = raw_initialize(&mut cmd).await;
    assert!(answer.contains("signature"), "{answer}");
    assert_eq!(
        code,
        Some(lastmile::exit_codes::AUTH_REFUSED as i32),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&bad) && !answer.contains(&bad),
        "the token was echoed back"
    );
}

#[tokio::test]
async fn a_weak_signing_secret_refuses_to_boot() {
    let w = World::new();
    w.profile_file("[auth]\nmode = \"required\"\n");
    let opened = lastmile::secrets::open_store(
        w.backend.parse().unwrap(),
        &format!("lastmile:{}", w.profile),
    )
    .unwrap();
    let weak = secrecy::SecretString::from("a".repeat(40));
    opened
        .store
        .set(
            &lastmile::secrets::SecretKey::Internal(lastmile::secrets::Internal::SigningSecret),
            &weak,
        )
        .unwrap();
    let (_, code, stderr) = raw_initialize(&mut w.command(&["serve"])).await;
    assert_eq!(
        code,
        Some(lastmile::exit_codes::WEAK_SIGNING_SECRET as i32),
        "{stderr}"
    );
    assert!(stderr.contains("refusing to boot"), "{stderr}");
    assert!(!stderr.contains(&"a".repeat(40)));
}

#[tokio::test]
async fn disabled_mode_needs_the_explicit_switch() {
    let w = World::new();
    let mut cmd = w.command(&["serve"]);
    cmd.env_remove("LASTMILE_ALLOW_DISABLED_AUTH");
    let (_, code, stderr) = raw_initialize(&mut cmd).await;
    assert_eq!(
        code,
        Some(lastmile::exit_codes::CONFIG_INVALID as i32),
        "{stderr}"
    );
    assert!(stderr.contains("LASTMILE_ALLOW_DISABLED_AUTH"), "{stderr}");
    // With the switch it serves, warning loudly.
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    let stderr = s.close().await;
    assert!(stderr.contains("auth is disabled"), "{stderr}");
}

#[tokio::test]
async fn optional_mode_falls_back_to_anonymous() {
    let w = World::new();
    w.require_auth("").await;
    w.profile_file("[auth]\nmode = \"optional\"\n");
    let hidden = tiered(&w, "members", Some("\"user\""));
    tiered(&w, "public", Some("\"anonymous\""));
    let s = w.serve().await;
    let names = s.tool_names().await;
    assert!(names.iter().all(|n| n.starts_with("public__")), "{names:?}");
    assert!(!hidden.exists());
    let stderr = s.close().await;
    assert!(stderr.contains("serving as anonymous"), "{stderr}");
}

/// Each of the six tiers sees exactly the servers whose files list it (no `tiers`: admin only),
/// and a hidden server's process never starts.
#[tokio::test]
async fn tiers_scope_servers_at_load_time() {
    let w = World::new();
    w.require_auth("").await;
    let servers = [
        (
            "everyone",
            Some("\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\""),
        ),
        ("staff", Some("\"admin\", \"user\"")),
        ("bots", Some("\"service\", \"a2a\", \"mcp\"")),
        ("adminonly", None),
    ];
    for tier in ["admin", "user", "service", "a2a", "mcp", "anonymous"] {
        let pidfiles: Vec<_> = servers
            .iter()
            .map(|(name, tiers)| (name, tiers, tiered(&w, name, *tiers)))
            .collect();
        for (_, _, pid) in &pidfiles {
            let _ = std::fs::remove_file(pid);
        }
        let token = w.token(&format!("sub-{tier}"), tier).await;
        let s = w
            .serve_with(|cmd| {
                cmd.env("LASTMILE_TOKEN", &token);
            })
            .await;
        let names = s.tool_names().await;
        for (name, tiers, pid) in &pidfiles {
            let allowed = match tiers {
                Some(t) => t.contains(&format!("\"{tier}\"")),
                None => tier == "admin",
            };
            let visible = names.iter().any(|n| n.starts_with(&format!("{name}__")));
            assert_eq!(visible, allowed, "tier {tier}, server {name}: {names:?}");
            // The list may come from the catalog cache before the children are up.
            if allowed {
                eventually(Duration::from_secs(10), || pid.exists()).await;
            }
            assert_eq!(
                pid.exists(),
                allowed,
                "tier {tier}: server {name} process started = {}",
                pid.exists()
            );
        }
        s.close().await;
    }
}

#[tokio::test]
async fn a_hidden_tool_gets_exactly_the_answer_of_a_name_that_never_existed() {
    // Same world twice: once with an admin-only server, once without its file at all.
    let answer = |with_hidden: bool| async move {
        let w = World::new();
        w.require_auth("").await;
        tiered(&w, "public", Some("\"user\""));
        if with_hidden {
            tiered(&w, "vault", None);
        }
        let token = w.token("alice", "user").await;
        let s = w
            .serve_with(|cmd| {
                cmd.env("LASTMILE_TOKEN", &token);
            })
            .await;
        assert!(
            s.tool_names()
                .await
                .iter()
                .all(|n| n.starts_with("public__"))
        );
        let err = s
            .call("vault__echo", json!({ "text": "x" }))
            .await
            .unwrap_err();
        s.close().await;
        match err {
            rmcp::ServiceError::McpError(e) => serde_json::to_string(&e).unwrap(),
            other => panic!("unexpected {other}"),
        }
    };
    let hidden = answer(true).await;
    let never = answer(false).await;
    assert_eq!(hidden, never);
}

#[tokio::test]
async fn rate_limits_follow_the_tier() {
    let w = World::new();
    // user: 2/min, burst 2; admin: 10x that.
    w.require_auth("[rate_limit]\nbase_per_minute = 2\nburst_multiplier = 1.0\n")
        .await;
    w.server_file(
        "alpha",
        &format!("command = {FIXTURE:?}\nargs = [\"--name\", \"alpha\"]\n{ALL_TIERS}\n"),
    );
    for (tier, allowed) in [("user", 2usize), ("admin", 20)] {
        let token = w.token("rl", tier).await;
        let s = w
            .serve_with(|cmd| {
                cmd.env("LASTMILE_TOKEN", &token);
            })
            .await;
        let mut ok = 0;
        let mut limited = None;
        for _ in 0..allowed + 1 {
            match s.call("alpha__echo", json!({ "text": "x" })).await {
                Ok(_) => ok += 1,
                Err(rmcp::ServiceError::McpError(e)) => {
                    limited = Some(e);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert_eq!(ok, allowed, "tier {tier}");
        let e = limited.expect("the call over the limit was refused");
        assert_eq!(e.code, lastmile::gateway::RATE_LIMITED);
        let retry = e
            .data
            .as_ref()
            .and_then(|d| d["retry_after_ms"].as_u64())
            .expect("retry_after_ms");
        assert!(retry > 0 && retry <= 60_000, "{retry}");
        s.close().await;
    }
}

#[tokio::test]
async fn without_a_secret_store_required_mode_says_so() {
    let w = World::new();
    w.profile_file("[auth]\nmode = \"required\"\n");
    let mut cmd = w.command(&["serve"]);
    // A Secret Service that cannot be reached: no D-Bus session here.
    cmd.env("LASTMILE_SECRETS_BACKEND", "secret-service")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/bus");
    let (_, code, stderr) = raw_initialize(&mut cmd).await;
    assert_eq!(
        code,
        Some(lastmile::exit_codes::SECRETS_UNAVAILABLE as i32),
        "{stderr}"
    );
    assert!(
        stderr.contains("no secret store could be opened"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_saved_token_is_found_by_serve_and_inspect_explains_tokens() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let out = w
        .run(&[
            "token",
            "issue",
            "--sub",
            "saved-sub",
            "--tier",
            "service",
            "--save",
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .split('.')
            .count()
            != 3,
        "--save must not print the token"
    );
    // No --token-file, no LASTMILE_TOKEN: the saved token is the source.
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), FIXTURE_TOOLS);
    s.close().await;
    let rows = w.run(&["audit", "export", "--jsonl"]).await;
    assert!(String::from_utf8_lossy(&rows.stdout).contains("saved-sub"));
    // inspect: a good token shows its claims, a tampered one its reason.
    let token = w.token("inspected", "user").await;
    let file = w.path("token.jwt");
    std::fs::write(&file, &token).unwrap();
    let ok = w.run(&["token", "inspect", file.to_str().unwrap()]).await;
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && text.contains("inspected") && text.contains("user"),
        "{text}"
    );
    std::fs::write(&file, format!("{token}x")).unwrap();
    let bad = w.run(&["token", "inspect", file.to_str().unwrap()]).await;
    assert_eq!(
        bad.status.code(),
        Some(lastmile::exit_codes::AUTH_REFUSED as i32)
    );
}
