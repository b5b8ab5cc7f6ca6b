//! `GET /api/v1/screenshot?url=…` and `POST /api/v1/screenshot` (JSON body, same names).
//! Path of one request: authenticate (or check a signed link, `signed_links`) → validate →
//! (cached: a live entry answers, free) → hold one credit (`ledger::Hold`) → job with deadline
//! → farm → commit the hold (image; cached: the charged image fills the entry) or release it
//! (error); with `store=true` the image is uploaded (`store_answer`) before the commit.
//! `x-credits-remaining` reports the balance after
//! the request settled.

use crate::telemetry::events::register_captures;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};
use tracing::Instrument;
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use super::billing;
use super::cached::{self, Found};
use super::errors::{ledger_unavailable, ApiError};
use super::image_answer;
use super::jobs;
use super::json::limited_body;
use super::options;
use super::rate_limit;
use super::signed_links::{self, Link};
use super::store_answer;
use super::{with_request_id, ApiState};
use crate::farm::CaptureError;
use crate::ledger::{Hold, HoldRequest, Outcome, Reservation, Settled};
use crate::limits::RateVerdict;

use crate::farm::ANSWER_SLACK;

pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    // Every outcome's series exists, at zero, before its first capture.
    register_captures(&state.metrics, &CaptureError::CODES);
    let max_body = usize::try_from(state.config.get().server.max_body_bytes).unwrap_or(usize::MAX);
    let with_state = warp::any().map(move || state.clone());
    let get = warp::path!("api" / "v1" / "screenshot")
        .and(warp::get())
        .and(with_request_id())
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(with_state.clone())
        .then(|id: String, headers, query: String, state: ApiState| {
            let (options, link) = signed_links::read(&query);
            handle(state, id, headers, Ok(options), link)
        });
    let post = warp::path!("api" / "v1" / "screenshot")
        .and(warp::post())
        .and(with_request_id())
        .and(warp::header::headers_cloned())
        .and(limited_body(max_body))
        .and(with_state)
        .then(
            |id: String, headers, body: Result<Bytes, ApiError>, state: ApiState| {
                let options = body.and_then(|body| match serde_json::from_slice::<Value>(&body) {
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
                });
                handle(state, id, headers, options, None)
            },
        );
    get.or(post).unify()
}

async fn handle(
    state: ApiState,
    id: String,
    headers: HeaderMap,
    options: Result<Map<String, Value>, ApiError>,
    link: Link,
) -> Response {
    let span = tracing::info_span!("screenshot", request_id = %id);
    let fallback_id = id.clone();
    // Its own task: a client that hangs up must not cancel the settlement of its hold.
    let task = tokio::spawn(
        async move {
            let mut caller = None;
            let mut rate = None;
            let signed = link.is_some();
            let (response, mut credits) =
                match capture(&state, &id, &headers, options, link, &mut caller, &mut rate).await {
                    Ok(answer) => answer,
                    Err((error, credits)) => (error.into_response(&id), credits),
                };
            let response = rate_limit::with_rate_limit(response, rate);
            // Rejected after authentication but before any hold (bad options): still report
            // the balance, as every capture response after authentication does.
            if let (None, Some(account)) = (credits, caller) {
                credits = state
                    .ledger
                    .balance(&account)
                    .await
                    .ok()
                    .flatten()
                    .map(|b| b.available);
            }
            let response = billing::with_credits(response, credits);
            if signed {
                signed_links::public(response)
            } else {
                response
            }
        }
        .instrument(span),
    );
    match task.await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!("capture task failed: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response(&fallback_id)
        }
    }
}

/// A response (or error) and the balance to report in `x-credits-remaining`.
type Answer = (Response, Option<i64>);

