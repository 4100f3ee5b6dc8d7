//! The redactor: every secret value handed to any child, compiled into one aho-corasick
//! automaton that replaces each occurrence with `[REDACTED:NAME]` and counts the hits.
//!
//! Besides the raw value it catches the forms a tool is likely to echo it in:
//!
//! - **base64**, standard and URL-safe alphabets, padded or not, and also when the value sits
//!   inside a longer encoded blob (`Basic base64(user:secret)`): for each of the three byte
//!   alignments the stable middle of the encoding is a pattern, and a match is widened over
//!   the (at most 3) neighbouring alphabet characters and `=` padding that still carry bits of
//!   the value. A few characters of a neighbouring encoded byte may be redacted with it;
//! - **percent-encoding**, upper- and lowercase hex, keeping RFC 3986 unreserved characters or
//!   encoding every non-alphanumeric one, and `+` for space (form encoding);
//! - **JSON string escaping**, for a value with quotes, backslashes or control characters seen
//!   inside a serialised JSON line.
//!
//! Values shorter than [`MIN_VALUE_LEN`] are refused by the store, because redacting them would
//! shred ordinary text and not redacting them would leak them. Should one reach the redactor
//! anyway (set by another tool), its raw form is still redacted (over-redaction is the safe
//! failure) but its encoded forms are not, since those would be only a few characters long.
//!
//! The automaton itself holds the patterns in memory (not zeroised); the `(name, value)` pairs it
//! was built from are kept as [`SecretString`]s so that it can be rebuilt with a new child's
//! secrets ([`Redactor::with_added`]) and swapped in atomically ([`SharedRedactor`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, Input, MatchKind};
use arc_swap::ArcSwap;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{MIN_VALUE_LEN, SecretsError};
use crate::telemetry::LineScrubber;

/// Patterns per SIMD screen (Teddy's limit).
const SCREEN_GROUP: usize = 64;

/// RFC 3986 unreserved characters stay, everything else is encoded.
const PERCENT_RFC3986: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Replaced exactly as matched.
    Plain,
    /// A base64 middle: widen over neighbouring characters of this alphabet.
    Base64 { url_safe: bool },
}

#[derive(Debug, Clone, Copy)]
struct PatternInfo {
    secret: usize,
    form: Form,
}

/// Scrubs secret values (and their encoded forms) out of text and JSON.
///
/// ```
/// use lastmile::secrets::Redactor;
/// use secrecy::SecretString;
///
/// let r = Redactor::new([("MY_KEY".to_string(), SecretString::from("hunter2-hunter2"))]).unwrap();
/// let (clean, hits) = r.scrub("the key is hunter2-hunter2");
/// assert_eq!(clean, "the key is [REDACTED:MY_KEY]");
/// assert_eq!(hits, 1);
/// ```
pub struct Redactor {
    secrets: Vec<(String, SecretString)>,
    labels: Vec<String>,
    patterns: Vec<PatternInfo>,
    /// Length of the longest pattern, in bytes.
    longest: usize,
    automaton: Option<AhoCorasick>,
    /// SIMD (Teddy) searchers over groups of at most 64 patterns, which say quickly whether and
    /// where the first match is; the automaton then works from there. Empty when the CPU has no
    /// SIMD support for them (the automaton alone is correct, only slower).
    screens: Vec<aho_corasick::packed::Searcher>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "names",
                &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("patterns", &self.patterns.len())
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::empty()
    }
}

impl Redactor {
    /// A redactor that knows no secret (changes nothing).
    pub fn empty() -> Self {
        Redactor {
            secrets: Vec::new(),
            labels: Vec::new(),
            patterns: Vec::new(),
            longest: 0,
            automaton: None,
            screens: Vec::new(),
        }
    }

