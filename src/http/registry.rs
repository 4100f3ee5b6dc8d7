//! The sessions of one HTTP gateway: 2025 MCP sessions by `Mcp-Session-Id`, each bound to the
//! identity that opened it; one 2026-07-28 session per identity; the rate limits each identity
//! shares across its sessions; caps on how many sessions there may be; and the idle sweep.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::audit::{SessionEvent, Transport};
use crate::config::{AuthMode, HttpSection};
use crate::downstream::SharedChildren;
use crate::edge::Verified;
use crate::gateway::{ClientSession, SessionProfile, Sharing, record_session};
use crate::identity::SessionRateLimits;
use crate::secrets::SessionRedactor;

use super::instance::{Instance, Owner};

/// Why a session could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// No such `Mcp-Session-Id` (never issued, deleted, or closed when idle).
    #[error("unknown or expired MCP session\nhint: open a new one with `initialize`")]
    Unknown,
    /// The session belongs to another identity.
    #[error("this MCP session belongs to another identity")]
    NotYours,
    /// Too many sessions.
    #[error(
        "too many MCP sessions open ({open}, at most {limit} {scope})\nhint: close sessions with DELETE, or raise `{setting}` in [http]"
    )]
    TooMany {
        open: usize,
        limit: usize,
        scope: &'static str,
        setting: &'static str,
    },
    /// The rate-limit configuration cannot be used.
    #[error("{0}")]
    Config(String),
}

impl SessionError {
    /// A stable snake_case name.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            SessionError::Unknown => "unknown_session",
            SessionError::NotYours => "session_identity_mismatch",
            SessionError::TooMany { .. } => "too_many_sessions",
            SessionError::Config(_) => "config_invalid",
        }
    }
}

/// Every session of one HTTP gateway.
pub(crate) struct Registry {
    profile: SessionProfile,
    redactor: Arc<SessionRedactor>,
    mode: AuthMode,
    max_message: usize,
    max_sessions: usize,
    per_identity: usize,
    pub(crate) idle: Duration,
    resume_window: Duration,
    sessions: Mutex<HashMap<String, Arc<Instance>>>,
    /// One 2026-07-28 session per identity (an async lock: two first requests make one).
    stateless: tokio::sync::Mutex<HashMap<Owner, Arc<Instance>>>,
    limits: Mutex<HashMap<Owner, Arc<SessionRateLimits>>>,
    /// Children shared between sessions.
    children: Arc<SharedChildren>,
}

impl Registry {
    /// The registry of a gateway over `profile`; `redactor` already knows every secret of every
    /// server (it is shared by every session and the log).
    pub(crate) fn new(
        profile: SessionProfile,
        redactor: Arc<SessionRedactor>,
        mode: AuthMode,
        http: &HttpSection,
        max_message: usize,
    ) -> Self {
        Registry {
            profile,
            redactor,
            mode,
            max_message,
            max_sessions: http.max_sessions.max(1),
            per_identity: http.max_sessions_per_identity.max(1),
            idle: http.session_idle.0,
            resume_window: http.resume_window.0,
            sessions: Mutex::default(),
            stateless: tokio::sync::Mutex::default(),
            limits: Mutex::default(),
            children: Arc::default(),
        }
    }

    /// The 2025 session `id`, if `who` may use it.
    pub(crate) fn get(&self, id: &str, who: &Verified) -> Result<Arc<Instance>, SessionError> {
        let instance = self
            .sessions
            .lock()
            .ok()
            .and_then(|s| s.get(id).cloned())
            .filter(|i| !i.is_closed())
            .ok_or(SessionError::Unknown)?;
        if instance.owner != owner_of(who) {
            return Err(SessionError::NotYours);
        }
        instance.client.gate().renew(who.valid_until());
        instance.touch();
        Ok(instance)
    }

