//! A bounded object pool: reuse buffers and other costly values instead of
//! allocating them per request.
//!
//! The free list is a lock-free bounded queue (crossbeam's `ArrayQueue`), so
//! taking and returning an object never takes a shared lock; a reset hook
//! runs on return, a keep test drops objects not worth keeping (a buffer
//! that grew too big), and a full pool drops what comes back instead of
//! growing. Counters say whether the pool earns its keep.
//!
//! Why our own: the criterion bench `memory` (BENCHMARKS.md) measured the
//! maintained crates. `lockfree-object-pool` is the fastest of them but has
//! no bound (its free list grows to the peak forever) and no counters;
//! `object-pool` takes a mutex on every take and return.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use serde::{Deserialize, Serialize};

type Create<T> = Box<dyn Fn() -> T + Send + Sync>;
type Reset<T> = Box<dyn Fn(&mut T) + Send + Sync>;
type Keep<T> = Box<dyn Fn(&T) -> bool + Send + Sync>;

/// What a [`Pool`] has done since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PoolStats {
    /// Takes served from the free list.
    pub hits: u64,
    /// Takes that found the free list empty (a new object was created).
    pub misses: u64,
    /// Objects created (misses plus the pre-filled ones).
    pub created: u64,
    /// Returned objects dropped: the pool was full or the keep test said no.
    pub discarded: u64,
    /// Objects waiting in the free list now.
    pub idle: usize,
    /// The most objects the free list holds.
    pub capacity: usize,
}

impl PoolStats {
    /// Hits / takes (`None` before the first take).
    pub fn hit_ratio(&self) -> Option<f64> {
        let takes = self.hits + self.misses;
        (takes > 0).then(|| self.hits as f64 / takes as f64)
    }
}

struct Counters {
    hits: CachePadded<AtomicU64>,
    misses: CachePadded<AtomicU64>,
    discarded: CachePadded<AtomicU64>,
    prefilled: AtomicU64,
}

/// A bounded, thread-safe pool of `T`.
///
/// ```
/// use perf_memory::Pool;
/// let pool = Pool::builder(64, || Vec::<u8>::with_capacity(4096))
///     .reset(|buf| buf.clear())
///     .keep_if(|buf| buf.capacity() <= 64 * 1024)
///     .build();
/// {
///     let mut buf = pool.take();
///     buf.extend_from_slice(b"hello");
/// } // back in the pool, cleared
/// let buf = pool.take();
/// assert!(buf.is_empty() && buf.capacity() >= 4096);
/// drop(buf);
/// let stats = pool.stats();
/// assert_eq!((stats.hits, stats.misses, stats.created), (1, 1, 1));
/// ```
pub struct Pool<T> {
    free: ArrayQueue<T>,
    create: Create<T>,
    reset: Option<Reset<T>>,
    keep: Option<Keep<T>>,
    counters: Counters,
}

