//! Issue #9, tried as an attacker would: a child that leaks its secret through everything but its
//! results, six children with secrets started at once, every request kind after the token
//! expired, reads under a rate limit, a method lastmile does not route.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

fn canary(tag: &str) -> String {
    use secrecy::ExposeSecret;
    let secret = lastmile::secrets::random_secret(18).unwrap();
    let tail: String = secret
        .expose_secret()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{tag}{tail}")
}

/// Every form of `value` the redactor promises to catch in a JSON line.
fn forms(value: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    vec![
        value.to_string(),
        STANDARD.encode(value),
        URL_SAFE_NO_PAD.encode(value),
    ]
}

fn assert_clean(what: &str, text: &str, value: &str) {
    for form in forms(value) {
        assert!(
            !text.contains(&form),
            "{what} holds the secret (as {form}):\n{text}"
        );
    }
}

fn all_tiers() -> &'static str {
    "tiers = [\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\"]"
}

#[tokio::test]
async fn issue_9_catalogs_errors_and_notifications_never_carry_a_secret() {
    let w = World::new();
    let value = canary("catalog");
    w.set_secret("LEAK_KEY", &value).await;
    w.server_file(
        "cat",
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--leak-catalog\", \"LEAK_KEY\"]\n{}\nsecrets = [\"LEAK_KEY\"]\n",
            all_tiers()
        ),
    );
    let mut raw = RawClient::start(&w);
    let mut seen: Vec<String> = vec![raw.initialize("2025-11-25").await];
    let mut id = 1u64;
    let mut ask = async |raw: &mut RawClient, method: &str, params: Value| {
        id += 1;
        let (answer, lines) = raw.request(id, method, params).await;
        (answer, lines)
    };

    // Catalogs: every entry scrubbed; names and URIs that held the secret are aliases.
    let (tools, lines) = ask(&mut raw, "tools/list", json!({})).await;
    seen.extend(lines);
    let names: Vec<String> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"cat__leaky".to_string()), "{names:?}");
    let alias = names
        .iter()
        .find(|n| n.starts_with("cat__key_"))
        .expect("the secret-named tool is listed under an alias")
        .clone();
    assert!(
        alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
        "{alias}"
    );
    for (method, _) in [
        ("prompts/list", ()),
        ("resources/list", ()),
        ("resources/templates/list", ()),
    ] {
        let (_, lines) = ask(&mut raw, method, json!({})).await;
        seen.extend(lines);
    }
    let listed = seen.join("\n");
    assert!(listed.contains("[REDACTED:LEAK_KEY]"), "{listed}");
    let resources = seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["result"]["resources"].is_array())
        .unwrap();
    let uri = resources["result"]["resources"][0]["uri"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(uri.starts_with("lastmile-alias://cat/"), "{uri}");

    // The aliases still lead to the child's own names.
    let (called, lines) = ask(
        &mut raw,
        "tools/call",
        json!({"name": alias, "arguments": {}}),
    )
    .await;
    seen.extend(lines);
    assert_eq!(called["result"]["content"][0]["text"], "called", "{called}");
    let (read, lines) = ask(&mut raw, "resources/read", json!({"uri": uri})).await;
    seen.extend(lines);
    assert_eq!(read["result"]["contents"][0]["text"], "the data", "{read}");

    // Results, errors and notifications.
    let (leaky, lines) = ask(
        &mut raw,
        "tools/call",
        json!({"name": "cat__leaky", "arguments": {}, "_meta": {"progressToken": "p1"}}),
    )
    .await;
    assert!(
        leaky["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:LEAK_KEY]")
    );
    // The child's progress travels the raw path's own sink: it arrives before the answer (the
    // child sent it first), with the client's token and the secret redacted.
    assert!(
        lines.iter().any(|l| l.contains("notifications/progress")
            && l.contains("\"p1\"")
            && l.contains("[REDACTED:LEAK_KEY]")),
        "no redacted progress before the answer: {lines:?}"
    );
    // The notification may overtake the answer or follow it: wait for it either way.
    let mut lines = lines;
    while !lines.iter().any(|l| l.contains("notifications/message")) {
        let line = raw.next_line().await;
        assert!(
            line.is_some(),
            "the log notification reached the client: {lines:?}"
        );
        lines.extend(line);
    }
    seen.extend(lines);
    let (failed, lines) = ask(
        &mut raw,
        "tools/call",
        json!({"name": "cat__fail", "arguments": {}}),
    )
    .await;
    assert!(failed.get("error").is_some(), "{failed}");
    seen.extend(lines);
    for method in ["resources/subscribe", "resources/unsubscribe"] {
        let (answer, lines) = ask(&mut raw, method, json!({"uri": uri})).await;
        assert!(answer.get("error").is_some(), "{method}: {answer}");
        seen.extend(lines);
    }
    let (prompt, lines) = ask(
        &mut raw,
        "prompts/get",
        json!({"name": "cat__p", "arguments": {"who": "x"}}),
    )
    .await;
    assert!(prompt.get("result").is_some(), "{prompt}");
    seen.extend(lines);
    let (completion, lines) = ask(
        &mut raw,
        "completion/complete",
        json!({"ref": {"type": "ref/prompt", "name": "cat__p"}, "argument": {"name": "who", "value": ""}}),
    )
    .await;
    assert_eq!(
        completion["result"]["completion"]["values"][0], "[REDACTED:LEAK_KEY]",
        "{completion}"
    );
    seen.extend(lines);
    let status = raw.finish().await;
    assert!(status.success());

    assert_clean("what the client received", &seen.join("\n"), &value);
    assert_clean("the data folder (logs, audit database)", &w.logs(), &value);
}

