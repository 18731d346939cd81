//! Running any [`Workload`]: the closed and open executors, the per-second
//! collector, live snapshots, cancellation and the final report. HTTP
//! scenarios reach them through [`crate::http_workload`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use perf_core::LatencyHistogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::journey::Journeys;
use crate::report::{ReportMeta, RunReport, StopReason, observe};
use crate::scenario::{ArrivalSchedule, LoadPlan, Scenario, ThinkTime};
use crate::stats::{Recorder, Timeline, TimelineRow, ms};
use crate::workload::{Iteration, Operations, Workload};
use crate::{Error, Result};

/// The figures of a run, once a second while it goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveSnapshot {
    /// When it was taken, milliseconds since the Unix epoch.
    #[serde(default)]
    pub at_ms: u64,
    /// Seconds since the start.
    pub elapsed_s: f64,
    /// Planned length, seconds.
    pub total_s: f64,
    /// Virtual users running (closed model).
    pub users: u64,
    /// Arrival rate asked for now, req/s (open model).
    pub target_rate: f64,
    /// Requests in flight.
    pub in_flight: u64,
    /// Requests completed so far.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Requests completed in the last second.
    pub rps: f64,
    /// 95th percentile latency so far, ms.
    pub p95_ms: f64,
    /// Median latency so far, ms.
    #[serde(default)]
    pub p50_ms: f64,
    /// 99th percentile latency so far, ms.
    #[serde(default)]
    pub p99_ms: f64,
    /// The last second's figures (for a live chart).
    #[serde(default)]
    pub last_second: SecondFigures,
    /// Failed requests so far by cause: the transport's kinds (`connect`,
    /// `timeout`, `reset`...) and `http_<code>` for error statuses.
    #[serde(default)]
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Checks passed so far (journeys and requests with `checks`).
    #[serde(default)]
    pub checks_passed: u64,
    /// Checks failed so far.
    #[serde(default)]
    pub checks_failed: u64,
    /// CPU the load generator's process used since the run started, as a
    /// share of the runtime's worker threads (above 1 when other threads of
    /// the process are busy too).
    #[serde(default)]
    pub generator_cpu: f64,
    /// The generator has been the bottleneck over the run so far (CPU over
    /// 90 %, over 1 % of requests late, or requests dropped): the figures
    /// understate the target.
    #[serde(default)]
    pub generator_bound: bool,
    /// Intended requests dropped so far (open model).
    pub dropped: u64,
    /// `true` in the last snapshot.
    pub finished: bool,
}

/// One second of a run, as a live snapshot shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct SecondFigures {
    /// Requests completed in the second.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Median latency (corrected), ms.
    pub p50_ms: f64,
    /// 95th percentile (corrected), ms.
    pub p95_ms: f64,
    /// 99th percentile (corrected), ms.
    pub p99_ms: f64,
}

impl LiveSnapshot {
    /// The snapshots of the shards of one run as one: counts and rates add
    /// up, time is the longest, percentiles and generator CPU the largest
    /// shard's (an upper bound until the reports are merged); the generator
    /// is bound when any shard's is.
    pub fn combine(parts: &[LiveSnapshot], finished: bool) -> LiveSnapshot {
        let mut all = LiveSnapshot {
            finished,
            ..LiveSnapshot::default()
        };
        for p in parts {
            all.at_ms = all.at_ms.max(p.at_ms);
            all.elapsed_s = all.elapsed_s.max(p.elapsed_s);
            all.total_s = all.total_s.max(p.total_s);
            all.users += p.users;
            all.target_rate += p.target_rate;
            all.in_flight += p.in_flight;
            all.requests += p.requests;
            all.errors += p.errors;
            all.rps += p.rps;
            all.p95_ms = all.p95_ms.max(p.p95_ms);
            all.p50_ms = all.p50_ms.max(p.p50_ms);
            all.p99_ms = all.p99_ms.max(p.p99_ms);
            all.last_second.requests += p.last_second.requests;
            all.last_second.errors += p.last_second.errors;
            all.last_second.p50_ms = all.last_second.p50_ms.max(p.last_second.p50_ms);
            all.last_second.p95_ms = all.last_second.p95_ms.max(p.last_second.p95_ms);
            all.last_second.p99_ms = all.last_second.p99_ms.max(p.last_second.p99_ms);
            for (kind, n) in &p.errors_by_kind {
                *all.errors_by_kind.entry(kind.clone()).or_default() += n;
            }
            all.checks_passed += p.checks_passed;
            all.checks_failed += p.checks_failed;
            all.generator_cpu = all.generator_cpu.max(p.generator_cpu);
            all.generator_bound |= p.generator_bound;
            all.dropped += p.dropped;
        }
        all
    }

