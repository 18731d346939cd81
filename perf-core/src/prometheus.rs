//! The Prometheus text exposition format (0.0.4) for what the crates
//! measure: family headers, samples, and [`LatencyHistogram`]s as
//! Prometheus histograms in seconds, so a server can publish figures the
//! `metrics` crate's recorder cannot take (buckets counted elsewhere, a
//! whole HDR histogram at once).
//!
//! ```
//! use std::time::Duration;
//! use perf_core::LatencyHistogram;
//! use perf_core::prometheus::{write_header, write_histogram};
//!
//! let mut h = LatencyHistogram::new();
//! h.record(Duration::from_millis(3))?;
//! h.record(Duration::from_millis(40))?;
//! let mut out = String::new();
//! write_header(&mut out, "db_pool_wait_seconds", "histogram", "Time callers waited.");
//! write_histogram(&mut out, "db_pool_wait_seconds", &[("pool", "store")], &h);
//! assert!(out.contains("db_pool_wait_seconds_bucket{pool=\"store\",le=\"0.005\"} 1\n"));
//! assert!(out.contains("db_pool_wait_seconds_bucket{pool=\"store\",le=\"+Inf\"} 2\n"));
//! assert!(out.contains("db_pool_wait_seconds_count{pool=\"store\"} 2\n"));
//! # Ok::<(), perf_core::Error>(())
//! ```

use std::fmt::Write;

use crate::LatencyHistogram;

/// Upper bounds of the latency buckets, in seconds: 100 µs to 10 s.
pub const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A label value as the exposition format writes it (`\`, `"` and newlines escaped).
pub fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` of a family (`kind`: counter, gauge, histogram);
/// write them once, before the family's samples.
pub fn write_header(out: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample: `name{labels} value` (infinities and NaN as the format
/// spells them: `+Inf`, `-Inf`, `NaN`).
pub fn write_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    write_labels(out, labels, None);
    let _ = match value {
        v if v.is_nan() => writeln!(out, " NaN"),
        v if v == f64::INFINITY => writeln!(out, " +Inf"),
        v if v == f64::NEG_INFINITY => writeln!(out, " -Inf"),
        v => writeln!(out, " {v}"),
    };
}

/// The samples of one histogram from counts per bucket of
/// [`LATENCY_BUCKETS_SECONDS`] (not cumulative; one more for `+Inf`) and
/// the sum of the observations in seconds.
pub fn write_bucket_counts(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    counts: &[u64],
    sum_seconds: f64,
) {
    debug_assert_eq!(counts.len(), LATENCY_BUCKETS_SECONDS.len() + 1);
    let mut cumulative = 0u64;
    for (i, count) in counts.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let le = LATENCY_BUCKETS_SECONDS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), f64::to_string);
        let _ = write!(out, "{name}_bucket");
        write_labels(out, labels, Some(&le));
        let _ = writeln!(out, " {cumulative}");
    }
    let _ = write!(out, "{name}_sum");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {sum_seconds}");
    let _ = write!(out, "{name}_count");
    write_labels(out, labels, None);
    let _ = writeln!(out, " {cumulative}");
}

/// Counts per bucket of [`LATENCY_BUCKETS_SECONDS`] (not cumulative; one
/// more for `+Inf`) of `histogram`: exact to the HDR histogram's resolution
/// (3 significant digits: a sample in the same HDR bucket as a bound counts
/// at or below it).
pub fn bucket_counts(histogram: &LatencyHistogram) -> Vec<u64> {
    let mut counts = Vec::with_capacity(LATENCY_BUCKETS_SECONDS.len() + 1);
    let mut below = 0u64;
    for le in LATENCY_BUCKETS_SECONDS {
        let at_or_below = histogram.count_at_or_below(crate::saturating_secs(*le));
        counts.push(at_or_below.saturating_sub(below));
        below = at_or_below;
    }
    counts.push(histogram.count().saturating_sub(below));
    counts
}

/// The samples of `histogram` as a Prometheus histogram in seconds over
/// [`LATENCY_BUCKETS_SECONDS`] ([`bucket_counts`]; the sum is
/// [`LatencyHistogram::sum_seconds`]).
pub fn write_histogram(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    histogram: &LatencyHistogram,
) {
    let counts = bucket_counts(histogram);
    write_bucket_counts(out, name, labels, &counts, histogram.sum_seconds());
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (key, value) in labels {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{key}=\"{}\"", escape_label_value(value));
    }
    if let Some(le) = le {
        if !first {
            out.push(',');
        }
        let _ = write!(out, "le=\"{le}\"");
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_cumulative_and_end_in_the_count() {
        let mut h = LatencyHistogram::new();
        for ms in [1u64, 1, 7, 300, 20_000] {
            let _ = h.record(Duration::from_millis(ms));
        }
        let mut out = String::new();
        write_histogram(&mut out, "x_seconds", &[], &h);
        let value = |le: &str| -> u64 {
            let prefix = format!("x_seconds_bucket{{le=\"{le}\"}} ");
            out.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        assert_eq!(value("0.001"), 2, "{out}");
        assert_eq!(value("0.01"), 3, "{out}");
        assert_eq!(value("0.5"), 4, "{out}");
        assert_eq!(value("10"), 4, "{out}");
        assert_eq!(value("+Inf"), 5, "{out}");
        assert!(out.contains("x_seconds_count 5\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        write_sample(&mut out, "y", &[("name", "a\"b\\c\nd")], 1.0);
        assert_eq!(out, "y{name=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
