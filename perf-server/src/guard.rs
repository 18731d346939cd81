//! What every request passes before a handler sees it, and what happens when
//! a handler fails hard:
//!
//! - the `Host` header must name this server (loopback names, IP addresses,
//!   or `allowed_hosts`): a page on another site cannot reach a loopback
//!   server through DNS rebinding, which needs a host name it controls;
//! - a state-changing request (POST, PUT, PATCH, DELETE) sent by a page of
//!   another origin is refused unless that origin is in `allowed_origins`;
//! - HEAD is served as GET without its body, OPTIONS and a wrong method on a
//!   known path answer with `Allow` (from the OpenAPI document);
//! - a handler that panics costs its request a 500, not the process (the
//!   panic hook logs it with its backtrace).

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use actix_web::dev::ServiceRequest;
use actix_web::http::{Method, header};

use crate::api_error::ApiError;
use crate::config::ServerConfig;

/// The names and origins a server accepts (one per worker thread).
#[derive(Debug, Clone)]
pub(crate) struct RequestGuard {
    any_host: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
    /// The last `Host` value this worker accepted: a client sends the same
    /// one on every request, and comparing its bytes is cheaper than parsing
    /// it as an address again.
    accepted: std::cell::RefCell<Option<header::HeaderValue>>,
}

impl RequestGuard {
    pub(crate) fn from_config(config: &ServerConfig) -> Self {
        Self {
            any_host: config.allowed_hosts.iter().any(|h| h == "*"),
            hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            origins: config
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            accepted: std::cell::RefCell::new(None),
        }
    }

    /// Whether a `Host` value names this server.
    fn host_allowed(&self, host: &str) -> bool {
        if self.any_host {
            return true;
        }
        // Compared without folding into a new string: this runs per request.
        let name = host_name(host).trim_end_matches('.');
        let suffix = name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|at| name.get(at..));
        name.eq_ignore_ascii_case("localhost")
            || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a page of `origin` may change state here: the same origin as
    /// the `Host` it sent the request to, or a configured one.
    fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let authority = origin.split_once("://").map(|(_, a)| a);
        let same = matches!((authority, host), (Some(a), Some(h)) if a == h.to_ascii_lowercase());
        same || self.origins.contains(&origin)
    }
}

/// The host part of a `Host` value (port removed).
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a request of this method changes state (the ones that need the
/// bearer token and a same-site `Origin`).
pub(crate) fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Why a request is refused before routing (a `Host` that does not name
/// this server, a state change from a page of another origin), or `None`.
pub(crate) fn refusal(req: &ServiceRequest, guard: &RequestGuard) -> Option<ApiError> {
    // A Host that is not text is refused; a missing one (HTTP/1.0, which
    // no browser sends) falls back to an absolute-form request target.
    let raw_host = req.headers().get(header::HOST);
    let known = raw_host.is_some_and(|v| guard.accepted.borrow().as_ref() == Some(v));
    let mutating = changes_state(req.method());
    if known && !mutating {
        return None;
    }
    let host = match raw_host {
        Some(v) => v.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    match host {
        Some(_) if known => {}
        Some(h) if !guard.host_allowed(h) => {
            return Some(ApiError::forbidden(format!(
                "this server does not answer to the host name {:?}; add it to allowed_hosts",
                host_name(h)
            )));
        }
        Some(_) => {
            if let Some(v) = raw_host {
                *guard.accepted.borrow_mut() = Some(v.clone());
            }
        }
        None if raw_host.is_some() => {
            return Some(ApiError::bad_request("the Host header is not a host name"));
        }
        _ => {}
    }
    if !mutating {
        return None;
    }
    let origin = req.headers().get(header::ORIGIN)?;
    let allowed = origin.to_str().is_ok_and(|o| guard.origin_allowed(o, host));
    (!allowed).then(|| {
        ApiError::forbidden(format!(
            "a page of origin {:?} may not change state here; add the origin to allowed_origins",
            origin.to_str().unwrap_or("?")
        ))
    })
}

/// A future that turns a panic while polling `F` into `Err(())`; it borrows
/// the pinned future, so catching costs no allocation per request.
pub(crate) struct CatchUnwind<'a, F>(pub(crate) Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Logs every panic with its backtrace through tracing (once, at start-up).
pub(crate) fn log_panics() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            let backtrace = std::backtrace::Backtrace::force_capture();
            tracing::error!(panic = %info, %backtrace, "a handler or task panicked");
        }));
    });
}

