//! The client side of the session as the children see it: the client's peer (for server-to-client
//! requests and notifications) and the capabilities it declared, which children inherit.
//!
//! Everything a child sends up passes the session's [`Delivery`] policy: the redactor, and the
//! session's liveness — once the session's token has expired, children's requests to the client
//! are refused and their notifications (resource updates, list changes, logs) are dropped.

#![allow(deprecated)] // sampling, roots and logging are deprecated in rmcp 3.x; we forward them

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rmcp::model::{ClientCapabilities, ClientResult, ErrorCode, ServerNotification, ServerRequest};
use rmcp::service::{Peer, RoleServer};
use rmcp::{ErrorData as McpError, ServiceError};

use crate::secrets::{SharedRedactor, scrub};

/// The capabilities a child is initialized with for a client that declared `client`: exactly
/// the client's roots, sampling and elicitation, and the tasks extension (the gateway routes
/// tasks) — never one the client lacks.
pub fn children_capabilities(client: &ClientCapabilities) -> ClientCapabilities {
    let mut out = ClientCapabilities::default();
    out.roots = client.roots.clone();
    out.sampling = client.sampling.clone();
    out.elicitation = client.elicitation.clone();
    if let Some(tasks) = client
        .extensions
        .as_ref()
        .and_then(|e| e.get(rmcp::model::TASKS_EXTENSION_ID))
    {
        out.extensions
            .get_or_insert_with(Default::default)
            .insert(rmcp::model::TASKS_EXTENSION_ID.to_string(), tasks.clone());
    }
    out
}

/// What a session requires of everything its children send up.
pub trait Delivery: Send + Sync {
    /// The session's redactor: every byte going up passes it.
    fn redactor(&self) -> &Arc<SharedRedactor>;
    /// Whether the session may still receive anything (its token is live); the named reason
    /// when not.
    fn open(&self) -> Result<(), McpError>;
}

/// Where a child's request goes when the client speaks 2026-07-28, which carries no request
/// from a server to the client: into the one call in flight to that child, as an input-required
/// result the client answers by retrying the call.
pub trait InputBridge: Send + Sync {
    /// Tie `request` (already scrubbed) to the one call in flight to `server` and return where
    /// the client's answer will arrive; or say why it cannot be tied.
    fn ask(
        &self,
        server: &str,
        request: ServerRequest,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<ClientResult, McpError>>, String>;
}

/// What a child shared by several identities sends up unasked: refused or dropped, since it has
/// no caller to be delivered to (see [`Upstream::shared`]).
struct NoCaller {
    redactor: Arc<SharedRedactor>,
    server: String,
}

impl Delivery for NoCaller {
    fn redactor(&self) -> &Arc<SharedRedactor> {
        &self.redactor
    }

    fn open(&self) -> Result<(), McpError> {
        Err(McpError::new(
            ErrorCode::INVALID_REQUEST,
            format!(
                "`{}` runs as one instance shared by several identities, so what it sends without a call asking for it has no client to go to\nhint: set `shared = false` in its file for one instance per identity",
                self.server
            ),
            None,
        ))
    }
}

/// The client lastmile serves, as far as the children are concerned.
pub struct Upstream {
    peer: OnceLock<Peer<RoleServer>>,
    capabilities: OnceLock<ClientCapabilities>,
    session: Arc<dyn Delivery>,
    /// One child serving several identities: nothing it sends unasked goes up.
    shared: bool,
    /// The client speaks 2026-07-28: its children's requests travel only through `bridge`.
    stateless: AtomicBool,
    bridge: OnceLock<Arc<dyn InputBridge>>,
}

impl Upstream {
    /// Everything going up passes `session`'s policy.
    pub fn new(session: Arc<dyn Delivery>) -> Self {
        Upstream {
            peer: OnceLock::new(),
            capabilities: OnceLock::new(),
            session,
            shared: false,
            stateless: AtomicBool::new(false),
            bridge: OnceLock::new(),
        }
    }

