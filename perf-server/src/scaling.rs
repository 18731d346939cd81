//! `perf-server scaling ...`: try a scaling policy on a recorded load.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use perf_scaling::{ScalingPolicy, SimulationSettings, TracePoint};

/// `perf-server scaling` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub(crate) enum ScalingCommand {
    /// Replay a recorded load through a policy and print the result as JSON.
    Simulate(SimulateArgs),
}

/// Options of `perf-server scaling simulate`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SimulateArgs {
    /// The policy, YAML or JSON (`min_replicas`, `max_replicas`, `metrics`, `behavior`, `tolerance`).
    #[arg(long)]
    pub policy: PathBuf,
    /// The load: a CSV of `time_s,value` (header first), or a load test's JSON
    /// report (its timeline's requests per second).
    #[arg(long)]
    pub trace: PathBuf,
    /// Replicas at the start [default: the policy's min_replicas].
    #[arg(long)]
    pub initial: Option<u32>,
    /// Seconds between decisions.
    #[arg(long, default_value_t = 15.0)]
    pub period: f64,
    /// Seconds for a new replica to become ready.
    #[arg(long, default_value_t = 30.0)]
    pub startup: f64,
    /// Request of one replica in the trace's unit, for utilization targets.
    #[arg(long, default_value_t = 100.0)]
    pub request: f64,
    /// Run the trace through several policies side by side and print a
    /// table: `reactive,predictive` (the policy without and with predictive
    /// scaling; without a `predictive` block, `lead_time` = start-up plus
    /// one period).
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// With `--compare`: print the two reports as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a trace from CSV or from a load test report's timeline.
fn read_trace(path: &Path) -> Result<Vec<TracePoint>, String> {
    let text = read(path)?;
    if text.trim_start().starts_with('{') {
        let report: perf_loadgen::RunReport = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a load test report: {e}", path.display()))?;
        if report.timeline.is_empty() {
            return Err(format!(
                "{}: the report's timeline is empty",
                path.display()
            ));
        }
        return Ok(report
            .timeline
            .iter()
            .map(|row| TracePoint {
                t_s: row.t_s as f64,
                value: row.rps,
            })
            .collect());
    }
    perf_scaling::parse_trace_csv(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_policy(path: &Path) -> Result<ScalingPolicy, String> {
    let text = read(path)?;
    let policy: ScalingPolicy =
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    policy
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(policy)
}

/// Runs `simulate`; 0 on success, 2 on bad input.
pub(crate) fn simulate(args: &SimulateArgs) -> u8 {
    let result = read_policy(&args.policy).and_then(|policy| {
        let trace = read_trace(&args.trace)?;
        let settings = SimulationSettings::builder()
            .initial_replicas(args.initial)
            .period_s(args.period)
            .startup_s(args.startup)
            .request_per_replica(args.request)
            .build()
            .map_err(|e| e.to_string())?;
        if args.compare.is_empty() {
            let report =
                perf_scaling::simulate(&policy, &trace, &settings).map_err(|e| e.to_string())?;
            return serde_json::to_string_pretty(&report).map_err(|e| e.to_string());
        }
        let mut wanted: Vec<&str> = args.compare.iter().map(|s| s.trim()).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted != ["predictive", "reactive"] {
            return Err(format!(
                "--compare: {:?} is not supported; write --compare reactive,predictive",
                args.compare.join(",")
            ));
        }
        let comparison = perf_scaling::compare_reactive_predictive(&policy, &trace, &settings)
            .map_err(|e| e.to_string())?;
        if args.json {
            serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())
        } else {
            Ok(comparison.table())
        }
    });
    match result {
        Ok(text) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.trim_end().as_bytes());
            let _ = out.write_all(b"\n");
            0
        }
        Err(message) => {
            eprintln!("perf-server scaling simulate: {message}");
            2
        }
    }
}

/// Where the autoscaler reads its metric (the `scaling.source` setting).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSetup {
    /// A series from each instance's Prometheus endpoint (perf-server's
    /// `/metrics`, an Envoy sidecar's `/stats/prometheus`).
    Scrape(perf_scaling::ScrapedSeries),
    /// A query to a Prometheus server (Istio's request totals, say).
    Prometheus(perf_scaling::PrometheusQuery),
    /// The requests per second of this server's running load tests, as an
    /// external metric named `metric`.
    LoadTest {
        /// The metric name the policy uses.
        metric: String,
    },
}

