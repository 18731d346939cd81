//! The control group this process runs in (Linux, feature `system`): its
//! memory and CPU limits, usage, OOM counts, CPU throttling and pressure
//! stall information, from cgroup v2 or v1 (hybrid hosts mount v1 for
//! memory and cpu and an empty v2 hierarchy beside it).
//!
//! Limits are the effective ones: the lowest of the cgroup's and its
//! ancestors' up to the hierarchy's root (a container's limit is usually set
//! on a parent of the process's own cgroup).
//!
//! ```no_run
//! if let Some(cgroup) = perf_core::cgroup::Cgroup::of_self() {
//!     let now = cgroup.sample();
//!     println!("limit {:?} bytes, quota {:?} cores", now.memory_limit_bytes, now.cpu_quota_cores);
//! }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Limits at or above this are "unlimited" (cgroup v1 writes
/// `PAGE_COUNTER_MAX` pages, about 2^63 bytes).
const UNLIMITED: u64 = 1 << 62;

/// Pressure stall information: the share of time some (or all) tasks were
/// stalled on a resource, over the last 10 and 60 seconds, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PressureStall {
    /// Some task stalled, last 10 s, percent.
    pub some_avg10: f64,
    /// Some task stalled, last 60 s, percent.
    pub some_avg60: f64,
    /// Every task stalled, last 10 s, percent (absent for CPU on older kernels).
    pub full_avg10: Option<f64>,
    /// Every task stalled, last 60 s, percent.
    pub full_avg60: Option<f64>,
}

/// One reading of a cgroup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CgroupSample {
    /// 2 (unified) or 1 (per-controller hierarchies).
    pub version: u8,
    /// The process's cgroup (the memory controller's, on v1).
    pub path: String,
    /// The effective memory limit; `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// Memory charged to the cgroup now (page cache included).
    pub memory_current_bytes: Option<u64>,
    /// Times the cgroup reached its limit and the OOM killer was invoked (v2 `oom`).
    pub memory_oom_events: Option<u64>,
    /// Processes the OOM killer killed in the cgroup.
    pub memory_oom_kills: Option<u64>,
    /// The effective CPU quota in cores (quota / period); `None` when unlimited.
    pub cpu_quota_cores: Option<f64>,
    /// Enforcement periods that have elapsed.
    pub cpu_periods: Option<u64>,
    /// Periods in which the cgroup used its whole quota and was throttled.
    pub cpu_throttled_periods: Option<u64>,
    /// Total time the cgroup was throttled, seconds.
    pub cpu_throttled_seconds: Option<f64>,
    /// Memory pressure stalls.
    pub memory_pressure: Option<PressureStall>,
    /// CPU pressure stalls.
    pub cpu_pressure: Option<PressureStall>,
    /// Whose pressure figures those are: `cgroup`, or `host` when the cgroup
    /// has none (v1: `/proc/pressure`).
    pub pressure_scope: Option<PressureScope>,
}

/// Whose pressure stall figures a [`CgroupSample`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PressureScope {
    /// The cgroup's own (`memory.pressure`, `cpu.pressure`).
    Cgroup,
    /// The whole host's (`/proc/pressure`).
    Host,
}

