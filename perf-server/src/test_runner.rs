//! Load tests run by the server on someone's behalf: admission (limits and
//! target policy), a queue behind a concurrency limit, progress saved at least
//! every 5 s, cancellation, and a clean stop on shutdown. The load itself is
//! perf-loadgen's; this is the lifetime around it, which only a server has.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::Id;
use perf_loadgen::{FeedAccess, Limits, LiveSnapshot, Scenario, TargetPolicy};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::EventFeed;
use crate::store::{LoadTestRecord, Store, TestStatus};

/// How often a running test's progress and interim report are saved.
pub const SAVE_EVERY: Duration = Duration::from_secs(2);

/// Why a test was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// The scenario is invalid or over a limit.
    #[error("{message}")]
    Invalid {
        /// The scenario key at fault.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A target is not allowed.
    #[error("{0}")]
    TargetRefused(String),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The queue of waiting tests is full.
    #[error(
        "{0} tests are already waiting for a slot (max_queued_tests); retry when one has finished"
    )]
    QueueFull(usize),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// Why a cancellation was refused.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such test.
    #[error("no load test {0}")]
    NotFound(Id),
    /// The test already ended.
    #[error("load test {0} already ended ({1})")]
    Finished(Id, &'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

struct Running {
    cancel: CancellationToken,
    /// The status to record when the run ends because of `cancel`.
    stop_as: Arc<Mutex<Option<TestStatus>>>,
    progress: Option<watch::Receiver<LiveSnapshot>>,
    done: watch::Receiver<bool>,
}

/// A test waiting for, or given, a slot.
struct Job {
    record: LoadTestRecord,
    scenario: Scenario,
    /// Base URLs of the perf-server workers running its shards; empty: run here.
    workers: Vec<String>,
}

#[derive(Default)]
struct State {
    running: HashMap<Id, Running>,
    queue: VecDeque<Job>,
    shutting_down: bool,
    /// Finished tests whose final save has not reached the store yet (it is
    /// retried with backoff); served from here meanwhile.
    unsaved: HashMap<Id, LoadTestRecord>,
    /// What `/metrics` shows of the tests run here: each running one's
    /// report as of its last save, and finished ones for a while after.
    exposed: HashMap<Id, Exposed>,
    /// The live events of the tests queued or running here, from
    /// admission to their last event.
    feeds: HashMap<Id, Arc<EventFeed>>,
}

/// A test as `/metrics` shows it: its figures, not its report (a report
/// holds HDR histograms of ~190 KB each).
struct Exposed {
    name: String,
    figures: Arc<perf_loadgen::ExposedFigures>,
    /// When it finished (`None` while it runs).
    finished: Option<std::time::Instant>,
}

/// Events a test's feed keeps for a late subscriber: five minutes of
/// snapshots (about 0.5 KB each).
const FEED_HISTORY: usize = 300;

/// How long a finished test stays on `/metrics` (so that a scrape after
/// its end still sees its final counts).
const EXPOSED_AFTER_END: Duration = Duration::from_secs(300);
/// Most finished tests on `/metrics` at once (the newest are kept); the
/// running ones are bounded by `max_concurrent_tests`.
const MAX_EXPOSED_FINISHED: usize = 16;

/// How a [`TestRunner`] admits and runs tests.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Largest test accepted.
    pub limits: Limits,
    /// Where load may go.
    pub policy: TargetPolicy,
    /// Tests running at once.
    pub max_concurrent: usize,
    /// Tests waiting at most; beyond it a submission is refused.
    pub max_queued: usize,
    /// Where `data.file` may be read (default: nowhere, inline data only).
    pub feeds: FeedAccess,
    /// The other instances a test may be split over.
    pub workers: Workers,
    /// This instance's name in the store (the owner of its tests).
    pub owner: String,
    /// After how long without a heartbeat another instance's tests are abandoned.
    pub heartbeat_timeout: Duration,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            policy: TargetPolicy::loopback_only(),
            max_concurrent: 2,
            max_queued: 16,
            feeds: FeedAccess::InlineOnly,
            workers: Workers::default(),
            owner: format!("perf-server-{}", Id::new()),
            heartbeat_timeout: Duration::from_secs(30),
        }
    }
}

/// How workers are reached: the TLS client for `https://` workers, and
/// whether the token may go over plain http to a worker beyond loopback.
#[derive(Debug, Clone, Default)]
pub struct WorkerTransport {
    /// TLS client configuration (the `worker_tls` settings; default: the system's roots).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `worker_tls.server_name`: the name every `https://` worker is
    /// verified as, instead of its URL's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// `allow_plain_http_workers`.
    pub allow_plain_http: bool,
}

/// The other perf-server instances a test may be split over.
#[derive(Debug, Clone, Default)]
pub struct Workers {
    /// Base URLs given in the configuration.
    pub urls: Vec<String>,
    /// A name resolving to every worker (e.g. a headless Service): each address is one worker.
    pub service: Option<String>,
    /// Bearer token sent to the workers.
    pub token: Option<String>,
    /// TLS for `https://` workers, and whether plain http may carry the token beyond loopback.
    pub transport: WorkerTransport,
}

