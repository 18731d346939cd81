//! `JsonBody<T>`: the JSON request-body extractor every handler uses. It reads
//! the body under the configured size limit (413 above it), requires a JSON
//! content type, and reports serde's complaint with the path of the field at
//! fault (unknown fields are refused by the types' `deny_unknown_fields`).

use std::future::Future;
use std::pin::Pin;

use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use crate::api_error::{ApiError, backticked, payload_error};

/// The body limit in force, stored as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) u64);

/// A JSON request body of type `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(1 << 20, |l| l.0);
        let json_content = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes =
                bytes
                    .await
                    .map_err(|e| match e.as_error::<actix_web::error::PayloadError>() {
                        Some(p) => payload_error(p, limit),
                        None => {
                            if e.as_response_error().status_code()
                                == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE
                            {
                                ApiError::payload_too_large(limit)
                            } else {
                                ApiError::bad_request(format!("cannot read the request body: {e}"))
                            }
                        }
                    })?;
            if !json_content {
                return Err(ApiError::unsupported_media_type(
                    "request body must be JSON with Content-Type: application/json",
                ));
            }
            parse(&bytes).map(JsonBody)
        })
    }
}

/// Parses JSON, naming the field at fault in the error.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = inner.to_string();
                // For an unknown field the path already ends with its name; for a
                // missing one it names the parent object.
                let field = if message.starts_with("missing field") {
                    let name = backticked(&message).unwrap_or_default();
                    if path == "." || path.is_empty() {
                        name
                    } else {
                        format!("{path}.{name}")
                    }
                } else {
                    path
                };
                ApiError::invalid_field(field, message)
            }
            _ => ApiError::bad_request(format!("malformed JSON: {inner}")),
        }
    })
}

/// Registers the body limit on an app.
pub(crate) fn limits(limit: u64) -> (BodyLimit, web::PayloadConfig) {
    let bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    (BodyLimit(limit), web::PayloadConfig::new(bytes))
}
