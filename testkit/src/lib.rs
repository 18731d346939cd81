//! # testkit
//!
//! Dev-only test support for the perf workspace:
//!
//! - [`PgCluster`]: a throwaway PostgreSQL 15 cluster for one test run (initdb in
//!   a temp dir as the `postgres` user when run as root, a free port on
//!   127.0.0.1, `pg_stat_statements` preloaded, `hypopg` when installed),
//!   removed on drop. Without the server binaries it fails with a message that
//!   names the Debian package to install; it never skips.
//! - [`http`]: a tiny blocking HTTP/1.1 client for local targets.
//! - [`target::TargetServer`]: a local HTTP/1.1 target with delays, statuses,
//!   stalls, routes, optionally over TLS.
//! - [`h2_target::H2Target`]: a local HTTP/2 target (h2c or TLS with ALPN h2).
//! - [`browser::Browser`]: a headless Chromium driven through chromedriver
//!   (W3C WebDriver over [`http`]) for the console's page tests.
//! - [`certs`]: the test-only CA, server and client certificates.
//! - [`fuzz`]: seeded, time-boxed structure-aware mutation of JSON and text for
//!   the bounded fuzz runs in CI (`FUZZ_SECONDS`, `FUZZ_SEED`).
//!
//! ```no_run
//! let pg = testkit::PgCluster::start().expect("PostgreSQL 15 is installed");
//! println!("connect to {}", pg.url());
//! ```

pub mod browser;
pub mod certs;
pub mod fuzz;
pub mod h2_target;
pub mod http;
mod postgres;
pub mod target;

pub use postgres::{PgCluster, connect};
