//! Tasks through lastmile, tried as an attacker would: a tool task of either generation runs to
//! its end under lastmile's own task id, its result and status reach the client scrubbed, every
//! `tasks/*` request is gated and audited, and a task id lastmile did not hand to this session —
//! forged, the child's own, another session's — is unknown and never reaches the child.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

fn canary() -> String {
    use secrecy::ExposeSecret;
    let secret = lastmile::secrets::random_secret(18).unwrap();
    let tail: String = secret
        .expose_secret()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("taskkey{tail}")
}

/// A server `jobs` running the task fixture; returns the file where it logs each `tasks/*`
/// request it receives (`METHOD CHILD_TASK_ID`).
fn task_server(w: &World, extra: &str) -> PathBuf {
    let log = w.path("tasks.log");
    w.server_file(
        "jobs",
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--tasks\", {:?}]\ntiers = [\"admin\", \"user\", \"service\", \"a2a\", \"mcp\", \"anonymous\"]\n{extra}\n",
            log.to_string_lossy()
        ),
    );
    log
}

fn child_log(log: &PathBuf) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

/// What the client saw, line by line.
#[derive(Default)]
struct Transcript(Vec<String>);

impl Transcript {
    fn text(&self) -> String {
        self.0.join("\n")
    }

    fn values(&self) -> Vec<Value> {
        self.0
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect()
    }
}

async fn ask(raw: &mut RawClient, seen: &mut Transcript, id: u64, method: &str, p: Value) -> Value {
    let (answer, lines) = raw.request(id, method, p).await;
    seen.0.extend(lines);
    answer
}

/// Read until a line satisfies `pred` (notifications travel apart from answers).
async fn read_until(raw: &mut RawClient, seen: &mut Transcript, pred: impl Fn(&Value) -> bool) {
    if seen.values().iter().any(&pred) {
        return;
    }
    loop {
        let line = raw
            .next_line()
            .await
            .unwrap_or_else(|| panic!("the awaited line never came; saw {}", seen.text()));
        let v: Value = serde_json::from_str(&line).expect("JSON lines");
        seen.0.push(line);
        if pred(&v) {
            return;
        }
    }
}

async fn audit_rows(w: &World) -> Vec<Value> {
    let out = w.run(&["audit", "query", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array().unwrap().clone()
}

fn assert_lastmile_id(id: &str) {
    assert!(id.starts_with("lmt-"), "not lastmile's own task id: {id}");
    assert!(id.len() >= 4 + 32, "too short to be unguessable: {id}");
    assert!(!id.contains("task-"), "the child's id shows through: {id}");
}

#[tokio::test]
async fn a_2026_tool_task_completes_under_lastmiles_id_and_its_result_is_redacted() {
    let w = World::new();
    let value = canary();
    w.set_secret("TASK_KEY", &value).await;
    let log = task_server(&w, "secrets = [\"TASK_KEY\"]");
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    seen.0.push(raw.initialize("2025-11-25").await);
    let listed = ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    assert!(listed.to_string().contains("jobs__job"), "{listed}");

    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "hello", "env": "TASK_KEY"}}),
    )
    .await;
    let result = &created["result"];
    assert_eq!(result["resultType"], "task", "{created}");
    let task = result["taskId"].as_str().unwrap().to_string();
    assert_lastmile_id(&task);
    assert!(
        result["statusMessage"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:TASK_KEY]"),
        "{created}"
    );

    // The child's status notification reaches the client under lastmile's id, scrubbed.
    read_until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/tasks"
    })
    .await;
    let note = seen
        .values()
        .into_iter()
        .find(|v| v["method"] == "notifications/tasks")
        .unwrap();
    assert_eq!(note["params"]["taskId"], task.as_str(), "{note}");

    let got = ask(&mut raw, &mut seen, 4, "tasks/get", json!({"taskId": task})).await;
    let r = &got["result"];
    assert_eq!(r["taskId"], task.as_str(), "{got}");
    assert_eq!(r["status"], "completed", "{got}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(text, "hello [REDACTED:TASK_KEY]", "{got}");
    // The execution id of the call that made the task rides on its result.
    let execution = created["result"]["_meta"]["lastmile/executionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no execution id on the task: {created}"))
        .to_string();
    assert_eq!(
        r["result"]["_meta"]["lastmile/executionId"],
        execution.as_str()
    );

    let updated = ask(
        &mut raw,
        &mut seen,
        5,
        "tasks/update",
        json!({"taskId": task, "inputResponses": {}}),
    )
    .await;
    assert!(updated.get("result").is_some(), "{updated}");
    assert!(raw.finish().await.success());

    // The child saw its own id; the client never did, nor the secret.
    let child = child_log(&log);
    assert!(child.contains("tasks/get task-1"), "{child}");
    assert!(child.contains("tasks/update task-1"), "{child}");
    let all = seen.text();
    assert!(!all.contains("task-1"), "{all}");
    assert!(!all.contains(&value), "{all}");

    // One row per tasks/* request, bound to the call's execution id, with lastmile's task id.
    let rows = audit_rows(&w).await;
    for method in ["tasks/get", "tasks/update"] {
        let row = rows
            .iter()
            .find(|r| r["method"] == method)
            .unwrap_or_else(|| panic!("no row for {method}: {rows:?}"));
        assert_eq!(row["execution_id"], execution.as_str(), "{row}");
        assert_eq!(row["tool"], task.as_str(), "{row}");
        assert_eq!(row["server"], "jobs", "{row}");
        assert_eq!(row["status"], "ok", "{row}");
    }
    assert!(!serde_json::to_string(&rows).unwrap().contains(&value));
}