    /// Build from `(name, value)` pairs. A later pair with an earlier pair's name replaces it;
    /// empty values are ignored (there is nothing to find).
    pub fn new(
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<Self, SecretsError> {
        let mut secrets: Vec<(String, SecretString)> = Vec::new();
        for (name, value) in pairs {
            if value.expose_secret().is_empty() {
                continue;
            }
            match secrets.iter_mut().find(|(n, _)| *n == name) {
                Some(slot) => slot.1 = value,
                None => secrets.push((name, value)),
            }
        }
        Self::build(secrets)
    }

    /// A new redactor with this one's secrets plus `pairs` (same name: the new value wins).
    /// Rebuilding costs well under a millisecond per secret; swap the result in with
    /// [`SharedRedactor::replace`].
    pub fn with_added(
        &self,
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<Self, SecretsError> {
        Self::new(self.secrets.iter().cloned().chain(pairs))
    }

    /// Build from `(name, value)` pairs keeping every distinct value, several under one name
    /// too (a rotated secret whose old value a running child may still hold).
    pub fn new_keeping_all(
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<Self, SecretsError> {
        let mut secrets: Vec<(String, SecretString)> = Vec::new();
        for (name, value) in pairs {
            let dup = secrets
                .iter()
                .any(|(n, v)| *n == name && v.expose_secret() == value.expose_secret());
            if !value.expose_secret().is_empty() && !dup {
                secrets.push((name, value));
            }
        }
        Self::build(secrets)
    }

    fn build(secrets: Vec<(String, SecretString)>) -> Result<Self, SecretsError> {
        let labels = secrets
            .iter()
            .map(|(name, _)| format!("[REDACTED:{name}]"))
            .collect();
        let mut texts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut patterns: Vec<PatternInfo> = Vec::new();
        for (i, (_, value)) in secrets.iter().enumerate() {
            for (bytes, form) in forms(value.expose_secret()) {
                if texts.iter().any(|t| **t == *bytes) {
                    continue;
                }
                texts.push(bytes);
                patterns.push(PatternInfo { secret: i, form });
            }
        }
        let automaton = if texts.is_empty() {
            None
        } else {
            let build = |kind| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .kind(kind)
                    .build(texts.iter().map(|t| t.as_slice()))
            };
            let ac = build(Some(AhoCorasickKind::DFA))
                .or_else(|_| build(None))
                .map_err(|e| SecretsError::Redactor {
                    detail: e.to_string(),
                })?;
            Some(ac)
        };
        let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let screens: Option<Vec<_>> = texts
            .chunks(SCREEN_GROUP)
            .map(|group| {
                aho_corasick::packed::Config::new()
                    .match_kind(aho_corasick::packed::MatchKind::LeftmostLongest)
                    .builder()
                    .extend(group.iter().map(|t| t.as_slice()))
                    .build()
            })
            .collect();
        let screens = screens.unwrap_or_default();
        Ok(Redactor {
            secrets,
            labels,
            patterns,
            longest,
            automaton,
            screens,
        })
    }

    /// Whether no secret is loaded.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The names of the loaded secrets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(|(n, _)| n.as_str())
    }

    /// Number of patterns in the automaton (raw and encoded forms, deduplicated).
    pub fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    /// `text` with every secret replaced by `[REDACTED:NAME]`, and the number of replacements.
    /// Borrows when nothing matched.
    pub fn scrub<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        let Some(ac) = &self.automaton else {
            return (Cow::Borrowed(text), 0);
        };
        // The SIMD screens find where the next match starts (or that there is none, the
        // common case) much faster than the automaton scans; the automaton then only confirms
        // the match there. Each screen's next position is cached, so each scans the text once.
        let screened = !self.screens.is_empty();
        let mut next: Vec<Option<usize>> = self
            .screens
            .iter()
            .map(|s| s.find(text).map(|m| m.start()))
            .collect();
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0usize; // bytes of `text` already handled
        let mut hits = 0usize;
        loop {
            let from = if screened {
                for (screen, pos) in self.screens.iter().zip(next.iter_mut()) {
                    if pos.is_some_and(|p| p < copied) {
                        *pos = screen
                            .find_in(text, aho_corasick::Span::from(copied..text.len()))
                            .map(|m| m.start());
                    }
                }
                match next.iter().flatten().min() {
                    Some(p) => *p,
                    None => break,
                }
            } else {
                copied
            };
            let Some(m) = ac.find(Input::new(text).span(from..text.len())) else {
                break;
            };
            let info = self.patterns[m.pattern().as_usize()];
            let (start, mut end) = self.region(bytes, m, copied);
            // A match that begins inside this region but ends after it (two secrets that
            // overlap, or a secret right after an encoded one) extends the region, so no tail
            // of a secret is left in the clear. Such a match starts before `end`, so it ends
            // before `end + longest`: the probe never scans further than that.
            let mut probe = m.start() + 1;
            while probe < end {
                let limit = (end + self.longest).min(text.len());
                match ac.find(Input::new(text).span(probe..limit)) {
                    Some(m2) if m2.start() < end => {
                        end = end.max(self.region(bytes, m2, copied).1);
                        probe = m2.start() + 1;
                    }
                    _ => break,
                }
            }
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            // `start` and `end` are on char boundaries: a match of a UTF-8 pattern in UTF-8
            // text is whole characters, and widening only steps over ASCII bytes.
            buf.push_str(&text[copied..start]);
            buf.push_str(&self.labels[info.secret]);
            copied = end;
            hits += 1;
        }
        match out {
            None => (Cow::Borrowed(text), 0),
            Some(mut buf) => {
                buf.push_str(&text[copied..]);
                (Cow::Owned(buf), hits)
            }
        }
    }

    /// The bytes a match replaces: the match, widened for a base64 middle (never below `floor`).
    fn region(&self, bytes: &[u8], m: aho_corasick::Match, floor: usize) -> (usize, usize) {
        match self.patterns[m.pattern().as_usize()].form {
            Form::Plain => (m.start(), m.end()),
            Form::Base64 { url_safe } => widen(bytes, m.start(), m.end(), floor, url_safe),
        }
    }

