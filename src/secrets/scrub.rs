//! Typed scrubbing: a value (a result, an error, a notification, a catalog entry) passed through
//! the session's redactor by way of its JSON form, and a plain message scrubbed as text.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::SharedRedactor;

/// A redacted message no longer fit its type, so it was withheld (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("a message from `{0}` was withheld: redacting a secret out of it broke its shape")]
pub struct Withheld(pub String);

/// Scrub every string in `value` (through its JSON form). Returns the value — untouched, with no
/// round trip, when nothing matched — and how many secrets were replaced.
pub fn scrub<T: Serialize + DeserializeOwned>(
    redactor: &SharedRedactor,
    server: &str,
    value: T,
) -> Result<(T, usize), Withheld> {
    if redactor.current().is_empty() {
        return Ok((value, 0));
    }
    let Ok(mut json) = serde_json::to_value(&value) else {
        return Err(Withheld(server.to_string()));
    };
    let hits = redactor.scrub_json(&mut json);
    if hits == 0 {
        return Ok((value, 0));
    }
    serde_json::from_value(json)
        .map(|clean| (clean, hits))
        .map_err(|_| Withheld(server.to_string()))
}

/// Scrub a plain message (errors, lastmile's own account of a child's failure).
pub fn scrub_text(redactor: &SharedRedactor, text: String) -> String {
    let (clean, hits) = redactor.scrub(&text);
    if hits == 0 { text } else { clean.into_owned() }
}
