//! Choosing and opening a backend: the platform keyrings through keyring-core 1.x store crates,
//! or the in-memory store. On Linux, `auto` takes the Secret Service when one answers on D-Bus and
//! the kernel keyutils session keyring otherwise.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use secrecy::SecretString;

use super::store::{IndexedStore, RawStore};
use super::{MemoryStore, SecretStore, SecretsError};

/// A kind of secret store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Linux Secret Service over D-Bus (GNOME Keyring, KWallet, KeePassXC).
    SecretService,
    /// Linux kernel keyutils (session keyring, linked to the user's persistent keyring).
    Keyutils,
    /// macOS login Keychain.
    Keychain,
    /// Windows Credential Manager.
    Windows,
    /// In-process memory, for tests.
    Memory,
}

impl BackendKind {
    /// The name `--secrets-backend` takes.
    pub fn flag(self) -> &'static str {
        match self {
            BackendKind::SecretService => "secret-service",
            BackendKind::Keyutils => "keyutils",
            BackendKind::Keychain => "keychain",
            BackendKind::Windows => "windows",
            BackendKind::Memory => "memory",
        }
    }

    fn from_flag(s: &str) -> Option<Self> {
        [
            BackendKind::SecretService,
            BackendKind::Keyutils,
            BackendKind::Keychain,
            BackendKind::Windows,
            BackendKind::Memory,
        ]
        .into_iter()
        .find(|k| k.flag() == s)
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::SecretService => "Secret Service",
            BackendKind::Keyutils => "kernel keyutils",
            BackendKind::Keychain => "macOS Keychain",
            BackendKind::Windows => "Windows Credential Manager",
            BackendKind::Memory => "in-memory",
        })
    }
}

/// What `--secrets-backend` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendRequest {
    /// Pick the platform's best available keyring.
    Auto,
    /// Use exactly this one, or fail.
    Force(BackendKind),
}

impl FromStr for BackendRequest {
    type Err = SecretsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(BackendRequest::Auto);
        }
        BackendKind::from_flag(s)
            .map(BackendRequest::Force)
            .ok_or_else(|| SecretsError::UnknownBackend(s.to_string()))
    }
}

/// The backend that is active, and why it was chosen (shown by `lastmile secrets status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendChoice {
    /// The backend.
    pub kind: BackendKind,
    /// Why: forced by the flag, or what automatic selection found.
    pub reason: String,
}

/// An open store and how it was chosen.
pub struct OpenedStore {
    /// The profile's store.
    pub store: Arc<dyn SecretStore>,
    /// Which backend and why.
    pub choice: BackendChoice,
}

impl fmt::Debug for OpenedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenedStore")
            .field("service", &self.store.service())
            .field("choice", &self.choice)
            .finish()
    }
}

/// Backends this build supports on this operating system (for error hints).
const AVAILABLE: &str = if cfg!(target_os = "linux") {
    "secret-service, keyutils, memory"
} else if cfg!(target_os = "macos") {
    "keychain, memory"
} else if cfg!(target_os = "windows") {
    "windows, memory"
} else {
    "memory"
};

/// Open the store for `service` (a profile's [`keyring_service`](crate::config::Profile::keyring_service)).
/// This may talk to D-Bus: call it from a blocking context.
pub fn open_store(request: BackendRequest, service: &str) -> Result<OpenedStore, SecretsError> {
    match request {
        BackendRequest::Force(kind) => {
            let store = open_kind(kind, service)?;
            Ok(OpenedStore {
                store,
                choice: BackendChoice {
                    kind,
                    reason: "chosen with --secrets-backend (or LASTMILE_SECRETS_BACKEND)".into(),
                },
            })
        }
        BackendRequest::Auto => open_auto(service),
    }
}