impl CgroupSample {
    /// These figures in the Prometheus text exposition format, each family
    /// only when the cgroup has the figure (an unlimited memory limit or CPU
    /// quota is no series): `cgroup_memory_limit_bytes`,
    /// `cgroup_memory_usage_bytes`, `cgroup_memory_oom_kills_total`,
    /// `cgroup_memory_oom_events_total`, `cgroup_cpu_quota_cores`,
    /// `cgroup_cpu_periods_total`, `cgroup_cpu_throttled_periods_total`,
    /// `cgroup_cpu_throttled_seconds_total`, and
    /// `cgroup_pressure_stalled_ratio{resource, tasks}` (the last 10 s, 0 to 1;
    /// the host's when the cgroup has none, as `pressure_scope` says).
    pub fn render_prometheus(&self) -> String {
        use crate::prometheus::{write_header, write_sample};
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: Option<f64>| {
            if let Some(value) = value {
                write_header(&mut out, name, kind, help);
                write_sample(&mut out, name, &[], value);
            }
        };
        let float = |v: Option<u64>| v.map(|v| v as f64);
        one(
            "cgroup_memory_limit_bytes",
            "gauge",
            "The effective memory limit of this process's cgroup.",
            float(self.memory_limit_bytes),
        );
        one(
            "cgroup_memory_usage_bytes",
            "gauge",
            "Memory charged to this process's cgroup (page cache included).",
            float(self.memory_current_bytes),
        );
        one(
            "cgroup_memory_oom_kills_total",
            "counter",
            "Processes the OOM killer killed in this process's cgroup.",
            float(self.memory_oom_kills),
        );
        one(
            "cgroup_memory_oom_events_total",
            "counter",
            "Times this process's cgroup reached its memory limit and the OOM killer ran.",
            float(self.memory_oom_events),
        );
        one(
            "cgroup_cpu_quota_cores",
            "gauge",
            "The effective CPU quota of this process's cgroup, in cores (quota over period).",
            self.cpu_quota_cores,
        );
        one(
            "cgroup_cpu_periods_total",
            "counter",
            "CPU quota enforcement periods elapsed.",
            float(self.cpu_periods),
        );
        one(
            "cgroup_cpu_throttled_periods_total",
            "counter",
            "Periods in which the cgroup used its whole CPU quota and was throttled.",
            float(self.cpu_throttled_periods),
        );
        one(
            "cgroup_cpu_throttled_seconds_total",
            "counter",
            "Time the cgroup was throttled.",
            self.cpu_throttled_seconds,
        );
        let stalls: Vec<(&str, &str, f64)> = [
            ("memory", &self.memory_pressure),
            ("cpu", &self.cpu_pressure),
        ]
        .into_iter()
        .filter_map(|(resource, stall)| stall.map(|s| (resource, s)))
        .flat_map(|(resource, s)| {
            [
                Some(("some", s.some_avg10)),
                s.full_avg10.map(|f| ("full", f)),
            ]
            .into_iter()
            .flatten()
            .map(move |(tasks, avg)| (resource, tasks, avg / 100.0))
        })
        .collect();
        if !stalls.is_empty() {
            write_header(
                &mut out,
                "cgroup_pressure_stalled_ratio",
                "gauge",
                "Share of the last 10 s in which some (or all) tasks stalled on the resource (pressure stall information), 0 to 1.",
            );
            for (resource, tasks, ratio) in stalls {
                write_sample(
                    &mut out,
                    "cgroup_pressure_stalled_ratio",
                    &[("resource", resource), ("tasks", tasks)],
                    ratio,
                );
            }
        }
        out
    }
}

/// Where a process's cgroup files are.
#[derive(Debug, Clone, PartialEq)]
pub struct Cgroup {
    version: u8,
    path: String,
    /// The memory controller's directories, the process's own first, then
    /// each ancestor up to the hierarchy's root.
    memory: Vec<PathBuf>,
    /// The same for the cpu controller.
    cpu: Vec<PathBuf>,
    /// Where the pressure files are, and whose they are.
    pressure: Option<(PathBuf, PressureScope)>,
}

