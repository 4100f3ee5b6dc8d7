//! Children shared between identities over HTTP: a server known to send nothing that no call
//! asked for runs once for every identity whose tier may use it; each call's answer and progress
//! still reach only its caller. A server that asks the client, sends something unasked, is not
//! known yet, or is marked `shared = false`, gets one instance per identity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http_util::*;
use crate::util::*;

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// How many times the fixture whose `--starts-log` is `log` has started.
fn starts(log: &Path) -> Vec<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Whether a manners marker `what` of `server` exists under the profile's data folder.
fn marker(dir: &Path, server: &str, what: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            marker(&path, server, what)
        } else {
            name.starts_with(&format!("{server}.")) && name.ends_with(&format!(".{what}"))
        }
    })
}

/// Wait until lastmile has recorded that `server` started (so its manners are known).
async fn known(w: &World, server: &str) {
    assert!(
        eventually(Duration::from_secs(10), || marker(
            &w.data_dir(),
            server,
            "started"
        ))
        .await,
        "the start of `{server}` was never recorded"
    );
}

/// An identity's open 2025 session.
struct Who {
    auth: String,
    session: String,
}

impl Who {
    async fn open(w: &World, server: &HttpServer, subject: &str) -> Who {
        let auth = bearer(&w.token(subject, "user").await);
        let session = open_session(server, &[("authorization", &auth)]).await;
        Who { auth, session }
    }

    fn headers(&self) -> [(&str, &str); 2] {
        [
            ("authorization", self.auth.as_str()),
            ("mcp-session-id", self.session.as_str()),
        ]
    }

    /// Call `tool` and return its text (or the error's message).
    async fn call(&self, server: &HttpServer, tool: &str, arguments: Value) -> String {
        let r = server
            .post(
                &request(
                    9,
                    "tools/call",
                    json!({"name": tool, "arguments": arguments}),
                ),
                &self.headers(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let answer = r.messages().pop().expect("an answer");
        answer["result"]["content"][0]["text"]
            .as_str()
            .or(answer["error"]["message"].as_str())
            .unwrap_or_else(|| panic!("{answer}"))
            .to_string()
    }

    /// A gated `progress` call with `steps` steps under progress token `token`, as a stream.
    async fn gated(&self, server: &HttpServer, steps: u64, gate: &Path, token: &str) -> Stream {
        let mut r = server
            .request("POST", "/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(
                request(
                    3,
                    "tools/call",
                    json!({"name": "alpha__progress",
                           "arguments": {"steps": steps, "until": gate.to_str().unwrap()},
                           "_meta": {"progressToken": token}}),
                )
                .to_string(),
            );
        for (k, v) in self.headers() {
            r = r.header(k, v);
        }
        let s = r.open().await;
        assert_eq!(s.status, 200);
        s
    }

    async fn delete(&self, server: &HttpServer) {
        let mut r = server.request("DELETE", "/mcp");
        for (k, v) in self.headers() {
            r = r.header(k, v);
        }
        let r = r.send().await;
        assert!(r.status == 200 || r.status == 204, "{}", r.body);
    }
}

/// Every message of a stream up to its answer.
async fn until_answer(s: &mut Stream) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        let done = m.get("id").is_some();
        out.push(m);
        if done {
            break;
        }
    }
    out
}

struct Rig {
    w: World,
    log: PathBuf,
    server: HttpServer,
}

/// `alpha` (a fixture without resource subscriptions) behind `serve --http` with required
/// auth, its start already recorded once by `warm`'s session, which stays open.
async fn rig(extra: &str) -> (Rig, Who) {
    let w = World::new();
    w.require_auth("").await;
    let log = w.path("alpha.starts");
    w.fixture(
        "alpha",
        &["--no-resources", "--starts-log", log.to_str().unwrap()],
        extra,
    );
    let server = HttpServer::start(&w).await;
    let warm = Who::open(&w, &server, "warm").await;
    assert_eq!(
        warm.call(&server, "alpha__echo", json!({"text": "hi"}))
            .await,
        "hi"
    );
    known(&w, "alpha").await;
    assert_eq!(starts(&log).len(), 1);
    (Rig { w, log, server }, warm)
}

/// Bob and carol, each with an open session that has called `alpha__echo` once (so each has
/// met `alpha`, shared or not).
async fn bob_and_carol(w: &World, server: &HttpServer) -> (Who, Who) {
    let bob = Who::open(w, server, "bob").await;
    let carol = Who::open(w, server, "carol").await;
    for (who, text) in [(&bob, "b"), (&carol, "c")] {
        assert_eq!(
            who.call(server, "alpha__echo", json!({ "text": text }))
                .await,
            text
        );
    }
    (bob, carol)
}

