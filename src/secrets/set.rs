//! The typed secret set of a profile: lastmile's own secrets, the well-known provider keys as
//! named fields, and the custom secrets by name. Every value is a [`SecretString`]: Debug prints a
//! placeholder and the memory is zeroed on drop.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{Internal, Provider, SecretKey, SecretName, SecretStore, SecretsError};

/// Everything a profile's store holds, loaded at once.
#[derive(Debug, Default, Clone)]
pub struct SecretSet {
    /// The session-token signing secret.
    pub signing_secret: Option<SecretString>,
    /// The session token saved for `serve`.
    pub session_token: Option<SecretString>,
    /// The audit-chain key.
    pub audit_key: Option<SecretString>,
    /// Reserved: a database URL.
    pub database_url: Option<SecretString>,
    /// The audit log's high-water mark.
    pub audit_mark: Option<SecretString>,
    /// `proxy-identity-key`.
    pub proxy_identity_key: Option<SecretString>,
    /// `proxy-identity-key-previous`.
    pub proxy_identity_key_previous: Option<SecretString>,
    /// `ANTHROPIC_API_KEY`
    pub anthropic_api_key: Option<SecretString>,
    /// `OPENAI_API_KEY`
    pub openai_api_key: Option<SecretString>,
    /// `GEMINI_API_KEY`
    pub gemini_api_key: Option<SecretString>,
    /// `GITHUB_TOKEN`
    pub github_token: Option<SecretString>,
    /// Every other secret, by name.
    pub custom: BTreeMap<SecretName, SecretString>,
}

impl SecretSet {
    /// Read every entry the store's index lists.
    pub fn load(store: &dyn SecretStore) -> Result<Self, SecretsError> {
        let mut set = SecretSet::default();
        for key in store.list()? {
            if let Some(value) = store.get(&key)? {
                set.insert(key, value);
            }
        }
        Ok(set)
    }

    /// Put `value` in the slot for `key`.
    pub fn insert(&mut self, key: SecretKey, value: SecretString) {
        match key {
            SecretKey::Internal(i) => *self.internal_slot(i) = Some(value),
            SecretKey::Named(name) => match Provider::from_name(name.as_str()) {
                Some(p) => *self.provider_slot(p) = Some(value),
                None => {
                    self.custom.insert(name, value);
                }
            },
        }
    }

    /// The value for `key`, if present.
    pub fn get(&self, key: &SecretKey) -> Option<&SecretString> {
        match key {
            SecretKey::Internal(i) => self.internal(*i).as_ref(),
            SecretKey::Named(name) => match Provider::from_name(name.as_str()) {
                Some(p) => self.provider(p).as_ref(),
                None => self.custom.get(name),
            },
        }
    }

    /// The slot of one provider key.
    pub fn provider(&self, p: Provider) -> &Option<SecretString> {
        match p {
            Provider::Anthropic => &self.anthropic_api_key,
            Provider::OpenAi => &self.openai_api_key,
            Provider::Gemini => &self.gemini_api_key,
            Provider::GitHub => &self.github_token,
        }
    }

    fn provider_slot(&mut self, p: Provider) -> &mut Option<SecretString> {
        match p {
            Provider::Anthropic => &mut self.anthropic_api_key,
            Provider::OpenAi => &mut self.openai_api_key,
            Provider::Gemini => &mut self.gemini_api_key,
            Provider::GitHub => &mut self.github_token,
        }
    }

    /// The slot of one internal entry.
    pub fn internal(&self, i: Internal) -> &Option<SecretString> {
        match i {
            Internal::SigningSecret => &self.signing_secret,
            Internal::SessionToken => &self.session_token,
            Internal::AuditKey => &self.audit_key,
            Internal::DatabaseUrl => &self.database_url,
            Internal::AuditMark => &self.audit_mark,
            Internal::ProxyIdentityKey => &self.proxy_identity_key,
            Internal::ProxyIdentityKeyPrevious => &self.proxy_identity_key_previous,
        }
    }

    fn internal_slot(&mut self, i: Internal) -> &mut Option<SecretString> {
        match i {
            Internal::SigningSecret => &mut self.signing_secret,
            Internal::SessionToken => &mut self.session_token,
            Internal::AuditKey => &mut self.audit_key,
            Internal::DatabaseUrl => &mut self.database_url,
            Internal::AuditMark => &mut self.audit_mark,
            Internal::ProxyIdentityKey => &mut self.proxy_identity_key,
            Internal::ProxyIdentityKeyPrevious => &mut self.proxy_identity_key_previous,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::MemoryStore;
    use secrecy::ExposeSecret;

    #[test]
    fn load_sorts_into_slots() {
        let store = MemoryStore::new("s");
        let put = |k: SecretKey, v: &str| store.set(&k, &SecretString::from(v)).unwrap();
        put(Internal::SigningSecret.into(), "signing-canary-0001");
        put(
            SecretKey::from_entry_name("GITHUB_TOKEN").unwrap(),
            "gh-canary-0002",
        );
        put(
            SecretKey::from_entry_name("MY_KEY").unwrap(),
            "custom-canary-0003",
        );
        let set = SecretSet::load(&store).unwrap();
        assert_eq!(
            set.signing_secret.as_ref().unwrap().expose_secret(),
            "signing-canary-0001"
        );
        assert_eq!(
            set.github_token.as_ref().unwrap().expose_secret(),
            "gh-canary-0002"
        );
        assert!(set.anthropic_api_key.is_none());
        let my = SecretName::parse("MY_KEY").unwrap();
        assert_eq!(set.custom[&my].expose_secret(), "custom-canary-0003");
        assert!(set.get(&SecretKey::Named(my)).is_some());
        let debug = format!("{set:?}");
        assert!(!debug.contains("canary"), "{debug}");
    }
}
