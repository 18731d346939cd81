use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An arrival rate in requests per second, written `2000/s`, `120/m`, `36000/h`
/// or a bare number of requests per second.
///
/// ```
/// use perf_loadgen::Rate;
/// let r: Rate = "120/m".parse().unwrap();
/// assert_eq!(r.per_second(), 2.0);
/// // Above zero, a rate is at least one request an hour.
/// assert!("1e-30/s".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(f64);

/// The lowest non-zero rate, requests per second (one an hour): below it the
/// interval between two requests is longer than any run.
pub const MIN_RATE: f64 = 1.0 / 3600.0;

impl Rate {
    /// A rate of `per_second` requests per second.
    pub fn per_second_of(per_second: f64) -> Self {
        Self(per_second)
    }

    /// Requests per second.
    pub fn per_second(self) -> f64 {
        self.0
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (number, unit) = text.split_once('/').unwrap_or((text, "s"));
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a rate; write e.g. 2000/s, 120/m or 36000/h"))?;
        let per = match unit.trim() {
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("{s:?}: unknown unit {other:?}; use /s, /m or /h")),
        };
        if !value.is_finite() || value < 0.0 {
            return Err(format!("{s:?}: a rate must be a non-negative number"));
        }
        let per_second = value / per;
        if per_second != 0.0 && per_second < MIN_RATE {
            return Err(format!(
                "{s:?} is below the lowest rate, 1/h; use 0 for no load or at least 1/h"
            ));
        }
        Ok(Self(per_second))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", self.0)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Rate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        perf_core::openapi::number_or_text(
            utoipa::openapi::schema::Type::Number,
            "arrivals per second as a number, or text: `2000/s`, `120/m`, `36000/h` (at least 1/h; 0 for no load)",
            &["100/s", "100"],
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Rate {}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => format!("{n}/s").parse().map_err(serde::de::Error::custom),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}
