//! The redactor: every secret value handed to any child, found in whatever bytes go up (results,
//! errors, notifications, log lines, child stderr) and replaced with `[REDACTED:NAME]`.
//!
//! [`Redactor::scrub_bytes`] is the one choke point; [`Redactor::scrub`] and
//! [`Redactor::scrub_json`] run on it. It finds a value in each form a tool or library commonly
//! writes it in:
//!
//! - **raw**;
//! - **JSON string escaping** of every kind: serde's own, `\uXXXX` for any character (ASCII
//!   ones too, mixed with plain characters, surrogate pairs), `\/`, and nested escaping (a JSON
//!   line inside a JSON string) up to three levels;
//! - **base64**, standard and URL-safe, padded or not, whole or inside a longer blob
//!   (`Basic base64(user:secret)`), and line-wrapped at any width and offset with `\n`, `\r\n`
//!   or their escapes inside a JSON string. For each of the three byte alignments the stable
//!   middle of the encoding is a pattern, and a match is widened over the (at most 3)
//!   neighbouring characters and `=` padding that still carry bits of the value: a few
//!   characters of a neighbouring encoded byte may be redacted with it;
//! - **percent-encoding**, either hex case, keeping RFC 3986 unreserved characters, also `/`
//!   (Python's `quote`), also `!'()*` (JavaScript's `encodeURIComponent`), or encoding every
//!   non-alphanumeric byte; `%20` or `+` for a space;
//! - **hex** of the UTF-8 bytes, either case.
//!
//! How (see [`engine`]): literal patterns where one spelling is exact, screened with SIMD so that
//! clean text costs one pass; decoding where a form has many spellings, limited to the JSON
//! strings that contain an ambiguous escape and to base64 runs that contain line breaks. A
//! match in decoded text is mapped back to the input bytes it came from. Valid JSON stays valid
//! JSON: labels are JSON-safe, a replaced span covers whole escape sequences, and a span outside
//! a string is replaced by a quoted label.
//!
//! Values shorter than [`MIN_VALUE_LEN`] are refused by the store, because redacting them would
//! shred ordinary text and not redacting them would leak them. Should one reach the redactor
//! anyway (set by another tool), its raw form is still redacted (over-redaction is the safe
//! failure) but its encoded forms are not, since those would be only a few characters long.
//!
//! The automaton itself holds the patterns in memory (not zeroised); the `(name, value)` pairs it
//! was built from are kept as [`SecretString`]s so that it can be rebuilt with a new child's
//! secrets ([`Redactor::with_added`]) and swapped in atomically ([`SharedRedactor`]).

mod engine;
mod forms;
#[cfg(test)]
pub(crate) mod proptests;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use arc_swap::ArcSwap;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use self::engine::{Matcher, PatternInfo, Screen};
use self::forms::forms;
use super::SecretsError;
use crate::telemetry::LineScrubber;

