//! Delivery: the exact secrets one child receives in its environment, read from the store at
//! each start (so a changed secret reaches the child at its next start), plus the
//! `LASTMILE_CUSTOM_SECRETS` allowlist. All or nothing: if any named secret is missing the
//! child must not start, and the error names every missing one.

use secrecy::{ExposeSecret, SecretString};

use super::{MIN_VALUE_LEN, SecretKey, SecretKind, SecretName, SecretStore, SecretsError};
use crate::config::SecretRef;

/// The variable that tells a child which of its variables are custom secrets it may read.
pub const CUSTOM_SECRETS_VAR: &str = "LASTMILE_CUSTOM_SECRETS";

/// What one child receives.
#[derive(Debug, Clone, Default)]
pub struct ChildSecrets {
    /// `(variable, value)` for each secret the server file names, in the file's order. The
    /// variable is the renamed one (`env = …`) where the file renames.
    pub env: Vec<(String, SecretString)>,
    /// Value of [`CUSTOM_SECRETS_VAR`]: the comma-separated variable names that carry custom
    /// (non-provider) secrets, in the file's order; empty when there are none. Set it always.
    pub custom_allowlist: String,
    /// `(secret name, value)` pairs for the redactor (labels use the store's name, not the
    /// variable's).
    pub redact: Vec<(String, SecretString)>,
}

/// Look up every secret `refs` names in `store`.
///
/// Fails with [`SecretsError::Missing`] naming every absent secret, [`SecretsError::InvalidName`]
/// for a name that breaks the rule, [`SecretsError::TooShort`] for a value (set outside lastmile)
/// too short to redact, or the store's own error (locked, unavailable). Blocks: call from
/// `spawn_blocking` in async code.
pub fn child_secrets(
    store: &dyn SecretStore,
    refs: &[SecretRef],
) -> Result<ChildSecrets, SecretsError> {
    let mut out = ChildSecrets::default();
    let mut missing: Vec<String> = Vec::new();
    let mut custom: Vec<&str> = Vec::new();
    for r in refs {
        let name = SecretName::parse(r.secret_name())?;
        let key = SecretKey::Named(name.clone());
        match store.get(&key)? {
            None => {
                if !missing.iter().any(|m| m == name.as_str()) {
                    missing.push(name.as_str().to_string());
                }
            }
            Some(value) => {
                if value.expose_secret().len() < MIN_VALUE_LEN {
                    return Err(SecretsError::TooShort {
                        name: name.as_str().to_string(),
                        min: MIN_VALUE_LEN,
                    });
                }
                if name.kind() == SecretKind::Custom && !custom.contains(&r.env_name()) {
                    custom.push(r.env_name());
                }
                if !out.redact.iter().any(|(n, _)| n == name.as_str()) {
                    out.redact.push((name.as_str().to_string(), value.clone()));
                }
                out.env.push((r.env_name().to_string(), value));
            }
        }
    }
    if !missing.is_empty() {
        return Err(SecretsError::Missing {
            names: missing,
            service: store.service().to_string(),
        });
    }
    out.custom_allowlist = custom.join(",");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemoryStore;

    fn store_with(pairs: &[(&str, &str)]) -> MemoryStore {
        let store = MemoryStore::new("lastmile:test");
        for (k, v) in pairs {
            store
                .set(
                    &SecretKey::from_entry_name(k).unwrap(),
                    &SecretString::from(*v),
                )
                .unwrap();
        }
        store
    }

    fn named(n: &str) -> SecretRef {
        SecretRef::Named(n.into())
    }

    #[test]
    fn exact_pairs_and_allowlist() {
        let store = store_with(&[
            ("GITHUB_TOKEN", "ghp_canary_0001"),
            ("MY_API_KEY", "custom_canary_0002"),
            ("OTHER_KEY", "unused_canary_0003"),
        ]);
        let refs = [
            named("GITHUB_TOKEN"),
            SecretRef::Renamed {
                env: "API_KEY".into(),
                from: "MY_API_KEY".into(),
            },
        ];
        let got = child_secrets(&store, &refs).unwrap();
        let env: Vec<(&str, &str)> = got
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret()))
            .collect();
        assert_eq!(
            env,
            [
                ("GITHUB_TOKEN", "ghp_canary_0001"),
                ("API_KEY", "custom_canary_0002")
            ]
        );
        assert_eq!(got.custom_allowlist, "API_KEY");
        let labels: Vec<&str> = got.redact.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(labels, ["GITHUB_TOKEN", "MY_API_KEY"]);
        assert!(!format!("{got:?}").contains("canary"));
    }

    #[test]
    fn nothing_named_nothing_delivered() {
        let store = store_with(&[("MY_API_KEY", "custom_canary_0002")]);
        let got = child_secrets(&store, &[]).unwrap();
        assert!(got.env.is_empty());
        assert_eq!(got.custom_allowlist, "");
    }

    #[test]
    fn every_missing_secret_is_named() {
        let store = store_with(&[("GITHUB_TOKEN", "ghp_canary_0001")]);
        let refs = [named("A_KEY"), named("GITHUB_TOKEN"), named("B_KEY")];
        let e = child_secrets(&store, &refs).unwrap_err();
        match &e {
            SecretsError::Missing { names, service } => {
                assert_eq!(names, &["A_KEY", "B_KEY"]);
                assert_eq!(service, "lastmile:test");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("canary"));
    }

    #[test]
    fn invalid_and_reserved_names_fail() {
        let store = store_with(&[]);
        let e = child_secrets(&store, &[named("LASTMILE_X")]).unwrap_err();
        assert!(matches!(e, SecretsError::InvalidName { .. }), "{e:?}");
    }

    #[test]
    fn locked_store_fails_whole() {
        let store = store_with(&[("GITHUB_TOKEN", "ghp_canary_0001")]);
        store.set_locked(true);
        let e = child_secrets(&store, &[named("GITHUB_TOKEN")]).unwrap_err();
        assert!(matches!(e, SecretsError::Locked { .. }), "{e:?}");
    }

    #[test]
    fn one_secret_in_two_variables() {
        let store = store_with(&[("MY_API_KEY", "custom_canary_0002")]);
        let refs = [
            named("MY_API_KEY"),
            SecretRef::Renamed {
                env: "ALIAS".into(),
                from: "MY_API_KEY".into(),
            },
        ];
        let got = child_secrets(&store, &refs).unwrap();
        assert_eq!(got.env.len(), 2);
        assert_eq!(got.custom_allowlist, "MY_API_KEY,ALIAS");
        assert_eq!(got.redact.len(), 1);
    }
}