    /// One line for a terminal: a bar of the planned time with elapsed,
    /// total and time left, then users (or the target rate), throughput (the
    /// last second's; the whole run's once finished), p95, errors, in flight
    /// and dropped.
    ///
    /// ```
    /// let s = perf_loadgen::LiveSnapshot { elapsed_s: 15.0, total_s: 60.0, users: 20, rps: 1234.5,
    ///     p95_ms: 4.2, requests: 18000, errors: 3, ..Default::default() };
    /// let line = s.progress_line();
    /// assert!(line.starts_with("[#####               ]  15s/60s  ETA 45s"), "{line}");
    /// assert!(line.contains("users 20") && line.contains("errors 3 (0.02 %)"), "{line}");
    /// ```
    pub fn progress_line(&self) -> String {
        const WIDTH: usize = 20;
        let total = self.total_s.max(0.0);
        let elapsed = self.elapsed_s.clamp(0.0, total.max(self.elapsed_s));
        let done = if total > 0.0 {
            perf_core::num::saturating_usize(((elapsed / total).min(1.0) * WIDTH as f64).round())
        } else {
            0
        };
        let left = (total - elapsed).max(0.0);
        let load = if self.target_rate > 0.0 {
            format!("target {:.0}/s", self.target_rate)
        } else {
            format!("users {}", self.users)
        };
        let rps = if self.finished && self.elapsed_s > 0.0 {
            self.requests as f64 / self.elapsed_s
        } else {
            self.rps
        };
        let error_share = if self.requests > 0 {
            self.errors as f64 / self.requests as f64 * 100.0
        } else {
            0.0
        };
        format!(
            "[{}{}]  {:.0}s/{:.0}s  ETA {}  {load}  rps {:.1}  p95 {:.2} ms  errors {} ({error_share:.2} %)  in flight {}  dropped {}",
            "#".repeat(done),
            " ".repeat(WIDTH - done),
            elapsed,
            total,
            if self.finished {
                "0s".to_owned()
            } else {
                format!("{left:.0}s")
            },
            rps,
            self.p95_ms,
            self.errors,
            self.in_flight,
            self.dropped,
        )
    }
}

/// A run under way.
#[derive(Debug)]
pub struct RunHandle {
    progress: watch::Receiver<LiveSnapshot>,
    cancel: CancellationToken,
    task: JoinHandle<RunReport>,
    ctx: Arc<Context>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("scenario", &self.meta.scenario)
            .finish_non_exhaustive()
    }
}

impl RunHandle {
    /// A receiver of the per-second snapshots (the newest is always readable).
    pub fn progress(&self) -> watch::Receiver<LiveSnapshot> {
        self.progress.clone()
    }

