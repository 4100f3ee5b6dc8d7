//! `lastmile serve --http ADDR`: the same gateway over Streamable HTTP. This file only turns the
//! profile into an [`HttpGateway`] and runs it; the transport is [`crate::http`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::error::CliError;
use crate::audit::AuditSink;
use crate::config::{Profile, ProfileConfig, Server};
use crate::downstream::ReaperLink;
use crate::edge::{Edge, ProxyKeys, SystemClock};
use crate::exit_codes;
use crate::gateway::{SessionProfile, learn_every_secret};
use crate::http::HttpGateway;
use crate::identity::Authenticator;
use crate::secrets::{Internal, SecretKey, SecretStore, SessionRedactor};

/// What `serve` has set up before choosing the transport.
pub(super) struct Setup<'a> {
    pub addr: SocketAddr,
    pub allow_non_loopback: bool,
    pub config: &'a ProfileConfig,
    pub profile: &'a Profile,
    pub servers: Vec<Server>,
    pub store: Option<Arc<dyn SecretStore>>,
    pub auth: Authenticator,
    pub sink: Option<AuditSink>,
}

/// Serve until SIGINT/SIGTERM; the exit code.
pub(super) fn run(setup: Setup<'_>) -> Result<u8, CliError> {
    if !setup.addr.ip().is_loopback() {
        if !setup.allow_non_loopback {
            return Err(CliError::Other(format!(
                "refusing to serve HTTP on {}, which is not a loopback address\nhint: pass --allow-non-loopback to mean it, and put TLS in front",
                setup.addr
            )));
        }
        tracing::warn!(
            "SERVING HTTP ON A NON-LOOPBACK ADDRESS ({}): anyone who can reach it can try credentials; this listener has no TLS",
            setup.addr
        );
    }
    let proxy_keys = proxy_keys(setup.store.as_deref())?;
    let auth = Arc::new(setup.auth);
    let edge = Edge::new(
        &setup.config.http,
        auth,
        proxy_keys,
        Arc::new(SystemClock::default()),
    )
    .map_err(|e| CliError::ConfigInvalid {
        path: setup.profile.config_file(),
        detail: e.to_string(),
    })?;
    // One thread carries the messages, as on stdio: a call crosses several tasks (the HTTP
    // connection, the session's input and demultiplexer, the front, the child's link), and on
    // a multi-thread runtime each crossing can be a wake-up of another thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    let code = runtime.block_on(async {
        // One redactor for every session and the log: it knows every secret of every server
        // before any child starts (a stricter scrub than per tier, never a weaker one).
        let redactor = Arc::new(SessionRedactor::default());
        learn_every_secret(&redactor, setup.store.clone(), &setup.servers).await;
        crate::telemetry::set_scrubber(redactor.shared().clone());
        let reaper = match ReaperLink::start() {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(
                    "cannot start the reaper ({e}); children may outlive a crash of lastmile"
                );
                None
            }
        };
        let shared = SessionProfile {
            servers: setup.servers,
            defaults: setup.config.defaults.clone(),
            rate_limit: setup.config.rate_limit.clone(),
            store: setup.store.clone(),
            audit: setup.sink.clone(),
            cache: Some(super::serve::catalog_cache(setup.profile)),
            reaper,
        };
        let listener = tokio::net::TcpListener::bind(setup.addr)
            .await
            .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", setup.addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::Other(format!("cannot listen on {}: {e}", setup.addr)))?;
        let gateway = Arc::new(HttpGateway::new(
            edge,
            &setup.config.http,
            bound,
            shared,
            redactor,
            setup.config.auth.mode,
            setup.config.defaults.max_message_bytes.max(1024),
        ));
        tracing::info!(%bound, "serving MCP over HTTP");
        // Said on stderr too: a script that asked for port 0 learns the port here.
        eprintln!("lastmile: serving MCP at http://{bound}/mcp");
        crate::http::serve(listener, gateway, super::serve::shutdown_signal())
            .await
            .map_err(|e| CliError::Other(format!("the HTTP server failed: {e}")))?;
        if let Some(sink) = &setup.sink
            && let Err(e) = sink.flush().await
        {
            tracing::error!("audit: the last rows could not be committed: {e}");
        }
        Ok::<u8, CliError>(exit_codes::OK)
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// The proxy identity keys from the store (`None` without a current key: a header that arrives
/// is then refused).
fn proxy_keys(store: Option<&dyn SecretStore>) -> Result<Option<ProxyKeys>, CliError> {
    let Some(store) = store else { return Ok(None) };
    let Some(current) = store.get(&SecretKey::Internal(Internal::ProxyIdentityKey))? else {
        return Ok(None);
    };
    let previous = store.get(&SecretKey::Internal(Internal::ProxyIdentityKeyPrevious))?;
    ProxyKeys::new(&current, previous.as_ref())
        .map(Some)
        .map_err(|e| CliError::Other(format!("the proxy identity key is not usable: {e}\nhint: store a random key of at least 32 bytes with `lastmile secrets set-proxy-key`")))
}
