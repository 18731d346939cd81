/// Everything that can go wrong in perf-loadgen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scenario value is outside what is allowed.
    #[error("scenario {scenario:?}: `{key}` = {value} is not allowed; {allowed}")]
    Invalid {
        /// The scenario's name in the file.
        scenario: String,
        /// The key at fault, e.g. `users` or `requests[2].weight`.
        key: String,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// An option of a configuration (limits, comparison) is outside what is allowed.
    #[error("`{key}` = {value} is not allowed; {allowed}")]
    InvalidOption {
        /// The option at fault, e.g. `max_users`.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A worker of a distributed run failed or answered what it should not
    /// (see [`crate::ShardClient`]).
    #[error("{0}")]
    Worker(String),
    /// The scenario file is not valid YAML of the scenario schema.
    #[error("scenario file: {0}")]
    Parse(String),
    /// A target is not allowed by the target policy.
    #[error("target {url} refused: {reason}")]
    TargetRefused {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The file has no scenario of that name.
    #[error("no scenario named {name:?}; the file has: {available}")]
    UnknownScenario {
        /// The name asked for.
        name: String,
        /// The names there are.
        available: String,
    },
    /// The file has several scenarios and none was named.
    #[error("the file has several scenarios ({available}): say which one")]
    ScenarioNotNamed {
        /// The names there are.
        available: String,
    },
    /// A data file could not be read.
    #[error("data file {path}: {message}")]
    Feeder {
        /// The file as given.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Reports could not be merged.
    #[error("cannot merge reports: {0}")]
    Merge(String),
    /// A report cannot answer the question asked of it.
    #[error("{0}")]
    Report(String),
    /// Writing a report failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A perf-core error (histogram, units).
    #[error(transparent)]
    Core(#[from] perf_core::Error),
}

impl Error {
    /// The same error, naming `scenario` when it names none yet.
    pub(crate) fn in_scenario(self, scenario: &str) -> Self {
        match self {
            Self::Invalid {
                scenario: s,
                key,
                value,
                allowed,
            } if s.is_empty() => Self::Invalid {
                scenario: scenario.to_owned(),
                key,
                value,
                allowed,
            },
            other => other,
        }
    }
}

/// An [`Error::InvalidOption`].
pub(crate) fn invalid_option(
    key: &'static str,
    value: impl ToString,
    allowed: impl Into<String>,
) -> Error {
    Error::InvalidOption {
        key,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}

/// `Result` with perf-loadgen's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