#[tokio::test]
async fn a_2025_task_gives_its_result_and_the_list_holds_only_this_sessions_tasks() {
    let w = World::new();
    let value = canary();
    w.set_secret("TASK_KEY", &value).await;
    let log = task_server(&w, "secrets = [\"TASK_KEY\"]");
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    seen.0.push(raw.initialize("2025-11-25").await);
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "old", "env": "TASK_KEY"}, "task": {"ttl": 60000}}),
    )
    .await;
    let task = created["result"]["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("no 2025 task: {created}"))
        .to_string();
    assert_lastmile_id(&task);
    read_until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/tasks/status"
    })
    .await;
    let note = seen
        .values()
        .into_iter()
        .find(|v| v["method"] == "notifications/tasks/status")
        .unwrap();
    assert_eq!(note["params"]["taskId"], task.as_str(), "{note}");

    let result = ask(
        &mut raw,
        &mut seen,
        4,
        "tasks/result",
        json!({"taskId": task}),
    )
    .await;
    let r = &result["result"];
    assert_eq!(
        r["content"][0]["text"], "old [REDACTED:TASK_KEY]",
        "{result}"
    );
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        task.as_str(),
        "{result}"
    );

    // The child lists somebody else's task too: lastmile shows only this session's.
    let listed = ask(&mut raw, &mut seen, 5, "tasks/list", json!({})).await;
    let tasks = listed["result"]["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    let ids: Vec<&str> = tasks.iter().filter_map(|t| t["taskId"].as_str()).collect();
    assert_eq!(ids, vec![task.as_str()], "{listed}");
    assert!(raw.finish().await.success());

    let all = seen.text();
    assert!(!all.contains("task-0") && !all.contains("task-1"), "{all}");
    assert!(!all.contains("not yours"), "{all}");
    assert!(!all.contains(&value), "{all}");
    let child = child_log(&log);
    assert!(child.contains("tasks/result task-1"), "{child}");
    assert!(child.contains("tasks/list"), "{child}");

    let rows = audit_rows(&w).await;
    let result_row = rows
        .iter()
        .find(|r| r["method"] == "tasks/result")
        .unwrap_or_else(|| panic!("no tasks/result row: {rows:?}"));
    let call_row = rows.iter().find(|r| r["method"] == "tools/call").unwrap();
    assert_eq!(result_row["execution_id"], call_row["execution_id"]);
    assert!(rows.iter().any(|r| r["method"] == "tasks/list"), "{rows:?}");
}

