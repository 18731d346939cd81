//! Load tests in the Prometheus text exposition format, so a Prometheus
//! that scrapes the process running them graphs them beside the system (the
//! role of k6's Prometheus output).
//!
//! Families, each labelled `test` (the test's name) and `test_id`:
//! `perf_loadtest_requests_total{request}`,
//! `perf_loadtest_request_duration_seconds{request}` (a histogram, intended
//! time: without coordinated omission), `perf_loadtest_errors_total{kind}`
//! (the transport's kinds, and `http_<status>` for an error status),
//! `perf_loadtest_dropped_total`, `perf_loadtest_checks_total{check,result}`
//! and `perf_loadtest_running` (1 while it runs, 0 once finished).
//!
//! Cardinality is bounded by the run, not by the traffic: `request` is one of
//! the scenario's request or step names (at most 100, the scenario limit),
//! `kind` one of the engine's fixed set of error kinds or an HTTP error
//! status the target sent, `check` one of the scenario's checks; the caller
//! bounds the number of tests it passes.
//!
//! A test is exposed through its [`ExposedFigures`]: the counters and, per
//! request, the histogram's bucket counts (a few hundred bytes a request,
//! not the report's HDR histograms).

use perf_core::prometheus::{bucket_counts, write_bucket_counts, write_header, write_sample};

use crate::RunReport;

/// What the exposition needs of a run's report, compact enough to keep for
/// every exposed test.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExposedFigures {
    /// Per request (or step) name: requests, latency bucket counts over
    /// [`perf_core::prometheus::LATENCY_BUCKETS_SECONDS`] (and `+Inf`), the
    /// latencies' sum in seconds.
    pub requests: Vec<(String, u64, Vec<u64>, f64)>,
    /// Failed requests by kind (`http_<status>` for an error status).
    pub errors: Vec<(String, u64)>,
    /// Arrivals dropped (open model).
    pub dropped: u64,
    /// Per check: passes, fails.
    pub checks: Vec<(String, u64, u64)>,
}

impl From<&RunReport> for ExposedFigures {
    fn from(report: &RunReport) -> Self {
        let requests = report
            .per_request
            .iter()
            .map(|(name, r)| {
                let (buckets, sum) = report.histograms.per_request.get(name).map_or_else(
                    || {
                        (
                            vec![0; perf_core::prometheus::LATENCY_BUCKETS_SECONDS.len() + 1],
                            0.0,
                        )
                    },
                    |(corrected, _)| (bucket_counts(corrected), corrected.sum_seconds()),
                );
                (name.clone(), r.requests, buckets, sum)
            })
            .collect();
        let errors = report
            .errors_by_cause()
            .map(|(cause, n)| match cause {
                crate::ErrorCause::Transport(kind) => (kind.to_owned(), n),
                crate::ErrorCause::Status(code) => (format!("http_{code}"), n),
            })
            .collect();
        let checks = report
            .checks
            .iter()
            .map(|(name, c)| (name.clone(), c.passes, c.fails))
            .collect();
        Self {
            requests,
            errors,
            dropped: report.dropped,
            checks,
        }
    }
}

/// One test to expose: its name, its id, its figures so far (or final),
/// and whether it still runs.
#[derive(Debug, Clone, Copy)]
pub struct ExposedTest<'a> {
    /// The `test` label.
    pub name: &'a str,
    /// The `test_id` label.
    pub id: &'a str,
    /// What it measured so far.
    pub figures: &'a ExposedFigures,
    /// Whether it still runs.
    pub running: bool,
}

/// The families above for `tests`, with their HELP and TYPE lines (none
/// when `tests` is empty).
///
/// ```
/// let mut report = perf_loadgen::RunReport::default();
/// report.error_kinds.insert("timeout".into(), 2);
/// report.status_codes.insert("503".into(), 1);
/// let figures = perf_loadgen::ExposedFigures::from(&report);
/// let text = perf_loadgen::render_prometheus(&[perf_loadgen::ExposedTest {
///     name: "smoke", id: "t1", figures: &figures, running: true,
/// }]);
/// assert!(text.contains("perf_loadtest_running{test=\"smoke\",test_id=\"t1\"} 1"));
/// assert!(text.contains("perf_loadtest_errors_total{test=\"smoke\",test_id=\"t1\",kind=\"timeout\"} 2"));
/// assert!(text.contains("perf_loadtest_errors_total{test=\"smoke\",test_id=\"t1\",kind=\"http_503\"} 1"));
/// ```
pub fn render_prometheus(tests: &[ExposedTest<'_>]) -> String {
    let mut out = String::new();
    if tests.is_empty() {
        return out;
    }
    write_header(
        &mut out,
        "perf_loadtest_running",
        "gauge",
        "1 while the load test runs, 0 once it finished (kept a few minutes).",
    );
    for t in tests {
        let labels = [("test", t.name), ("test_id", t.id)];
        write_sample(
            &mut out,
            "perf_loadtest_running",
            &labels,
            f64::from(u8::from(t.running)),
        );
    }
    write_header(
        &mut out,
        "perf_loadtest_requests_total",
        "counter",
        "Requests the load test sent, by request (or journey step) name.",
    );
    for t in tests {
        for (request, requests, _, _) in &t.figures.requests {
            let labels = [
                ("test", t.name),
                ("test_id", t.id),
                ("request", request.as_str()),
            ];
            write_sample(
                &mut out,
                "perf_loadtest_requests_total",
                &labels,
                *requests as f64,
            );
        }
    }
    write_header(
        &mut out,
        "perf_loadtest_request_duration_seconds",
        "histogram",
        "Latency of the load test's requests from their intended start (no coordinated omission), by request name.",
    );
    for t in tests {
        for (request, _, buckets, sum) in &t.figures.requests {
            let labels = [
                ("test", t.name),
                ("test_id", t.id),
                ("request", request.as_str()),
            ];
            write_bucket_counts(
                &mut out,
                "perf_loadtest_request_duration_seconds",
                &labels,
                buckets,
                *sum,
            );
        }
    }
    write_header(
        &mut out,
        "perf_loadtest_errors_total",
        "counter",
        "Failed requests of the load test, by kind: connect, tls, timeout, reset, protocol (no answer), http_<status> (an error status).",
    );
    for t in tests {
        for (kind, count) in &t.figures.errors {
            let labels = [("test", t.name), ("test_id", t.id), ("kind", kind.as_str())];
            write_sample(
                &mut out,
                "perf_loadtest_errors_total",
                &labels,
                *count as f64,
            );
        }
    }
    write_header(
        &mut out,
        "perf_loadtest_dropped_total",
        "counter",
        "Arrivals of the open model that found no free slot and were not sent.",
    );
    for t in tests {
        let labels = [("test", t.name), ("test_id", t.id)];
        write_sample(
            &mut out,
            "perf_loadtest_dropped_total",
            &labels,
            t.figures.dropped as f64,
        );
    }
    write_header(
        &mut out,
        "perf_loadtest_checks_total",
        "counter",
        "Checks of the load test's responses, by check and result (pass, fail).",
    );
    for t in tests {
        for (check, passes, fails) in &t.figures.checks {
            for (result, n) in [("pass", passes), ("fail", fails)] {
                let labels = [
                    ("test", t.name),
                    ("test_id", t.id),
                    ("check", check.as_str()),
                    ("result", result),
                ];
                write_sample(&mut out, "perf_loadtest_checks_total", &labels, *n as f64);
            }
        }
    }
    out
}
