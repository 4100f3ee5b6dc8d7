//! The 2026-07-28 protocol toward the client, driven by a raw JSON-RPC client: `server/discover`
//! offers 2026-07-28 only when the session loses nothing on it, `subscriptions/listen` fans in
//! list changes and resource updates of every child tagged with the subscription's id, and
//! results carry `resultType`.

use serde_json::{Value, json};

use crate::util::{RawClient, World};

/// The lifecycle `_meta` every 2026-07-28 request carries.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw-2026", "version": "0"}
    })
}

fn with_meta(mut params: Value) -> Value {
    params["_meta"] = meta();
    params
}

async fn discover_versions(w: &World) -> Vec<String> {
    let mut raw = RawClient::start(w);
    let (answer, _) = raw
        .request(1, "server/discover", json!({"_meta": meta()}))
        .await;
    raw.finish().await;
    serde_json::from_value(answer["result"]["supportedVersions"].clone())
        .unwrap_or_else(|_| panic!("no supportedVersions: {answer}"))
}

/// A 2026-07-28 client: discover (id 1), then a tools/list (id 2) that offers `tool`.
async fn open_2026(w: &World, tool: &str) -> RawClient {
    let mut raw = RawClient::start(w);
    let (discover, _) = raw
        .request(1, "server/discover", json!({"_meta": meta()}))
        .await;
    assert!(discover.get("result").is_some(), "{discover}");
    let (tools, _) = raw.request(2, "tools/list", with_meta(json!({}))).await;
    assert!(tools.to_string().contains(tool), "{tools}");
    raw
}

/// Read lines until one satisfies `pred`; every line read comes back too.
async fn read_until(raw: &mut RawClient, pred: impl Fn(&Value) -> bool) -> (Value, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        let line = raw
            .next_line()
            .await
            .unwrap_or_else(|| panic!("the awaited line never came; saw {seen:?}"));
        let v: Value = serde_json::from_str(&line).expect("JSON lines");
        seen.push(v.clone());
        if pred(&v) {
            return (v, seen);
        }
    }
}

#[tokio::test]
async fn discover_offers_2026_only_once_no_server_is_known_to_ask_the_client() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    // Nothing known of `alpha` yet: it might ask for roots, which 2026-07-28 cannot carry.
    let versions = discover_versions(&w).await;
    assert!(!versions.iter().any(|v| v == "2026-07-28"), "{versions:?}");
    assert!(versions.iter().any(|v| v == "2025-11-25"), "{versions:?}");

    // A session in which it served without asking the client for anything.
    let s = w.serve().await;
    s.tool_names().await;
    s.close().await;
    let versions = discover_versions(&w).await;
    assert!(versions.iter().any(|v| v == "2026-07-28"), "{versions:?}");

    // It asks for roots once: from then on, 2026-07-28 is not offered with it.
    let mut raw = RawClient::start(&w);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"roots":{}},"clientInfo":{"name":"raw","version":"0"}}});
    raw.send_line(&init.to_string()).await;
    raw.next_line().await.expect("initialize answered");
    raw.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .await;
    let call = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__roots","arguments":{}}});
    raw.send_line(&call.to_string()).await;
    let (request, _) = read_until(&mut raw, |v| v["method"] == "roots/list").await;
    let answer = json!({"jsonrpc":"2.0","id":request["id"],"result":{"roots":[]}});
    raw.send_line(&answer.to_string()).await;
    let (result, _) = read_until(&mut raw, |v| v["id"] == 2).await;
    assert!(result.to_string().contains("roots"), "{result}");
    raw.finish().await;
    let versions = discover_versions(&w).await;
    assert!(!versions.iter().any(|v| v == "2026-07-28"), "{versions:?}");
}

