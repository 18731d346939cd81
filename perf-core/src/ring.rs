use std::collections::VecDeque;
use std::sync::Arc;

/// Something that happened at a point in time, in milliseconds since the Unix epoch.
pub trait Timestamped {
    /// Milliseconds since the Unix epoch.
    fn timestamp_ms(&self) -> u64;
}

impl<T: Timestamped + ?Sized> Timestamped for Arc<T> {
    fn timestamp_ms(&self) -> u64 {
        (**self).timestamp_ms()
    }
}

/// A bounded series of samples, oldest first: pushing beyond the capacity drops
/// the oldest. Windows are read by timestamp.
///
/// ```
/// use perf_core::{SampleRing, Timestamped};
/// struct At(u64);
/// impl Timestamped for At { fn timestamp_ms(&self) -> u64 { self.0 } }
/// let mut ring = SampleRing::new(3);
/// for t in [1_000, 2_000, 3_000, 4_000] { ring.push(At(t)); }
/// assert_eq!(ring.len(), 3);
/// let last_2s: Vec<u64> = ring.window(1_500).map(|s| s.0).collect();
/// assert_eq!(last_2s, [3_000, 4_000]);
/// ```
#[derive(Debug, Clone)]
pub struct SampleRing<T> {
    samples: VecDeque<T>,
    capacity: usize,
}

impl<T: Timestamped> SampleRing<T> {
    /// An empty ring that holds at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends a sample, dropping the oldest when full.
    pub fn push(&mut self, sample: T) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<&T> {
        self.samples.back()
    }

    /// Samples no older than `window_ms` before the newest one, oldest first.
    pub fn window(&self, window_ms: u64) -> impl Iterator<Item = &T> {
        let newest = self.latest().map_or(0, Timestamped::timestamp_ms);
        let from = newest.saturating_sub(window_ms);
        let skip = self.samples.partition_point(|s| s.timestamp_ms() < from);
        self.samples.iter().skip(skip)
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// `true` when no sample is held.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The most samples held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}
