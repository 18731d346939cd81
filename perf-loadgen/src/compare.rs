//! Regression detection: is this run slower than its baseline, beyond noise?
//!
//! - [`compare`] judges a run against one pinned baseline run. Each latency
//!   percentile gets a distribution-free confidence interval from its own
//!   histogram (the rank of a sample quantile is binomial), throughput one from
//!   the per-second timeline, the error rate a Wilson interval; the difference
//!   counts only when its whole interval lies outside a noise band.
//! - [`compare_to_history`] judges a run against several earlier runs of the
//!   same scenario: the band is widened to what those runs varied among
//!   themselves, which is what keeps identical builds on a noisy machine at
//!   `unchanged`.
//! - [`change_points`] finds where a series of runs shifted (E-divisive means
//!   with a permutation test, as Apache Otava/Hunter do).

use serde::{Deserialize, Serialize};

use crate::RunReport;
use perf_core::LatencyHistogram;

/// What a comparison says about one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Better beyond the noise band, with confidence.
    Improved,
    /// Within the noise band, or not distinguishable.
    Unchanged,
    /// Worse beyond the noise band, with confidence.
    Regressed,
}

/// One metric of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    /// `p50`, `p95`, `p99` (ms), `rps` (req/s) or `error_rate` (fraction).
    pub metric: String,
    /// Baseline value.
    pub baseline: f64,
    /// This run's value.
    pub current: f64,
    /// `(current - baseline) / baseline`, percent (positive: larger).
    pub change_percent: f64,
    /// Lower end of the change's confidence interval, percent.
    pub change_low_percent: f64,
    /// Upper end of the change's confidence interval, percent.
    pub change_high_percent: f64,
    /// Changes within ± this many percent count as noise.
    pub noise_band_percent: f64,
    /// Confidence level of the interval (e.g. 0.95).
    pub confidence: f64,
    /// The verdict.
    pub verdict: Verdict,
}

/// A run judged against a baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// One entry per metric.
    pub metrics: Vec<MetricComparison>,
    /// Whether any metric regressed.
    pub regressed: bool,
}

/// How strict a comparison is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompareOptions {
    /// Latency changes within ± this many percent are noise (default 10).
    pub latency_band_percent: f64,
    /// Throughput changes within ± this many percent are noise (default 10).
    pub throughput_band_percent: f64,
    /// Error-rate changes within ± this many percentage points are noise (default 0.1).
    pub error_rate_band_points: f64,
    /// Confidence level of the intervals (default 0.95).
    pub confidence: f64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            latency_band_percent: 10.0,
            throughput_band_percent: 10.0,
            error_rate_band_points: 0.1,
            confidence: 0.95,
        }
    }
}

/// A value and its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Estimate {
    value: f64,
    low: f64,
    high: f64,
}

/// Two-sided normal quantile for a confidence level (0.8 to 0.999).
fn z_for(confidence: f64) -> f64 {
    // Acklam's rational approximation of the inverse normal CDF is more than
    // we need: the usual levels, interpolated.
    let table = [
        (0.80, 1.2816),
        (0.90, 1.6449),
        (0.95, 1.9600),
        (0.98, 2.3263),
        (0.99, 2.5758),
        (0.995, 2.8070),
        (0.999, 3.2905),
    ];
    let c = confidence.clamp(0.80, 0.999);
    for w in table.windows(2) {
        let ((c0, z0), (c1, z1)) = (w[0], w[1]);
        if c <= c1 {
            return z0 + (z1 - z0) * (c - c0) / (c1 - c0);
        }
    }
    3.2905
}

/// Distribution-free interval of the `q` quantile (0-1) from a histogram: the
/// rank of the sample quantile is Binomial(n, q).
fn quantile_estimate(h: &LatencyHistogram, q: f64, z: f64) -> Estimate {
    let n = h.count().max(1) as f64;
    let spread = z * (q * (1.0 - q) / n).sqrt();
    let at = |p: f64| h.percentile(p.clamp(0.0, 1.0) * 100.0).as_secs_f64() * 1000.0;
    Estimate {
        value: at(q),
        low: at(q - spread),
        high: at(q + spread),
    }
}

