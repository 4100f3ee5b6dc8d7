//! The client side of the session as the children see it: the client's peer (for server-to-client
//! requests and notifications) and the capabilities it declared, which children inherit.

#![allow(deprecated)] // sampling, roots and logging are deprecated in rmcp 3.x; we forward them

use std::sync::OnceLock;

use rmcp::model::{ClientCapabilities, ClientResult, ErrorCode, ServerNotification, ServerRequest};
use rmcp::service::{Peer, RoleServer};
use rmcp::{ErrorData as McpError, ServiceError};

/// The client lastmile serves, as far as the children are concerned.
#[derive(Default)]
pub struct Upstream {
    peer: OnceLock<Peer<RoleServer>>,
    capabilities: OnceLock<ClientCapabilities>,
}

impl Upstream {
    /// Remember the client's peer (the first one seen wins; a session has one client).
    pub fn set_peer(&self, peer: &Peer<RoleServer>) {
        if self.peer.get().is_none() {
            let _ = self.peer.set(peer.clone());
        }
    }

    /// The client's peer, once it has said anything.
    pub fn peer(&self) -> Option<&Peer<RoleServer>> {
        self.peer.get()
    }

    /// Record what the client declared (from `initialize`, or per-request metadata).
    pub fn set_capabilities(&self, caps: ClientCapabilities) {
        let _ = self.capabilities.set(caps);
    }

    /// The capabilities children are initialized with: exactly the client's roots, sampling and
    /// elicitation — never one the client lacks.
    pub fn capabilities_for_children(&self) -> ClientCapabilities {
        let mut out = ClientCapabilities::default();
        if let Some(c) = self.capabilities.get() {
            out.roots = c.roots.clone();
            out.sampling = c.sampling.clone();
            out.elicitation = c.elicitation.clone();
        }
        out
    }

    /// Send a child's request (sampling, elicitation, roots, custom) up to the client verbatim
    /// and return the client's answer — or a clear error when the client cannot answer it.
    pub async fn request(
        &self,
        server: &str,
        request: ServerRequest,
    ) -> Result<ClientResult, McpError> {
        let caps = self.capabilities_for_children();
        let missing = match &request {
            ServerRequest::CreateMessageRequest(_) if caps.sampling.is_none() => Some("sampling"),
            ServerRequest::ElicitRequest(_) if caps.elicitation.is_none() => Some("elicitation"),
            ServerRequest::ListRootsRequest(_) if caps.roots.is_none() => Some("roots"),
            _ => None,
        };
        if let Some(capability) = missing {
            return Err(McpError::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "the client did not declare the `{capability}` capability, so lastmile cannot forward this request from `{server}`"
                ),
                None,
            ));
        }
        let Some(peer) = self.peer.get() else {
            return Err(McpError::internal_error("no client is connected yet", None));
        };
        peer.send_request(request).await.map_err(|e| match e {
            ServiceError::McpError(e) => e,
            other => McpError::internal_error(format!("the client did not answer: {other}"), None),
        })
    }

    /// Send a notification up to the client (best effort: a client that left cannot get it).
    pub async fn notify(&self, notification: ServerNotification) {
        if let Some(peer) = self.peer.get() {
            let _ = peer.send_notification(notification).await;
        }
    }
}
