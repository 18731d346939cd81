//! The transport of distributed tests: other perf-server instances (the
//! workers) called through their API with perf-core's
//! [`ControlClient`](perf_core::http_client::ControlClient), with a bearer
//! token, bounded time and size, over TLS for `https://` workers. The token
//! never goes over plain http to a worker outside loopback unless that is
//! allowed in the configuration, and every call of a test goes to the
//! address its worker resolved to when the test started.

use std::sync::Arc;
use std::time::Duration;

use perf_core::http_client::{ControlClient, Limits};
use rustls_pki_types::ServerName;

/// Largest response read (reports with histograms and timelines stay far below).
const MAX_RESPONSE: usize = 64 << 20;

/// Splits `http[s]://host[:port]` into whether it is TLS and `host:port`.
fn authority(base: &str) -> Result<(bool, String), String> {
    let (tls, rest) = if let Some(rest) = base.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = base.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!(
            "worker {base:?}: a base URL such as https://worker:8080 or http://127.0.0.1:8080"
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("worker {base:?} has no host"));
    }
    Ok((
        tls,
        if authority.contains(':') && !authority.ends_with(']') {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        },
    ))
}

/// A worker resolved once: every call of a test goes to the address found
/// when it started (a name that resolves elsewhere later does not take the
/// token with it).
#[derive(Debug, Clone)]
pub(crate) struct PinnedWorker {
    /// The base URL as configured.
    pub(crate) base: String,
    addr: std::net::SocketAddr,
    /// `host:port` as in the base URL.
    host: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The name the worker's certificate is verified as, when not its host.
    server_name: Option<ServerName<'static>>,
}

impl PinnedWorker {
    /// Resolves `base` (a configured worker) to one address. A plain http
    /// worker outside loopback is refused when a token would be sent to it,
    /// unless `transport` allows plain http.
    pub(crate) async fn resolve(
        base: &str,
        transport: &crate::test_runner::WorkerTransport,
        sends_token: bool,
    ) -> Result<Self, String> {
        let (tls, host) = authority(base)?;
        let addr = tokio::net::lookup_host(host.as_str())
            .await
            .map_err(|e| format!("worker {base}: {e}"))?
            .next()
            .ok_or_else(|| format!("worker {base} has no address"))?;
        if !tls && sends_token && !addr.ip().is_loopback() && !transport.allow_plain_http {
            return Err(format!(
                "worker {base} ({addr}) is plain http outside loopback: the worker token is not sent \
                 over it; use an https:// worker (with worker_tls) or set allow_plain_http_workers"
            ));
        }
        let tls = if tls {
            let name = host_name(&host);
            if transport.server_name.is_none() {
                ServerName::try_from(name.to_owned())
                    .map_err(|_| format!("worker {base}: {name:?} is not a name TLS can verify"))?;
            }
            Some(match &transport.tls {
                Some(c) => Arc::clone(c),
                None => default_tls()?,
            })
        } else {
            None
        };
        Ok(Self {
            base: base.to_owned(),
            addr,
            host,
            server_name: tls.as_ref().and(transport.server_name.clone()),
            tls,
        })
    }
}

/// The host of `host:port`, without an IPv6 literal's brackets.
fn host_name(host: &str) -> &str {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name.trim_start_matches('[').trim_end_matches(']')
}

/// The TLS client of `https://` workers without `worker_tls`: the system's roots.
fn default_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    perf_loadgen::tls_client_config(
        None,
        &perf_loadgen::FeedAccess::Any,
        vec![b"http/1.1".to_vec()],
    )
    .map_err(|e| e.to_string())
}

/// One worker of a distributed test, over its HTTP API: the transport of
/// perf-loadgen's [`Coordinator`](perf_loadgen::Coordinator). A shard is
/// the path of the test it started there.
#[derive(Debug)]
pub(crate) struct HttpWorker {
    worker: PinnedWorker,
    client: ControlClient,
    token: Option<String>,
}

/// How long one call to a worker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker's answer kept short in a test's error.
const MAX_ANSWER_IN_ERROR: usize = 512;

impl HttpWorker {
    /// The transport to `worker`, sending `token` as its bearer token.
    pub(crate) fn new(worker: PinnedWorker, token: Option<String>) -> Self {
        let limits = Limits::new(CALL_TIMEOUT, MAX_RESPONSE);
        let client = match (&worker.tls, &worker.server_name) {
            (Some(tls), Some(name)) => {
                ControlClient::verifying_as(Arc::clone(tls), name.clone(), limits)
            }
            (tls, _) => ControlClient::new(tls.clone(), limits),
        };
        client.pin(host_name(&worker.host), worker.addr);
        Self {
            worker,
            client,
            token,
        }
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Option<String>,
    ) -> perf_loadgen::Result<Answer> {
        let scheme = if self.worker.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}{path}", self.worker.host);
        self.client
            .send(method, &url, self.token.as_deref(), body)
            .await
            .map_err(|e| {
                perf_loadgen::Error::Worker(format!("{e} (pinned to {})", self.worker.addr))
            })
            .and_then(|r| {
                Ok(Answer {
                    status: r.status,
                    body: String::from_utf8(r.body.to_vec()).map_err(|_| {
                        perf_loadgen::Error::Worker("the answer is not UTF-8".to_owned())
                    })?,
                })
            })
    }

    fn unexpected(&self, answer: &Answer) -> perf_loadgen::Error {
        perf_loadgen::Error::Worker(format!(
            "answered {}: {}",
            answer.status,
            answer
                .body
                .chars()
                .take(MAX_ANSWER_IN_ERROR)
                .collect::<String>()
        ))
    }
}