#[tokio::test]
async fn listen_fans_in_list_changes_and_resource_updates_tagged_with_the_subscription() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    w.fixture("beta", &[], "");
    let mut raw = open_2026(&w, "beta__add_tool").await;

    // A list change before any subscription is not sent to a 2026-07-28 client.
    let (added, before) = raw
        .request(
            3,
            "tools/call",
            with_meta(json!({"name": "alpha__add_tool", "arguments": {"name": "early"}})),
        )
        .await;
    assert_eq!(added["result"]["resultType"], "complete", "{added}");
    assert!(
        added["result"]["_meta"]["lastmile/executionId"].is_string(),
        "{added}"
    );

    let uri = "fixture://beta/readme";
    let listen = json!({"jsonrpc":"2.0","id":"sub-1","method":"subscriptions/listen","params":with_meta(json!({
        "notifications": {"toolsListChanged": true, "resourceSubscriptions": [uri]}
    }))});
    raw.send_line(&listen.to_string()).await;
    let (ack, mut seen) = read_until(&mut raw, |v| {
        v["method"] == "notifications/subscriptions/acknowledged"
    })
    .await;
    assert_eq!(
        ack["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["toolsListChanged"], true,
        "{ack}"
    );
    assert_eq!(
        ack["params"]["notifications"]["resourceSubscriptions"],
        json!([uri]),
        "{ack}\n{}",
        w.logs()
            .lines()
            .filter(|l| l.contains("behalf"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        ack["params"]["notifications"]
            .get("promptsListChanged")
            .is_none(),
        "{ack}"
    );

    // A change in `beta` reaches the subscription, tagged.
    let call = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":with_meta(json!({"name": "beta__add_tool", "arguments": {"name": "late"}}))});
    raw.send_line(&call.to_string()).await;
    let (changed, more) = read_until(&mut raw, |v| {
        v["method"] == "notifications/tools/list_changed"
    })
    .await;
    seen.extend(more);
    assert_eq!(
        changed["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{changed}"
    );
    // A resource update of the subscribed URI, tagged.
    let call = json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":with_meta(json!({"name": "beta__touch", "arguments": {"uri": uri}}))});
    raw.send_line(&call.to_string()).await;
    let (updated, more) = read_until(&mut raw, |v| {
        v["method"] == "notifications/resources/updated"
    })
    .await;
    seen.extend(more);
    assert_eq!(updated["params"]["uri"], uri, "{updated}");
    assert_eq!(
        updated["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"], "sub-1",
        "{updated}"
    );
    // Every list change the client saw was tagged: the one before the subscription was not sent.
    let all: Vec<&Value> = before
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .chain(seen.iter())
        .collect();
    for v in all {
        if v["method"] == "notifications/tools/list_changed" {
            assert!(
                v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"].is_string(),
                "an untagged list change reached a 2026-07-28 client: {v}"
            );
        }
    }
    raw.finish().await;
}

#[tokio::test]
async fn reads_on_2026_carry_result_type_and_cache_hints_and_are_audited() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = open_2026(&w, "alpha__echo").await;
    let (read, _) = raw
        .request(
            3,
            "resources/read",
            with_meta(json!({"uri": "fixture://alpha/readme"})),
        )
        .await;
    let result = &read["result"];
    assert!(result.to_string().contains("readme of alpha"), "{read}");
    assert_eq!(result["resultType"], "complete", "{read}");
    assert_eq!(result["cacheScope"], "private", "{read}");
    assert!(result["ttlMs"].is_u64(), "{read}");
    let (prompt, _) = raw
        .request(
            4,
            "prompts/get",
            with_meta(json!({"name": "alpha__greet", "arguments": {"name": "x"}})),
        )
        .await;
    assert_eq!(prompt["result"]["resultType"], "complete", "{prompt}");
    // An unknown resource is invalid params on 2026-07-28.
    let (missing, _) = raw
        .request(
            5,
            "resources/read",
            with_meta(json!({"uri": "fixture://nowhere/x"})),
        )
        .await;
    assert_eq!(missing["error"]["code"], -32602, "{missing}");
    raw.finish().await;
    let out = w.run(&["audit", "export", "--jsonl"]).await;
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let read_row = rows
        .iter()
        .find(|r| r["method"] == "resources/read" && r["status"] == "ok")
        .unwrap_or_else(|| panic!("no resources/read row: {rows:?}"));
    assert_eq!(read_row["server"], "alpha", "{read_row}");
    assert!(
        rows.iter()
            .any(|r| r["method"] == "prompts/get" && r["server"] == "alpha"),
        "{rows:?}"
    );
}

/// A 2026-07-28 client that can answer roots and elicitation, asked per request.
fn capable_meta() -> Value {
    let mut meta = meta();
    meta["io.modelcontextprotocol/clientCapabilities"] =
        json!({"roots": {}, "elicitation": {"form": {}}});
    meta
}

/// A 2026-07-28 client after its `server/discover` (id 1).
async fn client_2026(w: &World) -> RawClient {
    let mut raw = RawClient::start(w);
    let (discover, _) = raw
        .request(1, "server/discover", json!({"_meta": capable_meta()}))
        .await;
    assert!(discover.get("result").is_some(), "{discover}");
    raw
}

/// No line lastmile wrote was a request to the client.
fn no_request_to_the_client(seen: &[String]) {
    for line in seen {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            !(v.get("method").is_some() && v.get("id").is_some()),
            "a server-to-client request reached a 2026-07-28 client: {line}"
        );
    }
}

fn call(tool: &str, extra: Value) -> Value {
    let mut params = json!({"name": tool, "arguments": {}, "_meta": capable_meta()});
    if let Value::Object(map) = extra {
        for (k, v) in map {
            params[k] = v;
        }
    }
    params
}

/// The one input request of an input-required result: its key and the request.
fn the_input_request(answer: &Value) -> (String, Value, String) {
    let result = &answer["result"];
    assert_eq!(result["resultType"], "input_required", "{answer}");
    let requests = result["inputRequests"].as_object().expect("inputRequests");
    assert_eq!(requests.len(), 1, "{answer}");
    let (key, request) = requests.iter().next().unwrap();
    let state = result["requestState"]
        .as_str()
        .expect("requestState")
        .to_string();
    (key.clone(), request.clone(), state)
}

#[tokio::test]
async fn a_childs_roots_request_becomes_input_required_and_the_retry_completes_the_call() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = client_2026(&w).await;
    let (first, seen) = raw
        .request(2, "tools/call", call("alpha__roots", json!({})))
        .await;
    no_request_to_the_client(&seen);
    let (key, request, state) = the_input_request(&first);
    assert_eq!(request["method"], "roots/list", "{first}");

    let roots = json!({"roots": [{"uri": "file:///work/project", "name": "project"}]});
    let (done, seen) = raw
        .request(
            3,
            "tools/call",
            call(
                "alpha__roots",
                json!({"inputResponses": {key.clone(): roots}, "requestState": state}),
            ),
        )
        .await;
    no_request_to_the_client(&seen);
    let result = &done["result"];
    assert_eq!(result["resultType"], "complete", "{done}");
    assert_eq!(
        result["content"][0]["text"], "roots: file:///work/project",
        "{done}"
    );
    let execution = result["_meta"]["lastmile/executionId"]
        .as_str()
        .expect("the execution id")
        .to_string();

    // The state was used up: a replay is refused by name.
    let (replay, _) = raw
        .request(
            4,
            "tools/call",
            call(
                "alpha__roots",
                json!({"inputResponses": {key: roots}, "requestState": state}),
            ),
        )
        .await;
    assert_eq!(replay["error"]["code"], -32602, "{replay}");
    assert_eq!(replay["error"]["data"]["reason"], "invalid_request_state");
    assert!(raw.finish().await.success());

    // One call, one row, across its two rounds.
    let rows = w.audit_export().await;
    let mine: Vec<&Value> = rows
        .iter()
        .filter(|r| r["execution_id"] == execution.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "{rows:?}");
    assert_eq!(mine[0]["status"], "ok", "{:?}", mine[0]);
}

