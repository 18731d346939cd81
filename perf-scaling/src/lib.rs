//! # perf-scaling
//!
//! Autoscaling with the semantics operators already trust: the Kubernetes
//! HorizontalPodAutoscaler's replica calculation ([`resource_utilization_replicas`],
//! [`pod_average_replicas`], [`value_replicas`], [`average_value_replicas`]) and
//! its controller ([`Autoscaler`]: bounds, the maximum over metrics,
//! stabilization windows, `Pods`/`Percent` rate policies with `selectPolicy`),
//! for a [`ScalingPolicy`] written as an HPA would be, or a simple
//! [`StepRule`] mapped onto the same engine.
//!
//! ```
//! use std::collections::BTreeMap;
//! use perf_scaling::{Autoscaler, Observation, Pod, Reading, ScalingPolicy};
//! let policy: ScalingPolicy = serde_json::from_str(r#"{"min_replicas": 2, "max_replicas": 50,
//!     "metrics": [{"name": "cpu", "kind": "resource", "target": {"utilization": 50}}],
//!     "behavior": {}}"#)?;
//! let mut hpa = Autoscaler::new(policy)?;
//! let pods: Vec<Pod> = (0..4).map(|i| Pod::running(format!("p{i}"), Some(1000.0))).collect();
//! let cpu: BTreeMap<String, f64> = (0..4).map(|i| (format!("p{i}"), 900.0)).collect();
//! let seen = Observation { pods, readings: [("cpu".to_owned(), Reading::PerPod(cpu))].into() };
//! let d = hpa.decide(0.0, 4, &seen);
//! assert_eq!(d.to, 8); // 90 % against 50 %: 7.2 -> 8, within the default +100 % per 15 s
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// The Rust blocks of `docs/scaling.md`, compiled and run.
#[cfg(doctest)]
#[doc = include_str!("../../docs/scaling.md")]
struct ScalingGuide;

mod advice;
mod balance;
mod controller;
mod decision;
mod error;
mod forecast;
mod instances;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod policy;
mod replicas;
mod simulate;
mod sources;

pub use advice::policy_advice;
pub use balance::{Backend, Clock, LoadBalancer, Pick, Share, Strategy, coefficient_of_variation};
pub use controller::{
    ControllerStatus, HistorySummary, InstanceStatus, ScalingController, ScalingEvent,
};
pub use decision::{
    Autoscaler, ConditionReason, ConditionType, Decision, History, HpaCondition,
    LEGACY_DOWNSCALE_STABILIZATION_S, LEGACY_SCALE_UP_FACTOR, LEGACY_SCALE_UP_MINIMUM,
    MAX_HISTORY_ENTRIES, MetricOutcome, Observation, Reading, TimedReplicas,
};
pub use error::{Error, Result};
pub use forecast::{
    DEMAND_BUCKET_S, DemandHistory, ForecastModel, ForecastPoint, ForecastStatus, MAX_CLOCK_S,
    MAX_DEMAND_BUCKETS, Prediction, PredictiveMode, PredictiveSettings, PredictiveSettingsBuilder,
    backtest_forecast,
};
pub use instances::{
    Instance, InstanceManager, LocalProcessConfig, LocalProcessConfigBuilder, LocalProcesses,
};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{KubernetesConfig, KubernetesConfigBuilder, KubernetesDeployment};
pub use policy::{
    Behavior, MetricKind, MetricSpec, MetricTarget, RatePolicy, RatePolicyKind, ScalingPolicy,
    ScalingPolicyBuilder, ScalingRules, SelectPolicy, StepRule, ToleranceOverride,
};
pub use replicas::{
    MAX_REPLICA_COUNT, MetricRecommendation, Pod, PodPhase, Tolerance, average_value_replicas,
    pod_average_replicas, ready_pods, resource_utilization_replicas, value_replicas,
};
pub use simulate::{
    MAX_SIMULATION_STEPS, MAX_SIMULATION_WORK, MAX_TRACE_SECONDS, PolicyComparison,
    SimulationReport, SimulationSettings, SimulationSettingsBuilder, SimulationStep, TracePoint,
    compare_reactive_predictive, parse_trace_csv, simulate, simulation_size,
};
pub use sources::{InstanceScraper, MetricsSource, PrometheusQuery, ScrapedSeries, SeriesKind};
