/// Everything that can go wrong in perf-db.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The SQL could not even be tokenized (an unterminated string, say).
    #[error("cannot read SQL at line {line}, column {column}: {message}")]
    Sql {
        /// What the tokenizer or parser said.
        message: String,
        /// 1-based line, 0 when unknown.
        line: u64,
        /// 1-based column, 0 when unknown.
        column: u64,
    },
    /// An option or input out of range; the message names the field and what is allowed.
    #[error("{0}")]
    Invalid(String),
    /// PostgreSQL refused or failed a request; the message says what to do when it can.
    #[error("database: {0}")]
    Database(String),
}

/// `Result` with perf-db's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A PostgreSQL client error as an [`Error::Database`], with the SQLSTATE
/// code when the server sent one.
pub(crate) fn db_error(e: tokio_postgres::Error) -> Error {
    Error::Database(e.as_db_error().map_or_else(
        || e.to_string(),
        |d| format!("{}: {}", d.code().code(), d.message()),
    ))
}
