//! `GET /api/v1/screenshot?url=…` and `POST /api/v1/screenshot` (JSON body, same names).
//! Path of one request: read options → validate → job with deadline → farm → image or error.

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::Instrument;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::errors::ApiError;
use super::options::{self, ResponseType};
use super::{with_request_id, ApiState};
use crate::farm::{CaptureError, CaptureOutput, Job};

/// Extra time the API gives the farm past the job's deadline to deliver its own answer.
const ANSWER_SLACK: Duration = Duration::from_millis(500);

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let max_body = state.config.server.max_body_bytes;
    let with_state = warp::any().map(move || state.clone());
    let get = warp::path!("api" / "v1" / "screenshot")
        .and(warp::get())
        .and(with_request_id())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(with_state.clone())
        .then(|id: String, query: String, state: ApiState| {
            let options = Ok(options::query_to_map(&query));
            handle(state, id, options)
        });
    let post = warp::path!("api" / "v1" / "screenshot")
        .and(warp::post())
        .and(with_request_id())
        .and(warp::body::content_length_limit(max_body))
        .and(warp::body::bytes())
        .and(with_state)
        .then(|id: String, body: Bytes, state: ApiState| {
            let options = match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the body must be a JSON object of capture options",
                )),
                Err(e) => Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the body is not valid JSON: {e}"),
                )),
            };
            handle(state, id, options)
        });
    get.or(post).unify()
}

async fn handle(
    state: ApiState,
    id: String,
    options: Result<Map<String, Value>, ApiError>,
) -> Response {
    let span = tracing::info_span!("screenshot", request_id = %id);
    let response = async {
        match capture(&state, &id, options).await {
            Ok(response) => response,
            Err(error) => error.into_response(&id),
        }
    }
    .instrument(span)
    .await;
    response
}

async fn capture(
    state: &ApiState,
    id: &str,
    options: Result<Map<String, Value>, ApiError>,
) -> Result<Response, ApiError> {
    let received = Instant::now();
    let request = options::parse(options?, &state.config.capture).map_err(ApiError::invalid)?;
    let deadline = received + request.timeout;
    let response_type = request.response_type;
    let (job, answer) = Job::new(id.to_string(), request.spec, deadline);
    let outcome = match state.farm.submit(job).await {
        Ok(()) => match tokio::time::timeout_at((deadline + ANSWER_SLACK).into(), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CaptureError::Internal("the farm dropped the job".into())),
            Err(_) => Err(CaptureError::Timeout),
        },
        Err(e) => Err(e),
    };
    let code = match &outcome {
        Ok(_) => "success",
        Err(e) => e.code(),
    };
    state
        .metrics
        .captures_total
        .with_label_values(&[code])
        .inc();
    match outcome {
        Ok(output) => {
            tracing::info!(
                format = output.format.as_str(),
                bytes = output.image.len(),
                queue_ms = output.timings.queue.as_secs_f64() * 1e3,
                render_ms = output.timings.render.as_secs_f64() * 1e3,
                "captured"
            );
            Ok(success(output, response_type, received.elapsed(), id))
        }
        Err(e) => {
            if let CaptureError::Internal(detail) = &e {
                tracing::error!("capture failed internally: {detail}");
            } else {
                tracing::info!(code = e.code(), "capture failed: {e}");
            }
            Err(e.into())
        }
    }
}

fn success(
    output: CaptureOutput,
    response_type: ResponseType,
    total: Duration,
    id: &str,
) -> Response {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let timing = format!(
        "queue;dur={:.2}, render;dur={:.2}, total;dur={:.2}",
        ms(output.timings.queue),
        ms(output.timings.render),
        ms(total)
    );
    let mut response = match response_type {
        ResponseType::Binary => {
            let mut r = Response::new(output.image.clone().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(output.format.mime()),
            );
            r
        }
        ResponseType::Json => {
            let body = serde_json::json!({
                "image": base64::engine::general_purpose::STANDARD.encode(&output.image),
                "format": output.format.as_str(),
                "width": output.width,
                "height": output.height,
                "bytes": output.image.len(),
                "truncated": output.truncated,
                "timings": {
                    "queue_ms": ms(output.timings.queue),
                    "render_ms": ms(output.timings.render),
                    "total_ms": ms(total),
                },
            });
            let mut r = Response::new(serde_json::to_vec(&body).unwrap_or_default().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-image-width", HeaderValue::from(output.width));
    headers.insert("x-image-height", HeaderValue::from(output.height));
    if output.truncated {
        headers.insert("x-shotfarm-truncated", HeaderValue::from_static("true"));
    }
    super::set_request_id(&mut response, id);
    response
}
