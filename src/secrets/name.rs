//! Names of secrets: the ones users choose (`^[A-Z][A-Z0-9_]{0,63}$`, not starting with
//! `LASTMILE_`), the well-known provider keys among them, and lastmile's own internal entries,
//! whose lowercase names can never clash with a user's.

use std::fmt;

use super::SecretsError;

/// Why a string is not a valid secret name. Deliberately carries no part of the string: a user
/// who pastes a value where the name belongs must not see it echoed to the terminal or a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than 64 characters (the length is given).
    TooLong(usize),
    /// The first character is not an uppercase ASCII letter.
    BadStart,
    /// A character other than `A-Z`, `0-9` or `_` (its 1-based position is given).
    BadChar(usize),
    /// Names starting with `LASTMILE_` are lastmile's own.
    Reserved,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => write!(f, "it is empty"),
            NameProblem::TooLong(n) => {
                write!(f, "it is {n} characters long, at most 64 are allowed")
            }
            NameProblem::BadStart => write!(f, "it does not start with an uppercase letter"),
            NameProblem::BadChar(at) => write!(
                f,
                "character {at} is not an uppercase letter, digit or underscore"
            ),
            NameProblem::Reserved => {
                write!(f, "names starting with LASTMILE_ are reserved for lastmile")
            }
        }
    }
}

/// A user-chosen secret name: `^[A-Z][A-Z0-9_]{0,63}$`, not starting with `LASTMILE_`.
///
/// ```
/// use lastmile::secrets::{SecretName, SecretKind};
/// let name = SecretName::parse("GITHUB_TOKEN").unwrap();
/// assert_eq!(name.kind(), SecretKind::Provider);
/// assert!(SecretName::parse("github_token").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

impl SecretName {
    /// Check `name` and wrap it. The error never contains the rejected text.
    pub fn parse(name: &str) -> Result<Self, SecretsError> {
        match check_name(name) {
            Ok(()) => Ok(SecretName(name.to_string())),
            Err(problem) => Err(SecretsError::InvalidName { problem }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the well-known provider keys or a custom secret.
    pub fn kind(&self) -> SecretKind {
        if Provider::from_name(&self.0).is_some() {
            SecretKind::Provider
        } else {
            SecretKind::Custom
        }
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_name(name: &str) -> Result<(), NameProblem> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err(NameProblem::Empty);
    }
    let chars = name.chars().count();
    if chars > 64 {
        return Err(NameProblem::TooLong(chars));
    }
    if !b[0].is_ascii_uppercase() {
        return Err(NameProblem::BadStart);
    }
    if let Some((at, _)) = name
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(NameProblem::BadChar(at + 1));
    }
    if name.starts_with("LASTMILE_") {
        return Err(NameProblem::Reserved);
    }
    Ok(())
}

/// What a secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKind {
    /// One of the well-known provider keys ([`Provider`]).
    Provider,
    /// A user's own secret, delivered to servers that name it.
    Custom,
    /// lastmile's own ([`Internal`]); never delivered to a child.
    Internal,
}

impl SecretKind {
    /// `provider`, `custom` or `internal`.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretKind::Provider => "provider",
            SecretKind::Custom => "custom",
            SecretKind::Internal => "internal",
        }
    }
}

/// The well-known provider keys, each a named field of [`SecretSet`](super::SecretSet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Provider {
    /// `ANTHROPIC_API_KEY`
    Anthropic,
    /// `OPENAI_API_KEY`
    OpenAi,
    /// `GEMINI_API_KEY`
    Gemini,
    /// `GITHUB_TOKEN`
    GitHub,
}

impl Provider {
    /// Every provider key.
    pub const ALL: [Provider; 4] = [
        Provider::Anthropic,
        Provider::OpenAi,
        Provider::Gemini,
        Provider::GitHub,
    ];

    /// The secret's (and variable's) name.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "ANTHROPIC_API_KEY",
            Provider::OpenAi => "OPENAI_API_KEY",
            Provider::Gemini => "GEMINI_API_KEY",
            Provider::GitHub => "GITHUB_TOKEN",
        }
    }

    /// The provider whose key has this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// lastmile's own entries. Their names are lowercase, so no user name can clash with them, and
/// a server file cannot name them (secret names in server files are uppercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Internal {
    /// The session-token signing secret (`signing-secret`).
    SigningSecret,
    /// The session token saved for `serve` to find (`session-token`).
    SessionToken,
    /// The audit-chain key (`audit-key`).
    AuditKey,
    /// Reserved: a database URL (`database-url`).
    DatabaseUrl,
    /// The audit log's MAC'd high-water mark (`audit-mark`); not a secret, but it must live
    /// outside the data folder.
    AuditMark,
    /// The key a fronting proxy signs identity headers with (`proxy-identity-key`).
    ProxyIdentityKey,
    /// The previous proxy key, accepted during a rotation (`proxy-identity-key-previous`).
    ProxyIdentityKeyPrevious,
}

