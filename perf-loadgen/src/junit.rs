//! JUnit XML of a run (feature `junit`), for CI systems that read test
//! results: the thresholds and the regression verdicts as test cases.

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::{Comparison, RunReport, Verdict};

impl RunReport {
    /// JUnit XML for a CI system: one test case per threshold and per
    /// regression check (written by `quick-junit`, nextest's serializer: it
    /// escapes markup and removes control characters and ANSI escapes, which
    /// XML cannot carry).
    pub fn to_junit(&self, comparison: Option<&Comparison>) -> String {
        let report = self;
        let mut cases = Vec::new();
        for t in &report.thresholds {
            let failure =
                (!t.passed).then(|| format!("observed {} does not satisfy {}", t.observed, t.expr));
            cases.push((format!("threshold: {}", t.expr), failure));
        }
        if let Some(c) = comparison {
            for m in &c.metrics {
                let failure = (m.verdict == Verdict::Regressed).then(|| {
                format!(
                    "{} regressed {:+.1} % (interval {:+.1} % to {:+.1} %, band ±{:.1} %, confidence {:.4}): {}",
                    m.metric,
                    m.change_percent,
                    m.change_low_percent,
                    m.change_high_percent,
                    m.noise_band_percent,
                    m.confidence,
                    m.reason
                )
            });
                cases.push((format!("regression: {}", m.metric), failure));
            }
        }
        let mut suite = TestSuite::new(format!("load test {}", report.scenario));
        suite.set_time(perf_core::saturating_secs(report.duration_s));
        for (name, failure) in cases {
            let status = match failure {
                None => TestCaseStatus::success(),
                Some(message) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(message);
                    status
                }
            };
            let mut case = TestCase::new(name, status);
            case.set_classname("perf");
            suite.add_test_case(case);
        }
        let mut xml = Report::new("perf-server run");
        xml.add_test_suite(suite);
        xml.to_string().unwrap_or_else(|e| {
            // The model is ours and well formed; a failure to write it is a bug
            // worth seeing in the file rather than a panic.
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- JUnit output failed: {e} -->\n"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_escapes_markup_and_control_characters() {
        let report = RunReport {
            scenario: "shop <a&b> \u{1b}[31mred\u{1b}[0m \u{7}".to_owned(),
            thresholds: vec![crate::ThresholdResult {
                expr: "p95 < 1ms \u{0} \"quoted\"".to_owned(),
                observed: 2.0,
                passed: false,
            }],
            ..RunReport::default()
        };
        let xml = report.to_junit(None);
        assert!(!xml.chars().any(|c| c.is_control() && c != '\n'), "{xml:?}");
        assert!(xml.contains("shop &lt;a&amp;b&gt;"), "{xml}");
        assert!(xml.contains("name=\"threshold: p95 &lt; 1ms"), "{xml}");
        assert!(xml.contains("&quot;quoted&quot;"), "{xml}");
        assert!(
            xml.contains("<failure message=\"observed 2 does not satisfy"),
            "{xml}"
        );
        assert!(xml.contains("failures=\"1\""), "{xml}");
    }
}
