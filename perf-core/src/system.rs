//! Host and process sampling from `/proc` (Linux).
//!
//! A [`SystemSampler`] keeps the previous counters, so every [`SystemSample`] it
//! returns holds rates over the interval since the previous call: CPU
//! utilization (total and per core), process CPU, network bytes and packets per
//! second. The first reading is taken when the sampler is built, so even the
//! first sample is a real interval, never a first-read zero.
//!
//! ```no_run
//! use std::time::Duration;
//! use perf_core::system::SystemSampler;
//! # fn main() -> Result<(), perf_core::Error> {
//! let mut sampler = SystemSampler::new()?;
//! std::thread::sleep(Duration::from_secs(1));
//! let sample = sampler.sample()?;
//! println!("cpu {:.1} %, rss {} bytes", sample.cpu.utilization_percent, sample.memory.process_rss_bytes);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::Instant;

use procfs::net::{DeviceStatus, InterfaceDeviceStatus, TcpNetEntries, TcpState};
use procfs::process::{Process, Stat, Status};
use procfs::{CpuTime, FromBufRead, FromBufReadSI, FromRead, KernelStats, LoadAverage, Meminfo};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, Timestamped, unix_millis};

/// Host and process figures over one sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SystemSample {
    /// When the sample was taken, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the interval the rates cover, in milliseconds.
    pub interval_ms: u64,
    /// Processor figures.
    pub cpu: CpuSample,
    /// Memory figures.
    pub memory: MemorySample,
    /// Network figures.
    pub network: NetworkSample,
    /// The process's control group: limits, usage, OOM counts, throttling,
    /// pressure (absent without cgroups).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<crate::cgroup::CgroupSample>,
}

impl Timestamped for SystemSample {
    fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
}

/// Processor utilization over the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CpuSample {
    /// Number of logical cores.
    pub cores: usize,
    /// Busy share of all cores, 0 to 100.
    pub utilization_percent: f64,
    /// Busy share of each core, 0 to 100, in core order.
    pub per_core_utilization_percent: Vec<f64>,
    /// Share of time the cores waited for I/O, 0 to 100.
    pub iowait_percent: f64,
    /// Share of time taken by the hypervisor (steal), 0 to 100.
    pub steal_percent: f64,
    /// One-minute load average.
    pub load_average_1m: f64,
    /// Five-minute load average.
    pub load_average_5m: f64,
    /// Fifteen-minute load average.
    pub load_average_15m: f64,
    /// CPU used by this process, where 100 is one core fully busy (as `top` shows it).
    pub process_cpu_percent: f64,
    /// Threads of this process.
    pub process_threads: u64,
}

/// Host and process memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemorySample {
    /// Physical memory of the host.
    pub host_total_bytes: u64,
    /// Memory available for new work without swapping (MemAvailable).
    pub host_available_bytes: u64,
    /// Share of host memory not available, 0 to 100.
    pub host_used_percent: f64,
    /// Swap space of the host.
    pub swap_total_bytes: u64,
    /// Unused swap space.
    pub swap_free_bytes: u64,
    /// Resident set size of this process.
    pub process_rss_bytes: u64,
    /// Highest resident set size of this process so far.
    pub process_peak_rss_bytes: u64,
    /// Virtual memory size of this process.
    pub process_virtual_bytes: u64,
    /// File descriptors this process holds open.
    pub process_open_fds: u64,
}

/// Network interfaces and TCP connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkSample {
    /// One entry per interface, sorted by name.
    pub interfaces: Vec<InterfaceSample>,
    /// TCP connections (IPv4 and IPv6) of this network namespace, by state.
    pub tcp: TcpConnections,
}

impl NetworkSample {
    /// Bytes received per second, summed over every interface except loopback.
    pub fn external_rx_bytes_per_sec(&self) -> f64 {
        self.external().map(|i| i.rx_bytes_per_sec).sum()
    }

    /// Bytes sent per second, summed over every interface except loopback.
    pub fn external_tx_bytes_per_sec(&self) -> f64 {
        self.external().map(|i| i.tx_bytes_per_sec).sum()
    }

    fn external(&self) -> impl Iterator<Item = &InterfaceSample> {
        self.interfaces.iter().filter(|i| i.name != "lo")
    }
}