    /// The token that stops the run; cancelling it ends the run within a
    /// second and the report covers what was measured.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the run early.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A report of what was measured so far, while the run goes on (for
    /// saving progress); `stopped_early` is left empty.
    pub fn interim_report(&self) -> RunReport {
        self.ctx.report(None)
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the report.
    pub async fn report(self) -> Result<RunReport> {
        let report = self
            .task
            .await
            .map_err(|e| Error::Io(std::io::Error::other(format!("run task failed: {e}"))))?;
        tracing::debug!(
            scenario = %report.scenario,
            requests = report.requests,
            errors = report.errors,
            duration_s = report.duration_s,
            passed = report.passed,
            "load test finished"
        );
        Ok(report)
    }
}

/// What every task of a run shares: the recorder, the counters, the clock.
pub(crate) struct Context {
    /// Checks and flows of an HTTP scenario (empty for other workloads).
    journeys: Arc<Journeys>,
    /// Open model: iterations under way.
    iterations_active: AtomicU64,
    pub(crate) recorder: Recorder,
    stop: CancellationToken,
    think: ThinkTime,
    start: Instant,
    pub(crate) in_flight: AtomicU64,
    users: AtomicU64,
    /// Most users running at once since the collector last looked.
    peak_users: AtomicU64,
    dropped: AtomicU64,
    /// The per-second rows so far (shared so an interim report can be read).
    timeline: Mutex<Timeline>,
    names: Vec<String>,
    meta: ReportMeta,
    /// The first connect error's text, for a run that never reached its target.
    pub(crate) first_failure: std::sync::OnceLock<String>,
    /// Process CPU seconds when the run started, less the seconds spent
    /// busy polling by then (see [`crate::busy_poll`]).
    cpu_at_start: f64,
    /// Open model: requests that left more than 10 ms after their intended time.
    late: AtomicU64,
    /// Open model: the longest such delay, µs.
    max_lag_us: AtomicU64,
}

/// CPU seconds this process has used (user + system), from
/// `/proc/self/stat` on Linux (clock ticks at USER_HZ = 100); 0 elsewhere.
fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command name, which may hold spaces: `) S ppid ...`.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU seconds this process has used, less the time its
/// [`busy_poll`](crate::busy_poll) hooks spent spinning (idle time by
/// definition, though the kernel counts it as work).
fn working_cpu_seconds() -> f64 {
    process_cpu_seconds() - crate::busy_poll::spun_seconds()
}

impl Context {
    /// The generator's own load so far (not yet judged).
    fn generator_load(&self) -> crate::report::GeneratorLoad {
        let cpu_s = (working_cpu_seconds() - self.cpu_at_start).max(0.0);
        let workers = tokio::runtime::Handle::try_current()
            .map_or(1, |h| h.metrics().num_workers())
            .max(1);
        let cores = u32::try_from(workers).unwrap_or(u32::MAX);
        let elapsed = self.start.elapsed().as_secs_f64();
        crate::report::GeneratorLoad {
            cpu_s,
            cores,
            cpu_utilization: if elapsed > 0.0 {
                cpu_s / (elapsed * f64::from(cores))
            } else {
                0.0
            },
            late_requests: self.late.load(Ordering::Relaxed),
            max_schedule_lag_ms: self.max_lag_us.load(Ordering::Relaxed) as f64 / 1000.0,
            bound: false,
            reason: None,
        }
    }

    /// Passed checks over all checks so far (1 without any).
    fn check_rate(&self) -> f64 {
        let (p, f) = self.journeys.check_totals();
        crate::CheckCount::of(p, f).pass_rate
    }

    /// A report of what was measured so far.
    fn report(&self, stopped_early: Option<StopReason>) -> RunReport {
        let mut meta = self.meta.clone();
        meta.duration = self.start.elapsed();
        meta.dropped = self.dropped.load(Ordering::Relaxed);
        meta.stopped_early = stopped_early;
        meta.first_failure = self.first_failure.get().cloned();
        meta.generator = self.generator_load();
        (meta.checks, meta.flows) = self.journeys.counts();
        let timeline = self
            .timeline
            .lock()
            .map(|t| t.rows().to_vec())
            .unwrap_or_default();
        RunReport::build(meta, &self.names, &self.recorder.totals(), timeline)
    }
}

/// First and longest wait of a virtual user whose connection fails.
const CONNECT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const CONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Decrements a counter when dropped, so a task cut short still counts down.
pub(crate) struct CountGuard<'a>(pub(crate) &'a AtomicU64);

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `workload` under the load shape of `scenario` (named `name`): its
/// `duration`, `users`/`ramp_up`/`stages` or `rate`, `think_time` (closed
/// model), `max_in_flight`, `thresholds` and `abort_on_fail` apply; its
/// target, requests and flows do not (the workload does the work).
/// Reports, thresholds, the timeline, `split`/`merge` and comparisons work
/// as for an HTTP scenario; `protocol` reads `workload`.
///
/// See [`Workload`] for an example.
pub async fn start_workload<W: Workload>(
    name: &str,
    scenario: &Scenario,
    workload: W,
) -> Result<RunHandle> {
    let plan = scenario.plan(name)?;
    let names = workload.operations();
    if names.is_empty() || names.len() > crate::MAX_REQUESTS {
        return Err(Error::Invalid {
            scenario: name.to_owned(),
            key: "operations".to_owned(),
            value: format!("{} operations", names.len()),
            allowed: format!("1 to {} operations", crate::MAX_REQUESTS),
        });
    }
    let meta = ReportMeta {
        protocol: "workload".to_owned(),
        ..ReportMeta::new(name, &plan, scenario, Vec::new())
    };
    Ok(launch(
        workload,
        Arc::new(Journeys::default()),
        names,
        meta,
        plan,
        scenario,
    ))
}