/// What runs the replicas (the `scaling.manager` setting).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ManagerSetup {
    /// Copies of a command on this machine.
    Local(perf_scaling::LocalProcessConfig),
    /// A Kubernetes Deployment's scale subresource.
    #[cfg(feature = "kubernetes")]
    Kubernetes(perf_scaling::KubernetesConfig),
}

/// The `scaling` section of the configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalingSetup {
    /// The policy at start (a policy stored through `PUT /performance/scaling/config` wins).
    pub policy: ScalingPolicy,
    /// Seconds between decisions (1 to 600, default 15).
    #[serde(default = "default_period")]
    pub period_s: f64,
    /// What runs the replicas.
    pub manager: ManagerSetup,
    /// Where the metric comes from.
    pub source: SourceSetup,
}

fn default_period() -> f64 {
    15.0
}

impl ScalingSetup {
    /// Checks every part; the error names the field under `scaling.`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let nested = |section: &str, e: perf_scaling::Error| match e {
            perf_scaling::Error::Invalid { field, message } => {
                (format!("scaling.{section}.{field}"), message)
            }
            other => (format!("scaling.{section}"), other.to_string()),
        };
        self.policy.validate().map_err(|e| nested("policy", e))?;
        if !(1.0..=600.0).contains(&self.period_s) {
            return Err((
                "scaling.period_s".to_owned(),
                format!("{} is outside the allowed range 1 to 600", self.period_s),
            ));
        }
        match &self.manager {
            ManagerSetup::Local(l) => l.validate().map_err(|e| nested("manager.local", e))?,
            #[cfg(feature = "kubernetes")]
            ManagerSetup::Kubernetes(k) => {
                k.validate().map_err(|e| nested("manager.kubernetes", e))?
            }
        }
        if let SourceSetup::Scrape(series) = &self.source {
            series.validate().map_err(|e| nested("source.scrape", e))?;
        }
        Ok(())
    }
}

/// The running load tests' request rate as a metrics source.
#[derive(Debug)]
pub(crate) struct LoadTestSource {
    /// The metric name.
    pub metric: String,
    /// The runner to ask.
    pub tests: std::sync::Arc<crate::test_runner::TestRunner>,
}

#[async_trait::async_trait]
impl perf_scaling::MetricsSource for LoadTestSource {
    async fn read(
        &self,
        _instances: &[perf_scaling::Instance],
    ) -> std::collections::BTreeMap<String, perf_scaling::Reading> {
        let reading = match self.tests.live_rps() {
            Some(rps) => perf_scaling::Reading::Single(rps),
            None => perf_scaling::Reading::Single(0.0),
        };
        [(self.metric.clone(), reading)].into()
    }
}

/// The store key of the autoscaler's [`perf_scaling::History`].
pub(crate) const HISTORY_KEY: &str = "history";
/// The history is stored at most this often (and when the loop ends).
const HISTORY_SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Stores the controller's history under [`HISTORY_KEY`].
async fn save_history(
    controller: &perf_scaling::ScalingController,
    store: &dyn crate::store::Store,
) {
    let Some(text) = controller
        .history()
        .ok()
        .and_then(|h| serde_json::to_string(&h).ok())
    else {
        return;
    };
    if let Err(e) = store.put_scaling_state(HISTORY_KEY, &text).await {
        tracing::warn!(error = %e, "the scaling history was not stored");
    }
}

/// The running autoscaler: its controller and the local manager to drain on shutdown.
pub(crate) struct Scaling {
    /// The controller.
    pub controller: std::sync::Arc<perf_scaling::ScalingController>,
    local: Option<std::sync::Arc<perf_scaling::LocalProcesses>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    store: std::sync::Arc<dyn crate::store::Store>,
}

impl std::fmt::Debug for Scaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scaling").finish_non_exhaustive()
    }
}