/// The methods the API serves on `path` (from the OpenAPI document), or
/// `None` when no route has that path.
pub(crate) fn allowed_methods(path: &str) -> Option<String> {
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        use utoipa::OpenApi;
        crate::ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let segments = template.split('/').map(str::to_owned).collect();
                let mut methods = Vec::new();
                if item.get.is_some() {
                    methods.extend(["GET", "HEAD"]);
                }
                for (op, name) in [
                    (&item.post, "POST"),
                    (&item.put, "PUT"),
                    (&item.patch, "PATCH"),
                    (&item.delete, "DELETE"),
                ] {
                    if op.is_some() {
                        methods.push(name);
                    }
                }
                methods.push("OPTIONS");
                (segments, methods)
            })
            .collect()
    });
    let asked: Vec<&str> = path.split('/').collect();
    // The most literal match wins, as in routing (`history` before `{id}`).
    let mut best = 0usize;
    let mut allowed: Vec<&str> = Vec::new();
    for (segments, methods) in routes {
        let matches = segments.len() == asked.len()
            && segments
                .iter()
                .zip(&asked)
                .all(|(s, a)| s == a || (s.starts_with('{') && !a.is_empty()));
        if !matches {
            continue;
        }
        let literal = 1 + segments.iter().filter(|s| !s.starts_with('{')).count();
        if literal > best {
            best = literal;
            allowed.clear();
        }
        if literal == best {
            allowed.extend(methods.iter().copied());
        }
    }
    if allowed.is_empty() {
        return None;
    }
    let order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    Some(
        order
            .into_iter()
            .filter(|m| allowed.contains(m))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_loopback_names_ip_literals_or_configured() {
        let guard = RequestGuard::from_config(&ServerConfig {
            allowed_hosts: vec!["perf.internal".into()],
            ..ServerConfig::default()
        });
        for ok in [
            "localhost:8080",
            "LOCALHOST",
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.1.2.3",
            "perf.internal:8080",
            "perf.internal.",
        ] {
            assert!(guard.host_allowed(ok), "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "localhost.attacker.example",
            "perf.internal.evil",
        ] {
            assert!(!guard.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn the_remembered_host_does_not_let_another_through() {
        use actix_web::test::TestRequest;
        let guard = RequestGuard::from_config(&ServerConfig::default());
        let ask = |host: &str, method: Method| {
            let req = TestRequest::default()
                .method(method)
                .insert_header((header::HOST, host))
                .insert_header((header::ORIGIN, "https://evil.example"))
                .to_srv_request();
            refusal(&req, &guard).map(|e| actix_web::ResponseError::status_code(&e).as_u16())
        };
        assert_eq!(ask("127.0.0.1:8080", Method::GET), None);
        // Remembered now; a hostile name after it is still checked.
        assert_eq!(ask("attacker.example", Method::GET), Some(403));
        assert_eq!(ask("127.0.0.1:8080", Method::GET), None);
        // A remembered host does not skip the Origin check of a state change.
        assert_eq!(ask("127.0.0.1:8080", Method::POST), Some(403));
        assert_eq!(ask("attacker.example", Method::GET), Some(403));
    }

    #[test]
    fn origins_are_the_same_origin_or_configured() {
        let guard = RequestGuard::from_config(&ServerConfig {
            allowed_origins: vec!["https://console.example.com".into()],
            ..ServerConfig::default()
        });
        assert!(guard.origin_allowed("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(guard.origin_allowed("https://console.example.com", Some("127.0.0.1:8080")));
        assert!(!guard.origin_allowed("https://evil.example", Some("127.0.0.1:8080")));
        assert!(!guard.origin_allowed("null", Some("127.0.0.1:8080")));
    }

    #[test]
    fn allowed_methods_come_from_the_api_document() {
        assert_eq!(
            allowed_methods("/performance/tests/0190f0c2-0000-7000-8000-000000000000").as_deref(),
            Some("GET, HEAD, DELETE, OPTIONS")
        );
        assert_eq!(
            allowed_methods("/performance/tests").as_deref(),
            Some("GET, HEAD, POST, OPTIONS")
        );
        assert_eq!(allowed_methods("/nope"), None);
    }
}
