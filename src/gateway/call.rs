//! `tools/call` as bytes: the hot path.
//!
//! The client's message is parsed once into its envelope; the params object is read as raw
//! members. The gate admits the call (a live token, the tier's call bucket), the manifest routes
//! the exposed name to its server and original name, and the request goes to the child's link
//! with only its id, name and progress token changed (and lastmile's lifecycle `_meta` removed:
//! it describes the client's connection to lastmile, not lastmile's to the child). The child's
//! result comes back as raw JSON text: scrubbed by the session's redactor, stamped with the
//! execution id in `_meta`, and spliced into the client's response. The audit row is built from
//! the envelope: the (scrubbed) arguments, the status from `isError`, and the error's message.

use std::sync::Arc;

use bytes::Bytes;
use tracing::Instrument;

use super::EXECUTION_ID_META;
use super::bridge::{self, Rounds, Step};
use super::front::{Front, error_line, response_line};
use super::gate::Refused;
use crate::audit::{ExecStatus, ExecutionId, ExecutionRecord, PendingExecution, new_execution_id};
use crate::downstream::{ProgressRoute, RawOutcome};
use crate::identity::RateBucket;
use crate::secrets::scrub_text;
use crate::wire::{Envelope, RawObject, json_string};

/// JSON-RPC: invalid params.
pub(crate) const INVALID_PARAMS: i32 = -32602;
/// The `_meta` prefix of the 2026-07-28 lifecycle keys (protocol version, client info and
/// capabilities, log level).
const LIFECYCLE_META: &str = "io.modelcontextprotocol/";
/// The lifecycle key naming the protocol version of one request.
const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";
/// The first protocol version whose results carry `resultType`.
const V_2026_07_28: &str = "2026-07-28";

/// Run one raw `tools/call` to its answer (none when the client cancelled it).
pub(crate) async fn tools_call(front: Arc<Front>, line: Bytes) {
    let Ok(envelope) = Envelope::parse(&line) else {
        return;
    };
    let Some(id) = envelope.id().map(str::to_owned) else {
        return;
    };
    let cancel = front.begin(&id);
    let execution_id = new_execution_id();
    // The execution id ties the call's log lines to its audit row, which names the tool. A
    // field recorded later would have the log's JSON formatter parse and rewrite the span's
    // fields, a cost paid on every call whether or not anything is logged.
    let span = tracing::info_span!("tools/call", execution_id = %execution_id);
    let mut call = Call {
        front: &front,
        id: &id,
        execution_id,
        redactions: 0,
        slot: None,
        task: None,
    };
    let answer = call.run(&envelope, &cancel).instrument(span).await;
    let task = call.task.take();
    front.end(&id);
    if let Some(answer) = answer {
        front.out.send(answer).await;
    }
    // A task's status notifications that overtook this answer follow it.
    if let Some(task) = task {
        super::tasks::overtaken(&front, &task).await;
    }
}

struct Call<'a> {
    front: &'a Arc<Front>,
    /// The client's id, raw JSON text.
    id: &'a str,
    execution_id: ExecutionId,
    redactions: usize,
    /// The slot of the server the call was routed to (a task it creates belongs to it).
    slot: Option<usize>,
    /// lastmile's id of the task the call created, if it did.
    task: Option<String>,
}

