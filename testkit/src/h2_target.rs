//! A local HTTP/2 target: h2c with prior knowledge, or TLS with ALPN `h2`
//! (the test certificates), answering as a [`Behavior`] says (delay,
//! status, body, or a [`crate::target::Handler`]). It counts streams
//! served, connections, and the most streams open at once on one connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::target::{Behavior, TargetRequest};

/// A running HTTP/2 target (on a runtime of its own, in its own thread);
/// it stops on drop.
#[derive(Debug)]
pub struct H2Target {
    addr: SocketAddr,
    tls: bool,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for H2Target {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    served: AtomicU64,
    connections: AtomicU64,
    open: AtomicU64,
    most_open: AtomicU64,
}

impl H2Target {
    /// Starts on 127.0.0.1 and a free port, over TLS when `behavior.tls` is set.
    pub fn start(behavior: Behavior) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let acceptor = match behavior.tls {
            Some(tls) => {
                let mut config = (*crate::target::server_config(tls)?).clone();
                config.alpn_protocols = vec![b"h2".to_vec()];
                Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
            }
            None => None,
        };
        let tls = acceptor.is_some();
        let counters = Arc::new(Counters::default());
        let behavior = Arc::new(behavior);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        {
            let counters = Arc::clone(&counters);
            let accept = async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                while let Ok((tcp, _)) = listener.accept().await {
                    let _ = tcp.set_nodelay(true);
                    counters.connections.fetch_add(1, Ordering::Relaxed);
                    let (counters, behavior, acceptor) = (
                        Arc::clone(&counters),
                        Arc::clone(&behavior),
                        acceptor.clone(),
                    );
                    tokio::spawn(async move {
                        match acceptor {
                            None => serve(tcp, behavior, counters).await,
                            Some(a) => {
                                if let Ok(tls) = a.accept(tcp).await {
                                    serve(tls, behavior, counters).await;
                                }
                            }
                        }
                    });
                }
            };
            std::thread::spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = accept => {}
                        _ = stopped => {}
                    }
                });
            });
        }
        Ok(Self {
            addr,
            tls,
            counters,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:port` (h2c) or `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// Streams answered.
    pub fn served(&self) -> u64 {
        self.counters.served.load(Ordering::Relaxed)
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// The most streams that were open at once.
    pub fn most_open_streams(&self) -> u64 {
        self.counters.most_open.load(Ordering::Relaxed)
    }
}

async fn serve<T>(io: T, behavior: Arc<Behavior>, counters: Arc<Counters>)
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut conn) = h2::server::handshake(io).await else {
        return;
    };
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        let (behavior, counters) = (Arc::clone(&behavior), Arc::clone(&counters));
        tokio::spawn(async move {
            let now = counters.open.fetch_add(1, Ordering::Relaxed) + 1;
            counters.most_open.fetch_max(now, Ordering::Relaxed);
            let (head, mut body) = request.into_parts();
            let mut bytes = Vec::new();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            if !behavior.delay.is_zero() {
                tokio::time::sleep(behavior.delay).await;
            }
            let (status, headers, text) = match &behavior.handler {
                Some(h) => {
                    let seen = TargetRequest {
                        method: head.method.to_string(),
                        path: head
                            .uri
                            .path_and_query()
                            .map_or("/".to_owned(), |p| p.to_string()),
                        headers: head
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                (
                                    k.as_str().to_owned(),
                                    v.to_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect(),
                        body: bytes,
                    };
                    let r = (h.0)(&seen);
                    (r.status, r.headers, r.body)
                }
                None => (behavior.status, Vec::new(), behavior.body.clone()),
            };
            let mut response = http::Response::builder().status(status);
            for (k, v) in headers {
                response = response.header(k.to_ascii_lowercase(), v);
            }
            if let Ok(response) = response.body(())
                && let Ok(mut stream) = respond.send_response(response, text.is_empty())
                && !text.is_empty()
            {
                let _ = stream.send_data(Bytes::from(text), true);
            }
            counters.open.fetch_sub(1, Ordering::Relaxed);
            counters.served.fetch_add(1, Ordering::Relaxed);
        });
    }
}
