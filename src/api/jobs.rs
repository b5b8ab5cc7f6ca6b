//! Async captures in HTTP: `async=true` on the capture routes answers 202 with the job
//! (`accept`, called by `screenshot` once the options passed), and
//! `GET /api/v1/screenshots/{id}` (the job's status) and `GET /api/v1/screenshots/{id}/image`
//! (its image, until it expires) show it to its own account; any other id is 404.

use serde_json::{json, Value};
use warp::http::{header, HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::auth::{authenticate, Allow};
use super::errors::{ledger_unavailable, ApiError, FieldError};
use super::json::json_response;
use super::options::AsyncRequest;
use super::{with_request_id, ApiState};
use crate::jobs::store::NewJob;
use crate::jobs::{is_job_id, new_job_id, JobRecord, JobStatus, Refused};
use crate::timestamps::iso_time;

/// `async=true`: checks the webhook URL and the account's credit, opens the job, answers 202.
/// Nothing is held or charged here: the job's worker holds its credit when it runs.
pub(super) async fn accept(
    state: &ApiState,
    request_id: &str,
    account: &str,
    options: serde_json::Map<String, Value>,
    ask: &AsyncRequest,
) -> Result<(Response, Option<i64>), (ApiError, Option<i64>)> {
    if let Err(blocked) = state.egress.check_url(&ask.webhook_url).await {
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
            format!("webhook_url: {blocked}"),
        );
        error.details = vec![FieldError {
            field: "webhook_url".into(),
            message: blocked.to_string(),
        }];
        return Err((error, None));
    }
    let available = state
        .ledger
        .balance(account)
        .await
        .map_err(|e| (ledger_unavailable(e), None))?
        .map_or(0, |b| b.available);
    if available < 1 {
        let public_url = &state.config.get().auth.public_url;
        return Ok((
            super::billing::insufficient_credits(available, public_url, request_id),
            Some(available),
        ));
    }
    let config = state.config.get();
    let jobs = &config.jobs;
    let id = new_job_id();
    let stored = serde_json::to_string(&options).unwrap_or_default();
    let submitted = state
        .jobs
        .submit(
            &NewJob {
                id: &id,
                account,
                options: &stored,
                webhook_url: ask.webhook_url.as_str(),
                request_id,
                created_ms: crate::timestamps::now_ms(),
            },
            jobs.max_queued_per_account,
            jobs.max_queued,
            std::time::Duration::from_secs(jobs.result_ttl_secs),
        )
        .await
        .map_err(|e| (ledger_unavailable(e), None))?;
    if let Err(refused) = submitted {
        let message = match refused {
            Refused::Account(n) => {
                format!("this account already has {n} async jobs open; retry when one has finished")
            }
            Refused::Total(n) => {
                format!("the server already has {n} async jobs open; retry later")
            }
        };
        let mut error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_jobs", message);
        error.retry_after = Some(std::time::Duration::from_secs(5));
        return Err((error, Some(available)));
    }
    // The deliveries are signed with the account's notification secret: make it now if the
    // account has none, so it can be read (GET /api/v1/credits/auto-topup) before the first.
    if let Err(e) = state.accounts.webhook_secret(account).await {
        tracing::warn!("cannot make the account's webhook secret yet ({e})");
    }
    tracing::info!(job = %id, "async job accepted");
    let status_url = format!("/api/v1/screenshots/{id}");
    let mut response = json_response(
        StatusCode::ACCEPTED,
        &json!({ "id": id, "status": "queued", "status_url": status_url }),
    );
    if let Ok(v) = HeaderValue::from_str(&status_url) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    super::set_request_id(&mut response, request_id);
    Ok((response, Some(available)))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no async job {id} for this account (or it expired)"),
    )
}

/// The job of this caller, or 404.
async fn job_of(state: &ApiState, headers: &HeaderMap, id: &str) -> Result<JobRecord, ApiError> {
    let who = authenticate(state, headers, Allow::KeyOrSession).await?;
    if !is_job_id(id) {
        return Err(not_found(id));
    }
    state
        .jobs
        .get(&who.account, id)
        .await
        .map_err(ledger_unavailable)?
        .ok_or_else(|| not_found(id))
}

/// The status document of a job.
pub fn status_json(record: &JobRecord) -> Value {
    let mut body = json!({
        "id": record.id,
        "status": record.status.as_str(),
        "created_at": iso_time(record.created_ms),
        "finished_at": record.finished_ms.map(iso_time),
    });
    if let Some((code, message)) = &record.error {
        body["error"] = json!({ "code": code, "message": message });
    }
    if record.status == JobStatus::Succeeded && record.image_bytes > 0 {
        body["image_url"] = json!(format!("/api/v1/screenshots/{}/image", record.id));
        body["format"] = json!(record.format);
        body["width"] = json!(record.width);
        body["height"] = json!(record.height);
        body["bytes"] = json!(record.image_bytes);
    }
    if let Some(delivery) = &record.delivery {
        body["webhook"] = json!(delivery);
    }
    body
}

async fn status(state: ApiState, headers: HeaderMap, id: String) -> Result<Response, ApiError> {
    let record = job_of(&state, &headers, &id).await?;
    let mut response = json_response(StatusCode::OK, &status_json(&record));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn image(state: ApiState, headers: HeaderMap, id: String) -> Result<Response, ApiError> {
    let record = job_of(&state, &headers, &id).await?;
    if record.status != JobStatus::Succeeded {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("job {id} has no image: it is {}", record.status.as_str()),
        ));
    }
    let bytes = state
        .jobs
        .image(&record.account, &id)
        .await
        .map_err(ledger_unavailable)?
        .ok_or_else(|| not_found(&id))?;
    let mime = match record.format.as_deref() {
        Some("jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("pdf") => "application/pdf",
        _ => "image/png",
    };
    let mut response = Response::new(bytes.into());
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let status_route = warp::path!("api" / "v1" / "screenshots" / String)
        .and(warp::get())
        .and(with_request_id())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(|job: String, id: String, s, h| super::answer(id, status(s, h, job)));
    let image_route = warp::path!("api" / "v1" / "screenshots" / String / "image")
        .and(warp::get())
        .and(with_request_id())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .then(|job: String, id: String, s, h| super::answer(id, image(s, h, job)));
    image_route.or(status_route).unify()
}
