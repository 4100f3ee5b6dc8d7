//! `lastmile serve`: one MCP server on stdin/stdout in front of the servers in servers.d.
//!
//! stdout carries JSON-RPC only; diagnostics go to the log file and (warnings) to stderr.

use std::sync::Arc;

use clap::Args;
use rmcp::ServiceExt;

use super::GlobalArgs;
use crate::config::{Profile, Server, load_servers_dir};
use crate::downstream::{ChildEnv, ReaperLink};
use crate::exit_codes;
use crate::gateway::{EnvBuilder, Face, Hub};
use crate::secrets::{
    BackendRequest, CUSTOM_SECRETS_VAR, ChildSecrets, SecretStore, SharedRedactor, child_secrets,
    open_store,
};

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {}

pub(crate) fn run(global: &GlobalArgs, _args: ServeArgs) -> u8 {
    let profile = match Profile::locate(&global.profile, global.config_dir.clone()) {
        Ok(p) => p,
        Err(e) => {
            super::Printer.err(format!("error: {e}"));
            return exit_codes::CONFIG_INVALID;
        }
    };
    let _log = crate::telemetry::init_serving(&profile.log_dir());
    let config = match profile.load_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return exit_codes::CONFIG_INVALID;
        }
    };
    let loaded = load_servers_dir(&profile.servers_dir());
    for problem in &loaded.problems {
        tracing::warn!("skipping server: {problem}");
    }
    let store = open_secret_store(global, &profile);
    // Every secret handed to any child is known to the redactor, and every log event passes it.
    let redactor = Arc::new(SharedRedactor::default());
    crate::telemetry::set_scrubber(redactor.clone());
    let env_builder = secrets_env_builder(store, Arc::clone(&redactor));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return exit_codes::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let reaper = match ReaperLink::start() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    "cannot start the reaper ({e}); children may outlive a crash of lastmile"
                );
                None
            }
        };
        let hub = Hub::new(
            loaded.servers,
            config.defaults.clone(),
            reaper,
            env_builder,
            redactor,
        );
        let code = serve_stdio(Face::new(Arc::clone(&hub))).await;
        hub.stop_all().await;
        code
    });
    // Children are stopped; don't wait for stray blocking tasks (e.g. the stdin reader).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
}

/// The profile's secret store, if it can be opened. Without one, servers that name secrets do
/// not start (each says why); the others serve.
fn open_secret_store(global: &GlobalArgs, profile: &Profile) -> Option<Arc<dyn SecretStore>> {
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
            tracing::info!("no secret store: {e}");
            None
        }
    }
}

/// Each child's environment: the base, its file's `env`, exactly the secrets it names (read at
/// each start, so a changed secret reaches the next start) and the custom-secrets allowlist.
fn secrets_env_builder(
    store: Option<Arc<dyn SecretStore>>,
    redactor: Arc<SharedRedactor>,
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
        // The redactor learns a value before any child can echo it back.
        redactor.add(delivered.redact).map_err(|e| e.to_string())?;
        for (name, value) in delivered.env {
            env.add_secret(name, value);
        }
        env.add_plain(CUSTOM_SECRETS_VAR, &delivered.custom_allowlist);
        Ok(env)
    })
}

/// Serve until stdin closes or a SIGINT/SIGTERM arrives.
async fn serve_stdio(face: Face) -> u8 {
    let service = match face.serve(rmcp::transport::stdio()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("the client went away before the session started: {e}");
            return exit_codes::OK;
        }
    };
    let ct = service.cancellation_token();
    let stop = tokio::spawn(async move {
        shutdown_signal().await;
        ct.cancel();
    });
    match service.waiting().await {
        Ok(reason) => tracing::info!(?reason, "session ended"),
        Err(e) => tracing::warn!("the session task failed: {e}"),
    }
    stop.abort();
    exit_codes::OK
}

#[cfg(unix)]
async fn shutdown_signal() {
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
async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
