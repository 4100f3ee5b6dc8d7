//! One client's session: the unit that owns what belongs to that client alone — its verified
//! identity and gate (expiry, rate limits, audit sink) and its redactor. stdio makes one; the
//! HTTP edge will make one per verified identity (subject and tier) from the same type, with
//! [`ClientSession::open`]: the unit is the identity, not a transport's connection.
//!
//! The redactor is complete before any child starts: [`ClientSession::learn`] is called with
//! every secret of every server the session may start before the first start, and again with
//! each child's delivered values before that child starts (a rotated value is added, the old
//! one kept).

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use secrecy::SecretString;

use super::gate::Gate;
use super::hub::{EnvBuilder, Hub};
use crate::audit::{AuditSink, SessionEvent, SessionRecord, Transport, now_ms};
use crate::config::{AuthMode, DefaultsSection, RateLimitSection, SecretRef, Server};
use crate::downstream::{CatalogCache, ChildEnv, Delivery, ReaperLink, SharedChildren};
use crate::identity::{RateLimitConfigError, Session, SessionRateLimits};
use crate::secrets::{
    CUSTOM_SECRETS_VAR, ChildSecrets, SecretStore, SecretsError, SessionRedactor, SharedRedactor,
    child_secrets,
};

/// What every session of one gateway shares: the profile's servers and settings, the secret
/// store, the audit sink, the catalog cache and the reaper.
pub struct Profile {
    /// Every server loaded from servers.d (each session keeps those its tier may use).
    pub servers: Vec<Server>,
    /// Profile defaults (timeouts, restart policy).
    pub defaults: DefaultsSection,
    /// Rate limits by tier.
    pub rate_limit: RateLimitSection,
    /// Where children's secrets come from (none: servers that name secrets do not start).
    pub store: Option<Arc<dyn SecretStore>>,
    /// Where every execution is recorded (none only where the profile allows it, loudly).
    pub audit: Option<AuditSink>,
    /// What each server offered last time, and what is known of its manners.
    pub cache: Option<CatalogCache>,
    /// The watchdog that stops children if lastmile dies.
    pub reaper: Option<Arc<ReaperLink>>,
}

/// One client's session.
pub struct ClientSession {
    gate: Gate,
    redactor: Arc<SessionRedactor>,
    /// The tasks children created for this session, by lastmile's ids.
    tasks: super::tasks::TaskMap,
    /// Serves clients that are not one principal (see [`Sharing::pooled`]).
    pooled: bool,
}

/// What a session may share with others of the same gateway (HTTP: many sessions per process).
#[derive(Default)]
pub struct Sharing {
    /// A redactor shared by every session (and the log): it must already know every secret of
    /// every server any of them may start. `None`: the session's own.
    pub redactor: Option<Arc<SessionRedactor>>,
    /// The rate limits of the identity, shared by all its sessions so that opening more
    /// sessions buys no more calls. `None`: the session's own.
    pub limits: Option<Arc<SessionRateLimits>>,
    /// Children shared by the gateway's sessions (each server known to be quiet runs once).
    /// `None`: the session starts its own.
    pub children: Option<Arc<SharedChildren>>,
    /// The session serves clients that are not one principal: the anonymous clients of a
    /// 2026-07-28 HTTP endpoint, where no session tells them apart. A task's id is then the only
    /// proof that a client made it, so tasks are not listed; and no client may cancel a request
    /// by its id, which another client may use too (a client cancels by closing its request).
    pub pooled: bool,
}

impl ClientSession {
    /// Open a session for a verified identity: only the servers its tier may use, its rate
    /// limits, a redactor that knows every secret those servers will receive before any of them
    /// starts, and a hub that starts them once the client has said what it can do.
    pub async fn open(
        profile: &Profile,
        session: Session,
        transport: Transport,
    ) -> Result<(Arc<Self>, Arc<Hub>), RateLimitConfigError> {
        Self::open_with(profile, session, transport, Sharing::default()).await
    }

    /// [`ClientSession::open`], sharing what `sharing` names with other sessions.
    pub async fn open_with(
        profile: &Profile,
        session: Session,
        transport: Transport,
        sharing: Sharing,
    ) -> Result<(Arc<Self>, Arc<Hub>), RateLimitConfigError> {
        // Tiers scope servers here: the others are never spawned.
        let tier = session.tier();
        let servers: Vec<Server> = profile
            .servers
            .iter()
            .filter(|s| s.allows(tier))
            .cloned()
            .collect();
        let limits = match sharing.limits {
            Some(limits) => limits,
            None => Arc::new(SessionRateLimits::new(
                &profile.rate_limit,
                session.rate_limit_tier(),
            )?),
        };
        let gate = Gate::new(session, limits, profile.audit.clone(), transport);
        // A shared redactor learned every server's secrets when it was made.
        let own_redactor = sharing.redactor.is_none();
        let client = Arc::new(ClientSession {
            gate,
            redactor: sharing.redactor.unwrap_or_default(),
            tasks: Default::default(),
            pooled: sharing.pooled,
        });
        if own_redactor {
            learn_every_secret(&client.redactor, profile.store.clone(), &servers).await;
        }
        let env_builder = secrets_env_builder(profile.store.clone(), Arc::clone(&client));
        let hub = Hub::new(
            servers,
            profile.defaults.clone(),
            profile.reaper.clone(),
            env_builder,
            client.clone(),
            profile.cache.clone(),
            sharing.children,
        );
        Ok((client, hub))
    }

