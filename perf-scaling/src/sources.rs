//! Where the autoscaler's readings come from: a Prometheus query endpoint
//! (for totals such as Istio's request rate), or each instance's own
//! Prometheus text endpoint (perf-server's `/metrics`, an Envoy sidecar's
//! `/stats/prometheus`), read per instance and turned into rates for
//! counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decision::Reading;
use crate::instances::Instance;
use crate::{Error, Result};

/// Gives the autoscaler its readings, by metric name.
#[async_trait::async_trait]
pub trait MetricsSource: Send + Sync {
    /// Readings for the current instances.
    async fn read(&self, instances: &[Instance]) -> BTreeMap<String, Reading>;
}

/// The client of the autoscaler's reads: plain http, answers up to 16 MiB
/// within `timeout`.
pub(crate) fn reader(timeout: Duration) -> perf_core::http_client::ControlClient {
    perf_core::http_client::ControlClient::new(
        None,
        perf_core::http_client::Limits::new(timeout, 16 << 20).without_keep_alive(),
    )
}

/// `GET http://{address}{path_and_query}` with `client`; the body of a 200
/// answer.
pub(crate) async fn http_get(
    client: &perf_core::http_client::ControlClient,
    address: &str,
    path_and_query: &str,
) -> Result<String> {
    let answer = client
        .get(&format!("http://{address}{path_and_query}"))
        .await
        .map_err(|e| Error::NoMetrics(e.to_string()))?;
    if answer.status != 200 {
        return Err(Error::NoMetrics(format!(
            "{address}{path_and_query}: HTTP {}",
            answer.status
        )));
    }
    Ok(answer.text())
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sums the values of a Prometheus `/api/v1/query` instant-vector answer.
pub(crate) fn sum_instant_vector(body: &str) -> Result<f64> {
    let v: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| Error::NoMetrics(format!("not a Prometheus answer: {e}")))?;
    if v["status"] != "success" {
        return Err(Error::NoMetrics(format!("Prometheus said: {}", v["error"])));
    }
    let result = &v["data"]["result"];
    let values: Vec<f64> = match v["data"]["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()))
                    .filter(|v| v.is_finite())
                    .collect()
            })
            .unwrap_or_default(),
        Some("scalar") => result[1]
            .as_str()
            .and_then(|x| x.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .into_iter()
            .collect(),
        other => {
            return Err(Error::NoMetrics(format!(
                "unexpected result type {other:?}"
            )));
        }
    };
    if values.is_empty() {
        return Err(Error::NoMetrics("the query returned no series".to_owned()));
    }
    Ok(values.iter().sum())
}

/// One value from a Prometheus server's query API, e.g.
/// `sum(rate(istio_requests_total{destination_workload="api"}[1m]))`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PrometheusQuery {
    /// The metric name the policy uses for this reading.
    pub metric: String,
    /// `host:port` of the Prometheus server (plain HTTP).
    pub address: String,
    /// The PromQL expression; its series are summed.
    pub query: String,
}

#[async_trait::async_trait]
impl MetricsSource for PrometheusQuery {
    async fn read(&self, _instances: &[Instance]) -> BTreeMap<String, Reading> {
        let path = format!("/api/v1/query?query={}", percent_encode(&self.query));
        let client = reader(Duration::from_secs(5));
        let reading = match http_get(&client, &self.address, &path).await {
            Ok(body) => match sum_instant_vector(&body) {
                Ok(v) => Reading::Single(v),
                Err(e) => Reading::Unavailable(e.to_string()),
            },
            Err(e) => Reading::Unavailable(e.to_string()),
        };
        [(self.metric.clone(), reading)].into()
    }
}

/// How a scraped series becomes a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// The value as it is (Envoy's `envoy_cluster_upstream_rq_active`).
    Gauge,
    /// Its increase per second between two reads (`istio_requests_total`,
    /// perf-server's `http_requests_total`).
    Counter,
}

