//! Logs (tracing) and Prometheus metrics: the recorder, each request's count
//! and latency by route, method and status (recorded by
//! [`crate::pipeline`]), and the host gauges the sampler publishes.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use metrics::gauge;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;
use crate::monitor::HostSample;

/// Request latency buckets, in seconds: 100 µs to 10 s (the same for every
/// latency histogram the server publishes).
const LATENCY_BUCKETS: &[f64] = perf_core::prometheus::LATENCY_BUCKETS_SECONDS;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub(crate) fn prometheus() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only ours");
        } else {
            describe_metrics();
        }
        handle
    })
}

/// HELP text and unit of every series written through the `metrics`
/// recorder (`promtool check metrics` wants one on each); the request
/// series rendered by [`render_requests`] carry their own.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        "perf_event_streams_open",
        Unit::Count,
        "Server-Sent Events streams open now (live test and host events)."
    );
    describe_gauge!(
        "perf_event_streams_max",
        Unit::Count,
        "The cap on open event streams (max_event_streams); beyond it a subscription gets 503."
    );
    describe_counter!(
        "perf_event_streams_dropped_total",
        Unit::Count,
        "Event streams dropped for falling behind (a slow or stalled client)."
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident set size of this process."
    );
    describe_gauge!(
        "process_open_fds",
        Unit::Count,
        "Open file descriptors of this process."
    );
    describe_gauge!(
        "process_cpu_utilization_ratio",
        "Share of the host's CPU time (all cores) this process used over the last sample interval, 0 to 1."
    );
    describe_gauge!(
        "host_cpu_utilization_ratio",
        "Share of the host's CPU time busy over the last sample interval, 0 to 1."
    );
    describe_gauge!(
        "host_memory_available_bytes",
        Unit::Bytes,
        "Memory the host can still give without swapping (MemAvailable)."
    );
    describe_gauge!(
        "host_tcp_connections",
        Unit::Count,
        "The host's TCP connections, by state (established, time_wait)."
    );
    describe_gauge!(
        "jemalloc_allocated_bytes",
        Unit::Bytes,
        "Bytes the application holds through jemalloc."
    );
    describe_gauge!(
        "jemalloc_active_bytes",
        Unit::Bytes,
        "Bytes in jemalloc's active pages."
    );
    describe_gauge!(
        "jemalloc_resident_bytes",
        Unit::Bytes,
        "Bytes jemalloc keeps resident (its metadata included)."
    );
    describe_gauge!(
        "jemalloc_retained_bytes",
        Unit::Bytes,
        "Virtual memory jemalloc retains for reuse, not returned to the system."
    );
    describe_gauge!(
        "jemalloc_fragmentation_bytes",
        Unit::Bytes,
        "Active minus allocated bytes: space lost to fragmentation."
    );
    describe_gauge!(
        "memory_budget_limit_bytes",
        Unit::Bytes,
        "The memory budget's limit."
    );
    describe_gauge!(
        "memory_budget_used_ratio",
        "Share of the memory budget in use, 0 to 1 (above 1 when over it)."
    );
    describe_gauge!(
        "memory_pressure",
        "Memory budget pressure: 0 normal (under the soft mark), 1 soft (relieving), 2 hard (refusing new work)."
    );
    describe_counter!(
        "memory_budget_refused_total",
        Unit::Count,
        "Requests refused (503) because the memory budget was over its hard mark."
    );
    describe_counter!(
        "memory_budget_reliefs_total",
        Unit::Count,
        "Times the budget asked the caches to shed memory."
    );
    describe_gauge!(
        "memory_leak_suspected",
        "1 while the leak detector sees steady growth (leak or fragmentation), else 0."
    );
    describe_gauge!(
        "scaling_replicas",
        Unit::Count,
        "The autoscaler's replicas, by state (current, desired, ready)."
    );
    describe_counter!(
        "scaling_events_total",
        Unit::Count,
        "Scaling decisions, by kind (auto, manual) and direction (up, down, none)."
    );
    describe_counter!(
        "http_handler_panics_total",
        Unit::Count,
        "Requests whose handler panicked (answered 500)."
    );
    perf_memory::describe_cache_metrics();
    perf_db::describe_pool_metrics();
}

