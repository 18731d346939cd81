//! Server configuration: defaults, a YAML file, then `PERF_*` environment
//! variables and command-line flags (flags win), then validation.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use perf_core::{ByteSize, HumanDuration};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything perf-server can be told. Every field has a default; a YAML file
/// sets any subset (unknown keys are refused, naming the key).
///
/// ```
/// let config = perf_server::config::ServerConfig::from_yaml("listen: 127.0.0.1:9000\nbody_limit: 2MiB\n").unwrap();
/// assert_eq!(config.listen.port(), 9000);
/// assert_eq!(config.body_limit.bytes(), 2 << 20);
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite store (default `./perf-data`).
    pub data_dir: PathBuf,
    /// PostgreSQL URL of a shared store; when set, SQLite is not used.
    pub database_url: Option<String>,
    /// Connections of the PostgreSQL store's pool (1 to 256, default 8).
    pub database_pool_size: usize,
    /// PostgreSQL whose performance `/performance/metrics/database` reports
    /// (default: `database_url`; never serialized).
    #[serde(skip_serializing)]
    pub analyze_database_url: Option<String>,
    /// Bearer token required by POST, PUT, PATCH and DELETE when set (never serialized).
    #[serde(skip_serializing)]
    pub api_token: Option<String>,
    /// Allow a non-loopback `listen` address without an `api_token`.
    pub insecure_no_auth: bool,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// A tracing filter such as `info` or `perf_server=debug,info`.
    pub log_level: String,
    /// Largest request body accepted (1KiB to 64MiB, default 1MiB).
    pub body_limit: ByteSize,
    /// How often the host sampler runs (100ms to 60s, default 1s).
    pub sample_interval: HumanDuration,
    /// How much sample history is kept for `?window=` (at most 100000 samples, default 1h).
    pub sample_history: HumanDuration,
    /// How long in-flight requests may take to finish on shutdown (default 30s).
    pub shutdown_timeout: HumanDuration,
    /// On SIGTERM, how long `/ready` answers 503 while requests are still
    /// served, before the server stops (default 0s; 5s to 15s behind a
    /// Kubernetes Service or a mesh, at most 5m).
    pub drain_delay: HumanDuration,
    /// HTTP worker threads (default: one per usable core, at most the
    /// cgroup's CPU quota rounded down, at least 1; 1 to 256).
    pub workers: Option<usize>,
    /// Largest load test accepted through the API (users, rate, duration).
    pub test_limits: perf_loadgen::Limits,
    /// Load tests running at once; more wait as `queued` (1 to 64, default 2).
    pub max_concurrent_tests: usize,
    /// Networks load tests may target (default loopback only). Link-local and
    /// cloud-metadata addresses are refused whatever this says.
    pub target_allowlist: Vec<String>,
    /// Base URLs of other perf-server instances a load test may be split over (`shards: N`).
    pub load_workers: Vec<String>,
    /// A name resolving to every worker, such as a Kubernetes headless Service
    /// (`http://perf-workers.perf.svc:8080`): each address is one worker.
    pub load_worker_service: Option<String>,
    /// Bearer token sent to the workers (default: this server's `api_token`; never serialized).
    #[serde(skip_serializing)]
    pub worker_token: Option<String>,
    /// TLS for `https://` workers: `{ca_file, client_cert, client_key,
    /// server_name, insecure_skip_verify}` as a scenario's `tls` (default:
    /// the system's roots).
    pub worker_tls: Option<perf_loadgen::TlsSpec>,
    /// Send the worker token over plain `http://` to workers outside
    /// loopback (default false: such a worker is refused; use https).
    pub allow_plain_http_workers: bool,
    /// Resident memory limit with its soft mark (purge, shrink caches) and
    /// hard mark (503 for new work). Default 512MiB, 0.8, 0.95.
    pub memory_budget: perf_memory::MemoryBudget,
    /// jemalloc settings applied at start (background threads, decay times).
    pub memory_tuning: perf_memory::MemoryTuning,
    /// How sustained memory growth is told from noise.
    pub leak_detection: perf_memory::LeakDetectorConfig,
    /// The autoscaler: policy, instance manager and metric source (none by default).
    pub scaling: Option<crate::scaling::ScalingSetup>,
    /// A directory of CSV files load tests may name in `data.file` (plain
    /// file names only). Without it, data comes only inline (`data.csv`).
    pub feeds_dir: Option<PathBuf>,
    /// Tests waiting for a slot at most; beyond it 429 + `Retry-After` (0 to 1000, default 16).
    pub max_queued_tests: usize,
    /// Server-Sent Events streams open at once (live tests and host
    /// figures, the console's charts); beyond it 503 (1 to 10000, default 256).
    pub max_event_streams: usize,
    /// The kernel's send buffer of each client connection (16KiB to 64MiB;
    /// unset: the kernel's autotuning, up to `net.ipv4.tcp_wmem`'s maximum).
    /// It bounds what a client that stops reading holds in the kernel; an
    /// event stream whose client stopped reading is dropped once it and the
    /// stream's queue are full.
    pub socket_send_buffer: Option<ByteSize>,
    /// Name of this instance in a shared store (default `<hostname>:<port>`):
    /// the owner of the tests it runs.
    pub instance_name: Option<String>,
    /// After how long without a heartbeat another instance's running tests
    /// count as abandoned and are marked `interrupted` (10s to 1h, default 30s).
    pub heartbeat_timeout: HumanDuration,
    /// How long a request body may take to arrive (1s to 5m, default 10s); 408 beyond.
    pub body_timeout: HumanDuration,
    /// Most client connections open at once, over all workers (16 to 15000,
    /// default 4096, well under the open-file limit); beyond it new
    /// connections wait in the listen backlog.
    pub max_connections: usize,
    /// Host names the server answers to besides loopback names and IP
    /// addresses (DNS rebinding needs a name); `["*"]` accepts any.
    pub allowed_hosts: Vec<String>,
    /// Origins (`https://console.example.com`) whose pages may send POST,
    /// PUT, PATCH and DELETE; requests from any other origin are refused.
    pub allowed_origins: Vec<String>,
    /// How many finished tests, profiles and snapshots are kept, and how long.
    pub retention: Retention,
}

