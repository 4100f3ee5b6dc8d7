//! The MCP face: the server side the client talks to. Lists come from the manifest; calls are
//! routed by name (or URI) to the child that owns them and answered with the child's own result.

use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceError};

use super::hub::{Hub, SlotStatus};

/// lastmile's MCP server side for one session.
#[derive(Clone)]
pub struct Face {
    hub: Arc<Hub>,
}

impl Face {
    /// A face in front of a hub.
    pub fn new(hub: Arc<Hub>) -> Self {
        Face { hub }
    }

    fn unavailable(&self, slot: usize) -> String {
        let s = &self.hub.slots[slot];
        match s.status() {
            SlotStatus::Failed(reason) => {
                format!("server `{}` is not running: {reason}", s.server.name)
            }
            SlotStatus::Starting => format!("server `{}` is still starting", s.server.name),
            SlotStatus::Stopped | SlotStatus::Running => {
                format!("server `{}` is not running", s.server.name)
            }
        }
    }
}

/// A tool-level error result: the tool could not run, and the model should read why.
fn tool_error(message: String) -> CallToolResponse {
    CallToolResponse::Complete(CallToolResult::error(vec![ContentBlock::text(message)]))
}

/// How a child's failure reaches the client: its own JSON-RPC error passes through unchanged;
/// a broken connection is named.
fn child_failure(server: &str, e: ServiceError) -> Result<String, McpError> {
    match e {
        ServiceError::McpError(e) => Err(e),
        ServiceError::TransportClosed | ServiceError::TransportSend(_) => Ok(format!(
            "server `{server}` exited or closed its connection during the call"
        )),
        other => Ok(format!("server `{server}` failed: {other}")),
    }
}

impl ServerHandler for Face {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new("lastmile", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "lastmile gateway: tools and prompts of several MCP servers, named {server}__{name}."
                .into(),
        );
        info
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        self.hub.set_upstream(&ctx.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.hub.set_upstream(&ctx.peer);
        self.hub.wait_started().await;
        self.hub.mark_listed();
        Ok(ListToolsResult::with_all_items(
            self.hub.manifest().tools.clone(),
        ))
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let manifest = self
            .hub
            .manifest_with(|m| m.tool(&request.name).is_some())
            .await;
        let Some(route) = manifest.tool(&request.name) else {
            return Err(McpError::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        let slot = &self.hub.slots[route.slot];
        let Some(child) = slot.child.load_full() else {
            return Ok(tool_error(self.unavailable(route.slot)));
        };
        request.name = route.original.clone().into();
        let timeout = slot.call_timeout(&self.hub.defaults);
        match tokio::time::timeout(timeout, child.peer.call_tool_once(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => child_failure(&slot.server.name, e).map(tool_error),
            // Dropping the call future sends the child notifications/cancelled.
            Err(_) => Ok(tool_error(format!(
                "server `{}` did not answer within {timeout:?} (call_timeout); the call was cancelled",
                slot.server.name
            ))),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.hub.set_upstream(&ctx.peer);
        self.hub.wait_started().await;
        self.hub.mark_listed();
        Ok(ListPromptsResult::with_all_items(
            self.hub.manifest().prompts.clone(),
        ))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let manifest = self
            .hub
            .manifest_with(|m| m.prompt(&request.name).is_some())
            .await;
        let Some(route) = manifest.prompt(&request.name) else {
            return Err(McpError::invalid_params(
                format!("unknown prompt `{}`", request.name),
                None,
            ));
        };
        let slot = &self.hub.slots[route.slot];
        let Some(child) = slot.child.load_full() else {
            return Err(McpError::internal_error(self.unavailable(route.slot), None));
        };
        request.name = route.original.clone();
        let timeout = slot.call_timeout(&self.hub.defaults);
        match tokio::time::timeout(timeout, child.peer.get_prompt_once(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                Err(child_failure(&slot.server.name, e)
                    .map(|m| McpError::internal_error(m, None))?)
            }
            Err(_) => Err(McpError::internal_error(
                format!(
                    "server `{}` did not answer within {timeout:?}",
                    slot.server.name
                ),
                None,
            )),
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.hub.set_upstream(&ctx.peer);
        self.hub.wait_started().await;
        self.hub.mark_listed();
        Ok(ListResourcesResult::with_all_items(
            self.hub.manifest().resources.clone(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.hub.wait_started().await;
        Ok(ListResourceTemplatesResult::with_all_items(
            self.hub.manifest().templates.clone(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let manifest = self
            .hub
            .manifest_with(|m| m.resource(&request.uri).is_some())
            .await;
        let Some(slot_index) = manifest.resource(&request.uri) else {
            return Err(McpError::resource_not_found(
                format!("unknown resource `{}`", request.uri),
                None,
            ));
        };
        let slot = &self.hub.slots[slot_index];
        let Some(child) = slot.child.load_full() else {
            return Err(McpError::internal_error(self.unavailable(slot_index), None));
        };
        let timeout = slot.call_timeout(&self.hub.defaults);
        match tokio::time::timeout(timeout, child.peer.read_resource_once(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                Err(child_failure(&slot.server.name, e)
                    .map(|m| McpError::internal_error(m, None))?)
            }
            Err(_) => Err(McpError::internal_error(
                format!(
                    "server `{}` did not answer within {timeout:?}",
                    slot.server.name
                ),
                None,
            )),
        }
    }
}