/// A worker's answer, its body as text.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// What a worker says about its shard.
#[derive(Debug, serde::Deserialize)]
struct ShardView {
    status: crate::store::TestStatus,
    progress: Option<perf_loadgen::LiveSnapshot>,
}

impl perf_loadgen::ShardClient for HttpWorker {
    type Shard = String;

    fn worker(&self) -> &str {
        &self.worker.base
    }

    async fn start(
        &self,
        name: &str,
        shard: &perf_loadgen::Scenario,
    ) -> perf_loadgen::Result<String> {
        let mut body = serde_json::to_value(shard).unwrap_or_default();
        if let serde_json::Value::Object(fields) = &mut body {
            fields.insert("name".to_owned(), serde_json::json!(name));
        }
        let answer = self
            .send(
                http::Method::POST,
                "/performance/tests",
                Some(body.to_string()),
            )
            .await?;
        let id = Some(&answer)
            .filter(|r| r.status == 202)
            .and_then(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body)
                    .ok()?
                    .get("id")?
                    .as_str()?
                    .parse::<perf_core::Id>()
                    .ok()
            })
            .ok_or_else(|| self.unexpected(&answer))?;
        Ok(format!("/performance/tests/{id}"))
    }

    async fn status(&self, shard: &String) -> perf_loadgen::Result<perf_loadgen::ShardStatus> {
        use crate::store::TestStatus;
        use perf_loadgen::ShardState;
        let answer = self.send(http::Method::GET, shard, None).await?;
        let view = Some(&answer)
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str::<ShardView>(&r.body).ok())
            .ok_or_else(|| self.unexpected(&answer))?;
        let state = match view.status {
            TestStatus::Queued | TestStatus::Running => ShardState::Running,
            TestStatus::Completed => ShardState::Completed,
            TestStatus::Failed => ShardState::Failed,
            TestStatus::Cancelled => ShardState::Cancelled,
            TestStatus::Interrupted => ShardState::Interrupted,
        };
        Ok(perf_loadgen::ShardStatus {
            state,
            progress: view.progress,
        })
    }

    async fn results(&self, shard: &String) -> perf_loadgen::Result<perf_loadgen::RunReport> {
        let answer = self
            .send(http::Method::GET, &format!("{shard}/results"), None)
            .await?;
        if answer.status != 200 {
            return Err(self.unexpected(&answer));
        }
        bounded_report(&answer.body)
    }

    async fn cancel(&self, shard: &String) -> perf_loadgen::Result<()> {
        let answer = self.send(http::Method::DELETE, shard, None).await?;
        // 409: it had already ended, which is what a cancel wants.
        if answer.status == 202 || answer.status == 200 || answer.status == 409 {
            Ok(())
        } else {
            Err(self.unexpected(&answer))
        }
    }
}