/// Installs the tracing subscriber (text or JSON lines on stderr).
pub(crate) fn init_logging(format: LogFormat, filter: &str) {
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

/// One (route, method, status)'s requests: a count per latency bucket (the
/// last is `+Inf`), the sum of latencies in nanoseconds. Written by one
/// worker thread only (relaxed loads and stores, no locked instruction),
/// read by the renderer when `/metrics` is scraped.
/// (The metrics crate's exporter kept every histogram sample in a queue
/// until the next scrape: 7 % of `/health`'s CPU, and memory that grew
/// between scrapes.)
#[derive(Debug, Default)]
struct RequestSeries {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl RequestSeries {
    fn record(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
        // One writer per series (its worker thread): a load and a store, not
        // a locked read-modify-write; the renderer only loads.
        if let Some(b) = self.buckets.get(bucket) {
            b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let sum = self.sum_nanos.load(Ordering::Relaxed).saturating_add(nanos);
        self.sum_nanos.store(sum, Ordering::Relaxed);
    }
}

/// Every thread's series, for rendering: (route, method, status, series).
/// Routes are the server's own patterns (plus `unmatched` and `unknown`),
/// methods the nine standard ones or `OTHER`, statuses what handlers send:
/// the label sets are bounded whatever clients send.
type Registry = Vec<(String, &'static str, u16, std::sync::Arc<RequestSeries>)>;
static SERIES: OnceLock<std::sync::Mutex<Registry>> = OnceLock::new();

/// Each worker thread records into series of its own, found in a map of its
/// own: no lock and no cache line shared with the other workers on a
/// request's path (the rendering sums the threads' series).
/// Hashed with foldhash, not SipHash: the keys are the server's own route
/// patterns (a bounded set, not chosen by clients).
type ThreadSeries = std::collections::HashMap<
    String,
    Vec<(&'static str, u16, std::sync::Arc<RequestSeries>)>,
    foldhash::fast::FixedState,
>;
thread_local! {
    static MINE: std::cell::RefCell<ThreadSeries> = const {
        std::cell::RefCell::new(ThreadSeries::with_hasher(foldhash::fast::FixedState::with_seed(0)))
    };
}

/// A method's label: the standard ones by name, any other `OTHER` (a
/// made-up method must not make a new series).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Counts and times one request under its route pattern (so
/// `/performance/metrics/snapshots/{id}` is one series, not one per id).
pub(crate) fn record(
    route: &str,
    method: &actix_web::http::Method,
    status: u16,
    elapsed: std::time::Duration,
) {
    let method = method_label(method);
    MINE.with_borrow_mut(|mine| {
        if let Some(list) = mine.get(route)
            && let Some((_, _, series)) = list.iter().find(|(m, s, _)| *m == method && *s == status)
        {
            series.record(elapsed);
            return;
        }
        let series = std::sync::Arc::new(RequestSeries::default());
        series.record(elapsed);
        if let Ok(mut all) = SERIES.get_or_init(Default::default).lock() {
            all.push((
                route.to_owned(),
                method,
                status,
                std::sync::Arc::clone(&series),
            ));
        }
        mine.entry(route.to_owned())
            .or_default()
            .push((method, status, series));
    });
}

/// The whole `/metrics` text: the recorder's series, the cgroup's (newest
/// sample), the request histograms, the pools' wait and hold histograms and
/// the load tests.
pub(crate) fn render(
    cgroup: Option<&perf_core::cgroup::CgroupSample>,
    pools: &[(&'static str, perf_db::PoolLatencies)],
    tests: &crate::test_runner::TestRunner,
) -> String {
    let mut out = prometheus().render();
    if let Some(cgroup) = cgroup {
        out.push_str(&cgroup.render_prometheus());
    }
    out.push_str(&render_requests());
    if !pools.is_empty() {
        out.push_str(&perf_db::render_pool_latencies(pools));
    }
    out.push_str(&tests.render_prometheus());
    out
}

/// `http_requests_total` and `http_request_duration_seconds` in the text
/// exposition format (appended to the exporter's output by `/metrics`).
pub(crate) fn render_requests() -> String {
    use perf_core::prometheus::{write_bucket_counts, write_header, write_sample};
    // The threads' series of one (route, method, status) summed.
    let mut summed: std::collections::BTreeMap<(String, &'static str, u16), (Vec<u64>, u64)> =
        std::collections::BTreeMap::new();
    if let Some(all) = SERIES.get()
        && let Ok(all) = all.lock()
    {
        for (route, method, status, series) in all.iter() {
            let (counts, sum) = summed
                .entry((route.clone(), method, *status))
                .or_insert_with(|| (vec![0; LATENCY_BUCKETS.len() + 1], 0));
            for (c, b) in counts.iter_mut().zip(&series.buckets) {
                *c += b.load(Ordering::Relaxed);
            }
            *sum = sum.saturating_add(series.sum_nanos.load(Ordering::Relaxed));
        }
    }
    let mut out = String::new();
    write_header(
        &mut out,
        "http_requests_total",
        "counter",
        "Requests answered, by route pattern, method and status.",
    );
    for ((route, method, status), (counts, _)) in &summed {
        let total: u64 = counts.iter().sum();
        let status = status.to_string();
        let labels = [
            ("method", *method),
            ("route", route.as_str()),
            ("status", &status),
        ];
        write_sample(&mut out, "http_requests_total", &labels, total as f64);
    }
    write_header(
        &mut out,
        "http_request_duration_seconds",
        "histogram",
        "Time from a request's arrival at the middleware to its response, by route pattern, method and status.",
    );
    for ((route, method, status), (counts, sum_nanos)) in &summed {
        let status = status.to_string();
        let labels = [
            ("method", *method),
            ("route", route.as_str()),
            ("status", &status),
        ];
        write_bucket_counts(
            &mut out,
            "http_request_duration_seconds",
            &labels,
            counts,
            *sum_nanos as f64 / 1e9,
        );
    }
    out
}

/// Publishes the newest host sample as gauges.
pub(crate) fn publish_host_gauges(sample: &HostSample) {
    let s = &sample.system;
    gauge!("process_resident_memory_bytes").set(s.memory.process_rss_bytes as f64);
    gauge!("process_open_fds").set(s.memory.process_open_fds as f64);
    // A share of all cores, as the host figure: 0 to 1 whatever the core count.
    let cores = s.cpu.cores.max(1) as f64;
    gauge!("process_cpu_utilization_ratio").set(s.cpu.process_cpu_percent / 100.0 / cores);
    gauge!("host_cpu_utilization_ratio").set(s.cpu.utilization_percent / 100.0);
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
pub(crate) fn publish_memory_watch(watch: &crate::memory::MemoryWatch) {
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

/// The event streams: open, the cap, and those dropped as too slow.
pub(crate) fn publish_event_streams(slots: &crate::events::StreamSlots) {
    gauge!("perf_event_streams_open").set(slots.open() as f64);
    gauge!("perf_event_streams_max").set(slots.max() as f64);
    metrics::counter!("perf_event_streams_dropped_total").absolute(slots.dropped());
}

/// The autoscaler's replicas: `current`, `desired` and `ready`.
pub(crate) fn publish_replicas(status: &perf_scaling::ControllerStatus) {
    let ready = status.instances.iter().filter(|i| i.instance.ready).count();
    gauge!("scaling_replicas", "state" => "current").set(f64::from(status.current_replicas));
    gauge!("scaling_replicas", "state" => "desired").set(f64::from(status.desired_replicas));
    gauge!("scaling_replicas", "state" => "ready").set(ready as f64);
}

/// Counts a scaling decision by kind (`auto`, `manual`) and direction
/// (`up`, `down`, `none`).
pub(crate) fn count_scaling_event(event: &perf_scaling::ScalingEvent) {
    let direction = match event.to.cmp(&event.from) {
        std::cmp::Ordering::Greater => "up",
        std::cmp::Ordering::Less => "down",
        std::cmp::Ordering::Equal => "none",
    };
    metrics::counter!("scaling_events_total", "kind" => event.kind.clone(), "direction" => direction)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::Method;
    use std::time::Duration;

    #[test]
    fn requests_render_as_a_prometheus_counter_and_histogram_with_bounded_labels() {
        let route = "/test/render/{id}";
        record(route, &Method::GET, 200, Duration::from_micros(300));
        record(route, &Method::GET, 200, Duration::from_micros(500));
        record(route, &Method::GET, 200, Duration::from_secs(30));
        record(route, &Method::GET, 404, Duration::from_micros(50));
        let odd = Method::from_bytes(b"BREW").unwrap();
        record(route, &odd, 200, Duration::from_micros(50));
        let text = render_requests();
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        };
        let labels = r#"method="GET",route="/test/render/{id}",status="200""#;
        assert_eq!(line(&format!("http_requests_total{{{labels}}}")), "3");
        // 300 µs and 500 µs are within le=0.0005 (inclusive); 30 s only in +Inf.
        assert_eq!(
            line(&format!(
                r#"http_request_duration_seconds_bucket{{{labels},le="0.00025"}}"#
            )),
            "0"
        );
        assert_eq!(
            line(&format!(
                r#"http_request_duration_seconds_bucket{{{labels},le="0.0005"}}"#
            )),
            "2"
        );
        assert_eq!(
            line(&format!(
                r#"http_request_duration_seconds_bucket{{{labels},le="10"}}"#
            )),
            "2"
        );
        assert_eq!(
            line(&format!(
                r#"http_request_duration_seconds_bucket{{{labels},le="+Inf"}}"#
            )),
            "3"
        );
        assert_eq!(
            line(&format!("http_request_duration_seconds_count{{{labels}}}")),
            "3"
        );
        assert_eq!(
            line(&format!("http_request_duration_seconds_sum{{{labels}}}")),
            "30.0008"
        );
        // A made-up method is OTHER, not a series of its own.
        assert!(text.contains(r#"method="OTHER",route="/test/render/{id}",status="200""#));
        assert!(!text.contains("BREW"));
    }
}
