//! Replace one value inside a JSON text and leave every other byte as it was: a Claude config
//! keeps its key order, formatting and every key lastmile does not understand.

use std::ops::Range;

/// The byte range of the value at `path` (object keys from the top), if there is one.
pub(crate) fn value_span(text: &str, path: &[&str]) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let start = skip_ws(b, 0);
    find_in(text, start, path)
}

fn find_in(text: &str, at: usize, path: &[&str]) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let Some((first, rest)) = path.split_first() else {
        return Some(at..value_end(b, at)?);
    };
    if b.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(b, at + 1);
    if b.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let key_end = string_end(b, i)?;
        let key: String = serde_json::from_str(&text[i..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let v = skip_ws(b, i + 1);
        let v_end = value_end(b, v)?;
        if key == *first {
            return find_in(text, v, rest);
        }
        i = skip_ws(b, v_end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            _ => return None,
        }
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (which must be `"`).
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            Some(j)
        }
    }
}

/// `text` with the value at `span` replaced by `value`, pretty-printed and indented to match
/// the line it sits on.
pub(crate) fn replace_value(text: &str, span: Range<usize>, value: &serde_json::Value) -> String {
    let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
    let indent: String = text[line_start..span.start]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    let indented = pretty.replace('\n', &format!("\n{indent}"));
    format!("{}{}{}", &text[..span.start], indented, &text[span.end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_value_changes() {
        let text = "{\n  \"zeta\": 1,\n  \"projects\": {\"C:\\\\x\": {\"mcpServers\": {\"a\": [1, {\"b\": \"}\"}]}, \"k\": true}},\n  \"mcpServers\": {\"old\": {}},\n  \"alpha\": [\"mcpServers\"]\n}\n";
        let span = value_span(text, &["mcpServers"]).unwrap();
        assert_eq!(&text[span.clone()], "{\"old\": {}}");
        let out = replace_value(text, span, &serde_json::json!({"new": {"command": "x"}}));
        assert!(out.starts_with("{\n  \"zeta\": 1,"), "{out}");
        assert!(out.contains("\"alpha\": [\"mcpServers\"]"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mcpServers"]["new"]["command"], "x");
        let inner = value_span(text, &["projects", "C:\\x", "mcpServers"]).unwrap();
        assert_eq!(&text[inner], "{\"a\": [1, {\"b\": \"}\"}]}");
        assert!(value_span(text, &["missing"]).is_none());
    }
}
