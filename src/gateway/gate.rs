//! The gate: who this session is (from its verified token), whether it may call right now (a
//! live token, its tier's rate limit), and where each execution is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::ErrorData as McpError;
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::audit::{AuditSink, ExecutionRecord, SessionIdentity, Transport};
use crate::identity::{RateBucket, Session, SessionRateLimits, now_unix};

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
    limits: Arc<SessionRateLimits>,
    audit: Option<AuditSink>,
    /// Until when (Unix seconds, leeway included) a later credential of the same identity keeps
    /// the session live: on HTTP each request is verified on its own, and a refreshed token
    /// extends the session it was opened with. 0: never renewed.
    renewed_until: AtomicU64,
}

impl Gate {
    /// A gate for a session.
    pub fn new(
        session: Session,
        limits: impl Into<Arc<SessionRateLimits>>,
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
            limits: limits.into(),
            audit,
            renewed_until: AtomicU64::new(0),
        }
    }

    /// A later verified credential of this session's identity is valid until `until` (Unix
    /// seconds, leeway included; `None`: it does not expire): the session lives on with it.
    pub fn renew(&self, until: Option<u64>) {
        self.renewed_until
            .fetch_max(until.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Whether the session's token is still valid (the named reason when not).
    pub fn live(&self) -> Result<(), McpError> {
        let checked = self.session.check_live();
        if checked.is_err() && self.renewed_until.load(Ordering::Relaxed) >= now_unix() {
            return Ok(());
        }
        checked.map_err(|rejection| {
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
    pub fn record(&self, record: ExecutionRecord) -> impl Future<Output = ()> + use<> {
        // Handed over now (see `AuditSink::record`): the future holds no copy of the row.
        let handoff = self.audit.as_ref().map(|audit| audit.record(record));
        async move {
            if let Some(handoff) = handoff
                && let Err(e) = handoff.await
            {
                tracing::error!("audit: {e}");
            }
        }
    }
}