impl Call<'_> {
    async fn run(
        &mut self,
        envelope: &Envelope<'_>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<Vec<u8>> {
        let front = self.front;
        let gate = front.session.gate();
        let redactor = front.session.redactor();
        // The gate comes first, even for a request that will be refused as malformed or a retry
        // whose requestState is forged: expiry and the rate limit hold for every request, and
        // every one is recorded.
        let admitted = gate.admit(RateBucket::Calls);
        let mut params = match envelope.params() {
            Ok(Some(p)) => p,
            _ => {
                let invalid = "tools/call needs a params object";
                return Some(self.refuse(admitted, "", None, invalid).await);
            }
        };
        let Some(name) = params.get_str("name").map(|n| n.into_owned()) else {
            let invalid = "tools/call needs `params.name`, a string";
            return Some(self.refuse(admitted, "", None, invalid).await);
        };
        // The audit keeps the arguments as the client wrote them (the envelope already read them
        // as JSON), scrubbed: the row never holds a secret, even one the model passed in.
        let arguments = match params.get("arguments") {
            None | Some("null") => None,
            Some(raw) if raw.starts_with('{') => {
                let (clean, hits) = redactor.scrub(raw);
                self.redactions += hits;
                Some(clean.into_owned())
            }
            Some(_) => {
                let invalid = "`arguments` must be an object";
                return Some(self.refuse(admitted, &name, None, invalid).await);
            }
        };
        if admitted.is_err() {
            return Some(self.refuse(admitted, &name, arguments, "").await);
        }
        let meta = params.get("_meta").and_then(|m| RawObject::parse(m).ok());
        let v2026 = speaks_2026(meta.as_ref());
        let client_token = meta
            .as_ref()
            .and_then(|m| m.get("progressToken").map(str::to_owned));

        let begin = |server: &str, tool: &str, args: Option<String>| {
            ExecutionRecord::begin(self.execution_id, &gate.who, server, tool, args)
        };
        // A retry with the input a waiting call asked for: it continues that call (one
        // execution id, one audit row), after the gate has admitted it as a request.
        if let Some(state) = params.get_str("requestState").map(|s| s.into_owned()) {
            let responses = params.get("inputResponses").map(str::to_owned);
            return self
                .resume(&state, &name, responses, client_token, arguments, cancel)
                .await;
        }
        let hub = &front.hub;
        // A call waiting for its server to start can be cancelled too (and is recorded).
        let manifest = tokio::select! {
            m = hub.manifest_for_name(&name, |m| m.tool(&name).map(|r| r.slot)) => m,
            _ = cancel.cancelled() => {
                let row = begin("", &scrub_text(redactor, name.clone()), arguments).finish(
                    ExecStatus::Cancelled,
                    Some("the request was cancelled by the client".into()),
                    self.redactions as u32,
                );
                gate.record(row).await;
                return None;
            }
        };
        let Some(route) = manifest.tool(&name) else {
            // In the namespace of one of this session's servers that is down: say why.
            if let Some((server, why)) = hub.why_down(&name) {
                let message = scrub_text(redactor, why);
                let row = begin(server, &scrub_text(redactor, name), arguments).finish(
                    ExecStatus::Error,
                    Some(message.clone()),
                    self.redactions as u32,
                );
                gate.record(row).await;
                return Some(self.tool_error(&message, v2026));
            }
            // The same answer for a hidden server's tool as for a name that never existed.
            let row = begin("", &scrub_text(redactor, name.clone()), arguments).finish(
                ExecStatus::Denied,
                Some("unknown tool".into()),
                self.redactions as u32,
            );
            gate.record(row).await;
            return Some(error_line(
                self.id,
                INVALID_PARAMS,
                &format!("unknown tool `{name}`"),
            ));
        };
        let slot = &hub.slots[route.slot];
        self.slot = Some(route.slot);
        // The child's own name may hold a secret (it is listed under an alias): scrub it here too.
        let pending = begin(
            &slot.server.name,
            &scrub_text(redactor, route.original.clone()),
            arguments,
        );
        let child = match slot.running_child() {
            Ok(child) => child,
            Err(message) => {
                let message = scrub_text(redactor, message);
                gate.record(pending.finish(
                    ExecStatus::Error,
                    Some(message.clone()),
                    self.redactions as u32,
                ))
                .await;
                return Some(self.tool_error(&message, v2026));
            }
        };

        params.set("name", json_string(&route.original));
        strip_lifecycle_meta(&mut params);
        let timeout = slot.call_timeout(&hub.defaults);
        let server = &slot.server.name;
        if v2026 {
            // The child may ask the client for input while it works: the call can take rounds.
            let link = Arc::clone(&child.link);
            return self
                .rounds(
                    params.to_json(),
                    link,
                    server,
                    &name,
                    client_token,
                    timeout,
                    cancel,
                    pending,
                )
                .await;
        }
        let progress = client_token.map(|token| ProgressRoute {
            token,
            sink: Arc::clone(&front.progress),
        });
        let outcome = child
            .link
            .call("tools/call", &mut params, progress, timeout, cancel)
            .await;
        self.conclude(outcome, server, v2026, pending).await
    }

    /// The client's answer for how the child call ended, and its audit row.
    async fn conclude(
        &mut self,
        outcome: RawOutcome,
        server: &str,
        v2026: bool,
        pending: PendingExecution,
    ) -> Option<Vec<u8>> {
        let (answer, status, error) = match outcome {
            RawOutcome::Answered(bytes) => self.answer(&bytes, server, v2026),
            RawOutcome::Closed => self.failure(
                format!("server `{server}` exited or closed its connection during the request"),
                ExecStatus::Error,
                v2026,
            ),
            RawOutcome::TimedOut(d) => self.failure(
                format!("server `{server}` did not answer within {d:?} (call_timeout); the request was cancelled"),
                ExecStatus::Timeout,
                v2026,
            ),
            // A cancelled request gets no response (the client has stopped waiting).
            RawOutcome::Cancelled => (None, ExecStatus::Cancelled, Some("the request was cancelled by the client".into())),
        };
        self.front
            .session
            .gate()
            .record(pending.finish(status, error, self.redactions as u32))
            .await;
        answer
    }

    /// A 2026-07-28 call whose child may ask the client for input: the first round here; if
    /// the child asks, this round answers with an input-required result and the rest of the
    /// call waits, on its own task, for the client's retry.
    #[allow(clippy::too_many_arguments)]
    async fn rounds(
        &mut self,
        params: String,
        link: Arc<crate::downstream::Link>,
        server: &str,
        tool: &str,
        client_token: Option<String>,
        timeout: std::time::Duration,
        cancel: &tokio_util::sync::CancellationToken,
        pending: PendingExecution,
    ) -> Option<Vec<u8>> {
        let front = self.front;
        let call = bridge::ChildCall {
            link,
            server: server.to_string(),
            method: "tools/call",
            params,
            timeout,
        };
        let mut rounds = Rounds::start(
            &front.bridge,
            Arc::clone(&front.progress),
            front.closing(),
            call,
            tool.to_string(),
            client_token,
        );
        match rounds.round(cancel).await {
            Step::Done(outcome) => self.conclude(outcome, server, true, pending).await,
            Step::Input(result) => {
                let line = response_line(self.id, "result", |o| {
                    o.extend_from_slice(result.as_bytes())
                });
                // The row is written once: by the conclusion, or when the client never came back.
                let row = Arc::new(std::sync::Mutex::new(Some(pending)));
                let (execution_id, redactions, slot) =
                    (self.execution_id, self.redactions, self.slot);
                let (server, concluding) = (server.to_string(), Arc::clone(front));
                let concluded = Arc::clone(&row);
                let conclude: bridge::Conclude = Box::new(move |outcome, id| {
                    Box::pin(async move {
                        let pending = concluded.lock().ok()?.take()?;
                        let mut call = Call {
                            front: &concluding,
                            id: &id,
                            execution_id,
                            redactions,
                            slot,
                            task: None,
                        };
                        call.conclude(outcome, &server, true, pending).await
                    })
                });
                let session = Arc::clone(&front.session);
                let abandoned: bridge::Abandoned = Box::new(move || {
                    Box::pin(async move {
                        let pending = row.lock().ok().and_then(|mut r| r.take());
                        if let Some(pending) = pending {
                            let row = pending.finish(
                                ExecStatus::Cancelled,
                                Some("the client did not come back with the input the call asked for".into()),
                                redactions as u32,
                            );
                            session.gate().record(row).await;
                        }
                    })
                });
                let task = tokio::spawn(
                    bridge::drive(front.closing().clone(), rounds, conclude, abandoned)
                        .instrument(tracing::Span::current()),
                );
                front.bridge.hold(task);
                Some(line)
            }
        }
    }

    /// Record and answer a call that goes no further: the gate's refusal when `admitted` is one,
    /// else the request's own fault (`invalid`). `tool` is the client's, scrubbed here.
    async fn refuse(
        &self,
        admitted: Result<(), Refused>,
        tool: &str,
        arguments: Option<String>,
        invalid: &str,
    ) -> Vec<u8> {
        let session = &self.front.session;
        let (status, message, answer) = match admitted {
            Err(Refused::Session(e)) => (
                ExecStatus::Denied,
                e.message.to_string(),
                mcp_error_line(self.id, &e),
            ),
            Err(Refused::RateLimited(e)) => (
                ExecStatus::RateLimited,
                e.message.to_string(),
                mcp_error_line(self.id, &e),
            ),
            Ok(()) => (
                ExecStatus::Denied,
                invalid.to_string(),
                error_line(self.id, INVALID_PARAMS, invalid),
            ),
        };
        let tool = scrub_text(session.redactor(), tool.to_owned());
        let row =
            ExecutionRecord::begin(self.execution_id, &session.gate().who, "", &tool, arguments)
                .finish(status, Some(message), self.redactions as u32);
        session.gate().record(row).await;
        answer
    }

    /// A retry that carries a waiting call's `requestState` and the client's input.
    async fn resume(
        &mut self,
        state: &str,
        tool: &str,
        responses: Option<String>,
        token: Option<String>,
        arguments: Option<String>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> Option<Vec<u8>> {
        let gate = self.front.session.gate();
        if let Err(e) = gate.live() {
            return Some(mcp_error_line(self.id, &e));
        }
        let resumed = bridge::resume(
            &self.front.bridge,
            self.id,
            state,
            tool,
            responses,
            token,
            cancel,
        )
        .await;
        match resumed {
            Ok(answer) => answer,
            Err(refusal) => {
                let tool = scrub_text(self.front.session.redactor(), tool.to_owned());
                let row =
                    ExecutionRecord::begin(self.execution_id, &gate.who, "", &tool, arguments)
                        .finish(
                            ExecStatus::Denied,
                            Some(format!("invalid requestState: {}", refusal.why())),
                            self.redactions as u32,
                        );
                gate.record(row).await;
                Some(bridge::invalid_state_line(self.id, refusal))
            }
        }
    }

    /// The client's response for the child's answer line, its audit status and error.
    fn answer(
        &mut self,
        line: &[u8],
        server: &str,
        v2026: bool,
    ) -> (Option<Vec<u8>>, ExecStatus, Option<String>) {
        let unreadable = || format!("server `{server}` sent an answer lastmile cannot read");
        let Ok(answer) = Envelope::parse(line) else {
            return self.failure(unreadable(), ExecStatus::Error, v2026);
        };
        let redactor = self.front.session.redactor();
        if let Some(error) = answer.member("error") {
            let (clean, hits) = redactor.scrub_bytes(error.as_bytes());
            self.redactions += hits;
            let Ok(clean) = std::str::from_utf8(&clean) else {
                return self.failure(unreadable(), ExecStatus::Error, v2026);
            };
            let message = RawObject::parse(clean)
                .ok()
                .and_then(|e| e.get_str("message").map(|m| m.into_owned()))
                .unwrap_or_default();
            let line = response_line(self.id, "error", |out| {
                out.extend_from_slice(clean.as_bytes())
            });
            return (Some(line), ExecStatus::Error, Some(message));
        }
        let Some(result) = answer.member("result") else {
            return self.failure(unreadable(), ExecStatus::Error, v2026);
        };
        let (clean, hits) = redactor.scrub_bytes(result.as_bytes());
        self.redactions += hits;
        let Ok(clean) = std::str::from_utf8(&clean) else {
            return self.failure(unreadable(), ExecStatus::Error, v2026);
        };
        let Ok(mut result) = RawObject::parse(clean) else {
            return self.failure(unreadable(), ExecStatus::Error, v2026);
        };
        let result_type = result.get_str("resultType").map(|t| t.into_owned());
        // A task: the client gets lastmile's id for it, bound to this session.
        let task = match self.slot {
            Some(slot) => super::tasks::adopt(
                &self.front.session,
                slot,
                server,
                self.execution_id,
                &mut result,
            ),
            None => Ok(None),
        };
        let Ok(task) = task else {
            return self.failure(unreadable(), ExecStatus::Error, v2026);
        };
        self.task.clone_from(&task);
        let complete = task.is_none() && result_type.as_deref().is_none_or(|t| t == "complete");
        let (status, error) = if result.get("isError") == Some("true") {
            (
                ExecStatus::ToolError,
                Some(first_text(result.get("content"))),
            )
        } else {
            (ExecStatus::Ok, None)
        };
        if complete {
            if result.get("content").is_none() {
                result.set("content", "[]".into());
            }
            stamp_execution_id(&mut result, self.execution_id);
            if v2026 && result_type.is_none() {
                result.set("resultType", "\"complete\"".into());
            }
        } else if task.is_some() {
            stamp_execution_id(&mut result, self.execution_id);
        }
        let out = response_line(self.id, "result", |out| result.write(out));
        (Some(out), status, error)
    }

    /// lastmile's own account of a failed call, as a tool-level error the model can read.
    fn failure(
        &self,
        message: String,
        status: ExecStatus,
        v2026: bool,
    ) -> (Option<Vec<u8>>, ExecStatus, Option<String>) {
        let message = scrub_text(self.front.session.redactor(), message);
        (
            Some(self.tool_error(&message, v2026)),
            status,
            Some(message),
        )
    }

    fn tool_error(&self, message: &str, v2026: bool) -> Vec<u8> {
        let mut result = RawObject::default();
        result.set(
            "content",
            format!("[{{\"type\":\"text\",\"text\":{}}}]", json_string(message)),
        );
        result.set("isError", "true".into());
        stamp_execution_id(&mut result, self.execution_id);
        if v2026 {
            result.set("resultType", "\"complete\"".into());
        }
        response_line(self.id, "result", |out| result.write(out))
    }
}

