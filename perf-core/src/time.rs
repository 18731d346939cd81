use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before 1970),
/// the timestamp every sample, event and record of the toolkit carries.
///
/// ```
/// let t = perf_core::unix_millis();
/// assert!(t > 1_700_000_000_000);
/// ```
pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
