//! Small helpers shared by several modules.

use sha2::{Digest, Sha256};

/// The first `n` hex digits of SHA-256 over `parts` joined by NUL: a short, stable hash.
pub fn short_hash(parts: &[&str], n: usize) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut out = String::with_capacity(n);
    for b in digest.iter() {
        if out.len() >= n {
            break;
        }
        out.push_str(&format!("{b:02x}"));
    }
    out.truncate(n);
    out
}
