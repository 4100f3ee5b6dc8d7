//! The canary: a random secret delivered to a child that tries every way to hand it back. It must
//! appear in the child's environment and nowhere else — not in what the client receives, not on
//! lastmile's stdout or stderr, not in the log folder or the audit database (nor its WAL, nor an
//! export), not in any process's argv.

use serde_json::json;

use crate::util::*;

fn canary() -> String {
    let secret = lastmile::secrets::random_secret(24).unwrap();
    use secrecy::ExposeSecret;
    format!(
        "canary{}",
        secret
            .expose_secret()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
    )
}

#[tokio::test]
async fn the_canary_reaches_the_child_environment_and_nowhere_else() {
    let w = World::new();
    let value = canary();
    w.set_secret("MY_CANARY", &value).await;
    w.fixture(
        "leaky",
        &[],
        "secrets = [\"MY_CANARY\", { env = \"RENAMED_CANARY\", from = \"MY_CANARY\" }]",
    );
    let s = w.serve().await;
    let mut seen = Vec::new();

    // It is in the child's environment, under both names (proved by hash, not by value).
    use sha2::Digest as _;
    let expected: String = sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for var in ["MY_CANARY", "RENAMED_CANARY"] {
        let r = s
            .call("leaky__env_sha256", json!({ "name": var }))
            .await
            .unwrap();
        assert_eq!(text_of(&r), expected, "{var} not delivered");
    }
    let env = s.call("leaky__env", json!({})).await.unwrap();
    let vars = env.structured_content.clone().unwrap();
    assert_eq!(
        vars["env"]["LASTMILE_CUSTOM_SECRETS"],
        "MY_CANARY,RENAMED_CANARY"
    );
    assert_eq!(vars["env"]["MY_CANARY"], "[REDACTED:MY_CANARY]");
    seen.push(serde_json::to_string(&env).unwrap());

    // The child hands it back in every way it can: stderr, text, base64, percent-encoding,
    // structured content, a tool error, a JSON-RPC error; the model passes it in arguments.
    let leak = s
        .call("leaky__leak", json!({ "name": "MY_CANARY" }))
        .await
        .unwrap();
    let leaked = serde_json::to_string(&leak).unwrap();
    assert!(leaked.contains("[REDACTED:MY_CANARY]"), "{leaked}");
    seen.push(leaked);
    let err = s
        .call("leaky__leak_error", json!({ "name": "MY_CANARY" }))
        .await
        .unwrap_err();
    seen.push(format!("{err:?}"));
    let echoed = s
        .call(
            "leaky__echo",
            json!({ "text": format!("the model says {value}") }),
        )
        .await
        .unwrap();
    seen.push(serde_json::to_string(&echoed).unwrap());
    s.client().peer().notify_roots_list_changed().await.unwrap();

    // No process's argv holds it (read while everything is running).
    let lines = command_lines();
    assert!(lines.len() > 2, "no process list to check: {lines:?}");
    for (process, cmdline) in lines {
        assert!(
            !cmdline.contains(&value),
            "argv of {process} holds the canary"
        );
    }
    let stderr = s.close().await;
    for (what, text) in seen
        .iter()
        .map(|t| ("a message to the client", t.as_str()))
        .chain([("lastmile's stderr", stderr.as_str())])
    {
        assert!(
            !text.contains(&value),
            "the canary leaked into {what}: {text}"
        );
    }
    // The log folder, the audit database, its WAL and checkpoint: every byte of the data folder.
    let everything = read_tree(&w.data_dir());
    assert!(
        everything.contains("fixture: my secret is [REDACTED:MY_CANARY]"),
        "the child's stderr line was not logged, redacted"
    );
    assert!(
        !everything.contains(&value),
        "the canary is in the data folder"
    );
    let export = w.run(&["audit", "export", "--jsonl"]).await;
    let export = String::from_utf8_lossy(&export.stdout);
    assert!(export.contains("leak"), "{export}");
    assert!(
        !export.contains(&value),
        "the canary is in the audit export"
    );
}

#[tokio::test]
async fn a_server_missing_a_secret_does_not_start_and_says_which() {
    let w = World::new();
    w.fixture("needy", &[], "secrets = [\"ABSENT_KEY\"]")
        .fixture("fine", &[], "");
    let s = w.serve().await;
    let names = s.tool_names().await;
    assert!(names.iter().all(|n| n.starts_with("fine__")), "{names:?}");
    let stderr = s.close().await;
    assert!(
        stderr.contains("needy") && stderr.contains("ABSENT_KEY"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_changed_secret_reaches_the_next_start() {
    let w = World::new();
    w.set_secret("ROTATING_KEY", "first-value-000111").await;
    w.fixture("rot", &[], "secrets = [\"ROTATING_KEY\"]");
    let hash = |v: &str| -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(v.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let s = w.serve().await;
    let r = s
        .call("rot__env_sha256", json!({ "name": "ROTATING_KEY" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), hash("first-value-000111"));
    s.close().await;
    w.set_secret("ROTATING_KEY", "second-value-222333").await;
    let s = w.serve().await;
    let r = s
        .call("rot__env_sha256", json!({ "name": "ROTATING_KEY" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), hash("second-value-222333"));
    s.close().await;
}
