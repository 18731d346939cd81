//! Versioned schema migrations, one list per dialect, and the one driver
//! both backends run. A step is applied once and recorded in
//! `schema_migrations` in the same transaction.

use crate::{Error, Result};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

/// The steps, the same versions and names for both dialects; each has its
/// own SQL file under `migrations/<dialect>/`.
macro_rules! steps {
    ($dialect:literal: $(($version:literal, $name:literal, $file:literal)),+ $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("migrations/", $dialect, "/", $file, ".sql")),
        }),+]
    };
}

macro_rules! all_steps {
    ($dialect:literal) => {
        steps!($dialect:
            (1, "metrics_snapshots", "0001_metrics_snapshots"),
            (2, "load_tests", "0002_load_tests"),
            (3, "profiles", "0003_profiles"),
            (4, "scaling", "0004_scaling"),
            (5, "test_owner", "0005_test_owner"),
        )
    };
}

pub(crate) const SQLITE: &[Migration] = all_steps!("sqlite");
pub(crate) const POSTGRES: &[Migration] = all_steps!("postgres");

/// The newest version in a list.
pub(crate) fn latest(list: &[Migration]) -> i64 {
    list.iter().map(|m| m.version).max().unwrap_or(0)
}

/// A database being migrated, in its dialect: where the applied versions
/// are kept and how one step is applied.
pub(crate) trait Schema {
    /// Creates the `schema_migrations` ledger if missing and returns the
    /// highest version it holds (0 for a new database).
    fn current_version(&mut self) -> impl Future<Output = Result<i64>> + Send;

    /// Runs one step's SQL and records it in the ledger, both or neither.
    fn apply(&mut self, step: Migration) -> impl Future<Output = Result<()>> + Send;
}

/// The one migration driver: refuses a database newer than this binary,
/// then applies, in order, each step it has not seen.
pub(crate) async fn run(
    backend: &'static str,
    schema: &mut impl Schema,
    list: &[Migration],
) -> Result<()> {
    let current = schema.current_version().await?;
    let known = latest(list);
    if current > known {
        return Err(Error::SchemaTooNew {
            backend,
            found: current,
            known,
        });
    }
    for step in list.iter().filter(|m| m.version > current) {
        schema.apply(*step).await.map_err(|e| match e {
            Error::Store { backend, message } => Error::Store {
                backend,
                message: format!("migration {} ({}): {message}", step.version, step.name),
            },
            other => other,
        })?;
        tracing::info!(
            backend,
            version = step.version,
            name = step.name,
            "migration applied"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_by_one_and_backends_agree() {
        for list in [SQLITE, POSTGRES] {
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{}", m.name);
            }
        }
        let names = |l: &[Migration]| l.iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names(SQLITE), names(POSTGRES));
    }
}
