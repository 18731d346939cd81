/// Everything that can go wrong in perf-scaling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is out of range; the message says what is allowed.
    #[error("{field}: {message}")]
    Invalid {
        /// The field's path, e.g. `behavior.scale_up.policies[0].value`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A metric could not give a recommendation.
    #[error("metric unavailable: {0}")]
    NoMetrics(String),
    /// A trace or policy file could not be read.
    #[error("{0}")]
    Input(String),
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Result` with perf-scaling's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