/// Traffic of one network interface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterfaceSample {
    /// Interface name, e.g. `eth0`, `lo`.
    pub name: String,
    /// Bytes received per second over the interval.
    pub rx_bytes_per_sec: f64,
    /// Bytes sent per second over the interval.
    pub tx_bytes_per_sec: f64,
    /// Packets received per second over the interval.
    pub rx_packets_per_sec: f64,
    /// Packets sent per second over the interval.
    pub tx_packets_per_sec: f64,
    /// Receive errors per second over the interval.
    pub rx_errors_per_sec: f64,
    /// Send errors per second over the interval.
    pub tx_errors_per_sec: f64,
    /// Received packets dropped per second over the interval.
    pub rx_drops_per_sec: f64,
    /// Outgoing packets dropped per second over the interval.
    pub tx_drops_per_sec: f64,
    /// Receive errors since the interface came up.
    pub rx_errors_total: u64,
    /// Send errors since the interface came up.
    pub tx_errors_total: u64,
    /// Received packets dropped since the interface came up.
    pub rx_drops_total: u64,
    /// Outgoing packets dropped since the interface came up.
    pub tx_drops_total: u64,
}

/// TCP connections by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TcpConnections {
    /// All sockets counted below.
    pub total: u64,
    /// ESTABLISHED.
    pub established: u64,
    /// SYN_SENT.
    pub syn_sent: u64,
    /// SYN_RECV (including NEW_SYN_RECV).
    pub syn_recv: u64,
    /// FIN_WAIT1.
    pub fin_wait1: u64,
    /// FIN_WAIT2.
    pub fin_wait2: u64,
    /// TIME_WAIT.
    pub time_wait: u64,
    /// CLOSE.
    pub close: u64,
    /// CLOSE_WAIT.
    pub close_wait: u64,
    /// LAST_ACK.
    pub last_ack: u64,
    /// LISTEN.
    pub listen: u64,
    /// CLOSING.
    pub closing: u64,
}

/// Counters read at one instant; rates come from the difference of two.
#[derive(Debug, Clone)]
struct Counters {
    at: Instant,
    total: CpuTicks,
    per_core: Vec<CpuTicks>,
    process_ticks: u64,
    interfaces: HashMap<String, DeviceStatus>,
    /// `/proc/self/stat` of this reading (threads, RSS, virtual size too).
    stat: Stat,
}

#[derive(Debug, Clone, Copy, Default)]
struct CpuTicks {
    busy: u64,
    all: u64,
    iowait: u64,
    steal: u64,
}

impl From<&CpuTime> for CpuTicks {
    fn from(t: &CpuTime) -> Self {
        let iowait = t.iowait.unwrap_or(0);
        let steal = t.steal.unwrap_or(0);
        let idle = t.idle + iowait;
        let all =
            t.user + t.nice + t.system + idle + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0) + steal;
        Self {
            busy: all.saturating_sub(idle).saturating_sub(steal),
            all,
            iowait,
            steal,
        }
    }
}

/// Load averages are two-decimal figures read as f32: keep them two-decimal.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 100.0).clamp(0.0, 100.0)
    }
}

fn system_error(what: &'static str) -> impl FnOnce(procfs::ProcError) -> Error {
    move |e| Error::System {
        what,
        message: e.to_string(),
    }
}

/// The `/proc` files a sampler reads, opened once and read again from the
/// start at every sample: a process at its open-file limit (a flood of
/// connections) can still sample itself, where reopening them failed with
/// EMFILE.
#[derive(Debug)]
struct ProcFiles {
    stat: File,
    meminfo: File,
    loadavg: File,
    self_stat: File,
    self_status: File,
    net_dev: File,
    tcp: File,
    /// Absent when IPv6 is disabled.
    tcp6: Option<File>,
    buf: Vec<u8>,
}

impl ProcFiles {
    fn open() -> Result<Self> {
        let open = |path: &'static str| {
            File::open(path).map_err(|e| Error::System {
                what: path,
                message: e.to_string(),
            })
        };
        Ok(Self {
            stat: open("/proc/stat")?,
            meminfo: open("/proc/meminfo")?,
            loadavg: open("/proc/loadavg")?,
            self_stat: open("/proc/self/stat")?,
            self_status: open("/proc/self/status")?,
            net_dev: open("/proc/net/dev")?,
            tcp: open("/proc/net/tcp")?,
            tcp6: File::open("/proc/net/tcp6").ok(),
            buf: Vec::with_capacity(16 * 1024),
        })
    }
}

