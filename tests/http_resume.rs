//! Resumable event streams over HTTP: a client whose connection dropped comes back with
//! `Last-Event-ID` and gets what it missed, then the rest; a stream nobody comes back for has its
//! request cancelled; nobody else can take a stream over.

use serde_json::{Value, json};

use crate::http_util::*;
use crate::util::*;

fn get_stream(server: &HttpServer, session: &str) -> Req {
    server
        .request("GET", "/mcp")
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
}

/// POST `message` on `session`, answered as an event stream.
fn post_stream(server: &HttpServer, session: &str, message: &Value) -> Req {
    server
        .request("POST", "/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string())
}

/// One fixture `alpha` behind `serve --http`, an open 2025 session on it, and the file the
/// session's gated calls wait for.
struct Rig {
    w: World,
    gate: std::path::PathBuf,
    server: HttpServer,
    session: String,
}

async fn rig() -> Rig {
    let w = World::new();
    let gate = w.path("answer.gate");
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[]).await;
    Rig {
        w,
        gate,
        server,
        session,
    }
}

/// `alpha__progress` with `steps` steps and a progress token, answering once `gate` exists.
fn gated_call(id: u64, steps: u64, gate: &std::path::Path, token: Value) -> Value {
    request(
        id,
        "tools/call",
        json!({"name": "alpha__progress",
               "arguments": {"steps": steps, "until": gate.to_str().unwrap()},
               "_meta": {"progressToken": token}}),
    )
}

#[tokio::test]
async fn a_dropped_request_stream_is_resumed_with_last_event_id() {
    let Rig {
        w,
        gate,
        server,
        session,
    } = rig().await;
    let call = gated_call(7, 2, &gate, json!("mine"));
    let mut first = post_stream(&server, &session, &call).open().await;
    assert_eq!(first.status, 200);
    // 2025-11-25: the stream opens with an id and no message.
    let (primed, data) = first.next_event().await.expect("a priming event");
    let primed = primed.expect("the priming event has an id");
    assert!(data.is_none(), "{data:?}");
    // The connection drops before the answer (the tool waits for the gate).
    drop(first);

    let mut resumed = get_stream(&server, &session)
        .header("last-event-id", &primed)
        .open()
        .await;
    assert_eq!(resumed.status, 200);
    std::fs::write(&gate, "go").unwrap();
    let mut ids = Vec::new();
    let mut messages = Vec::new();
    while let Some((id, data)) = resumed.next_event().await {
        ids.push(id.expect("every event has an id"));
        let data = data.expect("a message");
        let done = data.get("id").is_some();
        messages.push(data);
        if done {
            break;
        }
    }
    // What came while nobody read (both steps), then the answer: in order, once each, under the
    // client's own token and id.
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{messages:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "mine")
    );
    let answer = messages.last().unwrap();
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "done 2 steps");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event came twice: {ids:?}");
    assert!(!ids.contains(&primed));
    drop(resumed);

    // Answered, the stream is over: coming back again is a named 410.
    let again = get_stream(&server, &session)
        .header("last-event-id", &primed)
        .send()
        .await;
    assert_eq!(again.status, 410, "{}", again.body);
    assert!(again.body.contains("stream_gone"), "{}", again.body);
    // Not an id lastmile gave: a named 400.
    let bad = get_stream(&server, &session)
        .header("last-event-id", "../../etc")
        .send()
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("bad_last_event_id"), "{}", bad.body);
    // The call ran once, and was not cancelled.
    let log = server.stop().await;
    assert_eq!(log.matches("cancelled").count(), 0, "{log}");
    let rows = w.audit_export().await;
    let calls: Vec<&Value> = rows.iter().filter(|r| r["tool"] == "progress").collect();
    assert_eq!(calls.len(), 1, "{rows:?}");
    assert_eq!(calls[0]["status"], "ok", "{rows:?}");
}