impl Cgroup {
    /// This process's cgroup, from `/proc/self/cgroup` and the hierarchies
    /// mounted under `/sys/fs/cgroup`; `None` off Linux or without cgroups.
    pub fn of_self() -> Option<Self> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        Self::find(
            &membership,
            Path::new("/sys/fs/cgroup"),
            Path::new("/proc/pressure"),
        )
    }

    /// The cgroup `membership` (the text of `/proc/<pid>/cgroup`) names,
    /// with the hierarchies mounted under `root` and the host's pressure
    /// files in `host_pressure`.
    pub fn find(membership: &str, root: &Path, host_pressure: &Path) -> Option<Self> {
        let mut unified = None;
        let mut memory_v1 = None;
        let mut cpu_v1 = None;
        for line in membership.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                unified = Some(path.to_owned());
            }
            for controller in controllers.split(',') {
                match controller {
                    "memory" => memory_v1 = Some(path.to_owned()),
                    "cpu" => cpu_v1 = Some((controllers.to_owned(), path.to_owned())),
                    _ => {}
                }
            }
        }
        let host = host_pressure
            .join("memory")
            .exists()
            .then(|| (host_pressure.to_path_buf(), PressureScope::Host));
        // v2 with the controllers enabled: everything in one directory.
        if let Some(path) = &unified
            && root.join("cgroup.controllers").exists()
        {
            let dirs = ancestors(root, path);
            return Some(Self {
                version: 2,
                path: path.clone(),
                memory: dirs.clone(),
                cpu: dirs.clone(),
                pressure: dirs
                    .first()
                    .filter(|d| d.join("memory.pressure").exists())
                    .map(|d| (d.clone(), PressureScope::Cgroup))
                    .or(host),
            });
        }
        // v1 (or hybrid: an empty v2 hierarchy beside the v1 ones).
        let memory = memory_v1
            .as_deref()
            .map(|p| ancestors(&root.join("memory"), p));
        let cpu = cpu_v1.as_ref().map(|(controllers, p)| {
            let mount = [controllers.as_str(), "cpu", "cpu,cpuacct"]
                .iter()
                .map(|m| root.join(m))
                .find(|m| m.is_dir())
                .unwrap_or_else(|| root.join("cpu"));
            ancestors(&mount, p)
        });
        if memory.is_none() && cpu.is_none() {
            return None;
        }
        Some(Self {
            version: 1,
            path: memory_v1.or(cpu_v1.map(|(_, p)| p)).unwrap_or_default(),
            memory: memory.unwrap_or_default(),
            cpu: cpu.unwrap_or_default(),
            pressure: host,
        })
    }

    /// Reads the cgroup now. What a file does not say (a controller not
    /// mounted, a kernel without the counter) is `None`. Usage is the
    /// process's own cgroup's; OOM counts and throttling are those of the
    /// cgroup whose limit or quota is the effective one (where they happen).
    pub fn sample(&self) -> CgroupSample {
        let read_in = |dir: Option<&PathBuf>, name: &str| dir.and_then(|d| read(&d.join(name)));
        let (limit_file, current_file) = if self.version == 2 {
            ("memory.max", "memory.current")
        } else {
            ("memory.limit_in_bytes", "memory.usage_in_bytes")
        };
        let limit = self
            .memory
            .iter()
            .filter_map(|d| {
                let limit = read(&d.join(limit_file))?.trim().parse::<u64>().ok()?;
                (limit < UNLIMITED).then_some((limit, d))
            })
            .min_by_key(|(limit, _)| *limit);
        let memory_limit_bytes = limit.map(|(l, _)| l);
        let limiting = limit.map(|(_, d)| d).or(self.memory.first());
        let memory_current_bytes =
            read_in(self.memory.first(), current_file).and_then(|t| t.trim().parse().ok());
        let (memory_oom_events, memory_oom_kills) = if self.version == 2 {
            let events = read_in(limiting, "memory.events").unwrap_or_default();
            (field(&events, "oom"), field(&events, "oom_kill"))
        } else {
            let control = read_in(limiting, "memory.oom_control").unwrap_or_default();
            (None, field(&control, "oom_kill"))
        };
        let quota = self
            .cpu
            .iter()
            .filter_map(|d| quota_cores(d, self.version).map(|q| (q, d)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let cpu_quota_cores = quota.map(|(q, _)| q);
        let stat =
            read_in(quota.map(|(_, d)| d).or(self.cpu.first()), "cpu.stat").unwrap_or_default();
        let (cpu_periods, cpu_throttled_periods, cpu_throttled_seconds) = (
            field(&stat, "nr_periods"),
            field(&stat, "nr_throttled"),
            if self.version == 2 {
                field(&stat, "throttled_usec").map(|us| us as f64 / 1e6)
            } else {
                field(&stat, "throttled_time").map(|ns| ns as f64 / 1e9)
            },
        );
        let (memory_pressure, cpu_pressure, pressure_scope) = match &self.pressure {
            Some((dir, scope)) => {
                let (memory_name, cpu_name) = match scope {
                    PressureScope::Host => ("memory", "cpu"),
                    PressureScope::Cgroup => ("memory.pressure", "cpu.pressure"),
                };
                (
                    read(&dir.join(memory_name)).and_then(|t| pressure(&t)),
                    read(&dir.join(cpu_name)).and_then(|t| pressure(&t)),
                    Some(*scope),
                )
            }
            None => (None, None, None),
        };
        CgroupSample {
            version: self.version,
            path: self.path.clone(),
            memory_limit_bytes,
            memory_current_bytes,
            memory_oom_events,
            memory_oom_kills,
            cpu_quota_cores,
            cpu_periods,
            cpu_throttled_periods,
            cpu_throttled_seconds,
            memory_pressure,
            cpu_pressure,
            pressure_scope,
        }
    }
}

/// `mount/path` and each of its parents up to `mount`, those that exist.
/// Without a cgroup namespace a container sees its own cgroup's path (say
/// `/docker/<id>`) while the mount already is that cgroup: the path does not
/// exist under the mount, and the mount itself comes first.
fn ancestors(mount: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut current = PathBuf::from(path.trim_start_matches('/'));
    loop {
        let dir = mount.join(&current);
        if dir.is_dir() {
            dirs.push(dir);
        }
        if !current.pop() {
            break;
        }
    }
    dirs.dedup();
    dirs
}

/// A small cgroup file's text (they are a few hundred bytes at most).
fn read(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The value of `name` in a flat-keyed file (`name value` per line).
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// The quota of one directory in cores, `None` when unlimited (`max`, -1)
/// or unreadable.
fn quota_cores(dir: &Path, version: u8) -> Option<f64> {
    let (quota, period) = if version == 2 {
        let text = read(&dir.join("cpu.max"))?;
        let (quota, period) = text.trim().split_once(' ')?;
        (quota.parse::<u64>().ok()?, period.parse::<u64>().ok()?)
    } else {
        let quota: u64 = read(&dir.join("cpu.cfs_quota_us"))?.trim().parse().ok()?;
        let period: u64 = read(&dir.join("cpu.cfs_period_us"))?.trim().parse().ok()?;
        (quota, period)
    };
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and the `full` line.
fn pressure(text: &str) -> Option<PressureStall> {
    let line = |kind: &str| {
        let rest = text.lines().find_map(|l| l.strip_prefix(kind))?;
        let value = |key: &str| {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| (0.0..=100.0).contains(v))
        };
        Some((value("avg10")?, value("avg60")?))
    };
    let (some_avg10, some_avg60) = line("some ")?;
    let full = line("full ");
    Some(PressureStall {
        some_avg10,
        some_avg60,
        full_avg10: full.map(|f| f.0),
        full_avg60: full.map(|f| f.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_limits_are_the_lowest_on_the_path_and_unlimited_is_none() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("cgroup.controllers"), "cpu memory\n");
        write(&r.join("pod/memory.max"), "536870912\n");
        write(&r.join("pod/app/memory.max"), "max\n");
        write(&r.join("pod/app/memory.current"), "104857600\n");
        write(
            &r.join("pod/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n",
        );
        write(&r.join("pod/cpu.max"), "150000 100000\n");
        write(&r.join("pod/app/cpu.max"), "max 100000\n");
        write(
            &r.join("pod/cpu.stat"),
            "usage_usec 5\nnr_periods 40\nnr_throttled 7\nthrottled_usec 2500000\n",
        );
        write(
            &r.join("pod/app/memory.pressure"),
            "some avg10=1.50 avg60=0.75 avg300=0.10 total=1\nfull avg10=0.50 avg60=0.25 avg300=0.00 total=1\n",
        );
        let cgroup = Cgroup::find("0::/pod/app\n", r, &r.join("no-host-pressure")).unwrap();
        let s = cgroup.sample();
        assert_eq!(s.version, 2);
        assert_eq!(s.memory_limit_bytes, Some(512 << 20));
        assert_eq!(s.memory_current_bytes, Some(100 << 20));
        assert_eq!(
            (s.memory_oom_events, s.memory_oom_kills),
            (Some(2), Some(1))
        );
        assert_eq!(s.cpu_quota_cores, Some(1.5));
        assert_eq!(
            (s.cpu_periods, s.cpu_throttled_periods),
            (Some(40), Some(7))
        );
        assert_eq!(s.cpu_throttled_seconds, Some(2.5));
        let p = s.memory_pressure.unwrap();
        assert_eq!((p.some_avg10, p.full_avg60), (1.5, Some(0.25)));
        assert_eq!(s.cpu_pressure, None);
        assert_eq!(s.pressure_scope, Some(PressureScope::Cgroup));
    }

    #[test]
    fn v1_hybrid_reads_the_memory_and_cpu_hierarchies_and_host_pressure() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // The v2 mount is there but without controllers (hybrid).
        write(&r.join("unified/cgroup.procs"), "");
        write(
            &r.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(&r.join("memory/job/memory.limit_in_bytes"), "268435456\n");
        write(&r.join("memory/job/memory.usage_in_bytes"), "1000\n");
        write(
            &r.join("memory/job/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        );
        write(&r.join("cpu,cpuacct/job/cpu.cfs_quota_us"), "50000\n");
        write(&r.join("cpu,cpuacct/job/cpu.cfs_period_us"), "100000\n");
        write(&r.join("cpu,cpuacct/cpu.cfs_quota_us"), "-1\n");
        write(&r.join("cpu,cpuacct/cpu.cfs_period_us"), "100000\n");
        write(
            &r.join("cpu,cpuacct/job/cpu.stat"),
            "nr_periods 10\nnr_throttled 3\nthrottled_time 2000000000\n",
        );
        write(
            &r.join("pressure/memory"),
            "some avg10=0.00 avg60=0.10 avg300=0.00 total=9\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=9\n",
        );
        write(
            &r.join("pressure/cpu"),
            "some avg10=2.00 avg60=1.00 avg300=0.00 total=9\n",
        );
        let membership = "9:name=systemd:/\n4:memory:/job\n2:cpu,cpuacct:/job\n0::/\n";
        let cgroup = Cgroup::find(membership, r, &r.join("pressure")).unwrap();
        let s = cgroup.sample();
        assert_eq!(s.version, 1);
        assert_eq!(s.path, "/job");
        assert_eq!(s.memory_limit_bytes, Some(256 << 20));
        assert_eq!(s.memory_current_bytes, Some(1000));
        assert_eq!((s.memory_oom_events, s.memory_oom_kills), (None, Some(4)));
        assert_eq!(s.cpu_quota_cores, Some(0.5));
        assert_eq!(s.cpu_throttled_seconds, Some(2.0));
        assert_eq!(s.cpu_pressure.unwrap().full_avg10, None);
        assert_eq!(s.pressure_scope, Some(PressureScope::Host));
    }

    #[test]
    fn without_a_namespace_the_mount_is_the_cgroup_and_stats_follow_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        // Docker on v1 without a cgroup namespace: /proc/self/cgroup says
        // /docker/abc, the mount already is that cgroup.
        write(&r.join("memory/memory.limit_in_bytes"), "134217728\n");
        write(&r.join("memory/memory.usage_in_bytes"), "5000\n");
        write(&r.join("memory/memory.oom_control"), "oom_kill 2\n");
        write(&r.join("cpu/cpu.cfs_quota_us"), "200000\n");
        write(&r.join("cpu/cpu.cfs_period_us"), "100000\n");
        write(
            &r.join("cpu/cpu.stat"),
            "nr_periods 9\nnr_throttled 4\nthrottled_time 1000000000\n",
        );
        // ... and a child of it whose own quota is unlimited.
        write(&r.join("cpu/docker/abc/cpu.cfs_quota_us"), "-1\n");
        write(&r.join("cpu/docker/abc/cpu.cfs_period_us"), "100000\n");
        write(
            &r.join("cpu/docker/abc/cpu.stat"),
            "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
        );
        let membership = "5:memory:/docker/abc\n3:cpu:/docker/abc\n";
        let s = Cgroup::find(membership, r, &r.join("none"))
            .unwrap()
            .sample();
        assert_eq!(s.memory_limit_bytes, Some(128 << 20));
        assert_eq!(s.memory_current_bytes, Some(5000));
        assert_eq!(s.memory_oom_kills, Some(2));
        assert_eq!(s.cpu_quota_cores, Some(2.0));
        // Throttling is counted where the quota is.
        assert_eq!(s.cpu_throttled_periods, Some(4));
        assert_eq!(s.cpu_throttled_seconds, Some(1.0));
    }

    #[test]
    fn odd_values_are_no_figures() {
        assert_eq!(
            pressure("some avg10=inf avg60=1.00 avg300=0 total=1\n"),
            None
        );
        assert_eq!(
            pressure("some avg10=NaN avg60=1.00 avg300=0 total=1\n"),
            None
        );
        assert_eq!(pressure("garbage"), None);
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("cpu.max"), "inf 100000\n");
        assert_eq!(quota_cores(root.path(), 2), None);
        write(&root.path().join("cpu.max"), "50000 0\n");
        assert_eq!(quota_cores(root.path(), 2), None);
    }

    #[test]
    fn no_limits_anywhere_is_none_and_garbage_is_ignored() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(&r.join("cgroup.controllers"), "cpu memory\n");
        write(&r.join("memory.max"), "max\n");
        write(&r.join("cpu.max"), "max 100000\n");
        write(&r.join("memory.current"), "not a number\n");
        let s = Cgroup::find("0::/\n", r, &r.join("none")).unwrap().sample();
        assert_eq!(s.memory_limit_bytes, None);
        assert_eq!(s.cpu_quota_cores, None);
        assert_eq!(s.memory_current_bytes, None);
        assert!(Cgroup::find("", r, r).is_none());
    }
}
