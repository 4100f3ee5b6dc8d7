//! The command line: one file per subcommand, each with one entry function. Flags become plain
//! values here; lower modules never see clap types.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod audit;
mod client;
mod completions;
mod demo;
mod doctor;
mod error;
mod files;
mod glue;
mod import;
mod init;
mod output;
mod reaper;
mod sandbox;
mod secrets;
mod serve;
mod serve_http;
mod servers;
mod token;
mod tools;

pub use output::Printer;

/// lastmile: a local MCP gateway whose credentials reach tools through their environment and
/// nowhere else.
#[derive(Debug, Parser)]
#[command(
    name = "lastmile",
    version,
    about,
    long_about = None,
    after_help = "Examples:\n  lastmile init\n  lastmile import --dry-run\n  lastmile tools --as user\n  lastmile doctor\n\nExit codes: 0 ok, 1 failure, 2 usage, 3 config invalid, 4 session refused, 5 signing secret missing or weak,\n6 keyring unavailable, 7 audit unavailable, 8 audit tampered, 9 conflict, 10 doctor found a problem, 11 tool failed."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Profile to use: its config folder, data folder and keyring namespace.
    #[arg(
        long,
        global = true,
        env = "LASTMILE_PROFILE",
        default_value = "default"
    )]
    pub profile: String,
    /// Config folder (holds lastmile.toml and servers.d/) instead of the profile's.
    #[arg(long, global = true, env = "LASTMILE_CONFIG_DIR")]
    pub config_dir: Option<PathBuf>,
    /// Secret store backend: auto, secret-service, keyutils, keychain, windows, memory (tests only).
    #[arg(
        long,
        global = true,
        env = "LASTMILE_SECRETS_BACKEND",
        default_value = "auto"
    )]
    pub secrets_backend: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set up the profile: folders, signing secret, an admin token for Claude; print how to add
    /// lastmile to Claude Desktop and Claude Code.
    #[command(after_help = "Examples:\n  lastmile init\n  lastmile --profile work init --ttl 7d")]
    Init(init::InitArgs),
    /// Turn the MCP servers of a Claude config into servers.d files; credentials move to the
    /// keyring.
    #[command(after_help = import::EXAMPLES)]
    Import(import::ImportArgs),
    /// Serve MCP on stdin/stdout in front of the servers in servers.d (what a Claude client launches).
    #[command(
        after_help = "Examples:\n  lastmile serve\n  lastmile --profile work serve --token-file ~/.config/work.token"
    )]
    Serve(serve::ServeArgs),
    /// Add, list, remove and check the server definitions in servers.d.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  lastmile servers add github --tier admin --tier user --secret GITHUB_TOKEN -- npx -y @modelcontextprotocol/server-github\n  lastmile servers list\n  lastmile servers check"
    )]
    Servers(servers::ServersCommand),
    /// List the tools a session sees, by starting the gateway and acting as its client.
    #[command(after_help = "Examples:\n  lastmile tools\n  lastmile tools --as user --json")]
    Tools(tools::ToolsArgs),
    /// Call one tool through the gateway and print its result.
    #[command(
        after_help = "Examples:\n  lastmile call time__get_current_time '{\"timezone\": \"UTC\"}'\n  lastmile call memory__read_graph --as user --json"
    )]
    Call(tools::CallArgs),
    /// Check the setup: keyring, signing secret, saved token, server files, audit log, logs.
    #[command(after_help = "Examples:\n  lastmile doctor\n  lastmile --profile work doctor")]
    Doctor,
    /// Manage the profile's secrets in the OS keyring.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  lastmile secrets set GITHUB_TOKEN\n  printf %s \"$KEY\" | lastmile secrets set MY_API_KEY\n  lastmile secrets list"
    )]
    Secrets(secrets::SecretsCommand),
    /// Issue and inspect session tokens.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  lastmile token issue --sub alice --tier user --ttl 8h --save\n  lastmile token inspect token.jwt"
    )]
    Token(token::TokenCommand),
    /// Query and verify the audit log.
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  lastmile audit tail -n 20\n  lastmile audit query --server github --since 1h\n  lastmile audit verify"
    )]
    Audit(audit::AuditCommand),
    /// Run the gateway on this folder's servers.d and act as a client: list and call tools.
    #[command(after_help = "Examples:\n  lastmile demo\n  lastmile demo --dir ./examples")]
    Demo(demo::DemoArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  lastmile completions bash > ~/.local/share/bash-completion/completions/lastmile\n  lastmile completions zsh > \"${fpath[1]}/_lastmile\"\n  lastmile completions fish > ~/.config/fish/completions/lastmile.fish\n  lastmile completions powershell >> $PROFILE"
    )]
    Completions(completions::CompletionsArgs),
    /// Internal: kills registered process groups when its stdin closes (lastmile died).
    #[command(name = "__reaper", hide = true)]
    Reaper,
}

