//! The MCP face: the server side the client talks to. Lists come from the manifest; requests are
//! routed by name (or URI) to the child that owns them and answered with the child's own result;
//! notifications the client sends reach the children they concern.

#![allow(deprecated)] // logging, subscriptions and roots are deprecated in rmcp 3.x; we forward them

use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, ClientRequest,
    CompleteRequest, CompleteRequestParams, CompleteResult, ContentBlock, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeRequestParams,
    InitializeResult, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequest, ReadResourceRequestParams,
    ReadResourceResponse, Reference, ServerCapabilities, ServerConfig, ServerResult,
    SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest,
    UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceError};

use super::gate::Refused;
use super::hub::{Hub, Slot};
use super::session::ClientSession;
use crate::audit::{ExecStatus, ExecutionId, ExecutionRecord, new_execution_id};
use crate::downstream::{CallOutcome, Child};
use crate::identity::RateBucket;
use crate::secrets::SharedRedactor;
use crate::secrets::{Withheld, scrub, scrub_text};
use rmcp::model::{JsonObject, MetaObject};
use tracing::Instrument;

/// lastmile's MCP server side for one session.
#[derive(Clone)]
pub struct Face {
    hub: Arc<Hub>,
    session: Arc<ClientSession>,
}

/// What a routed request found.
struct Target<'a> {
    slot: &'a Slot,
    child: Arc<Child>,
}

impl Face {
    /// A face for one session in front of its hub.
    pub fn new(hub: Arc<Hub>, session: Arc<ClientSession>) -> Self {
        Face { hub, session }
    }

    /// The session this face serves.
    pub fn session(&self) -> &Arc<ClientSession> {
        &self.session
    }

    /// The hub behind this face.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// First contact: remember the client and start the children with its capabilities.
    fn touch(&self, ctx: &RequestContext<RoleServer>) {
        // Only the first contact does any work; later requests pay two atomic loads.
        if self.hub.upstream.knows_client() {
            return;
        }
        self.hub.upstream.set_peer(&ctx.peer);
        if let Some(caps) = ctx.client_capabilities() {
            self.hub.upstream.set_capabilities(caps);
        }
        self.hub.ensure_started();
    }

    fn target(&self, index: usize) -> Result<Target<'_>, String> {
        let slot = &self.hub.slots[index];
        // Why a child is not running can quote what the child said: scrubbed at the source,
        // for every caller that puts it in an answer or an audit row.
        slot.running_child()
            .map(|child| Target { slot, child })
            .map_err(|why| scrub_text(self.hub.upstream.redactor(), why))
    }

    /// Forward a request to the child and bring back its answer, redacted. `redactions` counts
    /// the secrets replaced on the way.
    async fn forward(
        &self,
        t: &Target<'_>,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
        redactions: &mut usize,
    ) -> Result<ServerResult, Failure> {
        let timeout = t.slot.call_timeout(&self.hub.defaults);
        let name = &t.slot.server.name;
        let outcome = t
            .child
            .forward(
                request,
                ctx.meta
                    .get_progress_token()
                    .map(|token| (token, Arc::clone(&self.hub.upstream))),
                timeout,
                ctx.ct.clone(),
            )
            .await;
        let redactor = self.hub.upstream.redactor();
        let (failure, status) = match outcome {
            CallOutcome::Answered(Ok(result)) => {
                return scrub_result(redactor, name, result)
                    .map(|(result, hits)| {
                        *redactions += hits;
                        result
                    })
                    .map_err(|e| Failure::Message(e.to_string(), ExecStatus::Error));
            }
            CallOutcome::Answered(Err(ServiceError::McpError(e))) => {
                return match scrub(redactor, name, e) {
                    Ok((e, hits)) => {
                        *redactions += hits;
                        Err(Failure::Child(e))
                    }
                    Err(w) => Err(Failure::Message(w.to_string(), ExecStatus::Error)),
                };
            }
            CallOutcome::Answered(Err(
                ServiceError::TransportClosed | ServiceError::TransportSend(_),
            )) => (
                format!("server `{name}` exited or closed its connection during the request"),
                ExecStatus::Error,
            ),
            CallOutcome::Answered(Err(other)) => (
                format!("server `{name}` failed: {other}"),
                ExecStatus::Error,
            ),
            CallOutcome::TimedOut(d) => (
                format!(
                    "server `{name}` did not answer within {d:?} (call_timeout); the request was cancelled"
                ),
                ExecStatus::Timeout,
            ),
            CallOutcome::Cancelled => (
                "the request was cancelled by the client".into(),
                ExecStatus::Cancelled,
            ),
        };
        Err(Failure::Message(scrub_text(redactor, failure), status))
    }
}

