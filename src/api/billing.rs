//! The credit side of a capture, in HTTP terms: the `Idempotency-Key` header, the 402 body of
//! the contract, `x-credits-remaining`, and replays of a stored result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::ApiError;
use crate::accounts::secrets::sha256_hex;
use crate::ledger::{Idempotency, Outcome, StoredResult};

/// Longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key`, bound to its parameters: the same key with other options
/// is refused (422) rather than answered with another capture's image.
pub fn idempotency(
    headers: &HeaderMap,
    options: &Map<String, Value>,
) -> Result<Option<Idempotency>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = raw.to_str().unwrap_or_default();
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY
        || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
            ),
        ));
    }
    Ok(Some(Idempotency {
        key_hash: sha256_hex(key.as_bytes()),
        fingerprint: fingerprint(options),
    }))
}

/// A digest of the options that does not depend on their order or on whether they came as
/// query strings or JSON values (`width=800` and `{"width": 800}` are the same request).
fn fingerprint(options: &Map<String, Value>) -> String {
    fn canonical(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items
                .iter()
                .map(canonical)
                .collect::<Vec<_>>()
                .join("\u{1f}"),
            Value::Object(map) => {
                let sorted: BTreeMap<_, _> = map.iter().map(|(k, v)| (k, canonical(v))).collect();
                serde_json::to_string(&sorted).unwrap_or_default()
            }
            other => other.to_string(),
        }
    }
    let sorted: BTreeMap<&String, String> =
        options.iter().map(|(k, v)| (k, canonical(v))).collect();
    sha256_hex(
        serde_json::to_string(&sorted)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// The error for a reserve that took no hold (other than 402 and replays, which answer with a
/// body of their own), with the balance to report.
pub fn refusal(outcome: &Outcome, max_in_flight: i64) -> (ApiError, Option<i64>) {
    let error = match outcome {
        Outcome::TooManyInFlight { .. } => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_in_flight",
                format!(
                    "this account already has {max_in_flight} captures in flight; retry when one has finished"
                ),
            );
            e.retry_after = Some(std::time::Duration::from_secs(1));
            e
        }
        Outcome::IdempotencyInFlight { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_in_flight",
            "a request with this Idempotency-Key is still running; retry when it has finished",
        ),
        Outcome::IdempotencyMismatch { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with other parameters",
        ),
        Outcome::IdempotencyResultUnavailable { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_result_unavailable",
            "this Idempotency-Key already succeeded (and was charged once), but its image was too large to keep",
        ),
        Outcome::NoAccount => {
            ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no such account")
        }
        other => {
            tracing::error!("unexpected reserve outcome {other:?}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    };
    (error, outcome.available())
}

/// Sets `x-credits-remaining`.
pub fn with_credits(mut response: Response, available: Option<i64>) -> Response {
    if let Some(n) = available {
        response
            .headers_mut()
            .insert("x-credits-remaining", HeaderValue::from(n.max(0)));
    }
    response
}

/// The contract's 402 body, field for field, plus our `code` and `request_id` beside it.
pub fn insufficient_credits(balance: i64, public_url: &str, request_id: &str) -> Response {
    let site = public_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let body = serde_json::json!({
        "error": "Insufficient credits",
        "balance": balance.max(0),
        "message": format!("Purchase more credits at {site}/dashboard/credits"),
        "code": "insufficient_credits",
        "request_id": request_id,
    });
    let mut response = super::json::json_response(StatusCode::PAYMENT_REQUIRED, &body);
    super::set_request_id(&mut response, request_id);
    with_credits(response, Some(balance))
}

/// What is kept of a successful response for replays.
#[derive(Serialize, Deserialize)]
struct Meta {
    content_type: String,
    headers: Vec<(String, String)>,
}

/// Headers of a success worth replaying.
const REPLAYED: &[&str] = &["x-image-width", "x-image-height", "x-shotfarm-truncated"];

/// The parts of a successful response to store, or `None` when the body is over `max_bytes`.
pub fn to_stored(response: &Response, body: &[u8], max_bytes: usize) -> Option<StoredResult> {
    if body.len() > max_bytes {
        return None;
    }
    let headers = response.headers();
    let meta = Meta {
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string(),
        headers: REPLAYED
            .iter()
            .filter_map(|name| {
                let v = headers.get(*name)?.to_str().ok()?;
                Some((name.to_string(), v.to_string()))
            })
            .collect(),
    };
    Some(StoredResult {
        meta: serde_json::to_string(&meta).ok()?,
        body: body.to_vec(),
    })
}

/// The stored success again (no charge), marked `idempotent-replayed: true`.
pub fn replay(result: StoredResult, request_id: &str) -> Response {
    let meta: Meta = serde_json::from_str(&result.meta).unwrap_or(Meta {
        content_type: "application/octet-stream".into(),
        headers: Vec::new(),
    });
    let mut response = Response::new(result.body.into());
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&meta.content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    for (name, value) in meta.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(n, v);
        }
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    super::set_request_id(&mut response, request_id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_order_and_value_form_but_not_values() {
        let get = super::super::options::query_to_map("url=https://a.example&width=800");
        let post: Map<String, Value> =
            serde_json::from_str(r#"{"width": 800, "url": "https://a.example"}"#).expect("json");
        let other: Map<String, Value> =
            serde_json::from_str(r#"{"width": 801, "url": "https://a.example"}"#).expect("json");
        assert_eq!(fingerprint(&get), fingerprint(&post));
        assert_ne!(fingerprint(&post), fingerprint(&other));
    }

    #[test]
    fn the_402_body_is_the_contracts() {
        let r = insufficient_credits(0, "https://shots.example.com/", "rid");
        assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(
            r.headers()
                .get("x-credits-remaining")
                .and_then(|v| v.to_str().ok()),
            Some("0")
        );
    }
}
