//! Every error response is JSON: `{"error": {"code", "message", "field"?}}`.
//! This module holds that shape and the handlers that turn actix's own
//! extractor errors into it.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

/// An error as the API reports it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after_secs: Option<u64>,
    #[serde(skip)]
    allow: Option<String>,
    /// Stable machine-readable code, e.g. `not_found`, `invalid_field`.
    pub code: &'static str,
    /// What went wrong and what is allowed, for a person.
    pub message: String,
    /// The request field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ApiError,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            retry_after_secs: None,
            allow: None,
            code,
            message: message.into(),
            field: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is malformed (syntax, bad query parameter).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422: well-formed but a field is not allowed.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// 401: a bearer token is needed or wrong.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403: not allowed whoever asks (e.g. a load-test target outside the allowlist).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the resource is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 429 with `Retry-After`: too much is waiting already.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    /// 408: the request body did not arrive in time.
    pub fn request_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", message)
    }

    /// 405 with `Allow`: the path exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>, allow: String) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        );
        e.allow = Some(allow);
        e
    }

    /// 500 for a handler that panicked; the panic and its backtrace are
    /// logged by the panic hook, the client learns only that it happened.
    pub fn panicked() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error while handling this request; see the server log",
        )
    }

    /// 501: this build or setup cannot do it; the message says what is missing.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
    }

    /// 500; the detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some(allow) = &self.allow
            && let Ok(value) = HeaderValue::from_str(allow)
        {
            response.insert_header((header::ALLOW, value));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(ErrorBody {
            error: self.clone(),
        })
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        match e {
            crate::Error::Store { .. } => {
                tracing::error!(error = %e, "store failure");
                Self::unavailable("the store is unavailable; retry shortly", 5)
            }
            other => Self::internal(other),
        }
    }
}

/// Maps a body-reading error (size limit, broken stream) to an [`ApiError`].
pub(crate) fn payload_error(e: &PayloadError, limit: u64) -> ApiError {
    match e {
        PayloadError::Overflow => ApiError::payload_too_large(limit),
        other => ApiError::bad_request(format!("cannot read the request body: {other}")),
    }
}

/// Error handler for actix's `Json` extractor (kept for completeness; our
/// handlers use [`crate::body::JsonBody`]).
pub(crate) fn json_error(e: JsonPayloadError, _req: &HttpRequest, limit: u64) -> actix_web::Error {
    let api = match &e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::payload_too_large(limit)
        }
        JsonPayloadError::ContentType => {
            ApiError::unsupported_media_type("request body must be application/json")
        }
        other => ApiError::bad_request(other.to_string()),
    };
    api.into()
}

/// Error handler for query strings: names the parameter serde complained about.
pub(crate) fn query_error(e: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    query_refused(&e).into()
}

/// The error for a query string that does not parse, naming its parameter.
pub(crate) fn query_refused(e: &QueryPayloadError) -> ApiError {
    let message = e.to_string();
    let mut api = ApiError::bad_request(format!("invalid query string: {message}"));
    if let Some(field) = backticked(&message) {
        api = api.with_field(field);
    }
    api
}

/// Error handler for path segments.
pub(crate) fn path_error(e: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request(format!("invalid path: {e}")).into()
}

/// The first `name` in a serde message such as "unknown field `lable`, expected ...".
pub(crate) fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message.get(start..)?.find('`')?;
    message.get(start..start + len).map(str::to_owned)
}

/// The fallback for what no route serves: OPTIONS on a known path answers
/// 204 with `Allow`, another method on a known path 405 with `Allow`, an
/// unknown path 404.
pub(crate) async fn no_route(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match crate::guard::allowed_methods(req.path()) {
        Some(allow) if req.method() == actix_web::http::Method::OPTIONS => {
            Ok(HttpResponse::NoContent()
                .insert_header((header::ALLOW, allow))
                .finish())
        }
        Some(allow) => Err(ApiError::method_not_allowed(
            format!(
                "{} is not served on {}; allowed: {allow}",
                req.method(),
                req.path()
            ),
            allow,
        )),
        None => Err(ApiError::not_found(format!(
            "no route for {} {}",
            req.method(),
            req.path()
        ))),
    }
}
