//! The envelope of a JSON-RPC message, parsed once and borrowing the raw bytes.
//!
//! A message is read as its top-level members in order, each value kept as the raw JSON text it
//! arrived as ([`RawValue`]): only what lastmile must change — the id, a tool or prompt name, a
//! progress token, `_meta` — is replaced, and the message is written back by splicing the
//! untouched raw values through. Nothing else is decoded or re-encoded.
//!
//! Duplicate member names are refused ([`WireError::DuplicateKey`]): JSON parsers disagree about
//! which of two `"method"`s or `"name"`s wins, and a gateway that read one while the child reads
//! the other could be steered past its gate.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why bytes are not a JSON-RPC message lastmile can forward.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not JSON at all (or not UTF-8).
    #[error("not a JSON message: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("a JSON-RPC message must be a JSON object")]
    NotAnObject,
    /// A member name appears twice.
    #[error("member `{0}` appears more than once")]
    DuplicateKey(String),
    /// `jsonrpc` is missing or not "2.0".
    #[error("`jsonrpc` must be \"2.0\"")]
    BadVersion,
    /// `method` is not a string.
    #[error("`method` must be a string")]
    BadMethod,
    /// `id` is neither a string nor an integer.
    #[error("`id` must be a string or an integer")]
    BadId,
    /// Neither a request, a notification nor a response.
    #[error("a message needs `method`, or `id` with `result` or `error`")]
    NoKind,
    /// `params` is not an object where lastmile needs one.
    #[error("`params` must be an object")]
    BadParams,
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `method` and `id`.
    Request,
    /// `method`, no `id`.
    Notification,
    /// `id` and `result`.
    Response,
    /// `id` and `error`.
    Error,
}

/// One member's value: the bytes it arrived as, or lastmile's replacement (valid JSON text).
#[derive(Debug, Clone)]
pub enum Piece<'a> {
    /// Untouched.
    Raw(&'a RawValue),
    /// Replaced; must be valid JSON (made by [`json_string`] or serde_json).
    Owned(String),
}

impl Piece<'_> {
    /// The JSON text.
    pub fn get(&self) -> &str {
        match self {
            Piece::Raw(r) => r.get(),
            Piece::Owned(s) => s,
        }
    }
}

/// A JSON object as its members in order, values raw.
#[derive(Debug, Clone, Default)]
pub struct RawObject<'a> {
    members: Vec<(Cow<'a, str>, Piece<'a>)>,
}

impl<'a> RawObject<'a> {
    /// Parse `text` (a JSON object) without decoding its values.
    pub fn parse(text: &'a str) -> Result<Self, WireError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let members = de
            .deserialize_map(MembersVisitor)
            .map_err(|e| classify(&e, text))?;
        de.end().map_err(|e| WireError::NotJson(e.to_string()))?;
        Ok(RawObject { members })
    }