    /// Open a 2025 session for `who` (on `initialize`).
    pub(crate) async fn open(&self, who: &Verified) -> Result<Arc<Instance>, SessionError> {
        let owner = owner_of(who);
        {
            let sessions = self.sessions.lock().map_err(|_| SessionError::Unknown)?;
            if sessions.len() >= self.max_sessions {
                return Err(SessionError::TooMany {
                    open: sessions.len(),
                    limit: self.max_sessions,
                    scope: "in all",
                    setting: "max_sessions",
                });
            }
        }
        // At its cap, an identity's session idle the longest makes room (clients often leave
        // without DELETE); with none idle, the new one is refused.
        let evicted = {
            let mut sessions = self.sessions.lock().map_err(|_| SessionError::Unknown)?;
            let mine: Vec<(&String, &Arc<Instance>)> =
                sessions.iter().filter(|(_, i)| i.owner == owner).collect();
            if mine.len() >= self.per_identity {
                let oldest = mine
                    .iter()
                    .filter_map(|(id, i)| Some(((*id).clone(), i.idle_for()?)))
                    .max_by_key(|(_, idle)| *idle)
                    .map(|(id, _)| id);
                match oldest {
                    Some(id) => sessions.remove(&id),
                    None => {
                        return Err(SessionError::TooMany {
                            open: mine.len(),
                            limit: self.per_identity,
                            scope: "per identity",
                            setting: "max_sessions_per_identity",
                        });
                    }
                }
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            let audit = self.profile.audit.clone();
            let mode = self.mode;
            tokio::spawn(async move {
                end_instance(
                    &old,
                    &audit,
                    mode,
                    "a newer session of its identity took its place (max_sessions_per_identity)",
                )
                .await;
            });
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let instance = self.start(Some(id.clone()), owner, who).await?;
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(id, Arc::clone(&instance));
        }
        Ok(instance)
    }

    /// The 2026-07-28 session of `who`, opened on first need.
    pub(crate) async fn stateless(&self, who: &Verified) -> Result<Arc<Instance>, SessionError> {
        let owner = owner_of(who);
        let mut map = self.stateless.lock().await;
        if let Some(instance) = map.get(&owner).filter(|i| !i.is_closed()) {
            instance.client.gate().renew(who.valid_until());
            instance.touch();
            return Ok(Arc::clone(instance));
        }
        if map.len() >= self.max_sessions {
            return Err(SessionError::TooMany {
                open: map.len(),
                limit: self.max_sessions,
                scope: "in all",
                setting: "max_sessions",
            });
        }
        let instance = self.start(None, owner.clone(), who).await?;
        map.insert(owner, Arc::clone(&instance));
        Ok(instance)
    }

    async fn start(
        &self,
        id: Option<String>,
        owner: Owner,
        who: &Verified,
    ) -> Result<Arc<Instance>, SessionError> {
        let limits = self.limits_of(&owner, who)?;
        let session = who.to_session(self.mode);
        let sharing = Sharing {
            redactor: Some(Arc::clone(&self.redactor)),
            limits: Some(limits),
            children: Some(Arc::clone(&self.children)),
            // An identity's 2026-07-28 session is shared by all its clients: one principal,
            // unless it is the anonymous one, which every client without a credential is.
            pooled: id.is_none() && owner.is_anonymous(),
        };
        let (client, hub) =
            ClientSession::open_with(&self.profile, session, Transport::Http, sharing)
                .await
                .map_err(|e| SessionError::Config(e.to_string()))?;
        record_session(
            &self.profile.audit,
            Transport::Http,
            Some(&client.gate().session),
            SessionEvent::Accepted,
            id.as_ref().map(|id| format!("MCP session {id}")),
            self.mode,
        )
        .await;
        tracing::info!(subject = %owner.subject, tier = %owner.tier, mcp_session = id.as_deref().unwrap_or("2026-07-28"), "HTTP session opened");
        let instance =
            Instance::start(id, owner, client, hub, self.max_message, self.resume_window);
        instance.touch();
        Ok(instance)
    }

    /// The rate limits of an identity, shared by all its sessions.
    fn limits_of(
        &self,
        owner: &Owner,
        who: &Verified,
    ) -> Result<Arc<SessionRateLimits>, SessionError> {
        let mut limits = self.limits.lock().map_err(|_| SessionError::Unknown)?;
        if let Some(l) = limits.get(owner) {
            return Ok(Arc::clone(l));
        }
        let made = Arc::new(
            SessionRateLimits::new(&self.profile.rate_limit, who.rate_limit_tier())
                .map_err(|e| SessionError::Config(e.to_string()))?,
        );
        limits.insert(owner.clone(), Arc::clone(&made));
        Ok(made)
    }

    /// Close the 2025 session `id` (DELETE) if `who` owns it.
    pub(crate) async fn delete(&self, id: &str, who: &Verified) -> Result<(), SessionError> {
        let instance = self.get(id, who)?;
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(id);
        }
        self.end(&instance, "the client deleted the MCP session")
            .await;
        Ok(())
    }

    /// Close sessions idle for longer than the profile allows.
    pub(crate) async fn sweep(&self) {
        let idle = self.idle;
        let mut stale: Vec<Arc<Instance>> = Vec::new();
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, i| {
                let keep = !i.is_closed() && i.idle_for().is_none_or(|d| d < idle);
                if !keep {
                    stale.push(Arc::clone(i));
                }
                keep
            });
        }
        {
            let mut map = self.stateless.lock().await;
            map.retain(|_, i| {
                let keep = !i.is_closed() && i.idle_for().is_none_or(|d| d < idle);
                if !keep {
                    stale.push(Arc::clone(i));
                }
                keep
            });
        }
        for instance in stale {
            self.end(&instance, "the session was idle").await;
        }
    }

    /// Close every session (shutdown).
    pub(crate) async fn close_all(&self) {
        let mut all: Vec<Arc<Instance>> = match self.sessions.lock() {
            Ok(mut s) => s.drain().map(|(_, i)| i).collect(),
            Err(_) => Vec::new(),
        };
        all.extend(self.stateless.lock().await.drain().map(|(_, i)| i));
        let ends = all.iter().map(|i| self.end(i, "lastmile was stopped"));
        futures::future::join_all(ends).await;
    }

    async fn end(&self, instance: &Instance, why: &str) {
        end_instance(instance, &self.profile.audit, self.mode, why).await;
    }

    /// The audit sink, if any.
    pub(crate) fn audit(&self) -> Option<&crate::audit::AuditSink> {
        self.profile.audit.as_ref()
    }
}

/// End a session: its calls cancelled and audited, its children stopped, the end recorded.
async fn end_instance(
    instance: &Instance,
    audit: &Option<crate::audit::AuditSink>,
    mode: AuthMode,
    why: &str,
) {
    instance.close().await;
    record_session(
        audit,
        Transport::Http,
        Some(&instance.client.gate().session),
        SessionEvent::Ended,
        Some(why.to_string()),
        mode,
    )
    .await;
    tracing::info!(subject = %instance.owner.subject, mcp_session = instance.id.as_deref().unwrap_or("2026-07-28"), "HTTP session ended: {why}");
}

fn owner_of(who: &Verified) -> Owner {
    Owner {
        subject: who.subject().to_string(),
        tier: who.tier(),
    }
}
