//! Fresh random secrets from the operating system's generator, base64url-encoded (no padding).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::SecretsError;

/// Bytes of randomness in a generated signing secret.
pub const SIGNING_SECRET_BYTES: usize = 64;

/// `bytes` random bytes from the OS generator, base64url-encoded without padding
/// (64 bytes → 86 characters). Intermediate buffers are zeroed.
pub fn random_secret(bytes: usize) -> Result<SecretString, SecretsError> {
    let mut raw = Zeroizing::new(vec![0u8; bytes]);
    getrandom::fill(raw.as_mut_slice()).map_err(|e| SecretsError::NoRandomness {
        detail: e.to_string(),
    })?;
    let encoded = Zeroizing::new(URL_SAFE_NO_PAD.encode(raw.as_slice()));
    Ok(SecretString::from(encoded.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn length_and_alphabet() {
        let a = random_secret(SIGNING_SECRET_BYTES).unwrap();
        let b = random_secret(SIGNING_SECRET_BYTES).unwrap();
        assert_eq!(a.expose_secret().len(), 86);
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(
            a.expose_secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