#[tokio::test]
async fn issue_9_six_servers_started_at_once_never_leak_a_secret() {
    let w = World::new();
    let values: Vec<String> = (0..6).map(|i| canary(&format!("race{i}x"))).collect();
    for (i, v) in values.iter().enumerate() {
        w.set_secret(&format!("RACE_KEY_{i}"), v).await;
        w.fixture(
            &format!("s{i}"),
            &[],
            &format!("secrets = [\"RACE_KEY_{i}\"]"),
        );
    }
    for _round in 0..3 {
        let s = w.serve().await;
        let mut seen = String::new();
        for i in 0..6 {
            let r = s
                .call(
                    &format!("s{i}__leak"),
                    json!({ "name": format!("RACE_KEY_{i}") }),
                )
                .await
                .unwrap();
            let text = serde_json::to_string(&r).unwrap();
            assert!(text.contains(&format!("[REDACTED:RACE_KEY_{i}]")), "{text}");
            seen.push_str(&text);
        }
        let stderr = s.close().await;
        seen.push_str(&stderr);
        for v in &values {
            assert_clean("a session of six servers", &seen, v);
        }
    }
    for v in &values {
        assert_clean("the data folder", &w.logs(), v);
    }
}

/// Every request that reaches a child or reveals the catalog is refused once the token expired,
/// with the named reason; only the lifecycle requests still answer.
#[tokio::test]
async fn issue_9_after_expiry_every_request_kind_is_refused_by_name() {
    let w = World::new();
    w.require_auth("leeway = \"0s\"\n").await;
    w.fixture("fx", &[], "");
    // Long enough for the session to start and list before it expires: under Wine, starting
    // processes alone can take seconds.
    let ttl: u64 = if cfg!(windows) { 10 } else { 2 };
    let out = w
        .run(&[
            "token",
            "issue",
            "--sub",
            "eve",
            "--tier",
            "user",
            "--ttl",
            &format!("{ttl}s"),
        ])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued = Instant::now();
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut raw = RawClient::start_with(&w, |c| {
        c.env("LASTMILE_TOKEN", &token);
    });
    raw.initialize("2025-11-25").await;
    let (listed, _) = raw.request(2, "tools/list", json!({})).await;
    assert!(listed.get("result").is_some(), "{listed}");

    // The token's lifetime is the thing under test: wait it out (exp has one-second resolution).
    let expiry = issued + Duration::from_millis(ttl * 1000 + 1200);
    tokio::time::sleep_until(tokio::time::Instant::from_std(expiry)).await;

    let kinds = [
        ("tools/list", json!({})),
        (
            "tools/call",
            json!({"name": "fx__echo", "arguments": {"text": "x"}}),
        ),
        ("prompts/list", json!({})),
        (
            "prompts/get",
            json!({"name": "fx__greet", "arguments": {"name": "x"}}),
        ),
        ("resources/list", json!({})),
        ("resources/templates/list", json!({})),
        ("resources/read", json!({"uri": "fixture://fx/readme"})),
        ("resources/subscribe", json!({"uri": "fixture://fx/readme"})),
        (
            "resources/unsubscribe",
            json!({"uri": "fixture://fx/readme"}),
        ),
        (
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "fx__greet"}, "argument": {"name": "name", "value": ""}}),
        ),
        ("logging/setLevel", json!({"level": "debug"})),
        ("tasks/get", json!({"taskId": "t1"})),
        ("vendor/unknown", json!({})),
        (
            "subscriptions/listen",
            json!({"notifications": {"toolsListChanged": true}}),
        ),
    ];
    let mut id = 10;
    for (method, params) in kinds {
        id += 1;
        let (answer, _) = raw.request(id, method, params).await;
        let error = &answer["error"];
        assert_eq!(error["code"], -32028, "{method}: {answer}");
        assert!(
            error["message"].as_str().unwrap().contains("expired"),
            "{method}: {answer}"
        );
        assert_eq!(error["data"]["reason"], "expired", "{method}: {answer}");
    }
    let (pong, _) = raw.request(99, "ping", json!({})).await;
    assert!(pong.get("result").is_some(), "ping stays exempt: {pong}");
    assert!(raw.finish().await.success());

    // Each refusal left an audit row, bound to the identity.
    let out = w
        .run(&["audit", "query", "--status", "denied", "--json"])
        .await;
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["subject"] == "eve"), "{rows:?}");
    let methods: Vec<&str> = rows.iter().filter_map(|r| r["method"].as_str()).collect();
    for method in [
        "tools/list",
        "tools/call",
        "resources/read",
        "prompts/get",
        "completion/complete",
        "tasks/get",
        "vendor/unknown",
        "subscriptions/listen",
    ] {
        assert!(
            methods.contains(&method),
            "no denied row for {method}: {methods:?}"
        );
    }
}

