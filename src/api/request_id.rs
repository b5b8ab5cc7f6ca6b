//! The request id (`x-request-id`): the caller's when sane, else a fresh one; set on every
//! answer by [`answer`], which also turns a handler's error into the JSON error body.

use warp::http::HeaderValue;
use warp::reply::Response;
use warp::Filter;

use super::errors::ApiError;

/// Runs a handler and turns its error into the JSON error body; sets `x-request-id`.
pub async fn answer(
    id: String,
    handler: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Response {
    let mut response = match handler.await {
        Ok(response) => response,
        Err(error) => error.into_response(&id),
    };
    set_request_id(&mut response, &id);
    response
}

/// A request id: the caller's `x-request-id` when it is sane, else a fresh UUIDv7.
pub fn request_id(incoming: Option<&str>) -> String {
    match incoming {
        Some(id)
            if (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) =>
        {
            id.to_string()
        }
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

pub fn set_request_id(response: &mut Response, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
}

/// A filter extracting the request id.
pub fn with_request_id() -> impl Filter<Extract = (String,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("x-request-id")
        .map(|h: Option<String>| request_id(h.as_deref()))
}