    /// A session around its gate, with a redactor that knows nothing yet.
    pub fn new(gate: Gate) -> Arc<Self> {
        Arc::new(ClientSession {
            gate,
            redactor: Arc::default(),
            tasks: Default::default(),
            pooled: false,
        })
    }

    /// Whether the session serves clients that are not one principal (see [`Sharing::pooled`]).
    pub fn pooled(&self) -> bool {
        self.pooled
    }

    /// Identity, limits and audit trail.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The redactor every scrub of this session goes through.
    pub fn redactor(&self) -> &Arc<SharedRedactor> {
        self.redactor.shared()
    }

    /// The tasks children created for this session.
    pub(crate) fn tasks(&self) -> &super::tasks::TaskMap {
        &self.tasks
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

/// Each child's environment: the base, its file's `env`, exactly the secrets it names (read at
/// each start, so a changed secret reaches the next start) and the custom-secrets allowlist.
fn secrets_env_builder(
    store: Option<Arc<dyn SecretStore>>,
    session: Arc<ClientSession>,
) -> EnvBuilder {
    Arc::new(move |server: &Server| {
        let mut env = ChildEnv::for_server(server);
        let delivered = if server.def.secrets.is_empty() {
            ChildSecrets::default()
        } else {
            let store = store.as_ref().ok_or_else(|| {
                "its file names secrets, but no secret store could be opened\nhint: run `lastmile secrets status`".to_string()
            })?;
            child_secrets(store.as_ref(), &server.def.secrets).map_err(|e| e.to_string())?
        };
        // The redactor learns a value (a rotated one too, keeping the old) before the child
        // that receives it can echo it back.
        session.learn(delivered.redact).map_err(|e| e.to_string())?;
        for (name, value) in delivered.env {
            env.add_secret(name, value);
        }
        env.add_plain(CUSTOM_SECRETS_VAR, &delivered.custom_allowlist);
        Ok(env)
    })
}

/// Teach a session's redactor every secret any of `servers` will receive, before any child
/// starts: a child's output is then scrubbed of every sibling's secret too, whatever order
/// they start in. A server whose secrets cannot be read is skipped here; it will not start.
pub async fn learn_every_secret(
    redactor: &Arc<SessionRedactor>,
    store: Option<Arc<dyn SecretStore>>,
    servers: &[Server],
) {
    let Some(store) = store else { return };
    let refs: Vec<(String, Vec<SecretRef>)> = servers
        .iter()
        .filter(|s| !s.def.secrets.is_empty() && !s.def.disabled)
        .map(|s| (s.name.clone(), s.def.secrets.clone()))
        .collect();
    if refs.is_empty() {
        return;
    }
    let session = Arc::clone(redactor);
    // Keyring reads may be D-Bus round trips: off the async workers.
    let learned = tokio::task::spawn_blocking(move || {
        for (server, refs) in refs {
            match child_secrets(store.as_ref(), &refs) {
                Ok(delivered) => {
                    if let Err(e) = session.learn(delivered.redact) {
                        tracing::error!(server = %server, "the redactor could not learn its secrets: {e}");
                    }
                }
                Err(e) => tracing::debug!(server = %server, "secrets not readable yet: {e}"),
            }
        }
    })
    .await;
    if let Err(e) = learned {
        tracing::error!("learning the session's secrets failed: {e}");
    }
}

/// Record a session event (accepted, refused, ended) in the audit log, if there is one.
pub async fn record_session(
    sink: &Option<AuditSink>,
    transport: Transport,
    session: Option<&Session>,
    event: SessionEvent,
    reason: Option<String>,
    mode: AuthMode,
) {
    let Some(sink) = sink else { return };
    let record = SessionRecord {
        session_id: session
            .map(|s| s.session_id().to_string())
            .unwrap_or_default(),
        event,
        reason,
        mode,
        subject: session.map(|s| s.subject().to_string()),
        tier: session.map(|s| s.tier()),
        jti: session.and_then(|s| s.jti().map(str::to_string)),
        expires_at_ms: session
            .and_then(|s| s.expires_at())
            .map(|t| (t.0 as i64).saturating_mul(1000)),
        transport,
        at_ms: now_ms(),
    };
    if let Err(e) = sink.record(record).await {
        tracing::error!("audit: {e}");
    }
}
