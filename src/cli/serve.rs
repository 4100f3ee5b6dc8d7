//! `lastmile serve`: one MCP server on stdin/stdout in front of the servers in servers.d.
//!
//! stdout carries JSON-RPC only; diagnostics go to the log file and (warnings) to stderr.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rmcp::model::{ErrorCode, InitializeRequestParams, InitializeResult, ServerConfig};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler, ServiceExt};
use secrecy::SecretString;

use super::GlobalArgs;
use super::error::CliError;
use crate::audit::{AuditKey, AuditWriter, SessionEvent, Transport, db_path};
use crate::config::{AuthMode, Profile, ProfileConfig, load_servers_dir};
use crate::downstream::{CatalogCache, ReaperLink};
use crate::exit_codes;
use crate::gateway::{ClientSession, Face, Guarded, SessionProfile, record_session};
use crate::identity::{Authenticator, TokenSources, disabled_auth_allowed_by_env};
use crate::secrets::{BackendRequest, Internal, SecretKey, SecretStore, open_store, random_secret};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Read the session token from this file. Sources are tried in order: this file, then
    /// LASTMILE_TOKEN, then the token saved with `lastmile token issue --save`.
    #[arg(long, value_name = "PATH", conflicts_with = "http")]
    token_file: Option<PathBuf>,
    /// Serve MCP over Streamable HTTP at ADDR (e.g. 127.0.0.1:8931; port 0 picks one) instead
    /// of stdin/stdout. Every request then carries its own credential (see [http] in
    /// lastmile.toml).
    #[arg(long, value_name = "ADDR")]
    http: Option<std::net::SocketAddr>,
    /// Let --http listen on an address that is not loopback. Anyone who can reach it can try
    /// credentials; put TLS in front of it.
    #[arg(long, requires = "http")]
    allow_non_loopback: bool,
}

pub(crate) fn run(global: &GlobalArgs, args: ServeArgs) -> u8 {
    // First: no process of the user may ptrace us or read our environment, memory or fds.
    crate::downstream::isolate::make_non_dumpable();
    // Whatever descriptors the launcher left open (beyond stdio) reach no child: they are not
    // lastmile's to pass on. Still one thread here, so no descriptor is opened meanwhile.
    #[cfg(unix)]
    close_fds::set_fds_cloexec(3, &[]);
    let profile = match Profile::locate(&global.profile, global.config_dir.clone()) {
        Ok(p) => p,
        // No log folder yet: the user's terminal (or the client's stderr) is the only place.
        Err(e) => return super::error::finish(Err(CliError::Profile(e))),
    };
    let _log = crate::telemetry::init_serving(&profile.log_dir());
    match serve(global, args, &profile) {
        Ok(code) => code,
        Err(e) => {
            // The log file and stderr (through the log's warning layer) both get it; a refused
            // session was reported before the client was answered.
            if !matches!(e, CliError::SessionRefused { .. }) {
                tracing::error!("{e}");
            }
            e.exit_code()
        }
    }
}