/// Scrubs secret values (and their encoded forms) out of bytes, text and JSON.
///
/// ```
/// use lastmile::secrets::Redactor;
/// use secrecy::SecretString;
///
/// let r = Redactor::new([("MY_KEY".to_string(), SecretString::from("hunter2-hunter2"))]).unwrap();
/// let (clean, hits) = r.scrub("the key is hunter2-hunter2");
/// assert_eq!(clean, "the key is [REDACTED:MY_KEY]");
/// assert_eq!(hits, 1);
/// // In a raw JSON-RPC line, \u-escaped: the output is still JSON.
/// let line = br#"{"result":{"text":"key=\u0068unter2-hunter\u0032"}}"#;
/// let (clean, hits) = r.scrub_bytes(line);
/// assert_eq!(&*clean, br#"{"result":{"text":"key=[REDACTED:MY_KEY]"}}"#);
/// assert_eq!(hits, 1);
/// ```
pub struct Redactor {
    secrets: Vec<(String, SecretString)>,
    labels: Vec<String>,
    matcher: Option<Matcher>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field(
                "names",
                &self.secrets.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("patterns", &self.pattern_count())
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
            matcher: None,
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
        if texts.is_empty() {
            return Ok(Redactor {
                secrets,
                labels,
                matcher: None,
            });
        }
        let build = |kind| {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .kind(kind)
                .build(texts.iter().map(|t| t.as_slice()))
        };
        let automaton = build(Some(AhoCorasickKind::DFA))
            .or_else(|_| build(None))
            .map_err(|e| SecretsError::Redactor {
                detail: e.to_string(),
            })?;
        let longest = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let shortest = texts.iter().map(|t| t.len()).min().unwrap_or(0);
        let slices: Vec<&[u8]> = texts.iter().map(|t| t.as_slice()).collect();
        let screen = Screen::new(&slices);
        Ok(Redactor {
            secrets,
            labels,
            matcher: Some(Matcher {
                patterns,
                longest,
                shortest,
                automaton,
                screen,
            }),
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

    /// Number of literal patterns (raw and encoded forms, deduplicated).
    pub fn pattern_count(&self) -> usize {
        self.matcher.as_ref().map_or(0, |m| m.patterns.len())
    }

    /// How many bytes of input one secret can span in the covered forms (every character
    /// `\u`-escaped, twice nested, or base64 wrapped every character): a stream cut into pieces
    /// must carry this much of one piece into the next so no secret is split unseen.
    pub fn window(&self) -> usize {
        self.matcher.as_ref().map_or(0, |m| m.longest * 8 + 16)
    }

    /// `input` with every secret, in every covered form, replaced by `[REDACTED:NAME]`, and the
    /// number of replacements. Borrows when nothing matched. Valid JSON in, valid JSON out;
    /// valid UTF-8 in, valid UTF-8 out.
    pub fn scrub_bytes<'a>(&self, input: &'a [u8]) -> (Cow<'a, [u8]>, usize) {
        self.scrub_prefix(input, input.len())
    }

    /// The scrubbed form of `input[..cut]`, reading the rest of `input` as context: a secret that
    /// starts before `cut` and ends after it is replaced whole, and nothing after `cut` is kept
    /// (so a secret whose head is all that the context holds is never shown). For cutting a
    /// stream into bounded pieces: the context should be at least [`Redactor::window`] bytes.
    pub fn scrub_prefix<'a>(&self, input: &'a [u8], cut: usize) -> (Cow<'a, [u8]>, usize) {
        let (out, count, _) = self.scrub_prefix_reach(input, cut);
        (out, count)
    }

    /// [`Redactor::scrub_prefix`], and where the input was read up to: `cut`, or past it when a
    /// secret replaced whole starts before `cut` and ends after it. A stream cut at `cut` goes on
    /// from there, so the tail of a replaced secret is never shown on its own.
    pub fn scrub_prefix_reach<'a>(
        &self,
        input: &'a [u8],
        cut: usize,
    ) -> (Cow<'a, [u8]>, usize, usize) {
        let cut = cut.min(input.len());
        let Some(matcher) = &self.matcher else {
            return (Cow::Borrowed(&input[..cut]), 0, cut);
        };
        let regions = matcher.regions(input);
        let regions: Vec<_> = regions.into_iter().filter(|r| r.start < cut).collect();
        if regions.is_empty() {
            return (Cow::Borrowed(&input[..cut]), 0, cut);
        }
        let mut out = Vec::with_capacity(cut + regions.len() * 16);
        let mut copied = 0;
        for r in &regions {
            out.extend_from_slice(&input[copied..r.start]);
            let label = self.labels[r.secret].as_bytes();
            if r.quoted {
                out.push(b'"');
                out.extend_from_slice(label);
                out.push(b'"');
            } else {
                out.extend_from_slice(label);
            }
            copied = r.end;
        }
        if copied < cut {
            out.extend_from_slice(&input[copied..cut]);
        }
        (Cow::Owned(out), regions.len(), copied.max(cut))
    }

    /// `text` with every secret replaced by `[REDACTED:NAME]`, and the number of replacements.
    /// Borrows when nothing matched.
    pub fn scrub<'a>(&self, text: &'a str) -> (Cow<'a, str>, usize) {
        match self.scrub_bytes(text.as_bytes()) {
            (Cow::Borrowed(_), _) => (Cow::Borrowed(text), 0),
            // Spans start and end on character boundaries (see the engine), so this holds; a
            // lossy conversion is the fallback that still never restores a secret.
            (Cow::Owned(bytes), hits) => match String::from_utf8(bytes) {
                Ok(s) => (Cow::Owned(s), hits),
                Err(e) => (
                    Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    hits,
                ),
            },
        }
    }

    /// Scrub every string in `value` in place (object keys too); returns the number of
    /// replacements.
    pub fn scrub_json(&self, value: &mut serde_json::Value) -> usize {
        if self.matcher.is_none() {
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
            // A numeric secret (a PIN, an account number) written as a JSON number.
            serde_json::Value::Number(n) => {
                let text = n.to_string();
                let (clean, hits) = self.scrub(&text);
                if hits > 0 {
                    let clean = clean.into_owned();
                    *value = serde_json::Value::String(clean);
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
    fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        Redactor::scrub_bytes(self, bytes).0
    }
    fn scrub_prefix_reach<'a>(&self, bytes: &'a [u8], cut: usize) -> (Cow<'a, [u8]>, usize) {
        let (out, _, reach) = Redactor::scrub_prefix_reach(self, bytes, cut);
        (out, reach)
    }
    fn window(&self) -> usize {
        Redactor::window(self)
    }
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

    /// Scrub bytes (a raw JSON-RPC line, a log line) with the current redactor.
    pub fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> (Cow<'a, [u8]>, usize) {
        self.0.load().scrub_bytes(bytes)
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
    fn scrub_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        SharedRedactor::scrub_bytes(self, bytes).0
    }
    fn scrub_prefix_reach<'a>(&self, bytes: &'a [u8], cut: usize) -> (Cow<'a, [u8]>, usize) {
        let (out, _, reach) = self.0.load().scrub_prefix_reach(bytes, cut);
        (out, reach)
    }
    fn window(&self) -> usize {
        self.0.load().window()
    }
}