/// Reads `file` again from its start into `buf`.
fn reread<'b>(file: &mut File, buf: &'b mut Vec<u8>, what: &'static str) -> Result<&'b [u8]> {
    buf.clear();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(buf))
        .map_err(|e| Error::System {
            what,
            message: e.to_string(),
        })?;
    Ok(buf.as_slice())
}

/// Parses what `reread` read.
fn parsed<T>(what: &'static str, result: procfs::ProcResult<T>) -> Result<T> {
    result.map_err(system_error(what))
}

/// Reads `/proc` and turns two consecutive readings into a [`SystemSample`].
#[derive(Debug)]
pub struct SystemSampler {
    previous: Counters,
    process: Process,
    files: ProcFiles,
    /// Open files at the last count (kept when the count itself cannot be taken).
    open_fds: u64,
    ticks_per_second: u64,
    page_size: u64,
    cgroup: Option<crate::cgroup::Cgroup>,
}

impl SystemSampler {
    /// Takes the first reading; the first [`SystemSampler::sample`] measures from here.
    pub fn new() -> Result<Self> {
        let process = Process::myself().map_err(system_error("/proc/self"))?;
        let mut files = ProcFiles::open()?;
        let previous = read_counters(&mut files)?;
        Ok(Self {
            previous,
            process,
            files,
            open_fds: 0,
            ticks_per_second: procfs::ticks_per_second().max(1),
            page_size: procfs::page_size(),
            cgroup: crate::cgroup::Cgroup::of_self(),
        })
    }

    /// Figures over the interval since the previous call (or since [`SystemSampler::new`]).
    /// Call it at intervals of 100 ms or more: kernel counters tick at 100 Hz.
    pub fn sample(&mut self) -> Result<SystemSample> {
        let now = read_counters(&mut self.files)?;
        let elapsed = now.at.duration_since(self.previous.at).as_secs_f64();
        let per_sec = |after: u64, before: u64| {
            if elapsed > 0.0 {
                after.saturating_sub(before) as f64 / elapsed
            } else {
                0.0
            }
        };
        let cpu = self.cpu(&now, elapsed)?;
        let memory = self.memory(&now)?;

        let mut interfaces: Vec<InterfaceSample> = now
            .interfaces
            .values()
            .map(|dev| {
                let before = self.previous.interfaces.get(&dev.name).unwrap_or(dev);
                InterfaceSample {
                    name: dev.name.clone(),
                    rx_bytes_per_sec: per_sec(dev.recv_bytes, before.recv_bytes),
                    tx_bytes_per_sec: per_sec(dev.sent_bytes, before.sent_bytes),
                    rx_packets_per_sec: per_sec(dev.recv_packets, before.recv_packets),
                    tx_packets_per_sec: per_sec(dev.sent_packets, before.sent_packets),
                    rx_errors_per_sec: per_sec(dev.recv_errs, before.recv_errs),
                    tx_errors_per_sec: per_sec(dev.sent_errs, before.sent_errs),
                    rx_drops_per_sec: per_sec(dev.recv_drop, before.recv_drop),
                    tx_drops_per_sec: per_sec(dev.sent_drop, before.sent_drop),
                    rx_errors_total: dev.recv_errs,
                    tx_errors_total: dev.sent_errs,
                    rx_drops_total: dev.recv_drop,
                    tx_drops_total: dev.sent_drop,
                }
            })
            .collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        let network = NetworkSample {
            interfaces,
            tcp: read_tcp_connections(&mut self.files)?,
        };

        let interval_ms = crate::num::saturating_u64((elapsed * 1000.0).round());
        self.previous = now;
        Ok(SystemSample {
            timestamp_ms: unix_millis(),
            interval_ms,
            cpu,
            memory,
            network,
            cgroup: self.cgroup.as_ref().map(crate::cgroup::Cgroup::sample),
        })
    }

