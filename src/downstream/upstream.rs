//! The client side of the session as the children see it: the client's peer (for server-to-client
//! requests and notifications) and the capabilities it declared, which children inherit.

#![allow(deprecated)] // sampling, roots and logging are deprecated in rmcp 3.x; we forward them

use std::sync::{Arc, OnceLock};

use rmcp::model::{ClientCapabilities, ClientResult, ErrorCode, ServerNotification, ServerRequest};
use rmcp::service::{Peer, RoleServer};
use rmcp::{ErrorData as McpError, ServiceError};

use crate::gateway::scrub::scrub;
use crate::secrets::SharedRedactor;

/// The client lastmile serves, as far as the children are concerned.
pub struct Upstream {
    peer: OnceLock<Peer<RoleServer>>,
    capabilities: OnceLock<ClientCapabilities>,
    redactor: Arc<SharedRedactor>,
}

impl Upstream {
    /// Everything going up passes through `redactor`.
    pub fn new(redactor: Arc<SharedRedactor>) -> Self {
        Upstream {
            peer: OnceLock::new(),
            capabilities: OnceLock::new(),
            redactor,
        }
    }

    /// The session's redactor.
    pub fn redactor(&self) -> &Arc<SharedRedactor> {
        &self.redactor
    }

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

    /// Whether both the client's peer and its capabilities are known.
    pub fn knows_client(&self) -> bool {
        self.peer.get().is_some() && self.capabilities.get().is_some()
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
        // A child's request to the client (a sampling prompt above all) must not carry a secret.
        let (request, _) = scrub(&self.redactor, server, request)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        peer.send_request(request).await.map_err(|e| match e {
            ServiceError::McpError(e) => e,
            other => McpError::internal_error(format!("the client did not answer: {other}"), None),
        })
    }

    /// Send a notification up to the client, redacted (best effort: a client that left cannot
    /// get it; a notification that cannot be redacted safely is dropped).
    pub async fn notify(&self, server: &str, notification: ServerNotification) {
        let Some(peer) = self.peer.get() else { return };
        match scrub(&self.redactor, server, notification) {
            Ok((clean, _)) => {
                let _ = peer.send_notification(clean).await;
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}
