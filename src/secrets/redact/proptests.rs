//! Property tests: a secret in any covered encoding — at any offset, wrapped at any width,
//! escaped character by character, nested in JSON strings, amid random text — leaves no form of
//! itself in the output, and valid JSON stays valid JSON.
//!
//! The check decodes the output independently of the engine: it unescapes the whole output (up
//! to three times), drops every line break, and looks for every literal form of the secret in
//! each of those views.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use secrecy::SecretString;

use super::engine::decode;
use super::forms::{PERCENT_JS, PERCENT_PATH, PERCENT_RFC3986, forms, lowercase_hex_escapes};
use super::*;

const SECRET_CHARS: &[char] = &[
    'a', 'b', 'k', 'q', 'z', 'A', 'Q', 'Z', '0', '1', '7', '9', '-', '_', '+', '/', '=', '.', '~',
    ' ', '"', '\\', ':', '@', '!', '\'', '(', '*', '%', '&', '<', '>', 'é', 'ü', '→', '😀',
];
const TEXT_CHARS: &[char] = &[
    'a', 'e', 'x', 'Y', '3', ' ', ' ', '\n', '\r', '"', '\\', '/', ':', ',', '{', '}', '[', ']',
    '=', '+', '-', '_', '%', 'ß', '😀',
];

fn secret() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(SECRET_CHARS), 8..28)
        .prop_map(|v| v.into_iter().collect())
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TEXT_CHARS), 0..max)
        .prop_map(|v| v.into_iter().collect())
}

/// How the secret is written into the text.
#[derive(Debug, Clone)]
enum Encoding {
    Raw,
    /// base64 of `before + secret + after`, this alphabet, padded or not, then wrapped every
    /// `width` characters (the first line `offset` shorter) with this break.
    Base64 {
        url_safe: bool,
        pad: bool,
        before: Vec<u8>,
        after: Vec<u8>,
        width: usize,
        offset: usize,
        crlf: bool,
    },
    Percent {
        set: u8,
        lower: bool,
        plus: bool,
    },
    Hex {
        upper: bool,
    },
}

fn encoding() -> impl Strategy<Value = Encoding> {
    prop_oneof![
        Just(Encoding::Raw),
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..4),
            prop::collection::vec(any::<u8>(), 0..4),
            prop_oneof![Just(usize::MAX), 1usize..90],
            0usize..90,
            any::<bool>(),
        )
            .prop_map(|(url_safe, pad, before, after, width, offset, crlf)| {
                Encoding::Base64 {
                    url_safe,
                    pad,
                    before,
                    after,
                    width,
                    offset,
                    crlf,
                }
            }),
        (0u8..4, any::<bool>(), any::<bool>()).prop_map(|(set, lower, plus)| Encoding::Percent {
            set,
            lower,
            plus
        }),
        any::<bool>().prop_map(|upper| Encoding::Hex { upper }),
    ]
}

fn encode(secret: &str, e: &Encoding) -> String {
    match e {
        Encoding::Raw => secret.to_string(),
        Encoding::Base64 {
            url_safe,
            pad,
            before,
            after,
            width,
            offset,
            crlf,
        } => {
            let mut blob = before.clone();
            blob.extend_from_slice(secret.as_bytes());
            blob.extend_from_slice(after);
            let engine = match (url_safe, pad) {
                (false, true) => &STANDARD,
                (false, false) => &STANDARD_NO_PAD,
                (true, true) => &URL_SAFE,
                (true, false) => &URL_SAFE_NO_PAD,
            };
            let flat = engine.encode(&blob);
            let brk = if *crlf { "\r\n" } else { "\n" };
            let mut out = String::new();
            let mut line_left = if *width == usize::MAX {
                usize::MAX
            } else {
                (width - offset % width).max(1)
            };
            for c in flat.chars() {
                if line_left == 0 {
                    out.push_str(brk);
                    line_left = *width;
                }
                out.push(c);
                line_left -= 1;
            }
            out
        }
        Encoding::Percent { set, lower, plus } => {
            let set = [PERCENT_RFC3986, PERCENT_PATH, PERCENT_JS, NON_ALPHANUMERIC][*set as usize];
            let mut s = utf8_percent_encode(secret, set).to_string();
            if *lower {
                s = lowercase_hex_escapes(&s);
            }
            if *plus {
                s = s.replace("%20", "+");
            }
            s
        }
        Encoding::Hex { upper } => {
            let s: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
            if *upper { s.to_ascii_uppercase() } else { s }
        }
    }
}

/// A JSON string token for `s`, each character escaped as `choices` says (cycled): 0 plain
/// where JSON allows it, 1 `\u` lowercase, 2 `\u` uppercase, 3 the short escape where one
/// exists (`\/` for a slash).
fn json_string(s: &str, choices: &[u8]) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        let choice = choices.get(i % choices.len().max(1)).copied().unwrap_or(0);
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '/' => Some("\\/"),
            _ => None,
        };
        let must = matches!(c, '"' | '\\') || (c as u32) < 0x20;
        match (choice, short) {
            (3, Some(e)) => out.push_str(e),
            (0, _) if !must => out.push(c),
            (0, Some(e)) => out.push_str(e),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    if choice == 2 {
                        out.push_str(&format!("\\u{u:04X}"));
                    } else {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
            }
        }
    }
    out.push('"');
    out
}

