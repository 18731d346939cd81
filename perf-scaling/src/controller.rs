//! The autoscaler loop: on a period, read the instances and the metrics,
//! decide with the [`Autoscaler`] engine, scale, and report every decision
//! as a [`ScalingEvent`]. Manual scaling goes through the same place so the
//! rate limits see it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::decision::{
    Autoscaler, Decision, History, HpaCondition, MetricOutcome, Observation, Reading,
};
use crate::instances::{Instance, InstanceManager};
use crate::policy::ScalingPolicy;
use crate::sources::MetricsSource;
use crate::{Error, Result};

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScalingEvent {
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `auto` (the loop) or `manual`.
    pub kind: String,
    /// Replicas before.
    pub from: u32,
    /// Replicas after.
    pub to: u32,
    /// Why.
    pub reason: String,
    /// Each metric's value, target and proposal.
    pub metrics: Vec<MetricOutcome>,
}

/// An instance with its share of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstanceStatus {
    /// The instance.
    #[serde(flatten)]
    pub instance: Instance,
    /// Its share of the first per-instance metric (0 to 1), when known.
    pub load_share: Option<f64>,
}

/// What the controller knows now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ControllerStatus {
    /// Replicas running or starting.
    pub current_replicas: u32,
    /// Replicas last asked for.
    pub desired_replicas: u32,
    /// The last decision.
    pub last_decision: Option<ScalingEvent>,
    /// The instances.
    pub instances: Vec<InstanceStatus>,
    /// The instance manager.
    pub manager: String,
    /// The policy in force.
    pub policy: ScalingPolicy,
    /// The HPA status conditions after the last decision.
    pub conditions: Vec<HpaCondition>,
    /// What the engine remembers (restored from the store after a restart).
    pub history: HistorySummary,
    /// Predictive scaling: the next hour's forecast and whether it acts
    /// (absent without a `predictive` block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<crate::forecast::ForecastStatus>,
}

/// How much the engine remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistorySummary {
    /// Recommendations held for the stabilization windows; `None` before
    /// the first decision of a new engine (no history yet).
    pub recommendations: Option<usize>,
    /// Scale events held for the rate policies.
    pub scale_events: usize,
    /// Seconds of demand history (predictive scaling).
    pub demand_s: f64,
}

/// Runs a policy against an instance manager and a metrics source.
pub struct ScalingController {
    engine: Mutex<Autoscaler>,
    manager: Arc<dyn InstanceManager>,
    source: Arc<dyn MetricsSource>,
    last: Mutex<Option<ScalingEvent>>,
    shares: Mutex<Vec<(String, f64)>>,
    desired: Mutex<u32>,
}

impl std::fmt::Debug for ScalingController {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScalingController")
            .field("manager", &self.manager.describe())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    perf_core::unix_millis()
}

fn event(kind: &str, d: &Decision) -> ScalingEvent {
    ScalingEvent {
        at_ms: now_ms(),
        kind: kind.to_owned(),
        from: d.from,
        to: d.to,
        reason: d.reason.clone(),
        metrics: d.metrics.clone(),
    }
}

impl ScalingController {
    /// A controller for `policy` (validated), with no history yet.
    pub fn new(
        policy: ScalingPolicy,
        manager: Arc<dyn InstanceManager>,
        source: Arc<dyn MetricsSource>,
    ) -> Result<Self> {
        Self::with_history(policy, History::default(), manager, source)
    }

    /// A controller that carries on from a saved [`History`] (its times
    /// are Unix seconds, the controller's clock).
    pub fn with_history(
        policy: ScalingPolicy,
        history: History,
        manager: Arc<dyn InstanceManager>,
        source: Arc<dyn MetricsSource>,
    ) -> Result<Self> {
        let desired = policy.min_replicas;
        Ok(Self {
            engine: Mutex::new(Autoscaler::with_history(policy, history)?),
            manager,
            source,
            last: Mutex::new(None),
            shares: Mutex::new(Vec::new()),
            desired: Mutex::new(desired),
        })
    }

    /// The engine's clock: Unix seconds, so a saved history means the same
    /// after a restart.
    fn now_s(&self) -> f64 {
        perf_core::unix_millis() as f64 / 1000.0
    }

    /// What the engine remembers, to save and restore with
    /// [`ScalingController::with_history`].
    pub fn history(&self) -> Result<History> {
        Ok(self.engine()?.history())
    }

