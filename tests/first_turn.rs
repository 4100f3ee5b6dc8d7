//! Tools on the first turn: `tools/list` never waits for the slowest child. With a catalog
//! cache it answers at once with every cached tool while children start; without one it answers
//! after a short grace with the servers that are up and announces the rest.

use serde_json::{Value, json};

use crate::util::*;

fn names(answer: &Value) -> Vec<String> {
    answer["result"]["tools"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn the_first_list_offers_cached_tools_of_a_server_that_has_not_started() {
    let w = World::new();
    let gate_file = w.path("let-it-start");
    w.fixture("fast", &[], "");
    w.fixture(
        "gated",
        &["--wait-for", gate_file.to_str().unwrap()],
        "startup_timeout = \"60s\"",
    );

    // No cache yet: the list comes after the grace with the fast server only, and the gated
    // one is announced when it comes up.
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let (first, _) = raw.request(2, "tools/list", json!({})).await;
    let listed = names(&first);
    assert!(listed.contains(&"fast__echo".to_string()), "{listed:?}");
    assert!(
        !listed.iter().any(|n| n.starts_with("gated__")),
        "{listed:?}"
    );
    std::fs::write(&gate_file, "go").unwrap();
    let mut announced = false;
    for _ in 0..50 {
        let Some(line) = raw.next_line().await else {
            break;
        };
        if line.contains("notifications/tools/list_changed") {
            announced = true;
            break;
        }
    }
    assert!(announced, "the late server was announced");
    let (second, _) = raw.request(3, "tools/list", json!({})).await;
    assert!(names(&second).contains(&"gated__echo".to_string()));
    assert!(raw.finish().await.success());

    // The cache is private to the user.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = w.data_dir().join("catalogs/gated.json");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }

    // Next session, the gated server cannot start until the file is back — yet its tools are
    // listed at once, from the cache, and a call to one waits for it.
    std::fs::remove_file(&gate_file).unwrap();
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let (cached, _) = raw.request(2, "tools/list", json!({})).await;
    let listed = names(&cached);
    assert!(listed.contains(&"gated__echo".to_string()), "{listed:?}");
    assert!(listed.contains(&"fast__echo".to_string()), "{listed:?}");
    raw.send_line(
        &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "gated__echo", "arguments": {"text": "waited"}}})
        .to_string(),
    )
    .await;
    std::fs::write(&gate_file, "go").unwrap();
    let mut answer = None;
    for _ in 0..50 {
        let Some(line) = raw.next_line().await else {
            break;
        };
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 3 {
            answer = Some(v);
            break;
        }
    }
    let answer = answer.expect("the call was answered once the server came up");
    assert_eq!(answer["result"]["content"][0]["text"], "waited", "{answer}");
    assert!(raw.finish().await.success());
}
