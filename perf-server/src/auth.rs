//! Bearer-token check for every request that changes state (POST, PUT, PATCH,
//! DELETE) when an API token is configured. The comparison is constant-time.

use actix_web::dev::ServiceRequest;
use subtle::ConstantTimeEq;

use crate::api_error::ApiError;

/// `true` when `header` is `Bearer <token>` with exactly this token.
fn bearer_matches(header: Option<&str>, token: &str) -> bool {
    // The scheme is case-insensitive (RFC 9110, 11.1): `bearer` is `Bearer`.
    let Some((scheme, given)) = header.and_then(|h| h.trim_start().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    given.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

/// A 401 for a state-changing request without the right token, or `None`.
pub(crate) fn refusal(req: &ServiceRequest, token: Option<&str>) -> Option<ApiError> {
    if !crate::guard::changes_state(req.method()) {
        return None;
    }
    let token = token?;
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    (!bearer_matches(header, token)).then(|| {
        ApiError::unauthorized(if header.is_some() {
            "the bearer token is not valid"
        } else {
            "this request changes state and needs Authorization: Bearer <token>"
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = "s3cret-token-0123456789";
        assert!(bearer_matches(
            Some("Bearer s3cret-token-0123456789"),
            token
        ));
        assert!(!bearer_matches(
            Some("Bearer s3cret-token-012345678"),
            token
        ));
        assert!(!bearer_matches(
            Some("Bearer s3cret-token-01234567890"),
            token
        ));
        assert!(!bearer_matches(
            Some("Basic s3cret-token-0123456789"),
            token
        ));
        assert!(!bearer_matches(Some(""), token));
        assert!(bearer_matches(
            Some("bearer s3cret-token-0123456789"),
            token
        ));
        assert!(bearer_matches(
            Some("BEARER s3cret-token-0123456789"),
            token
        ));
        assert!(!bearer_matches(
            Some("Bearerx s3cret-token-0123456789"),
            token
        ));
        assert!(!bearer_matches(None, token));
    }
}
