//! Fixed-string tests of the redactor.

use super::forms::{PERCENT_RFC3986, lowercase_hex_escapes};
use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

const CANARY: &str = "sk-canary+/=~ x9Qz7";

/// Whole padded base64 encodings (standard and URL-safe), of every length residue, at any
/// position in a text, leave nothing of the encoding behind.
#[test]
fn whole_padded_base64_of_every_length_is_covered() {
    for len in 8..=14 {
        let value: String = "k7Qz9pLm2xWv8rTy4nB".chars().take(len).collect();
        let r = redactor(&[("K", &value)]);
        for encoded in [STANDARD.encode(&value), URL_SAFE.encode(&value)] {
            for (before, after) in [("", ""), ("Basic ", " end"), ("x:", "\n")] {
                let text = format!("{before}{encoded}{after}");
                let (clean, hits) = r.scrub(&text);
                assert!(hits >= 1, "{text}");
                assert_eq!(
                    clean,
                    format!("{before}[REDACTED:K]{after}"),
                    "len {len}: {text}"
                );
            }
        }
    }
}

fn redactor(pairs: &[(&str, &str)]) -> Redactor {
    Redactor::new(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), SecretString::from(*v))),
    )
    .unwrap()
}

#[test]
fn raw_value_replaced_and_counted() {
    let r = redactor(&[("MY_KEY", "hunter2-hunter2")]);
    let (out, hits) = r.scrub("a hunter2-hunter2 b hunter2-hunter2");
    assert_eq!(out, "a [REDACTED:MY_KEY] b [REDACTED:MY_KEY]");
    assert_eq!(hits, 2);
}

#[test]
fn clean_text_is_borrowed() {
    let r = redactor(&[("MY_KEY", "hunter2-hunter2")]);
    let (out, hits) = r.scrub("nothing to see");
    assert!(matches!(out, Cow::Borrowed(_)));
    assert_eq!(hits, 0);
    let (out, hits) = Redactor::empty().scrub("x");
    assert!(matches!(out, Cow::Borrowed(_)));
    assert_eq!(hits, 0);
}

#[test]
fn base64_forms() {
    let r = redactor(&[("K", CANARY)]);
    let encoded = [
        STANDARD.encode(CANARY),
        STANDARD_NO_PAD.encode(CANARY),
        URL_SAFE.encode(CANARY),
        URL_SAFE_NO_PAD.encode(CANARY),
    ];
    for e in encoded {
        let text = format!("value: {e} end");
        let (out, hits) = r.scrub(&text);
        assert_eq!(out, "value: [REDACTED:K] end", "{e}");
        assert_eq!(hits, 1);
    }
}

