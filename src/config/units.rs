//! Human-friendly units used throughout the configuration: durations (`"250ms"`, `"30s"`,
//! `"1m"`) and sizes (`"10MB"`, `"32KB"`).

use std::{borrow::Cow, fmt, time::Duration};

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The JSON Schema `format` of a duration string; `proxyfn check` validates it with the same
/// parser as the configuration does ([`is_duration`]).
pub const DURATION_FORMAT: &str = "duration";
/// The JSON Schema `format` of a size string ([`is_size`]).
pub const SIZE_FORMAT: &str = "byte-size";

/// Whether `text` parses as a [`HumanDuration`].
pub fn is_duration(text: &str) -> bool {
    humantime::parse_duration(text.trim()).is_ok()
}

/// Whether `text` parses as a [`ByteSize`].
pub fn is_size(text: &str) -> bool {
    ByteSize::parse(text).is_ok()
}

/// A duration written as a string such as `"250ms"`, `"30s"`, `"1m"` or `"1h 30m"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); use e.g. \"250ms\", \"30s\", \"1m\""
                ))
            })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": DURATION_FORMAT,
            "description": "A duration: a number and a unit (ns, us, ms, s, m, h, d), such as \"250ms\", \"30s\", \"1m\" or \"1h 30m\".",
            "examples": ["30s"]
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes written as `"512B"`, `"32KB"`, `"10MB"` or `"1GB"`.
///
/// Units are binary, as in nginx and AWS API Gateway's documented limits: `1KB` = 1024 bytes,
/// `10MB` = 10 485 760 bytes. `KiB`/`MiB`/`GiB` are accepted as synonyms. A bare integer is bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {text:?}; use e.g. \"32KB\", \"10MB\""))?;
        let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "KB" | "KIB" | "K" => 1 << 10,
            "MB" | "MIB" | "M" => 1 << 20,
            "GB" | "GIB" | "G" => 1 << 30,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {text:?}; use B, KB, MB or GB"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"10MB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl ByteSize {
    /// The size as the configuration writes it, in the largest unit that is exact.
    pub fn to_config_string(self) -> String {
        let n = self.0;
        for (unit, factor) in [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10)] {
            if n >= factor && n.is_multiple_of(factor) {
                return format!("{}{unit}", n / factor);
            }
        }
        format!("{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_config_string())
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // `format` applies to strings and `minimum` to numbers: one schema for both forms.
        json_schema!({
            "type": ["string", "integer"],
            "format": SIZE_FORMAT,
            "minimum": 0,
            "description": "A size: binary units as in nginx (\"512B\", \"32KB\" = 32768 bytes, \"10MB\", \"1GB\"), or a number of bytes.",
            "examples": ["10MB"]
        })
    }
}

pub(crate) fn secs(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(n))
}

pub(crate) fn millis(n: u64) -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(ByteSize::parse("10MB").unwrap().0, 10 * 1024 * 1024);
        assert_eq!(ByteSize::parse("32KB").unwrap().0, 32 * 1024);
        assert_eq!(ByteSize::parse("1GiB").unwrap().0, 1 << 30);
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert_eq!(ByteSize::parse(" 2 mb ").unwrap().0, 2 << 20);
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_hint() {
        assert!(
            ByteSize::parse("ten MB")
                .unwrap_err()
                .contains("invalid size")
        );
        assert!(ByteSize::parse("10 parsecs").unwrap_err().contains("unit"));
        assert!(
            ByteSize::parse("99999999999999GB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations_accept_the_documented_forms() {
        let parse = |s: &str| serde_json::from_value::<HumanDuration>(serde_json::json!(s));
        assert_eq!(parse("250ms").unwrap().0, Duration::from_millis(250));
        assert_eq!(parse("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(parse("1m").unwrap().0, Duration::from_secs(60));
        assert!(
            parse("soon")
                .unwrap_err()
                .to_string()
                .contains("invalid duration")
        );
    }
}
