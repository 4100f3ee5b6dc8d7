//! `lastmile token`: issue and inspect session tokens.

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Not built yet.
    Status,
}

pub(crate) fn run(_global: &GlobalArgs, _cmd: TokenCommand) -> u8 {
    crate::exit_codes::FAILURE
}
