//! Load-balancing strategies to embed in a proxy or client: round robin,
//! smooth weighted round robin, least outstanding requests,
//! power-of-two-choices on peak-EWMA latency, and Maglev consistent hashing;
//! new backends can ramp up over a slow-start window.
//!
//! A [`LoadBalancer`] hands out a [`Pick`] per request; give it back with
//! [`LoadBalancer::finish`] and the latency so outstanding counts and
//! latency estimates stay current.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How requests are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each backend in turn.
    RoundRobin,
    /// In turn, in proportion to weights (nginx's smooth algorithm).
    WeightedRoundRobin,
    /// The backend with the fewest requests in flight.
    LeastOutstanding,
    /// Two backends at random, the one with the lower peak-EWMA latency ×
    /// (outstanding + 1) (Finagle's and Linkerd's choice).
    PeakEwma,
    /// Consistent hashing on a request key with a Maglev lookup table:
    /// the same key goes to the same backend; a change of backends moves few keys.
    Maglev,
}

/// A backend to balance over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Backend {
    /// Its identity (an address).
    pub id: String,
    /// Relative weight (at least 1).
    pub weight: u32,
}

impl Backend {
    /// A backend of weight 1.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            weight: 1,
        }
    }
}

struct State {
    backend: Backend,
    /// When it joined, for slow start (`None`: there from the beginning).
    added: Option<Instant>,
    outstanding: AtomicU64,
    served: AtomicU64,
    /// Peak EWMA of latency in microseconds, as f64 bits.
    ewma_us: AtomicU64,
    /// When it was last updated, nanoseconds since the balancer's epoch.
    ewma_at_ns: AtomicU64,
}

impl State {
    fn new(backend: Backend, added: Option<Instant>, now_ns: u64) -> Self {
        Self {
            backend,
            added,
            outstanding: AtomicU64::new(0),
            served: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0f64.to_bits()),
            ewma_at_ns: AtomicU64::new(now_ns),
        }
    }

    /// The latency estimate decayed to `now_ns` (as Finagle's and Linkerd's
    /// peak EWMA read it): an old slow answer weighs less as time passes,
    /// even while the backend gets no traffic.
    fn ewma_at(&self, now_ns: u64) -> f64 {
        let ewma = f64::from_bits(self.ewma_us.load(Ordering::Relaxed));
        let elapsed = now_ns.saturating_sub(self.ewma_at_ns.load(Ordering::Relaxed)) as f64 / 1e9;
        ewma * (-elapsed / EWMA_DECAY.as_secs_f64()).exp()
    }
}

/// Where a balancer reads the time (slow start, latency decay): the real
/// clock, or a simulated one.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// One routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// Position of the backend in the current list.
    pub index: usize,
    /// Its id.
    pub id: String,
}

/// Share of requests per backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Share {
    /// Backend id.
    pub id: String,
    /// Requests sent to it.
    pub requests: u64,
    /// Requests in flight now.
    pub outstanding: u64,
    /// Its share of all requests (0 to 1).
    pub share: f64,
}

/// The size of the Maglev lookup table (a prime well above 100 × backends).
const MAGLEV_TABLE: usize = 65_537;
/// How fast the latency estimate forgets (time constant).
const EWMA_DECAY: Duration = Duration::from_secs(10);

struct Inner {
    states: Vec<State>,
    maglev: Vec<usize>,
}

/// A balancer over a changing set of backends.
///
/// ```
/// use perf_scaling::{Backend, LoadBalancer, Strategy};
/// let lb = LoadBalancer::new(Strategy::LeastOutstanding, (0..3).map(|i| Backend::new(format!("10.0.0.{i}:8080"))).collect());
/// let a = lb.pick(None).unwrap();
/// let b = lb.pick(None).unwrap();
/// assert_ne!(a.index, b.index, "the busy one is avoided");
/// lb.finish(&a, std::time::Duration::from_millis(3));
/// lb.finish(&b, std::time::Duration::from_millis(4));
/// ```
pub struct LoadBalancer {
    strategy: Strategy,
    slow_start: Duration,
    clock: Clock,
    epoch: Instant,
    inner: RwLock<Inner>,
    cursor: AtomicUsize,
    wrr: Mutex<Vec<i64>>,
    rng: AtomicU64,
}

impl std::fmt::Debug for LoadBalancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("strategy", &self.strategy)
            .field("backends", &self.shares().len())
            .finish_non_exhaustive()
    }
}