/// Mean of the per-second throughput and its interval (full seconds only).
fn throughput_estimate(r: &RunReport, z: f64) -> Estimate {
    let rows: Vec<f64> = r
        .timeline
        .iter()
        .filter(|row| row.span_s == 1)
        .map(|row| row.rps)
        .collect();
    if rows.len() < 3 {
        return Estimate {
            value: r.rps,
            low: r.rps,
            high: r.rps,
        };
    }
    // Drop the first and last second (ramp, partial) when there are enough.
    let core = if rows.len() > 6 {
        &rows[1..rows.len() - 1]
    } else {
        &rows[..]
    };
    let n = core.len() as f64;
    let mean = core.iter().sum::<f64>() / n;
    let var = core.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = z * (var / n).sqrt();
    Estimate {
        value: r.rps,
        low: r.rps - half,
        high: r.rps + half,
    }
}

/// Wilson interval of the error rate.
fn error_rate_estimate(r: &RunReport, z: f64) -> Estimate {
    let n = r.requests.max(1) as f64;
    let p = r.errors as f64 / n;
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denom;
    Estimate {
        value: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

/// Judges one metric. `higher_is_worse`: latency and errors; not throughput.
fn judge(
    metric: &str,
    base: Estimate,
    cur: Estimate,
    band_percent: f64,
    absolute_band: Option<f64>,
    higher_is_worse: bool,
    confidence: f64,
) -> MetricComparison {
    let scale = if base.value.abs() > f64::EPSILON {
        base.value
    } else {
        1.0
    };
    let pct = |x: f64| x / scale * 100.0;
    // Conservative interval of the difference: the extremes of both intervals.
    let (low, high) = (cur.low - base.high, cur.high - base.low);
    let (band_low, band_high) = match absolute_band {
        Some(points) => (-points / 100.0, points / 100.0),
        None => (-band_percent / 100.0 * scale, band_percent / 100.0 * scale),
    };
    let above = low > band_high;
    let below = high < band_low;
    let verdict = match (above, below, higher_is_worse) {
        (true, _, true) | (_, true, false) => Verdict::Regressed,
        (true, _, false) | (_, true, true) => Verdict::Improved,
        _ => Verdict::Unchanged,
    };
    MetricComparison {
        metric: metric.to_owned(),
        baseline: base.value,
        current: cur.value,
        change_percent: pct(cur.value - base.value),
        change_low_percent: pct(low),
        change_high_percent: pct(high),
        noise_band_percent: match absolute_band {
            Some(points) => pct(points / 100.0),
            None => band_percent,
        },
        confidence,
        verdict,
    }
}

fn estimates(r: &RunReport, z: f64) -> [(&'static str, Estimate); 5] {
    let h = &r.histograms.latency;
    [
        ("p50", quantile_estimate(h, 0.50, z)),
        ("p95", quantile_estimate(h, 0.95, z)),
        ("p99", quantile_estimate(h, 0.99, z)),
        ("rps", throughput_estimate(r, z)),
        ("error_rate", error_rate_estimate(r, z)),
    ]
}

fn finish(metrics: Vec<MetricComparison>) -> Comparison {
    let regressed = metrics.iter().any(|m| m.verdict == Verdict::Regressed);
    Comparison { metrics, regressed }
}

/// Judges `current` against one pinned `baseline` run.
///
/// ```no_run
/// # fn demo(baseline: &perf_loadgen::RunReport, current: &perf_loadgen::RunReport) {
/// use perf_loadgen::{compare, CompareOptions, Verdict};
/// let c = compare(baseline, current, &CompareOptions::default());
/// for m in &c.metrics {
///     println!("{} {:+.1} % [{:+.1}, {:+.1}] {:?}", m.metric, m.change_percent, m.change_low_percent, m.change_high_percent, m.verdict);
/// }
/// assert!(!c.regressed);
/// # }
/// ```
pub fn compare(baseline: &RunReport, current: &RunReport, options: &CompareOptions) -> Comparison {
    let z = z_for(options.confidence);
    let metrics = estimates(baseline, z)
        .into_iter()
        .zip(estimates(current, z))
        .map(|((name, base), (_, cur))| match name {
            "rps" => judge(
                name,
                base,
                cur,
                options.throughput_band_percent,
                None,
                false,
                options.confidence,
            ),
            "error_rate" => judge(
                name,
                base,
                cur,
                0.0,
                Some(options.error_rate_band_points),
                true,
                options.confidence,
            ),
            _ => judge(
                name,
                base,
                cur,
                options.latency_band_percent,
                None,
                true,
                options.confidence,
            ),
        })
        .collect();
    finish(metrics)
}

/// Judges `current` against earlier runs of the same scenario and target.
/// The baseline value is the median of the history; the noise band is the
/// larger of the configured band and three robust standard deviations
/// (1.4826 × the median absolute deviation) of the history, in percent.
pub fn compare_to_history(
    history: &[RunReport],
    current: &RunReport,
    options: &CompareOptions,
) -> Option<Comparison> {
    if history.is_empty() {
        return None;
    }
    let z = z_for(options.confidence);
    let per_run: Vec<[(&'static str, Estimate); 5]> =
        history.iter().map(|r| estimates(r, z)).collect();
    let cur = estimates(current, z);
    let metrics = (0..5)
        .map(|i| {
            let name = cur[i].0;
            let values: Vec<f64> = per_run.iter().map(|e| e[i].1.value).collect();
            let centre = median(&values);
            let mad = median(
                &values
                    .iter()
                    .map(|v| (v - centre).abs())
                    .collect::<Vec<_>>(),
            ) * 1.4826;
            let spread_percent = if centre.abs() > f64::EPSILON {
                3.0 * mad / centre * 100.0
            } else {
                0.0
            };
            // The baseline's own interval: the history's middle, as tight as its runs.
            let base = Estimate {
                value: centre,
                low: median(&per_run.iter().map(|e| e[i].1.low).collect::<Vec<_>>()).min(centre),
                high: median(&per_run.iter().map(|e| e[i].1.high).collect::<Vec<_>>()).max(centre),
            };
            match name {
                "rps" => judge(
                    name,
                    base,
                    cur[i].1,
                    options.throughput_band_percent.max(spread_percent),
                    None,
                    false,
                    options.confidence,
                ),
                "error_rate" => {
                    let points = options.error_rate_band_points.max(3.0 * mad * 100.0);
                    judge(
                        name,
                        base,
                        cur[i].1,
                        0.0,
                        Some(points),
                        true,
                        options.confidence,
                    )
                }
                _ => judge(
                    name,
                    base,
                    cur[i].1,
                    options.latency_band_percent.max(spread_percent),
                    None,
                    true,
                    options.confidence,
                ),
            }
        })
        .collect();
    Some(finish(metrics))
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// Where a series of per-run values shifted: indices `i` such that runs
/// `..i` and `i..` differ, found by E-divisive means (Matteson & James) with a
/// permutation test at `significance` (e.g. 0.05). Segments shorter than
/// `min_size` runs are not split.
///
/// ```
/// let series: Vec<f64> = (0..30).map(|i| if i < 15 { 10.0 + (i % 3) as f64 * 0.1 } else { 12.0 + (i % 3) as f64 * 0.1 }).collect();
/// assert_eq!(perf_loadgen::change_points(&series, 0.05, 3), vec![15]);
/// ```
pub fn change_points(series: &[f64], significance: f64, min_size: usize) -> Vec<usize> {
    let min_size = min_size.max(2);
    let mut found = Vec::new();
    let mut segments = vec![(0usize, series.len())];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    while let Some((start, end)) = segments.pop() {
        let slice = &series[start..end];
        let Some((split, stat)) = best_split(slice, min_size) else {
            continue;
        };
        // Permutation test: how often does shuffled data split as well?
        let permutations = 199;
        let mut as_good = 0;
        let mut shuffled = slice.to_vec();
        for _ in 0..permutations {
            rng.shuffle(&mut shuffled);
            if best_split(&shuffled, min_size).is_some_and(|(_, s)| s >= stat) {
                as_good += 1;
            }
        }
        let p = f64::from(as_good + 1) / f64::from(permutations + 1);
        if p <= significance {
            found.push(start + split);
            segments.push((start, start + split));
            segments.push((start + split, end));
        }
    }
    found.sort_unstable();
    found
}

/// The split of `x` maximizing the energy-distance statistic.
fn best_split(x: &[f64], min_size: usize) -> Option<(usize, f64)> {
    let n = x.len();
    if n < 2 * min_size {
        return None;
    }
    let mut best: Option<(usize, f64)> = None;
    for tau in min_size..=n - min_size {
        let (a, b) = x.split_at(tau);
        let between = mean_abs_diff(a, b);
        let within_a = mean_abs_diff_self(a);
        let within_b = mean_abs_diff_self(b);
        let (m, k) = (a.len() as f64, b.len() as f64);
        let stat = m * k / (m + k) * (2.0 * between - within_a - within_b);
        if best.is_none_or(|(_, s)| stat > s) {
            best = Some((tau, stat));
        }
    }
    best
}

fn mean_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    let mut sum = 0.0;
    for x in a {
        for y in b {
            sum += (x - y).abs();
        }
    }
    sum / (a.len() * b.len()) as f64
}

fn mean_abs_diff_self(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 2 {
        return 0.0;
    }
    let mut sum = 0.0;
    for i in 0..n {
        for j in i + 1..n {
            sum += (a[i] - a[j]).abs();
        }
    }
    sum / (n * (n - 1) / 2) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::ReportMeta;
    use crate::stats::{NameStats, TimelineRow, Totals};
    use std::time::Duration;

    /// A report whose latencies are `n` draws of a lognormal around `median_us`
    /// scaled by `scale`, at about `rps` requests per second over 30 s.
    fn synthetic(seed: u64, scale: f64, n: usize, rps: f64, errors: u64) -> RunReport {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut h = LatencyHistogram::new();
        for _ in 0..n {
            // Box-Muller normal, then lognormal with sigma 0.5 around 2 ms.
            let (u1, u2) = (1.0 - rng.f64(), rng.f64());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let us = 2000.0 * (0.5 * z).exp() * scale;
            h.record_micros(us as u64).unwrap();
        }
        let timeline = (0..30)
            .map(|t| TimelineRow {
                t_s: t,
                span_s: 1,
                requests: rps as u64,
                errors: 0,
                rps: rps * (1.0 + (rng.f64() - 0.5) * 0.04),
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                users: 0,
                in_flight: 0,
                dropped: 0,
                ..TimelineRow::default()
            })
            .collect();
        let totals = Totals {
            per_name: vec![NameStats {
                requests: n as u64,
                errors,
                corrected: h.clone(),
                uncorrected: h.clone(),
            }],
            corrected: h.clone(),
            uncorrected: h,
            requests: n as u64,
            errors,
            ..Totals::default()
        };
        let meta = ReportMeta {
            scenario: "s".into(),
            open_model: false,
            targets: vec![],
            started_at_ms: 0,
            duration: Duration::from_secs(30),
            dropped: 0,
            stopped_early: None,
            thresholds: vec![],
            first_failure: None,
            generator: Default::default(),
            tls: None,
            checks: Default::default(),
            flows: Default::default(),
            protocol: "http/1.1".to_owned(),
        };
        let mut r = RunReport::build(meta, &["GET /".into()], &totals, timeline);
        r.rps = rps;
        r
    }

    fn verdict(c: &Comparison, metric: &str) -> Verdict {
        c.metrics
            .iter()
            .find(|m| m.metric == metric)
            .unwrap()
            .verdict
    }

    #[test]
    fn same_distribution_reads_unchanged() {
        let opts = CompareOptions::default();
        for seed in 1..20 {
            let c = compare(
                &synthetic(seed, 1.0, 50_000, 1000.0, 0),
                &synthetic(seed + 100, 1.0, 50_000, 1000.0, 0),
                &opts,
            );
            assert!(!c.regressed, "seed {seed}: {c:?}");
            assert!(
                c.metrics.iter().all(|m| m.verdict == Verdict::Unchanged),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_twenty_percent_slowdown_regresses_and_a_speedup_improves() {
        let opts = CompareOptions::default();
        let base = synthetic(1, 1.0, 50_000, 1000.0, 0);
        let slow = compare(&base, &synthetic(2, 1.2, 50_000, 1000.0, 0), &opts);
        assert_eq!(verdict(&slow, "p95"), Verdict::Regressed, "{slow:?}");
        assert!(slow.regressed);
        let p95 = slow.metrics.iter().find(|m| m.metric == "p95").unwrap();
        assert!((p95.change_percent - 20.0).abs() < 4.0, "{p95:?}");
        assert!(p95.change_low_percent > 10.0 && p95.change_high_percent > p95.change_percent);
        let fast = compare(&base, &synthetic(3, 0.8, 50_000, 1000.0, 0), &opts);
        assert_eq!(verdict(&fast, "p95"), Verdict::Improved);
        assert!(!fast.regressed);
    }

    #[test]
    fn too_few_samples_cannot_claim_a_change() {
        let c = compare(
            &synthetic(1, 1.0, 30, 1000.0, 0),
            &synthetic(2, 1.2, 30, 1000.0, 0),
            &CompareOptions::default(),
        );
        assert_eq!(verdict(&c, "p99"), Verdict::Unchanged, "{c:?}");
    }

    #[test]
    fn throughput_drop_and_error_rise_regress() {
        let opts = CompareOptions::default();
        let base = synthetic(1, 1.0, 50_000, 1000.0, 0);
        assert_eq!(
            verdict(
                &compare(&base, &synthetic(2, 1.0, 50_000, 700.0, 0), &opts),
                "rps"
            ),
            Verdict::Regressed
        );
        assert_eq!(
            verdict(
                &compare(&base, &synthetic(2, 1.0, 50_000, 1000.0, 500), &opts),
                "error_rate"
            ),
            Verdict::Regressed
        );
        assert_eq!(
            verdict(
                &compare(&base, &synthetic(2, 1.0, 50_000, 1000.0, 5), &opts),
                "error_rate"
            ),
            Verdict::Unchanged
        );
    }

    #[test]
    fn history_absorbs_machine_noise_but_not_a_real_shift() {
        let opts = CompareOptions {
            latency_band_percent: 5.0,
            ..CompareOptions::default()
        };
        // Runs of one build on a noisy machine: each run ±12 % slower or faster.
        let noise = [1.0, 1.08, 0.93, 1.12, 0.97, 1.04, 0.9, 1.1, 1.0, 0.95];
        let history: Vec<RunReport> = noise
            .iter()
            .enumerate()
            .map(|(i, s)| synthetic(i as u64, *s, 20_000, 1000.0, 0))
            .collect();
        let mut false_positives = 0;
        for (i, s) in [1.05, 0.92, 1.1, 0.96, 1.02].iter().enumerate() {
            let c = compare_to_history(
                &history,
                &synthetic(100 + i as u64, *s, 20_000, 1000.0, 0),
                &opts,
            )
            .unwrap();
            false_positives += usize::from(c.regressed);
        }
        assert_eq!(false_positives, 0);
        let shifted =
            compare_to_history(&history, &synthetic(200, 1.5, 20_000, 1000.0, 0), &opts).unwrap();
        assert_eq!(verdict(&shifted, "p95"), Verdict::Regressed, "{shifted:?}");
        assert!(compare_to_history(&[], &history[0], &opts).is_none());
    }

    #[test]
    fn change_points_are_found_where_they_are_and_nowhere_else() {
        let mut rng = fastrand::Rng::with_seed(9);
        let noisy = |level: f64, rng: &mut fastrand::Rng| level * (1.0 + (rng.f64() - 0.5) * 0.06);
        let series: Vec<f64> = (0..60)
            .map(|i| {
                noisy(
                    if i < 20 {
                        10.0
                    } else if i < 40 {
                        12.0
                    } else {
                        9.0
                    },
                    &mut rng,
                )
            })
            .collect();
        let found = change_points(&series, 0.05, 4);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].abs_diff(20) <= 1 && found[1].abs_diff(40) <= 1,
            "{found:?}"
        );
        let flat: Vec<f64> = (0..60).map(|_| noisy(10.0, &mut rng)).collect();
        assert!(change_points(&flat, 0.01, 4).is_empty());
        assert!(change_points(&[1.0, 2.0], 0.05, 3).is_empty());
    }
}