#[tokio::test]
async fn a_forged_or_altered_request_state_is_refused_and_the_real_one_still_works() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = client_2026(&w).await;
    let (first, _) = raw
        .request(2, "tools/call", call("alpha__elicit", json!({})))
        .await;
    let (key, request, state) = the_input_request(&first);
    assert_eq!(request["method"], "elicitation/create", "{first}");
    assert_eq!(request["params"]["mode"], "form", "{first}");

    let flipped = {
        let mut s = state.clone();
        let last = s.pop().unwrap();
        s.push(if last == '0' { '1' } else { '0' });
        s
    };
    let answer = json!({"action": "accept", "content": {"answer": "forty-two"}});
    let mut id = 10;
    for (what, bad, tool) in [
        (
            "forged",
            "lm1.00.9999999999.00".to_string(),
            "alpha__elicit",
        ),
        ("altered", flipped, "alpha__elicit"),
        ("for another tool", state.clone(), "alpha__echo"),
        (
            "not lastmile's",
            "eyJsb2NhdGlvbiI6Ik5ldyBZb3JrIn0".to_string(),
            "alpha__elicit",
        ),
    ] {
        id += 1;
        let (r, _) = raw
            .request(
                id,
                "tools/call",
                call(
                    tool,
                    json!({"inputResponses": {key.clone(): answer}, "requestState": bad}),
                ),
            )
            .await;
        assert_eq!(r["error"]["code"], -32602, "{what}: {r}");
        assert_eq!(
            r["error"]["data"]["reason"], "invalid_request_state",
            "{what}"
        );
    }
    let (done, _) = raw
        .request(
            20,
            "tools/call",
            call(
                "alpha__elicit",
                json!({"inputResponses": {key: answer}, "requestState": state}),
            ),
        )
        .await;
    let text = done["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("elicited") && text.contains("forty-two"),
        "{done}"
    );
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    let denied = rows
        .iter()
        .filter(|r| r["status"] == "denied" && r.to_string().contains("invalid requestState"))
        .count();
    assert_eq!(denied, 4, "each refused retry is audited: {rows:?}");
}

