//! Every exit code lastmile returns, named and documented in one place. Tests assert codes by name.

/// The command did what it was asked.
pub const OK: u8 = 0;
/// An error with no more specific code (an I/O failure, an internal error).
pub const FAILURE: u8 = 1;
/// The command line could not be parsed (clap's own code).
pub const USAGE: u8 = 2;
/// A configuration file is broken: `servers check` found a problem, or `lastmile.toml` is invalid.
pub const CONFIG_INVALID: u8 = 3;
/// `serve` refused the session: no usable token in `required` mode.
pub const AUTH_REFUSED: u8 = 4;
/// The profile's signing secret is missing, too short or obviously weak; lastmile refuses to boot.
pub const WEAK_SIGNING_SECRET: u8 = 5;
/// The secret store (OS keyring) is unavailable, locked, or lacks a secret that is needed.
pub const SECRETS_UNAVAILABLE: u8 = 6;
/// The audit database cannot be opened or written, and the profile does not allow serving without it.
pub const AUDIT_UNAVAILABLE: u8 = 7;
/// The audit chain is broken: `audit verify` found a broken link, or `serve` refused to append to a
/// log that no longer holds the rows its MAC'd checkpoint or high-water mark vouch for (a cut).
pub const AUDIT_TAMPERED: u8 = 8;
