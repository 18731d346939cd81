//! Instance managers: what runs the replicas. [`LocalProcesses`] runs N
//! copies of a command on this machine; the Kubernetes manager lives in
//! `kubernetes.rs` behind the `kubernetes` feature.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::replicas::{Pod, PodPhase};
use crate::{Error, Result};

/// One replica as a manager reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Instance {
    /// Its name.
    pub id: String,
    /// Where it listens (`host:port`), when known.
    pub address: Option<String>,
    /// Answering its health check.
    pub ready: bool,
    /// Its phase.
    pub phase: PodPhase,
    /// Times it was restarted after crashing.
    pub restarts: u32,
    /// Seconds since it (last) started.
    pub age_s: f64,
    /// Its process id (local processes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl Instance {
    /// As the decision engine sees it.
    pub fn as_pod(&self) -> Pod {
        Pod {
            name: self.id.clone(),
            phase: self.phase,
            ready: self.ready,
            deleting: false,
            cpu_initializing: false,
            request: None,
        }
    }
}

/// Runs and counts the replicas.
#[async_trait::async_trait]
pub trait InstanceManager: Send + Sync {
    /// The replicas now, starting ones included.
    async fn instances(&self) -> Result<Vec<Instance>>;
    /// How many replicas are asked for now (default: the instances counted).
    async fn replicas(&self) -> Result<u32> {
        Ok(u32::try_from(self.instances().await?.len()).unwrap_or(u32::MAX))
    }
    /// Asks for `replicas` (starts or drains the difference).
    async fn scale_to(&self, replicas: u32) -> Result<()>;
    /// What it manages, for status pages.
    fn describe(&self) -> String;
}

/// How to run local copies of a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LocalProcessConfig {
    /// Program and arguments; `{port}` and `{index}` are replaced in each.
    pub command: Vec<String>,
    /// Instance `i` listens on `base_port + i`.
    pub base_port: u16,
    /// Path answering 200 when the instance is ready (default `/health`).
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Seconds between health checks (default 0.5).
    #[serde(default = "default_health_interval")]
    pub health_interval_s: f64,
    /// Seconds a draining instance gets after SIGTERM before SIGKILL (default 10).
    #[serde(default = "default_drain")]
    pub drain_timeout_s: f64,
    /// Extra environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

fn default_health_path() -> String {
    "/health".to_owned()
}
fn default_health_interval() -> f64 {
    0.5
}
fn default_drain() -> f64 {
    10.0
}

impl LocalProcessConfig {
    /// Checks the fields; the error names the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.command.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(Error::invalid("command", "needs a program to run"));
        }
        if !self.health_path.starts_with('/') {
            return Err(Error::invalid("health_path", "must start with /"));
        }
        if !(0.05..=60.0).contains(&self.health_interval_s) {
            return Err(Error::invalid(
                "health_interval_s",
                "must be between 0.05 and 60",
            ));
        }
        if !(0.0..=600.0).contains(&self.drain_timeout_s) {
            return Err(Error::invalid(
                "drain_timeout_s",
                "must be between 0 and 600",
            ));
        }
        if self.base_port < 1024 {
            return Err(Error::invalid("base_port", "must be at least 1024"));
        }
        Ok(())
    }
}

struct Slot {
    index: u32,
    port: u16,
    child: Option<Child>,
    /// The process group of the last child started (its pid).
    pgid: Option<u32>,
    started: Instant,
    ready: bool,
    restarts: u32,
}

/// Local copies of a command, supervised: ready when the health path
/// answers 200, restarted when they exit on their own (and counted),
/// drained on scale-down (SIGTERM, wait, then SIGKILL).
pub struct LocalProcesses {
    config: LocalProcessConfig,
    slots: Arc<Mutex<Vec<Slot>>>,
    supervisor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for LocalProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalProcesses")
            .field("command", &self.config.command)
            .finish_non_exhaustive()
    }
}

/// `GET path` on 127.0.0.1:port with `client`; true on a 2xx status.
async fn healthy(client: &perf_core::http_client::ControlClient, port: u16, path: &str) -> bool {
    client
        .get(&format!("http://127.0.0.1:{port}{path}"))
        .await
        .is_ok_and(|answer| (200..300).contains(&answer.status))
}