#[tokio::test]
async fn issue_9_reads_draw_from_their_own_rate_limit_bucket() {
    let w = World::new();
    w.require_auth("[rate_limit]\nreads_per_minute = 10\n")
        .await;
    w.fixture("fx", &[], "");
    let token = w.token("reader", "user").await;
    let mut raw = RawClient::start_with(&w, |c| {
        c.env("LASTMILE_TOKEN", &token);
    });
    raw.initialize("2025-11-25").await;
    // 10 a minute with a burst of 3x: 30 reads pass at once, then the bucket is empty.
    let mut ok = 0;
    let mut limited = 0;
    for id in 2..62u64 {
        let (answer, _) = raw
            .request(id, "resources/read", json!({"uri": "fixture://fx/readme"}))
            .await;
        if answer.get("result").is_some() {
            ok += 1;
        } else {
            assert_eq!(answer["error"]["code"], -32029, "{answer}");
            assert_eq!(answer["error"]["data"]["bucket"], "reads", "{answer}");
            limited += 1;
        }
    }
    assert!((30..=31).contains(&ok), "{ok} reads passed");
    assert_eq!(ok + limited, 60);
    // Calls have a bucket of their own: a session that exhausted its reads can still call.
    let (called, _) = raw
        .request(
            100,
            "tools/call",
            json!({"name": "fx__echo", "arguments": {"text": "hi"}}),
        )
        .await;
    assert!(called.get("result").is_some(), "{called}");
    assert!(raw.finish().await.success());

    let out = w
        .run(&["audit", "query", "--status", "rate_limited", "--json"])
        .await;
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), limited, "{rows}");
}

#[tokio::test]
async fn issue_9_a_method_lastmile_does_not_route_is_refused_and_audited() {
    let w = World::new();
    w.fixture("fx", &[], "");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let (answer, _) = raw.request(2, "vendor/secret-backdoor", json!({})).await;
    assert_eq!(answer["error"]["code"], -32601, "{answer}");
    assert!(raw.finish().await.success());
    let out = w
        .run(&["audit", "query", "--status", "error", "--json"])
        .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("vendor/secret-backdoor"), "{text}");
}

