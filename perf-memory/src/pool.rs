//! A bounded object pool: reuse buffers and other costly values instead of
//! allocating them per request.
//!
//! Each thread keeps a few idle objects of its own (the fast path: no
//! shared lock, no shared atomic); beyond those, idle objects wait in a
//! lock-free bounded queue (crossbeam's `ArrayQueue`) shared by all threads.
//! A reset hook runs on return, a keep test drops objects not worth keeping
//! (a buffer that grew too big), and a full pool drops what comes back
//! instead of growing. Counters, kept per thread, say whether the pool earns
//! its keep.
//!
//! Why our own: the criterion bench `memory` (BENCHMARKS.md) measured the
//! maintained crates. `lockfree-object-pool` has no bound (its free list
//! grows to the peak forever) and no counters; `object-pool` takes a mutex
//! on every take and return and grows without bound too.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;
use serde::{Deserialize, Serialize};
use thread_local::ThreadLocal;

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

/// One thread's counters. Only the owning thread writes them (a plain
/// load and store, no locked instruction); `stats` reads them all.
#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    discarded: AtomicU64,
    local_idle: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// Idle objects one thread keeps for itself at most.
const LOCAL_CAPACITY: usize = 8;

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
pub struct Pool<T: Send> {
    free: ArrayQueue<T>,
    local: ThreadLocal<RefCell<Vec<T>>>,
    local_capacity: usize,
    create: Create<T>,
    reset: Option<Reset<T>>,
    keep: Option<Keep<T>>,
    counters: ThreadLocal<Counters>,
    prefilled: u64,
}

impl<T: Send> std::fmt::Debug for Pool<T> {
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

impl<T: Send> PoolBuilder<T> {
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
            local_capacity: LOCAL_CAPACITY.min(free.capacity()),
            free,
            local: ThreadLocal::new(),
            create: self.create,
            reset: self.reset,
            keep: self.keep,
            counters: ThreadLocal::new(),
            prefilled,
        }
    }
}

impl<T: Send> Pool<T> {
    /// A pool keeping at most `capacity` idle objects in its shared queue
    /// (at least 1), plus up to 8 per thread that uses it, making new ones
    /// with `create`.
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

    fn local(&self) -> &RefCell<Vec<T>> {
        self.local
            .get_or(|| RefCell::new(Vec::with_capacity(self.local_capacity)))
    }

    fn take_value(&self) -> T {
        let counters = self.counters.get_or_default();
        let mine = self.local().try_borrow_mut().ok().and_then(|mut l| l.pop());
        if let Some(value) = mine {
            bump(&counters.hits, 1);
            counters.local_idle.store(
                counters
                    .local_idle
                    .load(Ordering::Relaxed)
                    .saturating_sub(1),
                Ordering::Relaxed,
            );
            return value;
        }
        match self.free.pop() {
            Some(value) => {
                bump(&counters.hits, 1);
                value
            }
            None => {
                bump(&counters.misses, 1);
                (self.create)()
            }
        }
    }

    fn give_back(&self, mut value: T) {
        let counters = self.counters.get_or_default();
        if let Some(keep) = &self.keep
            && !keep(&value)
        {
            bump(&counters.discarded, 1);
            return;
        }
        if let Some(reset) = &self.reset {
            reset(&mut value);
        }
        if let Ok(mut local) = self.local().try_borrow_mut()
            && local.len() < self.local_capacity
        {
            local.push(value);
            bump(&counters.local_idle, 1);
            return;
        }
        if self.free.push(value).is_err() {
            bump(&counters.discarded, 1);
        }
    }

