//! A Rust workload: load-testing a raw TCP echo service (started here, on
//! 127.0.0.1) through perf-loadgen's open model, with the standard report.
//!
//! `cargo run --release -p perf-examples --example tcp_echo [-- RATE SECONDS]`

#![allow(clippy::print_stdout)] // a command-line program: it prints the report

use std::time::Duration;

use perf_loadgen::{Iteration, Operations, ScenarioFile, Workload, start_workload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One operation per iteration: `echo`, 64 bytes out and the same 64 back,
/// on the user's own connection (opened again after a failure).
struct Echo {
    addr: std::net::SocketAddr,
}

impl Workload for Echo {
    type User = Option<TcpStream>;

    fn operations(&self) -> Vec<String> {
        vec!["echo".to_owned()]
    }

    fn user(&self, _index: u64) -> Option<TcpStream> {
        None
    }

    async fn iteration(&self, conn: &mut Option<TcpStream>, ops: &Operations<'_>) -> Iteration {
        if conn.is_none() {
            match TcpStream::connect(self.addr).await {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    *conn = Some(c);
                }
                Err(e) => {
                    ops.note_failure(|| format!("connect: {e} ({})", self.addr));
                    ops.record(0, std::time::Instant::now(), Err("connect"));
                    return Iteration::Unreachable;
                }
            }
        }
        let Some(stream) = conn.as_mut() else {
            return Iteration::Done;
        };
        let result = ops
            .time(0, async {
                let out = [7u8; 64];
                let mut back = [0u8; 64];
                stream.write_all(&out).await?;
                stream.read_exact(&mut back).await?;
                if back == out {
                    Ok(())
                } else {
                    Err(std::io::Error::other("the echo differs"))
                }
            })
            .await;
        if result.is_err() {
            *conn = None;
        }
        Iteration::Done
    }
}

/// An echo server on 127.0.0.1 and a free port.
async fn echo_server() -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rate = args.first().map_or("2000/s", String::as_str);
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let addr = echo_server().await?;
    let file = ScenarioFile::from_yaml(&format!(
        "load_tests:\n  echo: {{duration: {seconds}s, rate: {rate}, thresholds: ['p99 < 50ms', 'error_rate < 0.001']}}\n"
    ))?;
    let handle = start_workload("echo", file.get("echo")?, Echo { addr }).await?;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let report = handle.report().await?;
    print!("{}", report.summary());
    if !report.passed {
        std::process::exit(1);
    }
    Ok(())
}
