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

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds,
/// e.g. `2026-11-28T09:00:00.000Z`.
///
/// ```
/// assert_eq!(perf_core::format_rfc3339(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(perf_core::format_rfc3339(1_795_856_400_123), "2026-11-28T09:00:00.123Z");
/// ```
pub fn format_rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// Seconds as a [`std::time::Duration`], never panicking: NaN and negative
/// values give zero, values beyond what a `Duration` holds give
/// `Duration::MAX`. Every float → `Duration` conversion of the toolkit goes
/// through this (a rate of `1e-30/s` once aborted a server through
/// `Duration::from_secs_f64(1.0 / rate)`).
///
/// ```
/// use std::time::Duration;
/// use perf_core::saturating_secs;
/// assert_eq!(saturating_secs(1.5), Duration::from_millis(1500));
/// assert_eq!(saturating_secs(1.0 / 1e-30), Duration::MAX);
/// assert_eq!(saturating_secs(f64::NAN), Duration::ZERO);
/// assert_eq!(saturating_secs(-3.0), Duration::ZERO);
/// ```
pub fn saturating_secs(secs: f64) -> std::time::Duration {
    if secs.is_nan() || secs <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX)
}