/// Starts the executor of `plan` over `workload` and the supervisor.
pub(crate) fn launch<W: Workload>(
    workload: W,
    journeys: Arc<Journeys>,
    names: Vec<String>,
    meta: ReportMeta,
    plan: LoadPlan,
    scenario: &Scenario,
) -> RunHandle {
    let cancel = CancellationToken::new();
    let ctx = Arc::new(Context {
        journeys,
        iterations_active: AtomicU64::new(0),
        recorder: Recorder::new(names.len(), matches!(plan, LoadPlan::Open { .. })),
        stop: cancel.child_token(),
        think: scenario.think_time.unwrap_or_default(),
        start: Instant::now(),
        in_flight: AtomicU64::new(0),
        users: AtomicU64::new(0),
        peak_users: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        timeline: Mutex::new(Timeline::default()),
        names,
        meta,
        first_failure: std::sync::OnceLock::new(),
        cpu_at_start: working_cpu_seconds(),
        late: AtomicU64::new(0),
        max_lag_us: AtomicU64::new(0),
    });
    let (progress_tx, progress) = watch::channel(LiveSnapshot {
        total_s: plan.total().as_secs_f64(),
        ..LiveSnapshot::default()
    });
    let task = tokio::spawn(supervise(
        Arc::clone(&ctx),
        Arc::new(workload),
        plan,
        scenario.abort_on_fail,
        cancel.clone(),
        progress_tx,
    ));
    RunHandle {
        progress,
        cancel,
        task,
        ctx,
    }
}

async fn supervise<W: Workload>(
    ctx: Arc<Context>,
    workload: Arc<W>,
    plan: LoadPlan,
    abort_on_fail: bool,
    cancel: CancellationToken,
    progress: watch::Sender<LiveSnapshot>,
) -> RunReport {
    let mut executor = {
        let ctx = Arc::clone(&ctx);
        let plan = plan.clone();
        tokio::spawn(async move {
            match plan {
                LoadPlan::Closed { total, .. } => closed(ctx, workload, &plan, total).await,
                LoadPlan::Open {
                    total,
                    max_in_flight,
                    ..
                } => open(ctx, workload, &plan, total, max_in_flight).await,
            }
        })
    };
    let mut so_far = LatencyHistogram::new();
    let mut ticker = tokio::time::interval_at(
        (ctx.start + Duration::from_secs(1)).into(),
        Duration::from_secs(1),
    );
    let mut second = 0u64;
    let mut dropped_before = 0u64;
    let mut errors_by_kind = BTreeMap::new();
    let mut stopped_early = None;
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            _ = &mut executor => true,
        };
        let row = collect_row(
            &ctx,
            second,
            &mut so_far,
            &mut dropped_before,
            &mut errors_by_kind,
        );
        if (!finished || row.requests > 0)
            && let Ok(mut timeline) = ctx.timeline.lock()
        {
            timeline.push(row.clone());
        }
        second += 1;
        let totals_now = (row.requests, row.errors);
        let snapshot = {
            let prev = progress.borrow().clone();
            let (checks_passed, checks_failed) = ctx.journeys.check_totals();
            let requests = prev.requests + totals_now.0;
            let dropped = ctx.dropped.load(Ordering::Relaxed);
            let generator = ctx.generator_load().judged(requests, dropped);
            LiveSnapshot {
                at_ms: perf_core::unix_millis(),
                elapsed_s: ctx.start.elapsed().as_secs_f64(),
                total_s: plan.total().as_secs_f64(),
                users: ctx.users.load(Ordering::Relaxed),
                target_rate: if matches!(plan, LoadPlan::Open { .. }) {
                    plan.level_at(ctx.start.elapsed())
                } else {
                    0.0
                },
                in_flight: ctx.in_flight.load(Ordering::Relaxed),
                requests,
                errors: prev.errors + totals_now.1,
                rps: row.rps,
                p95_ms: ms(so_far.percentile(95.0)),
                p50_ms: ms(so_far.percentile(50.0)),
                p99_ms: ms(so_far.percentile(99.0)),
                last_second: SecondFigures {
                    requests: row.requests,
                    errors: row.errors,
                    p50_ms: row.p50_ms,
                    p95_ms: row.p95_ms,
                    p99_ms: row.p99_ms,
                },
                errors_by_kind: errors_by_kind.clone(),
                checks_passed,
                checks_failed,
                generator_cpu: generator.cpu_utilization,
                generator_bound: generator.bound,
                dropped,
                finished,
            }
        };
        let _ = progress.send(snapshot.clone());
        if finished {
            break;
        }
        if abort_on_fail && stopped_early.is_none() && ctx.start.elapsed() >= Duration::from_secs(5)
        {
            let error_rate = if snapshot.requests == 0 {
                0.0
            } else {
                snapshot.errors as f64 / snapshot.requests as f64
            };
            let rps = snapshot.requests as f64 / snapshot.elapsed_s.max(1e-9);
            // rps is only judged at the end: a ramp would fail it early.
            let failed = ctx
                .meta
                .thresholds
                .iter()
                .filter(|t| !matches!(t.metric, crate::ThresholdMetric::Rps))
                .find(|t| !t.holds(observe(t, &so_far, error_rate, rps, ctx.check_rate())));
            if let Some(t) = failed {
                stopped_early = Some(StopReason::ThresholdFailed {
                    threshold: t.expr().to_owned(),
                });
                ctx.stop.cancel();
            }
        }
    }
    if cancel.is_cancelled() && stopped_early.is_none() {
        stopped_early = Some(StopReason::Cancelled);
    }
    ctx.report(stopped_early)
}

