//! What a service that runs load tests on others' behalf must check: the
//! size of a test ([`Limits`]) and where it may send traffic ([`TargetPolicy`]).

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use perf_core::{ByteSize, HumanDuration, LatencyHistogram};
use serde::{Deserialize, Serialize};

use crate::error::invalid_option;
use crate::http::Endpoint;
use crate::scenario::{LoadPlan, Scenario};
use crate::{Error, MAX_RATE, MAX_USERS, Result};

/// The largest test a service accepts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Limits {
    /// Most virtual users (default 10000).
    pub max_users: u32,
    /// Highest arrival rate, req/s (default 50000).
    pub max_rate: f64,
    /// Longest run (default 4h: the endurance preset's length).
    pub max_duration: HumanDuration,
    /// Most memory one test may be estimated to need before it starts
    /// (histograms per request name, users or requests in flight, data rows;
    /// default 256MiB).
    pub max_memory: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_users: 10_000,
            max_rate: 50_000.0,
            max_duration: HumanDuration(Duration::from_secs(4 * 3600)),
            max_memory: ByteSize(256 << 20),
        }
    }
}

/// Largest CSV a run reads, from a file or inline (32 MiB).
pub const MAX_FEED_BYTES: u64 = 32 << 20;

/// Memory a run holds per virtual user or request in flight: the task, its
/// connection and a read buffer that grows up to 16 KiB for large responses.
const PER_USER_BYTES: u64 = 8 << 10;

/// What a scenario is estimated to hold in memory while it runs, by cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Latency histograms: per request name, per thread and the report's copy.
    pub histograms: u64,
    /// Virtual users (closed model) or requests in flight (open model):
    /// their connections, and for checks that read bodies and for journeys
    /// the kept body (up to 64 KiB) and the users' variables and cookies.
    pub connections: u64,
    /// Rows of inline CSV data.
    pub data: u64,
    /// Requests prepared once per target (head and body).
    pub prepared: u64,
}

impl MemoryEstimate {
    /// The sum.
    pub fn total(&self) -> u64 {
        self.histograms + self.connections + self.data + self.prepared
    }
}

/// Where a run may read its `data.file` from.
///
/// ```
/// use perf_loadgen::FeedAccess;
/// // A service that takes scenarios from requests: inline CSV only.
/// let api = FeedAccess::InlineOnly;
/// assert!(api.resolve("/etc/passwd").is_err());
/// // Or file names inside a directory its operator filled.
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("users.csv"), "id\n1\n")?;
/// let feeds = FeedAccess::Within(dir.path().to_owned());
/// assert!(feeds.resolve("users.csv").is_ok());
/// assert!(feeds.resolve("../users.csv").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FeedAccess {
    /// Any file the process can read (the command line: its user names it).
    #[default]
    Any,
    /// Only a plain file name inside this directory, resolved without
    /// escaping it (no separators, no `..`, no symbolic link out of it).
    Within(std::path::PathBuf),
    /// No files at all: data comes inline with the scenario (`data.csv`).
    InlineOnly,
}

impl FeedAccess {
    /// The path `file` names under this access, or an error naming
    /// `data.file` that says what is allowed. Nothing outside the allowed
    /// place is touched, so the error tells nothing about other paths.
    pub fn resolve(&self, file: &str) -> Result<std::path::PathBuf> {
        let refuse = |value: &str, allowed: String| Error::Invalid {
            scenario: String::new(),
            key: "data.file".to_owned(),
            value: format!("{value:?}"),
            allowed,
        };
        match self {
            Self::Any => Ok(std::path::PathBuf::from(file)),
            Self::InlineOnly => Err(refuse(
                file,
                "no file paths here: give the rows inline as data.csv (the CSV text), \
                 or configure a feeds directory on the server and name a file in it"
                    .to_owned(),
            )),
            Self::Within(dir) => {
                let plain = !file.is_empty()
                    && file.len() <= 255
                    && !file.starts_with('.')
                    && file
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !plain {
                    return Err(refuse(
                        file,
                        "a file name in the server's feeds directory (letters, digits, . _ -; \
                         no path), or the rows inline as data.csv"
                            .to_owned(),
                    ));
                }
                let missing = || {
                    refuse(
                        file,
                        "the name of a file in the server's feeds directory".to_owned(),
                    )
                };
                let root = dir.canonicalize().map_err(|_| missing())?;
                let path = root.join(file).canonicalize().map_err(|_| missing())?;
                if !path.starts_with(&root) {
                    return Err(refuse(
                        file,
                        "a file inside the feeds directory (a link out of it is refused)"
                            .to_owned(),
                    ));
                }
                Ok(path)
            }
        }
    }
}

