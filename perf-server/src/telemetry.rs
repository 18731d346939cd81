//! Logs (tracing) and Prometheus metrics: the recorder, each request's count
//! and latency by route, method and status (recorded by
//! [`crate::pipeline`]), and the host gauges the sampler publishes.

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;
use crate::monitor::HostSample;

/// Request latency buckets, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".to_owned()),
                LATENCY_BUCKETS,
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only ours");
        }
        handle
    })
}

/// Installs the tracing subscriber (text or JSON lines on stderr).
pub fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The counter and histogram of one (route, method, status), resolved once:
/// the metrics registry is not searched with freshly built labels on every
/// request.
type Handles = (metrics::Counter, metrics::Histogram);

/// Handles by route, then by (method, status): a route has few of those.
type HandleMap = std::collections::HashMap<String, Vec<(&'static str, u16, Handles)>>;
static HANDLES: OnceLock<std::sync::RwLock<HandleMap>> = OnceLock::new();

/// A method's name without allocating for the standard ones.
fn method_name(method: &actix_web::http::Method) -> std::borrow::Cow<'static, str> {
    use actix_web::http::Method;
    let known: Option<&'static str> = match *method {
        Method::GET => Some("GET"),
        Method::POST => Some("POST"),
        Method::PUT => Some("PUT"),
        Method::DELETE => Some("DELETE"),
        Method::HEAD => Some("HEAD"),
        Method::OPTIONS => Some("OPTIONS"),
        Method::PATCH => Some("PATCH"),
        Method::TRACE => Some("TRACE"),
        Method::CONNECT => Some("CONNECT"),
        _ => None,
    };
    known.map_or_else(|| method.as_str().to_owned().into(), Into::into)
}

/// The handles of a (route, method, status), registered on first use.
fn handles(route: &str, method: &actix_web::http::Method, status: u16) -> Option<Handles> {
    let map = HANDLES.get_or_init(Default::default);
    let name = method_name(method);
    if let Ok(read) = map.read()
        && let Some(list) = read.get(route)
        && let Some((_, _, h)) = list.iter().find(|(m, s, _)| *m == name && *s == status)
    {
        return Some(h.clone());
    }
    // Only standard methods are kept (an attacker's made-up methods would
    // grow the map); others are recorded without caching.
    let status_text = actix_web::http::StatusCode::from_u16(status)
        .map_or_else(|_| status.to_string(), |s| s.as_str().to_owned());
    let labels = [
        ("method", name.to_string()),
        ("route", route.to_owned()),
        ("status", status_text),
    ];
    let h = (
        counter!("http_requests_total", &labels),
        histogram!("http_request_duration_seconds", &labels),
    );
    if let std::borrow::Cow::Borrowed(m) = name
        && let Ok(mut write) = map.write()
    {
        write
            .entry(route.to_owned())
            .or_default()
            .push((m, status, h.clone()));
    }
    Some(h)
}

/// Counts and times one request under its route pattern (so
/// `/performance/metrics/snapshots/{id}` is one series, not one per id).
pub(crate) fn record(
    route: &str,
    method: &actix_web::http::Method,
    status: u16,
    elapsed: std::time::Duration,
) {
    if let Some((count, latency)) = handles(route, method, status) {
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    }
}

/// Publishes the newest host sample as gauges.
pub fn publish_host_gauges(sample: &HostSample) {
    let s = &sample.system;
    gauge!("process_resident_memory_bytes").set(s.memory.process_rss_bytes as f64);
    gauge!("process_open_fds").set(s.memory.process_open_fds as f64);
    gauge!("process_cpu_percent").set(s.cpu.process_cpu_percent);
    gauge!("host_cpu_utilization_percent").set(s.cpu.utilization_percent);
    gauge!("host_memory_available_bytes").set(s.memory.host_available_bytes as f64);
    gauge!("host_tcp_connections", "state" => "established").set(s.network.tcp.established as f64);
    gauge!("host_tcp_connections", "state" => "time_wait").set(s.network.tcp.time_wait as f64);
    if let Some(a) = &sample.allocator {
        gauge!("jemalloc_allocated_bytes").set(a.allocated_bytes as f64);
        gauge!("jemalloc_active_bytes").set(a.active_bytes as f64);
        gauge!("jemalloc_resident_bytes").set(a.resident_bytes as f64);
        gauge!("jemalloc_retained_bytes").set(a.retained_bytes as f64);
        gauge!("jemalloc_fragmentation_bytes").set(a.fragmentation_bytes as f64);
    }
    prometheus().run_upkeep();
}

/// Publishes the memory budget and the leak verdict: `memory_budget_limit_bytes`,
/// `memory_budget_used_ratio`, `memory_pressure` (0 normal, 1 soft, 2 hard),
/// `memory_budget_refused_total`, `memory_budget_reliefs_total` and
/// `memory_leak_suspected` (1 on a leak or fragmentation verdict).
pub fn publish_memory_watch(watch: &crate::memory::MemoryWatch) {
    let budget = watch.budget();
    gauge!("memory_budget_limit_bytes").set(budget.budget.limit.bytes() as f64);
    gauge!("memory_budget_used_ratio").set(budget.used_fraction);
    gauge!("memory_pressure").set(budget.pressure as u8 as f64);
    metrics::counter!("memory_budget_refused_total").absolute(budget.refused);
    metrics::counter!("memory_budget_reliefs_total").absolute(budget.reliefs);
    let leak = watch.leak();
    let suspected = matches!(
        leak.status,
        perf_memory::LeakStatus::Leak | perf_memory::LeakStatus::Fragmentation
    );
    gauge!("memory_leak_suspected").set(if suspected { 1.0 } else { 0.0 });
}

/// The autoscaler's replicas: `current`, `desired` and `ready`.
pub fn publish_replicas(status: &perf_scaling::ControllerStatus) {
    let ready = status.instances.iter().filter(|i| i.instance.ready).count();
    gauge!("scaling_replicas", "state" => "current").set(f64::from(status.current_replicas));
    gauge!("scaling_replicas", "state" => "desired").set(f64::from(status.desired_replicas));
    gauge!("scaling_replicas", "state" => "ready").set(ready as f64);
}

/// Counts a scaling decision by kind (`auto`, `manual`) and direction
/// (`up`, `down`, `none`).
pub fn count_scaling_event(event: &perf_scaling::ScalingEvent) {
    let direction = match event.to.cmp(&event.from) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => "none",
    };
    metrics::counter!("scaling_events_total", "kind" => event.kind.clone(), "direction" => direction)
        .increment(1);
}
