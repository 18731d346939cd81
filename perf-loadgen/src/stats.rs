//! Measurement while a run goes: histograms for every request name and
//! overall (corrected from the intended send time, uncorrected from the
//! actual send), counters, and per-second windows for the timeline. Writers
//! record into one of a few shards (by thread) so the hot path takes an
//! uncontended lock.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use perf_core::LatencyHistogram;
use serde::{Deserialize, Serialize};

use crate::http::{FailureKind, Phases, Response};
use crate::report::PhaseHistograms;

/// One request's figures for a shard.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameStats {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) corrected: LatencyHistogram,
    pub(crate) uncorrected: LatencyHistogram,
}

/// Everything a shard has counted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Totals {
    pub(crate) per_name: Vec<NameStats>,
    pub(crate) corrected: LatencyHistogram,
    pub(crate) uncorrected: LatencyHistogram,
    pub(crate) status_codes: BTreeMap<u16, u64>,
    pub(crate) failures: BTreeMap<FailureKind, u64>,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    pub(crate) phases: PhaseHistograms,
}

impl Totals {
    fn merge_names(&mut self, other: &[NameStats]) {
        if self.per_name.len() < other.len() {
            self.per_name.resize(other.len(), NameStats::default());
        }
        for (mine, theirs) in self.per_name.iter_mut().zip(other) {
            mine.requests += theirs.requests;
            mine.errors += theirs.errors;
            // Same precision on both sides: merging cannot fail.
            let _ = mine.corrected.merge(&theirs.corrected);
            let _ = mine.uncorrected.merge(&theirs.uncorrected);
        }
    }

    pub(crate) fn merge(&mut self, other: &Totals) {
        self.merge_names(&other.per_name);
        let _ = self.corrected.merge(&other.corrected);
        let _ = self.uncorrected.merge(&other.uncorrected);
        for (k, v) in &other.status_codes {
            *self.status_codes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.failures {
            *self.failures.entry(*k).or_default() += v;
        }
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.phases.merge(&other.phases);
    }
}

/// The figures of one second of a run, for its timeline row.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) latency: LatencyHistogram,
    pub(crate) ttfb: LatencyHistogram,
    pub(crate) tls_handshake: LatencyHistogram,
    pub(crate) connects: u64,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) bytes_received: u64,
    /// Transport failures by kind.
    pub(crate) failures: BTreeMap<FailureKind, u64>,
    /// Answers with an error status (400 and above) by status.
    pub(crate) error_statuses: BTreeMap<u16, u64>,
}

#[derive(Debug)]
struct Shard {
    /// Everything but the per-name figures (`per_name` stays empty here).
    totals: Totals,
    window: Window,
    /// Per-name figures, in the first [`name_shard_count`] shards only.
    names: Vec<NameStats>,
}

/// Most per-name histogram pairs a run keeps across its name shards: with
/// few request names each gets a shard per thread (no contention), with many
/// they share one, so memory grows with the names, never names × threads.
const NAME_SLOTS: usize = 64;

/// Sharded recorder shared by every task of a run.
#[derive(Debug)]
pub(crate) struct Recorder {
    shards: Vec<Mutex<Shard>>,
    /// Shards that hold per-name figures: `max(1, NAME_SLOTS / names)` at
    /// most, so with few names every thread records under one lock.
    name_shards: usize,
    /// Open model: the uncorrected latency differs and is recorded apart. In
    /// the closed model both are the same and it is copied at the end.
    separate_uncorrected: bool,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    pub(crate) fn new(names: usize, separate_uncorrected: bool) -> Self {
        let n = thread_count();
        let name_shards = name_shard_count(names, n);
        Self {
            shards: (0..n)
                .map(|i| {
                    Mutex::new(Shard {
                        totals: Totals::default(),
                        window: Window::default(),
                        names: if i < name_shards {
                            vec![NameStats::default(); names]
                        } else {
                            Vec::new()
                        },
                    })
                })
                .collect(),
            name_shards,
            separate_uncorrected,
        }
    }

    /// Histograms a recorder of `names` request names keeps at most (for
    /// estimating a run's memory before it starts).
    pub(crate) fn histograms(names: usize, separate_uncorrected: bool) -> usize {
        let threads = thread_count();
        let per_name = if separate_uncorrected { 2 } else { 1 };
        // Kept per shard (totals, phases, window), plus the merged copy a
        // report is built from.
        threads * 10 + names * per_name * (name_shard_count(names, threads) + 2)
    }

