//! Start-up, crashes, restarts, hangs and concurrency.

use std::time::Duration;

use serde_json::json;

use crate::util::*;

#[tokio::test]
async fn ten_slow_children_give_one_complete_list() {
    if skipped_here("ten_slow_children_give_one_complete_list") {
        return;
    }
    let w = World::new();
    for i in 0..10 {
        w.fixture(
            &format!("slow{i}"),
            &["--slow-start", "300", "--no-prompts", "--no-resources"],
            "",
        );
    }
    let s = w.serve().await;
    assert_eq!(s.tool_names().await.len(), 10 * FIXTURE_TOOLS);
    s.close().await;
}

#[tokio::test]
async fn a_child_that_misses_its_startup_timeout_joins_later_with_list_changed() {
    if skipped_here("a_child_that_misses_its_startup_timeout_joins_later_with_list_changed") {
        return;
    }
    let w = World::new();
    let marker = w.path("late.marker");
    w.fixture("quick", &[], "");
    w.fixture(
        "late",
        &["--slow-start-once", marker.to_str().unwrap()],
        "startup_timeout = \"300ms\"\nrestart = { backoff = \"50ms\" }",
    );
    let s = w.serve().await;
    let first = s.tool_names().await;
    assert!(first.contains(&"quick__echo".to_string()));
    assert!(!first.iter().any(|n| n.starts_with("late__")), "{first:?}");
    s.recorder
        .wait_for("tools/list_changed", |e| e.get("tools_changed").is_some())
        .await;
    let later = s.tool_names().await;
    assert!(later.contains(&"late__echo".to_string()), "{later:?}");
    s.close().await;
}

#[tokio::test]
async fn a_crashed_child_is_restarted_and_its_tools_return() {
    let w = World::new();
    w.fixture("alpha", &[], "restart = { backoff = \"50ms\" }")
        .fixture("beta", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    let started = std::time::Instant::now();
    let r = s.call("alpha__crash", json!({})).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the crash took {:?} to report",
        started.elapsed()
    );
    assert_eq!(r.is_error, Some(true));
    assert!(text_of(&r).contains("`alpha`"), "{}", text_of(&r));
    // Other servers keep serving meanwhile.
    assert_eq!(
        text_of(&s.call("beta__echo", json!({ "text": "b" })).await.unwrap()),
        "b"
    );
    // It comes back, announced by list_changed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = s.call("alpha__echo", json!({ "text": "back" })).await
            && text_of(&r) == "back"
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alpha never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.recorder
        .wait_for("tools/list_changed", |e| e.get("tools_changed").is_some())
        .await;
    s.close().await;
}