/// Scrub the typed result inside a `ServerResult` (each variant on its own: the union itself
/// does not round-trip through JSON unambiguously).
fn scrub_result(
    redactor: &SharedRedactor,
    server: &str,
    result: ServerResult,
) -> Result<(ServerResult, usize), Withheld> {
    Ok(match result {
        ServerResult::CallToolResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::CallToolResult(r), n)
        }
        ServerResult::InputRequiredResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::InputRequiredResult(r), n)
        }
        ServerResult::CreateTaskResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::CreateTaskResult(r), n)
        }
        ServerResult::GetPromptResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::GetPromptResult(r), n)
        }
        ServerResult::ReadResourceResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::ReadResourceResult(r), n)
        }
        ServerResult::CompleteResult(r) => {
            let (r, n) = scrub(redactor, server, r)?;
            (ServerResult::CompleteResult(r), n)
        }
        other => (other, 0),
    })
}

/// Why a forwarded request did not produce a result.
enum Failure {
    /// The child's own JSON-RPC error: passed through unchanged.
    Child(McpError),
    /// lastmile's account of what went wrong (the child died, timed out, …).
    Message(String, ExecStatus),
}

impl Failure {
    /// For requests other than tools/call, every failure is a JSON-RPC error.
    fn into_error(self) -> McpError {
        match self {
            Failure::Child(e) => e,
            Failure::Message(m, _) => McpError::internal_error(m, None),
        }
    }
}

/// The text of a result's first content block (for the audit row of a tool-level error).
fn first_text(r: &CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Put the execution id in the result's `_meta`, so the user can find the audit row.
fn with_execution_id(response: CallToolResponse, id: ExecutionId) -> CallToolResponse {
    match response {
        CallToolResponse::Complete(mut r) => {
            r.meta
                .get_or_insert_with(|| MetaObject(JsonObject::new()))
                .0
                .insert(
                    EXECUTION_ID_META.into(),
                    serde_json::Value::String(id.to_string()),
                );
            CallToolResponse::Complete(r)
        }
        other => other,
    }
}

/// How long a list request waits for servers that are starting and have no cache entry; the
/// rest are announced with list_changed when they come up.
const LIST_GRACE: std::time::Duration = std::time::Duration::from_millis(1500);

/// The `_meta` key carrying the audit log's execution id.
pub const EXECUTION_ID_META: &str = "lastmile/executionId";

/// A tool-level error result: the tool could not run, and the model should read why.
fn tool_error(message: String) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(message)]))
}

fn unexpected(what: &str) -> McpError {
    McpError::internal_error(
        format!("the server answered {what} with an unexpected result type"),
        None,
    )
}

impl ServerHandler for Face {
    fn get_info(&self) -> ServerConfig {
        let mut capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            // Tasks children create are routed under lastmile's own ids.
            .enable_tasks()
            .build();
        capabilities.experimental = None;
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("lastmile", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "lastmile gateway: tools and prompts of several MCP servers, named {server}__{name}."
                .into(),
        );
        info
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        ctx.peer.set_peer_info(request.clone());
        self.hub
            .upstream
            .set_capabilities(request.capabilities.clone());
        self.touch(&ctx);
        self.negotiate_initialize(&request)
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.hub.upstream.set_peer(&ctx.peer);
    }