#[tokio::test]
async fn a_call_waiting_for_input_is_cancelled_and_audited_when_the_client_leaves() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = client_2026(&w).await;
    let (first, _) = raw
        .request(2, "tools/call", call("alpha__roots", json!({})))
        .await;
    the_input_request(&first);
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    let row = rows
        .iter()
        .find(|r| r["tool"] == "roots")
        .unwrap_or_else(|| panic!("the waiting call left a row: {rows:?}"));
    assert_eq!(row["status"], "cancelled", "{row}");
}

#[tokio::test]
async fn a_request_that_cannot_be_tied_to_one_call_is_refused_to_the_child_by_name() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = client_2026(&w).await;
    // A long call to the same child is in flight: the roots request cannot be tied to one call.
    let slow = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":call("alpha__sleep", json!({"arguments": {"ms": 5000}}))});
    raw.send_line(&slow.to_string()).await;
    let (answer, seen) = raw
        .request(3, "tools/call", call("alpha__roots", json!({})))
        .await;
    no_request_to_the_client(&seen);
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("roots failed") && text.contains("2026-07-28") && text.contains("2 calls"),
        "the child is told why, and so is the model: {answer}"
    );
    raw.finish().await;
}

#[tokio::test]
async fn a_prompt_whose_child_asks_for_roots_is_input_required_too() {
    let w = World::new();
    w.fixture("alpha", &["--rooted-prompt"], "");
    let mut raw = client_2026(&w).await;
    let get = |extra: Value| {
        let mut params = json!({"name": "alpha__rooted", "_meta": capable_meta()});
        if let Value::Object(map) = extra {
            for (k, v) in map {
                params[k] = v;
            }
        }
        params
    };
    let (first, seen) = raw.request(2, "prompts/get", get(json!({}))).await;
    no_request_to_the_client(&seen);
    let (key, request, state) = the_input_request(&first);
    assert_eq!(request["method"], "roots/list", "{first}");
    // The state of a prompt is not a tool call's.
    let (wrong, _) = raw
        .request(
            3,
            "tools/call",
            call(
                "alpha__rooted",
                json!({"inputResponses": {}, "requestState": state}),
            ),
        )
        .await;
    assert_eq!(
        wrong["error"]["data"]["reason"], "invalid_request_state",
        "{wrong}"
    );
    let roots = json!({"roots": [{"uri": "file:///prompted"}]});
    let (done, _) = raw
        .request(
            4,
            "prompts/get",
            get(json!({"inputResponses": {key: roots}, "requestState": state})),
        )
        .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert_eq!(
        done["result"]["messages"][0]["content"]["text"], "roots: file:///prompted",
        "{done}"
    );
    assert!(raw.finish().await.success());
    let rows = w.audit_export().await;
    assert!(
        rows.iter()
            .any(|r| r.to_string().contains("prompts/get") && r["status"] == "ok"),
        "the read is audited once it completes: {rows:?}"
    );
}

#[tokio::test]
async fn a_bridged_calls_progress_moves_to_the_retrys_token() {
    let w = World::new();
    w.fixture("alpha", &[], "");
    let mut raw = client_2026(&w).await;
    let mut first_params = call("alpha__roots", json!({"arguments": {"progress": true}}));
    first_params["_meta"]["progressToken"] = json!("round-1");
    let (first, seen) = raw.request(2, "tools/call", first_params).await;
    let (key, _, state) = the_input_request(&first);
    let progress = |lines: &[String]| -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["method"] == "notifications/progress")
            .collect()
    };
    let before = progress(&seen);
    assert_eq!(before.len(), 1, "{seen:?}");
    assert_eq!(before[0]["params"]["progressToken"], "round-1");
    assert_eq!(before[0]["params"]["progress"], 1.0);

    let mut retry = call(
        "alpha__roots",
        json!({"arguments": {"progress": true}, "inputResponses": {key: {"roots": []}}, "requestState": state}),
    );
    retry["_meta"]["progressToken"] = json!("round-2");
    let (done, seen) = raw.request(3, "tools/call", retry).await;
    let after = progress(&seen);
    assert_eq!(after.len(), 1, "{seen:?}");
    assert_eq!(after[0]["params"]["progressToken"], "round-2", "{after:?}");
    assert_eq!(after[0]["params"]["progress"], 2.0);
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(raw.finish().await.success());
}