    fn engine(&self) -> Result<std::sync::MutexGuard<'_, Autoscaler>> {
        self.engine
            .lock()
            .map_err(|_| Error::Input("scaling engine poisoned".to_owned()))
    }

    /// One evaluation: read, decide, scale. Returns the decision as an event.
    pub async fn tick(&self) -> Result<ScalingEvent> {
        let instances = self.manager.instances().await?;
        let readings = self.source.read(&instances).await;
        self.remember_shares(&readings);
        let observation = Observation {
            pods: instances.iter().map(Instance::as_pod).collect(),
            readings,
        };
        let current = self.manager.replicas().await?;
        let decision = {
            let mut engine = self.engine()?;
            let min = engine.policy().min_replicas;
            if current == 0 && min > 0 {
                // Nothing runs yet (an HPA would call scaling disabled):
                // start at the minimum.
                engine.record_scale(self.now_s(), 0, min);
                Decision {
                    at_s: self.now_s(),
                    from: 0,
                    to: min,
                    proposed: None,
                    stabilized: None,
                    reason: format!("starting at min_replicas {min}"),
                    metrics: Vec::new(),
                    conditions: engine.conditions().to_vec(),
                    prediction: None,
                }
            } else {
                engine.decide(self.now_s(), current, &observation)
            }
        };
        if decision.to != decision.from {
            self.manager.scale_to(decision.to).await?;
        }
        if let Ok(mut d) = self.desired.lock() {
            *d = decision.to;
        }
        let e = event("auto", &decision);
        if let Ok(mut last) = self.last.lock() {
            *last = Some(e.clone());
        }
        Ok(e)
    }

    fn remember_shares(&self, readings: &std::collections::BTreeMap<String, Reading>) {
        let per_pod = readings.values().find_map(|r| match r {
            Reading::PerPod(values) => Some(values),
            _ => None,
        });
        if let (Some(values), Ok(mut shares)) = (per_pod, self.shares.lock()) {
            let total: f64 = values.values().sum();
            *shares = values
                .iter()
                .map(|(id, v)| (id.clone(), if total > 0.0 { v / total } else { 0.0 }))
                .collect();
        }
    }

    /// Scales to `replicas` now. Outside the policy's bounds it is refused
    /// unless `force`.
    pub async fn manual(&self, replicas: u32, force: bool) -> Result<ScalingEvent> {
        let (min, max) = {
            let engine = self.engine()?;
            (engine.policy().min_replicas, engine.policy().max_replicas)
        };
        if !force && !(min..=max).contains(&replicas) {
            return Err(Error::invalid(
                "replicas",
                format!(
                    "{replicas} is outside min_replicas {min} to max_replicas {max}; send \"force\": true to override"
                ),
            ));
        }
        let current = self.manager.replicas().await?;
        self.manager.scale_to(replicas).await?;
        self.engine()?.record_scale(self.now_s(), current, replicas);
        if let Ok(mut d) = self.desired.lock() {
            *d = replicas;
        }
        let e = ScalingEvent {
            at_ms: now_ms(),
            kind: "manual".to_owned(),
            from: current,
            to: replicas,
            reason: if force {
                "manual scale (forced past the bounds)".to_owned()
            } else {
                "manual scale".to_owned()
            },
            metrics: Vec::new(),
        };
        if let Ok(mut last) = self.last.lock() {
            *last = Some(e.clone());
        }
        Ok(e)
    }

    /// Replaces the policy (validated); history and rate limits carry on.
    pub fn set_policy(&self, policy: ScalingPolicy) -> Result<()> {
        self.engine()?.set_policy(policy)
    }

    /// The policy in force.
    pub fn policy(&self) -> Result<ScalingPolicy> {
        Ok(self.engine()?.policy().clone())
    }

    /// What the controller knows now.
    pub async fn status(&self) -> Result<ControllerStatus> {
        let instances = self.manager.instances().await?;
        let current_replicas = self.manager.replicas().await?;
        let shares = self.shares.lock().map(|s| s.clone()).unwrap_or_default();
        let (policy, conditions, history, forecast) = {
            let engine = self.engine()?;
            (
                engine.policy().clone(),
                engine.conditions().to_vec(),
                engine.history_summary(),
                engine.forecast_status(),
            )
        };
        Ok(ControllerStatus {
            current_replicas,
            desired_replicas: self.desired.lock().map(|d| *d).unwrap_or(0),
            last_decision: self.last.lock().ok().and_then(|l| l.clone()),
            instances: instances
                .into_iter()
                .map(|i| {
                    let load_share = shares.iter().find(|(id, _)| *id == i.id).map(|(_, s)| *s);
                    InstanceStatus {
                        instance: i,
                        load_share,
                    }
                })
                .collect(),
            manager: self.manager.describe(),
            policy,
            conditions,
            history,
            forecast,
        })
    }

    /// Evaluates every `period` until `stop` turns true, handing each
    /// decision to `on_event` (errors are reported as events too).
    pub async fn run(
        self: Arc<Self>,
        period: Duration,
        mut stop: watch::Receiver<bool>,
        on_event: impl Fn(ScalingEvent) + Send + Sync + 'static,
    ) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            match self.tick().await {
                Ok(e) => on_event(e),
                Err(err) => on_event(ScalingEvent {
                    at_ms: now_ms(),
                    kind: "error".to_owned(),
                    from: 0,
                    to: 0,
                    reason: err.to_string(),
                    metrics: Vec::new(),
                }),
            }
        }
    }
}