impl Scenario {
    /// Checks the scenario against `limits`; over a limit is an error naming
    /// the key and the limit (never a silent clamp).
    pub fn check_limits(&self, name: &str, limits: &Limits) -> Result<()> {
        let plan = self.plan(name)?;
        let over = |key: &str, value: String, allowed: String| Error::Invalid {
            scenario: name.to_owned(),
            key: key.to_owned(),
            value,
            allowed,
        };
        let estimate = self.estimated_memory(name)?;
        if estimate.total() > limits.max_memory.bytes() {
            let (key, part) = [
                ("requests", estimate.histograms + estimate.prepared),
                (
                    if matches!(plan, LoadPlan::Open { .. }) {
                        "max_in_flight"
                    } else {
                        "users"
                    },
                    estimate.connections,
                ),
                ("data", estimate.data),
            ]
            .into_iter()
            .max_by_key(|&(_, bytes)| bytes)
            .unwrap_or(("requests", 0));
            return Err(over(
                key,
                format!(
                    "an estimated {} in all ({} of it for {key})",
                    ByteSize(estimate.total()),
                    ByteSize(part)
                ),
                format!(
                    "at most {} of estimated memory per test on this server",
                    limits.max_memory
                ),
            ));
        }
        if plan.total() > limits.max_duration.0 {
            return Err(over(
                "duration",
                HumanDuration(plan.total()).to_string(),
                format!("at most {} on this server", limits.max_duration),
            ));
        }
        match &plan {
            LoadPlan::Closed { steps, .. } => {
                let peak = steps.iter().map(|&(_, u)| u).max().unwrap_or(0);
                if peak > limits.max_users {
                    return Err(over(
                        "users",
                        peak.to_string(),
                        format!("at most {} users on this server", limits.max_users),
                    ));
                }
            }
            LoadPlan::Open { start, steps, .. } => {
                let peak = steps.iter().map(|&(_, r)| r).fold(*start, f64::max);
                if peak > limits.max_rate {
                    return Err(over(
                        "rate",
                        format!("{peak}/s"),
                        format!("at most {}/s on this server", limits.max_rate),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// What this scenario is estimated to hold in memory while it runs.
    ///
    /// ```
    /// let file = perf_loadgen::ScenarioFile::from_yaml(
    ///     "load_tests:\n  s: {target: http://127.0.0.1:8080, duration: 10s, users: 100}",
    /// )?;
    /// let estimate = file.get("s")?.estimated_memory("s")?;
    /// assert!(estimate.total() < 64 << 20, "{estimate:?}");
    /// # Ok::<(), perf_loadgen::Error>(())
    /// ```
    pub fn estimated_memory(&self, name: &str) -> Result<MemoryEstimate> {
        let plan = self.plan(name)?;
        let names = self.request_mix().len();
        let open = matches!(plan, LoadPlan::Open { .. });
        let histograms = crate::stats::Recorder::histograms(names, open) as u64
            * LatencyHistogram::memory_bytes();
        // A journey's user keeps its variables and cookies; a request whose
        // checks or captures read the body keeps up to MAX_KEPT_BODY of it
        // while it is read.
        let mix = self.request_mix();
        let reads_body = mix.iter().any(|r| {
            r.checks
                .iter()
                .any(|c| c.body_contains.is_some() || c.body_regex.is_some() || c.json.is_some())
        }) || self
            .flows
            .iter()
            .flat_map(|f| &f.steps)
            .flat_map(|s| &s.captures)
            .any(|c| c.json.is_some() || c.regex.is_some());
        let captures = self
            .flows
            .iter()
            .flat_map(|f| &f.steps)
            .map(|s| s.captures.len())
            .sum::<usize>() as u64;
        let per_user = PER_USER_BYTES
            + if reads_body {
                crate::scenario::MAX_KEPT_BODY as u64
            } else {
                0
            }
            + if self.flows.is_empty() && !reads_body {
                0
            } else {
                // Kept headers, the cookie jar and the variables at their bounds.
                (crate::journey::MAX_KEPT_HEADER_BYTES + crate::journey::MAX_COOKIE_BYTES) as u64
                    + captures * crate::scenario::MAX_VAR_BYTES as u64
            };
        let connections = match &plan {
            LoadPlan::Closed { steps, .. } => {
                u64::from(steps.iter().map(|&(_, u)| u).max().unwrap_or(0))
            }
            LoadPlan::Open { max_in_flight, .. } => u64::from(*max_in_flight),
        } * per_user
            // HTTP/2 connections: buffers and the task driving each.
            + u64::from(self.connections.unwrap_or(1))
                * self.target.as_ref().map_or(1, |t| t.urls().len().max(1)) as u64
                * if self.protocol.unwrap_or_default() == crate::Protocol::H1 {
                    0
                } else {
                    64 << 10
                };
        // Every field is a String (24 bytes and its text), every row a Vec.
        let data = self
            .data
            .as_ref()
            .and_then(|d| d.csv.as_ref())
            .map_or(0, |csv| {
                let fields = csv.bytes().filter(|b| matches!(b, b',' | b'\n')).count() as u64;
                csv.len() as u64 + 48 * (fields + 1)
            });
        let targets = self.target.as_ref().map_or(1, |t| t.urls().len().max(1)) as u64;
        let prepared = self
            .request_mix()
            .iter()
            .map(|r| {
                let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
                (256 + r.path.len() + headers + r.body.as_ref().map_or(0, String::len)) as u64
            })
            .sum::<u64>()
            * targets;
        Ok(MemoryEstimate {
            histograms,
            connections,
            data,
            prepared,
        })
    }
}

/// An IP network such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network such as 10.0.0.0/8 or ::1/128"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Where load may be sent: addresses in an allowlist, never link-local or
/// cloud-metadata addresses. Host names are resolved and every address checked.
///
/// ```
/// # async fn demo() {
/// use perf_loadgen::TargetPolicy;
/// let policy = TargetPolicy::loopback_only();
/// assert!(policy.check("http://127.0.0.1:8080").await.is_ok());
/// assert!(policy.check("http://169.254.169.254/latest/meta-data").await.is_err());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPolicy {
    allow: Vec<IpNet>,
}

const NEVER: [(&str, &str); 4] = [
    (
        "169.254.0.0/16",
        "link-local (cloud metadata lives at 169.254.169.254)",
    ),
    ("fe80::/10", "IPv6 link-local"),
    ("fd00:ec2::254/128", "the AWS IPv6 metadata endpoint"),
    ("0.0.0.0/8", "unspecified"),
];

impl TargetPolicy {
    /// Loopback only (127.0.0.0/8 and ::1): the default.
    pub fn loopback_only() -> Self {
        Self::new(&["127.0.0.0/8", "::1/128"]).unwrap_or(Self { allow: Vec::new() })
    }

    /// An allowlist of networks, e.g. `["127.0.0.0/8", "10.20.0.0/16"]`.
    pub fn new(allow: &[&str]) -> std::result::Result<Self, String> {
        Ok(Self {
            allow: allow
                .iter()
                .map(|a| a.parse())
                .collect::<std::result::Result<_, _>>()?,
        })
    }

    /// The allowlist.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Checks one address.
    pub fn check_ip(&self, ip: IpAddr) -> std::result::Result<(), String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_unspecified() {
            return Err(format!("{ip} is unspecified: never allowed"));
        }
        for (net, what) in NEVER {
            if net.parse::<IpNet>().is_ok_and(|n| n.contains(ip)) {
                return Err(format!("{ip} is {what}: never allowed"));
            }
        }
        if self.allow.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        let private = match ip {
            IpAddr::V4(v4) => {
                v4.is_private()
                    || "100.64.0.0/10"
                        .parse::<IpNet>()
                        .is_ok_and(|n| n.contains(ip))
            }
            IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
        };
        let kind = if private {
            "a private address"
        } else if ip.is_loopback() {
            "loopback"
        } else {
            "a public address"
        };
        let allowed = self
            .allow
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        Err(format!(
            "{ip} is {kind} not in the allowlist (allowed: {allowed})"
        ))
    }

    /// Resolves the URL's host and checks every address.
    pub async fn check(&self, url: &str) -> Result<()> {
        let refused = |reason: String| Error::TargetRefused {
            url: url.to_owned(),
            reason,
        };
        let endpoint = Endpoint::parse(url).map_err(refused)?;
        let addrs = endpoint
            .resolve()
            .await
            .map_err(|e| refused(format!("cannot resolve: {e}")))?;
        for addr in addrs {
            self.check_ip(addr.ip()).map_err(refused)?;
        }
        Ok(())
    }

    /// Checks every target of a scenario.
    pub async fn check_scenario(&self, scenario: &Scenario) -> Result<()> {
        if let Some(targets) = &scenario.target {
            for url in targets.urls() {
                self.check(url).await?;
            }
        }
        Ok(())
    }
}

impl Limits {
    /// Checks every field; the error names the bad one and the range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_USERS).contains(&self.max_users) {
            return Err(invalid_option(
                "max_users",
                self.max_users,
                format!("1 to {MAX_USERS}"),
            ));
        }
        if !(self.max_rate > 0.0 && self.max_rate <= MAX_RATE) {
            return Err(invalid_option(
                "max_rate",
                self.max_rate,
                format!("above 0 to {MAX_RATE} requests/s"),
            ));
        }
        if self.max_duration.as_duration() < Duration::from_secs(1) {
            return Err(invalid_option(
                "max_duration",
                self.max_duration,
                "1s or more (e.g. 1h)",
            ));
        }
        if self.max_memory.bytes() < 1 << 20 {
            return Err(invalid_option(
                "max_memory",
                self.max_memory,
                "1MiB or more (e.g. 256MiB)",
            ));
        }
        Ok(())
    }
}

perf_core::config_builder! {
    /// Builds [`Limits`].
    ///
    /// ```
    /// let limits = perf_loadgen::Limits::builder().max_users(500).max_rate(2_000.0).build()?;
    /// assert_eq!(limits.max_users, 500);
    /// let err = perf_loadgen::Limits::builder().max_users(0).build().unwrap_err();
    /// assert!(err.to_string().contains("max_users"));
    /// # Ok::<(), perf_loadgen::Error>(())
    /// ```
    Limits => LimitsBuilder, Error {
        max_users: u32,
        max_rate: f64,
        max_duration: HumanDuration => into,
        max_memory: ByteSize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Preset, preset};

    #[test]
    fn limits_out_of_range_are_refused_by_name() {
        for (built, key) in [
            (Limits::builder().max_users(0).build(), "max_users"),
            (Limits::builder().max_rate(f64::NAN).build(), "max_rate"),
            (
                Limits::builder().max_duration(Duration::ZERO).build(),
                "max_duration",
            ),
            (
                Limits::builder().max_memory(ByteSize(1024)).build(),
                "max_memory",
            ),
        ] {
            let err = built.unwrap_err().to_string();
            assert!(err.starts_with(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn networks_contain_what_they_should() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.3.4".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("ten/8".parse::<IpNet>().is_err());
    }

    #[test]
    fn metadata_and_link_local_are_refused_even_when_allowlisted() {
        let p = TargetPolicy::new(&["0.0.0.0/0", "::/0"]).unwrap();
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "0.0.0.0",
        ] {
            let err = p.check_ip(ip.parse().unwrap()).unwrap_err();
            assert!(err.contains("never allowed"), "{ip}: {err}");
        }
        assert!(p.check_ip("10.1.2.3".parse().unwrap()).is_ok());
    }

    #[test]
    fn private_ranges_need_the_allowlist() {
        let p = TargetPolicy::loopback_only();
        assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_ok());
        assert!(p.check_ip("::1".parse().unwrap()).is_ok());
        let err = p.check_ip("10.0.0.5".parse().unwrap()).unwrap_err();
        assert!(
            err.contains("private") && err.contains("127.0.0.0/8"),
            "{err}"
        );
        assert!(
            p.check_ip("93.184.216.34".parse().unwrap())
                .unwrap_err()
                .contains("public")
        );
        let with_private = TargetPolicy::new(&["127.0.0.0/8", "10.0.0.0/8"]).unwrap();
        assert!(with_private.check_ip("10.0.0.5".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn names_are_resolved_before_checking() {
        let p = TargetPolicy::loopback_only();
        p.check("http://localhost:9").await.unwrap();
        assert!(matches!(
            p.check("http://169.254.169.254").await,
            Err(Error::TargetRefused { .. })
        ));
    }

    #[test]
    fn limits_refuse_rather_than_clamp() {
        let limits = Limits {
            max_users: 500,
            ..Limits::default()
        };
        let err = preset(Preset::Baseline)
            .check_limits("baseline", &limits)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("users") && err.contains("1000") && err.contains("at most 500"),
            "{err}"
        );
        let hour = Limits {
            max_duration: HumanDuration(Duration::from_secs(3600)),
            ..Limits::default()
        };
        let err = preset(Preset::Endurance)
            .check_limits("endurance", &hour)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("duration") && err.contains("at most 1h"),
            "{err}"
        );
        // Every preset fits the default limits.
        for p in Preset::ALL {
            preset(p)
                .check_limits(p.name(), &Limits::default())
                .unwrap();
        }
        preset(Preset::Volume)
            .check_limits("volume", &Limits::default())
            .unwrap();
    }
}