fn collect_row(
    ctx: &Context,
    second: u64,
    so_far: &mut LatencyHistogram,
    dropped_before: &mut u64,
    errors_by_kind: &mut BTreeMap<String, u64>,
) -> TimelineRow {
    let window = ctx.recorder.take_window();
    for (kind, n) in &window.failures {
        *errors_by_kind.entry(kind.name().to_owned()).or_default() += n;
    }
    for (status, n) in &window.error_statuses {
        *errors_by_kind.entry(format!("http_{status}")).or_default() += n;
    }
    let (latency, requests, errors) = (&window.latency, window.requests, window.errors);
    let _ = so_far.merge(latency);
    let dropped = ctx.dropped.load(Ordering::Relaxed);
    let dropped_now = dropped - *dropped_before;
    *dropped_before = dropped;
    TimelineRow {
        t_s: second,
        span_s: 1,
        requests,
        errors,
        rps: requests as f64,
        p50_ms: ms(latency.percentile(50.0)),
        p95_ms: ms(latency.percentile(95.0)),
        p99_ms: ms(latency.percentile(99.0)),
        max_ms: ms(latency.max()),
        users: ctx
            .peak_users
            .swap(ctx.users.load(Ordering::Relaxed), Ordering::Relaxed),
        in_flight: ctx.in_flight.load(Ordering::Relaxed),
        dropped: dropped_now,
        bytes_sent: window.bytes_sent,
        bytes_received: window.bytes_received,
        connects: window.connects,
        ttfb_p95_ms: ms(window.ttfb.percentile(95.0)),
        tls_handshake_p95_ms: ms(window.tls_handshake.percentile(95.0)),
    }
}

