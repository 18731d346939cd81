//! Bounded caches on moka, with the counters moka does not keep.
//!
//! moka bounds a cache by entries or by a weight (bytes, through a weigher),
//! expires entries by age (TTL) or idleness (time-to-idle), and admits with
//! TinyLFU, which keeps a hot set through a scan that would flush an LRU.
//! [`Cache`] adds hit, miss, load, eviction and expiration counters, exports
//! them through the `metrics` facade on [`Cache::publish_metrics`] (so the
//! lookup path only touches atomics), and can be shrunk under memory
//! pressure ([`Cache::shrink_to`]).

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use moka::notification::RemovalCause;
use serde::{Deserialize, Serialize};

/// What a [`Cache`] has done since it was built.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheStats {
    /// The cache's name (the `cache` label of its metrics).
    pub name: String,
    /// Lookups that found a value.
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Values computed by [`Cache::get_with`] on a miss.
    pub loads: u64,
    /// Entries pushed out by the size bound.
    pub evictions: u64,
    /// Entries dropped by TTL or time-to-idle.
    pub expirations: u64,
    /// Entries now (moka's count, which trails recent writes slightly).
    pub entries: u64,
    /// Total weight now: bytes with a weigher, else entries.
    pub weighted_size: u64,
    /// The bound: entries, or bytes with a weigher.
    pub capacity: u64,
    /// Hits / lookups (`None` before the first lookup).
    pub hit_ratio: Option<f64>,
}

/// Registers the help text and unit of every series
/// [`CacheStats::publish_metrics`] writes, with the `metrics` recorder
/// installed now (call it once, after installing one: `promtool check
/// metrics` wants a HELP line on every series).
pub fn describe_cache_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "perf_cache_hits_total",
        Unit::Count,
        "Lookups that found their entry, by cache."
    );
    describe_counter!(
        "perf_cache_misses_total",
        Unit::Count,
        "Lookups that did not find their entry, by cache."
    );
    describe_counter!(
        "perf_cache_loads_total",
        Unit::Count,
        "Entries loaded after a miss, by cache."
    );
    describe_counter!(
        "perf_cache_evictions_total",
        Unit::Count,
        "Entries evicted for room, by cache."
    );
    describe_counter!(
        "perf_cache_expirations_total",
        Unit::Count,
        "Entries dropped because their time to live or idle ran out, by cache."
    );
    describe_gauge!(
        "perf_cache_entries",
        Unit::Count,
        "Entries held now, by cache."
    );
    describe_gauge!(
        "perf_cache_weighted_size",
        "Entries held now, weighed by the cache's weigher (bytes for a byte-weighed cache, else entries), by cache."
    );
}

impl CacheStats {
    /// Writes these counters to the `metrics` recorder as
    /// `perf_cache_{hits,misses,loads,evictions,expirations}_total` and the
    /// gauges `perf_cache_entries`, `perf_cache_weighted_size`, labelled
    /// `cache=<name>`.
    pub fn publish_metrics(&self) {
        for (metric, value) in [
            ("perf_cache_hits_total", self.hits),
            ("perf_cache_misses_total", self.misses),
            ("perf_cache_loads_total", self.loads),
            ("perf_cache_evictions_total", self.evictions),
            ("perf_cache_expirations_total", self.expirations),
        ] {
            metrics::counter!(metric, "cache" => self.name.clone()).absolute(value);
        }
        metrics::gauge!("perf_cache_entries", "cache" => self.name.clone())
            .set(self.entries as f64);
        metrics::gauge!("perf_cache_weighted_size", "cache" => self.name.clone())
            .set(self.weighted_size as f64);
    }
}