    /// Records one finished request. `intended` is when it should have been
    /// sent (the schedule, open model) and `sent` when it was.
    #[allow(clippy::too_many_arguments)] // one call site per executor; a struct would only rename them
    pub(crate) fn record(
        &self,
        name: usize,
        intended: Instant,
        sent: Instant,
        done: Instant,
        bytes_sent: usize,
        outcome: Result<Response, FailureKind>,
        phases: &Phases,
    ) {
        // A connection that never opened (TCP or TLS) has no response time: it is counted
        // (an error of kind `connect`) but kept out of the latency figures,
        // where its ~0.1 ms would flatter the percentiles of a dead target.
        let timed = !matches!(outcome, Err(FailureKind::Connect | FailureKind::Tls));
        let corrected = micros(done.saturating_duration_since(intended));
        let uncorrected = micros(done.saturating_duration_since(sent));
        let slot = THREAD_SLOT.with(|s| *s) % self.shards.len();
        let Ok(mut shard) = self.shards[slot].lock() else {
            return;
        };
        let Shard { totals, window, .. } = &mut *shard;
        totals.phases.record(phases);
        if let Some(t) = phases.ttfb {
            let _ = window.ttfb.record_micros(micros(t));
        }
        if let Some((t, _)) = phases.handshake {
            let _ = window.tls_handshake.record_micros(micros(t));
        }
        if matches!(phases.connect, Some(Ok(_))) {
            window.connects += 1;
        }
        let error = match outcome {
            Ok(r) => {
                *totals.status_codes.entry(r.status).or_default() += 1;
                totals.bytes_received += r.bytes_received;
                window.bytes_received += r.bytes_received;
                if r.status >= 400 {
                    *window.error_statuses.entry(r.status).or_default() += 1;
                }
                r.status >= 400
            }
            Err(kind) => {
                *totals.failures.entry(kind).or_default() += 1;
                *window.failures.entry(kind).or_default() += 1;
                true
            }
        };
        let bytes_sent = bytes_sent as u64;
        totals.requests += 1;
        totals.bytes_sent += bytes_sent;
        window.requests += 1;
        window.bytes_sent += bytes_sent;
        if error {
            totals.errors += 1;
            window.errors += 1;
        }
        // Latencies above one hour are clamped to it (the histogram's range).
        if timed {
            let _ = totals.corrected.record_micros(corrected);
            let _ = window.latency.record_micros(corrected);
            if self.separate_uncorrected {
                let _ = totals.uncorrected.record_micros(uncorrected);
            }
        }
        let name_stats = |n: &mut NameStats| {
            n.requests += 1;
            n.errors += u64::from(error);
            if timed {
                let _ = n.corrected.record_micros(corrected);
                if self.separate_uncorrected {
                    let _ = n.uncorrected.record_micros(uncorrected);
                }
            }
        };
        if let Some(n) = shard.names.get_mut(name) {
            name_stats(n);
            return;
        }
        // Many names: this thread's shard holds none; they live in a few.
        drop(shard);
        let holder = slot % self.name_shards.max(1);
        if let Some(Ok(mut s)) = self.shards.get(holder).map(Mutex::lock)
            && let Some(n) = s.names.get_mut(name)
        {
            name_stats(n);
        }
    }

    /// Takes the window of the last second from every shard.
    pub(crate) fn take_window(&self) -> Window {
        let mut all = Window::default();
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                let w = std::mem::take(&mut s.window);
                let _ = all.latency.merge(&w.latency);
                let _ = all.ttfb.merge(&w.ttfb);
                let _ = all.tls_handshake.merge(&w.tls_handshake);
                all.connects += w.connects;
                all.requests += w.requests;
                all.errors += w.errors;
                all.bytes_sent += w.bytes_sent;
                all.bytes_received += w.bytes_received;
                for (k, n) in w.failures {
                    *all.failures.entry(k).or_default() += n;
                }
                for (k, n) in w.error_statuses {
                    *all.error_statuses.entry(k).or_default() += n;
                }
            }
        }
        all
    }

    /// Everything counted so far.
    pub(crate) fn totals(&self) -> Totals {
        let mut all = Totals::default();
        for shard in &self.shards {
            if let Ok(s) = shard.lock() {
                all.merge(&s.totals);
            }
        }
        for shard in &self.shards[..self.name_shards.min(self.shards.len())] {
            if let Ok(s) = shard.lock() {
                all.merge_names(&s.names);
            }
        }
        if !self.separate_uncorrected {
            all.uncorrected = all.corrected.clone();
            for n in &mut all.per_name {
                n.uncorrected = n.corrected.clone();
            }
        }
        all
    }
}

