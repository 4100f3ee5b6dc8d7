//! `lastmile serve`: one MCP server on stdin/stdout in front of the servers in servers.d.
//!
//! stdout carries JSON-RPC only; diagnostics go to the log file and (warnings) to stderr.

use std::sync::Arc;

use clap::Args;
use rmcp::ServiceExt;

use super::GlobalArgs;
use crate::config::{Profile, load_servers_dir};
use crate::downstream::{ChildEnv, ReaperLink};
use crate::exit_codes;
use crate::gateway::{EnvBuilder, Face, Hub};

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
        let env_builder: EnvBuilder = Arc::new(|server| Ok(ChildEnv::for_server(server)));
        let hub = Hub::new(loaded.servers, config.defaults.clone(), reaper, env_builder);
        let code = serve_stdio(Face::new(Arc::clone(&hub))).await;
        hub.stop_all().await;
        code
    });
    // Children are stopped; don't wait for stray blocking tasks (e.g. the stdin reader).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    code
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
