//! The coordinator of distributed runs, over fake workers: no sockets, and
//! time is paused, so a silent worker is declared dead without waiting.
#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
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
    /// Completes on its 2nd status read with an open-model report.
    OpenModelReport,
}

#[derive(Debug)]
struct FakeWorker {
    name: String,
    act: Act,
    polls: AtomicU32,
    cancels: AtomicU32,
    /// Users of the shard it was given.
    users: Mutex<Option<u32>>,
}

impl FakeWorker {
    fn new(name: &str, act: Act) -> Self {
        Self {
            name: name.to_owned(),
            act,
            polls: AtomicU32::new(0),
            cancels: AtomicU32::new(0),
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
            _ if self.cancels.load(Ordering::SeqCst) > 0 => ShardState::Cancelled,
            Act::CompletesAfter(k) if n >= k => ShardState::Completed,
            Act::CorruptReport | Act::OpenModelReport if n >= 2 => ShardState::Completed,
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
        // Ten requests per status read so far: a report read before the
        // shard's last status would show fewer.
        let polls = u64::from(self.polls.load(Ordering::SeqCst));
        Ok(RunReport {
            requests: 10 * polls,
            errors: 1,
            model: if self.act == Act::OpenModelReport {
                "open".to_owned()
            } else {
                "closed".to_owned()
            },
            ..RunReport::default()
        })
    }

    async fn cancel(&self, _shard: &u64) -> Result<()> {
        self.cancels.fetch_add(1, Ordering::SeqCst);
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
    // Each report read at its shard's last status: 30 + 40 + 50.
    assert_eq!(last.report.as_ref().unwrap().requests, 120);
    assert_eq!(last.report.as_ref().unwrap().errors, 3);
    assert_eq!(last.progress.requests, 30 + 40 + 50);
    assert_eq!(c.end(), CoordinationEnd::Completed);
    let users: Vec<u32> = workers
        .iter()
        .map(|w| w.users.lock().unwrap().unwrap())
        .collect();
    assert_eq!(users.iter().sum::<u32>(), 6, "{users:?}");
    assert!(
        workers
            .iter()
            .all(|w| w.cancels.load(Ordering::SeqCst) == 0)
    );
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
    assert_eq!(
        workers[0].cancels.load(Ordering::SeqCst),
        1,
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
    assert_eq!(workers[0].cancels.load(Ordering::SeqCst), 1);
    assert_eq!(
        workers[1].cancels.load(Ordering::SeqCst),
        1,
        "the dead one is told too"
    );
    // What the live worker measured is kept (read at its last status), and
    // the dead one's last report (read at its 2nd answer).
    let w1 = u64::from(workers[0].polls.load(Ordering::SeqCst));
    assert_eq!(last.report.as_ref().unwrap().requests, 10 * w1 + 20);
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
    assert!(
        workers
            .iter()
            .all(|w| w.cancels.load(Ordering::SeqCst) == 1)
    );
    assert_eq!(
        c.end(),
        CoordinationEnd::ShardsNotCompleted(vec![
            ("w1".to_owned(), ShardState::Cancelled),
            ("w2".to_owned(), ShardState::Cancelled)
        ])
    );
    assert_eq!(
        c.end().to_string(),
        "shard(s) did not complete: w1 cancelled, w2 cancelled"
    );
}

#[tokio::test(start_paused = true)]
async fn reports_that_do_not_merge_fail_the_run_instead_of_keeping_an_old_merge() {
    let workers = [
        FakeWorker::new("w1", Act::CompletesAfter(2)),
        FakeWorker::new("w2", Act::OpenModelReport),
    ];
    let mut c = Coordinator::start("s", &scenario(), workers.iter().collect(), settings())
        .await
        .unwrap();
    let rounds = follow(&mut c, &CancellationToken::new()).await;
    let last = rounds.last().unwrap();
    assert!(last.finished && last.report.is_none());
    match c.end() {
        CoordinationEnd::ReportsDoNotMerge(reason) => {
            assert!(reason.contains("open and the closed model"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
