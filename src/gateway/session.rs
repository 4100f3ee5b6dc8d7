//! One client's session: the unit that owns what belongs to that client alone — its verified
//! identity and gate (expiry, rate limits, audit sink) and its redactor. stdio makes one; the
//! HTTP edge will make one per verified identity from the same type.
//!
//! The redactor is complete before any child starts: [`ClientSession::learn`] is called with
//! every secret of every server the session may start before the first start, and again with
//! each child's delivered values before that child starts (a rotated value is added, the old
//! one kept).

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use secrecy::SecretString;

use super::gate::Gate;
use crate::downstream::Delivery;
use crate::secrets::{SecretsError, SessionRedactor, SharedRedactor};

/// One client's session.
pub struct ClientSession {
    gate: Gate,
    redactor: SessionRedactor,
}

impl ClientSession {
    /// A session around its gate, with a redactor that knows nothing yet.
    pub fn new(gate: Gate) -> Arc<Self> {
        Arc::new(ClientSession {
            gate,
            redactor: SessionRedactor::default(),
        })
    }

    /// Identity, limits and audit trail.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The redactor every scrub of this session goes through.
    pub fn redactor(&self) -> &Arc<SharedRedactor> {
        self.redactor.shared()
    }

    /// Teach the redactor secret values (before the child that receives them starts).
    pub fn learn(
        &self,
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<(), SecretsError> {
        self.redactor.learn(pairs)
    }
}

impl Delivery for ClientSession {
    fn redactor(&self) -> &Arc<SharedRedactor> {
        self.redactor.shared()
    }

    fn open(&self) -> Result<(), McpError> {
        self.gate.live()
    }
}