/// Everything `serve` does once its log is open. Refusals before the session starts are
/// `CliError`s (one mapping to exit codes); the session's own outcome is its exit code.
fn serve(global: &GlobalArgs, args: ServeArgs, profile: &Profile) -> Result<u8, CliError> {
    let profile = profile.clone();
    super::servers::refuse_unsafe_config(&profile)?;
    let config = profile.load_config()?;
    let loaded = load_servers_dir(&profile.servers_dir());
    for problem in &loaded.problems {
        tracing::warn!("skipping server: {problem}");
    }
    let store = open_secret_store(global, &profile);
    if store.is_none() && config.auth.mode != AuthMode::Disabled {
        return Err(CliError::NoSecretStore {
            mode: format!("{:?}", config.auth.mode).to_lowercase(),
        });
    }

    // Identity: one validator, three modes; a weak or missing signing secret refuses to boot.
    let auth = authenticator(&config, store.as_deref())?;

    // Audit: no call goes unrecorded unless the profile says so, loudly.
    let audit = open_audit(&config, &profile, store.as_ref())?;
    let sink = audit.as_ref().map(|w| w.sink());

    if let Some(addr) = args.http {
        let code = super::serve_http::run(super::serve_http::Setup {
            addr,
            allow_non_loopback: args.allow_non_loopback,
            config: &config,
            profile: &profile,
            servers: loaded.servers,
            store,
            auth,
            sink,
        });
        if let Some(writer) = audit
            && let Err(e) = writer.shutdown()
        {
            tracing::error!("audit: {e}");
        }
        return code;
    }

    // One thread carries every message: a forwarded call crosses several tasks (the client's
    // reader, the call, the child's writer and reader, the client's writer), and on a
    // multi-thread runtime each crossing can be a wake-up of another thread, which costs more
    // than the work. Blocking work (keyring reads, the audit writer) has threads of its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Err(CliError::Other(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let established = auth.establish(TokenSources::from_env(args.token_file, || {
        saved_token(store.as_deref())
    }));
    let mode = config.auth.mode;
    let code = runtime.block_on(async {
        let session = match established {
            Ok(session) => session,
            Err(refusal) => {
                // Required mode: the reason reaches the user, nothing downstream starts.
                let error = CliError::SessionRefused { reason: refusal.to_string(), hint: refusal.hint() };
                // Said at once: a client may wait for stderr before it closes the connection.
                tracing::error!("{error}");
                record_session(&sink, Transport::Stdio, None, SessionEvent::Refused, Some(refusal.to_string()), mode).await;
                refuse_session(error.to_string(), refusal.code()).await;
                return Err(error);
            }
        };
        let anonymous_reason = match session.origin() {
            crate::identity::SessionOrigin::Anonymous { reason } => Some(reason.to_string()),
            _ => None,
        };
        if let Some(reason) = &anonymous_reason {
            tracing::warn!("no valid token; serving as anonymous: {reason}");
        }
        tracing::info!(subject = %session.subject(), tier = %session.tier(), session_id = %session.session_id(), "session accepted");
        record_session(&sink, Transport::Stdio, Some(&session), SessionEvent::Accepted, anonymous_reason, mode).await;

        let reaper = match ReaperLink::start() {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!("cannot start the reaper ({e}); children may outlive a crash of lastmile");
                None
            }
        };
        let shared = SessionProfile {
            servers: loaded.servers,
            defaults: config.defaults.clone(),
            rate_limit: config.rate_limit.clone(),
            store,
            audit: sink.clone(),
            cache: Some(catalog_cache(&profile)),
            reaper,
        };
        let (client, hub) = ClientSession::open(&shared, session, Transport::Stdio)
            .await
            .map_err(|e| CliError::ConfigInvalid { path: profile.config_file(), detail: e.to_string() })?;
        // One session per process on stdio: every log event passes its redactor.
        crate::telemetry::set_scrubber(client.redactor().clone());
        let code = serve_stdio(
            Guarded::new(Face::new(Arc::clone(&hub), Arc::clone(&client))),
            config.defaults.max_message_bytes.max(1024),
        )
        .await;
        hub.stop_all().await;
        record_session(&sink, Transport::Stdio, Some(&client.gate().session), SessionEvent::Ended, Some("the client closed the session or lastmile was stopped".into()), mode).await;
        if let Some(sink) = &sink
            && let Err(e) = sink.flush().await
        {
            tracing::error!("audit: the last rows could not be committed: {e}");
        }
        Ok(code)
    });
    if let Some(writer) = audit
        && let Err(e) = writer.shutdown()
    {
        tracing::error!("audit: {e}");
    }
    // Children are stopped; don't wait for stray blocking tasks (e.g. the stdin reader).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// The authenticator for the profile's mode, with its signing secret from the store.
