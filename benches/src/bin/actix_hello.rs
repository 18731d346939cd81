//! A bare actix-web hello world, the peer perf-server's `/health` is
//! compared with: `GET /health` answers `{"status":"ok"}`, nothing else runs.
//!
//! `actix_hello --listen 127.0.0.1:9108 --workers 1`

use actix_web::{App, HttpResponse, HttpServer, get};

#[get("/health")]
async fn health() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:9108".to_owned();
    let mut workers = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--workers" => workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(workers),
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unknown argument {other}: use --listen ADDR --workers N"),
                ));
            }
        }
    }
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().service(health))
            .workers(workers)
            .bind(&listen)?
            .run()
            .await
    })
}
