//! The signing-secret check every verifier and issuer runs at construction: a secret that is too
//! short, one byte repeated, a short pattern repeated, or a well-known placeholder is refused with
//! a named [`WeakSecret`], so no verifier or issuer can exist with a weak secret.
//!
//! Messages never contain the secret, nor which placeholder it matched (that would tell it).

/// Well-known placeholder secrets from tutorials, templates and `.env.example` files. A secret that
/// is one of these repeated (and cut) to length, ignoring ASCII case, is refused.
const PLACEHOLDERS: &[&str] = &[
    "secret",
    "secretkey",
    "secret-key",
    "secret_key",
    "mysecret",
    "my-secret",
    "my_secret",
    "supersecret",
    "super-secret",
    "super_secret",
    "your-256-bit-secret",
    "your-512-bit-secret",
    "your-secret-key",
    "your_secret_key",
    "yoursecretkey",
    "your-secret",
    "jwt-secret",
    "jwt_secret",
    "jwtsecret",
    "changeme",
    "change-me",
    "change_me",
    "changeit",
    "changethis",
    "change-this",
    "replaceme",
    "replace-me",
    "password",
    "passw0rd",
    "p@ssw0rd",
    "default",
    "example",
    "placeholder",
    "insecure",
    "notasecret",
    "not-a-secret",
    "test",
    "testing",
    "lastmile",
    "qwerty",
    "letmein",
    "admin",
    "abc123",
    "1234567890",
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
];

/// A secret whose bytes repeat with a period this short or shorter is refused.
const SHORTEST_ALLOWED_PERIOD: usize = 17;

/// Why a signing secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakSecret {
    /// Fewer bytes than `auth.min_secret_length`.
    #[error(
        "the signing secret is {len} bytes, shorter than the minimum of {min}\nhint: use at least {min} random bytes, e.g. the output of `openssl rand -base64 48`"
    )]
    TooShort {
        /// Its length in bytes.
        len: usize,
        /// The profile's minimum.
        min: usize,
    },
    /// Every byte is the same.
    #[error(
        "the signing secret is one byte repeated\nhint: use random bytes, e.g. the output of `openssl rand -base64 48`"
    )]
    RepeatedByte,
    /// A well-known placeholder, repeated to length.
    #[error(
        "the signing secret is a well-known placeholder (repeated to length)\nhint: use random bytes, e.g. the output of `openssl rand -base64 48`"
    )]
    Placeholder,
    /// A short pattern repeated to length (`abcdabcd…`).
    #[error(
        "the signing secret repeats a {period}-byte pattern\nhint: use random bytes, e.g. the output of `openssl rand -base64 48`"
    )]
    ShortPattern {
        /// Length of the repeated pattern.
        period: usize,
    },
}

/// Check a signing secret against `min_len` (the profile's `auth.min_secret_length`, never below
/// [`crate::config::AuthSection::MIN_SECRET_LENGTH_FLOOR`]) and the weak-secret rules.
pub fn check_signing_secret(secret: &[u8], min_len: usize) -> Result<(), WeakSecret> {
    let min = min_len.max(crate::config::AuthSection::MIN_SECRET_LENGTH_FLOOR);
    if secret.len() < min {
        return Err(WeakSecret::TooShort {
            len: secret.len(),
            min,
        });
    }
    if secret.iter().all(|b| *b == secret[0]) {
        return Err(WeakSecret::RepeatedByte);
    }
    if PLACEHOLDERS
        .iter()
        .any(|p| is_repetition_of(secret, p.as_bytes()))
    {
        return Err(WeakSecret::Placeholder);
    }
    if let Some(period) = (2..=SHORTEST_ALLOWED_PERIOD)
        .filter(|p| *p < secret.len())
        .find(|p| is_repetition_of(secret, &secret[..*p]))
    {
        return Err(WeakSecret::ShortPattern { period });
    }
    Ok(())
}

/// Whether `secret` is `pattern` repeated and cut to length, ignoring ASCII case.
fn is_repetition_of(secret: &[u8], pattern: &[u8]) -> bool {
    !pattern.is_empty()
        && secret
            .iter()
            .enumerate()
            .all(|(i, b)| b.eq_ignore_ascii_case(&pattern[i % pattern.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQeRuVaYiOoE";

    #[test]
    fn accepts_random_secret() {
        assert_eq!(check_signing_secret(GOOD, 32), Ok(()));
    }

    #[test]
    fn refuses_short_secret_with_lengths() {
        let e = check_signing_secret(&GOOD[..31], 32).unwrap_err();
        assert_eq!(e, WeakSecret::TooShort { len: 31, min: 32 });
        assert!(e.to_string().contains("31 bytes"));
        assert!(matches!(
            check_signing_secret(GOOD, 64),
            Err(WeakSecret::TooShort { len: 42, min: 64 })
        ));
    }

    #[test]
    fn minimum_never_below_floor() {
        assert!(matches!(
            check_signing_secret(&GOOD[..20], 8),
            Err(WeakSecret::TooShort { min: 32, .. })
        ));
    }

    #[test]
    fn refuses_repeated_byte() {
        assert_eq!(
            check_signing_secret(&[b'a'; 64], 32),
            Err(WeakSecret::RepeatedByte)
        );
        assert_eq!(
            check_signing_secret(&[0u8; 32], 32),
            Err(WeakSecret::RepeatedByte)
        );
    }

    #[test]
    fn refuses_placeholders_repeated_to_length() {
        for p in [
            "secret",
            "changeme",
            "your-256-bit-secret",
            "ChangeMe",
            "SECRET",
        ] {
            let s: Vec<u8> = p.bytes().cycle().take(40).collect();
            assert_eq!(
                check_signing_secret(&s, 32),
                Err(WeakSecret::Placeholder),
                "{p}"
            );
        }
    }

    #[test]
    fn refuses_short_patterns() {
        let s: Vec<u8> = b"k3Y!".iter().copied().cycle().take(48).collect();
        assert_eq!(
            check_signing_secret(&s, 32),
            Err(WeakSecret::ShortPattern { period: 4 })
        );
    }

    #[test]
    fn messages_never_contain_the_secret() {
        let s: Vec<u8> = b"changeme".iter().copied().cycle().take(40).collect();
        let msg = check_signing_secret(&s, 32).unwrap_err().to_string();
        assert!(!msg.to_lowercase().contains("changeme"));
    }
}
