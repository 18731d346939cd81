//! A small shop to point a load test at, over HTTP/1.1 keep-alive, plain or
//! TLS (rustls, ring), and HTTP/2 over TLS when the client asks for it in
//! ALPN. It listens on loopback only.
//!
//! - `POST /login` with `{"user": "ann"}` answers `{"token": "tok-ann"}` and
//!   sets the cookie `sid=s-ann`;
//! - `GET /cart` needs `Authorization: Bearer tok-ann` and that cookie, and
//!   answers `{"items": 3, "owner": "ann"}` (401 otherwise);
//! - anything else answers `200 hello`.
//!
//! ```sh
//! cargo run --release -p perf-examples --example shop_target -- 127.0.0.1:8081
//! cargo run --release -p perf-examples --example shop_target -- \
//!     127.0.0.1:8443 examples/tls/server.pem examples/tls/server.key
//! ```
//!
//! `examples/tls/` holds test-only certificates (`ca.pem` signs `server.pem`
//! for `localhost`, `127.0.0.1` and `::1`).

#![allow(clippy::print_stdout)] // a command-line program: it says where it listens

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, tls) = match args.as_slice() {
        [listen] => (listen, None),
        [listen, cert, key] => (listen, Some((cert, key))),
        _ => {
            return Err(
                "usage: shop_target ADDR [CERT.pem KEY.pem] (ADDR on loopback, e.g. 127.0.0.1:8081)"
                    .into(),
            );
        }
    };
    let addr: SocketAddr = listen.parse()?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: this target listens on 127.0.0.0/8 or [::1] only"
        )
        .into());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let Some((cert, key)) = tls else {
        return runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            println!("http://{} ready", listener.local_addr()?);
            loop {
                let (tcp, _) = listener.accept().await?;
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(tcp));
            }
        });
    };
    let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("https://{} ready", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                        serve_h2(tls).await;
                    } else {
                        serve(tls).await;
                    }
                }
            });
        }
    })
}

/// Answers every complete request head on the connection (bodies are
/// skipped by Content-Length) until the client closes it.
async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() < end + 4 + length {
                break;
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            let mut line = head.lines().next().unwrap_or_default().split_whitespace();
            let (method, path) = (
                line.next().unwrap_or_default(),
                line.next().unwrap_or_default(),
            );
            let answer = answer(
                method,
                path,
                &body,
                header("authorization"),
                header("cookie"),
            );
            buf.drain(..end + 4 + length);
            if stream.write_all(&answer.h1()).await.is_err() {
                return;
            }
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An answer of the shop.
struct Reply {
    status: u16,
    /// A `Set-Cookie` value.
    cookie: Option<String>,
    /// `application/json`, else `text/plain`.
    json: bool,
    body: String,
}

impl Reply {
    /// As HTTP/1.1 bytes.
    fn h1(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            _ => "Unauthorized",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            if self.json {
                "application/json"
            } else {
                "text/plain"
            },
            self.body.len()
        );
        if let Some(c) = &self.cookie {
            head.push_str(&format!("Set-Cookie: {c}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(&self.body);
        head.into_bytes()
    }
}

/// The shop's answer to one request.
fn answer(
    method: &str,
    path: &str,
    body: &str,
    authorization: Option<String>,
    cookie: Option<String>,
) -> Reply {
    let json = |status: u16, cookie: Option<String>, body: String| Reply {
        status,
        cookie,
        json: true,
        body,
    };
    let user_of = |text: &str| {
        let name: String = text
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .take(32)
            .collect();
        (!name.is_empty()).then_some(name)
    };
    match (method, path.split('?').next().unwrap_or_default()) {
        ("POST", "/login") => {
            let user = body
                .split_once("\"user\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .and_then(|(_, rest)| user_of(rest));
            match user {
                Some(u) => json(
                    200,
                    Some(format!("sid=s-{u}; Path=/; HttpOnly")),
                    format!("{{\"token\": \"tok-{u}\", \"user\": {{\"name\": \"{u}\"}}}}"),
                ),
                None => json(400, None, "{\"error\": \"give a user\"}".into()),
            }
        }
        ("GET", "/cart") => {
            let user = authorization
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer tok-"))
                .and_then(user_of);
            match user {
                Some(u) if cookie.as_deref() == Some(&format!("sid=s-{u}")) => {
                    json(200, None, format!("{{\"items\": 3, \"owner\": \"{u}\"}}"))
                }
                _ => json(401, None, "{\"error\": \"login first\"}".into()),
            }
        }
        _ => Reply {
            status: 200,
            cookie: None,
            json: false,
            body: "hello".into(),
        },
    }
}

/// Answers the streams of an HTTP/2 connection (ALPN `h2`).
async fn serve_h2<S>(io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        tokio::spawn(async move {
            let (head, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                if bytes.len() + chunk.len() > 64 * 1024 {
                    return;
                }
                bytes.extend_from_slice(&chunk);
            }
            let header = |name: &str| {
                head.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let reply = answer(
                head.method.as_str(),
                head.uri.path(),
                &String::from_utf8_lossy(&bytes),
                header("authorization"),
                header("cookie"),
            );
            let mut response = http::Response::builder().status(reply.status).header(
                "content-type",
                if reply.json {
                    "application/json"
                } else {
                    "text/plain"
                },
            );
            if let Some(c) = &reply.cookie {
                response = response.header("set-cookie", c);
            }
            if let Ok(response) = response.body(())
                && let Ok(mut stream) = respond.send_response(response, false)
            {
                let _ = stream.send_data(bytes::Bytes::from(reply.body), true);
            }
        });
    }
}