impl<T> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Pool`]: capacity and constructor first, hooks after.
pub struct PoolBuilder<T> {
    capacity: usize,
    create: Create<T>,
    reset: Option<Reset<T>>,
    keep: Option<Keep<T>>,
    prefill: usize,
}

impl<T> std::fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("capacity", &self.capacity)
            .field("prefill", &self.prefill)
            .finish_non_exhaustive()
    }
}

impl<T> PoolBuilder<T> {
    /// Runs on every object coming back, before it is kept (clear a buffer,
    /// reset a parser).
    pub fn reset(mut self, reset: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.reset = Some(Box::new(reset));
        self
    }

    /// Keeps a returned object only when this says so (e.g. a buffer that
    /// has not grown past a size); the others are dropped and counted.
    pub fn keep_if(mut self, keep: impl Fn(&T) -> bool + Send + Sync + 'static) -> Self {
        self.keep = Some(Box::new(keep));
        self
    }

    /// Creates `count` objects up front (at most the capacity).
    pub fn prefill(mut self, count: usize) -> Self {
        self.prefill = count;
        self
    }

    /// The pool.
    pub fn build(self) -> Pool<T> {
        let free = ArrayQueue::new(self.capacity.max(1));
        let mut prefilled = 0;
        for _ in 0..self.prefill.min(free.capacity()) {
            if free.push((self.create)()).is_ok() {
                prefilled += 1;
            }
        }
        Pool {
            free,
            create: self.create,
            reset: self.reset,
            keep: self.keep,
            counters: Counters {
                hits: CachePadded::new(AtomicU64::new(0)),
                misses: CachePadded::new(AtomicU64::new(0)),
                discarded: CachePadded::new(AtomicU64::new(0)),
                prefilled: AtomicU64::new(prefilled),
            },
        }
    }
}

impl<T> Pool<T> {
    /// A pool keeping at most `capacity` idle objects (at least 1), making
    /// new ones with `create`.
    pub fn builder(
        capacity: usize,
        create: impl Fn() -> T + Send + Sync + 'static,
    ) -> PoolBuilder<T> {
        PoolBuilder {
            capacity,
            create: Box::new(create),
            reset: None,
            keep: None,
            prefill: 0,
        }
    }

    /// An object from the free list, or a new one; it comes back on drop.
    pub fn take(&self) -> Pooled<'_, T> {
        Pooled {
            value: Some(self.take_value()),
            pool: self,
        }
    }

    /// The same, holding the pool through an `Arc` (for values that cross
    /// `.await` points or threads).
    pub fn take_owned(self: &Arc<Self>) -> OwnedPooled<T> {
        OwnedPooled {
            value: Some(self.take_value()),
            pool: Arc::clone(self),
        }
    }

    fn take_value(&self) -> T {
        match self.free.pop() {
            Some(value) => {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                value
            }
            None => {
                self.counters.misses.fetch_add(1, Ordering::Relaxed);
                (self.create)()
            }
        }
    }

    fn give_back(&self, mut value: T) {
        if let Some(keep) = &self.keep
            && !keep(&value)
        {
            self.counters.discarded.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(reset) = &self.reset {
            reset(&mut value);
        }
        if self.free.push(value).is_err() {
            self.counters.discarded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops idle objects until at most `keep` remain (memory pressure);
    /// returns how many were dropped.
    pub fn shrink_to(&self, keep: usize) -> usize {
        let mut dropped = 0;
        while self.free.len() > keep {
            if self.free.pop().is_none() {
                break;
            }
            dropped += 1;
        }
        self.counters
            .discarded
            .fetch_add(dropped as u64, Ordering::Relaxed);
        dropped
    }

    /// The counters now.
    pub fn stats(&self) -> PoolStats {
        let misses = self.counters.misses.load(Ordering::Relaxed);
        PoolStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses,
            created: misses + self.counters.prefilled.load(Ordering::Relaxed),
            discarded: self.counters.discarded.load(Ordering::Relaxed),
            idle: self.free.len(),
            capacity: self.free.capacity(),
        }
    }
}

/// An object taken from a [`Pool`]; it goes back when dropped.
pub struct Pooled<'a, T> {
    value: Option<T>,
    pool: &'a Pool<T>,
}

/// An object taken with [`Pool::take_owned`]; it goes back when dropped.
pub struct OwnedPooled<T> {
    value: Option<T>,
    pool: Arc<Pool<T>>,
}

macro_rules! guard {
    ($name:ident $(<$l:lifetime>)?) => {
        impl<$($l,)? T> $name<$($l,)? T> {
            /// Keeps the object: it will not go back to the pool.
            pub fn detach(mut self) -> Option<T> {
                self.value.take()
            }
        }

        impl<$($l,)? T> Deref for $name<$($l,)? T> {
            type Target = T;
            fn deref(&self) -> &T {
                // Present from construction until drop or `detach`, which
                // consumes the guard.
                match &self.value {
                    Some(v) => v,
                    None => unreachable!("a pooled value is present until the guard is consumed"),
                }
            }
        }

        impl<$($l,)? T> DerefMut for $name<$($l,)? T> {
            fn deref_mut(&mut self) -> &mut T {
                match &mut self.value {
                    Some(v) => v,
                    None => unreachable!("a pooled value is present until the guard is consumed"),
                }
            }
        }

        impl<$($l,)? T: std::fmt::Debug> std::fmt::Debug for $name<$($l,)? T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.value).finish()
            }
        }

        impl<$($l,)? T> Drop for $name<$($l,)? T> {
            fn drop(&mut self) {
                if let Some(value) = self.value.take() {
                    self.pool.give_back(value);
                }
            }
        }
    };
}

guard!(Pooled<'a>);
guard!(OwnedPooled);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_reset_kept_and_counted() {
        let pool = Pool::builder(2, || Vec::<u8>::with_capacity(16))
            .reset(Vec::clear)
            .keep_if(|v| v.capacity() <= 1024)
            .prefill(5)
            .build();
        assert_eq!(pool.stats().idle, 2, "prefill stops at the capacity");
        let mut a = pool.take();
        let b = pool.take();
        let c = pool.take(); // free list empty: created
        a.push(1);
        drop((a, b, c)); // the third does not fit
        let s = pool.stats();
        assert_eq!(
            (s.hits, s.misses, s.created, s.discarded, s.idle),
            (2, 1, 3, 1, 2)
        );
        assert!(pool.take().is_empty(), "reset ran on return");
        let mut big = pool.take();
        big.reserve(4096);
        drop(big); // fails the keep test
        assert_eq!(pool.stats().discarded, 2);
        let kept = pool.take().detach().unwrap();
        assert_eq!(kept.capacity(), 16);
        assert_eq!(pool.shrink_to(0), 0);
        assert_eq!(pool.stats().hit_ratio(), Some(5.0 / 6.0));
    }

    #[test]
    fn owned_guards_cross_threads_and_shrink_frees_idle_objects() {
        let pool = Arc::new(Pool::builder(64, || vec![0u64; 8]).build());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let mut v = pool.take_owned();
                        v[0] = i;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.hits + s.misses, 40_000);
        assert!(s.created <= 64 + 4, "{s:?}");
        assert!(s.idle >= 1);
        let idle = s.idle;
        assert_eq!(pool.shrink_to(1), idle - 1);
        assert_eq!(pool.stats().idle, 1);
    }
}
