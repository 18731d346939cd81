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
    fn every_cut_of_a_tricky_exposition_parses_or_is_skipped_without_panicking() {
        let text = "a_b:c{x=\"q\\\"}{,\\n\",é=\"1\",_y=\"\"} -Inf 17\nz{} +Inf\nNaN 1\n";
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let _ = samples(&text[..cut]).count();
            let _ = samples(&text[cut..]).count();
            let _ = label_matchers(&text[..cut]);
        }
        let all: Vec<_> = samples("a{x=\"q\\\"}{,\\n\"} 2\nz{} +Inf\n9bad 1\n").collect();
        assert_eq!(all.len(), 2, "{all:?}");
        // OpenMetrics: a float timestamp and an exemplar after the value.
        let om: Vec<_> =
            samples("c_total 4 1700000000.5\nb_bucket{le=\"1\"} 3 # {trace_id=\"x\"} 0.5 1.2\n")
                .collect();
        assert_eq!((om[0].value, om[1].value), (4.0, 3.0));
        // An empty matcher also matches a sample without the label.
        let m = |text| label_matchers(text).unwrap();
        assert!(om[0].matches(&m("le=\"\"")) && !om[1].matches(&m("le=\"\"")));
        assert!(om[1].matches(&m("le=\"1\"")) && !om[0].matches(&m("le=\"1\"")));
        assert_eq!(all[0].labels, vec![("x", "q\"}{,\n".to_owned())]);
        assert_eq!(all[1].value, f64::INFINITY);
        // Sample lines written by this module read back.
        let mut out = String::new();
        write_sample(&mut out, "w", &[("path", "/a\"b\\c\nd")], 3.5);
        let back: Vec<_> = samples(&out).collect();
        assert_eq!(back[0].labels, vec![("path", "/a\"b\\c\nd".to_owned())]);
        assert_eq!(back[0].value, 3.5);
    }

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

/// One sample line of the text format: `name{label="value",...} value`
/// (an optional timestamp after the value is ignored).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The series name, e.g. `http_requests_total` or `x_bucket`.
    pub name: &'a str,
    /// Label names and their values, unescaped, in the line's order.
    pub labels: Vec<(&'a str, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl Sample<'_> {
    /// Whether every `(name, value)` of `matchers` holds as PromQL's
    /// `{name="value"}` does: the label has exactly that value, and an empty
    /// value also matches a sample without the label.
    pub fn matches(&self, matchers: &[(String, String)]) -> bool {
        matchers.iter().all(|(k, v)| {
            let value = self
                .labels
                .iter()
                .find(|(n, _)| n == k)
                .map_or("", |(_, x)| x.as_str());
            value == v
        })
    }
}

/// The sample lines of a text exposition, in order. Comments (`# HELP`,
/// `# TYPE`) and blank lines are skipped, as are a timestamp (integer
/// milliseconds, or OpenMetrics' seconds) and an OpenMetrics exemplar
/// (`# {...} value`) after the value; a line that is not a valid sample
/// is skipped too (a scrape is read for what it holds, as Prometheus reads a
/// target's), so a parse error never hides the other series.
///
/// ```
/// use perf_core::prometheus::samples;
/// let text = "# TYPE up gauge\nup{job=\"api\",path=\"/a,b\"} 1\nrequests_total 7 1700000000\n";
/// let all: Vec<_> = samples(text).collect();
/// assert_eq!(all[0].name, "up");
/// assert_eq!(all[0].labels, vec![("job", "api".to_owned()), ("path", "/a,b".to_owned())]);
/// assert_eq!((all[1].name, all[1].value), ("requests_total", 7.0));
/// ```
pub fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        parse_sample(line)
    })
}

/// Label matchers written as PromQL writes them inside braces:
/// `cluster_name="api", env="prod"` (exact equality only).
///
/// # Errors
/// [`Error::InvalidLabelMatcher`] naming what is wrong: a name that is not
/// a Prometheus label name, a value not in double quotes, or an operator
/// other than `=`.
///
/// ```
/// use perf_core::prometheus::label_matchers;
/// let m = label_matchers(r#"cluster_name="api", env="a\"b""#)?;
/// assert_eq!(m, vec![("cluster_name".into(), "api".into()), ("env".into(), "a\"b".into())]);
/// assert!(label_matchers("cluster_name=~\"a.*\"").is_err());
/// # Ok::<(), perf_core::Error>(())
/// ```
pub fn label_matchers(text: &str) -> crate::Result<Vec<(String, String)>> {
    let bad = |reason: &str| crate::Error::InvalidLabelMatcher {
        input: text.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    let mut rest = text.trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (name, after) = label_name(rest)
            .ok_or_else(|| bad("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)"))?;
        let after = after
            .trim_start()
            .strip_prefix('=')
            .filter(|a| !a.starts_with('~'))
            .ok_or_else(|| bad("only exact matchers (name=\"value\") are supported"))?;
        let (value, after) =
            quoted(after.trim_start()).ok_or_else(|| bad("a value must be in double quotes"))?;
        out.push((name.to_owned(), value));
        rest = after.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(bad("matchers are separated by commas"));
        }
    }
    if out.is_empty() {
        return Err(bad("no matcher given"));
    }
    Ok(out)
}

/// `name{labels} value [timestamp]`, or `None` when the line is not one.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    if !is_metric_name(name) {
        return None;
    }
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        loop {
            inner = inner.trim_start();
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = label_name(inner)?;
            let (value, after) = quoted(after.trim_start().strip_prefix('=')?.trim_start())?;
            labels.push((label, value));
            inner = after.trim_start();
            if let Some(after) = inner.strip_prefix(',') {
                inner = after;
            } else if !inner.starts_with('}') {
                return None;
            }
        }
    }
    // An OpenMetrics exemplar starts at ` # `; the value and an optional
    // timestamp come before it.
    let rest = rest.split_once(" # ").map_or(rest, |(before, _)| before);
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if fields.next().is_some_and(|t| t.parse::<f64>().is_err()) || fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label name at the start of `text`, and what follows it.
fn label_name(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    let first = name.chars().next()?;
    (first.is_ascii_alphabetic() || first == '_').then_some((name, &text[end..]))
}

/// A double-quoted, escaped value at the start of `text` (`\\`, `\"`,
/// `\n`), unescaped, and what follows its closing quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}
