//! The choke point in front of the face: every request the client sends passes the session's
//! gate here — a live token, its tier's rate-limit bucket, and an audit row — before the face
//! routes it. Only `initialize`, `server/discover` and `ping` are exempt (they reach no child and
//! reveal no catalog). A method the face does not route is refused by the face's own default,
//! after the gate, so it is rate limited and audited like the rest.
//!
//! `tools/call` is admitted and audited by the face itself, because its row carries the
//! execution id, the resolved server and the (scrubbed) arguments; this layer hands it through
//! without a second charge. Requests about tasks (`tasks/*`) are routed by the front to
//! [`super::tasks`], which gates them the same way (the tasks bucket) before anything else.

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::model::{ClientNotification, ClientRequest, ProtocolVersion, Reference, ServerResult};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, Service};
use rmcp::{ErrorData as McpError, ServerHandler};

use super::face::Face;
use super::gate::Refused;
use super::session::ClientSession;
use crate::audit::{ExecStatus, ExecutionRecord, new_execution_id};
use crate::identity::RateBucket;

/// The face behind the gate: what `serve` hands to the transport.
pub struct Guarded {
    face: Face,
}

impl Guarded {
    /// Put `face` behind its session's gate.
    pub fn new(face: Face) -> Self {
        Guarded { face }
    }

    /// The face behind the gate.
    pub fn face(&self) -> &Face {
        &self.face
    }
}

/// How the gate treats one request kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Reaches no child and reveals nothing: not gated.
    Exempt,
    /// `tools/call`: gated and audited by the face.
    ToolCall,
    /// Gated here: draws from `bucket`, audited here with `target`.
    Gated {
        /// The rate-limit bucket.
        bucket: RateBucket,
        /// The prompt name, URI, task id or method the request is about ("" for lists).
        target: String,
    },
}

/// The gate's view of a request.
pub(crate) fn admission(request: &ClientRequest) -> Admission {
    use ClientRequest as R;
    let reads = |target: String| Admission::Gated {
        bucket: RateBucket::Reads,
        target,
    };
    let tasks = |target: String| Admission::Gated {
        bucket: RateBucket::Tasks,
        target,
    };
    match request {
        R::InitializeRequest(_) | R::DiscoverRequest(_) | R::PingRequest(_) => Admission::Exempt,
        R::CallToolRequest(_) => Admission::ToolCall,
        R::GetPromptRequest(r) => reads(r.params.name.clone()),
        R::ReadResourceRequest(r) => reads(r.params.uri.clone()),
        R::SubscribeRequest(r) => reads(r.params.uri.clone()),
        R::UnsubscribeRequest(r) => reads(r.params.uri.clone()),
        R::CompleteRequest(r) => reads(match &r.params.r#ref {
            Reference::Prompt(p) => p.name.clone(),
            Reference::Resource(res) => res.uri.clone(),
            _ => String::new(),
        }),
        R::GetTaskRequest(r) => tasks(r.params.task_id.clone()),
        R::UpdateTaskRequest(r) => tasks(r.params.task_id.clone()),
        R::CancelTaskRequest(r) => tasks(r.params.task_id.clone()),
        R::ListToolsRequest(_)
        | R::ListPromptsRequest(_)
        | R::ListResourcesRequest(_)
        | R::ListResourceTemplatesRequest(_)
        | R::SetLevelRequest(_)
        | R::SubscriptionsListenRequest(_)
        | R::ListSkillsRequest(_)
        | R::GetSkillRequest(_)
        | R::ReadResourceDirectoryRequest(_) => reads(String::new()),
        R::CustomRequest(r) => reads(r.method.clone()),
        // A kind added to a later rmcp is gated like a read; the face refuses what it does not
        // route.
        _ => reads(request.method().to_string()),
    }
}

impl Guarded {
    fn session(&self) -> &Arc<ClientSession> {
        self.face.session()
    }

    /// The server a gated request is about, from the manifest (for its audit row).
    fn server_of(&self, request_kind: &str, target: &str) -> String {
        let manifest = self.face.hub().manifest();
        let slot = match request_kind {
            "prompts/get" => manifest.prompt(target).map(|r| r.slot),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                manifest.resource(target).map(|r| r.slot)
            }
            "completion/complete" => manifest
                .prompt(target)
                .map(|r| r.slot)
                .or_else(|| manifest.resource(target).map(|r| r.slot)),
            _ => None,
        };
        slot.map(|i| self.face.hub().slots[i].server.name.to_string())
            .unwrap_or_default()
    }

    async fn audit(
        &self,
        method: &str,
        server: &str,
        target: &str,
        status: ExecStatus,
        error: Option<&str>,
    ) {
        audit_request(self.session(), method, server, target, status, error).await;
    }
}