#[derive(Default)]
struct Counters {
    hits: CachePadded<AtomicU64>,
    misses: CachePadded<AtomicU64>,
    loads: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

/// A size-bounded concurrent cache. Values are cloned out, so keep large
/// values behind an `Arc`.
///
/// ```
/// use perf_memory::Cache;
/// let cache: Cache<u64, String> = Cache::lru(1000);
/// assert_eq!(cache.get(&7), None);
/// cache.insert(7, "seven".to_owned());
/// assert_eq!(cache.get(&7).as_deref(), Some("seven"));
/// let eight = cache.get_with(8, || "eight".to_owned());
/// assert_eq!(eight, "eight");
/// let s = cache.stats();
/// assert_eq!((s.hits, s.misses, s.loads), (1, 2, 1));
/// ```
pub struct Cache<K, V> {
    inner: moka::sync::Cache<K, V>,
    name: Arc<str>,
    capacity: u64,
    counters: Arc<Counters>,
}

/// Another handle to the same cache (keys and values need not be `Clone`).
impl<K, V> Clone for Cache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            name: Arc::clone(&self.name),
            capacity: self.capacity,
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<K, V> std::fmt::Debug for Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

type Weigher<K, V> = Box<dyn Fn(&K, &V) -> u32 + Send + Sync + 'static>;

/// Builds a [`Cache`].
pub struct CacheBuilder<K, V> {
    name: String,
    max_entries: u64,
    weigher: Option<(u64, Weigher<K, V>)>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
}

impl<K, V> std::fmt::Debug for CacheBuilder<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("name", &self.name)
            .field("max_entries", &self.max_entries)
            .field("ttl", &self.ttl)
            .field("tti", &self.tti)
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most this many entries (default 10,000).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// At most `bytes` in total as `weigh` counts them (replaces the entry bound).
    pub fn max_bytes(
        mut self,
        bytes: u64,
        weigh: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some((bytes, Box::new(weigh)));
        self
    }

