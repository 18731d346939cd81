//! Busy polling: a load generator that spins briefly before its runtime
//! sleeps, so the target's answers find it awake.
//!
//! When a generator is faster than its target it keeps running out of work,
//! and its worker thread sleeps in `epoll_wait` between answers. Each answer
//! then has to wake it, and the wake-up is paid by the sender (on a virtual
//! machine an inter-processor interrupt through the hypervisor, several
//! microseconds). Measured against nginx over TLS on this project's machines
//! (BENCHMARKS.md), those wake-ups cost the target about 5 % of its
//! throughput. A short spin before each park lets most answers arrive while
//! the thread is still running, at the price of CPU the generator would
//! otherwise leave idle, so it is a switch (`perf-server run --busy-poll`),
//! off by default: on a machine where the generator shares cores with the
//! target, the spin would take CPU from the target.
//!
//! The time spent spinning is idle time by definition, so the generator's
//! CPU figure ([`GeneratorLoad`](crate::GeneratorLoad)) leaves it out: a
//! spinning generator is not reported as the bottleneck.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds spent spinning by every [`busy_poll`] hook of this process.
static SPUN_NANOS: AtomicU64 = AtomicU64::new(0);

/// The longest spin [`busy_poll`] accepts: past a millisecond the spin is
/// no longer a bridge between two answers but a busy loop.
pub const MAX_BUSY_POLL: Duration = Duration::from_millis(1);

/// A hook for tokio's `Builder::on_thread_park` that spins for `budget`
/// before the worker thread sleeps. Events that arrive during the spin are
/// picked up by the park's `epoll_wait` without a wake-up.
///
/// # Errors
/// [`Error::InvalidOption`](crate::Error::InvalidOption) naming
/// `busy_poll` when the budget is zero or above [`MAX_BUSY_POLL`].
///
/// # Example
/// ```
/// use std::time::Duration;
/// let runtime = tokio::runtime::Builder::new_multi_thread()
///     .worker_threads(1)
///     .on_thread_park(perf_loadgen::busy_poll(Duration::from_micros(20))?)
///     .enable_all()
///     .build()?;
/// runtime.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
/// assert!(perf_loadgen::busy_poll(Duration::from_secs(1)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn busy_poll(budget: Duration) -> crate::Result<impl Fn() + Send + Sync + 'static> {
    if budget.is_zero() || budget > MAX_BUSY_POLL {
        return Err(crate::Error::InvalidOption {
            key: "busy_poll",
            value: format!("{budget:?}"),
            allowed: format!("from 1µs to {MAX_BUSY_POLL:?}"),
        });
    }
    Ok(move || {
        let start = Instant::now();
        while start.elapsed() < budget {
            std::hint::spin_loop();
        }
        let spun = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        SPUN_NANOS.fetch_add(spun, Ordering::Relaxed);
    })
}

/// Seconds spent spinning by this process's [`busy_poll`] hooks so far.
pub(crate) fn spun_seconds() -> f64 {
    SPUN_NANOS.load(Ordering::Relaxed) as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hook_spins_its_budget_and_counts_it() {
        let before = spun_seconds();
        let hook = busy_poll(Duration::from_micros(200)).unwrap();
        let start = Instant::now();
        hook();
        assert!(start.elapsed() >= Duration::from_micros(200));
        assert!(spun_seconds() - before >= 200e-6);
    }

    #[test]
    fn budgets_outside_the_range_are_refused_by_name() {
        for bad in [Duration::ZERO, Duration::from_millis(2)] {
            let err = busy_poll(bad).err().unwrap().to_string();
            assert!(err.contains("busy_poll"), "{err}");
        }
    }
}
