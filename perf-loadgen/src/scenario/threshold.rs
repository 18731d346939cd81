use std::fmt;
use std::str::FromStr;

use perf_core::parse_duration;
use serde::{Deserialize, Serialize};

/// A pass/fail rule over a run's figures: `p95 < 50ms`, `p99 < 200ms`,
/// `error_rate < 0.1%`, `rps > 10000`, `mean <= 20ms`, `max < 1s`.
///
/// ```
/// use perf_loadgen::Threshold;
/// let t: Threshold = "error_rate < 0.1%".parse().unwrap();
/// assert!(t.holds(0.0005));
/// assert!(!t.holds(0.002));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub metric: ThresholdMetric,
    /// How it is compared.
    pub op: Operator,
    /// The bound, in the metric's unit (milliseconds, a fraction, requests/s).
    pub bound: f64,
    text: String,
}

/// The figure a threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdMetric {
    /// A latency percentile (50, 90, 95, 99, 99.9) in milliseconds.
    Percentile(u16),
    /// Mean latency in milliseconds.
    Mean,
    /// Largest latency in milliseconds.
    Max,
    /// Failed requests over all requests, a fraction.
    ErrorRate,
    /// Requests per second over the run.
    Rps,
    /// Passed checks (and captures) over all of them, a fraction (1 without any).
    Checks,
}

/// `<`, `<=`, `>`, `>=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// Strictly below.
    Less,
    /// Below or equal.
    LessOrEqual,
    /// Strictly above.
    Greater,
    /// Above or equal.
    GreaterOrEqual,
}

impl Threshold {
    /// Whether the observed value (in the metric's unit) satisfies the rule.
    pub fn holds(&self, observed: f64) -> bool {
        match self.op {
            Operator::Less => observed < self.bound,
            Operator::LessOrEqual => observed <= self.bound,
            Operator::Greater => observed > self.bound,
            Operator::GreaterOrEqual => observed >= self.bound,
        }
    }

    /// The rule as written.
    pub fn expr(&self) -> &str {
        &self.text
    }

    /// Why this threshold can never fail, when it cannot (`error_rate < 1`:
    /// an error rate is at most 1; `p95 < 1h`: latencies are recorded up to
    /// an hour; `rps >= 0`), so `--check` can say so.
    ///
    /// ```
    /// use perf_loadgen::Threshold;
    /// let t: Threshold = "error_rate < 1".parse().unwrap();
    /// assert!(t.never_fails().is_some());
    /// let t: Threshold = "error_rate < 0.01".parse().unwrap();
    /// assert!(t.never_fails().is_none());
    /// ```
    pub fn never_fails(&self) -> Option<&'static str> {
        let below = matches!(self.op, Operator::Less | Operator::LessOrEqual);
        let (lowest, highest, what) = match self.metric {
            ThresholdMetric::ErrorRate => (
                0.0,
                1.0,
                "an error rate lies between 0 and 1 (a bare number is a fraction; write 1% for one percent)",
            ),
            ThresholdMetric::Checks => (
                0.0,
                1.0,
                "a check pass rate lies between 0 and 1 (a bare number is a fraction; write 99% for 0.99)",
            ),
            ThresholdMetric::Rps => (0.0, f64::INFINITY, "a rate is never negative"),
            _ => (
                0.0,
                perf_core::LatencyHistogram::max_trackable().as_secs_f64() * 1000.0,
                "latencies are recorded from 0 up to one hour",
            ),
        };
        let always = if below {
            // Observed <= highest always; `< highest` fails only at the very top.
            self.bound >= highest
        } else {
            match self.op {
                Operator::GreaterOrEqual => self.bound <= lowest,
                _ => self.bound < lowest,
            }
        };
        always.then_some(what)
    }
}

const ALLOWED: &str = "write `<metric> <op> <value>` with metric p50, p90, p95, p99, p999, mean, max (a duration such as 50ms), error_rate or checks (a fraction such as 0.001, or a percentage such as 0.1%) or rps (a number), and op <, <=, > or >=";

impl FromStr for Threshold {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (op_at, op_len, op) = [
            ("<=", Operator::LessOrEqual),
            (">=", Operator::GreaterOrEqual),
            ("<", Operator::Less),
            (">", Operator::Greater),
        ]
        .iter()
        .find_map(|(sym, op)| text.find(sym).map(|i| (i, sym.len(), *op)))
        .ok_or_else(|| format!("{s:?}: no comparison; {ALLOWED}"))?;
        let name = text[..op_at].trim();
        let value = text[op_at + op_len..].trim();
        let metric = match name {
            "p50" => ThresholdMetric::Percentile(500),
            "p90" => ThresholdMetric::Percentile(900),
            "p95" => ThresholdMetric::Percentile(950),
            "p99" => ThresholdMetric::Percentile(990),
            "p999" | "p99.9" => ThresholdMetric::Percentile(999),
            "mean" | "avg" => ThresholdMetric::Mean,
            "max" => ThresholdMetric::Max,
            "error_rate" => ThresholdMetric::ErrorRate,
            "rps" => ThresholdMetric::Rps,
            "checks" => ThresholdMetric::Checks,
            other => return Err(format!("{s:?}: unknown metric {other:?}; {ALLOWED}")),
        };
        let bound = match metric {
            ThresholdMetric::Percentile(_) | ThresholdMetric::Mean | ThresholdMetric::Max => {
                parse_duration(value)
                    .map_err(|e| format!("{s:?}: {e}"))?
                    .as_secs_f64()
                    * 1000.0
            }
            ThresholdMetric::ErrorRate | ThresholdMetric::Checks => {
                let (number, scale) = match value.strip_suffix('%') {
                    Some(n) => (n.trim(), 0.01),
                    None => (value, 1.0),
                };
                let v: f64 = number
                    .parse()
                    .map_err(|_| format!("{s:?}: {value:?} is not a percentage such as 0.1%"))?;
                if !(0.0..=100.0).contains(&(v * scale * 100.0)) {
                    return Err(format!("{s:?}: a rate lies between 0% and 100%"));
                }
                v * scale
            }
            ThresholdMetric::Rps => value
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    format!("{s:?}: {value:?} is not a number of requests per second")
                })?,
        };
        Ok(Self {
            metric,
            op,
            bound,
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

// In a scenario a threshold is its text: `p95 < 200ms`, `error_rate < 0.1%`.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Threshold {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(ALLOWED))
            .examples(["p95 < 200ms", "error_rate < 0.1%"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Threshold {}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mission_thresholds_parse() {
        let t: Threshold = "p95 < 50ms".parse().unwrap();
        assert_eq!(t.metric, ThresholdMetric::Percentile(950));
        assert_eq!(t.bound, 50.0);
        assert!(t.holds(49.9) && !t.holds(50.0));
        let t: Threshold = "p99 <= 0.2s".parse().unwrap();
        assert!(t.holds(200.0));
        let t: Threshold = "error_rate < 0.1%".parse().unwrap();
        assert!((t.bound - 0.001).abs() < 1e-12);
        let t: Threshold = "rps > 10000".parse().unwrap();
        assert!(t.holds(10_001.0) && !t.holds(10_000.0));
    }

    #[test]
    fn bad_thresholds_say_what_is_allowed() {
        for bad in [
            "p95 50ms",
            "p97 < 5ms",
            "p95 < fast",
            "error_rate < lots",
            "rps > -1",
            "error_rate < 150%",
        ] {
            let err = bad.parse::<Threshold>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
