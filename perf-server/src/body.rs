//! `JsonBody<T>`: the JSON request-body extractor every handler uses. It reads
//! the body under the configured size limit (413 above it) and time limit
//! (408 beyond it), requires a JSON media type (`application/json` or
//! `application/*+json`, parsed, not matched as a substring), and reports
//! serde's complaint with the path of the field at fault (unknown fields are
//! refused by the types' `deny_unknown_fields`). The JSON is read strictly:
//! trailing characters, duplicate keys and NUL in strings are refused, each
//! naming the field, the same on every store backend.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use serde::de::DeserializeOwned;

use crate::api_error::{ApiError, backticked, payload_error};

/// The body limit in force, stored as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) u64);

/// How long a request body may take to arrive, stored as app data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// Whether `content_type` is a JSON media type: `application/json` or
/// `application/<subtype>+json`, case-insensitive, parameters ignored. A
/// `text/plain;charset=+json` (which a browser sends cross-site without a
/// preflight) is not.
pub(crate) fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    kind == "application"
        && token(subtype)
        && (subtype == "json"
            || subtype
                .strip_suffix("+json")
                .is_some_and(|prefix| !prefix.is_empty()))
}

/// A JSON request body of type `T`.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(1 << 20, |l| l.0);
        let timeout = req
            .app_data::<BodyTimeout>()
            .map_or(Duration::from_secs(10), |t| t.0);
        let json_content = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        let bytes = Bytes::from_request(req, payload);
        Box::pin(async move {
            if !json_content {
                return Err(ApiError::unsupported_media_type(
                    "request body must be JSON with Content-Type: application/json",
                ));
            }
            let bytes = tokio::time::timeout(timeout, bytes).await.map_err(|_| {
                ApiError::request_timeout(format!(
                    "the request body did not arrive within {}s",
                    timeout.as_secs()
                ))
            })?;
            let bytes =
                bytes.map_err(|e| match e.as_error::<actix_web::error::PayloadError>() {
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
            parse(&bytes).map(JsonBody)
        })
    }
}

/// Parses JSON strictly, naming the field at fault in the error.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = strict_value(bytes)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
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
        } else if path == "." {
            String::new()
        } else {
            path
        };
        ApiError::invalid_field(field, message)
    })
}

/// The JSON document in `bytes`, refusing what lenient parsers let through:
/// characters after the value, a key given twice in one object (which value
/// would win is a guess), and NUL in strings (one backend stores it, the
/// other cannot).
pub(crate) fn strict_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let problem = RefCell::new(None);
    let path = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        problem: &problem,
        path: &path,
    }
    .deserialize(&mut de)
    .map_err(|e| match problem.take() {
        Some((field, message)) => ApiError::invalid_field(field, message),
        None => ApiError::bad_request(format!("malformed JSON: {e}")),
    })?;
    de.end().map_err(|e| {
        ApiError::bad_request(format!(
            "malformed JSON: characters after the JSON value ({e})"
        ))
    })?;
    Ok(value)
}

/// One step of the path to a value.
enum Segment {
    Key(String),
    Index(usize),
}

/// Builds a `serde_json::Value`, recording the first strictness problem
/// with the path where it is. The path is a stack of segments shared by the
/// whole walk (pushed and popped around each child), turned into text only
/// for an error: a wide array or long keys cost no copying.
#[derive(Clone, Copy)]
struct Strict<'a> {
    problem: &'a RefCell<Option<(String, String)>>,
    path: &'a RefCell<Vec<Segment>>,
}

impl Strict<'_> {
    fn path_text(&self) -> String {
        let mut out = String::new();
        for segment in self.path.borrow().iter() {
            match segment {
                Segment::Key(k) if out.is_empty() => out.push_str(k),
                Segment::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Segment::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn refuse<E: serde::de::Error>(&self, message: &str) -> E {
        let mut problem = self.problem.borrow_mut();
        if problem.is_none() {
            *problem = Some((self.path_text(), message.to_owned()));
        }
        E::custom(message)
    }

    fn string<E: serde::de::Error>(&self, v: &str) -> Result<serde_json::Value, E> {
        if v.contains('\0') {
            return Err(self.refuse("a string must not contain NUL (\\u0000)"));
        }
        Ok(serde_json::Value::String(v.to_owned()))
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.string(v)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.path.borrow_mut().push(Segment::Index(items.len()));
            let item = seq.next_element_seed(self)?;
            self.path.borrow_mut().pop();
            match item {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(serde_json::Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let nul = key.contains('\0');
            let duplicate = object.contains_key(&key);
            self.path.borrow_mut().push(Segment::Key(key));
            if nul {
                return Err(self.refuse("a key must not contain NUL (\\u0000)"));
            }
            if duplicate {
                return Err(self.refuse("a key given twice: give each key once"));
            }
            let value = map.next_value_seed(self)?;
            let Some(Segment::Key(key)) = self.path.borrow_mut().pop() else {
                return Err(serde::de::Error::custom("path out of step"));
            };
            object.insert(key, value);
        }
        Ok(serde_json::Value::Object(object))
    }
}

/// Registers the body limit on an app.
pub(crate) fn limits(limit: u64) -> (BodyLimit, web::PayloadConfig) {
    // The PayloadConfig's own limit is what actix enforces while reading.
    let bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    (BodyLimit(limit), web::PayloadConfig::new(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types_are_parsed_not_matched() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            "application/vnd.perf.v1+json ;q=1",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain;charset=+json",
            "text/plain; application/json",
            "application/+json",
            "application/jsonx",
            "multipart/form-data; boundary=+json",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn strict_json_names_the_field_of_a_duplicate_or_nul_and_refuses_trailing_bytes() {
        let e = strict_value(br#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("a.b"), "{e}");
        let e = strict_value(br#"{"r": [{"x": "ok"}, {"x": "a\u0000b"}]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("r[1].x"), "{e}");
        let e = strict_value(br#"{"a": 1} trailing"#).unwrap_err();
        assert!(e.message.contains("after the JSON value"), "{e}");
        assert!(strict_value(br#"{"a": 1}  "#).is_ok());
        assert!(strict_value(b"[1, 2.5, null, true, \"x\"]").is_ok());
    }
}