#[tokio::test]
async fn forged_and_child_form_task_ids_are_unknown_and_never_reach_the_child() {
    let w = World::new();
    let log = task_server(&w, "");
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "x", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    assert_lastmile_id(&task);

    // The child's own id (it exists at the child), a forged id of lastmile's form, lastmile's
    // id with one character changed, and a non-string.
    let mut altered = task.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == '0' { '1' } else { '0' });
    let forged = [
        json!("task-1"),
        json!("task-0"),
        json!("lmt-00000000000000000000000000000000"),
        json!(altered),
    ];
    let mut id = 10;
    for method in ["tasks/get", "tasks/cancel", "tasks/result", "tasks/update"] {
        for bad in &forged {
            id += 1;
            let answer = ask(
                &mut raw,
                &mut seen,
                id,
                method,
                json!({"taskId": bad, "inputResponses": {}}),
            )
            .await;
            let e = &answer["error"];
            assert_eq!(e["code"], -32602, "{method} {bad}: {answer}");
            assert!(
                e["message"].as_str().unwrap().contains("unknown task"),
                "{method} {bad}: {answer}"
            );
        }
    }
    let answer = ask(&mut raw, &mut seen, 99, "tasks/get", json!({"taskId": 7})).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    let answer = ask(&mut raw, &mut seen, 100, "tasks/get", json!(5)).await;
    assert_eq!(answer["error"]["code"], -32602, "{answer}");
    assert!(raw.finish().await.success());
    let child = child_log(&log);
    assert!(child.is_empty(), "a refused id reached the child: {child}");

    // Each refusal is recorded, as denied.
    let rows = audit_rows(&w).await;
    let denied = rows
        .iter()
        .filter(|r| r["method"].as_str().unwrap().starts_with("tasks/") && r["status"] == "denied")
        .count();
    assert_eq!(denied, 4 * forged.len() + 2, "{rows:?}");
}