    async fn on_roots_list_changed(&self, _ctx: NotificationContext<RoleServer>) {
        for slot in &self.hub.slots {
            if let Some(child) = slot.child.load_full() {
                let _ = child.peer.notify_roots_list_changed().await;
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.touch(&ctx);
        self.hub.wait_for_lists(LIST_GRACE).await;
        self.hub.mark_listed();
        Ok(ListToolsResult::with_all_items(
            self.hub.manifest().tools.clone(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        self.touch(&ctx);
        let execution_id = new_execution_id();
        let span =
            tracing::info_span!("tools/call", execution_id = %execution_id, tool = %request.name);
        self.call_tool_audited(execution_id, request, ctx)
            .instrument(span)
            .await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.touch(&ctx);
        self.hub.wait_for_lists(LIST_GRACE).await;
        self.hub.mark_listed();
        Ok(ListPromptsResult::with_all_items(
            self.hub.manifest().prompts.clone(),
        ))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.touch(&ctx);
        let (slot, child, original) = self.route_prompt(&request.name).await?;
        let t = Target {
            slot: &self.hub.slots[slot],
            child,
        };
        request.name = original;
        let mut redactions = 0usize;
        match self
            .forward(
                &t,
                ClientRequest::GetPromptRequest(GetPromptRequest::new(request)),
                &ctx,
                &mut redactions,
            )
            .await
        {
            Ok(ServerResult::GetPromptResult(r)) => Ok(GetPromptResponse::Complete(r)),
            Ok(ServerResult::InputRequiredResult(r)) => Ok(GetPromptResponse::InputRequired(r)),
            Ok(_) => Err(unexpected("prompts/get")),
            Err(f) => Err(f.into_error()),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.touch(&ctx);
        self.hub.wait_for_lists(LIST_GRACE).await;
        self.hub.mark_listed();
        Ok(ListResourcesResult::with_all_items(
            self.hub.manifest().resources.clone(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.touch(&ctx);
        self.hub.wait_for_lists(LIST_GRACE).await;
        Ok(ListResourceTemplatesResult::with_all_items(
            self.hub.manifest().templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.touch(&ctx);
        let (t, original) = self.resource_target(&request.uri).await?;
        let mut request = request;
        if let Some(original) = original {
            request.uri = original;
        }
        let mut redactions = 0usize;
        match self
            .forward(
                &t,
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request)),
                &ctx,
                &mut redactions,
            )
            .await
        {
            Ok(ServerResult::ReadResourceResult(r)) => Ok(ReadResourceResponse::Complete(r)),
            Ok(ServerResult::InputRequiredResult(r)) => Ok(ReadResourceResponse::InputRequired(r)),
            Ok(_) => Err(unexpected("resources/read")),
            Err(f) => Err(f.into_error()),
        }
    }

    async fn subscribe(
        &self,
        mut request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.touch(&ctx);
        let t = self.subscription_route(&mut request.uri).await?;
        let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        self.forward_subscription(&t, request, &ctx).await
    }

    async fn unsubscribe(
        &self,
        mut request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.touch(&ctx);
        let t = self.subscription_route(&mut request.uri).await?;
        let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
        self.forward_subscription(&t, request, &ctx).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.touch(&ctx);
        self.hub.wait_started().await;
        for slot in &self.hub.slots {
            let Some(child) = slot.child.load_full() else {
                continue;
            };
            let offers_logging = child
                .peer
                .peer_info()
                .is_some_and(|i| i.capabilities.logging.is_some());
            if offers_logging && let Err(e) = child.peer.set_level(request.clone()).await {
                tracing::warn!(server = %slot.server.name, "logging/setLevel failed: {e}");
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        mut request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.touch(&ctx);
        let t = match &mut request.r#ref {
            Reference::Prompt(p) => {
                let manifest = self
                    .hub
                    .manifest_for_name(&p.name, |m| m.prompt(&p.name).map(|r| r.slot))
                    .await;
                let Some(route) = manifest.prompt(&p.name) else {
                    return Err(McpError::invalid_params(
                        format!("unknown prompt `{}`", p.name),
                        None,
                    ));
                };
                p.name = route.original.clone();
                self.target(route.slot)
                    .map_err(|m| McpError::internal_error(m, None))?
            }
            Reference::Resource(r) => {
                let (t, original) = self.resource_target(&r.uri).await?;
                if let Some(original) = original {
                    r.uri = original;
                }
                t
            }
            _ => {
                return Err(McpError::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        let mut redactions = 0usize;
        match self
            .forward(
                &t,
                ClientRequest::CompleteRequest(CompleteRequest::new(request)),
                &ctx,
                &mut redactions,
            )
            .await
        {
            Ok(ServerResult::CompleteResult(r)) => Ok(r),
            Ok(_) => Err(unexpected("completion/complete")),
            Err(f) => Err(f.into_error()),
        }
    }
}

impl Face {
    /// One tool call, from admission to the audit row: the execution id is made before the call,
    /// travels in the tracing span, lands in the audit row and comes back in the result's `_meta`.
    async fn call_tool_audited(
        &self,
        execution_id: ExecutionId,
        mut request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let gate = self.session.gate();
        let redactor = self.hub.upstream.redactor();
        // The audit copy of the arguments never holds a secret, even one the model passed in.
        let mut redactions = 0usize;
        let arguments = request.arguments.as_ref().map(|a| {
            let text = serde_json::to_string(a).unwrap_or_default();
            let (clean, hits) = redactor.scrub(&text);
            redactions += hits;
            clean.into_owned()
        });
        let begin = |server: &str, tool: &str, args: Option<String>| {
            ExecutionRecord::begin(execution_id, &gate.who, server, tool, args)
        };
        if let Err(refused) = gate.admit(RateBucket::Calls) {
            let (status, e) = match refused {
                Refused::Session(e) => (ExecStatus::Denied, e),
                Refused::RateLimited(e) => (ExecStatus::RateLimited, e),
            };
            let row = begin(
                "",
                &scrub_text(redactor, request.name.to_string()),
                arguments,
            )
            .finish(status, Some(e.message.to_string()), redactions as u32);
            gate.record(row).await;
            return Err(e);
        }
        // A call waiting for its server to start can be cancelled too (and is recorded).
        let manifest = tokio::select! {
            m = self.hub.manifest_for_name(&request.name, |m| m.tool(&request.name).map(|r| r.slot)) => m,
            _ = ctx.ct.cancelled() => {
                let message = "the request was cancelled by the client";
                let row = begin("", &scrub_text(redactor, request.name.to_string()), arguments).finish(
                    ExecStatus::Cancelled,
                    Some(message.into()),
                    redactions as u32,
                );
                gate.record(row).await;
                return Err(McpError::internal_error(message, None));
            }
        };
        let Some(route) = manifest.tool(&request.name) else {
            // In the namespace of one of this session's servers that is down: say why.
            if let Some((server, why)) = self.hub.why_down(&request.name) {
                let message = scrub_text(redactor, why);
                let tool = scrub_text(redactor, request.name.to_string());
                let row = begin(server, &tool, arguments).finish(
                    ExecStatus::Error,
                    Some(message.clone()),
                    redactions as u32,
                );
                gate.record(row).await;
                return Ok(with_execution_id(tool_error(message), execution_id));
            }
            // The same answer for a hidden server's tool as for a name that never existed.
            let e = McpError::invalid_params(
                format!(
                    "unknown tool `{}`",
                    scrub_text(redactor, request.name.to_string())
                ),
                None,
            );
            let row = begin(
                "",
                &scrub_text(redactor, request.name.to_string()),
                arguments,
            )
            .finish(
                ExecStatus::Denied,
                Some("unknown tool".into()),
                redactions as u32,
            );
            gate.record(row).await;
            return Err(e);
        };
        let server = self.hub.slots[route.slot].server.name.clone();
        // The child's own name may hold a secret (it is listed under an alias): scrub it here too.
        let pending = begin(
            &server,
            &scrub_text(redactor, route.original.clone()),
            arguments,
        );
        let t = match self.target(route.slot) {
            Ok(t) => t,
            Err(message) => {
                let message = scrub_text(redactor, message);
                gate.record(pending.finish(
                    ExecStatus::Error,
                    Some(message.clone()),
                    redactions as u32,
                ))
                .await;
                return Ok(with_execution_id(tool_error(message), execution_id));
            }
        };
        request.name = route.original.clone().into();
        let answer = self
            .forward(
                &t,
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                &ctx,
                &mut redactions,
            )
            .await;
        let (outcome, status, error) = match answer {
            Ok(ServerResult::CallToolResult(r)) => {
                let status = if r.is_error == Some(true) {
                    ExecStatus::ToolError
                } else {
                    ExecStatus::Ok
                };
                let error = (status == ExecStatus::ToolError).then(|| first_text(&r));
                (Ok(CallToolResponse::Complete(r)), status, error)
            }
            Ok(ServerResult::InputRequiredResult(r)) => {
                (Ok(CallToolResponse::InputRequired(r)), ExecStatus::Ok, None)
            }
            Ok(ServerResult::CreateTaskResult(mut r)) => {
                // The client gets lastmile's id for the task, bound to this session.
                r.task.task_id = self.session.tasks().register(
                    route.slot,
                    &server,
                    &r.task.task_id,
                    &gate.who,
                    execution_id,
                );
                (Ok(CallToolResponse::Task(r)), ExecStatus::Ok, None)
            }
            Ok(ServerResult::EmptyResult(_)) => (
                Ok(CallToolResponse::Complete(CallToolResult::success(
                    Vec::new(),
                ))),
                ExecStatus::Ok,
                None,
            ),
            Ok(_) => {
                let e = unexpected("tools/call");
                let m = e.message.to_string();
                (Err(e), ExecStatus::Error, Some(m))
            }
            Err(Failure::Child(e)) => {
                let m = e.message.to_string();
                (Err(e), ExecStatus::Error, Some(m))
            }
            Err(Failure::Message(m, status)) => (Ok(tool_error(m.clone())), status, Some(m)),
        };
        gate.record(pending.finish(status, error, redactions as u32))
            .await;
        outcome.map(|r| with_execution_id(r, execution_id))
    }

    /// Subscribe to (or, with `on` false, unsubscribe from) `uri` at the child that serves it,
    /// on behalf of a 2026-07-28 `subscriptions/listen`. The error, if any, is scrubbed.
    pub(crate) async fn subscribe_uri(&self, uri: &str, on: bool) -> Result<(), String> {
        let mut uri = uri.to_owned();
        let t = self
            .subscription_route(&mut uri)
            .await
            .map_err(|e| e.message.to_string())?;
        let answer = if on {
            t.child
                .peer
                .subscribe(SubscribeRequestParams::new(uri))
                .await
        } else {
            t.child
                .peer
                .unsubscribe(UnsubscribeRequestParams::new(uri))
                .await
        };
        answer.map_err(|e| scrub_text(self.hub.upstream.redactor(), e.to_string()))
    }

    /// The child a subscription goes to; `uri` becomes the one the child knows (an alias is
    /// mapped back).
    async fn subscription_route(&self, uri: &mut String) -> Result<Target<'_>, McpError> {
        let (t, original) = self.subscription_target(uri).await?;
        if let Some(original) = original {
            *uri = original;
        }
        Ok(t)
    }

    /// Forward a subscribe or unsubscribe; the child's error comes back scrubbed.
    async fn forward_subscription(
        &self,
        t: &Target<'_>,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut redactions = 0usize;
        self.forward(t, request, ctx, &mut redactions)
            .await
            .map(|_| ())
            .map_err(Failure::into_error)
    }

    /// Where a subscription to `uri` goes: the server that lists it or whose template matches;
    /// else, for a URI no server lists (a resource that does not exist yet, say), the one
    /// permitted server that offers subscriptions; else a clear error.
    async fn subscription_target(
        &self,
        uri: &str,
    ) -> Result<(Target<'_>, Option<String>), McpError> {
        let manifest = self
            .hub
            .manifest_for(|m| m.resource(uri).map(|r| r.slot))
            .await;
        if manifest.resource(uri).is_some() {
            return self.resource_target(uri).await;
        }
        let offering: Vec<usize> = (0..self.hub.slots.len())
            .filter(|i| {
                self.hub.slots[*i].child.load().as_ref().is_some_and(|c| {
                    c.peer.peer_info().is_some_and(|info| {
                        info.capabilities
                            .resources
                            .as_ref()
                            .is_some_and(|r| r.subscribe == Some(true))
                    })
                })
            })
            .collect();
        match offering.as_slice() {
            [one] => {
                let t = self
                    .target(*one)
                    .map_err(|m| McpError::internal_error(m, None))?;
                Ok((t, None))
            }
            [] => Err(McpError::resource_not_found(
                format!(
                    "unknown resource `{uri}`: no server lists it, and none offers subscriptions"
                ),
                None,
            )),
            several => Err(McpError::resource_not_found(
                format!(
                    "unknown resource `{uri}`: no server lists it or has a template for it, and {} servers offer subscriptions ({}), so lastmile cannot tell which one it belongs to",
                    several.len(),
                    several
                        .iter()
                        .map(|i| self.hub.slots[*i].server.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            )),
        }
    }

    /// Where a request for prompt `name` goes: the slot, its child, and the child's own name.
    pub(crate) async fn route_prompt(
        &self,
        name: &str,
    ) -> Result<(usize, Arc<Child>, String), McpError> {
        let manifest = self
            .hub
            .manifest_for_name(name, |m| m.prompt(name).map(|r| r.slot))
            .await;
        let Some(route) = manifest.prompt(name) else {
            if let Some((_, why)) = self.hub.why_down(name) {
                let why = scrub_text(self.hub.upstream.redactor(), why);
                return Err(McpError::internal_error(why, None));
            }
            return Err(McpError::invalid_params(
                format!("unknown prompt `{name}`"),
                None,
            ));
        };
        let t = self
            .target(route.slot)
            .map_err(|m| McpError::internal_error(m, None))?;
        Ok((route.slot, t.child, route.original.clone()))
    }

    /// Where a read of `uri` goes: the slot, its child, and the URI the child knows (when the
    /// client used an alias).
    pub(crate) async fn route_resource(
        &self,
        uri: &str,
    ) -> Result<(usize, Arc<Child>, Option<String>), McpError> {
        let (t, original) = self.resource_target(uri).await?;
        let slot = self
            .hub
            .slots
            .iter()
            .position(|s| std::ptr::eq(s, t.slot))
            .unwrap_or_default();
        Ok((slot, t.child, original))
    }

    /// The child serving `uri`, and the URI the child knows it by when the client used an alias.
    async fn resource_target(&self, uri: &str) -> Result<(Target<'_>, Option<String>), McpError> {
        let manifest = self
            .hub
            .manifest_for(|m| m.resource(uri).map(|r| r.slot))
            .await;
        let Some(route) = manifest.resource(uri) else {
            return Err(McpError::resource_not_found(
                format!("unknown resource `{uri}`"),
                None,
            ));
        };
        let t = self
            .target(route.slot)
            .map_err(|m| McpError::internal_error(m, None))?;
        Ok((t, route.original))
    }
}
