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
//! the scenario's request or step names (at most 64 per run, the recorder's
//! limit), `kind` one of the engine's fixed set of error kinds or an
//! HTTP error status (at most 200 values), `check` one of the scenario's checks; the caller bounds the number of
//! tests it passes.

use perf_core::prometheus::{write_header, write_histogram, write_sample};

use crate::RunReport;

/// One test to expose: its name, its id, its report so far (or final),
/// and whether it still runs.
#[derive(Debug, Clone, Copy)]
pub struct ExposedTest<'a> {
    /// The `test` label.
    pub name: &'a str,
    /// The `test_id` label.
    pub id: &'a str,
    /// What it measured so far.
    pub report: &'a RunReport,
    /// Whether it still runs.
    pub running: bool,
}

/// The families above for `tests`, with their HELP and TYPE lines (none
/// when `tests` is empty).
///
/// ```
/// let mut report = perf_loadgen::RunReport::default();
/// report.error_kinds.insert("timeout".into(), 2);
/// let text = perf_loadgen::render_prometheus(&[perf_loadgen::ExposedTest {
///     name: "smoke", id: "t1", report: &report, running: true,
/// }]);
/// assert!(text.contains("perf_loadtest_running{test=\"smoke\",test_id=\"t1\"} 1"));
/// assert!(text.contains("perf_loadtest_errors_total{test=\"smoke\",test_id=\"t1\",kind=\"timeout\"} 2"));
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
        for (request, r) in &t.report.per_request {
            let labels = [
                ("test", t.name),
                ("test_id", t.id),
                ("request", request.as_str()),
            ];
            write_sample(
                &mut out,
                "perf_loadtest_requests_total",
                &labels,
                r.requests as f64,
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
        for (request, (corrected, _)) in &t.report.histograms.per_request {
            let labels = [
                ("test", t.name),
                ("test_id", t.id),
                ("request", request.as_str()),
            ];
            write_histogram(
                &mut out,
                "perf_loadtest_request_duration_seconds",
                &labels,
                corrected,
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
        let statuses = t.report.status_codes.iter().filter_map(|(code, count)| {
            let failed = code.parse::<u16>().is_ok_and(|c| c >= 400);
            failed.then(|| (format!("http_{code}"), count))
        });
        let kinds = t.report.error_kinds.iter().map(|(k, c)| (k.clone(), c));
        for (kind, count) in kinds.chain(statuses) {
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
            t.report.dropped as f64,
        );
    }
    write_header(
        &mut out,
        "perf_loadtest_checks_total",
        "counter",
        "Checks of the load test's responses, by check and result (pass, fail).",
    );
    for t in tests {
        for (check, count) in &t.report.checks {
            for (result, n) in [("pass", count.passes), ("fail", count.fails)] {
                let labels = [
                    ("test", t.name),
                    ("test_id", t.id),
                    ("check", check.as_str()),
                    ("result", result),
                ];
                write_sample(&mut out, "perf_loadtest_checks_total", &labels, n as f64);
            }
        }
    }
    out
}
