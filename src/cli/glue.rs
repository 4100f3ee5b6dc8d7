//! Glue between the command line and the secret store: the few secrets other modules need
//! (signing secret, saved session token, audit key), loaded for the chosen profile and backend.
//!
//! `identity` and `audit` never open the store themselves; the CLI hands them what they need.

#![allow(dead_code)] // wired up as the subcommands land

use secrecy::SecretString;

use super::GlobalArgs;

/// Why a secret the CLI needs could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GlueError {
    /// The secret store is not wired in yet.
    #[error("the secret store is not available in this build")]
    NotWired,
}

/// The profile's session-token signing secret.
pub(crate) fn signing_secret(_global: &GlobalArgs) -> Result<SecretString, GlueError> {
    Err(GlueError::NotWired)
}

/// The session token saved for `serve` to find (`token issue --save`), if any.
pub(crate) fn saved_session_token(_global: &GlobalArgs) -> Result<Option<SecretString>, GlueError> {
    Err(GlueError::NotWired)
}

/// Save a session token for `serve` to find.
pub(crate) fn save_session_token(
    _global: &GlobalArgs,
    _token: &SecretString,
) -> Result<(), GlueError> {
    Err(GlueError::NotWired)
}

/// The profile's audit-chain key, created on first use.
pub(crate) fn audit_key(_global: &GlobalArgs) -> Result<SecretString, GlueError> {
    Err(GlueError::NotWired)
}