/// Closed model: virtual users following the plan's user count, each with
/// its own state (for HTTP, its keep-alive connection), thinking between
/// iterations.
async fn closed<W: Workload>(
    ctx: Arc<Context>,
    workload: Arc<W>,
    plan: &LoadPlan,
    total: Duration,
) {
    let max_users = match plan {
        LoadPlan::Closed { steps, .. } => steps.iter().map(|&(_, u)| u).max().unwrap_or(0),
        LoadPlan::Open { .. } => 0,
    };
    let alive: Arc<Vec<AtomicBool>> =
        Arc::new((0..max_users).map(|_| AtomicBool::new(false)).collect());
    let limit = Arc::new(AtomicU32::new(0));
    let run_over = ctx.stop.child_token();
    let mut users = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = ctx.stop.cancelled() => break,
        }
        let t = ctx.start.elapsed();
        if t >= total {
            break;
        }
        let target = perf_core::num::saturating_u32(plan.level_at(t).round()).min(max_users);
        limit.store(target, Ordering::Relaxed);
        // Start users up to the target, reusing slots whose user has left.
        if ctx.users.load(Ordering::Relaxed) < u64::from(target) {
            for index in 0..target {
                if !alive[index as usize].swap(true, Ordering::AcqRel) {
                    users.spawn(virtual_user(
                        Arc::clone(&ctx),
                        Arc::clone(&workload),
                        index,
                        Arc::clone(&alive),
                        Arc::clone(&limit),
                        run_over.clone(),
                    ));
                }
            }
        }
        while users.try_join_next().is_some() {}
    }
    run_over.cancel();
    while users.join_next().await.is_some() {}
}

async fn virtual_user<W: Workload>(
    ctx: Arc<Context>,
    workload: Arc<W>,
    index: u32,
    alive: Arc<Vec<AtomicBool>>,
    limit: Arc<AtomicU32>,
    stop: CancellationToken,
) {
    let running = ctx.users.fetch_add(1, Ordering::Relaxed) + 1;
    ctx.peak_users.fetch_max(running, Ordering::Relaxed);
    {
        let _running = CountGuard(&ctx.users);
        let iterations = async {
            let mut user = workload.user(u64::from(index));
            let mut rng = fastrand::Rng::with_seed(u64::from(index) << 7 | 0x5bd1);
            let mut backoff = Duration::ZERO;
            while index < limit.load(Ordering::Relaxed) {
                let ops = Operations::new(&ctx, None);
                if workload.iteration(&mut user, &ops).await == Iteration::Unreachable {
                    // A target that refuses connections is not hammered: the
                    // user waits 10 ms, doubling to 1 s (with jitter), until
                    // a connection opens again.
                    backoff = (backoff * 2).clamp(CONNECT_BACKOFF_MIN, CONNECT_BACKOFF_MAX);
                    let jitter =
                        rng.u64(..=u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX) / 4);
                    tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
                    continue;
                }
                backoff = Duration::ZERO;
                let think = ctx.think.sample(&mut rng);
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
        };
        // One wait for the stop per user, not one per request: stopping drops
        // the iterations wherever they are (a request cut short is not counted).
        tokio::select! {
            () = iterations => {}
            () = stop.cancelled() => {}
        }
    }
    alive[index as usize].store(false, Ordering::Release);
}

/// Open model: iterations start on the intended schedule whatever the
/// responses do; the latency of an iteration's first operation counts from
/// the intended time. Users (for HTTP: a keep-alive connection and journey
/// state) wait in a pool between arrivals and are reused.
///
/// The schedule runs on a thread of its own (tokio's blocking pool) that
/// sleeps with the operating system's timer: tokio's timer fires on whole
/// milliseconds after a deadline, and only when a busy worker gets to it,
/// which made arrivals up to a millisecond or more late and added that to
/// every corrected latency. The arrivals are spawned onto the runtime.
async fn open<W: Workload>(
    ctx: Arc<Context>,
    workload: Arc<W>,
    plan: &LoadPlan,
    total: Duration,
    max_in_flight: u32,
) {
    let run_over = ctx.stop.child_token();
    let Some(schedule) = ArrivalSchedule::of(plan) else {
        return;
    };
    let _cut_at_the_end = run_over.clone().drop_guard();
    let runtime = tokio::runtime::Handle::current();
    let arrivals = {
        let (ctx, run_over) = (Arc::clone(&ctx), run_over.clone());
        tokio::task::spawn_blocking(move || {
            schedule_arrivals(
                &runtime,
                &ctx,
                &workload,
                schedule,
                total,
                max_in_flight,
                &run_over,
            );
        })
    };
    // The schedule thread watches the stop token between arrivals (and at
    // least every SLEEP_STEP while it waits).
    let _ = arrivals.await;
    // Let the iterations under way finish, for at most DRAIN after the
    // planned end (a journey that a stalled target keeps waiting, or long
    // think times, does not hold the run for hours); what is cut then is
    // not counted.
    let deadline = ctx.start + total + DRAIN;
    while (ctx.in_flight.load(Ordering::Relaxed) > 0
        || ctx.iterations_active.load(Ordering::Relaxed) > 0)
        && !ctx.stop.is_cancelled()
        && Instant::now() < deadline
    {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
            () = ctx.stop.cancelled() => break,
        }
    }
    run_over.cancel();
}