    /// A member's raw value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.get())
    }

    /// A member's value as a string (only when it is a JSON string), borrowed unless it holds
    /// an escape.
    pub fn get_str(&self, key: &str) -> Option<Cow<'_, str>> {
        let raw = self.get(key)?;
        serde_json::from_str::<Text<'_>>(raw).ok().map(|t| t.0)
    }

    /// Set (or add, at the end) a member to `json`, which must be valid JSON text.
    pub fn set(&mut self, key: &str, json: String) {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Piece::Owned(json),
            None => self
                .members
                .push((Cow::Owned(key.to_string()), Piece::Owned(json))),
        }
    }

    /// Remove a member; whether it was there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|(k, _)| k != key);
        self.members.len() != before
    }

    /// Member names in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_ref())
    }

    /// Write the object: untouched values as they arrived.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json_string(out, k);
            out.push(b':');
            out.extend_from_slice(v.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The object as JSON text.
    pub fn to_json(&self) -> String {
        let mut out = Vec::with_capacity(64);
        self.write(&mut out);
        // Only valid UTF-8 went in: keys from `json_string`, values valid JSON text.
        String::from_utf8(out).unwrap_or_default()
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    if needs_escape(s) {
        return serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    out.push_str(s);
    out.push('"');
    out
}

/// Whether serde_json would escape anything in `s`. Most strings here (member names, ids, tool
/// names) need no escape: quoting them is all it would do, at the cost of a formatter.
fn needs_escape(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Append `s` as a JSON string literal to `out`.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// A JSON string, borrowed from the input unless it holds an escape. (serde's own `Cow<str>`
/// always allocates.)
struct Text<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// A parsed JSON-RPC message: its kind and its top-level members, raw.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    kind: Kind,
    object: RawObject<'a>,
}

impl<'a> Envelope<'a> {
    /// Parse one message.
    ///
    /// ```
    /// use lastmile::wire::{Envelope, Kind};
    ///
    /// let line = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"gh__x"}}"#;
    /// let mut m = Envelope::parse(line).unwrap();
    /// assert_eq!(m.kind(), Kind::Request);
    /// assert_eq!(m.method().as_deref(), Some("tools/call"));
    /// m.set_id("41".into());
    /// assert_eq!(
    ///     m.to_json(),
    ///     r#"{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"gh__x"}}"#
    /// );
    /// ```
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let text = std::str::from_utf8(bytes).map_err(|e| WireError::NotJson(e.to_string()))?;
        let object = RawObject::parse(text)?;
        if object.get("jsonrpc") != Some("\"2.0\"") {
            return Err(WireError::BadVersion);
        }
        let id = object.get("id");
        if let Some(id) = id {
            let ok = id.starts_with('"') || serde_json::from_str::<i64>(id).is_ok();
            if !ok {
                return Err(WireError::BadId);
            }
        }
        let kind = match (object.get("method"), id) {
            (Some(m), id) => {
                if !m.starts_with('"') {
                    return Err(WireError::BadMethod);
                }
                if id.is_some() {
                    Kind::Request
                } else {
                    Kind::Notification
                }
            }
            (None, Some(_)) if object.get("result").is_some() => Kind::Response,
            (None, Some(_)) if object.get("error").is_some() => Kind::Error,
            _ => return Err(WireError::NoKind),
        };
        Ok(Envelope { kind, object })
    }

    /// What the message is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<Cow<'_, str>> {
        self.object.get_str("method")
    }

    /// The raw id.
    pub fn id(&self) -> Option<&str> {
        self.object.get("id")
    }

    /// Replace the id (valid JSON: a number or a string literal).
    pub fn set_id(&mut self, id: String) {
        self.object.set("id", id);
    }

    /// The params as an object (requests lastmile routes carry one).
    pub fn params(&self) -> Result<Option<RawObject<'_>>, WireError> {
        match self.object.get("params") {
            None => Ok(None),
            Some(raw) => RawObject::parse(raw)
                .map(Some)
                .map_err(|_| WireError::BadParams),
        }
    }

    /// Replace the params.
    pub fn set_params(&mut self, params: &RawObject<'_>) {
        self.object.set("params", params.to_json());
    }

    /// The raw text of a member (`result`, `error`, …).
    pub fn member(&self, key: &str) -> Option<&str> {
        self.object.get(key)
    }

    /// Replace a member with valid JSON text.
    pub fn set_member(&mut self, key: &str, json: String) {
        self.object.set(key, json);
    }

    /// Write the message, without a line ending.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.object.write(out);
    }

    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        self.object.to_json()
    }
}

/// Rewrite `params.name` of a request (a tool or prompt name) to `name`.
pub fn rename(envelope: &mut Envelope<'_>, name: &str) -> Result<(), WireError> {
    let text = match envelope.params()? {
        Some(mut params) => {
            params.set("name", json_string(name));
            params.to_json()
        }
        None => return Err(WireError::BadParams),
    };
    envelope.set_member("params", text);
    Ok(())
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, Piece<'de>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members: Vec<(Cow<'de, str>, Piece<'de>)> = Vec::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("{DUPLICATE}{key}")));
            }
            let value: &'de RawValue = map.next_value()?;
            members.push((key, Piece::Raw(value)));
        }
        Ok(members)
    }
}

const DUPLICATE: &str = "lastmile-duplicate-key:";