/// An error lastmile writes itself (the gate's refusals), with its code and data.
pub(crate) fn mcp_error_line(id: &str, e: &rmcp::ErrorData) -> Vec<u8> {
    let error = serde_json::to_string(e)
        .unwrap_or_else(|_| "{\"code\":-32603,\"message\":\"internal error\"}".into());
    response_line(id, "error", |out| out.extend_from_slice(error.as_bytes()))
}

/// Whether a request's `_meta` names 2026-07-28 (or later): its result then needs `resultType`.
pub(crate) fn speaks_2026(meta: Option<&RawObject<'_>>) -> bool {
    meta.and_then(|m| m.get_str(PROTOCOL_VERSION_META))
        .is_some_and(|v| *v >= *V_2026_07_28)
}

/// Put the execution id in the result's `_meta`, so the user can find the audit row.
fn stamp_execution_id(result: &mut RawObject<'_>, id: ExecutionId) {
    let value = json_string(&id.to_string());
    let meta = match result.get("_meta") {
        None => {
            let mut meta = RawObject::default();
            meta.set(EXECUTION_ID_META, value);
            meta.to_json()
        }
        Some(text) => match RawObject::parse(text) {
            Ok(mut meta) => {
                meta.set(EXECUTION_ID_META, value);
                meta.to_json()
            }
            // Not an object: left as the child sent it.
            Err(_) => return,
        },
    };
    result.set("_meta", meta);
}

