//! `prompts/get` and `resources/read` as bytes: routed like `tools/call` (the gate's read bucket,
//! the manifest's name or URI, the child's link), the child's result scrubbed as raw JSON text
//! and spliced into the client's response, and one audit row per request with its method,
//! server and target — the same row the typed face's gate writes.

use std::sync::Arc;

use bytes::Bytes;
use rmcp::model::ErrorCode;

use super::bridge;
use super::call::{INVALID_PARAMS, mcp_error_line, speaks_2026, strip_lifecycle_meta};
use super::front::{Front, error_line, response_line};
use super::gate::Refused;
use super::guard::audit_request;
use crate::audit::ExecStatus;
use crate::downstream::{ProgressRoute, RawOutcome};
use crate::identity::RateBucket;
use crate::secrets::scrub_text;
use crate::wire::{Envelope, RawObject, json_string};

/// What a read request names.
#[derive(Clone, Copy)]
enum Kind {
    Prompt,
    Resource,
}

impl Kind {
    fn method(self) -> &'static str {
        match self {
            Kind::Prompt => "prompts/get",
            Kind::Resource => "resources/read",
        }
    }
}

/// Run one raw `prompts/get` or `resources/read` to its answer (none when cancelled).
pub(crate) async fn read(front: Arc<Front>, line: Bytes) {
    let Ok(envelope) = Envelope::parse(&line) else {
        return;
    };
    let Some(id) = envelope.id().map(str::to_owned) else {
        return;
    };
    let kind = match envelope.method().as_deref() {
        Some("prompts/get") => Kind::Prompt,
        Some("resources/read") => Kind::Resource,
        _ => return,
    };
    let cancel = front.begin(&id);
    let answer = run(&front, &envelope, &id, kind, &cancel).await;
    front.end(&id);
    if let Some(answer) = answer {
        front.out.send(answer).await;
    }
}