/// Record a request other than `tools/call`: its method, server and target (a prompt name, a
/// URI), scrubbed, with its outcome.
pub(crate) async fn audit_request(
    session: &ClientSession,
    method: &str,
    server: &str,
    target: &str,
    status: ExecStatus,
    error: Option<&str>,
) {
    let gate = session.gate();
    let redactor = session.redactor();
    // The row never holds a secret, even one the client put in a URI or a method's name.
    let (target, hits_t) = redactor.scrub(target);
    let (method, hits_m) = redactor.scrub(method);
    let (error, hits_e) = match error {
        Some(e) => {
            let (clean, n) = redactor.scrub(e);
            (Some(clean.into_owned()), n)
        }
        None => (None, 0),
    };
    let row = request_row(gate, &method, server, &target).finish(
        status,
        error,
        u32::try_from(hits_t + hits_m + hits_e).unwrap_or(u32::MAX),
    );
    gate.record(row).await;
}

/// The audit row of a request other than `tools/call`.
fn request_row(
    gate: &super::gate::Gate,
    method: &str,
    server: &str,
    target: &str,
) -> crate::audit::PendingExecution {
    ExecutionRecord::begin_request(new_execution_id(), &gate.who, method, server, target)
}

impl Service<RoleServer> for Guarded {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, McpError> {
        let (bucket, target) = match admission(&request) {
            Admission::Exempt | Admission::ToolCall => {
                return self.face.handle_request(request, context).await;
            }
            Admission::Gated { bucket, target } => (bucket, target),
        };
        let method = request.method().to_string();
        let gate = self.session().gate();
        if let Err(refused) = gate.admit(bucket) {
            let (status, e) = match refused {
                Refused::Session(e) => (ExecStatus::Denied, e),
                Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
            };
            self.audit(&method, "", &target, status, Some(&e.message))
                .await;
            return Err(e);
        }
        let answer = self.face.handle_request(request, context).await;
        let server = self.server_of(&method, &target);
        match &answer {
            Ok(_) => {
                self.audit(&method, &server, &target, ExecStatus::Ok, None)
                    .await
            }
            Err(e) => {
                self.audit(
                    &method,
                    &server,
                    &target,
                    ExecStatus::Error,
                    Some(&e.message),
                )
                .await
            }
        }
        answer
    }

    async fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> Result<(), McpError> {
        // A client notification (cancelled, progress, roots changed) after expiry reaches no
        // child: roots changes would make children ask the client again.
        if self.session().gate().live().is_err()
            && matches!(
                notification,
                ClientNotification::RootsListChangedNotification(_)
            )
        {
            return Ok(());
        }
        self.face.handle_notification(notification, context).await
    }

    fn get_info(&self) -> rmcp::model::ServerConfig {
        ServerHandler::get_info(&self.face)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        ServerHandler::supported_protocol_versions(&self.face)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::*;

    /// Only the lifecycle requests are exempt; everything else is gated (an unknown kind
    /// included, by the match's fallback arm).
    #[test]
    fn only_lifecycle_requests_are_exempt() {
        let exempt = [
            ClientRequest::PingRequest(PingRequest::default()),
            ClientRequest::InitializeRequest(InitializeRequest::new(
                InitializeRequestParams::default(),
            )),
        ];
        for r in &exempt {
            assert_eq!(admission(r), Admission::Exempt, "{}", r.method());
        }
        let gated = [
            ClientRequest::ListToolsRequest(ListToolsRequest::default()),
            ClientRequest::ListPromptsRequest(ListPromptsRequest::default()),
            ClientRequest::ListResourcesRequest(ListResourcesRequest::default()),
            ClientRequest::ListResourceTemplatesRequest(ListResourceTemplatesRequest::default()),
            ClientRequest::ReadResourceRequest(ReadResourceRequest::new(
                ReadResourceRequestParams::new("x://y"),
            )),
            ClientRequest::GetPromptRequest(GetPromptRequest::new(GetPromptRequestParams::new(
                "p",
            ))),
        ];
        for r in &gated {
            assert!(
                matches!(admission(r), Admission::Gated { .. }),
                "{}",
                r.method()
            );
        }
    }
}
