//! The engine's unit of work: a [`Workload`] is what a virtual user does in
//! one iteration (closed model) or what one arrival does (open model). The
//! executors, intended-time latency, histograms, thresholds, timeline,
//! reports, `split`/`merge` and regression comparison are the same for
//! every workload; an HTTP scenario is one implementation, and an embedder
//! brings its own client (gRPC, a queue, a database) as another.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::http::{FailureKind, Phases, Response};
use crate::run::{Context, CountGuard};

/// What a load test drives.
///
/// ```
/// use perf_loadgen::{Iteration, Operations, ScenarioFile, Workload, start_workload};
///
/// /// Sums numbers: one operation, `add`, that fails on odd iterations.
/// struct Adder;
///
/// impl Workload for Adder {
///     type User = u64;
///     fn operations(&self) -> Vec<String> {
///         vec!["add".to_owned()]
///     }
///     fn user(&self, index: u64) -> u64 {
///         index
///     }
///     async fn iteration(&self, n: &mut u64, ops: &Operations<'_>) -> Iteration {
///         *n += 1;
///         let odd = *n % 2 == 1;
///         let _ = ops
///             .time(0, async { if odd { Err("odd") } else { Ok(()) } })
///             .await;
///         Iteration::Done
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let file = ScenarioFile::from_yaml(
///     "load_tests:\n  sums: {duration: 200ms, rate: 100/s}",
/// )?;
/// let report = start_workload("sums", file.get("sums")?, Adder).await?.report().await?;
/// assert!(report.requests > 5);
/// assert!(report.errors > 0 && report.errors < report.requests);
/// assert_eq!(report.protocol, "workload");
/// # Ok::<(), perf_loadgen::Error>(())
/// # }).unwrap();
/// ```
pub trait Workload: Send + Sync + 'static {
    /// A virtual user's own state: a connection, a session, variables.
    type User: Send + 'static;

    /// The names of the operations [`Operations::time`] records, by index
    /// (each keeps its own latency figures; at most 100).
    fn operations(&self) -> Vec<String>;

    /// A new user's state: once per virtual user (closed model), or when
    /// no idle user waits for an arrival (open model: users are reused).
    fn user(&self, index: u64) -> Self::User;

    /// One iteration: performs and records operations through `ops`.
    fn iteration<'a>(
        &'a self,
        user: &'a mut Self::User,
        ops: &'a Operations<'_>,
    ) -> impl Future<Output = Iteration> + Send + 'a;
}

/// Where an operation's latency counts from: its intended start
/// (coordinated omission corrected), or when it actually left if that was
/// earlier: never shorter than its service time.
pub(crate) fn latency_origin(intended: Option<Instant>, started: Instant) -> Instant {
    intended.map_or(started, |i| i.min(started))
}

/// How an iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iteration {
    /// It ran (whatever its operations' outcomes).
    Done,
    /// The target could not be reached (a connection refused): a closed
    /// model user backs off (10 ms doubling to 1 s) before its next iteration
    /// instead of spinning.
    Unreachable,
}

/// Where an iteration records its operations.
pub struct Operations<'a> {
    pub(crate) ctx: &'a Context,
    intended: Option<Instant>,
    /// Whether the intended start was taken (by the first operation).
    taken: AtomicBool,
}

impl std::fmt::Debug for Operations<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations").finish_non_exhaustive()
    }
}

impl<'a> Operations<'a> {
    pub(crate) fn new(ctx: &'a Context, intended: Option<Instant>) -> Self {
        Self {
            ctx,
            intended,
            taken: AtomicBool::new(false),
        }
    }

    /// The intended start of the iteration's first operation (open model),
    /// taken once: later operations are timed from their own start.
    pub(crate) fn take_intended(&self) -> Option<Instant> {
        // The closed model has none: no atomic operation on its hot path.
        self.intended?;
        (!self.taken.swap(true, Ordering::Relaxed))
            .then_some(self.intended)
            .flatten()
    }

    /// Runs `work` as operation `op` (an index into
    /// [`Workload::operations`]) and records it: its latency counts from the
    /// intended start for the first operation of an open-model arrival
    /// (coordinated omission corrected), else from now; `Err` counts as an
    /// error of kind `error`, and the first one's text is kept (a run in
    /// which nothing succeeded says why).
    pub async fn time<T, E: std::fmt::Display>(
        &self,
        op: usize,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let intended = self.take_intended();
        let started = Instant::now();
        self.ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = CountGuard(&self.ctx.in_flight);
        let result = work.await;
        drop(in_flight);
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.note_failure(|| format!("error: {e}"));
                Err("error")
            }
        };
        self.record_from(op, latency_origin(intended, started), started, outcome);
        result
    }

    /// Records operation `op` measured by the caller: started at
    /// `started`, ending now, `Err(kind)` an error of that kind (e.g.
    /// `"timeout"`, `"refused"`).
    pub fn record(&self, op: usize, started: Instant, outcome: Result<(), &'static str>) {
        let intended = self.take_intended();
        self.record_from(op, latency_origin(intended, started), started, outcome);
    }

    fn record_from(
        &self,
        op: usize,
        from: Instant,
        started: Instant,
        outcome: Result<(), &'static str>,
    ) {
        let outcome = match outcome {
            Ok(()) => Ok(Response {
                status: 0,
                bytes_received: 0,
            }),
            Err(kind) => Err(FailureKind::Other(kind)),
        };
        self.ctx.recorder.record(
            op,
            from,
            started,
            Instant::now(),
            0,
            outcome,
            &Phases::default(),
        );
    }

    /// Keeps `text()` as the run's first failure when it has none yet.
    pub fn note_failure(&self, text: impl FnOnce() -> String) {
        self.ctx.first_failure.get_or_init(text);
    }
}