fn open_kind(kind: BackendKind, service: &str) -> Result<Arc<dyn SecretStore>, SecretsError> {
    if kind == BackendKind::Memory {
        return Ok(Arc::new(MemoryStore::new(service)));
    }
    let credential_store = platform::credential_store(kind)?;
    Ok(Arc::new(IndexedStore::new(
        KeyringRaw {
            store: credential_store,
            service: service.to_string(),
            kind,
        },
        service.to_string(),
    )))
}

#[cfg(target_os = "linux")]
fn open_auto(service: &str) -> Result<OpenedStore, SecretsError> {
    match open_kind(BackendKind::SecretService, service) {
        Ok(store) => Ok(OpenedStore {
            store,
            choice: BackendChoice {
                kind: BackendKind::SecretService,
                reason: "automatic: a Secret Service answered on the D-Bus session bus".into(),
            },
        }),
        Err(ss_error) => {
            let why = match &ss_error {
                SecretsError::Unavailable { detail, .. }
                | SecretsError::Platform { detail, .. }
                | SecretsError::Locked { detail, .. } => detail.clone(),
                other => other.to_string(),
            };
            let store = open_kind(BackendKind::Keyutils, service)?;
            Ok(OpenedStore {
                store,
                choice: BackendChoice {
                    kind: BackendKind::Keyutils,
                    reason: format!(
                        "automatic: no Secret Service answered on D-Bus ({why}); using the kernel keyutils session keyring (entries last until reboot)"
                    ),
                },
            })
        }
    }
}

#[cfg(any(target_os = "macos", target_os = "windows"))]
fn open_auto(service: &str) -> Result<OpenedStore, SecretsError> {
    let kind = if cfg!(target_os = "macos") {
        BackendKind::Keychain
    } else {
        BackendKind::Windows
    };
    let store = open_kind(kind, service)?;
    Ok(OpenedStore {
        store,
        choice: BackendChoice {
            kind,
            reason: "automatic: the operating system's own credential store".into(),
        },
    })
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn open_auto(_service: &str) -> Result<OpenedStore, SecretsError> {
    Err(SecretsError::UnsupportedBackend {
        requested: "auto",
        available: AVAILABLE,
    })
}

fn unsupported(kind: BackendKind) -> SecretsError {
    SecretsError::UnsupportedBackend {
        requested: kind.flag(),
        available: AVAILABLE,
    }
}

/// One service of a keyring-core credential store.
struct KeyringRaw {
    store: Arc<keyring_core::CredentialStore>,
    service: String,
    kind: BackendKind,
}

impl KeyringRaw {
    fn entry(&self, name: &str) -> Result<keyring_core::Entry, SecretsError> {
        keyring_core::Entry::new_in_store(&self.store, &self.service, name)
            .map_err(|e| map_error(self.kind, e))
    }
}

impl RawStore for KeyringRaw {
    fn backend(&self) -> BackendKind {
        self.kind
    }

    fn get(&self, entry: &str) -> Result<Option<SecretString>, SecretsError> {
        match self.entry(entry)?.get_secret() {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Ok(Some(SecretString::from(text))),
                Err(e) => {
                    zeroize::Zeroize::zeroize(&mut e.into_bytes());
                    Err(SecretsError::NotText {
                        name: entry.to_string(),
                    })
                }
            },
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_error(self.kind, e)),
        }
    }

    fn set(&self, entry: &str, value: &str) -> Result<(), SecretsError> {
        check_size(self.kind, entry, value.len())?;
        self.entry(entry)?
            .set_secret(value.as_bytes())
            .map_err(|e| map_error(self.kind, e))
    }

    fn delete(&self, entry: &str) -> Result<bool, SecretsError> {
        match self.entry(entry)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring_core::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_error(self.kind, e)),
        }
    }
}

/// The most bytes one Windows Credential Manager entry holds (`CRED_MAX_CREDENTIAL_BLOB_SIZE`).
pub(crate) const WINDOWS_CREDENTIAL_MAX: usize = 2560;