#[tokio::test]
async fn a_live_stream_is_taken_over_and_the_old_connection_ends() {
    // The world (its folders) lives until the end of the test.
    let Rig {
        w: _world,
        gate,
        server,
        session,
    } = rig().await;
    let call = gated_call(3, 1, &gate, json!(11));
    let mut first = post_stream(&server, &session, &call).open().await;
    let (_, priming) = first.next_event().await.expect("priming");
    assert!(priming.is_none());
    let (id, step) = first.next_event().await.expect("the step");
    assert_eq!(step.unwrap()["method"], "notifications/progress");
    // The client believes its connection died (lastmile has not noticed): it comes back.
    let mut second = get_stream(&server, &session)
        .header("last-event-id", id.as_deref().unwrap())
        .open()
        .await;
    assert_eq!(second.status, 200);
    // The old connection ends without the answer; the new one gets it, and nothing before it.
    assert!(first.next_event().await.is_none());
    std::fs::write(&gate, "go").unwrap();
    let (_, answer) = second.next_event().await.expect("the answer");
    let answer = answer.unwrap();
    assert_eq!(answer["id"], 3, "{answer}");
    assert_eq!(answer["result"]["content"][0]["text"], "done 1 steps");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_nobody_comes_back_for_has_its_request_cancelled_after_the_window() {
    let w = World::new();
    w.profile_file("[auth]\nmode = \"disabled\"\n[http]\nresume_window = \"200ms\"\n");
    let cancels = w.path("cancel.log");
    w.fixture("alpha", &["--cancel-log", cancels.to_str().unwrap()], "");
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[]).await;
    let call = request(
        4,
        "tools/call",
        json!({"name": "alpha__sleep", "arguments": {"ms": 60000}, "_meta": {"progressToken": "t"}}),
    );
    let mut first = post_stream(&server, &session, &call).open().await;
    assert!(first.next_event().await.is_some());
    drop(first);
    assert!(
        eventually(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&cancels).is_ok_and(|l| !l.is_empty())
        })
        .await,
        "the abandoned call never reached its child as cancelled"
    );
    // Cancelled because its window passed, not because the connection dropped.
    assert!(w.logs().contains("request stream parked"), "{}", w.logs());
    server.stop().await;
    let rows = w.audit_export().await;
    assert!(
        rows.iter()
            .any(|r| r["tool"] == "sleep" && r["status"] == "cancelled"),
        "{rows:?}"
    );
}

#[tokio::test]
async fn another_identity_cannot_take_a_stream_over() {
    let w = World::new();
    w.require_auth("").await;
    let gate = w.path("answer.gate");
    w.fixture("alpha", &[], "");
    let alice = w.token("alice", "user").await;
    let bob = w.token("bob", "user").await;
    let server = HttpServer::start(&w).await;
    let as_alice = format!("Bearer {alice}");
    let session = open_session(&server, &[("authorization", &as_alice)]).await;
    let call = gated_call(5, 1, &gate, json!("secret-progress"));
    let mut first = post_stream(&server, &session, &call)
        .header("authorization", &as_alice)
        .open()
        .await;
    let (primed, _) = first.next_event().await.expect("priming");
    let primed = primed.unwrap();
    drop(first);
    // Bob names Alice's session and her stream's event id: refused before any stream.
    let stolen = get_stream(&server, &session)
        .header("authorization", &format!("Bearer {bob}"))
        .header("last-event-id", &primed)
        .send()
        .await;
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    assert!(!stolen.raw.contains("secret-progress"), "{}", stolen.raw);
    // Alice still can.
    let mut back = get_stream(&server, &session)
        .header("authorization", &as_alice)
        .header("last-event-id", &primed)
        .open()
        .await;
    std::fs::write(&gate, "go").unwrap();
    let mut answer = None;
    while let Some((_, data)) = back.next_event().await {
        if let Some(d) = data.filter(|d| d.get("id").is_some()) {
            answer = Some(d);
            break;
        }
    }
    assert_eq!(answer.expect("the answer")["id"], 5);
    server.stop().await;
}