/// Request → authenticate → validate → reserve → capture → commit or release.
async fn capture(
    state: &ApiState,
    id: &str,
    headers: &HeaderMap,
    options: Result<Map<String, Value>, ApiError>,
    link: Link,
    caller: &mut Option<String>,
    rate: &mut Option<RateVerdict>,
) -> Result<Answer, (ApiError, Option<i64>)> {
    let received = Instant::now();
    let no_credits = |e: ApiError| (e, None);
    let signed = link.is_some();
    let who = signed_links::caller(state, headers, link)
        .await
        .map_err(no_credits)?;
    *caller = Some(who.account.clone());
    if let Some(limiter) = state.capture_limiter() {
        let caller_id = who.key_id.as_deref().unwrap_or("session");
        let verdict = limiter
            .check(&who.account, caller_id)
            .await
            .map_err(|e| (ledger_unavailable(e), None))?;
        *rate = Some(verdict);
        if !verdict.allowed {
            let error = rate_limit::rate_limited(
                format!(
                    "too many requests for this API key: {} per minute, {} at once",
                    verdict.per_minute, verdict.burst
                ),
                verdict.retry_after,
            );
            return Err((error, None));
        }
    }
    let options = options.map_err(no_credits)?;
    let idempotency = billing::idempotency(headers, &options).map_err(no_credits)?;
    // An async job keeps its options as received, for its worker to read again.
    let kept = options.contains_key("async").then(|| options.clone());
    let request = options::parse(options, &state.config.get().capture)
        .map_err(|e| (ApiError::invalid(e), None))?;
    if request.store.is_some() {
        store_answer::storage_for(state).map_err(no_credits)?;
    }
    if let (Some(ask), Some(kept)) = (&request.async_job, kept) {
        let refuse = |field: &str, message: &str| {
            ApiError::invalid(vec![super::errors::FieldError {
                field: field.into(),
                message: message.into(),
            }])
        };
        if signed {
            return Err((refuse("async", "is not available on signed links"), None));
        }
        if idempotency.is_some() {
            let message = "cannot be combined with an Idempotency-Key (each accepted job runs once; its id is the key)";
            return Err((refuse("async", message), None));
        }
        check_main_url(state, &request.spec)
            .await
            .map_err(no_credits)?;
        return jobs::accept(state, id, &who.account, kept, ask).await;
    }
    let deadline = received + request.timeout;
    let response_type = request.response_type;
    // A hit is answered before anything is held or fetched: it costs nothing.
    let cached = cached::plan(state, &who.account, &request).map_err(no_credits)?;
    // Held while this request fills its entry: the same capture asked meanwhile waits for it.
    let mut _filling = None;
    if let Some(c) = &cached {
        match cached::look_up(state, &who.account, c, deadline).await {
            Found::Hit(entry) => {
                return Ok((cached::hit(entry, response_type, received, id), None));
            }
            Found::Miss(guard) => _filling = guard,
        }
    }
    check_main_url(state, &request.spec)
        .await
        .map_err(no_credits)?;

    let ttl = request.timeout
        + ANSWER_SLACK
        + Duration::from_millis(state.config.get().ledger.hold_grace_ms);
    let reservation = Hold::reserve(
        &state.ledger,
        HoldRequest {
            account: who.account.clone(),
            ttl,
            idempotency: idempotency.clone(),
            description: request.spec.describe(),
            max_held: state.config.get().ledger.max_in_flight_per_account,
        },
    )
    .await
    .map_err(|e| (ledger_unavailable(e), None))?;
    let hold = match reservation {
        Reservation::Held(hold) => hold,
        Reservation::Refused(Outcome::Insufficient { available }) => {
            let public_url = &state.config.get().auth.public_url;
            tracing::info!(available, "insufficient credits");
            return Ok((
                billing::insufficient_credits(available, public_url, id),
                Some(available),
            ));
        }
        Reservation::Refused(Outcome::IdempotencyReplay { available, result }) => {
            tracing::info!("idempotent replay, not charged");
            return Ok((billing::replay(result, id), Some(available)));
        }
        Reservation::Refused(refused) => {
            let max_in_flight = state.config.get().ledger.max_in_flight_per_account;
            return Err(billing::refusal(&refused, max_in_flight));
        }
    };

    match state
        .farm
        .capture(&state.metrics, id, request.spec, deadline)
        .await
    {
        Ok(output) => {
            let entry = cached
                .as_ref()
                .map(|c| crate::cache::Entry::of(&output, c.ttl, id));
            let (mut response, body) = match &request.store {
                None => image_answer::success(output, response_type, received.elapsed(), id),
                // Uploaded by the deadline, or the hold is released: charged only once stored.
                Some(store) => {
                    let until = deadline + ANSWER_SLACK;
                    match store_answer::store(state, &who.account, store, output, until, id).await {
                        Ok(stored) => stored,
                        Err(e) => return Err((e, hold.release().await)),
                    }
                }
            };
            if let Some(c) = &cached {
                cached::miss(&mut response, c.ttl);
            }
            let result = idempotency.as_ref().and_then(|_| {
                billing::to_stored(
                    &response,
                    &body,
                    state.config.get().ledger.idempotency_max_bytes,
                )
            });
            let result_ttl = Duration::from_secs(state.config.get().ledger.idempotency_ttl_secs);
            let held_at = hold.available();
            let settled = hold.commit(result, result_ttl).await;
            // Only a charged capture fills an entry: every hit is backed by one charge.
            if let (Some(c), Some(entry), Settled::Charged { .. }) = (&cached, entry, &settled) {
                c.cache.store(&c.key, entry).await;
            }
            if let Settled::Charged {
                available,
                low: true,
                crossed,
            } = settled
            {
                low_balance_headers(state, &who.account, &mut response, available, crossed).await;
            }
            Ok((response, settled.available().or(Some(held_at))))
        }
        Err(e) => {
            let remaining = hold.release().await;
            Err((e.into(), remaining))
        }
    }
}