    /// Entries expire this long after they were written.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Entries expire this long after they were last read or written.
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// The cache.
    pub fn build(self) -> Cache<K, V> {
        let counters = Arc::new(Counters::default());
        let listener = Arc::clone(&counters);
        let mut builder = moka::sync::Cache::builder().eviction_listener(
            move |_key: Arc<K>, _value: V, cause: RemovalCause| match cause {
                RemovalCause::Size => {
                    listener.evictions.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    listener.expirations.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            },
        );
        let capacity = match self.weigher {
            Some((bytes, weigh)) => {
                builder = builder
                    .max_capacity(bytes)
                    .weigher(move |k: &K, v: &V| weigh(k, v));
                bytes
            }
            None => {
                builder = builder.max_capacity(self.max_entries);
                self.max_entries
            }
        };
        if let Some(ttl) = self.ttl {
            builder = builder.time_to_live(ttl);
        }
        if let Some(tti) = self.tti {
            builder = builder.time_to_idle(tti);
        }
        Cache {
            inner: builder.build(),
            name: self.name.into(),
            capacity,
            counters,
        }
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache named `name` (the `cache` label of its metrics).
    pub fn builder(name: impl Into<String>) -> CacheBuilder<K, V> {
        CacheBuilder {
            name: name.into(),
            max_entries: 10_000,
            weigher: None,
            ttl: None,
            tti: None,
        }
    }

    /// The simple case: at most `entries` entries, no expiry, named `cache`.
    /// (Admission is TinyLFU with LRU eviction, which keeps hot entries
    /// through scans that would flush a plain LRU.)
    pub fn lru(entries: u64) -> Self {
        Self::builder("cache").max_entries(entries).build()
    }

    /// The value for `key`, if cached.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.inner.get(key);
        let counter = if found.is_some() {
            &self.counters.hits
        } else {
            &self.counters.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// The value for `key`, computing and caching it with `load` on a miss
    /// (concurrent callers for the same key wait for one load).
    pub fn get_with(&self, key: K, load: impl FnOnce() -> V) -> V {
        let entry = self.inner.entry(key).or_insert_with(|| {
            self.counters.loads.fetch_add(1, Ordering::Relaxed);
            load()
        });
        let counter = if entry.is_fresh() {
            &self.counters.misses
        } else {
            &self.counters.hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
        entry.into_value()
    }

    /// Caches `value` under `key`.
    pub fn insert(&self, key: K, value: V) {
        self.inner.insert(key, value);
    }

    /// Drops `key`.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.invalidate(key);
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
        self.inner.run_pending_tasks();
    }

    /// Drops entries until about `fraction` (0 to 1) of the current weight
    /// remains; returns how many were dropped. moka does not expose recency,
    /// so the entries dropped are whichever its iterator yields first: this
    /// is for memory pressure, not for tuning.
    pub fn shrink_to(&self, fraction: f64) -> u64 {
        self.inner.run_pending_tasks();
        let fraction = fraction.clamp(0.0, 1.0);
        if fraction == 0.0 {
            let before = self.inner.entry_count();
            self.invalidate_all();
            return before;
        }
        let target = perf_core::num::saturating_u64(self.inner.weighted_size() as f64 * fraction);
        let entries = self.inner.entry_count().max(1);
        let average = (self.inner.weighted_size() / entries).max(1);
        let surplus = self.inner.weighted_size().saturating_sub(target) / average;
        let mut dropped = 0;
        for (key, _) in self
            .inner
            .iter()
            .take(usize::try_from(surplus).unwrap_or(usize::MAX))
        {
            self.inner.invalidate(key.as_ref());
            dropped += 1;
        }
        self.inner.run_pending_tasks();
        dropped
    }

    /// The counters now.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let hits = c.hits.load(Ordering::Relaxed);
        let misses = c.misses.load(Ordering::Relaxed);
        CacheStats {
            name: self.name.to_string(),
            hits,
            misses,
            loads: c.loads.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            expirations: c.expirations.load(Ordering::Relaxed),
            entries: self.inner.entry_count(),
            weighted_size: self.inner.weighted_size(),
            capacity: self.capacity,
            hit_ratio: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        }
    }

    /// Writes the counters to the `metrics` recorder (see
    /// [`CacheStats::publish_metrics`]). Call it before each scrape (or on a
    /// timer).
    pub fn publish_metrics(&self) {
        self.stats().publish_metrics();
    }

    /// Runs moka's pending maintenance now (evictions and expirations are
    /// otherwise applied on later calls).
    pub fn run_pending_tasks(&self) {
        self.inner.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_bound_counts_evictions_and_a_weigher_bounds_bytes() {
        let cache: Cache<u32, u32> = Cache::builder("small").max_entries(100).build();
        for i in 0..1000 {
            cache.insert(i, i);
        }
        cache.run_pending_tasks();
        let s = cache.stats();
        assert!(s.entries <= 100, "{s:?}");
        assert!(s.evictions >= 800, "{s:?}");
        let bytes: Cache<u32, Vec<u8>> = Cache::builder("bytes")
            .max_bytes(10_000, |_, v: &Vec<u8>| {
                u32::try_from(v.len()).unwrap_or(u32::MAX)
            })
            .build();
        for i in 0..100 {
            bytes.insert(i, vec![0; 1000]);
        }
        bytes.run_pending_tasks();
        let s = bytes.stats();
        assert!(s.weighted_size <= 10_000 && s.entries <= 10, "{s:?}");
        assert_eq!(s.capacity, 10_000);
    }

    #[test]
    fn ttl_and_idle_expire_and_are_counted() {
        let cache: Cache<&str, u8> = Cache::builder("ttl")
            .time_to_live(Duration::from_millis(50))
            .build();
        cache.insert("a", 1);
        assert_eq!(cache.get("a"), Some(1));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.get("a"), None);
        cache.run_pending_tasks();
        assert_eq!(cache.stats().expirations, 1);
        let idle: Cache<&str, u8> = Cache::builder("tti")
            .time_to_idle(Duration::from_millis(60))
            .build();
        idle.insert("b", 2);
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(idle.get("b"), Some(2), "reads keep it alive");
        }
        std::thread::sleep(Duration::from_millis(90));
        assert_eq!(idle.get("b"), None);
    }

    #[test]
    fn shrink_drops_about_the_asked_fraction() {
        let cache: Cache<u32, u32> = Cache::lru(1000);
        for i in 0..400 {
            cache.insert(i, i);
        }
        cache.run_pending_tasks();
        let dropped = cache.shrink_to(0.25);
        assert!((290..=310).contains(&dropped), "{dropped}");
        assert!(cache.stats().entries <= 110);
        let left = cache.stats().entries;
        assert_eq!(cache.shrink_to(0.0), left);
        assert_eq!(cache.stats().entries, 0);
    }
}
