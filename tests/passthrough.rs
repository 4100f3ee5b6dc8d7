//! All of MCP passes through: notifications both ways, server-to-client requests, capabilities,
//! protocol versions.

#![allow(deprecated)] // logging, sampling, roots and subscriptions are deprecated in rmcp 3.x

use std::time::Duration;

use rmcp::model::*;
use rmcp::service::PeerRequestOptions;
use serde_json::json;

use crate::util::*;

fn two_fixtures(args: &[&str]) -> World {
    let w = World::new();
    w.fixture("alpha", args, "").fixture("beta", args, "");
    w
}

#[tokio::test]
async fn progress_reaches_the_client_with_its_own_token() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    s.tool_names().await;
    let mut params = CallToolRequestParams::new("alpha__progress");
    params.arguments = Some(as_object(json!({ "steps": 3 })));
    let handle = s
        .client()
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let token = serde_json::to_value(&handle.progress_token).unwrap();
    let answer = handle.await_response().await.unwrap();
    assert!(format!("{answer:?}").contains("done 3 steps"));
    for step in 1..=3 {
        s.recorder
            .wait_for(&format!("progress {step}"), |e| {
                e["progress"]["progressToken"] == token
                    && e["progress"]["progress"] == json!(step as f64)
            })
            .await;
    }
    let progress: Vec<_> = s
        .recorder
        .events()
        .into_iter()
        .filter(|e| e.get("progress").is_some())
        .collect();
    assert_eq!(progress.len(), 3, "{progress:?}");
    s.close().await;
}

#[tokio::test]
async fn log_messages_arrive_tagged_with_the_server() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    s.call(
        "beta__log",
        json!({ "message": "hello log", "level": "warning" }),
    )
    .await
    .unwrap();
    let e = s
        .recorder
        .wait_for("a log message", |e| e["log"]["data"] == "hello log")
        .await;
    assert_eq!(e["log"]["logger"], "beta/fixture-logger");
    assert_eq!(e["log"]["level"], "warning");
    s.close().await;
}

#[tokio::test]
async fn set_level_reaches_every_child() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    s.tool_names().await;
    s.client()
        .peer()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .unwrap();
    for tool in ["alpha__level", "beta__level"] {
        assert_eq!(
            text_of(&s.call(tool, json!({})).await.unwrap()),
            "debug",
            "{tool}"
        );
    }
    s.close().await;
}

#[tokio::test]
async fn a_child_list_change_is_refreshed_and_reemitted() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    assert!(!s.tool_names().await.contains(&"alpha__fresh".to_string()));
    s.call("alpha__add_tool", json!({ "name": "fresh" }))
        .await
        .unwrap();
    s.recorder
        .wait_for("tools/list_changed", |e| e.get("tools_changed").is_some())
        .await;
    assert!(s.tool_names().await.contains(&"alpha__fresh".to_string()));
    assert_eq!(
        text_of(
            &s.call("alpha__fresh", json!({ "text": "new" }))
                .await
                .unwrap()
        ),
        "fresh: new"
    );
    s.close().await;
}

#[tokio::test]
async fn resource_subscriptions_route_and_updates_arrive() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    s.tool_names().await;
    s.client()
        .peer()
        .subscribe(SubscribeRequestParams::new("fixture://beta/readme"))
        .await
        .unwrap();
    let r = s
        .call("beta__touch", json!({ "uri": "fixture://beta/readme" }))
        .await
        .unwrap();
    assert!(text_of(&r).contains("subscribed: true"), "{}", text_of(&r));
    s.recorder
        .wait_for("resources/updated", |e| {
            e["updated"] == "fixture://beta/readme"
        })
        .await;
    s.client()
        .peer()
        .unsubscribe(UnsubscribeRequestParams::new("fixture://beta/readme"))
        .await
        .unwrap();
    let r = s
        .call("beta__touch", json!({ "uri": "fixture://beta/readme" }))
        .await
        .unwrap();
    assert!(text_of(&r).contains("subscribed: false"), "{}", text_of(&r));
    s.close().await;
}

#[tokio::test]
async fn completion_is_routed_to_the_prompt_owner() {
    let w = two_fixtures(&[]);
    let s = w.serve().await;
    s.tool_names().await;
    let ok = s
        .client()
        .peer()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("alpha__greet"),
            ArgumentInfo::new("name", "A"),
        ))
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let err = s
        .client()
        .peer()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("nobody__greet"),
            ArgumentInfo::new("name", "A"),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown prompt"), "{err}");
    s.close().await;
}

#[tokio::test]
async fn sampling_elicitation_and_roots_go_up_and_answers_come_back() {
    let w = World::new();
    let caps = w.path("caps.json");
    w.fixture("alpha", &["--caps-file", caps.to_str().unwrap()], "")
        .fixture("beta", &[], "");
    let s = w.serve_as(Recorder::capable(), |_| {}).await;
    let r = s
        .call("alpha__sample", json!({ "prompt": "what is 2+2" }))
        .await
        .unwrap();
    assert!(
        text_of(&r).contains("sampled for") && text_of(&r).contains("what is 2+2"),
        "{}",
        text_of(&r)
    );
    let r = s
        .call("beta__elicit", json!({ "message": "ok?" }))
        .await
        .unwrap();
    assert!(
        text_of(&r).contains("\"accept\"") && text_of(&r).contains("yes"),
        "{}",
        text_of(&r)
    );
    let r = s.call("alpha__roots", json!({})).await.unwrap();
    assert_eq!(text_of(&r), "roots: file:///test/root");
    // The child was initialized with exactly the client's capabilities.
    let declared: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&caps).unwrap()).unwrap();
    for c in ["roots", "sampling", "elicitation"] {
        assert!(declared.get(c).is_some(), "{c} missing from {declared}");
    }
    // roots/list_changed reaches the children.
    s.client().peer().notify_roots_list_changed().await.unwrap();
    s.close().await;
}