/// The capture's main URL against the egress policy, before anything is held: 400
/// `url_not_allowed`, or 502 `navigation_failed` for a name that does not resolve.
async fn check_main_url(state: &ApiState, spec: &crate::farm::CaptureSpec) -> Result<(), ApiError> {
    // Supplied markup has no URL to check: the capture serves it inside the browser, and
    // everything it loads goes through the egress proxy like any page's requests.
    let checked = match spec.html {
        Some(_) => Ok(()),
        None => state.egress.check_url(&spec.url).await,
    };
    if let Err(blocked) = checked {
        tracing::info!("refused: {blocked}");
        // A name that does not resolve is not a policy refusal: it is the navigation failing
        // at DNS, found before a credit is held (so nothing is held or charged).
        if let crate::egress::UrlBlocked::Unresolvable { host } = &blocked {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "navigation_failed",
                format!("DNS lookup failed: {host} does not resolve (nothing was charged)"),
            ));
        }
        let mut error = ApiError::new(
            StatusCode::BAD_REQUEST,
            "url_not_allowed",
            blocked.to_string(),
        );
        error.details = vec![super::errors::FieldError {
            field: "url".into(),
            message: blocked.to_string(),
        }];
        return Err(error);
    }
    Ok(())
}

/// `x-credits-low: true` and `x-credits-suggested-pack` once auto top-up's threshold is
/// crossed: the prompt to buy more, never a charge. The one charge that crossed also queued
/// the account's notification in Redis (`commit.lua`), if it set a URL: this daemon delivers it
/// now, off this request's path (any daemon would, later, were this one to stop).
async fn low_balance_headers(
    state: &ApiState,
    account: &str,
    response: &mut Response,
    available: i64,
    crossed: bool,
) {
    response
        .headers_mut()
        .insert("x-credits-low", HeaderValue::from_static("true"));
    if crossed {
        // Whatever the settings read below does: the notification is in Redis already.
        state.low_balance.nudge(account);
    }
    match state.accounts.auto_topup(account).await {
        Ok(settings) => {
            if let Ok(pack) = HeaderValue::from_str(&settings.pack_id) {
                response
                    .headers_mut()
                    .insert("x-credits-suggested-pack", pack);
            }
            if crossed {
                tracing::info!(
                    available,
                    threshold = settings.threshold,
                    pack = %settings.pack_id,
                    notify = settings.notification_url.is_some(),
                    "balance fell below the auto top-up threshold"
                );
            }
        }
        Err(e) => tracing::warn!("could not read auto top-up settings: {e}"),
    }
}
