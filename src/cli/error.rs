//! One error type for the command line. Every subcommand returns `Result<(), CliError>`; each
//! variant maps to exactly one documented exit code (the codes themselves are listed in
//! [`crate::exit_codes`]) in [`CliError::exit_code`], the only place that mapping is written.
//!
//! Messages are lowercase, say what failed, and end with a `hint:` line where a fix exists. A
//! wrapped error that already carries its own hint is shown as it is, so no hint is doubled.

use std::path::PathBuf;

use crate::audit::AuditError;
use crate::config::ProfileError;
use crate::exit_codes;
use crate::identity::{IssueError, WeakSecret};
use crate::secrets::SecretsError;

use super::Printer;
use super::output::sanitize_for_terminal;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The profile could not be located or its `lastmile.toml` is broken.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// The secret store failed (locked, unavailable) or refused the input (a bad name or value).
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// A secret that was named is not in the store.
    #[error(
        "`{name}` is not stored (service `{service}`)\nhint: `lastmile secrets list` shows the names that are"
    )]
    SecretNotStored {
        /// The secret's name.
        name: String,
        /// The profile's keyring service.
        service: String,
    },
    /// The audit database cannot be opened, read or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The profile has no signing secret. Same code wherever it is noticed.
    #[error(
        "the profile has no session-token signing secret (keyring service `{service}`)\nhint: run `lastmile init`, or `lastmile secrets generate-signing-key`"
    )]
    NoSigningSecret {
        /// The profile's keyring service.
        service: String,
    },
    /// The signing secret is too short or obviously weak.
    #[error(transparent)]
    WeakSigningSecret(#[from] WeakSecret),
    /// A token could not be minted.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A token was checked and refused.
    #[error("refused: {reason}")]
    TokenRefused {
        /// Why.
        reason: String,
    },
    /// Something on the command line is not usable (beyond what clap checks).
    #[error("{what}\nhint: {hint}")]
    Usage {
        /// What is wrong.
        what: String,
        /// How to say it instead.
        hint: String,
    },
    /// Configuration files have problems (each was printed before).
    #[error(
        "{count} problem(s) in the configuration\nhint: fix each one printed above, then run the command again"
    )]
    ConfigProblems {
        /// How many.
        count: usize,
    },
    /// A server file or config file that lastmile would write is invalid.
    #[error("{path}: {detail}")]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The command would overwrite or duplicate something.
    #[error("{what}\nhint: {hint}")]
    Conflict {
        /// What exists already, or changed.
        what: String,
        /// The way out.
        hint: String,
    },
    /// A file or folder could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done ("write", "read", "create").
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The gateway child (`lastmile serve`) could not be started or spoken to.
    #[error("the gateway failed: {detail}\nhint: {hint}")]
    Gateway {
        /// What went wrong.
        detail: String,
        /// Where to look.
        hint: &'static str,
    },
    /// A tool could not be called, or answered with an error result.
    #[error("{detail}")]
    ToolFailed {
        /// What happened.
        detail: String,
    },
    /// `doctor` found problems (each was printed before).
    #[error(
        "{count} problem(s) found\nhint: fix each one printed above, then run `lastmile doctor` again"
    )]
    CheckFailed {
        /// How many.
        count: usize,
    },
    /// The audit chain is broken: `audit verify` found it, or `serve` refuses to append to it.
    #[error("the audit log was tampered with: {detail}")]
    AuditTampered {
        /// The finding.
        detail: String,
    },
    /// `serve`: the config folder or a file in it can be changed by someone else (each path was
    /// reported before, with its fix).
    #[error(
        "refusing to serve: {count} path(s) of the configuration can be changed by someone other than you\nhint: run the chmod/chown shown for each path above"
    )]
    UnsafePermissions {
        /// How many paths.
        count: usize,
    },
    /// `serve`: the auth mode needs the signing secret, but no secret store could be opened.
    #[error(
        "refusing to boot: auth.mode = {mode} needs the signing secret, but no secret store could be opened\nhint: run `lastmile secrets status`; on a headless Linux machine `--secrets-backend keyutils` works"
    )]
    NoSecretStore {
        /// The profile's auth mode.
        mode: String,
    },
    /// `serve`: the authenticator could not be set up (a weak or missing signing secret, or
    /// disabled auth without its switch). The wrapped error carries its hint.
    #[error("refusing to boot: {0}")]
    AuthSetup(#[from] crate::identity::AuthSetupError),
    /// `serve`: the session was refused (no usable token in `required` mode).
    #[error("session refused: {reason}\n{hint}")]
    SessionRefused {
        /// Every source tried and why it failed.
        reason: String,
        /// What to do (a `hint:` line).
        hint: &'static str,
    },
    /// `serve`: the audit log cannot be opened and the profile does not allow serving without it.
    #[error(
        "cannot open the audit log: {detail}\nhint: run `lastmile doctor`; the log folder says more"
    )]
    AuditUnavailable {
        /// What failed.
        detail: String,
    },
    /// Anything else (an internal failure with no better name).
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The exit code of this failure: the one place variants meet codes.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Profile(_) | CliError::ConfigProblems { .. } => exit_codes::CONFIG_INVALID,
            CliError::ConfigInvalid { .. } => exit_codes::CONFIG_INVALID,
            CliError::Secrets(e) if e.is_bad_input() => exit_codes::USAGE,
            CliError::Secrets(_) | CliError::SecretNotStored { .. } => {
                exit_codes::SECRETS_UNAVAILABLE
            }
            CliError::Audit(_) => exit_codes::AUDIT_UNAVAILABLE,
            CliError::NoSigningSecret { .. } | CliError::WeakSigningSecret(_) => {
                exit_codes::WEAK_SIGNING_SECRET
            }
            CliError::Issue(_) => exit_codes::USAGE,
            CliError::TokenRefused { .. } => exit_codes::AUTH_REFUSED,
            CliError::Usage { .. } => exit_codes::USAGE,
            CliError::Conflict { .. } => exit_codes::CONFLICT,
            CliError::Io { .. } | CliError::Gateway { .. } | CliError::Other(_) => {
                exit_codes::FAILURE
            }
            CliError::ToolFailed { .. } => exit_codes::TOOL_FAILED,
            CliError::CheckFailed { .. } => exit_codes::CHECK_FAILED,
            CliError::AuditTampered { .. } => exit_codes::AUDIT_TAMPERED,
            CliError::UnsafePermissions { .. } => exit_codes::UNSAFE_PERMISSIONS,
            CliError::NoSecretStore { .. } => exit_codes::SECRETS_UNAVAILABLE,
            CliError::AuthSetup(crate::identity::AuthSetupError::DisabledNotAllowed) => {
                exit_codes::CONFIG_INVALID
            }
            CliError::AuthSetup(_) => exit_codes::WEAK_SIGNING_SECRET,
            CliError::SessionRefused { .. } => exit_codes::AUTH_REFUSED,
            CliError::AuditUnavailable { .. } => exit_codes::AUDIT_UNAVAILABLE,
        }
    }

    /// A usage error with its hint.
    pub(crate) fn usage(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Usage {
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// A conflict with its way out.
    pub(crate) fn conflict(what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError::Conflict {
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// An I/O failure on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CliError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Print the error (`error: …`, control characters escaped) and return its exit code.
pub(crate) fn report(p: &Printer, e: &CliError) -> u8 {
    p.err(format!("error: {}", sanitize_for_terminal(&e.to_string())));
    e.exit_code()
}

/// Turn a command's outcome into its exit code, reporting a failure.
pub(crate) fn finish(result: Result<(), CliError>) -> u8 {
    match result {
        Ok(()) => exit_codes::OK,
        Err(e) => report(&Printer, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_signing_secret_has_one_code() {
        let e = CliError::NoSigningSecret {
            service: "lastmile:x".into(),
        };
        assert_eq!(e.exit_code(), exit_codes::WEAK_SIGNING_SECRET);
    }

    #[test]
    fn no_message_doubles_its_hint() {
        let errors = [
            CliError::NoSigningSecret {
                service: "lastmile:x".into(),
            },
            CliError::Secrets(SecretsError::UnknownBackend("vault".into())),
            CliError::usage("bad", "do this"),
            CliError::conflict("exists", "pass --force"),
            CliError::Gateway {
                detail: "x".into(),
                hint: "look at the log",
            },
            CliError::ConfigProblems { count: 2 },
            CliError::CheckFailed { count: 1 },
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.contains("hint: hint:"), "{text}");
            assert_eq!(text.matches("hint:").count(), 1, "{text}");
            assert!(!text.starts_with(char::is_uppercase), "{text}");
        }
    }

    #[test]
    fn every_code_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, _) in exit_codes::ALL {
            assert!(seen.insert(code), "{code} twice");
        }
        assert_eq!(seen.len(), exit_codes::ALL.len());
    }
}
