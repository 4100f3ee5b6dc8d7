//! `lastmile audit`: query, export, prune and verify the audit log.

use clap::Subcommand;

use super::GlobalArgs;

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Not built yet.
    Status,
}

pub(crate) fn run(_global: &GlobalArgs, _cmd: AuditCommand) -> u8 {
    crate::exit_codes::FAILURE
}