#[tokio::test]
async fn a_get_stream_reconnect_gets_what_came_while_it_was_away() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let server = HttpServer::start(&w).await;
    let session = open_session(&server, &[]).await;
    let log = |n: u32| {
        request(
            n.into(),
            "tools/call",
            json!({"name": "alpha__log", "arguments": {"message": format!("note {n}"), "level": "warning"}}),
        )
    };
    let with = [("mcp-session-id", session.as_str())];
    let mut stream = get_stream(&server, &session).open().await;
    let (primed, none) = stream.next_event().await.expect("priming");
    assert!(primed.is_some() && none.is_none());
    assert_eq!(server.post(&log(1), &with).await.status, 200);
    let (seen, note) = stream.next_event().await.expect("note 1");
    assert!(note.unwrap().to_string().contains("note 1"));
    drop(stream);
    // Two notes while no GET stream is open.
    assert_eq!(server.post(&log(2), &with).await.status, 200);
    assert_eq!(server.post(&log(3), &with).await.status, 200);
    let mut back = get_stream(&server, &session)
        .header("last-event-id", seen.as_deref().unwrap())
        .open()
        .await;
    let mut heard = Vec::new();
    while heard.len() < 2 {
        let (_, data) = back.next_event().await.expect("the missed notes");
        heard.push(data.unwrap().to_string());
    }
    assert!(
        heard[0].contains("note 2") && heard[1].contains("note 3"),
        "{heard:?}"
    );
    // Then live again.
    assert_eq!(server.post(&log(4), &with).await.status, 200);
    let (_, live) = back.next_event().await.expect("note 4");
    assert!(live.unwrap().to_string().contains("note 4"));
    server.stop().await;
}

#[tokio::test]
async fn a_session_ending_while_an_answered_stream_waits_ends_it_cleanly() {
    let Rig {
        w,
        gate,
        server,
        session,
    } = rig().await;
    let call = gated_call(8, 1, &gate, json!("p"));
    let mut first = post_stream(&server, &session, &call).open().await;
    assert!(first.next_event().await.is_some());
    drop(first);
    // The answer arrives while nobody reads the stream (its audit row says it has).
    std::fs::write(&gate, "go").unwrap();
    let mut answered = false;
    for _ in 0..200 {
        let rows = w.audit_export().await;
        if rows
            .iter()
            .any(|r| r["tool"] == "progress" && r["status"] == "ok")
        {
            answered = true;
            break;
        }
    }
    assert!(answered, "the call never finished");
    // The session ends with the answered stream still waiting for its client.
    let r = server
        .request("DELETE", "/mcp")
        .header("mcp-session-id", &session)
        .send()
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    let log = server.stop().await;
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn a_dropped_stream_is_parked_and_its_request_keeps_running() {
    let Rig {
        w,
        gate,
        server,
        session,
    } = rig().await;
    let mut first = post_stream(&server, &session, &gated_call(9, 1, &gate, json!("q")))
        .open()
        .await;
    let (_, priming) = first.next_event().await.expect("priming");
    assert!(priming.is_none());
    let (seen, step) = first.next_event().await.expect("the step");
    assert_eq!(step.unwrap()["method"], "notifications/progress");
    // Nothing more is written until the answer: lastmile notices the drop by itself.
    drop(first);
    assert!(
        eventually(std::time::Duration::from_secs(20), || w
            .logs()
            .contains("request stream parked"))
        .await,
        "the dropped stream was never parked: {}",
        w.logs()
    );
    std::fs::write(&gate, "go").unwrap();
    let mut back = get_stream(&server, &session)
        .header("last-event-id", seen.as_deref().unwrap())
        .open()
        .await;
    let (_, answer) = back
        .next_event()
        .await
        .expect("the answer, kept while parked");
    assert_eq!(answer.unwrap()["id"], 9);
    server.stop().await;
}
