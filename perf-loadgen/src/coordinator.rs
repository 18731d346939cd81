//! One run over several generators: split the scenario into shards, start
//! one on each worker (or none at all), follow them, and merge their reports
//! exactly.
//!
//! The transport is the embedder's: a [`ShardClient`] starts, reads and
//! cancels one worker's shard (perf-server implements it over its HTTP API).
//! The [`Coordinator`] owns the rules:
//! - every shard starts, or those that did are cancelled and the run is
//!   refused ([`Coordinator::start`]);
//! - a worker whose last answer is [`Coordination::silent_after`] old when a
//!   call to it fails is declared dead (and told to cancel, in case it is
//!   only cut off), the other shards are cancelled and what they measured is
//!   kept;
//! - a shard that ended without a readable report, or reports that do not
//!   merge, fail the run (a merge without one would under-count silently);
//! - the reports merge with [`RunReport::merge`].

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::report::RunReport;
use crate::run::LiveSnapshot;
use crate::scenario::Scenario;
use crate::{Error, Result};

/// Where one worker's shard stands, as its worker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardState {
    /// Queued or running.
    Running,
    /// Ran its whole duration.
    Completed,
    /// Failed (a threshold with `abort_on_fail`, a target never reached...).
    Failed,
    /// Cancelled.
    Cancelled,
    /// Cut short by its worker's shutdown.
    Interrupted,
}

impl ShardState {
    /// Whether the shard has ended.
    pub fn is_finished(self) -> bool {
        self != Self::Running
    }

    /// The state's name, as perf-server's API spells a test's status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// What a worker answered about its shard.
#[derive(Debug, Clone)]
pub struct ShardStatus {
    /// Where the shard stands.
    pub state: ShardState,
    /// Its live figures, when the worker has them.
    pub progress: Option<LiveSnapshot>,
}

/// One worker's side of a distributed run: the transport a [`Coordinator`]
/// drives. Errors are [`Error::Worker`] with the worker's answer or the
/// transport's failure, or [`Error::Report`] for a report that does not
/// read; the coordinator adds the worker's name.
pub trait ShardClient: Send + Sync {
    /// The worker's handle of a started shard (e.g. its test id).
    type Shard: Send + Sync;

    /// The worker's name in messages (its URL).
    fn worker(&self) -> &str;

    /// Starts `shard` of the run called `name` on this worker.
    fn start(
        &self,
        name: &str,
        shard: &Scenario,
    ) -> impl Future<Output = Result<Self::Shard>> + Send;

    /// Where the shard stands.
    fn status(&self, shard: &Self::Shard) -> impl Future<Output = Result<ShardStatus>> + Send;

    /// The shard's report so far (final once it has ended).
    fn results(&self, shard: &Self::Shard) -> impl Future<Output = Result<RunReport>> + Send;

    /// Cancels the shard; its worker keeps what it measured.
    fn cancel(&self, shard: &Self::Shard) -> impl Future<Output = Result<()>> + Send;
}

/// How a [`Coordinator`] follows its shards.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Coordination {
    /// Time between two rounds of status reads (default 1 s).
    pub poll_every: Duration,
    /// Read running shards' reports every this many rounds (default 2);
    /// an ended shard's report is read at once.
    pub results_every: u64,
    /// A worker whose last answer is this old when a call to it fails is
    /// declared dead (default 5 s; a call hanging until the client's own
    /// timeout counts from the last answer too).
    pub silent_after: Duration,
}

impl Default for Coordination {
    fn default() -> Self {
        Self {
            poll_every: Duration::from_secs(1),
            results_every: 2,
            silent_after: Duration::from_secs(5),
        }
    }
}

/// How a distributed run ended, as far as its shards tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoordinationEnd {
    /// Every shard completed and every report was read.
    Completed,
    /// These workers stopped answering; the others were cancelled.
    WorkersSilent(Vec<String>),
    /// Shards ended without completing (cancelled, failed, interrupted):
    /// each such worker with its shard's state.
    ShardsNotCompleted(Vec<(String, ShardState)>),
    /// The shards' reports could not be merged.
    ReportsDoNotMerge(String),
    /// A shard ended but its report could not be read.
    ReportUnreadable {
        /// The worker.
        worker: String,
        /// Why its report could not be read.
        reason: String,
    },
}