/// Every view of `out` the check looks in: as is and unescaped up to three times, each with
/// and without line breaks.
fn views(out: &[u8]) -> Vec<Vec<u8>> {
    let mut views = vec![out.to_vec()];
    let mut cur = out.to_vec();
    for _ in 0..3 {
        cur = decode(&cur).bytes;
        views.push(cur.clone());
    }
    let joined: Vec<Vec<u8>> = views
        .iter()
        .map(|v| {
            v.iter()
                .copied()
                .filter(|&b| b != b'\n' && b != b'\r')
                .collect()
        })
        .collect();
    // The escaped line breaks, dropped before unescaping.
    let mut escaped_breaks = out.to_vec();
    for _ in 0..3 {
        let text = String::from_utf8_lossy(&escaped_breaks)
            .replace("\\r", "")
            .replace("\\n", "");
        escaped_breaks = text.into_bytes();
        views.push(escaped_breaks.clone());
    }
    views.extend(joined);
    views
}

/// The first literal form of `secret` found in any decoded view of `out`, if any.
pub(crate) fn leaked_form(secret: &str, out: &[u8]) -> Option<String> {
    let forms = forms(secret);
    for view in views(out) {
        for (form, _) in &forms {
            if view.windows(form.len()).any(|w| w == form.as_slice()) {
                return Some(String::from_utf8_lossy(form).into_owned());
            }
        }
    }
    None
}

fn assert_no_form(secret: &str, out: &[u8]) -> Result<(), TestCaseError> {
    let leaked = leaked_form(secret, out);
    prop_assert!(
        leaked.is_none(),
        "a form of the secret survived: {:?} in {:?}",
        leaked,
        String::from_utf8_lossy(out)
    );
    Ok(())
}

/// The secret plus `decoys` other secrets: with few patterns the SIMD screen runs, with more
/// (over 64) the gram screen.
fn redactor(secret: &str, decoys: usize) -> Redactor {
    let decoys = (0..decoys).map(|i| {
        (
            format!("DECOY_{i}"),
            SecretString::from(format!("decoy/value+{i} \"x\"-00{i}")),
        )
    });
    Redactor::new(std::iter::once(("K".to_string(), SecretString::from(secret))).chain(decoys))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Plain text around an encoded secret.
    #[test]
    fn no_form_survives_in_text(
        secret in secret(),
        enc in encoding(),
        before in text(40),
        after in text(40),
        decoys in 0usize..6,
    ) {
        let r = redactor(&secret, decoys);
        let input = format!("{before}{}{after}", encode(&secret, &enc));
        // The check sees the secret before scrubbing (so its silence after means something).
        prop_assert!(assert_no_form(&secret, input.as_bytes()).is_err());
        let (out, hits) = r.scrub_bytes(input.as_bytes());
        prop_assert!(hits >= 1);
        assert_no_form(&secret, &out)?;
        prop_assert!(std::str::from_utf8(&out).is_ok());
    }

    /// A JSON-RPC result whose text holds an encoded secret, each character escaped its own
    /// way, nested 0 to 2 times as a JSON string inside another JSON document.
    #[test]
    fn no_form_survives_in_json_and_json_stays_valid(
        secret in secret(),
        enc in encoding(),
        before in text(30),
        after in text(30),
        choices in prop::collection::vec(0u8..4, 1..12),
        outer_choices in prop::collection::vec(0u8..4, 1..6),
        nest in 0usize..3,
        decoys in 0usize..6,
    ) {
        let r = redactor(&secret, decoys);
        let plain = format!("{before}{}{after}", encode(&secret, &enc));
        let mut line = format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[{{"type":"text","text":{}}}],"isError":false}}}}"#,
            json_string(&plain, &choices)
        );
        for _ in 0..nest {
            line = format!(r#"{{"level":"INFO","fields":{{"message":{}}}}}"#, json_string(&line, &outer_choices));
        }
        prop_assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "{}", line);
        prop_assert!(assert_no_form(&secret, line.as_bytes()).is_err(), "{}", line);
        let (out, hits) = r.scrub_bytes(line.as_bytes());
        prop_assert!(hits >= 1, "{}", line);
        let text = std::str::from_utf8(&out);
        prop_assert!(text.is_ok());
        prop_assert!(
            serde_json::from_slice::<serde_json::Value>(&out).is_ok(),
            "invalid JSON out: {} <- {}", String::from_utf8_lossy(&out), line
        );
        assert_no_form(&secret, &out)?;
    }

    /// Text without the secret comes back borrowed and unchanged, escaped or not.
    #[test]
    fn clean_input_is_untouched(
        secret in secret(),
        plain in text(120),
        choices in prop::collection::vec(0u8..4, 1..8),
    ) {
        let r = redactor(&secret, 4);
        for input in [plain.clone(), json_string(&plain, &choices)] {
            let (out, hits) = r.scrub_bytes(input.as_bytes());
            prop_assert_eq!(hits, 0);
            prop_assert!(matches!(out, Cow::Borrowed(_)));
        }
    }

    /// A secret written as a JSON number, or split across two strings by JSON structure, still
    /// leaves valid JSON.
    #[test]
    fn numeric_and_split_secrets_keep_json_valid(
        digits in "[1-9][0-9]{9,17}",
    ) {
        let r = redactor(&digits, 1);
        let line = format!(r#"{{"a":{digits},"b":[{digits}.5,"x{digits}y"]}}"#);
        let (out, hits) = r.scrub_bytes(line.as_bytes());
        prop_assert!(hits >= 3);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        prop_assert!(!v.to_string().contains(&digits));
        let split = format!("ab\",\"{digits}");
        let r = redactor(&split, 1);
        let line = format!(r#"["x{split}y"]"#);
        let (out, hits) = r.scrub_bytes(line.as_bytes());
        prop_assert!(hits >= 1);
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok(), "{}", String::from_utf8_lossy(&out));
    }
}