/// How much of one kind of record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    /// The newest this many are kept (1 to 10000000).
    pub max_count: u64,
    /// Older than this are deleted (1m to 10y).
    pub max_age: HumanDuration,
}

/// Retention of what the server stores, applied every minute.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Finished load tests (default 10000, 90d).
    pub tests: Keep,
    /// CPU and heap profiles (default 200, 30d).
    pub profiles: Keep,
    /// Metrics snapshots (default 10000, 90d).
    pub snapshots: Keep,
}

impl Default for Retention {
    fn default() -> Self {
        let days = |d: u64| HumanDuration(Duration::from_secs(d * 86_400));
        Self {
            tests: Keep {
                max_count: 10_000,
                max_age: days(90),
            },
            profiles: Keep {
                max_count: 200,
                max_age: days(30),
            },
            snapshots: Keep {
                max_count: 10_000,
                max_age: days(90),
            },
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./perf-data"),
            database_url: None,
            database_pool_size: 8,
            analyze_database_url: None,
            api_token: None,
            insecure_no_auth: false,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            body_limit: ByteSize(1 << 20),
            sample_interval: HumanDuration(Duration::from_secs(1)),
            sample_history: HumanDuration(Duration::from_secs(3600)),
            shutdown_timeout: HumanDuration(Duration::from_secs(30)),
            drain_delay: HumanDuration(Duration::ZERO),
            workers: None,
            test_limits: perf_loadgen::Limits::default(),
            max_concurrent_tests: 2,
            target_allowlist: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            load_workers: Vec::new(),
            load_worker_service: None,
            worker_token: None,
            worker_tls: None,
            allow_plain_http_workers: false,
            memory_budget: perf_memory::MemoryBudget::default(),
            memory_tuning: perf_memory::MemoryTuning::default(),
            leak_detection: perf_memory::LeakDetectorConfig::default(),
            scaling: None,
            feeds_dir: None,
            max_queued_tests: 16,
            max_event_streams: crate::events::DEFAULT_MAX_STREAMS,
            socket_send_buffer: None,
            instance_name: None,
            heartbeat_timeout: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(10)),
            max_connections: 4096,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            retention: Retention::default(),
        }
    }
}

/// The largest number of samples kept in memory.
const MAX_SAMPLES: u64 = 100_000;

impl ServerConfig {
    /// How workers are reached: the `worker_tls` client (files read now,
    /// errors name the key) and `allow_plain_http_workers`.
    pub fn worker_transport(&self) -> Result<crate::test_runner::WorkerTransport> {
        let tls = self
            .worker_tls
            .as_ref()
            .map(|spec| {
                perf_loadgen::tls_client_config(
                    Some(spec),
                    &perf_loadgen::FeedAccess::Any,
                    vec![b"http/1.1".to_vec()],
                )
                .map_err(|e| invalid("worker_tls", e.to_string()))
            })
            .transpose()?;
        let server_name = self
            .worker_tls
            .as_ref()
            .map(perf_loadgen::TlsSpec::verified_server_name)
            .transpose()
            .map_err(|e| invalid("worker_tls.server_name", e.to_string()))?
            .flatten();
        Ok(crate::test_runner::WorkerTransport {
            tls,
            server_name,
            allow_plain_http: self.allow_plain_http_workers,
        })
    }

