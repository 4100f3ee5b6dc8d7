//! The literal patterns one secret value is searched for: its raw bytes and each encoding that
//! has one exact spelling (JSON's own escaping, percent-encodings, hex, base64). Encodings with
//! many spellings (per-character `\uXXXX` escapes, base64 wrapped at any width) are not listed
//! here: the engine decodes those spans and looks for these same patterns in the result.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use zeroize::Zeroizing;

use super::super::MIN_VALUE_LEN;

/// RFC 3986 unreserved characters stay, everything else is encoded (JavaScript's
/// `encodeURIComponent` minus `!'()*`, Go's `url.QueryEscape` apart from the space).
pub(super) const PERCENT_RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Python's `urllib.parse.quote` default: unreserved characters and `/` stay.
pub(super) const PERCENT_PATH: &AsciiSet = &PERCENT_RFC3986.remove(b'/');

/// JavaScript's `encodeURIComponent`: also keeps `!'()*`.
pub(super) const PERCENT_JS: &AsciiSet = &PERCENT_RFC3986
    .remove(b'!')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*');

/// How a match of a pattern is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Form {
    /// Replaced exactly as matched.
    Plain,
    /// A base64 middle: widen over neighbouring characters of this alphabet.
    Base64 { url_safe: bool },
}

/// Every literal form of `value` to look for, with how a match of it is replaced.
pub(super) fn forms(value: &str) -> Vec<(Zeroizing<Vec<u8>>, Form)> {
    let mut out: Vec<(Zeroizing<Vec<u8>>, Form)> = Vec::new();
    let mut push = |bytes: Vec<u8>, form: Form| {
        let bytes = Zeroizing::new(bytes);
        if !bytes.is_empty() && !out.iter().any(|(b, _)| **b == *bytes) {
            out.push((bytes, form));
        }
    };
    push(value.as_bytes().to_vec(), Form::Plain);
    if value.len() < MIN_VALUE_LEN {
        return out;
    }
    // JSON string escaping as serde_json writes it (without the quotes). Other spellings
    // (`\u0041`, `\/`) are found by decoding.
    if let Ok(json) = serde_json::to_string(value) {
        let json = Zeroizing::new(json);
        if json.len() >= 2 {
            push(json.as_bytes()[1..json.len() - 1].to_vec(), Form::Plain);
        }
    }
    // Percent-encoding: four safe sets, either hex case, `%20` or `+` for a space.
    for set in [PERCENT_RFC3986, PERCENT_PATH, PERCENT_JS, NON_ALPHANUMERIC] {
        let upper = Zeroizing::new(utf8_percent_encode(value, set).to_string());
        let lower = Zeroizing::new(lowercase_hex_escapes(&upper));
        if value.contains(' ') {
            push(upper.replace("%20", "+").into_bytes(), Form::Plain);
            push(lower.replace("%20", "+").into_bytes(), Form::Plain);
        }
        push(upper.as_bytes().to_vec(), Form::Plain);
        push(lower.as_bytes().to_vec(), Form::Plain);
    }
    // Hex of the UTF-8 bytes, either case.
    let raw = value.as_bytes();
    let hex = Zeroizing::new(hex_lower(raw));
    push(hex.as_bytes().to_vec(), Form::Plain);
    push(hex.to_ascii_uppercase().into_bytes(), Form::Plain);
    // base64: the full padded encodings, and for each alignment the middle that does not
    // depend on neighbouring bytes.
    push(STANDARD.encode(raw).into_bytes(), Form::Plain);
    push(URL_SAFE.encode(raw).into_bytes(), Form::Plain);
    for skip in 0..3usize {
        let rest = &raw[skip.min(raw.len())..];
        let whole = rest.len() / 3 * 3;
        if whole < 6 {
            continue;
        }
        let chunk = &rest[..whole];
        push(
            STANDARD_NO_PAD.encode(chunk).into_bytes(),
            Form::Base64 { url_safe: false },
        );
        push(
            URL_SAFE_NO_PAD.encode(chunk).into_bytes(),
            Form::Base64 { url_safe: true },
        );
    }
    // A multi-line value (a PEM key, a pretty-printed JSON credential) is also found line by
    // line, in output that was cut into lines before anyone saw it whole. Short lines and PEM
    // armour are left out: they are structure, not secret.
    if value.contains('\n') {
        for segment in value.split('\n').map(str::trim) {
            if segment.len() >= MIN_SEGMENT_LEN && !segment.starts_with("-----") {
                for (bytes, form) in forms(segment) {
                    push(bytes.to_vec(), form);
                }
            }
        }
    }
    out
}

/// The shortest line of a multi-line value that is redacted on its own.
const MIN_SEGMENT_LEN: usize = 20;

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `%2F` → `%2f` (the escapes only; the rest of the text is left alone).
pub(super) fn lowercase_hex_escapes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            for _ in 0..2 {
                if let Some(h) = chars.next() {
                    out.push(h.to_ascii_lowercase());
                }
            }
        }
    }
    out
}