#[tokio::test]
async fn tasks_cancel_reaches_the_child_under_its_own_id() {
    let w = World::new();
    let log = task_server(&w, "");
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "x", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    let cancelled = ask(
        &mut raw,
        &mut seen,
        4,
        "tasks/cancel",
        json!({"taskId": task}),
    )
    .await;
    assert!(cancelled.get("result").is_some(), "{cancelled}");
    assert_eq!(cancelled["result"]["taskId"], task.as_str(), "{cancelled}");
    let got = ask(&mut raw, &mut seen, 5, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(got["result"]["status"], "cancelled", "{got}");
    assert!(raw.finish().await.success());
    let child = child_log(&log);
    assert!(child.contains("tasks/cancel task-1"), "{child}");
    let rows = audit_rows(&w).await;
    assert!(
        rows.iter()
            .any(|r| r["method"] == "tasks/cancel" && r["tool"] == task.as_str()),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_task_of_one_session_is_unknown_to_another() {
    let w = World::new();
    let log = task_server(&w, "");
    let mut a = RawClient::start(&w);
    let mut b = RawClient::start(&w);
    let mut seen = Transcript::default();
    a.initialize("2025-11-25").await;
    b.initialize("2025-11-25").await;
    ask(&mut a, &mut seen, 2, "tools/list", json!({})).await;
    ask(&mut b, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut a,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "mine", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    // B has a task of its own at its child, under the same child id.
    ask(
        &mut b,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "theirs", "hold": true}}),
    )
    .await;
    let before = child_log(&log);
    for (id, method) in [(4, "tasks/get"), (5, "tasks/cancel"), (6, "tasks/result")] {
        let answer = ask(&mut b, &mut seen, id, method, json!({"taskId": task})).await;
        assert_eq!(answer["error"]["code"], -32602, "{method}: {answer}");
    }
    let listed = ask(&mut b, &mut seen, 7, "tasks/list", json!({})).await;
    assert!(!listed.to_string().contains(&task), "{listed}");
    assert_eq!(
        child_log(&log).matches("tasks/get").count(),
        before.matches("tasks/get").count()
    );
    let got = ask(&mut a, &mut seen, 8, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(got["result"]["status"], "working", "{got}");
    assert!(a.finish().await.success());
    assert!(b.finish().await.success());
}

#[tokio::test]
async fn after_the_token_expires_tasks_get_of_a_real_task_is_refused_by_name() {
    let w = World::new();
    w.require_auth("leeway = \"0s\"\n").await;
    let log = task_server(&w, "");
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
    assert!(out.status.success());
    let issued = Instant::now();
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut raw = RawClient::start_with(&w, |c| {
        c.env("LASTMILE_TOKEN", &token);
    });
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "x", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();

    // The token's lifetime is the thing under test: wait it out (exp has one-second resolution).
    let expiry = issued + Duration::from_millis(ttl * 1000 + 1200);
    tokio::time::sleep_until(tokio::time::Instant::from_std(expiry)).await;
    let mut id = 10;
    for method in ["tasks/get", "tasks/cancel", "tasks/result", "tasks/list"] {
        id += 1;
        let answer = ask(&mut raw, &mut seen, id, method, json!({"taskId": task})).await;
        assert_eq!(answer["error"]["code"], -32028, "{method}: {answer}");
        assert_eq!(
            answer["error"]["data"]["reason"], "expired",
            "{method}: {answer}"
        );
    }
    // A malformed request is refused by the gate first, too.
    let answer = ask(&mut raw, &mut seen, 20, "tasks/get", json!(5)).await;
    assert_eq!(answer["error"]["code"], -32028, "{answer}");
    assert!(raw.finish().await.success());
    assert!(child_log(&log).is_empty(), "{}", child_log(&log));
    let rows = audit_rows(&w).await;
    for method in ["tasks/get", "tasks/cancel", "tasks/result", "tasks/list"] {
        assert!(
            rows.iter()
                .any(|r| r["method"] == method && r["status"] == "denied" && r["subject"] == "eve"),
            "no denied row for {method}: {rows:?}"
        );
    }
}

#[tokio::test]
async fn lastmile_offers_tasks_and_children_see_the_extension_only_when_the_client_declared_it() {
    for declared in [true, false] {
        let w = World::new();
        let caps = w.path("caps.json");
        w.fixture("alpha", &["--caps-file", caps.to_str().unwrap()], "");
        let mut raw = RawClient::start(&w);
        let capabilities = if declared {
            json!({"extensions": {"io.modelcontextprotocol/tasks": {}}})
        } else {
            json!({})
        };
        let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":capabilities,"clientInfo":{"name":"raw","version":"0"}}});
        raw.send_line(&init.to_string()).await;
        let answer: Value = serde_json::from_str(&raw.next_line().await.unwrap()).unwrap();
        assert!(
            answer["result"]["capabilities"]["extensions"]
                .get("io.modelcontextprotocol/tasks")
                .is_some(),
            "{answer}"
        );
        raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        let (listed, _) = raw.request(2, "tools/list", json!({})).await;
        assert!(listed.to_string().contains("alpha__echo"), "{listed}");
        assert!(raw.finish().await.success());
        let child: Value = serde_json::from_str(&std::fs::read_to_string(&caps).unwrap()).unwrap();
        let has = child["extensions"]
            .get("io.modelcontextprotocol/tasks")
            .is_some();
        assert_eq!(has, declared, "declared {declared}: the child saw {child}");
    }
}

#[tokio::test]
async fn a_2026_client_gets_complete_results_for_its_task_requests() {
    let w = World::new();
    task_server(&w, "");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-2026", "version": "0"}
    });
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    let discover = ask(
        &mut raw,
        &mut seen,
        1,
        "server/discover",
        json!({"_meta": meta}),
    )
    .await;
    assert!(discover.get("result").is_some(), "{discover}");
    let listed = ask(&mut raw, &mut seen, 2, "tools/list", json!({"_meta": meta})).await;
    assert!(listed.to_string().contains("jobs__job"), "{listed}");
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "new"}, "_meta": meta}),
    )
    .await;
    assert_eq!(created["result"]["resultType"], "task", "{created}");
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    assert_lastmile_id(&task);
    let got = ask(
        &mut raw,
        &mut seen,
        4,
        "tasks/get",
        json!({"taskId": task, "_meta": meta}),
    )
    .await;
    assert_eq!(got["result"]["resultType"], "complete", "{got}");
    assert_eq!(
        got["result"]["result"]["content"][0]["text"], "new ",
        "{got}"
    );
    let listed = ask(&mut raw, &mut seen, 5, "tasks/list", json!({"_meta": meta})).await;
    assert_eq!(
        listed["result"]["tasks"][0]["taskId"],
        task.as_str(),
        "{listed}"
    );
    assert!(raw.finish().await.success());
}

