//! The coordinator of distributed runs, over fake workers: no sockets, and
//! time is paused, so a silent worker is declared dead without waiting.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use perf_loadgen::{
    Coordination, CoordinationEnd, Coordinator, Error, LiveSnapshot, Result, RunReport, Scenario,
    ScenarioFile, ShardClient, ShardState, ShardStatus,
};
use tokio_util::sync::CancellationToken;

/// How a fake worker behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    /// Completes on its `n`th status read.
    CompletesAfter(u32),
    /// Refuses to start.
    NeverStarts,
    /// Answers `n` status reads, then nothing.
    GoesSilentAfter(u32),
    /// Completes on its 2nd status read, but its report never reads.
    CorruptReport,
}

#[derive(Debug)]
struct FakeWorker {
    name: String,
    act: Act,
    polls: AtomicU32,
    cancelled: AtomicBool,
    /// Users of the shard it was given.
    users: Mutex<Option<u32>>,
}

impl FakeWorker {
    fn new(name: &str, act: Act) -> Self {
        Self {
            name: name.to_owned(),
            act,
            polls: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
            users: Mutex::new(None),
        }
    }
}

impl ShardClient for &FakeWorker {
    type Shard = u64;

    fn worker(&self) -> &str {
        &self.name
    }

    async fn start(&self, _name: &str, shard: &Scenario) -> Result<u64> {
        if self.act == Act::NeverStarts {
            return Err(Error::Worker("answered 503: too many tests".to_owned()));
        }
        *self.users.lock().unwrap() = shard.users;
        Ok(42)
    }

    async fn status(&self, shard: &u64) -> Result<ShardStatus> {
        assert_eq!(*shard, 42);
        let n = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
        let state = match self.act {
            Act::GoesSilentAfter(k) if n > k => {
                return Err(Error::Worker("connection refused".to_owned()));
            }
            _ if self.cancelled.load(Ordering::SeqCst) => ShardState::Cancelled,
            Act::CompletesAfter(k) if n >= k => ShardState::Completed,
            Act::CorruptReport if n >= 2 => ShardState::Completed,
            _ => ShardState::Running,
        };
        let progress = LiveSnapshot {
            requests: u64::from(n) * 10,
            ..LiveSnapshot::default()
        };
        Ok(ShardStatus {
            state,
            progress: Some(progress),
        })
    }

    async fn results(&self, _shard: &u64) -> Result<RunReport> {
        if self.act == Act::CorruptReport {
            return Err(Error::Report(
                "expected value at line 1 column 1".to_owned(),
            ));
        }
        Ok(RunReport {
            requests: 100,
            errors: 1,
            ..RunReport::default()
        })
    }

    async fn cancel(&self, _shard: &u64) -> Result<()> {
        self.cancelled.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn scenario() -> Scenario {
    let file = ScenarioFile::from_yaml(
        "load_tests:\n  s: {target: 'http://127.0.0.1:1', duration: 10s, users: 6}\n",
    )
    .unwrap();
    file.pick(None).unwrap().1.clone()
}

fn settings() -> Coordination {
    Coordination::default()
}

/// Rounds until the last one, at most 100.
async fn follow<C: ShardClient>(
    coordinator: &mut Coordinator<C>,
    cancel: &CancellationToken,
) -> Vec<perf_loadgen::Round> {
    let mut rounds = Vec::new();
    for _ in 0..100 {
        let round = coordinator.next_round(cancel).await;
        let finished = round.finished;
        rounds.push(round);
        if finished {
            break;
        }
    }
    rounds
}

#[tokio::test(start_paused = true)]
async fn healthy_workers_split_the_users_and_their_reports_merge() {
    let workers: Vec<FakeWorker> = (1..=3)
        .map(|i| FakeWorker::new(&format!("w{i}"), Act::CompletesAfter(2 + i)))
        .collect();
    let mut c = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap();
    let rounds = follow(&mut c, &CancellationToken::new()).await;
    assert_eq!(rounds.len(), 5, "the slowest completes on its 5th read");
    let last = rounds.last().unwrap();
    assert!(last.finished);
    assert_eq!(last.report.as_ref().unwrap().requests, 300);
    assert_eq!(last.report.as_ref().unwrap().errors, 3);
    assert_eq!(last.progress.requests, 30 + 40 + 50);
    assert_eq!(c.end(), CoordinationEnd::Completed);
    let users: Vec<u32> = workers
        .iter()
        .map(|w| w.users.lock().unwrap().unwrap())
        .collect();
    assert_eq!(users.iter().sum::<u32>(), 6, "{users:?}");
    assert!(workers.iter().all(|w| !w.cancelled.load(Ordering::SeqCst)));
}

#[tokio::test(start_paused = true)]
async fn a_worker_that_never_starts_rolls_back_those_that_did() {
    let workers = [
        FakeWorker::new("w1", Act::CompletesAfter(1)),
        FakeWorker::new("w2", Act::NeverStarts),
        FakeWorker::new("w3", Act::CompletesAfter(1)),
    ];
    let err = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker w2 could not start its shard"), "{err}");
    assert!(err.contains("too many tests"), "{err}");
    assert!(
        workers[0].cancelled.load(Ordering::SeqCst),
        "w1 started: cancelled"
    );
    assert!(
        workers[2].users.lock().unwrap().is_none(),
        "w3 was never asked"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_worker_is_declared_dead_the_rest_cancelled_and_kept() {
    let workers = [
        FakeWorker::new("w1", Act::CompletesAfter(1000)),
        FakeWorker::new("w2", Act::GoesSilentAfter(2)),
    ];
    let mut c = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap();
    let start = tokio::time::Instant::now();
    let rounds = follow(&mut c, &CancellationToken::new()).await;
    let last = rounds.last().unwrap();
    assert!(last.finished);
    // Two answers, then silent from the 3rd read; dead 5 s later.
    assert!(
        start.elapsed() >= Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() <= Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        c.end(),
        CoordinationEnd::WorkersSilent(vec!["w2".to_owned()])
    );
    assert!(c.end().to_string().contains("stopped answering: w2"));
    assert!(workers[0].cancelled.load(Ordering::SeqCst));
    // What the live worker measured is kept: its report and the dead one's last.
    assert_eq!(last.report.as_ref().unwrap().requests, 200);
}

#[tokio::test(start_paused = true)]
async fn a_report_that_does_not_read_fails_the_run_instead_of_undercounting() {
    let workers = [
        FakeWorker::new("w1", Act::CompletesAfter(2)),
        FakeWorker::new("w2", Act::CorruptReport),
    ];
    let mut c = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap();
    let rounds = follow(&mut c, &CancellationToken::new()).await;
    assert!(rounds.last().unwrap().finished);
    match c.end() {
        CoordinationEnd::ReportUnreadable { worker, reason } => {
            assert_eq!(worker, "w2");
            assert!(reason.contains("line 1 column 1"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cancelling_cancels_every_running_shard_once() {
    let workers = [
        FakeWorker::new("w1", Act::CompletesAfter(1000)),
        FakeWorker::new("w2", Act::CompletesAfter(1000)),
    ];
    let mut c = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    let first = c.next_round(&cancel).await;
    assert!(!first.finished);
    cancel.cancel();
    let rounds = follow(&mut c, &cancel).await;
    assert!(rounds.last().unwrap().finished);
    assert!(workers.iter().all(|w| w.cancelled.load(Ordering::SeqCst)));
    assert_eq!(
        c.end(),
        CoordinationEnd::ShardsNotCompleted(vec![ShardState::Cancelled, ShardState::Cancelled])
    );
}