#[tokio::test]
async fn answers_never_cross_between_children() {
    let w = two_fixtures(&[]);
    let s = w.serve_as(Recorder::capable(), |_| {}).await;
    s.tool_names().await;
    let mut calls = Vec::new();
    for i in 0..20 {
        for server in ["alpha", "beta"] {
            let peer = s.client().peer().clone();
            let prompt = format!("<{server}-{i}>");
            calls.push(tokio::spawn(async move {
                let mut p = CallToolRequestParams::new(format!("{server}__sample"));
                p.arguments = Some(as_object(json!({ "prompt": prompt })));
                let r = peer.call_tool(p).await.unwrap();
                (prompt, text_of(&r))
            }));
        }
    }
    for c in calls {
        let (prompt, text) = c.await.unwrap();
        assert!(text.contains(&prompt), "{prompt} got {text}");
    }
    s.close().await;
}

#[tokio::test]
async fn a_client_without_a_capability_gets_children_that_do_not_see_it() {
    let w = World::new();
    let caps = w.path("caps.json");
    w.fixture("alpha", &["--caps-file", caps.to_str().unwrap()], "");
    let s = w.serve().await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        s.call("alpha__sample", json!({ "prompt": "x" })),
    )
    .await
    .expect("no hang")
    .unwrap();
    assert_eq!(r.is_error, Some(true));
    let r = s.call("alpha__roots", json!({})).await.unwrap();
    assert_eq!(r.is_error, Some(true), "{}", text_of(&r));
    let declared: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&caps).unwrap()).unwrap();
    for c in ["roots", "sampling", "elicitation"] {
        assert!(declared.get(c).is_none(), "{c} leaked into {declared}");
    }
    s.close().await;
}

#[tokio::test]
async fn a_client_cancellation_reaches_the_child() {
    let w = World::new();
    let log = w.path("cancel.log");
    w.fixture("alpha", &["--cancel-log", log.to_str().unwrap()], "");
    let s = w.serve().await;
    s.tool_names().await;
    let mut params = CallToolRequestParams::new("alpha__sleep");
    params.arguments = Some(as_object(json!({ "ms": 30000 })));
    let handle = s
        .client()
        .peer()
        .send_request_with_option(
            ClientRequest::CallToolRequest(CallToolRequest::new(params)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let id = handle.id.clone();
    // Cancel once the child is working on it (it says so on stderr, which lands in the log).
    assert!(
        eventually(Duration::from_secs(10), || w
            .logs()
            .contains("sleeping 30000 ms"))
        .await,
        "the call never reached the child"
    );
    s.client()
        .peer()
        .notify_cancelled(CancelledNotificationParam::new(
            Some(id),
            Some("user pressed stop".into()),
        ))
        .await
        .unwrap();
    drop(handle);
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .map(|l| !l.trim().is_empty())
            .unwrap_or(false))
        .await,
        "the child never saw notifications/cancelled"
    );
    // The gateway keeps serving.
    assert_eq!(
        text_of(
            &s.call("alpha__echo", json!({ "text": "after" }))
                .await
                .unwrap()
        ),
        "after"
    );
    s.close().await;
}

#[tokio::test]
async fn an_old_protocol_child_behind_a_new_protocol_client() {
    let w = World::new();
    w.fixture("old", &["--protocol", "2024-11-05"], "");
    let s = w.serve().await;
    let r = s
        .call("old__echo", json!({ "text": "across versions" }))
        .await
        .unwrap();
    assert_eq!(text_of(&r), "across versions");
    s.close().await;
}

#[tokio::test]
async fn an_old_protocol_client_in_front_of_a_new_child() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = RawClient::start(&w);
    let first = raw.initialize("2024-11-05").await;
    assert!(
        first.contains("\"protocolVersion\":\"2024-11-05\""),
        "{first}"
    );
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"text":"old client"}}});
    raw.send_line(&call.to_string()).await;
    let answer = raw.next_line().await.expect("an answer");
    assert!(
        answer.contains("old client") && answer.contains("\"id\":2"),
        "{answer}"
    );
    raw.finish().await;
}

#[tokio::test]
async fn a_2026_07_28_client_without_initialize() {
    use rmcp::service::{ClientLifecycleMode, ClientServiceExt};
    let w = World::new();
    w.fixture("alpha", &[], "");
    // 2026-07-28 is offered once `alpha` is known not to ask the client for anything: from a
    // session before this one.
    let s = w.serve().await;
    s.tool_names().await;
    s.close().await;
    let (transport, _) = rmcp::transport::TokioChildProcess::builder(w.command(&["serve"]))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = Recorder::default()
        .serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover handshake");
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "alpha__echo"));
    let mut p = CallToolRequestParams::new("alpha__echo");
    p.arguments = Some(as_object(json!({ "text": "new protocol" })));
    let r = client.call_tool(p).await.unwrap();
    assert_eq!(text_of(&r), "new protocol");
    let _ = client.cancel().await;
}