    fn cpu(&mut self, now: &Counters, elapsed: f64) -> Result<CpuSample> {
        let delta = |after: &CpuTicks, before: &CpuTicks| CpuTicks {
            busy: after.busy.saturating_sub(before.busy),
            all: after.all.saturating_sub(before.all),
            iowait: after.iowait.saturating_sub(before.iowait),
            steal: after.steal.saturating_sub(before.steal),
        };
        let total = delta(&now.total, &self.previous.total);
        let per_core_utilization_percent = now
            .per_core
            .iter()
            .enumerate()
            .map(|(i, after)| {
                let before = self.previous.per_core.get(i).copied().unwrap_or_default();
                let d = delta(after, &before);
                share(d.busy, d.all)
            })
            .collect();
        let files = &mut self.files;
        let load = parsed(
            "/proc/loadavg",
            LoadAverage::from_read(reread(&mut files.loadavg, &mut files.buf, "/proc/loadavg")?),
        )?;
        let process_secs = now
            .process_ticks
            .saturating_sub(self.previous.process_ticks) as f64
            / self.ticks_per_second as f64;
        let stat = &now.stat;
        Ok(CpuSample {
            cores: now.per_core.len(),
            utilization_percent: share(total.busy, total.all),
            per_core_utilization_percent,
            iowait_percent: share(total.iowait, total.all),
            steal_percent: share(total.steal, total.all),
            load_average_1m: round2(f64::from(load.one)),
            load_average_5m: round2(f64::from(load.five)),
            load_average_15m: round2(f64::from(load.fifteen)),
            process_cpu_percent: if elapsed > 0.0 {
                process_secs / elapsed * 100.0
            } else {
                0.0
            },
            process_threads: u64::try_from(stat.num_threads).unwrap_or(0),
        })
    }

    fn memory(&mut self, now: &Counters) -> Result<MemorySample> {
        let files = &mut self.files;
        let info = parsed(
            "/proc/meminfo",
            <Meminfo as FromBufRead>::from_buf_read(reread(
                &mut files.meminfo,
                &mut files.buf,
                "/proc/meminfo",
            )?),
        )?;
        let stat = &now.stat;
        let status = parsed(
            "/proc/self/status",
            <Status as FromBufRead>::from_buf_read(reread(
                &mut files.self_status,
                &mut files.buf,
                "/proc/self/status",
            )?),
        )?;
        // Counting open files opens /proc/self/fd: at the open-file limit
        // that fails, and the last count is the best there is.
        if let Ok(n) = self.process.fd_count() {
            self.open_fds = n as u64;
        }
        let available = info.mem_available.unwrap_or(info.mem_free);
        let rss = stat.rss * self.page_size;
        Ok(MemorySample {
            host_total_bytes: info.mem_total,
            host_available_bytes: available,
            host_used_percent: share(info.mem_total.saturating_sub(available), info.mem_total),
            swap_total_bytes: info.swap_total,
            swap_free_bytes: info.swap_free,
            process_rss_bytes: rss,
            process_peak_rss_bytes: status.vmhwm.map_or(rss, |kib| kib * 1024).max(rss),
            process_virtual_bytes: stat.vsize,
            process_open_fds: self.open_fds,
        })
    }
}

fn read_counters(files: &mut ProcFiles) -> Result<Counters> {
    let info = procfs::current_system_info();
    let kernel = parsed(
        "/proc/stat",
        <KernelStats as FromBufReadSI>::from_buf_read(
            reread(&mut files.stat, &mut files.buf, "/proc/stat")?,
            info,
        ),
    )?;
    let stat = parsed(
        "/proc/self/stat",
        Stat::from_read(reread(
            &mut files.self_stat,
            &mut files.buf,
            "/proc/self/stat",
        )?),
    )?;
    let interfaces = parsed(
        "/proc/net/dev",
        <InterfaceDeviceStatus as FromBufRead>::from_buf_read(reread(
            &mut files.net_dev,
            &mut files.buf,
            "/proc/net/dev",
        )?),
    )?
    .0;
    Ok(Counters {
        at: Instant::now(),
        total: CpuTicks::from(&kernel.total),
        per_core: kernel.cpu_time.iter().map(CpuTicks::from).collect(),
        process_ticks: stat.utime + stat.stime,
        interfaces,
        stat,
    })
}

