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
//! The CPU time spent spinning (the thread's own CPU clock, so time the
//! thread was descheduled is not counted) is idle time by definition, so the
//! generator's CPU figure ([`GeneratorLoad`](crate::GeneratorLoad)) leaves it
//! out: a spinning generator is not reported as the bottleneck.
//!
//! Two costs to know: an answer that arrives during the spin is read when
//! the spin ends, so a latency can read up to the budget high (20 µs against
//! the milliseconds a service answers in); and only the thread that drives
//! the runtime's I/O at that moment is spared its wake-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Nanoseconds spent spinning by every [`busy_poll`] hook of this process.
static SPUN_NANOS: AtomicU64 = AtomicU64::new(0);

/// The longest spin [`busy_poll`] accepts: past a fifth of a millisecond the
/// spin is no longer a bridge between two answers but a busy loop, and the
/// latency it can add stops being negligible.
pub const MAX_BUSY_POLL: Duration = Duration::from_micros(200);

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
/// assert!(perf_loadgen::busy_poll(Duration::from_millis(1)).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn busy_poll(budget: Duration) -> crate::Result<impl Fn() + Send + Sync + 'static> {
    if budget < Duration::from_micros(1) || budget > MAX_BUSY_POLL {
        return Err(crate::Error::InvalidOption {
            key: "busy_poll",
            value: format!("{budget:?}"),
            allowed: format!("from 1µs to {MAX_BUSY_POLL:?}"),
        });
    }
    Ok(move || {
        let cpu_before = thread_cpu_nanos();
        let start = Instant::now();
        while start.elapsed() < budget {
            std::hint::spin_loop();
        }
        let spun = thread_cpu_nanos().saturating_sub(cpu_before);
        SPUN_NANOS.fetch_add(spun, Ordering::Relaxed);
    })
}

/// This thread's CPU time, ns.
fn thread_cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
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
        let spun = spun_seconds() - before;
        // CPU time of the spinning thread: at most the wall time it took.
        assert!(
            spun > 100e-6 && spun <= start.elapsed().as_secs_f64(),
            "{spun}"
        );
    }

    #[test]
    fn budgets_outside_the_range_are_refused_by_name() {
        for bad in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_micros(201),
        ] {
            let err = busy_poll(bad).err().unwrap().to_string();
            assert!(err.contains("busy_poll"), "{err}");
        }
    }
}
