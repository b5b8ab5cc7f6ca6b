//! The HTTP layer (warp): the only module that knows HTTP. Routes talk to the farm through its
//! address ([`Farm`]) and message types, never through actor structs.
//!
//! - [`screenshot`]: `GET`/`POST /api/v1/screenshot`, each capture a credit hold.
//! - [`billing`]: the credit side of a capture in HTTP: idempotency, 402, replays.
//! - [`options`]: capture options and their validation.
//! - [`auth`]: who is calling (API keys, session cookie) and the account routes.
//! - [`keys`]: API key management.
//! - [`credits`]: balance, packs and transaction history.
//! - [`errors`], [`json`]: the JSON error body and status mapping; JSON helpers.
//! - [`probes`]: `/healthz`, `/readyz` and the Prometheus exporter's routes.
//! - [`dashboard`]: the customer dashboard's embedded files at `/dashboard`.
//! - [`csrf`]: strict origin checking of state-changing browser requests.
//! - [`payments`], [`auto_topup`]: buying credits and the low-balance settings.
//! - [`server`]: the listeners' accept loop: connection caps, header and idle timeouts, head size.

pub mod auth;
pub mod auto_topup;
pub mod billing;
pub mod credits;
pub mod csrf;
pub mod dashboard;
pub mod errors;
pub mod json;
pub mod keys;
pub mod options;
pub mod payments;
pub mod probes;
pub mod rate_limit;
pub mod screenshot;
pub mod server;

use std::sync::Arc;

use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::accounts::Accounts;
use crate::config::Config;
use crate::egress::EgressPolicy;
use crate::farm::Farm;
use crate::ledger::Ledger;
use crate::limits::RateLimiter;
use crate::notifications::Notifier;
use crate::payments::Payments;
use crate::reload::Live;
use crate::telemetry::Metrics;
use errors::ApiError;

/// What every handler may use.
#[derive(Clone)]
pub struct ApiState {
    pub farm: Farm,
    pub ledger: Ledger,
    pub accounts: Accounts,
    pub egress: Arc<EgressPolicy>,
    pub metrics: Arc<Metrics>,
    /// The configuration; its packs, limits and log level change on a reload (SIGHUP).
    pub config: Live<Config>,
    pub payments: Arc<Payments>,
    pub notifier: Notifier,
}

impl ApiState {
    /// The capture rate limit per API key, as currently configured; `None` when off.
    pub fn capture_limiter(&self) -> Option<RateLimiter> {
        let limits = &self.config.get().limits;
        RateLimiter::new(
            self.ledger.redis().clone(),
            limits.requests_per_minute,
            limits.burst,
        )
    }

    /// Log-in attempts per email address; `None` when off.
    pub fn login_limiter(&self) -> Option<RateLimiter> {
        let n = self.config.get().auth.login_attempts_per_minute;
        RateLimiter::new(self.ledger.redis().clone(), n, n)
    }

    /// Log-in and sign-up attempts per client address; `None` when off.
    pub fn address_limiter(&self) -> Option<RateLimiter> {
        let n = self.config.get().auth.attempts_per_address_per_minute;
        RateLimiter::new(self.ledger.redis().clone(), n, n)
    }
}

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

/// Closed set of route labels for `shotfarm_http_requests_total`.
fn route_label(path: &str) -> &'static str {
    match path {
        "/api/v1/screenshot" => "screenshot",
        "/api/v1/credits" => "credits",
        "/api/v1/credits/packs" => "credits_packs",
        "/api/v1/credits/transactions" => "credits_transactions",
        "/api/v1/credits/usage" => "credits_usage",
        "/api/v1/auth/signup" => "auth_signup",
        "/api/v1/auth/login" => "auth_login",
        "/api/v1/auth/logout" => "auth_logout",
        "/api/v1/me" => "me",
        "/api/v1/credits/purchase" => "credits_purchase",
        "/api/v1/credits/auto-topup" => "credits_auto_topup",
        "/api/v1/webhooks/polar" => "webhooks_polar",
        "/api/v1/keys" => "keys",
        p if p.starts_with("/api/v1/keys/") => "keys",
        p if p == "/" || p.starts_with("/dashboard") => "dashboard",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        _ => "other",
    }
}

/// Records every response in the HTTP metrics. The capture route's series exist from the start,
/// at zero (its successes and its server errors, which the dashboard and alerts query).
pub fn http_metrics(metrics: Arc<Metrics>) -> warp::log::Log<impl Fn(warp::log::Info<'_>) + Clone> {
    let capture = route_label("/api/v1/screenshot");
    for status in ["200", "500"] {
        metrics
            .http_requests_total
            .with_label_values(&[capture, status]);
    }
    metrics
        .http_request_duration_seconds
        .with_label_values(&[capture]);
    warp::log::custom(move |info| {
        let route = route_label(info.path());
        metrics
            .http_requests_total
            .with_label_values(&[route, info.status().as_str()])
            .inc();
        metrics
            .http_request_duration_seconds
            .with_label_values(&[route])
            .observe(info.elapsed().as_secs_f64());
    })
}

/// Serves the public API on `listener` until `stop` turns true (then lets open requests finish).
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState, stop: WatchStop) {
    let config = state.config.get();
    let limits = server::Limits::from_config(&config.server);
    let metrics = state.metrics.clone();
    server::serve(
        listener,
        warp::service(routes(state)),
        limits,
        Some(metrics),
        stop,
    )
    .await;
}

/// Serves the Prometheus exporter and probes on `listener` (same connection limits, not
/// counted in the metrics) until `stop` turns true.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    limits: server::Limits,
    metrics: Arc<Metrics>,
    farm: Farm,
    redis: crate::ledger::RedisHandle,
    stop: WatchStop,
) {
    let routes = probes::metrics_routes(metrics, farm, redis);
    server::serve(listener, warp::service(routes), limits, None, stop).await;
}

/// The signal that stops a listener: turns `true` once.
pub type WatchStop = tokio::sync::watch::Receiver<bool>;

/// The public API: screenshots and probes, with JSON errors for anything else.
pub fn routes(
    state: ApiState,
) -> impl Filter<Extract = (impl warp::Reply,), Error = std::convert::Infallible> + Clone {
    let metrics = state.metrics.clone();
    let same_site = csrf::filter(&state.config.get().auth.public_url);
    let api = screenshot::routes(state.clone())
        .or(credits::routes(state.clone()))
        .unify()
        .or(auth::routes(state.clone()))
        .unify()
        .or(keys::routes(state.clone()))
        .unify()
        .or(payments::routes(state.clone()))
        .unify()
        .or(auto_topup::routes(state.clone()))
        .unify()
        .or(probes::routes(
            state.farm.clone(),
            state.ledger.redis().clone(),
        ))
        .unify();
    dashboard::routes()
        .or(same_site.and(api))
        .unify()
        .recover(recover)
        .unify()
        .with(http_metrics(metrics))
}

/// Turns warp's rejections into the JSON error body. A request that no route took is rejected
/// by every route it was tried on, and those rejections are combined: the ones that say what is
/// wrong with a request a route *did* match (too large, cross-site, unreadable) must win over
/// the other routes' "not this path" and "not this method", so they are looked for first.
async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
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