async fn run(
    front: &Arc<Front>,
    envelope: &Envelope<'_>,
    id: &str,
    kind: Kind,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<Vec<u8>> {
    let (method, key) = match kind {
        Kind::Prompt => ("prompts/get", "name"),
        Kind::Resource => ("resources/read", "uri"),
    };
    let session = &front.session;
    // The gate comes first, even for a request that will be refused as malformed or a retry
    // whose requestState is forged: expiry and the rate limit hold for every request, and
    // every one is recorded.
    let admitted = session.gate().admit(RateBucket::Reads);
    let malformed = |invalid: String| {
        let line = error_line(id, INVALID_PARAMS, &invalid);
        async move {
            audit_request(session, method, "", "", ExecStatus::Denied, Some(&invalid)).await;
            Some(line)
        }
    };
    let params = envelope.params().ok().flatten();
    let target = params
        .as_ref()
        .and_then(|p| p.get_str(key).map(|t| t.into_owned()));
    if let Err(refused) = admitted {
        let (status, e) = match refused {
            Refused::Session(e) => (ExecStatus::Denied, e),
            Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
        };
        let target = target.unwrap_or_default();
        audit_request(session, method, "", &target, status, Some(&e.message)).await;
        return Some(mcp_error_line(id, &e));
    }
    let Some(mut params) = params else {
        return malformed(format!("{method} needs a params object")).await;
    };
    let Some(target) = target else {
        return malformed(format!("{method} needs `params.{key}`, a string")).await;
    };
    let meta = params.get("_meta").and_then(|m| RawObject::parse(m).ok());
    let v2026 = speaks_2026(meta.as_ref());
    let client_token = meta
        .as_ref()
        .and_then(|m| m.get("progressToken").map(str::to_owned));
    drop(meta);
    // A refusal or a routing error, answered and recorded.
    let refuse = |server: &str, e: rmcp::ErrorData, status: ExecStatus| {
        let mut e = e;
        // 2026-07-28 reports an unknown resource as invalid params.
        if v2026 && e.code == ErrorCode::RESOURCE_NOT_FOUND {
            e.code = ErrorCode::INVALID_PARAMS;
        }
        let line = mcp_error_line(id, &e);
        let server = server.to_owned();
        let target = target.clone();
        async move {
            audit_request(session, method, &server, &target, status, Some(&e.message)).await;
            Some(line)
        }
    };
    // A retry with the input a waiting read asked for: it continues that read.
    if let Some(state) = params.get_str("requestState").map(|s| s.into_owned()) {
        let responses = params.get("inputResponses").map(str::to_owned);
        let waiting = format!("{method} {target}");
        return match bridge::resume(
            &front.bridge,
            id,
            &state,
            &waiting,
            responses,
            client_token,
            cancel,
        )
        .await
        {
            Ok(answer) => answer,
            Err(refusal) => {
                let why = format!("invalid requestState: {}", refusal.why());
                audit_request(session, method, "", &target, ExecStatus::Denied, Some(&why)).await;
                Some(bridge::invalid_state_line(id, refusal))
            }
        };
    }
    let routed = match kind {
        Kind::Prompt => front
            .face
            .route_prompt(&target)
            .await
            .map(|(slot, child, original)| (slot, child, Some(original))),
        Kind::Resource => front.face.route_resource(&target).await,
    };
    let (slot, child, original) = match routed {
        Ok(r) => r,
        Err(e) => return refuse("", e, ExecStatus::Error).await,
    };
    let slot = &front.hub.slots[slot];
    let server = slot.server.name.as_str();
    if let Some(original) = original {
        params.set(key, json_string(&original));
    }
    strip_lifecycle_meta(&mut params);
    let timeout = slot.call_timeout(&front.hub.defaults);
    if v2026 {
        // The child may ask the client for input while it reads: the read can take rounds.
        let read = Read {
            kind,
            target,
            server: server.to_string(),
        };
        return rounds(
            front,
            id,
            read,
            params.to_json(),
            Arc::clone(&child.link),
            client_token,
            timeout,
            cancel,
        )
        .await;
    }
    let progress = client_token.map(|token| ProgressRoute {
        token,
        sink: Arc::clone(&front.progress),
    });
    let outcome = child
        .link
        .call(method, &mut params, progress, timeout, cancel)
        .await;
    let read = Read {
        kind,
        target,
        server: server.to_string(),
    };
    finish(front, id, &read, v2026, outcome).await
}

/// What a read names, once routed.
struct Read {
    kind: Kind,
    target: String,
    server: String,
}

/// A 2026-07-28 read whose child may ask the client for input (see `super::bridge`).
#[allow(clippy::too_many_arguments)]
async fn rounds(
    front: &Arc<Front>,
    id: &str,
    read: Read,
    params: String,
    link: Arc<crate::downstream::Link>,
    client_token: Option<String>,
    timeout: std::time::Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<Vec<u8>> {
    let method = read.kind.method();
    let call = bridge::ChildCall {
        link,
        server: read.server.clone(),
        method,
        params,
        timeout,
    };
    let mut rounds = bridge::Rounds::start(
        &front.bridge,
        Arc::clone(&front.progress),
        front.closing(),
        call,
        format!("{method} {}", read.target),
        client_token,
    );
    match rounds.round(cancel).await {
        bridge::Step::Done(outcome) => finish(front, id, &read, true, outcome).await,
        bridge::Step::Input(result) => {
            let line = response_line(id, "result", |o| o.extend_from_slice(result.as_bytes()));
            let read = Arc::new(read);
            let (concluding, for_conclusion) = (Arc::clone(front), Arc::clone(&read));
            let conclude: bridge::Conclude = Box::new(move |outcome, id| {
                Box::pin(
                    async move { finish(&concluding, &id, &for_conclusion, true, outcome).await },
                )
            });
            let session = Arc::clone(&front.session);
            let abandoned: bridge::Abandoned = Box::new(move || {
                Box::pin(async move {
                    audit_request(
                        &session,
                        read.kind.method(),
                        &read.server,
                        &read.target,
                        ExecStatus::Cancelled,
                        Some("the client did not come back with the input the read asked for"),
                    )
                    .await;
                })
            });
            let task = tokio::spawn(bridge::drive(
                front.closing().clone(),
                rounds,
                conclude,
                abandoned,
            ));
            front.bridge.hold(task);
            Some(line)
        }
    }
}

/// The client's answer for how the child's read ended, and its audit row.
async fn finish(
    front: &Front,
    id: &str,
    read: &Read,
    v2026: bool,
    outcome: RawOutcome,
) -> Option<Vec<u8>> {
    let (kind, target, server) = (read.kind, &read.target, read.server.as_str());
    let method = kind.method();
    let session = &front.session;
    let refuse = |server: &str, e: rmcp::ErrorData, status: ExecStatus| {
        let line = mcp_error_line(id, &e);
        let server = server.to_owned();
        async move {
            audit_request(session, method, &server, target, status, Some(&e.message)).await;
            Some(line)
        }
    };
    let redactor = session.redactor();
    let failed =
        |message: String| rmcp::ErrorData::internal_error(scrub_text(redactor, message), None);
    let line = match outcome {
        RawOutcome::Answered(bytes) => bytes,
        RawOutcome::Closed => {
            let e = failed(format!(
                "server `{server}` exited or closed its connection during the request"
            ));
            return refuse(server, e, ExecStatus::Error).await;
        }
        RawOutcome::TimedOut(d) => {
            let e = failed(format!(
                "server `{server}` did not answer within {d:?} (call_timeout); the request was cancelled"
            ));
            return refuse(server, e, ExecStatus::Timeout).await;
        }
        RawOutcome::Cancelled => {
            audit_request(session, method, server, target, ExecStatus::Cancelled, None).await;
            return None;
        }
    };
    let unreadable = || {
        failed(format!(
            "server `{server}` sent an answer lastmile cannot read"
        ))
    };
    let Ok(answer) = Envelope::parse(&line) else {
        return refuse(server, unreadable(), ExecStatus::Error).await;
    };
    let (member, ok) = match (answer.member("result"), answer.member("error")) {
        (Some(r), _) => (r, true),
        (None, Some(e)) => (e, false),
        (None, None) => return refuse(server, unreadable(), ExecStatus::Error).await,
    };
    let (clean, _) = redactor.scrub_bytes(member.as_bytes());
    let Ok(clean) = std::str::from_utf8(&clean) else {
        return refuse(server, unreadable(), ExecStatus::Error).await;
    };
    let Ok(mut object) = RawObject::parse(clean) else {
        return refuse(server, unreadable(), ExecStatus::Error).await;
    };
    if ok {
        if v2026 && object.get("resultType").is_none() {
            object.set("resultType", "\"complete\"".into());
        }
        // On 2026-07-28 a read result carries caching hints; what a child of this session read
        // is this session's alone.
        if v2026
            && matches!(kind, Kind::Resource)
            && object.get_str("resultType").as_deref() == Some("complete")
        {
            if object.get("ttlMs").is_none() {
                object.set("ttlMs", "0".into());
            }
            if object.get("cacheScope").is_none() {
                object.set("cacheScope", "\"private\"".into());
            }
        }
        audit_request(session, method, server, target, ExecStatus::Ok, None).await;
    } else {
        let message = object
            .get_str("message")
            .map(|m| m.into_owned())
            .unwrap_or_default();
        audit_request(
            session,
            method,
            server,
            target,
            ExecStatus::Error,
            Some(&message),
        )
        .await;
    }
    let member = if ok { "result" } else { "error" };
    Some(response_line(id, member, |out| object.write(out)))
}
