//! The vectors in `tests/data/jwt`, made by `make_vectors.py`, each get exactly the code
//! `vectors.json` names.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::identity::Verifier;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/jwt")
}

#[test]
fn every_vector_gets_its_code() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).unwrap())
            .unwrap();
    let now = manifest["now"].as_u64().unwrap();
    let secret = SecretString::from(manifest["secret"].as_str().unwrap().to_string());
    let verifier = Verifier::new(&crate::config::AuthSection::default(), &secret).unwrap();
    let vectors = manifest["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 27, "{} vectors", vectors.len());
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let expect = v["expect"].as_str().unwrap();
        let text = std::fs::read_to_string(dir().join(format!("{name}.jwt"))).unwrap();
        let got = match verifier.verify_at(text.trim().as_bytes(), now) {
            Ok(_) => "ok",
            Err(r) => r.code(),
        };
        assert_eq!(got, expect, "vector {name}");
    }
}

#[test]
fn expired_vector_names_its_time() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).unwrap())
            .unwrap();
    let secret = SecretString::from(manifest["secret"].as_str().unwrap().to_string());
    let verifier = Verifier::new(&crate::config::AuthSection::default(), &secret).unwrap();
    let text = std::fs::read_to_string(dir().join("expired.jwt")).unwrap();
    let r = verifier
        .verify_at(text.trim().as_bytes(), manifest["now"].as_u64().unwrap())
        .unwrap_err();
    assert_eq!(r.to_string(), "expired at 2027-01-15T07:00:00Z");
}
