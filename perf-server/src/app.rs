//! The actix-web application: shared state, limits, middleware and routes.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::from_fn;
use actix_web::{App, web};

use crate::api_error;
use crate::body;
use crate::config::ServerConfig;
use crate::monitor::Monitor;
use crate::routes;
use crate::store::Store;
use crate::telemetry;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// The host sampler.
    pub monitor: Monitor,
    /// When the server started.
    pub(crate) started: Instant,
    /// Load tests run through the API.
    pub tests: Arc<crate::test_runner::TestRunner>,
    /// The database reported on, when one is configured.
    pub(crate) database: Option<Arc<crate::database::DatabaseMonitor>>,
    /// The autoscaler, when one is configured.
    pub(crate) scaling: Option<Arc<crate::scaling::Scaling>>,
    /// Set on SIGTERM: `/ready` answers 503 so load balancers and meshes
    /// stop routing here before the server stops.
    pub(crate) draining: Arc<std::sync::atomic::AtomicBool>,
    /// The open Server-Sent Events streams and their cap.
    pub(crate) streams: Arc<crate::events::StreamSlots>,
}

impl AppState {
    /// The state of a server over `store`, sampling with `monitor` and
    /// running load tests through `tests`: no analyzed database, no
    /// autoscaler, not draining, the default cap of event streams.
    pub fn builder(
        store: Arc<dyn Store>,
        monitor: Monitor,
        tests: Arc<crate::test_runner::TestRunner>,
    ) -> AppStateBuilder {
        AppStateBuilder {
            state: AppState {
                store,
                monitor,
                started: Instant::now(),
                tests,
                database: None,
                scaling: None,
                draining: Arc::default(),
                streams: Arc::default(),
            },
        }
    }
}

/// Builds an [`AppState`] (from [`AppState::builder`]).
#[derive(Debug)]
pub struct AppStateBuilder {
    state: AppState,
}

impl AppStateBuilder {
    /// Report on (and advise about) this database.
    pub fn database(mut self, database: Option<Arc<crate::database::DatabaseMonitor>>) -> Self {
        self.state.database = database;
        self
    }

    /// Run this autoscaler.
    pub(crate) fn scaling(mut self, scaling: Option<Arc<crate::scaling::Scaling>>) -> Self {
        self.state.scaling = scaling;
        self
    }

    /// Share this draining flag (set on SIGTERM).
    pub(crate) fn draining(mut self, draining: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.state.draining = draining;
        self
    }

    /// Share these event stream slots.
    pub(crate) fn streams(mut self, streams: Arc<crate::events::StreamSlots>) -> Self {
        self.state.streams = streams;
        self
    }

    /// The state.
    pub fn build(self) -> AppState {
        self.state
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store.backend())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// Builds the application for one worker (call it inside `HttpServer::new`).
/// The configuration is shared by every worker, hence the `Arc`.
pub fn app(
    state: web::Data<AppState>,
    config: Arc<ServerConfig>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    app_with_routes(state, config, |_| {})
}

/// [`app`] with `extra` routes (tests add a route that panics, to show the
/// server survives it).
#[doc(hidden)]
pub fn app_with_routes(
    state: web::Data<AppState>,
    config: Arc<ServerConfig>,
    extra: impl FnOnce(&mut web::ServiceConfig),
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    // Install the recorder before the first request is counted.
    telemetry::prometheus();
    let limit = config.body_limit.bytes();
    let (body_limit, payload_config) = body::limits(limit);
    let json_limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let gates = std::rc::Rc::new(crate::pipeline::Gates {
        guard: crate::guard::RequestGuard::from_config(&config),
        token: config.api_token.clone(),
        state: state.clone(),
    });
    App::new()
        .app_data(state)
        .app_data(body_limit)
        .app_data(payload_config)
        .app_data(body::BodyTimeout(config.body_timeout.as_duration()))
        .app_data(web::QueryConfig::default().error_handler(api_error::query_error))
        .app_data(web::PathConfig::default().error_handler(api_error::path_error))
        .app_data(
            web::JsonConfig::default()
                .limit(json_limit)
                .error_handler(move |e, req| api_error::json_error(e, req, limit)),
        )
        .wrap(from_fn(move |req, next| {
            crate::pipeline::handle(req, next, std::rc::Rc::clone(&gates))
        }))
        .configure(routes::configure)
        .configure(extra)
        .default_service(web::to(api_error::no_route))
}