    /// Scrub every string in `value` in place (object keys too); returns the number of
    /// replacements.
    pub fn scrub_json(&self, value: &mut serde_json::Value) -> usize {
        if self.automaton.is_none() {
            return 0;
        }
        match value {
            serde_json::Value::String(s) => {
                let (clean, hits) = self.scrub(s);
                if let Cow::Owned(clean) = clean {
                    *s = clean;
                }
                hits
            }
            serde_json::Value::Array(items) => items.iter_mut().map(|v| self.scrub_json(v)).sum(),
            serde_json::Value::Object(map) => {
                let mut hits = 0;
                let mut renames = Vec::new();
                for (key, v) in map.iter_mut() {
                    hits += self.scrub_json(v);
                    let (clean, n) = self.scrub(key);
                    if n > 0 {
                        hits += n;
                        renames.push((key.clone(), clean.into_owned()));
                    }
                }
                for (old, new) in renames {
                    if let Some(v) = map.remove(&old) {
                        map.insert(new, v);
                    }
                }
                hits
            }
            _ => 0,
        }
    }
}

impl LineScrubber for Redactor {
    fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        Redactor::scrub(self, text).0
    }
}

/// Widen a base64 match over the neighbouring characters that still carry bits of the value:
/// up to 3 alphabet characters before (never into already-handled text) and up to 3 after,
/// then `=` padding.
fn widen(bytes: &[u8], start: usize, end: usize, floor: usize, url_safe: bool) -> (usize, usize) {
    let is_alpha = |b: u8| {
        b.is_ascii_alphanumeric()
            || if url_safe {
                b == b'-' || b == b'_'
            } else {
                b == b'+' || b == b'/'
            }
    };
    let mut s = start;
    while s > floor && start - s < 3 && is_alpha(bytes[s - 1]) {
        s -= 1;
    }
    let mut e = end;
    while e < bytes.len() && e - end < 3 && is_alpha(bytes[e]) {
        e += 1;
    }
    let pad_from = e;
    while e < bytes.len() && e - pad_from < 2 && bytes[e] == b'=' {
        e += 1;
    }
    (s, e)
}

/// Every form of `value` to look for, with how a match of it is replaced.
fn forms(value: &str) -> Vec<(Zeroizing<Vec<u8>>, Form)> {
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
    // JSON string escaping (without the quotes).
    if let Ok(json) = serde_json::to_string(value) {
        let json = Zeroizing::new(json);
        if json.len() >= 2 {
            push(json.as_bytes()[1..json.len() - 1].to_vec(), Form::Plain);
        }
    }
    // Percent-encoding.
    for set in [PERCENT_RFC3986, NON_ALPHANUMERIC] {
        let upper = Zeroizing::new(utf8_percent_encode(value, set).to_string());
        let lower = Zeroizing::new(lowercase_hex_escapes(&upper));
        if value.contains(' ') {
            push(upper.replace("%20", "+").into_bytes(), Form::Plain);
            push(lower.replace("%20", "+").into_bytes(), Form::Plain);
        }
        push(upper.as_bytes().to_vec(), Form::Plain);
        push(lower.as_bytes().to_vec(), Form::Plain);
    }
    // base64: the full padded encodings, and for each alignment the middle that does not
    // depend on neighbouring bytes.
    let raw = value.as_bytes();
    push(STANDARD.encode(raw).into_bytes(), Form::Plain);
    push(
        base64::engine::general_purpose::URL_SAFE
            .encode(raw)
            .into_bytes(),
        Form::Plain,
    );
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
    out
}

/// `%2F` → `%2f` (the escapes only; the rest of the text is left alone).
fn lowercase_hex_escapes(s: &str) -> String {
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

/// A redactor that can be replaced while other threads use it: the gateway holds one, adds each
/// child's secrets as it starts, and installs it as the log scrubber.
#[derive(Debug)]
pub struct SharedRedactor(ArcSwap<Redactor>);

impl Default for SharedRedactor {
    fn default() -> Self {
        SharedRedactor(ArcSwap::from_pointee(Redactor::empty()))
    }
}

impl SharedRedactor {
    /// Start from `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        SharedRedactor(ArcSwap::from_pointee(redactor))
    }

    /// The current redactor (cheap: an atomic load).
    pub fn current(&self) -> Arc<Redactor> {
        self.0.load_full()
    }

    /// Add secrets (a child's, as it starts). Concurrent adds may race; the gateway starts
    /// children from one task, or serialises adds.
    pub fn add(
        &self,
        pairs: impl IntoIterator<Item = (String, SecretString)>,
    ) -> Result<(), SecretsError> {
        let next = self.0.load().with_added(pairs)?;
        self.0.store(Arc::new(next));
        Ok(())
    }

    /// Replace the redactor outright.
    pub fn replace(&self, redactor: Redactor) {
        self.0.store(Arc::new(redactor));
    }

    /// Scrub with the current redactor.
    pub fn scrub<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        self.0.load().scrub(text)
    }

    /// Scrub JSON in place with the current redactor.
    pub fn scrub_json(&self, value: &mut serde_json::Value) -> usize {
        self.0.load().scrub_json(value)
    }
}

impl LineScrubber for SharedRedactor {
    fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        SharedRedactor::scrub(self, text).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE;

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
}