/// The audit keeps a call's arguments as the client wrote them, scrubbed: a secret the model
/// writes there is found in every JSON spelling (escaped character by character, half escaped,
/// as a member name, inside a nested JSON string), and the row holds none of them.
#[tokio::test]
async fn a_secret_in_tool_arguments_reaches_no_audit_row_in_any_json_spelling() {
    let w = World::new();
    let value = canary("args");
    w.set_secret("ARG_KEY", &value).await;
    w.fixture("fx", &[], "secrets = [\"ARG_KEY\"]");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let _ = raw.request(2, "tools/list", json!({})).await;
    let escaped: String = value
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let half: String = value
        .chars()
        .enumerate()
        .map(|(i, c)| match i % 2 {
            0 => format!("\\u{:04X}", c as u32),
            _ => c.to_string(),
        })
        .collect();
    let nested = serde_json::to_string(&json!({ "token": value }).to_string()).unwrap();
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"fx__echo","arguments":{{"text":"{escaped}","note":"say {half}!","{escaped}":1,"inner":{nested},"plain":"{value}"}}}}}}"#
    );
    raw.send_line(&line).await;
    let answer = loop {
        let line = raw.next_line().await.expect("an answer to the call");
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == json!(3) {
            break v;
        }
    };
    assert!(answer.get("result").is_some(), "{answer}");
    assert_clean("the answer", &answer.to_string(), &value);
    assert!(raw.finish().await.success());

    let rows = w.audit_export().await;
    let row = rows
        .iter()
        .find(|r| r["tool"] == "echo")
        .unwrap_or_else(|| panic!("no row for the call: {rows:?}"));
    // Export decodes the stored JSON, so an escaped spelling that survived would show here.
    let text = row.to_string();
    assert_clean("the audit row", &text, &value);
    assert!(text.contains("[REDACTED:ARG_KEY]"), "{text}");
    assert!(row["redactions"].as_u64().unwrap_or(0) >= 5, "{row}");
    assert_clean("the data folder", &read_tree(&w.data_dir()), &value);
}

/// Found in review: a child's stderr was redacted line by line, so a secret that spans lines —
/// a multi-line value printed whole (a PEM key), or any secret in base64 wrapped as `base64`
/// and PEM wrap it — reached the log file in pieces, each piece in the clear.
#[tokio::test]
async fn a_secret_a_child_prints_over_several_stderr_lines_reaches_the_log_redacted() {
    use base64::Engine as _;
    let w = World::new();
    let (body1, body2) = (canary("pemline1"), canary("pemline2"));
    let pem = format!("-----BEGIN TEST KEY-----\n{body1}\n{body2}\n-----END TEST KEY-----");
    let plain = canary("wrapped");
    w.set_secret("PEM_KEY", &pem).await;
    w.set_secret("PLAIN_KEY", &plain).await;
    w.fixture("leaky", &[], "secrets = [\"PEM_KEY\", \"PLAIN_KEY\"]");
    let s = w.serve().await;
    for name in ["PEM_KEY", "PLAIN_KEY"] {
        let answer = s
            .call("leaky__leak", json!({ "name": name }))
            .await
            .unwrap();
        let answer = serde_json::to_string(&answer).unwrap();
        assert!(answer.contains(&format!("[REDACTED:{name}]")), "{answer}");
    }
    let _ = s.close().await;
    let log: Vec<String> = w
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "lastmile::child" && v["fields"]["server"] == "leaky")
        .map(|v| {
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // The lines were logged (so the checks below look at something), redacted.
    let joined = log.join("\n");
    for name in ["PEM_KEY", "PLAIN_KEY"] {
        assert!(joined.contains(&format!("[REDACTED:{name}]")), "{joined}");
    }
    assert!(joined.contains("-- end of base64"), "{joined}");
    let concatenated = log.concat();
    for (what, secret) in [("PEM_KEY", pem.as_str()), ("PLAIN_KEY", plain.as_str())] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(
            !concatenated.contains(&b64),
            "{what}'s base64 is in the log's lines, joined:\n{joined}"
        );
    }
    for piece in [&body1, &body2, &plain] {
        assert!(
            !joined.contains(piece.as_str()),
            "{piece} is in the log:\n{joined}"
        );
    }
    assert!(!w.logs().contains(&body1) && !w.logs().contains(&plain));
}

