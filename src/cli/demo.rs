//! `lastmile demo`: start `lastmile serve` on a config folder (default: the current one, which in
//! the repository holds the demo `servers.d/` and `lastmile.toml`) and act as a client: list what
//! it offers, call a few tools, show that a child's environment holds its secret and nothing of
//! lastmile's own, and that the secret never comes back.
//!
//! It uses its own profile, `demo` (its own keyring namespace), and sets that profile up on first
//! run: a signing secret, a demo API key, and a ten-minute session token for tier `user`.

use std::path::PathBuf;
use std::process::Stdio;

use clap::Args;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;

use secrecy::{ExposeSecret, SecretString};

use super::error::CliError;
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer};
use crate::config::{Profile, Tier};
use crate::identity::{IssueRequest, TokenIssuer};
use crate::secrets::{
    BackendRequest, Internal, SIGNING_SECRET_BYTES, SecretKey, SecretName, SecretsError,
    open_store, random_secret,
};

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Config folder to serve (holds servers.d/ and lastmile.toml). Default: the current folder,
    /// or --config-dir.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(global: &GlobalArgs, args: DemoArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let dir = args
        .dir
        .or_else(|| global.config_dir.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(demo(global, dir)).map_err(CliError::Other)
}

/// The demo's own profile: its keyring namespace never touches the user's real profiles.
const DEMO_PROFILE: &str = "demo";

/// Make sure the demo profile has a signing secret and a demo API key; mint a session token.
fn prepare(global: &GlobalArgs, dir: &std::path::Path) -> Result<SecretString, String> {
    let p = Printer;
    let profile =
        Profile::locate(DEMO_PROFILE, Some(dir.to_path_buf())).map_err(|e| e.to_string())?;
    let request: BackendRequest = global
        .secrets_backend
        .parse()
        .map_err(|e: SecretsError| e.to_string())?;
    let opened = open_store(request, &profile.keyring_service()).map_err(|e| e.to_string())?;
    p.out(format!(
        "secret store: {:?} ({}), service `{}`",
        opened.choice.kind,
        opened.choice.reason,
        profile.keyring_service()
    ));
    let store = opened.store;
    let ensure = |key: SecretKey, bytes: usize, what: &str| -> Result<SecretString, String> {
        if let Some(v) = store.get(&key).map_err(|e| e.to_string())? {
            return Ok(v);
        }
        let fresh = random_secret(bytes).map_err(|e| e.to_string())?;
        store.set(&key, &fresh).map_err(|e| e.to_string())?;
        p.out(format!("stored a new {what} in the keyring"));
        Ok(fresh)
    };
    let signing = ensure(
        SecretKey::Internal(Internal::SigningSecret),
        SIGNING_SECRET_BYTES,
        "signing secret",
    )?;
    let name = SecretName::parse("DEMO_API_KEY").map_err(|e| e.to_string())?;
    ensure(SecretKey::Named(name), 24, "demo API key (DEMO_API_KEY)")?;
    let config = profile.load_config().map_err(|e| e.to_string())?;
    let issuer = TokenIssuer::new(&config.auth, &signing).map_err(|e| e.to_string())?;
    let mut req = IssueRequest::new("demo-user", Tier::User);
    req.ttl = Some(std::time::Duration::from_secs(600));
    let issued = issuer.issue(&req).map_err(|e| e.to_string())?;
    p.out("minted a 10-minute session token for subject `demo-user`, tier `user`");
    Ok(issued.token)
}

async fn demo(global: &GlobalArgs, dir: PathBuf) -> Result<(), String> {
    let p = Printer;
    let token = tokio::task::block_in_place(|| prepare(global, &dir))?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--profile")
        .arg(DEMO_PROFILE)
        .arg("--config-dir")
        .arg(&dir)
        .arg("--secrets-backend")
        .arg(&global.secrets_backend)
        // The token travels in lastmile's environment, never argv, and never reaches a child.
        .env("LASTMILE_TOKEN", token.expose_secret())
        // A variable only lastmile has: the demo shows that no child receives it.
        .env("LASTMILE_DEMO_CANARY", "only-lastmile-sees-this");
    p.out(format!(
        "$ lastmile serve --config-dir {}   (started by the demo as an MCP client)",
        dir.display()
    ));
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start lastmile serve: {e}"))?;
    let client = ().serve(transport).await.map_err(|e| format!("MCP handshake failed: {e}"))?;
    if let Some(server) = client.peer_info().and_then(|info| info.server_info.clone()) {
        p.out(format!("connected to {} {}", server.name, server.version));
    }

    let tools = client.list_all_tools().await.map_err(|e| e.to_string())?;
    p.out(format!("\n{} tools:", tools.len()));
    for t in &tools {
        let desc = t.description.as_deref().unwrap_or("");
        p.out(format!("  {:<28} {}", t.name, sanitize_for_terminal(desc)));
    }
    if let Ok(prompts) = client.list_all_prompts().await {
        p.out(format!(
            "\n{} prompts: {}",
            prompts.len(),
            prompts
                .iter()
                .map(|x| x.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Ok(resources) = client.list_all_resources().await {
        p.out(format!(
            "{} resources: {}",
            resources.len(),
            resources
                .iter()
                .map(|x| x.uri.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    let echo = tools.iter().find(|t| t.name.ends_with("__echo"));
    if let Some(echo) = echo {
        let mut params = CallToolRequestParams::new(echo.name.clone());
        params.arguments = serde_json::json!({ "text": "hello through lastmile" })
            .as_object()
            .cloned();
        let r = client.call_tool(params).await.map_err(|e| e.to_string())?;
        let text = r
            .content
            .first()
            .and_then(|c| c.as_text())
            .map(|t| t.text.clone())
            .unwrap_or_default();
        p.out(format!(
            "\ncall {} {{\"text\": \"hello through lastmile\"}}\n  -> {}",
            echo.name,
            sanitize_for_terminal(&text)
        ));
    }
    if let Some(env_tool) = tools.iter().find(|t| t.name.ends_with("__env")) {
        let r = client
            .call_tool(CallToolRequestParams::new(env_tool.name.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = r
            .structured_content
            .as_ref()
            .and_then(|v| v["env"].as_object())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        p.out(format!(
            "\ncall {}: the child's whole environment holds only: {}",
            env_tool.name,
            names.join(", ")
        ));
        let shown = r
            .structured_content
            .as_ref()
            .and_then(|v| v["env"]["DEMO_API_KEY"].as_str())
            .unwrap_or("(absent)");
        p.out(format!(
            "  DEMO_API_KEY as the child printed it, after lastmile's redaction: {shown}"
        ));
        let leaked = names.iter().any(|n| n == "LASTMILE_DEMO_CANARY");
        p.out(format!(
            "  LASTMILE_DEMO_CANARY (set in lastmile's own environment) reached the child: {}",
            if leaked {
                "YES — isolation is broken"
            } else {
                "no"
            }
        ));
    }
    client.cancel().await.map_err(|e| e.to_string())?;
    p.out("\ndone: lastmile stopped its children and exited.");
    p.out(format!(
        "every call is in the audit log: lastmile --profile {DEMO_PROFILE} --config-dir {} audit tail",
        dir.display()
    ));
    Ok(())
}