/// A series read from each instance's Prometheus text endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScrapedSeries {
    /// The metric name the policy uses for this reading.
    pub metric: String,
    /// Path of the text endpoint (`/metrics`, or Envoy's `/stats/prometheus`).
    pub path: String,
    /// Read this port instead of the instance's (a sidecar's admin port).
    #[serde(default)]
    pub port: Option<u16>,
    /// The series name; every line of it (all label sets) is summed.
    pub series: String,
    /// Only samples with these labels, written as inside PromQL's braces:
    /// `cluster_name="api"` or `cluster_name="api", env="prod"` (exact
    /// equality of each named label; other labels may be anything).
    #[serde(default)]
    pub label_filter: Option<String>,
    /// Gauge or counter.
    pub kind: SeriesKind,
}

impl ScrapedSeries {
    /// Checks the series name and the label filter.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `series` or `label_filter`.
    pub fn validate(&self) -> Result<()> {
        self.matchers().map(|_| ())
    }

    /// The label filter as exact matchers (none without a filter).
    fn matchers(&self) -> Result<Vec<(String, String)>> {
        if !perf_core::prometheus::is_metric_name(&self.series) {
            return Err(Error::Invalid {
                field: "series".to_owned(),
                message: format!(
                    "{:?} is not a Prometheus series name ([a-zA-Z_:][a-zA-Z0-9_:]*)",
                    self.series
                ),
            });
        }
        self.label_filter
            .as_deref()
            .map_or(Ok(Vec::new()), perf_core::prometheus::label_matchers)
            .map_err(|e| Error::Invalid {
                field: "label_filter".to_owned(),
                message: e.to_string(),
            })
    }
}

/// Sums the finite values of a series in Prometheus text format over its
/// samples whose labels match `matchers` exactly; `None` when it has none.
pub(crate) fn sum_series(text: &str, series: &str, matchers: &[(String, String)]) -> Option<f64> {
    let mut found = false;
    let mut total = 0.0;
    for sample in perf_core::prometheus::samples(text) {
        if sample.name == series && sample.matches(matchers) && sample.value.is_finite() {
            total += sample.value;
            found = true;
        }
    }
    found.then_some(total)
}

/// Reads one series from every ready instance.
#[derive(Debug)]
pub struct InstanceScraper {
    config: ScrapedSeries,
    last: Mutex<BTreeMap<String, (Instant, f64)>>,
    client: perf_core::http_client::ControlClient,
}

impl InstanceScraper {
    /// A scraper for `config` (each scrape within 2 s).
    pub fn new(config: ScrapedSeries) -> Self {
        Self {
            config,
            last: Mutex::new(BTreeMap::new()),
            client: reader(Duration::from_secs(2)),
        }
    }
}