/// A child names a sibling's task in a status notification and makes up its result: the client
/// hears only what the owning child says of its task.
#[tokio::test]
async fn a_child_cannot_announce_a_result_for_a_siblings_task() {
    let w = World::new();
    task_server(&w, "");
    let evil_log = w.path("evil.log");
    w.server_file(
        "evil",
        &format!(
            "command = {FIXTURE:?}\nargs = [\"--tasks\", {:?}]\ntiers = [\"admin\"]\n",
            evil_log.to_string_lossy()
        ),
    );
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    let listed = ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    assert!(listed.to_string().contains("evil__forge"), "{listed}");
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "real", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    ask(
        &mut raw,
        &mut seen,
        4,
        "tools/call",
        json!({"name": "evil__forge", "arguments": {"taskId": "task-1", "text": "FORGED"}}),
    )
    .await;
    read_until(&mut raw, &mut seen, |v| {
        v["method"] == "notifications/tasks"
    })
    .await;
    let note = seen
        .values()
        .into_iter()
        .find(|v| v["method"] == "notifications/tasks")
        .unwrap();
    assert_eq!(note["params"]["taskId"], task.as_str(), "{note}");
    assert_eq!(note["params"]["status"], "working", "{note}");
    assert!(!seen.text().contains("FORGED"), "{}", seen.text());
    assert!(raw.finish().await.success());
}

/// Polling a task draws from the tasks bucket, and an empty bucket refuses by name without
/// reaching the child; calls keep their own bucket.
#[tokio::test]
async fn task_requests_draw_from_the_tasks_bucket() {
    let w = World::new();
    w.require_auth("[rate_limit]\ntasks_per_minute = 2\n").await;
    let log = task_server(&w, "");
    let token = w.token("poller", "user").await;
    let mut raw = RawClient::start_with(&w, |c| {
        c.env("LASTMILE_TOKEN", &token);
    });
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "x", "hold": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    // 2 a minute with a burst of 3x: 6 pass at once, then the bucket is empty.
    let (mut ok, mut limited) = (0, 0);
    for id in 10..20u64 {
        let answer = ask(
            &mut raw,
            &mut seen,
            id,
            "tasks/get",
            json!({"taskId": task}),
        )
        .await;
        if answer.get("result").is_some() {
            ok += 1;
        } else {
            assert_eq!(answer["error"]["code"], -32029, "{answer}");
            assert_eq!(answer["error"]["data"]["bucket"], "tasks", "{answer}");
            limited += 1;
        }
    }
    assert!((6..=7).contains(&ok), "{ok} polls passed");
    let called = ask(
        &mut raw,
        &mut seen,
        30,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "y", "hold": true}}),
    )
    .await;
    assert_eq!(called["result"]["resultType"], "task", "{called}");
    assert!(raw.finish().await.success());
    assert_eq!(child_log(&log).matches("tasks/get").count(), ok);
    let rows = audit_rows(&w).await;
    let rows_limited = rows
        .iter()
        .filter(|r| r["method"] == "tasks/get" && r["status"] == "rate_limited")
        .count();
    assert_eq!(rows_limited, limited, "{rows:?}");
}

/// The result of a tool task is audited as the tool's outcome: a tool-level error is one, with
/// its (scrubbed) text, under the call's execution id.
#[tokio::test]
async fn a_failed_tool_task_is_audited_as_a_tool_error_without_its_secret() {
    let w = World::new();
    let value = canary();
    w.set_secret("TASK_KEY", &value).await;
    task_server(&w, "secrets = [\"TASK_KEY\"]");
    let mut raw = RawClient::start(&w);
    let mut seen = Transcript::default();
    raw.initialize("2025-11-25").await;
    ask(&mut raw, &mut seen, 2, "tools/list", json!({})).await;
    let created = ask(
        &mut raw,
        &mut seen,
        3,
        "tools/call",
        json!({"name": "jobs__job", "arguments": {"text": "broke", "env": "TASK_KEY", "fail": true}}),
    )
    .await;
    let task = created["result"]["taskId"].as_str().unwrap().to_string();
    let got = ask(&mut raw, &mut seen, 4, "tasks/get", json!({"taskId": task})).await;
    assert_eq!(got["result"]["result"]["isError"], true, "{got}");
    assert!(raw.finish().await.success());
    let rows = audit_rows(&w).await;
    let call = rows.iter().find(|r| r["method"] == "tools/call").unwrap();
    let get = rows
        .iter()
        .find(|r| r["method"] == "tasks/get")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(get["execution_id"], call["execution_id"], "{get}");
    assert_eq!(get["status"], "tool_error", "{get}");
    assert_eq!(get["error"], "broke [REDACTED:TASK_KEY]", "{get}");
    assert!(!serde_json::to_string(&rows).unwrap().contains(&value));
    assert!(!seen.text().contains(&value));
}
