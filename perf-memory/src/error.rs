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
}

/// `Result` with perf-memory's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
