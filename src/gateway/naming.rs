//! Exposed names: `{prefix}__{name}` matching `^[a-zA-Z0-9_-]{1,64}$` (Claude's rule), shortened
//! deterministically with a short hash when needed, with collisions resolved, never fatal.

use std::collections::HashSet;

use crate::util::short_hash;

/// Longest name a client accepts.
pub const MAX_NAME: usize = 64;
const HASH_LEN: usize = 8;

/// Whether `name` is acceptable to Claude as is.
pub fn is_valid_exposed(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The name under which `original` of a server with `prefix` is exposed, before collisions.
///
/// A name that is already valid is kept. Otherwise invalid characters become `_`, and the name is
/// cut to leave room for `_` and 8 hex digits of a hash of the full raw name, so two different
/// long names never shorten to the same result (barring a hash collision, which the allocator
/// resolves).
pub fn exposed_name(prefix: &str, original: &str) -> String {
    let raw = if prefix.is_empty() {
        original.to_string()
    } else {
        format!("{prefix}__{original}")
    };
    if is_valid_exposed(&raw) {
        return raw;
    }
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    with_hash(&clean, &short_hash(&[&raw], HASH_LEN))
}

/// `base` cut so that `{base}_{hash}` fits in 64 characters (`base` is ASCII by construction).
fn with_hash(base: &str, hash: &str) -> String {
    let keep = MAX_NAME - 1 - hash.len();
    let base = if base.len() > keep {
        &base[..keep]
    } else {
        base
    };
    format!("{base}_{hash}")
}

/// Hands out unique exposed names in a deterministic order.
#[derive(Debug, Default)]
pub struct NameAllocator {
    taken: HashSet<String>,
}

impl NameAllocator {
    /// The exposed name for `original` of `server`; if another server already took it, a short
    /// hash of the server and the original name is appended. Returns the name and whether it had
    /// to be changed because of a collision.
    pub fn allocate(&mut self, server: &str, prefix: &str, original: &str) -> (String, bool) {
        let name = exposed_name(prefix, original);
        if self.taken.insert(name.clone()) {
            return (name, false);
        }
        let mut candidate = with_hash(&name, &short_hash(&[server, original], HASH_LEN));
        let mut n = 2u32;
        while !self.taken.insert(candidate.clone()) {
            // Only reachable through a hash collision; stays deterministic.
            candidate = with_hash(
                &name,
                &short_hash(&[server, original, &n.to_string()], HASH_LEN),
            );
            n += 1;
        }
        (candidate, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names() {
        assert_eq!(
            exposed_name("github", "create_issue"),
            "github__create_issue"
        );
        assert_eq!(exposed_name("", "echo"), "echo");
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "x".repeat(80);
        let a = exposed_name("srv", &long);
        assert!(is_valid_exposed(&a), "{a}");
        assert_eq!(a.len(), 64);
        assert!(a.starts_with("srv__xxx"));
        // Deterministic, and distinct for distinct originals.
        assert_eq!(a, exposed_name("srv", &long));
        let b = exposed_name("srv", &format!("{long}y"));
        assert_ne!(a, b);
    }

    #[test]
    fn invalid_characters_are_replaced_and_hashed() {
        let a = exposed_name("fs", "read.file");
        assert!(is_valid_exposed(&a));
        assert!(a.starts_with("fs__read_file_"));
        assert_ne!(a, exposed_name("fs", "read_file"));
    }

    #[test]
    fn collisions_are_resolved() {
        let mut alloc = NameAllocator::default();
        let (a, ca) = alloc.allocate("one", "", "echo");
        let (b, cb) = alloc.allocate("two", "", "echo");
        assert_eq!(a, "echo");
        assert!(!ca);
        assert!(cb);
        assert_ne!(a, b);
        assert!(is_valid_exposed(&b));
        // Same inputs, same outcome.
        let mut again = NameAllocator::default();
        again.allocate("one", "", "echo");
        assert_eq!(again.allocate("two", "", "echo").0, b);
    }

    #[test]
    fn every_output_is_valid() {
        for prefix in ["", "p", &"q".repeat(24)] {
            for name in ["a", "ü", "a b", &"z".repeat(200), "-", "__"] {
                let mut alloc = NameAllocator::default();
                let (n1, _) = alloc.allocate("s1", prefix, name);
                let (n2, _) = alloc.allocate("s2", prefix, name);
                assert!(is_valid_exposed(&n1), "{n1}");
                assert!(is_valid_exposed(&n2), "{n2}");
                assert_ne!(n1, n2);
            }
        }
    }
}
