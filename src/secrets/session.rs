//! The redactor of one session: it learns every secret value any of the session's children
//! will receive *before* any child starts, and every value a later start delivers (a rotated
//! secret) before that child starts — without ever forgetting an earlier value, because a child
//! started with the old value may still be running and echo it.
//!
//! Learning is serialised: two children starting at once each add their values under one lock
//! and rebuild from the complete list, so no update is lost (the race of issue #9, point 1).

use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use super::{Redactor, SecretsError, SharedRedactor};

/// One session's redactor and the values it was built from.
///
/// ```
/// use lastmile::secrets::SessionRedactor;
/// use secrecy::SecretString;
///
/// let r = SessionRedactor::default();
/// r.learn([("K".to_string(), SecretString::from("first-value-1"))]).unwrap();
/// r.learn([("K".to_string(), SecretString::from("rotated-value-2"))]).unwrap();
/// // Both the old and the new value stay redacted.
/// assert_eq!(r.shared().scrub("first-value-1 rotated-value-2").1, 2);
/// ```
#[derive(Debug, Default)]
pub struct SessionRedactor {
    shared: Arc<SharedRedactor>,
    known: Mutex<Vec<(String, SecretString)>>,
}

impl SessionRedactor {
    /// The redactor every scrub of this session goes through (an atomic load per use).
    pub fn shared(&self) -> &Arc<SharedRedactor> {
        &self.shared
    }

    /// Learn `pairs` (secret name, value): values not seen before are added, every earlier value
    /// is kept. Returns once the new redactor is in place, so a caller that learns a child's
    /// secrets before starting it can be sure nothing the child says escapes.
    pub fn learn(
        &self,
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<(), SecretsError> {
        let mut known = self.known.lock().map_err(|_| SecretsError::Redactor {
            detail: "the session's redactor lock was poisoned".into(),
        })?;
        let before = known.len();
        for (name, value) in pairs {
            let seen = known
                .iter()
                .any(|(n, v)| *n == name && v.expose_secret() == value.expose_secret());
            if !seen && !value.expose_secret().is_empty() {
                known.push((name, value));
            }
        }
        if known.len() == before {
            return Ok(());
        }
        let redactor = Redactor::new_keeping_all(known.iter().cloned())?;
        self.shared.replace(redactor);
        Ok(())
    }

    /// How many distinct values the redactor knows.
    pub fn value_count(&self) -> usize {
        self.known.lock().map(|k| k.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: &str, v: &str) -> (String, SecretString) {
        (n.to_string(), SecretString::from(v))
    }

    #[test]
    fn concurrent_learning_loses_nothing() {
        let r = Arc::new(SessionRedactor::default());
        let threads: Vec<_> = (0..12)
            .map(|i| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    r.learn([pair(&format!("S{i}"), &format!("secret-value-{i:04}"))])
                        .unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(r.value_count(), 12);
        for i in 0..12 {
            let text = format!("x secret-value-{i:04} y");
            assert_eq!(r.shared().scrub(&text).1, 1, "{text}");
        }
    }

    #[test]
    fn a_rotated_value_keeps_the_old_one_redacted() {
        let r = SessionRedactor::default();
        r.learn([pair("K", "old-value-0001")]).unwrap();
        r.learn([pair("K", "new-value-0002")]).unwrap();
        r.learn([pair("K", "new-value-0002")]).unwrap();
        assert_eq!(r.value_count(), 2);
        let (out, hits) = r.shared().scrub("old-value-0001 new-value-0002");
        assert_eq!(out, "[REDACTED:K] [REDACTED:K]");
        assert_eq!(hits, 2);
    }
}
