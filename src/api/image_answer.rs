//! The HTTP answer of a capture's output, whether just made or served from the cache: the
//! image in its content type (`response_type=binary`) or JSON with it in base64, its size, its
//! timings and what the page said (`response_type=json`); `Server-Timing`, the size headers,
//! `x-request-id`.

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use warp::http::{header, HeaderValue};
use warp::reply::Response;

use super::options::ResponseType;
use crate::farm::CaptureOutput;

/// The response and its body (what an idempotent replay keeps).
pub(super) fn success(
    output: CaptureOutput,
    response_type: ResponseType,
    total: Duration,
    id: &str,
) -> (Response, Bytes) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p = output.timings.phases;
    let timing = format!(
        "queue;dur={:.2}, context;dur={:.2}, emulate;dur={:.2}, navigate;dur={:.2}, page;dur={:.2}, capture;dur={:.2}, encode;dur={:.2}, render;dur={:.2}, total;dur={:.2}",
        ms(output.timings.queue),
        ms(p.context),
        ms(p.emulate),
        ms(p.navigate),
        ms(p.page),
        ms(p.capture),
        ms(p.encode),
        ms(output.timings.render),
        ms(total)
    );
    let (mut response, body) = match response_type {
        ResponseType::Binary => {
            let body = output.image.clone();
            let mut r = Response::new(body.clone().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(output.format.mime()),
            );
            (r, body)
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
                    "context_ms": ms(output.timings.phases.context),
                    "emulate_ms": ms(output.timings.phases.emulate),
                    "navigate_ms": ms(output.timings.phases.navigate),
                    "page_ms": ms(output.timings.phases.page),
                    "capture_ms": ms(output.timings.phases.capture),
                    "encode_ms": ms(output.timings.phases.encode),
                    "render_ms": ms(output.timings.render),
                    "total_ms": ms(total),
                },
                "page": output.page,
            });
            let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
            let mut r = Response::new(body.clone().into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (r, body)
        }
    };
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&timing) {
        headers.insert("server-timing", v);
    }
    set_common_headers(&mut response, &output, id);
    (response, body)
}

/// What every answer of a capture carries: `no-store`, the image's size, whether it was cut,
/// and `x-request-id`.
pub(super) fn set_common_headers(response: &mut Response, output: &CaptureOutput, id: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-image-width", HeaderValue::from(output.width));
    headers.insert("x-image-height", HeaderValue::from(output.height));
    if output.truncated {
        headers.insert("x-shotfarm-truncated", HeaderValue::from_static("true"));
    }
    super::set_request_id(response, id);
}
