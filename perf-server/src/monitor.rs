//! The background sampler: every `sample_interval` it reads the host and this
//! process (perf-core's `SystemSampler`) and the allocator (perf-memory), keeps
//! a bounded history, publishes gauges to the Prometheus recorder, and lets
//! requests wait for the first sample instead of answering zeros.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perf_core::system::{SystemSample, SystemSampler};
use perf_core::{SampleRing, Timestamped};
use perf_memory::AllocatorStats;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Result;
use crate::events::EventFeed;
use crate::memory::MemoryWatch;

/// One reading of the host, this process and its allocator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostSample {
    /// Host and process figures.
    #[serde(flatten)]
    pub system: SystemSample,
    /// jemalloc's figures; absent when perf-server runs without jemalloc.
    pub allocator: Option<AllocatorStats>,
}

impl Timestamped for HostSample {
    fn timestamp_ms(&self) -> u64 {
        self.system.timestamp_ms
    }
}

/// Handle to the running sampler; cheap to clone.
#[derive(Debug, Clone)]
pub struct Monitor {
    history: Arc<Mutex<SampleRing<Arc<HostSample>>>>,
    latest: watch::Receiver<Option<Arc<HostSample>>>,
    /// The newest sample's timestamp (0 before the first): one atomic that
    /// read requests compare, where borrowing `latest` takes its lock.
    latest_at: Arc<AtomicU64>,
    interval: Duration,
    memory: Arc<MemoryWatch>,
    /// Every sample as an event (`GET /performance/metrics/events`).
    events: Arc<EventFeed>,
}

/// Samples a late subscriber of the host events gets first.
const EVENT_HISTORY: usize = 60;

/// Owns the sampler task; [`MonitorTask::stop`] ends it.
#[derive(Debug)]
pub struct MonitorTask {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl MonitorTask {
    /// Stops sampling and waits for the task to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

impl Monitor {
    /// Starts sampling every `interval`, keeping `capacity` samples, with
    /// the default memory budget and leak detector.
    pub fn start(interval: Duration, capacity: usize) -> Result<(Self, MonitorTask)> {
        Self::start_with_memory(interval, capacity, Arc::new(MemoryWatch::default()))
    }

    /// The same, feeding every sample to `memory`.
    pub fn start_with_memory(
        interval: Duration,
        capacity: usize,
        memory: Arc<MemoryWatch>,
    ) -> Result<(Self, MonitorTask)> {
        let mut sampler = SystemSampler::new()?;
        let history = Arc::new(Mutex::new(SampleRing::new(capacity)));
        let (latest_tx, latest) = watch::channel(None);
        let (stop, mut stopped) = watch::channel(false);
        let ring = Arc::clone(&history);
        let latest_at = Arc::new(AtomicU64::new(0));
        let stamp = Arc::clone(&latest_at);
        let watcher = Arc::clone(&memory);
        let events = EventFeed::new("host samples", EVENT_HISTORY);
        let feed = Arc::clone(&events);
        let handle = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate; the baseline was read above
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = stopped.changed() => break,
                }
                let taken = tokio::task::spawn_blocking(move || {
                    let result = sampler.sample();
                    (sampler, result)
                })
                .await;
                let Ok((back, result)) = taken else {
                    tracing::error!("host sampler task panicked; sampling stops");
                    break;
                };
                sampler = back;
                match result {
                    Ok(system) => {
                        let sample = Arc::new(HostSample {
                            system,
                            allocator: read_allocator(),
                        });
                        crate::telemetry::publish_host_gauges(&sample);
                        watcher.observe(&sample);
                        if let Ok(mut ring) = ring.lock() {
                            ring.push(Arc::clone(&sample));
                        }
                        feed.publish("sample", &*sample);
                        let at = sample.system.timestamp_ms.max(1);
                        let _ = latest_tx.send(Some(sample));
                        // After the send: whoever sees the stamp finds the sample.
                        stamp.store(at, Ordering::Release);
                    }
                    Err(e) => tracing::warn!(error = %e, "host sample failed"),
                }
            }
        });
        Ok((
            Self {
                history,
                latest,
                latest_at,
                interval,
                memory,
                events,
            },
            MonitorTask { handle, stop },
        ))
    }

    /// Every sample as it is taken, the last 60 first.
    pub fn events(&self) -> &Arc<EventFeed> {
        &self.events
    }

    /// The newest sample, waiting up to two intervals for the first one.
    pub async fn latest(&self) -> Option<Arc<HostSample>> {
        // Once the first sample exists (always, after start-up), no timer
        // and no channel clone: this runs on read requests.
        if let Some(sample) = self.latest_now() {
            return Some(sample);
        }
        let mut rx = self.latest.clone();
        let wait = rx.wait_for(Option::is_some);
        match tokio::time::timeout(self.interval * 2 + Duration::from_secs(1), wait).await {
            Ok(Ok(sample)) => sample.clone(),
            _ => None,
        }
    }

    /// The newest sample's timestamp in milliseconds, if one was taken
    /// already (one atomic load: for keying what is derived from it).
    pub fn latest_timestamp_ms(&self) -> Option<u64> {
        match self.latest_at.load(Ordering::Acquire) {
            0 => None,
            at => Some(at),
        }
    }

    /// The newest sample if one was taken already.
    pub fn latest_now(&self) -> Option<Arc<HostSample>> {
        self.latest.borrow().clone()
    }

    /// Samples of the last `window`, oldest first (waits for the first sample).
    pub async fn window(&self, window: Duration) -> Vec<Arc<HostSample>> {
        if self.latest().await.is_none() {
            return Vec::new();
        }
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.history
            .lock()
            .map(|ring| ring.window(window_ms).cloned().collect())
            .unwrap_or_default()
    }

    /// How long the history reaches back at most.
    pub fn history_span(&self) -> Duration {
        let capacity = self.history.lock().map_or(1, |r| r.capacity());
        self.interval * u32::try_from(capacity).unwrap_or(u32::MAX)
    }

    /// This process's memory budget, leak detector and profiler.
    pub fn memory(&self) -> &Arc<MemoryWatch> {
        &self.memory
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(feature = "jemalloc")]
fn read_allocator() -> Option<AllocatorStats> {
    AllocatorStats::read()
        .map_err(|e| tracing::warn!(error = %e, "allocator statistics unavailable"))
        .ok()
}

#[cfg(not(feature = "jemalloc"))]
fn read_allocator() -> Option<AllocatorStats> {
    None
}