#[test]
fn base64_inside_a_longer_blob_at_every_alignment() {
    let r = redactor(&[("K", CANARY)]);
    for prefix in ["", "u:", "us:", "use:", "user:"] {
        for suffix in ["", "!", "!!", "!!!"] {
            let plain = format!("{prefix}{CANARY}{suffix}");
            for enc in [STANDARD.encode(&plain), URL_SAFE_NO_PAD.encode(&plain)] {
                let text = format!("Authorization: Basic {enc}");
                let (out, hits) = r.scrub(&text);
                assert!(hits >= 1, "{text}");
                assert!(out.contains("[REDACTED:K]"), "{out}");
                // What is left of the blob decodes to no more than 2 bytes of the value
                // on either side: check no 3-byte run of the canary survives.
                let left = out.replace("Authorization: Basic ", "");
                for piece in left.split("[REDACTED:K]") {
                    let padded = format!("{piece}{}", "=".repeat((4 - piece.len() % 4) % 4));
                    for engine in [&STANDARD, &URL_SAFE] {
                        if let Ok(bytes) = engine.decode(padded.as_bytes()) {
                            let s = String::from_utf8_lossy(&bytes);
                            for w in CANARY.as_bytes().windows(3) {
                                let w = String::from_utf8_lossy(w);
                                assert!(!s.contains(w.as_ref()), "{text} -> {out}");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn percent_forms() {
    let r = redactor(&[("K", CANARY)]);
    let upper = utf8_percent_encode(CANARY, NON_ALPHANUMERIC).to_string();
    let rfc = utf8_percent_encode(CANARY, PERCENT_RFC3986).to_string();
    let lower = lowercase_hex_escapes(&upper);
    let form = rfc.replace("%20", "+");
    for e in [upper, rfc, lower, form] {
        assert_ne!(e, CANARY);
        let text = format!("https://x/?token={e}&a=1");
        let (out, hits) = r.scrub(&text);
        assert_eq!(out, "https://x/?token=[REDACTED:K]&a=1", "{e}");
        assert_eq!(hits, 1);
    }
}

#[test]
fn json_escaped_form_in_a_log_line() {
    let value = "pa\"ss\\word-0001";
    let r = redactor(&[("K", value)]);
    let line = serde_json::json!({ "msg": format!("got {value}") }).to_string();
    let (out, hits) = r.scrub(&line);
    assert_eq!(hits, 1, "{line}");
    assert!(!out.contains("word-0001"), "{out}");
}

#[test]
fn several_secrets_longest_wins() {
    let r = redactor(&[("SHORT", "abcdefgh"), ("LONG", "abcdefgh-ijkl")]);
    let (out, hits) = r.scrub("x abcdefgh-ijkl y abcdefgh z");
    assert_eq!(out, "x [REDACTED:LONG] y [REDACTED:SHORT] z");
    assert_eq!(hits, 2);
}

#[test]
fn overlapping_secrets_leave_no_tail() {
    let r = redactor(&[("A", "abcdefgh"), ("B", "efghijkl")]);
    let (out, hits) = r.scrub("x abcdefghijkl y");
    assert_eq!(out, "x [REDACTED:A] y");
    assert_eq!(hits, 1);
    // A secret right after an encoded one, inside the widened region.
    let r = redactor(&[("K", CANARY), ("RAW", "Zq9-raw-secret")]);
    let text = format!(
        "{}Zq9-raw-secret!",
        STANDARD_NO_PAD.encode(format!("{CANARY}ab"))
    );
    let (out, _) = r.scrub(&text);
    assert!(!out.contains("raw-secret"), "{out}");
}

#[test]
fn randomised_text_never_keeps_a_value() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    const ALPHABET: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=-_ %:.\"";
    for _ in 0..40 {
        let values: Vec<String> = (0..3)
            .map(|_| {
                let len = 8 + next(24);
                (0..len)
                    .map(|_| ALPHABET[next(ALPHABET.len())] as char)
                    .collect()
            })
            .collect();
        let r = Redactor::new(
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("K{i}"), SecretString::from(v.as_str()))),
        )
        .unwrap();
        let mut text = String::new();
        for _ in 0..6 {
            for _ in 0..next(6) {
                text.push(ALPHABET[next(ALPHABET.len())] as char);
            }
            let v = &values[next(values.len())];
            match next(3) {
                0 => text.push_str(v),
                1 => text.push_str(&STANDARD.encode(v)),
                _ => text.push_str(&URL_SAFE_NO_PAD.encode(v)),
            }
        }
        let (out, hits) = r.scrub(&text);
        assert!(hits >= 1, "{text}");
        for v in &values {
            for form in [v.clone(), STANDARD.encode(v), URL_SAFE_NO_PAD.encode(v)] {
                assert!(!out.contains(&form), "{text} -> {out}");
            }
        }
    }
}

#[test]
fn unicode_around_and_inside() {
    let r = redactor(&[("K", "clé-secrète-ü")]);
    let (out, hits) = r.scrub("→clé-secrète-ü←");
    assert_eq!(out, "→[REDACTED:K]←");
    assert_eq!(hits, 1);
}

#[test]
fn short_value_raw_only() {
    let r = redactor(&[("K", "abc")]);
    assert_eq!(r.pattern_count(), 1);
    assert_eq!(r.scrub("xabcx").0, "x[REDACTED:K]x");
}

#[test]
fn json_in_place_with_keys() {
    let r = redactor(&[("K", "hunter2-hunter2")]);
    let mut v = serde_json::json!({
        "content": [{ "type": "text", "text": "key=hunter2-hunter2" }],
        "structuredContent": { "hunter2-hunter2": ["hunter2-hunter2", 1, null] },
        "isError": false
    });
    let hits = r.scrub_json(&mut v);
    assert_eq!(hits, 3);
    let text = v.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(v["content"][0]["text"], "key=[REDACTED:K]");
    assert_eq!(v["structuredContent"]["[REDACTED:K]"][0], "[REDACTED:K]");
}

#[test]
fn with_added_and_shared() {
    let shared = SharedRedactor::default();
    assert_eq!(shared.scrub("first-secret-1").1, 0);
    shared
        .add([("A".to_string(), SecretString::from("first-secret-1"))])
        .unwrap();
    shared
        .add([("B".to_string(), SecretString::from("second-secret-2"))])
        .unwrap();
    let (out, hits) = shared.scrub("first-secret-1 second-secret-2");
    assert_eq!(out, "[REDACTED:A] [REDACTED:B]");
    assert_eq!(hits, 2);
    // Same name again: the new value replaces the old.
    shared
        .add([("A".to_string(), SecretString::from("rotated-secret-3"))])
        .unwrap();
    let names: Vec<String> = shared.current().names().map(String::from).collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(shared.scrub("rotated-secret-3").1, 1);
}

#[test]
fn line_scrubber() {
    let r: Arc<dyn LineScrubber> = Arc::new(redactor(&[("K", "hunter2-hunter2")]));
    assert_eq!(r.scrub("x hunter2-hunter2"), "x [REDACTED:K]");
}

#[test]
fn debug_prints_names_only() {
    let r = redactor(&[("K", "hunter2-hunter2")]);
    let text = format!(
        "{r:?} {:?}",
        SharedRedactor::new(redactor(&[("K", "hunter2-hunter2")]))
    );
    assert!(text.contains("\"K\""), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let _ = r;
}

#[test]
fn scrub_prefix_keeps_a_straddling_secret_whole_and_drops_the_context() {
    let r = redactor(&[("K", "hunter2-hunter2")]);
    let text = b"abc hunter2-hunter2 tail hunter2";
    let (out, hits) = r.scrub_prefix(text, 8);
    assert_eq!(&*out, b"abc [REDACTED:K]");
    assert_eq!(hits, 1);
    let (out, hits) = r.scrub_prefix(text, 26);
    assert_eq!(&*out, b"abc [REDACTED:K] tail h");
    assert_eq!(hits, 1);
    let (out, hits) = r.scrub_prefix(text, 3);
    assert!(matches!(out, Cow::Borrowed(b"abc")));
    assert_eq!(hits, 0);
}

/// A multi-line value is also found line by line (output cut into lines before anyone saw it
/// whole), but its short lines and PEM armour are structure, left alone.
#[test]
fn each_long_line_of_a_multi_line_value_is_found_alone() {
    let body1 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
    let body2 = "bXVsdGktbGluZS1zZWNyZXQtYm9keS10d28";
    let value =
        format!("-----BEGIN TEST KEY-----\r\n{body1}\r\n{body2}\r\nshort\n-----END TEST KEY-----");
    let r = redactor(&[("PEM", &value)]);
    assert_eq!(r.scrub(&value).0, "[REDACTED:PEM]");
    for line in [body1, body2] {
        assert_eq!(r.scrub(&format!("> {line} <")).0, "> [REDACTED:PEM] <");
        assert_eq!(r.scrub(&STANDARD.encode(line)).0, "[REDACTED:PEM]");
    }
    for structure in ["-----BEGIN TEST KEY-----", "short"] {
        assert_eq!(r.scrub(structure).0, structure);
    }
}

/// A stream cut after a secret's head learns where the replaced secret ends, so its tail is
/// never written on its own.
#[test]
fn scrub_prefix_reach_goes_past_the_cut_to_the_end_of_a_straddling_secret() {
    let r = redactor(&[("K", CANARY)]);
    let text = format!("head {CANARY} tail");
    let cut = "head ".len() + 3;
    let (clean, hits, reach) = r.scrub_prefix_reach(text.as_bytes(), cut);
    assert_eq!((&*clean, hits), (&b"head [REDACTED:K]"[..], 1));
    assert_eq!(reach, "head ".len() + CANARY.len());
    let (clean, hits, reach) = r.scrub_prefix_reach(text.as_bytes(), 4);
    assert_eq!((&*clean, hits, reach), (&b"head"[..], 0, 4));
}
