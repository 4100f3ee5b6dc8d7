//! `lastmile secrets`: manage the profile's secrets in the OS keyring.

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Not built yet.
    Status,
}

pub(crate) fn run(_global: &GlobalArgs, _cmd: SecretsCommand) -> u8 {
    crate::exit_codes::FAILURE
}
