/// Everything that can stop perf-server from starting or its store from working.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its allowed range.
    #[error("invalid configuration `{field}`: {message}")]
    Config {
        /// The configuration key, as written in the file (`listen`, `body_limit`, ...).
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The configuration file could not be read or parsed.
    #[error("configuration file {path}: {message}")]
    ConfigFile {
        /// The file as given.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The store failed; the message says which backend and operation.
    #[error("store ({backend}): {message}")]
    Store {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The database schema is newer than this binary knows.
    #[error(
        "store ({backend}) has schema version {found}, newer than this perf-server knows ({known}); upgrade perf-server"
    )]
    SchemaTooNew {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// Version found in the database.
        found: i64,
        /// Highest version this binary knows.
        known: i64,
    },
    /// The host sampler could not start.
    #[error("metrics sampler: {0}")]
    Sampler(#[from] perf_core::Error),
    /// Binding or running the HTTP server failed.
    #[error("http server: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with perf-server's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
