//! `lastmile tools` and `lastmile call`: see and try exactly what a session sees, by starting the
//! gateway (`lastmile serve`) and acting as its client. `--as TIER` looks through a session of
//! that tier (it signs a short-lived token, so it needs the profile's signing secret).

use clap::Args;
use rmcp::model::{CallToolRequestParams, Tool};

use super::error::CliError;
use super::output::sanitize_for_terminal;
use super::{GlobalArgs, Printer, client};
use crate::config::Tier;

#[derive(Debug, Args)]
pub(crate) struct ToolsArgs {
    /// See the tools a session of this tier sees (signs a 5-minute token with the profile's
    /// signing secret). Default: the saved token's session, as Claude would.
    #[arg(long = "as", value_name = "TIER")]
    as_tier: Option<Tier>,
    /// Print JSON (name, description, input schema of each tool) instead of a list.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CallArgs {
    /// The tool's name as `lastmile tools` shows it (`server__tool`).
    name: String,
    /// The arguments: a JSON object. Default `{}`; `-` reads it from stdin.
    arguments: Option<String>,
    /// Call as a session of this tier (see `lastmile tools --as`).
    #[arg(long = "as", value_name = "TIER")]
    as_tier: Option<Tier>,
    /// Print the whole result as JSON.
    #[arg(long)]
    json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))
}

pub(crate) fn run_tools(global: &GlobalArgs, args: ToolsArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    runtime()?.block_on(async {
        let (expected, wait) = client::expected_servers(global, args.as_tier)?;
        let gw = client::connect(global, args.as_tier).await?;
        let listed = gw
            .tools_until(wait, |t| client::missing_servers(&expected, t).is_empty())
            .await;
        gw.close().await;
        let mut tools = listed?;
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        print_tools(&Printer, &tools, args.json, args.as_tier);
        let missing = client::missing_servers(&expected, &tools);
        if !missing.is_empty() {
            Printer.err(format!(
                "note: no tools from {} within {}s (not started, or offering none)\nhint: `lastmile servers list` and `lastmile doctor` say why",
                missing.join(", "),
                wait.as_secs()
            ));
        }
        Ok(())
    })
}

fn print_tools(p: &Printer, tools: &[Tool], json: bool, tier: Option<Tier>) {
    if json {
        let v: Vec<serde_json::Value> = tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": t.input_schema.as_ref(),
                })
            })
            .collect();
        p.out(serde_json::Value::from(v));
        return;
    }
    let seen_as = tier.map(|t| format!(" (as tier {t})")).unwrap_or_default();
    p.err(format!("{} tool(s){seen_as}", tools.len()));
    let width = tools
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .min(40);
    for t in tools {
        let first = t
            .description
            .as_deref()
            .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
            .unwrap_or("");
        let desc: String = sanitize_for_terminal(first.trim())
            .chars()
            .take(100)
            .collect();
        p.out(format!("{:<width$}  {desc}", t.name));
    }
}

/// The call's arguments: a JSON object from the command line, stdin, or `{}`.
fn arguments(raw: Option<&str>) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let text = match raw {
        None => return Ok(Default::default()),
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s)
                .map_err(|e| CliError::io("read the arguments from", "stdin", e))?;
            s
        }
        Some(s) => s.to_string(),
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(CliError::usage(
            "the arguments are not a JSON object",
            "write them as an object, e.g. '{\"text\": \"hi\"}'",
        )),
        Err(e) => Err(CliError::usage(
            format!("the arguments are not valid JSON: {e}"),
            "write them as an object, e.g. '{\"text\": \"hi\"}'; `lastmile tools --json` shows each tool's schema",
        )),
    }
}

pub(crate) fn run_call(global: &GlobalArgs, args: CallArgs) -> Result<(), CliError> {
    crate::telemetry::init_cli();
    let arguments = arguments(args.arguments.as_deref())?;
    let p = Printer;
    runtime()?.block_on(async {
        let (expected, wait) = client::expected_servers(global, args.as_tier)?;
        let gw = client::connect(global, args.as_tier).await?;
        // A server still starting is announced later; wait for the tool to be listed.
        let name = args.name.clone();
        if let Err(e) = gw
            .tools_until(wait, |t| {
                t.iter().any(|t| t.name == name) || client::missing_servers(&expected, t).is_empty()
            })
            .await
        {
            gw.close().await;
            return Err(e);
        }
        let mut params = CallToolRequestParams::new(args.name.clone());
        params.arguments = Some(arguments);
        let called = gw.client.call_tool(params).await;
        gw.close().await;
        let result = called.map_err(|e| CliError::ToolFailed {
            detail: format!(
                "cannot call `{}`: {}\nhint: `lastmile tools` lists the names this session may call",
                sanitize_for_terminal(&args.name),
                sanitize_for_terminal(&e.to_string())
            ),
        })?;
        if args.json {
            p.out(serde_json::to_string_pretty(&result).unwrap_or_default());
        } else {
            for c in &result.content {
                match c.as_text() {
                    Some(t) => p.out(sanitize_for_terminal(&t.text)),
                    None => p.out(sanitize_for_terminal(
                        &serde_json::to_string(c).unwrap_or_default(),
                    )),
                }
            }
            if result.content.is_empty()
                && let Some(s) = &result.structured_content
            {
                p.out(sanitize_for_terminal(
                    &serde_json::to_string_pretty(s).unwrap_or_default(),
                ));
            }
        }
        if result.is_error == Some(true) {
            return Err(CliError::ToolFailed {
                detail: format!(
                    "`{}` answered with an error result",
                    sanitize_for_terminal(&args.name)
                ),
            });
        }
        Ok(())
    })
}
