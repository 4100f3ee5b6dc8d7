//! `lastmile demo`: start `serve` on a folder's servers.d and act as a client.

use clap::Args;

use super::GlobalArgs;

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {}

pub(crate) fn run(_global: &GlobalArgs, _args: DemoArgs) -> u8 {
    crate::exit_codes::FAILURE
}
