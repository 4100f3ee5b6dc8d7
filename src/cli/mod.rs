//! The command line: one file per subcommand, each with one entry function. Flags become plain
//! values here; lower modules never see clap types.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod audit;
mod demo;
mod glue;
mod output;
mod reaper;
mod sandbox;
mod secrets;
mod serve;
mod servers;
mod token;

pub use output::Printer;

/// lastmile: a local MCP gateway whose credentials reach tools through their environment and
/// nowhere else.
#[derive(Debug, Parser)]
#[command(name = "lastmile", version, about, long_about = None)]
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
    /// Serve MCP on stdin/stdout in front of the servers in servers.d (what a Claude client launches).
    Serve(serve::ServeArgs),
    /// Inspect the server definitions in servers.d.
    #[command(subcommand)]
    Servers(servers::ServersCommand),
    /// Manage the profile's secrets in the OS keyring.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Issue and inspect session tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Query and verify the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run the gateway on this folder's servers.d and act as a client: list and call tools.
    Demo(demo::DemoArgs),
    /// Internal: kills registered process groups when its stdin closes (lastmile died).
    #[command(name = "__reaper", hide = true)]
    Reaper,
}

/// Parse the command line, run the command, and return its exit code.
pub fn main() -> ExitCode {
    // The isolation step a child starts through: its arguments are the child's own, so they
    // never pass through clap (nor does it pay for parsing).
    let mut args = std::env::args_os();
    if args
        .nth(1)
        .is_some_and(|a| a == crate::downstream::isolate::SUBCOMMAND)
    {
        return ExitCode::from(sandbox::run(args.collect()));
    }
    let cli = match Cli::try_parse() {
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
    let code = match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args),
        Command::Servers(cmd) => servers::run(&cli.global, cmd),
        Command::Demo(args) => demo::run(&cli.global, args),
        Command::Secrets(cmd) => secrets::run(&cli.global, cmd),
        Command::Token(cmd) => token::run(&cli.global, cmd),
        Command::Audit(cmd) => audit::run(&cli.global, cmd),
        Command::Reaper => reaper::run(),
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
}
