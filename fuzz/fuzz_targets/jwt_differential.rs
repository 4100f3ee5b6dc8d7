//! The lean verifier and jsonwebtoken's validator (configured alike, plus lastmile's pinned
//! header, size limit and maximum lifetime) agree on every token: both refuse, or both accept with
//! equal claims.
//!
//! The first byte picks how the rest becomes a token: as raw token bytes, or as header and claims
//! JSON (split at the first 0xff byte) that are encoded and signed with the right secret, so the
//! fuzzer reaches the claim checks behind the signature.

#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

use lastmile::config::AuthSection;
use lastmile::identity::reference::{ReferenceVerifier, compare};
use lastmile::identity::{PINNED_HEADER_JSON, Verifier};

const SECRET: &str = "fuzz-secret:Zq8v2Lr0yXk4Wm1sT7hB9cN3dF6gJ5pQ";

fn signed(header: &[u8], claims: &[u8]) -> Vec<u8> {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}").into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 => rest.to_vec(),
        1 => signed(PINNED_HEADER_JSON.as_bytes(), rest),
        _ => match rest.iter().position(|b| *b == 0xff) {
            Some(at) => signed(&rest[..at], &rest[at + 1..]),
            None => signed(rest, b"{}"),
        },
    };
    let auth = AuthSection::default();
    let secret = secrecy::SecretString::from(SECRET.to_string());
    let lean = Verifier::new(&auth, &secret).expect("a strong secret");
    let reference = ReferenceVerifier::new(&auth, &secret).expect("a strong secret");
    if let Err(disagreement) = compare(&lean, &reference, &token) {
        panic!("{disagreement}");
    }
});