fn read_tcp_connections(files: &mut ProcFiles) -> Result<TcpConnections> {
    let info = procfs::current_system_info();
    let mut entries = parsed(
        "/proc/net/tcp",
        <TcpNetEntries as FromBufReadSI>::from_buf_read(
            reread(&mut files.tcp, &mut files.buf, "/proc/net/tcp")?,
            info,
        ),
    )?
    .0;
    // IPv6 may be disabled on the host: then there is simply nothing to count.
    if let Some(tcp6) = files.tcp6.as_mut()
        && let Ok(bytes) = reread(tcp6, &mut files.buf, "/proc/net/tcp6")
        && let Ok(more) = <TcpNetEntries as FromBufReadSI>::from_buf_read(bytes, info)
    {
        entries.extend(more.0);
    }
    let mut counts = TcpConnections::default();
    for entry in &entries {
        let slot = match entry.state {
            TcpState::Established => &mut counts.established,
            TcpState::SynSent => &mut counts.syn_sent,
            TcpState::SynRecv | TcpState::NewSynRecv => &mut counts.syn_recv,
            TcpState::FinWait1 => &mut counts.fin_wait1,
            TcpState::FinWait2 => &mut counts.fin_wait2,
            TcpState::TimeWait => &mut counts.time_wait,
            TcpState::Close => &mut counts.close,
            TcpState::CloseWait => &mut counts.close_wait,
            TcpState::LastAck => &mut counts.last_ack,
            TcpState::Listen => &mut counts.listen,
            TcpState::Closing => &mut counts.closing,
        };
        *slot += 1;
        counts.total += 1;
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    #[test]
    fn busy_thread_shows_in_process_and_host_cpu() {
        let mut sampler = SystemSampler::new().unwrap();
        let until = Instant::now() + Duration::from_millis(600);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let s = sampler.sample().unwrap();
        assert!(s.interval_ms >= 500, "{}", s.interval_ms);
        // The busy thread shows (how much depends on who else wants the
        // CPU on a shared machine), and more than the same time idle.
        assert!(s.cpu.process_cpu_percent > 10.0, "{:?}", s.cpu);
        std::thread::sleep(Duration::from_millis(600));
        let idle = sampler.sample().unwrap();
        assert!(
            idle.cpu.process_cpu_percent < s.cpu.process_cpu_percent,
            "busy {:?} idle {:?}",
            s.cpu,
            idle.cpu
        );
        assert!(s.cpu.utilization_percent > 0.0, "{:?}", s.cpu);
        assert_eq!(s.cpu.per_core_utilization_percent.len(), s.cpu.cores);
        assert!(
            s.cpu
                .per_core_utilization_percent
                .iter()
                .all(|p| (0.0..=100.0).contains(p))
        );
    }

    #[test]
    fn samples_read_fresh_figures_through_files_kept_open() {
        let mut sampler = SystemSampler::new().unwrap();
        let first = sampler.sample().unwrap();
        let fds = |s: &SystemSample| s.memory.process_open_fds;
        // 64 MiB touched: the next sample sees it (the files are re-read, not cached).
        let block = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(150));
        let second = sampler.sample().unwrap();
        assert!(
            second.memory.process_rss_bytes >= first.memory.process_rss_bytes + (48 << 20),
            "{} then {}",
            first.memory.process_rss_bytes,
            second.memory.process_rss_bytes
        );
        drop(block);
        // Sampling opens nothing that stays open.
        for _ in 0..20 {
            sampler.sample().unwrap();
        }
        let later = sampler.sample().unwrap();
        assert!(
            fds(&later) <= fds(&second) + 4,
            "{} then {}",
            fds(&second),
            fds(&later)
        );
    }

    #[test]
    fn memory_and_network_are_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut sampler = SystemSampler::new().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let s = sampler.sample().unwrap();
        assert!(s.memory.host_total_bytes > 0);
        assert!(s.memory.process_rss_bytes > 0);
        assert!(s.memory.process_peak_rss_bytes >= s.memory.process_rss_bytes);
        assert!(s.memory.process_open_fds >= 3);
        assert!(s.network.interfaces.iter().any(|i| i.name == "lo"));
        assert!(s.network.tcp.listen >= 1, "{:?}", s.network.tcp);
        assert!(s.network.tcp.established >= 2, "{:?}", s.network.tcp);
    }
}