fn authenticator(
    config: &ProfileConfig,
    store: Option<&dyn SecretStore>,
) -> Result<Authenticator, CliError> {
    let secret: Option<SecretString> = match store {
        Some(store) => store.get(&SecretKey::Internal(Internal::SigningSecret))?,
        None => None,
    };
    Ok(Authenticator::new(
        &config.auth,
        secret.as_ref(),
        disabled_auth_allowed_by_env(),
    )?)
}

/// The token saved with `token issue --save`, for the last of the token sources.
fn saved_token(store: Option<&dyn SecretStore>) -> Result<Option<SecretString>, String> {
    match store {
        Some(store) => store
            .get(&SecretKey::Internal(Internal::SessionToken))
            .map_err(|e| e.to_string()),
        None => Err("no secret store could be opened".into()),
    }
}

/// Open the audit writer with the profile's audit key (made on first use) and the chain's
/// high-water mark kept beside it. `Ok(None)` only when the profile explicitly allows serving
/// without an audit log; a cut chain is refused even then.
fn open_audit(
    config: &ProfileConfig,
    profile: &Profile,
    store: Option<&Arc<dyn SecretStore>>,
) -> Result<Option<AuditWriter>, CliError> {
    use crate::audit::{AuditError, WriterOptions};
    let opened = (|| {
        let store = store.ok_or_else(|| {
            "no secret store to hold the audit key\nhint: run `lastmile secrets status`".to_string()
        })?;
        crate::config::perms::create_private_dir(&profile.data_dir)
            .map_err(|e| format!("cannot create {}: {e}", profile.data_dir.display()))?;
        // Two `serve` processes of a fresh profile (Claude Desktop and Claude Code together)
        // must not each make a key, the second overwriting the first: make it under a lock.
        let lock = audit_key_lock(&profile.data_dir)?;
        let key_name = SecretKey::Internal(Internal::AuditKey);
        let key = match store.get(&key_name).map_err(|e| e.to_string())? {
            Some(k) => k,
            None => {
                let fresh = random_secret(32).map_err(|e| e.to_string())?;
                store.set(&key_name, &fresh).map_err(|e| e.to_string())?;
                fresh
            }
        };
        drop(lock);
        // Two processes opening a fresh database at once (Claude Desktop and Claude Code
        // starting together) can meet a lock SQLite reports at once, without waiting: try again
        // for a moment. A lock held for longer already waited out the busy timeout.
        let started = std::time::Instant::now();
        loop {
            let secret = AuditKey::from_secret(&key).map_err(|e| e.to_string())?;
            let mark = Box::new(super::audit::KeyringMark(Arc::clone(store)));
            match AuditWriter::open_guarded(
                &db_path(&profile.data_dir),
                secret,
                WriterOptions::default(),
                Some(mark),
            ) {
                Err(AuditError::Locked { .. })
                    if started.elapsed() < std::time::Duration::from_secs(2) =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return Ok(other),
            }
        }
    })();
    match opened {
        Ok(Ok(writer)) => Ok(Some(writer)),
        // Serving on, even unaudited, would hide a cut log behind new sessions.
        Ok(Err(e @ AuditError::ChainBroken { .. })) => Err(CliError::AuditTampered {
            detail: e.to_string(),
        }),
        Ok(Err(e)) => unaudited_or(config, e.to_string()),
        Err(e) => unaudited_or(config, e),
    }
}

