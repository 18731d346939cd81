/// Everything that can go wrong in perf-core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A human duration such as `1.5s` could not be read.
    #[error("invalid duration {input:?}: {reason}")]
    InvalidDuration {
        /// The text as given.
        input: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// A human size such as `512MB` could not be read.
    #[error("invalid size {input:?}: {reason}")]
    InvalidSize {
        /// The text as given.
        input: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// An id was not a UUID.
    #[error("invalid id {input:?}: expected a UUID such as 0190c1d2-7a4b-7c3d-8e9f-0123456789ab")]
    InvalidId {
        /// The text as given.
        input: String,
    },
    /// A latency above what a [`crate::LatencyHistogram`] tracks (one hour).
    #[error("latency of {micros} µs is above the highest trackable value of {max_micros} µs")]
    LatencyOutOfRange {
        /// The value offered, in microseconds.
        micros: u64,
        /// The highest value the histogram tracks, in microseconds.
        max_micros: u64,
    },
    /// A serialized histogram could not be decoded or does not have our precision.
    #[error("histogram encoding is not valid: {0}")]
    HistogramDecode(String),
    /// Two histograms could not be merged.
    #[error("histograms cannot be merged: {0}")]
    HistogramMerge(String),
    /// A Prometheus label matcher (`name="value", ...`) could not be read.
    #[error("invalid label matcher {input:?}: {reason}")]
    InvalidLabelMatcher {
        /// The text as given (at most 200 characters of it).
        input: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
    /// An HTTP exchange of control traffic failed (see `http_client`).
    #[error("{url}: {message}")]
    Http {
        /// The URL (at most 200 characters of it).
        url: String,
        /// What failed.
        message: String,
    },
    /// Reading host or process statistics failed.
    #[error("reading {what} failed: {message}")]
    System {
        /// What was being read, e.g. `/proc/stat`.
        what: &'static str,
        /// The underlying error.
        message: String,
    },
}

/// `Result` with perf-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