    /// Drops idle objects of the shared queue until at most `keep` remain,
    /// and the calling thread's own idle objects (memory pressure; other
    /// threads' few own objects stay); returns how many were dropped.
    pub fn shrink_to(&self, keep: usize) -> usize {
        let counters = self.counters.get_or_default();
        let mut dropped = 0;
        if let Ok(mut local) = self.local().try_borrow_mut() {
            dropped += local.len();
            local.clear();
            counters.local_idle.store(0, Ordering::Relaxed);
        }
        while self.free.len() > keep {
            if self.free.pop().is_none() {
                break;
            }
            dropped += 1;
        }
        bump(&counters.discarded, dropped as u64);
        dropped
    }

    /// The counters now (summed over threads).
    pub fn stats(&self) -> PoolStats {
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            self.counters
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .sum()
        };
        let misses = sum(|c| &c.misses);
        PoolStats {
            hits: sum(|c| &c.hits),
            misses,
            created: misses + self.prefilled,
            discarded: sum(|c| &c.discarded),
            idle: self.free.len() + usize::try_from(sum(|c| &c.local_idle)).unwrap_or(usize::MAX),
            capacity: self.free.capacity(),
        }
    }
}

/// An object taken from a [`Pool`]; it goes back when dropped.
pub struct Pooled<'a, T: Send> {
    value: Option<T>,
    pool: &'a Pool<T>,
}

/// An object taken with [`Pool::take_owned`]; it goes back when dropped.
pub struct OwnedPooled<T: Send> {
    value: Option<T>,
    pool: Arc<Pool<T>>,
}

macro_rules! guard {
    ($name:ident $(<$l:lifetime>)?) => {
        impl<$($l,)? T: Send> $name<$($l,)? T> {
            /// Keeps the object: it will not go back to the pool.
            pub fn detach(mut self) -> Option<T> {
                self.value.take()
            }
        }

        impl<$($l,)? T: Send> Deref for $name<$($l,)? T> {
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

        impl<$($l,)? T: Send> DerefMut for $name<$($l,)? T> {
            fn deref_mut(&mut self) -> &mut T {
                match &mut self.value {
                    Some(v) => v,
                    None => unreachable!("a pooled value is present until the guard is consumed"),
                }
            }
        }

        impl<$($l,)? T: Send + std::fmt::Debug> std::fmt::Debug for $name<$($l,)? T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.value).finish()
            }
        }

        impl<$($l,)? T: Send> Drop for $name<$($l,)? T> {
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
        // Capacity 2: two idle in the shared queue, and two of this thread's own.
        let pool = Pool::builder(2, || Vec::<u8>::with_capacity(16))
            .reset(Vec::clear)
            .keep_if(|v| v.capacity() <= 1024)
            .prefill(5)
            .build();
        assert_eq!(pool.stats().idle, 2, "prefill stops at the capacity");
        let mut a = pool.take();
        let b = pool.take();
        let c = pool.take(); // nothing idle: created
        a.push(1);
        drop((a, b, c));
        let s = pool.stats();
        assert_eq!(
            (s.hits, s.misses, s.created, s.discarded, s.idle),
            (2, 1, 3, 0, 3)
        );
        assert!(pool.take().is_empty(), "reset ran on return");
        // Six out at once, six back: two stay with this thread, two in the
        // shared queue, two are dropped.
        let out: Vec<_> = (0..6).map(|_| pool.take()).collect();
        drop(out);
        let s = pool.stats();
        assert_eq!((s.idle, s.discarded), (4, 2), "{s:?}");
        let mut big = pool.take();
        big.reserve(4096);
        drop(big); // fails the keep test
        assert_eq!(pool.stats().discarded, 3);
        let kept = pool.take().detach().unwrap();
        assert_eq!(kept.capacity(), 16);
        let idle = pool.stats().idle;
        assert_eq!(pool.shrink_to(0), idle);
        assert_eq!(pool.stats().idle, 0);
    }

    #[test]
    fn owned_guards_cross_threads_and_each_thread_reuses_its_own() {
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
        assert!(s.created <= 4, "{s:?}");
        assert_eq!(s.idle as u64, s.created, "{s:?}");
        assert!(s.hit_ratio().unwrap() > 0.999);
    }
}