fn thread_count() -> usize {
    std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .clamp(2, 64)
}

fn name_shard_count(names: usize, threads: usize) -> usize {
    (NAME_SLOTS / names.max(1)).clamp(1, threads)
}

pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .min(u64::try_from(LatencyHistogram::max_trackable().as_micros()).unwrap_or(u64::MAX))
}

/// One row of the timeline: a second of the run (or, for old rows of a long
/// run, several seconds coarsened into one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineRow {
    /// Seconds since the start of the run at the row's start.
    pub t_s: u64,
    /// Seconds the row covers (1, or more once coarsened).
    pub span_s: u64,
    /// Requests completed.
    pub requests: u64,
    /// Of which failed.
    pub errors: u64,
    /// Completed requests per second.
    pub rps: f64,
    /// Median latency (corrected), ms.
    pub p50_ms: f64,
    /// 95th percentile (corrected), ms.
    pub p95_ms: f64,
    /// 99th percentile (corrected), ms.
    pub p99_ms: f64,
    /// Largest latency, ms.
    pub max_ms: f64,
    /// Most virtual users running at once during the row (closed model).
    pub users: u64,
    /// Requests in flight at the end of the row.
    pub in_flight: u64,
    /// Intended requests dropped for want of capacity (open model).
    pub dropped: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Connections opened.
    #[serde(default)]
    pub connects: u64,
    /// 95th percentile of the time to first byte, ms (0 when nothing came back).
    #[serde(default)]
    pub ttfb_p95_ms: f64,
    /// 95th percentile of the TLS handshakes of the row, ms (0 without any).
    #[serde(default)]
    pub tls_handshake_p95_ms: f64,
}

impl TimelineRow {
    /// Joins two adjacent rows. Counts add up; the percentiles of the joined
    /// row are the larger of the two (an upper bound: per-row histograms are
    /// not kept, the run's totals are exact).
    fn join(&self, next: &TimelineRow) -> TimelineRow {
        let span_s = self.span_s + next.span_s;
        let requests = self.requests + next.requests;
        TimelineRow {
            t_s: self.t_s,
            span_s,
            requests,
            errors: self.errors + next.errors,
            rps: requests as f64 / span_s.max(1) as f64,
            p50_ms: self.p50_ms.max(next.p50_ms),
            p95_ms: self.p95_ms.max(next.p95_ms),
            p99_ms: self.p99_ms.max(next.p99_ms),
            max_ms: self.max_ms.max(next.max_ms),
            users: next.users,
            in_flight: next.in_flight,
            dropped: self.dropped + next.dropped,
            bytes_sent: self.bytes_sent + next.bytes_sent,
            bytes_received: self.bytes_received + next.bytes_received,
            connects: self.connects + next.connects,
            ttfb_p95_ms: self.ttfb_p95_ms.max(next.ttfb_p95_ms),
            tls_handshake_p95_ms: self.tls_handshake_p95_ms.max(next.tls_handshake_p95_ms),
        }
    }
}

/// Rows kept before the older half is coarsened: a 24-hour run stays within a
/// few thousand rows, the newest at one-second resolution.
pub(crate) const TIMELINE_ROWS: usize = 4096;

/// The bounded per-second series of a run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    rows: Vec<TimelineRow>,
}

impl Timeline {
    pub(crate) fn push(&mut self, row: TimelineRow) {
        if self.rows.len() >= TIMELINE_ROWS {
            let half = self.rows.len() / 2;
            let mut older: Vec<TimelineRow> = self.rows[..half]
                .chunks(2)
                .map(|pair| match pair {
                    [a, b] => a.join(b),
                    [a] => a.clone(),
                    _ => unreachable!("chunks(2) yields one or two rows"),
                })
                .collect();
            older.extend_from_slice(&self.rows[half..]);
            self.rows = older;
        }
        self.rows.push(row);
    }