impl std::fmt::Display for CoordinationEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Completed => f.write_str("every shard completed"),
            Self::WorkersSilent(workers) => write!(
                f,
                "worker(s) stopped answering: {}; the report merges what the others measured",
                workers.join(", ")
            ),
            Self::ShardsNotCompleted(ended) => {
                f.write_str("shard(s) did not complete: ")?;
                for (i, (worker, state)) in ended.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{worker} {}", state.as_str())?;
                }
                Ok(())
            }
            Self::ReportsDoNotMerge(reason) => {
                write!(f, "the shards' reports do not merge: {reason}")
            }
            Self::ReportUnreadable { worker, reason } => write!(
                f,
                "worker {worker} ended its shard but its report could not be read: {reason}"
            ),
        }
    }
}

/// What one round of following the shards saw.
#[derive(Debug, Clone)]
pub struct Round {
    /// The shards' live figures as one ([`LiveSnapshot::combine`]).
    pub progress: LiveSnapshot,
    /// The merge of the reports read so far, if any.
    pub report: Option<RunReport>,
    /// Whether every shard has ended: the last round.
    pub finished: bool,
    /// The round's number, from 1.
    pub number: u64,
}

/// A started shard and what is known of it.
struct Followed<S> {
    shard: S,
    progress: LiveSnapshot,
    report: Option<RunReport>,
    ended: Option<ShardState>,
    /// When the worker last answered (or the shard started).
    last_answer: Instant,
    unreadable: Option<String>,
}

/// Follows the shards of one run on several workers: see the module docs.
pub struct Coordinator<C: ShardClient> {
    clients: Vec<C>,
    shards: Vec<Followed<C::Shard>>,
    settings: Coordination,
    round: u64,
    dead: Vec<String>,
    cancel_sent: bool,
    /// Why the last merge failed, if it did.
    unmergeable: Option<String>,
}

impl<C: ShardClient> std::fmt::Debug for Coordinator<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field(
                "workers",
                &self
                    .clients
                    .iter()
                    .map(ShardClient::worker)
                    .collect::<Vec<_>>(),
            )
            .field(
                "ended",
                &self.shards.iter().map(|s| s.ended).collect::<Vec<_>>(),
            )
            .field("round", &self.round)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}

impl<C: ShardClient> Coordinator<C> {
    /// Splits `scenario` into one shard per client ([`crate::split`]) and
    /// starts them in order. If one cannot start, those that did are
    /// cancelled.
    ///
    /// # Errors
    /// [`Error::Worker`] naming the worker that could not start its shard;
    /// the errors of [`crate::split`].
    pub async fn start(
        name: &str,
        scenario: &Scenario,
        clients: Vec<C>,
        settings: Coordination,
    ) -> Result<Self> {
        let n = u32::try_from(clients.len())
            .map_err(|_| Error::Worker(format!("{} workers are too many", clients.len())))?;
        let parts = crate::split(name, scenario, n)?;
        let mut shards = Vec::with_capacity(clients.len());
        for (client, part) in clients.iter().zip(&parts) {
            match client.start(name, part).await {
                Ok(shard) => shards.push(Followed {
                    shard,
                    progress: LiveSnapshot::default(),
                    report: None,
                    ended: None,
                    last_answer: Instant::now(),
                    unreadable: None,
                }),
                Err(e) => {
                    for (started, followed) in clients.iter().zip(&shards) {
                        if let Err(e) = started.cancel(&followed.shard).await {
                            tracing::warn!(worker = started.worker(), error = %e, "cancelling a started shard failed");
                        }
                    }
                    return Err(Error::Worker(format!(
                        "worker {} could not start its shard: {}",
                        client.worker(),
                        e
                    )));
                }
            }
        }
        Ok(Self {
            clients,
            shards,
            settings,
            round: 0,
            dead: Vec::new(),
            cancel_sent: false,
            unmergeable: None,
        })
    }

