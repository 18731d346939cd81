use actix_web::{HttpResponse, get};
use utoipa::OpenApi;

use super::{
    console, database, events, health, host, profiling, prometheus, recommendations, scaling,
    snapshots, tests,
};
use crate::api_error::{ApiError, ErrorBody};

/// The OpenAPI document, generated from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "perf-server",
        description = "The perf toolkit over HTTP. State-changing requests need `Authorization: Bearer <token>` when the server has an API token. Every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`."
    ),
    paths(
        console::root,
        console::page,
        console::file,
        health::health,
        health::ready,
        prometheus::metrics,
        openapi_json,
        host::summary,
        host::cpu,
        host::memory,
        host::network,
        events::host_events,
        database::database,
        profiling::start,
        profiling::stop,
        profiling::list,
        profiling::get,
        profiling::delete,
        scaling::status,
        scaling::config,
        scaling::manual,
        scaling::history,
        scaling::simulate,
        recommendations::recommendations,
        snapshots::create,
        snapshots::list,
        snapshots::get,
        snapshots::delete,
        tests::start,
        tests::show,
        tests::results,
        events::test_events,
        tests::trend,
        tests::compare,
        tests::history,
        tests::list,
        tests::cancel,
    ),
    components(schemas(ApiError, ErrorBody)),
    modifiers(&BearerAuth, &ScenarioInStartTest)
)]
#[derive(Debug)]
pub struct ApiDoc;

/// `Scenario` refuses unknown keys, but the body of `POST
/// /performance/tests` is a scenario *plus* `name`, `preset`, `workers` and
/// `shards` (`allOf`): with `additionalProperties: false` on the scenario
/// branch no body that names its test would validate. The branch is left
/// open in the document; the server still answers an unknown key with a
/// 422 that names it.
struct ScenarioInStartTest;

impl utoipa::Modify for ScenarioInStartTest {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::Schema;
        let scenario = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("Scenario"));
        if let Some(RefOr::T(Schema::Object(object))) = scenario {
            object.additional_properties = None;
        }
    }
}

/// The `bearer` security scheme, required on every operation that changes
/// state: the same rule ([`crate::guard::changes_state`]) the server enforces.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use actix_web::http::Method;
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "the server's `api_token` (`PERF_API_TOKEN`); needed by requests that change state when one is set",
                    ))
                    .build(),
            ),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (Method::GET, item.get.as_mut()),
                (Method::PUT, item.put.as_mut()),
                (Method::POST, item.post.as_mut()),
                (Method::DELETE, item.delete.as_mut()),
                (Method::PATCH, item.patch.as_mut()),
            ];
            for (method, operation) in operations {
                if let Some(operation) = operation
                    && crate::guard::changes_state(&method)
                {
                    operation.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                }
            }
        }
    }
}

/// This document.
#[utoipa::path(get, operation_id = "getOpenApi", path = "/openapi.json", tag = "service", responses((status = 200, description = "OpenAPI 3.1 document")))]
#[get("/openapi.json")]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
