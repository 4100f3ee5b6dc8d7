//! The [`SecretStore`] trait and what every backend shares: value checks and the index entry
//! that lists the names a keyring holds (keyrings cannot enumerate their entries).
//!
//! Calls block (a Secret Service call is a D-Bus round trip): from async code, call them inside
//! `tokio::task::spawn_blocking`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use secrecy::{ExposeSecret, SecretString};

use super::{BackendKind, SecretKey, SecretsError};

/// Values shorter than this many bytes are refused, by every path that stores a secret (they all
/// go through [`SecretStore::set`]) and again when a value set by another tool is delivered. A
/// short value would make the redactor replace ordinary text everywhere, and skipping it would
/// leak it; refusing is the safe choice.
///
/// Why 8 also holds for the encoded forms: hex, base64 and percent-encoding make a value longer
/// but carry no more of it, so what decides whether unrelated text can match is the raw length.
/// The weakest pattern is the base64 middle of an 8-byte value, 8 characters that carry 6 bytes
/// (48 bits) of it: a chance match is negligible. With 7 bytes or fewer some alignments would
/// leave middles of 4 characters (3 bytes), which turn up in any long base64 blob, so the
/// redactor gives such a value its raw form only.
pub const MIN_VALUE_LEN: usize = 8;

/// Name of the entry that lists the names stored under a profile's service. Lowercase and not
/// an internal name, so it clashes with nothing. It holds names only, never values.
const INDEX_ENTRY: &str = "index";

/// A profile's secrets: one keyring namespace (service), entries addressed by [`SecretKey`].
pub trait SecretStore: Send + Sync {
    /// The backend behind this store.
    fn backend(&self) -> BackendKind;

    /// The keyring service name (`lastmile:{profile}`).
    fn service(&self) -> &str;

    /// The value stored under `key`, or `None`.
    fn get(&self, key: &SecretKey) -> Result<Option<SecretString>, SecretsError>;

    /// Store `value` under `key`, replacing any earlier value. Empty values and values shorter
    /// than [`MIN_VALUE_LEN`] are refused.
    fn set(&self, key: &SecretKey, value: &SecretString) -> Result<(), SecretsError>;

    /// Remove `key`; `false` if it was not there.
    fn delete(&self, key: &SecretKey) -> Result<bool, SecretsError>;

    /// The keys stored, sorted (from the index entry; never reads a value).
    fn list(&self) -> Result<Vec<SecretKey>, SecretsError>;
}

/// Entry-level access to one service of a keyring; the index is kept on top of it.
pub(crate) trait RawStore: Send + Sync {
    fn backend(&self) -> BackendKind;
    fn get(&self, entry: &str) -> Result<Option<SecretString>, SecretsError>;
    fn set(&self, entry: &str, value: &str) -> Result<(), SecretsError>;
    fn delete(&self, entry: &str) -> Result<bool, SecretsError>;
}

/// A [`RawStore`] plus the index entry. Two processes changing the same profile's secrets at
/// the same instant can lose an index update (the value itself is stored either way); the next
/// `set` of that name repairs it.
pub(crate) struct IndexedStore<R> {
    raw: R,
    service: String,
    // Serialises read-modify-write of the index within this process.
    index_lock: Mutex<()>,
}

impl<R: RawStore> IndexedStore<R> {
    pub(crate) fn new(raw: R, service: String) -> Self {
        IndexedStore {
            raw,
            service,
            index_lock: Mutex::new(()),
        }
    }

    fn read_index(&self) -> Result<BTreeSet<SecretKey>, SecretsError> {
        let Some(text) = self.raw.get(INDEX_ENTRY)? else {
            return Ok(BTreeSet::new());
        };
        Ok(text
            .expose_secret()
            .lines()
            .filter_map(|line| SecretKey::from_entry_name(line.trim()).ok())
            .collect())
    }

    fn write_index(&self, keys: &BTreeSet<SecretKey>) -> Result<(), SecretsError> {
        if keys.is_empty() {
            self.raw.delete(INDEX_ENTRY)?;
            return Ok(());
        }
        let text: Vec<&str> = keys.iter().map(SecretKey::entry_name).collect();
        self.raw.set(INDEX_ENTRY, &text.join("\n"))
    }

