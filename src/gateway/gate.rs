//! The gate: who this session is (from its verified token), whether it may call right now (a
//! live token, its tier's rate limit), and where each execution is recorded.

use rmcp::ErrorData as McpError;
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::audit::{AuditSink, ExecutionRecord, SessionIdentity, Transport};
use crate::identity::{RateBucket, Session, SessionRateLimits};

/// JSON-RPC error code for a call refused by the rate limit (`retry_after_ms` in its data).
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32029);
/// JSON-RPC error code for a call refused because the session's token is no longer valid.
pub const SESSION_EXPIRED: ErrorCode = ErrorCode(-32028);

/// Why a call was not admitted.
pub enum Refused {
    /// The session's token expired (or otherwise stopped being valid) mid-session.
    Session(McpError),
    /// Over the tier's rate.
    RateLimited(McpError),
}

/// One session's identity, limits and audit trail.
pub struct Gate {
    /// The verified (or anonymous, or test) session.
    pub session: Session,
    /// The identity every audit row is bound to.
    pub who: SessionIdentity,
    limits: SessionRateLimits,
    audit: Option<AuditSink>,
}

impl Gate {
    /// A gate for a session.
    pub fn new(
        session: Session,
        limits: SessionRateLimits,
        audit: Option<AuditSink>,
        transport: Transport,
    ) -> Self {
        let who = SessionIdentity {
            session_id: session.session_id().to_string(),
            jti: session.jti().map(str::to_string),
            subject: Some(session.subject().to_string()),
            tier: session.tier(),
            transport,
        };
        Gate {
            session,
            who,
            limits,
            audit,
        }
    }

    /// Whether the session's token is still valid (the named reason when not).
    pub fn live(&self) -> Result<(), McpError> {
        self.session.check_live().map_err(|rejection| {
            McpError::new(
                SESSION_EXPIRED,
                format!(
                    "the session's token is no longer valid: {rejection}\nhint: restart the client with a fresh token (`lastmile token issue`)"
                ),
                Some(json!({ "reason": rejection.code() })),
            )
        })
    }

    /// May this session make a request of `bucket` now? A live token first, then the bucket.
    pub fn admit(&self, bucket: RateBucket) -> Result<(), Refused> {
        self.live().map_err(Refused::Session)?;
        self.limits.check(bucket).map_err(|limited| {
            Refused::RateLimited(McpError::new(
                RATE_LIMITED,
                format!(
                    "rate limit of tier `{}` exceeded for {bucket}; retry after {} ms",
                    self.session.rate_limit_tier(),
                    limited.retry_after_ms
                ),
                Some(json!({ "retry_after_ms": limited.retry_after_ms, "bucket": bucket.to_string() })),
            ))
        })
    }

    /// Hand an execution row to the audit writer (waits only while its queue is full).
    pub async fn record(&self, record: ExecutionRecord) {
        if let Some(audit) = &self.audit
            && let Err(e) = audit.record(record).await
        {
            tracing::error!("audit: {e}");
        }
    }
}
