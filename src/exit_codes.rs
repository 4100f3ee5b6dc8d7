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
/// `audit verify` found a broken link in the audit chain.
pub const AUDIT_TAMPERED: u8 = 8;
/// The command would overwrite or duplicate something: a server name that exists, a config that
/// is already (or partly) migrated, a file that changed since it was read, a git-tracked file.
pub const CONFLICT: u8 = 9;
/// `lastmile doctor` found at least one problem (each is printed with its fix).
pub const CHECK_FAILED: u8 = 10;
/// `lastmile call`: the tool ran and answered with an error result, or could not be called.
pub const TOOL_FAILED: u8 = 11;

/// `lastmile __exec` (the isolation step a child starts through on Linux) could not set up its
/// isolation; the child was not started. Chosen, as `env` does, above the codes programs use.
pub const ISOLATION_FAILED: u8 = 125;
/// `lastmile __exec` isolated itself but could not execute the child's program.
pub const EXEC_FAILED: u8 = 126;

/// Every code with its name, in order; the README's table and the tests are checked against it.
pub const ALL: [(u8, &str); 14] = [
    (OK, "OK"),
    (FAILURE, "FAILURE"),
    (USAGE, "USAGE"),
    (CONFIG_INVALID, "CONFIG_INVALID"),
    (AUTH_REFUSED, "AUTH_REFUSED"),
    (WEAK_SIGNING_SECRET, "WEAK_SIGNING_SECRET"),
    (SECRETS_UNAVAILABLE, "SECRETS_UNAVAILABLE"),
    (AUDIT_UNAVAILABLE, "AUDIT_UNAVAILABLE"),
    (AUDIT_TAMPERED, "AUDIT_TAMPERED"),
    (CONFLICT, "CONFLICT"),
    (CHECK_FAILED, "CHECK_FAILED"),
    (TOOL_FAILED, "TOOL_FAILED"),
    (ISOLATION_FAILED, "ISOLATION_FAILED"),
    (EXEC_FAILED, "EXEC_FAILED"),
];