    /// What the load-test runner is given: limits, target policy, slots,
    /// feeds, workers and this instance's name (errors name the key).
    pub fn runner_settings(&self) -> Result<crate::test_runner::RunnerSettings> {
        Ok(crate::test_runner::RunnerSettings {
            limits: self.test_limits,
            policy: self
                .target_policy()
                .map_err(|message| invalid("target_allowlist", message))?,
            max_concurrent: self.max_concurrent_tests,
            max_queued: self.max_queued_tests,
            feeds: self.feed_access(),
            workers: crate::test_runner::Workers {
                urls: self.load_workers.clone(),
                service: self.load_worker_service.clone(),
                token: self.worker_token.clone().or_else(|| self.api_token.clone()),
                transport: self.worker_transport()?,
            },
            owner: self.instance(),
            heartbeat_timeout: self.heartbeat_timeout.as_duration(),
        })
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::Config {
        field: field.to_owned(),
        message: message.into(),
    }
}

impl ServerConfig {
    /// The database `/performance/metrics/database` reports on:
    /// `analyze_database_url`, else `database_url`, else none.
    pub fn analyzed_database(&self) -> Option<&str> {
        self.analyze_database_url
            .as_deref()
            .or(self.database_url.as_deref())
    }

    /// Reads a YAML document; unknown keys and bad values are errors that name the key.
    pub fn from_yaml(text: &str) -> Result<Self> {
        serde_saphyr::from_str(text).map_err(|e| Error::ConfigFile {
            path: "<yaml>".to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads a YAML configuration file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::ConfigFile {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            Error::ConfigFile { message, .. } => Error::ConfigFile {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Checks every field against its allowed range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        self.worker_transport()?;
        if !self.listen.ip().is_loopback() && self.api_token.is_none() && !self.insecure_no_auth {
            return Err(invalid(
                "listen",
                format!(
                    "refusing to listen on non-loopback address {} without an API token; set PERF_API_TOKEN (or api_token) or pass --insecure-no-auth",
                    self.listen
                ),
            ));
        }
        if let Some(token) = &self.api_token
            && (token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(invalid(
                "api_token",
                "must be at least 16 characters without whitespace",
            ));
        }
        for (field, url) in [
            ("database_url", &self.database_url),
            ("analyze_database_url", &self.analyze_database_url),
        ] {
            if let Some(url) = url
                && !(url.starts_with("postgres://")
                    || url.starts_with("postgresql://")
                    || url.contains("host="))
            {
                return Err(invalid(
                    field,
                    "must be a PostgreSQL URL (postgresql://user@host:port/db) or key=value connection string",
                ));
            }
        }
        if !(1..=256).contains(&self.database_pool_size) {
            return Err(invalid(
                "database_pool_size",
                format!(
                    "{} is outside the allowed range 1 to 256",
                    self.database_pool_size
                ),
            ));
        }
        let limit = self.body_limit.bytes();
        if !((1 << 10)..=(64 << 20)).contains(&limit) {
            return Err(invalid(
                "body_limit",
                format!(
                    "{} is outside the allowed range 1KiB to 64MiB",
                    self.body_limit
                ),
            ));
        }
        let interval = self.sample_interval.as_duration();
        if interval < Duration::from_millis(100) || interval > Duration::from_secs(60) {
            return Err(invalid(
                "sample_interval",
                format!(
                    "{} is outside the allowed range 100ms to 60s",
                    self.sample_interval
                ),
            ));
        }
        let history = self.sample_history.as_duration();
        if history < interval {
            return Err(invalid(
                "sample_history",
                format!(
                    "{} is shorter than sample_interval {}",
                    self.sample_history, self.sample_interval
                ),
            ));
        }
        if self.sample_capacity() as u64 > MAX_SAMPLES {
            return Err(invalid(
                "sample_history",
                format!(
                    "{} at one sample every {} is more than {MAX_SAMPLES} samples; shorten it or sample less often",
                    self.sample_history, self.sample_interval
                ),
            ));
        }
        if self.drain_delay.as_duration() > Duration::from_secs(300) {
            return Err(invalid(
                "drain_delay",
                format!("{} is above the allowed 5m", self.drain_delay),
            ));
        }
        if self.shutdown_timeout.as_duration() > Duration::from_secs(600) {
            return Err(invalid(
                "shutdown_timeout",
                format!(
                    "{} is above the allowed maximum of 10m",
                    self.shutdown_timeout
                ),
            ));
        }
        if let Some(workers) = self.workers
            && !(1..=256).contains(&workers)
        {
            return Err(invalid(
                "workers",
                format!("{workers} is outside the allowed range 1 to 256"),
            ));
        }
        let nested = |section: &str| {
            let section = section.to_owned();
            move |e: perf_memory::Error| match e {
                perf_memory::Error::Invalid { field, message } => {
                    invalid(&format!("{section}.{field}"), message)
                }
                other => invalid(&section, other.to_string()),
            }
        };
        self.memory_budget
            .validate()
            .map_err(nested("memory_budget"))?;
        self.memory_tuning
            .validate()
            .map_err(nested("memory_tuning"))?;
        self.leak_detection
            .validate()
            .map_err(nested("leak_detection"))?;
        if let Some(scaling) = &self.scaling {
            scaling
                .validate()
                .map_err(|(field, message)| invalid(&field, message))?;
        }
        if !(1..=64).contains(&self.max_concurrent_tests) {
            return Err(invalid(
                "max_concurrent_tests",
                format!(
                    "{} is outside the allowed range 1 to 64",
                    self.max_concurrent_tests
                ),
            ));
        }
        self.test_limits.validate().map_err(|e| match e {
            perf_loadgen::Error::InvalidOption {
                key,
                value,
                allowed,
            } => invalid(
                &format!("test_limits.{key}"),
                format!("{value} is outside the allowed range {allowed}"),
            ),
            other => invalid("test_limits", other.to_string()),
        })?;
        self.target_policy()
            .map_err(|e| invalid("target_allowlist", e))?;
        if !(1..=10_000).contains(&self.max_event_streams) {
            return Err(invalid(
                "max_event_streams",
                format!(
                    "{} is outside the allowed range 1 to 10000",
                    self.max_event_streams
                ),
            ));
        }
        if let Some(size) = self.socket_send_buffer
            && !((16 << 10)..=(64 << 20)).contains(&size.bytes())
        {
            return Err(invalid(
                "socket_send_buffer",
                format!("{size} is outside the allowed range 16KiB to 64MiB"),
            ));
        }
        if self.max_queued_tests > 1000 {
            return Err(invalid(
                "max_queued_tests",
                format!(
                    "{} is outside the allowed range 0 to 1000",
                    self.max_queued_tests
                ),
            ));
        }
        let within = |field: &str, d: HumanDuration, lo: u64, hi: u64, range: &str| {
            let secs = d.as_duration();
            if secs < Duration::from_secs(lo) || secs > Duration::from_secs(hi) {
                Err(invalid(
                    field,
                    format!("{d} is outside the allowed range {range}"),
                ))
            } else {
                Ok(())
            }
        };
        within(
            "heartbeat_timeout",
            self.heartbeat_timeout,
            10,
            3600,
            "10s to 1h",
        )?;
        within("body_timeout", self.body_timeout, 1, 300, "1s to 5m")?;
        for (kind, keep) in [
            ("tests", self.retention.tests),
            ("profiles", self.retention.profiles),
            ("snapshots", self.retention.snapshots),
        ] {
            if !(1..=10_000_000).contains(&keep.max_count) {
                return Err(invalid(
                    &format!("retention.{kind}.max_count"),
                    format!(
                        "{} is outside the allowed range 1 to 10000000",
                        keep.max_count
                    ),
                ));
            }
            within(
                &format!("retention.{kind}.max_age"),
                keep.max_age,
                60,
                10 * 366 * 86_400,
                "1m to 10y",
            )?;
        }
        if !(16..=15_000).contains(&self.max_connections) {
            return Err(invalid(
                "max_connections",
                format!(
                    "{} is outside the allowed range 16 to 15000 (the open-file limit is 20000)",
                    self.max_connections
                ),
            ));
        }
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            let ok = host == "*"
                || (!host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)));
            if !ok {
                return Err(invalid(
                    &format!("allowed_hosts[{i}]"),
                    format!("{host:?} is not a host name (letters, digits, - . _) or \"*\""),
                ));
            }
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.trim_end_matches('/').contains(['?', '#', ' '])
                && origin
                    .split("://")
                    .nth(1)
                    .is_some_and(|h| !h.is_empty() && !h.contains('/'));
            if !ok {
                return Err(invalid(
                    &format!("allowed_origins[{i}]"),
                    format!("{origin:?} is not an origin such as https://console.example.com"),
                ));
            }
        }
        if let Some(name) = &self.instance_name
            && (name.is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err(invalid(
                "instance_name",
                "1 to 200 characters without control characters",
            ));
        }
        if self.log_level.trim().is_empty() {
            return Err(invalid(
                "log_level",
                "must not be empty; e.g. info or perf_server=debug",
            ));
        }
        Ok(())
    }

    /// Number of samples the history holds.
    pub fn sample_capacity(&self) -> usize {
        let interval = self.sample_interval.as_duration().as_millis().max(1);
        let history = self.sample_history.as_duration().as_millis();
        usize::try_from(history.div_ceil(interval)).unwrap_or(usize::MAX)
    }

    /// The load-test target policy of `target_allowlist`.
    pub fn target_policy(&self) -> std::result::Result<perf_loadgen::TargetPolicy, String> {
        let nets: Vec<&str> = self.target_allowlist.iter().map(String::as_str).collect();
        perf_loadgen::TargetPolicy::new(&nets)
    }

    /// This instance's name in a shared store: `instance_name`, else
    /// `<hostname>:<listen port>`.
    pub fn instance(&self) -> String {
        self.instance_name.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}:{}", self.listen.port())
        })
    }

    /// The memory budget in force inside the process's cgroup: the
    /// configured one, or with the cgroup's lower memory limit
    /// ([`perf_memory::MemoryBudget::within`]).
    pub fn effective_memory_budget(
        &self,
        cgroup: Option<&perf_core::cgroup::CgroupSample>,
    ) -> perf_memory::MemoryBudget {
        self.memory_budget
            .within(cgroup.and_then(|c| c.memory_limit_bytes))
    }

    /// Where load tests may read `data.file`: the feeds directory, or nothing.
    pub fn feed_access(&self) -> perf_loadgen::FeedAccess {
        self.feeds_dir.clone().map_or(
            perf_loadgen::FeedAccess::InlineOnly,
            perf_loadgen::FeedAccess::Within,
        )
    }

    /// Path of the SQLite database file.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("perf.db")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.sample_capacity(), 3600);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = ServerConfig::from_yaml("listen: 127.0.0.1:1\nbody_limt: 1MiB\n").unwrap_err();
        assert!(err.to_string().contains("body_limt"), "{err}");
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = ServerConfig::from_yaml("sample_interval: fast\n").unwrap_err();
        assert!(err.to_string().contains("fast"), "{err}");

        type Mutation = fn(&mut ServerConfig);
        let cases: [(&str, Mutation); 12] = [
            ("worker_tls.server_name", |c| {
                c.worker_tls = Some(perf_loadgen::TlsSpec {
                    server_name: Some("not a name".into()),
                    ..perf_loadgen::TlsSpec::default()
                })
            }),
            ("max_event_streams", |c| c.max_event_streams = 0),
            ("max_event_streams", |c| c.max_event_streams = 1_000_000),
            ("socket_send_buffer", |c| {
                c.socket_send_buffer = Some(ByteSize(1024))
            }),
            ("test_limits.max_memory", |c| {
                c.test_limits.max_memory = ByteSize(1)
            }),
            ("listen", |c| c.listen = "0.0.0.0:8080".parse().unwrap()),
            ("body_limit", |c| c.body_limit = ByteSize(10)),
            ("sample_interval", |c| {
                c.sample_interval = HumanDuration(Duration::from_millis(5))
            }),
            ("sample_history", |c| {
                c.sample_history = HumanDuration(Duration::from_secs(86_400 * 30))
            }),
            ("api_token", |c| c.api_token = Some("short".into())),
            ("analyze_database_url", |c| {
                c.analyze_database_url = Some("mysql://x".into())
            }),
            ("database_url", |c| {
                c.database_url = Some("mysql://x".into())
            }),
        ];
        for (field, mutate) in cases {
            let mut c = ServerConfig::default();
            mutate(&mut c);
            match c.validate() {
                Err(Error::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn non_loopback_is_allowed_with_a_token_or_the_explicit_flag() {
        let mut c = ServerConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..ServerConfig::default()
        };
        c.api_token = Some("0123456789abcdef0123".into());
        c.validate().unwrap();
        c.api_token = None;
        c.insecure_no_auth = true;
        c.validate().unwrap();
    }
}
