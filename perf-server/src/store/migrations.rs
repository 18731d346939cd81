//! Versioned schema migrations, one list per backend. A migration is applied
//! once, in its own transaction, and recorded in `schema_migrations`.

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) sql: &'static str,
}

pub(crate) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "metrics_snapshots",
        sql: include_str!("migrations/sqlite/0001_metrics_snapshots.sql"),
    },
    Migration {
        version: 2,
        name: "load_tests",
        sql: include_str!("migrations/sqlite/0002_load_tests.sql"),
    },
    Migration {
        version: 3,
        name: "profiles",
        sql: include_str!("migrations/sqlite/0003_profiles.sql"),
    },
    Migration {
        version: 4,
        name: "scaling",
        sql: include_str!("migrations/sqlite/0004_scaling.sql"),
    },
    Migration {
        version: 5,
        name: "test_owner",
        sql: include_str!("migrations/sqlite/0005_test_owner.sql"),
    },
];

pub(crate) const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "metrics_snapshots",
        sql: include_str!("migrations/postgres/0001_metrics_snapshots.sql"),
    },
    Migration {
        version: 2,
        name: "load_tests",
        sql: include_str!("migrations/postgres/0002_load_tests.sql"),
    },
    Migration {
        version: 3,
        name: "profiles",
        sql: include_str!("migrations/postgres/0003_profiles.sql"),
    },
    Migration {
        version: 4,
        name: "scaling",
        sql: include_str!("migrations/postgres/0004_scaling.sql"),
    },
    Migration {
        version: 5,
        name: "test_owner",
        sql: include_str!("migrations/postgres/0005_test_owner.sql"),
    },
];

/// The newest version in a list.
pub(crate) fn latest(list: &[Migration]) -> i64 {
    list.iter().map(|m| m.version).max().unwrap_or(0)
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