impl Internal {
    /// Every internal entry.
    pub const ALL: [Internal; 7] = [
        Internal::SigningSecret,
        Internal::SessionToken,
        Internal::AuditKey,
        Internal::DatabaseUrl,
        Internal::AuditMark,
        Internal::ProxyIdentityKey,
        Internal::ProxyIdentityKeyPrevious,
    ];

    /// The entry's name in the keyring.
    pub fn entry_name(self) -> &'static str {
        match self {
            Internal::SigningSecret => "signing-secret",
            Internal::SessionToken => "session-token",
            Internal::AuditKey => "audit-key",
            Internal::DatabaseUrl => "database-url",
            Internal::AuditMark => "audit-mark",
            Internal::ProxyIdentityKey => crate::edge::PROXY_KEY_ENTRY,
            Internal::ProxyIdentityKeyPrevious => crate::edge::PROXY_KEY_PREVIOUS_ENTRY,
        }
    }

    /// The internal entry of this name.
    pub fn from_entry_name(name: &str) -> Option<Self> {
        Internal::ALL.into_iter().find(|i| i.entry_name() == name)
    }
}

/// One entry of a profile's store: a user's secret or one of lastmile's own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretKey {
    /// lastmile's own.
    Internal(Internal),
    /// A user's (provider or custom).
    Named(SecretName),
}

impl SecretKey {
    /// The keyring entry name (the keyring "user" under the profile's service).
    pub fn entry_name(&self) -> &str {
        match self {
            SecretKey::Internal(i) => i.entry_name(),
            SecretKey::Named(n) => n.as_str(),
        }
    }

    /// An entry name back into a key: an internal name, or a valid secret name.
    pub fn from_entry_name(name: &str) -> Result<Self, SecretsError> {
        match Internal::from_entry_name(name) {
            Some(i) => Ok(SecretKey::Internal(i)),
            None => SecretName::parse(name).map(SecretKey::Named),
        }
    }

    /// Provider, custom or internal.
    pub fn kind(&self) -> SecretKind {
        match self {
            SecretKey::Internal(_) => SecretKind::Internal,
            SecretKey::Named(n) => n.kind(),
        }
    }
}

impl From<Internal> for SecretKey {
    fn from(i: Internal) -> Self {
        SecretKey::Internal(i)
    }
}

impl From<SecretName> for SecretKey {
    fn from(n: SecretName) -> Self {
        SecretKey::Named(n)
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.entry_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for ok in ["A", "GITHUB_TOKEN", "X1", "A_B_C_9", &"A".repeat(64)] {
            assert!(SecretName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_names_say_why_without_echoing() {
        let cases: [(&str, NameProblem); 7] = [
            ("", NameProblem::Empty),
            (&"A".repeat(65), NameProblem::TooLong(65)),
            ("1ABC", NameProblem::BadStart),
            ("_ABC", NameProblem::BadStart),
            ("github_token", NameProblem::BadStart),
            ("GH-TOKEN", NameProblem::BadChar(3)),
            ("LASTMILE_X", NameProblem::Reserved),
        ];
        for (bad, want) in cases {
            let err = SecretName::parse(bad).unwrap_err();
            match &err {
                SecretsError::InvalidName { problem } => assert_eq!(*problem, want, "{bad}"),
                other => panic!("{other:?}"),
            }
            let text = format!("{err} {err:?}");
            if bad.len() > 3 {
                assert!(!text.contains(bad), "{text}");
            }
            assert!(text.contains("hint:"), "{text}");
        }
    }

    #[test]
    fn pasted_value_is_not_echoed() {
        let value = "sk-ant-api03-SECRETSECRETSECRET";
        let err = SecretName::parse(value).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRETSECRET"));
    }

    #[test]
    fn kinds() {
        assert_eq!(
            SecretName::parse("OPENAI_API_KEY").unwrap().kind(),
            SecretKind::Provider
        );
        assert_eq!(
            SecretName::parse("MY_KEY").unwrap().kind(),
            SecretKind::Custom
        );
        assert_eq!(
            SecretKey::from(Internal::AuditKey).kind(),
            SecretKind::Internal
        );
    }

    #[test]
    fn entry_names_round_trip_and_never_clash() {
        for i in Internal::ALL {
            let key = SecretKey::from_entry_name(i.entry_name()).unwrap();
            assert_eq!(key, SecretKey::Internal(i));
            assert!(SecretName::parse(i.entry_name()).is_err());
        }
        for p in Provider::ALL {
            let key = SecretKey::from_entry_name(p.name()).unwrap();
            assert_eq!(key.kind(), SecretKind::Provider);
        }
        assert!(SecretKey::from_entry_name("nonsense").is_err());
    }
}
