//! A small HTTP/1.1 JSON client for talking to other perf-server instances
//! (the workers of a distributed test): one request per connection, bearer
//! token, bounded time and size.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

/// Splits `http://host:port` into the address to connect to and the Host header.
fn authority(base: &str) -> Result<String, String> {
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("worker {base:?}: only http:// workers are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("worker {base:?} has no host"));
    }
    Ok(if authority.contains(':') && !authority.ends_with(']') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
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
}

impl PinnedWorker {
    /// Resolves `base` (a configured worker) to one address.
    pub(crate) async fn resolve(base: &str) -> Result<Self, String> {
        let host = authority(base)?;
        let addr = tokio::net::lookup_host(host.as_str())
            .await
            .map_err(|e| format!("worker {base}: {e}"))?
            .next()
            .ok_or_else(|| format!("worker {base} has no address"))?;
        Ok(Self {
            base: base.to_owned(),
            addr,
            host,
        })
    }
}

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
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_with_length_or_chunks() {
        let r = parse(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (202, "{}"));
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n3\r\n\":1\r\n1\r\n}\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "{\"a\":1}");
        assert!(parse(b"garbage").is_err());
        assert!(authority("https://x").is_err());
        assert_eq!(
            authority("http://127.0.0.1:9000/").unwrap(),
            "127.0.0.1:9000"
        );
    }
}
