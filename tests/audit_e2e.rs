//! The audit log end to end: every call through `lastmile serve` lands in the database, bound to
//! the session's identity, findable by the execution id the client saw, and nothing acknowledged
//! is lost on shutdown.
use serde_json::json;

use crate::util::*;

fn executions(rows: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    rows.iter()
        .filter(|r| r.get("execution_id").is_some() && r.get("tool").is_some())
        .collect()
}

#[tokio::test]
async fn each_call_is_recorded_under_the_id_the_client_saw() {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = w.token("alice", "user").await;
    let s = w
        .serve_with(|cmd| {
            cmd.env("LASTMILE_TOKEN", &token);
        })
        .await;
    let ok = s
        .call("alpha__echo", json!({ "text": "hi" }))
        .await
        .unwrap();
    let failed = s
        .call("alpha__fail", json!({ "message": "nope" }))
        .await
        .unwrap();
    let _ = s.call("alpha__nothing", json!({})).await.unwrap_err();
    s.close().await;
    let id_of = |r: &rmcp::model::CallToolResult| {
        r.meta.as_ref().unwrap().0[lastmile::gateway::EXECUTION_ID_META]
            .as_str()
            .unwrap()
            .to_string()
    };
    let rows = w.audit_export().await;
    let rows = executions(&rows);
    let find = |id: &str| {
        rows.iter()
            .find(|r| r["execution_id"] == id)
            .copied()
            .unwrap_or_else(|| panic!("no row {id} in {rows:?}"))
    };
    let row = find(&id_of(&ok));
    assert_eq!(row["status"], "ok");
    assert_eq!(row["subject"], "alice");
    assert_eq!(row["tier"], "user");
    assert_eq!(row["server"], "alpha");
    assert_eq!(row["tool"], "echo");
    assert!(row["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(row["session_id"].as_str().is_some_and(|j| !j.is_empty()));
    let row = find(&id_of(&failed));
    assert_eq!(row["status"], "tool_error");
    assert!(
        rows.iter()
            .any(|r| r["status"] == "denied" && r["tool"] == "alpha__nothing"),
        "{rows:?}"
    );
    let verify = w.run(&["audit", "verify"]).await;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    // "What did alice touch?" is one query.
    let q = w
        .run(&["audit", "query", "--subject", "alice", "--json"])
        .await;
    assert!(String::from_utf8_lossy(&q.stdout).contains(&id_of(&ok)));
}

#[tokio::test]
async fn a_thousand_calls_then_eof_give_a_thousand_rows() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    let mut calls = Vec::new();
    for i in 0..1000 {
        let peer = s.client().peer().clone();
        calls.push(tokio::spawn(async move {
            let mut p = rmcp::model::CallToolRequestParams::new("alpha__echo");
            p.arguments = Some(as_object(json!({ "text": format!("n{i}") })));
            peer.call_tool(p).await.unwrap()
        }));
        if calls.len() >= 50 {
            for c in calls.drain(..) {
                c.await.unwrap();
            }
        }
    }
    for c in calls {
        c.await.unwrap();
    }
    s.close().await;
    let rows = w.audit_export().await;
    assert_eq!(
        executions(&rows)
            .iter()
            .filter(|r| r["tool"] == "echo")
            .count(),
        1000
    );
}

// Unix only: a test cannot send Windows' polite stop (a console event) to one windowless process.
#[cfg(unix)]
#[tokio::test]
async fn sigterm_mid_burst_loses_nothing_acknowledged() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let s = w.serve().await;
    s.tool_names().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut calls = Vec::new();
    for i in 0..400 {
        let peer = s.client().peer().clone();
        let tx = tx.clone();
        calls.push(tokio::spawn(async move {
            let mut p = rmcp::model::CallToolRequestParams::new("alpha__echo");
            p.arguments = Some(as_object(json!({ "text": format!("n{i}") })));
            if let Ok(r) = peer.call_tool(p).await {
                let id = r.meta.unwrap().0[lastmile::gateway::EXECUTION_ID_META]
                    .as_str()
                    .unwrap()
                    .to_string();
                let _ = tx.send(id);
            }
        }));
    }
    drop(tx);
    // Once some answers are in, stop lastmile while the rest are in flight.
    let mut acked = Vec::new();
    while acked.len() < 50 {
        acked.push(rx.recv().await.expect("answers"));
    }
    terminate(s.pid);
    while let Some(id) = rx.recv().await {
        acked.push(id);
    }
    for c in calls {
        let _ = c.await;
    }
    assert!(eventually(std::time::Duration::from_secs(10), || !alive(s.pid)).await);
    s.close().await;
    let rows = w.audit_export().await;
    let ids: std::collections::HashSet<&str> = executions(&rows)
        .iter()
        .filter_map(|r| r["execution_id"].as_str())
        .collect();
    for id in &acked {
        assert!(
            ids.contains(id.as_str()),
            "acknowledged execution {id} missing from the audit log"
        );
    }
}

/// A call still in flight when the client goes away is cancelled on the child and recorded as
/// cancelled: the audit log holds every call that was made, answered or not.
#[tokio::test]
async fn a_call_in_flight_when_the_client_leaves_is_recorded_as_cancelled() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = RawClient::start(&w);
    raw.initialize("2025-11-25").await;
    let (listed, _) = raw.request(2, "tools/list", json!({})).await;
    assert!(listed.to_string().contains("alpha__sleep"), "{listed}");
    let call = json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__sleep","arguments":{"ms": 60000}}});
    raw.send_line(&call.to_string()).await;
    // A ping answered after the call was sent: the call has reached the front.
    let (pong, _) = raw.request(4, "ping", json!({})).await;
    assert!(pong.get("result").is_some(), "{pong}");
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    let rows = executions(&rows);
    assert!(
        rows.iter()
            .any(|r| r["tool"] == "sleep" && r["status"] == "cancelled"),
        "{rows:?}"
    );
}
