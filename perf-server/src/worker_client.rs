//! A small HTTP/1.1 JSON client for talking to other perf-server instances
//! (the workers of a distributed test): one request per connection, bearer
//! token, bounded time and size, over TLS for `https://` workers. The token
//! never goes over plain http to a worker outside loopback unless that is
//! allowed in the configuration.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response read (reports with histograms and timelines stay far below).
const MAX_RESPONSE: usize = 64 << 20;

/// A worker's answer.
#[derive(Debug, Clone)]
pub(crate) struct WorkerResponse {
    /// Status code.
    pub(crate) status: u16,
    /// Body (JSON).
    pub(crate) body: String,
}

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
    host: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
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
            let config = match &transport.tls {
                Some(c) => Arc::clone(c),
                None => default_tls()?,
            };
            let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            let name = name.trim_start_matches('[').trim_end_matches(']');
            let server_name = ServerName::try_from(name.to_owned())
                .map_err(|_| format!("worker {base}: {name:?} is not a name TLS can verify"))?;
            Some((config, server_name))
        } else {
            None
        };
        Ok(Self {
            base: base.to_owned(),
            addr,
            host,
            tls,
        })
    }
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

/// A plain or TLS connection to a worker.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Sends one request to the pinned worker's `path` and reads the whole answer.
pub(crate) async fn call(
    worker: &PinnedWorker,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    timeout: Duration,
) -> Result<WorkerResponse, String> {
    let addr = worker.addr;
    let host = &worker.host;
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let mut stream: Box<dyn Io> = match &worker.tls {
            None => Box::new(tcp),
            Some((config, name)) => Box::new(
                tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {addr}: {e}"))?,
            ),
        };
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(t) = token {
            request.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        if !body.is_empty() || method != "GET" {
            request.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        stream
            .flush()
            .await
            .map_err(|e| format!("write to {addr}: {e}"))?;
        let mut raw = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_RESPONSE {
                return Err(format!("{addr} answered more than {MAX_RESPONSE} bytes"));
            }
        }
        parse(&raw).map_err(|e| format!("{addr}: {e}"))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{addr} did not answer within {timeout:?}"))?
}

fn parse(raw: &[u8]) -> Result<WorkerResponse, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without a header end")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok(WorkerResponse {
        status,
        body: String::from_utf8(body).map_err(|_| "body is not UTF-8")?,
    })
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        body = body.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// One worker of a distributed test, over its HTTP API: the transport of
/// perf-loadgen's [`Coordinator`](perf_loadgen::Coordinator). A shard is
/// the path of the test it started there.
#[derive(Debug)]
pub(crate) struct HttpWorker {
    worker: PinnedWorker,
    token: Option<String>,
}

/// How long one call to a worker may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A worker's answer kept short in a test's error.
const MAX_ANSWER_IN_ERROR: usize = 512;

impl HttpWorker {
    /// The transport to `worker`, sending `token` as its bearer token.
    pub(crate) fn new(worker: PinnedWorker, token: Option<String>) -> Self {
        Self { worker, token }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> perf_loadgen::Result<WorkerResponse> {
        call(
            &self.worker,
            method,
            path,
            self.token.as_deref(),
            body,
            CALL_TIMEOUT,
        )
        .await
        .map_err(perf_loadgen::Error::Worker)
    }

    fn unexpected(&self, answer: &WorkerResponse) -> perf_loadgen::Error {
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
            .send("POST", "/performance/tests", Some(&body.to_string()))
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
        let answer = self.send("GET", shard, None).await?;
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
        let answer = self.send("GET", &format!("{shard}/results"), None).await?;
        if answer.status != 200 {
            return Err(self.unexpected(&answer));
        }
        bounded_report(&answer.body)
    }

    async fn cancel(&self, shard: &String) -> perf_loadgen::Result<()> {
        let answer = self.send("DELETE", shard, None).await?;
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
    fn responses_parse_with_length_or_chunks() {
        let r = parse(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (202, "{}"));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "{\"a\":1}");
        assert!(parse(b"garbage").is_err());
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
            allow_plain_http: false,
        };
        let worker = PinnedWorker::resolve(&server.url(), &transport, true)
            .await
            .unwrap();
        let r = call(
            &worker,
            "GET",
            "/x",
            Some("s3cret-token-123456"),
            None,
            Duration::from_secs(5),
        )
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
        let e = call(
            &untrusted,
            "GET",
            "/x",
            Some("t"),
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("TLS") && e.contains("certificate"), "{e}");
    }
}