#[tokio::test]
async fn a_call_made_while_its_server_restarts_waits_for_the_restart() {
    let w = World::new();
    let marker = w.path("failed.marker");
    w.fixture("quick", &[], "");
    // The first start fails; the restart is due a second or so later.
    w.fixture(
        "late",
        &["--fail-start-once", marker.to_str().unwrap()],
        "restart = { backoff = \"2s\" }",
    );
    let s = w.serve().await;
    let first = s.tool_names().await;
    assert!(marker.exists(), "the first start never ran");
    assert!(!first.iter().any(|n| n.starts_with("late__")), "{first:?}");
    // Not "unknown tool": the call waits for the restart and is served.
    let r = s
        .call("late__echo", json!({ "text": "waited" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "waited", "{r:?}");
    s.close().await;
}

#[tokio::test]
async fn a_call_to_a_server_that_gave_up_names_the_server_and_why() {
    let w = World::new();
    w.fixture("dead", &["--fail-start"], "restart = { max_tries = 0 }");
    w.fixture("steady", &[], "");
    let s = w.serve().await;
    assert!(!s.tool_names().await.iter().any(|n| n.starts_with("dead__")));
    let r = s.call("dead__echo", json!({ "text": "x" })).await.unwrap();
    assert_eq!(r.is_error, Some(true));
    let text = text_of(&r);
    assert!(text.contains("server `dead` is not running"), "{text}");
    assert!(text.contains("gave up"), "{text}");
    let e = s
        .client()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("dead__greet"))
        .await
        .unwrap_err();
    assert!(
        format!("{e:?}").contains("server `dead` is not running"),
        "{e:?}"
    );
    // A name in no server's namespace is still just unknown.
    let e = s.call("nobody__echo", json!({})).await.unwrap_err();
    assert!(
        format!("{e:?}").contains("unknown tool `nobody__echo`"),
        "{e:?}"
    );
    s.close().await;
    // The first is in the audit log as an error of its server.
    let rows = w.audit_export().await;
    assert!(
        rows.iter()
            .any(|r| r["server"] == "dead" && r["status"] == "error"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn restarts_give_up_after_max_tries_and_the_rest_keep_serving() {
    let w = World::new();
    w.fixture(
        "flaky",
        &["--die-after", "100"],
        "restart = { max_tries = 2, backoff = \"20ms\" }",
    );
    w.fixture("steady", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    assert!(
        eventually(Duration::from_secs(15), || w
            .logs()
            .contains("gave up after 2 restart(s)"))
        .await,
        "no give-up in the log: {}",
        w.logs()
    );
    assert!(
        !s.tool_names()
            .await
            .iter()
            .any(|n| n.starts_with("flaky__"))
    );
    assert_eq!(
        text_of(
            &s.call("steady__echo", json!({ "text": "ok" }))
                .await
                .unwrap()
        ),
        "ok"
    );
    s.close().await;
}

#[tokio::test]
async fn a_stuck_call_times_out_and_the_child_is_told_to_cancel() {
    let w = World::new();
    let log = w.path("cancel.log");
    w.fixture(
        "alpha",
        &["--cancel-log", log.to_str().unwrap()],
        "call_timeout = \"300ms\"",
    );
    let s = w.serve().await;
    let r = s
        .call("alpha__sleep", json!({ "ms": 30000 }))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(
        text_of(&r).contains("did not answer within 300ms"),
        "{}",
        text_of(&r)
    );
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .map(|l| l.contains("call_timeout"))
            .unwrap_or(false))
        .await,
        "the child never saw notifications/cancelled"
    );
    assert_eq!(
        text_of(
            &s.call("alpha__echo", json!({ "text": "fine" }))
                .await
                .unwrap()
        ),
        "fine"
    );
    s.close().await;
}

#[tokio::test]
async fn two_hundred_concurrent_calls_across_three_children() {
    let w = World::new();
    w.fixture("a", &[], "")
        .fixture("b", &[], "")
        .fixture("c", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    let mut calls = Vec::new();
    for i in 0..200 {
        let server = ["a", "b", "c"][i % 3];
        let peer = s.client().peer().clone();
        calls.push(tokio::spawn(async move {
            let mut p = rmcp::model::CallToolRequestParams::new(format!("{server}__echo"));
            p.arguments = Some(as_object(json!({ "text": format!("call {i}") })));
            let r = peer.call_tool(p).await.unwrap();
            (i, server, r)
        }));
    }
    for c in calls {
        let (i, server, r) = c.await.unwrap();
        assert_eq!(text_of(&r), format!("call {i}"));
        assert_eq!(r.meta.unwrap().0["fixture/server"], server);
    }
    s.close().await;
}

#[tokio::test]
async fn a_child_flooding_stderr_is_contained() {
    if skipped_here("a_child_flooding_stderr_is_contained") {
        return;
    }
    let w = World::new();
    // A "server" that floods stderr and never speaks MCP: it fails its start-up without
    // stopping the gateway, and its output does not flood lastmile's own stderr.
    w.server_file(
        "noisy",
        &format!("command = {FIXTURE:?}\nargs = [\"--flood-stderr\"]\nstartup_timeout = \"500ms\"\nrestart = {{ max_tries = 0 }}\ntiers = [\"admin\"]\n"),
    );
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    assert_eq!(
        text_of(
            &s.call("alpha__echo", json!({ "text": "calm" }))
                .await
                .unwrap()
        ),
        "calm"
    );
    let stderr = s.close().await;
    assert!(
        stderr.matches("flood\n").count() < 10,
        "child stderr leaked onto lastmile's stderr"
    );
    // The log holds a bounded sample and a note of what was dropped.
    let logs = w.logs();
    assert!(
        logs.contains("lines dropped from the log"),
        "no flood summary in the log"
    );
    assert!(
        logs.matches("\"flood\"").count() <= 3 * 200,
        "the flood was not rate-limited"
    );
}

// Linux only: the fixture freezes itself with SIGSTOP and the test watches /proc; Windows has no
// safe way to suspend a process.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_child_that_stops_reading_cannot_block_the_others() {
    let w = World::new();
    let pidfile = w.path("frozen.pid");
    w.fixture(
        "frozen",
        &["--pid-file", pidfile.to_str().unwrap()],
        "call_timeout = \"300ms\"",
    )
    .fixture("alive", &[], "");
    let s = w.serve().await;
    assert_eq!(
        text_of(&s.call("frozen__freeze", json!({})).await.unwrap()),
        "freezing"
    );
    let pid = read_pids(&pidfile).await[0];
    assert!(
        eventually(Duration::from_secs(5), || process_state(pid) == "T").await,
        "the child never stopped"
    );
    // Flood the stopped child with more than a pipe buffer's worth of requests.
    let big = "x".repeat(64 * 1024);
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let peer = s.client().peer().clone();
        let text = big.clone();
        stuck.push(tokio::spawn(async move {
            let mut p = rmcp::model::CallToolRequestParams::new("frozen__echo");
            p.arguments = Some(as_object(json!({ "text": text })));
            peer.call_tool(p).await
        }));
    }
    // The other child answers promptly meanwhile.
    for i in 0..20 {
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            s.call("alive__echo", json!({ "text": format!("ok {i}") })),
        )
        .await
        .expect("the healthy child was blocked by the stopped one")
        .unwrap();
        assert_eq!(text_of(&r), format!("ok {i}"));
    }
    // Every call to the stopped child ends with a timeout, not a hang.
    for c in stuck {
        let r = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("a stuck call hung")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.is_error,
            Some(true),
            "{}",
            &text_of(&r)[..text_of(&r).len().min(200)]
        );
    }
    let lastmile = s.pid;
    s.close().await;
    assert!(
        eventually(Duration::from_secs(10), || !alive(lastmile)).await,
        "lastmile hung on a stopped child"
    );
}
