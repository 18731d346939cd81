//! A bare actix-web server, the peer perf-server's request path is compared
//! with: `GET /health` answers `{"status":"ok"}`, and `--static PATH=FILE`
//! serves FILE's bytes (read once at start) as JSON at PATH, so an endpoint
//! of perf-server can be compared with the same bytes sent by a handler that
//! does nothing else. No middleware.
//!
//! `actix_hello --listen 127.0.0.1:9108 --workers 1 [--static /performance/metrics=metrics.json]`

use actix_web::{App, HttpResponse, HttpServer, web};

fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:9108".to_owned();
    let mut workers = 1usize;
    let mut statics: Vec<(String, &'static [u8])> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or(listen),
            "--workers" => workers = args.next().and_then(|w| w.parse().ok()).unwrap_or(workers),
            "--static" => {
                let spec = args.next().unwrap_or_default();
                let Some((path, file)) = spec.split_once('=') else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("--static {spec}: write PATH=FILE"),
                    ));
                };
                // Leaked once at start: the bodies live as long as the server.
                let body: &'static [u8] = Box::leak(std::fs::read(file)?.into_boxed_slice());
                statics.push((path.to_owned(), body));
            }
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "unknown argument {other}: use --listen ADDR --workers N --static PATH=FILE"
                    ),
                ));
            }
        }
    }
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let mut app = App::new().route(
                "/health",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body(r#"{"status":"ok"}"#)
                }),
            );
            for (path, body) in &statics {
                let body: &'static [u8] = body;
                app = app.route(
                    path,
                    web::get().to(move || async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(body)
                    }),
                );
            }
            app
        })
        .workers(workers)
        .bind(&listen)?
        .run()
        .await
    })
}