#[async_trait::async_trait]
impl MetricsSource for InstanceScraper {
    async fn read(&self, instances: &[Instance]) -> BTreeMap<String, Reading> {
        let matchers = match self.config.matchers() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the scraped series is not valid; no readings");
                return BTreeMap::new();
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for instance in instances.iter().filter(|i| i.ready) {
            let Some(address) = instance.address.clone() else {
                continue;
            };
            let address = match self.config.port {
                Some(port) => format!(
                    "{}:{port}",
                    address
                        .rsplit_once(':')
                        .map_or(address.as_str(), |(h, _)| h)
                ),
                None => address,
            };
            let path = self.config.path.clone();
            let id = instance.id.clone();
            let client = self.client.clone();
            tasks.spawn(async move { (id, http_get(&client, &address, &path).await) });
        }
        let now = Instant::now();
        let mut values = BTreeMap::new();
        let mut errors = Vec::new();
        let Ok(mut last) = self.last.lock().map(|g| g.clone()) else {
            return BTreeMap::new();
        };
        while let Some(Ok((id, body))) = tasks.join_next().await {
            let sum = body.map(|b| sum_series(&b, &self.config.series, &matchers));
            match sum {
                Ok(Some(v)) => match self.config.kind {
                    SeriesKind::Gauge => {
                        values.insert(id, v);
                    }
                    SeriesKind::Counter => {
                        if let Some((at, before)) = last.get(&id) {
                            let dt = now.duration_since(*at).as_secs_f64();
                            if dt > 0.0 && v >= *before {
                                values.insert(id.clone(), (v - before) / dt);
                            }
                        }
                        last.insert(id, (now, v));
                    }
                },
                Ok(None) => errors.push(format!("{id}: no series {}", self.config.series)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if let Ok(mut kept) = self.last.lock() {
            last.retain(|id, _| instances.iter().any(|i| &i.id == id));
            *kept = last;
        }
        let reading = if values.is_empty() {
            Reading::Unavailable(if errors.is_empty() {
                "no reading yet (a counter needs two scrapes)".to_owned()
            } else {
                errors.join("; ")
            })
        } else {
            Reading::PerPod(values)
        };
        [(self.config.metric.clone(), reading)].into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_summed_by_name_and_filter() {
        let text = "# HELP x\nhttp_requests_total{route=\"/a\"} 10\nhttp_requests_total{route=\"/b\"} 5\nhttp_requests_total_other 99\nenvoy_cluster_upstream_rq_active{cluster_name=\"api\"} 7\nenvoy_cluster_upstream_rq_active{cluster_name=\"db\"} 3\n";
        let api = perf_core::prometheus::label_matchers("cluster_name=\"api\"").unwrap();
        assert_eq!(sum_series(text, "http_requests_total", &[]), Some(15.0));
        assert_eq!(
            sum_series(text, "envoy_cluster_upstream_rq_active", &api),
            Some(7.0)
        );
        assert_eq!(sum_series(text, "missing", &[]), None);
        assert_eq!(sum_series("up 1\n", "up", &[]), Some(1.0));
    }

    #[test]
    fn a_label_filter_matches_a_label_exactly_not_a_substring_of_the_line() {
        // Each of these lines contains the text `cluster_name="api"`, and
        // none has that label with that value.
        let text = concat!(
            "rq{cluster_name=\"api-canary\"} 100\n",
            "rq{other_cluster_name=\"api\"} 200\n",
            "rq{path=\"/x?cluster_name=\\\"api\\\"\"} 400\n",
            "rq{cluster_name=\"api\",zone=\"b\"} 7\n",
            "rq{zone=\"a\", cluster_name=\"api\"} 3 1700000000000\n",
            "rq{cluster_name=\"api\"} NaN\n",
            "rq{cluster_name=\"api\"} 5 garbage\n",
        );
        let api = perf_core::prometheus::label_matchers("cluster_name=\"api\"").unwrap();
        assert_eq!(sum_series(text, "rq", &api), Some(10.0));
        let two =
            perf_core::prometheus::label_matchers("zone=\"b\", cluster_name=\"api\"").unwrap();
        assert_eq!(sum_series(text, "rq", &two), Some(7.0));
    }

    #[test]
    fn a_bad_series_or_label_filter_is_refused_by_name() {
        let series = |series: &str, filter: Option<&str>| ScrapedSeries {
            metric: "rps".into(),
            path: "/metrics".into(),
            port: None,
            series: series.into(),
            label_filter: filter.map(Into::into),
            kind: SeriesKind::Counter,
        };
        assert!(
            series("http_requests_total", Some("route=\"/a\""))
                .validate()
                .is_ok()
        );
        for (s, f, field) in [
            ("http requests", None, "series"),
            ("x{a=\"b\"}", None, "series"),
            ("", None, "series"),
            ("a\nb", None, "series"),
            ("rq", Some("cluster_name=~\"api.*\""), "label_filter"),
            ("rq", Some("cluster_name=api"), "label_filter"),
            ("rq", Some("cluster_name=\"api"), "label_filter"),
            ("rq", Some(""), "label_filter"),
        ] {
            match series(s, f).validate() {
                Err(Error::Invalid { field: got, .. }) => assert_eq!(got, field, "{s} {f:?}"),
                other => panic!("{s} {f:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn prometheus_answers_are_summed_or_explained() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"12.5"]},{"metric":{},"value":[1,"7.5"]}]}}"#;
        assert_eq!(sum_instant_vector(ok).unwrap(), 20.0);
        let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(
            sum_instant_vector(empty)
                .unwrap_err()
                .to_string()
                .contains("no series")
        );
        let bad = r#"{"status":"error","error":"parse error"}"#;
        assert!(
            sum_instant_vector(bad)
                .unwrap_err()
                .to_string()
                .contains("parse error")
        );
        assert_eq!(
            percent_encode("sum(rate(x[1m]))"),
            "sum%28rate%28x%5B1m%5D%29%29"
        );
    }
}
