/// Everything that can go wrong in perf-memory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The allocator refused a statistics or control call.
    #[error("allocator call {name} failed: {message}")]
    Allocator {
        /// The mallctl name, e.g. `stats.allocated`.
        name: &'static str,
        /// What the allocator said.
        message: String,
    },
    /// A setting is out of range; the message says what is allowed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's name.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The build lacks what the call needs (a feature, or jemalloc as the
    /// global allocator).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A profile is already being taken; one at a time.
    #[error("a {running} profile ({id}) is already running; stop it or wait for it to finish")]
    ProfilerBusy {
        /// The kind of the running profile.
        running: String,
        /// Its id.
        id: String,
    },
    /// The profiler failed.
    #[error("profiling: {0}")]
    Profiling(String),
}

/// `Result` with perf-memory's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
