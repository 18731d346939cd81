//! perf-loadgen embedded in a program: start an open-model test against a
//! service, follow it live once a second (what a dashboard or a CI log
//! would show), then print the standard report and its verdict.
//!
//! The service under test is a tiny keep-alive HTTP responder started by the
//! program itself on 127.0.0.1 (so the example needs nothing else).
//!
//! ```sh
//! cargo run --release -p perf-examples --example loadgen_live
//! ```
#![allow(clippy::print_stdout)] // an example prints what it found

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve(listener));

    let file = perf_loadgen::ScenarioFile::from_yaml(&format!(
        r#"
load_tests:
  live:
    target: "http://{addr}"
    stages:   # the rate ramps: to 500/s over 2 s, then to 2000/s over 3 s
      - {{duration: 2s, rate: 500/s}}
      - {{duration: 3s, rate: 2000/s}}
    max_in_flight: 64
    requests:
      - {{name: home, path: /}}
    thresholds: ["p95 < 50ms", "error_rate < 0.1%"]
"#
    ))?;
    let scenario = file.get("live")?;
    let handle = perf_loadgen::start("live", scenario).await?;
    let mut progress = handle.progress();
    while progress.changed().await.is_ok() {
        let now = progress.borrow().clone();
        println!(
            "{:>4.1}/{:.0} s  target {:>6.0}/s  done {:>6.0}/s  p95 {:>6.2} ms  in flight {:>3}  errors {}  dropped {}",
            now.elapsed_s,
            now.total_s,
            now.target_rate,
            now.rps,
            now.p95_ms,
            now.in_flight,
            now.errors,
            now.dropped
        );
        if now.finished {
            break;
        }
    }
    let report = handle.report().await?;
    println!("\n{}", report.summary());
    println!(
        "verdict: {}",
        if report.passed { "PASSED" } else { "FAILED" }
    );
    Ok(())
}

/// Answers every request on a connection with `200 ok`, keeping it open.
async fn serve(listener: tokio::net::TcpListener) {
    while let Ok((mut socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut pending = Vec::new();
            loop {
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                pending.extend_from_slice(&buf[..n]);
                // One answer per complete request head (GETs: no body).
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    pending.drain(..end + 4);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if socket.write_all(answer).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}
