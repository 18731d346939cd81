use std::fmt;
use std::io::Cursor;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Highest latency tracked: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;
/// Significant decimal digits kept for every value.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Latencies in microseconds, from 1 µs to one hour at three significant digits.
///
/// Recording is O(1) and allocation free; two histograms merge exactly (the
/// merged percentiles are those of the union of both sets of samples, within
/// the precision), which is what lets a run split over several machines report
/// one true p99. On the wire (serde) it is a compact base64 string of the
/// HdrHistogram V2 deflate encoding.
///
/// ```
/// use std::time::Duration;
/// use perf_core::LatencyHistogram;
/// let mut a = LatencyHistogram::new();
/// let mut b = LatencyHistogram::new();
/// a.record(Duration::from_millis(10))?;
/// b.record(Duration::from_millis(30))?;
/// a.merge(&b)?;
/// assert_eq!(a.count(), 2);
/// assert_eq!(a.max(), Duration::from_micros(30_015)); // bucket upper bound, 3 digits
/// # Ok::<(), perf_core::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct LatencyHistogram {
    inner: Histogram<u64>,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // The bounds are constants inside hdrhistogram's accepted range, so this cannot fail.
        #[allow(clippy::expect_used)]
        let inner = Histogram::new_with_bounds(1, MAX_MICROS, SIGNIFICANT_DIGITS)
            .expect("constant histogram bounds are valid");
        Self { inner }
    }

    /// Bytes of memory one histogram holds (its counts array), for
    /// estimating what a run will need before it starts.
    pub fn memory_bytes() -> u64 {
        thread_local! {
            static BYTES: u64 = (LatencyHistogram::new().inner.distinct_values()
                * std::mem::size_of::<u64>()) as u64;
        }
        BYTES.with(|b| *b)
    }

    /// The highest latency this histogram can record.
    pub const fn max_trackable() -> Duration {
        Duration::from_micros(MAX_MICROS)
    }

    /// Records one latency. Sub-microsecond values count as 0 µs.
    pub fn record(&mut self, latency: Duration) -> Result<()> {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.record_micros(micros)
    }

    /// Records one latency given in microseconds.
    pub fn record_micros(&mut self, micros: u64) -> Result<()> {
        self.record_micros_n(micros, 1)
    }

    /// Records `count` occurrences of one latency given in microseconds.
    pub fn record_micros_n(&mut self, micros: u64, count: u64) -> Result<()> {
        if micros > MAX_MICROS {
            return Err(Error::LatencyOutOfRange {
                micros,
                max_micros: MAX_MICROS,
            });
        }
        self.inner
            .record_n(micros, count)
            .map_err(|_| Error::LatencyOutOfRange {
                micros,
                max_micros: MAX_MICROS,
            })
    }

    /// Adds every sample of `other` to this histogram.
    pub fn merge(&mut self, other: &LatencyHistogram) -> Result<()> {
        self.inner
            .add(&other.inner)
            .map_err(|e| Error::HistogramMerge(format!("{e:?}")))
    }

    /// Number of samples at or below `latency` (to the histogram's
    /// resolution: samples in the same bucket as `latency` count).
    pub fn count_at_or_below(&self, latency: Duration) -> u64 {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.inner.count_between(0, micros.min(MAX_MICROS))
    }

    /// The sum of the samples in seconds (each counted at its bucket's
    /// middle, as [`LatencyHistogram::mean`]), without rounding to whole
    /// nanoseconds: it only grows as samples are added.
    pub fn sum_seconds(&self) -> f64 {
        self.inner.mean() * self.inner.len() as f64 / 1e6
    }

    /// Number of samples recorded.
    pub fn count(&self) -> u64 {
        self.inner.len()
    }

    /// `true` when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The latency at `percentile` (0 to 100; values outside are clamped).
    /// An empty histogram answers zero.
    pub fn percentile(&self, percentile: f64) -> Duration {
        let q = if percentile.is_nan() {
            0.0
        } else {
            percentile.clamp(0.0, 100.0) / 100.0
        };
        Duration::from_micros(self.inner.value_at_quantile(q))
    }

    /// Smallest recorded latency (zero when empty).
    pub fn min(&self) -> Duration {
        if self.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.inner.min())
    }

    /// Largest recorded latency, as the upper bound of its bucket (zero when empty).
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.inner.max())
    }

    /// Arithmetic mean.
    pub fn mean(&self) -> Duration {
        crate::saturating_secs(self.inner.mean() / 1e6)
    }

    /// Standard deviation.
    pub fn stdev(&self) -> Duration {
        crate::saturating_secs(self.inner.stdev() / 1e6)
    }

    /// Forgets every sample, keeping the allocation.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// The usual figures at once, in milliseconds, ready for JSON: the one
    /// latency summary the crates report (load runs, pools, the database).
    pub fn summary(&self) -> LatencyMs {
        LatencyMs::of(self)
    }

    /// The compact transport form: base64 of the HdrHistogram V2 deflate encoding.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        // Serializing into a Vec cannot fail for a histogram of u64 counts.
        match V2DeflateSerializer::new().serialize(&self.inner, &mut bytes) {
            Ok(_) => STANDARD.encode(bytes),
            Err(_) => String::new(),
        }
    }

    /// Reads the form written by [`LatencyHistogram::to_base64`]. The encoded
    /// histogram must have our precision (three digits) and fit in one hour.
    pub fn from_base64(text: &str) -> Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|e| Error::HistogramDecode(format!("not base64: {e}")))?;
        let decoded: Histogram<u64> = Deserializer::new()
            .deserialize(&mut Cursor::new(&bytes))
            .map_err(|e| Error::HistogramDecode(format!("{e:?}")))?;
        if decoded.sigfig() != SIGNIFICANT_DIGITS {
            return Err(Error::HistogramDecode(format!(
                "precision is {} significant digits, expected {SIGNIFICANT_DIGITS}",
                decoded.sigfig()
            )));
        }
        if !decoded.is_empty() && decoded.max() > MAX_MICROS {
            return Err(Error::HistogramDecode(format!(
                "holds {} µs, above the highest trackable {MAX_MICROS} µs",
                decoded.max()
            )));
        }
        let mut histogram = Self::new();
        histogram
            .inner
            .add(&decoded)
            .map_err(|e| Error::HistogramDecode(format!("{e:?}")))?;
        Ok(histogram)
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("summary", &self.summary())
            .finish()
    }
}