fn classify(e: &serde_json::Error, text: &str) -> WireError {
    let message = e.to_string();
    if let Some(rest) = message.strip_prefix(DUPLICATE) {
        // serde_json appends " at line L column C".
        let key = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
        return WireError::DuplicateKey(key.to_string());
    }
    if e.is_data() && serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        return WireError::NotAnObject;
    }
    WireError::NotJson(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Envelope<'_>, WireError> {
        Envelope::parse(s.as_bytes())
    }

    /// A member's raw value is the value alone, without the whitespace around it: `tools/call`
    /// tells an object from its first byte.
    #[test]
    fn a_raw_member_value_starts_at_its_first_byte() {
        let o =
            RawObject::parse("{ \"arguments\" :\n\t {\"a\": [1, 2]} \r\n, \"n\":  7 }").unwrap();
        assert_eq!(o.get("arguments"), Some(r#"{"a": [1, 2]}"#));
        assert_eq!(o.get("n"), Some("7"));
    }

    #[test]
    fn names_and_strings_are_borrowed_unless_escaped() {
        let text = r#"{"name":"fx__echo","t\u0061b":"a\tb","arguments":{}}"#;
        let o = RawObject::parse(text).unwrap();
        let borrowed: Vec<bool> = o
            .members
            .iter()
            .map(|(k, _)| matches!(k, Cow::Borrowed(_)))
            .collect();
        assert_eq!(borrowed, [true, false, true]);
        assert_eq!(o.keys().collect::<Vec<_>>(), ["name", "tab", "arguments"]);
        assert!(matches!(o.get_str("name"), Some(Cow::Borrowed("fx__echo"))));
        assert_eq!(o.get_str("tab").as_deref(), Some("a\tb"));
        assert!(o.get_str("arguments").is_none());
        // Written back, the escaped name is quoted as JSON wants.
        assert_eq!(
            o.to_json(),
            r#"{"name":"fx__echo","tab":"a\tb","arguments":{}}"#
        );
    }

    #[test]
    fn json_string_quotes_exactly_as_serde_json_does() {
        let mut cases: Vec<String> = (0u8..=0x7f).map(|b| format!("a{}b", b as char)).collect();
        cases.extend(
            [
                "",
                "lm-1",
                "fx__echo",
                "é€😀",
                "\u{7f}",
                "tab\there",
                "q\"uote",
                "back\\slash",
            ]
            .map(String::from),
        );
        for s in cases {
            assert_eq!(json_string(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn kinds() {
        let k = |s| parse(s).map(|m| m.kind());
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Kind::Request)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Kind::Notification)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Kind::Response)
        );
        assert_eq!(
            k(r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#),
            Ok(Kind::Error)
        );
    }

    #[test]
    fn named_errors() {
        assert!(matches!(parse("nope"), Err(WireError::NotJson(_))));
        assert_eq!(parse("[1,2]").unwrap_err(), WireError::NotAnObject);
        assert_eq!(
            parse(r#"{"id":1,"method":"x"}"#).unwrap_err(),
            WireError::BadVersion
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#).unwrap_err(),
            WireError::BadId
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":7}"#).unwrap_err(),
            WireError::BadMethod
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0"}"#).unwrap_err(),
            WireError::NoKind
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#).unwrap_err(),
            WireError::DuplicateKey("method".into())
        );
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x"} trailing"#),
            Err(WireError::NotJson(_))
        ));
    }

    #[test]
    fn duplicate_params_members_are_refused_where_they_are_read() {
        let m = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .unwrap();
        assert_eq!(m.params().unwrap_err(), WireError::BadParams);
    }

    #[test]
    fn rewriting_changes_only_what_it_must() {
        let line = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"gh__create","arguments":{"b":[1, 2.50, "\u00e9"]},"_meta":{"progressToken":9}}}"#;
        let mut m = parse(line).unwrap();
        m.set_id("17".into());
        rename(&mut m, "create").unwrap();
        let out = m.to_json();
        // Untouched members keep their exact bytes (spacing, number form, escapes).
        assert!(
            out.contains(r#""arguments":{"b":[1, 2.50, "\u00e9"]}"#),
            "{out}"
        );
        let mut a: serde_json::Value = serde_json::from_str(line).unwrap();
        let b: serde_json::Value = serde_json::from_str(&out).unwrap();
        a["id"] = 17.into();
        a["params"]["name"] = "create".into();
        assert_eq!(a, b);
    }

    #[test]
    fn random_bytes_give_a_message_or_a_named_error_and_round_trip() {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let atoms: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"jsonrpc\"",
            "\"2.0\"",
            "\"id\"",
            "1",
            "-3",
            "\"method\"",
            "\"x\"",
            "\"params\"",
            "\"result\"",
            "\"error\"",
            "null",
            "true",
            " ",
            "\"\\u0041\"",
            "\"name\"",
            "1.5e3",
            "\"é\"",
        ];
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..next(24) {
                s.push_str(atoms[next(atoms.len())]);
            }
            if let Ok(m) = parse(&s) {
                let again = m.to_json();
                let a: serde_json::Value = serde_json::from_str(&s).unwrap();
                let b: serde_json::Value = serde_json::from_str(&again).unwrap();
                assert_eq!(a, b, "{s} -> {again}");
            }
        }
    }
}