    /// Waits for the next round (or for `cancel`, which cancels every
    /// running shard once), then reads every running shard.
    pub async fn next_round(&mut self, cancel: &CancellationToken) -> Round {
        if self.round > 0 {
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_every) => {}
                () = cancel.cancelled(), if !self.cancel_sent => self.cancel_running().await,
            }
        } else if cancel.is_cancelled() {
            self.cancel_running().await;
        }
        self.round += 1;
        let refresh_all = self
            .round
            .is_multiple_of(self.settings.results_every.max(1));
        for (client, followed) in self.clients.iter().zip(&mut self.shards) {
            if followed.ended.is_some() {
                continue;
            }
            match client.status(&followed.shard).await {
                Ok(status) => {
                    followed.last_answer = Instant::now();
                    if let Some(p) = status.progress {
                        followed.progress = p;
                    }
                    let ended = status.state.is_finished();
                    if ended || refresh_all {
                        match client.results(&followed.shard).await {
                            Ok(report) => {
                                followed.report = Some(report);
                                followed.unreadable = None;
                            }
                            Err(e) => {
                                tracing::warn!(worker = client.worker(), error = %e, "a shard's report could not be read");
                                followed.unreadable = Some(e.to_string());
                            }
                        }
                    }
                    if ended {
                        followed.ended = Some(status.state);
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = client.worker(), error = %e, "worker did not answer");
                    if followed.last_answer.elapsed() >= self.settings.silent_after {
                        followed.ended = Some(ShardState::Failed);
                        self.dead.push(client.worker().to_owned());
                        // Perhaps only cut off from here: ask it to stop, briefly.
                        let _ = tokio::time::timeout(
                            self.settings.poll_every,
                            client.cancel(&followed.shard),
                        )
                        .await;
                    }
                }
            }
        }
        if !self.dead.is_empty() && !self.cancel_sent {
            // The run cannot be whole any more: stop the others, keep what they measured.
            self.cancel_running().await;
        }
        let finished = self.shards.iter().all(|s| s.ended.is_some());
        let snapshots: Vec<LiveSnapshot> = self.shards.iter().map(|s| s.progress.clone()).collect();
        let reports: Vec<RunReport> = self
            .shards
            .iter()
            .filter_map(|s| s.report.clone())
            .collect();
        let report = if reports.is_empty() {
            None
        } else {
            match RunReport::merge(&reports) {
                Ok(merged) => {
                    self.unmergeable = None;
                    Some(merged)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the shards' reports do not merge");
                    self.unmergeable = Some(e.to_string());
                    None
                }
            }
        };
        Round {
            progress: LiveSnapshot::combine(&snapshots, finished),
            report,
            finished,
            number: self.round,
        }
    }

    /// How the run ended; meaningful once a round said `finished`.
    pub fn end(&self) -> CoordinationEnd {
        if !self.dead.is_empty() {
            return CoordinationEnd::WorkersSilent(self.dead.clone());
        }
        let not_completed: Vec<(String, ShardState)> = self
            .clients
            .iter()
            .zip(&self.shards)
            .filter(|(_, s)| s.ended != Some(ShardState::Completed))
            .map(|(c, s)| {
                (
                    c.worker().to_owned(),
                    s.ended.unwrap_or(ShardState::Running),
                )
            })
            .collect();
        if !not_completed.is_empty() {
            return CoordinationEnd::ShardsNotCompleted(not_completed);
        }
        for (client, followed) in self.clients.iter().zip(&self.shards) {
            if followed.report.is_none() || followed.unreadable.is_some() {
                return CoordinationEnd::ReportUnreadable {
                    worker: client.worker().to_owned(),
                    reason: followed
                        .unreadable
                        .clone()
                        .unwrap_or_else(|| "no report was read".to_owned()),
                };
            }
        }
        if let Some(reason) = &self.unmergeable {
            return CoordinationEnd::ReportsDoNotMerge(reason.clone());
        }
        CoordinationEnd::Completed
    }

    async fn cancel_running(&mut self) {
        self.cancel_sent = true;
        for (client, followed) in self.clients.iter().zip(&self.shards) {
            if followed.ended.is_none()
                && let Err(e) = client.cancel(&followed.shard).await
            {
                tracing::warn!(worker = client.worker(), error = %e, "cancelling a shard failed");
            }
        }
    }
}