impl Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

// In JSON a histogram is its base64 text (HdrHistogram V2, deflated).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for LatencyHistogram {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_encoding("base64")
            .description(Some(
                "an HdrHistogram in its V2 deflated encoding, base64: latencies in microseconds, merged exactly",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for LatencyHistogram {}

/// The usual latency figures of a [`LatencyHistogram`], in milliseconds:
/// the summary every crate reports (a load run's `latency_ms`, a pool's
/// wait and hold times, the database's query latency).
///
/// ```
/// use std::time::Duration;
/// use perf_core::{LatencyHistogram, LatencyMs};
/// let mut h = LatencyHistogram::new();
/// for ms in 1..=100 {
///     h.record(Duration::from_millis(ms))?;
/// }
/// let s: LatencyMs = h.summary();
/// assert!((s.p95 - 95.0).abs() < 0.1 && (s.mean - 50.5).abs() < 0.1);
/// assert_eq!(LatencyMs::of(&LatencyHistogram::new()), LatencyMs::default());
/// # Ok::<(), perf_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest (upper bound of its bucket).
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyMs {
    /// The figures of `h` (all zero when it is empty).
    pub fn of(h: &LatencyHistogram) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Self {
            p50: ms(h.percentile(50.0)),
            p90: ms(h.percentile(90.0)),
            p95: ms(h.percentile(95.0)),
            p99: ms(h.percentile(99.0)),
            p999: ms(h.percentile(99.9)),
            max: ms(h.max()),
            mean: ms(h.mean()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(range: std::ops::RangeInclusive<u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for us in range {
            h.record_micros(us).unwrap();
        }
        h
    }

    #[test]
    fn percentiles_are_within_three_digits() {
        let h = filled(1..=100_000);
        for (q, exact) in [(50.0, 50_000u64), (95.0, 95_000), (99.0, 99_000)] {
            let got = h.percentile(q).as_micros() as f64;
            let err = (got - exact as f64).abs() / exact as f64;
            assert!(err < 0.001, "p{q}: {got} vs {exact}");
        }
        assert_eq!(h.count(), 100_000);
        assert_eq!(h.min(), Duration::from_micros(1));
    }

    #[test]
    fn records_up_to_one_hour_and_refuses_more() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(3600)).unwrap();
        let err = h.record(Duration::from_secs(3601)).unwrap_err();
        assert!(matches!(err, Error::LatencyOutOfRange { .. }), "{err}");
        assert_eq!(h.count(), 1);
        let p100 = h.percentile(100.0).as_secs_f64();
        assert!((p100 - 3600.0).abs() / 3600.0 < 0.001);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = filled(1..=50_000);
        let b = filled(50_001..=100_000);
        a.merge(&b).unwrap();
        let all = filled(1..=100_000);
        assert_eq!(a, all);
        assert_eq!(a.summary(), all.summary());
    }

    #[test]
    fn base64_round_trip_is_exact_and_compact() {
        let h = filled(1..=100_000);
        let text = h.to_base64();
        assert!(text.len() < 16 * 1024, "{} bytes", text.len());
        let back = LatencyHistogram::from_base64(&text).unwrap();
        assert_eq!(back, h);
        let json = serde_json::to_string(&h).unwrap();
        let back: LatencyHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back.summary(), h.summary());
    }

    #[test]
    fn empty_histogram_round_trips_and_answers_zero() {
        let h = LatencyHistogram::new();
        assert_eq!(h.percentile(99.0), Duration::ZERO);
        assert_eq!(h.min(), Duration::ZERO);
        let back = LatencyHistogram::from_base64(&h.to_base64()).unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn garbage_and_wrong_precision_are_refused() {
        assert!(matches!(
            LatencyHistogram::from_base64("%%%"),
            Err(Error::HistogramDecode(_))
        ));
        assert!(LatencyHistogram::from_base64("aGVsbG8=").is_err());
        let mut two_digits = Histogram::<u64>::new_with_bounds(1, MAX_MICROS, 2).unwrap();
        two_digits.record(10).unwrap();
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&two_digits, &mut bytes)
            .unwrap();
        let err = LatencyHistogram::from_base64(&STANDARD.encode(bytes)).unwrap_err();
        assert!(err.to_string().contains("precision"), "{err}");
    }

    #[test]
    fn out_of_range_percentiles_are_clamped() {
        let h = filled(1..=10);
        assert_eq!(h.percentile(-5.0), h.percentile(0.0));
        assert_eq!(h.percentile(500.0), h.percentile(100.0));
        assert_eq!(h.percentile(f64::NAN), h.percentile(0.0));
    }
}