impl Scaling {
    /// Builds the manager, source and controller, and starts the loop;
    /// every decision is stored.
    pub(crate) async fn start(
        setup: &ScalingSetup,
        store: std::sync::Arc<dyn crate::store::Store>,
        tests: std::sync::Arc<crate::test_runner::TestRunner>,
    ) -> crate::Result<Self> {
        let config_error = |field: &str, e: perf_scaling::Error| crate::Error::Config {
            field: field.to_owned(),
            message: e.to_string(),
        };
        let mut policy = setup.policy.clone();
        if let Some(stored) = store.get_scaling_state("policy").await?
            && let Ok(p) = serde_json::from_str::<ScalingPolicy>(&stored)
            && p.validate().is_ok()
        {
            policy = p;
        }
        let (manager, local): (std::sync::Arc<dyn perf_scaling::InstanceManager>, _) =
            match &setup.manager {
                ManagerSetup::Local(config) => {
                    let local = std::sync::Arc::new(
                        perf_scaling::LocalProcesses::new(config.clone())
                            .map_err(|e| config_error("scaling.manager.local", e))?,
                    );
                    (local.clone(), Some(local))
                }
                #[cfg(feature = "kubernetes")]
                ManagerSetup::Kubernetes(config) => (
                    std::sync::Arc::new(
                        perf_scaling::KubernetesDeployment::new(config.clone())
                            .await
                            .map_err(|e| config_error("scaling.manager.kubernetes", e))?,
                    ),
                    None,
                ),
            };
        let source: std::sync::Arc<dyn perf_scaling::MetricsSource> = match &setup.source {
            SourceSetup::Scrape(s) => {
                std::sync::Arc::new(perf_scaling::InstanceScraper::new(s.clone()))
            }
            SourceSetup::Prometheus(q) => std::sync::Arc::new(q.clone()),
            SourceSetup::LoadTest { metric } => std::sync::Arc::new(LoadTestSource {
                metric: metric.clone(),
                tests,
            }),
        };
        // The engine's memory (recommendations for the stabilization
        // windows, scale events for the rate limits) survives a restart, so
        // a restarted server does not scale down at once.
        let history = match store.get_scaling_state(HISTORY_KEY).await? {
            Some(text) => match serde_json::from_str::<perf_scaling::History>(&text) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "the stored scaling history is unreadable; starting without one");
                    perf_scaling::History::default()
                }
            },
            None => perf_scaling::History::default(),
        };
        let controller = match perf_scaling::ScalingController::with_history(
            policy.clone(),
            history.clone(),
            std::sync::Arc::clone(&manager),
            std::sync::Arc::clone(&source),
        ) {
            Ok(c) => c,
            Err(perf_scaling::Error::Invalid { field, message })
                if field.starts_with("history") =>
            {
                // Keep what is sound: without the demand if only it is bad.
                let without_demand = perf_scaling::History {
                    demand: None,
                    ..history
                };
                tracing::warn!(%field, %message, "part of the stored scaling history is refused");
                match perf_scaling::ScalingController::with_history(
                    policy.clone(),
                    without_demand,
                    std::sync::Arc::clone(&manager),
                    std::sync::Arc::clone(&source),
                ) {
                    Ok(c) => c,
                    Err(_) => perf_scaling::ScalingController::new(policy, manager, source)
                        .map_err(|e| config_error("scaling.policy", e))?,
                }
            }
            Err(e) => return Err(config_error("scaling.policy", e)),
        };
        let controller = std::sync::Arc::new(controller);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let period = perf_core::saturating_secs(setup.period_s);
        // One task saves the history when a decision changed it, at most
        // every HISTORY_SAVE_EVERY, reading it only when it saves: saves
        // cannot land out of order, and a large demand history is neither
        // copied nor written on every decision. Shutdown saves the last state.
        let (changed_tx, mut changed_rx) = tokio::sync::watch::channel(());
        let saver_store = std::sync::Arc::clone(&store);
        let kept_store = std::sync::Arc::clone(&store);
        let saved = std::sync::Arc::downgrade(&controller);
        tokio::spawn(async move {
            while changed_rx.changed().await.is_ok() {
                let Some(controller) = saved.upgrade() else {
                    break;
                };
                save_history(&controller, saver_store.as_ref()).await;
                drop(controller);
                tokio::time::sleep(HISTORY_SAVE_EVERY).await;
            }
        });
        let task =
            tokio::spawn(
                std::sync::Arc::clone(&controller).run(period, stopped, move |event| {
                    let store = std::sync::Arc::clone(&store);
                    crate::telemetry::count_scaling_event(&event);
                    let _ = changed_tx.send(());
                    tokio::spawn(async move {
                        let record = crate::store::ScalingEventRecord {
                            id: perf_core::Id::new(),
                            event,
                        };
                        if let Err(e) = store.insert_scaling_event(&record).await {
                            tracing::warn!(error = %e, "a scaling decision was not stored");
                        }
                    });
                }),
            );
        Ok(Self {
            controller,
            local,
            stop,
            task: std::sync::Mutex::new(Some(task)),
            store: kept_store,
        })
    }

    /// Stops the loop (letting a decision in progress finish, so it cannot
    /// start instances after the drain) and drains the local instances.
    pub(crate) async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        // The last state, so a restart carries on from it.
        save_history(&self.controller, self.store.as_ref()).await;
        if let Some(local) = &self.local {
            local.shutdown().await;
        }
    }
}