/// Refuse, by name, a value the backend cannot hold, before the platform fails less clearly.
fn check_size(kind: BackendKind, entry: &str, len: usize) -> Result<(), SecretsError> {
    match kind {
        BackendKind::Windows if len > WINDOWS_CREDENTIAL_MAX => Err(SecretsError::TooLarge {
            name: entry.to_string(),
            backend: kind,
            len,
            limit: WINDOWS_CREDENTIAL_MAX,
        }),
        _ => Ok(()),
    }
}

/// Turn a keyring-core error into ours without ever formatting the variants that carry secret
/// bytes (`BadEncoding`, `BadDataFormat`) or entries (`Ambiguous`).
fn map_error(kind: BackendKind, e: keyring_core::Error) -> SecretsError {
    use keyring_core::Error as E;
    match e {
        E::NoStorageAccess(inner) => SecretsError::Locked {
            backend: kind,
            detail: inner.to_string(),
        },
        E::PlatformFailure(inner) => SecretsError::Platform {
            backend: kind,
            detail: inner.to_string(),
        },
        E::BadEncoding(mut bytes) => {
            zeroize::Zeroize::zeroize(&mut bytes);
            SecretsError::Platform {
                backend: kind,
                detail: "an entry is not UTF-8 text".into(),
            }
        }
        E::BadDataFormat(mut bytes, _) => {
            zeroize::Zeroize::zeroize(&mut bytes);
            SecretsError::Platform {
                backend: kind,
                detail: "an entry's data is malformed".into(),
            }
        }
        E::Ambiguous(entries) => SecretsError::Platform {
            backend: kind,
            detail: format!("{} keyring items match one entry", entries.len()),
        },
        E::NoEntry => SecretsError::Platform {
            backend: kind,
            detail: "no such entry".into(),
        },
        E::BadStoreFormat(reason) => SecretsError::Platform {
            backend: kind,
            detail: format!("the store is malformed: {reason}"),
        },
        E::TooLong(what, limit) => SecretsError::Platform {
            backend: kind,
            detail: format!("`{what}` is longer than the platform's limit of {limit}"),
        },
        E::Invalid(what, reason) => SecretsError::Platform {
            backend: kind,
            detail: format!("`{what}` is invalid: {reason}"),
        },
        E::NotSupportedByStore(what) => SecretsError::Platform {
            backend: kind,
            detail: format!("not supported: {what}"),
        },
        E::NoDefaultStore => SecretsError::Platform {
            backend: kind,
            detail: "no store".into(),
        },
        _ => SecretsError::Platform {
            backend: kind,
            detail: "unknown keyring error".into(),
        },
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use std::sync::Arc;

    use super::{BackendKind, SecretsError, map_error, unsupported};

    pub(super) fn credential_store(
        kind: BackendKind,
    ) -> Result<Arc<keyring_core::CredentialStore>, SecretsError> {
        match kind {
            BackendKind::SecretService => {
                let store =
                    zbus_secret_service_keyring_store::Store::new().map_err(
                        |e| match map_error(kind, e) {
                            SecretsError::Platform { detail, .. } => SecretsError::Unavailable {
                                backend: kind,
                                detail,
                            },
                            other => other,
                        },
                    )?;
                Ok(store)
            }
            BackendKind::Keyutils => {
                // A process started without a session keyring (a service, a container, a CI
                // job) gets AccessDenied or a false NoEntry from keyutils; join one first.
                // This is idempotent when a session keyring is already attached.
                linux_keyutils::KeyRing::from_special_id(
                    linux_keyutils::KeyRingIdentifier::Session,
                    true,
                )
                .map_err(|e| SecretsError::Unavailable {
                    backend: kind,
                    detail: format!("cannot attach a session keyring: {e}"),
                })?;
                let store =
                    linux_keyutils_keyring_store::Store::new().map_err(|e| map_error(kind, e))?;
                Ok(store)
            }
            other => Err(unsupported(other)),
        }
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use std::sync::Arc;

    use super::{BackendKind, SecretsError, map_error, unsupported};

    pub(super) fn credential_store(
        kind: BackendKind,
    ) -> Result<Arc<keyring_core::CredentialStore>, SecretsError> {
        match kind {
            BackendKind::Keychain => {
                let store = apple_native_keyring_store::keychain::Store::new()
                    .map_err(|e| map_error(kind, e))?;
                Ok(store)
            }
            other => Err(unsupported(other)),
        }
    }
}

#[cfg(target_os = "windows")]
mod platform {
    use std::sync::Arc;

    use super::{BackendKind, SecretsError, map_error, unsupported};

    pub(super) fn credential_store(
        kind: BackendKind,
    ) -> Result<Arc<keyring_core::CredentialStore>, SecretsError> {
        match kind {
            BackendKind::Windows => {
                let store =
                    windows_native_keyring_store::Store::new().map_err(|e| map_error(kind, e))?;
                Ok(store)
            }
            other => Err(unsupported(other)),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod platform {
    use std::sync::Arc;

    use super::{BackendKind, SecretsError, unsupported};

    pub(super) fn credential_store(
        kind: BackendKind,
    ) -> Result<Arc<keyring_core::CredentialStore>, SecretsError> {
        Err(unsupported(kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_manager_limit_is_a_named_error() {
        let ok = check_size(BackendKind::Windows, "BIG_KEY", WINDOWS_CREDENTIAL_MAX);
        assert!(ok.is_ok());
        let err = check_size(BackendKind::Windows, "BIG_KEY", WINDOWS_CREDENTIAL_MAX + 1);
        assert!(
            matches!(err, Err(SecretsError::TooLarge { ref name, len: 2561, limit: 2560, .. }) if name == "BIG_KEY"),
            "{err:?}"
        );
        // Other keyrings take more; their own limits come back from the platform.
        assert!(check_size(BackendKind::Keyutils, "BIG_KEY", 4096).is_ok());
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            "auto".parse::<BackendRequest>().unwrap(),
            BackendRequest::Auto
        );
        for kind in [
            BackendKind::SecretService,
            BackendKind::Keyutils,
            BackendKind::Keychain,
            BackendKind::Windows,
            BackendKind::Memory,
        ] {
            assert_eq!(
                kind.flag().parse::<BackendRequest>().unwrap(),
                BackendRequest::Force(kind)
            );
        }
        let e = "vault".parse::<BackendRequest>().unwrap_err();
        assert!(matches!(e, SecretsError::UnknownBackend(_)));
    }

    #[test]
    fn memory_is_forced_only() {
        let opened = open_store(BackendRequest::Force(BackendKind::Memory), "lastmile:t").unwrap();
        assert_eq!(opened.choice.kind, BackendKind::Memory);
        assert!(opened.choice.reason.contains("--secrets-backend"));
        assert_eq!(opened.store.service(), "lastmile:t");
    }

    #[test]
    fn foreign_backend_is_unsupported() {
        let foreign = if cfg!(target_os = "macos") {
            BackendKind::Windows
        } else {
            BackendKind::Keychain
        };
        let e = open_store(BackendRequest::Force(foreign), "lastmile:t").unwrap_err();
        assert!(
            matches!(e, SecretsError::UnsupportedBackend { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn byte_carrying_errors_are_not_formatted() {
        let e = map_error(
            BackendKind::Keyutils,
            keyring_core::Error::BadEncoding(b"canary-bytes".to_vec()),
        );
        assert!(!format!("{e} {e:?}").contains("canary"));
        let e = map_error(
            BackendKind::Keyutils,
            keyring_core::Error::BadDataFormat(b"canary-bytes".to_vec(), "x".into()),
        );
        assert!(!format!("{e} {e:?}").contains("canary"));
    }
}
