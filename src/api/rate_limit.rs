//! Rate limits in HTTP terms: the 429 `rate_limited` error and the `x-ratelimit-*` headers.

use std::time::Duration;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use crate::limits::RateVerdict;

/// 429 `rate_limited`, with `Retry-After` (at least a second).
pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> ApiError {
    let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
    error.retry_after = Some(retry_after.max(Duration::from_secs(1)));
    error
}

/// Sets `x-ratelimit-limit` (requests per minute, as configured and documented),
/// `x-ratelimit-burst` (at once), `x-ratelimit-remaining` (that may be sent right now, at most the
/// burst) and `x-ratelimit-reset` (seconds until the whole burst is available again).
pub fn with_rate_limit(mut response: Response, verdict: Option<RateVerdict>) -> Response {
    if let Some(v) = verdict {
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", HeaderValue::from(v.per_minute));
        headers.insert("x-ratelimit-burst", HeaderValue::from(v.burst));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(v.remaining));
        headers.insert(
            "x-ratelimit-reset",
            HeaderValue::from(v.reset.as_millis().div_ceil(1000) as u64),
        );
    }
    response
}