/// Where a test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this server.
    Here,
    /// Split over these workers (other perf-server instances).
    Workers(Vec<String>),
    /// Split over the first N known workers (configured, or found through the worker service).
    Shards(u32),
}

/// Runs load tests for the API.
pub struct TestRunner {
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    limits: Limits,
    policy: TargetPolicy,
    max_concurrent: usize,
    max_queued: usize,
    feeds: FeedAccess,
    owner: String,
    heartbeat_timeout: Duration,
    workers: Vec<String>,
    worker_service: Option<String>,
    worker_token: Option<String>,
    worker_transport: WorkerTransport,
    state: Mutex<State>,
    finished: perf_memory::Cache<Id, Arc<LoadTestRecord>>,
}

impl std::fmt::Debug for TestRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestRunner")
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

impl TestRunner {
    /// A runner with its settings (start from `RunnerSettings::default()`
    /// and change what differs); its heartbeat (the owner's sign of
    /// life in a shared store, and how cancels from other instances arrive)
    /// runs on `runtime` for as long as the runner lives.
    pub fn new(
        store: Arc<dyn Store>,
        runtime: tokio::runtime::Handle,
        settings: RunnerSettings,
    ) -> Arc<Self> {
        let runner = Arc::new(Self {
            store,
            runtime: runtime.clone(),
            limits: settings.limits,
            policy: settings.policy,
            max_concurrent: settings.max_concurrent.max(1),
            max_queued: settings.max_queued,
            feeds: settings.feeds,
            owner: settings.owner,
            heartbeat_timeout: settings.heartbeat_timeout,
            workers: settings.workers.urls,
            worker_service: settings.workers.service,
            worker_token: settings.workers.token,
            worker_transport: settings.workers.transport,
            state: Mutex::new(State::default()),
            // A finished test never changes: its record is served from
            // memory after the first read instead of from the store.
            finished: perf_memory::Cache::builder("finished_tests")
                .max_entries(1_000)
                .time_to_idle(std::time::Duration::from_secs(600))
                .build(),
        });
        let weak = Arc::downgrade(&runner);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SAVE_EVERY);
            let mut round = 0u64;
            loop {
                tick.tick().await;
                let Some(runner) = weak.upgrade() else { break };
                runner.heartbeat(round).await;
                round += 1;
            }
        });
        runner
    }

    /// This instance's name in the store.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// At start-up: marks `interrupted` the tests this instance's earlier life
    /// left unfinished, and those of instances whose heartbeat stopped; a
    /// live instance's tests in a shared store are left alone.
    pub async fn interrupt_abandoned(&self) -> Result<u64, crate::Error> {
        self.store
            .interrupt_unfinished(Some(&self.owner), self.stale_after_ms())
            .await
    }

    fn stale_after_ms(&self) -> u64 {
        u64::try_from(self.heartbeat_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// One beat: say this instance runs the tests it holds, cancel those
    /// another instance asked to cancel, and now and then sweep abandoned ones.
    async fn heartbeat(&self, round: u64) {
        let held: Vec<Id> = {
            let state = self.state();
            state
                .running
                .keys()
                .copied()
                .chain(state.queue.iter().map(|j| j.record.id))
                .collect()
        };
        match self.store.heartbeat(&self.owner, &held).await {
            Ok(cancel) => {
                for id in cancel {
                    tracing::info!(test = %id, "cancel requested through the store");
                    if !self.cancel_here(id, TestStatus::Cancelled) {
                        let _ = self.cancel_queued(id).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat to the store failed"),
        }
        if round % 15 == 14 {
            match self
                .store
                .interrupt_unfinished(None, self.stale_after_ms())
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    count = n,
                    "tests of an instance that stopped answering are now `interrupted`"
                ),
                Err(e) => tracing::warn!(error = %e, "sweeping abandoned tests failed"),
            }
        }
    }

    /// Cancels a test waiting in this instance's queue; `None` when it is not there.
    async fn cancel_queued(&self, id: Id) -> Option<Result<LoadTestRecord, crate::Error>> {
        let queued = {
            let mut state = self.state();
            let position = state.queue.iter().position(|j| j.record.id == id);
            position.and_then(|i| state.queue.remove(i))
        };
        let Job { mut record, .. } = queued?;
        record.status = TestStatus::Cancelled;
        record.finished_at_ms = Some(perf_core::unix_millis());
        let saved = self.store.save_load_test(&record).await;
        self.announce_end(&record);
        Some(saved.map(|()| record))
    }

    /// Cancels a test queued or running here; `false` when it is not here.
    fn cancel_here(&self, id: Id, status: TestStatus) -> bool {
        let state = self.state();
        if let Some(r) = state.running.get(&id) {
            if let Ok(mut s) = r.stop_as.lock() {
                s.get_or_insert(status);
            }
            r.cancel.cancel();
            return true;
        }
        false
    }

    /// The configured workers plus those the worker service resolves to now.
    async fn known_workers(&self) -> Vec<String> {
        let mut all = self.workers.clone();
        if let Some(service) = &self.worker_service
            && let Some(rest) = service.strip_prefix("http://")
        {
            let authority = rest.split('/').next().unwrap_or_default().to_owned();
            match tokio::net::lookup_host(authority.as_str()).await {
                Ok(addrs) => {
                    let mut found: Vec<String> = addrs.map(|a| format!("http://{a}")).collect();
                    found.sort();
                    found.dedup();
                    all.extend(found.into_iter().filter(|w| !self.workers.contains(w)));
                }
                Err(e) => {
                    tracing::warn!(service = %service, error = %e, "worker service does not resolve")
                }
            }
        }
        all
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere: the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Validates, checks limits and targets, saves (durably) and starts or queues a test.
    pub async fn submit(
        self: &Arc<Self>,
        name: String,
        scenario: Scenario,
        placement: Placement,
    ) -> Result<LoadTestRecord, AdmissionError> {
        {
            // A full queue is said before any work is spent on the test.
            let state = self.state();
            if state.running.len() >= self.max_concurrent && state.queue.len() >= self.max_queued {
                return Err(AdmissionError::QueueFull(state.queue.len()));
            }
        }
        let invalid = |e: perf_loadgen::Error| match e {
            perf_loadgen::Error::Invalid { ref key, .. } => AdmissionError::Invalid {
                field: key.clone(),
                message: e.to_string(),
            },
            perf_loadgen::Error::Feeder { ref path, .. } => AdmissionError::Invalid {
                field: if path == "data.csv" {
                    "data.csv"
                } else {
                    "data.file"
                }
                .to_owned(),
                message: e.to_string(),
            },
            other => AdmissionError::Invalid {
                field: "scenario".to_owned(),
                message: other.to_string(),
            },
        };
        scenario.validate(&name).map_err(invalid)?;
        scenario
            .check_limits(&name, &self.limits)
            .map_err(invalid)?;
        // Data loads, placeholders match its columns, values cannot split a
        // request: refused now, not found when the run starts. Parsing a
        // feed is file and CPU work: off the HTTP workers.
        let checked = {
            let (name, scenario, feeds) = (name.clone(), scenario.clone(), self.feeds.clone());
            tokio::task::spawn_blocking(move || perf_loadgen::check_with(&name, &scenario, &feeds))
                .await
                .map_err(|e| {
                    AdmissionError::Store(crate::Error::Io(std::io::Error::other(e.to_string())))
                })?
        };
        checked.map_err(invalid)?;
        let Some(targets) = &scenario.target else {
            return Err(AdmissionError::Invalid {
                field: "target".to_owned(),
                message: "a target is required: a base URL such as http://127.0.0.1:8080"
                    .to_owned(),
            });
        };
        let targets: Vec<String> = targets.urls().into_iter().map(str::to_owned).collect();
        self.policy
            .check_scenario(&scenario)
            .await
            .map_err(|e| AdmissionError::TargetRefused(e.to_string()))?;
        let workers = self.place(&name, &scenario, placement).await?;
        let mut scenario_json =
            serde_json::to_value(&scenario).map_err(|e| AdmissionError::Invalid {
                field: "scenario".into(),
                message: e.to_string(),
            })?;
        if let (false, serde_json::Value::Object(fields)) = (workers.is_empty(), &mut scenario_json)
        {
            fields.insert("workers".to_owned(), serde_json::json!(workers));
        }
        let record = LoadTestRecord {
            id: Id::new(),
            scenario_name: name,
            targets,
            status: TestStatus::Queued,
            created_at_ms: perf_core::unix_millis(),
            started_at_ms: None,
            finished_at_ms: None,
            scenario: scenario_json,
            progress: None,
            report: None,
            error: None,
        };
        {
            let state = self.state();
            if state.shutting_down {
                return Err(AdmissionError::ShuttingDown);
            }
            if state.running.len() >= self.max_concurrent && state.queue.len() >= self.max_queued {
                return Err(AdmissionError::QueueFull(state.queue.len()));
            }
        }
        self.store.insert_load_test(&record, &self.owner).await?;
        let feed = EventFeed::new(format!("load test {}", record.id), FEED_HISTORY);
        feed.publish("status", &serde_json::json!({"status": "queued"}));
        // Started now, queued, or refused (the queue filled meanwhile): decided
        // and taken under one lock.
        let decision = {
            let mut state = self.state();
            state.feeds.insert(record.id, feed);
            if state.running.len() < self.max_concurrent && state.queue.is_empty() {
                Some(Some(Self::register(
                    &mut state,
                    Job {
                        record: record.clone(),
                        scenario,
                        workers,
                    },
                )))
            } else if state.queue.len() >= self.max_queued {
                None
            } else {
                state.queue.push_back(Job {
                    record: record.clone(),
                    scenario,
                    workers,
                });
                Some(None)
            }
        };
        match decision {
            None => {
                self.state().feeds.remove(&record.id);
                record_refused(&self.store, record).await;
                return Err(AdmissionError::QueueFull(self.max_queued));
            }
            Some(Some(started)) => self.spawn(started),
            Some(None) => {}
        }
        Ok(record)
    }

    /// The workers a test runs on (empty: here), checked.
    async fn place(
        &self,
        name: &str,
        scenario: &Scenario,
        placement: Placement,
    ) -> Result<Vec<String>, AdmissionError> {
        let workers = match placement {
            Placement::Here => return Ok(Vec::new()),
            Placement::Shards(n) => {
                let n = n as usize;
                let known = self.known_workers().await;
                if n == 0 || n > known.len() {
                    return Err(AdmissionError::Invalid {
                        field: "shards".to_owned(),
                        message: format!(
                            "shards {n}: this server knows {} workers (allowed: 1 to {})",
                            known.len(),
                            known.len()
                        ),
                    });
                }
                known[..n].to_vec()
            }
            Placement::Workers(list) => {
                if list.is_empty() || list.len() > 64 {
                    return Err(AdmissionError::Invalid {
                        field: "workers".to_owned(),
                        message: "workers: give 1 to 64 base URLs of perf-server instances"
                            .to_owned(),
                    });
                }
                // The worker token goes only to workers the operator configured:
                // a request cannot send it elsewhere.
                let known = self.known_workers().await;
                if let Some(w) = list.iter().find(|w| !known.contains(w)) {
                    return Err(AdmissionError::Invalid {
                        field: "workers".to_owned(),
                        message: format!(
                            "workers: {w:?} is not a configured worker; this server knows {}",
                            if known.is_empty() {
                                "none (configure load_workers or load_worker_service)".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    });
                }
                list
            }
        };
        perf_loadgen::split(
            name,
            scenario,
            u32::try_from(workers.len()).unwrap_or(u32::MAX),
        )
        .map_err(|e| AdmissionError::Invalid {
            field: "workers".to_owned(),
            message: e.to_string(),
        })?;
        Ok(workers)
    }

    /// Registers `job` as running in `state` (the caller holds the lock, so
    /// the concurrency limit is checked and taken in one step).
    fn register(state: &mut State, job: Job) -> Started {
        let cancel = CancellationToken::new();
        let stop_as = Arc::new(Mutex::new(None));
        let (done_tx, done) = watch::channel(false);
        state.running.insert(
            job.record.id,
            Running {
                cancel: cancel.clone(),
                stop_as: Arc::clone(&stop_as),
                progress: None,
                done,
            },
        );
        Started {
            job,
            cancel,
            stop_as,
            done_tx,
        }
    }

    /// Runs a registered test on the load runtime. A panic in the run fails
    /// that test (saved, its slot freed, the next one started), not the runner.
    fn spawn(self: &Arc<Self>, started: Started) {
        let Started {
            job:
                Job {
                    mut record,
                    scenario,
                    workers,
                },
            cancel,
            stop_as,
            done_tx,
        } = started;
        let runner = Arc::clone(self);
        self.runtime.spawn(async move {
            let id = record.id;
            let before = record.clone();
            let run = {
                let runner = Arc::clone(&runner);
                async move {
                    if workers.is_empty() {
                        runner.run(&mut record, scenario, cancel, stop_as).await;
                    } else {
                        runner
                            .run_distributed(&mut record, scenario, &workers, cancel, stop_as)
                            .await;
                    }
                    record
                }
            };
            let run = std::pin::pin!(run);
            let record = match crate::guard::CatchUnwind(run).await {
                Ok(record) => record,
                Err(()) => {
                    let mut failed = before;
                    failed.status = TestStatus::Failed;
                    failed.error = Some(
                        "the run failed with an internal error; see the server log".to_owned(),
                    );
                    failed.finished_at_ms = Some(perf_core::unix_millis());
                    failed
                }
            };
            runner.save_final(&record).await;
            let next = {
                let mut state = runner.state();
                state.running.remove(&id);
                // However the run ended (a failed start, a panic caught), it
                // no longer runs on `/metrics`.
                if let Some(exposed) = state.exposed.get_mut(&id) {
                    exposed.finished.get_or_insert_with(std::time::Instant::now);
                }
                if state.shutting_down {
                    None
                } else {
                    state
                        .queue
                        .pop_front()
                        .map(|job| Self::register(&mut state, job))
                }
            };
            let _ = done_tx.send(true);
            if let Some(started) = next {
                runner.spawn(started);
            }
        });
    }

    /// Makes `progress` the live figures of running test `id`: read by
    /// `get`, and each snapshot published to the test's event feed.
    fn follow(&self, id: Id, mut progress: watch::Receiver<LiveSnapshot>) {
        let feed = {
            let mut state = self.state();
            if let Some(r) = state.running.get_mut(&id) {
                r.progress = Some(progress.clone());
            }
            state.feeds.get(&id).cloned()
        };
        let Some(feed) = feed else {
            return;
        };
        feed.publish("status", &serde_json::json!({"status": "running"}));
        tokio::spawn(async move {
            while progress.changed().await.is_ok() {
                let snapshot = progress.borrow_and_update().clone();
                feed.publish("snapshot", &snapshot);
                if snapshot.finished {
                    break;
                }
            }
        });
    }

    /// The live events of test `id` while it is queued or runs here.
    pub fn feed(&self, id: Id) -> Option<Arc<EventFeed>> {
        self.state().feeds.get(&id).cloned()
    }

    /// Sends a finished test's last event (named after its status) and ends
    /// its event streams.
    fn announce_end(&self, record: &LoadTestRecord) {
        if let Some(feed) = self.state().feeds.remove(&record.id) {
            let (event, data) = final_event(record);
            feed.close(event, &data);
        }
    }

    /// Saves the end of a test, retrying with backoff (0.5 s doubling to 30 s)
    /// until the store takes it; meanwhile the record is served from memory
    /// with `save_pending`. The test's last event goes out after the first
    /// attempt, when `get` already serves the finished record.
    async fn save_final(&self, record: &LoadTestRecord) {
        let mut wait = Duration::from_millis(500);
        let mut attempts = 0u32;
        loop {
            let saved = self.store.save_load_test(record).await;
            if attempts == 0 {
                if saved.is_err() {
                    self.state().unsaved.insert(record.id, record.clone());
                }
                self.announce_end(record);
            }
            match saved {
                Ok(()) => {
                    if attempts > 0 {
                        tracing::info!(test = %record.id, attempts, "the end of the load test is saved");
                    }
                    self.state().unsaved.remove(&record.id);
                    return;
                }
                Err(e) => {
                    attempts += 1;
                    tracing::error!(test = %record.id, error = %e, attempts, retry_in_s = wait.as_secs_f64(),
                        "saving the end of a load test failed; kept in memory and retried");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// Whether the end of test `id` waits to be written to the store.
    pub fn save_pending(&self, id: Id) -> bool {
        self.state().unsaved.contains_key(&id)
    }

    async fn run(
        &self,
        record: &mut LoadTestRecord,
        scenario: Scenario,
        cancel: CancellationToken,
        stop_as: Arc<Mutex<Option<TestStatus>>>,
    ) {
        let handle = match perf_loadgen::start_with_policy(
            &record.scenario_name,
            &scenario,
            &self.policy,
            &self.feeds,
        )
        .await
        {
            Ok(h) => h,
            Err(e) => {
                record.status = TestStatus::Failed;
                record.error = Some(e.to_string());
                record.finished_at_ms = Some(perf_core::unix_millis());
                return;
            }
        };
        record.status = TestStatus::Running;
        record.started_at_ms = Some(perf_core::unix_millis());
        self.follow(record.id, handle.progress());
        let mut live = handle.progress();
        let mut save = tokio::time::interval(SAVE_EVERY);
        let mut cancel_sent = false;
        loop {
            let save_now = tokio::select! {
                _ = save.tick() => true,
                () = cancel.cancelled(), if !cancel_sent => {
                    handle.cancel();
                    cancel_sent = true;
                    false
                }
                changed = live.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    false
                }
            };
            if handle.is_finished() || live.borrow().finished {
                break;
            }
            if save_now {
                record.progress = Some(live.borrow().clone());
                let report = handle.interim_report();
                self.expose(record, &report, false);
                record.report = Some(report);
                if let Err(e) = self.store.save_load_test(record).await {
                    tracing::warn!(test = %record.id, error = %e, "saving progress failed");
                }
            }
        }
        record.progress = Some(live.borrow().clone());
        match handle.report().await {
            Ok(report) => {
                let stopped = stop_as.lock().ok().and_then(|s| *s);
                record.status = match (&report.stopped_early, stopped) {
                    (_, Some(status)) => status,
                    (Some(perf_loadgen::StopReason::ThresholdFailed { .. }), None) => {
                        TestStatus::Failed
                    }
                    _ => TestStatus::Completed,
                };
                if record.status == TestStatus::Failed {
                    record.error = report.stopped_early.as_ref().map(ToString::to_string);
                }
                if let (Some(reason), TestStatus::Completed) = (&report.no_success, record.status) {
                    // Nothing succeeded: there is nothing to judge, whatever the thresholds say.
                    record.status = TestStatus::Failed;
                    record.error = Some(reason.clone());
                }
                self.expose(record, &report, true);
                record.report = Some(report);
            }
            Err(e) => {
                record.status = TestStatus::Failed;
                record.error = Some(e.to_string());
            }
        }
        record.finished_at_ms = Some(perf_core::unix_millis());
    }

    /// Keeps the figures of `report` as what `/metrics` shows of this test.
    fn expose(&self, record: &LoadTestRecord, report: &perf_loadgen::RunReport, finished: bool) {
        let exposed = Exposed {
            name: record.scenario_name.clone(),
            figures: Arc::new(perf_loadgen::ExposedFigures::from(report)),
            finished: finished.then(std::time::Instant::now),
        };
        let mut state = self.state();
        state.exposed.insert(record.id, exposed);
        prune_exposed(&mut state.exposed);
    }

    /// The load tests in the Prometheus text format: the ones running here
    /// (as of their last save, at most 2 s old) and the 16 newest of those
    /// that finished here in the last 5 minutes.
    pub fn render_prometheus(&self) -> String {
        let tests: Vec<(String, String, Arc<perf_loadgen::ExposedFigures>, bool)> = {
            let mut state = self.state();
            prune_exposed(&mut state.exposed);
            state
                .exposed
                .iter()
                .map(|(id, e)| {
                    (
                        e.name.clone(),
                        id.to_string(),
                        Arc::clone(&e.figures),
                        e.finished.is_none(),
                    )
                })
                .collect()
        };
        let exposed: Vec<perf_loadgen::ExposedTest<'_>> = tests
            .iter()
            .map(|(name, id, figures, running)| perf_loadgen::ExposedTest {
                name,
                id,
                figures,
                running: *running,
            })
            .collect();
        perf_loadgen::render_prometheus(&exposed)
    }

    /// Runs the shards of a test on other perf-server instances through their
    /// API with perf-loadgen's [`Coordinator`](perf_loadgen::Coordinator):
    /// every shard starts or none runs; a worker whose last answer is 5 s
    /// old when a call to it fails, an unreadable shard report or reports
    /// that do not merge fail the test; what was measured is kept.
    async fn run_distributed(
        &self,
        record: &mut LoadTestRecord,
        scenario: Scenario,
        workers: &[String],
        cancel: CancellationToken,
        stop_as: Arc<Mutex<Option<TestStatus>>>,
    ) {
        let fail = |record: &mut LoadTestRecord, error: String| {
            record.status = TestStatus::Failed;
            record.error = Some(error);
            record.finished_at_ms = Some(perf_core::unix_millis());
        };
        let mut clients = Vec::with_capacity(workers.len());
        for w in workers {
            match crate::worker_client::PinnedWorker::resolve(
                w,
                &self.worker_transport,
                self.worker_token.is_some(),
            )
            .await
            {
                Ok(p) => clients.push(crate::worker_client::HttpWorker::new(
                    p,
                    self.worker_token.clone(),
                )),
                Err(e) => return fail(record, e),
            }
        }
        use tracing::Instrument;
        let span = tracing::info_span!("distributed", test = %record.id);
        let mut coordinator = match perf_loadgen::Coordinator::start(
            &record.scenario_name,
            &scenario,
            clients,
            perf_loadgen::Coordination::default(),
        )
        .instrument(span.clone())
        .await
        {
            Ok(c) => c,
            Err(e) => return fail(record, e.to_string()),
        };
        record.status = TestStatus::Running;
        record.started_at_ms = Some(perf_core::unix_millis());
        let (progress_tx, progress_rx) = watch::channel(LiveSnapshot::default());
        self.follow(record.id, progress_rx);
        loop {
            let round = coordinator
                .next_round(&cancel)
                .instrument(span.clone())
                .await;
            let _ = progress_tx.send(round.progress.clone());
            record.progress = Some(round.progress);
            if round.report.is_some() {
                record.report = round.report;
            }
            if round.finished {
                break;
            }
            if round.number.is_multiple_of(2)
                && let Err(e) = self.store.save_load_test(record).await
            {
                tracing::warn!(test = %record.id, error = %e, "saving progress failed");
            }
        }
        let stopped = stop_as.lock().ok().and_then(|s| *s);
        record.status = match (stopped, coordinator.end()) {
            (Some(status), _) => status,
            (None, perf_loadgen::CoordinationEnd::Completed) => TestStatus::Completed,
            (None, end) => {
                record.error = Some(end.to_string());
                TestStatus::Failed
            }
        };
        record.finished_at_ms = Some(perf_core::unix_millis());
    }

    /// The test with its newest live figures.
    pub async fn get(&self, id: Id) -> Result<Option<Arc<LoadTestRecord>>, crate::Error> {
        if let Some(pending) = self.state().unsaved.get(&id) {
            return Ok(Some(Arc::new(pending.clone())));
        }
        // Shared, not copied: a finished record holds the whole report.
        if let Some(done) = self.finished.get(&id) {
            return Ok(Some(done));
        }
        let Some(mut record) = self.store.get_load_test(id).await? else {
            return Ok(None);
        };
        if record.status.is_finished() && !self.state().running.contains_key(&id) {
            let record = Arc::new(record);
            self.finished.insert(id, Arc::clone(&record));
            return Ok(Some(record));
        }
        if let Some(r) = self.state().running.get(&id) {
            record.status = TestStatus::Running;
            if let Some(p) = &r.progress {
                record.progress = Some(p.borrow().clone());
            }
        }
        Ok(Some(Arc::new(record)))
    }

    /// Requests per second of the running tests now (their latest live
    /// snapshots summed); `None` when none runs.
    pub fn live_rps(&self) -> Option<f64> {
        let state = self.state();
        let rates: Vec<f64> = state
            .running
            .values()
            .filter_map(|r| r.progress.as_ref().map(|p| p.borrow().rps))
            .collect();
        (!rates.is_empty()).then(|| rates.iter().sum())
    }

    /// The cache of finished tests' records (for memory relief and metrics).
    pub fn finished_cache(&self) -> &perf_memory::Cache<Id, Arc<LoadTestRecord>> {
        &self.finished
    }

    /// Up to `limit` completed tests of `record`'s scenario and targets
    /// before it, newest first, without their reports.
    async fn earlier_runs(
        &self,
        record: &LoadTestRecord,
        limit: u32,
    ) -> Result<Vec<LoadTestRecord>, crate::Error> {
        let filter = crate::store::TestFilter {
            scenario: Some(record.scenario_name.clone()),
            target: record.targets.first().cloned(),
            status: Some(TestStatus::Completed),
        };
        let page = crate::store::PageRequest {
            limit,
            before: Some(record.id),
        };
        let earlier = self.store.list_load_tests(&filter, page).await?;
        Ok(earlier
            .items
            .into_iter()
            .filter(|t| t.targets == record.targets)
            .collect())
    }

    /// The p95 of this test and of up to 49 completed tests of the same
    /// scenario and targets before it, oldest first, with the runs where the
    /// level shifted (E-divisive means at 5 %, shifts of 3 % and more,
    /// segments of 3 runs and more: [`perf_loadgen::change_points`]).
    pub async fn trend(&self, record: &LoadTestRecord) -> Result<Trend, crate::Error> {
        let earlier = self.earlier_runs(record, 49).await?;
        let mut runs: Vec<TrendRun> = earlier
            .iter()
            .chain(std::iter::once(record).filter(|r| r.status == TestStatus::Completed))
            .filter_map(|t| {
                let progress = t.progress.as_ref()?;
                Some(TrendRun {
                    id: t.id,
                    finished_at_ms: t.finished_at_ms,
                    p95_ms: progress.p95_ms,
                    requests: progress.requests,
                    errors: progress.errors,
                })
            })
            .collect();
        // In the order they ended: the order a chart of them reads.
        runs.sort_by_key(|r| (r.finished_at_ms, r.id));
        let series: Vec<f64> = runs.iter().map(|r| r.p95_ms).collect();
        // A permutation test over up to 50 runs: tens of ms of CPU, off the HTTP workers.
        let change_points = tokio::task::spawn_blocking(move || {
            perf_loadgen::change_points(&series, 0.05, 3, 0.03)
        })
        .await
        .unwrap_or_default();
        Ok(Trend {
            change_points,
            runs,
        })
    }

    /// This test judged against the recent history of the same scenario and
    /// targets (up to 5 earlier completed tests); `None` without history.
    pub async fn comparison(
        &self,
        record: &LoadTestRecord,
    ) -> Result<Option<perf_loadgen::Comparison>, crate::Error> {
        let Some(report) = &record.report else {
            return Ok(None);
        };
        let mut history = Vec::new();
        for item in self.earlier_runs(record, 5).await? {
            if let Some(full) = self.store.get_load_test(item.id).await?
                && let Some(r) = full.report
            {
                history.push(r);
            }
        }
        Ok(perf_loadgen::compare_to_history(
            &history,
            report,
            &perf_loadgen::CompareOptions::default(),
        ))
    }

    /// Cancels a queued or running test, keeping what it measured; waits
    /// (up to 2 s) until it is saved as `cancelled`.
    pub async fn cancel(&self, id: Id) -> Result<LoadTestRecord, CancelError> {
        if let Some(cancelled) = self.cancel_queued(id).await {
            return Ok(cancelled?);
        }
        let running = self
            .state()
            .running
            .get(&id)
            .map(|r| (r.cancel.clone(), Arc::clone(&r.stop_as), r.done.clone()));
        if let Some((cancel, stop_as, mut done)) = running {
            if let Ok(mut s) = stop_as.lock() {
                s.get_or_insert(TestStatus::Cancelled);
            }
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(2), done.wait_for(|d| *d)).await;
        } else {
            match self.store.get_load_test(id).await? {
                None => return Err(CancelError::NotFound(id)),
                Some(r) if r.status.is_finished() => {
                    return Err(CancelError::Finished(id, r.status.as_str()));
                }
                Some(_) => {
                    // Another instance runs it (a shared store): ask it through
                    // the store; its heartbeat picks the request up.
                    self.store.request_cancel(id).await?;
                    let deadline = std::time::Instant::now() + SAVE_EVERY * 3;
                    while std::time::Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if let Some(r) = self.store.get_load_test(id).await?
                            && r.status.is_finished()
                        {
                            return Ok(r);
                        }
                    }
                }
            }
        }
        self.store
            .get_load_test(id)
            .await?
            .ok_or(CancelError::NotFound(id))
    }

    /// Stops every running test (saved as `interrupted` with what it
    /// measured) and marks queued ones `interrupted`.
    pub async fn shutdown(&self) {
        let (running, queued) = {
            let mut state = self.state();
            state.shutting_down = true;
            let running: Vec<_> = state
                .running
                .values()
                .map(|r| (r.cancel.clone(), Arc::clone(&r.stop_as), r.done.clone()))
                .collect();
            (running, std::mem::take(&mut state.queue))
        };
        for Job { mut record, .. } in queued {
            record.status = TestStatus::Interrupted;
            record.finished_at_ms = Some(perf_core::unix_millis());
            if let Err(e) = self.store.save_load_test(&record).await {
                tracing::error!(test = %record.id, error = %e, "saving an interrupted test failed");
            }
            self.announce_end(&record);
        }
        for (cancel, stop_as, mut done) in running {
            if let Ok(mut s) = stop_as.lock() {
                s.get_or_insert(TestStatus::Interrupted);
            }
            cancel.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
        }
    }
}

/// A test refused after it was saved (the queue filled meanwhile): kept as
/// `failed` with the reason, so nothing saved is left `queued`.
async fn record_refused(store: &Arc<dyn Store>, mut record: LoadTestRecord) {
    record.status = TestStatus::Failed;
    record.error = Some("refused: the queue of waiting tests was full".to_owned());
    record.finished_at_ms = Some(perf_core::unix_millis());
    if let Err(e) = store.save_load_test(&record).await {
        tracing::warn!(test = %record.id, error = %e, "saving a refused test failed");
    }
}

/// A test given a slot, about to run.
struct Started {
    job: Job,
    cancel: CancellationToken,
    stop_as: Arc<Mutex<Option<TestStatus>>>,
    done_tx: watch::Sender<bool>,
}

/// Drops finished tests older than [`EXPOSED_AFTER_END`], then the oldest
/// finished ones beyond [`MAX_EXPOSED_FINISHED`] (running tests stay: their
/// number is bounded by the runner's concurrency).
fn prune_exposed(exposed: &mut HashMap<Id, Exposed>) {
    exposed.retain(|_, e| e.finished.is_none_or(|at| at.elapsed() < EXPOSED_AFTER_END));
    while exposed.values().filter(|e| e.finished.is_some()).count() > MAX_EXPOSED_FINISHED {
        let oldest = exposed
            .iter()
            .filter_map(|(id, e)| e.finished.map(|at| (at, *id)))
            .min();
        match oldest {
            Some((_, id)) => {
                exposed.remove(&id);
            }
            None => break,
        }
    }
}

/// The last event of a finished test: named after its status
/// (`completed`, `failed`, `cancelled`, `interrupted`), with the summary a
/// live view needs to show the verdict (the whole report is at `/results`).
pub fn final_event(record: &LoadTestRecord) -> (&'static str, serde_json::Value) {
    let report = record.report.as_ref();
    let checks = report.map_or((0, 0), |r| {
        let c = r.check_totals();
        (c.passes, c.fails)
    });
    (
        record.status.as_str(),
        serde_json::json!({
            "id": record.id,
            "status": record.status.as_str(),
            "error": record.error,
            "passed": report.map(|r| r.passed),
            "requests": report.map(|r| r.requests),
            "errors": report.map(|r| r.errors),
            "error_rate": report.map(|r| r.error_rate),
            "rps": report.map(|r| r.rps),
            "latency_ms": report.map(|r| &r.latency_ms),
            "thresholds": report.map(|r| &r.thresholds),
            "checks_passed": checks.0,
            "checks_failed": checks.1,
            "generator_bound": report.map(|r| r.generator.bound),
            "stopped_early": report.and_then(|r| r.stopped_early.as_ref()).map(ToString::to_string),
            "interrupted": report.is_some_and(|r| r.interrupted),
            "finished_at_ms": record.finished_at_ms,
        }),
    )
}

/// A scenario's p95 over its runs, and where it shifted.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Trend {
    /// Completed runs, oldest first (this test last when it completed).
    pub runs: Vec<TrendRun>,
    /// Indices into `runs` where a new level starts.
    pub change_points: Vec<usize>,
}

/// One run of a [`Trend`].
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TrendRun {
    /// The test.
    #[schema(value_type = String)]
    pub id: Id,
    /// When it ended.
    pub finished_at_ms: Option<u64>,
    /// Its 95th percentile latency (corrected), ms.
    pub p95_ms: f64,
    /// Requests it completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
}