/// A worker's report, refused when it holds more request names, per-name
/// histograms or timeline rows than a run can have. Each histogram decodes
/// into a full HDR histogram (about 190 KB) whatever its size in the JSON,
/// so a hostile or broken worker could otherwise exhaust memory with a
/// small answer.
fn bounded_report(body: &str) -> perf_loadgen::Result<perf_loadgen::RunReport> {
    let not_a_report = |e: serde_json::Error| perf_loadgen::Error::Report(e.to_string());
    let value: serde_json::Value = serde_json::from_str(body).map_err(not_a_report)?;
    let count = |v: Option<&serde_json::Value>| match v {
        Some(serde_json::Value::Object(m)) => Some(m.len()),
        Some(serde_json::Value::Array(a)) => Some(a.len()),
        _ => None,
    };
    let names = count(value.get("per_request"));
    let histograms = count(value.get("histograms").and_then(|h| h.get("per_request")));
    let rows = count(value.get("timeline"));
    let (Some(names), Some(histograms), Some(rows)) = (names, histograms, rows) else {
        return Err(perf_loadgen::Error::Report(
            "a worker's report has no per_request, histograms.per_request or timeline".to_owned(),
        ));
    };
    if names.max(histograms) > perf_loadgen::MAX_REQUESTS || rows > 2 * 4096 {
        return Err(perf_loadgen::Error::Report(format!(
            "a worker's report is larger than a run can be ({names} request names, \
             {histograms} per-name histograms, {rows} timeline rows)"
        )));
    }
    serde_json::from_value(value).map_err(not_a_report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_larger_than_a_run_can_be_is_refused_before_it_decodes() {
        let report = perf_loadgen::RunReport {
            model: "closed".to_owned(),
            ..perf_loadgen::RunReport::default()
        };
        let mut value = serde_json::to_value(&report).unwrap();
        assert!(bounded_report(&value.to_string()).is_ok());
        // Many names in the histograms alone: each would decode into a
        // full histogram.
        let names: serde_json::Map<String, serde_json::Value> = (0..=perf_loadgen::MAX_REQUESTS)
            .map(|i| (format!("r{i}"), serde_json::json!(["", ""])))
            .collect();
        value["histograms"]["per_request"] = serde_json::Value::Object(names);
        let err = bounded_report(&value.to_string()).unwrap_err().to_string();
        assert!(err.contains("per-name histograms"), "{err}");
        let mut value = serde_json::to_value(&report).unwrap();
        value["timeline"] = serde_json::json!(vec![serde_json::Value::Null; 2 * 4096 + 1]);
        assert!(bounded_report(&value.to_string()).is_err());
        for broken in ["", "[]", "{\"per_request\": {}}", "not json"] {
            assert!(bounded_report(broken).is_err(), "{broken}");
        }
    }

    #[test]
    fn base_urls_name_their_authority() {
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("worker:8080"), "worker");
        assert_eq!(authority("https://x").unwrap(), (true, "x:443".to_owned()));
        assert!(authority("ftp://x").is_err());
        assert_eq!(
            authority("http://127.0.0.1:9000/").unwrap(),
            (false, "127.0.0.1:9000".to_owned())
        );
    }

    #[tokio::test]
    async fn the_token_goes_over_plain_http_only_on_loopback_unless_allowed() {
        use crate::test_runner::WorkerTransport;
        let strict = WorkerTransport::default();
        let e = PinnedWorker::resolve("http://10.255.255.1:8080", &strict, true)
            .await
            .unwrap_err();
        assert!(
            e.contains("plain http outside loopback") && e.contains("https"),
            "{e}"
        );
        assert!(
            PinnedWorker::resolve("http://10.255.255.1:8080", &strict, false)
                .await
                .is_ok()
        );
        assert!(
            PinnedWorker::resolve("http://127.0.0.1:8080", &strict, true)
                .await
                .is_ok()
        );
        let allowed = WorkerTransport {
            allow_plain_http: true,
            ..WorkerTransport::default()
        };
        assert!(
            PinnedWorker::resolve("http://10.255.255.1:8080", &allowed, true)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn https_workers_are_called_over_tls_with_the_configured_ca() {
        use std::sync::Arc;
        use testkit::target::{Behavior, Handler, TargetReply, TargetServer, TargetTls};
        let server = TargetServer::start(Behavior {
            tls: Some(TargetTls::default()),
            handler: Some(Handler(Arc::new(|r| TargetReply {
                status: 200,
                headers: vec![],
                body: format!(
                    "{{\"auth\": {:?}}}",
                    r.header("authorization").unwrap_or_default()
                ),
            }))),
            ..Behavior::default()
        })
        .unwrap();
        let ca = std::fs::read_to_string(testkit::certs::path("ca.pem")).unwrap();
        let spec = perf_loadgen::TlsSpec {
            ca_pem: Some(ca),
            ..perf_loadgen::TlsSpec::default()
        };
        let transport = crate::test_runner::WorkerTransport {
            tls: Some(
                perf_loadgen::tls_client_config(
                    Some(&spec),
                    &perf_loadgen::FeedAccess::Any,
                    vec![b"http/1.1".to_vec()],
                )
                .unwrap(),
            ),
            server_name: None,
            allow_plain_http: false,
        };
        let worker = PinnedWorker::resolve(&server.url(), &transport, true)
            .await
            .unwrap();
        let r = HttpWorker::new(worker, Some("s3cret-token-123456".to_owned()))
            .send(http::Method::GET, "/x", None)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body.contains("Bearer s3cret-token-123456"), "{}", r.body);
        // Without the CA the worker's certificate is not trusted.
        let untrusted = PinnedWorker::resolve(
            &server.url(),
            &crate::test_runner::WorkerTransport::default(),
            true,
        )
        .await
        .unwrap();
        let e = HttpWorker::new(untrusted, Some("t".to_owned()))
            .send(http::Method::GET, "/x", None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("certificate"), "{e}");
        // `server_name` is the name verified: the certificate names
        // localhost, not other.example, whatever the URL's host.
        let call_as = |name: &str| {
            let transport = crate::test_runner::WorkerTransport {
                server_name: Some(ServerName::try_from(name.to_owned()).unwrap()),
                ..transport.clone()
            };
            let url = server.url();
            async move {
                let worker = PinnedWorker::resolve(&url, &transport, true).await.unwrap();
                HttpWorker::new(worker, None)
                    .send(http::Method::GET, "/x", None)
                    .await
            }
        };
        assert_eq!(call_as("localhost").await.unwrap().status, 200);
        let e = call_as("other.example").await.unwrap_err().to_string();
        assert!(e.contains("not valid for name \"other.example\""), "{e}");
    }
}