    fn update_index(
        &self,
        f: impl FnOnce(&mut BTreeSet<SecretKey>) -> bool,
    ) -> Result<(), SecretsError> {
        let _guard = self.index_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys = self.read_index()?;
        if f(&mut keys) {
            self.write_index(&keys)?;
        }
        Ok(())
    }
}

/// Refuse values that must not be stored: empty, or too short to redact safely.
pub(crate) fn check_value(key: &SecretKey, value: &SecretString) -> Result<(), SecretsError> {
    let len = value.expose_secret().len();
    if len == 0 {
        return Err(SecretsError::EmptyValue {
            name: key.entry_name().to_string(),
        });
    }
    if len < MIN_VALUE_LEN {
        return Err(SecretsError::TooShort {
            name: key.entry_name().to_string(),
            min: MIN_VALUE_LEN,
        });
    }
    Ok(())
}

impl<R: RawStore> SecretStore for IndexedStore<R> {
    fn backend(&self) -> BackendKind {
        self.raw.backend()
    }

    fn service(&self) -> &str {
        &self.service
    }

    fn get(&self, key: &SecretKey) -> Result<Option<SecretString>, SecretsError> {
        self.raw.get(key.entry_name())
    }

    fn set(&self, key: &SecretKey, value: &SecretString) -> Result<(), SecretsError> {
        check_value(key, value)?;
        self.raw.set(key.entry_name(), value.expose_secret())?;
        self.update_index(|keys| keys.insert(key.clone()))
    }

    fn delete(&self, key: &SecretKey) -> Result<bool, SecretsError> {
        let existed = self.raw.delete(key.entry_name())?;
        self.update_index(|keys| keys.remove(key))?;
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<SecretKey>, SecretsError> {
        Ok(self.read_index()?.into_iter().collect())
    }
}

/// In-process store for tests (`--secrets-backend memory`): gone when the process ends.
pub struct MemoryStore(IndexedStore<MemoryRaw>);

impl MemoryStore {
    /// An empty store for `service`.
    pub fn new(service: impl Into<String>) -> Self {
        MemoryStore(IndexedStore::new(
            MemoryRaw {
                entries: Mutex::new(BTreeMap::new()),
                locked: AtomicBool::new(false),
            },
            service.into(),
        ))
    }

