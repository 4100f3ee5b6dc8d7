//! Glue between the command line and the secret store: the few secrets other modules need
//! (signing secret, saved session token, audit key), loaded for the chosen profile and backend.
//!
//! `identity` and `audit` never open the store themselves; the CLI hands them what they need.
//! Every function here blocks (a keyring call may be a D-Bus round trip): call them before the
//! runtime starts, or inside `spawn_blocking`.

use secrecy::SecretString;

use super::GlobalArgs;
use super::error::CliError;
use crate::config::Profile;
use crate::secrets::{BackendRequest, Internal, OpenedStore, SecretKey, open_store, random_secret};

/// Bytes of randomness in a generated audit-chain key.
const AUDIT_KEY_BYTES: usize = 32;

/// Locate the profile and open its store with the backend the flags ask for.
pub(crate) fn open_profile_store(global: &GlobalArgs) -> Result<(Profile, OpenedStore), CliError> {
    let profile = Profile::locate(&global.profile, global.config_dir.clone())?;
    let request: BackendRequest = global.secrets_backend.parse()?;
    let opened = open_store(request, &profile.keyring_service())?;
    Ok((profile, opened))
}

/// The profile's session-token signing secret.
pub(crate) fn signing_secret(global: &GlobalArgs) -> Result<SecretString, CliError> {
    let (_, opened) = open_profile_store(global)?;
    match opened.store.get(&Internal::SigningSecret.into())? {
        Some(secret) => Ok(secret),
        None => Err(CliError::NoSigningSecret {
            service: opened.store.service().to_string(),
        }),
    }
}

/// Save a session token for `serve` to find.
pub(crate) fn save_session_token(
    global: &GlobalArgs,
    token: &SecretString,
) -> Result<(), CliError> {
    let (_, opened) = open_profile_store(global)?;
    Ok(opened.store.set(&Internal::SessionToken.into(), token)?)
}

/// The profile's audit-chain key, created on first use.
pub(crate) fn audit_key(global: &GlobalArgs) -> Result<SecretString, CliError> {
    let (_, opened) = open_profile_store(global)?;
    let key = SecretKey::Internal(Internal::AuditKey);
    if let Some(existing) = opened.store.get(&key)? {
        return Ok(existing);
    }
    let fresh = random_secret(AUDIT_KEY_BYTES)?;
    opened.store.set(&key, &fresh)?;
    Ok(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_args() -> GlobalArgs {
        GlobalArgs {
            profile: "glue-test".into(),
            config_dir: Some(std::env::temp_dir()),
            secrets_backend: "memory".into(),
        }
    }

    #[test]
    fn missing_signing_secret_is_named() {
        // The memory backend starts empty in every call.
        let e = signing_secret(&memory_args()).unwrap_err();
        assert!(matches!(e, CliError::NoSigningSecret { .. }), "{e:?}");
        assert_eq!(e.exit_code(), crate::exit_codes::WEAK_SIGNING_SECRET);
        assert!(e.to_string().contains("lastmile init"));
    }

    #[test]
    fn audit_key_is_created() {
        use secrecy::ExposeSecret;
        let key = audit_key(&memory_args()).unwrap();
        assert_eq!(key.expose_secret().len(), 43);
    }

    #[test]
    fn unknown_backend_is_usage() {
        let mut args = memory_args();
        args.secrets_backend = "vault".into();
        let e = signing_secret(&args).unwrap_err();
        assert_eq!(e.exit_code(), crate::exit_codes::USAGE);
    }
}
