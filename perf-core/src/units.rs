//! Human durations (`10m`, `500ms`, `1.5s`, `1h30m`) and sizes (`512MB`, `2GiB`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const DURATION_UNITS: &str = "ns, us (or µs), ms, s, m, h, d";
const SIZE_UNITS: &str =
    "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)";

/// Reads a human duration: one or more `<number><unit>` parts, such as `500ms`,
/// `1.5s`, `10m` or `1h30m`. Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`.
/// A bare `0` is allowed; any other number needs a unit.
///
/// ```
/// use std::time::Duration;
/// use perf_core::parse_duration;
/// assert_eq!(parse_duration("10m")?, Duration::from_secs(600));
/// assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
/// let err = parse_duration("10 parsecs").unwrap_err();
/// assert!(err.to_string().contains("\"10 parsecs\""));
/// # Ok::<(), perf_core::Error>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration> {
    let fail = |reason: String| Error::InvalidDuration {
        input: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail(format!(
            "empty; write a number and a unit ({DURATION_UNITS})"
        )));
    }
    if trimmed == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = trimmed;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let (number, after) = split_number(rest);
        if number.is_empty() {
            return Err(fail(format!(
                "expected a number at {rest:?}; negative durations are not allowed"
            )));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| fail(format!("{number:?} is not a number")))?;
        let after = after.trim_start();
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "" => {
                return Err(fail(format!(
                    "{number} has no unit; allowed: {DURATION_UNITS}"
                )));
            }
            other => {
                return Err(fail(format!(
                    "unknown unit {other:?}; allowed: {DURATION_UNITS}"
                )));
            }
        };
        total_nanos += value * nanos_per_unit;
        rest = tail.trim_start();
    }
    if !total_nanos.is_finite() || total_nanos > u64::MAX as f64 {
        return Err(fail(
            "too large; the longest duration is about 584 years".to_owned(),
        ));
    }
    Ok(Duration::from_nanos(crate::num::saturating_u64(
        total_nanos.round(),
    )))
}

/// Reads a human size in bytes: a number and an optional unit, such as `512MB`,
/// `2GiB`, `1.5 KiB` or `4096`. `KB`, `MB`, `GB`, `TB` are powers of 1000;
/// `KiB`, `MiB`, `GiB`, `TiB` (also `Ki`, `Mi`, `Gi`, `Ti` as Kubernetes writes
/// them) are powers of 1024. Units are case-insensitive.
///
/// ```
/// use perf_core::parse_size;
/// assert_eq!(parse_size("512MB")?, 512_000_000);
/// assert_eq!(parse_size("2GiB")?, 2 << 30);
/// assert!(parse_size("-1MB").is_err());
/// # Ok::<(), perf_core::Error>(())
/// ```
pub fn parse_size(text: &str) -> Result<u64> {
    let fail = |reason: String| Error::InvalidSize {
        input: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    let (number, unit) = split_number(trimmed);
    if number.is_empty() {
        return Err(fail(format!(
            "expected a non-negative number followed by a unit ({SIZE_UNITS})"
        )));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| fail(format!("{number:?} is not a number")))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(fail(format!(
                "unknown unit {:?}; allowed: {SIZE_UNITS}",
                unit.trim()
            )));
        }
    };
    let bytes = value * multiplier;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(fail("too large".to_owned()));
    }
    if bytes.fract() != 0.0 && multiplier == 1.0 {
        return Err(fail("a size in bytes must be a whole number".to_owned()));
    }
    Ok(crate::num::saturating_u64(bytes.round()))
}

/// Splits the leading unsigned decimal number (digits and at most one dot).
fn split_number(text: &str) -> (&str, &str) {
    let mut seen_dot = false;
    let end = text
        .char_indices()
        .find(|&(_, c)| {
            if c == '.' && !seen_dot {
                seen_dot = true;
                false
            } else {
                !c.is_ascii_digit()
            }
        })
        .map_or(text.len(), |(i, _)| i);
    text.split_at(end)
}

