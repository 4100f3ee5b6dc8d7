//! 2026-07-28 over HTTP: a request the protocol layer rejects is rejected by HTTP status too
//! (the spec's MUSTs that the official conformance suite's `server-stateless` scenario checks):
//! 400 for missing `_meta` fields, an unsupported version and a header that disagrees with
//! `_meta`, 404 for a method 2026-07-28 removed — with the JSON-RPC error in the body as well.

use serde_json::{Value, json};

use crate::http_util::*;
use crate::util::*;

fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "http-status-2026", "version": "0"}
    })
}

/// A stateless gateway with one fixture and a user's bearer token.
async fn start() -> (World, HttpServer, String) {
    let w = World::new();
    w.require_auth("").await;
    w.fixture("alpha", &[], "");
    let token = format!("Bearer {}", w.token("alice", "user").await);
    let server = HttpServer::start(&w).await;
    (w, server, token)
}

/// Status and JSON-RPC error code of `method` with `params`, on a 2026-07-28 request whose
/// version header is `header`.
async fn ask(
    server: &HttpServer,
    token: &str,
    header: &str,
    method: &str,
    params: Value,
) -> (u16, Value, Value) {
    let r = server
        .post(
            &request(9, method, params),
            &[("authorization", token), ("mcp-protocol-version", header)],
        )
        .await;
    let body = r.json();
    assert_eq!(body["id"], 9, "the request's id comes back: {body}");
    (r.status, body["error"]["code"].clone(), body)
}

#[tokio::test]
async fn a_request_without_its_meta_fields_is_a_400() {
    let (_w, server, token) = start().await;
    let (status, code, body) = ask(&server, &token, "2026-07-28", "tools/list", json!({})).await;
    assert_eq!(code, -32602, "{body}");
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn an_unsupported_version_is_a_400() {
    let (_w, server, token) = start().await;
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let (status, _, body) = ask(
        &server,
        &token,
        "2099-01-01",
        "server/discover",
        json!({"_meta": m}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_version_header_that_disagrees_with_meta_is_a_400_header_mismatch() {
    let (_w, server, token) = start().await;
    let mut m = meta();
    m["io.modelcontextprotocol/protocolVersion"] = json!("v999.0.0");
    let (status, code, body) = ask(
        &server,
        &token,
        "2026-07-28",
        "server/discover",
        json!({"_meta": m}),
    )
    .await;
    assert_eq!(code, -32020, "HeaderMismatch: {body}");
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_method_that_2026_07_28_removed_is_a_404() {
    let (_w, server, token) = start().await;
    for method in ["initialize", "logging/setLevel", "resources/subscribe"] {
        let (status, code, body) = ask(
            &server,
            &token,
            "2026-07-28",
            method,
            json!({"_meta": meta()}),
        )
        .await;
        assert_eq!(code, -32601, "{method}: {body}");
        assert_eq!(status, 404, "{method}: {body}");
    }
    server.stop().await;
}