    /// The upstream of a child `server` that serves several identities, started with the
    /// children's capabilities `caps`: it has no client. Its requests to the client are refused
    /// and its notifications dropped, each with the reason; what its calls produce (answers,
    /// progress) travels with each call to its own caller instead.
    pub fn shared(server: &str, redactor: Arc<SharedRedactor>, caps: ClientCapabilities) -> Self {
        let mut upstream = Upstream::new(Arc::new(NoCaller {
            redactor,
            server: server.to_string(),
        }));
        upstream.shared = true;
        upstream.set_capabilities(caps);
        upstream
    }

    /// Whether this is a shared child's upstream, which has no client.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// The client speaks 2026-07-28: no request may be sent to it from now on.
    pub fn set_stateless(&self) {
        self.stateless.store(true, Ordering::Relaxed);
    }

    /// Where children's requests go once the client speaks 2026-07-28.
    pub fn set_bridge(&self, bridge: Arc<dyn InputBridge>) {
        let _ = self.bridge.set(bridge);
    }

    /// The session's redactor.
    pub fn redactor(&self) -> &Arc<SharedRedactor> {
        self.session.redactor()
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

    /// Whether the client's capabilities are known (the children start with them).
    pub fn knows_capabilities(&self) -> bool {
        self.capabilities.get().is_some()
    }

    /// Whether both the client's peer and its capabilities are known.
    pub fn knows_client(&self) -> bool {
        self.peer.get().is_some() && self.capabilities.get().is_some()
    }

    /// The capabilities children are initialized with (see [`children_capabilities`]).
    pub fn capabilities_for_children(&self) -> ClientCapabilities {
        self.capabilities
            .get()
            .map(children_capabilities)
            .unwrap_or_default()
    }

    /// Send a child's request (sampling, elicitation, roots, custom) up to the client verbatim
    /// and return the client's answer — or a clear error when the client cannot answer it.
    pub async fn request(
        &self,
        server: &str,
        request: ServerRequest,
    ) -> Result<ClientResult, McpError> {
        self.session.open()?;
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
        // A child's request to the client (a sampling prompt above all) must not carry a secret.
        let (request, _) = scrub(self.redactor(), server, request)
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        if self.stateless.load(Ordering::Relaxed) {
            return self.bridged(server, request).await;
        }
        let Some(peer) = self.peer.get() else {
            return Err(McpError::internal_error("no client is connected yet", None));
        };
        peer.send_request(request).await.map_err(|e| match e {
            ServiceError::McpError(e) => e,
            other => McpError::internal_error(format!("the client did not answer: {other}"), None),
        })
    }

    /// A child's request for a 2026-07-28 client: through the call in flight it belongs to, or
    /// refused with the reason (2026-07-28 cannot carry it otherwise).
    async fn bridged(
        &self,
        server: &str,
        request: ServerRequest,
    ) -> Result<ClientResult, McpError> {
        let method = match &request {
            ServerRequest::CreateMessageRequest(_) => "sampling/createMessage",
            ServerRequest::ElicitRequest(_) => "elicitation/create",
            ServerRequest::ListRootsRequest(_) => "roots/list",
            _ => "a request",
        };
        let why = match self.bridge.get() {
            Some(bridge) => match bridge.ask(server, request) {
                Ok(answer) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(McpError::internal_error(
                            "the call this request belonged to ended before the client answered",
                            None,
                        ))
                    });
                }
                Err(why) => why,
            },
            None => "no call is in flight".to_string(),
        };
        Err(McpError::new(
            ErrorCode::INVALID_REQUEST,
            format!(
                "the client speaks MCP 2026-07-28, which carries no request from a server to the client; `{method}` from `{server}` can reach it only inside a call in flight to `{server}`, and {why}"
            ),
            None,
        ))
    }

    /// Send a notification up to the client, redacted (best effort: a client that left cannot
    /// get it; a notification that cannot be redacted safely is dropped).
    pub async fn notify(&self, server: &str, notification: ServerNotification) {
        if let Err(e) = self.session.open() {
            tracing::debug!(server = %server, "notification dropped: {}", e.message);
            return;
        }
        let Some(peer) = self.peer.get() else { return };
        match scrub(self.redactor(), server, notification) {
            Ok((clean, _)) => {
                let _ = peer.send_notification(clean).await;
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
}