/// Examples for subcommands defined in files whose owners keep them as they are.
const AUDIT_EXAMPLES: [(&str, &str); 6] = [
    (
        "query",
        "Examples:\n  lastmile audit query --subject alice --since 1d\n  lastmile audit query --status error --json",
    ),
    (
        "tail",
        "Examples:\n  lastmile audit tail -n 50\n  lastmile audit tail --follow",
    ),
    (
        "export",
        "Examples:\n  lastmile audit export --jsonl > audit.jsonl",
    ),
    (
        "prune",
        "Examples:\n  lastmile audit prune --older-than 90d",
    ),
    ("verify", "Examples:\n  lastmile audit verify"),
    (
        "restart",
        "Examples:\n  lastmile audit restart    # after a real cut, once the old log is moved away",
    ),
];

/// The whole command line definition, examples included (what parsing and completions use).
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    for (name, examples) in AUDIT_EXAMPLES {
        cmd = cmd.mut_subcommand("audit", |audit| {
            audit.mut_subcommand(name, |sub| sub.after_help(examples))
        });
    }
    cmd
}

/// Parse the command line, run the command, and return its exit code.
pub fn main() -> ExitCode {
    // The isolation step a child starts through: its arguments are the child's own, so they
    // never pass through clap (nor does it pay for parsing).
    let mut args = std::env::args_os();
    match args.nth(1) {
        Some(a) if a == crate::downstream::isolate::SUBCOMMAND => {
            return ExitCode::from(sandbox::run(args.collect()));
        }
        // The watchdog lives as long as lastmile: it skips clap too, so it holds only the
        // pages its loop touches.
        Some(a) if a == "__reaper" => return ExitCode::from(reaper::run()),
        _ => {}
    }
    use clap::FromArgMatches;
    let parsed = command()
        .try_get_matches()
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help and version to stdout and errors to stderr, with its own codes.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                crate::exit_codes::USAGE
            } else {
                crate::exit_codes::OK
            });
        }
    };
    let g = &cli.global;
    let code = match cli.command {
        // serve and audit keep their own code paths for now (they own their reporting).
        Command::Serve(args) => serve::run(g, args),
        Command::Audit(cmd) => audit::run(g, cmd),
        Command::Reaper => reaper::run(),
        Command::Init(args) => error::finish(init::run(g, args)),
        Command::Import(args) => error::finish(import::run(g, args)),
        Command::Servers(cmd) => error::finish(servers::run(g, cmd)),
        Command::Tools(args) => error::finish(tools::run_tools(g, args)),
        Command::Call(args) => error::finish(tools::run_call(g, args)),
        Command::Doctor => error::finish(doctor::run(g)),
        Command::Demo(args) => error::finish(demo::run(g, args)),
        Command::Secrets(cmd) => error::finish(secrets::run(g, cmd)),
        Command::Token(cmd) => error::finish(token::run(g, cmd)),
        Command::Completions(args) => error::finish(completions::run(args)),
    };
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example() {
        fn walk(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                if sub.is_hide_set() || sub.get_name() == "help" {
                    continue;
                }
                let here = format!("{path} {}", sub.get_name());
                let after = sub
                    .get_after_help()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                assert!(after.contains("Examples:"), "`{here}` has no example");
                walk(sub, &here);
            }
        }
        walk(&command(), "lastmile");
    }
}
