//! `lastmile demo`: start `lastmile serve` on a config folder (default: the current one, which in
//! the repository holds the demo `servers.d/`) and act as a client: list what it offers, call a
//! few tools, show that the children's environments hold nothing of lastmile's own.

use std::path::PathBuf;
use std::process::Stdio;

use clap::Args;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;

use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer};
use crate::exit_codes;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Config folder to serve (holds servers.d/ and lastmile.toml). Default: the current folder,
    /// or --config-dir.
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub(crate) fn run(global: &GlobalArgs, args: DemoArgs) -> u8 {
    crate::telemetry::init_cli();
    let dir = args
        .dir
        .or_else(|| global.config_dir.clone())
        .unwrap_or_else(|| PathBuf::from("."));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            Printer.err(format!("error: cannot start the async runtime: {e}"));
            return exit_codes::FAILURE;
        }
    };
    match runtime.block_on(demo(global, dir)) {
        Ok(()) => exit_codes::OK,
        Err(e) => {
            Printer.err(format!("error: {e}"));
            exit_codes::FAILURE
        }
    }
}

async fn demo(global: &GlobalArgs, dir: PathBuf) -> Result<(), String> {
    let p = Printer;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("serve")
        .arg("--profile")
        .arg(&global.profile)
        .arg("--config-dir")
        .arg(&dir)
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
    Ok(())
}
