//! `store=true` in HTTP: refused (400 naming `store`) when this server has no bucket; else the
//! captured image is uploaded (`storage::Storage::put`) and the answer is JSON with its URL
//! instead of the image. An upload that fails or outlasts the capture's deadline is 502
//! `storage_failed`, and the capture's hold is released (free): the image is charged only once
//! it is in the bucket.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::errors::{ApiError, FieldError};
use super::options::StoreRequest;
use super::ApiState;
use crate::farm::CaptureOutput;
use crate::storage::{keys, Storage};
use crate::telemetry::events::{CaptureUploaded, InternalEvent, UploadOutcome};
use crate::timestamps::iso_time;

/// The bucket a `store=true` request goes to, or 400 `invalid_parameter` naming `store` when
/// the server has none (checked before a credit is held).
pub(crate) fn storage_for(state: &ApiState) -> Result<&Storage, ApiError> {
    state.storage.as_ref().ok_or_else(|| {
        ApiError::invalid(vec![FieldError {
            field: "store".into(),
            message: "this server has no object storage configured ([storage] bucket); \
                      leave store out to get the image itself"
                .into(),
        }])
    })
}

/// Uploads the capture under the account's folder, by `until` at the latest, and answers
/// `{url, key, format, bytes, width, height, truncated, expiresAt?, page?}`: the response and
/// its body (the idempotent replay's). Any failure is 502 `storage_failed` (the caller
/// releases the hold).
pub(crate) async fn store(
    state: &ApiState,
    account: &str,
    request: &StoreRequest,
    output: CaptureOutput,
    until: Instant,
    id: &str,
) -> Result<(Response, Bytes), ApiError> {
    let storage = storage_for(state)?;
    let format = output.format.as_str();
    let key = keys::capture_key(
        storage.prefix(),
        account,
        request.path.as_deref(),
        keys::extension(format),
    )
    .map_err(|e| {
        tracing::warn!("no object key for this capture: {e}");
        failed("the capture's object name is not usable")
    })?;
    let started = Instant::now();
    let metadata = [
        ("request-id", id.to_string()),
        ("account", account.to_string()),
        ("width", output.width.to_string()),
        ("height", output.height.to_string()),
    ];
    let upload = async {
        storage
            .put(&key, output.image.clone(), output.format.mime(), &metadata)
            .await?;
        storage.url(&key).await
    };
    let outcome = match tokio::time::timeout_at(until.into(), upload).await {
        Ok(Ok(url)) => Ok(url),
        Ok(Err(e)) => Err((
            match e {
                crate::storage::StorageError::Timeout(_) => UploadOutcome::TimedOut,
                _ => UploadOutcome::Failed,
            },
            e.to_string(),
        )),
        Err(_) => Err((
            UploadOutcome::TimedOut,
            "the capture's deadline passed".to_string(),
        )),
    };
    CaptureUploaded {
        outcome: outcome
            .as_ref()
            .map_or_else(|(o, _)| *o, |_| UploadOutcome::Stored),
        key: &key,
        bytes: output.image.len(),
        elapsed: started.elapsed(),
        why: outcome.as_ref().err().map_or("", |(_, why)| why.as_str()),
    }
    .emit(&state.metrics);
    if outcome.is_err() {
        // Not charged, so not left for the taking: an upload whose reply came too late (or
        // whose URL could not be made) may have landed. Best effort, within the bucket's timeout.
        if let Err(e) = storage.delete(&key).await {
            tracing::warn!("an unanswered upload may remain in the bucket: {e}");
        }
    }
    let url = outcome.map_err(|(outcome, _)| {
        failed(if outcome == UploadOutcome::TimedOut {
            "the bucket did not take the capture in time"
        } else {
            "the bucket did not take the capture"
        })
    })?;
    let mut body = serde_json::json!({
        "url": url,
        "key": key,
        "format": format,
        "bytes": output.image.len(),
        "width": output.width,
        "height": output.height,
        "truncated": output.truncated,
    });
    if let Some(lifetime) = storage.url_lifetime() {
        body["expiresAt"] = serde_json::json!(expires_at(lifetime));
    }
    if let Some(page) = &output.page {
        body["page"] = serde_json::json!(page);
    }
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut response = Response::new(body.clone().into());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    super::image_answer::set_common_headers(&mut response, &output, id);
    Ok((response, body))
}

/// 502 `storage_failed`: the capture was made but could not be stored; nothing was charged.
fn failed(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "storage_failed",
        format!("{why}; nothing was charged, try again"),
    )
}

/// When a URL made now with `lifetime` stops working, in RFC 3339.
fn expires_at(lifetime: Duration) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    iso_time(i64::try_from((now + lifetime).as_millis()).unwrap_or(i64::MAX))
}
