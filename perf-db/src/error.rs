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
    /// The PostgreSQL client failed: the server's SQLSTATE when it sent one
    /// (`42P01` undefined table, `57014` statement timeout...), and the
    /// client's error as the source.
    #[error("database: {}", match sqlstate { Some(code) => format!("{code}: {message}"), None => message.clone() })]
    Postgres {
        /// The SQLSTATE code, when the server answered with an error.
        sqlstate: Option<String>,
        /// The server's message, or the client's.
        message: String,
        /// The client's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// The SQLSTATE of a PostgreSQL error, if the server sent one.
    ///
    /// ```
    /// let e = perf_db::Error::Database("no pool".into());
    /// assert_eq!(e.sqlstate(), None);
    /// ```
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Postgres { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(source: tokio_postgres::Error) -> Self {
        let (sqlstate, message) = source.as_db_error().map_or_else(
            || (None, source.to_string()),
            |d| (Some(d.code().code().to_owned()), d.message().to_owned()),
        );
        Self::Postgres {
            sqlstate,
            message,
            source,
        }
    }
}

/// `Result` with perf-db's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A PostgreSQL client error as an [`Error::Postgres`], its SQLSTATE and
/// its source kept.
pub(crate) fn db_error(e: tokio_postgres::Error) -> Error {
    Error::from(e)
}