fn spawn(config: &LocalProcessConfig, index: u32, port: u16) -> Result<Child> {
    let fill = |s: &String| {
        s.replace("{port}", &port.to_string())
            .replace("{index}", &index.to_string())
    };
    let program = fill(&config.command[0]);
    let mut command = Command::new(&program);
    command
        .args(config.command[1..].iter().map(fill))
        .envs(&config.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: a wrapper (a shell, a version-manager shim)
        // and what it starts are signalled together.
        .process_group(0)
        .kill_on_drop(true);
    command
        .spawn()
        .map_err(|e| Error::Input(format!("cannot start {program}: {e}")))
}

/// Signals the process group led by `pid` (the instance and anything it
/// started).
fn signal_group(pid: Option<u32>, signal: rustix::process::Signal) {
    if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// SIGTERM to the group, wait up to `grace`, then SIGKILL to the group.
async fn drain(mut child: Child, grace: Duration) {
    let pid = child.id();
    signal_group(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
    // Whatever the instance started and left behind goes too.
    signal_group(pid, rustix::process::Signal::KILL);
}

impl LocalProcesses {
    /// Starts supervising (no instance runs until [`InstanceManager::scale_to`]).
    /// Needs a tokio runtime.
    pub fn new(config: LocalProcessConfig) -> Result<Self> {
        config.validate()?;
        let slots: Arc<Mutex<Vec<Slot>>> = Arc::new(Mutex::new(Vec::new()));
        let watched = Arc::clone(&slots);
        let cfg = config.clone();
        let supervisor = tokio::spawn(async move {
            let interval = perf_core::saturating_secs(cfg.health_interval_s);
            // Health probes, each within one interval; the answer's body is not kept.
            let probe = perf_core::http_client::ControlClient::new(
                None,
                perf_core::http_client::Limits::new(interval, 1 << 20).without_keep_alive(),
            );
            loop {
                tokio::time::sleep(interval).await;
                // Restart the ones that exited on their own.
                let ports: Vec<(u32, u16)> = {
                    let Ok(mut slots) = watched.lock() else {
                        return;
                    };
                    for slot in slots.iter_mut() {
                        let exited = match slot.child.as_mut() {
                            Some(child) => child.try_wait().ok().flatten().is_some(),
                            None => true,
                        };
                        if exited {
                            // What the crashed instance started must not keep its port.
                            signal_group(slot.pgid, rustix::process::Signal::KILL);
                            slot.ready = false;
                            slot.restarts += 1;
                            slot.started = Instant::now();
                            slot.child = spawn(&cfg, slot.index, slot.port).ok();
                            slot.pgid = slot.child.as_ref().and_then(Child::id);
                        }
                    }
                    slots.iter().map(|s| (s.index, s.port)).collect()
                };
                let mut checks = tokio::task::JoinSet::new();
                for (index, port) in ports {
                    let path = cfg.health_path.clone();
                    let probe = probe.clone();
                    checks.spawn(async move { (index, healthy(&probe, port, &path).await) });
                }
                let mut results = BTreeMap::new();
                while let Some(Ok((index, ok))) = checks.join_next().await {
                    results.insert(index, ok);
                }
                let Ok(mut slots) = watched.lock() else {
                    return;
                };
                for slot in slots.iter_mut() {
                    if let Some(ok) = results.get(&slot.index) {
                        slot.ready = *ok;
                    }
                }
            }
        });
        Ok(Self {
            config,
            slots,
            supervisor,
        })
    }

    /// Stops every instance (draining) and the supervisor.
    pub async fn shutdown(&self) {
        self.supervisor.abort();
        let _ = self.scale_to(0).await;
    }
}

impl Drop for LocalProcesses {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

#[async_trait::async_trait]
impl InstanceManager for LocalProcesses {
    async fn instances(&self) -> Result<Vec<Instance>> {
        let slots = self
            .slots
            .lock()
            .map_err(|_| Error::Input("instance table poisoned".to_owned()))?;
        Ok(slots
            .iter()
            .map(|s| Instance {
                id: format!("local-{}", s.index),
                address: Some(format!("127.0.0.1:{}", s.port)),
                ready: s.ready,
                phase: if s.ready {
                    PodPhase::Running
                } else {
                    PodPhase::Pending
                },
                restarts: s.restarts,
                age_s: s.started.elapsed().as_secs_f64(),
                pid: s.child.as_ref().and_then(Child::id),
            })
            .collect())
    }

    async fn scale_to(&self, replicas: u32) -> Result<()> {
        let draining: Vec<Child> = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| Error::Input("instance table poisoned".to_owned()))?;
            let current = u32::try_from(slots.len()).unwrap_or(u32::MAX);
            if replicas > current {
                for _ in current..replicas {
                    let index = (0..)
                        .find(|i| !slots.iter().any(|s| s.index == *i))
                        .unwrap_or(0);
                    let port =
                        u16::try_from(u32::from(self.config.base_port) + index).map_err(|_| {
                            Error::invalid(
                                "base_port",
                                format!("instance {index} would need a port above 65535"),
                            )
                        })?;
                    let child = spawn(&self.config, index, port)?;
                    slots.push(Slot {
                        index,
                        port,
                        pgid: child.id(),
                        child: Some(child),
                        started: Instant::now(),
                        ready: false,
                        restarts: 0,
                    });
                }
                Vec::new()
            } else {
                // The newest (highest index) go first.
                slots.sort_by_key(|s| s.index);
                let keep = replicas as usize;
                slots.drain(keep..).filter_map(|s| s.child).collect()
            }
        };
        let grace = perf_core::saturating_secs(self.config.drain_timeout_s);
        let mut drains = tokio::task::JoinSet::new();
        for child in draining {
            drains.spawn(drain(child, grace));
        }
        while drains.join_next().await.is_some() {}
        Ok(())
    }

    fn describe(&self) -> String {
        format!("local processes: {}", self.config.command.join(" "))
    }
}

perf_core::config_builder! {
    /// Builds a [`LocalProcessConfig`] from the command and the first port.
    LocalProcessConfig(command: Vec<String>, base_port: u16) => LocalProcessConfigBuilder, Error {
        health_path: String => into,
        health_interval_s: f64,
        drain_timeout_s: f64,
        env: BTreeMap<String, String>,
    }
    starting from LocalProcessConfig {
        command,
        base_port,
        health_path: default_health_path(),
        health_interval_s: default_health_interval(),
        drain_timeout_s: default_drain(),
        env: BTreeMap::new(),
    }
}