#[tokio::test]
async fn a_quiet_server_runs_once_for_every_identity_and_answers_each_caller_alone() {
    let (Rig { w, log, server }, _warm) = rig("").await;
    // The first session met `alpha` unknown and started its own; now it is known to be quiet.
    let (bob, carol) = bob_and_carol(&w, &server).await;
    let started = starts(&log);
    assert_eq!(
        started.len(),
        2,
        "one instance for bob and carol: {started:?}"
    );
    let shared = started[1];

    // Calls in flight on the one child at once: each caller gets its own progress, under its
    // own token, and its own answer, and nothing of the other's.
    let gate = w.path("go");
    let mut b = bob.gated(&server, 2, &gate, "bob-token").await;
    let mut c = carol.gated(&server, 3, &gate, "carol-token").await;
    std::fs::write(&gate, "go").unwrap();
    for (stream, token, steps) in [(&mut b, "bob-token", 2), (&mut c, "carol-token", 3)] {
        let messages = until_answer(stream).await;
        let progress: Vec<&Value> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(progress.len(), steps, "{messages:?}");
        assert!(
            progress
                .iter()
                .all(|p| p["params"]["progressToken"] == token),
            "{messages:?}"
        );
        let answer = messages.last().unwrap();
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("done {steps} steps"),
            "{answer}"
        );
    }

    // Bob leaves: carol's instance stays. Carol leaves: the last user is gone, it stops.
    bob.delete(&server).await;
    assert_eq!(
        carol
            .call(&server, "alpha__echo", json!({"text": "c2"}))
            .await,
        "c2"
    );
    assert_eq!(starts(&log).len(), 2);
    assert!(alive(shared));
    carol.delete(&server).await;
    assert!(
        eventually(Duration::from_secs(10), || !alive(shared)).await,
        "the shared instance outlived its last session"
    );
    let rows = w.audit_export().await;
    for who in ["bob", "carol"] {
        assert!(
            rows.iter()
                .any(|r| r["subject"] == who && r["tool"] == "progress" && r["status"] == "ok"),
            "{who}'s call is audited as {who}'s: {rows:?}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn a_shared_server_that_crashes_is_restarted_once_for_all_its_identities() {
    let (Rig { w, log, server }, _warm) = rig("").await;
    let (bob, carol) = bob_and_carol(&w, &server).await;
    assert_eq!(starts(&log).len(), 2);
    bob.call(&server, "alpha__crash", json!({})).await;
    // Both sessions come back to one new instance.
    assert_eq!(
        carol
            .call(&server, "alpha__echo", json!({"text": "c"}))
            .await,
        "c"
    );
    assert_eq!(
        bob.call(&server, "alpha__echo", json!({"text": "b"})).await,
        "b"
    );
    let started = starts(&log);
    assert_eq!(started.len(), 3, "one restart for both: {started:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_server_marked_not_shared_runs_once_per_identity() {
    let (Rig { w, log, server }, _warm) = rig("shared = false").await;
    // Both sessions stay open while the starts are counted.
    let (_bob, _carol) = bob_and_carol(&w, &server).await;
    let started = starts(&log);
    assert_eq!(started.len(), 3, "one instance each: {started:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_shared_server_that_speaks_unasked_is_refused_and_runs_once_per_identity_after() {
    let (Rig { w, log, server }, _warm) = rig("").await;
    let (bob, carol) = bob_and_carol(&w, &server).await;
    assert_eq!(starts(&log).len(), 2);
    // A request of its own to the client, from the shared instance: it has no caller to go to.
    let roots = bob.call(&server, "alpha__roots", json!({})).await;
    assert!(
        roots.contains("shared by several identities"),
        "refused with the reason: {roots}"
    );
    // A log message, unasked: dropped for everyone (nobody's stream gets it).
    let mut watch = carol
        .gated(&server, 1, &w.path("never"), "carol-token")
        .await;
    assert_eq!(
        bob.call(&server, "alpha__log", json!({"message": "for whom?"}))
            .await,
        "logged"
    );
    assert!(
        eventually(Duration::from_secs(10), || marker(
            &w.data_dir(),
            "alpha",
            "asks-client"
        ) && marker(
            &w.data_dir(),
            "alpha",
            "speaks-unasked"
        ))
        .await,
        "both manners are remembered"
    );
    std::fs::write(w.path("never"), "go").unwrap();
    let seen = until_answer(&mut watch).await;
    assert!(
        !seen.iter().any(|m| m.to_string().contains("for whom?")),
        "{seen:?}"
    );
    // From now on each new identity gets its own instance.
    let dave = Who::open(&w, &server, "dave").await;
    let erin = Who::open(&w, &server, "erin").await;
    assert_eq!(
        dave.call(&server, "alpha__echo", json!({"text": "d"}))
            .await,
        "d"
    );
    assert_eq!(
        erin.call(&server, "alpha__echo", json!({"text": "e"}))
            .await,
        "e"
    );
    let started = starts(&log);
    assert_eq!(
        started.len(),
        4,
        "dave and erin each their own: {started:?}"
    );
    let log = server.stop().await;
    assert!(
        log.contains("no call asked for while shared"),
        "the change is logged: {log}"
    );
}
