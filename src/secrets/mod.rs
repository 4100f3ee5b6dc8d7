//! Secrets: the [`SecretStore`] trait and its backends (the OS keyrings through keyring-core,
//! and memory for tests), the typed [`SecretSet`] of a profile, the environment a child receives
//! ([`child_secrets`]), and the [`Redactor`] that scrubs every delivered value out of whatever
//! comes back.
//!
//! A value is a [`secrecy::SecretString`] from the store to the child's environment: Debug prints
//! a placeholder and memory is zeroed on drop. No error in this module holds a value, and an
//! invalid name is never echoed (it may be a value pasted in the wrong place).
//!
//! Each profile's secrets live under their own keyring service, `lastmile:{profile}`
//! ([`Profile::keyring_service`](crate::config::Profile::keyring_service)). Keyrings cannot list
//! their entries, so an `index` entry in the same service lists the names (never values).
//! Store calls block: from async code, call them inside `tokio::task::spawn_blocking`.
//!
//! ```
//! use lastmile::config::SecretRef;
//! use lastmile::secrets::{MemoryStore, Redactor, SecretKey, SecretStore, child_secrets};
//! use secrecy::SecretString;
//!
//! let store = MemoryStore::new("lastmile:doc");
//! let key = SecretKey::from_entry_name("MY_API_KEY").unwrap();
//! store.set(&key, &SecretString::from("canary-value-123")).unwrap();
//! let child = child_secrets(&store, &[SecretRef::Named("MY_API_KEY".into())]).unwrap();
//! assert_eq!(child.custom_allowlist, "MY_API_KEY");
//! let redactor = Redactor::new(child.redact).unwrap();
//! assert_eq!(redactor.scrub("echo canary-value-123").0, "echo [REDACTED:MY_API_KEY]");
//! ```

mod backend;
mod deliver;
mod error;
mod name;
mod random;
mod redact;
mod scrub;
mod session;
mod set;
mod store;

pub use backend::{BackendChoice, BackendKind, BackendRequest, OpenedStore, open_store};
pub use deliver::{CUSTOM_SECRETS_VAR, ChildSecrets, child_secrets};
pub use error::SecretsError;
pub use name::{Internal, NameProblem, Provider, SecretKey, SecretKind, SecretName};
pub use random::{SIGNING_SECRET_BYTES, random_secret};
pub use redact::{Redactor, SharedRedactor};
pub use scrub::{Withheld, scrub, scrub_text};
pub use session::SessionRedactor;
pub use set::SecretSet;
pub use store::{MIN_VALUE_LEN, MemoryStore, SecretStore};