/// A thread's timer slack set to 1 µs while this lives (Linux).
#[cfg(target_os = "linux")]
struct TimerSlack(Option<std::num::NonZeroU64>);

#[cfg(target_os = "linux")]
impl TimerSlack {
    fn precise() -> Self {
        let before = rustix::thread::current_timer_slack()
            .ok()
            .and_then(std::num::NonZeroU64::new);
        let _ = rustix::thread::set_current_timer_slack(std::num::NonZeroU64::new(1));
        Self(before)
    }
}

#[cfg(target_os = "linux")]
impl Drop for TimerSlack {
    fn drop(&mut self) {
        // `None` restores the thread's default.
        let _ = rustix::thread::set_current_timer_slack(self.0);
    }
}

/// The longest the schedule thread sleeps before looking at the stop token.
const SLEEP_STEP: Duration = Duration::from_millis(20);

/// Spawns each arrival of `schedule` onto `runtime` at its intended time
/// (or at once when behind), on the calling (blocking) thread.
fn schedule_arrivals<W: Workload>(
    runtime: &tokio::runtime::Handle,
    ctx: &Arc<Context>,
    workload: &Arc<W>,
    mut schedule: ArrivalSchedule,
    total: Duration,
    max_in_flight: u32,
    run_over: &CancellationToken,
) {
    let idle: Arc<Mutex<Vec<W::User>>> = Arc::new(Mutex::new(Vec::new()));
    let created = Arc::new(AtomicU64::new(0));
    // Linux lets a sleep overshoot by the thread's timer slack, 50 µs by
    // default; the schedule asks for 1 µs and gives the pool thread back as
    // it found it.
    #[cfg(target_os = "linux")]
    let _slack = TimerSlack::precise();
    while let Some(next) = schedule.next() {
        if next >= total {
            break;
        }
        let Some(intended) = ctx.start.checked_add(next) else {
            break;
        };
        loop {
            // Stopped, or the executor is gone.
            if run_over.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if intended <= now {
                // Behind schedule: the generator, not the server, is late.
                let lag = u64::try_from((now - intended).as_micros()).unwrap_or(u64::MAX);
                if lag > 10_000 {
                    ctx.late.fetch_add(1, Ordering::Relaxed);
                }
                ctx.max_lag_us.fetch_max(lag, Ordering::Relaxed);
                break;
            }
            std::thread::sleep((intended - now).min(SLEEP_STEP));
        }
        if ctx.in_flight.load(Ordering::Relaxed) >= u64::from(max_in_flight)
            || ctx.iterations_active.load(Ordering::Relaxed) >= u64::from(max_in_flight)
        {
            ctx.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (ctx, workload, idle, created, run_over) = (
            Arc::clone(ctx),
            Arc::clone(workload),
            Arc::clone(&idle),
            Arc::clone(&created),
            run_over.clone(),
        );
        // Counted from now, so the bound holds before the task runs.
        ctx.iterations_active.fetch_add(1, Ordering::Relaxed);
        runtime.spawn(async move {
            let _active = CountGuard(&ctx.iterations_active);
            let mut user = idle
                .lock()
                .ok()
                .and_then(|mut users| users.pop())
                .unwrap_or_else(|| workload.user(created.fetch_add(1, Ordering::Relaxed)));
            let ops = Operations::new(&ctx, Some(intended));
            tokio::select! {
                _ = workload.iteration(&mut user, &ops) => {
                    if let Ok(mut users) = idle.lock() {
                        users.push(user);
                    }
                }
                () = run_over.cancelled() => {}
            }
        });
    }
}

/// How long the open model waits for iterations under way after the planned end.
const DRAIN: Duration = Duration::from_secs(30);
