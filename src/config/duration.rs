//! Human-friendly durations in config files: `"500ms"`, `"30s"`, `"5m"`, `"8h"`, `"90d"`, or a bare
//! integer number of seconds.

use std::borrow::Cow;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration read from a config file or a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    /// Parse `"<n><unit>"` with unit `ms`, `s`, `m`, `h` or `d`, or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().map_err(|_| {
            format!("`{text}` is not a duration (try \"30s\", \"500ms\", \"5m\", \"8h\")")
        })?;
        let d = match unit {
            "" | "s" => Duration::from_secs(n),
            "ms" => Duration::from_millis(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)"
                ));
            }
        };
        Ok(DurationSpec(d))
    }
}

impl std::fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl std::str::FromStr for DurationSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(DurationSpec(Duration::from_secs(n))),
            Raw::Text(t) => DurationSpec::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for DurationSpec {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: \"500ms\", \"30s\", \"5m\", \"8h\", \"90d\", or a whole number of seconds.",
            "oneOf": [
                { "type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)?$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            DurationSpec::parse("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(
            DurationSpec::parse("30s").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            DurationSpec::parse("30").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            DurationSpec::parse("5m").unwrap().0,
            Duration::from_secs(300)
        );
        assert_eq!(
            DurationSpec::parse("8h").unwrap().0,
            Duration::from_secs(8 * 3600)
        );
        assert_eq!(
            DurationSpec::parse("90d").unwrap().0,
            Duration::from_secs(90 * 86_400)
        );
        assert!(DurationSpec::parse("5 parsecs").is_err());
        assert!(DurationSpec::parse("").is_err());
        assert!(DurationSpec::parse("m").is_err());
    }
}