fn hash_of(value: &str, seed: u64) -> u64 {
    let mut h = DefaultHasher::new();
    seed.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// Maglev's lookup table: each backend fills its preferred slots in turn.
fn maglev_table(states: &[State]) -> Vec<usize> {
    let n = states.len();
    if n == 0 {
        return Vec::new();
    }
    let m = MAGLEV_TABLE as u64;
    let prefs: Vec<(u64, u64)> = states
        .iter()
        .map(|s| {
            let offset = hash_of(&s.backend.id, 0xa5a5) % m;
            let skip = hash_of(&s.backend.id, 0x5a5a) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; n];
    let mut table = vec![usize::MAX; MAGLEV_TABLE];
    let mut filled = 0;
    'fill: loop {
        for i in 0..n {
            let (offset, skip) = prefs[i];
            let mut c = (offset + next[i] * skip) % m;
            while table[usize::try_from(c).unwrap_or(0)] != usize::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[usize::try_from(c).unwrap_or(0)] = i;
            next[i] += 1;
            filled += 1;
            if filled == MAGLEV_TABLE {
                break 'fill;
            }
        }
    }
    table
}

impl LoadBalancer {
    /// A balancer with `strategy` over `backends`.
    pub fn new(strategy: Strategy, backends: Vec<Backend>) -> Self {
        let lb = Self {
            strategy,
            slow_start: Duration::ZERO,
            clock: Arc::new(Instant::now),
            epoch: Instant::now(),
            inner: RwLock::new(Inner {
                states: Vec::new(),
                maglev: Vec::new(),
            }),
            cursor: AtomicUsize::new(0),
            wrr: Mutex::new(Vec::new()),
            rng: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        };
        lb.replace(backends, None);
        lb
    }

    /// New backends receive traffic in proportion to the time since they
    /// joined over `window` (weighted round robin and peak EWMA).
    pub fn with_slow_start(mut self, window: Duration) -> Self {
        self.slow_start = window;
        self
    }

    /// Reads the time from `clock` instead of the real one, for slow start
    /// and the latency estimate's decay (a simulation runs on its own time).
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicU64, Ordering}};
    /// use std::time::{Duration, Instant};
    /// use perf_scaling::{Backend, LoadBalancer, Strategy};
    /// let start = Instant::now();
    /// let elapsed_ms = Arc::new(AtomicU64::new(0));
    /// let t = Arc::clone(&elapsed_ms);
    /// let lb = LoadBalancer::new(Strategy::PeakEwma, vec![Backend::new("a")])
    ///     .with_clock(Arc::new(move || start + Duration::from_millis(t.load(Ordering::Relaxed))));
    /// elapsed_ms.store(5_000, Ordering::Relaxed); // five simulated seconds later
    /// let p = lb.pick(None).unwrap();
    /// lb.finish(&p, Duration::from_millis(2));
    /// ```
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self.epoch = (self.clock)();
        if let Ok(inner) = self.inner.read() {
            for s in &inner.states {
                s.ewma_at_ns.store(0, Ordering::Relaxed);
            }
        }
        self
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    /// Nanoseconds since the epoch on the balancer's clock.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.now().saturating_duration_since(self.epoch).as_nanos())
            .unwrap_or(u64::MAX)
    }

    /// Replaces the backends; those already known keep their counters, new
    /// ones start their slow start now.
    pub fn set_backends(&self, backends: Vec<Backend>) {
        self.replace(backends, Some(self.now()));
    }

    fn replace(&self, backends: Vec<Backend>, now: Option<Instant>) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        let mut old: Vec<State> = std::mem::take(&mut inner.states);
        let states: Vec<State> = backends
            .into_iter()
            .map(|b| {
                let b = Backend {
                    weight: b.weight.max(1),
                    ..b
                };
                match old.iter().position(|s| s.backend.id == b.id) {
                    Some(i) => {
                        let mut s = old.swap_remove(i);
                        s.backend = b;
                        s
                    }
                    None => State::new(b, now, self.now_ns()),
                }
            })
            .collect();
        inner.maglev = if self.strategy == Strategy::Maglev {
            maglev_table(&states)
        } else {
            Vec::new()
        };
        inner.states = states;
        if let Ok(mut w) = self.wrr.lock() {
            *w = vec![0; inner.states.len()];
        }
    }

    fn random(&self) -> u64 {
        // xorshift on a shared state: good enough to spread choices.
        let mut x = self.rng.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Ordering::Relaxed);
        x
    }

    fn ramp(&self, s: &State) -> f64 {
        match s.added {
            Some(added) if !self.slow_start.is_zero() => {
                (self.now().saturating_duration_since(added).as_secs_f64()
                    / self.slow_start.as_secs_f64())
                .clamp(0.05, 1.0)
            }
            _ => 1.0,
        }
    }

    /// The backend for the next request (`key` is used by `Maglev`; others
    /// ignore it). `None` when there are no backends.
    pub fn pick(&self, key: Option<&str>) -> Option<Pick> {
        let inner = self.inner.read().ok()?;
        let n = inner.states.len();
        if n == 0 {
            return None;
        }
        let index = match self.strategy {
            Strategy::RoundRobin => self.cursor.fetch_add(1, Ordering::Relaxed) % n,
            Strategy::WeightedRoundRobin => {
                let mut current = self.wrr.lock().ok()?;
                if current.len() != n {
                    *current = vec![0; n];
                }
                let mut total = 0i64;
                let mut best = 0;
                for (i, s) in inner.states.iter().enumerate() {
                    let w = perf_core::num::saturating_i64(
                        (f64::from(s.backend.weight) * 100.0 * self.ramp(s)).round(),
                    );
                    current[i] += w;
                    total += w;
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                best
            }
            Strategy::LeastOutstanding => {
                let start = self.cursor.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|k| (start + k) % n)
                    .min_by_key(|i| inner.states[*i].outstanding.load(Ordering::Relaxed))
                    .unwrap_or(0)
            }
            Strategy::PeakEwma => {
                let a = usize::try_from(self.random() % n as u64).unwrap_or(0);
                let mut b = usize::try_from(self.random() % n as u64).unwrap_or(0);
                if n > 1 && b == a {
                    b = (b + 1) % n;
                }
                let now_ns = self.now_ns();
                let cost = |i: usize| {
                    let s = &inner.states[i];
                    let ewma = s.ewma_at(now_ns).max(1.0);
                    ewma * (s.outstanding.load(Ordering::Relaxed) as f64 + 1.0) / self.ramp(s)
                };
                if cost(b) < cost(a) { b } else { a }
            }
            Strategy::Maglev => {
                let h = match key {
                    Some(k) => hash_of(k, 0x1234),
                    None => self.random(),
                };
                inner.maglev[usize::try_from(h % MAGLEV_TABLE as u64).unwrap_or(0)]
            }
        };
        let s = &inner.states[index];
        s.outstanding.fetch_add(1, Ordering::Relaxed);
        s.served.fetch_add(1, Ordering::Relaxed);
        Some(Pick {
            index,
            id: s.backend.id.clone(),
        })
    }

    /// The request ended after `latency`.
    pub fn finish(&self, pick: &Pick, latency: Duration) {
        let Ok(inner) = self.inner.read() else {
            return;
        };
        let Some(s) = inner.states.iter().find(|s| s.backend.id == pick.id) else {
            return; // removed meanwhile
        };
        let _ = s
            .outstanding
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
        if self.strategy == Strategy::PeakEwma {
            let sample = latency.as_secs_f64() * 1e6;
            let now_ns = self.now_ns();
            let old = f64::from_bits(s.ewma_us.load(Ordering::Relaxed));
            let elapsed =
                now_ns.saturating_sub(s.ewma_at_ns.swap(now_ns, Ordering::Relaxed)) as f64 / 1e9;
            let next = if sample > old {
                sample // peak: jump up at once
            } else {
                let w = (-elapsed / EWMA_DECAY.as_secs_f64()).exp();
                old * w + sample * (1.0 - w)
            };
            s.ewma_us.store(next.to_bits(), Ordering::Relaxed);
        }
    }

    /// Requests per backend so far.
    pub fn shares(&self) -> Vec<Share> {
        let Ok(inner) = self.inner.read() else {
            return Vec::new();
        };
        let total: u64 = inner
            .states
            .iter()
            .map(|s| s.served.load(Ordering::Relaxed))
            .sum();
        inner
            .states
            .iter()
            .map(|s| {
                let requests = s.served.load(Ordering::Relaxed);
                Share {
                    id: s.backend.id.clone(),
                    requests,
                    outstanding: s.outstanding.load(Ordering::Relaxed),
                    share: if total > 0 {
                        requests as f64 / total as f64
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }
}

/// Coefficient of variation (standard deviation / mean) of request counts:
/// 0 is perfectly even; the mission allows 0.05.
///
/// ```
/// assert_eq!(perf_scaling::coefficient_of_variation(&[10, 10, 10]), 0.0);
/// assert!(perf_scaling::coefficient_of_variation(&[5, 15]) > 0.4);
/// ```
pub fn coefficient_of_variation(counts: &[u64]) -> f64 {
    if counts.is_empty() {
        return 0.0;
    }
    let n = counts.len() as f64;
    let mean = counts.iter().sum::<u64>() as f64 / n;
    if mean == 0.0 {
        return 0.0;
    }
    let var = counts
        .iter()
        .map(|c| (*c as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt() / mean
}
