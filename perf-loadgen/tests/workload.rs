//! Rust workloads through the same executors, reports and verdicts as HTTP
//! scenarios.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use perf_loadgen::{Iteration, Operations, RunReport, ScenarioFile, Workload, start_workload};

fn scenario(yaml: &str) -> (String, perf_loadgen::Scenario) {
    let file = ScenarioFile::from_yaml(yaml).unwrap();
    file.load_tests.into_iter().next().unwrap()
}

/// Two operations: `read` (2 ms) always succeeds; `write` fails with kind
/// `conflict` every fourth time.
struct Store {
    writes: AtomicU64,
}

impl Workload for Store {
    type User = u64;
    fn operations(&self) -> Vec<String> {
        vec!["read".into(), "write".into()]
    }
    fn user(&self, index: u64) -> u64 {
        index
    }
    async fn iteration(&self, _user: &mut u64, ops: &Operations<'_>) -> Iteration {
        let _ = ops
            .time(0, async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<(), String>(())
            })
            .await;
        let started = Instant::now();
        let n = self.writes.fetch_add(1, Ordering::Relaxed);
        ops.record(
            1,
            started,
            if n % 4 == 3 { Err("conflict") } else { Ok(()) },
        );
        Iteration::Done
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_gets_per_operation_figures_error_kinds_thresholds_and_merges() {
    let (name, s) = scenario(
        "load_tests:\n  store: {duration: 1s, users: 4, thresholds: ['p95 < 1s', 'error_rate < 0.01']}\n",
    );
    let store = Store {
        writes: AtomicU64::new(0),
    };
    let report = start_workload(&name, &s, store)
        .await
        .unwrap()
        .report()
        .await
        .unwrap();
    let reads = report.per_request["read"].requests;
    let writes = report.per_request["write"].requests;
    assert!(
        reads > 100 && writes.abs_diff(reads) <= 4,
        "{reads} {writes}"
    );
    assert!(report.per_request["read"].latency_ms.p50 >= 2.0);
    let conflicts = report.error_kinds["conflict"];
    assert_eq!(conflicts, report.per_request["write"].errors);
    assert!(conflicts * 4 >= writes - 4 && conflicts * 4 <= writes + 4);
    assert_eq!(report.status_codes["ok"], report.requests - conflicts);
    // The error-rate threshold judges the workload like any run.
    assert!(!report.passed && report.no_success.is_none());
    assert!(!report.thresholds[1].passed);
    assert_eq!(report.protocol, "workload");
    assert!(report.summary().contains("against a Rust workload"));
    // Shards of a workload merge exactly.
    let merged = RunReport::merge(&[report.clone(), report.clone()]).unwrap();
    assert_eq!(merged.requests, 2 * report.requests);
    assert_eq!(merged.error_kinds["conflict"], 2 * conflicts);
}

/// A service that is down: every iteration is unreachable.
struct Down {
    attempts: AtomicU64,
}

impl Workload for Down {
    type User = ();
    fn operations(&self) -> Vec<String> {
        vec!["call".into()]
    }
    fn user(&self, _index: u64) {}
    async fn iteration(&self, _user: &mut (), ops: &Operations<'_>) -> Iteration {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        ops.note_failure(|| "connect: connection refused (the queue broker)".to_owned());
        ops.record(0, Instant::now(), Err("connect"));
        Iteration::Unreachable
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_workload_backs_off_and_has_nothing_to_judge() {
    let (name, s) = scenario("load_tests:\n  down: {duration: 1s, users: 4}\n");
    let report = start_workload(
        &name,
        &s,
        Down {
            attempts: AtomicU64::new(0),
        },
    )
    .await
    .unwrap()
    .report()
    .await
    .unwrap();
    // 4 users backing off 10, 20, 40 ... ms: a few dozen attempts, not thousands.
    assert!(report.requests < 100, "{}", report.requests);
    assert!(!report.passed);
    let why = report.no_success.unwrap();
    assert!(why.contains("the queue broker"), "{why}");
}

struct Nothing;

impl Workload for Nothing {
    type User = ();
    fn operations(&self) -> Vec<String> {
        Vec::new()
    }
    fn user(&self, _index: u64) {}
    async fn iteration(&self, _user: &mut (), _ops: &Operations<'_>) -> Iteration {
        Iteration::Done
    }
}

#[tokio::test]
async fn a_workload_without_operations_is_refused() {
    let (name, s) = scenario("load_tests:\n  x: {duration: 1s, users: 1}\n");
    let e = start_workload(&name, &s, Nothing)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("operations"), "{e}");
}

/// One operation that does nothing: its latency is the generator's own.
struct Instant0;

impl Workload for Instant0 {
    type User = ();
    fn operations(&self) -> Vec<String> {
        vec!["nothing".into()]
    }
    fn user(&self, _index: u64) {}
    async fn iteration(&self, _user: &mut (), ops: &Operations<'_>) -> Iteration {
        let _ = ops.time(0, async { Ok::<(), String>(()) }).await;
        Iteration::Done
    }
}

/// The open model's arrivals leave on time: with tokio's millisecond timer
/// they left up to a millisecond late (p50 0.5–1 ms for an operation that
/// takes nothing); on the schedule thread's own sleeps they leave within
/// tens of microseconds. Poisson arrivals keep the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_arrivals_leave_on_time_and_poisson_keeps_the_rate() {
    for arrivals in ["uniform", "poisson"] {
        let (name, s) = scenario(&format!(
            "load_tests:\n  t: {{duration: 2s, rate: 2000/s, arrivals: {arrivals}}}\n"
        ));
        let report = start_workload(&name, &s, Instant0)
            .await
            .unwrap()
            .report()
            .await
            .unwrap();
        // 4,000 expected (a Poisson count's deviation is 63).
        assert!(
            (3_700..=4_300).contains(&report.requests),
            "{arrivals}: {}",
            report.requests
        );
        assert!(
            report.latency_ms.p50 < 0.4,
            "{arrivals}: the generator's own lateness, p50 {} ms",
            report.latency_ms.p50
        );
    }
}
