//! warp's rejections as the JSON error body: what is wrong with a request a route matched wins
//! over the other routes' "not this path".

use warp::http::StatusCode;
use warp::reply::Response;

use super::errors::ApiError;
use super::{csrf, request_id};

/// Turns warp's rejections into the JSON error body. A request that no route took is rejected
/// by every route it was tried on, and those rejections are combined: the ones that say what is
/// wrong with a request a route *did* match (too large, cross-site, unreadable) must win over
/// the other routes' "not this path" and "not this method", so they are looked for first.
pub(super) async fn recover(
    rejection: warp::Rejection,
) -> Result<Response, std::convert::Infallible> {
    let id = request_id(None);
    let error = if let Some(csrf::CrossSite(why)) = rejection.find::<csrf::CrossSite>() {
        tracing::info!("cross-site request refused: {why}");
        csrf::refusal()
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "length_required",
            "a Content-Length is required",
        )
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some()
        || rejection.find::<warp::reject::InvalidQuery>().is_some()
        || rejection
            .find::<warp::reject::UnsupportedMediaType>()
            .is_some()
    {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be read",
        )
    } else if rejection.is_not_found() {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be read",
        )
    };
    Ok(error.into_response(&id))
}