/// Writes a duration the way [`parse_duration`] reads it, e.g. `1.5s`, `10m`, `250ms`.
fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    let whole_units: [(u128, &str); 4] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
    ];
    for (size, unit) in whole_units {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    // Above a second, fractional seconds read best and parse back exactly.
    if nanos >= 1_000_000_000 && nanos.is_multiple_of(1_000_000) {
        return format!("{}s", d.as_secs_f64());
    }
    for (size, unit) in [(1_000_000u128, "ms"), (1_000, "us")] {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

/// A [`Duration`] that reads and writes as human text (`"500ms"`, `"1.5s"`)
/// in configuration files and JSON.
///
/// ```
/// use perf_core::HumanDuration;
/// let d: HumanDuration = serde_json::from_str("\"1.5s\"").unwrap();
/// assert_eq!(d.as_duration().as_millis(), 1500);
/// assert_eq!(serde_json::to_string(&d).unwrap(), "\"1.5s\"");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, example = "1.5s"))]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(value: Duration) -> Self {
        Self(value)
    }
}

impl FromStr for HumanDuration {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_duration(s).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A size in bytes that reads as human text (`"512MB"`, `"2GiB"`) or a plain
/// integer of bytes, and writes as an integer of bytes.
///
/// ```
/// use perf_core::ByteSize;
/// let s: ByteSize = serde_json::from_str("\"1KiB\"").unwrap();
/// assert_eq!(s.bytes(), 1024);
/// let s: ByteSize = serde_json::from_str("2048").unwrap();
/// assert_eq!(s.bytes(), 2048);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ByteSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::openapi::number_or_text(
            utoipa::openapi::schema::Type::Integer,
            "a size: bytes as a number, or text with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)",
            &["512MB", "536870912"],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ByteSize {}

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        parse_size(s).map(Self)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (size, unit) in [
            (1u64 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ] {
            if b >= size && b.is_multiple_of(size) {
                return write!(f, "{}{unit}", b / size);
            }
        }
        write!(f, "{b}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(b) => Ok(Self(b)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_every_unit() {
        let cases = [
            ("10m", Duration::from_secs(600)),
            ("500ms", Duration::from_millis(500)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h", Duration::from_secs(7200)),
            ("1d", Duration::from_secs(86_400)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("100ns", Duration::from_nanos(100)),
            ("1h30m", Duration::from_secs(5400)),
            ("1m 30s", Duration::from_secs(90)),
            (" 30s ", Duration::from_secs(30)),
            ("0", Duration::ZERO),
            ("0.5ms", Duration::from_micros(500)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_durations_quote_the_text() {
        for text in [
            "",
            "10",
            "-5s",
            "5 parsecs",
            "1.2.3s",
            "s",
            "ms5",
            "1e400h",
            "5S",
        ] {
            let err = parse_duration(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
        }
        let msg = parse_duration("10").unwrap_err().to_string();
        assert!(msg.contains("no unit"), "{msg}");
    }

    #[test]
    fn sizes_of_every_unit() {
        let cases = [
            ("512MB", 512_000_000),
            ("2GiB", 2 << 30),
            ("1.5KiB", 1536),
            ("64 kb", 64_000),
            ("4096", 4096),
            ("100B", 100),
            ("256Mi", 256 << 20),
            ("1TB", 1_000_000_000_000),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn bad_sizes_quote_the_text() {
        for text in ["", "-1MB", "12 parsecs", "MB", "1.5", "99999999999TB"] {
            let msg = parse_size(text).unwrap_err().to_string();
            assert!(msg.contains(&format!("{text:?}")), "{msg}");
        }
    }

    #[test]
    fn durations_round_trip_through_text() {
        for text in ["10m", "500ms", "1.5s", "2h", "250us", "7ns", "90s", "1d"] {
            let d: HumanDuration = text.parse().unwrap();
            let again: HumanDuration = d.to_string().parse().unwrap();
            assert_eq!(d, again, "{text} -> {d}");
        }
        assert_eq!(HumanDuration(Duration::from_secs(90)).to_string(), "90s");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1.5s"
        );
    }

    #[test]
    fn sizes_display_in_binary_units_when_exact() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