    pub(crate) fn rows(&self) -> &[TimelineRow] {
        &self.rows
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: u64) -> TimelineRow {
        TimelineRow {
            t_s: t,
            span_s: 1,
            requests: 10,
            errors: 1,
            rps: 10.0,
            p50_ms: 1.0,
            p95_ms: t as f64,
            p99_ms: t as f64,
            max_ms: t as f64,
            users: 5,
            in_flight: 0,
            dropped: 0,
            bytes_sent: 100,
            bytes_received: 200,
            ..TimelineRow::default()
        }
    }

    #[test]
    fn a_day_of_seconds_stays_bounded_and_keeps_every_request() {
        let mut tl = Timeline::default();
        for t in 0..86_400 {
            tl.push(row(t));
        }
        assert!(tl.rows().len() <= TIMELINE_ROWS);
        let requests: u64 = tl.rows().iter().map(|r| r.requests).sum();
        assert_eq!(requests, 864_000);
        let span: u64 = tl.rows().iter().map(|r| r.span_s).sum();
        assert_eq!(span, 86_400);
        // The newest rows keep one-second resolution; rows stay in time order.
        assert_eq!(tl.rows().last().unwrap().span_s, 1);
        assert!(
            tl.rows()
                .windows(2)
                .all(|w| w[0].t_s + w[0].span_s == w[1].t_s)
        );
    }

    #[test]
    fn per_name_figures_do_not_multiply_by_threads() {
        let many = Recorder::new(100, true);
        assert_eq!(many.name_shards, 1, "100 names share one slot");
        let one = Recorder::new(1, false);
        assert_eq!(
            one.name_shards,
            one.shards.len(),
            "one name: a slot per thread"
        );
        let rec = std::sync::Arc::new(Recorder::new(100, true));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let rec = std::sync::Arc::clone(&rec);
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        let ok = Ok(Response {
                            status: 200,
                            bytes_received: 1,
                        });
                        rec.record(
                            i % 100,
                            t0,
                            t0,
                            t0 + Duration::from_micros(50),
                            1,
                            ok,
                            &Phases::default(),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let totals = rec.totals();
        assert_eq!(totals.requests, 4000);
        assert_eq!(totals.per_name.len(), 100);
        assert!(
            totals
                .per_name
                .iter()
                .all(|n| n.requests == 40 && n.corrected.count() == 40)
        );
        // Memory: 100 names × 2 histograms in one slot, plus the report's copy.
        assert!(Recorder::histograms(100, true) < 3 * 2 * 100 + 10 * 64);
    }

    #[test]
    fn recording_counts_statuses_failures_and_both_latencies() {
        let rec = Recorder::new(2, true);
        let t0 = Instant::now();
        let ok = Ok(Response {
            status: 200,
            bytes_received: 50,
        });
        rec.record(
            0,
            t0,
            t0 + Duration::from_millis(400),
            t0 + Duration::from_millis(410),
            20,
            ok,
            &Phases::default(),
        );
        rec.record(
            1,
            t0,
            t0,
            t0 + Duration::from_millis(5),
            20,
            Ok(Response {
                status: 503,
                bytes_received: 10,
            }),
            &Phases::default(),
        );
        rec.record(
            1,
            t0,
            t0,
            t0 + Duration::from_millis(5),
            20,
            Err(FailureKind::Connect),
            &Phases {
                connect: Some(Err(Duration::from_millis(3))),
                ..Phases::default()
            },
        );
        let totals = rec.totals();
        assert_eq!((totals.requests, totals.errors), (3, 2));
        assert_eq!(totals.status_codes[&200], 1);
        assert_eq!(totals.failures[&FailureKind::Connect], 1);
        assert_eq!(totals.per_name[1].errors, 2);
        // Corrected counts the 400 ms the request waited for its slot; uncorrected does not.
        assert!(totals.per_name[0].corrected.max() >= Duration::from_millis(409));
        assert!(totals.per_name[0].uncorrected.max() < Duration::from_millis(11));
        assert_eq!(totals.phases.connect_failed.count(), 1);
        let w = rec.take_window();
        assert_eq!(
            (w.requests, w.errors, w.bytes_sent, w.bytes_received),
            (3, 2, 60, 60)
        );
        assert_eq!(rec.take_window().requests, 0);
    }
}