    /// Make every call fail as a locked keyring does (or stop doing so), for tests.
    pub fn set_locked(&self, locked: bool) {
        self.0.raw.locked.store(locked, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("service", &self.0.service)
            .finish_non_exhaustive()
    }
}

impl SecretStore for MemoryStore {
    fn backend(&self) -> BackendKind {
        self.0.backend()
    }
    fn service(&self) -> &str {
        self.0.service()
    }
    fn get(&self, key: &SecretKey) -> Result<Option<SecretString>, SecretsError> {
        self.0.get(key)
    }
    fn set(&self, key: &SecretKey, value: &SecretString) -> Result<(), SecretsError> {
        self.0.set(key, value)
    }
    fn delete(&self, key: &SecretKey) -> Result<bool, SecretsError> {
        self.0.delete(key)
    }
    fn list(&self) -> Result<Vec<SecretKey>, SecretsError> {
        self.0.list()
    }
}

pub(crate) struct MemoryRaw {
    entries: Mutex<BTreeMap<String, SecretString>>,
    locked: AtomicBool,
}

impl MemoryRaw {
    fn check(&self) -> Result<(), SecretsError> {
        if self.locked.load(Ordering::SeqCst) {
            return Err(SecretsError::Locked {
                backend: BackendKind::Memory,
                detail: "locked for a test".into(),
            });
        }
        Ok(())
    }
}

impl RawStore for MemoryRaw {
    fn backend(&self) -> BackendKind {
        BackendKind::Memory
    }
    fn get(&self, entry: &str) -> Result<Option<SecretString>, SecretsError> {
        self.check()?;
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.get(entry).cloned())
    }
    fn set(&self, entry: &str, value: &str) -> Result<(), SecretsError> {
        self.check()?;
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(entry.to_string(), SecretString::from(value));
        Ok(())
    }
    fn delete(&self, entry: &str) -> Result<bool, SecretsError> {
        self.check()?;
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(map.remove(entry).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{Internal, SecretName};

    fn key(name: &str) -> SecretKey {
        SecretKey::from_entry_name(name).unwrap()
    }

    fn value(v: &str) -> SecretString {
        SecretString::from(v)
    }

    #[test]
    fn set_get_list_delete() {
        let store = MemoryStore::new("lastmile:test");
        assert!(store.list().unwrap().is_empty());
        assert!(store.get(&key("MY_KEY")).unwrap().is_none());
        store.set(&key("MY_KEY"), &value("value-one-123")).unwrap();
        store
            .set(&key("GITHUB_TOKEN"), &value("ghp_000000000"))
            .unwrap();
        store
            .set(
                &Internal::SigningSecret.into(),
                &value("x".repeat(86).as_str()),
            )
            .unwrap();
        assert_eq!(
            store.get(&key("MY_KEY")).unwrap().unwrap().expose_secret(),
            "value-one-123"
        );
        let names: Vec<String> = store
            .list()
            .unwrap()
            .iter()
            .map(|k| k.to_string())
            .collect();
        assert_eq!(names, ["signing-secret", "GITHUB_TOKEN", "MY_KEY"]);
        // Replacing keeps one index entry.
        store.set(&key("MY_KEY"), &value("value-two-456")).unwrap();
        assert_eq!(store.list().unwrap().len(), 3);
        assert!(store.delete(&key("MY_KEY")).unwrap());
        assert!(!store.delete(&key("MY_KEY")).unwrap());
        assert!(store.get(&key("MY_KEY")).unwrap().is_none());
        assert_eq!(store.list().unwrap().len(), 2);
        assert!(store.delete(&key("GITHUB_TOKEN")).unwrap());
        assert!(store.delete(&Internal::SigningSecret.into()).unwrap());
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn index_never_holds_values() {
        let store = MemoryStore::new("s");
        store.set(&key("MY_KEY"), &value("canary-7f3a9c")).unwrap();
        let index = store.0.raw.get(INDEX_ENTRY).unwrap().unwrap();
        assert_eq!(index.expose_secret(), "MY_KEY");
    }

    #[test]
    fn empty_and_short_values_are_refused() {
        let store = MemoryStore::new("s");
        let e = store.set(&key("MY_KEY"), &value("")).unwrap_err();
        assert!(matches!(e, SecretsError::EmptyValue { .. }), "{e:?}");
        let e = store.set(&key("MY_KEY"), &value("1234567")).unwrap_err();
        assert!(matches!(e, SecretsError::TooShort { .. }), "{e:?}");
        assert!(!e.to_string().contains("1234567"));
        assert!(store.list().unwrap().is_empty());
        store.set(&key("MY_KEY"), &value("12345678")).unwrap();
        // Internal entries (signing secret, token, audit key) pass the same check.
        for internal in [Internal::SigningSecret, Internal::SessionToken] {
            let e = store.set(&internal.into(), &value("short")).unwrap_err();
            assert!(matches!(e, SecretsError::TooShort { min: 8, .. }), "{e:?}");
        }
    }

    #[test]
    fn locked_store_fails_with_a_name() {
        let store = MemoryStore::new("s");
        store.set_locked(true);
        let e = store.get(&key("MY_KEY")).unwrap_err();
        assert!(matches!(e, SecretsError::Locked { .. }), "{e:?}");
    }

    #[test]
    fn debug_prints_no_values() {
        let store = MemoryStore::new("s");
        store.set(&key("MY_KEY"), &value("canary-7f3a9c")).unwrap();
        let text = format!("{store:?} {:?}", store.get(&key("MY_KEY")).unwrap());
        assert!(!text.contains("canary"), "{text}");
        let _ = SecretName::parse("MY_KEY").unwrap();
    }
}
