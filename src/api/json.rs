//! JSON in and out: request bodies with clear 400s, responses, and timestamps.

use serde::de::DeserializeOwned;
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;

/// Parses a JSON body into `T`; any problem is a 400 `invalid_body` saying what is wrong.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("the body is not the expected JSON: {e}"),
        )
    })
}

pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub use crate::timestamps::iso_time;

/// The request body, up to `max` bytes, whether or not it came with a `Content-Length`
/// (an empty `POST` often has none). Longer bodies are a 413 `payload_too_large`, handed to the
/// handler (so it answers with its own request id): at once when the `Content-Length` says so,
/// else as soon as the stream passes `max`. Every route with a body takes it through here.
pub fn limited_body(
    max: usize,
) -> impl warp::Filter<Extract = (Result<bytes::Bytes, ApiError>,), Error = warp::Rejection> + Clone
{
    use warp::Filter;
    warp::header::optional::<String>("content-length")
        .and(warp::body::stream())
        .then(move |length: Option<String>, stream| async move {
            let declared = length.and_then(|l| l.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > max as u64) {
                return Err(too_large(max));
            }
            collect(stream, max).await
        })
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is larger than {max} bytes"),
    )
}

async fn collect<S, B>(stream: S, max: usize) -> Result<bytes::Bytes, ApiError>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: warp::Buf,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body could not be read: {e}"),
            )
        })?;
        if body.len() + chunk.remaining() > max {
            return Err(too_large(max));
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            body.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_time_is_rfc3339_utc() {
        assert_eq!(super::iso_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::iso_time(1_764_032_461_123),
            "2025-11-25T01:01:01.123Z"
        );
    }
}
