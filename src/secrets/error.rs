//! What can go wrong with secrets. No variant ever holds a secret value: only names, the
//! backend, and text from the platform's own error (which describes the keyring, not its
//! contents).

use super::{BackendKind, NameProblem};

/// Why a secret could not be read, stored, removed or delivered.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The keyring exists but is locked, or refused access.
    #[error(
        "the {backend} keyring is locked or refused access: {detail}\nhint: unlock it (log in to the desktop session, or unlock it in the keyring app), or choose another backend with --secrets-backend"
    )]
    Locked {
        /// The backend in use.
        backend: BackendKind,
        /// The platform's description.
        detail: String,
    },
    /// No keyring of this kind can be reached.
    #[error(
        "no {backend} keyring is available: {detail}\nhint: run `lastmile secrets status`; on a Linux machine without a desktop session, `--secrets-backend keyutils` works"
    )]
    Unavailable {
        /// The backend that was tried.
        backend: BackendKind,
        /// Why it cannot be reached.
        detail: String,
    },
    /// The requested backend does not exist on this operating system.
    #[error(
        "the `{requested}` secrets backend is not available on this operating system\nhint: use `auto`, or one of: {available}"
    )]
    UnsupportedBackend {
        /// The backend asked for.
        requested: &'static str,
        /// The backends this build supports here.
        available: &'static str,
    },
    /// `--secrets-backend` names no backend.
    #[error(
        "`{0}` is not a secrets backend\nhint: use auto, secret-service, keyutils, keychain, windows or memory"
    )]
    UnknownBackend(String),
    /// Secrets that are needed are not in the store.
    #[error(
        "{count} missing from the keyring (service `{service}`): {list}\nhint: add {it} with `lastmile secrets set {first}`",
        count = if names.len() == 1 { "a secret is" } else { "secrets are" },
        list = names.join(", "),
        it = if names.len() == 1 { "it" } else { "each" },
        first = names.first().map(String::as_str).unwrap_or("NAME"),
    )]
    Missing {
        /// Every missing secret's name.
        names: Vec<String>,
        /// The profile's keyring service.
        service: String,
    },
    /// A secret name breaks the naming rule. The rejected text is not repeated (it may be a
    /// value pasted in the wrong place).
    #[error(
        "the secret name is not valid: {problem}\nhint: secret names match ^[A-Z][A-Z0-9_]{{0,63}}$ and do not start with LASTMILE_ (e.g. MY_API_KEY); the value is never given on the command line, `lastmile secrets set NAME` asks for it"
    )]
    InvalidName {
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// An empty value was offered.
    #[error(
        "refusing to store an empty value for `{name}`\nhint: type or pipe the value; to remove a secret use `lastmile secrets rm {name}`"
    )]
    EmptyValue {
        /// The secret's name.
        name: String,
    },
    /// A value shorter than [`MIN_VALUE_LEN`](super::MIN_VALUE_LEN) was offered, or found.
    #[error(
        "the value of `{name}` is shorter than {min} bytes, too short to be told apart from ordinary text\nhint: short values cannot be redacted safely; use a longer secret"
    )]
    TooShort {
        /// The secret's name.
        name: String,
        /// The minimum length in bytes.
        min: usize,
    },
    /// The value is larger than the keyring can hold: the Windows Credential Manager keeps at most
    /// 2,560 bytes (`CRED_MAX_CREDENTIAL_BLOB_SIZE`) per entry.
    #[error(
        "the value of `{name}` is {len} bytes, more than the {backend} holds ({limit} bytes)\nhint: store a shorter credential (a token rather than a whole key file), or keep the file on disk and give the server its path in `env`"
    )]
    TooLarge {
        /// The entry's name.
        name: String,
        /// The backend that refuses it.
        backend: BackendKind,
        /// The value's size in bytes.
        len: usize,
        /// The backend's limit in bytes.
        limit: usize,
    },
    /// A stored value is not UTF-8 text (its bytes are dropped, never shown).
    #[error(
        "the keyring entry `{name}` is not UTF-8 text\nhint: set it again with `lastmile secrets set {name}`"
    )]
    NotText {
        /// The entry's name.
        name: String,
    },
    /// The keyring failed in another way.
    #[error(
        "the {backend} keyring failed: {detail}\nhint: run `lastmile secrets status`, try again, or choose another backend with --secrets-backend"
    )]
    Platform {
        /// The backend in use.
        backend: BackendKind,
        /// The platform's description.
        detail: String,
    },
    /// The redactor could not be built (so nothing may be delivered).
    #[error(
        "cannot build the secret redactor: {detail}\nhint: no server is started without redaction; report this with `lastmile secrets list` output (names only)"
    )]
    Redactor {
        /// The automaton builder's description.
        detail: String,
    },
    /// The operating system's random number generator failed.
    #[error(
        "the operating system's random number generator failed: {detail}\nhint: try again; nothing was stored"
    )]
    NoRandomness {
        /// The generator's error.
        detail: String,
    },
}

impl SecretsError {
    /// Whether the user's input was at fault (a bad name or value), rather than the keyring.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            SecretsError::InvalidName { .. }
                | SecretsError::EmptyValue { .. }
                | SecretsError::TooShort { .. }
                | SecretsError::TooLarge { .. }
                | SecretsError::UnknownBackend(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_with_a_hint() {
        let errors = [
            SecretsError::Locked {
                backend: BackendKind::SecretService,
                detail: "prompt dismissed".into(),
            },
            SecretsError::Unavailable {
                backend: BackendKind::Keyutils,
                detail: "no session keyring".into(),
            },
            SecretsError::UnsupportedBackend {
                requested: "keychain",
                available: "secret-service, keyutils, memory",
            },
            SecretsError::UnknownBackend("vault".into()),
            SecretsError::Missing {
                names: vec!["A_KEY".into(), "B_KEY".into()],
                service: "lastmile:default".into(),
            },
            SecretsError::InvalidName {
                problem: NameProblem::Empty,
            },
            SecretsError::EmptyValue {
                name: "A_KEY".into(),
            },
            SecretsError::TooShort {
                name: "A_KEY".into(),
                min: 8,
            },
            SecretsError::NotText {
                name: "A_KEY".into(),
            },
            SecretsError::TooLarge {
                name: "A_KEY".into(),
                backend: BackendKind::Windows,
                len: 4096,
                limit: 2560,
            },
            SecretsError::Platform {
                backend: BackendKind::Keychain,
                detail: "boom".into(),
            },
            SecretsError::Redactor {
                detail: "too big".into(),
            },
            SecretsError::NoRandomness {
                detail: "unavailable".into(),
            },
        ];
        for e in errors {
            let text = e.to_string();
            let first = text.chars().next().unwrap();
            assert!(!first.is_uppercase(), "{text}");
            assert!(text.contains("\nhint: "), "{text}");
        }
    }

    #[test]
    fn missing_names_every_secret() {
        let e = SecretsError::Missing {
            names: vec!["A_KEY".into(), "B_KEY".into()],
            service: "lastmile:p".into(),
        };
        let text = e.to_string();
        assert!(text.contains("A_KEY, B_KEY"), "{text}");
        assert!(text.contains("lastmile:p"), "{text}");
    }
}
