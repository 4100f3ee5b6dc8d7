//! `lastmile serve`: one MCP server on stdin/stdout in front of the servers in servers.d.

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {}

pub(crate) fn run(_global: &GlobalArgs, _args: ServeArgs) -> u8 {
    crate::exit_codes::FAILURE
}