/// An exclusive lock on `<data>/audit.key.lock`, held while the audit key is read or made (the
/// lock goes with the file handle).
fn audit_key_lock(data_dir: &std::path::Path) -> Result<std::fs::File, String> {
    let path = data_dir.join("audit.key.lock");
    let mut options = std::fs::OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// Serve without an audit log if the profile allows it, loudly; else refuse.
fn unaudited_or(config: &ProfileConfig, e: String) -> Result<Option<AuditWriter>, CliError> {
    if config.audit.allow_unaudited {
        tracing::warn!("SERVING WITHOUT AN AUDIT LOG (audit.allow_unaudited = true): {e}");
        return Ok(None);
    }
    Err(CliError::AuditUnavailable { detail: e })
}

/// Answer the client's `initialize` (and anything else) with the refusal, then end.
async fn refuse_session(reason: String, code: &'static str) {
    #[derive(Clone)]
    struct Refuse {
        reason: String,
        code: &'static str,
    }
    impl ServerHandler for Refuse {
        fn get_info(&self) -> ServerConfig {
            ServerConfig::default()
        }
        async fn initialize(
            &self,
            _r: InitializeRequestParams,
            _c: RequestContext<RoleServer>,
        ) -> Result<InitializeResult, McpError> {
            Err(McpError::new(
                ErrorCode::INVALID_REQUEST,
                self.reason.clone(),
                Some(serde_json::json!({ "reason": self.code })),
            ))
        }
    }
    let refuse = Refuse { reason, code };
    if let Ok(service) = refuse.serve(rmcp::transport::stdio_pipes()).await {
        let _ = service.waiting().await;
    }
}

/// The profile's secret store, if it can be opened. Without one, servers that name secrets do
/// not start (each says why); the others serve.
pub(super) fn open_secret_store(
    global: &GlobalArgs,
    profile: &Profile,
) -> Option<Arc<dyn SecretStore>> {
    let request: BackendRequest = match global.secrets_backend.parse() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}");
            return None;
        }
    };
    match open_store(request, &profile.keyring_service()) {
        Ok(opened) => {
            tracing::info!(backend = ?opened.choice.kind, reason = %opened.choice.reason, "secret store opened");
            Some(opened.store)
        }
        Err(e) => {
            tracing::warn!("no secret store: {e}");
            None
        }
    }
}

/// The profile's shared parts for every session (the catalog cache, the reaper).
pub(super) fn catalog_cache(profile: &Profile) -> CatalogCache {
    CatalogCache::new(profile.data_dir.join("catalogs"))
        .with_start_records(profile.data_dir.join("servers"))
}

/// Serve until stdin closes or a SIGINT/SIGTERM arrives.
async fn serve_stdio(face: Guarded, max_message: usize) -> u8 {
    let (input, output) = client_stdio();
    // On a task of its own rather than in `block_on`: a call's answer then wakes it as any task
    // is woken, without the extra turn of the reactor that waking `block_on`'s future costs.
    let front = crate::gateway::serve_front(face, input, output, max_message, shutdown_signal());
    if let Err(e) = tokio::spawn(front).await {
        tracing::error!("the session ended abnormally: {e}");
    }
    tracing::info!("session ended");
    exit_codes::OK
}

type ClientIo = (
    Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
);

/// The client's stdin and stdout. Pipes (how every client launches a stdio server) are driven
/// by the reactor directly; tokio's own stdin and stdout hand each read and write to a blocking
/// thread, which costs two thread hops per message. Anything else (a file, a terminal) falls
/// back to those.
fn client_stdio() -> ClientIo {
    // Each side on its own: turning stdin into a reactor pipe makes its file description
    // non-blocking, so stdin must not then fall back to tokio's blocking reader when only
    // stdout is not a pipe (`lastmile serve > file`).
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use tokio::net::unix::pipe;
        let input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| pipe::Receiver::from_file(std::fs::File::from(fd)).ok())
        {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdin()),
        };
        let output: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .and_then(|fd| pipe::Sender::from_file(std::fs::File::from(fd)).ok())
        {
            Some(pipe) => Box::new(pipe),
            None => Box::new(tokio::io::stdout()),
        };
        (input, output)
    }
    #[cfg(not(unix))]
    {
        (Box::new(tokio::io::stdin()), Box::new(tokio::io::stdout()))
    }
}

#[cfg(unix)]
pub(super) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

#[cfg(not(unix))]
pub(super) async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
