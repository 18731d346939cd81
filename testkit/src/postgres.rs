use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Where Debian puts the PostgreSQL 15 server binaries; `PERF_PG_BIN` overrides it.
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const INSTALL_HINT: &str = "install the PostgreSQL 15 server (Debian: `apt-get install -y postgresql-15 postgresql-contrib`) or set PERF_PG_BIN to its bin directory";

/// A throwaway PostgreSQL cluster: started by [`PgCluster::start`], stopped and
/// deleted when dropped.
#[derive(Debug)]
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    hypopg: bool,
    /// The server options, to start it again on the same port.
    options: String,
}

impl PgCluster {
    /// Creates and starts a cluster with trust authentication on 127.0.0.1.
    ///
    /// Errors (as text meant for a test failure) name what to install.
    pub fn start() -> Result<Self, String> {
        let bin = std::env::var_os("PERF_PG_BIN")
            .map_or_else(|| PathBuf::from(DEFAULT_PG_BIN), PathBuf::from);
        Self::start_with_binaries(&bin)
    }

    /// Like [`PgCluster::start`] with the server binaries taken from `bin`.
    pub fn start_with_binaries(bin: &Path) -> Result<Self, String> {
        let bin = bin.to_owned();
        for tool in ["initdb", "pg_ctl", "postgres"] {
            if !bin.join(tool).is_file() {
                return Err(format!(
                    "{} not found: {INSTALL_HINT}",
                    bin.join(tool).display()
                ));
            }
        }
        let run_as = if is_root() {
            Some(postgres_user()?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("perf-pg-")
            .tempdir()
            .map_err(|e| format!("cannot create a temp dir: {e}"))?;
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), Some(uid), Some(gid)).map_err(|e| format!("chown temp dir: {e}"))?;
        }
        let data = dir.path().join("data");
        let out = run(
            Command::new(bin.join("initdb"))
                .args([
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            run_as,
        )?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let hypopg = Path::new(&extension_dir(&bin))
            .join("hypopg.control")
            .is_file();

        let mut last_error = String::new();
        for _attempt in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -k {} -c shared_preload_libraries=pg_stat_statements -c fsync=off -c max_connections=200",
                dir.path().display()
            );
            let out = run(
                Command::new(bin.join("pg_ctl"))
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(dir.path().join("server.log"))
                    .args(["-o", &options, "-w", "-t", "30", "start"]),
                run_as,
            )?;
            if out.status.success() {
                return Ok(Self {
                    dir,
                    bin,
                    port,
                    run_as,
                    hypopg,
                    options,
                });
            }
            // Most likely the port was taken between choosing and binding it: try another.
            last_error = format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
            );
        }
        Err(last_error)
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for the `postgres` database as the `postgres` superuser.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// A connection URL for database `dbname`.
    pub fn url_for(&self, dbname: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Whether the `hypopg` extension is installed for this server.
    pub fn hypopg_available(&self) -> bool {
        self.hypopg
    }

    /// Runs SQL through `psql` (handy for fixtures), failing on the first error.
    pub fn psql(&self, dbname: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url_for(dbname),
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        succeeded("psql", &out)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Fills database `dbname` with pgbench's tables at scale 1, with data
    /// but without their primary keys (`pgbench -i -I dtg`: drop, tables,
    /// generate), for index advice to find them.
    pub fn pgbench_tables_without_keys(&self, dbname: &str) -> Result<(), String> {
        let out = run(
            Command::new(self.bin.join("pgbench")).args([
                "-i",
                "-I",
                "dtg",
                "-s",
                "1",
                "-q",
                &self.url_for(dbname),
            ]),
            None,
        )?;
        succeeded("pgbench -i", &out)
    }

    /// Stops the server (an outage), keeping its data for [`PgCluster::resume`].
    pub fn pause(&self) -> Result<(), String> {
        let data = self.dir.path().join("data");
        let out = run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "fast", "-w", "-t", "30", "stop"]),
            self.run_as,
        )?;
        succeeded("pg_ctl stop", &out)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while data.join("postmaster.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts the server again on the same port after [`PgCluster::pause`].
    pub fn resume(&self) -> Result<(), String> {
        let out = run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-o", &self.options, "-w", "-t", "30", "start"]),
            self.run_as,
        )?;
        succeeded("pg_ctl start", &out)
    }

    /// Creates an empty database and returns its URL.
    pub fn create_database(&self, dbname: &str) -> Result<String, String> {
        self.psql("postgres", &format!("CREATE DATABASE \"{dbname}\""))?;
        Ok(self.url_for(dbname))
    }

    /// Creates an empty database and connects to it (inside a tokio
    /// runtime): its URL and a client.
    pub async fn database(&self, dbname: &str) -> Result<(String, tokio_postgres::Client), String> {
        let url = self.create_database(dbname)?;
        let client = connect(&url).await?;
        Ok((url, client))
    }

    /// Panics, naming what to install, when hypopg is not installed for
    /// this server (tests that need it never skip silently).
    pub fn require_hypopg(&self) {
        assert!(
            self.hypopg,
            "this test needs hypopg: apt-get install -y postgresql-15-hypopg"
        );
    }
}

/// A client connected to `url`, its connection driven by a spawned task
/// (inside a tokio runtime).
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = run(
            Command::new(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "-t", "10", "stop"]),
            self.run_as,
        );
        // The postmaster can linger a moment after pg_ctl returns: wait for its pid file.
        let deadline = Instant::now() + Duration::from_secs(5);
        while data.join("postmaster.pid").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn run(command: &mut Command, run_as: Option<(u32, u32)>) -> Result<Output, String> {
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
        // initdb wants a HOME it can read; the temp dir's parent is world readable.
        command.env("HOME", std::env::temp_dir());
    }
    command.output().map_err(|e| {
        format!(
            "cannot run {:?}: {e} ({INSTALL_HINT})",
            command.get_program()
        )
    })
}

/// `Ok` when `what` exited successfully, else its error output.
fn succeeded(what: &str, out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    // /proc/self/status has "Uid: real effective saved fs".
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn postgres_user() -> Result<(u32, u32), String> {
    let passwd =
        fs::read_to_string("/etc/passwd").map_err(|e| format!("reading /etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.first() == Some(&"postgres") && fields.len() > 3 {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
        .ok_or_else(|| {
            format!("running as root needs a `postgres` user to run initdb: {INSTALL_HINT}")
        })
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// `<sharedir>/extension` of this installation in Debian's layout
/// (`/usr/share/postgresql/<version>/extension`).
fn extension_dir(bin: &Path) -> String {
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(|| "15".to_owned(), |v| v.to_string_lossy().into_owned());
    format!("/usr/share/postgresql/{version}/extension")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_fail_naming_the_package() {
        let err = PgCluster::start_with_binaries(Path::new("/nonexistent/pg/bin")).unwrap_err();
        assert!(err.contains("apt-get install -y postgresql-15"), "{err}");
    }

    #[test]
    fn starts_answers_and_cleans_up() {
        let pg = PgCluster::start().unwrap();
        assert_eq!(pg.psql("postgres", "SELECT 1 + 1").unwrap(), "2");
        let preload = pg
            .psql("postgres", "SHOW shared_preload_libraries")
            .unwrap();
        assert!(preload.contains("pg_stat_statements"), "{preload}");
        pg.psql("postgres", "CREATE EXTENSION pg_stat_statements")
            .unwrap();
        let url = pg.create_database("other").unwrap();
        assert!(url.ends_with("/other"));
        let dir = pg.dir.path().to_owned();
        drop(pg);
        assert!(!dir.exists());
    }
}