/// Remove the 2026-07-28 lifecycle keys from the params' `_meta` before the request goes on.
pub(crate) fn strip_lifecycle_meta(params: &mut RawObject<'_>) {
    let Some(text) = params.get("_meta") else {
        return;
    };
    let Ok(mut meta) = RawObject::parse(text) else {
        return;
    };
    let lifecycle: Vec<String> = meta
        .keys()
        .filter(|k| k.starts_with(LIFECYCLE_META))
        .map(str::to_owned)
        .collect();
    if lifecycle.is_empty() {
        return;
    }
    for key in &lifecycle {
        meta.remove(key);
    }
    let text = meta.to_json();
    params.set("_meta", text);
}

/// The text of a result's first content block (for the audit row of a tool-level error).
fn first_text(content: Option<&str>) -> String {
    content
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .and_then(|c| c.get(0)?.get("text")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_meta_is_removed_and_the_rest_kept() {
        let text = r#"{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":1,"app/x":2}}"#;
        let mut p = RawObject::parse(text).unwrap();
        strip_lifecycle_meta(&mut p);
        assert_eq!(
            p.to_json(),
            r#"{"name":"x","_meta":{"progressToken":1,"app/x":2}}"#
        );
    }

    #[test]
    fn the_execution_id_joins_the_results_meta() {
        let id = new_execution_id();
        let mut r = RawObject::parse(r#"{"content":[],"_meta":{"a":1}}"#).unwrap();
        stamp_execution_id(&mut r, id);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["_meta"]["a"], 1);
        assert_eq!(v["_meta"][EXECUTION_ID_META], id.to_string());
        let mut r = RawObject::parse(r#"{"content":[]}"#).unwrap();
        stamp_execution_id(&mut r, id);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["_meta"][EXECUTION_ID_META], id.to_string());
    }

    #[test]
    fn first_text_reads_the_first_block() {
        assert_eq!(
            first_text(Some(r#"[{"type":"text","text":"boom"}]"#)),
            "boom"
        );
        assert_eq!(first_text(Some("[]")), "");
        assert_eq!(first_text(None), "");
    }
}