/// Found in review: the tool name of a refused call and the method of a request lastmile does
/// not route went into the audit row as the client wrote them. The client already holds what it
/// sends, but the audit database holds no secret, whoever wrote it.
#[tokio::test]
async fn a_secret_as_a_tool_name_or_a_method_reaches_no_audit_row() {
    let w = World::new();
    let value = canary("toolname");
    w.set_secret("NAME_KEY", &value).await;
    w.fixture("fx", &[], "secrets = [\"NAME_KEY\"]");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let _ = raw.request(2, "tools/list", json!({})).await;
    let (answer, _) = raw
        .request(3, "tools/call", json!({ "name": value, "arguments": {} }))
        .await;
    assert!(answer.get("error").is_some(), "{answer}");
    let (answer, _) = raw.request(4, &format!("vendor/{value}"), json!({})).await;
    assert!(answer.get("error").is_some(), "{answer}");
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    let rows: Vec<String> = rows.iter().map(Value::to_string).collect();
    assert!(
        rows.iter()
            .filter(|r| r.contains("[REDACTED:NAME_KEY]"))
            .count()
            >= 2,
        "the two refusals are not both in the audit log: {rows:#?}"
    );
    for row in &rows {
        assert_clean("an audit row", row, &value);
    }
}

/// Found in review: a `tools/call`, `prompts/get` or `resources/read` that was malformed, or a
/// retry with a forged requestState, was answered before the gate: never rate limited (each
/// forged retry wrote a denied row, so the audit log could be flooded) and a malformed one left
/// no row at all. The gate now comes first for every one of them, and each is recorded.
#[tokio::test]
async fn over_the_rate_limit_malformed_requests_and_forged_retries_are_limited_and_recorded() {
    let w = World::new();
    w.require_auth(
        "[rate_limit]\nbase_per_minute = 1\nreads_per_minute = 1\nburst_multiplier = 1.0\n",
    )
    .await;
    w.fixture("fx", &[], "");
    let token = w.token("mallory", "user").await;
    let mut raw = RawClient::start_with(&w, |c| {
        c.env("LASTMILE_TOKEN", &token);
    });
    raw.initialize("2025-11-25").await;
    // Under the limit a malformed request is refused as such, and recorded.
    let (malformed, _) = raw
        .request(2, "tools/call", json!({ "arguments": {} }))
        .await;
    assert_eq!(malformed["error"]["code"], -32602, "{malformed}");
    let (malformed, _) = raw.request(3, "resources/read", json!({})).await;
    assert_eq!(malformed["error"]["code"], -32602, "{malformed}");
    // Both buckets are now empty.
    let echo = json!({ "name": "fx__echo", "arguments": { "text": "x" } });
    let (limited, _) = raw.request(4, "tools/call", echo.clone()).await;
    assert_eq!(limited["error"]["code"], -32029, "{limited}");
    let mut forged = echo.clone();
    forged["requestState"] = json!(format!("lm1.{:032x}.9999999999.00", 7));
    let over: Vec<(&str, Value)> = vec![
        ("tools/call", forged),
        ("tools/call", json!({ "arguments": {} })),
        ("tools/call", json!(null)),
        ("prompts/get", json!({})),
        (
            "resources/read",
            json!({ "uri": "fixture://fx/readme", "requestState": "lm1.00.1.00" }),
        ),
    ];
    for (id, (method, params)) in (10u64..).zip(over) {
        let (answer, _) = raw.request(id, method, params.clone()).await;
        assert_eq!(
            answer["error"]["code"], -32029,
            "{method} {params}: {answer}"
        );
    }
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    let status = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
    assert_eq!(status("rate_limited"), 6, "{rows:#?}");
    assert_eq!(status("denied"), 2, "the two malformed requests: {rows:#?}");
}
